// oci/www_authenticate.hpp: RFC 7235 WWW-Authenticate challenges as registries send them.
//
// Role: parse `Bearer realm="https://x/oauth2/token",service="x",scope="repository:a:pull"`
// and `Basic realm="..."` (several challenges, quoted strings with escapes, tokens). Pure.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace sigil::oci {

struct Challenge {
  std::string scheme;                         // lowercased: "bearer", "basic"
  std::map<std::string, std::string> params;  // keys lowercased, values unquoted
  std::string token68;  // `Negotiate abc==` form (RFC 7235 token68); then params is empty
};

// Fails (parse_error) on empty input, unterminated quoted strings, control characters, a
// parameter named twice in one challenge, and anything outside the RFC 7235 grammar; too_large
// above 16 KiB. Empty list elements (",,") are skipped as RFC 9110 #rule allows.
Result<std::vector<Challenge>> parse_www_authenticate(std::string_view header);

}  // namespace sigil::oci
