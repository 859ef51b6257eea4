#include "server/limits.hpp"

#include <algorithm>
#include <limits>

namespace sigil::server {

BodyBudget::BodyBudget(size_t capacity, size_t small_body, size_t reserve)
    : capacity_(capacity), small_body_(small_body), reserve_(std::min(reserve, capacity)) {}

bool BodyBudget::try_reserve(size_t more, size_t request_total) {
  if (more == 0) return true;
  const size_t limit = request_total <= small_body_ ? capacity_ : capacity_ - reserve_;
  size_t used = in_use_.load(std::memory_order_relaxed);
  do {
    if (more > limit || used > limit - more) return false;
  } while (!in_use_.compare_exchange_weak(used, used + more, std::memory_order_relaxed));
  return true;
}

void BodyBudget::release(size_t bytes) {
  if (bytes) in_use_.fetch_sub(bytes, std::memory_order_relaxed);
}

size_t BodyBudget::charge(size_t total, size_t counted_as) const {
  (void)counted_as;  // the size decides what decoding it takes, however it is counted
  if (total <= small_body_) return total;
  const size_t cap = large_limit();
  const size_t weighted = total > cap / kDecodeFactor ? cap : total * kDecodeFactor;
  return std::max(total, weighted);
}

bool BodyReservation::grow(size_t total, size_t counted_as) {
  const size_t want = budget_.charge(total, counted_as);
  if (want <= bytes_) return true;
  if (!budget_.try_reserve(want - bytes_, counted_as)) return false;
  bytes_ = want;
  return true;
}

bool BodyReservation::grow_to(size_t total) {
  return grow(total, total);
}

// Counted as larger than any small body, whatever it has reached (limits.hpp).
bool BodyReservation::grow_unknown_to(size_t total) {
  return grow(total, std::numeric_limits<size_t>::max());
}

ConnectionTable::Admission ConnectionTable::admit(const std::string& peer, Clock::time_point now) {
  std::lock_guard lock(mu_);
  Admission out;
  auto& mine = per_peer_[peer];
  out.at_peer_cap = mine >= limits_.max_per_peer;
  out.at_global_cap = live_ >= limits_.max_connections;
  if (out.at_peer_cap || out.at_global_cap) {
    // The peer's own idlest first: a flood from one address pushes out only its own
    // connections. At the global cap alone, the idlest of anyone.
    auto victim = idlest(out.at_peer_cap ? &peer : nullptr, now);
    if (!victim) {
      ++refusals_;
      if (mine == 0) per_peer_.erase(peer);
      return out;
    }
    auto& v = entries_.at(*victim);
    v.evicting = true;
    --live_;
    if (auto it = per_peer_.find(v.peer);
        it != per_peer_.end() && --it->second == 0 && it->first != peer) {
      per_peer_.erase(it);
    }
    ++evictions_;
    out.evict = *victim;
  }
  out.admitted = true;
  out.id = next_id_++;
  entries_.emplace(out.id, Entry{peer, false, false, false, now});
  ++per_peer_[peer];
  ++live_;
  return out;
}

std::optional<ConnectionTable::Id> ConnectionTable::idlest(const std::string* peer,
                                                           Clock::time_point now) const {
  std::optional<Id> best, stalled;
  Clock::time_point best_since{}, stalled_since{};
  for (const auto& [id, e] : entries_) {
    if (e.busy || e.evicting || (peer && e.peer != *peer)) continue;
    if (e.reading) {
      if (now - e.since >= limits_.stalled_body && (!stalled || e.since < stalled_since)) {
        stalled = id;
        stalled_since = e.since;
      }
    } else if (!best || e.since < best_since) {
      best = id;
      best_since = e.since;
    }
  }
  return best ? best : stalled;
}

void ConnectionTable::set_busy(Id id, bool busy, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second.busy = busy;
  it->second.reading = false;
  it->second.since = now;
}

void ConnectionTable::set_reading(Id id, Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second.busy = false;
  it->second.reading = true;
  it->second.since = now;
}

void ConnectionTable::remove(Id id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  if (!it->second.evicting) {
    --live_;
    if (auto p = per_peer_.find(it->second.peer); p != per_peer_.end() && --p->second == 0) {
      per_peer_.erase(p);
    }
  }
  entries_.erase(it);
}

size_t ConnectionTable::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

size_t ConnectionTable::peer_count(const std::string& peer) const {
  std::lock_guard lock(mu_);
  auto it = per_peer_.find(peer);
  return it == per_peer_.end() ? 0 : it->second;
}

std::vector<ConnectionTable::Id> ConnectionTable::ids() const {
  std::lock_guard lock(mu_);
  std::vector<Id> out;
  out.reserve(entries_.size());
  for (const auto& [id, e] : entries_) out.push_back(id);
  return out;
}

uint64_t ConnectionTable::evictions() const {
  std::lock_guard lock(mu_);
  return evictions_;
}

uint64_t ConnectionTable::refusals() const {
  std::lock_guard lock(mu_);
  return refusals_;
}

}  // namespace sigil::server
