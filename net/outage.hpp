// net/outage.hpp: origins that stopped answering, so that calls to them fail at once.
//
// Role: in a registry outage where connections hang (a network partition, a registry that
// accepts and never answers), every admission would otherwise wait for the registry until the
// webhook's deadline, seconds each, before its denial or its last-known-good verdict. Once
// `after` attempts in a row to one origin got no answer, the origin is down: attempts fail at
// once (an error that says so) for `backoff`, then one attempt at a time goes through as a
// probe. An answer, any answer (a 5xx too), from the probe or from any attempt still in flight,
// makes the origin healthy again; a probe that fails keeps it down for twice as long, up to
// `max_backoff`.
//
// What counts (the caller classifies each attempt, Client::Impl::round_trip):
//  - answered: a status line arrived. The host is alive, whatever the status: a 5xx or a slow
//    body depends on the path, which pod authors choose on a shared registry, so it must never
//    take the host down for everyone.
//  - failed: no answer after a wait of at least `slow`: a connection or TLS handshake that
//    never completed, a request never answered, a DNS lookup that never came back (or failed
//    only after that long). Waiting is what there is to save; and a timeout sooner says more
//    about the caller's deadline (any client of the webhook may send ?timeout=1s) than about
//    the host.
//  - neutral: a failure that came fast (a refused connection, NXDOMAIN: the next attempt costs
//    as little, and a registry back after a blip is used at once), cancelled, refused locally
//    (every DNS slot taken), invalid: says nothing.
// A healthy origin holds no entry; at most `max_origins` failing ones are kept, and when full
// the oldest entry of an origin no operator named makes room first (a pod author's many dead
// hosts never push out the memory of the operator's registry being down).
//
// Not thread-safe but for stats(): the client calls it on its strand only. No clock of its own:
// callers pass times in. Depends only on the standard library and common.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/origin_down.hpp"
#include "common/result.hpp"

namespace sigil::net {

struct FailFastOptions {
  int after = 0;                                 // failed attempts in a row; 0: off
  std::chrono::milliseconds backoff{2000};       // down this long the first time
  std::chrono::milliseconds max_backoff{30000};  // doubled after each failed probe, up to this
  std::chrono::milliseconds slow{1000};          // a timeout counts after this long a wait
  size_t max_origins = 1024;                     // failing origins remembered
};

class OutageMemo {
 public:
  using Clock = std::chrono::steady_clock;
  explicit OutageMemo(FailFastOptions options) : opt_(options) {}

  bool enabled() const { return opt_.after > 0; }

  // Before an attempt to origin: whether it may go (a Ticket, which after() must be given
  // exactly once), or the error it fails with at once.
  struct Ticket {
    bool probe = false;
  };
  Result<Ticket> before(const std::string& origin, Clock::time_point now);

  enum class Outcome { answered, failed, neutral };
  // How the attempt went. `error`: the failure (kept for the refusals' message and detail);
  // operator_named: an origin the operator configured (kept longest when full).
  void after(const std::string& origin, const Ticket& ticket, Outcome outcome, const Error* error,
             bool operator_named, Clock::time_point now);

  // What an attempt that ended with `error` after waiting `waited` says about its origin.
  Outcome classify(const Error& error, Clock::duration waited, bool cancelled) const;

  struct Stats {
    size_t down = 0;         // origins down now (their backoff not yet over, or probing)
    size_t remembered = 0;   // origins with at least one failure in a row
    uint64_t refused = 0;    // attempts failed at once
    uint64_t went_down = 0;  // times an origin went down
  };
  Stats stats() const;  // thread-safe

 private:
  struct Entry {
    int failures = 0;
    bool down = false;
    bool probing = false;
    bool operator_named = false;
    Clock::time_point until{};  // when down: the next probe may go from then
    std::chrono::milliseconds backoff{};
    Error last;  // the last failure, its message shortened
    Clock::time_point touched{};
  };
  void make_room();
  void erase(std::map<std::string, Entry, std::less<>>::iterator it);

  FailFastOptions opt_;
  std::map<std::string, Entry, std::less<>> entries_;
  void set_down(Entry& e, bool down);

  std::atomic<size_t> remembered_{0};
  std::atomic<size_t> down_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> went_down_{0};
};

}  // namespace sigil::net
