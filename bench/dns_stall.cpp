// bench_dns_stall: what a pod-named host whose DNS never answers costs sigil's registry client.
//
// A pod author chooses image names, and so the DNS server asked for them. A lookup its call has
// abandoned (the admission's deadline) still holds one of the client's lookup slots until c-ares
// gives up on it, and sends the cluster's DNS a query per round and address family meanwhile.
// This measures, with net::ClientOptions' defaults against a real DNS server on 127.0.0.1 that
// never answers (tests/support/cpp/fake_dns.hpp):
//   - how long an abandoned lookup holds its slot, and the queries it sends;
//   - from that, the new stalled names a second that keep every shared slot taken;
//   - N concurrent calls naming one host whose answer comes late: the lookups (queries) made;
//   - one call with the registry client's retry policy and an admission's deadline naming a
//     stalled host: how long until it fails, and the queries it cost.
// --try-timeout-ms and --attempts stand in for other settings (c-ares' own defaults: 5000 and 4,
// which take 75 s per run).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "fake_dns.hpp"
#include "fake_http.hpp"
#include "net/client.hpp"
#include "registry/http_client.hpp"
#include "run_coro.hpp"

using namespace sigil;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

test::HttpReply hello(const test::HttpRequest&) {
  return test::HttpReply::text(200, "hello");
}

net::Url url_at(const std::string& host, uint16_t port) {
  return *net::parse_url("http://" + host + ":" + std::to_string(port) + "/");
}

Deadline in(std::chrono::milliseconds d) {
  return Clock::now() + d;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_dns_stall: the cost of a host whose DNS never answers"};
  int try_timeout_ms = static_cast<int>(net::ClientOptions{}.dns_try_timeout.count());
  int attempts = net::ClientOptions{}.dns_attempts;
  int concurrent = 200;
  app.add_option("--try-timeout-ms", try_timeout_ms, "dns_try_timeout")
      ->check(CLI::Range(1, 30000));
  app.add_option("--attempts", attempts, "dns_attempts")->check(CLI::Range(1, 16));
  app.add_option("--concurrent", concurrent, "calls naming one late host")
      ->check(CLI::Range(1, 5000));
  CLI11_PARSE(app, argc, argv);

  test::FakeDns dns;
  test::FakeHttpServer srv{hello};
  test::Loop loop;
  net::ClientOptions o;
  o.dns_servers = dns.servers();
  o.dns_try_timeout = std::chrono::milliseconds(try_timeout_ms);
  o.dns_attempts = attempts;
  const size_t shared_slots = o.max_dns_lookups;
  o.max_dns_lookups = 1;  // one slot, so that its release is seen
  net::Client c(loop.ioc.get_executor(), o);
  if (!c.init_status()) {
    std::fprintf(stderr, "bench_dns_stall: %s\n", c.init_status().error().message.c_str());
    return 1;
  }

  // 1. One stalled name, abandoned by its call after 50 ms; then a good name is asked every
  // 10 ms until the slot is free again.
  const auto start = Clock::now();
  auto stalled =
      loop.run(c.send(net::get_request(url_at("slow.test", srv.port())), in(50ms), net::Limits{}));
  if (stalled.ok()) {
    std::fprintf(stderr, "bench_dns_stall: the stalled name resolved\n");
    return 1;
  }
  double held = -1;
  while (Clock::now() - start < 200s) {
    auto r =
        loop.run(c.send(net::get_request(url_at("good.test", srv.port())), in(2s), net::Limits{}));
    if (r.ok()) {
      held = std::chrono::duration<double>(Clock::now() - start).count();
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  const int queries = dns.queries("slow.test");

  // 2. N concurrent calls naming one host whose DNS answers after 300 ms.
  dns.add("late.test");
  std::vector<std::promise<bool>> done(static_cast<size_t>(concurrent));
  for (auto& d : done) {
    boost::asio::co_spawn(
        loop.ioc,
        [&c, &d, port = srv.port()]() -> boost::asio::awaitable<void> {
          auto r =
              co_await c.send(net::get_request(url_at("late.test", port)), in(10s), net::Limits{});
          d.set_value(r.ok());
        },
        boost::asio::detached);
  }
  int ok = 0;
  for (auto& d : done) ok += d.get_future().get() ? 1 : 0;

  // 3. A stalled name in one admission: a call with registry::ClientOptions' retry policy (its
  // defaults: 3 retries, 100 ms backoff doubling) and the admission's deadline (10 s less the
  // answer slack).
  net::Request retried = net::get_request(url_at("slow-retried.test", srv.port()));
  const registry::ClientOptions registry_defaults;
  retried.retry.max_retries = registry_defaults.max_retries;
  retried.retry.backoff_base = registry_defaults.backoff_base;
  retried.retry.max_backoff = registry_defaults.max_backoff;
  const auto retried_start = Clock::now();
  const bool retried_ok = loop.run(c.send(retried, in(9s), net::Limits{})).ok();
  const double retried_s = std::chrono::duration<double>(Clock::now() - retried_start).count();

  std::printf("dns.try_timeout_ms %d\n", try_timeout_ms);
  std::printf("dns.attempts %d\n", attempts);
  std::printf("stall.slot_held_s %.2f\n", held);
  std::printf("stall.queries %d\n", queries);
  std::printf("stall.names_per_s_to_hold_%zu_slots %.1f\n", shared_slots,
              held > 0 ? static_cast<double>(shared_slots) / held : -1.0);
  std::printf("late.calls %d\n", concurrent);
  std::printf("late.ok %d\n", ok);
  std::printf("late.queries %d\n", dns.queries("late.test"));
  std::printf("admission.failed_after_s %.2f\n", retried_s);
  std::printf("admission.queries %d\n", dns.queries("slow-retried.test"));
  return held > 0 && ok == concurrent && !retried_ok ? 0 : 1;
}
