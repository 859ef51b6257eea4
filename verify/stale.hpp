// verify/stale.hpp: last known good, for `cache.staleIfError`: calm in registry outages.
//
// Role: when a verification fails only because sigil could not reach the registry (it was
// refused, failed with 5xx, or did not answer before the deadline), an allow made for the same
// verdict key (verify/engine.cpp verdict_key: repository and digest, the ids of the policies
// matched (their compiled content), namespace, credentials, `key.kms` fingerprints) within the
// grace period stands, with a warning. The pure decision (which fresh verdicts may be replaced, the
// window) is here, with the bounded store of last allows (LRU, like the verdict cache; entries
// outlive the verdict cache's TTL up to the grace period). Never for a judgement (a bad
// signature, an unknown identity, a missing image), a misconfiguration, a previous denial, a
// tag the pod runs unpinned (the caller decides that: engine.cpp), or past the grace period.
// Thread-safe. Depends on common (Clock) and verdict.hpp only.
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

// The reasons that mean "could not reach" (REGISTRY_UNAVAILABLE: refused connection, DNS, TLS,
// 5xx; TIMEOUT: no answer before the webhook deadline). Not REGISTRY_AUTH (credentials may have
// been revoked), REGISTRY_INTEGRITY (content that fails the checks), IMAGE_NOT_FOUND,
// POLICY_UNAVAILABLE (a policy that cannot be compiled or a key that cannot be read), budget,
// internal, and no judgement.
bool means_unreachable(Reason r) noexcept;

// Whether a last-known-good allow may stand in for fresh, a verification just made: fresh is a
// denial, and every finding it holds (the reported one, the other refusals, the warnings)
// means_unreachable; and the image was referenced by digest, or by tag with pinning on (the
// mutating webhook pins Pods to the verified digest).
bool may_stand_in(const Verdict& fresh, bool by_digest, bool pinning) noexcept;

// Whether a verdict verified at `verified` still stands at `now`: 0 <= now - verified <= grace
// (both ends inclusive). grace <= 0: never (the setting is off). A verification in the future
// (a clock stepped back) does not stand.
bool within_grace(std::chrono::system_clock::time_point verified,
                  std::chrono::system_clock::time_point now,
                  std::chrono::milliseconds grace) noexcept;

// The last allow per verdict key, and when it was verified. Bounded (LRU; once full, a namespace
// holding more than a quarter is the first to make room: verify/owned_lru.hpp), so a tenant's
// flood of fresh allows cannot take the cluster's last known good away just before an outage.
class LastKnownGood {
 public:
  LastKnownGood(const Clock& clock, size_t capacity, std::chrono::milliseconds grace);

  bool enabled() const { return grace_.count() > 0 && capacity_ > 0; }
  std::chrono::milliseconds grace() const { return grace_; }

  // A verification just made for key: an allow that may be remembered (is_cacheable) is kept
  // with the time now; any other judgement (a denial or a warning whose reason is not
  // transient, cached or not) forgets the key, so an older allow never outlives a later
  // refusal; a transient failure changes nothing.
  // owner: the namespace of the admission that verified it.
  void record(const std::string& key, const Verdict& fresh, std::string_view owner = {});

  struct Found {
    Verdict verdict;
    std::chrono::milliseconds age{0};
  };
  // The allow kept for key, if it is within the grace period now (an expired one is dropped).
  std::optional<Found> find(const std::string& key);

  // fresh, or the allow kept for key standing in for it (may_stand_in and find), logged (the
  // audit trail: image, failure, age, and the policy and authority that allowed it) and
  // counted.
  Verdict answer(Verdict fresh, const std::string& key, bool by_digest, bool pinning);
  // How many answers stood in for a fresh verdict reporting r.
  uint64_t used(Reason r) const;

  size_t size() const;
  size_t owned_by(std::string_view owner) const;

 private:
  struct Entry {
    Verdict verdict;
    std::chrono::system_clock::time_point verified;
  };
  const Clock& clock_;
  const size_t capacity_;
  const std::chrono::milliseconds grace_;
  mutable std::mutex mu_;
  OwnedLru<Entry> entries_;
  uint64_t used_unavailable_ = 0, used_timeout_ = 0;
};

// fresh, replaced by the allow found (it stands with a warning): warned, reporting fresh's
// reason, Verdict::stale set, never cached. image: as the pod wrote it.
Verdict stand_in(const Verdict& fresh, const LastKnownGood::Found& found,
                 std::chrono::milliseconds grace);

}  // namespace sigil::verify
