// app/vault_keys.cpp: see vault_keys.hpp.
#include "app/vault_keys.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "azure/keyvault.hpp"

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

}  // namespace sigil::app
