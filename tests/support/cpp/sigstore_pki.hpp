// tests/support/cpp/sigstore_pki.hpp: the sigstore side of the test PKI.
//
// Role: everything keyless verification needs to be tested without the network or checked-in
// private keys: a Fulcio-like CA (self-signed root, intermediate, leaves with an empty subject,
// a critical SAN with an email, URI or the Fulcio username OtherName, codeSigning EKU, the
// OIDC issuer extensions 1.3.6.1.4.1.57264.1.1 / .1.8, an embedded SCT list signed by a test
// CT log key), an RFC 3161 timestamp authority answering with OpenSSL's TS_RESP_CTX, and a
// sample of real public-good material; each as sigil's crypto types too. Built on pki.hpp;
// library sigil_test_sigstore (links sigil::crypto). rekor_fixture.hpp adds Rekor-like logs.
// Test-only: failures throw std::runtime_error (Catch2 reports them); never link into sigil.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/keys.hpp"
#include "crypto/trust_root.hpp"
#include "crypto/x509.hpp"
#include "pki.hpp"

namespace sigil::test {

// ---- a Fulcio-like CA and CT log
// -----------------------------------------------------------------

struct FulcioPki {
  TimePoint start;  // CA certificates are valid from start - 1 day to start + 3650 days
  KeyPair root_key;
  KeyPair intermediate_key;
  KeyPair ct_key;
  Cert root;
  Cert intermediate;

  // Root (P-384, self-signed, CA) -> intermediate (P-384, CA, pathlen 0, EKU codeSigning as
  // Fulcio's). CT log key P-256.
  static FulcioPki create(TimePoint start = test_epoch());

  // chain {intermediate, root}: the trusted_root.json order.
  crypto::CertificateAuthority authority() const;
  crypto::TransparencyLog ct_log() const;
  // The Fulcio profile: empty subject, critical SAN email, codeSigning EKU, KU
  // digitalSignature, 10 minutes from not_before, issuer in .1.1 and .1.8.
  CertSpec leaf_spec(TimePoint not_before, std::string email = "signer@example.com",
                     std::string issuer = "https://accounts.example.com") const;
  // An SCT from ct_key at t.
  SctSpec sct_at(TimePoint t) const;
  // A leaf for a fresh P-256 key, issued by the intermediate, with one valid SCT at
  // not_before. `key` receives the leaf's private key when non-null.
  Cert leaf(const CertSpec& spec, KeyPair* key = nullptr) const;
  Cert leaf(TimePoint not_before, KeyPair* key = nullptr) const;
};

// ---- an RFC 3161 timestamp authority
// --------------------------------------------------------------

struct StampOptions {
  const EVP_MD* imprint_md = EVP_sha256();
  bool include_certs = true;  // certReq: embed the signing certificate
  bool bare_token = false;    // return the TimeStampToken (ContentInfo), not a TimeStampResp
  bool reject = false;        // the TSA answers with status "rejection" (badAlg)
};

struct TestTsa {
  KeyPair root_key;
  KeyPair key;
  Cert root;
  Cert cert;  // signing certificate: critical EKU timeStamping unless made without

  // Root (P-256, CA) -> TSA certificate (P-256) valid from start - 1 day for 10 years.
  // with_eku=false leaves the EKU out (the token is then signed without TS_RESP_CTX, which
  // refuses such a signer). not_after, when set, ends the validity of both certificates there
  // (a chain that has expired since: RFC 3161 timestamps stay valid after their TSA's chain).
  static TestTsa create(TimePoint start = test_epoch(), bool with_eku = true,
                        std::optional<TimePoint> not_after = std::nullopt);

  // chain {cert, root}: the trusted_root.json order for timestampAuthorities.
  crypto::CertificateAuthority authority() const;
  // A DER TimeStampResp (or token) over data, genTime = gen_time (whole seconds).
  std::string stamp(std::string_view data, TimePoint gen_time, const StampOptions& opts = {}) const;

 private:
  bool with_eku_ = true;
};

// ---- real sigstore material
// ----------------------------------------------------------------------

// From sigstore-conformance `test/assets/bundle-verify/dsse-with-hashedrekord-happy-path` (public
// good instance, 2026-05-13): a Fulcio leaf (URI SAN, GitHub Actions issuer, one SCT from
// ctfe.sigstore.dev/2022), the DSSE signature it made, the sigstore TSA's RFC 3161 response over
// that signature, and the Rekor integratedTime. Verify against trusted_root.public-good.json.
struct PublicGoodSample {
  std::string leaf_der;
  std::string signature;
  std::string timestamp_der;
  int64_t integrated_time = 0;
};
const PublicGoodSample& public_good_sample();

// A file of the source tree (tests may read files; sigil's modules may not).
std::string read_source_file(const std::string& relative_path);

}  // namespace sigil::test
