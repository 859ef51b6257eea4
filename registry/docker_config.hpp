// registry/docker_config.hpp: pull credentials from a docker config.json (or a Kubernetes
// .dockerconfigjson Secret), keyed by exact normalized registry host, and for keys that name a
// path ("myacr.azurecr.io/team-a", as ACR's repository-scoped tokens are written) by host and
// path, matched as the kubelet matches them.
//
// Role: parse outside bytes into credentials and look them up by host. Pure: no I/O, no
// Asio; depends on common and nlohmann/json (wrapped here: nothing throws out).
// Lookup is by EXACT normalized host ("x.azurecr.io" never matches "x.azurecr.io.evil.com").
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace sigil::registry {

struct Credential {
  std::string username;
  std::string password;
  std::string identity_token;  // docker "identitytoken": an OAuth2 refresh token

  bool has_basic() const noexcept { return !username.empty() || !password.empty(); }
  bool empty() const noexcept { return !has_basic() && identity_token.empty(); }
};

struct DockerConfig {
  // Keys are normalized hosts (see normalize_registry_host).
  std::map<std::string, Credential> auths;
  // Keys with a path: normalized host -> path (without the leading '/') -> credential.
  std::map<std::string, std::map<std::string, Credential>> scoped;

  // Credential for exactly this registry host (normalized first), from a key without a path;
  // nullopt when none.
  std::optional<Credential> find(std::string_view registry) const;
  // The credential the kubelet would use for repository on registry: of the keys for this host
  // whose path is a prefix of the repository (as strings: "team" covers "team-a/app", as in
  // the kubelet's URLsMatch), the longest; else the host's own key. nullopt when none.
  std::optional<Credential> find(std::string_view registry, std::string_view repository) const;
  // No credential at all, with or without a path.
  bool empty() const noexcept { return auths.empty() && scoped.empty(); }
};

// Docker's key forms: "host", "host:port", "https://host", "http://host/v1/", "host/path".
// Strips the scheme and any path, lowercases, maps Docker Hub aliases (index.docker.io,
// registry-1.docker.io, registry.hub.docker.com) to "docker.io". Empty result when the key has
// no usable host (empty, userinfo, spaces...).
std::string normalize_registry_host(std::string_view key);

// The path a key names after its host, as the kubelet reads it: "/v1/" and "/v2/" prefixes (the
// Docker API's) dropped, then the leading '/'; "" for a key of the host alone ("host",
// "https://index.docker.io/v1/").
std::string registry_key_path(std::string_view key);

// Parses {"auths": {"<key>": {"auth": base64(user:pass) | "username"/"password" |
// "identitytoken"}}}. Unknown top-level members (credsStore, credHelpers, proxies) are ignored.
// Malformed JSON, wrong member types, bad base64 or an "auth" without ':' fail with
// Errc::parse_error; error messages never contain secret values.
Result<DockerConfig> parse_docker_config(std::string_view json);

// The legacy `.dockercfg` form (Secret type kubernetes.io/dockercfg): the auths map itself,
// {"<key>": {"auth": ...}}, with the same rules.
Result<DockerConfig> parse_dockercfg(std::string_view json);

// Adds from's hosts that into does not have yet (the first credential for a host wins, as the
// kubelet tries a pod's pull secrets in order).
void merge_into(DockerConfig& into, const DockerConfig& from);

}  // namespace sigil::registry
