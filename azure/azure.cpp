// azure/azure.cpp: Workload Identity, IMDS, the ACR exchange, caches and background refresh
// (see azure.hpp).
#include "azure/azure.hpp"

#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/encoding.hpp"
#include "net/client.hpp"
#include "net/url.hpp"

namespace sigil::azure {

namespace asio = boost::asio;
using std::chrono::seconds;

namespace {

constexpr uint64_t kMaxTokenAnswer = 64 * 1024;
constexpr size_t kMaxTokenFile = 64 * 1024;

net::Limits token_limits() {
  net::Limits l;
  l.max_body = kMaxTokenAnswer;
  l.max_error_body = 8 * 1024;
  return l;
}

// distribution's repository grammar, so nothing can add a scope or an action.
bool valid_repository(std::string_view r) {
  if (r.empty() || r.size() > 255) return false;
  for (char c : r) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                    c == '-' || c == '/';
    if (!ok) return false;
  }
  return true;
}

std::string status_message(unsigned status, const std::string& detail) {
  std::string m = "answered " + std::to_string(status);
  if (!detail.empty()) m += " (" + detail + ")";
  return m;
}

Errc errc_of_status(unsigned status) {
  if (status == 401 || status == 403 || status == 400) return Errc::unauthorized;
  if (status == 404) return Errc::not_found;
  return Errc::unavailable;
}

}  // namespace

std::optional<WorkloadIdentityConfig> workload_identity_from_env(
    const std::function<const char*(const char*)>& getenv) {
  const auto var = [&](const char* name) -> std::string {
    const char* v = getenv(name);
    return v == nullptr ? std::string() : std::string(trim(v));
  };
  WorkloadIdentityConfig c;
  c.client_id = var("AZURE_CLIENT_ID");
  c.tenant_id = var("AZURE_TENANT_ID");
  c.token_file = var("AZURE_FEDERATED_TOKEN_FILE");
  if (c.client_id.empty() || c.tenant_id.empty() || c.token_file.empty()) return std::nullopt;
  if (std::string a = var("AZURE_AUTHORITY_HOST"); !a.empty()) c.authority_host = a;
  return c;
}

struct AzureCredentials::Impl : std::enable_shared_from_this<Impl> {
  enum class Kind { workload, imds };
  struct Identity {
    Kind kind;
    std::string name;
  };
  struct Refresh {
    std::string token;
    SysTime expires_at;
  };
  struct Access {
    std::string token;
    SysTime expires_at;
    SysTime last_used;
  };

  Impl(const asio::any_io_executor& executor, Options o)
      : ex(executor), opt(std::move(o)), client(executor, client_options(opt)) {
    if (opt.workload_identity) {
      identities.push_back({Kind::workload, "azure workload identity (client id " +
                                                printable(opt.workload_identity->client_id, 64) +
                                                ")"});
    }
    if (opt.managed_identity.enabled) {
      identities.push_back(
          {Kind::imds, opt.managed_identity.client_id.empty()
                           ? std::string("azure managed identity (system-assigned)")
                           : "azure managed identity (client id " +
                                 printable(opt.managed_identity.client_id, 64) + ")"});
    }
    init = check();
  }

  static net::ClientOptions client_options(const Options& o) {
    net::ClientOptions c;
    c.tls = o.tls;
    c.user_agent = "sigil/0.1 azure";
    return c;
  }

  Status check() {
    if (auto st = client.init_status(); !st) return st;
    if (opt.workload_identity) {
      auto u = net::parse_url(authority_base() + "x");
      if (!u || u->scheme != "https")
        return make_error(Errc::invalid_argument,
                          "azure workload identity: AZURE_AUTHORITY_HOST \"" +
                              printable(opt.workload_identity->authority_host, 100) +
                              "\" is not an https URL");
    }
    if (opt.managed_identity.enabled) {
      auto u = net::parse_url(opt.managed_identity.endpoint);
      if (!u)
        return make_error(Errc::invalid_argument,
                          "azure managed identity: endpoint \"" +
                              printable(opt.managed_identity.endpoint, 100) + "\" is not a URL");
    }
    for (const std::string& r : opt.warm_registries) {
      if (!opt.registries.allows(r))
        return make_error(Errc::invalid_argument, "azure: warm registry \"" + printable(r, 100) +
                                                      "\" is not in the Azure registry host list");
    }
    return {};
  }

  std::string authority_base() const {
    std::string a = opt.workload_identity->authority_host;
    if (a.empty() || a.back() != '/') a += '/';
    return a;
  }

  SysTime now() const { return opt.clock->now(); }

  // --- AAD tokens ---------------------------------------------------------------------------

  asio::awaitable<Result<AadToken>> fetch_workload(std::string scope, Deadline deadline) {
    const WorkloadIdentityConfig& wi = *opt.workload_identity;
    // Re-read on every request: the kubelet rotates the projected token.
    std::string assertion;
    {
      std::ifstream f(wi.token_file, std::ios::binary);
      if (!f) {
        co_return make_error(Errc::unauthorized, "cannot read the federated token file " +
                                                     printable(wi.token_file, 200));
      }
      std::string buf(kMaxTokenFile + 1, '\0');
      f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      buf.resize(static_cast<size_t>(f.gcount()));
      if (buf.size() > kMaxTokenFile)
        co_return make_error(Errc::too_large, "the federated token file " +
                                                  printable(wi.token_file, 200) + " is too large");
      assertion = std::string(trim(buf));
    }
    if (assertion.empty())
      co_return make_error(Errc::unauthorized, "the federated token file " +
                                                   printable(wi.token_file, 200) + " is empty");
    const std::string endpoint =
        authority_base() + net::pct_encode(wi.tenant_id) + "/oauth2/v2.0/token";
    auto url = net::parse_url(endpoint);
    if (!url)
      co_return make_error(Errc::invalid_argument, "bad AAD endpoint: " + url.error().message);
    net::Request req = net::form_post(*url, workload_identity_form(wi.client_id, assertion, scope));
    aad_requests++;
    auto r = co_await client.send(std::move(req), deadline, token_limits());
    if (!r) co_return make_error(r.error().code, "AAD " + url->origin() + ": " + r.error().message);
    if (r->status != 200) {
      co_return make_error(
          errc_of_status(r->status),
          "AAD " + url->origin() + " " + status_message(r->status, aad_error_message(r->body)));
    }
    auto t = parse_aad_token_response(r->body, now());
    if (!t)
      co_return make_error(Errc::parse_error, "AAD " + url->origin() + ": " + t.error().message);
    if (t->tenant.empty()) t->tenant = wi.tenant_id;
    co_return t;
  }

  asio::awaitable<Result<AadToken>> fetch_imds(std::string scope, Deadline deadline) {
    const ManagedIdentityConfig& mi = opt.managed_identity;
    std::string target = mi.endpoint;
    while (!target.empty() && target.back() == '/') target.pop_back();
    target += "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" +
              net::pct_encode(resource_of_scope(scope));
    if (!mi.client_id.empty()) target += "&client_id=" + net::pct_encode(mi.client_id);
    auto url = net::parse_url(target);
    if (!url)
      co_return make_error(Errc::invalid_argument, "bad IMDS endpoint: " + url.error().message);
    net::Request req = net::get_request(*url, "application/json");
    req.headers.emplace_back("Metadata", "true");
    req.retry = opt.imds_retry;  // 429 and 5xx, with backoff and Retry-After
    imds_requests++;
    auto r = co_await client.send(std::move(req), deadline, token_limits());
    if (!r)
      co_return make_error(r.error().code, "IMDS " + url->origin() + ": " + r.error().message);
    if (r->status != 200) {
      co_return make_error(
          errc_of_status(r->status),
          "IMDS " + url->origin() + " " + status_message(r->status, aad_error_message(r->body)));
    }
    auto t = parse_aad_token_response(r->body, now());
    if (!t)
      co_return make_error(Errc::parse_error, "IMDS " + url->origin() + ": " + t.error().message);
    co_return t;
  }

  // Options::on_refresh, never throwing.
  void report(std::string_view source, bool ok) const {
    if (!opt.on_refresh) return;
    try {
      opt.on_refresh(source, ok);
    } catch (...) {  // an observer's failure is not the credential's
    }
  }

  asio::awaitable<Result<AadToken>> aad_for(size_t i, std::string scope, Deadline deadline,
                                            bool force) {
    const auto key = std::make_pair(i, scope);
    if (!force) {
      std::lock_guard lock(mu);
      auto it = aad.find(key);
      if (it != aad.end() && it->second.expires_at - now() > opt.min_validity) co_return it->second;
    }
    Result<AadToken> t = make_error(Errc::internal, "no identity");
    if (identities[i].kind == Kind::workload) {
      t = co_await fetch_workload(scope, deadline);
    } else {
      t = co_await fetch_imds(scope, deadline);
    }
    report(identities[i].kind == Kind::workload ? "workload-identity" : "managed-identity", t.ok());
    if (t) {
      std::lock_guard lock(mu);
      aad.insert_or_assign(key, *t);
    }
    co_return t;
  }

  asio::awaitable<Result<std::pair<AadToken, size_t>>> aad_any(std::string scope, Deadline deadline,
                                                               bool force) {
    if (identities.empty())
      co_return make_error(Errc::unauthorized, "no Azure identity configured");
    std::string errors;
    auto failures = std::make_shared<IdentityFailures>();
    for (size_t i = 0; i < identities.size(); ++i) {
      auto t = co_await aad_for(i, scope, deadline, force);
      if (t) co_return std::make_pair(std::move(t).value(), i);
      if (!errors.empty()) errors += "; ";
      errors += identities[i].name + ": " + t.error().message;
      failures->items.push_back({identities[i].kind == Kind::imds, t.error().code});
    }
    Error e = make_error(Errc::unauthorized, errors);
    e.detail = std::move(failures);
    co_return e;
  }

  // --- coalescing ---------------------------------------------------------------------------
  // Concurrent fetches of the same token (a burst of admissions on a cold cache, a background
  // refresh meeting an admission) share one request: the first caller fetches, the others poll
  // its result every few milliseconds until it is there or their deadline passes. Polling
  // keeps every waiter on its own executor and timer (no cross-thread wake-up of a timer).

  struct Flight {
    bool done = false;
    std::optional<Result<std::string>> result;
  };

  // The caller's flight for key, and whether it leads it.
  std::pair<std::shared_ptr<Flight>, bool> join(const std::string& key) {
    std::lock_guard lock(mu);
    auto& f = flights[key];
    if (f) return {f, false};
    f = std::make_shared<Flight>();
    return {f, true};
  }

  void land(const std::string& key, const std::shared_ptr<Flight>& f,
            const Result<std::string>& r) {
    std::lock_guard lock(mu);
    f->result = r;
    f->done = true;
    auto it = flights.find(key);
    if (it != flights.end() && it->second == f) flights.erase(it);
  }

  asio::awaitable<Result<std::string>> follow(std::shared_ptr<Flight> f, Deadline deadline) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (f->done) co_return *f->result;
      }
      if (std::chrono::steady_clock::now() >= deadline)
        co_return make_error(Errc::timeout, "timed out waiting for a token being fetched");
      timer.expires_after(std::chrono::milliseconds(5));
      auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return make_error(Errc::unavailable, "waiting for a token: cancelled");
    }
  }

  // --- ACR ----------------------------------------------------------------------------------

  asio::awaitable<Result<std::string>> refresh_token(std::string host, Deadline deadline,
                                                     bool force) {
    if (!force) {
      std::lock_guard lock(mu);
      auto it = refresh.find(host);
      if (it != refresh.end() && it->second.expires_at - now() > opt.min_validity)
        co_return it->second.token;
    }
    const std::string key = "refresh " + host;
    std::pair<std::shared_ptr<Flight>, bool> joined = join(key);
    std::shared_ptr<Flight> flight = joined.first;
    if (!joined.second) co_return co_await follow(flight, deadline);
    auto r = co_await refresh_token_once(host, deadline, force);
    report("acr-refresh-token", r.ok());
    land(key, flight, r);
    co_return r;
  }

  asio::awaitable<Result<std::string>> access_token(std::string host, std::string scope,
                                                    Deadline deadline) {
    const std::string key = "access " + host + " " + scope;
    std::pair<std::shared_ptr<Flight>, bool> joined = join(key);
    std::shared_ptr<Flight> flight = joined.first;
    if (!joined.second) co_return co_await follow(flight, deadline);
    auto r = co_await access_token_once(host, scope, deadline);
    report("acr-access-token", r.ok());
    land(key, flight, r);
    co_return r;
  }

  asio::awaitable<Result<std::string>> refresh_token_once(std::string host, Deadline deadline,
                                                          bool force) {
    if (!force) {
      std::lock_guard lock(mu);
      auto it = refresh.find(host);
      if (it != refresh.end() && it->second.expires_at - now() > opt.min_validity)
        co_return it->second.token;
    }
    if (identities.empty())
      co_return make_error(Errc::unauthorized, "no Azure identity configured");
    auto url = net::parse_url("https://" + host + "/oauth2/exchange");
    if (!url)
      co_return make_error(Errc::invalid_argument, "bad registry host " + printable(host, 100));
    std::string errors;
    auto failures = std::make_shared<IdentityFailures>();
    const auto fail = [&](size_t i, Errc code, const std::string& m) {
      if (!errors.empty()) errors += "; ";
      errors += identities[i].name + ": " + m;
      failures->items.push_back({identities[i].kind == Kind::imds, code});
    };
    const auto failure = [&](Errc code) {
      Error e = make_error(code, errors);
      e.detail = failures;
      return e;
    };
    for (size_t i = 0; i < identities.size(); ++i) {
      for (int attempt = 0; attempt < 2; ++attempt) {
        auto a = co_await aad_for(i, std::string(kAcrScope), deadline, attempt == 1);
        if (!a) {
          fail(i, a.error().code, a.error().message);
          break;
        }
        std::string tenant = a->tenant;
        if (identities[i].kind == Kind::workload) tenant = opt.workload_identity->tenant_id;
        net::Request req = net::form_post(*url, acr_exchange_form(host, tenant, a->access_token));
        exchange_requests++;
        auto r = co_await client.send(std::move(req), deadline, token_limits());
        if (!r) {
          // The registry itself is unreachable: another identity will not help.
          fail(i, r.error().code, "ACR " + host + " /oauth2/exchange: " + r.error().message);
          co_return failure(r.error().code);
        }
        if (r->status == 401 && attempt == 0) {
          // AAD's token may have been revoked or its identity changed: fetch a new one once.
          std::lock_guard lock(mu);
          aad.erase(std::make_pair(i, std::string(kAcrScope)));
          continue;
        }
        if (r->status != 200) {
          fail(i, errc_of_status(r->status),
               "ACR " + host + " /oauth2/exchange " +
                   status_message(r->status, acr_error_message(r->body)));
          break;
        }
        auto rt = parse_acr_refresh_token(r->body);
        if (!rt) {
          fail(i, Errc::parse_error, "ACR " + host + " /oauth2/exchange: " + rt.error().message);
          break;
        }
        auto exp = jwt_expiry(*rt);
        Refresh entry{*rt, exp ? *exp : a->expires_at};
        {
          std::lock_guard lock(mu);
          refresh.insert_or_assign(host, entry);
        }
        co_return std::move(rt).value();
      }
    }
    co_return failure(Errc::unauthorized);
  }

  asio::awaitable<Result<std::string>> access_token_once(std::string host, std::string scope,
                                                         Deadline deadline) {
    auto url = net::parse_url("https://" + host + "/oauth2/token");
    if (!url)
      co_return make_error(Errc::invalid_argument, "bad registry host " + printable(host, 100));
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto rt = co_await refresh_token(host, deadline, attempt == 1);
      if (!rt) co_return std::move(rt).error();
      net::Request req = net::form_post(*url, acr_token_form(host, scope, *rt));
      token_requests++;
      auto r = co_await client.send(std::move(req), deadline, token_limits());
      if (!r)
        co_return make_error(r.error().code,
                             "ACR " + host + " /oauth2/token: " + r.error().message);
      if (r->status == 401 && attempt == 0) continue;  // refresh token refused: exchange anew once
      if (r->status != 200) {
        co_return make_error(errc_of_status(r->status),
                             "ACR " + host + " /oauth2/token " +
                                 status_message(r->status, acr_error_message(r->body)));
      }
      auto at = parse_acr_access_token(r->body);
      if (!at)
        co_return make_error(Errc::parse_error,
                             "ACR " + host + " /oauth2/token: " + at.error().message);
      auto exp = jwt_expiry(*at);
      const SysTime t = now();
      // No exp: the distribution spec's default lifetime.
      Access entry{*at, exp ? *exp : t + seconds(60), t};
      {
        std::lock_guard lock(mu);
        auto it = access.find(std::make_pair(host, scope));
        if (it != access.end()) entry.last_used = it->second.last_used;
        if (access.size() >= opt.max_access_tokens && it == access.end()) evict_one();
        access.insert_or_assign(std::make_pair(host, scope), entry);
      }
      co_return std::move(at).value();
    }
    co_return make_error(Errc::internal, "unreachable");
  }

  void evict_one() {  // under mu: the least recently used access token
    auto oldest = access.begin();
    for (auto it = access.begin(); it != access.end(); ++it)
      if (it->second.last_used < oldest->second.last_used) oldest = it;
    if (oldest != access.end()) access.erase(oldest);
  }

  // --- background ---------------------------------------------------------------------------

  void log_state(const std::string& what, const Status& st) {
    std::lock_guard lock(mu);
    std::string& last = last_logged[what];
    const std::string now_state = st ? std::string("ok") : st.error().message;
    if (last == now_state) return;
    last = now_state;
    if (st) {
      spdlog::info("azure: {}: ok", what);
    } else {
      spdlog::warn("azure: {}: {}", what, st.error().message);
    }
  }

  asio::awaitable<void> warm_all() {
    for (const std::string& r : opt.warm_registries) {
      const std::string host = normalize_host(r);
      auto rt = co_await refresh_token(host, std::chrono::steady_clock::now() + seconds(30), false);
      (rt ? refreshes : refresh_failures)++;
      log_state("warm registry " + host, rt ? Status() : Status(rt.error()));
    }
  }

  asio::awaitable<void> refresh_due() {
    const SysTime t = now();
    const auto due = [&](SysTime exp) { return exp - t < opt.refresh_before; };
    std::vector<std::pair<size_t, std::string>> aad_due;
    std::vector<std::string> rt_due;
    std::vector<std::pair<std::string, std::string>> at_due;
    {
      std::lock_guard lock(mu);
      for (auto& [k, v] : aad)
        if (due(v.expires_at)) aad_due.push_back(k);
      for (auto& [k, v] : refresh)
        if (due(v.expires_at)) rt_due.push_back(k);
      for (const std::string& r : opt.warm_registries) {
        const std::string host = normalize_host(r);
        if (!refresh.count(host)) rt_due.push_back(host);
      }
      for (auto it = access.begin(); it != access.end();) {
        if (t - it->second.last_used > opt.keep_warm_for) {
          it = access.erase(it);
          continue;
        }
        if (due(it->second.expires_at)) at_due.push_back(it->first);
        ++it;
      }
    }
    const auto dl = [] { return std::chrono::steady_clock::now() + seconds(30); };
    for (auto& [i, scope] : aad_due) {
      auto r = co_await aad_for(i, scope, dl(), true);
      (r ? refreshes : refresh_failures)++;
      log_state("refresh " + identities[i].name + " token for " + scope,
                r ? Status() : Status(r.error()));
    }
    for (const std::string& host : rt_due) {
      auto r = co_await refresh_token(host, dl(), true);
      (r ? refreshes : refresh_failures)++;
      log_state("refresh registry " + host, r ? Status() : Status(r.error()));
    }
    for (auto& [host, scope] : at_due) {
      auto r = co_await access_token(host, scope, dl());
      (r ? refreshes : refresh_failures)++;
      log_state("refresh " + host + " " + scope, r ? Status() : Status(r.error()));
    }
  }

  static asio::awaitable<void> loop(std::weak_ptr<Impl> weak) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    bool first = true;
    for (;;) {
      std::chrono::milliseconds tick{0};
      {
        auto self = weak.lock();
        if (!self || self->stopped) co_return;
        if (first) {
          co_await self->warm_all();
          first = false;
        } else {
          co_await self->refresh_due();
        }
        tick = self->opt.refresh_tick;
      }
      timer.expires_after(tick);
      auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
    }
  }

  asio::any_io_executor ex;
  Options opt;
  net::Client client;
  std::vector<Identity> identities;
  Status init;
  mutable std::mutex mu;
  std::map<std::pair<size_t, std::string>, AadToken> aad;        // (identity, scope)
  std::map<std::string, Refresh> refresh;                        // registry host
  std::map<std::pair<std::string, std::string>, Access> access;  // (host, scope)
  std::map<std::string, std::string> last_logged;
  std::map<std::string, std::shared_ptr<Flight>> flights;  // in-flight fetches, by key
  std::atomic<bool> stopped{false};
  std::atomic<bool> started{false};
  std::atomic<uint64_t> aad_requests{0}, imds_requests{0}, exchange_requests{0}, token_requests{0},
      vault_requests{0}, refresh_failures{0}, refreshes{0};
};

AzureCredentials::AzureCredentials(const asio::any_io_executor& executor, Options options)
    : impl_(std::make_shared<Impl>(executor, std::move(options))) {}

AzureCredentials::~AzureCredentials() {
  stop();
}

Status AzureCredentials::init_status() const {
  return impl_->init;
}
bool AzureCredentials::has_identity() const {
  return !impl_->identities.empty();
}

std::vector<std::string> AzureCredentials::identity_names() const {
  std::vector<std::string> out;
  for (const auto& i : impl_->identities) out.push_back(i.name);
  return out;
}

void AzureCredentials::start() {
  if (!impl_->init || impl_->identities.empty() || impl_->started.exchange(true)) return;
  asio::co_spawn(impl_->ex, Impl::loop(impl_), asio::detached);
}

void AzureCredentials::stop() {
  impl_->stopped = true;
}

bool AzureCredentials::covers(std::string_view host) const {
  return !impl_->identities.empty() && impl_->init && impl_->opt.registries.allows(host);
}

asio::awaitable<Result<std::optional<std::string>>> AzureCredentials::for_registry(
    std::string host, std::string repository, Deadline deadline) {
  auto self = impl_;
  if (!self->init) co_return self->init.error();
  const std::string h = normalize_host(host);
  // Not an Azure host (or a lookalike): Azure has nothing for it, and sends nothing.
  if (h.empty() || self->identities.empty() || !self->opt.registries.allows(h))
    co_return std::optional<std::string>();
  if (!valid_repository(repository))
    co_return make_error(Errc::invalid_argument,
                         "repository \"" + printable(repository, 100) + "\" is not valid");
  const std::string scope = acr_pull_scope(repository);
  {
    std::lock_guard lock(self->mu);
    auto it = self->access.find(std::make_pair(h, scope));
    const SysTime t = self->now();
    if (it != self->access.end() && it->second.expires_at - t > self->opt.min_validity) {
      it->second.last_used = t;
      co_return std::optional<std::string>("Bearer " + it->second.token);
    }
  }
  auto at = co_await self->access_token(h, scope, deadline);
  if (!at) co_return std::move(at).error();
  {
    std::lock_guard lock(self->mu);
    auto it = self->access.find(std::make_pair(h, scope));
    if (it != self->access.end()) it->second.last_used = self->now();
  }
  co_return std::optional<std::string>("Bearer " + *at);
}

void AzureCredentials::rejected(std::string_view host, std::string_view repository) {
  const std::string h = normalize_host(host);
  std::lock_guard lock(impl_->mu);
  impl_->access.erase(std::make_pair(h, acr_pull_scope(repository)));
}

asio::awaitable<Result<AadToken>> AzureCredentials::aad_token(std::string scope, Deadline deadline,
                                                              bool force) {
  auto self = impl_;
  if (!self->init) co_return self->init.error();
  auto r = co_await self->aad_any(scope, deadline, force);
  if (!r) co_return std::move(r).error();
  co_return std::move(r->first);
}

asio::awaitable<Result<AzureCredentials::HttpAnswer>> AzureCredentials::get_with_bearer(
    std::string url, std::string token, Deadline deadline) {
  auto self = impl_;
  auto u = net::parse_url(url);
  if (!u) co_return std::move(u).error();
  // The vault host rule lives here too, so no caller can send a vault token elsewhere.
  if (u->scheme != "https" || !self->opt.vaults.allows(u->authority()))
    co_return make_error(Errc::invalid_argument,
                         "host " + u->authority() + " is not in the Key Vault host list");
  net::Request req = net::get_request(*u, "application/json");
  req.authorization = "Bearer " + token;
  self->vault_requests++;
  auto r = co_await self->client.send(std::move(req), deadline, token_limits());
  if (!r) co_return std::move(r).error();
  HttpAnswer a;
  a.status = r->status;
  a.body = std::move(r->body);
  co_return a;
}

Stats AzureCredentials::stats() const {
  Stats s;
  s.aad_requests = impl_->aad_requests;
  s.imds_requests = impl_->imds_requests;
  s.exchange_requests = impl_->exchange_requests;
  s.token_requests = impl_->token_requests;
  s.vault_requests = impl_->vault_requests;
  s.refresh_failures = impl_->refresh_failures;
  s.refreshes = impl_->refreshes;
  return s;
}

const Options& AzureCredentials::options() const {
  return impl_->opt;
}

}  // namespace sigil::azure
