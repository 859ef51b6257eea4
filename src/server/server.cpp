#include "server/server.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
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
#include "server/mutator.hpp"
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

  // Per-connection state shared with stop(); touched only on the connection's strand.
  struct Conn {
    Stream* stream = nullptr;
    bool busy = false;  // a request is being read, judged or answered
  };

  Impl(asio::io_context& io, ServerOptions o, Validator& v)
      : ioc(io),
        opts(std::move(o)),
        validator(v),
        certs(opts.cert_file, opts.key_file, opts.cert_check_interval),
        acceptor(asio::make_strand(io)),
        grace_timer(acceptor.get_executor()) {}

  asio::io_context& ioc;
  const ServerOptions opts;
  Validator& validator;
  CertStore certs;
  tcp::acceptor acceptor;
  asio::steady_timer grace_timer;
  std::atomic<bool> started{false};
  std::atomic<bool> stopping{false};
  std::atomic<uint16_t> bound_port{0};

  mutable std::mutex mu;
  uint64_t next_id = 0;
  std::map<uint64_t, std::pair<asio::any_io_executor, std::weak_ptr<Conn>>> conns;

  Status start() {
    if (started.exchange(true)) return make_error(Errc::internal, "server already started");
    auto addr = parse_listen_address(opts.listen);
    if (!addr) return addr.error();
    if (auto st = certs.load(); !st) return st;
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
      if (self->connections() >= self->opts.max_connections) {
        spdlog::warn("connection limit {} reached, dropping a new connection",
                     self->opts.max_connections);
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      auto ctx = self->certs.current();
      auto ex = socket.get_executor();
      asio::co_spawn(ex, session(self, std::move(socket), std::move(ctx)), asio::detached);
    }
  }

  // Registers a connection for stop(); unregisters on destruction.
  struct Registration {
    Registration(std::shared_ptr<Impl> s, uint64_t i) : self(std::move(s)), id(i) {}
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    std::shared_ptr<Impl> self;
    uint64_t id;
    ~Registration() {
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
    res.keep_alive(keep_alive);
    res.body() = reply.body;
    res.prepare_payload();
    return res;
  }

  static HttpReply text(int status, std::string body) {
    return HttpReply{status, "text/plain; charset=utf-8", std::move(body) + "\n"};
  }

  // Reads and discards what the client is still sending (bounded), so that it sees our error
  // response instead of a connection reset.
  static asio::awaitable<void> drain(Stream& stream, size_t limit) {
    beast::get_lowest_layer(stream).expires_after(2s);
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
  // verifier that ignores cancellation. The handler outlives every connection.
  template <class Handler>
  static asio::awaitable<HttpReply> validate_guarded(std::shared_ptr<Impl> self,
                                                     const Handler* handler, std::string body,
                                                     Deadline deadline) {
    auto ex = co_await asio::this_coro::executor;
    struct State {
      explicit State(const asio::any_io_executor& e) : timer(e) {}
      asio::steady_timer timer;
      asio::cancellation_signal cancel;
      std::optional<HttpReply> reply;
    };
    auto st = std::make_shared<State>(ex);
    auto shared_body = std::make_shared<const std::string>(std::move(body));
    st->timer.expires_at(deadline);
    asio::co_spawn(
        ex,
        [self, handler, shared_body, deadline]() -> asio::awaitable<HttpReply> {
          co_return co_await handler->handle(*shared_body, deadline);
        },
        asio::bind_cancellation_slot(
            st->cancel.slot(), [st](std::exception_ptr e, HttpReply reply) {
              if (e) {
                st->reply = HttpReply{500, "application/json",
                                      R"({"error":"internal error while validating"})"};
              } else {
                st->reply = std::move(reply);
              }
              st->timer.cancel();
            }));
    co_await st->timer.async_wait(use_tuple);
    if (st->reply) co_return std::move(*st->reply);
    st->cancel.emit(asio::cancellation_type::terminal);
    co_return handler->timeout_reply(*shared_body);
  }

  static asio::awaitable<void> session(std::shared_ptr<Impl> self, tcp::socket socket,
                                       std::shared_ptr<ssl::context> ctx) {
    if (!ctx) co_return;
    Stream stream(beast::tcp_stream(std::move(socket)), *ctx);
    auto conn = std::make_shared<Conn>();
    conn->stream = &stream;
    uint64_t id = 0;
    {
      std::lock_guard lock(self->mu);
      id = self->next_id++;
      self->conns.emplace(id, std::make_pair(stream.get_executor(), std::weak_ptr<Conn>(conn)));
    }
    const Registration reg(self, id);
    if (self->stopping) co_return;
    const auto& o = self->opts;
    auto& tcp_layer = beast::get_lowest_layer(stream);

    tcp_layer.expires_after(o.handshake_timeout);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
    if (hec) {
      spdlog::debug("TLS handshake failed: {}", hec.message());
      co_return;
    }

    beast::flat_buffer buffer;
    bool first = true;
    bool clean = true;  // whether to attempt a TLS close_notify at the end
    while (!self->stopping) {
      conn->busy = false;
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(std::min<size_t>(o.max_header, UINT32_MAX)));
      parser.body_limit(o.max_body);
      tcp_layer.expires_after(first ? o.read_timeout : o.idle_timeout);
      auto [rec, rn] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
      (void)rn;
      conn->busy = true;
      std::optional<HttpReply> early;  // an error answer; the connection closes after it
      if (rec == http::error::body_limit) {
        early =
            text(413, "request body exceeds the limit of " + std::to_string(o.max_body) + " bytes");
      } else if (rec == http::error::header_limit) {
        early = text(
            431, "request header exceeds the limit of " + std::to_string(o.max_header) + " bytes");
      } else if (rec) {
        if (rec == beast::error::timeout) clean = false;
        if (rec != http::error::end_of_stream && rec != beast::error::timeout &&
            rec != asio::error::operation_aborted && rec != asio::ssl::error::stream_truncated &&
            rec != asio::error::eof && buffer.size() > 0) {
          early = text(400, "malformed HTTP request: " + rec.message());
        } else {
          break;
        }
      }
      if (early) {
        auto res = make_response(11, false, *early);
        tcp_layer.expires_after(o.write_timeout);
        auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
        (void)wn;
        if (!wec && early->status == 413) co_await drain(stream, 2 * o.max_body);
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

      if (http::token_list{req[http::field::expect]}.exists("100-continue") ||
          beast::iequals(req[http::field::expect], "100-continue")) {
        http::response<http::empty_body> cont{http::status::continue_, req.version()};
        tcp_layer.expires_after(o.write_timeout);
        auto [cec, cn] = co_await http::async_write(stream, cont, use_tuple);
        (void)cn;
        if (cec) break;
      }

      // Body: bounded by the limit and by the request's own deadline.
      if (!parser.is_done()) {
        const auto left = deadline - std::chrono::steady_clock::now();
        tcp_layer.expires_after(std::max<std::chrono::steady_clock::duration>(
            std::min<std::chrono::steady_clock::duration>(left, o.read_timeout), 1ms));
        auto [bec, bn] = co_await http::async_read(stream, buffer, parser, use_tuple);
        (void)bn;
        if (bec == http::error::body_limit) {
          auto res = make_response(req.version(), false,
                                   text(413, "request body exceeds the limit of " +
                                                 std::to_string(o.max_body) + " bytes"));
          tcp_layer.expires_after(o.write_timeout);
          auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
          (void)wn;
          if (!wec) co_await drain(stream, 2 * o.max_body);
          break;
        }
        if (bec) {
          if (bec == beast::error::timeout) clean = false;
          spdlog::debug("reading request body failed: {}", bec.message());
          break;
        }
      }

      HttpReply reply;
      const bool is_get = req.method() == http::verb::get || req.method() == http::verb::head;
      std::string allow;
      if (path == "/validate") {
        if (req.method() != http::verb::post) {
          reply = text(405, "method not allowed: use POST");
          allow = "POST";
        } else {
          reply =
              co_await validate_guarded(self, &self->validator, std::move(req.body()), deadline);
        }
      } else if (path == "/mutate") {
        if (req.method() != http::verb::post) {
          reply = text(405, "method not allowed: use POST");
          allow = "POST";
        } else if (!o.mutator) {
          reply = text(404, "not found: the mutating webhook is not enabled");
        } else {
          reply = co_await validate_guarded(self, o.mutator, std::move(req.body()), deadline);
        }
      } else if (path == "/validate-policy") {
        if (req.method() != http::verb::post) {
          reply = text(405, "method not allowed: use POST");
          allow = "POST";
        } else if (!o.check_policy) {
          reply = text(404, "not found: policy validation is not enabled");
        } else {
          reply = handle_policy_review(req.body(), o.check_policy);
        }
      } else if (path == "/healthz") {
        reply = is_get ? text(200, "ok") : text(405, "method not allowed: use GET");
        if (!is_get) allow = "GET, HEAD";
      } else if (path == "/readyz") {
        if (!is_get) {
          reply = text(405, "method not allowed: use GET");
          allow = "GET, HEAD";
        } else {
          bool ready = !self->stopping;
          if (ready && o.ready) {
            try {
              ready = o.ready();
            } catch (...) {
              ready = false;
            }
          }
          reply = ready ? text(200, "ok") : text(503, "not ready");
        }
      } else {
        reply = text(404, "not found");
      }

      const bool keep_alive = req.keep_alive() && !self->stopping;
      auto res = make_response(req.version(), keep_alive, reply);
      if (!allow.empty()) res.set(http::field::allow, allow);
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
uint16_t Server::port() const {
  return impl_->bound_port;
}
size_t Server::connections() const {
  return impl_->connections();
}

}  // namespace sigil::server
