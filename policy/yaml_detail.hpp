// policy/yaml_detail.hpp: the YAML reading the policy parsers share. PRIVATE to policy/:
// included only by its .cpp files (document, authority, trust_root_spec, secrets, policy),
// never by another module, so yaml-cpp stays out of every public header.
//
// yaml-cpp throws; every public function that reaches these helpers catches at its edge. The
// walk over a document iterates map pairs (never node["key"]) so that duplicate and unknown keys
// are seen and rejected rather than silently shadowed.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "crypto/trust_root.hpp"
#include "policy/policy.hpp"

namespace sigil::policy::detail {

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

// yaml_reader.cpp: reading fields, with errors that name the document and the field.
std::string line_of(const YAML::Node& n);
// A map's pairs by key, rejecting non-scalar and duplicate keys.
Result<std::map<std::string, YAML::Node>> fields(const YAML::Node& node, const Where& w,
                                                 const std::string& path);
// Rejects fields outside `known`; fields in `unsupported` get Errc::unsupported and `why`.
Status check_fields(
    const std::map<std::string, YAML::Node>& f, const Where& w, const std::string& path,
    std::initializer_list<std::string_view> known,
    std::initializer_list<std::pair<std::string_view, std::string_view>> unsupported);
Result<std::string> scalar(const YAML::Node& n, const Where& w, const std::string& path);
// The field's node, nullptr when absent or null.
const YAML::Node* get(const std::map<std::string, YAML::Node>& f, const char* key);
bool dns1123_subdomain(std::string_view s);
// A PEM text, or the base64 of one (policy-controller's []byte fields arrive as base64 in
// YAML/JSON; people also paste PEM directly).
Result<std::string> pem_or_base64_pem(const std::string& text);
// An RE2 (Go's syntax, linear time) of at most 1024 characters and 1 MiB of program.
Result<std::shared_ptr<const re2::RE2>> compile_regexp(const std::string& pattern, const Where& w,
                                                       const std::string& path);

// authority.cpp: spec.authorities[i], and a CA chain read from PEM text.
Result<Authority> parse_authority(const YAML::Node& node, const Where& w, const std::string& path,
                                  std::size_t index);
// A CA chain (PEM, or base64 of one) whose last certificate is the self-signed root.
Result<crypto::CertificateAuthority> ca_from_text(const std::string& text,
                                                  const std::string& authority_name);

// attestation.cpp: spec.authorities[i].attestations.
Result<std::vector<Attestation>> parse_attestations(const YAML::Node& node, const Where& w,
                                                    const std::string& path);

// trust_root_spec.cpp: the spec of a TrustRoot document.
Result<TrustRootDocument> parse_trust_root_spec(const YAML::Node& spec, const Where& w);

}  // namespace sigil::policy::detail
