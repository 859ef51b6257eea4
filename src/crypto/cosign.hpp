// crypto/cosign.hpp: cosign's signed objects: the simple-signing payload and a signature layer.
//
// Role: parse the payload bytes that cosign signs and check a layer's signature against a
// key and an expected image digest. Pure: common, crypto/keys and nlohmann only.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "crypto/keys.hpp"

namespace sigil::crypto {

inline constexpr std::string_view kCosignSignatureType = "cosign container image signature";
inline constexpr std::string_view kAnnotationSignature = "dev.cosignproject.cosign/signature";
inline constexpr std::string_view kAnnotationCertificate = "dev.sigstore.cosign/certificate";
inline constexpr std::string_view kAnnotationChain = "dev.sigstore.cosign/chain";
inline constexpr std::string_view kAnnotationBundle = "dev.sigstore.cosign/bundle";

struct SimpleSigningPayload {
  std::string type;                 // critical.type
  std::string docker_manifest_digest;  // critical.image.docker-manifest-digest
  std::string docker_reference;     // critical.identity.docker-reference (informational)
  std::map<std::string, std::string> optional;  // string-valued optional annotations
};

// Strict JSON parse; keys of `critical` matched case-insensitively as Go's decoder does.
Result<SimpleSigningPayload> parse_simple_signing(std::string_view payload);

// One signature as found in a registry (a layer of a legacy .sig manifest): the exact payload
// bytes (already checked against the layer digest by the fetcher) and the raw signature.
struct Signature {
  std::string payload;         // exact bytes that were signed
  std::string signature;       // raw (base64-decoded) signature bytes
  std::string certificate_pem; // keyless only; empty for key-signed
  std::string chain_pem;
  std::string bundle_json;     // Rekor bundle annotation, if any
  std::string source;          // where it came from, for messages ("sha256-ab.sig layer 0")
};

// The complete key-based check, in cosign's order: signature over the payload with key, then
// the payload claims: critical.type and docker-manifest-digest == expected_digest.
// Errors name what failed (Errc::verification) in one readable phrase.
Status verify_signature_with_key(const Signature& sig, const PublicKey& key, HashAlgorithm hash,
                                 std::string_view expected_digest);

}  // namespace sigil::crypto
