// policy/authority.cpp: one entry of spec.authorities (key, keyless, static; its sources,
// signature format, ctlog and RFC 3161 settings) read and checked field by field.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "policy/yaml_detail.hpp"

namespace sigil::policy::detail {
namespace {

Result<Identity> parse_identity(const YAML::Node& node, const Where& w, const std::string& path) {
  auto f = fields(node, w, path);
  if (!f) return f.error();
  if (auto st =
          check_fields(*f, w, path, {"issuer", "subject", "issuerRegExp", "subjectRegExp"}, {});
      !st) {
    return st.error();
  }
  Identity id;
  auto str = [&](const char* k, std::string& out) -> Status {
    if (const auto* n = get(*f, k)) {
      auto v = scalar(*n, w, path + "." + k);
      if (!v) return v.error();
      if (v->empty()) return w.err(Errc::invalid_argument, path + "." + k, "empty");
      out = *v;
    }
    return {};
  };
  for (auto [k, out] : {std::pair{"issuer", &id.issuer}, std::pair{"subject", &id.subject},
                        std::pair{"issuerRegExp", &id.issuer_regexp},
                        std::pair{"subjectRegExp", &id.subject_regexp}}) {
    if (auto st = str(k, *out); !st) return st.error();
  }
  if (id.issuer.empty() == id.issuer_regexp.empty()) {
    return w.err(Errc::invalid_argument, path,
                 "expected exactly one of issuer, issuerRegExp (the OIDC issuer must be pinned)");
  }
  if (id.subject.empty() == id.subject_regexp.empty()) {
    return w.err(Errc::invalid_argument, path,
                 "expected exactly one of subject, subjectRegExp (the signer must be pinned)");
  }
  if (!id.issuer_regexp.empty()) {
    auto re = compile_regexp(id.issuer_regexp, w, path + ".issuerRegExp");
    if (!re) return re.error();
    id.issuer_re = std::move(*re);
  }
  if (!id.subject_regexp.empty()) {
    auto re = compile_regexp(id.subject_regexp, w, path + ".subjectRegExp");
    if (!re) return re.error();
    id.subject_re = std::move(*re);
  }
  return id;
}

Result<SecretRef> parse_secret_ref(const YAML::Node& node, const Where& w,
                                   const std::string& path) {
  auto f = fields(node, w, path);
  if (!f) return f.error();
  if (auto st = check_fields(*f, w, path, {"name", "namespace"}, {}); !st) return st.error();
  SecretRef ref;
  ref.field = path;
  const auto* n = get(*f, "name");
  if (!n) return w.err(Errc::invalid_argument, path + ".name", "missing");
  auto name = scalar(*n, w, path + ".name");
  if (!name) return name.error();
  if (!dns1123_subdomain(*name)) {
    return w.err(Errc::invalid_argument, path + ".name", "\"" + *name + "\" is not a Secret name");
  }
  ref.name = *name;
  if (const auto* nsn = get(*f, "namespace")) {
    auto v = scalar(*nsn, w, path + ".namespace");
    if (!v) return v.error();
    if (!v->empty() && !dns1123_subdomain(*v)) {
      return w.err(Errc::invalid_argument, path + ".namespace",
                   "\"" + *v + "\" is not a namespace name");
    }
    ref.namespace_ = *v;
  }
  if (!w.ns.empty()) {
    // An ImagePolicy: its own namespace only, so a team cannot read another team's Secrets.
    if (!ref.namespace_.empty() && ref.namespace_ != w.ns) {
      return w.err(Errc::invalid_argument, path + ".namespace",
                   "an ImagePolicy may only read Secrets of its own namespace (" + w.ns + ")");
    }
    ref.namespace_ = w.ns;
  }
  return ref;
}

// key.kms: "azurekms://<vault host>/<key>[/<version>]", the form cosign and policy-controller
// write, checked for shape only and normalized (the host lowercased). Whether the vault host
// may receive an Azure token is the resolver's rule (azure::HostAllowlist, configurable), and
// the key is read from Key Vault at verification time (verify::KeyResolver): no I/O here.
// Every other KMS scheme is refused by name.
Result<std::string> parse_kms_uri(const std::string& uri, const Where& w, const std::string& at) {
  constexpr std::string_view kScheme = "azurekms://";
  const size_t sep = uri.find("://");
  if (sep == std::string::npos) {
    return w.err(Errc::invalid_argument, at,
                 "\"" + uri + "\" is not a KMS URI (azurekms://<vault>.vault.azure.net/<key>)");
  }
  if (uri.compare(0, kScheme.size(), kScheme) != 0) {
    std::string scheme = uri.substr(0, std::min<size_t>(sep, 30));
    for (char& c : scheme) {
      if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '-' && c != '+') c = '?';
    }
    return w.err(Errc::unsupported, at,
                 "KMS scheme \"" + scheme +
                     "://\" is not supported (only azurekms://<vault>.vault.azure.net/<key>)");
  }
  const auto bad = [&](const std::string& why) {
    return w.err(Errc::invalid_argument, at,
                 "\"" + uri + "\" is not azurekms://<vault>/<key>[/<version>]: " + why);
  };
  std::string_view rest = std::string_view(uri).substr(kScheme.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return bad("no key name");
  std::string host(rest.substr(0, slash));
  for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const bool host_ok = !host.empty() && host.size() <= 253 && host.front() != '.' &&
                       host.front() != ':' && std::all_of(host.begin(), host.end(), [](char c) {
                         return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' ||
                                c == '-' || c == ':' || c == '[' || c == ']';
                       });
  if (!host_ok) return bad("bad vault host");
  rest.remove_prefix(slash + 1);
  const auto name_ok = [](std::string_view s, size_t max, bool dash) {
    return !s.empty() && s.size() <= max && std::all_of(s.begin(), s.end(), [&](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || (dash && c == '-');
    });
  };
  const size_t slash2 = rest.find('/');
  const std::string_view key = rest.substr(0, slash2);
  if (!name_ok(key, 127, true)) return bad("bad key name");
  std::string out = std::string(kScheme) + host + "/" + std::string(key);
  if (slash2 != std::string_view::npos) {
    const std::string_view version = rest.substr(slash2 + 1);
    if (!name_ok(version, 64, false)) return bad("bad key version");
    out += "/" + std::string(version);
  }
  return out;
}

// keyless.ca-cert / key: exactly one of data (PEM), secretRef and (key only) kms.
struct KeyRef {
  std::optional<std::string> data;
  std::optional<SecretRef> secret;
  std::optional<std::string> kms;
  std::map<std::string, YAML::Node> fields;  // the others (hashAlgorithm)
};

Result<KeyRef> parse_key_ref(const YAML::Node& node, const Where& w, const std::string& path,
                             const char* what, std::initializer_list<std::string_view> more) {
  auto f = fields(node, w, path);
  if (!f) return f.error();
  std::vector<std::string_view> known{"data", "secretRef"};
  known.insert(known.end(), more.begin(), more.end());
  for (const auto& [key, value] : *f) {
    const std::string at = path + "." + key;
    if (key == "kms" && std::find(known.begin(), known.end(), key) == known.end())
      return w.err(Errc::unsupported, at, std::string("KMS is not supported for ") + what);
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return w.err(Errc::invalid_argument, at, "unknown field" + line_of(value));
    }
  }
  KeyRef out;
  out.fields = *f;
  const auto* data = get(*f, "data");
  const auto* secret = get(*f, "secretRef");
  const auto* kms = get(*f, "kms");
  if ((data ? 1 : 0) + (secret ? 1 : 0) + (kms ? 1 : 0) != 1) {
    return w.err(Errc::invalid_argument, path,
                 std::string("expected exactly one of data (") + what + "), secretRef" +
                     (std::find(known.begin(), known.end(), "kms") != known.end() ? ", kms" : ""));
  }
  if (kms) {
    auto v = scalar(*kms, w, path + ".kms");
    if (!v) return v.error();
    auto uri = parse_kms_uri(*v, w, path + ".kms");
    if (!uri) return uri.error();
    out.kms = std::move(*uri);
  } else if (data) {
    auto v = scalar(*data, w, path + ".data");
    if (!v) return v.error();
    out.data = *v;
  } else {
    auto ref = parse_secret_ref(*secret, w, path + ".secretRef");
    if (!ref) return ref.error();
    out.secret = std::move(*ref);
  }
  return out;
}

}  // namespace

// A CA chain (PEM, or base64 of one) whose last certificate is the self-signed root.
Result<crypto::CertificateAuthority> ca_from_text(const std::string& text,
                                                  const std::string& authority_name) {
  auto pem = pem_or_base64_pem(text);
  if (!pem) return pem.error();
  auto certs = crypto::parse_pem_certificates(*pem);
  if (!certs) return certs.error();
  if (!certs->back().is_self_signed()) {
    return make_error(Errc::invalid_argument,
                      "the last certificate must be the self-signed root CA");
  }
  if (auto st = crypto::check_ca_certificates(*certs, 0); !st) return st.error();
  crypto::CertificateAuthority ca;
  ca.subject = certs->back().subject_line();
  ca.uri = "ca-cert of authority " + authority_name;
  ca.chain = std::move(*certs);
  return ca;
}

namespace {

Status parse_keyless(const YAML::Node& node, const Where& w, const std::string& path,
                     Authority& a) {
  auto f = fields(node, w, path);
  if (!f) return f.error();
  if (auto st = check_fields(
          *f, w, path, {"url", "identities", "ca-cert", "trustRootRef", "insecureIgnoreSCT"}, {});
      !st) {
    return st;
  }
  a.kind = Authority::Kind::keyless;
  if (const auto* u = get(*f, "url")) {
    // Fulcio's URL: sigil never contacts Fulcio; the CAs come from the trust root.
    auto v = scalar(*u, w, path + ".url");
    if (!v) return v.error();
    // policy-controller refuses both: url names the CA of a trust root, ca-cert names another.
    if (get(*f, "ca-cert")) {
      return w.err(Errc::invalid_argument, path,
                   "expected at most one of url, ca-cert (both name the CA)");
    }
  }
  const auto* ids = get(*f, "identities");
  if (!ids) {
    return w.err(Errc::invalid_argument, path + ".identities",
                 "missing (at least one issuer/subject pair: without it any signer would do)");
  }
  if (!ids->IsSequence() || ids->size() == 0) {
    return w.err(Errc::invalid_argument, path + ".identities",
                 "expected a non-empty list" + line_of(*ids));
  }
  for (std::size_t i = 0; i < ids->size(); ++i) {
    auto id = parse_identity((*ids)[i], w, path + ".identities[" + std::to_string(i) + "]");
    if (!id) return id.error();
    a.identities.push_back(std::move(*id));
  }
  if (const auto* t = get(*f, "trustRootRef")) {
    auto v = scalar(*t, w, path + ".trustRootRef");
    if (!v) return v.error();
    a.keyless_trust_root_ref = *v;
  }
  if (const auto* c = get(*f, "ca-cert")) {
    const std::string cp = path + ".ca-cert";
    auto ref = parse_key_ref(*c, w, cp, "a PEM CA certificate chain", {});
    if (!ref) return ref.error();
    if (ref->data) {
      auto ca = ca_from_text(*ref->data, a.name);
      if (!ca) return w.err(Errc::invalid_argument, cp + ".data", ca.error().message);
      a.ca_cert = std::move(*ca);
    } else {
      a.ca_cert_secret = std::move(ref->secret);
    }
    if (!a.keyless_trust_root_ref.empty()) {
      return w.err(Errc::invalid_argument, path,
                   "expected at most one of ca-cert, trustRootRef (both name the CA)");
    }
  }
  if (const auto* n = get(*f, "insecureIgnoreSCT")) {
    auto v = scalar(*n, w, path + ".insecureIgnoreSCT");
    if (!v) return v.error();
    if (*v == "true") {
      a.insecure_ignore_sct = true;
    } else if (*v != "false") {
      return w.err(Errc::invalid_argument, path + ".insecureIgnoreSCT", "expected true or false");
    }
  }
  return {};
}

}  // namespace

Result<Authority> parse_authority(const YAML::Node& node, const Where& w, const std::string& path,
                                  std::size_t index) {
  auto f = fields(node, w, path);
  if (!f) return f.error();
  if (auto st = check_fields(*f, w, path,
                             {"name", "key", "keyless", "static", "ctlog", "rfc3161timestamp",
                              "signatureFormat", "source", "attestations"},
                             {});
      !st) {
    return st.error();
  }
  Authority a;
  a.name = "authority-" + std::to_string(index);
  if (const auto* n = get(*f, "name")) {
    auto s = scalar(*n, w, path + ".name");
    if (!s) return s.error();
    if (s->empty()) return w.err(Errc::invalid_argument, path + ".name", "empty");
    a.name = *s;
  }
  const auto* key = get(*f, "key");
  const auto* keyless = get(*f, "keyless");
  const auto* stat = get(*f, "static");
  if ((key ? 1 : 0) + (keyless ? 1 : 0) + (stat ? 1 : 0) != 1) {
    return w.err(Errc::invalid_argument, path, "expected exactly one of key, keyless, static");
  }
  if (const auto* src = get(*f, "source")) {
    const std::string sp = path + ".source";
    if (!src->IsSequence())
      return w.err(Errc::invalid_argument, sp, "expected a list" + line_of(*src));
    for (std::size_t i = 0; i < src->size(); ++i) {
      const std::string ip = sp + "[" + std::to_string(i) + "]";
      auto sf = fields((*src)[i], w, ip);
      if (!sf) return sf.error();
      if (auto st = check_fields(*sf, w, ip, {"oci", "signaturePullSecrets"},
                                 {{"tagPrefix", "signature tag prefixes (tagPrefix) are"}});
          !st) {
        return st.error();
      }
      SignatureSource source;
      if (const auto* oci = get(*sf, "oci")) {
        auto v = scalar(*oci, w, ip + ".oci");
        if (!v) return v.error();
        if (v->empty()) {
          return w.err(Errc::invalid_argument, ip + ".oci",
                       "empty (a repository, registry/path, or leave oci out to use the "
                       "image's own)");
        }
        // A repository, as cosign's COSIGN_REPOSITORY names one: no tag, no digest.
        auto ref = oci::parse_reference(*v);
        const size_t slash = v->rfind('/');
        const bool has_tag =
            v->find(':', slash == std::string::npos ? 0 : slash) != std::string::npos;
        if (!ref || v->find('@') != std::string::npos || has_tag) {
          return w.err(Errc::invalid_argument, ip + ".oci",
                       "\"" + *v + "\" is not a repository (registry/path, no tag or digest)");
        }
        source.registry = ref->registry;
        source.repository = ref->repository;
      }
      if (const auto* ps = get(*sf, "signaturePullSecrets")) {
        if (!ps->IsSequence()) {
          return w.err(Errc::invalid_argument, ip + ".signaturePullSecrets",
                       "expected a list" + line_of(*ps));
        }
        for (std::size_t j = 0; j < ps->size(); ++j) {
          const std::string pp = ip + ".signaturePullSecrets[" + std::to_string(j) + "]";
          auto pf = fields((*ps)[j], w, pp);
          if (!pf) return pf.error();
          if (auto st = check_fields(*pf, w, pp, {"name"}, {}); !st) return st.error();
          const auto* n = get(*pf, "name");
          if (!n) return w.err(Errc::invalid_argument, pp + ".name", "missing");
          auto name = scalar(*n, w, pp + ".name");
          if (!name) return name.error();
          if (!dns1123_subdomain(*name)) {
            return w.err(Errc::invalid_argument, pp + ".name",
                         "\"" + *name + "\" is not a Secret name");
          }
          source.pull_secrets.push_back(*name);
        }
      }
      a.sources.push_back(std::move(source));
    }
  }
  if (const auto* sf = get(*f, "signatureFormat")) {
    auto v = scalar(*sf, w, path + ".signatureFormat");
    if (!v) return v.error();
    if (*v == "legacy") {
      a.format = SignatureFormat::legacy;
    } else if (*v == "bundle") {
      a.format = SignatureFormat::bundle;
    } else {
      return w.err(Errc::invalid_argument, path + ".signatureFormat",
                   "unsupported \"" + *v + "\" (legacy or bundle; absent: both)");
    }
  }
  if (const auto* c = get(*f, "ctlog"); c != nullptr || f->count("ctlog")) {
    const std::string cp = path + ".ctlog";
    a.ctlog_present = true;
    if (c != nullptr) {
      auto cf = fields(*c, w, cp);
      if (!cf) return cf.error();
      if (auto st = check_fields(*cf, w, cp, {"url", "trustRootRef"}, {}); !st) return st.error();
      if (const auto* u = get(*cf, "url")) {
        auto v = scalar(*u, w, cp + ".url");
        if (!v) return v.error();
        a.ctlog_url = *v;
      }
      if (const auto* t = get(*cf, "trustRootRef")) {
        auto v = scalar(*t, w, cp + ".trustRootRef");
        if (!v) return v.error();
        a.ctlog_trust_root_ref = *v;
      }
    }
  }
  if (const auto* r = get(*f, "rfc3161timestamp")) {
    const std::string rp = path + ".rfc3161timestamp";
    auto rf = fields(*r, w, rp);
    if (!rf) return rf.error();
    if (auto st = check_fields(*rf, w, rp, {"trustRootRef"}, {}); !st) return st.error();
    const auto* t = get(*rf, "trustRootRef");
    if (!t) return w.err(Errc::invalid_argument, rp + ".trustRootRef", "missing");
    auto v = scalar(*t, w, rp + ".trustRootRef");
    if (!v) return v.error();
    a.tsa_trust_root_ref = *v;
  }
  if (const auto* att = get(*f, "attestations")) {
    auto list = parse_attestations(*att, w, path + ".attestations");
    if (!list) return list.error();
    a.attestations = std::move(*list);
  }
  if (stat) {
    if (!a.attestations.empty()) {
      return w.err(Errc::invalid_argument, path + ".attestations",
                   "a static authority checks no attestation");
    }
    if (a.ctlog_present || !a.tsa_trust_root_ref.empty()) {
      return w.err(Errc::invalid_argument, path,
                   "a static authority checks no signature: ctlog and rfc3161timestamp make no "
                   "sense here");
    }
    const std::string sp = path + ".static";
    auto sf = fields(*stat, w, sp);
    if (!sf) return sf.error();
    if (auto st = check_fields(*sf, w, sp, {"action", "message"}, {}); !st) return st.error();
    const auto* action = get(*sf, "action");
    if (!action) return w.err(Errc::invalid_argument, sp + ".action", "missing (pass or fail)");
    auto act = scalar(*action, w, sp + ".action");
    if (!act) return act.error();
    if (*act == "pass") {
      a.kind = Authority::Kind::static_pass;
    } else if (*act == "fail") {
      a.kind = Authority::Kind::static_fail;
    } else {
      return w.err(Errc::invalid_argument, sp + ".action",
                   "unsupported action \"" + *act + "\" (pass or fail)");
    }
    if (const auto* m = get(*sf, "message")) {
      auto msg = scalar(*m, w, sp + ".message");
      if (!msg) return msg.error();
      a.static_message = *msg;
    }
    return a;
  }
  if (keyless) {
    if (auto st = parse_keyless(*keyless, w, path + ".keyless", a); !st) return st.error();
    return a;
  }
  const std::string kp = path + ".key";
  auto ref = parse_key_ref(*key, w, kp, "a PEM public key", {"hashAlgorithm", "kms"});
  if (!ref) return ref.error();
  const auto& kf = &ref->fields;
  a.kind = Authority::Kind::key;
  if (ref->data) {
    auto pk = crypto::PublicKey::from_pem(*ref->data);
    if (!pk) {
      return w.err(Errc::invalid_argument, kp + ".data",
                   "not a PEM public key: " + pk.error().message);
    }
    a.hash = crypto::default_hash_for(pk->type());
    a.key = std::move(*pk);
  } else if (ref->kms) {
    if (!w.ns.empty()) {
      // sigil reads Key Vault with its own Azure identity, shared with every registry it
      // reads: a team's policy must not choose what that identity is asked for.
      return w.err(Errc::invalid_argument, kp + ".kms",
                   "an ImagePolicy may not use key.kms (sigil's own Azure identity reads it); "
                   "use key.data, or a secretRef in namespace " +
                       w.ns);
    }
    a.kms = std::move(*ref->kms);
  } else {
    a.key_secret = std::move(ref->secret);
  }
  if (const auto* h = get(*kf, "hashAlgorithm")) {
    auto hs = scalar(*h, w, kp + ".hashAlgorithm");
    if (!hs) return hs.error();
    auto ha = crypto::parse_hash_algorithm(*hs);
    if (!ha) {
      return w.err(Errc::invalid_argument, kp + ".hashAlgorithm",
                   "unsupported \"" + *hs + "\" (sha224, sha256, sha384 or sha512)");
    }
    a.hash = *ha;
    a.explicit_hash = *ha;
  }
  return a;
}

}  // namespace sigil::policy::detail
