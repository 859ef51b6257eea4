// Test helpers: JWKs of test keys, as Key Vault writes them, and unsigned JWTs.
#pragma once

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "common/encoding.hpp"
#include "pki.hpp"

namespace sigil::azure::testing {

inline std::string b64url(const std::string& s) {
  std::string b = base64_encode(s);
  for (char& c : b) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!b.empty() && b.back() == '=') b.pop_back();
  return b;
}

inline std::string unsigned_jwt(const std::string& claims_json) {
  return b64url(R"({"typ":"JWT","alg":"none"})") + "." + b64url(claims_json) + ".";
}

// {"kty":"EC","crv":..,"x":..,"y":..} or {"kty":"RSA","n":..,"e":..} of a test key.
inline std::string jwk_of(const sigil::test::KeyPair& k, const std::string& crv = "") {
  EVP_PKEY* p = k.pkey.get();
  if (EVP_PKEY_is_a(p, "RSA")) {
    BIGNUM* n = nullptr;
    BIGNUM* e = nullptr;
    if (!EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_RSA_N, &n) ||
        !EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_RSA_E, &e))
      throw std::runtime_error("RSA params");
    std::string nb(static_cast<size_t>(BN_num_bytes(n)), '\0');
    std::string eb(static_cast<size_t>(BN_num_bytes(e)), '\0');
    BN_bn2bin(n, reinterpret_cast<unsigned char*>(nb.data()));
    BN_bn2bin(e, reinterpret_cast<unsigned char*>(eb.data()));
    BN_free(n);
    BN_free(e);
    return R"({"kty":"RSA","n":")" + b64url(nb) + R"(","e":")" + b64url(eb) + R"("})";
  }
  size_t len = 0;
  EVP_PKEY_get_octet_string_param(p, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0, &len);
  std::string pt(len, '\0');
  if (!EVP_PKEY_get_octet_string_param(p, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                       reinterpret_cast<unsigned char*>(pt.data()), len, &len) ||
      pt.empty() || pt[0] != 0x04)
    throw std::runtime_error("EC point");
  const size_t half = (pt.size() - 1) / 2;
  return R"({"kty":"EC","crv":")" + crv + R"(","x":")" + b64url(pt.substr(1, half)) + R"(","y":")" +
         b64url(pt.substr(1 + half)) + R"("})";
}

}  // namespace sigil::azure::testing
