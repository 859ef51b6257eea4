// net/retry.hpp: when and how long to wait before sending a request again.
//
// Role: the pure half of net's retries: the backoff schedule (exponential, with jitter, capped)
// and Retry-After (delta-seconds or an HTTP-date, RFC 9110 section 10.2.3). No I/O and no
// clock: the caller passes "now" and the random draw, so every rule has a table test.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace sigil::net {

struct RetryPolicy {
  // Extra attempts after the first, for network errors (connection refused or reset, a body
  // cut short, a TLS handshake that failed for a reason other than the certificate, every DNS
  // lookup slot taken), 429 and 5xx. Not for a DNS lookup that failed (c-ares' own rounds,
  // ClientOptions::dns_attempts, are its retries), except an operator_named request's after a
  // timeout or SERVFAIL (detail::Resolver::worth_retrying). 0: one attempt (a stale pooled
  // connection is still replaced once, see client.hpp).
  int max_retries = 0;
  // Wait before retry n (0-based): d = min(max_backoff, backoff_base * 2^n), drawn uniformly
  // in [d/2, d] (jitter, so that clients cut off together do not come back together). A
  // Retry-After header replaces the draw. No wait that would end past the deadline is begun:
  // the last answer is returned instead.
  std::chrono::milliseconds backoff_base{100};
  std::chrono::milliseconds max_backoff{5000};
};

// The jittered wait before retry `retry` (0-based); `unit` is a uniform draw in [0, 1).
std::chrono::milliseconds backoff_delay(const RetryPolicy& policy, int retry, double unit);

// A Retry-After value as a wait from `now`: delta-seconds ("120"), or an HTTP-date in any of
// the three forms RFC 9110 requires recipients to accept (IMF-fixdate "Sun, 06 Nov 1994
// 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT", asctime "Sun Nov  6 08:49:37
// 1994"). A date in the past is a wait of zero. nullopt when empty or malformed (the
// caller's own backoff applies then). Waits are capped at one day.
std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now);

}  // namespace sigil::net
