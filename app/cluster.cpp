// app/cluster.cpp: see cluster.hpp.
#include "app/cluster.hpp"

#include "app/compile_cluster.hpp"
#include "app/pull_secrets.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
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

struct PendingStatus {
  kube::StatusWriter* writer = nullptr;
  kube::Object object;
  kube::ReadyCondition condition;
};

// The Ready condition last computed for one object (by a compile), for its generation.
struct ComputedStatus {
  std::string uid;
  int64_t generation = 0;
  kube::ReadyCondition condition;
};

// True when `next` holds the same objects as `prev` with the same specs: the same keys, uids
// and generations. metadata.generation moves with every change of a custom resource's spec and
// with nothing else (not status, labels or annotations), and the compile reads an object only
// through its uid, generation and spec (ParseCache keys on uid and generation too), so such a
// change cannot change the compile. Objects without a generation never count as unchanged.
bool same_specs(const kube::Snapshot* prev, const kube::Snapshot& next) {
  if (!prev || prev->objects.size() != next.objects.size()) return false;
  for (size_t i = 0; i < next.objects.size(); ++i) {
    const kube::ObjectMeta& a = prev->objects[i]->meta;
    const kube::ObjectMeta& b = next.objects[i]->meta;
    if (b.generation == 0 || a.generation != b.generation || a.uid != b.uid || a.name != b.name ||
        a.namespace_ != b.namespace_) {
      return false;
    }
  }
  return true;
}

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
        retry_timer(strand),
        secret_timer(strand) {
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
  PullSecretParses parses;  // the admissions' pull secrets, parsed once per version
  kube::StatusWriter cip_status, ip_status, tr_status;
  std::unique_ptr<kube::Reflector> cips, ips, trs;
  asio::steady_timer resync_timer;
  asio::steady_timer retry_timer;
  bool retry_armed = false;                     // strand only
  asio::steady_timer secret_timer;              // re-reads Secrets whose read failed (not 404)
  bool secret_retry_armed = false;              // strand only
  int secret_failures = 0;                      // strand only: compiles in a row with a failed read
  std::mt19937_64 rng{std::random_device{}()};  // strand only: backoff jitter

  mutable std::mutex mu;  // guards the snapshots, file_docs and stats
  std::shared_ptr<const kube::Snapshot> cip_snap, ip_snap, tr_snap;
  std::optional<policy::Documents> file_docs;
  Stats stats;

  // Strand only.
  bool compiling = false;
  bool dirty = false;
  uint64_t generation = 0;
  CompileState in_force;                      // what the last compile left in force
  ParseCache parsed;                          // the objects of the last compile, parsed
  std::map<std::string, std::string> logged;  // object -> the problem last logged for it
  std::atomic<uint64_t> file_generation{0};   // bumped by reload_files()
  // Strand only: the Ready condition each object's last compile computed, by "Kind key", for
  // the snapshots that change no spec (see changed()).
  std::map<std::string, ComputedStatus> computed;

  // Status writes, off the strand: a compile must not hold them up, nor they a compile (every
  // write comes back as a MODIFIED event). Queued by object, a newer status replacing one not
  // yet written, and written by at most opts.status_writers coroutines on the io_context, so
  // that a sync of hundreds of policies does not put hundreds of PATCHes in front of the
  // admissions' own reads (a pod's ServiceAccount, its pull secrets) at the same API server.
  std::mutex status_mu;
  std::map<std::string, PendingStatus> status_pending;  // by "Kind key"; guarded by status_mu
  std::deque<std::string> status_order;                 // keys of status_pending, oldest first
  size_t status_writers = 0;                            // running; guarded by status_mu

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
        [self](std::shared_ptr<const kube::Snapshot> s) {
          self->changed(&Impl::cip_snap, &self->cip_status, "ClusterImagePolicy", std::move(s));
        });
    ips = std::make_unique<kube::Reflector>(
        client, reflector_options(kube::resources::image_policies()),
        [self](std::shared_ptr<const kube::Snapshot> s) {
          self->changed(&Impl::ip_snap, &self->ip_status, "ImagePolicy", std::move(s));
        });
    trs = std::make_unique<kube::Reflector>(
        client, reflector_options(kube::resources::trust_roots()),
        [self](std::shared_ptr<const kube::Snapshot> s) {
          self->changed(&Impl::tr_snap, &self->tr_status, "TrustRoot", std::move(s));
        });
    cips->start();
    ips->start();
    trs->start();
    arm_resync();
  }

  // A reflector's new snapshot. One that changes a spec (or adds or removes an object)
  // recompiles. One that changes no spec (a status write, ours coming back or another
  // writer's; a label) does not: a sync of hundreds of policies would otherwise recompile the
  // whole set once per batch of its own status writes. Its changed objects get their last
  // computed status again, which the writer skips when the object already shows it.
  void changed(std::shared_ptr<const kube::Snapshot> Impl::*slot, kube::StatusWriter* writer,
               const char* kind, std::shared_ptr<const kube::Snapshot> s) {
    std::vector<std::shared_ptr<const kube::Object>> touched;
    bool recompile = false;
    {
      std::lock_guard lock(mu);
      const kube::Snapshot* prev = (this->*slot).get();
      recompile = !same_specs(prev, *s);
      if (!recompile) {
        for (size_t i = 0; i < s->objects.size(); ++i) {
          if (s->objects[i]->meta.resource_version != prev->objects[i]->meta.resource_version) {
            touched.push_back(s->objects[i]);
          }
        }
      }
      this->*slot = std::move(s);
    }
    if (recompile) {
      trigger();
      return;
    }
    if (touched.empty()) return;
    auto self = shared_from_this();
    asio::post(strand, [self, writer, kind, touched = std::move(touched)] {
      if (self->stopped) return;
      std::vector<std::pair<std::string, PendingStatus>> writes;
      for (const auto& o : touched) {
        auto it = self->computed.find(std::string(kind) + " " + o->meta.key());
        if (it == self->computed.end() || it->second.uid != o->meta.uid ||
            it->second.generation != o->meta.generation) {
          continue;  // not compiled yet: the compile to come writes it
        }
        writes.emplace_back(it->first, PendingStatus{writer, *o, it->second.condition});
      }
      if (!writes.empty()) self->queue_statuses(std::move(writes), false);
    });
  }

  // Queues the status write of the object `what` ("Kind key"), replacing one not yet written,
  // and starts writers up to opts.status_writers. clear_first: drop every queued write first
  // (a compile queues the statuses of every object present).
  void queue_statuses(std::vector<std::pair<std::string, PendingStatus>> writes, bool clear_first) {
    size_t start = 0;
    {
      std::lock_guard lock(status_mu);
      if (clear_first) {
        status_pending.clear();
        status_order.clear();
      }
      for (auto& w : writes) {
        auto [it, added] = status_pending.insert_or_assign(w.first, std::move(w.second));
        if (added) status_order.push_back(std::move(w.first));
      }
      const size_t limit = std::max<size_t>(opts.status_writers, 1);
      while (status_writers < limit && status_writers < status_order.size()) {
        ++status_writers;
        ++start;
      }
    }
    for (size_t i = 0; i < start; ++i) {
      asio::co_spawn(io, write_statuses(shared_from_this()), asio::detached);
    }
  }

  // One writer: writes queued statuses, oldest first, until none is left. Each write has its
  // own 10 s deadline from when it starts. A failed write makes the set compile (and so write)
  // again in opts.status_retry.
  static asio::awaitable<void> write_statuses(std::shared_ptr<Impl> self) {
    for (;;) {
      std::optional<PendingStatus> p;
      {
        std::lock_guard lock(self->status_mu);
        if (self->status_order.empty() || self->stopped) {
          --self->status_writers;
          co_return;
        }
        auto it = self->status_pending.find(self->status_order.front());
        self->status_order.pop_front();
        p.emplace(std::move(it->second));
        self->status_pending.erase(it);
      }
      Result<bool> r = false;
      try {
        r = co_await p->writer->write(std::move(p->object), std::move(p->condition),
                                      std::chrono::steady_clock::now() + std::chrono::seconds(10));
      } catch (const std::exception& e) {  // std::bad_alloc: the writer must go on
        r = make_error(Errc::internal, e.what());
      }
      if (!r.ok()) {
        spdlog::warn("kube: writing status failed (retried in {} ms): {}",
                     self->opts.status_retry.count(), r.error().message);
        asio::post(self->strand, [self] { self->retry_soon(); });
      }
    }
  }

  // Said once a resync while a resource's copy has not been the server's for 5 minutes: the
  // policies in force stay as they were (never dropped), so nothing else shows it.
  void warn_if_stale() {
    const auto now = std::chrono::steady_clock::now();
    for (const auto* r : {cips.get(), ips.get(), trs.get()}) {
      if (r == nullptr) continue;
      const kube::ReflectorStats st = r->stats();
      if (st.current_at == std::chrono::steady_clock::time_point{}) continue;
      const auto age = std::chrono::duration_cast<std::chrono::seconds>(now - st.current_at);
      if (age < std::chrono::minutes(5)) continue;
      spdlog::warn(
          "kube: {}: not in step with the API server for {} s ({}); changes to them are not "
          "applied, the ones last read stay in force",
          r->resource().display(), age.count(),
          st.last_error.empty() ? std::string("no error recorded") : st.last_error);
    }
  }

  void arm_resync() {
    auto self = shared_from_this();
    resync_timer.expires_after(opts.resync);
    resync_timer.async_wait([self](const boost::system::error_code& ec) {
      if (ec || self->stopped) return;
      // Re-read every Secret now, not when its cache entry happens to expire.
      self->cache.clear();
      self->trigger();
      self->warn_if_stale();
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

  // Secret reads that failed with something other than 404 are retried with an exponential,
  // capped, jittered backoff (backoff_initial .. backoff_max), not left to the next resync.
  std::chrono::milliseconds backoff_delay(int n) {
    const int shift = std::clamp(n - 1, 0, 30);
    const int64_t base = std::max<int64_t>(opts.backoff_initial.count(), 1);
    const int64_t cap = std::max<int64_t>(opts.backoff_max.count(), base);
    const int64_t d = base > (cap >> shift) ? cap : std::min(cap, base << shift);
    std::uniform_int_distribution<int64_t> dist(std::max<int64_t>(d / 2, 1), d);
    return std::chrono::milliseconds(dist(rng));
  }

  void retry_secrets() {
    ++secret_failures;
    if (secret_retry_armed || stopped) return;
    secret_retry_armed = true;
    const auto delay = backoff_delay(secret_failures);
    spdlog::info("kube: reading Secrets again in {} ms", delay.count());
    auto self = shared_from_this();
    secret_timer.expires_after(delay);
    secret_timer.async_wait([self](const boost::system::error_code& ec) {
      self->secret_retry_armed = false;
      if (ec || self->stopped) return;
      self->trigger();
    });
  }

  // Reads every Secret the policies name (through the cache): the compile's only input that
  // is not in the snapshots. Never logs a Secret's content.
  asio::awaitable<void> read_secrets(ClusterInputs& inputs) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    const std::vector<policy::SecretRef> refs =
        cluster_secret_refs(inputs, parsed, opts.own_namespace, &in_force);
    for (const auto& r : refs) {
      const std::string key = r.namespace_ + "/" + r.name;
      if (inputs.secrets.count(key)) continue;
      auto s = co_await cache.secret(r.namespace_, r.name, deadline);
      if (s.ok()) {
        SecretRead read;
        read.data = (*s)->data;
        read.version = (*s)->meta.resource_version;
        inputs.secrets.emplace(key, std::move(read));
        continue;
      }
      if (s.error().code != Errc::not_found) {
        spdlog::warn("kube: reading the Secret {} failed: {}", key, s.error().message);
      }
      inputs.secrets.emplace(key, secret_read_failure(r.namespace_, r.name, s.error()));
    }
  }

  static ClusterObject cluster_object(ObjectKind kind, const kube::Object& o) {
    ClusterObject c;
    c.kind = kind;
    c.namespace_ = o.meta.namespace_;
    c.name = o.meta.name;
    c.uid = o.meta.uid;
    c.generation = o.meta.generation;
    c.json = o.json;
    return c;
  }

  // Logs an object's problem when it is new or changed (compiles repeat every resync).
  void log_problem(const std::string& what, const ObjectStatus& st) {
    if (st.ready) {
      if (logged.erase(what)) spdlog::info("kube: {}: {}", what, st.message);
      return;
    }
    auto& last = logged[what];
    if (last == st.message) return;
    last = st.message;
    spdlog::warn("kube: {}: {}", what, st.message);
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

    ClusterInputs inputs;
    inputs.files = std::move(*files);
    inputs.files_generation = file_generation;
    std::vector<std::pair<kube::StatusWriter*, const kube::Object*>> roots, pols;
    for (const auto& o : ts->objects) {
      inputs.trust_roots.push_back(cluster_object(ObjectKind::trust_root, *o));
      roots.emplace_back(&tr_status, o.get());
    }
    for (const auto& o : cs->objects) {
      inputs.policies.push_back(cluster_object(ObjectKind::cluster_image_policy, *o));
      pols.emplace_back(&cip_status, o.get());
    }
    for (const auto& o : is->objects) {
      inputs.policies.push_back(cluster_object(ObjectKind::image_policy, *o));
      pols.emplace_back(&ip_status, o.get());
    }
    parsed = parse_objects(inputs, parsed);
    co_await read_secrets(inputs);

    CompileOptions copts;
    copts.own_namespace = opts.own_namespace;
    copts.default_root = default_root;
    ClusterCompile result = compile_cluster(inputs, parsed, in_force, copts);
    in_force = std::move(result.state);
    const size_t count = result.policies.size();
    const bool first = !ready.load();
    // Nothing the compile depends on changed (a status write or a label change came back as
    // MODIFIED, a resync re-read the same Secrets): the published set stays, and with it the
    // verdict cache.
    if (result.changed || first) {
      publish(std::make_shared<const policy::PolicySet>(std::move(result.policies), opts.no_match,
                                                        ++generation));
    }
    {
      std::lock_guard lock(mu);
      ++stats.compiles;
      if (result.changed || first) ++stats.published;
      stats.policies = count;
      stats.invalid = result.invalid + result.kept + result.unavailable;
      stats.unavailable = result.unavailable;
    }
    if (first) {
      ready = true;
      spdlog::info(
          "kube: synced: {} polic{} in force ({} unavailable, denying what they match; "
          "{} invalid; {} on an earlier generation)",
          count, count == 1 ? "y" : "ies", result.unavailable, result.invalid, result.kept);
    } else if (result.changed) {
      spdlog::info(
          "kube: policy set generation {}: {} polic{} ({} unavailable, {} invalid, {} on "
          "an earlier generation)",
          generation, count, count == 1 ? "y" : "ies", result.unavailable, result.invalid,
          result.kept);
    }

    // Statuses: logged when they change, written (best effort) when the object differs.
    std::vector<std::pair<std::string, PendingStatus>> statuses;
    std::set<std::string> present;
    std::map<std::string, ComputedStatus> now_computed;
    auto add = [&](kube::StatusWriter* w, const kube::Object* o, const ObjectStatus& st,
                   const char* kind) {
      const std::string what = std::string(kind) + " " + o->meta.key();
      present.insert(what);
      log_problem(what, st);
      kube::ReadyCondition c;
      c.ready = st.ready;
      c.reason = st.reason;
      c.message = st.message;
      c.observed_generation = st.generation;
      now_computed.insert_or_assign(what, ComputedStatus{o->meta.uid, o->meta.generation, c});
      statuses.emplace_back(what, PendingStatus{w, *o, std::move(c)});
    };
    for (size_t i = 0; i < roots.size(); ++i) {
      add(roots[i].first, roots[i].second, result.root_statuses[i], "TrustRoot");
    }
    for (size_t i = 0; i < pols.size(); ++i) {
      add(pols[i].first, pols[i].second, result.policy_statuses[i],
          kind_name(inputs.policies[i].kind));
    }
    for (size_t i = 0; i < result.file_problems.size(); ++i) {
      ObjectStatus st;
      st.message = result.file_problems[i];
      const std::string what = "--policy problem " + std::to_string(i + 1);
      present.insert(what);
      log_problem(what, st);
    }
    for (auto it = logged.begin(); it != logged.end();) {
      it = present.count(it->first) ? std::next(it) : logged.erase(it);
    }
    if (result.retry) {
      retry_secrets();
    } else {
      secret_failures = 0;
    }

    computed = std::move(now_computed);
    queue_statuses(std::move(statuses), true);
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
  asio::post(impl->strand, [impl] {
    impl->resync_timer.cancel();
    impl->retry_timer.cancel();
    impl->secret_timer.cancel();
  });
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

std::vector<std::pair<std::string, double>> ClusterPolicies::sync_ages() const {
  std::vector<std::pair<std::string, double>> out;
  const auto now = std::chrono::steady_clock::now();
  for (const auto* r : {impl_->cips.get(), impl_->ips.get(), impl_->trs.get()}) {
    if (r == nullptr) continue;
    const kube::ReflectorStats st = r->stats();
    const double age = st.current_at == std::chrono::steady_clock::time_point{}
                           ? -1.0
                           : std::chrono::duration<double>(now - st.current_at).count();
    out.emplace_back(r->resource().plural, age);
  }
  return out;
}

ClusterPolicies::Stats ClusterPolicies::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

namespace {

// The registry credentials held by the named pull secrets of ns.
asio::awaitable<PullCredentials> read_pull_secrets(kube::SecretCache& cache,
                                                   PullSecretParses& parses, const std::string& ns,
                                                   const std::vector<std::string>& names,
                                                   Deadline deadline) {
  PullCredentials out = no_pull_credentials(ns);
  for (const auto& name : names) {
    auto s = co_await cache.secret(ns, name, deadline);
    parses.add(out, ns, name, s);
  }
  co_return out;
}

// read_pull_secrets from the cache alone: nullopt when some secret is not in it.
std::optional<PullCredentials> cached_pull_secrets(kube::SecretCache& cache,
                                                   PullSecretParses& parses, const std::string& ns,
                                                   const std::vector<std::string>& names) {
  std::vector<Result<std::shared_ptr<const kube::Secret>>> found;
  found.reserve(names.size());
  for (const auto& name : names) {
    auto s = cache.cached_secret(ns, name);
    if (!s) return std::nullopt;
    found.push_back(std::move(*s));
  }
  PullCredentials out = no_pull_credentials(ns);
  for (size_t i = 0; i < names.size(); ++i) parses.add(out, ns, names[i], found[i]);
  return out;
}

// The pod's imagePullSecrets, then its ServiceAccount's not already named.
void add_account_secrets(std::vector<std::string>& names, const std::string& ns,
                         const std::string& account,
                         const Result<std::shared_ptr<const kube::ServiceAccount>>& sa) {
  if (sa.ok()) {
    for (const auto& n : (*sa)->image_pull_secrets) {
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
  } else if (sa.error().code != Errc::not_found) {
    spdlog::warn("admission: ServiceAccount {}/{}: {}", ns, account, sa.error().message);
  }
}

}  // namespace

namespace {

// Signature sources' signaturePullSecrets come from the admitted object's namespace too.
// cache, parses: aliasing pointers that keep their owner alive as long as the function.
decltype(verify::Context::source_credentials) source_credentials_in(
    std::shared_ptr<kube::SecretCache> cache, std::shared_ptr<PullSecretParses> parses,
    std::string ns) {
  return [cache = std::move(cache), parses = std::move(parses), ns = std::move(ns)](
             std::vector<std::string> names,
             Deadline dl) -> asio::awaitable<registry::PullCredentials> {
    auto budget_for_source =
        std::min(dl, std::chrono::steady_clock::now() + std::chrono::seconds(2));
    auto creds = co_await read_pull_secrets(*cache, *parses, ns, names, budget_for_source);
    if (creds.config->empty()) co_return registry::PullCredentials{};
    co_return registry::PullCredentials(std::move(creds.config));
  };
}

void use_pull_credentials(verify::Context& ctx, PullCredentials creds) {
  if (!creds.config->empty()) {
    ctx.credentials = std::move(creds.config);
    ctx.credentials_id = std::move(creds.id);
  }
}

}  // namespace

asio::awaitable<verify::Context> ClusterPolicies::context_for(const admission::Request& request,
                                                              Deadline deadline) {
  verify::Context ctx;
  ctx.namespace_ = request.namespace_;
  if (request.namespace_.empty()) co_return ctx;
  // Reading credentials must leave most of the budget to verification.
  const auto budget =
      std::min(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(2));
  const std::string ns = request.namespace_;
  auto impl = impl_;
  ctx.source_credentials =
      source_credentials_in(std::shared_ptr<kube::SecretCache>(impl, &impl->cache),
                            std::shared_ptr<PullSecretParses>(impl, &impl->parses), ns);
  std::vector<std::string> names = request.image_pull_secrets;
  if (!request.service_account.empty()) {
    auto sa = co_await impl->cache.service_account(ns, request.service_account, budget);
    add_account_secrets(names, ns, request.service_account, sa);
  }
  if (names.empty()) co_return ctx;
  use_pull_credentials(ctx,
                       co_await read_pull_secrets(impl->cache, impl->parses, ns, names, budget));
  co_return ctx;
}

std::optional<verify::Context> ClusterPolicies::context_now(const admission::Request& request) {
  verify::Context ctx;
  ctx.namespace_ = request.namespace_;
  if (request.namespace_.empty()) return ctx;
  const std::string& ns = request.namespace_;
  ctx.source_credentials =
      source_credentials_in(std::shared_ptr<kube::SecretCache>(impl_, &impl_->cache),
                            std::shared_ptr<PullSecretParses>(impl_, &impl_->parses), ns);
  std::vector<std::string> names = request.image_pull_secrets;
  if (!request.service_account.empty()) {
    auto sa = impl_->cache.cached_service_account(ns, request.service_account);
    if (!sa) return std::nullopt;
    add_account_secrets(names, ns, request.service_account, *sa);
  }
  if (names.empty()) return ctx;
  auto creds = cached_pull_secrets(impl_->cache, impl_->parses, ns, names);
  if (!creds) return std::nullopt;
  use_pull_credentials(ctx, std::move(*creds));
  return ctx;
}

}  // namespace sigil::app
