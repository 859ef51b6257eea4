// azure/acr_exchange.cpp: the ACR side of AzureCredentials (see azure.hpp): an AAD token
// exchanged on the registry's own host for a refresh token (/oauth2/exchange), that for an
// access token per (registry, scope) (/oauth2/token), both cached, and concurrent fetches of
// the same token coalesced into one request.
#include <chrono>
#include <utility>

#include "azure/detail/credentials_impl.hpp"
#include "common/encoding.hpp"
#include "net/url.hpp"

namespace sigil::azure {

using detail::errc_of_status;
using detail::status_message;
using detail::token_limits;
using std::chrono::seconds;

std::pair<std::shared_ptr<AzureCredentials::Impl::Flight>, bool> AzureCredentials::Impl::join(
    const std::string& key) {
  std::lock_guard lock(mu);
  return flights.join(key);
}

void AzureCredentials::Impl::land(const std::string& key, const std::shared_ptr<Flight>& f,
                                  const Result<std::string>& r) {
  std::lock_guard lock(mu);
  flights.land(key, f, r);
}

asio::awaitable<Result<std::string>> AzureCredentials::Impl::follow(std::shared_ptr<Flight> f,
                                                                    Deadline deadline) {
  auto r = co_await net::Flights<Result<std::string>>::follow(mu, std::move(f), deadline);
  if (r) co_return std::move(*r);
  if (std::chrono::steady_clock::now() >= deadline)
    co_return make_error(Errc::timeout, "timed out waiting for a token being fetched");
  co_return make_error(Errc::unavailable, "waiting for a token: cancelled");
}

asio::awaitable<Result<std::string>> AzureCredentials::Impl::refresh_token(std::string host,
                                                                           Deadline deadline,
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
  Result<std::string> r = make_error(Errc::internal, "");
  try {
    r = co_await refresh_token_once(host, deadline, force);
  } catch (const std::exception& e) {  // never a flight that does not land
    r = make_error(Errc::internal, std::string("internal error: ") + e.what());
  }
  report("acr-refresh-token", r.ok());
  land(key, flight, r);
  co_return r;
}

asio::awaitable<Result<std::string>> AzureCredentials::Impl::access_token(std::string host,
                                                                          std::string scope,
                                                                          Deadline deadline) {
  const std::string key = "access " + host + " " + scope;
  std::pair<std::shared_ptr<Flight>, bool> joined = join(key);
  std::shared_ptr<Flight> flight = joined.first;
  if (!joined.second) co_return co_await follow(flight, deadline);
  Result<std::string> r = make_error(Errc::internal, "");
  try {
    r = co_await access_token_once(host, scope, deadline);
  } catch (const std::exception& e) {  // never a flight that does not land
    r = make_error(Errc::internal, std::string("internal error: ") + e.what());
  }
  report("acr-access-token", r.ok());
  land(key, flight, r);
  co_return r;
}

asio::awaitable<Result<std::string>> AzureCredentials::Impl::refresh_token_once(std::string host,
                                                                                Deadline deadline,
                                                                                bool force) {
  if (!force) {
    std::lock_guard lock(mu);
    auto it = refresh.find(host);
    if (it != refresh.end() && it->second.expires_at - now() > opt.min_validity)
      co_return it->second.token;
  }
  if (identities.empty()) co_return make_error(Errc::unauthorized, "no Azure identity configured");
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
      if (operator_registry(host)) mark_listed(req);
      exchange_requests++;
      auto r = co_await client.send(std::move(req), deadline, token_limits());
      if (!r) {
        // The registry itself is unreachable: another identity will not help.
        fail(i, r.error().code, "ACR " + host + " /oauth2/exchange: " + r.error().message);
        co_return failure(r.error().code);
      }
      if (r->status == 401 && attempt == 0) {
        // AAD's token may have been revoked or its identity changed: fetch a new one once, and
        // at most once per kForcedAadRefresh per window: all pods' hosts share one, each of the
        // operator's registries has its own (credentials_impl.hpp).
        std::lock_guard lock(mu);
        const auto window = std::make_pair(i, operator_registry(host) ? host : std::string());
        auto it = aad_dropped.find(window);
        const SysTime t = now();
        if (it == aad_dropped.end() || t - it->second >= kForcedAadRefresh || t < it->second) {
          aad_dropped[window] = t;
          aad.erase(std::make_pair(i, std::string(kAcrScope)));
          continue;
        }
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
      Refresh entry{*rt, exp ? *exp : a->expires_at, now()};
      {
        std::lock_guard lock(mu);
        refresh.insert_or_assign(host, entry);
      }
      co_return std::move(rt).value();
    }
  }
  co_return failure(Errc::unauthorized);
}

asio::awaitable<Result<std::string>> AzureCredentials::Impl::access_token_once(std::string host,
                                                                               std::string scope,
                                                                               Deadline deadline) {
  auto url = net::parse_url("https://" + host + "/oauth2/token");
  if (!url)
    co_return make_error(Errc::invalid_argument, "bad registry host " + printable(host, 100));
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto rt = co_await refresh_token(host, deadline, attempt == 1);
    if (!rt) co_return std::move(rt).error();
    net::Request req = net::form_post(*url, acr_token_form(host, scope, *rt));
    if (operator_registry(host)) mark_listed(req);
    token_requests++;
    auto r = co_await client.send(std::move(req), deadline, token_limits());
    if (!r)
      co_return make_error(r.error().code, "ACR " + host + " /oauth2/token: " + r.error().message);
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
    Access entry{*at, exp ? *exp : t + seconds(60), t, t};
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

void AzureCredentials::Impl::evict_one() {  // under mu: the least recently used access token
  auto oldest = access.begin();
  for (auto it = access.begin(); it != access.end(); ++it)
    if (it->second.last_used < oldest->second.last_used) oldest = it;
  if (oldest != access.end()) access.erase(oldest);
}

}  // namespace sigil::azure
