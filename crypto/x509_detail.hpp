// crypto/x509_detail.hpp: what the X.509 sources share: certificates and path validation
// (x509.cpp), the chain cache (chain_cache.cpp) and time conversions (time.cpp). PRIVATE to
// crypto/: included only by those files.
#pragma once

#include <openssl/asn1.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "crypto/x509.hpp"

namespace sigil::crypto::detail {

// OpenSSL's verification API takes non-const pointers; it only reads the certificate (the
// extension cache it may fill was filled, under its own lock, when the certificate parsed).
inline X509* mutable_x509(const Certificate& c) {
  return const_cast<X509*>(static_cast<const X509*>(c.native()));
}

// time.cpp. An ASN1_TIME (a certificate's notBefore or notAfter: `what`) as a TimePoint,
// clamped to what one can hold; parse_error when malformed.
Result<TimePoint> asn1_to_time(const ASN1_TIME* t, const char* what);

// x509.cpp. Sets what every validation uses: the time (seconds; sub-second precision is
// checked by the callers), the depth, and the partial-chain mode.
Status set_verify_params(X509_STORE_CTX* ctx, TimePoint at);

// x509.cpp. The checks every validated path passes last, whichever way it was built: its
// length, every certificate valid at `at` at full resolution, and the CAs' extended key usages.
Status check_path(const VerifiedChain& chain, TimePoint at, ExtendedKeyUsage eku,
                  const std::string& who);

// chain_cache.cpp. The short path: a remembered path above an issuer of `leaf`, for this CA
// entry, checked now. nullopt means "validate in full" (no entry, or any check failed).
std::optional<VerifiedChain> verify_with_cache(const Certificate& leaf,
                                               const std::vector<Certificate>& untrusted,
                                               const CertificateAuthority& ca, TimePoint at,
                                               ExtendedKeyUsage eku, const std::string& who,
                                               ChainCache& cache);

// chain_cache.cpp. Remembers the part above the leaf of a path that validated against `ca`.
// Never fails: a path that cannot be remembered is simply not.
void remember_chain(ChainCache& cache, const CertificateAuthority& ca, const VerifiedChain& chain);

}  // namespace sigil::crypto::detail
