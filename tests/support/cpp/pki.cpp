// tests/support/cpp/pki.cpp: see pki.hpp.
#include "pki.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <map>
#include <mutex>
#include <stdexcept>

namespace sigil::test {

namespace detail {

[[noreturn]] void fail(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = {0};
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  throw std::runtime_error("test PKI: " + what + (e != 0 ? std::string(": ") + buf : ""));
}

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

int64_t unix_seconds(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace detail

namespace {

using detail::bio_string;
using detail::check;
using detail::fail;
using detail::Free;
using detail::unix_seconds;

using BioPtr = std::unique_ptr<BIO, Free<BIO, BIO_free_all>>;
using NamePtr = std::unique_ptr<X509_NAME, Free<X509_NAME, X509_NAME_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Free<X509_EXTENSION, X509_EXTENSION_free>>;
using ObjPtr = std::unique_ptr<ASN1_OBJECT, Free<ASN1_OBJECT, ASN1_OBJECT_free>>;
using OctetPtr =
    std::unique_ptr<ASN1_OCTET_STRING, Free<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>>;
using GensPtr = std::unique_ptr<GENERAL_NAMES, Free<GENERAL_NAMES, GENERAL_NAMES_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Free<EVP_MD_CTX, EVP_MD_CTX_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Free<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;

std::string sha256(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof(md));
}

bool is_eddsa(EVP_PKEY* key) {
  const int id = EVP_PKEY_get_base_id(key);
  return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448;
}

const EVP_MD* default_md(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
      return nullptr;
    case EVP_PKEY_EC: {
      int bits = EVP_PKEY_get_bits(key);
      if (bits > 384) return EVP_sha512();
      if (bits > 256) return EVP_sha384();
      return EVP_sha256();
    }
    default:
      return EVP_sha256();
  }
}

NamePtr make_name(const std::string& text) {
  NamePtr name(X509_NAME_new());
  check(name != nullptr, "X509_NAME_new");
  size_t pos = 0;
  while (pos < text.size()) {
    size_t comma = text.find(',', pos);
    std::string part =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? text.size() : comma + 1;
    while (!part.empty() && part.front() == ' ') part.erase(part.begin());
    size_t eq = part.find('=');
    check(eq != std::string::npos, "bad name component " + part);
    std::string key = part.substr(0, eq);
    std::string value = part.substr(eq + 1);
    check(X509_NAME_add_entry_by_txt(name.get(), key.c_str(), MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1,
                                     0) == 1,
          "X509_NAME_add_entry_by_txt " + key);
  }
  return name;
}

void add_conf_ext(X509* x, X509V3_CTX* ctx, int nid, const std::string& value) {
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  check(ext != nullptr, "X509V3_EXT_conf_nid " + value);
  check(X509_add_ext(x, ext.get(), -1) == 1, "X509_add_ext");
}

void add_raw_ext(X509* x, const std::string& oid, const std::string& value, bool critical) {
  ObjPtr obj(OBJ_txt2obj(oid.c_str(), 1));
  check(obj != nullptr, "OBJ_txt2obj " + oid);
  OctetPtr data(ASN1_OCTET_STRING_new());
  check(data != nullptr &&
            ASN1_OCTET_STRING_set(data.get(), reinterpret_cast<const unsigned char*>(value.data()),
                                  static_cast<int>(value.size())) == 1,
        "ASN1_OCTET_STRING_set");
  ExtPtr ext(X509_EXTENSION_create_by_OBJ(nullptr, obj.get(), critical ? 1 : 0, data.get()));
  check(ext != nullptr, "X509_EXTENSION_create_by_OBJ");
  check(X509_add_ext(x, ext.get(), -1) == 1, "X509_add_ext");
}

GENERAL_NAME* make_general_name(const SanEntry& s) {
  GENERAL_NAME* gn = GENERAL_NAME_new();
  check(gn != nullptr, "GENERAL_NAME_new");
  auto ia5 = [&](int type) {
    ASN1_IA5STRING* v = ASN1_IA5STRING_new();
    check(v != nullptr && ASN1_STRING_set(v, s.value.data(), static_cast<int>(s.value.size())) == 1,
          "ASN1_STRING_set");
    GENERAL_NAME_set0_value(gn, type, v);
  };
  switch (s.kind) {
    case SanEntry::Kind::email:
      ia5(GEN_EMAIL);
      break;
    case SanEntry::Kind::uri:
      ia5(GEN_URI);
      break;
    case SanEntry::Kind::dns:
      ia5(GEN_DNS);
      break;
    case SanEntry::Kind::ip: {
      ASN1_OCTET_STRING* v = ASN1_OCTET_STRING_new();
      check(v != nullptr &&
                ASN1_OCTET_STRING_set(v, reinterpret_cast<const unsigned char*>(s.value.data()),
                                      static_cast<int>(s.value.size())) == 1,
            "ASN1_OCTET_STRING_set");
      GENERAL_NAME_set0_value(gn, GEN_IPADD, v);
      break;
    }
    case SanEntry::Kind::username:
    case SanEntry::Kind::other_name: {
      std::string oid = s.kind == SanEntry::Kind::username ? kOidFulcioUsername : s.oid;
      ASN1_OBJECT* obj = OBJ_txt2obj(oid.c_str(), 1);
      check(obj != nullptr, "OBJ_txt2obj " + oid);
      int type = s.value_type == 0 ? V_ASN1_UTF8STRING : s.value_type;
      ASN1_STRING* str = ASN1_STRING_type_new(type);
      check(str != nullptr &&
                ASN1_STRING_set(str, s.value.data(), static_cast<int>(s.value.size())) == 1,
            "ASN1_STRING_set");
      ASN1_TYPE* value = ASN1_TYPE_new();
      check(value != nullptr, "ASN1_TYPE_new");
      ASN1_TYPE_set(value, type, str);
      check(GENERAL_NAME_set0_othername(gn, obj, value) == 1, "GENERAL_NAME_set0_othername");
      break;
    }
  }
  return gn;
}

std::atomic<uint64_t> g_serial{0x5161100};

// Builds and signs a certificate. issuer == nullptr means self-signed with issuer_key.
std::shared_ptr<X509> build(const CertSpec& spec, EVP_PKEY* subject_key, const X509* issuer,
                            EVP_PKEY* issuer_key, const std::vector<SctSpec>& scts,
                            const std::optional<std::string>& raw_sct) {
  std::shared_ptr<X509> x(X509_new(), X509_free);
  check(x != nullptr, "X509_new");
  check(X509_set_version(x.get(), X509_VERSION_3) == 1, "X509_set_version");
  check(ASN1_INTEGER_set_uint64(X509_get_serialNumber(x.get()), ++g_serial) == 1, "serial");
  NamePtr subject = make_name(spec.subject);
  check(X509_set_subject_name(x.get(), subject.get()) == 1, "X509_set_subject_name");
  check(X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : subject.get()) == 1,
        "X509_set_issuer_name");
  check(ASN1_TIME_set(X509_getm_notBefore(x.get()),
                      static_cast<time_t>(unix_seconds(spec.not_before))) != nullptr,
        "notBefore");
  check(ASN1_TIME_set(X509_getm_notAfter(x.get()),
                      static_cast<time_t>(spec.not_after_seconds != 0
                                              ? spec.not_after_seconds
                                              : unix_seconds(spec.not_after))) != nullptr,
        "notAfter");
  check(X509_set_pubkey(x.get(), subject_key) == 1, "X509_set_pubkey");

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer ? const_cast<X509*>(issuer) : x.get(), x.get(), nullptr, nullptr, 0);
  if (spec.ca.has_value()) {
    std::string bc = *spec.ca ? "critical,CA:TRUE" : "critical,CA:FALSE";
    if (*spec.ca && spec.path_len) bc += ",pathlen:" + std::to_string(*spec.path_len);
    add_conf_ext(x.get(), &ctx, NID_basic_constraints, bc);
  }
  if (!spec.key_usage.empty()) add_conf_ext(x.get(), &ctx, NID_key_usage, spec.key_usage);
  if (!spec.ext_key_usage.empty()) {
    std::string eku = spec.eku_critical ? "critical" : "";
    for (const auto& u : spec.ext_key_usage) eku += (eku.empty() ? "" : ",") + u;
    add_conf_ext(x.get(), &ctx, NID_ext_key_usage, eku);
  }
  if (spec.key_ids) {
    add_conf_ext(x.get(), &ctx, NID_subject_key_identifier, "hash");
    add_conf_ext(x.get(), &ctx, NID_authority_key_identifier, "keyid:always");
  }
  if (!spec.sans.empty()) {
    GensPtr gens(sk_GENERAL_NAME_new_null());
    check(gens != nullptr, "sk_GENERAL_NAME_new_null");
    for (const auto& s : spec.sans) {
      GENERAL_NAME* gn = make_general_name(s);
      check(sk_GENERAL_NAME_push(gens.get(), gn) > 0, "sk_GENERAL_NAME_push");
    }
    check(X509_add1_ext_i2d(x.get(), NID_subject_alt_name, gens.get(), spec.san_critical ? 1 : 0,
                            X509V3_ADD_DEFAULT) == 1,
          "SAN");
  }
  if (spec.issuer_v1) add_raw_ext(x.get(), kOidFulcioIssuerV1, *spec.issuer_v1, false);
  if (spec.issuer_v2) add_raw_ext(x.get(), kOidFulcioIssuerV2, der_utf8(*spec.issuer_v2), false);
  for (const auto& e : spec.extra) add_raw_ext(x.get(), e.oid, e.value, e.critical);

  const EVP_MD* md = spec.md ? spec.md : default_md(issuer_key);
  check(X509_sign(x.get(), issuer_key, md) > 0, "X509_sign");
  if (scts.empty() && !raw_sct) return x;

  // The precertificate TBS is the TBS as it stands now, before the SCT list is added.
  std::string tbs;
  {
    unsigned char* der = nullptr;
    int len = i2d_re_X509_tbs(x.get(), &der);
    check(len > 0, "i2d_re_X509_tbs");
    tbs.assign(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
    OPENSSL_free(der);
  }
  std::string value;
  if (raw_sct) {
    value = *raw_sct;
  } else {
    X509_PUBKEY* ipub = X509_get_X509_PUBKEY(issuer ? issuer : x.get());
    unsigned char* spki = nullptr;
    int spki_len = i2d_X509_PUBKEY(ipub, &spki);
    check(spki_len > 0, "i2d_X509_PUBKEY");
    std::string issuer_spki(reinterpret_cast<const char*>(spki), static_cast<size_t>(spki_len));
    OPENSSL_free(spki);
    std::vector<std::string> serialized;
    for (const auto& s : scts) serialized.push_back(serialize_sct(s, tbs, issuer_spki));
    value = sct_extension_value(sct_list(serialized));
  }
  add_raw_ext(x.get(), kOidSctList, value, false);
  check(X509_sign(x.get(), issuer_key, md) > 0, "X509_sign");
  return x;
}

void put_u16(std::string& out, size_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

std::string der_string(int type, std::string_view s) {
  ASN1_STRING* str = ASN1_STRING_type_new(type);
  check(str != nullptr && ASN1_STRING_set(str, s.data(), static_cast<int>(s.size())) == 1,
        "ASN1_STRING_set");
  ASN1_TYPE* t = ASN1_TYPE_new();
  check(t != nullptr, "ASN1_TYPE_new");
  ASN1_TYPE_set(t, type, str);
  unsigned char* der = nullptr;
  int len = i2d_ASN1_TYPE(t, &der);
  ASN1_TYPE_free(t);
  check(len > 0, "i2d_ASN1_TYPE");
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

}  // namespace

TimePoint at_seconds(int64_t s) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::seconds(s)));
}

TimePoint test_epoch() {
  return at_seconds(1710869186);  // 2024-03-19T17:26:26Z
}

// ---- keys -------------------------------------------------------------------------------------

std::string KeyPair::spki_der() const {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(pkey.get(), &der);
  check(len > 0, "i2d_PUBKEY");
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string KeyPair::public_pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  check(bio && PEM_write_bio_PUBKEY(bio.get(), pkey.get()) == 1, "PEM_write_bio_PUBKEY");
  return bio_string(bio.get());
}

std::string KeyPair::private_pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  check(bio && PEM_write_bio_PrivateKey(bio.get(), pkey.get(), nullptr, nullptr, 0, nullptr,
                                        nullptr) == 1,
        "PEM_write_bio_PrivateKey");
  return bio_string(bio.get());
}

std::string KeyPair::pkcs1_der() const {
  unsigned char* der = nullptr;
  int len = i2d_PublicKey(pkey.get(), &der);
  check(len > 0, "i2d_PublicKey");
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string KeyPair::sign(std::string_view message, const EVP_MD* md) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  check(ctx != nullptr, "EVP_MD_CTX_new");
  bool ed = is_eddsa(pkey.get());
  EVP_PKEY_CTX* pctx = nullptr;
  check(EVP_DigestSignInit(ctx.get(), &pctx, ed ? nullptr : md, nullptr, pkey.get()) == 1,
        "EVP_DigestSignInit");
  if (EVP_PKEY_get_base_id(pkey.get()) == EVP_PKEY_RSA) {
    check(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0, "RSA padding");
  }
  size_t len = 0;
  const auto* m = reinterpret_cast<const unsigned char*>(message.data());
  check(EVP_DigestSign(ctx.get(), nullptr, &len, m, message.size()) == 1, "EVP_DigestSign");
  std::string sig(len, '\0');
  check(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, m,
                       message.size()) == 1,
        "EVP_DigestSign");
  sig.resize(len);
  return sig;
}

std::string KeyPair::sign_digest(std::string_view digest, const EVP_MD* md) const {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(pkey.get(), nullptr));
  check(ctx != nullptr && EVP_PKEY_sign_init(ctx.get()) == 1, "EVP_PKEY_sign_init");
  if (EVP_PKEY_get_base_id(pkey.get()) == EVP_PKEY_RSA) {
    check(EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) > 0, "RSA padding");
  }
  check(EVP_PKEY_CTX_set_signature_md(ctx.get(), md) > 0, "EVP_PKEY_CTX_set_signature_md");
  size_t len = 0;
  const auto* d = reinterpret_cast<const unsigned char*>(digest.data());
  check(EVP_PKEY_sign(ctx.get(), nullptr, &len, d, digest.size()) == 1, "EVP_PKEY_sign");
  std::string sig(len, '\0');
  check(EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, d,
                      digest.size()) == 1,
        "EVP_PKEY_sign");
  sig.resize(len);
  return sig;
}

KeyPair generate_key(const std::string& kind) {
  EVP_PKEY* k = nullptr;
  if (kind.rfind("RSA", 0) == 0) {
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(std::stoul(kind.substr(3))));
  } else if (kind == "ED25519" || kind == "ED448") {
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, kind.c_str());
  } else {
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", kind.c_str());
  }
  check(k != nullptr, "keygen " + kind);
  return KeyPair{std::shared_ptr<EVP_PKEY>(k, EVP_PKEY_free)};
}

const KeyPair& cached_key(const std::string& kind) {
  static std::mutex mu;
  static std::map<std::string, KeyPair> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(kind);
  if (it == cache.end()) it = cache.emplace(kind, generate_key(kind)).first;
  return it->second;
}

// ---- certificates -------------------------------------------------------------------------------

std::string Cert::der() const {
  unsigned char* der = nullptr;
  int len = i2d_X509(x509.get(), &der);
  check(len > 0, "i2d_X509");
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string Cert::pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  check(bio && PEM_write_bio_X509(bio.get(), x509.get()) == 1, "PEM_write_bio_X509");
  return bio_string(bio.get());
}

std::optional<std::string> Cert::extension_value(const char* oid) const {
  ObjPtr obj(OBJ_txt2obj(oid, 1));
  check(obj != nullptr, "OBJ_txt2obj");
  int idx = X509_get_ext_by_OBJ(x509.get(), obj.get(), -1);
  if (idx < 0) return std::nullopt;
  const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(X509_get_ext(x509.get(), idx));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
                     static_cast<size_t>(ASN1_STRING_length(data)));
}

Cert self_signed(const CertSpec& spec, const KeyPair& key) {
  return Cert{build(spec, key.pkey.get(), nullptr, key.pkey.get(), {}, std::nullopt)};
}

Cert issue(const CertSpec& spec, const KeyPair& subject_key, const Cert& issuer,
           const KeyPair& issuer_key, const std::vector<SctSpec>& scts,
           const std::optional<std::string>& raw_sct_extension) {
  return Cert{build(spec, subject_key.pkey.get(), issuer.x509.get(), issuer_key.pkey.get(), scts,
                    raw_sct_extension)};
}

std::string serialize_sct(const SctSpec& spec, std::string_view precert_tbs,
                          std::string_view issuer_spki) {
  std::string tbs = spec.tbs_override ? *spec.tbs_override : std::string(precert_tbs);
  std::string ispki =
      spec.issuer_spki_override ? *spec.issuer_spki_override : std::string(issuer_spki);
  uint64_t ts = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(spec.timestamp.time_since_epoch())
          .count());
  std::string ts_bytes;
  for (int shift = 56; shift >= 0; shift -= 8)
    ts_bytes.push_back(static_cast<char>((ts >> shift) & 0xff));

  std::string signed_data;
  signed_data.push_back(0);  // v1
  signed_data.push_back(0);  // certificate_timestamp
  signed_data += ts_bytes;
  put_u16(signed_data, 1);  // precert_entry
  signed_data += sha256(ispki);
  signed_data.push_back(static_cast<char>((tbs.size() >> 16) & 0xff));
  put_u16(signed_data, tbs.size() & 0xffff);
  signed_data += tbs;
  put_u16(signed_data, spec.extensions.size());
  signed_data += spec.extensions;
  std::string sig = spec.log_key.sign(signed_data, EVP_sha256());
  if (spec.corrupt_signature) sig[sig.size() / 2] = static_cast<char>(sig[sig.size() / 2] ^ 0x01);

  bool rsa = EVP_PKEY_get_base_id(spec.log_key.pkey.get()) == EVP_PKEY_RSA;
  std::string out;
  out.push_back(0);  // version v1
  out += spec.log_id.empty() ? sha256(spec.log_key.spki_der()) : spec.log_id;
  out += ts_bytes;
  put_u16(out, spec.extensions.size());
  out += spec.extensions;
  out.push_back(4);            // hash: sha256
  out.push_back(rsa ? 1 : 3);  // signature: rsa | ecdsa
  put_u16(out, sig.size());
  out += sig;
  return out;
}

std::string sct_list(const std::vector<std::string>& scts) {
  std::string body;
  for (const auto& s : scts) {
    put_u16(body, s.size());
    body += s;
  }
  std::string out;
  put_u16(out, body.size());
  return out + body;
}

std::string sct_extension_value(std::string_view list) {
  return der_string(V_ASN1_OCTET_STRING, list);
}

std::string der_utf8(std::string_view s) {
  return der_string(V_ASN1_UTF8STRING, s);
}

std::string der_ia5(std::string_view s) {
  return der_string(V_ASN1_IA5STRING, s);
}

std::string precert_tbs(const Cert& c) {
  std::shared_ptr<X509> dup(X509_dup(c.x509.get()), X509_free);
  check(dup != nullptr, "X509_dup");
  int idx = X509_get_ext_by_NID(dup.get(), NID_ct_precert_scts, -1);
  if (idx >= 0) X509_EXTENSION_free(X509_delete_ext(dup.get(), idx));
  unsigned char* der = nullptr;
  int len = i2d_re_X509_tbs(dup.get(), &der);
  check(len > 0, "i2d_re_X509_tbs");
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string to_pem(std::string_view label, std::string_view der) {
  BioPtr b64(BIO_new(BIO_f_base64()));
  BioPtr mem(BIO_new(BIO_s_mem()));
  check(b64 && mem, "BIO_new");
  BIO* chain = BIO_push(b64.get(), mem.release());
  check(
      BIO_write(chain, der.data(), static_cast<int>(der.size())) == static_cast<int>(der.size()) &&
          BIO_flush(chain) == 1,
      "base64");
  std::string body = bio_string(BIO_next(chain));
  return "-----BEGIN " + std::string(label) + "-----\n" + body + "-----END " + std::string(label) +
         "-----\n";
}

std::string flip_bit(std::string s, size_t byte, int bit) {
  s.at(byte) = static_cast<char>(s.at(byte) ^ (1 << bit));
  return s;
}

}  // namespace sigil::test
