// app/commands.cpp: the `sigil` command line: the subcommands and their flags (CLI11), the
// config file under serve's flags, and dispatch to run_serve (serve.cpp), run_verify and
// run_verify_bundle (verify_cmd.cpp). Also the registry options serve and verify share.
#include "app/commands.hpp"

#include <CLI/CLI.hpp>
#include <cctype>
#include <cstdio>
#include <string>
#include <utility>

#include "app/commands_detail.hpp"
#include "app/config.hpp"
#include "oci/reference.hpp"
#include "registry/http_client.hpp"

namespace sigil::app {

namespace {

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

}  // namespace

int detail::config_error(const std::string& message) {
  std::fprintf(stderr, "sigil: %s\n", message.c_str());
  return kExitUsage;
}

Result<registry::ClientOptions> detail::registry_options(const RegistrySettings& r) {
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
  o.max_dns_lookups = r.dns.max_lookups;
  o.reserved_dns_lookups = r.dns.reserved_lookups;
  o.dns_try_timeout = r.dns.try_timeout;
  o.dns_attempts = r.dns.attempts;
  o.fail_fast.after = static_cast<int>(r.fail_fast.after);
  o.fail_fast.backoff = r.fail_fast.backoff;
  o.fail_fast.max_backoff = r.fail_fast.max_backoff;
  o.max_connections = r.connections.max;
  o.reserved_connections = r.connections.reserved;
  o.max_connections_per_host = r.connections.per_host;
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

int run(int argc, char** argv) {
  using detail::config_error;
  using detail::kExitUsage;
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

  detail::VerifyArgs va;
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

  detail::VerifyBundleArgs vb;
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
      // The file is the base; flags given on the command line are applied on top.
      Settings from_file;
      if (auto st = load_config_file(config_file, from_file); !st.ok())
        return config_error(st.error().message);
      settings = with_flags(std::move(from_file), settings,
                            [&](const char* flag) { return serve->count(flag) > 0; });
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
    return detail::run_serve(std::move(settings));
  }
  if (verify_cmd->parsed()) {
    if (!va.config.empty()) {
      Settings from_file;
      if (auto st = load_config_file(va.config, from_file); !st.ok())
        return config_error(st.error().message);
      va.registry =
          with_registry_flags(std::move(from_file.registry), va.registry,
                              [&](const char* flag) { return verify_cmd->count(flag) > 0; });
    }
    return detail::run_verify(va);
  }
  if (vb_cmd->parsed()) return detail::run_verify_bundle(vb);
  return kExitUsage;
}

}  // namespace sigil::app
