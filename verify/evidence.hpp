// verify/evidence.hpp: every signature one repository holds for one digest, read in budget.
//
// Role: the registry side of verification. For an image digest it reads the legacy cosign
// signatures (the `sha256-<hex>.sig` manifest and its payload blobs), the legacy attestations
// (`sha256-<hex>.att`, DSSE envelope blobs) and the sigstore bundles
// attached as OCI 1.1 referrers (the referrers API, or the referrers tag schema where the
// registry has none), concurrently, and turns them into policy::Evidence. Everything read is
// untrusted and bounded: each manifest and blob is hashed against its digest by the client,
// every byte held is taken from the admission's ByteBudget first (chained to the process'),
// a blob listed many times is read once, and exact duplicate layers are dropped. Past a
// budget the read fails with Errc::exhausted. Depends on the registry::Client interface,
// crypto (bundle and entity parsing), policy (Evidence), oci and common.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "common/budget.hpp"
#include "common/result.hpp"
#include "policy/policy.hpp"
#include "registry/client.hpp"

namespace sigil::verify {

struct EvidenceLimits {
  size_t max_signatures = 64;  // layers read from one .sig manifest
  // Bytes per simple-signing payload. cosign's are a few hundred bytes; a larger layer is
  // listed as unreadable, never fetched.
  int64_t max_signature_payload = 256 * 1024;
  // Legacy attestations (sha256-<hex>.att): layers read, and bytes per DSSE envelope (an SBOM
  // attestation can be large; crypto's envelope parser refuses more than 4 MiB anyway).
  size_t max_attestations = 32;
  int64_t max_attestation_size = 4 << 20;
  size_t max_bundles = 16;            // sigstore bundles read per image
  int64_t max_bundle_size = 1 << 20;  // bytes per bundle blob
  // Taken from the budget while a manifest is read (the registry client's cap per manifest).
  uint64_t manifest_reservation = 1 << 20;
};

// Where to read: the image's own repository, or an authority's `source`.
struct Location {
  std::string registry;
  std::string repository;
};

// What to read at one location.
struct Wanted {
  bool legacy = false;        // sha256-<hex>.sig
  bool bundles = false;       // sigstore bundle referrers
  bool attestations = false;  // sha256-<hex>.att: DSSE envelopes, into Evidence::attestations
};

struct FetchedEvidence {
  policy::Evidence evidence;
  std::optional<Error> failure;  // a part that could not be read (the rest is still here)
  Wanted failed;                 // which parts could not be read
  // True when the bundle list came from the referrers tag schema after an ambiguous answer
  // (a NAME_UNKNOWN 404 from the referrers API): a "no signatures" built on it is not cached.
  bool guessed = false;
  std::vector<Reservation> held;  // the budget the evidence holds, given back with it
};

// Reads what `where` holds for digest, every wanted part at once. Never throws.
boost::asio::awaitable<FetchedEvidence> fetch_evidence(
    registry::Client& client, const Location& where, const std::string& digest, Wanted wanted,
    Deadline deadline, registry::PullCredentials creds, ByteBudget& budget,
    const EvidenceLimits& limits);

}  // namespace sigil::verify
