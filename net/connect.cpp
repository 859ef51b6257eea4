// net/connect.cpp: the idle pool (the expires_never rule, dead-connection checks), resolving
// under a deadline (net/resolver.cpp), connecting plain or TLS with SNI and host verification.
#include <poll.h>

#include <spdlog/spdlog.h>

#include "common/host_lookup.hpp"
#include "net/detail/client_impl.hpp"
#include "net/detail/tls.hpp"

namespace sigil::net {

namespace {

// The least time a connection attempt to one of several addresses gets (Go's net.Dialer: 2 s).
constexpr std::chrono::seconds kConnectShare{2};

}  // namespace

std::shared_ptr<Conn> Client::Impl::take_idle(const std::string& origin) {
  auto it = idle.find(origin);
  if (it == idle.end()) return nullptr;
  auto& v = it->second;
  std::shared_ptr<Conn> found;
  const auto now = SteadyClock::now();
  while (!v.empty() && !found) {
    auto c = std::move(v.back());
    v.pop_back();
    --idle_total;
    if (c->armed) --idle_armed;
    if (now - c->idle_since < opts.idle_timeout && !c->looks_dead()) found = std::move(c);
  }
  if (v.empty()) idle.erase(it);
  return found;
}

void Client::Impl::drop_idle(std::vector<std::shared_ptr<Conn>>& v, size_t i) {
  auto c = std::move(v[i]);
  v.erase(v.begin() + static_cast<std::ptrdiff_t>(i));
  --idle_total;
  if (c->armed) --idle_armed;
  c->close();
}

void Client::Impl::make_idle_room(const std::string& origin) {
  const auto full = [&] {
    return idle_total >= opts.max_idle_total ||
           (idle.size() >= opts.max_origins && idle.count(origin) == 0);
  };
  if (!full()) return;
  // The expired first, everywhere.
  const auto now = SteadyClock::now();
  for (auto it = idle.begin(); it != idle.end();) {
    auto& v = it->second;
    for (size_t i = v.size(); i-- > 0;) {
      if (now - v[i]->idle_since >= opts.idle_timeout) drop_idle(v, i);
    }
    it = v.empty() ? idle.erase(it) : std::next(it);
  }
  // Then whole origins, least recently parked at first (each vector's newest is its back).
  while (full() && !idle.empty()) {
    auto oldest = idle.end();
    for (auto it = idle.begin(); it != idle.end(); ++it) {
      if (it->first == origin) continue;
      if (oldest == idle.end() ||
          it->second.back()->idle_since < oldest->second.back()->idle_since) {
        oldest = it;
      }
    }
    if (oldest == idle.end()) break;  // only this origin's own: the per-origin cap applies
    for (size_t i = oldest->second.size(); i-- > 0;) drop_idle(oldest->second, i);
    idle.erase(oldest);
  }
}

void Client::Impl::park(std::shared_ptr<Conn> c) {
  // The expires_never rule: the deadline of the request that just ended must not stay
  // armed on a connection that waits for another request.
  c->disarm();
  if (c->closed || opts.max_idle_per_origin == 0 || opts.max_idle_total == 0) return;
  make_idle_room(c->origin);
  auto it = idle.find(c->origin);
  if (it == idle.end()) {
    if (idle.size() >= opts.max_origins) return;
    it = idle.emplace(c->origin, std::vector<std::shared_ptr<Conn>>{}).first;
  }
  if (it->second.size() >= opts.max_idle_per_origin || idle_total >= opts.max_idle_total) {
    if (it->second.empty()) idle.erase(it);
    return;
  }
  c->idle_since = SteadyClock::now();
  if (c->armed) ++idle_armed;
  const Conn& parked = *c;  // kept alive by the idle list; waking touches no idle list
  it->second.push_back(std::move(c));
  ++idle_total;
  if (slot_waiting.load(std::memory_order_relaxed) > 0 && !parked.slot.host().empty()) {
    wake_slot_waiters(parked.slot.host(), true, &parked.origin);
  }
}

void Client::Impl::observe(const Url& url, Method method, unsigned status, Errc error,
                           SteadyClock::time_point start, bool reused, const CallState& call) {
  if (!opts.observer) return;
  Exchange e;
  e.origin = url.origin();
  e.method = method;
  e.status = status;
  e.error = error;
  e.duration = SteadyClock::now() - start;
  e.reused = reused;
  e.operator_named = call.operator_named;
  e.operator_listed = call.operator_listed;
  try {
    opts.observer(e);
  } catch (...) {
    spdlog::warn("net: the exchange observer threw; ignored");
  }
}

awaitable<Result<std::vector<tcp::endpoint>>> Client::Impl::endpoints(const Url& url,
                                                                      Deadline deadline,
                                                                      CallState& call,
                                                                      bool& retryable) {
  retryable = false;
  boost::system::error_code ec;
  const auto port = static_cast<unsigned short>(std::stoul(url.port));
  auto addr = asio::ip::make_address(url.host, ec);
  if (!ec) co_return std::vector<tcp::endpoint>{tcp::endpoint(addr, port)};
  if (!resolver) co_return make_error(Errc::internal, "net client without a resolver");
  auto lookup = std::make_shared<Lookup>(strand);
  call.resolving = lookup;
  if (auto st = resolver->start(url.host, port, lookup, call.operator_named); !st) {
    if (st.error().code != Errc::unavailable) co_return st.error();
    // Every slot taken: one may be free after the backoff.
    retryable = !call.cancelled;
    co_return with_lookup_failure(st.error(), url.host, HostLookupFailure::Why::busy);
  }
  if (!lookup->done && !call.cancelled) {
    // Woken by the answer or a cancellation; past the deadline the lookup is abandoned (c-ares
    // ends it by its own timeouts) and this call goes on at once.
    lookup->wake.expires_at(deadline);
    co_await lookup->wake.async_wait(use_tuple);
  }
  if (call.cancelled) co_return cancelled_error("resolving " + url.host);
  if (!lookup->done) {
    co_return with_lookup_failure(timeout_error("resolving " + url.host), url.host,
                                  HostLookupFailure::Why::no_answer);
  }
  if (lookup->status != 0) {
    retryable = detail::Resolver::worth_retrying(lookup->status, call.operator_named);
    co_return with_lookup_failure(
        make_error(Errc::unavailable, "cannot resolve host " + url.host + ": " +
                                          detail::Resolver::describe(lookup->status)),
        url.host, detail::Resolver::why(lookup->status));
  }
  if (lookup->endpoints.empty()) {
    co_return with_lookup_failure(
        make_error(Errc::unavailable, "host " + url.host + " has no address"), url.host,
        HostLookupFailure::Why::no_address);
  }
  co_return std::move(lookup->endpoints);
}

awaitable<Result<std::shared_ptr<Conn>>> Client::Impl::connect(const Url& url, Deadline deadline,
                                                               CallState& call, bool& retryable,
                                                               SlotHold slot) {
  retryable = true;
  const std::string where = url.authority();
  bool lookup_retryable = false;
  auto eps = co_await endpoints(url, deadline, call, lookup_retryable);
  if (!eps) {
    retryable = lookup_retryable;
    co_return eps.error();
  }
  auto conn = std::make_shared<Conn>();
  conn->slot = std::move(slot);
  conn->origin = url.origin();
  if (url.scheme == "https") {
    conn->tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(strand, *ctx);
  } else {
    conn->plain = std::make_unique<beast::tcp_stream>(strand);
  }
  call.active = conn;
  // The addresses in turn, each with an equal share of the time left but at least
  // kConnectShare (as Go's net.Dialer does): an address that drops SYNs (a registry node down,
  // an address family with no working route) costs its share, not the whole deadline, before
  // the next is tried. The last address, or a single one, gets all the time left.
  boost::system::error_code cec = beast::error::timeout;  // (when none could be tried in time)
  for (size_t i = 0; i < eps->size(); ++i) {
    const auto now = SteadyClock::now();
    if (now >= deadline) break;
    const auto left = deadline - now;
    const auto share = left / static_cast<int64_t>(eps->size() - i);
    if (i > 0) {
      boost::system::error_code ignored;
      conn->lowest().socket().close(ignored);  // after a failure: a new socket for the next
    }
    conn->lowest().expires_at(now +
                              std::min<SteadyClock::duration>(
                                  left, std::max<SteadyClock::duration>(share, kConnectShare)));
    auto [e] = co_await conn->lowest().async_connect((*eps)[i], use_tuple);
    if (call.cancelled) co_return cancelled_error("connecting to " + where);
    cec = e;
    if (!e) break;
  }
  conn->arm(deadline);
  if (cec) {
    if (cec == beast::error::timeout || SteadyClock::now() >= deadline) {
      retryable = false;
      co_return timeout_error("connecting to " + where);
    }
    co_return make_error(Errc::unavailable, "cannot connect to " + where + ": " + cec.message());
  }
  connections.fetch_add(1, std::memory_order_relaxed);
  if (opts.tcp_nodelay) {
    // Nagle would hold a small write (a request right after the TLS Finished, a body
    // written after its header) until the peer's delayed ACK: up to 40 ms per request.
    boost::system::error_code nec;
    conn->lowest().socket().set_option(tcp::no_delay(true), nec);
    if (nec) spdlog::debug("net: TCP_NODELAY on {}: {}", where, nec.message());
  }
  if (conn->tls) {
    SSL* s = conn->tls->native_handle();
    if (auto st = detail::prepare_handshake(s, url.host, opts.tls); !st) {
      retryable = false;
      co_return st.error();
    }
    conn->arm(deadline);
    auto [hec] = co_await conn->tls->async_handshake(ssl::stream_base::client, use_tuple);
    if (call.cancelled) co_return cancelled_error("TLS handshake with " + where);
    if (hec) {
      if (hec == beast::error::timeout || SteadyClock::now() >= deadline) {
        retryable = false;
        co_return timeout_error("TLS handshake with " + where);
      }
      std::string why = hec.message();
      if (auto v = detail::verification_failure(s)) {
        why = *v;
        retryable = false;
      }
      co_return make_error(Errc::unavailable, "TLS handshake with " + where + " failed: " + why);
    }
  }
  co_return conn;
}

// ---------------------------------------------------------------------------------------------
// The connection caps

void detail::SlotHold::release() noexcept {
  if (!held_) return;
  held_ = false;
  try {
    if (auto owner = owner_.lock()) owner->release_slot(host_, reserved_, per_host_);
  } catch (...) {  // NOLINT(bugprone-empty-catch): runs in destructors; a count is all it loses
  }
}

Client::Impl::SlotTaken Client::Impl::take_slot(const std::string& host, const CallState& call,
                                                bool& per_host) {
  std::lock_guard lock(slots.m);
  // The operator's own hosts are not held to the per-host cap, and their connections do not
  // count against it.
  per_host = !call.operator_listed;
  if (per_host && opts.max_connections_per_host > 0) {
    const auto it = slots.per_host.find(host);
    if (it != slots.per_host.end() && it->second >= opts.max_connections_per_host) {
      return SlotTaken::origin_full;
    }
  }
  SlotTaken taken = SlotTaken::shared;
  if (opts.max_connections == 0 || slots.shared < opts.max_connections) {
    ++slots.shared;
  } else if (call.operator_named && slots.reserved < opts.reserved_connections) {
    ++slots.reserved;
    taken = SlotTaken::reserved;
  } else {
    return SlotTaken::total_full;
  }
  if (per_host) ++slots.per_host[host];
  return taken;
}

void Client::Impl::release_slot(const std::string& host, bool reserved, bool per_host) {
  {
    std::lock_guard lock(slots.m);
    size_t& n = reserved ? slots.reserved : slots.shared;
    if (n > 0) --n;
    if (per_host) {
      auto it = slots.per_host.find(host);
      if (it != slots.per_host.end() && --it->second == 0) slots.per_host.erase(it);
    }
  }
  const bool capped = opts.max_connections > 0 || opts.max_connections_per_host > 0;
  if (!capped) return;
  // To the strand, always: a call may be between finding no slot and starting to wait, and it
  // starts waiting before this can run.
  asio::post(strand, [w = weak_from_this(), host, per_host] {
    if (auto self = w.lock()) self->wake_slot_waiters(host, per_host, nullptr);
  });
}

void Client::Impl::wake_one(const std::string& key, const std::string* parked) {
  auto it = slot_waiters.find(key);
  if (it == slot_waiters.end()) return;
  auto& q = it->second;
  // The call to wake: for a parked connection, one that can take it (its origin's, the
  // operator's first); else the operator's first, then the longest waiting. (A scan: waiters
  // hold no descriptor, and each is a pointer check here.)
  const int top = parked != nullptr ? 3 : 1;
  size_t best = q.size();
  int best_rank = -1;
  for (size_t i = 0; i < q.size() && best_rank < top; ++i) {
    auto w = q[i].lock();
    if (!w) continue;
    const bool takes = parked != nullptr && w->reuses && w->origin == *parked;
    const int rank = (takes ? 2 : 0) + (w->named ? 1 : 0);
    if (rank > best_rank) {
      best = i;
      best_rank = rank;
    }
  }
  if (best < q.size()) {
    auto chosen = q[best].lock();
    q.erase(q.begin() + static_cast<std::ptrdiff_t>(best));
    chosen->woken = true;
    chosen->timer->cancel();
  }
  while (!q.empty() && q.front().expired()) q.pop_front();
  if (q.empty()) slot_waiters.erase(it);
}

bool Client::Impl::waiters_at_bound(const std::string& key) {
  auto it = slot_waiters.find(key);
  if (it == slot_waiters.end() || it->second.size() < opts.max_waiting_per_cap) return false;
  // Calls that left (out of time, cancelled) stay in the queue until they reach its front.
  std::erase_if(it->second, [](const std::weak_ptr<detail::SlotWaiter>& w) { return w.expired(); });
  return it->second.size() >= opts.max_waiting_per_cap;
}

void Client::Impl::wake_slot_waiters(const std::string& host, bool per_host,
                                     const std::string* parked) {
  if (per_host) wake_one(host, parked);
  wake_one(std::string(), parked);
}

bool Client::Impl::drop_oldest_idle(const std::string& host, bool only_host, bool shared_only) {
  auto oldest = idle.end();
  size_t oldest_i = 0;
  for (auto it = idle.begin(); it != idle.end(); ++it) {
    // Each vector is in the order its connections were parked: the first that may go.
    const auto& v = it->second;
    for (size_t i = 0; i < v.size(); ++i) {
      if (only_host && v[i]->slot.host() != host) break;  // one origin, one host
      if (only_host && !v[i]->slot.per_host()) continue;  // not counted against the cap
      if (shared_only && v[i]->slot.reserved()) continue;
      if (oldest == idle.end() || v[i]->idle_since < oldest->second[oldest_i]->idle_since) {
        oldest = it;
        oldest_i = i;
      }
      break;
    }
  }
  if (oldest == idle.end()) return false;
  drop_idle(oldest->second, oldest_i);
  if (oldest->second.empty()) idle.erase(oldest);
  return true;
}

awaitable<Result<SlotHold>> Client::Impl::slot_for(const Url& url, Deadline deadline,
                                                   CallState& call, bool fresh,
                                                   std::shared_ptr<Conn>& idle_found) {
  const std::string& host = url.host;
  const std::string origin = url.origin();
  struct Waiting {
    std::atomic<size_t>& gauge;
    bool counted = false;
    ~Waiting() {
      if (counted) --gauge;
    }
  } waiting{slot_waiting};
  // Woken by a release or park, and leaving without a slot (cancelled, out of time): the wake
  // goes to the next call, or a slot could sit free while others wait. (Not from a destructor:
  // a frame destroyed unresumed at shutdown must not touch timers.)
  std::optional<std::string> pass;
  SlotTaken last = SlotTaken::total_full;  // the cap met last
  for (;;) {
    // After a wait: a call cancelled or out of time takes nothing more (below).
    const bool gone = waiting.counted && (call.cancelled || SteadyClock::now() >= deadline);
    bool per_host = false;
    SlotTaken t = gone ? last : take_slot(host, call, per_host);
    // Past a cap, idle connections that hold a usable slot go first: any host's for the total
    // (a shared one, unless the call is the operator's), this host's for its cap (only a fresh
    // call, which may not reuse them, finds any).
    const bool shared_only = !call.operator_named;
    while (!gone && ((t == SlotTaken::total_full && drop_oldest_idle(host, false, shared_only)) ||
                     (t == SlotTaken::origin_full && drop_oldest_idle(host, true, false)))) {
      t = take_slot(host, call, per_host);
    }
    if (t == SlotTaken::shared || t == SlotTaken::reserved) {
      co_return SlotHold(weak_from_this(), host, t == SlotTaken::reserved, per_host);
    }
    last = t;
    // The cap's queue for this call (a host's, or "" for the total).
    const std::string key = t == SlotTaken::origin_full ? host : std::string();
    // Woken from this very queue: the call keeps its place (below).
    const bool again = pass.has_value() && *pass == key;
    // A pod's call that would join a full queue, waiting first or moving over from the other
    // cap's, is refused at once, its wake passed on. Errc::unavailable (the registry cannot be
    // reached now, as a stale verdict may cover), never counted against the origin (queued).
    if (!again && !gone && !call.operator_named && opts.max_waiting_per_cap > 0 &&
        waiters_at_bound(key)) {
      if (pass) wake_one(*pass);
      slot_refused.fetch_add(1, std::memory_order_relaxed);
      co_return make_error(Errc::unavailable,
                           "no connection to " + url.authority() + ": " +
                               std::to_string(opts.max_waiting_per_cap) +
                               " calls already wait for one (" +
                               (t == SlotTaken::origin_full ? "the cap of connections to its host"
                                                            : "the cap of connections in all") +
                               ")");
    }
    if (!waiting.counted) {
      waiting.counted = true;
      ++slot_waiting;
      slot_waited.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("net: {} waits for a connection ({})", url.authority(),
                    t == SlotTaken::origin_full ? "the cap of connections to one host"
                                                : "the cap of connections in all");
    }
    if (call.cancelled || SteadyClock::now() >= deadline) {
      slot_timed_out.fetch_add(1, std::memory_order_relaxed);
      if (pass) wake_one(*pass);
      if (call.cancelled) {
        co_return cancelled_error("waiting for a connection to " + url.authority());
      }
      std::string why;
      if (t == SlotTaken::origin_full) {
        why = std::to_string(opts.max_connections_per_host) +
              " connections are open to its host, the most sigil opens to a host the operator "
              "did not list";
      } else {
        why = std::to_string(opts.max_connections) +
              " connections are open, the most sigil opens in all";
      }
      co_return make_error(Errc::timeout,
                           "no connection to " + url.authority() + " within the deadline: " + why);
    }
    // Waiting again after a wake that brought nothing this call could use. On the same cap the
    // wake is spent (what was freed was taken, or is no use without the operator's mark), and
    // the call keeps its place at the front. On the other cap (freed from the host's, blocked by
    // the total, or the other way round) the wake goes on to the next waiter on the first.
    if (pass && *pass != key) wake_one(*pass);
    pass.reset();
    auto w = std::make_shared<detail::SlotWaiter>();
    w->timer = std::make_shared<asio::steady_timer>(strand);
    w->origin = origin;
    w->named = call.operator_named;
    w->reuses = !fresh;
    w->timer->expires_at(deadline);
    if (again) {
      slot_waiters[key].push_front(w);
    } else {
      slot_waiters[key].push_back(w);
    }
    call.sleeping = w->timer;
    co_await w->timer->async_wait(use_tuple);
    call.sleeping.reset();
    if (w->woken) pass = key;
    if (!fresh && !call.cancelled && SteadyClock::now() < deadline) {
      if (auto c = take_idle(origin)) {  // parked while this call waited
        // The wake may have been for a freed slot: the next waiter gets it.
        if (pass) wake_one(*pass);
        idle_found = std::move(c);
        co_return SlotHold();
      }
    }
  }
}

awaitable<Result<std::shared_ptr<Conn>>> Client::Impl::acquire(const Url& url, Deadline deadline,
                                                               CallState& call, bool fresh,
                                                               bool& reused, bool& retryable,
                                                               SteadyClock::time_point& dialed,
                                                               bool& queued) {
  reused = false;
  retryable = true;
  queued = false;
  if (!fresh) {
    if (auto c = take_idle(url.origin())) {
      reused = true;
      call.active = c;
      co_return c;
    }
  }
  std::shared_ptr<Conn> parked;
  auto slot = co_await slot_for(url, deadline, call, fresh, parked);
  if (!slot) {
    queued = true;
    retryable = false;
    co_return slot.error();
  }
  if (parked) {
    reused = true;
    call.active = parked;
    co_return parked;
  }
  dialed = SteadyClock::now();
  co_return co_await connect(url, deadline, call, retryable, std::move(*slot));
}

}  // namespace sigil::net
