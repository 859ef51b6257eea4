// crypto/cosign.cpp: the simple-signing payload parser and the key-based signature check.
#include "crypto/cosign.hpp"

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "common/encoding.hpp"
#include "crypto/go_base64.hpp"
#include "crypto/json_detail.hpp"

namespace sigil::crypto {

namespace {

using json = nlohmann::json;

// cosign payloads are a few hundred bytes; anything this large is not one.
constexpr size_t kMaxPayloadBytes = 1024 * 1024;
constexpr int kMaxDepth = 32;

// Go decodes the document, critical, critical.image and critical.identity into structs,
// matching member names case-insensitively: there, names equal after folding are one field
// (a duplicate); other objects (optional) compare names exactly.
std::string member_identity(const std::vector<std::string>& path, const std::string& key) {
  const bool go_struct =
      path.empty() ||
      (detail::go_fold(path[0]) == "critical" &&
       (path.size() == 1 || (path.size() == 2 && (detail::go_fold(path[1]) == "image" ||
                                                  detail::go_fold(path[1]) == "identity"))));
  return go_struct ? detail::go_fold(key) : key;
}

// The member of obj whose folded key equals name (already folded), or nullptr. Duplicates
// after folding were rejected by member_identity, so at most one matches.
const json* member(const json& obj, std::string_view name) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (detail::go_fold(it.key()) == name) return &*it;
  }
  return nullptr;
}

Error field_error(std::string_view field, std::string_view what) {
  return make_error(Errc::parse_error,
                    "simple-signing payload: " + std::string(field) + " " + std::string(what));
}

Result<SimpleSigningPayload> extract(const json& doc) {
  if (!doc.is_object()) return field_error("document", "must be a JSON object");
  SimpleSigningPayload out;

  const json* critical = member(doc, "critical");
  if (critical == nullptr) return field_error("critical", "is missing");
  if (!critical->is_object()) return field_error("critical", "must be an object");

  const json* type = member(*critical, "type");
  if (type == nullptr) return field_error("critical.type", "is missing");
  if (!type->is_string()) return field_error("critical.type", "must be a string");
  out.type = type->get<std::string>();

  const json* image = member(*critical, "image");
  if (image == nullptr) return field_error("critical.image", "is missing");
  if (!image->is_object()) return field_error("critical.image", "must be an object");
  const json* digest = member(*image, "docker-manifest-digest");
  if (digest == nullptr) return field_error("critical.image.docker-manifest-digest", "is missing");
  if (!digest->is_string()) {
    return field_error("critical.image.docker-manifest-digest", "must be a string");
  }
  out.docker_manifest_digest = digest->get<std::string>();

  const json* identity = member(*critical, "identity");
  if (identity != nullptr && !identity->is_null()) {
    if (!identity->is_object()) return field_error("critical.identity", "must be an object");
    const json* ref = member(*identity, "docker-reference");
    if (ref != nullptr && !ref->is_null()) {
      if (!ref->is_string()) {
        return field_error("critical.identity.docker-reference", "must be a string");
      }
      out.docker_reference = ref->get<std::string>();
    }
  }

  const json* optional = member(doc, "optional");
  if (optional != nullptr && !optional->is_null()) {
    if (!optional->is_object()) return field_error("optional", "must be an object or null");
    for (auto it = optional->begin(); it != optional->end(); ++it) {
      if (it->is_string()) out.optional[it.key()] = it->get<std::string>();
    }
  }
  return out;
}

bool valid_digest(std::string_view d) {
  size_t colon = d.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view alg = d.substr(0, colon);
  std::string_view hex = d.substr(colon + 1);
  size_t want = alg == "sha256" ? 64 : alg == "sha384" ? 96 : alg == "sha512" ? 128 : 0;
  return want != 0 && hex.size() == want && is_lower_hex(hex);
}

SignatureCheck fail(SignatureFailure f, std::string message) {
  SignatureCheck c;
  c.ok = false;
  c.failure = f;
  c.message = std::move(message);
  return c;
}

}  // namespace

Result<SimpleSigningPayload> parse_simple_signing(std::string_view payload) {
  if (payload.size() > kMaxPayloadBytes) {
    return make_error(Errc::too_large, "simple-signing payload is larger than 1 MiB");
  }
  auto doc = detail::parse_json_strict(payload, "simple-signing payload", kMaxPayloadBytes,
                                       kMaxDepth, member_identity);
  if (!doc) return doc.error();
  return extract(*doc);
}

const char* signature_failure_name(SignatureFailure f) noexcept {
  switch (f) {
    case SignatureFailure::none:
      return "none";
    case SignatureFailure::bad_signature:
      return "bad_signature";
    case SignatureFailure::wrong_type:
      return "wrong_type";
    case SignatureFailure::digest_mismatch:
      return "digest_mismatch";
    case SignatureFailure::malformed_payload:
      return "malformed_payload";
    case SignatureFailure::invalid_argument:
      return "invalid_argument";
  }
  return "unknown";
}

SignatureCheck check_signature_with_key(const Signature& sig, const PublicKey& key,
                                        HashAlgorithm hash, std::string_view expected_digest) {
  try {
    if (!valid_digest(expected_digest)) {
      return fail(SignatureFailure::invalid_argument, "expected image digest \"" +
                                                          printable(expected_digest, 80) +
                                                          "\" is not <algorithm>:<lowercase hex>");
    }
    if (sig.signature.empty()) {
      return fail(SignatureFailure::bad_signature, "signature is empty");
    }
    if (auto v = key.verify(sig.payload, sig.signature, hash); !v) {
      return fail(SignatureFailure::bad_signature,
                  "signature does not verify with the policy's key");
    }
    auto parsed = parse_simple_signing(sig.payload);
    if (!parsed) {
      return fail(SignatureFailure::malformed_payload,
                  "signed payload is malformed: " + parsed.error().message);
    }
    SignatureCheck c;
    if (parsed->type != kCosignSignatureType) {
      c = fail(SignatureFailure::wrong_type, "payload type is \"" + printable(parsed->type, 64) +
                                                 "\", not a cosign container image signature");
    } else if (parsed->docker_manifest_digest != expected_digest) {
      c = fail(SignatureFailure::digest_mismatch,
               "signature is for " + short_digest(parsed->docker_manifest_digest) + ", not for " +
                   short_digest(expected_digest) + " (copied from another image?)");
    } else {
      c.ok = true;
      c.failure = SignatureFailure::none;
    }
    c.payload = std::move(parsed).value();
    return c;
  } catch (...) {
    // Only allocation can throw here; fail closed.
    return fail(SignatureFailure::bad_signature, "signature check failed unexpectedly");
  }
}

Status verify_signature_with_key(const Signature& sig, const PublicKey& key, HashAlgorithm hash,
                                 std::string_view expected_digest) {
  SignatureCheck c = check_signature_with_key(sig, key, hash, expected_digest);
  if (c.ok) return {};
  Errc code =
      c.failure == SignatureFailure::invalid_argument ? Errc::invalid_argument : Errc::verification;
  return make_error(code, std::move(c.message));
}

Result<std::string> decode_signature_annotation(std::string_view text) {
  return detail::go_std_base64(text);
}

}  // namespace sigil::crypto
