// azure/jwk.hpp: JWK -> key for each curve and RSA (signatures made with the private key
// verify with the converted key), malformed JWKs, azurekms:// references.
#include <catch2/catch.hpp>

#include "azure/jwk.hpp"
#include "jwk_helpers.hpp"

using namespace sigil;
using namespace sigil::azure;
using namespace sigil::azure::testing;

TEST_CASE("jwk: EC P-256/384/521 and RSA become the same key, and verify its signatures") {
  struct Row {
    const char* kind;
    const char* crv;
    crypto::KeyType type;
    const EVP_MD* (*md)();
    crypto::HashAlgorithm hash;
  };
  auto row = GENERATE(values<Row>({
      {"P-256", "P-256", crypto::KeyType::ecdsa_p256, EVP_sha256, crypto::HashAlgorithm::sha256},
      {"P-384", "P-384", crypto::KeyType::ecdsa_p384, EVP_sha384, crypto::HashAlgorithm::sha384},
      {"P-521", "P-521", crypto::KeyType::ecdsa_p521, EVP_sha512, crypto::HashAlgorithm::sha512},
      {"RSA2048", "", crypto::KeyType::rsa, EVP_sha256, crypto::HashAlgorithm::sha256},
  }));
  CAPTURE(row.kind);
  const auto& k = sigil::test::cached_key(row.kind);
  const std::string jwk = jwk_of(k, row.crv);
  auto key = public_key_from_jwk(jwk);
  REQUIRE(key.ok());
  CHECK(key->type() == row.type);
  CHECK(key->spki_der() == k.spki_der());
  const std::string msg = "a payload";
  const std::string sig = k.sign(msg, row.md());
  CHECK(key->verify(msg, sig, row.hash).ok());
  CHECK_FALSE(key->verify("another payload", sig, row.hash).ok());

  // Key Vault's -HSM key types and its key bundle.
  std::string hsm = jwk;
  hsm.replace(hsm.find("\"EC\"") != std::string::npos ? hsm.find("\"EC\"") : hsm.find("\"RSA\""),
              hsm.find("\"EC\"") != std::string::npos ? 4 : 5,
              hsm.find("\"EC\"") != std::string::npos ? "\"EC-HSM\"" : "\"RSA-HSM\"");
  CHECK(public_key_from_jwk(hsm).ok());
  auto bundle = parse_key_vault_key(R"({"key":)" + jwk.substr(0, jwk.size() - 1) +
                                    R"(,"kid":"https://v.vault.azure.net/keys/k/abc123"},)"
                                    R"("attributes":{"enabled":true}})");
  REQUIRE(bundle.ok());
  CHECK(bundle->version == "abc123");
  CHECK(bundle->key.spki_der() == k.spki_der());
  CHECK(bundle->enabled);

  // Whether the key is enabled: only a boolean answers it, and false is read as false.
  const std::string key_member = R"({"key":)" + jwk + ",";
  auto off = parse_key_vault_key(key_member + R"("attributes":{"enabled":false}})");
  REQUIRE(off.ok());
  CHECK_FALSE(off->enabled);
  for (const std::string attributes :
       {R"("attributes":{"enabled":"false"})", R"("attributes":{"enabled":0})",
        R"("attributes":{"enabled":null})", R"("attributes":{})", R"("attributes":[])",
        R"("tags":{})"}) {
    CAPTURE(attributes);
    auto r = parse_key_vault_key(key_member + attributes + "}");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::parse_error);
  }
}

TEST_CASE("jwk: a point off the curve, short coordinates, a short RSA key are refused") {
  const auto& k = sigil::test::cached_key("P-256");
  const std::string good = jwk_of(k, "P-256");
  // Flip one bit of y: no longer on the curve.
  const size_t y = good.find("\"y\":\"") + 5;
  std::string off = good;
  off[y + 3] = off[y + 3] == 'A' ? 'B' : 'A';
  CHECK_FALSE(public_key_from_jwk(off).ok());
  // The right curve name with another curve's coordinates.
  const std::string wrong_curve = jwk_of(sigil::test::cached_key("P-384"), "P-256");
  CHECK_FALSE(public_key_from_jwk(wrong_curve).ok());
  auto rsa1024 = public_key_from_jwk(jwk_of(sigil::test::generate_key("RSA1024")));
  CHECK_FALSE(rsa1024.ok());
}

TEST_CASE("jwk: other key types and malformed JWKs are clear errors") {
  struct Row {
    const char* jwk;
    Errc code;
  };
  auto row = GENERATE(values<Row>({
      {R"({"kty":"OKP","crv":"Ed25519","x":"AAAA"})", Errc::unsupported},
      {R"({"kty":"oct","k":"AAAA"})", Errc::unsupported},
      {R"({"kty":"EC","crv":"P-256K","x":"AA","y":"AA"})", Errc::unsupported},
      {R"({"kty":"EC","crv":"P-256"})", Errc::parse_error},
      {R"({"kty":"EC","crv":"P-256","x":"@@","y":"AA"})", Errc::parse_error},
      {R"({"kty":"RSA","n":"AQAB"})", Errc::parse_error},
      {R"({"crv":"P-256"})", Errc::parse_error},
      {R"([1,2])", Errc::parse_error},
      {"not json", Errc::parse_error},
  }));
  CAPTURE(row.jwk);
  auto r = public_key_from_jwk(row.jwk);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == row.code);
}

TEST_CASE("kms: azurekms://<vault>/<key>[/<version>]") {
  auto r = parse_azurekms("azurekms://MyVault.vault.azure.net/cosign-key");
  REQUIRE(r.ok());
  CHECK(r->vault == "myvault.vault.azure.net");
  CHECK(r->key == "cosign-key");
  CHECK(r->version.empty());
  CHECK(r->target() == "/keys/cosign-key?api-version=7.4");
  auto v = parse_azurekms("azurekms://127.0.0.1:8443/k/0123abcd");
  REQUIRE(v.ok());
  CHECK(v->vault == "127.0.0.1:8443");
  CHECK(v->target() == "/keys/k/0123abcd?api-version=7.4");
  CHECK(v->uri() == "azurekms://127.0.0.1:8443/k/0123abcd");

  for (const char* other : {"awskms:///alias/x", "gcpkms://projects/p", "hashivault://k"}) {
    auto e = parse_azurekms(other);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().code == Errc::unsupported);
  }
  for (const char* bad :
       {"azurekms://", "azurekms://v.vault.azure.net", "azurekms://v/", "azurekms://v/k/../x",
        "azurekms://v/k?x=1", "azurekms://v/k/v/extra", "azurekms://u@v/k", "azurekms://v/k%2f"}) {
    CAPTURE(bad);
    auto e = parse_azurekms(bad);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().code == Errc::invalid_argument);
  }
}
