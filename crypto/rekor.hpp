// crypto/rekor.hpp: Rekor transparency log entries, verified offline.
//
// Role: read a log entry as cosign's legacy `dev.sigstore.cosign/bundle` annotation or a
// sigstore bundle's `tlogEntries[]` carry it; verify its signed entry timestamp (SET: ECDSA
// or Ed25519 over the RFC 8785 form of {body, integratedTime, logID, logIndex}); verify its
// RFC 6962 inclusion proof and the signed checkpoint (signed note) it ends in; and parse the
// entry body (hashedrekord, dsse, intoto) so the caller can check it records this signature,
// this key and this payload hash. Pure: common, crypto and nlohmann only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "crypto/trust_root.hpp"

namespace sigil::crypto {

struct InclusionProof {
  int64_t log_index = 0;  // index inside the tree (shard), may differ from the global index
  std::string root_hash;  // raw 32 bytes
  int64_t tree_size = 0;
  std::vector<std::string> hashes;  // raw 32-byte hashes, leaf to root
  std::string checkpoint;           // the signed note text; empty when the proof has none
};

struct TlogEntry {
  int64_t log_index = 0;        // global log index
  std::string log_id;           // raw bytes (32 for Rekor v1)
  std::string kind;             // kindVersion.kind ("hashedrekord"), or from the body when absent
  std::string version;          // kindVersion.version ("0.0.1")
  int64_t integrated_time = 0;  // seconds since the epoch; 0 for Rekor v2 entries
  std::string canonicalized_body;      // raw bytes of the entry body (base64-decoded)
  std::string signed_entry_timestamp;  // raw signature bytes; empty when there is none
  std::optional<InclusionProof> inclusion_proof;
};

// cosign's legacy annotation:
// {"SignedEntryTimestamp":"<b64>","Payload":{"body":"<b64>","integratedTime":N,
//  "logIndex":N,"logID":"<hex>"}}. Member names match case-insensitively, as cosign's Go
// decoder matches them (two names that match the same field are an error); unknown members
// are ignored. All five fields are required: integers non-negative, logID lowercase hex,
// body and SET non-empty base64. kind/version are read from the body, which must be a JSON
// object with string kind and apiVersion. Strict JSON; over 4 MiB Errc::too_large, else
// Errc::parse_error naming the field.
Result<TlogEntry> parse_rekor_bundle_annotation(std::string_view json);

// One element of a sigstore bundle's verificationMaterial.tlogEntries (protobuf JSON: int64
// fields as strings or numbers, bytes base64, null as absent, proto field names accepted).
// Required: logId.keyId, kindVersion.kind and .version (equal to the body's kind and
// apiVersion), canonicalizedBody. inclusionPromise, when present, must carry a SET;
// inclusionProof, when present, a 32-byte rootHash and 32-byte hashes (at most 64); its
// checkpoint may be absent (verify_inclusion_proof decides). Used by crypto/bundle.
Result<TlogEntry> parse_bundle_tlog_entry(std::string_view json);

// What an entry body records. Verifiers are normalized to DER: a certificate or a
// SubjectPublicKeyInfo, whichever the entry holds.
struct RekorVerifier {
  bool is_certificate = false;
  std::string der;
};

struct RekorBody {
  std::string kind;         // hashedrekord | dsse | intoto
  std::string api_version;  // 0.0.1 | 0.0.2
  // hashedrekord: spec.data.hash (the hash of the signed artifact bytes; for Rekor v2
  // hashedrekord over DSSE, the hash of the PAE). dsse/intoto: the payload hash.
  HashAlgorithm hash_algorithm = HashAlgorithm::sha256;
  std::string hash;           // raw bytes
  std::string envelope_hash;  // dsse 0.0.1: spec.envelopeHash; intoto 0.0.2: spec.content.hash
                              // (raw; the hash of the whole envelope JSON); else empty
  std::vector<std::string> signatures;   // raw signature bytes, in body order
  std::vector<RekorVerifier> verifiers;  // one per signature
};

// Parses a canonicalized body: hashedrekord 0.0.1 and 0.0.2, dsse 0.0.1 and 0.0.2, intoto
// 0.0.2. Any other kind or version is Errc::unsupported naming it. Signatures are returned
// raw (intoto 0.0.2 stores base64 of the envelope's base64 signature: both layers are
// removed). PEM verifiers (v1 kinds) may be a certificate chain: the first certificate is
// the verifier. Certificates must parse as X.509; keys must load as PublicKey (their DER is
// re-encoded SPKI). Strict JSON with exact member names; Errc::parse_error naming the field.
// known_certificate_der: a certificate the caller has already parsed (Certificate::from_der,
// the signature's leaf); a verifier with exactly these bytes is not parsed again (in OpenSSL
// 3.0 that costs as much as a signature check).
Result<RekorBody> parse_rekor_body(std::string_view canonicalized_body,
                                   std::string_view known_certificate_der = {});

// Checks the SET: picks nothing itself; `log` must be the log whose id equals entry.log_id
// (checked). Errc::verification when the entry has no SET, is from another log, or the SET
// does not verify with log.key and log.hash. The log's validFor window is the caller's.
Status verify_signed_entry_timestamp(const TlogEntry& entry, const TransparencyLog& log);

// What a verified checkpoint states.
struct Checkpoint {
  std::string origin;
  int64_t tree_size = 0;
  std::string root_hash;                 // raw 32 bytes
  std::vector<std::string> extra_lines;  // the optional lines after the root hash
};

// Verifies a checkpoint (signed note) with `log`'s key: the note text (origin, size, base64
// root hash, optional non-empty lines) ends at the last blank line; signature lines follow,
// "<U+2014> <name> <base64(4-byte key hint || signature)>". A Rekor v1 origin
// ("<host> - <tree id>") takes the hint SHA-256(SPKI)[:4]; any other origin is a Rekor v2
// (C2SP tlog-checkpoint) origin, which must equal the host of log.base_url and name the
// signature line, with the hint rekor_v2_log_id(log.key, origin)[:4] (Ed25519:
// SHA-256(origin || "\n" || 0x01 || raw key)[:4]; ECDSA: SHA-256(SPKI)[:4]) or the first 4
// bytes of log.checkpoint_key_id when set. Every line whose hint (and, v2, name) matches must
// verify, and one must; other lines (witness cosignatures, other keys of the origin) are skipped,
// in any order. As Go's golang.org/x/mod/sumdb/note, the whole note must be UTF-8 without control
// characters other than newline, and every signature line must name a valid signer (no '+', no
// white space), even one that is skipped. Errc::verification otherwise (also for a malformed note).
Result<Checkpoint> verify_checkpoint(std::string_view note, const TransparencyLog& log);

// The origin a Rekor v2 (rekor-tiles) log writes in its checkpoints: the host of its base URL,
// as Go's url.URL.Hostname() gives it ("https://log2025-1.rekor.sigstore.dev:443/x" ->
// "log2025-1.rekor.sigstore.dev"), which is what sigstore-go checks the origin against.
std::string rekor_v2_origin(std::string_view base_url);

// The full 32-byte C2SP signed-note key ID of a Rekor v2 log whose checkpoint origin is `origin`,
// as rekor-tiles computes it (pkg/note KeyHash): the log's id in its entries (bundle
// `logId.keyId`, trusted_root `logId.keyId`), and, its first 4 bytes, the key hint of the log's
// checkpoint signature lines. Ed25519: SHA-256(origin || "\n" || 0x01 || 32-byte raw key); RSA:
// SHA-256(origin || "\n" || 0xff || "PKIX-RSA-PKCS#1v1.5" || SPKI DER); ECDSA: SHA-256(SPKI DER),
// the same as key_log_id (Rekor v1 and CT). Errc::internal when the raw key cannot be read.
Result<std::string> rekor_v2_log_id(const PublicKey& key, std::string_view origin);

// Recomputes the root from the leaf SHA-256(0x00 || body) and the proof (RFC 6962 / 9162
// section 2.1.3.2), requires it to equal proof.root_hash, and, when the proof carries a
// checkpoint, verifies the signed note with `log`'s key (verify_checkpoint) and requires its
// tree size and root hash to equal the proof's. `require_checkpoint` makes a proof without a
// checkpoint fail. entry.log_id must equal log.log_id. Errc::verification on any failure.
Status verify_inclusion_proof(const TlogEntry& entry, const TransparencyLog& log,
                              bool require_checkpoint);

// RFC 6962 Merkle helpers, exposed for tests.
std::string merkle_leaf_hash(std::string_view leaf);  // SHA-256(0x00 || leaf)
// Root for a leaf hash at index in a tree of size, or an error when the proof's length is wrong.
Result<std::string> merkle_root_from_inclusion_proof(int64_t index, int64_t tree_size,
                                                     std::string_view leaf_hash,
                                                     const std::vector<std::string>& proof);

}  // namespace sigil::crypto
