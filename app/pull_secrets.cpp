#include "app/pull_secrets.hpp"

#include <spdlog/spdlog.h>

#include "common/encoding.hpp"

namespace sigil::app {
namespace {

// Length-prefixed: no namespace and name can spell another pair's key.
std::string secret_key(const std::string& ns, const std::string& name) {
  std::string key = std::to_string(ns.size());
  key += ':';
  key += ns;
  key += name;
  return key;
}

}  // namespace

PullCredentials no_pull_credentials(const std::string& ns) {
  PullCredentials out;
  out.config = std::make_shared<registry::DockerConfig>();
  out.id = ns;
  return out;
}

std::shared_ptr<const PullSecretParses::Entry> PullSecretParses::parsed(
    const std::string& ns, const std::string& name,
    const std::shared_ptr<const kube::Secret>& secret) {
  std::string key = secret_key(ns, name);
  {
    std::lock_guard lock(mu_);
    // The same version: the cache's own object, or a re-read of it (same uid and
    // resourceVersion, which the API server changes on every write).
    if (auto it = entries_.find(key);
        it != entries_.end() && !secret->meta.resource_version.empty() &&
        it->second->resource_version == secret->meta.resource_version &&
        it->second->uid == secret->meta.uid) {
      return it->second;
    }
  }
  auto entry = std::make_shared<Entry>();
  entry->uid = secret->meta.uid;
  entry->resource_version = secret->meta.resource_version;
  Result<registry::DockerConfig> config = make_error(Errc::not_found, "not a pull secret");
  if (auto it = secret->data.find(".dockerconfigjson");
      secret->type == "kubernetes.io/dockerconfigjson" && it != secret->data.end()) {
    config = registry::parse_docker_config(it->second);
  } else if (auto it2 = secret->data.find(".dockercfg");
             secret->type == "kubernetes.io/dockercfg" && it2 != secret->data.end()) {
    config = registry::parse_dockercfg(it2->second);
  }
  if (config.ok()) {
    entry->config = std::move(*config);
  } else if (config.error().code != Errc::not_found) {
    spdlog::warn("admission: pull secret {}/{} (resourceVersion {}) is malformed: {}", ns, name,
                 secret->meta.resource_version, config.error().message);
  }
  std::lock_guard lock(mu_);
  ++parses_;
  if (entries_.size() >= kMaxEntries) entries_.clear();
  entries_[key] = entry;
  return entry;
}

void PullSecretParses::add(PullCredentials& out, const std::string& ns, const std::string& name,
                           const Result<std::shared_ptr<const kube::Secret>>& s) {
  if (!s.ok()) {
    if (s.error().code != Errc::not_found &&
        report_read_error(secret_key(ns, name), s.error().message)) {
      // The name is the pod's text (imagePullSecrets): one line, printable, in the log.
      spdlog::warn("admission: pull secret {}/{}: {}", printable(ns, 253), printable(name, 253),
                   s.error().message);
    }
    return;
  }
  const auto entry = parsed(ns, name, *s);
  if (!entry->config) return;
  registry::merge_into(*out.config, *entry->config);
  out.id += "|" + name + "@" + entry->resource_version;
}

size_t PullSecretParses::parses() const {
  std::lock_guard lock(mu_);
  return parses_;
}

bool PullSecretParses::report_read_error(const std::string& key, const std::string& message) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  auto it = read_errors_.find(key);
  if (it != read_errors_.end() && it->second.message == message &&
      now - it->second.at < repeat_after_) {
    return false;
  }
  if (it == read_errors_.end() && read_errors_.size() >= kMaxEntries) read_errors_.clear();
  read_errors_[key] = Reported{message, now};
  return true;
}

}  // namespace sigil::app
