// policy/policy.cpp: the PolicySet snapshot, and the ready-made policies of the command line
// (key_policy, identity_policy). Parsing is in document.cpp and its neighbours, evaluation in
// judge.cpp.
#include "policy/policy.hpp"

#include <atomic>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/encoding.hpp"
#include "policy/yaml_detail.hpp"

namespace sigil::policy {

Result<NoMatch> parse_no_match(std::string_view s) {
  if (s == "deny") return NoMatch::deny;
  if (s == "warn") return NoMatch::warn;
  if (s == "allow") return NoMatch::allow;
  return make_error(Errc::invalid_argument,
                    "no-match behaviour \"" + std::string(s) + "\" is not deny, warn or allow");
}

std::vector<std::string> scope_warnings(const Policy& p) {
  std::vector<std::string> out;
  const std::string who = (p.namespace_scope.empty() ? "ClusterImagePolicy " : "ImagePolicy ") +
                          printable(p.name, 50) + ": ";
  size_t more = 0;
  for (const Glob& g : p.globs) {
    if (!g.selects_by_tag()) continue;
    if (out.size() == kMaxScopeWarnings) {
      ++more;
      continue;
    }
    // printable() cuts the name and glob, so a line stays under 256 bytes (a test checks it).
    out.push_back(who + "glob \"" + printable(g.pattern(), 64) +
                  "\" selects by tag, which a Pod's author picks in name:tag@digest; select by "
                  "repository");
  }
  if (more > 0) {
    out.push_back(who + std::to_string(more) + " more glob" + (more == 1 ? "" : "s") +
                  " select by tag");
  }
  return out;
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
  detail::Where w{"command line", 1, "cli-keyless", ""};
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
    auto re = detail::compile_regexp(id.subject_regexp, w, "--certificate-identity-regexp");
    if (!re) return re.error();
    id.subject_re = std::move(*re);
  }
  if (!id.issuer_regexp.empty()) {
    auto re = detail::compile_regexp(id.issuer_regexp, w, "--certificate-oidc-issuer-regexp");
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

namespace {
std::atomic<uint64_t> next_policy_id{1};
}  // namespace

uint64_t fresh_policy_id() noexcept {
  return next_policy_id.fetch_add(1, std::memory_order_relaxed);
}

PolicySet::PolicySet(std::vector<Policy> policies, NoMatch no_match, uint64_t generation)
    : policies_(std::move(policies)), no_match_(no_match), generation_(generation) {
  std::unordered_set<uint64_t> seen;
  for (auto& p : policies_) {
    has_namespaced_ = has_namespaced_ || !p.namespace_scope.empty();
    if (p.id == 0 || !seen.insert(p.id).second) {
      p.id = fresh_policy_id();
      seen.insert(p.id);
    }
  }
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
