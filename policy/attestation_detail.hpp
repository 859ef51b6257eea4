// policy/attestation_detail.hpp: judging an authority's attestations. PRIVATE to policy/:
// included by judge.cpp and attestation.cpp only.
#pragma once

#include <string>
#include <string_view>

#include "crypto/sigstore.hpp"
#include "policy/policy.hpp"

namespace sigil::policy::detail {

// How far a refusal got through the checks (judge.cpp): the higher, the more a person can act
// on it. Shared so that an attestation's refusal competes fairly with a signature's.
int progress(Unmet unmet, crypto::Failure failure);

// "keyless" or "key", for messages (judge.cpp).
const char* kind_word(const Authority& a);

// Whether the authority's signatureFormat admits this entity: legacy .sig layers have bundle
// minor version 0, bundles a non-zero one (judge.cpp).
bool format_allows(const Authority& a, const crypto::SignedEntity& e);

// Spends JudgeLimits for one judge() call: allow() before each check takes its cost, and once
// it says no, stopped says why (Unmet::check_budget or Unmet::out_of_time) and no further
// check runs.
class Meter {
 public:
  explicit Meter(const JudgeLimits& limits) noexcept : limits_(limits) {}
  bool allow(const Authority& a);
  Unmet stopped() const noexcept { return stopped_; }
  size_t checks() const noexcept { return checks_; }  // allowed so far

 private:
  const JudgeLimits& limits_;
  Unmet stopped_ = Unmet::none;
  size_t checks_ = 0;
};

// The outcome of one authority with attestations for one image digest.
struct AttestationOutcome {
  bool satisfied = false;
  Unmet unmet = Unmet::missing_attestation;  // or signature, identity_mismatch
  crypto::Failure failure = crypto::Failure::none;
  std::string message;  // one phrase naming the first missing predicate type
};

// Every predicate type of a.attestations must have a DSSE in-toto statement in `evidence` (a
// legacy .att layer or a bundle) that verifies with the authority's requirements (key or
// certificate chain, Rekor, SCT, timestamps), comes from an accepted identity (keyless) and
// names `digest` as a subject. Each check is metered: once the meter stops, an attestation
// not yet verified leaves the outcome unmet with meter.stopped(). Never throws.
AttestationOutcome judge_attestations(const Authority& a, std::string_view digest,
                                      const Evidence& evidence, Meter& meter);

}  // namespace sigil::policy::detail
