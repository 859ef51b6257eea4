// kube::Client against the fake API server: TLS verification, bearer tokens and rotation,
// keep-alive reuse, paging, error bodies, caps, deadlines, cancellation, status patches.
#include <cstdlib>
#include <future>
#include <random>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "common/encoding.hpp"
#include "fake_api.hpp"
#include "kube/client.hpp"

using namespace sigil;
using namespace sigil::kube;
using namespace sigil::test;

namespace {

Deadline in(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

const Resource kCip = resources::cluster_image_policies();

}  // namespace

TEST_CASE("GET an object over verified TLS with a bearer token; 404 is not_found") {
  FakeApi api;
  api.create("clusterimagepolicies", policy_object("prod", "", {{"images", {{{"glob", "**"}}}}}));
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  REQUIRE(client->init_status().ok());
  auto o = loop.run(client->get(kCip, "", "prod", in(5s)));
  REQUIRE(o.ok());
  CHECK(o->meta.name == "prod");
  CHECK(o->meta.generation == 1);
  CHECK(contains(o->json, "\"glob\":\"**\""));
  auto seen = api.seen();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].authorization == "Bearer good-token");
  CHECK(seen[0].path == "/apis/sigil.dev/v1alpha1/clusterimagepolicies/prod");

  auto missing = loop.run(client->get(kCip, "", "nope", in(5s)));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
  CHECK(contains(missing.error().message, "HTTP 404"));
  CHECK(contains(missing.error().message, "NotFound: clusterimagepolicies \"nope\" not found"));
}

TEST_CASE("keep-alive: sequential calls reuse one connection") {
  FakeApi api;
  api.create("clusterimagepolicies", policy_object("a"));
  Loop loop(2);
  auto client = std::make_shared<Client>(loop.ioc.get_executor(), api.config());
  for (int i = 0; i < 5; ++i) REQUIRE(loop.run(client->get(kCip, "", "a", in(5s))).ok());
  CHECK(api.connections() == 1);
  CHECK(client->request_count() == 5);
}

TEST_CASE("TLS: a server certificate from another CA or for another name is refused") {
  FakeApi api;
  Loop loop(2);
  SECTION("other CA") {
    auto cfg = api.config();
    cfg.ca_pem = pki().other_ca_pem;
    Client client(loop.ioc.get_executor(), cfg);
    auto r = loop.run(client.get(kCip, "", "a", in(5s)));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unavailable);
    CHECK(contains(r.error().message, "certificate verification failed"));
  }
  SECTION("name mismatch via tls-server-name") {
    auto cfg = api.config();
    cfg.tls_server_name = "kubernetes.evil.example";
    Client client(loop.ioc.get_executor(), cfg);
    auto r = loop.run(client.get(kCip, "", "a", in(5s)));
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "certificate verification failed"));
  }
  SECTION("the right name via tls-server-name works") {
    auto cfg = api.config();
    cfg.tls_server_name = "localhost";
    Client client(loop.ioc.get_executor(), cfg);
    auto r = loop.run(client.get(kCip, "", "a", in(5s)));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::not_found);  // TLS fine, object missing
  }
  // The host's trust store holds public CAs, any of which can issue a certificate for an
  // address. With a cluster CA, only it may vouch for the API server. SSL_CERT_FILE is where
  // OpenSSL's default paths (the system roots) look: here it holds the server's own CA.
  SECTION("with a cluster CA, the system roots are not trusted as well") {
    TempDir dir;
    const std::string roots = dir.file("roots.pem", pki().ca_pem);
    const char* before = std::getenv("SSL_CERT_FILE");
    const std::string saved = before ? before : "";
    ::setenv("SSL_CERT_FILE", roots.c_str(), 1);
    auto system = api.config();
    system.ca_pem.clear();  // no cluster CA: the system roots, which now vouch for the server
    Client by_system(loop.ioc.get_executor(), system);
    auto ok = loop.run(by_system.get(kCip, "", "a", in(5s)));
    auto cfg = api.config();
    cfg.ca_pem = pki().other_ca_pem;
    Client client(loop.ioc.get_executor(), cfg);
    auto r = loop.run(client.get(kCip, "", "a", in(5s)));
    if (before) {
      ::setenv("SSL_CERT_FILE", saved.c_str(), 1);
    } else {
      ::unsetenv("SSL_CERT_FILE");
    }
    REQUIRE_FALSE(ok.ok());
    CHECK(ok.error().code == Errc::not_found);  // TLS accepted through the system roots
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "certificate verification failed"));
  }
  SECTION("a CA that does not parse fails every call") {
    auto cfg = api.config();
    cfg.ca_pem = "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n";
    Client client(loop.ioc.get_executor(), cfg);
    CHECK_FALSE(client.init_status().ok());
    auto r = loop.run(client.get(kCip, "", "a", in(5s)));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(api.connections() == 0);
  }
}

TEST_CASE("client certificate authentication (kubeconfig client-certificate-data)") {
  FakeOptions fo;
  fo.require_client_cert = true;
  fo.token = "";
  FakeApi api(fo);
  api.create("clusterimagepolicies", policy_object("a"));
  Loop loop(2);
  auto cfg = api.config();
  cfg.token.clear();
  {
    Client without(loop.ioc.get_executor(), cfg);
    CHECK_FALSE(loop.run(without.get(kCip, "", "a", in(5s))).ok());
  }
  cfg.client_cert_pem = pki().client_cert_pem;
  cfg.client_key_pem = pki().client_key_pem;
  Client with(loop.ioc.get_executor(), cfg);
  REQUIRE(with.init_status().ok());
  CHECK(loop.run(with.get(kCip, "", "a", in(5s))).ok());
  auto bad = cfg;
  bad.client_key_pem = pki().server_key_pem;  // does not match the certificate
  Client mismatched(loop.ioc.get_executor(), bad);
  CHECK_FALSE(mismatched.init_status().ok());
}

TEST_CASE("token: a wrong token is a readable 401, never echoed") {
  FakeApi api;
  Loop loop(2);
  auto cfg = api.config();
  cfg.token = "wrong-token-value";
  Client client(loop.ioc.get_executor(), cfg);
  auto r = loop.run(client.get(kCip, "", "a", in(5s)));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unauthorized);
  CHECK(contains(r.error().message, "HTTP 401"));
  CHECK_FALSE(contains(r.error().message, "wrong-token-value"));
  CHECK(api.unauthorized() == 1);  // no retry without a token file
}

TEST_CASE("token rotation: a 401 re-reads the token file and retries once") {
  FakeApi api;
  api.create("clusterimagepolicies", policy_object("a"));
  TempDir dir;
  const std::string tf = dir.file("token", "tok-1\n");
  api.set_token("tok-1");
  Loop loop(2);
  auto cfg = api.config();
  cfg.token = "tok-1";
  cfg.token_file = tf;
  ClientOptions co;
  co.token_reload = std::chrono::hours(1);  // only the 401 path re-reads
  Client client(loop.ioc.get_executor(), cfg, co);
  REQUIRE(loop.run(client.get(kCip, "", "a", in(5s))).ok());
  CHECK(client.token_reads() == 0);

  write_file_atomically(tf, "tok-2\n");
  api.set_token("tok-2");
  REQUIRE(loop.run(client.get(kCip, "", "a", in(5s))).ok());
  CHECK(api.unauthorized() == 1);
  CHECK(client.token_reads() == 1);
  auto seen = api.seen();
  CHECK(seen.back().authorization == "Bearer tok-2");

  SECTION("a 401 with an unchanged file is final") {
    api.set_token("tok-3");
    auto r = loop.run(client.get(kCip, "", "a", in(5s)));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unauthorized);
    CHECK(api.unauthorized() == 2);
  }
}

TEST_CASE("token rotation: the file is re-read every token_reload") {
  FakeApi api;
  api.create("clusterimagepolicies", policy_object("a"));
  TempDir dir;
  const std::string tf = dir.file("token", "tok-1");
  api.set_token("tok-1");
  Loop loop(2);
  auto cfg = api.config();
  cfg.token = "tok-1";
  cfg.token_file = tf;
  ClientOptions co;
  co.token_reload = 100ms;
  Client client(loop.ioc.get_executor(), cfg, co);
  REQUIRE(loop.run(client.get(kCip, "", "a", in(5s))).ok());
  write_file_atomically(tf, "tok-2");
  api.set_token("tok-2");
  std::this_thread::sleep_for(150ms);
  REQUIRE(loop.run(client.get(kCip, "", "a", in(5s))).ok());
  CHECK(api.unauthorized() == 0);  // the periodic re-read found it first
  CHECK(client.token_reads() >= 1);
  SECTION("an unreadable file keeps the last good token") {
    std::filesystem::remove(tf);
    std::this_thread::sleep_for(150ms);
    CHECK(loop.run(client.get(kCip, "", "a", in(5s))).ok());
  }
}

TEST_CASE("LIST follows continue tokens; an expired token restarts the list once") {
  FakeApi api;
  for (int i = 0; i < 7; ++i)
    api.create("clusterimagepolicies", policy_object("p" + std::to_string(i)));
  const std::string rv = api.resource_version();
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  ListOptions lo;
  lo.limit = 3;
  auto page = loop.run(client.list_page(kCip, "", lo, in(5s)));
  REQUIRE(page.ok());
  CHECK(page->items.size() == 3);
  CHECK_FALSE(page->continue_token.empty());

  auto all = loop.run(client.list(kCip, "", lo, in(5s)));
  REQUIRE(all.ok());
  CHECK(all->items.size() == 7);
  CHECK(all->resource_version == rv);
  CHECK(all->items.front().meta.name == "p0");
  CHECK(all->items.back().meta.name == "p6");
  CHECK(api.count("GET", "/apis/sigil.dev/v1alpha1/clusterimagepolicies") == 4);
  auto seen = api.seen();
  CHECK(seen[1].query.at("limit") == "3");
  CHECK(seen[2].query.count("continue") == 1);

  api.expire_continue = true;
  auto again = loop.run(client.list(kCip, "", lo, in(5s)));
  REQUIRE(again.ok());
  CHECK(again->items.size() == 7);
  CHECK(api.count("GET", "/apis/sigil.dev/v1alpha1/clusterimagepolicies") == 4 + 2 + 3);

  auto single = loop.run(client.list_page(kCip, "", ListOptions{3, "3:" + rv, "", ""}, in(5s)));
  REQUIRE(single.ok());
  api.expire_continue = true;
  auto gone = loop.run(client.list_page(kCip, "", ListOptions{3, "3:" + rv, "", ""}, in(5s)));
  REQUIRE_FALSE(gone.ok());
  CHECK(contains(gone.error().message, "HTTP 410"));
  CHECK(contains(gone.error().message, "Expired"));
}

// A list restarts once when its continue token expires; a server whose every continue token
// has expired gets an error, not a list that starts over until its deadline.
TEST_CASE("LIST: continue tokens that always expire end the list after one restart") {
  FakeApi api;
  for (int i = 0; i < 5; ++i)
    api.create("clusterimagepolicies", policy_object("p" + std::to_string(i)));
  api.expire_continues = true;
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  ListOptions lo;
  lo.limit = 2;
  auto r = loop.run(client.list(kCip, "", lo, in(5s)));
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "HTTP 410"));
  // The first page and its expired continuation, twice.
  CHECK(api.count("GET", "/apis/sigil.dev/v1alpha1/clusterimagepolicies") == 4);
}

// Each page is capped, and so are the pages together: a server whose continue tokens never end
// (or a collection far larger than sigil's) gets an error, not a list that grows without bound.
TEST_CASE("LIST: the pages together are capped") {
  FakeApi api;
  for (int i = 0; i < 8; ++i)
    api.create("clusterimagepolicies",
               policy_object("p" + std::to_string(i), "", {{"blob", std::string(1000, 'x')}}));
  Loop loop(2);
  ClientOptions co;
  co.max_list = 5000;
  Client client(loop.ioc.get_executor(), api.config(), co);
  ListOptions lo;
  lo.limit = 1;
  auto r = loop.run(client.list(kCip, "", lo, in(5s)));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
  CHECK(contains(r.error().message, "more than 5000 bytes"));
  CHECK(api.count("GET", "/apis/sigil.dev/v1alpha1/clusterimagepolicies") < 8);
  // Under the cap, the same list is whole.
  co.max_list = 64 * 1024;
  Client roomy(loop.ioc.get_executor(), api.config(), co);
  auto all = loop.run(roomy.list(kCip, "", lo, in(5s)));
  REQUIRE(all.ok());
  CHECK(all->items.size() == 8);
}

TEST_CASE("LIST: a page too large to read is read again in smaller pages") {
  // Objects up to etcd's 1.5 MiB (a tenant's ImagePolicies) make a page of 500 too big for
  // max_response: the list must not fail for good (a new replica would never be ready).
  FakeApi api;
  for (int i = 0; i < 9; ++i)
    api.create("clusterimagepolicies",
               policy_object("p" + std::to_string(i), "", {{"blob", std::string(3000, 'x')}}));
  Loop loop(2);
  ClientOptions co;
  co.max_response = 8 * 1024;  // two objects a page, not three
  Client client(loop.ioc.get_executor(), api.config(), co);
  ListOptions lo;
  lo.limit = 500;
  auto all = loop.run(client.list(kCip, "", lo, in(5s)));
  INFO((all ? std::string() : all.error().message));
  REQUIRE(all.ok());
  CHECK(all->items.size() == 9);
  // 500 (too large), 125, 31, 7 (too large), then 1 at a time: 9 pages.
  CHECK(api.count("GET", "/apis/sigil.dev/v1alpha1/clusterimagepolicies") == 4 + 9);
  // One object past max_response is still an error.
  api.create("clusterimagepolicies", policy_object("huge", "", {{"blob", std::string(9000, 'x')}}));
  auto r = loop.run(client.list(kCip, "", lo, in(5s)));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
}

TEST_CASE("listed objects are kept without managedFields and annotations; a GET keeps them") {
  FakeApi api;
  json obj = policy_object("noted", "", {{"images", {{{"glob", "**"}}}}});
  obj["metadata"]["annotations"] = {
      {"kubectl.kubernetes.io/last-applied-configuration", std::string(5000, 'l')}};
  obj["metadata"]["managedFields"] = json::array({{{"manager", "kubectl"}}});
  obj["metadata"]["labels"] = {{"team", "a"}};
  obj["status"] = {{"observedGeneration", 1}};
  api.create("clusterimagepolicies", obj);
  Loop loop(2);
  ClientOptions co;
  co.max_list = 2000;  // what is kept is counted, not what was sent
  Client client(loop.ioc.get_executor(), api.config(), co);
  auto list = loop.run(client.list(kCip, "", ListOptions{}, in(5s)));
  INFO((list ? std::string() : list.error().message));
  REQUIRE(list.ok());
  REQUIRE(list->items.size() == 1);
  const json j = json::parse(list->items[0].json);
  CHECK_FALSE(j["metadata"].contains("annotations"));
  CHECK_FALSE(j["metadata"].contains("managedFields"));
  CHECK(j["metadata"]["labels"]["team"] == "a");
  CHECK(j["metadata"]["name"] == "noted");
  CHECK(j["spec"]["images"][0]["glob"] == "**");
  CHECK(j["status"]["observedGeneration"] == 1);
  // A GET's object may be edited and PUT back (selfcert: the webhook configurations, whose
  // annotations include AKS's admissions.enforcer/disabled): it is whole.
  auto got = loop.run(client.get(kCip, "", "noted", in(5s)));
  REQUIRE(got.ok());
  const json g = json::parse(got->json);
  CHECK(g["metadata"]["annotations"] == obj["metadata"]["annotations"]);
  CHECK(g["metadata"].contains("managedFields"));
}

TEST_CASE("response size caps") {
  FakeApi api;
  api.create("clusterimagepolicies", policy_object("big", "", {{"blob", std::string(8000, 'x')}}));
  Loop loop(2);
  ClientOptions co;
  co.max_response = 4096;
  Client client(loop.ioc.get_executor(), api.config(), co);
  auto r = loop.run(client.get(kCip, "", "big", in(5s)));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
  // The client still works afterwards (the oversized answer's connection was dropped).
  api.create("clusterimagepolicies", policy_object("small"));
  CHECK(loop.run(client.get(kCip, "", "small", in(5s))).ok());
}

TEST_CASE("every call is bounded by its deadline and can be cancelled") {
  FakeApi api;
  api.stall_ms = 3000;
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  const auto start = std::chrono::steady_clock::now();
  auto r = loop.run(client.get_secret("ns", "stall", in(200ms)));
  const auto took = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::timeout);
  CHECK(took < 2s);

  Cancel cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(100ms);
    cancel.cancel();
  });
  const auto start2 = std::chrono::steady_clock::now();
  auto c = loop.run(client.get_secret("ns", "stall", in(10s), cancel));
  canceller.join();
  REQUIRE_FALSE(c.ok());
  CHECK(contains(c.error().message, "cancelled"));
  CHECK(std::chrono::steady_clock::now() - start2 < 2s);
  // Already cancelled: fails at once, sends nothing.
  const auto before = api.seen().size();
  CHECK_FALSE(loop.run(client.get_secret("ns", "x", in(5s), cancel)).ok());
  CHECK(api.seen().size() == before);
}

TEST_CASE("Cancel fired at random points while calls are in flight (run under ASan)") {
  // The bridge from Cancel to net's cancellation slot: a cancel() that races the call's start,
  // its end, or a pooled connection's reuse must end the call cleanly and free nothing twice.
  FakeApi api;
  api.stall_ms = 2;
  api.create("clusterimagepolicies", policy_object("a"));
  Loop loop(4);
  Client client(loop.ioc.get_executor(), api.config());
  std::mt19937_64 rng(4242);
  int cancelled = 0, completed = 0;
  for (int round = 0; round < 30; ++round) {
    constexpr int kCallers = 6;
    std::vector<Cancel> cancels(kCallers);
    std::vector<std::future<std::optional<Result<Secret>>>> futs;
    for (int i = 0; i < kCallers; ++i) {
      const std::string name = i % 2 ? "stall" : "x";
      futs.push_back(boost::asio::co_spawn(
          loop.ioc,
          sigil::test::detail::as_optional(client.get_secret("ns", name, in(10s), cancels[i])),
          boost::asio::use_future));
    }
    for (int i = 0; i < kCallers; ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
      if (rng() % 3 != 0) cancels[i].cancel();
    }
    for (auto& f : futs) {
      auto r = f.get();
      REQUIRE(r);
      if (r->ok() || r->error().code == Errc::not_found) {
        ++completed;
      } else {
        INFO(r->error().message);
        CHECK(contains(r->error().message, "cancelled"));
        ++cancelled;
      }
    }
  }
  CHECK(completed > 0);
  CHECK(cancelled > 0);
  CHECK(loop.run(client.get(kCip, "", "a", in(5s))).ok());
}

TEST_CASE("HTTP errors map to error codes with the server's message") {
  FakeApi api;
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  api.fail_gets_with = 403;
  auto f = loop.run(client.get_secret("ns", "x", in(5s)));
  CHECK(f.error().code == Errc::unauthorized);
  CHECK(contains(f.error().message, "HTTP 403"));
  api.fail_gets_with = 500;
  auto u = loop.run(client.get_secret("ns", "x", in(5s)));
  CHECK(u.error().code == Errc::unavailable);
  CHECK(contains(u.error().message, "injected failure"));
  api.fail_gets_with = 504;
  CHECK(loop.run(client.get_secret("ns", "x", in(5s))).error().code == Errc::timeout);
}

// A proxy or a broken server may answer with a body that is not a metav1.Status. It is quoted
// only when it is text, and then cleaned and capped: an error message is a log line.
TEST_CASE("HTTP errors whose body is not a Status: text is quoted clean and short, bytes never") {
  FakeApi api;
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  const std::string evil = "\x1b[31mdenied\r\nlevel=info msg=forged " + std::string(500, 'x');
  // fail_nth counts requests from the server's start.
  api.http().fail_nth(Fault::http_500, static_cast<int>(api.http().seen().size()) + 1,
                      {{"Content-Type", "text/plain"}}, evil);
  auto text = loop.run(client.get_secret("ns", "x", in(5s)));
  REQUIRE_FALSE(text.ok());
  const std::string& m = text.error().message;
  CAPTURE(m);
  CHECK(contains(m, "HTTP 500"));
  CHECK(contains(m, "denied"));
  CHECK(m.find_first_of("\r\n\x1b") == std::string::npos);
  CHECK(m.size() < 400);
  api.http().fail_nth(Fault::http_500, static_cast<int>(api.http().seen().size()) + 1,
                      {{"Content-Type", "application/octet-stream"}}, "binary-secret-bytes");
  auto bytes = loop.run(client.get_secret("ns", "x", in(5s)));
  REQUIRE_FALSE(bytes.ok());
  CHECK(contains(bytes.error().message, "HTTP 500"));
  CHECK_FALSE(contains(bytes.error().message, "binary-secret-bytes"));
}

TEST_CASE("merge-patch on /status sends the patch and returns the stored object") {
  FakeApi api;
  api.create("clusterimagepolicies", policy_object("prod"));
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  auto r = loop.run(client.merge_patch_status(kCip, "", "prod",
                                              R"J({"status":{"observedGeneration":1}})J", in(5s)));
  REQUIRE(r.ok());
  CHECK(contains(r->json, "\"observedGeneration\":1"));
  auto seen = api.seen();
  REQUIRE_FALSE(seen.empty());
  CHECK(seen.back().method == "PATCH");
  CHECK(seen.back().path == "/apis/sigil.dev/v1alpha1/clusterimagepolicies/prod/status");
  CHECK(seen.back().content_type == "application/merge-patch+json");
  REQUIRE(api.patches().size() == 1);
  auto missing = loop.run(client.merge_patch_status(kCip, "", "gone", "{}", in(5s)));
  CHECK(missing.error().code == Errc::not_found);
}

TEST_CASE("GET Secret and ServiceAccount") {
  FakeApi api;
  api.create("secrets", {{"apiVersion", "v1"},
                         {"kind", "Secret"},
                         {"metadata", {{"name", "pull"}, {"namespace", "app"}}},
                         {"type", "kubernetes.io/dockerconfigjson"},
                         {"data", {{".dockerconfigjson", base64_encode(R"J({"auths":{}})J")}}}});
  api.create("serviceaccounts", {{"apiVersion", "v1"},
                                 {"kind", "ServiceAccount"},
                                 {"metadata", {{"name", "default"}, {"namespace", "app"}}},
                                 {"imagePullSecrets", {{{"name", "pull"}}}}});
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  auto s = loop.run(client.get_secret("app", "pull", in(5s)));
  REQUIRE(s.ok());
  CHECK(s->data.at(".dockerconfigjson") == R"J({"auths":{}})J");
  auto sa = loop.run(client.get_service_account("app", "default", in(5s)));
  REQUIRE(sa.ok());
  CHECK(sa->image_pull_secrets == std::vector<std::string>{"pull"});
  CHECK(loop.run(client.get_secret("other", "pull", in(5s))).error().code == Errc::not_found);
  CHECK(api.seen()[0].path == "/api/v1/namespaces/app/secrets/pull");
}

TEST_CASE("a kubeconfig on disk drives a working client") {
  FakeApi api;
  api.create("clusterimagepolicies", policy_object("a"));
  TempDir dir;
  dir.file("ca.pem", pki().ca_pem);
  dir.file("token", "good-token\n");
  const std::string path =
      dir.file("config",
               "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: fake\n"
               "  cluster:\n    server: https://127.0.0.1:" +
                   std::to_string(api.port()) +
                   "\n    certificate-authority: ca.pem\ncontexts:\n- name: test\n  context:\n"
                   "    cluster: fake\n    user: me\nusers:\n- name: me\n  user:\n"
                   "    tokenFile: token\n");
  auto cfg = load_kubeconfig(path);
  REQUIRE(cfg.ok());
  Loop loop(2);
  Client client(loop.ioc.get_executor(), *cfg);
  CHECK(loop.run(client.get(kCip, "", "a", in(5s))).ok());
}

TEST_CASE("a watch stream delivers events, bookmarks, and a clean end") {
  FakeApi api;
  const std::string rv = api.resource_version();
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  WatchOptions wo;
  wo.resource_version = rv;
  wo.timeout_seconds = 1;
  auto w = loop.run(client.watch(kCip, "", wo, in(5s)));
  REQUIRE(w.ok());
  api.create("clusterimagepolicies", policy_object("a"));
  std::vector<WatchEvent> got;
  while (got.empty()) {
    auto evs = loop.run((*w)->next());
    REQUIRE(evs.ok());
    REQUIRE_FALSE(evs->empty());
    for (auto& e : *evs) got.push_back(std::move(e));
  }
  CHECK(got[0].type == EventType::added);
  CHECK(got[0].object.meta.name == "a");
  api.bookmark();
  auto bm = loop.run((*w)->next());
  REQUIRE(bm.ok());
  REQUIRE(bm->size() == 1);
  CHECK((*bm)[0].type == EventType::bookmark);
  CHECK((*bm)[0].object.meta.resource_version == api.resource_version());
  auto end = loop.run((*w)->next());  // timeoutSeconds=1: the server ends the stream
  REQUIRE(end.ok());
  CHECK(end->empty());
  auto seen = api.seen();
  CHECK(seen[0].query.at("watch") == "true");
  CHECK(seen[0].query.at("resourceVersion") == rv);
  CHECK(seen[0].query.at("allowWatchBookmarks") == "true");
  CHECK(seen[0].query.at("timeoutSeconds") == "1");
}

TEST_CASE("a watch refused with HTTP 410 yields a synthesized ERROR 410 event") {
  FakeApi api;
  api.create("clusterimagepolicies", policy_object("a"));
  const std::string old = "100";
  api.compact();
  api.gone_as_http = true;
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  WatchOptions wo;
  wo.resource_version = old;
  auto w = loop.run(client.watch(kCip, "", wo, in(5s)));
  REQUIRE(w.ok());
  auto evs = loop.run((*w)->next());
  REQUIRE(evs.ok());
  REQUIRE(evs->size() == 1);
  CHECK((*evs)[0].type == EventType::error);
  CHECK((*evs)[0].status.code == 410);
  CHECK(loop.run((*w)->next())->empty());
}

TEST_CASE("a watch read is cancelled promptly") {
  FakeApi api;
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  Cancel cancel;
  WatchOptions wo;
  wo.timeout_seconds = 30;
  auto w = loop.run(client.watch(kCip, "", wo, in(5s), cancel));
  REQUIRE(w.ok());
  std::thread t([&] {
    std::this_thread::sleep_for(100ms);
    cancel.cancel();
  });
  const auto start = std::chrono::steady_clock::now();
  auto evs = loop.run((*w)->next());
  t.join();
  REQUIRE_FALSE(evs.ok());
  CHECK(std::chrono::steady_clock::now() - start < 2s);
}

// A watch whose connection goes silent (a half-open TCP connection, a stuck proxy) must end by
// itself a little after the server should have ended it (timeoutSeconds + read_slack), so the
// reflector renews it. The test's own cancel, at 10 s, only keeps a broken build from hanging.
TEST_CASE("a silent watch stream ends at timeoutSeconds plus the read slack") {
  FakeApi api;
  api.silent_watches = true;
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  Cancel cancel;
  WatchOptions wo;
  wo.timeout_seconds = 1;
  wo.read_slack = 300ms;
  auto w = loop.run(client.watch(kCip, "", wo, in(5s), cancel));
  REQUIRE(w.ok());
  std::promise<void> done;
  std::thread guard([&, f = done.get_future()] {
    if (f.wait_for(10s) == std::future_status::timeout) cancel.cancel();
  });
  const auto start = std::chrono::steady_clock::now();
  auto evs = loop.run((*w)->next());
  const auto took = std::chrono::steady_clock::now() - start;
  done.set_value();
  guard.join();
  REQUIRE_FALSE(evs.ok());
  CHECK(evs.error().code == Errc::timeout);
  CHECK(took >= 1s);
  CHECK(took < 5s);
}

TEST_CASE("a watch event larger than max_event fails the stream, not the process") {
  FakeApi api;
  Loop loop(2);
  ClientOptions co;
  co.max_event = 2048;
  Client client(loop.ioc.get_executor(), api.config(), co);
  WatchOptions wo;
  wo.resource_version = api.resource_version();
  wo.timeout_seconds = 10;
  auto w = loop.run(client.watch(kCip, "", wo, in(5s)));
  REQUIRE(w.ok());
  api.create("clusterimagepolicies", policy_object("big", "", {{"blob", std::string(4096, 'x')}}));
  auto evs = loop.run((*w)->next());
  REQUIRE_FALSE(evs.ok());
  CHECK(evs.error().code == Errc::too_large);
  CHECK_FALSE(loop.run((*w)->next()).ok());  // the stream stays failed
}

TEST_CASE("create and replace: 409 is a conflict value, resourceVersion guards every update") {
  FakeApi api;
  Loop loop(2);
  Client client(loop.ioc.get_executor(), api.config());
  const Resource secrets = resources::secrets();
  const std::string body =
      R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"data":{"k":"dg=="}})";
  auto made = loop.run(client.create(secrets, "ns", body, in(5s)));
  REQUIRE(made.ok());
  CHECK_FALSE(made->conflict);
  CHECK(made->object.meta.namespace_ == "ns");
  const std::string rv = made->object.meta.resource_version;
  REQUIRE_FALSE(rv.empty());
  auto again = loop.run(client.create(secrets, "ns", body, in(5s)));
  REQUIRE(again.ok());
  CHECK(again->conflict);
  CHECK(again->status.reason == "AlreadyExists");

  auto put = [&](const std::string& version, const std::string& value) {
    const std::string b = R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s",)"
                          R"("resourceVersion":")" +
                          version + R"("},"data":{"k":")" + value + R"("}})";
    return loop.run(client.replace(secrets, "ns", "s", b, in(5s)));
  };
  auto updated = put(rv, "dzI=");
  REQUIRE(updated.ok());
  CHECK_FALSE(updated->conflict);
  CHECK(updated->object.meta.resource_version != rv);
  // The same stale version again: refused, the stored value stays.
  auto stale = put(rv, "eA==");
  REQUIRE(stale.ok());
  CHECK(stale->conflict);
  CHECK(stale->status.reason == "Conflict");
  auto s = loop.run(client.get_secret("ns", "s", in(5s)));
  REQUIRE(s.ok());
  CHECK(s->data.at("k") == "w2");
  CHECK(api.count("PUT", "/api/v1/namespaces/ns/secrets/s") == 2);

  auto missing = loop.run(client.replace(secrets, "ns", "nope", body, in(5s)));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
}
