// azure/keyvault.cpp: Key Vault keys, cached and refetched (see keyvault.hpp).
#include "azure/keyvault.hpp"

#include <chrono>
#include <map>
#include <mutex>
#include <optional>

#include <spdlog/spdlog.h>

#include "azure/tokens.hpp"
#include "common/encoding.hpp"
#include "net/flights.hpp"

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
  std::map<std::string, Failure> failures;  // the last read of each key that failed

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
      // A pinned version is that version, or the answer is not the key asked for: an unreadable
      // answer (the cached copy stays in use; a first read fails closed).
      if (!ref.version.empty() && ascii_lower(k->version) != ascii_lower(ref.version))
        co_return Fetched{
            make_error(Errc::unavailable, name + ": Key Vault answered with version '" +
                                              printable(k->version, 64) + "', not the pinned one")};
      if (!k->enabled)
        co_return Fetched{make_error(Errc::verification, name + ": the key is disabled"), true};
      co_return Fetched{k->key};
    }
    co_return Fetched{make_error(Errc::unauthorized, name + ": Key Vault refused the token twice")};
  }

  // --- one read of a key at a time ------------------------------------------------------------
  // Concurrent reads of one key (a burst of admissions on a cold or due key, a refetch after a
  // failed verification meeting a scheduled one) share one request (net::Flights, under mu).
  // Its leader applies the result to the cache under the same lock that lands it, so reads of a
  // key never overlap and a read that started before a revocation can never put the revoked key
  // back after it.
  using Flight = net::Flights<Fetched>::Flight;
  net::Flights<Fetched> flights;  // by KmsKeyRef::uri()

  // A failure that says nothing about the vault: the reader's own deadline cut it short (an
  // admission with little time left). Not remembered, or one short admission would deny every
  // admission under the key for retry_failed.
  static bool own_deadline(const Fetched& f, Deadline deadline) {
    return !f.key && f.key.error().code == Errc::timeout &&
           std::chrono::steady_clock::now() >= deadline;
  }

  // Under mu: the outcome of a read applied to the cache, and its flight landed.
  void settle(const std::string& name, const std::shared_ptr<Flight>& flight, const Fetched& f,
              Deadline deadline) {
    if (f.key) {
      cache.insert_or_assign(name, Entry{*f.key, now()});
      failures.erase(name);
    } else if (f.revoked) {
      // The vault said the key is disabled or gone: the cached copy is trusted no more.
      if (cache.erase(name) != 0)
        spdlog::warn("azure: {}; its cached copy is no longer trusted", f.key.error().message);
      failures.insert_or_assign(name, Failure{f.key.error(), now()});
    } else if (cache.count(name) != 0) {
      // An outage or a refusal says nothing about the key: its copy stays in use, and the vault
      // is asked again after retry_failed, not by every admission meanwhile.
      spdlog::warn("azure: refetching {} failed, the cached key stays in use: {}", name,
                   f.key.error().message);
      failures.insert_or_assign(name, Failure{f.key.error(), now()});
    } else if (!own_deadline(f, deadline)) {
      failures.insert_or_assign(name, Failure{f.key.error(), now()});
    }
    flights.land(name, flight, f);
  }

  // Under mu: whether a read failed less than retry_failed ago.
  const Failure* recent_failure(const std::string& name) const {
    auto f = failures.find(name);
    if (f == failures.end()) return nullptr;
    const auto age = now() - f->second.at;
    return age >= SysTime::duration::zero() && age < opt.retry_failed ? &f->second : nullptr;
  }

  // Reads the key, sharing a read in flight. A follower whose leader's deadline cut the read
  // short, with time of its own left, reads again rather than take that timeout as its own.
  asio::awaitable<Fetched> read(const KmsKeyRef& ref, Deadline deadline) {
    const std::string name = ref.uri();
    for (;;) {
      std::pair<std::shared_ptr<Flight>, bool> joined;
      {
        std::lock_guard lock(mu);
        joined = flights.join(name);
      }
      if (joined.second) {
        // Never a flight that does not land: its key would be read by no one again.
        Fetched f{make_error(Errc::internal, name + ": internal error")};
        try {
          f = co_await fetch(ref, deadline);
        } catch (const std::exception& e) {
          f = Fetched{make_error(Errc::internal, name + ": internal error: " + e.what())};
        }
        std::lock_guard lock(mu);
        settle(name, joined.first, f, deadline);
        co_return f;
      }
      std::optional<Fetched> got =
          co_await net::Flights<Fetched>::follow(mu, std::move(joined.first), deadline);
      if (!got) {
        if (std::chrono::steady_clock::now() >= deadline)
          co_return Fetched{make_error(Errc::timeout, name + ": timed out waiting for the key")};
        co_return Fetched{make_error(Errc::unavailable, name + ": cancelled")};
      }
      if (got->key || got->key.error().code != Errc::timeout ||
          std::chrono::steady_clock::now() >= deadline)
        co_return std::move(*got);
    }
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
  {
    std::lock_guard lock(self->mu);
    auto it = self->cache.find(name);
    const Impl::Failure* failed = self->recent_failure(name);
    if (it != self->cache.end()) {
      // Looked at again every `refresh`, a versioned key too: its bytes never change, but it
      // can be disabled or deleted, and either must end sigil's trust in it.
      if (self->now() - it->second.fetched_at < self->opt.refresh || failed != nullptr)
        co_return it->second.key;
    } else if (failed != nullptr) {
      co_return failed->error;
    }
  }
  auto fetched = co_await self->read(*ref, deadline);
  if (fetched.key) co_return std::move(fetched.key).value();
  if (!fetched.revoked) {
    // Kept by the read's leader (an outage says nothing about the key): use the copy.
    std::lock_guard lock(self->mu);
    if (auto it = self->cache.find(name); it != self->cache.end()) co_return it->second.key;
  }
  co_return std::move(fetched.key).error();
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
    const Impl::Failure* failed = self->recent_failure(name);
    if (it != self->cache.end()) {
      // Rate-limited: read less than min_refetch ago, or a read failed less than retry_failed
      // ago (a hostile image's bad signatures must not turn into vault requests).
      if (self->now() - it->second.fetched_at < self->opt.min_refetch || failed != nullptr)
        co_return std::optional<crypto::PublicKey>();
      cached = it->second.key;
    } else if (failed != nullptr) {
      co_return failed->error;
    }
  }
  auto fetched = co_await self->read(*ref, deadline);
  if (!fetched.key) co_return std::move(fetched.key).error();
  if (cached && cached->spki_der() == fetched.key->spki_der())
    co_return std::optional<crypto::PublicKey>();
  co_return std::optional<crypto::PublicKey>(std::move(fetched.key).value());
}

}  // namespace sigil::azure
