// app/config.hpp: sigil's settings, from a YAML --config file and command-line flags.
//
// Role: the one place that reads files and flags for startup. A bad setting is an error that
// names the setting (and the file), and main exits non-zero with it. Depends on everything.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "azure/config.hpp"
#include "common/result.hpp"
#include "policy/policy.hpp"

namespace sigil::app {

// registry.dns: how registry host names are looked up (net::ClientOptions' dns_* fields).
struct DnsSettings {
  size_t max_lookups = 256;      // maxLookups: lookups in flight, of names pods chose
  size_t reserved_lookups = 64;  // reservedLookups: more, for the operator's registries only
  std::chrono::milliseconds try_timeout{1000};  // timeout: a query's first wait, then doubled
  int attempts = 2;                             // attempts: rounds through the DNS servers
};

// registry.failFast: a registry that cannot be reached (connections that hang) fails its
// admissions at once for a while (net/outage.hpp), instead of each one waiting for it until the
// webhook deadline.
struct FailFastSettings {
  size_t after = 2;  // after: attempts in a row that could not connect; 0: off
  std::chrono::milliseconds backoff{2000};       // backoff: how long at first
  std::chrono::milliseconds max_backoff{30000};  // maxBackoff: doubled while down, up to this
};

// registry.connections: the connections sigil keeps open to registries at once
// (net::ClientOptions' max_connections fields), so that hosts that hang cannot take every file
// descriptor.
struct ConnectionSettings {
  size_t max = 512;       // max: open in all, to hosts pods chose (and the operator's)
  size_t reserved = 128;  // reserved: more, for the operator's registries only
  size_t per_host = 64;   // perHost: open to one host the operator did not list
};

struct RegistrySettings {
  std::string config_file;                  // docker config.json with credentials
  std::string ca_file;                      // extra CA bundle for private registries
  std::vector<std::string> insecure_hosts;  // HOST:PORT allowed plain HTTP
  // Denials name the digest and signer of an image sigil read with its own credentials even
  // when the pod holds none for that registry (off: withheld, see verify/engine.hpp).
  bool reveal_private_details = false;
  // `azure:` (azure/config.hpp): Workload Identity and IMDS for ACR hosts, after the docker
  // config.
  azure::AzureSettings azure;
  DnsSettings dns;
  FailFastSettings fail_fast;
  ConnectionSettings connections;
};

// serve --kube: policies, trust roots and Secrets from the Kubernetes API.
struct KubeSettings {
  bool enabled = false;
  std::string kubeconfig;  // "" = in-cluster service account
  std::string context;     // kubeconfig context ("" = current-context)
  // sigil's own namespace (a ClusterImagePolicy's secretRef without namespace); "" = the pod's
  // namespace in-cluster, "sigil-system" with a kubeconfig.
  std::string namespace_;
  // How often Secrets (secretRef keys) are re-read and the set recompiled.
  std::chrono::milliseconds resync{60000};
};

// The webhook listener's limits (config `server:`); defaults as in server::ServerOptions.
struct ServerSettings {
  size_t max_body = 4u << 20;                    // maxBody: one request body, bytes
  size_t body_budget = 64u << 20;                // bodyBudget: all bodies being read at once, bytes
  size_t max_connections = 2048;                 // maxConnections
  size_t max_connections_per_peer = 512;         // maxConnectionsPerPeer
  std::chrono::milliseconds read_timeout{5000};  // readTimeout: first request, and bodies
  std::chrono::milliseconds idle_timeout{30000};  // idleTimeout: keep-alive wait
  // lameDuck: after SIGTERM, how long /readyz answers 503 while admissions are still served,
  // before sigil stops accepting, drains and exits. Unset: `timeout` + 5 s (a request sent just
  // before the endpoints moved away still gets its answer); 0 skips it.
  std::optional<std::chrono::milliseconds> lame_duck;
};

// The plain-HTTP metrics listener (config `metrics:`).
struct MetricsSettings {
  std::string listen;  // "ADDR:PORT" or ":9090"; "" = no /metrics
};

// Kubernetes Events on denied and warned objects (config `events:`; needs --kube and RBAC
// `create` on events). Off unless set; the chart turns it on.
struct EventSettings {
  bool enabled = false;
  // One Event per (object, reason) per interval.
  std::chrono::milliseconds interval{std::chrono::minutes(5)};
};

// The self-managed serving certificate (config `selfCert:`, chart `tls.mode: self`;
// app/selfcert.hpp). Replaces tlsCert/tlsKey; needs the Kubernetes API (kube.enabled is not
// required: the same cluster configuration is used).
struct SelfCertSettings {
  bool enabled = false;
  std::string secret_name = "sigil-webhook-tls";
  std::string service_name = "sigil";
  std::string cluster_domain = "cluster.local";
  std::vector<std::string> validating_webhooks;
  std::vector<std::string> mutating_webhooks;
  std::chrono::milliseconds ca_validity{std::chrono::hours(87600)};
  std::chrono::milliseconds ca_renew_before{std::chrono::hours(17520)};
  std::chrono::milliseconds cert_validity{std::chrono::hours(8760)};
  std::chrono::milliseconds cert_renew_before{std::chrono::hours(2920)};
  std::chrono::milliseconds rollover_grace{std::chrono::hours(1)};
  std::chrono::milliseconds resync{60000};
};

struct Settings {
  std::string listen = "0.0.0.0:8443";
  std::string tls_cert;
  std::string tls_key;
  std::vector<std::string> policy_paths;
  std::string no_match = "deny";
  // trusted_root.json for keyless authorities that name no TrustRoot ("" = the public-good
  // root compiled into sigil).
  std::string trusted_root_file;
  KubeSettings kube;
  RegistrySettings registry;
  ServerSettings server;
  MetricsSettings metrics;
  EventSettings events;
  SelfCertSettings self_cert;
  std::chrono::milliseconds timeout{10000};  // used when the API server sends no ?timeout=
  std::chrono::seconds cache_ttl{300};
  std::chrono::seconds negative_cache_ttl{30};
  size_t cache_size = 10000;
  // cache.staleIfError: when the registry cannot be reached, an allow for the same digest and
  // policies verified at most this long ago stands, with a warning (verify/stale.hpp). 0: off.
  std::chrono::milliseconds stale_if_error{0};
  // cache.tagTtl: with pinning, how long /mutate may pin a tag to the digest it resolved to
  // before (verify/tag_resolver.hpp); a push becomes visible to /mutate within it. 0s: never.
  std::chrono::seconds tag_cache_ttl{10};
  unsigned threads = 0;  // 0 = number of cores
  // checks.namespacePerSecond, checks.namespaceBurst: each namespace's share of signature checks
  // (verify::EngineOptions::namespace_checks_per_second); perSecond 0 turns it off.
  size_t namespace_checks_per_second = 2048;
  size_t namespace_checks_burst = 16384;
  // The mutating webhook (POST /mutate) is registered: Pods' tags are pinned to the digests sigil
  // verified, so the kubelet runs exactly those. Set by the chart with the webhook; turns on
  // the tag cache of /mutate (cache.tagTtl), and with it a tag-referenced image may be admitted
  // on a last-known-good verdict (cache.staleIfError).
  bool pinning = false;
  std::string log_level = "info";
};

// Reads a YAML config file into settings (fields absent from the file keep their values).
Status load_config_file(const std::string& path, Settings& settings);

// Whether a command-line flag ("--listen") was given.
using FlagGiven = std::function<bool(const char* flag)>;

// `serve --config`: the file's settings, with each one whose flag was given taken from `flags`
// (the settings the command line parsed into). Whatever the file sets that no given flag names
// is kept as the file has it, so a setting only the file can set needs nothing here to take
// effect. (The merge once copied the file's settings one by one, and registry.dns, left off
// that list, never reached the registry client.) --timeout and --kube-resync are parsed later.
Settings with_flags(Settings file, const Settings& flags, const FlagGiven& given);

// The same for the registry flags alone (`serve` and `verify`): --registry-config,
// --registry-ca and --insecure-registry.
RegistrySettings with_registry_flags(RegistrySettings file, const RegistrySettings& flags,
                                     const FlagGiven& given);

// Go-style duration ("10s", "500ms", "1m30s").
Result<std::chrono::milliseconds> parse_duration(std::string_view text);

// A size in bytes: "4194304", or with a binary suffix as Kubernetes writes them ("4Mi", "512Ki",
// "1Gi").
Result<size_t> parse_size(std::string_view text);

// Reads every document of the policy files and directories (*.yaml, *.yml; not recursive),
// unlinked. Duplicate names across files are an error naming both files.
Result<policy::Documents> load_documents(const std::vector<std::string>& paths);

// Loads every ClusterImagePolicy, ImagePolicy and TrustRoot from files and directories
// (*.yaml, *.yml; not recursive), resolves trustRootRef across all of them (default_root for
// keyless authorities that name none), and compiles one PolicySet. Duplicate names are an
// error naming both files.
Result<std::shared_ptr<const policy::PolicySet>> load_policies(
    const std::vector<std::string>& paths, policy::NoMatch no_match, uint64_t generation,
    const policy::DefaultTrustRoot& default_root);

Result<std::string> read_file(const std::string& path, size_t max_size = 16u << 20);

// The registries that cluster-wide policies (ClusterImagePolicies, file policies) name literally
// in their globs (policy::Glob::literal_registry), and `also` (azure.warmRegistries: ACR hosts
// the operator lists by name), canonical, sorted and unique, for registry::HttpClient's
// set_operator_registries. An ImagePolicy's globs never count: its namespace's tenants write it.
std::vector<std::string> operator_registries(const policy::PolicySet& set,
                                             const std::vector<std::string>& also = {});

}  // namespace sigil::app
