// verify/verdict.hpp: what verification answers for one image.
//
// Role: the Verdict value shared by the engine, the server and the command line: allowed,
// denied with a stable reason code and one line a person understands, or warned. A denial is
// a value, not an error. Small on purpose: the server includes this, not the engine.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sigil::verify {

enum class Outcome { allowed, denied, warned };

struct Verdict {
  Outcome outcome = Outcome::denied;
  std::string image;        // as written in the pod spec
  std::string digest;       // resolved digest, when known
  std::string reason_code;  // stable: NOT_SIGNED, BAD_SIGNATURE, DIGEST_MISMATCH, ... (README)
  std::string message;      // one line naming the image, the policy and why
  std::vector<std::string> warnings;
  bool cached = false;
  // False when the verdict rests on something that must not be remembered: a guess about the
  // registry (an ambiguous referrers answer), whatever the outcome.
  bool cacheable = true;
};

// True for reason codes that describe the moment (registry, deadline, budget, an unavailable
// policy, a bug), not the image: such verdicts are never cached, and the next admission tries
// again.
bool is_transient_reason(std::string_view reason_code) noexcept;

}  // namespace sigil::verify
