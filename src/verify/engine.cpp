#include "verify/engine.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

#include "common/encoding.hpp"
#include "crypto/bundle.hpp"
#include "crypto/sigstore.hpp"
#include "oci/manifest.hpp"
#include "oci/reference.hpp"
#include "verify/tag_resolver.hpp"

namespace sigil::verify {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

const char* registry_reason(Errc code) {
  switch (code) {
    case Errc::unauthorized:
      return "REGISTRY_AUTH";
    case Errc::timeout:
      return "TIMEOUT";
    case Errc::not_found:
      return "IMAGE_NOT_FOUND";
    case Errc::verification:
      return "REGISTRY_INTEGRITY";
    case Errc::too_large:
      return "REGISTRY_INTEGRITY";
    default:
      return "REGISTRY_UNAVAILABLE";
  }
}

Verdict deny(std::string image, std::string digest, std::string reason, std::string message) {
  Verdict v;
  v.outcome = Outcome::denied;
  v.image = std::move(image);
  v.digest = std::move(digest);
  v.reason_code = std::move(reason);
  v.message = std::move(message);
  return v;
}

// A registry failure becomes a denial whose message says what the registry did; it is never
// cached, so the next admission tries again.
Verdict registry_denial(const std::string& image, const std::string& digest, const Error& e,
                        std::string_view doing) {
  std::string msg = "image " + image + ": " + std::string(doing) + ": " + e.message;
  return deny(image, digest, registry_reason(e.code), std::move(msg));
}

// A policy in warn mode never blocks, not even when the registry fails: when every policy
// that matched is in warn mode, a registry failure becomes a warning.
Verdict soften_if_all_warn(Verdict v, const std::vector<const policy::Policy*>& matched) {
  for (const policy::Policy* p : matched) {
    if (p->mode != policy::Mode::warn) return v;
  }
  v.outcome = Outcome::warned;
  v.warnings.push_back(v.message + " (warn mode)");
  return v;
}

using VerdictChannel =
    asio::experimental::concurrent_channel<void(boost::system::error_code, Verdict)>;

struct InFlight {
  std::vector<std::shared_ptr<VerdictChannel>> waiters;
};

struct FoundBundle {
  std::string json;
  std::string source;  // "referrer sha256:ab…"
};

struct BundleHaul {
  std::vector<FoundBundle> bundles;
  std::vector<std::string> unreadable;
};

bool is_bundle_type(std::string_view t) {
  return t == crypto::kBundleMediaTypeV03 ||
         t.rfind("application/vnd.dev.sigstore.bundle+json;version=", 0) == 0;
}

struct CacheEntry {
  Verdict verdict;
  std::chrono::system_clock::time_point expires;
  std::list<std::string>::iterator lru;
};

}  // namespace

struct Engine::Impl {
  registry::Client& client;
  const Clock& clock;
  EngineOptions options;
  TagResolver resolver;

  mutable std::mutex mu;
  std::unordered_map<std::string, CacheEntry> cache;
  std::list<std::string> lru;  // front = most recently used
  std::unordered_map<std::string, InFlight> in_flight;
  Stats stats;

  Impl(registry::Client& c, const Clock& k, EngineOptions o)
      : client(c), clock(k), options(o), resolver(c) {}

  std::optional<Verdict> cache_get(const std::string& key) {
    std::lock_guard lock(mu);
    auto it = cache.find(key);
    if (it == cache.end()) {
      ++stats.cache_misses;
      return std::nullopt;
    }
    if (clock.now() >= it->second.expires) {
      lru.erase(it->second.lru);
      cache.erase(it);
      ++stats.cache_misses;
      return std::nullopt;
    }
    lru.splice(lru.begin(), lru, it->second.lru);
    ++stats.cache_hits;
    Verdict v = it->second.verdict;
    v.cached = true;
    return v;
  }

  void cache_put(const std::string& key, const Verdict& v) {
    // Only judgements about signatures are cached; a registry, deadline or internal failure
    // (even one a warn-mode policy turned into a warning) is retried on the next admission.
    const std::string& rc = v.reason_code;
    bool failure = rc == "REGISTRY_AUTH" || rc == "REGISTRY_UNAVAILABLE" || rc == "TIMEOUT" ||
                   rc == "IMAGE_NOT_FOUND" || rc == "REGISTRY_INTEGRITY" || rc == "INTERNAL";
    bool judgement = !failure;
    if (!judgement || options.cache_capacity == 0) return;
    auto ttl = v.outcome == Outcome::denied
                   ? std::min(options.cache_ttl, options.negative_cache_ttl)
                   : options.cache_ttl;
    if (ttl.count() <= 0) return;
    std::lock_guard lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) {
      lru.erase(it->second.lru);
      cache.erase(it);
    }
    while (cache.size() >= options.cache_capacity && !lru.empty()) {
      cache.erase(lru.back());
      lru.pop_back();
    }
    lru.push_front(key);
    cache.emplace(key, CacheEntry{v, clock.now() + ttl, lru.begin()});
  }

  // Fetches every legacy cosign signature of digest (sha256-<hex>.sig in the same repository).
  // A missing .sig tag means "no signatures", not an error.
  asio::awaitable<Result<std::vector<crypto::Signature>>> fetch_signatures(
      const oci::Reference& ref, const std::string& digest, registry::Deadline deadline,
      const registry::PullCredentials& creds) {
    std::vector<crypto::Signature> out;
    const std::string tag = oci::signature_tag(digest);
    auto manifest =
        co_await client.get_manifest(ref.registry, ref.repository, tag, deadline, creds);
    if (!manifest.ok()) {
      if (manifest.error().code == Errc::not_found) co_return out;
      co_return manifest.error();
    }
    auto parsed = oci::parse_manifest(manifest->body, manifest->media_type);
    if (!parsed.ok()) {
      co_return make_error(Errc::parse_error, "signature manifest " + tag +
                                                  " is malformed: " + parsed.error().message);
    }
    if (parsed->is_index) {
      co_return make_error(Errc::parse_error,
                           "signature tag " + tag + " holds an index, not a manifest");
    }
    size_t index = 0;
    for (const auto& layer : parsed->layers) {
      if (out.size() >= options.max_signatures) break;
      const size_t layer_index = index++;
      if (layer.media_type != oci::media::kCosignSimpleSigning) continue;
      auto sig_it = layer.annotations.find(std::string(crypto::kAnnotationSignature));
      if (sig_it == layer.annotations.end()) continue;  // cosign itself rejects such a layer
      auto raw_sig = base64_decode(sig_it->second);
      if (!raw_sig.ok() || raw_sig->empty()) continue;
      if (layer.size > options.max_signature_payload) continue;
      auto payload = co_await client.get_blob(ref.registry, ref.repository, layer.digest,
                                              options.max_signature_payload, deadline, creds);
      if (!payload.ok()) co_return payload.error();
      crypto::Signature sig;
      sig.payload = std::move(*payload);
      sig.signature = std::move(*raw_sig);
      if (auto c = layer.annotations.find(std::string(crypto::kAnnotationCertificate));
          c != layer.annotations.end()) {
        sig.certificate_pem = c->second;
      }
      if (auto c = layer.annotations.find(std::string(crypto::kAnnotationChain));
          c != layer.annotations.end()) {
        sig.chain_pem = c->second;
      }
      if (auto c = layer.annotations.find(std::string(crypto::kAnnotationBundle));
          c != layer.annotations.end()) {
        sig.bundle_json = c->second;
      }
      if (auto c = layer.annotations.find(std::string(crypto::kAnnotationRfc3161));
          c != layer.annotations.end()) {
        sig.rfc3161_json = c->second;
      }
      sig.source = ".sig layer " + std::to_string(layer_index);
      out.push_back(std::move(sig));
    }
    co_return out;
  }

  // Sigstore bundles attached to digest as OCI 1.1 referrers (cosign v3's default): the
  // referrers API, or where the registry has none, the referrers tag schema `sha256-<hex>`.
  // Each bundle manifest is fetched by digest (so its bytes are verified) and must name this
  // digest as its subject; an index that lists other things is not trusted for anything.
  asio::awaitable<Result<BundleHaul>> fetch_bundles(const oci::Reference& ref,
                                                    const std::string& digest,
                                                    registry::Deadline deadline,
                                                    const registry::PullCredentials& creds) {
    BundleHaul haul;
    std::vector<oci::Descriptor> listed;
    bool via_api = true;
    auto r =
        co_await client.get_referrers(ref.registry, ref.repository, digest,
                                      std::string(crypto::kBundleMediaTypeV03), deadline, creds);
    if (r.ok()) {
      listed = std::move(*r);
    } else if (r.error().code == Errc::unsupported) {
      via_api = false;  // no referrers API: the tag schema
    } else {
      co_return r.error();
    }
    const std::string schema_tag = oci::referrers_tag(digest);
    if (!via_api) {
      auto idx =
          co_await client.get_manifest(ref.registry, ref.repository, schema_tag, deadline, creds);
      if (!idx.ok()) {
        if (idx.error().code == Errc::not_found) co_return haul;
        co_return idx.error();
      }
      auto parsed = oci::parse_manifest(idx->body, idx->media_type);
      if (!parsed.ok() || !parsed->is_index) {
        haul.unreadable.push_back("referrers tag " + schema_tag + ": " +
                                  (parsed.ok() ? "not an image index" : parsed.error().message));
        co_return haul;
      }
      listed = std::move(parsed->manifests);
    }
    size_t taken = 0;
    for (const auto& d : listed) {
      if (!is_bundle_type(d.artifact_type)) continue;
      if (taken++ >= options.max_bundles) break;
      const std::string where = "referrer " + short_digest(d.digest);
      auto m =
          co_await client.get_manifest(ref.registry, ref.repository, d.digest, deadline, creds);
      if (!m.ok()) {
        if (m.error().code == Errc::not_found) {
          haul.unreadable.push_back(where + ": listed but not found");
          continue;
        }
        co_return m.error();
      }
      auto manifest = oci::parse_manifest(m->body, m->media_type);
      if (!manifest.ok() || manifest->is_index) {
        haul.unreadable.push_back(
            where + ": " + (manifest.ok() ? std::string("an index") : manifest.error().message));
        continue;
      }
      if (!manifest->subject || manifest->subject->digest != digest) {
        haul.unreadable.push_back(where + ": its subject is not this image");
        continue;
      }
      const oci::Descriptor* layer = nullptr;
      for (const auto& l : manifest->layers) {
        if (is_bundle_type(l.media_type)) {
          layer = &l;
          break;
        }
      }
      if (layer == nullptr) {
        haul.unreadable.push_back(where + ": no sigstore bundle layer");
        continue;
      }
      if (layer->size > options.max_bundle_size) {
        haul.unreadable.push_back(where + ": bundle larger than the cap");
        continue;
      }
      auto blob = co_await client.get_blob(ref.registry, ref.repository, layer->digest,
                                           options.max_bundle_size, deadline, creds);
      if (!blob.ok()) co_return blob.error();
      haul.bundles.push_back({std::move(*blob), where});
    }
    co_return haul;
  }

  // The uncached work for one (image name, digest) under one policy snapshot.
  // Everything one signature location holds for digest: legacy .sig layers and bundles,
  // read at once (the latency is the slower of the two, not their sum).
  struct Gathered {
    policy::Evidence evidence;
    std::optional<Error> failure;  // a part that could not be read
  };
  asio::awaitable<Gathered> gather(const oci::Reference& where, const std::string& digest,
                                   bool legacy, bool bundles, registry::Deadline deadline,
                                   const registry::PullCredentials& creds) {
    using namespace asio::experimental::awaitable_operators;
    Gathered g;
    auto legacy_task =
        [&]() -> asio::awaitable<std::optional<Result<std::vector<crypto::Signature>>>> {
      if (!legacy) co_return std::vector<crypto::Signature>{};
      co_return co_await fetch_signatures(where, digest, deadline, creds);
    };
    auto bundle_task = [&]() -> asio::awaitable<std::optional<Result<BundleHaul>>> {
      if (!bundles) co_return BundleHaul{};
      co_return co_await fetch_bundles(where, digest, deadline, creds);
    };
    auto [sigs, haul] = co_await (legacy_task() && bundle_task());
    if (sigs && sigs->ok()) {
      g.evidence = policy::evidence_from_legacy(sigs->value());
    } else {
      g.failure = sigs ? sigs->error() : make_error(Errc::internal, "no result");
    }
    if (haul && haul->ok()) {
      for (auto& b : haul->value().bundles) {
        auto parsed = crypto::parse_bundle(b.json);
        if (!parsed.ok()) {
          g.evidence.unreadable.push_back(b.source + ": " + parsed.error().message);
          continue;
        }
        auto e = crypto::entity_from_bundle(*parsed, b.source);
        if (!e.ok()) {
          g.evidence.unreadable.push_back(b.source + ": " + e.error().message);
          continue;
        }
        g.evidence.signatures.push_back(std::move(*e));
      }
      for (auto& u : haul->value().unreadable) g.evidence.unreadable.push_back(std::move(u));
    } else if (!g.failure) {
      g.failure = haul ? haul->error() : make_error(Errc::internal, "no result");
    }
    co_return g;
  }

  // The uncached work for one (image name, digest) under one policy snapshot.
  asio::awaitable<Verdict> evaluate(const std::string& image, const oci::Reference& ref,
                                    const std::string& digest,
                                    const std::vector<const policy::Policy*>& matched,
                                    registry::Deadline deadline, const Context& context) {
    // Where each authority reads signatures: the image's own repository with the admission's
    // credentials, or its `source` repositories with their signaturePullSecrets. Every
    // distinct location is read once, whatever number of authorities uses it.
    struct Location {
      oci::Reference where;
      std::vector<std::string> pull_secrets;
      bool legacy = false, bundles = false;
      Gathered got;
    };
    std::map<std::string, Location> locations;
    std::map<const policy::Authority*, std::vector<std::string>> uses;  // authority -> keys
    for (const policy::Policy* p : matched) {
      for (const auto& a : p->authorities) {
        if (a.kind != policy::Authority::Kind::key && a.kind != policy::Authority::Kind::keyless) {
          continue;
        }
        std::vector<policy::SignatureSource> sources = a.sources;
        if (sources.empty()) sources.emplace_back();
        for (const auto& src : sources) {
          Location loc;
          loc.where.registry = src.registry.empty() ? ref.registry : src.registry;
          loc.where.repository = src.repository.empty() ? ref.repository : src.repository;
          loc.pull_secrets = src.pull_secrets;
          std::string key = loc.where.registry + "/" + loc.where.repository + "|";
          for (const auto& ps : src.pull_secrets) key += ps + ",";
          auto [it, fresh] = locations.try_emplace(key, std::move(loc));
          it->second.legacy = it->second.legacy || a.format != policy::SignatureFormat::bundle;
          it->second.bundles = it->second.bundles || a.format != policy::SignatureFormat::legacy;
          uses[&a].push_back(key);
        }
      }
    }
    std::optional<Error> fetch_failure;
    for (auto& [key, loc] : locations) {
      registry::PullCredentials creds = context.credentials;
      if (!loc.pull_secrets.empty()) {
        if (context.source_credentials) {
          creds = co_await context.source_credentials(loc.pull_secrets, deadline);
        } else {
          creds = nullptr;  // signaturePullSecrets without the Kubernetes API: sigil's own only
        }
      }
      loc.got = co_await gather(loc.where, digest, loc.legacy, loc.bundles, deadline, creds);
      if (loc.got.failure && !fetch_failure) fetch_failure = loc.got.failure;
    }
    // An authority with several sources sees all their signatures.
    std::map<const policy::Authority*, policy::Evidence> merged;
    for (const auto& [authority, keys] : uses) {
      if (keys.size() < 2) continue;
      policy::Evidence& m = merged[authority];
      for (const auto& k : keys) {
        const auto& ev = locations.at(k).got.evidence;
        m.signatures.insert(m.signatures.end(), ev.signatures.begin(), ev.signatures.end());
        m.unreadable.insert(m.unreadable.end(), ev.unreadable.begin(), ev.unreadable.end());
      }
    }
    const policy::EvidenceFor evidence_for =
        [&](const policy::Authority& a) -> const policy::Evidence* {
      if (auto m = merged.find(&a); m != merged.end()) return &m->second;
      auto u = uses.find(&a);
      if (u == uses.end() || u->second.empty()) return nullptr;
      return &locations.at(u->second.front()).got.evidence;
    };

    Verdict v;
    v.image = image;
    v.digest = digest;
    v.outcome = Outcome::allowed;
    std::vector<std::string> denials;
    std::vector<std::string> satisfied;
    for (const policy::Policy* p : matched) {
      policy::PolicyResult r = policy::evaluate(*p, digest, evidence_for);
      if (r.satisfied) {
        satisfied.push_back(p->name + (r.authority.empty() ? "" : "/" + r.authority));
        continue;
      }
      std::string line = "image " + image + " (" + short_digest(digest) +
                         ") is not admitted by policy " + p->name + ": " + r.message;
      if (p->mode == policy::Mode::warn) {
        v.warnings.push_back(line + " (warn mode)");
        continue;
      }
      if (v.reason_code.empty()) v.reason_code = r.reason_code;
      denials.push_back(std::move(line));
    }
    if (fetch_failure && (!denials.empty() || !v.warnings.empty())) {
      // Some signatures could not be read, and what was read does not admit the image: the
      // missing ones might have. A registry failure, never cached, retried next admission.
      co_return soften_if_all_warn(
          registry_denial(image, digest, *fetch_failure, "fetching signatures"), matched);
    }
    if (!denials.empty()) {
      v.outcome = Outcome::denied;
      std::string msg;
      for (const auto& d : denials) msg += (msg.empty() ? "" : "; ") + d;
      v.message = std::move(msg);
    } else if (!v.warnings.empty()) {
      v.outcome = Outcome::warned;
      v.reason_code = "WARN";
      v.message = v.warnings.front();
    } else {
      std::string by;
      for (const auto& s : satisfied) by += (by.empty() ? "" : ", ") + s;
      v.message = "image " + image + " (" + short_digest(digest) + ") admitted by " + by;
    }
    co_return v;
  }

  // Waits for the leader of an identical in-flight verification, bounded by our deadline.
  asio::awaitable<std::optional<Verdict>> wait_for(std::shared_ptr<VerdictChannel> ch,
                                                   registry::Deadline deadline) {
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

Engine::Engine(registry::Client& client, const Clock& clock, EngineOptions options)
    : impl_(std::make_unique<Impl>(client, clock, options)) {}
Engine::~Engine() = default;

Engine::Stats Engine::stats() const {
  Stats s;
  {
    std::lock_guard lock(impl_->mu);
    s = impl_->stats;
  }
  const auto r = impl_->resolver.stats();
  s.tag_resolutions = r.requests;
  s.tag_reads = r.reads;
  return s;
}

asio::awaitable<Verdict> Engine::verify(std::string image,
                                        std::shared_ptr<const policy::PolicySet> policies,
                                        registry::Deadline deadline, Context context) {
  Impl& d = *impl_;
  if (!policies)
    co_return deny(image, "", "INTERNAL", "image " + image + ": no policy set is loaded");

  auto ref = oci::parse_reference(image);
  if (!ref.ok()) {
    co_return deny(
        image, "", "INVALID_IMAGE",
        "image \"" + image + "\" is not a valid image reference: " + ref.error().message);
  }
  auto matched = policies->match(*ref, context.namespace_);
  // The no-match behaviour follows the ClusterImagePolicies alone: a namespace's ImagePolicy
  // can add requirements, never stand in for a cluster policy (an ImagePolicy `static: pass`
  // for ** must not lift a cluster-wide deny).
  const bool cluster_matched =
      std::any_of(matched.begin(), matched.end(),
                  [](const policy::Policy* p) { return p->namespace_scope.empty(); });
  std::string no_match_warning;
  if (!cluster_matched) {
    Verdict v;
    v.image = image;
    v.reason_code = "NO_MATCHING_POLICY";
    switch (policies->no_match()) {
      case policy::NoMatch::allow:
        v.outcome = Outcome::allowed;
        v.message =
            "image " + image + " matches no ClusterImagePolicy (allowed by no-match-policy)";
        break;
      case policy::NoMatch::warn:
        v.outcome = Outcome::warned;
        v.message = "image " + image + " matches no ClusterImagePolicy";
        v.warnings.push_back(v.message);
        no_match_warning = v.message;
        break;
      case policy::NoMatch::deny:
        v.outcome = Outcome::denied;
        v.message = "image " + image +
                    " matches no ClusterImagePolicy, and images without a policy are denied";
        break;
    }
    // Without namespace policies to add requirements, that is the answer.
    if (v.outcome == Outcome::denied || matched.empty()) co_return v;
  }

  // spec.requireDigest: a tag-only reference such a policy matches is refused before any
  // registry is asked (clusters that forbid /mutate's pinning). A policy in warn mode warns
  // instead: the image is verified pinned to the digest its tag resolves to now, and the warning
  // is added on the way out, never cached (it depends on how the image is written).
  if (ref->digest.empty()) {
    const policy::Policy* enforcing = nullptr;
    const policy::Policy* warning = nullptr;
    for (const policy::Policy* p : matched) {
      if (!p->require_digest) continue;
      const policy::Policy*& slot = p->mode == policy::Mode::warn ? warning : enforcing;
      if (slot == nullptr) slot = p;
    }
    if (const policy::Policy* strict = enforcing ? enforcing : warning) {
      const std::string why = "image " + image + " is referenced by tag; policy " + strict->name +
                              " requires a digest (" + ref->name() + ":" + ref->tag +
                              "@sha256:...)";
      if (enforcing) co_return deny(image, "", "DIGEST_REQUIRED", why);
      auto now =
          co_await d.resolver.resolve(*ref, deadline, context.credentials, context.credentials_id);
      if (!now.ok()) {
        co_return soften_if_all_warn(registry_denial(image, "", now.error(), "resolving the tag"),
                                     matched);
      }
      std::string pinned = ref->name() + ":" + ref->tag + "@" + *now;
      Verdict v = co_await verify(std::move(pinned), policies, deadline, context);
      v.image = image;
      if (v.outcome != Outcome::denied) {
        v.outcome = Outcome::warned;
        if (v.reason_code.empty()) v.reason_code = "DIGEST_REQUIRED";
      }
      v.warnings.push_back(why + " (warn mode)");
      co_return v;
    }
  }

  // Verify digests, never tags: the tag is resolved exactly once here, and everything below
  // works on that digest.
  std::string digest = ref->digest;
  if (digest.empty()) {
    // Coalesced with concurrent admissions of the same tag, but never answered from before
    // this request arrived (tag_resolver.hpp): a moved tag is seen at once.
    auto resolved =
        co_await d.resolver.resolve(*ref, deadline, context.credentials, context.credentials_id);
    if (!resolved.ok()) {
      co_return soften_if_all_warn(
          registry_denial(image, "", resolved.error(), "resolving the tag"), matched);
    }
    digest = std::move(*resolved);
  }
  if (digest.rfind("sha256:", 0) != 0 || !oci::is_valid_digest(digest)) {
    co_return deny(image, digest, "INVALID_IMAGE",
                   "image " + image + ": only sha256 digests can be verified, got " + digest);
  }

  // The verdict depends on the digest and the policies that applied (a namespace's
  // ImagePolicies among them), never on who asked: signatures are judged the same for all.
  std::string key = ref->name() + "@" + digest + "#" + std::to_string(policies->generation());
  if (policies->has_namespaced()) key += "#ns=" + context.namespace_;
  // In-flight work is shared only with the same credentials (a registry failure is theirs).
  const std::string flight = key + "#creds=" + context.credentials_id;
  if (auto hit = d.cache_get(key)) {
    hit->image = image;
    co_return *hit;
  }

  // Coalesce: the first request for a key does the work; later identical ones wait for it.
  auto executor = co_await asio::this_coro::executor;
  std::shared_ptr<VerdictChannel> my_channel;
  {
    std::lock_guard lock(d.mu);
    auto it = d.in_flight.find(flight);
    if (it != d.in_flight.end()) {
      my_channel = std::make_shared<VerdictChannel>(executor, 1);
      it->second.waiters.push_back(my_channel);
      ++d.stats.coalesced;
    } else {
      d.in_flight.emplace(flight, InFlight{});
    }
  }
  if (my_channel) {
    auto v = co_await d.wait_for(my_channel, deadline);
    if (v) {
      v->image = image;
      co_return *v;
    }
    co_return deny(image, digest, "TIMEOUT",
                   "image " + image + ": verification did not finish before the webhook deadline");
  }

  Verdict v;
  try {
    v = co_await d.evaluate(image, *ref, digest, matched, deadline, context);
  } catch (const std::exception& e) {
    // Fail closed: a bug below must never become an allow.
    v = deny(image, digest, "INTERNAL", "image " + image + ": internal error: " + e.what());
  }
  if (!no_match_warning.empty() && v.outcome != Outcome::denied) {
    v.outcome = Outcome::warned;
    v.warnings.push_back(no_match_warning);
    if (v.reason_code.empty()) v.reason_code = "NO_MATCHING_POLICY";
  }
  d.cache_put(key, v);
  std::vector<std::shared_ptr<VerdictChannel>> waiters;
  {
    std::lock_guard lock(d.mu);
    auto it = d.in_flight.find(flight);
    if (it != d.in_flight.end()) {
      waiters = std::move(it->second.waiters);
      d.in_flight.erase(it);
    }
  }
  for (auto& w : waiters) w->try_send(boost::system::error_code{}, v);
  co_return v;
}

}  // namespace sigil::verify
