// crypto/keys.hpp: public keys and signature checks (ECDSA P-256/384/521, Ed25519, RSA).
//
// Role: load PEM/DER public keys from untrusted text and verify raw signatures over messages
// the way cosign does (ECDSA: ASN.1 DER over the hash; Ed25519: pure; RSA: PKCS#1 v1.5, or
// PSS when asked). Pure: OpenSSL and common only; no I/O, no clock, no Asio. Every OpenSSL
// return value is checked and its error queue cleared; failures are values, never exceptions.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace sigil::crypto {

enum class HashAlgorithm { sha224, sha256, sha384, sha512 };

// "sha224" | "sha256" | "sha384" | "sha512" (policy-controller's key.hashAlgorithm values).
Result<HashAlgorithm> parse_hash_algorithm(std::string_view name);
const char* hash_name(HashAlgorithm h) noexcept;

enum class KeyType { ecdsa_p256, ecdsa_p384, ecdsa_p521, ed25519, rsa };
const char* key_type_name(KeyType t) noexcept;

class PublicKey {
 public:
  // One "-----BEGIN PUBLIC KEY-----" block (PKIX SubjectPublicKeyInfo); also accepts
  // "RSA PUBLIC KEY" (PKCS#1). Rejects unsupported curves, RSA < 2048 bits, trailing junk.
  static Result<PublicKey> from_pem(std::string_view pem);
  static Result<PublicKey> from_der(std::string_view spki_der);
  // A DER PKCS#1 RSAPublicKey (RFC 8017 A.1.1), as trusted roots encode PKCS1_RSA_PKCS1V5 keys.
  static Result<PublicKey> from_pkcs1_der(std::string_view der);
  // A key OpenSSL already decoded (an EVP_PKEY*, shared by taking a reference), such as a parsed
  // certificate's, with its SubjectPublicKeyInfo DER: the same checks as from_der (supported
  // type, curve, RSA size) without decoding it again (OpenSSL 3.0's decoder costs as much as a
  // P-256 signature check).
  static Result<PublicKey> from_native(const void* evp_pkey, std::string spki_der);

  KeyType type() const noexcept { return type_; }
  // The key's size in bits (the modulus for RSA, the field for ECDSA, 256 for Ed25519).
  int bits() const noexcept;
  // SubjectPublicKeyInfo DER, for comparing keys and computing key ids.
  const std::string& spki_der() const noexcept { return spki_der_; }

  // Verifies sig over message. hash is ignored for Ed25519 (pure). Returns
  // Errc::verification when the signature does not check.
  Status verify(std::string_view message, std::string_view signature,
                HashAlgorithm hash = HashAlgorithm::sha256) const;

  // Verifies sig over a message of which only the hash is known (sigstore messageSignature
  // bundles verified against a digest): ECDSA and RSA PKCS#1 v1.5 only; Ed25519 (pure) cannot
  // and returns Errc::unsupported. digest must have the length of `hash`
  // (Errc::invalid_argument otherwise); for RSA, `hash` is the algorithm the DigestInfo names.
  Status verify_prehashed(std::string_view digest, std::string_view signature,
                          HashAlgorithm hash) const;

  // Opaque OpenSSL handle (EVP_PKEY*), shared and immutable.
  const void* native() const noexcept { return pkey_.get(); }

 private:
  static PublicKey make(std::shared_ptr<void> pkey, KeyType type, std::string spki_der);

  std::shared_ptr<void> pkey_;
  KeyType type_ = KeyType::ecdsa_p256;
  std::string spki_der_;
};

// The default hash cosign uses for a key type: P-384 -> sha384, P-521 -> sha512, else sha256.
HashAlgorithm default_hash_for(KeyType t) noexcept;

// SHA-256 of bytes, raw (32 bytes) or lowercase hex.
std::string sha256(std::string_view bytes);
std::string sha256_hex(std::string_view bytes);
// The raw digest of bytes with h; empty only if OpenSSL fails (so it never equals a real one).
std::string digest(HashAlgorithm h, std::string_view bytes);
// Its length in bytes (SHA-224: 28, SHA-256: 32, SHA-384: 48, SHA-512: 64).
size_t digest_size(HashAlgorithm h) noexcept;

}  // namespace sigil::crypto
