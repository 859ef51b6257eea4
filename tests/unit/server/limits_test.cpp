// server/limits: the body budget and the connection table on their own (no sockets).
#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "server/limits.hpp"

using namespace sigil::server;
using namespace std::chrono_literals;

namespace {
constexpr size_t KiB = 1024;
}

TEST_CASE("body budget: large bodies leave the reserve to small ones", "[limits]") {
  // 1 MiB in all, bodies above 256 KiB may use 768 KiB of it.
  BodyBudget budget(1024 * KiB, 256 * KiB, 256 * KiB);
  CHECK(budget.large_limit() == 768 * KiB);
  BodyReservation a(budget), b(budget), small(budget);
  CHECK(b.grow_to(700 * KiB));    // a large body is charged its decode too: 12 times, at most
  CHECK(b.bytes() == 768 * KiB);  // 768 KiB
  BodyReservation c(budget);
  CHECK_FALSE(c.grow_to(257 * KiB));  // no room left for another large one
  CHECK(a.grow_to(60 * KiB));         // small bodies are charged their size
  CHECK(budget.in_use() == 828 * KiB);
  // Small bodies still fit, up to the whole capacity.
  CHECK(small.grow_to(196 * KiB));
  CHECK(budget.in_use() == 1024 * KiB);
  BodyReservation one_byte(budget);
  CHECK_FALSE(one_byte.grow_to(1));
}

TEST_CASE("body budget: a large body is charged what decoding it takes", "[limits]") {
  // 64 MiB in all (the chart's), 48 MiB for large bodies.
  constexpr size_t MiB = 1024 * KiB;
  BodyBudget budget(64 * MiB, 256 * KiB, 16 * MiB);
  CHECK(budget.charge(256 * KiB, 256 * KiB) == 256 * KiB);
  CHECK(budget.charge(1 * MiB, 1 * MiB) == 12 * MiB);
  CHECK(budget.charge(4 * MiB, 4 * MiB) == 48 * MiB);    // the most one request may hold
  CHECK(budget.charge(64 * KiB, SIZE_MAX) == 64 * KiB);  // chunked, still small
  // Four reviews of 1 MiB are decoded at once, not a fifth: a dozen 4 MiB reviews charged
  // their size alone took a replica past 512 Mi.
  std::vector<std::unique_ptr<BodyReservation>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<BodyReservation>(budget));
    CHECK(held.back()->grow_to(1 * MiB));
  }
  BodyReservation fifth(budget);
  CHECK_FALSE(fifth.grow_to(1 * MiB));
  // A small review still fits.
  BodyReservation review(budget);
  CHECK(review.grow_to(200 * KiB));
}

TEST_CASE("body budget: a body of unknown length (chunked) is large from its first byte",
          "[limits]") {
  BodyBudget budget(1024 * KiB, 256 * KiB, 256 * KiB);
  std::vector<std::unique_ptr<BodyReservation>> small;
  for (int i = 0; i < 7; ++i) {  // 700 KiB of small reviews with their Content-Length
    small.push_back(std::make_unique<BodyReservation>(budget));
    REQUIRE(small.back()->grow_to(100 * KiB));
  }
  BodyReservation chunked(budget);
  CHECK(chunked.grow_unknown_to(64 * KiB));        // 764 KiB: inside the large limit
  CHECK_FALSE(chunked.grow_unknown_to(69 * KiB));  // 769 KiB > 768 KiB, though it is small
  CHECK(chunked.bytes() == 64 * KiB);
  CHECK(chunked.grow_unknown_to(10 * KiB));  // never shrinks
  CHECK(chunked.bytes() == 64 * KiB);
  // A small body with its Content-Length still gets the reserve.
  BodyReservation review(budget);
  CHECK(review.grow_to(256 * KiB));
}

TEST_CASE("body budget: many small chunked bodies never starve a small review", "[limits]") {
  // The attack: many chunked bodies, each still small, growing slowly. Counted as small they
  // would fill the reserve too; counted as large they stop at the large limit.
  BodyBudget budget(1024 * KiB, 256 * KiB, 256 * KiB);
  std::vector<std::unique_ptr<BodyReservation>> attackers;
  size_t refused = 0;
  for (int i = 0; i < 80; ++i) {
    attackers.push_back(std::make_unique<BodyReservation>(budget));
    if (!attackers.back()->grow_unknown_to(16 * KiB)) ++refused;
  }
  CHECK(budget.in_use() == 768 * KiB);
  CHECK(refused == 80 - 48);
  BodyReservation review(budget);
  CHECK(review.grow_to(200 * KiB));
}

TEST_CASE("body budget: everything is given back", "[limits]") {
  BodyBudget budget(1024 * KiB, 256 * KiB, 256 * KiB);
  {
    BodyReservation a(budget), b(budget);
    REQUIRE(a.grow_to(300 * KiB));  // charged 768 KiB (limits.hpp: kDecodeFactor)
    REQUIRE(b.grow_to(100 * KiB));
    REQUIRE(b.grow_to(200 * KiB));
    CHECK(budget.in_use() == 968 * KiB);
  }
  CHECK(budget.in_use() == 0);
  BodyReservation c(budget);
  CHECK_FALSE(c.grow_to(769 * KiB));  // no single body may ever take more than large_limit
  CHECK(c.grow_to(768 * KiB));
}

TEST_CASE("connection table: the peer's own idlest idle connection makes room", "[limits]") {
  ConnectionTable t(ConnectionLimits{100, 3});
  const auto t0 = ConnectionTable::Clock::now();
  const auto a = t.admit("10.0.0.1", t0);
  const auto b = t.admit("10.0.0.1", t0 + 1s);
  const auto c = t.admit("10.0.0.1", t0 + 2s);
  const auto other = t.admit("10.0.0.9", t0 - 10s);  // idler, but another peer's
  REQUIRE((a.admitted && b.admitted && c.admitted && other.admitted));
  CHECK_FALSE(a.evict);
  t.set_busy(b.id, true, t0 + 3s);
  t.set_busy(b.id, false, t0 + 4s);  // b was used last: c is now idler than b
  const auto d = t.admit("10.0.0.1", t0 + 5s);
  REQUIRE(d.admitted);
  CHECK(d.at_peer_cap);
  CHECK_FALSE(d.at_global_cap);
  REQUIRE(d.evict);
  CHECK(*d.evict == a.id);
  CHECK(t.peer_count("10.0.0.1") == 3);
  const auto e = t.admit("10.0.0.1", t0 + 6s);
  REQUIRE(e.evict);
  CHECK(*e.evict == c.id);  // idle since 2 s; b since 4 s
  t.remove(a.id);
  t.remove(c.id);
  CHECK(t.peer_count("10.0.0.1") == 3);
  CHECK(t.size() == 4);
  CHECK(t.evictions() == 2);
}

TEST_CASE("connection table: busy connections are never evicted", "[limits]") {
  ConnectionTable t(ConnectionLimits{100, 2});
  const auto t0 = ConnectionTable::Clock::now();
  const auto a = t.admit("p", t0);
  const auto b = t.admit("p", t0 + 1s);
  t.set_busy(a.id, true, t0 + 2s);
  const auto c = t.admit("p", t0 + 3s);  // b is the only idle one
  REQUIRE(c.evict);
  CHECK(*c.evict == b.id);
  t.set_busy(c.id, true, t0 + 4s);
  const auto d = t.admit("p", t0 + 5s);  // a and c busy, b already leaving
  CHECK_FALSE(d.admitted);
  CHECK(t.refusals() == 1);
  t.set_busy(a.id, false, t0 + 6s);
  const auto e = t.admit("p", t0 + 7s);
  REQUIRE(e.admitted);
  REQUIRE(e.evict);
  CHECK(*e.evict == a.id);
}

TEST_CASE("connection table: at the global cap the idlest of anyone goes", "[limits]") {
  ConnectionTable t(ConnectionLimits{3, 10});
  const auto t0 = ConnectionTable::Clock::now();
  const auto a = t.admit("a", t0 + 2s);
  const auto b = t.admit("b", t0);
  const auto c = t.admit("c", t0 + 1s);
  (void)a;
  (void)c;
  const auto d = t.admit("d", t0 + 3s);
  REQUIRE(d.admitted);
  CHECK(d.at_global_cap);
  REQUIRE(d.evict);
  CHECK(*d.evict == b.id);
  CHECK(t.peer_count("b") == 0);
  CHECK(t.peer_count("d") == 1);
  // Every connection is picked at most once, and the live count never passes the cap.
  std::set<ConnectionTable::Id> evicted{*d.evict};
  for (int i = 0; i < 20; ++i) {
    const auto n = t.admit("x" + std::to_string(i), t0 + std::chrono::seconds(10 + i));
    REQUIRE(n.admitted);
    REQUIRE(n.evict);
    CHECK(evicted.insert(*n.evict).second);
  }
  for (auto id : evicted) t.remove(id);
  CHECK(t.size() == 3);
}
