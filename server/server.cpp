#include "server/server.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
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
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "server/detail/server_impl.hpp"
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
using detail::use_tuple;

namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Bodies up to this size may use the whole body budget; larger ones leave a quarter of it free.
constexpr size_t kSmallBody = 256 * 1024;

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

Deadline handler_deadline(Deadline hard, std::chrono::steady_clock::time_point now,
                          std::chrono::milliseconds slack) {
  if (hard <= now || slack <= std::chrono::milliseconds::zero()) return hard;
  return hard - std::min<std::chrono::steady_clock::duration>(slack, (hard - now) / 10);
}

Server::Impl::Impl(asio::io_context& io, ServerOptions o, Validator& v)
    : ioc(io),
      opts(std::move(o)),
      validator(v),
      // An empty file name is CertStore's memory mode.
      certs(opts.external_certificate ? std::string() : opts.cert_file,
            opts.external_certificate ? std::string() : opts.key_file, opts.cert_check_interval),
      acceptor(asio::make_strand(io)),
      grace_timer(acceptor.get_executor()),
      table(
          ConnectionLimits{opts.max_connections, opts.max_connections_per_peer, opts.stalled_body}),
      budget(opts.body_budget, kSmallBody, opts.body_budget / 4),
      router(routes()) {}

// The webhook listener's routes: every path this port serves, and what answers it. The
// admission routes run under the request's deadline through validate_guarded; the rest answer
// at once. Handlers run while a session holds a shared_ptr to this Impl.
Router Server::Impl::routes() {
  Router r;
  r.post(
      "/validate",
      [this](RouteRequest req) {
        return validate_guarded(shared_from_this(), &validator, "validate", std::move(req.body),
                                req.deadline);
      },
      [this](const RouteRequest& req) { return answer_now(&validator, "validate", req.body); });
  r.post(
      "/mutate",
      [this](RouteRequest req) {
        if (!opts.mutator) {
          return at_once(text_reply(404, "not found: the mutating webhook is not enabled"));
        }
        return validate_guarded(shared_from_this(), opts.mutator, "mutate", std::move(req.body),
                                req.deadline);
      },
      [this](const RouteRequest& req) -> std::optional<HttpReply> {
        if (!opts.mutator) return std::nullopt;
        return answer_now(opts.mutator, "mutate", req.body);
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

Status Server::Impl::start() {
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

void Server::Impl::stop() {
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

void Server::Impl::close_connections(bool only_idle) {
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

size_t Server::Impl::connections() const {
  std::lock_guard lock(mu);
  return conns.size();
}

ServerStats Server::Impl::stats() const {
  ServerStats st;
  st.connections = connections();
  st.evicted = table.evictions();
  st.refused = table.refusals();
  st.body_bytes_in_use = budget.in_use();
  st.body_budget_refusals = budget_refusals.load();
  st.stalled_bodies_cut = stalled_cut.load();
  return st;
}

// Closes an idle connection to make room for a new one (on its strand: when it turned busy
// in the meantime, it finishes that request and closes after the response).
void Server::Impl::evict(uint64_t id) {
  std::lock_guard lock(mu);
  auto it = conns.find(id);
  if (it == conns.end()) return;
  asio::post(it->second.first, [weak = it->second.second] {
    auto c = weak.lock();
    if (!c) return;
    c->evicted = true;
    // Idle, or its body not in after stalled_body (ConnectionTable::idlest): closed now. One
    // handling a request closes after its answer.
    if ((!c->busy || c->reading) && c->stream) beast::get_lowest_layer(*c->stream).cancel();
  });
}

size_t Server::Impl::cut_stalled_bodies(std::chrono::steady_clock::time_point now) {
  const auto oldest = (now - opts.stalled_body).time_since_epoch().count();
  size_t cut = 0;
  std::lock_guard lock(mu);
  for (auto& [id, entry] : conns) {
    (void)id;
    auto c = entry.second.lock();
    if (!c) continue;
    auto since = c->body_since.load(std::memory_order_relaxed);
    // Claimed once: a body already being cut is not counted again.
    if (since == 0 || since > oldest || !c->body_since.compare_exchange_strong(since, 0)) {
      continue;
    }
    ++cut;
    asio::post(entry.first, [weak = entry.second] {
      auto conn = weak.lock();
      if (!conn) return;
      conn->evicted = true;
      if (conn->stream) beast::get_lowest_layer(*conn->stream).cancel();
    });
  }
  stalled_cut += cut;
  return cut;
}

asio::awaitable<bool> Server::Impl::reserve_making_room(std::shared_ptr<Impl> self,
                                                        std::function<bool()> try_reserve) {
  if (try_reserve()) co_return true;
  if (self->cut_stalled_bodies(std::chrono::steady_clock::now()) == 0) co_return false;
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (int i = 0; i < 20; ++i) {
    t.expires_after(5ms);
    co_await t.async_wait(use_tuple);
    if (try_reserve()) co_return true;
  }
  co_return false;
}

asio::awaitable<void> Server::Impl::accept_loop(std::shared_ptr<Impl> self) {
  while (!self->stopping) {
    auto [ec, socket] =
        co_await self->acceptor.async_accept(asio::make_strand(self->ioc), use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || self->stopping) break;
      // EMFILE and friends: back off a little instead of spinning, and say so now and then
      // (once per failure would write 20 lines a second for as long as it lasts).
      if (self->accept_warning.due()) spdlog::warn("accept failed: {}", ec.message());
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
      self->conns.emplace(adm.id, std::make_pair(socket.get_executor(), std::weak_ptr<Conn>(conn)));
    }
    if (adm.evict) self->evict(*adm.evict);
    auto ex = socket.get_executor();
    asio::co_spawn(
        ex, session(self, std::move(socket), std::move(ctx), std::move(conn), std::move(reg)),
        asio::detached);
  }
}

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
