// registry/auth.hpp: the pieces of registry authentication that need no socket: API paths,
// token requests and responses, the bearer-token cache, and the rules for where credentials
// may go.
//
// Role: keep every auth decision a pure, unit-testable function. No Asio/Beast; time is passed
// in (steady_clock time points), never read here. URLs and origins are net's (net/url.hpp).
// Depends on common, net/url.hpp, nlohmann/json.
//
// Credential rules (see also http_client.hpp):
//  - Basic credentials belong to one registry host (exact normalized host:port).
//  - A Bearer realm must be https, unless the registry itself is an insecure (plain HTTP) host.
//    The realm host may differ from the registry host (Docker Hub: auth.docker.io); the
//    REGISTRY host's Basic credentials are sent to the realm only over https.
//  - Authorization is never sent to a host other than the registry it belongs to, so a
//    redirect (e.g. to blob storage) is followed without it (net::Client enforces it).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "net/url.hpp"

namespace sigil::registry {

// "/v2/<repo>/manifests/<ref>" and "/v2/<repo>/blobs/<digest>"; repository and reference are
// validated (distribution grammar characters only) so nothing can smuggle path or query parts.
Result<std::string> manifest_path(std::string_view repository, std::string_view reference);
Result<std::string> blob_path(std::string_view repository, std::string_view digest);
// "/v2/<repo>/referrers/<digest>[?artifactType=<pct-encoded>]" (OCI distribution 1.1).
Result<std::string> referrers_path(std::string_view repository, std::string_view digest,
                                   std::string_view artifact_type);
// The target of the `rel="next"` entry of a Link header (RFC 8288, as the distribution spec
// paginates: `</v2/repo/referrers/sha256:..?n=10&last=..>; rel="next"`), or "" when absent or
// unparsable. Only a path on the same origin is returned, and only `within` itself with a query
// or none: the next page of the same list (a registry cannot send the credential chosen for one
// repository to another's path; an absolute URL is refused too).
std::string link_next_target(std::string_view link, std::string_view within);

// realm?service=...&scope=... with proper percent-encoding (realm may carry its own query).
Result<net::Url> token_url(std::string_view realm, std::string_view service,
                           std::string_view scope);
// "repository:<repo>:pull"
std::string pull_scope(std::string_view repository);

// application/x-www-form-urlencoded body for the refresh_token grant (identitytoken).
std::string refresh_token_form(std::string_view service, std::string_view scope,
                               std::string_view refresh_token, std::string_view client_id);

struct TokenResponse {
  std::string token;  // "token", else "access_token"
  std::chrono::seconds expires_in{60};
};

// The longest token sigil keeps (registries' tokens are JWTs of 1-8 KiB): a token endpoint is
// whatever host a registry's challenge names, and its tokens are cached.
inline constexpr size_t kMaxTokenBytes = 64 * 1024;

// Parses a token endpoint answer: {"token"|"access_token": "...", "expires_in": N}.
// Missing/invalid expires_in -> 60 s (the distribution spec default); no token, or one longer
// than kMaxTokenBytes -> parse_error.
Result<TokenResponse> parse_token_response(std::string_view body);

// How long a cached token is used: expires_in minus a skew (10 s, or half for short tokens).
std::chrono::steady_clock::duration token_ttl(std::chrono::seconds expires_in);

// "Basic base64(user:pass)"
std::string basic_authorization(std::string_view user, std::string_view password);

// Thread-safe cache of bearer tokens per (registry authority, scope). Bounded in entries and in
// bytes (a hostile registry names as many scopes, and answers as long tokens, as it likes):
// when full, expired tokens go first, then those that expire soonest, one at a time, so a flood
// of new scopes never clears the tokens of the registries in use all at once.
class TokenCache {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  static constexpr size_t kMaxEntries = 4096;
  static constexpr size_t kMaxBytes = 16 * 1024 * 1024;

  TokenCache() = default;
  TokenCache(size_t max_entries, size_t max_bytes)
      : max_entries_(max_entries), max_bytes_(max_bytes) {}

  std::optional<std::string> get(const std::string& authority, const std::string& scope,
                                 TimePoint now) const;
  void put(const std::string& authority, const std::string& scope, std::string token,
           TimePoint expires_at);
  void erase(const std::string& authority, const std::string& scope);
  size_t size() const;
  size_t bytes() const;  // what the entries hold, as counted against max_bytes

 private:
  struct Entry {
    std::string token;
    TimePoint expires_at;
  };
  using Map = std::map<std::pair<std::string, std::string>, Entry>;
  static size_t cost(const std::string& authority, const std::string& scope,
                     const std::string& token);
  void drop(Map::iterator it);  // mu_ held
  size_t max_entries_ = kMaxEntries;
  size_t max_bytes_ = kMaxBytes;
  mutable std::mutex mu_;
  Map entries_;
  size_t bytes_ = 0;
};

}  // namespace sigil::registry
