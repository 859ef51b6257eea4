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
    if (out.auths.count(host) != 0) {
      // Two spellings of one host ("https://h" and "h"): ambiguous, refuse rather than guess.
      return make_error(Errc::parse_error,
                        "docker config: registry " + shown + " has more than one auths entry");
    }
    out.auths.emplace(std::move(host), std::move(cred));
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

std::optional<Credential> DockerConfig::find(std::string_view registry) const {
  std::string host = normalize_registry_host(registry);
  if (host.empty()) return std::nullopt;
  auto it = auths.find(host);
  if (it == auths.end()) return std::nullopt;
  return it->second;
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
}

}  // namespace sigil::registry
