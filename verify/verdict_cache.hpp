// verify/verdict_cache.hpp: the bounded, TTL'd cache of verdicts.
//
// Role: remember judgements about signatures so a digest already verified under the same
// policies is answered without the registry. The key is built by the engine (verdict_key) from
// everything the verdict depends on; this class only stores, expires and evicts (LRU; once full,
// a namespace holding more than a quarter is the first to make room: verify/owned_lru.hpp). Only
// judgements are kept: registry, deadline, budget and internal failures, and anything marked
// not cacheable (a verdict built on a guess), are answered once and forgotten. Thread-safe.
// Depends on common (Clock) and the Verdict type only.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.hpp"
#include "verify/owned_lru.hpp"
#include "verify/verdict.hpp"

namespace sigil::verify {

// Whether v may be remembered: it is marked cacheable and none of its findings (the reported
// one, the other refusals, the warnings) has a transient reason (verdict.hpp: is_transient).
bool is_cacheable(const Verdict& v) noexcept;

class VerdictCache {
 public:
  VerdictCache(const Clock& clock, size_t capacity, std::chrono::seconds ttl,
               std::chrono::seconds negative_ttl);

  // A copy of the cached verdict, marked cached; nullopt on a miss or an expired entry.
  std::optional<Verdict> get(const std::string& key);
  // get(), counting nothing: for the synchronous path (Engine::verify_cached), which may give
  // up on the admission after this answered and ask get() again on the other path. It counts
  // its hits with count_hits() once it has answered, so one lookup counts once.
  std::optional<Verdict> find(const std::string& key);
  void count_hits(uint64_t n);
  // Stores v when is_cacheable(v); denials live negative_ttl. owner: the namespace of the
  // admission that verified it. When the cache is full, an owner holding more than share()
  // entries is the first to make room (verify/owned_lru.hpp), so one namespace's pods cannot
  // push every other namespace's verdicts out.
  void put(const std::string& key, const Verdict& v, std::string_view owner = {});

  size_t size() const;
  size_t owned_by(std::string_view owner) const;
  size_t share() const;
  uint64_t hits() const;
  uint64_t misses() const;

 private:
  struct Entry {
    Verdict verdict;
    std::chrono::system_clock::time_point expires;
  };
  const Clock& clock_;
  const std::chrono::seconds ttl_, negative_ttl_;
  mutable std::mutex mu_;
  OwnedLru<Entry> entries_;
  uint64_t hits_ = 0, misses_ = 0;
  std::optional<Verdict> lookup(const std::string& key, bool count);
};

}  // namespace sigil::verify
