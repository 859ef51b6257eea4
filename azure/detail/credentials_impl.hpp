// azure/detail/credentials_impl.hpp: the private parts of AzureCredentials, shared by its sources.
//
// Role: azure/azure.cpp holds the Impl's construction and checks, the background refresh
// (warm_all, refresh_due, loop) and AzureCredentials' public calls (for_registry, aad_token,
// get_with_bearer for Key Vault, stats); azure/aad_client.cpp the AAD token sources
// (Workload Identity, IMDS) and their cache; azure/acr_exchange.cpp the ACR exchange
// (/oauth2/exchange, /oauth2/token), its caches and the coalescing of concurrent fetches.
// Included only by azure/*.cpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "azure/azure.hpp"
#include "net/client.hpp"
#include "net/flights.hpp"

namespace sigil::azure {

// AAD, IMDS and the vaults are hosts the operator configured (never a pod's choice): their
// requests take the reserved DNS slots, and their outage memory is never pushed out by the ACR
// names pods choose (net::Request::operator_named, operator_listed; net/outage.hpp).
inline void mark_listed(net::Request& req) {
  req.operator_named = true;
  req.operator_listed = true;
}

namespace detail {

inline constexpr uint64_t kMaxTokenAnswer = 64 * 1024;

inline net::Limits token_limits() {
  net::Limits l;
  l.max_body = kMaxTokenAnswer;
  l.max_error_body = 8 * 1024;
  return l;
}

inline std::string status_message(unsigned status, const std::string& detail) {
  std::string m = "answered " + std::to_string(status);
  if (!detail.empty()) m += " (" + detail + ")";
  return m;
}

inline Errc errc_of_status(unsigned status) {
  if (status == 401 || status == 403 || status == 400) return Errc::unauthorized;
  if (status == 404) return Errc::not_found;
  return Errc::unavailable;
}

}  // namespace detail

namespace asio = boost::asio;

struct AzureCredentials::Impl : std::enable_shared_from_this<Impl> {
  enum class Kind { workload, imds };
  struct Identity {
    Kind kind;
    std::string name;
  };
  struct Refresh {
    std::string token;
    SysTime expires_at;
    SysTime fetched_at;
  };
  struct Access {
    std::string token;
    SysTime expires_at;
    SysTime last_used;
    SysTime fetched_at;
  };

  Impl(const asio::any_io_executor& executor, Options o);

  static net::ClientOptions client_options(const Options& o);

  Status check();

  std::string authority_base() const;

  SysTime now() const { return opt.clock->now(); }

  // --- AAD tokens ---------------------------------------------------------------------------

  asio::awaitable<Result<AadToken>> fetch_workload(std::string scope, Deadline deadline);

  asio::awaitable<Result<AadToken>> fetch_imds(std::string scope, Deadline deadline);

  // Options::on_refresh, never throwing.
  void report(std::string_view source, bool ok) const;

  asio::awaitable<Result<AadToken>> aad_for(size_t i, std::string scope, Deadline deadline,
                                            bool force);

  asio::awaitable<Result<std::pair<AadToken, size_t>>> aad_any(std::string scope, Deadline deadline,
                                                               bool force);

  // --- coalescing ---------------------------------------------------------------------------
  // Concurrent fetches of the same token (a burst of admissions on a cold cache, a background
  // refresh meeting an admission) share one request (net::Flights, under mu).

  using Flight = net::Flights<Result<std::string>>::Flight;

  // The caller's flight for key, and whether it leads it.
  std::pair<std::shared_ptr<Flight>, bool> join(const std::string& key);

  void land(const std::string& key, const std::shared_ptr<Flight>& f, const Result<std::string>& r);

  asio::awaitable<Result<std::string>> follow(std::shared_ptr<Flight> f, Deadline deadline);

  // --- ACR ----------------------------------------------------------------------------------

  asio::awaitable<Result<std::string>> refresh_token(std::string host, Deadline deadline,
                                                     bool force);

  asio::awaitable<Result<std::string>> access_token(std::string host, std::string scope,
                                                    Deadline deadline);

  asio::awaitable<Result<std::string>> refresh_token_once(std::string host, Deadline deadline,
                                                          bool force);

  asio::awaitable<Result<std::string>> access_token_once(std::string host, std::string scope,
                                                         Deadline deadline);

  void evict_one();  // under mu: the least recently used access token

  // --- background ---------------------------------------------------------------------------

  void log_state(const std::string& what, const Status& st);

  asio::awaitable<void> warm_all();

  asio::awaitable<void> refresh_due();

  static asio::awaitable<void> loop(std::weak_ptr<Impl> weak);

  asio::any_io_executor ex;
  Options opt;
  net::Client client;
  std::vector<Identity> identities;
  Status init;
  mutable std::mutex mu;
  std::map<std::pair<size_t, std::string>, AadToken> aad;        // (identity, scope)
  std::map<std::string, Refresh> refresh;                        // registry host
  std::map<std::pair<std::string, std::string>, Access> access;  // (host, scope)
  std::map<std::string, std::string> last_logged;
  // When each identity's ACR-scope AAD token was last dropped because an ACR exchange answered
  // 401 with it, per window: (identity, host) for a registry the operator wrote down
  // (warmRegistries, an exact registryHosts entry), (identity, "") for every other. Pods choose
  // ACR names (any *.azurecr.io, their own registry or one in another tenant): a 401 from such a
  // host says more about the host than about the token, so the shared token is dropped at most
  // once per kForcedAadRefresh for all of them, not per admission (which would send AAD or IMDS
  // a request per pod and take the token from everyone in the meantime). The operator's own
  // registries each have a window of their own, which no pod's 401 can spend: a revoked token
  // there is refetched at once. At most 1 + (the operator's registries) drops per window.
  std::map<std::pair<size_t, std::string>, SysTime> aad_dropped;
  // The registries the operator wrote down (normalized warm_registries; exact registryHosts
  // entries are asked of opt.registries).
  std::set<std::string> warm_hosts;
  // Whether `host` is a registry the operator wrote down (warmRegistries, an exact registryHosts
  // entry) rather than one a pod chose under a wildcard: its exchanges are marked as the
  // operator's (mark_listed) and it has a forced-refetch window of its own.
  bool operator_registry(const std::string& host) const {
    return warm_hosts.count(host) != 0 || opt.registries.names(host);
  }
  static constexpr std::chrono::seconds kForcedAadRefresh{30};
  net::Flights<Result<std::string>> flights;  // in-flight fetches, by key
  std::atomic<bool> stopped{false};
  std::atomic<bool> started{false};
  std::atomic<uint64_t> aad_requests{0}, imds_requests{0}, exchange_requests{0}, token_requests{0},
      vault_requests{0}, refresh_failures{0}, refreshes{0};
};

}  // namespace sigil::azure
