#include <string>

#include <catch2/catch.hpp>

#include "oci/manifest.hpp"

using sigil::Errc;
using sigil::oci::parse_manifest;
namespace media = sigil::oci::media;

namespace {

const std::string kH1 = "4f2a0e3b5d6c7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
const std::string kH2 = "a6b7c8d9e0f1a2b4f2a0e3b5d6c7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5";
const std::string kD1 = "sha256:" + kH1;
const std::string kD2 = "sha256:" + kH2;

// The shape cosign writes for a legacy `sha256-<hex>.sig` tag (sigstore-formats.md 1.1).
const std::string kCosignSig = R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {
    "mediaType": "application/vnd.oci.image.config.v1+json",
    "size": 233,
    "digest": ")" + kD1 + R"("
  },
  "layers": [
    {
      "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
      "size": 239,
      "digest": ")" + kD2 + R"(",
      "annotations": {
        "dev.cosignproject.cosign/signature": "MEUCIQDx1zq3yRBlU8mdO6yQ+4rqYB0tDyiX2K1Rm8LZLkHGzgIgYm1Vj0o=",
        "dev.sigstore.cosign/bundle": "{\"SignedEntryTimestamp\":\"MEUCIA==\",\"Payload\":{\"body\":\"e30=\",\"integratedTime\":1795536205,\"logIndex\":4242424,\"logID\":\"c0d2\"}}",
        "dev.sigstore.cosign/certificate": "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
      }
    }
  ]
})";

std::string oci_index(const std::string& extra = "") {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",)" + extra +
         R"("manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7143,)"
         R"("digest":")" +
         kD1 +
         R"(","platform":{"architecture":"amd64","os":"linux"}},)"
         R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","size":7682,"digest":")" +
         kD2 + R"(","platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]})";
}

const std::string kDockerV2 =
    R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",)"
    R"("config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7023,)"
    R"("digest":")" +
    kD1 +
    R"("},"layers":[)"
    R"({"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":32654,"digest":")" +
    kD2 +
    R"("},{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":16724,)"
    R"("digest":")" +
    kD1 + R"("}]})";

const std::string kDockerList =
    R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",)"
    R"("manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json",)"
    R"("size":7143,"digest":")" +
    kD1 + R"(","platform":{"architecture":"ppc64le","os":"linux"}}]})";

// A manifest whose config/layers/subject are filled in by the caller.
std::string image(const std::string& config, const std::string& layers,
                  const std::string& extra = "") {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)" + extra +
         R"("config":)" + config + R"(,"layers":)" + layers + "}";
}

std::string desc(const std::string& size = "10", const std::string& digest = kD1,
                 const std::string& extra = "") {
  return R"({"mediaType":"application/vnd.oci.image.layer.v1.tar","size":)" + size +
         R"(,"digest":")" + digest + "\"" + extra + "}";
}

}  // namespace

TEST_CASE("parse_manifest reads a cosign signature manifest", "[oci][manifest]") {
  const auto m = parse_manifest(kCosignSig, "application/vnd.oci.image.manifest.v1+json");
  REQUIRE(m.ok());
  CHECK(m->schema_version == 2);
  CHECK(m->media_type == media::kOciManifest);
  CHECK_FALSE(m->is_index);
  REQUIRE(m->config.has_value());
  CHECK(m->config->digest == kD1);
  CHECK(m->config->size == 233);
  REQUIRE(m->layers.size() == 1);
  const auto& l = m->layers[0];
  CHECK(l.media_type == media::kCosignSimpleSigning);
  CHECK(l.digest == kD2);
  CHECK(l.size == 239);
  CHECK(l.annotations.at("dev.cosignproject.cosign/signature") ==
        "MEUCIQDx1zq3yRBlU8mdO6yQ+4rqYB0tDyiX2K1Rm8LZLkHGzgIgYm1Vj0o=");
  CHECK(l.annotations.at("dev.sigstore.cosign/certificate").starts_with("-----BEGIN"));
  CHECK(l.annotations.count("dev.sigstore.cosign/bundle") == 1);
  CHECK(m->manifests.empty());
  CHECK_FALSE(m->subject.has_value());
}

TEST_CASE("parse_manifest reads indexes and Docker types", "[oci][manifest]") {
  auto m = parse_manifest(oci_index());
  REQUIRE(m.ok());
  CHECK(m->is_index);
  CHECK(m->media_type == media::kOciIndex);
  REQUIRE(m->manifests.size() == 2);
  CHECK(m->manifests[0].digest == kD1);
  CHECK(m->manifests[1].size == 7682);
  CHECK_FALSE(m->config.has_value());

  m = parse_manifest(kDockerV2, "application/vnd.docker.distribution.manifest.v2+json");
  REQUIRE(m.ok());
  CHECK_FALSE(m->is_index);
  CHECK(m->media_type == media::kDockerManifest);
  CHECK(m->layers.size() == 2);

  m = parse_manifest(kDockerList);
  REQUIRE(m.ok());
  CHECK(m->is_index);
  CHECK(m->media_type == media::kDockerManifestList);
  CHECK(m->manifests.size() == 1);
}

TEST_CASE("parse_manifest takes the media type from Content-Type when the body omits it",
          "[oci][manifest]") {
  const std::string body = R"({"schemaVersion":2,"config":)" + desc() + R"(,"layers":[]})";
  auto m = parse_manifest(body, "application/vnd.docker.distribution.manifest.v2+json");
  REQUIRE(m.ok());
  CHECK(m->media_type == media::kDockerManifest);

  m = parse_manifest(body, "Application/VND.OCI.image.manifest.v1+json; charset=utf-8");
  REQUIRE(m.ok());
  CHECK(m->media_type == media::kOciManifest);

  // Neither: inferred from the shape (OCI 1.0 made mediaType optional).
  m = parse_manifest(body);
  REQUIRE(m.ok());
  CHECK(m->media_type == media::kOciManifest);
  const std::string idx = R"({"schemaVersion":2,"manifests":[]})";
  m = parse_manifest(idx, "application/json");
  REQUIRE(m.ok());
  CHECK(m->is_index);
  CHECK(m->media_type == media::kOciIndex);
}

TEST_CASE("parse_manifest reads subject, artifactType and annotations", "[oci][manifest]") {
  const std::string body =
      image(desc("2", kD1, R"(,"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json")"),
            "[" + desc() + "]",
            R"("artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json",)"
            R"("annotations":{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"},)"
            R"("subject":)" +
                desc("1234", kD2) + R"(,"unknownField":{"x":[1,2,3]},)");
  const auto m = parse_manifest(body);
  REQUIRE(m.ok());
  REQUIRE(m->subject.has_value());
  CHECK(m->subject->digest == kD2);
  CHECK(m->subject->size == 1234);
  CHECK(m->artifact_type == "application/vnd.dev.sigstore.bundle.v0.3+json");
  CHECK(m->config->artifact_type == "application/vnd.dev.cosign.artifact.sig.v1+json");
  CHECK(m->annotations.at("org.opencontainers.image.created") == "2024-01-01T00:00:00Z");
}

TEST_CASE("held_bytes counts what a parse holds, annotations above all", "[oci][manifest]") {
  // `"kN":"",` is about 9 bytes of JSON, and a map node of over 100 once parsed: a caller that
  // charged a kept manifest by its body would hold ten times what it counted.
  std::string annotations;
  constexpr int kEntries = 50000;
  for (int i = 0; i < kEntries; ++i) {
    if (!annotations.empty()) annotations += ",";
    annotations += "\"k" + std::to_string(i) + "\":\"\"";
  }
  const std::string body =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
      R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:)" +
      std::string(64, 'c') +
      R"("},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":2,)"
      R"("digest":"sha256:)" +
      std::string(64, 'd') + R"(","annotations":{)" + annotations + "}}]}";
  auto m = parse_manifest(body);
  REQUIRE(m.ok());
  REQUIRE(m->layers.size() == 1);
  CHECK(m->layers[0].annotations.size() == size_t{kEntries});
  CHECK(held_bytes(*m) >= uint64_t{kEntries} * 100);
  CHECK(held_bytes(*m) > 8 * body.size());
  // A plain manifest holds about what it is.
  auto small = parse_manifest(
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":)"
      R"({"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:)" +
      std::string(64, 'c') + R"("},"layers":[]})");
  REQUIRE(small.ok());
  CHECK(held_bytes(*small) < 2048);
}

TEST_CASE("parse_manifest accepts size boundaries", "[oci][manifest]") {
  auto m = parse_manifest(image(desc("0"), "[]"));
  REQUIRE(m.ok());
  CHECK(m->config->size == 0);
  m = parse_manifest(image(desc("9007199254740992"), "[]"));  // 2^53
  REQUIRE(m.ok());
  CHECK(m->config->size == 9007199254740992);
  // sha512 digests are valid descriptors
  m = parse_manifest(image(desc("1", "sha512:" + kH1 + kH2), "[]"));
  REQUIRE(m.ok());
}

TEST_CASE("parse_manifest rejects malformed manifests", "[oci][manifest]") {
  struct Bad {
    std::string name, body, content_type;
  };
  const auto c = GENERATE_REF(values<Bad>({
      {"empty", "", ""},
      {"not json", "schemaVersion: 2", ""},
      {"truncated", kCosignSig.substr(0, kCosignSig.size() / 2), ""},
      {"trailing garbage", kDockerV2 + "x", ""},
      {"array", "[]", ""},
      {"string", "\"x\"", ""},
      {"null", "null", ""},
      {"invalid utf-8", R"({"schemaVersion":2,"x":")" + std::string("\xff\xfe") + R"("})", ""},
      {"no schemaVersion", R"({"config":)" + desc() + R"(,"layers":[]})", ""},
      {"schemaVersion 1", R"({"schemaVersion":1,"config":)" + desc() + R"(,"layers":[]})", ""},
      {"schemaVersion string", R"({"schemaVersion":"2","config":)" + desc() + R"(,"layers":[]})",
       ""},
      {"schemaVersion float", R"({"schemaVersion":2.5,"config":)" + desc() + R"(,"layers":[]})",
       ""},
      {"mediaType not string",
       R"({"schemaVersion":2,"mediaType":7,"config":)" + desc() + R"(,"layers":[]})", ""},
      {"unknown mediaType",
       R"({"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json",)"
       R"("config":)" +
           desc() + R"(,"layers":[]})",
       ""},
      {"unknown content type", R"({"schemaVersion":2,"config":)" + desc() + R"(,"layers":[]})",
       "application/vnd.example+json"},
      {"mediaType differs from Content-Type", kCosignSig,
       "application/vnd.docker.distribution.manifest.v2+json"},
      {"index body, manifest header", oci_index(), "application/vnd.oci.image.manifest.v1+json"},
      {"list body, index header", kDockerList, "application/vnd.oci.image.index.v1+json"},
      {"missing config", R"({"schemaVersion":2,"layers":[]})", ""},
      {"missing layers", R"({"schemaVersion":2,"config":)" + desc() + "}", ""},
      {"layers not array", image(desc(), desc()), ""},
      {"config not object", image("[]", "[]"), ""},
      {"index without manifests",
       R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"})", ""},
      {"manifests not array",
       R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",)"
       R"("manifests":{}})",
       ""},
      // CVE-2021-41190: a document that is both an index and an image.
      {"ambiguous both", image(desc(), "[]", R"("manifests":[],)"), ""},
      {"ambiguous no mediaType",
       R"({"schemaVersion":2,"manifests":[],"config":)" + desc() + R"(,"layers":[]})", ""},
      {"ambiguous index with layers", oci_index(R"("layers":[],)"), ""},
      {"ambiguous index type with config",
       R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":)" +
           desc() + "}",
       ""},
      // descriptors
      {"negative size", image(desc("-1"), "[]"), ""},
      {"float size", image(desc("1.5"), "[]"), ""},
      {"exp size", image(desc("1e3"), "[]"), ""},
      {"string size", image(desc("\"10\""), "[]"), ""},
      {"null size", image(desc("null"), "[]"), ""},
      {"size above 2^53", image(desc("9007199254740993"), "[]"), ""},
      {"size 2^64", image(desc("18446744073709551616"), "[]"), ""},
      {"missing size", image(R"({"mediaType":"a/b","digest":")" + kD1 + R"("})", "[]"), ""},
      {"missing digest", image(R"({"mediaType":"a/b","size":1})", "[]"), ""},
      {"missing descriptor mediaType", image(R"({"size":1,"digest":")" + kD1 + R"("})", "[]"), ""},
      {"empty descriptor mediaType",
       image(R"({"mediaType":"","size":1,"digest":")" + kD1 + R"("})", "[]"), ""},
      {"short digest", image(desc("1", "sha256:abc"), "[]"), ""},
      {"uppercase digest", image(desc("1", "sha256:" + std::string(64, 'A')), "[]"), ""},
      {"unknown algorithm", image(desc("1", "md5:" + kH1.substr(0, 32)), "[]"), ""},
      {"digest no algorithm", image(desc("1", kH1), "[]"), ""},
      {"bad layer digest", image(desc(), "[" + desc() + "," + desc("1", "sha256:zz") + "]"), ""},
      {"bad layer size", image(desc(), "[" + desc("-5") + "]"), ""},
      {"bad index child digest",
       R"({"schemaVersion":2,"manifests":[)" + desc("1", "sha256:" + kH1 + "00") + "]}", ""},
      {"layer not object", image(desc(), "[1]"), ""},
      {"annotation value number", image(desc("1", kD1, R"(,"annotations":{"a":1})"), "[]"), ""},
      {"annotation value object",
       image(desc(), "[" + desc("1", kD1, R"(,"annotations":{"a":{}})") + "]"), ""},
      {"annotations array", image(desc("1", kD1, R"(,"annotations":["a"])"), "[]"), ""},
      {"top annotations non-string", image(desc(), "[]", R"("annotations":{"a":true},)"), ""},
      {"artifactType not string", image(desc("1", kD1, R"(,"artifactType":5)"), "[]"), ""},
      {"bad subject digest", image(desc(), "[]", R"("subject":)" + desc("1", "sha256:0") + ","),
       ""},
      {"subject not object", image(desc(), "[]", R"("subject":"x",)"), ""},
      {"deep nesting",
       image(desc(), "[]", R"("x":)" + std::string(200, '[') + std::string(200, ']') + ","), ""},
  }));
  CAPTURE(c.name);
  const auto m = parse_manifest(c.body, c.content_type);
  REQUIRE_FALSE(m.ok());
  CHECK_FALSE(m.error().message.empty());
}

TEST_CASE("parse_manifest caps descriptor lists and document size", "[oci][manifest]") {
  std::string layers = "[";
  for (int i = 0; i < 10000; ++i) layers += (i ? "," : "") + desc();
  auto m = parse_manifest(image(desc(), layers + "]"));
  REQUIRE(m.ok());
  CHECK(m->layers.size() == 10000);
  m = parse_manifest(image(desc(), layers + "," + desc() + "]"));
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == Errc::too_large);

  const std::string huge =
      image(desc(), "[]", R"("pad":")" + std::string(4 * 1024 * 1024, 'a') + "\",");
  m = parse_manifest(huge);
  REQUIRE_FALSE(m.ok());
  CHECK(m.error().code == Errc::too_large);
}

TEST_CASE("parse_manifest mismatch error names both types", "[oci][manifest]") {
  const auto m = parse_manifest(kCosignSig, "application/vnd.oci.image.index.v1+json");
  REQUIRE_FALSE(m.ok());
  CHECK_THAT(m.error().message, Catch::Contains("application/vnd.oci.image.index.v1+json"));
  CHECK_THAT(m.error().message, Catch::Contains("application/vnd.oci.image.manifest.v1+json"));
  // A generic Content-Type neither defines nor contradicts the body's type.
  CHECK(parse_manifest(kCosignSig, "application/octet-stream").ok());
}

TEST_CASE("distribution_error_codes tells a routed 404 from a missing route", "[oci][manifest]") {
  using sigil::oci::distribution_error_codes;
  CHECK(distribution_error_codes(
            R"({"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known"}]})") ==
        std::vector<std::string>{"NAME_UNKNOWN"});
  CHECK(distribution_error_codes(
            R"({"errors":[{"code":"MANIFEST_UNKNOWN"},{"code":"DENIED","detail":[1,2]}]})") ==
        std::vector<std::string>{"MANIFEST_UNKNOWN", "DENIED"});
  // Not a distribution error document: no codes.
  CHECK(distribution_error_codes("404 page not found\n").empty());
  CHECK(distribution_error_codes("<html>nginx</html>").empty());
  CHECK(distribution_error_codes("").empty());
  CHECK(distribution_error_codes(R"({"errors":"NAME_UNKNOWN"})").empty());
  CHECK(distribution_error_codes(R"({"errors":[{"code":""},{"code":7},{"code":"A B"}]})").empty());
  CHECK(distribution_error_codes(R"([{"code":"NAME_UNKNOWN"}])").empty());
  std::string deep = R"({"errors":[{"code":"X","detail":)" + std::string(5000, '[') +
                     std::string(5000, ']') + "}]}";
  CHECK(distribution_error_codes(deep).empty());
}
