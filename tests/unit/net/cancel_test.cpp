// Cancellation through Asio cancellation slots: a cancelled call ends with "cancelled" and
// closes its connection; a cancelled coroutine's next call sends nothing; the awaitable
// operators' idiom; and cancellations at random points while requests are in flight (run it
// under ASan: the bridge to the client's strand must never touch a call that has ended).
#include <atomic>
#include <future>
#include <random>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "helpers.hpp"

namespace asio = boost::asio;
using namespace sigil;
using namespace sigil::net;
using namespace sigil::test;

namespace {

using Results = std::vector<Result<Response>>;

// Sends each request in turn (a cancelled coroutine keeps going, to show what later calls
// do) and hands the results over.
asio::awaitable<void> send_all(Client& c, std::vector<Request> reqs, Deadline deadline,
                               std::shared_ptr<std::promise<Results>> out) {
  co_await asio::this_coro::throw_if_cancelled(false);
  Results rs;
  const Limits limits;
  for (auto& r : reqs) rs.push_back(co_await c.send(r, deadline, limits));
  out->set_value(std::move(rs));
}

// Spawns send_all on a fresh strand, bound to a CancelSignal of that strand.
std::future<Results> spawn_cancellable(Loop& loop, Client& c, std::vector<Request> reqs,
                                       Deadline deadline, std::optional<CancelSignal>& sig) {
  auto strand = asio::make_strand(loop.ioc);
  sig.emplace(strand);
  auto out = std::make_shared<std::promise<Results>>();
  auto fut = out->get_future();
  auto s = *sig;
  asio::post(strand, [&c, reqs = std::move(reqs), deadline, out, s, strand]() mutable {
    asio::co_spawn(strand, send_all(c, std::move(reqs), deadline, out),
                   asio::bind_cancellation_slot(s.slot(), [](std::exception_ptr) {}));
  });
  return fut;
}

asio::awaitable<bool> stall_then_ok(const HttpRequest& req, HttpConn& conn) {
  if (req.path == "/stall") co_await conn.sleep(3000ms);
  co_return co_await conn.reply(HttpReply::text(200, "ok"));
}

}  // namespace

TEST_CASE("cancel: a call in flight ends with 'cancelled' and its connection is closed") {
  auto tls = GENERATE(false, true);
  CAPTURE(tls);
  FakeHttpServer srv(stall_then_ok, tls ? tls_server() : FakeHttpOptions{});
  Loop loop(2);
  Client c(loop.ioc.get_executor(), tls_options());
  std::optional<CancelSignal> sig;
  auto fut = spawn_cancellable(loop, c, {get_request(url_of(srv, "/stall"))}, in(10s), sig);
  REQUIRE(sigil::test::eventually([&] { return srv.requests() == 1; }));
  sig->cancel();
  sig->cancel();  // idempotent
  CHECK(sig->cancelled());
  auto rs = fut.get();
  REQUIRE(rs.size() == 1);
  REQUIRE_FALSE(rs[0].ok());
  CHECK(rs[0].error().code == Errc::unavailable);
  CHECK(contains(rs[0].error().message, "cancelled"));
  CHECK(c.pool_stats().idle == 0);
  // The client is unharmed.
  CHECK(loop.run(c.send(get_request(url_of(srv)), in(5s), Limits{})).ok());
}

TEST_CASE("cancel: a cancelled coroutine's later calls fail at once and send nothing") {
  FakeHttpServer srv(stall_then_ok);
  Loop loop(2);
  Client c(loop.ioc.get_executor(), ClientOptions{});
  std::optional<CancelSignal> sig;
  auto fut = spawn_cancellable(
      loop, c, {get_request(url_of(srv, "/stall")), get_request(url_of(srv, "/fine"))}, in(10s),
      sig);
  REQUIRE(sigil::test::eventually([&] { return srv.requests() == 1; }));
  sig->cancel();
  auto rs = fut.get();
  REQUIRE(rs.size() == 2);
  CHECK_FALSE(rs[0].ok());
  REQUIRE_FALSE(rs[1].ok());
  CHECK(contains(rs[1].error().message, "cancelled"));
  std::this_thread::sleep_for(50ms);
  CHECK(srv.requests() == 1);
}

TEST_CASE("cancel: a backoff between retries is cut short") {
  FakeHttpServer srv([](const HttpRequest&) { return HttpReply::text(503, "busy"); });
  Loop loop(2);
  Client c(loop.ioc.get_executor(), ClientOptions{});
  auto req = get_request(url_of(srv));
  req.retry.max_retries = 5;
  req.retry.backoff_base = 2000ms;
  req.retry.max_backoff = 2000ms;
  std::optional<CancelSignal> sig;
  auto fut = spawn_cancellable(loop, c, {req}, in(30s), sig);
  REQUIRE(sigil::test::eventually([&] { return srv.requests() == 1; }));
  std::this_thread::sleep_for(50ms);  // now in the backoff
  sig->cancel();
  auto rs = fut.get();
  REQUIRE_FALSE(rs[0].ok());
  CHECK(contains(rs[0].error().message, "cancelled"));
  CHECK(srv.requests() == 1);
}

TEST_CASE("cancel: the awaitable operators' idiom (a send raced against a timer)") {
  FakeHttpServer srv(stall_then_ok, tls_server());
  Loop loop(2);
  Client c(loop.ioc.get_executor(), tls_options());
  auto strand = asio::make_strand(loop.ioc);
  // co_spawn (under the operators) needs a default-constructible result: wrap it.
  auto send = [&c, &srv]() -> asio::awaitable<std::optional<Result<Response>>> {
    const Limits limits;
    co_return co_await c.send(get_request(url_of(srv, "/stall")), in(10s), limits);
  };
  auto race = [&send]() -> asio::awaitable<std::string> {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer timer(co_await asio::this_coro::executor, 150ms);
    auto r = co_await (send() || timer.async_wait(asio::use_awaitable));
    co_return r.index() == 0 ? "send" : "timer";
  };
  auto winner = asio::co_spawn(strand, race(), asio::use_future).get();
  CHECK(winner == "timer");
  CHECK(loop.run(c.send(get_request(url_of(srv)), in(5s), Limits{})).ok());
}

TEST_CASE("cancel: at random points while requests are in flight (run under ASan)") {
  // Answers at random speeds, sometimes 503 (a retry and a backoff), sometimes a body in
  // pieces; callers on their own strands, cancelled from another thread at random moments.
  std::atomic<uint64_t> seed{12345};
  FakeHttpServer srv(
      [&](const HttpRequest&, HttpConn& conn) -> asio::awaitable<bool> {
        std::mt19937_64 rng(seed.fetch_add(1));
        co_await conn.sleep(std::chrono::milliseconds(rng() % 4));
        if (rng() % 5 == 0) co_return co_await conn.reply(HttpReply::text(503, "busy"));
        if (rng() % 3 == 0) {
          co_await conn.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
          co_await conn.chunk(std::string(1000, 'a'));
          co_await conn.sleep(std::chrono::milliseconds(rng() % 3));
          co_await conn.chunk(std::string(1000, 'b'));
          co_return co_await conn.end_chunks();
        }
        co_return co_await conn.reply(HttpReply::text(200, std::string(rng() % 5000, 'x')));
      },
      tls_server());
  Loop loop(4);
  Client c(loop.ioc.get_executor(), tls_options());
  std::mt19937_64 rng(777);
  int cancelled = 0, completed = 0;
  for (int round = 0; round < 40; ++round) {
    constexpr int kCallers = 6;
    std::vector<std::optional<CancelSignal>> sigs(kCallers);
    std::vector<std::future<Results>> futs;
    for (int i = 0; i < kCallers; ++i) {
      auto req = get_request(url_of(srv, "/r"));
      req.retry.max_retries = 2;
      req.retry.backoff_base = 1ms;
      futs.push_back(spawn_cancellable(loop, c, {req, req}, in(10s), sigs[i]));
    }
    for (int i = 0; i < kCallers; ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
      if (rng() % 3 != 0) sigs[i]->cancel();
    }
    for (auto& f : futs) {
      for (auto& r : f.get()) {
        if (r.ok()) {
          CHECK((r->status == 200 || r->status == 503));
          ++completed;
        } else {
          INFO(r.error().message);
          CHECK(r.error().code == Errc::unavailable);
          ++cancelled;
        }
      }
    }
  }
  CHECK(completed > 0);
  CHECK(cancelled > 0);
  CHECK(c.pool_stats().idle_armed == 0);
  CHECK(loop.run(c.send(get_request(url_of(srv)), in(5s), Limits{})).ok());
}

TEST_CASE("cancel: a stream read is cancelled, and the stream stays failed") {
  FakeHttpServer srv([](const HttpRequest&, HttpConn& conn) -> asio::awaitable<bool> {
    co_await conn.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    co_await conn.sleep(3000ms);
    co_return false;
  });
  Loop loop(2);
  Client c(loop.ioc.get_executor(), ClientOptions{});
  auto s = loop.run(c.open(get_request(url_of(srv, "/watch")), in(5s), Limits{}));
  REQUIRE(s.ok());
  auto strand = asio::make_strand(loop.ioc);
  CancelSignal sig(strand);
  auto out = std::make_shared<std::promise<Result<std::string>>>();
  auto read = [](ResponseStream* st,
                 std::shared_ptr<std::promise<Result<std::string>>> p) -> asio::awaitable<void> {
    p->set_value(co_await st->read_some(in(10s)));
  };
  asio::post(strand, [&, out] {
    asio::co_spawn(strand, read(s->get(), out),
                   asio::bind_cancellation_slot(sig.slot(), [](std::exception_ptr) {}));
  });
  std::this_thread::sleep_for(100ms);
  sig.cancel();
  auto r = out->get_future().get();
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "cancelled"));
  CHECK_FALSE(loop.run((*s)->read_some(in(1s))).ok());
}
