// tests/support/cpp/pki.hpp: keys and certificates minted at test time with OpenSSL's C API.
//
// Role: the one place tests make keys and certificates: key pairs of every kind sigil reads,
// signatures with them, and certificates from a spec in which every knob a negative test
// needs (validity, EKU, CA flag, SANs, raw extensions, an embedded SCT list, ...) is a field.
// tls_pki.hpp builds TLS serving certificates on it; sigstore_pki.hpp Fulcio-like CAs, CT logs
// and timestamp authorities. OpenSSL only (library sigil_test_pki), so the test of any module
// may link it; KeyPair::public_key and Cert::certificate (sigil's crypto types) are defined
// in sigil_test_sigstore. Test-only: failures throw std::runtime_error (Catch2 reports them);
// never link into sigil.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sigil::crypto {
class PublicKey;
class Certificate;
}  // namespace sigil::crypto

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
  std::string private_pem() const;  // PKCS#8 "PRIVATE KEY"
  std::string pkcs1_der() const;    // RSA only: PKCS#1 RSAPublicKey
  // As sigil loads it: defined in sigstore_pki.cpp (link sigil_test_sigstore to use it).
  crypto::PublicKey public_key() const;
  // ECDSA (DER) / RSA PKCS#1 v1.5 over md(message); EdDSA pure (md ignored).
  std::string sign(std::string_view message, const EVP_MD* md = EVP_sha256()) const;
  // Signature over an already computed digest (ECDSA / RSA only).
  std::string sign_digest(std::string_view digest, const EVP_MD* md) const;
};

// A fresh key: an EC curve by name ("P-256", "P-384", "P-521", "secp256k1", ...), "ED25519",
// "ED448", "RSA1024", "RSA2048", "RSA3072" or "RSA4096".
KeyPair generate_key(const std::string& kind = "P-256");
// One key per kind per test run (RSA generation is slow).
const KeyPair& cached_key(const std::string& kind);

// Wraps DER as PEM with the given label ("PUBLIC KEY", "CERTIFICATE", ...), 64 columns.
std::string to_pem(std::string_view label, std::string_view der);
// s with bit `bit` of byte `byte` flipped (a tampered signature, key or payload).
std::string flip_bit(std::string s, size_t byte, int bit = 0);

// ---- certificates -------------------------------------------------------------------------------

struct Cert {
  std::shared_ptr<X509> x509;

  std::string der() const;
  std::string pem() const;
  // Parsed with sigil (throws when sigil refuses it): defined in sigstore_pki.cpp (link
  // sigil_test_sigstore to use it).
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

// ---- for the other support files ----------------------------------------------------------

namespace detail {

// Throws std::runtime_error naming `what` and OpenSSL's first queued error, which it clears.
[[noreturn]] void fail(const std::string& what);
inline void check(bool ok, const std::string& what) {
  if (!ok) fail(what);
}
template <class T, void (*F)(T*)>
struct Free {
  void operator()(T* p) const noexcept { F(p); }
};
int64_t unix_seconds(TimePoint t);
// The contents of a memory BIO.
std::string bio_string(BIO* bio);

}  // namespace detail

}  // namespace sigil::test
