#include <catch2/catch.hpp>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/encoding.hpp"
#include "crypto/bundle.hpp"
#include "crypto/jcs.hpp"
#include "crypto/keys.hpp"
#include "crypto/rekor.hpp"
#include "pki.hpp"

using namespace sigil;
using namespace sigil::crypto;
using sigil::test::cached_key;
using sigil::test::KeyPair;
using sigil::test::to_pem;

namespace {

// --- keys and logs ----------------------------------------------------------------------

bool is_ed25519(const KeyPair& k) {
  return EVP_PKEY_get_base_id(k.pkey.get()) == EVP_PKEY_ED25519;
}

std::string sign_msg(const KeyPair& k, std::string_view msg) {
  return k.sign(msg, is_ed25519(k) ? nullptr : EVP_sha256());
}

// An independent key of the kind (cached_key caches another one per name).
const KeyPair& other_key(const std::string& kind) {
  static std::map<std::string, KeyPair> cache;
  auto it = cache.find(kind);
  if (it == cache.end()) it = cache.emplace(kind, sigil::test::generate_key(kind)).first;
  return it->second;
}

TransparencyLog log_for(const KeyPair& k, std::string base_url = "https://rekor.example.dev") {
  TransparencyLog log;
  auto pub = PublicKey::from_der(k.spki_der());
  REQUIRE(pub.ok());
  log.key = *pub;
  log.log_id = sha256(k.spki_der());
  log.base_url = std::move(base_url);
  return log;
}

// A self-signed certificate for key k, DER.
std::string certificate_for(const KeyPair& k) {
  sigil::test::CertSpec spec;
  spec.subject = "CN=rekor test";
  spec.not_before = sigil::test::test_epoch();
  spec.not_after = spec.not_before + std::chrono::minutes(10);
  spec.key_ids = false;
  return sigil::test::self_signed(spec, k).der();
}

std::string read_file(const std::string& rel) {
  std::ifstream in(std::string(SIGIL_SOURCE_DIR) + "/" + rel, std::ios::binary);
  REQUIRE(in.good());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// --- entry bodies ------------------------------------------------------------------------

const std::string kDigestHex = sha256_hex("artifact bytes");

std::string hashedrekord_body(std::string_view sig, std::string_view pem,
                              std::string_view hex = kDigestHex) {
  return "{\"apiVersion\":\"0.0.1\",\"kind\":\"hashedrekord\",\"spec\":{\"data\":{\"hash\":{"
         "\"algorithm\":\"sha256\",\"value\":\"" +
         std::string(hex) + "\"}},\"signature\":{\"content\":\"" + base64_encode(sig) +
         "\",\"publicKey\":{\"content\":\"" + base64_encode(pem) + "\"}}}}";
}

// --- SETs ------------------------------------------------------------------------------

// The SET payload written out by hand in RFC 8785 form (members already in order, integers
// plain): independent of crypto/jcs.
std::string set_message(std::string_view body, int64_t time, std::string_view log_id,
                        int64_t index) {
  return "{\"body\":\"" + base64_encode(body) + "\",\"integratedTime\":" + std::to_string(time) +
         ",\"logID\":\"" + hex_encode(log_id) + "\",\"logIndex\":" + std::to_string(index) + "}";
}

TlogEntry signed_entry(const KeyPair& log_key, std::string body, int64_t index = 1234,
                       int64_t time = 1700000000) {
  TlogEntry e;
  e.log_index = index;
  e.log_id = sha256(log_key.spki_der());
  e.kind = "hashedrekord";
  e.version = "0.0.1";
  e.integrated_time = time;
  e.canonicalized_body = std::move(body);
  e.signed_entry_timestamp =
      sign_msg(log_key, set_message(e.canonicalized_body, time, e.log_id, index));
  return e;
}

// --- Merkle trees (RFC 6962 section 2.1, written from the definitions) -----------------

std::string leaf_hash_of(std::string_view d) {
  return sha256(std::string(1, '\0') + std::string(d));
}
std::string node_of(const std::string& l, const std::string& r) {
  return sha256("\x01" + l + r);
}

size_t split_point(size_t n) {
  size_t k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

std::string mth(const std::vector<std::string>& leaves, size_t lo, size_t hi) {
  if (hi - lo == 1) return leaves[lo];
  size_t k = split_point(hi - lo);
  return node_of(mth(leaves, lo, lo + k), mth(leaves, lo + k, hi));
}

// PATH(m, D[lo:hi]), leaf to root.
std::vector<std::string> path(size_t m, const std::vector<std::string>& leaves, size_t lo,
                              size_t hi) {
  if (hi - lo == 1) return {};
  size_t k = split_point(hi - lo);
  std::vector<std::string> p;
  if (m < k) {
    p = path(m, leaves, lo, lo + k);
    p.push_back(mth(leaves, lo + k, hi));
  } else {
    p = path(m - k, leaves, lo + k, hi);
    p.push_back(mth(leaves, lo, lo + k));
  }
  return p;
}

struct Tree {
  std::vector<std::string> bodies;
  std::vector<std::string> leaves;
  explicit Tree(size_t n) {
    for (size_t i = 0; i < n; ++i) {
      bodies.push_back("{\"entry\":" + std::to_string(i) + "}");
      leaves.push_back(leaf_hash_of(bodies.back()));
    }
  }
  std::string root() const { return mth(leaves, 0, leaves.size()); }
  std::vector<std::string> proof(size_t i) const { return path(i, leaves, 0, leaves.size()); }
};

// --- checkpoints ---------------------------------------------------------------------------

const std::string kEm = "\xE2\x80\x94";

std::string note_text(std::string_view origin, int64_t size, std::string_view root,
                      const std::vector<std::string>& extra = {}) {
  std::string t =
      std::string(origin) + "\n" + std::to_string(size) + "\n" + base64_encode(root) + "\n";
  for (const auto& l : extra) t += l + "\n";
  return t;
}

std::string sig_line(std::string_view name, std::string_view hint, std::string_view sig) {
  return kEm + " " + std::string(name) + " " + base64_encode(std::string(hint) + std::string(sig)) +
         "\n";
}

std::string spki_hint(const KeyPair& k) {
  return sha256(k.spki_der()).substr(0, 4);
}

// C2SP signed-note Ed25519 key hint; the raw key is the last 32 bytes of its SPKI.
std::string ed25519_hint(std::string_view origin, const KeyPair& k) {
  return sha256(std::string(origin) + "\n\x01" + k.spki_der().substr(k.spki_der().size() - 32))
      .substr(0, 4);
}

constexpr std::string_view kV1Origin = "rekor.example.dev - 1193050959916656506";
constexpr std::string_view kV2Origin = "log2025-1.rekor.example.dev";

// A v1 checkpoint signed by k: "rekor.example.dev - <tree>".
std::string v1_checkpoint(const KeyPair& k, int64_t size, std::string_view root,
                          const std::vector<std::string>& extra = {
                              "Timestamp: 1700000000000000000"}) {
  std::string text = note_text(kV1Origin, size, root, extra);
  return text + "\n" + sig_line("rekor.example.dev", spki_hint(k), sign_msg(k, text));
}

TlogEntry tree_entry(const Tree& t, size_t i, const KeyPair& log_key, std::string checkpoint) {
  TlogEntry e;
  e.log_index = static_cast<int64_t>(i) + 1000000;  // global index differs from the tree index
  e.log_id = sha256(log_key.spki_der());
  e.canonicalized_body = t.bodies[i];
  InclusionProof p;
  p.log_index = static_cast<int64_t>(i);
  p.tree_size = static_cast<int64_t>(t.leaves.size());
  p.root_hash = t.root();
  p.hashes = t.proof(i);
  p.checkpoint = std::move(checkpoint);
  e.inclusion_proof = std::move(p);
  return e;
}

std::string flip(std::string s, size_t at) {
  s.at(at) = static_cast<char>(s.at(at) ^ 0x01);
  return s;
}

const char* kRekorPublicGood =
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2G2Y+2tabdTV5BcGiBIx0a9fAFwrkBbmLSGtks4L3qX6yYY0zufBnhC8"
    "Ur/iy55GhWP/9A/bY2LhC30M9+RYtw==";
// log2025-alpha1.rekor.sigstage.dev, from sigstore-conformance
// test/assets/trusted_root.staging.json.
const char* kRekorV2Staging = "MCowBQYDK2VwAyEAPn+AREHoBaZ7wgS1zBqpxmLSGnyhxXj4lFxSdWVB8o8=";

TransparencyLog log_from_b64(const char* spki_b64, std::string base_url) {
  auto der = base64_decode(spki_b64);
  REQUIRE(der.ok());
  auto key = PublicKey::from_der(*der);
  REQUIRE(key.ok());
  TransparencyLog log;
  log.key = *key;
  log.log_id = sha256(*der);
  log.base_url = std::move(base_url);
  return log;
}

Bundle real_bundle(const std::string& name) {
  auto b = parse_bundle(read_file("tests/unit/crypto/data/" + name));
  if (!b) INFO(b.error().message);
  REQUIRE(b.ok());
  return *b;
}

}  // namespace

// ============================================================================ Merkle

TEST_CASE("Rekor Merkle: leaf hash and the RFC 6962 reference roots") {
  CHECK(hex_encode(merkle_leaf_hash("")) ==
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
  const std::vector<std::string> data = {
      std::string(""),
      std::string("\x00", 1),
      "\x10",
      "\x20\x21",
      "\x30\x31",
      "\x40\x41\x42\x43",
      "\x50\x51\x52\x53\x54\x55\x56\x57",
      "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"};
  const char* roots[] = {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                         "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                         "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
                         "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                         "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
                         "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
                         "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
                         "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};
  std::vector<std::string> leaves;
  for (const auto& d : data) leaves.push_back(merkle_leaf_hash(d));
  for (size_t n = 1; n <= data.size(); ++n) {
    for (size_t i = 0; i < n; ++i) {
      INFO("size " << n << " index " << i);
      auto root = merkle_root_from_inclusion_proof(static_cast<int64_t>(i), static_cast<int64_t>(n),
                                                   leaves[i], path(i, leaves, 0, n));
      REQUIRE(root.ok());
      CHECK(hex_encode(*root) == roots[n - 1]);
    }
  }
}

TEST_CASE("Rekor Merkle: every index of trees of 1, 2, 3, 7, 13 and more leaves") {
  const size_t n = GENERATE(1, 2, 3, 4, 5, 7, 8, 13, 16, 17, 31, 33);
  Tree t(n);
  const std::string root = t.root();
  for (size_t i = 0; i < n; ++i) {
    INFO("size " << n << " index " << i);
    const int64_t idx = static_cast<int64_t>(i);
    const int64_t size = static_cast<int64_t>(n);
    auto proof = t.proof(i);
    auto ok = merkle_root_from_inclusion_proof(idx, size, t.leaves[i], proof);
    REQUIRE(ok.ok());
    CHECK(*ok == root);

    // Another leaf's hash at this index does not reach the root.
    if (n > 1) {
      auto other = merkle_root_from_inclusion_proof(idx, size, t.leaves[(i + 1) % n], proof);
      CHECK((!other.ok() || *other != root));
    }
    // Every flipped proof hash changes the root.
    for (size_t j = 0; j < proof.size(); ++j) {
      auto bad = proof;
      bad[j] = flip(bad[j], j % 32);
      auto r = merkle_root_from_inclusion_proof(idx, size, t.leaves[i], bad);
      CHECK((!r.ok() || *r != root));
    }
    // The proof for the right leaf at a wrong index.
    for (size_t w = 0; w < n; ++w) {
      if (w == i) continue;
      auto r = merkle_root_from_inclusion_proof(static_cast<int64_t>(w), size, t.leaves[i], proof);
      CHECK((!r.ok() || *r != root));
    }
    // (A wrong tree size may still reach the same root when the two trees have the same
    // shape along the path: the size is bound by the checkpoint, tested below.)
    // Truncated and extended proofs are errors, not merely other roots.
    if (!proof.empty()) {
      auto shorter = proof;
      shorter.pop_back();
      CHECK_FALSE(merkle_root_from_inclusion_proof(idx, size, t.leaves[i], shorter).ok());
    }
    auto longer = proof;
    longer.push_back(std::string(32, 'x'));
    CHECK_FALSE(merkle_root_from_inclusion_proof(idx, size, t.leaves[i], longer).ok());
  }
}

TEST_CASE("Rekor Merkle: index and size out of range, hashes of the wrong length") {
  Tree t3(3);
  // The last leaf of 3 claimed in a tree of 4 needs one more hash.
  CHECK_FALSE(merkle_root_from_inclusion_proof(2, 4, t3.leaves[2], t3.proof(2)).ok());
  Tree t(5);
  CHECK_FALSE(merkle_root_from_inclusion_proof(5, 5, t.leaves[0], t.proof(0)).ok());
  CHECK_FALSE(merkle_root_from_inclusion_proof(-1, 5, t.leaves[0], t.proof(0)).ok());
  CHECK_FALSE(merkle_root_from_inclusion_proof(0, 0, t.leaves[0], {}).ok());
  CHECK_FALSE(merkle_root_from_inclusion_proof(0, -3, t.leaves[0], {}).ok());
  CHECK_FALSE(merkle_root_from_inclusion_proof(0, 5, "short", t.proof(0)).ok());
  auto p = t.proof(0);
  p[0] = p[0].substr(0, 31);
  CHECK_FALSE(merkle_root_from_inclusion_proof(0, 5, t.leaves[0], p).ok());
  // The largest sizes do not overflow.
  std::vector<std::string> many(62, std::string(32, 'h'));
  auto r = merkle_root_from_inclusion_proof(INT64_MAX - 1, INT64_MAX, t.leaves[0], many);
  CHECK(r.ok());
}

// ============================================================================ SET

TEST_CASE("Rekor SET: a signed entry timestamp verifies, for ECDSA and Ed25519 logs") {
  const std::string kind = GENERATE("P-256", "ED25519");
  INFO(kind);
  const KeyPair& k = cached_key(kind);
  TransparencyLog log = log_for(k);
  TlogEntry e = signed_entry(k, "{\"kind\":\"x\"}");
  CHECK(verify_signed_entry_timestamp(e, log).ok());
}

TEST_CASE("Rekor SET: every signed field is bound") {
  const KeyPair& k = cached_key("P-256");
  TransparencyLog log = log_for(k);
  const TlogEntry good = signed_entry(k, "{\"apiVersion\":\"0.0.1\",\"kind\":\"hashedrekord\"}");
  REQUIRE(verify_signed_entry_timestamp(good, log).ok());

  SECTION("modified body") {
    TlogEntry e = good;
    e.canonicalized_body = flip(e.canonicalized_body, 3);
    CHECK(verify_signed_entry_timestamp(e, log).error().code == Errc::verification);
  }
  SECTION("modified integrated time") {
    TlogEntry e = good;
    e.integrated_time += 1;
    CHECK(verify_signed_entry_timestamp(e, log).error().code == Errc::verification);
  }
  SECTION("modified log index") {
    TlogEntry e = good;
    e.log_index -= 1;
    CHECK(verify_signed_entry_timestamp(e, log).error().code == Errc::verification);
  }
  SECTION("modified log id, on an entry and a log that agree") {
    TlogEntry e = good;
    e.log_id = flip(e.log_id, 0);
    TransparencyLog l2 = log;
    l2.log_id = e.log_id;
    CHECK(verify_signed_entry_timestamp(e, l2).error().code == Errc::verification);
  }
  SECTION("entry from another log") {
    TlogEntry e = good;
    e.log_id = flip(e.log_id, 5);
    auto r = verify_signed_entry_timestamp(e, log);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("not from") != std::string::npos);
  }
  SECTION("wrong key") {
    TransparencyLog other = log_for(other_key("P-256"));
    other.log_id = log.log_id;
    CHECK(verify_signed_entry_timestamp(good, other).error().code == Errc::verification);
  }
  SECTION("no SET") {
    TlogEntry e = good;
    e.signed_entry_timestamp.clear();
    auto r = verify_signed_entry_timestamp(e, log);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("no signed entry timestamp") != std::string::npos);
  }
  SECTION("truncated SET") {
    TlogEntry e = good;
    e.signed_entry_timestamp.pop_back();
    CHECK_FALSE(verify_signed_entry_timestamp(e, log).ok());
  }
  SECTION("SET over a non-canonical payload") {
    TlogEntry e = good;
    std::string spaced =
        set_message(e.canonicalized_body, e.integrated_time, e.log_id, e.log_index);
    spaced.insert(1, " ");
    e.signed_entry_timestamp = sign_msg(k, spaced);
    CHECK_FALSE(verify_signed_entry_timestamp(e, log).ok());
  }
  SECTION("a log without a key") {
    TransparencyLog empty;
    empty.log_id = log.log_id;
    CHECK_FALSE(verify_signed_entry_timestamp(good, empty).ok());
  }
}

TEST_CASE("Rekor SET: the payload is signed in its RFC 8785 form, numbers past 2^53 included") {
  // RFC 8785 writes numbers as IEEE doubles: up to 2^53 an integer is its digits, past it the
  // nearest double. A log (Rekor, cosign's check) signs that form, so a SET over the digits of
  // such a value as written must not verify, and one over the rounded form must.
  const KeyPair& k = cached_key("P-256");
  const TransparencyLog log = log_for(k);
  static constexpr int64_t k53 = int64_t{1} << 53;
  const int64_t index = GENERATE(int64_t{0}, int64_t{-1}, k53 - 1, k53, -k53, k53 + 1, -k53 - 1,
                                 k53 + 3, INT64_MAX, INT64_MIN);
  const int64_t time = GENERATE(int64_t{1700000000}, int64_t{1} << 60);
  CAPTURE(index, time);
  TlogEntry e = signed_entry(k, "{\"kind\":\"x\"}", index, time);
  const std::string digits = set_message(e.canonicalized_body, time, e.log_id, index);
  auto canonical = canonicalize_json(digits);
  REQUIRE(canonical.ok());
  const bool rounded = *canonical != digits;
  CHECK(rounded == (index > k53 || index < -k53 || time > k53));
  e.signed_entry_timestamp = sign_msg(k, *canonical);
  CHECK(verify_signed_entry_timestamp(e, log).ok());
  if (rounded) {
    e.signed_entry_timestamp = sign_msg(k, digits);
    CHECK_FALSE(verify_signed_entry_timestamp(e, log).ok());
  }
}

// ============================================================================ inclusion proof +
// checkpoint

TEST_CASE("Rekor inclusion: proofs with v1 checkpoints verify at every index") {
  const KeyPair& k = cached_key("P-256");
  TransparencyLog log = log_for(k);
  const size_t n = GENERATE(1, 2, 3, 7, 13);
  Tree t(n);
  for (size_t i = 0; i < n; ++i) {
    INFO("size " << n << " index " << i);
    TlogEntry e = tree_entry(t, i, k, v1_checkpoint(k, static_cast<int64_t>(n), t.root()));
    auto r = verify_inclusion_proof(e, log, /*require_checkpoint=*/true);
    if (!r) INFO(r.error().message);
    CHECK(r.ok());
  }
}

TEST_CASE("Rekor inclusion: every check on the proof") {
  const KeyPair& k = cached_key("P-256");
  TransparencyLog log = log_for(k);
  Tree t(13);
  const size_t i = 6;
  const TlogEntry good = tree_entry(t, i, k, v1_checkpoint(k, 13, t.root()));
  REQUIRE(verify_inclusion_proof(good, log, true).ok());
  auto fails = [&](const TlogEntry& e, const char* says) {
    auto r = verify_inclusion_proof(e, log, true);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::verification);
    INFO(r.error().message);
    CHECK(r.error().message.find(says) != std::string::npos);
  };

  SECTION("flipped proof hash") {
    TlogEntry e = good;
    e.inclusion_proof->hashes[1] = flip(e.inclusion_proof->hashes[1], 7);
    fails(e, "does not lead to its root hash");
  }
  SECTION("wrong index") {
    TlogEntry e = good;
    e.inclusion_proof->log_index = 7;
    fails(e, "does not lead to its root hash");
  }
  SECTION("index equal to the size") {
    TlogEntry e = good;
    e.inclusion_proof->log_index = 13;
    fails(e, "outside the tree");
  }
  SECTION("wrong size, same shape along the path: the checkpoint catches it") {
    TlogEntry e = good;
    e.inclusion_proof->tree_size = 14;
    REQUIRE(merkle_root_from_inclusion_proof(6, 14, t.leaves[6], t.proof(6)).ok());
    fails(e, "checkpoint is for a tree of size 13");
  }
  SECTION("wrong size, the proof no longer fits") {
    TlogEntry e = tree_entry(t, 12, k, v1_checkpoint(k, 14, t.root()));
    e.inclusion_proof->tree_size = 14;
    fails(e, "fewer than");
  }
  SECTION("truncated proof") {
    TlogEntry e = good;
    e.inclusion_proof->hashes.pop_back();
    fails(e, "fewer than");
  }
  SECTION("extended proof") {
    TlogEntry e = good;
    e.inclusion_proof->hashes.push_back(t.leaves[0]);
    fails(e, "more than");
  }
  SECTION("modified body") {
    TlogEntry e = good;
    e.canonicalized_body += " ";
    fails(e, "does not lead to its root hash");
  }
  SECTION("root hash that the proof does not reach") {
    TlogEntry e = good;
    e.inclusion_proof->root_hash = flip(e.inclusion_proof->root_hash, 0);
    fails(e, "does not lead to its root hash");
  }
  SECTION("no proof") {
    TlogEntry e = good;
    e.inclusion_proof.reset();
    fails(e, "no inclusion proof");
  }
  SECTION("entry from another log") {
    TlogEntry e = good;
    e.log_id = flip(e.log_id, 2);
    fails(e, "not from");
  }
  SECTION("no checkpoint") {
    TlogEntry e = good;
    e.inclusion_proof->checkpoint.clear();
    fails(e, "no checkpoint");
    CHECK(verify_inclusion_proof(e, log, /*require_checkpoint=*/false).ok());
  }
}

TEST_CASE("Rekor inclusion: every check on the checkpoint") {
  const KeyPair& k = cached_key("P-256");
  TransparencyLog log = log_for(k);
  Tree t(7);
  const size_t i = 3;
  const std::string root = t.root();
  auto with = [&](std::string checkpoint) { return tree_entry(t, i, k, std::move(checkpoint)); };
  auto fails = [&](std::string checkpoint, const char* says) {
    auto r = verify_inclusion_proof(with(std::move(checkpoint)), log, true);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::verification);
    INFO(r.error().message);
    CHECK(r.error().message.find(says) != std::string::npos);
  };
  const std::string text = note_text(kV1Origin, 7, root);
  const std::string sig = sign_msg(k, text);
  REQUIRE(verify_inclusion_proof(
              with(text + "\n" + sig_line("rekor.example.dev", spki_hint(k), sig)), log, true)
              .ok());

  SECTION("checkpoint for another root (correctly signed)") {
    fails(v1_checkpoint(k, 7, flip(root, 4)), "root hash differs");
  }
  SECTION("checkpoint for another size (correctly signed)") {
    fails(v1_checkpoint(k, 8, root), "size 8");
  }
  SECTION("bad signature") {
    fails(text + "\n" + sig_line("rekor.example.dev", spki_hint(k), flip(sig, 10)),
          "does not verify");
  }
  SECTION("signature over other text") {
    std::string other = note_text(kV1Origin, 7, root, {"Timestamp: 1"});
    fails(text + "\n" + sig_line("rekor.example.dev", spki_hint(k), sign_msg(k, other)),
          "does not verify");
  }
  SECTION("text changed after signing") {
    std::string changed = note_text(kV1Origin, 7, root, {"Timestamp: 2"});
    fails(changed + "\n" + sig_line("rekor.example.dev", spki_hint(k), sign_msg(k, text)),
          "does not verify");
  }
  SECTION("wrong key hint") {
    fails(text + "\n" + sig_line("rekor.example.dev", flip(spki_hint(k), 0), sig), "no key hint");
  }
  SECTION("signed by another key") {
    const KeyPair& o = other_key("P-256");
    fails(text + "\n" + sig_line("rekor.example.dev", spki_hint(o), sign_msg(o, text)),
          "no key hint");
    // ... even when it claims this log's hint.
    fails(text + "\n" + sig_line("rekor.example.dev", spki_hint(k), sign_msg(o, text)),
          "does not verify");
  }
  SECTION("missing blank line") {
    fails(text + sig_line("rekor.example.dev", spki_hint(k), sig), "no blank line");
  }
  SECTION("no signature lines") {
    fails(text + "\n", "has no signature lines");
  }
  SECTION("signature block without the final newline") {
    std::string line = sig_line("rekor.example.dev", spki_hint(k), sig);
    line.pop_back();
    fails(text + "\n" + line, "do not end with a newline");
  }
  SECTION("a signature line that does not start with an em dash") {
    std::string line = sig_line("rekor.example.dev", spki_hint(k), sig);
    fails(text + "\n" + "-" + line.substr(kEm.size()), "does not start with");
  }
  SECTION("a signature line without a name") {
    fails(text + "\n" + kEm + " " + base64_encode(spki_hint(k) + sig) + "\n", "no key name");
  }
  SECTION("a signature that is not base64") {
    fails(text + "\n" + kEm + " rekor.example.dev !!!!\n", "not valid base64");
  }
  SECTION("a signature too short to hold a hint") {
    fails(text + "\n" + kEm + " rekor.example.dev " + base64_encode("abcd") + "\n",
          "not valid base64");
  }
  SECTION("size not a decimal number") {
    std::string bad = kV1Origin.data() + std::string("\n+7\n") + base64_encode(root) + "\n";
    fails(bad + "\n" + sig_line("rekor.example.dev", spki_hint(k), sign_msg(k, bad)),
          "not a decimal number");
  }
  SECTION("size with a leading zero") {
    std::string bad = std::string(kV1Origin) + "\n07\n" + base64_encode(root) + "\n";
    fails(bad + "\n" + sig_line("rekor.example.dev", spki_hint(k), sign_msg(k, bad)),
          "not a decimal number");
  }
  SECTION("root hash not 32 bytes") {
    std::string bad = std::string(kV1Origin) + "\n7\n" + base64_encode(root.substr(1)) + "\n";
    fails(bad + "\n" + sig_line("rekor.example.dev", spki_hint(k), sign_msg(k, bad)),
          "not a base64 SHA-256");
  }
  SECTION("an empty line inside the text") {
    std::string bad = note_text(kV1Origin, 7, root) + "\nextra\n";
    fails(bad + "\n" + sig_line("rekor.example.dev", spki_hint(k), sign_msg(k, bad)), "empty line");
  }
  SECTION("fewer than three lines") {
    std::string bad = std::string(kV1Origin) + "\n7\n";
    fails(bad + "\n" + sig_line("rekor.example.dev", spki_hint(k), sign_msg(k, bad)),
          "fewer than three lines");
  }
  SECTION("other signers' lines are skipped, ours must be among them") {
    const KeyPair& witness = cached_key("ED25519");
    std::string wline = sig_line("witness.example", ed25519_hint("witness.example", witness),
                                 sign_msg(witness, text));
    CHECK(
        verify_inclusion_proof(
            with(text + "\n" + wline + sig_line("rekor.example.dev", spki_hint(k), sig)), log, true)
            .ok());
    fails(text + "\n" + wline, "no key hint");
  }
  SECTION("every line with our hint must verify") {
    fails(text + "\n" + sig_line("rekor.example.dev", spki_hint(k), sig) +
              sig_line("rekor.example.dev", spki_hint(k), flip(sig, 12)),
          "does not verify");
  }
}

TEST_CASE("Rekor checkpoint: extra lines are kept, v1 origin and name are free") {
  const KeyPair& k = cached_key("P-256");
  TransparencyLog log = log_for(k);
  const std::string root(32, '\x42');
  std::string text = note_text(kV1Origin, 99, root, {"Timestamp: 1", "other: x"});
  auto cp =
      verify_checkpoint(text + "\n" + sig_line("any-name", spki_hint(k), sign_msg(k, text)), log);
  REQUIRE(cp.ok());
  CHECK(cp->origin == kV1Origin);
  CHECK(cp->tree_size == 99);
  CHECK(cp->root_hash == root);
  CHECK(cp->extra_lines == std::vector<std::string>{"Timestamp: 1", "other: x"});
}

TEST_CASE("Rekor checkpoint: Rekor v2 (Ed25519) origins, names and hints") {
  const KeyPair& k = cached_key("ED25519");
  TransparencyLog log = log_for(k, "https://" + std::string(kV2Origin));
  Tree t(3);
  const std::string text = note_text(kV2Origin, 3, t.root());
  const std::string sig = sign_msg(k, text);
  const std::string hint = ed25519_hint(kV2Origin, k);
  auto entry = [&](std::string cp) { return tree_entry(t, 2, k, std::move(cp)); };
  REQUIRE(
      verify_inclusion_proof(entry(text + "\n" + sig_line(kV2Origin, hint, sig)), log, true).ok());

  SECTION("the base URL may carry a port and a path") {
    TransparencyLog l2 = log;
    l2.base_url = "https://" + std::string(kV2Origin) + ":443/api/v2";
    CHECK(
        verify_inclusion_proof(entry(text + "\n" + sig_line(kV2Origin, hint, sig)), l2, true).ok());
  }
  SECTION("the v1 hint does not select an Ed25519 v2 line") {
    auto r = verify_inclusion_proof(entry(text + "\n" + sig_line(kV2Origin, spki_hint(k), sig)),
                                    log, true);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("no key hint") != std::string::npos);
  }
  SECTION("the hint of another origin") {
    auto r = verify_inclusion_proof(
        entry(text + "\n" + sig_line(kV2Origin, ed25519_hint("other.example", k), sig)), log, true);
    CHECK_FALSE(r.ok());
  }
  SECTION("a signature line under another name") {
    auto r = verify_inclusion_proof(entry(text + "\n" + sig_line("other.example", hint, sig)), log,
                                    true);
    CHECK_FALSE(r.ok());
  }
  SECTION("an origin that is not the log's host") {
    std::string other = note_text("log2025-2.rekor.example.dev", 3, t.root());
    std::string cp = other + "\n" +
                     sig_line("log2025-2.rekor.example.dev",
                              ed25519_hint("log2025-2.rekor.example.dev", k), sign_msg(k, other));
    auto r = verify_inclusion_proof(entry(cp), log, true);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("is not the log") != std::string::npos);
  }
  SECTION("a log without a base URL cannot check a v2 origin") {
    TransparencyLog l2 = log;
    l2.base_url.clear();
    CHECK_FALSE(
        verify_inclusion_proof(entry(text + "\n" + sig_line(kV2Origin, hint, sig)), l2, true).ok());
  }
  SECTION("the checkpoint key id from the trusted root also selects the line") {
    TransparencyLog l2 = log;
    l2.checkpoint_key_id = "\x01\x02\x03\x04" + std::string(28, '\0');
    CHECK(verify_inclusion_proof(entry(text + "\n" + sig_line(kV2Origin, "\x01\x02\x03\x04", sig)),
                                 l2, true)
              .ok());
  }
  SECTION("bad Ed25519 signature") {
    auto r = verify_inclusion_proof(entry(text + "\n" + sig_line(kV2Origin, hint, flip(sig, 3))),
                                    log, true);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("does not verify") != std::string::npos);
  }
}

TEST_CASE("Rekor checkpoint: Rekor v2 with an ECDSA key uses the SPKI hint") {
  const KeyPair& k = cached_key("P-256");
  TransparencyLog log = log_for(k, "https://" + std::string(kV2Origin));
  const std::string root(32, '\x07');
  const std::string text = note_text(kV2Origin, 10, root);
  CHECK(verify_checkpoint(text + "\n" + sig_line(kV2Origin, spki_hint(k), sign_msg(k, text)), log)
            .ok());
  CHECK_FALSE(
      verify_checkpoint(text + "\n" + sig_line("x", spki_hint(k), sign_msg(k, text)), log).ok());
}

TEST_CASE("Rekor checkpoint: size limits") {
  const KeyPair& k = cached_key("P-256");
  TransparencyLog log = log_for(k);
  std::string text = note_text(kV1Origin, 1, std::string(32, 'r'));
  std::string line = sig_line("n", spki_hint(other_key("P-256")), "sigsig");
  std::string many = text + "\n";
  for (int i = 0; i < 101; ++i) many += line;
  auto r = verify_checkpoint(many, log);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("too many") != std::string::npos);
  CHECK_FALSE(verify_checkpoint(std::string(300 * 1024, 'a'), log).ok());
}

// ============================================================================ parsers

TEST_CASE("Rekor annotation: cosign's dev.sigstore.cosign/bundle") {
  const KeyPair& k = cached_key("P-256");
  TransparencyLog log = log_for(k);
  const KeyPair& signer = cached_key("prime256v1");
  std::string body = hashedrekord_body("sig", signer.public_pem());
  TlogEntry e = signed_entry(k, body, 4242424, 1795536205);
  const std::string ann = "{\"SignedEntryTimestamp\":\"" + base64_encode(e.signed_entry_timestamp) +
                          "\",\"Payload\":{\"body\":\"" + base64_encode(body) +
                          "\",\"integratedTime\":1795536205,\"logIndex\":4242424,\"logID\":\"" +
                          hex_encode(e.log_id) + "\"}}";
  auto parsed = parse_rekor_bundle_annotation(ann);
  if (!parsed) INFO(parsed.error().message);
  REQUIRE(parsed.ok());
  CHECK(parsed->log_index == 4242424);
  CHECK(parsed->integrated_time == 1795536205);
  CHECK(parsed->log_id == e.log_id);
  CHECK(parsed->canonicalized_body == body);
  CHECK(parsed->kind == "hashedrekord");
  CHECK(parsed->version == "0.0.1");
  CHECK_FALSE(parsed->inclusion_proof.has_value());
  CHECK(verify_signed_entry_timestamp(*parsed, log).ok());

  SECTION("member names match as Go matches them") {
    std::string folded = ann;
    folded.replace(folded.find("SignedEntryTimestamp"), 20, "signedentrytimestamp");
    folded.replace(folded.find("Payload"), 7, "PAYLOAD");
    folded.replace(folded.find("logID"), 5, "LogId");
    auto p = parse_rekor_bundle_annotation(folded);
    REQUIRE(p.ok());
    CHECK(verify_signed_entry_timestamp(*p, log).ok());
    // U+017F LATIN SMALL LETTER LONG S folds to 's', as in Go.
    std::string longs = ann;
    longs.replace(longs.find("SignedEntryTimestamp"), 1, "\xC5\xBF");
    CHECK(parse_rekor_bundle_annotation(longs).ok());
  }
  SECTION("unknown members are ignored") {
    std::string extra = ann;
    extra.insert(1, "\"other\":[1,2],");
    CHECK(parse_rekor_bundle_annotation(extra).ok());
  }
}

TEST_CASE("Rekor annotation: strict fields") {
  const std::string body_b64 = base64_encode(R"({"apiVersion":"0.0.1","kind":"hashedrekord"})");
  const std::string id(64, 'a');
  auto ann = [&](std::string set, std::string body, std::string time, std::string index,
                 std::string logid) {
    std::string out = "{";
    if (!set.empty()) out += "\"SignedEntryTimestamp\":" + set + ",";
    out += "\"Payload\":{";
    std::string sep;
    if (!body.empty()) {
      out += sep + "\"body\":" + body;
      sep = ",";
    }
    if (!time.empty()) {
      out += sep + "\"integratedTime\":" + time;
      sep = ",";
    }
    if (!index.empty()) {
      out += sep + "\"logIndex\":" + index;
      sep = ",";
    }
    if (!logid.empty()) {
      out += sep + "\"logID\":" + logid;
      sep = ",";
    }
    return out + "}}";
  };
  const std::string set = "\"MEUCIQ==\"";
  const std::string body = "\"" + body_b64 + "\"";
  const std::string logid = "\"" + id + "\"";
  REQUIRE(parse_rekor_bundle_annotation(ann(set, body, "1", "2", logid)).ok());
  struct Row {
    const char* why;
    std::string in;
    const char* names;
  };
  auto row = GENERATE_COPY(
      Row{"missing SET", ann("", body, "1", "2", logid), "SignedEntryTimestamp is missing"},
      Row{"null SET", ann("null", body, "1", "2", logid), "SignedEntryTimestamp is missing"},
      Row{"empty SET", ann("\"\"", body, "1", "2", logid), "SignedEntryTimestamp is empty"},
      Row{"SET not base64", ann("\"***\"", body, "1", "2", logid), "SignedEntryTimestamp"},
      Row{"missing body", ann(set, "", "1", "2", logid), "Payload.body is missing"},
      Row{"body not base64", ann(set, "\"%%\"", "1", "2", logid), "Payload.body"},
      Row{"body not JSON", ann(set, "\"" + base64_encode("nope") + "\"", "1", "2", logid),
          "Payload.body"},
      Row{"body without kind",
          ann(set, "\"" + base64_encode("{\"apiVersion\":\"1\"}") + "\"", "1", "2", logid), "kind"},
      Row{"missing integratedTime", ann(set, body, "", "2", logid), "integratedTime is missing"},
      Row{"negative integratedTime", ann(set, body, "-1", "2", logid), "integratedTime"},
      Row{"fractional integratedTime", ann(set, body, "1.5", "2", logid), "integratedTime"},
      Row{"string integratedTime", ann(set, body, "\"1\"", "2", logid), "integratedTime"},
      Row{"missing logIndex", ann(set, body, "1", "", logid), "logIndex is missing"},
      Row{"huge logIndex", ann(set, body, "1", "18446744073709551615", logid), "logIndex"},
      Row{"missing logID", ann(set, body, "1", "2", ""), "logID is missing"},
      Row{"uppercase logID", ann(set, body, "1", "2", "\"" + std::string(64, 'A') + "\""), "logID"},
      Row{"odd logID", ann(set, body, "1", "2", "\"abc\""), "logID"},
      Row{"logID not a string", ann(set, body, "1", "2", "7"), "logID"},
      Row{"Payload not an object", "{\"SignedEntryTimestamp\":" + set + ",\"Payload\":[]}",
          "Payload"},
      Row{"case-folded duplicate",
          "{\"SignedEntryTimestamp\":" + set + ",\"signedEntryTimestamp\":" + set +
              ",\"Payload\":{}}",
          "given twice"},
      Row{"exact duplicate", "{\"Payload\":{},\"Payload\":{}}", "duplicate key"},
      Row{"not an object", "[1]", "must be a JSON object"});
  INFO(row.why);
  auto r = parse_rekor_bundle_annotation(row.in);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::parse_error);
  INFO(r.error().message);
  CHECK(r.error().message.find(row.names) != std::string::npos);
}

namespace {

std::string tlog_json(const std::string& body, const std::string& fields) {
  return "{\"logIndex\":\"79571823\",\"logId\":{\"keyId\":\"" +
         base64_encode(std::string(32, 'L')) +
         "\"},\"kindVersion\":{\"kind\":\"hashedrekord\",\"version\":\"0.0.1\"},"
         "\"integratedTime\":\"1710869186\"," +
         fields + "\"canonicalizedBody\":\"" + base64_encode(body) + "\"}";
}

const std::string kMiniBody = R"({"apiVersion":"0.0.1","kind":"hashedrekord","spec":{}})";

}  // namespace

TEST_CASE("Rekor tlog entry: protobuf JSON forms") {
  const std::string root = base64_encode(std::string(32, 'R'));
  const std::string h = base64_encode(std::string(32, 'H'));
  auto e = parse_bundle_tlog_entry(
      tlog_json(kMiniBody,
                "\"inclusionPromise\":{\"signedEntryTimestamp\":\"AQID\"},"
                "\"inclusionProof\":{\"logIndex\":\"75408392\",\"rootHash\":\"" +
                    root + "\",\"treeSize\":\"75408393\",\"hashes\":[\"" + h + "\",\"" + h +
                    "\"],\"checkpoint\":{\"envelope\":\"cp\\n\"}},"));
  if (!e) INFO(e.error().message);
  REQUIRE(e.ok());
  CHECK(e->log_index == 79571823);
  CHECK(e->log_id == std::string(32, 'L'));
  CHECK(e->kind == "hashedrekord");
  CHECK(e->version == "0.0.1");
  CHECK(e->integrated_time == 1710869186);
  CHECK(e->signed_entry_timestamp == "\x01\x02\x03");
  CHECK(e->canonicalized_body == kMiniBody);
  REQUIRE(e->inclusion_proof.has_value());
  CHECK(e->inclusion_proof->log_index == 75408392);
  CHECK(e->inclusion_proof->tree_size == 75408393);
  CHECK(e->inclusion_proof->root_hash == std::string(32, 'R'));
  CHECK(e->inclusion_proof->hashes.size() == 2);
  CHECK(e->inclusion_proof->checkpoint == "cp\n");

  SECTION("int64 as numbers, proto field names, nulls, no checkpoint, no time (Rekor v2)") {
    std::string v2 =
        "{\"log_index\":7131,\"log_id\":{\"key_id\":\"" + base64_encode(std::string(32, 'L')) +
        "\"},\"kind_version\":{\"kind\":\"hashedrekord\",\"version\":\"0.0.1\"},"
        "\"inclusion_promise\":null,\"inclusion_proof\":{\"log_index\":0,\"root_hash\":\"" +
        root + "\",\"tree_size\":1,\"hashes\":null},\"canonicalized_body\":\"" +
        base64_encode(kMiniBody) + "\",\"unknown\":1}";
    auto p = parse_bundle_tlog_entry(v2);
    if (!p) INFO(p.error().message);
    REQUIRE(p.ok());
    CHECK(p->log_index == 7131);
    CHECK(p->integrated_time == 0);
    CHECK(p->signed_entry_timestamp.empty());
    REQUIRE(p->inclusion_proof.has_value());
    CHECK(p->inclusion_proof->hashes.empty());
    CHECK(p->inclusion_proof->checkpoint.empty());
  }
}

TEST_CASE("Rekor tlog entry: strict fields") {
  const std::string root = base64_encode(std::string(32, 'R'));
  const std::string key = base64_encode(std::string(32, 'L'));
  const std::string body = base64_encode(kMiniBody);
  struct Row {
    const char* why;
    std::string in;
    const char* names;
  };
  auto row = GENERATE_COPY(
      Row{"no logId",
          "{\"kindVersion\":{\"kind\":\"hashedrekord\",\"version\":\"0.0.1\"},"
          "\"canonicalizedBody\":\"" +
              body + "\"}",
          "logId is missing"},
      Row{"empty keyId",
          "{\"logId\":{\"keyId\":\"\"},\"kindVersion\":{\"kind\":\"hashedrekord\","
          "\"version\":\"0.0.1\"},\"canonicalizedBody\":\"" +
              body + "\"}",
          "logId.keyId is empty"},
      Row{"no kindVersion",
          "{\"logId\":{\"keyId\":\"" + key + "\"},\"canonicalizedBody\":\"" + body + "\"}",
          "kindVersion is missing"},
      Row{"kindVersion disagrees with the body",
          "{\"logId\":{\"keyId\":\"" + key +
              "\"},\"kindVersion\":{\"kind\":\"dsse\",\"version\":"
              "\"0.0.1\"},\"canonicalizedBody\":\"" +
              body + "\"}",
          "but the body is hashedrekord"},
      Row{"no body",
          "{\"logId\":{\"keyId\":\"" + key +
              "\"},\"kindVersion\":{\"kind\":\"hashedrekord\","
              "\"version\":\"0.0.1\"}}",
          "canonicalizedBody is missing"},
      Row{"body not base64",
          tlog_json("", "").replace(tlog_json("", "").find("\"canonicalizedBody\":\"") + 21, 0,
                                    "*"),
          "canonicalizedBody"},
      Row{"logIndex negative", tlog_json(kMiniBody, "").replace(13, 8, "-1"), "logIndex"},
      Row{"logIndex with a fraction", tlog_json(kMiniBody, "").replace(13, 8, "1.5"), "logIndex"},
      Row{"logIndex with leading zero", tlog_json(kMiniBody, "").replace(13, 8, "01"), "logIndex"},
      Row{"logIndex out of range", tlog_json(kMiniBody, "").replace(13, 8, "9223372036854775808"),
          "logIndex"},
      Row{"both spellings", tlog_json(kMiniBody, "\"log_index\":\"1\","), "given twice"},
      Row{"promise without SET", tlog_json(kMiniBody, "\"inclusionPromise\":{},"),
          "signedEntryTimestamp is missing"},
      Row{"SET not base64",
          tlog_json(kMiniBody, "\"inclusionPromise\":{\"signedEntryTimestamp\":\"@@\"},"),
          "signedEntryTimestamp"},
      Row{"proof without root", tlog_json(kMiniBody, "\"inclusionProof\":{\"treeSize\":\"1\"},"),
          "rootHash is missing"},
      Row{"root not 32 bytes",
          tlog_json(kMiniBody, "\"inclusionProof\":{\"rootHash\":\"AQID\",\"treeSize\":\"1\"},"),
          "rootHash is not a 32-byte"},
      Row{"hash not 32 bytes",
          tlog_json(kMiniBody, "\"inclusionProof\":{\"rootHash\":\"" + root +
                                   "\",\"treeSize\":\"2\",\"hashes\":[\"AQID\"]},"),
          "hashes[0] is not a 32-byte"},
      Row{"hashes not an array",
          tlog_json(kMiniBody,
                    "\"inclusionProof\":{\"rootHash\":\"" + root + "\",\"hashes\":\"x\"},"),
          "hashes must be an array"},
      Row{"checkpoint envelope not a string",
          tlog_json(kMiniBody, "\"inclusionProof\":{\"rootHash\":\"" + root +
                                   "\",\"checkpoint\":{\"envelope\":1}},"),
          "checkpoint.envelope"},
      Row{"duplicate keys", tlog_json(kMiniBody, "\"integratedTime\":\"1\","), "duplicate key"});
  INFO(row.why);
  auto r = parse_bundle_tlog_entry(row.in);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::parse_error);
  INFO(r.error().message);
  CHECK(r.error().message.find(row.names) != std::string::npos);
}

TEST_CASE("Rekor tlog entry: more than 64 proof hashes") {
  std::string hashes;
  for (int i = 0; i < 65; ++i)
    hashes += (i ? ",\"" : "\"") + base64_encode(std::string(32, 'h')) + "\"";
  auto r = parse_bundle_tlog_entry(tlog_json(kMiniBody, "\"inclusionProof\":{\"rootHash\":\"" +
                                                            base64_encode(std::string(32, 'R')) +
                                                            "\",\"hashes\":[" + hashes + "]},"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("more than 64") != std::string::npos);
}

// ============================================================================ bodies

TEST_CASE("Rekor body: hashedrekord 0.0.1 with a key, a certificate and a chain") {
  const KeyPair& signer = cached_key("P-256");
  const std::string cert = certificate_for(signer);
  const std::string cert_pem = to_pem("CERTIFICATE", cert);

  auto with_key = parse_rekor_body(hashedrekord_body("rawsig", signer.public_pem()));
  if (!with_key) INFO(with_key.error().message);
  REQUIRE(with_key.ok());
  CHECK(with_key->kind == "hashedrekord");
  CHECK(with_key->api_version == "0.0.1");
  CHECK(with_key->hash_algorithm == HashAlgorithm::sha256);
  CHECK(hex_encode(with_key->hash) == kDigestHex);
  CHECK(with_key->envelope_hash.empty());
  REQUIRE(with_key->signatures.size() == 1);
  CHECK(with_key->signatures[0] == "rawsig");
  REQUIRE(with_key->verifiers.size() == 1);
  CHECK_FALSE(with_key->verifiers[0].is_certificate);
  CHECK(with_key->verifiers[0].der == signer.spki_der());

  auto with_cert = parse_rekor_body(hashedrekord_body("rawsig", cert_pem));
  REQUIRE(with_cert.ok());
  CHECK(with_cert->verifiers[0].is_certificate);
  CHECK(with_cert->verifiers[0].der == cert);

  const std::string other = certificate_for(cached_key("ED25519"));
  auto chain =
      parse_rekor_body(hashedrekord_body("rawsig", cert_pem + to_pem("CERTIFICATE", other)));
  REQUIRE(chain.ok());
  CHECK(chain->verifiers[0].der == cert);

  auto sha512 = parse_rekor_body(
      "{\"apiVersion\":\"0.0.1\",\"kind\":\"hashedrekord\",\"spec\":{\"data\":{\"hash\":{"
      "\"algorithm\":\"sha512\",\"value\":\"" +
      std::string(128, 'e') +
      "\"}},\"signature\":{\"content\":\"AQ==\",\"publicKey\":{\"content\":\"" +
      base64_encode(signer.public_pem()) + "\"}}}}");
  REQUIRE(sha512.ok());
  CHECK(sha512->hash_algorithm == HashAlgorithm::sha512);
}

TEST_CASE("Rekor body: hashedrekord 0.0.1 is strict") {
  const KeyPair& signer = cached_key("P-256");
  const std::string cert_pem = to_pem("CERTIFICATE", certificate_for(signer));
  struct Row {
    const char* why;
    std::string body;
    const char* names;
  };
  auto row = GENERATE_COPY(
      Row{"uppercase hex", hashedrekord_body("s", signer.public_pem(), std::string(64, 'A')),
          "spec.data.hash.value"},
      Row{"short digest", hashedrekord_body("s", signer.public_pem(), std::string(62, 'a')),
          "spec.data.hash.value"},
      Row{"empty signature", hashedrekord_body("", signer.public_pem()),
          "spec.signature.content is empty"},
      Row{"key not PEM", hashedrekord_body("s", "not pem"), "holds no PEM block"},
      Row{"private key PEM", hashedrekord_body("s", cached_key("P-256").private_pem()),
          "not a CERTIFICATE or PUBLIC KEY"},
      Row{"two public keys", hashedrekord_body("s", signer.public_pem() + signer.public_pem()),
          "more than one public key"},
      Row{"certificate then key", hashedrekord_body("s", cert_pem + signer.public_pem()),
          "mixes PEM block types"},
      Row{"text around the PEM", hashedrekord_body("s", "junk" + signer.public_pem()), "outside"},
      Row{"certificate that does not parse",
          hashedrekord_body("s", to_pem("CERTIFICATE", "garbage")), "not a DER certificate"},
      Row{"key that does not parse", hashedrekord_body("s", to_pem("PUBLIC KEY", "garbage")),
          "not a usable public key"},
      Row{"certificate with trailing bytes",
          hashedrekord_body("s", to_pem("CERTIFICATE", certificate_for(signer) + "x")),
          "after the certificate"},
      Row{"missing signature",
          R"({"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":{"algorithm":"sha256","value":")" +
              kDigestHex + R"("}}}})",
          "spec.signature is missing"},
      Row{"unknown algorithm",
          R"({"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":{"algorithm":"md5","value":"00"}}}})",
          "spec.data.hash.algorithm"},
      Row{"no spec", R"({"apiVersion":"0.0.1","kind":"hashedrekord"})", "spec is missing"},
      Row{"no kind", R"({"apiVersion":"0.0.1","spec":{}})", "kind is missing"});
  INFO(row.why);
  auto r = parse_rekor_body(row.body);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::parse_error);
  INFO(r.error().message);
  CHECK(r.error().message.find(row.names) != std::string::npos);
  // A certificate the caller already parsed spares only a verifier with exactly its bytes.
  auto known = parse_rekor_body(row.body, certificate_for(signer));
  REQUIRE_FALSE(known.ok());
  CHECK(known.error().message.find(row.names) != std::string::npos);
}

TEST_CASE("Rekor body: the caller's parsed certificate is not parsed again, others are") {
  const KeyPair& signer = cached_key("P-256");
  const std::string cert = certificate_for(signer);
  auto same = parse_rekor_body(hashedrekord_body("s", to_pem("CERTIFICATE", cert)), cert);
  REQUIRE(same.ok());
  REQUIRE(same->verifiers.size() == 1);
  CHECK(same->verifiers.front().is_certificate);
  CHECK(same->verifiers.front().der == cert);
  auto garbage = parse_rekor_body(hashedrekord_body("s", to_pem("CERTIFICATE", "garbage")), cert);
  REQUIRE_FALSE(garbage.ok());
  CHECK(garbage.error().message.find("not a DER certificate") != std::string::npos);
}

TEST_CASE("Rekor body: hashedrekord 0.0.2 (Rekor v2)") {
  const KeyPair& signer = cached_key("P-256");
  const std::string cert = certificate_for(signer);
  const std::string digest = sha256("artifact");
  auto body = [&](std::string verifier) {
    return "{\"apiVersion\":\"0.0.2\",\"kind\":\"hashedrekord\",\"spec\":{\"hashedRekordV002\":{"
           "\"data\":{\"algorithm\":\"SHA2_256\",\"digest\":\"" +
           base64_encode(digest) + "\"},\"signature\":{\"content\":\"" + base64_encode("sig") +
           "\",\"verifier\":" + verifier + "}}}}";
  };
  auto c =
      parse_rekor_body(body("{\"keyDetails\":\"PKIX_ECDSA_P256_SHA_256\",\"x509Certificate\":{"
                            "\"rawBytes\":\"" +
                            base64_encode(cert) + "\"}}"));
  if (!c) INFO(c.error().message);
  REQUIRE(c.ok());
  CHECK(c->api_version == "0.0.2");
  CHECK(c->hash == digest);
  CHECK(c->signatures == std::vector<std::string>{"sig"});
  CHECK(c->verifiers[0].is_certificate);
  CHECK(c->verifiers[0].der == cert);
  auto k =
      parse_rekor_body(body("{\"keyDetails\":\"PKIX_ECDSA_P256_SHA_256\",\"publicKey\":{"
                            "\"rawBytes\":\"" +
                            base64_encode(signer.spki_der()) + "\"}}"));
  REQUIRE(k.ok());
  CHECK_FALSE(k->verifiers[0].is_certificate);
  CHECK(k->verifiers[0].der == signer.spki_der());

  auto both = parse_rekor_body(
      body("{\"publicKey\":{\"rawBytes\":\"" + base64_encode(signer.spki_der()) +
           "\"},\"x509Certificate\":{\"rawBytes\":\"" + base64_encode(cert) + "\"}}"));
  REQUIRE_FALSE(both.ok());
  CHECK(both.error().message.find("exactly one of publicKey and x509Certificate") !=
        std::string::npos);
  CHECK_FALSE(parse_rekor_body(body("{\"keyDetails\":\"PKIX_ED25519\"}")).ok());
  std::string sha1 =
      body("{\"publicKey\":{\"rawBytes\":\"" + base64_encode(signer.spki_der()) + "\"}}");
  sha1.replace(sha1.find("SHA2_256"), 8, "SHA1");
  CHECK_FALSE(parse_rekor_body(sha1).ok());
  std::string short_digest =
      body("{\"publicKey\":{\"rawBytes\":\"" + base64_encode(signer.spki_der()) + "\"}}");
  short_digest.replace(short_digest.find(base64_encode(digest)), base64_encode(digest).size(),
                       base64_encode(digest.substr(0, 20)));
  CHECK_FALSE(parse_rekor_body(short_digest).ok());
}

TEST_CASE("Rekor body: dsse 0.0.1 and 0.0.2") {
  const KeyPair& signer = cached_key("P-256");
  const std::string cert = certificate_for(signer);
  const std::string payload_hash = sha256("payload");
  const std::string envelope_hash = sha256("envelope");
  const std::string v1 =
      "{\"apiVersion\":\"0.0.1\",\"kind\":\"dsse\",\"spec\":{\"envelopeHash\":{\"algorithm\":"
      "\"sha256\",\"value\":\"" +
      hex_encode(envelope_hash) +
      "\"},\"payloadHash\":{\"algorithm\":"
      "\"sha256\",\"value\":\"" +
      hex_encode(payload_hash) + "\"},\"signatures\":[{\"signature\":\"" +
      base64_encode("sig-one") + "\",\"verifier\":\"" + base64_encode(to_pem("CERTIFICATE", cert)) +
      "\"},{\"signature\":\"" + base64_encode("sig-two") + "\",\"verifier\":\"" +
      base64_encode(signer.public_pem()) + "\"}]}}";
  auto d1 = parse_rekor_body(v1);
  if (!d1) INFO(d1.error().message);
  REQUIRE(d1.ok());
  CHECK(d1->kind == "dsse");
  CHECK(d1->hash == payload_hash);
  CHECK(d1->envelope_hash == envelope_hash);
  CHECK(d1->signatures == std::vector<std::string>{"sig-one", "sig-two"});
  REQUIRE(d1->verifiers.size() == 2);
  CHECK(d1->verifiers[0].is_certificate);
  CHECK(d1->verifiers[0].der == cert);
  CHECK(d1->verifiers[1].der == signer.spki_der());

  std::string no_env = v1;
  no_env.replace(no_env.find("envelopeHash"), 12, "envelopeHasx");
  CHECK_FALSE(parse_rekor_body(no_env).ok());
  std::string no_sigs = v1.substr(0, v1.find(",\"signatures\"")) + ",\"signatures\":[]}}";
  auto empty = parse_rekor_body(no_sigs);
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().message.find("spec.signatures is empty") != std::string::npos);

  const std::string v2 =
      "{\"apiVersion\":\"0.0.2\",\"kind\":\"dsse\",\"spec\":{\"dsseV002\":{\"payloadHash\":{"
      "\"algorithm\":\"SHA2_256\",\"digest\":\"" +
      base64_encode(payload_hash) + "\"},\"signatures\":[{\"content\":\"" + base64_encode("sig") +
      "\",\"verifier\":{\"keyDetails\":\"PKIX_ECDSA_P256_SHA_256\",\"x509Certificate\":{"
      "\"rawBytes\":\"" +
      base64_encode(cert) + "\"}}}]}}}";
  auto d2 = parse_rekor_body(v2);
  if (!d2) INFO(d2.error().message);
  REQUIRE(d2.ok());
  CHECK(d2->hash == payload_hash);
  CHECK(d2->envelope_hash.empty());
  CHECK(d2->signatures == std::vector<std::string>{"sig"});
  CHECK(d2->verifiers[0].der == cert);
}

TEST_CASE("Rekor body: intoto 0.0.2 signatures are base64 twice") {
  const KeyPair& signer = cached_key("P-256");
  const std::string raw_sig = "\x30\x45raw-signature";
  const std::string body =
      "{\"apiVersion\":\"0.0.2\",\"kind\":\"intoto\",\"spec\":{\"content\":{\"envelope\":{"
      "\"payloadType\":\"application/vnd.in-toto+json\",\"signatures\":[{\"keyid\":\"k\","
      "\"publicKey\":\"" +
      base64_encode(signer.public_pem()) + "\",\"sig\":\"" + base64_encode(base64_encode(raw_sig)) +
      "\"}]},\"hash\":{\"algorithm\":\"sha256\",\"value\":\"" + sha256_hex("envelope") +
      "\"},\"payloadHash\":{\"algorithm\":\"sha256\",\"value\":\"" + sha256_hex("payload") +
      "\"}}}}";
  auto b = parse_rekor_body(body);
  if (!b) INFO(b.error().message);
  REQUIRE(b.ok());
  CHECK(b->hash == sha256("payload"));
  CHECK(b->envelope_hash == sha256("envelope"));
  CHECK(b->signatures == std::vector<std::string>{raw_sig});
  CHECK(b->verifiers[0].der == signer.spki_der());
  std::string once = body;
  once.replace(once.find(base64_encode(base64_encode(raw_sig))),
               base64_encode(base64_encode(raw_sig)).size(), base64_encode("*not base64*"));
  CHECK_FALSE(parse_rekor_body(once).ok());
}

TEST_CASE("Rekor body: other kinds and versions are unsupported") {
  struct Row {
    const char* kind;
    const char* version;
  };
  auto row = GENERATE(Row{"rekord", "0.0.1"}, Row{"intoto", "0.0.1"}, Row{"hashedrekord", "0.0.3"},
                      Row{"dsse", "0.0.3"}, Row{"helm", "0.0.1"}, Row{"cose", "0.0.1"});
  auto r = parse_rekor_body(std::string("{\"apiVersion\":\"") + row.version + "\",\"kind\":\"" +
                            row.kind + "\",\"spec\":{}}");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unsupported);
  CHECK(r.error().message.find(row.kind) != std::string::npos);
}

// ============================================================================ real vectors

TEST_CASE("Rekor real vector: a public-good SET verifies (sigstore-go bundle-publish.json)") {
  REQUIRE(read_file("data/sigstore/trusted_root.public-good.json").find(kRekorPublicGood) !=
          std::string::npos);
  TransparencyLog log = log_from_b64(kRekorPublicGood, "https://rekor.sigstore.dev");
  Bundle b = real_bundle("sigstore-go-bundle-publish.json");
  REQUIRE(b.tlog_entries.size() == 1);
  const TlogEntry& e = b.tlog_entries[0];
  CHECK(e.log_id == log.log_id);
  CHECK(e.kind == "intoto");
  auto ok = verify_signed_entry_timestamp(e, log);
  if (!ok) INFO(ok.error().message);
  CHECK(ok.ok());

  // The same entry as cosign's legacy annotation verifies the same way.
  const std::string ann = "{\"SignedEntryTimestamp\":\"" + base64_encode(e.signed_entry_timestamp) +
                          "\",\"Payload\":{\"body\":\"" + base64_encode(e.canonicalized_body) +
                          "\",\"integratedTime\":" + std::to_string(e.integrated_time) +
                          ",\"logIndex\":" + std::to_string(e.log_index) + ",\"logID\":\"" +
                          hex_encode(e.log_id) + "\"}}";
  auto a = parse_rekor_bundle_annotation(ann);
  REQUIRE(a.ok());
  CHECK(verify_signed_entry_timestamp(*a, log).ok());

  TlogEntry later = e;
  later.integrated_time += 1;
  CHECK_FALSE(verify_signed_entry_timestamp(later, log).ok());
  CHECK_FALSE(verify_signed_entry_timestamp(
                  e, log_from_b64(kRekorV2Staging, "https://log2025-alpha1.rekor.sigstage.dev"))
                  .ok());

  // Its intoto 0.0.2 body records the envelope's signature and key.
  auto body = parse_rekor_body(e.canonicalized_body);
  if (!body) INFO(body.error().message);
  REQUIRE(body.ok());
  CHECK(body->kind == "intoto");
  CHECK(body->signatures == std::vector<std::string>{b.envelope.signatures[0].sig});
  CHECK(body->hash == sha256(b.envelope.payload));
  CHECK_FALSE(body->verifiers[0].is_certificate);
}

TEST_CASE(
    "Rekor real vector: a public-good inclusion proof and checkpoint (sigstore-go "
    "bundle-v02.json)") {
  TransparencyLog log = log_from_b64(kRekorPublicGood, "https://rekor.sigstore.dev");
  Bundle b = real_bundle("sigstore-go-bundle-v02.json");
  REQUIRE(b.tlog_entries.size() == 1);
  const TlogEntry& e = b.tlog_entries[0];
  REQUIRE(e.inclusion_proof.has_value());
  CHECK(e.inclusion_proof->log_index != e.log_index);  // shard index vs global index
  auto ok = verify_inclusion_proof(e, log, /*require_checkpoint=*/true);
  if (!ok) INFO(ok.error().message);
  CHECK(ok.ok());

  auto cp = verify_checkpoint(e.inclusion_proof->checkpoint, log);
  REQUIRE(cp.ok());
  CHECK(cp->origin == "rekor.sigstore.dev - 2605736670972794746");
  CHECK(cp->tree_size == 23083062);
  CHECK(cp->extra_lines == std::vector<std::string>{"Timestamp: 1689177396617352539"});

  TlogEntry bad = e;
  bad.inclusion_proof->hashes[4] = flip(bad.inclusion_proof->hashes[4], 0);
  CHECK_FALSE(verify_inclusion_proof(bad, log, true).ok());
  bad = e;
  bad.canonicalized_body = flip(bad.canonicalized_body, 100);
  CHECK_FALSE(verify_inclusion_proof(bad, log, true).ok());
  bad = e;
  bad.inclusion_proof->checkpoint.replace(bad.inclusion_proof->checkpoint.find("23083062"), 8,
                                          "23083063");
  CHECK_FALSE(verify_inclusion_proof(bad, log, true).ok());
  TransparencyLog wrong = log_from_b64(kRekorV2Staging, "https://rekor.sigstore.dev");
  wrong.log_id = log.log_id;
  CHECK_FALSE(verify_inclusion_proof(e, wrong, true).ok());

  // Its hashedrekord 0.0.1 body records the bundle's signature, digest and certificate.
  auto body = parse_rekor_body(e.canonicalized_body);
  if (!body) INFO(body.error().message);
  REQUIRE(body.ok());
  CHECK(body->signatures == std::vector<std::string>{b.signature});
  CHECK(body->hash == b.message_digest);
  REQUIRE(body->verifiers[0].is_certificate);
  CHECK(body->verifiers[0].der == b.certificates_der[0]);
}

TEST_CASE("Rekor real vector: a Rekor v2 Ed25519 checkpoint (conformance rekor2-dsse-happy-path)") {
  const std::string url = "https://log2025-alpha1.rekor.sigstage.dev";
  TransparencyLog log = log_from_b64(kRekorV2Staging, url);
  Bundle b = real_bundle("conformance-rekor2-dsse-happy-path.sigstore.json");
  REQUIRE(b.tlog_entries.size() == 1);
  const TlogEntry& e = b.tlog_entries[0];
  CHECK(e.integrated_time == 0);
  CHECK(e.signed_entry_timestamp.empty());
  // A Rekor v2 log id is the whole C2SP note key hash, not SHA-256 of the SPKI.
  auto der = base64_decode(kRekorV2Staging);
  REQUIRE(der.ok());
  CHECK(e.log_id ==
        sha256("log2025-alpha1.rekor.sigstage.dev\n\x01" + der->substr(der->size() - 32)));
  log.log_id = e.log_id;
  auto ok = verify_inclusion_proof(e, log, /*require_checkpoint=*/true);
  if (!ok) INFO(ok.error().message);
  CHECK(ok.ok());

  TransparencyLog elsewhere = log;
  elsewhere.base_url = "https://log2025-1.rekor.sigstore.dev";
  CHECK_FALSE(verify_inclusion_proof(e, elsewhere, true).ok());
  TransparencyLog other_key_log = log_from_b64(kRekorPublicGood, url);
  other_key_log.log_id = e.log_id;
  CHECK_FALSE(verify_inclusion_proof(e, other_key_log, true).ok());
  TlogEntry bad = e;
  bad.inclusion_proof->log_index -= 1;
  CHECK_FALSE(verify_inclusion_proof(bad, log, true).ok());

  // Its dsse 0.0.2 body records the envelope's signature, payload hash and certificate.
  auto body = parse_rekor_body(e.canonicalized_body);
  if (!body) INFO(body.error().message);
  REQUIRE(body.ok());
  CHECK(body->kind == "dsse");
  CHECK(body->api_version == "0.0.2");
  CHECK(body->hash == sha256(b.envelope.payload));
  CHECK(body->signatures == std::vector<std::string>{b.envelope.signatures[0].sig});
  REQUIRE(body->verifiers[0].is_certificate);
  CHECK(body->verifiers[0].der == b.certificates_der[0]);
}
