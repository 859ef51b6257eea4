// crypto/cert_identity.cpp: see x509.hpp (certificate_identity, san_type_name). The signer's
// identity in a Fulcio certificate: its subject alternative names (strictly decoded: UTF-8,
// ASCII where RFC 5280 says so, IP addresses in their canonical text) and the OIDC issuer from
// Fulcio's extensions (1.3.6.1.4.1.57264.1.8, else the legacy .1.1).
#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "crypto/detail/ossl.hpp"
#include "crypto/x509.hpp"

namespace sigil::crypto {

namespace {

constexpr const char* kOidFulcioIssuerV1 = "1.3.6.1.4.1.57264.1.1";
constexpr const char* kOidFulcioIssuerV2 = "1.3.6.1.4.1.57264.1.8";
constexpr const char* kOidFulcioUsername = "1.3.6.1.4.1.57264.1.7";

using detail::GeneralNamesPtr;
using detail::ObjectPtr;
using detail::openssl_error;
using detail::Utf8Ptr;

// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF), as Go's
// utf8.Valid, which cosign's parsers apply to UTF8String values.
bool valid_utf8(std::string_view s) noexcept {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

bool is_ascii(std::string_view s) noexcept {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

std::string_view asn1_view(const ASN1_STRING* s) {
  if (s == nullptr) return {};
  const unsigned char* data = ASN1_STRING_get0_data(s);
  int len = ASN1_STRING_length(s);
  if (data == nullptr || len <= 0) return {};
  return std::string_view(reinterpret_cast<const char*>(data), static_cast<size_t>(len));
}

// The textual form Go's net.IP.String() gives: dotted quad for IPv4 (also for IPv4-mapped
// IPv6), RFC 5952 for IPv6.
Result<std::string> ip_text(std::string_view raw) {
  char buf[INET6_ADDRSTRLEN] = {0};
  const auto* b = reinterpret_cast<const unsigned char*>(raw.data());
  if (raw.size() == 4 ||
      (raw.size() == 16 && std::memcmp(b, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)) {
    const unsigned char* v4 = raw.size() == 4 ? b : b + 12;
    return std::to_string(v4[0]) + "." + std::to_string(v4[1]) + "." + std::to_string(v4[2]) + "." +
           std::to_string(v4[3]);
  }
  if (raw.size() != 16) {
    return make_error(Errc::parse_error, "certificate has an IP address SAN of " +
                                             std::to_string(raw.size()) + " bytes");
  }
  if (inet_ntop(AF_INET6, raw.data(), buf, sizeof(buf)) == nullptr) {
    return make_error(Errc::parse_error, "certificate has a malformed IPv6 address SAN");
  }
  return std::string(buf);
}

ObjectPtr make_oid(const char* dotted) {
  return ObjectPtr(OBJ_txt2obj(dotted, 1));
}

// The extension with this OID, or nullptr. Duplicates were rejected when the certificate parsed.
X509_EXTENSION* find_extension(const X509* x, const ASN1_OBJECT* oid) {
  int idx = X509_get_ext_by_OBJ(x, oid, -1);
  return idx < 0 ? nullptr : X509_get_ext(x, idx);
}

}  // namespace

// ---- identity -------------------------------------------------------------------------------

const char* san_type_name(SubjectAltName::Type t) noexcept {
  switch (t) {
    case SubjectAltName::Type::email:
      return "email";
    case SubjectAltName::Type::uri:
      return "uri";
    case SubjectAltName::Type::dns:
      return "dns";
    case SubjectAltName::Type::ip:
      return "ip";
    case SubjectAltName::Type::other_name:
      return "othername";
  }
  return "unknown";
}

Result<CertificateIdentity> certificate_identity(const Certificate& leaf) {
  const X509* x = static_cast<const X509*>(leaf.native());
  if (x == nullptr)
    return make_error(Errc::internal, "certificate_identity on an empty Certificate");
  CertificateIdentity id;

  int crit = 0;
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, &crit, nullptr)));
  if (!names && crit >= 0) {
    return openssl_error(Errc::parse_error, "certificate subjectAltName extension is malformed");
  }
  if (!names && crit == -2) {
    return openssl_error(Errc::parse_error, "certificate has more than one subjectAltName");
  }
  ObjectPtr username_oid = make_oid(kOidFulcioUsername);
  if (!username_oid) return openssl_error(Errc::internal, "cannot create an OID");
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    SubjectAltName san;
    switch (gn->type) {
      case GEN_EMAIL:
      case GEN_URI:
      case GEN_DNS: {
        std::string_view v = asn1_view(gn->d.ia5);
        if (!is_ascii(v)) {
          return openssl_error(Errc::parse_error,
                               "certificate subjectAltName holds a non-ASCII IA5String");
        }
        san.type = gn->type == GEN_EMAIL ? SubjectAltName::Type::email
                   : gn->type == GEN_URI ? SubjectAltName::Type::uri
                                         : SubjectAltName::Type::dns;
        san.value = std::string(v);
        break;
      }
      case GEN_IPADD: {
        auto text = ip_text(asn1_view(gn->d.iPAddress));
        if (!text) return openssl_error(text.error().code, text.error().message);
        san.type = SubjectAltName::Type::ip;
        san.value = std::move(*text);
        break;
      }
      case GEN_OTHERNAME: {
        const OTHERNAME* on = gn->d.otherName;
        if (on == nullptr || on->type_id == nullptr ||
            OBJ_cmp(on->type_id, username_oid.get()) != 0) {
          continue;  // other OtherName types are not identities sigil matches
        }
        if (on->value == nullptr || on->value->type != V_ASN1_UTF8STRING) {
          return openssl_error(Errc::parse_error,
                               "certificate username SAN (1.3.6.1.4.1.57264.1.7) is not a "
                               "UTF8String");
        }
        std::string_view v = asn1_view(on->value->value.utf8string);
        if (!valid_utf8(v)) {
          return openssl_error(Errc::parse_error,
                               "certificate username SAN (1.3.6.1.4.1.57264.1.7) is not UTF-8");
        }
        san.type = SubjectAltName::Type::other_name;
        san.value = std::string(v);
        break;
      }
      default:
        continue;  // directoryName, registeredID, x400Address, ediPartyName
    }
    id.sans.push_back(std::move(san));
  }

  ObjectPtr v2_oid = make_oid(kOidFulcioIssuerV2);
  ObjectPtr v1_oid = make_oid(kOidFulcioIssuerV1);
  if (!v2_oid || !v1_oid) return openssl_error(Errc::internal, "cannot create an OID");
  if (X509_EXTENSION* v2 = find_extension(x, v2_oid.get())) {
    std::string_view raw = asn1_view(X509_EXTENSION_get_data(v2));
    const auto* begin = reinterpret_cast<const unsigned char*>(raw.data());
    const unsigned char* p = begin;
    Utf8Ptr s(raw.empty() ? nullptr
                          : d2i_ASN1_UTF8STRING(nullptr, &p, static_cast<long>(raw.size())));
    if (!s || p != begin + raw.size()) {
      return openssl_error(Errc::parse_error,
                           "certificate OIDC issuer extension 1.3.6.1.4.1.57264.1.8 is not a DER "
                           "UTF8String");
    }
    std::string_view v = asn1_view(s.get());
    if (!valid_utf8(v)) {
      return openssl_error(Errc::parse_error,
                           "certificate OIDC issuer extension 1.3.6.1.4.1.57264.1.8 is not UTF-8");
    }
    id.issuer = std::string(v);
    // Fulcio writes both from one token. Two that disagree would have sigil, sigstore-go (the
    // last one listed) and cosign (.1.1) name different issuers for one certificate.
    if (X509_EXTENSION* v1 = find_extension(x, v1_oid.get());
        v1 != nullptr && asn1_view(X509_EXTENSION_get_data(v1)) != v) {
      return openssl_error(Errc::parse_error,
                           "certificate OIDC issuer extensions 1.3.6.1.4.1.57264.1.1 and .1.8 "
                           "disagree");
    }
  } else if (X509_EXTENSION* v1 = find_extension(x, v1_oid.get())) {
    id.issuer = std::string(asn1_view(X509_EXTENSION_get_data(v1)));
  }
  ERR_clear_error();
  return id;
}

}  // namespace sigil::crypto
