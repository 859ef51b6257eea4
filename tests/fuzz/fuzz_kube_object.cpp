// Fuzzes the object wire format: kube::parse_object, parse_object_list, parse_status,
// parse_secret and parse_service_account on the same bytes, checking what success promises.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kube/object.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto o = sigil::kube::parse_object(in);
  if (o.ok()) {
    if (o->meta.name.empty()) __builtin_trap();
    if (o->meta.key().find('/') != std::string::npos && o->meta.namespace_.empty())
      __builtin_trap();
    // The kept JSON text parses again to the same metadata.
    auto again = sigil::kube::parse_object(o->json);
    if (!again.ok() || again->meta.key() != o->meta.key() ||
        again->meta.resource_version != o->meta.resource_version ||
        again->meta.generation != o->meta.generation) {
      __builtin_trap();
    }
  }
  (void)sigil::kube::parse_object(in, /*allow_nameless=*/true);
  auto l = sigil::kube::parse_object_list(in);
  if (l.ok()) {
    for (const auto& item : l->items) {
      if (item.meta.name.empty()) __builtin_trap();
    }
  }
  auto s = sigil::kube::parse_status(in);
  if (s.ok()) {
    if (s->code < 0 || s->code >= 1000) __builtin_trap();
    for (char c : s->describe()) {
      if (static_cast<unsigned char>(c) < 0x20) __builtin_trap();  // sanitized for logs
    }
  }
  (void)sigil::kube::parse_secret(in);
  (void)sigil::kube::parse_service_account(in);
  return 0;
}
