// Fuzzes net's URL parsing, which every redirect (a registry's Location header) and every bearer
// realm (a registry's WWW-Authenticate) goes through, both chosen by whoever runs the registry a
// pod names: parse_url, resolve_location against a registry URL, split_host_port.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "net/url.hpp"

namespace {

bool printable(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return false;  // nothing that could split a request line
  }
  return true;
}

bool valid_port(std::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  unsigned v = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  return v >= 1 && v <= 65535;
}

// What a parsed URL promises: http(s), a host, a port in range, a target that starts with '/',
// nothing a request line could be split by, and the same URL when its text is parsed again.
void check(const sigil::net::Url& u) {
  if (u.scheme != "https" && u.scheme != "http") __builtin_trap();
  if (u.host.empty() || !printable(u.host)) __builtin_trap();
  if (!valid_port(u.port)) __builtin_trap();
  if (u.target.empty() || u.target.front() != '/' || !printable(u.target)) __builtin_trap();
  auto again = sigil::net::parse_url(u.str());
  if (!again.ok() || again->str() != u.str() || !again->same_origin(u)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto u = sigil::net::parse_url(in); u.ok()) check(*u);
  static const sigil::net::Url base =
      *sigil::net::parse_url("https://registry.example:5000/v2/team/app/blobs/sha256:00");
  if (auto r = sigil::net::resolve_location(base, in); r.ok()) check(*r);
  if (auto hp = sigil::net::split_host_port(in, "443"); hp.ok()) {
    if (hp->first.empty() || !printable(hp->first) || !valid_port(hp->second)) __builtin_trap();
    for (char c : hp->first) {
      if (c >= 'A' && c <= 'Z') __builtin_trap();  // lowercased
    }
  }
  (void)sigil::net::is_ip_literal(in);
  return 0;
}
