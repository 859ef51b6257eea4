// server/duration.hpp: strict parser for Go duration strings (time.ParseDuration).
//
// Role: the API server appends `?timeout=10s` to webhook calls; this turns such a value into a
// duration. Pure: no I/O, no clock; never throws.
#pragma once

#include <chrono>
#include <string_view>

#include "common/result.hpp"

namespace sigil::server {

// Accepts what Go's time.ParseDuration accepts for non-negative values: one or more
// <decimal><unit> groups, unit in ns, us, µs, μs, ms, s, m, h ("10s", "1m30s", "500ms", "1.5s",
// "0"). Rejects empty strings, signs, missing units, overflow beyond ~292 years and any
// trailing garbage. Sub-nanosecond fractions are truncated.
Result<std::chrono::nanoseconds> parse_go_duration(std::string_view text);

}  // namespace sigil::server
