// verify/reason_map.cpp: see reason_map.hpp.
#include "verify/reason_map.hpp"

namespace sigil::verify {

Reason reason_for(crypto::Failure failure) noexcept {
  // One case per failure, on purpose: the compiler checks the switch is exhaustive.
  // NOLINTBEGIN(bugprone-branch-clone)
  switch (failure) {
    case crypto::Failure::malformed:
      return Reason::malformed_signature;
    case crypto::Failure::bad_signature:
      return Reason::bad_signature;
    // A payload that is not an image signature of ours (an attestation, another type): to
    // people a bad signature. Only policy/'s ranking tells it apart.
    case crypto::Failure::wrong_type:
      return Reason::bad_signature;
    case crypto::Failure::digest_mismatch:
      return Reason::digest_mismatch;
    case crypto::Failure::untrusted_certificate:
      return Reason::untrusted_certificate;
    case crypto::Failure::sct:
      return Reason::sct_invalid;
    case crypto::Failure::tlog:
      return Reason::tlog_invalid;
    case crypto::Failure::timestamp:
      return Reason::timestamp_invalid;
    case crypto::Failure::no_signing_time:
      return Reason::no_signing_time;
    case crypto::Failure::unsupported:
      return Reason::unsupported_signature;
    // A refusal that names no failure is a bug below: fail closed.
    case crypto::Failure::none:
      return Reason::internal;
  }
  // NOLINTEND(bugprone-branch-clone)
  return Reason::internal;
}

Reason reason_for(const policy::PolicyResult& result) noexcept {
  if (result.satisfied) return Reason::none;
  // One case per unmet kind, on purpose (exhaustive).
  // NOLINTBEGIN(bugprone-branch-clone)
  switch (result.unmet) {
    case policy::Unmet::unavailable:
      return Reason::policy_unavailable;
    case policy::Unmet::static_fail:
      return Reason::static_fail;
    case policy::Unmet::unsupported_digest:
      return Reason::unsupported_digest;
    case policy::Unmet::no_authority:
      return Reason::no_authority;
    case policy::Unmet::not_signed:
      return Reason::not_signed;
    case policy::Unmet::identity_mismatch:
      return Reason::identity_mismatch;
    case policy::Unmet::missing_attestation:
      return Reason::missing_attestation;
    case policy::Unmet::signature:
      return reason_for(result.signature_failure);
    case policy::Unmet::internal:
      return Reason::internal;
    case policy::Unmet::check_budget:
      return Reason::budget_exceeded;
    case policy::Unmet::out_of_time:
      return Reason::timeout;
    // Not satisfied, yet nothing unmet: a bug, never a pass.
    case policy::Unmet::none:
      return Reason::internal;
  }
  // NOLINTEND(bugprone-branch-clone)
  return Reason::internal;
}

}  // namespace sigil::verify
