// Fuzzes the Rekor parsers (cosign annotation, bundle tlog entry, entry body) and the SET,
// inclusion proof and checkpoint checks behind them: no input may verify against a log key
// made up here, whatever it claims.
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/rekor.hpp"

namespace {

using sigil::crypto::TransparencyLog;

TransparencyLog make_log(EVP_PKEY* pkey, const char* base_url) {
  TransparencyLog log;
  unsigned char* der = nullptr;
  int len = pkey ? i2d_PUBKEY(pkey, &der) : -1;
  if (len <= 0) __builtin_trap();
  std::string spki(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  EVP_PKEY_free(pkey);
  auto key = sigil::crypto::PublicKey::from_der(spki);
  if (!key) __builtin_trap();
  log.key = *key;
  log.log_id = sigil::crypto::sha256(spki);
  log.base_url = base_url;
  return log;
}

// An ECDSA log (Rekor v1 style) and an Ed25519 one (Rekor v2 style, origin log2025-1...).
const std::vector<TransparencyLog>& logs() {
  static const std::vector<TransparencyLog> l = {
      make_log(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), "https://rekor.sigstore.dev"),
      make_log(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"),
               "https://log2025-1.rekor.sigstore.dev")};
  return l;
}

void check_entry(const sigil::crypto::TlogEntry& e) {
  if (e.canonicalized_body.empty() || e.log_id.empty() || e.kind.empty()) __builtin_trap();
  if (e.inclusion_proof) {
    if (e.inclusion_proof->root_hash.size() != 32 || e.inclusion_proof->hashes.size() > 64) {
      __builtin_trap();
    }
    for (const auto& h : e.inclusion_proof->hashes) {
      if (h.size() != 32) __builtin_trap();
    }
  }
  for (const auto& base : logs()) {
    TransparencyLog log = base;
    log.log_id = e.log_id;  // get past the log id check to the signatures
    if (sigil::crypto::verify_signed_entry_timestamp(e, log).ok()) __builtin_trap();
    if (sigil::crypto::verify_inclusion_proof(e, log, /*require_checkpoint=*/true).ok()) {
      __builtin_trap();
    }
    // Without a checkpoint only the Merkle math is left, which a well-formed input may pass.
    (void)sigil::crypto::verify_inclusion_proof(e, log, /*require_checkpoint=*/false);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);

  if (auto a = sigil::crypto::parse_rekor_bundle_annotation(in)) {
    if (a->signed_entry_timestamp.empty() || a->inclusion_proof) __builtin_trap();
    check_entry(*a);
  }
  if (auto e = sigil::crypto::parse_bundle_tlog_entry(in)) check_entry(*e);

  if (auto b = sigil::crypto::parse_rekor_body(in)) {
    if (b->signatures.empty() || b->signatures.size() != b->verifiers.size()) __builtin_trap();
    size_t want = b->hash_algorithm == sigil::crypto::HashAlgorithm::sha256   ? 32
                  : b->hash_algorithm == sigil::crypto::HashAlgorithm::sha384 ? 48
                  : b->hash_algorithm == sigil::crypto::HashAlgorithm::sha512 ? 64
                                                                              : 0;
    if (b->hash.size() != want) __builtin_trap();
    for (const auto& v : b->verifiers) {
      if (v.der.empty()) __builtin_trap();
    }
  }

  for (const auto& log : logs()) {
    if (sigil::crypto::verify_checkpoint(in, log).ok()) __builtin_trap();
  }

  // The input as a proof: 8 bytes index, 8 bytes size, 32 bytes leaf, then 32-byte hashes.
  if (size >= 48) {
    int64_t index;
    int64_t tree_size;
    std::memcpy(&index, data, 8);
    std::memcpy(&tree_size, data + 8, 8);
    std::string_view leaf = in.substr(16, 32);
    std::vector<std::string> proof;
    for (size_t off = 48; off + 32 <= size && proof.size() < 80; off += 32) {
      proof.emplace_back(in.substr(off, 32));
    }
    auto root = sigil::crypto::merkle_root_from_inclusion_proof(index, tree_size, leaf, proof);
    if (root && root->size() != 32) __builtin_trap();
  }
  return 0;
}
