// SecretCache TTLs (positive and negative) and the Ready-condition status writer.
#include <catch2/catch.hpp>

#include <future>
#include <optional>
#include <thread>
#include <vector>

#include "common/clock.hpp"
#include "common/encoding.hpp"
#include "fake_api.hpp"
#include "kube/cache.hpp"
#include "kube/status.hpp"

using namespace sigil;
using namespace sigil::kube;
using namespace sigil::test;

namespace {

Deadline in(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

json secret(const std::string& ns, const std::string& name, const std::string& value) {
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"metadata", {{"name", name}, {"namespace", ns}}},
          {"type", "Opaque"},
          {"data", {{"cosign.pub", base64_encode(value)}}}};
}

Object object_of(const json& j) {
  auto o = parse_object(j.dump());
  REQUIRE(o.ok());
  return *o;
}

const auto kNow = std::chrono::system_clock::time_point(std::chrono::seconds(1714564800));

}  // namespace

TEST_CASE("secret cache: bounded in bytes; an object over the bound is answered, never kept") {
  // Pod authors name the pull secrets read for their pods, and may create large ones.
  FakeApi api;
  const std::string big(100 * 1024, 'x');
  for (int i = 0; i < 30; ++i) api.create("secrets", secret("app", "s" + std::to_string(i), big));
  api.create("secrets", secret("app", "huge", std::string(600 * 1024, 'y')));
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  ManualClock clock(kNow);
  CacheOptions o;
  o.max_bytes = 512 * 1024;
  SecretCache cache(client, o, clock);
  for (int i = 0; i < 30; ++i) {
    auto s = loop.run(cache.secret("app", "s" + std::to_string(i), in(5s)));
    REQUIRE(s.ok());
    CHECK((*s)->data.at("cosign.pub").size() == big.size());
    clock.advance(1s);  // later reads expire later: the first ones go first
    CHECK(cache.stats().bytes <= o.max_bytes);
  }
  CHECK(cache.stats().entries == 5);  // 5 x 100 KiB and their overheads fit in 512 KiB
  // The last ones read are the ones kept.
  const uint64_t misses = cache.stats().misses;
  REQUIRE(loop.run(cache.secret("app", "s29", in(5s))).ok());
  CHECK(cache.stats().misses == misses);
  REQUIRE(loop.run(cache.secret("app", "s0", in(5s))).ok());
  CHECK(cache.stats().misses == misses + 1);
  // Over the bound alone: answered every time, kept never, and nothing else evicted for it.
  const size_t entries = cache.stats().entries;
  for (int i = 0; i < 2; ++i) {
    auto h = loop.run(cache.secret("app", "huge", in(5s)));
    REQUIRE(h.ok());
    CHECK((*h)->data.at("cosign.pub").size() == 600 * 1024);
  }
  CHECK(cache.stats().misses == misses + 3);
  CHECK(cache.stats().entries == entries);
}

TEST_CASE("secret cache: concurrent misses of one object share one GET") {
  // After every resync the cache is empty: a busy namespace's admissions all miss its
  // ServiceAccount and pull secret at once, and each sent a GET of its own.
  FakeApi api;
  api.create("secrets", secret("app", "stall", "v1"));
  api.stall_ms = 300;
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  ManualClock clock(kNow);
  SecretCache cache(client, CacheOptions{}, clock);
  std::vector<std::future<std::optional<Result<std::shared_ptr<const Secret>>>>> reads;
  for (int i = 0; i < 16; ++i) {
    reads.push_back(boost::asio::co_spawn(
        loop.ioc, test::detail::as_optional(cache.secret("app", "stall", in(5s))),
        boost::asio::use_future));
  }
  for (auto& r : reads) {
    auto got = r.get();
    REQUIRE(got.has_value());
    REQUIRE(got->ok());
    CHECK((**got)->data.at("cosign.pub") == "v1");
  }
  CHECK(api.count("GET", "/api/v1/namespaces/app/secrets/stall") == 1);
  // A reader whose own deadline cuts the shared GET does not pass its timeout on: one with time
  // left reads again.
  cache.clear();
  api.stall_ms = 400;
  auto short_one = boost::asio::co_spawn(
      loop.ioc, test::detail::as_optional(cache.secret("app", "stall", in(100ms))),
      boost::asio::use_future);
  std::this_thread::sleep_for(20ms);
  auto long_one = boost::asio::co_spawn(
      loop.ioc, test::detail::as_optional(cache.secret("app", "stall", in(5s))),
      boost::asio::use_future);
  auto s = short_one.get();
  REQUIRE(s.has_value());
  CHECK_FALSE(s->ok());
  auto l = long_one.get();
  REQUIRE(l.has_value());
  INFO((l->ok() ? std::string() : l->error().message));
  CHECK(l->ok());
}

TEST_CASE("secret cache: hits within the TTL, refetches after it") {
  FakeApi api;
  api.create("secrets", secret("app", "keys", "v1"));
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  ManualClock clock(kNow);
  SecretCache cache(client, CacheOptions{}, clock);
  auto a = loop.run(cache.secret("app", "keys", in(5s)));
  REQUIRE(a.ok());
  CHECK((*a)->data.at("cosign.pub") == "v1");
  api.update("secrets", "app/keys", [](json& j) { j["data"]["cosign.pub"] = base64_encode("v2"); });
  auto b = loop.run(cache.secret("app", "keys", in(5s)));
  REQUIRE(b.ok());
  CHECK((*b)->data.at("cosign.pub") == "v1");  // cached
  CHECK(api.count("GET", "/api/v1/namespaces/app/secrets") == 1);
  clock.advance(std::chrono::seconds(61));
  auto c = loop.run(cache.secret("app", "keys", in(5s)));
  REQUIRE(c.ok());
  CHECK((*c)->data.at("cosign.pub") == "v2");
  CHECK(api.count("GET", "/api/v1/namespaces/app/secrets") == 2);
  CHECK(cache.stats().hits == 1);
  CHECK(cache.stats().misses == 2);
  cache.clear();
  REQUIRE(loop.run(cache.secret("app", "keys", in(5s))).ok());
  CHECK(api.count("GET", "/api/v1/namespaces/app/secrets") == 3);
}

TEST_CASE("secret cache: 404s are cached briefly, other errors not at all") {
  FakeApi api;
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  ManualClock clock(kNow);
  CacheOptions co;
  co.negative_ttl = std::chrono::seconds(10);
  SecretCache cache(client, co, clock);
  for (int i = 0; i < 3; ++i) {
    auto r = loop.run(cache.secret("app", "missing", in(5s)));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::not_found);
  }
  CHECK(api.count("GET", "/api/v1/namespaces/app/secrets/missing") == 1);
  CHECK(cache.stats().negative_hits == 2);
  api.create("secrets", secret("app", "missing", "now here"));
  clock.advance(std::chrono::seconds(11));
  auto found = loop.run(cache.secret("app", "missing", in(5s)));
  REQUIRE(found.ok());

  api.fail_gets_with = 500;
  for (int i = 0; i < 2; ++i) {
    auto r = loop.run(cache.service_account("app", "default", in(5s)));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unavailable);
  }
  CHECK(api.count("GET", "/api/v1/namespaces/app/serviceaccounts/default") == 2);
}

TEST_CASE("secret cache: bounded size") {
  FakeApi api;
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  ManualClock clock(kNow);
  CacheOptions co;
  co.max_entries = 2;
  SecretCache cache(client, co, clock);
  for (const char* n : {"a", "b", "c"}) {
    api.create("secrets", secret("app", n, n));
    REQUIRE(loop.run(cache.secret("app", n, in(5s))).ok());
    clock.advance(std::chrono::seconds(1));
  }
  REQUIRE(loop.run(cache.secret("app", "c", in(5s))).ok());  // newest kept
  CHECK(cache.stats().hits == 1);
  REQUIRE(loop.run(cache.secret("app", "a", in(5s))).ok());  // oldest evicted
  CHECK(cache.stats().misses == 4);
}

TEST_CASE("ready_status_patch: writes when the object does not show it, not when it does") {
  json obj = policy_object("prod");
  obj["metadata"]["generation"] = 3;
  obj["metadata"]["resourceVersion"] = "10";
  ReadyCondition ok{true, "Compiled", "policy compiled: 2 authorities", 3};

  auto p = ready_status_patch(object_of(obj), ok, kNow);
  REQUIRE(p.ok());
  REQUIRE(p->has_value());
  auto patch = json::parse(**p);
  CHECK(patch["status"]["observedGeneration"] == 3);
  const auto& ready = patch["status"]["conditions"][0];
  CHECK(ready["type"] == "Ready");
  CHECK(ready["status"] == "True");
  CHECK(ready["reason"] == "Compiled");
  CHECK(ready["observedGeneration"] == 3);
  CHECK(ready["lastTransitionTime"] == "2024-05-01T12:00:00Z");

  // The object after the patch shows it: nothing to write.
  obj.merge_patch(patch);
  auto same = ready_status_patch(object_of(obj), ok, kNow + std::chrono::hours(1));
  REQUIRE(same.ok());
  CHECK_FALSE(same->has_value());

  SECTION("a new generation is written; lastTransitionTime stays while the status is the same") {
    obj["metadata"]["generation"] = 4;
    ReadyCondition next = ok;
    next.observed_generation = 4;
    auto p2 = ready_status_patch(object_of(obj), next, kNow + std::chrono::hours(1));
    REQUIRE(p2->has_value());
    auto j = json::parse(**p2);
    CHECK(j["status"]["observedGeneration"] == 4);
    CHECK(j["status"]["conditions"][0]["lastTransitionTime"] == "2024-05-01T12:00:00Z");
  }
  SECTION("a flip to False moves lastTransitionTime") {
    ReadyCondition bad{false, "InvalidPolicy", "spec.authorities[0].key: not PEM", 3};
    auto p2 = ready_status_patch(object_of(obj), bad, kNow + std::chrono::hours(1));
    REQUIRE(p2->has_value());
    auto j = json::parse(**p2);
    CHECK(j["status"]["conditions"][0]["status"] == "False");
    CHECK(j["status"]["conditions"][0]["lastTransitionTime"] == "2024-05-01T13:00:00Z");
  }
  SECTION("a changed message alone is written") {
    ReadyCondition msg = ok;
    msg.message = "policy compiled: 3 authorities";
    CHECK(ready_status_patch(object_of(obj), msg, kNow)->has_value());
  }
  SECTION("other condition types are kept, in place") {
    obj["status"]["conditions"] =
        json::array({{{"type", "Synced"}, {"status", "True"}}, obj["status"]["conditions"][0]});
    ReadyCondition msg = ok;
    msg.message = "changed";
    auto j = json::parse(**ready_status_patch(object_of(obj), msg, kNow));
    REQUIRE(j["status"]["conditions"].size() == 2);
    CHECK(j["status"]["conditions"][0]["type"] == "Synced");
    CHECK(j["status"]["conditions"][1]["message"] == "changed");
  }
}

TEST_CASE("ready_status_patch: bad reasons and invalid UTF-8") {
  json obj = policy_object("prod");
  for (const char* bad : {"", "has space", "9Lives", "Ends,", "semi;colon"}) {
    auto r = ready_status_patch(object_of(obj), ReadyCondition{true, bad, "m", 1}, kNow);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
  }
  // A message with invalid UTF-8 is cleaned, so what the server shows back compares equal.
  ReadyCondition c{false, "InvalidPolicy", std::string("bad \xff byte ") + std::string(5000, 'x'),
                   1};
  auto p = ready_status_patch(object_of(obj), c, kNow);
  REQUIRE(p->has_value());
  auto patch = json::parse(**p);
  const std::string shown = patch["status"]["conditions"][0]["message"];
  CHECK(shown.rfind("bad ? byte ", 0) == 0);
  CHECK(shown.size() == 4096);
  obj.merge_patch(patch);
  CHECK_FALSE(ready_status_patch(object_of(obj), c, kNow)->has_value());
}

TEST_CASE("StatusWriter: patches once, not again for the same object or a stale copy") {
  FakeApi api;
  api.create("clusterimagepolicies", policy_object("prod"));
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  ManualClock clock(kNow);
  StatusWriter writer(client, resources::cluster_image_policies(), clock);
  const Object before = object_of(*api.object("clusterimagepolicies", "prod"));
  ReadyCondition ok{true, "Compiled", "fine", 1};
  auto w1 = loop.run(writer.write(before, ok, in(5s)));
  REQUIRE(w1.ok());
  CHECK(*w1);
  // The watch has not delivered our write yet: the stale copy must not trigger another PATCH.
  auto w2 = loop.run(writer.write(before, ok, in(5s)));
  REQUIRE(w2.ok());
  CHECK_FALSE(*w2);
  // The object as the server now shows it: nothing to do.
  const Object after = object_of(*api.object("clusterimagepolicies", "prod"));
  auto w3 = loop.run(writer.write(after, ok, in(5s)));
  REQUIRE(w3.ok());
  CHECK_FALSE(*w3);
  CHECK(api.patches().size() == 1);
  CHECK(writer.patches() == 1);
  auto st = json::parse(api.patches()[0]);
  CHECK(st["status"]["conditions"][0]["status"] == "True");
  // A real change is written.
  auto w4 =
      loop.run(writer.write(after, ReadyCondition{false, "InvalidPolicy", "broken", 1}, in(5s)));
  REQUIRE(w4.ok());
  CHECK(*w4);
  CHECK(api.patches().size() == 2);
  // Errors are values.
  json ghost = policy_object("ghost");
  ghost["metadata"]["resourceVersion"] = "1";
  auto w5 = loop.run(writer.write(object_of(ghost), ok, in(5s)));
  REQUIRE_FALSE(w5.ok());
  CHECK(w5.error().code == Errc::not_found);
  // What is remembered of each object is forgotten after twice the longest backoff (10 min):
  // policies that came and went do not stay in memory.
  CHECK(writer.remembered() == 1);
  api.create("clusterimagepolicies", policy_object("dev"));
  clock.advance(std::chrono::minutes(11));
  REQUIRE(loop.run(writer.write(object_of(*api.object("clusterimagepolicies", "dev")), ok, in(5s)))
              .ok());
  CHECK(writer.remembered() == 1);
}

TEST_CASE("StatusWriter: two writers that disagree do not rewrite each other's status forever") {
  // Two replicas compile one object differently (one could not read a Secret, say). Each write
  // comes back to the other through its watch; without damping, each answers with its own.
  FakeApi api;
  api.create("clusterimagepolicies", policy_object("prod"));
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  ManualClock clock(kNow);
  StatusWriter a(client, resources::cluster_image_policies(), clock);
  StatusWriter b(client, resources::cluster_image_policies(), clock);
  const ReadyCondition ok{true, "Compiled", "fine", 1};
  const ReadyCondition broken{false, "SecretUnavailable", "the Secret x/k could not be read", 1};
  auto current = [&] { return object_of(*api.object("clusterimagepolicies", "prod")); };
  // 50 rounds of the watch delivering the other's write within the same second.
  for (int i = 0; i < 50; ++i) {
    REQUIRE(loop.run(a.write(current(), ok, in(5s))).ok());
    REQUIRE(loop.run(b.write(current(), broken, in(5s))).ok());
    clock.advance(10ms);
  }
  // Each wrote once, and once more when the other first undid it: then they hold back.
  CHECK(a.patches() == 2);
  CHECK(b.patches() == 2);
  // After the backoff, one more rewrite each, and the next waits twice as long.
  clock.advance(2s);
  for (int i = 0; i < 20; ++i) {
    REQUIRE(loop.run(a.write(current(), ok, in(5s))).ok());
    REQUIRE(loop.run(b.write(current(), broken, in(5s))).ok());
  }
  CHECK(a.patches() == 3);
  CHECK(b.patches() == 3);
  clock.advance(1500ms);  // less than the doubled backoff
  REQUIRE(loop.run(a.write(current(), ok, in(5s))).ok());
  CHECK(a.patches() == 3);
  // A condition of our own that changed is news: written at once.
  const ReadyCondition fixed{true, "Compiled", "fine again", 1};
  auto w = loop.run(a.write(current(), fixed, in(5s)));
  REQUIRE(w.ok());
  CHECK(*w);
  CHECK(a.patches() == 4);
}
