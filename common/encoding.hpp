// common/encoding.hpp: hex and base64 (standard alphabet, padded, as Go's StdEncoding).
//
// Role: byte <-> text conversions for digests and signatures. Pure; depends on nothing but
// common/result.hpp.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace sigil {

std::string hex_encode(std::string_view bytes);
// Accepts upper or lower case; rejects odd length and non-hex characters.
Result<std::string> hex_decode(std::string_view hex);
// True when s is non-empty lowercase hex.
bool is_lower_hex(std::string_view s) noexcept;

std::string base64_encode(std::string_view bytes);
// Strict standard base64 with padding; ASCII whitespace (as in PEM bodies) is skipped.
Result<std::string> base64_decode(std::string_view text);

// "sha256:0123456789ab…": the algorithm and the first 12 characters after it, for one-line
// messages. Control bytes become '?' (digests in messages may come from untrusted payloads);
// an empty digest reads "(empty)".
std::string short_digest(std::string_view digest);

// Outside text (from certificates, payloads, objects) made safe for a one-line message: at most
// max bytes, C0 controls, DEL and every non-ASCII byte as '?', and "…" when cut. ASCII only,
// so a cut never splits a UTF-8 sequence (JSON serializers refuse invalid UTF-8).
std::string printable(std::string_view s, size_t max = 200);

// Lowercases ASCII letters only.
std::string ascii_lower(std::string_view s);
// Removes leading and trailing ASCII whitespace.
std::string_view trim(std::string_view s) noexcept;

}  // namespace sigil
