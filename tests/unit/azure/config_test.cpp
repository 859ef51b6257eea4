// azure/config.hpp: the `azure:` section and the Options it makes.
#include <map>

#include <yaml-cpp/yaml.h>
#include <catch2/catch.hpp>

#include "azure/config.hpp"

using namespace sigil;
using namespace sigil::azure;

namespace {

std::function<const char*(const char*)> env(std::map<std::string, std::string> vars) {
  auto m = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [m](const char* name) -> const char* {
    auto it = m->find(name);
    return it == m->end() ? nullptr : it->second.c_str();
  };
}

const std::map<std::string, std::string> kWiEnv = {
    {"AZURE_CLIENT_ID", "cid"},
    {"AZURE_TENANT_ID", "tid"},
    {"AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token"},
    {"AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"}};

}  // namespace

TEST_CASE("config: every field") {
  auto s = parse_azure_settings(YAML::Load(R"(
workloadIdentity: false
managedIdentity: {enabled: true, clientId: kubelet-client-id, endpoint: "http://127.0.0.1:9"}
registryHosts: ["*.azurecr.io", "127.0.0.1:5000"]
vaultHosts: ["*.vault.usgovcloudapi.net"]
warmRegistries: [myacr.azurecr.io]
refreshBeforeSeconds: 120
keyVault: {refreshSeconds: 600, minRefetchSeconds: 0}
)"));
  REQUIRE(s.ok());
  CHECK(s->key_refresh_seconds == 600);
  CHECK(s->key_min_refetch_seconds == 0);
  auto o = make_options(*s, env(kWiEnv));
  REQUIRE(o.ok());
  CHECK_FALSE(o->workload_identity.has_value());  // off, though the env is there
  CHECK(o->managed_identity.enabled);
  CHECK(o->managed_identity.client_id == "kubelet-client-id");
  CHECK(o->managed_identity.endpoint == "http://127.0.0.1:9");
  CHECK(o->registries.allows("127.0.0.1:5000"));
  CHECK(o->registries.allows("x.azurecr.io"));
  CHECK_FALSE(o->registries.allows("x.azurecr.cn"));  // the list replaces the default
  CHECK(o->vaults.allows("v.vault.usgovcloudapi.net"));
  CHECK_FALSE(o->vaults.allows("v.vault.azure.net"));
  CHECK(o->warm_registries == std::vector<std::string>{"myacr.azurecr.io"});
  CHECK(o->refresh_before == std::chrono::seconds(120));
}

TEST_CASE("config: workload identity auto follows the AKS webhook's env") {
  auto s = parse_azure_settings(YAML::Load("{}"));
  REQUIRE(s.ok());
  auto with = make_options(*s, env(kWiEnv));
  REQUIRE(with.ok());
  REQUIRE(with->workload_identity.has_value());
  CHECK(with->workload_identity->client_id == "cid");
  CHECK(with->workload_identity->authority_host == "https://login.microsoftonline.us/");
  CHECK_FALSE(with->managed_identity.enabled);  // IMDS is opt-in
  auto without = make_options(*s, env({}));
  REQUIRE(without.ok());
  CHECK_FALSE(without->workload_identity.has_value());
  auto no_authority = kWiEnv;
  no_authority.erase("AZURE_AUTHORITY_HOST");
  auto d = make_options(*s, env(no_authority));
  REQUIRE(d.ok());
  CHECK(d->workload_identity->authority_host == "https://login.microsoftonline.com/");

  auto on = parse_azure_settings(YAML::Load("workloadIdentity: true"));
  REQUIRE(on.ok());
  auto missing = make_options(*on, env({{"AZURE_CLIENT_ID", "cid"}}));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("azure.workloadIdentity") != std::string::npos);
}

TEST_CASE("config: bad settings name the setting") {
  struct Row {
    const char* yaml;
    const char* names;
  };
  auto row = GENERATE(values<Row>({
      {"workloadIdentity: maybe", "azure.workloadIdentity"},
      {"managedIdentity: {enabled: yes please}", "azure.managedIdentity.enabled"},
      {"managedIdentity: {clientid: x}", "azure.managedIdentity: unknown field \"clientid\""},
      {"registryHosts: \"*.azurecr.io\"", "azure.registryHosts"},
      {"registryHost: []", "azure: unknown field \"registryHost\""},
      {"refreshBeforeSeconds: soon", "azure.refreshBeforeSeconds"},
      {"keyVault: {minRefetchSeconds: -1}", "azure.keyVault.minRefetchSeconds"},
      {"keyVault: {refreshSeconds: hourly}", "azure.keyVault.refreshSeconds"},
      {"keyVault: {refresh: 1}", "azure.keyVault: unknown field \"refresh\""},
      {"[1, 2]", "azure: must be a mapping"},
  }));
  CAPTURE(row.yaml);
  auto s = parse_azure_settings(YAML::Load(row.yaml));
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message.find(row.names) != std::string::npos);
}

TEST_CASE("config: bad host lists and warm registries outside them are refused") {
  auto s = parse_azure_settings(YAML::Load("registryHosts: ['https://x.azurecr.io']"));
  REQUIRE(s.ok());
  auto o = make_options(*s, env({}));
  REQUIRE_FALSE(o.ok());
  CHECK(o.error().message.find("azure.registryHosts") != std::string::npos);
  auto w = parse_azure_settings(YAML::Load("warmRegistries: [x.azurecr.io.evil.example]"));
  REQUIRE(w.ok());
  auto ow = make_options(*w, env({}));
  REQUIRE_FALSE(ow.ok());
  CHECK(ow.error().message.find("azure.warmRegistries") != std::string::npos);
}
