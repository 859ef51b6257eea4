// policy/document.cpp: a YAML text -> its ClusterImagePolicy, ImagePolicy and TrustRoot
// documents (parse_documents, parse_policy_scope, parse_policies), within size and count
// limits; each document's kind, apiVersion, metadata and spec are checked field by field.
#include <yaml-cpp/eventhandler.h>

#include <cstddef>
#include <exception>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "policy/yaml_detail.hpp"

namespace sigil::policy {
namespace {

using namespace detail;

constexpr std::size_t kMaxYamlBytes = 1 << 20;
constexpr std::size_t kMaxDocuments = 1000;

// One parsed document: a policy or a trust root.
struct ParsedDocument {
  std::optional<Policy> policy;
  std::optional<TrustRootDocument> trust_root;
};

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

}  // namespace sigil::policy
