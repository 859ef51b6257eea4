// app/config.cpp: the `cache:` section, cache.staleIfError among it.
#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "app/config.hpp"

namespace {

sigil::Status load(const std::string& text, sigil::app::Settings& s) {
  const std::string path = std::string(SIGIL_BINARY_DIR) + "/config_test_cache.yaml";
  {
    std::ofstream f(path);
    f << text;
  }
  return sigil::app::load_config_file(path, s);
}

}  // namespace

TEST_CASE("config: cache.staleIfError is a duration, off unless set") {
  using namespace std::chrono_literals;
  sigil::app::Settings s;
  CHECK(s.stale_if_error == 0ms);
  REQUIRE(load("cache: {ttl: 5m, negativeTtl: 30s, size: 100, staleIfError: 1h}\n", s).ok());
  CHECK(s.stale_if_error == 1h);
  CHECK(s.cache_ttl == 5min);
  CHECK(s.cache_size == 100);
  sigil::app::Settings off;
  REQUIRE(load("cache: {staleIfError: \"\"}\n", off).ok());  // the chart's default
  CHECK(off.stale_if_error == 0ms);
  REQUIRE(load("cache: {staleIfError: 2s}\n", off).ok());
  CHECK(off.stale_if_error == 2s);
}

TEST_CASE("config: a bad or misspelt cache setting is refused, naming it") {
  sigil::app::Settings s;
  auto bad = load("cache: {staleIfError: an hour}\n", s);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("\"staleIfError\"") != std::string::npos);
  auto typo = load("cache: {staleIfErorr: 1h}\n", s);
  REQUIRE_FALSE(typo.ok());
  CHECK(typo.error().message.find("unknown setting \"cache.staleIfErorr\"") != std::string::npos);
  auto neg = load("cache: {staleIfError: -1h}\n", s);
  REQUIRE_FALSE(neg.ok());
  auto scalar = load("cache: 5m\n", s);
  REQUIRE_FALSE(scalar.ok());
  CHECK(scalar.error().message.find("\"cache\" must be a mapping") != std::string::npos);
}
