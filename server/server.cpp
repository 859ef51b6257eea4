#include "server/server.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
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
#include <boost/url/parse.hpp>

#include "server/duration.hpp"
#include "server/limits.hpp"
#include "server/mutator.hpp"
#include "server/router.hpp"
#include "server/tls.hpp"

namespace sigil::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Bodies up to this size may use the whole body budget; larger ones leave a quarter of it free.
constexpr size_t kSmallBody = 256 * 1024;

// The router's name for a request method.
Method method_of(http::verb verb) {
  switch (verb) {
    case http::verb::get:
      return Method::get;
    case http::verb::head:
      return Method::head;
    case http::verb::post:
      return Method::post;
    default:
      return Method::other;
  }
}

// A reply known at once, as a route's awaitable.
asio::awaitable<HttpReply> at_once(HttpReply reply) {
  co_return reply;
}

// A connection's peer for the per-peer cap: the IP address (an IPv4-mapped IPv6 address as
// IPv4, so a dual-stack listener counts one client once).
std::string peer_key(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  }
  return a.to_string();
}

// At most one warning per interval for events a flood repeats thousands of times a second.
class RareWarning {
 public:
  bool due() {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = last_.load(std::memory_order_relaxed);
    const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(10s);
    if (last != 0 && now - last < interval.count()) return false;
    return last_.compare_exchange_strong(last, now, std::memory_order_relaxed);
  }

 private:
  std::atomic<std::chrono::steady_clock::rep> last_{0};
};

}  // namespace

Result<ListenAddress> parse_listen_address(std::string_view text) {
  auto bad = [&](const char* why) {
    return make_error(Errc::invalid_argument,
                      "listen address \"" + std::string(text.substr(0, 80)) + "\": " + why);
  };
  ListenAddress out;
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    host = text.substr(1, close - 1);
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("expected ]:PORT");
    port = text.substr(close + 2);
    boost::system::error_code ec;
    auto a = asio::ip::make_address_v6(std::string(host), ec);
    if (ec) return bad("not an IPv6 address inside []");
    (void)a;
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("expected ADDR:PORT");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.empty()) host = "0.0.0.0";
    if (host.find(':') != std::string_view::npos) return bad("IPv6 addresses need [ADDR]:PORT");
    boost::system::error_code ec;
    auto a = asio::ip::make_address_v4(std::string(host), ec);
    if (ec) return bad("not an IPv4 address");
    (void)a;
  }
  if (!all_digits(port) || port.size() > 5) return bad("port must be a number 0-65535");
  const unsigned long p = std::stoul(std::string(port));
  if (p > 65535) return bad("port must be a number 0-65535");
  out.host = std::string(host);
  out.port = static_cast<uint16_t>(p);
  return out;
}

std::chrono::milliseconds request_budget(std::string_view timeout_param,
                                         const ServerOptions& options) {
  using std::chrono::milliseconds;
  milliseconds budget = options.default_timeout;
  if (!timeout_param.empty()) {
    auto parsed = parse_go_duration(timeout_param);
    if (parsed && *parsed >= 1ms) budget = std::chrono::duration_cast<milliseconds>(*parsed);
  }
  budget = std::min({budget, options.default_timeout, options.max_timeout});
  if (budget < 1ms) budget = 1ms;
  const double fraction = std::clamp(options.max_margin_fraction, 0.0, 0.9);
  const auto by_fraction =
      milliseconds(static_cast<int64_t>(static_cast<double>(budget.count()) * fraction));
  const milliseconds margin = std::max(0ms, std::min(options.safety_margin, by_fraction));
  return budget - margin;
}

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  using Stream = beast::ssl_stream<beast::tcp_stream>;

  // Per-connection state shared with stop() and eviction; touched only on the connection's
  // strand.
  struct Conn {
    Stream* stream = nullptr;
    bool busy = false;     // a request is being read, judged or answered
    bool evicted = false;  // close when idle, or right after the response being worked on
  };

  Impl(asio::io_context& io, ServerOptions o, Validator& v)
      : ioc(io),
        opts(std::move(o)),
        validator(v),
        // An empty file name is CertStore's memory mode.
        certs(opts.external_certificate ? std::string() : opts.cert_file,
              opts.external_certificate ? std::string() : opts.key_file, opts.cert_check_interval),
        acceptor(asio::make_strand(io)),
        grace_timer(acceptor.get_executor()),
        table(ConnectionLimits{opts.max_connections, opts.max_connections_per_peer}),
        budget(opts.body_budget, kSmallBody, opts.body_budget / 4),
        router(routes()) {}

  asio::io_context& ioc;
  const ServerOptions opts;
  Validator& validator;
  CertStore certs;
  tcp::acceptor acceptor;
  asio::steady_timer grace_timer;
  std::atomic<bool> started{false};
  std::atomic<bool> stopping{false};
  std::atomic<bool> lame{false};  // lame_duck(): not ready, keep-alive off, still serving
  std::atomic<uint16_t> bound_port{0};

  ConnectionTable table;
  BodyBudget budget;
  const Router router;
  std::atomic<uint64_t> budget_refusals{0};
  RareWarning cap_warning, budget_warning;

  // Open connections by their ConnectionTable id, for stop() and eviction.
  mutable std::mutex mu;
  std::map<uint64_t, std::pair<asio::any_io_executor, std::weak_ptr<Conn>>> conns;

  // The webhook listener's routes: every path this port serves, and what answers it. The
  // admission routes run under the request's deadline through validate_guarded; the rest answer
  // at once. Handlers run while a session holds a shared_ptr to this Impl.
  Router routes() {
    Router r;
    r.post("/validate", [this](RouteRequest req) {
      return validate_guarded(shared_from_this(), &validator, "validate", std::move(req.body),
                              req.deadline);
    });
    r.post("/mutate", [this](RouteRequest req) {
      if (!opts.mutator) {
        return at_once(text_reply(404, "not found: the mutating webhook is not enabled"));
      }
      return validate_guarded(shared_from_this(), opts.mutator, "mutate", std::move(req.body),
                              req.deadline);
    });
    r.post("/validate-policy", [this](const RouteRequest& req) {
      if (!opts.check_policy) {
        return at_once(text_reply(404, "not found: policy validation is not enabled"));
      }
      return at_once(handle_policy_review(req.body, opts.check_policy));
    });
    r.get("/healthz", [](const RouteRequest&) { return at_once(text_reply(200, "ok")); });
    r.get("/readyz", [this](const RouteRequest&) {
      // Lame duck (SIGTERM): not ready, so endpoints move on, while admissions are still served.
      bool ready = !stopping && !lame && certs.loaded();
      if (ready && opts.ready) {
        try {
          ready = opts.ready();
        } catch (...) {
          ready = false;
        }
      }
      return at_once(ready                ? text_reply(200, "ok")
                     : (stopping || lame) ? text_reply(503, "shutting down")
                                          : text_reply(503, "not ready"));
    });
    return r;
  }

  Status start() {
    if (started.exchange(true)) return make_error(Errc::internal, "server already started");
    auto addr = parse_listen_address(opts.listen);
    if (!addr) return addr.error();
    if (opts.max_body == 0) return make_error(Errc::invalid_argument, "max body must be > 0");
    if (budget.large_limit() < opts.max_body) {
      return make_error(Errc::invalid_argument,
                        "body budget " + std::to_string(opts.body_budget) +
                            " bytes is too small for the max body of " +
                            std::to_string(opts.max_body) +
                            " bytes: a body may use at most three quarters of the budget");
    }
    if (opts.max_connections == 0 || opts.max_connections_per_peer == 0) {
      return make_error(Errc::invalid_argument, "connection limits must be > 0");
    }
    if (!opts.external_certificate) {
      if (auto st = certs.load(); !st) return st;
    }
    boost::system::error_code ec;
    const tcp::endpoint ep(asio::ip::make_address(addr->host, ec), addr->port);
    if (ec) return make_error(Errc::invalid_argument, "listen address: " + ec.message());
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return make_error(Errc::unavailable,
                        "listen address " + opts.listen + ": cannot listen: " + ec.message());
    const auto local = acceptor.local_endpoint(ec);
    if (ec) return make_error(Errc::unavailable, "listen address: " + ec.message());
    bound_port = local.port();
    spdlog::info("sigil webhook listening on {} (port {})", opts.listen, local.port());
    asio::co_spawn(acceptor.get_executor(), accept_loop(shared_from_this()), asio::detached);
    return {};
  }

  void stop() {
    if (stopping.exchange(true)) return;
    auto self = shared_from_this();
    asio::post(acceptor.get_executor(), [self] {
      boost::system::error_code ignored;
      self->acceptor.close(ignored);
      self->close_connections(/*only_idle=*/true);
      if (self->connections() == 0) return;
      self->grace_timer.expires_after(self->opts.shutdown_grace);
      self->grace_timer.async_wait(
          [self](boost::system::error_code) { self->close_connections(/*only_idle=*/false); });
    });
  }

  void close_connections(bool only_idle) {
    std::lock_guard lock(mu);
    for (auto& [id, entry] : conns) {
      asio::post(entry.first, [weak = entry.second, only_idle] {
        auto c = weak.lock();
        if (!c || !c->stream || (only_idle && c->busy)) return;
        beast::get_lowest_layer(*c->stream).cancel();
        boost::system::error_code ignored;
        beast::get_lowest_layer(*c->stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
      });
    }
  }

  size_t connections() const {
    std::lock_guard lock(mu);
    return conns.size();
  }

  ServerStats stats() const {
    ServerStats st;
    st.connections = connections();
    st.evicted = table.evictions();
    st.refused = table.refusals();
    st.body_bytes_in_use = budget.in_use();
    st.body_budget_refusals = budget_refusals.load();
    return st;
  }

  // Closes an idle connection to make room for a new one (on its strand: when it turned busy
  // in the meantime, it finishes that request and closes after the response).
  void evict(uint64_t id) {
    std::lock_guard lock(mu);
    auto it = conns.find(id);
    if (it == conns.end()) return;
    asio::post(it->second.first, [weak = it->second.second] {
      auto c = weak.lock();
      if (!c) return;
      c->evicted = true;
      if (!c->busy && c->stream) beast::get_lowest_layer(*c->stream).cancel();
    });
  }

  static asio::awaitable<void> accept_loop(std::shared_ptr<Impl> self) {
    while (!self->stopping) {
      auto [ec, socket] =
          co_await self->acceptor.async_accept(asio::make_strand(self->ioc), use_tuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || self->stopping) break;
        // EMFILE and friends: back off a little instead of spinning.
        spdlog::warn("accept failed: {}", ec.message());
        asio::steady_timer t(self->acceptor.get_executor(), 50ms);
        co_await t.async_wait(use_tuple);
        continue;
      }
      boost::system::error_code pec;
      const auto remote = socket.remote_endpoint(pec);
      if (pec) {  // already gone
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      // No certificate yet (self-managed, still being minted): nothing to offer; the caller
      // sees a closed connection and retries, and /readyz is not Ready.
      auto ctx = self->certs.current();
      if (!ctx) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      const std::string peer = peer_key(remote.address());
      const auto adm = self->table.admit(peer, std::chrono::steady_clock::now());
      if ((adm.at_peer_cap || adm.at_global_cap) && self->cap_warning.due()) {
        const auto st = self->stats();
        spdlog::warn(
            "connection cap reached ({} from {} of {} per peer, {} of {} in all): idle "
            "connections are evicted to make room ({} so far), new ones refused only when none "
            "is idle ({} so far)",
            self->table.peer_count(peer), peer, self->opts.max_connections_per_peer, st.connections,
            self->opts.max_connections, st.evicted, st.refused);
      }
      if (!adm.admitted) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      // No Nagle: the TLS session tickets sent after the handshake are small and unacknowledged
      // when the response is written, so Nagle would hold the response for the client's delayed
      // ACK (40 ms on Linux) on every new connection's first request.
      boost::system::error_code nec;
      socket.set_option(tcp::no_delay(true), nec);
      auto conn = std::make_shared<Conn>();
      auto reg = std::make_unique<Registration>(self, adm.id);
      {
        std::lock_guard lock(self->mu);
        self->conns.emplace(adm.id,
                            std::make_pair(socket.get_executor(), std::weak_ptr<Conn>(conn)));
      }
      if (adm.evict) self->evict(*adm.evict);
      auto ex = socket.get_executor();
      asio::co_spawn(
          ex, session(self, std::move(socket), std::move(ctx), std::move(conn), std::move(reg)),
          asio::detached);
    }
  }

  // Unregisters a connection (from stop()'s list and the ConnectionTable) on destruction.
  struct Registration {
    Registration(std::shared_ptr<Impl> s, uint64_t i) : self(std::move(s)), id(i) {}
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    std::shared_ptr<Impl> self;
    uint64_t id;
    ~Registration() {
      self->table.remove(id);
      std::lock_guard lock(self->mu);
      self->conns.erase(id);
      if (self->stopping && self->conns.empty()) {
        // The last connection is gone: end the grace period early.
        asio::post(self->acceptor.get_executor(), [s = self] { s->grace_timer.cancel(); });
      }
    }
  };

  static http::response<http::string_body> make_response(unsigned version, bool keep_alive,
                                                         const HttpReply& reply) {
    http::response<http::string_body> res{static_cast<http::status>(reply.status), version};
    res.set(http::field::server, "sigil");
    res.set(http::field::content_type,
            reply.content_type.empty() ? "text/plain; charset=utf-8" : reply.content_type);
    if (!reply.allow.empty()) res.set(http::field::allow, reply.allow);
    res.keep_alive(keep_alive);
    res.body() = reply.body;
    res.prepare_payload();
    return res;
  }

  // Reads and discards what the client is still sending (bounded in bytes and time), so that it
  // sees our error response instead of a connection reset.
  static asio::awaitable<void> drain(Stream& stream, size_t limit, std::chrono::milliseconds time) {
    beast::get_lowest_layer(stream).expires_after(time);
    std::array<char, 16 * 1024> buf{};
    size_t total = 0;
    while (total < limit) {
      auto [ec, n] = co_await stream.async_read_some(asio::buffer(buf), use_tuple);
      if (ec) break;
      total += n;
    }
  }

  // Runs the handler (the Validator, or the Mutator) on its own coroutine and answers its
  // timeout_reply when it has not finished by the deadline; the reply never waits for a
  // verifier that is late. The handler outlives every connection.
  //
  // The lifetime rule, in one place: the validation is never cancelled. It owns (shares) its
  // body and the server, and every wait inside it (registry, Kubernetes API, coalesced
  // verifications) ends at the same deadline, so an abandoned validation finishes on its own
  // moments later and frees what it held. Emitting an Asio cancellation into it instead
  // reached child operations on other executors through Boost 1.81's co_spawn cancellation
  // handler, which dispatches a raw pointer to a signal that is gone once the child finished:
  // the use-after-free that crashed replicas when admissions were cut with fetches in flight.
  template <class Handler>
  static asio::awaitable<HttpReply> validate_guarded(std::shared_ptr<Impl> self,
                                                     const Handler* handler, const char* route,
                                                     std::string body, Deadline deadline) {
    const auto started = std::chrono::steady_clock::now();
    auto ex = co_await asio::this_coro::executor;
    struct State {
      explicit State(const asio::any_io_executor& e) : timer(e) {}
      asio::steady_timer timer;
      std::optional<HttpReply> reply;
    };
    auto st = std::make_shared<State>(ex);
    auto shared_body = std::make_shared<const std::string>(std::move(body));
    st->timer.expires_at(deadline);
    auto run = [self, handler, shared_body, deadline]() -> asio::awaitable<HttpReply> {
      co_return co_await handler->handle(*shared_body, deadline);
    };
    // Completes on ex (this connection's strand), like the timer: no data race on st.
    // NOLINTNEXTLINE(performance-unnecessary-value-param): moved from below
    asio::co_spawn(ex, run(), [st](const std::exception_ptr& e, HttpReply reply) {
      if (e) {
        st->reply =
            HttpReply{500, "application/json", R"({"error":"internal error while validating"})"};
      } else {
        st->reply = std::move(reply);
      }
      st->timer.cancel();
    });
    co_await st->timer.async_wait(use_tuple);
    HttpReply reply = st->reply ? std::move(*st->reply) : handler->timeout_reply(*shared_body);
    if (self->opts.observe_admission) {
      AdmissionResult result = reply.result;
      if (result == AdmissionResult::none) {
        result = reply.status == 200 ? AdmissionResult::allowed : AdmissionResult::error;
      }
      try {
        self->opts.observe_admission(route, result, std::chrono::steady_clock::now() - started);
      } catch (...) {  // metrics never fail an admission
      }
    }
    co_return reply;
  }

  // Answers an error and closes: the response (Connection: close), then what the client is
  // still sending is read and dropped (up to drain_limit bytes, for up to drain_time), so that
  // it sees the answer rather than a reset.
  static asio::awaitable<void> refuse(Stream& stream, unsigned version, HttpReply reply,
                                      std::string retry_after,
                                      std::chrono::milliseconds write_timeout, size_t drain_limit,
                                      std::chrono::milliseconds drain_time) {
    auto res = make_response(version, false, reply);
    if (!retry_after.empty()) res.set(http::field::retry_after, retry_after);
    beast::get_lowest_layer(stream).expires_after(write_timeout);
    auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
    (void)wn;
    if (!wec && drain_limit > 0) co_await drain(stream, drain_limit, drain_time);
  }

  HttpReply over_budget_reply() {
    const auto refusals = ++budget_refusals;
    if (budget_warning.due()) {
      spdlog::warn(
          "request bodies being read exceed the body budget of {} bytes: answering 503 ({} so "
          "far)",
          opts.body_budget, refusals);
    }
    return text_reply(503, "server busy: request bodies being read exceed the budget of " +
                               std::to_string(opts.body_budget) + " bytes; retry");
  }

  static asio::awaitable<void> session(std::shared_ptr<Impl> self, tcp::socket socket,
                                       std::shared_ptr<ssl::context> ctx,
                                       std::shared_ptr<Conn> conn,
                                       std::unique_ptr<Registration> reg) {
    // reg is held for the session's lifetime: it unregisters the connection at the end.
    if (!ctx || self->stopping || conn->evicted) co_return;
    Stream stream(beast::tcp_stream(std::move(socket)), *ctx);
    conn->stream = &stream;
    const auto& o = self->opts;
    auto& tcp_layer = beast::get_lowest_layer(stream);
    auto& table = self->table;
    const auto id = reg->id;

    tcp_layer.expires_after(o.handshake_timeout);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
    if (hec) {
      spdlog::debug("TLS handshake failed: {}", hec.message());
      conn->stream = nullptr;
      co_return;
    }

    beast::flat_buffer buffer;
    bool first = true;
    bool clean = true;  // whether to attempt a TLS close_notify at the end
    while (!self->stopping && !conn->evicted) {
      conn->busy = false;
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(std::min<size_t>(o.max_header, UINT32_MAX)));
      parser.body_limit(o.max_body);
      tcp_layer.expires_after(first ? o.read_timeout : o.idle_timeout);
      auto [rec, rn] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
      (void)rn;
      conn->busy = true;
      table.set_busy(id, true, std::chrono::steady_clock::now());
      std::optional<HttpReply> early;  // an error answer; the connection closes after it
      if (rec == http::error::body_limit) {
        early = text_reply(
            413, "request body exceeds the limit of " + std::to_string(o.max_body) + " bytes");
      } else if (rec == http::error::header_limit) {
        early = text_reply(
            431, "request header exceeds the limit of " + std::to_string(o.max_header) + " bytes");
      } else if (rec) {
        if (rec == beast::error::timeout || conn->evicted) clean = false;
        if (rec != http::error::end_of_stream && rec != beast::error::timeout &&
            rec != asio::error::operation_aborted && rec != asio::ssl::error::stream_truncated &&
            rec != asio::error::eof && buffer.size() > 0) {
          early = text_reply(400, "malformed HTTP request: " + rec.message());
        } else {
          break;
        }
      }
      if (early) {
        const size_t drain_limit = early->status == 413 ? 2 * o.max_body : 0;
        HttpReply answer = std::move(*early);
        std::string no_retry;
        co_await refuse(stream, 11, std::move(answer), std::move(no_retry), o.write_timeout,
                        drain_limit, 2000ms);
        if (drain_limit > 0) clean = false;  // the drain ends when the client stops or times out
        break;
      }

      const auto received = std::chrono::steady_clock::now();
      auto& req = parser.get();
      const std::string_view target(req.target().data(), req.target().size());
      const size_t q = target.find('?');
      const std::string_view path = target.substr(0, q);
      std::string timeout_param;
      if (q != std::string_view::npos) {
        auto parsed = boost::urls::parse_origin_form(target);
        if (parsed) {
          auto params = parsed->params();
          auto it = params.find("timeout");
          if (it != params.end() && (*it).has_value) timeout_param = (*it).value;
        }
      }
      const Deadline deadline = received + request_budget(timeout_param, o);

      // The body's bytes, from the process-wide budget: all of Content-Length before reading
      // (so an answer comes before the client has sent it), or a chunked body as it arrives.
      // Held until this request is answered.
      BodyReservation body_bytes(self->budget);
      const auto content_length = parser.content_length();
      if (!parser.is_done() && content_length && !body_bytes.grow_to(*content_length)) {
        std::string().swap(req.body());  // the parser may have reserved it already
        HttpReply busy = self->over_budget_reply();
        std::string retry_after = "1";
        const size_t drain_limit = std::min<size_t>(*content_length, o.max_body);
        co_await refuse(stream, req.version(), std::move(busy), std::move(retry_after),
                        o.write_timeout, drain_limit, 1000ms);
        clean = false;
        break;
      }

      if (http::token_list{req[http::field::expect]}.exists("100-continue") ||
          beast::iequals(req[http::field::expect], "100-continue")) {
        http::response<http::empty_body> cont{http::status::continue_, req.version()};
        tcp_layer.expires_after(o.write_timeout);
        auto [cec, cn] = co_await http::async_write(stream, cont, use_tuple);
        (void)cn;
        if (cec) break;
      }

      // Body: bounded by the limit, the budget and the request's own deadline.
      if (!parser.is_done()) {
        const auto left = deadline - std::chrono::steady_clock::now();
        tcp_layer.expires_after(std::max<std::chrono::steady_clock::duration>(
            std::min<std::chrono::steady_clock::duration>(left, o.read_timeout), 1ms));
        boost::system::error_code bec;
        bool over_budget = false;
        while (!parser.is_done()) {
          auto [rec2, bn] = co_await http::async_read_some(stream, buffer, parser, use_tuple);
          (void)bn;
          if (rec2) {
            bec = rec2;
            break;
          }
          if (!content_length && !body_bytes.grow_to(req.body().capacity())) {
            over_budget = true;
            break;
          }
        }
        if (over_budget) {
          std::string().swap(req.body());  // not held through the answer and the drain
          HttpReply busy = self->over_budget_reply();
          std::string retry_after = "1";
          co_await refuse(stream, req.version(), std::move(busy), std::move(retry_after),
                          o.write_timeout, o.max_body, 1000ms);
          clean = false;
          break;
        }
        if (bec == http::error::body_limit) {
          std::string().swap(req.body());
          HttpReply too_large = text_reply(
              413, "request body exceeds the limit of " + std::to_string(o.max_body) + " bytes");
          std::string no_retry;
          co_await refuse(stream, req.version(), std::move(too_large), std::move(no_retry),
                          o.write_timeout, 2 * o.max_body, 2000ms);
          clean = false;
          break;
        }
        if (bec) {
          if (bec == beast::error::timeout) clean = false;
          spdlog::debug("reading request body failed: {}", bec.message());
          break;
        }
      }

      // What answers it: server/router.hpp, the table in routes().
      RouteRequest route;
      route.method = method_of(req.method());
      route.path = std::string(path);
      route.body = std::move(req.body());
      route.deadline = deadline;
      HttpReply reply = co_await self->router.dispatch(std::move(route));

      const bool keep_alive = req.keep_alive() && !self->stopping && !self->lame && !conn->evicted;
      auto res = make_response(req.version(), keep_alive, reply);
      if (req.method() == http::verb::head) {
        res.body().clear();
        res.content_length(reply.body.size());
      }
      tcp_layer.expires_after(o.write_timeout);
      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      (void)wn;
      if (wec) {
        clean = false;
        break;
      }
      if (!keep_alive) break;
      first = false;
      conn->busy = false;
      table.set_busy(id, false, std::chrono::steady_clock::now());
    }
    conn->busy = false;
    if (clean) {
      tcp_layer.expires_after(1s);
      auto [sec] = co_await stream.async_shutdown(use_tuple);
      (void)sec;
    }
    boost::system::error_code ignored;
    tcp_layer.socket().close(ignored);
    conn->stream = nullptr;
  }
};

Server::Server(asio::io_context& ioc, ServerOptions options, Validator& validator)
    : impl_(std::make_shared<Impl>(ioc, std::move(options), validator)) {}

Server::~Server() {
  stop();
}

Status Server::start() {
  return impl_->start();
}
void Server::stop() {
  if (impl_->started) impl_->stop();
}
Status Server::set_certificate(const std::string& cert_pem, const std::string& key_pem) {
  return impl_->certs.set_pem(cert_pem, key_pem);
}
bool Server::has_certificate() const {
  return impl_->certs.loaded();
}
void Server::lame_duck() {
  impl_->lame = true;
}
uint16_t Server::port() const {
  return impl_->bound_port;
}
size_t Server::connections() const {
  return impl_->connections();
}
ServerStats Server::stats() const {
  return impl_->stats();
}

}  // namespace sigil::server
