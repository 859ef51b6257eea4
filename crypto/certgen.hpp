// crypto/certgen.hpp: minting a private CA and TLS serving certificates (ECDSA P-256).
//
// Role: what sigil's self-managed webhook certificate needs from OpenSSL: a self-signed CA, a
// serving certificate for DNS names signed by that CA, and the checks that make a stored pair
// safe to serve (the key matches the certificate, the CA really signed the leaf, which names
// the leaf carries). Pure: no I/O, no clock (every time is a parameter), no Asio. Key
// generation draws from OpenSSL's CSPRNG. Every OpenSSL return value is checked and its error
// queue cleared; nothing throws. Private keys never appear in error messages.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "crypto/x509.hpp"

namespace sigil::crypto {

// A certificate and its private key, both PEM (the key as PKCS#8 "PRIVATE KEY").
struct CertAndKey {
  std::string cert_pem;
  std::string key_pem;
  bool operator==(const CertAndKey&) const = default;
};

// A self-signed CA: basicConstraints critical CA:TRUE pathlen:0, keyUsage critical
// keyCertSign+cRLSign, subject CN=common_name, a random 127-bit serial, a fresh P-256 key.
// invalid_argument when not_after <= not_before or the name is empty.
Result<CertAndKey> make_ca(std::string_view common_name, TimePoint not_before, TimePoint not_after);

// A TLS server certificate signed by the CA: CN=dns_names.front(), SAN DNS:every name,
// basicConstraints critical CA:FALSE, keyUsage critical digitalSignature, extendedKeyUsage
// serverAuth, authority/subject key identifiers, a fresh P-256 key. The CA pair is checked
// first (it must be a CA whose key matches). invalid_argument on no names, an empty name, or
// not_after <= not_before; parse_error when the CA does not parse.
Result<CertAndKey> issue_server_cert(const CertAndKey& ca,
                                     const std::vector<std::string>& dns_names,
                                     TimePoint not_before, TimePoint not_after);

// The private key parses and is the key of the certificate (one PEM certificate).
// verification ("does not match") or parse_error, never naming key bytes.
Status check_key_pair(std::string_view cert_pem, std::string_view key_pem);

// leaf's issuer name is ca's subject and its signature verifies with ca's key; ca is a CA.
Status check_issued_by(const Certificate& leaf, const Certificate& ca);

// The DNS subject alternative names of a certificate, in order.
Result<std::vector<std::string>> dns_names(const Certificate& cert);

}  // namespace sigil::crypto
