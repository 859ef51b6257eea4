// azure/config.cpp: the `azure:` config section (see config.hpp).
#include "azure/config.hpp"

#include <set>

#include <yaml-cpp/yaml.h>

#include "common/encoding.hpp"

namespace sigil::azure {
namespace {

Error bad(const std::string& field, const std::string& why) {
  return make_error(Errc::invalid_argument, "azure." + field + ": " + why);
}

Status get_string(const YAML::Node& n, const char* key, const std::string& field,
                  std::string& out) {
  const YAML::Node v = n[key];
  if (!v) return {};
  if (!v.IsScalar()) return bad(field, "must be a string");
  out = v.Scalar();
  return {};
}

Status get_bool(const YAML::Node& n, const char* key, const std::string& field, bool& out) {
  const YAML::Node v = n[key];
  if (!v) return {};
  const std::string s = v.IsScalar() ? ascii_lower(v.Scalar()) : "";
  if (s == "true") {
    out = true;
  } else if (s == "false") {
    out = false;
  } else {
    return bad(field, "must be true or false");
  }
  return {};
}

Status get_list(const YAML::Node& n, const char* key, const std::string& field,
                std::vector<std::string>& out) {
  const YAML::Node v = n[key];
  if (!v) return {};
  if (!v.IsSequence()) return bad(field, "must be a list of strings");
  out.clear();
  for (const YAML::Node& e : v) {
    if (!e.IsScalar()) return bad(field, "must be a list of strings");
    out.push_back(e.Scalar());
  }
  return {};
}

Status check_keys(const YAML::Node& n, const std::set<std::string>& known,
                  const std::string& where) {
  for (const auto& kv : n) {
    const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    if (!known.count(k))
      return make_error(Errc::invalid_argument,
                        where + ": unknown field \"" + printable(k, 50) + "\"");
  }
  return {};
}

Result<AzureSettings> parse(const YAML::Node& node) {
  AzureSettings s;
  if (!node || node.IsNull()) return s;
  if (!node.IsMap()) return make_error(Errc::invalid_argument, "azure: must be a mapping");
  Status st = check_keys(node,
                         {"workloadIdentity", "managedIdentity", "registryHosts", "vaultHosts",
                          "warmRegistries", "refreshBeforeSeconds", "keyVault"},
                         "azure");
  if (!st) return std::move(st).error();
  if (const YAML::Node wi = node["workloadIdentity"]) {
    const std::string v = wi.IsScalar() ? ascii_lower(wi.Scalar()) : "";
    if (v == "auto") {
      s.workload_identity = AzureSettings::WorkloadIdentity::automatic;
    } else if (v == "true") {
      s.workload_identity = AzureSettings::WorkloadIdentity::on;
    } else if (v == "false") {
      s.workload_identity = AzureSettings::WorkloadIdentity::off;
    } else {
      return bad("workloadIdentity", "must be auto, true or false");
    }
  }
  if (const YAML::Node mi = node["managedIdentity"]) {
    if (!mi.IsMap()) return bad("managedIdentity", "must be a mapping");
    if (!(st = check_keys(mi, {"enabled", "clientId", "endpoint"}, "azure.managedIdentity")))
      return std::move(st).error();
    if (!(st = get_bool(mi, "enabled", "managedIdentity.enabled", s.managed_identity)))
      return std::move(st).error();
    if (!(st =
              get_string(mi, "clientId", "managedIdentity.clientId", s.managed_identity_client_id)))
      return std::move(st).error();
    if (!(st = get_string(mi, "endpoint", "managedIdentity.endpoint", s.imds_endpoint)))
      return std::move(st).error();
  }
  if (!(st = get_list(node, "registryHosts", "registryHosts", s.registry_hosts)))
    return std::move(st).error();
  if (!(st = get_list(node, "vaultHosts", "vaultHosts", s.vault_hosts)))
    return std::move(st).error();
  if (!(st = get_list(node, "warmRegistries", "warmRegistries", s.warm_registries)))
    return std::move(st).error();
  if (const YAML::Node rb = node["refreshBeforeSeconds"]) {
    try {
      s.refresh_before_seconds = rb.as<int>();
    } catch (const YAML::Exception&) {
      return bad("refreshBeforeSeconds", "must be a number of seconds");
    }
    if (s.refresh_before_seconds < 0 || s.refresh_before_seconds > 86400)
      return bad("refreshBeforeSeconds", "must be between 0 and 86400");
  }
  if (const YAML::Node kv = node["keyVault"]) {
    if (!kv.IsMap()) return bad("keyVault", "must be a mapping");
    if (!(st = check_keys(kv, {"refreshSeconds", "minRefetchSeconds"}, "azure.keyVault")))
      return std::move(st).error();
    for (auto [key, out] : {std::pair{"refreshSeconds", &s.key_refresh_seconds},
                            std::pair{"minRefetchSeconds", &s.key_min_refetch_seconds}}) {
      const YAML::Node v = kv[key];
      if (!v) continue;
      try {
        *out = v.as<int>();
      } catch (const YAML::Exception&) {
        return bad(std::string("keyVault.") + key, "must be a number of seconds");
      }
      if (*out < 0 || *out > 86400)
        return bad(std::string("keyVault.") + key, "must be between 0 and 86400");
    }
  }
  return s;
}

}  // namespace

Result<AzureSettings> parse_azure_settings(const YAML::Node& node) {
  try {
    return parse(node);
  } catch (const YAML::Exception& e) {
    return make_error(Errc::invalid_argument, std::string("azure: ") + e.what());
  }
}

Result<Options> make_options(const AzureSettings& s,
                             const std::function<const char*(const char*)>& getenv) {
  Options o;
  using WI = AzureSettings::WorkloadIdentity;
  if (s.workload_identity != WI::off) {
    o.workload_identity = workload_identity_from_env(getenv);
    if (!o.workload_identity && s.workload_identity == WI::on)
      return bad("workloadIdentity",
                 "true, but AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE are "
                 "not all set (is the pod labelled azure.workload.identity/use: \"true\"?)");
  }
  o.managed_identity.enabled = s.managed_identity;
  o.managed_identity.client_id = s.managed_identity_client_id;
  o.managed_identity.endpoint = s.imds_endpoint;
  if (!s.registry_hosts.empty()) {
    auto l = HostAllowlist::parse(s.registry_hosts);
    if (!l) return bad("registryHosts", l.error().message);
    o.registries = std::move(l).value();
  }
  if (!s.vault_hosts.empty()) {
    auto l = HostAllowlist::parse(s.vault_hosts);
    if (!l) return bad("vaultHosts", l.error().message);
    o.vaults = std::move(l).value();
  }
  for (const std::string& r : s.warm_registries) {
    if (!o.registries.allows(r))
      return bad("warmRegistries", "\"" + printable(r, 100) + "\" is not matched by registryHosts");
  }
  o.warm_registries = s.warm_registries;
  o.refresh_before = std::chrono::seconds(s.refresh_before_seconds);
  return o;
}

}  // namespace sigil::azure
