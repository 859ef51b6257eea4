// net/outage.hpp: origins that cannot be reached, so that calls to them fail at once.
//
// Role: in a registry outage where connections hang (a network partition, a registry whose
// address drops packets or that accepts connections and never completes the TLS handshake),
// every admission would otherwise wait for the registry until the webhook's deadline, seconds
// each, before its denial or its last-known-good verdict. Once `after` attempts in a row to one
// origin could not connect after waiting at least `slow`, the origin is down: attempts fail at
// once (an error that says so) for `backoff`, then one attempt at a time goes through as a
// probe; calls that arrive while the probe is out wait for it, at most `probe_wait`. A connection
// made (the TLS handshake done) or an answer heals; a probe that fails keeps the origin down
// for twice as long, up to `max_backoff`.
//
// What counts (the caller classifies each attempt, Client::Impl::round_trip):
//  - reached: a new connection was made (TCP connected, TLS handshake done), or an answer came
//    on a pooled one. What happens after that, a slow or missing status line, a 5xx, a body
//    cut short, depends on the path, which pod authors choose on a shared registry and which a
//    hostile registry can redirect sigil to: it never counts.
//  - failed: the connection could not be made after at least `slow` of waiting (the name's
//    lookup, the TCP connect and the TLS handshake), by an attempt whose caller gave it at
//    least `min_budget`: none of that depends on the path, and a reachable host finishes it in
//    milliseconds, or within the share of time its addresses get when one of them drops
//    packets, so no caller's deadline (any client of the webhook may send ?timeout=) can make
//    a reachable host fail it. Calls with less than `min_budget` left never count and never
//    probe.
//  - neutral: a connection that failed fast (refused, NXDOMAIN: the next attempt costs as
//    little, and a registry back after a blip is used at once), cancelled, refused locally
//    (every DNS slot taken), a caller's deadline shorter than `min_budget`, anything after the
//    connection.
// A healthy origin holds no entry; failures older than a minute start the count over; an entry
// nobody asked about for ten minutes is forgotten. At most `max_origins` failing origins are
// kept; an origin the operator listed is never pushed out by another one, and among equals the
// least recently used goes first.
//
// Not thread-safe but for stats(): the client calls it on its strand only. No clock of its
// own: callers pass times in. Depends only on the standard library and common.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "common/origin_down.hpp"
#include "common/result.hpp"

namespace sigil::net {

struct FailFastOptions {
  int after = 0;                                 // failed attempts in a row; 0: off
  std::chrono::milliseconds backoff{2000};       // down this long the first time
  std::chrono::milliseconds max_backoff{30000};  // doubled after each failed probe, up to this
  std::chrono::milliseconds slow{1000};          // a connection still not made after this counts
  // ...if the caller gave the attempt at least this long: a shorter deadline may be what cut it
  // (an address of several gets its share of the time left, a lost SYN is resent after 1 s),
  // and any client of the webhook may send ?timeout=. Nor does such a call get the probe.
  std::chrono::milliseconds min_budget{3000};
  std::chrono::milliseconds probe_wait{1000};  // how long a call waits for the probe, at most
  size_t max_origins = 1024;                   // failing origins remembered
};

class OutageMemo {
 public:
  using Clock = std::chrono::steady_clock;
  // Failures older than this start the count over.
  static constexpr std::chrono::seconds kFailureWindow{60};
  // An entry nobody asked about this long is forgotten (its origin is probed when asked again).
  static constexpr std::chrono::minutes kForget{10};
  // A probe outstanding this long is taken to be lost: the next call probes.
  static constexpr std::chrono::minutes kProbeLimit{5};

  explicit OutageMemo(FailFastOptions options) : opt_(options) {}

  bool enabled() const { return opt_.after > 0; }
  const FailFastOptions& options() const { return opt_; }

  // Before an attempt to origin: whether it may go (a Ticket, which after() must be given
  // exactly once), or the error it fails with at once.
  struct Ticket {
    bool probe = false;
    uint64_t probe_id = 0;  // which probe (a late report of an earlier one changes nothing)
  };
  // budget: the time the caller's deadline leaves the attempt.
  Result<Ticket> before(const std::string& origin, Clock::time_point now,
                        Clock::duration budget = std::chrono::hours(1));
  // Whether a probe of origin is out now (a caller may wait for it before before()).
  bool probing(const std::string& origin) const;

  enum class Outcome { reached, failed, neutral };
  // How the attempt went. `error`: the failure (kept for the refusals' message);
  // operator_listed: an origin the operator named (never pushed out by another).
  void after(const std::string& origin, const Ticket& ticket, Outcome outcome, const Error* error,
             bool operator_listed, Clock::time_point now);

  // What a connection attempt that ended with `error` after waiting `waited`, out of the
  // `budget` its caller's deadline left it, says.
  Outcome classify(const Error& error, Clock::duration waited, Clock::duration budget,
                   bool cancelled) const;

  struct Stats {
    size_t down = 0;         // origins down now (not yet probed back), asked about lately
    size_t down_listed = 0;  // of which the operator listed
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
    bool listed = false;
    Clock::time_point until{};  // when down: the next probe may go from then
    Clock::time_point probe_since{};
    uint64_t probe_id = 0;
    std::chrono::milliseconds backoff{};
    Error last;  // the last failure, its message shortened
    Clock::time_point touched{};
  };
  using Map = std::map<std::string, Entry, std::less<>>;
  void set_down(Entry& e, bool down);
  void erase(Map::iterator it);
  void sweep(Clock::time_point now);
  // Room for one more entry (listed: the newcomer's); false if there is none to be had.
  bool make_room(bool listed);

  FailFastOptions opt_;
  Map entries_;
  Clock::time_point last_sweep_{};
  uint64_t probes_ = 0;
  std::atomic<size_t> remembered_{0};
  std::atomic<size_t> down_{0};
  std::atomic<size_t> down_listed_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> went_down_{0};
};

}  // namespace sigil::net
