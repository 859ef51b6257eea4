// Fuzzes certificate parsing (PEM bundles and single DER certificates) and everything sigil
// reads from a parsed certificate: the Fulcio identity, the subject line, the key, and a
// self-anchored path validation and SCT check that must fail cleanly.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/sct.hpp"
#include "crypto/x509.hpp"

namespace {

using namespace sigil::crypto;

void exercise(const Certificate& cert) {
  // Round trip: what parsed is exactly what re-encodes (from_der accepts DER only).
  auto again = Certificate::from_der(cert.der());
  if (!again || again->der() != cert.der() || again->spki_der() != cert.spki_der() ||
      again->not_before() != cert.not_before() || again->not_after() != cert.not_after()) {
    __builtin_trap();
  }
  if (cert.spki_der().empty()) __builtin_trap();
  auto id = certificate_identity(cert);
  if (id) {
    for (const auto& san : id->sans) {
      if (san_type_name(san.type) == nullptr) __builtin_trap();
    }
  }
  std::string subject = cert.subject_line();
  for (char c : subject) {
    if (static_cast<unsigned char>(c) < 0x20) __builtin_trap();  // message-safe
  }
  (void)cert.is_ca();
  (void)cert.is_self_signed();
  (void)format_time(cert.not_before());
  (void)format_time(cert.not_after());
  if (auto key = cert.public_key()) {
    if (key->verify("message", "not a signature").ok()) __builtin_trap();
  }
  // A certificate anchored as itself never validates as a signing certificate (a CA leaf is
  // refused, and a leaf may not be its own trust anchor), and with no trusted CT log no SCT
  // verifies; both must come back as clean errors.
  CertificateAuthority self;
  self.chain = {cert};
  if (verify_certificate(cert, {}, self, cert.not_before(), ExtendedKeyUsage::code_signing).ok()) {
    __builtin_trap();
  }
  if (verify_embedded_sct(cert, cert, {}).ok()) __builtin_trap();  // no trusted CT log
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto certs = parse_pem_certificates(in)) {
    if (certs->empty() || certs->size() > 16) __builtin_trap();
    for (const auto& c : *certs) exercise(c);
    if (certs->size() == 1 && !Certificate::from_pem(in).ok()) __builtin_trap();
  }
  if (auto cert = Certificate::from_der(in)) {
    if (cert->der() != in) __builtin_trap();
    exercise(*cert);
  }
  return 0;
}
