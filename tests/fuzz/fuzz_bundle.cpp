// Fuzzes the sigstore bundle parser and checks the structural rules it promises.
#include <cstdint>
#include <string_view>

#include "crypto/bundle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto b = sigil::crypto::parse_bundle(in);
  if (!b) return 0;
  if (b->minor_version < 1 || b->minor_version > 3 || b->media_type.empty()) __builtin_trap();
  // Exactly one kind of verification material.
  if (b->has_public_key == !b->certificates_der.empty()) __builtin_trap();
  if (!b->has_public_key && !b->public_key_hint.empty()) __builtin_trap();
  if (b->minor_version == 3 && b->certificates_der.size() > 1) __builtin_trap();  // no chains
  for (const auto& c : b->certificates_der) {
    if (c.empty()) __builtin_trap();
  }
  for (const auto& t : b->rfc3161_timestamps) {
    if (t.empty()) __builtin_trap();
  }
  for (const auto& e : b->tlog_entries) {
    if (e.log_id.empty() || e.canonicalized_body.empty() || e.kind.empty() || e.version.empty()) {
      __builtin_trap();
    }
    if (b->minor_version == 1 && e.signed_entry_timestamp.empty()) __builtin_trap();
    if (b->minor_version >= 2 && !e.inclusion_proof) __builtin_trap();
    if (e.inclusion_proof) {
      if (e.inclusion_proof->root_hash.size() != 32 || e.inclusion_proof->hashes.size() > 64) {
        __builtin_trap();
      }
    }
  }
  if (b->content == sigil::crypto::Bundle::Content::dsse) {
    if (b->envelope.signatures.empty() || b->envelope.payload_type.empty()) __builtin_trap();
  } else if (b->signature.empty()) {
    __builtin_trap();
  }
  return 0;
}
