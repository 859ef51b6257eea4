// Tests for server/mutator: which images of which reviews /mutate pins, the JSONPatch it sends
// (applied here by nlohmann's independent RFC 6902 implementation), that it never denies, and
// the /mutate route of the real Server over TLS.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/encoding.hpp"
#include "log_capture.hpp"
#include "run_coro.hpp"
#include "server/mutator.hpp"
#include "server/server.hpp"
#include "test_support.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using nlohmann::json;
using sigil::server::HttpReply;
using sigil::server::Mutator;
using sigil::server::pin_image;
using sigil::test::pod_with_images;
using sigil::test::read_fixture;
using sigil::verify::Outcome;
using sigil::verify::Verdict;

namespace {

// A distinct, valid digest per image (what a registry would say its tag points to).
std::string digest_of(const std::string& image) {
  std::string hex;
  for (size_t i = 0; hex.size() < 64; ++i) {
    const unsigned v = static_cast<unsigned char>(image[i % image.size()]) + 7u * i;
    hex += "0123456789abcdef"[v % 16];
  }
  return "sha256:" + hex;
}

// The engine's contract as /mutate relies on it: an image a policy matched comes back with the
// digest its tag resolved to (allowed or denied); one no policy matched, or whose tag cannot be
// resolved, comes back without a digest. Counts calls; "stall" is late (it answers 2 s after
// its deadline, or when cancelled), "throw" throws.
struct FakeEngine {
  std::atomic<int> calls{0};
  std::mutex mu;
  std::vector<std::string> asked;

  sigil::server::VerifyImage fn() {
    return [this](std::string image, const sigil::verify::Context&,
                  sigil::Deadline deadline) -> asio::awaitable<Verdict> {
      ++calls;
      {
        std::lock_guard lock(mu);
        asked.push_back(image);
      }
      Verdict v;
      v.image = image;
      if (image.find("throw") != std::string::npos) throw std::runtime_error("exploded");
      if (image.find("stall") != std::string::npos) {
        asio::steady_timer t(co_await asio::this_coro::executor, deadline + 2s);
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        v.outcome = Outcome::allowed;
        v.digest = digest_of(image);  // too late: only the guard's answer may reach the client
        co_return v;
      }
      if (image.find("nomatch") != std::string::npos) {
        v.outcome = Outcome::allowed;
        v.reason = sigil::verify::Reason::no_matching_policy;
        co_return v;
      }
      if (image.find("missing") != std::string::npos) {
        v.outcome = Outcome::denied;
        v.reason = sigil::verify::Reason::image_not_found;
        co_return v;
      }
      if (image.find("sha512") != std::string::npos) {
        v.outcome = Outcome::denied;
        v.reason = sigil::verify::Reason::invalid_image;
        v.digest = "sha512:" + std::string(128, 'a');
        co_return v;
      }
      v.digest = digest_of(image);
      v.outcome = image.find("unsigned") != std::string::npos ? Outcome::denied : Outcome::allowed;
      v.reason = v.outcome == Outcome::denied ? sigil::verify::Reason::not_signed
                                              : sigil::verify::Reason::none;
      co_return v;
    };
  }
};

HttpReply run(const Mutator& m, const std::string& body) {
  return sigil::test::run_coro(m.handle(body, std::chrono::steady_clock::now() + 5s), 30s);
}

json response_of(const HttpReply& r) {
  REQUIRE(r.status == 200);
  REQUIRE(r.content_type == "application/json");
  auto j = json::parse(r.body);
  REQUIRE(j["apiVersion"] == "admission.k8s.io/v1");
  REQUIRE(j["kind"] == "AdmissionReview");
  return j["response"];
}

// The JSONPatch of a response (an empty array when there is none).
json patch_of(const json& resp) {
  if (!resp.contains("patch")) {
    CHECK_FALSE(resp.contains("patchType"));
    return json::array();
  }
  CHECK(resp["patchType"] == "JSONPatch");
  auto raw = sigil::base64_decode(resp["patch"].get<std::string>());
  REQUIRE(raw.ok());
  return json::parse(*raw);
}

// The review's object after the response's patch (nlohmann applies it; a failing `test`
// operation throws).
json patched_object(const std::string& review, const json& resp) {
  return json::parse(review)["request"]["object"].patch(patch_of(resp));
}

}  // namespace

TEST_CASE("pin_image: name:tag@digest, the tag kept and an implied latest written out",
          "[mutator]") {
  const std::string d = "sha256:" + std::string(64, 'b');
  struct Case {
    const char* image;
    std::string pinned;
  };
  auto c = GENERATE_COPY(values<Case>({
      {"myacr.azurecr.io/team/app:v1", "myacr.azurecr.io/team/app:v1@" + d},
      {"nginx", "nginx:latest@" + d},
      {"nginx:1.25", "nginx:1.25@" + d},
      {"library/nginx", "library/nginx:latest@" + d},
      {"127.0.0.1:5000/test/app", "127.0.0.1:5000/test/app:latest@" + d},
      {"127.0.0.1:5000/test/app:v2", "127.0.0.1:5000/test/app:v2@" + d},
      {"[::1]:5000/app:v2", "[::1]:5000/app:v2@" + d},
      {"host:5000", "host:5000@" + d},  // Docker reads this as image "host", tag "5000"
      // Not tag-only, or not a reference: never pinned.
      {"r.example/app@sha256:0d3f0a5e5c6b1d7f2e8a9b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e", ""},
      {"r.example/app:v1@sha256:0d3f0a5e5c6b1d7f2e8a9b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e",
       ""},
      {"Reg.example/UPPER:v1", ""},
      {"", ""},
      {"r.example/app:v1 ", ""},
  }));
  CAPTURE(c.image);
  CHECK(pin_image(c.image, d) == c.pinned);
}

TEST_CASE("pin_image: only a sha256 digest of 64 lowercase hex digits", "[mutator]") {
  const std::string hex(64, 'c');
  CHECK_FALSE(pin_image("r/app:v1", "sha256:" + hex).empty());
  for (const std::string& bad :
       {std::string(), "sha256:" + std::string(63, 'c'), "sha256:" + std::string(65, 'c'),
        "sha256:" + std::string(64, 'C'), "sha512:" + std::string(128, 'c'), hex,
        "sha256:" + std::string(63, 'c') + "g", "sha256:" + std::string(64, 'c') + "@x"}) {
    CAPTURE(bad);
    CHECK(pin_image("r/app:v1", bad).empty());
  }
}

TEST_CASE("mutate pins every tag-only image of a Pod to the digest it verified", "[mutator]") {
  FakeEngine engine;
  Mutator m(engine.fn());
  const std::string digest_pinned =
      "r.example/pinned@sha256:0d3f0a5e5c6b1d7f2e8a9b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e";
  const std::string review = pod_with_images(
      {"r.example/app:v1", "r.example/side", digest_pinned, "r.example/app:v1"}, "u-m1");
  auto resp = response_of(run(m, review));
  CHECK(resp["uid"] == "u-m1");
  CHECK(resp["allowed"] == true);
  const json patch = patch_of(resp);
  // test + replace for each of the three tag-only uses; the digest-pinned one untouched.
  CHECK(patch.size() == 6);
  const json obj = patched_object(review, resp);
  const auto& cs = obj["spec"]["containers"];
  CHECK(cs[0]["image"] == "r.example/app:v1@" + digest_of("r.example/app:v1"));
  CHECK(cs[1]["image"] == "r.example/side:latest@" + digest_of("r.example/side"));
  CHECK(cs[2]["image"] == digest_pinned);
  CHECK(cs[3]["image"] == "r.example/app:v1@" + digest_of("r.example/app:v1"));
  // One verification per distinct tag-only image; none for the digest reference.
  CHECK(engine.calls == 2);
  // The audit annotation: each pinned image and its digest, a JSON object in image order.
  const std::string pinned = resp["auditAnnotations"]["pinned"];
  CHECK(pinned == json({{"r.example/app:v1", digest_of("r.example/app:v1")},
                        {"r.example/side", digest_of("r.example/side")}})
                      .dump());
}

TEST_CASE("mutate pins init, regular and ephemeral containers at their own pointers", "[mutator]") {
  FakeEngine engine;
  Mutator m(engine.fn());
  json doc = json::parse(pod_with_images({"r/app:v1"}));
  auto& spec = doc["request"]["object"]["spec"];
  spec["initContainers"] = json::parse(R"([{"name":"init","image":"r/init:v1"}])");
  spec["ephemeralContainers"] = json::parse(R"([{"name":"dbg","image":"r/dbg:v1"}])");
  const std::string review = doc.dump();
  auto resp = response_of(run(m, review));
  const json obj = patched_object(review, resp);
  CHECK(obj["spec"]["initContainers"][0]["image"] == "r/init:v1@" + digest_of("r/init:v1"));
  CHECK(obj["spec"]["containers"][0]["image"] == "r/app:v1@" + digest_of("r/app:v1"));
  CHECK(obj["spec"]["ephemeralContainers"][0]["image"] == "r/dbg:v1@" + digest_of("r/dbg:v1"));
}

TEST_CASE("mutate leaves an image with no verified digest as written, and never denies",
          "[mutator]") {
  FakeEngine engine;
  Mutator m(engine.fn());
  const std::string review =
      pod_with_images({"r/nomatch:v1", "r/missing:v1", "r/sha512:v1", "r/throw:v1", "r/ok:v1"});
  auto resp = response_of(run(m, review));
  CHECK(resp["allowed"] == true);
  CHECK_FALSE(resp.contains("status"));
  const json obj = patched_object(review, resp);
  const auto& cs = obj["spec"]["containers"];
  CHECK(cs[0]["image"] == "r/nomatch:v1");  // no policy matched: untouched
  CHECK(cs[1]["image"] == "r/missing:v1");  // tag not resolved: untouched
  CHECK(cs[2]["image"] == "r/sha512:v1");   // not a sha256 digest: untouched
  CHECK(cs[3]["image"] == "r/throw:v1");    // the verifier failed: untouched
  CHECK(cs[4]["image"] == "r/ok:v1@" + digest_of("r/ok:v1"));
  CHECK(patch_of(resp).size() == 2);
}

TEST_CASE("mutate pins a denied image too: /validate then denies that very digest", "[mutator]") {
  FakeEngine engine;
  Mutator m(engine.fn());
  const std::string review = pod_with_images({"r/unsigned:v1"});
  auto resp = response_of(run(m, review));
  CHECK(resp["allowed"] == true);
  CHECK(patched_object(review, resp)["spec"]["containers"][0]["image"] ==
        "r/unsigned:v1@" + digest_of("r/unsigned:v1"));
}

TEST_CASE("mutate on UPDATE pins only images the old object did not have", "[mutator]") {
  FakeEngine engine;
  Mutator m(engine.fn());
  SECTION("kubectl debug: only the new ephemeral container") {
    const std::string review = read_fixture("pod-update-ephemeral-containers.json");
    auto resp = response_of(run(m, review));
    const json patch = patch_of(resp);
    REQUIRE(patch.size() == 2);
    CHECK(patch[1]["path"] == "/spec/ephemeralContainers/0/image");
    CHECK(patch[1]["value"] ==
          "docker.io/library/busybox:1.36@" + digest_of("docker.io/library/busybox:1.36"));
    // The running container's tag is not rewritten: that would restart it.
    CHECK(patched_object(review, resp)["spec"]["containers"][0]["image"] ==
          "chetandevsecops.azurecr.io/myapp:v1");
    CHECK(engine.calls == 1);
  }
  SECTION("a changed image") {
    const std::string review = read_fixture("pod-update-image.json");
    auto resp = response_of(run(m, review));
    CHECK(patched_object(review, resp)["spec"]["containers"][0]["image"] ==
          "chetandevsecops.azurecr.io/myapp:v2@" +
              digest_of("chetandevsecops.azurecr.io/myapp:v2"));
  }
  SECTION("nothing changed (a label): no registry call, no patch") {
    json doc = json::parse(pod_with_images({"r/app:v1"}));
    auto& r = doc["request"];
    r["operation"] = "UPDATE";
    r["oldObject"] = r["object"];
    r["object"]["metadata"]["labels"]["x"] = "y";
    auto resp = response_of(run(m, doc.dump()));
    CHECK(resp["allowed"] == true);
    CHECK(patch_of(resp).empty());
    CHECK(engine.calls == 0);
  }
}

TEST_CASE("mutate touches nothing but Pods", "[mutator]") {
  FakeEngine engine;
  Mutator m(engine.fn());
  const char* name =
      GENERATE("deployment-create.json", "cronjob-create.json", "configmap-create.json");
  CAPTURE(name);
  auto resp = response_of(run(m, read_fixture(name)));
  CHECK(resp["allowed"] == true);
  CHECK(patch_of(resp).empty());
  CHECK(engine.calls == 0);
  // Nor a Pod's status, nor a DELETE.
  json status = json::parse(pod_with_images({"r/app:v1"}));
  status["request"]["subResource"] = "status";
  CHECK(patch_of(response_of(run(m, status.dump()))).empty());
  json del = json::parse(pod_with_images({"r/app:v1"}));
  del["request"]["operation"] = "DELETE";
  CHECK(patch_of(response_of(run(m, del.dump()))).empty());
  CHECK(engine.calls == 0);
}

TEST_CASE("mutate admits unchanged a Pod it cannot read, and 400s what is not a review",
          "[mutator]") {
  FakeEngine engine;
  Mutator m(engine.fn());
  json doc = json::parse(pod_with_images({"r/app:v1"}, "u-empty"));
  doc["request"]["object"]["spec"]["containers"][0]["image"] = "";
  auto resp = response_of(run(m, doc.dump()));
  CHECK(resp["uid"] == "u-empty");
  CHECK(resp["allowed"] == true);
  CHECK(patch_of(resp).empty());
  for (const char* body : {"", "{", "[]", R"({"kind":"AdmissionReview"})"}) {
    CAPTURE(body);
    CHECK(run(m, body).status == 400);
  }
  CHECK(engine.calls == 0);
  // The deadline answer: allowed, unchanged, uid echoed.
  auto late = response_of(m.timeout_reply(pod_with_images({"r/app:v1"}, "u-late")));
  CHECK(late["uid"] == "u-late");
  CHECK(late["allowed"] == true);
  CHECK(patch_of(late).empty());
}

namespace {

// A synchronous verifier for answer_now: a FakeEngine's answer (its own engine: the test's
// counts only the asynchronous path), run to completion here, for every image but those with
// "cold" in their name (not at hand: nullopt). Counts its calls.
struct NowVerifier {
  FakeEngine engine;
  std::atomic<int> calls{0};
  std::string saw_namespace;
  sigil::server::VerifyNow fn() {
    return [this](const std::string& image,
                  const sigil::verify::Context& context) -> std::optional<Verdict> {
      ++calls;
      saw_namespace = context.namespace_;
      if (image.find("cold") != std::string::npos) return std::nullopt;
      return sigil::test::run_coro(
          engine.fn()(image, context, std::chrono::steady_clock::now() + 5s), 30s);
    };
  }
};

}  // namespace

TEST_CASE("mutate's synchronous path answers byte for byte what handle() answers",
          "[mutator][fastpath]") {
  FakeEngine engine;
  NowVerifier now;
  Mutator m(engine.fn());
  m.set_now(now.fn());
  for (const auto& images : std::vector<std::vector<std::string>>{
           {"r/app:v1"},
           {"r/app:v1", "r/unsigned:v2", "r/nomatch:v3", "r/app:v1"},
           {"r/missing:v1", "r/app@" + digest_of("x")}}) {
    const std::string review = pod_with_images(images, "u-now");
    auto fast = m.answer_now(review);
    REQUIRE(fast.has_value());
    const HttpReply slow = run(m, review);
    CHECK(fast->status == slow.status);
    CHECK(fast->content_type == slow.content_type);
    CHECK(fast->body == slow.body);
  }
  // The pinned Pod runs exactly the digest its verdict named.
  const std::string review = pod_with_images({"r/app:v1"}, "u-now");
  CHECK(patched_object(review,
                       response_of(*m.answer_now(review)))["spec"]["containers"][0]["image"] ==
        "r/app:v1@" + digest_of("r/app:v1"));
}

TEST_CASE("mutate's synchronous path gives up when any verdict or the context is not at hand",
          "[mutator][fastpath]") {
  FakeEngine engine;
  NowVerifier now;
  SECTION("one image of several is not at hand: the whole review waits") {
    Mutator m(engine.fn());
    int answered = 0;
    m.set_now(now.fn(), {}, [&](const std::vector<Verdict>& verdicts) {
      ++answered;
      CHECK(verdicts.size() == 2);
    });
    CHECK_FALSE(m.answer_now(pod_with_images({"r/app:v1", "r/cold:v1"})).has_value());
    CHECK(answered == 0);  // told nothing: the waiting path asks for both again
    REQUIRE(m.answer_now(pod_with_images({"r/app:v1", "r/web:v2"})).has_value());
    CHECK(answered == 1);
  }
  SECTION("no synchronous verifier: no synchronous path") {
    Mutator m(engine.fn());
    CHECK_FALSE(m.answer_now(pod_with_images({"r/app:v1"})).has_value());
  }
  SECTION("a context that needs the Kubernetes API") {
    auto make_context = [](const sigil::admission::Request& r,
                           sigil::Deadline) -> asio::awaitable<sigil::verify::Context> {
      sigil::verify::Context c;
      c.namespace_ = r.namespace_;
      co_return c;
    };
    Mutator without(engine.fn(), make_context);
    without.set_now(now.fn());  // a MakeContext but no ContextNow: nothing to answer with
    CHECK_FALSE(without.answer_now(pod_with_images({"r/app:v1"})).has_value());
    Mutator with(engine.fn(), make_context);
    bool at_hand = false;
    with.set_now(now.fn(),
                 [&](const sigil::admission::Request& r) -> std::optional<sigil::verify::Context> {
                   if (!at_hand) return std::nullopt;
                   sigil::verify::Context c;
                   c.namespace_ = "ctx-" + r.namespace_;
                   return c;
                 });
    CHECK_FALSE(with.answer_now(pod_with_images({"r/app:v1"})).has_value());
    CHECK(now.calls == 0);
    at_hand = true;
    CHECK(with.answer_now(pod_with_images({"r/app:v1"})).has_value());
    CHECK(now.saw_namespace == "ctx-default");  // the verifier was given that context
  }
  CHECK(engine.calls == 0);  // never the asynchronous verifier
}

TEST_CASE("mutate's synchronous path answers reviews with nothing to pin without verifying",
          "[mutator][fastpath]") {
  FakeEngine engine;
  NowVerifier now;
  Mutator m(engine.fn());
  m.set_now(now.fn());
  auto deploy = json::parse(read_fixture("deployment-create.json"));
  auto r = m.answer_now(deploy.dump());
  REQUIRE(r.has_value());
  CHECK(response_of(*r)["allowed"] == true);
  CHECK_FALSE(response_of(*r).contains("patch"));
  auto digests = m.answer_now(pod_with_images({"r/app@" + digest_of("a")}));
  REQUIRE(digests.has_value());
  CHECK_FALSE(response_of(*digests).contains("patch"));
  auto junk = m.answer_now("{");
  REQUIRE(junk.has_value());
  CHECK(junk->status == 400);
  CHECK(now.calls == 0);
}

TEST_CASE("the mutation log line is one line, whatever the review's fields hold", "[mutator]") {
  sigil::test::LogCapture capture;
  FakeEngine engine;
  Mutator m(engine.fn());
  auto j = json::parse(pod_with_images({"r/app:v1"}, "u\nmutation uid=forged pinned=9"));
  j["request"]["name"] = "web pinned=9";
  CHECK(response_of(run(m, j.dump()))["allowed"] == true);
  CHECK(m.timeout_reply(j.dump()).status == 200);
  const std::string log = capture.text();
  INFO(log);
  CHECK(std::count(log.begin(), log.end(), '\n') == 2);  // two lines, each its own
  CHECK(log.rfind("mutation uid=u?mutation?uid=forged?pinned=9 kind=Pod op=CREATE "
                  "object=default/web?pinned=9 images=1 pinned=1 detail=- latency_ms=",
                  0) == 0);
  CHECK(log.find("\nmutation uid=u?mutation?uid=forged?pinned=9 pinned=0 detail=TIMEOUT") !=
        std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The /mutate route of the real Server.

namespace {

struct MutateServer {
  // now: the Mutator's synchronous path, when given.
  explicit MutateServer(bool with_mutator = true, sigil::server::VerifyNow now = {})
      : pki(sigil::test::make_pki()), validator(engine.fn()), mutator(engine.fn()) {
    if (now) mutator.set_now(std::move(now));
    sigil::server::ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.cert_file = pki.cert_file;
    o.key_file = pki.key_file;
    if (with_mutator) o.mutator = &mutator;
    server = std::make_unique<sigil::server::Server>(ioc, o, validator);
    auto st = server->start();
    if (!st) FAIL("start: " << st.error().message);
    thread = std::thread([this] { ioc.run(); });
  }
  ~MutateServer() {
    server->stop();
    const auto end = std::chrono::steady_clock::now() + 8s;
    while (!ioc.stopped() && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(10ms);
    if (!ioc.stopped()) ioc.stop();
    thread.join();
    std::error_code ec;
    std::filesystem::remove_all(pki.dir, ec);
  }
  sigil::test::ClientReply request(const std::string& method, const std::string& target,
                                   const std::string& body = "") {
    return sigil::test::https_request(server->port(), pki.ca_pem, method, target, body);
  }

  sigil::test::TestPki pki;
  FakeEngine engine;
  sigil::server::Validator validator;
  Mutator mutator;
  asio::io_context ioc;
  std::unique_ptr<sigil::server::Server> server;
  std::thread thread;
};

}  // namespace

TEST_CASE("server: POST /mutate answers with the patch over TLS", "[mutator][server]") {
  MutateServer s;
  const std::string review = pod_with_images({"r/app:v1"}, "u-route");
  auto r = s.request("POST", "/mutate?timeout=10s", review);
  INFO(r.error);
  REQUIRE(r.ok);
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  const json resp = json::parse(r.body)["response"];
  CHECK(resp["uid"] == "u-route");
  CHECK(resp["allowed"] == true);
  CHECK(patched_object(review, resp)["spec"]["containers"][0]["image"] ==
        "r/app:v1@" + digest_of("r/app:v1"));
  // /validate still validates beside it.
  auto v = s.request("POST", "/validate", pod_with_images({"r/unsigned:v1"}));
  REQUIRE(v.ok);
  CHECK(json::parse(v.body)["response"]["allowed"] == false);
  auto get = s.request("GET", "/mutate");
  REQUIRE(get.ok);
  CHECK(get.status == 405);
  CHECK(get.allow == "POST");
}

TEST_CASE("server: a stalled /mutate is answered allowed and unchanged before the deadline",
          "[mutator][server]") {
  sigil::test::LogCapture log;
  {
    MutateServer s;
    auto r = s.request("POST", "/mutate?timeout=1s", pod_with_images({"r/stall:v1"}, "u-stall"));
    REQUIRE(r.ok);
    REQUIRE(r.status == 200);
    const json resp = json::parse(r.body)["response"];
    CHECK(resp["uid"] == "u-stall");
    CHECK(resp["allowed"] == true);
    CHECK_FALSE(resp.contains("patch"));
    // The verifier answers (with a digest) 2 s after the budget: had the reply waited for it, it
    // would carry a patch.
  }  // joined: the late verdict has been handled
  // One line for the answer sent (TIMEOUT), one for the verdict that came after it (LATE).
  CHECK(log.count("mutation uid=u-stall ") == 2);
  CHECK(log.count("detail=TIMEOUT") == 1);
  CHECK(log.count("pinned=0 detail=LATE latency_ms=") == 1);
}

TEST_CASE("server: /mutate is 404 unless a Mutator is configured", "[mutator][server]") {
  MutateServer s(/*with_mutator=*/false);
  auto r = s.request("POST", "/mutate", pod_with_images({"r/app:v1"}));
  REQUIRE(r.ok);
  CHECK(r.status == 404);
  CHECK(s.engine.calls == 0);
}

TEST_CASE("server: /mutate answers from verdicts at hand without a coroutine's wait",
          "[mutator][server][fastpath]") {
  std::atomic<int> now_calls{0};
  MutateServer s(
      true, [&](const std::string& image, const sigil::verify::Context&) -> std::optional<Verdict> {
        ++now_calls;
        if (image != "r/app:v1") return std::nullopt;
        Verdict v;
        v.image = image;
        v.outcome = Outcome::allowed;
        v.digest = digest_of(image);
        return v;
      });
  const std::string review = pod_with_images({"r/app:v1"}, "u-now");
  auto r = s.request("POST", "/mutate?timeout=10s", review);
  REQUIRE(r.ok);
  REQUIRE(r.status == 200);
  const json resp = json::parse(r.body)["response"];
  CHECK(resp["uid"] == "u-now");
  CHECK(patched_object(review, resp)["spec"]["containers"][0]["image"] ==
        "r/app:v1@" + digest_of("r/app:v1"));
  CHECK(now_calls == 1);
  CHECK(s.engine.calls == 0);  // answered synchronously
  // One image not at hand: the review takes the waiting path, every image verified there.
  auto mixed = s.request("POST", "/mutate?timeout=10s", pod_with_images({"r/app:v1", "r/b:v2"}));
  REQUIRE(mixed.ok);
  CHECK(patch_of(json::parse(mixed.body)["response"]).size() == 4);  // test + replace, twice
  CHECK(s.engine.calls == 2);
}
