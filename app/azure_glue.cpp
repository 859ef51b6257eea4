// app/azure_glue.cpp: see azure_glue.hpp.
#include "app/azure_glue.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

#include "app/metrics.hpp"
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

// azure::AzureCredentials as the registry client's identity source.
class AzureIdentity final : public registry::CredentialSource {
 public:
  explicit AzureIdentity(std::shared_ptr<azure::AzureCredentials> az) : az_(std::move(az)) {}
  bool covers(std::string_view registry) const override { return az_->covers(registry); }
  boost::asio::awaitable<Result<std::optional<std::string>>> for_registry(
      std::string registry, std::string repository, Deadline deadline) override {
    auto r = co_await az_->for_registry(std::move(registry), std::move(repository), deadline);
    if (!r) co_return registry_trail(r.error());  // which identities failed, typed
    co_return r;
  }
  void rejected(std::string_view registry, std::string_view repository) override {
    az_->rejected(registry, repository);
  }

 private:
  std::shared_ptr<azure::AzureCredentials> az_;
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

Status attach_azure(registry::ClientOptions& o, const RegistrySettings& r,
                    const boost::asio::any_io_executor& executor, bool start,
                    std::shared_ptr<verify::KeyResolver>& keys, Metrics* metrics) {
  auto aopts = azure::make_options(r.azure, [](const char* n) { return std::getenv(n); });
  if (!aopts.ok()) return aopts.error();
  if (metrics != nullptr) {
    // sigil_token_refreshes_total{source, result}: every token fetched from AAD, IMDS or ACR.
    aopts->on_refresh = [metrics](std::string_view source, bool ok) {
      metrics->token_refresh(source, ok);
    };
  }
  if (!aopts->workload_identity && !aopts->managed_identity.enabled) return {};
  if (!r.ca_file.empty()) aopts->tls.ca_files.push_back(r.ca_file);
  // The ACR token endpoint is the registry's own host: in its outage, as in the registry
  // client's (registry.failFast), admissions stop waiting for it.
  aopts->fail_fast = o.fail_fast;
  auto az = std::make_shared<azure::AzureCredentials>(executor, std::move(*aopts));
  if (auto st = az->init_status(); !st.ok()) return st.error();
  for (const auto& name : az->identity_names()) spdlog::info("azure: using {}", name);
  if (start) az->start();
  if (metrics != nullptr) {
    metrics->add_outage_stats([weak = std::weak_ptr(az)] {
      auto a = weak.lock();
      return a ? a->outage_stats() : net::OutageMemo::Stats{};
    });
    metrics->add_conn_stats([weak = std::weak_ptr(az)] {
      auto a = weak.lock();
      return a ? a->conn_stats() : net::ConnStats{};
    });
  }
  keys = vault_key_resolver(az, r.azure);
  o.identity = std::make_shared<AzureIdentity>(std::move(az));
  return {};
}

}  // namespace sigil::app
