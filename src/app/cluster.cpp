// app/cluster.cpp: see cluster.hpp.
#include "app/cluster.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include "kube/cache.hpp"
#include "kube/client.hpp"
#include "kube/reflector.hpp"
#include "kube/status.hpp"
#include "registry/docker_config.hpp"

namespace sigil::app {

namespace asio = boost::asio;

namespace {

constexpr const char* kCompiled = "Compiled";
constexpr const char* kInvalid = "Invalid";
constexpr const char* kSecretUnavailable = "SecretUnavailable";

// A single-object parse error reads "<origin> document 1 (<name>): field: what"; the status
// of that object needs only "field: what".
std::string local_message(const std::string& message, const std::string& origin,
                          const std::string& name) {
  const std::string prefix = origin + " document 1 (" + name + "): ";
  if (message.rfind(prefix, 0) == 0) return message.substr(prefix.size());
  const std::string bare = origin + " document 1: ";
  if (message.rfind(bare, 0) == 0) return message.substr(bare.size());
  return message;
}

template <class T>
struct LastGood {
  std::string uid;
  int64_t generation = 0;
  T value;
};

struct PendingStatus {
  kube::StatusWriter* writer = nullptr;
  kube::Object object;
  kube::ReadyCondition condition;
};

}  // namespace

struct ClusterPolicies::Impl : std::enable_shared_from_this<ClusterPolicies::Impl> {
  Impl(asio::io_context& io_, std::shared_ptr<kube::Client> c, const Clock& k, ClusterOptions o,
       std::function<void(std::shared_ptr<const policy::PolicySet>)> p)
      : io(io_),
        strand(asio::make_strand(io_)),
        client(std::move(c)),
        clock(k),
        opts(std::move(o)),
        publish(std::move(p)),
        cache(client, kube::CacheOptions{}, clock),
        cip_status(client, kube::resources::cluster_image_policies(), clock),
        ip_status(client, kube::resources::image_policies(), clock),
        tr_status(client, kube::resources::trust_roots(), clock),
        resync_timer(strand),
        retry_timer(strand) {
    // The default trust root is parsed at most once per process (and only when needed).
    auto inner = opts.default_root;
    auto memo =
        std::make_shared<std::optional<Result<std::shared_ptr<const crypto::TrustedRoot>>>>();
    auto memo_mu = std::make_shared<std::mutex>();
    default_root = [inner, memo, memo_mu]() -> Result<std::shared_ptr<const crypto::TrustedRoot>> {
      std::lock_guard lock(*memo_mu);
      if (!*memo) {
        *memo = inner ? inner()
                      : Result<std::shared_ptr<const crypto::TrustedRoot>>(
                            make_error(Errc::invalid_argument, "none is configured"));
      }
      return **memo;
    };
  }

  asio::io_context& io;
  asio::strand<asio::io_context::executor_type> strand;
  std::shared_ptr<kube::Client> client;
  const Clock& clock;
  ClusterOptions opts;
  std::function<void(std::shared_ptr<const policy::PolicySet>)> publish;
  policy::DefaultTrustRoot default_root;
  kube::SecretCache cache;
  kube::StatusWriter cip_status, ip_status, tr_status;
  std::unique_ptr<kube::Reflector> cips, ips, trs;
  asio::steady_timer resync_timer;
  asio::steady_timer retry_timer;
  bool retry_armed = false;  // strand only

  mutable std::mutex mu;  // guards the snapshots, file_docs and stats
  std::shared_ptr<const kube::Snapshot> cip_snap, ip_snap, tr_snap;
  std::optional<policy::Documents> file_docs;
  Stats stats;

  // Strand only.
  bool compiling = false;
  bool dirty = false;
  uint64_t generation = 0;
  std::map<std::string, LastGood<policy::Policy>> last_policy;           // by kind/key
  std::map<std::string, LastGood<policy::TrustRootDocument>> last_root;  // by key
  std::vector<policy::Policy> last_file_policies;
  std::string last_fingerprint;
  std::atomic<uint64_t> file_generation{0};  // bumped by reload_files()

  std::atomic<bool> ready{false};
  std::atomic<bool> stopped{false};

  kube::ReflectorOptions reflector_options(kube::Resource r) const {
    kube::ReflectorOptions o;
    o.resource = std::move(r);
    o.backoff_initial = opts.backoff_initial;
    o.backoff_max = opts.backoff_max;
    return o;
  }

  void start_reflectors() {
    auto self = shared_from_this();
    cips = std::make_unique<kube::Reflector>(
        client, reflector_options(kube::resources::cluster_image_policies()),
        [self](std::shared_ptr<const kube::Snapshot> s) { self->changed(&Impl::cip_snap, s); });
    ips = std::make_unique<kube::Reflector>(
        client, reflector_options(kube::resources::image_policies()),
        [self](std::shared_ptr<const kube::Snapshot> s) { self->changed(&Impl::ip_snap, s); });
    trs = std::make_unique<kube::Reflector>(
        client, reflector_options(kube::resources::trust_roots()),
        [self](std::shared_ptr<const kube::Snapshot> s) { self->changed(&Impl::tr_snap, s); });
    cips->start();
    ips->start();
    trs->start();
    arm_resync();
  }

  void changed(std::shared_ptr<const kube::Snapshot> Impl::*slot,
               std::shared_ptr<const kube::Snapshot> s) {
    {
      std::lock_guard lock(mu);
      this->*slot = std::move(s);
    }
    trigger();
  }

  void arm_resync() {
    auto self = shared_from_this();
    resync_timer.expires_after(opts.resync);
    resync_timer.async_wait([self](const boost::system::error_code& ec) {
      if (ec || self->stopped) return;
      // Re-read every Secret now, not when its cache entry happens to expire.
      self->cache.clear();
      self->trigger();
      self->arm_resync();
    });
  }

  // A status write failed: compile (and so write) again soon, once.
  void retry_soon() {
    if (retry_armed || stopped) return;
    retry_armed = true;
    auto self = shared_from_this();
    retry_timer.expires_after(opts.status_retry);
    retry_timer.async_wait([self](const boost::system::error_code& ec) {
      self->retry_armed = false;
      if (ec || self->stopped) return;
      self->trigger();
    });
  }

  // Schedules a compile; several triggers while one runs make exactly one more.
  void trigger() {
    auto self = shared_from_this();
    asio::post(strand, [self] {
      if (self->stopped) return;
      if (self->compiling) {
        self->dirty = true;
        return;
      }
      self->compiling = true;
      asio::co_spawn(self->strand, compile_loop(self), asio::detached);
    });
  }

  static asio::awaitable<void> compile_loop(std::shared_ptr<Impl> self) {
    do {
      self->dirty = false;
      try {
        co_await self->compile_once();
      } catch (const std::exception& e) {
        spdlog::error("kube: compiling the policy set failed: {}", e.what());
      }
    } while (self->dirty && !self->stopped);
    self->compiling = false;
  }

  // Reads every Secret the policies name (through the cache).
  struct SecretsRead {
    std::map<std::string, Result<std::map<std::string, std::string>>> data;
    std::string fingerprint;  // which versions were read: a change means a new policy set
  };
  asio::awaitable<SecretsRead> read_secrets(const std::vector<policy::SecretRef>& refs) {
    SecretsRead read;
    auto& out = read.data;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (const auto& r : refs) {
      auto s = co_await cache.secret(r.namespace_, r.name, deadline);
      const std::string key = r.namespace_ + "/" + r.name;
      read.fingerprint +=
          key + "@" +
          (s.ok() ? (*s)->meta.resource_version : std::string(errc_name(s.error().code))) + ";";
      if (s.ok()) {
        out.emplace(key, (*s)->data);
      } else {
        out.emplace(key, make_error(s.error().code,
                                    s.error().code == Errc::not_found
                                        ? "the Secret " + key + " does not exist"
                                        : "reading the Secret " + key + ": " + s.error().message));
      }
    }
    co_return out;
  }

  asio::awaitable<void> compile_once() {
    std::shared_ptr<const kube::Snapshot> cs, is, ts;
    std::optional<policy::Documents> files;
    {
      std::lock_guard lock(mu);
      cs = cip_snap;
      is = ip_snap;
      ts = tr_snap;
      files = file_docs;
    }
    if (!cs || !is || !ts || !files) co_return;  // not every resource listed yet

    // What this compile is made of: when it equals the last one's (a status write or a label
    // change came back as MODIFIED), the published set stays, and with it the verdict cache.
    std::string fingerprint = "files#" + std::to_string(file_generation) + ";";
    for (const auto* snap : {ts.get(), cs.get(), is.get()}) {
      for (const auto& obj : snap->objects) {
        fingerprint += obj->meta.key() + "@" + obj->meta.uid + "#" +
                       std::to_string(obj->meta.generation) + ";";
      }
      fingerprint += "|";
    }
    std::vector<PendingStatus> statuses;
    std::set<std::string> present;
    uint64_t invalid = 0;
    auto status = [&](kube::StatusWriter& w, const kube::Object& o, bool ok, const char* reason,
                      std::string message) {
      kube::ReadyCondition c;
      c.ready = ok;
      c.reason = reason;
      c.message = std::move(message);
      c.observed_generation = o.meta.generation;
      statuses.push_back(PendingStatus{&w, o, std::move(c)});
      if (!ok) ++invalid;
    };

    // TrustRoots first: the policies link against them.
    std::vector<policy::TrustRootDocument> roots = files->trust_roots;
    for (const auto& obj : ts->objects) {
      const std::string key = "trustroot/" + obj->meta.key();
      present.insert(key);
      const std::string origin = "TrustRoot " + obj->meta.name;
      auto d = policy::parse_documents(obj->json, origin);
      std::string problem;
      if (!d.ok()) {
        problem = local_message(d.error().message, origin, obj->meta.name);
      } else if (d->trust_roots.size() != 1 || !d->policies.empty()) {
        problem = "not a TrustRoot";
      }
      if (problem.empty()) {
        roots.push_back(d->trust_roots.front());
        last_root[key] = {obj->meta.uid, obj->meta.generation, d->trust_roots.front()};
        status(tr_status, *obj, true, kCompiled, "loaded");
        continue;
      }
      auto lg = last_root.find(key);
      if (lg != last_root.end() && lg->second.uid == obj->meta.uid) {
        roots.push_back(lg->second.value);
        problem += "; generation " + std::to_string(lg->second.generation) + " stays in force";
      }
      status(tr_status, *obj, false, kInvalid, problem);
    }

    // Policies: parse each object on its own.
    struct Candidate {
      kube::StatusWriter* writer;
      const kube::Object* object;
      std::string key, origin, display;
      std::optional<policy::Policy> parsed;
      std::string problem;
    };
    std::vector<Candidate> candidates;
    auto add_candidates = [&](const kube::Snapshot& snap, const char* kind,
                              kube::StatusWriter& writer) {
      for (const auto& obj : snap.objects) {
        Candidate c;
        c.writer = &writer;
        c.object = obj.get();
        c.key = std::string(kind) + "/" + obj->meta.key();
        c.origin = std::string(kind) + " " + obj->meta.key();
        c.display = obj->meta.namespace_.empty() ? obj->meta.name : obj->meta.key();
        present.insert(c.key);
        auto d = policy::parse_documents(obj->json, c.origin);
        if (!d.ok()) {
          c.problem = local_message(d.error().message, c.origin, c.display);
        } else if (d->policies.size() != 1 || !d->trust_roots.empty()) {
          c.problem = std::string("not a ") + kind;
        } else {
          c.parsed = std::move(d->policies.front());
        }
        candidates.push_back(std::move(c));
      }
    };
    add_candidates(*cs, "ClusterImagePolicy", cip_status);
    add_candidates(*is, "ImagePolicy", ip_status);

    std::vector<policy::Policy> parsed_only;
    for (const auto& c : candidates) {
      if (c.parsed) parsed_only.push_back(*c.parsed);
    }
    auto secrets_read = co_await read_secrets(policy::secret_refs(parsed_only, opts.own_namespace));
    const auto& secrets = secrets_read.data;
    policy::SecretLookup lookup =
        [&secrets](const std::string& ns,
                   const std::string& name) -> Result<std::map<std::string, std::string>> {
      auto it = secrets.find(ns + "/" + name);
      if (it == secrets.end()) return make_error(Errc::internal, "the Secret was not read");
      return it->second;
    };

    std::vector<policy::Policy> compiled;
    for (auto& c : candidates) {
      const char* reason = kInvalid;
      if (c.parsed) {
        std::vector<policy::Policy> one{std::move(*c.parsed)};
        if (auto st = policy::resolve_secrets(one, lookup, opts.own_namespace); !st) {
          reason = kSecretUnavailable;
          c.problem = local_message(st.error().message, c.origin, c.display);
        } else if (auto lk = policy::link_trust_roots(one, roots, default_root); !lk) {
          c.problem = local_message(lk.error().message, c.origin, c.display);
        } else {
          last_policy[c.key] = {c.object->meta.uid, c.object->meta.generation, one.front()};
          compiled.push_back(std::move(one.front()));
          status(*c.writer, *c.object, true, kCompiled,
                 "enforced (generation " + std::to_string(c.object->meta.generation) + ")");
          continue;
        }
      }
      // This generation cannot be enforced: keep the last one that could, never relax.
      auto lg = last_policy.find(c.key);
      if (lg != last_policy.end() && lg->second.uid == c.object->meta.uid) {
        compiled.push_back(lg->second.value);
        c.problem += "; generation " + std::to_string(lg->second.generation) + " stays in force";
      } else {
        c.problem += "; not enforced";
      }
      status(*c.writer, *c.object, false, reason, c.problem);
    }
    for (auto it = last_policy.begin(); it != last_policy.end();) {
      it = present.count(it->first) ? std::next(it) : last_policy.erase(it);
    }
    for (auto it = last_root.begin(); it != last_root.end();) {
      it = present.count(it->first) ? std::next(it) : last_root.erase(it);
    }

    // File policies link against every TrustRoot too; a failure keeps the previous ones.
    std::vector<policy::Policy> file_policies = files->policies;
    auto fst = policy::resolve_secrets(file_policies, nullptr, opts.own_namespace);
    if (fst.ok()) fst = policy::link_trust_roots(file_policies, roots, default_root);
    if (fst.ok()) {
      last_file_policies = file_policies;
    } else {
      spdlog::error(
          "kube: file policies do not compile against the cluster's trust roots, the "
          "previous ones stay: {}",
          fst.error().message);
    }
    std::vector<policy::Policy> all = last_file_policies;
    for (auto& p : compiled) all.push_back(std::move(p));
    const size_t count = all.size();
    auto set =
        std::make_shared<const policy::PolicySet>(std::move(all), opts.no_match, ++generation);
    publish(std::move(set));
    {
      std::lock_guard lock(mu);
      ++stats.compiles;
      stats.policies = count;
      stats.invalid = invalid;
    }
    if (!ready.exchange(true)) {
      spdlog::info("kube: synced: {} polic{} in force ({} not enforceable)", count,
                   count == 1 ? "y" : "ies", invalid);
    } else {
      spdlog::info("kube: policy set generation {}: {} polic{} ({} not enforceable)", generation,
                   count, count == 1 ? "y" : "ies", invalid);
    }

    // Status writes are best effort and never hold up the next compile.
    auto self = shared_from_this();
    for (auto& p : statuses) {
      asio::co_spawn(
          strand,
          [self, p = std::move(p)]() mutable -> asio::awaitable<void> {
            auto r = co_await p.writer->write(
                std::move(p.object), std::move(p.condition),
                std::chrono::steady_clock::now() + std::chrono::seconds(10));
            if (!r.ok()) {
              spdlog::warn("kube: writing status failed (retried in {} ms): {}",
                           self->opts.status_retry.count(), r.error().message);
              self->retry_soon();
            }
          },
          asio::detached);
    }
  }
};

ClusterPolicies::ClusterPolicies(
    asio::io_context& io, std::shared_ptr<kube::Client> client, const Clock& clock,
    ClusterOptions options, std::function<void(std::shared_ptr<const policy::PolicySet>)> publish)
    : impl_(std::make_shared<Impl>(io, std::move(client), clock, std::move(options),
                                   std::move(publish))) {}

ClusterPolicies::~ClusterPolicies() {
  stop();
}

Status ClusterPolicies::start() {
  if (!impl_->opts.file_documents) {
    impl_->file_docs = policy::Documents{};
  } else {
    auto docs = impl_->opts.file_documents();
    if (!docs.ok()) return docs.error();
    impl_->file_docs = std::move(*docs);
  }
  impl_->start_reflectors();
  return {};
}

void ClusterPolicies::stop() {
  if (impl_->stopped.exchange(true)) return;
  for (auto* r : {impl_->cips.get(), impl_->ips.get(), impl_->trs.get()}) {
    if (r) r->stop();
  }
  auto impl = impl_;
  asio::post(impl->strand, [impl] { impl->resync_timer.cancel(); });
}

bool ClusterPolicies::ready() const {
  return impl_->ready.load();
}

void ClusterPolicies::reload_files() {
  if (!impl_->opts.file_documents) return;
  auto docs = impl_->opts.file_documents();
  if (!docs.ok()) {
    spdlog::error("policy reload refused, keeping the previous files: {}", docs.error().message);
    return;
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->file_docs = std::move(*docs);
  }
  ++impl_->file_generation;
  impl_->trigger();
}

ClusterPolicies::Stats ClusterPolicies::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

namespace {

struct PullCredentials {
  std::shared_ptr<registry::DockerConfig> config;
  std::string id;
};

// The registry credentials held by the named pull secrets of ns (dockerconfigjson and
// dockercfg; others skipped), the first credential for a host winning as in the kubelet.
asio::awaitable<PullCredentials> read_pull_secrets(kube::SecretCache& cache, const std::string& ns,
                                                   const std::vector<std::string>& names,
                                                   std::chrono::steady_clock::time_point deadline) {
  PullCredentials out;
  out.config = std::make_shared<registry::DockerConfig>();
  out.id = ns;
  for (const auto& name : names) {
    auto s = co_await cache.secret(ns, name, deadline);
    if (!s.ok()) {
      if (s.error().code != Errc::not_found) {
        spdlog::warn("admission: pull secret {}/{}: {}", ns, name, s.error().message);
      }
      continue;
    }
    const kube::Secret& secret = **s;
    Result<registry::DockerConfig> parsed = make_error(Errc::not_found, "not a pull secret");
    if (auto it = secret.data.find(".dockerconfigjson");
        secret.type == "kubernetes.io/dockerconfigjson" && it != secret.data.end()) {
      parsed = registry::parse_docker_config(it->second);
    } else if (auto it2 = secret.data.find(".dockercfg");
               secret.type == "kubernetes.io/dockercfg" && it2 != secret.data.end()) {
      parsed = registry::parse_dockercfg(it2->second);
    }
    if (!parsed.ok()) {
      if (parsed.error().code != Errc::not_found) {
        spdlog::warn("admission: pull secret {}/{} is malformed: {}", ns, name,
                     parsed.error().message);
      }
      continue;
    }
    registry::merge_into(*out.config, *parsed);
    out.id += "|" + name + "@" + secret.meta.resource_version;
  }
  co_return out;
}

}  // namespace

asio::awaitable<verify::Context> ClusterPolicies::context_for(
    const admission::Request& request, std::chrono::steady_clock::time_point deadline) {
  verify::Context ctx;
  ctx.namespace_ = request.namespace_;
  if (request.namespace_.empty()) co_return ctx;
  // Reading credentials must leave most of the budget to verification.
  const auto budget =
      std::min(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(2));
  const std::string ns = request.namespace_;
  auto impl = impl_;
  // Signature sources' signaturePullSecrets come from the admitted object's namespace too.
  ctx.source_credentials =
      [impl, ns](std::vector<std::string> names,
                 registry::Deadline dl) -> asio::awaitable<registry::PullCredentials> {
    auto budget_for_source =
        std::min(dl, std::chrono::steady_clock::now() + std::chrono::seconds(2));
    auto creds = co_await read_pull_secrets(impl->cache, ns, names, budget_for_source);
    if (creds.config->auths.empty()) co_return registry::PullCredentials{};
    co_return registry::PullCredentials(std::move(creds.config));
  };
  std::vector<std::string> names = request.image_pull_secrets;
  if (!request.service_account.empty()) {
    auto sa = co_await impl->cache.service_account(ns, request.service_account, budget);
    if (sa.ok()) {
      for (const auto& n : (*sa)->image_pull_secrets) {
        if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
      }
    } else if (sa.error().code != Errc::not_found) {
      spdlog::warn("admission: ServiceAccount {}/{}: {}", ns, request.service_account,
                   sa.error().message);
    }
  }
  if (names.empty()) co_return ctx;
  auto creds = co_await read_pull_secrets(impl->cache, ns, names, budget);
  if (!creds.config->auths.empty()) {
    ctx.credentials = std::move(creds.config);
    ctx.credentials_id = std::move(creds.id);
  }
  co_return ctx;
}

}  // namespace sigil::app
