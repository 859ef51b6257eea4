// net/url.hpp: absolute http(s) URLs, origins, and the encodings requests are built with.
//
// Role: the one URL type of sigil's outbound HTTP. An origin (scheme, host, port) is what
// connections are pooled by and what credentials are bound to: an Authorization header is sent
// only to the origin it was given for (net/client.hpp). Pure: no I/O; Boost.URL in the .cpp.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"

namespace sigil::net {

// An absolute http/https URL split into what a request needs.
struct Url {
  std::string scheme;  // "https" or "http"
  std::string host;    // lowercased; IPv6 without brackets
  std::string port;    // always set ("443" / "80" defaults)
  std::string target;  // path + "?" + query, at least "/"

  // "host:port", brackets around IPv6: the pool key's and the messages' name for a peer.
  std::string authority() const;
  // "scheme://host:port": where credentials belong and what connections are pooled by.
  std::string origin() const;
  // origin() + target.
  std::string str() const;
  bool same_origin(const Url& other) const {
    return scheme == other.scheme && host == other.host && port == other.port;
  }
  bool is_default_port() const {
    return (scheme == "https" && port == "443") || (scheme == "http" && port == "80");
  }
};

// Parses an absolute http/https URL; rejects user info, fragments, other schemes, control
// characters, hosts outside the host-name / IP-literal alphabet and ports outside 1..65535.
Result<Url> parse_url(std::string_view text);

// Resolves a Location header (absolute or relative, RFC 3986) against base.
Result<Url> resolve_location(const Url& base, std::string_view location);

// Splits "host[:port]" (a registry name, "[::1]:5000") into a lowercased host and a port;
// default_port when absent. Rejects anything outside a host name / IP literal.
Result<std::pair<std::string, std::string>> split_host_port(std::string_view authority,
                                                            std::string_view default_port);

// True for an IPv4 or IPv6 literal (without brackets): such peers get an IP-SAN check and no
// SNI (RFC 6066 forbids IP literals in SNI).
bool is_ip_literal(std::string_view host);

// RFC 3986 percent-encoding of everything but the unreserved characters (A-Z a-z 0-9 -._~).
std::string pct_encode(std::string_view text);

// application/x-www-form-urlencoded: "k1=v1&k2=v2", each name and value percent-encoded.
std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields);

}  // namespace sigil::net
