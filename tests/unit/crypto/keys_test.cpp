#include <catch2/catch.hpp>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "common/encoding.hpp"
#include "crypto/keys.hpp"
#include "pki.hpp"

using namespace sigil;
using namespace sigil::crypto;
using sigil::test::cached_key;
using sigil::test::flip_bit;
using sigil::test::to_pem;

namespace {

struct Kind {
  const char* name;
  KeyType type;
  HashAlgorithm hash;
};

const EVP_MD* md_for(const Kind& k) {
  if (k.type == KeyType::ed25519) return nullptr;
  switch (k.hash) {
    case HashAlgorithm::sha224:
      return EVP_sha224();
    case HashAlgorithm::sha256:
      return EVP_sha256();
    case HashAlgorithm::sha384:
      return EVP_sha384();
    case HashAlgorithm::sha512:
      return EVP_sha512();
  }
  return nullptr;
}

Kind any_kind() {
  return GENERATE(Kind{"P-256", KeyType::ecdsa_p256, HashAlgorithm::sha256},
                  Kind{"P-384", KeyType::ecdsa_p384, HashAlgorithm::sha384},
                  Kind{"P-521", KeyType::ecdsa_p521, HashAlgorithm::sha512},
                  Kind{"ED25519", KeyType::ed25519, HashAlgorithm::sha256},
                  Kind{"RSA2048", KeyType::rsa, HashAlgorithm::sha256});
}

PublicKey load(const char* kind) {
  auto k = PublicKey::from_pem(cached_key(kind).public_pem());
  REQUIRE(k.ok());
  return *k;
}

const std::string kMessage = R"({"critical":{"type":"cosign container image signature"}})";

}  // namespace

TEST_CASE("each key type verifies its own signature") {
  Kind kind = any_kind();
  INFO(kind.name);
  PublicKey pub = load(kind.name);
  CHECK(pub.type() == kind.type);
  CHECK(default_hash_for(pub.type()) == kind.hash);
  CHECK(pub.spki_der() == cached_key(kind.name).spki_der());
  std::string sig = cached_key(kind.name).sign(kMessage, md_for(kind));
  CHECK(pub.verify(kMessage, sig, kind.hash).ok());
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("a signature fails with another key of the same type") {
  Kind kind = any_kind();
  INFO(kind.name);
  std::string sig = cached_key(kind.name).sign(kMessage, md_for(kind));
  // A second, independent key of the same kind: generated directly, not cached.
  std::string spki = sigil::test::generate_key(kind.name).spki_der();
  auto pub = PublicKey::from_der(spki);
  REQUIRE(pub.ok());
  auto st = pub->verify(kMessage, sig, kind.hash);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == Errc::verification);
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("a signature fails with a key of another type") {
  std::string sig = cached_key("P-256").sign(kMessage, EVP_sha256());
  for (const char* other : {"P-384", "ED25519", "RSA2048"}) {
    INFO(other);
    auto st = load(other).verify(kMessage, sig, HashAlgorithm::sha256);
    CHECK_FALSE(st.ok());
    CHECK(ERR_peek_error() == 0);
  }
}

TEST_CASE("a flipped bit in the signature fails") {
  Kind kind = any_kind();
  INFO(kind.name);
  PublicKey pub = load(kind.name);
  std::string sig = cached_key(kind.name).sign(kMessage, md_for(kind));
  size_t pos = GENERATE(0u, 5u, 1000u);  // 1000 -> last byte
  size_t at = pos < sig.size() ? pos : sig.size() - 1;
  INFO("byte " << at);
  auto st = pub.verify(kMessage, flip_bit(sig, at), kind.hash);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == Errc::verification);
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("a flipped bit in the message fails") {
  Kind kind = any_kind();
  INFO(kind.name);
  PublicKey pub = load(kind.name);
  std::string sig = cached_key(kind.name).sign(kMessage, md_for(kind));
  auto st = pub.verify(flip_bit(kMessage, 10, 5), sig, kind.hash);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == Errc::verification);
  CHECK_FALSE(pub.verify(kMessage + " ", sig, kind.hash).ok());
  CHECK_FALSE(pub.verify("", sig, kind.hash).ok());
}

TEST_CASE("a signature made with one hash fails when checked with another") {
  for (const char* name : {"P-256", "P-384", "RSA2048"}) {
    INFO(name);
    PublicKey pub = load(name);
    std::string sig = cached_key(name).sign(kMessage, EVP_sha256());
    CHECK(pub.verify(kMessage, sig, HashAlgorithm::sha256).ok());
    CHECK_FALSE(pub.verify(kMessage, sig, HashAlgorithm::sha384).ok());
    CHECK_FALSE(pub.verify(kMessage, sig, HashAlgorithm::sha512).ok());
    CHECK_FALSE(pub.verify(kMessage, sig, HashAlgorithm::sha224).ok());
  }
}

TEST_CASE("Ed25519 is pure: the hash argument is ignored") {
  PublicKey pub = load("ED25519");
  std::string sig = cached_key("ED25519").sign(kMessage, nullptr);
  CHECK(pub.verify(kMessage, sig, HashAlgorithm::sha512).ok());
}

TEST_CASE("RSA signatures are PKCS#1 v1.5, not PSS") {
  PublicKey pub = load("RSA2048");
  const auto& k = cached_key("RSA2048");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  REQUIRE(EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha256(), nullptr, k.pkey.get()) == 1);
  REQUIRE(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1);
  size_t len = 0;
  const auto* m = reinterpret_cast<const unsigned char*>(kMessage.data());
  REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &len, m, kMessage.size()) == 1);
  std::string pss(len, '\0');
  REQUIRE(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(pss.data()), &len, m,
                         kMessage.size()) == 1);
  pss.resize(len);
  CHECK_FALSE(pub.verify(kMessage, pss, HashAlgorithm::sha256).ok());
}

TEST_CASE("malformed signatures are rejected cleanly") {
  Kind kind = any_kind();
  INFO(kind.name);
  PublicKey pub = load(kind.name);
  std::string sig = cached_key(kind.name).sign(kMessage, md_for(kind));
  auto bad = GENERATE_COPY(std::string(), std::string(1, '\0'), sig + std::string(1, '\0'),
                           sig.substr(0, sig.size() - 1), std::string(5000, 'A'));
  auto st = pub.verify(kMessage, bad, kind.hash);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == Errc::verification);
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("verify on a default-constructed key fails closed") {
  PublicKey empty;
  CHECK_FALSE(empty.verify("m", "s").ok());
}

TEST_CASE("PEM: accepted shapes") {
  const std::string& pem = cached_key("P-256").public_pem();
  SECTION("surrounding whitespace") {
    auto k = PublicKey::from_pem("\n  \t" + pem + "\n\n  ");
    REQUIRE(k.ok());
    CHECK(k->spki_der() == cached_key("P-256").spki_der());
  }
  SECTION("CRLF line endings") {
    std::string crlf;
    for (char c : pem) {
      if (c == '\n') crlf += '\r';
      crlf += c;
    }
    CHECK(PublicKey::from_pem(crlf).ok());
  }
  SECTION("RSA PUBLIC KEY (PKCS#1) gives the same key as PUBLIC KEY") {
    const auto& rsa = cached_key("RSA2048");
    auto k = PublicKey::from_pem(to_pem("RSA PUBLIC KEY", rsa.pkcs1_der()));
    REQUIRE(k.ok());
    CHECK(k->type() == KeyType::rsa);
    CHECK(k->spki_der() == rsa.spki_der());
    std::string sig = rsa.sign(kMessage, EVP_sha256());
    CHECK(k->verify(kMessage, sig).ok());
  }
  SECTION("DER") {
    auto k = PublicKey::from_der(cached_key("ED25519").spki_der());
    REQUIRE(k.ok());
    CHECK(k->type() == KeyType::ed25519);
  }
}

TEST_CASE("PEM: rejected shapes") {
  const std::string& pem = cached_key("P-256").public_pem();
  std::string body = pem.substr(pem.find('\n') + 1);
  body = body.substr(0, body.find("-----END"));
  auto [name, input] = GENERATE_COPY(table<std::string, std::string>({
      {"empty", ""},
      {"whitespace only", " \n"},
      {"junk after", pem + "junk\n"},
      {"junk before", "junk\n" + pem},
      {"two blocks", pem + pem},
      {"two blocks of different keys", pem + cached_key("P-384").public_pem()},
      {"truncated base64", "-----BEGIN PUBLIC KEY-----\n" + body.substr(0, body.size() - 6) +
                               "\n-----END PUBLIC KEY-----\n"},
      {"base64 of a truncated key",
       to_pem("PUBLIC KEY", cached_key("P-256").spki_der().substr(0, 60))},
      {"bad base64 character",
       "-----BEGIN PUBLIC KEY-----\n!" + body.substr(1) + "-----END PUBLIC KEY-----\n"},
      {"no END line", "-----BEGIN PUBLIC KEY-----\n" + body},
      {"mismatched END label", "-----BEGIN PUBLIC KEY-----\n" + body + "-----END KEY-----\n"},
      {"wrong label", "-----BEGIN FOO-----\n" + body + "-----END FOO-----\n"},
      {"certificate label", "-----BEGIN CERTIFICATE-----\n" + body + "-----END CERTIFICATE-----\n"},
      {"PEM headers", "-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n\n" + body +
                          "-----END PUBLIC KEY-----\n"},
      {"raw DER given as PEM", cached_key("P-256").spki_der()},
      {"SPKI inside RSA PUBLIC KEY label",
       to_pem("RSA PUBLIC KEY", cached_key("RSA2048").spki_der())},
      {"PKCS#1 inside PUBLIC KEY label", to_pem("PUBLIC KEY", cached_key("RSA2048").pkcs1_der())},
      {"DER with trailing byte", to_pem("PUBLIC KEY", cached_key("P-256").spki_der() + "x")},
  }));
  INFO(name);
  auto k = PublicKey::from_pem(input);
  CHECK_FALSE(k.ok());
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("PEM: headers inside a public key block are named") {
  auto k = PublicKey::from_pem(
      "-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n\nMFkw\n"
      "-----END PUBLIC KEY-----\n");
  REQUIRE_FALSE(k.ok());
  CHECK_THAT(k.error().message, Catch::Contains("headers"));
}

TEST_CASE("PEM: a private key gets a clear message") {
  auto input = GENERATE(as<std::string>{}, cached_key("P-256").private_pem(),
                        cached_key("ED25519").private_pem(),
                        cached_key("P-256").public_pem() + cached_key("P-256").private_pem(),
                        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n",
                        "-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\neyJrZGYiOnt9fQ==\n");
  auto k = PublicKey::from_pem(input);
  REQUIRE_FALSE(k.ok());
  CHECK(k.error().message == "a private key was given where a public key is expected");
}

TEST_CASE("unsupported curves and algorithms are rejected") {
  auto kind = GENERATE(as<std::string>{}, "secp256k1", "P-224", "brainpoolP256r1", "ED448");
  INFO(kind);
  auto k = PublicKey::from_pem(cached_key(kind).public_pem());
  REQUIRE_FALSE(k.ok());
  CHECK(k.error().code == Errc::unsupported);
  CHECK(ERR_peek_error() == 0);
  CHECK_FALSE(PublicKey::from_der(cached_key(kind).spki_der()).ok());
}

TEST_CASE("EC keys with explicit curve parameters are rejected") {
  // P-256 written with its full parameters instead of the named-curve OID.
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr), EVP_PKEY_CTX_free);
  REQUIRE(ctx);
  REQUIRE(EVP_PKEY_keygen_init(ctx.get()) == 1);
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>("P-256"), 0),
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, const_cast<char*>("explicit"),
                                       0),
      OSSL_PARAM_construct_end()};
  REQUIRE(EVP_PKEY_CTX_set_params(ctx.get(), params) == 1);
  EVP_PKEY* raw = nullptr;
  REQUIRE(EVP_PKEY_generate(ctx.get(), &raw) == 1);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(raw, EVP_PKEY_free);
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(pkey.get(), &der);
  REQUIRE(len > 100);  // the parameters make it much longer than the 91-byte named form
  std::string spki(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  auto k = PublicKey::from_der(spki);
  REQUIRE_FALSE(k.ok());
  CHECK(k.error().code == Errc::unsupported);
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("RSA keys below 2048 bits are rejected") {
  auto k = PublicKey::from_pem(cached_key("RSA1024").public_pem());
  REQUIRE_FALSE(k.ok());
  CHECK(k.error().code == Errc::unsupported);
  CHECK(k.error().message.find("1024") != std::string::npos);
  auto k1 = PublicKey::from_pem(to_pem("RSA PUBLIC KEY", cached_key("RSA1024").pkcs1_der()));
  CHECK_FALSE(k1.ok());
}

TEST_CASE("EC points off the curve or at infinity are rejected") {
  // P-256 SPKI whose BIT STRING holds the single byte 0x00: the point at infinity.
  const std::string infinity(
      "\x30\x19\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d\x03\x01"
      "\x07\x03\x02\x00\x00",
      27);
  auto inf = PublicKey::from_der(infinity);
  REQUIRE_FALSE(inf.ok());
  CHECK(inf.error().code == Errc::parse_error);
  CHECK_THAT(inf.error().message, Catch::Contains("not a valid point"));
  // Last byte of Y changed: the point is no longer on the curve.
  std::string der = cached_key("P-256").spki_der();
  CHECK_FALSE(PublicKey::from_der(flip_bit(der, der.size() - 1)).ok());
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("hash algorithm names") {
  auto [name, h] = GENERATE(table<std::string, HashAlgorithm>({{"sha224", HashAlgorithm::sha224},
                                                               {"sha256", HashAlgorithm::sha256},
                                                               {"sha384", HashAlgorithm::sha384},
                                                               {"sha512", HashAlgorithm::sha512}}));
  auto p = parse_hash_algorithm(name);
  REQUIRE(p.ok());
  CHECK(*p == h);
  CHECK(std::string(hash_name(h)) == name);
  auto bad = GENERATE(as<std::string>{}, "", "SHA256", "sha-256", "md5", "sha1", "sha256 ");
  CHECK_FALSE(parse_hash_algorithm(bad).ok());
}

TEST_CASE("sha256 matches the FIPS 180-2 vector") {
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256("").size() == 32);
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
