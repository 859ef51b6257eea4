// azure/tokens.cpp: Azure token wire formats (see tokens.hpp).
#include "azure/tokens.hpp"

#include <charconv>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "common/encoding.hpp"

namespace sigil::azure {
namespace {

using nlohmann::json;

std::optional<json> parse_object(std::string_view body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

std::optional<json> jwt_payload(std::string_view jwt) {
  const size_t a = jwt.find('.');
  if (a == std::string_view::npos) return std::nullopt;
  const size_t b = jwt.find('.', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  auto raw = base64url_decode(jwt.substr(a + 1, b - a - 1));
  if (!raw) return std::nullopt;
  return parse_object(*raw);
}

// The latest expiry sigil takes from a token answer (2100-01-01T00:00:00Z) and the longest
// lifetime (ten years): far past any real token, and well inside what SysTime holds
// (nanoseconds: until 2262), so that arithmetic on an expiry (the refresh schedule) cannot
// overflow. A value past them is an error, not a token that never expires.
constexpr int64_t kMaxUnixSeconds = 4'102'444'800;
constexpr int64_t kMaxLifetimeSeconds = 10LL * 366 * 24 * 3600;

// A JSON number or a string of decimal digits, as IMDS sends them. A fraction is cut; a number
// past int64 is the nearest int64 (never converted out of range).
std::optional<int64_t> number_or_string(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_number_unsigned()) {
    const auto u = it->get<uint64_t>();
    return u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (!(d < 9.2e18)) return INT64_MAX;
    if (!(d > -9.2e18)) return INT64_MIN;
    return static_cast<int64_t>(d);
  }
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && p == s.data() + s.size() && !s.empty()) return v;
  }
  return std::nullopt;
}

SysTime from_unix(int64_t secs) {
  return SysTime(std::chrono::duration_cast<SysTime::duration>(std::chrono::seconds(secs)));
}

std::string string_member(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

}  // namespace

Result<std::string> base64url_decode(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return make_error(Errc::parse_error, "bad base64url length");
  std::string std_text;
  std_text.reserve(text.size() + 3);
  for (char c : text) {
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (plain) {
      std_text += c;
    } else if (c == '-') {
      std_text += '+';
    } else if (c == '_') {
      std_text += '/';
    } else {
      return make_error(Errc::parse_error, "not base64url");
    }
  }
  while (std_text.size() % 4 != 0) std_text += '=';
  return base64_decode(std_text);
}

std::string resource_of_scope(std::string_view scope) {
  constexpr std::string_view suffix = "/.default";
  if (scope.size() >= suffix.size() && scope.substr(scope.size() - suffix.size()) == suffix)
    scope.remove_suffix(suffix.size());
  return std::string(scope);
}

Result<SysTime> jwt_expiry(std::string_view jwt) {
  auto p = jwt_payload(jwt);
  if (!p) return make_error(Errc::parse_error, "token is not a JWT");
  auto exp = number_or_string(*p, "exp");
  if (!exp || *exp <= 0) return make_error(Errc::parse_error, "JWT has no numeric exp claim");
  if (*exp > kMaxUnixSeconds)
    return make_error(Errc::parse_error, "JWT exp claim " + std::to_string(*exp) + " is past 2100");
  return from_unix(*exp);
}

std::string jwt_tenant(std::string_view jwt) {
  auto p = jwt_payload(jwt);
  if (!p) return "";
  return string_member(*p, "tid");
}

Result<AadToken> parse_aad_token_response(std::string_view body, SysTime now) {
  auto j = parse_object(body);
  if (!j) return make_error(Errc::parse_error, "token answer is not a JSON object");
  AadToken t;
  t.access_token = string_member(*j, "access_token");
  if (t.access_token.empty())
    return make_error(Errc::parse_error, "token answer has no access_token");
  if (auto on = number_or_string(*j, "expires_on"); on && *on > 0) {
    if (*on > kMaxUnixSeconds)
      return make_error(Errc::parse_error,
                        "token answer's expires_on " + std::to_string(*on) + " is past 2100");
    t.expires_at = from_unix(*on);
  } else if (auto in = number_or_string(*j, "expires_in"); in && *in > 0) {
    if (*in > kMaxLifetimeSeconds)
      return make_error(Errc::parse_error, "token answer's expires_in " + std::to_string(*in) +
                                               " is longer than ten years");
    t.expires_at = now + std::chrono::seconds(*in);
  } else if (auto exp = jwt_expiry(t.access_token)) {
    t.expires_at = *exp;
  } else {
    return make_error(Errc::parse_error, "token answer has no expires_on, expires_in or exp");
  }
  t.tenant = jwt_tenant(t.access_token);
  t.fetched_at = now;
  return t;
}

std::string aad_error_message(std::string_view body) {
  auto j = parse_object(body);
  if (!j) return "";
  std::string e = string_member(*j, "error");
  if (e.empty()) {  // Key Vault: {"error": {"code", "message"}}
    auto it = j->find("error");
    if (it != j->end() && it->is_object()) {
      e = string_member(*it, "code");
      const std::string m = string_member(*it, "message");
      if (!m.empty()) e += ": " + m;
    }
    return printable(e, 200);
  }
  const std::string d = string_member(*j, "error_description");
  return printable(d.empty() ? e : e + ": " + d, 200);
}

std::string key_vault_inner_error(std::string_view body) {
  auto j = parse_object(body);
  if (!j) return "";
  auto it = j->find("error");
  if (it == j->end() || !it->is_object()) return "";
  const json* e = &*it;
  std::string code;
  for (int depth = 0; depth < 8; ++depth) {
    auto inner = e->find("innererror");
    if (inner == e->end()) inner = e->find("innerError");
    if (inner == e->end() || !inner->is_object()) break;
    e = &*inner;
    code = string_member(*e, "code");
  }
  return printable(code, 100);
}

std::string acr_error_message(std::string_view body) {
  auto j = parse_object(body);
  if (!j) return "";
  auto it = j->find("errors");
  if (it == j->end() || !it->is_array() || it->empty() || !(*it)[0].is_object()) return "";
  const json& e = (*it)[0];
  const std::string code = string_member(e, "code");
  const std::string msg = string_member(e, "message");
  return printable(msg.empty() ? code : code + ": " + msg, 200);
}

std::vector<std::pair<std::string, std::string>> workload_identity_form(std::string_view client_id,
                                                                        std::string_view assertion,
                                                                        std::string_view scope) {
  return {{"client_id", std::string(client_id)},
          {"grant_type", "client_credentials"},
          {"client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
          {"client_assertion", std::string(assertion)},
          {"scope", std::string(scope)}};
}

std::vector<std::pair<std::string, std::string>> acr_exchange_form(std::string_view service,
                                                                   std::string_view tenant,
                                                                   std::string_view aad_token) {
  std::vector<std::pair<std::string, std::string>> f{{"grant_type", "access_token"},
                                                     {"service", std::string(service)}};
  if (!tenant.empty()) f.emplace_back("tenant", std::string(tenant));
  f.emplace_back("access_token", std::string(aad_token));
  return f;
}

std::vector<std::pair<std::string, std::string>> acr_token_form(std::string_view service,
                                                                std::string_view scope,
                                                                std::string_view refresh_token) {
  return {{"grant_type", "refresh_token"},
          {"service", std::string(service)},
          {"scope", std::string(scope)},
          {"refresh_token", std::string(refresh_token)}};
}

Result<std::string> parse_acr_refresh_token(std::string_view body) {
  auto j = parse_object(body);
  if (!j) return make_error(Errc::parse_error, "exchange answer is not a JSON object");
  std::string t = string_member(*j, "refresh_token");
  if (t.empty()) return make_error(Errc::parse_error, "exchange answer has no refresh_token");
  return t;
}

Result<std::string> parse_acr_access_token(std::string_view body) {
  auto j = parse_object(body);
  if (!j) return make_error(Errc::parse_error, "token answer is not a JSON object");
  std::string t = string_member(*j, "access_token");
  if (t.empty()) t = string_member(*j, "token");
  if (t.empty()) return make_error(Errc::parse_error, "token answer has no access_token");
  return t;
}

std::string acr_pull_scope(std::string_view repository) {
  return "repository:" + std::string(repository) + ":pull";
}

}  // namespace sigil::azure
