#include "app/commands.hpp"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "app/azure_glue.hpp"
#include "app/cluster.hpp"
#include "app/config.hpp"
#include "app/events.hpp"
#include "app/metrics.hpp"
#include "app/selfcert.hpp"
#include "app/trust.hpp"
#include "app/webhook.hpp"
#include "azure/azure.hpp"
#include "azure/config.hpp"
#include "common/clock.hpp"
#include "crypto/bundle.hpp"
#include "crypto/sigstore.hpp"
#include "kube/client.hpp"
#include "kube/config.hpp"
#include "oci/reference.hpp"
#include "registry/http_client.hpp"
#include "server/server.hpp"
#include "verify/engine.hpp"

namespace sigil::app {

namespace asio = boost::asio;

namespace {

constexpr int kExitAdmitted = 0;
constexpr int kExitDenied = 1;
constexpr int kExitUsage = 2;

int config_error(const std::string& message) {
  std::fprintf(stderr, "sigil: %s\n", message.c_str());
  return kExitUsage;
}

void add_registry_flags(CLI::App& cmd, RegistrySettings& r) {
  cmd.add_option("--registry-config", r.config_file,
                 "docker config.json with registry credentials (auths: auth, username/password, "
                 "identitytoken)");
  cmd.add_option("--registry-ca", r.ca_file,
                 "PEM file of extra CA certificates for private registries");
  cmd.add_option(
      "--insecure-registry", r.insecure_hosts,
      "HOST:PORT of a development registry that may be reached over plain HTTP (repeatable)");
}

// azure::AzureCredentials as the registry client's identity source.
class AzureIdentity final : public registry::CredentialSource {
 public:
  explicit AzureIdentity(std::shared_ptr<azure::AzureCredentials> az) : az_(std::move(az)) {}
  bool covers(std::string_view registry) const override { return az_->covers(registry); }
  asio::awaitable<Result<std::optional<std::string>>> for_registry(std::string registry,
                                                                   std::string repository,
                                                                   Deadline deadline) override {
    auto r = co_await az_->for_registry(std::move(registry), std::move(repository), deadline);
    if (!r) co_return registry_trail(r.error());  // which identities failed, typed
    co_return r;
  }
  void rejected(std::string_view registry, std::string_view repository) override {
    az_->rejected(registry, repository);
  }

 private:
  std::shared_ptr<azure::AzureCredentials> az_;
};

// The Azure identities of `azure:` (Workload Identity from the env, IMDS when enabled) as
// o.identity, and Key Vault through them as `keys` (key.kms); nothing when none is configured.
// `start`: warm and refresh in the background (serve; `sigil verify` fetches on demand).
Status attach_azure(registry::ClientOptions& o, const RegistrySettings& r,
                    const asio::any_io_executor& executor, bool start,
                    std::shared_ptr<verify::KeyResolver>& keys, Metrics* metrics = nullptr) {
  auto aopts = azure::make_options(r.azure, [](const char* n) { return std::getenv(n); });
  if (!aopts.ok()) return aopts.error();
  if (metrics != nullptr) {
    // sigil_token_refreshes_total{source, result}: every token fetched from AAD, IMDS or ACR.
    aopts->on_refresh = [metrics](std::string_view source, bool ok) {
      metrics->token_refresh(source, ok);
    };
  }
  if (!aopts->workload_identity && !aopts->managed_identity.enabled) return {};
  if (!r.ca_file.empty()) aopts->tls.ca_files.push_back(r.ca_file);
  auto az = std::make_shared<azure::AzureCredentials>(executor, std::move(*aopts));
  if (auto st = az->init_status(); !st.ok()) return st.error();
  for (const auto& name : az->identity_names()) spdlog::info("azure: using {}", name);
  if (start) az->start();
  keys = vault_key_resolver(az, r.azure);
  o.identity = std::make_shared<AzureIdentity>(std::move(az));
  return {};
}

Result<registry::ClientOptions> registry_options(const RegistrySettings& r) {
  registry::ClientOptions o;
  o.ca_file = r.ca_file;
  for (const auto& h : r.insecure_hosts) {
    // Image references name "host:443" as "host" (the https origin), whose plain-HTTP port
    // would be 80: plain HTTP on port 443 cannot be named, so it is refused here.
    std::string lower = h;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const std::string canonical = oci::canonical_registry(lower);
    auto has_port = [](const std::string& x) {
      const auto colon = x.rfind(':');
      const auto close = x.rfind(']');
      return colon != std::string::npos && (close == std::string::npos || colon > close);
    };
    if (has_port(lower) && !has_port(canonical)) {
      return make_error(Errc::invalid_argument,
                        "insecure registry \"" + h +
                            "\": port 443 is the https port, and image references to it are "
                            "normalized to \"" +
                            canonical + "\" (https); serve a plain-HTTP registry on another port");
    }
  }
  o.insecure_hosts = r.insecure_hosts;
  if (!r.config_file.empty()) {
    auto text = read_file(r.config_file, 1u << 20);
    if (!text.ok())
      return make_error(Errc::invalid_argument, "--registry-config " + text.error().message);
    auto cfg = registry::parse_docker_config(*text);
    if (!cfg.ok()) {
      return make_error(Errc::invalid_argument,
                        "--registry-config " + r.config_file + ": " + cfg.error().message);
    }
    o.credentials = std::move(*cfg);
  }
  return o;
}

// ---------------------------------------------------------------------------------- verify

struct VerifyArgs {
  std::vector<std::string> images;
  std::vector<std::string> policies;
  std::string key;
  std::string identity, identity_regexp, issuer, issuer_regexp;  // keyless, cosign's flags
  bool insecure_ignore_sct = false;
  std::string trusted_root;
  std::string hash = "sha256";
  std::string no_match = "deny";
  std::string output = "text";
  std::string timeout = "30s";
  RegistrySettings registry;
  std::string config;  // serve's --config: its registry: and azure: sections apply
};

int run_verify(const VerifyArgs& a) {
  const bool keyless = !a.identity.empty() || !a.identity_regexp.empty() || !a.issuer.empty() ||
                       !a.issuer_regexp.empty();
  const int modes = (a.policies.empty() ? 0 : 1) + (a.key.empty() ? 0 : 1) + (keyless ? 1 : 0);
  if (modes != 1) {
    return config_error(
        "verify: give exactly one of --policy PATH (repeatable), --key FILE, or "
        "--certificate-identity[-regexp] with --certificate-oidc-issuer[-regexp]");
  }
  auto timeout = parse_duration(a.timeout);
  if (!timeout.ok()) return config_error("--timeout: " + timeout.error().message);
  auto no_match = policy::parse_no_match(a.no_match);
  if (!no_match.ok()) return config_error("--no-match-policy: " + no_match.error().message);
  const auto default_root = default_trust_root(a.trusted_root);

  std::shared_ptr<const policy::PolicySet> policies;
  if (!a.key.empty() || keyless) {
    Result<policy::Policy> p = make_error(Errc::internal, "no policy");
    if (!a.key.empty()) {
      auto pem = read_file(a.key, 1u << 20);
      if (!pem.ok()) return config_error("--key " + pem.error().message);
      p = policy::key_policy(*pem, a.key);
      if (!p.ok()) return config_error("--key " + a.key + ": " + p.error().message);
    } else {
      p = policy::identity_policy(a.identity, a.identity_regexp, a.issuer, a.issuer_regexp,
                                  a.insecure_ignore_sct);
      if (!p.ok()) return config_error(p.error().message);
    }
    std::vector<policy::Policy> v;
    v.push_back(std::move(*p));
    if (auto st = policy::link_trust_roots(v, {}, default_root); !st.ok()) {
      return config_error(st.error().message);
    }
    policies = std::make_shared<const policy::PolicySet>(std::move(v), *no_match, 1);
  } else {
    auto loaded = load_policies(a.policies, *no_match, 1, default_root);
    if (!loaded.ok()) return config_error(loaded.error().message);
    policies = std::move(*loaded);
  }
  auto ropts = registry_options(a.registry);
  if (!ropts.ok()) return config_error(ropts.error().message);

  asio::io_context io;
  verify::EngineOptions eopts;
  if (auto st = attach_azure(*ropts, a.registry, io.get_executor(), false, eopts.keys); !st.ok())
    return config_error(st.error().message);
  registry::HttpClient client(io.get_executor(), std::move(*ropts));
  if (auto st = client.init_status(); !st.ok()) return config_error(st.error().message);
  SystemClock clock;
  eopts.reveal_private_details = true;  // whoever runs this holds the credentials
  verify::Engine engine(client, clock, eopts);
  const auto deadline = std::chrono::steady_clock::now() + *timeout;
  std::vector<std::future<verify::Verdict>> futures;
  for (const auto& image : a.images) {
    futures.push_back(
        asio::co_spawn(io, engine.verify(image, policies, deadline), asio::use_future));
  }
  io.run();

  bool denied = false;
  nlohmann::json out = nlohmann::json::array();
  for (auto& f : futures) {
    verify::Verdict v = f.get();
    denied = denied || v.outcome == verify::Outcome::denied;
    const std::string reason(verify::name(verify::reported_reason(v)));
    const std::string message = verify::message(v);
    const std::vector<std::string> warnings = verify::warning_lines(v);
    if (a.output == "json") {
      out.push_back({{"image", v.image},
                     {"digest", v.digest},
                     {"allowed", v.outcome != verify::Outcome::denied},
                     {"outcome", verify::name(v.outcome)},
                     {"reason", reason},
                     {"policy", v.policy},
                     {"authority", v.authority},
                     {"detail", v.detail},
                     {"message", message},
                     {"warnings", warnings}});
    } else {
      const char* mark = v.outcome == verify::Outcome::denied   ? "DENIED "
                         : v.outcome == verify::Outcome::warned ? "WARNED "
                                                                : "ALLOWED";
      std::printf("%s %s\n", mark, message.c_str());
      if (!reason.empty() && v.outcome == verify::Outcome::denied)
        std::printf("        reason: %s\n", reason.c_str());
      for (const auto& w : warnings) {
        if (w != message) std::printf("        warning: %s\n", w.c_str());
      }
    }
  }
  if (a.output == "json")
    std::printf("%s\n", (a.images.size() == 1 ? out[0] : out).dump(2).c_str());
  return denied ? kExitDenied : kExitAdmitted;
}

// ---------------------------------------------------------------------------- verify-bundle

// The sigstore-conformance protocol: verify-bundle [--staging] --bundle FILE
// (--certificate-identity ID --certificate-oidc-issuer URL | --key FILE) [--trusted-root FILE]
// FILE_OR_DIGEST. The checks are the ones image bundles get (crypto::verify_entity), with the
// artifact a blob: a file, or `sha256:`, `sha384:` or `sha512:<hex>` when no such file exists.
struct VerifyBundleArgs {
  std::string bundle;
  std::string key;
  std::string identity, identity_regexp, issuer, issuer_regexp;
  std::string trusted_root;
  bool staging = false;
  std::string artifact;
};

int run_verify_bundle(const VerifyBundleArgs& a) {
  const bool keyless = !a.identity.empty() || !a.identity_regexp.empty();
  if (keyless == !a.key.empty()) {
    return config_error(
        "verify-bundle: give either --certificate-identity (with --certificate-oidc-issuer) or "
        "--key FILE");
  }
  if (a.staging && a.trusted_root.empty()) {
    return config_error("verify-bundle: sigil ships no staging trust root; pass --trusted-root");
  }
  auto root = default_trust_root(a.trusted_root)();
  if (!root.ok()) return config_error(root.error().message);

  crypto::Artifact artifact;
  artifact.kind = crypto::Artifact::Kind::blob;
  std::error_code ec;
  if (std::filesystem::is_regular_file(a.artifact, ec)) {
    auto bytes = read_file(a.artifact, 1u << 30);
    if (!bytes.ok()) return config_error(bytes.error().message);
    artifact.digest = "sha256:" + crypto::sha256_hex(*bytes);
    artifact.bytes = std::move(*bytes);
  } else if (crypto::parse_artifact_digest(a.artifact)) {
    artifact.digest = a.artifact;  // sha256:, sha384: or sha512:<hex>
  } else {
    return config_error("verify-bundle: " + a.artifact +
                        " is neither a file nor sha256:, sha384: or sha512:<hex>");
  }

  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "sigil: verify-bundle: %s: %s\n", a.bundle.c_str(), why.c_str());
    return kExitDenied;
  };
  auto text = read_file(a.bundle, 4u << 20);
  if (!text.ok()) return fail(text.error().message);
  auto bundle = crypto::parse_bundle(*text);
  if (!bundle.ok()) return fail(bundle.error().message);
  auto entity = crypto::entity_from_bundle(*bundle, a.bundle);
  if (!entity.ok()) return fail(entity.error().message);

  std::vector<policy::Policy> ps;
  if (keyless) {
    auto p = policy::identity_policy(a.identity, a.identity_regexp, a.issuer, a.issuer_regexp,
                                     /*insecure_ignore_sct=*/false);
    if (!p.ok()) return config_error(p.error().message);
    ps.push_back(std::move(*p));
  } else {
    auto pem = read_file(a.key, 1u << 20);
    if (!pem.ok()) return config_error("--key " + pem.error().message);
    auto p = policy::key_policy(*pem, a.key);
    if (!p.ok()) return config_error("--key " + a.key + ": " + p.error().message);
    // As sigstore's verifiers do for bundles: the key's signature must be in the log, and
    // its time proved.
    p->authorities.front().ctlog_present = true;
    p->authorities.front().ctlog_url.clear();
    ps.push_back(std::move(*p));
  }
  auto shared_root = *root;
  policy::DefaultTrustRoot given =
      [shared_root]() -> Result<std::shared_ptr<const crypto::TrustedRoot>> { return shared_root; };
  if (!keyless) {
    // key_policy's authority has no ctlog reference; require the log of the given root.
    ps.front().authorities.front().ctlog_trust_root_ref = "";
  }
  if (auto st = policy::link_trust_roots(ps, {}, given); !st.ok()) {
    return config_error(st.error().message);
  }
  policy::Authority& auth = ps.front().authorities.front();
  crypto::Requirements req = policy::requirements_for(auth);
  if (!keyless) {
    req.require_tlog = !shared_root->tlogs.empty();
    req.tlogs = &shared_root->tlogs;
    req.tsas = &shared_root->timestamp_authorities;
    req.min_signing_times = 1;
  }
  crypto::VerifiedSignature v = crypto::verify_entity(*entity, req, artifact);
  if (!v.ok) return fail(v.message);
  if (keyless) {
    bool matched = false;
    for (const auto& id : auth.identities) matched = matched || id.matches(v.identity);
    if (!matched) {
      std::string who = v.identity.sans.empty() ? "(no SAN)" : v.identity.sans.front().value;
      return fail("signed by " + who + " (issuer " + v.identity.issuer + "), not by " +
                  auth.identities.front().describe());
    }
  }
  std::printf("OK: %s verified for %s\n", a.bundle.c_str(), artifact.digest.c_str());
  return kExitAdmitted;
}

// ----------------------------------------------------------------------------------- serve

int run_serve(Settings s) {
  if (s.self_cert.enabled && (!s.tls_cert.empty() || !s.tls_key.empty())) {
    return config_error("serve: selfCert.enabled and --tls-cert/--tls-key exclude each other");
  }
  if (!s.self_cert.enabled && (s.tls_cert.empty() || s.tls_key.empty())) {
    return config_error(
        "serve: --tls-cert and --tls-key are required (sigil serves HTTPS only), or "
        "selfCert.enabled in --config");
  }
  if (s.policy_paths.empty() && !s.kube.enabled) {
    return config_error("serve: give at least one --policy PATH, or --kube");
  }
  auto no_match = policy::parse_no_match(s.no_match);
  if (!no_match.ok()) return config_error("--no-match-policy: " + no_match.error().message);
  auto level = spdlog::level::from_str(s.log_level);
  if (level == spdlog::level::off && s.log_level != "off")
    return config_error("--log-level: unknown level \"" + s.log_level + "\"");
  spdlog::set_level(level);

  std::atomic<uint64_t> generation{1};
  const auto default_root = default_trust_root(s.trusted_root_file);
  // Without --kube the files are the whole set; with it they are loaded by the cluster source
  // (and link against the cluster's TrustRoots), and nothing is served before the first sync.
  std::shared_ptr<const policy::PolicySet> initial;
  if (s.kube.enabled) {
    if (auto docs = load_documents(s.policy_paths); !docs.ok()) {
      return config_error(docs.error().message);
    }
    initial =
        std::make_shared<const policy::PolicySet>(std::vector<policy::Policy>{}, *no_match, 0);
  } else {
    auto loaded = load_policies(s.policy_paths, *no_match, generation, default_root);
    if (!loaded.ok()) return config_error(loaded.error().message);
    initial = std::move(*loaded);
    spdlog::info("loaded {} polic{} from {} path{}", initial->policies().size(),
                 initial->policies().size() == 1 ? "y" : "ies", s.policy_paths.size(),
                 s.policy_paths.size() == 1 ? "" : "s");
  }
  PolicyStore store(std::move(initial));

  auto ropts = registry_options(s.registry);
  if (!ropts.ok()) return config_error(ropts.error().message);

  unsigned threads = s.threads ? s.threads : std::max(1u, std::thread::hardware_concurrency());
  // Before the io_context: the metrics listener's connections and the observers below use it
  // until the loop's last handler is gone. Without metrics.listen nothing is observed.
  Metrics metrics;
  const bool metrics_on = !s.metrics.listen.empty();
  if (metrics_on) {
    ropts->observer = [&metrics](const net::Exchange& e) { metrics.registry_exchange(e); };
  }
  asio::io_context io(static_cast<int>(threads));
  verify::EngineOptions eopts;
  if (auto st = attach_azure(*ropts, s.registry, io.get_executor(), true, eopts.keys,
                             metrics_on ? &metrics : nullptr);
      !st.ok())
    return config_error(st.error().message);
  registry::HttpClient client(io.get_executor(), std::move(*ropts));
  if (auto st = client.init_status(); !st.ok()) return config_error(st.error().message);
  SystemClock clock;
  eopts.cache_ttl = s.cache_ttl;
  eopts.negative_cache_ttl = s.negative_cache_ttl;
  eopts.cache_capacity = s.cache_size;
  // The tag cache only with pinning: /mutate pins what it answers (verify/tag_resolver.hpp).
  if (s.pinning) eopts.tag_cache_ttl = s.tag_cache_ttl;
  eopts.reveal_private_details = s.registry.reveal_private_details;
  verify::Engine engine(client, clock, eopts);

  // The Kubernetes API: policies, trust roots, Secrets and pull credentials; and the
  // self-managed certificate's Secret and webhook configurations.
  std::unique_ptr<ClusterPolicies> cluster;
  std::unique_ptr<kube::EventRecorder> events;
  std::shared_ptr<kube::Client> kclient;
  std::string own_ns;
  if (s.kube.enabled || s.self_cert.enabled) {
    Result<kube::ClusterConfig> kcfg = make_error(Errc::internal, "no cluster configuration");
    own_ns = s.kube.namespace_;
    if (s.kube.kubeconfig.empty()) {
      kcfg = kube::in_cluster_config();
      if (!kcfg.ok()) {
        return config_error("--kube: " + kcfg.error().message +
                            (kcfg.error().code == Errc::not_found
                                 ? " (outside a cluster, pass --kubeconfig FILE)"
                                 : ""));
      }
      if (own_ns.empty()) own_ns = kcfg->default_namespace;
    } else {
      kube::KubeconfigOptions ko;
      ko.context = s.kube.context;
      kcfg = kube::load_kubeconfig(s.kube.kubeconfig, ko);
      if (!kcfg.ok()) return config_error("--kubeconfig: " + kcfg.error().message);
      if (own_ns.empty()) own_ns = "sigil-system";
    }
    kclient = std::make_shared<kube::Client>(io.get_executor(), std::move(*kcfg));
    if (auto st = kclient->init_status(); !st.ok())
      return config_error("--kube: " + st.error().message);
  }
  if (s.kube.enabled) {
    ClusterOptions co;
    co.own_namespace = own_ns;
    co.no_match = *no_match;
    co.default_root = default_root;
    co.file_documents = [paths = s.policy_paths]() { return load_documents(paths); };
    co.resync = std::max(std::chrono::milliseconds(1000), s.kube.resync);
    cluster = std::make_unique<ClusterPolicies>(
        io, kclient, clock, std::move(co),
        [&store](std::shared_ptr<const policy::PolicySet> set) { store.set(std::move(set)); });
    if (auto st = cluster->start(); !st.ok()) return config_error(st.error().message);
    spdlog::info("kube: watching sigil.dev policies and trust roots at {} (own namespace {})",
                 kclient->config().source, own_ns);
    if (s.events.enabled) {
      // Events on denied and warned objects, off the admission path (app/events.hpp).
      kube::EventRecorderOptions eo;
      eo.per_object_interval = s.events.interval;
      const char* pod = std::getenv("POD_NAME");
      if (pod == nullptr) pod = std::getenv("HOSTNAME");
      eo.instance = pod != nullptr ? pod : "sigil";
      events = std::make_unique<kube::EventRecorder>(kclient, std::move(eo));
      spdlog::info(
          "events: Kubernetes Events on denied and warned objects (one per object and "
          "reason every {} s)",
          std::chrono::duration_cast<std::chrono::seconds>(s.events.interval).count());
    }
  } else if (s.events.enabled) {
    spdlog::warn("events: events.enabled needs --kube (an API server to send them to); off");
  }

  // The bridge from the server to the engine: what /validate and /mutate call for each image
  // (app/webhook.hpp).
  Webhook webhook(engine, store, cluster.get(), metrics_on ? &metrics : nullptr);
  // pinning: the chart registered /mutate, so Pods run the digests sigil verified, and /mutate
  // may pin a tag from the tag cache; /mutate is served either way.
  if (s.pinning) {
    spdlog::info(
        "pinning: on (the mutating webhook pins Pods' tags to digests; /mutate may pin a tag to "
        "the digest it resolved to within the last {} s)",
        eopts.tag_cache_ttl.count());
  } else {
    spdlog::info("pinning: off (tags are resolved at every admission)");
  }
  server::ServerOptions sopts;
  sopts.listen = s.listen;
  sopts.cert_file = s.tls_cert;
  sopts.key_file = s.tls_key;
  sopts.external_certificate = s.self_cert.enabled;
  sopts.default_timeout = s.timeout;
  sopts.max_body = s.server.max_body;
  sopts.body_budget = s.server.body_budget;
  sopts.max_connections = s.server.max_connections;
  sopts.max_connections_per_peer = s.server.max_connections_per_peer;
  sopts.read_timeout = s.server.read_timeout;
  sopts.idle_timeout = s.server.idle_timeout;
  // Drain: every request's budget ends by min(timeout, max_timeout) (request_budget).
  sopts.shutdown_grace = std::min(s.timeout, sopts.max_timeout) + std::chrono::seconds(1);
  // Not ready before the cluster's policies are in force: a replica with an empty set would
  // deny (or with noMatchPolicy allow, admit) every pod.
  if (cluster) sopts.ready = [&cluster] { return cluster->ready(); };
  // kubectl apply of a broken policy fails with the field named, before the watch sees it.
  sopts.check_policy = [](const std::string& kind, const std::string& object_json) {
    auto docs = policy::parse_documents(object_json, kind);
    return docs.ok() ? std::string() : docs.error().message;
  };
  sopts.mutator = &webhook.mutator();
  if (events) {
    webhook.validator().set_observer([&events](const admission::Request& request,
                                               const admission::Response& response,
                                               const std::vector<verify::Verdict>& verdicts) {
      if (auto e = admission_event(request, response, verdicts)) events->record(std::move(*e));
    });
  }
  std::unique_ptr<MetricsServer> metrics_server;
  if (metrics_on) {
    sopts.observe_admission = [&metrics](std::string_view route, server::AdmissionResult result,
                                         std::chrono::steady_clock::duration elapsed) {
      metrics.admission(route, result, elapsed);
    };
    metrics.set_engine(&engine);
    if (events) metrics.set_event_stats([&events] { return events->stats(); });
    metrics.set_policy_state([&store, &cluster] {
      PolicyState ps;
      ps.source = cluster ? "kube" : "files";
      ps.synced = !cluster || cluster->ready();
      const auto set = store.get();
      ps.generation = set ? set->generation() : 0;
      ps.policies = set ? set->policies().size() : 0;
      return ps;
    });
    metrics_server = std::make_unique<MetricsServer>(io, metrics, s.metrics.listen);
    if (auto st = metrics_server->start(); !st.ok()) return config_error(st.error().message);
    spdlog::info("metrics: http://{}/metrics (port {})", s.metrics.listen, metrics_server->port());
  }
  server::Server srv(io, sopts, webhook.validator());
  if (auto st = srv.start(); !st.ok()) return config_error(st.error().message);
  // selfCert: the certificate is minted or read from its Secret, handed to the server in
  // memory, and its CA published on the webhook configurations; /readyz waits for it.
  std::unique_ptr<SelfCert> self_cert;
  if (s.self_cert.enabled) {
    const auto& c = s.self_cert;
    SelfCertOptions so;
    so.namespace_ = own_ns;
    so.secret_name = c.secret_name;
    so.service_name = c.service_name;
    so.cluster_domain = c.cluster_domain;
    so.validating_webhooks = c.validating_webhooks;
    so.mutating_webhooks = c.mutating_webhooks;
    auto secs = [](std::chrono::milliseconds d) {
      return std::chrono::duration_cast<std::chrono::seconds>(d);
    };
    so.ca_validity = secs(c.ca_validity);
    so.ca_renew_before = secs(c.ca_renew_before);
    so.cert_validity = secs(c.cert_validity);
    so.cert_renew_before = secs(c.cert_renew_before);
    so.rollover_grace = secs(c.rollover_grace);
    so.resync = c.resync;
    self_cert = std::make_unique<SelfCert>(
        io, kclient, clock, std::move(so), [&srv](const std::string& cert, const std::string& key) {
          auto st = srv.set_certificate(cert, key);
          if (st) spdlog::info("selfcert: serving certificate installed");
          return st;
        });
    if (auto st = self_cert->start(); !st.ok()) return config_error(st.error().message);
    spdlog::info("selfcert: certificate from Secret {}/{}", own_ns, c.secret_name);
  }
  spdlog::info("sigil serving https on {} (port {})", s.listen, srv.port());

  // SIGHUP re-reads the policy files; a broken set is refused and the last good one stays.
  asio::signal_set hup(io, SIGHUP);
  asio::signal_set stop_signals(io, SIGINT, SIGTERM);
  asio::steady_timer stop_deadline(io);
  std::function<void(const boost::system::error_code&)> check_stopped;
  // SIGTERM (what the kubelet sends) starts the lame duck: /readyz answers 503 while admissions
  // are still served, so requests routed here before the endpoints moved away get their answer.
  // Then, or at once on SIGINT (Ctrl-C) or a second signal: stop accepting, drain, exit 0.
  const auto lame_duck = s.server.lame_duck.value_or(s.timeout + std::chrono::seconds(5));
  asio::steady_timer lame_duck_timer(io);
  std::atomic<bool> shutting_down{false};
  std::function<void(int)> shut_down;
  stop_signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (sig != SIGTERM || lame_duck.count() <= 0) return shut_down(sig);
    spdlog::info("SIGTERM: lame duck for {} ms (/readyz answers 503, admissions are served)",
                 lame_duck.count());
    srv.lame_duck();
    lame_duck_timer.expires_after(lame_duck);
    lame_duck_timer.async_wait([&, sig](const boost::system::error_code& tec) {
      if (!tec) shut_down(sig);
    });
    stop_signals.async_wait([&](const boost::system::error_code& sec, int again) {
      if (!sec) shut_down(again);
    });
  });
  shut_down = [&](int sig) {
    if (shutting_down.exchange(true)) return;
    lame_duck_timer.cancel();
    spdlog::info("signal {}: shutting down (in-flight requests get up to {} ms)", sig,
                 sopts.shutdown_grace.count());
    hup.cancel();
    if (cluster) cluster->stop();
    if (events) events->stop();
    if (self_cert) self_cert->stop();
    if (metrics_server) metrics_server->stop();
    srv.stop();
    // Idle registry connections and stragglers must not keep the process alive: after the
    // grace period the loop is stopped whatever is left.
    const auto give_up =
        std::chrono::steady_clock::now() + sopts.shutdown_grace + std::chrono::seconds(1);
    check_stopped = [&, give_up](const boost::system::error_code& tec) {
      if (tec) return;
      if (srv.connections() == 0 || std::chrono::steady_clock::now() >= give_up) {
        io.stop();
        return;
      }
      stop_deadline.expires_after(std::chrono::milliseconds(50));
      stop_deadline.async_wait(check_stopped);
    };
    stop_deadline.expires_after(std::chrono::milliseconds(50));
    stop_deadline.async_wait(check_stopped);
  };
  std::function<void(const boost::system::error_code&, int)> on_hup =
      [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        if (cluster) {
          cluster->reload_files();
          hup.async_wait(on_hup);
          return;
        }
        auto next = load_policies(s.policy_paths, *no_match, ++generation, default_root);
        if (next.ok()) {
          store.set(std::move(*next));
          spdlog::info("policies reloaded (generation {})", generation.load());
        } else {
          spdlog::error("policy reload refused, keeping the previous set: {}",
                        next.error().message);
        }
        hup.async_wait(on_hup);
      };
  hup.async_wait(on_hup);

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  return 0;
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"sigil: admit only container images with a trusted cosign signature"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "sigil 0.1.0");

  Settings settings;
  std::string config_file;
  auto* serve = app.add_subcommand("serve", "run the HTTPS admission webhook");
  serve->add_option("--config", config_file,
                    "YAML config file (flags given on the command line win)");
  serve->add_option("--listen", settings.listen, "ADDR:PORT to listen on (default 0.0.0.0:8443)");
  serve->add_option("--tls-cert", settings.tls_cert, "PEM certificate chain for the webhook");
  serve->add_option("--tls-key", settings.tls_key, "PEM private key for the webhook");
  serve->add_option("--policy", settings.policy_paths,
                    "ClusterImagePolicy YAML file or directory (repeatable)");
  serve->add_option("--no-match-policy", settings.no_match,
                    "what to do with an image no policy matches: deny|warn|allow");
  serve->add_flag("--kube", settings.kube.enabled,
                  "take ClusterImagePolicies, ImagePolicies, TrustRoots and Secrets from the "
                  "Kubernetes API (in-cluster, or --kubeconfig)");
  serve->add_option("--kubeconfig", settings.kube.kubeconfig,
                    "kubeconfig file for --kube outside a cluster");
  serve->add_option("--kube-context", settings.kube.context, "kubeconfig context");
  serve->add_option("--kube-namespace", settings.kube.namespace_,
                    "sigil's own namespace (secretRef of ClusterImagePolicies)");
  std::string resync_flag;
  serve->add_option("--kube-resync", resync_flag,
                    "how often Secrets are re-read and the policies recompiled (default 60s)");
  serve->add_option("--trusted-root", settings.trusted_root_file,
                    "sigstore trusted_root.json for keyless policies without trustRootRef "
                    "(default: the public-good root shipped with sigil)");
  std::string timeout_flag;
  serve->add_option("--timeout", timeout_flag,
                    "budget when the API server sends no ?timeout= (default 10s)");
  serve->add_option("--threads", settings.threads, "worker threads (default: number of cores)");
  serve->add_option("--log-level", settings.log_level, "trace|debug|info|warn|error");
  serve->add_flag("--pinning", settings.pinning,
                  "the mutating webhook (POST /mutate) is registered, so Pods run the digests "
                  "sigil verified; /mutate may then pin a tag from a cache of cache.tagTtl (10s; "
                  "/mutate is always served)");
  serve->add_option("--metrics-listen", settings.metrics.listen,
                    "ADDR:PORT of a plain-HTTP listener for GET /metrics (Prometheus text "
                    "format); off when not given");
  serve->add_flag("--events", settings.events.enabled,
                  "with --kube: Kubernetes Events on denied and warned objects (RBAC create on "
                  "events)");
  add_registry_flags(*serve, settings.registry);

  VerifyArgs va;
  auto* verify_cmd = app.add_subcommand(
      "verify", "verify images the way the webhook would, for CI and policy authors");
  verify_cmd->add_option("image", va.images, "image reference(s)")->required();
  verify_cmd->add_option("--policy", va.policies,
                         "ClusterImagePolicy YAML file or directory (repeatable)");
  verify_cmd->add_option("--key", va.key, "PEM public key (cosign-style; instead of --policy)");
  verify_cmd->add_option("--no-match-policy", va.no_match, "deny|warn|allow");
  verify_cmd->add_option("--output,-o", va.output, "text|json")
      ->check(CLI::IsMember({"text", "json"}));
  verify_cmd->add_option("--timeout", va.timeout, "overall time budget (default 30s)");
  verify_cmd->add_option("--certificate-identity", va.identity,
                         "keyless: the signer's identity (a SAN of the Fulcio certificate), exact");
  verify_cmd->add_option("--certificate-identity-regexp", va.identity_regexp,
                         "keyless: RE2 regular expression the whole identity must match");
  verify_cmd->add_option("--certificate-oidc-issuer", va.issuer,
                         "keyless: the OIDC issuer of the certificate, exact");
  verify_cmd->add_option("--certificate-oidc-issuer-regexp", va.issuer_regexp,
                         "keyless: RE2 regular expression the whole issuer must match");
  verify_cmd->add_flag("--insecure-ignore-sct", va.insecure_ignore_sct,
                       "keyless: do not require an embedded SCT (private CAs without CT)");
  verify_cmd->add_option("--trusted-root", va.trusted_root,
                         "sigstore trusted_root.json (default: the public-good root shipped "
                         "with sigil)");
  add_registry_flags(*verify_cmd, va.registry);
  verify_cmd->add_option("--config", va.config,
                         "the config file `serve` takes: its registry: and azure: sections are "
                         "used (flags win), so a CI job pulls the way the webhook does");

  VerifyBundleArgs vb;
  auto* vb_cmd = app.add_subcommand(
      "verify-bundle",
      "verify a blob or digest against a sigstore bundle (sigstore-conformance protocol)");
  vb_cmd->add_option("--bundle", vb.bundle, "the sigstore bundle (JSON)")->required();
  vb_cmd->add_option("--certificate-identity", vb.identity, "expected identity (SAN), exact");
  vb_cmd->add_option("--certificate-identity-regexp", vb.identity_regexp,
                     "RE2 expression the whole identity must match");
  vb_cmd->add_option("--certificate-oidc-issuer", vb.issuer, "expected OIDC issuer, exact");
  vb_cmd->add_option("--certificate-oidc-issuer-regexp", vb.issuer_regexp,
                     "RE2 expression the whole issuer must match");
  vb_cmd->add_option("--key", vb.key, "PEM public key (instead of an identity)");
  vb_cmd->add_option("--trusted-root", vb.trusted_root,
                     "sigstore trusted_root.json (default: public-good)");
  vb_cmd->add_flag("--staging", vb.staging, "use the staging instance (needs --trusted-root)");
  vb_cmd->add_option("artifact", vb.artifact, "FILE or sha256:|sha384:|sha512:<hex>")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  if (serve->parsed()) {
    if (!config_file.empty()) {
      // The file is the base; flags given on the command line are applied again on top.
      Settings from_file;
      if (auto st = load_config_file(config_file, from_file); !st.ok())
        return config_error(st.error().message);
      auto given = [&](const char* flag) { return serve->count(flag) > 0; };
      if (!given("--listen")) settings.listen = from_file.listen;
      if (!given("--tls-cert")) settings.tls_cert = from_file.tls_cert;
      if (!given("--tls-key")) settings.tls_key = from_file.tls_key;
      if (!given("--policy")) settings.policy_paths = from_file.policy_paths;
      if (!given("--no-match-policy")) settings.no_match = from_file.no_match;
      if (!given("--trusted-root")) settings.trusted_root_file = from_file.trusted_root_file;
      if (!given("--kube")) settings.kube.enabled = from_file.kube.enabled;
      if (!given("--kubeconfig")) settings.kube.kubeconfig = from_file.kube.kubeconfig;
      if (!given("--kube-context")) settings.kube.context = from_file.kube.context;
      if (!given("--kube-namespace")) settings.kube.namespace_ = from_file.kube.namespace_;
      settings.kube.resync = from_file.kube.resync;
      if (!given("--threads")) settings.threads = from_file.threads;
      if (!given("--log-level")) settings.log_level = from_file.log_level;
      if (!given("--pinning")) settings.pinning = from_file.pinning;
      if (!given("--registry-config"))
        settings.registry.config_file = from_file.registry.config_file;
      if (!given("--registry-ca")) settings.registry.ca_file = from_file.registry.ca_file;
      if (!given("--insecure-registry"))
        settings.registry.insecure_hosts = from_file.registry.insecure_hosts;
      settings.registry.reveal_private_details = from_file.registry.reveal_private_details;
      settings.registry.azure = from_file.registry.azure;
      settings.timeout = from_file.timeout;
      settings.cache_ttl = from_file.cache_ttl;
      settings.negative_cache_ttl = from_file.negative_cache_ttl;
      settings.cache_size = from_file.cache_size;
      settings.tag_cache_ttl = from_file.tag_cache_ttl;
      settings.server = from_file.server;
      if (!given("--metrics-listen")) settings.metrics = from_file.metrics;
      if (!given("--events")) settings.events.enabled = from_file.events.enabled;
      settings.events.interval = from_file.events.interval;
      settings.self_cert = from_file.self_cert;
    }
    if (!resync_flag.empty()) {
      auto r = parse_duration(resync_flag);
      if (!r.ok()) return config_error("--kube-resync: " + r.error().message);
      settings.kube.resync = *r;
    }
    if (!timeout_flag.empty()) {
      auto t = parse_duration(timeout_flag);
      if (!t.ok()) return config_error("--timeout: " + t.error().message);
      settings.timeout = *t;
    }
    return run_serve(std::move(settings));
  }
  if (verify_cmd->parsed()) {
    if (!va.config.empty()) {
      Settings from_file;
      if (auto st = load_config_file(va.config, from_file); !st.ok())
        return config_error(st.error().message);
      const auto vgiven = [&](const char* flag) { return verify_cmd->count(flag) > 0; };
      if (!vgiven("--registry-config")) va.registry.config_file = from_file.registry.config_file;
      if (!vgiven("--registry-ca")) va.registry.ca_file = from_file.registry.ca_file;
      if (!vgiven("--insecure-registry"))
        va.registry.insecure_hosts = from_file.registry.insecure_hosts;
      va.registry.azure = from_file.registry.azure;
    }
    return run_verify(va);
  }
  if (vb_cmd->parsed()) return run_verify_bundle(vb);
  return kExitUsage;
}

}  // namespace sigil::app
