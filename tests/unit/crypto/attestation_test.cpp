// crypto/attestation.cpp: a legacy cosign .att layer (DSSE envelope + .sig-style annotations)
// -> SignedEntity, and what verify_entity then checks for it.
#include <catch2/catch.hpp>

#include <string>

#include "common/encoding.hpp"
#include "crypto/dsse.hpp"
#include "crypto/sigstore.hpp"
#include "pki.hpp"

using namespace sigil;
using namespace sigil::crypto;
using sigil::test::generate_key;

namespace {

const std::string kDigest = "sha256:" + std::string(64, 'c');

std::string statement(const std::string& predicate) {
  return R"({"_type":"https://in-toto.io/Statement/v0.1","predicateType":")" + predicate +
         R"(","subject":[{"name":"r/app","digest":{"sha256":")" + kDigest.substr(7) +
         R"("}}],"predicate":{}})";
}

std::string envelope(const std::string& payload, const std::vector<std::string>& sigs) {
  std::string s = R"({"payloadType":"application/vnd.in-toto+json","payload":")" +
                  base64_encode(payload) + R"(","signatures":[)";
  for (size_t i = 0; i < sigs.size(); ++i) {
    s += (i ? "," : "") + std::string(R"({"keyid":"","sig":")") + base64_encode(sigs[i]) + "\"}";
  }
  return s + "]}";
}

}  // namespace

TEST_CASE("a .att layer becomes one DSSE entity per envelope signature", "[crypto][attestation]") {
  const auto k = generate_key();
  const auto other = generate_key();
  const std::string st = statement("https://slsa.dev/provenance/v1");
  const std::string pae = dsse_pae(kInTotoPayloadType, st);
  const std::string env = envelope(st, {other.sign(pae), k.sign(pae)});
  Signature ann;
  ann.source = ".att layer 2";
  auto es = entities_from_attestation_layer(env, ann, 4);
  REQUIRE(es.ok());
  REQUIRE(es->size() == 2);
  const SignedEntity& e = (*es)[1];
  CHECK(e.kind == SignedEntity::Kind::dsse);
  CHECK(e.bundle_minor_version == 0);
  CHECK(e.payload == st);
  CHECK(e.payload_type == kInTotoPayloadType);
  CHECK(e.timestamped == env);  // cosign stamps an attestation's envelope, not its signature
  CHECK(e.source == ".att layer 2 signature 1");

  const PublicKey key = k.public_key();
  Requirements req;
  req.key = &key;
  req.min_signing_times = 0;
  req.require_sct = false;
  req.dsse_predicate = {};
  Artifact art;
  art.digest = kDigest;
  CHECK_FALSE(verify_entity((*es)[0], req, art).ok);  // the other key's signature
  auto v = verify_entity(e, req, art);
  INFO(v.message);
  CHECK(v.ok);
  art.digest = "sha256:" + std::string(64, 'd');
  CHECK(verify_entity(e, req, art).failure == Failure::digest_mismatch);

  CHECK(entities_from_attestation_layer(env, ann, 1)->size() == 1);
}

TEST_CASE("a malformed .att layer is a parse error, never an entity", "[crypto][attestation]") {
  Signature ann;
  CHECK(entities_from_attestation_layer("{}", ann, 4).error().code == Errc::parse_error);
  CHECK(entities_from_attestation_layer("not json", ann, 4).error().code == Errc::parse_error);
  const std::string env = envelope(statement("x"), {"sig"});
  ann.bundle_json = "{\"SignedEntryTimestamp\": 3}";
  CHECK(entities_from_attestation_layer(env, ann, 4).error().code == Errc::parse_error);
}
