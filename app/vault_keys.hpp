// app/vault_keys.hpp: Azure Key Vault as the verify engine's source of `key.kms` keys.
//
// Role: adapt azure::KeyVaultKeys (the registry's Azure identity, the vault host list, the
// key cache and its refetch schedule) to verify::KeyResolver, so verify/ never depends on
// azure/. Built by app/commands.cpp next to the registry's Azure identity.
#pragma once

#include <memory>

#include "azure/azure.hpp"
#include "azure/config.hpp"
#include "verify/keys.hpp"

namespace sigil::app {

std::shared_ptr<verify::KeyResolver> vault_key_resolver(
    std::shared_ptr<azure::AzureCredentials> azure, const azure::AzureSettings& settings);

}  // namespace sigil::app
