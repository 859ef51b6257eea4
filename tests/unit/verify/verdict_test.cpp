// The typed Reason (names, transience, severity), README.md's reason table, the verdict
// cache's refusal of transient reasons, and the one line a verdict renders to.
#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "common/clock.hpp"
#include "verify/reason_map.hpp"
#include "verify/verdict.hpp"
#include "verify/verdict_cache.hpp"

using namespace sigil;
using verify::Reason;

namespace {

// The reason codes in the first column of README.md's "reason code" table: every `CODE` in
// backticks there ("`NO_SIGNING_TIME` / `TIMESTAMP_INVALID`" gives two).
std::set<std::string> readme_reason_codes() {
  std::ifstream in(std::string(SIGIL_SOURCE_DIR) + "/README.md");
  REQUIRE(in);
  std::set<std::string> codes;
  std::string line;
  bool in_table = false;
  while (std::getline(in, line)) {
    if (line.rfind("| reason code |", 0) == 0) {
      in_table = true;
      continue;
    }
    if (!in_table) continue;
    if (line.rfind("|", 0) != 0) break;  // the table ends at its first non-row line
    const size_t end = line.find('|', 1);
    const std::string first = line.substr(1, end == std::string::npos ? 0 : end - 1);
    size_t pos = 0;
    while ((pos = first.find('`', pos)) != std::string::npos) {
      const size_t close = first.find('`', pos + 1);
      if (close == std::string::npos) break;
      codes.insert(first.substr(pos + 1, close - pos - 1));
      pos = close + 1;
    }
  }
  return codes;
}

// What README.md and the cache promise: these, and only these, describe the moment.
const std::set<Reason> kTransient = {
    Reason::policy_unavailable,   Reason::image_not_found,    Reason::registry_auth,
    Reason::registry_unavailable, Reason::registry_integrity, Reason::timeout,
    Reason::budget_exceeded,      Reason::internal,
};

verify::Verdict verdict_for(Reason r) {
  verify::Verdict v = verify::denial("reg.test/team/app:v1", r, "why");
  v.policy = "team-images";
  v.digest = "sha256:" + std::string(64, 'a');
  if (r == Reason::none) v.outcome = verify::Outcome::allowed;
  if (r == Reason::warn) v.outcome = verify::Outcome::warned;
  return v;
}

}  // namespace

TEST_CASE("README.md's reason table lists every Reason, and only Reasons") {
  const std::set<std::string> readme = readme_reason_codes();
  REQUIRE(readme.size() > 10);  // the table was found
  std::set<std::string> ours;
  for (Reason r : verify::kAllReasons) {
    if (r == Reason::none) continue;
    const std::string code(verify::name(r));
    ours.insert(code);
    INFO(code);
    CHECK(readme.count(code) == 1);
  }
  for (const auto& code : readme) {
    INFO(code);
    CHECK(ours.count(code) == 1);
  }
}

TEST_CASE("every Reason has one stable name, and the name leads back to it") {
  // kAllReasons holds every enumerator once, in order (a Reason added to the enum but not to
  // the list would be missed by the README check above).
  for (size_t i = 0; i < std::size(verify::kAllReasons); ++i) {
    CHECK(static_cast<size_t>(verify::kAllReasons[i]) == i);
  }
  CHECK(static_cast<size_t>(Reason::internal) + 1 == std::size(verify::kAllReasons));

  std::set<std::string_view> names;
  for (Reason r : verify::kAllReasons) {
    const std::string_view n = verify::name(r);
    if (r == Reason::none) {
      CHECK(n.empty());
      CHECK_FALSE(verify::reason_named(n));
      continue;
    }
    INFO(std::string(n));
    CHECK_FALSE(n.empty());
    CHECK(names.insert(n).second);
    REQUIRE(verify::reason_named(n));
    CHECK(*verify::reason_named(n) == r);
  }
  // Pinned: logs, audit annotations and users' alerts match these strings.
  CHECK(verify::name(Reason::not_signed) == "NOT_SIGNED");
  CHECK(verify::name(Reason::registry_unavailable) == "REGISTRY_UNAVAILABLE");
  CHECK(verify::name(Reason::warn) == "WARN");
  CHECK_FALSE(verify::reason_named("WARNED"));
  CHECK_FALSE(verify::reason_named("not_signed"));
}

TEST_CASE("is_transient: the moment, never the image") {
  for (Reason r : verify::kAllReasons) {
    INFO(std::string(verify::name(r)));
    CHECK(verify::is_transient(r) == (kTransient.count(r) == 1));
  }
  CHECK(verify::is_transient(Reason::registry_unavailable));
  CHECK(verify::is_transient(Reason::timeout));
  CHECK_FALSE(verify::is_transient(Reason::not_signed));
  // A value outside the enum is never cached.
  CHECK(verify::is_transient(static_cast<Reason>(200)));
}

TEST_CASE("severity: every transient reason outranks every judgement; NOT_SIGNED is last") {
  for (Reason a : verify::kAllReasons) {
    for (Reason b : verify::kAllReasons) {
      if (verify::is_transient(a) && !verify::is_transient(b)) {
        INFO(std::string(verify::name(a)) + " over " + std::string(verify::name(b)));
        CHECK(verify::severity(a) > verify::severity(b));
      }
    }
  }
  CHECK(verify::severity(Reason::static_fail) > verify::severity(Reason::digest_mismatch));
  CHECK(verify::severity(Reason::digest_mismatch) > verify::severity(Reason::identity_mismatch));
  for (Reason r : verify::kAllReasons) {
    if (r == Reason::none || r == Reason::warn || r == Reason::not_signed) continue;
    INFO(std::string(verify::name(r)));
    CHECK(verify::severity(r) > verify::severity(Reason::not_signed));
  }
}

TEST_CASE("the verdict cache keeps judgements and refuses every transient reason") {
  ManualClock clock{std::chrono::system_clock::time_point(std::chrono::hours(24 * 365 * 50))};
  for (Reason r : verify::kAllReasons) {
    INFO(std::string(verify::name(r)));
    verify::VerdictCache cache(clock, 100, std::chrono::seconds(300), std::chrono::seconds(30));
    cache.put("k", verdict_for(r));
    const auto got = cache.get("k");
    if (kTransient.count(r)) {
      CHECK_FALSE(got);
    } else {
      REQUIRE(got);
      CHECK(got->cached);
      CHECK(got->reason == r);
    }
  }

  SECTION("a warning a registry failure gave is not kept") {
    verify::VerdictCache cache(clock, 100, std::chrono::seconds(300), std::chrono::seconds(30));
    verify::Verdict v = verdict_for(Reason::registry_unavailable);
    v.outcome = verify::Outcome::warned;
    v.warnings.push_back(v.primary());
    cache.put("k", v);
    CHECK_FALSE(cache.get("k"));
  }
  SECTION("a warning that rests on the moment is not kept, though the verdict reports WARN") {
    for (Reason transient : kTransient) {
      INFO(std::string(verify::name(transient)));
      verify::VerdictCache cache(clock, 100, std::chrono::seconds(300), std::chrono::seconds(30));
      verify::Verdict v = verdict_for(Reason::warn);
      v.warnings.push_back(verify::Finding{transient, "warn-images", "", "why", true});
      CHECK_FALSE(verify::is_cacheable(v));
      cache.put("k", v);
      CHECK_FALSE(cache.get("k"));
    }
    verify::Verdict judged = verdict_for(Reason::warn);
    judged.warnings.push_back(verify::Finding{Reason::not_signed, "warn-images", "", "why", true});
    CHECK(verify::is_cacheable(judged));
  }
  SECTION("a judgement marked not cacheable (a guess about the registry) is not kept") {
    verify::VerdictCache cache(clock, 100, std::chrono::seconds(300), std::chrono::seconds(30));
    verify::Verdict v = verdict_for(Reason::not_signed);
    v.cacheable = false;
    cache.put("k", v);
    CHECK_FALSE(cache.get("k"));
  }
  SECTION("a denial lives the negative TTL, an allow the TTL") {
    verify::VerdictCache cache(clock, 100, std::chrono::seconds(300), std::chrono::seconds(30));
    cache.put("deny", verdict_for(Reason::not_signed));
    cache.put("allow", verdict_for(Reason::none));
    clock.advance(std::chrono::seconds(31));
    CHECK_FALSE(cache.get("deny"));
    CHECK(cache.get("allow"));
  }
}

TEST_CASE("crypto failures and policy results map to reasons, failing closed") {
  using crypto::Failure;
  CHECK(verify::reason_for(Failure::malformed) == Reason::malformed_signature);
  CHECK(verify::reason_for(Failure::bad_signature) == Reason::bad_signature);
  CHECK(verify::reason_for(Failure::wrong_type) == Reason::bad_signature);
  CHECK(verify::reason_for(Failure::digest_mismatch) == Reason::digest_mismatch);
  CHECK(verify::reason_for(Failure::untrusted_certificate) == Reason::untrusted_certificate);
  CHECK(verify::reason_for(Failure::sct) == Reason::sct_invalid);
  CHECK(verify::reason_for(Failure::tlog) == Reason::tlog_invalid);
  CHECK(verify::reason_for(Failure::timestamp) == Reason::timestamp_invalid);
  CHECK(verify::reason_for(Failure::no_signing_time) == Reason::no_signing_time);
  CHECK(verify::reason_for(Failure::unsupported) == Reason::unsupported_signature);
  // A refusal that names no failure is a bug: never a pass, never a judgement that is cached.
  CHECK(verify::reason_for(Failure::none) == Reason::internal);

  policy::PolicyResult r;
  r.satisfied = true;
  r.unmet = policy::Unmet::none;
  CHECK(verify::reason_for(r) == Reason::none);
  r.satisfied = false;
  CHECK(verify::reason_for(r) == Reason::internal);  // not satisfied yet nothing unmet
  r.unmet = policy::Unmet::signature;
  r.signature_failure = Failure::tlog;
  CHECK(verify::reason_for(r) == Reason::tlog_invalid);
  r.unmet = policy::Unmet::unavailable;
  CHECK(verify::reason_for(r) == Reason::policy_unavailable);
  r.unmet = policy::Unmet::not_signed;
  CHECK(verify::reason_for(r) == Reason::not_signed);
}

TEST_CASE("a verdict renders to one line, whatever its fields hold") {
  for (Reason r : verify::kAllReasons) {
    INFO(std::string(verify::name(r)));
    verify::Verdict v = verdict_for(r);
    v.detail = "first line\nsecond line\r\nthird";
    v.containers = {"spec.containers[0] (app)", "spec.initContainers[0] (init)"};
    v.also.push_back(verify::Finding{Reason::not_signed, "other", "", "no\nsignatures", false});
    const std::string m = verify::message(v);
    CHECK_FALSE(m.empty());
    CHECK(m.find('\n') == std::string::npos);
    CHECK(m.find('\r') == std::string::npos);
    CHECK(m.find("reg.test/team/app:v1") != std::string::npos);
  }
  verify::Verdict d = verdict_for(Reason::not_signed);
  d.detail = "no signatures found (key authority 'release-key')";
  d.containers = {"spec.containers[0] (app)"};
  CHECK(verify::message(d) ==
        "image reg.test/team/app:v1 (spec.containers[0] app) (sha256:aaaaaaaaaaaa…) is not "
        "admitted by policy team-images: no signatures found (key authority 'release-key')");
  // A denial without a reason reports INTERNAL, never nothing.
  verify::Verdict bare;
  bare.image = "x";
  CHECK(verify::reported_reason(bare) == Reason::internal);
  CHECK(verify::message(bare).find("INTERNAL") != std::string::npos);
}
