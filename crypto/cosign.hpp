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
inline constexpr std::string_view kAnnotationRfc3161 = "dev.sigstore.cosign/rfc3161timestamp";

// The raw signature in a .sig layer's `dev.cosignproject.cosign/signature` annotation, decoded
// as cosign (Go's base64.StdEncoding) decodes it. Errc::parse_error when it is not that.
Result<std::string> decode_signature_annotation(std::string_view text);

struct SimpleSigningPayload {
  std::string type;                    // critical.type
  std::string docker_manifest_digest;  // critical.image.docker-manifest-digest
  std::string docker_reference;        // critical.identity.docker-reference (informational)
  std::map<std::string, std::string> optional;  // string-valued optional annotations
};

// Strict JSON parse; keys of `critical` matched case-insensitively as Go's decoder does.
// Required: critical (object), critical.type (string), critical.image (object),
// critical.image.docker-manifest-digest (string). Optional: critical.identity (object or null)
// with docker-reference (string or null); optional (object or null; only string values kept).
// Unknown keys are ignored (as Go does); duplicate keys are rejected; inputs over 1 MiB are
// Errc::too_large. Wrong types are Errc::parse_error naming the field.
Result<SimpleSigningPayload> parse_simple_signing(std::string_view payload);

// One signature as found in a registry (a layer of a legacy .sig manifest): the exact payload
// bytes (already checked against the layer digest by the fetcher) and the raw signature.
struct Signature {
  std::string payload;          // exact bytes that were signed
  std::string signature;        // raw (base64-decoded) signature bytes
  std::string certificate_pem;  // keyless only; empty for key-signed
  std::string chain_pem;
  std::string bundle_json;   // Rekor bundle annotation, if any
  std::string source;        // where it came from, for messages ("sha256-ab.sig layer 0")
  std::string rfc3161_json;  // {"SignedRFC3161Timestamp":"<b64 DER>"} annotation, if any
};

// Why a key-based signature check failed, for callers that map failures to reason codes
// (bad_signature -> BAD_SIGNATURE, digest_mismatch -> DIGEST_MISMATCH, ...).
enum class SignatureFailure {
  none,               // the check passed (ok == true)
  bad_signature,      // empty signature, or it does not verify with the key
  wrong_type,         // critical.type is not kCosignSignatureType
  digest_mismatch,    // critical.image.docker-manifest-digest != expected digest
  malformed_payload,  // the signature verified but the payload is not a simple-signing document
  invalid_argument,   // the caller's expected digest is not "<alg>:<lowercase hex>"
};
const char* signature_failure_name(SignatureFailure f) noexcept;

struct SignatureCheck {
  bool ok = false;  // fail closed: a default-constructed check is a failure
  SignatureFailure failure = SignatureFailure::bad_signature;
  std::string message;           // one readable phrase naming what failed; empty when ok
  SimpleSigningPayload payload;  // the signed claims: when ok, wrong_type or digest_mismatch
};

// The complete key-based check, in cosign's order: (1) signature over the exact payload bytes
// with key and hash, (2) critical.type, (3) docker-manifest-digest == expected_digest exactly.
// Digests in messages are shortened to 12 hex characters. Never throws.
SignatureCheck check_signature_with_key(const Signature& sig, const PublicKey& key,
                                        HashAlgorithm hash, std::string_view expected_digest);

// The complete key-based check, in cosign's order: signature over the payload with key, then
// the payload claims: critical.type and docker-manifest-digest == expected_digest.
// Errors name what failed (Errc::verification) in one readable phrase. Thin wrapper over
// check_signature_with_key (Errc::invalid_argument for a malformed expected_digest).
Status verify_signature_with_key(const Signature& sig, const PublicKey& key, HashAlgorithm hash,
                                 std::string_view expected_digest);

}  // namespace sigil::crypto
