#include "registry/docker_config.hpp"

#include <nlohmann/json.hpp>

#include "common/encoding.hpp"
#include "oci/reference.hpp"

namespace sigil::registry {

namespace {

bool host_char_ok(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':' ||
         c == '[' || c == ']' || c == '_';
}

Result<std::string> string_member(const nlohmann::json& obj, const char* name,
                                  const std::string& key) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) {
    return make_error(Errc::parse_error, std::string("docker config: auths[\"") + key + "\"]." +
                                             name + " is not a string");
  }
  return it->get<std::string>();
}

Result<DockerConfig> parse_impl(std::string_view json) {
  auto doc = nlohmann::json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return make_error(Errc::parse_error, "docker config: not valid JSON");
  if (!doc.is_object()) return make_error(Errc::parse_error, "docker config: not a JSON object");
  DockerConfig out;
  auto auths = doc.find("auths");
  if (auths == doc.end() || auths->is_null()) return out;
  if (!auths->is_object())
    return make_error(Errc::parse_error, "docker config: auths is not an object");
  for (const auto& [key, entry] : auths->items()) {
    std::string host = normalize_registry_host(key);
    // Keys are outside bytes; echo only a short, sanitized form.
    std::string shown = host.empty() ? std::string("<invalid>") : host;
    if (host.empty()) {
      return make_error(Errc::parse_error, "docker config: auths key is not a registry host");
    }
    if (!entry.is_object()) {
      return make_error(Errc::parse_error,
                        "docker config: auths[\"" + shown + "\"] is not an object");
    }
    Credential cred;
    auto auth = string_member(entry, "auth", shown);
    auto user = string_member(entry, "username", shown);
    auto pass = string_member(entry, "password", shown);
    auto idt = string_member(entry, "identitytoken", shown);
    for (auto* r : {&auth, &user, &pass, &idt}) {
      if (!r->ok()) return r->error();
    }
    cred.username = *user;
    cred.password = *pass;
    cred.identity_token = *idt;
    if (!auth->empty()) {
      auto decoded = base64_decode(*auth);
      if (!decoded) {
        return make_error(Errc::parse_error,
                          "docker config: auths[\"" + shown + "\"].auth is not valid base64");
      }
      auto colon = decoded->find(':');
      if (colon == std::string::npos) {
        return make_error(Errc::parse_error, "docker config: auths[\"" + shown +
                                                 "\"].auth is not base64 of user:password");
      }
      // As docker does: "auth" wins over separate username/password.
      cred.username = decoded->substr(0, colon);
      cred.password = decoded->substr(colon + 1);
    }
    if (cred.empty()) continue;  // e.g. {"auth": ""} left by a credential helper
    // A key with a path covers the repositories under it only (the kubelet's reading): one
    // host may have several, e.g. one repository-scoped token per team.
    const std::string path = registry_key_path(key);
    const bool taken = path.empty()
                           ? out.auths.count(host) != 0
                           : out.scoped.count(host) != 0 && out.scoped[host].count(path) != 0;
    if (taken) {
      // Two spellings of one key ("https://h" and "h"): ambiguous, refuse rather than guess.
      return make_error(Errc::parse_error, "docker config: registry " + shown +
                                               (path.empty() ? "" : " (a path under it)") +
                                               " has more than one auths entry");
    }
    if (path.empty()) {
      out.auths.emplace(std::move(host), std::move(cred));
    } else {
      out.scoped[host].emplace(path, std::move(cred));
    }
  }
  return out;
}

}  // namespace

std::string normalize_registry_host(std::string_view key) {
  std::string_view k = trim(key);
  std::string lower = ascii_lower(k);
  std::string_view s = lower;
  if (s.rfind("https://", 0) == 0) {
    s.remove_prefix(8);
  } else if (s.rfind("http://", 0) == 0) {
    s.remove_prefix(7);
  }
  auto slash = s.find('/');
  if (slash != std::string_view::npos) s = s.substr(0, slash);
  if (s.empty() || s.size() > 255) return {};
  for (char c : s) {
    if (!host_char_ok(c)) return {};
  }
  if (s.front() == '.' || s.front() == '-' || s.front() == ':') return {};
  if (s.front() != '[') {
    // host[:port] with a numeric port
    auto colon = s.find(':');
    if (colon != std::string_view::npos) {
      auto port = s.substr(colon + 1);
      if (port.empty() || port.size() > 5 ||
          port.find_first_not_of("0123456789") != std::string_view::npos) {
        return {};
      }
    }
  }
  // As image references are normalized (oci::canonical_registry): "host:443" is "host", and
  // Docker Hub's other names are docker.io.
  return oci::canonical_registry(std::string(s));
}

std::string registry_key_path(std::string_view key) {
  std::string_view s = trim(key);
  for (std::string_view scheme : {"https://", "http://"}) {
    if (s.size() >= scheme.size() && ascii_lower(s.substr(0, scheme.size())) == scheme) {
      s.remove_prefix(scheme.size());
      break;
    }
  }
  const size_t slash = s.find('/');
  if (slash == std::string_view::npos) return {};
  std::string_view path = s.substr(slash);  // "/..."
  if (path.rfind("/v1/", 0) == 0 || path.rfind("/v2/", 0) == 0) path.remove_prefix(3);
  if (path == "/" || path.empty()) return {};
  return std::string(path.substr(1));
}

std::optional<Credential> DockerConfig::find(std::string_view registry) const {
  std::string host = normalize_registry_host(registry);
  if (host.empty()) return std::nullopt;
  auto it = auths.find(host);
  if (it == auths.end()) return std::nullopt;
  return it->second;
}

std::optional<Credential> DockerConfig::find(std::string_view registry,
                                             std::string_view repository) const {
  if (!scoped.empty() && !repository.empty()) {
    const std::string host = normalize_registry_host(registry);
    if (auto h = scoped.find(host); h != scoped.end()) {
      const Credential* best = nullptr;
      size_t best_len = 0;
      for (const auto& [path, cred] : h->second) {
        if (path.size() > best_len && repository.substr(0, path.size()) == path) {
          best = &cred;
          best_len = path.size();
        }
      }
      if (best != nullptr) return *best;
    }
  }
  return find(registry);
}

Result<DockerConfig> parse_docker_config(std::string_view json) {
  try {
    return parse_impl(json);
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "docker config: malformed");
  } catch (...) {
    return make_error(Errc::internal, "docker config: unexpected failure");
  }
}

Result<DockerConfig> parse_dockercfg(std::string_view json) {
  try {
    auto doc = nlohmann::json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return make_error(Errc::parse_error, "dockercfg: not valid JSON");
    if (!doc.is_object()) return make_error(Errc::parse_error, "dockercfg: not a JSON object");
    nlohmann::json wrapped = {{"auths", std::move(doc)}};
    return parse_impl(wrapped.dump());
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "dockercfg: malformed");
  } catch (...) {
    return make_error(Errc::internal, "dockercfg: unexpected failure");
  }
}

void merge_into(DockerConfig& into, const DockerConfig& from) {
  for (const auto& [host, cred] : from.auths) into.auths.emplace(host, cred);
  for (const auto& [host, paths] : from.scoped) {
    for (const auto& [path, cred] : paths) into.scoped[host].emplace(path, cred);
  }
}

}  // namespace sigil::registry
