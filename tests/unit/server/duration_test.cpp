#include <catch2/catch.hpp>

#include "server/duration.hpp"
#include "server/server.hpp"

using namespace std::chrono_literals;
using sigil::server::parse_go_duration;

TEST_CASE("Go durations the API server sends parse exactly", "[duration]") {
  auto [text, expected] = GENERATE(table<const char*, std::chrono::nanoseconds>({
      {"10s", 10s},
      {"30s", 30s},
      {"1m", 1min},
      {"500ms", 500ms},
      {"1m30s", 90s},
      {"1.5s", 1500ms},
      {".5s", 500ms},
      {"1h", 1h},
      {"2h45m", 2h + 45min},
      {"100us", 100us},
      {"100\xC2\xB5s", 100us},
      {"7ns", 7ns},
      {"0", 0ns},
      {"0s", 0ns},
  }));
  CAPTURE(text);
  auto d = parse_go_duration(text);
  REQUIRE(d.ok());
  CHECK(*d == expected);
}

TEST_CASE("malformed Go durations are rejected", "[duration]") {
  const char* text =
      GENERATE("", "10", "s", "-1s", "+1s", "1.s.", "10 s", "10S", "1d", "1sx", "ms", ".s", "1..5s",
               "99999999999999999999s", "9999999h", "10s ", " 10s", "1e3s", "0x10s");
  CAPTURE(text);
  auto d = parse_go_duration(text);
  CHECK_FALSE(d.ok());
}

TEST_CASE("listen addresses", "[listen]") {
  using sigil::server::parse_listen_address;
  auto ok = parse_listen_address("127.0.0.1:0");
  REQUIRE(ok.ok());
  CHECK(ok->host == "127.0.0.1");
  CHECK(ok->port == 0);
  auto v6 = parse_listen_address("[::1]:8443");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK(v6->port == 8443);
  auto all = parse_listen_address(":8443");
  REQUIRE(all.ok());
  CHECK(all->host == "0.0.0.0");

  const char* bad =
      GENERATE("", "8443", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
               "127.0.0.1:http", "::1:8443", "[::1]8443", "[::1", "[127.0.0.1]:1", "localhost:8443",
               "1.2.3.4.5:1", "127.0.0.1:000008443");
  CAPTURE(bad);
  CHECK_FALSE(parse_listen_address(bad).ok());
}

TEST_CASE("request budget: min(?timeout, configured, 30s) minus a margin", "[budget]") {
  sigil::server::ServerOptions o;
  o.default_timeout = 10s;
  o.max_timeout = 30s;
  o.safety_margin = 500ms;
  o.max_margin_fraction = 0.25;
  auto [param, expected] = GENERATE(table<const char*, std::chrono::milliseconds>({
      {"", 9500ms},         // default
      {"10s", 9500ms},      // what the API server sends by default
      {"5s", 4500ms},       // shorter than configured
      {"30s", 9500ms},      // longer than configured -> configured
      {"1s", 750ms},        // margin capped at 25 %
      {"garbage", 9500ms},  // malformed -> default
      {"0s", 9500ms},       // zero -> default
      {"-5s", 9500ms},
  }));
  CAPTURE(param);
  CHECK(sigil::server::request_budget(param, o) == expected);

  SECTION("the 30 s cap applies even when configured higher") {
    o.default_timeout = 60s;
    CHECK(sigil::server::request_budget("45s", o) == 29500ms);
  }
}

TEST_CASE("the handler's deadline is a little before the Server's own", "[server]") {
  using sigil::server::handler_deadline;
  const auto now = std::chrono::steady_clock::now();
  CHECK(handler_deadline(now + 9500ms, now, 200ms) == now + 9300ms);  // the slack
  CHECK(handler_deadline(now + 1s, now, 200ms) == now + 900ms);       // a tenth of what is left
  CHECK(handler_deadline(now + 1s, now, 0ms) == now + 1s);            // no slack
  CHECK(handler_deadline(now, now, 200ms) == now);                    // nothing left
  CHECK(handler_deadline(now - 1s, now, 200ms) == now - 1s);          // already past
}
