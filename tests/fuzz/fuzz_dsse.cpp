// Fuzzes the DSSE envelope and in-toto statement parsers, the PAE encoding, and a legacy .att
// layer read into entities (crypto/attestation.cpp).
#include <cstdint>
#include <string>
#include <string_view>

#include "crypto/dsse.hpp"
#include "crypto/sigstore.hpp"

namespace {

void check_statement(std::string_view text) {
  auto st = sigil::crypto::parse_in_toto_statement(text);
  if (!st) return;
  if (st->subjects.empty()) __builtin_trap();
  if (st->type != sigil::crypto::kInTotoStatementV01 &&
      st->type != sigil::crypto::kInTotoStatementV1) {
    __builtin_trap();
  }
  // Every non-empty digest a subject states binds the statement, in either case.
  for (const auto& sub : st->subjects) {
    for (const auto& [alg, hex] : sub.digest) {
      if (hex.empty()) continue;
      if (!sigil::crypto::statement_binds(*st, alg, hex)) __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto env = sigil::crypto::parse_dsse_envelope(in);
  if (env) {
    if (env->payload_type.empty() || env->signatures.empty()) __builtin_trap();
    for (const auto& s : env->signatures) {
      if (s.sig.empty()) __builtin_trap();
    }
    std::string pae = sigil::crypto::dsse_pae(env->payload_type, env->payload);
    std::string head = "DSSEv1 " + std::to_string(env->payload_type.size()) + " ";
    if (pae.compare(0, head.size(), head) != 0) __builtin_trap();
    if (pae.size() != head.size() + env->payload_type.size() + 1 +
                          std::to_string(env->payload.size()).size() + 1 + env->payload.size()) {
      __builtin_trap();
    }
    check_statement(env->payload);
  }
  // A .att layer: exactly one entity per envelope signature (capped), each the envelope's.
  sigil::crypto::Signature annotations;
  auto att = sigil::crypto::entities_from_attestation_layer(in, annotations, 4);
  if (att.ok() != env.ok()) __builtin_trap();
  if (att) {
    if (att->empty() || att->size() > 4) __builtin_trap();
    for (const auto& e : *att) {
      if (e.kind != sigil::crypto::SignedEntity::Kind::dsse || e.timestamped != in)
        __builtin_trap();
    }
  }
  check_statement(in);
  return 0;
}
