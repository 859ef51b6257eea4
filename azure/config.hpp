// azure/config.hpp: the `azure:` section of sigil's config file, and the Options it makes.
//
// Role: a pure parse of the YAML node (no file, no environment: the caller passes getenv) into
// AzureSettings, then into Options with the Workload Identity environment applied. Errors
// name the setting ("azure.managedIdentity.clientId: ..."). The section:
//
//   azure:
//     workloadIdentity: auto        # auto (on when the AKS webhook's env is there) | true | false
//     managedIdentity:
//       enabled: false              # IMDS; opt-in
//       clientId: ""                # a user-assigned identity (the kubelet's: by its client id)
//       endpoint: http://169.254.169.254
//     registryHosts: []             # replaces ^[a-z0-9-]+\.azurecr\.(io|cn|us|de)$ when set
//     vaultHosts: []                # replaces *.vault.azure.net when set
//     warmRegistries: []            # fetched at start, kept fresh
//     refreshBeforeSeconds: 300     # or at half a token's lifetime, if sooner
//     keyVault:                     # key.kms: azurekms:// keys (azure/keyvault.hpp)
//       refreshSeconds: 3600        # every key is read again this often (disabled? rotated?)
//       minRefetchSeconds: 300      # after a failed verification, at most this often
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "azure/azure.hpp"
#include "common/result.hpp"

namespace YAML {
class Node;
}

namespace sigil::azure {

struct AzureSettings {
  enum class WorkloadIdentity { automatic, on, off };
  WorkloadIdentity workload_identity = WorkloadIdentity::automatic;
  bool managed_identity = false;
  std::string managed_identity_client_id;
  std::string imds_endpoint = "http://169.254.169.254";
  std::vector<std::string> registry_hosts;  // empty: the default ACR rule
  std::vector<std::string> vault_hosts;     // empty: *.vault.azure.net
  std::vector<std::string> warm_registries;
  int refresh_before_seconds = 300;
  int key_refresh_seconds = 3600;     // KeyVaultOptions::refresh
  int key_min_refetch_seconds = 300;  // KeyVaultOptions::min_refetch
};

// Fields absent keep their defaults; unknown fields are an error (a typo must not silently
// turn an identity off).
Result<AzureSettings> parse_azure_settings(const YAML::Node& node);

// Options from settings: the host lists compiled, Workload Identity from getenv ("auto": when
// the env is complete; "true" without it: an error naming the missing variables).
Result<Options> make_options(const AzureSettings& settings,
                             const std::function<const char*(const char*)>& getenv);

}  // namespace sigil::azure
