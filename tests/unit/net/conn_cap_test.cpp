// net::Client's connection caps (ClientOptions::max_connections, reserved_connections,
// max_connections_per_host) against real TLS servers on 127.0.0.1: hosts that hold
// connections cannot take every descriptor, the operator's requests keep slots of their own, and
// a wait for a slot never counts against the origin (fail_fast).
#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <catch2/catch.hpp>

#include "helpers.hpp"

using namespace sigil;
using namespace sigil::net;
using namespace sigil::test;
namespace asio = boost::asio;

namespace {

FakeHttpServer slow_server(std::chrono::milliseconds delay, bool close = false) {
  return FakeHttpServer(
      [delay, close](const HttpRequest&) {
        HttpReply r = HttpReply::text(200, "ok");
        r.delay = delay;
        r.close = close;
        return r;
      },
      tls_server());
}

ClientOptions capped(size_t max, size_t reserved, size_t per_origin) {
  ClientOptions o = tls_options();
  o.max_connections = max;
  o.reserved_connections = reserved;
  o.max_connections_per_host = per_origin;
  return o;
}

Request get(const FakeHttpServer& srv, bool named = false, bool listed = false) {
  Request r = get_request(url_of(srv));
  r.operator_named = named || listed;
  r.operator_listed = listed;
  return r;
}

// n calls at once (each on its own thread, the client on `loop`), their results in order.
std::vector<Result<Response>> at_once(Loop& loop, Client& c, const std::vector<Request>& reqs,
                                      std::chrono::milliseconds budget) {
  std::vector<std::future<Result<Response>>> calls;
  calls.reserve(reqs.size());
  for (const auto& r : reqs) {
    calls.push_back(std::async(std::launch::async, [&loop, &c, r, budget] {
      return loop.run(c.send(r, in(budget), Limits{}));
    }));
  }
  std::vector<Result<Response>> out;
  out.reserve(calls.size());
  for (auto& f : calls) out.push_back(f.get());
  return out;
}

// One send on its own strand, bound to a CancelSignal of that strand (as net/cancel_test.cpp).
std::future<Result<Response>> send_cancellable(Loop& loop, Client& c, Request req,
                                               Deadline deadline,
                                               std::optional<CancelSignal>& sig) {
  auto strand = asio::make_strand(loop.ioc);
  sig.emplace(strand);
  auto out = std::make_shared<std::promise<Result<Response>>>();
  auto fut = out->get_future();
  auto s = *sig;
  asio::post(strand, [&c, req = std::move(req), deadline, out, s, strand]() mutable {
    auto run = [](Client& client, Request r, Deadline d,
                  std::shared_ptr<std::promise<Result<Response>>> o) -> asio::awaitable<void> {
      co_await asio::this_coro::throw_if_cancelled(false);
      o->set_value(co_await client.send(std::move(r), d, Limits{}));
    };
    asio::co_spawn(strand, run(c, std::move(req), deadline, out),
                   asio::bind_cancellation_slot(s.slot(), [](std::exception_ptr) {}));
  });
  return fut;
}

// A port on 127.0.0.1 where nothing listens (connections are refused at once).
Url refused_url() {
  asio::io_context ioc;
  asio::ip::tcp::acceptor acc(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acc.local_endpoint().port();
  acc.close();
  auto u = parse_url("https://127.0.0.1:" + std::to_string(port) + "/");
  if (!u) throw std::runtime_error("bad URL");
  return *u;
}

}  // namespace

TEST_CASE("connection caps: a host no operator listed gets max_connections_per_host at once") {
  auto srv = slow_server(1500ms);
  Loop loop(2);
  Client c(loop.ioc.get_executor(), capped(64, 8, 2));
  // Six calls to a host a pod named: two connect, four wait, and each waiter takes a connection
  // as it is parked: two connections in all, every call answered.
  const auto rs = at_once(loop, c, std::vector<Request>(6, get(srv)), 10000ms);
  for (const auto& r : rs) {
    INFO((r ? std::string() : r.error().message));
    CHECK(r.ok());
  }
  CHECK(srv.connections() == 2);
  const ConnStats s = c.conn_stats();
  CHECK(s.waited == 4);
  CHECK(s.timed_out == 0);
  CHECK(s.waiting == 0);
  CHECK(s.open == 2);  // idle in the pool
}

TEST_CASE("connection caps: the operator's listed hosts are not held to the per-host cap") {
  auto srv = slow_server(1500ms);
  Loop loop(2);
  Client c(loop.ioc.get_executor(), capped(64, 8, 2));
  std::vector<Request> reqs(4, get(srv, true, true));
  const auto rs = at_once(loop, c, reqs, 10000ms);
  for (const auto& r : rs) CHECK(r.ok());
  CHECK(srv.connections() == 4);
  CHECK(c.conn_stats().waited == 0);
}

TEST_CASE("connection caps: a wait that outlives its deadline fails clearly and is not an outage") {
  auto srv = slow_server(2500ms);
  Loop loop(2);
  ClientOptions o = capped(64, 8, 1);
  o.fail_fast.after = 1;  // one failed attempt would take the origin down
  o.fail_fast.slow = 100ms;
  o.fail_fast.min_budget = 500ms;
  Client c(loop.ioc.get_executor(), o);
  auto holder = std::async(std::launch::async,
                           [&] { return loop.run(c.send(get(srv), in(10000ms), Limits{})); });
  REQUIRE(eventually([&] { return srv.connections() == 1; }));
  auto r = loop.run(c.send(get(srv), in(1500ms), Limits{}));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::timeout);
  CHECK(
      contains(r.error().message, "no connection to " + srv.authority() +
                                      " within the deadline: 1 connections are open to its host"));
  CHECK(c.conn_stats().timed_out == 1);
  // Waiting for a slot says nothing about the host: it is not down.
  CHECK(c.outage_stats().went_down == 0);
  CHECK(c.outage_stats().down == 0);
  REQUIRE(holder.get().ok());
  CHECK(srv.connections() == 1);
}

TEST_CASE(
    "connection caps: the total: idle connections make room, then only the operator's "
    "requests get the reserved slots") {
  auto a = slow_server(1500ms);
  auto b = slow_server(0ms);
  auto hold = slow_server(3000ms);
  Loop loop(2);
  Client c(loop.ioc.get_executor(), capped(2, 1, 0));
  // Two connections to a, both parked: the total is reached with idle ones.
  for (const auto& r : at_once(loop, c, {get(a), get(a)}, 5000ms)) REQUIRE(r.ok());
  REQUIRE(a.connections() == 2);
  CHECK(c.conn_stats().open == 2);
  // b needs a new connection: an idle one of a's is closed to make room, nobody waits.
  REQUIRE(loop.run(c.send(get(b), in(5000ms), Limits{})).ok());
  CHECK(c.conn_stats().open == 2);
  CHECK(c.conn_stats().waited == 0);
  // Two calls that hold their connections fill the total with connections in use.
  auto held = std::async(std::launch::async, [&] {
    return at_once(loop, c, {get(hold), get(hold)}, 10000ms);
  });
  REQUIRE(eventually([&] { return hold.connections() == 2; }));
  // A pod's host now waits, and gives up at its deadline.
  auto pods = loop.run(c.send(get(b), in(700ms), Limits{}));
  REQUIRE_FALSE(pods.ok());
  CHECK(pods.error().code == Errc::timeout);
  CHECK(contains(pods.error().message, "2 connections are open, the most sigil opens in all"));
  // The operator's registry takes the reserved slot (the shared ones are all in use).
  auto ops = loop.run(c.send(get(b, true), in(5000ms), Limits{}));
  INFO((ops ? std::string() : ops.error().message));
  REQUIRE(ops.ok());
  CHECK(c.conn_stats().reserved_open == 1);
  CHECK(c.conn_stats().open == 3);
  for (const auto& r : held.get()) CHECK(r.ok());
  // Parked now: hold's two in shared slots, and b's in the reserved one, parked first. A pod's
  // call to a new host closes one of hold's, never the older reserved one it could not use.
  auto d = slow_server(0ms);
  REQUIRE(loop.run(c.send(get(d), in(5000ms), Limits{})).ok());
  CHECK(c.conn_stats().reserved_open == 1);
  CHECK(c.conn_stats().open == 3);
  CHECK(c.conn_stats().waited == 1);  // only the pod's call to b, above
}

TEST_CASE("connection caps: connections that fail or close give their slot back") {
  Loop loop;
  Client c(loop.ioc.get_executor(), capped(16, 1, 1));
  // Nothing listens there: each attempt fails at once and must not keep the host's one slot.
  const Url dead = refused_url();
  for (int i = 0; i < 3; ++i) {
    auto r = loop.run(c.send(get_request(dead), in(2000ms), Limits{}));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unavailable);  // refused, not a wait for a slot
  }
  // A server that closes after each answer: three calls, one after another, each connects.
  auto closing = slow_server(0ms, true);
  for (int i = 0; i < 3; ++i) REQUIRE(loop.run(c.send(get(closing), in(2000ms), Limits{})).ok());
  CHECK(closing.connections() == 3);
  CHECK(c.conn_stats().waited == 0);
  CHECK(eventually([&] { return c.conn_stats().open == 0; }));
  // Three at once to a slow one that closes: each waiter goes when the connection before it
  // closes (not parked), well before its deadline (a waiter not woken would wait for it).
  auto slow_closing = slow_server(1000ms, true);
  const auto rs = at_once(loop, c, std::vector<Request>(3, get(slow_closing)), 15000ms);
  for (const auto& r : rs) {
    INFO((r ? std::string() : r.error().message));
    CHECK(r.ok());
  }
  CHECK(slow_closing.connections() == 3);
  CHECK(c.conn_stats().waited == 2);
}

TEST_CASE(
    "connection caps: the per-host cap is one host name's, whatever the port; the "
    "operator's listed connections do not count against it") {
  auto holding = slow_server(3000ms);
  auto other_port = slow_server(0ms);  // the same host, 127.0.0.1
  Loop loop(2);
  Client c(loop.ioc.get_executor(), capped(64, 8, 1));
  // A listed call holds a connection to 127.0.0.1: it does not count, so a pod's call to
  // another port of that host connects.
  auto listed = std::async(std::launch::async, [&] {
    return loop.run(c.send(get(holding, true, true), in(10000ms), Limits{}));
  });
  REQUIRE(eventually([&] { return holding.connections() == 1; }));
  REQUIRE(loop.run(c.send(get(other_port), in(1500ms), Limits{})).ok());
  CHECK(c.conn_stats().waited == 0);
  // A pod's call holds one: another pod's call to another port of the host waits, in vain.
  auto pods = std::async(std::launch::async,
                         [&] { return loop.run(c.send(get(holding), in(10000ms), Limits{})); });
  REQUIRE(eventually([&] { return holding.connections() == 2; }));
  auto r = loop.run(c.send(get(other_port, false, false), in(700ms), Limits{}));
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "1 connections are open to its host"));
  REQUIRE(listed.get().ok());
  REQUIRE(pods.get().ok());
}

TEST_CASE(
    "connection caps: a wait is not counted as connecting (a refused host after a wait "
    "stays up)") {
  auto holding = slow_server(1500ms);
  Loop loop(2);
  ClientOptions o = capped(8, 1, 0);
  o.max_connections = 1;  // (below what the config allows: the test's own)
  o.fail_fast.after = 1;
  o.fail_fast.slow = 300ms;
  o.fail_fast.min_budget = 500ms;
  Client c(loop.ioc.get_executor(), o);
  auto held = std::async(std::launch::async,
                         [&] { return loop.run(c.send(get(holding), in(10000ms), Limits{})); });
  REQUIRE(eventually([&] { return holding.connections() == 1; }));
  // Waits about 1.5 s for the one slot, then is refused at once: measured from the wait's start
  // it would look like a connection that hung for 1.5 s, and take the origin down.
  auto r = loop.run(c.send(get_request(refused_url()), in(10000ms), Limits{}));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unavailable);
  CHECK(c.conn_stats().waited == 1);
  CHECK(c.outage_stats().went_down == 0);
  REQUIRE(held.get().ok());
}

TEST_CASE("connection caps: a call cancelled while it waits ends at once and is counted") {
  auto holding = slow_server(3000ms);
  Loop loop(2);
  Client c(loop.ioc.get_executor(), capped(64, 8, 1));
  auto held = std::async(std::launch::async,
                         [&] { return loop.run(c.send(get(holding), in(10000ms), Limits{})); });
  REQUIRE(eventually([&] { return holding.connections() == 1; }));
  std::optional<CancelSignal> sig;
  auto waiting = send_cancellable(loop, c, get(holding), in(10000ms), sig);
  REQUIRE(eventually([&] { return c.conn_stats().waiting == 1; }));
  sig->cancel();
  REQUIRE(waiting.wait_for(2s) == std::future_status::ready);
  auto r = waiting.get();
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "cancelled"));
  CHECK(c.conn_stats().waiting == 0);
  CHECK(c.conn_stats().timed_out == 1);
  REQUIRE(held.get().ok());
  CHECK(holding.connections() == 1);
}

TEST_CASE(
    "connection caps: past max_waiting_per_cap waiters a pod's call is refused at once, the "
    "operator's never") {
  auto holding = slow_server(600ms);
  Loop loop(2);
  ClientOptions o = capped(64, 8, 1);
  o.max_waiting_per_cap = 2;
  Client c(loop.ioc.get_executor(), o);
  auto send_async = [&](Request r) {
    return std::async(std::launch::async,
                      [&, r] { return loop.run(c.send(r, in(10000ms), Limits{})); });
  };
  auto held = send_async(get(holding));
  REQUIRE(eventually([&] { return holding.connections() == 1; }));
  auto w1 = send_async(get(holding));
  auto w2 = send_async(get(holding));
  REQUIRE(eventually([&] { return c.conn_stats().waiting == 2; }));
  // A third pod's call: two already wait for the host's one connection.
  const auto start = std::chrono::steady_clock::now();
  auto r = loop.run(c.send(get(holding), in(10000ms), Limits{}));
  REQUIRE_FALSE(r.ok());
  CHECK(std::chrono::steady_clock::now() - start < 500ms);  // at once, not after a wait
  CHECK(r.error().code == Errc::unavailable);
  CHECK(contains(r.error().message, "2 calls already wait for one"));
  CHECK(contains(r.error().message, "the cap of connections to its host"));
  CHECK(c.conn_stats().refused == 1);
  CHECK(c.conn_stats().waited == 2);
  CHECK(c.outage_stats().went_down == 0);
  // The operator's call (named, not listed: held to the host's cap) waits its turn.
  auto named = send_async(get(holding, true));
  for (auto* f : {&held, &w1, &w2, &named}) {
    auto one = f->get();
    INFO((one ? std::string() : one.error().message));
    CHECK(one.ok());
  }
  CHECK(c.conn_stats().refused == 1);
  CHECK(c.conn_stats().waited == 3);
  CHECK(holding.connections() == 1);  // each waiter took the parked connection in turn
}

TEST_CASE("connection caps: calls that gave up waiting do not count toward max_waiting_per_cap") {
  auto holding = slow_server(2500ms);
  Loop loop(2);
  ClientOptions o = capped(64, 8, 1);
  o.max_waiting_per_cap = 2;
  Client c(loop.ioc.get_executor(), o);
  auto held = std::async(std::launch::async,
                         [&] { return loop.run(c.send(get(holding), in(10000ms), Limits{})); });
  REQUIRE(eventually([&] { return holding.connections() == 1; }));
  // Two calls wait and run out of time; they stay in the queue until a wake reaches them.
  const auto gave_up = at_once(loop, c, std::vector<Request>(2, get(holding)), 300ms);
  for (const auto& r : gave_up) REQUIRE_FALSE(r.ok());
  CHECK(c.conn_stats().timed_out == 2);
  // So a new call finds the queue "full" of calls that left: it waits all the same.
  auto r = loop.run(c.send(get(holding), in(10000ms), Limits{}));
  INFO((r ? std::string() : r.error().message));
  CHECK(r.ok());
  CHECK(c.conn_stats().refused == 0);
  REQUIRE(held.get().ok());
}

TEST_CASE("connection caps: a freed slot goes to the operator's waiting call first") {
  auto holding = slow_server(2000ms, true);
  auto next = slow_server(1500ms, true);
  Loop loop(2);
  ClientOptions o = capped(8, 1, 0);
  o.max_connections = 1;
  o.reserved_connections = 0;  // the operator's call waits for the shared slot too
  Client c(loop.ioc.get_executor(), o);
  auto held = std::async(std::launch::async,
                         [&] { return loop.run(c.send(get(holding), in(10000ms), Limits{})); });
  REQUIRE(eventually([&] { return holding.connections() == 1; }));
  using Clock = std::chrono::steady_clock;
  auto timed = [&](Request req) {
    return std::async(std::launch::async, [&c, &loop, req] {
      auto r = loop.run(c.send(req, in(10000ms), Limits{}));
      return std::make_pair(r.ok(), Clock::now());
    });
  };
  auto pods = timed(get(next));  // waits first
  REQUIRE(eventually([&] { return c.conn_stats().waiting == 1; }));
  auto ops = timed(get(next, true));  // waits second, and is the operator's
  REQUIRE(eventually([&] { return c.conn_stats().waiting == 2; }));
  REQUIRE(held.get().ok());
  const auto [pods_ok, pods_done] = pods.get();
  const auto [ops_ok, ops_done] = ops.get();
  CHECK(pods_ok);
  CHECK(ops_ok);
  CHECK(ops_done < pods_done);  // one slot: whoever got it first finished first
}

TEST_CASE("connection caps: a parked connection wakes a call that can take it") {
  auto a = slow_server(0ms);
  auto b = slow_server(3000ms);
  Loop loop(2);
  Client c(loop.ioc.get_executor(), capped(64, 8, 1));
  using Clock = std::chrono::steady_clock;
  auto timed = [&](Request req) {
    return std::async(std::launch::async, [&c, &loop, req] {
      auto r = loop.run(c.send(req, in(15000ms), Limits{}));
      return std::make_pair(r.ok(), Clock::now());
    });
  };
  // A pod's call to b holds 127.0.0.1's one slot; a pod's call to b, then one to a, wait.
  auto holder = timed(get(b));
  REQUIRE(eventually([&] { return b.connections() == 1; }));
  auto to_b = timed(get(b));
  REQUIRE(eventually([&] { return c.conn_stats().waiting == 1; }));
  auto to_a = timed(get(a));
  REQUIRE(eventually([&] { return c.conn_stats().waiting == 2; }));
  // The operator's listed call to a (not held to the cap) parks its connection: the waiting
  // call to a takes it at once, though the call to b waited longer (and could not use it).
  REQUIRE(loop.run(c.send(get(a, true, true), in(5000ms), Limits{})).ok());
  const auto [a_ok, a_done] = to_a.get();
  const auto [holder_ok, holder_done] = holder.get();
  CHECK(a_ok);
  CHECK(holder_ok);
  CHECK(a_done < holder_done);
  CHECK(a.connections() == 1);
  CHECK(to_b.get().first);
}
