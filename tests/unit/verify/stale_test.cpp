// cache.staleIfError's pure decision (verify/stale.hpp): which fresh failures a last-known-good
// allow may stand in for, the grace window's bounds, and the bounded store of last allows.
#include <catch2/catch.hpp>

#include "common/clock.hpp"
#include "verify/stale.hpp"

using namespace sigil;
using namespace sigil::verify;
using namespace std::chrono_literals;

namespace {

Verdict denied_for(Reason r) {
  Verdict v = denial("reg.test/team/app@sha256:" + std::string(64, 'a'), r, "something failed");
  v.digest = "sha256:" + std::string(64, 'a');
  return v;
}

Verdict allowed() {
  Verdict v;
  v.outcome = Outcome::allowed;
  v.image = "reg.test/team/app@sha256:" + std::string(64, 'a');
  v.digest = "sha256:" + std::string(64, 'a');
  v.report(Finding{Reason::none, "team-images", "release-key", "", false});
  return v;
}

const std::chrono::system_clock::time_point kStart{std::chrono::hours(24 * 365 * 50)};

}  // namespace

TEST_CASE("only 'could not reach' reasons let a last-known-good verdict stand in") {
  const Reason r = GENERATE(from_range(std::begin(kAllReasons), std::end(kAllReasons)));
  const bool unreachable = r == Reason::registry_unavailable || r == Reason::timeout;
  INFO(std::string(name(r)));
  CHECK(means_unreachable(r) == unreachable);
  if (r == Reason::none) return;  // a denial always reports a reason
  CHECK(may_stand_in(denied_for(r), true, false) == unreachable);
  CHECK(may_stand_in(denied_for(r), false, true) == unreachable);
}

TEST_CASE("never for a judgement, whichever finding carries it") {
  Verdict v = denied_for(Reason::registry_unavailable);
  CHECK(may_stand_in(v, true, false));
  SECTION("another policy refuses with BAD_SIGNATURE") {
    v.also.push_back(Finding{Reason::bad_signature, "other", "k", "no signature verifies", false});
    CHECK_FALSE(may_stand_in(v, true, false));
  }
  SECTION("a warn-mode policy's finding is an unknown identity") {
    v.warnings.push_back(Finding{Reason::identity_mismatch, "w", "k", "identity", true});
    CHECK_FALSE(may_stand_in(v, true, false));
  }
  SECTION("another policy could not be compiled") {
    v.also.push_back(Finding{Reason::policy_unavailable, "p", "", "cannot compile", false});
    CHECK_FALSE(may_stand_in(v, true, false));
  }
  SECTION("the fresh verdict admits or warns: nothing to stand in for") {
    v.outcome = Outcome::warned;
    CHECK_FALSE(may_stand_in(v, true, false));
    CHECK_FALSE(may_stand_in(allowed(), true, true));
  }
}

TEST_CASE("a tag stands in only with pinning on") {
  const Verdict v = denied_for(Reason::timeout);
  CHECK(may_stand_in(v, true, false));         // by digest
  CHECK(may_stand_in(v, false, true));         // by tag, pinned by /mutate
  CHECK_FALSE(may_stand_in(v, false, false));  // by tag, run unpinned
}

TEST_CASE("the grace window includes both ends and nothing outside") {
  const auto t0 = kStart;
  CHECK(within_grace(t0, t0, 1h));
  CHECK(within_grace(t0, t0 + 1h, 1h));
  CHECK_FALSE(within_grace(t0, t0 + 1h + 1ms, 1h));
  CHECK_FALSE(within_grace(t0, t0 - 1ms, 1h));  // verified "in the future": a clock stepped back
  CHECK_FALSE(within_grace(t0, t0, 0ms));       // off
  CHECK_FALSE(within_grace(t0, t0, -1s));
}

TEST_CASE("last known good: an allow is found within the grace period, then never again") {
  ManualClock clock(kStart);
  LastKnownGood lkg(clock, 10, 1h);
  REQUIRE(lkg.enabled());
  lkg.record("k", allowed());
  clock.advance(12min);
  auto found = lkg.find("k");
  REQUIRE(found);
  CHECK(found->age == 12min);
  CHECK(found->verdict.outcome == Outcome::allowed);
  CHECK_FALSE(lkg.find("other-key"));  // the key is everything a verdict depends on
  clock.advance(48min);                // exactly the grace period: still stands
  CHECK(lkg.find("k"));
  clock.advance(1ms);
  CHECK_FALSE(lkg.find("k"));
  CHECK(lkg.size() == 0);  // dropped
}

TEST_CASE(
    "last known good: a later judgement forgets the allow; a failure of the moment does not") {
  ManualClock clock(kStart);
  LastKnownGood lkg(clock, 10, 1h);
  lkg.record("k", allowed());
  SECTION("a registry failure keeps it") {
    lkg.record("k", denied_for(Reason::registry_unavailable));
    CHECK(lkg.find("k"));
  }
  SECTION("NOT_SIGNED (the signature was deleted) forgets it") {
    lkg.record("k", denied_for(Reason::not_signed));
    CHECK_FALSE(lkg.find("k"));
  }
  SECTION("BAD_SIGNATURE forgets it") {
    lkg.record("k", denied_for(Reason::bad_signature));
    CHECK_FALSE(lkg.find("k"));
  }
  SECTION("an allow built on a guess is not kept, and forgets nothing") {
    Verdict guess = allowed();
    guess.cacheable = false;
    clock.advance(10min);
    lkg.record("k", guess);
    auto found = lkg.find("k");
    REQUIRE(found);
    CHECK(found->age == 10min);  // still the earlier allow's time
  }
  SECTION("a newer allow refreshes the time") {
    clock.advance(50min);
    lkg.record("k", allowed());
    clock.advance(30min);
    CHECK(lkg.find("k"));
  }
}

TEST_CASE("last known good: a denial is never kept, and off by default") {
  ManualClock clock(kStart);
  LastKnownGood lkg(clock, 10, 1h);
  lkg.record("k", denied_for(Reason::not_signed));
  CHECK_FALSE(lkg.find("k"));
  LastKnownGood off(clock, 10, 0ms);
  CHECK_FALSE(off.enabled());
  off.record("k", allowed());
  CHECK_FALSE(off.find("k"));
}

TEST_CASE("last known good: bounded, the least recently used goes first") {
  ManualClock clock(kStart);
  LastKnownGood lkg(clock, 2, 1h);
  lkg.record("a", allowed());
  lkg.record("b", allowed());
  CHECK(lkg.find("a"));  // a is now the most recently used
  lkg.record("c", allowed());
  CHECK(lkg.size() == 2);
  CHECK(lkg.find("a"));
  CHECK_FALSE(lkg.find("b"));
  CHECK(lkg.find("c"));
}

TEST_CASE("a stale verdict warns in one line, reports the failure, and is never cached") {
  Verdict fresh = denied_for(Reason::registry_unavailable);
  fresh.image = "reg.test/team/app:v1@sha256:" + std::string(64, 'a');
  fresh.detail = "fetching signatures: registry reg.test could not be reached or failed";
  const Verdict v = stand_in(fresh, LastKnownGood::Found{allowed(), 12min + 30s}, 1h);
  CHECK(v.outcome == Outcome::warned);
  CHECK(v.reason == Reason::registry_unavailable);
  CHECK_FALSE(v.cacheable);
  REQUIRE(v.stale);
  CHECK(v.stale->age == 12min + 30s);
  CHECK(v.image == fresh.image);
  const auto lines = warning_lines(v);
  REQUIRE(lines.size() == 1);
  // The API server shows 120 characters of a warning: what happened comes first.
  CHECK(lines[0] ==
        "registry unreachable; admitted on a verdict from 12m ago (cache.staleIfError=1h): "
        "reg.test/team/app:v1@sha256:" +
            std::string(64, 'a'));
  CHECK(message(v) ==
        "image reg.test/team/app:v1@sha256:" + std::string(64, 'a') +
            ": fetching signatures: registry reg.test could not be reached or failed; admitted on "
            "a verdict from 12m ago (cache.staleIfError=1h)");
  Verdict timed_out = fresh;
  timed_out.reason = Reason::timeout;
  CHECK(warning_lines(stand_in(timed_out, LastKnownGood::Found{allowed(), 90s}, 2s))[0].rfind(
            "registry timed out; admitted on a verdict from 1m ago (cache.staleIfError=2s): ", 0) ==
        0);
}

TEST_CASE("durations read as people write them") {
  CHECK(duration_text(1h) == "1h");
  CHECK(duration_text(90min) == "90m");
  CHECK(duration_text(2s) == "2s");
  CHECK(duration_text(1500ms) == "1500ms");
  CHECK(age_text(45s) == "45s");
  CHECK(age_text(12min + 59s) == "12m");
  CHECK(age_text(1h + 30min + 5s) == "1h30m");
  CHECK(age_text(2h) == "2h");
}
