// app/webhook.hpp: the bridge from the HTTP server to the verify engine.
//
// Role: where `sigil serve` joins server/ to verify/, and the only place the two meet. The
// server's Validator (POST /validate) and Mutator (POST /mutate) ask, for each image of an
// admission, verify_image(): the Engine's verdict under the policy snapshot current now; and
// once per admission, admission_context(): the namespace, the pod's pull credentials (with
// --kube, app/cluster.cpp) and the admission's byte budget. One Engine and one verdict cache
// serve both routes, so the digest /mutate pins is the one /validate then finds verified.
// Trail of a request: app/serve.cpp run_serve -> server/session.cpp (session, Router) ->
// server/validator.cpp Validator::handle -> here -> verify/engine.cpp Engine::verify.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "admission/admission.hpp"
#include "common/deadline.hpp"
#include "policy/policy.hpp"
#include "server/mutator.hpp"
#include "server/validator.hpp"
#include "verify/engine.hpp"

namespace sigil::app {

class ClusterPolicies;
class Metrics;

// The live policy snapshot: requests load it without a lock; SIGHUP or the cluster swap it.
class PolicyStore {
 public:
  explicit PolicyStore(std::shared_ptr<const policy::PolicySet> p) : current_(std::move(p)) {}
  std::shared_ptr<const policy::PolicySet> get() const { return current_.load(); }
  void set(std::shared_ptr<const policy::PolicySet> p) { current_.store(std::move(p)); }

 private:
  std::atomic<std::shared_ptr<const policy::PolicySet>> current_;
};

class Webhook {
 public:
  // engine, store, cluster (null without --kube) and metrics (null: none counted) must outlive
  // the Webhook, and the Webhook every server connection.
  Webhook(verify::Engine& engine, const PolicyStore& store, ClusterPolicies* cluster,
          Metrics* metrics = nullptr);
  Webhook(const Webhook&) = delete;
  Webhook& operator=(const Webhook&) = delete;

  // One image of one admission (server::VerifyImage): Engine::verify under store.get().
  boost::asio::awaitable<verify::Verdict> verify_image(std::string image,
                                                       const verify::Context& context,
                                                       Deadline deadline) const;
  // Who is asking (server::MakeContext): with --kube the cluster's answer (namespace, the pod's
  // and its ServiceAccount's imagePullSecrets), else the namespace alone; and a fresh byte
  // budget for all the admission's images.
  boost::asio::awaitable<verify::Context> admission_context(const admission::Request& request,
                                                            Deadline deadline) const;

  // admission_context() when it needs no waiting (server::ContextNow): the namespace alone, or
  // with --kube the cluster's answer from its caches; nullopt when that needs the API server.
  // No byte budget: the synchronous path reads no registry.
  std::optional<verify::Context> context_now(const admission::Request& request) const;

  server::Validator& validator() { return validator_; }
  const server::Mutator& mutator() const { return mutator_; }

 private:
  verify::Engine& engine_;
  const PolicyStore& store_;
  ClusterPolicies* cluster_;
  Metrics* metrics_;
  server::Validator validator_;
  server::Mutator mutator_;
};

}  // namespace sigil::app
