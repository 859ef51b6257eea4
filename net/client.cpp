#include "net/client.hpp"

#include <poll.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <random>

#include <spdlog/spdlog.h>
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

#include "common/encoding.hpp"
#include "net/detail/tls.hpp"

namespace sigil::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using SteadyClock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Small public helpers

const char* method_name(Method method) noexcept {
  switch (method) {
    case Method::get:
      return "GET";
    case Method::head:
      return "HEAD";
    case Method::post:
      return "POST";
    case Method::put:
      return "PUT";
    case Method::patch:
      return "PATCH";
    case Method::delete_:
      return "DELETE";
  }
  return "GET";
}

std::string find_header(const Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && ascii_lower(k) == ascii_lower(name)) return v;
  }
  return {};
}

Request get_request(Url url, std::string accept) {
  Request r;
  r.url = std::move(url);
  if (!accept.empty()) r.headers.emplace_back("Accept", std::move(accept));
  return r;
}

Request form_post(Url url, const std::vector<std::pair<std::string, std::string>>& fields) {
  Request r;
  r.method = Method::post;
  r.url = std::move(url);
  r.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  r.headers.emplace_back("Accept", "application/json");
  r.body = form_encode(fields);
  return r;
}

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr size_t kReadChunk = 16 * 1024;

Error timeout_error(const std::string& what) {
  return make_error(Errc::timeout, what + ": deadline exceeded");
}
Error cancelled_error(const std::string& what) {
  return make_error(Errc::unavailable, what + ": cancelled");
}

http::verb verb_of(Method m) {
  switch (m) {
    case Method::get:
      return http::verb::get;
    case Method::head:
      return http::verb::head;
    case Method::post:
      return http::verb::post;
    case Method::put:
      return http::verb::put;
    case Method::patch:
      return http::verb::patch;
    case Method::delete_:
      return http::verb::delete_;
  }
  return http::verb::get;
}

bool field_name_ok(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool field_value_ok(std::string_view value) {
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

// A request net can send as asked, or why not.
Status check_request(const Request& r) {
  if (r.url.scheme != "https" && r.url.scheme != "http") {
    return make_error(Errc::invalid_argument, "request URL is not http(s)");
  }
  if (r.url.target.empty() || r.url.target.front() != '/' || !field_value_ok(r.url.target)) {
    return make_error(Errc::invalid_argument, "request target is not a path");
  }
  auto hp = split_host_port(r.url.authority(), "");
  if (r.url.host.empty() || !hp || hp->second != r.url.port) {
    return make_error(Errc::invalid_argument, "request URL has no valid host and port");
  }
  for (const auto& [name, value] : r.headers) {
    if (!field_name_ok(name) || !field_value_ok(value)) {
      return make_error(Errc::invalid_argument,
                        "request header " + printable(name, 64) + " is not a valid HTTP field");
    }
    const std::string lower = ascii_lower(name);
    if (lower == "authorization" || lower == "proxy-authorization" || lower == "cookie") {
      return make_error(Errc::invalid_argument,
                        "request header " + name + " carries a credential: use authorization");
    }
    if (lower == "host" || lower == "content-length" || lower == "transfer-encoding" ||
        lower == "connection") {
      return make_error(Errc::invalid_argument, "request header " + name + " is net's to set");
    }
  }
  if (!field_value_ok(r.authorization)) {
    return make_error(Errc::invalid_argument, "the Authorization value has a line break");
  }
  return {};
}

bool is_redirect(unsigned s) {
  return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

// A connection error on a keep-alive connection that the peer closed while it was idle.
bool closed_by_peer(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted || ec == ssl::error::stream_truncated;
}

// ---------------------------------------------------------------------------------------------
// Connections (touched only on the client's strand)

struct Conn {
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

// Name resolution in flight, shared with its deadline timer and with a cancellation.
struct Resolving {
  explicit Resolving(const asio::any_io_executor& ex) : resolver(ex) {}
  tcp::resolver resolver;
  bool timed_out = false;
};

// One call (send, open, or a stream read) on the strand. The caller's cancellation slot holds
// a shared reference: a cancellation posted after the call ended finds done == true and
// touches nothing else.
struct CallState {
  bool cancelled = false;
  bool done = false;
  std::weak_ptr<Conn> active;
  std::weak_ptr<Resolving> resolving;
  std::shared_ptr<asio::steady_timer> sleeping;

  void cancel() {
    if (done || cancelled) return;
    cancelled = true;
    if (auto c = active.lock()) c->close();
    if (auto r = resolving.lock()) r->resolver.cancel();
    if (sleeping) sleeping->cancel();
  }
};

struct Attempt {
  Result<Response> result = make_error(Errc::internal, "no attempt");
  bool retryable = false;  // a network failure worth another attempt
  bool stale = false;      // failed before any byte of the answer, on a pooled connection
};

}  // namespace

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

  // ---- the pool ----

  std::shared_ptr<Conn> take_idle(const std::string& origin) {
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

  void park(std::shared_ptr<Conn> c) {
    // The expires_never rule: the deadline of the request that just ended must not stay
    // armed on a connection that waits for another request.
    c->disarm();
    if (c->closed || opts.max_idle_per_origin == 0) return;
    auto it = idle.find(c->origin);
    if (it == idle.end()) {
      if (idle.size() >= opts.max_origins) return;
      it = idle.emplace(c->origin, std::vector<std::shared_ptr<Conn>>{}).first;
    }
    if (it->second.size() >= opts.max_idle_per_origin) return;
    c->idle_since = SteadyClock::now();
    if (c->armed) ++idle_armed;
    it->second.push_back(std::move(c));
    ++idle_total;
  }

  // ---- connecting ----

  void observe(const Url& url, Method method, unsigned status, Errc error,
               SteadyClock::time_point start, bool reused) {
    if (!opts.observer) return;
    Exchange e;
    e.origin = url.origin();
    e.method = method;
    e.status = status;
    e.error = error;
    e.duration = SteadyClock::now() - start;
    e.reused = reused;
    try {
      opts.observer(e);
    } catch (...) {
      spdlog::warn("net: the exchange observer threw; ignored");
    }
  }

  awaitable<Result<std::vector<tcp::endpoint>>> endpoints(const Url& url, Deadline deadline,
                                                          CallState& call) {
    boost::system::error_code ec;
    const auto port = static_cast<unsigned short>(std::stoul(url.port));
    auto addr = asio::ip::make_address(url.host, ec);
    if (!ec) co_return std::vector<tcp::endpoint>{tcp::endpoint(addr, port)};
    auto rs = std::make_shared<Resolving>(strand);
    call.resolving = rs;
    asio::steady_timer timer(strand);
    timer.expires_at(deadline);
    // The handler holds the shared state, never this frame: it may run after we are gone.
    timer.async_wait([rs](boost::system::error_code tec) {
      if (!tec) {
        rs->timed_out = true;
        rs->resolver.cancel();
      }
    });
    auto [rec, results] = co_await rs->resolver.async_resolve(url.host, url.port, use_tuple);
    timer.cancel();
    if (call.cancelled) co_return cancelled_error("resolving " + url.host);
    if (rs->timed_out) co_return timeout_error("resolving " + url.host);
    if (rec) {
      co_return make_error(Errc::unavailable,
                           "cannot resolve host " + url.host + ": " + rec.message());
    }
    std::vector<tcp::endpoint> out;
    for (const auto& r : results) out.push_back(r.endpoint());
    if (out.empty())
      co_return make_error(Errc::unavailable, "host " + url.host + " has no address");
    co_return out;
  }

  // A new connection to url's origin, TLS handshake done for https. `retryable` is false
  // when another attempt cannot help (the certificate was refused, the deadline passed).
  awaitable<Result<std::shared_ptr<Conn>>> connect(const Url& url, Deadline deadline,
                                                   CallState& call, bool& retryable) {
    retryable = true;
    const std::string where = url.authority();
    auto eps = co_await endpoints(url, deadline, call);
    if (!eps) {
      retryable = eps.error().code == Errc::unavailable && !call.cancelled;
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
    conn->arm(deadline);
    auto [cec, ep] = co_await conn->lowest().async_connect(*eps, use_tuple);
    (void)ep;
    if (call.cancelled) co_return cancelled_error("connecting to " + where);
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

  // A connection to url's origin: an idle one when there is one, else a new one.
  awaitable<Result<std::shared_ptr<Conn>>> acquire(const Url& url, Deadline deadline,
                                                   CallState& call, bool fresh, bool& reused,
                                                   bool& retryable) {
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

  // ---- one exchange ----

  http::request<http::string_body> make_message(const Request& req, const Url& url,
                                                bool with_auth) const {
    http::request<http::string_body> m{verb_of(req.method), url.target, 11};
    std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
    if (!url.is_default_port()) host += ":" + url.port;
    m.set(http::field::host, host);
    m.set(http::field::user_agent, opts.user_agent);
    for (const auto& [k, v] : req.headers) m.set(k, v);
    if (with_auth && !req.authorization.empty()) {
      m.set(http::field::authorization, req.authorization);
    }
    if (!req.body.empty()) m.body() = req.body;
    m.keep_alive(true);
    m.prepare_payload();
    return m;
  }

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
    conn.arm(deadline);
    auto [hec, hn] = co_await http::async_read_header(stream, conn.buffer, p, use_tuple);
    (void)hn;
    if (call.cancelled) co_return cancelled_error("waiting for " + where);
    if (hec) {
      if (hec == beast::error::timeout || SteadyClock::now() >= deadline) {
        co_return timeout_error("waiting for " + where);
      }
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
                                 CallState& call, bool& keep) {
    keep = false;
    Attempt a;
    a.retryable = true;
    const std::string where = url.authority();
    http::response_parser<http::string_body> p;
    if (head) p.skip(true);
    auto st =
        co_await write_and_read_header(stream, conn, m, p, limits, deadline, call, where, a.stale);
    if (!st) {
      const Errc code = st.error().code;
      a.retryable = code == Errc::unavailable && !call.cancelled;
      a.result = st.error();
      co_return a;
    }
    Response r;
    r.status = p.get().result_int();
    r.url = url;
    const bool success = r.status >= 200 && r.status < 300;
    const uint64_t cap = success ? limits.max_body : limits.max_error_body;
    auto cl = p.content_length();
    bool skip_body = false;
    if (!head && cl && *cl > cap) {
      if (success) {
        a.retryable = false;
        a.result = make_error(Errc::too_large, "the answer of " + where + " is " +
                                                   std::to_string(*cl) + " bytes, over the " +
                                                   std::to_string(cap) + " byte limit");
        co_return a;
      }
      // An error body over its cap is not read: the connection is dropped instead.
      skip_body = true;
      r.truncated = true;
    }
    if (!skip_body && !p.is_done()) {
      p.body_limit(cap);
      conn.arm(deadline);
      auto [bec, bn] = co_await http::async_read(stream, conn.buffer, p, use_tuple);
      (void)bn;
      if (call.cancelled) {
        a.result = cancelled_error("reading from " + where);
        a.retryable = false;
        co_return a;
      }
      if (bec == http::error::body_limit) {
        if (success) {
          a.retryable = false;
          a.result = make_error(Errc::too_large, "the answer of " + where + " exceeds the " +
                                                     std::to_string(cap) + " byte limit");
          co_return a;
        }
        r.truncated = true;
        skip_body = true;
        r.body = std::move(p.get().body());
        if (r.body.size() > cap) r.body.resize(cap);
      } else if (bec) {
        if (bec == beast::error::timeout || SteadyClock::now() >= deadline) {
          a.retryable = false;
          a.result = timeout_error("reading from " + where);
        } else {
          a.result = make_error(Errc::unavailable,
                                "the answer of " + where + " was cut short: " + bec.message());
        }
        co_return a;
      }
    }
    const auto& h = p.get();
    for (const auto& f : h)
      r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    if (!skip_body) r.body = std::move(p.get().body());
    // Bytes beyond the answer (we never pipeline) mean a confused peer: do not reuse.
    keep = !skip_body && h.keep_alive() && p.is_done() && conn.buffer.size() == 0;
    a.result = std::move(r);
    co_return a;
  }

  // One request to url on one connection; a pooled connection that turns out dead before any
  // answer byte is replaced by a fresh one once.
  awaitable<Attempt> round_trip(const Request& req, const Url& url, bool with_auth,
                                const Limits& limits, Deadline deadline, CallState& call) {
    auto m = make_message(req, url, with_auth);
    const bool head = req.method == Method::head;
    Attempt a;
    for (int i = 0; i < 2; ++i) {
      if (call.cancelled) {
        a.result = cancelled_error("request to " + url.authority());
        a.retryable = false;
        co_return a;
      }
      if (SteadyClock::now() >= deadline) {
        a.result = timeout_error("request to " + url.authority());
        a.retryable = false;
        co_return a;
      }
      const auto start = SteadyClock::now();
      bool reused = false;
      bool retryable = true;
      auto c = co_await acquire(url, deadline, call, i > 0, reused, retryable);
      if (!c) {
        observe(url, req.method, 0, c.error().code, start, false);
        a.result = c.error();
        a.retryable = retryable;
        a.stale = false;
        co_return a;
      }
      auto conn = std::move(*c);
      requests.fetch_add(1, std::memory_order_relaxed);
      bool keep = false;
      // No co_await inside ?: (GCC 12 miscompiles it).
      if (conn->tls) {
        a = co_await exchange_on(*conn->tls, *conn, m, url, head, limits, deadline, call, keep);
      } else {
        a = co_await exchange_on(*conn->plain, *conn, m, url, head, limits, deadline, call, keep);
      }
      observe(url, req.method, a.result ? a.result->status : 0,
              a.result ? Errc::internal : a.result.error().code, start, reused);
      if (!a.result && reused && a.stale && !call.cancelled) {
        spdlog::debug("net: pooled connection to {} was closed by the peer; reconnecting",
                      url.authority());
        continue;
      }
      a.stale = false;
      if (keep) {
        park(std::move(conn));
      } else {
        conn->disarm();
      }
      co_return a;
    }
    co_return a;
  }

  // Waits `delay` unless it would pass the deadline or the call is cancelled. False: do not
  // retry.
  awaitable<bool> sleep(std::chrono::milliseconds delay, Deadline deadline, CallState& call) {
    if (SteadyClock::now() + delay >= deadline) co_return false;
    if (delay.count() <= 0) co_return !call.cancelled;
    auto timer = std::make_shared<asio::steady_timer>(strand);
    timer->expires_after(delay);
    call.sleeping = timer;
    co_await timer->async_wait(use_tuple);
    call.sleeping.reset();
    co_return !call.cancelled && SteadyClock::now() < deadline;
  }

  // round_trip with the request's retry policy: network errors, 429 and 5xx again after a
  // backoff (or the server's Retry-After), within the deadline. The last answer is returned
  // whatever its status.
  awaitable<Result<Response>> send_retrying(const Request& req, const Url& url, bool with_auth,
                                            const Limits& limits, Deadline deadline,
                                            CallState& call) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    for (int attempt = 0;; ++attempt) {
      auto a = co_await round_trip(req, url, with_auth, limits, deadline, call);
      bool again = false;
      std::optional<std::chrono::milliseconds> wait;
      if (!a.result) {
        again = a.retryable;
      } else {
        const unsigned s = a.result->status;
        again = s == 429 || s >= 500;
        if (again) {
          wait =
              parse_retry_after(a.result->header("Retry-After"), std::chrono::system_clock::now());
        }
      }
      if (!again || attempt >= req.retry.max_retries || call.cancelled) co_return a.result;
      if (!wait) {
        std::uniform_real_distribution<double> unit(0.0, 1.0);
        wait = backoff_delay(req.retry, attempt, unit(rng));
      }
      spdlog::debug(
          "net: {} {} again in {} ms ({})", method_name(req.method), url.authority(), wait->count(),
          a.result ? "HTTP " + std::to_string(a.result->status) : a.result.error().message);
      if (!co_await sleep(*wait, deadline, call)) {
        if (call.cancelled) co_return cancelled_error("request to " + url.authority());
        co_return a.result;
      }
    }
  }

  awaitable<Result<Response>> send_on_strand(const Request& req, Deadline deadline,
                                             const Limits& limits, CallState& call) {
    if (!init) co_return init.error();
    if (auto st = check_request(req); !st) co_return st.error();
    Url cur = req.url;
    int redirects = 0;
    const bool followable = req.method == Method::get || req.method == Method::head;
    for (;;) {
      const bool with_auth = cur.same_origin(req.url);
      auto r = co_await send_retrying(req, cur, with_auth, limits, deadline, call);
      if (!r || !is_redirect(r->status) || req.max_redirects <= 0 || !followable) co_return r;
      if (++redirects > req.max_redirects) {
        co_return make_error(Errc::unavailable, req.url.authority() + ": more than " +
                                                    std::to_string(req.max_redirects) +
                                                    " redirects");
      }
      const std::string location = r->header("Location");
      if (location.empty()) {
        co_return make_error(Errc::unavailable,
                             cur.authority() + " answered a redirect without a Location");
      }
      auto next = resolve_location(cur, location);
      if (!next) {
        co_return make_error(Errc::unavailable, cur.authority() +
                                                    " redirected to an unusable "
                                                    "Location: " +
                                                    next.error().message);
      }
      const bool allowed =
          req.redirect_allowed ? req.redirect_allowed(*next) : next->scheme == "https";
      if (!allowed) {
        co_return make_error(Errc::unavailable, cur.authority() + " redirected to " +
                                                    next->origin() +
                                                    ", which this request may not follow");
      }
      cur = std::move(*next);
    }
  }

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

// ---------------------------------------------------------------------------------------------
// ResponseStream

struct ResponseStream::Impl {
  std::shared_ptr<Client::Impl> client;
  std::shared_ptr<Conn> conn;
  http::response_parser<http::buffer_body> parser;
  unsigned status = 0;
  Headers headers;
  Url url;
  std::optional<Error> failed;   // strand only: once failed, every read says so
  std::optional<Error> pending;  // strand only: an error that came with the last bytes
  bool ended = false;            // strand only
  std::array<char, kReadChunk> buf{};

  ~Impl() {
    // The connection's socket and timer belong to the strand: release them there.
    if (conn && client) {
      asio::post(client->strand, [c = std::move(conn)] {
        c->disarm();
        c->close();
      });
    }
  }

  template <class Stream>
  awaitable<Result<std::string>> read_on(Stream& stream, Deadline deadline, CallState& call) {
    const std::string where = url.authority();
    for (;;) {
      if (parser.is_done()) {
        ended = true;
        conn->close();
        co_return std::string();
      }
      parser.get().body().data = buf.data();
      parser.get().body().size = buf.size();
      conn->arm(deadline);
      auto [ec, n] = co_await http::async_read_some(stream, conn->buffer, parser, use_tuple);
      (void)n;
      if (ec == http::error::need_buffer) ec = {};
      const size_t got = buf.size() - parser.get().body().size;
      std::optional<Error> err;
      if (call.cancelled) {
        err = cancelled_error("reading from " + where);
      } else if (conn->closed) {
        err = make_error(Errc::unavailable, "reading from " + where + ": closed");
      } else if (ec == beast::error::timeout || (ec && SteadyClock::now() >= deadline)) {
        err = timeout_error("reading from " + where);
      } else if (ec) {
        err = make_error(Errc::unavailable,
                         "the answer of " + where + " was cut short: " + ec.message());
      }
      if (err) conn->close();
      if (got > 0) {
        if (err) pending = std::move(err);
        co_return std::string(buf.data(), got);
      }
      if (err) co_return *err;
    }
  }

  awaitable<Result<std::string>> read(Deadline deadline, CallState& call) {
    if (failed) co_return *failed;
    if (pending) {
      failed = std::move(pending);
      pending.reset();
      co_return *failed;
    }
    if (ended) co_return std::string();
    call.active = conn;
    Result<std::string> r = make_error(Errc::internal, "no read");
    if (conn->tls) {
      r = co_await read_on(*conn->tls, deadline, call);
    } else {
      r = co_await read_on(*conn->plain, deadline, call);
    }
    if (!r) failed = r.error();
    co_return r;
  }
};

ResponseStream::ResponseStream(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
ResponseStream::~ResponseStream() = default;

unsigned ResponseStream::status() const {
  return impl_->status;
}
const Headers& ResponseStream::headers() const {
  return impl_->headers;
}
const Url& ResponseStream::url() const {
  return impl_->url;
}

awaitable<Result<std::string>> ResponseStream::read_some(Deadline deadline) {
  auto impl = impl_;
  auto body = [impl, deadline](CallState& call) -> awaitable<Result<std::string>> {
    co_return co_await impl->read(deadline, call);
  };
  co_return co_await Client::Impl::on_strand<std::string>(
      impl->client, "reading from " + impl->url.authority(), body);
}

awaitable<Result<std::string>> ResponseStream::read_rest(uint64_t limit, Deadline deadline) {
  std::string out;
  while (out.size() < limit) {
    auto r = co_await read_some(deadline);
    if (!r) co_return r.error();
    if (r->empty()) break;
    out += *r;
  }
  if (out.size() > limit) out.resize(limit);
  co_return out;
}

void ResponseStream::close() {
  auto impl = impl_;
  asio::post(impl->client->strand, [impl] {
    impl->ended = true;
    if (impl->conn) impl->conn->close();
  });
}

// ---------------------------------------------------------------------------------------------
// Client

Client::Client(asio::any_io_executor executor, ClientOptions options) {
  try {
    impl_ = std::make_shared<Impl>();
    impl_->strand = asio::make_strand(executor);
    impl_->opts = std::move(options);
    auto ctx = detail::make_client_context(impl_->opts.tls);
    if (ctx) {
      impl_->ctx = std::move(*ctx);
    } else {
      impl_->init = ctx.error();
    }
  } catch (const std::exception& e) {
    if (impl_) impl_->init = make_error(Errc::internal, std::string("net client: ") + e.what());
  }
}

Client::~Client() = default;

Status Client::init_status() const {
  if (!impl_) return make_error(Errc::internal, "net client not constructed");
  return impl_->init;
}

uint64_t Client::request_count() const {
  return impl_ ? impl_->requests.load() : 0;
}
uint64_t Client::connection_count() const {
  return impl_ ? impl_->connections.load() : 0;
}
Client::PoolStats Client::pool_stats() const {
  PoolStats s;
  if (impl_) {
    s.idle = impl_->idle_total.load();
    s.idle_armed = impl_->idle_armed.load();
  }
  return s;
}

awaitable<Result<Response>> Client::send(Request request, Deadline deadline, Limits limits) {
  if (!impl_) co_return make_error(Errc::internal, "net client not constructed");
  auto impl = impl_;
  const std::string what = std::string(method_name(request.method)) + " " + request.url.authority();
  auto body = [&](CallState& call) -> awaitable<Result<Response>> {
    co_return co_await impl->send_on_strand(request, deadline, limits, call);
  };
  co_return co_await Impl::on_strand<Response>(impl, what, body);
}

awaitable<Result<std::unique_ptr<ResponseStream>>> Client::open(Request request, Deadline deadline,
                                                                Limits limits) {
  if (!impl_) co_return make_error(Errc::internal, "net client not constructed");
  auto impl = impl_;
  const std::string what = std::string(method_name(request.method)) + " " + request.url.authority();
  auto body = [&](CallState& call) -> awaitable<Result<std::unique_ptr<ResponseStream>>> {
    if (!impl->init) co_return impl->init.error();
    if (auto st = check_request(request); !st) co_return st.error();
    const Url& url = request.url;
    const std::string where = url.authority();
    auto m = impl->make_message(request, url, true);
    for (int i = 0; i < 2; ++i) {
      if (call.cancelled) co_return cancelled_error("request to " + where);
      if (SteadyClock::now() >= deadline) co_return timeout_error("request to " + where);
      const auto start = SteadyClock::now();
      bool reused = false;
      bool retryable = true;
      auto c = co_await impl->acquire(url, deadline, call, i > 0, reused, retryable);
      if (!c) {
        impl->observe(url, request.method, 0, c.error().code, start, false);
        co_return c.error();
      }
      auto s = std::make_shared<ResponseStream::Impl>();
      s->client = impl;
      s->conn = std::move(*c);
      s->url = url;
      impl->requests.fetch_add(1, std::memory_order_relaxed);
      bool stale = false;
      Status st;
      if (s->conn->tls) {
        st = co_await impl->write_and_read_header(*s->conn->tls, *s->conn, m, s->parser, limits,
                                                  deadline, call, where, stale);
      } else {
        st = co_await impl->write_and_read_header(*s->conn->plain, *s->conn, m, s->parser, limits,
                                                  deadline, call, where, stale);
      }
      if (!st) {
        impl->observe(url, request.method, 0, st.error().code, start, reused);
        s->conn->close();
        if (reused && stale && !call.cancelled) continue;
        co_return st.error();
      }
      s->status = s->parser.get().result_int();
      for (const auto& f : s->parser.get()) {
        s->headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      }
      s->parser.body_limit(boost::none);  // the caller bounds what it keeps
      impl->observe(url, request.method, s->status, Errc::internal, start, reused);
      co_return std::make_unique<ResponseStream>(std::move(s));
    }
    co_return make_error(Errc::unavailable, where + " closed the connection");
  };
  co_return co_await Impl::on_strand<std::unique_ptr<ResponseStream>>(impl, what, body);
}

// ---------------------------------------------------------------------------------------------
// CancelSignal

struct CancelSignal::State {
  explicit State(asio::any_io_executor e) : ex(std::move(e)) {}
  asio::any_io_executor ex;
  asio::cancellation_signal signal;  // touched only on ex (slot() before any cancel())
  std::atomic<bool> cancelled{false};
};

CancelSignal::CancelSignal(asio::any_io_executor executor)
    : s_(std::make_shared<State>(std::move(executor))) {}

asio::cancellation_slot CancelSignal::slot() const {
  return s_->signal.slot();
}

void CancelSignal::cancel() const {
  if (s_->cancelled.exchange(true)) return;
  asio::post(s_->ex, [s = s_] { s->signal.emit(asio::cancellation_type::terminal); });
}

bool CancelSignal::cancelled() const {
  return s_->cancelled.load();
}

}  // namespace sigil::net
