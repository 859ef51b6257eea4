// Certificates: parsing, Fulcio identity extensions, path validation at a given time.
#include <catch2/catch.hpp>

#include <openssl/asn1.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/encoding.hpp"
#include "crypto/trust_root.hpp"
#include "crypto/x509.hpp"
#include "sigstore_pki.hpp"

using namespace sigil;
using namespace sigil::crypto;
using namespace std::chrono_literals;
using sigil::test::CertSpec;
using sigil::test::FulcioPki;
using sigil::test::RawExtension;
using sigil::test::SanEntry;

namespace {

const FulcioPki& pki() {
  static const FulcioPki p = FulcioPki::create();
  return p;
}

TimePoint t0() {
  return sigil::test::test_epoch();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

Result<VerifiedChain> verify_at(const Certificate& leaf, TimePoint at,
                                const CertificateAuthority& ca = pki().authority(),
                                ExtendedKeyUsage eku = ExtendedKeyUsage::code_signing) {
  return verify_certificate(leaf, {}, ca, at, eku);
}

Certificate leaf_with(const CertSpec& spec) {
  return pki().leaf(spec).certificate();
}

}  // namespace

// ---- parsing ------------------------------------------------------------------------------------

TEST_CASE("a certificate parses from DER and PEM and keeps its bytes") {
  auto cert = pki().leaf(t0());
  auto der = Certificate::from_der(cert.der());
  REQUIRE(der.ok());
  CHECK(der->der() == cert.der());
  auto pem = Certificate::from_pem(cert.pem());
  REQUIRE(pem.ok());
  CHECK(pem->der() == cert.der());
  CHECK(der->not_before() == t0());
  CHECK(der->not_after() == t0() + 10min);
  CHECK(der->valid_at(t0()));
  CHECK(der->valid_at(t0() + 10min));
  CHECK_FALSE(der->valid_at(t0() - 1s));
  CHECK_FALSE(der->valid_at(t0() + 10min + 1ms));
  auto key = der->public_key();
  REQUIRE(key.ok());
  CHECK(key->type() == KeyType::ecdsa_p256);
  CHECK(der->spki_der() == key->spki_der());
  CHECK(der->subject_line().empty());
  CHECK_FALSE(der->is_ca());
  CHECK_FALSE(der->is_self_signed());
}

TEST_CASE("CA certificates report subject, CA flag and self-signature") {
  auto root = pki().root.certificate();
  auto inter = pki().intermediate.certificate();
  CHECK(root.subject_line() == "O=sigil-test, CN=sigil-test-root");
  CHECK(inter.subject_line() == "O=sigil-test, CN=sigil-test-intermediate");
  CHECK(root.is_ca());
  CHECK(inter.is_ca());
  CHECK(root.is_self_signed());
  CHECK_FALSE(inter.is_self_signed());
  auto key = root.public_key();
  REQUIRE(key.ok());
  CHECK(key->type() == KeyType::ecdsa_p384);
}

TEST_CASE("parse_pem_certificates keeps order and refuses what is not certificates") {
  std::string two = pki().intermediate.pem() + "\n" + pki().root.pem();
  auto certs = parse_pem_certificates(two);
  REQUIRE(certs.ok());
  REQUIRE(certs->size() == 2);
  CHECK((*certs)[0].der() == pki().intermediate.der());
  CHECK((*certs)[1].der() == pki().root.der());
  CHECK(parse_pem_certificates("  \n" + two + "\n\n").ok());

  CHECK_FALSE(Certificate::from_pem(two).ok());  // from_pem wants exactly one

  struct Bad {
    std::string pem;
    Errc code;
  };
  std::string one = pki().root.pem();
  std::string body = one.substr(one.find('\n') + 1);
  body = body.substr(0, body.find("-----END"));
  auto bad = GENERATE_COPY(
      Bad{"", Errc::parse_error}, Bad{"   \n", Errc::parse_error},
      Bad{"junk\n" + one, Errc::parse_error}, Bad{one + "junk", Errc::parse_error},
      Bad{one + "junk\n" + one, Errc::parse_error},
      Bad{"-----BEGIN PUBLIC KEY-----\n" + body + "-----END PUBLIC KEY-----\n", Errc::parse_error},
      Bad{"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", Errc::invalid_argument},
      Bad{"-----BEGIN CERTIFICATE-----\n" + body, Errc::parse_error},
      Bad{"-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n" + body +
              "-----END CERTIFICATE-----\n",
          Errc::parse_error},
      Bad{"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", Errc::parse_error},
      Bad{"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", Errc::parse_error});
  auto r = parse_pem_certificates(bad.pem);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == bad.code);
}

TEST_CASE("parse_pem_certificates caps the number of certificates at 16") {
  std::string pem;
  for (int i = 0; i < 16; ++i) pem += pki().root.pem();
  CHECK(parse_pem_certificates(pem).ok());
  pem += pki().root.pem();
  auto r = parse_pem_certificates(pem);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
}

TEST_CASE("from_der refuses trailing bytes, truncation and BER") {
  std::string der = pki().root.der();
  CHECK_FALSE(Certificate::from_der("").ok());
  CHECK_FALSE(Certificate::from_der(der + std::string(1, '\0')).ok());
  CHECK_FALSE(Certificate::from_der(der.substr(0, der.size() - 1)).ok());
  // Non-minimal long-form lengths: BER that OpenSSL reads but DER forbids. Re-encoding would
  // not give back the bytes that were signed and hashed.
  REQUIRE(static_cast<unsigned char>(der[1]) == 0x82);
  REQUIRE(static_cast<unsigned char>(der[5]) == 0x82);
  SECTION("outer SEQUENCE") {
    std::string ber = std::string("\x30\x83\x00", 3) + der.substr(2);
    auto r = Certificate::from_der(ber);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "DER"));
  }
  SECTION("TBSCertificate") {
    size_t outer_len =
        (static_cast<unsigned char>(der[2]) << 8 | static_cast<unsigned char>(der[3])) + 1;
    std::string ber = std::string("\x30\x82", 2) + static_cast<char>(outer_len >> 8) +
                      static_cast<char>(outer_len & 0xff) + std::string("\x30\x83\x00", 3) +
                      der.substr(6);
    auto r = Certificate::from_der(ber);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "DER"));
  }
}

TEST_CASE("from_der refuses a repeated extension") {
  CertSpec spec = pki().leaf_spec(t0());
  spec.extra = {RawExtension{"1.3.6.1.4.1.57264.1.2", "push", false},
                RawExtension{"1.3.6.1.4.1.57264.1.2", "push", false}};
  auto r = Certificate::from_der(pki().leaf(spec).der());
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "repeats"));
}

TEST_CASE("validity beyond what a time_point holds is clamped, not wrapped") {
  CertSpec spec = pki().leaf_spec(t0());
  spec.not_after_seconds = 253402300799;  // 9999-12-31T23:59:59Z
  auto cert = pki().leaf(spec).certificate();
  CHECK(cert.not_after() == TimePoint::max());
  CHECK(cert.valid_at(t0() + 24h * 365 * 200));
}

// ---- identity
// ------------------------------------------------------------------------------------

TEST_CASE("certificate_identity reads every SAN type") {
  struct Case {
    SanEntry san;
    SubjectAltName::Type type;
    std::string value;
  };
  auto c = GENERATE(
      Case{SanEntry::email("alice@example.com"), SubjectAltName::Type::email, "alice@example.com"},
      Case{SanEntry::uri("https://github.com/o/r/.github/workflows/w.yml@refs/heads/main"),
           SubjectAltName::Type::uri,
           "https://github.com/o/r/.github/workflows/w.yml@refs/heads/main"},
      Case{SanEntry::uri("spiffe://cluster.local/ns/default/sa/builder"), SubjectAltName::Type::uri,
           "spiffe://cluster.local/ns/default/sa/builder"},
      Case{SanEntry::dns("builder.example.com"), SubjectAltName::Type::dns, "builder.example.com"},
      Case{SanEntry::ip(std::string("\xc0\x00\x02\x01", 4)), SubjectAltName::Type::ip, "192.0.2.1"},
      Case{SanEntry::ip(std::string("\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16)),
           SubjectAltName::Type::ip, "2001:db8::1"},
      Case{SanEntry::ip(std::string("\0\0\0\0\0\0\0\0\0\0\xff\xff\x0a\x00\x00\x01", 16)),
           SubjectAltName::Type::ip, "10.0.0.1"},
      Case{SanEntry::username("octocat!github.com"), SubjectAltName::Type::other_name,
           "octocat!github.com"},
      Case{SanEntry::username("\xc3\xa9t\xc3\xa9"), SubjectAltName::Type::other_name,
           "\xc3\xa9t\xc3\xa9"});
  CertSpec spec = pki().leaf_spec(t0());
  spec.sans = {c.san};
  auto id = certificate_identity(leaf_with(spec));
  REQUIRE(id.ok());
  REQUIRE(id->sans.size() == 1);
  CHECK(id->sans[0].type == c.type);
  CHECK(id->sans[0].value == c.value);
  CHECK(id->issuer == "https://accounts.example.com");
}

TEST_CASE("certificate_identity keeps SAN order and skips foreign OtherNames") {
  CertSpec spec = pki().leaf_spec(t0());
  SanEntry foreign;
  foreign.kind = SanEntry::Kind::other_name;
  foreign.oid = "1.3.6.1.4.1.311.20.2.3";  // Microsoft UPN
  foreign.value = "alice@corp.example";
  spec.sans = {SanEntry::uri("https://a.example/x"), foreign, SanEntry::email("b@example.com"),
               SanEntry::username("carol")};
  auto id = certificate_identity(leaf_with(spec));
  REQUIRE(id.ok());
  REQUIRE(id->sans.size() == 3);
  CHECK(id->sans[0].type == SubjectAltName::Type::uri);
  CHECK(id->sans[1].type == SubjectAltName::Type::email);
  CHECK(id->sans[2].type == SubjectAltName::Type::other_name);
  CHECK(id->sans[2].value == "carol");
  CHECK(std::string(san_type_name(SubjectAltName::Type::other_name)) == "othername");
}

TEST_CASE("certificate_identity refuses malformed SANs") {
  SanEntry bad_username = SanEntry::username("carol");
  bad_username.value_type = V_ASN1_IA5STRING;
  SanEntry bad_utf8 = SanEntry::username("\xc3\x28");
  auto san = GENERATE_COPY(from_range(std::vector<SanEntry>{
      bad_username, bad_utf8, SanEntry::ip(std::string("\x01\x02\x03\x04\x05", 5)),
      SanEntry::email("al\xc3\xa9@example.com")}));
  CertSpec spec = pki().leaf_spec(t0());
  spec.sans = {san};
  auto id = certificate_identity(leaf_with(spec));
  REQUIRE_FALSE(id.ok());
  CHECK(id.error().code == Errc::parse_error);
}

TEST_CASE("the OIDC issuer: 1.3.6.1.4.1.57264.1.8 or .1.1, and both must agree") {
  CertSpec spec = pki().leaf_spec(t0());
  spec.issuer_v1 = "https://v2.example.com";
  spec.issuer_v2 = "https://v2.example.com";
  auto both = certificate_identity(leaf_with(spec));
  REQUIRE(both.ok());
  CHECK(both->issuer == "https://v2.example.com");
  // Two that disagree: which is the issuer depends on the verifier, so neither is taken.
  spec.issuer_v1 = "https://v1.example.com";
  auto differ = certificate_identity(leaf_with(spec));
  REQUIRE_FALSE(differ.ok());
  CHECK(differ.error().code == Errc::parse_error);
  CHECK(contains(differ.error().message, "disagree"));

  spec.issuer_v2.reset();
  auto v1 = certificate_identity(leaf_with(spec));
  REQUIRE(v1.ok());
  CHECK(v1->issuer == "https://v1.example.com");

  spec.issuer_v1.reset();
  spec.issuer_v2 = "https://v2.example.com";
  auto v2 = certificate_identity(leaf_with(spec));
  REQUIRE(v2.ok());
  CHECK(v2->issuer == "https://v2.example.com");

  spec.issuer_v2.reset();
  auto none = certificate_identity(leaf_with(spec));
  REQUIRE(none.ok());
  CHECK(none->issuer.empty());
}

TEST_CASE("a malformed .1.8 issuer is an error, never replaced by .1.1") {
  auto raw = GENERATE(std::string("https://raw.example.com"),                // raw bytes, not DER
                      sigil::test::der_ia5("https://ia5.example.com"),       // wrong string type
                      sigil::test::der_utf8("https://x.example.com") + "x",  // trailing byte
                      sigil::test::der_utf8("\xff\xfe"),                     // not UTF-8
                      std::string());
  CertSpec spec = pki().leaf_spec(t0());
  spec.issuer_v1 = "https://v1.example.com";
  spec.issuer_v2.reset();
  spec.extra = {RawExtension{sigil::test::kOidFulcioIssuerV2, raw, false}};
  auto id = certificate_identity(leaf_with(spec));
  REQUIRE_FALSE(id.ok());
  CHECK(contains(id.error().message, "1.3.6.1.4.1.57264.1.8"));
}

TEST_CASE("the public-good Fulcio leaf reads as its workflow identity") {
  auto leaf = Certificate::from_der(sigil::test::public_good_sample().leaf_der);
  REQUIRE(leaf.ok());
  auto id = certificate_identity(*leaf);
  REQUIRE(id.ok());
  REQUIRE(id->sans.size() == 1);
  CHECK(id->sans[0].type == SubjectAltName::Type::uri);
  CHECK(id->sans[0].value ==
        "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/"
        "workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main");
  CHECK(id->issuer == "https://token.actions.githubusercontent.com");
  CHECK(leaf->subject_line().empty());
}

// ---- path validation
// -----------------------------------------------------------------------------

TEST_CASE("a Fulcio-like leaf validates along leaf -> intermediate -> root") {
  auto leaf = pki().leaf(t0()).certificate();
  // Empty subject with a critical SAN: OpenSSL must not treat the SAN as unhandled.
  auto chain = verify_at(leaf, t0() + 1min);
  REQUIRE(chain.ok());
  REQUIRE(chain->path.size() == 3);
  CHECK(chain->path[0].der() == leaf.der());
  CHECK(chain->issuer().der() == pki().intermediate.der());
  CHECK(chain->path[2].der() == pki().root.der());
  // Boundaries of the leaf's window, inclusive at the start.
  CHECK(verify_at(leaf, t0()).ok());
  CHECK(verify_at(leaf, t0() + 10min - 1s).ok());
}

TEST_CASE("path validation: a leaf from another CA fails") {
  static const FulcioPki other = FulcioPki::create();
  auto leaf = other.leaf(t0()).certificate();
  auto r = verify_at(leaf, t0() + 1min);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::verification);
  // ... and so does our leaf against the other CA.
  CHECK_FALSE(verify_at(pki().leaf(t0()).certificate(), t0() + 1min, other.authority()).ok());
}

TEST_CASE("path validation: a leaf signed by the wrong key fails") {
  // Same issuer name as the intermediate, but signed by a stranger's key.
  auto stranger = sigil::test::generate_key("P-384");
  auto forged = sigil::test::issue(pki().leaf_spec(t0()), sigil::test::generate_key(),
                                   pki().intermediate, stranger);
  CHECK_FALSE(verify_at(forged.certificate(), t0() + 1min).ok());
}

TEST_CASE("path validation: the leaf must be valid at the signing time") {
  auto leaf = pki().leaf(t0()).certificate();
  auto at = GENERATE(t0() - 1s, t0() + 10min + 1s, t0() + 24h);
  auto r = verify_at(leaf, at);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::verification);
  // The leaf's notAfter second itself: OpenSSL's time check treats it as expired; the
  // sub-second check below it must at least never accept a time after notAfter.
  CHECK_FALSE(verify_at(leaf, t0() + 10min + 1ms).ok());
}

TEST_CASE("path validation: every CA on the path must be valid at the signing time (hybrid)") {
  // An intermediate that only becomes valid an hour after the leaf was issued.
  FulcioPki late = FulcioPki::create();
  CertSpec inter;
  inter.subject = "O=sigil-test,CN=late-intermediate";
  inter.not_before = t0() + 1h;
  inter.not_after = t0() + 48h;
  inter.ca = true;
  inter.path_len = 0;
  inter.key_usage = "critical,keyCertSign,cRLSign";
  auto inter_key = sigil::test::generate_key("P-384");
  auto inter_cert = sigil::test::issue(inter, inter_key, late.root, late.root_key);
  auto leaf =
      sigil::test::issue(late.leaf_spec(t0()), sigil::test::generate_key(), inter_cert, inter_key);
  CertificateAuthority ca;
  ca.uri = "https://late.test";
  ca.chain = {inter_cert.certificate(), late.root.certificate()};
  auto r = verify_at(leaf.certificate(), t0() + 1min, ca);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::verification);

  // An expired root fails the same way.
  CertSpec old_root;
  old_root.subject = "O=sigil-test,CN=old-root";
  old_root.not_before = t0() - 48h;
  old_root.not_after = t0() - 1h;
  old_root.ca = true;
  old_root.key_usage = "critical,keyCertSign,cRLSign";
  auto old_key = sigil::test::generate_key("P-256");
  auto old = sigil::test::self_signed(old_root, old_key);
  auto leaf2 = sigil::test::issue(late.leaf_spec(t0()), sigil::test::generate_key(), old, old_key);
  CertificateAuthority old_ca;
  old_ca.chain = {old.certificate()};
  CHECK_FALSE(verify_at(leaf2.certificate(), t0() + 1min, old_ca).ok());
}

TEST_CASE("path validation: the signing time must lie inside the CA's validFor") {
  auto leaf = pki().leaf(t0()).certificate();
  TimePoint at = t0() + 1min;
  CertificateAuthority ca = pki().authority();
  SECTION("start after the signing time") {
    ca.valid_for.start = at + 1s;
    auto r = verify_at(leaf, at, ca);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "validity window"));
  }
  SECTION("end before the signing time") {
    ca.valid_for.end = at - 1ms;
    CHECK_FALSE(verify_at(leaf, at, ca).ok());
  }
  SECTION("both ends are inclusive") {
    ca.valid_for.start = at;
    ca.valid_for.end = at;
    CHECK(verify_at(leaf, at, ca).ok());
  }
}

TEST_CASE("path validation: the leaf must carry the requested extended key usage") {
  CertSpec spec = pki().leaf_spec(t0());
  auto eku = GENERATE(std::vector<std::string>{}, std::vector<std::string>{"serverAuth"},
                      std::vector<std::string>{"timeStamping"},
                      std::vector<std::string>{"anyExtendedKeyUsage"});
  spec.ext_key_usage = eku;
  auto r = verify_at(leaf_with(spec), t0() + 1min);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "code signing"));
}

TEST_CASE("path validation: a code-signing leaf is not a timestamping certificate") {
  auto r = verify_at(pki().leaf(t0()).certificate(), t0() + 1min, pki().authority(),
                     ExtendedKeyUsage::time_stamping);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "time stamping"));
}

TEST_CASE("path validation: an intermediate whose EKU excludes code signing fails") {
  FulcioPki p = FulcioPki::create();
  CertSpec inter;
  inter.subject = "O=sigil-test,CN=tls-intermediate";
  inter.not_before = t0() - 24h;
  inter.not_after = t0() + 24h;
  inter.ca = true;
  inter.key_usage = "critical,keyCertSign";
  inter.ext_key_usage = {"serverAuth"};
  auto key = sigil::test::generate_key("P-384");
  auto inter_cert = sigil::test::issue(inter, key, p.root, p.root_key);
  auto leaf = sigil::test::issue(p.leaf_spec(t0()), sigil::test::generate_key(), inter_cert, key);
  CertificateAuthority ca;
  ca.chain = {inter_cert.certificate(), p.root.certificate()};
  auto r = verify_at(leaf.certificate(), t0() + 1min, ca);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "does not permit code signing"));
}

TEST_CASE("path validation: a leaf that is a CA fails") {
  CertSpec spec = pki().leaf_spec(t0());
  spec.ca = true;
  auto r = verify_at(leaf_with(spec), t0() + 1min);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "is a CA"));
}

TEST_CASE("path validation: the signing certificate listed as a CA's anchor fails") {
  // A trusted root that holds the signing certificate itself (its PEM pasted where the CA's
  // belongs): OpenSSL's partial-chain mode accepts the leaf as its own anchor, a path of one.
  auto leaf = pki().leaf(t0()).certificate();
  CertificateAuthority ca;
  ca.uri = "https://leaf-as-anchor.test";
  ca.chain = {leaf};
  ChainCache cache;
  for (ChainCache* c : {static_cast<ChainCache*>(nullptr), &cache}) {
    auto r = verify_certificate(leaf, {}, ca, t0() + 1min, ExtendedKeyUsage::code_signing, c);
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "itself the trust anchor"));
  }
}

TEST_CASE("path validation: an unknown critical extension fails") {
  CertSpec spec = pki().leaf_spec(t0());
  spec.extra = {RawExtension{"1.3.6.1.4.1.99999.1", sigil::test::der_utf8("x"), true}};
  auto r = verify_at(leaf_with(spec), t0() + 1min);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "critical"));
}

TEST_CASE("path validation: at most 8 certificates on the path") {
  FulcioPki p = FulcioPki::create();
  // root -> i1 -> ... -> iN -> leaf; the CA lists them leaf-most first.
  auto build = [&](int intermediates) {
    std::vector<sigil::test::Cert> chain;
    sigil::test::Cert issuer = p.root;
    sigil::test::KeyPair issuer_key = p.root_key;
    for (int i = 0; i < intermediates; ++i) {
      CertSpec s;
      s.subject = "O=sigil-test,CN=deep-" + std::to_string(i);
      s.not_before = t0() - 24h;
      s.not_after = t0() + 24h;
      s.ca = true;
      s.key_usage = "critical,keyCertSign";
      auto k = sigil::test::generate_key("P-256");
      issuer = sigil::test::issue(s, k, issuer, issuer_key);
      issuer_key = k;
      chain.insert(chain.begin(), issuer);
    }
    auto leaf =
        sigil::test::issue(p.leaf_spec(t0()), sigil::test::generate_key(), issuer, issuer_key);
    CertificateAuthority ca;
    for (const auto& c : chain) ca.chain.push_back(c.certificate());
    ca.chain.push_back(p.root.certificate());
    return verify_at(leaf.certificate(), t0() + 1min, ca);
  };
  auto ok = build(6);  // leaf + 6 + root = 8
  REQUIRE(ok.ok());
  CHECK(ok->path.size() == 8);
  auto r = build(7);  // 9
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::verification);
}

TEST_CASE(
    "path validation: intermediates may come from the signature; the anchor is chain.back()") {
  auto leaf = pki().leaf(t0()).certificate();
  CertificateAuthority root_only;
  root_only.chain = {pki().root.certificate()};
  // Without the intermediate there is no path.
  CHECK_FALSE(verify_at(leaf, t0() + 1min, root_only).ok());
  auto r = verify_certificate(leaf, {pki().intermediate.certificate()}, root_only, t0() + 1min,
                              ExtendedKeyUsage::code_signing);
  REQUIRE(r.ok());
  CHECK(r->path.size() == 3);
  // A CA that lists only the intermediate trusts it as the anchor (Go's semantics).
  CertificateAuthority inter_only;
  inter_only.chain = {pki().intermediate.certificate()};
  auto r2 = verify_at(leaf, t0() + 1min, inter_only);
  REQUIRE(r2.ok());
  CHECK(r2->path.size() == 2);
  // An untrusted copy of the root does not make another CA's leaf trusted.
  static const FulcioPki other = FulcioPki::create();
  CHECK_FALSE(verify_certificate(other.leaf(t0()).certificate(),
                                 {other.intermediate.certificate(), other.root.certificate()},
                                 pki().authority(), t0() + 1min, ExtendedKeyUsage::code_signing)
                  .ok());
}

TEST_CASE(
    "verify_certificate_any: a CA that lists its intermediates is reached only through them") {
  // A sibling of the listed intermediate, issued by the same root but not in the trust root (a
  // retired one, a sub-CA the trust root does not name), brought along by the signature.
  FulcioPki sibling = pki();
  sibling.intermediate_key = sigil::test::generate_key("P-384");
  CertSpec inter;
  inter.subject = "O=sigil-test,CN=sigil-test-unlisted-intermediate";
  inter.not_before = pki().start - 24h;
  inter.not_after = pki().start + 24h * 3650;
  inter.ca = true;
  inter.key_usage = "critical,keyCertSign,cRLSign";
  inter.path_len = 0;
  inter.ext_key_usage = {"codeSigning"};
  sibling.intermediate =
      sigil::test::issue(inter, sibling.intermediate_key, pki().root, pki().root_key);
  const auto leaf = sibling.leaf(t0()).certificate();
  const std::vector<Certificate> brought = {sibling.intermediate.certificate()};
  // As the trust root lists it ({intermediate, root}): the unlisted one is not used.
  auto listed = verify_certificate_any(leaf, brought, {pki().authority()}, t0() + 1min,
                                       ExtendedKeyUsage::code_signing);
  CHECK_FALSE(listed.ok());
  // A CA of the root alone (a policy's ca-cert): the signature's intermediates complete it.
  CertificateAuthority root_only;
  root_only.chain = {pki().root.certificate()};
  auto rooted = verify_certificate_any(leaf, brought, {root_only}, t0() + 1min,
                                       ExtendedKeyUsage::code_signing);
  INFO((rooted ? std::string() : rooted.error().message));
  CHECK(rooted.ok());
  // The listed intermediate's own leaves verify either way.
  CHECK(verify_certificate_any(pki().leaf(t0()).certificate(), brought, {pki().authority()},
                               t0() + 1min, ExtendedKeyUsage::code_signing)
            .ok());
}

TEST_CASE("path validation: a CA with no certificates fails cleanly") {
  CertificateAuthority empty;
  empty.uri = "https://empty.test";
  auto r = verify_at(pki().leaf(t0()).certificate(), t0() + 1min, empty);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "no certificates"));
}

TEST_CASE("verify_certificate_any tries each CA") {
  static const FulcioPki other = FulcioPki::create();
  auto leaf = pki().leaf(t0()).certificate();
  auto r = verify_certificate_any(leaf, {}, {other.authority(), pki().authority()}, t0() + 1min,
                                  ExtendedKeyUsage::code_signing);
  REQUIRE(r.ok());
  CHECK(r->issuer().der() == pki().intermediate.der());
  CHECK_FALSE(verify_certificate_any(leaf, {}, {other.authority()}, t0() + 1min,
                                     ExtendedKeyUsage::code_signing)
                  .ok());
  auto none = verify_certificate_any(leaf, {}, {}, t0() + 1min, ExtendedKeyUsage::code_signing);
  REQUIRE_FALSE(none.ok());
  CHECK(contains(none.error().message, "no certificate authority"));
}

TEST_CASE("the public-good leaf validates at its Rekor time and not an hour later") {
  auto root = parse_trusted_root(
      sigil::test::read_source_file("data/sigstore/trusted_root.public-good.json"), "public-good");
  REQUIRE(root.ok());
  auto leaf = Certificate::from_der(sigil::test::public_good_sample().leaf_der);
  REQUIRE(leaf.ok());
  TimePoint at = from_unix_seconds(sigil::test::public_good_sample().integrated_time);
  auto r = verify_certificate_any(*leaf, {}, root->certificate_authorities, at,
                                  ExtendedKeyUsage::code_signing);
  REQUIRE(r.ok());
  CHECK(r->path.size() == 3);
  CHECK(r->issuer().subject_line() == "O=sigstore.dev, CN=sigstore-intermediate");
  CHECK_FALSE(verify_certificate_any(*leaf, {}, root->certificate_authorities, at + 1h,
                                     ExtendedKeyUsage::code_signing)
                  .ok());
}

// ---- time ---------------------------------------------------------------------------------------

TEST_CASE("parse_rfc3339 reads protobuf JSON timestamps") {
  struct Case {
    const char* text;
    int64_t seconds;
    int64_t nanos;
  };
  auto c = GENERATE(Case{"2021-01-12T11:53:27Z", 1610452407, 0},
                    Case{"2022-12-31T23:59:59.999Z", 1672531199, 999000000},
                    Case{"2022-12-31T23:59:59.123456789Z", 1672531199, 123456789},
                    Case{"2022-12-31T23:59:59.5Z", 1672531199, 500000000},
                    Case{"2021-01-12T12:53:27+01:00", 1610452407, 0},
                    Case{"2021-01-12T06:23:27-05:30", 1610452407, 0},
                    Case{"2021-01-12t11:53:27z", 1610452407, 0},
                    Case{"2024-02-29T00:00:00Z", 1709164800, 0}, Case{"1970-01-01T00:00:00Z", 0, 0},
                    Case{"1969-12-31T23:59:59Z", -1, 0});
  auto t = parse_rfc3339(c.text);
  REQUIRE(t.ok());
  auto expect = from_unix_seconds(c.seconds) +
                std::chrono::duration_cast<TimePoint::duration>(std::chrono::nanoseconds(c.nanos));
  CHECK(*t == expect);
}

TEST_CASE("parse_rfc3339 refuses what is not RFC 3339") {
  auto text = GENERATE("", "2021-01-12", "2021-01-12T11:53:27", "2021-01-12 11:53:27Z",
                       "2021-01-12T11:53:27.Z", "2021-01-12T11:53:27.1234567890Z",
                       "2021-02-29T00:00:00Z", "2021-13-01T00:00:00Z", "2021-01-32T00:00:00Z",
                       "2021-01-12T24:00:00Z", "2021-01-12T11:60:00Z", "2021-01-12T11:53:60Z",
                       "2021-01-12T11:53:27Zjunk", "2021-01-12T11:53:27+1:00",
                       "2021-01-12T11:53:27+01", "2021-1-12T11:53:27Z", "+2021-01-12T11:53:27Z");
  CHECK_FALSE(parse_rfc3339(text).ok());
}

TEST_CASE("far-future RFC 3339 times clamp to TimePoint::max") {
  auto t = parse_rfc3339("9999-12-31T23:59:59Z");
  REQUIRE(t.ok());
  CHECK(*t == TimePoint::max());
}

TEST_CASE("format_time writes RFC 3339 UTC and round-trips") {
  CHECK(format_time(from_unix_seconds(1710869186)) == "2024-03-19T17:26:26Z");
  CHECK(format_time(from_unix_seconds(0)) == "1970-01-01T00:00:00Z");
  CHECK(format_time(from_unix_seconds(-1)) == "1969-12-31T23:59:59Z");
  auto text = GENERATE("2022-12-31T23:59:59.999Z", "2021-01-12T11:53:27Z",
                       "2000-02-29T12:00:00.000000001Z");
  auto t = parse_rfc3339(text);
  REQUIRE(t.ok());
  CHECK(format_time(*t) == text);
}

// ---- the chain cache ------------------------------------------------------------------------
//
// Each case warms a ChainCache with a path that validates, then asks the cache-shortened
// validation about something that must still be refused. Every refusal is also checked without
// the cache (the cache must never change a verdict), and `hits()` shows the short path ran.

namespace {

using sigil::test::Cert;
using sigil::test::KeyPair;

// A root and an intermediate with the given validity, Fulcio's profile otherwise.
struct MiniCa {
  KeyPair root_key = sigil::test::generate_key("P-384");
  KeyPair inter_key = sigil::test::generate_key("P-384");
  Cert root;
  Cert inter;

  static MiniCa make(TimePoint root_from, TimePoint root_to, TimePoint inter_from,
                     TimePoint inter_to, std::vector<RawExtension> root_extra = {},
                     const std::string& root_subject = "O=sigil-test,CN=cache-root") {
    MiniCa m;
    CertSpec root;
    root.subject = root_subject;
    root.not_before = root_from;
    root.not_after = root_to;
    root.ca = true;
    root.key_usage = "critical,keyCertSign,cRLSign";
    root.extra = std::move(root_extra);
    m.root = sigil::test::self_signed(root, m.root_key);
    CertSpec inter;
    inter.subject = "O=sigil-test,CN=cache-intermediate";
    inter.not_before = inter_from;
    inter.not_after = inter_to;
    inter.ca = true;
    inter.path_len = 0;
    inter.key_usage = "critical,keyCertSign,cRLSign";
    inter.ext_key_usage = {"codeSigning"};
    m.inter = sigil::test::issue(inter, m.inter_key, m.root, m.root_key);
    return m;
  }
  CertificateAuthority authority() const {
    CertificateAuthority ca;
    ca.uri = "https://cache.test";
    ca.chain = {inter.certificate(), root.certificate()};
    return ca;
  }
  // A Fulcio-like leaf valid for ten minutes from not_before, issued by the intermediate.
  Certificate leaf(TimePoint not_before, const std::string& email = "signer@example.com") const {
    return sigil::test::issue(pki().leaf_spec(not_before, email), sigil::test::generate_key(),
                              inter, inter_key)
        .certificate();
  }
};

Result<VerifiedChain> verify_with(ChainCache* cache, const Certificate& leaf, TimePoint at,
                                  const CertificateAuthority& ca,
                                  const std::vector<Certificate>& untrusted = {}) {
  return verify_certificate(leaf, untrusted, ca, at, ExtendedKeyUsage::code_signing, cache);
}

}  // namespace

TEST_CASE("chain cache: a second leaf under a remembered intermediate takes the short path") {
  ChainCache cache;
  auto ca = pki().authority();
  auto first = verify_with(&cache, pki().leaf(t0()).certificate(), t0() + 1min, ca);
  REQUIRE(first.ok());
  CHECK(cache.size() == 1);
  CHECK(cache.hits() == 0);
  auto leaf = pki().leaf(t0() + 5min).certificate();
  auto second = verify_with(&cache, leaf, t0() + 6min, ca);
  REQUIRE(second.ok());
  CHECK(cache.hits() == 1);
  REQUIRE(second->path.size() == 3);
  CHECK(second->path[0].der() == leaf.der());
  CHECK(second->issuer().der() == pki().intermediate.der());
  CHECK(second->path[2].der() == pki().root.der());
  // An intermediate the signature brings (the legacy chain annotation) keys the same entry.
  CertificateAuthority root_only;
  root_only.chain = {pki().root.certificate()};
  ChainCache other;
  REQUIRE(verify_with(&other, pki().leaf(t0()).certificate(), t0() + 1min, root_only,
                      {pki().intermediate.certificate()})
              .ok());
  REQUIRE(
      verify_with(&other, leaf, t0() + 6min, root_only, {pki().intermediate.certificate()}).ok());
  CHECK(other.hits() == 1);
  // ... and without it there is still no path, cache or not.
  CHECK_FALSE(verify_with(&other, leaf, t0() + 6min, root_only).ok());
}

TEST_CASE("chain cache: a signing time outside the intermediate's validity is still refused") {
  // The intermediate expires at t0 + 1 h; its key still signs leaves after that.
  const MiniCa m = MiniCa::make(t0() - 24h, t0() + 3650 * 24h, t0() - 24h, t0() + 1h);
  const auto ca = m.authority();
  ChainCache cache;
  REQUIRE(verify_with(&cache, m.leaf(t0()), t0() + 1min, ca).ok());
  REQUIRE(cache.size() == 1);
  const auto hits = cache.hits();

  SECTION("a leaf signed after the intermediate expired") {
    auto late = m.leaf(t0() + 2h);
    CHECK_FALSE(verify_with(nullptr, late, t0() + 2h + 1min, ca).ok());
    CHECK_FALSE(verify_with(&cache, late, t0() + 2h + 1min, ca).ok());
  }
  SECTION("the intermediate's notAfter second itself (OpenSSL's exclusive end)") {
    auto leaf = m.leaf(t0() + 55min);
    CHECK_FALSE(verify_with(nullptr, leaf, t0() + 1h, ca).ok());
    CHECK_FALSE(verify_with(&cache, leaf, t0() + 1h, ca).ok());
    REQUIRE(verify_with(&cache, leaf, t0() + 1h - 1s, ca).ok());
    CHECK(cache.hits() == hits + 1);
  }
  SECTION("before the intermediate's notBefore") {
    const MiniCa n = MiniCa::make(t0() - 24h, t0() + 3650 * 24h, t0(), t0() + 24h);
    ChainCache c2;
    REQUIRE(verify_with(&c2, n.leaf(t0() + 1h), t0() + 1h + 1min, n.authority()).ok());
    auto early = n.leaf(t0() - 30min);
    CHECK_FALSE(verify_with(nullptr, early, t0() - 29min, n.authority()).ok());
    CHECK_FALSE(verify_with(&c2, early, t0() - 29min, n.authority()).ok());
  }
}

TEST_CASE("chain cache: a signing time outside the root's validity is still refused") {
  // The root expires at t0 + 1 h, before the intermediate it issued (valid for days): the short
  // path never shows the root to OpenSSL, so the remembered window must hold the root's end.
  const MiniCa m = MiniCa::make(t0() - 24h, t0() + 1h, t0() - 24h, t0() + 48h);
  const auto ca = m.authority();
  ChainCache cache;
  REQUIRE(verify_with(&cache, m.leaf(t0()), t0() + 1min, ca).ok());
  REQUIRE(cache.size() == 1);
  auto leaf = m.leaf(t0() + 55min);
  // The root's notAfter second: expired for OpenSSL, although Certificate::valid_at includes it.
  CHECK_FALSE(verify_with(nullptr, leaf, t0() + 1h, ca).ok());
  CHECK_FALSE(verify_with(&cache, leaf, t0() + 1h, ca).ok());
  CHECK_FALSE(verify_with(&cache, leaf, t0() + 1h + 1s, ca).ok());
  REQUIRE(verify_with(&cache, leaf, t0() + 1h - 1s, ca).ok());
  CHECK(cache.hits() == 1);
}

TEST_CASE("chain cache: the same intermediate under another trust root is refused") {
  // Warm with the genuine CA {intermediate, root}, then present a CA entry that lists the same
  // intermediate DER under a root that did not issue it: one with the same name and another key
  // (OpenSSL chains by name, then the signature fails), and one of another CA altogether. A
  // cache keyed on the intermediate alone would answer from the genuine root's entry.
  const MiniCa m = MiniCa::make(t0() - 24h, t0() + 3650 * 24h, t0() - 24h, t0() + 3650 * 24h);
  ChainCache cache;
  REQUIRE(verify_with(&cache, m.leaf(t0()), t0() + 1min, m.authority()).ok());
  REQUIRE(cache.size() == 1);

  CertificateAuthority swapped;
  swapped.uri = "https://swapped.test";
  SECTION("a root with the same subject and another key") {
    const MiniCa twin = MiniCa::make(t0() - 24h, t0() + 3650 * 24h, t0() - 24h, t0() + 3650 * 24h);
    REQUIRE(twin.root.certificate().subject_line() == m.root.certificate().subject_line());
    swapped.chain = {m.inter.certificate(), twin.root.certificate()};
  }
  SECTION("another CA's root") {
    swapped.chain = {m.inter.certificate(), pki().root.certificate()};
  }
  auto leaf = m.leaf(t0() + 1min);
  CHECK_FALSE(verify_with(nullptr, leaf, t0() + 2min, swapped).ok());
  CHECK_FALSE(verify_with(&cache, leaf, t0() + 2min, swapped).ok());
  CHECK(cache.hits() == 0);
  // The genuine CA still takes the short path.
  CHECK(verify_with(&cache, leaf, t0() + 2min, m.authority()).ok());
  CHECK(cache.hits() == 1);
}

TEST_CASE("chain cache: a leaf not issued by the remembered intermediate is refused") {
  ChainCache cache;
  auto ca = pki().authority();
  REQUIRE(verify_with(&cache, pki().leaf(t0()).certificate(), t0() + 1min, ca).ok());
  REQUIRE(cache.size() == 1);
  // The intermediate's name and key identifier, a stranger's signature.
  auto stranger = sigil::test::generate_key("P-384");
  auto forged = sigil::test::issue(pki().leaf_spec(t0()), sigil::test::generate_key(),
                                   pki().intermediate, stranger)
                    .certificate();
  CHECK_FALSE(verify_with(nullptr, forged, t0() + 1min, ca).ok());
  CHECK_FALSE(verify_with(&cache, forged, t0() + 1min, ca).ok());
  // A leaf that is itself a CA, under the right intermediate: the leaf's own checks still run.
  CertSpec spec = pki().leaf_spec(t0());
  spec.ca = true;
  CHECK_FALSE(verify_with(&cache, leaf_with(spec), t0() + 1min, ca).ok());
  // An unknown critical extension on the leaf.
  CertSpec crit = pki().leaf_spec(t0());
  crit.extra = {RawExtension{"1.3.6.1.4.1.99999.1", sigil::test::der_utf8("x"), true}};
  CHECK_FALSE(verify_with(&cache, leaf_with(crit), t0() + 1min, ca).ok());
  CHECK(cache.hits() == 0);
}

TEST_CASE("chain cache: paths under a name-constrained root are not remembered") {
  // NameConstraints: permittedSubtrees { rfc822Name "example.com" }. OpenSSL checks the leaf's
  // emails against it only when the root is on the chain it builds, which the short path's is
  // not; so such a path is validated in full every time.
  const std::string nc = std::string("\x30\x11\xa0\x0f\x30\x0d\x81\x0b", 8) + "example.com";
  const MiniCa m = MiniCa::make(t0() - 24h, t0() + 3650 * 24h, t0() - 24h, t0() + 3650 * 24h,
                                {RawExtension{"2.5.29.30", nc, true}});
  ChainCache cache;
  REQUIRE(verify_with(&cache, m.leaf(t0(), "signer@example.com"), t0() + 1min, m.authority()).ok());
  auto outside = m.leaf(t0(), "signer@elsewhere.test");
  CHECK_FALSE(verify_with(nullptr, outside, t0() + 1min, m.authority()).ok());
  CHECK_FALSE(verify_with(&cache, outside, t0() + 1min, m.authority()).ok());
  CHECK(cache.size() == 0);
}

TEST_CASE("chain cache: the number of entries is bounded") {
  ChainCache cache(2);
  CHECK(cache.capacity() == 2);
  std::vector<MiniCa> cas;
  for (int i = 0; i < 3; ++i) {
    cas.push_back(MiniCa::make(t0() - 24h, t0() + 3650 * 24h, t0() - 24h, t0() + 3650 * 24h));
  }
  for (const auto& m : cas) {
    REQUIRE(verify_with(&cache, m.leaf(t0()), t0() + 1min, m.authority()).ok());
    CHECK(cache.size() <= 2);
  }
  // The oldest was evicted: validated in full again (and remembered again), still accepted.
  CHECK(verify_with(&cache, cas[0].leaf(t0()), t0() + 1min, cas[0].authority()).ok());
  CHECK(cache.hits() == 0);
  CHECK(verify_with(&cache, cas[2].leaf(t0()), t0() + 1min, cas[2].authority()).ok());
  CHECK(cache.hits() == 1);
  CHECK(cache.size() == 2);
}
