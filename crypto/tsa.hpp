// crypto/tsa.hpp: RFC 3161 signed timestamps as a proof of signing time.
//
// Role: verify a DER TimeStampResp (or a bare TimeStampToken) over some bytes against trusted
// timestamp authorities and return the time it proves. Uses OpenSSL's TS API. Pure: OpenSSL
// and common only.
#pragma once

#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "crypto/x509.hpp"

namespace sigil::crypto {

// Verifies `timestamp` (DER TimeStampResp with status granted/grantedWithMods, or a DER
// ContentInfo TimeStampToken) over `signed_bytes`: the message imprint (SHA-256/384/512, as the
// token states) must equal the hash of signed_bytes; the CMS signature must verify with a TSA
// certificate that chains (certificates embedded in the token as untrusted intermediates) to
// one of tsas' roots, valid at the token's genTime, with the timeStamping extended key usage;
// genTime must lie inside that authority's valid_for. Returns genTime. Errc::verification with
// a readable reason otherwise (a response whose status is not granted, too); Errc::parse_error
// for bytes that are not a timestamp; Errc::too_large over 128 KiB.
// The signing certificate may be embedded in the token or be one of the authority's chain
// (sigstore's trusted_root lists the TSA certificate first and its responses embed none). As
// RFC 3161 section 2.3 and OpenSSL's timestamp-signing purpose require, its extendedKeyUsage
// must be critical and only timeStamping. The ESS signing-certificate attribute must name it.
// The signer's path is validated with verify_certificate at genTime (whole seconds for
// OpenSSL's part), so the same hybrid model and validFor rules apply as for Fulcio leaves.
Result<TimePoint> verify_rfc3161_timestamp(std::string_view timestamp,
                                           std::string_view signed_bytes,
                                           const std::vector<CertificateAuthority>& tsas);

}  // namespace sigil::crypto
