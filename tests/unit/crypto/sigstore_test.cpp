// crypto::verify_entity, the whole keyless (and key) verification, link by link. Material is
// minted here: a Fulcio-like CA and CT log (sigstore_pki), a Rekor-like log key signing SETs
// over hand-built entry bodies, and an RFC 3161 TSA. Each check has a case that fails when the
// check is removed.
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
using sigil::test::FulcioPki;
using sigil::test::KeyPair;
using sigil::test::TestLog;
using sigil::test::TestTsa;

namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');
const std::string kOther = "sha256:" + std::string(64, 'b');

std::string payload_for(const std::string& digest,
                        const std::string& type = "cosign container image signature") {
  return R"({"critical":{"identity":{"docker-reference":"reg.test/app"},"image":{"docker-manifest-digest":")" +
         digest + R"("},"type":")" + type + R"("},"optional":null})";
}

std::string statement_for(const std::string& digest,
                          const std::string& predicate = "https://sigstore.dev/cosign/sign/v1") {
  return R"({"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"reg.test/app","digest":{"sha256":")" +
         digest.substr(7) + R"("}}],"predicateType":")" + predicate + R"(","predicate":{}})";
}

struct World {
  FulcioPki pki = FulcioPki::create();
  TestLog rekor;
  TestTsa tsa = TestTsa::create();
  std::vector<CertificateAuthority> cas{pki.authority()};
  std::vector<TransparencyLog> tlogs{rekor.log()};
  std::vector<TransparencyLog> ctlogs{pki.ct_log()};
  std::vector<CertificateAuthority> tsas{tsa.authority()};
  TimePoint t0 = sigil::test::test_epoch();

  Requirements keyless() const {
    Requirements r;
    r.cas = &cas;
    r.tlogs = &tlogs;
    r.require_tlog = true;
    r.ctlogs = &ctlogs;
    r.require_sct = true;
    r.tsas = &tsas;
    r.min_signing_times = 1;
    return r;
  }
};

struct Signed {
  SignedEntity entity;
  sigil::test::Cert leaf;
  KeyPair key;
};

// A keyless legacy signature over payload, logged at t0 + 30 s.
Signed keyless_legacy(const World& w, const std::string& payload,
                      std::optional<sigil::test::CertSpec> spec = std::nullopt) {
  Signed s;
  s.leaf = w.pki.leaf(spec ? *spec : w.pki.leaf_spec(w.t0), &s.key);
  s.entity.kind = SignedEntity::Kind::simple_signing;
  s.entity.source = "test .sig layer 0";
  s.entity.payload = payload;
  s.entity.signature = s.key.sign(payload);
  s.entity.certificates_der = {s.leaf.der(), w.pki.intermediate.der(), w.pki.root.der()};
  s.entity.tlog_entries.push_back(
      w.rekor.entry(TestLog::hashedrekord(payload, s.entity.signature, s.leaf.pem()),
                    to_unix_seconds(w.t0) + 30));
  return s;
}

Artifact image(const std::string& digest = kDigest) {
  Artifact a;
  a.kind = Artifact::Kind::image;
  a.digest = digest;
  return a;
}

}  // namespace

TEST_CASE("keyless legacy signature: every link checks", "[sigstore]") {
  World w;
  auto s = keyless_legacy(w, payload_for(kDigest));
  auto v = verify_entity(s.entity, w.keyless(), image());
  INFO(v.message);
  REQUIRE(v.ok);
  REQUIRE(v.signing_times.size() == 1);
  CHECK(v.identity.issuer == "https://accounts.example.com");
  REQUIRE_FALSE(v.identity.sans.empty());
  CHECK(v.identity.sans.front().value == "signer@example.com");
  CHECK(v.bound_digest == kDigest);
}

TEST_CASE("keyless: each broken link is its own failure", "[sigstore]") {
  World w;
  const std::string payload = payload_for(kDigest);

  SECTION("a signature copied from another image") {
    auto s = keyless_legacy(w, payload_for(kOther));
    auto v = verify_entity(s.entity, w.keyless(), image());
    CHECK(v.failure == Failure::digest_mismatch);
    CHECK(v.bound_digest == kOther);
  }
  SECTION("tampered signature") {
    auto s = keyless_legacy(w, payload);
    s.entity.signature.back() ^= 1;
    CHECK(verify_entity(s.entity, w.keyless(), image()).failure == Failure::bad_signature);
  }
  SECTION("payload changed after signing") {
    auto s = keyless_legacy(w, payload);
    s.entity.payload = payload_for(kDigest, "cosign container image signaturE");
    CHECK(verify_entity(s.entity, w.keyless(), image()).failure == Failure::bad_signature);
  }
  SECTION("wrong payload type, validly signed") {
    auto s = keyless_legacy(w, payload_for(kDigest, "something else"));
    CHECK(verify_entity(s.entity, w.keyless(), image()).failure == Failure::wrong_type);
  }
  SECTION("a certificate from a CA the policy does not trust") {
    FulcioPki other = FulcioPki::create();
    Signed s;
    s.leaf = other.leaf(other.leaf_spec(w.t0), &s.key);
    s.entity = keyless_legacy(w, payload).entity;
    s.entity.signature = s.key.sign(payload);
    s.entity.certificates_der = {s.leaf.der(), other.intermediate.der()};
    s.entity.tlog_entries = {
        w.rekor.entry(TestLog::hashedrekord(payload, s.entity.signature, s.leaf.pem()),
                      to_unix_seconds(w.t0) + 30)};
    auto v = verify_entity(s.entity, w.keyless(), image());
    INFO(v.message);
    CHECK(v.failure == Failure::untrusted_certificate);
  }
  SECTION("certificate expired when the log recorded the signature") {
    auto s = keyless_legacy(w, payload);
    s.entity.tlog_entries = {
        w.rekor.entry(TestLog::hashedrekord(payload, s.entity.signature, s.leaf.pem()),
                      to_unix_seconds(w.t0) + 20 * 60)};
    auto v = verify_entity(s.entity, w.keyless(), image());
    INFO(v.message);
    CHECK(v.failure == Failure::untrusted_certificate);
  }
  SECTION("no code-signing EKU") {
    auto spec = w.pki.leaf_spec(w.t0);
    spec.ext_key_usage = {"serverAuth"};
    auto s = keyless_legacy(w, payload, spec);
    CHECK(verify_entity(s.entity, w.keyless(), image()).failure == Failure::untrusted_certificate);
  }
  SECTION("no SCT, and with insecureIgnoreSCT") {
    auto spec = w.pki.leaf_spec(w.t0);
    Signed s;
    s.key = sigil::test::generate_key("P-256");
    s.leaf = sigil::test::issue(spec, s.key, w.pki.intermediate, w.pki.intermediate_key);  // no SCT
    s.entity = keyless_legacy(w, payload).entity;
    s.entity.signature = s.key.sign(payload);
    s.entity.certificates_der = {s.leaf.der()};
    s.entity.tlog_entries = {
        w.rekor.entry(TestLog::hashedrekord(payload, s.entity.signature, s.leaf.pem()),
                      to_unix_seconds(w.t0) + 30)};
    CHECK(verify_entity(s.entity, w.keyless(), image()).failure == Failure::sct);
    auto req = w.keyless();
    req.require_sct = false;
    CHECK(verify_entity(s.entity, req, image()).ok);
  }
  SECTION("SCT from a CT log the policy does not trust") {
    auto s = keyless_legacy(w, payload);
    FulcioPki other = FulcioPki::create();
    std::vector<TransparencyLog> foreign{other.ct_log()};
    auto req = w.keyless();
    req.ctlogs = &foreign;
    CHECK(verify_entity(s.entity, req, image()).failure == Failure::sct);
  }
  SECTION("no transparency log entry") {
    auto s = keyless_legacy(w, payload);
    s.entity.tlog_entries.clear();
    auto v = verify_entity(s.entity, w.keyless(), image());
    CHECK(v.failure == Failure::tlog);
  }
  SECTION("corrupted SET") {
    auto s = keyless_legacy(w, payload);
    s.entity.tlog_entries = {
        w.rekor.entry(TestLog::hashedrekord(payload, s.entity.signature, s.leaf.pem()),
                      to_unix_seconds(w.t0) + 30,
                      /*corrupt_set=*/true)};
    CHECK(verify_entity(s.entity, w.keyless(), image()).failure == Failure::tlog);
  }
  SECTION("log entry from an untrusted log") {
    auto s = keyless_legacy(w, payload);
    TestLog other;
    s.entity.tlog_entries = {
        other.entry(TestLog::hashedrekord(payload, s.entity.signature, s.leaf.pem()),
                    to_unix_seconds(w.t0) + 30)};
    CHECK(verify_entity(s.entity, w.keyless(), image()).failure == Failure::tlog);
  }
  SECTION("log entry that records another signature, key or payload") {
    auto s = keyless_legacy(w, payload);
    auto other_key = sigil::test::generate_key("P-256");
    const std::string bodies[] = {
        TestLog::hashedrekord(payload, other_key.sign(payload), s.leaf.pem()),
        TestLog::hashedrekord(payload, s.entity.signature, other_key.public_pem()),
        TestLog::hashedrekord(payload_for(kOther), s.entity.signature, s.leaf.pem()),
    };
    for (const auto& body : bodies) {
      s.entity.tlog_entries = {w.rekor.entry(body, to_unix_seconds(w.t0) + 30)};
      CHECK(verify_entity(s.entity, w.keyless(), image()).failure == Failure::tlog);
    }
  }
  SECTION("a DSSE log entry for a signature that is not a DSSE envelope") {
    // The same signature, signer and payload hash, recorded as a DSSE entry: its signature
    // would be over the envelope's PAE, not over these bytes.
    auto s = keyless_legacy(w, payload);
    s.entity.tlog_entries = {w.rekor.entry(TestLog::dsse(payload, s.entity.signature, s.leaf.pem()),
                                           to_unix_seconds(w.t0) + 30)};
    auto v = verify_entity(s.entity, w.keyless(), image());
    CHECK(v.failure == Failure::tlog);
    CHECK(v.message.find("not a DSSE envelope") != std::string::npos);
  }
  SECTION("the log key was not valid at the entry's time") {
    auto s = keyless_legacy(w, payload);
    w.tlogs[0].valid_for.end = w.t0;
    CHECK(verify_entity(s.entity, w.keyless(), image()).failure == Failure::tlog);
  }
  SECTION("without the log, an RFC 3161 timestamp proves the time") {
    auto s = keyless_legacy(w, payload);
    s.entity.tlog_entries.clear();
    auto req = w.keyless();
    req.require_tlog = false;
    CHECK(verify_entity(s.entity, req, image()).failure == Failure::no_signing_time);
    s.entity.rfc3161_timestamps = {w.tsa.stamp(s.entity.signature, w.t0 + std::chrono::minutes(2))};
    auto v = verify_entity(s.entity, req, image());
    INFO(v.message);
    CHECK(v.ok);
    // A timestamp over other bytes is refused, not ignored.
    s.entity.rfc3161_timestamps = {w.tsa.stamp("other bytes", w.t0 + std::chrono::minutes(2))};
    CHECK(verify_entity(s.entity, req, image()).failure == Failure::timestamp);
    // A timestamp outside the certificate's 10 minutes fails the chain at that time.
    s.entity.rfc3161_timestamps = {w.tsa.stamp(s.entity.signature, w.t0 + std::chrono::hours(1))};
    CHECK(verify_entity(s.entity, req, image()).failure == Failure::untrusted_certificate);
  }
  SECTION("a key-signed signature is not a keyless one") {
    auto s = keyless_legacy(w, payload);
    s.entity.certificates_der.clear();
    CHECK(verify_entity(s.entity, w.keyless(), image()).failure == Failure::untrusted_certificate);
  }
  SECTION("a bundle may not bring its own root") {
    auto s = keyless_legacy(w, payload);
    s.entity.bundle_minor_version = 1;
    CHECK(verify_entity(s.entity, w.keyless(), image()).failure == Failure::untrusted_certificate);
    s.entity.certificates_der.pop_back();
    CHECK(verify_entity(s.entity, w.keyless(), image()).ok);
  }
}

TEST_CASE("DSSE image signatures (cosign v3 bundles)", "[sigstore]") {
  World w;
  KeyPair key;
  auto leaf = w.pki.leaf(w.pki.leaf_spec(w.t0), &key);
  auto make = [&](const std::string& statement,
                  const std::string& type = std::string(kInTotoPayloadType)) {
    SignedEntity e;
    e.kind = SignedEntity::Kind::dsse;
    e.source = "referrer";
    e.bundle_minor_version = 3;
    e.payload_type = type;
    e.payload = statement;
    e.signature = key.sign(dsse_pae(type, statement));
    e.certificates_der = {leaf.der()};
    e.tlog_entries = {w.rekor.entry(TestLog::dsse(statement, e.signature, leaf.pem()),
                                    to_unix_seconds(w.t0) + 30)};
    return e;
  };
  CHECK(verify_entity(make(statement_for(kDigest)), w.keyless(), image()).ok);
  auto other = verify_entity(make(statement_for(kOther)), w.keyless(), image());
  CHECK(other.failure == Failure::digest_mismatch);
  // Only the claims failed: who signed is proved and reported.
  CHECK(other.identity_proved);
  CHECK(other.identity.sans.front().value == "signer@example.com");
  // An attestation by the same signer is not a signature.
  CHECK(verify_entity(make(statement_for(kDigest, "https://slsa.dev/provenance/v1")), w.keyless(),
                      image())
            .failure == Failure::wrong_type);
  CHECK(verify_entity(make(statement_for(kDigest), "application/json"), w.keyless(), image())
            .failure == Failure::wrong_type);
  auto two = make(statement_for(kDigest));
  two.signature_count_ok = false;
  CHECK(verify_entity(two, w.keyless(), image()).failure == Failure::malformed);
  // The signature is over the PAE, not the bare statement.
  auto bare = make(statement_for(kDigest));
  bare.signature = key.sign(statement_for(kDigest));
  auto vb = verify_entity(bare, w.keyless(), image());
  CHECK(vb.failure == Failure::bad_signature);
  CHECK_FALSE(vb.identity_proved);  // nothing proved who signed
  CHECK(vb.identity.sans.empty());
}

TEST_CASE("key authorities: tlog only when asked, claims always", "[sigstore]") {
  World w;
  KeyPair key = sigil::test::generate_key("P-256");
  PublicKey pub = key.public_key();
  SignedEntity e;
  e.kind = SignedEntity::Kind::simple_signing;
  e.payload = payload_for(kDigest);
  e.signature = key.sign(e.payload);
  Requirements req;
  req.key = &pub;
  req.min_signing_times = 0;
  req.require_sct = false;
  CHECK(verify_entity(e, req, image()).ok);
  CHECK(verify_entity(e, req, image(kOther)).failure == Failure::digest_mismatch);
  KeyPair other = sigil::test::generate_key("P-256");
  PublicKey other_pub = other.public_key();
  req.key = &other_pub;
  CHECK(verify_entity(e, req, image()).failure == Failure::bad_signature);
  req.key = &pub;
  req.tlogs = &w.tlogs;
  req.require_tlog = true;
  CHECK(verify_entity(e, req, image()).failure == Failure::tlog);
  e.tlog_entries = {w.rekor.entry(TestLog::hashedrekord(e.payload, e.signature, key.public_pem()),
                                  to_unix_seconds(w.t0))};
  CHECK(verify_entity(e, req, image()).ok);
}

TEST_CASE("blob message signatures (verify-bundle)", "[sigstore]") {
  World w;
  KeyPair key;
  auto leaf = w.pki.leaf(w.pki.leaf_spec(w.t0), &key);
  const std::string blob = "hello, sigil\n";
  SignedEntity e;
  e.kind = SignedEntity::Kind::message_signature;
  e.bundle_minor_version = 2;
  e.signature = key.sign(blob);
  e.message_digest = sha256(blob);
  e.certificates_der = {leaf.der()};
  e.tlog_entries = {w.rekor.entry(TestLog::hashedrekord(blob, e.signature, leaf.pem()),
                                  to_unix_seconds(w.t0) + 30)};
  Artifact a;
  a.kind = Artifact::Kind::blob;
  a.digest = "sha256:" + sha256_hex(blob);
  CHECK(verify_entity(e, w.keyless(), a).ok);  // digest only: ECDSA verifies prehashed
  a.bytes = blob;
  CHECK(verify_entity(e, w.keyless(), a).ok);
  a.bytes = "another blob";
  CHECK_FALSE(verify_entity(e, w.keyless(), a).ok);
  Artifact other;
  other.kind = Artifact::Kind::blob;
  other.digest = kOther;
  CHECK(verify_entity(e, w.keyless(), other).failure == Failure::digest_mismatch);
  // A blob signature never admits an image.
  CHECK(verify_entity(e, w.keyless(), image(a.digest)).failure == Failure::wrong_type);
}

TEST_CASE("legacy annotations become an entity; malformed ones are errors", "[sigstore]") {
  World w;
  auto s = keyless_legacy(w, payload_for(kDigest));
  Signature sig;
  sig.payload = s.entity.payload;
  sig.signature = s.entity.signature;
  sig.certificate_pem = s.leaf.pem();
  sig.chain_pem = w.pki.intermediate.pem() + w.pki.root.pem();
  const TlogEntry& t = s.entity.tlog_entries.front();
  sig.bundle_json = R"({"SignedEntryTimestamp":")" + base64_encode(t.signed_entry_timestamp) +
                    R"(","Payload":{"body":")" + base64_encode(t.canonicalized_body) +
                    R"(","integratedTime":)" + std::to_string(t.integrated_time) +
                    R"(,"logIndex":42,"logID":")" + hex_encode(t.log_id) + R"("}})";
  sig.source = "sha256-aa.sig layer 0";
  auto e = entity_from_legacy(sig);
  REQUIRE(e.ok());
  CHECK(e->certificates_der.size() == 3);
  auto v = verify_entity(*e, w.keyless(), image());
  INFO(v.message);
  CHECK(v.ok);

  sig.rfc3161_json = R"({"SignedRFC3161Timestamp":")" +
                     base64_encode(w.tsa.stamp(sig.signature, w.t0 + std::chrono::minutes(1))) +
                     R"("})";
  auto with_ts = entity_from_legacy(sig);
  REQUIRE(with_ts.ok());
  CHECK(with_ts->rfc3161_timestamps.size() == 1);
  auto vts = verify_entity(*with_ts, w.keyless(), image());
  CHECK(vts.ok);
  CHECK(vts.signing_times.size() == 2);

  for (auto broken :
       {&Signature::certificate_pem, &Signature::bundle_json, &Signature::rfc3161_json}) {
    Signature b = sig;
    b.*broken = "{not it";
    CHECK_FALSE(entity_from_legacy(b).ok());
  }
}

// ---- issue 13, point 4: artifacts and in-toto subjects named by sha384 / sha512 -------------

TEST_CASE("artifact digests: sha256, sha384 and sha512 in lowercase hex", "[sigstore]") {
  auto ok = [](const std::string& s) { return parse_artifact_digest(s).has_value(); };
  CHECK(ok("sha256:" + std::string(64, 'a')));
  CHECK(ok("sha384:" + std::string(96, '0')));
  CHECK(ok("sha512:" + std::string(128, 'f')));
  auto d = parse_artifact_digest("sha512:" + std::string(128, 'f'));
  REQUIRE(d);
  CHECK(d->first == HashAlgorithm::sha512);
  CHECK(d->second == std::string(64, '\xff'));
  CHECK_FALSE(ok("sha512:" + std::string(64, 'a')));   // a sha256's length
  CHECK_FALSE(ok("sha384:" + std::string(128, 'a')));  // a sha512's length
  CHECK_FALSE(ok("sha256:" + std::string(64, 'A')));   // uppercase
  CHECK_FALSE(ok("sha224:" + std::string(56, 'a')));
  CHECK_FALSE(ok("md5:" + std::string(32, 'a')));
  CHECK_FALSE(ok(std::string(64, 'a')));
  CHECK_FALSE(ok("sha256:"));
}

TEST_CASE("DSSE blobs: a subject named by sha384 or sha512 binds the artifact", "[sigstore]") {
  // sigstore-go's DSSE bundles may name their subject only by sha512 (or sha384).
  World w;
  KeyPair key;
  auto leaf = w.pki.leaf(w.pki.leaf_spec(w.t0), &key);
  const std::string blob = "release.tar.gz contents\n";
  const std::string h384 = hex_encode(digest(HashAlgorithm::sha384, blob));
  const std::string h512 = hex_encode(digest(HashAlgorithm::sha512, blob));
  auto entity_for = [&](const std::string& digests) {
    const std::string st =
        R"({"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"release.tar.gz","digest":{)" +
        digests + R"(}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}})";
    SignedEntity e;
    e.kind = SignedEntity::Kind::dsse;
    e.bundle_minor_version = 3;
    e.payload_type = std::string(kInTotoPayloadType);
    e.payload = st;
    e.signature = key.sign(dsse_pae(e.payload_type, st));
    e.certificates_der = {leaf.der()};
    e.tlog_entries = {
        w.rekor.entry(TestLog::dsse(st, e.signature, leaf.pem()), to_unix_seconds(w.t0) + 30)};
    return e;
  };
  auto artifact = [&](const std::string& digest, bool bytes) {
    Artifact a;
    a.kind = Artifact::Kind::blob;
    a.digest = digest;
    if (bytes) a.bytes = blob;
    return a;
  };
  const std::string by256 = "sha256:" + sha256_hex(blob);

  SECTION("only sha512") {
    auto e = entity_for(R"("sha512":")" + h512 + "\"");
    auto v = verify_entity(e, w.keyless(), artifact(by256, /*bytes=*/true));  // the file
    INFO(v.message);
    CHECK(v.ok);
    CHECK(verify_entity(e, w.keyless(), artifact("sha512:" + h512, false)).ok);
    // A digest in another algorithm cannot be compared without the file.
    CHECK(verify_entity(e, w.keyless(), artifact(by256, false)).failure ==
          Failure::digest_mismatch);
    CHECK(verify_entity(e, w.keyless(), artifact("sha384:" + h384, false)).failure ==
          Failure::digest_mismatch);
    // Another artifact.
    const std::string other = hex_encode(digest(HashAlgorithm::sha512, "other"));
    CHECK(verify_entity(e, w.keyless(), artifact("sha512:" + other, false)).failure ==
          Failure::digest_mismatch);
    Artifact other_file = artifact(by256, true);
    other_file.bytes = "other";
    other_file.digest = "sha256:" + sha256_hex("other");
    CHECK(verify_entity(e, w.keyless(), other_file).failure == Failure::digest_mismatch);
  }
  SECTION("only sha384") {
    auto e = entity_for(R"("sha384":")" + h384 + "\"");
    CHECK(verify_entity(e, w.keyless(), artifact(by256, true)).ok);
    CHECK(verify_entity(e, w.keyless(), artifact("sha384:" + h384, false)).ok);
  }
  SECTION("a wrong sha512 next to a right sha256 still binds by sha256") {
    // As sigstore-go: a subject matches when one of its digests does.
    auto e = entity_for(R"("sha256":")" + sha256_hex(blob) + R"(","sha512":")" +
                        std::string(128, '0') + "\"");
    CHECK(verify_entity(e, w.keyless(), artifact(by256, false)).ok);
    CHECK_FALSE(verify_entity(e, w.keyless(), artifact("sha512:" + h512, false)).ok);
  }
}

TEST_CASE("message signatures: the bundle's digest algorithm decides", "[sigstore]") {
  World w;
  KeyPair key;
  auto leaf = w.pki.leaf(w.pki.leaf_spec(w.t0), &key);
  const std::string blob = "hello, sigil\n";
  SignedEntity e;
  e.kind = SignedEntity::Kind::message_signature;
  e.bundle_minor_version = 3;
  e.message_digest_algorithm = HashAlgorithm::sha512;
  e.message_digest = digest(HashAlgorithm::sha512, blob);
  e.signature = key.sign_digest(e.message_digest, EVP_sha512());
  e.certificates_der = {leaf.der()};
  e.rfc3161_timestamps = {w.tsa.stamp(e.signature, w.t0 + std::chrono::minutes(1))};
  Requirements req = w.keyless();
  req.require_tlog = false;  // the entry is a hashedrekord 0.0.1 of sha256 in TestLog
  Artifact file;
  file.kind = Artifact::Kind::blob;
  file.digest = "sha256:" + sha256_hex(blob);
  file.bytes = blob;
  auto v = verify_entity(e, req, file);
  INFO(v.message);
  CHECK(v.ok);
  Artifact d512;
  d512.kind = Artifact::Kind::blob;
  d512.digest = "sha512:" + hex_encode(e.message_digest);
  CHECK(verify_entity(e, req, d512).ok);
  Artifact d256 = d512;
  d256.digest = "sha256:" + sha256_hex(blob);
  auto u = verify_entity(e, req, d256);
  CHECK(u.failure == Failure::unsupported);
  CHECK(u.message.find("sha512") != std::string::npos);
  Artifact wrong = d512;
  wrong.digest = "sha512:" + std::string(128, '0');
  CHECK(verify_entity(e, req, wrong).failure == Failure::digest_mismatch);
}

TEST_CASE("keyless with a chain cache: the intermediate is checked once, refusals stand",
          "[sigstore]") {
  World w;
  ChainCache cache;
  Requirements req = w.keyless();
  req.chain_cache = &cache;
  auto first = verify_entity(keyless_legacy(w, payload_for(kDigest)).entity, req, image());
  INFO(first.message);
  REQUIRE(first.ok);
  CHECK(cache.size() == 1);
  auto second = verify_entity(keyless_legacy(w, payload_for(kDigest)).entity, req, image());
  REQUIRE(second.ok);
  CHECK(cache.hits() == 1);
  CHECK(second.identity.sans.front().value == "signer@example.com");

  // Another Fulcio whose intermediate has the same name: its leaves are not ours, warm or not.
  World other;
  auto foreign = keyless_legacy(other, payload_for(kDigest));
  foreign.entity.tlog_entries = {w.rekor.entry(
      TestLog::hashedrekord(foreign.entity.payload, foreign.entity.signature, foreign.leaf.pem()),
      to_unix_seconds(w.t0) + 30)};
  auto v = verify_entity(foreign.entity, req, image());
  CHECK_FALSE(v.ok);
  CHECK(v.failure == Failure::untrusted_certificate);
  CHECK(cache.hits() == 1);
}
