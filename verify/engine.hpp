// verify/engine.hpp: image -> digest -> signatures -> verdict, with caches and deadlines.
//
// Role: the engine both `sigil serve` and `sigil verify` use. For one image it matches the
// policies, resolves the tag once, reads the signatures (evidence.hpp) within the admission's
// byte budget, judges every matching policy (policy::judge, mapped to verify::Reason by
// reason_map.hpp) and returns a Verdict (verdict.hpp), which holds facts, not text. Verdicts are
// cached and identical in-flight verifications coalesced under a key of everything a verdict
// depends on (verdict_key): the repository and digest, the matched policies by id (their
// compiled content, policy::Policy::id: a new set that carries a policy unchanged keeps its
// verdicts), the namespace where signature sources read its Secrets, the
// pod's registry credentials where they apply, and the fingerprint of every `key.kms` key in use
// (so a key rotation retires the verdicts made with the old key at once). KMS keys come from a
// KeyResolver (keys.hpp); when no signature verifies with one, the resolver is asked once to
// look again (refetch_after_failure) and a changed key gets one more judgement. Registry failures
// deny with REGISTRY_* / TIMEOUT (fail closed), say nothing about the registry's internals, and are
// never cached; with cache.staleIfError a recent allow for the same key may stand in for a
// registry that could not be reached (stale.hpp). Depends on crypto, policy, oci and the
// registry::Client interface (not its implementation).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "common/budget.hpp"
#include "common/clock.hpp"
#include "policy/policy.hpp"
#include "registry/client.hpp"
#include "verify/context.hpp"
#include "verify/evidence.hpp"
#include "verify/keys.hpp"
#include "verify/verdict.hpp"

namespace sigil::verify {

struct EngineOptions {
  std::chrono::seconds cache_ttl{300};
  // Denials are kept shorter, so an image signed just after a denied rollout is admitted soon.
  std::chrono::seconds negative_cache_ttl{30};
  size_t cache_capacity = 10000;
  EvidenceLimits limits;
  // Registry data one admission may make sigil hold (manifests being read, payloads, bundles),
  // and all admissions together. Past either, the image is denied with BUDGET_EXCEEDED.
  uint64_t max_admission_bytes = 16u << 20;
  uint64_t max_process_bytes = 256u << 20;
  // Of max_process_bytes, what registries pods name (registry::Client::operator_named is
  // false) cannot take: a slow hostile registry holds what it is charged until the deadline,
  // and a crowd of such admissions must not deny the operator's own registries. 0, or not less
  // than max_process_bytes: nothing kept back.
  uint64_t reserved_process_bytes = 64u << 20;
  // Signature checks one admission may run, in units of about one P-256 check
  // (policy::check_cost: a keyless check is 20, an RSA-16384 one 16): about 0.5 s of one
  // core. Matched policies x authorities x signatures is otherwise unbounded, and tenants
  // write namespaced policies. Past it the image is denied with BUDGET_EXCEEDED (not cached).
  uint64_t max_admission_checks = 8192;
  // Each namespace's share of signature checks over time (RateBudget): this many units come back
  // each second, up to namespace_checks_burst. Without it, whoever may create pods in one
  // namespace could make every admission spend a whole admission budget (new digests, each with
  // many signatures that verify against nothing) and keep sigil's threads busy for every tenant.
  // The defaults are about 0.12 s of one core a second, a burst of about a second: a rollout of
  // hundreds of new images fits. Past it the image is denied with BUDGET_EXCEEDED (not cached;
  // the next admission tries again). 0: no share (the CLI).
  uint64_t namespace_checks_per_second = 2048;
  uint64_t namespace_checks_burst = 16384;
  // Denials normally withhold the digest and the signer's identity when sigil read the image
  // with registry credentials of its own that the pod does not hold (the pod's creator could
  // not read them). true: say everything (the `sigil verify` command line, trusted clusters).
  bool reveal_private_details = false;
  // The tag -> digest cache of /mutate with `pinning` on (tag_resolver.hpp): how long an
  // entry answers, counted from when its read started, and how many are kept. 0 s: none (and
  // tags are always resolved fresh). Only requests whose Context::pins_digest is set use it.
  std::chrono::seconds tag_cache_ttl{0};
  size_t tag_cache_capacity = 10000;
  // Where `key.kms` keys come from (app/: Azure Key Vault). Null: such authorities cannot
  // pass, and the images their policies match are denied with POLICY_UNAVAILABLE.
  std::shared_ptr<KeyResolver> keys;
  // cache.staleIfError (verify/stale.hpp): when a verification fails only because the registry
  // could not be reached, an allow for the same verdict key made at most this long ago stands,
  // with a warning. 0: off. Kept for cache_capacity keys (LRU), whatever cache_ttl says.
  std::chrono::milliseconds stale_if_error{0};
  // The mutating webhook pins Pods' tags to the verified digests (`pinning`): then an image
  // referenced by tag may be admitted on a last-known-good verdict too; without it, never.
  bool pinning = false;
};

class Engine {
 public:
  Engine(registry::Client& client, const Clock& clock, const EngineOptions& options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // image: as written in the pod spec. Never throws; every failure is a denied Verdict.
  boost::asio::awaitable<Verdict> verify(std::string image,
                                         std::shared_ptr<const policy::PolicySet> policies,
                                         Deadline deadline, Context context) {
    return verify_ref(std::move(image), std::move(policies), deadline, std::move(context), false);
  }
  // verify() for an admission without a namespace or credentials (sigil verify, benchmarks).
  // Not a default argument: GCC 12 relocates a coroutine's defaulted class-type argument
  // bitwise into the frame, which corrupts std::string (a double free seen here).
  boost::asio::awaitable<Verdict> verify(std::string image,
                                         std::shared_ptr<const policy::PolicySet> policies,
                                         Deadline deadline) {
    return verify(std::move(image), std::move(policies), deadline, Context{});
  }

  // What verify() would return, when that needs no waiting: a cached verdict (for a digest, or
  // with context.pins_digest for a tag the pinning tag cache holds), or a verdict the policies
  // give alone (an invalid reference, no matching policy). nullopt: verify() must run. Reads no
  // registry and never waits: the synchronous path of a cached admission (server/validator.hpp
  // answer_now). May throw only std::bad_alloc.
  // Counts nothing itself: the synchronous path may give up on an admission after some of
  // its images were answered here, and ask verify() for all of them. Once it answers, it
  // passes what it answered with to count_answered_now(), so each lookup counts once.
  std::optional<Verdict> verify_cached(const std::string& image,
                                       const std::shared_ptr<const policy::PolicySet>& policies,
                                       const Context& context);
  void count_answered_now(const std::vector<Verdict>& verdicts);

  // A fresh per-admission byte budget, chained to the process budget.
  std::shared_ptr<ByteBudget> admission_budget() const;
  // A fresh per-admission signature-check budget (EngineOptions::max_admission_checks), which
  // also spends from `namespace_`'s share (EngineOptions::namespace_checks_per_second).
  std::shared_ptr<WorkBudget> admission_checks(const std::string& namespace_ = {}) const;
  // Namespaces whose share is tracked now (bounded: a full share is forgotten).
  size_t namespace_shares() const;

  struct Stats {
    uint64_t cache_hits = 0, cache_misses = 0, coalesced = 0;
    uint64_t tag_resolutions = 0;  // tags resolved for admissions
    uint64_t tag_reads = 0;        // registry reads those needed (shared by concurrent requests)
    // Images admitted on a last-known-good verdict (cache.staleIfError), by the fresh failure.
    uint64_t stale_registry_unavailable = 0, stale_timeout = 0;
    uint64_t tag_cache_hits = 0;  // tags answered from the pinning tag cache
  };
  Stats stats() const;

 private:
  // verify(); written_by_tag: image is the digest a tag the pod wrote names now (requireDigest
  // in warn mode), which matters for last-known-good verdicts (stale.hpp: may_stand_in).
  boost::asio::awaitable<Verdict> verify_ref(std::string image,
                                             std::shared_ptr<const policy::PolicySet> policies,
                                             Deadline deadline, Context context,
                                             bool written_by_tag);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sigil::verify
