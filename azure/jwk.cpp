// azure/jwk.cpp: azurekms:// references and JWK -> public key (see jwk.hpp).
#include "azure/jwk.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <memory>

#include <nlohmann/json.hpp>

#include "azure/hosts.hpp"
#include "azure/tokens.hpp"
#include "common/encoding.hpp"

namespace sigil::azure {
namespace {

using nlohmann::json;

bool valid_name(std::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return false;
  }
  return true;
}

Error openssl_error(const char* what) {
  ERR_clear_error();
  return make_error(Errc::internal, std::string("OpenSSL failed: ") + what);
}

Result<std::string> b64url_member(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string())
    return make_error(Errc::parse_error, std::string("JWK has no \"") + name + "\"");
  auto raw = base64url_decode(it->get_ref<const std::string&>());
  if (!raw || raw->empty())
    return make_error(Errc::parse_error, std::string("JWK \"") + name + "\" is not base64url");
  return std::move(raw).value();
}

struct BldDel {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamDel {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct CtxDel {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct PkeyDel {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BnDel {
  void operator()(BIGNUM* p) const { BN_free(p); }
};

Result<crypto::PublicKey> from_params(const char* type, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, ParamDel> params(OSSL_PARAM_BLD_to_param(bld));
  if (!params) return openssl_error("OSSL_PARAM_BLD_to_param");
  std::unique_ptr<EVP_PKEY_CTX, CtxDel> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1)
    return openssl_error("EVP_PKEY_fromdata_init");
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1 || !raw) {
    ERR_clear_error();
    return make_error(Errc::parse_error, std::string("JWK is not a valid ") + type + " key");
  }
  std::unique_ptr<EVP_PKEY, PkeyDel> pkey(raw);
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(pkey.get(), &der);
  if (len <= 0 || der == nullptr) {
    ERR_clear_error();
    return make_error(Errc::parse_error, std::string("JWK is not a valid ") + type + " key");
  }
  std::string spki(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  // Through the DER: the same checks as every other key (curve, point on it, RSA size).
  return crypto::PublicKey::from_der(spki);
}

Result<crypto::PublicKey> ec_key(const json& j) {
  auto crv_it = j.find("crv");
  if (crv_it == j.end() || !crv_it->is_string())
    return make_error(Errc::parse_error, "EC JWK has no \"crv\"");
  const std::string crv = crv_it->get<std::string>();
  const char* group = nullptr;
  size_t size = 0;
  if (crv == "P-256") {
    group = "prime256v1";
    size = 32;
  } else if (crv == "P-384") {
    group = "secp384r1";
    size = 48;
  } else if (crv == "P-521") {
    group = "secp521r1";
    size = 66;
  } else {
    return make_error(Errc::unsupported, "EC JWK curve \"" + printable(crv, 20) +
                                             "\" is not supported (P-256, P-384, P-521)");
  }
  auto x = b64url_member(j, "x");
  if (!x) return std::move(x).error();
  auto y = b64url_member(j, "y");
  if (!y) return std::move(y).error();
  // RFC 7518 6.2.1.2: x and y are exactly the field size, leading zeros kept.
  if (x->size() != size || y->size() != size)
    return make_error(Errc::parse_error, "EC JWK coordinates are not " + std::to_string(size) +
                                             " bytes long for " + crv);
  std::string point = "\x04" + *x + *y;
  std::unique_ptr<OSSL_PARAM_BLD, BldDel> bld(OSSL_PARAM_BLD_new());
  if (!bld) return openssl_error("OSSL_PARAM_BLD_new");
  if (OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1)
    return openssl_error("OSSL_PARAM_BLD_push");
  return from_params("EC", bld.get());
}

Result<crypto::PublicKey> rsa_key(const json& j) {
  auto n = b64url_member(j, "n");
  if (!n) return std::move(n).error();
  auto e = b64url_member(j, "e");
  if (!e) return std::move(e).error();
  std::unique_ptr<BIGNUM, BnDel> bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()),
                                                static_cast<int>(n->size()), nullptr));
  std::unique_ptr<BIGNUM, BnDel> bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()),
                                                static_cast<int>(e->size()), nullptr));
  if (!bn_n || !bn_e) return openssl_error("BN_bin2bn");
  std::unique_ptr<OSSL_PARAM_BLD, BldDel> bld(OSSL_PARAM_BLD_new());
  if (!bld) return openssl_error("OSSL_PARAM_BLD_new");
  if (OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1)
    return openssl_error("OSSL_PARAM_BLD_push_BN");
  return from_params("RSA", bld.get());
}

Result<crypto::PublicKey> key_from_json(const json& j) {
  if (!j.is_object()) return make_error(Errc::parse_error, "JWK is not a JSON object");
  auto kty_it = j.find("kty");
  if (kty_it == j.end() || !kty_it->is_string())
    return make_error(Errc::parse_error, "JWK has no \"kty\"");
  const std::string kty = kty_it->get<std::string>();
  if (kty == "EC" || kty == "EC-HSM") return ec_key(j);
  if (kty == "RSA" || kty == "RSA-HSM") return rsa_key(j);
  return make_error(Errc::unsupported,
                    "JWK key type \"" + printable(kty, 20) + "\" is not supported (EC, RSA)");
}

}  // namespace

std::string KmsKeyRef::uri() const {
  return "azurekms://" + vault + "/" + key + (version.empty() ? "" : "/" + version);
}

std::string KmsKeyRef::target() const {
  return "/keys/" + key + (version.empty() ? "" : "/" + version) + "?api-version=7.4";
}

Result<KmsKeyRef> parse_azurekms(std::string_view uri) {
  constexpr std::string_view scheme = "azurekms://";
  if (uri.substr(0, scheme.size()) != scheme) {
    const size_t sep = uri.find("://");
    const std::string name =
        sep == std::string_view::npos ? "(none)" : printable(uri.substr(0, sep), 30);
    return make_error(Errc::unsupported,
                      "KMS scheme \"" + name + "\" is not supported (only azurekms://)");
  }
  std::string_view rest = uri.substr(scheme.size());
  const size_t slash = rest.find('/');
  const auto bad = [&](const std::string& why) {
    return make_error(
        Errc::invalid_argument,
        "\"" + printable(uri, 200) + "\" is not azurekms://<vault>/<key>[/<version>]: " + why);
  };
  if (slash == std::string_view::npos) return bad("no key name");
  KmsKeyRef r;
  r.vault = normalize_host(rest.substr(0, slash));
  if (r.vault.empty()) return bad("bad vault host");
  rest.remove_prefix(slash + 1);
  const size_t slash2 = rest.find('/');
  r.key = std::string(rest.substr(0, slash2));
  if (!valid_name(r.key, 127)) return bad("bad key name");
  if (slash2 != std::string_view::npos) {
    r.version = std::string(rest.substr(slash2 + 1));
    if (!valid_name(r.version, 64) || r.version.find('-') != std::string::npos)
      return bad("bad key version");
  }
  return r;
}

Result<crypto::PublicKey> public_key_from_jwk(std::string_view jwk_json) {
  json j = json::parse(jwk_json, nullptr, false);
  if (j.is_discarded()) return make_error(Errc::parse_error, "JWK is not JSON");
  return key_from_json(j);
}

Result<VaultKey> parse_key_vault_key(std::string_view body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(Errc::parse_error, "Key Vault answer is not a JSON object");
  auto k = j.find("key");
  if (k == j.end()) return make_error(Errc::parse_error, "Key Vault answer has no \"key\"");
  auto key = key_from_json(*k);
  if (!key) return std::move(key).error();
  VaultKey v{std::move(key).value(), "", "", true};
  if (auto kid = k->find("kid"); kid != k->end() && kid->is_string()) {
    v.kid = kid->get<std::string>();
    const size_t s = v.kid.rfind('/');
    if (s != std::string::npos) v.version = v.kid.substr(s + 1);
  }
  // Whether the key may be used at all: Key Vault always says, and an answer that does not (or
  // says it with anything but a boolean) is not taken as a yes.
  auto a = j.find("attributes");
  if (a == j.end() || !a->is_object())
    return make_error(Errc::parse_error, "Key Vault answer has no \"attributes\" object");
  auto en = a->find("enabled");
  if (en == a->end() || !en->is_boolean())
    return make_error(Errc::parse_error, "Key Vault answer's attributes.enabled is not a boolean");
  v.enabled = en->get<bool>();
  return v;
}

}  // namespace sigil::azure
