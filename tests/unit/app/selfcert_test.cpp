// app/selfcert against the fake Kubernetes API server (tests/unit/kube/fake_api.hpp) and the
// real server: the Secret is created, the caBundle published on every webhook entry, a restart
// reuses the Secret, racing replicas converge on one CA, tampered Secrets are repaired, and a
// CA rollover keeps both CAs in the bundle while a real TLS client that trusts only the
// published bundle connects at every step. Time is a ManualClock; the TLS client verifies at
// that clock's time (X509_VERIFY_PARAM_set_time), so years pass without sleeping.
#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>

#include "app/config.hpp"
#include "app/selfcert.hpp"
#include "common/clock.hpp"
#include "common/encoding.hpp"
#include "crypto/certgen.hpp"
#include "fake_api.hpp"
#include "kube/client.hpp"
#include "server/server.hpp"

using namespace sigil;
using namespace sigil::app;
using namespace sigil::test;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

const std::string kNs = "sigil-system";
const std::string kSecret = "sigil-webhook-tls";
const std::string kHost = "sigil.sigil-system.svc";

json webhook_config(const std::string& kind, const std::string& name,
                    const std::vector<std::string>& hooks) {
  json w = json::array();
  for (const auto& h : hooks)
    w.push_back({{"name", h}, {"clientConfig", {{"service", {{"name", "sigil"}}}}}});
  return {{"apiVersion", "admissionregistration.k8s.io/v1"},
          {"kind", kind},
          {"metadata", {{"name", name}}},
          {"webhooks", w}};
}

void add_configs(FakeApi& api) {
  // The chart's annotation for AKS: a PUT that dropped it would let the Admissions Enforcer
  // rewrite the namespaceSelector.
  json validating = webhook_config("ValidatingWebhookConfiguration", "sigil",
                                   {"validate.sigil.dev", "validate-policy.sigil.dev"});
  validating["metadata"]["annotations"] = {{"admissions.enforcer/disabled", "true"}};
  api.create("validatingwebhookconfigurations", validating);
  api.create("mutatingwebhookconfigurations",
             webhook_config("MutatingWebhookConfiguration", "sigil", {"mutate.sigil.dev"}));
}

SelfCertOptions options() {
  SelfCertOptions o;
  o.namespace_ = kNs;
  o.secret_name = kSecret;
  o.service_name = "sigil";
  o.validating_webhooks = {"sigil"};
  o.mutating_webhooks = {"sigil"};
  // Short lives so that a few steps walk through renewals and rollovers.
  o.ca_validity = 100h;
  o.ca_renew_before = 20h;
  o.cert_validity = 30h;
  o.cert_renew_before = 10h;
  o.rollover_grace = 1h;
  o.resync = 10s;
  REQUIRE(o.validate().ok());
  return o;
}

std::map<std::string, std::string> secret_data(const FakeApi& api) {
  auto s = api.object("secrets", kNs + "/" + kSecret);
  REQUIRE(s.has_value());
  std::map<std::string, std::string> out;
  for (auto& [k, v] : (*s)["data"].items()) {
    auto d = base64_decode(v.get<std::string>());
    REQUIRE(d.ok());
    out[k] = *d;
  }
  return out;
}

// The caBundles of every webhook entry, decoded; all must agree (else "MISMATCH").
std::string published(const FakeApi& api) {
  std::string seen;
  bool first = true;
  for (const char* plural : {"validatingwebhookconfigurations", "mutatingwebhookconfigurations"}) {
    auto c = api.object(plural, "sigil");
    REQUIRE(c.has_value());
    for (auto& w : (*c)["webhooks"]) {
      std::string b = w["clientConfig"].value("caBundle", "");
      auto d = base64_decode(b);
      std::string text = d.ok() ? *d : "BAD BASE64";
      if (first) seen = text;
      if (text != seen) return "MISMATCH";
      first = false;
    }
  }
  return seen;
}

int count_certs(const std::string& bundle) {
  int n = 0;
  for (size_t at = 0; (at = bundle.find("BEGIN CERTIFICATE", at)) != std::string::npos; ++at) ++n;
  return n;
}

// One sigil replica: the real server (certificate from memory) and its SelfCert.
struct Replica {
  Replica(Loop& loop, FakeApi& api, const Clock& clock, SelfCertOptions o = options())
      : validator(
            [](std::string, const verify::Context&, Deadline) -> asio::awaitable<verify::Verdict> {
              co_return verify::Verdict{};
            }) {
    server::ServerOptions so;
    so.listen = "127.0.0.1:0";
    so.external_certificate = true;
    srv = std::make_unique<server::Server>(loop.ioc, so, validator);
    REQUIRE(srv->start().ok());
    client = std::make_shared<kube::Client>(loop.ioc.get_executor(), api.config());
    self = std::make_unique<SelfCert>(loop.ioc, client, clock, std::move(o),
                                      [this](const std::string& c, const std::string& k) {
                                        // Never hand the server a pair that does not match.
                                        auto st = crypto::check_key_pair(c, k);
                                        if (!st) ++mismatched;
                                        return srv->set_certificate(c, k);
                                      });
  }
  ~Replica() {
    self->stop();
    srv->stop();
  }
  Status pass(Loop& loop) { return loop.run(self->reconcile()); }

  server::Validator validator;
  std::unique_ptr<server::Server> srv;
  std::shared_ptr<kube::Client> client;
  std::unique_ptr<SelfCert> self;
  int mismatched = 0;
};

// A TLS handshake as the API server makes it: trust only `bundle`, verify the name
// sigil.sigil-system.svc, at time `at`. Returns "" or the failure.
std::string handshake(uint16_t port, const std::string& bundle,
                      std::chrono::system_clock::time_point at) {
  try {
    asio::io_context io;
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    size_t pos = 0;
    int added = 0;
    while ((pos = bundle.find("-----BEGIN CERTIFICATE-----", pos)) != std::string::npos) {
      const size_t end = bundle.find("-----END CERTIFICATE-----", pos);
      if (end == std::string::npos) break;
      const size_t stop = end + std::string("-----END CERTIFICATE-----").size();
      ctx.add_certificate_authority(asio::buffer(bundle.substr(pos, stop - pos) + "\n"));
      ++added;
      pos = stop;
    }
    if (added == 0) return "empty bundle";
    X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx.native_handle());
    X509_VERIFY_PARAM_set_time(param,
                               static_cast<time_t>(std::chrono::system_clock::to_time_t(at)));
    ctx.set_verify_mode(asio::ssl::verify_peer);
    ctx.set_verify_callback(asio::ssl::host_name_verification(kHost));
    asio::ssl::stream<asio::ip::tcp::socket> s(io, ctx);
    SSL_set_tlsext_host_name(s.native_handle(), kHost.c_str());
    s.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
    boost::system::error_code ec;
    s.handshake(asio::ssl::stream_base::client, ec);
    if (ec) return ec.message();
    s.shutdown(ec);
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("selfcert: the Secret is created, every webhook entry gets the caBundle, TLS works") {
  FakeApi api;
  add_configs(api);
  Loop loop(2);
  ManualClock clock(std::chrono::system_clock::now());
  Replica r(loop, api, clock);
  CHECK_FALSE(r.srv->has_certificate());
  auto st = r.pass(loop);
  INFO(st.error().message);
  REQUIRE(st.ok());
  CHECK(r.srv->has_certificate());
  auto data = secret_data(api);
  for (const char* k : {"tls.crt", "tls.key", "ca.crt", "ca.key"}) CHECK(data.count(k) == 1);
  CHECK(data.count("ca-next.crt") == 0);
  auto s = api.object("secrets", kNs + "/" + kSecret);
  CHECK((*s)["type"] == "kubernetes.io/tls");
  const std::string bundle = published(api);
  CHECK(bundle == data["ca.crt"]);
  CHECK(handshake(r.srv->port(), bundle, clock.now()).empty());
  // Publishing wrote the configuration back whole: its annotations are still there.
  CHECK((*api.object("validatingwebhookconfigurations", "sigil"))["metadata"]["annotations"] ==
        json({{"admissions.enforcer/disabled", "true"}}));
  // A client that trusts another CA is refused: the check is real.
  auto other = crypto::make_ca("other", clock.now() - 1h, clock.now() + 24h);
  REQUIRE(other.ok());
  CHECK_FALSE(handshake(r.srv->port(), other->cert_pem, clock.now()).empty());
  // The serving certificate names the Service.
  auto leaf = crypto::Certificate::from_pem(data["tls.crt"]);
  REQUIRE(leaf.ok());
  auto names = crypto::dns_names(*leaf);
  REQUIRE(names.ok());
  CHECK(*names == std::vector<std::string>{kHost, kHost + ".cluster.local"});

  // A second pass with nothing due writes nothing.
  const auto writes = r.self->stats().secret_writes;
  const int puts = api.count("PUT");
  REQUIRE(r.pass(loop).ok());
  CHECK(r.self->stats().secret_writes == writes);
  CHECK(api.count("PUT") == puts);

  // Someone re-applies the chart (caBundle gone): the next pass puts it back.
  api.update(
      "validatingwebhookconfigurations", "sigil",
      [](json& o) { o["webhooks"][1]["clientConfig"].erase("caBundle"); }, false);
  CHECK(published(api) == "MISMATCH");
  REQUIRE(r.pass(loop).ok());
  CHECK(published(api) == bundle);
}

TEST_CASE("selfcert: a restart reuses the Secret (same CA, same serving certificate)") {
  FakeApi api;
  add_configs(api);
  Loop loop(2);
  ManualClock clock(std::chrono::system_clock::now());
  std::map<std::string, std::string> first;
  {
    Replica r(loop, api, clock);
    REQUIRE(r.pass(loop).ok());
    first = secret_data(api);
  }
  clock.advance(2h);
  Replica again(loop, api, clock);
  REQUIRE(again.pass(loop).ok());
  CHECK(again.self->stats().secret_writes == 0);
  CHECK(secret_data(api) == first);
  CHECK(handshake(again.srv->port(), first["ca.crt"], clock.now()).empty());
}

TEST_CASE("selfcert: two replicas racing to create the Secret converge on one CA") {
  FakeApi api;
  add_configs(api);
  Loop loop(2);
  ManualClock clock(std::chrono::system_clock::now());
  Replica a(loop, api, clock), b(loop, api, clock);
  REQUIRE(a.pass(loop).ok());
  // b read before a's create landed: its GET says 404, its POST meets 409, it reads again.
  api.hide_gets = 1;
  REQUIRE(b.pass(loop).ok());
  CHECK(b.self->stats().conflicts == 1);
  CHECK(b.self->stats().secret_writes == 0);
  CHECK(api.count("POST") == 2);
  const std::string bundle = published(api);
  CHECK(count_certs(bundle) == 1);
  CHECK(handshake(a.srv->port(), bundle, clock.now()).empty());
  CHECK(handshake(b.srv->port(), bundle, clock.now()).empty());

  SECTION("both at once") {
    FakeApi api2;
    add_configs(api2);
    Replica c(loop, api2, clock), d(loop, api2, clock);
    auto f1 = asio::co_spawn(loop.ioc, c.self->reconcile(), asio::use_future);
    auto f2 = asio::co_spawn(loop.ioc, d.self->reconcile(), asio::use_future);
    REQUIRE(f1.get().ok());
    REQUIRE(f2.get().ok());
    const std::string b2 = published(api2);
    CHECK(count_certs(b2) == 1);
    CHECK(handshake(c.srv->port(), b2, clock.now()).empty());
    CHECK(handshake(d.srv->port(), b2, clock.now()).empty());
  }
}

TEST_CASE("selfcert: a tampered Secret is repaired, never served as it is") {
  FakeApi api;
  add_configs(api);
  Loop loop(2);
  ManualClock clock(std::chrono::system_clock::now());
  Replica r(loop, api, clock);
  REQUIRE(r.pass(loop).ok());
  auto before = secret_data(api);
  auto set = [&](const std::string& key, const std::string& value) {
    api.update(
        "secrets", kNs + "/" + kSecret, [&](json& o) { o["data"][key] = base64_encode(value); },
        false);
  };
  auto foreign = crypto::make_ca("intruder", clock.now() - 1h, clock.now() + 100h);
  REQUIRE(foreign.ok());

  SECTION("a serving key that is not the certificate's: re-issued by the same CA") {
    set("tls.key", foreign->key_pem);
    REQUIRE(r.pass(loop).ok());
    auto after = secret_data(api);
    CHECK(after["ca.crt"] == before["ca.crt"]);
    CHECK(after["tls.crt"] != before["tls.crt"]);
    CHECK(crypto::check_key_pair(after["tls.crt"], after["tls.key"]).ok());
  }
  // A valid pair either way: from another CA for the Service's names, or from our CA for
  // other names. Re-issued by ours for the Service's.
  SECTION("a serving certificate from another CA, or from ours for other names: re-issued") {
    const bool ours = GENERATE(false, true);
    const crypto::CertAndKey issuer =
        ours ? crypto::CertAndKey{before["ca.crt"], before["ca.key"]} : *foreign;
    const std::vector<std::string> names =
        ours ? std::vector<std::string>{"evil.example"}
             : std::vector<std::string>{kHost, kHost + ".cluster.local"};
    auto leaf = crypto::issue_server_cert(issuer, names, clock.now() - 1h, clock.now() + 20h);
    REQUIRE(leaf.ok());
    set("tls.crt", leaf->cert_pem);
    set("tls.key", leaf->key_pem);
    REQUIRE(r.pass(loop).ok());
    auto after = secret_data(api);
    CHECK(after["tls.crt"] != leaf->cert_pem);
    CHECK(after["ca.crt"] == before["ca.crt"]);
  }
  // A pair that matches but is no CA, or is no longer valid: never used to sign.
  SECTION("a CA that is not a CA (a leaf and its key), or that has expired: replaced") {
    const bool leaf = GENERATE(true, false);
    Result<crypto::CertAndKey> planted =
        leaf ? crypto::issue_server_cert(*foreign, {"intruder.test"}, clock.now() - 1h,
                                         clock.now() + 100h)
             : crypto::make_ca("expired", clock.now() - 100h, clock.now() - 1h);
    REQUIRE(planted.ok());
    set("ca.crt", planted->cert_pem);
    set("ca.key", planted->key_pem);
    REQUIRE(r.pass(loop).ok());
    auto after = secret_data(api);
    CHECK(after["ca.crt"] != planted->cert_pem);
    CHECK(after["ca.crt"] != before["ca.crt"]);
    CHECK(crypto::check_key_pair(after["ca.crt"], after["ca.key"]).ok());
    CHECK(published(api) == after["ca.crt"]);
  }
  SECTION("garbage or a mismatched CA: a new CA replaces it, the bundle follows") {
    const bool garbage = GENERATE(true, false);
    if (garbage) {
      set("ca.crt", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    } else {
      set("ca.key", foreign->key_pem);
    }
    REQUIRE(r.pass(loop).ok());
    auto after = secret_data(api);
    CHECK(after["ca.crt"] != before["ca.crt"]);
    CHECK(crypto::check_key_pair(after["ca.crt"], after["ca.key"]).ok());
    CHECK(published(api) == after["ca.crt"]);
  }
  CHECK(r.mismatched == 0);
  CHECK(handshake(r.srv->port(), published(api), clock.now()).empty());
}

TEST_CASE("selfcert: the serving certificate moves to a new CA only after the bundle has it") {
  FakeApi api;
  add_configs(api);
  Loop loop(2);
  ManualClock clock(std::chrono::system_clock::now());
  Replica r(loop, api, clock);
  REQUIRE(r.pass(loop).ok());
  const std::string ca1 = secret_data(api)["ca.crt"];
  // CA validity 100 h from 1 h back, renewed 20 h before its end: a new CA at +79 h.
  clock.advance(80h);
  SECTION("published, then the grace") {
    REQUIRE(r.pass(loop).ok());
    auto d = secret_data(api);
    REQUIRE(d.count("ca-next.crt") == 1);
    CHECK(d["ca.crt"] == ca1);
    CHECK(published(api) == ca1 + d["ca-next.crt"]);
    clock.advance(30min);  // inside the grace: no switch
    REQUIRE(r.pass(loop).ok());
    CHECK(secret_data(api)["ca.crt"] == ca1);
    clock.advance(31min);
    REQUIRE(r.pass(loop).ok());
    auto s = secret_data(api);
    CHECK(s["ca.crt"] == d["ca-next.crt"]);
    CHECK(s["ca-prev.crt"] == ca1);
    CHECK(published(api) == ca1 + s["ca.crt"]);
    CHECK(handshake(r.srv->port(), published(api), clock.now()).empty());
    // The retired CA leaves the bundle once the grace has passed after the switch: its key is
    // trusted no longer than the rollover needs.
    clock.advance(61min);
    REQUIRE(r.pass(loop).ok());
    auto t = secret_data(api);
    CHECK(t["ca.crt"] == s["ca.crt"]);
    CHECK(t.count("ca-prev.crt") == 0);
    CHECK(published(api) == t["ca.crt"]);
  }
  SECTION("never switched while the bundle could not be published") {
    api.remove("mutatingwebhookconfigurations", "sigil");
    CHECK_FALSE(r.pass(loop).ok());  // the Secret has ca-next, one configuration lacks it
    clock.advance(5h);
    CHECK_FALSE(r.pass(loop).ok());
    auto d = secret_data(api);
    CHECK(d["ca.crt"] == ca1);
    CHECK(d.count("ca-next.crt") == 1);
    // It is back: published now, switched once the grace has passed after that.
    add_configs(api);  // the validating one exists: only the mutating one is created
    REQUIRE(r.pass(loop).ok());
    CHECK(secret_data(api)["ca.crt"] == ca1);
    clock.advance(2h);
    REQUIRE(r.pass(loop).ok());
    CHECK(secret_data(api)["ca.crt"] == d["ca-next.crt"]);
  }
}

TEST_CASE(
    "selfcert: years of rotation over two replicas; a client trusting only the bundle "
    "connects at every step") {
  FakeApi api;
  add_configs(api);
  Loop loop(2);
  ManualClock clock(std::chrono::system_clock::now());
  Replica a(loop, api, clock), b(loop, api, clock);
  std::set<std::string> cas;
  int overlap_steps = 0, leaf_changes = 0;
  std::string last_leaf;
  for (int step = 0; step < 120; ++step) {  // 120 x 4 h: several serving renewals, CA rollovers
    INFO("step " << step);
    REQUIRE(a.pass(loop).ok());
    const std::string bundle = published(api);
    REQUIRE(bundle != "MISMATCH");
    if (count_certs(bundle) > 1) ++overlap_steps;
    // b re-reads the Secret one step behind a: it still serves its previous certificate.
    if (step > 0) {
      CHECK(handshake(a.srv->port(), bundle, clock.now()) == "");
      CHECK(handshake(b.srv->port(), bundle, clock.now()) == "");
    }
    REQUIRE(b.pass(loop).ok());
    CHECK(handshake(b.srv->port(), published(api), clock.now()) == "");
    auto d = secret_data(api);
    cas.insert(d["ca.crt"]);
    if (d["tls.crt"] != last_leaf) ++leaf_changes;
    last_leaf = d["tls.crt"];
    clock.advance(4h);
  }
  CHECK(cas.size() >= 4);     // 480 h / ~80 h per CA
  CHECK(overlap_steps >= 3);  // both CAs were published during each rollover
  CHECK(leaf_changes >= 12);  // serving renewals (every ~20 h) and switches
  CHECK(a.mismatched == 0);
  CHECK(b.mismatched == 0);
}

TEST_CASE("selfcert: the config section is read, and inconsistent settings are named") {
  const std::string path = std::string(SIGIL_BINARY_DIR) + "/selfcert_test_config.yaml";
  {
    std::ofstream f(path);
    f << "selfCert:\n  enabled: true\n  secretName: s\n  serviceName: svc\n"
         "  validatingWebhooks: [v]\n  mutatingWebhooks: [m]\n  caValidity: 1000h\n"
         "  caRenewBefore: 200h\n  certValidity: 100h\n  certRenewBefore: 30h\n"
         "  rolloverGrace: 2h\n  resync: 30s\n";
  }
  Settings s;
  REQUIRE(load_config_file(path, s).ok());
  CHECK(s.self_cert.enabled);
  CHECK(s.self_cert.secret_name == "s");
  CHECK(s.self_cert.validating_webhooks == std::vector<std::string>{"v"});
  CHECK(s.self_cert.ca_renew_before == 200h);
  CHECK(s.self_cert.resync == 30s);
  {
    std::ofstream f(path);
    f << "selfCert:\n  caValidty: 1h\n";
  }
  auto st = load_config_file(path, s);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message.find("selfCert.caValidty") != std::string::npos);

  SelfCertOptions o = options();
  o.rollover_grace = 1s;
  auto v = o.validate();
  REQUIRE_FALSE(v.ok());
  CHECK(v.error().message.find("rolloverGrace") != std::string::npos);
  o = options();
  o.cert_renew_before = o.cert_validity;
  CHECK_FALSE(o.validate().ok());
  // A resync of 0 passed "rolloverGrace >= 2 x resync" and re-ran the pass (GETs and PUTs to
  // the API server) in a loop.
  o = options();
  o.resync = 0s;
  o.rollover_grace = 0s;
  v = o.validate();
  REQUIRE_FALSE(v.ok());
  CHECK(v.error().message.find("selfCert.resync") != std::string::npos);
}
