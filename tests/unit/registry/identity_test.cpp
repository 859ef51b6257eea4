// HttpClient's identity source (ClientOptions::identity, the Azure identities in sigil): tried
// only where neither the pod's pull secrets nor the docker config name the host, and only over
// TLS; its value sent as the Authorization of /v2/ itself, a 401 answered by one fresh
// credential, and its error in the denial. The fake registry speaks TLS (the test PKI's CA is
// the client's extra CA), as ACR does.
#include <atomic>
#include <mutex>

#include <catch2/catch.hpp>

#include "fake_http.hpp"
#include "registry/http_client.hpp"
#include "run_coro.hpp"

using namespace sigil;
using namespace sigil::registry;
using namespace std::chrono_literals;
using sigil::test::FakeHttpOptions;
using sigil::test::FakeHttpServer;
using sigil::test::HttpReply;
using sigil::test::HttpRequest;
using sigil::test::Loop;
using sigil::test::TempDir;
using sigil::test::tls_pki;

namespace {

const std::string kManifest =
    R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:)" +
    std::string(64, 'a') + R"(","size":2},"layers":[]})";

struct Source final : CredentialSource {
  std::string host;
  std::atomic<int> issued{0}, rejections{0};
  std::string error;  // non-empty: every call fails with it
  bool covers(std::string_view registry) const override { return registry == host; }
  boost::asio::awaitable<Result<std::optional<std::string>>> for_registry(std::string registry,
                                                                          std::string repository,
                                                                          Deadline) override {
    if (!error.empty()) co_return make_error(Errc::unauthorized, error);
    (void)registry, (void)repository;
    co_return std::optional<std::string>("Bearer good-" + std::to_string(++issued));
  }
  void rejected(std::string_view, std::string_view) override { ++rejections; }
};

FakeHttpOptions over(bool tls) {
  FakeHttpOptions o;
  o.tls = tls;
  return o;
}

// A registry that accepts "Bearer good-N" for N >= min_good, and asks for Basic otherwise.
struct Registry {
  explicit Registry(bool over_tls = true) : tls(over_tls) {}
  const bool tls;
  TempDir dir;
  std::atomic<int> min_good{1};
  std::mutex mu;
  std::vector<std::string> auths;
  FakeHttpServer srv{
      [this](const HttpRequest& r) {
        const std::string a = r.header("Authorization");
        {
          std::lock_guard lock(mu);
          auths.push_back(a);
        }
        if (a.rfind("Bearer good-", 0) == 0 && std::stoi(a.substr(12)) >= min_good) {
          HttpReply rep = HttpReply::json(200, kManifest);
          rep.headers = {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}};
          return rep;
        }
        if (a.rfind("Basic ", 0) == 0) {
          HttpReply rep = HttpReply::json(200, kManifest);
          rep.headers = {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}};
          return rep;
        }
        HttpReply rep = HttpReply::json(401, R"({"errors":[{"code":"UNAUTHORIZED"}]})");
        rep.headers = {{"WWW-Authenticate", "Basic realm=\"registry\""}};
        return rep;
      },
      over(tls)};
};

ClientOptions options(Registry& reg, std::shared_ptr<Source> src) {
  ClientOptions o;
  if (reg.tls) {
    o.ca_file = reg.dir.file("ca.pem", tls_pki().ca_pem);
  } else {
    o.insecure_hosts = {reg.srv.authority()};
  }
  o.identity = std::move(src);
  o.max_retries = 0;
  return o;
}

Deadline in(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

}  // namespace

TEST_CASE("identity: its credential is sent to /v2/ of the host it covers") {
  Registry reg;
  auto src = std::make_shared<Source>();
  src->host = reg.srv.authority();
  Loop loop;
  HttpClient c(loop.ioc.get_executor(), options(reg, src));
  auto m = loop.run(c.get_manifest(reg.srv.authority(), "app", "v1", in(5s)));
  INFO((m ? std::string() : m.error().message));
  REQUIRE(m.ok());
  std::lock_guard lock(reg.mu);
  REQUIRE(reg.auths.size() == 1);
  CHECK(reg.auths[0] == "Bearer good-1");
  CHECK(c.has_credentials_for(reg.srv.authority(), "app"));
  CHECK_FALSE(c.has_credentials_for("other.example", "app"));
}

TEST_CASE("identity: a 401 with its credential: rejected, one fresh credential, then success") {
  Registry reg;
  reg.min_good = 2;
  auto src = std::make_shared<Source>();
  src->host = reg.srv.authority();
  Loop loop;
  HttpClient c(loop.ioc.get_executor(), options(reg, src));
  auto m = loop.run(c.get_manifest(reg.srv.authority(), "app", "v1", in(5s)));
  INFO((m ? std::string() : m.error().message));
  REQUIRE(m.ok());
  CHECK(src->rejections == 1);
  std::lock_guard lock(reg.mu);
  CHECK(reg.auths == std::vector<std::string>{"Bearer good-1", "Bearer good-2"});
}

TEST_CASE("identity: a second 401 is the answer, not a loop") {
  Registry reg;
  reg.min_good = 100;
  auto src = std::make_shared<Source>();
  src->host = reg.srv.authority();
  Loop loop;
  HttpClient c(loop.ioc.get_executor(), options(reg, src));
  auto m = loop.run(c.get_manifest(reg.srv.authority(), "app", "v1", in(5s)));
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == Errc::unauthorized);
  CHECK(reg.srv.requests() == 2);
}

TEST_CASE("identity: the docker config and the pod's pull secrets win for the hosts they name") {
  Registry reg;
  auto src = std::make_shared<Source>();
  src->host = reg.srv.authority();
  Loop loop;
  ClientOptions o = options(reg, src);
  o.credentials.auths[reg.srv.authority()] = Credential{"u", "p", ""};
  HttpClient c(loop.ioc.get_executor(), o);
  REQUIRE(loop.run(c.get_manifest(reg.srv.authority(), "app", "v1", in(5s))).ok());
  CHECK(src->issued == 0);

  HttpClient c2(loop.ioc.get_executor(), options(reg, src));
  auto pod = std::make_shared<DockerConfig>();
  pod->auths[reg.srv.authority()] = Credential{"pod", "secret", ""};
  REQUIRE(loop.run(c2.get_manifest(reg.srv.authority(), "app", "v1", in(5s), pod)).ok());
  CHECK(src->issued == 0);
}

TEST_CASE("identity: every identity failing: anonymous, and the denial names what was tried") {
  Registry reg;
  auto src = std::make_shared<Source>();
  src->host = reg.srv.authority();
  src->error = "azure workload identity (client id c): AAD answered 401 (invalid_client)";
  Loop loop;
  HttpClient c(loop.ioc.get_executor(), options(reg, src));
  auto m = loop.run(c.get_manifest(reg.srv.authority(), "app", "v1", in(5s)));
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == Errc::unauthorized);
  CHECK(m.error().message.find("azure workload identity (client id c)") != std::string::npos);
  std::lock_guard lock(reg.mu);
  REQUIRE_FALSE(reg.auths.empty());
  CHECK(reg.auths[0].empty());  // anonymous
}

TEST_CASE("identity: a host it does not cover never reaches it") {
  Registry reg;
  auto src = std::make_shared<Source>();
  src->host = "x.azurecr.io";
  Loop loop;
  HttpClient c(loop.ioc.get_executor(), options(reg, src));
  (void)loop.run(c.get_manifest(reg.srv.authority(), "app", "v1", in(5s)));
  CHECK(src->issued == 0);
}

TEST_CASE("identity: a host it covers but spoken to over plain HTTP gets no token") {
  Registry reg(false);  // listed as insecure: plain HTTP
  auto src = std::make_shared<Source>();
  src->host = reg.srv.authority();
  Loop loop;
  HttpClient c(loop.ioc.get_executor(), options(reg, src));
  auto m = loop.run(c.get_manifest(reg.srv.authority(), "app", "v1", in(5s)));
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == Errc::unauthorized);
  CHECK(src->issued == 0);
  // Nothing here reads with sigil's own credentials: a verdict is not withheld for it.
  CHECK_FALSE(c.has_credentials_for(reg.srv.authority(), "app"));
  std::lock_guard lock(reg.mu);
  REQUIRE_FALSE(reg.auths.empty());
  for (const auto& a : reg.auths) CHECK(a.find("Bearer") == std::string::npos);
}
