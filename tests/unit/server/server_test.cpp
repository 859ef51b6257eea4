#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <openssl/ssl.h>
#include <poll.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "log_capture.hpp"
#include "server/server.hpp"
#include "test_support.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using nlohmann::json;
using namespace sigil::server;
using namespace sigil::test;

namespace {

// A Server on 127.0.0.1:0 with the fake verifier, run on one background thread.
struct Harness {
  // sync: the Validator has the synchronous path (FakeVerifier::now_fn) as well. observe: the
  // Validator's decision observer (Events in production).
  explicit Harness(ServerOptions o = {}, bool sync = false, ObserveDecision observe = {})
      : pki(make_pki()), validator(fake.fn()) {
    if (sync) validator.set_now(fake.now_fn());
    if (observe) validator.set_observer(std::move(observe));
    o.listen = "127.0.0.1:0";
    o.cert_file = pki.cert_file;
    o.key_file = pki.key_file;
    o.ready = [this] { return ready.load(); };
    server = std::make_unique<Server>(ioc, o, validator);
    auto st = server->start();
    if (!st) FAIL("start: " << st.error().message);
    thread = std::thread([this] { ioc.run(); });
  }
  ~Harness() {
    server->stop();
    // Everything winds down by itself (a stubborn verifier may take 3 s); never hang.
    if (!stopped_wait(8s)) ioc.stop();
    thread.join();
    std::error_code ec;
    std::filesystem::remove_all(pki.dir, ec);
  }
  bool stopped_wait(std::chrono::milliseconds max) {
    const auto end = std::chrono::steady_clock::now() + max;
    while (std::chrono::steady_clock::now() < end) {
      if (ioc.stopped()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  ClientReply post(const std::string& target, const std::string& body, ClientOptions co = {}) {
    return https_request(server->port(), pki.ca_pem, "POST", target, body, co);
  }
  ClientReply get(const std::string& target, ClientOptions co = {}) {
    return https_request(server->port(), pki.ca_pem, "GET", target, "", co);
  }

  TestPki pki;
  FakeVerifier fake;
  Validator validator;
  std::atomic<bool> ready{true};
  asio::io_context ioc;
  std::unique_ptr<Server> server;
  std::thread thread;
};

json response_of(const ClientReply& r) {
  INFO(r.error);
  REQUIRE(r.ok);
  REQUIRE(r.status == 200);
  REQUIRE(r.content_type == "application/json");
  return json::parse(r.body)["response"];
}

}  // namespace

TEST_CASE("server: allow over real TLS, uid echoed", "[server]") {
  Harness h;
  CHECK(h.server->port() != 0);
  auto resp = response_of(h.post("/validate?timeout=10s", pod_with_images({"r/good:1"}, "u-1")));
  CHECK(resp["allowed"] == true);
  CHECK(resp["uid"] == "u-1");
}

TEST_CASE("server: deny names image and container path", "[server]") {
  Harness h;
  auto resp = response_of(
      h.post("/validate", pod_with_images({"r/good:1", "127.0.0.1:5000/test/bad:v1"}, "u-2")));
  CHECK(resp["allowed"] == false);
  CHECK(resp["uid"] == "u-2");
  CHECK(resp["status"]["message"] ==
        "image 127.0.0.1:5000/test/bad:v1 (spec.containers[1] c1) (sha256:aaaaaaaaaaaa…) is not "
        "admitted by policy prod: no signatures found");
}

TEST_CASE("server: warn is admitted with warnings; ConfigMap untouched", "[server]") {
  Harness h;
  auto resp = response_of(h.post("/validate", pod_with_images({"r/warn:1"})));
  CHECK(resp["allowed"] == true);
  CHECK(resp["warnings"].size() == 1);
  auto cm = response_of(h.post("/validate", read_fixture("configmap-create.json")));
  CHECK(cm["allowed"] == true);
  CHECK(h.fake.calls == 1);
}

TEST_CASE("server: malformed JSON is a 400", "[server]") {
  Harness h;
  auto r = h.post("/validate", "{\"kind\": \"AdmissionReview\", ");
  REQUIRE(r.ok);
  CHECK(r.status == 400);
  CHECK(json::parse(r.body).contains("error"));
}

TEST_CASE("server: an 8 MiB body is refused without harm", "[server]") {
  Harness h;
  std::string big = pod_with_images({"r/good:1"});
  big.insert(big.size() - 1, ",\"pad\":\"" + std::string(8 * 1024 * 1024, 'x') + "\"");
  auto r = h.post("/validate", big, ClientOptions{0, "", 20s});
  if (r.ok) {
    CHECK((r.status == 413 || r.status == 400));
  } else {
    WARN("client saw a transport error instead of 413: " << r.error);
  }
  CHECK(h.fake.calls == 0);
  auto health = h.get("/healthz");
  CHECK(health.status == 200);
}

TEST_CASE("server: a stalled verifier is answered with TIMEOUT before the deadline", "[server]") {
  Harness h;
  SECTION("verifier honours cancellation") {
    auto r = h.post("/validate?timeout=1s", pod_with_images({"r/stall:1"}, "u-t"));
    auto resp = response_of(r);
    CHECK(resp["allowed"] == false);
    CHECK(resp["uid"] == "u-t");
    CHECK(r.body.find("TIMEOUT") != std::string::npos);
    CHECK(r.elapsed < 1500ms);
  }
  SECTION("verifier ignores cancellation") {
    auto r = h.post("/validate?timeout=1s", pod_with_images({"r/stubborn:1"}, "u-s"));
    auto resp = response_of(r);
    CHECK(resp["allowed"] == false);
    CHECK(r.body.find("TIMEOUT") != std::string::npos);
    CHECK(r.elapsed < 1500ms);
  }
  SECTION("timeout= after another parameter, and percent-escaped") {
    // Split by hand when plain; through Boost.URL's decoding when escaped: both read 1s.
    for (const char* target : {"/validate?dryRun=x&timeout=1s", "/validate?a=%20&timeout=%31s"}) {
      auto r = h.post(target, pod_with_images({"r/stall:1"}, "u-q"));
      auto resp = response_of(r);
      CHECK(resp["allowed"] == false);
      CHECK(r.body.find("TIMEOUT") != std::string::npos);
      CHECK(r.elapsed < 1500ms);
    }
  }
}

namespace {

// What the decision observer was told, by uid: the message of each response (a denial's).
struct Observed {
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> messages;
  ObserveDecision fn() {
    return [this](const sigil::admission::Request& req, const sigil::admission::Response& resp,
                  const std::vector<sigil::verify::Verdict>&) {
      std::lock_guard lock(mu);
      messages[req.uid].push_back(resp.message);
    };
  }
};

}  // namespace

TEST_CASE("server: a verifier out of time answers itself, naming its image and the slow step",
          "[server]") {
  // The verifier waits for its "registry" until the deadline it is given, then says which step
  // did not finish. It is given a deadline 10% (at most answer_slack) before the Server's, so
  // its answer arrives first: the person reading the denial learns which image and registry
  // were slow, not only that sigil was.
  LogCapture log;
  Observed seen;
  std::string message;
  {
    Harness h({}, false, seen.fn());
    auto r =
        h.post("/validate?timeout=2s", pod_with_images({"r/good:1", "r/expire:1"}, "u-expire"));
    auto resp = response_of(r);
    CHECK(resp["allowed"] == false);
    message = resp["status"]["message"].get<std::string>();
    CHECK(r.elapsed < 2s);
  }
  CHECK(message.find("r/expire:1 (spec.containers[1] c1)") != std::string::npos);
  CHECK(message.find("did not answer the manifest request in time") != std::string::npos);
  std::lock_guard lock(seen.mu);
  REQUIRE(seen.messages["u-expire"].size() == 1);
  CHECK(seen.messages["u-expire"][0] == message);
  CHECK(log.count("decision=denied reasons=TIMEOUT") == 1);
  CHECK(log.count("decision=late-") == 0);  // the verdict was the answer, not late
}

TEST_CASE("server: a verdict after the TIMEOUT is logged as late; the TIMEOUT is the decision",
          "[server]") {
  // The API server got TIMEOUT, so TIMEOUT is the decision: logged once as decision=denied and
  // told to the observer (the Event). The verdict that comes 2 s later (NOT_SIGNED here) is
  // logged as what it would have been, and is not a second decision for the same uid.
  LogCapture log;
  Observed seen;
  {
    Harness h({}, false, seen.fn());
    auto r = h.post("/validate?timeout=1s", pod_with_images({"r/stubborn-bad:1"}, "u-late"));
    auto resp = response_of(r);
    CHECK(resp["allowed"] == false);
    CHECK(resp["status"]["reason"] == "TIMEOUT");
    CHECK(resp["status"]["message"] ==
          "sigil did not finish verifying image r/stubborn-bad:1 within the webhook timeout "
          "(TIMEOUT)");
  }  // joined: the late verdict has been handled by now
  {
    std::lock_guard lock(seen.mu);
    REQUIRE(seen.messages["u-late"].size() == 1);
    CHECK(seen.messages["u-late"][0].find("TIMEOUT") != std::string::npos);
  }
  CHECK(log.count("uid=u-late") == 2);
  CHECK(log.count("decision=denied reasons=TIMEOUT") == 1);
  CHECK(log.count("decision=late-denied reasons=NOT_SIGNED") == 1);
  CHECK(log.count("answered=TIMEOUT") == 1);
  CHECK(log.count("decision=denied reasons=NOT_SIGNED") == 0);
}

TEST_CASE("server: near the deadline, the decision observed is the answer sent", "[server]") {
  // Verdicts (NOT_SIGNED, 300 ms each) finish before, at and after their deadlines: 100 ms
  // (always TIMEOUT), 260-340 ms (a race between the verdict and the TIMEOUT) and 3 s (always
  // the verdict). Whichever wins, each uid has exactly one decision: the observer and the log
  // were told the answer the client got, never the other one.
  ServerOptions o;
  o.safety_margin = 0ms;
  o.max_margin_fraction = 0;
  LogCapture log;
  Observed seen;
  std::map<std::string, std::string> sent;  // uid -> the message the client got
  {
    Harness h(o, false, seen.fn());
    std::vector<std::pair<std::string, std::future<ClientReply>>> calls;
    std::vector<std::string> timeouts = {"100ms", "100ms", "3s", "3s"};
    for (int ms = 260; ms <= 340; ms += 10) timeouts.push_back(std::to_string(ms) + "ms");
    for (size_t i = 0; i < timeouts.size(); ++i) {
      const std::string uid = "u-race-" + std::to_string(i);
      const std::string target = "/validate?timeout=" + timeouts[i];
      calls.emplace_back(uid, std::async(std::launch::async, [&h, target, uid] {
                           return h.post(target, pod_with_images({"r/slow-bad:1"}, uid));
                         }));
    }
    for (auto& [uid, reply] : calls) {
      auto resp = response_of(reply.get());
      CHECK(resp["allowed"] == false);
      sent[uid] = resp["status"]["message"].get<std::string>();
    }
  }
  size_t timeouts_sent = 0;
  for (const auto& [uid, message] : sent) {
    INFO(uid << " got: " << message);
    const bool timed_out = message.find("TIMEOUT") != std::string::npos;
    timeouts_sent += timed_out ? 1 : 0;
    std::lock_guard lock(seen.mu);
    REQUIRE(seen.messages[uid].size() == 1);
    CHECK(seen.messages[uid][0] == message);
    CHECK(log.count("uid=" + uid + " ") == (timed_out ? 2U : 1U));
  }
  CHECK(timeouts_sent >= 2);                            // the 100 ms ones
  CHECK(timeouts_sent <= sent.size() - 2);              // not the 3 s ones
  CHECK(log.count("decision=denied ") == sent.size());  // one decision per admission
  CHECK(log.count("decision=late-denied ") == timeouts_sent);
}

TEST_CASE("server: two slow images are verified concurrently", "[server]") {
  Harness h;
  auto r = h.post("/validate", pod_with_images({"r/slow:a", "r/slow:b"}));
  auto resp = response_of(r);
  CHECK(resp["allowed"] == true);
  CHECK(h.fake.max_in_flight == 2);
  CHECK(r.elapsed < 590ms);  // serial verification takes >= 600 ms
}

TEST_CASE("server: health, readiness, 404 and 405", "[server]") {
  Harness h;
  auto health = h.get("/healthz");
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");
  CHECK(h.get("/readyz").status == 200);
  h.ready = false;
  CHECK(h.get("/readyz").status == 503);
  h.ready = true;
  CHECK(h.get("/readyz").status == 200);
  CHECK(h.get("/nope").status == 404);
  CHECK(h.get("/validatex").status == 404);
  auto r = h.get("/validate");
  CHECK(r.status == 405);
  CHECK(r.allow == "POST");
  CHECK(h.post("/healthz", "x").status == 405);
}

TEST_CASE("server: keep-alive is honoured, bad timeouts fall back to the default", "[server]") {
  Harness h;
  auto r = h.post("/validate?timeout=bogus&x=1", pod_with_images({"r/good:1"}));
  CHECK(response_of(r)["allowed"] == true);
}

TEST_CASE("server: plain HTTP to the TLS port fails cleanly", "[server]") {
  Harness h;
  asio::io_context ioc;
  asio::ip::tcp::socket s(ioc);
  s.connect({asio::ip::make_address("127.0.0.1"), h.server->port()});
  const std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  asio::write(s, asio::buffer(req));
  std::string got;
  boost::system::error_code ec;
  asio::read(s, asio::dynamic_buffer(got), ec);  // until the server closes
  CHECK(ec);
  CHECK(got.find("HTTP/1.1 200") == std::string::npos);
  CHECK(h.get("/healthz").status == 200);
}

TEST_CASE("server: a client that sends nothing is dropped", "[server]") {
  ServerOptions o;
  o.handshake_timeout = 1s;
  Harness h(o);
  asio::io_context ioc;
  asio::ip::tcp::socket s(ioc);
  s.connect({asio::ip::make_address("127.0.0.1"), h.server->port()});
  const auto start = std::chrono::steady_clock::now();
  std::array<char, 64> buf{};
  boost::system::error_code ec;
  // Waits until the server closes, for at most 5 s so the test cannot hang (SO_RCVTIMEO would
  // not bound it: Asio's blocking read polls again, without a timeout, when recv times out).
  pollfd pfd{s.native_handle(), POLLIN, 0};
  REQUIRE(::poll(&pfd, 1, 5000) == 1);
  s.read_some(asio::buffer(buf), ec);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(ec);
  CHECK(elapsed < 3s);
}

TEST_CASE("server: TLS 1.1 is refused, TLS 1.2 accepted", "[server]") {
  Harness h;
  auto old = h.get("/healthz", ClientOptions{TLS1_1_VERSION, "", 5s});
  CHECK_FALSE(old.ok);
  CHECK(old.error.find("handshake") != std::string::npos);
  auto v12 = h.get("/healthz", ClientOptions{TLS1_2_VERSION, "", 5s});
  CHECK(v12.ok);
  CHECK(v12.status == 200);
}

TEST_CASE("server: the certificate is reloaded when its files change", "[server]") {
  ServerOptions o;
  o.cert_check_interval = 0ms;
  Harness h(o);
  auto before = h.get("/healthz");
  CHECK(before.peer_cn == "sigil-test-server");
  std::this_thread::sleep_for(20ms);  // a distinct mtime
  rewrite_leaf(h.pki, "sigil-test-server-2");
  auto after = h.get("/healthz");
  CHECK(after.status == 200);
  CHECK(after.peer_cn == "sigil-test-server-2");

  SECTION("a broken pair keeps the current certificate") {
    std::this_thread::sleep_for(20ms);
    {
      std::ofstream f(h.pki.cert_file, std::ios::trunc);
      f << "-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n";
    }
    auto still = h.get("/healthz");
    CHECK(still.status == 200);
    CHECK(still.peer_cn == "sigil-test-server-2");
  }
}

TEST_CASE("server: start fails clearly on bad settings", "[server]") {
  auto pki = make_pki();
  FakeVerifier fake;
  Validator v(fake.fn());
  asio::io_context ioc;
  SECTION("bad listen address") {
    ServerOptions o;
    o.listen = "nowhere";
    o.cert_file = pki.cert_file;
    o.key_file = pki.key_file;
    Server s(ioc, o, v);
    auto st = s.start();
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message.find("listen address") != std::string::npos);
  }
  SECTION("missing key") {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.cert_file = pki.cert_file;
    o.key_file = (pki.dir / "missing.key").string();
    Server s(ioc, o, v);
    auto st = s.start();
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message.find("missing.key") != std::string::npos);
  }
  SECTION("key does not match cert") {
    auto other = make_pki();
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.cert_file = pki.cert_file;
    o.key_file = other.key_file;
    Server s(ioc, o, v);
    auto st = s.start();
    REQUIRE_FALSE(st.ok());
    std::error_code ec;
    std::filesystem::remove_all(other.dir, ec);
  }
  std::error_code ec;
  std::filesystem::remove_all(pki.dir, ec);
}

TEST_CASE("server: stop lets an in-flight request finish", "[server]") {
  Harness h;
  ClientReply r;
  std::thread client([&] { r = h.post("/validate", pod_with_images({"r/slow:1"})); });
  std::this_thread::sleep_for(100ms);
  h.server->stop();
  client.join();
  CHECK(response_of(r)["allowed"] == true);
  // With nothing in flight the io_context runs out of work promptly (no lingering grace timer).
  CHECK(h.stopped_wait(2s));
}

TEST_CASE("server: oversized headers get 431", "[server]") {
  Harness h;
  ClientOptions co;
  co.extra_headers = "X-Pad: " + std::string(20 * 1024, 'h') + "\r\n";
  auto r = h.get("/healthz", co);
  REQUIRE(r.ok);
  CHECK(r.status == 431);
  CHECK(h.get("/healthz").status == 200);
  // The limit is the configured one (16 KiB by default), not Beast's own default of 8 KiB.
  co.extra_headers = "X-Pad: " + std::string(12 * 1024, 'h') + "\r\n";
  CHECK(h.get("/healthz", co).status == 200);
}

namespace {

// "ClusterImagePolicy" -> "clusterimagepolicies", as the CRDs name their resources.
std::string lower_plural(const std::string& kind) {
  std::string s;
  for (char c : kind) s.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (!s.empty() && s.back() == 'y') return s.substr(0, s.size() - 1) + "ies";
  return s + "s";
}

std::string policy_review(const std::string& kind, const std::string& spec_json,
                          const std::string& op = "CREATE") {
  return R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"p-1",)"
         R"("kind":{"group":"sigil.dev","version":"v1alpha1","kind":")" +
         kind + R"("},"resource":{"group":"sigil.dev","version":"v1alpha1","resource":")" +
         lower_plural(kind) + R"("},"operation":")" + op +
         R"(","name":"prod","object":{"apiVersion":"sigil.dev/v1alpha1","kind":")" + kind +
         R"(","metadata":{"name":"prod"},"spec":)" + spec_json + "}}}";
}

}  // namespace

TEST_CASE("server: /validate-policy judges sigil.dev objects with the given check", "[server]") {
  ServerOptions o;
  std::vector<std::string> seen;
  o.check_policy = [&seen](const std::string& kind, const std::string& object_json) {
    seen.push_back(kind);
    PolicyCheck c;
    if (object_json.find("\"bad\"") != std::string::npos) {
      c.problem = "f document 1 (prod): spec.images[0].glob: invalid glob \"bad\"";
    }
    if (object_json.find("\"tagged\"") != std::string::npos) c.warnings = {"w1", "w2"};
    return c;
  };
  Harness h(o);
  auto good = response_of(h.post("/validate-policy", policy_review("ClusterImagePolicy", "{}")));
  CHECK(good["allowed"] == true);
  CHECK(good["uid"] == "p-1");
  CHECK_FALSE(good.contains("warnings"));
  // A valid object's warnings reach kubectl; an invalid one's problem is the answer.
  auto warned = response_of(
      h.post("/validate-policy", policy_review("ClusterImagePolicy", R"({"glob":"tagged"})")));
  CHECK(warned["allowed"] == true);
  CHECK(warned["warnings"] == json::array({"w1", "w2"}));
  auto both = response_of(h.post(
      "/validate-policy", policy_review("ClusterImagePolicy", R"({"glob":["bad","tagged"]})")));
  CHECK(both["allowed"] == false);
  CHECK_FALSE(both.contains("warnings"));
  auto bad = response_of(
      h.post("/validate-policy", policy_review("ClusterImagePolicy", R"({"glob":"bad"})")));
  CHECK(bad["allowed"] == false);
  CHECK(bad["status"]["code"] == 422);
  CHECK(bad["status"]["message"] ==
        "f document 1 (prod): spec.images[0].glob: invalid glob \"bad\"");
  // DELETE and other kinds are not judged.
  auto del = response_of(h.post(
      "/validate-policy", policy_review("ClusterImagePolicy", R"({"glob":"bad"})", "DELETE")));
  CHECK(del["allowed"] == true);
  auto cm = response_of(h.post("/validate-policy", read_fixture("configmap-create.json")));
  CHECK(cm["allowed"] == true);
  CHECK(seen == std::vector<std::string>{"ClusterImagePolicy", "ClusterImagePolicy",
                                         "ClusterImagePolicy", "ClusterImagePolicy"});
  auto get = h.get("/validate-policy");
  REQUIRE(get.ok);
  CHECK(get.status == 405);
}

TEST_CASE("server: /validate-policy is 404 unless configured", "[server]") {
  Harness h;
  auto r = h.post("/validate-policy", policy_review("TrustRoot", "{}"));
  REQUIRE(r.ok);
  CHECK(r.status == 404);
}

namespace {
std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
}  // namespace

TEST_CASE("server: a certificate from memory; no TLS and not Ready before it, hot swap after",
          "[server]") {
  auto pki = make_pki();
  FakeVerifier fake;
  Validator v(fake.fn());
  asio::io_context ioc;
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.external_certificate = true;
  Server srv(ioc, o, v);
  REQUIRE(srv.start().ok());
  std::thread t([&] { ioc.run(); });

  CHECK_FALSE(srv.has_certificate());
  auto none = https_request(srv.port(), pki.ca_pem, "GET", "/readyz");
  CHECK_FALSE(none.ok);  // the connection is closed: there is nothing to offer

  const std::string cert = slurp(pki.cert_file), key = slurp(pki.key_file);
  // A key that is not the certificate's is refused, and nothing is installed.
  auto other = make_pki("someone-else");
  CHECK_FALSE(srv.set_certificate(cert, slurp(other.key_file)).ok());
  CHECK_FALSE(srv.has_certificate());

  REQUIRE(srv.set_certificate(cert, key).ok());
  auto ready = https_request(srv.port(), pki.ca_pem, "GET", "/readyz");
  CHECK(ready.status == 200);
  CHECK(ready.peer_cn == "sigil-test-server");

  rewrite_leaf(pki, "sigil-test-server-2");
  REQUIRE(srv.set_certificate(slurp(pki.cert_file), slurp(pki.key_file)).ok());
  CHECK(https_request(srv.port(), pki.ca_pem, "GET", "/healthz").peer_cn == "sigil-test-server-2");
  // A broken pair later keeps the current certificate.
  CHECK_FALSE(srv.set_certificate("garbage", key).ok());
  CHECK(https_request(srv.port(), pki.ca_pem, "GET", "/healthz").peer_cn == "sigil-test-server-2");

  srv.stop();
  ioc.run_for(3s);
  ioc.stop();
  t.join();
  std::error_code ec;
  std::filesystem::remove_all(pki.dir, ec);
  std::filesystem::remove_all(other.dir, ec);
}

TEST_CASE("server: a cached admission is answered on the synchronous path, the rest waits",
          "[server]") {
  ServerOptions o;
  std::mutex mu;
  std::vector<std::string> observed;
  o.observe_admission = [&](std::string_view route, AdmissionResult r,
                            std::chrono::steady_clock::duration) {
    std::lock_guard lock(mu);
    observed.push_back(std::string(route) + " " + std::string(result_name(r)));
  };
  Harness h(o, true);
  // Every image answered at once: no coroutine verifier runs.
  auto ok = response_of(
      h.post("/validate?timeout=10s", pod_with_images({"reg.example/good:1"}, "uid-now")));
  CHECK(ok["uid"] == "uid-now");
  CHECK(ok["allowed"] == true);
  CHECK(h.fake.now_calls == 1);
  CHECK(h.fake.calls == 0);
  auto bad = response_of(h.post("/validate", pod_with_images({"reg.example/bad:1"}, "uid-b")));
  CHECK(bad["allowed"] == false);
  CHECK(h.fake.calls == 0);
  // One image not at hand: the whole admission takes the waiting path, each image once there.
  auto mixed = response_of(h.post(
      "/validate", pod_with_images({"reg.example/good:2", "reg.example/miss-good:1"}, "uid-m")));
  CHECK(mixed["allowed"] == true);
  CHECK(h.fake.calls == 2);
  // A stalled image still gets the deadline's TIMEOUT: the synchronous path never holds it.
  auto late = response_of(
      h.post("/validate?timeout=1s", pod_with_images({"reg.example/stall:1"}, "uid-t")));
  CHECK(late["allowed"] == false);
  CHECK(late["status"]["reason"] == "TIMEOUT");
  // Metrics see every admission once, whichever path answered it.
  std::lock_guard lock(mu);
  CHECK(observed == std::vector<std::string>{"validate allowed", "validate denied",
                                             "validate allowed", "validate denied"});
}
