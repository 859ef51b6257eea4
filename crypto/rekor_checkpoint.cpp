// crypto/rekor.cpp: Rekor log entries (cosign annotation, bundle tlog entries, entry bodies),
// signed entry timestamps, RFC 6962 inclusion proofs and signed-note checkpoints.
// nlohmann comes first so that jcs.hpp and rekor.hpp declare their detail helpers here.
#include <nlohmann/json.hpp>

#include "crypto/json_detail.hpp"
#include "crypto/rekor.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <climits>
#include <exception>
#include <new>
#include <utility>

#include "common/encoding.hpp"
#include "crypto/go_base64.hpp"
#include "crypto/jcs.hpp"

namespace sigil::crypto {

namespace {

using json = nlohmann::json;

constexpr size_t kHashSize = 32;  // SHA-256, the only Merkle hash Rekor uses
constexpr size_t kMaxProofHashes = 64;
constexpr size_t kMaxCheckpointBytes = 256 * 1024;
constexpr size_t kMaxNoteSignatures = 100;
constexpr std::string_view kEmDash = "\xE2\x80\x94";  // U+2014, which opens a signature line

Error parse_err(std::string_view field, std::string_view what) {
  return make_error(Errc::parse_error, std::string(field) + " " + std::string(what));
}

Error verify_err(std::string message) {
  return make_error(Errc::verification, std::move(message));
}

Error prefixed(std::string_view doc, Error e) {
  e.message = std::string(doc) + ": " + e.message;
  return e;
}

std::string join(std::string_view path, std::string_view field) {
  if (path.empty()) return std::string(field);
  return std::string(path) + "." + std::string(field);
}

using detail::printable;

std::string short_hex(std::string_view raw) {
  return hex_encode(raw.substr(0, 6));
}

// --- Go encoding/json member matching (for cosign's annotation) --------------------------

// The one member whose folded name equals `folded`, nullptr when none (or null).
Result<const json*> go_member(const json& obj, std::string_view folded, std::string_view field) {
  const json* found = nullptr;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (detail::go_fold(it.key()) != folded) continue;
    if (found != nullptr)
      return parse_err(field, "is given twice (member names differing in case)");
    if (!it->is_null()) found = &*it;
  }
  return found;
}

Result<int64_t> go_int64(const json& v, std::string_view field) {
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      return parse_err(field, "is out of range");
    return static_cast<int64_t>(v.get<uint64_t>());
  }
  if (v.is_number_integer()) {
    int64_t n = v.get<int64_t>();
    if (n < 0) return parse_err(field, "must not be negative");
    return n;
  }
  return parse_err(field, "must be an integer");
}

// --- entry bodies ----------------------------------------------------------------------

// kind and apiVersion of a body, as the consistency check with kindVersion needs them.
Result<std::pair<std::string, std::string>> body_kind(std::string_view body,
                                                      std::string_view field) {
  auto doc = detail::parse_json_strict(body, std::string(field));
  if (!doc) return std::move(doc).error();
  const json& v = *doc;
  if (!v.is_object()) return parse_err(field, "is not a JSON object");
  auto kind = v.find("kind");
  auto version = v.find("apiVersion");
  if (kind == v.end() || !kind->is_string()) return parse_err(field, "has no string kind");
  if (version == v.end() || !version->is_string()) {
    return parse_err(field, "has no string apiVersion");
  }
  return std::make_pair(kind->get<std::string>(), version->get<std::string>());
}

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

Result<RekorVerifier> verifier_from_der(std::string der, bool is_certificate,
                                        const std::string& field) {
  RekorVerifier v;
  v.is_certificate = is_certificate;
  if (is_certificate) {
    if (auto ok = check_certificate_der(der, field); !ok) return std::move(ok).error();
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
Result<RekorVerifier> verifier_from_pem(std::string_view pem, const std::string& field) {
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
  return verifier_from_der(std::move(der).value(), label == "CERTIFICATE", field);
}

// A base64 string holding PEM (Rekor v1 schemas' "format: byte" key fields).
Result<RekorVerifier> verifier_from_b64_pem(const json& obj, std::string_view name,
                                            const std::string& path) {
  auto pem = need_bytes(obj, name, path);
  if (!pem) return std::move(pem).error();
  return verifier_from_pem(*pem, join(path, name));
}

// Rekor v2 (protobuf Verifier): {"publicKey":{"rawBytes":..}} or
// {"x509Certificate":{"rawBytes":..}}, plus keyDetails.
Result<RekorVerifier> v2_verifier(const json& obj, const std::string& path) {
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
  return verifier_from_der(std::move(der).value(), is_cert, join(sub, "rawBytes"));
}

Result<const json*> need_array(const json& obj, std::string_view name, const std::string& path) {
  auto v = need(obj, name, path);
  if (!v) return v;
  if (!(*v)->is_array()) return parse_err(join(path, name), "must be an array");
  if ((*v)->empty()) return parse_err(join(path, name), "is empty");
  return v;
}

Status hashedrekord_v001(const json& spec, RekorBody& out) {
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
  auto verifier = verifier_from_b64_pem(**key, "content", "spec.signature.publicKey");
  if (!verifier) return std::move(verifier).error();
  out.signatures.push_back(std::move(content).value());
  out.verifiers.push_back(std::move(verifier).value());
  return {};
}

// Rekor v2 "Signature": {"content": b64, "verifier": Verifier}.
Status v2_signature(const json& sig, const std::string& path, RekorBody& out) {
  if (!sig.is_object()) return parse_err(path, "must be an object");
  auto content = need_bytes(sig, "content", path, Bytes::v2);
  if (!content) return std::move(content).error();
  auto vobj = need_object(sig, "verifier", path);
  if (!vobj) return std::move(vobj).error();
  auto verifier = v2_verifier(**vobj, join(path, "verifier"));
  if (!verifier) return std::move(verifier).error();
  out.signatures.push_back(std::move(content).value());
  out.verifiers.push_back(std::move(verifier).value());
  return {};
}

Status hashedrekord_v002(const json& spec, RekorBody& out) {
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
  return v2_signature(**sig, join(path, "signature"), out);
}

Status dsse_v001(const json& spec, RekorBody& out) {
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
    auto verifier = verifier_from_b64_pem(s, "verifier", at);
    if (!verifier) return std::move(verifier).error();
    out.signatures.push_back(std::move(sig).value());
    out.verifiers.push_back(std::move(verifier).value());
  }
  return {};
}

Status dsse_v002(const json& spec, RekorBody& out) {
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
    auto ok = v2_signature((**sigs)[i], path + ".signatures[" + std::to_string(i) + "]", out);
    if (!ok) return ok;
  }
  return {};
}

// rekor pkg/types/intoto/v0.0.2: spec.content.{envelope{payloadType, signatures[{keyid?,
// sig, publicKey}]}, hash, payloadHash}. sig is base64 of the envelope's base64 signature
// text; publicKey is base64 of PEM.
Status intoto_v002(const json& spec, RekorBody& out) {
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
    auto verifier = verifier_from_b64_pem(s, "publicKey", at);
    if (!verifier) return std::move(verifier).error();
    out.signatures.push_back(std::move(sig).value());
    out.verifiers.push_back(std::move(verifier).value());
  }
  return {};
}

// --- Merkle and checkpoint ---------------------------------------------------------------

std::string node_hash(std::string_view left, std::string_view right) {
  std::string buf;
  buf.reserve(1 + left.size() + right.size());
  buf.push_back('\x01');
  buf.append(left);
  buf.append(right);
  return sha256(buf);
}

// Go's note.Open refuses control characters and splits fields at spaces: note fields hold none.
bool has_space(std::string_view s) {
  return s.find_first_of(" \t\r\n") != std::string_view::npos;
}

// The next code point of s at pos (well-formed UTF-8 only: no overlong forms, surrogates or
// values past U+10FFFF, as Go's utf8.DecodeRune accepts), advancing pos; -1 when malformed.
int32_t next_rune(std::string_view s, size_t& pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  size_t n;
  int32_t r;
  int32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, r = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, r = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, r = b0 & 0x07, min = 0x10000;
  } else {
    return -1;
  }
  if (pos + n > s.size()) return -1;
  for (size_t i = 1; i < n; ++i) {
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if ((b & 0xC0) != 0x80) return -1;
    r = (r << 6) | (b & 0x3F);
  }
  if (r < min || r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF)) return -1;
  pos += n;
  return r;
}

// golang.org/x/mod/sumdb/note: a note is valid UTF-8 with no control character but '\n'.
bool note_characters_ok(std::string_view note) {
  for (size_t pos = 0; pos < note.size();) {
    int32_t r = next_rune(note, pos);
    if (r < 0 || (r < 0x20 && r != '\n')) return false;
  }
  return true;
}

// note's isValidName: non-empty UTF-8 without '+' or white space (Go's unicode.IsSpace).
bool note_name_ok(std::string_view name) {
  if (name.empty()) return false;
  for (size_t pos = 0; pos < name.size();) {
    int32_t r = next_rune(name, pos);
    if (r < 0 || r == '+') return false;
    const bool space = (r >= 0x09 && r <= 0x0D) || r == 0x20 || r == 0x85 || r == 0xA0 ||
                       r == 0x1680 || (r >= 0x2000 && r <= 0x200A) || r == 0x2028 || r == 0x2029 ||
                       r == 0x202F || r == 0x205F || r == 0x3000;
    if (space) return false;
  }
  return true;
}

// Decimal tree size as the note writes it: digits only, no leading zeros (except "0").
bool parse_size(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 19 || (s.size() > 1 && s.front() == '0')) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    int d = c - '0';
    if (v > (INT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

// Rekor v1 writes "<hostname> - <tree id>"; rekor-tiles (v2) writes the bare log name.
bool is_v1_origin(std::string_view origin) {
  size_t sep = origin.rfind(" - ");
  if (sep == std::string_view::npos || sep == 0) return false;
  std::string_view id = origin.substr(sep + 3);
  if (id.empty()) return false;
  for (char c : id) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// The host of a URL, as Go's url.URL.Hostname() gives it ("https://a.b:443/x" -> "a.b").
std::string url_host(std::string_view url) {
  size_t scheme = url.find("://");
  if (scheme != std::string_view::npos) url.remove_prefix(scheme + 3);
  size_t end = url.find_first_of("/?#");
  if (end != std::string_view::npos) url = url.substr(0, end);
  size_t at = url.rfind('@');
  if (at != std::string_view::npos) url.remove_prefix(at + 1);
  if (!url.empty() && url.front() == '[') {
    size_t close = url.find(']');
    return std::string(close == std::string_view::npos ? url.substr(1) : url.substr(1, close - 1));
  }
  size_t colon = url.rfind(':');
  if (colon != std::string_view::npos) url = url.substr(0, colon);
  return std::string(url);
}

Result<std::string> raw_public_key(const PublicKey& key) {
  const auto* pkey = static_cast<const EVP_PKEY*>(key.native());
  if (pkey == nullptr) return verify_err("the log has no key");
  size_t len = 0;
  if (EVP_PKEY_get_raw_public_key(pkey, nullptr, &len) != 1 || len == 0 || len > 256) {
    ERR_clear_error();
    return make_error(Errc::internal, "cannot read the log's raw public key");
  }
  std::string raw(len, '\0');
  if (EVP_PKEY_get_raw_public_key(pkey, reinterpret_cast<unsigned char*>(raw.data()), &len) != 1) {
    ERR_clear_error();
    return make_error(Errc::internal, "cannot read the log's raw public key");
  }
  raw.resize(len);
  return raw;
}

// The key hints a signature line by `log` may carry for a note with this origin.
Result<std::vector<std::string>> key_hints(const TransparencyLog& log, std::string_view origin,
                                           bool v1) {
  std::vector<std::string> hints;
  const std::string spki_hint = sha256(log.key.spki_der()).substr(0, 4);
  if (v1 || log.key.type() != KeyType::ed25519) {
    if (!v1 && log.key.type() == KeyType::rsa) {
      // rekor-tiles: SHA-256(origin || "\n" || 0xff || "PKIX-RSA-PKCS#1v1.5" || SPKI).
      std::string m(origin);
      m += "\n\xFFPKIX-RSA-PKCS#1v1.5";
      m += log.key.spki_der();
      hints.push_back(sha256(m).substr(0, 4));
    } else {
      hints.push_back(spki_hint);
    }
  } else {
    auto raw = raw_public_key(log.key);
    if (!raw) return std::move(raw).error();
    std::string m(origin);
    m += "\n\x01";
    m += *raw;
    hints.push_back(sha256(m).substr(0, 4));
  }
  if (log.checkpoint_key_id.size() >= 4) hints.push_back(log.checkpoint_key_id.substr(0, 4));
  for (const auto& h : hints) {
    if (h.size() != 4) return make_error(Errc::internal, "cannot compute the log's key hint");
  }
  return hints;
}

// The log as messages name it: its URL, else the start of its id.
std::string log_name(const TransparencyLog& log) {
  return log.base_url.empty() ? short_hex(log.log_id) + "..." : printable(log.base_url, 80);
}

Status same_log(const TlogEntry& entry, const TransparencyLog& log) {
  if (entry.log_id == log.log_id) return {};
  return verify_err("log entry is from log " + short_hex(entry.log_id) + "..., not from " +
                    log_name(log));
}

}  // namespace

// --- public: parsers --------------------------------------------------------------------

Result<TlogEntry> parse_rekor_bundle_annotation(std::string_view text) {
  constexpr std::string_view what = "Rekor bundle annotation";
  auto doc = detail::parse_json_strict(text, what);
  if (!doc) return std::move(doc).error();
  try {
    const json& v = *doc;
    if (!v.is_object()) return prefixed(what, parse_err("document", "must be a JSON object"));
    TlogEntry e;

    auto set = go_member(v, "signedentrytimestamp", "SignedEntryTimestamp");
    if (!set) return prefixed(what, std::move(set).error());
    if (*set == nullptr) return prefixed(what, parse_err("SignedEntryTimestamp", "is missing"));
    auto set_raw = detail::go_std_bytes(**set, "SignedEntryTimestamp");
    if (!set_raw) return prefixed(what, std::move(set_raw).error());
    if (set_raw->empty()) return prefixed(what, parse_err("SignedEntryTimestamp", "is empty"));
    e.signed_entry_timestamp = std::move(set_raw).value();

    auto payload = go_member(v, "payload", "Payload");
    if (!payload) return prefixed(what, std::move(payload).error());
    if (*payload == nullptr) return prefixed(what, parse_err("Payload", "is missing"));
    const json& p = **payload;
    if (!p.is_object()) return prefixed(what, parse_err("Payload", "must be an object"));

    auto body = go_member(p, "body", "Payload.body");
    if (!body) return prefixed(what, std::move(body).error());
    if (*body == nullptr) return prefixed(what, parse_err("Payload.body", "is missing"));
    auto body_raw = detail::go_std_bytes(**body, "Payload.body");
    if (!body_raw) return prefixed(what, std::move(body_raw).error());
    if (body_raw->empty()) return prefixed(what, parse_err("Payload.body", "is empty"));
    e.canonicalized_body = std::move(body_raw).value();

    auto time = go_member(p, "integratedtime", "Payload.integratedTime");
    if (!time) return prefixed(what, std::move(time).error());
    if (*time == nullptr) return prefixed(what, parse_err("Payload.integratedTime", "is missing"));
    auto time_v = go_int64(**time, "Payload.integratedTime");
    if (!time_v) return prefixed(what, std::move(time_v).error());
    e.integrated_time = *time_v;

    auto index = go_member(p, "logindex", "Payload.logIndex");
    if (!index) return prefixed(what, std::move(index).error());
    if (*index == nullptr) return prefixed(what, parse_err("Payload.logIndex", "is missing"));
    auto index_v = go_int64(**index, "Payload.logIndex");
    if (!index_v) return prefixed(what, std::move(index_v).error());
    e.log_index = *index_v;

    auto id = go_member(p, "logid", "Payload.logID");
    if (!id) return prefixed(what, std::move(id).error());
    if (*id == nullptr) return prefixed(what, parse_err("Payload.logID", "is missing"));
    if (!(*id)->is_string()) return prefixed(what, parse_err("Payload.logID", "must be a string"));
    const auto& id_hex = (*id)->get_ref<const std::string&>();
    if (!is_lower_hex(id_hex) || id_hex.size() % 2 != 0) {
      return prefixed(what, parse_err("Payload.logID", "is not lowercase hex"));
    }
    auto id_raw = hex_decode(id_hex);
    if (!id_raw) return prefixed(what, parse_err("Payload.logID", "is not lowercase hex"));
    e.log_id = std::move(id_raw).value();

    auto kind = body_kind(e.canonicalized_body, "Payload.body");
    if (!kind) return prefixed(what, std::move(kind).error());
    e.kind = std::move(kind->first);
    e.version = std::move(kind->second);
    return e;
  } catch (const std::bad_alloc&) {
    return make_error(Errc::too_large, "Rekor bundle annotation exhausted memory");
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "Rekor bundle annotation is malformed");
  }
}

namespace detail {

Result<TlogEntry> tlog_entry_from_json(const json& v, std::string_view path) {
  try {
    const std::string at(path);
    if (!v.is_object()) return parse_err(at.empty() ? "tlog entry" : at, "must be an object");
    TlogEntry e;

    auto index = pb_member(v, "logIndex", "log_index", join(at, "logIndex"));
    if (!index) return std::move(index).error();
    if (*index != nullptr) {
      auto n = pb_int64(**index, join(at, "logIndex"), 0);
      if (!n) return std::move(n).error();
      e.log_index = *n;
    }

    auto log_id = pb_member(v, "logId", "log_id", join(at, "logId"));
    if (!log_id) return std::move(log_id).error();
    if (*log_id == nullptr) return parse_err(join(at, "logId"), "is missing");
    if (!(*log_id)->is_object()) return parse_err(join(at, "logId"), "must be an object");
    auto key_id = pb_member(**log_id, "keyId", "key_id", join(at, "logId.keyId"));
    if (!key_id) return std::move(key_id).error();
    if (*key_id == nullptr) return parse_err(join(at, "logId.keyId"), "is missing");
    auto key_id_raw = pb_bytes(**key_id, join(at, "logId.keyId"));
    if (!key_id_raw) return std::move(key_id_raw).error();
    if (key_id_raw->empty()) return parse_err(join(at, "logId.keyId"), "is empty");
    e.log_id = std::move(key_id_raw).value();

    auto kv = pb_member(v, "kindVersion", "kind_version", join(at, "kindVersion"));
    if (!kv) return std::move(kv).error();
    if (*kv == nullptr) return parse_err(join(at, "kindVersion"), "is missing");
    if (!(*kv)->is_object()) return parse_err(join(at, "kindVersion"), "must be an object");
    for (auto [name, dest] : {std::pair<const char*, std::string*>{"kind", &e.kind},
                              std::pair<const char*, std::string*>{"version", &e.version}}) {
      const std::string field = join(at, std::string("kindVersion.") + name);
      auto m = pb_member(**kv, name, name, field);
      if (!m) return std::move(m).error();
      if (*m == nullptr) return parse_err(field, "is missing");
      auto s = pb_string(**m, field);
      if (!s) return std::move(s).error();
      if (s->empty()) return parse_err(field, "is empty");
      *dest = std::move(s).value();
    }

    auto time = pb_member(v, "integratedTime", "integrated_time", join(at, "integratedTime"));
    if (!time) return std::move(time).error();
    if (*time != nullptr) {
      auto n = pb_int64(**time, join(at, "integratedTime"), 0);
      if (!n) return std::move(n).error();
      e.integrated_time = *n;
    }

    auto promise =
        pb_member(v, "inclusionPromise", "inclusion_promise", join(at, "inclusionPromise"));
    if (!promise) return std::move(promise).error();
    if (*promise != nullptr) {
      const std::string field = join(at, "inclusionPromise.signedEntryTimestamp");
      if (!(*promise)->is_object())
        return parse_err(join(at, "inclusionPromise"), "must be an object");
      auto set = pb_member(**promise, "signedEntryTimestamp", "signed_entry_timestamp", field);
      if (!set) return std::move(set).error();
      if (*set == nullptr) return parse_err(field, "is missing");
      auto raw = pb_bytes(**set, field);
      if (!raw) return std::move(raw).error();
      if (raw->empty()) return parse_err(field, "is empty");
      e.signed_entry_timestamp = std::move(raw).value();
    }

    auto proof = pb_member(v, "inclusionProof", "inclusion_proof", join(at, "inclusionProof"));
    if (!proof) return std::move(proof).error();
    if (*proof != nullptr) {
      const std::string pp = join(at, "inclusionProof");
      const json& pj = **proof;
      if (!pj.is_object()) return parse_err(pp, "must be an object");
      InclusionProof ip;
      auto pidx = pb_member(pj, "logIndex", "log_index", join(pp, "logIndex"));
      if (!pidx) return std::move(pidx).error();
      if (*pidx != nullptr) {
        auto n = pb_int64(**pidx, join(pp, "logIndex"), 0);
        if (!n) return std::move(n).error();
        ip.log_index = *n;
      }
      auto size = pb_member(pj, "treeSize", "tree_size", join(pp, "treeSize"));
      if (!size) return std::move(size).error();
      if (*size != nullptr) {
        auto n = pb_int64(**size, join(pp, "treeSize"), 0);
        if (!n) return std::move(n).error();
        ip.tree_size = *n;
      }
      auto root = pb_member(pj, "rootHash", "root_hash", join(pp, "rootHash"));
      if (!root) return std::move(root).error();
      if (*root == nullptr) return parse_err(join(pp, "rootHash"), "is missing");
      auto root_raw = pb_bytes(**root, join(pp, "rootHash"));
      if (!root_raw) return std::move(root_raw).error();
      if (root_raw->size() != kHashSize) {
        return parse_err(join(pp, "rootHash"), "is not a 32-byte SHA-256 hash");
      }
      ip.root_hash = std::move(root_raw).value();
      auto hashes = pb_member(pj, "hashes", "hashes", join(pp, "hashes"));
      if (!hashes) return std::move(hashes).error();
      if (*hashes != nullptr) {
        if (!(*hashes)->is_array()) return parse_err(join(pp, "hashes"), "must be an array");
        if ((*hashes)->size() > kMaxProofHashes) {
          return parse_err(join(pp, "hashes"), "has more than 64 hashes");
        }
        for (size_t i = 0; i < (*hashes)->size(); ++i) {
          const std::string field = join(pp, "hashes[" + std::to_string(i) + "]");
          auto h = pb_bytes((**hashes)[i], field);
          if (!h) return std::move(h).error();
          if (h->size() != kHashSize) return parse_err(field, "is not a 32-byte SHA-256 hash");
          ip.hashes.push_back(std::move(h).value());
        }
      }
      auto cp = pb_member(pj, "checkpoint", "checkpoint", join(pp, "checkpoint"));
      if (!cp) return std::move(cp).error();
      if (*cp != nullptr) {
        if (!(*cp)->is_object()) return parse_err(join(pp, "checkpoint"), "must be an object");
        auto env = pb_member(**cp, "envelope", "envelope", join(pp, "checkpoint.envelope"));
        if (!env) return std::move(env).error();
        if (*env != nullptr) {
          auto s = pb_string(**env, join(pp, "checkpoint.envelope"));
          if (!s) return std::move(s).error();
          ip.checkpoint = std::move(s).value();
        }
      }
      e.inclusion_proof = std::move(ip);
    }

    auto body =
        pb_member(v, "canonicalizedBody", "canonicalized_body", join(at, "canonicalizedBody"));
    if (!body) return std::move(body).error();
    if (*body == nullptr) return parse_err(join(at, "canonicalizedBody"), "is missing");
    auto body_raw = pb_bytes(**body, join(at, "canonicalizedBody"));
    if (!body_raw) return std::move(body_raw).error();
    if (body_raw->empty()) return parse_err(join(at, "canonicalizedBody"), "is empty");
    e.canonicalized_body = std::move(body_raw).value();

    auto kind = body_kind(e.canonicalized_body, join(at, "canonicalizedBody"));
    if (!kind) return std::move(kind).error();
    if (kind->first != e.kind || kind->second != e.version) {
      return parse_err(join(at, "kindVersion"), "says " + printable(e.kind, 32) + " " +
                                                    printable(e.version, 16) + " but the body is " +
                                                    printable(kind->first, 32) + " " +
                                                    printable(kind->second, 16));
    }
    return e;
  } catch (const std::bad_alloc&) {
    return make_error(Errc::too_large, "tlog entry exhausted memory");
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "tlog entry is malformed");
  }
}

}  // namespace detail

Result<TlogEntry> parse_bundle_tlog_entry(std::string_view text) {
  auto doc = detail::parse_json_strict(text, "tlog entry");
  if (!doc) return std::move(doc).error();
  auto e = detail::tlog_entry_from_json(*doc, "");
  if (!e) return prefixed("tlog entry", std::move(e).error());
  return e;
}

Result<RekorBody> parse_rekor_body(std::string_view canonicalized_body) {
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
      parsed = hashedrekord_v001(**spec, out);
    } else if (out.kind == "hashedrekord" && out.api_version == "0.0.2") {
      parsed = hashedrekord_v002(**spec, out);
    } else if (out.kind == "dsse" && out.api_version == "0.0.1") {
      parsed = dsse_v001(**spec, out);
    } else if (out.kind == "dsse" && out.api_version == "0.0.2") {
      parsed = dsse_v002(**spec, out);
    } else if (out.kind == "intoto" && out.api_version == "0.0.2") {
      parsed = intoto_v002(**spec, out);
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

// --- public: verification ---------------------------------------------------------------

Status verify_signed_entry_timestamp(const TlogEntry& entry, const TransparencyLog& log) {
  try {
    if (entry.signed_entry_timestamp.empty()) {
      return verify_err("log entry " + std::to_string(entry.log_index) +
                        " has no signed entry timestamp");
    }
    if (auto same = same_log(entry, log); !same) return same;
    // The payload Rekor signs, canonicalized (RFC 8785) as Rekor and cosign do.
    std::string payload = "{\"body\":\"" + base64_encode(entry.canonicalized_body) +
                          "\",\"integratedTime\":" + std::to_string(entry.integrated_time) +
                          ",\"logID\":\"" + hex_encode(entry.log_id) +
                          "\",\"logIndex\":" + std::to_string(entry.log_index) + "}";
    auto message = canonicalize_json(payload);
    if (!message) return make_error(Errc::internal, "cannot canonicalize the SET payload");
    if (auto ok = log.key.verify(*message, entry.signed_entry_timestamp, log.hash); !ok) {
      if (ok.error().code == Errc::internal) return ok;
      return verify_err("signed entry timestamp of log entry " + std::to_string(entry.log_index) +
                        " does not verify with the key of log " + log_name(log));
    }
    return {};
  } catch (const std::bad_alloc&) {
    return make_error(Errc::internal, "SET check exhausted memory");
  }
}

std::string merkle_leaf_hash(std::string_view leaf) {
  std::string buf;
  buf.reserve(leaf.size() + 1);
  buf.push_back('\0');
  buf.append(leaf);
  return sha256(buf);
}

Result<std::string> merkle_root_from_inclusion_proof(int64_t index, int64_t tree_size,
                                                     std::string_view leaf_hash,
                                                     const std::vector<std::string>& proof) {
  if (tree_size <= 0) return verify_err("inclusion proof is for an empty tree");
  if (index < 0 || index >= tree_size) {
    return verify_err("inclusion proof index " + std::to_string(index) +
                      " is outside the tree of size " + std::to_string(tree_size));
  }
  if (leaf_hash.size() != kHashSize) return verify_err("leaf hash is not 32 bytes");
  // RFC 9162 section 2.1.3.2.
  uint64_t fn = static_cast<uint64_t>(index);
  uint64_t sn = static_cast<uint64_t>(tree_size) - 1;
  std::string r(leaf_hash);
  for (const auto& p : proof) {
    if (p.size() != kHashSize) return verify_err("inclusion proof hash is not 32 bytes");
    if (sn == 0) {
      return verify_err("inclusion proof has " + std::to_string(proof.size()) +
                        " hashes, more than a tree of size " + std::to_string(tree_size) +
                        " needs for index " + std::to_string(index));
    }
    if ((fn & 1) == 1 || fn == sn) {
      r = node_hash(p, r);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = node_hash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) {
    return verify_err("inclusion proof has " + std::to_string(proof.size()) +
                      " hashes, fewer than a tree of size " + std::to_string(tree_size) +
                      " needs for index " + std::to_string(index));
  }
  if (r.size() != kHashSize) return make_error(Errc::internal, "SHA-256 failed");
  return r;
}

Result<Checkpoint> verify_checkpoint(std::string_view note, const TransparencyLog& log) {
  try {
    if (note.size() > kMaxCheckpointBytes) return verify_err("checkpoint is larger than 256 KiB");
    if (!note_characters_ok(note)) {
      return verify_err(
          "checkpoint is not a signed note: not UTF-8, or a control character other than "
          "newline");
    }
    size_t split = note.rfind("\n\n");
    if (split == std::string_view::npos) {
      return verify_err("checkpoint is not a signed note: no blank line before its signatures");
    }
    std::string_view text = note.substr(0, split + 1);
    std::string_view sigs = note.substr(split + 2);
    if (sigs.empty() || sigs.back() != '\n') {
      return verify_err("checkpoint signatures do not end with a newline");
    }

    // The note text: origin, size, root hash, then optional lines, each ending in '\n'.
    std::vector<std::string_view> lines;
    for (size_t pos = 0; pos < text.size();) {
      size_t nl = text.find('\n', pos);
      lines.push_back(text.substr(pos, nl - pos));
      pos = nl + 1;
    }
    if (lines.size() < 3) return verify_err("checkpoint has fewer than three lines");
    for (auto l : lines) {
      if (l.empty()) return verify_err("checkpoint text has an empty line");
    }
    Checkpoint cp;
    cp.origin = std::string(lines[0]);
    if (!parse_size(lines[1], cp.tree_size)) {
      return verify_err("checkpoint tree size \"" + printable(lines[1], 24) +
                        "\" is not a decimal number");
    }
    auto root = detail::go_std_base64(lines[2]);
    if (!root || root->size() != kHashSize || has_space(lines[2])) {
      return verify_err("checkpoint root hash is not a base64 SHA-256 hash");
    }
    cp.root_hash = std::move(root).value();
    for (size_t i = 3; i < lines.size(); ++i) cp.extra_lines.emplace_back(lines[i]);

    const bool v1 = is_v1_origin(cp.origin);
    if (!v1) {
      if (log.base_url.empty()) {
        return verify_err("checkpoint origin \"" + printable(cp.origin, 80) +
                          "\" cannot be checked: the log has no base URL");
      }
      if (cp.origin != url_host(log.base_url)) {
        return verify_err("checkpoint origin \"" + printable(cp.origin, 80) + "\" is not the log " +
                          printable(log.base_url, 80));
      }
    }
    auto hints = key_hints(log, cp.origin, v1);
    if (!hints) return std::move(hints).error();

    size_t matched = 0;
    size_t count = 0;
    for (size_t pos = 0; pos < sigs.size();) {
      size_t nl = sigs.find('\n', pos);
      std::string_view line = sigs.substr(pos, nl - pos);
      pos = nl + 1;
      if (++count > kMaxNoteSignatures) return verify_err("checkpoint has too many signatures");
      if (line.substr(0, kEmDash.size()) != kEmDash || line.size() < kEmDash.size() + 1 ||
          line[kEmDash.size()] != ' ') {
        return verify_err("checkpoint signature line does not start with \"\xE2\x80\x94 \"");
      }
      std::string_view rest = line.substr(kEmDash.size() + 1);
      size_t space = rest.find(' ');
      if (space == std::string_view::npos || space == 0) {
        return verify_err("checkpoint signature line has no key name");
      }
      std::string_view name = rest.substr(0, space);
      std::string_view b64 = rest.substr(space + 1);
      if (!note_name_ok(name)) {
        return verify_err("checkpoint signature line names \"" + printable(name, 80) +
                          "\", which is not a valid signer name");
      }
      if (b64.empty() || has_space(b64)) {
        return verify_err("checkpoint signature line is malformed");
      }
      auto sig = detail::go_std_base64(b64);
      if (!sig || sig->size() < 5) return verify_err("checkpoint signature is not valid base64");
      std::string_view hint = std::string_view(*sig).substr(0, 4);
      bool ours = false;
      for (const auto& h : *hints) ours = ours || h == hint;
      if (!v1 && name != cp.origin) ours = false;
      if (!ours) continue;  // another signer's (a witness) or another key's line
      ++matched;
      auto ok = log.key.verify(text, std::string_view(*sig).substr(4), log.hash);
      if (!ok) {
        if (ok.error().code == Errc::internal) return std::move(ok).error();
        return verify_err("checkpoint signature by " + printable(name, 80) +
                          " does not verify with the log's key");
      }
    }
    if (matched == 0) {
      return verify_err("checkpoint has no signature by the log's key (no key hint matches)");
    }
    return cp;
  } catch (const std::bad_alloc&) {
    return make_error(Errc::internal, "checkpoint check exhausted memory");
  }
}

Status verify_inclusion_proof(const TlogEntry& entry, const TransparencyLog& log,
                              bool require_checkpoint) {
  try {
    if (!entry.inclusion_proof) {
      return verify_err("log entry " + std::to_string(entry.log_index) + " has no inclusion proof");
    }
    if (auto same = same_log(entry, log); !same) return same;
    const InclusionProof& p = *entry.inclusion_proof;
    if (p.root_hash.size() != kHashSize)
      return verify_err("inclusion proof root hash is not 32 bytes");
    auto root = merkle_root_from_inclusion_proof(
        p.log_index, p.tree_size, merkle_leaf_hash(entry.canonicalized_body), p.hashes);
    if (!root) return std::move(root).error();
    if (*root != p.root_hash) {
      return verify_err("inclusion proof of log entry " + std::to_string(entry.log_index) +
                        " does not lead to its root hash");
    }
    if (p.checkpoint.empty()) {
      if (require_checkpoint) return verify_err("inclusion proof has no checkpoint");
      return {};
    }
    auto cp = verify_checkpoint(p.checkpoint, log);
    if (!cp) return std::move(cp).error();
    if (cp->tree_size != p.tree_size) {
      return verify_err("checkpoint is for a tree of size " + std::to_string(cp->tree_size) +
                        ", the inclusion proof for size " + std::to_string(p.tree_size));
    }
    if (cp->root_hash != p.root_hash) {
      return verify_err("checkpoint root hash differs from the inclusion proof's");
    }
    return {};
  } catch (const std::bad_alloc&) {
    return make_error(Errc::internal, "inclusion proof check exhausted memory");
  }
}

}  // namespace sigil::crypto
