// Fuzzes public key loading (PEM and DER) and, when a key loads, a signature check with it.
#include <cstdint>
#include <string_view>

#include "crypto/keys.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (auto key :
       {sigil::crypto::PublicKey::from_pem(in), sigil::crypto::PublicKey::from_der(in)}) {
    if (!key) continue;
    // Round trip: the canonical SPKI we store must load back to the same key.
    auto again = sigil::crypto::PublicKey::from_der(key->spki_der());
    if (!again || again->spki_der() != key->spki_der() || again->type() != key->type()) {
      __builtin_trap();
    }
    // A random signature must never verify; the call must fail cleanly.
    std::string_view sig = in.substr(0, in.size() < 72 ? in.size() : 72);
    if (key->verify("message", sig).ok()) __builtin_trap();
  }
  return 0;
}
