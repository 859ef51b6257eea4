// verify/stale.cpp: see stale.hpp.
#include "verify/stale.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "verify/verdict_cache.hpp"

namespace sigil::verify {

bool means_unreachable(Reason r) noexcept {
  return r == Reason::registry_unavailable || r == Reason::timeout;
}

bool may_stand_in(const Verdict& fresh, bool by_digest, bool pinning) noexcept {
  // A tag the pod runs unpinned may point elsewhere by the time the kubelet pulls it.
  if (!by_digest && !pinning) return false;
  if (fresh.outcome != Outcome::denied) return false;
  if (!means_unreachable(reported_reason(fresh))) return false;
  for (const auto& f : fresh.also) {
    if (!means_unreachable(f.reason)) return false;
  }
  for (const auto& f : fresh.warnings) {
    if (!means_unreachable(f.reason)) return false;
  }
  return true;
}

bool within_grace(std::chrono::system_clock::time_point verified,
                  std::chrono::system_clock::time_point now,
                  std::chrono::milliseconds grace) noexcept {
  if (grace.count() <= 0 || now < verified) return false;
  return now - verified <= grace;
}

LastKnownGood::LastKnownGood(const Clock& clock, size_t capacity, std::chrono::milliseconds grace)
    : clock_(clock),
      capacity_(capacity),
      grace_(grace),
      entries_(capacity, std::max<size_t>(1, capacity / 4)) {}

void LastKnownGood::record(const std::string& key, const Verdict& fresh, std::string_view owner) {
  if (!enabled()) return;
  // A judgement that refuses forgets the allow even when it is not cached (it rested on a
  // guess about the registry, or another policy could not be judged); a failure of the moment
  // changes nothing.
  const bool refusal = fresh.outcome != Outcome::allowed && !is_transient(reported_reason(fresh));
  if (!is_cacheable(fresh) && !refusal) return;
  std::lock_guard lock(mu_);
  entries_.erase(key);
  // Only a plain allow is kept: a denial, or a warning, forgets what was allowed before.
  if (fresh.outcome != Outcome::allowed || fresh.stale) return;
  Verdict kept = fresh;
  kept.containers.clear();  // the pod's, not the image's
  entries_.put(key, owner, Entry{std::move(kept), clock_.now()});
}

std::optional<LastKnownGood::Found> LastKnownGood::find(const std::string& key) {
  if (!enabled()) return std::nullopt;
  std::lock_guard lock(mu_);
  Entry* e = entries_.find(key);
  if (e == nullptr) return std::nullopt;
  const auto now = clock_.now();
  if (!within_grace(e->verified, now, grace_)) {
    entries_.erase(key);
    return std::nullopt;
  }
  return Found{e->verdict,
               std::chrono::duration_cast<std::chrono::milliseconds>(now - e->verified)};
}

Verdict LastKnownGood::answer(Verdict fresh, const std::string& key, bool by_digest, bool pinning) {
  if (!enabled() || !may_stand_in(fresh, by_digest, pinning)) return fresh;
  auto found = find(key);
  if (!found) return fresh;
  Verdict v = stand_in(fresh, *found, grace_);
  {
    std::lock_guard lock(mu_);
    ++(v.reason == Reason::timeout ? used_timeout_ : used_unavailable_);
  }
  spdlog::warn("{} [{}; stale verdict: {} by {}/{}]", message(v), name(v.reason),
               name(found->verdict.outcome), found->verdict.policy, found->verdict.authority);
  return v;
}

uint64_t LastKnownGood::used(Reason r) const {
  std::lock_guard lock(mu_);
  if (r == Reason::timeout) return used_timeout_;
  return r == Reason::registry_unavailable ? used_unavailable_ : 0;
}

size_t LastKnownGood::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}
size_t LastKnownGood::owned_by(std::string_view owner) const {
  std::lock_guard lock(mu_);
  return entries_.owned_by(owner);
}

Verdict stand_in(const Verdict& fresh, const LastKnownGood::Found& found,
                 std::chrono::milliseconds grace) {
  Verdict v = found.verdict;
  v.image = fresh.image;
  v.containers = fresh.containers;
  v.withheld = v.withheld || fresh.withheld;
  Finding why = fresh.primary();
  why.reason = reported_reason(fresh);
  why.warn_mode = false;
  v.outcome = Outcome::warned;
  v.report(why);
  v.also.clear();
  v.warnings.insert(v.warnings.begin(), why);
  v.cached = true;
  v.cacheable = false;
  v.stale = Verdict::Stale{std::move(why), found.age, grace};
  return v;
}

}  // namespace sigil::verify
