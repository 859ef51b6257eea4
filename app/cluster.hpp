// app/cluster.hpp: policies, trust roots and Secrets from the Kubernetes API (`serve --kube`).
//
// Role: keep the live PolicySet in step with the cluster. Three reflectors (kube/) list and
// watch ClusterImagePolicies, ImagePolicies and TrustRoots; every change of a spec reads the
// Secrets the policies name and recompiles the whole set (file policies included) on one strand
// with the pure compile_cluster() (app/compile_cluster.hpp, which states the rules), then
// publishes it atomically; a compile whose inputs did not change publishes nothing. A snapshot
// that changes no spec (the same uids and metadata.generations: a status write coming back, a
// label) does not recompile; its changed objects only get their last status again. Each object
// is compiled on its own, so one broken policy never blocks the others; when a new generation
// of a policy fails, the last generation that compiled stays in force (never a silent
// relaxation); a policy that never compiled but whose globs can be read is *unavailable*: it
// denies every image it matches with POLICY_UNAVAILABLE (warns in warn mode) until it
// compiles, so sigil never admits an image that a policy present in the cluster would have
// denied. Status (Ready condition + observedGeneration) is written through the status
// subresource, at most `status_writers` PATCHes at a time and off the compile strand, and a
// problem is logged when it appears or changes. Keys named by secretRef are read through a TTL
// cache and re-read every `resync`; a read that fails with anything but 404 is retried with
// exponential, capped, jittered backoff. Readiness: ready() turns true once all three resources
// were listed and the set compiled from them (every named Secret read or failed); a replica
// with unavailable policies is ready, since they deny. For admissions, the pod's and its
// ServiceAccount's imagePullSecrets become the registry credentials the kubelet would use.
// Lives in app/ because it joins kube/, policy/, registry/ and verify/.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "admission/admission.hpp"
#include "common/clock.hpp"
#include "common/deadline.hpp"
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
  // Status PATCHes in flight at once, at most: a sync of hundreds of policies must not queue
  // hundreds of writes in front of the admissions' reads at the same API server.
  size_t status_writers = 4;
  // Backoff after a failed API read: lists and watches (the reflectors), and Secret reads
  // other than 404 (exponential from backoff_initial, capped at backoff_max, jittered).
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
  // True once all three resources were listed, the Secrets their policies name were read
  // (or failed), and the set compiled from them was published: /readyz. Stays true.
  bool ready() const;
  // Re-reads the file documents (SIGHUP) and recompiles; a broken file set is refused and the
  // last good one kept.
  void reload_files();

  // The verification context of one admission: its namespace, and the registry credentials
  // of the pod's imagePullSecrets plus its ServiceAccount's (dockerconfigjson / dockercfg, in
  // the pod's namespace only). Secrets that cannot be read are skipped (logged, never their
  // content): the registry then answers for itself.
  boost::asio::awaitable<verify::Context> context_for(const admission::Request& request,
                                                      Deadline deadline);

  // context_for() from the Secret cache alone, without waiting: nullopt when some object it
  // needs is not cached (then context_for() must read it).
  std::optional<verify::Context> context_now(const admission::Request& request);

  struct Stats {
    uint64_t compiles = 0;
    uint64_t published = 0;    // compiles whose inputs changed: a new PolicySet generation
    uint64_t policies = 0;     // in the last published set (unavailable ones included)
    uint64_t invalid = 0;      // objects whose current generation is not enforced
    uint64_t unavailable = 0;  // of those, policies denying what they match
  };
  Stats stats() const;

  // Per resource ("clusterimagepolicies", "imagepolicies", "trustroots"): seconds since its
  // store was last known to be the API server's (kube::ReflectorStats::current_at), or -1
  // before its first list. Readiness stays true once synced (a replica with an older set still
  // enforces it), so this is what says that policy changes are not reaching sigil.
  std::vector<std::pair<std::string, double>> sync_ages() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sigil::app
