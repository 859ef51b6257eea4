// verify/reason_map.hpp: typed outcomes of policy/ and crypto/ -> the Reason a verdict reports.
//
// Role: the one bridge from the pure modules' typed failures to verify::Reason (policy/ and
// crypto/ know no reason strings). Both maps are exhaustive switches without a default: a new
// failure in crypto::Failure or policy::Unmet does not compile until it is mapped here.
// Depends on crypto (sigstore.hpp's Failure) and policy (PolicyResult).
#pragma once

#include "crypto/sigstore.hpp"
#include "policy/policy.hpp"
#include "verify/verdict.hpp"

namespace sigil::verify {

// The reason a signature that failed crypto::verify_entity this way is refused for.
Reason reason_for(crypto::Failure failure) noexcept;
// The reason one policy refuses an image for: Reason::none when it is satisfied.
Reason reason_for(const policy::PolicyResult& result) noexcept;

}  // namespace sigil::verify
