// Host names through c-ares, against a real DNS server on 127.0.0.1 (RFC 1035 over UDP): a
// name whose server never answers must hold up no other lookup and no call past its deadline;
// lookups in flight are bounded; a cancellation ends a lookup; a client destroyed with
// lookups still in flight leaks nothing (ASan's leak check in the sanitizer build).
#include <stdlib.h>

#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <catch2/catch.hpp>

#include "common/host_lookup.hpp"
#include "fake_dns.hpp"
#include "helpers.hpp"

using namespace sigil;
using namespace sigil::net;
using namespace sigil::test;

namespace {

HttpReply hello(const HttpRequest&) {
  return HttpReply::text(200, "hello");
}

Url url_at(const std::string& host, uint16_t port) {
  return *parse_url("http://" + host + ":" + std::to_string(port) + "/");
}

// c.send(GET url) started on `ex` without waiting for it, its result delivered to `out`.
template <class Token>
void start_send(const boost::asio::any_io_executor& ex, Client& c, Url url, Deadline deadline,
                std::promise<Result<Response>>& out, Token token) {
  boost::asio::co_spawn(
      ex,
      [&c, url = std::move(url), deadline, &out]() -> boost::asio::awaitable<void> {
        out.set_value(co_await c.send(get_request(url), deadline, Limits{}));
      },
      std::move(token));
}

// The test's DNS server, an HTTP server on 127.0.0.1 behind its names, and client options that
// send lookups to that DNS server.
struct DnsSetup {
  FakeDns dns;
  FakeHttpServer srv{hello};
  ClientOptions options() const {
    ClientOptions o;
    o.dns_servers = dns.servers();
    return o;
  }
  Url url(const std::string& host) const { return url_at(host, srv.port()); }
  // A client that read a pod-like resolv.conf: search domains corp.svc.test and svc.test, and
  // `res_options` ("ndots:5"). c-ares reads them from /etc/resolv.conf, or from LOCALDOMAIN and
  // RES_OPTIONS as glibc does, which is how they are set here.
  std::unique_ptr<Client> client_with_search(Loop& loop, const char* res_options) const {
    ::setenv("LOCALDOMAIN", "corp.svc.test svc.test", 1);
    ::setenv("RES_OPTIONS", res_options, 1);
    auto c = std::make_unique<Client>(loop.ioc.get_executor(), options());
    ::unsetenv("LOCALDOMAIN");
    ::unsetenv("RES_OPTIONS");
    return c;
  }
};

}  // namespace

TEST_CASE(
    "dns: a name whose server never answers holds up no other lookup, and only until "
    "its deadline") {
  DnsSetup s;
  Loop loop;
  ClientOptions o = s.options();
  {
    Client c(loop.ioc.get_executor(), o);
    REQUIRE(c.init_status().ok());
    // The stalled lookup starts first and stays pending...
    std::promise<Result<Response>> slow;
    auto slow_done = slow.get_future();
    start_send(loop.ioc.get_executor(), c, s.url("slow.test"), in(1500ms), slow,
               boost::asio::detached);
    while (s.dns.queries("slow.test") == 0) std::this_thread::sleep_for(5ms);
    // ...while a name that answers resolves and is fetched meanwhile: one lookup that never
    // ends must not queue the others behind it (Asio's resolver runs them all on one thread).
    auto good = loop.run(c.send(get_request(s.url("good.test")), in(1000ms), Limits{}));
    INFO((good ? std::string() : good.error().message));
    REQUIRE(good.ok());
    CHECK(good->body == "hello");
    CHECK(slow_done.wait_for(0ms) == std::future_status::timeout);
    // The stalled one ends at its deadline, as a timeout that names the lookup.
    auto r = slow_done.get();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::timeout);
    CHECK(contains(r.error().message, "resolving slow.test"));
    CHECK(s.srv.connections() == 1);
    // The client goes with the abandoned lookup still in c-ares' hands: nothing may leak or
    // run on freed state (the sanitizer build checks both).
  }
  std::this_thread::sleep_for(20ms);
}

TEST_CASE("dns: a name that does not exist is unavailable and says so; /etc/hosts is read") {
  DnsSetup s;
  Loop loop;
  ClientOptions o = s.options();
  Client c(loop.ioc.get_executor(), o);
  auto nx = loop.run(c.send(get_request(s.url("nx.test")), in(2s), Limits{}));
  REQUIRE_FALSE(nx.ok());
  CHECK(nx.error().code == Errc::unavailable);
  CHECK(contains(nx.error().message, "cannot resolve host nx.test: no such host"));
  // Typed, for the denial's words (verify/engine.cpp): which name, and that it does not exist.
  const HostLookupFailure* why = host_lookup_failure(nx.error());
  REQUIRE(why != nullptr);
  CHECK(why->host == "nx.test");
  CHECK(why->why == HostLookupFailure::Why::no_such_host);
  CHECK(s.dns.queries("nx.test") >= 1);
  // localhost comes from /etc/hosts, as getaddrinfo would find it, without asking the server.
  auto local = loop.run(c.send(get_request(s.url("localhost")), in(2s), Limits{}));
  INFO((local ? std::string() : local.error().message));
  REQUIRE(local.ok());
  CHECK(s.dns.queries("localhost") == 0);
}

TEST_CASE("dns: lookups in flight are bounded, abandoned ones included") {
  DnsSetup s;
  Loop loop;
  ClientOptions o = s.options();
  o.max_dns_lookups = 2;
  Client c(loop.ioc.get_executor(), o);
  for (const char* host : {"slow1.test", "slow2.test"}) {  // two names: one name shares a slot
    auto r = loop.run(c.send(get_request(s.url(host)), in(100ms), Limits{}));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::timeout);
    const HostLookupFailure* why = host_lookup_failure(r.error());
    REQUIRE(why != nullptr);
    CHECK(why->host == host);
    CHECK(why->why == HostLookupFailure::Why::no_answer);
  }
  // Both stalled lookups were abandoned at their deadline, but c-ares still waits for them:
  // a third lookup fails at once instead of adding to the pile.
  CHECK(c.dns_stats().in_flight == 2);
  CHECK(c.dns_stats().refused == 0);
  auto r = loop.run(c.send(get_request(s.url("good.test")), in(2s), Limits{}));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unavailable);
  CHECK(contains(r.error().message, "2 DNS lookups are already in flight"));
  const HostLookupFailure* busy = host_lookup_failure(r.error());
  REQUIRE(busy != nullptr);
  CHECK(busy->host == "good.test");
  CHECK(busy->why == HostLookupFailure::Why::busy);
  // What the metrics read (sigil_dns_lookups_*).
  const DnsStats st = c.dns_stats();
  CHECK(st.in_flight == 2);
  CHECK(st.reserved_in_flight == 0);
  CHECK(st.max_lookups == 2);
  CHECK(st.refused == 1);
  // An address needs no lookup.
  CHECK(loop.run(c.send(get_request(s.url("127.0.0.1")), in(2s), Limits{})).ok());
}

TEST_CASE("dns: names a pod author chooses cannot take the slots reserved for the operator's") {
  DnsSetup s;
  Loop loop;
  ClientOptions o = s.options();
  o.max_dns_lookups = 2;
  o.reserved_dns_lookups = 1;
  std::mutex mu;
  std::vector<Exchange> seen;  // what the metrics hook is told
  o.observer = [&](const Exchange& e) {
    std::lock_guard lock(mu);
    seen.push_back(e);
  };
  Client c(loop.ioc.get_executor(), o);
  auto get = [&](const std::string& host, bool reserved, std::chrono::milliseconds d) {
    Request r = get_request(s.url(host));
    r.operator_named = reserved;
    return loop.run(c.send(std::move(r), in(d), Limits{}));
  };
  // Two names whose DNS never answers fill the shared slots (abandoned at their deadlines,
  // still in c-ares' hands)...
  for (const char* host : {"slow1.test", "slow2.test"}) {
    auto r = get(host, false, 100ms);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::timeout);
  }
  // ...so another such name is refused at once...
  auto refused = get("good.test", false, 2s);
  REQUIRE_FALSE(refused.ok());
  CHECK(contains(refused.error().message, "2 DNS lookups are already in flight"));
  // ...while a request on the operator's behalf still resolves, in its reserved slot.
  auto mine = get("good.test", true, 2s);
  INFO((mine ? std::string() : mine.error().message));
  REQUIRE(mine.ok());
  CHECK(mine->body == "hello");
  {
    // Its exchange says it was made on the operator's behalf; the refused one's does not.
    std::lock_guard lock(mu);
    REQUIRE(seen.size() >= 2);
    CHECK(seen.back().status == 200);
    CHECK(seen.back().operator_named);
    CHECK_FALSE(seen[seen.size() - 2].operator_named);
  }
  // The reserved slots are bounded too: once the one slot holds a stalled lookup, a reserved
  // request finds every slot taken (another name: good.test's connection is pooled now, and a
  // pooled connection needs no lookup).
  auto stalled = get("slow3.test", true, 100ms);
  REQUIRE_FALSE(stalled.ok());
  CHECK(stalled.error().code == Errc::timeout);
  s.dns.add("other.test");
  auto full = get("other.test", true, 2s);
  REQUIRE_FALSE(full.ok());
  CHECK(contains(full.error().message, "3 DNS lookups are already in flight"));
}

TEST_CASE("dns: a cancellation ends a lookup that would never end") {
  DnsSetup s;
  Loop loop;
  ClientOptions o = s.options();
  Client c(loop.ioc.get_executor(), o);
  boost::asio::cancellation_signal sig;
  std::promise<Result<Response>> done;
  auto fut = done.get_future();
  auto strand = boost::asio::make_strand(loop.ioc);
  start_send(strand, c, s.url("slow.test"), in(10s), done,
             boost::asio::bind_cancellation_slot(sig.slot(), boost::asio::detached));
  while (s.dns.queries("slow.test") == 0) std::this_thread::sleep_for(5ms);
  boost::asio::post(strand, [&sig] { sig.emit(boost::asio::cancellation_type::terminal); });
  REQUIRE(fut.wait_for(5s) == std::future_status::ready);
  auto r = fut.get();
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "resolving slow.test: cancelled"));
}

TEST_CASE("dns: a servers list c-ares cannot read fails the client, not the process") {
  Loop loop;
  ClientOptions o;
  o.dns_servers = "not an address";
  Client c(loop.ioc.get_executor(), o);
  REQUIRE_FALSE(c.init_status().ok());
  CHECK(contains(c.init_status().error().message, "DNS servers 'not an address'"));
  // So do timings c-ares would take as "its defaults" (0) or never end.
  using Timing = std::pair<std::chrono::milliseconds, int>;
  for (auto [timeout, attempts] : {Timing{0ms, 2}, Timing{1000ms, 0}, Timing{2h, 2}}) {
    ClientOptions t;
    t.dns_try_timeout = timeout;
    t.dns_attempts = attempts;
    Client bad(loop.ioc.get_executor(), t);
    REQUIRE_FALSE(bad.init_status().ok());
    CHECK(contains(bad.init_status().error().message, "the try timeout must be in (0, 1h]"));
  }
}

TEST_CASE("dns: search domains and ndots apply as getaddrinfo applies them (a pod's resolv.conf)") {
  // Kubernetes gives pods `search <ns>.svc.cluster.local svc.cluster.local cluster.local` and
  // `options ndots:5`.
  DnsSetup s;
  Loop loop;
  auto client = s.client_with_search(loop, "ndots:5");
  Client& c = *client;
  // A short name found through the first search domain.
  auto r = loop.run(c.send(get_request(s.url("registry")), in(2s), Limits{}));
  INFO((r ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(s.dns.queries("registry.corp.svc.test") >= 1);
  // A name with fewer dots than ndots: the search domains first, then the name as written.
  auto g = loop.run(c.send(get_request(s.url("good.test")), in(2s), Limits{}));
  REQUIRE(g.ok());
  CHECK(s.dns.queries("good.test.corp.svc.test") >= 1);
  CHECK(s.dns.queries("good.test.svc.test") >= 1);
  CHECK(s.dns.queries("good.test") >= 1);
}

TEST_CASE("dns: a name that never answers holds its slot for sigil's tries, not c-ares' 75 s") {
  // c-ares' own defaults (5 s, 4 rounds, doubling) keep such a lookup, and its slot, for 75 s
  // and send the cluster's DNS 8 queries: a pod author naming a few new such hosts a second
  // would hold every slot. Ours: 100 ms, then 200 ms, and two queries (A, AAAA) per round.
  DnsSetup s;
  Loop loop;
  ClientOptions o = s.options();
  o.max_dns_lookups = 1;
  o.dns_try_timeout = 100ms;
  o.dns_attempts = 2;
  Client c(loop.ioc.get_executor(), o);
  auto stalled = loop.run(c.send(get_request(s.url("slow.test")), in(50ms), Limits{}));
  REQUIRE_FALSE(stalled.ok());
  CHECK(stalled.error().code == Errc::timeout);
  // Abandoned by its call, the lookup still holds the one slot...
  auto refused = loop.run(c.send(get_request(s.url("good.test")), in(2s), Limits{}));
  REQUIRE_FALSE(refused.ok());
  CHECK(contains(refused.error().message, "1 DNS lookups are already in flight"));
  // ...until c-ares gives up on it, after its two rounds: then the slot is free again.
  Result<Response> freed = refused;
  for (int i = 0; i < 100 && !freed.ok(); ++i) {
    std::this_thread::sleep_for(50ms);
    freed = loop.run(c.send(get_request(s.url("good.test")), in(2s), Limits{}));
  }
  INFO((freed ? std::string() : freed.error().message));
  REQUIRE(freed.ok());
  CHECK(s.dns.queries("slow.test") == 4);
  CHECK(c.dns_stats().in_flight == 0);
}

TEST_CASE("dns: concurrent lookups of one name share one query and one slot") {
  DnsSetup s;
  FakeHttpServer other{hello};  // the same name on a second port: each waiter gets its own
  s.dns.add("late.test");       // answered 300 ms after the question
  Loop loop;
  ClientOptions o = s.options();
  o.max_dns_lookups = 1;
  Client c(loop.ioc.get_executor(), o);
  constexpr int kCalls = 8;
  std::vector<std::promise<Result<Response>>> done(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    const Url u = i % 2 ? url_at("late.test", other.port()) : s.url("late.test");
    start_send(loop.ioc.get_executor(), c, u, in(5s), done[i], boost::asio::detached);
  }
  for (auto& d : done) {
    auto fut = d.get_future();
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    auto r = fut.get();
    INFO((r ? std::string() : r.error().message));
    REQUIRE(r.ok());
    CHECK(r->body == "hello");
  }
  CHECK(s.srv.connections() == kCalls / 2);
  CHECK(other.connections() == kCalls / 2);
  // One lookup: one A and one AAAA question, where eight lookups would have asked 16 (and
  // seven of them would have found the one slot taken).
  CHECK(s.dns.queries("late.test") == 2);
  CHECK(c.dns_stats().joined == kCalls - 1);
  CHECK(c.dns_stats().refused == 0);
}

TEST_CASE("dns: with ndots 1 (the chart's), a name with a dot is asked as written first") {
  // What the chart's dnsConfig relies on: myacr.azurecr.io costs one round, not one per search
  // domain first; a name without a dot still goes through the search domains.
  DnsSetup s;
  s.dns.add("dotless.corp.svc.test");
  Loop loop;
  auto client = s.client_with_search(loop, "ndots:1");
  Client& c = *client;
  auto g = loop.run(c.send(get_request(s.url("good.test")), in(2s), Limits{}));
  INFO((g ? std::string() : g.error().message));
  REQUIRE(g.ok());
  CHECK(s.dns.queries("good.test") >= 1);
  CHECK(s.dns.queries("good.test.corp.svc.test") == 0);
  CHECK(s.dns.queries("good.test.svc.test") == 0);
  auto d = loop.run(c.send(get_request(s.url("dotless")), in(2s), Limits{}));
  INFO((d ? std::string() : d.error().message));
  REQUIRE(d.ok());
  CHECK(s.dns.queries("dotless.corp.svc.test") >= 1);
}

TEST_CASE(
    "dns: a failed lookup of a pod's name is not started again by the call's retries; a "
    "refused one, and the operator's, are") {
  // For a name a pod author chose, c-ares' rounds (ClientOptions::dns_attempts) are the only
  // retries a lookup gets: a call's retry policy starting a failed lookup again would repeat its
  // queries, and hold a slot for another full timeout, per retry. A stalled name named in a pod
  // then cost the admission's whole deadline and (1 + max_retries) lookups.
  DnsSetup s;
  Loop loop;
  ClientOptions o = s.options();
  o.dns_try_timeout = 150ms;
  o.dns_attempts = 1;
  o.max_dns_lookups = 1;
  Client c(loop.ioc.get_executor(), o);
  auto send = [&](const std::string& host, int retries, bool operator_named = false) {
    Request req = get_request(s.url(host));
    req.operator_named = operator_named;
    req.retry.max_retries = retries;
    req.retry.backoff_base = 100ms;
    return loop.run(c.send(req, in(3s), Limits{}));
  };
  // The queries of one lookup, without retries, for each kind of failure; then with three.
  for (const char* kind : {"nx", "slow"}) {
    const std::string once = std::string(kind) + "-once.test";
    const std::string retried = std::string(kind) + "-retried.test";
    REQUIRE_FALSE(send(once, 0).ok());
    const auto r = send(retried, 3);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unavailable);
    INFO(kind << ": " << r.error().message);
    CHECK(s.dns.queries(once) >= 1);
    CHECK(s.dns.queries(retried) == s.dns.queries(once));
  }
  // The operator's registries get a new lookup after a timeout, inside the deadline; never
  // after "no such host".
  REQUIRE_FALSE(send("slow-operator.test", 3, true).ok());
  CHECK(s.dns.queries("slow-operator.test") > s.dns.queries("slow-once.test"));
  REQUIRE_FALSE(send("nx-operator.test", 3, true).ok());
  CHECK(s.dns.queries("nx-operator.test") == s.dns.queries("nx-once.test"));
  // Refused because the one slot is taken (by a stalled lookup, abandoned at 20 ms, that
  // c-ares ends at 150 ms): the call's backoff (at least 50 + 100 + 200 ms) outlasts it.
  REQUIRE_FALSE(loop.run(c.send(get_request(s.url("slow-holder.test")), in(20ms), Limits{})).ok());
  const auto refused_before = c.dns_stats().refused;
  const auto r = send("good.test", 3);
  INFO((r ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(c.dns_stats().refused > refused_before);
}

TEST_CASE("dns: calls that gave up on a lookup that never ends do not pile up in its waiters") {
  // A pod author can name one host whose DNS never answers in admission after admission: each
  // joins the lookup in flight and gives up at its deadline. The lookup keeps a (weak) entry
  // per call until it ends, so the entries of calls that gave up are pruned as more join.
  DnsSetup s;
  Loop loop;
  ClientOptions o = s.options();
  o.dns_try_timeout = 10s;  // outlives the test: one lookup for every call below
  o.dns_attempts = 1;
  Client c(loop.ioc.get_executor(), o);
  constexpr int kCalls = 300;
  for (int i = 0; i < kCalls; ++i) {
    auto r = loop.run(c.send(get_request(s.url("slow-burst.test")), in(5ms), Limits{}));
    REQUIRE_FALSE(r.ok());
  }
  const DnsStats d = c.dns_stats();
  CHECK(d.in_flight == 1);
  CHECK(d.joined >= kCalls - 20);  // (a call that times out before it asks does not join)
  CHECK(d.waiting >= 1);
  CHECK(d.waiting <= 128);  // pruned at 64, then at twice what is left
  CHECK(s.dns.queries("slow-burst.test") == 2);
}

namespace {

// A TCP listener on address:port that never accepts, its one-entry queue filled: the kernel
// drops further SYNs, as for a host that is down behind a router.
struct DroppingListener {
  int fd = -1;
  std::vector<int> fillers;
  DroppingListener(uint32_t address, uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(address);
    a.sin_port = htons(port);
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 0) == 0);
    for (int i = 0; i < 3; ++i) {
      const int f = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      (void)::connect(f, reinterpret_cast<sockaddr*>(&a), sizeof a);
      fillers.push_back(f);
    }
    std::this_thread::sleep_for(100ms);  // the first completes; the queue is full
  }
  ~DroppingListener() {
    for (const int f : fillers) ::close(f);
    ::close(fd);
  }
  DroppingListener(const DroppingListener&) = delete;
  DroppingListener& operator=(const DroppingListener&) = delete;
};

}  // namespace

TEST_CASE("dns: of a host's addresses, one that drops connections costs its share of the time") {
  // Each address gets an equal share of the time left, at least 2 s: here the first of two gets
  // 3 s of 6, and the second, which answers, is then tried. Before, the first took all 6 s.
  DnsSetup s;
  DroppingListener dead(0x7f000002, s.srv.port());  // 127.0.0.2, the port of the good server
  s.dns.add("two.test", {0x7f000002, INADDR_LOOPBACK});
  Loop loop;
  Client c(loop.ioc.get_executor(), s.options());
  const auto start = std::chrono::steady_clock::now();
  auto r = loop.run(c.send(get_request(s.url("two.test")), in(6s), Limits{}));
  const auto took = std::chrono::steady_clock::now() - start;
  INFO((r ? std::string() : r.error().message));
  REQUIRE(r.ok());
  CHECK(r->body == "hello");
  // The dead address was tried first (else this test shows nothing), for about its share.
  CHECK(took >= 2500ms);
}
