// crypto/bundle.cpp: sigstore bundle JSON (protobuf-specs Bundle v0.1 to v0.3) into its parts.
// nlohmann comes first so that jcs.hpp, dsse.hpp and rekor.hpp declare their detail helpers.
#include <nlohmann/json.hpp>

#include "crypto/bundle.hpp"
#include "crypto/json_detail.hpp"

#include <exception>
#include <new>
#include <utility>

#include "crypto/jcs.hpp"

namespace sigil::crypto {

namespace {

using json = nlohmann::json;
using detail::pb_bytes;
using detail::pb_member;
using detail::pb_string;

constexpr std::string_view kWhat = "sigstore bundle";
constexpr std::string_view kMediaTypeBase = "application/vnd.dev.sigstore.bundle+json;version=";

Error parse_err(std::string_view field, std::string_view what) {
  return make_error(Errc::parse_error, std::string(field) + " " + std::string(what));
}

using detail::printable;

// 1, 2 or 3 for a media type sigil reads; 0 otherwise.
int minor_version(std::string_view media_type) {
  if (media_type == kBundleMediaTypeV03) return 3;
  if (media_type.substr(0, kMediaTypeBase.size()) == kMediaTypeBase) {
    std::string_view v = media_type.substr(kMediaTypeBase.size());
    if (v == "0.1") return 1;
    if (v == "0.2") return 2;
    if (v == "0.3") return 3;
  }
  return 0;
}

// {"rawBytes": "<base64 DER>"} (X509Certificate).
Result<std::string> certificate_der(const json& v, const std::string& field) {
  if (!v.is_object()) return parse_err(field, "must be an object");
  auto raw = pb_member(v, "rawBytes", "raw_bytes", field + ".rawBytes");
  if (!raw) return std::move(raw).error();
  if (*raw == nullptr) return parse_err(field + ".rawBytes", "is missing");
  auto der = pb_bytes(**raw, field + ".rawBytes");
  if (!der) return der;
  if (der->empty()) return parse_err(field + ".rawBytes", "is empty");
  return der;
}

Status read_verification_material(const json& vm, Bundle& b) {
  const std::string path = "verificationMaterial";
  if (!vm.is_object()) return parse_err(path, "must be an object");

  auto key = pb_member(vm, "publicKey", "public_key", path + ".publicKey");
  if (!key) return std::move(key).error();
  auto chain = pb_member(vm, "x509CertificateChain", "x509_certificate_chain",
                         path + ".x509CertificateChain");
  if (!chain) return std::move(chain).error();
  auto cert = pb_member(vm, "certificate", "certificate", path + ".certificate");
  if (!cert) return std::move(cert).error();
  int present = (*key != nullptr) + (*chain != nullptr) + (*cert != nullptr);
  if (present != 1) {
    return parse_err(path, present == 0
                               ? "has none of certificate, x509CertificateChain and publicKey"
                               : "must have exactly one of certificate, x509CertificateChain "
                                 "and publicKey");
  }
  if (*chain != nullptr) {
    if (b.minor_version >= 3) {
      return parse_err(path + ".x509CertificateChain",
                       "is not allowed in a v0.3 bundle (use certificate)");
    }
    const json& c = **chain;
    if (!c.is_object()) return parse_err(path + ".x509CertificateChain", "must be an object");
    const std::string field = path + ".x509CertificateChain.certificates";
    auto certs = pb_member(c, "certificates", "certificates", field);
    if (!certs) return std::move(certs).error();
    if (*certs == nullptr) return parse_err(field, "is missing");
    if (!(*certs)->is_array()) return parse_err(field, "must be an array");
    if ((*certs)->empty()) return parse_err(field, "is empty");
    for (size_t i = 0; i < (*certs)->size(); ++i) {
      auto der = certificate_der((**certs)[i], field + "[" + std::to_string(i) + "]");
      if (!der) return std::move(der).error();
      b.certificates_der.push_back(std::move(der).value());
    }
  } else if (*cert != nullptr) {
    auto der = certificate_der(**cert, path + ".certificate");
    if (!der) return std::move(der).error();
    b.certificates_der.push_back(std::move(der).value());
  } else {
    const json& k = **key;
    if (!k.is_object()) return parse_err(path + ".publicKey", "must be an object");
    b.has_public_key = true;
    auto hint = pb_member(k, "hint", "hint", path + ".publicKey.hint");
    if (!hint) return std::move(hint).error();
    if (*hint != nullptr) {
      auto s = pb_string(**hint, path + ".publicKey.hint");
      if (!s) return std::move(s).error();
      b.public_key_hint = std::move(s).value();
    }
  }

  auto entries = pb_member(vm, "tlogEntries", "tlog_entries", path + ".tlogEntries");
  if (!entries) return std::move(entries).error();
  if (*entries != nullptr) {
    if (!(*entries)->is_array()) return parse_err(path + ".tlogEntries", "must be an array");
    for (size_t i = 0; i < (*entries)->size(); ++i) {
      const std::string at = path + ".tlogEntries[" + std::to_string(i) + "]";
      auto e = detail::tlog_entry_from_json((**entries)[i], at);
      if (!e) return std::move(e).error();
      if (b.minor_version == 1 && e->signed_entry_timestamp.empty()) {
        return parse_err(at, "has no inclusionPromise, which a v0.1 bundle requires");
      }
      if (b.minor_version >= 2 && !e->inclusion_proof) {
        return parse_err(at, "has no inclusionProof, which a v0.2+ bundle requires");
      }
      b.tlog_entries.push_back(std::move(e).value());
    }
  }

  const std::string tvd_path = path + ".timestampVerificationData";
  auto tvd = pb_member(vm, "timestampVerificationData", "timestamp_verification_data", tvd_path);
  if (!tvd) return std::move(tvd).error();
  if (*tvd != nullptr) {
    if (!(*tvd)->is_object()) return parse_err(tvd_path, "must be an object");
    const std::string field = tvd_path + ".rfc3161Timestamps";
    auto ts = pb_member(**tvd, "rfc3161Timestamps", "rfc3161_timestamps", field);
    if (!ts) return std::move(ts).error();
    if (*ts != nullptr) {
      if (!(*ts)->is_array()) return parse_err(field, "must be an array");
      for (size_t i = 0; i < (*ts)->size(); ++i) {
        const std::string at = field + "[" + std::to_string(i) + "]";
        const json& t = (**ts)[i];
        if (!t.is_object()) return parse_err(at, "must be an object");
        auto signed_ts =
            pb_member(t, "signedTimestamp", "signed_timestamp", at + ".signedTimestamp");
        if (!signed_ts) return std::move(signed_ts).error();
        if (*signed_ts == nullptr) return parse_err(at + ".signedTimestamp", "is missing");
        auto der = pb_bytes(**signed_ts, at + ".signedTimestamp");
        if (!der) return std::move(der).error();
        if (der->empty()) return parse_err(at + ".signedTimestamp", "is empty");
        b.rfc3161_timestamps.push_back(std::move(der).value());
      }
    }
  }
  return {};
}

Result<HashAlgorithm> hash_enum(const json& v, const std::string& field) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s == "SHA2_256") return HashAlgorithm::sha256;
    if (s == "SHA2_384") return HashAlgorithm::sha384;
    if (s == "SHA2_512") return HashAlgorithm::sha512;
    return make_error(Errc::unsupported,
                      field + " \"" + printable(s, 32) + "\" is not a supported hash algorithm");
  }
  if (v.is_number_integer()) {  // protobuf JSON also accepts enum numbers
    switch (v.get<int64_t>()) {
      case 1:
        return HashAlgorithm::sha256;
      case 2:
        return HashAlgorithm::sha384;
      case 3:
        return HashAlgorithm::sha512;
      default:
        return make_error(Errc::unsupported, field + " is not a supported hash algorithm");
    }
  }
  return parse_err(field, "must be a hash algorithm name");
}

Status read_message_signature(const json& ms, Bundle& b) {
  const std::string path = "messageSignature";
  if (!ms.is_object()) return parse_err(path, "must be an object");
  b.content = Bundle::Content::message_signature;
  auto sig = pb_member(ms, "signature", "signature", path + ".signature");
  if (!sig) return std::move(sig).error();
  if (*sig == nullptr) return parse_err(path + ".signature", "is missing");
  auto raw = pb_bytes(**sig, path + ".signature");
  if (!raw) return std::move(raw).error();
  if (raw->empty()) return parse_err(path + ".signature", "is empty");
  b.signature = std::move(raw).value();

  const std::string dpath = path + ".messageDigest";
  auto md = pb_member(ms, "messageDigest", "message_digest", dpath);
  if (!md) return std::move(md).error();
  if (*md == nullptr) return {};
  if (!(*md)->is_object()) return parse_err(dpath, "must be an object");
  auto digest = pb_member(**md, "digest", "digest", dpath + ".digest");
  if (!digest) return std::move(digest).error();
  std::string value;
  if (*digest != nullptr) {
    auto d = pb_bytes(**digest, dpath + ".digest");
    if (!d) return std::move(d).error();
    value = std::move(d).value();
  }
  auto alg = pb_member(**md, "algorithm", "algorithm", dpath + ".algorithm");
  if (!alg) return std::move(alg).error();
  if (*alg == nullptr) {
    if (!value.empty()) return parse_err(dpath + ".algorithm", "is missing");
    return {};
  }
  auto h = hash_enum(**alg, dpath + ".algorithm");
  if (!h) return std::move(h).error();
  const size_t want = *h == HashAlgorithm::sha256 ? 32 : *h == HashAlgorithm::sha384 ? 48 : 64;
  if (!value.empty() && value.size() != want) {
    return parse_err(dpath + ".digest", std::string("is not a ") + hash_name(*h) + " digest");
  }
  b.message_digest_algorithm = *h;
  b.message_digest = std::move(value);
  return {};
}

Error prefixed(Error e) {
  e.message = std::string(kWhat) + ": " + e.message;
  return e;
}

}  // namespace

Result<Bundle> parse_bundle(std::string_view text) {
  auto doc = detail::parse_json_strict(text, kWhat);
  if (!doc) return std::move(doc).error();
  try {
    const json& v = *doc;
    if (!v.is_object()) return prefixed(parse_err("document", "must be a JSON object"));
    Bundle b;

    auto media = pb_member(v, "mediaType", "media_type", "mediaType");
    if (!media) return prefixed(std::move(media).error());
    if (*media == nullptr) {
      return make_error(Errc::unsupported, "sigstore bundle has no mediaType");
    }
    auto media_s = pb_string(**media, "mediaType");
    if (!media_s) return prefixed(std::move(media_s).error());
    b.minor_version = minor_version(*media_s);
    if (b.minor_version == 0) {
      return make_error(Errc::unsupported, "sigstore bundle media type \"" +
                                               printable(*media_s, 80) + "\" is not supported");
    }
    b.media_type = std::move(media_s).value();

    auto vm = pb_member(v, "verificationMaterial", "verification_material", "verificationMaterial");
    if (!vm) return prefixed(std::move(vm).error());
    if (*vm == nullptr) return prefixed(parse_err("verificationMaterial", "is missing"));
    if (auto ok = read_verification_material(**vm, b); !ok) return prefixed(std::move(ok).error());

    auto ms = pb_member(v, "messageSignature", "message_signature", "messageSignature");
    if (!ms) return prefixed(std::move(ms).error());
    auto env = pb_member(v, "dsseEnvelope", "dsse_envelope", "dsseEnvelope");
    if (!env) return prefixed(std::move(env).error());
    if ((*ms == nullptr) == (*env == nullptr)) {
      return prefixed(parse_err("bundle", *ms == nullptr
                                              ? "has neither messageSignature nor dsseEnvelope"
                                              : "has both messageSignature and dsseEnvelope"));
    }
    if (*ms != nullptr) {
      if (auto ok = read_message_signature(**ms, b); !ok) return prefixed(std::move(ok).error());
    } else {
      auto e = detail::dsse_envelope_from_json(**env, "dsseEnvelope", /*protobuf_names=*/true);
      if (!e) return prefixed(std::move(e).error());
      b.content = Bundle::Content::dsse;
      b.envelope = std::move(e).value();
    }
    return b;
  } catch (const std::bad_alloc&) {
    return make_error(Errc::too_large, "sigstore bundle exhausted memory");
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "sigstore bundle is malformed");
  }
}

}  // namespace sigil::crypto
