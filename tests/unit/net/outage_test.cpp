// net/outage.hpp: origins that cannot be reached fail their calls at once, one probe at a time
// goes through after the backoff, and a connection made heals. First the memo alone (times
// passed in), then net::Client against real servers on 127.0.0.1: one whose connections hang
// before the TLS handshake, one that answers only after the deadline, one that answers 500,
// one that refuses.
#include <atomic>
#include <future>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include "common/host_lookup.hpp"
#include "common/origin_down.hpp"
#include "helpers.hpp"
#include "net/outage.hpp"

using namespace sigil;
using namespace sigil::net;
using namespace sigil::test;
using Outcome = OutageMemo::Outcome;
using MemoClock = OutageMemo::Clock;

namespace {

const std::string kA = "https://a.example:443";
const std::string kB = "https://b.example:443";

FailFastOptions opts(int after = 2) {
  FailFastOptions o;
  o.after = after;
  o.backoff = 1000ms;
  o.max_backoff = 3000ms;
  o.slow = 500ms;
  return o;
}

Error refused_connection() {
  return make_error(Errc::unavailable, "cannot connect to a.example:443: Connection refused");
}

// One attempt that goes and ends as `o`; false if the memo refused it.
bool attempt(OutageMemo& m, const std::string& origin, Outcome o, MemoClock::time_point now,
             bool operator_named = false) {
  auto t = m.before(origin, now);
  if (!t) return false;
  const Error e = refused_connection();
  m.after(origin, *t, o, o == Outcome::failed ? &e : nullptr, operator_named, now);
  return true;
}

}  // namespace

TEST_CASE("outage memo: off unless `after` is set") {
  OutageMemo m(opts(0));
  CHECK_FALSE(m.enabled());
  const auto t0 = MemoClock::now();
  for (int i = 0; i < 10; ++i) CHECK(attempt(m, kA, Outcome::failed, t0));
  CHECK(m.stats().remembered == 0);
}

TEST_CASE("outage memo: failures in a row take an origin down, and only that origin") {
  OutageMemo m(opts(2));
  const auto t0 = MemoClock::now();
  CHECK(attempt(m, kA, Outcome::failed, t0));
  CHECK(attempt(m, kA, Outcome::reached, t0));  // an answer in between: the count starts over
  CHECK(attempt(m, kA, Outcome::failed, t0));
  CHECK(m.stats().down == 0);
  CHECK(attempt(m, kA, Outcome::failed, t0));
  CHECK(m.stats().down == 1);
  CHECK(m.stats().went_down == 1);

  auto r = m.before(kA, t0 + 100ms);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unavailable);
  CHECK_THAT(r.error().message,
             Catch::Contains("cannot be reached: 2 attempts in a row could not connect") &&
                 Catch::Contains("Connection refused") && Catch::Contains("tried again in 900 ms"));
  const OriginDown* d = origin_down(r.error());
  REQUIRE(d != nullptr);
  CHECK(d->origin == kA);
  CHECK(d->failures == 2);
  CHECK(d->retry_in == 900ms);
  CHECK(m.stats().refused == 1);
  CHECK(attempt(m, kB, Outcome::reached, t0 + 100ms));  // another origin is not concerned
}

TEST_CASE("outage memo: one probe at a time after the backoff; an answer heals") {
  OutageMemo m(opts(1));
  const auto t0 = MemoClock::now();
  CHECK(attempt(m, kA, Outcome::failed, t0));
  CHECK_FALSE(m.before(kA, t0 + 999ms).ok());
  auto probe = m.before(kA, t0 + 1000ms);
  REQUIRE(probe.ok());
  CHECK(probe->probe);
  // While the probe is out, everyone else still fails at once.
  auto other = m.before(kA, t0 + 1500ms);
  REQUIRE_FALSE(other.ok());
  CHECK_THAT(other.error().message, Catch::Contains("another request is trying it now"));
  m.after(kA, *probe, Outcome::reached, nullptr, false, t0 + 1600ms);
  CHECK(m.stats().down == 0);
  CHECK(m.stats().remembered == 0);
  CHECK(attempt(m, kA, Outcome::reached, t0 + 1600ms));
}

TEST_CASE("outage memo: a failed probe doubles the wait, up to max_backoff") {
  OutageMemo m(opts(1));
  auto now = MemoClock::now();
  CHECK(attempt(m, kA, Outcome::failed, now));
  const std::chrono::milliseconds waits[] = {2000ms, 3000ms, 3000ms};
  now += 1000ms;
  for (auto wait : waits) {
    auto probe = m.before(kA, now);
    REQUIRE(probe.ok());
    REQUIRE(probe->probe);
    const Error e = refused_connection();
    m.after(kA, *probe, Outcome::failed, &e, false, now);
    CHECK_FALSE(m.before(kA, now + wait - 1ms).ok());
    now += wait;
  }
  CHECK(m.before(kA, now).ok());
  CHECK(m.stats().went_down == 1);  // one outage, however many probes failed
}

TEST_CASE("outage memo: a probe that says nothing lets the next request probe") {
  OutageMemo m(opts(1));
  const auto t0 = MemoClock::now();
  CHECK(attempt(m, kA, Outcome::failed, t0));
  auto probe = m.before(kA, t0 + 1000ms);
  REQUIRE(probe.ok());
  m.after(kA, *probe, Outcome::neutral, nullptr, false, t0 + 1001ms);  // cancelled, say
  auto next = m.before(kA, t0 + 1002ms);
  REQUIRE(next.ok());
  CHECK(next->probe);
}

TEST_CASE("outage memo: an answer to an attempt that went before the outage heals too") {
  OutageMemo m(opts(1));
  const auto t0 = MemoClock::now();
  auto early = m.before(kA, t0);
  REQUIRE(early.ok());
  CHECK(attempt(m, kA, Outcome::failed, t0));
  CHECK_FALSE(m.before(kA, t0 + 10ms).ok());
  m.after(kA, *early, Outcome::reached, nullptr, false, t0 + 20ms);
  CHECK(m.before(kA, t0 + 30ms).ok());
}

TEST_CASE("outage memo: what counts as no answer") {
  OutageMemo m(opts(1));
  const auto plenty = std::chrono::hours(1);
  const Error timeout = make_error(Errc::timeout, "connecting to a.example:443: deadline exceeded");
  // Only a wait counts, and only when the caller gave the attempt min_budget (3 s): a shorter
  // deadline (any client of the webhook may send ?timeout=; an address of several gets a share
  // of the time left) may be what cut it. A failure that came fast costs the next attempt
  // nothing either.
  CHECK(m.classify(timeout, 499ms, plenty, false) == Outcome::neutral);
  CHECK(m.classify(timeout, 500ms, plenty, false) == Outcome::failed);
  CHECK(m.classify(timeout, 2999ms, 2999ms, false) == Outcome::neutral);
  CHECK(m.classify(timeout, 3000ms, 3000ms, false) == Outcome::failed);
  CHECK(m.classify(refused_connection(), 1ms, plenty, false) == Outcome::neutral);
  CHECK(m.classify(refused_connection(), 600ms, plenty, false) == Outcome::failed);
  CHECK(m.classify(timeout, 600ms, plenty, true) == Outcome::neutral);  // cancelled
  // Every DNS slot taken is sigil's own state, not the host's.
  const Error busy = with_lookup_failure(make_error(Errc::unavailable, "busy"), "a.example",
                                         HostLookupFailure::Why::busy);
  CHECK(m.classify(busy, 600ms, plenty, false) == Outcome::neutral);
  const Error no_answer = with_lookup_failure(make_error(Errc::timeout, "no answer"), "a.example",
                                              HostLookupFailure::Why::no_answer);
  CHECK(m.classify(no_answer, 600ms, plenty, false) == Outcome::failed);
  CHECK(m.classify(make_error(Errc::too_large, "big"), 600ms, plenty, false) == Outcome::neutral);
  CHECK(m.classify(make_error(Errc::invalid_argument, "bad"), 600ms, plenty, false) ==
        Outcome::neutral);
}

TEST_CASE("outage memo: a call with little time left never gets the probe") {
  OutageMemo m(opts(1));
  const auto t0 = MemoClock::now();
  CHECK(attempt(m, kA, Outcome::failed, t0));
  auto short_call = m.before(kA, t0 + 1000ms, 2999ms);
  REQUIRE_FALSE(short_call.ok());
  CHECK(origin_down(short_call.error()) != nullptr);
  CHECK_FALSE(m.probing(kA));
  auto probe = m.before(kA, t0 + 1000ms, 3000ms);
  REQUIRE(probe.ok());
  CHECK(probe->probe);
}

TEST_CASE("outage memo: a late report of an earlier probe leaves the current one alone") {
  OutageMemo m(opts(1));
  const auto t0 = MemoClock::now();
  auto early = m.before(kA, t0);  // an attempt that went before the outage
  REQUIRE(early.ok());
  CHECK(attempt(m, kA, Outcome::failed, t0));
  auto first = m.before(kA, t0 + 1000ms);
  REQUIRE(first.ok());
  REQUIRE(first->probe);
  m.after(kA, *early, Outcome::reached, nullptr, false, t0 + 1001ms);  // healed by it
  CHECK(attempt(m, kA, Outcome::failed, t0 + 1002ms));                 // and down again
  auto second = m.before(kA, t0 + 2002ms);
  REQUIRE(second.ok());
  REQUIRE(second->probe);
  m.after(kA, *first, Outcome::neutral, nullptr, false, t0 + 2003ms);  // the first one, late
  CHECK(m.probing(kA));  // the second is still the probe: no second probe at once
  CHECK_FALSE(m.before(kA, t0 + 2004ms).ok());
}

TEST_CASE("outage memo: old failures start the count over; unasked entries are forgotten") {
  OutageMemo m(opts(2));
  auto now = MemoClock::now();
  CHECK(attempt(m, kA, Outcome::failed, now));
  now += OutageMemo::kFailureWindow + 1s;
  CHECK(attempt(m, kA, Outcome::failed, now));  // one, again: not two in a row
  CHECK(m.stats().down == 0);
  CHECK(attempt(m, kA, Outcome::failed, now + 1s));
  CHECK(m.stats().down == 1);
  // Nobody asks about it for ten minutes: forgotten (and asked again, it goes).
  CHECK(attempt(m, kB, Outcome::failed, now + 1s));
  const auto later = now + OutageMemo::kForget + 2s;
  CHECK(m.before(kB, later).ok());  // the sweep runs first
  CHECK(m.stats().down == 0);
  CHECK(m.stats().remembered <= 1);
}

TEST_CASE("outage memo: a probe that never reports is taken to be lost") {
  OutageMemo m(opts(1));
  const auto t0 = MemoClock::now();
  CHECK(attempt(m, kA, Outcome::failed, t0));
  auto probe = m.before(kA, t0 + 1000ms);
  REQUIRE(probe.ok());
  CHECK(m.probing(kA));
  CHECK_FALSE(m.before(kA, t0 + 1000ms + OutageMemo::kProbeLimit - 1s).ok());
  auto next = m.before(kA, t0 + 1000ms + OutageMemo::kProbeLimit);
  REQUIRE(next.ok());
  CHECK(next->probe);
}

TEST_CASE("outage memo: a pod author's dead hosts cannot push out the operator's registry") {
  FailFastOptions o = opts(1);
  o.max_origins = 8;
  OutageMemo m(o);
  auto now = MemoClock::now();
  const std::string acr = "https://myacr.azurecr.io:443";
  CHECK(attempt(m, acr, Outcome::failed, now, true));
  for (int i = 0; i < 500; ++i) {
    now += 1ms;  // all of it inside the registry's first backoff (1 s)
    CHECK(attempt(m, "https://dead" + std::to_string(i) + ".example:443", Outcome::failed, now));
    CHECK(m.stats().remembered <= 8);
  }
  CHECK(m.stats().remembered == 8);
  CHECK(m.stats().down == 8);
  CHECK(m.stats().down_listed == 1);
  CHECK_FALSE(m.before(acr, now).ok());  // still remembered as down
  // The newest of the pod's hosts are the ones remembered.
  CHECK_FALSE(m.before("https://dead499.example:443", now).ok());
  CHECK(m.before("https://dead0.example:443", now).ok());

  // Full of the operator's: a pod's host is not remembered at all, and pushes none out.
  FailFastOptions one = opts(1);
  one.max_origins = 1;
  OutageMemo full(one);
  CHECK(attempt(full, acr, Outcome::failed, now, true));
  CHECK(attempt(full, "https://dead.example:443", Outcome::failed, now));
  CHECK(full.before("https://dead.example:443", now).ok());
  CHECK_FALSE(full.before(acr, now).ok());
}

// ---- net::Client against real servers ------------------------------------------------------
// Margins are wide (a 2-core machine under ASan): failing attempts wait 800 ms against a `slow`
// of 100 ms, and probes have seconds.

namespace {

ClientOptions fail_fast_options(ClientOptions o = {}) {
  o.fail_fast.after = 2;
  o.fail_fast.backoff = 1000ms;
  o.fail_fast.max_backoff = 1000ms;
  o.fail_fast.slow = 100ms;
  o.fail_fast.min_budget = 500ms;
  return o;
}

FakeHttpOptions hanging_tls(const std::shared_ptr<std::atomic<bool>>& hang) {
  FakeHttpOptions o;
  o.tls = true;
  o.hang = hang;
  o.stall_for = 3000ms;
  return o;
}

// Two attempts (fail_fast.after) that cannot connect: srv's origin is down.
void take_down(Loop& loop, Client& c, const FakeHttpServer& srv) {
  for (int i = 0; i < 2; ++i) {
    REQUIRE_FALSE(loop.run(c.send(get_request(url_of(srv)), in(800ms), Limits{})).ok());
  }
  REQUIRE(c.outage_stats().down == 1);
}

}  // namespace

TEST_CASE("client: a registry that cannot be reached fails at once after two tries, then heals") {
  auto hang = std::make_shared<std::atomic<bool>>(true);
  FakeHttpServer srv([](const HttpRequest&) { return HttpReply::text(200, "ok"); },
                     hanging_tls(hang));
  Loop loop;
  Client c(loop.ioc.get_executor(), fail_fast_options(tls_options()));
  auto send = [&](std::chrono::milliseconds budget) {
    return loop.run(c.send(get_request(url_of(srv)), in(budget), Limits{}));
  };
  for (int i = 0; i < 2; ++i) {
    auto r = send(800ms);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::timeout);
  }
  CHECK(c.outage_stats().down == 1);
  const int tried = srv.connections();

  // Down: the calls fail at once (a 5 s budget against a host that would hold each 3 s: none
  // reaches it).
  for (int i = 0; i < 5; ++i) {
    auto r = send(5000ms);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unavailable);
    const OriginDown* d = origin_down(r.error());
    REQUIRE(d != nullptr);
    CHECK(d->origin == srv.origin());
  }
  CHECK(srv.connections() == tried);
  CHECK(c.outage_stats().refused == 5);

  // The host is back; after the backoff one call probes, connects, and all go again.
  hang->store(false);
  std::this_thread::sleep_for(1100ms);
  auto probe = send(5000ms);
  REQUIRE(probe.ok());
  CHECK(probe->status == 200);
  CHECK(c.outage_stats().down == 0);
  for (int i = 0; i < 3; ++i) REQUIRE(send(5000ms).ok());
  CHECK(srv.requests() == 4);
}

TEST_CASE("client: calls that come while the probe is out wait for it, and go when it connects") {
  auto hang = std::make_shared<std::atomic<bool>>(true);
  FakeHttpServer srv([](const HttpRequest&) { return HttpReply::text(200, "ok"); },
                     hanging_tls(hang));
  Loop loop(2);
  ClientOptions o = fail_fast_options(tls_options());
  o.fail_fast.backoff = 300ms;
  o.fail_fast.max_backoff = 300ms;
  o.fail_fast.probe_wait = 10000ms;
  Client c(loop.ioc.get_executor(), o);
  take_down(loop, c, srv);
  hang->store(false);
  std::this_thread::sleep_for(400ms);
  // Four calls at once, as one admission's concurrent reads: one probes, the others wait for
  // it and go as soon as it connects, well before their deadline (shorter than probe_wait, so
  // a waiter not woken would run out of time); none is refused.
  std::vector<std::future<Result<Response>>> calls;
  for (int i = 0; i < 4; ++i) {
    calls.push_back(std::async(std::launch::async, [&] {
      return loop.run(c.send(get_request(url_of(srv)), in(4000ms), Limits{}));
    }));
  }
  for (auto& f : calls) {
    auto r = f.get();
    INFO((r ? std::string() : r.error().message));
    CHECK(r.ok());
  }
  CHECK(c.outage_stats().refused == 0);
}

TEST_CASE("client: a call with less than min_budget left does not get the probe") {
  auto hang = std::make_shared<std::atomic<bool>>(true);
  FakeHttpServer srv([](const HttpRequest&) { return HttpReply::text(200, "ok"); },
                     hanging_tls(hang));
  Loop loop;
  ClientOptions o = fail_fast_options(tls_options());
  o.fail_fast.backoff = 300ms;
  o.fail_fast.max_backoff = 300ms;
  Client c(loop.ioc.get_executor(), o);
  take_down(loop, c, srv);
  hang->store(false);
  std::this_thread::sleep_for(400ms);
  const int tried = srv.connections();
  // Due for a probe, but this call could not tell a host that is down from its own deadline.
  auto short_call = loop.run(c.send(get_request(url_of(srv)), in(200ms), Limits{}));
  REQUIRE_FALSE(short_call.ok());
  CHECK(origin_down(short_call.error()) != nullptr);
  CHECK(srv.connections() == tried);
  auto probe = loop.run(c.send(get_request(url_of(srv)), in(5000ms), Limits{}));
  REQUIRE(probe.ok());
  CHECK(c.outage_stats().down == 0);
}

TEST_CASE("client: a probe that connects heals the origin, however slow its answer") {
  auto hang = std::make_shared<std::atomic<bool>>(true);
  FakeHttpServer srv(
      [](const HttpRequest&, HttpConn& conn) -> boost::asio::awaitable<bool> {
        co_await conn.sleep(3000ms);  // a slow path
        co_return co_await conn.reply(HttpReply::text(200, "ok"));
      },
      hanging_tls(hang));
  Loop loop;
  Client c(loop.ioc.get_executor(), fail_fast_options(tls_options()));
  take_down(loop, c, srv);
  hang->store(false);
  std::this_thread::sleep_for(1100ms);
  auto probe = loop.run(c.send(get_request(url_of(srv)), in(1500ms), Limits{}));
  REQUIRE_FALSE(probe.ok());
  CHECK(probe.error().code == Errc::timeout);  // the answer came too late...
  CHECK(c.outage_stats().down == 0);           // ...but the host was reached
}

TEST_CASE("client: what comes after connecting never takes an origin down") {
  Loop loop;
  SECTION("a 500 between two failures starts the count over") {
    auto hang = std::make_shared<std::atomic<bool>>(true);
    FakeHttpServer srv([](const HttpRequest&) { return HttpReply::text(500, "broken"); },
                       hanging_tls(hang));
    Client c(loop.ioc.get_executor(), fail_fast_options(tls_options()));
    auto send = [&] { return loop.run(c.send(get_request(url_of(srv)), in(800ms), Limits{})); };
    REQUIRE_FALSE(send().ok());  // one failure
    hang->store(false);
    auto r = send();
    REQUIRE(r.ok());
    CHECK(r->status == 500);  // reached: the count starts over
    hang->store(true);
    srv.drop_connections();
    REQUIRE_FALSE(send().ok());  // one failure again, not two in a row
    CHECK(c.outage_stats().went_down == 0);
    CHECK(c.outage_stats().down == 0);
  }
  SECTION("an answer that comes after the deadline (a slow path, or a short ?timeout=)") {
    FakeHttpServer srv([](const HttpRequest&, HttpConn& conn) -> boost::asio::awaitable<bool> {
      co_await conn.sleep(3000ms);
      co_return co_await conn.reply(HttpReply::text(200, "ok"));
    });
    Client c(loop.ioc.get_executor(), fail_fast_options());
    for (int i = 0; i < 4; ++i) {
      auto r = loop.run(c.send(get_request(url_of(srv)), in(800ms), Limits{}));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == Errc::timeout);
    }
    CHECK(srv.requests() == 4);
    CHECK(c.outage_stats().went_down == 0);
  }
}

TEST_CASE("client: failures that come fast, or under a short deadline, never take it down") {
  Loop loop;
  SECTION("a refused connection, retried") {
    uint16_t port;
    {
      boost::asio::ip::tcp::acceptor a(loop.ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
      port = a.local_endpoint().port();
    }
    Client c(loop.ioc.get_executor(), fail_fast_options());
    auto req = get_request(*parse_url("http://127.0.0.1:" + std::to_string(port)));
    req.retry.max_retries = 3;
    req.retry.backoff_base = 1ms;
    for (int i = 0; i < 3; ++i) {
      auto r = loop.run(c.send(req, in(2000ms), Limits{}));
      REQUIRE_FALSE(r.ok());
      CHECK(origin_down(r.error()) == nullptr);
    }
    CHECK(c.outage_stats().went_down == 0);
  }
  SECTION("a deadline shorter than min_budget, on a host that cannot be reached") {
    // As a client of the webhook port would send, or a read late in an admission: the host
    // did not connect within `slow`, but the deadline may be what cut it.
    auto hang = std::make_shared<std::atomic<bool>>(true);
    FakeHttpServer srv([](const HttpRequest&) { return HttpReply::text(200, "ok"); },
                       hanging_tls(hang));
    ClientOptions o = fail_fast_options(tls_options());
    o.fail_fast.min_budget = 2000ms;
    Client c(loop.ioc.get_executor(), o);
    for (int i = 0; i < 4; ++i) {
      auto r = loop.run(c.send(get_request(url_of(srv)), in(400ms), Limits{}));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == Errc::timeout);
    }
    CHECK(c.outage_stats().went_down == 0);
  }
}

TEST_CASE("client: the operator's listing reaches the memo") {
  // One origin remembered at most: the listed host's entry stays, a pod's host gets none.
  auto hang = std::make_shared<std::atomic<bool>>(true);
  FakeHttpServer listed([](const HttpRequest&) { return HttpReply::text(200, "ok"); },
                        hanging_tls(hang));
  FakeHttpServer pod([](const HttpRequest&) { return HttpReply::text(200, "ok"); },
                     hanging_tls(hang));
  Loop loop;
  ClientOptions o = fail_fast_options(tls_options());
  o.fail_fast.max_origins = 1;
  o.fail_fast.backoff = 10000ms;
  o.fail_fast.max_backoff = 10000ms;
  Client c(loop.ioc.get_executor(), o);
  auto send = [&](const FakeHttpServer& s, bool operator_listed) {
    auto req = get_request(url_of(s));
    req.operator_named = operator_listed;
    req.operator_listed = operator_listed;
    return loop.run(c.send(req, in(800ms), Limits{}));
  };
  for (int i = 0; i < 2; ++i) REQUIRE_FALSE(send(listed, true).ok());
  for (int i = 0; i < 3; ++i) {
    auto r = send(pod, false);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::timeout);  // never remembered: each one tried
  }
  auto r = send(listed, true);
  REQUIRE_FALSE(r.ok());
  CHECK(origin_down(r.error()) != nullptr);
  CHECK(c.outage_stats().down_listed == 1);
}
