// app/pull_secrets.hpp: an admission's registry credentials from its pull secrets, each Secret
// parsed once per version.
//
// Role: `serve --kube` reads the admitted pod's imagePullSecrets and its ServiceAccount's on every
// admission (kube::SecretCache answers them from memory). Parsing each one's docker config on
// every admission cost more than the rest of a cached admission, and logged a malformed one
// every time; PullSecretParses keeps the parse of each Secret version.
#pragma once

#include <chrono>
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
  // A read error of one Secret is logged again only after this long while it stays the same:
  // kube::SecretCache keeps answering it (a 403 from missing RBAC, say) on every admission.
  explicit PullSecretParses(
      std::chrono::steady_clock::duration repeat_after = std::chrono::minutes(1))
      : repeat_after_(repeat_after) {}

  // Adds what the Secret ns/name holds (`s`, as kube::SecretCache answered it) to out: its
  // .dockerconfigjson or .dockercfg, when the Secret has that type; other Secrets add nothing.
  // A read error other than not_found is logged (once per repeat_after while it stays the
  // same), a malformed config once per Secret version. Thread-safe.
  void add(PullCredentials& out, const std::string& ns, const std::string& name,
           const Result<std::shared_ptr<const kube::Secret>>& s);

  // Docker configs parsed so far (each Secret version once, while remembered).
  size_t parses() const;

  // At most this many Secrets are remembered; past it the memory starts over.
  static constexpr size_t kMaxEntries = 4096;

 private:
  // The version parsed and what it holds for a pull, never the Secret itself: a pod may name
  // any Secret of its namespace (a TLS or Helm release Secret of up to 1 MiB), and 4096 of those
  // held here were gigabytes.
  struct Entry {
    std::string uid;
    std::string resource_version;
    std::optional<registry::DockerConfig> config;  // nullopt: not a pull secret, or malformed
  };
  std::shared_ptr<const Entry> parsed(const std::string& ns, const std::string& name,
                                      const std::shared_ptr<const kube::Secret>& secret);

  // Whether the read error `message` of Secret `key` is to be logged now (see repeat_after).
  bool report_read_error(const std::string& key, const std::string& message);

  const std::chrono::steady_clock::duration repeat_after_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const Entry>> entries_;
  size_t parses_ = 0;
  struct Reported {
    std::string message;
    std::chrono::steady_clock::time_point at;
  };
  std::unordered_map<std::string, Reported> read_errors_;  // by key, as entries_
};

}  // namespace sigil::app
