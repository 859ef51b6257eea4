#include "registry/auth.hpp"

#include <nlohmann/json.hpp>

#include "common/encoding.hpp"

namespace sigil::registry {

using net::parse_url;
using net::pct_encode;

namespace {

bool repo_ok(std::string_view r) noexcept {
  if (r.empty() || r.size() > 255 || r.front() == '/' || r.back() == '/') return false;
  char prev = '/';
  for (char c : r) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-' || c == '/';
    if (!ok) return false;
    if (c == '/' && prev == '/') return false;
    if (c == '.' && prev == '/') return false;  // no "." or ".." segments
    prev = c;
  }
  return true;
}

bool tag_ok(std::string_view t) noexcept {
  if (t.empty() || t.size() > 128 || t.front() == '.' || t.front() == '-') return false;
  for (char c : t) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool digest_ok(std::string_view d) noexcept {
  auto colon = d.find(':');
  if (colon == std::string_view::npos || colon == 0 || d.size() - colon - 1 < 32 ||
      d.size() > 200) {
    return false;
  }
  for (size_t i = 0; i < colon; ++i) {
    char c = d[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '.' || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return is_lower_hex(d.substr(colon + 1));
}

Result<TokenResponse> parse_token_impl(std::string_view body) {
  auto doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return make_error(Errc::parse_error, "token response is not a JSON object");
  }
  TokenResponse out;
  for (const char* name : {"token", "access_token"}) {
    auto it = doc.find(name);
    if (it != doc.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
      out.token = it->get<std::string>();
      break;
    }
  }
  if (out.token.empty()) return make_error(Errc::parse_error, "token response has no token");
  if (out.token.size() > kMaxTokenBytes) {
    return make_error(Errc::parse_error,
                      "token response token is " + std::to_string(out.token.size()) +
                          " bytes, over the limit of " + std::to_string(kMaxTokenBytes));
  }
  for (char c : out.token) {
    // The token goes into an HTTP header: refuse anything that could split it.
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      return make_error(Errc::parse_error, "token response token has invalid characters");
    }
  }
  auto exp = doc.find("expires_in");
  if (exp != doc.end() && exp->is_number_integer()) {
    auto v = exp->get<int64_t>();
    if (v > 0) out.expires_in = std::chrono::seconds(std::min<int64_t>(v, 24 * 3600));
  }
  return out;
}

}  // namespace

Result<std::string> manifest_path(std::string_view repository, std::string_view reference) {
  if (!repo_ok(repository)) return make_error(Errc::invalid_argument, "invalid repository name");
  if (!tag_ok(reference) && !digest_ok(reference)) {
    return make_error(Errc::invalid_argument, "invalid tag or digest");
  }
  return "/v2/" + std::string(repository) + "/manifests/" + std::string(reference);
}

Result<std::string> blob_path(std::string_view repository, std::string_view digest) {
  if (!repo_ok(repository)) return make_error(Errc::invalid_argument, "invalid repository name");
  if (!digest_ok(digest)) return make_error(Errc::invalid_argument, "invalid digest");
  return "/v2/" + std::string(repository) + "/blobs/" + std::string(digest);
}

Result<std::string> referrers_path(std::string_view repository, std::string_view digest,
                                   std::string_view artifact_type) {
  if (!repo_ok(repository)) return make_error(Errc::invalid_argument, "invalid repository name");
  if (!digest_ok(digest)) return make_error(Errc::invalid_argument, "invalid digest");
  std::string p = "/v2/" + std::string(repository) + "/referrers/" + std::string(digest);
  if (!artifact_type.empty()) p += "?artifactType=" + pct_encode(artifact_type);
  return p;
}

std::string link_next_target(std::string_view link, std::string_view within) {
  // Link: <target>; rel="next"[, <other>; rel="prev"]
  size_t pos = 0;
  while (pos < link.size()) {
    size_t lt = link.find('<', pos);
    if (lt == std::string_view::npos) return "";
    size_t gt = link.find('>', lt);
    if (gt == std::string_view::npos) return "";
    std::string_view target = link.substr(lt + 1, gt - lt - 1);
    size_t end = link.find(',', gt);
    std::string_view params =
        link.substr(gt + 1, end == std::string_view::npos ? end : end - gt - 1);
    std::string lowered = ascii_lower(params);
    bool next = lowered.find("rel=\"next\"") != std::string::npos ||
                lowered.find("rel=next") != std::string::npos;
    if (next) {
      // Same origin only, and nothing that could leave the /v2/ API or smuggle bytes.
      if (target.empty() || target.front() != '/' || target.rfind("/v2/", 0) != 0) return "";
      for (char c : target) {
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '#' || c == '\\') return "";
      }
      // The same list: `within` exactly, then nothing or a query.
      if (target.substr(0, within.size()) != within) return "";
      if (target.size() > within.size() && target[within.size()] != '?') return "";
      return std::string(target);
    }
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  return "";
}

Result<net::Url> token_url(std::string_view realm, std::string_view service,
                           std::string_view scope) {
  auto u = parse_url(realm);
  if (!u) return make_error(Errc::parse_error, "bearer realm is not an http(s) URL");
  std::string q;
  if (!service.empty()) q += "service=" + pct_encode(service);
  if (!scope.empty()) q += (q.empty() ? "" : "&") + std::string("scope=") + pct_encode(scope);
  if (!q.empty()) {
    u->target += (u->target.find('?') == std::string::npos ? "?" : "&") + q;
  }
  return u;
}

std::string pull_scope(std::string_view repository) {
  return "repository:" + std::string(repository) + ":pull";
}

std::string refresh_token_form(std::string_view service, std::string_view scope,
                               std::string_view refresh_token, std::string_view client_id) {
  return net::form_encode({{"grant_type", "refresh_token"},
                           {"service", std::string(service)},
                           {"scope", std::string(scope)},
                           {"client_id", std::string(client_id)},
                           {"refresh_token", std::string(refresh_token)}});
}

Result<TokenResponse> parse_token_response(std::string_view body) {
  try {
    return parse_token_impl(body);
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "token response is malformed");
  }
}

std::chrono::steady_clock::duration token_ttl(std::chrono::seconds expires_in) {
  using namespace std::chrono_literals;
  if (expires_in <= 0s) return 0s;
  if (expires_in > 20s) return expires_in - 10s;
  return expires_in / 2;
}

std::string basic_authorization(std::string_view user, std::string_view password) {
  std::string up(user);
  up += ':';
  up += password;
  return "Basic " + base64_encode(up);
}

std::optional<std::string> TokenCache::get(const std::string& authority, const std::string& scope,
                                           TimePoint now) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find({authority, scope});
  if (it == entries_.end() || now >= it->second.expires_at) return std::nullopt;
  return it->second.token;
}

size_t TokenCache::cost(const std::string& authority, const std::string& scope,
                        const std::string& token) {
  constexpr size_t kNode = 160;  // the map node, its strings and the allocator's rounding
  return authority.size() + scope.size() + token.size() + kNode;
}

void TokenCache::drop(Map::iterator it) {
  bytes_ -= cost(it->first.first, it->first.second, it->second.token);
  entries_.erase(it);
}

void TokenCache::put(const std::string& authority, const std::string& scope, std::string token,
                     TimePoint expires_at) {
  std::lock_guard lock(mu_);
  if (auto old = entries_.find({authority, scope}); old != entries_.end()) drop(old);
  const size_t need = cost(authority, scope, token);
  if (need > max_bytes_ || max_entries_ == 0) return;
  // Room, one entry at a time: the expired first, else the one that expires soonest (a flood
  // of distinct scopes then costs re-fetching tokens, never the whole cache at once).
  bool swept = false;
  while (!entries_.empty() && (entries_.size() >= max_entries_ || bytes_ + need > max_bytes_)) {
    if (!swept) {
      swept = true;
      const TimePoint now = std::chrono::steady_clock::now();
      for (auto it = entries_.begin(); it != entries_.end();) {
        auto next = std::next(it);
        if (it->second.expires_at <= now) drop(it);
        it = next;
      }
      continue;
    }
    auto soonest = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.expires_at < soonest->second.expires_at) soonest = it;
    }
    drop(soonest);
  }
  bytes_ += need;
  entries_[{authority, scope}] = Entry{std::move(token), expires_at};
}

void TokenCache::erase(const std::string& authority, const std::string& scope) {
  std::lock_guard lock(mu_);
  if (auto it = entries_.find({authority, scope}); it != entries_.end()) drop(it);
}

size_t TokenCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

size_t TokenCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

}  // namespace sigil::registry
