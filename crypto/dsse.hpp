// crypto/dsse.hpp: DSSE envelopes and in-toto statements (cosign v3 signatures, attestations).
//
// Role: the pre-authentication encoding a DSSE signature is made over, the envelope JSON, and
// the in-toto statement whose subject binds the image digest. Nothing is verified here. Pure:
// common and nlohmann only (nlohmann stays out of this header; see the detail block below).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace sigil::crypto {

inline constexpr std::string_view kInTotoPayloadType = "application/vnd.in-toto+json";
// The predicate cosign v3 `sign` puts in the statement it signs for an image.
inline constexpr std::string_view kCosignSignPredicate = "https://sigstore.dev/cosign/sign/v1";

// "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload, lengths in ASCII decimal.
std::string dsse_pae(std::string_view payload_type, std::string_view payload);

struct DsseSignature {
  std::string keyid;
  std::string sig;  // raw (base64-decoded)
};

struct DsseEnvelope {
  std::string payload_type;
  std::string payload;  // raw (base64-decoded)
  std::vector<DsseSignature> signatures;
};

// Strict: payload (base64 string, may decode to nothing), payloadType (non-empty string) and
// signatures (non-empty array of {sig: non-empty base64, keyid?: string or null}) required;
// member names exact (as the DSSE spec writes them), unknown members ignored, null taken as
// absent; duplicate keys rejected; inputs over 4 MiB Errc::too_large, else Errc::parse_error
// naming the field.
Result<DsseEnvelope> parse_dsse_envelope(std::string_view json);

struct InTotoSubject {
  std::string name;
  std::map<std::string, std::string> digest;  // algorithm -> lowercase hex, as written
};

struct InTotoStatement {
  std::string type;  // "_type": https://in-toto.io/Statement/v0.1 or /v1
  std::string predicate_type;
  std::vector<InTotoSubject> subjects;
  std::string predicate_json;  // the predicate re-serialized (compact), "" when absent
};

inline constexpr std::string_view kInTotoStatementV01 = "https://in-toto.io/Statement/v0.1";
inline constexpr std::string_view kInTotoStatementV1 = "https://in-toto.io/Statement/v1";

// Strict parse of an in-toto statement: _type must be one of the two known statement types,
// subject a non-empty array of objects with a digest map of strings (name, when present, a
// string), predicateType a string. Duplicate keys rejected; over 4 MiB Errc::too_large.
Result<InTotoStatement> parse_in_toto_statement(std::string_view json);

// True when some subject's digest map holds `algorithm` (exactly) -> `hex` (ASCII
// case-insensitive, non-empty).
bool statement_binds(const InTotoStatement& s, std::string_view algorithm, std::string_view hex);

}  // namespace sigil::crypto
