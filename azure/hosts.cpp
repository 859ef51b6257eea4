// azure/hosts.cpp: whole-host patterns for Azure credentials (see hosts.hpp).
#include "azure/hosts.hpp"

#include <cctype>

#include "common/encoding.hpp"

namespace sigil::azure {
namespace {

bool is_label_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

// One DNS label: [a-z0-9-]+ (lowercase already), as the default ACR rule has it.
bool is_label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s)
    if (!is_label_char(c)) return false;
  return true;
}

bool is_dns_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    const size_t dot = s.find('.', start);
    if (!is_label(s.substr(start, dot == std::string_view::npos ? dot : dot - start))) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool is_ipv6_literal(std::string_view s) {  // inside brackets; loose: hex digits, ':' and '.'
  if (s.empty() || s.find(':') == std::string_view::npos) return false;
  for (char c : s)
    if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) return false;
  return true;
}

bool is_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  return v >= 1 && v <= 65535;
}

}  // namespace

std::string normalize_host(std::string_view host) {
  std::string h = ascii_lower(host);
  std::string_view name = h;
  std::string_view port;
  if (!name.empty() && name.front() == '[') {
    const size_t close = name.find(']');
    if (close == std::string_view::npos) return "";
    if (!is_ipv6_literal(name.substr(1, close - 1))) return "";
    if (close + 1 < name.size()) {
      if (name[close + 1] != ':') return "";
      port = name.substr(close + 2);
      if (!is_port(port)) return "";
    }
    name = name.substr(0, close + 1);
  } else {
    const size_t colon = name.find(':');
    if (colon != std::string_view::npos) {
      port = name.substr(colon + 1);
      if (!is_port(port)) return "";
      name = name.substr(0, colon);
    }
    if (!is_dns_name(name)) return "";  // IPv4 literals are DNS-shaped here: digits and dots
  }
  if (port.empty() || port == "443") return std::string(name);
  return std::string(name) + ":" + std::string(port);
}

HostAllowlist HostAllowlist::default_registries() {
  auto r = parse({"*.azurecr.io", "*.azurecr.cn", "*.azurecr.us", "*.azurecr.de"});
  return std::move(r).value();
}

HostAllowlist HostAllowlist::default_vaults() {
  auto r = parse({"*.vault.azure.net"});
  return std::move(r).value();
}

Result<HostAllowlist> HostAllowlist::parse(const std::vector<std::string>& patterns) {
  HostAllowlist list;
  for (const std::string& raw : patterns) {
    const std::string_view p = trim(raw);
    Pattern c;
    std::string_view name = p;
    if (name.substr(0, 2) == "*.") {
      c.wildcard = true;
      name.remove_prefix(2);
    }
    c.rest = normalize_host(name);
    if (c.rest.empty() || (c.wildcard && c.rest.front() == '[')) {
      return make_error(Errc::invalid_argument,
                        "host pattern \"" + printable(raw, 100) +
                            "\" is not \"*.<domain>\", \"<host>\" or \"<host>:<port>\"");
    }
    list.compiled_.push_back(std::move(c));
    list.patterns_.emplace_back(p);
  }
  return list;
}

bool HostAllowlist::allows(std::string_view host) const {
  const std::string h = normalize_host(host);
  if (h.empty()) return false;
  for (const Pattern& p : compiled_) {
    if (!p.wildcard) {
      if (h == p.rest) return true;
      continue;
    }
    // "<one label>.<rest>": the first dot splits the label off; the remainder must equal rest.
    const size_t dot = h.find('.');
    if (dot == std::string::npos || dot == 0) continue;
    if (h.compare(dot + 1, std::string::npos, p.rest) == 0 &&
        is_label(std::string_view(h).substr(0, dot)))
      return true;
  }
  return false;
}

bool HostAllowlist::names(std::string_view host) const {
  const std::string h = normalize_host(host);
  if (h.empty()) return false;
  for (const Pattern& p : compiled_) {
    if (!p.wildcard && h == p.rest) return true;
  }
  return false;
}

}  // namespace sigil::azure
