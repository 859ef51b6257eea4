#include "registry/http_client.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <atomic>
#include <cctype>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include "common/encoding.hpp"
#include "oci/manifest.hpp"
#include "oci/reference.hpp"
#include "oci/www_authenticate.hpp"
#include "registry/auth.hpp"

namespace sigil::registry {

using boost::asio::awaitable;
using Clock = std::chrono::steady_clock;
using net::Url;

Result<std::string> sha256_digest(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1 || len != 32) {
    ERR_clear_error();
    return make_error(Errc::internal, "sha256 failed in OpenSSL");
  }
  return "sha256:" + hex_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

namespace {

constexpr uint64_t kErrorBodyLimit = 64 * 1024;
constexpr uint64_t kTokenBodyLimit = 1024 * 1024;

bool is_sha256_digest(std::string_view d) {
  return d.size() == 71 && d.substr(0, 7) == "sha256:" && is_lower_hex(d.substr(7));
}

struct HostAuth {
  enum Kind { kNone, kBasic, kBearer } kind = kNone;
  std::string realm;
  std::string service;
};

Error timeout_error(const std::string& what) {
  return make_error(Errc::timeout, what + ": deadline exceeded");
}

std::string status_text(unsigned s) {
  return "HTTP " + std::to_string(s);
}

}  // namespace

struct HttpClient::Impl : std::enable_shared_from_this<HttpClient::Impl> {
  ClientOptions opts;
  Status init;
  std::unique_ptr<net::Client> http;
  std::mutex mu;  // guards host_auth and no_referrers
  std::map<std::string, HostAuth> host_auth;
  // Repositories ("registry/repository") whose referrers endpoint answered a 404 that no
  // route served (no distribution error body: the registry has no referrers API), until when
  // to believe it: callers read the referrers tag schema instead, one request per image saved.
  // Kept per repository, and learnt only from that unambiguous answer: a NAME_UNKNOWN 404 (a
  // repository that does not exist, which any pod creator can name) says nothing about the
  // registry, so one admission can never make bundles on a whole host invisible.
  std::map<std::string, Clock::time_point> no_referrers;
  TokenCache tokens;
  std::atomic<uint64_t> token_requests{0};

  Status setup(const boost::asio::any_io_executor& executor) {
    for (auto& h : opts.insecure_hosts) h = ascii_lower(h);
    if (opts.max_retries < 0) opts.max_retries = 0;
    if (opts.max_redirects < 0) opts.max_redirects = 0;
    net::ClientOptions no;
    no.tls.system_roots = true;
    if (!opts.ca_file.empty()) no.tls.ca_files.push_back(opts.ca_file);
    no.user_agent = opts.user_agent;
    no.max_idle_per_origin = opts.max_idle_per_host;
    no.observer = opts.observer;
    http = std::make_unique<net::Client>(executor, std::move(no));
    if (auto st = http->init_status(); !st) {
      return make_error(st.error().code, "registry TLS setup: " + st.error().message);
    }
    return {};
  }

  net::RetryPolicy retry_policy() const {
    net::RetryPolicy p;
    p.max_retries = opts.max_retries;
    p.backoff_base = opts.backoff_base;
    p.max_backoff = opts.max_backoff;
    return p;
  }

  bool insecure(std::string_view registry, const std::string& authority) const {
    std::string r = ascii_lower(registry);
    for (const auto& h : opts.insecure_hosts) {
      if (h == r || h == authority) return true;
    }
    return false;
  }

  // The registry origin for API calls (docker.io -> registry-1.docker.io).
  Result<Url> origin(const std::string& registry) const {
    if (registry.empty()) return make_error(Errc::invalid_argument, "empty registry host");
    std::string api = oci::api_host(registry);
    auto hp = net::split_host_port(api, "443");
    if (!hp)
      return make_error(Errc::invalid_argument, "registry host " + api + ": " + hp.error().message);
    Url u;
    u.host = hp->first;
    u.port = hp->second;
    bool plain = insecure(registry, u.authority()) || insecure(api, u.authority());
    if (plain) {
      auto hp80 = net::split_host_port(api, "80");
      if (!hp80) return hp80.error();
      u.port = hp80->second;
    }
    u.scheme = plain ? "http" : "https";
    u.target = "/";
    return u;
  }

  // ---- auth ----

  // The credential for registry: the admission's pull secrets first (kubelet order), then the
  // client's own config. Lookup by exact host in both.
  std::optional<Credential> credential_for(const std::string& registry,
                                           const DockerConfig* extra) const {
    if (extra != nullptr) {
      if (auto c = extra->find(registry)) return c;
    }
    return opts.credentials.find(registry);
  }

  // Which credential a cached token belongs to: tokens obtained with one pod's pull secret are
  // never handed to a request that came with another (or none).
  static std::string token_scope(const std::string& scope, const std::optional<Credential>& c) {
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

  std::string basic_for(const std::string& registry, const DockerConfig* extra) const {
    auto cred = credential_for(registry, extra);
    if (!cred || !cred->has_basic()) return {};
    return basic_authorization(cred->username, cred->password);
  }

  awaitable<Status> fetch_token(const Url& origin, const std::string& registry, const HostAuth& ha,
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
    auto cred = credential_for(registry, extra);
    // Credentials of the registry go to its realm only over https (see http_client.hpp), even
    // for a listed plain-http registry's own realm: a token service is never sent a password
    // in the clear (the test "credentials are not sent to a plain-http realm" pins this).
    const bool may_send = cred && url->scheme == "https";
    if (cred && !may_send) {
      spdlog::warn("registry: not sending credentials for {} to a plain-http token realm",
                   registry);
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

  // The Authorization header to send to origin for scope, fetching a token when the host is
  // known to use bearer auth and none is cached. Empty: anonymous.
  awaitable<Result<std::string>> authorization_for(const Url& origin, const std::string& registry,
                                                   const std::string& scope, Deadline deadline,
                                                   const DockerConfig* extra) {
    HostAuth ha;
    {
      std::lock_guard lock(mu);
      auto it = host_auth.find(origin.authority());
      if (it != host_auth.end()) ha = it->second;
    }
    if (ha.kind == HostAuth::kBasic) co_return basic_for(registry, extra);
    if (ha.kind != HostAuth::kBearer) co_return std::string();
    const std::string key = token_scope(scope, credential_for(registry, extra));
    if (auto t = tokens.get(origin.authority(), key, Clock::now())) co_return "Bearer " + *t;
    auto st = co_await fetch_token(origin, registry, ha, scope, deadline, extra);
    if (!st) co_return st.error();
    if (auto t = tokens.get(origin.authority(), key, Clock::now())) co_return "Bearer " + *t;
    co_return make_error(Errc::unauthorized, "token for " + registry + " expired immediately");
  }

  // Handles a 401 challenge: records how the host authenticates and refreshes the token.
  awaitable<Status> on_challenge(const Url& origin, const std::string& registry,
                                 const std::string& scope, const std::string& header,
                                 Deadline deadline, const DockerConfig* extra) {
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
      ha.kind = HostAuth::kBearer;
      ha.realm = realm->second;
      auto svc = bearer->params.find("service");
      if (svc != bearer->params.end()) ha.service = svc->second;
    } else if (basic) {
      if (basic_for(registry, extra).empty()) {
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
      host_auth[origin.authority()] = ha;
    }
    tokens.erase(origin.authority(), token_scope(scope, credential_for(registry, extra)));
    if (ha.kind == HostAuth::kBearer)
      co_return co_await fetch_token(origin, registry, ha, scope, deadline, extra);
    co_return Status{};
  }

  // What the credential chain did in one fetch, for the REGISTRY_AUTH denial's trail.
  struct AuthNotes {
    std::optional<Error> identity_failure;  // the identity source's error (every identity failed)
    bool identity_token_used = false;       // the registry refused the identity's token
  };

  // A registry API call with auth (anonymous first, then per challenge, re-auth once on 401),
  // net's retries, and redirects (GET only; net never carries Authorization to another
  // origin, and refuses plain http but to an insecure host).
  awaitable<Result<net::Response>> fetch(net::Method method, const std::string& registry,
                                         const std::string& repository, const std::string& path,
                                         std::string accept, uint64_t limit, Deadline deadline,
                                         const DockerConfig* extra) {
    AuthNotes notes;
    auto r = co_await fetch_with(method, registry, repository, path, std::move(accept), limit,
                                 deadline, extra, &notes);
    if (!r && r.error().code == Errc::unauthorized) {
      Error e = r.error();
      if (notes.identity_failure) e.message += "; " + notes.identity_failure->message;
      e.detail = trail(registry, extra, notes, r.error());
      co_return e;
    }
    co_return r;
  }

  // The status in an error of this client ("... (401 Unauthorized)", "... (HTTP 401)"), 0
  // when there is none.
  static unsigned status_in(const std::string& m) {
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

  // Every credential source, in the kubelet's order, and what it gave for registry: the
  // REGISTRY_AUTH denial names them (registry/client.hpp).
  std::shared_ptr<const CredentialTrail> trail(const std::string& registry,
                                               const DockerConfig* extra, const AuthNotes& notes,
                                               const Error& final_error) const {
    using K = CredentialSourceKind;
    using O = CredentialOutcome;
    auto t = std::make_shared<CredentialTrail>();
    const unsigned status = status_in(final_error.message);
    const bool pod = extra != nullptr && extra->find(registry).has_value();
    const bool config = opts.credentials.find(registry).has_value();
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
    } else if (!opts.identity->covers(registry)) {
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
    t->tried.push_back(
        {K::anonymous, anonymous ? O::refused : O::not_tried, anonymous ? status : 0});
    return t;
  }

  awaitable<Result<net::Response>> fetch_with(net::Method method, const std::string& registry,
                                              const std::string& repository,
                                              const std::string& path, std::string accept,
                                              uint64_t limit, Deadline deadline,
                                              const DockerConfig* extra, AuthNotes* notes) {
    // The identity source (Azure) only where neither the pod's pull secrets nor the docker
    // config name the host: those come first, as in the kubelet's order.
    bool use_identity = opts.identity != nullptr && opts.identity->covers(registry) &&
                        !credential_for(registry, extra).has_value();
    auto o = origin(registry);
    if (!o) co_return o.error();
    Url url = *o;
    url.target = path;
    const std::string scope = pull_scope(repository);
    net::Limits limits;
    limits.max_body = limit;
    limits.max_error_body = kErrorBodyLimit;
    bool reauthed = false;
    for (;;) {
      if (Clock::now() >= deadline) co_return timeout_error("registry " + registry);
      Result<std::string> a = std::string();
      if (use_identity) {
        auto c = co_await opts.identity->for_registry(registry, repository, deadline);
        if (c && c->has_value()) {
          a = std::move(**c);
        } else {
          if (!c) notes->identity_failure = c.error();
          use_identity = false;  // nothing from the identities: anonymous from here on
        }
      }
      if (!use_identity) a = co_await authorization_for(*o, registry, scope, deadline, extra);
      if (!a) co_return a.error();
      net::Request req = net::get_request(url, accept);
      req.method = method;
      req.authorization = std::move(*a);
      req.retry = retry_policy();
      if (method == net::Method::get) req.max_redirects = opts.max_redirects;
      req.redirect_allowed = [this](const Url& to) {
        return to.scheme == "https" || insecure(to.authority(), to.authority());
      };
      auto r = co_await http->send(std::move(req), deadline, limits);
      if (!r) co_return r.error();
      const unsigned s = r->status;
      const bool same = r->url.same_origin(*o);
      if (s == 401 && same && !reauthed) {
        reauthed = true;
        if (use_identity) {  // the identity's token refused: a fresh one, once
          opts.identity->rejected(registry, repository);
          continue;
        }
        auto st = co_await on_challenge(*o, registry, scope, r->header("WWW-Authenticate"),
                                        deadline, extra);
        if (!st) co_return st.error();
        continue;
      }
      if (s == 401 || s == 403) {
        notes->identity_token_used = use_identity;
        co_return make_error(Errc::unauthorized, "registry " + registry + " denied access to " +
                                                     repository + " (" + status_text(s) + ")");
      }
      if (s == 429 || s >= 500) {
        co_return make_error(Errc::unavailable,
                             "registry " + registry + " unavailable (" + status_text(s) + ")");
      }
      co_return r;
    }
  }
};

HttpClient::HttpClient(const boost::asio::any_io_executor& executor, ClientOptions options) {
  try {
    impl_ = std::make_shared<Impl>();
    impl_->opts = std::move(options);
    impl_->init = impl_->setup(executor);
  } catch (const std::exception& e) {
    if (impl_)
      impl_->init = make_error(Errc::internal, std::string("registry client: ") + e.what());
  }
}

HttpClient::~HttpClient() = default;

Status HttpClient::init_status() const {
  if (!impl_) return make_error(Errc::internal, "registry client not constructed");
  return impl_->init;
}

bool HttpClient::has_credentials_for(const std::string& registry) const {
  return impl_ && (impl_->opts.credentials.find(registry).has_value() ||
                   (impl_->opts.identity && impl_->opts.identity->covers(registry)));
}

bool HttpClient::covers(const PullCredentials& creds, const std::string& registry) const {
  return creds && creds->find(registry).has_value();
}

uint64_t HttpClient::request_count() const {
  return impl_ && impl_->http ? impl_->http->request_count() : 0;
}
uint64_t HttpClient::token_request_count() const {
  return impl_ ? impl_->token_requests.load() : 0;
}

namespace {

// Runs body on the caller's executor, turning any exception into an error: a bad_alloc or a
// library surprise is Errc::internal, and the operation_aborted that a cancelled coroutine
// meets at its next co_await is a cancellation. No hop to another executor here: the only
// one is net::Client's to its strand, which binds an EMPTY cancellation slot to its co_spawn
// and bridges the caller's slot itself (Boost 1.81's co_spawn forwards a cancellation across
// executors through a raw pointer that dangles once the child finished: the crash of an
// admission cut short with fetches in flight). The Impl's own state is behind its mutex.
template <class T, class F>
awaitable<Result<T>> guarded(F& body) {
  try {
    co_return co_await body();
  } catch (const boost::system::system_error& e) {
    if (e.code() == boost::asio::error::operation_aborted) {
      co_return make_error(Errc::unavailable, "registry client: cancelled");
    }
    co_return make_error(Errc::internal, std::string("registry client: ") + e.what());
  } catch (const std::exception& e) {
    co_return make_error(Errc::internal, std::string("registry client: ") + e.what());
  }
}

}  // namespace

awaitable<Result<std::string>> HttpClient::resolve(const oci::Reference& ref, Deadline deadline,
                                                   PullCredentials creds) {
  if (ref.has_digest()) co_return ref.digest;
  auto st = init_status();
  if (!st) co_return st.error();
  auto impl = impl_;
  auto body = [&]() -> awaitable<Result<std::string>> {
    auto path = manifest_path(ref.repository, ref.tag);
    if (!path) co_return path.error();
    auto r =
        co_await impl->fetch(net::Method::head, ref.registry, ref.repository, *path,
                             std::string(oci::media::kManifestAccept), 0, deadline, creds.get());
    if (!r) co_return r.error();
    if (r->status == 404) {
      co_return make_error(Errc::not_found, "image " + ref.str() + " not found in registry");
    }
    if (r->status != 200) {
      co_return make_error(Errc::unavailable, "resolving " + ref.str() + ": registry answered " +
                                                  status_text(r->status));
    }
    if (!r->header("Docker-Content-Digest").empty()) {
      if (!is_sha256_digest(r->header("Docker-Content-Digest"))) {
        co_return make_error(Errc::verification,
                             "resolving " + ref.str() +
                                 ": registry sent a Docker-Content-Digest that is not sha256");
      }
      co_return r->header("Docker-Content-Digest");
    }
    // No digest header: fetch the manifest and hash it ourselves.
    auto m = co_await get_manifest(ref.registry, ref.repository, ref.tag, deadline, creds);
    if (!m) co_return m.error();
    co_return m->digest;
  };
  co_return co_await guarded<std::string>(body);
}

awaitable<Result<ManifestResponse>> HttpClient::get_manifest(const std::string& registry,
                                                             const std::string& repository,
                                                             const std::string& reference,
                                                             Deadline deadline,
                                                             PullCredentials creds) {
  auto st = init_status();
  if (!st) co_return st.error();
  auto impl = impl_;
  auto body = [&]() -> awaitable<Result<ManifestResponse>> {
    const bool by_digest = reference.find(':') != std::string::npos;
    if (by_digest && !is_sha256_digest(reference)) {
      co_return make_error(Errc::unsupported,
                           "manifest digest " + reference + " is not a sha256 digest");
    }
    auto path = manifest_path(repository, reference);
    if (!path) co_return path.error();
    auto r = co_await impl->fetch(
        net::Method::get, registry, repository, *path, std::string(oci::media::kManifestAccept),
        static_cast<uint64_t>(impl->opts.max_manifest_size), deadline, creds.get());
    if (!r) co_return r.error();
    const std::string what = registry + "/" + repository + (by_digest ? "@" : ":") + reference;
    if (r->status == 404) {
      co_return make_error(Errc::not_found, "manifest " + what + " not found in registry");
    }
    if (r->status != 200) {
      co_return make_error(Errc::unavailable,
                           "fetching manifest " + what + ": " + status_text(r->status));
    }
    auto d = sha256_digest(r->body);
    if (!d) co_return d.error();
    if (by_digest && *d != reference) {
      co_return make_error(Errc::verification,
                           "manifest " + what + ": registry served bytes with digest " + *d);
    }
    ManifestResponse out;
    out.digest = std::move(*d);
    out.media_type = r->header("Content-Type");
    out.body = std::move(r->body);
    co_return out;
  };
  co_return co_await guarded<ManifestResponse>(body);
}

awaitable<Result<std::string>> HttpClient::get_blob(const std::string& registry,
                                                    const std::string& repository,
                                                    const std::string& digest, int64_t max_size,
                                                    Deadline deadline, PullCredentials creds) {
  auto st = init_status();
  if (!st) co_return st.error();
  auto impl = impl_;
  auto body = [&]() -> awaitable<Result<std::string>> {
    if (!is_sha256_digest(digest)) {
      co_return make_error(Errc::unsupported, "blob digest " + digest + " is not sha256");
    }
    if (max_size < 0) co_return make_error(Errc::invalid_argument, "negative blob size cap");
    auto path = blob_path(repository, digest);
    if (!path) co_return path.error();
    auto r = co_await impl->fetch(net::Method::get, registry, repository, *path, std::string(),
                                  static_cast<uint64_t>(max_size), deadline, creds.get());
    if (!r) co_return r.error();
    const std::string what = registry + "/" + repository + "@" + digest;
    if (r->status == 404) co_return make_error(Errc::not_found, "blob " + what + " not found");
    if (r->status != 200) {
      co_return make_error(Errc::unavailable,
                           "fetching blob " + what + ": " + status_text(r->status));
    }
    auto d = sha256_digest(r->body);
    if (!d) co_return d.error();
    if (*d != digest) {
      co_return make_error(Errc::verification,
                           "blob " + what + ": registry served bytes with digest " + *d);
    }
    co_return std::move(r->body);
  };
  co_return co_await guarded<std::string>(body);
}

awaitable<Result<std::vector<oci::Descriptor>>> HttpClient::get_referrers(
    const std::string& registry, const std::string& repository, const std::string& digest,
    const std::string& artifact_type, Deadline deadline, PullCredentials creds) {
  auto st = init_status();
  if (!st) co_return st.error();
  auto impl = impl_;
  auto body = [&]() -> awaitable<Result<std::vector<oci::Descriptor>>> {
    if (!is_sha256_digest(digest)) {
      co_return make_error(Errc::unsupported, "referrers of " + digest + ": not a sha256 digest");
    }
    auto first = referrers_path(repository, digest, artifact_type);
    if (!first) co_return first.error();
    const auto unsupported = [&] {
      return make_error(Errc::unsupported, "registry " + registry + " has no referrers API");
    };
    const std::string memo_key = registry + "/" + repository;
    {
      std::lock_guard lock(impl->mu);
      auto it = impl->no_referrers.find(memo_key);
      if (it != impl->no_referrers.end()) {
        if (Clock::now() < it->second) co_return unsupported();
        impl->no_referrers.erase(it);
      }
    }
    const std::string what = registry + "/" + repository + "@" + digest;
    std::vector<oci::Descriptor> out;
    std::string path = std::move(*first);
    for (int page = 0; !path.empty(); ++page) {
      if (page >= impl->opts.max_referrers_pages) {
        co_return make_error(Errc::too_large, "referrers of " + what + ": more than " +
                                                  std::to_string(impl->opts.max_referrers_pages) +
                                                  " pages");
      }
      auto r = co_await impl->fetch(
          net::Method::get, registry, repository, path, std::string(oci::media::kOciIndex),
          static_cast<uint64_t>(impl->opts.max_manifest_size), deadline, creds.get());
      if (!r) co_return r.error();
      if (r->status == 404) {
        if (!oci::distribution_error_codes(r->body).empty()) {
          // The registry routed the request and has no such repository or manifest: it may
          // well have a referrers API. Nothing is learnt; this caller falls back once.
          co_return make_error(Errc::not_found,
                               "referrers of " + what + ": the registry knows no such repository");
        }
        std::lock_guard lock(impl->mu);
        if (impl->no_referrers.size() > 4096) impl->no_referrers.clear();
        impl->no_referrers[memo_key] = Clock::now() + impl->opts.no_referrers_memo;
        co_return unsupported();
      }
      if (r->status != 200) {
        co_return make_error(Errc::unavailable,
                             "listing referrers of " + what + ": " + status_text(r->status));
      }
      auto index = oci::parse_manifest(r->body, r->header("Content-Type"));
      if (!index) {
        co_return make_error(Errc::parse_error,
                             "referrers of " + what + ": " + index.error().message);
      }
      if (!index->is_index) {
        co_return make_error(Errc::parse_error, "referrers of " + what + ": not an image index");
      }
      for (auto& d : index->manifests) {
        if (!artifact_type.empty() && d.artifact_type != artifact_type) continue;
        if (out.size() >= impl->opts.max_referrers) {
          co_return make_error(Errc::too_large, "referrers of " + what + ": more than " +
                                                    std::to_string(impl->opts.max_referrers) +
                                                    " descriptors");
        }
        out.push_back(std::move(d));
      }
      path = link_next_target(r->header("Link"));
    }
    co_return out;
  };
  co_return co_await guarded<std::vector<oci::Descriptor>>(body);
}

}  // namespace sigil::registry
