// Fuzz target: ClusterImagePolicy YAML (policy files, and objects from the Kubernetes API) and
// image globs.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "policy/policy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  // The first line, as a glob, against a few fixed references.
  const std::string_view first = text.substr(0, text.find('\n'));
  if (first.size() <= 256) {
    auto g = sigil::policy::Glob::compile(first);
    if (g.ok()) {
      for (const char* img : {"nginx", "ghcr.io/org/app:v1",
                              "localhost:5000/a/b/c@sha256:"
                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}) {
        auto ref = sigil::oci::parse_reference(img);
        if (ref.ok()) (void)g->matches(*ref);
      }
    }
  }

  auto r = sigil::policy::parse_policies(text, "fuzz.yaml");
  if (!r.ok()) {
    if (r.error().message.rfind("fuzz.yaml", 0) != 0) std::abort();  // errors name the origin
    return 0;
  }
  const std::string digest = "sha256:" + std::string(64, 'a');
  for (const auto& p : *r) {
    if (p.name.empty() || p.globs.empty() || p.authorities.empty()) std::abort();
    auto res = sigil::policy::evaluate(p, digest, std::vector<sigil::crypto::Signature>{});
    // With no signatures only a static pass authority can satisfy a policy.
    bool has_pass = false;
    for (const auto& a : p.authorities) {
      has_pass = has_pass || a.kind == sigil::policy::Authority::Kind::static_pass;
    }
    if (res.satisfied != has_pass) std::abort();
    if (!res.satisfied && (res.reason_code.empty() || res.message.empty())) std::abort();
  }
  auto ref = sigil::oci::parse_reference("ghcr.io/org/app:v1");
  if (ref.ok()) {
    sigil::policy::PolicySet set(std::move(*r), sigil::policy::NoMatch::deny, 1);
    (void)set.match(*ref);
  }
  return 0;
}
