// crypto/x509.hpp: X.509 certificates for keyless verification (Fulcio leaves, CA chains).
//
// Role: parse certificates from untrusted PEM/DER, read what sigstore puts in a Fulcio leaf
// (subject alternative names, the OIDC issuer extensions 1.3.6.1.4.1.57264.1.1 and .1.8), and
// validate a leaf against a certificate authority at a given time (the signing time proved by
// a transparency log or a timestamp, never the wall clock). Pure: OpenSSL and common only; no
// I/O, no clock, no Asio. Every OpenSSL return value is checked and its error queue cleared.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "crypto/keys.hpp"

namespace sigil::crypto {

using TimePoint = std::chrono::system_clock::time_point;

// A validity window as sigstore's trusted_root.json states it: start and end both optional,
// both inclusive (conformance `trust-root-*-validity-end-inclusive`). An absent start means
// "since always", an absent end "still valid".
struct TimeRange {
  std::optional<TimePoint> start;
  std::optional<TimePoint> end;
  bool contains(TimePoint t) const noexcept {
    return (!start || t >= *start) && (!end || t <= *end);
  }
};

class Certificate {
 public:
  // Exactly one DER certificate; trailing bytes are rejected, and so are BER encodings OpenSSL
  // would re-encode differently (non-minimal lengths: the bytes hashed and re-encoded for SCTs
  // must be the bytes given), a malformed or repeated extension, and inputs over 64 KiB.
  static Result<Certificate> from_der(std::string_view der);
  // Exactly one "-----BEGIN CERTIFICATE-----" block (surrounding whitespace allowed).
  static Result<Certificate> from_pem(std::string_view pem);

  const std::string& der() const noexcept { return der_; }
  TimePoint not_before() const noexcept { return not_before_; }
  TimePoint not_after() const noexcept { return not_after_; }
  // Valid at t: not_before <= t <= not_after.
  bool valid_at(TimePoint t) const noexcept { return t >= not_before_ && t <= not_after_; }
  // The subject public key; fails for key types crypto/keys does not support.
  Result<PublicKey> public_key() const;
  // SubjectPublicKeyInfo DER (for SCT issuer key hashes and key comparisons).
  const std::string& spki_der() const noexcept { return spki_der_; }
  // "O=sigstore.dev, CN=sigstore-intermediate"-style one-line subject, for messages (control
  // characters replaced by '?'). Empty for an empty subject, as Fulcio leaves have.
  std::string subject_line() const;
  bool is_self_signed() const;
  bool is_ca() const;  // basicConstraints CA:TRUE

  // Opaque OpenSSL handle (X509*), shared and immutable.
  const void* native() const noexcept { return x509_.get(); }

 private:
  std::shared_ptr<void> x509_;
  std::string der_;
  std::string spki_der_;
  TimePoint not_before_{};
  TimePoint not_after_{};
  friend struct CertificateAccess;
};

// Every CERTIFICATE block in pem, in order. Rejects other block types, text between blocks
// other than whitespace, an empty input, and more than 16 certificates.
Result<std::vector<Certificate>> parse_pem_certificates(std::string_view pem);

struct SubjectAltName {
  enum class Type { email, uri, dns, ip, other_name };
  Type type = Type::email;
  // email / URI / DNS as written; IP in its textual form (Go's net.IP.String(): dotted quad,
  // also for IPv4-mapped IPv6; RFC 5952 otherwise); other_name: the UTF8String of the Fulcio
  // username OtherName (type-id 1.3.6.1.4.1.57264.1.7). Other OtherName types, directoryName
  // and registeredID are skipped.
  std::string value;
};
// "email" | "uri" | "dns" | "ip" | "othername".
const char* san_type_name(SubjectAltName::Type t) noexcept;

// What a Fulcio leaf says about who signed.
struct CertificateIdentity {
  std::vector<SubjectAltName> sans;  // every SAN, in certificate order
  // The OIDC issuer: extension 1.3.6.1.4.1.57264.1.8 (DER UTF8String) when present, else
  // 1.3.6.1.4.1.57264.1.1 (raw bytes of the URL). Empty when the leaf has neither.
  std::string issuer;
};

// Reads the SANs and the issuer extensions. A malformed .1.8 extension (not exactly one DER
// UTF8String of valid UTF-8) is an error, never silently replaced by .1.1. So are SANs Go's
// parser (and so cosign) refuses: a non-ASCII email/URI/DNS name, an IP address that is not 4
// or 16 bytes, a username OtherName that is not a UTF-8 UTF8String. A leaf without SANs gives
// an empty list.
Result<CertificateIdentity> certificate_identity(const Certificate& leaf);

// A trusted certificate authority: sigstore trusted_root.json `certificateAuthorities[]` and
// `timestampAuthorities[]`, or a policy's `keyless.ca-cert`.
struct CertificateAuthority {
  std::string uri;      // informational ("https://fulcio.sigstore.dev")
  std::string subject;  // informational
  // Leaf-most first, the root (trust anchor) last: trusted_root.json's certChain order. For a
  // Fulcio CA that is {intermediates..., root}; for a timestamp authority sigstore lists the
  // TSA's signing certificate first ({tsa, intermediates..., root}). Only chain.back() is
  // trusted; the others are untrusted path-building material.
  std::vector<Certificate> chain;
  TimeRange valid_for;  // when this CA may have issued (empty = always)
};

enum class ExtendedKeyUsage { code_signing, time_stamping };

// Checks, when a trust root or a policy is read, what path validation would otherwise find only
// at every signature: that each certificate of chain from index `first` on can issue
// certificates (what OpenSSL's X509_check_ca accepts: basicConstraints CA:TRUE, with
// keyCertSign if key usages are stated, or a self-signed v1 root). A Fulcio CA's chain is checked
// from 0; a timestamp authority's from 1 (sigstore lists the TSA's own certificate first).
// Errc::invalid_argument naming the first certificate that cannot, by index and subject.
Status check_ca_certificates(const std::vector<Certificate>& chain, std::size_t first);

// The path a leaf was validated along: path[0] is the leaf, path[1] its issuer, ... , the
// trust anchor last.
struct VerifiedChain {
  std::vector<Certificate> path;
  const Certificate& issuer() const { return path.at(1); }
};

// Verified CA paths, remembered so that a signature costs one certificate signature check (its
// leaf's) instead of one per certificate on its path. After a full path validation of
// leaf -> I -> ... -> anchor against a CA succeeds, the part above the leaf (I ... anchor, its
// signatures, CA flags, key usages, path lengths and critical extensions, all independent of
// the leaf and of the time) is stored under a key made of the exact DER of every certificate of
// that CA entry (its chain, the anchor included) and the exact DER of I, with its validity
// window (the latest notBefore and earliest notAfter on I ... anchor). A later leaf is then
// validated by OpenSSL against I alone (I as the only trust anchor: the leaf's signature,
// extensions and validity, I's validity, flags and name constraints), the signing time must lie
// in the window, and the composed path passes the same final checks as a full validation
// (length, every certificate valid at the time, CA extended key usages). Only acceptances are
// shortened: a miss, or any check of the short path that fails, runs the full validation, whose
// verdict and message stand. Paths whose certificates above I carry name constraints or RFC
// 3779 resources (which constrain the leaf itself) are not remembered.
//
// Owned by the caller and scoped to its trust material (policy/ gives each linked keyless
// authority one); crypto/ stays pure: no clock, the time is the caller's. At most `capacity`
// entries, oldest evicted first; only paths that validated to a configured anchor get in, so
// signatures cannot fill it with strangers. Thread-safe: lookups and inserts take a mutex (a
// hash lookup), the validation itself runs outside it on immutable entries.
class ChainCache {
 public:
  static constexpr size_t kDefaultCapacity = 64;
  explicit ChainCache(size_t capacity = kDefaultCapacity);
  ~ChainCache();
  ChainCache(const ChainCache&) = delete;
  ChainCache& operator=(const ChainCache&) = delete;

  size_t size() const;
  size_t capacity() const noexcept { return capacity_; }
  // Validations the cache shortened (for tests and benchmarks).
  uint64_t hits() const;

  struct Entry;  // defined in chain_cache.cpp
 private:
  friend struct ChainCacheAccess;
  struct State;
  size_t capacity_;
  std::unique_ptr<State> state_;
};

// Validates leaf -> (untrusted intermediates from the signature, then ca.chain's
// intermediates) -> ca.chain.back() (the only trust anchor), with every certificate on the path
// valid at `at` (the "hybrid" model sigstore uses), `at` inside ca.valid_for, and the leaf
// carrying the extended key usage `eku`. A leaf that is itself a CA, a path longer than 8, or
// an unknown critical extension fails. Errc::verification with a readable reason.
// Details: the anchor need not be self-signed (Go's semantics; OpenSSL's partial-chain mode);
// the leaf must have an extendedKeyUsage extension that lists `eku` (anyExtendedKeyUsage is not
// enough) and a CA on the path that lists extended key usages must list `eku` or
// anyExtendedKeyUsage (Go's rule); the leaf may not be the anchor itself; a certificate is
// valid from notBefore up to, not including, its notAfter second (OpenSSL's comparison, one
// second stricter than RFC 5280's inclusive end). The critical SAN of an empty-subject Fulcio
// leaf is understood. More than 16 untrusted intermediates fail. With a cache, a path above the
// leaf validated before against this very CA entry is reused (see ChainCache), and a path
// validated now is remembered; the result is the same with or without it.
Result<VerifiedChain> verify_certificate(const Certificate& leaf,
                                         const std::vector<Certificate>& untrusted_intermediates,
                                         const CertificateAuthority& ca, TimePoint at,
                                         ExtendedKeyUsage eku, ChainCache* cache = nullptr);

// Tries every CA in turn and returns the first path that validates; the error of the last
// failure otherwise (or "no certificate authority is configured"). The signature's own
// intermediates are used only with a CA that lists none (a policy's `ca-cert` root, as cosign
// does); a CA that lists its intermediates (a trusted_root.json Fulcio entry) is reached
// through them alone, as sigstore-go does: another CA certificate its root once issued (a
// retired intermediate, a sub-CA the trust root does not name) cannot be brought along.
Result<VerifiedChain> verify_certificate_any(
    const Certificate& leaf, const std::vector<Certificate>& untrusted_intermediates,
    const std::vector<CertificateAuthority>& cas, TimePoint at, ExtendedKeyUsage eku,
    ChainCache* cache = nullptr);

// Seconds since the epoch <-> TimePoint, for log entries and tests.
inline TimePoint from_unix_seconds(int64_t s) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::seconds(s)));
}
inline int64_t to_unix_seconds(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
// RFC 3339 UTC ("2024-03-19T17:26:26Z") for messages.
std::string format_time(TimePoint t);
// RFC 3339 as protobuf JSON writes Timestamps: "2021-01-12T11:53:27Z", optional fraction,
// "Z" or a numeric offset.
Result<TimePoint> parse_rfc3339(std::string_view text);

}  // namespace sigil::crypto
