// verify/engine.hpp: image -> digest -> signatures -> verdict, with caches and deadlines.
//
// Role: the engine both `sigil serve` and `sigil verify` use. For one image it resolves the tag
// once, fetches the legacy cosign signatures, evaluates every matching policy and returns a
// Verdict. Verdicts are cached by (digest, policy generation) with a TTL and bounded size;
// identical in-flight verifications are coalesced. Registry failures deny with
// REGISTRY_UNAVAILABLE / TIMEOUT (fail closed) and are never cached. Depends on crypto,
// policy, oci and the registry::Client interface (not its implementation).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "common/clock.hpp"
#include "policy/policy.hpp"
#include "registry/client.hpp"

namespace sigil::verify {

enum class Outcome { allowed, denied, warned };

struct Verdict {
  Outcome outcome = Outcome::denied;
  std::string image;   // as written in the pod spec
  std::string digest;  // resolved digest, when known
  std::string
      reason_code;      // stable: NOT_SIGNED, BAD_SIGNATURE, DIGEST_MISMATCH, NO_MATCHING_POLICY,
                        // REGISTRY_AUTH, REGISTRY_UNAVAILABLE, TIMEOUT, INVALID_IMAGE, STATIC_FAIL
  std::string message;  // one line naming the image, the policy and why
  std::vector<std::string> warnings;
  bool cached = false;
};

// Who is asking: namespace-scoped policies and registry credentials depend on it.
struct Context {
  std::string namespace_;                 // the admitted object's namespace ("" = none)
  registry::PullCredentials credentials;  // the pod's pull secrets (null: sigil's own only)
  // Identifies `credentials` (e.g. a hash of them): verifications and tag reads are shared
  // only between requests with the same credentials, so a pod without access never gets
  // another pod's registry failure, and vice versa.
  std::string credentials_id;
  // Credentials for an authority's signature source: its signaturePullSecrets, read in this
  // admission's namespace. Empty function: such sources are read with sigil's own
  // credentials only.
  std::function<boost::asio::awaitable<registry::PullCredentials>(
      std::vector<std::string> secret_names, registry::Deadline deadline)>
      source_credentials;
};

struct EngineOptions {
  std::chrono::seconds cache_ttl{300};
  // Denials are kept shorter, so an image signed just after a denied rollout is admitted soon.
  std::chrono::seconds negative_cache_ttl{30};
  size_t cache_capacity = 10000;
  int64_t max_signature_payload = 1 << 20;  // bytes per payload blob
  size_t max_signatures = 64;               // layers read from one .sig manifest
  size_t max_bundles = 16;                  // sigstore bundles read per image
  int64_t max_bundle_size = 1 << 20;        // bytes per bundle blob
};

class Engine {
 public:
  Engine(registry::Client& client, const Clock& clock, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // image: as written in the pod spec. Never throws; every failure is a denied Verdict.
  boost::asio::awaitable<Verdict> verify(std::string image,
                                         std::shared_ptr<const policy::PolicySet> policies,
                                         registry::Deadline deadline, Context context);
  // verify() for an admission without a namespace or credentials (sigil verify, benchmarks).
  // Not a default argument: GCC 12 relocates a coroutine's defaulted class-type argument
  // bitwise into the frame, which corrupts std::string (a double free seen here).
  boost::asio::awaitable<Verdict> verify(std::string image,
                                         std::shared_ptr<const policy::PolicySet> policies,
                                         registry::Deadline deadline) {
    return verify(std::move(image), std::move(policies), deadline, Context{});
  }

  struct Stats {
    uint64_t cache_hits = 0, cache_misses = 0, coalesced = 0;
    uint64_t tag_resolutions = 0;  // tags resolved for admissions
    uint64_t tag_reads = 0;        // registry reads those needed (shared by concurrent requests)
  };
  Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sigil::verify
