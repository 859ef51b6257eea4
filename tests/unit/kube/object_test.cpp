// The pure wire-format parsers: objects, lists, metav1.Status, Secrets, ServiceAccounts, paths.
#include <catch2/catch.hpp>

#include "kube/object.hpp"

using namespace sigil;
using namespace sigil::kube;

TEST_CASE("paths for core, group, namespaced and cluster-scoped resources") {
  CHECK(*collection_path(resources::secrets(), "team-a") == "/api/v1/namespaces/team-a/secrets");
  CHECK(*collection_path(resources::secrets(), "") == "/api/v1/secrets");
  CHECK(*collection_path(resources::cluster_image_policies(), "") ==
        "/apis/sigil.dev/v1alpha1/clusterimagepolicies");
  CHECK(*object_path(resources::cluster_image_policies(), "", "prod", "status") ==
        "/apis/sigil.dev/v1alpha1/clusterimagepolicies/prod/status");
  CHECK(*object_path(resources::image_policies(), "ns1", "p") ==
        "/apis/sigil.dev/v1alpha1/namespaces/ns1/imagepolicies/p");
  // Names that are not one safe path segment are refused or escaped.
  CHECK(object_path(resources::secrets(), "ns", "a/b").error().code == Errc::invalid_argument);
  CHECK(object_path(resources::secrets(), "ns", "..").error().code == Errc::invalid_argument);
  CHECK(object_path(resources::secrets(), "ns", "").error().code == Errc::invalid_argument);
  CHECK(object_path(resources::secrets(), "", "x").error().code == Errc::invalid_argument);
  CHECK(collection_path(resources::trust_roots(), "ns").error().code == Errc::invalid_argument);
  CHECK(*object_path(resources::secrets(), "ns", "a b?c") ==
        "/api/v1/namespaces/ns/secrets/a%20b%3Fc");
  CHECK(query_escape("app in (a,b)") == "app%20in%20%28a%2Cb%29");
}

TEST_CASE("object metadata is parsed and the JSON kept") {
  auto o = parse_object(
      R"J({"apiVersion":"sigil.dev/v1alpha1","kind":"ClusterImagePolicy","metadata":{"name":"prod",
      "uid":"u-1","resourceVersion":"42","generation":3},"spec":{"images":[{"glob":"**"}]}})J");
  REQUIRE(o.ok());
  CHECK(o->meta.name == "prod");
  CHECK(o->meta.namespace_.empty());
  CHECK(o->meta.uid == "u-1");
  CHECK(o->meta.resource_version == "42");
  CHECK(o->meta.generation == 3);
  CHECK(o->meta.key() == "prod");
  CHECK(o->json.find(R"("glob":"**")") != std::string::npos);
  auto n = parse_object(R"J({"metadata":{"name":"a","namespace":"ns"}})J");
  REQUIRE(n.ok());
  CHECK(n->meta.key() == "ns/a");
  CHECK(n->meta.generation == 0);
}

TEST_CASE("malformed objects are parse errors, never exceptions") {
  auto bad = GENERATE(
      as<std::string>{}, "", "null", "[]", "{", R"J({"metadata":5})J", R"J({"metadata":{}})J",
      R"J({"metadata":{"name":7}})J", R"J({"metadata":{"name":"a","generation":"1"}})J",
      R"J({"metadata":{"name":"a","generation":-1}})J", R"J({"metadata":{"name":"a/b"}})J",
      std::string(200, '[') + std::string(200, ']'));
  auto o = parse_object(bad);
  REQUIRE_FALSE(o.ok());
  CHECK(o.error().code == Errc::parse_error);
}

// A CR's spec may hold any JSON its author writes (preserve-unknown-fields): nesting past the
// cap is refused by name before anything recurses into it, and the cap itself is accepted.
TEST_CASE("an object nested past kMaxJsonDepth is refused; at the cap it parses") {
  auto nested = [](size_t depth) {
    // The object is one level; spec holds depth - 1 arrays, one in another.
    return R"({"metadata":{"name":"a"},"spec":)" + std::string(depth - 1, '[') +
           std::string(depth - 1, ']') + "}";
  };
  auto deep = parse_object(nested(kMaxJsonDepth + 1));
  REQUIRE_FALSE(deep.ok());
  CHECK(deep.error().code == Errc::parse_error);
  CHECK(deep.error().message.find("nested deeper than 100") != std::string::npos);
  auto at_cap = parse_object(nested(kMaxJsonDepth));
  INFO((at_cap ? std::string() : at_cap.error().message));
  CHECK(at_cap.ok());
}

TEST_CASE("lists carry resourceVersion, continue and items") {
  auto l = parse_object_list(
      R"J({"kind":"SecretList","metadata":{"resourceVersion":"900","continue":"tok"},
      "items":[{"metadata":{"name":"a","namespace":"n"}},{"metadata":{"name":"b","namespace":"n"}}]})J");
  REQUIRE(l.ok());
  CHECK(l->resource_version == "900");
  CHECK(l->continue_token == "tok");
  REQUIRE(l->items.size() == 2);
  CHECK(l->items[1].meta.key() == "n/b");
  auto empty = parse_object_list(R"J({"metadata":{"resourceVersion":"1"},"items":null})J");
  REQUIRE(empty.ok());
  CHECK(empty->items.empty());
  CHECK_FALSE(parse_object_list(R"J({"metadata":{}})J").ok());
  CHECK_FALSE(parse_object_list(R"J({"items":{}})J").ok());
  auto bad_item = parse_object_list(R"J({"items":[{"metadata":{"name":"a"}},{"metadata":{}}]})J");
  REQUIRE_FALSE(bad_item.ok());
  CHECK(bad_item.error().message.find("items[1]") != std::string::npos);
}

TEST_CASE("metav1.Status bodies become readable errors") {
  auto s = parse_status(
      R"J({"kind":"Status","apiVersion":"v1","status":"Failure","message":"secrets \"x\" is forbidden",
      "reason":"Forbidden","code":403})J");
  REQUIRE(s.ok());
  CHECK(s->code == 403);
  CHECK(s->describe() == "Forbidden: secrets \"x\" is forbidden");
  auto big = parse_status(
      R"J({"kind":"Status","code":504,"reason":"Timeout","details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}]}})J");
  REQUIRE(big.ok());
  CHECK(big->rv_too_large);
  CHECK_FALSE(parse_status("<html>").ok());
  CHECK_FALSE(parse_status(R"J({"kind":"Pod"})J").ok());
  // Control bytes from the server never reach a log line as they are.
  auto ctl = parse_status(R"J({"kind":"Status","code":500,"message":"a\nb\u001b[31m"})J");
  REQUIRE(ctl.ok());
  CHECK(ctl->message == "a?b?[31m");
}

TEST_CASE("secrets are decoded; errors name the key, never the value") {
  auto s = parse_secret(
      R"J({"metadata":{"name":"pull","namespace":"app"},"type":"kubernetes.io/dockerconfigjson",
      "data":{".dockerconfigjson":"eyJhdXRocyI6e319","empty":null}})J");
  REQUIRE(s.ok());
  CHECK(s->type == "kubernetes.io/dockerconfigjson");
  CHECK(s->data.at(".dockerconfigjson") == R"J({"auths":{}})J");
  CHECK(s->data.at("empty").empty());
  auto bad = parse_secret(
      R"J({"metadata":{"name":"k","namespace":"a"},"data":{"cosign.key":"c3VwZXJzZWNyZXQ*"}})J");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("cosign.key") != std::string::npos);
  CHECK(bad.error().message.find("c3VwZXJzZWNyZXQ") == std::string::npos);
  CHECK_FALSE(parse_secret(R"J({"metadata":{"name":"k"},"data":[]})J").ok());
}

TEST_CASE("service accounts list their imagePullSecrets in order") {
  auto sa = parse_service_account(
      R"J({"metadata":{"name":"default","namespace":"app"},"imagePullSecrets":[{"name":"a"},{"name":"b"},{}]})J");
  REQUIRE(sa.ok());
  CHECK(sa->image_pull_secrets == std::vector<std::string>{"a", "b"});
  auto none = parse_service_account(R"J({"metadata":{"name":"default","namespace":"app"}})J");
  REQUIRE(none.ok());
  CHECK(none->image_pull_secrets.empty());
  CHECK_FALSE(parse_service_account(R"J({"metadata":{"name":"d"},"imagePullSecrets":"a"})J").ok());
}
