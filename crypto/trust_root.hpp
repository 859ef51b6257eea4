// crypto/trust_root.hpp: the trust material a keyless verification starts from.
//
// Role: parse sigstore's `trusted_root.json` (protobuf-specs TrustedRoot, protobuf JSON:
// camelCase, bytes as standard base64, enums by name) into Fulcio CAs, Rekor logs, CT logs and
// timestamp authorities, each with its validity window. Pure: common, crypto, nlohmann; the
// caller reads the file. Nothing here fetches anything: sigil never contacts TUF at runtime.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "crypto/keys.hpp"
#include "crypto/x509.hpp"

namespace sigil::crypto {

// A Rekor (transparency log) or CT log instance.
struct TransparencyLog {
  std::string base_url;  // "https://rekor.sigstore.dev"
  // The 32-byte log id (raw, not base64): trusted_root `logId.keyId`; for logs given only by
  // key (TrustRoot sigstoreKeys, tests) SHA-256 of the key's SubjectPublicKeyInfo DER.
  std::string log_id;
  // For Rekor v2 (rekor-tiles) logs, the checkpoint key id when the root states one
  // (`checkpointKeyId.keyId`); empty otherwise.
  std::string checkpoint_key_id;
  PublicKey key;
  HashAlgorithm hash = HashAlgorithm::sha256;  // from keyDetails / hashAlgorithm
  TimeRange valid_for;                         // publicKey.validFor
};

struct TrustedRoot {
  std::string name;  // where it came from, for messages ("trusted_root.json", "TrustRoot prod")
  // certChain order is kept: leaf-most first, root last (see CertificateAuthority::chain).
  std::vector<CertificateAuthority> certificate_authorities;  // Fulcio
  std::vector<TransparencyLog> tlogs;                         // Rekor
  std::vector<TransparencyLog> ctlogs;                        // certificate transparency
  // chain[0] is the TSA signing certificate, as sigstore lists it.
  std::vector<CertificateAuthority> timestamp_authorities;  // RFC 3161 TSAs
  // Entries skipped because sigil cannot use them ("ctlogs[0].publicKey.keyDetails: PKIX_RSA_PSS
  // is not a key type sigil supports ...; this entry is skipped"), for the caller to log.
  std::vector<std::string> warnings;
};

// Parses trusted_root.json. Accepts mediaType
// "application/vnd.dev.sigstore.trustedroot+json;version=0.1" (and 0.2) or an absent mediaType;
// rejects anything else. Each entry is checked: base64, DER, key type against keyDetails,
// RFC 3339 times, and a validFor with a start (every CA, log and TSA entry: without one the entry
// would be trusted since the beginning of time). A malformed entry refuses the whole root, naming
// the entry. An entry sigil cannot use (Errc::unsupported: a key type such as RSA-PSS, LMS or
// ML-DSA, a curve, an RSA modulus under 2048 bits, a tree hash other than SHA-256) is skipped and
// described in TrustedRoot::warnings, unless no entry of its list is left, which is an error.
// Inputs over 4 MiB are Errc::too_large. `name` is recorded in the result for messages.
// Protobuf JSON as Go's protojson reads it: unknown fields are ignored; a field may be spelled
// lowerCamelCase or with its proto name (not both); JSON null means absent; enums by name or
// number; bytes in standard or URL-safe base64, padded or not, '\r' and '\n' skipped
// (protojson_base64). Stricter than protojson: a repeated key anywhere is an error; each
// certChain certificate must be issued by the next (a reversed chain would make the leaf-most
// certificate the trust anchor); validFor.end may not precede start; hashAlgorithm must be
// SHA2_256 (or unspecified). keyDetails sets TransparencyLog::hash (P-256: sha256, P-384_SHA_384:
// sha384, P-521_SHA_512: sha512, the deprecated P384/P521_SHA_256: sha256, Ed25519, RSA PKCS#1
// v1.5 2048/3072/4096 with the stated modulus size: sha256, and the deprecated
// PKCS1_RSA_PKCS1V5, whose rawBytes is a PKCS#1 RSAPublicKey rather than SPKI, as the old CT
// key of Sigstore's staging roots is: sha256); absent or UNSPECIFIED takes
// default_hash_for(key type). Errors read "tlogs[1].publicKey.rawBytes: not base64".
Result<TrustedRoot> parse_trusted_root(std::string_view json, std::string_view name);

// The log in logs whose log_id equals id (raw bytes), or nullptr.
const TransparencyLog* find_log(const std::vector<TransparencyLog>& logs, std::string_view id);

// SHA-256 of a key's SubjectPublicKeyInfo DER: the log id convention of Rekor v1 and CT.
std::string key_log_id(const PublicKey& key);

}  // namespace sigil::crypto
