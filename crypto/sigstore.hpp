// crypto/sigstore.hpp: one signature, in any of cosign's formats, verified offline.
//
// Role: the layering of cosign and sigstore-go, in one place: (1) the signing time, proved by
// the transparency log's signed entry timestamp or an RFC 3161 timestamp; (2) the tlog entry:
// its SET and inclusion proof, and that its body records this very signature, key and payload
// hash; (3) the certificate chain to a trusted CA at every proved time, with the code-signing
// EKU and an embedded SCT; (4) the signature over the exact signed bytes with the leaf's key
// (or the policy's key); (5) the claims: the payload binds the admitted digest. The caller
// (policy/) matches the identity this returns against its identities. Pure: common, crypto,
// nlohmann.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "crypto/bundle.hpp"
#include "crypto/cosign.hpp"
#include "crypto/keys.hpp"
#include "crypto/rekor.hpp"
#include "crypto/trust_root.hpp"
#include "crypto/x509.hpp"

namespace sigil::crypto {

// A signature as found, normalized over the three shapes cosign produces.
struct SignedEntity {
  enum class Kind {
    simple_signing,     // legacy .sig layer: signature over the simple-signing payload
    message_signature,  // bundle messageSignature: signature over the artifact bytes
    dsse,               // bundle DSSE envelope: signature over PAE(payloadType, payload)
  };
  Kind kind = Kind::simple_signing;
  std::string source;     // for messages: "sha256-ab….sig layer 0", "referrer sha256:cd…"
  std::string signature;  // raw bytes
  // simple_signing: the payload bytes; dsse: the envelope payload (the in-toto statement);
  // message_signature: unused (the artifact is the caller's).
  std::string payload;
  std::string payload_type;                                        // dsse
  HashAlgorithm message_digest_algorithm = HashAlgorithm::sha256;  // message_signature
  std::string message_digest;                                      // raw; may be empty
  // Leaf first, then the chain the signer supplied (legacy chain annotation, bundle v0.1/0.2).
  std::vector<std::string> certificates_der;
  std::vector<TlogEntry> tlog_entries;
  std::vector<std::string> rfc3161_timestamps;  // DER
  int bundle_minor_version = 0;                 // 0 = not from a bundle
  bool signature_count_ok = true;               // DSSE: exactly one signature in the envelope
  // The bytes the RFC 3161 timestamps cover; empty: the raw signature. A legacy .att layer's
  // timestamp covers the envelope blob (cosign VerifyRFC3161Timestamp: an attestation's
  // signature annotation is empty, so its payload is stamped).
  std::string timestamped;
};

// From a legacy .sig layer: certificate and chain PEM, the Rekor bundle annotation, the RFC
// 3161 annotation. Errc::parse_error when an annotation present is malformed (a signature
// whose material does not parse is skipped by callers with that message, never half-used).
Result<SignedEntity> entity_from_legacy(const Signature& sig);
Result<SignedEntity> entity_from_bundle(const Bundle& bundle, std::string source);
// From a legacy cosign attestation layer (sha256-<hex>.att, docs/sigstore-formats.md 1.2): the
// layer blob is a DSSE envelope; the layer's certificate, chain, bundle and rfc3161timestamp
// annotations (in `annotations`, whose signature and payload are ignored) are read as for a
// .sig layer. One entity per envelope signature (cosign accepts an envelope when any verifies),
// at most max_signatures. Errc::parse_error for a malformed envelope or annotation.
Result<std::vector<SignedEntity>> entities_from_attestation_layer(std::string_view envelope_json,
                                                                  const Signature& annotations,
                                                                  size_t max_signatures);

// What the artifact is, for the binding check.
struct Artifact {
  enum class Kind {
    image,  // an image digest: simple-signing docker-manifest-digest, or DSSE subject
    blob,   // a blob digest (verify-bundle): messageSignature digest, or DSSE subject
  };
  Kind kind = Kind::image;
  // "sha256:<hex>"; a blob may also be named "sha384:<hex>" or "sha512:<hex>" (lowercase hex).
  // A DSSE statement binds it when a subject carries this digest; a message signature when its
  // messageDigest is this digest in the same algorithm.
  std::string digest;
  // blob only: the artifact bytes when the caller has them (needed to verify Ed25519
  // messageSignatures; ECDSA/RSA verify against the digest alone). With them, a message
  // signature's digest and a DSSE subject's digests (sha256, sha384, sha512) are recomputed,
  // whatever algorithm `digest` uses.
  std::optional<std::string> bytes;
};

// "sha256:<64 hex>", "sha384:<96 hex>" or "sha512:<128 hex>" (lowercase) -> the algorithm and
// the raw digest; nullopt for anything else.
std::optional<std::pair<HashAlgorithm, std::string>> parse_artifact_digest(std::string_view text);

// What one authority demands. Exactly one of `key` / `cas`.
struct Requirements {
  // Key authority: the signature must verify with this key. A certificate in the entity is
  // ignored (cosign: --key wins).
  const PublicKey* key = nullptr;
  HashAlgorithm key_hash = HashAlgorithm::sha256;
  // Keyless authority: the leaf must chain to one of these CAs at each signing time.
  const std::vector<CertificateAuthority>* cas = nullptr;
  // Optional: CA paths validated before against these CAs (see ChainCache), owned by the
  // caller, so that the chain costs one signature check (the leaf's) per signature.
  ChainCache* chain_cache = nullptr;

  // Transparency log: when require_tlog, at least one entry must verify (SET or inclusion proof
  // with checkpoint, against `tlogs` chosen by log id) and record this signature.
  const std::vector<TransparencyLog>* tlogs = nullptr;
  bool require_tlog = false;
  // Embedded SCT against `ctlogs` (keyless only).
  const std::vector<TransparencyLog>* ctlogs = nullptr;
  bool require_sct = true;
  // RFC 3161 timestamp authorities; a verified timestamp is a signing time.
  const std::vector<CertificateAuthority>* tsas = nullptr;
  // At least this many verified signing times (SET integrated times + timestamps). Keyless
  // needs >= 1: a keyless signature without a proved time is refused (cosign would use "now").
  size_t min_signing_times = 1;
  // For image artifacts: the in-toto predicate a DSSE bundle must carry to count as an image
  // signature (cosign v3 `sign`). Attestations are not signatures.
  std::string_view dsse_predicate = "https://sigstore.dev/cosign/sign/v1";
};

enum class Failure {
  none,
  malformed,              // the entity's material does not parse
  bad_signature,          // the signature does not verify with the key / leaf
  wrong_type,             // simple-signing type, DSSE payload type or predicate is not ours
  digest_mismatch,        // a valid signature that binds another digest
  untrusted_certificate,  // no chain to a trusted CA at the signing time, or bad EKU
  sct,                    // no verifiable embedded SCT
  tlog,                   // tlog entry missing, not verifying, or not about this signature
  timestamp,              // an RFC 3161 timestamp does not verify
  no_signing_time,        // keyless, but nothing proves when it was signed
  unsupported,            // a valid format sigil cannot verify (e.g. Ed25519 over a digest)
};
const char* failure_name(Failure f) noexcept;

struct VerifiedSignature {
  bool ok = false;
  Failure failure = Failure::malformed;
  std::string message;  // one readable phrase; empty when ok
  // keyless: the leaf's SANs and OIDC issuer, once signature, log entry, chain and SCT all
  // verified (identity_proved). Also filled when only the claims failed afterwards (wrong_type,
  // digest_mismatch), so the caller can say "signed by someone not accepted" before it says
  // "payload unusable"; a failure before that point leaves it empty and identity_proved false.
  CertificateIdentity identity;
  bool identity_proved = false;
  std::vector<TimePoint> signing_times;  // every verified time (SETs, timestamps)
  std::string bound_digest;              // what the payload names, when it could be read
};

// Verifies entity against req and artifact in the order described at the top. Never throws.
VerifiedSignature verify_entity(const SignedEntity& entity, const Requirements& req,
                                const Artifact& artifact);

}  // namespace sigil::crypto
