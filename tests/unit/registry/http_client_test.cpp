// HttpClient against a fake registry speaking real HTTP/1.1 on 127.0.0.1:0 (the shared
// FakeHttpServer, tests/support/cpp/fake_http.hpp), with failure injection: the n-th request
// fails (the server's fail_nth, or a corrupted answer from FakeRegistry), n loops to success.
#include <atomic>
#include <map>
#include <mutex>

#include <catch2/catch.hpp>

#include "common/encoding.hpp"
#include "fake_dns.hpp"
#include "fake_http.hpp"
#include "oci/manifest.hpp"
#include "registry/auth.hpp"
#include "registry/http_client.hpp"
#include "run_coro.hpp"

namespace asio = boost::asio;
using namespace sigil;
using namespace sigil::registry;
using namespace std::chrono_literals;
using sigil::test::FakeHttpServer;
using sigil::test::HttpReply;
using sigil::test::HttpRequest;
using sigil::test::Loop;

namespace {

HttpReply reply(unsigned status, sigil::test::HttpHeaders headers = {}, std::string body = {}) {
  HttpReply r;
  r.status = status;
  r.headers = std::move(headers);
  r.body = std::move(body);
  return r;
}

const std::string kManifest =
    R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
    R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:)" +
    std::string(64, '0') + R"(","size":2},"layers":[]})";
const std::string kBlob = "{\"critical\":{\"image\":{}}}";
std::string digest_of(const std::string& s) {
  return *sha256_digest(s);
}

// A registry with one repo "team/app" (tag v1), optional bearer auth with its own token
// endpoint at /token. Its one fault of its own: the fail_at-th request (1-based) gets a
// corrupted answer; the others come from the server's fail_nth (plan() below).
struct FakeRegistry {
  enum class Fault { none, e401, e404, e429, e500, truncate, corrupt, stall };
  int fail_at = 0;  // corrupt only
  bool bearer = false;
  bool send_digest_header = true;
  std::string digest_header;  // sent instead of the manifest's digest when not empty
  std::atomic<int> count{0};
  std::atomic<bool> applied{false};  // the corruption changed a reply
  std::atomic<int> token_hits{0};
  std::string realm;          // set once the port is known
  std::string blob_redirect;  // when set, blob GETs redirect here

  HttpReply handle(const HttpRequest& req) {
    const int n = ++count;
    const std::string& target = req.target;
    const bool corrupt = n == fail_at;
    if (target.rfind("/token", 0) == 0) {
      ++token_hits;
      if (corrupt) applied = true;
      return reply(200, {{"Content-Type", "application/json"}},
                   corrupt ? "{\"tok" : R"({"token":"good-token","expires_in":300})");
    }
    if (bearer && req.header("Authorization") != "Bearer good-token") {
      return reply(401, {{"WWW-Authenticate", "Bearer realm=\"" + realm + "\",service=\"fake\""}});
    }
    const std::string mpath = "/v2/team/app/manifests/";
    if (target == mpath + "v1" || target == mpath + digest_of(kManifest)) {
      HttpReply r =
          reply(200, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}}, kManifest);
      if (send_digest_header) {
        r.headers.push_back({"Docker-Content-Digest",
                             digest_header.empty() ? digest_of(kManifest) : digest_header});
      }
      if (corrupt && req.method == "GET") {
        r.body[10] ^= 1;
        applied = true;
      }
      return r;
    }
    if (target == "/v2/team/app/blobs/" + digest_of(kBlob)) {
      if (!blob_redirect.empty()) return reply(307, {{"Location", blob_redirect}});
      HttpReply r = reply(200, {{"Content-Type", "application/octet-stream"}}, kBlob);
      if (corrupt) {
        r.body[0] = 'X';
        applied = true;
      }
      return r;
    }
    return reply(404, {}, R"({"errors":[{"code":"NAME_UNKNOWN"}]})");
  }
};

// The n-th request meets `fault`: corrupt from the registry, the rest from the server.
void plan(FakeHttpServer& srv, FakeRegistry& reg, FakeRegistry::Fault fault, int n) {
  using F = FakeRegistry::Fault;
  using sigil::test::Fault;
  if (fault == F::none) return;
  if (fault == F::corrupt) {
    reg.fail_at = n;
    return;
  }
  static const std::map<F, Fault> kServerFault = {
      {F::e401, Fault::http_401}, {F::e404, Fault::http_404},           {F::e429, Fault::http_429},
      {F::e500, Fault::http_500}, {F::truncate, Fault::truncated_body}, {F::stall, Fault::stall}};
  sigil::test::HttpHeaders headers;
  if (fault == F::e401) {
    headers = {{"WWW-Authenticate", "Bearer realm=\"" + reg.realm + "\",service=\"fake\""}};
  }
  srv.fail_nth(kServerFault.at(fault), n, headers);
}

ClientOptions options_for(const std::string& authority) {
  ClientOptions o;
  o.insecure_hosts = {authority};
  o.backoff_base = 5ms;
  return o;
}

struct Flow {
  Result<std::string> digest = make_error(Errc::internal, "not run");
  Result<ManifestResponse> manifest = make_error(Errc::internal, "not run");
  Result<std::string> blob = make_error(Errc::internal, "not run");
  Error first_error() const {
    if (!digest) return digest.error();
    if (!manifest) return manifest.error();
    return blob.error();
  }
  bool ok() const { return digest.ok() && manifest.ok() && blob.ok(); }
};

asio::awaitable<Flow> full_flow(HttpClient& c, std::string registry, Deadline deadline) {
  Flow f;
  oci::Reference ref{registry, "team/app", "v1", ""};
  f.digest = co_await c.resolve(ref, deadline);
  if (!f.digest) co_return f;
  f.manifest = co_await c.get_manifest(registry, "team/app", *f.digest, deadline);
  if (!f.manifest) co_return f;
  f.blob = co_await c.get_blob(registry, "team/app", digest_of(kBlob), 1 << 20, deadline);
  co_return f;
}

}  // namespace

TEST_CASE("happy path: resolve, manifest by digest, blob; 3 requests") {
  Loop loop;
  FakeRegistry reg;
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  REQUIRE(c.init_status().ok());
  auto f = loop.run(full_flow(c, srv.authority(), std::chrono::steady_clock::now() + 5s));
  REQUIRE(f.ok());
  CHECK(*f.digest == digest_of(kManifest));
  CHECK(f.manifest->body == kManifest);
  CHECK(f.manifest->media_type == "application/vnd.oci.image.manifest.v1+json");
  CHECK(*f.blob == kBlob);
  CHECK(c.request_count() == 3);
  auto seen = srv.seen();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].method == "HEAD");
}

TEST_CASE("a reference with a digest resolves with zero requests") {
  Loop loop;
  HttpClient c(loop.ioc.get_executor(), ClientOptions{});
  std::string d = "sha256:" + std::string(64, 'a');
  auto r = loop.run(
      c.resolve(oci::Reference{"127.0.0.1:1", "a", "", d}, std::chrono::steady_clock::now() + 1s));
  REQUIRE(r.ok());
  CHECK(*r == d);
  CHECK(c.request_count() == 0);
}

TEST_CASE("no Docker-Content-Digest: GET and hash") {
  Loop loop;
  FakeRegistry reg;
  reg.send_digest_header = false;
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto d = loop.run(c.resolve(oci::Reference{srv.authority(), "team/app", "v1", ""},
                              std::chrono::steady_clock::now() + 5s));
  REQUIRE(d.ok());
  CHECK(*d == digest_of(kManifest));
}

TEST_CASE("a Docker-Content-Digest that is not a sha256 digest is refused") {
  // The tag's digest is taken from this header: only the one form sigil verifies.
  auto header = GENERATE(std::string("sha512:") + std::string(128, 'a'),
                         std::string("sha256:") + std::string(64, 'A'),
                         std::string("sha256:") + std::string(63, 'a'), std::string("md5:abc"),
                         std::string("sha256:../../x"));
  Loop loop;
  FakeRegistry reg;
  reg.digest_header = header;
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto d = loop.run(c.resolve(oci::Reference{srv.authority(), "team/app", "v1", ""},
                              std::chrono::steady_clock::now() + 5s));
  INFO(header);
  REQUIRE_FALSE(d.ok());
  CHECK(d.error().code == Errc::verification);
  CHECK(d.error().message.find("not sha256") != std::string::npos);
}

TEST_CASE("failure injection: the n-th request fails, n loops until success") {
  using F = FakeRegistry::Fault;
  auto [fault, bearer, allowed] = GENERATE(table<F, bool, std::vector<Errc>>({
      {F::e401, true, {Errc::unauthorized}},
      {F::e404, false, {Errc::not_found}},
      {F::e404, true, {Errc::not_found, Errc::unavailable}},  // 404 from the token endpoint
      {F::e429, true, {}},
      {F::e500, false, {}},
      {F::truncate, false, {}},
      {F::corrupt, false, {Errc::verification}},
      {F::corrupt, true, {Errc::verification, Errc::parse_error}},
      {F::stall, false, {Errc::timeout}},
  }));
  CAPTURE(static_cast<int>(fault), bearer);
  bool succeeded = false;
  for (int n = 1; n <= 12 && !succeeded; ++n) {
    CAPTURE(n);
    Loop loop;
    FakeRegistry reg;
    reg.bearer = bearer;
    FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
    reg.realm = "http://" + srv.authority() + "/token";
    plan(srv, reg, fault, n);
    HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
    auto deadline = std::chrono::steady_clock::now() + (fault == F::stall ? 400ms : 5s);
    auto f = loop.run(full_flow(c, srv.authority(), deadline));
    bool fired = srv.requests() >= n;
    bool applied = srv.fault_fired() || reg.applied;
    if (f.ok()) {
      CHECK(*f.digest == digest_of(kManifest));
      CHECK(*f.blob == kBlob);
      succeeded = !fired;
      if (applied && !allowed.empty()) {
        // Some faults may be absorbed (a 401 by re-auth, a 404 token by anonymous retry...)
        // but digest corruption must never be.
        CHECK(fault != F::corrupt);
      }
      // retried faults: the flow absorbs them
    } else {
      INFO(f.first_error().message);
      REQUIRE(fired);
      CHECK(std::find(allowed.begin(), allowed.end(), f.first_error().code) != allowed.end());
    }
    srv.stop();
  }
  CHECK(succeeded);
}

TEST_CASE("retried faults (429, 500, truncated) never surface while retries remain") {
  using F = FakeRegistry::Fault;
  auto fault = GENERATE(F::e429, F::e500, F::truncate);
  for (int n = 1; n <= 3; ++n) {
    Loop loop;
    FakeRegistry reg;
    CAPTURE(static_cast<int>(fault), n);
    FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
    plan(srv, reg, fault, n);
    HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
    auto f = loop.run(full_flow(c, srv.authority(), std::chrono::steady_clock::now() + 5s));
    INFO((f.ok() ? std::string() : f.first_error().message));
    CHECK(f.ok());
    // 3 + the retry. A truncated HEAD answer is complete (no body); its connection is either
    // dropped (leftover bytes seen) or found dead on reuse and retried fresh.
    if (fault == F::truncate && n == 1) {
      CHECK(c.request_count() >= 3);
      CHECK(c.request_count() <= 4);
    } else {
      CHECK(c.request_count() == 4);
    }
  }
}

TEST_CASE("persistent 500 gives up with unavailable, bounded by max_retries") {
  Loop loop;
  std::atomic<int> hits{0};
  FakeHttpServer srv([&](const HttpRequest&) {
    ++hits;
    return reply(503);
  });
  auto o = options_for(srv.authority());
  o.max_retries = 2;
  HttpClient c(loop.ioc.get_executor(), o);
  auto r = loop.run(c.resolve(oci::Reference{srv.authority(), "a", "v1", ""},
                              std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unavailable);
  CHECK(hits == 3);
}

TEST_CASE("Retry-After past the deadline is not waited for") {
  Loop loop;
  FakeHttpServer srv([&](const HttpRequest&) { return reply(429, {{"Retry-After", "30"}}); });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto start = std::chrono::steady_clock::now();
  auto r = loop.run(c.resolve(oci::Reference{srv.authority(), "a", "v1", ""}, start + 2s));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unavailable);
  CHECK(std::chrono::steady_clock::now() - start < 1s);
}

TEST_CASE("404 on resolve is not_found and names the image") {
  Loop loop;
  FakeRegistry reg;
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto r = loop.run(c.resolve(oci::Reference{srv.authority(), "team/app", "nope", ""},
                              std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::not_found);
  CHECK(r.error().message.find("team/app:nope") != std::string::npos);
  CHECK(c.request_count() == 1);  // 4xx is not retried
}

TEST_CASE("manifest by digest: other bytes fail verification") {
  Loop loop;
  FakeRegistry reg;
  FakeHttpServer srv([&](const HttpRequest& r) {
    auto rep = reg.handle(r);
    if (rep.body == kManifest) rep.body = kManifest + " ";
    return rep;
  });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto m = loop.run(c.get_manifest(srv.authority(), "team/app", digest_of(kManifest),
                                   std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == Errc::verification);
}

TEST_CASE("size caps: Content-Length above cap and chunked bodies over cap") {
  auto chunked = GENERATE(false, true);
  Loop loop;
  std::string big(100, 'x');
  FakeHttpServer srv([&](const HttpRequest&) {
    HttpReply r = reply(200, {}, big);
    r.chunked = chunked;
    return r;
  });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto b = loop.run(
      c.get_blob(srv.authority(), "a", digest_of(big), 99, std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(b.ok());
  INFO(b.error().message);
  CHECK(b.error().code == Errc::too_large);
  auto ok = loop.run(
      c.get_blob(srv.authority(), "a", digest_of(big), 100, std::chrono::steady_clock::now() + 5s));
  CHECK(ok.ok());
}

TEST_CASE("bearer: token cached per scope, re-auth once, proactive token for new scope") {
  Loop loop;
  FakeRegistry reg;
  reg.bearer = true;
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  reg.realm = "http://" + srv.authority() + "/token";
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  oci::Reference ref{srv.authority(), "team/app", "v1", ""};
  auto dl = std::chrono::steady_clock::now() + 5s;
  REQUIRE(loop.run(c.resolve(ref, dl)).ok());
  CHECK(c.request_count() == 3);  // 401, token, HEAD
  CHECK(c.token_request_count() == 1);
  REQUIRE(loop.run(c.resolve(ref, dl)).ok());
  CHECK(c.request_count() == 4);  // cached token: HEAD only
  CHECK(c.token_request_count() == 1);
  // Another repository: known bearer host, so token first, no 401 round trip.
  auto other = loop.run(c.resolve(oci::Reference{srv.authority(), "team/other", "v1", ""}, dl));
  CHECK(other.error().code == Errc::not_found);
  CHECK(c.request_count() == 6);
  CHECK(c.token_request_count() == 2);
}

TEST_CASE("bearer: a realm over 2 KiB is refused, and its token endpoint never asked") {
  // What a challenge names is remembered per registry origin (host and port): a hostile
  // registry sending 16 KiB realms from thousands of ports held tens of MiB.
  Loop loop;
  FakeRegistry reg;
  reg.bearer = true;
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  reg.realm = "http://" + srv.authority() + "/token?pad=" + std::string(2100, 'p');
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto r = loop.run(c.resolve(oci::Reference{srv.authority(), "team/app", "v1", ""},
                              std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unauthorized);
  CHECK(r.error().message.find("over 2048 bytes") != std::string::npos);
  CHECK(reg.token_hits == 0);
  // An ordinary one works.
  reg.realm = "http://" + srv.authority() + "/token";
  CHECK(loop.run(c.resolve(oci::Reference{srv.authority(), "team/app", "v1", ""},
                           std::chrono::steady_clock::now() + 5s))
            .ok());
}

TEST_CASE("bearer: remembered challenges are bounded (max_auth_hosts)") {
  // Each origin's challenge is remembered; a hostile registry names as many origins as it likes.
  // Past the bound the memory starts over: a registry forgotten pays one more 401.
  auto resolves_of_a = [](size_t max_auth_hosts) {
    Loop loop;
    FakeRegistry a, b;
    a.bearer = b.bearer = true;
    FakeHttpServer sa([&](const HttpRequest& r) { return a.handle(r); });
    FakeHttpServer sb([&](const HttpRequest& r) { return b.handle(r); });
    a.realm = "http://" + sa.authority() + "/token";
    b.realm = "http://" + sb.authority() + "/token";
    auto o = options_for(sa.authority());
    o.insecure_hosts.push_back(sb.authority());
    o.max_auth_hosts = max_auth_hosts;
    HttpClient c(loop.ioc.get_executor(), o);
    const auto dl = std::chrono::steady_clock::now() + 5s;
    REQUIRE(loop.run(c.resolve(oci::Reference{sa.authority(), "team/app", "v1", ""}, dl)).ok());
    REQUIRE(loop.run(c.resolve(oci::Reference{sb.authority(), "team/app", "v1", ""}, dl)).ok());
    const int before = sa.requests();
    // Another repository of a: its token is fetched first when a's challenge is remembered.
    auto other = loop.run(c.resolve(oci::Reference{sa.authority(), "team/other", "v1", ""}, dl));
    CHECK(other.error().code == Errc::not_found);  // the fake has no such repository
    return sa.requests() - before;
  };
  CHECK(resolves_of_a(1024) == 2);  // token, HEAD
  CHECK(resolves_of_a(1) == 3);     // b's challenge pushed a's out: 401, token, HEAD
}

TEST_CASE("bearer: credentials are not sent to a plain-http realm") {
  Loop loop;
  FakeRegistry reg;
  reg.bearer = true;
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  reg.realm = "http://" + srv.authority() + "/token";
  auto o = options_for(srv.authority());
  o.credentials.auths[srv.authority()] = Credential{"user", "pass", ""};
  HttpClient c(loop.ioc.get_executor(), o);
  REQUIRE(loop.run(c.resolve(oci::Reference{srv.authority(), "team/app", "v1", ""},
                             std::chrono::steady_clock::now() + 5s))
              .ok());
  for (auto& s : srv.seen()) {
    if (s.target.rfind("/token", 0) == 0) CHECK(s.header("Authorization").empty());
  }
}

TEST_CASE("basic auth: right, wrong and missing credentials") {
  enum Case { right, wrong, missing, lookalike };
  auto which = GENERATE(right, wrong, missing, lookalike);
  Loop loop;
  const std::string good = basic_authorization("alice", "pw");
  FakeRegistry reg;
  FakeHttpServer srv([&](const HttpRequest& r) {
    if (r.header("Authorization") != good) {
      return reply(401, {{"WWW-Authenticate", "Basic realm=\"fake\""}});
    }
    return reg.handle(r);
  });
  auto o = options_for(srv.authority());
  if (which == right) o.credentials.auths[srv.authority()] = Credential{"alice", "pw", ""};
  if (which == wrong) o.credentials.auths[srv.authority()] = Credential{"alice", "nope", ""};
  if (which == lookalike) o.credentials.auths["127.0.0.1"] = Credential{"alice", "pw", ""};
  HttpClient c(loop.ioc.get_executor(), o);
  auto r = loop.run(c.resolve(oci::Reference{srv.authority(), "team/app", "v1", ""},
                              std::chrono::steady_clock::now() + 5s));
  if (which == right) {
    REQUIRE(r.ok());
    // The host is now known to use Basic: the next call sends it at once.
    auto before = c.request_count();
    REQUIRE(loop.run(c.resolve(oci::Reference{srv.authority(), "team/app", "v1", ""},
                               std::chrono::steady_clock::now() + 5s))
                .ok());
    CHECK(c.request_count() == before + 1);
  } else {
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unauthorized);
    for (auto& s : srv.seen()) CHECK(s.header("Authorization").find("pw") == std::string::npos);
  }
}

TEST_CASE("pull secrets with a path: each repository gets the credential the kubelet would use") {
  // One registry, two repository-scoped credentials in one pod's pull secret (ACR tokens).
  Loop loop;
  const std::string for_a = basic_authorization("team-a", "pa");
  const std::string for_b = basic_authorization("team-b", "pb");
  FakeHttpServer srv([&](const HttpRequest& r) {
    const std::string a = r.header("Authorization");
    const bool ok = (r.target.rfind("/v2/team-a/", 0) == 0 && a == for_a) ||
                    (r.target.rfind("/v2/team-b/", 0) == 0 && a == for_b);
    if (!ok) return reply(401, {{"WWW-Authenticate", "Basic realm=\"fake\""}});
    return reply(200, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}}, kManifest);
  });
  auto pod = std::make_shared<DockerConfig>();
  pod->scoped[srv.authority()]["team-a"] = Credential{"team-a", "pa", ""};
  pod->scoped[srv.authority()]["team-b"] = Credential{"team-b", "pb", ""};
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  const auto in5 = [] { return std::chrono::steady_clock::now() + 5s; };
  CHECK(loop.run(c.get_manifest(srv.authority(), "team-a/app", "v1", in5(), pod)).ok());
  CHECK(loop.run(c.get_manifest(srv.authority(), "team-b/app", "v1", in5(), pod)).ok());
  // No key covers team-c: anonymous, refused, and neither team's password was sent there.
  auto c3 = loop.run(c.get_manifest(srv.authority(), "team-c/app", "v1", in5(), pod));
  REQUIRE_FALSE(c3.ok());
  CHECK(c3.error().code == Errc::unauthorized);
  for (const auto& seen : srv.seen()) {
    if (seen.target.rfind("/v2/team-c/", 0) == 0) CHECK(seen.header("Authorization").empty());
  }
  // What the pod holds, as the verdict cache keys on it: per repository, not per host.
  CHECK(c.covers(pod, srv.authority(), "team-a/app"));
  CHECK(c.covers(pod, srv.authority(), "team-b/tools"));
  CHECK_FALSE(c.covers(pod, srv.authority(), "team-c/app"));
  CHECK_FALSE(c.covers(pod, "other.example", "team-a/app"));
}

TEST_CASE("redirect to another host: followed, but without Authorization") {
  Loop loop;
  FakeHttpServer storage([&](const HttpRequest&) { return reply(200, {}, kBlob); });
  FakeRegistry reg;
  reg.bearer = true;
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  reg.realm = "http://" + srv.authority() + "/token";
  reg.blob_redirect = "http://" + storage.authority() + "/blobs/x?sig=1";
  auto o = options_for(srv.authority());
  o.insecure_hosts.push_back(storage.authority());
  HttpClient c(loop.ioc.get_executor(), o);
  auto b = loop.run(c.get_blob(srv.authority(), "team/app", digest_of(kBlob), 1 << 20,
                               std::chrono::steady_clock::now() + 5s));
  REQUIRE(b.ok());
  CHECK(*b == kBlob);
  auto seen = storage.seen();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].target == "/blobs/x?sig=1");
  CHECK(seen[0].header("Authorization").empty());
  // The registry itself did get the token.
  CHECK(srv.seen().back().header("Authorization") == "Bearer good-token");
}

TEST_CASE("a 401 from the host a redirect led to is not answered with the registry's credentials") {
  // The storage host a blob is redirected to names its own token realm. Answering that
  // challenge would send the registry's credentials (here Basic, to the realm) to a host the
  // registry named, not to the registry: the answer stays a refusal.
  Loop loop;
  FakeHttpServer storage([&](const HttpRequest& r) {
    if (r.path == "/token") return reply(200, {}, R"({"token":"stolen"})");
    return reply(401, {{"WWW-Authenticate", "Bearer realm=\"http://" + r.header("Host") +
                                                "/token\",service=\"storage\""}});
  });
  FakeRegistry reg;  // anonymous reads: the first 401 of the call is the storage host's
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  reg.blob_redirect = "http://" + storage.authority() + "/blobs/x?sig=1";
  auto o = options_for(srv.authority());
  o.insecure_hosts.push_back(storage.authority());
  o.credentials.auths[srv.authority()] = Credential{"user", "pass", ""};
  HttpClient c(loop.ioc.get_executor(), o);
  auto b = loop.run(c.get_blob(srv.authority(), "team/app", digest_of(kBlob), 1 << 20,
                               std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(b.ok());
  CHECK(b.error().code == Errc::unauthorized);
  for (const auto& r : storage.seen()) {
    INFO(r.method << " " << r.target);
    CHECK(r.path != "/token");
    CHECK(r.header("Authorization").empty());
  }
  CHECK_FALSE(storage.seen().empty());
}

TEST_CASE("redirect to plain http (not an insecure host) is refused; redirect loops end") {
  Loop loop;
  FakeHttpServer storage([&](const HttpRequest&) { return reply(200, {}, kBlob); });
  FakeRegistry reg;
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  reg.blob_redirect = "http://" + storage.authority() + "/blobs/x";
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto b = loop.run(c.get_blob(srv.authority(), "team/app", digest_of(kBlob), 1 << 20,
                               std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(b.ok());
  CHECK(storage.seen().empty());

  reg.blob_redirect = "/v2/team/app/blobs/" + digest_of(kBlob);  // to itself, forever
  auto loopy = loop.run(c.get_blob(srv.authority(), "team/app", digest_of(kBlob), 1 << 20,
                                   std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(loopy.ok());
  CHECK(loopy.error().code == Errc::unavailable);
}

TEST_CASE("plain http is never used unless the host is listed insecure") {
  Loop loop;
  FakeRegistry reg;
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  HttpClient c(loop.ioc.get_executor(), ClientOptions{});
  auto r = loop.run(c.resolve(oci::Reference{srv.authority(), "team/app", "v1", ""},
                              std::chrono::steady_clock::now() + 2s));
  REQUIRE_FALSE(r.ok());                               // TLS handshake against a plain server fails
  for (auto& s : srv.seen()) CHECK(s.method.empty());  // no HTTP request was parsed
}

TEST_CASE("keep-alive: connections are reused") {
  Loop loop;
  FakeRegistry reg;
  std::atomic<int> conns{0};
  FakeHttpServer srv([&](const HttpRequest& r) { return reg.handle(r); });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  for (int i = 0; i < 3; ++i) {
    REQUIRE(loop.run(full_flow(c, srv.authority(), std::chrono::steady_clock::now() + 5s)).ok());
  }
  CHECK(c.request_count() == 9);
  (void)conns;
}

TEST_CASE("bad CA file fails closed") {
  Loop loop;
  ClientOptions o;
  o.ca_file = "/nonexistent/ca.pem";
  HttpClient c(loop.ioc.get_executor(), o);
  CHECK_FALSE(c.init_status().ok());
  auto r = loop.run(
      c.resolve(oci::Reference{"r.io", "a", "v1", ""}, std::chrono::steady_clock::now() + 1s));
  REQUIRE_FALSE(r.ok());
  CHECK(c.request_count() == 0);
}

namespace {

std::string index_of(const std::vector<std::pair<std::string, char>>& entries) {
  std::string m;
  for (const auto& [type, c] : entries) {
    if (!m.empty()) m += ",";
    m += R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" +
         std::string(64, c) + R"(","size":500,"artifactType":")" + type + R"("})";
  }
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)" +
         m + "]}";
}

const std::string kBundleType = "application/vnd.dev.sigstore.bundle.v0.3+json";
const std::string kSubject = "sha256:" + std::string(64, 'e');

}  // namespace

TEST_CASE("referrers: an index, filtered client-side, pages followed") {
  Loop loop;
  const std::string base = "/v2/team/app/referrers/" + kSubject;
  FakeHttpServer srv([&](const HttpRequest& req) -> HttpReply {
    const std::string& t = req.target;
    if (t.rfind(base, 0) != 0) return {404, {}, "404 page not found"};
    if (t.find("page=2") != std::string::npos) {
      return {200,
              {{"Content-Type", "application/vnd.oci.image.index.v1+json"}},
              index_of({{kBundleType, '3'}})};
    }
    // The registry ignores the filter (it may): sigil filters itself.
    return {200,
            {{"Content-Type", "application/vnd.oci.image.index.v1+json"},
             {"Link", "<" + base + "?page=2>; rel=\"next\""}},
            index_of({{kBundleType, '1'}, {"application/spdx+json", '2'}})};
  });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto r = loop.run(c.get_referrers(srv.authority(), "team/app", kSubject, kBundleType,
                                    std::chrono::steady_clock::now() + 5s));
  REQUIRE(r.ok());
  REQUIRE(r->size() == 2);
  CHECK((*r)[0].digest == "sha256:" + std::string(64, '1'));
  CHECK((*r)[1].digest == "sha256:" + std::string(64, '3'));
  auto seen = srv.seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].target.find("artifactType=application%2Fvnd.dev.sigstore.bundle.v0.3%2Bjson") !=
        std::string::npos);
}

TEST_CASE("referrers: descriptors come without their annotations") {
  // A hostile listing fills each page with annotations (map nodes, ten times their JSON) over
  // up to max_referrers_pages pages; nothing reads them, so none is kept.
  Loop loop;
  std::string annotations;
  for (int i = 0; i < 20000; ++i) {
    if (!annotations.empty()) annotations += ",";
    annotations += "\"k" + std::to_string(i) + "\":\"\"";
  }
  const std::string body =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)"
      R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" +
      std::string(64, '1') + R"(","size":500,"artifactType":")" + kBundleType +
      R"(","annotations":{)" + annotations + "}}]}";
  FakeHttpServer srv([&](const HttpRequest&) -> HttpReply {
    return {200, {{"Content-Type", "application/vnd.oci.image.index.v1+json"}}, body};
  });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto r = loop.run(c.get_referrers(srv.authority(), "team/app", kSubject, kBundleType,
                                    std::chrono::steady_clock::now() + 5s));
  REQUIRE(r.ok());
  REQUIRE(r->size() == 1);
  CHECK((*r)[0].digest == "sha256:" + std::string(64, '1'));
  CHECK((*r)[0].annotations.empty());
}

TEST_CASE("referrers: what is kept over all the pages holds no more than one page") {
  // Each page is dropped once read, but a descriptor's strings stay: 16 pages of one descriptor
  // with a mediaType of most of a page would keep 16 pages' worth.
  Loop loop;
  const std::string base = "/v2/team/app/referrers/" + kSubject;
  int served = 0;
  FakeHttpServer srv([&](const HttpRequest&) -> HttpReply {
    ++served;
    const std::string body =
        R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)"
        R"({"mediaType":"application/vnd.oci.image.manifest.v1+json;x=)" +
        std::string(400 * 1024, 'x') + R"(","digest":"sha256:)" + std::string(64, '1') +
        R"(","size":500,"artifactType":")" + kBundleType + R"("}]})";
    return {200,
            {{"Content-Type", "application/vnd.oci.image.index.v1+json"},
             {"Link", "<" + base + "?page=" + std::to_string(served) + ">; rel=\"next\""}},
            body};
  });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto r = loop.run(c.get_referrers(srv.authority(), "team/app", kSubject, kBundleType,
                                    std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
  CHECK(r.error().message.find("would hold more than") != std::string::npos);
  CHECK(served == 3);  // 3 x 400 KiB is past 1 MiB
}

TEST_CASE("referrers: a 404 means the registry has no referrers API") {
  Loop loop;
  FakeHttpServer srv([&](const HttpRequest&) -> HttpReply {
    return {404, {{"Content-Type", "text/plain"}}, "404 page not found"};
  });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto r = loop.run(c.get_referrers(srv.authority(), "team/app", kSubject, "",
                                    std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unsupported);
}

TEST_CASE("referrers: endless pages and non-index answers are errors, not loops") {
  Loop loop;
  const std::string base = "/v2/team/app/referrers/" + kSubject;
  bool manifest_instead = false;
  FakeHttpServer srv([&](const HttpRequest&) -> HttpReply {
    if (manifest_instead) {
      return {200, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}}, kManifest};
    }
    return {200,
            {{"Content-Type", "application/vnd.oci.image.index.v1+json"},
             {"Link", "<" + base + "?again=1>; rel=\"next\""}},
            index_of({})};
  });
  auto opts = options_for(srv.authority());
  opts.max_referrers_pages = 4;
  HttpClient c(loop.ioc.get_executor(), opts);
  auto r = loop.run(c.get_referrers(srv.authority(), "team/app", kSubject, "",
                                    std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
  CHECK(srv.seen().size() == 4);
  manifest_instead = true;
  auto m = loop.run(c.get_referrers(srv.authority(), "team/app", kSubject, "",
                                    std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == Errc::parse_error);
}

TEST_CASE("referrers: a registry without the API is remembered, not asked again") {
  Loop loop;
  FakeHttpServer srv([&](const HttpRequest&) -> HttpReply {
    return {404, {{"Content-Type", "text/plain"}}, "404 page not found"};
  });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  for (int i = 0; i < 3; ++i) {
    auto r = loop.run(c.get_referrers(srv.authority(), "team/app", kSubject, "",
                                      std::chrono::steady_clock::now() + 5s));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unsupported);
  }
  CHECK(c.request_count() == 1);
}

TEST_CASE("referrers: a bare 404 without credentials is not remembered for a pod that has some") {
  // A registry that hides its referrers API from anonymous callers behind a bare 404. One
  // admission without pull secrets must not make sigil skip the API for ten minutes for the
  // pods that bring theirs (their bundles would go unseen: a denial).
  Loop loop;
  const std::string alice = basic_authorization("alice", "pw");
  FakeHttpServer srv([&](const HttpRequest& r) -> HttpReply {
    const bool authed = r.header("Authorization") == alice;
    if (r.target.find("/referrers/") != std::string::npos) {
      if (!authed) return {404, {{"Content-Type", "text/plain"}}, "404 page not found"};
      return {200,
              {{"Content-Type", "application/vnd.oci.image.index.v1+json"}},
              index_of({{kBundleType, '1'}})};
    }
    return reply(401, {{"WWW-Authenticate", "Basic realm=\"fake\""}});
  });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto pod = std::make_shared<DockerConfig>();
  pod->auths[srv.authority()] = Credential{"alice", "pw", ""};
  auto dl = std::chrono::steady_clock::now() + 5s;
  // The host is learnt to want Basic.
  (void)loop.run(c.get_manifest(srv.authority(), "team/app", "v1", dl, pod));
  auto anonymous =
      loop.run(c.get_referrers(srv.authority(), "team/app", kSubject, kBundleType, dl));
  REQUIRE_FALSE(anonymous.ok());
  CHECK(anonymous.error().code == Errc::unsupported);
  auto with_secret =
      loop.run(c.get_referrers(srv.authority(), "team/app", kSubject, kBundleType, dl, pod));
  INFO((with_secret ? std::string() : with_secret.error().message));
  REQUIRE(with_secret.ok());
  CHECK(with_secret->size() == 1);
  // Still remembered for callers without credentials.
  auto again = loop.run(c.get_referrers(srv.authority(), "team/app", kSubject, kBundleType, dl));
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == Errc::unsupported);
}

TEST_CASE("referrers: a NAME_UNKNOWN 404 teaches nothing about the registry") {
  // Anyone who can create a pod can name a repository that does not exist on a real
  // registry. Its 404 (with a distribution error body) must not make the registry look like
  // one without a referrers API: bundle-signed images in other repositories would then be
  // looked up through the tag schema only, found unsigned, and that denial cached.
  Loop loop;
  const std::string real = "/v2/team/app/referrers/" + kSubject;
  FakeHttpServer srv([&](const HttpRequest& req) -> HttpReply {
    const std::string& t = req.target;
    if (t.rfind(real, 0) == 0) {
      return {200,
              {{"Content-Type", "application/vnd.oci.image.index.v1+json"}},
              index_of({{kBundleType, '1'}})};
    }
    return {404,
            {{"Content-Type", "application/json"}},
            R"({"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]})"};
  });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  auto none = loop.run(c.get_referrers(srv.authority(), "attacker/nothing", kSubject, "",
                                       std::chrono::steady_clock::now() + 5s));
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == Errc::not_found);  // ambiguous: not "no referrers API"
  auto r = loop.run(c.get_referrers(srv.authority(), "team/app", kSubject, "",
                                    std::chrono::steady_clock::now() + 5s));
  REQUIRE(r.ok());
  CHECK(r->size() == 1);
  CHECK(srv.seen().size() == 2);
}

TEST_CASE("referrers: a registry without the API is remembered per repository") {
  Loop loop;
  FakeHttpServer srv([&](const HttpRequest&) -> HttpReply {
    return {404, {{"Content-Type", "text/plain"}}, "404 page not found"};
  });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));
  for (const char* repo : {"team/app", "team/app", "team/other"}) {
    auto r = loop.run(c.get_referrers(srv.authority(), repo, kSubject, "",
                                      std::chrono::steady_clock::now() + 5s));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unsupported);
  }
  CHECK(c.request_count() == 2);  // one per repository
}

TEST_CASE("pull credentials of one admission are used for that call only") {
  // Over plain http the bearer flow never carries credentials (see the realm test above), so
  // this checks per-call credentials with Basic; token separation per credential is checked
  // end to end against the real registry with token auth over TLS (test_kube_e2e).
  Loop loop;
  const std::string alice = basic_authorization("alice", "pw");
  FakeRegistry reg;
  std::vector<std::string> auth_seen;
  std::mutex mu;
  FakeHttpServer srv([&](const HttpRequest& r) -> HttpReply {
    std::string auth = r.header("Authorization");
    {
      std::lock_guard l(mu);
      auth_seen.push_back(auth);
    }
    if (auth != alice) return reply(401, {{"WWW-Authenticate", "Basic realm=\"fake\""}});
    return reg.handle(r);
  });
  HttpClient c(loop.ioc.get_executor(), options_for(srv.authority()));  // no own credentials
  auto pod = std::make_shared<DockerConfig>();
  pod->auths[srv.authority()] = Credential{"alice", "pw", ""};
  const oci::Reference ref{srv.authority(), "team/app", "v1", ""};
  auto dl = std::chrono::steady_clock::now() + 5s;
  REQUIRE(loop.run(c.resolve(ref, dl, pod)).ok());
  // The next admission comes without them: the host is known to want Basic, but the client
  // has nothing of its own to send, and alice's password is not reused.
  auto anonymous = loop.run(c.resolve(ref, dl));
  REQUIRE_FALSE(anonymous.ok());
  CHECK(anonymous.error().code == Errc::unauthorized);
  REQUIRE(
      loop.run(c.get_blob(srv.authority(), "team/app", digest_of(kBlob), 1 << 20, dl, pod)).ok());
  std::lock_guard l(mu);
  size_t with_alice = 0;
  for (const auto& a : auth_seen) with_alice += a == alice;
  CHECK(with_alice == 2);  // the two calls that carried her credentials
}

// A fake registry on 127.0.0.1 behind the test's DNS server, and a client whose one shared
// lookup slot is held by a pod-named host whose DNS never answers (stall()).
struct StalledDns {
  Loop loop;
  FakeRegistry reg;
  FakeHttpServer srv{[this](const HttpRequest& r) { return reg.handle(r); }};
  sigil::test::FakeDns dns;
  const std::string port = std::to_string(srv.port());
  std::string at(const std::string& host) const { return host + ":" + port; }
  ClientOptions options(const std::string& insecure_host = {}) const {
    ClientOptions o = insecure_host.empty() ? ClientOptions{} : options_for(at(insecure_host));
    o.dns_servers = dns.servers();
    o.max_dns_lookups = 1;
    return o;
  }
  static Deadline in(std::chrono::milliseconds d) { return std::chrono::steady_clock::now() + d; }
  // Abandoned at its deadline, the lookup still holds the one shared slot.
  void stall(HttpClient& c) {
    auto stalled = loop.run(c.resolve({at("slow.test"), "x/y", "v1", ""}, in(100ms)));
    REQUIRE_FALSE(stalled.ok());
    CHECK(stalled.error().code == Errc::timeout);
  }
};

bool refused_at_dns(const Error& e) {
  return e.message.find("DNS lookups are already in flight") != std::string::npos;
}

TEST_CASE("operator_named: the operator's hosts, never a pod's") {
  // What verify/ keeps a share of the byte budget for: insecure hosts, the client's own
  // credentials, cluster policies' literal registries. Anything else is a pod's choice.
  Loop loop;
  ClientOptions o;
  o.insecure_hosts = {"127.0.0.1:5000"};
  o.credentials.auths["cred.example"] = Credential{"ops", "pw", ""};
  HttpClient c(loop.ioc.get_executor(), o);
  CHECK(c.operator_named("127.0.0.1:5000"));
  CHECK(c.operator_named("cred.example"));
  CHECK_FALSE(c.operator_named("ghcr.io"));
  CHECK_FALSE(c.operator_named("evil.example"));
  c.set_operator_registries({"ghcr.io"});
  CHECK(c.operator_named("ghcr.io"));
  CHECK_FALSE(c.operator_named("evil.example"));
}

TEST_CASE("dns: the operator's registries keep resolving while pod-named hosts stall DNS") {
  // A pod author chooses image names, and so the DNS servers asked for them: names whose DNS
  // never answers fill the shared lookup slots. The registries the operator configured
  // (insecure_hosts, its own credentials, the identity's hosts) resolve in reserved slots; a
  // pod's own pull secret reserves nothing, since the pod's author writes it.
  StalledDns s;
  for (const char* name : {"reg.test", "cred.test", "pod.test"}) s.dns.add(name);
  ClientOptions o = s.options("reg.test");
  o.credentials.auths[s.at("cred.test")] = Credential{"ops", "pw", ""};
  HttpClient c(s.loop.ioc.get_executor(), o);
  s.stall(c);
  // The operator's plain-http registry still resolves and serves the whole flow.
  Flow f = s.loop.run(full_flow(c, s.at("reg.test"), s.in(5s)));
  INFO((f.ok() ? std::string() : f.first_error().message));
  CHECK(f.ok());
  // A host the operator holds credentials for gets past DNS (then fails TLS: the fake speaks
  // plain HTTP, and this host is not listed insecure).
  const int before = s.srv.connections();
  auto cred = s.loop.run(c.resolve({s.at("cred.test"), "team/app", "v1", ""}, s.in(5s)));
  REQUIRE_FALSE(cred.ok());
  CHECK_FALSE(refused_at_dns(cred.error()));
  CHECK(s.srv.connections() > before);
  // Another host, even with the pod's own pull secret for it, finds the shared slot taken.
  auto pod = std::make_shared<DockerConfig>();
  pod->auths[s.at("pod.test")] = Credential{"alice", "pw", ""};
  auto other = s.loop.run(c.resolve({s.at("pod.test"), "team/app", "v1", ""}, s.in(5s), pod));
  REQUIRE_FALSE(other.ok());
  CHECK(other.error().code == Errc::unavailable);
  CHECK(refused_at_dns(other.error()));
}

TEST_CASE("dns: an operator's registry's token realm on another name resolves in reserved slots") {
  // The realm is asked on the registry's behalf: with the one shared slot held by a pod-named
  // host whose DNS never answers, the realm's own name must still resolve.
  StalledDns s;
  s.dns.add("reg.test");
  s.dns.add("auth.test");
  s.reg.bearer = true;
  s.reg.realm = "http://" + s.at("auth.test") + "/token";  // same server, another origin
  HttpClient c(s.loop.ioc.get_executor(), s.options("reg.test"));
  s.stall(c);
  Flow f = s.loop.run(full_flow(c, s.at("reg.test"), s.in(5s)));
  INFO((f.ok() ? std::string() : f.first_error().message));
  CHECK(f.ok());
  CHECK(s.reg.token_hits >= 1);
  CHECK(s.dns.queries("auth.test") >= 1);
}

TEST_CASE("dns: registries cluster-wide policies name keep DNS slots too, once set") {
  StalledDns s;
  s.dns.add("pol.test");
  HttpClient c(s.loop.ioc.get_executor(), s.options());
  s.stall(c);
  const oci::Reference ref{s.at("pol.test"), "team/app", "v1", ""};
  // Not named yet: refused at the lookup like any pod-named host.
  auto before = s.loop.run(c.resolve(ref, s.in(5s)));
  REQUIRE_FALSE(before.ok());
  CHECK(refused_at_dns(before.error()));
  // Named by a policy: past DNS (then refused over TLS: the fake speaks plain HTTP).
  c.set_operator_registries({s.at("pol.test")});
  auto after = s.loop.run(c.resolve(ref, s.in(5s)));
  REQUIRE_FALSE(after.ok());
  CHECK_FALSE(refused_at_dns(after.error()));
  CHECK(s.dns.queries("pol.test") >= 1);
}

// Covers the hosts whose first label is "cov" (as the Azure identity covers "*.azurecr.io")
// and has nothing for them: the requests go on anonymously.
struct CoverSource final : CredentialSource {
  bool covers(std::string_view registry) const override { return registry.rfind("cov.", 0) == 0; }
  boost::asio::awaitable<Result<std::optional<std::string>>> for_registry(std::string, std::string,
                                                                          Deadline) override {
    co_return std::optional<std::string>();
  }
  void rejected(std::string_view, std::string_view) override {}
};

TEST_CASE(
    "metrics marks: exchanges say whether the operator listed their host, or a pattern "
    "covered it") {
  // Listed hosts (registry.insecure, the operator's credentials, literal registries of
  // cluster-wide policies) get metric series no pod can take; a host inside a pattern the
  // operator allows is the pod author's choice of name, so only its DNS is reserved.
  StalledDns s;
  for (const char* name : {"reg.test", "cov.test", "pod.test", "pol.test"}) s.dns.add(name);
  ClientOptions o = s.options("reg.test");
  o.identity = std::make_shared<CoverSource>();
  std::mutex mu;
  std::map<std::string, std::pair<bool, bool>> marks;  // origin -> (named, listed)
  o.observer = [&](const sigil::net::Exchange& e) {
    std::lock_guard lock(mu);
    marks[e.origin] = {e.operator_named, e.operator_listed};
  };
  HttpClient c(s.loop.ioc.get_executor(), o);
  c.set_operator_registries({s.at("pol.test")});
  for (const char* host : {"reg.test", "cov.test", "pod.test", "pol.test"}) {
    (void)s.loop.run(c.resolve({s.at(host), "team/app", "v1", ""}, s.in(5s)));
  }
  std::lock_guard lock(mu);
  const auto mark = [&](const std::string& origin) {
    INFO(origin);
    REQUIRE(marks.count(origin) == 1);
    return marks[origin];
  };
  CHECK(mark("http://" + s.at("reg.test")) == std::pair(true, true));
  CHECK(mark("https://" + s.at("cov.test")) == std::pair(true, false));
  CHECK(mark("https://" + s.at("pod.test")) == std::pair(false, false));
  CHECK(mark("https://" + s.at("pol.test")) == std::pair(true, true));
}

TEST_CASE("docker config: the legacy .dockercfg form and merging") {
  auto legacy = parse_dockercfg(R"({"myacr.azurecr.io":{"auth":"dTpw"}})");
  REQUIRE(legacy.ok());
  REQUIRE(legacy->find("myacr.azurecr.io"));
  CHECK(legacy->find("myacr.azurecr.io")->username == "u");
  CHECK_FALSE(parse_dockercfg("[]").ok());
  CHECK_FALSE(parse_dockercfg(R"({"x": 1})").ok());
  DockerConfig a, b;
  a.auths["r.io"] = Credential{"first", "1", ""};
  b.auths["r.io"] = Credential{"second", "2", ""};
  b.auths["s.io"] = Credential{"s", "3", ""};
  merge_into(a, b);
  CHECK(a.find("r.io")->username == "first");
  CHECK(a.find("s.io")->username == "s");
}
