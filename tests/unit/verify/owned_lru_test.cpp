// verify/owned_lru.hpp: an LRU map in which, once full, no owner takes more than its share from
// the others; and the verdict cache and last-known-good store built on it, owned by namespace.
#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "common/clock.hpp"
#include "verify/owned_lru.hpp"
#include "verify/stale.hpp"
#include "verify/verdict_cache.hpp"

using namespace sigil;
using namespace sigil::verify;
using namespace std::chrono_literals;

namespace {

// The same rules, written as plainly as possible: (key, owner, value), most recent first.
struct Model {
  size_t capacity, share;
  std::vector<std::tuple<std::string, std::string, int>> items;

  size_t owned(const std::string& owner) const {
    return static_cast<size_t>(std::count_if(
        items.begin(), items.end(), [&](const auto& i) { return std::get<1>(i) == owner; }));
  }
  int* find(const std::string& key) {
    auto it = std::find_if(items.begin(), items.end(),
                           [&](const auto& i) { return std::get<0>(i) == key; });
    if (it == items.end()) return nullptr;
    std::rotate(items.begin(), it, it + 1);
    return &std::get<2>(items.front());
  }
  void erase(const std::string& key) {
    items.erase(std::remove_if(items.begin(), items.end(),
                               [&](const auto& i) { return std::get<0>(i) == key; }),
                items.end());
  }
  // The least recently used item whose owner passes want, or items.end().
  template <class Want>
  std::vector<std::tuple<std::string, std::string, int>>::iterator oldest(Want want) {
    for (auto it = items.rbegin(); it != items.rend(); ++it) {
      if (want(std::get<1>(*it))) return std::next(it).base();
    }
    return items.end();
  }
  void put(const std::string& key, const std::string& owner, int value) {
    if (capacity == 0) return;
    erase(key);
    if (items.size() >= capacity) {
      auto victim = owned(owner) >= share
                        ? oldest([&](const std::string& o) { return o == owner; })
                        : oldest([&](const std::string& o) { return owned(o) > share; });
      if (victim == items.end()) victim = std::prev(items.end());
      items.erase(victim);
    }
    items.insert(items.begin(), {key, owner, value});
  }
};

Verdict allowed(const std::string& image) {
  Verdict v;
  v.outcome = Outcome::allowed;
  v.image = image;
  v.digest = "sha256:" + std::string(64, 'a');
  v.report(Finding{Reason::none, "team-images", "release-key", "", false});
  return v;
}

}  // namespace

TEST_CASE("owned LRU: once full, an owner at its share replaces its own entries") {
  OwnedLru<int> lru(8, 2);
  lru.put("a1", "team-a", 1);
  lru.put("a2", "team-a", 2);
  lru.put("b1", "team-b", 3);
  // Below full, anyone may hold more than a share.
  for (int i = 0; i < 5; ++i) lru.put("x" + std::to_string(i), "tenant-x", 10 + i);
  CHECK(lru.size() == 8);
  CHECK(lru.owned_by("tenant-x") == 5);
  // Full now: tenant-x, over its share, replaces its own least recently used, however many it
  // adds; team-a's and team-b's entries stay, whatever their age.
  for (int i = 5; i < 200; ++i) lru.put("x" + std::to_string(i), "tenant-x", 10 + i);
  CHECK(lru.size() == 8);
  CHECK(lru.owned_by("tenant-x") == 5);
  REQUIRE(lru.find("a1"));
  CHECK(*lru.find("a1") == 1);
  CHECK(lru.find("a2"));
  CHECK(lru.find("b1"));
  CHECK(lru.find("x199"));
  CHECK_FALSE(lru.find("x194"));
  // An owner below its share takes the least recently used of anyone's: here tenant-x's.
  lru.put("c1", "team-c", 4);
  CHECK(lru.owned_by("tenant-x") == 4);
  CHECK(lru.find("c1"));
  // Erasing an owner's last entry forgets the owner.
  lru.erase("b1");
  CHECK(lru.owned_by("team-b") == 0);
  CHECK(lru.size() == 7);
}

TEST_CASE("owned LRU: an owner that filled the map alone shrinks to its share as others come") {
  // After a restart, say, one tenant's pods are the first to run: it fills the whole map, and
  // keeps every entry in use. Everyone else's new entries still take room from it, not from
  // each other, until each of them holds its share (then each makes room among its own).
  OwnedLru<int> lru(40, 10);
  for (int i = 0; i < 40; ++i) lru.put("x" + std::to_string(i), "tenant-x", i);
  CHECK(lru.owned_by("tenant-x") == 40);
  for (int round = 0; round < 60; ++round) {
    for (int i = 0; i < 40; ++i) (void)lru.find("x" + std::to_string(i));  // all kept hot
    const std::string ns = "team-" + std::to_string(round % 3);
    lru.put(ns + "-" + std::to_string(round), ns, round);
  }
  CHECK(lru.owned_by("tenant-x") == 10);
  for (const char* ns : {"team-0", "team-1", "team-2"}) CHECK(lru.owned_by(ns) == 10);
  // The tenant's churn now makes room among its own entries only.
  for (int i = 100; i < 300; ++i) lru.put("x" + std::to_string(i), "tenant-x", i);
  CHECK(lru.owned_by("tenant-x") == 10);
  for (const char* ns : {"team-0", "team-1", "team-2"}) CHECK(lru.owned_by(ns) == 10);
}

TEST_CASE("owned LRU: a use refreshes an entry for its owner too") {
  OwnedLru<int> lru(4, 2);
  lru.put("a1", "a", 1);
  lru.put("a2", "a", 2);
  lru.put("b1", "b", 3);
  lru.put("b2", "b", 4);
  CHECK(lru.find("a1"));  // a2 is now a's least recently used
  lru.put("a3", "a", 5);
  CHECK(lru.find("a1"));
  CHECK_FALSE(lru.find("a2"));
  CHECK(lru.find("b1"));
  CHECK(lru.find("b2"));
}

TEST_CASE("owned LRU: the same as a plain model over random operations") {
  const size_t capacity = GENERATE(0, 1, 2, 5, 9);
  const size_t share = GENERATE(0, 1, 2, 4);
  OwnedLru<int> lru(capacity, share);
  Model model{capacity, std::max<size_t>(1, capacity > 0 ? std::min(share, capacity) : share), {}};
  std::mt19937 rng(static_cast<unsigned>(capacity * 31 + share));
  for (int step = 0; step < 4000; ++step) {
    const std::string key = "k" + std::to_string(rng() % 14);
    const std::string owner = "o" + std::to_string(rng() % 3);
    switch (rng() % 3) {
      case 0: {
        const int* got = lru.find(key);
        const int* want = model.find(key);
        REQUIRE((got == nullptr) == (want == nullptr));
        if (got != nullptr) REQUIRE(*got == *want);
        break;
      }
      case 1:
        lru.erase(key);
        model.erase(key);
        break;
      default:
        lru.put(key, owner, step);
        model.put(key, owner, step);
    }
    REQUIRE(lru.size() == model.items.size());
    for (const char* o : {"o0", "o1", "o2"}) REQUIRE(lru.owned_by(o) == model.owned(o));
  }
}

TEST_CASE("the verdict cache: a namespace's flood of verdicts pushes out only its own") {
  ManualClock clock{std::chrono::system_clock::time_point(std::chrono::hours(24 * 365 * 50))};
  VerdictCache cache(clock, 40, 300s, 30s);
  REQUIRE(cache.share() == 10);
  for (int i = 0; i < 20; ++i) cache.put("team-" + std::to_string(i), allowed("t"), "team-a");
  for (int i = 0; i < 5000; ++i) cache.put("flood-" + std::to_string(i), allowed("f"), "tenant-x");
  CHECK(cache.size() == 40);
  // tenant-x took the room nobody used, and none of team-a's.
  CHECK(cache.owned_by("tenant-x") == 20);
  for (int i = 0; i < 20; ++i) CHECK(cache.get("team-" + std::to_string(i)));
}

TEST_CASE("last known good: a namespace's flood of allows pushes out only its own") {
  ManualClock clock{std::chrono::system_clock::time_point(std::chrono::hours(24 * 365 * 50))};
  LastKnownGood lkg(clock, 40, 1h);
  for (int i = 0; i < 30; ++i) lkg.record("team-" + std::to_string(i), allowed("t"), "team-a");
  for (int i = 0; i < 5000; ++i) lkg.record("flood-" + std::to_string(i), allowed("f"), "tenant-x");
  CHECK(lkg.size() == 40);
  CHECK(lkg.owned_by("tenant-x") == 10);
  for (int i = 0; i < 30; ++i) CHECK(lkg.find("team-" + std::to_string(i)));
}
