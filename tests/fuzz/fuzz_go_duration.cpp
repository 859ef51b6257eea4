// Fuzz target: the `?timeout=` value the API server appends (Go duration syntax).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/duration.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto d = sigil::server::parse_go_duration(text);
  if (d.ok() && d->count() < 0) __builtin_trap();  // only non-negative durations are accepted
  return 0;
}
