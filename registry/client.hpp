// registry/client.hpp: the OCI distribution client interface the verify engine talks to.
//
// Role: tag -> digest, manifests and blobs by digest, every answer verified (bytes hashed and
// compared to the digest asked for, sizes capped) and every call bounded by the caller's
// deadline. This header is the interface only; registry/http_client.hpp is the HTTPS
// implementation. Depends on common, oci and Boost.Asio (awaitable) only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "common/deadline.hpp"
#include "common/result.hpp"
#include "oci/manifest.hpp"
#include "oci/reference.hpp"
#include "registry/docker_config.hpp"

namespace sigil::registry {

// Registry credentials of one admission: the pod's imagePullSecrets and its ServiceAccount's,
// as the kubelet would pull with. Looked up by exact host before the client's own
// credentials; tokens obtained with them are cached apart. Null: the client's own only.
using PullCredentials = std::shared_ptr<const DockerConfig>;

// The credential sources asked for a registry host, in the kubelet's order, and what each
// gave: attached (as CredentialTrail, an ErrorDetail) to an Errc::unauthorized error, so the
// REGISTRY_AUTH denial can name them. Typed on purpose: nothing a registry or Entra ID wrote,
// and nothing token-shaped, can reach the denial through it.
enum class CredentialSourceKind {
  pull_secret,        // the admitted pod's imagePullSecrets
  docker_config,      // sigil's configured docker config
  workload_identity,  // Azure Workload Identity
  managed_identity,   // Azure managed identity (IMDS)
  azure_identity,     // an Azure identity's token (which one: see the log)
  anonymous,
};
enum class CredentialOutcome {
  none_for_host,   // the source has no credential for this host
  not_configured,  // the source is not set up
  not_for_host,    // the source may not send credentials to this host (host list)
  not_tried,       // an earlier source had a credential for this host
  refused,         // refused (401/403) by the registry, its token service, or Entra ID
  unavailable,     // could not be reached or failed (5xx, network)
  timeout,         // did not answer before the deadline
  failed,          // anything else (a bad answer, a local misconfiguration)
};
struct CredentialAttempt {
  CredentialSourceKind source;
  CredentialOutcome outcome;
  unsigned status = 0;  // the HTTP status that decided it, when known (401, 403)
};
struct CredentialTrail final : ErrorDetail {
  std::vector<CredentialAttempt> tried;
};
// The trail attached to e, or nullptr.
inline const CredentialTrail* credential_trail(const Error& e) {
  return dynamic_cast<const CredentialTrail*>(e.detail.get());
}
// The outcome an error of this code stands for.
inline CredentialOutcome outcome_of(Errc code) {
  switch (code) {
    case Errc::unauthorized:
      return CredentialOutcome::refused;
    case Errc::unavailable:
      return CredentialOutcome::unavailable;
    case Errc::timeout:
      return CredentialOutcome::timeout;
    default:
      return CredentialOutcome::failed;
  }
}

struct ManifestResponse {
  std::string digest;      // "sha256:..." of the exact bytes (verified)
  std::string media_type;  // Content-Type
  std::string body;        // empty for resolve()
};

class Client {
 public:
  virtual ~Client() = default;

  // Tag -> digest with HEAD (full Accept list); GET and hash when the registry omits
  // Docker-Content-Digest. A reference that carries a digest is returned as is, no request.
  virtual boost::asio::awaitable<Result<std::string>> resolve(const oci::Reference& ref,
                                                              Deadline deadline,
                                                              PullCredentials creds = {}) = 0;

  // GET a manifest by tag or digest in registry/repository. By digest: the body's sha256 must
  // equal it. Errc::not_found on 404 (e.g. no .sig tag: "not signed").
  virtual boost::asio::awaitable<Result<ManifestResponse>> get_manifest(
      const std::string& registry, const std::string& repository, const std::string& reference,
      Deadline deadline, PullCredentials creds = {}) = 0;

  // GET a blob by digest, at most max_size bytes, sha256-checked.
  virtual boost::asio::awaitable<Result<std::string>> get_blob(const std::string& registry,
                                                               const std::string& repository,
                                                               const std::string& digest,
                                                               int64_t max_size, Deadline deadline,
                                                               PullCredentials creds = {}) = 0;

  // GET /v2/<repository>/referrers/<digest> (OCI distribution 1.1): the descriptors of the
  // manifests whose subject is digest, following `Link: <…>; rel="next"` pages (bounded), and
  // filtered client-side to artifact_type when it is not empty (registries may ignore the
  // filter). Errc::unsupported when the registry has no referrers API (a bare 404: the spec
  // forbids a registry that has one to answer 404; implementations may remember it for a
  // while, per repository); callers then read the referrers tag schema. Errc::not_found when
  // the registry answered 404 with a distribution error (NAME_UNKNOWN): ambiguous, callers
  // fall back to the tag schema for this call but must not treat the result as definitive.
  // The descriptors come without their annotations. This default is for clients without the
  // API.
  virtual boost::asio::awaitable<Result<std::vector<oci::Descriptor>>> get_referrers(
      const std::string& registry, const std::string& repository, const std::string& digest,
      const std::string& artifact_type, Deadline deadline, PullCredentials creds = {}) {
    (void)registry, (void)repository, (void)digest, (void)artifact_type, (void)deadline;
    (void)creds;
    co_return make_error(Errc::unsupported, "this registry client has no referrers API");
  }

  // True when the client holds credentials of its own (configured docker config, Azure
  // identity) for repository on registry: what it reads there with them, a pod without pull
  // access could not read itself.
  virtual bool has_credentials_for(const std::string& registry,
                                   const std::string& repository) const {
    (void)registry, (void)repository;
    return false;
  }

  // True when creds (an admission's pull credentials) hold a credential for repository on
  // registry, looked up exactly as this client looks them up when it reads there (a key with a
  // path covers only the repositories under it). The default, for clients without a lookup of
  // their own, answers for any non-null creds (the cautious answer: such verdicts are kept
  // apart).
  virtual bool covers(const PullCredentials& creds, const std::string& registry,
                      const std::string& repository) const {
    (void)registry, (void)repository;
    return creds != nullptr;
  }

  // True when the operator named registry (its own credentials, an insecure host, a cluster
  // policy's literal glob, a host its cloud identity covers), so that pod-named hosts cannot
  // take what it needs (reserved DNS slots, its share of the byte budget). The default, for
  // clients without that knowledge: false, every host a pod's.
  virtual bool operator_named(const std::string& registry) const {
    (void)registry;
    return false;
  }

  // Number of HTTP requests sent so far (for benchmarks and tests).
  virtual uint64_t request_count() const = 0;
};

}  // namespace sigil::registry
