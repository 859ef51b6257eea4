// azure/azure.hpp: Azure identities for ACR and Key Vault, the way AKS hands them to a pod.
//
// Role: turn the pod's Azure identity into registry credentials and Key Vault keys (issue 11).
// Two identity sources, tried in this order: Workload Identity (the env the AKS webhook
// injects: AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST;
// the federated token file is re-read on every AAD request because the kubelet rotates it),
// then managed identity through IMDS (opt-in; a user-assigned one, e.g. the kubelet identity,
// only by its client id). An AAD token is exchanged on the registry's own host for an ACR
// refresh token (/oauth2/exchange), and that for an access token per (registry, scope)
// (/oauth2/token, expiry from the JWT's exp). Everything is cached, and concurrent fetches of
// the same refresh or access token share one request (a follower gets the leader's result,
// its error included); a background task
// refreshes what is about to expire (refresh_before, 5 min), so a warm process makes no AAD or
// IMDS call on an admission's path; configured registries are warmed at start (a failure is a
// log line, never an outage). Azure-derived tokens go only to hosts of the allowlists
// (hosts.hpp); nothing token-shaped is ever logged. Does I/O through net::Client; depends on
// common, crypto, net (and spdlog privately).
//
// How registry/ calls it (registry::ClientOptions::identity, adapted in app/azure_glue.cpp;
// the credential chain, per registry host, in this order):
//   1. the admitted pod's pull secrets (PullCredentials, exact host);
//   2. the configured docker config (exact host);
//   3. + 4. `co_await azure->for_registry(host, repository, deadline)`:
//        - Result ok with a value: "Bearer <ACR access token>" for scope
//          repository:<repository>:pull. Send it as the Authorization of /v2/ requests to
//          exactly that host (never across a redirect: net::Request::authorization); do NOT
//          run the WWW-Authenticate realm flow with it: it already is the registry token.
//          If /v2/ answers 401 with it, call `azure->rejected(host, repository)` and call
//          for_registry once more; a second 401 is the answer (REGISTRY_AUTH).
//        - Result ok with nullopt: Azure has nothing for this host (not in the allowlist,
//          or no identity configured): go on to anonymous, silently.
//        - Result error: every Azure identity failed; the message names each one tried and
//          why ("azure workload identity: ...; azure managed identity: ..."). Go on to
//          anonymous; if that fails too, the REGISTRY_AUTH denial carries this message.
//   5. anonymous (the 401 -> realm flow without credentials).
// Pull secrets and docker config win over Azure for the hosts they name, as the kubelet's
// own order has it. has_credentials_for(host) is `azure->covers(host)`.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "azure/hosts.hpp"
#include "azure/tokens.hpp"
#include "common/clock.hpp"
#include "common/deadline.hpp"
#include "common/result.hpp"
#include "net/conn_stats.hpp"
#include "net/outage.hpp"
#include "net/retry.hpp"
#include "net/tls.hpp"

namespace sigil::azure {

// The identity client's connection caps (net::ClientOptions::max_connections): ACR token
// exchanges go to registries pods name (`*.azurecr.io`); AAD, IMDS, Key Vault and the ACRs the
// operator wrote down (warm_registries, an exact `registries` entry) are the operator's
// (operator_named, operator_listed) and keep the reserve.
inline constexpr size_t kMaxConnections = 256;
inline constexpr size_t kReservedConnections = 64;
inline constexpr size_t kConnectionsPerHost = 32;

// What the registry's credential chain calls (see the paragraph above).
class CredentialSource {
 public:
  virtual ~CredentialSource() = default;
  // Whether for_registry may give something for host (an allowed host and an identity).
  virtual bool covers(std::string_view host) const = 0;
  virtual boost::asio::awaitable<Result<std::optional<std::string>>> for_registry(
      std::string host, std::string repository, Deadline deadline) = 0;
  // The registry answered 401 to the credential for_registry gave for (host, repository):
  // forget it, so the next for_registry gets a new one (and a new refresh token if the
  // registry refuses the cached one).
  virtual void rejected(std::string_view host, std::string_view repository) = 0;
};

// Attached (Error::detail) to the error of for_registry() and aad_token() when every identity
// failed: each identity tried, in order, and the kind of its failure (the message has the
// words; this is for a caller that must not repeat them, e.g. a denial).
struct IdentityFailures final : ErrorDetail {
  struct Item {
    bool managed = false;  // false: Workload Identity; true: managed identity (IMDS)
    Errc code = Errc::unauthorized;
  };
  std::vector<Item> items;
};

struct WorkloadIdentityConfig {
  std::string client_id;
  std::string tenant_id;
  std::string token_file;  // AZURE_FEDERATED_TOKEN_FILE, re-read on every AAD request
  std::string authority_host = "https://login.microsoftonline.com/";
};

// The Workload Identity the AKS webhook injected, from the environment (`getenv` injected
// for tests): nullopt when AZURE_CLIENT_ID, AZURE_TENANT_ID or AZURE_FEDERATED_TOKEN_FILE is
// unset or empty; AZURE_AUTHORITY_HOST defaults to https://login.microsoftonline.com/.
std::optional<WorkloadIdentityConfig> workload_identity_from_env(
    const std::function<const char*(const char*)>& getenv);

struct ManagedIdentityConfig {
  bool enabled = false;
  // A user-assigned identity (the kubelet identity of `az aks update --attach-acr`, say);
  // "" = the node's system-assigned identity.
  std::string client_id;
  std::string endpoint = "http://169.254.169.254";
};

struct Options {
  std::optional<WorkloadIdentityConfig> workload_identity;
  ManagedIdentityConfig managed_identity;
  HostAllowlist registries = HostAllowlist::default_registries();
  HostAllowlist vaults = HostAllowlist::default_vaults();
  // Registries whose AAD and refresh tokens are fetched at start and kept fresh.
  std::vector<std::string> warm_registries;
  // Outbound TLS: system roots plus registry.ca (ca_files).
  net::TlsOptions tls;
  // An origin (AAD, IMDS, an ACR token endpoint, a vault) that cannot be reached fails its
  // calls at once for a while (net/outage.hpp; app/ sets registry.failFast). Default: off.
  net::FailFastOptions fail_fast;
  // Refresh a cached token this long before it expires, or at half its lifetime if that is
  // sooner (so a value past a lifetime does not refresh at every tick).
  std::chrono::seconds refresh_before{300};
  // A token with less than this left is not handed out (fetched again on the path).
  std::chrono::seconds min_validity{30};
  // How often the background task looks for tokens to refresh.
  std::chrono::milliseconds refresh_tick{15000};
  // Access tokens unused this long are no longer refreshed, then dropped; so is the refresh
  // token of a registry with none left that warm_registries does not list.
  std::chrono::seconds keep_warm_for{3600};
  size_t max_access_tokens = 4096;
  // IMDS: 429 and 5xx retried with backoff (IMDS asks for it).
  net::RetryPolicy imds_retry{4, std::chrono::milliseconds(500), std::chrono::milliseconds(8000)};
  std::shared_ptr<const Clock> clock = std::make_shared<SystemClock>();
  // Told of every token fetched from upstream (not of cache hits), on the admission path or in
  // the background: source "workload-identity" or "managed-identity" (AAD tokens),
  // "acr-refresh-token" (/oauth2/exchange), "acr-access-token" (/oauth2/token), and whether it
  // worked. Metrics (sigil_token_refreshes_total); must be quick and must not throw.
  std::function<void(std::string_view source, bool ok)> on_refresh;
};

// Counters for metrics and tests (requests sent, per endpoint kind).
struct Stats {
  uint64_t aad_requests = 0;       // Workload Identity token requests
  uint64_t imds_requests = 0;      // IMDS token requests (each retry counted by net)
  uint64_t exchange_requests = 0;  // /oauth2/exchange
  uint64_t token_requests = 0;     // /oauth2/token
  uint64_t vault_requests = 0;     // Key Vault GET /keys
  uint64_t refresh_failures = 0;   // background refreshes that failed
  uint64_t refreshes = 0;          // background refreshes (and start warms) that succeeded
};

class AzureCredentials final : public CredentialSource {
 public:
  // Never throws: a bad TLS setup answers every call with its error (init_status()).
  AzureCredentials(const boost::asio::any_io_executor& executor, Options options);
  ~AzureCredentials() override;
  AzureCredentials(const AzureCredentials&) = delete;
  AzureCredentials& operator=(const AzureCredentials&) = delete;

  Status init_status() const;
  bool has_identity() const;
  // "workload identity (client id ...)", "managed identity (system-assigned)": for logs.
  std::vector<std::string> identity_names() const;

  // Warms options.warm_registries, then refreshes in the background until stop() or
  // destruction. Returns at once; failures are log lines.
  void start();
  void stop();

  bool covers(std::string_view host) const override;
  boost::asio::awaitable<Result<std::optional<std::string>>> for_registry(
      std::string host, std::string repository, Deadline deadline) override;
  void rejected(std::string_view host, std::string_view repository) override;

  // An AAD token for scope from the first identity that gives one (cached, refreshed in the
  // background like the others). For Key Vault. `force`: fetch anew (after a 401).
  boost::asio::awaitable<Result<AadToken>> aad_token(std::string scope, Deadline deadline,
                                                     bool force);

  // A GET with the given bearer token through this object's client (Key Vault).
  struct HttpAnswer {
    unsigned status = 0;
    std::string body;
  };
  boost::asio::awaitable<Result<HttpAnswer>> get_with_bearer(std::string url, std::string token,
                                                             Deadline deadline);

  Stats stats() const;
  // Origins its client could not reach (net::Client::outage_stats), for metrics; thread-safe.
  net::OutageMemo::Stats outage_stats() const;
  // Its client's connections (net::Client::conn_stats), for metrics; thread-safe.
  net::ConnStats conn_stats() const;
  const Options& options() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sigil::azure
