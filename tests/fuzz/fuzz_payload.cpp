// Fuzzes the simple-signing payload parser and the claim checks that follow a good signature.
#include <cstdint>
#include <string_view>

#include "crypto/cosign.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto p = sigil::crypto::parse_simple_signing(in);
  if (p) {
    // Touch every field so the sanitizers see the parsed strings.
    size_t n = p->type.size() + p->docker_manifest_digest.size() + p->docker_reference.size();
    for (const auto& [k, v] : p->optional) n += k.size() + v.size();
    if (n > size * 4 + 64) __builtin_trap();  // output cannot be much bigger than input
  }
  // The full check must fail cleanly for a key-less (empty) signature on any payload.
  sigil::crypto::Signature sig;
  sig.payload = std::string(in);
  sigil::crypto::PublicKey none;
  auto c = sigil::crypto::check_signature_with_key(
      sig, none, sigil::crypto::HashAlgorithm::sha256,
      "sha256:0000000000000000000000000000000000000000000000000000000000000000");
  if (c.ok) __builtin_trap();
  return 0;
}
