// crypto/x509.cpp: see x509.hpp. X.509 parsing, Fulcio identity extensions and path validation
// with OpenSSL 3's X509_STORE, plus the checks OpenSSL does not make for us (extended key usage
// for code signing, leaf-is-not-a-CA, the hybrid validity model, the CA's validFor window).
// The cache of validated paths (ChainCache) and the short validation through it are in
// chain_cache.cpp, the signer's identity (certificate_identity) in cert_identity.cpp, and
// time conversions (ASN1_TIME, RFC 3339) in time.cpp.
#include "crypto/x509.hpp"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "common/encoding.hpp"
#include "crypto/detail/ossl.hpp"
#include "crypto/x509_detail.hpp"

namespace sigil::crypto {

namespace {

// A Fulcio leaf is 2-4 KiB; CA certificates are smaller. Anything this large is not a
// certificate sigil has a use for.
constexpr size_t kMaxCertificateBytes = 64 * 1024;
constexpr size_t kMaxPemBytes = 1024 * 1024;
constexpr size_t kMaxPemCertificates = 16;
// leaf + at most 6 intermediates + trust anchor.
constexpr size_t kMaxPathLength = 8;
constexpr size_t kMaxUntrusted = 16;

using detail::asn1_to_time;
using detail::check_path;
using detail::mutable_x509;
using detail::openssl_error;
using detail::OpensslFree;
using detail::OwningStackPtr;
using detail::set_verify_params;
using detail::StackPtr;
using detail::StoreCtxPtr;
using detail::StorePtr;
using detail::X509Ptr;

// ---- small text helpers ---------------------------------------------------------------------

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool only_space(std::string_view s) noexcept {
  for (char c : s) {
    if (!is_space(c)) return false;
  }
  return true;
}

// RFC 5280 section 4.2: a certificate MUST NOT include more than one instance of an extension.
bool has_duplicate_extensions(const X509* x) {
  int n = X509_get_ext_count(x);
  for (int i = 0; i < n; ++i) {
    const ASN1_OBJECT* a = X509_EXTENSION_get_object(X509_get_ext(x, i));
    for (int j = 0; j < i; ++j) {
      if (OBJ_cmp(a, X509_EXTENSION_get_object(X509_get_ext(x, j))) == 0) return true;
    }
  }
  return false;
}

Result<std::string> i2d_string(X509* x) {
  int len = i2d_X509(x, nullptr);
  if (len <= 0) return openssl_error(Errc::internal, "cannot encode certificate");
  std::string out(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  if (i2d_X509(x, &p) != len) return openssl_error(Errc::internal, "cannot encode certificate");
  return out;
}

// Reads one DER tag-length header at der[pos]; returns the header length and sets len, or 0.
size_t der_header(std::string_view der, size_t pos, size_t& len) {
  if (pos + 2 > der.size()) return 0;
  auto b = [&](size_t i) { return static_cast<unsigned char>(der[i]); };
  unsigned first = b(pos + 1);
  if (first < 0x80) {
    len = first;
    return 2;
  }
  size_t n = first & 0x7f;
  if (n == 0 || n > 4 || pos + 2 + n > der.size()) return 0;
  len = 0;
  for (size_t i = 0; i < n; ++i) len = (len << 8) | b(pos + 2 + i);
  return 2 + n;
}

// The TBSCertificate bytes inside a certificate's DER (its first element), or empty.
std::string_view tbs_of(std::string_view der) {
  size_t outer_len = 0;
  size_t outer = der_header(der, 0, outer_len);
  if (outer == 0) return {};
  size_t tbs_len = 0;
  size_t tbs_hdr = der_header(der, outer, tbs_len);
  if (tbs_hdr == 0 || outer + tbs_hdr + tbs_len > der.size()) return {};
  return der.substr(outer, tbs_hdr + tbs_len);
}

// OpenSSL keeps the TBSCertificate exactly as received (and hashes that for the signature);
// re-encoding it must give the same bytes, or the input was BER rather than DER and the
// precertificate TBS rebuilt for SCTs would not be what was signed. The re-encoding is done on
// x itself, before anyone shares it (a copy would decode the public key a second time, which in
// OpenSSL 3.0 costs as much as a P-256 signature check): from then on OpenSSL encodes x's TBS
// afresh whenever it needs the bytes, and this check is what makes those the bytes received.
bool tbs_is_der(X509* x, std::string_view der) {
  std::string_view orig = tbs_of(der);
  if (orig.empty()) return false;
  unsigned char* re = nullptr;
  int re_len = i2d_re_X509_tbs(x, &re);
  std::unique_ptr<unsigned char, OpensslFree> re_guard(re);
  return re_len > 0 && static_cast<size_t>(re_len) == orig.size() &&
         std::memcmp(orig.data(), re, orig.size()) == 0;
}

std::string describe_range(const TimeRange& r) {
  return "[" + (r.start ? format_time(*r.start) : std::string("-")) + ", " +
         (r.end ? format_time(*r.end) : std::string("-")) + "]";
}

std::string ca_name(const CertificateAuthority& ca) {
  if (!ca.uri.empty()) return printable(ca.uri);
  if (!ca.subject.empty()) return printable(ca.subject);
  if (!ca.chain.empty()) {
    std::string s = ca.chain.back().subject_line();
    if (!s.empty()) return s;
  }
  return "(unnamed)";
}

const char* eku_name(ExtendedKeyUsage eku) noexcept {
  return eku == ExtendedKeyUsage::code_signing ? "code signing" : "time stamping";
}

uint32_t eku_bit(ExtendedKeyUsage eku) noexcept {
  return eku == ExtendedKeyUsage::code_signing ? XKU_CODE_SIGN : XKU_TIMESTAMP;
}

std::string cert_label(const Certificate& c) {
  std::string s = c.subject_line();
  return s.empty() ? std::string("(empty subject)") : s;
}

}  // namespace

struct CertificateAccess {
  static Certificate make(X509Ptr x, std::string der, std::string spki, TimePoint nb,
                          TimePoint na) {
    Certificate c;
    X509* raw = x.release();
    c.x509_ = std::shared_ptr<void>(raw, [](void* p) { X509_free(static_cast<X509*>(p)); });
    c.der_ = std::move(der);
    c.spki_der_ = std::move(spki);
    c.not_before_ = nb;
    c.not_after_ = na;
    return c;
  }
};

// ---- Certificate ------------------------------------------------------------------------------

Result<Certificate> Certificate::from_der(std::string_view der) {
  if (der.empty()) return make_error(Errc::parse_error, "certificate DER is empty");
  if (der.size() > kMaxCertificateBytes) {
    return make_error(Errc::too_large, "certificate is larger than 64 KiB");
  }
  const auto* begin = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* p = begin;
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!x) return openssl_error(Errc::parse_error, "certificate DER does not parse");
  if (p != begin + der.size()) {
    return openssl_error(Errc::parse_error, "certificate DER has trailing bytes");
  }
  // Canonical DER only (as Go's parser, and so cosign, demands): the bytes we hash, compare and
  // re-encode for SCTs are then the bytes we were given.
  auto again = i2d_string(x.get());
  if (!again) return std::move(again).error();
  if (*again != der || !tbs_is_der(x.get(), der)) {
    return openssl_error(Errc::parse_error, "certificate is not DER-encoded (BER is not accepted)");
  }
  // Fills OpenSSL's extension cache now, once, so later shared use only reads it.
  uint32_t flags = X509_get_extension_flags(x.get());
  if ((flags & EXFLAG_INVALID) != 0) {
    return openssl_error(Errc::parse_error, "certificate has a malformed extension");
  }
  if (has_duplicate_extensions(x.get())) {
    return openssl_error(Errc::parse_error, "certificate repeats an extension");
  }
  auto nb = asn1_to_time(X509_get0_notBefore(x.get()), "notBefore");
  if (!nb) return std::move(nb).error();
  auto na = asn1_to_time(X509_get0_notAfter(x.get()), "notAfter");
  if (!na) return std::move(na).error();
  X509_PUBKEY* pub = X509_get_X509_PUBKEY(x.get());
  unsigned char* spki = nullptr;
  int spki_len = pub ? i2d_X509_PUBKEY(pub, &spki) : -1;
  std::unique_ptr<unsigned char, OpensslFree> spki_guard(spki);
  if (spki_len <= 0) {
    return openssl_error(Errc::parse_error, "certificate public key cannot be encoded");
  }
  std::string spki_der(reinterpret_cast<const char*>(spki), static_cast<size_t>(spki_len));
  ERR_clear_error();
  return CertificateAccess::make(std::move(x), std::string(der), std::move(spki_der), *nb, *na);
}

Result<Certificate> Certificate::from_pem(std::string_view pem) {
  auto certs = parse_pem_certificates(pem);
  if (!certs) return std::move(certs).error();
  if (certs->size() != 1) {
    return make_error(Errc::parse_error,
                      "expected exactly one certificate, found " + std::to_string(certs->size()));
  }
  return std::move(certs->front());
}

Result<PublicKey> Certificate::public_key() const {
  if (!x509_) return make_error(Errc::internal, "public_key called on an empty Certificate");
  // The key d2i_X509 decoded, shared: decoding spki_der_ again would cost a second decoder.
  const EVP_PKEY* pkey = X509_get0_pubkey(static_cast<const X509*>(x509_.get()));
  if (pkey == nullptr) return PublicKey::from_der(spki_der_);  // names OpenSSL's complaint
  return PublicKey::from_native(pkey, spki_der_);
}

std::string Certificate::subject_line() const {
  const auto* x = static_cast<const X509*>(x509_.get());
  if (x == nullptr) return {};
  const X509_NAME* name = X509_get_subject_name(x);
  if (name == nullptr) return {};
  std::string out;
  int n = X509_NAME_entry_count(name);
  for (int i = 0; i < n && out.size() < 300; ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
    const ASN1_OBJECT* obj = X509_NAME_ENTRY_get_object(e);
    std::string key;
    int nid = OBJ_obj2nid(obj);
    const char* sn = nid == NID_undef ? nullptr : OBJ_nid2sn(nid);
    if (sn != nullptr) {
      key = sn;
    } else {
      char buf[80] = {0};
      if (OBJ_obj2txt(buf, sizeof(buf), obj, 1) > 0) key = buf;
    }
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
    std::unique_ptr<unsigned char, OpensslFree> guard(utf8);
    std::string value = len >= 0 ? printable(std::string_view(reinterpret_cast<const char*>(utf8),
                                                              static_cast<size_t>(len)))
                                 : std::string("?");
    if (!out.empty()) out += ", ";
    out += key + "=" + value;
  }
  ERR_clear_error();
  return out;
}

bool Certificate::is_self_signed() const {
  X509* x = static_cast<X509*>(x509_.get());
  if (x == nullptr) return false;
  int rc = X509_self_signed(x, 1);
  ERR_clear_error();
  return rc == 1;
}

bool Certificate::is_ca() const {
  X509* x = static_cast<X509*>(x509_.get());
  if (x == nullptr) return false;
  return (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
}

// ---- PEM ----------------------------------------------------------------------------------------

Result<std::vector<Certificate>> parse_pem_certificates(std::string_view pem) {
  if (pem.size() > kMaxPemBytes) {
    return make_error(Errc::too_large, "certificate PEM is larger than 1 MiB");
  }
  std::vector<Certificate> out;
  constexpr std::string_view kBegin = "-----BEGIN ";
  size_t pos = 0;
  while (true) {
    size_t begin = pem.find(kBegin, pos);
    if (begin == std::string_view::npos) {
      if (!only_space(pem.substr(pos))) {
        return make_error(Errc::parse_error, out.empty()
                                                 ? "text before the first certificate PEM block"
                                                 : "unexpected text after a certificate PEM block");
      }
      break;
    }
    if (!only_space(pem.substr(pos, begin - pos))) {
      return make_error(Errc::parse_error, out.empty()
                                               ? "unexpected text before the first PEM block"
                                               : "unexpected text between PEM blocks");
    }
    size_t label_start = begin + kBegin.size();
    size_t label_end = pem.find("-----", label_start);
    if (label_end == std::string_view::npos) {
      return make_error(Errc::parse_error, "malformed PEM BEGIN line");
    }
    std::string_view label = pem.substr(label_start, label_end - label_start);
    if (label.find_first_of("\r\n") != std::string_view::npos) {
      return make_error(Errc::parse_error, "malformed PEM BEGIN line");
    }
    if (label.find("PRIVATE KEY") != std::string_view::npos) {
      return make_error(Errc::invalid_argument,
                        "a private key was given where a certificate is expected");
    }
    if (label != "CERTIFICATE") {
      return make_error(Errc::parse_error,
                        "PEM block type \"" + printable(label, 40) + "\" is not CERTIFICATE");
    }
    size_t body_start = label_end + 5;
    constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
    size_t end = pem.find(kEnd, body_start);
    if (end == std::string_view::npos) {
      return make_error(Errc::parse_error, "certificate PEM block has no END line");
    }
    std::string_view body = pem.substr(body_start, end - body_start);
    if (body.find(':') != std::string_view::npos) {
      return make_error(Errc::parse_error, "PEM headers are not allowed in a certificate block");
    }
    if (body.find("-----") != std::string_view::npos) {
      return make_error(Errc::parse_error, "certificate PEM block is not terminated");
    }
    if (out.size() == kMaxPemCertificates) {
      return make_error(Errc::too_large, "more than 16 certificates in PEM");
    }
    auto der = base64_decode(body);
    if (!der) return make_error(Errc::parse_error, "certificate PEM body is not valid base64");
    auto cert = Certificate::from_der(*der);
    if (!cert) {
      return make_error(cert.error().code, "certificate " + std::to_string(out.size() + 1) +
                                               " in PEM: " + cert.error().message);
    }
    out.push_back(std::move(*cert));
    pos = end + kEnd.size();
  }
  if (out.empty()) return make_error(Errc::parse_error, "no certificate PEM block found");
  return out;
}

// ---- path validation --------------------------------------------------------------------------

Status check_ca_certificates(const std::vector<Certificate>& chain, std::size_t first) {
  for (std::size_t i = first; i < chain.size(); ++i) {
    if (chain[i].native() == nullptr) return make_error(Errc::internal, "empty certificate");
    if (X509_check_ca(mutable_x509(chain[i])) == 0) {
      ERR_clear_error();
      const std::string subject = chain[i].subject_line();
      return make_error(Errc::invalid_argument,
                        "certificate " + std::to_string(i) + " is not a CA certificate (" +
                            (subject.empty() ? "empty subject" : "subject " + subject) +
                            "; no basicConstraints CA:TRUE, or no keyCertSign): list the CA's "
                            "certificates, not a signing certificate");
    }
  }
  return {};
}

// Sets what every validation here uses: the time (seconds; sub-second precision is checked by
// the callers), the depth, and the partial-chain mode (the anchor is whatever the store holds,
// self-signed or not: Go's x509 semantics, which sigstore-go and cosign use).
Status detail::set_verify_params(X509_STORE_CTX* ctx, TimePoint at) {
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
  if (param == nullptr) return openssl_error(Errc::internal, "no verification parameters");
  int64_t at_seconds = std::chrono::floor<std::chrono::seconds>(at.time_since_epoch()).count();
  if (at_seconds < static_cast<int64_t>(std::numeric_limits<time_t>::min()) ||
      at_seconds > static_cast<int64_t>(std::numeric_limits<time_t>::max())) {
    return make_error(Errc::verification, "verification time is out of range");
  }
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(at_seconds));
  X509_VERIFY_PARAM_set_depth(param, static_cast<int>(kMaxPathLength));
  if (X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN) != 1) {
    return openssl_error(Errc::internal, "cannot set verification flags");
  }
  return {};
}

// The checks every validated path passes last, whichever way it was built: its length, the
// hybrid model (every certificate on the path valid at the signing time: OpenSSL checked this
// at second resolution; this repeats it at full resolution), and Go's rule (x509.Verify with
// KeyUsages): a CA on the path that states extended key usages must allow this one.
Status detail::check_path(const VerifiedChain& chain, TimePoint at, ExtendedKeyUsage eku,
                          const std::string& who) {
  if (chain.path.size() < 2) {
    return make_error(Errc::verification,
                      "the signing certificate is itself the trust anchor of " + who);
  }
  if (chain.path.size() > kMaxPathLength) {
    return make_error(Errc::verification, "certificate path of " +
                                              std::to_string(chain.path.size()) +
                                              " certificates is longer than 8");
  }
  for (const auto& c : chain.path) {
    if (!c.valid_at(at)) {
      return make_error(Errc::verification, "certificate " + cert_label(c) + " is not valid at " +
                                                format_time(at) + " (valid " +
                                                format_time(c.not_before()) + " to " +
                                                format_time(c.not_after()) + ")");
    }
  }
  for (size_t i = 1; i < chain.path.size(); ++i) {
    X509* c = mutable_x509(chain.path[i]);
    if ((X509_get_extension_flags(c) & EXFLAG_XKUSAGE) != 0 &&
        (X509_get_extended_key_usage(c) & (eku_bit(eku) | XKU_ANYEKU)) == 0) {
      return make_error(Errc::verification, "CA certificate " + cert_label(chain.path[i]) +
                                                " does not permit " + eku_name(eku));
    }
  }
  return {};
}

Result<VerifiedChain> verify_certificate(const Certificate& leaf,
                                         const std::vector<Certificate>& untrusted_intermediates,
                                         const CertificateAuthority& ca, TimePoint at,
                                         ExtendedKeyUsage eku, ChainCache* cache) {
  const std::string who = "certificate authority " + ca_name(ca);
  if (leaf.native() == nullptr) {
    return make_error(Errc::internal, "verify_certificate on an empty leaf");
  }
  if (ca.chain.empty()) return make_error(Errc::verification, who + " has no certificates");
  for (const auto& c : ca.chain) {
    if (c.native() == nullptr) return make_error(Errc::internal, who + " has an empty certificate");
  }
  if (untrusted_intermediates.size() > kMaxUntrusted) {
    return make_error(Errc::verification, "more than 16 intermediate certificates were supplied");
  }
  X509* leaf_x = mutable_x509(leaf);

  // Checks OpenSSL does not make (no purpose is set: OpenSSL 3.0 has none for code signing).
  if (leaf.is_ca()) {
    return make_error(Errc::verification, "the signing certificate is a CA certificate");
  }
  uint32_t leaf_flags = X509_get_extension_flags(leaf_x);
  if ((leaf_flags & EXFLAG_XKUSAGE) == 0 ||
      (X509_get_extended_key_usage(leaf_x) & eku_bit(eku)) == 0) {
    return make_error(Errc::verification, std::string("the signing certificate lacks the ") +
                                              eku_name(eku) + " extended key usage");
  }
  if (!ca.valid_for.contains(at)) {
    return make_error(Errc::verification, "time " + format_time(at) +
                                              " is outside the validity window " +
                                              describe_range(ca.valid_for) + " of " + who);
  }
  if (cache != nullptr) {
    if (auto r =
            detail::verify_with_cache(leaf, untrusted_intermediates, ca, at, eku, who, *cache)) {
      return std::move(*r);
    }
  }

  StorePtr store(X509_STORE_new());
  if (!store) return openssl_error(Errc::internal, "X509_STORE_new failed");
  const Certificate& anchor = ca.chain.back();
  if (X509_STORE_add_cert(store.get(), mutable_x509(anchor)) != 1) {
    return openssl_error(Errc::internal, "cannot add the trust anchor to the store");
  }
  StackPtr untrusted(sk_X509_new_null());
  if (!untrusted) return openssl_error(Errc::internal, "sk_X509_new_null failed");
  for (const auto& c : untrusted_intermediates) {
    if (c.native() == nullptr || sk_X509_push(untrusted.get(), mutable_x509(c)) <= 0) {
      return openssl_error(Errc::internal, "cannot collect intermediate certificates");
    }
  }
  for (size_t i = 0; i + 1 < ca.chain.size(); ++i) {
    if (sk_X509_push(untrusted.get(), mutable_x509(ca.chain[i])) <= 0) {
      return openssl_error(Errc::internal, "cannot collect intermediate certificates");
    }
  }
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx) return openssl_error(Errc::internal, "X509_STORE_CTX_new failed");
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf_x, untrusted.get()) != 1) {
    return openssl_error(Errc::internal, "X509_STORE_CTX_init failed");
  }
  if (auto st = set_verify_params(ctx.get(), at); !st) return std::move(st).error();
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    int depth = X509_STORE_CTX_get_error_depth(ctx.get());
    std::string reason = X509_verify_cert_error_string(err);
    return openssl_error(Errc::verification, "certificate chain does not verify against " + who +
                                                 " at " + format_time(at) + ": " + reason +
                                                 " (depth " + std::to_string(depth) + ")");
  }
  OwningStackPtr chain(X509_STORE_CTX_get1_chain(ctx.get()));
  if (!chain) return openssl_error(Errc::internal, "no verified chain");

  // Map OpenSSL's chain back to the Certificate objects it was built from.
  VerifiedChain out;
  int n = sk_X509_num(chain.get());
  for (int i = 0; i < n; ++i) {
    const X509* c = sk_X509_value(chain.get(), i);
    const Certificate* found = nullptr;
    if (c == leaf_x) found = &leaf;
    for (const auto& u : untrusted_intermediates) {
      if (!found && u.native() == c) found = &u;
    }
    for (const auto& u : ca.chain) {
      if (!found && u.native() == c) found = &u;
    }
    if (found == nullptr) return openssl_error(Errc::internal, "verified chain has a stranger");
    out.path.push_back(*found);
  }
  ERR_clear_error();
  if (auto st = check_path(out, at, eku, who); !st) return std::move(st).error();
  if (cache != nullptr) detail::remember_chain(*cache, ca, out);
  return out;
}

Result<VerifiedChain> verify_certificate_any(
    const Certificate& leaf, const std::vector<Certificate>& untrusted_intermediates,
    const std::vector<CertificateAuthority>& cas, TimePoint at, ExtendedKeyUsage eku,
    ChainCache* cache) {
  if (cas.empty()) {
    return make_error(Errc::verification, "no certificate authority is configured");
  }
  Error last;
  const std::vector<Certificate> none;
  for (const auto& ca : cas) {
    const bool lists_intermediates = ca.chain.size() > 1;
    auto r = verify_certificate(leaf, lists_intermediates ? none : untrusted_intermediates, ca, at,
                                eku, cache);
    if (r) return r;
    last = std::move(r).error();
  }
  return last;
}

}  // namespace sigil::crypto
