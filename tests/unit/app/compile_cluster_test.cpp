// Tests for app/compile_cluster: the pure compile of `serve --kube`. Objects are written as the
// YAML a person applies (parse_documents reads the API server's JSON the same way; the e2e
// tests in tests/integration/e2e/test_kube.py feed it real JSON); keys and CAs are minted at
// test time.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/compile_cluster.hpp"
#include "common/encoding.hpp"
#include "policy/policy.hpp"
#include "sigstore_pki.hpp"

using namespace sigil;
using namespace sigil::app;

namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');

std::string indent(const std::string& text, int n) {
  std::string out, pad(n, ' ');
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    out += pad + text.substr(at, nl - at) + "\n";
    at = nl + 1;
  }
  return out;
}

const std::string& pem_a() {
  static const std::string p = test::cached_key("P-256").public_pem();
  return p;
}
const std::string& pem_b() {
  static const std::string p = test::generate_key("P-256").public_pem();
  return p;
}

std::string key_data(const std::string& pem) {
  return "    key:\n      data: |\n" + indent(pem, 8);
}
std::string key_secret(const std::string& name, const std::string& ns = "") {
  return "    key:\n      secretRef: {name: " + name + (ns.empty() ? "" : ", namespace: " + ns) +
         "}\n";
}
std::string keyless_root(const std::string& root) {
  return "    keyless:\n      trustRootRef: " + root +
         "\n      insecureIgnoreSCT: true\n      identities:\n      - issuer: https://i.test\n   "
         "     subject: a@b.test\n";
}

// A policy document; authority is the body of spec.authorities[0] below its name.
std::string policy_yaml(const std::string& kind, const std::string& name, const std::string& glob,
                        const std::string& authority, const std::string& extra_spec = "",
                        const std::string& ns = "") {
  return "apiVersion: sigil.dev/v1alpha1\nkind: " + kind + "\nmetadata:\n  name: " + name +
         (ns.empty() ? "" : "\n  namespace: " + ns) + "\nspec:\n" + extra_spec +
         "  images:\n  - glob: \"" + glob + "\"\n  authorities:\n  - name: release\n" + authority;
}

ClusterObject cip(const std::string& name, const std::string& glob, const std::string& authority,
                  int64_t generation = 1, const std::string& uid = "",
                  const std::string& extra_spec = "") {
  ClusterObject o;
  o.kind = ObjectKind::cluster_image_policy;
  o.name = name;
  o.uid = uid.empty() ? "uid-" + name : uid;
  o.generation = generation;
  o.json = policy_yaml("ClusterImagePolicy", name, glob, authority, extra_spec);
  return o;
}

ClusterObject ipol(const std::string& ns, const std::string& name, const std::string& glob,
                   const std::string& authority) {
  ClusterObject o;
  o.kind = ObjectKind::image_policy;
  o.namespace_ = ns;
  o.name = name;
  o.uid = "uid-" + ns + "-" + name;
  o.generation = 1;
  o.json = policy_yaml("ImagePolicy", name, glob, authority, "", ns);
  return o;
}

struct Pki {
  test::KeyPair ca_key = test::generate_key("P-256");
  test::KeyPair log_key = test::generate_key("P-256");
  test::Cert ca;
  Pki() {
    test::CertSpec spec;
    spec.subject = "O=corp,CN=corp root";
    spec.not_before = test::test_epoch() - std::chrono::hours(24);
    spec.not_after = test::test_epoch() + std::chrono::hours(24 * 3650);
    spec.ca = true;
    spec.key_usage = "critical,keyCertSign,cRLSign";
    ca = test::self_signed(spec, ca_key);
  }
  std::string trust_root_yaml(const std::string& name, bool broken = false) const {
    return "apiVersion: sigil.dev/v1alpha1\nkind: TrustRoot\nmetadata:\n  name: " + name +
           "\nspec:\n  sigstoreKeys:\n    certificateAuthorities:\n    - uri: "
           "https://fulcio.corp.test\n      certChain: " +
           (broken ? std::string("bm90IGEgY2VydGlmaWNhdGU=") : base64_encode(ca.pem())) +
           "\n    tLogs:\n    - baseURL: https://rekor.corp.test\n      hashAlgorithm: "
           "sha-256\n      publicKey: " +
           base64_encode(log_key.public_pem()) + "\n";
  }
};

ClusterObject trust_root(const Pki& pki, const std::string& name, int64_t generation = 1,
                         bool broken = false) {
  ClusterObject o;
  o.kind = ObjectKind::trust_root;
  o.name = name;
  o.uid = "uid-tr-" + name;
  o.generation = generation;
  o.json = pki.trust_root_yaml(name, broken);
  return o;
}

SecretRead secret(const std::map<std::string, std::string>& data, const std::string& rv = "1") {
  SecretRead r;
  r.data = data;
  r.version = rv;
  return r;
}

CompileOptions options() {
  CompileOptions o;
  o.own_namespace = "sigil-system";
  o.default_root = []() -> Result<std::shared_ptr<const crypto::TrustedRoot>> {
    return make_error(Errc::invalid_argument, "none in this test");
  };
  return o;
}

oci::Reference ref(const std::string& s) {
  auto r = oci::parse_reference(s);
  REQUIRE(r.ok());
  return *r;
}

// The result of every policy of the compiled set that matches image, as policy::judge() judges it
// with no signatures at all.
std::vector<policy::PolicyResult> judge_all(const ClusterCompile& c, const std::string& image,
                                            const std::string& ns = "") {
  policy::PolicySet set(c.policies, policy::NoMatch::deny, 1);
  std::vector<policy::PolicyResult> out;
  for (const auto* p : set.match(ref(image), ns)) {
    out.push_back(policy::judge(*p, kDigest, policy::Evidence{}));
  }
  return out;
}

const policy::Policy* find(const ClusterCompile& c, const std::string& name) {
  for (const auto& p : c.policies) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("a policy that compiles is in force and becomes the last good",
          "[app][compile_cluster]") {
  ClusterInputs in;
  in.policies = {cip("prod", "reg.test/prod/**", key_data(pem_a()), 3)};
  auto c = compile_cluster(in, {}, options());
  REQUIRE(c.policies.size() == 1);
  CHECK_FALSE(c.policies[0].unavailable);
  REQUIRE(c.policies[0].authorities.size() == 1);
  CHECK(c.policies[0].authorities[0].key.has_value());
  CHECK(c.policies[0].authorities[0].linked);
  REQUIRE(c.policy_statuses.size() == 1);
  CHECK(c.policy_statuses[0].ready);
  CHECK(c.policy_statuses[0].outcome == ObjectOutcome::compiled);
  CHECK(c.policy_statuses[0].reason == "Compiled");
  CHECK(c.policy_statuses[0].generation == 3);
  REQUIRE(c.state.policies.count("ClusterImagePolicy/prod") == 1);
  CHECK(c.state.policies.at("ClusterImagePolicy/prod").generation == 3);
  CHECK(c.changed);
  CHECK_FALSE(c.retry);
  CHECK(c.unavailable + c.kept + c.invalid == 0);
  // enforced with its key: an unsigned image fails as NOT_SIGNED, not as unavailable
  auto r = judge_all(c, "reg.test/prod/app:v1");
  REQUIRE(r.size() == 1);
  CHECK(r[0].unmet == policy::Unmet::not_signed);
  CHECK(judge_all(c, "reg.test/other/app:v1").empty());
}

TEST_CASE("a key from a Secret, in sigil's namespace or the ImagePolicy's own",
          "[app][compile_cluster]") {
  ClusterInputs in;
  in.policies = {cip("prod", "reg.test/prod/**", key_secret("cosign-pub")),
                 ipol("team", "own", "reg.test/team/**", key_secret("team-key"))};
  auto refs = cluster_secret_refs(in, "sigil-system");
  REQUIRE(refs.size() == 2);
  CHECK(refs[0].namespace_ == "sigil-system");
  CHECK(refs[0].name == "cosign-pub");
  CHECK(refs[1].namespace_ == "team");
  CHECK(refs[1].name == "team-key");
  in.secrets["sigil-system/cosign-pub"] = secret({{"cosign.pub", pem_a()}});
  in.secrets["team/team-key"] = secret({{"release.pem", pem_b()}});
  auto c = compile_cluster(in, {}, options());
  REQUIRE(c.policies.size() == 2);
  for (const auto& p : c.policies) {
    CHECK_FALSE(p.unavailable);
    REQUIRE(p.authorities.size() == 1);
    CHECK(p.authorities[0].key.has_value());
  }
  CHECK(c.policies[1].name == "team/own");
  CHECK(c.policies[1].namespace_scope == "team");
}

TEST_CASE("a policy that never compiled is unavailable and denies what it matches",
          "[app][compile_cluster]") {
  ClusterInputs in;
  in.policies = {cip("prod-images", "reg.test/prod/**", key_secret("cosign-pub")),
                 cip("other", "reg.test/other/**", key_data(pem_a()))};

  SECTION("the Secret read fails (HTTP 500): retried") {
    in.secrets["sigil-system/cosign-pub"] = secret_read_failure(
        "sigil-system", "cosign-pub",
        make_error(Errc::unavailable,
                   "GET /api/v1/namespaces/sigil-system/secrets/cosign-pub: HTTP 500 "
                   "(InternalError: etcd is down)"));
    auto c = compile_cluster(in, {}, options());
    CHECK(c.retry);
    REQUIRE(c.policies.size() == 2);
    const auto* p = find(c, "prod-images");
    REQUIRE(p);
    REQUIRE(p->unavailable);
    CHECK(p->authorities.empty());
    CHECK(c.unavailable == 1);
    const auto& st = c.policy_statuses[0];
    CHECK_FALSE(st.ready);
    CHECK(st.outcome == ObjectOutcome::unavailable);
    CHECK(st.reason == "SecretUnavailable");
    CHECK(st.message.find("sigil-system/cosign-pub could not be read (HTTP 500)") !=
          std::string::npos);
    CHECK(st.message.find("denied (POLICY_UNAVAILABLE)") != std::string::npos);
    // nothing of it was in force before, and nothing is remembered as good
    CHECK(c.state.policies.count("ClusterImagePolicy/prod-images") == 0);
    auto r = judge_all(c, "reg.test/prod/app:v1");
    REQUIRE(r.size() == 1);
    CHECK_FALSE(r[0].satisfied);
    CHECK(r[0].unmet == policy::Unmet::unavailable);
    CHECK(r[0].message ==
          "the policy cannot be enforced yet: spec.authorities[0].key.secretRef: the "
          "Secret sigil-system/cosign-pub could not be read (HTTP 500); retrying");
    // the other policy is untouched, and the unavailable one fetches no signatures
    CHECK(judge_all(c, "reg.test/other/app:v1").at(0).unmet == policy::Unmet::not_signed);
    policy::PolicySet set(c.policies, policy::NoMatch::deny, 1);
    CHECK_FALSE(policy::PolicySet::needs_signatures(set.match(ref("reg.test/prod/app:v1"))));
    CHECK(policy::PolicySet::needs_signatures(set.match(ref("reg.test/other/app:v1"))));
  }
  SECTION("the Secret does not exist (404): not retried before the resync") {
    in.secrets["sigil-system/cosign-pub"] = secret_read_failure(
        "sigil-system", "cosign-pub", make_error(Errc::not_found, "GET ...: HTTP 404"));
    auto c = compile_cluster(in, {}, options());
    CHECK_FALSE(c.retry);
    auto r = judge_all(c, "reg.test/prod/app:v1");
    REQUIRE(r.size() == 1);
    CHECK(r[0].unmet == policy::Unmet::unavailable);
    CHECK(r[0].message.find("the Secret sigil-system/cosign-pub does not exist") !=
          std::string::npos);
    CHECK(c.policy_statuses[0].reason == "SecretUnavailable");
  }
  SECTION("the Secret holds no public key; its content is never quoted") {
    in.secrets["sigil-system/cosign-pub"] = secret({{"cosign.pub", "s3cr3t-not-a-key"}});
    auto c = compile_cluster(in, {}, options());
    auto r = judge_all(c, "reg.test/prod/app:v1");
    REQUIRE(r.size() == 1);
    CHECK(r[0].unmet == policy::Unmet::unavailable);
    CHECK(r[0].message.find("does not hold a PEM public key") != std::string::npos);
    CHECK(r[0].message.find("s3cr3t") == std::string::npos);
    CHECK(c.policy_statuses[0].message.find("s3cr3t") == std::string::npos);
  }
  SECTION("a field sigil refuses after the globs (a bad inline key)") {
    in.policies[0] = cip("prod-images", "reg.test/prod/**",
                         key_data("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"));
    auto c = compile_cluster(in, {}, options());
    const auto& st = c.policy_statuses[0];
    CHECK(st.outcome == ObjectOutcome::unavailable);
    CHECK(st.reason == "Invalid");
    CHECK(st.message.find("spec.authorities[0].key") != std::string::npos);
    auto r = judge_all(c, "reg.test/prod/app:v1");
    REQUIRE(r.size() == 1);
    CHECK(r[0].unmet == policy::Unmet::unavailable);
  }
  SECTION("a spec field sigil does not support (CUE policy)") {
    in.policies[0] = cip("prod-images", "reg.test/prod/**", key_data(pem_a()), 1, "",
                         "  policy: {type: cue, data: 'x'}\n");
    auto c = compile_cluster(in, {}, options());
    CHECK(c.policy_statuses[0].outcome == ObjectOutcome::unavailable);
    CHECK(judge_all(c, "reg.test/prod/app:v1").at(0).unmet == policy::Unmet::unavailable);
  }
}

TEST_CASE("an unavailable policy in warn mode stays in warn mode", "[app][compile_cluster]") {
  ClusterInputs in;
  in.policies = {cip("soft", "reg.test/soft/**", key_secret("missing"), 1, "", "  mode: warn\n")};
  in.secrets["sigil-system/missing"] =
      secret_read_failure("sigil-system", "missing", make_error(Errc::not_found, "404"));
  auto c = compile_cluster(in, {}, options());
  REQUIRE(c.policies.size() == 1);
  CHECK(c.policies[0].unavailable);
  CHECK(c.policies[0].mode == policy::Mode::warn);
  CHECK(c.policy_statuses[0].message.find("get a warning") != std::string::npos);
  // policy::judge() fails it; the engine turns a warn-mode failure into a warning
  CHECK(judge_all(c, "reg.test/soft/x:1").at(0).unmet == policy::Unmet::unavailable);

  SECTION("an unreadable mode is enforce") {
    in.policies = {cip("soft", "reg.test/soft/**", key_data(pem_a()), 1, "", "  mode: [warn]\n")};
    auto c2 = compile_cluster(in, {}, options());
    REQUIRE(c2.policies.size() == 1);
    CHECK(c2.policies[0].unavailable);
    CHECK(c2.policies[0].mode == policy::Mode::enforce);
  }
}

TEST_CASE("an object whose globs cannot be read has nothing to match: Invalid",
          "[app][compile_cluster]") {
  ClusterInputs in;
  in.policies = {cip("bad-glob", "reg.test/bad glob/**", key_data(pem_a())),
                 cip("good", "reg.test/good/**", key_data(pem_a()))};
  auto c = compile_cluster(in, {}, options());
  REQUIRE(c.policies.size() == 1);
  CHECK(c.policies[0].name == "good");
  const auto& st = c.policy_statuses[0];
  CHECK(st.outcome == ObjectOutcome::invalid);
  CHECK(st.reason == "Invalid");
  CHECK(st.message.rfind("spec.images[0].glob: invalid glob", 0) == 0);
  CHECK(st.message.find("its images cannot be read") != std::string::npos);
  CHECK(c.invalid == 1);
}

TEST_CASE("what others write on an object never pushes its policy out: only spec is parsed",
          "[app][compile_cluster]") {
  // Another controller's status conditions, managedFields and a tenant's annotations can make
  // a stored object far larger than its spec. Parsed whole, past the parser's 1 MiB cap, a
  // replica that parsed it afresh had nothing to match (rule 4): a pod another replica denied
  // was admitted here.
  nlohmann::json obj = {
      {"apiVersion", "sigil.dev/v1alpha1"},
      {"kind", "ClusterImagePolicy"},
      {"metadata",
       {{"name", "prod"},
        {"uid", "uid-prod"},
        {"generation", 2},
        {"annotations", {{"tooling.example/notes", std::string(600 << 10, 'n')}}},
        {"managedFields", nlohmann::json::array({{{"manager", "kubectl"}}})}}},
      {"spec",
       {{"images", nlohmann::json::array({{{"glob", "reg.test/prod/**"}}})},
        {"authorities",
         nlohmann::json::array({{{"name", "release"}, {"key", {{"data", pem_a()}}}}})}}},
      {"status",
       {{"conditions",
         nlohmann::json::array({{{"type", "Other"}, {"message", std::string(600 << 10, 'c')}}})}}}};
  ClusterObject o;
  o.kind = ObjectKind::cluster_image_policy;
  o.name = "prod";
  o.uid = "uid-prod";
  o.generation = 2;
  o.json = obj.dump();
  REQUIRE(o.json.size() > (1u << 20));
  ClusterInputs in;
  in.policies = {o};
  auto c = compile_cluster(in, {}, options());
  REQUIRE(c.policy_statuses.size() == 1);
  INFO(c.policy_statuses[0].message);
  CHECK(c.policy_statuses[0].outcome == ObjectOutcome::compiled);
  auto r = judge_all(c, "reg.test/prod/app:v1");
  REQUIRE(r.size() == 1);
  CHECK(r[0].unmet == policy::Unmet::not_signed);

  const std::string doc = object_document(o.json);
  CHECK(doc.size() < 1024);
  const auto kept = nlohmann::json::parse(doc);
  CHECK(kept["metadata"] ==
        nlohmann::json({{"name", "prod"}, {"uid", "uid-prod"}, {"generation", 2}}));
  CHECK_FALSE(kept.contains("status"));
  CHECK(kept["spec"] == obj["spec"]);
  // Not JSON (a --policy file's YAML): as it is, for the parser to read or refuse.
  CHECK(object_document("kind: x\n") == "kind: x\n");
}

TEST_CASE("the last good generation stays in force when a new one breaks",
          "[app][compile_cluster]") {
  ClusterInputs in;
  in.policies = {cip("sticky", "reg.test/sticky/**", key_data(pem_a()), 1)};
  auto c1 = compile_cluster(in, {}, options());
  REQUIRE(c1.policy_statuses[0].ready);

  SECTION("generation 2 names a Secret that cannot be read") {
    in.policies = {cip("sticky", "reg.test/sticky/**", key_secret("k"), 2)};
    in.secrets["sigil-system/k"] =
        secret_read_failure("sigil-system", "k", make_error(Errc::timeout, "deadline exceeded"));
    auto c2 = compile_cluster(in, c1.state, options());
    REQUIRE(c2.policies.size() == 1);
    CHECK_FALSE(c2.policies[0].unavailable);
    REQUIRE(c2.policies[0].authorities.size() == 1);
    CHECK(c2.policies[0].authorities[0].key->spki_der() ==
          c1.policies[0].authorities[0].key->spki_der());
    const auto& st = c2.policy_statuses[0];
    CHECK(st.outcome == ObjectOutcome::kept);
    CHECK(st.reason == "SecretUnavailable");
    CHECK(st.generation == 2);
    CHECK(st.message.find("could not be read (timed out)") != std::string::npos);
    CHECK(st.message.find("generation 1 stays in force") != std::string::npos);
    CHECK(c2.state.policies.at("ClusterImagePolicy/sticky").generation == 1);
    CHECK(judge_all(c2, "reg.test/sticky/a:1").at(0).unmet == policy::Unmet::not_signed);
    CHECK(c2.kept == 1);
    // and generation 3 that compiles replaces it
    in.policies = {cip("sticky", "reg.test/sticky/**", key_data(pem_b()), 3)};
    auto c3 = compile_cluster(in, c2.state, options());
    CHECK(c3.policy_statuses[0].ready);
    CHECK(c3.state.policies.at("ClusterImagePolicy/sticky").generation == 3);
  }
  SECTION("generation 2 has an invalid glob") {
    in.policies = {cip("sticky", "reg.test/sticky/bad glob", key_data(pem_b()), 2)};
    auto c2 = compile_cluster(in, c1.state, options());
    REQUIRE(c2.policies.size() == 1);
    CHECK(c2.policies[0].globs.at(0).pattern() == "reg.test/sticky/**");
    CHECK(c2.policy_statuses[0].message.find("generation 1 stays in force") != std::string::npos);
  }
}

// A broken edit keeps the last good generation in force, but not the key or root it was
// compiled from once the cluster no longer has them: revoking a stolen key (deleting its
// Secret) must work whatever state the policy's own object is in.
TEST_CASE("a broken edit keeps the last good generation only while its Secrets and roots stand",
          "[app][compile_cluster]") {
  ClusterInputs in;
  in.policies = {cip("sticky", "reg.test/sticky/**", key_secret("k"), 1)};
  in.secrets["sigil-system/k"] = secret({{"cosign.pub", pem_a()}});
  auto c1 = compile_cluster(in, {}, options());
  REQUIRE(c1.policy_statuses[0].ready);
  const uint64_t id1 = c1.policies.at(0).id;

  // Generation 2 does not parse: it names no Secret, but the generation in force does, so the
  // Secret is still read.
  in.policies = {cip("sticky", "reg.test/sticky/bad glob", key_secret("k"), 2)};
  auto refs = [&](const CompileState* last) {
    std::vector<std::string> out;
    for (const auto& r : cluster_secret_refs(in, parse_objects(in, {}), "sigil-system", last))
      out.push_back(r.namespace_ + "/" + r.name);
    return out;
  };
  CHECK(refs(nullptr).empty());
  CHECK(refs(&c1.state) == std::vector<std::string>{"sigil-system/k"});

  SECTION("the Secret is unchanged: generation 1 stays, id and all") {
    auto c2 = compile_cluster(in, c1.state, options());
    CHECK(c2.policy_statuses[0].outcome == ObjectOutcome::kept);
    CHECK(c2.policies.at(0).id == id1);
  }
  SECTION("the Secret is deleted: the key is no longer trusted, the policy denies") {
    in.secrets["sigil-system/k"] =
        secret_read_failure("sigil-system", "k", make_error(Errc::not_found, "404"));
    auto c2 = compile_cluster(in, c1.state, options());
    REQUIRE(c2.policies.size() == 1);
    CHECK(c2.policies[0].unavailable);
    CHECK(c2.policy_statuses[0].outcome == ObjectOutcome::unavailable);
    CHECK(c2.policy_statuses[0].message.find("generation 1 is not kept either") !=
          std::string::npos);
    CHECK(c2.state.policies.empty());
    CHECK(judge_all(c2, "reg.test/sticky/a:1").at(0).unmet == policy::Unmet::unavailable);
  }
  SECTION("the Secret now holds another key: generation 1 is kept with the key of today") {
    in.secrets["sigil-system/k"] = secret({{"cosign.pub", pem_b()}}, "2");
    auto c2 = compile_cluster(in, c1.state, options());
    CHECK(c2.policy_statuses[0].outcome == ObjectOutcome::kept);
    REQUIRE(c2.policies.size() == 1);
    CHECK(c2.policies[0].authorities.at(0).key->spki_der() ==
          crypto::PublicKey::from_pem(pem_b())->spki_der());
    CHECK(c2.policies[0].id != id1);  // other content: its verdicts start over
    // and the next compile with the same inputs carries that over unchanged
    auto c3 = compile_cluster(in, c2.state, options());
    CHECK(c3.policies.at(0).id == c2.policies[0].id);
    CHECK_FALSE(c3.changed);
  }
  SECTION("the Secret cannot be read for now: generation 1 stays as it was") {
    in.secrets["sigil-system/k"] =
        secret_read_failure("sigil-system", "k", make_error(Errc::timeout, "deadline exceeded"));
    auto c2 = compile_cluster(in, c1.state, options());
    CHECK(c2.policy_statuses[0].outcome == ObjectOutcome::kept);
    CHECK(c2.policies.at(0).authorities.at(0).key->spki_der() ==
          crypto::PublicKey::from_pem(pem_a())->spki_der());
  }
}

TEST_CASE("a broken edit does not keep a keyless generation whose TrustRoot was deleted",
          "[app][compile_cluster]") {
  Pki pki;
  ClusterInputs in;
  in.trust_roots = {trust_root(pki, "corp")};
  in.policies = {cip("corp-keyless", "reg.test/corp/**", keyless_root("corp"), 1)};
  auto c1 = compile_cluster(in, {}, options());
  REQUIRE(c1.policy_statuses.at(0).ready);
  in.policies = {cip("corp-keyless", "reg.test/corp/bad glob", keyless_root("corp"), 2)};
  SECTION("the TrustRoot stands: kept") {
    CHECK(compile_cluster(in, c1.state, options()).policy_statuses.at(0).outcome ==
          ObjectOutcome::kept);
  }
  SECTION("the TrustRoot is deleted: unavailable") {
    in.trust_roots.clear();
    auto c2 = compile_cluster(in, c1.state, options());
    CHECK(c2.policy_statuses.at(0).outcome == ObjectOutcome::unavailable);
    CHECK(judge_all(c2, "reg.test/corp/app:1").at(0).unmet == policy::Unmet::unavailable);
  }
}

// Deleted and created again between two compiles (a new uid under the same name), broken: the
// new object never compiled, so nothing of the old one stands for it.
TEST_CASE("an object recreated broken between two compiles inherits no last good generation",
          "[app][compile_cluster]") {
  Pki pki;
  ClusterInputs in;
  in.trust_roots = {trust_root(pki, "corp")};
  in.policies = {cip("p", "reg.test/p/**", keyless_root("corp"), 1, "uid-old")};
  auto c1 = compile_cluster(in, {}, options());
  REQUIRE(c1.policy_statuses.at(0).ready);
  REQUIRE(c1.root_statuses.at(0).ready);

  SECTION("a policy") {
    in.policies = {cip("p", "reg.test/p/**", key_secret("gone"), 1, "uid-new")};
    in.secrets["sigil-system/gone"] =
        secret_read_failure("sigil-system", "gone", make_error(Errc::timeout, "slow"));
    auto c2 = compile_cluster(in, c1.state, options());
    CHECK(c2.policy_statuses.at(0).outcome == ObjectOutcome::unavailable);
    CHECK(judge_all(c2, "reg.test/p/a:1").at(0).unmet == policy::Unmet::unavailable);
  }
  SECTION("a TrustRoot") {
    ClusterObject root = trust_root(pki, "corp", 1, true);
    root.uid = "uid-tr-corp-new";
    in.trust_roots = {root};
    auto c2 = compile_cluster(in, c1.state, options());
    CHECK(c2.root_statuses.at(0).outcome == ObjectOutcome::invalid);
    CHECK(c2.policy_statuses.at(0).outcome == ObjectOutcome::unavailable);
  }
}

TEST_CASE("a deleted object's last good is forgotten; a recreated one inherits nothing",
          "[app][compile_cluster]") {
  ClusterInputs in;
  in.policies = {cip("p", "reg.test/p/**", key_data(pem_a()), 1, "uid-1")};
  auto c1 = compile_cluster(in, {}, options());
  REQUIRE(c1.state.policies.count("ClusterImagePolicy/p") == 1);
  const auto broken = key_secret("gone");
  in.secrets["sigil-system/gone"] =
      secret_read_failure("sigil-system", "gone", make_error(Errc::not_found, "404"));

  SECTION("deleted, then created again broken") {
    ClusterInputs none;
    auto c2 = compile_cluster(none, c1.state, options());
    CHECK(c2.policies.empty());
    CHECK(c2.state.policies.empty());
    in.policies = {cip("p", "reg.test/p/**", broken, 1, "uid-2")};
    auto c3 = compile_cluster(in, c2.state, options());
    REQUIRE(c3.policies.size() == 1);
    CHECK(c3.policies[0].unavailable);
  }
  SECTION("deleted and recreated between two compiles (a new uid)") {
    in.policies = {cip("p", "reg.test/p/**", broken, 1, "uid-2")};
    auto c2 = compile_cluster(in, c1.state, options());
    REQUIRE(c2.policies.size() == 1);
    CHECK(c2.policies[0].unavailable);
    CHECK(c2.policy_statuses[0].outcome == ObjectOutcome::unavailable);
    CHECK(c2.state.policies.empty());
    CHECK(judge_all(c2, "reg.test/p/x:1").at(0).unmet == policy::Unmet::unavailable);
  }
}

TEST_CASE("TrustRoots: a missing one makes its policies unavailable until it appears",
          "[app][compile_cluster]") {
  Pki pki;
  ClusterInputs in;
  in.policies = {cip("corp-keyless", "reg.test/corp/**", keyless_root("corp"))};
  auto c1 = compile_cluster(in, {}, options());
  REQUIRE(c1.policies.size() == 1);
  CHECK(c1.policies[0].unavailable);
  CHECK(c1.policy_statuses[0].reason == "Invalid");
  auto r = judge_all(c1, "reg.test/corp/app:1");
  REQUIRE(r.size() == 1);
  CHECK(r[0].unmet == policy::Unmet::unavailable);
  CHECK(r[0].message.find("\"corp\" names no TrustRoot") != std::string::npos);

  in.trust_roots = {trust_root(pki, "corp")};
  auto c2 = compile_cluster(in, c1.state, options());
  CHECK(c2.root_statuses.at(0).ready);
  CHECK(c2.policy_statuses.at(0).ready);
  CHECK_FALSE(c2.policies.at(0).unavailable);
  CHECK(c2.policies.at(0).authorities.at(0).cas.size() == 1);
  CHECK(judge_all(c2, "reg.test/corp/app:1").at(0).unmet == policy::Unmet::not_signed);

  SECTION("a TrustRoot generation that breaks keeps the last good one") {
    in.trust_roots = {trust_root(pki, "corp", 2, true)};
    auto c3 = compile_cluster(in, c2.state, options());
    CHECK(c3.root_statuses[0].outcome == ObjectOutcome::kept);
    CHECK(c3.root_statuses[0].message.find("generation 1 stays in force") != std::string::npos);
    CHECK(c3.policy_statuses[0].ready);
  }
  SECTION("a TrustRoot that never compiled is absent") {
    in.trust_roots = {trust_root(pki, "corp", 1, true)};
    auto c3 = compile_cluster(in, {}, options());
    CHECK(c3.root_statuses[0].outcome == ObjectOutcome::invalid);
    CHECK(c3.root_statuses[0].message.find("certChain") != std::string::npos);
    CHECK(c3.policies.at(0).unavailable);
  }
  SECTION("the TrustRoot is deleted: its CA is no longer trusted, the policy denies") {
    in.trust_roots.clear();
    auto c3 = compile_cluster(in, c2.state, options());
    CHECK(c3.policy_statuses[0].outcome == ObjectOutcome::unavailable);
    CHECK(c3.policies.at(0).unavailable);
    CHECK(c3.state.roots.empty());
    CHECK(judge_all(c3, "reg.test/corp/app:1").at(0).unmet == policy::Unmet::unavailable);
  }
}

TEST_CASE("file policies link against the cluster and follow the same rules",
          "[app][compile_cluster]") {
  Pki pki;
  ClusterInputs in;
  auto docs = policy::parse_documents(
      policy_yaml("ClusterImagePolicy", "file-keyless", "reg.test/f/**", keyless_root("corp")) +
          "---\n" +
          policy_yaml("ClusterImagePolicy", "file-secret", "reg.test/s/**", key_secret("fk")) +
          "---\n" +
          policy_yaml("ClusterImagePolicy", "file-key", "reg.test/k/**", key_data(pem_a())),
      "policies/files.yaml");
  REQUIRE(docs.ok());
  in.files = *docs;
  in.files_generation = 1;
  CHECK(cluster_secret_refs(in, "sigil-system").at(0).name == "fk");
  in.secrets["sigil-system/fk"] =
      secret_read_failure("sigil-system", "fk", make_error(Errc::unavailable, "HTTP 503"));

  auto c1 = compile_cluster(in, {}, options());
  REQUIRE(c1.policies.size() == 3);
  CHECK(c1.policies[0].unavailable);  // no TrustRoot corp yet
  CHECK(c1.policies[1].unavailable);  // its Secret could not be read
  CHECK_FALSE(c1.policies[2].unavailable);
  CHECK(c1.unavailable == 2);
  CHECK(c1.retry);
  REQUIRE(c1.file_problems.size() == 2);
  CHECK(c1.file_problems[0].find("policies/files.yaml document 1 (file-keyless)") == 0);
  CHECK(judge_all(c1, "reg.test/f/a:1").at(0).message ==
        "the policy cannot be enforced yet: spec.authorities[0] (release): "
        "keyless.trustRootRef: \"corp\" names no TrustRoot");
  CHECK(judge_all(c1, "reg.test/s/a:1").at(0).message.find("(HTTP 503); retrying") !=
        std::string::npos);

  in.trust_roots = {trust_root(pki, "corp")};
  in.secrets["sigil-system/fk"] = secret({{"cosign.pub", pem_b()}});
  auto c2 = compile_cluster(in, c1.state, options());
  for (const auto& p : c2.policies) CHECK_FALSE(p.unavailable);
  CHECK(c2.file_problems.empty());
  CHECK_FALSE(c2.retry);

  // the Secret cannot be read for now: the file policy keeps its last good version
  in.secrets["sigil-system/fk"] =
      secret_read_failure("sigil-system", "fk", make_error(Errc::timeout, "deadline exceeded"));
  auto c3 = compile_cluster(in, c2.state, options());
  CHECK_FALSE(c3.policies[1].unavailable);
  REQUIRE(c3.file_problems.size() == 1);
  CHECK(c3.file_problems[0].find("previous version stays in force") != std::string::npos);
  CHECK(c3.kept == 1);

  // the Secret is deleted: its key is no longer trusted, the policy denies what it matches
  in.secrets["sigil-system/fk"] =
      secret_read_failure("sigil-system", "fk", make_error(Errc::not_found, "404"));
  auto c4 = compile_cluster(in, c3.state, options());
  CHECK(c4.policies[1].unavailable);
  CHECK(c4.kept == 0);
  CHECK(judge_all(c4, "reg.test/s/a:1").at(0).unmet == policy::Unmet::unavailable);
  // the TrustRoot is deleted too: the keyless file policy stops trusting its CA
  in.trust_roots.clear();
  auto c5 = compile_cluster(in, c4.state, options());
  CHECK(c5.policies[0].unavailable);
  CHECK(judge_all(c5, "reg.test/f/a:1").at(0).unmet == policy::Unmet::unavailable);
}

TEST_CASE("an unavailable ImagePolicy applies only to its namespace", "[app][compile_cluster]") {
  ClusterInputs in;
  in.policies = {cip("base", "reg.test/**", key_data(pem_a())),
                 ipol("team-a", "extra", "reg.test/**", key_secret("k", "team-a"))};
  in.secrets["team-a/k"] =
      secret_read_failure("team-a", "k", make_error(Errc::unauthorized, "HTTP 403 (Forbidden)"));
  auto c = compile_cluster(in, {}, options());
  CHECK(c.retry);
  auto a = judge_all(c, "reg.test/app:1", "team-a");
  REQUIRE(a.size() == 2);
  CHECK(a[1].policy == "team-a/extra");
  CHECK(a[1].unmet == policy::Unmet::unavailable);
  CHECK(a[1].message.find("team-a/k could not be read (HTTP 403)") != std::string::npos);
  CHECK(judge_all(c, "reg.test/app:1", "team-b").size() == 1);
}

TEST_CASE("equal inputs compile to an unchanged set", "[app][compile_cluster]") {
  ClusterInputs in;
  in.policies = {cip("p", "reg.test/p/**", key_secret("k"))};
  in.secrets["sigil-system/k"] = secret({{"cosign.pub", pem_a()}}, "41");
  auto c1 = compile_cluster(in, {}, options());
  CHECK(c1.changed);
  auto c2 = compile_cluster(in, c1.state, options());
  CHECK_FALSE(c2.changed);
  // the same failure, read again: unchanged
  ClusterInputs failing = in;
  failing.secrets["sigil-system/k"] =
      secret_read_failure("sigil-system", "k", make_error(Errc::unavailable, "HTTP 500"));
  auto f1 = compile_cluster(failing, c2.state, options());
  CHECK(f1.changed);
  CHECK_FALSE(compile_cluster(failing, f1.state, options()).changed);
  // a Secret rotated, an object's generation, the files reloaded: changed
  in.secrets["sigil-system/k"] = secret({{"cosign.pub", pem_b()}}, "42");
  CHECK(compile_cluster(in, c2.state, options()).changed);
  ClusterInputs gen = in;
  gen.policies[0].generation = 2;
  CHECK(compile_cluster(gen, c2.state, options()).changed);
  ClusterInputs files = in;
  files.files_generation = 7;
  CHECK(compile_cluster(files, c2.state, options()).changed);
}

TEST_CASE("a policy whose inputs did not change keeps its id; a change to them gives a new one",
          "[app][compile_cluster]") {
  // Verdicts are cached under the matched policies' ids (policy::Policy::id): a tenant editing its
  // ImagePolicy must not retire every other policy's verdicts, and nothing that changes what a
  // policy trusts may keep its id.
  Pki pki;
  ClusterInputs in;
  in.trust_roots = {trust_root(pki, "corp")};
  in.policies = {cip("keyed", "reg.test/k/**", key_secret("k")),
                 cip("plain", "reg.test/p/**", key_data(pem_a())),
                 cip("keyless", "reg.test/l/**", keyless_root("corp")),
                 ipol("team-a", "a", "reg.test/a/**", key_data(pem_a())),
                 ipol("team-b", "b", "reg.test/b/**", key_data(pem_a()))};
  in.secrets["sigil-system/k"] = secret({{"cosign.pub", pem_a()}}, "41");
  auto ids = [](const ClusterCompile& c) {
    std::map<std::string, uint64_t> out;
    for (const auto& p : c.policies) out[p.name] = p.id;
    return out;
  };
  auto c1 = compile_cluster(in, {}, options());
  const auto first = ids(c1);
  REQUIRE(first.size() == 5);
  for (const auto& [name, id] : first) {
    CAPTURE(name);
    CHECK(id != 0);
    CHECK_FALSE(find(c1, name)->unavailable.has_value());
  }
  // The set keeps the ids it is given.
  policy::PolicySet set(c1.policies, policy::NoMatch::deny, 1);
  for (const auto& p : set.policies()) CHECK(p.id == first.at(p.name));

  SECTION("team-a edits its ImagePolicy: only its id changes") {
    ClusterInputs edit = in;
    edit.policies[3] = ipol("team-a", "a", "reg.test/a/**", key_data(pem_b()));
    edit.policies[3].generation = 2;
    auto c2 = compile_cluster(edit, c1.state, options());
    CHECK(c2.changed);
    auto now = ids(c2);
    CHECK(now.at("team-a/a") != first.at("team-a/a"));
    for (const char* same : {"keyed", "plain", "keyless", "team-b/b"})
      CHECK(now.at(same) == first.at(same));
    // and compiling again with nothing changed keeps them all
    CHECK(ids(compile_cluster(edit, c2.state, options())) == now);
  }
  SECTION("the Secret a policy reads is rotated: that policy's id changes") {
    ClusterInputs rotated = in;
    rotated.secrets["sigil-system/k"] = secret({{"cosign.pub", pem_b()}}, "42");
    auto now = ids(compile_cluster(rotated, c1.state, options()));
    CHECK(now.at("keyed") != first.at("keyed"));
    for (const char* same : {"plain", "keyless", "team-a/a", "team-b/b"})
      CHECK(now.at(same) == first.at(same));
  }
  SECTION("the Secret cannot be read for now: the last good stays in force, id included") {
    ClusterInputs failing = in;
    failing.secrets["sigil-system/k"] =
        secret_read_failure("sigil-system", "k", make_error(Errc::unavailable, "HTTP 500"));
    CHECK(ids(compile_cluster(failing, c1.state, options())) == first);
  }
  SECTION("a TrustRoot changes, or the files are reloaded: every id changes") {
    ClusterInputs root = in;
    root.trust_roots[0].generation = 2;
    ClusterInputs files = in;
    files.files_generation = 3;
    for (const auto* changed : {&root, &files}) {
      auto now = ids(compile_cluster(*changed, c1.state, options()));
      for (const auto& [name, id] : first) {
        CAPTURE(name);
        CHECK(now.at(name) != id);
      }
    }
  }
  SECTION("an object deleted and created again under its name is a new policy") {
    ClusterInputs again = in;
    again.policies[1] = cip("plain", "reg.test/p/**", key_data(pem_a()), 1, "uid-plain-2");
    CHECK(ids(compile_cluster(again, c1.state, options())).at("plain") != first.at("plain"));
  }
  SECTION("an object without a generation is compiled anew every time") {
    ClusterInputs nogen = in;
    nogen.policies[1].generation = 0;
    auto c2 = compile_cluster(nogen, c1.state, options());
    CHECK(ids(compile_cluster(nogen, c2.state, options())).at("plain") != ids(c2).at("plain"));
  }
}

TEST_CASE("two file policies of one name are never carried over as each other",
          "[app][compile_cluster]") {
  // File policies are remembered by name. load_documents refuses two of one name, but should a
  // caller pass two, each must keep its own compiled content (and id) from one compile to the
  // next: a policy carried over as another would trust the other's keys.
  ClusterInputs in;
  auto one = policy::parse_documents(
      policy_yaml("ClusterImagePolicy", "p", "reg.test/one/**", key_data(pem_a())), "one.yaml");
  auto two = policy::parse_documents(
      policy_yaml("ClusterImagePolicy", "p", "reg.test/two/**", key_data(pem_b())), "two.yaml");
  REQUIRE(one.ok());
  REQUIRE(two.ok());
  in.files.policies = {one->policies.at(0), two->policies.at(0)};
  in.files_generation = 1;
  auto c1 = compile_cluster(in, {}, options());
  auto c2 = compile_cluster(in, c1.state, options());
  REQUIRE(c2.policies.size() == 2);
  CHECK(c2.policies[0].globs.at(0).pattern() == "reg.test/one/**");
  CHECK(c2.policies[1].globs.at(0).pattern() == "reg.test/two/**");
  CHECK(c2.policies[0].id != c2.policies[1].id);
}

TEST_CASE("secret_read_failure says what happened in one line", "[app][compile_cluster]") {
  struct Case {
    Error e;
    std::string want;
  };
  const std::vector<Case> cases = {
      {make_error(Errc::not_found, "GET x: HTTP 404 (NotFound)"), "the Secret ns/s does not exist"},
      {make_error(Errc::unavailable, "GET x: HTTP 500 (InternalError: boom)"),
       "the Secret ns/s could not be read (HTTP 500); retrying"},
      {make_error(Errc::timeout, "GET x: deadline exceeded"),
       "the Secret ns/s could not be read (timed out); retrying"},
      {make_error(Errc::unavailable, "GET x: the API server closed the connection"),
       "the Secret ns/s could not be read (API server unavailable); retrying"},
      {make_error(Errc::unauthorized, "GET x: HTTP 403 (Forbidden)"),
       "the Secret ns/s could not be read (HTTP 403); retrying"},
  };
  for (const auto& c : cases) {
    auto r = secret_read_failure("ns", "s", c.e);
    REQUIRE_FALSE(r.data.ok());
    CHECK(r.data.error().message == c.want);
    CHECK(r.data.error().code == c.e.code);
  }
}

TEST_CASE("parses are kept across compiles by uid and generation", "[app][compile_cluster]") {
  Pki pki;
  ClusterInputs in;
  in.trust_roots = {trust_root(pki, "corp")};
  in.policies = {cip("p", "reg.test/p/**", key_data(pem_a()), 1),
                 cip("q", "reg.test/q/**", key_data(pem_a()), 1)};
  ParseCache first = parse_objects(in, {});
  REQUIRE(first.size() == 3);
  CHECK(first.count("TrustRoot/corp") == 1);
  CHECK(first.count("ClusterImagePolicy/p") == 1);

  // Same uid and generation: the earlier parse is used, even though the text now differs (a
  // spec change always comes with a new generation; this shows the parse was not redone).
  ClusterInputs same = in;
  same.policies[0].json =
      policy_yaml("ClusterImagePolicy", "p", "reg.test/bad glob", key_data(pem_a()));
  ParseCache second = parse_objects(same, first);
  auto c = compile_cluster(same, second, {}, options());
  CHECK(c.policies.at(0).globs.at(0).pattern() == "reg.test/p/**");
  // A new generation, a new uid, or no generation at all: parsed again.
  for (auto change : {0, 1, 2}) {
    ClusterInputs next = same;
    if (change == 0) next.policies[0].generation = 2;
    if (change == 1) next.policies[0].uid = "uid-new";
    if (change == 2) next.policies[0].generation = 0;
    ParseCache again = parse_objects(next, change == 2 ? parse_objects(next, {}) : first);
    auto c2 = compile_cluster(next, again, {}, options());
    CHECK(c2.policy_statuses.at(0).outcome == ObjectOutcome::invalid);  // the bad glob
  }
  // Objects that are gone are dropped.
  ClusterInputs fewer = in;
  fewer.policies.pop_back();
  fewer.trust_roots.clear();
  CHECK(parse_objects(fewer, first).size() == 1);
  // The Secrets named come from the same parses.
  ClusterInputs withref = in;
  withref.policies[1] = cip("q", "reg.test/q/**", key_secret("k"), 2);
  auto refs = cluster_secret_refs(withref, parse_objects(withref, first), "sigil-system");
  REQUIRE(refs.size() == 1);
  CHECK(refs[0].name == "k");
}

TEST_CASE("a key Secret deleted or replaced by one without a key revokes the old key",
          "[app][compile_cluster]") {
  ClusterInputs in;
  in.policies = {cip("rot", "reg.test/rot/**", key_secret("k"), 1)};
  in.secrets["sigil-system/k"] = secret({{"cosign.pub", pem_a()}});
  auto c1 = compile_cluster(in, {}, options());
  REQUIRE(c1.policy_statuses[0].ready);
  REQUIRE_FALSE(c1.policies[0].unavailable);

  SECTION("deleted") {
    in.secrets["sigil-system/k"] =
        secret_read_failure("sigil-system", "k", make_error(Errc::not_found, "404"));
  }
  SECTION("its cosign.pub replaced by something that is not a key") {
    in.secrets["sigil-system/k"] = secret({{"cosign.pub", "not a key"}}, "2");
  }
  SECTION("its cosign.pub removed (two other keys: none is the key)") {
    in.secrets["sigil-system/k"] = secret({{"other", pem_b()}, {"notes", "rotated"}}, "2");
  }
  auto c2 = compile_cluster(in, c1.state, options());
  REQUIRE(c2.policies.size() == 1);
  CHECK(c2.policies[0].unavailable);
  CHECK(c2.policy_statuses[0].outcome == ObjectOutcome::unavailable);
  CHECK(c2.policy_statuses[0].reason == "SecretUnavailable");
  CHECK(c2.state.policies.empty());
  CHECK(c2.changed);
  CHECK(judge_all(c2, "reg.test/rot/a:1").at(0).unmet == policy::Unmet::unavailable);
}
