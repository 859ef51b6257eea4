// policy/trust_root_spec.cpp: the spec of a TrustRoot document (policy-controller's
// sigstoreKeys) -> a crypto::TrustedRoot.
#include <algorithm>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/encoding.hpp"
#include "crypto/rekor.hpp"
#include "policy/yaml_detail.hpp"

namespace sigil::policy::detail {
namespace {

// TrustRoot spec: policy-controller's `sigstoreKeys` (bring your own keys). `remote` and
// `repository` are TUF, which sigil never fetches: an explicit error rather than an ignored
// field. PEM fields are base64 of a PEM (as the Go []byte type serializes) or the PEM itself.
Result<crypto::TransparencyLog> parse_tlog_instance(const YAML::Node& node, const Where& w,
                                                    const std::string& path) {
  auto f = fields(node, w, path);
  if (!f) return f.error();
  if (auto st = check_fields(*f, w, path, {"baseURL", "hashAlgorithm", "publicKey"}, {}); !st) {
    return st.error();
  }
  crypto::TransparencyLog log;
  if (const auto* u = get(*f, "baseURL")) {
    auto v = scalar(*u, w, path + ".baseURL");
    if (!v) return v.error();
    log.base_url = *v;
  }
  if (const auto* h = get(*f, "hashAlgorithm")) {
    auto v = scalar(*h, w, path + ".hashAlgorithm");
    if (!v) return v.error();
    // policy-controller writes "sha-256"; accept the spellings people use.
    std::string n = ascii_lower(*v);
    n.erase(std::remove(n.begin(), n.end(), '-'), n.end());
    n.erase(std::remove(n.begin(), n.end(), '_'), n.end());
    if (n == "sha2256") n = "sha256";
    if (n != "sha256") {
      return w.err(Errc::invalid_argument, path + ".hashAlgorithm",
                   "unsupported \"" + *v + "\" (transparency logs use sha-256)");
    }
  }
  const auto* k = get(*f, "publicKey");
  if (!k) return w.err(Errc::invalid_argument, path + ".publicKey", "missing");
  auto text = scalar(*k, w, path + ".publicKey");
  if (!text) return text.error();
  auto pem = pem_or_base64_pem(*text);
  if (!pem) return w.err(Errc::invalid_argument, path + ".publicKey", pem.error().message);
  auto key = crypto::PublicKey::from_pem(*pem);
  if (!key) return w.err(Errc::invalid_argument, path + ".publicKey", key.error().message);
  log.key = std::move(*key);
  log.hash = crypto::default_hash_for(log.key.type());
  log.log_id = crypto::key_log_id(log.key);
  return log;
}

// A Rekor log named only by key and base URL may be either generation, and its id in log
// entries differs between them: Rekor v1 (and CT) use SHA-256(SPKI DER), which
// parse_tlog_instance sets; a Rekor v2 (rekor-tiles) log uses its signed-note key ID,
// SHA-256(origin || "\n" || 0x01 || raw key) for Ed25519 (crypto::rekor_v2_log_id), with the
// base URL's host as origin; that is how public-good's log2025-1 appears in trusted_root.json.
// policy-controller's TrustRoot has no field for the id or the generation, and Rekor v1 also
// runs with Ed25519 keys, so the log is listed under both ids: the same key, URL and window, so
// either entry verifies only what that key signed. Returns the v2 twin, or nothing when the ids
// coincide (ECDSA) or there is no base URL (hence no origin to check a v2 checkpoint against).
Result<std::optional<crypto::TransparencyLog>> rekor_v2_twin(const crypto::TransparencyLog& log,
                                                             const Where& w,
                                                             const std::string& path) {
  const std::string origin = crypto::rekor_v2_origin(log.base_url);
  if (origin.empty()) return std::optional<crypto::TransparencyLog>();
  auto id = crypto::rekor_v2_log_id(log.key, origin);
  if (!id) return w.err(Errc::invalid_argument, path + ".publicKey", id.error().message);
  if (*id == log.log_id) return std::optional<crypto::TransparencyLog>();
  crypto::TransparencyLog twin = log;
  twin.log_id = std::move(*id);
  return std::optional<crypto::TransparencyLog>(std::move(twin));
}

// first_ca: as crypto::check_ca_certificates (0 for a Fulcio CA, 1 for a timestamp authority).
Result<crypto::CertificateAuthority> parse_ca_instance(const YAML::Node& node, const Where& w,
                                                       const std::string& path,
                                                       std::size_t first_ca) {
  auto f = fields(node, w, path);
  if (!f) return f.error();
  if (auto st = check_fields(*f, w, path, {"subject", "uri", "certChain"}, {}); !st) {
    return st.error();
  }
  crypto::CertificateAuthority ca;
  if (const auto* u = get(*f, "uri")) {
    auto v = scalar(*u, w, path + ".uri");
    if (!v) return v.error();
    ca.uri = *v;
  }
  if (const auto* subj = get(*f, "subject")) {
    auto sf = fields(*subj, w, path + ".subject");
    if (!sf) return sf.error();
    if (auto st = check_fields(*sf, w, path + ".subject", {"organization", "commonName"}, {});
        !st) {
      return st.error();
    }
    for (const char* key : {"organization", "commonName"}) {
      if (const auto* n = get(*sf, key)) {
        auto v = scalar(*n, w, path + ".subject." + key);
        if (!v) return v.error();
        ca.subject +=
            (ca.subject.empty() ? "" : ", ") + std::string(key[0] == 'o' ? "O=" : "CN=") + *v;
      }
    }
  }
  const auto* c = get(*f, "certChain");
  if (!c) return w.err(Errc::invalid_argument, path + ".certChain", "missing");
  auto text = scalar(*c, w, path + ".certChain");
  if (!text) return text.error();
  auto pem = pem_or_base64_pem(*text);
  if (!pem) return w.err(Errc::invalid_argument, path + ".certChain", pem.error().message);
  auto certs = crypto::parse_pem_certificates(*pem);
  if (!certs) return w.err(Errc::invalid_argument, path + ".certChain", certs.error().message);
  if (!certs->back().is_self_signed()) {
    return w.err(Errc::invalid_argument, path + ".certChain",
                 "the last certificate must be the self-signed root");
  }
  if (auto st = crypto::check_ca_certificates(*certs, first_ca); !st) {
    return w.err(Errc::invalid_argument, path + ".certChain", st.error().message);
  }
  ca.chain = std::move(*certs);
  return ca;
}

}  // namespace

Result<TrustRootDocument> parse_trust_root_spec(const YAML::Node& spec, const Where& w) {
  auto sf = fields(spec, w, "spec");
  if (!sf) return sf.error();
  if (auto st = check_fields(*sf, w, "spec", {"sigstoreKeys"},
                             {{"remote",
                               "TUF trust roots (spec.remote: sigil never fetches TUF "
                               "metadata; use spec.sigstoreKeys) are"},
                              {"repository",
                               "serialized TUF repositories (spec.repository; use "
                               "spec.sigstoreKeys) are"}});
      !st) {
    return st.error();
  }
  const auto* keys = get(*sf, "sigstoreKeys");
  if (!keys) return w.err(Errc::invalid_argument, "spec.sigstoreKeys", "missing");
  const std::string kp = "spec.sigstoreKeys";
  auto kf = fields(*keys, w, kp);
  if (!kf) return kf.error();
  if (auto st = check_fields(
          *kf, w, kp, {"certificateAuthorities", "tLogs", "ctLogs", "timestampAuthorities"}, {});
      !st) {
    return st.error();
  }
  auto root = std::make_shared<crypto::TrustedRoot>();
  root->name = "TrustRoot " + w.name;
  auto list = [&](const char* key, auto&& each) -> Status {
    const auto* n = get(*kf, key);
    if (!n) return {};
    if (!n->IsSequence()) {
      return w.err(Errc::invalid_argument, kp + "." + key, "expected a list" + line_of(*n));
    }
    for (std::size_t i = 0; i < n->size(); ++i) {
      if (auto st = each((*n)[i], kp + "." + key + "[" + std::to_string(i) + "]"); !st) return st;
    }
    return {};
  };
  auto cas = [&](std::vector<crypto::CertificateAuthority>& out, std::size_t first_ca) {
    return [&out, &w, first_ca](const YAML::Node& n, const std::string& p) -> Status {
      auto ca = parse_ca_instance(n, w, p, first_ca);
      if (!ca) return ca.error();
      out.push_back(std::move(*ca));
      return {};
    };
  };
  auto logs = [&](std::vector<crypto::TransparencyLog>& out, bool rekor) {
    return [&out, &w, rekor](const YAML::Node& n, const std::string& p) -> Status {
      auto log = parse_tlog_instance(n, w, p);
      if (!log) return log.error();
      std::optional<crypto::TransparencyLog> twin;
      if (rekor) {
        auto v2 = rekor_v2_twin(*log, w, p);
        if (!v2) return v2.error();
        twin = std::move(*v2);
      }
      out.push_back(std::move(*log));
      if (twin) out.push_back(std::move(*twin));
      return {};
    };
  };
  if (auto st = list("certificateAuthorities", cas(root->certificate_authorities, 0)); !st) {
    return st.error();
  }
  if (auto st = list("tLogs", logs(root->tlogs, true)); !st) return st.error();
  if (auto st = list("ctLogs", logs(root->ctlogs, false)); !st) return st.error();
  if (auto st = list("timestampAuthorities", cas(root->timestamp_authorities, 1)); !st) {
    return st.error();
  }
  TrustRootDocument doc;
  doc.name = w.name;
  doc.origin = w.origin + " document " + std::to_string(w.doc);
  doc.root = std::move(root);
  return doc;
}

}  // namespace sigil::policy::detail
