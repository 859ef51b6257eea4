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

#include "oci/reference.hpp"
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
  std::chrono::milliseconds delay{20};
  bool fail = false;
  int reads = 0;

  asio::awaitable<Result<std::string>> resolve(const oci::Reference& ref, sigil::Deadline,
                                               registry::PullCredentials) override {
    ++reads;
    const bool failing = fail;
    auto it = tags.find(ref.repository + ":" + ref.tag);
    std::string seen = it == tags.end() ? "" : it->second;
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
