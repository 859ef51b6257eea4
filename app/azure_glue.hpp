// app/azure_glue.hpp: azure/ adapted to the interfaces verify/ and registry/ define.
//
// Role: Azure Key Vault as the verify engine's source of `key.kms` keys (azure::KeyVaultKeys
// with the registry's Azure identity, the vault host list, the key cache and its refetch
// schedule, as verify::KeyResolver), and azure's typed identity failures as the registry's
// credential trail, so verify/ and registry/ never depend on azure/; and the Azure identities as
// the registry client's credential source (attach_azure). Used by app/serve.cpp and
// app/verify_cmd.cpp.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <memory>

#include "app/config.hpp"
#include "azure/azure.hpp"
#include "azure/config.hpp"
#include "common/result.hpp"
#include "registry/http_client.hpp"
#include "verify/keys.hpp"

namespace sigil::app {

class Metrics;  // app/metrics.hpp

std::shared_ptr<verify::KeyResolver> vault_key_resolver(
    std::shared_ptr<azure::AzureCredentials> azure, const azure::AzureSettings& settings);

// An error of azure::AzureCredentials::for_registry with its IdentityFailures (each identity
// tried and how it failed) as a registry::CredentialTrail; the message is kept.
Error registry_trail(const Error& azure_error);

// The Azure identities of `azure:` (Workload Identity from the env, IMDS when enabled) as
// o.identity, and Key Vault through them as `keys` (key.kms); nothing when none is configured.
// `start`: warm and refresh in the background (serve; `sigil verify` fetches on demand).
Status attach_azure(registry::ClientOptions& o, const RegistrySettings& r,
                    const boost::asio::any_io_executor& executor, bool start,
                    std::shared_ptr<verify::KeyResolver>& keys, Metrics* metrics = nullptr);

}  // namespace sigil::app
