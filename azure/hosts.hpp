// azure/hosts.hpp: which hosts may receive a credential sigil obtained from an Azure identity.
//
// Role: the one rule for where Azure tokens go (issue 11 item 5). An AAD-derived token is
// worth as much as the identity's AcrPull or Key Vault access, so it goes only to a host that
// matches a whole-host pattern: "*.azurecr.io" (exactly one DNS label in place of the star) or
// an exact "host" / "host:port". The match is on the whole normalized host[:port] (lowercased,
// ":443" dropped as the https default), never a prefix or a substring, so the lookalike
// "x.azurecr.io.evil.example" gets nothing. Pure: no I/O, no clock.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace sigil::azure {

class HostAllowlist {
 public:
  // ACR's public and sovereign clouds: ^[a-z0-9-]+\.azurecr\.(io|cn|us|de)$.
  static HostAllowlist default_registries();
  // Key Vault's public cloud: *.vault.azure.net.
  static HostAllowlist default_vaults();

  // Each pattern is "*.<suffix>" or an exact "host" / "host:port". Rejects empty patterns,
  // a star anywhere but as the whole first label, schemes, paths, user info, and characters
  // outside host names and IP literals (the error names the pattern).
  static Result<HostAllowlist> parse(const std::vector<std::string>& patterns);

  // Whether `host` ("myacr.azurecr.io", "127.0.0.1:8443", "[::1]:5000") may receive Azure
  // credentials. Malformed names never match.
  bool allows(std::string_view host) const;

  // Whether `host` is one of the exact names (not matched by a "*." pattern only): a registry the
  // operator wrote down, as against one a pod chose under a wildcard.
  bool names(std::string_view host) const;

  const std::vector<std::string>& patterns() const noexcept { return patterns_; }

 private:
  struct Pattern {
    bool wildcard = false;  // "*." + rest: one label, then rest
    std::string rest;       // the suffix after "*." or the exact name (normalized)
  };
  std::vector<Pattern> compiled_;
  std::vector<std::string> patterns_;
};

// The normalized form hosts are compared in: lowercased, a trailing ":443" dropped. "" for a
// name that is not host[:port] (a path, a scheme, user info, spaces, an empty label).
std::string normalize_host(std::string_view host);

}  // namespace sigil::azure
