// crypto/sct.hpp: embedded signed certificate timestamps (RFC 6962 section 3.3) in Fulcio leaves.
//
// Role: prove a Fulcio leaf was submitted to a trusted certificate transparency log. Parses
// the SCT list extension (1.3.6.1.4.1.11129.2.4.2) with OpenSSL's CT API, rebuilds the
// precertificate TBS without that extension, and checks each SCT's signature with the key of
// the CT log its log id names. Pure: OpenSSL and common only.
#pragma once

#include <vector>

#include "common/result.hpp"
#include "crypto/trust_root.hpp"
#include "crypto/x509.hpp"

namespace sigil::crypto {

// Succeeds when at least one embedded SCT (a) names a log in ctlogs by log id, (b) has a
// timestamp inside that log key's validity window, and (c) verifies over the RFC 6962
// precert_entry signed data with issuer_key_hash = SHA-256(issuer's SPKI DER). Errc::verification
// with a readable reason otherwise: the leaf has no SCT extension, the list is malformed, no
// SCT is from a trusted log, or none verifies. Only v1 SCTs signed with ECDSA or RSA over
// SHA-256 (RFC 6962's algorithms) are considered; SCT timestamps are milliseconds. At most 16
// SCTs are examined. The message lists why each SCT did not count.
Status verify_embedded_sct(const Certificate& leaf, const Certificate& issuer,
                           const std::vector<TransparencyLog>& ctlogs);

}  // namespace sigil::crypto
