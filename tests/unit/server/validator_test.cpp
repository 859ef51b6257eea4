#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>

#include <nlohmann/json.hpp>

#include "log_capture.hpp"
#include "run_coro.hpp"
#include "server/validator.hpp"
#include "test_support.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using nlohmann::json;
using sigil::server::HttpReply;
using sigil::server::Validator;
using sigil::test::FakeVerifier;
using sigil::test::pod_with_images;
using sigil::test::read_fixture;

namespace {

HttpReply run(const Validator& v, const std::string& body,
              std::chrono::steady_clock::duration budget = 5s) {
  return sigil::test::run_coro(v.handle(body, std::chrono::steady_clock::now() + budget), 30s);
}

json response_of(const HttpReply& r) {
  REQUIRE(r.status == 200);
  REQUIRE(r.content_type == "application/json");
  auto j = json::parse(r.body);
  REQUIRE(j.contains("response"));
  return j["response"];
}

}  // namespace

TEST_CASE("validator allows a pod whose images all verify and echoes the uid", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto resp = response_of(
      run(v, pod_with_images({"reg.example/good:1", "reg.example/good:2"}, "uid-allow-1")));
  CHECK(resp["uid"] == "uid-allow-1");
  CHECK(resp["allowed"] == true);
  CHECK(fake.calls == 2);
}

TEST_CASE("validator denies when any image is denied, naming image and path", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto resp = response_of(
      run(v, pod_with_images({"reg.example/good:1", "127.0.0.1:5000/test/bad:v1"}, "uid-d")));
  CHECK(resp["uid"] == "uid-d");
  CHECK(resp["allowed"] == false);
  const std::string msg = resp["status"]["message"];
  CHECK(msg ==
        "image 127.0.0.1:5000/test/bad:v1 (spec.containers[1] c1) (sha256:aaaaaaaaaaaa…) is not "
        "admitted by policy prod: no signatures found");
  CHECK(msg.find("good") == std::string::npos);
}

TEST_CASE("a denial names every container that uses the image, once per image", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto resp = response_of(run(v, pod_with_images({"r/bad:1", "r/good:1", "r/bad:1", "r/bad:1"})));
  CHECK(resp["allowed"] == false);
  CHECK(fake.calls == 2);  // verified once per distinct image
  const std::string msg = resp["status"]["message"];
  CHECK(msg ==
        "image r/bad:1 (spec.containers[0] c0, spec.containers[2] c2, spec.containers[3] "
        "c3) (sha256:aaaaaaaaaaaa…) is not admitted by policy prod: no signatures found");
}

TEST_CASE("validator joins several denials with '; '", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto resp = response_of(run(v, pod_with_images({"r/bad:1", "r/unknown:2"})));
  CHECK(resp["allowed"] == false);
  const std::string msg = resp["status"]["message"];
  CHECK(msg.find("image r/bad:1 (spec.containers[0] c0) (sha256:aaaaaaaaaaaa…) is not admitted "
                 "by policy prod") == 0);
  CHECK(msg.find("; image r/unknown:2 (spec.containers[1] c1) matches no ClusterImagePolicy, "
                 "and images without a policy are denied") != std::string::npos);
}

TEST_CASE("a warned image is admitted with short warnings", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto resp = response_of(run(v, pod_with_images({"r/warn:1", "r/good:1"})));
  CHECK(resp["allowed"] == true);
  REQUIRE(resp.contains("warnings"));
  REQUIRE(resp["warnings"].size() == 1);
  const std::string w = resp["warnings"][0];
  CHECK(w.size() <= 120);
  CHECK(w.find("r/warn:1") != std::string::npos);
  CHECK(w.substr(w.size() - 3) == "...");
}

TEST_CASE("a verifier that throws denies (fail closed)", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto resp = response_of(run(v, pod_with_images({"r/good:1", "r/throw:1"})));
  CHECK(resp["allowed"] == false);
  CHECK(std::string(resp["status"]["message"]).find("r/throw:1") != std::string::npos);
}

TEST_CASE("a missing verifier denies", "[validator]") {
  Validator v(nullptr);
  auto resp = response_of(run(v, pod_with_images({"r/good:1"})));
  CHECK(resp["allowed"] == false);
}

TEST_CASE("kinds sigil does not judge are allowed without verification", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto resp = response_of(run(v, read_fixture("configmap-create.json")));
  CHECK(resp["allowed"] == true);
  CHECK(resp["uid"] == "a5b6c7d8-e9f0-4a1b-2c3d-4e5f6a7b8c9d");
  CHECK(fake.calls == 0);
}

TEST_CASE("DELETE is not judged", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto j = json::parse(pod_with_images({"r/bad:1"}));
  j["request"]["operation"] = "DELETE";
  auto resp = response_of(run(v, j.dump()));
  CHECK(resp["allowed"] == true);
  CHECK(fake.calls == 0);
}

TEST_CASE("dryRun is judged like a real request", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto j = json::parse(read_fixture("pod-create-dry-run.json"));
  auto& c = j["request"]["object"]["spec"]["containers"];
  for (auto& container : c) container["image"] = "r/bad:1";
  auto resp = response_of(run(v, j.dump()));
  CHECK(resp["allowed"] == false);
  CHECK(fake.calls >= 1);
}

TEST_CASE("every fixture kind that carries images is verified", "[validator]") {
  const char* name =
      GENERATE("pod-create-by-controller.json", "pod-create-kubectl-run.json",
               "pod-create-init-and-sidecar.json", "deployment-create.json", "cronjob-create.json",
               "pod-update-image.json", "pod-update-ephemeral-containers.json");
  CAPTURE(name);
  FakeVerifier fake;  // fixture images contain neither "good" nor "bad": no policy -> deny
  Validator v(fake.fn());
  auto resp = response_of(run(v, read_fixture(name)));
  CHECK(resp["allowed"] == false);
  CHECK(fake.calls >= 1);
  CHECK(std::string(resp["status"]["message"]).find("matches no ClusterImagePolicy") !=
        std::string::npos);
}

TEST_CASE("malformed reviews get 400 naming the problem", "[validator]") {
  const char* body = GENERATE("", "{", "not json", "[]", R"({"kind":"AdmissionReview"})",
                              R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"})");
  CAPTURE(body);
  FakeVerifier fake;
  Validator v(fake.fn());
  auto r = run(v, body);
  CHECK(r.status == 400);
  auto j = json::parse(r.body);
  CHECK(j.contains("error"));
  CHECK(fake.calls == 0);
}

TEST_CASE("a review past sigil's caps is denied with a 200, never left to failurePolicy",
          "[validator]") {
  // An HTTP error leaves the decision to the webhook's failurePolicy: with `Ignore`, a Pod of
  // 1000 signed init containers and one unsigned container would run unjudged.
  sigil::test::LogCapture capture;
  std::vector<std::string> images(1000, "r/signed@sha256:" + std::string(64, 'a'));
  auto j = json::parse(pod_with_images(images, "uid-many"));
  auto& spec = j["request"]["object"]["spec"];
  spec["initContainers"] = spec["containers"];
  spec["containers"] =
      json::array({{{"name", "x\nadmission uid=f decision=allowed"}, {"image", "quay.io/evil:1"}}});
  FakeVerifier fake;
  Validator v(fake.fn());
  v.set_now(fake.now_fn());
  const auto check = [&](const HttpReply& r) {
    const json resp = response_of(r);
    CHECK(resp["uid"] == "uid-many");
    CHECK(resp["allowed"] == false);
    CHECK(resp["status"]["code"] == 400);
    CHECK(resp["status"]["reason"] == "INVALID_REVIEW");
    CHECK_THAT(std::string(resp["status"]["message"]),
               Catch::Contains("cannot read this AdmissionReview") &&
                   Catch::Contains("more than 1000 containers"));
  };
  check(run(v, j.dump()));
  const auto now = v.answer_now(j.dump());
  REQUIRE(now.has_value());
  check(*now);
  CHECK(fake.calls == 0);
  // A decode error may quote what it refused: still one line.
  auto bad_op = json::parse(pod_with_images({"r/a:1"}, "uid-op"));
  bad_op["request"]["operation"] = "X\nadmission uid=forged decision=allowed";
  CHECK(response_of(run(v, bad_op.dump()))["status"]["reason"] == "INVALID_REVIEW");
  const std::string log = capture.text();
  INFO(log);
  CHECK(std::count(log.begin(), log.end(), '\n') == 3);  // one line each, nothing forged
  CHECK(log.find("\nadmission uid=forged") == std::string::npos);
}

TEST_CASE("images are verified concurrently", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  const auto start = std::chrono::steady_clock::now();
  auto resp = response_of(run(v, pod_with_images({"r/slow:1", "r/slow:2", "r/slow:3"})));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(resp["allowed"] == true);
  CHECK(fake.max_in_flight == 3);
  CHECK(elapsed < 850ms);  // serial would be >= 900 ms
}

TEST_CASE("the same image in two containers is verified once", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto resp = response_of(run(v, pod_with_images({"r/good:1", "r/good:1"})));
  CHECK(resp["allowed"] == true);
  CHECK(fake.calls == 1);
}

TEST_CASE("a pod with many images: each verified once, each denial names all its containers",
          "[validator]") {
  // Past 16 images, distinct_images and finish() index by set and map instead of a scan.
  for (const size_t distinct : {3, 16, 17, 40}) {
    std::vector<std::string> images;
    for (size_t i = 0; i < distinct; ++i) images.push_back("r/good" + std::to_string(i) + ":1");
    images.push_back("r/bad:1");
    images.push_back("r/good0:1");
    images.insert(images.begin(), "r/bad:1");  // containers 0 and distinct + 1
    FakeVerifier fake;
    Validator v(fake.fn());
    auto resp = response_of(run(v, pod_with_images(images)));
    INFO(distinct);
    CHECK(fake.calls == static_cast<int>(distinct) + 1);
    CHECK(resp["allowed"] == false);
    const std::string msg = resp["status"]["message"];
    CHECK(msg.rfind("image r/bad:1 (spec.containers[0] c0, spec.containers[" +
                        std::to_string(distinct + 1) + "] c" + std::to_string(distinct + 1) + ") ",
                    0) == 0);
    // Cut to 2 KiB past about 20 images, and still valid JSON: what is left out is counted.
    const std::string text = resp["auditAnnotations"]["images"];
    const json audit = json::parse(text);
    CHECK(text.size() <= 2048);
    const size_t more = audit.contains("...") ? std::stoul(audit["..."].get<std::string>()) : 0;
    CHECK(audit.size() - (more > 0 ? 1 : 0) + more == distinct + 1);
    CHECK((more > 0) == (distinct == 40));
  }
}

TEST_CASE("JsonObjectWithin: valid JSON within the limit, what is left out counted",
          "[validator]") {
  using sigil::server::JsonObjectWithin;
  const std::vector<std::pair<std::string, std::string>> members = {{"a.io/x", "allowed"},
                                                                    {"b\"q", "denied \n X"},
                                                                    {"c\xff", "warned"},
                                                                    {"d", std::string(50, 'v')}};
  json whole = json::object();
  for (const auto& [k, v] : members) whole[k] = v;
  {
    JsonObjectWithin all(std::string::npos);
    for (const auto& [k, v] : members) all.add(k, v);
    CHECK(json::parse(std::move(all).finish()) ==
          json::parse(whole.dump(-1, ' ', false, json::error_handler_t::replace)));
  }
  for (size_t max = 34; max < 200; ++max) {
    JsonObjectWithin out(max);
    for (const auto& [k, v] : members) out.add(k, v);
    const std::string text = std::move(out).finish();
    INFO(max << ": " << text);
    CHECK(text.size() <= max);
    const json j = json::parse(text);  // throws (fails) when not valid JSON
    const size_t more = j.contains("...") ? std::stoul(j["..."].get<std::string>()) : 0;
    CHECK(j.size() - (more > 0 ? 1 : 0) + more == members.size());
    // The members kept are the first ones, in order.
    size_t kept = 0;
    for (const auto& [k, v] : members) {
      if (kept + more == members.size()) break;
      CHECK(j.contains(k == "c\xff" ? "c\xef\xbf\xbd" : k));
      ++kept;
    }
  }
  JsonObjectWithin none(0);
  CHECK(std::move(none).finish() == "{}");
}

TEST_CASE("timeout reply denies with TIMEOUT and echoes the uid", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto resp = response_of(v.timeout_reply(pod_with_images({"r/good:1"}, "uid-t")));
  CHECK(resp["uid"] == "uid-t");
  CHECK(resp["allowed"] == false);
  CHECK(resp["status"]["reason"] == "TIMEOUT");
}

TEST_CASE("truncate_politely", "[validator]") {
  using sigil::server::truncate_politely;
  CHECK(truncate_politely("short", 120) == "short");
  CHECK(truncate_politely(std::string(200, 'x'), 120).size() == 120);
  // Never splits a UTF-8 sequence: "é" is 2 bytes.
  std::string s = std::string(116, 'a') + "\xC3\xA9" + "bbbb";
  auto t = truncate_politely(s, 120);
  CHECK(t == std::string(116, 'a') + "...");
}

TEST_CASE("validator builds the admission's context once and hands it to every image",
          "[validator]") {
  FakeVerifier fake;
  std::atomic<int> made{0};
  std::string seen_sa;
  std::vector<std::string> seen_secrets;
  Validator v(fake.fn(),
              [&](const sigil::admission::Request& req,
                  sigil::Deadline) -> boost::asio::awaitable<sigil::verify::Context> {
                ++made;
                seen_sa = req.service_account;
                seen_secrets = req.image_pull_secrets;
                sigil::verify::Context c;
                c.namespace_ = "ns-from-context";
                co_return c;
              });
  auto resp = response_of(run(v, pod_with_images({"reg.example/good:1", "reg.example/good:2"})));
  CHECK(resp["allowed"] == true);
  CHECK(made == 1);
  CHECK(fake.calls == 2);
  CHECK(fake.last_namespace() == "ns-from-context");
  CHECK(seen_sa == "default");
  // Without a context maker the request's own namespace is passed on.
  FakeVerifier plain;
  Validator v2(plain.fn());
  response_of(run(v2, pod_with_images({"reg.example/good:1"})));
  CHECK(plain.last_namespace() == "default");
}

// ---------------------------------------------------------------------------------------------
// UPDATEs that run nothing new, and objects being deleted, are admitted without a registry call.

namespace {

// A verifier that denies every image and counts its calls: whatever it is asked is refused, so
// an admission that passes was never judged.
struct DenyAll {
  std::atomic<int> calls{0};
  sigil::server::VerifyImage fn() {
    return [this](std::string image, const sigil::verify::Context&,
                  sigil::Deadline) -> boost::asio::awaitable<sigil::verify::Verdict> {
      ++calls;
      sigil::verify::Verdict v =
          sigil::verify::denial(image, sigil::verify::Reason::not_signed, "no signatures found");
      v.policy = "p";
      co_return v;
    };
  }
};

// An UPDATE of the kubectl-run Pod: oldObject is the object as created, object as edit() leaves
// it.
template <class Edit>
std::string pod_update(Edit edit) {
  json doc = json::parse(read_fixture("pod-create-kubectl-run.json"));
  auto& r = doc["request"];
  r["operation"] = "UPDATE";
  r["object"]["metadata"]["finalizers"] = json::array({"batch.kubernetes.io/job-tracking"});
  r["oldObject"] = r["object"];
  edit(r);
  return doc.dump();
}

}  // namespace

TEST_CASE("an UPDATE that changes no image is admitted without verification", "[validator]") {
  DenyAll fake;
  Validator v(fake.fn());
  SECTION("a finalizer removed") {
    auto body = pod_update([](json& r) { r["object"]["metadata"].erase("finalizers"); });
    auto resp = response_of(run(v, body));
    CHECK(resp["allowed"] == true);
  }
  SECTION("a label added") {
    auto body = pod_update([](json& r) { r["object"]["metadata"]["labels"]["x"] = "y"; });
    CHECK(response_of(run(v, body))["allowed"] == true);
  }
  SECTION("a Deployment scaled to zero") {
    json doc = json::parse(read_fixture("deployment-create.json"));
    auto& r = doc["request"];
    r["operation"] = "UPDATE";
    r["oldObject"] = r["object"];
    r["object"]["spec"]["replicas"] = 0;
    CHECK(response_of(run(v, doc.dump()))["allowed"] == true);
  }
  SECTION("a CronJob suspended") {
    json doc = json::parse(read_fixture("cronjob-create.json"));
    auto& r = doc["request"];
    r["operation"] = "UPDATE";
    r["oldObject"] = r["object"];
    r["object"]["spec"]["suspend"] = true;
    CHECK(response_of(run(v, doc.dump()))["allowed"] == true);
  }
  CHECK(fake.calls == 0);
}

TEST_CASE("an UPDATE that changes or adds an image is verified", "[validator]") {
  DenyAll fake;
  Validator v(fake.fn());
  SECTION("the container's image changed") {
    auto resp = response_of(run(v, read_fixture("pod-update-image.json")));
    CHECK(resp["allowed"] == false);
    CHECK(std::string(resp["status"]["message"]).find("myapp:v2") != std::string::npos);
  }
  SECTION("kubectl debug adds an ephemeral container") {
    auto resp = response_of(run(v, read_fixture("pod-update-ephemeral-containers.json")));
    CHECK(resp["allowed"] == false);
    CHECK(std::string(resp["status"]["message"]).find("busybox") != std::string::npos);
  }
  SECTION("the same image moved to another container") {
    auto body = pod_update([](json& r) {
      auto& cs = r["object"]["spec"]["containers"];
      cs.push_back(cs[0]);
      cs[1]["name"] = "second";
    });
    CHECK(response_of(run(v, body))["allowed"] == false);
  }
  SECTION("a Deployment's template image changed") {
    json doc = json::parse(read_fixture("deployment-create.json"));
    auto& r = doc["request"];
    r["operation"] = "UPDATE";
    r["oldObject"] = r["object"];
    r["object"]["spec"]["template"]["spec"]["containers"][0]["image"] = "reg.example/new:2";
    CHECK(response_of(run(v, doc.dump()))["allowed"] == false);
  }
  SECTION("no oldObject to compare with") {
    auto body = pod_update([](json& r) { r.erase("oldObject"); });
    CHECK(response_of(run(v, body))["allowed"] == false);
  }
  SECTION("an oldObject whose images cannot be read") {
    auto body = pod_update([](json& r) { r["oldObject"]["spec"]["containers"] = "x"; });
    CHECK(response_of(run(v, body))["allowed"] == false);
  }
  CHECK(fake.calls >= 1);
}

namespace {

// Records, for each image it is asked about, whether the Context said it is a Pod's new image
// (Context::pod_image: what /mutate pins), on both paths; allows everything.
struct PodImageRecorder {
  std::mutex mu;
  std::map<std::string, bool> seen;
  void record(const std::string& image, const sigil::verify::Context& c) {
    std::lock_guard lock(mu);
    seen[image] = c.pod_image;
  }
  static sigil::verify::Verdict allow(const std::string& image) {
    sigil::verify::Verdict v;
    v.outcome = sigil::verify::Outcome::allowed;
    v.image = image;
    return v;
  }
  sigil::server::VerifyImage fn() {
    return [this](std::string image, const sigil::verify::Context& c,
                  sigil::Deadline) -> boost::asio::awaitable<sigil::verify::Verdict> {
      record(image, c);
      co_return allow(image);
    };
  }
  sigil::server::VerifyNow now_fn() {
    return [this](const std::string& image, const sigil::verify::Context& c) {
      record(image, c);
      return std::optional<sigil::verify::Verdict>(allow(image));
    };
  }
};

}  // namespace

TEST_CASE("a Pod's new images by tag are verified as such (what /mutate pins), on both paths",
          "[validator]") {
  // With pinning on, the engine denies such an image NOT_PINNED: /mutate did not pin it.
  // Everything else is verified as before: digests, workload templates, and what an UPDATE
  // leaves where it was.
  const std::string digest = "sha256:" + std::string(64, 'a');
  const bool now = GENERATE(false, true);
  CAPTURE(now);
  PodImageRecorder rec;
  Validator v(rec.fn());
  v.set_now(rec.now_fn());
  auto judge = [&](const std::string& body) {
    rec.seen.clear();
    if (now) {
      REQUIRE(v.answer_now(body).has_value());
    } else {
      run(v, body);
    }
    return rec.seen;
  };
  using Seen = std::map<std::string, bool>;
  CHECK(judge(pod_with_images({"reg.example/a:1", "reg.example/b@" + digest,
                               "reg.example/c:2@" + digest, "reg.example/a:1"})) ==
        Seen{{"reg.example/a:1", true},
             {"reg.example/b@" + digest, false},
             {"reg.example/c:2@" + digest, false}});
  // A Deployment's template is not pinned by /mutate: its Pods are.
  CHECK(judge(read_fixture("deployment-create.json")) ==
        Seen{{"myregistry.azurecr.io/myapp:v1", false}, {"myregistry.azurecr.io/init:v1", false}});
  // kubectl debug: the new ephemeral container is the Pod's new image; the running one is not.
  CHECK(judge(read_fixture("pod-update-ephemeral-containers.json")) ==
        Seen{{"chetandevsecops.azurecr.io/myapp:v1", false},
             {"docker.io/library/busybox:1.36", true}});
  // An UPDATE that changes the image: the new one is new.
  const Seen changed = judge(read_fixture("pod-update-image.json"));
  REQUIRE(changed.size() == 1);
  CHECK(changed.begin()->first.find("myapp:v2") != std::string::npos);
  CHECK(changed.begin()->second);
}

TEST_CASE("an object being deleted is admitted without verification", "[validator]") {
  DenyAll fake;
  Validator v(fake.fn());
  // A terminating pod losing its last finalizer, and one whose image an UPDATE changes.
  auto finalizer = pod_update([](json& r) {
    r["oldObject"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z";
    r["object"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z";
    r["object"]["metadata"].erase("finalizers");
  });
  CHECK(response_of(run(v, finalizer))["allowed"] == true);
  auto changed = pod_update([](json& r) {
    r["object"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z";
    r["object"]["spec"]["containers"][0]["image"] = "reg.example/other:1";
  });
  CHECK(response_of(run(v, changed))["allowed"] == true);
  CHECK(fake.calls == 0);
  // A CREATE never carries a deletionTimestamp past the API server: one that does is judged.
  json create = json::parse(read_fixture("pod-create-kubectl-run.json"));
  create["request"]["object"]["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z";
  CHECK(response_of(run(v, create.dump()))["allowed"] == false);
  CHECK(fake.calls == 1);
}

TEST_CASE("the images audit annotation is JSON with every key and value escaped", "[validator]") {
  using sigil::server::audit_images_json;
  // One image: the shape every cached admission writes.
  CHECK(audit_images_json({{"r.io/app@sha256:ab", "allowed sha256:ab"}}) ==
        R"({"r.io/app@sha256:ab":"allowed sha256:ab"})");
  CHECK(audit_images_json({}) == "{}");
  // Quotes, backslashes, control characters and non-ASCII in what the pod spec wrote.
  const std::string hostile = std::string("a\"b\\c\n\x01\x7f", 8) + "\xc3\xa9";
  const std::string written = audit_images_json({{hostile, "denied \"X\""}});
  CHECK(written == "{\"a\\\"b\\\\c\\n\\u0001\x7f\xc3\xa9\":\"denied \\\"X\\\"\"}");
  const json parsed = json::parse(written);
  REQUIRE(parsed.is_object());
  CHECK(parsed.at(hostile) == "denied \"X\"");
  // Invalid UTF-8 becomes U+FFFD, so the annotation is always valid JSON.
  CHECK(json::parse(audit_images_json({{"bad\xff", "allowed"}})).at("bad\xef\xbf\xbd") ==
        "allowed");
  // Keys in byte order (as the nlohmann object it replaced wrote them), the same bytes as
  // nlohmann's dump.
  const std::vector<std::pair<std::string_view, std::string>> several = {
      {"z.io/b", "denied NOT_SIGNED"}, {"a.io/\xc3\xa9", "allowed"}, {"a.io/a", "warned WARN"}};
  json expected = json::object();
  for (const auto& [k, v] : several) expected[k] = v;
  CHECK(audit_images_json(several) == expected.dump());
}

TEST_CASE("a withheld verdict's digest is not in the audit annotation", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  const json resp =
      response_of(run(v, pod_with_images({"reg.example/private-bad:1", "reg.example/good:1"})));
  const json images = json::parse(std::string(resp["auditAnnotations"]["images"]));
  CHECK(images["reg.example/private-bad:1"] == "denied NOT_SIGNED");
  CHECK(images["reg.example/good:1"] == "allowed sha256:" + std::string(64, 'a'));
}

TEST_CASE("answer_now gives the reply handle() gives, byte for byte", "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  v.set_now(fake.now_fn());
  std::vector<std::string> bodies = {
      pod_with_images({"reg.example/good:1"}, "uid-1"),
      pod_with_images({"reg.example/good:1", "reg.example/bad:2"}, "uid-2"),
      pod_with_images({"reg.example/bad:1", "reg.example/good:3", "reg.example/bad:1"}, "uid-3"),
      pod_with_images({"reg.example/warn:1", "other.example/none:1"}, "uid-4"),
      "{not json",
      R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"})",
  };
  for (const char* f : {"deployment-create.json", "cronjob-create.json", "configmap-create.json",
                        "pod-create-init-and-sidecar.json", "pod-update-image.json",
                        "pod-update-ephemeral-containers.json"}) {
    bodies.push_back(read_fixture(f));
  }
  for (const auto& body : bodies) {
    INFO(body.substr(0, 120));
    const HttpReply slow = run(v, body);
    const auto now = v.answer_now(body);
    REQUIRE(now.has_value());
    CHECK(now->status == slow.status);
    CHECK(now->content_type == slow.content_type);
    CHECK(now->body == slow.body);
    CHECK(now->result == slow.result);
  }
}

TEST_CASE("answer_now gives up, having counted nothing, when an image needs waiting",
          "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  // Told of what the synchronous path answers with (cache hits are counted there), never of
  // what it gave up on: the waiting path asks for those images again.
  std::vector<std::vector<std::string>> answered;
  v.set_now(fake.now_fn(), {}, [&](const std::vector<sigil::verify::Verdict>& verdicts) {
    answered.emplace_back();
    for (const auto& verdict : verdicts) answered.back().push_back(verdict.image);
  });
  std::vector<std::string> counted;
  int observed = 0;
  v.set_counter([&](const sigil::verify::Verdict& verdict) { counted.push_back(verdict.image); });
  v.set_observer([&](const auto&, const auto&, const auto&) { ++observed; });
  const std::string body =
      pod_with_images({"reg.example/bad:1", "reg.example/miss-good:1"}, "uid-miss");
  CHECK_FALSE(v.answer_now(body).has_value());
  CHECK(counted.empty());
  CHECK(answered.empty());
  CHECK(observed == 0);
  // The waiting path then judges (and counts) every image exactly once.
  auto resp = response_of(run(v, body));
  CHECK(resp["allowed"] == false);
  CHECK(counted == std::vector<std::string>{"reg.example/bad:1", "reg.example/miss-good:1"});
  CHECK(observed == 1);
  // On the synchronous path too, once each.
  counted.clear();
  REQUIRE(v.answer_now(pod_with_images({"reg.example/bad:1", "reg.example/good:1"})));
  CHECK(counted == std::vector<std::string>{"reg.example/bad:1", "reg.example/good:1"});
  CHECK(observed == 2);
  CHECK(answered ==
        std::vector<std::vector<std::string>>{{"reg.example/bad:1", "reg.example/good:1"}});
}

TEST_CASE("answer_now asks for the admission's context as handle() would", "[validator]") {
  using sigil::verify::Context;
  FakeVerifier fake;
  const std::string body = pod_with_images({"reg.example/good:1"}, "uid-ctx");
  SECTION("without a synchronous verifier there is no synchronous path") {
    Validator v(fake.fn());
    CHECK_FALSE(v.answer_now(body).has_value());
  }
  SECTION("a MakeContext without a ContextNow: nothing is answered at once") {
    Validator v(fake.fn(), [](const sigil::admission::Request&, sigil::Deadline) {
      return boost::asio::awaitable<Context>(
          []() -> boost::asio::awaitable<Context> { co_return Context{}; }());
    });
    v.set_now(fake.now_fn());
    CHECK_FALSE(v.answer_now(body).has_value());
    CHECK(fake.now_calls == 0);
  }
  SECTION("a ContextNow that needs waiting: nothing is answered at once") {
    Validator v(fake.fn());
    v.set_now(fake.now_fn(),
              [](const sigil::admission::Request&) -> std::optional<Context> { return {}; });
    CHECK_FALSE(v.answer_now(body).has_value());
    CHECK(fake.now_calls == 0);
  }
  SECTION("the ContextNow's context reaches the verifier") {
    Validator v(fake.fn());
    v.set_now(fake.now_fn(), [](const sigil::admission::Request&) -> std::optional<Context> {
      Context c;
      c.namespace_ = "from-context-now";
      return c;
    });
    REQUIRE(v.answer_now(body).has_value());
    CHECK(fake.last_namespace() == "from-context-now");
  }
}

TEST_CASE("the admission log line is one line, whatever the review's fields hold", "[validator]") {
  // Anyone who reaches /validate can post a review: its name, namespace, uid and kind must not
  // forge a second log line or a `decision=` field of their own.
  sigil::test::LogCapture capture;

  auto j =
      json::parse(pod_with_images({"r/bad:1"}, "uid-1\nadmission uid=forged decision=allowed"));
  j["request"]["name"] = "web decision=allowed";
  j["request"]["namespace"] = "ns\r\u007f\"x";
  FakeVerifier fake;
  Validator v(fake.fn());
  CHECK(response_of(run(v, j.dump()))["allowed"] == false);
  const std::string log = capture.text();
  INFO(log);
  CHECK(std::count(log.begin(), log.end(), '\n') == 1);  // one line, its own newline
  CHECK(log.rfind("admission uid=uid-1?admission?uid=forged?decision=allowed kind=Pod op=CREATE "
                  "object=ns???x/web?decision=allowed dryRun=false images=1 decision=denied "
                  "reasons=NOT_SIGNED latency_ms=",
                  0) == 0);
  // A review that is not one is logged with '?' for what it lacks.
  capture.clear();
  CHECK(v.timeout_reply("{").status == 200);
  CHECK(capture.text() == "admission uid=? kind=? object=?/? decision=denied reasons=TIMEOUT\n");
}

TEST_CASE("the policy review's log line is one line, whatever the review's fields hold",
          "[validator]") {
  // /validate-policy is reachable by anyone who reaches the webhook port, like /validate.
  sigil::test::LogCapture capture;
  const json review = {
      {"apiVersion", "admission.k8s.io/v1"},
      {"kind", "AdmissionReview"},
      {"request",
       {{"uid", "u-1\npolicy review uid=forged decision=allowed"},
        {"kind",
         {{"group", "sigil.dev"}, {"version", "v1alpha1"}, {"kind", "Cluster ImagePolicy"}}},
        {"resource", {{"group", "sigil.dev"}, {"version", "v1alpha1"}, {"resource", "x"}}},
        {"operation", "CREATE"},
        {"namespace", "ns\r\""},
        {"name", "p decision=allowed"},
        {"object", {{"spec", json::object()}}}}}};
  const auto reply = sigil::server::handle_policy_review(
      review.dump(), [](const std::string&, const std::string&) {
        return sigil::server::PolicyCheck{"bad", {}};
      });
  CHECK(json::parse(reply.body)["response"]["allowed"] == false);
  const std::string log = capture.text();
  INFO(log);
  CHECK(log ==
        "policy review uid=u-1?policy?review?uid=forged?decision=allowed "
        "kind=Cluster?ImagePolicy op=CREATE object=ns?"
        "?/p?decision=allowed "
        "decision=denied\n");
}

TEST_CASE("a verdict after the Server's TIMEOUT is logged as late, not counted or observed",
          "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  int counted = 0;
  int observed = 0;
  v.set_counter([&](const sigil::verify::Verdict&) { ++counted; });
  v.set_observer([&](const auto&, const auto&, const auto&) { ++observed; });
  sigil::test::LogCapture log;
  const std::string body = pod_with_images({"reg.example/bad:1"}, "uid-once");
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  SECTION("the Server answered TIMEOUT first") {
    sigil::server::AnswerOnce once;
    REQUIRE(once.claim_timeout());
    sigil::test::run_coro(v.handle(body, deadline, &once), 30s);
    CHECK(counted == 0);
    CHECK(observed == 0);
    CHECK(log.count("decision=late-denied reasons=NOT_SIGNED") == 1);
    CHECK(log.count("answered=TIMEOUT") == 1);
    CHECK(log.count("decision=denied") == 0);
    CHECK_FALSE(once.claim_verdict());
  }
  SECTION("the verdict claimed the answer: the Server's TIMEOUT then loses") {
    sigil::server::AnswerOnce once;
    auto resp = response_of(sigil::test::run_coro(v.handle(body, deadline, &once), 30s));
    CHECK(resp["allowed"] == false);
    CHECK(counted == 1);
    CHECK(observed == 1);
    CHECK(log.count("decision=denied reasons=NOT_SIGNED") == 1);
    CHECK(log.count("decision=late-") == 0);
    CHECK_FALSE(once.claim_timeout());
  }
  SECTION("the TIMEOUT reply is a decision: logged and observed") {
    auto resp = response_of(v.timeout_reply(body));
    CHECK(resp["status"]["reason"] == "TIMEOUT");
    CHECK(resp["status"]["message"] ==
          "sigil did not finish verifying image reg.example/bad:1 within the webhook timeout "
          "(TIMEOUT)");
    CHECK(observed == 1);
    CHECK(counted == 0);
    CHECK(log.count("decision=denied reasons=TIMEOUT") == 1);
  }
}

TEST_CASE("the TIMEOUT message names the admission's images, the first two and a count",
          "[validator]") {
  FakeVerifier fake;
  Validator v(fake.fn());
  auto message = [&](const std::vector<std::string>& images) {
    return response_of(v.timeout_reply(pod_with_images(images)))["status"]["message"]
        .get<std::string>();
  };
  CHECK(message({"r/a:1", "r/b:1"}) ==
        "sigil did not finish verifying images r/a:1 and r/b:1 within the webhook timeout "
        "(TIMEOUT)");
  CHECK(message({"r/a:1", "r/b:1", "r/c:1", "r/a:1", "r/d:1"}) ==
        "sigil did not finish verifying images r/a:1, r/b:1 and 2 more within the webhook "
        "timeout (TIMEOUT)");
  // A hostile name is shortened, and the message stays one bounded line.
  const std::string longest = message({"r/" + std::string(20000, 'x') + ":1", "r/b:1"});
  CHECK(longest.size() < 600);
  CHECK(longest.find("...") != std::string::npos);
  // A body that does not decode still gets the plain message.
  CHECK(response_of(v.timeout_reply("{"))["status"]["message"] ==
        "sigil did not finish verifying within the webhook timeout (TIMEOUT)");
}
