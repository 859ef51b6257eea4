// kube/cache.hpp: Secrets and ServiceAccounts read through a small TTL cache, for public keys
// and pull credentials (a pod's imagePullSecrets plus its ServiceAccount's).
//
// Role: keep admission requests from hitting the API server for every pod. A found object is
// kept for `ttl`, a 404 for `negative_ttl` (a missing pull secret is common and must not
// cost a GET per pod); other errors are not cached. Concurrent misses of one object share one
// GET (net/flights.hpp). Entries are keyed by namespace/name; the
// soonest to expire go first when max_entries or max_bytes is reached. Secret values are never
// logged. Takes a Clock so tests can move time. Depends on kube/client.hpp and common/clock.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.hpp"
#include "kube/client.hpp"

namespace sigil::kube {

struct CacheOptions {
  std::chrono::seconds ttl{60};
  std::chrono::seconds negative_ttl{10};
  size_t max_entries = 4096;  // per kind (Secrets, ServiceAccounts)
  // What the entries of one kind may hold in all (names, values, a fixed overhead each). A
  // Secret may be up to about 1 MiB, and whoever creates pods names the pull secrets read for
  // them: 4096 entries alone would allow gigabytes. Past it the entries that expire soonest go
  // first; an object larger than this is answered but not kept.
  size_t max_bytes = 64 * 1024 * 1024;
};

struct CacheStats {
  uint64_t hits = 0;
  uint64_t negative_hits = 0;
  uint64_t misses = 0;  // each one a GET
  size_t entries = 0;   // kept now, both kinds
  size_t bytes = 0;     // what they hold, estimated (CacheOptions::max_bytes applies per kind)
};

class SecretCache {
 public:
  // clock must outlive the cache.
  SecretCache(std::shared_ptr<Client> client, CacheOptions options, const Clock& clock);
  ~SecretCache();
  SecretCache(const SecretCache&) = delete;
  SecretCache& operator=(const SecretCache&) = delete;

  // The Secret ns/name, from the cache or one GET. not_found (cached) when it does not exist.
  boost::asio::awaitable<Result<std::shared_ptr<const Secret>>> secret(std::string ns,
                                                                       std::string name,
                                                                       Deadline deadline);
  // The ServiceAccount ns/name, likewise.
  boost::asio::awaitable<Result<std::shared_ptr<const ServiceAccount>>> service_account(
      std::string ns, std::string name, Deadline deadline);

  // What secret() / service_account() would answer from the cache alone, without waiting: a
  // live entry (the object, or a cached not_found), else nullopt, when they would have to read
  // it (not counted as a miss: the caller reads it through them next). Thread-safe.
  std::optional<Result<std::shared_ptr<const Secret>>> cached_secret(const std::string& ns,
                                                                     const std::string& name);
  std::optional<Result<std::shared_ptr<const ServiceAccount>>> cached_service_account(
      const std::string& ns, const std::string& name);

  // Forgets everything (e.g. after a Secret watch event, or on SIGHUP). Thread-safe.
  void clear();
  CacheStats stats() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sigil::kube
