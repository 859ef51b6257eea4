// server/session.cpp: one webhook connection, from the TLS handshake to the close.
//
// The session loop reads each request under the limits (header and body size, the body budget,
// read and idle timeouts), asks the Router what answers it, runs the admission routes under the
// request's deadline (validate_guarded) and writes the response. The listener that spawns it
// is in server.cpp; the state both share is server/detail/server_impl.hpp.
#include <algorithm>
#include <array>
#include <optional>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/url/parse.hpp>

#include "server/detail/server_impl.hpp"
#include "server/mutator.hpp"

namespace sigil::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using detail::use_tuple;

namespace {

// The least time a request body is read for, whatever is left of the request's deadline (see
// the body read in session()).
constexpr std::chrono::milliseconds kBodyReadFloor{1000};

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

// The value of the first timeout= in the query ("" when absent or without a value). The API
// server writes "timeout=10s": that is split by hand; a query with percent-escapes or '+' goes
// through Boost.URL's decoding, as every query did before.
std::string timeout_query(std::string_view target, std::string_view query) {
  if (query.find_first_of("%+") == std::string_view::npos) {
    while (!query.empty()) {
      const size_t amp = query.find('&');
      const std::string_view param = query.substr(0, amp);
      const size_t eq = param.find('=');
      if (param.substr(0, eq) == "timeout") {
        return eq == std::string_view::npos ? std::string() : std::string(param.substr(eq + 1));
      }
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
    return {};
  }
  auto parsed = boost::urls::parse_origin_form(target);
  if (!parsed) return {};
  auto params = parsed->params();
  auto it = params.find("timeout");
  if (it != params.end() && (*it).has_value) return (*it).value;
  return {};
}

}  // namespace

http::response<http::string_body> Server::Impl::make_response(unsigned version, bool keep_alive,
                                                              HttpReply reply) {
  http::response<http::string_body> res{static_cast<http::status>(reply.status), version};
  res.set(http::field::server, "sigil");
  res.set(http::field::content_type,
          reply.content_type.empty() ? "text/plain; charset=utf-8" : reply.content_type);
  if (!reply.allow.empty()) res.set(http::field::allow, reply.allow);
  res.keep_alive(keep_alive);
  res.body() = std::move(reply.body);
  res.prepare_payload();
  return res;
}

// Reads and discards what the client is still sending (bounded in bytes and time), so that it
// sees our error response instead of a connection reset.
asio::awaitable<void> Server::Impl::drain(Stream& stream, size_t limit,
                                          std::chrono::milliseconds time) {
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
// verifier that is late. The handler outlives every connection. Which of the two answers is
// decided once (AnswerOnce), so a verdict that comes after the TIMEOUT is logged as late and
// never reported as the decision, and one claimed just before the deadline is the one sent.
//
// The lifetime rule, in one place: the validation is never cancelled. It owns (shares) its
// body and the server, and every wait inside it (registry, Kubernetes API, coalesced
// verifications) ends at the same deadline, so an abandoned validation finishes on its own
// moments later and frees what it held. Emitting an Asio cancellation into it instead
// reached child operations on other executors through Boost 1.81's co_spawn cancellation
// handler, which dispatches a raw pointer to a signal that is gone once the child finished:
// the use-after-free that crashed replicas when admissions were cut with fetches in flight.
template <class Handler>
asio::awaitable<HttpReply> Server::Impl::validate_guarded(std::shared_ptr<Impl> self,
                                                          const Handler* handler, const char* route,
                                                          std::string body, Deadline deadline) {
  const auto started = std::chrono::steady_clock::now();
  auto ex = co_await asio::this_coro::executor;
  // The timer exists only when the handler is still running after one turn of this strand. A
  // cached verdict finishes inside co_spawn (which dispatches on this strand), and co_spawn
  // hands the result over through one post to the strand; a post of our own, queued behind
  // it, finds the reply there, so such an admission costs neither a timer nor a cancel.
  struct State {
    std::optional<asio::steady_timer> timer;
    std::optional<HttpReply> reply;
    AnswerOnce once;  // the handler's verdict or our TIMEOUT: one of them is the answer
  };
  auto st = std::make_shared<State>();
  auto shared_body = std::make_shared<const std::string>(std::move(body));
  // The verifiers stop a little earlier than this guard (ServerOptions::answer_slack), so that
  // a registry too slow for the budget is named in the answer ("registry R did not answer
  // before the webhook deadline"), and a last-known-good verdict (cache.staleIfError) can stand
  // for it; this guard's bare TIMEOUT is left for a handler that is stuck.
  const Deadline work_deadline = handler_deadline(deadline, started, self->opts.answer_slack);
  auto run = [self, handler, shared_body, work_deadline, st]() -> asio::awaitable<HttpReply> {
    co_return co_await handler->handle(*shared_body, work_deadline, &st->once);
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
    if (st->timer) st->timer->cancel();
  });
  co_await asio::post(ex, asio::use_awaitable);
  if (!st->reply) {
    st->timer.emplace(ex, deadline);
    co_await st->timer->async_wait(use_tuple);
    if (!st->reply && !st->once.claim_timeout()) {
      // The handler claimed the answer just before the deadline: its reply is on its way to this
      // strand (co_spawn's completion, which cancels the timer). It was logged and observed as
      // the decision, so it is the one sent. Boost 1.81 dispatches that completion in the same
      // turn of the strand as the claim, so this wait is for a Boost that posts it.
      st->timer->expires_at(asio::steady_timer::time_point::max());
      co_await st->timer->async_wait(use_tuple);
    }
  }
  HttpReply reply = st->reply ? std::move(*st->reply) : handler->timeout_reply(*shared_body);
  self->observe(route, reply, started);
  co_return reply;
}

void Server::Impl::observe(const char* route, const HttpReply& reply,
                           std::chrono::steady_clock::time_point since) const {
  if (!opts.observe_admission) return;
  AdmissionResult result = reply.result;
  if (result == AdmissionResult::none) {
    result = reply.status == 200 ? AdmissionResult::allowed : AdmissionResult::error;
  }
  try {
    opts.observe_admission(route, result, std::chrono::steady_clock::now() - since);
  } catch (...) {  // metrics never fail an admission
  }
}

template <class Handler>
std::optional<HttpReply> Server::Impl::answer_now(const Handler* handler, const char* route,
                                                  std::string_view body) {
  const auto since = std::chrono::steady_clock::now();
  std::optional<HttpReply> reply = handler->answer_now(body);
  if (reply) observe(route, *reply, since);
  return reply;
}

// Answers an error and closes: the response (Connection: close), then what the client is
// still sending is read and dropped (up to drain_limit bytes, for up to drain_time), so that
// it sees the answer rather than a reset.
asio::awaitable<void> Server::Impl::refuse(Stream& stream, unsigned version, HttpReply reply,
                                           std::string retry_after,
                                           std::chrono::milliseconds write_timeout,
                                           size_t drain_limit,
                                           std::chrono::milliseconds drain_time) {
  auto res = make_response(version, false, std::move(reply));
  if (!retry_after.empty()) res.set(http::field::retry_after, retry_after);
  beast::get_lowest_layer(stream).expires_after(write_timeout);
  auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
  (void)wn;
  if (!wec && drain_limit > 0) co_await drain(stream, drain_limit, drain_time);
}

HttpReply Server::Impl::over_budget_reply() {
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

asio::awaitable<void> Server::Impl::session(std::shared_ptr<Impl> self, tcp::socket socket,
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

  // Capped: Beast's parser keeps a chunk header (with its extensions) and a chunked trailer in
  // this buffer until their line ends, and neither counts against the header or body limit, so
  // a client sending `1;aaaa...` without end would grow it until the read timeout. A request
  // header fits (its own limit applies first), with room for one 64 KiB read.
  beast::flat_buffer buffer;
  buffer.max_size(o.max_header + 64 * 1024);
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
    // Not yet busy to the table: a body not in after stalled_body may be evicted.
    conn->reading = true;
    table.set_reading(id, std::chrono::steady_clock::now());
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
    if (q != std::string_view::npos) timeout_param = timeout_query(target, target.substr(q + 1));
    const Deadline deadline = received + request_budget(timeout_param, o);

    // The body's bytes, from the process-wide budget: all of Content-Length before reading
    // (so an answer comes before the client has sent it), or a chunked body as it arrives.
    // Held until this request is answered.
    BodyReservation body_bytes(self->budget);
    const auto content_length = parser.content_length();
    bool reserved = parser.is_done() || !content_length || body_bytes.grow_to(*content_length);
    if (!reserved) {
      // The budget is full: room made from stalled bodies, if any. (No co_await inside a
      // condition: GCC 12.)
      reserved = co_await reserve_making_room(
          self, [&body_bytes, n = *content_length] { return body_bytes.grow_to(n); });
    }
    if (!reserved) {
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

    // Body: bounded by the limit, the budget and the request's own deadline, but given at least
    // kBodyReadFloor: a body the client has already sent is read and answered (from the verdict
    // cache, or TIMEOUT once the deadline has passed) even when this thread got to it late,
    // instead of the connection being closed without an answer. A client that withholds its body
    // still loses the connection at most that long after its deadline.
    if (!parser.is_done()) {
      const auto left = deadline - std::chrono::steady_clock::now();
      tcp_layer.expires_after(std::max<std::chrono::steady_clock::duration>(
          std::min<std::chrono::steady_clock::duration>(left, o.read_timeout), kBodyReadFloor));
      boost::system::error_code bec;
      bool over_budget = false;
      // While it arrives the body holds budget: a request that finds the budget full cuts it if
      // it has been arriving for longer than opts.stalled_body (cut_stalled_bodies).
      conn->body_since.store(received.time_since_epoch().count());
      while (!parser.is_done()) {
        auto [rec2, bn] = co_await http::async_read_some(stream, buffer, parser, use_tuple);
        (void)bn;
        if (rec2) {
          bec = rec2;
          break;
        }
        if (!content_length && !body_bytes.grow_unknown_to(req.body().capacity())) {
          // Room from others' stalled bodies, never its own.
          const auto since = conn->body_since.exchange(0);
          const bool grown = co_await reserve_making_room(
              self,
              [&body_bytes, n = req.body().capacity()] { return body_bytes.grow_unknown_to(n); });
          conn->body_since.store(since);
          if (!grown) {
            over_budget = true;
            break;
          }
        }
      }
      conn->body_since.store(0);
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
      if (bec == http::error::buffer_overflow) {
        std::string().swap(req.body());
        HttpReply malformed = text_reply(
            400, "malformed HTTP request: a chunk header or trailer does not end within " +
                     std::to_string(buffer.max_size()) + " bytes");
        std::string no_retry;
        co_await refuse(stream, req.version(), std::move(malformed), std::move(no_retry),
                        o.write_timeout, 0, 0ms);
        clean = false;
        break;
      }
      if (bec) {
        if (bec == beast::error::timeout) clean = false;
        spdlog::debug("reading request body failed: {}", bec.message());
        break;
      }
    }

    conn->reading = false;
    table.set_busy(id, true, std::chrono::steady_clock::now());
    // What answers it: server/router.hpp, the table in routes().
    RouteRequest route;
    route.method = method_of(req.method());
    route.path = std::string(path);
    route.body = std::move(req.body());
    route.deadline = deadline;
    // A cached admission is answered here, synchronously: no coroutine, timer or strand hop.
    std::optional<HttpReply> now = self->router.answer_now(route);
    HttpReply reply;
    if (now) {
      reply = std::move(*now);
    } else {
      reply = co_await self->router.dispatch(std::move(route));
    }

    const bool keep_alive = req.keep_alive() && !self->stopping && !self->lame && !conn->evicted;
    const size_t body_size = reply.body.size();
    auto res = make_response(req.version(), keep_alive, std::move(reply));
    if (req.method() == http::verb::head) {
      res.body().clear();
      res.content_length(body_size);
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

template asio::awaitable<HttpReply> Server::Impl::validate_guarded<Validator>(
    std::shared_ptr<Impl> self, const Validator* handler, const char* route, std::string body,
    Deadline deadline);
template std::optional<HttpReply> Server::Impl::answer_now<Validator>(const Validator* handler,
                                                                      const char* route,
                                                                      std::string_view body);
template std::optional<HttpReply> Server::Impl::answer_now<Mutator>(const Mutator* handler,
                                                                    const char* route,
                                                                    std::string_view body);
template asio::awaitable<HttpReply> Server::Impl::validate_guarded<Mutator>(
    std::shared_ptr<Impl> self, const Mutator* handler, const char* route, std::string body,
    Deadline deadline);

}  // namespace sigil::server
