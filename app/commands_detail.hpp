// app/commands_detail.hpp: what the `sigil` subcommands share. PRIVATE to app/: included by
// commands.cpp (flags, the config file under them, dispatch), serve.cpp (`sigil serve`) and
// verify_cmd.cpp (`sigil verify`, `sigil verify-bundle`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "common/result.hpp"
#include "registry/http_client.hpp"

namespace sigil::app::detail {

constexpr int kExitAdmitted = 0;
constexpr int kExitDenied = 1;
constexpr int kExitUsage = 2;

// Prints "sigil: <message>" on stderr; returns kExitUsage.
int config_error(const std::string& message);

// The registry client's options from the registry flags and settings: CA file, plain-HTTP
// hosts (port 443 refused), the docker config's credentials.
Result<registry::ClientOptions> registry_options(const RegistrySettings& r);

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
  std::string config;  // serve's --config: its registry: section applies (azure: and dns: too)
};

int run_verify(const VerifyArgs& a);

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

int run_verify_bundle(const VerifyBundleArgs& a);

// Inbound connections the descriptors can hold beside the outbound ones and files: the
// configured cap, or, when the limit is lower than all of them together, half of what is left
// after 64 (at least 16). Outbound: the registry client's caps (registry.connections, max and
// reserved), the Azure identity's (azure::kMaxConnections and its reserve) and 256 for the
// Kubernetes client and files. Past the limit accept() fails with EMFILE, and then no connection
// is evicted to make room: a flood of idle connections would shut the API server out below the
// cap that evicts them.
size_t inbound_connections(size_t configured, uint64_t fd_limit, uint64_t registry_outbound);

// `sigil serve` with its settings merged (config file, then flags); returns when a signal has
// stopped it.
int run_serve(Settings s);

}  // namespace sigil::app::detail
