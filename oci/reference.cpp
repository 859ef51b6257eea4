// oci/reference.cpp: distribution/reference grammar and normalization, hand-written.
//
// Grammar (distribution/reference regexp.go, normalize.go):
//   reference      := name [ ":" tag ] [ "@" digest ]
//   name           := [ domain "/" ] path-component ( "/" path-component )*
//   domain         := host [ ":" port ]          host := domain-name | "[" ipv6 "]"
//   domain-name    := domain-component ( "." domain-component )*
//   domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//   path-component := [a-z0-9]+ ( ( [._] | "__" | "-"+ ) [a-z0-9]+ )*
//   tag            := [\w][\w.-]{0,127}
// Deviations, all on the safe side: the registry host is lowercased (when it stays a domain) (DNS
// is case-insensitive, and policy globs must not be dodged by `MYACR.azurecr.io`), a port must be
// <= 65535, and only sha256/sha512 digests are accepted (is_valid_digest).
//
// Beyond normalize.go, one registry has one spelling, so that a stricter per-registry policy glob
// cannot be dodged beside a `**` baseline by another spelling of the same origin:
//   - the port is written without leading zeros, and the HTTPS default port is dropped
//     (`myacr.azurecr.io:443` and `:0443` -> `myacr.azurecr.io`, the same https origin), unless
//     the host would then stop being a domain (`foo:443/x` stays: `foo/x` is docker.io/foo/x);
//   - `registry-1.docker.io` (Docker Hub's API host) and `registry.hub.docker.com` name Docker
//     Hub like `index.docker.io` does: all three become `docker.io` (with `library/` for
//     single-component names, as normalize.go does for `index.docker.io`).
// The normalized registry is also what the registry client contacts (oci::api_host), so the
// verdict is always about the origin the kubelet pulls from.
#include "oci/reference.hpp"

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sigil::oci {
namespace {

constexpr std::size_t kNameTotalLengthMax = 255;
constexpr std::size_t kTagLengthMax = 128;
// Longer than any valid reference (255 name + 129 tag + 1 + 7 + 128 digest) with room to spare;
// anything longer is refused before it is walked.
constexpr std::size_t kInputLengthMax = 1024;
constexpr std::size_t kQuoteMax = 96;

constexpr std::string_view kDefaultDomain = "docker.io";
// Other names of Docker Hub: normalize.go's legacy default, the API host, the old web host.
constexpr std::string_view kHubAliases[] = {"index.docker.io", "registry-1.docker.io",
                                            "registry.hub.docker.com"};
constexpr std::string_view kHttpsDefaultPort = "443";
constexpr std::string_view kOfficialRepoPrefix = "library/";
constexpr std::string_view kDefaultTag = "latest";

bool is_lower_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool is_upper(char c) noexcept {
  return c >= 'A' && c <= 'Z';
}
bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) noexcept {
  return is_lower_alnum(c) || is_upper(c);
}
bool is_word(char c) noexcept {
  return is_alnum(c) || c == '_';
}
bool is_hex_digit(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_lower_hex_digit(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f');
}

// The input, quoted for an error message: control and non-ASCII bytes escaped, long input
// truncated so a hostile pod spec cannot blow up a log line.
std::string quote(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  std::size_t n = 0;
  for (char ch : text) {
    if (n++ == kQuoteMax) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
  out += '"';
  if (text.size() > kQuoteMax) out += " (" + std::to_string(text.size()) + " bytes)";
  return out;
}

Error fail(std::string_view text, std::string_view why) {
  return make_error(Errc::parse_error,
                    "invalid image reference " + quote(text) + ": " + std::string(why));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (is_upper(c)) c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool valid_path_component(std::string_view s) noexcept {
  // [a-z0-9]+ ( ( [._] | "__" | "-"+ ) [a-z0-9]+ )*
  std::size_t i = 0;
  const std::size_t n = s.size();
  if (n == 0 || !is_lower_alnum(s[0])) return false;
  while (i < n) {
    while (i < n && is_lower_alnum(s[i])) ++i;
    if (i == n) return true;
    // separator
    if (s[i] == '.') {
      ++i;
    } else if (s[i] == '_') {
      ++i;
      if (i < n && s[i] == '_') ++i;
    } else if (s[i] == '-') {
      while (i < n && s[i] == '-') ++i;
    } else {
      return false;
    }
    if (i == n || !is_lower_alnum(s[i])) return false;
  }
  return true;
}

bool valid_domain_component(std::string_view s) noexcept {
  if (s.empty() || !is_alnum(s.front()) || !is_alnum(s.back())) return false;
  for (char c : s) {
    if (!is_alnum(c) && c != '-') return false;
  }
  return true;
}

bool valid_port(std::string_view s) noexcept {
  if (s.empty() || s.size() > 5) return false;
  unsigned value = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

// host [":" port], host = domain-name | "[" ipv6 "]". Returns an empty string when valid,
// else the reason.
std::string check_domain(std::string_view d) {
  std::string_view host = d;
  std::string_view port;
  bool has_port = false;
  if (!d.empty() && d.front() == '[') {
    const auto close = d.find(']');
    if (close == std::string_view::npos) return "unterminated IPv6 address in registry";
    host = d.substr(0, close + 1);
    const std::string_view inner = d.substr(1, close - 1);
    if (inner.empty()) return "empty IPv6 address in registry";
    for (char c : inner) {
      if (!is_hex_digit(c) && c != ':') return "invalid IPv6 address in registry";
    }
    const std::string_view rest = d.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return "invalid character after IPv6 address in registry";
      has_port = true;
      port = rest.substr(1);
    }
  } else {
    const auto colon = d.find(':');
    if (colon != std::string_view::npos) {
      host = d.substr(0, colon);
      port = d.substr(colon + 1);
      has_port = true;
    }
    if (host.empty()) return "empty registry host";
    std::size_t start = 0;
    while (true) {
      const auto dot = host.find('.', start);
      const auto comp = host.substr(start, dot == std::string_view::npos ? dot : dot - start);
      if (!valid_domain_component(comp)) return "invalid registry host";
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
  }
  if (has_port && !valid_port(port)) return "registry port must be a number from 0 to 65535";
  return {};
}

// Whether a registry spelling is read back as a registry: it has a '.' or ':', is localhost, or
// is an IPv6 literal. (An uppercase-only host like "Foo" is kept as written by the caller.)
bool reads_as_domain(std::string_view r) noexcept {
  return r.find_first_of(".:") != std::string_view::npos || r == "localhost" ||
         (!r.empty() && r.front() == '[');
}

}  // namespace

std::string canonical_registry(std::string registry) {
  const auto close = registry.rfind(']');
  const auto colon = registry.rfind(':');
  if (colon != std::string::npos && (close == std::string::npos || colon > close)) {
    std::string_view port = std::string_view(registry).substr(colon + 1);
    while (port.size() > 1 && port.front() == '0') port.remove_prefix(1);
    std::string host = registry.substr(0, colon);
    if (port == kHttpsDefaultPort && reads_as_domain(host)) {
      registry = std::move(host);
    } else {
      registry = host + ":" + std::string(port);
    }
  }
  for (const auto alias : kHubAliases) {
    if (registry == alias) return std::string(kDefaultDomain);
  }
  return registry;
}

namespace {

bool valid_tag(std::string_view t) noexcept {
  if (t.empty() || t.size() > kTagLengthMax || !is_word(t[0])) return false;
  for (char c : t) {
    if (!is_word(c) && c != '.' && c != '-') return false;
  }
  return true;
}

}  // namespace

std::string Reference::name() const {
  return registry + "/" + repository;
}

std::string Reference::str() const {
  std::string out = name();
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

std::string Reference::pinned() const {
  if (!digest.empty()) return name() + "@" + digest;
  return name() + ":" + tag;
}

bool is_valid_digest(std::string_view digest) noexcept {
  std::size_t hex_len = 0;
  std::string_view hex;
  if (digest.starts_with("sha256:")) {
    hex_len = 64;
    hex = digest.substr(7);
  } else if (digest.starts_with("sha512:")) {
    hex_len = 128;
    hex = digest.substr(7);
  } else {
    return false;
  }
  if (hex.size() != hex_len) return false;
  for (char c : hex) {
    if (!is_lower_hex_digit(c)) return false;
  }
  return true;
}

Result<Reference> parse_reference(std::string_view text) {
  if (text.empty()) return fail(text, "empty reference");
  if (text.size() > kInputLengthMax) return fail(text, "reference too long");
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) return fail(text, "contains whitespace or a control character");
    if (c > 0x7f) return fail(text, "contains a non-ASCII character");
  }
  // A bare 64-hex string is an image ID, not a name (distribution's anchoredIdentifier check).
  if (text.size() == 64 && std::all_of(text.begin(), text.end(), is_lower_hex_digit)) {
    return fail(text, "a 64-character hexadecimal string is an image ID, not a repository name");
  }

  Reference ref;
  std::string_view rest = text;

  if (const auto at = rest.find('@'); at != std::string_view::npos) {
    const std::string_view digest = rest.substr(at + 1);
    if (digest.empty()) return fail(text, "'@' must be followed by a digest");
    if (!is_valid_digest(digest)) {
      const auto colon = digest.find(':');
      const auto alg = digest.substr(0, colon);
      if (colon != std::string_view::npos && alg != "sha256" && alg != "sha512" && !alg.empty()) {
        return make_error(Errc::unsupported, "invalid image reference " + quote(text) +
                                                 ": digest algorithm \"" +
                                                 std::string(alg.substr(0, 16)) +
                                                 "\" is not supported (use sha256 or sha512)");
      }
      return fail(text,
                  "invalid digest (want sha256:<64 lowercase hex> or sha512:<128 lowercase hex>)");
    }
    ref.digest = std::string(digest);
    rest = rest.substr(0, at);
  }

  // The tag separator is a ':' after the last '/' (a ':' before it belongs to a registry port).
  const auto last_slash = rest.rfind('/');
  const auto tag_search_from = last_slash == std::string_view::npos ? 0 : last_slash + 1;
  if (const auto colon = rest.find(':', tag_search_from); colon != std::string_view::npos) {
    const std::string_view tag = rest.substr(colon + 1);
    if (tag.empty()) return fail(text, "':' must be followed by a tag");
    if (!valid_tag(tag)) {
      return fail(text, "invalid tag (want [A-Za-z0-9_][A-Za-z0-9_.-]{0,127})");
    }
    ref.tag = std::string(tag);
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return fail(text, "missing repository name");

  // Domain detection: the first component is a registry iff there is a '/' after it and it
  // contains '.' or ':', is "localhost", or has an uppercase letter.
  std::string_view domain;
  std::string_view remainder = rest;
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    const std::string_view first = rest.substr(0, slash);
    const bool is_domain = first.find_first_of(".:") != std::string_view::npos ||
                           first == "localhost" ||
                           std::any_of(first.begin(), first.end(), is_upper) ||
                           (!first.empty() && first.front() == '[');
    if (is_domain) {
      domain = first;
      remainder = rest.substr(slash + 1);
    }
  }
  if (domain.empty()) {
    ref.registry = std::string(kDefaultDomain);
  } else {
    if (auto why = check_domain(domain); !why.empty()) return fail(text, why);
    // Lowercase the host unless that would make it stop being a domain: `Foo/bar` is registry
    // "Foo" only because of its uppercase, and "foo/bar" would mean docker.io/foo/bar.
    ref.registry = lower(domain);
    if (!reads_as_domain(ref.registry)) {
      ref.registry = std::string(domain);
    } else {
      ref.registry = canonical_registry(std::move(ref.registry));
    }
  }
  if (remainder.empty()) return fail(text, "missing repository name");
  if (std::any_of(remainder.begin(), remainder.end(), is_upper)) {
    return fail(text, "repository name must be lowercase");
  }

  std::size_t start = 0;
  while (true) {
    const auto slash = remainder.find('/', start);
    const auto comp =
        remainder.substr(start, slash == std::string_view::npos ? slash : slash - start);
    if (comp.empty()) return fail(text, "empty path component in repository name");
    if (!valid_path_component(comp)) {
      return fail(text, "invalid repository path component \"" + std::string(comp.substr(0, 64)) +
                            "\" (want lowercase letters and digits separated by '.', '_', '__' or "
                            "'-')");
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }

  ref.repository = std::string(remainder);
  if (ref.registry == kDefaultDomain && remainder.find('/') == std::string_view::npos) {
    ref.repository = std::string(kOfficialRepoPrefix) + ref.repository;
  }
  if (ref.registry.size() + 1 + ref.repository.size() > kNameTotalLengthMax) {
    return fail(text, "repository name must not be longer than 255 characters");
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = std::string(kDefaultTag);
  return ref;
}

std::string api_host(std::string_view registry) {
  if (registry == kDefaultDomain) return "registry-1.docker.io";
  return std::string(registry);
}

std::string signature_tag(std::string_view digest) {
  std::string out(digest);
  if (const auto colon = out.find(':'); colon != std::string::npos) out[colon] = '-';
  return out + ".sig";
}

std::string referrers_tag(std::string_view digest) {
  // distribution-spec "Referrers Tag Schema": <alg>-<ref>, alg cut to 32 characters and ref to
  // 64, every character a tag may not hold replaced by '-'.
  const auto colon = digest.find(':');
  std::string alg(digest.substr(0, std::min<size_t>(colon, 32)));
  std::string ref(colon == std::string_view::npos ? "" : digest.substr(colon + 1, 64));
  std::string out = alg + "-" + ref;
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) c = '-';
  }
  return out;
}

}  // namespace sigil::oci
