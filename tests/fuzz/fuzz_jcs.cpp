// Fuzzes RFC 8785 canonicalization: canonical output must be a fixed point, stay in proportion
// to the input, and every finite double's ECMAScript text must read back as the same double.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "crypto/jcs.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto out = sigil::crypto::canonicalize_json(in);
  if (out) {
    auto again = sigil::crypto::canonicalize_json(*out);
    if (!again || *again != *out) __builtin_trap();
    // The longest growth is a short number spelled out ("1e20" -> 21 digits).
    if (out->size() > size * 6 + 16) __builtin_trap();
  }

  // The first 8 bytes as a double: its text must round-trip exactly (-0 reads back as 0).
  if (size >= 8) {
    double d;
    std::memcpy(&d, data, sizeof d);
    std::string text = sigil::crypto::ecmascript_number(d);
    if (std::isfinite(d)) {
      double back = 0;
      auto r = std::from_chars(text.data(), text.data() + text.size(), back);
      if (r.ec != std::errc() || r.ptr != text.data() + text.size()) __builtin_trap();
      if (back != d) __builtin_trap();  // == treats -0 and 0 alike
      auto canon = sigil::crypto::canonicalize_json(text);
      if (!canon || *canon != text) __builtin_trap();
    } else if (!text.empty()) {
      __builtin_trap();
    }
  }
  return 0;
}
