// verify/keys.hpp: keys a policy names but does not hold (`key.kms`), read at verification time.
//
// Role: the interface the engine asks for a ClusterImagePolicy's `key.kms` key
// ("azurekms://<vault>/<key>[/<version>]", policy::Authority::kms). The implementation is in
// app/ (Azure Key Vault through azure::KeyVaultKeys, with the registry's Azure identity, sent
// only to the configured vault hosts); verify/ depends on this header only, never on azure/.
// Implementations cache: key() is called for every verification of an image a KMS policy
// matches, so a warm call must not leave the process.
#pragma once

#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "common/deadline.hpp"
#include "common/result.hpp"
#include "crypto/keys.hpp"

namespace sigil::verify {

class KeyResolver {
 public:
  virtual ~KeyResolver() = default;
  // The key uri names now (cached). An error is the reason the image is denied
  // (POLICY_UNAVAILABLE, never cached): one line, nothing token-shaped.
  virtual boost::asio::awaitable<Result<crypto::PublicKey>> key(std::string uri,
                                                                Deadline deadline) = 0;
  // No signature verified with key(uri): look again (rate-limited by the implementation). The
  // new key when it changed (a rotation), nullopt when it did not or was looked at recently.
  virtual boost::asio::awaitable<Result<std::optional<crypto::PublicKey>>> refetch_after_failure(
      std::string uri, Deadline deadline) = 0;
};

}  // namespace sigil::verify
