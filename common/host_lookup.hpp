// common/host_lookup.hpp: why a host name did not resolve, attached to the call's Error.
//
// net sets it (Error::detail) on every call that failed at its DNS lookup; the verify engine
// turns it into the one-line denial a person can act on ("myregsitry.azurecr.io: no such host"
// says "check the name", where "could not be reached or failed" says nothing). Typed on purpose,
// as registry's CredentialTrail: the words come from here, never from what a DNS server sent.
// Here, in common, because net writes it and verify reads it and neither may include the other.
#pragma once

#include <string>

#include "common/result.hpp"

namespace sigil {

struct HostLookupFailure final : ErrorDetail {
  enum class Why {
    no_such_host,  // NXDOMAIN, or the name has no record of the type asked (NODATA)
    no_address,    // the answer held no address sigil can connect to
    no_answer,     // the DNS server did not answer in time (its rounds, or the deadline)
    busy,          // sigil's own lookups were all in use (registry.dns.maxLookups): not asked
    failed,        // anything else (a refused connection, a malformed answer, ...)
  };
  std::string host;
  Why why = Why::failed;
};

// The lookup failure attached to e, or nullptr.
inline const HostLookupFailure* host_lookup_failure(const Error& e) {
  return dynamic_cast<const HostLookupFailure*>(e.detail.get());
}

// e with a HostLookupFailure for host attached.
inline Error with_lookup_failure(Error e, std::string host, HostLookupFailure::Why why) {
  auto d = std::make_shared<HostLookupFailure>();
  d->host = std::move(host);
  d->why = why;
  e.detail = std::move(d);
  return e;
}

}  // namespace sigil
