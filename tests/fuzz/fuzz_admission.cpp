// Fuzz target: AdmissionReview decoding (outside bytes from the API server) and re-encoding.
// Also a property of encode_response: whatever bytes a message quotes (here the whole input),
// the response is valid JSON in valid UTF-8, and valid UTF-8 text survives exactly.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  check_encoding(body.substr(0, 4096));
  auto r = sigil::admission::decode_review(body);
  if (!r.ok()) {
    if (r.error().message.empty()) std::abort();  // every failure says why
    return 0;
  }
  // Invariants of a successful decode.
  if (r->uid.empty()) std::abort();
  if (r->images.size() > 1000) std::abort();
  if (!r->judged && !r->images.empty()) std::abort();
  for (const auto& use : r->images) {
    if (use.image.empty() || use.path.empty()) std::abort();
  }
  sigil::admission::Response resp;
  resp.uid = r->uid;
  resp.allowed = r->images.empty();
  resp.message = r->images.empty() ? "" : r->images.front().image;
  if (r->images.size() > 1) resp.warnings.push_back(r->images[1].image);
  const std::string out = sigil::admission::encode_response(resp);
  if (out.empty() || out.front() != '{') std::abort();
  return 0;
}
