// Tests for policy/: glob semantics (policy-controller's table), ClusterImagePolicy parsing
// and validation errors, matching, and evaluation of authorities over real signatures.
#include <catch2/catch.hpp>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "pki.hpp"
#include "policy/policy.hpp"

using sigil::Errc;
using namespace sigil::policy;
namespace crypto = sigil::crypto;
namespace oci = sigil::oci;
using sigil::test::generate_key;
using sigil::test::KeyPair;

namespace {

// What a policy result refuses with: a policy-level Unmet, or crypto's failure for signatures.
[[maybe_unused]] bool refused(const PolicyResult& r, Unmet u) {
  return !r.satisfied && r.unmet == u;
}
[[maybe_unused]] bool refused(const PolicyResult& r, sigil::crypto::Failure f) {
  return !r.satisfied && r.unmet == Unmet::signature && r.signature_failure == f;
}

std::string read_data(const std::string& name) {
  std::ifstream in(std::string(SIGIL_SOURCE_DIR) + "/tests/unit/policy/data/" + name,
                   std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

oci::Reference ref(const std::string& s) {
  auto r = oci::parse_reference(s);
  INFO("reference " << s);
  REQUIRE(r.ok());
  return *r;
}

const std::string kDigestA = "sha256:" + std::string(64, 'a');
const std::string kDigestB = "sha256:" + std::string(64, 'b');

std::string payload_for(const std::string& digest,
                        const std::string& type = "cosign container image signature") {
  return R"({"critical":{"identity":{"docker-reference":"myregistry.azurecr.io/app"},)"
         R"("image":{"docker-manifest-digest":")" +
         digest + R"("},"type":")" + type + R"("},"optional":null})";
}

crypto::Signature sig_for(const KeyPair& k, const std::string& digest,
                          const EVP_MD* md = EVP_sha256()) {
  crypto::Signature s;
  s.payload = payload_for(digest);
  s.signature = k.sign(s.payload, md);
  s.source = "test";
  return s;
}

std::string indent(const std::string& text, int n) {
  std::string out, pad(n, ' ');
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out += pad + line + "\n";
  return out;
}

std::string key_policy_yaml(const std::string& pem, const std::string& extra_key = "") {
  return "apiVersion: policy.sigstore.dev/v1beta1\n"
         "kind: ClusterImagePolicy\n"
         "metadata:\n  name: prod-images\n"
         "spec:\n  images:\n  - glob: \"**\"\n  authorities:\n  - name: release-key\n"
         "    key:\n" +
         extra_key + "      data: |\n" + indent(pem, 8);
}

Policy one_policy(const std::string& yaml) {
  auto ps = parse_policies(yaml, "test.yaml");
  INFO((ps.ok() ? std::string() : ps.error().message));
  REQUIRE(ps.ok());
  REQUIRE(ps->size() == 1);
  return std::move(ps->front());
}

}  // namespace

TEST_CASE("glob: the registry it names literally, or none", "[policy][glob]") {
  auto reg = [](const char* pattern) {
    auto g = Glob::compile(pattern);
    REQUIRE(g.ok());
    return g->literal_registry();
  };
  CHECK(reg("ghcr.io/org/**") == "ghcr.io");
  CHECK(reg("myreg.example:5000/app:*") == "myreg.example:5000");
  CHECK(reg("myacr.azurecr.io:443/team/**") == "myacr.azurecr.io");  // the default port dropped
  CHECK(reg("index.docker.io/library/*") == "docker.io");
  CHECK(reg("*") == "docker.io");  // policy-controller's rewrite: Docker Hub's library
  CHECK(reg("localhost/app") == "localhost");
  // A wildcard in the registry part, or no registry part: nothing named.
  CHECK(reg("**").empty());
  CHECK(reg("*.example.com/**").empty());
  CHECK(reg("reg?.example.com/app").empty());
  CHECK(reg("index.docker.**").empty());
  CHECK(reg("nginx").empty());
  CHECK(reg("library/nginx").empty());  // a first component without '.' or ':' is a path
}

TEST_CASE("glob: one that names a tag selects by a label the pod writes, and is warned about",
          "[policy][glob]") {
  auto by_tag = [](const char* pattern) {
    auto g = Glob::compile(pattern);
    REQUIRE(g.ok());
    return g->selects_by_tag();
  };
  CHECK(by_tag("myacr.azurecr.io/app:prod-*"));
  CHECK(by_tag("nginx:1.25"));
  CHECK(by_tag("ghcr.io/**:latest"));
  CHECK_FALSE(by_tag("myreg.example:5000/app"));      // a port, not a tag
  CHECK_FALSE(by_tag("r.example/app@sha256:aaaa*"));  // a digest, not a tag
  CHECK_FALSE(by_tag("myacr.azurecr.io/team/**"));
  CHECK_FALSE(by_tag("**"));
  // Why it matters: the tag of name:tag@digest is the pod's to choose, digest unchanged.
  auto prod = Glob::compile("r.example/app:prod-*");
  REQUIRE(prod.ok());
  const std::string digest = "sha256:" + std::string(64, 'a');
  auto as_prod = oci::parse_reference("r.example/app:prod-1@" + digest);
  auto as_dev = oci::parse_reference("r.example/app:dev-1@" + digest);
  REQUIRE(as_prod.ok());
  REQUIRE(as_dev.ok());
  CHECK(prod->matches(*as_prod));
  CHECK_FALSE(prod->matches(*as_dev));

  auto docs = parse_documents(R"(apiVersion: sigil.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: releases}
spec:
  images: [{glob: "r.example/app:prod-*"}, {glob: "r.example/tools/**"}]
  authorities: [{static: {action: pass}}]
)",
                              "f.yaml");
  REQUIRE(docs.ok());
  REQUIRE(docs->policies.size() == 1);
  const auto w = scope_warnings(docs->policies[0]);
  REQUIRE(w.size() == 1);
  CHECK(w[0].find("ClusterImagePolicy releases: glob \"r.example/app:prod-*\" selects by tag") ==
        0);

  // Long names and globs are cut, and many globs make a bounded list.
  std::string images;
  for (int i = 0; i < 9; ++i) {
    images += "{glob: \"r.example/" + std::string(200, 'a') + std::to_string(i) + ":prod-*\"}, ";
  }
  auto many = parse_documents(
      "apiVersion: sigil.dev/v1alpha1\nkind: ImagePolicy\n"
      "metadata: {name: " +
          std::string(60, 'n') + ", namespace: team-a}\nspec:\n  images: [" + images +
          "]\n  authorities: [{static: {action: pass}}]\n",
      "f.yaml");
  REQUIRE(many.ok());
  const auto lines = scope_warnings(many->policies[0]);
  REQUIRE(lines.size() == kMaxScopeWarnings + 1);
  for (const auto& l : lines) CHECK(l.size() < 256);
  CHECK(lines.back().find("5 more globs select by tag") != std::string::npos);
}

TEST_CASE("glob matching follows policy-controller", "[policy][glob]") {
  struct Case {
    const char* image;
    const char* glob;
    bool want;
  };
  // policy-controller's pkg/apis/glob table, plus sigil's additions at the end.
  auto c = GENERATE(values<Case>({
      {"foo", "index.docker.io/library/foo:latest", true},
      {"foo", "index.docker.io/library/foo:*", true},
      {"foo", "index.docker.io/library/*", true},
      {"foo", "index.docker.io/library/*:latest", true},
      {"foo", "index.docker.io/*/*", true},
      {"foo", "index.docker.io/**", true},
      {"foo", "index.docker.**", true},
      {"foo", "inde**", true},
      {"foo", "**", true},
      {"foo", "foo", true},
      {"foo", "foo*", true},
      {"foo", "foo**", true},
      {"myuser/myapp", "index.docker.io/myuser/myapp:latest", true},
      {"myuser/myapp", "index.docker.io/myuser/myapp:*", true},
      {"myuser/myapp", "index.docker.io/myuser/*", true},
      {"myuser/myapp", "index.docker.io/myuser/*:latest", true},
      {"myuser/myapp", "index.docker.io/*/*", true},
      {"myuser/myapp", "index.docker.io/**", true},
      {"myuser/myapp", "**", true},
      {"myuser/myapp", "myuser/myapp", true},
      {"myuser/myapp", "myuser/myapp*", true},
      {"ghcr.io/foo/bar", "ghcr.io/*/*", true},
      {"ghcr.io/foo/bar", "ghcr.io/**", true},
      {"ghcr.io/foo", "ghcr.io/*/*", false},
      {"ghcr.io/foo", "ghcr.io/**", true},
      {"ghcr.io/foo", "ghc**", true},
      {"ghcr.io/foo", "*/**", true},
      {"ghcr.io/foo", "ghcr.io/foo*", true},
      {"prefix-ghcr.io/foo", "ghcr.io/foo", false},
      {"ghcr.io/foo-suffix", "ghcr.io/foo", false},
      {"ghcrxio/foo", "ghcr.io/**", false},
      {"foo", "*", true},
      {"myuser/myapp", "*/*", true},
      // "*" is Docker Hub library only; it must not reach another registry or user.
      {"ghcr.io/foo", "*", false},
      {"myuser/myapp", "*", false},
      // sigil additions: docker.io spelling, ?, digests, tag globs, lookalike hosts.
      {"nginx", "docker.io/library/nginx", true},
      {"nginx:1.25", "docker.io/library/nginx:1.2?", true},
      {"nginx:1.25", "docker.io/library/nginx:1.3?", false},
      {"a.io/x/y:v1", "a.io/x/?", true},
      {"a.io/x/yy:v1", "a.io/x/?", false},
      {"a.io/x/y", "a.io/?/y", true},
      {"a.io/x/y", "a.io/?y", false},
      {"myregistry.azurecr.io/app:v1", "myregistry.azurecr.io/**", true},
      {"myregistry.azurecr.io.evil.com/app:v1", "myregistry.azurecr.io/**", false},
      {"evil.com/myregistry.azurecr.io/app", "myregistry.azurecr.io/**", false},
      {"myregistry.azurecr.io/team/app:v1", "myregistry.azurecr.io/*", false},
      {"myregistry.azurecr.io/app:v1", "myregistry.azurecr.io/app:v2", false},
      {"myregistry.azurecr.io/"
       "app@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
       "myregistry.azurecr.io/app@sha256:a*", true},
      {"myregistry.azurecr.io/"
       "app:v1@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
       "myregistry.azurecr.io/app:v1", true},
      {"localhost:5000/app:v1", "localhost:5000/*", true},
      {"localhost:5000/app:v1", "localhost:5001/*", false},
      {"MyRegistry.azurecr.io/app", "myregistry.azurecr.io/app", true},        // hosts: any case
      {"myregistry.azurecr.io/app:V1", "myregistry.azurecr.io/app:V1", true},  // tags keep case
      {"myregistry.azurecr.io/app:v1", "myregistry.azurecr.io/app:V1", false},
      // One origin, one name: the default port and Docker Hub's other hosts cannot dodge a
      // glob, and a glob written with them still applies.
      {"myacr.azurecr.io:443/prod/app", "myacr.azurecr.io/prod/**", true},
      {"myacr.azurecr.io:0443/prod/app:v1", "myacr.azurecr.io/prod/**", true},
      {"myacr.azurecr.io/prod/app", "myacr.azurecr.io:443/prod/**", true},
      {"myacr.azurecr.io:443/prod/app", "myacr.azurecr.io:443/prod/**", true},
      {"myacr.azurecr.io/prod/app", "myacr.azurecr.io:*/prod/**", true},
      {"myacr.azurecr.io:5000/prod/app", "myacr.azurecr.io/prod/**", false},
      {"myacr.azurecr.io/prod/app", "myacr.azurecr.io:5000/prod/**", false},
      {"127.0.0.1:443/prod/app", "127.0.0.1/prod/**", true},
      {"registry-1.docker.io/library/nginx", "docker.io/library/nginx", true},
      {"registry-1.docker.io/nginx", "nginx", true},
      {"registry.hub.docker.com/library/nginx:1", "index.docker.io/library/*", true},
      {"index.docker.io:443/myuser/app", "docker.io/myuser/**", true},
      {"nginx", "registry-1.docker.io/library/nginx", true},
      {"nginx", "registry-1.docker.io:443/library/**", true},
      {"myuser/app", "registry.hub.docker.com/myuser/*", true},
      {"registry-2.docker.io/library/nginx", "docker.io/**", false},
  }));
  CAPTURE(c.image, c.glob);
  auto g = Glob::compile(c.glob);
  REQUIRE(g.ok());
  CHECK(g->matches(ref(c.image)) == c.want);
}

TEST_CASE("glob matching is policy-controller's regex translation, in linear time",
          "[policy][glob]") {
  // The matcher against the regex policy-controller builds ("**" -> ".*", "*" -> "[^/]*",
  // "?" -> "[^/]", "." literal), on every glob and name over a small alphabet up to a length.
  const auto to_regex = [](const std::string& glob) {
    std::string re;
    for (size_t i = 0; i < glob.size(); ++i) {
      if (glob[i] == '*' && i + 1 < glob.size() && glob[i + 1] == '*') {
        re += ".*";
        ++i;
      } else if (glob[i] == '*') {
        re += "[^/]*";
      } else if (glob[i] == '?') {
        re += "[^/]";
      } else if (glob[i] == '.') {
        re += "\\.";
      } else {
        re += glob[i];
      }
    }
    return std::regex(re);
  };
  const std::string glob_chars = "a/*?.";
  const std::string name_chars = "ab/.";
  std::vector<std::string> names = {""};
  for (size_t len = 1, from = 0; len <= 5; ++len) {
    const size_t to = names.size();
    for (size_t i = from; i < to; ++i) {
      for (char c : name_chars) names.push_back(names[i] + c);
    }
    from = to;
  }
  std::vector<std::string> globs = {""};
  size_t compared = 0;
  std::string first_miss;
  for (size_t len = 1, from = 0; len <= 4; ++len) {
    const size_t to = globs.size();
    for (size_t i = from; i < to; ++i) {
      for (char c : glob_chars) {
        const std::string g = globs[i] + c;
        globs.push_back(g);
        if (g == "*" || g == "*/*") continue;  // rewritten to Docker Hub
        auto compiled = Glob::compile(g);
        REQUIRE(compiled.ok());
        const std::regex re = to_regex(g);
        for (const auto& n : names) {
          if (compiled->matches_spelling(n) != std::regex_match(n, re) && first_miss.empty()) {
            first_miss = "glob " + g + " name " + n;
          }
          ++compared;
        }
      }
    }
    from = to;
  }
  CHECK(first_miss == "");
  CHECK(compared == 778u * 1365u);  // every glob of up to 4 characters but "*" and "*/*"
  // A glob built to blow up a DFA (RE2 held ~3 MiB for it) against long names: nothing grows.
  auto hostile = Glob::compile("**a" + std::string(40, '?'));
  REQUIRE(hostile.ok());
  std::string name(600, 'b');
  name[600 - 41] = 'a';
  CHECK(hostile->matches_spelling(name));
  name[600 - 41] = 'b';
  CHECK_FALSE(hostile->matches_spelling(name));
  auto long_glob = Glob::compile(std::string(500, 'a') + "**" + std::string(500, 'b'));
  REQUIRE(long_glob.ok());
  CHECK(long_glob->matches_spelling(std::string(500, 'a') + "x/y" + std::string(500, 'b')));
  CHECK_FALSE(long_glob->matches_spelling(std::string(499, 'a') + "x/y" + std::string(500, 'b')));
  // A star that is the last token of a 64-bit word, skipped into the next word.
  for (const char* star : {"*", "**"}) {
    auto edge = Glob::compile(std::string(63, 'a') + star + "b");
    REQUIRE(edge.ok());
    CHECK(edge->matches_spelling(std::string(63, 'a') + "b"));
    CHECK(edge->matches_spelling(std::string(63, 'a') + "xb"));
  }
}

TEST_CASE("invalid globs are rejected", "[policy][glob]") {
  auto bad = GENERATE(as<std::string>{}, "", ".+", "[a-z]*", "a b", "ghcr.io/{x}", "a|b", "(a)",
                      "a\\.b", "a$", "^a", "a\nb", std::string(2000, 'a'));
  CAPTURE(bad);
  auto g = Glob::compile(bad);
  REQUIRE_FALSE(g.ok());
  CHECK(g.error().code == Errc::invalid_argument);
}

TEST_CASE("a glob with an uppercase registry or repository is refused", "[policy][glob]") {
  struct Case {
    const char* glob;
    const char* part;
    const char* fix;
  };
  auto c = GENERATE(values<Case>({
      {"MyACR.azurecr.io/prod/**", "registry", "\"myacr.azurecr.io/prod/**\""},
      {"myacr.azurecr.IO:443/**", "registry", "\"myacr.azurecr.io:443/**\""},
      {"myacr.azurecr.io/Prod/**", "repository", "\"myacr.azurecr.io/prod/**\""},
      {"myacr.azurecr.io/app:V1@sha256:*", "nothing", ""},
      {"Nginx", "repository", "\"nginx\""},
      {"Nginx:Latest", "repository", "\"nginx:Latest\""},
  }));
  CAPTURE(c.glob);
  auto g = Glob::compile(c.glob);
  if (std::string(c.part) == "nothing") {
    CHECK(g.ok());  // uppercase in a tag is fine: tags keep their case
    return;
  }
  REQUIRE_FALSE(g.ok());
  CHECK(g.error().code == Errc::invalid_argument);
  CHECK_THAT(g.error().message,
             Catch::Contains(std::string("the ") + c.part + " must be lowercase"));
  CHECK_THAT(g.error().message, Catch::Contains(c.fix));
}

TEST_CASE("a stricter per-registry policy cannot be dodged with another spelling",
          "[policy][match]") {
  // Policy A `**` needs key1; policy B `myacr.azurecr.io/prod/**` needs key2. An image signed by
  // key1 only is admitted by A and refused by B, whichever way its registry is spelled.
  KeyPair key1 = generate_key("P-256");
  KeyPair key2 = generate_key("P-256");
  auto policy_yaml = [](const std::string& name, const std::string& glob, const std::string& key,
                        const std::string& pem) {
    return "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n"
           "  name: " +
           name + "\nspec:\n  images:\n  - glob: \"" + glob +
           "\"\n  authorities:\n  - name: " + key + "\n    key:\n      data: |\n" + indent(pem, 8);
  };
  auto ps = parse_policies(
      policy_yaml("a-baseline", "**", "key1", key1.public_pem()) + "---\n" +
          policy_yaml("b-prod", "myacr.azurecr.io/prod/**", "key2", key2.public_pem()),
      "dodge.yaml");
  REQUIRE(ps.ok());
  PolicySet set(std::move(*ps), NoMatch::deny, 1);
  const auto image =
      GENERATE(as<std::string>{}, "myacr.azurecr.io/prod/app", "myacr.azurecr.io:443/prod/app",
               "MYACR.azurecr.io:443/prod/app:v1", "myacr.azurecr.io:0443/prod/app");
  CAPTURE(image);
  const auto matched = set.match(ref(image));
  std::vector<std::string> names;
  for (const Policy* p : matched) names.push_back(p->name);
  REQUIRE(names == std::vector<std::string>{"a-baseline", "b-prod"});
  const std::vector<crypto::Signature> sigs{sig_for(key1, kDigestA)};
  CHECK(judge(*matched[0], kDigestA, sigs).satisfied);
  const auto b = judge(*matched[1], kDigestA, sigs);
  CHECK_FALSE(b.satisfied);
  CHECK(refused(b, crypto::Failure::bad_signature));
  // Another registry (another port) is another origin: only the baseline applies.
  CHECK(set.match(ref("myacr.azurecr.io:5000/prod/app")).size() == 1);
}

TEST_CASE("bare * and */* are rewritten to Docker Hub", "[policy][glob]") {
  CHECK(Glob::compile("*")->normalized() == "index.docker.io/library/*");
  CHECK(Glob::compile("*/*")->normalized() == "index.docker.io/*/*");
  CHECK(Glob::compile("ghcr.io/*")->normalized() == "ghcr.io/*");
}

TEST_CASE("valid policy files parse", "[policy][parse]") {
  auto key = parse_policies(read_data("valid-key.yaml"), "policies/valid-key.yaml");
  REQUIRE(key.ok());
  REQUIRE(key->size() == 1);
  const Policy& p = key->front();
  CHECK(p.name == "prod-images");
  CHECK(p.origin == "policies/valid-key.yaml document 1");
  CHECK(p.mode == Mode::enforce);
  REQUIRE(p.globs.size() == 1);
  CHECK(p.globs[0].pattern() == "myregistry.azurecr.io/**");
  REQUIRE(p.authorities.size() == 1);
  CHECK(p.authorities[0].name == "release-key");
  CHECK(p.authorities[0].kind == Authority::Kind::key);
  REQUIRE(p.authorities[0].key.has_value());
  CHECK(p.authorities[0].key->type() == crypto::KeyType::ecdsa_p256);
  CHECK(p.authorities[0].hash == crypto::HashAlgorithm::sha256);

  auto multi = parse_policies(read_data("valid-multi.yaml"), "multi.yaml");
  INFO((multi.ok() ? "" : multi.error().message));
  REQUIRE(multi.ok());
  REQUIRE(multi->size() == 2);
  const Policy& a = (*multi)[0];
  CHECK(a.name == "p384-images");
  CHECK(a.origin == "multi.yaml document 1");  // comments before the first --- are no document
  CHECK(a.mode == Mode::warn);
  CHECK(a.globs.size() == 2);
  REQUIRE(a.authorities.size() == 2);
  CHECK(a.authorities[0].name == "authority-0");
  CHECK(a.authorities[0].key->type() == crypto::KeyType::ecdsa_p384);
  CHECK(a.authorities[0].hash == crypto::HashAlgorithm::sha384);  // cosign's default for P-384
  CHECK(a.authorities[1].name == "sha512-key");
  CHECK(a.authorities[1].hash == crypto::HashAlgorithm::sha512);
  const Policy& b = (*multi)[1];
  CHECK(b.name == "allow-system");
  CHECK(b.origin == "multi.yaml document 3");  // the empty document 2 is skipped
  REQUIRE(b.authorities.size() == 1);
  CHECK(b.authorities[0].kind == Authority::Kind::static_pass);

  auto sf = parse_policies(read_data("valid-static-fail.yaml"), "sf.yaml");
  REQUIRE(sf.ok());
  REQUIRE(sf->size() == 1);
  CHECK(sf->front().authorities[0].kind == Authority::Kind::static_fail);
  CHECK(sf->front().authorities[0].static_message == "do not deploy :latest");

  auto empty = parse_policies("---\n---\n# nothing\n", "empty.yaml");
  REQUIRE(empty.ok());
  CHECK(empty->empty());
}

TEST_CASE("invalid policy files fail with a located message", "[policy][parse]") {
  struct Case {
    const char* file;
    Errc code;
    const char* expect;
  };
  auto c = GENERATE(values<Case>({
      {"invalid-keyless.yaml", Errc::invalid_argument,
       "f.yaml document 1 (keyless-policy): spec.authorities[0] (authority-0): a keyless "
       "authority without trustRootRef needs the default trust root"},
      {"invalid-bad-pem.yaml", Errc::invalid_argument,
       "f.yaml document 2 (prod-images): spec.authorities[0].key.data: not a PEM public key"},
      {"invalid-syntax.yaml", Errc::parse_error, "YAML syntax error at line"},
      {"invalid-unknown-field.yaml", Errc::invalid_argument,
       "f.yaml document 1 (typo): spec.authorites: unknown field"},
      {"invalid-other-kind.yaml", Errc::unsupported,
       "kind: \"ConfigMap\" is not ClusterImagePolicy"},
      {"invalid-cue-policy.yaml", Errc::unsupported, "spec.policy: CUE/Rego"},
      {"invalid-secretref.yaml", Errc::invalid_argument,
       "spec.authorities[0].key.secretRef: keys from Secrets need the Kubernetes API"},
      {"invalid-duplicate-key.yaml", Errc::invalid_argument, "spec.authorities: duplicate field"},
      {"invalid-deep.yaml", Errc::parse_error, "f.yaml"},
      {"invalid-not-map.yaml", Errc::invalid_argument, "document 1: expected a mapping"},
      {"invalid-anchors.yaml", Errc::invalid_argument, "apiVersion: missing"},
  }));
  CAPTURE(c.file);
  auto r = parse_policies(read_data(c.file), "f.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == c.code);
  CHECK_THAT(r.error().message, Catch::Contains(c.expect));
}

TEST_CASE("YAML syntax errors name the line", "[policy][parse]") {
  auto r = parse_policies(read_data("invalid-syntax.yaml"), "f.yaml");
  REQUIRE_FALSE(r.ok());
  // The unterminated flow sequence opens on line 6 and the parser notices at line 7.
  CHECK_THAT(r.error().message, Catch::Matches(".*at line [67] column.*"));
}

TEST_CASE("field-level validation", "[policy][parse]") {
  struct Case {
    const char* spec;  // YAML for `spec:` (indented by the test)
    Errc code;
    const char* expect;
  };
  auto c = GENERATE(values<Case>({
      {"images: [{glob: '**'}]", Errc::invalid_argument, "spec.authorities: missing"},
      {"images: [{glob: '**'}]\nauthorities: []", Errc::invalid_argument,
       "spec.authorities: expected a non-empty list"},
      {"authorities: [{static: {action: pass}}]", Errc::invalid_argument, "spec.images: missing"},
      {"images: []\nauthorities: [{static: {action: pass}}]", Errc::invalid_argument,
       "spec.images: expected a non-empty list"},
      {"images: [{}]\nauthorities: [{static: {action: pass}}]", Errc::invalid_argument,
       "spec.images[0].glob: missing"},
      {"images: [{glob: '.+'}]\nauthorities: [{static: {action: pass}}]", Errc::invalid_argument,
       "spec.images[0].glob: invalid glob"},
      {"images: [{glob: '**', regex: '.*'}]\nauthorities: [{static: {action: pass}}]",
       Errc::invalid_argument, "spec.images[0].regex: unknown field"},
      {"images: [{glob: [a]}]\nauthorities: [{static: {action: pass}}]", Errc::invalid_argument,
       "spec.images[0].glob: expected a string"},
      {"images: [{glob: '**'}]\nauthorities: [{}]", Errc::invalid_argument,
       "spec.authorities[0]: expected exactly one of key, keyless, static"},
      {"images: [{glob: '**'}]\nauthorities: [{name: x}]", Errc::invalid_argument,
       "spec.authorities[0]: expected exactly one of"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, key: {data: x}}]",
       Errc::invalid_argument, "expected exactly one of key, keyless, static"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: maybe}}]", Errc::invalid_argument,
       "spec.authorities[0].static.action: unsupported action"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {}}]", Errc::invalid_argument,
       "spec.authorities[0].static.action: missing"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass, why: x}}]",
       Errc::invalid_argument, "static.why: unknown field"},
      {"images: [{glob: '**'}]\nauthorities: [{name: x, static: {action: pass}}, {name: x, static: "
       "{action: pass}}]",
       Errc::invalid_argument, "spec.authorities[1].name: duplicate authority name"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {kms: 'awskms:///alias/cosign'}}]",
       Errc::unsupported, "key.kms: KMS scheme \"awskms://\" is not supported"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {kms: 'gcpkms://projects/p/keys/k'}}]",
       Errc::unsupported, "key.kms: KMS scheme \"gcpkms://\" is not supported"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {kms: 'hashivault://transit-key'}}]",
       Errc::unsupported, "key.kms: KMS scheme \"hashivault://\" is not supported"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {kms: 'k8s://ns/secret'}}]", Errc::unsupported,
       "key.kms: KMS scheme \"k8s://\" is not supported"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {kms: 'v.vault.azure.net/k'}}]",
       Errc::invalid_argument, "key.kms: \"v.vault.azure.net/k\" is not a KMS URI"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {kms: 'azurekms://v.vault.azure.net'}}]",
       Errc::invalid_argument, "key.kms: \"azurekms://v.vault.azure.net\" is not azurekms://"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {kms: 'azurekms://v.vault.azure.net/a/b/c'}}]",
       Errc::invalid_argument, "bad key version"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {kms: 'azurekms://v.vault.azure.net/a_b'}}]",
       Errc::invalid_argument, "bad key name"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {kms: 'azurekms://us@er/k'}}]",
       Errc::invalid_argument, "bad vault host"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {kms: 'azurekms://v.vault.azure.net/k', "
       "data: x}}]",
       Errc::invalid_argument,
       "key: expected exactly one of data (a PEM public key), secretRef, kms"},
      {"images: [{glob: '**'}]\nauthorities: [{keyless: {identities: [{issuer: i, subject: s}], "
       "ca-cert: {kms: 'azurekms://v.vault.azure.net/k'}}}]",
       Errc::unsupported,
       "keyless.ca-cert.kms: KMS is not supported for a PEM CA certificate chain"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {}}]", Errc::invalid_argument,
       "key: expected exactly one of data (a PEM public key), secretRef, kms"},
      {"images: [{glob: '**'}]\nauthorities: [{key: {data: 'not a key'}}]", Errc::invalid_argument,
       "key.data: not a PEM public key"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, source: [{oci: a.io/s, "
       "tagPrefix: x}]}]",
       Errc::unsupported, "spec.authorities[0].source[0].tagPrefix: signature tag prefixes"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, source: [{oci: "
       "'a.io/s@sha256:"
       "aaaa'}]}]",
       Errc::invalid_argument, "source[0].oci: \"a.io/s@sha256:aaaa\" is not a repository"},
      // policy-controller parity: an empty oci names no repository.
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, source: [{oci: ''}]}]",
       Errc::invalid_argument, "spec.authorities[0].source[0].oci: empty"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, ctlog: {url: x}}]",
       Errc::invalid_argument, "a static authority checks no signature"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, attestations: [{name: a, "
       "predicateType: spdx}]}]",
       Errc::invalid_argument,
       "spec.authorities[0].attestations: a static authority checks no "
       "attestation"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, attestations: [{name: a, "
       "predicateType: spdx, policy: {type: cue, data: 'x: 1'}}]}]",
       Errc::unsupported,
       "spec.authorities[0].attestations[0].policy: attestation policies (CUE, Rego) are not "
       "supported"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, attestations: [{name: a}]}]",
       Errc::invalid_argument, "spec.authorities[0].attestations[0].predicateType: missing"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, attestations: "
       "[{predicateType: spdx}]}]",
       Errc::invalid_argument, "spec.authorities[0].attestations[0].name: missing"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, attestations: [{name: a, "
       "predicateType: sbom}]}]",
       Errc::invalid_argument,
       "attestations[0].predicateType: \"sbom\" is neither a URI nor one of cosign's predicate "
       "types (slsaprovenance, slsaprovenance02, slsaprovenance1, link, spdx, spdxjson, cyclonedx, "
       "vuln, openvex, custom)"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, attestations: [{name: a, "
       "predicateType: spdx}, {name: a, predicateType: vuln}]}]",
       Errc::invalid_argument, "attestations[1].name: \"a\" is used twice"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, attestations: [{name: a, "
       "predicateType: spdx, when: x}]}]",
       Errc::invalid_argument, "attestations[0].when: unknown field"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, attestations: {name: a}}]",
       Errc::invalid_argument, "spec.authorities[0].attestations: expected a list"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}, rfc3161timestamp: {}}]",
       Errc::invalid_argument, "spec.authorities[0].rfc3161timestamp.trustRootRef: missing"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}}]\nmatch: [{resource: pods}]",
       Errc::unsupported, "spec.match:"},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}}]\nmode: audit",
       Errc::invalid_argument, "spec.mode: unsupported mode \"audit\""},
      {"images: [{glob: '**'}]\nauthorities: [{static: {action: pass}}]\nmode: [warn]",
       Errc::invalid_argument, "spec.mode: expected a string"},
      {"images: {glob: '**'}\nauthorities: [{static: {action: pass}}]", Errc::invalid_argument,
       "spec.images: expected a non-empty list"},
  }));
  CAPTURE(c.spec);
  std::string yaml =
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata:\n  name: pol\nspec:\n" +
      indent(c.spec, 2);
  auto r = parse_policies(yaml, "f.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == c.code);
  CHECK_THAT(r.error().message, Catch::StartsWith("f.yaml document 1 (pol): "));
  CHECK_THAT(r.error().message, Catch::Contains(c.expect));
}

TEST_CASE("key.kms: an azurekms URI is kept, normalized, for verify/ to resolve",
          "[policy][parse][kms]") {
  auto c = GENERATE(values<std::pair<const char*, const char*>>({
      {"azurekms://MyVault.Vault.Azure.NET/cosign", "azurekms://myvault.vault.azure.net/cosign"},
      {"azurekms://v.vault.azure.net/cosign-key/0123abcdef",
       "azurekms://v.vault.azure.net/cosign-key/0123abcdef"},
      {"azurekms://127.0.0.1:8443/k", "azurekms://127.0.0.1:8443/k"},
  }));
  const std::string yaml =
      "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata: {name: "
      "kv}\nspec:\n  images: [{glob: '**'}]\n  authorities:\n  - key:\n      kms: " +
      std::string(c.first) + "\n      hashAlgorithm: sha384\n";
  auto r = parse_policies(yaml, "f.yaml");
  REQUIRE(r.ok());
  const Authority& a = r->at(0).authorities.at(0);
  CHECK(a.kind == Authority::Kind::key);
  CHECK(a.kms == c.second);
  CHECK_FALSE(a.key.has_value());  // no I/O at parse time: the key comes from verify/
  CHECK_FALSE(a.key_secret.has_value());
  REQUIRE(a.explicit_hash.has_value());
  CHECK(*a.explicit_hash == crypto::HashAlgorithm::sha384);
  CHECK(secret_refs(*r, "sigil").empty());
}

TEST_CASE("document-level validation", "[policy][parse]") {
  const std::string spec =
      "spec:\n  images: [{glob: '**'}]\n  authorities: [{static: {action: pass}}]\n";
  struct Case {
    std::string head;
    Errc code;
    const char* expect;
  };
  auto c = GENERATE_COPY(values<Case>({
      {"apiVersion: v1\nkind: ClusterImagePolicy\nmetadata: {name: a}\n", Errc::unsupported,
       "apiVersion: \"v1\" is not supported"},
      {"kind: ClusterImagePolicy\nmetadata: {name: a}\n", Errc::invalid_argument,
       "apiVersion: missing"},
      {"apiVersion: sigil.dev/v1alpha1\nmetadata: {name: a}\n", Errc::invalid_argument,
       "kind: missing"},
      {"apiVersion: sigil.dev/v1alpha1\nkind: Secret\nmetadata: {name: a}\n", Errc::unsupported,
       "\"Secret\" is not ClusterImagePolicy, ImagePolicy or TrustRoot"},
      {"apiVersion: sigil.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: a}\n",
       Errc::invalid_argument, "spec.authorities: unknown field"},
      {"apiVersion: policy.sigstore.dev/v1beta1\nkind: ImagePolicy\nmetadata: {name: a, "
       "namespace: t}\n",
       Errc::unsupported, "not supported for ImagePolicy"},
      {"apiVersion: sigil.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: a}\n",
       Errc::invalid_argument, "metadata.namespace: missing"},
      {"apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: a, namespace: "
       "t}\n",
       Errc::invalid_argument, "use an ImagePolicy"},
      {"apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\n", Errc::invalid_argument,
       "metadata.name: missing"},
      {"apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {labels: {}}\n",
       Errc::invalid_argument, "metadata.name: missing"},
      {"apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: Prod_Images}\n",
       Errc::invalid_argument, "not a DNS-1123 name"},
      {"apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: -a}\n",
       Errc::invalid_argument, "not a DNS-1123 name"},
      {"apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: a, colour: "
       "red}\n",
       Errc::invalid_argument, "metadata.colour: unknown field"},
      {"apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: a}\nextra: 1\n",
       Errc::invalid_argument, "(a): extra: unknown field"},
  }));
  CAPTURE(c.head);
  auto r = parse_policies(c.head + spec, "f.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == c.code);
  CHECK_THAT(r.error().message, Catch::Contains(c.expect));
}

TEST_CASE("duplicate policy names in one file are rejected", "[policy][parse]") {
  const std::string doc =
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: a}\n"
      "spec:\n  images: [{glob: '**'}]\n  authorities: [{static: {action: pass}}]\n";
  auto r = parse_policies(doc + "---\n" + doc, "f.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("document 2 (a): metadata.name: duplicate"));
}

TEST_CASE("hostile YAML never crashes", "[policy][parse]") {
  auto text = GENERATE(as<std::string>{}, "", "\t", "{", "[", "*x", "&a [*a]", "!!binary x",
                       "%YAML 9.9\n---\na: 1", std::string(1 << 20 | 1, 'a'),
                       std::string(5000, '{'), std::string(5000, '-') + " x",
                       "kind: ClusterImagePolicy\nkind: ClusterImagePolicy\n",
                       // yaml-cpp 0.7 LoadAll loops forever on these without the document guard.
                       ",z", "a: b\n,z", ",");
  CAPTURE(text.substr(0, 40));
  auto r = parse_policies(text, "f.yaml");
  if (r.ok()) CHECK(r->empty());
}

TEST_CASE("document count is capped", "[policy][parse]") {
  std::string many;
  for (int i = 0; i < 1001; ++i) many += "---\n";
  auto r = parse_policies(many + "a: 1\n", "f.yaml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
}

TEST_CASE("PolicySet matches in load order", "[policy][match]") {
  auto ps = parse_policies(read_data("valid-multi.yaml") + "---\n" + read_data("valid-key.yaml"),
                           "m.yaml");
  REQUIRE(ps.ok());
  PolicySet set(std::move(*ps), NoMatch::deny, 7);
  CHECK(set.generation() == 7);
  CHECK(set.no_match() == NoMatch::deny);

  auto names = [&](const std::string& image) {
    std::vector<std::string> out;
    for (const Policy* p : set.match(ref(image))) out.push_back(p->name);
    return out;
  };
  CHECK(names("ghcr.io/org/app:v1") == std::vector<std::string>{"p384-images"});
  CHECK(names("nginx:1.25") == std::vector<std::string>{"p384-images"});
  CHECK(names("mcr.microsoft.com/oss/kube:1") == std::vector<std::string>{"allow-system"});
  CHECK(names("myregistry.azurecr.io/app@sha256:" + std::string(64, 'c')) ==
        std::vector<std::string>{"prod-images"});
  CHECK(names("quay.io/other/app:v1").empty());

  CHECK(PolicySet::needs_signatures(set.match(ref("ghcr.io/org/app:v1"))));
  CHECK_FALSE(PolicySet::needs_signatures(set.match(ref("mcr.microsoft.com/oss/kube:1"))));
  CHECK_FALSE(PolicySet::needs_signatures({}));
}

TEST_CASE("parse_no_match", "[policy]") {
  CHECK(*parse_no_match("deny") == NoMatch::deny);
  CHECK(*parse_no_match("warn") == NoMatch::warn);
  CHECK(*parse_no_match("allow") == NoMatch::allow);
  auto bad = GENERATE(as<std::string>{}, "", "Deny", "ignore", "allow ");
  CHECK_FALSE(parse_no_match(bad).ok());
}

TEST_CASE("judge: key authority", "[policy][judge]") {
  KeyPair release = generate_key("P-256");
  KeyPair other = generate_key("P-256");
  Policy p = one_policy(key_policy_yaml(release.public_pem()));

  SECTION("a good signature for this digest satisfies") {
    auto r = judge(p, kDigestA, {sig_for(other, kDigestA), sig_for(release, kDigestA)});
    CHECK(r.satisfied);
    CHECK(r.policy == "prod-images");
    CHECK(r.authority == "release-key");
  }
  SECTION("no signatures -> NOT_SIGNED") {
    auto r = judge(p, kDigestA, std::vector<crypto::Signature>{});
    CHECK_FALSE(r.satisfied);
    CHECK(refused(r, Unmet::not_signed));
    CHECK_THAT(r.message, Catch::Contains("no signatures found"));
    CHECK_THAT(r.message, Catch::Contains("'release-key'"));
  }
  SECTION("signature by another key -> BAD_SIGNATURE") {
    auto r = judge(p, kDigestA, {sig_for(other, kDigestA), sig_for(other, kDigestB)});
    CHECK_FALSE(r.satisfied);
    CHECK(refused(r, crypto::Failure::bad_signature));
    CHECK(r.message == "2 signatures found, none verifies with key authority 'release-key'");
  }
  SECTION("signature copied from another image -> DIGEST_MISMATCH") {
    auto r = judge(p, kDigestA, {sig_for(other, kDigestA), sig_for(release, kDigestB)});
    CHECK_FALSE(r.satisfied);
    CHECK(refused(r, crypto::Failure::digest_mismatch));
    CHECK_THAT(r.message, Catch::Contains("sha256:bbbbbbbbbbbb"));
    CHECK_THAT(r.message, Catch::Contains("not this image"));
  }
  SECTION("tampered payload -> not satisfied") {
    auto s = sig_for(release, kDigestB);
    s.payload = payload_for(kDigestA);  // same length, signature now over other bytes
    auto r = judge(p, kDigestA, {s});
    CHECK_FALSE(r.satisfied);
    CHECK(refused(r, crypto::Failure::bad_signature));
  }
  SECTION("wrong payload type -> not satisfied") {
    crypto::Signature s;
    s.payload = payload_for(kDigestA, "some other type");
    s.signature = release.sign(s.payload);
    auto r = judge(p, kDigestA, {s});
    CHECK_FALSE(r.satisfied);
    CHECK(refused(r, crypto::Failure::wrong_type));  // BAD_SIGNATURE to people
    CHECK_THAT(r.message, Catch::Contains("payload"));
  }
  SECTION("empty or garbage signature bytes") {
    crypto::Signature s;
    s.payload = payload_for(kDigestA);
    auto sigbytes = GENERATE(as<std::string>{}, "", "x", std::string(72, '\0'));
    s.signature = sigbytes;
    auto r = judge(p, kDigestA, {s});
    CHECK_FALSE(r.satisfied);
    CHECK(refused(r, crypto::Failure::bad_signature));
  }
  SECTION("a digest that is not sha256 is never satisfied by a key") {
    auto d =
        GENERATE(as<std::string>{}, "", "latest", "sha256:abc", "sha512:" + std::string(128, 'a'));
    auto r = judge(p, d, {sig_for(release, d)});
    CHECK_FALSE(r.satisfied);
    CHECK(refused(r, Unmet::unsupported_digest));
  }
}

TEST_CASE("judge: hash algorithm follows the key", "[policy][judge]") {
  KeyPair k384 = generate_key("P-384");
  Policy p = one_policy(key_policy_yaml(k384.public_pem()));
  REQUIRE(p.authorities[0].hash == crypto::HashAlgorithm::sha384);
  CHECK(judge(p, kDigestA, {sig_for(k384, kDigestA, EVP_sha384())}).satisfied);
  // Signed over sha256 but the authority uses sha384: must not verify.
  CHECK_FALSE(judge(p, kDigestA, {sig_for(k384, kDigestA, EVP_sha256())}).satisfied);

  Policy p256 = one_policy(key_policy_yaml(k384.public_pem(), "      hashAlgorithm: sha256\n"));
  CHECK(p256.authorities[0].hash == crypto::HashAlgorithm::sha256);
  CHECK(judge(p256, kDigestA, {sig_for(k384, kDigestA, EVP_sha256())}).satisfied);
  CHECK_FALSE(judge(p256, kDigestA, {sig_for(k384, kDigestA, EVP_sha384())}).satisfied);
}

TEST_CASE("judge: static authorities", "[policy][judge]") {
  KeyPair release = generate_key("P-256");
  const std::string head =
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: s}\n"
      "spec:\n  images: [{glob: '**'}]\n  authorities:\n";
  const std::string key_auth =
      "  - name: k\n    key:\n      data: |\n" + indent(release.public_pem(), 8);

  Policy pass = one_policy(head + "  - {name: ok, static: {action: pass}}\n");
  auto rp = judge(pass, kDigestA, std::vector<crypto::Signature>{});
  CHECK(rp.satisfied);
  CHECK(rp.authority == "ok");

  Policy fail = one_policy(head + "  - {name: no, static: {action: fail, message: frozen}}\n");
  auto rf = judge(fail, kDigestA, {sig_for(release, kDigestA)});
  CHECK_FALSE(rf.satisfied);
  CHECK(refused(rf, Unmet::static_fail));
  CHECK(rf.message == "disallowed by static authority 'no': frozen");

  // policy-controller: any authority may satisfy the policy, a static fail only never passes.
  Policy mixed = one_policy(head + "  - {name: no, static: {action: fail}}\n" + key_auth);
  CHECK(judge(mixed, kDigestA, {sig_for(release, kDigestA)}).satisfied);
  auto rm = judge(mixed, kDigestA, std::vector<crypto::Signature>{});
  CHECK_FALSE(rm.satisfied);
  CHECK(refused(rm, Unmet::static_fail));
}

TEST_CASE("judge: second key authority may satisfy", "[policy][judge]") {
  KeyPair a = generate_key("P-256");
  KeyPair b = generate_key("P-256");
  const std::string yaml =
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: two}\n"
      "spec:\n  images: [{glob: '**'}]\n  authorities:\n"
      "  - name: a\n    key:\n      data: |\n" +
      indent(a.public_pem(), 8) + "  - name: b\n    key:\n      data: |\n" +
      indent(b.public_pem(), 8);
  Policy p = one_policy(yaml);
  auto r = judge(p, kDigestA, {sig_for(b, kDigestA)});
  CHECK(r.satisfied);
  CHECK(r.authority == "b");
  KeyPair c = generate_key("P-256");
  auto none = judge(p, kDigestA, {sig_for(c, kDigestA)});
  CHECK(none.message == "1 signature found, it does not verify with key authorities 'a', 'b'");
}

namespace {
// An RSA public key with a modulus of `bits` bits (not a product of primes: a public key is
// never checked for that, and generating a 16384-bit key takes minutes).
sigil::Result<crypto::PublicKey> rsa_key_with(int bits, int exponent_bits, bool odd = true);
crypto::PublicKey rsa_public_key(int bits) {
  auto key = rsa_key_with(bits, 17);
  INFO((key ? std::string() : key.error().message));
  REQUIRE(key.ok());
  return *key;
}
// exponent: 2^(exponent_bits - 1) + 1 (65537 for 17), or that + 1 when !odd.
sigil::Result<crypto::PublicKey> rsa_key_with(int bits, int exponent_bits, bool odd) {
  std::string n(static_cast<size_t>(bits / 8), '\x5a');
  n.front() = '\xc3';
  n.back() = '\x01';
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()),
                nullptr),
      BN_free);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> e(BN_new(), BN_free);
  BN_zero(e.get());
  BN_set_bit(e.get(), exponent_bits - 1);
  BN_add_word(e.get(), odd ? 1 : 2);
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      OSSL_PARAM_BLD_free);
  OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn.get());
  OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get());
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(bld.get()),
                                                                 OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* raw = nullptr;
  REQUIRE(EVP_PKEY_fromdata_init(ctx.get()) == 1);
  REQUIRE(EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) == 1);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(raw, EVP_PKEY_free);
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(pkey.get(), &der);
  REQUIRE(len > 0);
  std::string spki(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return crypto::PublicKey::from_der(spki);
}
}  // namespace

TEST_CASE("check_cost prices a check by what verifying it costs", "[policy][judge]") {
  Authority a;
  a.kind = Authority::Kind::key;
  a.key = crypto::PublicKey::from_pem(generate_key("P-256").public_pem()).value();
  CHECK(check_cost(a) == 1);
  a.key = crypto::PublicKey::from_pem(generate_key("P-384").public_pem()).value();
  CHECK(check_cost(a) == 8);
  a.key = rsa_public_key(4096);
  CHECK(a.key->bits() == 4096);
  CHECK(check_cost(a) == 1);
  a.key = rsa_public_key(8192);
  CHECK(check_cost(a) == 4);
  a.key = rsa_public_key(16384);
  CHECK(a.key->bits() == 16384);
  CHECK(check_cost(a) == 16);
  Authority keyless;
  keyless.kind = Authority::Kind::keyless;
  CHECK(check_cost(keyless) == 20);
}

TEST_CASE("an RSA key's public exponent is bounded, as Go's crypto/rsa bounds it",
          "[policy][judge]") {
  // Each bit of the exponent is one more multiplication per check: a 2041-bit exponent made an
  // RSA-2048 check 70 times dearer than check_cost prices it.
  CHECK(rsa_key_with(2048, 17).ok());
  CHECK(rsa_key_with(2048, 31).ok());
  for (int bits : {32, 64, 2041}) {
    auto big = rsa_key_with(2048, bits);
    REQUIRE_FALSE(big.ok());
    CHECK_THAT(big.error().message, Catch::Contains("RSA public exponent"));
  }
  CHECK_FALSE(rsa_key_with(2048, 17, false).ok());  // even
}

TEST_CASE("judge: a check budget and a deadline bound the work", "[policy][judge]") {
  KeyPair release = generate_key("P-256");
  KeyPair other = generate_key("P-256");
  Policy p = one_policy(key_policy_yaml(release.public_pem()));
  // Five signatures by another key, then the good one: six checks to pass.
  std::vector<crypto::Signature> sigs(5, sig_for(other, kDigestA));
  sigs.push_back(sig_for(release, kDigestA));
  const Evidence evidence = evidence_from_legacy(sigs);
  const EvidenceFor all = [&](const Authority&) { return &evidence; };

  SECTION("enough budget: the same as without one") {
    sigil::WorkBudget budget(6);
    auto r = judge(p, kDigestA, all, JudgeLimits{&budget, {}});
    CHECK(r.satisfied);
    CHECK(budget.spent() == 6);
  }
  SECTION("a spent budget stops judging, never a pass and never a judgement") {
    sigil::WorkBudget budget(5);
    auto r = judge(p, kDigestA, all, JudgeLimits{&budget, {}});
    CHECK(refused(r, Unmet::check_budget));
    CHECK(budget.spent() == 5);
    CHECK(r.message ==
          "stopped checking signatures: the admission's budget of 5 check units is spent (5 "
          "signature checks under this policy; too many policies, authorities or signatures for "
          "one admission)");
  }
  SECTION("the budget is the admission's: what another image spent is gone") {
    sigil::WorkBudget budget(8);
    REQUIRE(budget.try_spend(3));
    CHECK(refused(judge(p, kDigestA, all, JudgeLimits{&budget, {}}), Unmet::check_budget));
  }
  SECTION("past the deadline no check runs") {
    sigil::WorkBudget budget(100);
    int asked = 0;
    auto r = judge(p, kDigestA, all, JudgeLimits{&budget, [&] { return ++asked > 2; }});
    CHECK(refused(r, Unmet::out_of_time));
    CHECK(budget.spent() == 2);
    CHECK(r.message ==
          "the webhook deadline passed while checking signatures (2 signature checks under this "
          "policy)");
  }
  SECTION("a static pass further on still admits") {
    const KeyPair third = generate_key("P-256");  // signed none of them
    const std::string yaml =
        "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: s}\n"
        "spec:\n  images: [{glob: '**'}]\n  authorities:\n"
        "  - name: k\n    key:\n      data: |\n" +
        indent(third.public_pem(), 8) + "  - {name: anything, static: {action: pass}}\n";
    sigil::WorkBudget budget(2);
    auto r = judge(one_policy(yaml), kDigestA, all, JudgeLimits{&budget, {}});
    CHECK(r.satisfied);
    CHECK(r.authority == "anything");
  }
  SECTION("a static fail authority is still the reason") {
    const std::string yaml =
        "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: s}\n"
        "spec:\n  images: [{glob: '**'}]\n  authorities:\n"
        "  - {name: no, static: {action: fail}}\n"
        "  - name: k\n    key:\n      data: |\n" +
        indent(release.public_pem(), 8);
    sigil::WorkBudget budget(1);
    CHECK(refused(judge(one_policy(yaml), kDigestA, all, JudgeLimits{&budget, {}}),
                  Unmet::static_fail));
  }
}

TEST_CASE("key_policy for sigil verify --key", "[policy]") {
  KeyPair k = generate_key("P-384");
  auto p = key_policy(k.public_pem(), "cosign.pub");
  REQUIRE(p.ok());
  CHECK(p->name == "cli-key");
  CHECK(p->origin == "cosign.pub");
  REQUIRE(p->globs.size() == 1);
  CHECK(p->globs[0].matches(ref("anything.example/x/y:z")));
  CHECK(p->globs[0].matches(ref("nginx")));
  REQUIRE(p->authorities.size() == 1);
  CHECK(p->authorities[0].hash == crypto::HashAlgorithm::sha384);
  CHECK(judge(*p, kDigestA, {sig_for(k, kDigestA, EVP_sha384())}).satisfied);

  auto bad = key_policy("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "k.pub");
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::StartsWith("k.pub: not a PEM public key"));
}

TEST_CASE("spec.requireDigest: true or false, on both kinds of policy", "[policy][parse]") {
  const std::string base =
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: p}\nspec:\n"
      "  images: [{glob: '**'}]\n  authorities: [{static: {action: pass}}]\n";
  auto plain = parse_policies(base, "f.yaml");
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->front().require_digest);
  auto on = parse_policies(base + "  requireDigest: true\n", "f.yaml");
  REQUIRE(on.ok());
  CHECK(on->front().require_digest);
  auto off = parse_policies(base + "  requireDigest: false\n", "f.yaml");
  REQUIRE(off.ok());
  CHECK_FALSE(off->front().require_digest);
  auto ip = parse_policies(
      "apiVersion: sigil.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p, namespace: team}\n"
      "spec:\n  requireDigest: true\n  images: [{glob: '**'}]\n"
      "  authorities: [{static: {action: pass}}]\n",
      "f.yaml");
  REQUIRE(ip.ok());
  CHECK(ip->front().require_digest);
  for (const char* bad : {"yes", "1", "[true]", "{}", "TRUE"}) {
    CAPTURE(bad);
    auto r = parse_policies(base + "  requireDigest: " + bad + "\n", "f.yaml");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Catch::Contains("spec.requireDigest"));
  }
}

TEST_CASE("judge: an unavailable policy fails every image it matches", "[policy][judge]") {
  auto ps = parse_policies(read_data("valid-key.yaml"), "k.yaml");
  REQUIRE(ps.ok());
  Policy p = ps->front();
  p.authorities.clear();
  p.unavailable = "spec.authorities[0].key.secretRef: the Secret s/k does not exist\n(twice)";
  for (const std::string& digest : {"sha256:" + std::string(64, 'a'), std::string("md5:x")}) {
    auto r = judge(p, digest, Evidence{});
    CHECK_FALSE(r.satisfied);
    CHECK(r.policy == "prod-images");
    CHECK(refused(r, Unmet::unavailable));
    // one line: outside text is made printable
    CHECK(r.message ==
          "the policy cannot be enforced yet: spec.authorities[0].key.secretRef: the "
          "Secret s/k does not exist?(twice)");
  }
  // it needs no signatures, even with an authority left on it
  Policy with_authority = ps->front();
  with_authority.unavailable = "why";
  CHECK_FALSE(PolicySet::needs_signatures({&with_authority}));
  CHECK(refused(judge(with_authority, "sha256:" + std::string(64, 'a'), Evidence{}),
                Unmet::unavailable));
  CHECK(PolicySet::needs_signatures({&ps->front()}));
}

TEST_CASE("parse_policy_scope reads what a refused policy applies to", "[policy][parse]") {
  SECTION("fields after the globs are not read") {
    for (const char* name : {"invalid-bad-pem.yaml", "invalid-cue-policy.yaml"}) {
      INFO(name);
      std::string text = read_data(name);
      if (auto sep = text.find("---\n"); sep != std::string::npos) text = text.substr(sep + 4);
      REQUIRE_FALSE(parse_documents(text, "f.yaml").ok());
      auto s = parse_policy_scope(text, "f.yaml");
      REQUIRE(s.ok());
      CHECK_FALSE(s->globs.empty());
      CHECK(s->authorities.empty());
      CHECK(s->mode == Mode::enforce);
      CHECK_FALSE(s->unavailable);  // the caller says why
    }
  }
  SECTION("an ImagePolicy keeps its namespace; warn only when it says warn") {
    const std::string ip =
        "apiVersion: sigil.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: p, namespace: "
        "team}\nspec:\n  mode: warn\n  images: [{glob: 'reg.test/**'}]\n  authorities: "
        "[{name: a, key: {data: nope}}]\n";
    auto s = parse_policy_scope(ip, "o");
    REQUIRE(s.ok());
    CHECK(s->name == "team/p");
    CHECK(s->namespace_scope == "team");
    CHECK(s->mode == Mode::warn);
    CHECK(s->globs.at(0).matches(ref("reg.test/app:1")));
    std::string odd = ip;
    odd.replace(odd.find("mode: warn"), 10, "mode: Warn");
    auto s2 = parse_policy_scope(odd, "o");
    REQUIRE(s2.ok());
    CHECK(s2->mode == Mode::enforce);
  }
  SECTION("globs that cannot be read, or no policy at all, fail") {
    const std::vector<std::string> bad = {
        "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: p}\nspec:\n  "
        "images: [{glob: 'bad glob'}]\n",
        "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: p}\nspec:\n  "
        "authorities: []\n",
        "apiVersion: sigil.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: r}\nspec: {}\n",
        "kind: [\n",
        "",
    };
    for (const auto& text : bad) {
      INFO(text);
      CHECK_FALSE(parse_policy_scope(text, "o").ok());
    }
  }
}
