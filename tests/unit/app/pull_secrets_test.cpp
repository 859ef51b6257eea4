#include "app/pull_secrets.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "log_capture.hpp"

using sigil::Errc;
using sigil::make_error;
using sigil::Result;
using sigil::app::no_pull_credentials;
using sigil::app::PullSecretParses;
using sigil::kube::Secret;

namespace {

std::shared_ptr<const Secret> pull_secret(const std::string& rv, const std::string& password,
                                          const std::string& uid = "uid-1") {
  auto s = std::make_shared<Secret>();
  s->meta.name = "regcred";
  s->meta.namespace_ = "team";
  s->meta.uid = uid;
  s->meta.resource_version = rv;
  s->type = "kubernetes.io/dockerconfigjson";
  s->data[".dockerconfigjson"] =
      R"({"auths":{"reg.test":{"username":"robot","password":")" + password + R"("}}})";
  return s;
}

Result<std::shared_ptr<const Secret>> ok(std::shared_ptr<const Secret> s) {
  return s;
}

}  // namespace

TEST_CASE("a pull secret is parsed once per version, and a new version is read anew") {
  PullSecretParses parses;
  const auto v1 = pull_secret("100", "first");
  for (int i = 0; i < 3; ++i) {
    auto creds = no_pull_credentials("team");
    parses.add(creds, "team", "regcred", ok(v1));
    REQUIRE(creds.config->auths.count("reg.test") == 1);
    CHECK(creds.config->auths.at("reg.test").password == "first");
    CHECK(creds.id == "team|regcred@100");
  }
  CHECK(parses.parses() == 1);
  // The cache's re-read of the same version (a new object, same uid and resourceVersion).
  auto creds = no_pull_credentials("team");
  parses.add(creds, "team", "regcred", ok(pull_secret("100", "first")));
  CHECK(parses.parses() == 1);
  // A write gives a new resourceVersion: its credentials, not the remembered ones.
  creds = no_pull_credentials("team");
  parses.add(creds, "team", "regcred", ok(pull_secret("101", "rotated")));
  CHECK(parses.parses() == 2);
  CHECK(creds.config->auths.at("reg.test").password == "rotated");
  CHECK(creds.id == "team|regcred@101");
  // Deleted and re-created under the same name: a new uid, even if a resourceVersion repeats.
  creds = no_pull_credentials("team");
  parses.add(creds, "team", "regcred", ok(pull_secret("101", "recreated", "uid-2")));
  CHECK(parses.parses() == 3);
  CHECK(creds.config->auths.at("reg.test").password == "recreated");
}

TEST_CASE("no Secret is held once parsed: a pod may name any Secret of its namespace") {
  // A TLS or Helm release Secret of up to 1 MiB named in imagePullSecrets must not stay in
  // memory (4096 of them were gigabytes); only what a pull needs is kept.
  PullSecretParses parses;
  auto big = std::make_shared<Secret>();
  big->meta.uid = "uid-big";
  big->meta.resource_version = "7";
  big->type = "Opaque";
  big->data["blob"] = std::string(1 << 20, 'x');
  std::weak_ptr<const Secret> weak_big = big;
  auto pull = pull_secret("100", "first");
  std::weak_ptr<const Secret> weak_pull = pull;
  auto creds = no_pull_credentials("team");
  parses.add(creds, "team", "big", ok(std::move(big)));
  parses.add(creds, "team", "regcred", ok(std::move(pull)));
  CHECK(creds.config->auths.count("reg.test") == 1);
  CHECK(weak_big.expired());
  CHECK(weak_pull.expired());
  // And the parse is still remembered by version.
  parses.add(creds, "team", "regcred", ok(pull_secret("100", "first")));
  CHECK(parses.parses() == 2);
}

TEST_CASE("pull secrets of two namespaces or names are never taken for each other") {
  PullSecretParses parses;
  auto a = no_pull_credentials("a");
  parses.add(a, "a", "bc", ok(pull_secret("7", "of-a")));
  // The same uid and resourceVersion (a real API server never repeats a uid): the key alone
  // must keep a/bc and ab/c apart.
  auto b = no_pull_credentials("ab");
  parses.add(b, "ab", "c", ok(pull_secret("7", "of-ab")));
  CHECK(parses.parses() == 2);
  CHECK(a.config->auths.at("reg.test").password == "of-a");
  CHECK(b.config->auths.at("reg.test").password == "of-ab");
}

TEST_CASE("a malformed pull secret adds nothing and is reported once per version") {
  sigil::test::LogCapture log;
  PullSecretParses parses;
  auto bad = std::make_shared<Secret>(*pull_secret("5", "x"));
  bad->data[".dockerconfigjson"] = R"({"auths":{"reg.test":{"auth":"not base64!"}}})";
  for (int i = 0; i < 5; ++i) {
    auto creds = no_pull_credentials("team");
    parses.add(creds, "team", "regcred", ok(bad));
    CHECK(creds.config->auths.empty());
    CHECK(creds.id == "team");
  }
  CHECK(log.count("pull secret team/regcred (resourceVersion 5) is malformed") == 1);
  CHECK(log.text().find("not base64!") == std::string::npos);  // no secret text in logs

  // Another type of Secret is no pull secret: nothing added, nothing reported.
  auto opaque = std::make_shared<Secret>(*pull_secret("6", "x"));
  opaque->type = "Opaque";
  auto creds = no_pull_credentials("team");
  parses.add(creds, "team", "regcred", ok(opaque));
  CHECK(creds.config->auths.empty());
  CHECK(log.count("regcred (resourceVersion 6)") == 0);

  // A missing Secret is not reported (the kubelet ignores it too); a failed read is.
  parses.add(creds, "team", "gone", make_error(Errc::not_found, "secrets \"gone\" not found"));
  parses.add(creds, "team", "denied", make_error(Errc::unauthorized, "HTTP 403"));
  CHECK(log.count("team/gone") == 0);
  CHECK(log.count("pull secret team/denied: HTTP 403") == 1);
  CHECK(creds.config->auths.empty());
  // The name is the pod's own text: it cannot forge a log line.
  parses.add(creds, "team", "x\nadmission uid=forged", make_error(Errc::invalid_argument, "bad"));
  CHECK(log.count("\nadmission uid=forged") == 0);
  CHECK(log.count("pull secret team/x?admission uid=forged: bad") == 1);
}

TEST_CASE("the first pull secret holding a host wins, as in the kubelet") {
  PullSecretParses parses;
  auto creds = no_pull_credentials("team");
  parses.add(creds, "team", "first", ok(pull_secret("1", "one", "u1")));
  parses.add(creds, "team", "second", ok(pull_secret("2", "two", "u2")));
  CHECK(creds.config->auths.at("reg.test").password == "one");
  CHECK(creds.id == "team|first@1|second@2");
}

TEST_CASE("a pull secret's read error is logged once a minute while it stays the same") {
  sigil::test::LogCapture log;
  const Result<std::shared_ptr<const Secret>> forbidden =
      make_error(Errc::unauthorized, "secrets \"regcred\" is forbidden");
  const Result<std::shared_ptr<const Secret>> gone = make_error(Errc::not_found, "not found");
  PullSecretParses parses;
  for (int i = 0; i < 5; ++i) {
    auto creds = no_pull_credentials("team");
    parses.add(creds, "team", "regcred", forbidden);
    parses.add(creds, "team", "other", forbidden);  // another Secret: its own line
    parses.add(creds, "team", "missing", gone);     // a missing Secret is never logged
    CHECK(creds.config->auths.empty());
  }
  CHECK(log.count("pull secret team/regcred: secrets \"regcred\" is forbidden") == 1);
  CHECK(log.count("pull secret team/other:") == 1);
  CHECK(log.count("team/missing") == 0);
  // Another error of the same Secret is news.
  auto creds = no_pull_credentials("team");
  parses.add(creds, "team", "regcred", make_error(Errc::unavailable, "connection refused"));
  CHECK(log.count("pull secret team/regcred: connection refused") == 1);

  // Past repeat_after, the same error is logged again.
  PullSecretParses every_time(std::chrono::seconds(0));
  for (int i = 0; i < 3; ++i) every_time.add(creds, "ns2", "regcred", forbidden);
  CHECK(log.count("pull secret ns2/regcred:") == 3);
}

// A pod may name any Secret of its namespace, and each name is remembered: the memory is
// bounded (past kMaxEntries it starts over), and starting over only costs parses.
TEST_CASE("the memory of parsed pull secrets is bounded") {
  PullSecretParses parses;
  const auto v = pull_secret("7", "pw");
  auto add = [&](size_t i) {
    auto creds = no_pull_credentials("team");
    parses.add(creds, "team", "s" + std::to_string(i), ok(v));
    REQUIRE(creds.config);
  };
  add(0);
  add(0);
  CHECK(parses.parses() == 1);  // remembered
  for (size_t i = 1; i <= PullSecretParses::kMaxEntries; ++i) add(i);
  CHECK(parses.parses() == PullSecretParses::kMaxEntries + 1);
  add(0);  // forgotten when the memory started over
  CHECK(parses.parses() == PullSecretParses::kMaxEntries + 2);
}
