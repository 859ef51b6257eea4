// kube/events: Client::create_event and EventRecorder against the fake API server: the wire
// format of a core/v1 Event, field bounds against hostile names, the per-(object, reason) rate
// limit and its bounded LRU, the global cap, the bounded queue, and a hanging API server.
#include <atomic>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "fake_api.hpp"
#include "kube/client.hpp"
#include "kube/events.hpp"

using namespace sigil;
using namespace sigil::kube;
using namespace sigil::test;

namespace {

Deadline in(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

Event denial(std::string name, std::string ns = "team-a") {
  Event e;
  e.involved = {"apps/v1", "ReplicaSet", std::move(ns), std::move(name), "uid-rs-1"};
  e.reason = "ImageNotVerified";
  e.action = "Deny";
  e.message = "image reg.example/app:1 is not signed by any key of policy prod: no signatures";
  return e;
}

// A clock the test moves.
struct FakeClock {
  std::atomic<int64_t> ms{1000000};
  std::function<std::chrono::steady_clock::time_point()> fn() {
    return [this] { return std::chrono::steady_clock::time_point(std::chrono::milliseconds(ms)); };
  }
};

}  // namespace

TEST_CASE("create_event POSTs a core/v1 Event to the namespace's events and returns its metadata") {
  FakeApi api;
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  const std::string body = encode_event(denial("web-5d9f"), "web-5d9f.00000000000000aa",
                                        "2026-12-03T20:00:00Z", "sigil", "sigil-abc");
  auto r = loop.run(client->create_event("team-a", body, in(5s), Cancel{}));
  REQUIRE(r.ok());
  CHECK(r->name == "web-5d9f.00000000000000aa");
  CHECK(r->namespace_ == "team-a");
  auto seen = api.seen();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "POST");
  CHECK(seen[0].path == "/api/v1/namespaces/team-a/events");
  CHECK(seen[0].content_type == "application/json");
  auto stored = api.object("events", "team-a/web-5d9f.00000000000000aa");
  REQUIRE(stored);
  const json& ev = *stored;
  CHECK(ev["apiVersion"] == "v1");
  CHECK(ev["kind"] == "Event");
  CHECK(ev["type"] == "Warning");
  CHECK(ev["reason"] == "ImageNotVerified");
  CHECK(ev["involvedObject"]["kind"] == "ReplicaSet");
  CHECK(ev["involvedObject"]["apiVersion"] == "apps/v1");
  CHECK(ev["involvedObject"]["namespace"] == "team-a");
  CHECK(ev["involvedObject"]["name"] == "web-5d9f");
  CHECK(ev["involvedObject"]["uid"] == "uid-rs-1");
  CHECK(ev["source"]["component"] == "sigil");
  CHECK(ev["reportingComponent"] == "sigil");
  CHECK(ev["reportingInstance"] == "sigil-abc");
  CHECK(ev["firstTimestamp"] == "2026-12-03T20:00:00Z");
  CHECK(ev["count"] == 1);

  // The same name again: the server's 409 comes back as an error naming the call.
  auto again = loop.run(client->create_event("team-a", body, in(5s), Cancel{}));
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message.find("POST /api/v1/namespaces/team-a/events: HTTP 409") !=
        std::string::npos);
  // No namespace, or one that is not a path segment: refused before any request.
  CHECK_FALSE(loop.run(client->create_event("", body, in(5s), Cancel{})).ok());
  CHECK_FALSE(loop.run(client->create_event("a/b", body, in(5s), Cancel{})).ok());
  CHECK(api.seen().size() == 2);
}

TEST_CASE("validate_event refuses fields Kubernetes would refuse, and hostile sizes") {
  CHECK(validate_event(denial("web-5d9f")).ok());
  CHECK(validate_event(denial(std::string(253, 'a'))).ok());
  auto bad_name =
      GENERATE(std::string(254, 'a'), std::string("Web"), std::string("a/b"), std::string("a..b"),
               std::string(""), std::string("-a"), std::string("a\nb"), std::string(1 << 20, 'x'));
  CHECK_FALSE(validate_event(denial(bad_name)).ok());
  auto bad_ns =
      GENERATE(std::string(64, 'a'), std::string("a.b"), std::string(""), std::string("UPPER"));
  CHECK_FALSE(validate_event(denial("ok", bad_ns)).ok());
  Event e = denial("ok");
  e.involved.kind = std::string(64, 'K');
  CHECK_FALSE(validate_event(e).ok());
  e = denial("ok");
  e.involved.uid = std::string(129, 'u');
  CHECK_FALSE(validate_event(e).ok());
  e = denial("ok");
  e.reason = "Image Not Verified";
  CHECK_FALSE(validate_event(e).ok());
  e = denial("ok");
  e.type = "Error";
  CHECK_FALSE(validate_event(e).ok());
}

TEST_CASE("event names stay DNS subdomains of at most 253 bytes; messages stay within 1024") {
  CHECK(event_name("web", 0xab) == "web.00000000000000ab");
  const std::string long_name = event_name(std::string(250, 'a'), 1);
  CHECK(long_name.size() <= 253);
  // A cut that would end in '.' or '-' backs up to an alphanumeric.
  const std::string dotted = event_name(std::string(235, 'a') + ".-.-" + std::string(20, 'b'), 1);
  CHECK(dotted.size() <= 253);
  CHECK(dotted.find("..") == std::string::npos);
  CHECK(dotted.find("-.") == std::string::npos);

  Event e = denial("web");
  e.message = std::string(1020, 'm') + "\xE2\x80\xA6 and more" + std::string(100000, 'm');
  const json j = json::parse(encode_event(e, "web.1", "t", "sigil", std::string(500, 'i')));
  const std::string cut = j["message"].get<std::string>();
  CHECK(cut.size() <= kMaxEventMessage);
  CHECK(cut == std::string(1020, 'm') + "\xE2\x80\xA6");  // never half of a UTF-8 sequence
  CHECK(j["reportingInstance"].get<std::string>().size() <= 128);
  Event nl = denial("web");
  nl.message = "line one\nline two \xE2\x80\xA6";
  const json k = json::parse(encode_event(nl, "web.1", "t", "sigil", "i"));
  CHECK(k["message"] == "line one?line two \xE2\x80\xA6");
}

TEST_CASE("the recorder sends one Event, off the caller's thread") {
  FakeApi api;
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  EventRecorderOptions o;
  o.instance = "sigil-0";
  EventRecorder rec(client, o);
  CHECK(rec.record(denial("web-5d9f")) == EventRecorder::Outcome::queued);
  REQUIRE(eventually([&] { return rec.stats().sent == 1; }));
  REQUIRE(api.count("POST", "/api/v1/namespaces/team-a/events") == 1);
  const Seen post = api.seen().back();
  const json ev = json::parse(post.body);
  CHECK(ev["involvedObject"]["name"] == "web-5d9f");
  CHECK(ev["involvedObject"]["kind"] == "ReplicaSet");
  CHECK(ev["message"] == denial("x").message);
  CHECK(ev["metadata"]["name"].get<std::string>().rfind("web-5d9f.", 0) == 0);
  CHECK(ev["reportingInstance"] == "sigil-0");
}

TEST_CASE("record() from a coroutine on the client's own executor (as an admission calls it)") {
  FakeApi api;
  Loop loop(1);  // one thread: the caller and the worker share it
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  EventRecorder rec(client, {});
  auto call = [&rec]() -> boost::asio::awaitable<int> {
    co_return static_cast<int>(rec.record(denial("inline")));
  };
  CHECK(loop.run(call()) == static_cast<int>(EventRecorder::Outcome::queued));
  REQUIRE(eventually([&] { return rec.stats().sent == 1; }));
}

TEST_CASE("a burst of 100 identical denials makes one Event; another reason or object its own") {
  FakeApi api;
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  FakeClock clock;
  EventRecorderOptions o;
  o.now = clock.fn();
  o.per_object_interval = std::chrono::minutes(5);
  EventRecorder rec(client, o);
  int queued = 0;
  for (int i = 0; i < 100; ++i) {
    if (rec.record(denial("web-5d9f")) == EventRecorder::Outcome::queued) ++queued;
  }
  CHECK(queued == 1);
  CHECK(rec.stats().rate_limited == 99);
  Event warned = denial("web-5d9f");
  warned.reason = "ImageVerificationWarning";
  CHECK(rec.record(warned) == EventRecorder::Outcome::queued);
  CHECK(rec.record(denial("other")) == EventRecorder::Outcome::queued);
  CHECK(rec.record(denial("web-5d9f", "team-b")) == EventRecorder::Outcome::queued);
  REQUIRE(eventually([&] { return rec.stats().sent == 4; }));
  CHECK(api.count("POST") == 4);

  // Within the interval: still limited; after it, one more.
  clock.ms += 4 * 60 * 1000;
  CHECK(rec.record(denial("web-5d9f")) == EventRecorder::Outcome::rate_limited);
  clock.ms += 61 * 1000;
  CHECK(rec.record(denial("web-5d9f")) == EventRecorder::Outcome::queued);
  REQUIRE(eventually([&] { return rec.stats().sent == 5; }));
}

TEST_CASE("a hostile stream of names: the LRU stays bounded and the global cap holds") {
  FakeApi api;
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  FakeClock clock;
  EventRecorderOptions o;
  o.now = clock.fn();
  o.max_keys = 64;
  o.burst = 10;
  o.per_second = 1;
  EventRecorder rec(client, o);
  int queued = 0, invalid = 0;
  for (int i = 0; i < 5000; ++i) {
    clock.ms += 10;  // 100 per second of fake time: ten times the global rate
    const std::string name = "pod-" + std::to_string(i) + std::string(200, 'x');
    const auto out = rec.record(denial(name));
    if (out == EventRecorder::Outcome::queued) ++queued;
    // Names Kubernetes would refuse are refused here, before they reach the LRU.
    if (rec.record(denial(std::string(300, 'y') + std::to_string(i))) ==
        EventRecorder::Outcome::invalid)
      ++invalid;
  }
  const auto st = rec.stats();
  CHECK(st.keys <= 64);
  CHECK(invalid == 5000);
  CHECK(st.invalid == 5000);
  // 50 s of fake time at 1/s plus a burst of 10: never more.
  CHECK(queued <= 10 + 50 + 1);
  CHECK(st.throttled + st.queue_full >= 5000 - 61);
}

TEST_CASE("one namespace's stream of denials leaves the other namespaces' Events through") {
  FakeApi api;
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  FakeClock clock;
  EventRecorderOptions o;
  o.now = clock.fn();
  o.per_second = 5;
  o.burst = 25;
  o.per_namespace_per_second = 1;
  o.per_namespace_burst = 10;
  o.max_namespaces = 8;
  EventRecorder rec(client, o);
  int tenant = 0, others = 0;
  for (int i = 0; i < 1000; ++i) {
    clock.ms += 10;  // 10 s of fake time: the tenant asks 100 a second
    if (rec.record(denial("flood-" + std::to_string(i), "tenant-x")) ==
        EventRecorder::Outcome::queued)
      ++tenant;
    if (i % 100 == 0 &&
        rec.record(denial("app-" + std::to_string(i), "team-a")) == EventRecorder::Outcome::queued)
      ++others;  // 1 a second from team-a
  }
  // The tenant gets its own burst and rate (10 + 10 s at 1/s), never the whole bucket.
  CHECK(tenant <= 10 + 10 + 1);
  CHECK(tenant >= 10 + 10 - 1);
  CHECK(others == 10);
  // Many namespaces: the buckets kept stay bounded.
  CHECK(rec.stats().namespaces == 2);
  for (int n = 0; n < 100; ++n) {
    clock.ms += 1000;
    CHECK(rec.record(denial("x", "ns-" + std::to_string(n))) == EventRecorder::Outcome::queued);
  }
  CHECK(rec.stats().namespaces == 8);
  rec.stop();
}

TEST_CASE("a hanging API server: record() returns at once, the queue is bounded, drops count") {
  FakeApi api;
  api.stall_ms = 20000;  // every POST of an Event on "stall" hangs
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  EventRecorderOptions o;
  o.queue_size = 4;
  o.burst = 100;
  o.post_timeout = std::chrono::seconds(30);
  EventRecorder rec(client, o);
  CHECK(rec.record(denial("stall")) == EventRecorder::Outcome::queued);
  // The POST is in flight and hangs; every later record() still answers, without waiting.
  REQUIRE(eventually([&] { return api.count("POST") == 0 && rec.stats().queued == 0; }));
  int queued = 0, full = 0;
  for (int i = 0; i < 20; ++i) {
    const auto out = rec.record(denial("stall-" + std::to_string(i)));
    if (out == EventRecorder::Outcome::queued) ++queued;
    if (out == EventRecorder::Outcome::queue_full) ++full;
  }
  CHECK(queued == 4);
  CHECK(full == 16);
  auto st = rec.stats();
  CHECK(st.sent == 0);
  CHECK(st.queued == 4);
  CHECK(st.queue_full == 16);
  // stop() drops the queue and cancels the hanging POST.
  rec.stop();
  REQUIRE(eventually([&] { return rec.stats().failed == 1; }));
  CHECK(rec.stats().queued == 0);
  CHECK(rec.record(denial("late")) == EventRecorder::Outcome::stopped);
}

TEST_CASE("the (object, reason) memory is an LRU of max_keys: the oldest is forgotten first") {
  FakeApi api;
  api.stall_ms = 20000;  // nothing needs to be sent: the first POST hangs, the rest wait
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  EventRecorderOptions o;
  o.max_keys = 64;
  o.burst = 1e9;
  o.per_namespace_burst = 1e9;
  o.queue_size = 100000;
  EventRecorder rec(client, o);
  REQUIRE(rec.record(denial("stall")) == EventRecorder::Outcome::queued);
  for (int i = 0; i < 500; ++i) {
    REQUIRE(rec.record(denial("pod-" + std::to_string(i))) == EventRecorder::Outcome::queued);
  }
  CHECK(rec.stats().keys == 64);
  // The newest are remembered (limited); the oldest were forgotten (queued anew).
  CHECK(rec.record(denial("pod-499")) == EventRecorder::Outcome::rate_limited);
  CHECK(rec.record(denial("pod-0")) == EventRecorder::Outcome::queued);
  CHECK(rec.stats().keys == 64);
  rec.stop();
}
