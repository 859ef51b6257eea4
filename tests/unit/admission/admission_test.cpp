// Tests for admission/: decoding real-shaped AdmissionReview bodies, malformed bodies, and
// the response encoding.
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "admission/admission.hpp"
#include "common/encoding.hpp"

using sigil::Errc;
using sigil::admission::decode_review;
using sigil::admission::encode_response;
using sigil::admission::Response;
using json = nlohmann::json;

namespace {

std::string read_data(const std::string& name) {
  std::ifstream in(std::string(SIGIL_SOURCE_DIR) + "/tests/unit/admission/data/" + name,
                   std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> images_of(const sigil::admission::Request& r) {
  std::vector<std::string> out;
  for (const auto& u : r.images) out.push_back(u.image);
  return out;
}

// A minimal valid review around a request object, for the malformed-input tables.
json base_review() {
  return json::parse(R"({
    "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
    "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE", "namespace": "default", "name": "p",
                "object": {"apiVersion": "v1", "kind": "Pod",
                           "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}}
  })");
}

}  // namespace

TEST_CASE("fixture bodies decode to the expected images", "[admission]") {
  struct Case {
    const char* file;
    bool judged;
    std::vector<std::string> images;
  };
  auto c = GENERATE_COPY(values<Case>({
      {"configmap-create.json", false, {}},
      {"cronjob-create.json", true, {"myregistry.azurecr.io/batch/report:2026.11"}},
      {"deployment-create.json",
       true,
       {"myregistry.azurecr.io/init:v1", "myregistry.azurecr.io/myapp:v1"}},
      {"pod-create-by-controller.json", true, {"chetandevsecops.azurecr.io/myapp:v1"}},
      {"pod-create-dry-run.json", true, {"myregistry.azurecr.io/tools/debug:1.0"}},
      {"pod-create-init-and-sidecar.json",
       true,
       {"myregistry.azurecr.io/app/migrate:v3",
        "myregistry.azurecr.io/app/web@sha256:"
        "0d3f0a5e5c6b1d7f2e8a9b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e",
        "myregistry.azurecr.io/infra/proxy:2.4.1@sha256:"
        "5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d"}},
      {"pod-create-kubectl-run.json", true, {"myregistry.azurecr.io/tools/debug:1.0"}},
      {"pod-update-ephemeral-containers.json",
       true,
       {"chetandevsecops.azurecr.io/myapp:v1", "docker.io/library/busybox:1.36"}},
      {"pod-update-image.json", true, {"chetandevsecops.azurecr.io/myapp:v2"}},
  }));
  CAPTURE(c.file);
  auto r = decode_review(read_data(c.file));
  REQUIRE(r.ok());
  CHECK_FALSE(r->uid.empty());
  CHECK(r->judged == c.judged);
  CHECK(images_of(*r) == c.images);
}

TEST_CASE("fixture details: paths, operation, subresource, dry run", "[admission]") {
  auto dep = decode_review(read_data("deployment-create.json"));
  REQUIRE(dep.ok());
  CHECK(dep->kind == "Deployment");
  CHECK(dep->group == "apps");
  REQUIRE(dep->images.size() == 2);
  CHECK(dep->images[0].path == "spec.template.spec.initContainers[0] (init)");
  CHECK(dep->images[1].path == "spec.template.spec.containers[0] (app)");

  auto cron = decode_review(read_data("cronjob-create.json"));
  REQUIRE(cron.ok());
  REQUIRE(cron->images.size() == 1);
  CHECK(cron->images[0].path.rfind("spec.jobTemplate.spec.template.spec.containers[0]", 0) == 0);

  auto eph = decode_review(read_data("pod-update-ephemeral-containers.json"));
  REQUIRE(eph.ok());
  CHECK(eph->operation == "UPDATE");
  CHECK(eph->sub_resource == "ephemeralcontainers");
  CHECK(eph->namespace_ == "default");
  CHECK(eph->name == "myapp-7d9c8b5f4-x2x9k");
  REQUIRE(eph->images.size() == 2);
  CHECK(eph->images[1].path == "spec.ephemeralContainers[0] (debugger-abcde)");

  auto upd = decode_review(read_data("pod-update-image.json"));
  REQUIRE(upd.ok());
  // The new object's image, never the old one.
  CHECK(images_of(*upd) == std::vector<std::string>{"chetandevsecops.azurecr.io/myapp:v2"});

  auto dry = decode_review(read_data("pod-create-dry-run.json"));
  REQUIRE(dry.ok());
  CHECK(dry->dry_run);
  CHECK_FALSE(dep->dry_run);
}

TEST_CASE("every judged resource finds its pod spec", "[admission]") {
  struct Case {
    const char* group;
    const char* resource;
    const char* kind;
    const char* object;
    bool judged;
  };
  const char* tmpl =
      R"({"spec":{"template":{"spec":{"containers":[{"name":"c","image":"x:1"}]}}}})";
  auto c = GENERATE_COPY(values<Case>({
      {"", "pods", "Pod", R"({"spec":{"containers":[{"name":"c","image":"x:1"}]}})", true},
      {"", "replicationcontrollers", "ReplicationController", tmpl, true},
      {"apps", "deployments", "Deployment", tmpl, true},
      {"apps", "replicasets", "ReplicaSet", tmpl, true},
      {"apps", "statefulsets", "StatefulSet", tmpl, true},
      {"apps", "daemonsets", "DaemonSet", tmpl, true},
      {"batch", "jobs", "Job", tmpl, true},
      {"batch", "cronjobs", "CronJob",
       R"({"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"image":"x:1"}]}}}}}})",
       true},
      // Same resource name in another group is not ours.
      {"example.com", "deployments", "Deployment", tmpl, false},
      {"", "deployments", "Deployment", tmpl, false},
      {"", "services", "Service", R"({"spec":{}})", false},
  }));
  CAPTURE(c.group, c.resource);
  json doc = base_review();
  doc["request"]["kind"] = {{"group", c.group}, {"version", "v1"}, {"kind", c.kind}};
  doc["request"]["resource"] = {{"group", c.group}, {"version", "v1"}, {"resource", c.resource}};
  doc["request"]["object"] = json::parse(c.object);
  auto r = decode_review(doc.dump());
  REQUIRE(r.ok());
  CHECK(r->judged == c.judged);
  if (c.judged) {
    CHECK(images_of(*r) == std::vector<std::string>{"x:1"});
  } else {
    CHECK(r->images.empty());
  }
}

TEST_CASE("the resource decides what is judged, never the kind's spelling", "[admission]") {
  // A review for pods whose kind is spelled otherwise is still a pod: checked, not waved through.
  auto kind = GENERATE(as<std::string>{}, "pod", "Pods", "PodTemplate", "ConfigMap", "");
  CAPTURE(kind);
  json doc = base_review();
  doc["request"]["kind"]["kind"] = kind;
  auto r = decode_review(doc.dump());
  REQUIRE(r.ok());
  CHECK(r->judged);
  CHECK(images_of(*r) == std::vector<std::string>{"nginx:1.25"});

  // And a kind that says Pod on another resource judges nothing.
  json other = base_review();
  other["request"]["resource"] = {{"group", ""}, {"version", "v1"}, {"resource", "configmaps"}};
  auto o = decode_review(other.dump());
  REQUIRE(o.ok());
  CHECK_FALSE(o->judged);
}

TEST_CASE("a pod's subresources: ephemeralcontainers is judged, the others change no image",
          "[admission]") {
  auto sub = GENERATE(as<std::string>{}, "", "ephemeralcontainers", "status", "binding");
  CAPTURE(sub);
  json doc = base_review();
  doc["request"]["operation"] = "UPDATE";
  if (!sub.empty()) doc["request"]["subResource"] = sub;
  auto r = decode_review(doc.dump());
  REQUIRE(r.ok());
  CHECK(r->judged == (sub.empty() || sub == "ephemeralcontainers"));
}

TEST_CASE("a workload's subresources carry no pod template and are not judged", "[admission]") {
  // deployments/scale sends a Scale object: read as a Deployment it would have no
  // spec.template and be refused, and `kubectl scale` with it.
  auto sub = GENERATE(as<std::string>{}, "scale", "status");
  CAPTURE(sub);
  json doc = base_review();
  doc["request"]["operation"] = "UPDATE";
  doc["request"]["resource"] = {{"group", "apps"}, {"version", "v1"}, {"resource", "deployments"}};
  doc["request"]["subResource"] = sub;
  doc["request"]["object"] = json::parse(R"({"apiVersion": "autoscaling/v1", "kind": "Scale",
      "metadata": {"name": "web"}, "spec": {"replicas": 5}})");
  auto r = decode_review(doc.dump());
  REQUIRE(r.ok());
  CHECK_FALSE(r->judged);
  CHECK(r->images.empty());
}

TEST_CASE("request.resource is required", "[admission]") {
  json doc = base_review();
  doc["request"].erase("resource");
  auto r = decode_review(doc.dump());
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("request.resource") != std::string::npos);
  doc["request"]["resource"] = {{"group", ""}, {"version", "v1"}};
  CHECK_FALSE(decode_review(doc.dump()).ok());
}

TEST_CASE("DELETE and CONNECT are not judged", "[admission]") {
  auto op = GENERATE(as<std::string>{}, "DELETE", "CONNECT");
  json doc = base_review();
  doc["request"]["operation"] = op;
  doc["request"]["object"] = nullptr;
  auto r = decode_review(doc.dump());
  REQUIRE(r.ok());
  CHECK_FALSE(r->judged);
  CHECK(r->images.empty());
}

TEST_CASE("every use of an image is listed, with its own path and pointer", "[admission]") {
  json doc = base_review();
  doc["request"]["object"]["spec"] = json::parse(R"({
      "initContainers": [{"name": "i", "image": "a:1"}],
      "containers": [{"name": "c1", "image": "a:1"}, {"name": "c2", "image": "b:1"}],
      "ephemeralContainers": [{"name": "dbg", "image": "a:1"}]})");
  auto r = decode_review(doc.dump());
  REQUIRE(r.ok());
  REQUIRE(r->images.size() == 4);
  CHECK(images_of(*r) == std::vector<std::string>{"a:1", "a:1", "b:1", "a:1"});
  CHECK(r->images[0].path == "spec.initContainers[0] (i)");
  CHECK(r->images[0].pointer == "/spec/initContainers/0/image");
  CHECK(r->images[1].pointer == "/spec/containers/0/image");
  CHECK(r->images[2].pointer == "/spec/containers/1/image");
  CHECK(r->images[3].path == "spec.ephemeralContainers[0] (dbg)");
  CHECK(r->images[3].pointer == "/spec/ephemeralContainers/0/image");
}

TEST_CASE("image volumes are images: read, with their own path and pointer", "[admission]") {
  // Kubernetes' ImageVolume mounts an OCI image's files into the pod: an unsigned one would
  // reach the containers unverified.
  json doc = base_review();
  doc["request"]["object"]["spec"]["volumes"] = json::parse(R"([
      {"name": "cfg", "configMap": {"name": "c"}},
      {"name": "models", "image": {"reference": "reg.example/models:v2", "pullPolicy": "Always"}},
      {"name": "data", "emptyDir": {}, "image": null}])");
  auto r = decode_review(doc.dump());
  REQUIRE(r.ok());
  CHECK(images_of(*r) == std::vector<std::string>{"nginx:1.25", "reg.example/models:v2"});
  CHECK(r->images[1].path == "spec.volumes[1] (models)");
  CHECK(r->images[1].pointer == "/spec/volumes/1/image/reference");
  const json object = doc["request"]["object"];
  for (const auto& use : r->images) {
    CHECK(object.at(json::json_pointer(use.pointer)) == use.image);
  }
  // In a workload's template too.
  json dep = base_review();
  dep["request"]["resource"]["group"] = "apps";
  dep["request"]["resource"]["resource"] = "deployments";
  dep["request"]["object"] = json::parse(R"({"apiVersion": "apps/v1", "kind": "Deployment",
      "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:1"}],
               "volumes": [{"name": "m", "image": {"reference": "m:1"}}]}}}})");
  auto d = decode_review(dep.dump());
  REQUIRE(d.ok());
  REQUIRE(d->images.size() == 2);
  CHECK(d->images[1].pointer == "/spec/template/spec/volumes/0/image/reference");
  // A malformed image volume is an error, never skipped.
  for (const char* bad :
       {R"([{"name": "m", "image": "m:1"}])", R"([{"name": "m", "image": {}}])",
        R"([{"name": "m", "image": {"reference": ""}}])",
        R"([{"name": "m", "image": {"reference": 5}}])", R"({"m": 1})", R"([5])"}) {
    CAPTURE(bad);
    json b = base_review();
    b["request"]["object"]["spec"]["volumes"] = json::parse(bad);
    auto e = decode_review(b.dump());
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().message.find("volumes") != std::string::npos);
  }
}

TEST_CASE("each image's JSON pointer names the very field it was read from", "[admission]") {
  // The pointer is what /mutate patches: resolved against the object, it must give the image.
  const char* name = GENERATE("deployment-create.json", "cronjob-create.json",
                              "pod-create-init-and-sidecar.json", "pod-create-kubectl-run.json",
                              "pod-update-ephemeral-containers.json", "pod-update-image.json");
  CAPTURE(name);
  const std::string body = read_data(name);
  auto r = decode_review(body);
  REQUIRE(r.ok());
  REQUIRE_FALSE(r->images.empty());
  const json object = json::parse(body)["request"]["object"];
  for (const auto& use : r->images) {
    CAPTURE(use.pointer);
    CHECK(object.at(json::json_pointer(use.pointer)) == use.image);
  }
  if (std::string(name) == "cronjob-create.json") {
    CHECK(r->images[0].pointer == "/spec/jobTemplate/spec/template/spec/containers/0/image");
  }
}

TEST_CASE("json_pointer_token escapes '~' and '/' as RFC 6901 says", "[admission]") {
  using sigil::admission::json_pointer_token;
  CHECK(json_pointer_token("containers") == "containers");
  CHECK(json_pointer_token("a/b") == "a~1b");
  CHECK(json_pointer_token("a~b") == "a~0b");
  CHECK(json_pointer_token("~/") == "~0~1");
  CHECK(json_pointer_token("~1") == "~01");  // not "~1", which would read back as "/"
  CHECK(json_pointer_token("") == "");
  // Read back by an independent implementation.
  json o = {{"a/b~c", "x"}};
  CHECK(o.at(json::json_pointer("/" + json_pointer_token("a/b~c"))) == "x");
}

namespace {

// A Pod UPDATE: oldObject with old_spec, object with new_spec.
json pod_update(const char* old_spec, const char* new_spec) {
  json doc = base_review();
  doc["request"]["operation"] = "UPDATE";
  doc["request"]["oldObject"] = doc["request"]["object"];
  doc["request"]["oldObject"]["spec"] = json::parse(old_spec);
  doc["request"]["object"]["spec"] = json::parse(new_spec);
  return doc;
}

std::vector<std::string> new_pointers(const sigil::admission::Request& r) {
  std::vector<std::string> out;
  for (const auto* use : sigil::admission::new_image_uses(r)) out.push_back(use->pointer);
  return out;
}

}  // namespace

TEST_CASE("new_image_uses: what an UPDATE adds or changes, by pointer", "[admission]") {
  struct Case {
    const char* what;
    const char* old_spec;
    const char* new_spec;
    std::vector<std::string> fresh;  // pointers of the new uses
  };
  const char* two = R"({"initContainers":[{"name":"i","image":"i:1"}],
                        "containers":[{"name":"a","image":"a:1"},{"name":"b","image":"b:1"}]})";
  auto c = GENERATE_COPY(values<Case>({
      {"nothing changed (a label, a finalizer)", two, two, {}},
      {"one image changed",
       two,
       R"({"initContainers":[{"name":"i","image":"i:1"}],
           "containers":[{"name":"a","image":"a:2"},{"name":"b","image":"b:1"}]})",
       {"/spec/containers/0/image"}},
      {"images swapped between containers",
       two,
       R"({"initContainers":[{"name":"i","image":"i:1"}],
           "containers":[{"name":"a","image":"b:1"},{"name":"b","image":"a:1"}]})",
       {"/spec/containers/0/image", "/spec/containers/1/image"}},
      {"an image moved from initContainers to containers",
       R"({"initContainers":[{"name":"i","image":"x:1"}],"containers":[{"name":"a","image":"a:1"}]})",
       R"({"containers":[{"name":"i","image":"x:1"},{"name":"a","image":"a:1"}]})",
       {"/spec/containers/0/image", "/spec/containers/1/image"}},
      {"an ephemeral container added",
       two,
       R"({"initContainers":[{"name":"i","image":"i:1"}],
           "containers":[{"name":"a","image":"a:1"},{"name":"b","image":"b:1"}],
           "ephemeralContainers":[{"name":"dbg","image":"a:1"}]})",
       {"/spec/ephemeralContainers/0/image"}},
      {"a container removed",
       two,
       R"({"initContainers":[{"name":"i","image":"i:1"}],"containers":[{"name":"a","image":"a:1"}]})",
       {}},
  }));
  CAPTURE(c.what);
  auto r = decode_review(pod_update(c.old_spec, c.new_spec).dump());
  REQUIRE(r.ok());
  CHECK(r->has_old_images);
  CHECK(new_pointers(*r) == c.fresh);
}

TEST_CASE("new_image_uses: without a readable oldObject every use is new", "[admission]") {
  const char* spec = R"({"containers":[{"name":"a","image":"a:1"}]})";
  SECTION("CREATE ignores an oldObject") {
    json doc = pod_update(spec, spec);
    doc["request"]["operation"] = "CREATE";
    auto r = decode_review(doc.dump());
    REQUIRE(r.ok());
    CHECK_FALSE(r->has_old_images);
    CHECK(new_pointers(*r) == std::vector<std::string>{"/spec/containers/0/image"});
  }
  SECTION("a defective or missing oldObject") {
    struct Case {
      const char* pointer;
      const char* value;  // JSON, or "DELETE"
    };
    auto c = GENERATE(values<Case>({
        {"/request/oldObject", "DELETE"},
        {"/request/oldObject", "null"},
        {"/request/oldObject", "[]"},
        {"/request/oldObject/spec", "DELETE"},
        {"/request/oldObject/spec", "7"},
        {"/request/oldObject/spec/containers", R"({"image":"a:1"})"},
        {"/request/oldObject/spec/containers/0/image", "42"},
        {"/request/oldObject/spec/containers/0/image", R"("")"},
    }));
    CAPTURE(c.pointer, c.value);
    json doc = pod_update(spec, spec);
    json::json_pointer p(c.pointer);
    if (std::string(c.value) == "DELETE") {
      doc[p.parent_pointer()].erase(p.back());
    } else {
      doc[p] = json::parse(c.value);
    }
    auto r = decode_review(doc.dump());
    REQUIRE(r.ok());  // the old object never fails the review
    CHECK_FALSE(r->has_old_images);
    CHECK(r->old_images.empty());
    CHECK(new_pointers(*r) == std::vector<std::string>{"/spec/containers/0/image"});
  }
  SECTION("an old object with too many containers") {
    json doc = pod_update(spec, spec);
    json list = json::array();
    for (int i = 0; i < 1001; ++i) list.push_back({{"name", "c"}, {"image", "a:1"}});
    doc["request"]["oldObject"]["spec"]["containers"] = list;
    auto r = decode_review(doc.dump());
    REQUIRE(r.ok());
    CHECK_FALSE(r->has_old_images);
    CHECK(new_pointers(*r).size() == 1);
  }
}

TEST_CASE("new_image_uses on the fixtures: a changed image and an added debug container",
          "[admission]") {
  auto upd = decode_review(read_data("pod-update-image.json"));
  REQUIRE(upd.ok());
  CHECK(upd->has_old_images);
  CHECK(new_pointers(*upd) == std::vector<std::string>{"/spec/containers/0/image"});
  auto eph = decode_review(read_data("pod-update-ephemeral-containers.json"));
  REQUIRE(eph.ok());
  CHECK(eph->has_old_images);
  CHECK(new_pointers(*eph) == std::vector<std::string>{"/spec/ephemeralContainers/0/image"});
}

TEST_CASE("deletionTimestamp marks an object being deleted", "[admission]") {
  struct Case {
    const char* value;  // JSON for metadata.deletionTimestamp, or nullptr: absent
    bool deleting;
  };
  auto c = GENERATE(values<Case>({
      {nullptr, false},
      {R"("2026-01-02T03:04:05Z")", true},
      {"null", false},
      {R"("")", false},
      {"17", false},
      {"{}", false},
  }));
  CAPTURE(c.value ? c.value : "(absent)");
  json doc = base_review();
  doc["request"]["object"]["metadata"] = {{"name", "p"}};
  if (c.value) doc["request"]["object"]["metadata"]["deletionTimestamp"] = json::parse(c.value);
  auto r = decode_review(doc.dump());
  REQUIRE(r.ok());
  CHECK(r->deleting == c.deleting);
  // The old object's deletionTimestamp is not the new object's.
  json upd = pod_update(R"({"containers":[{"name":"a","image":"a:1"}]})",
                        R"({"containers":[{"name":"a","image":"a:1"}]})");
  upd["request"]["oldObject"]["metadata"] = {{"deletionTimestamp", "2026-01-02T03:04:05Z"}};
  auto u = decode_review(upd.dump());
  REQUIRE(u.ok());
  CHECK_FALSE(u->deleting);
}

TEST_CASE("review_uid reads the uid of a review decode_review refuses", "[admission]") {
  using sigil::admission::review_uid;
  json doc = base_review();
  doc["request"]["object"]["spec"]["containers"][0]["image"] = "";
  REQUIRE_FALSE(decode_review(doc.dump()).ok());
  CHECK(review_uid(doc.dump()) == "u-1");
  CHECK(review_uid("") == "");
  CHECK(review_uid("{") == "");
  CHECK(review_uid(R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"})") == "");
  doc["apiVersion"] = "admission.k8s.io/v1beta1";
  CHECK(review_uid(doc.dump()) == "");
  CHECK(review_uid(std::string(1000000, '[')) == "");
}

TEST_CASE("malformed bodies are errors, never a silent allow", "[admission]") {
  SECTION("not a review at all") {
    auto body = GENERATE(as<std::string>{}, "", "not json", "[]", "[1,2]", "\"str\"", "42", "null",
                         "{", R"({"apiVersion":"admission.k8s.io/v1"})", std::string(100000, '['),
                         std::string(100000, '{'),
                         "{\"a\":" + std::string(70, '[') + std::string(70, ']') + "}");
    CAPTURE(body.substr(0, 80));
    auto r = decode_review(body);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::parse_error);
  }
  SECTION("field-level defects") {
    struct Case {
      const char* pointer;  // JSON pointer to replace
      const char* value;    // JSON value, or "DELETE"
      const char* expect;   // substring of the message
    };
    auto c = GENERATE(values<Case>({
        {"/apiVersion", R"("admission.k8s.io/v1beta1")", "v1beta1"},
        {"/apiVersion", "DELETE", "apiVersion"},
        {"/kind", R"("Review")", "kind"},
        {"/request", "DELETE", "request"},
        {"/request", "[]", "request"},
        {"/request/uid", "DELETE", "uid"},
        {"/request/uid", R"("")", "uid"},
        {"/request/uid", "7", "uid"},
        {"/request/kind", "DELETE", "request.kind"},
        {"/request/kind/kind", "3", "request.kind.kind"},
        {"/request/operation", R"("PATCH")", "operation"},
        {"/request/operation", "DELETE", "operation"},
        {"/request/dryRun", R"("yes")", "dryRun"},
        {"/request/object", "null", "request.object"},
        {"/request/object", "DELETE", "request.object"},
        {"/request/object/spec", "DELETE", "spec"},
        {"/request/object/spec/containers", R"({"image":"x"})", "not an array"},
        {"/request/object/spec/containers/0", R"("nginx")", "not an object"},
        {"/request/object/spec/containers/0/image", "DELETE", "image"},
        {"/request/object/spec/containers/0/image", "42", "image"},
        {"/request/object/spec/containers/0/image", "1e999999", ""},
        {"/request/object/spec/containers/0/image", "null", "image"},
        {"/request/object/spec/containers/0/image", R"(["nginx"])", "image"},
        {"/request/object/spec/containers/0/image", R"("")", "image"},
        // An integer beyond 64 bits is refused as a whole (simdjson), wherever it stands: the API
        // server never writes one, and a clear parse error is what a body with one gets.
        {"/request/object/spec/containers/0/name", "12345678901234567890123456789", "number"},
        {"/request/object/metadata", R"({"n":123456789012345678901234567890})", "number"},
        {"/request/object/spec/initContainers", R"([{"name":"x"}])", "initContainers[0]"},
    }));
    CAPTURE(c.pointer, c.value);
    json doc = base_review();
    std::string body;
    if (std::string(c.value) == "DELETE") {
      json::json_pointer p(c.pointer);
      doc[p.parent_pointer()].erase(p.back());
      body = doc.dump();
    } else {
      // Splice the raw text in so that values nlohmann would not produce (1e999999) reach us.
      doc[json::json_pointer(c.pointer)] = "@@SPLICE@@";
      body = doc.dump();
      body.replace(body.find("\"@@SPLICE@@\""), 12, c.value);
    }
    auto r = decode_review(body);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Catch::Contains(c.expect));
  }
}

TEST_CASE("nesting is bounded while parsing", "[admission]") {
  // review > request > object > metadata > x: four levels above the nested value.
  auto with_nesting = [](int levels) {
    json doc = base_review();
    doc["request"]["object"]["metadata"]["x"] = "@@SPLICE@@";
    std::string body = doc.dump();
    body.replace(body.find("\"@@SPLICE@@\""), 12,
                 std::string(levels, '[') + std::string(levels, ']'));
    return decode_review(body);
  };
  CHECK(with_nesting(60).ok());
  auto deep = with_nesting(61);
  REQUIRE_FALSE(deep.ok());
  CHECK(deep.error().code == Errc::parse_error);
  CHECK_THAT(deep.error().message, Catch::Contains("deeper than 64"));
  // A hostile body of a million '[' (balanced or not) is refused, not recursed into.
  auto hostile = decode_review(std::string(1000000, '['));
  REQUIRE_FALSE(hostile.ok());
  CHECK(hostile.error().code == Errc::parse_error);
  auto balanced = decode_review(std::string(1000000, '[') + std::string(1000000, ']'));
  REQUIRE_FALSE(balanced.ok());
  CHECK_THAT(balanced.error().message, Catch::Contains("deeper than 64"));
}

TEST_CASE("a large review gets a parser of its own, and the next small one still parses",
          "[admission]") {
  json doc = base_review();
  doc["request"]["object"]["metadata"]["annotations"]["big"] = std::string(400 * 1024, 'a');
  auto big = decode_review(doc.dump());
  REQUIRE(big.ok());
  CHECK(big->images.size() == 1);
  auto small = decode_review(base_review().dump());
  REQUIRE(small.ok());
  CHECK(small->images.size() == 1);
}

TEST_CASE("container cap", "[admission]") {
  json doc = base_review();
  json list = json::array();
  for (int i = 0; i < 1001; ++i)
    list.push_back({{"name", "c"}, {"image", "a:" + std::to_string(i)}});
  doc["request"]["object"]["spec"]["containers"] = list;
  auto r = decode_review(doc.dump());
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);

  list.erase(list.begin());
  doc["request"]["object"]["spec"]["containers"] = list;
  auto ok = decode_review(doc.dump());
  REQUIRE(ok.ok());
  CHECK(ok->images.size() == 1000);
}

TEST_CASE("encode_response: allowed", "[admission]") {
  Response resp;
  resp.uid = "abc-123";
  resp.allowed = true;
  json out = json::parse(encode_response(resp));
  CHECK(out["apiVersion"] == "admission.k8s.io/v1");
  CHECK(out["kind"] == "AdmissionReview");
  CHECK(out["response"]["uid"] == "abc-123");
  CHECK(out["response"]["allowed"] == true);
  CHECK_FALSE(out["response"].contains("status"));
  CHECK_FALSE(out["response"].contains("warnings"));
  CHECK_FALSE(out["response"].contains("auditAnnotations"));
}

TEST_CASE("encode_response: a patch goes out base64-encoded as a JSONPatch", "[admission]") {
  using sigil::admission::encode_image_patch;
  using sigil::admission::ImagePatch;
  Response resp;
  resp.uid = "u-p";
  resp.allowed = true;
  resp.patch = encode_image_patch(
      {ImagePatch{"/spec/containers/0/image", "r/a:1", "r/a:1@sha256:" + std::string(64, 'a')},
       ImagePatch{"/spec/initContainers/1/image", "r/\"odd\"", "r/\"odd\"@x"}});
  json out = json::parse(encode_response(resp));
  const json& r = out["response"];
  CHECK(r["allowed"] == true);
  CHECK(r["patchType"] == "JSONPatch");
  auto raw = sigil::base64_decode(r["patch"].get<std::string>());
  REQUIRE(raw.ok());
  const json patch = json::parse(*raw);
  CHECK(patch == json::parse(R"([
    {"op":"test","path":"/spec/containers/0/image","value":"r/a:1"},
    {"op":"replace","path":"/spec/containers/0/image",
     "value":"r/a:1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
    {"op":"test","path":"/spec/initContainers/1/image","value":"r/\"odd\""},
    {"op":"replace","path":"/spec/initContainers/1/image","value":"r/\"odd\"@x"}])"));
  // Applied by an independent implementation, it rewrites exactly those fields.
  json object = json::parse(R"({"spec":{"containers":[{"image":"r/a:1"}],
      "initContainers":[{"image":"i"},{"image":"r/\"odd\""}]}})");
  json patched = object.patch(patch);
  CHECK(patched["spec"]["containers"][0]["image"] == "r/a:1@sha256:" + std::string(64, 'a'));
  CHECK(patched["spec"]["initContainers"][1]["image"] == "r/\"odd\"@x");
  CHECK(patched["spec"]["initContainers"][0]["image"] == "i");
  // A field that no longer holds what was verified: the test operation refuses the patch.
  object["spec"]["containers"][0]["image"] = "r/other:1";
  CHECK_THROWS(object.patch(patch));
  // No patch when denied, and none when empty.
  resp.allowed = false;
  CHECK_FALSE(json::parse(encode_response(resp))["response"].contains("patch"));
  resp.allowed = true;
  resp.patch.clear();
  CHECK_FALSE(json::parse(encode_response(resp))["response"].contains("patchType"));
  CHECK(encode_image_patch({}) == "[]");
}

TEST_CASE("encode_response: denied with warnings and annotations", "[admission]") {
  Response resp;
  resp.uid = "u\"quote";
  resp.allowed = false;
  resp.message = "image x is not signed: \xff bad utf8 \"quoted\"";
  resp.warnings = {"w1", "w2"};
  resp.audit_annotations = {{"sigil.dev/verdict", "denied"}};
  json out = json::parse(encode_response(resp));
  const json& r = out["response"];
  CHECK(r["uid"] == "u\"quote");
  CHECK(r["allowed"] == false);
  CHECK(r["status"]["code"] == 403);
  CHECK(r["status"]["reason"] == "Forbidden");
  CHECK_THAT(r["status"]["message"].get<std::string>(), Catch::Contains("\"quoted\""));
  CHECK(r["warnings"] == json::array({"w1", "w2"}));
  CHECK(r["auditAnnotations"]["sigil.dev/verdict"] == "denied");

  // Round trip: the response uid is the request uid.
  auto req = decode_review(read_data("pod-create-kubectl-run.json"));
  REQUIRE(req.ok());
  Response back;
  back.uid = req->uid;
  back.allowed = true;
  back.warnings = {"warned"};
  json echoed = json::parse(encode_response(back));
  CHECK(echoed["response"]["uid"] == req->uid);
  CHECK(echoed["response"]["warnings"][0] == "warned");
}

namespace {

// True when s is well-formed UTF-8, as nlohmann's strict serializer judges it.
bool valid_utf8(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

// Encodes s in every string slot of a denied response and parses the result strictly.
json encode_everywhere(const std::string& s) {
  Response resp;
  resp.uid = s;
  resp.allowed = false;
  resp.code = 403;
  resp.reason = s;
  resp.message = s;
  resp.warnings = {s, "after"};
  resp.audit_annotations = {{s, s}, {"z", "last"}};
  return json::parse(encode_response(resp));  // throws on invalid JSON or invalid UTF-8
}

}  // namespace

TEST_CASE("encode_response: valid JSON in valid UTF-8 whatever the strings hold", "[admission]") {
  std::vector<std::string> cases = {
      "",
      "plain",
      "quote \" backslash \\ slash /",
      std::string("nul \0 inside", 12),
      "\x01\x02\x1f\x7f\b\f\n\r\t",
      "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91 \xf4\x8f\xbf\xbf",  // 2-, 3-, 4-byte, U+10FFFF
      "\x80",                                                     // lone continuation byte
      "\xc0\x80 \xc1\xbf",                                        // overlong NUL, overlong '?'
      "\xe0\x80\x80 \xe0\x9f\xbf",                                // overlong 3-byte
      "\xed\xa0\x80 \xed\xbf\xbf",                                // UTF-16 surrogates
      "\xf0\x80\x80\x80 \xf4\x90\x80\x80 \xf5\x80\x80\x80",       // overlong, > U+10FFFF
      "\xfe\xff",
      "truncated \xe2\x82",
      "truncated \xf0\x9f\x94",
      "\xe2\x82\x22 quote after a cut sequence",
  };
  // Random bytes too (fixed seed, so a failure reproduces).
  uint32_t x = 2463534242u;
  for (int n = 0; n < 2000; ++n) {
    std::string r(static_cast<size_t>(n % 24), '\0');
    for (auto& ch : r) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      ch = static_cast<char>(x & 0xff);
    }
    cases.push_back(r);
  }
  for (const auto& s : cases) {
    CAPTURE(json(s).dump(-1, ' ', true, json::error_handler_t::replace));
    json out;
    REQUIRE_NOTHROW(out = encode_everywhere(s));
    const json& r = out["response"];
    REQUIRE(r["allowed"] == false);
    REQUIRE(r["status"]["code"] == 403);
    REQUIRE(r["warnings"].size() == 2);
    REQUIRE(r["warnings"][1] == "after");
    REQUIRE(r["auditAnnotations"]["z"] == "last");
    if (valid_utf8(s)) {
      // Valid text survives exactly, in every slot.
      CHECK(r["uid"] == s);
      CHECK(r["status"]["message"] == s);
      CHECK(r["warnings"][0] == s);
      CHECK(r["auditAnnotations"][s] == s);
      if (!s.empty()) CHECK(r["status"]["reason"] == s);
    } else {
      // Invalid bytes become U+FFFD; what is left is never longer than 3 bytes per input byte.
      const auto msg = r["status"]["message"].get<std::string>();
      CHECK(msg.find("\xef\xbf\xbd") != std::string::npos);
      CHECK(msg.size() <= 3 * s.size());
    }
  }
}

TEST_CASE("pull credentials the kubelet would use are read from the pod spec", "[admission]") {
  json doc = base_review();
  auto& spec = doc["request"]["object"]["spec"];
  spec["containers"] = json::parse(R"([{"name":"a","image":"r/a:1"}])");
  auto plain = decode_review(doc.dump());
  REQUIRE(plain.ok());
  CHECK(plain->service_account == "default");
  CHECK(plain->image_pull_secrets.empty());
  spec["serviceAccountName"] = "builder";
  spec["imagePullSecrets"] = json::parse(R"([{"name":"acr"},{"name":""},{},{"name":"hub"}])");
  auto r = decode_review(doc.dump());
  REQUIRE(r.ok());
  CHECK(r->service_account == "builder");
  CHECK(r->image_pull_secrets == std::vector<std::string>{"acr", "hub"});
  spec["imagePullSecrets"] = "acr";
  CHECK_FALSE(decode_review(doc.dump()).ok());
}

TEST_CASE("sigil.dev objects are handed over whole for policy validation", "[admission]") {
  json doc = base_review();
  doc["request"]["kind"] = {
      {"group", "sigil.dev"}, {"version", "v1alpha1"}, {"kind", "ClusterImagePolicy"}};
  doc["request"]["resource"] = {
      {"group", "sigil.dev"}, {"version", "v1alpha1"}, {"resource", "clusterimagepolicies"}};
  doc["request"]["object"] = json::parse(
      R"({"apiVersion":"sigil.dev/v1alpha1","kind":"ClusterImagePolicy","metadata":{"name":"p"},"spec":{}})");
  auto r = decode_review(doc.dump());
  REQUIRE(r.ok());
  CHECK_FALSE(r->judged);
  CHECK(json::parse(r->object_json) == doc["request"]["object"]);
  doc["request"]["operation"] = "DELETE";
  auto del = decode_review(doc.dump());
  REQUIRE(del.ok());
  CHECK(del->object_json.empty());
  doc["request"]["operation"] = "CREATE";
  doc["request"]["object"] = nullptr;
  CHECK_FALSE(decode_review(doc.dump()).ok());
}

TEST_CASE("the object's uid and controller ownerReference are read for Events, leniently",
          "[admission]") {
  auto r = decode_review(read_data("pod-create-by-controller.json"));
  REQUIRE(r.ok());
  CHECK(r->version == "v1");
  CHECK(r->controller.kind == "ReplicaSet");
  CHECK(r->controller.api_version == "apps/v1");
  CHECK(r->controller.name == "myapp-7d9c8b5f4");
  CHECK(r->controller.uid == "6f1c5a8e-8b1e-4d3a-9d43-2f0b8c1e7a11");

  json doc = base_review();
  auto& md = doc["request"]["object"]["metadata"];
  md["uid"] = "pod-uid-1";
  md["ownerReferences"] = json::array(
      {{{"apiVersion", "v1"}, {"kind", "Node"}, {"name", "n1"}},  // not the controller
       {{"apiVersion", "batch/v1"}, {"kind", "Job"}, {"name", "j"}, {"controller", true}}});
  r = decode_review(doc.dump());
  REQUIRE(r.ok());
  CHECK(r->object_uid == "pod-uid-1");
  CHECK(r->controller.kind == "Job");
  CHECK(r->controller.uid.empty());

  // Malformed metadata never fails the review: no controller is all it means.
  auto bad = GENERATE(json("not a list"), json::array({1, "x"}),
                      json::array({{{"kind", "ReplicaSet"}, {"name", "r"}, {"controller", "yes"}}}),
                      json::array({{{"kind", 5}, {"name", "r"}, {"controller", true}}}));
  md["ownerReferences"] = bad;
  md["uid"] = 42;
  r = decode_review(doc.dump());
  REQUIRE(r.ok());
  CHECK(r->controller.name.empty());
  CHECK(r->object_uid.empty());
  CHECK(r->images.size() == 1);
}

// The text of doc with `extra` spliced in right after the opening brace of the object that the
// first occurrence of `anchor` opens (anchor ends with '{').
std::string spliced(const json& doc, const std::string& anchor, const std::string& extra) {
  std::string body = doc.dump();
  const size_t at = body.find(anchor);
  REQUIRE(at != std::string::npos);
  return body.insert(at + anchor.size(), extra);
}

TEST_CASE("a key sigil reads, named twice in one object, is refused", "[admission]") {
  // Go's decoder (the API server's, and the kubelet's) reads the last of a repeated key; a
  // lookup that stops at the first would read the other one. So a body in which two readers
  // could see different images, namespaces or specs is refused, never judged by one reading.
  json doc = base_review();
  doc["request"]["object"]["metadata"] = {{"name", "p"}, {"deletionTimestamp", nullptr}};
  doc["request"]["object"]["spec"]["imagePullSecrets"] = {{{"name", "acr"}}};
  doc["request"]["object"]["spec"]["serviceAccountName"] = "app";
  doc["request"]["object"]["spec"]["volumes"] = {
      {{"name", "v"}, {"image", {{"reference", "data:1"}}}}};
  REQUIRE(decode_review(doc.dump()).ok());
  struct Case {
    const char* anchor;  // where the repeat is spliced in
    const char* extra;   // the repeated member, first
    const char* where;   // the refusal names the object and the key
  };
  auto c = GENERATE(values<Case>({
      {R"({)", R"("kind":"AdmissionReview",)", R"(review: duplicate key "kind")"},
      {R"("request":{)", R"("uid":"other",)", R"(request: duplicate key "uid")"},
      {R"("request":{)", R"("namespace":"kube-system",)", R"(request: duplicate key "namespace")"},
      {R"("request":{)", R"("object":{"spec":{"containers":[]}},)",
       R"(request: duplicate key "object")"},
      {R"("kind":{)", R"("kind":"ConfigMap",)", R"(request.kind: duplicate key "kind")"},
      {R"("resource":{)", R"("resource":"configmaps",)",
       R"(request.resource: duplicate key "resource")"},
      // The attack's shape: the signed image first, the one the kubelet would run last.
      {R"("object":{)", R"("spec":{"containers":[{"name":"app","image":"signed:1"}]},)",
       R"(request.object: duplicate key "spec")"},
      {R"("containers":[{)", R"("image":"signed:1",)",
       R"(spec.containers[0]: duplicate key "image")"},
      // An escaped key is the same key once unescaped, for Go as for simdjson.
      {R"("containers":[{)", R"("im\u0061ge":"signed:1",)",
       R"(spec.containers[0]: duplicate key "image")"},
      {R"("containers":[{)", R"("name":"decoy",)", R"(spec.containers[0]: duplicate key "name")"},
      {R"("spec":{)", R"("containers":[],)", R"(request.object.spec: duplicate key "containers")"},
      {R"("spec":{)", R"("serviceAccountName":"builder",)",
       R"(request.object.spec: duplicate key "serviceAccountName")"},
      {R"("volumes":[{)", R"("image":null,)", R"(spec.volumes[0]: duplicate key "image")"},
      {R"("volumes":[{"image":{)", R"("reference":"signed:1",)",
       R"(spec.volumes[0].image: duplicate key "reference")"},
      {R"("imagePullSecrets":[{)", R"("name":"other",)",
       R"(request.object.spec.imagePullSecrets[0]: duplicate key "name")"},
      {R"("metadata":{)", R"("deletionTimestamp":"2026-01-02T03:04:05Z",)",
       R"(request.object.metadata: duplicate key "deletionTimestamp")"},
      {R"("object":{)", R"("metadata":{},)", R"(request.object: duplicate key "metadata")"},
  }));
  CAPTURE(c.anchor, c.extra);
  // The spliced member comes first, before the one of the same name already there.
  const std::string body = spliced(doc, c.anchor, c.extra);
  auto r = decode_review(body);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::parse_error);
  CHECK(r.error().message == std::string("AdmissionReview: ") + c.where);
}

TEST_CASE("a pod template's repeated step is refused with the path to it", "[admission]") {
  json doc = base_review();
  doc["request"]["kind"] = {{"group", "apps"}, {"version", "v1"}, {"kind", "Deployment"}};
  doc["request"]["resource"] = {{"group", "apps"}, {"version", "v1"}, {"resource", "deployments"}};
  doc["request"]["object"] = {
      {"kind", "Deployment"},
      {"spec", {{"template", {{"spec", {{"containers", {{{"name", "a"}, {"image", "a:1"}}}}}}}}}}};
  REQUIRE(decode_review(doc.dump()).ok());
  auto r = decode_review(spliced(doc, R"("template":{)", R"("spec":{"containers":[]},)"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message ==
        R"(AdmissionReview: request.object.spec.template: duplicate key "spec")");
}

TEST_CASE("repeated keys sigil does not read, and repeats in oldObject and ownerReferences",
          "[admission]") {
  SECTION("a repeat in a member sigil skips is the API server's business") {
    json doc = base_review();
    doc["request"]["object"]["metadata"] = {{"labels", {{"app", "x"}}}};
    auto r = decode_review(spliced(doc, R"("labels":{)", R"("app":"y",)"));
    REQUIRE(r.ok());
    CHECK(images_of(*r) == std::vector<std::string>{"nginx:1.25"});
    r = decode_review(spliced(doc, R"("containers":[{)", R"("ports":[],)"));
    REQUIRE(r.ok());
  }
  SECTION("oldObject with a repeat: no image counts as unchanged") {
    json upd = pod_update(R"({"containers":[{"name":"a","image":"a:1"}]})",
                          R"({"containers":[{"name":"a","image":"a:1"}]})");
    auto plain = decode_review(upd.dump());
    REQUIRE(plain.ok());
    CHECK(new_pointers(*plain).empty());
    // A repeated step on the way to the old spec, and a repeated list in it.
    auto extra = GENERATE(as<std::pair<std::string, std::string>>{},
                          std::make_pair(R"("oldObject":{)", R"("spec":{"containers":[]},)"),
                          std::make_pair(R"("oldObject":{"apiVersion":"v1","kind":"Pod","spec":{)",
                                         R"("containers":[],)"));
    CAPTURE(extra.first);
    auto r = decode_review(spliced(upd, extra.first, extra.second));
    REQUIRE(r.ok());
    CHECK_FALSE(r->has_old_images);
    CHECK(new_pointers(*r) == std::vector<std::string>{"/spec/containers/0/image"});
  }
  SECTION("an ownerReference names the controller for Events only: read leniently") {
    json doc = base_review();
    doc["request"]["object"]["metadata"] = {{"ownerReferences",
                                             {{{"apiVersion", "apps/v1"},
                                               {"kind", "ReplicaSet"},
                                               {"name", "r"},
                                               {"controller", true}}}}};
    auto r = decode_review(spliced(doc, R"("ownerReferences":[{)", R"("name":"other",)"));
    REQUIRE(r.ok());
    CHECK(r->images.size() == 1);
  }
}
