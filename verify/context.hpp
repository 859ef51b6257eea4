// verify/context.hpp: who is asking, for one admission.
//
// Role: the per-admission facts a verdict depends on besides the image and the policies: the
// admitted object's namespace, the registry credentials its pod would pull with, how to read an
// authority's signaturePullSecrets there, and the admission's byte and signature-check budgets. The
// server builds one per request (server::MakeContext; app/webhook.cpp with app/cluster.cpp in
// production) and hands it to every image's verification. Header only and small on purpose: the
// server includes this and verdict.hpp, never the engine. Depends on common and the registry's
// credential type (registry/docker_config.hpp, pure).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "common/budget.hpp"
#include "common/deadline.hpp"
#include "registry/docker_config.hpp"

namespace sigil::verify {

struct Context {
  std::string namespace_;  // the admitted object's namespace ("" = none)
  // The pod's pull secrets (null: sigil's own only); registry::PullCredentials.
  std::shared_ptr<const registry::DockerConfig> credentials;
  // Identifies `credentials` (e.g. a hash of them): verifications and tag reads are shared
  // only between requests with the same credentials, so a pod without access never gets
  // another pod's registry failure, and vice versa.
  std::string credentials_id;
  // Credentials for an authority's signature source: its signaturePullSecrets, read in this
  // admission's namespace. Empty function: such sources are read with sigil's own
  // credentials only.
  std::function<boost::asio::awaitable<std::shared_ptr<const registry::DockerConfig>>(
      std::vector<std::string> secret_names, Deadline deadline)>
      source_credentials;
  // The caller pins the Pod to the digest the verdict names (POST /mutate writes
  // name:tag@digest), so the Pod runs exactly the digest verified: its tags may be answered
  // from the pinning tag cache (verify/tag_resolver.hpp). Never set for /validate.
  bool pins_digest = false;
  // /validate: the image is new in a Pod's spec (a CREATE, or an UPDATE that adds or changes
  // it, ephemeral containers included): what /mutate pins when pinning is on. Written by tag
  // while pinning is on, it was not pinned (/mutate could not resolve the tag in time, or a
  // later webhook changed the image), so what the kubelet pulls is not known: an enforcing
  // policy that matches it denies NOT_PINNED before any registry is asked, a warn-mode one
  // warns. Ignored when the engine's pinning is off.
  bool pod_image = false;
  // The admission's byte budget (Engine::admission_budget()), shared by all its images.
  // Null: each verification gets a budget of its own.
  std::shared_ptr<ByteBudget> budget;
  // The admission's signature-check budget (Engine::admission_checks()), shared by all its
  // images. Null: each verification gets one of its own.
  std::shared_ptr<WorkBudget> checks;
};

}  // namespace sigil::verify
