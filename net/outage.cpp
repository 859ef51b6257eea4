#include "net/outage.hpp"

#include <algorithm>
#include <memory>

#include <spdlog/spdlog.h>

#include "common/host_lookup.hpp"

namespace sigil::net {

namespace {

constexpr size_t kMaxMessage = 200;  // of the last failure, kept per origin

std::chrono::milliseconds ms_until(OutageMemo::Clock::time_point until,
                                   OutageMemo::Clock::time_point now) {
  if (until <= now) return std::chrono::milliseconds(0);
  return std::chrono::ceil<std::chrono::milliseconds>(until - now);
}

std::string attempts(int n) {
  return n == 1 ? "1 attempt" : std::to_string(n) + " attempts";
}

}  // namespace

Result<OutageMemo::Ticket> OutageMemo::before(const std::string& origin, Clock::time_point now,
                                              Clock::duration budget) {
  if (!enabled()) return Ticket{};
  sweep(now);
  auto it = entries_.find(origin);
  if (it == entries_.end() || !it->second.down) return Ticket{};
  Entry& e = it->second;
  e.touched = now;
  const bool lost_probe = e.probing && now - e.probe_since >= kProbeLimit;
  if (now >= e.until && (!e.probing || lost_probe) && budget >= opt_.min_budget) {
    e.probing = true;
    e.probe_since = now;
    e.probe_id = ++probes_;
    return Ticket{true, e.probe_id};
  }
  refused_.fetch_add(1, std::memory_order_relaxed);
  const auto retry_in = ms_until(e.until, now);
  Error err;
  err.code = Errc::unavailable;
  err.message =
      origin + " cannot be reached: " + attempts(e.failures) +
      " in a row could not connect (the last: " + e.last.message + "); " +
      (e.probing              ? std::string("another request is trying it now")
       : retry_in.count() > 0 ? "tried again in " + std::to_string(retry_in.count()) + " ms"
                              : std::string("tried again by a request with more time"));
  auto d = std::make_shared<OriginDown>();
  d->origin = origin;
  d->failures = e.failures;
  d->retry_in = retry_in;
  err.detail = std::move(d);
  return err;
}

bool OutageMemo::probing(const std::string& origin) const {
  if (!enabled()) return false;
  auto it = entries_.find(origin);
  return it != entries_.end() && it->second.probing;
}

void OutageMemo::after(const std::string& origin, const Ticket& ticket, Outcome outcome,
                       const Error* error, bool operator_listed, Clock::time_point now) {
  if (!enabled()) return;
  auto it = entries_.find(origin);
  if (outcome == Outcome::reached) {
    if (it == entries_.end()) return;
    if (it->second.down) {
      spdlog::info("net: {} can be reached again; its requests go through again", origin);
    }
    erase(it);
    return;
  }
  // The probe this ticket was, if it is still the origin's current one.
  const bool current_probe = it != entries_.end() && ticket.probe && it->second.probing &&
                             it->second.probe_id == ticket.probe_id;
  if (outcome == Outcome::neutral) {
    if (current_probe) it->second.probing = false;  // the next one probes
    return;
  }
  if (it == entries_.end()) {
    if (entries_.size() >= opt_.max_origins && !make_room(operator_listed)) return;
    it = entries_.emplace(origin, Entry{}).first;
    remembered_.store(entries_.size(), std::memory_order_relaxed);
  }
  Entry& e = it->second;
  if (!e.down && e.failures > 0 && now - e.touched > kFailureWindow) e.failures = 0;
  e.failures = e.failures < (1 << 20) ? e.failures + 1 : e.failures;
  if (operator_listed && !e.listed) {
    if (e.down) down_listed_.fetch_add(1, std::memory_order_relaxed);
    e.listed = true;
  }
  e.touched = now;
  if (error != nullptr) {
    e.last = *error;
    e.last.detail.reset();
    if (e.last.message.size() > kMaxMessage) e.last.message.resize(kMaxMessage);
  }
  if (current_probe && e.down) {
    e.probing = false;
    e.backoff = std::min<std::chrono::milliseconds>(e.backoff * 2, opt_.max_backoff);
    e.until = now + e.backoff;
    return;
  }
  if (!e.down && e.failures >= opt_.after) {
    set_down(e, true);
    e.probing = false;
    e.backoff = std::min(opt_.backoff, opt_.max_backoff);
    e.until = now + e.backoff;
    went_down_.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn(
        "net: {} cannot be reached ({} in a row could not connect, the last: {}); its "
        "requests fail at once for {} ms, then one at a time tries it",
        origin, attempts(e.failures), e.last.message, e.backoff.count());
  }
}

OutageMemo::Outcome OutageMemo::classify(const Error& error, Clock::duration waited,
                                         Clock::duration budget, bool cancelled) const {
  // A connection that failed fast (refused, NXDOMAIN) costs the next attempt nothing either:
  // only waiting is worth saving, and a host back after a blip is used at once. A caller that
  // left the attempt too little time may be what cut it short.
  if (cancelled || waited < opt_.slow || budget < opt_.min_budget) return Outcome::neutral;
  switch (error.code) {
    case Errc::timeout:
      return Outcome::failed;
    case Errc::unavailable: {
      const HostLookupFailure* dns = host_lookup_failure(error);
      if (dns != nullptr && dns->why == HostLookupFailure::Why::busy) return Outcome::neutral;
      return Outcome::failed;
    }
    default:
      return Outcome::neutral;
  }
}

OutageMemo::Stats OutageMemo::stats() const {
  Stats s;
  s.remembered = remembered_.load(std::memory_order_relaxed);
  s.down = down_.load(std::memory_order_relaxed);
  s.down_listed = down_listed_.load(std::memory_order_relaxed);
  s.refused = refused_.load(std::memory_order_relaxed);
  s.went_down = went_down_.load(std::memory_order_relaxed);
  return s;
}

void OutageMemo::set_down(Entry& e, bool down) {
  if (e.down == down) return;
  e.down = down;
  const int d = down ? 1 : -1;
  down_.fetch_add(static_cast<size_t>(d), std::memory_order_relaxed);
  if (e.listed) down_listed_.fetch_add(static_cast<size_t>(d), std::memory_order_relaxed);
}

void OutageMemo::erase(Map::iterator it) {
  set_down(it->second, false);
  entries_.erase(it);
  remembered_.store(entries_.size(), std::memory_order_relaxed);
}

void OutageMemo::sweep(Clock::time_point now) {
  if (now - last_sweep_ < std::chrono::seconds(1)) return;
  last_sweep_ = now;
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto next = std::next(it);
    if (!it->second.probing && now - it->second.touched >= kForget) erase(it);
    it = next;
  }
}

bool OutageMemo::make_room(bool listed) {
  auto victim = entries_.end();
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const Entry& a = it->second;
    if (a.probing) continue;  // its caller will report
    if (victim == entries_.end()) {
      victim = it;
      continue;
    }
    const Entry& b = victim->second;
    // An origin no operator listed before one that was; among equals, the least recently used.
    if (a.listed != b.listed ? !a.listed : a.touched < b.touched) victim = it;
  }
  // A pod's origin never pushes out one the operator listed.
  if (victim == entries_.end() || (victim->second.listed && !listed)) return false;
  erase(victim);
  return true;
}

}  // namespace sigil::net
