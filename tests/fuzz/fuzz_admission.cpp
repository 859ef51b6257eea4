// Fuzz target: AdmissionReview decoding (outside bytes from the API server) and re-encoding,
// with the JSON pointers of the images, the old object of an UPDATE and the /mutate JSONPatch.
// Also a property of encode_response: whatever bytes a message quotes (here the whole input),
// the response is valid JSON in valid UTF-8, and valid UTF-8 text survives exactly. And a
// differential one: every image decode_review reads is the string that the API server's reading
// (Go's, which takes the last of a repeated key) finds at that image's pointer.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "admission/admission.hpp"

namespace {

void check_encoding(std::string_view bytes) {
  sigil::admission::Response resp;
  resp.uid = "u";
  resp.allowed = false;
  resp.message = std::string(bytes);
  resp.warnings.emplace_back(bytes);
  resp.audit_annotations.emplace(std::string(bytes), std::string(bytes));
  const std::string out = sigil::admission::encode_response(resp);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(out).get(doc) != simdjson::SUCCESS) std::abort();  // invalid JSON or UTF-8
  std::string_view message;
  if (doc.at_pointer("/response/status/message").get_string().get(message) != simdjson::SUCCESS) {
    std::abort();
  }
  if (simdjson::validate_utf8(bytes.data(), bytes.size()) && message != bytes) std::abort();
}

// The string at RFC 6901 `pointer` below e, each object key resolved to its last occurrence
// (Go's encoding/json); false when there is none.
bool last_wins_string(simdjson::dom::element e, std::string_view pointer, std::string_view& out) {
  std::size_t pos = 0;
  while (pos < pointer.size()) {
    if (pointer[pos] != '/') return false;
    std::size_t end = pointer.find('/', pos + 1);
    if (end == std::string_view::npos) end = pointer.size();
    std::string token;
    for (std::size_t i = pos + 1; i < end; ++i) {
      if (pointer[i] == '~' && i + 1 < end) {
        token.push_back(pointer[i + 1] == '1' ? '/' : '~');
        ++i;
      } else {
        token.push_back(pointer[i]);
      }
    }
    simdjson::dom::object obj;
    simdjson::dom::array arr;
    if (e.get_object().get(obj) == simdjson::SUCCESS) {
      bool found = false;
      for (simdjson::dom::key_value_pair field : obj) {
        if (field.key == token) {
          e = field.value;
          found = true;
        }
      }
      if (!found) return false;
    } else if (e.get_array().get(arr) == simdjson::SUCCESS) {
      std::size_t index = 0;
      for (char c : token) {
        if (c < '0' || c > '9') return false;
        index = index * 10 + static_cast<std::size_t>(c - '0');
      }
      if (token.empty() || arr.at(index).get(e) != simdjson::SUCCESS) return false;
    } else {
      return false;
    }
    pos = end;
  }
  return e.get_string().get(out) == simdjson::SUCCESS;
}

void check_last_wins(std::string_view body, const sigil::admission::Request& r) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS) std::abort();
  const struct {
    const std::vector<sigil::admission::ImageUse>* uses;
    const char* object;
  } lists[] = {{&r.images, "/request/object"}, {&r.old_images, "/request/oldObject"}};
  for (const auto& list : lists) {
    for (const auto& use : *list.uses) {
      std::string_view image;
      if (!last_wins_string(doc, list.object + use.pointer, image) || image != use.image) {
        std::abort();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  check_encoding(body.substr(0, 4096));
  auto r = sigil::admission::decode_review(body);
  const std::string uid = sigil::admission::review_uid(body);
  if (!r.ok()) {
    if (r.error().message.empty()) std::abort();  // every failure says why
    return 0;
  }
  // Invariants of a successful decode.
  if (r->uid.empty() || uid != r->uid) std::abort();
  if (r->images.size() > 1000 || r->old_images.size() > 1000) std::abort();
  if (!r->judged && !(r->images.empty() && r->old_images.empty())) std::abort();
  if (!r->has_old_images && !r->old_images.empty()) std::abort();
  if (r->has_old_images && r->operation != "UPDATE") std::abort();
  for (const auto* list : {&r->images, &r->old_images}) {
    for (const auto& use : *list) {
      if (use.image.empty() || use.path.empty()) std::abort();
      // A pointer into the object's pod spec, ending at an image field: a container's image,
      // or an image volume's reference.
      if (use.pointer.rfind("/spec/", 0) != 0) std::abort();
      const std::string_view p(use.pointer);
      const auto ends = [&](std::string_view tail) {
        return p.size() > tail.size() && p.substr(p.size() - tail.size()) == tail;
      };
      if (!ends("/image") && !ends("/image/reference")) std::abort();
    }
  }
  check_last_wins(body, *r);
  const auto fresh = sigil::admission::new_image_uses(*r);
  if (fresh.size() > r->images.size()) std::abort();
  if (!r->has_old_images && fresh.size() != r->images.size()) std::abort();

  // The patch /mutate would send for the new uses is valid JSON, whatever the images hold.
  std::vector<sigil::admission::ImagePatch> patches;
  for (const auto* use : fresh) patches.push_back({use->pointer, use->image, use->image + "@x"});
  const std::string patch = sigil::admission::encode_image_patch(patches);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(patch).get(doc) != simdjson::SUCCESS) std::abort();
  simdjson::dom::array ops;
  if (doc.get_array().get(ops) != simdjson::SUCCESS || ops.size() != 2 * patches.size()) {
    std::abort();
  }

  sigil::admission::Response resp;
  resp.uid = r->uid;
  resp.allowed = r->images.empty();
  resp.message = r->images.empty() ? "" : r->images.front().image;
  if (r->images.size() > 1) resp.warnings.push_back(r->images[1].image);
  resp.patch = patch;
  const std::string out = sigil::admission::encode_response(resp);
  if (out.empty() || out.front() != '{') std::abort();
  if (parser.parse(out).get(doc) != simdjson::SUCCESS) std::abort();
  return 0;
}
