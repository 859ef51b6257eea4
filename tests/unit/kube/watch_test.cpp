// The watch event parser and the incremental stream splitter.
#include <random>

#include <catch2/catch.hpp>

#include "kube/watch.hpp"

using namespace sigil;
using namespace sigil::kube;

namespace {

const std::string kAdded =
    R"J({"type":"ADDED","object":{"kind":"ClusterImagePolicy","metadata":{"name":"a","resourceVersion":"11"}}})J";
const std::string kModified =
    R"J({"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"12","generation":2}}})J";
const std::string kDeleted =
    R"J({"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"13"}}})J";
const std::string kBookmark =
    R"J({"type":"BOOKMARK","object":{"kind":"ClusterImagePolicy","apiVersion":"sigil.dev/v1alpha1","metadata":{"resourceVersion":"20"}}})J";
const std::string kGone =
    R"J({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5 (20)","reason":"Expired","code":410}})J";

}  // namespace

TEST_CASE("each event type parses") {
  auto a = parse_watch_event(kAdded);
  REQUIRE(a.ok());
  CHECK(a->type == EventType::added);
  CHECK(a->object.meta.name == "a");
  CHECK(a->object.meta.resource_version == "11");
  auto m = parse_watch_event(kModified);
  REQUIRE(m.ok());
  CHECK(m->type == EventType::modified);
  CHECK(m->object.meta.generation == 2);
  auto d = parse_watch_event(kDeleted);
  REQUIRE(d.ok());
  CHECK(d->type == EventType::deleted);
  auto b = parse_watch_event(kBookmark);
  REQUIRE(b.ok());
  CHECK(b->type == EventType::bookmark);
  CHECK(b->object.meta.resource_version == "20");
  CHECK(b->object.meta.name.empty());
  auto e = parse_watch_event(kGone);
  REQUIRE(e.ok());
  CHECK(e->type == EventType::error);
  CHECK(e->status.code == 410);
  CHECK(e->status.reason == "Expired");
}

TEST_CASE("bad events are errors") {
  auto bad =
      GENERATE(as<std::string>{}, "{}", R"J({"type":"ADDED"})J", R"J({"type":"ADDED","object":1})J",
               R"J({"type":"SYNC","object":{}})J", R"J({"type":5,"object":{}})J",
               R"J({"type":"ADDED","object":{"metadata":{}}})J",
               R"J({"type":"BOOKMARK","object":{"metadata":{}}})J", "[", "\"x\"");
  auto e = parse_watch_event(bad);
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().code == Errc::parse_error);
  CHECK(parse_watch_event(kAdded, 10).error().code == Errc::too_large);
}

TEST_CASE("a stream cut at every possible place yields the same events") {
  const std::string stream =
      kAdded + "\n" + kModified + "\n\n" + kBookmark + "\r\n" + kDeleted + "\n";
  for (size_t cut1 = 0; cut1 <= stream.size(); cut1 += 7) {
    for (size_t cut2 = cut1; cut2 <= stream.size(); cut2 += 13) {
      EventStreamParser p;
      std::vector<EventType> types;
      for (auto piece :
           {stream.substr(0, cut1), stream.substr(cut1, cut2 - cut1), stream.substr(cut2)}) {
        auto evs = p.feed(piece);
        REQUIRE(evs.ok());
        for (auto& e : *evs) types.push_back(e.type);
      }
      REQUIRE(types == std::vector<EventType>{EventType::added, EventType::modified,
                                              EventType::bookmark, EventType::deleted});
      CHECK_FALSE(p.mid_event());
    }
  }
}

TEST_CASE("one byte at a time, and all events in one chunk") {
  const std::string stream = kAdded + "\n" + kModified + "\n" + kDeleted + "\n";
  EventStreamParser bytewise;
  size_t n = 0;
  for (char c : stream) {
    auto evs = bytewise.feed(std::string_view(&c, 1));
    REQUIRE(evs.ok());
    n += evs->size();
  }
  CHECK(n == 3);
  EventStreamParser whole;
  auto evs = whole.feed(stream);
  REQUIRE(evs.ok());
  CHECK(evs->size() == 3);
}

TEST_CASE("an event larger than the cap poisons the parser before it is buffered whole") {
  EventStreamParser p(1024);
  auto first = p.feed(std::string(600, ' ') + "{\"type\":");
  REQUIRE(first.ok());
  auto over = p.feed(std::string(600, 'x'));
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().code == Errc::too_large);
  CHECK(p.buffered() == 0);
  CHECK_FALSE(p.feed(kAdded + "\n").ok());  // poisoned
}

TEST_CASE("a stream that ends mid-event is detected; a final event without newline is kept") {
  EventStreamParser cut;
  REQUIRE(cut.feed(kAdded + "\n" + kModified.substr(0, 20)).ok());
  CHECK(cut.mid_event());
  auto fin = cut.finish();
  REQUIRE_FALSE(fin.ok());
  CHECK(fin.error().message.find("middle of an event") != std::string::npos);

  EventStreamParser tail;
  REQUIRE(tail.feed(kAdded).ok());
  auto last = tail.finish();
  REQUIRE(last.ok());
  CHECK(last->size() == 1);
}

TEST_CASE("a malformed event in the middle fails the stream") {
  EventStreamParser p;
  auto evs =
      p.feed(kAdded + "\n{\"type\":\"ADDED\",\"object\":{\"metadata\":{}}}\n" + kDeleted + "\n");
  REQUIRE_FALSE(evs.ok());
  CHECK(evs.error().code == Errc::parse_error);
}
