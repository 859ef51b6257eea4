#include "registry/http_client.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "common/encoding.hpp"
#include "oci/manifest.hpp"
#include "oci/reference.hpp"
#include "oci/www_authenticate.hpp"
#include "registry/auth.hpp"

namespace sigil::registry {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using Clock = std::chrono::steady_clock;

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

struct Conn {
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  beast::tcp_stream& lowest() { return tls ? tls->next_layer() : *plain; }
};

struct Req {
  http::verb method = http::verb::get;
  Url url;
  std::string accept;
  std::string authorization;
  std::string body;
  std::string content_type;
  uint64_t body_limit = 0;
};

struct Resp {
  unsigned status = 0;
  std::string content_type;
  std::string docker_digest;
  std::string www_authenticate;
  std::string location;
  std::string retry_after;
  std::string link;
  std::string body;
};

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
  asio::any_io_executor ex;
  ClientOptions opts;
  Status init;
  ssl::context ctx{ssl::context::tls_client};
  std::mutex mu;  // guards idle and host_auth
  std::map<std::string, std::vector<std::unique_ptr<Conn>>> idle;
  std::map<std::string, HostAuth> host_auth;
  // Repositories ("registry/repository") whose referrers endpoint answered a 404 that no
  // route served (no distribution error body: the registry has no referrers API), until when
  // to believe it: callers read the referrers tag schema instead, one request per image saved.
  // Kept per repository, and learnt only from that unambiguous answer: a NAME_UNKNOWN 404 (a
  // repository that does not exist, which any pod creator can name) says nothing about the
  // registry, so one admission can never make bundles on a whole host invisible.
  std::map<std::string, Clock::time_point> no_referrers;
  TokenCache tokens;
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> token_requests{0};

  Status setup() {
    SSL_CTX* c = ctx.native_handle();
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1) {
      ERR_clear_error();
      return make_error(Errc::internal, "cannot require TLS 1.2");
    }
    if (SSL_CTX_set_default_verify_paths(c) != 1) {
      ERR_clear_error();
      return make_error(Errc::internal, "cannot load the system CA certificates");
    }
    if (!opts.ca_file.empty() &&
        SSL_CTX_load_verify_locations(c, opts.ca_file.c_str(), nullptr) != 1) {
      ERR_clear_error();
      return make_error(Errc::invalid_argument,
                        "registry CA file " + opts.ca_file + " cannot be loaded as PEM");
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
    for (auto& h : opts.insecure_hosts) h = ascii_lower(h);
    if (opts.max_retries < 0) opts.max_retries = 0;
    if (opts.max_redirects < 0) opts.max_redirects = 0;
    return {};
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
    auto hp = split_host_port(api, "443");
    if (!hp) return hp.error();
    Url u;
    u.host = hp->first;
    u.port = hp->second;
    bool plain = insecure(registry, u.authority()) || insecure(api, u.authority());
    if (plain) {
      auto hp80 = split_host_port(api, "80");
      if (!hp80) return hp80.error();
      u.port = hp80->second;
    }
    u.scheme = plain ? "http" : "https";
    u.target = "/";
    return u;
  }

  // ---- connection pool ----

  static std::string pool_key(const Url& u) { return u.scheme + "://" + u.authority(); }

  std::unique_ptr<Conn> take_idle(const std::string& key) {
    std::lock_guard lock(mu);
    auto it = idle.find(key);
    if (it == idle.end() || it->second.empty()) return nullptr;
    auto c = std::move(it->second.back());
    it->second.pop_back();
    return c;
  }

  void put_idle(const std::string& key, std::unique_ptr<Conn> c) {
    // Disarm the request's deadline before the connection rests in the pool: an armed Beast
    // timer would fire later on another io thread, racing whichever request reuses (or the
    // destructor that frees) this connection. Cancelled, its handler only sees
    // operation_aborted and touches nothing.
    c->lowest().expires_never();
    std::lock_guard lock(mu);
    auto& v = idle[key];
    if (v.size() < opts.max_idle_per_host) v.push_back(std::move(c));
  }

  awaitable<Result<std::unique_ptr<Conn>>> connect(const Url& url, Deadline deadline,
                                                   bool& retryable) {
    using namespace asio::experimental::awaitable_operators;
    retryable = true;
    tcp::resolver resolver(ex);
    asio::steady_timer timer(ex);
    timer.expires_at(deadline);
    auto raced =
        co_await (resolver.async_resolve(url.host, url.port, asio::as_tuple(asio::use_awaitable)) ||
                  timer.async_wait(asio::as_tuple(asio::use_awaitable)));
    if (raced.index() == 1) co_return timeout_error("resolving " + url.host);
    auto [rec, results] = std::get<0>(std::move(raced));
    if (rec) {
      co_return make_error(Errc::unavailable,
                           "cannot resolve registry host " + url.host + ": " + rec.message());
    }
    auto conn = std::make_unique<Conn>();
    if (url.scheme == "https") {
      conn->tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ex, ctx);
    } else {
      conn->plain = std::make_unique<beast::tcp_stream>(ex);
    }
    auto& low = conn->lowest();
    low.expires_at(deadline);
    auto [cec, ep] = co_await low.async_connect(results, asio::as_tuple(asio::use_awaitable));
    (void)ep;
    if (cec) {
      if (cec == beast::error::timeout || Clock::now() >= deadline) {
        co_return timeout_error("connecting to " + url.authority());
      }
      co_return make_error(Errc::unavailable,
                           "cannot connect to " + url.authority() + ": " + cec.message());
    }
    if (conn->tls) {
      SSL* s = conn->tls->native_handle();
      boost::system::error_code aec;
      auto addr = asio::ip::make_address(url.host, aec);
      (void)addr;
      bool ok;
      if (aec) {
        // DNS name: SNI plus hostname verification during the handshake.
        ok = SSL_set_tlsext_host_name(s, url.host.c_str()) == 1 &&
             SSL_set1_host(s, url.host.c_str()) == 1;
      } else {
        // IP literal: no SNI (RFC 6066), verify an IP SAN instead.
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), url.host.c_str()) == 1;
      }
      if (!ok) {
        ERR_clear_error();
        retryable = false;
        co_return make_error(Errc::internal, "cannot set TLS verification for " + url.host);
      }
      SSL_set_verify(s, SSL_VERIFY_PEER, nullptr);
      low.expires_at(deadline);
      auto [hec] = co_await conn->tls->async_handshake(ssl::stream_base::client,
                                                       asio::as_tuple(asio::use_awaitable));
      if (hec) {
        if (hec == beast::error::timeout || Clock::now() >= deadline) {
          co_return timeout_error("TLS handshake with " + url.authority());
        }
        std::string why = hec.message();
        long vr = SSL_get_verify_result(s);
        if (vr != X509_V_OK) {
          why =
              std::string("certificate verification failed: ") + X509_verify_cert_error_string(vr);
          retryable = false;
        }
        ERR_clear_error();
        co_return make_error(Errc::unavailable,
                             "TLS handshake with " + url.authority() + " failed: " + why);
      }
    }
    co_return std::move(conn);
  }

  template <class Stream>
  awaitable<Result<Resp>> exchange_on(Stream& stream, Conn& conn, const Req& req, Deadline deadline,
                                      bool& stale, bool& keep_alive) {
    stale = false;
    keep_alive = false;
    auto& low = conn.lowest();
    http::request<http::string_body> m{req.method, req.url.target, 11};
    bool default_port = (req.url.scheme == "https" && req.url.port == "443") ||
                        (req.url.scheme == "http" && req.url.port == "80");
    std::string host_hdr =
        req.url.host.find(':') != std::string::npos ? "[" + req.url.host + "]" : req.url.host;
    if (!default_port) host_hdr += ":" + req.url.port;
    m.set(http::field::host, host_hdr);
    m.set(http::field::user_agent, opts.user_agent);
    if (!req.accept.empty()) m.set(http::field::accept, req.accept);
    if (!req.authorization.empty()) m.set(http::field::authorization, req.authorization);
    if (!req.content_type.empty()) m.set(http::field::content_type, req.content_type);
    m.body() = req.body;
    m.keep_alive(true);
    m.prepare_payload();

    const std::string where = req.url.authority();
    low.expires_at(deadline);
    auto [wec, wn] = co_await http::async_write(stream, m, asio::as_tuple(asio::use_awaitable));
    (void)wn;
    if (wec) {
      if (wec == beast::error::timeout || Clock::now() >= deadline) {
        co_return timeout_error("sending to " + where);
      }
      stale = true;
      co_return make_error(Errc::unavailable, "sending to " + where + " failed: " + wec.message());
    }
    http::response_parser<http::string_body> p;
    p.header_limit(32 * 1024);
    p.body_limit(req.body_limit);
    if (req.method == http::verb::head) p.skip(true);
    low.expires_at(deadline);
    auto [hec, hn] = co_await http::async_read_header(stream, conn.buffer, p,
                                                      asio::as_tuple(asio::use_awaitable));
    (void)hn;
    if (hec) {
      if (hec == beast::error::timeout || Clock::now() >= deadline) {
        co_return timeout_error("waiting for " + where);
      }
      if (hec == http::error::body_limit) {
        co_return make_error(Errc::too_large, "response from " + where + " exceeds the " +
                                                  std::to_string(req.body_limit) + " byte limit");
      }
      // Nothing at all came back: typical of a keep-alive connection the server closed.
      stale = hec == http::error::end_of_stream || hec == asio::error::eof ||
              hec == asio::error::connection_reset || hec == ssl::error::stream_truncated;
      co_return make_error(Errc::unavailable,
                           "reading response from " + where + " failed: " + hec.message());
    }
    Resp r;
    r.status = p.get().result_int();
    bool success = r.status >= 200 && r.status < 300;
    uint64_t limit = success ? req.body_limit : std::min(req.body_limit, kErrorBodyLimit);
    if (!success) limit = kErrorBodyLimit;
    auto cl = p.content_length();
    if (req.method != http::verb::head && cl && *cl > limit) {
      if (success) {
        co_return make_error(Errc::too_large, "response from " + where + " is " +
                                                  std::to_string(*cl) + " bytes, over the " +
                                                  std::to_string(limit) + " byte limit");
      }
      // An oversized error body: skip it, drop the connection.
      p.skip(true);
    } else {
      p.body_limit(limit);
    }
    if (!p.is_done()) {
      low.expires_at(deadline);
      auto [bec, bn] =
          co_await http::async_read(stream, conn.buffer, p, asio::as_tuple(asio::use_awaitable));
      (void)bn;
      if (bec) {
        if (bec == http::error::body_limit) {
          co_return make_error(Errc::too_large, "response from " + where + " exceeds the " +
                                                    std::to_string(limit) + " byte limit");
        }
        if (bec == beast::error::timeout || Clock::now() >= deadline) {
          co_return timeout_error("reading from " + where);
        }
        co_return make_error(Errc::unavailable,
                             "response from " + where + " truncated: " + bec.message());
      }
    }
    const auto& h = p.get();
    auto field = [&](http::field f) { return std::string(h[f]); };
    r.content_type = field(http::field::content_type);
    r.docker_digest = std::string(h["Docker-Content-Digest"]);
    r.www_authenticate = field(http::field::www_authenticate);
    r.location = field(http::field::location);
    r.retry_after = field(http::field::retry_after);
    r.link = field(http::field::link);
    if (!(req.method != http::verb::head && cl && *cl > limit)) r.body = p.release().body();
    // Bytes beyond the response (we never pipeline) mean a confused peer: do not reuse.
    keep_alive = h.keep_alive() && p.is_done() && conn.buffer.size() == 0 &&
                 !(req.method != http::verb::head && cl && *cl > limit);
    co_return r;
  }

  // One HTTP exchange, on a pooled connection when one is idle. A pooled connection that fails
  // before any response byte is retried once on a fresh connection.
  awaitable<Result<Resp>> round_trip(const Req& req, Deadline deadline, bool& retryable) {
    const std::string key = pool_key(req.url);
    for (int attempt = 0; attempt < 2; ++attempt) {
      retryable = true;
      if (Clock::now() >= deadline) co_return timeout_error("request to " + req.url.authority());
      std::unique_ptr<Conn> conn = attempt == 0 ? take_idle(key) : nullptr;
      bool reused = conn != nullptr;
      if (!conn) {
        auto c = co_await connect(req.url, deadline, retryable);
        if (!c) co_return c.error();
        conn = std::move(*c);
      }
      requests.fetch_add(1, std::memory_order_relaxed);
      bool stale = false;
      bool keep_alive = false;
      // No co_await inside ?: (GCC 12 miscompiles it).
      Result<Resp> r = make_error(Errc::internal, "no exchange");
      if (conn->tls) {
        r = co_await exchange_on(*conn->tls, *conn, req, deadline, stale, keep_alive);
      } else {
        r = co_await exchange_on(*conn->plain, *conn, req, deadline, stale, keep_alive);
      }
      if (!r) {
        if (reused && stale) continue;
        if (r.error().code == Errc::too_large || r.error().code == Errc::timeout) {
          retryable = false;
        }
        co_return r;
      }
      if (keep_alive) put_idle(key, std::move(conn));
      co_return r;
    }
    co_return make_error(Errc::unavailable, "request to " + req.url.authority() + " failed");
  }

  // Waits before retry number `attempt` (0-based). False when the wait would pass the deadline.
  awaitable<bool> backoff(int attempt, const std::string& retry_after, Deadline deadline) {
    auto delay = opts.backoff_base * (1LL << std::min(attempt, 16));
    if (delay > opts.max_backoff) delay = opts.max_backoff;
    {
      thread_local std::mt19937_64 rng{std::random_device{}()};
      std::uniform_int_distribution<int64_t> dist(delay.count() / 2, delay.count());
      delay = std::chrono::milliseconds(dist(rng));
    }
    if (!retry_after.empty() && retry_after.size() <= 6 &&
        retry_after.find_first_not_of("0123456789") == std::string::npos) {
      delay = std::chrono::seconds(std::stoll(retry_after));
    }
    if (Clock::now() + delay >= deadline) co_return false;
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(delay);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return Clock::now() < deadline;
  }

  // round_trip with retries for network errors, 429 and 5xx. Returns the final response,
  // whatever its status (a 5xx after the last retry included).
  awaitable<Result<Resp>> send_retrying(const Req& req, Deadline deadline) {
    for (int attempt = 0;; ++attempt) {
      bool retryable = false;
      auto r = co_await round_trip(req, deadline, retryable);
      bool again;
      std::string retry_after;
      if (!r) {
        again = retryable;
      } else {
        again = r->status == 429 || r->status >= 500;
        retry_after = r->retry_after;
      }
      if (!again || attempt >= opts.max_retries) co_return r;
      spdlog::debug("registry: retrying {} {} ({})", std::string(http::to_string(req.method)),
                    req.url.authority(), r ? status_text(r->status) : r.error().message);
      if (!co_await backoff(attempt, retry_after, deadline)) co_return r;
    }
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
    Req req;
    req.url = *url;
    req.body_limit = kTokenBodyLimit;
    req.accept = "application/json";
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
      req.method = http::verb::post;
      req.content_type = "application/x-www-form-urlencoded";
      auto u2 = parse_url(ha.realm);
      if (!u2) co_return u2.error();
      req.url = *u2;
      req.body = refresh_token_form(ha.service, scope, cred->identity_token, "sigil");
    } else if (may_send && cred->has_basic()) {
      req.authorization = basic_authorization(cred->username, cred->password);
    }
    token_requests.fetch_add(1, std::memory_order_relaxed);
    auto r = co_await send_retrying(req, deadline);
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

  // A registry API call with auth (anonymous first, then per challenge, re-auth once on 401),
  // retries, and redirects (GET only; Authorization never leaves the registry's origin).
  awaitable<Result<Resp>> fetch(http::verb method, const std::string& registry,
                                const std::string& repository, const std::string& path,
                                std::string accept, uint64_t limit, Deadline deadline,
                                const DockerConfig* extra) {
    auto o = origin(registry);
    if (!o) co_return o.error();
    Url cur = *o;
    cur.target = path;
    const std::string scope = pull_scope(repository);
    bool reauthed = false;
    int redirects = 0;
    for (;;) {
      if (Clock::now() >= deadline) co_return timeout_error("registry " + registry);
      const bool same = cur.same_origin(*o);
      Req req;
      req.method = method;
      req.url = cur;
      req.accept = accept;
      req.body_limit = limit;
      if (same) {
        auto a = co_await authorization_for(*o, registry, scope, deadline, extra);
        if (!a) co_return a.error();
        req.authorization = std::move(*a);
      }
      auto r = co_await send_retrying(req, deadline);
      if (!r) co_return r;
      unsigned s = r->status;
      if (s == 401 && same && !reauthed) {
        reauthed = true;
        auto st = co_await on_challenge(*o, registry, scope, r->www_authenticate, deadline, extra);
        if (!st) co_return st.error();
        continue;
      }
      if (s == 401 || s == 403) {
        co_return make_error(Errc::unauthorized, "registry " + registry + " denied access to " +
                                                     repository + " (" + status_text(s) + ")");
      }
      if (s == 429 || s >= 500) {
        co_return make_error(Errc::unavailable,
                             "registry " + registry + " unavailable (" + status_text(s) + ")");
      }
      if ((s == 301 || s == 302 || s == 303 || s == 307 || s == 308) && method == http::verb::get) {
        if (++redirects > opts.max_redirects) {
          co_return make_error(Errc::unavailable, "registry " + registry + ": too many redirects");
        }
        auto next = resolve_location(cur, r->location);
        if (!next)
          co_return make_error(Errc::unavailable,
                               "registry " + registry + ": " + next.error().message);
        if (next->scheme != "https" && !insecure(next->authority(), next->authority())) {
          co_return make_error(Errc::unavailable,
                               "registry " + registry + " redirected to a plain-http URL");
        }
        cur = std::move(*next);
        continue;
      }
      co_return r;
    }
  }
};

HttpClient::HttpClient(boost::asio::any_io_executor executor, ClientOptions options) {
  try {
    impl_ = std::make_shared<Impl>();
    impl_->ex = asio::make_strand(executor);
    impl_->opts = std::move(options);
    impl_->init = impl_->setup();
  } catch (const std::exception& e) {
    ERR_clear_error();
    if (impl_)
      impl_->init = make_error(Errc::internal, std::string("TLS setup failed: ") + e.what());
  }
}

HttpClient::~HttpClient() = default;

Status HttpClient::init_status() const {
  if (!impl_) return make_error(Errc::internal, "registry client not constructed");
  return impl_->init;
}

bool HttpClient::has_credentials_for(const std::string& registry) const {
  return impl_ && impl_->opts.credentials.find(registry).has_value();
}

bool HttpClient::covers(const PullCredentials& creds, const std::string& registry) const {
  return creds && creds->find(registry).has_value();
}

uint64_t HttpClient::request_count() const {
  return impl_ ? impl_->requests.load() : 0;
}
uint64_t HttpClient::token_request_count() const {
  return impl_ ? impl_->token_requests.load() : 0;
}

namespace {

// Runs body, turning any exception (bad_alloc, a library surprise) into Errc::internal.
// The body runs on the client's strand: Beast streams are not thread-safe, and a stream's
// deadline timer fires on the executor of the operation that armed it. With every connection
// touched only from the strand, a timer handler can never race the request that reuses (or
// the error path that frees) its connection, whatever number of threads runs the io_context.
template <class T, class F>
awaitable<Result<T>> guarded(const asio::any_io_executor& strand, F&& body) {
  try {
    // co_spawn needs a default-constructible result; Result<T> is not, so wrap it.
    auto wrapped = [&]() -> awaitable<std::optional<Result<T>>> { co_return co_await body(); };
    // The caller's cancellation slot is deliberately NOT connected to this co_spawn: Boost
    // 1.81's co_spawn forwards a cancellation to another executor by dispatching a raw
    // pointer to its signal, which dangles when the child finishes first (the crash of an
    // admission cut by its deadline while fetches were in flight). Registry work stops at
    // its deadline instead (ARCHITECTURE.md, "Async model": deadlines, not cancellation,
    // across executors).
    auto r = co_await asio::co_spawn(
        strand, wrapped(),
        asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable));
    if (!r) co_return make_error(Errc::internal, "registry client: no result");
    co_return std::move(*r);
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
        co_await impl->fetch(http::verb::head, ref.registry, ref.repository, *path,
                             std::string(oci::media::kManifestAccept), 0, deadline, creds.get());
    if (!r) co_return r.error();
    if (r->status == 404) {
      co_return make_error(Errc::not_found, "image " + ref.str() + " not found in registry");
    }
    if (r->status != 200) {
      co_return make_error(Errc::unavailable, "resolving " + ref.str() + ": registry answered " +
                                                  status_text(r->status));
    }
    if (!r->docker_digest.empty()) {
      if (!is_sha256_digest(r->docker_digest)) {
        co_return make_error(Errc::verification,
                             "resolving " + ref.str() +
                                 ": registry sent a Docker-Content-Digest that is not sha256");
      }
      co_return r->docker_digest;
    }
    // No digest header: fetch the manifest and hash it ourselves.
    auto m = co_await get_manifest(ref.registry, ref.repository, ref.tag, deadline, creds);
    if (!m) co_return m.error();
    co_return m->digest;
  };
  co_return co_await guarded<std::string>(impl->ex, body);
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
        http::verb::get, registry, repository, *path, std::string(oci::media::kManifestAccept),
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
    out.media_type = r->content_type;
    out.body = std::move(r->body);
    co_return out;
  };
  co_return co_await guarded<ManifestResponse>(impl->ex, body);
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
    auto r = co_await impl->fetch(http::verb::get, registry, repository, *path, std::string(),
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
  co_return co_await guarded<std::string>(impl->ex, body);
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
          http::verb::get, registry, repository, path, std::string(oci::media::kOciIndex),
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
      auto index = oci::parse_manifest(r->body, r->content_type);
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
      path = link_next_target(r->link);
    }
    co_return out;
  };
  co_return co_await guarded<std::vector<oci::Descriptor>>(impl->ex, body);
}

}  // namespace sigil::registry
