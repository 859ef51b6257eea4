// registry/detail/http_client_impl.hpp: the private parts of registry::HttpClient, shared by
// its sources.
//
// Role: registry/http_client.cpp holds the transport side (the origin of a registry, plain
// http only for insecure_hosts, one request with auth, net's retries and redirects: fetch,
// fetch_with) and the public calls (resolve, get_manifest, get_blob, get_referrers);
// registry/http_auth.cpp the auth side (which credential for which host, Basic and the
// Bearer token flow with its cache, 401 challenges, the REGISTRY_AUTH credential trail).
// Included only by registry/*.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "common/result.hpp"
#include "net/client.hpp"
#include "net/url.hpp"
#include "registry/auth.hpp"
#include "registry/client.hpp"
#include "registry/docker_config.hpp"
#include "registry/http_client.hpp"

namespace sigil::registry {

namespace detail {

// How a registry host authenticates, learnt from its 401 challenge.
struct HostAuth {
  enum Kind { kNone, kBasic, kBearer } kind = kNone;
  std::string realm;
  std::string service;
};

inline std::string status_text(unsigned s) {
  return "HTTP " + std::to_string(s);
}

}  // namespace detail

struct HttpClient::Impl : std::enable_shared_from_this<HttpClient::Impl> {
  ClientOptions opts;
  Status init;
  std::unique_ptr<net::Client> http;
  std::mutex mu;  // guards host_auth and no_referrers
  std::map<std::string, detail::HostAuth> host_auth;
  // Repositories ("registry/repository", and which credential: token_scope) whose referrers
  // endpoint answered a 404 that no
  // route served (no distribution error body: the registry has no referrers API), until when
  // to believe it: callers read the referrers tag schema instead, one request per image saved.
  // Kept per repository, and learnt only from that unambiguous answer: a NAME_UNKNOWN 404 (a
  // repository that does not exist, which any pod creator can name) says nothing about the
  // registry, so one admission can never make bundles on a whole host invisible.
  std::map<std::string, std::chrono::steady_clock::time_point> no_referrers;
  TokenCache tokens;
  std::atomic<uint64_t> token_requests{0};

  Status setup(const boost::asio::any_io_executor& executor);

  net::RetryPolicy retry_policy() const;

  bool insecure(std::string_view registry, const std::string& authority) const;

  // Whose registry this is. `listed`: the operator named this host (its own credentials,
  // insecure_hosts, set_operator_registries); `covered`: it falls in a pattern the operator
  // allows (the identity's "*.azurecr.io"), inside which pod authors choose names; `pod`: any
  // other. Requests for listed and covered ones take reserved DNS slots (their DNS is the
  // operator's or the cloud's, never a pod author's); only listed ones get metric series no pod
  // can take (net::Request::operator_listed). Never from a pod's pull secrets, which the pod's
  // author writes.
  enum class Owner { pod, covered, listed };
  Owner owner(const std::string& registry) const;
  // Marks req as the requests of a registry with that owner (net::Request::operator_named,
  // operator_listed).
  static void mark(net::Request& req, Owner owner);
  // set_operator_registries' list, sorted; swapped whole under its mutex.
  mutable std::mutex operator_mu;
  std::shared_ptr<const std::vector<std::string>> operator_registries;

  // The registry origin for API calls (docker.io -> registry-1.docker.io).
  Result<net::Url> origin(const std::string& registry) const;

  // Whether the identity source (Azure) may give registry a token: it covers the host, and the
  // host is spoken to over TLS. A bearer token for the cloud identity never crosses plain HTTP,
  // not even to a host the operator listed as insecure (a listing meant for a local mirror).
  bool identity_for(const std::string& registry) const;

  // ---- auth ----

  // The credential for repository on registry: the admission's pull secrets first (kubelet
  // order), then the client's own config. In each, the most specific key with a path that covers
  // the repository, else the key of the exact host (DockerConfig::find).
  std::optional<Credential> credential_for(const std::string& registry,
                                           const std::string& repository,
                                           const DockerConfig* extra) const;

  // Which credential a cached token belongs to: tokens obtained with one pod's pull secret are
  // never handed to a request that came with another (or none).
  static std::string token_scope(const std::string& scope, const std::optional<Credential>& c);

  std::string basic_for(const std::string& registry, const std::string& repository,
                        const DockerConfig* extra) const;

  boost::asio::awaitable<Status> fetch_token(const net::Url& origin, const std::string& registry,
                                             const std::string& repository,
                                             const detail::HostAuth& ha, const std::string& scope,
                                             Deadline deadline, const DockerConfig* extra);

  // The Authorization header to send to origin for scope, fetching a token when the host is
  // known to use bearer auth and none is cached. Empty: anonymous.
  boost::asio::awaitable<Result<std::string>> authorization_for(
      const net::Url& origin, const std::string& registry, const std::string& repository,
      const std::string& scope, Deadline deadline, const DockerConfig* extra);

  // Handles a 401 challenge: records how the host authenticates and refreshes the token.
  boost::asio::awaitable<Status> on_challenge(const net::Url& origin, const std::string& registry,
                                              const std::string& repository,
                                              const std::string& scope, const std::string& header,
                                              Deadline deadline, const DockerConfig* extra);

  // What the credential chain did in one fetch, for the REGISTRY_AUTH denial's trail.
  struct AuthNotes {
    std::optional<Error> identity_failure;  // the identity source's error (every identity failed)
    bool identity_token_used = false;       // the registry refused the identity's token
  };

  // A registry API call with auth (anonymous first, then per challenge, re-auth once on 401),
  // net's retries, and redirects (GET only; net never carries Authorization to another
  // origin, and refuses plain http but to an insecure host).
  boost::asio::awaitable<Result<net::Response>> fetch(net::Method method,
                                                      const std::string& registry,
                                                      const std::string& repository,
                                                      const std::string& path, std::string accept,
                                                      uint64_t limit, Deadline deadline,
                                                      const DockerConfig* extra);

  // The status in an error of this client ("... (401 Unauthorized)", "... (HTTP 401)"), 0
  // when there is none.
  static unsigned status_in(const std::string& m);

  // Every credential source, in the kubelet's order, and what it gave for registry: the
  // REGISTRY_AUTH denial names them (registry/client.hpp).
  std::shared_ptr<const CredentialTrail> trail(const std::string& registry,
                                               const std::string& repository,
                                               const DockerConfig* extra, const AuthNotes& notes,
                                               const Error& final_error) const;

  boost::asio::awaitable<Result<net::Response>> fetch_with(
      net::Method method, const std::string& registry, const std::string& repository,
      const std::string& path, std::string accept, uint64_t limit, Deadline deadline,
      const DockerConfig* extra, AuthNotes* notes);
};

}  // namespace sigil::registry
