// server/limits.hpp: what unauthenticated clients may hold of the webhook's memory and
// connection slots.
//
// Role: the bookkeeping behind the listener's limits, kept apart from sockets so it can be
// tested on its own (no Asio, no clock of its own: callers pass times in).
//   - BodyBudget: a process-wide budget of bytes of request bodies being read. A request
//     reserves its Content-Length before its body is read (a chunked one as it arrives) and
//     gives it back when it is answered; past the budget the server answers 503 at once. A body
//     over small_body is charged its decode too (charge()). Bodies
//     whose Content-Length is at most small_body may use the whole budget; larger ones, and
//     every body of unknown length (chunked), only budget - reserve, so that a flood of large
//     or chunked bodies never starves the small reviews the API server sends (with a
//     Content-Length, as Go's client writes them). A chunked body is large from its first
//     byte: counted as small while it is small, 80 slow chunked bodies could fill the reserve.
//   - ConnectionTable: open connections by peer address, with a cap per peer and a global
//     one. At a cap the idlest idle connection (of that peer, else of anyone) is evicted to
//     make room, else one whose request body has been withheld past stalled_body; one whose
//     request is being judged or answered never is, and when no candidate is left the new
//     connection is refused. On AKS the API server reaches the
//     webhook through a few konnectivity-agent pods, so each of their IPs carries many of the
//     API server's keep-alive connections: eviction of idle ones is what keeps a flood from one
//     address from pushing the API server out, and a per-peer cap alone would not.
// Depends only on the standard library.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace sigil::server {

class BodyBudget {
 public:
  // capacity: bytes of bodies being read at once; bodies of at most small_body bytes may use
  // all of it, larger ones at most capacity - reserve.
  BodyBudget(size_t capacity, size_t small_body, size_t reserve);

  // Reserves more bytes for a request that will then hold request_total bytes in all. False
  // (and nothing reserved) when that would pass the budget.
  bool try_reserve(size_t more, size_t request_total);
  void release(size_t bytes);

  size_t in_use() const { return in_use_.load(std::memory_order_relaxed); }
  size_t capacity() const { return capacity_; }
  // The most bytes one request may ever reserve (capacity - reserve, or capacity for small).
  size_t large_limit() const { return capacity_ - reserve_; }
  // What a body of `total` bytes (counted as `counted_as`: see BodyReservation) is charged. A
  // small one, its size. A larger one, kDecodeFactor times its size, at most large_limit():
  // decoding a review takes about that much more (simdjson's string buffer and tape, then the
  // Request's copies; +57 MiB for a 4 MiB review was measured), and a dozen concurrent 4 MiB
  // reviews charged their size alone took a replica past the chart's 512 Mi.
  static constexpr size_t kDecodeFactor = 12;
  size_t charge(size_t total, size_t counted_as) const;

 private:
  const size_t capacity_;
  const size_t small_body_;
  const size_t reserve_;
  std::atomic<size_t> in_use_{0};
};

// The bytes one request holds of a BodyBudget, given back on destruction.
class BodyReservation {
 public:
  explicit BodyReservation(BodyBudget& budget) : budget_(budget) {}
  ~BodyReservation() { budget_.release(bytes_); }
  BodyReservation(const BodyReservation&) = delete;
  BodyReservation& operator=(const BodyReservation&) = delete;

  // Grows the reservation to total bytes (no-op when it already holds that many): a body whose
  // Content-Length is total.
  bool grow_to(size_t total);
  // The same for a body of unknown length (chunked) that has reached total bytes: it never
  // takes the reserve kept for small bodies.
  bool grow_unknown_to(size_t total);
  size_t bytes() const { return bytes_; }

 private:
  bool grow(size_t total, size_t counted_as);
  BodyBudget& budget_;
  size_t bytes_ = 0;
};

struct ConnectionLimits {
  size_t max_connections = 2048;
  size_t max_per_peer = 512;
  // A connection whose request body is not in this long after its header may be evicted like
  // an idle one (after every idle one): otherwise bodies withheld from a few addresses fill the
  // caps with connections nothing can close, and the API server's are refused. Counted from
  // the header, not from the last byte: a body dripped a byte at a time is withheld too. (The
  // API server's bodies arrive in milliseconds.)
  std::chrono::milliseconds stalled_body{500};
};

class ConnectionTable {
 public:
  using Clock = std::chrono::steady_clock;
  using Id = uint64_t;

  explicit ConnectionTable(ConnectionLimits limits) : limits_(limits) {}

  struct Admission {
    bool admitted = false;
    Id id = 0;                 // the new connection's id, when admitted
    std::optional<Id> evict;   // an idle connection to close to make room
    bool at_peer_cap = false;  // for the log: which cap was reached
    bool at_global_cap = false;
  };
  // A new connection from peer at time now. When a cap is reached, picks the idlest idle
  // connection to evict (marking it, so it is not picked twice) or refuses the new one.
  Admission admit(const std::string& peer, Clock::time_point now);
  // The connection started (true) or finished (false) handling a request; an idle connection's
  // idleness counts from the last change.
  void set_busy(Id id, bool busy, Clock::time_point now);
  // The connection has a request's header and is reading its body (then set_busy(true)).
  void set_reading(Id id, Clock::time_point now);
  // The connection is gone. (An evicted one stops counting when it is picked: it closes at
  // once when idle, or right after the response it was already working on.)
  void remove(Id id);

  size_t size() const;
  size_t peer_count(const std::string& peer) const;
  std::vector<Id> ids() const;
  uint64_t evictions() const;
  uint64_t refusals() const;

 private:
  struct Entry {
    std::string peer;
    bool busy = false;
    bool reading = false;  // a body, since `since`
    bool evicting = false;
    Clock::time_point since;
  };
  // Idlest idle entry not already being evicted, of peer (or of anyone when peer is null); when
  // none, the one whose body has been arriving longest, past stalled_body.
  std::optional<Id> idlest(const std::string* peer, Clock::time_point now) const;

  const ConnectionLimits limits_;
  mutable std::mutex mu_;
  Id next_id_ = 1;
  std::map<Id, Entry> entries_;
  std::map<std::string, size_t> per_peer_;  // live (not being evicted) connections per peer
  size_t live_ = 0;                         // entries not being evicted
  uint64_t evictions_ = 0;
  uint64_t refusals_ = 0;
};

}  // namespace sigil::server
