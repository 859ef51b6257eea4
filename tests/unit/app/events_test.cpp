// app/events: which object a /validate decision's Event names, and when there is none.
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <string>

#include "app/config.hpp"
#include "app/events.hpp"

using namespace sigil;

namespace {

admission::Request pod(std::string operation) {
  admission::Request r;
  r.uid = "u";
  r.kind = "Pod";
  r.version = "v1";
  r.resource = "pods";
  r.operation = std::move(operation);
  r.namespace_ = "team-a";
  r.name = "web-5d9f-x7k2p";
  r.object_uid = "pod-uid";
  return r;
}

admission::Response denied() {
  admission::Response resp;
  resp.allowed = false;
  resp.message = "image r.example/app:1 is not admitted by policy prod: no signatures found";
  return resp;
}

}  // namespace

TEST_CASE("a denied CREATE with a controller: the Event names the controller and the Pod") {
  auto r = pod("CREATE");
  r.controller = {"apps/v1", "ReplicaSet", "web-5d9f", "rs-uid"};
  auto e = app::admission_event(r, denied(), {});
  REQUIRE(e);
  CHECK(e->involved.api_version == "apps/v1");
  CHECK(e->involved.kind == "ReplicaSet");
  CHECK(e->involved.namespace_ == "team-a");
  CHECK(e->involved.name == "web-5d9f");
  CHECK(e->involved.uid == "rs-uid");
  CHECK(e->reason == "ImageNotVerified");
  CHECK(e->type == "Warning");
  CHECK(e->message == "Pod web-5d9f-x7k2p denied: " + denied().message);
  CHECK(kube::validate_event(*e).ok());
}

TEST_CASE("a denied CREATE without controller names the object, without the uid it never gets") {
  auto r = pod("CREATE");
  r.kind = "Deployment";
  r.group = "apps";
  r.name = "web";
  auto e = app::admission_event(r, denied(), {});
  REQUIRE(e);
  CHECK(e->involved.api_version == "apps/v1");
  CHECK(e->involved.kind == "Deployment");
  CHECK(e->involved.name == "web");
  CHECK(e->involved.uid.empty());
  CHECK(e->message == denied().message);
}

TEST_CASE("a denied UPDATE names the object itself with its uid, even with a controller") {
  auto r = pod("UPDATE");
  r.controller = {"apps/v1", "ReplicaSet", "web-5d9f", "rs-uid"};
  auto e = app::admission_event(r, denied(), {});
  REQUIRE(e);
  CHECK(e->involved.kind == "Pod");
  CHECK(e->involved.uid == "pod-uid");
}

TEST_CASE("warned: the object with its uid; allowed without warning, or a dry run: no Event") {
  auto r = pod("CREATE");
  r.controller = {"apps/v1", "ReplicaSet", "web-5d9f", "rs-uid"};
  admission::Response ok;
  ok.allowed = true;
  verify::Verdict warned;
  warned.outcome = verify::Outcome::warned;
  warned.image = "r.example/app:1";
  auto e = app::admission_event(r, ok, {warned});
  REQUIRE(e);
  CHECK(e->reason == "ImageVerificationWarning");
  CHECK(e->involved.kind == "ReplicaSet");  // one per controller, not one per Pod
  CHECK(e->involved.uid == "rs-uid");
  CHECK(e->message.rfind("Pod web-5d9f-x7k2p admitted with a warning: ", 0) == 0);
  auto bare = r;
  bare.controller = {};
  e = app::admission_event(bare, ok, {warned});
  REQUIRE(e);
  CHECK(e->involved.kind == "Pod");
  CHECK(e->involved.uid == "pod-uid");  // it will exist: kubectl describe shows the Event
  CHECK_FALSE(e->message.empty());

  verify::Verdict allowed;
  allowed.outcome = verify::Outcome::allowed;
  CHECK_FALSE(app::admission_event(r, ok, {allowed}));
  r.dry_run = true;
  CHECK_FALSE(app::admission_event(r, denied(), {}));
  CHECK_FALSE(app::admission_event(r, ok, {warned}));
}

TEST_CASE("config: the events section loads; an unknown top-level setting is refused") {
  const std::string path = std::string(SIGIL_BINARY_DIR) + "/events_test_config.yaml";
  {
    std::ofstream f(path);
    f << "events:\n  enabled: true\n  interval: 30s\n";
  }
  app::Settings s;
  REQUIRE(app::load_config_file(path, s).ok());
  CHECK(s.events.enabled);
  CHECK(s.events.interval == std::chrono::seconds(30));
  {
    std::ofstream f(path);
    f << "event:\n  enabled: true\n";
  }
  auto st = app::load_config_file(path, s);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message.find("unknown setting \"event\"") != std::string::npos);
}
