// tests/support/cpp/rekor_fixture.hpp: Rekor-like transparency logs for unit tests.
//
// Role: TestLog, one P-256 log key that signs SETs (ECDSA over the RFC 8785 form of {body,
// integratedTime, logID, logIndex}, exactly as Rekor v1) over entry bodies built here by hand
// (hashedrekord 0.0.1, dsse 0.0.1); and TestLogV2, a Rekor v2 (rekor-tiles) log: an Ed25519
// key, entries (hashedrekord and dsse 0.0.2) proved only by an RFC 6962 inclusion proof into a
// tree of filler leaves and a C2SP checkpoint (signed note) that witnesses may cosign, with no
// SET and no integrated time. Verifier tests need no network and no checked-in keys.
// Test-only, header-only; uses pki.hpp's KeyPair.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/encoding.hpp"
#include "crypto/keys.hpp"
#include "crypto/rekor.hpp"
#include "crypto/trust_root.hpp"
#include "sigstore_pki.hpp"

namespace sigil::test {

struct TestLog {
  KeyPair key = generate_key("P-256");
  crypto::TransparencyLog log() const {
    crypto::TransparencyLog l;
    l.base_url = "https://rekor.test";
    l.key = key.public_key();
    l.log_id = crypto::key_log_id(l.key);
    l.hash = crypto::HashAlgorithm::sha256;
    return l;
  }
  // hashedrekord 0.0.1 over sha256(hashed) with the signature and verifier (PEM).
  static std::string hashedrekord(std::string_view hashed_bytes, std::string_view sig,
                                  std::string_view verifier_pem) {
    return R"({"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":{"algorithm":"sha256","value":")" +
           crypto::sha256_hex(hashed_bytes) + R"("}},"signature":{"content":")" +
           base64_encode(sig) + R"(","publicKey":{"content":")" + base64_encode(verifier_pem) +
           R"("}}}})";
  }
  static std::string dsse(std::string_view payload, std::string_view sig,
                          std::string_view verifier_pem) {
    return R"({"apiVersion":"0.0.1","kind":"dsse","spec":{"envelopeHash":{"algorithm":"sha256","value":")" +
           std::string(64, '0') + R"("},"payloadHash":{"algorithm":"sha256","value":")" +
           crypto::sha256_hex(payload) + R"("},"signatures":[{"signature":")" + base64_encode(sig) +
           R"(","verifier":")" + base64_encode(verifier_pem) + R"("}]}})";
  }
  crypto::TlogEntry entry(std::string body, int64_t integrated_time,
                          bool corrupt_set = false) const {
    crypto::TlogEntry e;
    e.log_index = 42;
    e.log_id = log().log_id;
    e.integrated_time = integrated_time;
    e.canonicalized_body = std::move(body);
    const std::string msg = R"({"body":")" + base64_encode(e.canonicalized_body) +
                            R"(","integratedTime":)" + std::to_string(integrated_time) +
                            R"(,"logID":")" + hex_encode(e.log_id) + R"(","logIndex":42})";
    e.signed_entry_timestamp = key.sign(msg);
    if (corrupt_set) e.signed_entry_timestamp.back() ^= 1;
    return e;
  }
};

// ---- Rekor v2 -----------------------------------------------------------------------------

// RFC 6962 Merkle tree helpers (section 2.1), written from the definitions.
inline std::string merkle_node(const std::string& l, const std::string& r) {
  return crypto::sha256("\x01" + l + r);
}
inline size_t merkle_split(size_t n) {
  size_t k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
inline std::string merkle_root(const std::vector<std::string>& leaves, size_t lo, size_t hi) {
  if (hi - lo == 1) return leaves[lo];
  size_t k = merkle_split(hi - lo);
  return merkle_node(merkle_root(leaves, lo, lo + k), merkle_root(leaves, lo + k, hi));
}
// PATH(m, D[lo:hi]), leaf to root.
inline std::vector<std::string> merkle_path(size_t m, const std::vector<std::string>& leaves,
                                            size_t lo, size_t hi) {
  if (hi - lo == 1) return {};
  size_t k = merkle_split(hi - lo);
  std::vector<std::string> p;
  if (m < k) {
    p = merkle_path(m, leaves, lo, lo + k);
    p.push_back(merkle_root(leaves, lo + k, hi));
  } else {
    p = merkle_path(m - k, leaves, lo + k, hi);
    p.push_back(merkle_root(leaves, lo, lo + k));
  }
  return p;
}

// The C2SP signed-note Ed25519 key hash: SHA-256(name || "\n" || 0x01 || raw key). Its first 4
// bytes are the key hint of a signature line; all 32 are a Rekor v2 log's id.
inline std::string note_key_hash(std::string_view name, const KeyPair& ed25519) {
  const std::string spki = ed25519.spki_der();
  return crypto::sha256(std::string(name) + "\n\x01" + spki.substr(spki.size() - 32));
}

// "<U+2014> <name> <base64(hint || signature)>\n".
inline std::string note_signature_line(std::string_view name, std::string_view hint,
                                       std::string_view signature) {
  return "\xE2\x80\x94 " + std::string(name) + " " +
         base64_encode(std::string(hint) + std::string(signature)) + "\n";
}

struct TestLogV2 {
  KeyPair key = generate_key("ED25519");
  std::string origin = "log2025-1.rekor.test";

  crypto::TransparencyLog log() const {
    crypto::TransparencyLog l;
    l.base_url = "https://" + origin;
    l.key = key.public_key();
    l.log_id = note_key_hash(origin, key);  // as trusted_root.json states a v2 log's id
    l.hash = crypto::HashAlgorithm::sha256;
    return l;
  }
  std::string hint() const { return note_key_hash(origin, key).substr(0, 4); }

  // protobuf-specs HashOutput algorithm names.
  static const char* algorithm(crypto::HashAlgorithm h) {
    switch (h) {
      case crypto::HashAlgorithm::sha384:
        return "SHA2_384";
      case crypto::HashAlgorithm::sha512:
        return "SHA2_512";
      default:
        return "SHA2_256";
    }
  }
  // A Verifier: {"keyDetails":..,"x509Certificate":{"rawBytes":..}} (or "publicKey" for a key).
  static std::string verifier(std::string_view der, bool certificate,
                              std::string_view key_details = "PKIX_ECDSA_P256_SHA_256") {
    return R"({"keyDetails":")" + std::string(key_details) + R"(",")" +
           (certificate ? "x509Certificate" : "publicKey") + R"(":{"rawBytes":")" +
           base64_encode(der) + R"("}})";
  }
  // hashedrekord 0.0.2 (RFC 8785 member order): the digest of the signed bytes (for DSSE, of
  // the PAE), the signature and its verifier.
  static std::string hashedrekord(crypto::HashAlgorithm h, std::string_view digest,
                                  std::string_view sig, const std::string& verifier_json) {
    return R"({"apiVersion":"0.0.2","kind":"hashedrekord","spec":{"hashedRekordV002":{"data":{"algorithm":")" +
           std::string(algorithm(h)) + R"(","digest":")" + base64_encode(digest) +
           R"("},"signature":{"content":")" + base64_encode(sig) + R"(","verifier":)" +
           verifier_json + "}}}}";
  }
  // dsse 0.0.2: the payload's SHA-256 and the envelope's signature with its verifier.
  static std::string dsse(std::string_view payload, std::string_view sig,
                          const std::string& verifier_json) {
    return R"({"apiVersion":"0.0.2","kind":"dsse","spec":{"dsseV002":{"payloadHash":{"algorithm":"SHA2_256","digest":")" +
           base64_encode(crypto::sha256(payload)) + R"("},"signatures":[{"content":")" +
           base64_encode(sig) + R"(","verifier":)" + verifier_json + "}]}}}";
  }

  // The note text of a checkpoint: origin, size, base64 root hash, each line ending in '\n'.
  std::string note_text(int64_t size, std::string_view root) const {
    return origin + "\n" + std::to_string(size) + "\n" + base64_encode(root) + "\n";
  }
  // The log's own signature line over text.
  std::string log_line(std::string_view text) const {
    return note_signature_line(origin, hint(), key.sign(text));
  }

  // How an entry's checkpoint is signed: `before` and `after` surround the log's own line (a
  // witness cosignature first tests that the log's line need not be first); with_log_line=false
  // leaves it out.
  struct Signatures {
    std::vector<std::string> before;
    std::vector<std::string> after;
    bool with_log_line = true;
  };

  // The entry as a bundle carries it: body at `index` of a tree of `size` leaves (the others
  // fillers), inclusion proof and checkpoint, kind and version from the body, no SET, no
  // integrated time. `extra_lines(text)` may add signature lines over the note text.
  template <class ExtraLines>
  crypto::TlogEntry entry(std::string body, ExtraLines extra_lines, size_t index = 5,
                          size_t size = 11) const {
    std::vector<std::string> leaves;
    for (size_t i = 0; i < size; ++i) {
      leaves.push_back(
          crypto::merkle_leaf_hash(i == index ? body : "{\"filler\":" + std::to_string(i) + "}"));
    }
    crypto::TlogEntry e;
    e.log_index = static_cast<int64_t>(index);
    e.log_id = log().log_id;
    e.kind = body.find("\"kind\":\"dsse\"") != std::string::npos ? "dsse" : "hashedrekord";
    e.version = "0.0.2";
    e.integrated_time = 0;
    e.canonicalized_body = std::move(body);
    crypto::InclusionProof p;
    p.log_index = static_cast<int64_t>(index);
    p.tree_size = static_cast<int64_t>(size);
    p.root_hash = merkle_root(leaves, 0, size);
    p.hashes = merkle_path(index, leaves, 0, size);
    const std::string text = note_text(p.tree_size, p.root_hash);
    const Signatures sigs = extra_lines(text);
    p.checkpoint = text + "\n";
    for (const auto& l : sigs.before) p.checkpoint += l;
    if (sigs.with_log_line) p.checkpoint += log_line(text);
    for (const auto& l : sigs.after) p.checkpoint += l;
    e.inclusion_proof = std::move(p);
    return e;
  }
  crypto::TlogEntry entry(std::string body, size_t index = 5, size_t size = 11) const {
    return entry(
        std::move(body), [](const std::string&) { return Signatures{}; }, index, size);
  }
};

// A witness, cosigning as C2SP tlog-cosignature (cosignature/v1) describes: key hash
// SHA-256(name || "\n" || 0x04 || raw Ed25519 key), signature = 8-byte big-endian timestamp ||
// Ed25519 over "cosignature/v1\ntime <timestamp>\n" || note text.
struct TestWitness {
  KeyPair key = generate_key("ED25519");
  std::string name = "witness.test/w1";
  uint64_t timestamp = 1710869200;
  std::string line(std::string_view text) const {
    const std::string spki = key.spki_der();
    const std::string hint =
        crypto::sha256(name + "\n\x04" + spki.substr(spki.size() - 32)).substr(0, 4);
    std::string ts(8, '\0');
    for (int i = 0; i < 8; ++i) ts[7 - i] = static_cast<char>((timestamp >> (8 * i)) & 0xff);
    const std::string signed_message =
        "cosignature/v1\ntime " + std::to_string(timestamp) + "\n" + std::string(text);
    return note_signature_line(name, hint, ts + key.sign(signed_message));
  }
};

}  // namespace sigil::test
