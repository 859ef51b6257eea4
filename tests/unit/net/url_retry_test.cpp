// net's pure parts: URLs and origins, encodings, the backoff schedule and Retry-After.
#include <catch2/catch.hpp>

#include "net/retry.hpp"
#include "net/url.hpp"

using namespace sigil;
using namespace sigil::net;
using namespace std::chrono_literals;

TEST_CASE("URL parsing, origins and redirect resolution") {
  auto base = parse_url("https://Reg.Example:8443/v2/a/blobs/sha256:x");
  REQUIRE(base.ok());
  CHECK(base->authority() == "reg.example:8443");
  CHECK(base->origin() == "https://reg.example:8443");
  CHECK(base->str() == "https://reg.example:8443/v2/a/blobs/sha256:x");
  CHECK_FALSE(base->is_default_port());
  auto rel = resolve_location(*base, "/other/path?sig=1");
  REQUIRE(rel.ok());
  CHECK(rel->same_origin(*base));
  CHECK(rel->target == "/other/path?sig=1");
  auto abs = resolve_location(*base, "https://blob.store/x#frag");
  REQUIRE(abs.ok());
  CHECK_FALSE(abs->same_origin(*base));
  CHECK(abs->target == "/x");
  CHECK(abs->is_default_port());
  // Another scheme or port is another origin.
  CHECK_FALSE(resolve_location(*base, "http://reg.example:8443/x")->same_origin(*base));
  CHECK_FALSE(resolve_location(*base, "https://reg.example/x")->same_origin(*base));
  auto v6 = parse_url("http://[::1]:5000/v2/");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK(v6->authority() == "[::1]:5000");
  CHECK(parse_url("https://example.com")->target == "/");
  auto bad =
      GENERATE(as<std::string>{}, "javascript:alert(1)", "https://x:99999/", "https://user:pw@x/",
               "ftp://x/", "/relative", "https://x/#frag", "https://x/a b", "https:///nohost");
  CAPTURE(bad);
  CHECK_FALSE(parse_url(bad).ok());
  CHECK_FALSE(resolve_location(*base, "javascript:alert(1)").ok());
  CHECK_FALSE(resolve_location(*base, "ftp://x/").ok());
}

TEST_CASE("split_host_port and IP literals") {
  CHECK(split_host_port("myreg.io", "443")->second == "443");
  CHECK(split_host_port("MyReg.io:5000", "443")->first == "myreg.io");
  CHECK(split_host_port("[::1]:5000", "443")->first == "::1");
  auto bad = GENERATE(as<std::string>{}, "", "a/b", "a:b:c", "a:0", "a:", "[::1", "a@b", "a b");
  CAPTURE(bad);
  CHECK_FALSE(split_host_port(bad, "443").ok());
  CHECK(is_ip_literal("127.0.0.1"));
  CHECK(is_ip_literal("::1"));
  CHECK(is_ip_literal("169.254.169.254"));
  CHECK_FALSE(is_ip_literal("localhost"));
  CHECK_FALSE(is_ip_literal("127.0.0.1.nip.io"));
}

TEST_CASE("percent and form encoding") {
  CHECK(pct_encode("a-b_c.d~e") == "a-b_c.d~e");
  CHECK(pct_encode("repository:team/app:pull") == "repository%3Ateam%2Fapp%3Apull");
  CHECK(pct_encode("a b+c&d=e") == "a%20b%2Bc%26d%3De");
  CHECK(form_encode({{"grant_type", "client_credentials"},
                     {"scope", "https://containerregistry.azure.net/.default"}}) ==
        "grant_type=client_credentials&scope=https%3A%2F%2Fcontainerregistry.azure.net%2F."
        "default");
  CHECK(form_encode({}).empty());
}

TEST_CASE("backoff: exponential, capped, jittered in [d/2, d]") {
  RetryPolicy p;
  p.backoff_base = 100ms;
  p.max_backoff = 1000ms;
  auto [retry, unit, want] = GENERATE(table<int, double, int64_t>({
      {0, 0.0, 50},
      {0, 0.999999, 99},
      {1, 0.0, 100},
      {2, 0.5, 300},
      {3, 0.0, 400},
      {4, 0.0, 500},  // capped at 1000: [500, 1000]
      {60, 1.0, 1000},
      {-3, 0.0, 50},
  }));
  CAPTURE(retry, unit);
  CHECK(backoff_delay(p, retry, unit).count() == want);
  RetryPolicy zero;
  zero.backoff_base = 0ms;
  CHECK(backoff_delay(zero, 5, 0.7).count() == 0);
}

TEST_CASE("Retry-After: seconds and the three HTTP-date forms") {
  // 1994-11-06T08:49:37Z
  const auto date = std::chrono::sys_days(std::chrono::year(1994) / 11 / 6) + 8h + 49min + 37s;
  const auto now = date - 30s;
  auto [value, want] = GENERATE(table<std::string, std::optional<int64_t>>({
      {"0", 0},
      {"120", 120000},
      {" 7 ", 7000},
      {"Sun, 06 Nov 1994 08:49:37 GMT", 30000},
      {"Sunday, 06-Nov-94 08:49:37 GMT", 30000},
      {"Sun Nov  6 08:49:37 1994", 30000},
      {"Sun, 06 Nov 1994 08:48:37 GMT", 0},  // in the past
      {"99999999999", 86400000},             // capped at a day
      {"10000000000000000", 86400000},       // as milliseconds, past int64
      {"99999999999999999999", 86400000},    // past int64 as seconds
      {"", std::nullopt},
      {"-5", std::nullopt},
      {"1.5", std::nullopt},
      {"soon", std::nullopt},
      {"Sun, 31 Feb 1994 08:49:37 GMT", std::nullopt},
      {"Sun, 06 Nov 1994 25:49:37 GMT", std::nullopt},
      {"Sun, 06 Foo 1994 08:49:37 GMT", std::nullopt},
      {"Sun, 06 Nov 1994 08:49:37 UTC", std::nullopt},
  }));
  CAPTURE(value);
  auto got = parse_retry_after(value, now);
  if (want) {
    REQUIRE(got.has_value());
    CHECK(got->count() == *want);
  } else {
    CHECK_FALSE(got.has_value());
  }
}
