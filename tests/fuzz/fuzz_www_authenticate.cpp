// Fuzzes oci::parse_www_authenticate (registry 401 headers).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "oci/www_authenticate.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view header(reinterpret_cast<const char*>(data), size);
  const auto r = sigil::oci::parse_www_authenticate(header);
  if (!r.ok()) {
    if (r.error().message.empty()) std::abort();
    return 0;
  }
  if (r->empty()) std::abort();
  for (const auto& c : *r) {
    if (c.scheme.empty()) std::abort();
    if (!c.token68.empty() && !c.params.empty()) std::abort();
    for (char ch : c.scheme) {
      if (ch >= 'A' && ch <= 'Z') std::abort();
    }
    for (const auto& [k, v] : c.params) {
      if (k.empty()) std::abort();
      for (char ch : k) {
        if (ch >= 'A' && ch <= 'Z') std::abort();
      }
    }
  }
  return 0;
}
