// TagResolver: concurrent admissions of one tag share registry reads, but no request is ever
// answered by a read that started before it arrived (a moved tag is seen at once).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <future>
#include <map>
#include <optional>
#include <vector>

#include "common/clock.hpp"
#include "oci/reference.hpp"
#include "registry/docker_config.hpp"
#include "verify/tag_resolver.hpp"

namespace asio = boost::asio;
using namespace sigil;
using namespace std::chrono_literals;

namespace {

// resolve() reads the tag when the call starts, then takes `delay` to answer: what a registry
// HEAD does (the answer reflects the registry's state when the request reached it).
class SlowTags final : public registry::Client {
 public:
  std::map<std::string, std::string> tags;  // "repo:tag" -> digest
  // What a request made with pull credentials sees instead (a private repository in front).
  std::map<std::string, std::string> tags_with_creds;
  std::chrono::milliseconds delay{20};
  bool fail = false;
  int reads = 0;

  asio::awaitable<Result<std::string>> resolve(const oci::Reference& ref, sigil::Deadline,
                                               registry::PullCredentials creds) override {
    ++reads;
    const bool failing = fail;
    const auto& where = creds ? tags_with_creds : tags;
    auto it = where.find(ref.repository + ":" + ref.tag);
    std::string seen = it == where.end() ? "" : it->second;
    asio::steady_timer t(co_await asio::this_coro::executor, delay);
    co_await t.async_wait(asio::use_awaitable);
    if (failing) co_return make_error(Errc::unavailable, "HTTP 503");
    if (seen.empty()) co_return make_error(Errc::not_found, "manifest unknown");
    co_return seen;
  }
  asio::awaitable<Result<registry::ManifestResponse>> get_manifest(
      const std::string&, const std::string&, const std::string&, sigil::Deadline,
      registry::PullCredentials) override {
    co_return make_error(Errc::not_found, "unused");
  }
  asio::awaitable<Result<std::string>> get_blob(const std::string&, const std::string&,
                                                const std::string&, int64_t, sigil::Deadline,
                                                registry::PullCredentials) override {
    co_return make_error(Errc::not_found, "unused");
  }
  uint64_t request_count() const override { return static_cast<uint64_t>(reads); }
};

oci::Reference ref_of(const std::string& s) {
  auto r = oci::parse_reference(s);
  REQUIRE(r.ok());
  return *r;
}

const std::string kOld = "sha256:" + std::string(64, 'a');
const std::string kNew = "sha256:" + std::string(64, 'b');

// Starts resolve() after `after` on the io_context; the future holds its result (wrapped in an
// optional: use_future needs a default-constructible value).
using Pending = std::future<std::optional<Result<std::string>>>;

Result<std::string> take(Pending& f) {
  auto r = f.get();
  REQUIRE(r.has_value());
  return std::move(*r);
}

Pending resolve_later(asio::io_context& io, verify::TagResolver& r, const oci::Reference& ref,
                      std::chrono::milliseconds after, std::chrono::milliseconds budget = 5s) {
  return asio::co_spawn(
      io,
      [&r, ref, after, budget]() -> asio::awaitable<std::optional<Result<std::string>>> {
        if (after.count() > 0) {
          asio::steady_timer t(co_await asio::this_coro::executor, after);
          co_await t.async_wait(asio::use_awaitable);
        }
        co_return co_await r.resolve(ref, std::chrono::steady_clock::now() + budget);
      },
      asio::use_future);
}

// resolve() with the given freshness and credentials, started after `after`.
Pending resolve_as(asio::io_context& io, verify::TagResolver& r, const oci::Reference& ref,
                   verify::TagFreshness freshness, std::chrono::milliseconds after = 0ms,
                   registry::PullCredentials creds = nullptr, std::string credentials_id = "") {
  return asio::co_spawn(
      io,
      [&r, ref, after, freshness, creds,
       id = std::move(credentials_id)]() -> asio::awaitable<std::optional<Result<std::string>>> {
        if (after.count() > 0) {
          asio::steady_timer t(co_await asio::this_coro::executor, after);
          co_await t.async_wait(asio::use_awaitable);
        }
        co_return co_await r.resolve(ref, std::chrono::steady_clock::now() + 5s, creds, id,
                                     freshness);
      },
      asio::use_future);
}

// One resolve() on its own, run to completion.
Result<std::string> resolve_now(asio::io_context& io, verify::TagResolver& r,
                                const oci::Reference& ref, verify::TagFreshness freshness,
                                registry::PullCredentials creds = nullptr,
                                std::string credentials_id = "") {
  auto f = resolve_as(io, r, ref, freshness, 0ms, std::move(creds), std::move(credentials_id));
  io.run();
  io.restart();
  return take(f);
}

constexpr auto kPinned = verify::TagFreshness::pinned;
constexpr auto kFresh = verify::TagFreshness::fresh;

ManualClock start_clock() {
  return ManualClock(std::chrono::system_clock::time_point(std::chrono::hours(24 * 365 * 50)));
}

}  // namespace

TEST_CASE("sequential resolutions each read the registry: nothing is cached") {
  asio::io_context io;
  SlowTags reg;
  reg.delay = 1ms;
  reg.tags["team/app:v1"] = kOld;
  verify::TagResolver resolver(reg);
  const auto ref = ref_of("reg.test/team/app:v1");
  for (int i = 0; i < 5; ++i) {
    auto f = resolve_later(io, resolver, ref, 0ms);
    io.run();
    io.restart();
    auto r = take(f);
    REQUIRE(r.ok());
    CHECK(*r == kOld);
  }
  CHECK(reg.reads == 5);
  CHECK(resolver.stats().reads == 5);
}

TEST_CASE("a burst of admissions of one tag shares reads") {
  asio::io_context io;
  SlowTags reg;
  reg.tags["team/app:v1"] = kOld;
  verify::TagResolver resolver(reg);
  const auto ref = ref_of("reg.test/team/app:v1");
  std::vector<Pending> fs;
  fs.push_back(resolve_later(io, resolver, ref, 0ms));
  for (int i = 0; i < 49; ++i) fs.push_back(resolve_later(io, resolver, ref, 5ms));
  io.run();
  for (auto& f : fs) {
    auto r = take(f);
    REQUIRE(r.ok());
    CHECK(*r == kOld);
  }
  // The first request's read, then one read shared by the 49 that arrived while it ran.
  CHECK(reg.reads == 2);
  CHECK(resolver.stats().requests == 50);
}

TEST_CASE("a request never gets the answer of a read that started before it arrived") {
  // The tag moves while a read is in flight. A request that arrives after the move must see
  // the new digest, even though an answer for the same tag is about to come back: joining the
  // in-flight read would hand it the old digest (a tag moved to an unsigned image admitted).
  asio::io_context io;
  SlowTags reg;
  reg.delay = 50ms;
  reg.tags["team/app:v1"] = kOld;
  verify::TagResolver resolver(reg);
  const auto ref = ref_of("reg.test/team/app:v1");

  auto before = resolve_later(io, resolver, ref, 0ms);
  asio::steady_timer mover(io, 10ms);
  mover.async_wait([&](const boost::system::error_code&) { reg.tags["team/app:v1"] = kNew; });
  auto after = resolve_later(io, resolver, ref, 20ms);
  io.run();

  auto b = take(before);
  auto a = take(after);
  REQUIRE(b.ok());
  REQUIRE(a.ok());
  CHECK(*b == kOld);  // its read began before the move
  CHECK(*a == kNew);  // it arrived after the move
  CHECK(reg.reads == 2);
}

TEST_CASE("a waiter that reaches its deadline gives up alone") {
  asio::io_context io;
  SlowTags reg;
  reg.delay = 60ms;
  reg.tags["team/app:v1"] = kOld;
  verify::TagResolver resolver(reg);
  const auto ref = ref_of("reg.test/team/app:v1");
  auto first = resolve_later(io, resolver, ref, 0ms);
  auto impatient = resolve_later(io, resolver, ref, 5ms, 30ms);  // queued behind `first`
  auto patient = resolve_later(io, resolver, ref, 5ms);          // shares impatient's round
  io.run();
  auto i = take(impatient);
  REQUIRE_FALSE(i.ok());
  CHECK(i.error().code == Errc::timeout);
  auto p = take(patient);
  REQUIRE(p.ok());
  CHECK(*p == kOld);
  REQUIRE(take(first).ok());
}

TEST_CASE("a failed read fails its round only; the next round reads again") {
  asio::io_context io;
  SlowTags reg;
  reg.tags["team/app:v1"] = kOld;
  reg.fail = true;
  verify::TagResolver resolver(reg);
  const auto ref = ref_of("reg.test/team/app:v1");
  auto a = resolve_later(io, resolver, ref, 0ms);
  asio::steady_timer healer(io, 5ms);
  healer.async_wait([&](const boost::system::error_code&) { reg.fail = false; });
  auto b = resolve_later(io, resolver, ref, 10ms);
  io.run();
  auto ra = take(a);
  REQUIRE_FALSE(ra.ok());
  CHECK(ra.error().code == Errc::unavailable);
  auto rb = take(b);
  REQUIRE(rb.ok());
  CHECK(*rb == kOld);
}

TEST_CASE("different tags do not share reads") {
  asio::io_context io;
  SlowTags reg;
  reg.tags["team/app:v1"] = kOld;
  reg.tags["team/app:v2"] = kNew;
  verify::TagResolver resolver(reg);
  auto a = resolve_later(io, resolver, ref_of("reg.test/team/app:v1"), 0ms);
  auto b = resolve_later(io, resolver, ref_of("reg.test/team/app:v2"), 1ms);
  io.run();
  CHECK(take(a).value() == kOld);
  CHECK(take(b).value() == kNew);
  CHECK(reg.reads == 2);
}

// --- the pinning tag cache (TagFreshness::pinned; only with TagCacheOptions::ttl > 0) ---------

TEST_CASE("pinned: a tag moved within the TTL is answered from the cache, after it read again",
          "[tagcache]") {
  asio::io_context io;
  SlowTags reg;
  reg.delay = 1ms;
  reg.tags["team/app:v1"] = kOld;
  auto clock = start_clock();
  verify::TagResolver resolver(reg, clock, verify::TagCacheOptions{10s, 100});
  const auto ref = ref_of("reg.test/team/app:v1");
  CHECK(resolve_now(io, resolver, ref, kPinned).value() == kOld);
  CHECK(reg.reads == 1);
  reg.tags["team/app:v1"] = kNew;  // pushed
  clock.advance(9s);
  // /mutate pins the Pod to the old digest: it runs exactly what was verified.
  CHECK(resolve_now(io, resolver, ref, kPinned).value() == kOld);
  CHECK(reg.reads == 1);
  CHECK(resolver.stats().cache_hits == 1);
  clock.advance(1s);  // the TTL is over: the push is visible
  CHECK(resolve_now(io, resolver, ref, kPinned).value() == kNew);
  CHECK(reg.reads == 2);
}

TEST_CASE("fresh requests never take a cached answer, and refresh the cache", "[tagcache]") {
  // /validate of a Pod still tag-only (it was not mutated) must see a moved tag at once, even
  // while /mutate's cache holds the old digest.
  asio::io_context io;
  SlowTags reg;
  reg.delay = 1ms;
  reg.tags["team/app:v1"] = kOld;
  auto clock = start_clock();
  verify::TagResolver resolver(reg, clock, verify::TagCacheOptions{10s, 100});
  const auto ref = ref_of("reg.test/team/app:v1");
  CHECK(resolve_now(io, resolver, ref, kPinned).value() == kOld);
  reg.tags["team/app:v1"] = kNew;
  CHECK(resolve_now(io, resolver, ref, kFresh).value() == kNew);
  CHECK(reg.reads == 2);
  CHECK(resolver.stats().cache_hits == 0);
  // What the fresh read saw is what /mutate pins next.
  CHECK(resolve_now(io, resolver, ref, kPinned).value() == kNew);
  CHECK(reg.reads == 2);
}

TEST_CASE("without a TTL (pinning off) there is no cache: pinned is fresh", "[tagcache]") {
  asio::io_context io;
  SlowTags reg;
  reg.delay = 1ms;
  reg.tags["team/app:v1"] = kOld;
  auto clock = start_clock();
  verify::TagResolver resolver(reg, clock, verify::TagCacheOptions{0s, 100});
  const auto ref = ref_of("reg.test/team/app:v1");
  CHECK(resolve_now(io, resolver, ref, kPinned).value() == kOld);
  reg.tags["team/app:v1"] = kNew;
  CHECK(resolve_now(io, resolver, ref, kPinned).value() == kNew);
  CHECK(reg.reads == 2);
  CHECK(resolver.stats().cached == 0);
  // ...and a pinned burst does not join a read in flight either (as before: 2 reads).
  std::vector<Pending> fs;
  fs.push_back(resolve_as(io, resolver, ref, kPinned));
  for (int i = 0; i < 20; ++i) fs.push_back(resolve_as(io, resolver, ref, kPinned, 0ms));
  reg.delay = 20ms;
  io.run();
  for (auto& f : fs) CHECK(take(f).value() == kNew);
  CHECK(reg.reads == 4);
  CHECK(resolver.stats().joined == 0);
}

TEST_CASE("pinned: a burst of one new tag costs one read, joined in flight", "[tagcache]") {
  asio::io_context io;
  SlowTags reg;
  reg.delay = 20ms;
  reg.tags["team/app:v1"] = kOld;
  auto clock = start_clock();
  verify::TagResolver resolver(reg, clock, verify::TagCacheOptions{10s, 100});
  const auto ref = ref_of("reg.test/team/app:v1");
  std::vector<Pending> fs;
  fs.push_back(resolve_as(io, resolver, ref, kPinned));
  // They arrive while the first read is in flight (a fresh request would queue for the next).
  for (int i = 0; i < 199; ++i) fs.push_back(resolve_as(io, resolver, ref, kPinned, 5ms));
  io.run();
  for (auto& f : fs) CHECK(take(f).value() == kOld);
  CHECK(reg.reads == 1);
  CHECK(resolver.stats().joined == 199);
}

TEST_CASE("the cache is an LRU bounded by its capacity", "[tagcache]") {
  asio::io_context io;
  SlowTags reg;
  reg.delay = 1ms;
  for (const char* t : {"a", "b", "c"}) reg.tags[std::string("team/app:") + t] = kOld;
  auto clock = start_clock();
  verify::TagResolver resolver(reg, clock, verify::TagCacheOptions{10s, 2});
  const auto a = ref_of("reg.test/team/app:a");
  const auto b = ref_of("reg.test/team/app:b");
  const auto c = ref_of("reg.test/team/app:c");
  REQUIRE(resolve_now(io, resolver, a, kPinned).ok());
  REQUIRE(resolve_now(io, resolver, b, kPinned).ok());
  REQUIRE(resolve_now(io, resolver, a, kPinned).ok());  // a is now the most recently used
  CHECK(reg.reads == 2);
  REQUIRE(resolve_now(io, resolver, c, kPinned).ok());  // evicts b
  CHECK(resolver.stats().cached == 2);
  CHECK(reg.reads == 3);
  REQUIRE(resolve_now(io, resolver, a, kPinned).ok());  // still cached
  CHECK(reg.reads == 3);
  REQUIRE(resolve_now(io, resolver, b, kPinned).ok());  // was evicted: read again
  CHECK(reg.reads == 4);
  CHECK(resolver.stats().cached == 2);
}

TEST_CASE("one tenant's cached answer never answers another's credentials", "[tagcache]") {
  asio::io_context io;
  SlowTags reg;
  reg.delay = 1ms;
  reg.tags["team/app:v1"] = kOld;             // what anonymous reads see
  reg.tags_with_creds["team/app:v1"] = kNew;  // what tenant A's pull secret sees
  auto clock = start_clock();
  verify::TagResolver resolver(reg, clock, verify::TagCacheOptions{10s, 100});
  const auto ref = ref_of("reg.test/team/app:v1");
  auto creds_a = std::make_shared<const registry::DockerConfig>();
  CHECK(resolve_now(io, resolver, ref, kPinned, creds_a, "tenant-a").value() == kNew);
  CHECK(resolve_now(io, resolver, ref, kPinned, nullptr, "").value() == kOld);
  CHECK(reg.reads == 2);
  // Each is cached under its own credentials.
  CHECK(resolve_now(io, resolver, ref, kPinned, creds_a, "tenant-a").value() == kNew);
  CHECK(resolve_now(io, resolver, ref, kPinned, nullptr, "").value() == kOld);
  CHECK(reg.reads == 2);
}

TEST_CASE("a failed read is not cached; a clock stepping back expires entries", "[tagcache]") {
  asio::io_context io;
  SlowTags reg;
  reg.delay = 1ms;
  reg.fail = true;
  reg.tags["team/app:v1"] = kOld;
  auto clock = start_clock();
  verify::TagResolver resolver(reg, clock, verify::TagCacheOptions{10s, 100});
  const auto ref = ref_of("reg.test/team/app:v1");
  CHECK_FALSE(resolve_now(io, resolver, ref, kPinned).ok());
  reg.fail = false;
  CHECK(resolve_now(io, resolver, ref, kPinned).value() == kOld);
  CHECK(reg.reads == 2);
  reg.tags["team/app:v1"] = kNew;
  clock.advance(-std::chrono::seconds(1));
  CHECK(resolve_now(io, resolver, ref, kPinned).value() == kNew);
  CHECK(reg.reads == 3);
}
