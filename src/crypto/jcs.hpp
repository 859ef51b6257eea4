// crypto/jcs.hpp: RFC 8785 JSON Canonicalization Scheme.
//
// Role: the exact bytes Rekor signs in a signed entry timestamp (and the canonical form of log
// entry bodies). Object members sorted by their UTF-16 code units, no insignificant
// whitespace, strings with the minimal escapes of RFC 8785 section 3.2.2.2 and non-ASCII kept
// as raw UTF-8, numbers in the ECMAScript Number.prototype.toString form. Pure: common and
// nlohmann only (nlohmann stays out of this header).
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace sigil::crypto {

// Parses json strictly (duplicate member names, invalid UTF-8 or lone surrogates, nesting
// deeper than 64 and inputs over 4 MiB are errors) and returns its canonical form. Numbers
// outside the IEEE 754 double range, NaN and infinities are errors.
Result<std::string> canonicalize_json(std::string_view json);

}  // namespace sigil::crypto
