// azure/keyvault.hpp: public keys from Azure Key Vault for `key.kms: azurekms://...`.
//
// Role: resolve a ClusterImagePolicy's azurekms:// key to a crypto::PublicKey with the same
// Azure identity as the registry (issue 11 item 6): GET https://<vault>/keys/<key>[/<version>]
// ?api-version=7.4 with an AAD token for https://vault.azure.net/.default, sent only to hosts
// of Options::vaults (default *.vault.azure.net). Keys are cached and looked at again every
// `refresh`, a versioned one too (its bytes never change, but it can be disabled or deleted),
// and at once when a signature fails to verify with it, at most every `min_refetch` per key.
// When the vault answers that the key is disabled (`attributes.enabled: false`, or 403 with
// the inner error KeyDisabled) or does not exist (404), the cached copy is dropped and the error
// returned: disabling a stolen key in the vault ends sigil's trust in it within `refresh`. When a
// refetch fails for any other reason (the vault or Entra ID unreachable, a refused token, an
// unreadable answer), the cached key stays in use (a log line) and the vault is asked again after
// `retry_failed`; the first fetch failing is an error the caller turns into a denial, answered
// again for `retry_failed` without another request (so is a revoked key's), except a timeout of
// the caller's own deadline. Reads of one key never overlap: concurrent callers share one
// request, and its result is applied to the cache as it lands, so an older read cannot undo a
// revocation a newer one saw.
//
// How verify/ (or policy/'s compile) uses it: `key(uri)` for each azurekms authority before
// checking signatures; when none of an image's signatures verifies with that key,
// `refetch_after_failure(uri)` and, when it returns a key, check once more with it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "azure/azure.hpp"
#include "azure/jwk.hpp"
#include "common/deadline.hpp"
#include "common/result.hpp"
#include "crypto/keys.hpp"

namespace sigil::azure {

struct KeyVaultOptions {
  std::chrono::seconds refresh{3600};     // every key (versioned too): looked at again this often
  std::chrono::seconds min_refetch{300};  // after a verification failure, at most this often
  // A key that could not be read, with no copy to fall back on (never read, disabled, deleted):
  // its error is answered again for this long without asking the vault, so a burst of
  // admissions under its policy costs the vault one request, not one each.
  std::chrono::seconds retry_failed{30};
};

class KeyVaultKeys {
 public:
  KeyVaultKeys(std::shared_ptr<AzureCredentials> azure, KeyVaultOptions options);
  ~KeyVaultKeys();
  KeyVaultKeys(const KeyVaultKeys&) = delete;
  KeyVaultKeys& operator=(const KeyVaultKeys&) = delete;

  // The key `uri` (azurekms://...) names. Errors: unsupported (another KMS scheme),
  // invalid_argument (a malformed URI, a vault host outside the list), unauthorized (no
  // identity, AAD or Key Vault refused), not_found, verification (the key is disabled),
  // parse_error / unsupported (a JWK sigil cannot use).
  boost::asio::awaitable<Result<crypto::PublicKey>> key(std::string uri, Deadline deadline);

  // A signature did not verify with key(uri): refetch it now unless it was fetched less than
  // min_refetch ago; the new key when it differs from the cached one, nullopt otherwise.
  boost::asio::awaitable<Result<std::optional<crypto::PublicKey>>> refetch_after_failure(
      std::string uri, Deadline deadline);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sigil::azure
