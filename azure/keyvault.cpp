// azure/keyvault.cpp: Key Vault keys, cached and refetched (see keyvault.hpp).
#include "azure/keyvault.hpp"

#include <map>
#include <mutex>

#include <spdlog/spdlog.h>

#include "azure/tokens.hpp"
#include "common/encoding.hpp"

namespace sigil::azure {

namespace asio = boost::asio;

struct KeyVaultKeys::Impl {
  struct Entry {
    crypto::PublicKey key;
    SysTime fetched_at;
  };
  struct Failure {
    Error error;
    SysTime at;
  };

  std::shared_ptr<AzureCredentials> azure;
  KeyVaultOptions opt;
  std::mutex mu;
  std::map<std::string, Entry> cache;       // by KmsKeyRef::uri()
  std::map<std::string, Failure> failures;  // keys without an entry whose last read failed

  SysTime now() const { return azure->options().clock->now(); }

  // A fetch's result. `revoked`: the vault itself answered that the key is disabled or does not
  // exist (404: deleted, or never made), which ends trust in a cached copy. Any other failure
  // (the vault or Entra ID unreachable or failing, a refused token, an answer sigil cannot read)
  // says nothing about the key, and a cached copy stays in use.
  struct Fetched {
    Result<crypto::PublicKey> key;
    bool revoked = false;
  };

  asio::awaitable<Fetched> fetch(KmsKeyRef ref, Deadline deadline) {
    const std::string name = ref.uri();
    // Before any token is fetched: a vault outside the list gets nothing.
    if (!azure->options().vaults.allows(ref.vault))
      co_return Fetched{
          make_error(Errc::invalid_argument,
                     name + ": vault host " + ref.vault + " is not in the Key Vault host list")};
    const std::string url = "https://" + ref.vault + ref.target();
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto tok = co_await azure->aad_token(std::string(kVaultScope), deadline, attempt == 1);
      if (!tok) co_return Fetched{make_error(tok.error().code, name + ": " + tok.error().message)};
      auto r = co_await azure->get_with_bearer(url, tok->access_token, deadline);
      if (!r) co_return Fetched{make_error(r.error().code, name + ": " + r.error().message)};
      if (r->status == 401 && attempt == 0) continue;  // a new AAD token, once
      // Whether Key Vault answers a GET of a disabled key with the key and "enabled": false, or
      // with 403 and the inner error KeyDisabled (as it does for a disabled secret), the key
      // is disabled.
      if (r->status == 403 && key_vault_inner_error(r->body) == "KeyDisabled")
        co_return Fetched{make_error(Errc::verification, name + ": the key is disabled"), true};
      if (r->status != 200) {
        const Errc code = r->status == 404                       ? Errc::not_found
                          : r->status == 401 || r->status == 403 ? Errc::unauthorized
                                                                 : Errc::unavailable;
        std::string detail = aad_error_message(r->body);
        co_return Fetched{
            make_error(code, name + ": Key Vault answered " + std::to_string(r->status) +
                                 (detail.empty() ? "" : " (" + detail + ")")),
            r->status == 404};
      }
      auto k = parse_key_vault_key(r->body);
      if (!k) co_return Fetched{make_error(k.error().code, name + ": " + k.error().message)};
      if (!k->enabled)
        co_return Fetched{make_error(Errc::verification, name + ": the key is disabled"), true};
      co_return Fetched{k->key};
    }
    co_return Fetched{make_error(Errc::unauthorized, name + ": Key Vault refused the token twice")};
  }

  void store(const std::string& name, const crypto::PublicKey& key) {
    std::lock_guard lock(mu);
    cache.insert_or_assign(name, Entry{key, now()});
    failures.erase(name);
  }

  // A key with no usable copy could not be read: remembered for retry_failed. Bounded: the
  // keys are those the policies name.
  void failed(const std::string& name, const Error& why) {
    std::lock_guard lock(mu);
    failures.insert_or_assign(name, Failure{why, now()});
  }

  // The vault said the key is disabled or gone: the cached copy is trusted no more.
  void forget(const std::string& name, const Error& why) {
    {
      std::lock_guard lock(mu);
      cache.erase(name);
    }
    failed(name, why);
    spdlog::warn("azure: {}; its cached copy is no longer trusted", why.message);
  }
};

KeyVaultKeys::KeyVaultKeys(std::shared_ptr<AzureCredentials> azure, KeyVaultOptions options)
    : impl_(std::make_shared<Impl>()) {
  impl_->azure = std::move(azure);
  impl_->opt = options;
}

KeyVaultKeys::~KeyVaultKeys() = default;

asio::awaitable<Result<crypto::PublicKey>> KeyVaultKeys::key(std::string uri, Deadline deadline) {
  auto self = impl_;
  auto ref = parse_azurekms(uri);
  if (!ref) co_return std::move(ref).error();
  const std::string name = ref->uri();
  std::optional<crypto::PublicKey> cached;
  {
    std::lock_guard lock(self->mu);
    auto it = self->cache.find(name);
    if (it != self->cache.end()) {
      // Looked at again every `refresh`, a versioned key too: its bytes never change, but it
      // can be disabled or deleted, and either must end sigil's trust in it.
      if (self->now() - it->second.fetched_at < self->opt.refresh) co_return it->second.key;
      cached = it->second.key;
    } else if (auto f = self->failures.find(name); f != self->failures.end()) {
      const auto age = self->now() - f->second.at;
      if (age >= SysTime::duration::zero() && age < self->opt.retry_failed)
        co_return f->second.error;
    }
  }
  auto [k, revoked] = co_await self->fetch(*ref, deadline);
  if (!k) {
    if (cached && !revoked) {
      spdlog::warn("azure: refetching {} failed, the cached key stays in use: {}", name,
                   k.error().message);
      co_return *cached;
    }
    if (cached) {
      self->forget(name, k.error());
    } else {
      self->failed(name, k.error());
    }
    co_return std::move(k).error();
  }
  self->store(name, *k);
  co_return std::move(k).value();
}

asio::awaitable<Result<std::optional<crypto::PublicKey>>> KeyVaultKeys::refetch_after_failure(
    std::string uri, Deadline deadline) {
  auto self = impl_;
  auto ref = parse_azurekms(uri);
  if (!ref) co_return std::move(ref).error();
  const std::string name = ref->uri();
  std::optional<crypto::PublicKey> cached;
  {
    std::lock_guard lock(self->mu);
    auto it = self->cache.find(name);
    if (it != self->cache.end()) {
      if (self->now() - it->second.fetched_at < self->opt.min_refetch)
        co_return std::optional<crypto::PublicKey>();  // rate-limited
      cached = it->second.key;
    }
  }
  auto [k, revoked] = co_await self->fetch(*ref, deadline);
  if (!k) {
    if (cached && revoked) self->forget(name, k.error());
    co_return std::move(k).error();
  }
  self->store(name, *k);
  if (cached && cached->spki_der() == k->spki_der()) co_return std::optional<crypto::PublicKey>();
  co_return std::optional<crypto::PublicKey>(std::move(k).value());
}

}  // namespace sigil::azure
