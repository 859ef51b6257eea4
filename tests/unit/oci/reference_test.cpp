#include <string>

#include <catch2/catch.hpp>

#include "oci/reference.hpp"

using sigil::Errc;
using sigil::oci::api_host;
using sigil::oci::is_valid_digest;
using sigil::oci::parse_reference;
using sigil::oci::referrers_tag;
using sigil::oci::signature_tag;

namespace {

const std::string kHex64 = "9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0";
const std::string kSha256 = "sha256:" + kHex64;
const std::string kSha512 = "sha512:" + kHex64 + kHex64;

struct Valid {
  std::string input, registry, repository, tag, digest;
};

}  // namespace

TEST_CASE("parse_reference normalizes valid references", "[oci][reference]") {
  const auto c = GENERATE_REF(values<Valid>({
      // Docker Hub defaults
      {"ubuntu", "docker.io", "library/ubuntu", "latest", ""},
      {"ubuntu:latest", "docker.io", "library/ubuntu", "latest", ""},
      {"ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", ""},
      {"docker.io/library/ubuntu", "docker.io", "library/ubuntu", "latest", ""},
      {"docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", ""},
      {"index.docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", ""},
      {"index.docker.io/library/nginx:1.25", "docker.io", "library/nginx", "1.25", ""},
      {"library/nginx", "docker.io", "library/nginx", "latest", ""},
      {"foo/bar", "docker.io", "foo/bar", "latest", ""},
      {"foo/bar/baz:v1", "docker.io", "foo/bar/baz", "v1", ""},
      {"nginx@" + kSha256, "docker.io", "library/nginx", "", kSha256},
      {"nginx:1.25@" + kSha256, "docker.io", "library/nginx", "1.25", kSha256},
      // no '/' so no domain: "localhost:5000" is name localhost, tag 5000 (as distribution)
      {"localhost:5000", "docker.io", "library/localhost", "5000", ""},
      // domains
      {"localhost/foo", "localhost", "foo", "latest", ""},
      {"localhost:5000/foo", "localhost:5000", "foo", "latest", ""},
      {"localhost:5000/foo/bar:tag", "localhost:5000", "foo/bar", "tag", ""},
      {"127.0.0.1:5000/app:1", "127.0.0.1:5000", "app", "1", ""},
      {"[::1]:5000/foo:tag", "[::1]:5000", "foo", "tag", ""},
      {"[::1]/foo", "[::1]", "foo", "latest", ""},
      {"[2001:db8::1]:5443/a/b", "[2001:db8::1]:5443", "a/b", "latest", ""},
      {"myacr.azurecr.io/app:1.0@" + kSha256, "myacr.azurecr.io", "app", "1.0", kSha256},
      {"myacr.azurecr.io/team/app@" + kSha512, "myacr.azurecr.io", "team/app", "", kSha512},
      {"gcr.io/distroless/static:nonroot", "gcr.io", "distroless/static", "nonroot", ""},
      {"ghcr.io/sigstore/cosign/cosign:v2.2.0", "ghcr.io", "sigstore/cosign/cosign", "v2.2.0", ""},
      {"registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", ""},
      {"my-registry.example-1.com:65535/x", "my-registry.example-1.com:65535", "x", "latest", ""},
      {"a.b/c", "a.b", "c", "latest", ""},
      // an uppercase first component is a domain; hosts are lowercased
      {"Foo/bar", "Foo", "bar", "latest", ""},  // lowercasing would make it docker.io/foo
      {"LOCALHOST/bar", "localhost", "bar", "latest", ""},
      {"MyACR.AzureCR.io/app", "myacr.azurecr.io", "app", "latest", ""},
      {"INDEX.DOCKER.IO/library/nginx", "docker.io", "library/nginx", "latest", ""},
      // one origin, one name: the HTTPS default port and Docker Hub's other hosts
      {"myacr.azurecr.io:443/prod/app", "myacr.azurecr.io", "prod/app", "latest", ""},
      {"myacr.azurecr.io:0443/prod/app:v1", "myacr.azurecr.io", "prod/app", "v1", ""},
      {"MyACR.azurecr.io:443/prod/app", "myacr.azurecr.io", "prod/app", "latest", ""},
      {"myacr.azurecr.io:05000/app", "myacr.azurecr.io:5000", "app", "latest", ""},
      {"myacr.azurecr.io:4430/app", "myacr.azurecr.io:4430", "app", "latest", ""},
      {"myacr.azurecr.io:80/app", "myacr.azurecr.io:80", "app", "latest", ""},
      {"localhost:443/app", "localhost", "app", "latest", ""},
      {"127.0.0.1:443/app", "127.0.0.1", "app", "latest", ""},
      {"[2001:db8::1]:443/a/b", "[2001:db8::1]", "a/b", "latest", ""},
      {"[::1]:00443/a", "[::1]", "a", "latest", ""},
      {"foo:443/bar", "foo:443", "bar", "latest", ""},  // "foo/bar" would be docker.io/foo/bar
      {"index.docker.io:443/nginx", "docker.io", "library/nginx", "latest", ""},
      {"docker.io:443/library/nginx", "docker.io", "library/nginx", "latest", ""},
      {"registry-1.docker.io/library/nginx:1.25", "docker.io", "library/nginx", "1.25", ""},
      {"registry-1.docker.io/nginx", "docker.io", "library/nginx", "latest", ""},
      {"Registry-1.Docker.io:443/myuser/app", "docker.io", "myuser/app", "latest", ""},
      {"registry.hub.docker.com/library/nginx", "docker.io", "library/nginx", "latest", ""},
      {"registry-2.docker.io/nginx", "registry-2.docker.io", "nginx", "latest", ""},
      // path-component separators
      {"a/b.c", "docker.io", "a/b.c", "latest", ""},
      {"a/b_c", "docker.io", "a/b_c", "latest", ""},
      {"a/b__c", "docker.io", "a/b__c", "latest", ""},
      {"a/b-c", "docker.io", "a/b-c", "latest", ""},
      {"a/b---c", "docker.io", "a/b---c", "latest", ""},
      {"a/b.c_d__e-f--g", "docker.io", "a/b.c_d__e-f--g", "latest", ""},
      {"0/1", "docker.io", "0/1", "latest", ""},
      // tags
      {"foo:_", "docker.io", "library/foo", "_", ""},
      {"foo:V1.0-RC_2", "docker.io", "library/foo", "V1.0-RC_2", ""},
      {"foo:" + std::string(128, 'a'), "docker.io", "library/foo", std::string(128, 'a'), ""},
  }));
  CAPTURE(c.input);
  const auto r = parse_reference(c.input);
  REQUIRE(r.ok());
  CHECK(r->registry == c.registry);
  CHECK(r->repository == c.repository);
  CHECK(r->tag == c.tag);
  CHECK(r->digest == c.digest);
  CHECK(r->has_digest() == !c.digest.empty());
  // Normalized form parses back to itself.
  const auto again = parse_reference(r->str());
  REQUIRE(again.ok());
  CHECK(again->str() == r->str());
}

TEST_CASE("parse_reference rejects malformed references", "[oci][reference]") {
  const auto input = GENERATE_REF(values<std::string>({
      "",
      " ",
      "ubuntu ",
      " ubuntu",
      "ubu ntu",
      "ubuntu\n",
      "ubuntu\t:latest",
      std::string("ubu\0ntu", 7),
      "ubuntu\x7f",
      "ubunt\xc3\xbc",
      // uppercase in repository path
      "Ubuntu",
      "docker.io/Library/ubuntu",
      "myacr.azurecr.io/App:1.0",
      "myacr.azurecr.io/team/APP",
      "foo/Bar",
      // empty components
      "a//b",
      "/a",
      "a/",
      "myacr.azurecr.io/",
      "myacr.azurecr.io//app",
      "myacr.azurecr.io/app/",
      // tags
      "a:",
      "a:-tag",
      "a:.tag",
      "a:ta+g",
      "a:tag:tag",
      "foo:" + std::string(129, 'a'),
      // digests
      "a@",
      "a@sha256",
      "a@sha256:",
      "@sha256:short",
      "a@sha256:short",
      "a@sha256:" + std::string(63, 'a'),
      "a@sha256:" + std::string(65, 'a'),
      "a@sha256:" + std::string(64, 'A'),
      "a@sha256:" + std::string(63, 'a') + "g",
      "a@sha512:" + kHex64,
      "a@" + kHex64,
      "a@" + kSha256 + "@" + kSha256,
      "a:tag@",
      "a:@" + kSha256,
      // path-component separators
      "a/b..c",
      "a/b._c",
      "a/b___c",
      "a/b-",
      "a/-b",
      "a/.b",
      "a/_b",
      "a/b$c",
      // domains
      "-foo.com/bar",
      "foo-.com/bar",
      "foo..com/bar",
      ".foo.com/bar",
      "foo.com./bar",
      "foo_bar.com/baz",
      "foo.com:/bar",
      "foo.com:abc/bar",
      "foo.com:65536/bar",
      "foo.com:123456/bar",
      ":5000/bar",
      "[::1/foo",
      "[]:5000/foo",
      "[::g]/foo",
      "[::1]x/foo",
      "[::1]",
      "http://foo.com/bar",
      "docker://quay.io/library/foo:bar",
      // whole input
      "::",
      "$$$",
      ":tag",
      kHex64,  // an image ID, not a name
      // total name length > 255 (normalized docker.io/ + 246 = 256)
      "foo/" + std::string(242, 'a'),
      "myacr.azurecr.io/" + std::string(239, 'a'),
      std::string(5000, 'a'),
  }));
  CAPTURE(input);
  const auto r = parse_reference(input);
  REQUIRE_FALSE(r.ok());
  CHECK_FALSE(r.error().message.empty());
}

TEST_CASE("parse_reference name length boundary is 255", "[oci][reference]") {
  // docker.io/ (10) + foo/ (4) + 241 = 255
  CHECK(parse_reference("foo/" + std::string(241, 'a')).ok());
  CHECK_FALSE(parse_reference("foo/" + std::string(242, 'a')).ok());
  CHECK(parse_reference("myacr.azurecr.io/" + std::string(238, 'a')).ok());
  CHECK_FALSE(parse_reference("myacr.azurecr.io/" + std::string(239, 'a')).ok());
}

TEST_CASE("parse_reference error messages quote the input and say why", "[oci][reference]") {
  auto r = parse_reference("myacr.azurecr.io/App");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::parse_error);
  CHECK_THAT(r.error().message, Catch::Contains("\"myacr.azurecr.io/App\""));
  CHECK_THAT(r.error().message, Catch::Contains("must be lowercase"));

  r = parse_reference("a:");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("tag"));

  r = parse_reference("a@");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("digest"));

  r = parse_reference("a\nb");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("\\x0a"));

  // Long input is truncated in the message.
  const std::string big = "a/" + std::string(3000, 'B');
  r = parse_reference(big);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.size() < 300);
  CHECK_THAT(r.error().message, Catch::Contains("..."));

  // sha384 etc. are well-formed but sigil does not verify them.
  r = parse_reference("a@sha384:" + std::string(96, 'a'));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unsupported);
}

TEST_CASE("Reference str, pinned and name", "[oci][reference]") {
  auto r = parse_reference("myacr.azurecr.io/app:1.0@" + kSha256);
  REQUIRE(r.ok());
  CHECK(r->name() == "myacr.azurecr.io/app");
  CHECK(r->str() == "myacr.azurecr.io/app:1.0@" + kSha256);
  CHECK(r->pinned() == "myacr.azurecr.io/app@" + kSha256);  // digest wins

  r = parse_reference("nginx");
  REQUIRE(r.ok());
  CHECK(r->str() == "docker.io/library/nginx:latest");
  CHECK(r->pinned() == "docker.io/library/nginx:latest");

  r = parse_reference("nginx@" + kSha256);
  REQUIRE(r.ok());
  CHECK(r->str() == "docker.io/library/nginx@" + kSha256);
  CHECK(r->pinned() == "docker.io/library/nginx@" + kSha256);
}

TEST_CASE("is_valid_digest", "[oci][reference]") {
  CHECK(is_valid_digest(kSha256));
  CHECK(is_valid_digest(kSha512));
  const auto bad = GENERATE_REF(values<std::string>({
      "",
      "sha256:",
      "sha256",
      kHex64,
      "sha256:" + kHex64.substr(1),
      "sha256:" + kHex64 + "0",
      "SHA256:" + kHex64,
      "sha256:" + std::string(64, 'A'),
      "sha256:" + std::string(63, '0') + "g",
      "sha256-" + kHex64,
      "sha512:" + kHex64,
      "sha384:" + kHex64 + kHex64.substr(0, 32),
      "md5:" + kHex64.substr(0, 32),
      " sha256:" + kHex64,
  }));
  CAPTURE(bad);
  CHECK_FALSE(is_valid_digest(bad));
}

TEST_CASE("every spelling of one origin parses to one name", "[oci][reference]") {
  // The registry client contacts api_host(registry): https://myacr.azurecr.io (port 443) for
  // `myacr.azurecr.io:443/...`, the origin the kubelet pulls it from.
  const auto a = parse_reference("myacr.azurecr.io/prod/app:v1");
  REQUIRE(a.ok());
  for (const std::string other :
       {"myacr.azurecr.io:443/prod/app:v1", "MYACR.AZURECR.IO/prod/app:v1",
        "myacr.azurecr.io:00443/prod/app:v1"}) {
    CAPTURE(other);
    const auto b = parse_reference(other);
    REQUIRE(b.ok());
    CHECK(b->str() == a->str());
    CHECK(api_host(b->registry) == "myacr.azurecr.io");
  }
  const auto hub = parse_reference("nginx:1.25");
  REQUIRE(hub.ok());
  for (const std::string other :
       {"docker.io/library/nginx:1.25", "index.docker.io/nginx:1.25",
        "registry-1.docker.io/library/nginx:1.25", "registry-1.docker.io:443/nginx:1.25",
        "registry.hub.docker.com/library/nginx:1.25"}) {
    CAPTURE(other);
    const auto b = parse_reference(other);
    REQUIRE(b.ok());
    CHECK(b->str() == hub->str());
    CHECK(api_host(b->registry) == "registry-1.docker.io");
  }
}

TEST_CASE("api_host and signature_tag", "[oci][reference]") {
  CHECK(api_host("docker.io") == "registry-1.docker.io");
  CHECK(api_host("myacr.azurecr.io") == "myacr.azurecr.io");
  CHECK(api_host("127.0.0.1:5000") == "127.0.0.1:5000");
  CHECK(signature_tag("sha256:abc") == "sha256-abc.sig");
  CHECK(signature_tag(kSha256) == "sha256-" + kHex64 + ".sig");
}

TEST_CASE("referrers_tag follows the referrers tag schema", "[oci][reference]") {
  const std::string hex(64, 'a');
  CHECK(referrers_tag("sha256:" + hex) == "sha256-" + hex);
  CHECK(referrers_tag("sha512:" + std::string(128, 'b')) == "sha512-" + std::string(64, 'b'));
  CHECK(referrers_tag("a+b:" + hex) == "a-b-" + hex);
  CHECK(referrers_tag(std::string(40, 'x') + ":" + hex) == std::string(32, 'x') + "-" + hex);
}
