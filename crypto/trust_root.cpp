// crypto/trust_root.cpp: see trust_root.hpp. Reads protobuf-JSON TrustedRoot with nlohmann (kept
// out of the header); every message names the entry it is about ("tlogs[1].publicKey.rawBytes:
// not base64").
#include "crypto/trust_root.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <set>
#include <utility>

#include "common/encoding.hpp"
#include "crypto/go_base64.hpp"

namespace sigil::crypto {

namespace {

using json = nlohmann::json;

constexpr size_t kMaxTrustedRootBytes = 4 * 1024 * 1024;
constexpr size_t kMaxChainCertificates = 16;
constexpr int kMaxJsonDepth = 32;

Error entry_error(Errc code, const std::string& where, const std::string& what) {
  ERR_clear_error();
  return make_error(code, where + ": " + what);
}

// Protobuf JSON accepts a field under its lowerCamelCase JSON name or its proto name; both at
// once is an error. Returns nullptr when absent (or JSON null, which protobuf JSON reads as the
// default value).
Result<const json*> field(const json& obj, const std::string& where, const char* camel,
                          const char* snake) {
  const json* found = nullptr;
  auto it = obj.find(camel);
  if (it != obj.end() && !it->is_null()) found = &*it;
  if (snake != nullptr && std::string_view(snake) != camel) {
    auto it2 = obj.find(snake);
    if (it2 != obj.end() && !it2->is_null()) {
      if (found != nullptr) {
        return entry_error(Errc::parse_error, where,
                           std::string("both ") + camel + " and " + snake + " are present");
      }
      found = &*it2;
    }
  }
  return found;
}

Result<std::string> string_field(const json& obj, const std::string& where, const char* camel,
                                 const char* snake) {
  auto f = field(obj, where, camel, snake);
  if (!f) return std::move(f).error();
  if (*f == nullptr) return std::string();
  if (!(*f)->is_string())
    return entry_error(Errc::parse_error, where + "." + camel, "not a string");
  return (*f)->get<std::string>();
}

// Protobuf JSON `bytes`, exactly as Go's protojson reads them.
Result<std::string> decode_bytes(const std::string& text, const std::string& where) {
  auto raw = detail::protojson_base64(text);
  if (!raw) return entry_error(Errc::parse_error, where, "not base64");
  return std::move(*raw);
}

Result<std::string> bytes_field(const json& obj, const std::string& where, const char* camel,
                                const char* snake, bool required) {
  auto s = string_field(obj, where, camel, snake);
  if (!s) return std::move(s).error();
  if (s->empty()) {
    if (required) return entry_error(Errc::parse_error, where + "." + camel, "missing");
    return std::string();
  }
  return decode_bytes(*s, where + "." + camel);
}

Result<const json*> object_field(const json& obj, const std::string& where, const char* camel,
                                 const char* snake) {
  auto f = field(obj, where, camel, snake);
  if (!f) return std::move(f).error();
  if (*f != nullptr && !(*f)->is_object()) {
    return entry_error(Errc::parse_error, where + "." + camel, "not an object");
  }
  return *f;
}

// validFor: required, with a start (protobuf-specs TimeRange: start is not optional, end is).
// An entry without a start would be trusted since the beginning of time; sigstore-go refuses
// such a log key, and so does sigil, for every log, CA and TSA entry alike.
Result<TimeRange> time_range(const json& obj, const std::string& where) {
  TimeRange out;
  auto vf = object_field(obj, where, "validFor", "valid_for");
  if (!vf) return std::move(vf).error();
  if (*vf == nullptr) {
    return entry_error(Errc::parse_error, where + ".validFor",
                       "missing (every entry must say since when it is valid)");
  }
  const std::string here = where + ".validFor";
  for (const char* which : {"start", "end"}) {
    auto s = string_field(**vf, here, which, nullptr);
    if (!s) return std::move(s).error();
    if (s->empty()) continue;
    auto t = parse_rfc3339(*s);
    if (!t) return entry_error(Errc::parse_error, here + "." + which, "not an RFC 3339 time");
    (std::string_view(which) == "start" ? out.start : out.end) = *t;
  }
  if (!out.start) {
    return entry_error(Errc::parse_error, here + ".start",
                       "missing (an entry without a start would be valid since the beginning "
                       "of time)");
  }
  if (out.end && *out.end < *out.start) {
    return entry_error(Errc::parse_error, here, "end is before start");
  }
  return out;
}

struct KeyDetails {
  bool specified = false;
  KeyType type = KeyType::ecdsa_p256;
  HashAlgorithm hash = HashAlgorithm::sha256;
  int rsa_bits = 0;    // PKIX_RSA_PKCS1V15_<bits>_SHA256
  bool pkcs1 = false;  // PKCS1_RSA_PKCS1V5: rawBytes is a PKCS#1 RSAPublicKey, not SPKI
};

// sigstore's PublicKeyDetails (protobuf-specs sigstore_common.proto), by name or number.
Result<KeyDetails> key_details(const json* v, const std::string& where) {
  KeyDetails d;
  if (v == nullptr) return d;
  std::string name;
  if (v->is_string()) {
    name = v->get<std::string>();
  } else if (v->is_number_integer()) {
    switch (v->get<int64_t>()) {
      case 0:
        name = "PUBLIC_KEY_DETAILS_UNSPECIFIED";
        break;
      case 1:
        name = "PKCS1_RSA_PKCS1V5";
        break;
      case 2:
        name = "PKCS1_RSA_PSS";
        break;
      case 3:
        name = "PKIX_RSA_PKCS1V5";
        break;
      case 4:
        name = "PKIX_RSA_PSS";
        break;
      case 5:
        name = "PKIX_ECDSA_P256_SHA_256";
        break;
      case 7:
        name = "PKIX_ED25519";
        break;
      case 9:
        name = "PKIX_RSA_PKCS1V15_2048_SHA256";
        break;
      case 10:
        name = "PKIX_RSA_PKCS1V15_3072_SHA256";
        break;
      case 11:
        name = "PKIX_RSA_PKCS1V15_4096_SHA256";
        break;
      case 12:
        name = "PKIX_ECDSA_P384_SHA_384";
        break;
      case 13:
        name = "PKIX_ECDSA_P521_SHA_512";
        break;
      case 19:
        name = "PKIX_ECDSA_P384_SHA_256";
        break;
      case 20:
        name = "PKIX_ECDSA_P521_SHA_256";
        break;
      default:
        name = "#" + std::to_string(v->get<int64_t>());
        break;
    }
  } else {
    return entry_error(Errc::parse_error, where, "not an enum name");
  }
  auto set = [&](KeyType t, HashAlgorithm h, int bits = 0) {
    d.specified = true;
    d.type = t;
    d.hash = h;
    d.rsa_bits = bits;
  };
  if (name == "PUBLIC_KEY_DETAILS_UNSPECIFIED") {
    return d;
  } else if (name == "PKIX_ECDSA_P256_SHA_256") {
    set(KeyType::ecdsa_p256, HashAlgorithm::sha256);
  } else if (name == "PKIX_ECDSA_P384_SHA_384") {
    set(KeyType::ecdsa_p384, HashAlgorithm::sha384);
  } else if (name == "PKIX_ECDSA_P521_SHA_512") {
    set(KeyType::ecdsa_p521, HashAlgorithm::sha512);
  } else if (name == "PKIX_ECDSA_P384_SHA_256") {
    set(KeyType::ecdsa_p384, HashAlgorithm::sha256);
  } else if (name == "PKIX_ECDSA_P521_SHA_256") {
    set(KeyType::ecdsa_p521, HashAlgorithm::sha256);
  } else if (name == "PKIX_ED25519") {
    set(KeyType::ed25519, HashAlgorithm::sha256);
  } else if (name == "PKIX_RSA_PKCS1V15_2048_SHA256") {
    set(KeyType::rsa, HashAlgorithm::sha256, 2048);
  } else if (name == "PKIX_RSA_PKCS1V15_3072_SHA256") {
    set(KeyType::rsa, HashAlgorithm::sha256, 3072);
  } else if (name == "PKIX_RSA_PKCS1V15_4096_SHA256") {
    set(KeyType::rsa, HashAlgorithm::sha256, 4096);
  } else if (name == "PKCS1_RSA_PKCS1V5") {
    // Deprecated, but the old CT log key of every Sigstore staging root still uses it; sigstore-go
    // reads it with x509.ParsePKCS1PublicKey. PKCS#1 v1.5 with SHA-256, any modulus size.
    set(KeyType::rsa, HashAlgorithm::sha256);
    d.pkcs1 = true;
  } else {
    std::string shown = name.size() > 48 ? name.substr(0, 48) + "..." : name;
    for (char& c : shown) {
      if (static_cast<unsigned char>(c) < 0x20) c = '?';
    }
    return entry_error(Errc::unsupported, where,
                       shown +
                           " is not a key type sigil supports (ECDSA P-256/P-384/P-521, "
                           "Ed25519, RSA PKCS#1 v1.5)");
  }
  return d;
}

// TransparencyLogInstance.hashAlgorithm: the log's Merkle tree hash. Only SHA-256 exists in
// Rekor and RFC 6962 CT, and is all the inclusion proof code computes.
Status tree_hash(const json& obj, const std::string& where) {
  auto f = field(obj, where, "hashAlgorithm", "hash_algorithm");
  if (!f) return std::move(f).error();
  if (*f == nullptr) return {};
  const json& v = **f;
  if ((v.is_string() && (v == "SHA2_256" || v == "HASH_ALGORITHM_UNSPECIFIED")) ||
      (v.is_number_integer() && (v == 1 || v == 0))) {
    return {};
  }
  if (!v.is_string() && !v.is_number_integer()) {
    return entry_error(Errc::parse_error, where + ".hashAlgorithm", "not an enum name");
  }
  return entry_error(Errc::unsupported, where + ".hashAlgorithm",
                     "only SHA2_256 transparency logs are supported");
}

Result<TransparencyLog> parse_log(const json& e, const std::string& where) {
  if (!e.is_object()) return entry_error(Errc::parse_error, where, "not an object");
  TransparencyLog log;
  auto url = string_field(e, where, "baseUrl", "base_url");
  if (!url) return std::move(url).error();
  log.base_url = std::move(*url);

  auto pk = object_field(e, where, "publicKey", "public_key");
  if (!pk) return std::move(pk).error();
  if (*pk == nullptr) return entry_error(Errc::parse_error, where + ".publicKey", "missing");
  const std::string pk_where = where + ".publicKey";
  // Malformed before unusable: what would refuse the root (no validFor.start, no logId) is
  // checked before what only skips the entry (a key type or tree hash sigil cannot use).
  auto range = time_range(**pk, pk_where);
  if (!range) return std::move(range).error();
  auto id = object_field(e, where, "logId", "log_id");
  if (!id) return std::move(id).error();
  if (*id == nullptr) return entry_error(Errc::parse_error, where + ".logId", "missing");
  auto key_id = bytes_field(**id, where + ".logId", "keyId", "key_id", true);
  if (!key_id) return std::move(key_id).error();
  log.log_id = std::move(*key_id);

  auto cp = object_field(e, where, "checkpointKeyId", "checkpoint_key_id");
  if (!cp) return std::move(cp).error();
  if (*cp != nullptr) {
    auto cp_id = bytes_field(**cp, where + ".checkpointKeyId", "keyId", "key_id", false);
    if (!cp_id) return std::move(cp_id).error();
    log.checkpoint_key_id = std::move(*cp_id);
  }
  if (auto st = tree_hash(e, where); !st) return std::move(st).error();
  auto raw = bytes_field(**pk, pk_where, "rawBytes", "raw_bytes", true);
  if (!raw) return std::move(raw).error();
  auto kd_field = field(**pk, pk_where, "keyDetails", "key_details");
  if (!kd_field) return std::move(kd_field).error();
  auto kd = key_details(*kd_field, pk_where + ".keyDetails");
  if (!kd) return std::move(kd).error();
  auto key = kd->pkcs1 ? PublicKey::from_pkcs1_der(*raw) : PublicKey::from_der(*raw);
  if (!key) {
    return entry_error(key.error().code, pk_where + ".rawBytes", key.error().message);
  }
  if (kd->specified) {
    if (key->type() != kd->type) {
      return entry_error(Errc::parse_error, pk_where,
                         std::string("key is ") + key_type_name(key->type()) +
                             " but keyDetails says " + key_type_name(kd->type));
    }
    if (kd->rsa_bits != 0 && key->bits() != kd->rsa_bits) {
      return entry_error(Errc::parse_error, pk_where,
                         "RSA key of " + std::to_string(key->bits()) +
                             " bits but keyDetails says " + std::to_string(kd->rsa_bits));
    }
    log.hash = kd->hash;
  } else {
    log.hash = default_hash_for(key->type());
  }
  log.key = std::move(*key);
  log.valid_for = *range;
  return log;
}

// CertificateAuthority / timestamp authority. certChain lists the leaf-most certificate first
// and the root last, and the chain keeps that order. Every certificate from `first_ca` on must be
// a CA certificate (check_ca_certificates).
Result<CertificateAuthority> parse_authority(const json& e, const std::string& where,
                                             std::size_t first_ca) {
  if (!e.is_object()) return entry_error(Errc::parse_error, where, "not an object");
  CertificateAuthority ca;
  auto uri = string_field(e, where, "uri", nullptr);
  if (!uri) return std::move(uri).error();
  ca.uri = std::move(*uri);
  auto subject = object_field(e, where, "subject", nullptr);
  if (!subject) return std::move(subject).error();
  if (*subject != nullptr) {
    auto o = string_field(**subject, where + ".subject", "organization", nullptr);
    if (!o) return std::move(o).error();
    auto cn = string_field(**subject, where + ".subject", "commonName", "common_name");
    if (!cn) return std::move(cn).error();
    if (!o->empty()) ca.subject = "O=" + *o;
    if (!cn->empty()) ca.subject += (ca.subject.empty() ? "CN=" : ", CN=") + *cn;
  }
  auto chain = object_field(e, where, "certChain", "cert_chain");
  if (!chain) return std::move(chain).error();
  const std::string chain_where = where + ".certChain";
  if (*chain == nullptr) return entry_error(Errc::parse_error, chain_where, "missing");
  auto certs = field(**chain, chain_where, "certificates", nullptr);
  if (!certs) return std::move(certs).error();
  if (*certs == nullptr || !(*certs)->is_array() || (*certs)->empty()) {
    return entry_error(Errc::parse_error, chain_where + ".certificates",
                       "must be a non-empty array");
  }
  if ((*certs)->size() > kMaxChainCertificates) {
    return entry_error(Errc::too_large, chain_where + ".certificates", "more than 16 certificates");
  }
  for (size_t i = 0; i < (*certs)->size(); ++i) {
    const std::string cw = chain_where + ".certificates[" + std::to_string(i) + "]";
    const json& c = (**certs)[i];
    if (!c.is_object()) return entry_error(Errc::parse_error, cw, "not an object");
    auto der = bytes_field(c, cw, "rawBytes", "raw_bytes", true);
    if (!der) return std::move(der).error();
    auto cert = Certificate::from_der(*der);
    if (!cert) return entry_error(cert.error().code, cw + ".rawBytes", cert.error().message);
    ca.chain.push_back(std::move(*cert));
  }
  // Each certificate must be issued by the next one: a reversed chain (root first) would
  // otherwise make the leaf-most certificate the only trust anchor.
  for (size_t i = 0; i + 1 < ca.chain.size(); ++i) {
    auto* issuer = static_cast<X509*>(const_cast<void*>(ca.chain[i + 1].native()));
    auto* subject_cert = static_cast<X509*>(const_cast<void*>(ca.chain[i].native()));
    if (X509_check_issued(issuer, subject_cert) != X509_V_OK) {
      return entry_error(Errc::parse_error, chain_where,
                         "certificate " + std::to_string(i) + " is not issued by certificate " +
                             std::to_string(i + 1) + " (list the leaf-most first, the root last)");
    }
  }
  if (auto st = check_ca_certificates(ca.chain, first_ca); !st) {
    return entry_error(Errc::parse_error, chain_where, st.error().message);
  }
  auto range = time_range(e, where);
  if (!range) return std::move(range).error();
  ca.valid_for = *range;
  ERR_clear_error();
  return ca;
}

// A Fulcio CA: {intermediates..., root}, every one a CA.
Result<CertificateAuthority> parse_certificate_authority(const json& e, const std::string& where) {
  return parse_authority(e, where, 0);
}

// A timestamp authority: {tsa, intermediates..., root}, its own certificate first.
Result<CertificateAuthority> parse_timestamp_authority(const json& e, const std::string& where) {
  return parse_authority(e, where, 1);
}

// An entry sigil cannot use (Errc::unsupported: a key type, curve or tree hash it does not
// implement) is skipped with a warning, as long as another entry of the same list is usable;
// anything malformed refuses the whole root.
template <class T, class Parse>
Status parse_list(const json& root, const char* camel, const char* snake, Parse parse,
                  std::vector<T>& out, std::vector<std::string>& warnings) {
  auto f = field(root, "trusted root", camel, snake);
  if (!f) return std::move(f).error();
  if (*f == nullptr) return {};
  if (!(*f)->is_array()) return entry_error(Errc::parse_error, camel, "not an array");
  std::optional<Error> first_skipped;
  for (size_t i = 0; i < (*f)->size(); ++i) {
    auto r = parse((**f)[i], std::string(camel) + "[" + std::to_string(i) + "]");
    if (!r) {
      if (r.error().code != Errc::unsupported) return std::move(r).error();
      warnings.push_back(r.error().message + "; this entry is skipped");
      if (!first_skipped) first_skipped = std::move(r).error();
      continue;
    }
    out.push_back(std::move(*r));
  }
  if (out.empty() && first_skipped) {
    Error e = std::move(*first_skipped);
    e.message = std::string(camel) + ": no entry sigil can use (" + e.message + ")";
    return e;
  }
  return {};
}

// nlohmann keeps the last of duplicate keys; a trust root with two "tlogs" (or two "rawBytes")
// is ambiguous, so it is rejected, as protobuf's JSON parsers do.
struct DuplicateKeyCheck {
  std::vector<std::set<std::string>> keys;
  bool duplicate = false;
  bool too_deep = false;
  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second) {
          duplicate = true;
        }
        break;
      default:
        break;
    }
    if (depth > kMaxJsonDepth) too_deep = true;
    return true;
  }
};

}  // namespace

Result<TrustedRoot> parse_trusted_root(std::string_view text, std::string_view name) {
  if (text.size() > kMaxTrustedRootBytes) {
    return make_error(Errc::too_large, "trusted root is larger than 4 MiB");
  }
  DuplicateKeyCheck check;
  json root;
  try {
    root = json::parse(
        text.begin(), text.end(),
        [&check](int depth, json::parse_event_t event, json& parsed) {
          return check(depth, event, parsed);
        },
        /*allow_exceptions=*/false);
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "trusted root is not valid JSON");
  }
  if (root.is_discarded()) return make_error(Errc::parse_error, "trusted root is not valid JSON");
  if (check.too_deep)
    return make_error(Errc::parse_error, "trusted root JSON is nested too deeply");
  if (check.duplicate) return make_error(Errc::parse_error, "trusted root JSON repeats a key");
  if (!root.is_object()) return make_error(Errc::parse_error, "trusted root is not a JSON object");

  try {
    auto media = string_field(root, "trusted root", "mediaType", "media_type");
    if (!media) return std::move(media).error();
    if (!media->empty() && *media != "application/vnd.dev.sigstore.trustedroot+json;version=0.1" &&
        *media != "application/vnd.dev.sigstore.trustedroot.v0.2+json" &&
        *media != "application/vnd.dev.sigstore.trustedroot+json;version=0.2") {
      std::string shown = media->substr(0, 80);
      for (char& c : shown) {
        if (static_cast<unsigned char>(c) < 0x20) c = '?';
      }
      return make_error(Errc::unsupported, "trusted root mediaType \"" + shown +
                                               "\" is not a sigstore trusted root 0.1 or 0.2");
    }
    TrustedRoot out;
    out.name = std::string(name);
    if (auto st = parse_list(root, "tlogs", nullptr, parse_log, out.tlogs, out.warnings); !st) {
      return std::move(st).error();
    }
    if (auto st =
            parse_list(root, "certificateAuthorities", "certificate_authorities",
                       parse_certificate_authority, out.certificate_authorities, out.warnings);
        !st) {
      return std::move(st).error();
    }
    if (auto st = parse_list(root, "ctlogs", nullptr, parse_log, out.ctlogs, out.warnings); !st) {
      return std::move(st).error();
    }
    if (auto st = parse_list(root, "timestampAuthorities", "timestamp_authorities",
                             parse_timestamp_authority, out.timestamp_authorities, out.warnings);
        !st) {
      return std::move(st).error();
    }
    return out;
  } catch (const std::exception&) {
    // Defensive: every access above is type-checked first.
    return make_error(Errc::parse_error, "trusted root has an unexpected shape");
  }
}

const TransparencyLog* find_log(const std::vector<TransparencyLog>& logs, std::string_view id) {
  if (id.empty()) return nullptr;
  for (const auto& log : logs) {
    if (log.log_id == id) return &log;
  }
  return nullptr;
}

std::string key_log_id(const PublicKey& key) {
  return sha256(key.spki_der());
}

}  // namespace sigil::crypto
