// app/pull_secrets.hpp: an admission's registry credentials from its pull secrets, each Secret
// parsed once per version.
//
// Role: `serve --kube` reads the admitted pod's imagePullSecrets and its ServiceAccount's on every
// admission (kube::SecretCache answers them from memory). Parsing each one's docker config on
// every admission cost more than the rest of a cached admission, and logged a malformed one
// every time; PullSecretParses keeps the parse of each Secret version.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/result.hpp"
#include "kube/object.hpp"
#include "registry/docker_config.hpp"

namespace sigil::app {

// One admission's pull credentials: the merged docker config of its pull secrets (the first
// credential for a host winning, as in the kubelet), and an id naming exactly which Secret
// versions made it (verify::Context::credentials_id).
struct PullCredentials {
  std::shared_ptr<registry::DockerConfig> config;
  std::string id;
};

// No credentials yet, for an admission in namespace ns.
PullCredentials no_pull_credentials(const std::string& ns);

class PullSecretParses {
 public:
  // Adds what the Secret ns/name holds (`s`, as kube::SecretCache answered it) to out: its
  // .dockerconfigjson or .dockercfg, when the Secret has that type; other Secrets add nothing.
  // A read error other than not_found, and a malformed config, are logged, the latter once per
  // Secret version. Thread-safe.
  void add(PullCredentials& out, const std::string& ns, const std::string& name,
           const Result<std::shared_ptr<const kube::Secret>>& s);

  // Docker configs parsed so far (each Secret version once, while remembered).
  size_t parses() const;

  // At most this many Secrets are remembered; past it the memory starts over.
  static constexpr size_t kMaxEntries = 4096;

 private:
  struct Entry {
    std::shared_ptr<const kube::Secret> secret;    // the version parsed (held: never reused)
    std::optional<registry::DockerConfig> config;  // nullopt: not a pull secret, or malformed
  };
  std::shared_ptr<const Entry> parsed(const std::string& ns, const std::string& name,
                                      const std::shared_ptr<const kube::Secret>& secret);

  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const Entry>> entries_;
  size_t parses_ = 0;
};

}  // namespace sigil::app
