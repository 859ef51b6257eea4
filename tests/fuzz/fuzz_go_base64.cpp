// Fuzzes the Go-compatible base64 decoders (crypto/go_base64.hpp) against each other and against
// common's strict decoder, which knows nothing of Go: where the inputs mean the same thing, the
// outputs must agree.
#include <cstdint>
#include <string>
#include <string_view>

#include "common/encoding.hpp"
#include "crypto/go_base64.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sigil::crypto::detail;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string clean;  // the input without the '\r' and '\n' Go skips
  bool any_space = false;
  for (char c : in) {
    if (c != '\r' && c != '\n') clean.push_back(c);
    if (c == ' ' || c == '\t' || c == '\f' || c == '\v' || c == '\r' || c == '\n') any_space = true;
  }

  auto std_decoded = go_std_base64(in);
  if (std_decoded) {
    // Padded standard base64: whole quanta, three bytes each less the padding.
    size_t pads = 0;
    for (size_t i = clean.size(); i > 0 && clean[i - 1] == '='; --i) ++pads;
    if (clean.size() % 4 != 0 || std_decoded->size() != clean.size() / 4 * 3 - pads) {
      __builtin_trap();
    }
    // Without line breaks, common's independent strict decoder agrees.
    if (!any_space) {
      auto strict = sigil::base64_decode(in);
      if (!strict || *strict != *std_decoded) __builtin_trap();
    }
    // go-securesystemslib tries StdEncoding first.
    auto dsse = dsse_base64(in);
    if (!dsse || *dsse != *std_decoded) __builtin_trap();
  } else if (!any_space) {
    if (sigil::base64_decode(in)) __builtin_trap();
  }
  // protojson is StdEncoding when the text has no '-'/'_' and a length that is a multiple of 4.
  auto pj = protojson_base64(in);
  if (in.find_first_of("-_") == std::string_view::npos && in.size() % 4 == 0) {
    if (pj.ok() != std_decoded.ok()) __builtin_trap();
    if (pj && *pj != *std_decoded) __builtin_trap();
  }
  if (pj && pj->size() > in.size()) __builtin_trap();
  return 0;
}
