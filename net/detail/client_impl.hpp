// net/detail/client_impl.hpp: the private parts of net::Client, shared by its sources.
//
// Role: net/client.cpp holds the public API and the request checks; net/connect.cpp the idle
// pool, resolving under a deadline, connecting and the TLS handshake; net/exchange.cpp one
// exchange with its caps, the retry loop and redirects; net/stream.cpp streaming answers
// (Client::open, ResponseStream). Everything runs on the client's strand. Included only by
// net/*.cpp.
#pragma once

#include <poll.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "net/client.hpp"
#include "net/detail/resolver.hpp"

namespace sigil::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using SteadyClock = std::chrono::steady_clock;

namespace detail {

inline constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
inline constexpr size_t kReadChunk = 16 * 1024;
// What a connection's read buffer may hold beyond the header limit. Beast's parser consumes a
// body as it arrives, but it keeps a chunk header (with its extensions) and a chunked trailer
// in the buffer until their line ends, and neither counts against the header or body limit:
// without a cap on the buffer, a peer that sends `1;aaaa...` and never a CRLF grows it until the
// deadline. Beast reads at most 64 KiB at a time, so this leaves room for one read.
inline constexpr size_t kBufferSlack = 64 * 1024;
// The error a read gives when the buffer is full (Beast's buffer_overflow), as sigil says it.
struct Conn;
Error buffer_overflow_error(const std::string& where, const Conn& conn);

Error timeout_error(const std::string& what);
Error cancelled_error(const std::string& what);
boost::beast::http::verb verb_of(Method m);
// A request net can send as asked, or why not.
Status check_request(const Request& r);
bool is_redirect(unsigned s);
// A connection error on a keep-alive connection that the peer closed while it was idle.
bool closed_by_peer(const boost::system::error_code& ec);

// ---------------------------------------------------------------------------------------------
// Connections (touched only on the client's strand)

// One slot of the client's connection caps (ClientOptions::max_connections), held from before
// the socket is made to the end of its Conn, which may end on any thread (a ResponseStream's).
// Counted against its host name (`host`; the per-origin cap is one host's whatever the port)
// when a request without operator_listed opened it (`per_host`). Releasing it wakes a call
// waiting for one (Client::Impl::release_slot).
class SlotHold {
 public:
  SlotHold() = default;
  SlotHold(std::weak_ptr<Client::Impl> owner, std::string host, bool reserved, bool per_host)
      : owner_(std::move(owner)),
        host_(std::move(host)),
        reserved_(reserved),
        per_host_(per_host),
        held_(true) {}
  SlotHold(SlotHold&& o) noexcept
      : owner_(std::move(o.owner_)),
        host_(std::move(o.host_)),
        reserved_(o.reserved_),
        per_host_(o.per_host_),
        held_(std::exchange(o.held_, false)) {}
  SlotHold& operator=(SlotHold&& o) noexcept {
    if (this != &o) {
      release();
      owner_ = std::move(o.owner_);
      host_ = std::move(o.host_);
      reserved_ = o.reserved_;
      per_host_ = o.per_host_;
      held_ = std::exchange(o.held_, false);
    }
    return *this;
  }
  SlotHold(const SlotHold&) = delete;
  SlotHold& operator=(const SlotHold&) = delete;
  ~SlotHold() { release(); }
  void release() noexcept;  // net/connect.cpp
  bool reserved() const noexcept { return held_ && reserved_; }
  bool per_host() const noexcept { return held_ && per_host_; }
  const std::string& host() const noexcept { return host_; }

 private:
  std::weak_ptr<Client::Impl> owner_;
  std::string host_;
  bool reserved_ = false;
  bool per_host_ = false;
  bool held_ = false;
};

// A call waiting for a slot (strand only). `woken`: a release or park chose it.
struct SlotWaiter {
  std::shared_ptr<asio::steady_timer> timer;  // also the call's `sleeping` (cancellation)
  std::string origin;                         // what it connects to
  bool named = false;                         // operator_named: woken before the others
  bool reuses = false;  // may take a parked connection of `origin` (not a fresh call)
  bool woken = false;
};

struct Conn {
  SlotHold slot;  // first: members end in reverse order, so it is released after the socket
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  std::string origin;
  SteadyClock::time_point idle_since{};
  bool closed = false;
  // Whether the stream's deadline timer is set: every operation arms it with its call's
  // deadline; parking the connection disarms it (the expires_never rule).
  bool armed = false;

  beast::tcp_stream& lowest() { return tls ? tls->next_layer() : *plain; }
  void arm(Deadline deadline) {
    lowest().expires_at(deadline);
    armed = true;
  }
  void disarm() {
    lowest().expires_never();
    armed = false;
  }
  void close() {
    closed = true;
    lowest().close();
  }
  // An idle connection is never readable: we never pipeline, so bytes or an EOF waiting on
  // it mean the peer closed it (or sent a TLS alert). Checked without blocking.
  bool looks_dead() {
    if (closed || !lowest().socket().is_open()) return true;
    pollfd p{};
    p.fd = lowest().socket().native_handle();
    p.events = POLLIN;
    const int n = ::poll(&p, 1, 0);
    return n != 0;  // readable, hung up, or poll itself failed
  }
};

// One call (send, open, or a stream read) on the strand. The caller's cancellation slot holds
// a shared reference: a cancellation posted after the call ended finds done == true and
// touches nothing else.
struct CallState {
  bool cancelled = false;
  bool done = false;
  bool operator_named = false;   // the request's (Request::operator_named): lookups, exchanges
  bool operator_listed = false;  // the request's (Request::operator_listed): exchanges
  std::weak_ptr<Conn> active;
  std::weak_ptr<Lookup> resolving;
  std::shared_ptr<asio::steady_timer> sleeping;

  void cancel() {
    if (done || cancelled) return;
    cancelled = true;
    if (auto c = active.lock()) c->close();
    if (auto r = resolving.lock()) r->cancel();
    if (sleeping) sleeping->cancel();
  }
};

struct Attempt {
  Result<Response> result = make_error(Errc::internal, "no attempt");
  bool retryable = false;  // a network failure worth another attempt
  bool stale = false;      // failed before any byte of the answer, on a pooled connection
  bool answered = false;   // a status line arrived (OutageMemo: the origin is alive)
};

}  // namespace detail

using detail::Attempt;
using detail::buffer_overflow_error;
using detail::CallState;
using detail::cancelled_error;
using detail::check_request;
using detail::closed_by_peer;
using detail::Conn;
using detail::is_redirect;
using detail::kBufferSlack;
using detail::kReadChunk;
using detail::Lookup;
using detail::SlotHold;
using detail::timeout_error;
using detail::use_tuple;
using detail::verb_of;

// ---------------------------------------------------------------------------------------------
// Client::Impl

struct Client::Impl : std::enable_shared_from_this<Client::Impl> {
  asio::any_io_executor strand;
  ClientOptions opts;
  Status init;
  std::shared_ptr<ssl::context> ctx;
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> connections{0};
  std::atomic<size_t> idle_total{0};
  std::atomic<size_t> idle_armed{0};

  // Strand only.
  std::map<std::string, std::vector<std::shared_ptr<Conn>>> idle;
  std::unique_ptr<OutageMemo> outages;  // ClientOptions::fail_fast
  // Calls waiting for an origin's probe (OutageMemo::probing), woken when it settles.
  std::map<std::string, std::vector<std::weak_ptr<asio::steady_timer>>> probe_waiters;
  std::unique_ptr<detail::Resolver> resolver;  // host names (c-ares); IP literals need none

  // Open connections by slot (ClientOptions::max_connections): any thread releases.
  struct Slots {
    std::mutex m;
    size_t shared = 0;
    size_t reserved = 0;
    // By host name, those that count against max_connections_per_host (hosts with one).
    std::unordered_map<std::string, size_t> per_host;
  } slots;
  std::atomic<size_t> slot_waiting{0};
  std::atomic<uint64_t> slot_waited{0};
  std::atomic<uint64_t> slot_timed_out{0};
  std::atomic<uint64_t> slot_refused{0};
  // Strand only: calls waiting for a slot in arrival order, by the host whose cap they met ("":
  // the total).
  std::map<std::string, std::deque<std::weak_ptr<detail::SlotWaiter>>> slot_waiters;

  // ---- the pool (net/connect.cpp) ----

  std::shared_ptr<Conn> take_idle(const std::string& origin);
  void park(std::shared_ptr<Conn> c);
  // Below max_origins (for a new origin) and max_idle_total: the expired connections closed
  // first, then the origins least recently parked at (never `origin` itself).
  void make_idle_room(const std::string& origin);
  void drop_idle(std::vector<std::shared_ptr<Conn>>& v, size_t i);

  // ---- connecting (net/connect.cpp) ----

  // Tells opts.observer of one exchange of `call` (its marks come from the call).
  void observe(const Url& url, Method method, unsigned status, Errc error,
               SteadyClock::time_point start, bool reused, const CallState& call);

  // url's addresses: its host if an IP literal, else a lookup. On failure, `retryable` says
  // whether a new lookup could help: not when the lookup failed (see
  // detail::Resolver::worth_retrying), the call was cancelled or ran out of time.
  awaitable<Result<std::vector<tcp::endpoint>>> endpoints(const Url& url, Deadline deadline,
                                                          CallState& call, bool& retryable);

  // A new connection to url's origin, TLS handshake done for https. `retryable` is false
  // when another attempt cannot help (the certificate was refused, the deadline passed).
  awaitable<Result<std::shared_ptr<Conn>>> connect(const Url& url, Deadline deadline,
                                                   CallState& call, bool& retryable, SlotHold slot);

  // A connection to url's origin: an idle one when there is one (unless `fresh`), else a new
  // one within the connection caps, waiting for a slot if need be. `dialed`: when connecting
  // began (after any wait); `queued`: the call failed waiting for a slot, not connecting.
  awaitable<Result<std::shared_ptr<Conn>>> acquire(const Url& url, Deadline deadline,
                                                   CallState& call, bool fresh, bool& reused,
                                                   bool& retryable, SteadyClock::time_point& dialed,
                                                   bool& queued);

  // ---- the connection caps (net/connect.cpp) ----

  enum class SlotTaken { shared, reserved, origin_full, total_full };
  // per_host: the slot counts against host's cap (the call is not operator_listed).
  SlotTaken take_slot(const std::string& host, const CallState& call, bool& per_host);
  // From SlotHold, on any thread.
  void release_slot(const std::string& host, bool reserved, bool per_host);
  // Wakes one call waiting on host's cap and one waiting on the total, operator_named ones
  // first: each release or park frees at most one slot or connection. A woken call that cannot
  // use it, or gives up, wakes the next (slot_for).
  // per_host: the event freed a slot of host's cap (else only the total's is woken). parked: the
  // origin of a connection just parked, which a waiter for that origin takes first.
  void wake_slot_waiters(const std::string& host, bool per_host, const std::string* parked);
  void wake_one(const std::string& key, const std::string* parked = nullptr);
  // Whether the cap's queue (key: a host, or "" for the total) holds max_waiting_per_cap calls
  // that still wait.
  bool waiters_at_bound(const std::string& key);
  // Closes the idle connection parked longest ago: of `host`, counted against its cap, only if
  // only_host; and only one in a shared slot if shared_only (a reserved slot is no use to a call
  // without the mark).
  bool drop_oldest_idle(const std::string& host, bool only_host, bool shared_only);
  // A slot for a new connection to url's host, waiting for one within the deadline; or, for a
  // call that may reuse one (not `fresh`), a connection parked while it waited (idle_found).
  awaitable<Result<SlotHold>> slot_for(const Url& url, Deadline deadline, CallState& call,
                                       bool fresh, std::shared_ptr<Conn>& idle_found);

  // ---- one exchange, retries, redirects (net/exchange.cpp) ----

  http::request<http::string_body> make_message(const Request& req, const Url& url,
                                                bool with_auth) const;

  // Writes m and reads the answer's header into p. stale: failed before any answer byte.
  template <class Stream, class Parser>
  awaitable<Status> write_and_read_header(Stream& stream, Conn& conn,
                                          http::request<http::string_body>& m, Parser& p,
                                          const Limits& limits, Deadline deadline, CallState& call,
                                          const std::string& where, bool& stale) {
    stale = false;
    conn.arm(deadline);
    auto [wec, wn] = co_await http::async_write(stream, m, use_tuple);
    (void)wn;
    if (call.cancelled) co_return cancelled_error("sending to " + where);
    if (wec) {
      if (wec == beast::error::timeout || SteadyClock::now() >= deadline) {
        co_return timeout_error("sending to " + where);
      }
      stale = true;  // nothing of an answer was read
      co_return make_error(Errc::unavailable, "sending to " + where + " failed: " + wec.message());
    }
    p.header_limit(limits.max_header);
    conn.buffer.max_size(static_cast<size_t>(limits.max_header) + kBufferSlack);
    conn.arm(deadline);
    auto [hec, hn] = co_await http::async_read_header(stream, conn.buffer, p, use_tuple);
    (void)hn;
    if (call.cancelled) co_return cancelled_error("waiting for " + where);
    if (hec) {
      if (hec == beast::error::timeout || SteadyClock::now() >= deadline) {
        co_return timeout_error("waiting for " + where);
      }
      if (hec == http::error::buffer_overflow) co_return buffer_overflow_error(where, conn);
      if (hec == http::error::header_limit) {
        co_return make_error(Errc::too_large, "the answer of " + where + " has a header over " +
                                                  std::to_string(limits.max_header) + " bytes");
      }
      stale = hec == http::error::end_of_stream || (closed_by_peer(hec) && conn.buffer.size() == 0);
      co_return make_error(Errc::unavailable,
                           "reading the answer of " + where + " failed: " + hec.message());
    }
    co_return Status{};
  }

  template <class Stream>
  awaitable<Attempt> exchange_on(Stream& stream, Conn& conn, http::request<http::string_body>& m,
                                 const Url& url, bool head, const Limits& limits, Deadline deadline,
                                 CallState& call, bool& keep);

  // One request to url on one connection; a pooled connection that turns out dead before any
  // answer byte is replaced by a fresh one once.
  awaitable<Attempt> round_trip(const Request& req, const Url& url, bool with_auth,
                                const Limits& limits, Deadline deadline, CallState& call);

  // Waits `delay` unless it would pass the deadline or the call is cancelled. False: do not
  // retry.
  awaitable<bool> sleep(std::chrono::milliseconds delay, Deadline deadline, CallState& call);

  // ---- the outage memo (net/outage.hpp), from round_trip ----

  // Waits until origin's probe settles, or until `until`.
  awaitable<void> await_probe(const std::string& origin, Deadline until, CallState& call);
  void wake_probe_waiters(const std::string& origin);

  // round_trip with the request's retry policy: network errors, 429 and 5xx again after a
  // backoff (or the server's Retry-After), within the deadline. The last answer is returned
  // whatever its status.
  awaitable<Result<Response>> send_retrying(const Request& req, const Url& url, bool with_auth,
                                            const Limits& limits, Deadline deadline,
                                            CallState& call);

  awaitable<Result<Response>> send_on_strand(const Request& req, Deadline deadline,
                                             const Limits& limits, CallState& call);

  // ---- running on the strand, with the caller's cancellation bridged ----

  // Runs body(call) on the strand. The caller's cancellation slot gets a handler that owns
  // the call's state and posts its cancellation to the strand; co_spawn's own cancellation
  // forwarding is left unconnected (Boost 1.81 dispatches a raw pointer to the child's
  // signal, which dangles when the child finished first).
  template <class T, class Body>
  static awaitable<Result<T>> on_strand(std::shared_ptr<Impl> self, std::string what, Body& body) {
    auto cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none) co_return cancelled_error(what);
    auto call = std::make_shared<CallState>();
    asio::cancellation_slot slot = cs.slot();
    if (slot.is_connected()) {
      slot.assign([call, strand = self->strand](asio::cancellation_type) {
        asio::post(strand, [call] { call->cancel(); });
      });
    }
    auto run = [&body, call, &what]() -> awaitable<std::optional<Result<T>>> {
      std::optional<Result<T>> out;
      try {
        out.emplace(co_await body(*call));
      } catch (const std::exception& e) {
        out.emplace(make_error(Errc::internal, what + ": " + e.what()));
      }
      call->done = true;
      co_return out;
    };
    std::optional<Result<T>> r;
    try {
      r = co_await asio::co_spawn(
          self->strand, run(),
          asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable));
    } catch (const std::exception& e) {
      r.emplace(make_error(Errc::internal, what + ": " + e.what()));
    }
    if (slot.is_connected()) slot.clear();
    if (!r) co_return make_error(Errc::internal, what + ": no result");
    co_return std::move(*r);
  }
};

}  // namespace sigil::net
