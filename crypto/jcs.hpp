// crypto/jcs.hpp: RFC 8785 JSON Canonicalization Scheme.
//
// Role: the exact bytes Rekor signs in a signed entry timestamp (and the canonical form of log
// entry bodies). Object members sorted by their UTF-16 code units, no insignificant
// whitespace, strings with the minimal escapes of RFC 8785 section 3.2.2.2 and non-ASCII kept
// as raw UTF-8, numbers in the ECMAScript Number.prototype.toString form. Pure: common and
// nlohmann only (in the .cpp; the shared strict reader is in crypto/json_detail.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace sigil::crypto {

// Parses json strictly (duplicate member names, invalid UTF-8 or lone surrogates, nesting
// deeper than 64, a leading byte order mark and inputs over 4 MiB are errors) and returns its
// canonical form. Numbers are read as IEEE 754 doubles, as RFC 8785 requires (integers beyond
// 2^53 are rounded); numbers outside the double range are errors (JSON has no NaN or
// infinity). Errc::too_large for the size cap, Errc::parse_error otherwise. Never throws.
Result<std::string> canonicalize_json(std::string_view json);

// The ECMAScript Number.prototype.toString form of a finite double ("1e+21", "0.000001",
// "1e-7", "-0" -> "0"), as RFC 8785 section 3.2.2.3 serializes numbers. Exposed for tests;
// "" for NaN and infinities.
std::string ecmascript_number(double value);

}  // namespace sigil::crypto
