// azure/tokens.hpp: the wire formats of Azure's token endpoints and of the tokens themselves.
//
// Role: the pure half of the Azure identity clients (issue 11 items 2-4, platform-facts 1.2,
// 1.3): the form bodies sigil posts, the JSON answers it reads (AAD v2.0, IMDS with numbers
// as strings, ACR's /oauth2/exchange and /oauth2/token), and the two claims it reads from a
// JWT without verifying it (`exp`, `tid`), as every Azure client does: the token's audience
// verifies it, sigil only needs to know when it stops working. No I/O; time is passed in.
// Error messages quote at most the endpoint's `error`/`error_description` (never a token).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"

namespace sigil::azure {

using SysTime = std::chrono::system_clock::time_point;

// What sigil asks AAD for (a scope ending in "/.default") and IMDS for (the resource: the
// scope without "/.default").
inline constexpr std::string_view kAcrScope = "https://containerregistry.azure.net/.default";
inline constexpr std::string_view kVaultScope = "https://vault.azure.net/.default";
std::string resource_of_scope(std::string_view scope);

struct AadToken {
  std::string access_token;
  SysTime expires_at;
  std::string tenant;  // the token's `tid` claim, "" when it has none
  SysTime fetched_at;  // when the answer was read (`now`): with expires_at, the lifetime
};

// Unpadded base64url (RFC 4648 section 5, as JWTs and JWKs write it); trailing '=' tolerated.
// parse_error on anything outside the URL alphabet.
Result<std::string> base64url_decode(std::string_view text);

// A JWT's claims `exp` (seconds since the epoch) and `tid`, read without verification.
// parse_error when the token is not three base64url parts with a JSON object in the middle.
Result<SysTime> jwt_expiry(std::string_view jwt);
std::string jwt_tenant(std::string_view jwt);

// AAD v2.0 token answer {"access_token", "expires_in": N, ...} and IMDS's {"access_token",
// "expires_in": "N", "expires_on": "<unix>"} (numbers may be strings). Expiry: expires_on when
// present, else now + expires_in, else the JWT's exp; none of them: parse_error.
Result<AadToken> parse_aad_token_response(std::string_view body, SysTime now);

// The message of an AAD/IMDS error answer: "<error>: <error_description>" (printable, cut),
// or "" when the body is not one.
std::string aad_error_message(std::string_view body);
// The innermost code of a Key Vault error answer {"error": {"code", "message", "innererror":
// {"code", "innererror": ...}}} ("KeyDisabled"), or "" when it has none. At most 8 levels.
std::string key_vault_inner_error(std::string_view body);
// The message of an ACR error answer {"errors":[{"code","message"}]}, or "".
std::string acr_error_message(std::string_view body);

// The form bodies.
std::vector<std::pair<std::string, std::string>> workload_identity_form(std::string_view client_id,
                                                                        std::string_view assertion,
                                                                        std::string_view scope);
std::vector<std::pair<std::string, std::string>> acr_exchange_form(std::string_view service,
                                                                   std::string_view tenant,
                                                                   std::string_view aad_token);
std::vector<std::pair<std::string, std::string>> acr_token_form(std::string_view service,
                                                                std::string_view scope,
                                                                std::string_view refresh_token);

// {"refresh_token": "..."} from /oauth2/exchange; {"access_token": "..."} from /oauth2/token.
Result<std::string> parse_acr_refresh_token(std::string_view body);
Result<std::string> parse_acr_access_token(std::string_view body);

// "repository:<repo>:pull"
std::string acr_pull_scope(std::string_view repository);

}  // namespace sigil::azure
