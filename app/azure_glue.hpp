// app/azure_glue.hpp: azure/ adapted to the interfaces verify/ and registry/ define.
//
// Role: Azure Key Vault as the verify engine's source of `key.kms` keys (azure::KeyVaultKeys
// with the registry's Azure identity, the vault host list, the key cache and its refetch
// schedule, as verify::KeyResolver), and azure's typed identity failures as the registry's
// credential trail, so verify/ and registry/ never depend on azure/. Used by app/commands.cpp.
#pragma once

#include <memory>

#include "azure/azure.hpp"
#include "azure/config.hpp"
#include "common/result.hpp"
#include "verify/keys.hpp"

namespace sigil::app {

std::shared_ptr<verify::KeyResolver> vault_key_resolver(
    std::shared_ptr<azure::AzureCredentials> azure, const azure::AzureSettings& settings);

// An error of azure::AzureCredentials::for_registry with its IdentityFailures (each identity
// tried and how it failed) as a registry::CredentialTrail; the message is kept.
Error registry_trail(const Error& azure_error);

}  // namespace sigil::app
