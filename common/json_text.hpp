// common/json_text.hpp: JSON text handled byte by byte, without a JSON library.
//
// Role: the two pieces of JSON text work several modules share. json_depth_ok runs before a
// DOM parser sees a body from the network, so a hostile body of a million '[' can neither
// exhaust the stack nor make us allocate a deep tree. append_json_string writes a string
// literal: for responses built on the hot path (admission) and for RFC 8785 canonical JSON
// (crypto), whose escaping rules are the same. Pure; depends on nothing.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sigil {

// False when brackets in `text` (outside string literals) nest deeper than max_depth. Does not
// validate the JSON otherwise: the parser that runs next does.
bool json_depth_ok(std::string_view text, std::size_t max_depth) noexcept;

// Appends s as a JSON string literal, escaped as RFC 8785 section 3.2.2.2 prescribes: '"' and
// '\', the five C0 controls with a short form (\b \f \n \r \t) in it, the other C0
// controls as \u00xx in lowercase hex, everything else copied ('/' and U+007F included).
// Well-formed UTF-8 is copied as is; each byte that does not start a well-formed sequence
// (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF) becomes U+FFFD, so the result
// is valid JSON in valid UTF-8 whatever s holds.
void append_json_string(std::string& out, std::string_view s);

}  // namespace sigil
