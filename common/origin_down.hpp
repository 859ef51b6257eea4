// common/origin_down.hpp: a call failed at once because its origin could not be reached.
//
// net sets it (Error::detail) on a call its outage memo refused (net/outage.hpp); the verify
// engine turns it into the one-line denial ("registry X has not been answering; sigil tries it
// again in 2 s"), as it does common/host_lookup.hpp's. Here, in common, because net writes it
// and verify reads it and neither may include the other.
#pragma once

#include <chrono>
#include <string>

#include "common/result.hpp"

namespace sigil {

struct OriginDown final : ErrorDetail {
  std::string origin;                    // "https://host:port"
  int failures = 0;                      // attempts in a row that got no answer
  std::chrono::milliseconds retry_in{};  // until the next attempt may go (0: one is trying now)
};

// The detail of such a refusal, or nullptr.
inline const OriginDown* origin_down(const Error& e) {
  return dynamic_cast<const OriginDown*>(e.detail.get());
}

}  // namespace sigil
