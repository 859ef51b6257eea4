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

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/encoding.hpp"
#include "oci/manifest.hpp"
#include "registry/http_client.hpp"

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace sigil;
using namespace sigil::registry;
using namespace std::chrono_literals;

namespace {

const std::string kSupport = std::string(SIGIL_SOURCE_DIR) + "/tests/support/";

// Runs a command, returns its stdout (trimmed) or nullopt on a non-zero exit.
std::optional<std::string> run(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return std::nullopt;
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int rc = ::pclose(p);
  if (rc != 0) return std::nullopt;
  return std::string(trim(out));
}

bool have_tools() {
  return fs::exists("/usr/bin/docker-registry") &&
         run(std::string(SIGIL_PYTHON) + " -c 'import cryptography' 2>/dev/null").has_value();
}

struct Registry {
  std::string dir;
  std::string address;
  nlohmann::json env;
  Registry(const std::string& flags) {
    char tmpl[] = "/tmp/sigil-reg-it-XXXXXX";
    dir = ::mkdtemp(tmpl);
    auto out = run(std::string(SIGIL_PYTHON) + " " + kSupport + "registry.py start --dir " + dir +
                   " " + flags);
    if (!out) FAIL("registry.py start " << flags << " failed");
    address = *out;
    std::ifstream f(dir + "/env.json");
    env = nlohmann::json::parse(f);
  }
  ~Registry() {
    (void)run(std::string(SIGIL_PYTHON) + " " + kSupport + "registry.py stop --dir " + dir);
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string push(const std::string& repo, const std::string& tag, const std::string& content) {
    auto out =
        run(std::string(SIGIL_PYTHON) + " " + kSupport + "fixture.py push-image --env " + dir +
            "/env.json --repo " + repo + " --tag " + tag + " --content '" + content + "'");
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

struct Loop {
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> guard{ioc.get_executor()};
  std::thread thread{[this] { ioc.run(); }};
  ~Loop() {
    guard.reset();
    ioc.stop();
    thread.join();
  }
  template <class T>
  static asio::awaitable<std::optional<T>> wrap(asio::awaitable<T> aw) {
    co_return co_await std::move(aw);
  }
  template <class T>
  T run(asio::awaitable<T> aw) {
    return *asio::co_spawn(ioc, wrap(std::move(aw)), asio::use_future).get();
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

Deadline soon() {
  return std::chrono::steady_clock::now() + 20s;
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
  if (!have_tools()) {
    WARN("docker-registry or python3-cryptography not installed: skipping");
    std::exit(77);  // ctest SKIP_RETURN_CODE
  }
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
