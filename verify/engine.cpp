// verify/engine.cpp: see engine.hpp.
#include "verify/engine.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>
#include <variant>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/encoding.hpp"
#include "common/host_lookup.hpp"
#include "common/origin_down.hpp"
#include "crypto/keys.hpp"
#include "oci/manifest.hpp"
#include "oci/reference.hpp"
#include "verify/detail/kms.hpp"
#include "verify/reason_map.hpp"
#include "verify/stale.hpp"
#include "verify/tag_resolver.hpp"
#include "verify/verdict_cache.hpp"

namespace sigil::verify {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using detail::KmsKeys;

namespace {

Reason registry_reason(Errc code) {
  switch (code) {
    case Errc::unauthorized:
      return Reason::registry_auth;
    case Errc::timeout:
      return Reason::timeout;
    case Errc::not_found:
      return Reason::image_not_found;
    case Errc::verification:
    case Errc::too_large:
    case Errc::parse_error:
      return Reason::registry_integrity;
    case Errc::exhausted:
      return Reason::budget_exceeded;
    default:
      return Reason::registry_unavailable;
  }
}

const char* source_name(registry::CredentialSourceKind k) {
  switch (k) {
    case registry::CredentialSourceKind::pull_secret:
      return "pod pull secret";
    case registry::CredentialSourceKind::docker_config:
      return "docker config";
    case registry::CredentialSourceKind::workload_identity:
      return "azure workload identity";
    case registry::CredentialSourceKind::managed_identity:
      return "azure managed identity";
    case registry::CredentialSourceKind::azure_identity:
      return "azure identity";
    case registry::CredentialSourceKind::anonymous:
      return "anonymous";
  }
  return "?";
}

const char* outcome_text(registry::CredentialOutcome o) {
  switch (o) {
    case registry::CredentialOutcome::none_for_host:
      return "none for this host";
    case registry::CredentialOutcome::not_configured:
      return "not configured";
    case registry::CredentialOutcome::not_for_host:
      return "not allowed for this host";
    case registry::CredentialOutcome::not_tried:
      return "not tried";
    case registry::CredentialOutcome::refused:
      return "refused";
    case registry::CredentialOutcome::unavailable:
      return "unreachable";
    case registry::CredentialOutcome::timeout:
      return "timed out";
    case registry::CredentialOutcome::failed:
      return "failed";
  }
  return "?";
}

// "pod pull secret: none for this host; ...; anonymous: refused (401)": built from typed facts
// only, so nothing a registry or Entra ID wrote (nor anything token-shaped) reaches a denial.
std::string describe(const registry::CredentialTrail& trail) {
  std::string out;
  for (const auto& a : trail.tried) {
    if (!out.empty()) out += "; ";
    out += source_name(a.source);
    out += ": ";
    out += outcome_text(a.outcome);
    if (a.status != 0) out += " (" + std::to_string(a.status) + ")";
  }
  return out;
}

// A failed lookup of the registry's name, in words a person can act on. Unlike the connection
// errors below, it is told: whether a name resolves is what any pod in the cluster can ask the
// same DNS, and "no such host" is the commonest cause of all (a mistyped registry name).
// registry: the image's registry (host[:port]); the name that failed may be another (its token
// service, or a storage host a blob redirects to), which the image's author did not write.
std::string lookup_failure_text(const HostLookupFailure& f, std::string_view registry) {
  const std::string name = "the name " + printable(f.host, 256);
  const bool written = registry.substr(0, registry.rfind(':')) == f.host;  // no port: all of it
  switch (f.why) {
    case HostLookupFailure::Why::no_such_host:
      return name + " does not exist in DNS (no such host)" +
             (written ? "; check the image's registry name" : "");
    case HostLookupFailure::Why::no_address:
      return name + " has no address in DNS";
    case HostLookupFailure::Why::no_answer:
      return name + " could not be resolved: the DNS server did not answer in time";
    case HostLookupFailure::Why::busy:
      return name +
             " was not looked up: sigil is resolving as many names as it may at once "
             "(registry.dns.maxLookups); try again";
    case HostLookupFailure::Why::failed:
      break;
  }
  return name + " could not be resolved (DNS failed)";
}

// A registry failure of any other kind (see registry_denial).
std::string registry_failure_text(const std::string& host, const Error& e) {
  std::string what;
  if (const OriginDown* down = origin_down(e)) {
    // Which origin (the registry, its token service, its blob storage) stays in the log: a
    // registry may send sigil anywhere, and whether that place answers is not the pod's to
    // learn.
    const auto secs = (down->retry_in.count() + 999) / 1000;
    return "registry " + host +
           " could not be reached (it has not answered recently; sigil tries it again " +
           (secs > 0 ? "within " + std::to_string(secs) + " s)" : "now)");
  }
  switch (e.code) {
    case Errc::unauthorized:
      what = "registry " + host + " refused access";
      // The credential sources tried, and what each gave (typed: registry/client.hpp).
      if (const auto* trail = registry::credential_trail(e); trail && !trail->tried.empty())
        what += " (tried " + describe(*trail) + ")";
      what += "; check the pod's imagePullSecrets or sigil's registry credentials";
      break;
    case Errc::timeout:
      what = "registry " + host + " did not answer before the webhook deadline";
      break;
    case Errc::not_found:
      what = "not found in registry " + host;
      break;
    case Errc::verification:
    case Errc::too_large:
    case Errc::parse_error:
      what = "registry " + host + " served content that fails sigil's checks";
      break;
    case Errc::exhausted:
      what = e.message;  // ours, names no registry detail
      break;
    default:
      what = "registry " + host + " could not be reached or failed";
      break;
  }
  return what;
}

// A registry failure becomes a denial that says what kind of failure, at which registry, and
// nothing more: the registry is chosen by whoever creates the pod, and raw connection errors
// ("Connection refused", "wrong version number", a TLS verification error) would tell them
// which internal ports are closed, plain HTTP or TLS. The details go to sigil's log. Never
// cached: the next admission tries again.
Verdict registry_denial(const std::string& image, const std::string& digest,
                        const std::string& host, const Error& e, std::string_view doing) {
  // printable: the message may one day quote what a registry sent; the log stays one line.
  spdlog::warn("image {}: {} at registry {}: {} ({})", image, doing, host,
               printable(e.message, 1000), errc_name(e.code));
  // A lookup failure's host is the name that failed: the registry's, or its token service's.
  const HostLookupFailure* dns = host_lookup_failure(e);
  const std::string what = dns ? lookup_failure_text(*dns, host) : registry_failure_text(host, e);
  Verdict v = denial(image, registry_reason(e.code), std::string(doing) + ": " + what);
  v.digest = digest;
  return v;
}

// A policy in warn mode never blocks, not even when the registry fails: when every policy
// that matched is in warn mode, a registry failure becomes a warning.
Verdict soften_if_all_warn(Verdict v, const std::vector<const policy::Policy*>& matched) {
  for (const policy::Policy* p : matched) {
    if (p->mode != policy::Mode::warn) return v;
  }
  v.outcome = Outcome::warned;
  Finding w = v.primary();
  w.warn_mode = true;
  v.warnings.push_back(std::move(w));
  return v;
}

// Only a caller that pins the Pod to the digest it gets may have a tag answered from before
// the request arrived (tag_resolver.hpp).
TagFreshness tag_freshness(const Context& context) {
  return context.pins_digest ? TagFreshness::pinned : TagFreshness::fresh;
}

const Finding& no_match_finding() {
  static const Finding f{Reason::no_matching_policy, "", "", "", false};
  return f;
}

// What verify_ref decides before any I/O, shared with verify_cached: the parsed reference and
// the matched policies, or the verdict itself (no policy set, an invalid reference, no cluster
// policy matches and no namespace policy adds requirements).
struct Front {
  oci::Reference ref;
  std::vector<const policy::Policy*> matched;
  bool warn_no_match = false;  // no cluster policy matched and noMatch is warn
};

std::variant<Verdict, Front> front(const std::string& image, const policy::PolicySet* policies,
                                   const Context& context) {
  if (policies == nullptr) return denial(image, Reason::internal, "no policy set is loaded");
  auto ref = oci::parse_reference(image);
  if (!ref.ok()) {
    return denial(image, Reason::invalid_image,
                  "not a valid image reference: " + ref.error().message);
  }
  Front f;
  f.matched = policies->match(*ref, context.namespace_);
  f.ref = std::move(*ref);
  // The no-match behaviour follows the ClusterImagePolicies alone: a namespace's ImagePolicy
  // can add requirements, never stand in for a cluster policy (an ImagePolicy `static: pass`
  // for ** must not lift a cluster-wide deny).
  const bool cluster_matched =
      std::any_of(f.matched.begin(), f.matched.end(),
                  [](const policy::Policy* p) { return p->namespace_scope.empty(); });
  if (!cluster_matched) {
    Verdict v;
    v.image = image;
    v.report(no_match_finding());
    switch (policies->no_match()) {
      case policy::NoMatch::allow:
        v.outcome = Outcome::allowed;
        break;
      case policy::NoMatch::warn:
        v.outcome = Outcome::warned;
        v.warnings.push_back(no_match_finding());
        f.warn_no_match = true;
        break;
      case policy::NoMatch::deny:
        v.outcome = Outcome::denied;
        break;
    }
    // Without namespace policies to add requirements, that is the answer.
    if (v.outcome == Outcome::denied || f.matched.empty()) return v;
  }
  return f;
}

// Whether some matched authority reads a `key.kms` key (resolving it may need Key Vault).
bool uses_kms(const std::vector<const policy::Policy*>& matched) {
  for (const policy::Policy* p : matched) {
    for (const auto& a : p->authorities) {
      if (a.kind == policy::Authority::Kind::key && !a.kms.empty()) return true;
    }
  }
  return false;
}

using VerdictChannel =
    asio::experimental::concurrent_channel<void(boost::system::error_code, Verdict)>;

}  // namespace

struct Engine::Impl {
  registry::Client& client;
  const Clock& clock;
  EngineOptions options;
  TagResolver resolver;
  VerdictCache cache;
  std::shared_ptr<ByteBudget> process_budget;
  // What images on registries pods name share of it (EngineOptions::reserved_process_bytes).
  std::shared_ptr<ByteBudget> pod_registries_budget;

  LastKnownGood last_good;

  mutable std::mutex mu;
  // One verification per key at a time: its leader's deadline, and who waits for it.
  struct Flight {
    Deadline deadline;
    std::vector<std::shared_ptr<VerdictChannel>> waiters;
  };
  std::unordered_map<std::string, Flight> in_flight;
  uint64_t coalesced = 0;

  // Each namespace's share of signature checks (EngineOptions::namespace_checks_per_second).
  // Bounded: at kMaxShares the shares that are full again are forgotten (a new one is the same);
  // if none is, namespaces past the bound share one.
  static constexpr size_t kMaxShares = 4096;
  mutable std::mutex shares_mu;
  mutable std::unordered_map<std::string, std::shared_ptr<RateBudget>> shares;
  std::shared_ptr<RateBudget> overflow_share;

  std::shared_ptr<RateBudget> share_of(const std::string& ns) const {
    std::lock_guard lock(shares_mu);
    if (auto it = shares.find(ns); it != shares.end()) return it->second;
    const auto now = clock.now();
    if (shares.size() >= kMaxShares) {
      std::erase_if(shares, [now](const auto& kv) { return kv.second->full(now); });
      if (shares.size() >= kMaxShares) return overflow_share;
    }
    auto share = std::make_shared<RateBudget>(options.namespace_checks_per_second,
                                              options.namespace_checks_burst);
    shares.emplace(ns, share);
    return share;
  }

  Impl(registry::Client& c, const Clock& k, const EngineOptions& o)
      : client(c),
        clock(k),
        options(o),
        resolver(c, k, TagCacheOptions{o.tag_cache_ttl, o.tag_cache_capacity}),
        cache(k, o.cache_capacity, o.cache_ttl, o.negative_cache_ttl),
        process_budget(std::make_shared<ByteBudget>(o.max_process_bytes)),
        pod_registries_budget(
            std::make_shared<ByteBudget>(o.reserved_process_bytes < o.max_process_bytes
                                             ? o.max_process_bytes - o.reserved_process_bytes
                                             : o.max_process_bytes)),
        last_good(k, o.cache_capacity, o.stale_if_error),
        overflow_share(std::make_shared<RateBudget>(o.namespace_checks_per_second,
                                                    o.namespace_checks_burst)) {}

  // Whether the pod's own credentials cover repository on host (then what sigil reads there is
  // theirs to read, and shared only with requests holding the same credentials).
  bool pod_holds(const Context& context, const std::string& host,
                 const std::string& repository) const {
    return client.covers(context.credentials, host, repository);
  }

  // Where each authority reads signatures: the image's own repository with the admission's
  // credentials, or its `source` repositories with their signaturePullSecrets.
  struct Source {
    Location where;
    std::vector<std::string> pull_secrets;
    Wanted wanted;  // .sig, bundles, .att
    FetchedEvidence got;
  };
  struct Plan {
    std::map<std::string, Source> sources;                              // by location key
    std::map<const policy::Authority*, std::vector<std::string>> uses;  // authority -> keys
    bool namespace_secrets = false;  // some source reads signaturePullSecrets
  };
  // What one authority reads at each of its sources. An authority with attestations reads .att
  // instead of .sig (bundles hold both).
  static Wanted wanted_by(const policy::Authority& a) {
    Wanted w;
    const bool tags = a.format != policy::SignatureFormat::bundle;
    w.legacy = tags && a.attestations.empty();
    w.attestations = tags && !a.attestations.empty();
    w.bundles = a.format != policy::SignatureFormat::legacy;
    return w;
  }

  // Whether every part p's authorities read was read: then p's refusal is a judgement, whatever
  // failed elsewhere (a part only another policy reads, another policy's source).
  static bool read_in_full(const policy::Policy& p, const Plan& plan) {
    for (const auto& a : p.authorities) {
      auto u = plan.uses.find(&a);
      if (u == plan.uses.end()) continue;
      const Wanted need = wanted_by(a);
      for (const auto& key : u->second) {
        const Wanted& failed = plan.sources.at(key).got.failed;
        if ((need.legacy && failed.legacy) || (need.bundles && failed.bundles) ||
            (need.attestations && failed.attestations)) {
          return false;
        }
      }
    }
    return true;
  }

  static Plan plan(const oci::Reference& ref, const std::vector<const policy::Policy*>& matched) {
    Plan out;
    for (const policy::Policy* p : matched) {
      for (const auto& a : p->authorities) {
        if (a.kind != policy::Authority::Kind::key && a.kind != policy::Authority::Kind::keyless) {
          continue;
        }
        std::vector<policy::SignatureSource> sources = a.sources;
        if (sources.empty()) sources.emplace_back();
        for (const auto& src : sources) {
          Source s;
          s.where.registry = src.registry.empty() ? ref.registry : src.registry;
          s.where.repository = src.repository.empty() ? ref.repository : src.repository;
          s.pull_secrets = src.pull_secrets;
          std::string key = s.where.registry + "/" + s.where.repository + "|";
          for (const auto& ps : src.pull_secrets) key += ps + ",";
          out.namespace_secrets = out.namespace_secrets || !src.pull_secrets.empty();
          auto [it, fresh] = out.sources.try_emplace(key, std::move(s));
          Wanted& w = it->second.wanted;
          const Wanted mine = wanted_by(a);
          w.legacy = w.legacy || mine.legacy;
          w.attestations = w.attestations || mine.attestations;
          w.bundles = w.bundles || mine.bundles;
          out.uses[&a].push_back(key);
        }
      }
    }
    return out;
  }

  // Everything the verdict for (ref, digest) depends on, as a string. Two admissions share a
  // cached or in-flight verdict only when every part is equal:
  //  - the repository and the digest (signatures live in the repository);
  //  - exactly which policies matched, by id: their compiled content (globs match the tag:
  //    `app:dev` and `app:prod` of one digest may answer to different policies);
  //  - the namespace, when some signature source reads Secrets there;
  //  - the pod's credentials, where they cover a registry this verdict reads: what a registry
  //    shows with them (or without them: a 404 instead of a 401) is theirs alone;
  //  - the fingerprint of each `key.kms` key read for it.
  std::string verdict_key(const oci::Reference& ref, const std::string& digest,
                          const std::vector<const policy::Policy*>& matched, const Plan& plan,
                          const Context& context, const KmsKeys& kms) const {
    std::string key = key_head(ref);
    key += digest;
    key += key_tail(ref, matched, plan, context, kms);
    return key;
  }
  // The verdict key's parts before and after the digest.
  static std::string key_head(const oci::Reference& ref) {
    std::string head;
    head.reserve(ref.registry.size() + ref.repository.size() + 2);
    head += ref.registry;
    head += '/';
    head += ref.repository;
    head += '@';
    return head;
  }
  std::string key_tail(const oci::Reference& ref, const std::vector<const policy::Policy*>& matched,
                       const Plan& plan, const Context& context, const KmsKeys& kms) const {
    // The matched policies by id (policy::Policy::id): their compiled content, in match order.
    // Not the set: a policy edited elsewhere in it, a tenant's own ImagePolicy say, changes
    // nothing this verdict depends on, and must not cost every image a fresh verification
    // (nor, during an outage, every last-known-good allow).
    std::string key = "#p";
    for (const policy::Policy* p : matched) {
      key += std::to_string(p->id);
      key += ',';
    }
    if (plan.namespace_secrets) key += "#ns=" + context.namespace_;
    bool creds = pod_holds(context, ref.registry, ref.repository);
    for (const auto& [k, s] : plan.sources) {
      creds = creds || pod_holds(context, s.where.registry, s.where.repository);
    }
    if (creds) key += "#c=" + context.credentials_id;
    // The KMS keys in use: a rotated key retires every verdict made with the old one.
    for (const auto& [uri, k] : kms) {
      key += "#k=" + uri + "=";
      key += k ? crypto::sha256_hex(k->spki_der()).substr(0, 16) : std::string("!");
    }
    return key;
  }

  // What verify_cached makes of one image before its digest: front()'s verdict, or the parsed
  // reference and the verdict key around the digest. Depends on the image, the policy set, the
  // namespace and the pull credentials only, so it is remembered (memo) under those.
  struct Prepared {
    std::optional<Verdict> decided;  // front() decided alone
    oci::Reference ref;
    bool kms = false;             // some matched authority reads a key.kms key: verify()'s
    bool require_digest = false;  // some matched policy has requireDigest
    std::string head, tail;       // the verdict key is head + digest + tail
  };
  Prepared prepare(const std::string& image, const policy::PolicySet* set,
                   const Context& context) const {
    Prepared out;
    auto first = front(image, set, context);
    if (auto* decided = std::get_if<Verdict>(&first)) {
      out.decided = std::move(*decided);
      return out;
    }
    Front& f = std::get<Front>(first);
    out.kms = uses_kms(f.matched);
    for (const policy::Policy* p : f.matched)
      out.require_digest = out.require_digest || p->require_digest;
    if (!out.kms) {
      const Plan pl = plan(f.ref, f.matched);
      out.head = key_head(f.ref);
      out.tail = key_tail(f.ref, f.matched, pl, context, KmsKeys{});
    }
    out.ref = std::move(f.ref);
    return out;
  }

  // prepare(), remembered for the current policy set: a cached admission parses and matches
  // each image once per policy set, namespace and set of pull credentials. Bounded: past
  // kMemoEntries entries it starts over; long image names are never remembered.
  static constexpr size_t kMemoEntries = 4096;
  static constexpr size_t kMemoImageBytes = 512;
  mutable std::mutex memo_mu;
  mutable std::shared_ptr<const policy::PolicySet> memo_set;  // held: its address is not reused
  mutable std::unordered_map<std::string, std::shared_ptr<const Prepared>> memo;

  std::shared_ptr<const Prepared> prepared(const std::string& image,
                                           const std::shared_ptr<const policy::PolicySet>& set,
                                           const Context& context) const {
    // Credentials without an id cannot be told apart: not remembered.
    const bool creds = context.credentials != nullptr;
    if (image.size() > kMemoImageBytes || (creds && context.credentials_id.empty()) || !set) {
      return std::make_shared<const Prepared>(prepare(image, set.get(), context));
    }
    // Length-prefixed parts: no image, namespace or id can forge another's key.
    std::string key = std::to_string(image.size());
    key += ':';
    key += image;
    key += std::to_string(context.namespace_.size());
    key += ':';
    key += context.namespace_;
    key += creds ? "c" : "-";
    key += context.credentials_id;
    {
      std::lock_guard lock(memo_mu);
      if (memo_set != set) {
        memo.clear();
        memo_set = set;
      } else if (auto it = memo.find(key); it != memo.end()) {
        return it->second;
      }
    }
    auto made = std::make_shared<const Prepared>(prepare(image, set.get(), context));
    std::lock_guard lock(memo_mu);
    if (memo_set == set) {
      if (memo.size() >= kMemoEntries) memo.clear();
      memo.emplace(std::move(key), made);
    }
    return made;
  }

  // The uncached work for one (image, digest) under one policy snapshot: read the signatures
  // of every source once, judge every matched policy (policy::judge), combine the results.
  asio::awaitable<Verdict> verify_digest(const std::string& image, const std::string& digest,
                                         const std::vector<const policy::Policy*>& matched,
                                         Plan& plan, Deadline deadline, const Context& context,
                                         ByteBudget& budget, KmsKeys& kms) {
    // Every distinct location is read once, whatever number of authorities uses it.
    std::optional<Error> fetch_failure;
    std::string failed_host;
    bool guessed = false;
    bool private_read = false;  // something was read with credentials the pod does not hold
    for (auto& [key, src] : plan.sources) {
      registry::PullCredentials creds = context.credentials;
      if (!src.pull_secrets.empty()) {
        if (context.source_credentials) {
          creds = co_await context.source_credentials(src.pull_secrets, deadline);
        } else {
          creds = nullptr;  // signaturePullSecrets without the Kubernetes API: sigil's own only
        }
      }
      if (!client.covers(creds, src.where.registry, src.where.repository) &&
          client.has_credentials_for(src.where.registry, src.where.repository)) {
        private_read = true;
      }
      src.got = co_await fetch_evidence(client, src.where, digest, src.wanted, deadline, creds,
                                        budget, options.limits);
      if (src.got.failure && !fetch_failure) {
        fetch_failure = src.got.failure;
        failed_host = src.where.registry;
      }
      guessed = guessed || src.got.guessed;
    }
    const bool withhold = private_read && !options.reveal_private_details;

    // An authority with several sources sees all their signatures.
    std::map<const policy::Authority*, policy::Evidence> merged;
    for (const auto& [authority, keys] : plan.uses) {
      if (keys.size() < 2) continue;
      policy::Evidence& m = merged[authority];
      for (const auto& k : keys) {
        const auto& ev = plan.sources.at(k).got.evidence;
        m.signatures.insert(m.signatures.end(), ev.signatures.begin(), ev.signatures.end());
        m.attestations.insert(m.attestations.end(), ev.attestations.begin(), ev.attestations.end());
        m.unreadable.insert(m.unreadable.end(), ev.unreadable.begin(), ev.unreadable.end());
      }
    }
    const policy::EvidenceFor evidence_for =
        [&](const policy::Authority& a) -> const policy::Evidence* {
      if (auto m = merged.find(&a); m != merged.end()) return &m->second;
      auto u = plan.uses.find(&a);
      if (u == plan.uses.end() || u->second.empty()) return nullptr;
      return &plan.sources.at(u->second.front()).got.evidence;
    };

    Verdict v;
    v.image = image;
    v.digest = digest;
    v.withheld = withhold;
    std::vector<Finding> refusals;
    std::vector<Finding> judged;  // the refusals of policies whose evidence was read in full
    std::vector<Finding> satisfied;
    std::set<std::string> refetched;
    bool rotated = false;
    // Every check of this image spends the admission's budget, and judging stops at its deadline.
    const std::shared_ptr<WorkBudget> checks =
        context.checks ? context.checks
                       : std::make_shared<WorkBudget>(options.max_admission_checks);
    const policy::JudgeLimits limits{
        checks.get(), [deadline] { return std::chrono::steady_clock::now() >= deadline; }};
    for (const policy::Policy* p : matched) {
      const policy::PolicyResult r = co_await detail::judge_policy(
          options.keys.get(), *p, digest, evidence_for, limits, kms, refetched, deadline, rotated);
      const Reason reason = reason_for(r);
      if (reason == Reason::none) {
        satisfied.push_back(Finding{Reason::none, p->name, r.authority, "", false});
        continue;
      }
      Finding f{reason, p->name, r.authority, r.message, p->mode == policy::Mode::warn};
      if (withhold) {
        spdlog::info(
            "image {} ({}) is not admitted by policy {}: {} [{}; withheld from the pod: read with "
            "sigil's own registry credentials]",
            image, short_digest(digest), p->name, r.message, name(reason));
      }
      if (!f.warn_mode && fetch_failure && read_in_full(*p, plan)) judged.push_back(f);
      (f.warn_mode ? v.warnings : refusals).push_back(std::move(f));
    }
    // Judged with a key that changed during this verification: the verdict key names the old
    // one, so this verdict is not remembered under it.
    if (rotated) v.cacheable = false;
    if (fetch_failure && !judged.empty()) {
      // A policy that read everything it needs refused: that is a judgement, whatever failed
      // for the others (it must not read as a registry failure, which a last-known-good allow
      // may stand in for). Not cached: the others were not judged.
      refusals = std::move(judged);
      v.cacheable = false;
    } else if (fetch_failure && (!refusals.empty() || !v.warnings.empty())) {
      // Some signatures could not be read, and what was read does not admit the image: the
      // missing ones might have. A registry failure, never cached, retried next admission.
      Verdict failed =
          registry_denial(image, digest, failed_host, *fetch_failure, "fetching signatures");
      failed.withheld = withhold;  // the digest, read with sigil's own credentials
      co_return soften_if_all_warn(std::move(failed), matched);
    }
    if (!refusals.empty()) {
      // Every enforcing policy that refuses is named, the most severe first (verdict.hpp).
      std::stable_sort(refusals.begin(), refusals.end(), [](const Finding& a, const Finding& b) {
        return severity(a.reason) > severity(b.reason);
      });
      v.outcome = Outcome::denied;
      v.report(refusals.front());
      v.also.assign(refusals.begin() + 1, refusals.end());
      // "Not signed" learnt from a guess about the registry is not remembered.
      if (guessed) v.cacheable = false;
    } else if (!v.warnings.empty()) {
      const Finding& first = v.warnings.front();
      v.outcome = Outcome::warned;
      v.report(Finding{Reason::warn, first.policy, first.authority, first.detail, false});
      if (guessed) v.cacheable = false;
    } else {
      v.outcome = Outcome::allowed;
      if (!satisfied.empty()) {
        v.report(satisfied.front());
        v.also.assign(satisfied.begin() + 1, satisfied.end());
      } else {
        v.reason = Reason::none;
      }
    }
    co_return v;
  }

  // Waits for the leader of an identical in-flight verification, bounded by our deadline.
  asio::awaitable<std::optional<Verdict>> wait_for(std::shared_ptr<VerdictChannel> ch,
                                                   Deadline deadline) {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
    auto result = co_await (ch->async_receive(asio::as_tuple(asio::use_awaitable)) ||
                            timer.async_wait(asio::as_tuple(asio::use_awaitable)));
    if (result.index() == 0) {
      auto& [ec, verdict] = std::get<0>(result);
      if (!ec) co_return verdict;
    }
    co_return std::nullopt;
  }
};

Engine::Engine(registry::Client& client, const Clock& clock, const EngineOptions& options)
    : impl_(std::make_unique<Impl>(client, clock, options)) {}
Engine::~Engine() = default;

std::shared_ptr<ByteBudget> Engine::admission_budget() const {
  return std::make_shared<ByteBudget>(impl_->options.max_admission_bytes, impl_->process_budget);
}

std::shared_ptr<WorkBudget> Engine::admission_checks(const std::string& namespace_) const {
  const auto& o = impl_->options;
  if (o.namespace_checks_per_second == 0)
    return std::make_shared<WorkBudget>(o.max_admission_checks);
  return std::make_shared<WorkBudget>(o.max_admission_checks, impl_->share_of(namespace_),
                                      impl_->clock);
}

size_t Engine::namespace_shares() const {
  std::lock_guard lock(impl_->shares_mu);
  return impl_->shares.size();
}

Engine::Stats Engine::stats() const {
  Stats s;
  s.cache_hits = impl_->cache.hits();
  s.cache_misses = impl_->cache.misses();
  {
    std::lock_guard lock(impl_->mu);
    s.coalesced = impl_->coalesced;
  }
  const auto r = impl_->resolver.stats();
  s.tag_resolutions = r.requests;
  s.tag_reads = r.reads;
  s.stale_registry_unavailable = impl_->last_good.used(Reason::registry_unavailable);
  s.stale_timeout = impl_->last_good.used(Reason::timeout);
  s.tag_cache_hits = r.cache_hits;
  return s;
}

std::optional<Verdict> Engine::verify_cached(
    const std::string& image, const std::shared_ptr<const policy::PolicySet>& policies,
    const Context& context) {
  // Exactly verify_ref's steps up to its verdict-cache lookup, giving up (nullopt) wherever
  // verify_ref would wait: a tag not in the pinning tag cache, requireDigest on a tag, a
  // `key.kms` key. A verdict found here is the one verify_ref would return from its cache.
  Impl& d = *impl_;
  const std::shared_ptr<const Impl::Prepared> p = d.prepared(image, policies, context);
  if (p->decided) {
    Verdict v = *p->decided;
    v.image = image;
    return v;
  }
  if (p->kms) return std::nullopt;
  std::string digest = p->ref.digest;  // valid: parse_reference checked it
  bool by_tag = false;
  if (digest.empty()) {
    // /validate never takes a tag from the cache: verify_ref resolves it, or denies NOT_PINNED.
    if (!context.pins_digest) return std::nullopt;
    if (p->require_digest) return std::nullopt;
    auto pinned = d.resolver.cached(p->ref, context.credentials_id);
    if (!pinned || !oci::is_valid_digest(*pinned)) return std::nullopt;
    digest = std::move(*pinned);
    by_tag = true;
  }
  if (digest.rfind("sha256:", 0) != 0) return std::nullopt;
  std::string key;
  key.reserve(p->head.size() + digest.size() + p->tail.size());
  key += p->head;
  key += digest;
  key += p->tail;
  auto hit = d.cache.find(key);
  if (hit) {
    hit->image = image;  // as verify_ref: the verdict names whoever asks
    hit->tag_cached = by_tag;
  }
  return hit;
}

void Engine::count_answered_now(const std::vector<Verdict>& verdicts) {
  uint64_t hits = 0, tags = 0;
  for (const Verdict& v : verdicts) {
    hits += v.cached ? 1 : 0;
    tags += v.tag_cached ? 1 : 0;
  }
  if (hits > 0) impl_->cache.count_hits(hits);
  if (tags > 0) impl_->resolver.count_cached(tags);
}

asio::awaitable<Verdict> Engine::verify_ref(std::string image,
                                            std::shared_ptr<const policy::PolicySet> policies,
                                            Deadline deadline, Context context,
                                            bool written_by_tag) {
  Impl& d = *impl_;
  auto first = front(image, policies.get(), context);
  if (auto* decided = std::get_if<Verdict>(&first)) co_return std::move(*decided);
  Front& f = std::get<Front>(first);
  const oci::Reference& ref = f.ref;
  const std::vector<const policy::Policy*>& matched = f.matched;
  const bool warn_no_match = f.warn_no_match;
  const Finding& no_match = no_match_finding();

  // spec.requireDigest: a tag-only reference such a policy matches is refused before any
  // registry is asked (clusters that forbid /mutate's pinning). So is a Pod's new image by tag
  // while pinning is on (Context::pod_image): /mutate did not pin it, and resolving the tag
  // here would verify a digest the kubelet need not pull (a registry may answer /mutate's read
  // with an error and this one with a signed digest, then serve the kubelet another). A
  // policy in warn mode warns instead: the image is verified pinned to the digest its tag
  // resolves to now, and the warning is added on the way out, never cached (it depends on how
  // the image is written).
  if (ref.digest.empty()) {
    const bool unpinned = context.pod_image && d.options.pinning;
    const policy::Policy* enforcing = nullptr;
    const policy::Policy* warning = nullptr;
    for (const policy::Policy* p : matched) {
      if (!p->require_digest && !unpinned) continue;
      const policy::Policy*& slot = p->mode == policy::Mode::warn ? warning : enforcing;
      // requireDigest's own reason first: the policy's author asked for it.
      if (slot == nullptr || (p->require_digest && !slot->require_digest)) slot = p;
    }
    if (const policy::Policy* strict = enforcing ? enforcing : warning) {
      // The detail is the reference the policy wants to see.
      const Reason reason = strict->require_digest ? Reason::digest_required : Reason::not_pinned;
      Finding why{reason, strict->name, "", ref.name() + ":" + ref.tag + "@sha256:...", false};
      if (enforcing) {
        Verdict v = denial(image, reason, why.detail);
        v.report(why);
        co_return v;
      }
      auto now = co_await d.resolver.resolve(ref, deadline, context.credentials,
                                             context.credentials_id, tag_freshness(context));
      if (!now.ok()) {
        co_return soften_if_all_warn(
            registry_denial(image, "", ref.registry, now.error(), "resolving the tag"), matched);
      }
      std::string pinned = ref.name() + ":" + ref.tag + "@" + *now;
      // The pod wrote the tag: a last-known-good verdict stands in only with pinning.
      Verdict v = co_await verify_ref(std::move(pinned), policies, deadline, context, true);
      v.image = image;  // rendered as the pod wrote it
      if (v.outcome != Outcome::denied) {
        v.outcome = Outcome::warned;
        if (v.reason == Reason::none) {
          v.report(why);
          v.also.clear();
        }
      }
      why.warn_mode = true;
      v.warnings.push_back(std::move(why));
      co_return v;
    }
  }

  // Verify digests, never tags: the tag is resolved exactly once here, and everything below
  // works on that digest.
  std::string digest = ref.digest;
  if (digest.empty()) {
    // Coalesced with concurrent admissions of the same tag, but never answered from before
    // this request arrived (tag_resolver.hpp): a moved tag is seen at once. Except when the
    // caller pins the Pod to the digest (/mutate with pinning): then the short tag cache may
    // answer, since the Pod runs exactly the digest verified here.
    auto resolved = co_await d.resolver.resolve(ref, deadline, context.credentials,
                                                context.credentials_id, tag_freshness(context));
    if (!resolved.ok()) {
      co_return soften_if_all_warn(
          registry_denial(image, "", ref.registry, resolved.error(), "resolving the tag"), matched);
    }
    digest = std::move(*resolved);
  }
  // A last-known-good allow may stand in when the registry cannot be reached: for a digest the
  // pod wrote, or a tag /mutate pins (stale.hpp: may_stand_in).
  const bool by_digest = !ref.digest.empty() && !written_by_tag;
  if (digest.rfind("sha256:", 0) != 0 || !oci::is_valid_digest(digest)) {
    Verdict v =
        denial(image, Reason::invalid_image, "only sha256 digests can be verified, got " + digest);
    v.digest = digest;
    co_return v;
  }

  // Declared before the plan: the evidence the plan will hold keeps reservations on it, and
  // locals are destroyed in reverse order.
  std::shared_ptr<ByteBudget> budget = context.budget;
  if (!budget) budget = admission_budget();
  Impl::Plan plan = Impl::plan(ref, matched);
  KmsKeys kms = co_await detail::resolve_kms(d.options.keys.get(), matched, deadline);
  const std::string key = d.verdict_key(ref, digest, matched, plan, context, kms);

  // Coalesce: the first request for a key does the work; later identical ones wait for it.
  auto executor = co_await asio::this_coro::executor;
  // The flight this request leads or joins: the key's; after its leader's own failure (below),
  // one of this admission's namespace only; after another such failure, none (`solo`).
  std::string flight = key;
  bool solo = false;
  for (;;) {
    // Cached (at first, or meanwhile, after a leader's own failure).
    if (auto hit = d.cache.get(key)) {
      hit->image = image;  // the verdict names whoever asks: it holds no text about the image
      co_return *hit;
    }
    std::shared_ptr<VerdictChannel> my_channel;
    Deadline leader_deadline{};
    {
      std::lock_guard lock(d.mu);
      auto it = d.in_flight.find(flight);
      if (it != d.in_flight.end()) {
        my_channel = std::make_shared<VerdictChannel>(executor, 1);
        it->second.waiters.push_back(my_channel);
        leader_deadline = it->second.deadline;
        ++d.coalesced;
      } else {
        d.in_flight.emplace(flight, Impl::Flight{deadline, {}});
      }
    }
    if (!my_channel) break;  // this request leads
    auto v = co_await d.wait_for(my_channel, deadline);
    // The leader ran out of its own time (a shorter ?timeout=, which any client of the port may
    // send, or an earlier start) or of its own admission's budgets (other images of its pod, its
    // namespace's share of checks): that says nothing about ours. Once more, in a flight of our
    // namespace's admissions only: a namespace whose share is spent could otherwise keep the
    // key's flight going (each refused at its first check) and hand every other namespace its
    // denial, and our namespace's waiters still verify once, not each on its own. If that
    // flight's leader fails on its own too, alone.
    const Reason why = v ? reported_reason(*v) : Reason::none;
    const bool leaders_own =
        (why == Reason::timeout && leader_deadline < deadline) || why == Reason::budget_exceeded;
    if (v && leaders_own && std::chrono::steady_clock::now() < deadline) {
      if (flight == key) {
        // No key starts with NUL (it starts with the parsed image), and the key's length makes
        // (key, namespace) one string whatever bytes a forged review puts in its namespace.
        flight = std::string(1, '\0') + std::to_string(key.size()) + ':' + key + context.namespace_;
        continue;
      }
      solo = true;
      break;
    }
    if (v) {
      v->image = image;
      co_return d.last_good.answer(std::move(*v), key, by_digest, d.options.pinning);
    }
    Verdict late =
        denial(image, Reason::timeout, "verification did not finish before the webhook deadline");
    late.digest = digest;
    // A digest resolved with sigil's own registry credentials is not the pod's to learn.
    late.withheld = !d.options.reveal_private_details &&
                    !d.client.covers(context.credentials, ref.registry, ref.repository) &&
                    d.client.has_credentials_for(ref.registry, ref.repository);
    co_return d.last_good.answer(std::move(late), key, by_digest, d.options.pinning);
  }

  // An image on a registry a pod named takes from the pool such registries share too, so that
  // however many of them stall, the operator's registries keep their share of the process.
  if (!d.client.operator_named(ref.registry)) {
    budget = std::make_shared<ByteBudget>(std::numeric_limits<uint64_t>::max(), std::move(budget),
                                          d.pod_registries_budget);
  }
  Verdict v;
  try {
    v = co_await d.verify_digest(image, digest, matched, plan, deadline, context, *budget, kms);
  } catch (const std::exception& e) {
    // Fail closed: a bug below must never become an allow.
    v = denial(image, Reason::internal, std::string("internal error: ") + e.what());
    v.digest = digest;
  }
  if (warn_no_match && v.outcome != Outcome::denied) {
    v.outcome = Outcome::warned;
    v.warnings.push_back(no_match);
    if (v.reason == Reason::none) {
      v.report(no_match);
      v.also.clear();
    }
  }
  // Owned by the admission's namespace: no one namespace's verdicts push out everyone's.
  d.cache.put(key, v, context.namespace_);
  d.last_good.record(key, v, context.namespace_);
  std::vector<std::shared_ptr<VerdictChannel>> waiters;
  if (!solo) {  // a solo verification leads no flight: the one in_flight holds is another's
    std::lock_guard lock(d.mu);
    auto it = d.in_flight.find(flight);
    if (it != d.in_flight.end()) {
      waiters = std::move(it->second.waiters);
      d.in_flight.erase(it);
    }
  }
  // Waiters get the fresh verdict: each decides for itself whether a stale one may stand in.
  for (auto& w : waiters) w->try_send(boost::system::error_code{}, v);
  co_return d.last_good.answer(std::move(v), key, by_digest, d.options.pinning);
}

}  // namespace sigil::verify
