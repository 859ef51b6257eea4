// registry::HttpClient against the REAL distribution registry: plain http (insecure_hosts),
// TLS with a test CA, basic auth, and token auth; push with fixture.py, then resolve /
// get_manifest / get_blob, token caching, wrong credentials, missing tags.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/encoding.hpp"
#include "integration.hpp"
#include "oci/manifest.hpp"
#include "registry/http_client.hpp"

namespace fs = std::filesystem;
using namespace sigil;
using namespace sigil::registry;
using namespace std::chrono_literals;
using namespace sigil::test;

namespace {

struct Registry {
  std::string dir;
  std::string address;
  nlohmann::json env;
  Registry(const std::string& flags) {
    char tmpl[] = "/tmp/sigil-reg-it-XXXXXX";
    dir = ::mkdtemp(tmpl);
    auto out = run_command(python(support_dir() + "registry.py start --dir " + dir + " " + flags));
    if (!out) FAIL("registry.py start " << flags << " failed");
    address = *out;
    std::ifstream f(dir + "/env.json");
    env = nlohmann::json::parse(f);
  }
  ~Registry() {
    (void)run_command(python(support_dir() + "registry.py stop --dir " + dir));
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string push(const std::string& repo, const std::string& tag, const std::string& content) {
    auto out = run_command(python(support_dir() + "fixture.py push-image --env " + dir +
                                  "/env.json --repo " + repo + " --tag " + tag + " --content '" +
                                  content + "'"));
    if (!out) FAIL("fixture.py push-image failed");
    return *out;
  }
  int token_count() const {
    std::ifstream f(dir + "/token_count");
    int n = 0;
    f >> n;
    return n;
  }
};

ClientOptions options_for(const Registry& r, bool with_creds, const std::string& password = {}) {
  ClientOptions o;
  if (r.env.value("scheme", "http") == "http") o.insecure_hosts = {r.address};
  if (r.env.contains("ca") && r.env["ca"].is_string()) o.ca_file = r.env["ca"];
  if (with_creds && r.env.contains("user") && r.env["user"].is_string()) {
    o.credentials.auths[r.address] = Credential{
        r.env["user"], password.empty() ? r.env["password"].get<std::string>() : password, ""};
  }
  return o;
}

// Push, then resolve, fetch the manifest by digest and its config blob.
// l must be the loop whose executor the client was built with: one io_context, as in sigil.
void check_round_trip(Registry& reg, HttpClient& c, Loop& l) {
  std::string digest = reg.push("team/app", "v1", "hello " + reg.address);
  REQUIRE(oci::is_valid_digest(digest));
  oci::Reference ref{reg.address, "team/app", "v1", ""};
  auto d = l.run(c.resolve(ref, soon()));
  INFO((d.ok() ? std::string() : d.error().message));
  REQUIRE(d.ok());
  CHECK(*d == digest);
  auto m = l.run(c.get_manifest(reg.address, "team/app", digest, soon()));
  REQUIRE(m.ok());
  CHECK(m->digest == digest);
  auto parsed = oci::parse_manifest(m->body, m->media_type);
  REQUIRE(parsed.ok());
  REQUIRE(parsed->config);
  auto blob = l.run(c.get_blob(reg.address, "team/app", parsed->config->digest, 1 << 20, soon()));
  REQUIRE(blob.ok());
  CHECK(*sha256_digest(*blob) == parsed->config->digest);
  auto missing = l.run(c.resolve(oci::Reference{reg.address, "team/app", "nope", ""}, soon()));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
}

}  // namespace

TEST_CASE("real registry") {
  skip_without_registry_tools();
  Loop loop;

  SECTION("plain http via insecure_hosts") {
    Registry reg("");
    HttpClient c(loop.ioc.get_executor(), options_for(reg, false));
    check_round_trip(reg, c, loop);
  }
  SECTION("TLS with the test CA; without the CA the handshake fails") {
    Registry reg("--tls");
    HttpClient c(loop.ioc.get_executor(), options_for(reg, false));
    REQUIRE(c.init_status().ok());
    check_round_trip(reg, c, loop);
    ClientOptions no_ca;
    HttpClient untrusted(loop.ioc.get_executor(), no_ca);
    auto r = loop.run(untrusted.resolve(oci::Reference{reg.address, "team/app", "v1", ""}, soon()));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("certificate") != std::string::npos);
  }
  SECTION("basic auth: right and wrong credentials") {
    Registry reg("--tls --auth basic --user alice --password s3cret");
    HttpClient c(loop.ioc.get_executor(), options_for(reg, true));
    check_round_trip(reg, c, loop);
    HttpClient wrong(loop.ioc.get_executor(), options_for(reg, true, "wrong"));
    auto r = loop.run(wrong.resolve(oci::Reference{reg.address, "team/app", "v1", ""}, soon()));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unauthorized);
    HttpClient none(loop.ioc.get_executor(), options_for(reg, false));
    auto n = loop.run(none.resolve(oci::Reference{reg.address, "team/app", "v1", ""}, soon()));
    REQUIRE_FALSE(n.ok());
    CHECK(n.error().code == Errc::unauthorized);
  }
  SECTION("token auth: tokens cached; wrong credentials unauthorized") {
    Registry reg("--tls --auth token --user alice --password s3cret");
    HttpClient c(loop.ioc.get_executor(), options_for(reg, true));
    check_round_trip(reg, c, loop);
    oci::Reference ref{reg.address, "team/app", "v1", ""};
    int tokens_before = reg.token_count();
    auto before = c.request_count();
    REQUIRE(loop.run(c.resolve(ref, soon())).ok());
    CHECK(reg.token_count() == tokens_before);  // cached: no token request
    CHECK(c.request_count() == before + 1);
    HttpClient wrong(loop.ioc.get_executor(), options_for(reg, true, "wrong"));
    auto r = loop.run(wrong.resolve(ref, soon()));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::unauthorized);
  }
}
