// Fuzzes what a registry's auth and paging answers are read with, all chosen by whoever runs the
// registry a pod names: a token endpoint's body (parse_token_response), a Link header's next
// page (link_next_target), and a bearer realm turned into the token request's URL (token_url).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "registry/auth.hpp"

namespace {

bool printable(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto t = sigil::registry::parse_token_response(in); t.ok()) {
    if (t->token.empty() || t->token.size() > sigil::registry::kMaxTokenBytes) __builtin_trap();
    // The token becomes an Authorization header: it must not be able to add another.
    for (char c : t->token) {
      if (c == '\r' || c == '\n') __builtin_trap();
    }
  }
  // Only a path on the registry's own origin, never another host, never a split request line,
  // and only the same list: never another repository's path.
  constexpr std::string_view kList = "/v2/team/app/referrers/sha256:0";
  const std::string next = sigil::registry::link_next_target(in, kList);
  if (!next.empty() &&
      (next.front() != '/' || next.rfind("//", 0) == 0 || !printable(next) ||
       next.rfind(kList, 0) != 0 || (next.size() > kList.size() && next[kList.size()] != '?'))) {
    __builtin_trap();
  }
  if (auto u = sigil::registry::token_url(in, "registry.example", "repository:team/app:pull");
      u.ok()) {
    if ((u->scheme != "https" && u->scheme != "http") || u->host.empty() || !printable(u->target) ||
        u->target.find("scope=") == std::string::npos) {
      __builtin_trap();
    }
  }
  return 0;
}
