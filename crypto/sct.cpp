// crypto/sct.cpp: see sct.hpp. OpenSSL's CT API parses the SCT list; the RFC 6962 signed data
// is rebuilt here (OpenSSL's CTLOG_STORE can only be filled from a file, and crypto/ does no I/O)
// and checked with the CT log's key through crypto/keys.
#include "crypto/sct.hpp"

#include <openssl/ct.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/encoding.hpp"
#include "crypto/detail/ossl.hpp"

namespace sigil::crypto {

namespace {

// A Fulcio leaf carries one SCT; a list this long is not worth the signature checks.
constexpr int kMaxScts = 16;

struct SctListDeleter {
  void operator()(STACK_OF(SCT) * p) const noexcept { SCT_LIST_free(p); }
};
using SctListPtr = std::unique_ptr<STACK_OF(SCT), SctListDeleter>;
using detail::openssl_error;
using detail::OpensslFree;
using detail::X509Ptr;

void put_u8(std::string& out, unsigned v) {
  out.push_back(static_cast<char>(v & 0xff));
}
void put_u16(std::string& out, size_t v) {
  put_u8(out, static_cast<unsigned>(v >> 8));
  put_u8(out, static_cast<unsigned>(v));
}
void put_u24(std::string& out, size_t v) {
  put_u8(out, static_cast<unsigned>(v >> 16));
  put_u16(out, v & 0xffff);
}
void put_u64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) put_u8(out, static_cast<unsigned>(v >> shift));
}

TimePoint from_millis(uint64_t ms) noexcept {
  using Dur = TimePoint::duration;
  constexpr auto kMaxMs = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Dur::max()).count());
  if (ms >= kMaxMs) return TimePoint::max();
  return TimePoint(
      std::chrono::duration_cast<Dur>(std::chrono::milliseconds(static_cast<int64_t>(ms))));
}

std::string short_hex(std::string_view raw) {
  return hex_encode(raw.substr(0, 8));
}

// The precertificate TBS: the leaf's TBSCertificate re-encoded without the SCT list extension
// (RFC 6962 section 3.2: the poison extension of the precertificate and the SCT list of the
// final certificate are the only differences).
// ---- the precertificate TBS by editing the DER ----------------------------------------------
// Certificate::from_der admits only DER whose TBSCertificate re-encodes to itself, so removing
// the SCT list extension from those bytes and re-encoding the three enclosing lengths minimally
// gives exactly what OpenSSL's re-encoding of a copy without that extension gives (RFC 6962
// section 3.2), without the copy (which decodes the public key again: in OpenSSL 3.0 that costs
// as much as a signature check). Anything unexpected returns nullopt: the copy is made then.

struct DerItem {
  size_t start = 0;   // offset of the tag
  size_t header = 0;  // tag + length bytes
  size_t length = 0;  // content bytes
  size_t end() const { return start + header + length; }
};

std::optional<DerItem> der_item(std::string_view der, size_t pos) {
  if (pos + 2 > der.size()) return std::nullopt;
  auto b = [&](size_t i) { return static_cast<unsigned char>(der[i]); };
  if ((b(pos) & 0x1f) == 0x1f) return std::nullopt;  // multi-byte tags: not in a TBS we edit
  DerItem it;
  it.start = pos;
  unsigned first = b(pos + 1);
  if (first < 0x80) {
    it.header = 2;
    it.length = first;
  } else {
    size_t n = first & 0x7f;
    if (n == 0 || n > 4 || pos + 2 + n > der.size()) return std::nullopt;
    for (size_t i = 0; i < n; ++i) it.length = (it.length << 8) | b(pos + 2 + i);
    it.header = 2 + n;
  }
  if (it.end() > der.size()) return std::nullopt;
  return it;
}

std::string der_wrap(unsigned char tag, std::string_view content) {
  std::string out(1, static_cast<char>(tag));
  const size_t n = content.size();
  if (n < 0x80) {
    out.push_back(static_cast<char>(n));
  } else {
    std::string len;
    for (size_t v = n; v != 0; v >>= 8) len.insert(len.begin(), static_cast<char>(v & 0xff));
    out.push_back(static_cast<char>(0x80 | len.size()));
    out += len;
  }
  out += content;
  return out;
}

std::optional<std::string> precert_tbs_from_der(std::string_view cert) {
  // OID 1.3.6.1.4.1.11129.2.4.2 (embedded SCT list), DER.
  static constexpr std::string_view kSctOid("\x06\x0a\x2b\x06\x01\x04\x01\xd6\x79\x02\x04\x02", 12);
  auto outer = der_item(cert, 0);
  if (!outer || cert[0] != 0x30) return std::nullopt;
  auto tbs = der_item(cert, outer->header);
  if (!tbs || cert[tbs->start] != 0x30) return std::nullopt;
  const std::string_view tbs_der = cert.substr(tbs->start, tbs->header + tbs->length);
  // The TBS's elements; the extensions are the [3] at the end.
  size_t pos = tbs->header;
  std::optional<DerItem> exts_wrap;
  while (pos < tbs_der.size()) {
    auto it = der_item(tbs_der, pos);
    if (!it) return std::nullopt;
    if (static_cast<unsigned char>(tbs_der[pos]) == 0xa3) exts_wrap = it;
    pos = it->end();
  }
  if (!exts_wrap || exts_wrap->end() != tbs_der.size()) return std::nullopt;
  auto exts = der_item(tbs_der, exts_wrap->start + exts_wrap->header);
  if (!exts || tbs_der[exts->start] != 0x30 || exts->end() != exts_wrap->end()) {
    return std::nullopt;
  }
  std::string kept;  // the Extensions' content without the SCT list
  size_t removed = 0;
  for (pos = exts->start + exts->header; pos < exts->end();) {
    auto ext = der_item(tbs_der, pos);
    if (!ext || tbs_der[pos] != 0x30) return std::nullopt;
    const std::string_view body = tbs_der.substr(pos + ext->header, ext->length);
    if (body.substr(0, kSctOid.size()) == kSctOid) {
      ++removed;
    } else {
      kept += tbs_der.substr(pos, ext->header + ext->length);
    }
    pos = ext->end();
  }
  if (removed != 1 || kept.empty()) return std::nullopt;
  std::string content(tbs_der.substr(tbs->header, exts_wrap->start - tbs->header));
  content += der_wrap(0xa3, der_wrap(0x30, kept));
  return der_wrap(0x30, content);
}

// The precertificate TBS of a leaf that carries an SCT list: edited from its DER, or (for
// shapes the editor does not expect) re-encoded by OpenSSL from a copy without the extension.
Result<std::string> precert_tbs(const X509* leaf) {
  X509Ptr dup(X509_dup(leaf));
  if (!dup) return openssl_error(Errc::internal, "cannot copy the certificate");
  int idx = X509_get_ext_by_NID(dup.get(), NID_ct_precert_scts, -1);
  if (idx < 0) return openssl_error(Errc::internal, "SCT extension vanished");
  X509_EXTENSION* ext = X509_delete_ext(dup.get(), idx);
  if (ext == nullptr) return openssl_error(Errc::internal, "cannot remove the SCT extension");
  X509_EXTENSION_free(ext);
  unsigned char* der = nullptr;
  int len = i2d_re_X509_tbs(dup.get(), &der);
  std::unique_ptr<unsigned char, OpensslFree> guard(der);
  if (len <= 0) return openssl_error(Errc::internal, "cannot re-encode the precertificate TBS");
  return std::string(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
}

// Checks one SCT; the error says why it does not count.
Status check_sct(const SCT* sct, const std::string& tbs, const std::string& issuer_key_hash,
                 const std::vector<TransparencyLog>& ctlogs) {
  if (SCT_get_version(sct) != SCT_VERSION_V1) {
    return make_error(Errc::verification, "SCT has an unknown version");
  }
  unsigned char* id_data = nullptr;
  size_t id_len = SCT_get0_log_id(sct, &id_data);
  std::string_view log_id(reinterpret_cast<const char*>(id_data), id_data ? id_len : 0);
  const TransparencyLog* log = find_log(ctlogs, log_id);
  if (log == nullptr) {
    return make_error(Errc::verification,
                      "SCT is from CT log " + short_hex(log_id) + "..., which is not trusted");
  }
  uint64_t ts = SCT_get_timestamp(sct);
  TimePoint when = from_millis(ts);
  if (!log->valid_for.contains(when)) {
    return make_error(Errc::verification,
                      "SCT timestamp " + format_time(when) +
                          " is outside the validity window of CT log " +
                          (log->base_url.empty() ? short_hex(log_id) : log->base_url));
  }
  int nid = SCT_get_signature_nid(sct);
  KeyType kt = log->key.type();
  bool ec = kt == KeyType::ecdsa_p256 || kt == KeyType::ecdsa_p384 || kt == KeyType::ecdsa_p521;
  if (!((nid == NID_ecdsa_with_SHA256 && ec) ||
        (nid == NID_sha256WithRSAEncryption && kt == KeyType::rsa))) {
    return make_error(Errc::verification,
                      "SCT signature algorithm does not match the key of CT log " +
                          (log->base_url.empty() ? short_hex(log_id) : log->base_url));
  }
  unsigned char* ext = nullptr;
  size_t ext_len = SCT_get0_extensions(sct, &ext);
  unsigned char* sig = nullptr;
  size_t sig_len = SCT_get0_signature(sct, &sig);
  if (sig == nullptr || sig_len == 0) return make_error(Errc::verification, "SCT has no signature");
  if (ext_len > 0xffff || tbs.size() > 0xffffff) {
    return make_error(Errc::verification, "SCT fields are too long");
  }
  // RFC 6962 section 3.2, digitally-signed struct for a precert_entry.
  std::string signed_data;
  signed_data.reserve(tbs.size() + ext_len + 64);
  put_u8(signed_data, 0);  // version v1
  put_u8(signed_data, 0);  // signature_type certificate_timestamp
  put_u64(signed_data, ts);
  put_u16(signed_data, 1);  // entry_type precert_entry
  signed_data += issuer_key_hash;
  put_u24(signed_data, tbs.size());
  signed_data += tbs;
  put_u16(signed_data, ext_len);
  if (ext_len > 0 && ext != nullptr)
    signed_data.append(reinterpret_cast<const char*>(ext), ext_len);
  auto ok =
      log->key.verify(signed_data, std::string_view(reinterpret_cast<const char*>(sig), sig_len),
                      HashAlgorithm::sha256);
  if (!ok) {
    return make_error(Errc::verification,
                      "SCT signature from CT log " +
                          (log->base_url.empty() ? short_hex(log_id) : log->base_url) +
                          " does not verify");
  }
  return {};
}

}  // namespace

Status verify_embedded_sct(const Certificate& leaf, const Certificate& issuer,
                           const std::vector<TransparencyLog>& ctlogs) {
  const auto* x = static_cast<const X509*>(leaf.native());
  if (x == nullptr || issuer.native() == nullptr) {
    return make_error(Errc::internal, "verify_embedded_sct on an empty certificate");
  }
  int crit = 0;
  SctListPtr scts(
      static_cast<STACK_OF(SCT)*>(X509_get_ext_d2i(x, NID_ct_precert_scts, &crit, nullptr)));
  if (!scts) {
    if (crit == -1) {
      ERR_clear_error();
      return make_error(Errc::verification,
                        "the certificate has no embedded SCT (signed certificate timestamp)");
    }
    return openssl_error(Errc::verification, "the certificate's embedded SCT list is malformed");
  }
  int n = sk_SCT_num(scts.get());
  if (n <= 0) return openssl_error(Errc::verification, "the certificate's SCT list is empty");
  if (n > kMaxScts) {
    return openssl_error(Errc::verification, "the certificate carries more than 16 SCTs");
  }
  Result<std::string> tbs = make_error(Errc::internal, "no precertificate TBS");
  if (auto edited = precert_tbs_from_der(leaf.der())) {
    tbs = std::move(*edited);
  } else {
    tbs = precert_tbs(x);
  }
  if (!tbs) return std::move(tbs).error();
  const std::string issuer_key_hash = sha256(issuer.spki_der());
  if (issuer_key_hash.size() != 32) return make_error(Errc::internal, "SHA-256 failed");

  std::string reasons;
  for (int i = 0; i < n; ++i) {
    auto st = check_sct(sk_SCT_value(scts.get(), i), *tbs, issuer_key_hash, ctlogs);
    if (st) {
      ERR_clear_error();
      return {};
    }
    if (!reasons.empty()) reasons += "; ";
    reasons += st.error().message;
  }
  ERR_clear_error();
  return make_error(Errc::verification, n == 1 ? "embedded SCT does not verify: " + reasons
                                               : "none of the " + std::to_string(n) +
                                                     " embedded SCTs verifies: " + reasons);
}

}  // namespace sigil::crypto
