// registry/http_client.hpp: the HTTPS implementation of registry::Client, on net::Client.
//
// Role: talk the OCI distribution API to real registries: anonymous, Basic and Bearer-token
// auth with a token cache, which origin is plain HTTP (insecure_hosts), digests checked,
// referrers paged. The transport (TLS 1.2+ with peer, SNI and host-name/IP verification,
// keep-alive pool per origin, retries with backoff for 429/5xx/connection errors, redirects,
// caps, cancellation) is net's; every operation is bounded by the caller's Deadline.
//
// Where credentials go (security choices):
//  - Credentials are looked up by the EXACT normalized registry host (docker_config.hpp).
//  - Authorization (Basic or Bearer) is sent only to the registry's own scheme://host:port;
//    redirects to any other origin (blob storage) are followed WITHOUT Authorization.
//  - Bearer realm must be https unless the registry is listed in insecure_hosts. The realm
//    host may differ from the registry host (Docker Hub uses auth.docker.io), so the registry's
//    Basic credentials / identity token are sent to the realm, but only over https.
//  - Plain HTTP is used only for hosts listed in insecure_hosts ("host:port"), never by default.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "common/result.hpp"
#include "net/client.hpp"
#include "registry/client.hpp"
#include "registry/docker_config.hpp"

namespace sigil::registry {

// Credentials tried after the admission's pull secrets and the configured docker config, for
// hosts neither names: the Azure identities (azure::CredentialSource, adapted in app/). A value
// is the Authorization for that registry's /v2/ (an ACR access token: sent as is, never through
// the WWW-Authenticate realm flow); after a 401 with it, rejected() and one more for_registry().
// nullopt: nothing for this host (go on anonymously). An error: every identity failed (go on
// anonymously; a denial then carries the message, which names each identity tried).
class CredentialSource {
 public:
  virtual ~CredentialSource() = default;
  virtual bool covers(std::string_view registry) const = 0;
  virtual boost::asio::awaitable<Result<std::optional<std::string>>> for_registry(
      std::string registry, std::string repository, Deadline deadline) = 0;
  virtual void rejected(std::string_view registry, std::string_view repository) = 0;
};

struct ClientOptions {
  std::string ca_file;  // extra PEM bundle, added to the system roots (OpenSSL's default paths)
  std::vector<std::string> insecure_hosts;  // "host:port" allowed over plain HTTP
  DockerConfig credentials;
  std::shared_ptr<CredentialSource> identity;  // after `credentials` (null: none)
  // Every manifest sigil reads is small: a tag's index, a .sig manifest (one layer per
  // signature), a referrers index (one descriptor per referrer). 1 MiB holds thousands of
  // entries; the cap bounds what one hostile registry answer can make sigil hold.
  int64_t max_manifest_size = 1024 * 1024;
  int max_retries = 3;  // extra attempts after the first, for 429/5xx/network
  size_t max_idle_per_host =
      64;  // idle keep-alive connections kept per origin (>= webhook concurrency)
  std::string user_agent = "sigil/0.1";
  std::chrono::milliseconds backoff_base{100};  // 100, 200, 400 ms ... with jitter
  std::chrono::milliseconds max_backoff{5000};
  int max_redirects = 3;
  int max_referrers_pages = 16;  // Link rel="next" pages followed at most
  size_t max_referrers = 1024;   // descriptors kept at most, over all pages
  // Registry origins whose 401 challenge is remembered at most; past it the memory starts over
  // (one more 401 round trip each). Origins are named by image references.
  size_t max_auth_hosts = 1024;
  // How long a repository whose referrers endpoint answered a bare 404 is taken to have none.
  std::chrono::seconds no_referrers_memo{600};
  // Told of every HTTP exchange (origin, status or error, duration): the metrics hook.
  net::Observer observer;
  // Host-name lookups in flight at most (net::ClientOptions). Image names, and so the DNS
  // servers asked, are the pod authors'; the registries configured here (`credentials`,
  // `insecure_hosts`, the hosts `identity` covers) resolve in `reserved_dns_lookups` slots of
  // their own, token realms and redirects included, which those names cannot fill. Each
  // lookup ends within dns_try_timeout * (2^dns_attempts - 1) with one DNS server.
  size_t max_dns_lookups = 256;
  size_t reserved_dns_lookups = 64;
  std::chrono::milliseconds dns_try_timeout{1000};
  int dns_attempts = 2;
  std::string dns_servers;  // "host:port,...": tests' own DNS server; empty: /etc/resolv.conf
  // A registry origin (or its token service, or its blob storage) that cannot be reached fails
  // its requests at once for a while (net/outage.hpp): in an outage where connections hang,
  // admissions get their answer (a denial, or a last-known-good verdict) at once instead of at
  // the webhook deadline. after = 0: off.
  net::FailFastOptions fail_fast{.after = 2};
  // Connections open at once (net::ClientOptions::max_connections): in all, more for the
  // registries configured here (as reserved_dns_lookups), and to one host name none of them
  // names, whatever the port.
  // A registry that holds every connection until the deadline then costs its own admissions
  // a wait, and nobody else a file descriptor.
  size_t max_connections = 512;
  size_t reserved_connections = 128;
  size_t max_connections_per_host = 64;
};

class HttpClient final : public Client {
 public:
  // Never throws on bad options: a client whose setup failed (unreadable CA file, TLS context
  // failure) answers every call with that error (fail closed); see init_status().
  HttpClient(const boost::asio::any_io_executor& executor, ClientOptions options);
  ~HttpClient() override;
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  Status init_status() const;

  boost::asio::awaitable<Result<std::string>> resolve(const oci::Reference& ref, Deadline deadline,
                                                      PullCredentials creds = {}) override;
  boost::asio::awaitable<Result<ManifestResponse>> get_manifest(
      const std::string& registry, const std::string& repository, const std::string& reference,
      Deadline deadline, PullCredentials creds = {}) override;
  boost::asio::awaitable<Result<std::string>> get_blob(const std::string& registry,
                                                       const std::string& repository,
                                                       const std::string& digest, int64_t max_size,
                                                       Deadline deadline,
                                                       PullCredentials creds = {}) override;
  boost::asio::awaitable<Result<std::vector<oci::Descriptor>>> get_referrers(
      const std::string& registry, const std::string& repository, const std::string& digest,
      const std::string& artifact_type, Deadline deadline, PullCredentials creds = {}) override;
  uint64_t request_count() const override;
  bool has_credentials_for(const std::string& registry,
                           const std::string& repository) const override;
  bool covers(const PullCredentials& creds, const std::string& registry,
              const std::string& repository) const override;
  bool operator_named(const std::string& registry) const override;

  // Token requests alone (a subset of request_count), for tests of the token cache.
  uint64_t token_request_count() const;
  // Host-name lookups (net::Client::dns_stats), for metrics; thread-safe.
  net::DnsStats dns_stats() const;
  // Origins that cannot be reached (net::Client::outage_stats), for metrics; thread-safe.
  net::OutageMemo::Stats outage_stats() const;
  // Its connections (net::Client::conn_stats), for metrics; thread-safe.
  net::ConnStats conn_stats() const;

  // More registries the operator named (in oci::canonical_registry's spelling): those that
  // cluster-wide policies' globs name literally. Their requests get what ClientOptions gives
  // the configured ones (reserved DNS slots, their own metric series). Replaces the previous
  // list; thread-safe. Never a namespaced policy's: tenants write those.
  void set_operator_registries(std::vector<std::string> registries);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// "sha256:<hex>" of bytes, via OpenSSL EVP. Errc::internal if OpenSSL fails.
Result<std::string> sha256_digest(std::string_view bytes);

}  // namespace sigil::registry
