// Rekor v2 (rekor-tiles) entries through crypto::verify_entity (issue 13, point 8): hashedrekord
// and dsse 0.0.2 bodies, proved by an inclusion proof and a C2SP checkpoint with no SET and no
// integrated time, so the signing time comes from RFC 3161 timestamps alone; checkpoints with
// witness cosignatures; the log chosen by its id. All material is minted here: the test PKI
// (Fulcio-like CA, CT log, TSA) and a Rekor v2 log (rekor_fixture.hpp).
#include <catch2/catch.hpp>

#include <openssl/evp.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/encoding.hpp"
#include "crypto/dsse.hpp"
#include "crypto/keys.hpp"
#include "crypto/rekor.hpp"
#include "crypto/sigstore.hpp"
#include "rekor_fixture.hpp"
#include "sigstore_pki.hpp"

using namespace sigil;
using namespace sigil::crypto;
using sigil::test::Cert;
using sigil::test::FulcioPki;
using sigil::test::KeyPair;
using sigil::test::TestLogV2;
using sigil::test::TestTsa;
using sigil::test::TestWitness;
using std::chrono::minutes;
using std::chrono::seconds;
using Signatures = TestLogV2::Signatures;

namespace {

const std::string kImage = "sha256:" + std::string(64, 'c');
const std::string kBlob = "a release tarball\n";

struct World {
  FulcioPki pki = FulcioPki::create();
  TestLogV2 rekor;
  TestTsa tsa = TestTsa::create();
  std::vector<CertificateAuthority> cas{pki.authority()};
  std::vector<TransparencyLog> tlogs{rekor.log()};
  std::vector<TransparencyLog> ctlogs{pki.ct_log()};
  std::vector<CertificateAuthority> tsas{tsa.authority()};
  TimePoint t0 = sigil::test::test_epoch();
  TimePoint stamped = t0 + minutes(1);  // inside the leaf's ten minutes

  Requirements keyless() const {
    Requirements r;
    r.cas = &cas;
    r.tlogs = &tlogs;
    r.require_tlog = true;
    r.ctlogs = &ctlogs;
    r.tsas = &tsas;
    r.min_signing_times = 1;
    return r;
  }
};

struct Signer {
  KeyPair key;
  Cert leaf;
};

Signer signer(const World& w) {
  Signer s;
  s.leaf = w.pki.leaf(w.pki.leaf_spec(w.t0), &s.key);
  return s;
}

std::string cert_verifier(const Signer& s) {
  return TestLogV2::verifier(s.leaf.der(), /*certificate=*/true);
}

// cosign v3 / sigstore-go: a blob signed as a messageSignature, logged as hashedrekord 0.0.2.
SignedEntity message_signature(const World& w, const Signer& s) {
  SignedEntity e;
  e.kind = SignedEntity::Kind::message_signature;
  e.source = "bundle";
  e.bundle_minor_version = 3;
  e.signature = s.key.sign(kBlob);
  e.message_digest = sha256(kBlob);
  e.certificates_der = {s.leaf.der()};
  e.tlog_entries = {w.rekor.entry(TestLogV2::hashedrekord(HashAlgorithm::sha256, sha256(kBlob),
                                                          e.signature, cert_verifier(s)))};
  e.rfc3161_timestamps = {w.tsa.stamp(e.signature, w.stamped)};
  return e;
}

std::string statement(const std::string& digest) {
  return R"({"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"reg.test/app","digest":{"sha256":")" +
         digest.substr(7) +
         R"("}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}})";
}

// cosign v3 `sign`: a DSSE image signature, logged as hashedrekord 0.0.2 over the PAE (Rekor
// v2's "hashedrekord over DSSE"), or as dsse 0.0.2 (the earlier Rekor v2 form).
SignedEntity dsse_signature(const World& w, const Signer& s, bool dsse_body = false) {
  SignedEntity e;
  e.kind = SignedEntity::Kind::dsse;
  e.source = "referrer";
  e.bundle_minor_version = 3;
  e.payload_type = std::string(kInTotoPayloadType);
  e.payload = statement(kImage);
  const std::string pae = dsse_pae(e.payload_type, e.payload);
  e.signature = s.key.sign(pae);
  e.certificates_der = {s.leaf.der()};
  e.tlog_entries = {w.rekor.entry(dsse_body
                                      ? TestLogV2::dsse(e.payload, e.signature, cert_verifier(s))
                                      : TestLogV2::hashedrekord(HashAlgorithm::sha256, sha256(pae),
                                                                e.signature, cert_verifier(s)))};
  e.rfc3161_timestamps = {w.tsa.stamp(e.signature, w.stamped)};
  return e;
}

Artifact blob(bool with_bytes) {
  Artifact a;
  a.kind = Artifact::Kind::blob;
  a.digest = "sha256:" + sha256_hex(kBlob);
  if (with_bytes) a.bytes = kBlob;
  return a;
}

Artifact image() {
  Artifact a;
  a.kind = Artifact::Kind::image;
  a.digest = kImage;
  return a;
}

// The entry's checkpoint re-signed with other lines around (or instead of) the log's own.
template <class Lines>
TlogEntry resigned(const World& w, const TlogEntry& e, Lines lines) {
  return w.rekor.entry(e.canonicalized_body, lines);
}

}  // namespace

TEST_CASE("Rekor v2: a message signature, proved by inclusion and an RFC 3161 time", "[rekor2]") {
  World w;
  Signer s = signer(w);
  SignedEntity e = message_signature(w, s);
  REQUIRE(e.tlog_entries[0].signed_entry_timestamp.empty());
  REQUIRE(e.tlog_entries[0].integrated_time == 0);
  for (bool bytes : {true, false}) {
    auto v = verify_entity(e, w.keyless(), blob(bytes));
    INFO(v.message);
    REQUIRE(v.ok);
    // The only signing time is the timestamp's: the log gives none.
    REQUIRE(v.signing_times.size() == 1);
    CHECK(v.signing_times[0] == w.stamped);
    CHECK(v.identity.sans.front().value == "signer@example.com");
  }
  SECTION("the entry must record this signature, digest and certificate") {
    SignedEntity other_sig = e;
    other_sig.tlog_entries = {w.rekor.entry(TestLogV2::hashedrekord(
        HashAlgorithm::sha256, sha256(kBlob), s.key.sign("other"), cert_verifier(s)))};
    CHECK(verify_entity(other_sig, w.keyless(), blob(true)).failure == Failure::tlog);
    SignedEntity other_digest = e;
    other_digest.tlog_entries = {w.rekor.entry(TestLogV2::hashedrekord(
        HashAlgorithm::sha256, sha256("other"), e.signature, cert_verifier(s)))};
    CHECK(verify_entity(other_digest, w.keyless(), blob(true)).failure == Failure::tlog);
    Signer someone = signer(w);
    SignedEntity other_cert = e;
    other_cert.tlog_entries = {w.rekor.entry(TestLogV2::hashedrekord(
        HashAlgorithm::sha256, sha256(kBlob), e.signature, cert_verifier(someone)))};
    CHECK(verify_entity(other_cert, w.keyless(), blob(true)).failure == Failure::tlog);
  }
  SECTION("a body that is not the one in the tree") {
    SignedEntity moved = e;
    moved.tlog_entries[0].inclusion_proof->hashes[1].back() ^= 1;
    CHECK(verify_entity(moved, w.keyless(), blob(true)).failure == Failure::tlog);
  }
  SECTION("no inclusion proof, or no checkpoint") {
    SignedEntity none = e;
    none.tlog_entries[0].inclusion_proof.reset();
    CHECK(verify_entity(none, w.keyless(), blob(true)).failure == Failure::tlog);
    SignedEntity bare = e;
    bare.tlog_entries[0].inclusion_proof->checkpoint.clear();
    CHECK(verify_entity(bare, w.keyless(), blob(true)).failure == Failure::tlog);
  }
}

TEST_CASE("Rekor v2: DSSE image signatures, hashedrekord over the PAE and dsse 0.0.2", "[rekor2]") {
  World w;
  Signer s = signer(w);
  for (bool dsse_body : {false, true}) {
    INFO((dsse_body ? "dsse 0.0.2" : "hashedrekord 0.0.2 over the PAE"));
    SignedEntity e = dsse_signature(w, s, dsse_body);
    auto v = verify_entity(e, w.keyless(), image());
    INFO(v.message);
    CHECK(v.ok);
    // The envelope's signature recorded must be this one.
    SignedEntity resigned_env = e;
    resigned_env.payload = statement("sha256:" + std::string(64, 'd'));
    resigned_env.signature = s.key.sign(dsse_pae(e.payload_type, resigned_env.payload));
    CHECK(verify_entity(resigned_env, w.keyless(), image()).failure == Failure::tlog);
  }
}

TEST_CASE("Rekor v2 checkpoints: witnesses, order, and the origin's own lines", "[rekor2]") {
  World w;
  Signer s = signer(w);
  SignedEntity e = message_signature(w, s);
  const TlogEntry& entry = e.tlog_entries[0];
  TestWitness w1;
  TestWitness w2;
  w2.name = "witness.example/two";
  auto with = [&](TlogEntry t) {
    SignedEntity copy = e;
    copy.tlog_entries = {std::move(t)};
    return verify_entity(copy, w.keyless(), blob(true));
  };

  SECTION("extra witness cosignatures after the log's line are skipped") {
    auto v = with(resigned(w, entry, [&](const std::string& text) {
      return Signatures{{}, {w1.line(text), w2.line(text)}, true};
    }));
    INFO(v.message);
    CHECK(v.ok);
  }
  SECTION("the origin's line need not come first") {
    auto v = with(resigned(w, entry, [&](const std::string& text) {
      return Signatures{{w1.line(text)}, {}, true};
    }));
    INFO(v.message);
    CHECK(v.ok);
  }
  SECTION("two signatures from the origin: one by a key the root does not list") {
    KeyPair other = sigil::test::generate_key("P-256");
    auto v = with(resigned(w, entry, [&](const std::string& text) {
      std::string ecdsa = sigil::test::note_signature_line(
          w.rekor.origin, sha256(other.spki_der()).substr(0, 4), other.sign(text));
      return Signatures{{ecdsa}, {}, true};
    }));
    INFO(v.message);
    CHECK(v.ok);
  }
  SECTION("witnesses alone do not stand for the log") {
    auto v = with(resigned(w, entry, [&](const std::string& text) {
      return Signatures{{w1.line(text)}, {w2.line(text)}, false};
    }));
    CHECK(v.failure == Failure::tlog);
    CHECK(v.message.find("no signature by the log") != std::string::npos);
  }
  SECTION("the log's key under a witness's name") {
    auto v = with(resigned(w, entry, [&](const std::string& text) {
      return Signatures{{sigil::test::note_signature_line("witness.test/w1", w.rekor.hint(),
                                                          w.rekor.key.sign(text))},
                        {},
                        false};
    }));
    CHECK(v.failure == Failure::tlog);
  }
  SECTION("a second line by the log's key that does not verify") {
    auto v = with(resigned(w, entry, [&](const std::string& text) {
      std::string bad = w.rekor.log_line(text + "x");
      return Signatures{{}, {bad}, true};
    }));
    CHECK(v.failure == Failure::tlog);
  }
  SECTION("the origin line is the log's") {
    TestLogV2 elsewhere = w.rekor;
    elsewhere.origin = "log2025-2.rekor.test";  // same key, another log's name
    TlogEntry t = elsewhere.entry(entry.canonicalized_body);
    t.log_id = entry.log_id;
    auto v = with(t);
    CHECK(v.failure == Failure::tlog);
    CHECK(v.message.find("is not the log") != std::string::npos);
  }
  SECTION("a note as Go's note.Open reads it: no control characters, valid signer names") {
    // Even in a line sigil would skip: golang.org/x/mod/sumdb/note refuses the whole note.
    for (const char* name : {"witness\x01.test", "witness+1.test"}) {
      INFO(name);
      auto v = with(resigned(w, entry, [&](const std::string& text) {
        TestWitness odd;
        odd.name = name;
        return Signatures{{odd.line(text)}, {}, true};
      }));
      CHECK(v.failure == Failure::tlog);
    }
  }
}

TEST_CASE("Rekor v2: the signing time comes from RFC 3161 timestamps alone", "[rekor2]") {
  World w;
  Signer s = signer(w);
  SignedEntity e = message_signature(w, s);

  SECTION("no timestamp: nothing proves when, even with an integrated time in the entry") {
    SignedEntity none = e;
    none.rfc3161_timestamps.clear();
    // An integrated time without a SET is not signed by anyone: it proves nothing.
    none.tlog_entries[0].integrated_time = to_unix_seconds(w.t0) + 30;
    auto v = verify_entity(none, w.keyless(), blob(true));
    CHECK(v.failure == Failure::no_signing_time);
  }
  SECTION("a timestamp with and without the TSA certificate embedded") {
    for (bool embed : {true, false}) {
      SignedEntity t = e;
      sigil::test::StampOptions o;
      o.include_certs = embed;
      t.rfc3161_timestamps = {w.tsa.stamp(e.signature, w.stamped, o)};
      auto v = verify_entity(t, w.keyless(), blob(true));
      INFO(v.message);
      CHECK(v.ok);
    }
  }
  SECTION("a timestamp from a TSA the root does not list") {
    TestTsa other = TestTsa::create();
    SignedEntity t = e;
    t.rfc3161_timestamps = {other.stamp(e.signature, w.stamped)};
    CHECK(verify_entity(t, w.keyless(), blob(true)).failure == Failure::timestamp);
  }
  SECTION("a timestamp over other bytes") {
    SignedEntity t = e;
    t.rfc3161_timestamps = {w.tsa.stamp("other", w.stamped)};
    CHECK(verify_entity(t, w.keyless(), blob(true)).failure == Failure::timestamp);
  }
  SECTION("a time outside the signing certificate's ten minutes") {
    SignedEntity t = e;
    t.rfc3161_timestamps = {w.tsa.stamp(e.signature, w.t0 + minutes(11))};
    CHECK(verify_entity(t, w.keyless(), blob(true)).failure == Failure::untrusted_certificate);
  }
  SECTION("a TSA chain that has expired since still proves a time it was valid at") {
    // The TSA's certificates end five minutes after the stamp; verifying happens (much) later.
    TestTsa brief = TestTsa::create(w.t0, true, w.stamped + minutes(5));
    std::vector<CertificateAuthority> tsas{brief.authority()};
    Requirements req = w.keyless();
    req.tsas = &tsas;
    SignedEntity t = e;
    t.rfc3161_timestamps = {brief.stamp(e.signature, w.stamped)};
    auto v = verify_entity(t, req, blob(true));
    INFO(v.message);
    CHECK(v.ok);
    // Not a time after the chain ended.
    TestTsa ended = TestTsa::create(w.t0, true, w.t0 + seconds(30));
    std::vector<CertificateAuthority> ended_tsas{ended.authority()};
    req.tsas = &ended_tsas;
    t.rfc3161_timestamps = {ended.stamp(e.signature, w.stamped)};
    CHECK(verify_entity(t, req, blob(true)).failure == Failure::timestamp);
  }
  SECTION("the TSA's validFor end is an inclusive bound") {
    std::vector<CertificateAuthority> tsas{w.tsa.authority()};
    Requirements req = w.keyless();
    req.tsas = &tsas;
    tsas[0].valid_for.start = w.t0 - minutes(60);
    tsas[0].valid_for.end = w.stamped;
    auto v = verify_entity(e, req, blob(true));
    INFO(v.message);
    CHECK(v.ok);
    tsas[0].valid_for.end = w.stamped - seconds(1);
    CHECK(verify_entity(e, req, blob(true)).failure == Failure::timestamp);
  }
}

TEST_CASE("Rekor v2: the log key is the one the trusted root lists under the entry's id",
          "[rekor2]") {
  World w;
  Signer s = signer(w);
  SignedEntity e = message_signature(w, s);
  TestLogV2 second;
  second.origin = "log2026-1.rekor.test";
  std::vector<TransparencyLog> both{second.log(), w.rekor.log()};
  Requirements req = w.keyless();
  req.tlogs = &both;
  CHECK(verify_entity(e, req, blob(true)).ok);

  SECTION("an entry claiming another listed log's id") {
    SignedEntity claim = e;
    claim.tlog_entries[0].log_id = second.log().log_id;
    CHECK(verify_entity(claim, req, blob(true)).failure == Failure::tlog);
  }
  SECTION("a log the root does not list") {
    std::vector<TransparencyLog> only_second{second.log()};
    req.tlogs = &only_second;
    auto v = verify_entity(e, req, blob(true));
    CHECK(v.failure == Failure::tlog);
    CHECK(v.message.find("does not trust") != std::string::npos);
  }
}

TEST_CASE("Rekor v2: SHA-384 and SHA-512 entries, as a P-384 signer writes them", "[rekor2]") {
  // rekor-tiles hashes with the algorithm of the key's details: a P-384 key's hashedrekord
  // 0.0.2 carries a SHA2_384 digest.
  World w;
  KeyPair key = sigil::test::generate_key("P-384");
  Cert leaf = sigil::test::issue(w.pki.leaf_spec(w.t0), key, w.pki.intermediate,
                                 w.pki.intermediate_key, {w.pki.sct_at(w.t0)});
  const std::string verifier = TestLogV2::verifier(leaf.der(), true, "PKIX_ECDSA_P384_SHA_384");

  SECTION("a DSSE image signature") {
    SignedEntity e;
    e.kind = SignedEntity::Kind::dsse;
    e.bundle_minor_version = 3;
    e.payload_type = std::string(kInTotoPayloadType);
    e.payload = statement(kImage);
    const std::string pae = dsse_pae(e.payload_type, e.payload);
    e.signature = key.sign(pae, EVP_sha384());
    e.certificates_der = {leaf.der()};
    e.tlog_entries = {w.rekor.entry(TestLogV2::hashedrekord(
        HashAlgorithm::sha384, digest(HashAlgorithm::sha384, pae), e.signature, verifier))};
    e.rfc3161_timestamps = {w.tsa.stamp(e.signature, w.stamped)};
    auto v = verify_entity(e, w.keyless(), image());
    INFO(v.message);
    CHECK(v.ok);
    // The digest must still be of these bytes.
    e.tlog_entries = {w.rekor.entry(TestLogV2::hashedrekord(
        HashAlgorithm::sha384, digest(HashAlgorithm::sha384, pae + " "), e.signature, verifier))};
    CHECK(verify_entity(e, w.keyless(), image()).failure == Failure::tlog);
  }
  SECTION("a message signature over a SHA-512 digest") {
    const std::string d512 = digest(HashAlgorithm::sha512, kBlob);
    SignedEntity e;
    e.kind = SignedEntity::Kind::message_signature;
    e.bundle_minor_version = 3;
    e.message_digest_algorithm = HashAlgorithm::sha512;
    e.message_digest = d512;
    e.signature = key.sign_digest(d512, EVP_sha512());
    e.certificates_der = {leaf.der()};
    e.tlog_entries = {
        w.rekor.entry(TestLogV2::hashedrekord(HashAlgorithm::sha512, d512, e.signature, verifier))};
    e.rfc3161_timestamps = {w.tsa.stamp(e.signature, w.stamped)};
    Artifact by_sha512;
    by_sha512.kind = Artifact::Kind::blob;
    by_sha512.digest = "sha512:" + hex_encode(d512);
    auto v = verify_entity(e, w.keyless(), by_sha512);
    INFO(v.message);
    CHECK(v.ok);
    auto vb = verify_entity(e, w.keyless(), blob(true));  // the file: hashed with SHA-512
    INFO(vb.message);
    CHECK(vb.ok);
    // An entry recording the SHA-256 digest instead does not record this signature's digest.
    e.tlog_entries = {w.rekor.entry(
        TestLogV2::hashedrekord(HashAlgorithm::sha256, sha256(kBlob), e.signature, verifier))};
    CHECK(verify_entity(e, w.keyless(), blob(true)).failure == Failure::tlog);
  }
}

TEST_CASE("Rekor v2 log ids: rekor_v2_log_id gives the ids trusted roots state", "[rekor2]") {
  auto good = parse_trusted_root(
      sigil::test::read_source_file("data/sigstore/trusted_root.public-good.json"), "public-good");
  REQUIRE(good.ok());
  REQUIRE(good->tlogs.size() == 2);
  const TransparencyLog& v2 = good->tlogs[1];
  CHECK(rekor_v2_origin(v2.base_url) == "log2025-1.rekor.sigstore.dev");
  auto id = rekor_v2_log_id(v2.key, rekor_v2_origin(v2.base_url));
  REQUIRE(id.ok());
  CHECK(*id == v2.log_id);
  CHECK(hex_encode(*id).substr(0, 16) == "cf1199155bddd051");
  CHECK(*id != key_log_id(v2.key));
  // Another origin, another id: the origin is part of what is hashed.
  auto elsewhere = rekor_v2_log_id(v2.key, "log2025-2.rekor.sigstore.dev");
  REQUIRE(elsewhere.ok());
  CHECK(*elsewhere != *id);
  // ECDSA: rekor-tiles keeps SHA-256(SPKI), Rekor v1's id.
  const TransparencyLog& v1 = good->tlogs[0];
  auto ecdsa = rekor_v2_log_id(v1.key, "rekor.sigstore.dev");
  REQUIRE(ecdsa.ok());
  CHECK(*ecdsa == v1.log_id);
  // The test log's own id (computed independently in rekor_fixture.hpp).
  TestLogV2 log;
  auto mine = rekor_v2_log_id(log.log().key, log.origin);
  REQUIRE(mine.ok());
  CHECK(*mine == log.log().log_id);

  CHECK(rekor_v2_origin("https://log.example:443/api/v2") == "log.example");
  CHECK(rekor_v2_origin("https://user@log.example/") == "log.example");
  CHECK(rekor_v2_origin("http://[::1]:8080") == "::1");
  CHECK(rekor_v2_origin("log.example") == "log.example");
  CHECK(rekor_v2_origin("") == "");
}

// rekor-tiles' RSA key ID (pkg/note rsaKeyHash): SHA-256(origin || "\n" || 0xff ||
// "PKIX-RSA-PKCS#1v1.5" || SPKI DER); its first 4 bytes are the checkpoint's key hint.
TEST_CASE("Rekor v2: an RSA log's id and checkpoint hint", "[rekor2]") {
  const sigil::test::KeyPair rsa = sigil::test::generate_key("RSA2048");
  TransparencyLog log;
  log.base_url = "https://rsa.rekor.test";
  log.key = rsa.public_key();
  log.hash = HashAlgorithm::sha256;
  const std::string origin = rekor_v2_origin(log.base_url);
  const std::string expected =
      sha256(origin + "\n\xFF" + "PKIX-RSA-PKCS#1v1.5" + log.key.spki_der());
  auto id = rekor_v2_log_id(log.key, origin);
  REQUIRE(id.ok());
  CHECK(*id == expected);
  CHECK(*id != key_log_id(log.key));
  log.log_id = *id;

  const std::string text = origin + "\n7\n" + base64_encode(std::string(32, 'r')) + "\n";
  auto note = [&](std::string_view hint) {
    return text + "\n" +
           sigil::test::note_signature_line(origin, hint, rsa.sign(text, EVP_sha256()));
  };
  auto good = verify_checkpoint(note(expected.substr(0, 4)), log);
  INFO((good ? std::string() : good.error().message));
  CHECK(good.ok());
  // The v1 hint SHA-256(SPKI)[:4] is not this log's hint on a v2 checkpoint.
  auto v1_hint = verify_checkpoint(note(key_log_id(log.key).substr(0, 4)), log);
  REQUIRE_FALSE(v1_hint.ok());
  CHECK(v1_hint.error().message.find("no key hint") != std::string::npos);
}
