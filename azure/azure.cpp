// azure/azure.cpp: AzureCredentials itself (see azure.hpp): the identities it was given and
// their checks, the background refresh and warm-up, and the public calls (for_registry,
// aad_token, get_with_bearer for Key Vault, stats). The AAD token sources are in
// aad_client.cpp, the ACR exchange in acr_exchange.cpp (azure/detail/credentials_impl.hpp).
#include "azure/azure.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "azure/detail/credentials_impl.hpp"
#include "common/encoding.hpp"
#include "net/client.hpp"
#include "net/url.hpp"

namespace sigil::azure {

using detail::token_limits;
using std::chrono::seconds;

namespace {

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

}  // namespace

AzureCredentials::Impl::Impl(const asio::any_io_executor& executor, Options o)
    : ex(executor), opt(std::move(o)), client(executor, client_options(opt)) {
  if (opt.workload_identity) {
    identities.push_back({Kind::workload, "azure workload identity (client id " +
                                              printable(opt.workload_identity->client_id, 64) +
                                              ")"});
  }
  if (opt.managed_identity.enabled) {
    identities.push_back({Kind::imds, opt.managed_identity.client_id.empty()
                                          ? std::string("azure managed identity (system-assigned)")
                                          : "azure managed identity (client id " +
                                                printable(opt.managed_identity.client_id, 64) +
                                                ")"});
  }
  for (const std::string& r : opt.warm_registries) warm_hosts.insert(normalize_host(r));
  init = check();
}

net::ClientOptions AzureCredentials::Impl::client_options(const Options& o) {
  net::ClientOptions c;
  c.tls = o.tls;
  c.user_agent = "sigil/0.1 azure";
  c.fail_fast = o.fail_fast;
  c.max_connections = kMaxConnections;
  c.reserved_connections = kReservedConnections;
  c.max_connections_per_host = kConnectionsPerHost;
  return c;
}

Status AzureCredentials::Impl::check() {
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
      return make_error(Errc::invalid_argument, "azure managed identity: endpoint \"" +
                                                    printable(opt.managed_identity.endpoint, 100) +
                                                    "\" is not a URL");
  }
  for (const std::string& r : opt.warm_registries) {
    if (!opt.registries.allows(r))
      return make_error(Errc::invalid_argument, "azure: warm registry \"" + printable(r, 100) +
                                                    "\" is not in the Azure registry host list");
  }
  return {};
}

void AzureCredentials::Impl::report(std::string_view source, bool ok) const {
  if (!opt.on_refresh) return;
  try {
    opt.on_refresh(source, ok);
  } catch (...) {  // an observer's failure is not the credential's
  }
}

void AzureCredentials::Impl::log_state(const std::string& what, const Status& st) {
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

asio::awaitable<void> AzureCredentials::Impl::warm_all() {
  for (const std::string& r : opt.warm_registries) {
    const std::string host = normalize_host(r);
    auto rt = co_await refresh_token(host, std::chrono::steady_clock::now() + seconds(30), false);
    (rt ? refreshes : refresh_failures)++;
    log_state("warm registry " + host, rt ? Status() : Status(rt.error()));
  }
}

asio::awaitable<void> AzureCredentials::Impl::refresh_due() {
  const SysTime t = now();
  // Due when less than refresh_before is left, or less than half its lifetime, whichever comes
  // first: a refresh_before at or past a token's lifetime (ACR's access tokens live about 75
  // minutes) would otherwise make every token due again at every tick.
  const auto due = [&](SysTime exp, SysTime fetched) {
    const SysTime::duration window = std::min<SysTime::duration>(
        opt.refresh_before, std::max<SysTime::duration>((exp - fetched) / 2, {}));
    return exp - t < window;
  };
  std::vector<std::pair<size_t, std::string>> aad_due;
  std::vector<std::string> rt_due;
  std::vector<std::pair<std::string, std::string>> at_due;
  {
    std::lock_guard lock(mu);
    for (auto& [k, v] : aad)
      if (due(v.expires_at, v.fetched_at)) aad_due.push_back(k);
    std::set<std::string> warm, in_use;  // registries kept fresh: listed, or used lately
    for (const std::string& r : opt.warm_registries) {
      const std::string host = normalize_host(r);
      warm.insert(host);
      if (!refresh.count(host)) rt_due.push_back(host);
    }
    for (auto it = access.begin(); it != access.end();) {
      if (t - it->second.last_used > opt.keep_warm_for) {
        it = access.erase(it);
        continue;
      }
      in_use.insert(it->first.first);
      if (due(it->second.expires_at, it->second.fetched_at)) at_due.push_back(it->first);
      ++it;
    }
    // A registry no admission has used for keep_warm_for (its access tokens are gone) and that
    // is not listed: its refresh token is dropped, not renewed for the life of the process.
    for (auto it = refresh.begin(); it != refresh.end();) {
      const bool idle = !warm.count(it->first) && !in_use.count(it->first) &&
                        t - it->second.fetched_at > opt.keep_warm_for;
      if (idle) {
        it = refresh.erase(it);
        continue;
      }
      if (due(it->second.expires_at, it->second.fetched_at)) rt_due.push_back(it->first);
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

asio::awaitable<void> AzureCredentials::Impl::loop(std::weak_ptr<Impl> weak) {
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
  mark_listed(req);
  req.authorization = "Bearer " + token;
  self->vault_requests++;
  auto r = co_await self->client.send(std::move(req), deadline, token_limits());
  if (!r) co_return std::move(r).error();
  HttpAnswer a;
  a.status = r->status;
  a.body = std::move(r->body);
  co_return a;
}

net::ConnStats AzureCredentials::conn_stats() const {
  return impl_->client.conn_stats();
}

net::OutageMemo::Stats AzureCredentials::outage_stats() const {
  return impl_->client.outage_stats();
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
