// azure/aad_client.cpp: the AAD token sources of AzureCredentials (see azure.hpp): Workload
// Identity (the federated token file, re-read on every request) and managed identity through
// IMDS, their per-(identity, scope) cache, and the chain over the configured identities.
#include <fstream>
#include <utility>

#include "azure/detail/credentials_impl.hpp"
#include "common/encoding.hpp"
#include "net/url.hpp"

namespace sigil::azure {

using detail::errc_of_status;
using detail::status_message;
using detail::token_limits;

namespace {

constexpr size_t kMaxTokenFile = 64 * 1024;

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

std::string AzureCredentials::Impl::authority_base() const {
  std::string a = opt.workload_identity->authority_host;
  if (a.empty() || a.back() != '/') a += '/';
  return a;
}

asio::awaitable<Result<AadToken>> AzureCredentials::Impl::fetch_workload(std::string scope,
                                                                         Deadline deadline) {
  const WorkloadIdentityConfig& wi = *opt.workload_identity;
  // Re-read on every request: the kubelet rotates the projected token.
  std::string assertion;
  {
    std::ifstream f(wi.token_file, std::ios::binary);
    if (!f) {
      co_return make_error(Errc::unauthorized,
                           "cannot read the federated token file " + printable(wi.token_file, 200));
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
    co_return make_error(Errc::unauthorized,
                         "the federated token file " + printable(wi.token_file, 200) + " is empty");
  const std::string endpoint =
      authority_base() + net::pct_encode(wi.tenant_id) + "/oauth2/v2.0/token";
  auto url = net::parse_url(endpoint);
  if (!url)
    co_return make_error(Errc::invalid_argument, "bad AAD endpoint: " + url.error().message);
  net::Request req = net::form_post(*url, workload_identity_form(wi.client_id, assertion, scope));
  mark_listed(req);
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

asio::awaitable<Result<AadToken>> AzureCredentials::Impl::fetch_imds(std::string scope,
                                                                     Deadline deadline) {
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
  mark_listed(req);
  req.headers.emplace_back("Metadata", "true");
  req.retry = opt.imds_retry;  // 429 and 5xx, with backoff and Retry-After
  imds_requests++;
  auto r = co_await client.send(std::move(req), deadline, token_limits());
  if (!r) co_return make_error(r.error().code, "IMDS " + url->origin() + ": " + r.error().message);
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

asio::awaitable<Result<AadToken>> AzureCredentials::Impl::aad_for(size_t i, std::string scope,
                                                                  Deadline deadline, bool force) {
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

asio::awaitable<Result<std::pair<AadToken, size_t>>> AzureCredentials::Impl::aad_any(
    std::string scope, Deadline deadline, bool force) {
  if (identities.empty()) co_return make_error(Errc::unauthorized, "no Azure identity configured");
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

}  // namespace sigil::azure
