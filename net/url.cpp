#include "net/url.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include "common/encoding.hpp"

namespace sigil::net {

namespace {

bool unreserved(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool host_ok(std::string_view host) noexcept {
  if (host.empty() || host.size() > 253) return false;
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':';
    if (!ok) return false;
  }
  return true;
}

bool port_ok(std::string_view port) noexcept {
  if (port.empty() || port.size() > 5) return false;
  unsigned v = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  return v >= 1 && v <= 65535;
}

Result<Url> from_view(const boost::urls::url_view_base& u) {
  std::string scheme = ascii_lower(std::string_view(u.scheme().data(), u.scheme().size()));
  if (scheme != "https" && scheme != "http") {
    return make_error(Errc::invalid_argument, "URL scheme must be http or https");
  }
  if (!u.has_authority() || u.has_userinfo()) {
    return make_error(Errc::invalid_argument, "URL must have a host and no user info");
  }
  Url out;
  out.scheme = scheme;
  auto ht = u.host_type();
  if (ht == boost::urls::host_type::ipv6) {
    out.host = ascii_lower(std::string(u.encoded_host_address()));
  } else if (ht == boost::urls::host_type::ipv4 || ht == boost::urls::host_type::name) {
    out.host = ascii_lower(std::string(u.encoded_host()));
  } else {
    return make_error(Errc::invalid_argument, "URL host is not supported");
  }
  if (!host_ok(out.host)) return make_error(Errc::invalid_argument, "URL host is invalid");
  if (u.has_port()) {
    out.port = std::string(u.port());
    if (!port_ok(out.port)) return make_error(Errc::invalid_argument, "URL port is invalid");
  } else {
    out.port = scheme == "https" ? "443" : "80";
  }
  out.target = std::string(u.encoded_target());
  if (out.target.empty()) out.target = "/";
  if (out.target.front() != '/') out.target.insert(out.target.begin(), '/');
  for (char c : out.target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return make_error(Errc::invalid_argument, "URL has control characters");
    }
  }
  return out;
}

}  // namespace

std::string Url::authority() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + port;
}

std::string Url::origin() const {
  return scheme + "://" + authority();
}

std::string Url::str() const {
  return origin() + target;
}

Result<Url> parse_url(std::string_view text) {
  auto u = boost::urls::parse_absolute_uri(boost::urls::string_view(text.data(), text.size()));
  if (!u) return make_error(Errc::invalid_argument, "not an absolute URL");
  return from_view(*u);
}

Result<Url> resolve_location(const Url& base, std::string_view location) {
  auto ref =
      boost::urls::parse_uri_reference(boost::urls::string_view(location.data(), location.size()));
  if (!ref) return make_error(Errc::invalid_argument, "redirect Location is not a URL");
  const std::string base_text = base.str();
  auto b = boost::urls::parse_absolute_uri(base_text);  // a view into base_text
  if (!b) return make_error(Errc::internal, "cannot rebuild base URL");
  boost::urls::url dest;
  auto r = boost::urls::resolve(*b, *ref, dest);
  if (!r) return make_error(Errc::invalid_argument, "redirect Location cannot be resolved");
  dest.remove_fragment();
  return from_view(dest);
}

Result<std::pair<std::string, std::string>> split_host_port(std::string_view authority,
                                                            std::string_view default_port) {
  std::string host;
  std::string port(default_port);
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      return make_error(Errc::invalid_argument, "host has an unterminated IPv6 literal");
    }
    host = std::string(authority.substr(1, close - 1));
    auto rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return make_error(Errc::invalid_argument, "bad host[:port]");
      port = std::string(rest.substr(1));
    }
  } else {
    auto colon = authority.find(':');
    host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = std::string(authority.substr(colon + 1));
    if (host.find(':') != std::string::npos) {
      return make_error(Errc::invalid_argument, "bad host[:port]");
    }
  }
  host = ascii_lower(host);
  if (!host_ok(host) || !port_ok(port)) {
    return make_error(Errc::invalid_argument, "not a valid host[:port]");
  }
  return std::pair{host, port};
}

bool is_ip_literal(std::string_view host) {
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(std::string(host), ec);
  return !ec;
}

std::string pct_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (unreserved(static_cast<char>(c))) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [name, value] : fields) {
    if (!out.empty()) out += '&';
    out += pct_encode(name);
    out += '=';
    out += pct_encode(value);
  }
  return out;
}

}  // namespace sigil::net
