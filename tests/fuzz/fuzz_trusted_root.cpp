// Fuzzes trusted_root.json parsing and checks the invariants callers rely on.
#include <cstdint>
#include <string_view>

#include "crypto/trust_root.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sigil::crypto;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto root = parse_trusted_root(in, "fuzz");
  if (!root) {
    if (root.error().message.empty()) __builtin_trap();
    return 0;
  }
  if (root->name != "fuzz") __builtin_trap();
  for (const auto& w : root->warnings) {
    if (w.find("skipped") == std::string_view::npos) __builtin_trap();
  }
  for (const auto* logs : {&root->tlogs, &root->ctlogs}) {
    for (const auto& log : *logs) {
      // Every log has an id, a usable key, and is found by its id.
      if (log.log_id.empty() || log.key.spki_der().empty()) __builtin_trap();
      if (key_log_id(log.key).size() != 32) __builtin_trap();
      const TransparencyLog* found = find_log(*logs, log.log_id);
      if (found == nullptr || found->log_id != log.log_id) __builtin_trap();
      // Every entry states since when it is valid (issue 13: no start is malformed).
      if (!log.valid_for.start) __builtin_trap();
      if (log.valid_for.end && *log.valid_for.end < *log.valid_for.start) __builtin_trap();
    }
  }
  for (const auto* cas : {&root->certificate_authorities, &root->timestamp_authorities}) {
    for (const auto& ca : *cas) {
      if (ca.chain.empty() || ca.chain.size() > 16) __builtin_trap();
      if (!ca.valid_for.start) __builtin_trap();
      for (const auto& c : ca.chain) {
        auto again = Certificate::from_der(c.der());
        if (!again || again->der() != c.der()) __builtin_trap();
      }
    }
  }
  return 0;
}
