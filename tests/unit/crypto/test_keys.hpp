// Test-only helpers: keys generated at test time with OpenSSL, signatures made with them.
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "common/encoding.hpp"

namespace sigil::crypto::testing {

struct TestKey {
  std::shared_ptr<EVP_PKEY> pkey;
  std::string pub_pem;   // SubjectPublicKeyInfo PEM ("PUBLIC KEY")
  std::string priv_pem;  // PKCS#8 PEM ("PRIVATE KEY")
  std::string spki_der;
};

inline std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

inline EVP_PKEY* keygen(const std::string& kind) {
  if (kind == "RSA2048") return EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
  if (kind == "RSA1024") return EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024});
  if (kind == "ED25519") return EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (kind == "ED448") return EVP_PKEY_Q_keygen(nullptr, nullptr, "ED448");
  return EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", kind.c_str());  // P-256, secp256k1, ...
}

// Generates each kind once per test run (RSA key generation is slow).
inline const TestKey& key(const std::string& kind) {
  static std::map<std::string, TestKey> cache;
  auto it = cache.find(kind);
  if (it != cache.end()) return it->second;
  std::shared_ptr<EVP_PKEY> pkey(keygen(kind), EVP_PKEY_free);
  if (!pkey) throw std::runtime_error("keygen failed for " + kind);
  TestKey k;
  k.pkey = pkey;
  std::unique_ptr<BIO, decltype(&BIO_free)> pub(BIO_new(BIO_s_mem()), BIO_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> priv(BIO_new(BIO_s_mem()), BIO_free);
  if (PEM_write_bio_PUBKEY(pub.get(), pkey.get()) != 1 ||
      PEM_write_bio_PrivateKey(priv.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1) {
    throw std::runtime_error("PEM export failed");
  }
  k.pub_pem = bio_string(pub.get());
  k.priv_pem = bio_string(priv.get());
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(pkey.get(), &der);
  if (len <= 0) throw std::runtime_error("i2d_PUBKEY failed");
  k.spki_der.assign(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return cache.emplace(kind, std::move(k)).first->second;
}

// Signs msg the way cosign does: ECDSA/RSA over md(msg) (RSA PKCS#1 v1.5), Ed25519 pure
// (md == nullptr).
inline std::string sign(const TestKey& k, std::string_view msg, const EVP_MD* md) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, k.pkey.get()) != 1) {
    throw std::runtime_error("EVP_DigestSignInit failed");
  }
  size_t len = 0;
  const auto* m = reinterpret_cast<const unsigned char*>(msg.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, m, msg.size()) != 1) {
    throw std::runtime_error("EVP_DigestSign (size) failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, m,
                     msg.size()) != 1) {
    throw std::runtime_error("EVP_DigestSign failed");
  }
  sig.resize(len);
  return sig;
}

// Wraps DER as PEM with the given label, 64 columns.
inline std::string to_pem(std::string_view label, std::string_view der) {
  std::string b64 = base64_encode(der);
  std::string out = "-----BEGIN " + std::string(label) + "-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) out += b64.substr(i, 64) + "\n";
  out += "-----END " + std::string(label) + "-----\n";
  return out;
}

// PKCS#1 RSAPublicKey DER of an RSA key.
inline std::string pkcs1_der(const TestKey& k) {
  unsigned char* der = nullptr;
  int len = i2d_PublicKey(k.pkey.get(), &der);
  if (len <= 0) throw std::runtime_error("i2d_PublicKey failed");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

inline std::string flip_bit(std::string s, size_t byte, int bit = 0) {
  s.at(byte) = static_cast<char>(s.at(byte) ^ (1 << bit));
  return s;
}

}  // namespace sigil::crypto::testing
