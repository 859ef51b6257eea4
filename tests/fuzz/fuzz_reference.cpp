// Fuzzes oci::parse_reference (image strings from pod specs) and checks its invariants: a
// parsed reference is normalized, round-trips through str(), and never yields an empty part.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "oci/reference.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto r = sigil::oci::parse_reference(text);
  if (!r.ok()) {
    if (r.error().message.empty()) std::abort();
    return 0;
  }
  if (r->registry.empty() || r->repository.empty()) std::abort();
  if (r->tag.empty() && r->digest.empty()) std::abort();
  if (r->has_digest() && !sigil::oci::is_valid_digest(r->digest)) std::abort();
  if (r->name().size() > 255) std::abort();
  const auto again = sigil::oci::parse_reference(r->str());
  if (!again.ok() || again->str() != r->str() || again->pinned() != r->pinned()) std::abort();
  (void)sigil::oci::api_host(r->registry);
  if (r->has_digest()) (void)sigil::oci::signature_tag(r->digest);
  return 0;
}
