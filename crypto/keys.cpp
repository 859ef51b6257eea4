// crypto/keys.cpp: PEM/DER public key loading and raw signature checks with OpenSSL 3 EVP.
#include "crypto/keys.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <climits>
#include <cstring>
#include <utility>
#include <vector>

#include "common/encoding.hpp"
#include "crypto/detail/ossl.hpp"

namespace sigil::crypto {

namespace {

using detail::MdCtxPtr;
using detail::openssl_error;
using detail::PkeyCtxPtr;
using detail::PkeyPtr;

// RSA moduli outside [2048, 16384] bits are refused: below is weak, above is OpenSSL's
// own verification limit (and an easy way to make each check expensive).
constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 16384;
// A public key PEM is a few kilobytes at most; refuse megabytes of text early.
constexpr size_t kMaxPemBytes = 64 * 1024;

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool only_space(std::string_view s) noexcept {
  for (char c : s) {
    if (!is_space(c)) return false;
  }
  return true;
}

const EVP_MD* evp_md(HashAlgorithm h) noexcept {
  switch (h) {
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

// Names the curve of an EC key; only the three NIST curves cosign supports are accepted.
Result<KeyType> ec_key_type(EVP_PKEY* pkey) {
  char name[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name), &len) !=
      1) {
    return openssl_error(Errc::unsupported,
                         "EC public key has no named curve (explicit parameters are not "
                         "supported); use P-256, P-384 or P-521");
  }
  std::string_view curve(name, strnlen(name, sizeof(name)));
  KeyType t;
  if (curve == "prime256v1" || curve == "P-256") {
    t = KeyType::ecdsa_p256;
  } else if (curve == "secp384r1" || curve == "P-384") {
    t = KeyType::ecdsa_p384;
  } else if (curve == "secp521r1" || curve == "P-521") {
    t = KeyType::ecdsa_p521;
  } else {
    return openssl_error(Errc::unsupported, "EC public key on unsupported curve " +
                                                std::string(curve) + "; use P-256, P-384 or P-521");
  }
  // Explicit curve parameters that happen to equal a named curve are resolved to its name by
  // OpenSSL; Go (and so cosign) refuses them, and their SPKI would not compare equal to the
  // named form, so refuse them too.
  char encoding[32] = {0};
  if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_EC_ENCODING, encoding, sizeof(encoding),
                                     &len) != 1 ||
      std::string_view(encoding, strnlen(encoding, sizeof(encoding))) != "named_curve") {
    return openssl_error(Errc::unsupported,
                         "EC public key uses explicit curve parameters; only named curves "
                         "(P-256, P-384, P-521) are supported");
  }
  // The decoder refuses points off the curve but accepts the point at infinity; the quick
  // public check refuses both (the NIST curves have cofactor 1, so no subgroup check is needed).
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
  if (!ctx) return openssl_error(Errc::internal, "EVP_PKEY_CTX_new_from_pkey failed");
  if (EVP_PKEY_public_check_quick(ctx.get()) != 1) {
    return openssl_error(Errc::parse_error,
                         "EC public key is not a valid point on " + std::string(curve));
  }
  return t;
}

// Classifies a decoded key and applies the policy on what sigil accepts.
Result<KeyType> classify(EVP_PKEY* pkey) {
  switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_EC:
      return ec_key_type(pkey);
    case EVP_PKEY_ED25519:
      return KeyType::ed25519;
    case EVP_PKEY_RSA: {
      int bits = EVP_PKEY_get_bits(pkey);
      if (bits < kMinRsaBits) {
        return openssl_error(Errc::unsupported, "RSA public key of " + std::to_string(bits) +
                                                    " bits is too small (minimum 2048)");
      }
      if (bits > kMaxRsaBits) {
        return openssl_error(Errc::unsupported, "RSA public key of " + std::to_string(bits) +
                                                    " bits is too large (maximum 16384)");
      }
      // The public exponent, as Go's crypto/rsa (and so cosign) takes it: odd, 3 to 2^31 - 1.
      // Verification costs one multiplication per bit of it: a 2041-bit exponent made one
      // RSA-2048 check cost 1.3 ms, 70 times a normal one, past what the check budget prices.
      BIGNUM* e = nullptr;
      if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1 || e == nullptr) {
        return openssl_error(Errc::parse_error, "RSA public key without a readable exponent");
      }
      const int e_bits = BN_num_bits(e);
      const bool odd = BN_is_odd(e) == 1;
      const bool small = BN_is_word(e, 1) == 1;
      BN_free(e);
      if (e_bits > 31 || !odd || small) {
        return openssl_error(Errc::unsupported,
                             "RSA public exponent of " + std::to_string(e_bits) +
                                 " bits is not accepted (an odd number from 3 to 2^31 - 1)");
      }
      return KeyType::rsa;
    }
    case EVP_PKEY_RSA_PSS:
      return openssl_error(Errc::unsupported,
                           "RSA-PSS-restricted public keys (OID rsassaPss) are not supported");
    default: {
      const char* name = EVP_PKEY_get0_type_name(pkey);
      return openssl_error(Errc::unsupported, std::string("unsupported public key algorithm ") +
                                                  (name ? name : "(unknown)") +
                                                  "; use ECDSA P-256/P-384/P-521, Ed25519 or RSA");
    }
  }
}

struct PemBlock {
  std::string label;
  std::string_view body;
};

// Finds the next "-----BEGIN <label>-----" at or after pos. Returns npos when none.
size_t find_begin(std::string_view text, size_t pos) {
  return text.find("-----BEGIN ", pos);
}

}  // namespace

Result<HashAlgorithm> parse_hash_algorithm(std::string_view name) {
  if (name == "sha224") return HashAlgorithm::sha224;
  if (name == "sha256") return HashAlgorithm::sha256;
  if (name == "sha384") return HashAlgorithm::sha384;
  if (name == "sha512") return HashAlgorithm::sha512;
  return make_error(Errc::invalid_argument, "unknown hash algorithm \"" +
                                                std::string(name.substr(0, 32)) +
                                                "\"; expected sha224, sha256, sha384 or sha512");
}

const char* hash_name(HashAlgorithm h) noexcept {
  switch (h) {
    case HashAlgorithm::sha224:
      return "sha224";
    case HashAlgorithm::sha256:
      return "sha256";
    case HashAlgorithm::sha384:
      return "sha384";
    case HashAlgorithm::sha512:
      return "sha512";
  }
  return "unknown";
}

const char* key_type_name(KeyType t) noexcept {
  switch (t) {
    case KeyType::ecdsa_p256:
      return "ecdsa-p256";
    case KeyType::ecdsa_p384:
      return "ecdsa-p384";
    case KeyType::ecdsa_p521:
      return "ecdsa-p521";
    case KeyType::ed25519:
      return "ed25519";
    case KeyType::rsa:
      return "rsa";
  }
  return "unknown";
}

HashAlgorithm default_hash_for(KeyType t) noexcept {
  switch (t) {
    case KeyType::ecdsa_p384:
      return HashAlgorithm::sha384;
    case KeyType::ecdsa_p521:
      return HashAlgorithm::sha512;
    default:
      return HashAlgorithm::sha256;
  }
}

namespace {

// Wraps a decoded key: classify it, re-encode its SubjectPublicKeyInfo, take ownership.
Result<std::pair<PkeyPtr, KeyType>> adopt(PkeyPtr pkey) {
  auto type = classify(pkey.get());
  if (!type) return std::move(type).error();
  return std::make_pair(std::move(pkey), *type);
}

Result<std::string> encode_spki(EVP_PKEY* pkey) {
  int len = i2d_PUBKEY(pkey, nullptr);
  if (len <= 0) return openssl_error(Errc::internal, "cannot encode public key as SPKI DER");
  std::string out(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  if (i2d_PUBKEY(pkey, &p) != len) {
    return openssl_error(Errc::internal, "cannot encode public key as SPKI DER");
  }
  return out;
}

// Decodes DER with the given decoder, requiring it to consume every byte.
template <class Decode>
Result<PkeyPtr> decode_all(std::string_view der, Decode decode, const char* what) {
  if (der.empty()) return make_error(Errc::parse_error, std::string(what) + " is empty");
  if (der.size() > static_cast<size_t>(LONG_MAX)) {
    return make_error(Errc::too_large, std::string(what) + " is too large");
  }
  const auto* begin = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* p = begin;
  PkeyPtr pkey(decode(&p, static_cast<long>(der.size())));
  if (!pkey) return openssl_error(Errc::parse_error, std::string(what) + " does not parse");
  if (p != begin + der.size()) {
    return openssl_error(Errc::parse_error, std::string(what) + " has trailing bytes");
  }
  return pkey;
}

struct KeyParts {
  std::shared_ptr<void> pkey;
  KeyType type;
  std::string spki_der;
};

Result<KeyParts> finish(Result<PkeyPtr> decoded) {
  if (!decoded) return std::move(decoded).error();
  auto adopted = adopt(std::move(*decoded));
  if (!adopted) return std::move(adopted).error();
  auto der = encode_spki(adopted->first.get());
  if (!der) return std::move(der).error();
  EVP_PKEY* raw = adopted->first.release();
  std::shared_ptr<void> shared(raw, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); });
  return KeyParts{std::move(shared), adopted->second, std::move(*der)};
}

}  // namespace

int PublicKey::bits() const noexcept {
  return pkey_ ? EVP_PKEY_get_bits(static_cast<EVP_PKEY*>(pkey_.get())) : 0;
}

PublicKey PublicKey::make(std::shared_ptr<void> pkey, KeyType type, std::string spki_der) {
  PublicKey k;
  k.pkey_ = std::move(pkey);
  k.type_ = type;
  k.spki_der_ = std::move(spki_der);
  return k;
}

Result<PublicKey> PublicKey::from_der(std::string_view spki_der) {
  auto decoded = decode_all(
      spki_der, [](const unsigned char** p, long n) { return d2i_PUBKEY(nullptr, p, n); },
      "public key DER (SubjectPublicKeyInfo)");
  auto parts = finish(std::move(decoded));
  if (!parts) return std::move(parts).error();
  return make(std::move(parts->pkey), parts->type, std::move(parts->spki_der));
}

Result<PublicKey> PublicKey::from_native(const void* evp_pkey, std::string spki_der) {
  auto* pkey = const_cast<EVP_PKEY*>(static_cast<const EVP_PKEY*>(evp_pkey));
  if (pkey == nullptr) return make_error(Errc::internal, "from_native without a key");
  auto type = classify(pkey);
  if (!type) return std::move(type).error();
  if (EVP_PKEY_up_ref(pkey) != 1) return openssl_error(Errc::internal, "EVP_PKEY_up_ref failed");
  std::shared_ptr<void> shared(pkey, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); });
  return make(std::move(shared), *type, std::move(spki_der));
}

Result<PublicKey> PublicKey::from_pem(std::string_view pem) {
  if (pem.size() > kMaxPemBytes) {
    return make_error(Errc::too_large, "public key PEM is larger than 64 KiB");
  }
  // Collect every block first so a private key anywhere gets the clear message.
  std::vector<PemBlock> blocks;
  size_t pos = 0;
  size_t first_begin = find_begin(pem, 0);
  if (first_begin == std::string_view::npos) {
    return make_error(Errc::parse_error,
                      "no PEM block found (expected -----BEGIN PUBLIC KEY-----)");
  }
  if (!only_space(pem.substr(0, first_begin))) {
    return make_error(Errc::parse_error, "unexpected text before the PEM block");
  }
  pos = first_begin;
  while (pos < pem.size()) {
    size_t begin = find_begin(pem, pos);
    if (begin == std::string_view::npos) {
      if (!only_space(pem.substr(pos))) {
        return make_error(Errc::parse_error, "unexpected text after the PEM block");
      }
      break;
    }
    if (!only_space(pem.substr(pos, begin - pos))) {
      return make_error(Errc::parse_error, "unexpected text between PEM blocks");
    }
    size_t label_start = begin + std::strlen("-----BEGIN ");
    size_t label_end = pem.find("-----", label_start);
    if (label_end == std::string_view::npos) {
      return make_error(Errc::parse_error, "malformed PEM BEGIN line");
    }
    std::string_view label = pem.substr(label_start, label_end - label_start);
    if (label.find('\n') != std::string_view::npos || label.find('\r') != std::string_view::npos) {
      return make_error(Errc::parse_error, "malformed PEM BEGIN line");
    }
    size_t body_start = label_end + 5;
    std::string end_line = "-----END " + std::string(label) + "-----";
    size_t end = pem.find(end_line, body_start);
    if (end == std::string_view::npos) {
      // A label mentioning PRIVATE KEY still gets the clear message, even when truncated.
      if (label.find("PRIVATE KEY") != std::string_view::npos) {
        return make_error(Errc::invalid_argument,
                          "a private key was given where a public key is expected");
      }
      return make_error(Errc::parse_error,
                        "PEM block \"" + std::string(label.substr(0, 40)) + "\" has no END line");
    }
    blocks.push_back(PemBlock{std::string(label), pem.substr(body_start, end - body_start)});
    pos = end + end_line.size();
  }
  for (const auto& b : blocks) {
    if (b.label.find("PRIVATE KEY") != std::string::npos) {
      return make_error(Errc::invalid_argument,
                        "a private key was given where a public key is expected");
    }
  }
  if (blocks.size() != 1) {
    return make_error(Errc::parse_error,
                      "expected exactly one PEM block, found " + std::to_string(blocks.size()));
  }
  const PemBlock& block = blocks.front();
  if (block.label == "CERTIFICATE") {
    return make_error(Errc::invalid_argument,
                      "a certificate was given where a public key is expected");
  }
  if (block.label != "PUBLIC KEY" && block.label != "RSA PUBLIC KEY") {
    return make_error(Errc::parse_error,
                      "PEM block type \"" + block.label.substr(0, 40) + "\" is not PUBLIC KEY");
  }
  // The body must be the base64 text alone: PEM headers (Proc-Type etc.) are not allowed.
  if (block.body.find(':') != std::string_view::npos) {
    return make_error(Errc::parse_error, "PEM headers are not allowed in a public key block");
  }
  auto der = base64_decode(block.body);
  if (!der) return make_error(Errc::parse_error, "PEM body is not valid base64");
  if (block.label == "PUBLIC KEY") return from_der(*der);
  return from_pkcs1_der(*der);
}

Result<PublicKey> PublicKey::from_pkcs1_der(std::string_view der) {
  auto decoded = decode_all(
      der,
      [](const unsigned char** p, long n) { return d2i_PublicKey(EVP_PKEY_RSA, nullptr, p, n); },
      "RSA public key DER (PKCS#1)");
  auto parts = finish(std::move(decoded));
  if (!parts) return std::move(parts).error();
  return make(std::move(parts->pkey), parts->type, std::move(parts->spki_der));
}

Status PublicKey::verify(std::string_view message, std::string_view signature,
                         HashAlgorithm hash) const {
  auto* pkey = static_cast<EVP_PKEY*>(pkey_.get());
  if (pkey == nullptr) return make_error(Errc::internal, "verify called on an empty PublicKey");
  if (signature.empty()) return make_error(Errc::verification, "signature is empty");
  if (signature.size() > 4096) {
    return make_error(Errc::verification, "signature is implausibly long");
  }
  const EVP_MD* md = nullptr;
  if (type_ != KeyType::ed25519) {
    md = evp_md(hash);
    if (md == nullptr) return make_error(Errc::invalid_argument, "unknown hash algorithm");
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return openssl_error(Errc::internal, "EVP_MD_CTX_new failed");
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, pkey) != 1) {
    return openssl_error(Errc::internal, "EVP_DigestVerifyInit failed");
  }
  if (type_ == KeyType::rsa) {
    // cosign's RSA default: PKCS#1 v1.5. Set explicitly rather than rely on the default.
    if (pctx == nullptr || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0) {
      return openssl_error(Errc::internal, "cannot select RSA PKCS#1 v1.5 padding");
    }
  }
  int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(),
                            reinterpret_cast<const unsigned char*>(message.data()), message.size());
  if (rc != 1) {
    return openssl_error(Errc::verification,
                         std::string("signature does not verify (") + key_type_name(type_) +
                             (md ? std::string(", ") + hash_name(hash) : "") + ")");
  }
  return {};
}

Status PublicKey::verify_prehashed(std::string_view digest, std::string_view signature,
                                   HashAlgorithm hash) const {
  auto* pkey = static_cast<EVP_PKEY*>(pkey_.get());
  if (pkey == nullptr) {
    return make_error(Errc::internal, "verify_prehashed called on an empty PublicKey");
  }
  if (type_ == KeyType::ed25519) {
    return make_error(Errc::unsupported,
                      "Ed25519 signs the whole message; it cannot be verified against a digest");
  }
  const EVP_MD* md = evp_md(hash);
  if (md == nullptr) return make_error(Errc::invalid_argument, "unknown hash algorithm");
  if (digest.size() != static_cast<size_t>(EVP_MD_get_size(md))) {
    return make_error(Errc::invalid_argument, "digest of " + std::to_string(digest.size()) +
                                                  " bytes is not a " + hash_name(hash) + " digest");
  }
  if (signature.empty()) return make_error(Errc::verification, "signature is empty");
  if (signature.size() > 4096) {
    return make_error(Errc::verification, "signature is implausibly long");
  }
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
  if (!ctx) return openssl_error(Errc::internal, "EVP_PKEY_CTX_new_from_pkey failed");
  if (EVP_PKEY_verify_init(ctx.get()) != 1) {
    return openssl_error(Errc::internal, "EVP_PKEY_verify_init failed");
  }
  if (type_ == KeyType::rsa && EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) <= 0) {
    return openssl_error(Errc::internal, "cannot select RSA PKCS#1 v1.5 padding");
  }
  // The digest algorithm matters for RSA (it is inside the DigestInfo) and fixes the expected
  // digest length for ECDSA.
  if (EVP_PKEY_CTX_set_signature_md(ctx.get(), md) <= 0) {
    return openssl_error(Errc::internal, "cannot set the signature digest");
  }
  int rc = EVP_PKEY_verify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                           signature.size(), reinterpret_cast<const unsigned char*>(digest.data()),
                           digest.size());
  if (rc != 1) {
    return openssl_error(Errc::verification, std::string("signature does not verify (") +
                                                 key_type_name(type_) + ", " + hash_name(hash) +
                                                 ", prehashed)");
  }
  return {};
}

std::string sha256(std::string_view bytes) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  if (SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), out) == nullptr) {
    // Cannot happen with the default provider; an empty digest never equals a real one, so
    // every comparison against it fails closed.
    ERR_clear_error();
    return {};
  }
  return std::string(reinterpret_cast<const char*>(out), sizeof(out));
}

size_t digest_size(HashAlgorithm h) noexcept {
  switch (h) {
    case HashAlgorithm::sha224:
      return 28;
    case HashAlgorithm::sha256:
      return 32;
    case HashAlgorithm::sha384:
      return 48;
    case HashAlgorithm::sha512:
      return 64;
  }
  return 0;
}

std::string digest(HashAlgorithm h, std::string_view bytes) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const EVP_MD* md = evp_md(h);
  if (md == nullptr || EVP_Digest(bytes.data(), bytes.size(), out, &len, md, nullptr) != 1) {
    ERR_clear_error();
    return {};  // as sha256(): an empty digest never equals a real one
  }
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string sha256_hex(std::string_view bytes) {
  std::string raw = sha256(bytes);
  if (raw.empty()) return {};
  return hex_encode(raw);
}

}  // namespace sigil::crypto
