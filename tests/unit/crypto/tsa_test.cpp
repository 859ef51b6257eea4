// RFC 3161 timestamps as a proof of signing time.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "crypto/trust_root.hpp"
#include "crypto/tsa.hpp"
#include "sigstore_pki.hpp"

using namespace sigil;
using namespace sigil::crypto;
using namespace std::chrono_literals;
using sigil::test::StampOptions;
using sigil::test::TestTsa;

namespace {

const TestTsa& tsa() {
  static const TestTsa t = TestTsa::create();
  return t;
}

TimePoint t0() {
  return sigil::test::test_epoch();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

const std::string kSignature = "MEUCIQD-a-signature-the-timestamp-is-over";

}  // namespace

TEST_CASE("a timestamp over the signature proves its genTime") {
  StampOptions opts;
  SECTION("TimeStampResp, certificates embedded") {}
  SECTION("bare TimeStampToken") {
    opts.bare_token = true;
  }
  SECTION("no embedded certificates: the signer comes from the authority's chain") {
    opts.include_certs = false;
  }
  SECTION("SHA-384 imprint") {
    opts.imprint_md = EVP_sha384();
  }
  SECTION("SHA-512 imprint") {
    opts.imprint_md = EVP_sha512();
  }
  TimePoint gen = t0() + 5min;
  auto r =
      verify_rfc3161_timestamp(tsa().stamp(kSignature, gen, opts), kSignature, {tsa().authority()});
  REQUIRE(r.ok());
  CHECK(*r == gen);
}

TEST_CASE("a timestamp over other bytes fails") {
  auto ts = tsa().stamp(kSignature, t0());
  auto r = verify_rfc3161_timestamp(ts, kSignature + "x", {tsa().authority()});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::verification);
  CHECK(contains(r.error().message, "imprint"));
}

TEST_CASE("a timestamp from an untrusted TSA fails") {
  static const TestTsa other = TestTsa::create();
  auto ts = other.stamp(kSignature, t0());
  auto r = verify_rfc3161_timestamp(ts, kSignature, {tsa().authority()});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::verification);
  // A TSA whose chain names our signing certificate but whose root is another one.
  CertificateAuthority mixed = tsa().authority();
  mixed.chain.back() = other.root.certificate();
  CHECK_FALSE(verify_rfc3161_timestamp(tsa().stamp(kSignature, t0()), kSignature, {mixed}).ok());
}

TEST_CASE("genTime must lie inside the authority's validFor") {
  TimePoint gen = t0() + 1h;
  auto ts = tsa().stamp(kSignature, gen);
  CertificateAuthority ca = tsa().authority();
  SECTION("authority starts later") {
    ca.valid_for.start = gen + 1s;
    auto r = verify_rfc3161_timestamp(ts, kSignature, {ca});
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "validity window"));
  }
  SECTION("authority ended earlier") {
    ca.valid_for.end = gen - 1s;
    CHECK_FALSE(verify_rfc3161_timestamp(ts, kSignature, {ca}).ok());
  }
  SECTION("inclusive") {
    ca.valid_for.start = gen;
    ca.valid_for.end = gen;
    CHECK(verify_rfc3161_timestamp(ts, kSignature, {ca}).ok());
  }
}

TEST_CASE("genTime outside the TSA certificate's validity fails") {
  // The fixture's TSA certificate is valid from t0 - 1 day for ten years.
  auto ts = tsa().stamp(kSignature, t0() - 48h);
  auto r = verify_rfc3161_timestamp(ts, kSignature, {tsa().authority()});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::verification);
}

TEST_CASE("a TSA certificate without the timeStamping EKU fails") {
  static const TestTsa no_eku = TestTsa::create(t0(), /*with_eku=*/false);
  auto ts = no_eku.stamp(kSignature, t0());
  auto r = verify_rfc3161_timestamp(ts, kSignature, {no_eku.authority()});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::verification);
}

TEST_CASE("a response that was not granted fails") {
  StampOptions opts;
  opts.reject = true;
  auto r = verify_rfc3161_timestamp(tsa().stamp(kSignature, t0(), opts), kSignature,
                                    {tsa().authority()});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::verification);
  CHECK(contains(r.error().message, "rejection"));
}

TEST_CASE("bytes that are not a timestamp are a parse error") {
  std::string ts = tsa().stamp(kSignature, t0());
  auto bytes =
      GENERATE_COPY(std::string(), std::string("not a timestamp"), ts.substr(0, ts.size() / 2),
                    ts + "x", sigil::test::FulcioPki::create().root.der());
  auto r = verify_rfc3161_timestamp(bytes, kSignature, {tsa().authority()});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::parse_error);
}

TEST_CASE("the first authority that verifies wins; none configured fails") {
  static const TestTsa other = TestTsa::create();
  auto ts = tsa().stamp(kSignature, t0());
  CHECK(verify_rfc3161_timestamp(ts, kSignature, {other.authority(), tsa().authority()}).ok());
  auto r = verify_rfc3161_timestamp(ts, kSignature, {});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "no timestamp authority"));
}

TEST_CASE("the sigstore TSA's timestamp verifies against the public-good trusted root") {
  auto root = parse_trusted_root(
      sigil::test::read_source_file("data/sigstore/trusted_root.public-good.json"), "public-good");
  REQUIRE(root.ok());
  const auto& sample = sigil::test::public_good_sample();
  auto r =
      verify_rfc3161_timestamp(sample.timestamp_der, sample.signature, root->timestamp_authorities);
  REQUIRE(r.ok());
  CHECK(format_time(*r) == "2026-05-13T19:47:33Z");
  CHECK_FALSE(verify_rfc3161_timestamp(sample.timestamp_der, sample.signature + "x",
                                       root->timestamp_authorities)
                  .ok());
  // Not a Fulcio CA.
  CHECK_FALSE(verify_rfc3161_timestamp(sample.timestamp_der, sample.signature,
                                       root->certificate_authorities)
                  .ok());
}
