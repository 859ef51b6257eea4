// AzureCredentials and KeyVaultKeys against fake Entra ID, IMDS, ACR and Key Vault servers
// (real HTTP over real sockets on 127.0.0.1, TLS with the test CA) that speak the wire formats
// of platform-facts section 1 and mint tokens on a clock the test moves.
#include <atomic>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "azure/azure.hpp"
#include "azure/keyvault.hpp"
#include "fake_http.hpp"
#include "jwk_helpers.hpp"
#include "net/client.hpp"
#include "run_coro.hpp"

using namespace sigil;
using namespace sigil::azure;
using namespace sigil::azure::testing;
using namespace std::chrono_literals;
using sigil::test::FakeHttpOptions;
using sigil::test::FakeHttpServer;
using sigil::test::Fault;
using sigil::test::HttpReply;
using sigil::test::HttpRequest;
using sigil::test::Loop;
using sigil::test::tls_pki;

namespace {

using Form = std::map<std::string, std::string>;

std::string pct_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

Form parse_form(std::string_view body) {
  Form f;
  while (!body.empty()) {
    const size_t amp = body.find('&');
    const std::string_view kv = body.substr(0, amp);
    const size_t eq = kv.find('=');
    if (eq != std::string_view::npos)
      f[pct_decode(kv.substr(0, eq))] = pct_decode(kv.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    body.remove_prefix(amp + 1);
  }
  return f;
}

FakeHttpOptions tls_server() {
  FakeHttpOptions o;
  o.tls = true;
  return o;
}

FakeHttpOptions hanging(std::shared_ptr<std::atomic<bool>> hang) {
  FakeHttpOptions o = tls_server();
  o.hang = std::move(hang);
  return o;
}

Deadline in(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

// Entra ID, IMDS, an ACR registry host and a Key Vault, sharing one clock and token books.
struct World {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>(
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()));
  std::mutex mu;
  std::map<std::string, std::string> aad_tokens;  // token -> scope (resource for IMDS)
  std::set<std::string> refresh_tokens, access_tokens, revoked;
  std::vector<Form> aad_forms, exchange_forms, token_forms;
  std::vector<HttpRequest> imds_seen;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> vault_keys;
  std::set<std::string> vault_disabled;  // "name/version": answered with "enabled": false
  bool exchange_refuses = false;         // /oauth2/exchange answers 401 to every AAD token
  int vault_failing = 0;                 // 1: answer 503 ServiceUnavailable; 2: 403 ForbiddenByRbac
  bool disabled_as_403 = false;          // a disabled key: 403 KeyDisabled, not "enabled": false
  std::deque<std::chrono::milliseconds> vault_delays;  // the next answers' delays, in order
  int vault_saw_disabled = 0;                          // answers that said a key is disabled
  bool vault_newest_always = false;  // a pinned version is answered with the newest one
  int aad_ttl = 3600, refresh_ttl = 3 * 3600, access_ttl = 3600;
  const std::string tenant = "tenant-1", client_id = "client-1", kubelet_id = "kubelet-id";
  int n = 0;
  sigil::test::TempDir dir;
  std::string token_file = dir.file("azure-identity-token", "federated-1");
  // While true, new connections to the fake AAD are held without a TLS handshake.
  std::shared_ptr<std::atomic<bool>> aad_hang = std::make_shared<std::atomic<bool>>(false);
  FakeHttpServer aad{[this](const HttpRequest& r) { return on_aad(r); }, hanging(aad_hang)};
  FakeHttpServer imds{[this](const HttpRequest& r) { return on_imds(r); }};
  // While true, new connections to the fake ACR are held without a TLS handshake.
  std::shared_ptr<std::atomic<bool>> acr_hang = std::make_shared<std::atomic<bool>>(false);
  FakeHttpServer acr{[this](const HttpRequest& r) { return on_acr(r); }, hanging(acr_hang)};
  FakeHttpServer vault{[this](const HttpRequest& r) { return on_vault(r); }, tls_server()};

  int64_t unix_now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(clock->now().time_since_epoch())
        .count();
  }
  std::string mint(int ttl, const std::string& extra) {  // under mu
    return unsigned_jwt(R"({"tid":")" + tenant + R"(","exp":)" + std::to_string(unix_now() + ttl) +
                        R"(,"jti":)" + std::to_string(++n) + extra + "}");
  }

  HttpReply on_aad(const HttpRequest& r) {
    if (r.method != "POST" || r.path != "/" + tenant + "/oauth2/v2.0/token")
      return HttpReply::json(404, R"({"error":"not_found"})");
    Form f = parse_form(r.body);
    std::lock_guard lock(mu);
    aad_forms.push_back(f);
    std::ifstream in(token_file);
    std::string current((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (f["grant_type"] != "client_credentials" ||
        f["client_assertion_type"] != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
      return HttpReply::json(400, R"({"error":"unsupported_grant_type"})");
    if (f["client_id"] != client_id || f["client_assertion"] != current)
      return HttpReply::json(
          401,
          R"({"error":"invalid_client","error_description":"AADSTS700024: Client assertion is not within its valid time range."})");
    const std::string tok = mint(aad_ttl, "");
    aad_tokens[tok] = f["scope"];
    return HttpReply::json(200, R"({"token_type":"Bearer","expires_in":)" +
                                    std::to_string(aad_ttl) + R"(,"access_token":")" + tok + "\"}");
  }

  HttpReply on_imds(const HttpRequest& r) {
    std::lock_guard lock(mu);
    imds_seen.push_back(r);
    if (r.path != "/metadata/identity/oauth2/token") return HttpReply::json(404, "{}");
    if (r.header("Metadata") != "true")
      return HttpReply::json(
          400,
          R"({"error":"invalid_request","error_description":"Required metadata header not specified"})");
    auto q = r.query;
    if (q["api-version"] != "2018-02-01") return HttpReply::json(400, R"({"error":"bad api"})");
    if (q["client_id"] != kubelet_id)
      return HttpReply::json(
          400, R"({"error":"invalid_request","error_description":"Identity not found"})");
    const std::string tok = mint(aad_ttl, "");
    aad_tokens[tok] = q["resource"] + "/.default";
    const std::string exp = std::to_string(unix_now() + aad_ttl);
    // Numbers as strings, as IMDS sends them.
    return HttpReply::json(
        200, R"({"access_token":")" + tok + R"(","refresh_token":"","expires_in":")" +
                 std::to_string(aad_ttl) + R"(","expires_on":")" + exp + R"(","resource":")" +
                 q["resource"] + R"(","token_type":"Bearer"})");
  }

  HttpReply on_acr(const HttpRequest& r) {
    std::lock_guard lock(mu);
    Form f = parse_form(r.body);
    if (r.path == "/oauth2/exchange" && r.method == "POST") {
      exchange_forms.push_back(f);
      auto it = aad_tokens.find(f["access_token"]);
      if (f["grant_type"] != "access_token" || f["service"] != acr.authority())
        return HttpReply::json(400, R"({"errors":[{"code":"UNSUPPORTED"}]})");
      if (exchange_refuses || it == aad_tokens.end() || it->second != std::string(kAcrScope) ||
          (f.count("tenant") && f["tenant"] != tenant))
        return HttpReply::json(
            401, R"({"errors":[{"code":"UNAUTHORIZED","message":"invalid AAD token"}]})");
      const std::string rt = mint(refresh_ttl, R"(,"grant_type":"refresh_token")");
      refresh_tokens.insert(rt);
      return HttpReply::json(200, R"({"refresh_token":")" + rt + "\"}");
    }
    if (r.path == "/oauth2/token" && r.method == "POST") {
      token_forms.push_back(f);
      if (f["grant_type"] != "refresh_token" || !refresh_tokens.count(f["refresh_token"]))
        return HttpReply::json(
            401, R"({"errors":[{"code":"UNAUTHORIZED","message":"invalid refresh token"}]})");
      if (f["service"] != acr.authority()) return HttpReply::json(400, "{}");
      const std::string at = mint(access_ttl, R"(,"scope":")" + f["scope"] + "\"");
      access_tokens.insert(at);
      return HttpReply::json(200, R"({"access_token":")" + at + "\"}");
    }
    if (r.path.rfind("/v2/", 0) == 0) {
      const std::string auth = r.header("Authorization");
      const std::string tok = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : "";
      if (!access_tokens.count(tok) || revoked.count(tok)) {
        HttpReply rep = HttpReply::json(401, R"({"errors":[{"code":"UNAUTHORIZED"}]})");
        rep.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"" + acr.origin() +
                                                         "/oauth2/token\",service=\"" +
                                                         acr.authority() + "\"");
        return rep;
      }
      return HttpReply::json(200, R"({"schemaVersion":2})");
    }
    return HttpReply::json(404, "{}");
  }

  HttpReply on_vault(const HttpRequest& r) {
    std::lock_guard lock(mu);
    HttpReply rep = vault_answer(r);
    if (!vault_delays.empty()) {
      rep.delay = vault_delays.front();
      vault_delays.pop_front();
    }
    if (rep.body.find(R"("enabled":false)") != std::string::npos ||
        rep.body.find("KeyDisabled") != std::string::npos)
      ++vault_saw_disabled;
    return rep;
  }

  HttpReply vault_answer(const HttpRequest& r) {  // under mu
    const std::string auth = r.header("Authorization");
    const std::string tok = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : "";
    auto it = aad_tokens.find(tok);
    if (it == aad_tokens.end() || it->second != std::string(kVaultScope))
      return HttpReply::json(401, R"({"error":{"code":"Unauthorized","message":"AKV10000"}})");
    if (r.query.count("api-version") == 0 || r.query.at("api-version") != "7.4")
      return HttpReply::json(400, R"({"error":{"code":"BadParameter"}})");
    if (vault_failing == 1)
      return HttpReply::json(503, R"({"error":{"code":"ServiceUnavailable","message":"busy"}})");
    if (vault_failing == 2)
      return HttpReply::json(403, R"({"error":{"code":"Forbidden","message":"Caller is not )"
                                  R"(authorized","innererror":{"code":"ForbiddenByRbac"}}})");
    std::vector<std::string> parts;
    for (size_t s = 1; s < r.path.size();) {
      size_t e = r.path.find('/', s);
      parts.push_back(r.path.substr(s, e == std::string::npos ? e : e - s));
      if (e == std::string::npos) break;
      s = e + 1;
    }
    if (parts.size() < 2 || parts.size() > 3 || parts[0] != "keys" || !vault_keys.count(parts[1]))
      return HttpReply::json(404, R"({"error":{"code":"KeyNotFound"}})");
    const auto& versions = vault_keys[parts[1]];
    std::pair<std::string, std::string> v = versions.back();
    if (parts.size() == 3 && !vault_newest_always) {
      bool found = false;
      for (const auto& x : versions)
        if (x.first == parts[2]) v = x, found = true;
      if (!found) return HttpReply::json(404, R"({"error":{"code":"KeyNotFound"}})");
    }
    std::string key = v.second;
    key.pop_back();
    key += R"(,"kid":")" + vault.origin() + "/keys/" + parts[1] + "/" + v.first + R"("})";
    const bool enabled = vault_disabled.count(parts[1] + "/" + v.first) == 0;
    if (!enabled && disabled_as_403)
      return HttpReply::json(403, R"({"error":{"code":"Forbidden","message":"Operation get is )"
                                  R"(not allowed on a disabled key.","innererror":{"code":)"
                                  R"("KeyDisabled"}}})");
    return HttpReply::json(200, R"({"key":)" + key + R"(,"attributes":{"enabled":)" +
                                    (enabled ? "true" : "false") +
                                    R"(,"created":1700000000,"updated":1700000000,)" +
                                    R"("recoveryLevel":"Recoverable+Purgeable"}})");
  }

  void rotate_token_file(const std::string& content) {
    sigil::test::write_file_atomically(token_file, content);
  }

  Options options(bool wi, bool mi) {
    Options o;
    if (wi)
      o.workload_identity = WorkloadIdentityConfig{client_id, tenant, token_file, aad.origin()};
    if (mi) {
      o.managed_identity.enabled = true;
      o.managed_identity.client_id = kubelet_id;
      o.managed_identity.endpoint = imds.origin();
    }
    o.registries = HostAllowlist::parse({acr.authority()}).value();
    o.vaults = HostAllowlist::parse({vault.authority()}).value();
    o.tls.system_roots = false;
    o.tls.ca_pem = tls_pki().ca_pem;
    o.clock = clock;
    o.refresh_tick = 20ms;
    o.imds_retry.backoff_base = 10ms;
    o.imds_retry.max_backoff = 50ms;
    return o;
  }
};

// A GET of a manifest on the fake ACR with `authorization`, as registry/ will send it.
unsigned v2_get(Loop& loop, World& w, const std::string& authorization) {
  net::ClientOptions co;
  co.tls.system_roots = false;
  co.tls.ca_pem = tls_pki().ca_pem;
  net::Client c(loop.ioc.get_executor(), co);
  net::Request req = net::get_request(net::parse_url(w.acr.url("/v2/app/manifests/v1")).value());
  req.authorization = authorization;
  auto r = loop.run(c.send(req, in(5s), net::Limits{}));
  REQUIRE(r.ok());
  return r->status;
}

std::string bearer(Loop& loop, AzureCredentials& az, const std::string& host,
                   const std::string& repo = "app") {
  auto r = loop.run(az.for_registry(host, repo, in(10s)));
  INFO((r ? std::string() : r.error().message));
  REQUIRE(r.ok());
  REQUIRE(r->has_value());
  REQUIRE((*r)->rfind("Bearer ", 0) == 0);
  return **r;
}

}  // namespace

TEST_CASE("azure: workload identity end to end, and the rotated token file is read again") {
  World w;
  Loop loop(2);
  AzureCredentials az(loop.ioc.get_executor(), w.options(true, false));
  REQUIRE(az.init_status().ok());
  const std::string t = bearer(loop, az, w.acr.authority());
  CHECK(v2_get(loop, w, t) == 200);
  {
    std::lock_guard lock(w.mu);
    REQUIRE(w.aad_forms.size() == 1);
    Form& f = w.aad_forms[0];
    CHECK(f["client_id"] == w.client_id);
    CHECK(f["grant_type"] == "client_credentials");
    CHECK(f["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    CHECK(f["client_assertion"] == "federated-1");
    CHECK(f["scope"] == "https://containerregistry.azure.net/.default");
    REQUIRE(w.exchange_forms.size() == 1);
    CHECK(w.exchange_forms[0]["tenant"] == w.tenant);
    CHECK(w.exchange_forms[0]["service"] == w.acr.authority());
    REQUIRE(w.token_forms.size() == 1);
    CHECK(w.token_forms[0]["scope"] == "repository:app:pull");
  }
  // Cached: a second admission costs nothing.
  CHECK(bearer(loop, az, w.acr.authority()) == t);
  CHECK(w.aad.requests() == 1);
  CHECK(w.acr.requests() == 3);  // exchange, token, the v2 GET

  // The kubelet rotates the projected token; the old one is no longer accepted by AAD.
  w.rotate_token_file("federated-2");
  auto again = loop.run(az.aad_token(std::string(kAcrScope), in(10s), true));
  INFO((again ? std::string() : again.error().message));
  REQUIRE(again.ok());
  std::lock_guard lock(w.mu);
  CHECK(w.aad_forms.back()["client_assertion"] == "federated-2");
}

TEST_CASE("azure: managed identity through IMDS end to end (client id, Metadata header)") {
  World w;
  Loop loop(2);
  AzureCredentials az(loop.ioc.get_executor(), w.options(false, true));
  const std::string t = bearer(loop, az, w.acr.authority());
  CHECK(v2_get(loop, w, t) == 200);
  std::lock_guard lock(w.mu);
  REQUIRE(w.imds_seen.size() == 1);
  const HttpRequest& r = w.imds_seen[0];
  CHECK(r.method == "GET");
  CHECK(r.header("Metadata") == "true");
  CHECK(r.query.at("api-version") == "2018-02-01");
  CHECK(r.query.at("resource") == "https://containerregistry.azure.net");
  CHECK(r.query.at("client_id") == w.kubelet_id);
  // The tenant came from the AAD token's tid.
  REQUIRE(w.exchange_forms.size() == 1);
  CHECK(w.exchange_forms[0]["tenant"] == w.tenant);
}

TEST_CASE("azure: IMDS numbers as strings give the token's expiry") {
  World w;
  Loop loop(2);
  AzureCredentials az(loop.ioc.get_executor(), w.options(false, true));
  auto t = loop.run(az.aad_token(std::string(kAcrScope), in(10s), false));
  REQUIRE(t.ok());
  CHECK(t->expires_at == w.clock->now() + std::chrono::seconds(w.aad_ttl));
}

TEST_CASE("azure: IMDS 429 and 500 are answered by a retry") {
  auto fault = GENERATE(Fault::http_429, Fault::http_500);
  CAPTURE(sigil::test::fault_name(fault));
  World w;
  w.imds.fail_nth(fault, 1);
  Loop loop(2);
  AzureCredentials az(loop.ioc.get_executor(), w.options(false, true));
  const std::string t = bearer(loop, az, w.acr.authority());
  CHECK(w.imds.fault_fired());
  CHECK(w.imds.requests() == 2);
  CHECK(v2_get(loop, w, t) == 200);
}

namespace {

// registry.failFast for the identity's client, quick enough for a test: down after one attempt
// that could not connect in 100 ms with 300 ms or more left.
Options fail_fast_options(World& w) {
  Options o = w.options(true, false);
  o.fail_fast.after = 1;
  o.fail_fast.slow = 100ms;
  o.fail_fast.min_budget = 300ms;
  return o;
}

}  // namespace

// AAD is the operator's endpoint, never a pod's choice: its outage memory is kept as the
// operator's (never pushed out by the ACR names pods choose) and takes reserved DNS slots.
TEST_CASE("azure: AAD that cannot be reached is remembered as the operator's origin") {
  World w;
  Loop loop(2);
  Options o = fail_fast_options(w);
  w.aad_hang->store(true);
  AzureCredentials az(loop.ioc.get_executor(), o);
  auto r = loop.run(az.for_registry(w.acr.authority(), "app", in(800ms)));
  REQUIRE_FALSE(r.ok());
  CHECK(az.outage_stats().down == 1);
  CHECK(az.outage_stats().down_listed == 1);
}

// Pods choose ACR names: one that answers the exchange with 401 (a registry of their own, or one
// in another tenant) must not make sigil drop and refetch its AAD token on every admission.
TEST_CASE("azure: a 401 from an ACR exchange refetches the AAD token at most every 30 s") {
  World w;
  Loop loop(2);
  AzureCredentials az(loop.ioc.get_executor(), w.options(true, false));
  (void)bearer(loop, az, w.acr.authority(), "app");
  CHECK(az.stats().aad_requests == 1);
  {
    // The registry now refuses sigil: its refresh token, and any AAD token in an exchange.
    std::lock_guard lock(w.mu);
    w.refresh_tokens.clear();
    w.exchange_refuses = true;
  }
  for (int i = 0; i < 6; ++i) {
    auto r = loop.run(az.for_registry(w.acr.authority(), "repo" + std::to_string(i), in(5s)));
    CHECK_FALSE((r.ok() && r->has_value()));
  }
  CHECK(az.stats().exchange_requests >= 6);
  CHECK(az.stats().aad_requests == 2);  // one forced refetch, not six
  w.clock->advance(31s);
  auto r = loop.run(az.for_registry(w.acr.authority(), "later", in(5s)));
  CHECK_FALSE((r.ok() && r->has_value()));
  CHECK(az.stats().aad_requests == 3);  // the window has passed: once more
}

// The 30 s window is per registry the operator wrote down: a pod's ACR that answers 401 (one in
// another tenant) spends the window every pod's registry shares, never the operator's. When AAD
// then revokes the token, the operator's registry still gets a fresh one at once.
TEST_CASE("azure: a pod's ACR answering 401 does not spend the operator's registry's refetch") {
  World w;
  // Another tenant's registry, named by a pod under the identity's wildcard: every exchange 401.
  std::atomic<int> foreign_exchanges{0};
  const auto refuse = [&](const HttpRequest& r) {
    if (r.path == "/oauth2/exchange") ++foreign_exchanges;
    return HttpReply::json(401, R"({"errors":[{"code":"UNAUTHORIZED"}]})");
  };
  FakeHttpServer foreign(refuse, tls_server());
  FakeHttpServer foreign2(refuse, tls_server());
  Loop loop(2);
  Options o = w.options(true, false);
  // "*.0.0.1:PORT" matches 127.0.0.1:PORT as "*.azurecr.io" matches a pod's ACR name: a
  // wildcard, not a name the operator wrote down.
  const auto wildcard = [](const FakeHttpServer& s) { return "*." + s.authority().substr(4); };
  const std::string pods_acr = foreign.authority();
  const std::string other_pods_acr = foreign2.authority();
  SECTION("the operator's registry is named in warmRegistries") {
    o.registries =
        HostAllowlist::parse({wildcard(w.acr), wildcard(foreign), wildcard(foreign2)}).value();
    o.warm_registries = {w.acr.authority()};  // not warmed: the client is not started
  }
  SECTION("the operator's registry is an exact registryHosts entry") {
    o.registries =
        HostAllowlist::parse({w.acr.authority(), wildcard(foreign), wildcard(foreign2)}).value();
  }
  for (const auto& h : {pods_acr, other_pods_acr}) {
    REQUIRE(o.registries.allows(h));
    REQUIRE_FALSE(o.registries.names(h));
  }
  AzureCredentials az(loop.ioc.get_executor(), o);
  (void)bearer(loop, az, w.acr.authority(), "app");
  CHECK(az.stats().aad_requests == 1);
  auto pod = loop.run(az.for_registry(pods_acr, "app", in(5s)));
  CHECK_FALSE((pod.ok() && pod->has_value()));
  CHECK(foreign_exchanges.load() == 2);
  CHECK(az.stats().aad_requests == 2);
  // Every registry pods name shares that window: a second one refetches nothing.
  auto other_pod = loop.run(az.for_registry(other_pods_acr, "app", in(5s)));
  CHECK_FALSE((other_pod.ok() && other_pod->has_value()));
  CHECK(foreign_exchanges.load() == 3);
  CHECK(az.stats().aad_requests == 2);
  {
    // AAD revokes the token (and the operator's ACR forgets its refresh token).
    std::lock_guard lock(w.mu);
    w.aad_tokens.clear();
    w.refresh_tokens.clear();
  }
  // Within 30 s of the pod's forced refetch: the operator's registry refetches all the same.
  (void)bearer(loop, az, w.acr.authority(), "other");
  CHECK(az.stats().aad_requests == 3);
}

// registry.failFast reaches the identity's own client: in an ACR outage where its token endpoint
// cannot be reached, an admission whose repository has no cached token stops waiting for it too.
TEST_CASE("azure: an ACR token endpoint that cannot be reached fails at once once known down") {
  World w;
  Loop loop(2);
  Options o = fail_fast_options(w);
  o.fail_fast.backoff = 5s;
  o.fail_fast.max_backoff = 5s;
  // An ACR the operator wrote down is remembered as the operator's origin; one a pod named
  // under a wildcard ("*.0.0.1:PORT" here, "*.azurecr.io" in a cluster) is not.
  size_t listed = 1;
  SECTION("an exact registryHosts entry") {}
  SECTION("a wildcard's match") {
    o.registries = HostAllowlist::parse({"*." + w.acr.authority().substr(4)}).value();
    REQUIRE(o.registries.allows(w.acr.authority()));
    listed = 0;
  }
  AzureCredentials az(loop.ioc.get_executor(), o);
  (void)bearer(loop, az, w.acr.authority(), "app");  // AAD, the exchange and one token: warm
  w.acr_hang->store(true);   // new connections hang before the TLS handshake
  w.acr.drop_connections();  // and the pooled one is gone
  const int before = w.acr.connections();
  auto slow = loop.run(az.for_registry(w.acr.authority(), "other", in(800ms)));
  REQUIRE_FALSE(slow.ok());
  CHECK(w.acr.connections() == before + 1);
  auto fast = loop.run(az.for_registry(w.acr.authority(), "third", in(10s)));
  REQUIRE_FALSE(fast.ok());
  INFO(fast.error().message);
  CHECK_THAT(fast.error().message, Catch::Contains("cannot be reached"));
  CHECK(w.acr.connections() == before + 1);  // not sent
  CHECK(az.outage_stats().down == 1);
  CHECK(az.outage_stats().down_listed == listed);
}

// The exchange itself: an ACR the operator wrote down that cannot be reached is remembered as the
// operator's origin (never pushed out by the names pods choose); one a pod named is not.
TEST_CASE("azure: an ACR exchange that cannot be reached is the operator's only if listed") {
  World w;
  Loop loop(2);
  Options o = fail_fast_options(w);
  size_t listed = 1;
  SECTION("an exact registryHosts entry") {}
  SECTION("named in warmRegistries, matched by a wildcard") {
    o.registries = HostAllowlist::parse({"*." + w.acr.authority().substr(4)}).value();
    o.warm_registries = {w.acr.authority()};  // not warmed: the client is not started
  }
  SECTION("a wildcard's match") {
    o.registries = HostAllowlist::parse({"*." + w.acr.authority().substr(4)}).value();
    listed = 0;
  }
  AzureCredentials az(loop.ioc.get_executor(), o);
  w.acr_hang->store(true);  // the exchange's connection hangs before the TLS handshake
  auto r = loop.run(az.for_registry(w.acr.authority(), "app", in(800ms)));
  REQUIRE_FALSE((r.ok() && r->has_value()));
  CHECK(az.stats().exchange_requests == 1);
  CHECK(az.outage_stats().down == 1);
  CHECK(az.outage_stats().down_listed == listed);
}

// refreshBeforeSeconds accepts up to a day; tokens live about an hour. A window past a token's
// lifetime made it due again at every tick (here 20 ms): half its lifetime is the most.
TEST_CASE("azure: a refresh window longer than a token's life refreshes at half-life, not always") {
  World w;
  Loop loop(2);
  Options o = w.options(true, false);
  o.warm_registries = {w.acr.authority()};
  o.refresh_before = std::chrono::hours(2);  // past every token's lifetime (1 h, 3 h refresh)
  AzureCredentials az(loop.ioc.get_executor(), o);
  az.start();
  REQUIRE(sigil::test::eventually([&] { return az.stats().refreshes >= 1; }));
  (void)bearer(loop, az, w.acr.authority());
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // about 20 ticks
  const Stats first = az.stats();
  CHECK(first.aad_requests == 1);
  CHECK(first.exchange_requests == 1);
  CHECK(first.token_requests == 1);
  // Past half of the AAD and access tokens' hour: each is refreshed once, then left alone.
  w.clock->advance(31min);
  REQUIRE(sigil::test::eventually([&] { return az.stats().token_requests >= 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  const Stats second = az.stats();
  CHECK(second.aad_requests == 2);
  CHECK(second.exchange_requests == 1);  // the refresh token lives 3 h: not at half-life yet
  CHECK(second.token_requests == 2);
  CHECK(second.refresh_failures == 0);
}

// Any allowed registry an admission names gets a refresh token. One no admission uses any more
// (and warm_registries does not list) is not renewed in the background for the life of the
// process: it is exchanged again when it is next used.
TEST_CASE("azure: a registry no admission uses any more is no longer kept fresh") {
  World w;
  Loop loop(2);
  AzureCredentials az(loop.ioc.get_executor(), w.options(true, false));
  az.start();
  (void)bearer(loop, az, w.acr.authority());
  CHECK(az.stats().exchange_requests == 1);
  SECTION("unused") {
    w.clock->advance(3h);  // unused for more than keep_warm_for; its refresh token expires now
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    CHECK(az.stats().exchange_requests == 1);
    CHECK(az.stats().token_requests == 1);
    (void)bearer(loop, az, w.acr.authority());
    CHECK(az.stats().exchange_requests == 2);
  }
  SECTION("in use: its refresh token, older than keep_warm_for, is kept and used") {
    w.clock->advance(40min);
    (void)bearer(loop, az, w.acr.authority());
    w.clock->advance(40min);  // the access token (1 h) is renewed with the refresh token
    REQUIRE(sigil::test::eventually([&] { return az.stats().token_requests >= 2; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(az.stats().exchange_requests == 1);
  }
}

TEST_CASE("azure: tokens are refreshed in the background; no AAD call on the request path") {
  World w;
  w.refresh_ttl = 3600;  // every token expires at the same time
  Loop loop(2);
  Options o = w.options(true, false);
  o.warm_registries = {w.acr.authority()};
  AzureCredentials az(loop.ioc.get_executor(), o);
  az.start();
  // Warmed at start: AAD token and refresh token, before any admission.
  // (Waiting for the warm to be stored: concurrent cold fetches are not coalesced.)
  REQUIRE(sigil::test::eventually([&] { return az.stats().refreshes == 1; }));
  CHECK(az.stats().exchange_requests == 1);
  CHECK(az.stats().aad_requests == 1);
  const std::string t1 = bearer(loop, az, w.acr.authority());
  CHECK(az.stats().aad_requests == 1);
  CHECK(az.stats().token_requests == 1);

  // 57 minutes on: every token is inside the 5-minute refresh window.
  w.clock->advance(57min);
  REQUIRE(sigil::test::eventually([&] { return az.stats().refreshes >= 4; }));
  CHECK(az.stats().aad_requests == 2);
  CHECK(az.stats().exchange_requests == 2);
  CHECK(az.stats().token_requests == 2);
  CHECK(az.stats().refresh_failures == 0);

  // 62 minutes on: the first tokens have expired; the admission path uses the new ones and
  // sends nothing to AAD or the registry's token endpoints.
  w.clock->advance(5min);
  const Stats before = az.stats();
  const std::string t2 = bearer(loop, az, w.acr.authority());
  const Stats after = az.stats();
  CHECK(t2 != t1);
  CHECK(after.aad_requests == before.aad_requests);
  CHECK(after.imds_requests == before.imds_requests);
  CHECK(after.exchange_requests == before.exchange_requests);
  CHECK(after.token_requests == before.token_requests);
  CHECK(v2_get(loop, w, t2) == 200);
  az.stop();
}

TEST_CASE("azure: a warm failure at start is a log line and a counter, not an outage") {
  World w;
  Loop loop(2);
  Options o = w.options(true, false);
  o.workload_identity->client_id = "someone-else";  // AAD refuses
  o.warm_registries = {w.acr.authority()};
  AzureCredentials az(loop.ioc.get_executor(), o);
  az.start();
  REQUIRE(sigil::test::eventually([&] { return az.stats().refresh_failures >= 1; }));
  auto r = loop.run(az.for_registry(w.acr.authority(), "app", in(10s)));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("invalid_client") != std::string::npos);
}

TEST_CASE("azure: a 401 from the registry, then a refreshed token") {
  World w;
  Loop loop(2);
  AzureCredentials az(loop.ioc.get_executor(), w.options(true, false));
  const std::string host = w.acr.authority();
  const std::string t1 = bearer(loop, az, host);
  REQUIRE(v2_get(loop, w, t1) == 200);
  {
    std::lock_guard lock(w.mu);
    w.revoked.insert(t1.substr(7));
  }
  REQUIRE(v2_get(loop, w, t1) == 401);
  az.rejected(host, "app");
  const std::string t2 = bearer(loop, az, host);
  CHECK(t2 != t1);
  CHECK(v2_get(loop, w, t2) == 200);
  CHECK(az.stats().exchange_requests == 1);  // the refresh token was still good

  // The registry forgot every refresh token too: /oauth2/token answers 401, and the refresh
  // token is exchanged anew, once, within the same call.
  {
    std::lock_guard lock(w.mu);
    w.refresh_tokens.clear();
    w.revoked.insert(t2.substr(7));
  }
  az.rejected(host, "app");
  const std::string t3 = bearer(loop, az, host);
  CHECK(v2_get(loop, w, t3) == 200);
  CHECK(az.stats().exchange_requests == 2);
}

TEST_CASE("azure: a lookalike host gets no token and no request is sent anywhere") {
  World w;
  Loop loop(2);
  Options o = w.options(true, true);
  o.registries = HostAllowlist::default_registries();
  AzureCredentials az(loop.ioc.get_executor(), o);
  for (const std::string& host :
       std::vector<std::string>{"x.azurecr.io.evil.example", "x.azurecr.io.127.0.0.1.nip.io",
                                "evil-azurecr.io", "127.0.0.1", w.acr.authority()}) {
    CAPTURE(host);
    CHECK_FALSE(az.covers(host));
    auto r = loop.run(az.for_registry(host, "app", in(10s)));
    REQUIRE(r.ok());
    CHECK_FALSE(r->has_value());
  }
  // The configured list: only the exact host:port.
  AzureCredentials exact(loop.ioc.get_executor(), w.options(true, true));
  const std::string other_port = "127.0.0.1:" + std::to_string(w.acr.port() == 1 ? 2 : 1);
  for (const std::string& host : std::vector<std::string>{
           "127.0.0.1", other_port, "localhost:" + std::to_string(w.acr.port())}) {
    CAPTURE(host);
    auto r = loop.run(exact.for_registry(host, "app", in(10s)));
    REQUIRE(r.ok());
    CHECK_FALSE(r->has_value());
  }
  CHECK(w.aad.requests() == 0);
  CHECK(w.imds.requests() == 0);
  CHECK(w.acr.requests() == 0);
}

TEST_CASE("azure: every source failing is one error naming each source tried") {
  World w;
  Loop loop(2);
  Options o = w.options(true, true);
  o.workload_identity->client_id = "someone-else";
  o.managed_identity.client_id = "not-on-this-node";
  AzureCredentials az(loop.ioc.get_executor(), o);
  auto r = loop.run(az.for_registry(w.acr.authority(), "app", in(10s)));
  REQUIRE_FALSE(r.ok());
  const std::string& m = r.error().message;
  CAPTURE(m);
  CHECK(m.find("azure workload identity (client id someone-else)") != std::string::npos);
  CHECK(m.find("invalid_client") != std::string::npos);
  CHECK(m.find("azure managed identity (client id not-on-this-node)") != std::string::npos);
  CHECK(m.find("Identity not found") != std::string::npos);
  CHECK(m.find("eyJ") == std::string::npos);  // nothing token-shaped

  Options missing = w.options(true, false);
  missing.workload_identity->token_file = (w.dir.path / "absent").string();
  AzureCredentials az2(loop.ioc.get_executor(), missing);
  auto r2 = loop.run(az2.for_registry(w.acr.authority(), "app", in(10s)));
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error().message.find("federated token file") != std::string::npos);
}

TEST_CASE("azure: no identity configured: nothing for any host") {
  World w;
  Loop loop(2);
  AzureCredentials az(loop.ioc.get_executor(), w.options(false, false));
  CHECK_FALSE(az.has_identity());
  auto r = loop.run(az.for_registry(w.acr.authority(), "app", in(10s)));
  REQUIRE(r.ok());
  CHECK_FALSE(r->has_value());
  auto bad = loop.run(AzureCredentials(loop.ioc.get_executor(), w.options(true, false))
                          .for_registry(w.acr.authority(), "app:push repository:x", in(10s)));
  CHECK_FALSE(bad.ok());
}

TEST_CASE("keyvault: a JWK key is fetched with a vault token, cached, and a rotation picked up") {
  World w;
  const auto k1 = sigil::test::generate_key("P-256");
  const auto k2 = sigil::test::generate_key("P-384");
  const auto k3 = sigil::test::cached_key("RSA2048");
  w.vault_keys["cosign"] = {{"v1", jwk_of(k1, "P-256")}};
  Loop loop(2);
  auto az = std::make_shared<AzureCredentials>(loop.ioc.get_executor(), w.options(true, false));
  KeyVaultKeys kv(az, KeyVaultOptions{});
  const std::string uri = "azurekms://" + w.vault.authority() + "/cosign";
  auto key = loop.run(kv.key(uri, in(10s)));
  INFO((key ? std::string() : key.error().message));
  REQUIRE(key.ok());
  CHECK(key->spki_der() == k1.spki_der());
  CHECK(w.vault.requests() == 1);
  {
    std::lock_guard lock(w.mu);
    REQUIRE(w.aad_forms.size() == 1);
    CHECK(w.aad_forms[0]["scope"] == "https://vault.azure.net/.default");
  }

  // Rotated in the vault: the cache keeps the old key until a verification fails.
  {
    std::lock_guard lock(w.mu);
    w.vault_keys["cosign"].emplace_back("v2", jwk_of(k2, "P-384"));
  }
  CHECK(loop.run(kv.key(uri, in(10s)))->spki_der() == k1.spki_der());
  CHECK(w.vault.requests() == 1);
  // Fetched less than min_refetch (5 min) ago: a verification failure refetches nothing yet.
  auto early = loop.run(kv.refetch_after_failure(uri, in(10s)));
  REQUIRE(early.ok());
  CHECK_FALSE(early->has_value());
  CHECK(w.vault.requests() == 1);
  w.clock->advance(301s);
  auto fresh = loop.run(kv.refetch_after_failure(uri, in(10s)));
  REQUIRE(fresh.ok());
  REQUIRE(fresh->has_value());
  CHECK((*fresh)->spki_der() == k2.spki_der());
  const std::string sig = k2.sign("payload", EVP_sha384());
  CHECK((*fresh)->verify("payload", sig, crypto::HashAlgorithm::sha384).ok());
  CHECK(loop.run(kv.key(uri, in(10s)))->spki_der() == k2.spki_der());
  // At most every min_refetch: a second failure right after fetches nothing.
  auto limited = loop.run(kv.refetch_after_failure(uri, in(10s)));
  REQUIRE(limited.ok());
  CHECK_FALSE(limited->has_value());
  CHECK(w.vault.requests() == 2);

  // On the key's own schedule: an hour on, the newest version is looked at again.
  {
    std::lock_guard lock(w.mu);
    w.vault_keys["cosign"].emplace_back("v3", jwk_of(k3));
  }
  w.clock->advance(61min);
  CHECK(loop.run(kv.key(uri, in(10s)))->spki_der() == k3.spki_der());
  // A versioned key is that version.
  CHECK(loop.run(kv.key(uri + "/v1", in(10s)))->spki_der() == k1.spki_der());
  // An answer with another version than the pinned one is not that key: refused on a first
  // read, and a cached copy stays in use (as for any answer sigil cannot use).
  {
    std::lock_guard lock(w.mu);
    w.vault_newest_always = true;
  }
  auto other = loop.run(kv.key(uri + "/v2", in(10s)));
  REQUIRE_FALSE(other.ok());
  CHECK(other.error().message ==
        uri + "/v2: Key Vault answered with version 'v3', not the pinned one");
  w.clock->advance(61min);
  CHECK(loop.run(kv.key(uri + "/v1", in(10s)))->spki_der() == k1.spki_der());
}

// A stolen signing key is answered in the vault by disabling or deleting it. Both must end
// sigil's trust in its cached copy at the next look (every `refresh`, a versioned key too, or
// after a failed verification); a vault that is only down must not.
TEST_CASE(
    "keyvault: a key disabled or deleted in the vault is trusted no more; an outage keeps it") {
  World w;
  // Key Vault's two ways of saying it: the key with "enabled": false, or 403 KeyDisabled.
  w.disabled_as_403 = GENERATE(false, true);
  CAPTURE(w.disabled_as_403);
  const auto k1 = sigil::test::generate_key("P-256");
  w.vault_keys["cosign"] = {{"v1", jwk_of(k1, "P-256")}};
  w.vault_keys["release"] = {{"r1", jwk_of(k1, "P-256")}};
  Loop loop(2);
  auto az = std::make_shared<AzureCredentials>(loop.ioc.get_executor(), w.options(true, false));
  KeyVaultKeys kv(az, KeyVaultOptions{});
  const std::string newest = "azurekms://" + w.vault.authority() + "/cosign";
  const std::string pinned = newest + "/v1";
  const std::string other = "azurekms://" + w.vault.authority() + "/release";
  for (const auto& uri : {newest, pinned, other}) {
    auto k = loop.run(kv.key(uri, in(10s)));
    INFO(uri << ": " << (k ? std::string() : k.error().message));
    REQUIRE(k.ok());
  }
  CHECK(w.vault.requests() == 3);

  // The vault is down, then refuses sigil's token, at the next looks: the cached keys stay in
  // use (neither says anything about the key), and the vault is asked again only after
  // retry_failed, not by every admission (or failed verification) meanwhile.
  for (int failing : {1, 2}) {
    {
      std::lock_guard lock(w.mu);
      w.vault_failing = failing;
    }
    w.clock->advance(61min);
    for (int i = 0; i < 3; ++i) {
      for (const auto& uri : {newest, pinned}) {
        auto k = loop.run(kv.key(uri, in(10s)));
        INFO(uri << ": " << (k ? std::string() : k.error().message));
        CHECK(k.ok());
        auto again = loop.run(kv.refetch_after_failure(uri, in(10s)));
        REQUIRE(again.ok());
        CHECK_FALSE(again->has_value());
      }
    }
  }
  CHECK(w.vault.requests() == 3 + 2 + 2);
  {
    std::lock_guard lock(w.mu);
    w.vault_failing = 0;
  }
  w.clock->advance(31s);

  // v1 disabled (the portal's "Disable" on the current version): refused by its name and by
  // its version, and stays refused.
  {
    std::lock_guard lock(w.mu);
    w.vault_disabled.insert("cosign/v1");
  }
  const int before = w.vault.requests();
  for (const auto& uri : {newest, pinned, newest, pinned}) {
    auto k = loop.run(kv.key(uri, in(10s)));
    REQUIRE_FALSE(k.ok());
    CHECK(k.error().code == Errc::verification);
    CHECK(k.error().message == uri + ": the key is disabled");
  }
  // Each refusal is remembered for retry_failed (30 s): a burst of admissions under the policy
  // costs the vault one request per key, not one each.
  CHECK(w.vault.requests() == before + 2);
  // Enabled again: trusted again, once the memory of the refusal has passed.
  {
    std::lock_guard lock(w.mu);
    w.vault_disabled.clear();
  }
  CHECK_FALSE(loop.run(kv.key(pinned, in(10s))).ok());
  w.clock->advance(31s);
  CHECK(loop.run(kv.key(pinned, in(10s))).ok());
  CHECK(w.vault.requests() == before + 3);

  // Deleted, seen on a refetch after a failed verification: gone from the cache at once.
  {
    std::lock_guard lock(w.mu);
    w.vault_keys.erase("release");
  }
  w.clock->advance(301s);
  auto after = loop.run(kv.refetch_after_failure(other, in(10s)));
  REQUIRE_FALSE(after.ok());
  CHECK(after.error().code == Errc::not_found);
  auto gone = loop.run(kv.key(other, in(10s)));
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().code == Errc::not_found);
  CHECK(gone.error().message.find("Key Vault answered 404 (KeyNotFound)") != std::string::npos);

  // A key never read whose first read fails: remembered the same way, then asked again.
  const std::string never = "azurekms://" + w.vault.authority() + "/never";
  const int n = w.vault.requests();
  for (int i = 0; i < 3; ++i) CHECK_FALSE(loop.run(kv.key(never, in(10s))).ok());
  CHECK(w.vault.requests() == n + 1);
  w.clock->advance(31s);
  CHECK_FALSE(loop.run(kv.key(never, in(10s))).ok());
  CHECK(w.vault.requests() == n + 2);
}

// Reads of one key never overlap: a burst shares one request, and a read that began before the
// key was disabled cannot put it back after a later read saw it disabled. One admission's
// short deadline is not remembered as the vault's failure.
TEST_CASE("keyvault: concurrent reads of a key share one request; a short deadline is not kept") {
  World w;
  const auto k1 = sigil::test::generate_key("P-256");
  w.vault_keys["cosign"] = {{"v1", jwk_of(k1, "P-256")}};
  Loop loop(2);
  auto az = std::make_shared<AzureCredentials>(loop.ioc.get_executor(), w.options(true, false));
  KeyVaultKeys kv(az, KeyVaultOptions{});
  const std::string uri = "azurekms://" + w.vault.authority() + "/cosign";
  auto spawn_key = [&](Deadline d) {
    return boost::asio::co_spawn(loop.ioc, sigil::test::detail::as_optional(kv.key(uri, d)),
                                 boost::asio::use_future);
  };

  // A burst on a cold key, the vault slow: one request.
  {
    std::lock_guard lock(w.mu);
    w.vault_delays = {300ms};
  }
  std::vector<std::future<std::optional<Result<crypto::PublicKey>>>> burst;
  for (int i = 0; i < 16; ++i) burst.push_back(spawn_key(in(10s)));
  for (auto& f : burst) {
    auto r = *f.get();
    INFO((r ? std::string() : r.error().message));
    REQUIRE(r.ok());
    CHECK(r->spki_der() == k1.spki_der());
  }
  CHECK(w.vault.requests() == 1);

  // Due again (refresh): a slow read starts while the key is enabled; the key is disabled and
  // a signature fails to verify meanwhile, and its refetch would be answered at once. Were the
  // two reads separate, the refetch would drop the key and the slow read then store it again.
  w.clock->advance(61min);
  {
    std::lock_guard lock(w.mu);
    w.vault_delays = {400ms, 0ms};
  }
  auto slow = spawn_key(in(10s));
  std::this_thread::sleep_for(100ms);
  {
    std::lock_guard lock(w.mu);
    w.vault_disabled.insert("cosign/v1");
  }
  auto refetch = loop.run(kv.refetch_after_failure(uri, in(10s)));
  auto slow_result = *slow.get();
  const bool trusted = loop.run(kv.key(uri, in(10s))).ok();
  {
    std::lock_guard lock(w.mu);
    INFO("answers that said disabled: " << w.vault_saw_disabled);
    CHECK_FALSE((w.vault_saw_disabled > 0 && trusted));
  }
  CHECK(slow_result.ok() == refetch.ok());  // one read, one answer
  CHECK(w.vault.requests() == 2);
  // The next look sees it disabled.
  w.clock->advance(61min);
  CHECK_FALSE(loop.run(kv.key(uri, in(10s))).ok());
  CHECK(w.vault.requests() == 3);

  // A key never read, and an admission with 300 ms left while the vault takes 1.5 s: a
  // timeout for that admission only. The next admission asks the vault again.
  const std::string other = "azurekms://" + w.vault.authority() + "/other";
  {
    std::lock_guard lock(w.mu);
    w.vault_keys["other"] = {{"o1", jwk_of(k1, "P-256")}};
    w.vault_delays = {1500ms};
  }
  auto cut = loop.run(kv.key(other, in(300ms)));
  REQUIRE_FALSE(cut.ok());
  CHECK(cut.error().code == Errc::timeout);
  auto next = loop.run(kv.key(other, in(10s)));
  INFO((next ? std::string() : next.error().message));
  CHECK(next.ok());
  CHECK(w.vault.requests() == 5);

  // A reader sharing a read that its leader's short deadline cut, with time of its own left,
  // reads again instead of taking the leader's timeout.
  const std::string third = "azurekms://" + w.vault.authority() + "/third";
  {
    std::lock_guard lock(w.mu);
    w.vault_keys["third"] = {{"t1", jwk_of(k1, "P-256")}};
    w.vault_delays = {1500ms};
  }
  auto leader =
      boost::asio::co_spawn(loop.ioc, sigil::test::detail::as_optional(kv.key(third, in(300ms))),
                            boost::asio::use_future);
  std::this_thread::sleep_for(100ms);
  auto follower = loop.run(kv.key(third, in(10s)));
  CHECK_FALSE((*leader.get()).ok());
  INFO((follower ? std::string() : follower.error().message));
  CHECK(follower.ok());
  CHECK(w.vault.requests() == 7);
}

TEST_CASE("keyvault: vault hosts outside the list get no token; other schemes are unsupported") {
  World w;
  Loop loop(2);
  auto az = std::make_shared<AzureCredentials>(loop.ioc.get_executor(), w.options(true, false));
  KeyVaultKeys kv(az, KeyVaultOptions{});
  for (const std::string& uri : std::vector<std::string>{
           "azurekms://127.0.0.1:1/cosign", "azurekms://v.vault.azure.net.evil/cosign",
           "azurekms://localhost:" + std::to_string(w.vault.port()) + "/cosign"}) {
    CAPTURE(uri);
    auto r = loop.run(kv.key(uri, in(10s)));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
  }
  CHECK(w.aad.requests() == 0);
  CHECK(w.vault.requests() == 0);
  auto aws = loop.run(kv.key("awskms:///alias/cosign", in(10s)));
  REQUIRE_FALSE(aws.ok());
  CHECK(aws.error().code == Errc::unsupported);
  // A token for the vault never goes to another host, whatever the caller asks.
  auto direct = loop.run(az->get_with_bearer(w.acr.url("/keys/x"), "t", in(10s)));
  CHECK_FALSE(direct.ok());
  CHECK(w.acr.requests() == 0);
}

TEST_CASE("azure: misconfiguration is an init error naming the setting") {
  World w;
  Loop loop(1);
  Options http_authority = w.options(true, false);
  http_authority.workload_identity->authority_host = "http://login.example/";
  AzureCredentials a(loop.ioc.get_executor(), http_authority);
  REQUIRE_FALSE(a.init_status().ok());
  CHECK(a.init_status().error().message.find("AZURE_AUTHORITY_HOST") != std::string::npos);
  auto r = loop.run(a.for_registry(w.acr.authority(), "app", in(5s)));
  CHECK_FALSE(r.ok());  // fails closed, sends nothing
  Options warm = w.options(true, false);
  warm.warm_registries = {"x.azurecr.io"};  // not in this list
  AzureCredentials b(loop.ioc.get_executor(), warm);
  REQUIRE_FALSE(b.init_status().ok());
  CHECK(b.init_status().error().message.find("warm registry") != std::string::npos);
  CHECK(w.aad.requests() == 0);
  CHECK(w.acr.requests() == 0);
  CHECK(ManagedIdentityConfig{}.endpoint == "http://169.254.169.254");
}

TEST_CASE("azure: workload identity from the environment the AKS webhook injects") {
  std::map<std::string, std::string> env{
      {"AZURE_CLIENT_ID", "c"}, {"AZURE_TENANT_ID", "t"}, {"AZURE_FEDERATED_TOKEN_FILE", "/f"}};
  auto get = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  auto wi = workload_identity_from_env(get);
  REQUIRE(wi.has_value());
  CHECK(wi->authority_host == "https://login.microsoftonline.com/");
  CHECK(wi->token_file == "/f");
  env["AZURE_TENANT_ID"] = "";
  CHECK_FALSE(workload_identity_from_env(get).has_value());
}

TEST_CASE("azure: a burst of admissions on a cold cache shares one exchange and one token") {
  World w;
  Loop loop(2);
  AzureCredentials az(loop.ioc.get_executor(), w.options(true, false));
  std::vector<std::future<std::optional<Result<std::optional<std::string>>>>> calls;
  for (int i = 0; i < 16; ++i) {
    calls.push_back(boost::asio::co_spawn(
        loop.ioc,
        sigil::test::detail::as_optional(az.for_registry(w.acr.authority(), "app", in(10s))),
        boost::asio::use_future));
  }
  std::set<std::string> tokens;
  for (auto& c : calls) {
    auto r = *c.get();
    REQUIRE(r.ok());
    REQUIRE(r->has_value());
    tokens.insert(**r);
  }
  CHECK(tokens.size() == 1);
  CHECK(az.stats().aad_requests == 1);
  CHECK(az.stats().exchange_requests == 1);
  CHECK(az.stats().token_requests == 1);
}
