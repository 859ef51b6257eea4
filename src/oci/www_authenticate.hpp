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
};

Result<std::vector<Challenge>> parse_www_authenticate(std::string_view header);

}  // namespace sigil::oci
