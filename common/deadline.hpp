// common/deadline.hpp: the one Deadline type.
//
// Role: every outbound call and every admission is bounded by a point on the monotonic clock,
// derived from the API server's ?timeout=. One name for it across modules (registry, kube,
// net, verify, server). Pure: the type only; nothing here reads the clock.
#pragma once

#include <chrono>

namespace sigil {

using Deadline = std::chrono::steady_clock::time_point;

}  // namespace sigil
