// tests/support/cpp/rekor_fixture.hpp: a Rekor-like transparency log for unit tests.
//
// Role: one P-256 log key that signs SETs (ECDSA over the RFC 8785 form of {body,
// integratedTime, logID, logIndex}, exactly as Rekor v1) over entry bodies built here by hand
// (hashedrekord 0.0.1, dsse 0.0.1), so verifier tests never need a network or checked-in keys.
// Test-only, header-only; uses pki_fixture's KeyPair.
#pragma once

#include <string>
#include <string_view>

#include "common/encoding.hpp"
#include "crypto/keys.hpp"
#include "crypto/rekor.hpp"
#include "crypto/trust_root.hpp"
#include "pki_fixture.hpp"

namespace sigil::test {

struct TestLog {
  KeyPair key = generate_key("P-256");
  crypto::TransparencyLog log() const {
    crypto::TransparencyLog l;
    l.base_url = "https://rekor.test";
    l.key = key.public_key();
    l.log_id = crypto::key_log_id(l.key);
    l.hash = crypto::HashAlgorithm::sha256;
    return l;
  }
  // hashedrekord 0.0.1 over sha256(hashed) with the signature and verifier (PEM).
  static std::string hashedrekord(std::string_view hashed_bytes, std::string_view sig,
                                  std::string_view verifier_pem) {
    return R"({"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":{"algorithm":"sha256","value":")" +
           crypto::sha256_hex(hashed_bytes) + R"("}},"signature":{"content":")" +
           base64_encode(sig) + R"(","publicKey":{"content":")" + base64_encode(verifier_pem) +
           R"("}}}})";
  }
  static std::string dsse(std::string_view payload, std::string_view sig,
                          std::string_view verifier_pem) {
    return R"({"apiVersion":"0.0.1","kind":"dsse","spec":{"envelopeHash":{"algorithm":"sha256","value":")" +
           std::string(64, '0') + R"("},"payloadHash":{"algorithm":"sha256","value":")" +
           crypto::sha256_hex(payload) + R"("},"signatures":[{"signature":")" + base64_encode(sig) +
           R"(","verifier":")" + base64_encode(verifier_pem) + R"("}]}})";
  }
  crypto::TlogEntry entry(std::string body, int64_t integrated_time,
                          bool corrupt_set = false) const {
    crypto::TlogEntry e;
    e.log_index = 42;
    e.log_id = log().log_id;
    e.integrated_time = integrated_time;
    e.canonicalized_body = std::move(body);
    const std::string msg = R"({"body":")" + base64_encode(e.canonicalized_body) +
                            R"(","integratedTime":)" + std::to_string(integrated_time) +
                            R"(,"logID":")" + hex_encode(e.log_id) + R"(","logIndex":42})";
    e.signed_entry_timestamp = key.sign(msg);
    if (corrupt_set) e.signed_entry_timestamp.back() ^= 1;
    return e;
  }
};

}  // namespace sigil::test
