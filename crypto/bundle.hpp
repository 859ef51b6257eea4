// crypto/bundle.hpp: sigstore bundles (protobuf-specs Bundle, v0.1, v0.2, v0.3).
//
// Role: parse the bundle JSON cosign v3 stores as an OCI 1.1 referrer and sigstore clients
// write next to a blob, into its parts: the verification material (certificate chain or leaf,
// or a public key hint; tlog entries; RFC 3161 timestamps) and the content (a message
// signature or a DSSE envelope). Nothing is verified here; crypto/sigstore does that. Pure:
// common, crypto, nlohmann.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "crypto/dsse.hpp"
#include "crypto/keys.hpp"
#include "crypto/rekor.hpp"

namespace sigil::crypto {

inline constexpr std::string_view kBundleMediaTypeV03 =
    "application/vnd.dev.sigstore.bundle.v0.3+json";

struct Bundle {
  std::string media_type;
  int minor_version = 0;  // 1, 2 or 3
  // v0.1/v0.2: x509CertificateChain.certificates (leaf first); v0.3: the single
  // `certificate`. Raw DER. Empty for key-signed bundles.
  std::vector<std::string> certificates_der;
  std::string public_key_hint;  // verificationMaterial.publicKey.hint, when key-signed
  bool has_public_key = false;  // verificationMaterial.publicKey present
  std::vector<TlogEntry> tlog_entries;
  std::vector<std::string> rfc3161_timestamps;  // raw DER, timestampVerificationData

  enum class Content { message_signature, dsse };
  Content content = Content::message_signature;
  // messageSignature
  HashAlgorithm message_digest_algorithm = HashAlgorithm::sha256;
  std::string message_digest;  // raw bytes; may be empty (optional in the spec)
  std::string signature;       // raw bytes
  // dsseEnvelope
  DsseEnvelope envelope;
};

// Accepts "application/vnd.dev.sigstore.bundle+json;version=0.1|0.2|0.3" and
// "application/vnd.dev.sigstore.bundle.v0.3+json"; any other media type is Errc::unsupported
// (conformance `bundle-unknown-version_fail`). Exactly one of certificate /
// x509CertificateChain / publicKey; exactly one of messageSignature / dsseEnvelope; v0.1
// requires an inclusion promise on every entry, v0.2+ an inclusion proof. A v0.3 bundle must
// use `certificate`, not a chain (v0.1/v0.2 may use either). Protobuf JSON: camelCase or
// proto field names (not both), null as absent, int64 as string or number, bytes as padded
// standard base64, unknown members ignored. tlogEntries as parse_bundle_tlog_entry;
// a messageDigest with a digest needs SHA2_256/384/512 and a digest of that length. Strict JSON
// (duplicate keys rejected, 4 MiB cap: Errc::too_large); other errors Errc::parse_error
// naming the field ("sigstore bundle: verificationMaterial.tlogEntries[0].logId is missing").
Result<Bundle> parse_bundle(std::string_view json);

}  // namespace sigil::crypto
