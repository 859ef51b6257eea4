// registry/http_auth.cpp: the auth side of HttpClient (see http_client.hpp): which credential
// goes to which host (pull secrets, then the docker config, by exact host), Basic and the
// Bearer token flow with its cache, 401 challenges, and the credential trail a REGISTRY_AUTH
// denial names.
#include <openssl/err.h>
#include <openssl/evp.h>

#include <cctype>

#include <spdlog/spdlog.h>

#include "common/encoding.hpp"
#include "oci/www_authenticate.hpp"
#include "registry/detail/http_client_impl.hpp"

namespace sigil::registry {

using boost::asio::awaitable;
using Clock = std::chrono::steady_clock;
using detail::HostAuth;
using detail::status_text;
using net::Url;

namespace {

constexpr size_t kMaxRealmBytes = 2048;
constexpr uint64_t kTokenBodyLimit = 2 * kMaxTokenBytes + 64 * 1024;  // a refresh token too

}  // namespace

std::optional<Credential> HttpClient::Impl::credential_for(const std::string& registry,
                                                           const std::string& repository,
                                                           const DockerConfig* extra) const {
  if (extra != nullptr) {
    if (auto c = extra->find(registry, repository)) return c;
  }
  return opts.credentials.find(registry, repository);
}

std::string HttpClient::Impl::token_scope(const std::string& scope,
                                          const std::optional<Credential>& c) {
  if (!c || c->empty()) return scope;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const std::string material = c->username + '\0' + c->password + '\0' + c->identity_token;
  if (EVP_Digest(material.data(), material.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    ERR_clear_error();
    return scope + "#unhashable";
  }
  return scope + "#" + hex_encode(std::string_view(reinterpret_cast<const char*>(md), 8));
}

std::string HttpClient::Impl::basic_for(const std::string& registry, const std::string& repository,
                                        const DockerConfig* extra) const {
  auto cred = credential_for(registry, repository, extra);
  if (!cred || !cred->has_basic()) return {};
  return basic_authorization(cred->username, cred->password);
}

awaitable<Status> HttpClient::Impl::fetch_token(const Url& origin, const std::string& registry,
                                                const std::string& repository, const HostAuth& ha,
                                                const std::string& scope, Deadline deadline,
                                                const DockerConfig* extra) {
  auto url = token_url(ha.realm, ha.service, scope);
  if (!url) co_return url.error();
  bool registry_plain = origin.scheme == "http";
  if (url->scheme != "https" && !registry_plain) {
    co_return make_error(Errc::unauthorized,
                         "registry " + registry + " sent a bearer realm that is not https");
  }
  net::Request req = net::get_request(*url, "application/json");
  req.retry = retry_policy();
  auto cred = credential_for(registry, repository, extra);
  // Credentials of the registry go to its realm only over https (see http_client.hpp), even
  // for a listed plain-http registry's own realm: a token service is never sent a password
  // in the clear (the test "credentials are not sent to a plain-http realm" pins this).
  const bool may_send = cred && url->scheme == "https";
  if (cred && !may_send) {
    spdlog::warn("registry: not sending credentials for {} to a plain-http token realm", registry);
  }
  if (may_send && !cred->identity_token.empty()) {
    auto u2 = net::parse_url(ha.realm);
    if (!u2) co_return u2.error();
    req = net::form_post(*u2, {});
    req.retry = retry_policy();
    req.body = refresh_token_form(ha.service, scope, cred->identity_token, "sigil");
  } else if (may_send && cred->has_basic()) {
    req.authorization = basic_authorization(cred->username, cred->password);
  }
  mark(req, owner(registry));  // the realm is asked on the registry's behalf
  token_requests.fetch_add(1, std::memory_order_relaxed);
  net::Limits limits;
  limits.max_body = kTokenBodyLimit;
  auto r = co_await http->send(std::move(req), deadline, limits);
  if (!r) co_return r.error();
  if (r->status == 401 || r->status == 403) {
    co_return make_error(Errc::unauthorized, "token service for " + registry + " refused (" +
                                                 status_text(r->status) + ")");
  }
  if (r->status != 200) {
    co_return make_error(Errc::unavailable,
                         "token service for " + registry + " answered " + status_text(r->status));
  }
  auto tok = parse_token_response(r->body);
  if (!tok) co_return tok.error();
  tokens.put(origin.authority(), token_scope(scope, cred), std::move(tok->token),
             Clock::now() + token_ttl(tok->expires_in));
  co_return Status{};
}

awaitable<Result<std::string>> HttpClient::Impl::authorization_for(
    const Url& origin, const std::string& registry, const std::string& repository,
    const std::string& scope, Deadline deadline, const DockerConfig* extra) {
  HostAuth ha;
  {
    std::lock_guard lock(mu);
    auto it = host_auth.find(origin.authority());
    if (it != host_auth.end()) ha = it->second;
  }
  if (ha.kind == HostAuth::kBasic) co_return basic_for(registry, repository, extra);
  if (ha.kind != HostAuth::kBearer) co_return std::string();
  const std::string key = token_scope(scope, credential_for(registry, repository, extra));
  if (auto t = tokens.get(origin.authority(), key, Clock::now())) co_return "Bearer " + *t;
  auto st = co_await fetch_token(origin, registry, repository, ha, scope, deadline, extra);
  if (!st) co_return st.error();
  if (auto t = tokens.get(origin.authority(), key, Clock::now())) co_return "Bearer " + *t;
  co_return make_error(Errc::unauthorized, "token for " + registry + " expired immediately");
}

awaitable<Status> HttpClient::Impl::on_challenge(const Url& origin, const std::string& registry,
                                                 const std::string& repository,
                                                 const std::string& scope,
                                                 const std::string& header, Deadline deadline,
                                                 const DockerConfig* extra) {
  auto challenges = oci::parse_www_authenticate(header);
  if (!challenges || challenges->empty()) {
    co_return make_error(Errc::unauthorized,
                         "registry " + registry + " answered 401 without a usable challenge");
  }
  const oci::Challenge* bearer = nullptr;
  const oci::Challenge* basic = nullptr;
  for (const auto& c : *challenges) {
    if (c.scheme == "bearer" && !bearer) bearer = &c;
    if (c.scheme == "basic" && !basic) basic = &c;
  }
  HostAuth ha;
  if (bearer) {
    auto realm = bearer->params.find("realm");
    if (realm == bearer->params.end() || realm->second.empty()) {
      co_return make_error(Errc::unauthorized,
                           "registry " + registry + " sent a bearer challenge without realm");
    }
    // A realm is a URL and a service a host name: a few hundred bytes. What the challenge
    // names is remembered per registry origin, so a longer one (up to the 16 KiB header limit)
    // from a hostile registry would be kept for each of its ports and names.
    auto svc = bearer->params.find("service");
    if (realm->second.size() > kMaxRealmBytes ||
        (svc != bearer->params.end() && svc->second.size() > kMaxRealmBytes)) {
      co_return make_error(Errc::unauthorized, "registry " + registry +
                                                   " sent a bearer challenge whose realm or "
                                                   "service is over " +
                                                   std::to_string(kMaxRealmBytes) + " bytes");
    }
    ha.kind = HostAuth::kBearer;
    ha.realm = realm->second;
    if (svc != bearer->params.end()) ha.service = svc->second;
  } else if (basic) {
    if (basic_for(registry, repository, extra).empty()) {
      co_return make_error(Errc::unauthorized, "registry " + registry +
                                                   " requires credentials and none are "
                                                   "configured for it");
    }
    ha.kind = HostAuth::kBasic;
  } else {
    co_return make_error(Errc::unsupported,
                         "registry " + registry + " asks for an unsupported auth scheme");
  }
  {
    std::lock_guard lock(mu);
    // Bounded: a hostile registry answers from as many ports and names as it likes. Forgetting
    // a registry's challenge costs it one more 401 round trip.
    if (host_auth.size() >= opts.max_auth_hosts && host_auth.count(origin.authority()) == 0) {
      host_auth.clear();
    }
    host_auth[origin.authority()] = ha;
  }
  tokens.erase(origin.authority(), token_scope(scope, credential_for(registry, repository, extra)));
  if (ha.kind == HostAuth::kBearer)
    co_return co_await fetch_token(origin, registry, repository, ha, scope, deadline, extra);
  co_return Status{};
}

unsigned HttpClient::Impl::status_in(const std::string& m) {
  const auto digit = [&](size_t i) {
    return i < m.size() && std::isdigit(static_cast<unsigned char>(m[i])) != 0;
  };
  for (size_t at = m.find('('); at != std::string::npos; at = m.find('(', at + 1)) {
    size_t i = at + 1;
    if (m.compare(i, 5, "HTTP ") == 0) i += 5;
    if (digit(i) && digit(i + 1) && digit(i + 2) && !digit(i + 3))
      return static_cast<unsigned>(std::stoi(m.substr(i, 3)));
  }
  return 0;
}

std::shared_ptr<const CredentialTrail> HttpClient::Impl::trail(const std::string& registry,
                                                               const std::string& repository,
                                                               const DockerConfig* extra,
                                                               const AuthNotes& notes,
                                                               const Error& final_error) const {
  using K = CredentialSourceKind;
  using O = CredentialOutcome;
  auto t = std::make_shared<CredentialTrail>();
  const unsigned status = status_in(final_error.message);
  const bool pod = extra != nullptr && extra->find(registry, repository).has_value();
  const bool config = opts.credentials.find(registry, repository).has_value();
  t->tried.push_back({K::pull_secret, pod ? O::refused : O::none_for_host, pod ? status : 0});
  if (pod) {
    t->tried.push_back({K::docker_config, O::not_tried, 0});
  } else {
    t->tried.push_back(
        {K::docker_config, config ? O::refused : O::none_for_host, config ? status : 0});
  }
  if (!opts.identity) {
    t->tried.push_back({K::workload_identity, O::not_configured, 0});
    t->tried.push_back({K::managed_identity, O::not_configured, 0});
  } else if (pod || config) {
    t->tried.push_back({K::azure_identity, O::not_tried, 0});
  } else if (!identity_for(registry)) {
    t->tried.push_back({K::azure_identity, O::not_for_host, 0});
  } else if (notes.identity_token_used) {
    t->tried.push_back({K::azure_identity, O::refused, status});
  } else if (notes.identity_failure) {
    const CredentialTrail* inner = credential_trail(*notes.identity_failure);
    if (inner != nullptr && !inner->tried.empty()) {
      t->tried.insert(t->tried.end(), inner->tried.begin(), inner->tried.end());
    } else {
      t->tried.push_back({K::azure_identity, outcome_of(notes.identity_failure->code), 0});
    }
  } else {
    t->tried.push_back({K::azure_identity, O::none_for_host, 0});
  }
  const bool anonymous = !pod && !config && !notes.identity_token_used;
  t->tried.push_back({K::anonymous, anonymous ? O::refused : O::not_tried, anonymous ? status : 0});
  return t;
}

}  // namespace sigil::registry
