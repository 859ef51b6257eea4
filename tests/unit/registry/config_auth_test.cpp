// Pure parts of the registry module: docker config, host normalization, API paths, tokens.
#include <catch2/catch.hpp>

#include "common/encoding.hpp"
#include "registry/auth.hpp"
#include "registry/docker_config.hpp"
#include "registry/http_client.hpp"

using namespace sigil;
using namespace sigil::registry;

TEST_CASE("docker config: every credential form") {
  std::string auth = base64_encode("alice:s3:cret");  // password may contain ':'
  std::string json = R"({"auths":{
    "https://index.docker.io/v1/": {"auth": ")" +
                     auth + R"("},
    "myacr.azurecr.io": {"username": "00000000-0000", "password": "pw"},
    "http://Local.Test:5000/v2/": {"identitytoken": "refresh-abc"},
    "empty.example": {"auth": ""}
  }, "credsStore": "desktop"})";
  auto cfg = parse_docker_config(json);
  REQUIRE(cfg.ok());
  CHECK(cfg->auths.size() == 3);
  auto hub = cfg->find("docker.io");
  REQUIRE(hub);
  CHECK(hub->username == "alice");
  CHECK(hub->password == "s3:cret");
  CHECK(cfg->find("registry-1.docker.io"));
  auto acr = cfg->find("myacr.azurecr.io");
  REQUIRE(acr);
  CHECK(acr->username == "00000000-0000");
  CHECK(acr->password == "pw");
  auto local = cfg->find("local.test:5000");
  REQUIRE(local);
  CHECK(local->identity_token == "refresh-abc");
  CHECK_FALSE(local->has_basic());
  CHECK_FALSE(cfg->find("empty.example"));
}

TEST_CASE("docker config: auth wins over username/password, as docker does") {
  auto cfg = parse_docker_config(R"({"auths":{"r.io":{"auth":")" + base64_encode("u1:p1") +
                                 R"(","username":"u2","password":"p2"}}})");
  REQUIRE(cfg.ok());
  CHECK(cfg->find("r.io")->username == "u1");
}

TEST_CASE("docker config: lookalike hosts never match") {
  auto cfg = parse_docker_config(R"({"auths":{"x.azurecr.io":{"username":"u","password":"p"}}})");
  REQUIRE(cfg.ok());
  CHECK(cfg->find("x.azurecr.io"));
  CHECK(cfg->find("X.AzureCR.io"));
  // The same https origin, spelled with its default port (image references are normalized
  // the same way), is not a lookalike.
  CHECK(cfg->find("x.azurecr.io:443"));
  auto host = GENERATE(as<std::string>{}, "x.azurecr.io.evil.com", "evil.com/x.azurecr.io",
                       "evilx.azurecr.io", "azurecr.io", "x.azurecr.io:4430", "x.azurecr.io:80",
                       "x.azurecr.io.", "y.x.azurecr.io", "");
  CAPTURE(host);
  CHECK_FALSE(cfg->find(host));
}

TEST_CASE("docker config: a key with a path covers the repositories under it, as the kubelet") {
  // ACR's repository-scoped tokens: one credential per team on one registry, and one for the
  // rest. The kubelet matches a key's path as a prefix of the image's path and takes the most
  // specific; once sigil refused the whole Secret for "more than one auths entry".
  const auto cred = [](const char* u) {
    return R"({"username":")" + std::string(u) + R"(","password":"p"})";
  };
  auto cfg = parse_docker_config(R"({"auths":{"myacr.azurecr.io/team-a":)" + cred("a") +
                                 R"(,"https://myacr.azurecr.io/team-a/tools":)" + cred("tools") +
                                 R"(,"myacr.azurecr.io/v2/team-b":)" + cred("b") +
                                 R"(,"myacr.azurecr.io":)" + cred("host") + R"(,"other.io/x":)" +
                                 cred("x") + "}}");
  REQUIRE(cfg.ok());
  const auto user = [&](const char* registry, const char* repository) {
    auto c = cfg->find(registry, repository);
    return c ? c->username : std::string("(none)");
  };
  CHECK(user("myacr.azurecr.io", "team-a/app") == "a");
  CHECK(user("myacr.azurecr.io", "team-a/tools/lint") == "tools");  // the longest path
  CHECK(user("myacr.azurecr.io", "team-b/app") == "b");             // "/v2/" is the API's
  CHECK(user("myacr.azurecr.io", "team-a2/app") == "a");  // a string prefix, as the kubelet
  CHECK(user("myacr.azurecr.io", "team-c/app") == "host");
  CHECK(user("MyACR.azurecr.io:443", "team-b/app") == "b");
  CHECK(user("other.io", "x/app") == "x");
  CHECK(user("other.io", "y/app") == "(none)");  // no key for the host alone
  CHECK(user("evil.io", "team-a/app") == "(none)");
  // find(host) alone is the key of the host alone.
  REQUIRE(cfg->find("myacr.azurecr.io"));
  CHECK(cfg->find("myacr.azurecr.io")->username == "host");
  CHECK_FALSE(cfg->find("other.io"));
  // The same key spelled twice is still refused; the first Secret's key wins in a merge.
  CHECK_FALSE(parse_docker_config(R"({"auths":{"r.io/t":)" + cred("1") + R"(,"https://r.io/t":)" +
                                  cred("2") + "}}")
                  .ok());
  DockerConfig merged = *cfg;
  auto later = parse_docker_config(R"({"auths":{"myacr.azurecr.io/team-a":)" + cred("late") +
                                   R"(,"myacr.azurecr.io/team-d":)" + cred("d") + "}}");
  REQUIRE(later.ok());
  merge_into(merged, *later);
  CHECK(merged.find("myacr.azurecr.io", "team-a/app")->username == "a");
  CHECK(merged.find("myacr.azurecr.io", "team-d/app")->username == "d");
}

TEST_CASE("registry_key_path") {
  CHECK(registry_key_path("myreg.io").empty());
  CHECK(registry_key_path("https://index.docker.io/v1/").empty());
  CHECK(registry_key_path("http://myreg.io/v2/").empty());
  CHECK(registry_key_path("myreg.io/").empty());
  CHECK(registry_key_path("myreg.io/team") == "team");
  CHECK(registry_key_path("HTTPS://myreg.io/v1/team/app") == "team/app");
  CHECK(registry_key_path(" myreg.io:5000/team/ ") == "team/");
}

TEST_CASE("docker config: malformed input is an error, never a throw") {
  auto bad = GENERATE(
      as<std::string>{}, "", "{", "[]", "null", R"({"auths":[]})", R"({"auths":{"r.io":"x"}})",
      R"({"auths":{"r.io":{"auth":5}}})", R"({"auths":{"r.io":{"auth":"!!!"}}})",
      R"({"auths":{"r.io":{"auth":"bm9jb2xvbg=="}}})",  // "nocolon"
      R"({"auths":{"r.io":{"username":["u"]}}})", R"({"auths":{"":{"username":"u"}}})",
      R"({"auths":{"user@r.io":{"username":"u"}}})",
      R"({"auths":{"r.io":{"username":"u"},"https://r.io":{"username":"v"}}})");
  CAPTURE(bad);
  auto cfg = parse_docker_config(bad);
  REQUIRE_FALSE(cfg.ok());
  CHECK(cfg.error().code == Errc::parse_error);
}

TEST_CASE("docker config: error messages carry no secrets") {
  auto cfg = parse_docker_config(R"({"auths":{"r.io":{"auth":"c2VjcmV0LXZhbHVl!"}}})");
  REQUIRE_FALSE(cfg.ok());
  CHECK(cfg.error().message.find("c2VjcmV0") == std::string::npos);
}

TEST_CASE("normalize_registry_host") {
  auto [in, out] = GENERATE(table<std::string, std::string>({
      {"myreg.io", "myreg.io"},
      {"https://myreg.io", "myreg.io"},
      {"http://myreg.io/v1/", "myreg.io"},
      {"MyReg.IO:5000/", "myreg.io:5000"},
      {"https://index.docker.io/v1/", "docker.io"},
      {"registry-1.docker.io", "docker.io"},
      {"127.0.0.1:5000", "127.0.0.1:5000"},
      // one origin, one key: images are normalized the same way (oci::canonical_registry)
      {"myreg.io:443", "myreg.io"},
      {"https://MyReg.io:0443/v1/", "myreg.io"},
      {"registry.hub.docker.com", "docker.io"},
      {"foo:443", "foo:443"},
      {"ftp://x", ""},
      {"a b", ""},
      {"u:p@host", ""},
  }));
  CAPTURE(in);
  CHECK(normalize_registry_host(in) == out);
}

TEST_CASE("URL building validates every component") {
  CHECK(*manifest_path("team/app", "v1.0") == "/v2/team/app/manifests/v1.0");
  std::string d = "sha256:" + std::string(64, 'a');
  CHECK(*manifest_path("team/app", d) == "/v2/team/app/manifests/" + d);
  CHECK(*blob_path("a/b", d) == "/v2/a/b/blobs/" + d);
  auto bad_repo = GENERATE(as<std::string>{}, "", "/a", "a/", "a//b", "A/b", "a/../b", "a?x", "a#b",
                           "a b", "a%2fb");
  CAPTURE(bad_repo);
  CHECK_FALSE(manifest_path(bad_repo, "v1").ok());
  CHECK_FALSE(blob_path(bad_repo, d).ok());
  auto bad_ref = GENERATE(as<std::string>{}, "", "v1/../x", "v1?x=1", ".hidden", "sha256:zz",
                          "sha256:" + std::string(64, 'A'), std::string(129, 'a'));
  CAPTURE(bad_ref);
  CHECK_FALSE(manifest_path("a", bad_ref).ok());
  CHECK_FALSE(blob_path("a", "v1").ok());
}

TEST_CASE("token URL keeps the realm's query and encodes parameters") {
  auto u = token_url("https://auth.example.com/token?x=1", "registry.example.com",
                     "repository:team/app:pull");
  REQUIRE(u.ok());
  CHECK(u->scheme == "https");
  CHECK(u->host == "auth.example.com");
  CHECK(u->port == "443");
  CHECK(u->target ==
        "/token?x=1&service=registry.example.com&scope=repository%3Ateam%2Fapp%3Apull");
  CHECK_FALSE(token_url("ftp://x/token", "s", "x").ok());
  CHECK_FALSE(token_url("/relative", "s", "x").ok());
  CHECK_FALSE(token_url("https://user:pw@x/token", "s", "x").ok());
}

// URL parsing, redirect resolution and split_host_port are net's:
// tests/unit/net/url_retry_test.cpp.

TEST_CASE("token responses") {
  auto t = parse_token_response(R"({"token":"abc","expires_in":300})");
  REQUIRE(t.ok());
  CHECK(t->token == "abc");
  CHECK(t->expires_in == std::chrono::seconds(300));
  auto a = parse_token_response(R"({"access_token":"xyz"})");
  REQUIRE(a.ok());
  CHECK(a->token == "xyz");
  CHECK(a->expires_in == std::chrono::seconds(60));  // spec default
  CHECK(parse_token_response(R"({"token":"a","expires_in":-5})")->expires_in ==
        std::chrono::seconds(60));
  auto bad = GENERATE(as<std::string>{}, "", "[]", "{}", R"({"token":""})", R"({"token":5})",
                      R"({"token":"a\r\nX-Evil: 1"})", R"({"token":"a b"})");
  CAPTURE(bad);
  CHECK_FALSE(parse_token_response(bad).ok());
}

TEST_CASE("token TTL subtracts a skew and the cache expires") {
  using namespace std::chrono_literals;
  CHECK(token_ttl(60s) == 50s);
  CHECK(token_ttl(10s) == 5s);
  CHECK(token_ttl(0s) == 0s);
  TokenCache c;
  auto t0 = std::chrono::steady_clock::time_point{} + 1000s;
  c.put("r:443", "repository:a:pull", "tok", t0 + token_ttl(60s));
  CHECK(c.get("r:443", "repository:a:pull", t0) == std::optional<std::string>("tok"));
  CHECK(c.get("r:443", "repository:a:pull", t0 + 49s));
  CHECK_FALSE(c.get("r:443", "repository:a:pull", t0 + 50s));
  CHECK_FALSE(c.get("r:443", "repository:b:pull", t0));   // per scope
  CHECK_FALSE(c.get("r2:443", "repository:a:pull", t0));  // per host
  c.erase("r:443", "repository:a:pull");
  CHECK_FALSE(c.get("r:443", "repository:a:pull", t0));
}

TEST_CASE("a token longer than kMaxTokenBytes is refused") {
  // A registry's challenge names any token endpoint, and its tokens are cached: 4096 tokens of
  // 1 MiB each were half a GiB.
  CHECK(parse_token_response(R"({"token":")" + std::string(kMaxTokenBytes, 'a') + R"("})").ok());
  auto big = parse_token_response(R"({"token":")" + std::string(kMaxTokenBytes + 1, 'a') + R"("})");
  REQUIRE_FALSE(big.ok());
  CHECK(big.error().message.find("over the limit") != std::string::npos);
}

TEST_CASE("the token cache is bounded in bytes and entries, and evicts the soonest to expire") {
  using namespace std::chrono_literals;
  const auto now = std::chrono::steady_clock::now();
  TokenCache c(8, 64 * 1024);
  // The registry in use: a long-lived token.
  c.put("acr.example:443", "repository:app:pull", "good", now + 1h);
  // A flood of distinct scopes with long tokens that expire sooner.
  for (int i = 0; i < 100; ++i) {
    c.put("evil.example:443", "repository:r" + std::to_string(i) + ":pull",
          std::string(16 * 1024, 't'), now + 10min);
    CHECK(c.bytes() <= 64 * 1024);
    CHECK(c.size() <= 8);
  }
  CHECK(c.get("acr.example:443", "repository:app:pull", now) == std::optional<std::string>("good"));
  // Many small ones: the entry cap holds, and the long-lived token is still there.
  for (int i = 0; i < 100; ++i) {
    c.put("evil.example:443", "repository:s" + std::to_string(i) + ":pull", "x", now + 5min);
  }
  CHECK(c.size() == 8);
  CHECK(c.get("acr.example:443", "repository:app:pull", now));
  // Expired ones go first, whatever their expiry order.
  TokenCache e(2, 64 * 1024);
  e.put("a:443", "s1", "expired", now - 1s);
  e.put("a:443", "s2", "soon", now + 1min);
  e.put("a:443", "s3", "new", now + 1h);
  CHECK(e.get("a:443", "s2", now));
  CHECK(e.get("a:443", "s3", now));
  // Replacing an entry does not count it twice; erasing returns its bytes.
  const size_t before = e.bytes();
  e.put("a:443", "s3", "new", now + 1h);
  CHECK(e.bytes() == before);
  e.erase("a:443", "s3");
  e.erase("a:443", "s2");
  CHECK(e.bytes() == 0);
}

TEST_CASE("basic authorization and sha256") {
  CHECK(basic_authorization("aladdin", "opensesame") == "Basic YWxhZGRpbjpvcGVuc2VzYW1l");
  CHECK(*sha256_digest("") ==
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(refresh_token_form("s", "repository:a:pull", "t&x", "sigil") ==
        "grant_type=refresh_token&service=s&scope=repository%3Aa%3Apull&client_id=sigil&"
        "refresh_token=t%26x");
}

TEST_CASE("referrers path and Link pagination") {
  const std::string d = "sha256:" + std::string(64, 'a');
  auto p = referrers_path("team/app", d, "application/vnd.dev.sigstore.bundle.v0.3+json");
  REQUIRE(p.ok());
  CHECK(*p == "/v2/team/app/referrers/" + d +
                  "?artifactType=application%2Fvnd.dev.sigstore.bundle.v0.3%2Bjson");
  CHECK(referrers_path("team/app", d, "").value() == "/v2/team/app/referrers/" + d);
  CHECK_FALSE(referrers_path("team/../x", d, "").ok());
  CHECK_FALSE(referrers_path("team/app", "sha256:zz", "").ok());

  CHECK(link_next_target(R"(</v2/team/app/referrers/x?n=2&last=b>; rel="next")",
                         "/v2/team/app/referrers/x") == "/v2/team/app/referrers/x?n=2&last=b");
  CHECK(
      link_next_target(R"(</v2/a/referrers/x?p=1>; rel="prev", </v2/a/referrers/x?p=3>; rel=next)",
                       "/v2/a/referrers/x") == "/v2/a/referrers/x?p=3");
  CHECK(link_next_target("", "/v2/a/referrers/x").empty());
  CHECK(link_next_target(R"(</v2/a/referrers/x?p=1>; rel="prev")", "/v2/a/referrers/x").empty());
  // Never another origin, never outside the API, never control bytes.
  CHECK(link_next_target(R"(<https://evil.example/v2/a/referrers/x>; rel="next")",
                         "/v2/a/referrers/x")
            .empty());
  CHECK(link_next_target(R"(</token?x=1>; rel="next")", "/token").empty());
  CHECK(link_next_target("</v2/a/referrers/x\r\nX-Evil: 1>; rel=\"next\"", "/v2/a/referrers/x")
            .empty());
  // Never another list: another repository (whose credential may differ), digest or path.
  CHECK(link_next_target(R"(</v2/b/referrers/x?p=2>; rel="next")", "/v2/a/referrers/x").empty());
  CHECK(link_next_target(R"(</v2/a/referrers/y?p=2>; rel="next")", "/v2/a/referrers/x").empty());
  CHECK(link_next_target(R"(</v2/a/referrers/x/../../../b/referrers/x>; rel="next")",
                         "/v2/a/referrers/x")
            .empty());
  CHECK(link_next_target(R"(</v2/a/referrers/xy>; rel="next")", "/v2/a/referrers/x").empty());
  CHECK(link_next_target(R"(<//evil.example/v2/a>; rel="next")", "//evil.example/v2/a").empty());
}
