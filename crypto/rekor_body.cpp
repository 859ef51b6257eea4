// crypto/rekor_body.cpp: Rekor entry bodies (hashedrekord 0.0.1/0.0.2, dsse 0.0.1/0.0.2,
// intoto 0.0.2) -> the signatures, verifiers and hashes they record.
#include <nlohmann/json.hpp>

#include "crypto/json_detail.hpp"
#include "crypto/rekor.hpp"
#include "crypto/rekor_detail.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <exception>
#include <new>
#include <utility>

#include "common/encoding.hpp"
#include "crypto/go_base64.hpp"

namespace sigil::crypto {

namespace {

using json = nlohmann::json;

using detail::join;
using detail::parse_err;
using detail::prefixed;
using detail::printable;

// Exact-name member for log entry bodies (Rekor writes them canonicalized).
const json* member(const json& obj, std::string_view name) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

Result<const json*> need(const json& obj, std::string_view name, const std::string& path) {
  const json* v = member(obj, name);
  if (v == nullptr) return parse_err(join(path, name), "is missing");
  return v;
}

Result<const json*> need_object(const json& obj, std::string_view name, const std::string& path) {
  auto v = need(obj, name, path);
  if (!v) return v;
  if (!(*v)->is_object()) return parse_err(join(path, name), "must be an object");
  return v;
}

Result<std::string> need_string(const json& obj, std::string_view name, const std::string& path) {
  auto v = need(obj, name, path);
  if (!v) return std::move(v).error();
  return detail::pb_string(**v, join(path, name));
}

// Non-empty base64 bytes. Rekor v1 bodies are go-openapi types (strfmt.Base64: Go's
// StdEncoding); Rekor v2 bodies are protobuf JSON (protojson `bytes`).
enum class Bytes { v1, v2 };

Result<std::string> need_bytes(const json& obj, std::string_view name, const std::string& path,
                               Bytes rule = Bytes::v1) {
  auto v = need(obj, name, path);
  if (!v) return std::move(v).error();
  auto raw = rule == Bytes::v2 ? detail::pb_bytes(**v, join(path, name))
                               : detail::go_std_bytes(**v, join(path, name));
  if (!raw) return raw;
  if (raw->empty()) return parse_err(join(path, name), "is empty");
  return raw;
}

// Rekor v1 schemas: {"algorithm":"sha256","value":"<lowercase hex>"}.
Result<std::pair<HashAlgorithm, std::string>> v1_hash(const json& obj, const std::string& path) {
  auto alg = need_string(obj, "algorithm", path);
  if (!alg) return std::move(alg).error();
  HashAlgorithm h;
  if (*alg == "sha256") {
    h = HashAlgorithm::sha256;
  } else if (*alg == "sha384") {
    h = HashAlgorithm::sha384;
  } else if (*alg == "sha512") {
    h = HashAlgorithm::sha512;
  } else {
    return parse_err(join(path, "algorithm"), "\"" + printable(*alg, 32) + "\" is not supported");
  }
  auto value = need_string(obj, "value", path);
  if (!value) return std::move(value).error();
  if (!is_lower_hex(*value) || value->size() != 2 * digest_size(h)) {
    return parse_err(join(path, "value"), std::string("is not a lowercase hex ") + hash_name(h));
  }
  auto raw = hex_decode(*value);
  if (!raw) return parse_err(join(path, "value"), "is not hex");
  return std::make_pair(h, std::move(raw).value());
}

// Rekor v2 (protobuf HashOutput): {"algorithm":"SHA2_256","digest":"<base64>"}.
Result<std::pair<HashAlgorithm, std::string>> v2_hash(const json& obj, const std::string& path) {
  auto alg = need_string(obj, "algorithm", path);
  if (!alg) return std::move(alg).error();
  HashAlgorithm h;
  if (*alg == "SHA2_256") {
    h = HashAlgorithm::sha256;
  } else if (*alg == "SHA2_384") {
    h = HashAlgorithm::sha384;
  } else if (*alg == "SHA2_512") {
    h = HashAlgorithm::sha512;
  } else {
    return parse_err(join(path, "algorithm"), "\"" + printable(*alg, 32) + "\" is not supported");
  }
  auto digest = need_bytes(obj, "digest", path, Bytes::v2);
  if (!digest) return std::move(digest).error();
  if (digest->size() != digest_size(h)) {
    return parse_err(join(path, "digest"), std::string("is not a ") + hash_name(h) + " digest");
  }
  return std::make_pair(h, std::move(digest).value());
}

Status check_certificate_der(std::string_view der, const std::string& field) {
  if (der.empty() || der.size() > static_cast<size_t>(LONG_MAX)) {
    return parse_err(field, "is not a DER certificate");
  }
  const auto* begin = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* p = begin;
  X509* cert = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (cert == nullptr) {
    ERR_clear_error();
    return parse_err(field, "is not a DER certificate");
  }
  X509_free(cert);
  if (p != begin + der.size()) return parse_err(field, "has bytes after the certificate");
  return {};
}

// `known`: the DER of a certificate the caller has parsed already (the signature's leaf); the
// same bytes here need not be parsed again.
Result<RekorVerifier> verifier_from_der(std::string der, bool is_certificate,
                                        const std::string& field, std::string_view known) {
  RekorVerifier v;
  v.is_certificate = is_certificate;
  if (is_certificate) {
    if (known.empty() || der != known) {
      if (auto ok = check_certificate_der(der, field); !ok) return std::move(ok).error();
    }
    v.der = std::move(der);
    return v;
  }
  auto key = PublicKey::from_der(der);
  if (!key) return parse_err(field, "is not a usable public key: " + key.error().message);
  v.der = key->spki_der();
  return v;
}

// A PEM text holding one PUBLIC KEY, or one or more CERTIFICATEs (a chain, leaf first: Rekor
// stores the chain when a client submitted one). Text outside the blocks must be whitespace.
Result<RekorVerifier> verifier_from_pem(std::string_view pem, const std::string& field,
                                        std::string_view known) {
  auto only_space = [](std::string_view s) {
    for (char c : s) {
      if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return false;
    }
    return true;
  };
  std::vector<std::pair<std::string, std::string_view>> blocks;  // label, body
  size_t pos = 0;
  while (true) {
    size_t begin = pem.find("-----BEGIN ", pos);
    if (begin == std::string_view::npos) {
      if (blocks.empty()) return parse_err(field, "holds no PEM block");
      if (!only_space(pem.substr(pos))) return parse_err(field, "has text outside its PEM blocks");
      break;
    }
    if (!only_space(pem.substr(pos, begin - pos))) {
      return parse_err(field, "has text outside its PEM blocks");
    }
    size_t label_start = begin + 11;
    size_t label_end = pem.find("-----", label_start);
    if (label_end == std::string_view::npos || label_end - label_start > 64) {
      return parse_err(field, "has a malformed PEM BEGIN line");
    }
    std::string label(pem.substr(label_start, label_end - label_start));
    std::string end_line = "-----END " + label + "-----";
    size_t body_start = label_end + 5;
    size_t end = pem.find(end_line, body_start);
    if (end == std::string_view::npos) return parse_err(field, "has a PEM block with no END line");
    blocks.emplace_back(std::move(label), pem.substr(body_start, end - body_start));
    pos = end + end_line.size();
    if (blocks.size() > 16) return parse_err(field, "has too many PEM blocks");
  }
  const std::string& label = blocks.front().first;
  if (label != "CERTIFICATE" && label != "PUBLIC KEY") {
    return parse_err(field, "holds a PEM \"" + printable(label, 40) +
                                "\" block, not a CERTIFICATE or PUBLIC KEY");
  }
  for (const auto& b : blocks) {
    if (b.first != label) return parse_err(field, "mixes PEM block types");
    if (b.second.find(':') != std::string_view::npos) {
      return parse_err(field, "has PEM headers, which are not allowed");
    }
  }
  if (label == "PUBLIC KEY" && blocks.size() != 1) {
    return parse_err(field, "holds more than one public key");
  }
  auto der = base64_decode(blocks.front().second);
  if (!der) return parse_err(field, "has a PEM body that is not valid base64");
  for (size_t i = 1; i < blocks.size(); ++i) {
    if (!base64_decode(blocks[i].second)) {
      return parse_err(field, "has a PEM body that is not valid base64");
    }
  }
  return verifier_from_der(std::move(der).value(), label == "CERTIFICATE", field, known);
}

// A base64 string holding PEM (Rekor v1 schemas' "format: byte" key fields).
Result<RekorVerifier> verifier_from_b64_pem(const json& obj, std::string_view name,
                                            const std::string& path, std::string_view known) {
  auto pem = need_bytes(obj, name, path);
  if (!pem) return std::move(pem).error();
  return verifier_from_pem(*pem, join(path, name), known);
}

// Rekor v2 (protobuf Verifier): {"publicKey":{"rawBytes":..}} or
// {"x509Certificate":{"rawBytes":..}}, plus keyDetails.
Result<RekorVerifier> v2_verifier(const json& obj, const std::string& path,
                                  std::string_view known) {
  const json* key = member(obj, "publicKey");
  const json* cert = member(obj, "x509Certificate");
  if ((key == nullptr) == (cert == nullptr)) {
    return parse_err(path, "must have exactly one of publicKey and x509Certificate");
  }
  const bool is_cert = cert != nullptr;
  const std::string sub = join(path, is_cert ? "x509Certificate" : "publicKey");
  const json& holder = is_cert ? *cert : *key;
  if (!holder.is_object()) return parse_err(sub, "must be an object");
  auto der = need_bytes(holder, "rawBytes", sub, Bytes::v2);
  if (!der) return std::move(der).error();
  if (const json* details = member(obj, "keyDetails"); details && !details->is_string()) {
    return parse_err(join(path, "keyDetails"), "must be a string");
  }
  return verifier_from_der(std::move(der).value(), is_cert, join(sub, "rawBytes"), known);
}

Result<const json*> need_array(const json& obj, std::string_view name, const std::string& path) {
  auto v = need(obj, name, path);
  if (!v) return v;
  if (!(*v)->is_array()) return parse_err(join(path, name), "must be an array");
  if ((*v)->empty()) return parse_err(join(path, name), "is empty");
  return v;
}

Status hashedrekord_v001(const json& spec, RekorBody& out, std::string_view known) {
  const std::string path = "spec";
  auto data = need_object(spec, "data", path);
  if (!data) return std::move(data).error();
  auto hash_obj = need_object(**data, "hash", "spec.data");
  if (!hash_obj) return std::move(hash_obj).error();
  auto hash = v1_hash(**hash_obj, "spec.data.hash");
  if (!hash) return std::move(hash).error();
  out.hash_algorithm = hash->first;
  out.hash = std::move(hash->second);
  auto sig = need_object(spec, "signature", path);
  if (!sig) return std::move(sig).error();
  auto content = need_bytes(**sig, "content", "spec.signature");
  if (!content) return std::move(content).error();
  auto key = need_object(**sig, "publicKey", "spec.signature");
  if (!key) return std::move(key).error();
  auto verifier = verifier_from_b64_pem(**key, "content", "spec.signature.publicKey", known);
  if (!verifier) return std::move(verifier).error();
  out.signatures.push_back(std::move(content).value());
  out.verifiers.push_back(std::move(verifier).value());
  return {};
}

// Rekor v2 "Signature": {"content": b64, "verifier": Verifier}.
Status v2_signature(const json& sig, const std::string& path, RekorBody& out,
                    std::string_view known) {
  if (!sig.is_object()) return parse_err(path, "must be an object");
  auto content = need_bytes(sig, "content", path, Bytes::v2);
  if (!content) return std::move(content).error();
  auto vobj = need_object(sig, "verifier", path);
  if (!vobj) return std::move(vobj).error();
  auto verifier = v2_verifier(**vobj, join(path, "verifier"), known);
  if (!verifier) return std::move(verifier).error();
  out.signatures.push_back(std::move(content).value());
  out.verifiers.push_back(std::move(verifier).value());
  return {};
}

Status hashedrekord_v002(const json& spec, RekorBody& out, std::string_view known) {
  auto inner = need_object(spec, "hashedRekordV002", "spec");
  if (!inner) return std::move(inner).error();
  const std::string path = "spec.hashedRekordV002";
  auto data = need_object(**inner, "data", path);
  if (!data) return std::move(data).error();
  auto hash = v2_hash(**data, join(path, "data"));
  if (!hash) return std::move(hash).error();
  out.hash_algorithm = hash->first;
  out.hash = std::move(hash->second);
  auto sig = need(**inner, "signature", path);
  if (!sig) return std::move(sig).error();
  return v2_signature(**sig, join(path, "signature"), out, known);
}

Status dsse_v001(const json& spec, RekorBody& out, std::string_view known) {
  auto payload_hash = need_object(spec, "payloadHash", "spec");
  if (!payload_hash) return std::move(payload_hash).error();
  auto hash = v1_hash(**payload_hash, "spec.payloadHash");
  if (!hash) return std::move(hash).error();
  out.hash_algorithm = hash->first;
  out.hash = std::move(hash->second);
  auto envelope_hash = need_object(spec, "envelopeHash", "spec");
  if (!envelope_hash) return std::move(envelope_hash).error();
  auto env = v1_hash(**envelope_hash, "spec.envelopeHash");
  if (!env) return std::move(env).error();
  out.envelope_hash = std::move(env->second);
  auto sigs = need_array(spec, "signatures", "spec");
  if (!sigs) return std::move(sigs).error();
  for (size_t i = 0; i < (*sigs)->size(); ++i) {
    const json& s = (**sigs)[i];
    const std::string at = "spec.signatures[" + std::to_string(i) + "]";
    if (!s.is_object()) return parse_err(at, "must be an object");
    // "signature" is the envelope's base64 signature text, kept as a string.
    auto sig = need_bytes(s, "signature", at);
    if (!sig) return std::move(sig).error();
    auto verifier = verifier_from_b64_pem(s, "verifier", at, known);
    if (!verifier) return std::move(verifier).error();
    out.signatures.push_back(std::move(sig).value());
    out.verifiers.push_back(std::move(verifier).value());
  }
  return {};
}

Status dsse_v002(const json& spec, RekorBody& out, std::string_view known) {
  auto inner = need_object(spec, "dsseV002", "spec");
  if (!inner) return std::move(inner).error();
  const std::string path = "spec.dsseV002";
  auto payload_hash = need_object(**inner, "payloadHash", path);
  if (!payload_hash) return std::move(payload_hash).error();
  auto hash = v2_hash(**payload_hash, join(path, "payloadHash"));
  if (!hash) return std::move(hash).error();
  out.hash_algorithm = hash->first;
  out.hash = std::move(hash->second);
  auto sigs = need_array(**inner, "signatures", path);
  if (!sigs) return std::move(sigs).error();
  for (size_t i = 0; i < (*sigs)->size(); ++i) {
    auto ok =
        v2_signature((**sigs)[i], path + ".signatures[" + std::to_string(i) + "]", out, known);
    if (!ok) return ok;
  }
  return {};
}

// rekor pkg/types/intoto/v0.0.2: spec.content.{envelope{payloadType, signatures[{keyid?,
// sig, publicKey}]}, hash, payloadHash}. sig is base64 of the envelope's base64 signature
// text; publicKey is base64 of PEM.
Status intoto_v002(const json& spec, RekorBody& out, std::string_view known) {
  auto content = need_object(spec, "content", "spec");
  if (!content) return std::move(content).error();
  const std::string path = "spec.content";
  auto payload_hash = need_object(**content, "payloadHash", path);
  if (!payload_hash) return std::move(payload_hash).error();
  auto hash = v1_hash(**payload_hash, join(path, "payloadHash"));
  if (!hash) return std::move(hash).error();
  out.hash_algorithm = hash->first;
  out.hash = std::move(hash->second);
  auto envelope_hash = need_object(**content, "hash", path);
  if (!envelope_hash) return std::move(envelope_hash).error();
  auto env_hash = v1_hash(**envelope_hash, join(path, "hash"));
  if (!env_hash) return std::move(env_hash).error();
  out.envelope_hash = std::move(env_hash->second);
  auto envelope = need_object(**content, "envelope", path);
  if (!envelope) return std::move(envelope).error();
  const std::string env_path = join(path, "envelope");
  auto payload_type = need_string(**envelope, "payloadType", env_path);
  if (!payload_type) return std::move(payload_type).error();
  auto sigs = need_array(**envelope, "signatures", env_path);
  if (!sigs) return std::move(sigs).error();
  for (size_t i = 0; i < (*sigs)->size(); ++i) {
    const json& s = (**sigs)[i];
    const std::string at = env_path + ".signatures[" + std::to_string(i) + "]";
    if (!s.is_object()) return parse_err(at, "must be an object");
    auto outer = need_bytes(s, "sig", at);
    if (!outer) return std::move(outer).error();
    auto sig = detail::go_std_base64(*outer);
    if (!sig || sig->empty()) {
      return parse_err(join(at, "sig"), "does not hold a base64 signature");
    }
    auto verifier = verifier_from_b64_pem(s, "publicKey", at, known);
    if (!verifier) return std::move(verifier).error();
    out.signatures.push_back(std::move(sig).value());
    out.verifiers.push_back(std::move(verifier).value());
  }
  return {};
}

}  // namespace

Result<RekorBody> parse_rekor_body(std::string_view canonicalized_body,
                                   std::string_view known_certificate_der) {
  const std::string_view known = known_certificate_der;
  constexpr std::string_view what = "log entry body";
  auto doc = detail::parse_json_strict(canonicalized_body, what);
  if (!doc) return std::move(doc).error();
  try {
    const json& v = *doc;
    if (!v.is_object()) return prefixed(what, parse_err("document", "must be a JSON object"));
    RekorBody out;
    auto kind = need_string(v, "kind", "");
    if (!kind) return prefixed(what, std::move(kind).error());
    auto version = need_string(v, "apiVersion", "");
    if (!version) return prefixed(what, std::move(version).error());
    out.kind = std::move(kind).value();
    out.api_version = std::move(version).value();
    auto spec = need_object(v, "spec", "");
    if (!spec) return prefixed(what, std::move(spec).error());

    Status parsed;
    if (out.kind == "hashedrekord" && out.api_version == "0.0.1") {
      parsed = hashedrekord_v001(**spec, out, known);
    } else if (out.kind == "hashedrekord" && out.api_version == "0.0.2") {
      parsed = hashedrekord_v002(**spec, out, known);
    } else if (out.kind == "dsse" && out.api_version == "0.0.1") {
      parsed = dsse_v001(**spec, out, known);
    } else if (out.kind == "dsse" && out.api_version == "0.0.2") {
      parsed = dsse_v002(**spec, out, known);
    } else if (out.kind == "intoto" && out.api_version == "0.0.2") {
      parsed = intoto_v002(**spec, out, known);
    } else {
      return make_error(Errc::unsupported, "log entry kind " + printable(out.kind, 32) +
                                               " version " + printable(out.api_version, 16) +
                                               " is not supported");
    }
    if (!parsed) return prefixed(what, std::move(parsed).error());
    return out;
  } catch (const std::bad_alloc&) {
    return make_error(Errc::too_large, "log entry body exhausted memory");
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "log entry body is malformed");
  }
}

}  // namespace sigil::crypto
