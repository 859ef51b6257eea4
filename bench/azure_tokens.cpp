// bench_azure_tokens: what the ACR flow costs an admission, cold and warm.
//
// Cold: a new process's first pull credential for a registry, Workload Identity -> AAD ->
// /oauth2/exchange -> /oauth2/token, three TLS requests to fakes on 127.0.0.1 (so the number is
// sigil's own cost plus loopback TLS, not Azure's latency: real AAD answers in 100-500 ms).
// Warm: the credential of an admission once the tokens are cached (what a running sigil does,
// the background refresh keeping them fresh): the number of AAD / IMDS / exchange / token
// requests on that path must be 0, and its time is the cache lookup.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "azure/azure.hpp"
#include "common/encoding.hpp"
#include "fake_http.hpp"
#include "run_coro.hpp"

using namespace sigil;
using namespace sigil::azure;
using namespace std::chrono_literals;
using sigil::test::FakeHttpServer;
using sigil::test::HttpReply;
using sigil::test::HttpRequest;

namespace {

std::string b64url(const std::string& s) {
  std::string b = base64_encode(s);
  for (char& c : b) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!b.empty() && b.back() == '=') b.pop_back();
  return b;
}

std::string jwt() {
  static std::atomic<int> n{0};
  const auto exp = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count() +
                   3600;
  return b64url(R"({"alg":"none"})") + "." +
         b64url(R"({"tid":"t","exp":)" + std::to_string(exp) + R"(,"jti":)" + std::to_string(++n) +
                "}") +
         ".";
}

HttpReply answer(const HttpRequest& r) {
  if (r.path == "/t/oauth2/v2.0/token")
    return HttpReply::json(200, R"({"expires_in":3600,"access_token":")" + jwt() + "\"}");
  if (r.path == "/oauth2/exchange")
    return HttpReply::json(200, R"({"refresh_token":")" + jwt() + "\"}");
  if (r.path == "/oauth2/token")
    return HttpReply::json(200, R"({"access_token":")" + jwt() + "\"}");
  return HttpReply::json(404, "{}");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_azure_tokens"};
  int cold_n = 50, warm_n = 20000;
  app.add_option("--cold", cold_n, "cold runs");
  app.add_option("--warm", warm_n, "warm calls");
  CLI11_PARSE(app, argc, argv);

  sigil::test::FakeHttpOptions tls;
  tls.tls = true;
  FakeHttpServer aad(answer, tls);
  FakeHttpServer acr(answer, tls);
  sigil::test::TempDir dir;
  const std::string token_file = dir.file("token", "federated");
  sigil::test::Loop loop(1);

  Options o;
  o.workload_identity = WorkloadIdentityConfig{"c", "t", token_file, aad.origin()};
  o.registries = HostAllowlist::parse({acr.authority()}).value();
  o.tls.system_roots = false;
  o.tls.ca_pem = sigil::test::tls_pki().ca_pem;

  std::vector<double> cold;
  for (int i = 0; i < cold_n; ++i) {
    AzureCredentials az(loop.ioc.get_executor(), o);
    const auto t0 = std::chrono::steady_clock::now();
    auto r =
        loop.run(az.for_registry(acr.authority(), "app", std::chrono::steady_clock::now() + 10s));
    const auto t1 = std::chrono::steady_clock::now();
    if (!r || !r->has_value()) {
      std::fprintf(stderr, "cold run failed: %s\n",
                   r ? "no credential" : r.error().message.c_str());
      return 1;
    }
    cold.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }

  AzureCredentials az(loop.ioc.get_executor(), o);
  (void)loop.run(az.for_registry(acr.authority(), "app", std::chrono::steady_clock::now() + 10s));
  const Stats before = az.stats();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < warm_n; ++i) {
    auto r =
        loop.run(az.for_registry(acr.authority(), "app", std::chrono::steady_clock::now() + 10s));
    if (!r || !r->has_value()) return 1;
  }
  const auto t1 = std::chrono::steady_clock::now();
  const Stats after = az.stats();
  const uint64_t calls = (after.aad_requests - before.aad_requests) +
                         (after.imds_requests - before.imds_requests) +
                         (after.exchange_requests - before.exchange_requests) +
                         (after.token_requests - before.token_requests);
  std::printf("cold (AAD + exchange + token, loopback TLS fakes): median %.2f ms over %d runs\n",
              median(cold), cold_n);
  std::printf(
      "warm (cached access token), incl. spawning the coroutine from another thread: "
      "%.1f us per call over %d calls; identity/token requests on the path: %llu\n",
      std::chrono::duration<double, std::micro>(t1 - t0).count() / warm_n, warm_n,
      static_cast<unsigned long long>(calls));
  return calls == 0 ? 0 : 1;
}
