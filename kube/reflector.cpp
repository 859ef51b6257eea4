#include "kube/reflector.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sigil::kube {

namespace asio = boost::asio;
using asio::awaitable;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const Object* Snapshot::find(std::string_view key) const {
  auto it = std::lower_bound(
      objects.begin(), objects.end(), key,
      [](const std::shared_ptr<const Object>& o, std::string_view k) { return o->meta.key() < k; });
  if (it == objects.end() || (*it)->meta.key() != key) return nullptr;
  return it->get();
}

namespace {

// The reflector whose callback this thread is running (stop() from inside it must not wait).
thread_local const void* tl_in_callback = nullptr;

}  // namespace

struct Reflector::Impl : std::enable_shared_from_this<Reflector::Impl> {
  std::shared_ptr<Client> client;
  ReflectorOptions opts;
  asio::strand<asio::any_io_executor> strand;
  Cancel stop_signal;
  std::atomic<bool> started{false};
  std::atomic<bool> stopping{false};
  std::atomic<bool> running{false};
  std::mt19937_64 rng{std::random_device{}()};

  // Strand only.
  std::map<std::string, std::shared_ptr<const Object>> store;
  std::string rv;
  int failures = 0;        // consecutive failed attempts without healthy progress
  int failed_watches = 0;  // consecutive watches that failed (relist_after_failed_watches)
  uint64_t sequence = 0;

  mutable std::mutex mu;  // guards snap and st
  std::shared_ptr<const Snapshot> snap;
  ReflectorStats st;

  std::mutex cb_mu;  // held while the callback runs
  SnapshotCallback cb;
  bool release_after_callback = false;

  Impl(std::shared_ptr<Client> c, ReflectorOptions o, SnapshotCallback f)
      : client(std::move(c)),
        opts(std::move(o)),
        strand(asio::make_strand(client->executor())),
        cb(std::move(f)) {
    if (opts.max_watch_timeout < opts.min_watch_timeout)
      opts.max_watch_timeout = opts.min_watch_timeout;
    if (opts.backoff_initial < milliseconds(1)) opts.backoff_initial = milliseconds(1);
    if (opts.backoff_max < opts.backoff_initial) opts.backoff_max = opts.backoff_initial;
  }

  std::string name() const { return opts.resource.display(); }

  template <class F>
  void update_stats(F f) {
    std::lock_guard lock(mu);
    f(st);
  }

  // ---- notification ----

  void publish() {
    auto s = std::make_shared<Snapshot>();
    s->objects.reserve(store.size());
    for (const auto& [k, o] : store) s->objects.push_back(o);  // the map keeps keys sorted
    s->resource_version = rv;
    s->sequence = ++sequence;
    std::shared_ptr<const Snapshot> cs = std::move(s);
    {
      std::lock_guard lock(mu);
      snap = cs;
      st.resource_version = rv;
    }
    {
      std::unique_lock lock(cb_mu);
      if (!stopping && cb) {
        tl_in_callback = this;
        try {
          cb(cs);
        } catch (const std::exception& e) {
          spdlog::error("kube: {} change callback threw: {}", name(), e.what());
        } catch (...) {
          spdlog::error("kube: {} change callback threw", name());
        }
        tl_in_callback = nullptr;
        if (release_after_callback) cb = nullptr;
      }
    }
    // Synced once the first snapshot has been handed to the callback (readiness can wait for
    // the caller to have acted on it).
    std::lock_guard lock(mu);
    st.synced = true;
    ++st.notifications;
  }

  // ---- backoff ----

  milliseconds backoff_delay(int n) {
    const int shift = std::clamp(n - 1, 0, 30);
    const int64_t base = opts.backoff_initial.count();
    const int64_t cap = opts.backoff_max.count();
    const int64_t d = base > (cap >> shift) ? cap : std::min(cap, base << shift);
    std::uniform_int_distribution<int64_t> dist(std::max<int64_t>(d / 2, 1),
                                                std::max<int64_t>(d, 1));
    return milliseconds(dist(rng));
  }

  // Sleeps, cut short by stop().
  awaitable<void> sleep(milliseconds d) {
    auto timer = std::make_shared<asio::steady_timer>(strand);
    timer->expires_after(d);
    std::weak_ptr<asio::steady_timer> weak = timer;
    auto ex = strand;
    const uint64_t id = stop_signal.subscribe([weak, ex] {
      asio::post(ex, [weak] {
        if (auto t = weak.lock()) t->cancel();
      });
    });
    co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    stop_signal.unsubscribe(id);
  }

  awaitable<void> fail(const Error& e) {
    ++failures;
    const milliseconds d = backoff_delay(failures);
    update_stats([&](ReflectorStats& s) {
      ++s.failures;
      s.last_error = e.message;
    });
    if (stopping) co_return;
    spdlog::warn("kube: {}: {}; retrying in {} ms", name(), e.message, d.count());
    co_await sleep(d);
  }

  // ---- list ----

  awaitable<Status> relist(bool is_relist) {
    ListOptions lo;
    lo.limit = opts.page_size;
    lo.label_selector = opts.label_selector;
    lo.field_selector = opts.field_selector;
    auto r = co_await client->list(opts.resource, opts.namespace_, lo,
                                   SteadyClock::now() + opts.request_timeout, stop_signal);
    if (!r) co_return r.error();
    if (r->items.empty() && !store.empty()) {
      // Everything gone at once, learnt from one answer: with noMatch allow, every image the
      // dropped ClusterImagePolicies covered would be admitted. Deletions normally arrive as
      // watch events; a relist that finds none is asked once more before it is believed.
      spdlog::warn(
          "kube: {}: a list found none of the {} object(s) held; listing once more "
          "before dropping them",
          name(), store.size());
      co_await sleep(opts.confirm_empty_after);
      if (stopping) co_return cancelled();
      r = co_await client->list(opts.resource, opts.namespace_, lo,
                                SteadyClock::now() + opts.request_timeout, stop_signal);
      if (!r) co_return r.error();
    }
    std::map<std::string, std::shared_ptr<const Object>> fresh;
    for (auto& o : r->items) {
      std::string key = o.meta.key();
      fresh[std::move(key)] = std::make_shared<const Object>(std::move(o));
    }
    bool changed = fresh.size() != store.size();
    if (!changed) {
      for (auto a = fresh.begin(), b = store.begin(); a != fresh.end(); ++a, ++b) {
        if (a->first != b->first ||
            a->second->meta.resource_version != b->second->meta.resource_version ||
            a->second->json != b->second->json) {
          changed = true;
          break;
        }
      }
    }
    const bool first = sequence == 0;
    store = std::move(fresh);
    rv = std::move(r->resource_version);
    if (rv.empty()) {
      spdlog::warn("kube: {}: the list carried no resourceVersion; the watch starts at 'now'",
                   name());
    }
    failed_watches = 0;
    update_stats([&](ReflectorStats& s) {
      ++s.lists;
      if (is_relist) ++s.relists;
      s.resource_version = rv;
      s.last_error.clear();
      s.current_at = SteadyClock::now();
    });
    if (first) {
      spdlog::info("kube: {} synced: {} object(s) at resourceVersion {}", name(), store.size(), rv);
    }
    if (first || changed) publish();
    co_return Status{};
  }

  // ---- watch ----

  enum class Outcome { rewatch, relist, failed };
  struct WatchResult {
    Outcome outcome = Outcome::failed;
    Error error;
  };

  int64_t pick_timeout() {
    const int64_t lo = std::max<int64_t>(opts.min_watch_timeout.count(), 1);
    const int64_t hi = std::max<int64_t>(opts.max_watch_timeout.count(), lo);
    if (hi <= lo) return lo;
    std::uniform_int_distribution<int64_t> dist(lo, hi - 1);
    return dist(rng);
  }

  // Applies one event; true when the store changed.
  bool apply(WatchEvent& ev) {
    const std::string& erv = ev.object.meta.resource_version;
    switch (ev.type) {
      case EventType::added:
      case EventType::modified: {
        std::string key = ev.object.meta.key();
        if (!erv.empty()) rv = erv;
        auto it = store.find(key);
        if (it != store.end() && it->second->meta.resource_version == erv &&
            it->second->json == ev.object.json) {
          return false;  // already there (a replayed event)
        }
        if (it != store.end() && it->second->meta.uid == ev.object.meta.uid &&
            ev.object.meta.generation < it->second->meta.generation) {
          // The same object at an older spec: a generation never goes back, so this comes
          // from a stale cache of a server behind a load balancer. Applied, it would roll a
          // ClusterImagePolicy back to what it was before it was tightened.
          spdlog::warn("kube: {}: {} arrived at generation {} after {}; kept the newer one", name(),
                       key, ev.object.meta.generation, it->second->meta.generation);
          return false;
        }
        store[std::move(key)] = std::make_shared<const Object>(std::move(ev.object));
        return true;
      }
      case EventType::deleted: {
        if (!erv.empty()) rv = erv;
        return store.erase(ev.object.meta.key()) > 0;
      }
      case EventType::bookmark:
        rv = erv;
        return false;
      case EventType::error:
        return false;
    }
    return false;
  }

  awaitable<WatchResult> watch_once() {
    WatchOptions wo;
    wo.resource_version = rv;
    wo.timeout_seconds = pick_timeout();
    wo.allow_bookmarks = true;
    wo.label_selector = opts.label_selector;
    wo.field_selector = opts.field_selector;
    wo.read_slack = opts.watch_read_slack;
    const auto started_at = SteadyClock::now();
    auto w = co_await client->watch(opts.resource, opts.namespace_, wo,
                                    started_at + opts.request_timeout, stop_signal);
    update_stats([](ReflectorStats& s) { ++s.watches; });
    if (!w) co_return WatchResult{Outcome::failed, w.error()};
    spdlog::debug("kube: watching {} from resourceVersion {} for {} s", name(), rv,
                  wo.timeout_seconds);
    uint64_t seen = 0;
    for (;;) {
      auto evs = co_await (*w)->next();
      if (stopping) co_return WatchResult{Outcome::failed, cancelled()};
      const auto lasted = SteadyClock::now() - started_at;
      const bool long_enough = lasted >= opts.min_watch_duration;
      if (lasted >= opts.healthy_watch_duration) failures = 0;
      if (!evs) co_return WatchResult{Outcome::failed, evs.error()};
      if (evs->empty()) {
        if (seen == 0 && !long_enough) {
          co_return WatchResult{
              Outcome::failed,
              make_error(Errc::unavailable, "the watch ended at once without any event")};
        }
        update_stats([](ReflectorStats& s) { s.current_at = SteadyClock::now(); });
        co_return WatchResult{Outcome::rewatch, {}};
      }
      bool changed = false;
      uint64_t applied = 0, marks = 0;
      std::optional<WatchResult> end;
      for (auto& ev : *evs) {
        if (ev.type == EventType::error) {
          const ApiStatus& s = ev.status;
          if (s.code == 410 || s.rv_too_large) {
            end = WatchResult{Outcome::relist,
                              make_error(Errc::unavailable, "resourceVersion " + rv + " is gone (" +
                                                                std::to_string(s.code) + " " +
                                                                s.describe() + ")")};
          } else {
            end = WatchResult{
                Outcome::failed,
                make_error(Errc::unavailable, "watch ERROR event " + std::to_string(s.code) + " (" +
                                                  s.describe() + ")")};
          }
          break;
        }
        ++seen;
        if (ev.type == EventType::bookmark) {
          ++marks;
        } else {
          ++applied;
        }
        changed = apply(ev) || changed;
      }
      // A change applied is progress; a bookmark alone is not (a server may send one before
      // every 410).
      if (applied > 0) failures = 0;
      if (applied + marks > 0) failed_watches = 0;
      update_stats([&](ReflectorStats& s) {
        s.events += applied;
        s.bookmarks += marks;
        s.resource_version = rv;
        s.last_error.clear();
        if (applied + marks > 0) s.current_at = SteadyClock::now();
      });
      if (changed) publish();
      if (end) co_return std::move(*end);
    }
  }

  static Error cancelled() { return make_error(Errc::unavailable, "stopped"); }

  static awaitable<void> run(std::shared_ptr<Impl> self) {
    bool need_list = true;
    bool is_relist = false;
    while (!self->stopping) {
      if (need_list) {
        auto st = co_await self->relist(is_relist);
        if (self->stopping) break;
        if (!st) {
          co_await self->fail(st.error());
          continue;
        }
        need_list = false;
      }
      auto r = co_await self->watch_once();
      if (self->stopping) break;
      switch (r.outcome) {
        case Outcome::rewatch:
          break;
        case Outcome::relist:
          need_list = true;
          is_relist = true;
          spdlog::info("kube: {}: {}; listing again", self->name(), r.error.message);
          // The first 410 is routine (history compacted): relist soon, at a random point of
          // the next half second so that replicas do not list in step. Repeated ones without
          // progress back off like any failure.
          if (self->failures++ > 0) {
            const milliseconds d = self->backoff_delay(self->failures - 1);
            self->update_stats([&](ReflectorStats& s) {
              ++s.failures;
              s.last_error = r.error.message;
            });
            co_await self->sleep(d);
          } else {
            std::uniform_int_distribution<int64_t> jitter(0, 500);
            co_await self->sleep(milliseconds(jitter(self->rng)));
          }
          break;
        case Outcome::failed:
          co_await self->fail(r.error);
          if (++self->failed_watches >= self->opts.relist_after_failed_watches) {
            spdlog::warn("kube: {}: {} watches in a row failed; listing again", self->name(),
                         self->failed_watches);
            self->failed_watches = 0;
            need_list = true;
            is_relist = true;
          }
          break;
      }
    }
    spdlog::debug("kube: reflector for {} stopped", self->name());
    self->running = false;
  }
};

Reflector::Reflector(std::shared_ptr<Client> client, ReflectorOptions options,
                     SnapshotCallback on_change)
    : impl_(std::make_shared<Impl>(std::move(client), std::move(options), std::move(on_change))) {}

Reflector::~Reflector() {
  stop();
}

void Reflector::start() {
  if (impl_->started.exchange(true) || impl_->stopping) return;
  impl_->running = true;
  asio::co_spawn(impl_->strand, Impl::run(impl_), [impl = impl_](const std::exception_ptr& e) {
    impl->running = false;
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("kube: reflector ended by an exception: {}", ex.what());
    } catch (...) {
      spdlog::error("kube: reflector ended by an exception");
    }
  });
}

void Reflector::stop() {
  auto& impl = *impl_;
  impl.stopping = true;
  impl.stop_signal.cancel();
  if (tl_in_callback == &impl) {
    impl.release_after_callback = true;  // cb_mu is ours already; publish() drops cb after
    return;
  }
  std::lock_guard lock(impl.cb_mu);  // waits for a callback that is running
  impl.cb = nullptr;
}

bool Reflector::synced() const {
  std::lock_guard lock(impl_->mu);
  return impl_->st.synced;
}

bool Reflector::running() const {
  return impl_->running;
}

std::shared_ptr<const Snapshot> Reflector::snapshot() const {
  std::lock_guard lock(impl_->mu);
  return impl_->snap;
}

const Resource& Reflector::resource() const {
  return impl_->opts.resource;
}

ReflectorStats Reflector::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->st;
}

}  // namespace sigil::kube
