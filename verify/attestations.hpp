// verify/attestations.hpp: legacy cosign attestations (sha256-<hex>.att) read in budget.
//
// Role: the registry side of attestations that are not bundles. The `.att` tag of a digest is
// an OCI manifest whose layers are DSSE envelopes (media type
// application/vnd.dsse.envelope.v1+json), one per attestation, with the certificate, chain,
// Rekor bundle and RFC 3161 annotations of a `.sig` layer (docs/sigstore-formats.md 1.2). Each
// blob is read by digest (hashed by the client), within the admission's ByteBudget, and turned
// into crypto::SignedEntity values for policy/ to verify; what cannot be read is listed, never
// used. Bundles (attestations or signatures) are read by evidence.cpp. Internal to verify/.
#pragma once

#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "common/budget.hpp"
#include "common/result.hpp"
#include "crypto/sigstore.hpp"
#include "registry/client.hpp"
#include "verify/evidence.hpp"

namespace sigil::verify {

inline constexpr std::string_view kDsseEnvelopeMediaType = "application/vnd.dsse.envelope.v1+json";

struct AttestationPart {
  std::vector<crypto::SignedEntity> attestations;
  std::vector<std::string> unreadable;
  std::vector<Reservation> held;
};

// "sha256:<hex>" -> "sha256-<hex>.att".
std::string attestation_tag(const std::string& digest);

// Reads the .att manifest of digest at `where` and its envelopes. A missing tag is "no
// attestations", not an error; a registry failure or a spent budget is the error.
boost::asio::awaitable<Result<AttestationPart>> read_attestations(
    registry::Client& client, const Location& where, const std::string& digest, Deadline deadline,
    const registry::PullCredentials& creds, ByteBudget& budget, const EvidenceLimits& limits);

namespace detail {
// evidence.cpp: takes n bytes for `what` from budget, or says which budget is spent.
Result<Reservation> take(ByteBudget& budget, uint64_t n, const std::string& what);
}  // namespace detail

}  // namespace sigil::verify
