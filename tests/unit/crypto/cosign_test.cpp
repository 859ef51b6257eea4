#include <catch2/catch.hpp>

#include "common/encoding.hpp"
#include "crypto/cosign.hpp"
#include "pki.hpp"

using namespace sigil;
using namespace sigil::crypto;
using sigil::test::cached_key;
using sigil::test::flip_bit;

namespace {

const std::string kDigestA =
    "sha256:2d4e4a6c8f1b0e3a5c7d9f1b3e5a7c9d1f3b5e7a9c1d3f5b7e9a1c3d5f7b9e1a";
const std::string kDigestB =
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

// cosign's exact compact payload (Go json.Marshal of SimpleContainerImage).
std::string payload_for(const std::string& digest,
                        const std::string& type = std::string(kCosignSignatureType)) {
  return R"({"critical":{"identity":{"docker-reference":"127.0.0.1:5000/test/a"},"image":{"docker-manifest-digest":")" +
         digest + R"("},"type":")" + type + R"("},"optional":null})";
}

Signature signed_by(const char* kind, const std::string& payload, const EVP_MD* md) {
  Signature s;
  s.payload = payload;
  s.signature = cached_key(kind).sign(payload, md);
  s.source = "sha256-test.sig layer 0";
  return s;
}

PublicKey load(const char* kind) {
  auto k = PublicKey::from_pem(cached_key(kind).public_pem());
  REQUIRE(k.ok());
  return *k;
}

}  // namespace

TEST_CASE("simple-signing: cosign's compact payload parses") {
  auto p = parse_simple_signing(payload_for(kDigestA));
  REQUIRE(p.ok());
  CHECK(p->type == kCosignSignatureType);
  CHECK(p->docker_manifest_digest == kDigestA);
  CHECK(p->docker_reference == "127.0.0.1:5000/test/a");
  CHECK(p->optional.empty());
}

TEST_CASE("simple-signing: keys match case-insensitively as in Go") {
  auto input = GENERATE(
      as<std::string>{},
      R"({"Critical":{"Identity":{"Docker-Reference":"r"},"IMAGE":{"Docker-manifest-digest":"sha256:ab"},"Type":"t"},"Optional":{"k":"v"}})",
      R"({"CRITICAL":{"image":{"DOCKER-MANIFEST-DIGEST":"sha256:ab"},"tYpE":"t","identity":{"docker-reference":"r"}},"optional":{"k":"v"}})",
      // U+212A KELVIN SIGN and U+017F LONG S fold to k and s in Go's EqualFold.
      "{\"critical\":{\"identity\":{\"docker-reference\":\"r\"},\"image\":{\"doc\xE2\x84\xAA"
      "er-manife\xC5\xBFt-digest\":\"sha256:ab\"},\"type\":\"t\"},\"optional\":{\"k\":\"v\"}}");
  auto p = parse_simple_signing(input);
  REQUIRE(p.ok());
  CHECK(p->type == "t");
  CHECK(p->docker_manifest_digest == "sha256:ab");
  CHECK(p->docker_reference == "r");
  CHECK(p->optional == std::map<std::string, std::string>{{"k", "v"}});
}

TEST_CASE("simple-signing: optional annotations keep string values only") {
  auto p = parse_simple_signing(
      R"({"critical":{"image":{"docker-manifest-digest":"sha256:ab"},"type":"t"},)"
      R"("optional":{"env":"prod","Env":"x","n":1,"b":true,"o":{"a":"b"},"z":null}})");
  REQUIRE(p.ok());
  CHECK(p->optional == std::map<std::string, std::string>{{"env", "prod"}, {"Env", "x"}});
  CHECK(p->docker_reference.empty());  // identity is optional
}

TEST_CASE("simple-signing: unknown keys and null identity are accepted") {
  auto p = parse_simple_signing(
      R"({"critical":{"identity":null,"image":{"docker-manifest-digest":"sha256:ab","x":1},)"
      R"("type":"t","extra":[1]},"other":{}})");
  REQUIRE(p.ok());
  CHECK(p->docker_manifest_digest == "sha256:ab");
}

TEST_CASE("simple-signing: missing required fields are named") {
  auto [input, field] = GENERATE(table<std::string, std::string>({
      {R"({"optional":null})", "critical"},
      {R"({"critical":{"image":{"docker-manifest-digest":"sha256:ab"}}})", "critical.type"},
      {R"({"critical":{"type":"t"}})", "critical.image"},
      {R"({"critical":{"type":"t","image":{}}})", "critical.image.docker-manifest-digest"},
      {R"({"critical":{"type":"t","image":{"docker-manifest":"sha256:ab"}}})",
       "critical.image.docker-manifest-digest"},
  }));
  auto p = parse_simple_signing(input);
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().code == Errc::parse_error);
  CHECK_THAT(p.error().message, Catch::Contains(field + " is missing"));
}

TEST_CASE("simple-signing: wrong types are named") {
  auto [input, field] = GENERATE(table<std::string, std::string>({
      {R"([])", "document"},
      {R"("x")", "document"},
      {R"({"critical":"x"})", "critical"},
      {R"({"critical":null})", "critical"},
      {R"({"critical":{"type":1,"image":{"docker-manifest-digest":"d"}}})", "critical.type"},
      {R"({"critical":{"type":null,"image":{"docker-manifest-digest":"d"}}})", "critical.type"},
      {R"({"critical":{"type":"t","image":["d"]}})", "critical.image"},
      {R"({"critical":{"type":"t","image":{"docker-manifest-digest":5}}})",
       "critical.image.docker-manifest-digest"},
      {R"({"critical":{"type":"t","image":{"docker-manifest-digest":"d"},"identity":"r"}})",
       "critical.identity"},
      {R"({"critical":{"type":"t","image":{"docker-manifest-digest":"d"},"identity":{"docker-reference":[]}}})",
       "critical.identity.docker-reference"},
      {R"({"critical":{"type":"t","image":{"docker-manifest-digest":"d"}},"optional":[]})",
       "optional"},
      {R"({"critical":{"type":"t","image":{"docker-manifest-digest":"d"}},"optional":"a=b"})",
       "optional"},
  }));
  auto p = parse_simple_signing(input);
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().code == Errc::parse_error);
  CHECK_THAT(p.error().message, Catch::Contains(field));
}

TEST_CASE("simple-signing: invalid JSON and ambiguous documents are rejected") {
  const std::string ok = payload_for(kDigestA);
  auto input = GENERATE_COPY(
      as<std::string>{}, std::string(), std::string("{"), ok.substr(0, ok.size() - 1), ok + "x",
      ok + "{}", "/* c */" + ok, std::string(ok).replace(2, 8, "critic\xFF\xFE"),
      // Duplicate keys: Go keeps the last, nlohmann would too; sigil refuses the ambiguity.
      R"({"critical":{"type":"x","type":"t","image":{"docker-manifest-digest":"d"}}})",
      R"({"critical":{"Type":"x","type":"t","image":{"docker-manifest-digest":"d"}}})",
      R"({"critical":{"type":"t","image":{"docker-manifest-digest":"a","Docker-Manifest-Digest":"b"}}})",
      R"({"critical":{"type":"t","image":{"docker-manifest-digest":"d"}},"CRITICAL":{}})",
      R"({"critical":{"type":"t","image":{"docker-manifest-digest":"d"}},"optional":{"a":"1","a":"2"}})");
  auto p = parse_simple_signing(input);
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().code == Errc::parse_error);
}

TEST_CASE("simple-signing: size and depth limits") {
  std::string big = payload_for(kDigestA);
  big.insert(1, R"("pad":")" + std::string(1024 * 1024, 'a') + R"(",)");
  auto p = parse_simple_signing(big);
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().code == Errc::too_large);

  std::string deep = R"({"critical":{"type":"t","image":{"docker-manifest-digest":"d"}},"x":)" +
                     std::string(100000, '[') + std::string(100000, ']') + "}";
  auto d = parse_simple_signing(deep);
  REQUIRE_FALSE(d.ok());
  CHECK(d.error().code == Errc::parse_error);
}

TEST_CASE("key-based check: a good signature passes for every key type") {
  auto [kind, hash] = GENERATE(table<const char*, HashAlgorithm>({
      {"P-256", HashAlgorithm::sha256},
      {"P-384", HashAlgorithm::sha384},
      {"P-521", HashAlgorithm::sha512},
      {"ED25519", HashAlgorithm::sha256},
      {"RSA2048", HashAlgorithm::sha256},
  }));
  INFO(kind);
  const EVP_MD* md = hash == HashAlgorithm::sha256   ? EVP_sha256()
                     : hash == HashAlgorithm::sha384 ? EVP_sha384()
                                                     : EVP_sha512();
  if (std::string(kind) == "ED25519") md = nullptr;
  Signature s = signed_by(kind, payload_for(kDigestA), md);
  auto c = check_signature_with_key(s, load(kind), hash, kDigestA);
  CHECK(c.ok);
  CHECK(c.failure == SignatureFailure::none);
  CHECK(c.message.empty());
  CHECK(c.payload.docker_manifest_digest == kDigestA);
  CHECK(verify_signature_with_key(s, load(kind), hash, kDigestA).ok());
}

TEST_CASE("key-based check: a signature copied from another image fails") {
  Signature s = signed_by("P-256", payload_for(kDigestB), EVP_sha256());
  auto c = check_signature_with_key(s, load("P-256"), HashAlgorithm::sha256, kDigestA);
  CHECK_FALSE(c.ok);
  CHECK(c.failure == SignatureFailure::digest_mismatch);
  CHECK(c.payload.docker_manifest_digest == kDigestB);  // for the caller's message
  CHECK(c.message ==
        "signature is for sha256:9f86d081884c…, not for sha256:2d4e4a6c8f1b… (copied from "
        "another image?)");
  auto st = verify_signature_with_key(s, load("P-256"), HashAlgorithm::sha256, kDigestA);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == Errc::verification);
  CHECK(st.error().message == c.message);
}

TEST_CASE("key-based check: digests compare exactly") {
  std::string upper = kDigestA;
  for (size_t i = 7; i < upper.size(); ++i) upper[i] = static_cast<char>(std::toupper(upper[i]));
  auto payload_digest = GENERATE_COPY(as<std::string>{}, upper, kDigestA + " ", " " + kDigestA,
                                      kDigestA.substr(0, 70), "sha512:" + kDigestA.substr(7),
                                      std::string(""), kDigestA.substr(7));
  Signature s = signed_by("P-256", payload_for(payload_digest), EVP_sha256());
  auto c = check_signature_with_key(s, load("P-256"), HashAlgorithm::sha256, kDigestA);
  CHECK_FALSE(c.ok);
  CHECK(c.failure == SignatureFailure::digest_mismatch);
}

TEST_CASE("key-based check: the payload type must be cosign's") {
  auto type = GENERATE(as<std::string>{}, "", "cosign container image signatur",
                       "Cosign Container Image Signature", "atomic container signature");
  Signature s = signed_by("P-256", payload_for(kDigestA, type), EVP_sha256());
  auto c = check_signature_with_key(s, load("P-256"), HashAlgorithm::sha256, kDigestA);
  CHECK_FALSE(c.ok);
  CHECK(c.failure == SignatureFailure::wrong_type);
  CHECK_THAT(c.message, Catch::StartsWith("payload type is \"" + type + "\", not a cosign"));
}

TEST_CASE("key-based check: a bad signature fails before the payload is read") {
  Signature good = signed_by("P-256", payload_for(kDigestA), EVP_sha256());
  SECTION("flipped signature bit") {
    Signature s = good;
    s.signature = flip_bit(s.signature, s.signature.size() - 1);
    auto c = check_signature_with_key(s, load("P-256"), HashAlgorithm::sha256, kDigestA);
    CHECK_FALSE(c.ok);
    CHECK(c.failure == SignatureFailure::bad_signature);
    CHECK(c.message == "signature does not verify with the policy's key");
  }
  SECTION("payload altered after signing") {
    Signature s = good;
    s.payload = payload_for(kDigestB);
    auto c = check_signature_with_key(s, load("P-256"), HashAlgorithm::sha256, kDigestB);
    CHECK_FALSE(c.ok);
    CHECK(c.failure == SignatureFailure::bad_signature);
  }
  SECTION("another key") {
    auto c = check_signature_with_key(good, load("P-384"), HashAlgorithm::sha256, kDigestA);
    CHECK(c.failure == SignatureFailure::bad_signature);
  }
  SECTION("wrong hash") {
    auto c = check_signature_with_key(good, load("P-256"), HashAlgorithm::sha384, kDigestA);
    CHECK(c.failure == SignatureFailure::bad_signature);
  }
  SECTION("empty signature") {
    Signature s = good;
    s.signature.clear();
    auto c = check_signature_with_key(s, load("P-256"), HashAlgorithm::sha256, kDigestA);
    CHECK(c.failure == SignatureFailure::bad_signature);
  }
  SECTION("unsigned garbage payload is bad_signature, not malformed") {
    Signature s = good;
    s.payload = "not json";
    auto c = check_signature_with_key(s, load("P-256"), HashAlgorithm::sha256, kDigestA);
    CHECK(c.failure == SignatureFailure::bad_signature);
  }
}

TEST_CASE("key-based check: a signed but malformed payload") {
  Signature s = signed_by("P-256", R"({"critical":{"type":"t"}})", EVP_sha256());
  auto c = check_signature_with_key(s, load("P-256"), HashAlgorithm::sha256, kDigestA);
  CHECK_FALSE(c.ok);
  CHECK(c.failure == SignatureFailure::malformed_payload);
  CHECK_THAT(c.message, Catch::Contains("critical.image"));
}

TEST_CASE("key-based check: an invalid expected digest never matches") {
  // Payload digest equal to the (bad) expected digest: must still fail.
  auto expected =
      GENERATE(as<std::string>{}, "", "sha256:", "sha256:ABC", "sha256:" + std::string(63, 'a'),
               "md5:" + std::string(32, 'a'), std::string(64, 'a'));
  Signature s = signed_by("P-256", payload_for(expected), EVP_sha256());
  auto c = check_signature_with_key(s, load("P-256"), HashAlgorithm::sha256, expected);
  CHECK_FALSE(c.ok);
  CHECK(c.failure == SignatureFailure::invalid_argument);
  auto st = verify_signature_with_key(s, load("P-256"), HashAlgorithm::sha256, expected);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == Errc::invalid_argument);
}

TEST_CASE("fixed vector: a P-256 signature made by the openssl CLI") {
  // Made once with: openssl ecparam -name prime256v1 -genkey; openssl dgst -sha256 -sign.
  const std::string pem =
      "-----BEGIN PUBLIC KEY-----\n"
      "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqoDA8tMkKC+td+cc4HR6fiFUC/B1\n"
      "apsv0EcnuQlUJJC20vmFsZ3iI7PNRHgYZj0BEq8bluferpOshdX3GyUKPA==\n"
      "-----END PUBLIC KEY-----\n";
  const std::string sig_b64 =
      "MEUCIQDYNNGEijl5ykhJeuacSrLAvjeyGR5uGWwthw/uBdSQaQIgCdEghoYJgnvSSSfmTnW6UEV6KYBFpfRLoVNpLo"
      "NBpnk=";
  const std::string payload =
      R"({"critical":{"identity":{"docker-reference":"127.0.0.1:5000/test/a"},"image":{"docker-manifest-digest":"sha256:2d4e4a6c8f1b0e3a5c7d9f1b3e5a7c9d1f3b5e7a9c1d3f5b7e9a1c3d5f7b9e1a"},"type":"cosign container image signature"},"optional":null})";
  REQUIRE(payload.size() == 237);
  auto k = PublicKey::from_pem(pem);
  REQUIRE(k.ok());
  CHECK(k->type() == KeyType::ecdsa_p256);
  auto raw = base64_decode(sig_b64);
  REQUIRE(raw.ok());
  Signature s{payload, *raw, "", "", "", "fixed vector", ""};
  auto c = check_signature_with_key(s, *k, HashAlgorithm::sha256, kDigestA);
  CHECK(c.ok);
  CHECK(c.payload.docker_reference == "127.0.0.1:5000/test/a");
  Signature tampered = s;
  tampered.payload = flip_bit(payload, 100);
  CHECK(check_signature_with_key(tampered, *k, HashAlgorithm::sha256, kDigestA).failure ==
        SignatureFailure::bad_signature);
  CHECK(check_signature_with_key(s, *k, HashAlgorithm::sha256, kDigestB).failure ==
        SignatureFailure::digest_mismatch);
}
