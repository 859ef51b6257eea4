// PublicKey::verify_prehashed: signatures checked against a digest (sigstore messageSignature).
#include <catch2/catch.hpp>

#include <openssl/evp.h>

#include <string>

#include "crypto/keys.hpp"
#include "sigstore_pki.hpp"

using namespace sigil;
using namespace sigil::crypto;

namespace {

std::string digest(std::string_view message, const EVP_MD* md) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  REQUIRE(EVP_Digest(message.data(), message.size(), out, &len, md, nullptr) == 1);
  return std::string(reinterpret_cast<const char*>(out), len);
}

struct Kind {
  const char* key;
  HashAlgorithm hash;
  const EVP_MD* (*md)();
};

const std::string kMessage = R"({"critical":{"type":"cosign container image signature"}})";

}  // namespace

TEST_CASE("verify_prehashed accepts ECDSA and RSA signatures over the digest") {
  auto k = GENERATE(Kind{"P-256", HashAlgorithm::sha256, EVP_sha256},
                    Kind{"P-384", HashAlgorithm::sha384, EVP_sha384},
                    Kind{"P-521", HashAlgorithm::sha512, EVP_sha512},
                    Kind{"P-256", HashAlgorithm::sha384, EVP_sha384},
                    Kind{"RSA2048", HashAlgorithm::sha256, EVP_sha256},
                    Kind{"RSA2048", HashAlgorithm::sha512, EVP_sha512});
  INFO(k.key << " " << hash_name(k.hash));
  const auto& key = sigil::test::cached_key(k.key);
  PublicKey pub = key.public_key();
  std::string d = digest(kMessage, k.md());

  SECTION("a signature made over the digest") {
    std::string sig = key.sign_digest(d, k.md());
    CHECK(pub.verify_prehashed(d, sig, k.hash).ok());
  }
  SECTION("agrees with verify() for a signature over the message") {
    std::string sig = key.sign(kMessage, k.md());
    CHECK(pub.verify(kMessage, sig, k.hash).ok());
    CHECK(pub.verify_prehashed(d, sig, k.hash).ok());
  }
  SECTION("another digest fails") {
    std::string sig = key.sign_digest(d, k.md());
    std::string other = digest(kMessage + " ", k.md());
    auto r = pub.verify_prehashed(other, sig, k.hash);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::verification);
  }
  SECTION("a flipped signature bit fails") {
    std::string sig = key.sign_digest(d, k.md());
    sig[sig.size() / 2] = static_cast<char>(sig[sig.size() / 2] ^ 0x10);
    CHECK_FALSE(pub.verify_prehashed(d, sig, k.hash).ok());
  }
  SECTION("a digest of the wrong length is refused") {
    auto r = pub.verify_prehashed(d.substr(1), key.sign_digest(d, k.md()), k.hash);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
  }
  SECTION("an empty signature fails") {
    CHECK_FALSE(pub.verify_prehashed(d, "", k.hash).ok());
  }
}

TEST_CASE("verify_prehashed: RSA binds the hash algorithm named in the DigestInfo") {
  const auto& key = sigil::test::cached_key("RSA2048");
  PublicKey pub = key.public_key();
  std::string d256 = digest(kMessage, EVP_sha256());
  std::string sig = key.sign_digest(d256, EVP_sha256());
  // Same 32 bytes presented as a SHA-512/256-length digest of another algorithm would be a
  // different DigestInfo; SHA-224 has another length, so use the SHA-256 bytes as "sha256" only.
  CHECK(pub.verify_prehashed(d256, sig, HashAlgorithm::sha256).ok());
  std::string d384 = digest(kMessage, EVP_sha384());
  CHECK_FALSE(
      pub.verify_prehashed(d384, key.sign_digest(d256, EVP_sha256()), HashAlgorithm::sha384).ok());
}

TEST_CASE("verify_prehashed refuses Ed25519") {
  const auto& key = sigil::test::cached_key("ED25519");
  PublicKey pub = key.public_key();
  std::string d = digest(kMessage, EVP_sha256());
  auto r = pub.verify_prehashed(d, key.sign(kMessage), HashAlgorithm::sha256);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unsupported);
}

TEST_CASE("verify_prehashed on an empty key fails cleanly") {
  PublicKey empty;
  auto r = empty.verify_prehashed(std::string(32, 'x'), "sig", HashAlgorithm::sha256);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::internal);
}
