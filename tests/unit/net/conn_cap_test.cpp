// net::Client's connection caps (ClientOptions::max_connections, reserved_connections,
// max_connections_per_origin) against real TLS servers on 127.0.0.1: hosts that hold
// connections cannot take every descriptor, the operator's requests keep slots of their own, and
// a wait for a slot never counts against the origin (fail_fast).
#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include "helpers.hpp"

using namespace sigil;
using namespace sigil::net;
using namespace sigil::test;

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
  o.max_connections_per_origin = per_origin;
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

}  // namespace

TEST_CASE("connection caps: a host no operator listed gets max_connections_per_origin at once") {
  auto srv = slow_server(400ms);
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
  auto srv = slow_server(400ms);
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
  CHECK(contains(r.error().message, "no connection to " + srv.authority() +
                                        " within the deadline: 1 connections are open to it"));
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
  auto a = slow_server(100ms);
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
  boost::asio::io_context probe_ioc;
  boost::asio::ip::tcp::acceptor acc(probe_ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acc.local_endpoint().port();
  acc.close();
  auto dead = parse_url("https://127.0.0.1:" + std::to_string(port) + "/");
  REQUIRE(dead);
  for (int i = 0; i < 3; ++i) {
    auto r = loop.run(c.send(get_request(*dead), in(2000ms), Limits{}));
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
  auto slow_closing = slow_server(300ms, true);
  const auto rs = at_once(loop, c, std::vector<Request>(3, get(slow_closing)), 8000ms);
  for (const auto& r : rs) {
    INFO((r ? std::string() : r.error().message));
    CHECK(r.ok());
  }
  CHECK(slow_closing.connections() == 3);
  CHECK(c.conn_stats().waited == 2);
}
