// policy/policy.cpp: ClusterImagePolicy parsing, validation, glob compilation and evaluation.
//
// yaml-cpp throws; every public function here catches at its edge. The walk over a document
// iterates map pairs (never node["key"]) so that duplicate and unknown keys are seen and
// rejected rather than silently shadowed.
#include "policy/policy.hpp"

#include "common/encoding.hpp"

#include <re2/re2.h>

#include <cstddef>
#include <exception>
#include <map>
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

std::vector<std::string> candidates(const oci::Reference& image) {
  std::vector<std::string> bases;
  const bool hub = image.registry == "docker.io" || image.registry == "index.docker.io";
  if (hub) {
    bases.push_back("index.docker.io/" + image.repository);
    bases.push_back("docker.io/" + image.repository);
    bases.push_back(image.repository);
    constexpr std::string_view kLibrary = "library/";
    if (image.repository.rfind(kLibrary, 0) == 0) {
      bases.push_back(image.repository.substr(kLibrary.size()));
    }
  } else {
    bases.push_back(image.registry + "/" + image.repository);
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

Result<Authority> parse_authority(const YAML::Node& node, const Where& w, const std::string& path,
                                  std::size_t index) {
  auto f = fields(node, w, path);
  if (!f) return f.error();
  if (auto st = check_fields(*f, w, path, {"name", "key", "static"},
                             {{"keyless", "keyless authorities are"},
                              {"source", "authority source (signatures in another repository) is"},
                              {"ctlog", "transparency log (ctlog) checks are"},
                              {"attestations", "attestations are"},
                              {"rfc3161timestamp", "RFC 3161 timestamp authorities are"}});
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
  const auto* stat = get(*f, "static");
  if (key && stat) {
    return w.err(Errc::invalid_argument, path, "expected exactly one of key, static; got both");
  }
  if (!key && !stat) {
    return w.err(Errc::invalid_argument, path, "expected exactly one of key, keyless, static");
  }
  if (stat) {
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
  const std::string kp = path + ".key";
  auto kf = fields(*key, w, kp);
  if (!kf) return kf.error();
  if (auto st = check_fields(
          *kf, w, kp, {"data", "hashAlgorithm"},
          {{"secretRef", "keys from Secrets (secretRef) are"}, {"kms", "KMS keys are"}});
      !st) {
    return st.error();
  }
  const auto* data = get(*kf, "data");
  if (!data) return w.err(Errc::invalid_argument, kp + ".data", "missing (a PEM public key)");
  auto pem = scalar(*data, w, kp + ".data");
  if (!pem) return pem.error();
  auto pk = crypto::PublicKey::from_pem(*pem);
  if (!pk) {
    return w.err(Errc::invalid_argument, kp + ".data",
                 "not a PEM public key: " + pk.error().message);
  }
  a.kind = Authority::Kind::key;
  a.hash = crypto::default_hash_for(pk->type());
  if (const auto* h = get(*kf, "hashAlgorithm")) {
    auto hs = scalar(*h, w, kp + ".hashAlgorithm");
    if (!hs) return hs.error();
    auto ha = crypto::parse_hash_algorithm(*hs);
    if (!ha) {
      return w.err(Errc::invalid_argument, kp + ".hashAlgorithm",
                   "unsupported \"" + *hs + "\" (sha224, sha256, sha384 or sha512)");
    }
    a.hash = *ha;
  }
  a.key = std::move(*pk);
  return a;
}

// Parses one non-empty document. w.name is filled as soon as metadata.name is known.
Result<Policy> parse_document(const YAML::Node& doc, Where& w) {
  auto top = fields(doc, w, "");
  if (!top) return top.error();

  const auto* kind = get(*top, "kind");
  if (!kind) return w.err(Errc::invalid_argument, "kind", "missing");
  auto k = scalar(*kind, w, "kind");
  if (!k) return k.error();
  if (*k != "ClusterImagePolicy") {
    return w.err(Errc::unsupported, "kind", "\"" + *k + "\" is not ClusterImagePolicy");
  }
  const auto* api = get(*top, "apiVersion");
  if (!api) return w.err(Errc::invalid_argument, "apiVersion", "missing");
  auto av = scalar(*api, w, "apiVersion");
  if (!av) return av.error();
  if (*av != "sigil.dev/v1alpha1" && *av != "policy.sigstore.dev/v1beta1" &&
      *av != "policy.sigstore.dev/v1alpha1") {
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
  if (auto st = check_fields(
          *mf, w, "metadata",
          {"name", "labels", "annotations", "uid", "resourceVersion", "generation",
           "creationTimestamp", "managedFields", "finalizers", "ownerReferences", "namespace",
           "generateName", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"},
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

  if (auto st = check_fields(*top, w, "", {"apiVersion", "kind", "metadata", "spec", "status"}, {});
      !st) {
    return st.error();
  }
  const auto* spec = get(*top, "spec");
  if (!spec) return w.err(Errc::invalid_argument, "spec", "missing");
  auto sf = fields(*spec, w, "spec");
  if (!sf) return sf.error();
  if (auto st = check_fields(*sf, w, "spec", {"images", "authorities", "mode"},
                             {{"policy", "CUE/Rego policies (spec.policy) are"},
                              {"match", "resource selectors (spec.match) are"}});
      !st) {
    return st.error();
  }

  Policy p;
  p.name = *nm;
  p.origin = w.origin + " document " + std::to_string(w.doc);

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
    if (auto st = check_fields(*imf, w, ip, {"glob"}, {}); !st) return st.error();
    const auto* g = get(*imf, "glob");
    if (!g) return w.err(Errc::invalid_argument, ip + ".glob", "missing");
    auto gs = scalar(*g, w, ip + ".glob");
    if (!gs) return gs.error();
    auto glob = Glob::compile(*gs);
    if (!glob) return w.err(Errc::invalid_argument, ip + ".glob", glob.error().message);
    p.globs.push_back(std::move(*glob));
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
  return p;
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

Result<std::vector<Policy>> parse_all(std::string_view yaml, std::string_view origin) {
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
  std::vector<Policy> out;
  std::set<std::string> names;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    if (!docs[i].IsDefined() || docs[i].IsNull()) continue;  // empty document
    Where w{std::string(origin), i + 1, ""};
    auto p = parse_document(docs[i], w);
    if (!p) return p.error();
    if (!names.insert(p->name).second) {
      return w.err(Errc::invalid_argument, "metadata.name",
                   "duplicate policy name \"" + p->name + "\" in this file");
    }
    out.push_back(std::move(*p));
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

Result<std::vector<Policy>> parse_policies(std::string_view yaml, std::string_view origin) {
  try {
    return parse_all(yaml, origin);
  } catch (const YAML::Exception& e) {
    return make_error(Errc::parse_error, std::string(origin) + ": YAML error: " + e.msg);
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string(origin) + ": " + e.what());
  } catch (...) {
    return make_error(Errc::internal, std::string(origin) + ": unexpected failure");
  }
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
  p.authorities.push_back(std::move(a));
  return p;
}

PolicySet::PolicySet(std::vector<Policy> policies, NoMatch no_match, uint64_t generation)
    : policies_(std::move(policies)), no_match_(no_match), generation_(generation) {}

std::vector<const Policy*> PolicySet::match(const oci::Reference& image) const {
  std::vector<const Policy*> out;
  for (const auto& p : policies_) {
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
    if (p == nullptr) continue;
    for (const auto& a : p->authorities) {
      if (a.kind == Authority::Kind::key) return true;
    }
  }
  return false;
}

PolicyResult evaluate(const Policy& policy, std::string_view digest,
                      const std::vector<crypto::Signature>& signatures) {
  PolicyResult r;
  r.policy = policy.name;
  try {
    const Authority* static_fail = nullptr;
    std::vector<std::string> key_names;
    std::string mismatch_authority, mismatch_digest, payload_problem;
    const bool digest_ok = digest.rfind("sha256:", 0) == 0 && oci::is_valid_digest(digest);

    for (const auto& a : policy.authorities) {
      switch (a.kind) {
        case Authority::Kind::static_pass:
          r.satisfied = true;
          r.authority = a.name;
          return r;
        case Authority::Kind::static_fail:
          if (static_fail == nullptr) static_fail = &a;
          break;
        case Authority::Kind::key: {
          key_names.push_back(a.name);
          if (!a.key || !digest_ok) break;
          for (const auto& sig : signatures) {
            const crypto::SignatureCheck c =
                crypto::check_signature_with_key(sig, *a.key, a.hash, digest);
            if (c.ok && c.failure == crypto::SignatureFailure::none) {
              r.satisfied = true;
              r.authority = a.name;
              return r;
            }
            if (c.failure == crypto::SignatureFailure::digest_mismatch &&
                mismatch_authority.empty()) {
              mismatch_authority = a.name;
              // crypto fills the claims on digest_mismatch; parse again only if it did not.
              mismatch_digest = c.payload.docker_manifest_digest;
              if (mismatch_digest.empty()) {
                auto parsed = crypto::parse_simple_signing(sig.payload);
                mismatch_digest = parsed ? parsed->docker_manifest_digest : "another digest";
              }
            } else if ((c.failure == crypto::SignatureFailure::wrong_type ||
                        c.failure == crypto::SignatureFailure::malformed_payload) &&
                       payload_problem.empty()) {
              payload_problem = "signature verified with key authority '" + a.name +
                                "' but its payload is unusable: " + c.message;
            }
          }
          break;
        }
      }
    }

    auto quoted_names = [&] {
      std::string s;
      for (std::size_t i = 0; i < key_names.size(); ++i) {
        if (i) s += ", ";
        s += "'" + key_names[i] + "'";
      }
      return (key_names.size() == 1 ? "key authority " : "key authorities ") + s;
    };

    if (static_fail != nullptr) {
      r.reason_code = "STATIC_FAIL";
      r.authority = static_fail->name;
      r.message = "disallowed by static authority '" + static_fail->name + "'";
      if (!static_fail->static_message.empty()) r.message += ": " + static_fail->static_message;
    } else if (!key_names.empty() && !digest_ok) {
      r.reason_code = "UNSUPPORTED_DIGEST";
      r.message = "digest \"" + short_digest(digest) + "\" is not a sha256 digest; " +
                  quoted_names() + " cannot be checked";
    } else if (key_names.empty()) {
      // Unreachable for parsed policies (every authority is key or static); fail closed.
      r.reason_code = "NO_AUTHORITY";
      r.message = "policy has no authority that can pass";
    } else if (signatures.empty()) {
      r.reason_code = "NOT_SIGNED";
      r.message = "no signatures found (" + quoted_names() + ")";
    } else if (!mismatch_authority.empty()) {
      r.reason_code = "DIGEST_MISMATCH";
      r.authority = mismatch_authority;
      r.message = "signature verified with key authority '" + mismatch_authority + "' but is for " +
                  short_digest(mismatch_digest) + ", not this image (copied from another image?)";
    } else if (!payload_problem.empty()) {
      r.reason_code = "BAD_SIGNATURE";
      r.message = payload_problem;
    } else {
      r.reason_code = "BAD_SIGNATURE";
      r.message = std::to_string(signatures.size()) +
                  (signatures.size() == 1 ? " signature found, it does not verify with "
                                          : " signatures found, none verifies with ") +
                  quoted_names();
    }
  } catch (...) {
    r.satisfied = false;
    r.reason_code = "INTERNAL";
    r.message = "internal error while evaluating policy";
  }
  return r;
}

}  // namespace sigil::policy
