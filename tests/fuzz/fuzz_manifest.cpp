// Fuzzes oci::parse_manifest and oci::distribution_error_codes (registry bytes). The first
// input byte picks a Content-Type so the body/header agreement logic is exercised too; parsed
// output must satisfy the model's checks.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "oci/manifest.hpp"
#include "oci/reference.hpp"

namespace {

constexpr std::string_view kContentTypes[] = {
    "",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8",
    "application/json",
    "text/html",
    "APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON",
};

void check(const sigil::oci::Descriptor& d) {
  if (d.media_type.empty() || !sigil::oci::is_valid_digest(d.digest) || d.size < 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view content_type;
  if (size > 0) {
    content_type = kContentTypes[data[0] % (sizeof(kContentTypes) / sizeof(kContentTypes[0]))];
    ++data;
    --size;
  }
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (const auto& code : sigil::oci::distribution_error_codes(bytes)) {
    if (code.empty() || code.size() > 64) std::abort();
  }
  const auto m = sigil::oci::parse_manifest(bytes, content_type);
  if (!m.ok()) {
    if (m.error().message.empty()) std::abort();
    return 0;
  }
  if (m->schema_version != 2) std::abort();
  if (m->is_index == m->config.has_value()) std::abort();
  if (m->is_index && !m->layers.empty()) std::abort();
  if (!m->is_index && !m->manifests.empty()) std::abort();
  if (m->config) check(*m->config);
  if (m->subject) check(*m->subject);
  for (const auto& d : m->layers) check(d);
  for (const auto& d : m->manifests) check(d);
  return 0;
}
