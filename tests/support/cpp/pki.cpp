// tests/support/cpp/pki_fixture.cpp: see pki_fixture.hpp.
#include "pki_fixture.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ess.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rsa.h>
#include <openssl/ts.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <stdexcept>

#include "common/encoding.hpp"
#include "crypto/keys.hpp"

namespace sigil::test {

namespace {

[[noreturn]] void fail(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = {0};
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  throw std::runtime_error("pki_fixture: " + what + (e != 0 ? std::string(": ") + buf : ""));
}

void check(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

template <class T, void (*F)(T*)>
struct Free {
  void operator()(T* p) const noexcept { F(p); }
};
using BioPtr = std::unique_ptr<BIO, Free<BIO, BIO_free_all>>;
using NamePtr = std::unique_ptr<X509_NAME, Free<X509_NAME, X509_NAME_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Free<X509_EXTENSION, X509_EXTENSION_free>>;
using ObjPtr = std::unique_ptr<ASN1_OBJECT, Free<ASN1_OBJECT, ASN1_OBJECT_free>>;
using OctetPtr =
    std::unique_ptr<ASN1_OCTET_STRING, Free<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>>;
using GensPtr = std::unique_ptr<GENERAL_NAMES, Free<GENERAL_NAMES, GENERAL_NAMES_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Free<EVP_MD_CTX, EVP_MD_CTX_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Free<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using TsReqPtr = std::unique_ptr<TS_REQ, Free<TS_REQ, TS_REQ_free>>;
using TsRespPtr = std::unique_ptr<TS_RESP, Free<TS_RESP, TS_RESP_free>>;
using TsRespCtxPtr = std::unique_ptr<TS_RESP_CTX, Free<TS_RESP_CTX, TS_RESP_CTX_free>>;
using ImprintPtr = std::unique_ptr<TS_MSG_IMPRINT, Free<TS_MSG_IMPRINT, TS_MSG_IMPRINT_free>>;
using AlgorPtr = std::unique_ptr<X509_ALGOR, Free<X509_ALGOR, X509_ALGOR_free>>;
using TstInfoPtr = std::unique_ptr<TS_TST_INFO, Free<TS_TST_INFO, TS_TST_INFO_free>>;
using Pkcs7Ptr = std::unique_ptr<PKCS7, Free<PKCS7, PKCS7_free>>;
using IntPtr = std::unique_ptr<ASN1_INTEGER, Free<ASN1_INTEGER, ASN1_INTEGER_free>>;
using StatusPtr = std::unique_ptr<TS_STATUS_INFO, Free<TS_STATUS_INFO, TS_STATUS_INFO_free>>;
using EssV2Ptr =
    std::unique_ptr<ESS_SIGNING_CERT_V2, Free<ESS_SIGNING_CERT_V2, ESS_SIGNING_CERT_V2_free>>;

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

int64_t unix_seconds(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
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

int ts_time_cb(TS_RESP_CTX*, void* data, long* sec, long* usec) {
  *sec = static_cast<long>(*static_cast<int64_t*>(data));
  *usec = 0;
  return 1;
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

crypto::PublicKey KeyPair::public_key() const {
  auto k = crypto::PublicKey::from_der(spki_der());
  if (!k) throw std::runtime_error("pki_fixture: sigil refuses the key: " + k.error().message);
  return *k;
}

std::string KeyPair::sign(std::string_view message, const EVP_MD* md) const {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  check(ctx != nullptr, "EVP_MD_CTX_new");
  bool ed = EVP_PKEY_get_base_id(pkey.get()) == EVP_PKEY_ED25519;
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
  if (kind == "RSA2048") {
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
  } else if (kind == "RSA3072") {
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{3072});
  } else if (kind == "ED25519") {
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
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

crypto::Certificate Cert::certificate() const {
  auto c = crypto::Certificate::from_der(der());
  if (!c)
    throw std::runtime_error("pki_fixture: sigil refuses the certificate: " + c.error().message);
  return *c;
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
  signed_data += crypto::sha256(ispki);
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
  out += spec.log_id.empty() ? crypto::sha256(spec.log_key.spki_der()) : spec.log_id;
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

// ---- FulcioPki --------------------------------------------------------------------------------

FulcioPki FulcioPki::create(TimePoint start) {
  FulcioPki p;
  p.start = start;
  p.root_key = generate_key("P-384");
  p.intermediate_key = generate_key("P-384");
  p.ct_key = generate_key("P-256");
  CertSpec root;
  root.subject = "O=sigil-test,CN=sigil-test-root";
  root.not_before = start - std::chrono::hours(24);
  root.not_after = start + std::chrono::hours(24 * 3650);
  root.ca = true;
  root.key_usage = "critical,keyCertSign,cRLSign";
  p.root = self_signed(root, p.root_key);
  CertSpec inter = root;
  inter.subject = "O=sigil-test,CN=sigil-test-intermediate";
  inter.path_len = 0;
  inter.ext_key_usage = {"codeSigning"};
  p.intermediate = issue(inter, p.intermediate_key, p.root, p.root_key);
  return p;
}

crypto::CertificateAuthority FulcioPki::authority() const {
  crypto::CertificateAuthority ca;
  ca.uri = "https://fulcio.test";
  ca.subject = "O=sigil-test, CN=sigil-test-root";
  ca.chain = {intermediate.certificate(), root.certificate()};
  return ca;
}

crypto::TransparencyLog FulcioPki::ct_log() const {
  crypto::TransparencyLog log;
  log.base_url = "https://ctfe.test";
  log.key = ct_key.public_key();
  log.log_id = crypto::key_log_id(log.key);
  log.hash = crypto::HashAlgorithm::sha256;
  return log;
}

CertSpec FulcioPki::leaf_spec(TimePoint not_before, std::string email, std::string issuer) const {
  CertSpec s;
  s.not_before = not_before;
  s.not_after = not_before + std::chrono::minutes(10);
  s.key_usage = "critical,digitalSignature";
  s.ext_key_usage = {"codeSigning"};
  s.sans = {SanEntry::email(std::move(email))};
  s.san_critical = true;
  s.issuer_v1 = issuer;
  s.issuer_v2 = issuer;
  return s;
}

SctSpec FulcioPki::sct_at(TimePoint t) const {
  SctSpec s;
  s.log_key = ct_key;
  s.timestamp = t;
  return s;
}

Cert FulcioPki::leaf(const CertSpec& spec, KeyPair* key) const {
  KeyPair k = generate_key("P-256");
  Cert c = issue(spec, k, intermediate, intermediate_key, {sct_at(spec.not_before)});
  if (key != nullptr) *key = k;
  return c;
}

Cert FulcioPki::leaf(TimePoint not_before, KeyPair* key) const {
  return leaf(leaf_spec(not_before), key);
}

// ---- TestTsa ------------------------------------------------------------------------------------

TestTsa TestTsa::create(TimePoint start, bool with_eku, std::optional<TimePoint> not_after) {
  TestTsa t;
  t.with_eku_ = with_eku;
  t.root_key = generate_key("P-256");
  t.key = generate_key("P-256");
  CertSpec root;
  root.subject = "O=sigil-test,CN=sigil-test-tsa-root";
  root.not_before = start - std::chrono::hours(24);
  root.not_after = not_after ? *not_after : start + std::chrono::hours(24 * 3650);
  root.ca = true;
  root.key_usage = "critical,keyCertSign,cRLSign";
  t.root = self_signed(root, t.root_key);
  CertSpec leaf;
  leaf.subject = "O=sigil-test,CN=sigil-test-tsa";
  leaf.not_before = root.not_before;
  leaf.not_after = root.not_after;
  leaf.key_usage = "critical,digitalSignature";
  if (with_eku) {
    leaf.ext_key_usage = {"timeStamping"};
    leaf.eku_critical = true;
  }
  t.cert = issue(leaf, t.key, t.root, t.root_key);
  return t;
}

crypto::CertificateAuthority TestTsa::authority() const {
  crypto::CertificateAuthority ca;
  ca.uri = "https://tsa.test";
  ca.subject = "O=sigil-test, CN=sigil-test-tsa";
  ca.chain = {cert.certificate(), root.certificate()};
  return ca;
}

std::string TestTsa::stamp(std::string_view data, TimePoint gen_time,
                           const StampOptions& opts) const {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  check(EVP_Digest(data.data(), data.size(), digest, &digest_len, opts.imprint_md, nullptr) == 1,
        "EVP_Digest");
  AlgorPtr alg(X509_ALGOR_new());
  check(alg && X509_ALGOR_set0(alg.get(), OBJ_nid2obj(EVP_MD_get_type(opts.imprint_md)),
                               V_ASN1_NULL, nullptr) == 1,
        "X509_ALGOR_set0");
  ImprintPtr imprint(TS_MSG_IMPRINT_new());
  check(imprint && TS_MSG_IMPRINT_set_algo(imprint.get(), alg.get()) == 1 &&
            TS_MSG_IMPRINT_set_msg(imprint.get(), digest, static_cast<int>(digest_len)) == 1,
        "TS_MSG_IMPRINT");
  ObjPtr policy(OBJ_txt2obj("1.3.6.1.4.1.57264.2", 1));
  check(policy != nullptr, "policy OID");
  int64_t secs = unix_seconds(gen_time);

  TS_RESP* raw_resp = nullptr;
  if (with_eku_) {
    // The ordinary route: a TimeStampReq answered by OpenSSL's TSA implementation.
    TsReqPtr req(TS_REQ_new());
    check(req && TS_REQ_set_version(req.get(), 1) == 1 &&
              TS_REQ_set_msg_imprint(req.get(), imprint.get()) == 1 &&
              TS_REQ_set_cert_req(req.get(), opts.include_certs ? 1 : 0) == 1,
          "TS_REQ");
    BioPtr req_bio(BIO_new(BIO_s_mem()));
    check(req_bio && i2d_TS_REQ_bio(req_bio.get(), req.get()) == 1, "i2d_TS_REQ_bio");
    TsRespCtxPtr ctx(TS_RESP_CTX_new());
    check(ctx != nullptr, "TS_RESP_CTX_new");
    check(TS_RESP_CTX_set_signer_cert(ctx.get(), cert.x509.get()) == 1, "set_signer_cert");
    check(TS_RESP_CTX_set_signer_key(ctx.get(), key.pkey.get()) == 1, "set_signer_key");
    check(TS_RESP_CTX_set_signer_digest(ctx.get(), EVP_sha256()) == 1, "set_signer_digest");
    check(TS_RESP_CTX_set_ess_cert_id_digest(ctx.get(), EVP_sha256()) == 1, "ess digest");
    check(TS_RESP_CTX_set_def_policy(ctx.get(), policy.get()) == 1, "set_def_policy");
    if (opts.reject) {
      // Accept only SHA-1 imprints: the SHA-2 request is answered with "rejection" (badAlg).
      check(TS_RESP_CTX_add_md(ctx.get(), EVP_sha1()) == 1, "add_md");
    } else {
      check(TS_RESP_CTX_add_md(ctx.get(), opts.imprint_md) == 1, "add_md");
    }
    check(TS_RESP_CTX_set_accuracy(ctx.get(), 1, 0, 0) == 1, "set_accuracy");
    TS_RESP_CTX_set_time_cb(ctx.get(), ts_time_cb, &secs);
    raw_resp = TS_RESP_create_response(ctx.get(), req_bio.get());
    check(raw_resp != nullptr, "TS_RESP_create_response");
  } else {
    // TS_RESP_CTX refuses a signer without the timeStamping EKU, so sign the TSTInfo as
    // TS_RESP_CTX would (CMS SignedData, content type id-ct-TSTInfo, ESS signingCertificateV2).
    TstInfoPtr tst(TS_TST_INFO_new());
    IntPtr serial(ASN1_INTEGER_new());
    check(tst && serial && ASN1_INTEGER_set(serial.get(), 7) == 1 &&
              TS_TST_INFO_set_version(tst.get(), 1) == 1 &&
              TS_TST_INFO_set_policy_id(tst.get(), policy.get()) == 1 &&
              TS_TST_INFO_set_msg_imprint(tst.get(), imprint.get()) == 1 &&
              TS_TST_INFO_set_serial(tst.get(), serial.get()) == 1,
          "TS_TST_INFO");
    ASN1_GENERALIZEDTIME* gt = ASN1_GENERALIZEDTIME_set(nullptr, static_cast<time_t>(secs));
    check(gt != nullptr, "ASN1_GENERALIZEDTIME_set");
    int ok = TS_TST_INFO_set_time(tst.get(), gt);
    ASN1_GENERALIZEDTIME_free(gt);
    check(ok == 1, "TS_TST_INFO_set_time");

    Pkcs7Ptr p7(PKCS7_new());
    check(p7 && PKCS7_set_type(p7.get(), NID_pkcs7_signed) == 1 &&
              ASN1_INTEGER_set(p7->d.sign->version, 3) == 1,
          "PKCS7_set_type");
    if (opts.include_certs)
      check(PKCS7_add_certificate(p7.get(), cert.x509.get()) == 1, "add cert");
    PKCS7_SIGNER_INFO* si =
        PKCS7_add_signature(p7.get(), cert.x509.get(), key.pkey.get(), EVP_sha256());
    check(si != nullptr, "PKCS7_add_signature");
    check(PKCS7_add_signed_attribute(si, NID_pkcs9_contentType, V_ASN1_OBJECT,
                                     OBJ_nid2obj(NID_id_smime_ct_TSTInfo)) == 1,
          "contentType attribute");
    EssV2Ptr ess(OSSL_ESS_signing_cert_v2_new_init(EVP_sha256(), cert.x509.get(), nullptr, 0));
    check(ess != nullptr, "OSSL_ESS_signing_cert_v2_new_init");
    unsigned char* ess_der = nullptr;
    int ess_len = i2d_ESS_SIGNING_CERT_V2(ess.get(), &ess_der);
    check(ess_len > 0, "i2d_ESS_SIGNING_CERT_V2");
    ASN1_STRING* seq = ASN1_STRING_new();
    check(seq && ASN1_STRING_set(seq, ess_der, ess_len) == 1, "ASN1_STRING_set");
    OPENSSL_free(ess_der);
    check(PKCS7_add_signed_attribute(si, NID_id_smime_aa_signingCertificateV2, V_ASN1_SEQUENCE,
                                     seq) == 1,
          "signingCertificateV2 attribute");
    // Encapsulated content of type id-ct-TSTInfo.
    PKCS7* inner = PKCS7_new();
    check(inner != nullptr, "PKCS7_new");
    inner->type = OBJ_nid2obj(NID_id_smime_ct_TSTInfo);
    inner->d.other = ASN1_TYPE_new();
    check(inner->d.other != nullptr, "ASN1_TYPE_new");
    ASN1_TYPE_set(inner->d.other, V_ASN1_OCTET_STRING, ASN1_OCTET_STRING_new());
    check(PKCS7_set_content(p7.get(), inner) == 1, "PKCS7_set_content");
    BIO* p7bio = PKCS7_dataInit(p7.get(), nullptr);
    check(p7bio != nullptr, "PKCS7_dataInit");
    bool wrote =
        i2d_TS_TST_INFO_bio(p7bio, tst.get()) == 1 && PKCS7_dataFinal(p7.get(), p7bio) == 1;
    BIO_free_all(p7bio);
    check(wrote, "PKCS7_dataFinal");

    TsRespPtr resp(TS_RESP_new());
    StatusPtr status(TS_STATUS_INFO_new());
    check(resp && status && TS_STATUS_INFO_set_status(status.get(), TS_STATUS_GRANTED) == 1 &&
              TS_RESP_set_status_info(resp.get(), status.get()) == 1,
          "TS_RESP status");
    TS_RESP_set_tst_info(resp.get(), p7.release(), tst.release());
    raw_resp = resp.release();
  }
  TsRespPtr resp(raw_resp);
  unsigned char* der = nullptr;
  int len = 0;
  if (opts.bare_token) {
    PKCS7* token = TS_RESP_get_token(resp.get());
    check(token != nullptr, "response has no token");
    len = i2d_PKCS7(token, &der);
  } else {
    len = i2d_TS_RESP(resp.get(), &der);
  }
  check(len > 0, "DER encoding of the timestamp");
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  ERR_clear_error();
  return out;
}

// ---- real sigstore material
// ----------------------------------------------------------------------

namespace {
std::string b64(const char* text) {
  auto raw = base64_decode(text);
  if (!raw) throw std::runtime_error("pki_fixture: bad embedded base64");
  return *raw;
}
}  // namespace

const PublicGoodSample& public_good_sample() {
  static const PublicGoodSample sample = [] {
    PublicGoodSample s;
    s.leaf_der = b64(
        "MIIIMjCCB7igAwIBAgIUEV+DuCyZBHIfhrcs4UuD7F4NNbIwCgYIKoZIzj0EAwMwNzEVMBMGA1UEChMMc2lnc3Rv"
        "cmUuZGV2MR4wHAYDVQQDExVzaWdzdG9yZS1pbnRlcm1lZGlhdGUwHhcNMjYwNTEzMTk0NzMzWhcNMjYwNTEzMTk1"
        "NzMzWjAAMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQtFTxn7YqZGY2akKVcel6AdZQgPpi4JVI/kYbPOJ7IJw"
        "B2mZBYJyChwtZ5ogXK/vEtRVocTyI63tchvWhp8sy6OCBtcwggbTMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAK"
        "BggrBgEFBQcDAzAdBgNVHQ4EFgQUv64l+fm/kPy0XYHcv6xc8HRQsF8wHwYDVR0jBBgwFoAU39Ppz1YkEZb5qNjp"
        "KFWixi4YZD8wgaUGA1UdEQEB/wSBmjCBl4aBlGh0dHBzOi8vZ2l0aHViLmNvbS9zaWdzdG9yZS1jb25mb3JtYW5j"
        "ZS9leHRyZW1lbHktZGFuZ2Vyb3VzLXB1YmxpYy1vaWRjLWJlYWNvbi8uZ2l0aHViL3dvcmtmbG93cy9leHRyZW1l"
        "bHktZGFuZ2Vyb3VzLW9pZGMtYmVhY29uLnltbEByZWZzL2hlYWRzL21haW4wOQYKKwYBBAGDvzABAQQraHR0cHM6"
        "Ly90b2tlbi5hY3Rpb25zLmdpdGh1YnVzZXJjb250ZW50LmNvbTAfBgorBgEEAYO/MAECBBF3b3JrZmxvd19kaXNw"
        "YXRjaDA2BgorBgEEAYO/MAEDBCg5NzdlOGQwODU1NGNhOWJkYTI3OWM5NmU5MWJlMjExOWZiNjdjNzMwMC0GCisG"
        "AQQBg78wAQQEH0V4dHJlbWVseSBkYW5nZXJvdXMgT0lEQyBiZWFjb24wSQYKKwYBBAGDvzABBQQ7c2lnc3RvcmUt"
        "Y29uZm9ybWFuY2UvZXh0cmVtZWx5LWRhbmdlcm91cy1wdWJsaWMtb2lkYy1iZWFjb24wHQYKKwYBBAGDvzABBgQP"
        "cmVmcy9oZWFkcy9tYWluMDsGCisGAQQBg78wAQgELQwraHR0cHM6Ly90b2tlbi5hY3Rpb25zLmdpdGh1YnVzZXJj"
        "b250ZW50LmNvbTCBpgYKKwYBBAGDvzABCQSBlwyBlGh0dHBzOi8vZ2l0aHViLmNvbS9zaWdzdG9yZS1jb25mb3Jt"
        "YW5jZS9leHRyZW1lbHktZGFuZ2Vyb3VzLXB1YmxpYy1vaWRjLWJlYWNvbi8uZ2l0aHViL3dvcmtmbG93cy9leHRy"
        "ZW1lbHktZGFuZ2Vyb3VzLW9pZGMtYmVhY29uLnltbEByZWZzL2hlYWRzL21haW4wOAYKKwYBBAGDvzABCgQqDCg5"
        "NzdlOGQwODU1NGNhOWJkYTI3OWM5NmU5MWJlMjExOWZiNjdjNzMwMB0GCisGAQQBg78wAQsEDwwNZ2l0aHViLWhv"
        "c3RlZDBeBgorBgEEAYO/MAEMBFAMTmh0dHBzOi8vZ2l0aHViLmNvbS9zaWdzdG9yZS1jb25mb3JtYW5jZS9leHRy"
        "ZW1lbHktZGFuZ2Vyb3VzLXB1YmxpYy1vaWRjLWJlYWNvbjA4BgorBgEEAYO/MAENBCoMKDk3N2U4ZDA4NTU0Y2E5"
        "YmRhMjc5Yzk2ZTkxYmUyMTE5ZmI2N2M3MzAwHwYKKwYBBAGDvzABDgQRDA9yZWZzL2hlYWRzL21haW4wGQYKKwYB"
        "BAGDvzABDwQLDAk2MzI1OTY4OTcwNwYKKwYBBAGDvzABEAQpDCdodHRwczovL2dpdGh1Yi5jb20vc2lnc3RvcmUt"
        "Y29uZm9ybWFuY2UwGQYKKwYBBAGDvzABEQQLDAkxMzE4MDQ1NjMwgaYGCisGAQQBg78wARIEgZcMgZRodHRwczov"
        "L2dpdGh1Yi5jb20vc2lnc3RvcmUtY29uZm9ybWFuY2UvZXh0cmVtZWx5LWRhbmdlcm91cy1wdWJsaWMtb2lkYy1i"
        "ZWFjb24vLmdpdGh1Yi93b3JrZmxvd3MvZXh0cmVtZWx5LWRhbmdlcm91cy1vaWRjLWJlYWNvbi55bWxAcmVmcy9o"
        "ZWFkcy9tYWluMDgGCisGAQQBg78wARMEKgwoOTc3ZThkMDg1NTRjYTliZGEyNzljOTZlOTFiZTIxMTlmYjY3Yzcz"
        "MDAhBgorBgEEAYO/MAEUBBMMEXdvcmtmbG93X2Rpc3BhdGNoMIGCBgorBgEEAYO/MAEVBHQMcmh0dHBzOi8vZ2l0"
        "aHViLmNvbS9zaWdzdG9yZS1jb25mb3JtYW5jZS9leHRyZW1lbHktZGFuZ2Vyb3VzLXB1YmxpYy1vaWRjLWJlYWNv"
        "bi9hY3Rpb25zL3J1bnMvMjU4MjIzMzA3MTYvYXR0ZW1wdHMvMTAWBgorBgEEAYO/MAEWBAgMBnB1YmxpYzCBigYK"
        "KwYBBAHWeQIEAgR8BHoAeAB2AN09MGrGxxEyYxkeHJlnNwKiSl643jyt/4eKcoAvKe6OAAABniLhVaoAAAQDAEcw"
        "RQIgaZEVl1qfbesps2ql0ceH6cf1w7ZcUC8LNJfiCMelSAACIQCx40jIf9CbJ7Zyevbm4c6WycLGVemDQMa0ssa7"
        "hdkNuzAKBggqhkjOPQQDAwNoADBlAjEA9Cgh/3a03bJOXiWvrqqoJwvVLNdAGnNrAUnUiSk8YpiPFpGbUxXge4y1"
        "SKLkwwufAjB3P3Ke74iq1L+ODOLnjA91b76S7tSh6ajVhboyppurh7/lIQfnzGcYhIuxYfQlxdQ=");
    s.signature = b64(
        "MEQCID/2YpEq1G8vQ15ieOqasU14e59f01Vqo+qpw32coGE/AiASDlXJ/EDmnPXsAtqZJsgSuC+R8XngSF+W/yWB"
        "cbSBfQ==");
    s.timestamp_der = b64(
        "MIICyTADAgEAMIICwAYJKoZIhvcNAQcCoIICsTCCAq0CAQMxDTALBglghkgBZQMEAgEwgbcGCyqGSIb3DQEJEAEE"
        "oIGnBIGkMIGhAgEBBgkrBgEEAYO/MAIwMTANBglghkgBZQMEAgEFAAQgoWQn+cb/SPqTxJIkqGQALTO/DBciPXCI"
        "kYKF0tALmpwCFALwSRvi4NNL5Xiin3sVIvFIMQTJGA8yMDI2MDUxMzE5NDczM1owAwIBAaAypDAwLjEVMBMGA1UE"
        "ChMMc2lnc3RvcmUuZGV2MRUwEwYDVQQDEwxzaWdzdG9yZS10c2GgADGCAdswggHXAgEBMFEwOTEVMBMGA1UEChMM"
        "c2lnc3RvcmUuZGV2MSAwHgYDVQQDExdzaWdzdG9yZS10c2Etc2VsZnNpZ25lZAIUOhNULwyQYe68wUMvy4qOiyoj"
        "iwwwCwYJYIZIAWUDBAIBoIH8MBoGCSqGSIb3DQEJAzENBgsqhkiG9w0BCRABBDAcBgkqhkiG9w0BCQUxDxcNMjYw"
        "NTEzMTk0NzMzWjAvBgkqhkiG9w0BCQQxIgQgnR5CJpZH+j2Y/xkVR/ytAAyKNumNOloakgDo3IvLP8EwgY4GCyqG"
        "SIb3DQEJEAIvMX8wfTB7MHkEIIX5J7wHq2LKw7RDVsEO/IGyxog/2nq55thw2dE6zQW3MFUwPaQ7MDkxFTATBgNV"
        "BAoTDHNpZ3N0b3JlLmRldjEgMB4GA1UEAxMXc2lnc3RvcmUtdHNhLXNlbGZzaWduZWQCFDoTVC8MkGHuvMFDL8uK"
        "josqI4sMMAoGCCqGSM49BAMCBGcwZQIwQdwg6IMcYgp48pykABEmJT6YA9YkBgCLhFpDi7vfZxAcc+FzyebD/U17"
        "+kfKZqDMAjEA7shEMiHnxnWTj1tE4xBTD110pih/R2AGXEI8a09pvUORkii5gAyII3dgupOYu4lb");
    s.integrated_time = 1778701653;
    return s;
  }();
  return sample;
}

std::string read_source_file(const std::string& relative_path) {
  std::ifstream in(std::string(SIGIL_SOURCE_DIR) + "/" + relative_path, std::ios::binary);
  if (!in) throw std::runtime_error("pki_fixture: cannot read " + relative_path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace sigil::test
