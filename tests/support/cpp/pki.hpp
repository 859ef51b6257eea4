// tests/support/cpp/pki_fixture.hpp: a test PKI minted at test time with OpenSSL's C API.
//
// Role: everything keyless verification needs to be tested without the network or checked-in
// private keys: self-signed roots, intermediates, Fulcio-like leaves (empty subject, critical
// SAN with an email, URI or the Fulcio username OtherName, codeSigning EKU, the OIDC issuer
// extensions 1.3.6.1.4.1.57264.1.1 / .1.8, an embedded SCT list signed by a test CT log key),
// and an RFC 3161 timestamp authority answering with OpenSSL's TS_RESP_CTX. Every knob a
// negative test needs (validity, EKU, CA flag, raw extensions, SCT corruption, ...) is a field.
// Test-only: failures throw std::runtime_error (Catch2 reports them); never link into sigil.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/trust_root.hpp"
#include "crypto/x509.hpp"

namespace sigil::test {

using TimePoint = std::chrono::system_clock::time_point;

inline constexpr const char* kOidFulcioIssuerV1 = "1.3.6.1.4.1.57264.1.1";
inline constexpr const char* kOidFulcioIssuerV2 = "1.3.6.1.4.1.57264.1.8";
inline constexpr const char* kOidFulcioUsername = "1.3.6.1.4.1.57264.1.7";
inline constexpr const char* kOidSctList = "1.3.6.1.4.1.11129.2.4.2";

// A fixed, round instant the tests build their PKI around (2024-03-19T17:26:26Z).
TimePoint test_epoch();
TimePoint at_seconds(int64_t unix_seconds);

// ---- keys ---------------------------------------------------------------------------------------

struct KeyPair {
  std::shared_ptr<EVP_PKEY> pkey;

  std::string spki_der() const;
  std::string public_pem() const;
  crypto::PublicKey public_key() const;
  // ECDSA (DER) / RSA PKCS#1 v1.5 over md(message); Ed25519 pure (md ignored).
  std::string sign(std::string_view message, const EVP_MD* md = EVP_sha256()) const;
  // Signature over an already computed digest (ECDSA / RSA only).
  std::string sign_digest(std::string_view digest, const EVP_MD* md) const;
};

// A fresh key: "P-256", "P-384", "P-521", "ED25519", "RSA2048", "RSA3072".
KeyPair generate_key(const std::string& kind = "P-256");
// One key per kind per test run (RSA generation is slow).
const KeyPair& cached_key(const std::string& kind);

// ---- certificates -------------------------------------------------------------------------------

struct Cert {
  std::shared_ptr<X509> x509;

  std::string der() const;
  std::string pem() const;
  // Parsed with sigil (throws when sigil refuses it).
  crypto::Certificate certificate() const;
  // The extnValue contents of the extension with this dotted OID, or nullopt.
  std::optional<std::string> extension_value(const char* oid) const;
};

struct SanEntry {
  enum class Kind { email, uri, dns, ip, username, other_name };
  Kind kind = Kind::email;
  // email/uri/dns: the text; ip: raw 4 or 16 bytes; username/other_name: the value.
  std::string value;
  // other_name: the type-id; username uses 1.3.6.1.4.1.57264.1.7.
  std::string oid;
  // username/other_name: ASN.1 type of the value (V_ASN1_UTF8STRING, or e.g. V_ASN1_IA5STRING
  // to make a malformed username SAN).
  int value_type = 0;  // 0 = V_ASN1_UTF8STRING

  static SanEntry email(std::string v) { return {Kind::email, std::move(v), {}, 0}; }
  static SanEntry uri(std::string v) { return {Kind::uri, std::move(v), {}, 0}; }
  static SanEntry dns(std::string v) { return {Kind::dns, std::move(v), {}, 0}; }
  static SanEntry ip(std::string raw) { return {Kind::ip, std::move(raw), {}, 0}; }
  static SanEntry username(std::string v) { return {Kind::username, std::move(v), {}, 0}; }
};

// A raw extension: extnValue contents (DER) under a dotted OID.
struct RawExtension {
  std::string oid;
  std::string value;
  bool critical = false;
};

struct CertSpec {
  // "O=sigstore.dev,CN=sigstore-intermediate"; empty = empty subject (Fulcio leaves).
  std::string subject;
  TimePoint not_before{};
  TimePoint not_after{};
  // When non-zero, notAfter in Unix seconds instead (for dates a TimePoint cannot hold, such as
  // RFC 5280's 99991231235959Z).
  int64_t not_after_seconds = 0;
  // basicConstraints: nullopt = absent; true = critical CA:TRUE (+ pathlen); false = CA:FALSE.
  std::optional<bool> ca;
  std::optional<int> path_len;
  // OpenSSL config syntax, e.g. "critical,digitalSignature"; empty = absent.
  std::string key_usage;
  // "codeSigning", "timeStamping", "serverAuth", "anyExtendedKeyUsage"; empty = absent.
  std::vector<std::string> ext_key_usage;
  bool eku_critical = false;
  std::vector<SanEntry> sans;
  bool san_critical = true;
  std::optional<std::string> issuer_v1;  // .1.1: raw bytes of the issuer URL
  std::optional<std::string> issuer_v2;  // .1.8: DER UTF8String of this value
  std::vector<RawExtension> extra;
  bool key_ids = true;         // subjectKeyIdentifier + authorityKeyIdentifier
  const EVP_MD* md = nullptr;  // signature digest; nullptr = by issuer key type
};

// An SCT to embed. Signed over the leaf's precertificate TBS (its TBS without the SCT list)
// unless tbs_override is set, with issuer_key_hash = SHA-256(issuer SPKI) unless overridden.
struct SctSpec {
  KeyPair log_key;
  TimePoint timestamp{};
  std::string log_id;      // empty = SHA-256(log key SPKI)
  std::string extensions;  // CtExtensions bytes
  bool corrupt_signature = false;
  std::optional<std::string> tbs_override;
  std::optional<std::string> issuer_spki_override;
};

Cert self_signed(const CertSpec& spec, const KeyPair& key);
// Issues a certificate for subject_key signed by issuer. When scts is non-empty, the SCT list
// extension is added last (after signing the precertificate TBS); raw_sct_extension adds an
// SCT list extension with exactly these extnValue bytes instead.
Cert issue(const CertSpec& spec, const KeyPair& subject_key, const Cert& issuer,
           const KeyPair& issuer_key, const std::vector<SctSpec>& scts = {},
           const std::optional<std::string>& raw_sct_extension = std::nullopt);

// RFC 6962 pieces, for tests that build SCT lists by hand.
std::string serialize_sct(const SctSpec& spec, std::string_view precert_tbs,
                          std::string_view issuer_spki);
std::string sct_list(const std::vector<std::string>& serialized_scts);
// DER OCTET STRING around a TLS SCT list: the extnValue of the SCT list extension.
std::string sct_extension_value(std::string_view list);
// DER UTF8String / IA5String, for .1.8 and raw extensions.
std::string der_utf8(std::string_view s);
std::string der_ia5(std::string_view s);
// The TBSCertificate of c re-encoded without the SCT list extension.
std::string precert_tbs(const Cert& c);

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
