// Embedded SCTs (RFC 6962) in Fulcio-like leaves.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "crypto/sct.hpp"
#include "crypto/trust_root.hpp"
#include "sigstore_pki.hpp"

using namespace sigil;
using namespace sigil::crypto;
using namespace std::chrono_literals;
using sigil::test::FulcioPki;
using sigil::test::SctSpec;

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

Certificate issuer() {
  return pki().intermediate.certificate();
}

// A leaf with exactly these SCTs.
Certificate leaf_with(const std::vector<SctSpec>& scts) {
  return sigil::test::issue(pki().leaf_spec(t0()), sigil::test::generate_key(), pki().intermediate,
                            pki().intermediate_key, scts)
      .certificate();
}

Certificate leaf_with_raw(const std::string& extension_value) {
  return sigil::test::issue(pki().leaf_spec(t0()), sigil::test::generate_key(), pki().intermediate,
                            pki().intermediate_key, {}, extension_value)
      .certificate();
}

}  // namespace

TEST_CASE("an SCT from a trusted CT log verifies") {
  auto leaf = pki().leaf(t0()).certificate();
  CHECK(verify_embedded_sct(leaf, issuer(), {pki().ct_log()}).ok());
}

TEST_CASE("SCT extensions are part of the signed data") {
  SctSpec s = pki().sct_at(t0());
  s.extensions = std::string("\x00\x01\x02", 3);
  CHECK(verify_embedded_sct(leaf_with({s}), issuer(), {pki().ct_log()}).ok());
}

TEST_CASE("an SCT from an RSA CT log verifies") {
  auto rsa = sigil::test::cached_key("RSA2048");
  SctSpec s;
  s.log_key = rsa;
  s.timestamp = t0();
  TransparencyLog log;
  log.key = rsa.public_key();
  log.log_id = key_log_id(log.key);
  CHECK(verify_embedded_sct(leaf_with({s}), issuer(), {log}).ok());
}

TEST_CASE("a leaf without an SCT fails") {
  auto leaf = sigil::test::issue(pki().leaf_spec(t0()), sigil::test::generate_key(),
                                 pki().intermediate, pki().intermediate_key)
                  .certificate();
  auto r = verify_embedded_sct(leaf, issuer(), {pki().ct_log()});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::verification);
  CHECK(contains(r.error().message, "no embedded SCT"));
}

TEST_CASE("a corrupted SCT signature fails") {
  SctSpec s = pki().sct_at(t0());
  s.corrupt_signature = true;
  auto r = verify_embedded_sct(leaf_with({s}), issuer(), {pki().ct_log()});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "does not verify"));
}

TEST_CASE("an SCT from an unknown CT log fails") {
  SctSpec s = pki().sct_at(t0());
  s.log_key = sigil::test::generate_key();
  auto r = verify_embedded_sct(leaf_with({s}), issuer(), {pki().ct_log()});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "not trusted"));
  CHECK_FALSE(verify_embedded_sct(pki().leaf(t0()).certificate(), issuer(), {}).ok());
}

TEST_CASE("an SCT claiming a trusted log id but signed by another key fails") {
  SctSpec s = pki().sct_at(t0());
  s.log_key = sigil::test::generate_key();
  s.log_id = key_log_id(pki().ct_key.public_key());
  CHECK_FALSE(verify_embedded_sct(leaf_with({s}), issuer(), {pki().ct_log()}).ok());
}

TEST_CASE("the SCT timestamp must lie inside the CT log key's validFor") {
  auto leaf = pki().leaf(t0()).certificate();  // SCT at t0
  TransparencyLog log = pki().ct_log();
  SECTION("log starts after the SCT") {
    log.valid_for.start = t0() + 1ms;
    auto r = verify_embedded_sct(leaf, issuer(), {log});
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "validity window"));
  }
  SECTION("log ended before the SCT") {
    log.valid_for.end = t0() - 1ms;
    CHECK_FALSE(verify_embedded_sct(leaf, issuer(), {log}).ok());
  }
  SECTION("inclusive ends") {
    log.valid_for.start = t0();
    log.valid_for.end = t0();
    CHECK(verify_embedded_sct(leaf, issuer(), {log}).ok());
  }
}

TEST_CASE("an SCT signed over another TBS fails") {
  SECTION("signed over a different precertificate") {
    auto other = pki().leaf(t0());
    SctSpec s = pki().sct_at(t0());
    s.tbs_override = sigil::test::precert_tbs(other);
    CHECK_FALSE(verify_embedded_sct(leaf_with({s}), issuer(), {pki().ct_log()}).ok());
  }
  SECTION("an SCT list copied from another certificate") {
    auto other = pki().leaf(t0());
    auto copied = other.extension_value(sigil::test::kOidSctList);
    REQUIRE(copied.has_value());
    // The original verifies; the copy on a different leaf does not.
    CHECK(verify_embedded_sct(other.certificate(), issuer(), {pki().ct_log()}).ok());
    auto r = verify_embedded_sct(leaf_with_raw(*copied), issuer(), {pki().ct_log()});
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "does not verify"));
  }
  SECTION("signed with another issuer key hash") {
    SctSpec s = pki().sct_at(t0());
    s.issuer_spki_override = pki().root.certificate().spki_der();
    CHECK_FALSE(verify_embedded_sct(leaf_with({s}), issuer(), {pki().ct_log()}).ok());
  }
  SECTION("verified against the wrong issuer") {
    auto leaf = pki().leaf(t0()).certificate();
    CHECK_FALSE(verify_embedded_sct(leaf, pki().root.certificate(), {pki().ct_log()}).ok());
  }
}

TEST_CASE("one good SCT among bad ones is enough; none is not") {
  SctSpec unknown = pki().sct_at(t0());
  unknown.log_key = sigil::test::generate_key();
  SctSpec corrupt = pki().sct_at(t0());
  corrupt.corrupt_signature = true;
  CHECK(verify_embedded_sct(leaf_with({unknown, pki().sct_at(t0())}), issuer(), {pki().ct_log()})
            .ok());
  auto r = verify_embedded_sct(leaf_with({unknown, corrupt}), issuer(), {pki().ct_log()});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "none of the 2"));
  CHECK(contains(r.error().message, "not trusted"));
  CHECK(contains(r.error().message, "does not verify"));
}

TEST_CASE("a malformed SCT list fails") {
  SctSpec good = pki().sct_at(t0());
  std::string one = sigil::test::serialize_sct(good, "tbs", "spki");
  auto raw = GENERATE_COPY(
      std::string("\x04\x00", 2),                                    // empty OCTET STRING
      sigil::test::sct_extension_value(std::string("\x00\x00", 2)),  // empty list
      sigil::test::sct_extension_value("garbage"),
      sigil::test::sct_extension_value(sigil::test::sct_list({one}) + "x"),  // trailing byte
      sigil::test::sct_extension_value(sigil::test::sct_list({one}).substr(0, 20)),
      std::string("not DER at all"));
  auto r = verify_embedded_sct(leaf_with_raw(raw), issuer(), {pki().ct_log()});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::verification);
}

TEST_CASE("an SCT of an unknown version is not counted") {
  SctSpec good = pki().sct_at(t0());
  auto cert = pki().leaf(t0());
  std::string sct = sigil::test::serialize_sct(good, sigil::test::precert_tbs(cert),
                                               pki().intermediate.certificate().spki_der());
  sct[0] = '\x01';
  auto r = verify_embedded_sct(
      leaf_with_raw(sigil::test::sct_extension_value(sigil::test::sct_list({sct}))), issuer(),
      {pki().ct_log()});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "version"));
}

TEST_CASE("an SCT whose signature algorithm is not its log key's fails") {
  // Signed by the (ECDSA) log key, but declaring RSA (RFC 6962's SignatureAndHashAlgorithm,
  // after version, log id, timestamp and the empty extensions): refused before any signature
  // check, as Go's CT code does.
  SctSpec good = pki().sct_at(t0());
  auto cert = pki().leaf(t0());
  std::string sct = sigil::test::serialize_sct(good, sigil::test::precert_tbs(cert),
                                               pki().intermediate.certificate().spki_der());
  constexpr size_t kSignatureAlgorithm = 1 + 32 + 8 + 2 + 1;
  REQUIRE(sct[kSignatureAlgorithm - 1] == '\x04');  // sha256
  REQUIRE(sct[kSignatureAlgorithm] == '\x03');      // ecdsa
  sct[kSignatureAlgorithm] = '\x01';                // rsa
  auto r = verify_embedded_sct(
      leaf_with_raw(sigil::test::sct_extension_value(sigil::test::sct_list({sct}))), issuer(),
      {pki().ct_log()});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "signature algorithm does not match"));
}

TEST_CASE("the public-good leaf's SCT verifies against the public-good CT log") {
  auto root = parse_trusted_root(
      sigil::test::read_source_file("data/sigstore/trusted_root.public-good.json"), "public-good");
  REQUIRE(root.ok());
  auto leaf = Certificate::from_der(sigil::test::public_good_sample().leaf_der);
  REQUIRE(leaf.ok());
  const Certificate& intermediate = root->certificate_authorities.at(1).chain.at(0);
  CHECK(verify_embedded_sct(*leaf, intermediate, root->ctlogs).ok());
  // Only the 2021 test log: the SCT is from ctfe.sigstore.dev/2022.
  CHECK_FALSE(verify_embedded_sct(*leaf, intermediate, {root->ctlogs.at(0)}).ok());
  // The 2022 log's key with a window that ends before the SCT.
  TransparencyLog ended = root->ctlogs.at(1);
  ended.valid_for.end = from_unix_seconds(sigil::test::public_good_sample().integrated_time - 60);
  CHECK_FALSE(verify_embedded_sct(*leaf, intermediate, {ended}).ok());
}
