// azure/jwk.hpp: Key Vault key references and the JWKs Key Vault answers with.
//
// Role: the pure half of issue 11 item 6. `azurekms://<vault host>/<key>[/<version>]` (the
// form cosign and policy-controller write in key.kms) names a key; Key Vault's
// GET /keys/<key>[/<version>]?api-version=7.4 answers {"key": JWK, "attributes": {...}}; the
// JWK (RFC 7517/7518: EC P-256/384/521, RSA; Key Vault's "-HSM" key types too) becomes a
// crypto::PublicKey through its SubjectPublicKeyInfo, so the key gets the same checks as a PEM
// key (point on the curve, RSA >= 2048 bits). No I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "crypto/keys.hpp"

namespace sigil::azure {

struct KmsKeyRef {
  std::string vault;    // host[:port], lowercased ("myvault.vault.azure.net")
  std::string key;      // the key's name
  std::string version;  // "" = the newest version, which rotation changes
  // "azurekms://vault/key[/version]", the cache key and the name in messages.
  std::string uri() const;
  // "/keys/<key>[/<version>]?api-version=7.4"
  std::string target() const;
};

// Parses azurekms://...; any other scheme (awskms://, gcpkms://, hashivault://) is
// Errc::unsupported with a message naming it; a malformed azurekms URI is invalid_argument.
Result<KmsKeyRef> parse_azurekms(std::string_view uri);

// A JWK's public part as a key. Errc::unsupported for other key types and curves (OKP, oct,
// P-256K); parse_error for missing or malformed members; what PublicKey::from_der rejects
// (a point off the curve, a short RSA modulus) comes back as its error.
Result<crypto::PublicKey> public_key_from_jwk(std::string_view jwk_json);

struct VaultKey {
  crypto::PublicKey key;
  std::string kid;      // the key's full identifier (with its version)
  std::string version;  // the last segment of kid, "" when kid has none
  bool enabled = true;  // attributes.enabled
};

// Key Vault's key bundle {"key": {...}, "attributes": {"enabled": bool, ...}}; attributes.enabled
// missing or not a boolean is parse_error.
Result<VaultKey> parse_key_vault_key(std::string_view body);

}  // namespace sigil::azure
