// oci/manifest.cpp: strict parsing of OCI / Docker manifests and indexes from registry bytes.
//
// nlohmann/json throws; every call into it stays inside parse_manifest's try block, and the
// typed model is built only from fields whose JSON type was checked first.
#include "oci/manifest.hpp"

#include <cstddef>
#include <exception>
#include <new>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/json_text.hpp"
#include "oci/reference.hpp"

namespace sigil::oci {
namespace {

using json = nlohmann::json;

// distribution-spec: registries may refuse manifests above 4 MiB; we refuse to parse them.
constexpr std::size_t kMaxManifestBytes = 4 * 1024 * 1024;
constexpr std::size_t kMaxDescriptors = 10000;
constexpr int kMaxDepth = 32;
constexpr uint64_t kMaxSize = uint64_t{1} << 53;  // JSON numbers beyond this lose precision
constexpr std::size_t kQuoteMax = 80;

// Thrown by the parser callback to abort a too-deeply nested document.
struct TooDeep {};

std::string quote(std::string_view s) {
  std::string out = "\"";
  std::size_t n = 0;
  for (char ch : s) {
    if (n++ == kQuoteMax) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(ch);
    out += (c < 0x20 || c == 0x7f || c == '"') ? '?' : ch;
  }
  return out + "\"";
}

Error fail(const std::string& where, std::string_view why) {
  return make_error(Errc::parse_error, "manifest: " + where + ": " + std::string(why));
}

bool is_known_type(std::string_view mt) {
  return mt == media::kOciManifest || mt == media::kOciIndex || mt == media::kDockerManifest ||
         mt == media::kDockerManifestList;
}

// "application/vnd.oci.image.manifest.v1+json; charset=utf-8" -> the bare, lowercased type.
std::string bare_content_type(std::string_view ct) {
  if (const auto semi = ct.find(';'); semi != std::string_view::npos) ct = ct.substr(0, semi);
  while (!ct.empty() && (ct.front() == ' ' || ct.front() == '\t')) ct.remove_prefix(1);
  while (!ct.empty() && (ct.back() == ' ' || ct.back() == '\t')) ct.remove_suffix(1);
  std::string out(ct);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Content types some registries and proxies send for any blob; they say nothing about which
// manifest type the body is, so they neither define nor contradict the body's mediaType.
bool is_generic_content_type(std::string_view ct) {
  return ct == "application/json" || ct == "application/octet-stream" || ct == "text/plain";
}

// An optional string member: absent or null -> empty; any other non-string is an error.
Result<std::string> optional_string(const json& obj, const char* key, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) return fail(where + "." + key, "must be a string");
  return it->get<std::string>();
}

Result<std::map<std::string, std::string>> parse_annotations(const json& obj,
                                                             const std::string& where) {
  std::map<std::string, std::string> out;
  const auto it = obj.find("annotations");
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_object()) return fail(where + ".annotations", "must be an object");
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) {
      return fail(where + ".annotations[" + quote(k) + "]", "value must be a string");
    }
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

Result<Descriptor> parse_descriptor(const json& j, const std::string& where) {
  if (!j.is_object()) return fail(where, "descriptor must be an object");
  Descriptor d;

  const auto mt = j.find("mediaType");
  if (mt == j.end() || !mt->is_string() || mt->get_ref<const std::string&>().empty()) {
    return fail(where + ".mediaType", "must be a non-empty string");
  }
  d.media_type = mt->get<std::string>();

  const auto dg = j.find("digest");
  if (dg == j.end() || !dg->is_string()) return fail(where + ".digest", "must be a string");
  const auto& digest = dg->get_ref<const std::string&>();
  if (!is_valid_digest(digest)) {
    return fail(where + ".digest", "invalid digest " + quote(digest) +
                                       " (want sha256:<64 lowercase hex> or "
                                       "sha512:<128 lowercase hex>)");
  }
  d.digest = digest;

  const auto sz = j.find("size");
  if (sz == j.end()) return fail(where + ".size", "missing");
  if (sz->is_number_unsigned()) {
    const auto v = sz->get<uint64_t>();
    if (v > kMaxSize) return fail(where + ".size", "too large");
    d.size = static_cast<int64_t>(v);
  } else if (sz->is_number_integer()) {
    // Signed and not unsigned: nlohmann stores non-negative integers as unsigned, so this is < 0.
    return fail(where + ".size", "must not be negative");
  } else {
    return fail(where + ".size", "must be an integer");
  }

  auto artifact_type = optional_string(j, "artifactType", where);
  if (!artifact_type) return std::move(artifact_type).error();
  d.artifact_type = std::move(*artifact_type);

  auto annotations = parse_annotations(j, where);
  if (!annotations) return std::move(annotations).error();
  d.annotations = std::move(*annotations);
  return d;
}

Status parse_descriptor_list(const json& obj, const char* key, std::vector<Descriptor>& out) {
  const auto it = obj.find(key);
  if (it == obj.end()) return fail(key, "missing");
  if (!it->is_array()) return fail(key, "must be an array");
  if (it->size() > kMaxDescriptors) {
    return make_error(Errc::too_large, "manifest: " + std::string(key) + ": more than " +
                                           std::to_string(kMaxDescriptors) + " descriptors");
  }
  out.reserve(it->size());
  std::size_t i = 0;
  for (const auto& entry : *it) {
    auto d = parse_descriptor(entry, std::string(key) + "[" + std::to_string(i++) + "]");
    if (!d) return std::move(d).error();
    out.push_back(std::move(*d));
  }
  return {};
}

Result<Manifest> build(const json& doc, std::string_view content_type) {
  if (!doc.is_object()) return fail("document", "must be a JSON object");
  Manifest m;

  const auto sv = doc.find("schemaVersion");
  if (sv == doc.end()) return fail("schemaVersion", "missing");
  if (!sv->is_number_integer() || sv->get<int64_t>() != 2) {
    return fail("schemaVersion", "must be 2");
  }
  m.schema_version = 2;

  auto body_type = optional_string(doc, "mediaType", "document");
  if (!body_type) return std::move(body_type).error();
  const std::string header_type = bare_content_type(content_type);
  const bool header_says = !header_type.empty() && !is_generic_content_type(header_type);
  if (!body_type->empty() && header_says && *body_type != header_type) {
    return make_error(Errc::parse_error, "manifest: mediaType " + quote(*body_type) +
                                             " differs from Content-Type " + quote(header_type));
  }

  const bool has_manifests = doc.contains("manifests");
  const bool has_image_fields = doc.contains("config") || doc.contains("layers");

  if (!body_type->empty()) {
    m.media_type = *body_type;
  } else if (header_says) {
    m.media_type = header_type;
  } else if (has_manifests) {
    m.media_type = std::string(media::kOciIndex);  // OCI 1.0 allowed omitting mediaType
  } else {
    m.media_type = std::string(media::kOciManifest);
  }
  if (!is_known_type(m.media_type)) {
    return make_error(Errc::unsupported, "manifest: unsupported media type " + quote(m.media_type));
  }
  m.is_index = m.media_type == media::kOciIndex || m.media_type == media::kDockerManifestList;

  // A document that is both an index and an image is ambiguous (CVE-2021-41190): clients
  // could disagree on what was signed. Refuse it whatever its mediaType says.
  if (m.is_index) {
    if (has_image_fields) return fail("document", "an index must not have config or layers");
    if (auto st = parse_descriptor_list(doc, "manifests", m.manifests); !st) {
      return std::move(st).error();
    }
  } else {
    if (has_manifests) return fail("document", "an image manifest must not have manifests");
    const auto cfg = doc.find("config");
    if (cfg == doc.end()) return fail("config", "missing");
    auto config = parse_descriptor(*cfg, "config");
    if (!config) return std::move(config).error();
    m.config = std::move(*config);
    if (auto st = parse_descriptor_list(doc, "layers", m.layers); !st) {
      return std::move(st).error();
    }
  }

  if (const auto sub = doc.find("subject"); sub != doc.end() && !sub->is_null()) {
    auto subject = parse_descriptor(*sub, "subject");
    if (!subject) return std::move(subject).error();
    m.subject = std::move(*subject);
  }

  auto artifact_type = optional_string(doc, "artifactType", "document");
  if (!artifact_type) return std::move(artifact_type).error();
  m.artifact_type = std::move(*artifact_type);

  auto annotations = parse_annotations(doc, "document");
  if (!annotations) return std::move(annotations).error();
  m.annotations = std::move(*annotations);
  return m;
}

}  // namespace

Result<Manifest> parse_manifest(std::string_view bytes, std::string_view content_type) {
  if (bytes.size() > kMaxManifestBytes) {
    return make_error(Errc::too_large,
                      "manifest: larger than 4 MiB (" + std::to_string(bytes.size()) + " bytes)");
  }
  if (bytes.empty()) return fail("document", "empty body");
  try {
    const json::parser_callback_t limit_depth = [](int depth, json::parse_event_t, json&) -> bool {
      if (depth > kMaxDepth) throw TooDeep{};
      return true;
    };
    const json doc = json::parse(bytes.begin(), bytes.end(), limit_depth);
    return build(doc, content_type);
  } catch (const TooDeep&) {
    return fail("document", "nested deeper than " + std::to_string(kMaxDepth) + " levels");
  } catch (const json::parse_error& e) {
    return make_error(Errc::parse_error, std::string("manifest: invalid JSON: ") + e.what());
  } catch (const std::bad_alloc&) {
    return make_error(Errc::too_large, "manifest: out of memory while parsing");
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string("manifest: ") + e.what());
  } catch (...) {
    return make_error(Errc::internal, "manifest: unknown error while parsing");
  }
}

std::vector<std::string> distribution_error_codes(std::string_view body) {
  std::vector<std::string> out;
  if (body.size() > 64 * 1024) return out;
  try {
    // Depth 4 is all this document needs; anything much deeper is not one.
    if (!json_depth_ok(body, 8)) return out;
    auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return out;
    auto it = j.find("errors");
    if (it == j.end() || !it->is_array()) return out;
    for (const auto& e : *it) {
      if (out.size() >= 16) break;
      if (!e.is_object()) continue;
      auto c = e.find("code");
      if (c == e.end() || !c->is_string()) continue;
      const auto& code = c->get_ref<const std::string&>();
      if (code.empty() || code.size() > 64) continue;
      bool printable = true;
      for (char ch : code) printable = printable && ch > 0x20 && ch < 0x7f;
      if (printable) out.push_back(code);
    }
  } catch (const std::exception&) {
    out.clear();
  }
  return out;
}

namespace {

// A map node: its header (32 bytes), the pair of strings, the allocator's rounding.
constexpr uint64_t kMapNode = 32 + 2 * sizeof(std::string) + 16;

uint64_t heap_of(const std::string& s) {
  return s.capacity() > 15 ? s.capacity() + 1 : 0;  // beyond libstdc++'s small-string buffer
}

uint64_t held_by(const std::map<std::string, std::string>& annotations) {
  uint64_t n = 0;
  for (const auto& [k, v] : annotations) n += kMapNode + heap_of(k) + heap_of(v);
  return n;
}

uint64_t held_by(const Descriptor& d) {
  return sizeof(Descriptor) + heap_of(d.media_type) + heap_of(d.digest) + heap_of(d.artifact_type) +
         held_by(d.annotations);
}

}  // namespace

uint64_t held_bytes(const Descriptor& d) {
  return held_by(d);
}

uint64_t held_bytes(const Manifest& m) {
  uint64_t n =
      sizeof(Manifest) + heap_of(m.media_type) + heap_of(m.artifact_type) + held_by(m.annotations);
  if (m.config) n += held_by(*m.config);
  if (m.subject) n += held_by(*m.subject);
  for (const auto& d : m.layers) n += held_by(d);
  for (const auto& d : m.manifests) n += held_by(d);
  return n;
}

}  // namespace sigil::oci
