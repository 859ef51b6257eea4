// app/azure_glue.cpp: see azure_glue.hpp.
#include "app/azure_glue.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "azure/keyvault.hpp"
#include "registry/client.hpp"

namespace sigil::app {
namespace {

class VaultKeyResolver final : public verify::KeyResolver {
 public:
  VaultKeyResolver(std::shared_ptr<azure::AzureCredentials> az, azure::KeyVaultOptions o)
      : keys_(std::move(az), o) {}
  boost::asio::awaitable<Result<crypto::PublicKey>> key(std::string uri,
                                                        Deadline deadline) override {
    return keys_.key(std::move(uri), deadline);
  }
  boost::asio::awaitable<Result<std::optional<crypto::PublicKey>>> refetch_after_failure(
      std::string uri, Deadline deadline) override {
    return keys_.refetch_after_failure(std::move(uri), deadline);
  }

 private:
  azure::KeyVaultKeys keys_;
};

}  // namespace

std::shared_ptr<verify::KeyResolver> vault_key_resolver(
    std::shared_ptr<azure::AzureCredentials> azure, const azure::AzureSettings& settings) {
  azure::KeyVaultOptions o;
  o.refresh = std::chrono::seconds(settings.key_refresh_seconds);
  o.min_refetch = std::chrono::seconds(settings.key_min_refetch_seconds);
  return std::make_shared<VaultKeyResolver>(std::move(azure), o);
}

Error registry_trail(const Error& azure_error) {
  Error e = azure_error;
  const auto* failures = dynamic_cast<const azure::IdentityFailures*>(azure_error.detail.get());
  auto t = std::make_shared<registry::CredentialTrail>();
  if (failures != nullptr) {
    for (const auto& item : failures->items) {
      t->tried.push_back({item.managed ? registry::CredentialSourceKind::managed_identity
                                       : registry::CredentialSourceKind::workload_identity,
                          registry::outcome_of(item.code), 0});
    }
  } else {  // AAD gave a token; ACR's token endpoint (or something after it) failed
    t->tried.push_back(
        {registry::CredentialSourceKind::azure_identity, registry::outcome_of(e.code), 0});
  }
  e.detail = std::move(t);
  return e;
}

}  // namespace sigil::app
