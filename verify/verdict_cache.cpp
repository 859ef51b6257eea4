// verify/verdict_cache.cpp: see verdict_cache.hpp.
#include "verify/verdict_cache.hpp"

#include <algorithm>

namespace sigil::verify {

namespace {
// Once the cache is full, a namespace holding more than a quarter of it is the first to make
// room: one tenant's flood cannot push the others below a quarter each. Below full, any
// namespace may fill it.
constexpr size_t kShareOf = 4;
}  // namespace

VerdictCache::VerdictCache(const Clock& clock, size_t capacity, std::chrono::seconds ttl,
                           std::chrono::seconds negative_ttl)
    : clock_(clock),
      ttl_(ttl),
      negative_ttl_(negative_ttl),
      entries_(capacity, std::max<size_t>(1, capacity / kShareOf)) {}

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
  Entry* e = entries_.find(key);
  if (e == nullptr) {
    if (count) ++misses_;
    return std::nullopt;
  }
  if (clock_.now() >= e->expires) {
    entries_.erase(key);
    if (count) ++misses_;
    return std::nullopt;
  }
  if (count) ++hits_;
  Verdict v = e->verdict;
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

void VerdictCache::put(const std::string& key, const Verdict& v, std::string_view owner) {
  // Only judgements about signatures are cached; a registry, deadline, budget or internal
  // failure (even one a warn-mode policy turned into a warning) is retried next admission.
  if (!is_cacheable(v)) return;
  const auto ttl = v.outcome == Outcome::denied ? std::min(ttl_, negative_ttl_) : ttl_;
  if (ttl.count() <= 0) return;
  std::lock_guard lock(mu_);
  entries_.put(key, owner, Entry{v, clock_.now() + ttl});
}

size_t VerdictCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}
size_t VerdictCache::owned_by(std::string_view owner) const {
  std::lock_guard lock(mu_);
  return entries_.owned_by(owner);
}
size_t VerdictCache::share() const {
  return entries_.share();  // constant
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
