// oci/manifest.hpp: OCI / Docker manifest and index models, parsed from untrusted bytes.
//
// Role: turn registry JSON into typed descriptors with every field checked (digest syntax,
// non-negative size, known media types). Pure: depends on common and nlohmann/json only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace sigil::oci {

namespace media {
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kCosignSimpleSigning =
    "application/vnd.dev.cosign.simplesigning.v1+json";
// The Accept header for resolving a tag: index types first so a multi-arch tag resolves to
// its index digest, exactly as cosign signs it.
inline constexpr std::string_view kManifestAccept =
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json";
}  // namespace media

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::string artifact_type;
  std::map<std::string, std::string> annotations;
};

// An image manifest (OCI or Docker v2 schema 2) or an index / manifest list.
struct Manifest {
  int schema_version = 0;
  std::string media_type;  // from the body, or the Content-Type when the body omits it
  bool is_index = false;
  std::optional<Descriptor> config;   // image manifests
  std::vector<Descriptor> layers;     // image manifests
  std::vector<Descriptor> manifests;  // indexes
  std::optional<Descriptor> subject;
  std::string artifact_type;
  std::map<std::string, std::string> annotations;
};

// content_type is the HTTP Content-Type (may be empty). Fails on anything malformed.
Result<Manifest> parse_manifest(std::string_view bytes, std::string_view content_type = {});

// About the memory a parsed manifest holds (its descriptors, strings and annotation maps): what a
// caller that keeps it charges to its byte budget. Annotations cost far more parsed than as
// JSON (`"k":"",` is 7 bytes; its map node over 100), so a body's size does not bound it.
uint64_t held_bytes(const Manifest& m);
uint64_t held_bytes(const Descriptor& d);  // one descriptor, kept apart from its manifest

// The `code`s of a distribution-spec error body (`{"errors":[{"code":"NAME_UNKNOWN",...}]}`),
// at most 16, each at most 64 printable ASCII characters. Empty when the body is not such a
// document (a plain "404 page not found", HTML, anything else): that is how a registry
// without a route (no referrers API) differs from one that routed the request and found no
// repository (NAME_UNKNOWN). Never fails.
std::vector<std::string> distribution_error_codes(std::string_view body);

}  // namespace sigil::oci
