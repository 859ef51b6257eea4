// sigstore trusted_root.json.
#include <catch2/catch.hpp>

// Test-only: nlohmann (header-only, a dependency of crypto) edits the JSON under test.
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <nlohmann/json.hpp>

#include <string>

#include "common/encoding.hpp"
#include "crypto/trust_root.hpp"
#include "sigstore_pki.hpp"

using namespace sigil;
using namespace sigil::crypto;
using json = nlohmann::json;

namespace {

const std::string& public_good() {
  static const std::string text =
      sigil::test::read_source_file("data/sigstore/trusted_root.public-good.json");
  return text;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

json good() {
  return json::parse(public_good());
}

}  // namespace

TEST_CASE("the public-good trusted root parses") {
  auto root = parse_trusted_root(public_good(), "public-good");
  REQUIRE(root.ok());
  CHECK(root->name == "public-good");
  REQUIRE(root->tlogs.size() == 2);
  REQUIRE(root->ctlogs.size() == 2);
  REQUIRE(root->certificate_authorities.size() == 2);
  REQUIRE(root->timestamp_authorities.size() == 1);

  const auto& rekor = root->tlogs[0];
  CHECK(rekor.base_url == "https://rekor.sigstore.dev");
  CHECK(rekor.key.type() == KeyType::ecdsa_p256);
  CHECK(rekor.hash == HashAlgorithm::sha256);
  CHECK(base64_encode(rekor.log_id) == "wNI9atQGlz+VWfO6LRygH4QUfY/8W4RFwiT5i5WRgB0=");
  CHECK(rekor.log_id == key_log_id(rekor.key));  // Rekor v1: logId = SHA-256(SPKI)
  REQUIRE(rekor.valid_for.start.has_value());
  CHECK(format_time(*rekor.valid_for.start) == "2021-01-12T11:53:27Z");
  CHECK_FALSE(rekor.valid_for.end.has_value());

  const auto& v2 = root->tlogs[1];
  CHECK(v2.base_url == "https://log2025-1.rekor.sigstore.dev");
  CHECK(v2.key.type() == KeyType::ed25519);
  CHECK(find_log(root->tlogs, v2.log_id) == &v2);

  CHECK(root->ctlogs[0].base_url == "https://ctfe.sigstore.dev/test");
  REQUIRE(root->ctlogs[0].valid_for.end.has_value());
  CHECK(format_time(*root->ctlogs[0].valid_for.end) == "2022-10-31T23:59:59.999Z");
  for (const auto& log : root->ctlogs) CHECK(log.log_id == key_log_id(log.key));

  const auto& legacy = root->certificate_authorities[0];
  CHECK(legacy.uri == "https://fulcio.sigstore.dev");
  CHECK(legacy.subject == "O=sigstore.dev, CN=sigstore");
  CHECK(legacy.chain.size() == 1);
  REQUIRE(legacy.valid_for.end.has_value());
  CHECK(format_time(*legacy.valid_for.end) == "2022-12-31T23:59:59.999Z");
  const auto& current = root->certificate_authorities[1];
  REQUIRE(current.chain.size() == 2);
  // Intermediate first, root last, as the file lists them.
  CHECK(current.chain[0].subject_line() == "O=sigstore.dev, CN=sigstore-intermediate");
  CHECK(current.chain[1].subject_line() == "O=sigstore.dev, CN=sigstore");
  CHECK(current.chain[1].is_self_signed());
  CHECK_FALSE(current.valid_for.end.has_value());

  const auto& tsa = root->timestamp_authorities[0];
  CHECK(tsa.uri == "https://timestamp.sigstore.dev/api/v1/timestamp");
  REQUIRE(tsa.chain.size() == 2);
  CHECK(tsa.chain[0].subject_line() == "O=sigstore.dev, CN=sigstore-tsa");  // the signer
  CHECK(tsa.chain[1].is_self_signed());
}

TEST_CASE("a timestamp authority's chain starts with its own certificate, which is no CA") {
  auto root = parse_trusted_root(public_good(), "public-good");
  REQUIRE(root.ok());
  REQUIRE(root->timestamp_authorities.size() == 1);
  const auto& chain = root->timestamp_authorities.front().chain;
  REQUIRE(chain.size() >= 2);
  CHECK_FALSE(chain.front().is_ca());
  for (size_t i = 1; i < chain.size(); ++i) CHECK(chain[i].is_ca());
  for (const auto& ca : root->certificate_authorities) {
    for (const auto& c : ca.chain) CHECK(c.is_ca());
  }
}

TEST_CASE("find_log and key_log_id") {
  auto root = parse_trusted_root(public_good(), "public-good");
  REQUIRE(root.ok());
  CHECK(find_log(root->tlogs, "") == nullptr);
  CHECK(find_log(root->tlogs, std::string(32, '\0')) == nullptr);
  CHECK(find_log(root->ctlogs, root->ctlogs[1].log_id) == &root->ctlogs[1]);
  CHECK(key_log_id(root->tlogs[0].key).size() == 32);
}

TEST_CASE("protobuf JSON variants are accepted") {
  SECTION("unknown fields are ignored") {
    json j = good();
    j["futureField"] = {{"x", 1}};
    j["tlogs"][0]["operator"] = "someone";
    j["tlogs"][0]["publicKey"]["somethingNew"] = true;
    CHECK(parse_trusted_root(j.dump(), "t").ok());
  }
  SECTION("proto field names") {
    json j = good();
    j["tlogs"][0]["base_url"] = j["tlogs"][0]["baseUrl"];
    j["tlogs"][0].erase("baseUrl");
    j["tlogs"][0]["public_key"] = j["tlogs"][0]["publicKey"];
    j["tlogs"][0].erase("publicKey");
    j["certificate_authorities"] = j["certificateAuthorities"];
    j.erase("certificateAuthorities");
    auto r = parse_trusted_root(j.dump(), "t");
    REQUIRE(r.ok());
    CHECK(r->tlogs[0].base_url == "https://rekor.sigstore.dev");
    CHECK(r->certificate_authorities.size() == 2);
  }
  SECTION("enums by number") {
    json j = good();
    j["tlogs"][0]["publicKey"]["keyDetails"] = 5;
    j["tlogs"][0]["hashAlgorithm"] = 1;
    j["tlogs"][1]["publicKey"]["keyDetails"] = 7;
    CHECK(parse_trusted_root(j.dump(), "t").ok());
  }
  SECTION("URL-safe, unpadded base64") {
    json j = good();
    std::string id = j["tlogs"][0]["logId"]["keyId"];
    for (char& c : id) {
      if (c == '+') c = '-';
      if (c == '/') c = '_';
    }
    id.erase(id.find('='));
    j["tlogs"][0]["logId"]["keyId"] = id;
    auto r = parse_trusted_root(j.dump(), "t");
    REQUIRE(r.ok());
    CHECK(r->tlogs[0].log_id == key_log_id(r->tlogs[0].key));
  }
  SECTION("no mediaType, no keyDetails, empty lists") {
    json j = good();
    j.erase("mediaType");
    j["tlogs"][0]["publicKey"].erase("keyDetails");
    j["ctlogs"] = json::array();
    j.erase("timestampAuthorities");
    auto r = parse_trusted_root(j.dump(), "t");
    REQUIRE(r.ok());
    CHECK(r->tlogs[0].hash == HashAlgorithm::sha256);
    CHECK(r->ctlogs.empty());
    CHECK(r->timestamp_authorities.empty());
  }
  SECTION("checkpointKeyId") {
    json j = good();
    j["tlogs"][1]["checkpointKeyId"] = {{"keyId", "AAECAw=="}};
    auto r = parse_trusted_root(j.dump(), "t");
    REQUIRE(r.ok());
    CHECK(r->tlogs[1].checkpoint_key_id == std::string("\x00\x01\x02\x03", 4));
    CHECK(r->tlogs[0].checkpoint_key_id.empty());
  }
}

TEST_CASE("a key type that matches keyDetails sets the signature hash") {
  auto p384 = sigil::test::generate_key("P-384");
  json j = good();
  j["tlogs"][0]["publicKey"]["rawBytes"] = base64_encode(p384.spki_der());
  SECTION("P-384 with SHA-384") {
    j["tlogs"][0]["publicKey"]["keyDetails"] = "PKIX_ECDSA_P384_SHA_384";
    auto r = parse_trusted_root(j.dump(), "t");
    REQUIRE(r.ok());
    CHECK(r->tlogs[0].hash == HashAlgorithm::sha384);
  }
  SECTION("P-384 with SHA-256 (deprecated, still in use)") {
    j["tlogs"][0]["publicKey"]["keyDetails"] = "PKIX_ECDSA_P384_SHA_256";
    auto r = parse_trusted_root(j.dump(), "t");
    REQUIRE(r.ok());
    CHECK(r->tlogs[0].hash == HashAlgorithm::sha256);
  }
  SECTION("no keyDetails: the key's default") {
    j["tlogs"][0]["publicKey"].erase("keyDetails");
    auto r = parse_trusted_root(j.dump(), "t");
    REQUIRE(r.ok());
    CHECK(r->tlogs[0].hash == HashAlgorithm::sha384);
  }
  SECTION("RSA of the stated size") {
    auto rsa = sigil::test::cached_key("RSA2048");
    j["tlogs"][0]["publicKey"]["rawBytes"] = base64_encode(rsa.spki_der());
    j["tlogs"][0]["publicKey"]["keyDetails"] = "PKIX_RSA_PKCS1V15_2048_SHA256";
    CHECK(parse_trusted_root(j.dump(), "t").ok());
    j["tlogs"][0]["publicKey"]["keyDetails"] = "PKIX_RSA_PKCS1V15_4096_SHA256";
    auto r = parse_trusted_root(j.dump(), "t");
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "tlogs[0].publicKey"));
  }
}

TEST_CASE("malformed entries are errors that name the entry") {
  struct Case {
    const char* what;
    void (*edit)(json&);
    const char* message;
  };
  auto c = GENERATE(
      Case{"rawBytes not base64",
           [](json& j) { j["tlogs"][1]["publicKey"]["rawBytes"] = "not*base64"; },
           "tlogs[1].publicKey.rawBytes: not base64"},
      Case{"rawBytes not a key", [](json& j) { j["ctlogs"][0]["publicKey"]["rawBytes"] = "AAAA"; },
           "ctlogs[0].publicKey.rawBytes"},
      Case{"rawBytes missing", [](json& j) { j["tlogs"][0]["publicKey"].erase("rawBytes"); },
           "tlogs[0].publicKey.rawBytes: missing"},
      Case{"rawBytes a number", [](json& j) { j["tlogs"][0]["publicKey"]["rawBytes"] = 5; },
           "tlogs[0].publicKey.rawBytes: not a string"},
      Case{"publicKey missing", [](json& j) { j["tlogs"][0].erase("publicKey"); },
           "tlogs[0].publicKey: missing"},
      Case{"keyDetails disagree with the key",
           [](json& j) { j["tlogs"][0]["publicKey"]["keyDetails"] = "PKIX_ED25519"; },
           "tlogs[0].publicKey: key is ecdsa-p256 but keyDetails says ed25519"},
      Case{"logId missing", [](json& j) { j["ctlogs"][1].erase("logId"); },
           "ctlogs[1].logId: missing"},
      Case{"logId.keyId not base64", [](json& j) { j["tlogs"][0]["logId"]["keyId"] = "%%%"; },
           "tlogs[0].logId.keyId: not base64"},
      Case{"validFor.start not a time",
           [](json& j) { j["tlogs"][0]["publicKey"]["validFor"]["start"] = "yesterday"; },
           "tlogs[0].publicKey.validFor.start: not an RFC 3339 time"},
      Case{"validFor end before start",
           [](json& j) {
             j["certificateAuthorities"][1]["validFor"]["end"] = "2020-01-01T00:00:00Z";
           },
           "certificateAuthorities[1].validFor: end is before start"},
      Case{"certChain empty",
           [](json& j) {
             j["certificateAuthorities"][0]["certChain"]["certificates"] = json::array();
           },
           "certificateAuthorities[0].certChain.certificates: must be a non-empty array"},
      Case{"certChain missing", [](json& j) { j["timestampAuthorities"][0].erase("certChain"); },
           "timestampAuthorities[0].certChain: missing"},
      Case{"certificate not DER",
           [](json& j) {
             j["certificateAuthorities"][1]["certChain"]["certificates"][1]["rawBytes"] = "AAAA";
           },
           "certificateAuthorities[1].certChain.certificates[1].rawBytes"},
      Case{"chain root first",
           [](json& j) {
             auto& certs = j["certificateAuthorities"][1]["certChain"]["certificates"];
             std::swap(certs[0], certs[1]);
           },
           "certificateAuthorities[1].certChain: certificate 0 is not issued by certificate 1"},
      // The public-good leaf is issued by CA 1's intermediate, so the order is right; but a
      // signing certificate can issue nothing.
      Case{"a signing certificate in a CA's chain",
           [](json& j) {
             auto& certs = j["certificateAuthorities"][1]["certChain"]["certificates"];
             certs.insert(
                 certs.begin(),
                 json{{"rawBytes", base64_encode(sigil::test::public_good_sample().leaf_der)}});
           },
           "certificateAuthorities[1].certChain: certificate 0 is not a CA certificate (empty "
           "subject;"},
      Case{"tlogs not an array", [](json& j) { j["tlogs"] = json::object(); },
           "tlogs: not an array"},
      Case{"entry not an object", [](json& j) { j["ctlogs"][1] = "x"; },
           "ctlogs[1]: not an object"},
      Case{"baseUrl not a string", [](json& j) { j["tlogs"][0]["baseUrl"] = 1; },
           "tlogs[0].baseUrl: not a string"},
      Case{"both spellings of a field",
           [](json& j) { j["tlogs"][0]["base_url"] = j["tlogs"][0]["baseUrl"]; },
           "both baseUrl and base_url"},
      Case{"wrong mediaType",
           [](json& j) { j["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.3+json"; },
           "mediaType"});
  INFO(c.what);
  json j = good();
  c.edit(j);
  auto r = parse_trusted_root(j.dump(), "t");
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, c.message));
}

TEST_CASE("bytes that are not a trusted root") {
  struct Case {
    std::string text;
    Errc code;
  };
  auto c = GENERATE_COPY(Case{"", Errc::parse_error}, Case{"not json", Errc::parse_error},
                         Case{"[]", Errc::parse_error}, Case{"\"x\"", Errc::parse_error},
                         Case{"{\"tlogs\":[],\"tlogs\":[]}", Errc::parse_error},
                         Case{public_good() + "x", Errc::parse_error},
                         Case{std::string(5 * 1024 * 1024, ' '), Errc::too_large},
                         Case{std::string(100, '[') + std::string(100, ']'), Errc::parse_error});
  auto r = parse_trusted_root(c.text, "t");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == c.code);
}

TEST_CASE("an empty object is an empty trusted root") {
  auto r = parse_trusted_root("{}", "empty");
  REQUIRE(r.ok());
  CHECK(r->tlogs.empty());
  CHECK(r->certificate_authorities.empty());
}

// ---- issue 13: staging roots, unusable entries, validFor.start ----------------------------

namespace {

// The PKCS#1 RSAPublicKey DER of an RSA key, as PKCS1_RSA_PKCS1V5 entries carry it.
std::string pkcs1_der(const sigil::test::KeyPair& k) {
  unsigned char* der = nullptr;
  int len = i2d_PublicKey(k.pkey.get(), &der);
  REQUIRE(len > 0);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

}  // namespace

TEST_CASE("a staging root's PKCS1_RSA_PKCS1V5 CT key loads, as sigstore-go reads it") {
  // Every Sigstore staging trusted_root.json lists ctfe.sigstage.dev/test this way.
  const auto& rsa = sigil::test::cached_key("RSA2048");
  for (json details : {json("PKCS1_RSA_PKCS1V5"), json(1)}) {
    json j = good();
    j["ctlogs"][0]["publicKey"]["rawBytes"] = base64_encode(pkcs1_der(rsa));
    j["ctlogs"][0]["publicKey"]["keyDetails"] = details;
    auto r = parse_trusted_root(j.dump(), "staging");
    INFO((r ? std::string() : r.error().message));
    REQUIRE(r.ok());
    CHECK(r->warnings.empty());
    REQUIRE(r->ctlogs.size() == 2);
    const auto& log = r->ctlogs[0];
    CHECK(log.key.type() == KeyType::rsa);
    CHECK(log.key.spki_der() == rsa.spki_der());
    CHECK(log.hash == HashAlgorithm::sha256);
    CHECK(log.key.verify("tbs", rsa.sign("tbs"), log.hash).ok());
  }
  SECTION("an SPKI under PKCS1_RSA_PKCS1V5 is malformed") {
    json j = good();
    j["ctlogs"][0]["publicKey"]["rawBytes"] = base64_encode(rsa.spki_der());
    j["ctlogs"][0]["publicKey"]["keyDetails"] = "PKCS1_RSA_PKCS1V5";
    auto r = parse_trusted_root(j.dump(), "t");
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "ctlogs[0].publicKey.rawBytes"));
  }
}

TEST_CASE("an entry sigil cannot use is skipped with a warning, unless none is left") {
  struct Case {
    const char* what;
    void (*edit)(json&);
    const char* names;
  };
  auto c = GENERATE(
      Case{"RSA-PSS",
           [](json& j) { j["tlogs"][0]["publicKey"]["keyDetails"] = "PKIX_RSA_PSS_2048_SHA256"; },
           "tlogs[0].publicKey.keyDetails: PKIX_RSA_PSS_2048_SHA256 is not a key type"},
      Case{"the deprecated PKIX_RSA_PKCS1V5, which sigstore-go does not read",
           [](json& j) { j["tlogs"][0]["publicKey"]["keyDetails"] = 3; },
           "tlogs[0].publicKey.keyDetails: PKIX_RSA_PKCS1V5"},
      Case{"from the future",
           [](json& j) { j["ctlogs"][1]["publicKey"]["keyDetails"] = "ML_DSA_65"; },
           "ctlogs[1].publicKey.keyDetails: ML_DSA_65"},
      Case{"an unknown number", [](json& j) { j["ctlogs"][1]["publicKey"]["keyDetails"] = 99; },
           "ctlogs[1].publicKey.keyDetails: #99"},
      Case{"a tree hash other than SHA-256",
           [](json& j) { j["tlogs"][0]["hashAlgorithm"] = "SHA2_384"; }, "tlogs[0].hashAlgorithm"},
      Case{"a key on a curve sigil does not implement",
           [](json& j) {
             j["tlogs"][1]["publicKey"]["rawBytes"] =
                 base64_encode(sigil::test::generate_key("secp256k1").spki_der());
             j["tlogs"][1]["publicKey"].erase("keyDetails");
           },
           "tlogs[1].publicKey.rawBytes"});
  INFO(c.what);
  json j = good();
  c.edit(j);
  auto r = parse_trusted_root(j.dump(), "t");
  INFO((r ? std::string() : r.error().message));
  REQUIRE(r.ok());
  REQUIRE(r->warnings.size() == 1);
  CHECK(contains(r->warnings[0], c.names));
  CHECK(contains(r->warnings[0], "skipped"));
  CHECK(r->tlogs.size() + r->ctlogs.size() == 3);  // one of the four logs is gone
  CHECK(r->certificate_authorities.size() == 2);

  SECTION("when every entry of the list is unusable, the root is refused") {
    json all = good();
    for (auto& log : all["ctlogs"]) log["publicKey"]["keyDetails"] = "LMS_SHA256";
    auto none = parse_trusted_root(all.dump(), "t");
    REQUIRE_FALSE(none.ok());
    CHECK(none.error().code == Errc::unsupported);
    CHECK(contains(none.error().message, "ctlogs: no entry sigil can use"));
  }
}

TEST_CASE("validFor must state a start, for every log, CA and TSA entry") {
  struct Case {
    const char* what;
    void (*edit)(json&);
    const char* names;
  };
  auto c =
      GENERATE(Case{"a Rekor key without start",
                    [](json& j) { j["tlogs"][0]["publicKey"]["validFor"].erase("start"); },
                    "tlogs[0].publicKey.validFor.start: missing"},
               Case{"a Rekor key with only an end",
                    [](json& j) {
                      j["tlogs"][1]["publicKey"]["validFor"] = {{"end", "2030-01-01T00:00:00Z"}};
                    },
                    "tlogs[1].publicKey.validFor.start: missing"},
               Case{"a Rekor key without validFor",
                    [](json& j) { j["tlogs"][0]["publicKey"].erase("validFor"); },
                    "tlogs[0].publicKey.validFor: missing"},
               Case{"a CT key without start",
                    [](json& j) { j["ctlogs"][1]["publicKey"]["validFor"].erase("start"); },
                    "ctlogs[1].publicKey.validFor.start: missing"},
               Case{"a Fulcio CA without start",
                    [](json& j) { j["certificateAuthorities"][0]["validFor"].erase("start"); },
                    "certificateAuthorities[0].validFor.start: missing"},
               Case{"a Fulcio CA without validFor",
                    [](json& j) { j["certificateAuthorities"][1].erase("validFor"); },
                    "certificateAuthorities[1].validFor: missing"},
               Case{"a TSA without start",
                    [](json& j) { j["timestampAuthorities"][0]["validFor"] = json::object(); },
                    "timestampAuthorities[0].validFor.start: missing"},
               Case{"start given as null",
                    [](json& j) { j["tlogs"][0]["publicKey"]["validFor"]["start"] = nullptr; },
                    "tlogs[0].publicKey.validFor.start: missing"},
               Case{"an entry that would be skipped is still malformed",
                    [](json& j) {
                      j["ctlogs"][0]["publicKey"]["keyDetails"] = "PKIX_RSA_PSS_2048_SHA256";
                      j["ctlogs"][0]["publicKey"]["validFor"].erase("start");
                    },
                    "ctlogs[0].publicKey.validFor.start: missing"});
  INFO(c.what);
  json j = good();
  c.edit(j);
  auto r = parse_trusted_root(j.dump(), "t");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::parse_error);
  CHECK(contains(r.error().message, c.names));
}
