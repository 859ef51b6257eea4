// crypto/rekor_detail.hpp: what the parts of the Rekor verifier share. PRIVATE to crypto/:
// included only by rekor.cpp (entries and signed entry timestamps), rekor_body.cpp (entry
// bodies), rekor_merkle.cpp (inclusion proofs) and rekor_checkpoint.cpp (signed notes).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "common/encoding.hpp"
#include "common/result.hpp"
#include "crypto/rekor.hpp"
#include "crypto/trust_root.hpp"

namespace sigil::crypto::detail {

inline constexpr size_t kHashSize = 32;  // SHA-256, the only Merkle hash Rekor uses

inline Error parse_err(std::string_view field, std::string_view what) {
  return make_error(Errc::parse_error, std::string(field) + " " + std::string(what));
}

inline Error verify_err(std::string message) {
  return make_error(Errc::verification, std::move(message));
}

inline Error prefixed(std::string_view doc, Error e) {
  e.message = std::string(doc) + ": " + e.message;
  return e;
}

inline std::string join(std::string_view path, std::string_view field) {
  if (path.empty()) return std::string(field);
  return std::string(path) + "." + std::string(field);
}

inline std::string short_hex(std::string_view raw) {
  return hex_encode(raw.substr(0, 6));
}

// The log as messages name it: its URL, else the start of its id.
std::string log_name(const TransparencyLog& log);

// Errc::verification unless the entry is from this log (same log id).
Status same_log(const TlogEntry& entry, const TransparencyLog& log);

}  // namespace sigil::crypto::detail
