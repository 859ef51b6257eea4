// app/cluster.hpp: policies, trust roots and Secrets from the Kubernetes API (`serve --kube`).
//
// Role: keep the live PolicySet in step with the cluster. Three reflectors (kube/) list and
// watch ClusterImagePolicies, ImagePolicies and TrustRoots; every change recompiles the whole
// set (file policies included) on one strand and publishes it atomically. Each object is
// compiled on its own, so one broken policy never blocks the others; when a new generation of
// a policy fails, the last generation that compiled stays in force (never a silent
// relaxation); a policy that never compiled is not enforced, and its status says why. Status
// (Ready condition + observedGeneration) is written through the status subresource. Keys named
// by secretRef are read through a TTL cache and re-read every `resync`. For admissions, the
// pod's and its ServiceAccount's imagePullSecrets become the registry credentials the kubelet
// would use. Lives in app/ because it joins kube/, policy/, registry/ and verify/.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "admission/admission.hpp"
#include "common/clock.hpp"
#include "common/result.hpp"
#include "policy/policy.hpp"
#include "verify/engine.hpp"

namespace sigil::kube {
class Client;
}  // namespace sigil::kube

namespace sigil::app {

struct ClusterOptions {
  // Where a ClusterImagePolicy's secretRef without a namespace is looked up.
  std::string own_namespace = "sigil-system";
  policy::NoMatch no_match = policy::NoMatch::deny;
  policy::DefaultTrustRoot default_root;
  // The policies and TrustRoots from --policy files (parsed, not linked: they link against
  // the cluster's TrustRoots too). Called at start and by reload_files().
  std::function<Result<policy::Documents>()> file_documents;
  // Secrets are re-read and the set recompiled at least this often.
  std::chrono::milliseconds resync{60000};
  // After a failed status write, the next attempt comes this soon.
  std::chrono::milliseconds status_retry{3000};
  // Reflector timings (tests shorten them).
  std::chrono::milliseconds backoff_initial{800};
  std::chrono::milliseconds backoff_max{30000};
};

class ClusterPolicies {
 public:
  // publish receives every new PolicySet (on the strand; it must be quick and thread-safe).
  ClusterPolicies(boost::asio::io_context& io, std::shared_ptr<kube::Client> client,
                  const Clock& clock, ClusterOptions options,
                  std::function<void(std::shared_ptr<const policy::PolicySet>)> publish);
  ~ClusterPolicies();
  ClusterPolicies(const ClusterPolicies&) = delete;
  ClusterPolicies& operator=(const ClusterPolicies&) = delete;

  // Reads the file documents and starts the watches. Fails when the file documents do not
  // parse (a startup error, as without --kube).
  Status start();
  // Stops the watches and timers; idempotent.
  void stop();
  // True once all three resources were listed and the set compiled from them: /readyz.
  bool ready() const;
  // Re-reads the file documents (SIGHUP) and recompiles; a broken file set is refused and the
  // last good one kept.
  void reload_files();

  // The verification context of one admission: its namespace, and the registry credentials
  // of the pod's imagePullSecrets plus its ServiceAccount's (dockerconfigjson / dockercfg, in
  // the pod's namespace only). Secrets that cannot be read are skipped (logged, never their
  // content): the registry then answers for itself.
  boost::asio::awaitable<verify::Context> context_for(
      const admission::Request& request, std::chrono::steady_clock::time_point deadline);

  struct Stats {
    uint64_t compiles = 0;
    uint64_t published = 0;  // compiles whose inputs changed: a new PolicySet generation
    uint64_t policies = 0;   // in the last published set
    uint64_t invalid = 0;    // objects whose current generation is not enforced
  };
  Stats stats() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sigil::app
