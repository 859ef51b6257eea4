// ByteBudget and Reservation: all-or-nothing through a chain, given back exactly once.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "common/budget.hpp"
#include "common/clock.hpp"
#include "common/token_bucket.hpp"

using sigil::ByteBudget;
using sigil::Reservation;

TEST_CASE("a budget refuses what it cannot give and takes nothing then") {
  ByteBudget b(100);
  CHECK(b.try_take(60));
  CHECK_FALSE(b.try_take(41));
  CHECK(b.used() == 60);
  CHECK(b.try_take(40));
  CHECK_FALSE(b.try_take(1));
  b.give(100);
  CHECK(b.used() == 0);
  CHECK_FALSE(b.try_take(UINT64_MAX));  // no wrap-around
  CHECK(b.used() == 0);
}

TEST_CASE("a child budget takes from its parent, all or nothing") {
  auto shared = std::make_shared<ByteBudget>(100);
  ByteBudget& process = *shared;
  ByteBudget a(80, shared), b(80, shared);
  CHECK(a.try_take(70));
  // b has room of its own, the process does not: b keeps nothing.
  CHECK_FALSE(b.try_take(40));
  CHECK(b.used() == 0);
  CHECK(process.used() == 70);
  CHECK(b.try_take(30));
  CHECK(process.used() == 100);
  a.give(70);
  b.give(30);
  CHECK(process.used() == 0);
}

TEST_CASE("a reservation gives back on destruction, shrink and move, exactly once") {
  auto shared = std::make_shared<ByteBudget>(1000);
  ByteBudget& process = *shared;
  ByteBudget admission(500, shared);
  {
    Reservation r = Reservation::take(admission, 400);
    REQUIRE(r.ok());
    CHECK(process.used() == 400);
    CHECK_FALSE(Reservation::take(admission, 200).ok());
    CHECK(r.shrink_to(100));
    CHECK(admission.used() == 100);
    CHECK_FALSE(r.shrink_to(101));
    Reservation moved = std::move(r);
    CHECK(moved.bytes() == 100);
    CHECK(r.bytes() == 0);  // NOLINT(bugprone-use-after-move): the moved-from state is defined
    Reservation other = Reservation::take(admission, 50);
    other = std::move(moved);  // gives other's 50 back
    CHECK(admission.used() == 100);
  }
  CHECK(admission.used() == 0);
  CHECK(process.used() == 0);
}

TEST_CASE("concurrent takes never exceed the limit") {
  ByteBudget process(10000);
  std::vector<std::thread> ts;
  std::atomic<uint64_t> taken{0};
  std::atomic<bool> over{false};  // Catch2's assertions are not thread-safe: checked after
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        if (process.try_take(7)) {
          taken += 7;
          if (process.used() > process.limit()) over = true;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK_FALSE(over.load());
  CHECK(taken.load() == process.used());
  CHECK(process.used() <= 10000);
}

TEST_CASE("an empty, refused or released reservation holds nothing and gives nothing back") {
  ByteBudget b(100);
  Reservation none;
  CHECK_FALSE(none.shrink_to(0));
  Reservation refused = Reservation::take(b, 101);
  CHECK_FALSE(refused.ok());
  CHECK_FALSE(refused.shrink_to(0));
  CHECK(b.used() == 0);
  Reservation r = Reservation::take(b, 60);
  REQUIRE(r.ok());
  Reservation other = Reservation::take(b, 30);
  REQUIRE(other.ok());
  r.release();
  CHECK_FALSE(r.ok());
  CHECK(r.bytes() == 0);
  CHECK(b.used() == 30);
  CHECK_FALSE(r.shrink_to(0));
  r.release();  // a second time gives back nothing more
  CHECK(b.used() == 30);
  Reservation moved = std::move(r);
  CHECK(moved.bytes() == 0);
  moved.release();
  CHECK(b.used() == 30);
}

TEST_CASE("a budget with a second parent takes from both, all or nothing") {
  auto process = std::make_shared<ByteBudget>(10);
  auto shared = std::make_shared<ByteBudget>(6);  // what one kind of use shares of it
  ByteBudget mine(100, process, shared);
  ByteBudget other(100, process);  // another kind: the process only
  CHECK(mine.try_take(6));
  CHECK_FALSE(mine.try_take(1));  // the shared pool is full; nothing is kept of the attempt
  CHECK(process->used() == 6);
  CHECK(shared->used() == 6);
  CHECK(mine.used() == 6);
  CHECK(other.try_take(4));  // the rest of the process stays for the other kind
  CHECK_FALSE(other.try_take(1));
  mine.give(6);
  CHECK(shared->used() == 0);
  CHECK(process->used() == 4);
  CHECK(mine.parent() == process.get());
}

TEST_CASE(
    "a rate budget holds burst at most, gets per_second back; a clock step back neither gives nor "
    "freezes") {
  using namespace std::chrono_literals;
  sigil::ManualClock clock(std::chrono::system_clock::time_point(1000s));
  sigil::RateBudget r(100, 300);
  CHECK(r.full(clock.now()));
  CHECK(r.try_spend(250, clock.now()));
  CHECK_FALSE(r.try_spend(51, clock.now()));  // 50 left: all or nothing
  CHECK(r.try_spend(50, clock.now()));
  CHECK_FALSE(r.try_spend(1, clock.now()));
  clock.advance(500ms);  // 50 back
  CHECK_FALSE(r.try_spend(51, clock.now()));
  CHECK(r.try_spend(50, clock.now()));
  CHECK_FALSE(r.full(clock.now()));
  // A clock that steps back refills nothing.
  CHECK_FALSE(r.try_spend(1, clock.now() - 60s));
  clock.advance(1h);  // never more than burst
  CHECK(r.full(clock.now()));
  // Stepped back, the units held are still there (nothing is taken away either), and time counts
  // on from the earlier reading: no refill is lost until the clock is back where it was.
  const auto back = clock.now() - 60s;
  CHECK(r.try_spend(10, back));
  CHECK(r.try_spend(290, back));
  CHECK_FALSE(r.try_spend(1, back));
  CHECK(r.try_spend(100, back + 1s));
  CHECK_FALSE(r.try_spend(1, back + 1s));
}

TEST_CASE("a work budget with a share spends from both and says which refused") {
  using namespace std::chrono_literals;
  sigil::ManualClock clock(std::chrono::system_clock::time_point(1000s));
  auto share = std::make_shared<sigil::RateBudget>(10, 30);
  sigil::WorkBudget a(25, share, clock);
  CHECK(a.try_spend(20));
  CHECK_FALSE(a.try_spend(6));  // the admission's own limit: not the share's doing
  CHECK_FALSE(a.share_refused());
  CHECK(a.spent() == 20);
  // A second admission of the namespace: its own limit is fresh, the share is not.
  sigil::WorkBudget b(25, share, clock);
  CHECK_FALSE(b.try_spend(11));
  CHECK(b.share_refused());
  CHECK(b.spent() == 0);  // given back: nothing was checked
  CHECK(b.try_spend(10));
  REQUIRE(b.share() == share.get());
  clock.advance(2s);
  CHECK(b.try_spend(15));
  CHECK(b.spent() == 25);
}

TEST_CASE("a token bucket starts full at any time, takes all or nothing, and a step back stalls") {
  using namespace std::chrono_literals;
  using Steady = std::chrono::steady_clock::time_point;
  const Steady t0(1000s);
  sigil::TokenBucket<Steady> b(2, 5);  // 2 a second, 5 at most
  CHECK(b.full(t0 + 1h));              // the first reading only records the time
  CHECK(b.available(t0) == 5);  // a reading earlier than the first gives nothing and takes nothing
  CHECK(b.try_take(4, t0));
  CHECK_FALSE(b.try_take(2, t0));  // 1 left
  CHECK(b.available(t0) == 1);
  b.take(1);
  CHECK(b.available(t0 + 1500ms) == 3);  // 1.5 s at 2 a second
  CHECK(b.available(t0 + 1h) == 5);      // never more than burst
  b.take(5);
  CHECK(b.available(t0) == 0);  // stepped back: nothing back, and counts on from t0
  CHECK(b.available(t0 + 1s) == 2);
  CHECK(b.rate() == 2);
  CHECK(b.burst() == 5);
}

TEST_CASE("a token bucket: a reading a little older than the last refills nothing twice") {
  using namespace std::chrono_literals;
  using Steady = std::chrono::steady_clock::time_point;
  const Steady t0(1000s);
  sigil::TokenBucket<Steady> b(100, 100);
  CHECK(b.try_take(100, t0 + 1s));
  // Two threads read t0 + 1.5 s and t0 + 1.49 s; the later reading got the lock first.
  CHECK(b.available(t0 + 1500ms) == 50);
  CHECK(b.available(t0 + 1490ms) == 50);  // late: nothing, and time does not go back
  CHECK(b.available(t0 + 1500ms) == 50);  // so the 10 ms between are not counted again
}
