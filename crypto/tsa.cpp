// crypto/tsa.cpp: see tsa.hpp. OpenSSL's TS API checks the CMS signature, the ESS
// signing-certificate binding, the version and the message imprint; the TSA certificate path is
// then validated again with verify_certificate so the same rules apply as for Fulcio leaves (the
// hybrid validity model at genTime, the authority's validFor window, the extended key usage).
#include "crypto/tsa.hpp"

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "crypto/detail/ossl.hpp"

namespace sigil::crypto {

namespace {

// sigstore's responses are about 1.5 KiB (3 KiB with the chain embedded).
constexpr size_t kMaxTimestampBytes = 128 * 1024;
constexpr int kMaxEmbeddedCerts = 16;

struct TsRespDeleter {
  void operator()(TS_RESP* p) const noexcept { TS_RESP_free(p); }
};
struct Pkcs7Deleter {
  void operator()(PKCS7* p) const noexcept { PKCS7_free(p); }
};
struct TstInfoDeleter {
  void operator()(TS_TST_INFO* p) const noexcept { TS_TST_INFO_free(p); }
};
struct VerifyCtxDeleter {
  void operator()(TS_VERIFY_CTX* p) const noexcept { TS_VERIFY_CTX_free(p); }
};
using TsRespPtr = std::unique_ptr<TS_RESP, TsRespDeleter>;
using Pkcs7Ptr = std::unique_ptr<PKCS7, Pkcs7Deleter>;
using TstInfoPtr = std::unique_ptr<TS_TST_INFO, TstInfoDeleter>;
using VerifyCtxPtr = std::unique_ptr<TS_VERIFY_CTX, VerifyCtxDeleter>;
using detail::openssl_error;
using detail::OpensslFree;
using detail::OwningStackPtr;
using detail::StackPtr;
using detail::StorePtr;

// The most specific thing OpenSSL said about a failure ("message imprint mismatch",
// "Verify error:unable to get local issuer certificate"), then the queue is cleared.
std::string take_openssl_reason() {
  std::string out;
  const char* data = nullptr;
  int flags = 0;
  unsigned long e;
  while ((e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) != 0) {
    const char* reason = ERR_reason_error_string(e);
    std::string one = reason ? reason : "unknown error";
    if (data != nullptr && (flags & ERR_TXT_STRING) != 0 && *data != '\0') {
      one += std::string(" (") + data + ")";
    }
    out = one;  // keep the last, most specific entry
  }
  ERR_clear_error();
  return out.empty() ? std::string("unknown error") : out;
}

// Decodes DER that must be consumed exactly; the caller owns the result.
template <class T>
T* d2i_all(std::string_view der, T* (*decode)(T**, const unsigned char**, long),
           void (*free_fn)(T*)) {
  const auto* begin = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* p = begin;
  T* obj = decode(nullptr, &p, static_cast<long>(der.size()));
  if (obj != nullptr && p != begin + der.size()) {
    free_fn(obj);
    return nullptr;
  }
  return obj;
}

const char* status_name(long s) {
  switch (s) {
    case 0:
      return "granted";
    case 1:
      return "grantedWithMods";
    case 2:
      return "rejection";
    case 3:
      return "waiting";
    case 4:
      return "revocationWarning";
    case 5:
      return "revocationNotification";
    default:
      return "unknown";
  }
}

// genTime ("YYYYMMDDHHMMSS[.f+]Z", RFC 3161 section 2.4.2) -> TimePoint.
Result<TimePoint> gen_time(const ASN1_GENERALIZEDTIME* t) {
  auto bad = make_error(Errc::parse_error, "timestamp genTime is malformed");
  if (t == nullptr) return bad;
  const unsigned char* d = ASN1_STRING_get0_data(t);
  int len = ASN1_STRING_length(t);
  if (d == nullptr || len < 15 || len > 40) return bad;
  std::string_view s(reinterpret_cast<const char*>(d), static_cast<size_t>(len));
  for (size_t i = 0; i < 14; ++i) {
    if (s[i] < '0' || s[i] > '9') return bad;
  }
  std::string rfc = std::string(s.substr(0, 4)) + "-" + std::string(s.substr(4, 2)) + "-" +
                    std::string(s.substr(6, 2)) + "T" + std::string(s.substr(8, 2)) + ":" +
                    std::string(s.substr(10, 2)) + ":" + std::string(s.substr(12, 2));
  std::string_view rest = s.substr(14);
  if (rest.empty() || rest.back() != 'Z') return bad;
  rfc += std::string(rest);  // ".fff Z" or "Z"; parse_rfc3339 validates the fraction
  auto parsed = parse_rfc3339(rfc);
  if (!parsed) return bad;
  return *parsed;
}

struct Digest {
  const EVP_MD* md;
  const char* name;
};

Result<Digest> imprint_digest(const X509_ALGOR* alg) {
  const ASN1_OBJECT* obj = nullptr;
  if (alg != nullptr) X509_ALGOR_get0(&obj, nullptr, nullptr, alg);
  switch (obj ? OBJ_obj2nid(obj) : NID_undef) {
    case NID_sha256:
      return Digest{EVP_sha256(), "sha256"};
    case NID_sha384:
      return Digest{EVP_sha384(), "sha384"};
    case NID_sha512:
      return Digest{EVP_sha512(), "sha512"};
    default:
      return make_error(Errc::verification,
                        "timestamp message imprint uses an unsupported hash algorithm (use "
                        "SHA-256, SHA-384 or SHA-512)");
  }
}

std::string tsa_name(const CertificateAuthority& ca) {
  if (!ca.uri.empty()) return ca.uri;
  if (!ca.subject.empty()) return ca.subject;
  if (!ca.chain.empty()) return ca.chain.back().subject_line();
  return "(unnamed)";
}

Result<Certificate> to_certificate(X509* x) {
  unsigned char* der = nullptr;
  int len = i2d_X509(x, &der);
  std::unique_ptr<unsigned char, OpensslFree> guard(der);
  if (len <= 0) return openssl_error(Errc::internal, "cannot encode a timestamp certificate");
  return Certificate::from_der(
      std::string_view(reinterpret_cast<const char*>(der), static_cast<size_t>(len)));
}

// One attempt against one authority: OpenSSL's TS verification, then our path validation of
// the signer.
Status verify_with(PKCS7* token, const std::string& digest, TimePoint when,
                   const std::vector<Certificate>& embedded, const CertificateAuthority& tsa) {
  const std::string who = "timestamp authority " + tsa_name(tsa);
  if (tsa.chain.empty()) return make_error(Errc::verification, who + " has no certificates");
  StorePtr store(X509_STORE_new());
  if (!store) return openssl_error(Errc::internal, "X509_STORE_new failed");
  if (X509_STORE_add_cert(store.get(), const_cast<X509*>(static_cast<const X509*>(
                                           tsa.chain.back().native()))) != 1) {
    return openssl_error(Errc::internal, "cannot add the timestamp authority root to the store");
  }
  X509_VERIFY_PARAM* param = X509_STORE_get0_param(store.get());
  if (param == nullptr) return openssl_error(Errc::internal, "no verification parameters");
  int64_t secs = std::chrono::floor<std::chrono::seconds>(when.time_since_epoch()).count();
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(secs));
  X509_VERIFY_PARAM_set_depth(param, 8);
  if (X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN) != 1) {
    return openssl_error(Errc::internal, "cannot set verification flags");
  }
  // Certificates the signer may be found among, and its chain built from: the token's own and
  // the authority's chain (sigstore's trusted_root lists the TSA signing certificate first).
  OwningStackPtr certs(sk_X509_new_null());
  if (!certs) return openssl_error(Errc::internal, "sk_X509_new_null failed");
  auto push = [&](const Certificate& c) {
    X509* x = const_cast<X509*>(static_cast<const X509*>(c.native()));
    if (x == nullptr || X509_up_ref(x) != 1) return false;
    if (sk_X509_push(certs.get(), x) <= 0) {
      X509_free(x);
      return false;
    }
    return true;
  };
  for (const auto& c : embedded) {
    if (!push(c)) return openssl_error(Errc::internal, "cannot collect certificates");
  }
  for (size_t i = 0; i + 1 < tsa.chain.size(); ++i) {
    if (!push(tsa.chain[i])) return openssl_error(Errc::internal, "cannot collect certificates");
  }

  VerifyCtxPtr ctx(TS_VERIFY_CTX_new());
  if (!ctx) return openssl_error(Errc::internal, "TS_VERIFY_CTX_new failed");
  TS_VERIFY_CTX_set_flags(ctx.get(), TS_VFY_VERSION | TS_VFY_SIGNATURE | TS_VFY_IMPRINT);
  auto* imprint = static_cast<unsigned char*>(OPENSSL_malloc(digest.size()));
  if (imprint == nullptr) return openssl_error(Errc::internal, "out of memory");
  // NOLINTNEXTLINE(bugprone-not-null-terminated-result): a digest, not a string
  std::memcpy(imprint, digest.data(), digest.size());
  // The context owns what is set from here on.
  TS_VERIFY_CTX_set_imprint(ctx.get(), imprint, static_cast<long>(digest.size()));
  TS_VERIFY_CTX_set_store(ctx.get(), store.release());
  STACK_OF(X509)* certs_raw = certs.release();
  TS_VERIFY_CTX_set_certs(ctx.get(), certs_raw);

  ERR_clear_error();
  if (TS_RESP_verify_token(ctx.get(), token) != 1) {
    return make_error(Errc::verification,
                      "timestamp does not verify against " + who + ": " + take_openssl_reason());
  }
  // The signer, for our own path validation.
  StackPtr signers(PKCS7_get0_signers(token, certs_raw, 0));
  if (!signers || sk_X509_num(signers.get()) != 1) {
    return openssl_error(Errc::verification, "timestamp does not name exactly one signer");
  }
  auto signer = to_certificate(sk_X509_value(signers.get(), 0));
  if (!signer) return std::move(signer).error();
  auto chain = verify_certificate(*signer, embedded, tsa, when, ExtendedKeyUsage::time_stamping);
  if (!chain) {
    return make_error(Errc::verification,
                      "timestamp signing certificate: " + chain.error().message);
  }
  ERR_clear_error();
  return {};
}

}  // namespace

Result<TimePoint> verify_rfc3161_timestamp(std::string_view timestamp,
                                           std::string_view signed_bytes,
                                           const std::vector<CertificateAuthority>& tsas) {
  if (timestamp.empty()) return make_error(Errc::parse_error, "timestamp is empty");
  if (timestamp.size() > kMaxTimestampBytes) {
    return make_error(Errc::too_large, "timestamp is larger than 128 KiB");
  }
  TsRespPtr resp;
  Pkcs7Ptr bare;
  PKCS7* token = nullptr;
  if (TS_RESP* r = d2i_all<TS_RESP>(timestamp, d2i_TS_RESP, TS_RESP_free)) {
    resp.reset(r);
    ERR_clear_error();
    TS_STATUS_INFO* si = TS_RESP_get_status_info(resp.get());
    const ASN1_INTEGER* st = si ? TS_STATUS_INFO_get0_status(si) : nullptr;
    long status = st ? ASN1_INTEGER_get(st) : -1;
    if (status != 0 && status != 1) {
      return openssl_error(Errc::verification,
                           std::string("timestamp authority did not grant the timestamp (status ") +
                               status_name(status) + ")");
    }
    token = TS_RESP_get_token(resp.get());
  } else if (PKCS7* t = d2i_all<PKCS7>(timestamp, d2i_PKCS7, PKCS7_free)) {
    bare.reset(t);
    token = bare.get();
  } else {
    return openssl_error(Errc::parse_error,
                         "timestamp is neither a DER TimeStampResp nor a TimeStampToken");
  }
  ERR_clear_error();
  if (token == nullptr || !PKCS7_type_is_signed(token)) {
    return openssl_error(Errc::parse_error, "timestamp token is not CMS SignedData");
  }
  TstInfoPtr tst(PKCS7_to_TS_TST_INFO(token));
  if (!tst) return openssl_error(Errc::parse_error, "timestamp token holds no TSTInfo");
  auto when = gen_time(TS_TST_INFO_get_time(tst.get()));
  if (!when) return openssl_error(when.error().code, when.error().message);

  TS_MSG_IMPRINT* mi = TS_TST_INFO_get_msg_imprint(tst.get());
  if (mi == nullptr) return openssl_error(Errc::parse_error, "timestamp has no message imprint");
  auto dg = imprint_digest(TS_MSG_IMPRINT_get_algo(mi));
  if (!dg) return openssl_error(dg.error().code, dg.error().message);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(signed_bytes.data(), signed_bytes.size(), md, &md_len, dg->md, nullptr) != 1) {
    return openssl_error(Errc::internal, "cannot hash the timestamped bytes");
  }
  std::string digest(reinterpret_cast<const char*>(md), md_len);
  const ASN1_OCTET_STRING* stated = TS_MSG_IMPRINT_get_msg(mi);
  if (stated == nullptr || ASN1_STRING_length(stated) != static_cast<int>(md_len) ||
      std::memcmp(ASN1_STRING_get0_data(stated), md, md_len) != 0) {
    return openssl_error(Errc::verification, std::string("timestamp is not over these bytes (") +
                                                 dg->name + " message imprint mismatch)");
  }

  // Certificates the token carries: untrusted helpers for building the signer's path.
  std::vector<Certificate> embedded;
  STACK_OF(X509)* token_certs = token->d.sign != nullptr ? token->d.sign->cert : nullptr;
  int n = token_certs ? sk_X509_num(token_certs) : 0;
  if (n > kMaxEmbeddedCerts) {
    return openssl_error(Errc::verification, "timestamp embeds more than 16 certificates");
  }
  for (int i = 0; i < n; ++i) {
    auto c = to_certificate(sk_X509_value(token_certs, i));
    if (!c) {
      return make_error(Errc::parse_error,
                        "timestamp embeds a certificate sigil cannot use: " + c.error().message);
    }
    embedded.push_back(std::move(*c));
  }

  if (tsas.empty()) {
    return make_error(Errc::verification, "no timestamp authority is configured");
  }
  Error last;
  for (const auto& tsa : tsas) {
    auto st = verify_with(token, digest, *when, embedded, tsa);
    if (st) return *when;
    last = std::move(st).error();
  }
  ERR_clear_error();
  return last;
}

}  // namespace sigil::crypto
