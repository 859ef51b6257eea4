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
  it->second.push_back(std::move(c));
  ++idle_total;
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
                                                               CallState& call, bool& retryable) {
  retryable = true;
  const std::string where = url.authority();
  bool lookup_retryable = false;
  auto eps = co_await endpoints(url, deadline, call, lookup_retryable);
  if (!eps) {
    retryable = lookup_retryable;
    co_return eps.error();
  }
  auto conn = std::make_shared<Conn>();
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

awaitable<Result<std::shared_ptr<Conn>>> Client::Impl::acquire(const Url& url, Deadline deadline,
                                                               CallState& call, bool fresh,
                                                               bool& reused, bool& retryable) {
  reused = false;
  retryable = true;
  if (!fresh) {
    if (auto c = take_idle(url.origin())) {
      reused = true;
      call.active = c;
      co_return c;
    }
  }
  co_return co_await connect(url, deadline, call, retryable);
}

}  // namespace sigil::net
