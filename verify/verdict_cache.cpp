// verify/verdict_cache.cpp: see verdict_cache.hpp.
#include "verify/verdict_cache.hpp"

#include <algorithm>

namespace sigil::verify {

VerdictCache::VerdictCache(const Clock& clock, size_t capacity, std::chrono::seconds ttl,
                           std::chrono::seconds negative_ttl)
    : clock_(clock), capacity_(capacity), ttl_(ttl), negative_ttl_(negative_ttl) {}

std::optional<Verdict> VerdictCache::get(const std::string& key) {
  return lookup(key, true);
}

std::optional<Verdict> VerdictCache::find(const std::string& key) {
  return lookup(key, false);
}

void VerdictCache::count_hits(uint64_t n) {
  std::lock_guard lock(mu_);
  hits_ += n;
}

std::optional<Verdict> VerdictCache::lookup(const std::string& key, bool count) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (count) ++misses_;
    return std::nullopt;
  }
  if (clock_.now() >= it->second.expires) {
    lru_.erase(it->second.lru);
    entries_.erase(it);
    if (count) ++misses_;
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  if (count) ++hits_;
  Verdict v = it->second.verdict;
  v.cached = true;
  return v;
}

bool is_cacheable(const Verdict& v) noexcept {
  if (!v.cacheable || is_transient(reported_reason(v))) return false;
  // A denial reports its most severe refusal, and every transient reason outranks every other
  // (verdict.hpp: severity), but a warning reports WARN: what a warn-mode policy said is in
  // warnings, and a refusal in also must not hide behind a judgement either.
  for (const auto& f : v.also) {
    if (is_transient(f.reason)) return false;
  }
  for (const auto& f : v.warnings) {
    if (is_transient(f.reason)) return false;
  }
  return true;
}

void VerdictCache::put(const std::string& key, const Verdict& v) {
  // Only judgements about signatures are cached; a registry, deadline, budget or internal
  // failure (even one a warn-mode policy turned into a warning) is retried next admission.
  if (!is_cacheable(v) || capacity_ == 0) return;
  const auto ttl = v.outcome == Outcome::denied ? std::min(ttl_, negative_ttl_) : ttl_;
  if (ttl.count() <= 0) return;
  std::lock_guard lock(mu_);
  if (auto it = entries_.find(key); it != entries_.end()) {
    lru_.erase(it->second.lru);
    entries_.erase(it);
  }
  while (entries_.size() >= capacity_ && !lru_.empty()) {
    entries_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  entries_.emplace(key, Entry{v, clock_.now() + ttl, lru_.begin()});
}

size_t VerdictCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}
uint64_t VerdictCache::hits() const {
  std::lock_guard lock(mu_);
  return hits_;
}
uint64_t VerdictCache::misses() const {
  std::lock_guard lock(mu_);
  return misses_;
}

}  // namespace sigil::verify
