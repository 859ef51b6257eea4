// server/detail/server_impl.hpp: the webhook listener's state, shared by its two halves.
//
// Role: internal to the server module (not installed, not included outside server/). Declares
// Server::Impl: server.cpp holds the listener (start, stop, accept loop, eviction, the route
// table) and session.cpp the per-connection session (TLS handshake, request read under the
// limits, dispatch through the Router under the request's deadline, response write).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "server/limits.hpp"
#include "server/router.hpp"
#include "server/server.hpp"
#include "server/tls.hpp"

namespace sigil::server {

namespace detail {

inline constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);

// At most one warning per interval for events a flood repeats thousands of times a second.
class RareWarning {
 public:
  bool due() {
    using namespace std::chrono_literals;
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = last_.load(std::memory_order_relaxed);
    const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(10s);
    if (last != 0 && now - last < interval.count()) return false;
    return last_.compare_exchange_strong(last, now, std::memory_order_relaxed);
  }

 private:
  std::atomic<std::chrono::steady_clock::rep> last_{0};
};

}  // namespace detail

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  using Stream = boost::beast::ssl_stream<boost::beast::tcp_stream>;
  using RareWarning = detail::RareWarning;

  // Per-connection state shared with stop() and eviction; touched only on the connection's
  // strand.
  struct Conn {
    Stream* stream = nullptr;
    bool busy = false;     // a request is being read, judged or answered
    bool reading = false;  // of those, read: its header is in, its body not yet (evictable)
    bool evicted = false;  // close when idle, or right after the response being worked on
    // Since when (steady_clock ticks) the request's body, which holds part of the body budget,
    // has been arriving; 0 when none is. Read by cut_stalled_bodies from other threads.
    std::atomic<std::chrono::steady_clock::rep> body_since{0};
  };

  Impl(boost::asio::io_context& io, ServerOptions o, Validator& v);

  boost::asio::io_context& ioc;
  const ServerOptions opts;
  Validator& validator;
  CertStore certs;
  boost::asio::ip::tcp::acceptor acceptor;
  boost::asio::steady_timer grace_timer;
  std::atomic<bool> started{false};
  std::atomic<bool> stopping{false};
  std::atomic<bool> lame{false};  // lame_duck(): not ready, keep-alive off, still serving
  std::atomic<uint16_t> bound_port{0};

  ConnectionTable table;
  BodyBudget budget;
  const Router router;
  std::atomic<uint64_t> budget_refusals{0};
  RareWarning cap_warning, budget_warning, accept_warning;

  // Open connections by their ConnectionTable id, for stop() and eviction.
  mutable std::mutex mu;
  std::map<uint64_t, std::pair<boost::asio::any_io_executor, std::weak_ptr<Conn>>> conns;

  // server.cpp: the listener.

  // The webhook listener's routes: every path this port serves, and what answers it. The
  // admission routes run under the request's deadline through validate_guarded; the rest answer
  // at once. Handlers run while a session holds a shared_ptr to this Impl.
  Router routes();
  Status start();
  void stop();
  void close_connections(bool only_idle);
  size_t connections() const;
  ServerStats stats() const;
  // Closes an idle connection to make room for a new one (on its strand: when it turned busy
  // in the meantime, it finishes that request and closes after the response).
  void evict(uint64_t id);
  // Closes the connections whose request body has been arriving for at least
  // opts.stalled_body (each once), so that their part of the body budget comes back; returns
  // how many. Their reservations are given back when their sessions end, a few turns later.
  size_t cut_stalled_bodies(std::chrono::steady_clock::time_point now);
  // try_reserve() when it succeeds; else, when cut_stalled_bodies() closed some, try_reserve()
  // again as their reservations come back (for up to 100 ms).
  static boost::asio::awaitable<bool> reserve_making_room(std::shared_ptr<Impl> self,
                                                          std::function<bool()> try_reserve);
  std::atomic<uint64_t> stalled_cut{0};
  static boost::asio::awaitable<void> accept_loop(std::shared_ptr<Impl> self);

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
        boost::asio::post(self->acceptor.get_executor(), [s = self] { s->grace_timer.cancel(); });
      }
    }
  };

  // session.cpp: one connection.

  static boost::beast::http::response<boost::beast::http::string_body> make_response(
      unsigned version, bool keep_alive, HttpReply reply);
  // Reads and discards what the client is still sending (bounded in bytes and time), so that it
  // sees our error response instead of a connection reset.
  static boost::asio::awaitable<void> drain(Stream& stream, size_t limit,
                                            std::chrono::milliseconds time);
  // Runs the handler (the Validator, or the Mutator) under the request's deadline; see
  // session.cpp. Instantiated there for Validator and Mutator.
  template <class Handler>
  static boost::asio::awaitable<HttpReply> validate_guarded(std::shared_ptr<Impl> self,
                                                            const Handler* handler,
                                                            const char* route, std::string body,
                                                            Deadline deadline);
  // The synchronous path of /validate and /mutate (Validator::answer_now,
  // Mutator::answer_now): the reply, observed as validate_guarded observes one, when it needs
  // no waiting; else nullopt.
  template <class Handler>
  std::optional<HttpReply> answer_now(const Handler* handler, const char* route,
                                      std::string_view body);
  // Tells ServerOptions::observe_admission of an admission's reply (never throws).
  void observe(const char* route, const HttpReply& reply,
               std::chrono::steady_clock::time_point since) const;
  // Answers an error and closes: the response (Connection: close), then what the client is
  // still sending is read and dropped (up to drain_limit bytes, for up to drain_time), so that
  // it sees the answer rather than a reset.
  static boost::asio::awaitable<void> refuse(Stream& stream, unsigned version, HttpReply reply,
                                             std::string retry_after,
                                             std::chrono::milliseconds write_timeout,
                                             size_t drain_limit,
                                             std::chrono::milliseconds drain_time);
  HttpReply over_budget_reply();
  static boost::asio::awaitable<void> session(std::shared_ptr<Impl> self,
                                              boost::asio::ip::tcp::socket socket,
                                              std::shared_ptr<boost::asio::ssl::context> ctx,
                                              std::shared_ptr<Conn> conn,
                                              std::unique_ptr<Registration> reg);
};

}  // namespace sigil::server
