// crypto/signed_entity.cpp: a signature as found (a legacy .sig layer with its annotations, or
// a sigstore bundle) -> one SignedEntity, the shape verify_entity checks.
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "common/encoding.hpp"
#include "crypto/go_base64.hpp"
#include "crypto/sigstore.hpp"

namespace sigil::crypto {

namespace {

using json = nlohmann::json;

}  // namespace

Result<SignedEntity> entity_from_legacy(const Signature& sig) {
  try {
    SignedEntity e;
    e.kind = SignedEntity::Kind::simple_signing;
    e.source = sig.source;
    e.signature = sig.signature;
    e.payload = sig.payload;
    if (!trim(sig.certificate_pem).empty()) {
      auto leaf = parse_pem_certificates(sig.certificate_pem);
      if (!leaf)
        return make_error(Errc::parse_error, "certificate annotation: " + leaf.error().message);
      if (leaf->size() != 1) {
        return make_error(Errc::parse_error, "certificate annotation holds " +
                                                 std::to_string(leaf->size()) + " certificates");
      }
      e.certificates_der.push_back(leaf->front().der());
      if (!trim(sig.chain_pem).empty()) {
        auto chain = parse_pem_certificates(sig.chain_pem);
        if (!chain)
          return make_error(Errc::parse_error, "chain annotation: " + chain.error().message);
        for (const auto& c : *chain) e.certificates_der.push_back(c.der());
      }
    }
    if (!trim(sig.bundle_json).empty()) {
      auto entry = parse_rekor_bundle_annotation(sig.bundle_json);
      if (!entry)
        return make_error(Errc::parse_error, "bundle annotation: " + entry.error().message);
      e.tlog_entries.push_back(std::move(*entry));
    }
    if (!trim(sig.rfc3161_json).empty()) {
      json doc = json::parse(sig.rfc3161_json, nullptr, /*allow_exceptions=*/false);
      if (!doc.is_object() || !doc.contains("SignedRFC3161Timestamp") ||
          !doc["SignedRFC3161Timestamp"].is_string()) {
        return make_error(Errc::parse_error,
                          "rfc3161timestamp annotation: expected {\"SignedRFC3161Timestamp\": "
                          "\"<base64>\"}");
      }
      auto der = detail::go_std_base64(doc["SignedRFC3161Timestamp"].get<std::string>());
      if (!der || der->empty()) {
        return make_error(Errc::parse_error, "rfc3161timestamp annotation: not base64");
      }
      e.rfc3161_timestamps.push_back(std::move(*der));
    }
    return e;
  } catch (const std::exception& ex) {
    return make_error(Errc::parse_error, std::string("signature annotations: ") + ex.what());
  }
}

Result<SignedEntity> entity_from_bundle(const Bundle& b, std::string source) {
  SignedEntity e;
  e.source = std::move(source);
  e.bundle_minor_version = b.minor_version > 0 ? b.minor_version : 1;
  e.certificates_der = b.certificates_der;
  e.tlog_entries = b.tlog_entries;
  e.rfc3161_timestamps = b.rfc3161_timestamps;
  if (b.content == Bundle::Content::message_signature) {
    e.kind = SignedEntity::Kind::message_signature;
    e.signature = b.signature;
    e.message_digest_algorithm = b.message_digest_algorithm;
    e.message_digest = b.message_digest;
  } else {
    e.kind = SignedEntity::Kind::dsse;
    e.payload_type = b.envelope.payload_type;
    e.payload = b.envelope.payload;
    e.signature_count_ok = b.envelope.signatures.size() == 1;
    if (!b.envelope.signatures.empty()) e.signature = b.envelope.signatures.front().sig;
  }
  return e;
}

}  // namespace sigil::crypto
