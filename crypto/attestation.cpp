// crypto/attestation.cpp: a legacy cosign attestation layer (sha256-<hex>.att) -> the
// SignedEntity shape verify_entity checks (one per envelope signature).
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "crypto/dsse.hpp"
#include "crypto/sigstore.hpp"

namespace sigil::crypto {

Result<std::vector<SignedEntity>> entities_from_attestation_layer(std::string_view envelope_json,
                                                                  const Signature& annotations,
                                                                  size_t max_signatures) {
  try {
    auto env = parse_dsse_envelope(envelope_json);
    if (!env) return std::move(env).error();
    // The annotations (certificate, chain, Rekor bundle, RFC 3161) read exactly as for a .sig.
    auto base = entity_from_legacy(annotations);
    if (!base) return std::move(base).error();
    base->kind = SignedEntity::Kind::dsse;
    base->payload_type = env->payload_type;
    base->payload = std::move(env->payload);
    base->timestamped = std::string(envelope_json);
    base->signature_count_ok = true;
    std::vector<SignedEntity> out;
    const size_t n = env->signatures.size();
    for (size_t i = 0; i < n && i < max_signatures; ++i) {
      SignedEntity e = *base;
      e.signature = std::move(env->signatures[i].sig);
      if (n > 1) e.source += " signature " + std::to_string(i);
      out.push_back(std::move(e));
    }
    return out;
  } catch (const std::exception& ex) {
    return make_error(Errc::parse_error, std::string("attestation layer: ") + ex.what());
  }
}

}  // namespace sigil::crypto
