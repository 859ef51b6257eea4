// Tests for attestations (issue 13 point 9): policy-controller's `authorities[].attestations[]`
// parsed with cosign's predicate type abbreviations, and judged over DSSE in-toto statements
// found as legacy .att layers or as bundles: each security check (signer, subject digest,
// predicate type read from the verified statement) has a case that fails without it.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "crypto/dsse.hpp"
#include "pki.hpp"
#include "policy/policy.hpp"

using namespace sigil::policy;
namespace crypto = sigil::crypto;
using sigil::test::generate_key;
using sigil::test::KeyPair;

namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');
const std::string kOther = "sha256:" + std::string(64, 'b');
const std::string kSlsa1 = "https://slsa.dev/provenance/v1";
const std::string kSpdx = "https://spdx.dev/Document";

std::string indent(const std::string& text, int n) {
  std::string out, pad(n, ' ');
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out += pad + text.substr(start, end - start) + "\n";
    start = end + 1;
  }
  return out;
}

std::string policy_yaml(const KeyPair& k, const std::string& attestations,
                        const std::string& extra = "") {
  return "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
         "metadata:\n  name: attested\nspec:\n  images:\n  - glob: \"**\"\n  authorities:\n"
         "  - name: builder\n" +
         extra + "    key:\n      data: |\n" + indent(k.public_pem(), 8) + "    attestations:\n" +
         attestations;
}

Policy one_policy(const std::string& yaml) {
  auto ps = parse_policies(yaml, "test.yaml");
  INFO((ps.ok() ? std::string() : ps.error().message));
  REQUIRE(ps.ok());
  REQUIRE(ps->size() == 1);
  return std::move(ps->front());
}

std::string statement(const std::string& digest, const std::string& predicate) {
  return R"({"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"img","digest":{"sha256":")" +
         digest.substr(7) + R"("}}],"predicateType":")" + predicate + R"(","predicate":{"x":1}})";
}

// A DSSE in-toto statement signed by k: a legacy .att layer (bundle_minor_version 0) or a
// bundle (3).
crypto::SignedEntity attestation(const KeyPair& k, const std::string& digest,
                                 const std::string& predicate, int bundle_version = 0) {
  crypto::SignedEntity e;
  e.kind = crypto::SignedEntity::Kind::dsse;
  e.source = bundle_version ? "referrer sha256:cc" : ".att layer 0";
  e.bundle_minor_version = bundle_version;
  e.payload_type = std::string(crypto::kInTotoPayloadType);
  e.payload = statement(digest, predicate);
  e.signature = k.sign(crypto::dsse_pae(e.payload_type, e.payload));
  return e;
}

Evidence legacy(std::vector<crypto::SignedEntity> atts) {
  Evidence ev;
  ev.attestations = std::move(atts);
  return ev;
}

}  // namespace

TEST_CASE("cosign's predicate type abbreviations map to cosign's URIs", "[policy][attestation]") {
  // cosign cmd/cosign/cli/options/predicate.go PredicateTypeMap (cosign v3).
  const std::vector<std::pair<std::string, std::string>> table = {
      {"slsaprovenance", "https://slsa.dev/provenance/v0.2"},
      {"slsaprovenance02", "https://slsa.dev/provenance/v0.2"},
      {"slsaprovenance1", "https://slsa.dev/provenance/v1"},
      {"link", "https://in-toto.io/Link/v1"},
      {"spdx", "https://spdx.dev/Document"},
      {"spdxjson", "https://spdx.dev/Document"},
      {"cyclonedx", "https://cyclonedx.org/bom"},
      {"vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"},
      {"openvex", "https://openvex.dev/ns"},
      {"custom", "https://cosign.sigstore.dev/attestation/v1"},
  };
  for (const auto& [abbrev, uri] : table) {
    CAPTURE(abbrev);
    CHECK(predicate_uri(abbrev) == uri);
  }
  // Anything else is a URI, used as written (case matters, as in cosign).
  CHECK(predicate_uri("https://example.com/attestation/v1") ==
        "https://example.com/attestation/v1");
  CHECK(predicate_uri("SPDX") == "SPDX");
}

TEST_CASE("attestations are parsed in policy-controller's shape", "[policy][attestation]") {
  const KeyPair k = generate_key();
  Policy p =
      one_policy(policy_yaml(k,
                             "    - name: provenance\n      predicateType: slsaprovenance1\n"
                             "    - name: sbom\n      predicateType: https://spdx.dev/Document\n"));
  REQUIRE(p.authorities.size() == 1);
  const auto& atts = p.authorities[0].attestations;
  REQUIRE(atts.size() == 2);
  CHECK(atts[0].name == "provenance");
  CHECK(atts[0].predicate_type == "slsaprovenance1");
  CHECK(atts[0].predicate_uri == kSlsa1);
  CHECK(atts[1].predicate_uri == kSpdx);
  CHECK(PolicySet::needs_signatures({&p}));
}

TEST_CASE("an authority with attestations passes on verified attestations only",
          "[policy][attestation]") {
  const KeyPair k = generate_key();
  const KeyPair stranger = generate_key();
  const Policy p =
      one_policy(policy_yaml(k, "    - name: provenance\n      predicateType: slsaprovenance1\n"));

  SECTION("a key-signed .att with the right predicate admits") {
    auto r = judge(p, kDigest, legacy({attestation(k, kDigest, kSlsa1)}));
    INFO(r.message);
    CHECK(r.satisfied);
    CHECK(r.authority == "builder");
  }
  SECTION("a bundle attestation admits") {
    Evidence ev;
    ev.signatures = {attestation(k, kDigest, kSlsa1, 3)};
    auto r = judge(p, kDigest, ev);
    INFO(r.message);
    CHECK(r.satisfied);
  }
  SECTION("another predicate type denies, naming the missing one") {
    auto r = judge(p, kDigest, legacy({attestation(k, kDigest, kSpdx)}));
    CHECK_FALSE(r.satisfied);
    CHECK(r.unmet == Unmet::missing_attestation);
    CHECK(r.authority == "builder");
    CHECK_THAT(r.message, Catch::Contains("no verified attestation of type "
                                          "https://slsa.dev/provenance/v1 (slsaprovenance1)"));
    CHECK_THAT(r.message, Catch::Contains("verified attestations are of type " + kSpdx));
    CHECK(r.message.find('\n') == std::string::npos);
  }
  SECTION("an attestation of another digest denies (copied attestation)") {
    auto r = judge(p, kDigest, legacy({attestation(k, kOther, kSlsa1)}));
    CHECK_FALSE(r.satisfied);
    CHECK(r.unmet == Unmet::signature);
    CHECK(r.signature_failure == crypto::Failure::digest_mismatch);
    CHECK_THAT(r.message, Catch::Contains(kSlsa1));
    CHECK_THAT(r.message, Catch::Contains("not this image"));
  }
  SECTION("an attestation signed by another key denies") {
    auto r = judge(p, kDigest, legacy({attestation(stranger, kDigest, kSlsa1)}));
    CHECK_FALSE(r.satisfied);
    CHECK(r.unmet == Unmet::signature);
    CHECK(r.signature_failure == crypto::Failure::bad_signature);
    CHECK_THAT(r.message, Catch::Contains(kSlsa1));
    CHECK_THAT(r.message, Catch::Contains("does not verify with key authority 'builder'"));
  }
  SECTION("a tampered statement denies") {
    auto e = attestation(k, kDigest, kSlsa1);
    e.payload = statement(kDigest, kSlsa1 + "x");
    e.payload.replace(e.payload.find(kSlsa1 + "x"), kSlsa1.size() + 1, kSlsa1);  // same claim
    e.payload.insert(e.payload.size() - 1, " ");
    auto r = judge(p, kDigest, legacy({e}));
    CHECK_FALSE(r.satisfied);
    CHECK(r.signature_failure == crypto::Failure::bad_signature);
  }
  SECTION("nothing at all denies, naming the type") {
    auto r = judge(p, kDigest, Evidence{});
    CHECK_FALSE(r.satisfied);
    CHECK(r.unmet == Unmet::missing_attestation);
    CHECK_THAT(r.message, Catch::Contains("slsaprovenance1"));
    CHECK_THAT(r.message, Catch::Contains("no attestations found"));
  }
  SECTION("a valid image signature is not an attestation") {
    Evidence ev;
    ev.signatures = {attestation(k, kDigest, std::string(crypto::kCosignSignPredicate), 3)};
    auto r = judge(p, kDigest, ev);
    CHECK_FALSE(r.satisfied);
    CHECK(r.unmet == Unmet::missing_attestation);
  }
  SECTION("a DSSE payload that is not in-toto is not an attestation") {
    auto e = attestation(k, kDigest, kSlsa1);
    e.payload_type = "application/vnd.example+json";
    e.signature = k.sign(crypto::dsse_pae(e.payload_type, e.payload));
    auto r = judge(p, kDigest, legacy({e}));
    CHECK_FALSE(r.satisfied);
  }
}

TEST_CASE("every listed predicate type is required", "[policy][attestation]") {
  const KeyPair k = generate_key();
  const Policy p =
      one_policy(policy_yaml(k,
                             "    - name: provenance\n      predicateType: slsaprovenance1\n"
                             "    - name: sbom\n      predicateType: spdxjson\n"));
  auto one = judge(p, kDigest, legacy({attestation(k, kDigest, kSlsa1)}));
  CHECK_FALSE(one.satisfied);
  CHECK(one.unmet == Unmet::missing_attestation);
  CHECK_THAT(one.message, Catch::Contains("https://spdx.dev/Document (spdxjson)"));
  auto both =
      judge(p, kDigest, legacy({attestation(k, kDigest, kSlsa1), attestation(k, kDigest, kSpdx)}));
  INFO(both.message);
  CHECK(both.satisfied);
  // One bad and one good of the same type: the good one counts.
  auto mixed = judge(p, kDigest,
                     legacy({attestation(k, kOther, kSpdx), attestation(k, kDigest, kSlsa1),
                             attestation(k, kDigest, kSpdx)}));
  CHECK(mixed.satisfied);
}

TEST_CASE("signatureFormat limits where attestations are read", "[policy][attestation]") {
  const KeyPair k = generate_key();
  const std::string att = "    - name: provenance\n      predicateType: slsaprovenance1\n";
  const Policy legacy_only = one_policy(policy_yaml(k, att, "    signatureFormat: legacy\n"));
  const Policy bundle_only = one_policy(policy_yaml(k, att, "    signatureFormat: bundle\n"));
  Evidence bundle_ev;
  bundle_ev.signatures = {attestation(k, kDigest, kSlsa1, 3)};
  const Evidence att_ev = legacy({attestation(k, kDigest, kSlsa1)});
  CHECK_FALSE(judge(legacy_only, kDigest, bundle_ev).satisfied);
  CHECK(judge(legacy_only, kDigest, att_ev).satisfied);
  CHECK(judge(bundle_only, kDigest, bundle_ev).satisfied);
  CHECK_FALSE(judge(bundle_only, kDigest, att_ev).satisfied);
}

TEST_CASE("an authority without attestations does not accept an attestation as a signature",
          "[policy][attestation]") {
  const KeyPair k = generate_key();
  auto ps = parse_policies(
      "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
      "metadata:\n  name: signed\nspec:\n  images:\n  - glob: \"**\"\n  authorities:\n"
      "  - name: release\n    key:\n      data: |\n" +
          indent(k.public_pem(), 8),
      "t.yaml");
  REQUIRE(ps.ok());
  auto r = judge(ps->front(), kDigest, legacy({attestation(k, kDigest, kSlsa1)}));
  CHECK_FALSE(r.satisfied);
  CHECK(r.unmet == Unmet::not_signed);
}

TEST_CASE("attestation checks spend the admission's check budget", "[policy][attestation]") {
  const KeyPair k = generate_key();
  const KeyPair stranger = generate_key();
  const Policy p =
      one_policy(policy_yaml(k, "    - name: provenance\n      predicateType: slsaprovenance1\n"));
  const auto ev = [&] {
    return legacy({attestation(stranger, kDigest, kSlsa1), attestation(stranger, kDigest, kSlsa1),
                   attestation(k, kDigest, kSlsa1)});
  };
  const auto evidence = ev();
  const EvidenceFor all = [&](const Authority&) { return &evidence; };

  sigil::WorkBudget two(2);
  auto stopped = judge(p, kDigest, all, JudgeLimits{&two, {}});
  CHECK_FALSE(stopped.satisfied);
  CHECK(stopped.unmet == Unmet::check_budget);
  CHECK(two.spent() == 2);

  sigil::WorkBudget three(3);
  CHECK(judge(p, kDigest, all, JudgeLimits{&three, {}}).satisfied);
  CHECK(three.spent() == 3);
}
