// policy/policy.cpp: ClusterImagePolicy parsing, validation, glob compilation and evaluation.
//
// yaml-cpp throws; every public function here catches at its edge. The walk over a document
// iterates map pairs (never node["key"]) so that duplicate and unknown keys are seen and
// rejected rather than silently shadowed.
#include "policy/policy.hpp"

#include "common/encoding.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <cstddef>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

namespace sigil::policy {
namespace {

constexpr std::size_t kMaxYamlBytes = 1 << 20;
constexpr std::size_t kMaxGlobLength = 1024;
constexpr std::size_t kMaxDocuments = 1000;

// ---------------------------------------------------------------------------------------------
// Glob semantics (policy-controller pkg/apis/glob, mirrored and documented here).
//
// policy-controller validates a glob against [a-zA-Z0-9-_:/*.], rewrites the bare globs "*"
// and "*/*" to "index.docker.io/library/*" and "index.docker.io/*/*", translates "." to a
// literal dot, "**" to ".*" and "*" to "[^/]*", anchors the regex, and matches it against the
// image's full name as go-containerregistry spells it (`index.docker.io/library/nginx:latest`,
// or `...@sha256:...`), falling back to the image string exactly as written in the pod spec.
//
// sigil keeps those rules and additionally accepts `?` (one character other than `/`) and `@`
// (so a glob may name a digest). Because sigil sees a parsed oci::Reference rather than the
// original string, the glob is tried against every spelling policy-controller could have seen:
// the repository name alone and with ":tag", "@digest" and ":tag@digest", each with the
// registry written as `index.docker.io/`, `docker.io/`, or (Docker Hub only) omitted, with and
// without `library/`. A glob therefore matches when policy-controller's would; matching more
// spellings only makes more policies apply, which can only add requirements (fail closed).
//
// The image's registry is normalized (oci/reference.cpp: lowercase host, no `:443`, Docker Hub's
// aliases as docker.io), so `myacr.azurecr.io:443/prod/app` is matched as
// `myacr.azurecr.io/prod/app` and cannot dodge a `myacr.azurecr.io/prod/**` policy. The other
// spellings of the same origin are candidates too, so a glob written with one of them still
// applies: `host:443/` beside `host/`, and for Docker Hub also `registry-1.docker.io/` and
// `registry.hub.docker.com/` (each with `:443`). A glob with an uppercase letter in its
// registry or repository can never match a normalized name, so it is refused at load.
// ---------------------------------------------------------------------------------------------

bool valid_glob_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == ':' || c == '/' || c == '*' || c == '.' || c == '?' || c == '@';
}

std::string glob_to_regex(std::string_view glob) {
  std::string re;
  re.reserve(glob.size() * 2);
  for (std::size_t i = 0; i < glob.size(); ++i) {
    const char c = glob[i];
    if (c == '*') {
      if (i + 1 < glob.size() && glob[i + 1] == '*') {
        re += ".*";
        ++i;
      } else {
        re += "[^/]*";
      }
    } else if (c == '?') {
      re += "[^/]";
    } else if (c == '.') {
      re += "\\.";
    } else {
      re += c;  // [A-Za-z0-9-_:/@] are literal in RE2 outside a class
    }
  }
  return re;
}

// Whether a normalized registry has no port and would still be read as a registry with one
// (so `host:443` is another spelling of it).
bool default_port_spelling(std::string_view registry) {
  const auto close = registry.rfind(']');
  const auto colon = registry.rfind(':');
  const bool has_port =
      colon != std::string_view::npos && (close == std::string_view::npos || colon > close);
  return !has_port && (registry.find('.') != std::string_view::npos || registry == "localhost" ||
                       registry.front() == '[');
}

std::vector<std::string> candidates(const oci::Reference& image) {
  std::vector<std::string> bases;
  const bool hub = image.registry == "docker.io" || image.registry == "index.docker.io";
  if (hub) {
    // The spellings users write first (most globs match one of them and stop there).
    bases.push_back("index.docker.io/" + image.repository);
    bases.push_back("docker.io/" + image.repository);
    bases.push_back(image.repository);
    constexpr std::string_view kLibrary = "library/";
    if (image.repository.rfind(kLibrary, 0) == 0) {
      bases.push_back(image.repository.substr(kLibrary.size()));
    }
    for (const char* host : {"registry-1.docker.io", "registry.hub.docker.com"}) {
      bases.push_back(std::string(host) + "/" + image.repository);
    }
    for (const char* host :
         {"index.docker.io", "docker.io", "registry-1.docker.io", "registry.hub.docker.com"}) {
      bases.push_back(std::string(host) + ":443/" + image.repository);
    }
  } else if (!image.registry.empty()) {
    bases.push_back(image.registry + "/" + image.repository);
    if (default_port_spelling(image.registry)) {
      bases.push_back(image.registry + ":443/" + image.repository);
    }
  }
  std::vector<std::string> out;
  for (const auto& b : bases) {
    out.push_back(b);
    if (!image.tag.empty()) out.push_back(b + ":" + image.tag);
    if (!image.digest.empty()) {
      out.push_back(b + "@" + image.digest);
      if (!image.tag.empty()) out.push_back(b + ":" + image.tag + "@" + image.digest);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Document walking.

// Error context: "<origin> document <n> (<name>)".
struct Where {
  std::string origin;
  std::size_t doc = 0;
  std::string name;
  std::string ns;  // the document's metadata.namespace (ImagePolicy)

  std::string prefix() const {
    std::string p = origin + " document " + std::to_string(doc);
    if (!name.empty()) p += " (" + name + ")";
    return p;
  }
  Error err(Errc code, std::string_view path, std::string_view what) const {
    std::string m = prefix();
    if (!path.empty()) m += ": " + std::string(path);
    m += ": " + std::string(what);
    return make_error(code, std::move(m));
  }
};

std::string line_of(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  if (m.line < 0) return "";
  return " (line " + std::to_string(m.line + 1) + ")";
}

// A map's pairs by key, rejecting non-scalar and duplicate keys.
Result<std::map<std::string, YAML::Node>> fields(const YAML::Node& node, const Where& w,
                                                 const std::string& path) {
  if (!node.IsMap())
    return w.err(Errc::invalid_argument, path, "expected a mapping" + line_of(node));
  std::map<std::string, YAML::Node> out;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) {
      return w.err(Errc::invalid_argument, path, "non-scalar key" + line_of(it->first));
    }
    const std::string key = it->first.Scalar();
    if (!out.emplace(key, it->second).second) {
      return w.err(Errc::invalid_argument, path.empty() ? key : path + "." + key,
                   "duplicate field" + line_of(it->first));
    }
  }
  return out;
}

// Rejects fields outside `known`; fields in `unsupported` get Errc::unsupported and `why`.
Status check_fields(
    const std::map<std::string, YAML::Node>& f, const Where& w, const std::string& path,
    std::initializer_list<std::string_view> known,
    std::initializer_list<std::pair<std::string_view, std::string_view>> unsupported) {
  for (const auto& [key, node] : f) {
    const std::string at = path.empty() ? key : path + "." + key;
    bool ok = false;
    for (auto k : known) ok = ok || k == key;
    if (ok) continue;
    for (auto [k, why] : unsupported) {
      if (k == key) return w.err(Errc::unsupported, at, std::string(why) + " not supported yet");
    }
    return w.err(Errc::invalid_argument, at, "unknown field" + line_of(node));
  }
  return {};
}

Result<std::string> scalar(const YAML::Node& n, const Where& w, const std::string& path) {
  if (!n.IsScalar()) return w.err(Errc::invalid_argument, path, "expected a string" + line_of(n));
  return n.Scalar();
}

const YAML::Node* get(const std::map<std::string, YAML::Node>& f, const char* key) {
  auto it = f.find(key);
  if (it == f.end() || it->second.IsNull()) return nullptr;
  return &it->second;
}

bool dns1123_subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  for (char c : s) {
    if (!alnum(c) && c != '-' && c != '.') return false;
  }
  return true;
}

// A PEM text, or the base64 of one (policy-controller's []byte fields arrive as base64 in
// YAML/JSON; people also paste PEM directly).
Result<std::string> pem_or_base64_pem(const std::string& text) {
  std::string_view t = trim(text);
  if (t.rfind("-----BEGIN", 0) == 0) return std::string(t);
  auto decoded = base64_decode(t);
  if (!decoded) return make_error(Errc::invalid_argument, "neither PEM nor base64 of a PEM");
  std::string_view d = trim(*decoded);
  if (d.rfind("-----BEGIN", 0) != 0) {
    return make_error(Errc::invalid_argument, "base64 that does not decode to a PEM");
  }
  return std::string(d);
}

Result<std::shared_ptr<const re2::RE2>> compile_regexp(const std::string& pattern, const Where& w,
                                                       const std::string& path) {
  if (pattern.size() > kMaxGlobLength) {
    return w.err(Errc::invalid_argument, path, "regular expression longer than 1024 characters");
  }
  RE2::Options opts;
  opts.set_log_errors(false);
  opts.set_max_mem(1 << 20);
  auto re = std::make_shared<const RE2>(pattern, opts);
  if (!re->ok()) {
    return w.err(Errc::invalid_argument, path, "invalid regular expression: " + re->error());
  }
  return std::shared_ptr<const re2::RE2>(std::move(re));
}

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

// keyless.ca-cert / key: exactly one of data (PEM) and secretRef; kms is not supported.
struct KeyRef {
  std::optional<std::string> data;
  std::optional<SecretRef> secret;
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
    if (key == "kms") return w.err(Errc::unsupported, at, "KMS keys are not supported yet");
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return w.err(Errc::invalid_argument, at, "unknown field" + line_of(value));
    }
  }
  KeyRef out;
  out.fields = *f;
  const auto* data = get(*f, "data");
  const auto* secret = get(*f, "secretRef");
  if ((data != nullptr) == (secret != nullptr)) {
    return w.err(Errc::invalid_argument, path,
                 std::string("expected exactly one of data (") + what + "), secretRef");
  }
  if (data) {
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
  crypto::CertificateAuthority ca;
  ca.subject = certs->back().subject_line();
  ca.uri = "ca-cert of authority " + authority_name;
  ca.chain = std::move(*certs);
  return ca;
}

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

Result<Authority> parse_authority(const YAML::Node& node, const Where& w, const std::string& path,
                                  std::size_t index) {
  auto f = fields(node, w, path);
  if (!f) return f.error();
  if (auto st = check_fields(*f, w, path,
                             {"name", "key", "keyless", "static", "ctlog", "rfc3161timestamp",
                              "signatureFormat", "source"},
                             {{"attestations", "attestations are"}});
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
  if (stat) {
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
  auto ref = parse_key_ref(*key, w, kp, "a PEM public key", {"hashAlgorithm"});
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

// One parsed document: a policy or a trust root.
struct ParsedDocument {
  std::optional<Policy> policy;
  std::optional<TrustRootDocument> trust_root;
};

Result<TrustRootDocument> parse_trust_root_spec(const YAML::Node& spec, const Where& w);

// Parses one non-empty document. w.name is filled as soon as metadata.name is known. With
// scope_only (parse_policy_scope) only what a policy applies to is read: fields sigil does not
// know are skipped, the authorities are not read, and an unreadable mode means enforce.
Result<ParsedDocument> parse_document(const YAML::Node& doc, Where& w, bool scope_only = false) {
  auto top = fields(doc, w, "");
  if (!top) return top.error();

  const auto* kind = get(*top, "kind");
  if (!kind) return w.err(Errc::invalid_argument, "kind", "missing");
  auto k = scalar(*kind, w, "kind");
  if (!k) return k.error();
  const bool is_cip = *k == "ClusterImagePolicy";
  const bool is_ip = *k == "ImagePolicy";
  const bool is_trust_root = *k == "TrustRoot";
  if (!is_cip && !is_ip && !is_trust_root) {
    return w.err(Errc::unsupported, "kind",
                 "\"" + *k + "\" is not ClusterImagePolicy, ImagePolicy or TrustRoot");
  }
  const auto* api = get(*top, "apiVersion");
  if (!api) return w.err(Errc::invalid_argument, "apiVersion", "missing");
  auto av = scalar(*api, w, "apiVersion");
  if (!av) return av.error();
  const bool sigil_api = *av == "sigil.dev/v1alpha1";
  const bool pc_api = *av == "policy.sigstore.dev/v1beta1" || *av == "policy.sigstore.dev/v1alpha1";
  if (is_ip && !sigil_api) {
    return w.err(Errc::unsupported, "apiVersion",
                 "\"" + *av + "\" is not supported for ImagePolicy (sigil.dev/v1alpha1)");
  }
  if (is_trust_root && !sigil_api && *av != "policy.sigstore.dev/v1alpha1") {
    return w.err(Errc::unsupported, "apiVersion",
                 "\"" + *av +
                     "\" is not supported for TrustRoot (sigil.dev/v1alpha1, "
                     "policy.sigstore.dev/v1alpha1)");
  }
  if (!sigil_api && !pc_api) {
    return w.err(Errc::unsupported, "apiVersion",
                 "\"" + *av +
                     "\" is not supported (sigil.dev/v1alpha1, policy.sigstore.dev/v1beta1, "
                     "policy.sigstore.dev/v1alpha1)");
  }

  // metadata first, so that later errors carry the policy's name.
  const auto* meta = get(*top, "metadata");
  if (!meta) return w.err(Errc::invalid_argument, "metadata.name", "missing");
  auto mf = fields(*meta, w, "metadata");
  if (!mf) return mf.error();
  if (auto st = scope_only
                    ? Status{}
                    : check_fields(*mf, w, "metadata",
                                   {"name", "labels", "annotations", "uid", "resourceVersion",
                                    "generation", "creationTimestamp", "managedFields",
                                    "finalizers", "ownerReferences", "namespace", "generateName",
                                    "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"},
                                   {});
      !st) {
    return st.error();
  }
  const auto* name = get(*mf, "name");
  if (!name) return w.err(Errc::invalid_argument, "metadata.name", "missing");
  auto nm = scalar(*name, w, "metadata.name");
  if (!nm) return nm.error();
  if (!dns1123_subdomain(*nm)) {
    return w.err(Errc::invalid_argument, "metadata.name",
                 "\"" + *nm + "\" is not a DNS-1123 name (lowercase letters, digits, '-', '.')");
  }
  w.name = *nm;
  std::string ns;
  if (const auto* n = get(*mf, "namespace")) {
    auto v = scalar(*n, w, "metadata.namespace");
    if (!v) return v.error();
    ns = *v;
  }
  w.ns = is_ip ? ns : std::string();
  if (is_ip && !dns1123_subdomain(ns)) {
    return w.err(Errc::invalid_argument, "metadata.namespace",
                 ns.empty() ? "missing (an ImagePolicy applies to the pods of its namespace)"
                            : "\"" + ns + "\" is not a namespace name");
  }
  if (!is_ip && !ns.empty()) {
    return w.err(Errc::invalid_argument, "metadata.namespace",
                 "a " + *k + " is cluster-wide" +
                     (is_cip ? std::string("; use an ImagePolicy to scope a policy to a namespace")
                             : std::string()));
  }

  if (auto st = scope_only ? Status{}
                           : check_fields(*top, w, "",
                                          {"apiVersion", "kind", "metadata", "spec", "status"}, {});
      !st) {
    return st.error();
  }
  if (is_trust_root && scope_only) {
    return w.err(Errc::invalid_argument, "kind", "a TrustRoot is not a policy");
  }
  if (is_trust_root) {
    const auto* tspec = get(*top, "spec");
    if (!tspec) return w.err(Errc::invalid_argument, "spec", "missing");
    auto tr = parse_trust_root_spec(*tspec, w);
    if (!tr) return tr.error();
    ParsedDocument out;
    out.trust_root = std::move(*tr);
    return out;
  }
  const auto* spec = get(*top, "spec");
  if (!spec) return w.err(Errc::invalid_argument, "spec", "missing");
  auto sf = fields(*spec, w, "spec");
  if (!sf) return sf.error();
  if (auto st = scope_only ? Status{}
                           : check_fields(*sf, w, "spec",
                                          {"images", "authorities", "mode", "requireDigest"},
                                          {{"policy", "CUE/Rego policies (spec.policy) are"},
                                           {"match", "resource selectors (spec.match) are"}});
      !st) {
    return st.error();
  }

  Policy p;
  p.name = *nm;
  p.origin = w.origin + " document " + std::to_string(w.doc);
  p.namespace_scope = ns;
  if (is_ip) p.name = ns + "/" + *nm;  // messages say which namespace's policy it is

  const auto* images = get(*sf, "images");
  if (!images) return w.err(Errc::invalid_argument, "spec.images", "missing (at least one glob)");
  if (!images->IsSequence() || images->size() == 0) {
    return w.err(Errc::invalid_argument, "spec.images",
                 "expected a non-empty list" + line_of(*images));
  }
  for (std::size_t i = 0; i < images->size(); ++i) {
    const std::string ip = "spec.images[" + std::to_string(i) + "]";
    auto imf = fields((*images)[i], w, ip);
    if (!imf) return imf.error();
    if (auto st = scope_only ? Status{} : check_fields(*imf, w, ip, {"glob"}, {}); !st) {
      return st.error();
    }
    const auto* g = get(*imf, "glob");
    if (!g) return w.err(Errc::invalid_argument, ip + ".glob", "missing");
    auto gs = scalar(*g, w, ip + ".glob");
    if (!gs) return gs.error();
    auto glob = Glob::compile(*gs);
    if (!glob) return w.err(Errc::invalid_argument, ip + ".glob", glob.error().message);
    p.globs.push_back(std::move(*glob));
  }
  if (scope_only) {
    // An unreadable mode is enforce: a policy that cannot be read never only warns.
    const auto* mode = get(*sf, "mode");
    p.mode = mode && mode->IsScalar() && mode->Scalar() == "warn" ? Mode::warn : Mode::enforce;
    const auto* rd = get(*sf, "requireDigest");
    p.require_digest = rd && rd->IsScalar() && rd->Scalar() == "true";
    ParsedDocument out;
    out.policy = std::move(p);
    return out;
  }

  const auto* auths = get(*sf, "authorities");
  if (!auths) {
    return w.err(Errc::invalid_argument, "spec.authorities", "missing (at least one authority)");
  }
  if (!auths->IsSequence() || auths->size() == 0) {
    return w.err(Errc::invalid_argument, "spec.authorities",
                 "expected a non-empty list" + line_of(*auths));
  }
  std::set<std::string> names;
  for (std::size_t i = 0; i < auths->size(); ++i) {
    const std::string ap = "spec.authorities[" + std::to_string(i) + "]";
    auto a = parse_authority((*auths)[i], w, ap, i);
    if (!a) return a.error();
    if (!names.insert(a->name).second) {
      return w.err(Errc::invalid_argument, ap + ".name",
                   "duplicate authority name \"" + a->name + "\"");
    }
    p.authorities.push_back(std::move(*a));
  }

  if (const auto* mode = get(*sf, "mode")) {
    auto m = scalar(*mode, w, "spec.mode");
    if (!m) return m.error();
    if (*m == "enforce") {
      p.mode = Mode::enforce;
    } else if (*m == "warn") {
      p.mode = Mode::warn;
    } else {
      return w.err(Errc::invalid_argument, "spec.mode",
                   "unsupported mode \"" + *m + "\" (enforce or warn)");
    }
  }
  if (const auto* rd = get(*sf, "requireDigest")) {
    auto v = scalar(*rd, w, "spec.requireDigest");
    if (!v) return v.error();
    if (*v == "true") {
      p.require_digest = true;
    } else if (*v != "false") {
      return w.err(Errc::invalid_argument, "spec.requireDigest", "expected true or false");
    }
  }
  ParsedDocument out;
  out.policy = std::move(p);
  return out;
}

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

Result<crypto::CertificateAuthority> parse_ca_instance(const YAML::Node& node, const Where& w,
                                                       const std::string& path) {
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
  ca.chain = std::move(*certs);
  return ca;
}

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
  auto cas = [&](std::vector<crypto::CertificateAuthority>& out) {
    return [&out, &w](const YAML::Node& n, const std::string& p) -> Status {
      auto ca = parse_ca_instance(n, w, p);
      if (!ca) return ca.error();
      out.push_back(std::move(*ca));
      return {};
    };
  };
  auto logs = [&](std::vector<crypto::TransparencyLog>& out) {
    return [&out, &w](const YAML::Node& n, const std::string& p) -> Status {
      auto log = parse_tlog_instance(n, w, p);
      if (!log) return log.error();
      out.push_back(std::move(*log));
      return {};
    };
  };
  if (auto st = list("certificateAuthorities", cas(root->certificate_authorities)); !st) {
    return st.error();
  }
  if (auto st = list("tLogs", logs(root->tlogs)); !st) return st.error();
  if (auto st = list("ctLogs", logs(root->ctlogs)); !st) return st.error();
  if (auto st = list("timestampAuthorities", cas(root->timestamp_authorities)); !st) {
    return st.error();
  }
  TrustRootDocument doc;
  doc.name = w.name;
  doc.origin = w.origin + " document " + std::to_string(w.doc);
  doc.root = std::move(root);
  return doc;
}

// Walks the event stream without building nodes, to find the documents' count before
// YAML::LoadAll runs: yaml-cpp 0.7's parser can return "another document" forever on some
// malformed inputs (",z" does it), and LoadAll would then loop and allocate without end.
class DocumentCounter : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    stalled_ = count_ > 0 && mark.pos == last_.pos;
    last_ = mark;
    ++count_;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  std::size_t count() const { return count_; }
  bool stalled() const { return stalled_; }
  const YAML::Mark& last() const { return last_; }

 private:
  std::size_t count_ = 0;
  bool stalled_ = false;
  YAML::Mark last_ = YAML::Mark::null_mark();
};

Status check_document_stream(const std::string& text, std::string_view origin) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentCounter counter;
  while (parser.HandleNextDocument(counter)) {
    if (counter.stalled()) {
      return make_error(Errc::parse_error, std::string(origin) + ": YAML syntax error at line " +
                                               std::to_string(counter.last().line + 1) +
                                               " column " +
                                               std::to_string(counter.last().column + 1) +
                                               ": the parser cannot make progress");
    }
    if (counter.count() > kMaxDocuments) {
      return make_error(Errc::too_large, std::string(origin) + ": more than " +
                                             std::to_string(kMaxDocuments) + " YAML documents");
    }
  }
  return {};
}

Result<Documents> parse_all(std::string_view yaml, std::string_view origin,
                            bool scope_only = false) {
  if (yaml.size() > kMaxYamlBytes) {
    return make_error(Errc::too_large, std::string(origin) + ": larger than " +
                                           std::to_string(kMaxYamlBytes) + " bytes");
  }
  std::vector<YAML::Node> docs;
  try {
    const std::string text(yaml);
    if (auto st = check_document_stream(text, origin); !st) return st.error();
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    std::string m = std::string(origin) + ": YAML syntax error";
    if (e.mark.line >= 0) {
      m += " at line " + std::to_string(e.mark.line + 1) + " column " +
           std::to_string(e.mark.column + 1);
    }
    return make_error(Errc::parse_error, m + ": " + e.msg);
  }
  Documents out;
  std::set<std::string> names;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    if (!docs[i].IsDefined() || docs[i].IsNull()) continue;  // empty document
    Where w{std::string(origin), i + 1, "", ""};
    auto d = parse_document(docs[i], w, scope_only);
    if (!d) return d.error();
    if (d->policy) {
      if (!names.insert("policy " + d->policy->name).second) {
        return w.err(Errc::invalid_argument, "metadata.name",
                     "duplicate policy name \"" + d->policy->name + "\" in this file");
      }
      out.policies.push_back(std::move(*d->policy));
    } else if (d->trust_root) {
      if (!names.insert("trustroot " + d->trust_root->name).second) {
        return w.err(Errc::invalid_argument, "metadata.name",
                     "duplicate TrustRoot name \"" + d->trust_root->name + "\" in this file");
      }
      out.trust_roots.push_back(std::move(*d->trust_root));
    }
  }
  return out;
}

}  // namespace

Result<NoMatch> parse_no_match(std::string_view s) {
  if (s == "deny") return NoMatch::deny;
  if (s == "warn") return NoMatch::warn;
  if (s == "allow") return NoMatch::allow;
  return make_error(Errc::invalid_argument,
                    "no-match behaviour \"" + std::string(s) + "\" is not deny, warn or allow");
}

Result<Glob> Glob::compile(std::string_view pattern) {
  try {
    if (pattern.empty()) return make_error(Errc::invalid_argument, "glob is empty");
    if (pattern.size() > kMaxGlobLength) {
      return make_error(Errc::invalid_argument,
                        "glob is longer than " + std::to_string(kMaxGlobLength) + " characters");
    }
    for (char c : pattern) {
      if (!valid_glob_char(c)) {
        return make_error(Errc::invalid_argument,
                          "invalid glob \"" + std::string(pattern) +
                              "\": only letters, digits and - _ : / . @ * ? are allowed");
      }
    }
    // The name part (before a tag or digest) must be lowercase: image names are matched
    // normalized, so an uppercase letter there would make the glob match nothing, silently.
    {
      std::string_view name = pattern.substr(0, pattern.find('@'));
      const auto last_slash = name.rfind('/');
      if (const auto colon = name.find(':', last_slash == std::string_view::npos ? 0 : last_slash);
          colon != std::string_view::npos) {
        name = name.substr(0, colon);
      }
      const auto upper =
          std::find_if(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
      if (upper != name.end()) {
        const auto first_slash = name.find('/');
        const bool in_registry = first_slash != std::string_view::npos &&
                                 static_cast<std::size_t>(upper - name.begin()) < first_slash;
        std::string lowered(pattern);
        for (std::size_t i = 0; i < name.size(); ++i) {
          if (lowered[i] >= 'A' && lowered[i] <= 'Z')
            lowered[i] = static_cast<char>(lowered[i] + 32);
        }
        return make_error(
            Errc::invalid_argument,
            "invalid glob \"" + std::string(pattern) + "\": the " +
                (in_registry ? "registry" : "repository") +
                " must be lowercase (image names are matched lowercased and normalized, so "
                "this glob would match nothing); write \"" +
                lowered + "\"");
      }
    }
    Glob g;
    g.pattern_ = std::string(pattern);
    g.normalized_ = g.pattern_;
    if (g.normalized_ == "*") g.normalized_ = "index.docker.io/library/*";
    if (g.normalized_ == "*/*") g.normalized_ = "index.docker.io/*/*";
    RE2::Options opts;
    opts.set_log_errors(false);
    opts.set_case_sensitive(true);
    auto re = std::make_shared<const RE2>(glob_to_regex(g.normalized_), opts);
    if (!re->ok()) {
      return make_error(Errc::invalid_argument,
                        "invalid glob \"" + std::string(pattern) + "\": " + re->error());
    }
    g.re_ = std::move(re);
    return g;
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string("compiling glob: ") + e.what());
  }
}

bool Glob::matches(const oci::Reference& image) const {
  if (!re_) return false;
  try {
    for (const auto& c : candidates(image)) {
      if (RE2::FullMatch(c, *re_)) return true;
    }
  } catch (...) {
    // Allocation failure: report a match, which makes the policy apply (fail closed).
    return true;
  }
  return false;
}

namespace {

// parse_all with every exception turned into an error naming the origin.
Result<Documents> parse_guarded(std::string_view yaml, std::string_view origin, bool scope_only) {
  try {
    return parse_all(yaml, origin, scope_only);
  } catch (const YAML::Exception& e) {
    return make_error(Errc::parse_error, std::string(origin) + ": YAML error: " + e.msg);
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string(origin) + ": " + e.what());
  } catch (...) {
    return make_error(Errc::internal, std::string(origin) + ": unexpected failure");
  }
}

}  // namespace

Result<Documents> parse_documents(std::string_view yaml, std::string_view origin) {
  return parse_guarded(yaml, origin, false);
}

Result<Policy> parse_policy_scope(std::string_view yaml, std::string_view origin) {
  auto docs = parse_guarded(yaml, origin, true);
  if (!docs) return docs.error();
  if (docs->policies.size() != 1 || !docs->trust_roots.empty()) {
    return make_error(Errc::invalid_argument,
                      std::string(origin) + ": expected exactly one policy document");
  }
  return std::move(docs->policies.front());
}

Result<std::vector<Policy>> parse_policies(std::string_view yaml, std::string_view origin) {
  auto docs = parse_documents(yaml, origin);
  if (!docs) return docs.error();
  DefaultTrustRoot none = []() -> Result<std::shared_ptr<const crypto::TrustedRoot>> {
    return make_error(Errc::invalid_argument,
                      "no default trust root here: name a TrustRoot with trustRootRef");
  };
  if (auto st = resolve_secrets(docs->policies, nullptr, ""); !st) return st.error();
  if (auto st = link_trust_roots(docs->policies, docs->trust_roots, none); !st) return st.error();
  return std::move(docs->policies);
}

namespace {

std::string normalized_url(std::string_view u) {
  std::string s = ascii_lower(trim(u));
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

Status link_trust_roots(std::vector<Policy>& policies, const std::vector<TrustRootDocument>& roots,
                        const DefaultTrustRoot& default_root) {
  try {
    std::optional<Result<std::shared_ptr<const crypto::TrustedRoot>>> fallback;
    for (auto& p : policies) {
      for (std::size_t i = 0; i < p.authorities.size(); ++i) {
        Authority& a = p.authorities[i];
        const std::string where = p.origin + " (" + p.name + "): spec.authorities[" +
                                  std::to_string(i) + "] (" + a.name + ")";
        auto fail = [&](const std::string& what) {
          return make_error(Errc::invalid_argument, where + ": " + what);
        };
        using RootPtr = std::shared_ptr<const crypto::TrustedRoot>;
        auto named = [&](const std::string& ref, const char* field) -> Result<RootPtr> {
          for (const auto& r : roots) {
            if (r.name == ref) return r.root;
          }
          return fail(std::string(field) + ": \"" + ref + "\" names no TrustRoot");
        };
        auto the_default = [&](const char* why) -> Result<RootPtr> {
          if (!fallback)
            fallback =
                default_root
                    ? default_root()
                    : Result<RootPtr>(make_error(Errc::invalid_argument, "none is configured"));
          if (!fallback->ok()) {
            return fail(std::string(why) + " needs the default trust root, which is unusable: " +
                        fallback->error().message);
          }
          return fallback->value();
        };
        a.cas.clear();
        a.tlogs.clear();
        a.ctlogs.clear();
        a.tsas.clear();
        a.require_tlog = false;
        if (a.kind == Authority::Kind::static_pass || a.kind == Authority::Kind::static_fail) {
          a.linked = true;
          continue;
        }
        if (a.kind == Authority::Kind::key && !a.key) {
          return fail(a.key_secret ? "key.secretRef: the Secret " + a.key_secret->namespace_ + "/" +
                                         a.key_secret->name + " has not been read"
                                   : std::string("no key"));
        }
        if (a.kind == Authority::Kind::keyless && a.ca_cert_secret && !a.ca_cert) {
          return fail("keyless.ca-cert.secretRef: the Secret " + a.ca_cert_secret->namespace_ +
                      "/" + a.ca_cert_secret->name + " has not been read");
        }
        RootPtr keyless_root;  // the root a keyless authority's CA (and default logs) come from
        if (a.kind == Authority::Kind::keyless) {
          if (!a.keyless_trust_root_ref.empty()) {
            auto r = named(a.keyless_trust_root_ref, "keyless.trustRootRef");
            if (!r) return r.error();
            keyless_root = *r;
          } else if (!a.ca_cert) {
            auto r = the_default("a keyless authority without trustRootRef");
            if (!r) return r.error();
            keyless_root = *r;
          }
          if (a.ca_cert) {
            a.cas.push_back(*a.ca_cert);
          } else {
            a.cas = keyless_root->certificate_authorities;
            if (a.cas.empty()) {
              return fail(keyless_root->name + " has no certificate authorities (Fulcio)");
            }
          }
          if (!a.insecure_ignore_sct) {
            RootPtr ct = keyless_root;
            if (!ct) {
              auto r = the_default("checking SCTs of a ca-cert authority");
              if (!r) return r.error();
              ct = *r;
            }
            a.ctlogs = ct->ctlogs;
            if (a.ctlogs.empty()) {
              return fail(ct->name +
                          " has no CT logs to check the certificate's SCT against (set "
                          "keyless.insecureIgnoreSCT: true if your CA has none)");
            }
          }
        }
        // Rekor.
        const bool ctlog_configured =
            a.ctlog_present && (!a.ctlog_url.empty() || !a.ctlog_trust_root_ref.empty());
        a.require_tlog = a.kind == Authority::Kind::keyless ? (!a.ctlog_present || ctlog_configured)
                                                            : ctlog_configured;
        if (a.require_tlog) {
          RootPtr tl;
          if (!a.ctlog_trust_root_ref.empty()) {
            auto r = named(a.ctlog_trust_root_ref, "ctlog.trustRootRef");
            if (!r) return r.error();
            tl = *r;
          } else if (keyless_root) {
            tl = keyless_root;
          } else {
            auto r = the_default("a transparency log check without ctlog.trustRootRef");
            if (!r) return r.error();
            tl = *r;
          }
          for (const auto& log : tl->tlogs) {
            if (a.ctlog_url.empty() ||
                normalized_url(log.base_url) == normalized_url(a.ctlog_url)) {
              a.tlogs.push_back(log);
            }
          }
          if (a.tlogs.empty()) {
            return fail(a.ctlog_url.empty()
                            ? tl->name + " has no transparency logs (Rekor)"
                            : "ctlog.url " + a.ctlog_url + ": no transparency log of " + tl->name +
                                  " has that base URL");
          }
        }
        // RFC 3161 timestamp authorities.
        if (!a.tsa_trust_root_ref.empty()) {
          auto r = named(a.tsa_trust_root_ref, "rfc3161timestamp.trustRootRef");
          if (!r) return r.error();
          a.tsas = (*r)->timestamp_authorities;
          if (a.tsas.empty()) return fail((*r)->name + " has no timestamp authorities");
        } else if (keyless_root) {
          a.tsas = keyless_root->timestamp_authorities;
        }
        if (a.kind == Authority::Kind::keyless && !a.require_tlog && a.tsas.empty()) {
          return fail(
              "with ctlog: {} the signing time can only be proved by an RFC 3161 timestamp, but "
              "no timestamp authority is configured (rfc3161timestamp.trustRootRef)");
        }
        a.linked = true;
      }
    }
    return {};
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string("linking trust roots: ") + e.what());
  }
}

std::vector<SecretRef> secret_refs(const std::vector<Policy>& policies,
                                   std::string_view default_namespace) {
  std::vector<SecretRef> out;
  auto add = [&](SecretRef r) {
    if (r.namespace_.empty()) r.namespace_ = std::string(default_namespace);
    for (const auto& o : out) {
      if (o.namespace_ == r.namespace_ && o.name == r.name) return;
    }
    out.push_back(std::move(r));
  };
  for (const auto& p : policies) {
    for (const auto& a : p.authorities) {
      if (a.key_secret) add(*a.key_secret);
      if (a.ca_cert_secret) add(*a.ca_cert_secret);
    }
  }
  return out;
}

namespace {

// The value of the first of `preferred` keys present in data, else the only one.
Result<std::string> secret_value(const std::map<std::string, std::string>& data,
                                 std::initializer_list<const char*> preferred,
                                 const std::string& secret) {
  for (const char* k : preferred) {
    if (auto it = data.find(k); it != data.end()) return it->second;
  }
  if (data.size() == 1) return data.begin()->second;
  std::string keys;
  for (const auto& [k, v] : data) keys += (keys.empty() ? "" : ", ") + k;
  std::string want;
  for (const char* k : preferred) want += (want.empty() ? "" : " or ") + std::string(k);
  return make_error(Errc::invalid_argument,
                    "the Secret " + secret + " has " +
                        (data.empty() ? std::string("no data") : "keys " + keys) + "; expected " +
                        want + ", or exactly one key");
}

}  // namespace

Status resolve_secrets(std::vector<Policy>& policies, const SecretLookup& lookup,
                       std::string_view default_namespace) {
  try {
    for (auto& p : policies) {
      for (auto& a : p.authorities) {
        auto read = [&](const SecretRef& ref,
                        std::initializer_list<const char*> preferred) -> Result<std::string> {
          const std::string ns =
              ref.namespace_.empty() ? std::string(default_namespace) : ref.namespace_;
          const std::string where = p.origin + " (" + p.name + "): " + ref.field;
          if (!lookup) {
            return make_error(Errc::invalid_argument,
                              where + ": keys from Secrets need the Kubernetes API (serve --kube)");
          }
          auto data = lookup(ns, ref.name);
          if (!data) {
            return make_error(data.error().code, where + ": " + data.error().message);
          }
          auto v = secret_value(*data, preferred, ns + "/" + ref.name);
          if (!v) return make_error(Errc::invalid_argument, where + ": " + v.error().message);
          return v;
        };
        if (a.key_secret) {
          auto pem = read(*a.key_secret, {"cosign.pub"});
          if (!pem) return pem.error();
          auto pk = crypto::PublicKey::from_pem(*pem);
          if (!pk) {
            return make_error(
                Errc::invalid_argument,
                p.origin + " (" + p.name + "): " + a.key_secret->field +
                    ": the Secret does not hold a PEM public key: " + pk.error().message);
          }
          a.hash = a.explicit_hash ? *a.explicit_hash : crypto::default_hash_for(pk->type());
          a.key = std::move(*pk);
        }
        if (a.ca_cert_secret) {
          auto text = read(*a.ca_cert_secret, {"ca.crt", "ca.pem"});
          if (!text) return text.error();
          auto ca = ca_from_text(*text, a.name);
          if (!ca) {
            return make_error(Errc::invalid_argument,
                              p.origin + " (" + p.name + "): " + a.ca_cert_secret->field +
                                  ": the Secret does not hold a CA chain: " + ca.error().message);
          }
          a.ca_cert = std::move(*ca);
        }
      }
    }
    return {};
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string("reading Secrets: ") + e.what());
  }
}

std::string SignatureSource::key() const {
  std::string k = registry + "/" + repository + "|";
  for (const auto& s : pull_secrets) k += s + ",";
  return k;
}

Result<Policy> key_policy(std::string_view pem, std::string_view origin) {
  auto pk = crypto::PublicKey::from_pem(pem);
  if (!pk) {
    return make_error(Errc::invalid_argument,
                      std::string(origin) + ": not a PEM public key: " + pk.error().message);
  }
  auto glob = Glob::compile("**");
  if (!glob) return glob.error();
  Policy p;
  p.name = "cli-key";
  p.origin = std::string(origin);
  p.globs.push_back(std::move(*glob));
  Authority a;
  a.name = "key";
  a.kind = Authority::Kind::key;
  a.hash = crypto::default_hash_for(pk->type());
  a.key = std::move(*pk);
  a.linked = true;
  p.authorities.push_back(std::move(a));
  return p;
}

Result<Policy> identity_policy(std::string_view subject, std::string_view subject_regexp,
                               std::string_view issuer, std::string_view issuer_regexp,
                               bool insecure_ignore_sct) {
  Where w{"command line", 1, "cli-keyless", ""};
  Identity id;
  id.subject = std::string(subject);
  id.subject_regexp = std::string(subject_regexp);
  id.issuer = std::string(issuer);
  id.issuer_regexp = std::string(issuer_regexp);
  if (id.subject.empty() == id.subject_regexp.empty()) {
    return make_error(Errc::invalid_argument,
                      "give exactly one of --certificate-identity, --certificate-identity-regexp");
  }
  if (id.issuer.empty() == id.issuer_regexp.empty()) {
    return make_error(Errc::invalid_argument,
                      "give exactly one of --certificate-oidc-issuer, "
                      "--certificate-oidc-issuer-regexp");
  }
  if (!id.subject_regexp.empty()) {
    auto re = compile_regexp(id.subject_regexp, w, "--certificate-identity-regexp");
    if (!re) return re.error();
    id.subject_re = std::move(*re);
  }
  if (!id.issuer_regexp.empty()) {
    auto re = compile_regexp(id.issuer_regexp, w, "--certificate-oidc-issuer-regexp");
    if (!re) return re.error();
    id.issuer_re = std::move(*re);
  }
  auto glob = Glob::compile("**");
  if (!glob) return glob.error();
  Policy p;
  p.name = "cli-keyless";
  p.origin = "command line";
  p.globs.push_back(std::move(*glob));
  Authority a;
  a.name = "identity";
  a.kind = Authority::Kind::keyless;
  a.identities.push_back(std::move(id));
  a.insecure_ignore_sct = insecure_ignore_sct;
  p.authorities.push_back(std::move(a));
  return p;
}

PolicySet::PolicySet(std::vector<Policy> policies, NoMatch no_match, uint64_t generation)
    : policies_(std::move(policies)), no_match_(no_match), generation_(generation) {
  for (const auto& p : policies_) has_namespaced_ = has_namespaced_ || !p.namespace_scope.empty();
}

std::vector<const Policy*> PolicySet::match(const oci::Reference& image,
                                            std::string_view ns) const {
  std::vector<const Policy*> out;
  for (const auto& p : policies_) {
    if (!p.namespace_scope.empty() && p.namespace_scope != ns) continue;
    for (const auto& g : p.globs) {
      if (g.matches(image)) {
        out.push_back(&p);
        break;
      }
    }
  }
  return out;
}

bool PolicySet::needs_signatures(const std::vector<const Policy*>& matched) {
  for (const Policy* p : matched) {
    if (p == nullptr || p->unavailable) continue;  // it fails without looking at signatures
    for (const auto& a : p->authorities) {
      if (a.kind == Authority::Kind::key || a.kind == Authority::Kind::keyless) return true;
    }
  }
  return false;
}

}  // namespace sigil::policy
