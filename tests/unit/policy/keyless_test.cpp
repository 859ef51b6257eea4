// Keyless authorities, TrustRoot documents, trust-root linking and identity matching, with a
// Fulcio-like CA, CT log and Rekor-like log minted at test time (tests/support/cpp).
#include <catch2/catch.hpp>
#include <sstream>
#include <string>

#include "common/encoding.hpp"
#include "crypto/dsse.hpp"
#include "crypto/sigstore.hpp"
#include "policy/policy.hpp"
#include "rekor_fixture.hpp"
#include "sigstore_pki.hpp"

using namespace sigil;
using namespace sigil::policy;
using sigil::test::FulcioPki;
using sigil::test::KeyPair;
using sigil::test::TestLog;

namespace {

// What a policy result refuses with: a policy-level Unmet, or crypto's failure for signatures.
[[maybe_unused]] bool refused(const PolicyResult& r, Unmet u) {
  return !r.satisfied && r.unmet == u;
}
[[maybe_unused]] bool refused(const PolicyResult& r, sigil::crypto::Failure f) {
  return !r.satisfied && r.unmet == Unmet::signature && r.signature_failure == f;
}

const std::string kDigest = "sha256:" + std::string(64, 'a');
const std::string kOther = "sha256:" + std::string(64, 'b');

std::string indent(const std::string& text, int n) {
  std::string out, pad(n, ' ');
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out += pad + line + "\n";
  return out;
}

std::string payload_for(const std::string& digest) {
  return R"({"critical":{"identity":{"docker-reference":"reg.test/app"},"image":{"docker-manifest-digest":")" +
         digest + R"("},"type":"cosign container image signature"},"optional":null})";
}

// A trust world and the YAML that describes it as a policy-controller TrustRoot.
struct World {
  FulcioPki pki = FulcioPki::create();
  TestLog rekor;
  std::string trust_root_yaml(const std::string& name = "corp") const {
    const std::string chain = pki.intermediate.pem() + pki.root.pem();
    return "apiVersion: policy.sigstore.dev/v1alpha1\nkind: TrustRoot\nmetadata:\n  name: " + name +
           "\nspec:\n  sigstoreKeys:\n    certificateAuthorities:\n    - subject: {organization: "
           "sigil.test, commonName: fulcio}\n      uri: https://fulcio.sigil.test\n      "
           "certChain: " +
           base64_encode(chain) +
           "\n    tLogs:\n    - baseURL: https://rekor.test\n      hashAlgorithm: sha-256\n      "
           "publicKey: " +
           base64_encode(rekor.key.public_pem()) +
           "\n    ctLogs:\n    - baseURL: https://ctfe.sigil.test\n      hashAlgorithm: sha-256\n  "
           "    publicKey: " +
           base64_encode(pki.ct_key.public_pem()) + "\n";
  }
  // A keyless legacy signature over payload_for(digest) by email, logged.
  crypto::SignedEntity signature(const std::string& digest,
                                 const std::string& email = "release@corp.test",
                                 const std::string& issuer = "https://accounts.corp.test",
                                 bool with_sct = true) const {
    const auto spec = pki.leaf_spec(sigil::test::test_epoch(), email, issuer);
    KeyPair key;
    sigil::test::Cert leaf;
    if (with_sct) {
      leaf = pki.leaf(spec, &key);  // a fresh key, and one SCT
    } else {
      key = sigil::test::generate_key("P-256");
      leaf = sigil::test::issue(spec, key, pki.intermediate, pki.intermediate_key);
    }
    crypto::SignedEntity e;
    e.kind = crypto::SignedEntity::Kind::simple_signing;
    e.source = "sha256-aa.sig layer 0";
    e.payload = payload_for(digest);
    e.signature = key.sign(e.payload);
    e.certificates_der = {leaf.der()};
    e.tlog_entries = {rekor.entry(TestLog::hashedrekord(e.payload, e.signature, leaf.pem()),
                                  crypto::to_unix_seconds(sigil::test::test_epoch()) + 30)};
    return e;
  }
};

std::string keyless_policy(const std::string& keyless_body, const std::string& extra = "") {
  return "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: "
         "prod\nspec:\n  images:\n  - glob: \"**\"\n  authorities:\n  - name: release\n    "
         "keyless:\n" +
         indent(keyless_body, 6) + extra;
}

Result<std::vector<Policy>> parse_and_link(const std::string& yaml,
                                           const DefaultTrustRoot& fallback = nullptr) {
  auto docs = parse_documents(yaml, "f.yaml");
  if (!docs) return docs.error();
  DefaultTrustRoot none = []() -> Result<std::shared_ptr<const crypto::TrustedRoot>> {
    return make_error(Errc::invalid_argument, "none in this test");
  };
  if (auto st = link_trust_roots(docs->policies, docs->trust_roots, fallback ? fallback : none);
      !st) {
    return st.error();
  }
  return std::move(docs->policies);
}

Evidence evidence(std::vector<crypto::SignedEntity> s) {
  Evidence e;
  e.signatures = std::move(s);
  return e;
}

}  // namespace

TEST_CASE("a keyless policy with a TrustRoot admits only its identity", "[policy][keyless]") {
  World w;
  const std::string yaml =
      w.trust_root_yaml() + "---\n" +
      keyless_policy(
          "trustRootRef: corp\nidentities:\n- issuer: https://accounts.corp.test\n  subject: "
          "release@corp.test\n");
  auto ps = parse_and_link(yaml);
  INFO((ps ? std::string() : ps.error().message));
  REQUIRE(ps.ok());
  const Policy& p = ps->front();
  REQUIRE(p.authorities.front().kind == Authority::Kind::keyless);
  CHECK(p.authorities.front().require_tlog);
  CHECK(p.authorities.front().tlogs.size() == 1);
  CHECK(p.authorities.front().ctlogs.size() == 1);

  auto ok = judge(p, kDigest, evidence({w.signature(kDigest)}));
  INFO(ok.message);
  CHECK(ok.satisfied);
  CHECK(ok.authority == "release");

  auto stranger = judge(p, kDigest, evidence({w.signature(kDigest, "mallory@corp.test")}));
  CHECK_FALSE(stranger.satisfied);
  CHECK(refused(stranger, Unmet::identity_mismatch));
  CHECK_THAT(stranger.message, Catch::Contains("mallory@corp.test"));
  CHECK_THAT(stranger.message, Catch::Contains("release@corp.test"));

  auto other_issuer =
      judge(p, kDigest, evidence({w.signature(kDigest, "release@corp.test", "https://evil.test")}));
  CHECK(refused(other_issuer, Unmet::identity_mismatch));

  auto copied = judge(p, kDigest, evidence({w.signature(kOther)}));
  CHECK(refused(copied, crypto::Failure::digest_mismatch));

  auto none = judge(p, kDigest, evidence({}));
  CHECK(refused(none, Unmet::not_signed));
  CHECK_THAT(none.message, Catch::Contains("keyless authority 'release'"));

  // The right identity from a CA this trust root does not hold.
  World elsewhere;
  auto foreign = judge(p, kDigest, evidence({elsewhere.signature(kDigest)}));
  CHECK_FALSE(foreign.satisfied);
  CHECK(refused(foreign, crypto::Failure::tlog));  // its log is not ours either
}

TEST_CASE("identity regular expressions must match the whole string", "[policy][keyless]") {
  World w;
  const std::string yaml =
      w.trust_root_yaml() + "---\n" +
      keyless_policy(
          "trustRootRef: corp\nidentities:\n- issuerRegExp: 'https://accounts\\.corp\\.test'\n  "
          "subjectRegExp: '.*@corp\\.test'\n");
  auto ps = parse_and_link(yaml);
  REQUIRE(ps.ok());
  const Policy& p = ps->front();
  CHECK(judge(p, kDigest, evidence({w.signature(kDigest, "anyone@corp.test")})).satisfied);
  // A substring match (cosign's behaviour) would admit these; sigil does not.
  CHECK_FALSE(
      judge(p, kDigest, evidence({w.signature(kDigest, "x@corp.test.evil.example")})).satisfied);
  CHECK_FALSE(judge(p, kDigest,
                    evidence({w.signature(kDigest, "a@corp.test",
                                          "https://accounts.corp.test.evil.example")}))
                  .satisfied);
}

TEST_CASE("what a keyless authority demands of every signature", "[policy][keyless]") {
  // An authority that accepts any identity: what is left to refuse is the certificate itself.
  World w;
  auto ps = parse_and_link(w.trust_root_yaml() + "---\n" +
                           keyless_policy("trustRootRef: corp\nidentities:\n- issuerRegExp: "
                                          "'.*'\n  subjectRegExp: '.*'\n"));
  REQUIRE(ps.ok());
  Policy& p = ps->front();
  Authority& a = p.authorities.front();
  REQUIRE(judge(p, kDigest, evidence({w.signature(kDigest)})).satisfied);

  SECTION("an OIDC issuer: a certificate without one matches no identity, not even '.*'") {
    auto r = judge(p, kDigest, evidence({w.signature(kDigest, "release@corp.test", "")}));
    INFO(r.message);
    CHECK_FALSE(r.satisfied);
  }
  SECTION("an embedded SCT, unless insecureIgnoreSCT") {
    auto e = w.signature(kDigest, "release@corp.test", "https://accounts.corp.test", false);
    CHECK(refused(judge(p, kDigest, evidence({e})), crypto::Failure::sct));
    a.insecure_ignore_sct = true;
    CHECK(judge(p, kDigest, evidence({e})).satisfied);
  }
  SECTION("the signature format it names (signatureFormat)") {
    a.format = SignatureFormat::bundle;
    auto r = judge(p, kDigest, evidence({w.signature(kDigest)}));  // a legacy .sig layer
    CHECK(refused(r, Unmet::not_signed));
    a.format = SignatureFormat::legacy;
    CHECK(judge(p, kDigest, evidence({w.signature(kDigest)})).satisfied);
  }
  SECTION("a proved signing time, also when the log is not required") {
    // As `ctlog: {}` leaves it (link.cpp then demands a timestamp authority): without a log
    // entry or a timestamp, the certificate's chain cannot be judged at any time.
    a.require_tlog = false;
    a.insecure_ignore_sct = true;
    auto e = w.signature(kDigest);
    e.tlog_entries.clear();
    CHECK(refused(judge(p, kDigest, evidence({e})), crypto::Failure::no_signing_time));
  }
}

TEST_CASE("keyless authorities are validated and linked with clear errors", "[policy][keyless]") {
  World w;
  struct Case {
    std::string keyless;
    std::string extra;
    std::string expect;
  };
  auto c = GENERATE_COPY(values<Case>({
      {"trustRootRef: corp\n", "", "keyless.identities: missing"},
      {"trustRootRef: corp\nidentities: []\n", "", "keyless.identities: expected a non-empty list"},
      {"trustRootRef: corp\nidentities:\n- subject: a@b\n", "",
       "expected exactly one of issuer, issuerRegExp"},
      {"trustRootRef: corp\nidentities:\n- issuer: https://i\n", "",
       "expected exactly one of subject, subjectRegExp"},
      {"trustRootRef: corp\nidentities:\n- issuer: https://i\n  subject: a\n  subjectRegExp: a\n",
       "", "expected exactly one of subject, subjectRegExp"},
      {"trustRootRef: corp\nidentities:\n- issuer: https://i\n  subjectRegExp: '(unclosed'\n", "",
       "subjectRegExp: invalid regular expression"},
      {"trustRootRef: nope\nidentities:\n- issuer: https://i\n  subject: a\n", "",
       "keyless.trustRootRef: \"nope\" names no TrustRoot"},
      {"identities:\n- issuer: https://i\n  subject: a\n", "",
       "needs the default trust root, which is unusable: none in this test"},
      {"trustRootRef: corp\nidentities:\n- issuer: https://i\n  subject: a\n",
       "    ctlog:\n      url: https://rekor.elsewhere.test\n",
       "ctlog.url https://rekor.elsewhere.test: no transparency log of TrustRoot corp"},
      {"trustRootRef: corp\nidentities:\n- issuer: https://i\n  subject: a\n", "    ctlog: {}\n",
       "the signing time can only be proved by an RFC 3161 timestamp"},
      {"trustRootRef: corp\nidentities:\n- issuer: https://i\n  subject: a\ninsecureIgnoreSCT: "
       "maybe\n",
       "", "insecureIgnoreSCT: expected true or false"},
      {"trustRootRef: corp\nidentities:\n- issuer: https://i\n  subject: a\nfulcio: x\n", "",
       "keyless.fulcio: unknown field"},
      // policy-controller refuses url together with ca-cert; so does sigil, naming the field.
      {"url: https://fulcio.sigstore.dev\nca-cert:\n  secretRef: {name: ca}\nidentities:\n- "
       "issuer: https://i\n  subject: a\n",
       "", "keyless: expected at most one of url, ca-cert"},
  }));
  CAPTURE(c.keyless, c.extra);
  auto ps = parse_and_link(w.trust_root_yaml() + "---\n" + keyless_policy(c.keyless, c.extra));
  REQUIRE_FALSE(ps.ok());
  CHECK_THAT(ps.error().message, Catch::Contains(c.expect));
  CHECK_THAT(ps.error().message, Catch::Contains("f.yaml"));
}

TEST_CASE("the default trust root is used only when needed", "[policy][keyless]") {
  World w;
  int calls = 0;
  auto docs = parse_documents(w.trust_root_yaml("corp"), "roots.yaml");
  REQUIRE(docs.ok());
  auto root = docs->trust_roots.front().root;
  DefaultTrustRoot counting = [&]() -> Result<std::shared_ptr<const crypto::TrustedRoot>> {
    ++calls;
    return root;
  };
  // Key-only policies never ask for it (air-gapped clusters need no trust root at all).
  const std::string key_only =
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: k}\nspec:\n  "
      "images: [{glob: '**'}]\n  authorities: [{static: {action: pass}}]\n";
  REQUIRE(parse_and_link(key_only, counting).ok());
  CHECK(calls == 0);
  std::string second = keyless_policy("identities:\n- issuer: https://x\n  subject: y\n");
  second.replace(second.find("name: prod"), 10, "name: prod2");
  auto ps = parse_and_link(keyless_policy("identities:\n- issuer: https://accounts.corp.test\n  "
                                          "subject: release@corp.test\n") +
                               "---\n" + second,
                           counting);
  REQUIRE(ps.ok());
  CHECK(calls == 1);  // once for both
  CHECK(judge(ps->front(), kDigest, evidence({w.signature(kDigest)})).satisfied);
}

TEST_CASE("ca-cert authorities chain to the given CA", "[policy][keyless]") {
  World w;
  const std::string pem = w.pki.intermediate.pem() + w.pki.root.pem();
  auto ps = parse_and_link(keyless_policy("ca-cert:\n  data: |\n" + indent(pem, 4) +
                                              "insecureIgnoreSCT: true\nidentities:\n- issuer: "
                                              "https://accounts.corp.test\n  subject: "
                                              "release@corp.test\n",
                                          "    ctlog:\n      trustRootRef: corp\n") +
                           "---\n" + w.trust_root_yaml());
  INFO((ps ? std::string() : ps.error().message));
  REQUIRE(ps.ok());
  CHECK(judge(ps->front(), kDigest, evidence({w.signature(kDigest)})).satisfied);
  World other;
  CHECK_FALSE(judge(ps->front(), kDigest, evidence({other.signature(kDigest)})).satisfied);
  auto leaf_only =
      parse_and_link(keyless_policy("ca-cert:\n  data: |\n" + indent(w.pki.intermediate.pem(), 4) +
                                    "identities:\n- issuer: https://i\n  subject: a\n"));
  REQUIRE_FALSE(leaf_only.ok());
  CHECK_THAT(leaf_only.error().message, Catch::Contains("self-signed root"));
  // A signing certificate pasted above the CA's chain could never issue anything: refused when
  // the policy is read, not at every signature.
  const std::string with_leaf = w.pki.leaf(sigil::test::test_epoch()).pem() + pem;
  auto signer_listed =
      parse_and_link(keyless_policy("ca-cert:\n  data: |\n" + indent(with_leaf, 4) +
                                    "identities:\n- issuer: https://i\n  subject: a\n"));
  REQUIRE_FALSE(signer_listed.ok());
  CHECK_THAT(signer_listed.error().message,
             Catch::Contains("certificate 0 is not a CA certificate (empty subject;"));
}

TEST_CASE("TrustRoot documents are validated field by field", "[policy][trustroot]") {
  World w;
  const auto tsa = sigil::test::TestTsa::create();
  const std::string head =
      "apiVersion: policy.sigstore.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: t}\n";
  struct Case {
    std::string spec;
    std::string expect;
  };
  auto c = GENERATE_COPY(values<Case>({
      {"spec: {}", "spec.sigstoreKeys: missing"},
      {"spec: {remote: {root: x, mirror: https://tuf}}", "spec.remote: TUF trust roots"},
      {"spec: {repository: {root: x}}", "spec.repository: serialized TUF repositories"},
      {"spec: {sigstoreKeys: {tLogs: [{publicKey: bm90IGEgcGVt}]}}",
       "spec.sigstoreKeys.tLogs[0].publicKey: base64 that does not decode to a PEM"},
      {"spec: {sigstoreKeys: {tLogs: [{baseURL: x}]}}",
       "spec.sigstoreKeys.tLogs[0].publicKey: missing"},
      {"spec: {sigstoreKeys: {tLogs: [{hashAlgorithm: md5, publicKey: x}]}}",
       "spec.sigstoreKeys.tLogs[0].hashAlgorithm: unsupported \"md5\""},
      {"spec: {sigstoreKeys: {certificateAuthorities: [{certChain: '" +
           base64_encode(w.pki.intermediate.pem()) + "'}]}}",
       "spec.sigstoreKeys.certificateAuthorities[0].certChain: the last certificate must be "
       "the self-signed root"},
      {"spec: {sigstoreKeys: {certificateAuthorities: [{certChain: '" +
           base64_encode(w.pki.leaf(sigil::test::test_epoch()).pem() + w.pki.intermediate.pem() +
                         w.pki.root.pem()) +
           "'}]}}",
       "spec.sigstoreKeys.certificateAuthorities[0].certChain: certificate 0 is not a CA "
       "certificate"},
      // A timestamp authority's own certificate comes first; the ones after it issue.
      {"spec: {sigstoreKeys: {timestampAuthorities: [{certChain: '" +
           base64_encode(tsa.cert.pem() + w.pki.leaf(sigil::test::test_epoch()).pem() +
                         tsa.root.pem()) +
           "'}]}}",
       "spec.sigstoreKeys.timestampAuthorities[0].certChain: certificate 1 is not a CA "
       "certificate"},
      {"spec: {sigstoreKeys: {ctLogs: {}}}", "spec.sigstoreKeys.ctLogs: expected a list"},
      {"spec: {sigstoreKeys: {tlogs: []}}", "spec.sigstoreKeys.tlogs: unknown field"},
  }));
  CAPTURE(c.spec);
  auto d = parse_documents(head + c.spec + "\n", "f.yaml");
  REQUIRE_FALSE(d.ok());
  CHECK_THAT(d.error().message, Catch::Contains("f.yaml document 1 (t): " + c.expect));
}

TEST_CASE("a TrustRoot's timestamp authority lists its own certificate first",
          "[policy][trustroot]") {
  const auto tsa = sigil::test::TestTsa::create();
  auto d = parse_documents(
      "apiVersion: policy.sigstore.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: t}\nspec: "
      "{sigstoreKeys: {timestampAuthorities: [{certChain: '" +
          base64_encode(tsa.cert.pem() + tsa.root.pem()) + "'}]}}\n",
      "f.yaml");
  INFO((d ? std::string() : d.error().message));
  REQUIRE(d.ok());
  const auto& tsas = d->trust_roots.front().root->timestamp_authorities;
  REQUIRE(tsas.size() == 1);
  CHECK(tsas.front().chain.size() == 2);
  CHECK_FALSE(tsas.front().chain.front().is_ca());
}

TEST_CASE("TrustRoot PEM fields accept base64 of PEM (policy-controller) or PEM itself",
          "[policy][trustroot]") {
  World w;
  auto b64 = parse_documents(w.trust_root_yaml(), "a.yaml");
  REQUIRE(b64.ok());
  const auto& r = *b64->trust_roots.front().root;
  CHECK(r.certificate_authorities.size() == 1);
  CHECK(r.certificate_authorities.front().chain.size() == 2);
  REQUIRE(r.tlogs.size() == 1);
  CHECK(r.tlogs.front().log_id == crypto::key_log_id(w.rekor.log().key));
  CHECK(r.ctlogs.size() == 1);
  const std::string pem_yaml =
      "apiVersion: sigil.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: p}\nspec:\n  "
      "sigstoreKeys:\n    tLogs:\n    - publicKey: |\n" +
      indent(w.rekor.key.public_pem(), 8);
  auto pem = parse_documents(pem_yaml, "b.yaml");
  INFO((pem ? std::string() : pem.error().message));
  REQUIRE(pem.ok());
  CHECK(pem->trust_roots.front().root->tlogs.size() == 1);
}

namespace {

std::string public_key_pem(const crypto::PublicKey& key) {
  const std::string b64 = base64_encode(key.spki_der());
  std::string pem = "-----BEGIN PUBLIC KEY-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) pem += b64.substr(i, 64) + "\n";
  return pem + "-----END PUBLIC KEY-----\n";
}

}  // namespace

// policy-controller's TrustRoot names a log by key and base URL only; the id its entries carry
// is SHA-256(SPKI) for Rekor v1 and CT, and the signed-note key ID for a Rekor v2 Ed25519 log.
// The compiled-in public-good root states both ids for its two logs: a TrustRoot listing the
// same keys must find the same ids.
TEST_CASE("a TrustRoot's Rekor logs are found under the ids public-good's trusted root states",
          "[policy][trustroot][rekor2]") {
  auto good = crypto::parse_trusted_root(
      sigil::test::read_source_file("data/sigstore/trusted_root.public-good.json"), "public-good");
  REQUIRE(good.ok());
  REQUIRE(good->tlogs.size() == 2);
  const crypto::TransparencyLog& v1 = good->tlogs[0];
  const crypto::TransparencyLog& v2 = good->tlogs[1];
  REQUIRE(v2.key.type() == crypto::KeyType::ed25519);
  REQUIRE(v2.base_url == "https://log2025-1.rekor.sigstore.dev");
  CHECK(hex_encode(v2.log_id).substr(0, 16) == "cf1199155bddd051");

  const std::string yaml =
      "apiVersion: policy.sigstore.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: pg}\nspec:\n"
      "  sigstoreKeys:\n    tLogs:\n    - baseURL: " +
      v1.base_url +
      "\n      hashAlgorithm: sha-256\n      publicKey: " + base64_encode(public_key_pem(v1.key)) +
      "\n    - baseURL: " + v2.base_url +
      "\n      hashAlgorithm: sha-256\n      publicKey: " + base64_encode(public_key_pem(v2.key)) +
      "\n    - hashAlgorithm: sha-256\n      publicKey: " + base64_encode(public_key_pem(v2.key)) +
      "\n    ctLogs:\n    - baseURL: https://ct.example\n      publicKey: " +
      base64_encode(public_key_pem(v2.key)) + "\n";
  auto docs = parse_documents(yaml, "pg.yaml");
  INFO((docs ? std::string() : docs.error().message));
  REQUIRE(docs.ok());
  const crypto::TrustedRoot& r = *docs->trust_roots.front().root;

  // Rekor v2: the id of public-good's log2025-1, with its key and URL.
  const crypto::TransparencyLog* found_v2 = crypto::find_log(r.tlogs, v2.log_id);
  REQUIRE(found_v2 != nullptr);
  CHECK(found_v2->key.spki_der() == v2.key.spki_der());
  CHECK(found_v2->base_url == v2.base_url);
  // The same Ed25519 key may serve a Rekor v1 log, whose entries name SHA-256(SPKI).
  const crypto::TransparencyLog* found_v2_as_v1 =
      crypto::find_log(r.tlogs, crypto::key_log_id(v2.key));
  REQUIRE(found_v2_as_v1 != nullptr);
  CHECK(found_v2_as_v1->key.spki_der() == v2.key.spki_der());
  // Rekor v1 (ECDSA): one id, the one public-good states; rekor-tiles' ECDSA id is the same.
  const crypto::TransparencyLog* found_v1 = crypto::find_log(r.tlogs, v1.log_id);
  REQUIRE(found_v1 != nullptr);
  CHECK(found_v1->key.spki_der() == v1.key.spki_der());
  // ECDSA: one entry; Ed25519 with a URL: two; Ed25519 without a URL (no origin a v2
  // checkpoint could name): one.
  CHECK(r.tlogs.size() == 4);
  // CT logs are named by SHA-256(SPKI) only (RFC 6962).
  REQUIRE(r.ctlogs.size() == 1);
  CHECK(r.ctlogs.front().log_id == crypto::key_log_id(v2.key));
}

TEST_CASE("ImagePolicies apply only in their namespace and never replace cluster policies",
          "[policy][namespace]") {
  const std::string yaml =
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: base}\nspec:\n  "
      "images: [{glob: '**'}]\n  authorities: [{static: {action: pass}}]\n---\n"
      "apiVersion: sigil.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: team, namespace: "
      "team-a}\nspec:\n  images: [{glob: 'reg.test/**'}]\n  authorities: [{static: {action: "
      "fail, message: team-a signs its images}}]\n";
  auto ps = parse_policies(yaml, "f.yaml");
  INFO((ps ? std::string() : ps.error().message));
  REQUIRE(ps.ok());
  REQUIRE(ps->size() == 2);
  CHECK(ps->at(1).name == "team-a/team");
  CHECK(ps->at(1).namespace_scope == "team-a");
  PolicySet set(std::move(*ps), NoMatch::deny, 1);
  CHECK(set.has_namespaced());
  auto ref = oci::parse_reference("reg.test/app:v1");
  REQUIRE(ref.ok());
  CHECK(set.match(*ref, "team-a").size() == 2);
  CHECK(set.match(*ref, "team-b").size() == 1);
  CHECK(set.match(*ref).size() == 1);  // no namespace: cluster policies only
}

TEST_CASE("keys and CA chains from Secrets", "[policy][secrets]") {
  World w;
  KeyPair signer = sigil::test::generate_key("P-256");
  const std::string cip =
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: k}\nspec:\n  "
      "images: [{glob: '**'}]\n  authorities:\n  - name: from-secret\n    key:\n      secretRef: "
      "{name: cosign-pub}\n";
  const std::string ip =
      "apiVersion: sigil.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: t, namespace: team}\n"
      "spec:\n  images: [{glob: '**'}]\n  authorities:\n  - key:\n      secretRef: {name: "
      "team-key}\n";
  auto docs = parse_documents(cip + "---\n" + ip, "f.yaml");
  REQUIRE(docs.ok());
  auto refs = secret_refs(docs->policies, "sigil-system");
  REQUIRE(refs.size() == 2);
  CHECK(refs[0].namespace_ == "sigil-system");  // a ClusterImagePolicy: sigil's namespace
  CHECK(refs[1].namespace_ == "team");          // an ImagePolicy: its own
  std::vector<std::string> asked;
  SecretLookup lookup = [&](const std::string& ns,
                            const std::string& name) -> Result<std::map<std::string, std::string>> {
    asked.push_back(ns + "/" + name);
    if (name == "cosign-pub")
      return std::map<std::string, std::string>{{"cosign.pub", signer.public_pem()},
                                                {"README", "x"}};
    if (name == "team-key")
      return std::map<std::string, std::string>{{"anything", signer.public_pem()}};
    return make_error(Errc::not_found, "secrets \"" + name + "\" not found");
  };
  REQUIRE(resolve_secrets(docs->policies, lookup, "sigil-system").ok());
  CHECK(asked == std::vector<std::string>{"sigil-system/cosign-pub", "team/team-key"});
  REQUIRE(link_trust_roots(docs->policies, {}, nullptr).ok());
  crypto::SignedEntity e;
  e.kind = crypto::SignedEntity::Kind::simple_signing;
  e.payload = payload_for(kDigest);
  e.signature = signer.sign(e.payload);
  CHECK(judge(docs->policies[0], kDigest, evidence({e})).satisfied);

  // What goes wrong is named, never the Secret's content.
  auto missing = parse_documents(cip, "f.yaml");
  REQUIRE(missing.ok());
  SecretLookup empty = [](const std::string&,
                          const std::string& name) -> Result<std::map<std::string, std::string>> {
    if (name == "cosign-pub") return std::map<std::string, std::string>{{"a", "x"}, {"b", "y"}};
    return make_error(Errc::not_found, "not found");
  };
  auto st = resolve_secrets(missing->policies, empty, "sigil-system");
  REQUIRE_FALSE(st.ok());
  CHECK_THAT(st.error().message, Catch::Contains("spec.authorities[0].key.secretRef"));
  CHECK_THAT(st.error().message, Catch::Contains("keys a, b; expected cosign.pub"));
  // Unresolved, linking refuses rather than evaluating without a key.
  auto unlinked = parse_documents(cip, "f.yaml");
  REQUIRE(unlinked.ok());
  auto lk = link_trust_roots(unlinked->policies, {}, nullptr);
  REQUIRE_FALSE(lk.ok());
  CHECK_THAT(lk.error().message, Catch::Contains("has not been read"));
  // An ImagePolicy cannot reach into another namespace.
  auto cross = parse_documents(
      "apiVersion: sigil.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: t, namespace: team}\n"
      "spec:\n  images: [{glob: '**'}]\n  authorities:\n  - key:\n      secretRef: {name: k, "
      "namespace: kube-system}\n",
      "f.yaml");
  REQUIRE_FALSE(cross.ok());
  CHECK_THAT(cross.error().message, Catch::Contains("only read Secrets of its own namespace"));
  // Nor drive sigil's own Azure identity at Key Vault (a ClusterImagePolicy may).
  const std::string kms_spec =
      "spec:\n  images: [{glob: '**'}]\n  authorities:\n  - key:\n      kms: "
      "azurekms://v.vault.azure.net/cosign\n";
  auto team_kms = parse_documents(
      "apiVersion: sigil.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: t, namespace: team}\n" +
          kms_spec,
      "f.yaml");
  REQUIRE_FALSE(team_kms.ok());
  CHECK_THAT(team_kms.error().message, Catch::Contains("an ImagePolicy may not use key.kms"));
  auto cluster_kms = parse_documents(
      "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata: {name: c}\n" +
          kms_spec,
      "f.yaml");
  INFO((cluster_kms ? std::string() : cluster_kms.error().message));
  CHECK(cluster_kms.ok());
}

TEST_CASE("a signer the authority does not accept is named first", "[policy][keyless]") {
  // Issue 13, point 5: who signed comes before what was signed. An attestation (or a signature
  // for another image) by a stranger is "signed by the wrong identity", never "verified with
  // keyless authority ... but its payload is unusable".
  World w;
  const std::string yaml =
      w.trust_root_yaml() + "---\n" +
      keyless_policy(
          "trustRootRef: corp\nidentities:\n- issuer: https://accounts.corp.test\n  subject: "
          "release@corp.test\n");
  auto ps = parse_and_link(yaml);
  REQUIRE(ps.ok());
  const Policy& p = ps->front();

  // A cosign v3 DSSE bundle by `email` whose statement has this predicate and subject.
  auto bundle = [&](const std::string& email, const std::string& predicate,
                    const std::string& digest) {
    KeyPair key;
    auto leaf = w.pki.leaf(
        w.pki.leaf_spec(sigil::test::test_epoch(), email, "https://accounts.corp.test"), &key);
    const std::string st =
        R"({"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":")" +
        digest.substr(7) + R"("}}],"predicateType":")" + predicate + R"(","predicate":{}})";
    crypto::SignedEntity e;
    e.kind = crypto::SignedEntity::Kind::dsse;
    e.source = "referrer sha256:dd";
    e.bundle_minor_version = 3;
    e.payload_type = std::string(crypto::kInTotoPayloadType);
    e.payload = st;
    e.signature = key.sign(crypto::dsse_pae(e.payload_type, st));
    e.certificates_der = {leaf.der()};
    e.tlog_entries = {w.rekor.entry(TestLog::dsse(st, e.signature, leaf.pem()),
                                    crypto::to_unix_seconds(sigil::test::test_epoch()) + 30)};
    return e;
  };
  const std::string sign = "https://sigstore.dev/cosign/sign/v1";
  const std::string slsa = "https://slsa.dev/provenance/v1";

  SECTION("an attestation by a stranger") {
    auto r = judge(p, kDigest, evidence({bundle("mallory@corp.test", slsa, kDigest)}));
    INFO(r.message);
    CHECK_FALSE(r.satisfied);
    CHECK(refused(r, Unmet::identity_mismatch));
    CHECK_THAT(r.message, Catch::StartsWith("signed by mallory@corp.test"));
    CHECK_THAT(r.message, !Catch::Contains("unusable"));
  }
  SECTION("a signature for another image by a stranger") {
    auto r = judge(p, kDigest, evidence({bundle("mallory@corp.test", sign, kOther)}));
    CHECK(refused(r, Unmet::identity_mismatch));
    CHECK_THAT(r.message, !Catch::Contains("copied from another image"));
    // Legacy signatures alike.
    auto legacy = judge(p, kDigest, evidence({w.signature(kOther, "mallory@corp.test")}));
    CHECK(refused(legacy, Unmet::identity_mismatch));
  }
  SECTION("the accepted signer's attestation is still described by its payload") {
    auto r = judge(p, kDigest, evidence({bundle("release@corp.test", slsa, kDigest)}));
    CHECK(refused(r, crypto::Failure::wrong_type));  // BAD_SIGNATURE to people (verify/reason_map)
    CHECK_THAT(r.message, Catch::Contains("payload is unusable"));
    auto copied = judge(p, kDigest, evidence({bundle("release@corp.test", sign, kOther)}));
    CHECK(refused(copied, crypto::Failure::digest_mismatch));
  }
  SECTION("a failure before the certificate is proved says nothing of the signer") {
    // A blob's message signature is refused for an image before anything is verified: it must
    // not read as "signed by (no subject alternative name)".
    crypto::SignedEntity blob = bundle("mallory@corp.test", sign, kDigest);
    blob.kind = crypto::SignedEntity::Kind::message_signature;
    blob.message_digest = std::string(32, 'a');
    auto r = judge(p, kDigest, evidence({blob}));
    CHECK_FALSE(refused(r, Unmet::identity_mismatch));
    CHECK_THAT(r.message, !Catch::Contains("signed by"));
    // And a signature that does not verify is a bad signature, whoever the certificate names.
    crypto::SignedEntity bad = bundle("mallory@corp.test", sign, kDigest);
    bad.signature.back() ^= 1;
    CHECK(refused(judge(p, kDigest, evidence({bad})), crypto::Failure::bad_signature));
  }
  SECTION("and its signature admits") {
    auto r = judge(p, kDigest, evidence({bundle("release@corp.test", sign, kDigest)}));
    INFO(r.message);
    CHECK(r.satisfied);
  }
}

TEST_CASE("a keyless authority with attestations checks the attestation's signer and log",
          "[policy][keyless][attestation]") {
  World w;
  const std::string yaml =
      w.trust_root_yaml() + "---\n" +
      keyless_policy(
          "trustRootRef: corp\nidentities:\n- issuer: https://accounts.corp.test\n  subject: "
          "release@corp.test\n",
          "    attestations:\n    - name: provenance\n      predicateType: slsaprovenance1\n");
  auto ps = parse_and_link(yaml);
  INFO((ps.ok() ? std::string() : ps.error().message));
  REQUIRE(ps.ok());
  const Policy& p = ps->front();
  const std::string slsa = "https://slsa.dev/provenance/v1";
  // A legacy .att layer by `email`, logged as a dsse entry.
  auto att = [&](const std::string& email, const std::string& digest, bool logged = true) {
    KeyPair key;
    auto leaf = w.pki.leaf(
        w.pki.leaf_spec(sigil::test::test_epoch(), email, "https://accounts.corp.test"), &key);
    const std::string st =
        R"({"_type":"https://in-toto.io/Statement/v0.1","subject":[{"digest":{"sha256":")" +
        digest.substr(7) + R"("}}],"predicateType":")" + slsa + R"(","predicate":{}})";
    crypto::SignedEntity e;
    e.kind = crypto::SignedEntity::Kind::dsse;
    e.source = ".att layer 0";
    e.payload_type = std::string(crypto::kInTotoPayloadType);
    e.payload = st;
    e.signature = key.sign(crypto::dsse_pae(e.payload_type, st));
    e.certificates_der = {leaf.der()};
    if (logged) {
      e.tlog_entries = {w.rekor.entry(TestLog::dsse(st, e.signature, leaf.pem()),
                                      crypto::to_unix_seconds(sigil::test::test_epoch()) + 30)};
    }
    Evidence ev;
    ev.attestations = {e};
    return ev;
  };
  auto ok = judge(p, kDigest, att("release@corp.test", kDigest));
  INFO(ok.message);
  CHECK(ok.satisfied);
  auto stranger = judge(p, kDigest, att("mallory@corp.test", kDigest));
  CHECK(refused(stranger, Unmet::identity_mismatch));
  CHECK_THAT(stranger.message, Catch::Contains(slsa));
  CHECK_THAT(stranger.message, Catch::Contains("mallory@corp.test"));
  auto unlogged = judge(p, kDigest, att("release@corp.test", kDigest, false));
  CHECK(refused(unlogged, crypto::Failure::tlog));
  auto copied = judge(p, kDigest, att("release@corp.test", kOther));
  CHECK(refused(copied, crypto::Failure::digest_mismatch));
}

TEST_CASE("each link gives a keyless authority its own chain cache", "[policy][keyless]") {
  World w;
  const std::string yaml =
      w.trust_root_yaml() + "---\n" +
      keyless_policy(
          "trustRootRef: corp\nidentities:\n- issuer: https://accounts.corp.test\n  subject: "
          "release@corp.test\n");
  auto docs = parse_documents(yaml, "f.yaml");
  REQUIRE(docs.ok());
  DefaultTrustRoot none = []() -> Result<std::shared_ptr<const crypto::TrustedRoot>> {
    return make_error(Errc::invalid_argument, "none in this test");
  };
  REQUIRE(link_trust_roots(docs->policies, docs->trust_roots, none).ok());
  const Policy& p = docs->policies.front();
  const Authority& a = p.authorities.front();
  REQUIRE(a.chain_cache != nullptr);
  CHECK(requirements_for(a).chain_cache == a.chain_cache.get());

  // Judging signatures fills it; the second signature's chain takes the short path.
  CHECK(judge(p, kDigest, evidence({w.signature(kDigest)})).satisfied);
  CHECK(a.chain_cache->size() == 1);
  CHECK(judge(p, kDigest, evidence({w.signature(kDigest)})).satisfied);
  CHECK(a.chain_cache->hits() == 1);

  // Linking again (new trust material) starts from an empty cache, never the old one.
  const crypto::ChainCache* before = a.chain_cache.get();
  auto keep = a.chain_cache;
  REQUIRE(link_trust_roots(docs->policies, docs->trust_roots, none).ok());
  REQUIRE(a.chain_cache != nullptr);
  CHECK(a.chain_cache.get() != before);
  CHECK(a.chain_cache->size() == 0);
}
