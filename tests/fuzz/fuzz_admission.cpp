// Fuzz target: AdmissionReview decoding (outside bytes from the API server) and re-encoding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "admission/admission.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
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
