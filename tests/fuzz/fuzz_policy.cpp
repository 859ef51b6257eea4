// Fuzz target: policy documents (ClusterImagePolicy, ImagePolicy and TrustRoot, as YAML files
// and as the JSON objects the Kubernetes API returns), trust-root linking, and image globs.
//
// Every input goes through parse_documents, then link_trust_roots twice: with a default trust
// root that is unusable (what parse_policies does) and with a usable one (sigil serve's
// --trusted-root), and the linked authorities must be complete. Invariants (std::abort):
// errors name the origin; parse_policies agrees with parse_documents + link without a default;
// the default root is asked for at most once, and a usable one only ever helps; a linked
// keyless authority has CAs, identities, CT logs unless SCTs are off, a log when it requires
// one and a timestamp authority when it does not; with no (or only junk) signatures a policy
// is satisfied exactly when it has a static pass authority; parse_policy_scope reads an
// accepted policy's name, namespace, mode and globs the same way.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.hpp"

namespace {

using sigil::policy::Authority;
using sigil::policy::Policy;
using RootPtr = std::shared_ptr<const sigil::crypto::TrustedRoot>;

constexpr std::string_view kOrigin = "fuzz.yaml";

// The usable default root: a CA (intermediate and root), a Rekor and a CT log key, and a TSA,
// all minted for this target (tests/fuzz/corpus/policy/valid-* seeds use the same material).
constexpr std::string_view kDefaultRoot = R"yaml(apiVersion: sigil.dev/v1alpha1
kind: TrustRoot
metadata:
  name: fuzz-default
spec:
  sigstoreKeys:
    certificateAuthorities:
    - uri: https://fulcio.sigstore.dev
      certChain: |
        -----BEGIN CERTIFICATE-----
        MIIB5TCCAYugAwIBAgIUEZiP3sOKnQCQIxtLQwKK+OYtT7YwCgYIKoZIzj0EAwIw
        LzETMBEGA1UECgwKc2lnaWwuZnV6ejEYMBYGA1UEAwwPc2lnaWwtZnV6ei1yb290
        MCAXDTI2MTIwMTIwMzUyMloYDzIxMjYxMTA3MjAzNTIyWjA3MRMwEQYDVQQKDApz
        aWdpbC5mdXp6MSAwHgYDVQQDDBdzaWdpbC1mdXp6LWludGVybWVkaWF0ZTBZMBMG
        ByqGSM49AgEGCCqGSM49AwEHA0IABE9KT4d9G/ZLhAST5MoNWiQNALcTsXZ1ToAs
        BvcCz43+EuoCQo0ef+FQRyLvvegy7OL+8zjVkddQV9Y2tOyzaNyjezB5MBIGA1Ud
        EwEB/wQIMAYBAf8CAQAwDgYDVR0PAQH/BAQDAgEGMBMGA1UdJQQMMAoGCCsGAQUF
        BwMDMB0GA1UdDgQWBBTLT9HYafRqM51q1iHZtKxB88ND/zAfBgNVHSMEGDAWgBSP
        pgjgsQIPJItK15SUVOjhYL3LtjAKBggqhkjOPQQDAgNIADBFAiEAiE+iSae1tIbh
        D9SuQ8DimGq45l+QIxKtlwX59CUKt+cCICL9vvdA16IQRPAE2r8pA4a7OGxovWC4
        LwyZ0jA1Jj3q
        -----END CERTIFICATE-----
        -----BEGIN CERTIFICATE-----
        MIIBozCCAUqgAwIBAgIUAn9tQNKqzWigB691LF9BchLav3YwCgYIKoZIzj0EAwIw
        LzETMBEGA1UECgwKc2lnaWwuZnV6ejEYMBYGA1UEAwwPc2lnaWwtZnV6ei1yb290
        MCAXDTI2MTIwMTIwMzUyMloYDzIxMjYxMTA3MjAzNTIyWjAvMRMwEQYDVQQKDApz
        aWdpbC5mdXp6MRgwFgYDVQQDDA9zaWdpbC1mdXp6LXJvb3QwWTATBgcqhkjOPQIB
        BggqhkjOPQMBBwNCAARmVQF6L9GUW5RP2OSBN0JEe/BxNe/rvmKPty27Ds6cLyNf
        PYGhY1ZVRXUSJBNIgmt6KASC6YQJucEdaTP45Yx6o0IwQDAPBgNVHRMBAf8EBTAD
        AQH/MA4GA1UdDwEB/wQEAwIBBjAdBgNVHQ4EFgQUj6YI4LECDySLSteUlFTo4WC9
        y7YwCgYIKoZIzj0EAwIDRwAwRAIgQb3sdzsgHK0KFB9UQoeO9VKqbbbmZ5o2vkpc
        R027P0QCIDOqf+0QJqDuzKFPCEPiXPp+p0bDCBS2OSc3xLLRVYGH
        -----END CERTIFICATE-----
    tLogs:
    - baseURL: https://rekor.sigstore.dev
      hashAlgorithm: sha-256
      publicKey: |
        -----BEGIN PUBLIC KEY-----
        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEW/ofw55R7BF711NBVh/tG/1ipcIo
        NImMSJlJHCPhca6RuKPSIqOwRkO+p2fF7QEbGEzvF7xe4bsSL/jf6ikAhw==
        -----END PUBLIC KEY-----
    ctLogs:
    - baseURL: https://ctfe.sigstore.dev
      hashAlgorithm: sha-256
      publicKey: |
        -----BEGIN PUBLIC KEY-----
        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENjxk+Xi7tq82yK6tQYgDWLy34vLf
        XZQ0OTD4ZbbEYJh3S6/fLndvEi9GPKx8sHNVP7d3aDkQ1k2Vweka4IGKlA==
        -----END PUBLIC KEY-----
    timestampAuthorities:
    - uri: https://timestamp.sigstore.dev
      certChain: |
        -----BEGIN CERTIFICATE-----
        MIIB3jCCAYOgAwIBAgIUJNBZuWfNPdVgOrafxvNI7r1RrjwwCgYIKoZIzj0EAwIw
        MzETMBEGA1UECgwKc2lnaWwuZnV6ejEcMBoGA1UEAwwTc2lnaWwtZnV6ei10c2Et
        cm9vdDAgFw0yNjEyMDEyMDM1MjJaGA8yMTI2MTEwNzIwMzUyMlowLjETMBEGA1UE
        CgwKc2lnaWwuZnV6ejEXMBUGA1UEAwwOc2lnaWwtZnV6ei10c2EwWTATBgcqhkjO
        PQIBBggqhkjOPQMBBwNCAAR9M6AcIrfnW4kB3M0sXSsFduNBRFmBjKtxdG2DYTSv
        oAv+hLsSBhlhsjuIqgINb4I4IKxzCY2eLNzaQ16N/rbso3gwdjAMBgNVHRMBAf8E
        AjAAMA4GA1UdDwEB/wQEAwIHgDAWBgNVHSUBAf8EDDAKBggrBgEFBQcDCDAdBgNV
        HQ4EFgQUJb4Gpn1KEtrfSBdpLtTSo+L+ELwwHwYDVR0jBBgwFoAU82wZc3chqf1R
        CF6XdQ6enUCaGc4wCgYIKoZIzj0EAwIDSQAwRgIhAMNF1dAQ6dH4uLcQbXV9/qMn
        rWaKQOyDEKfkqTo1DfYPAiEAzuUtm5yfL9VAJOKlBpHGmQJsG2wlpOoWAXeDR82w
        AxM=
        -----END CERTIFICATE-----
        -----BEGIN CERTIFICATE-----
        MIIBrDCCAVKgAwIBAgIUVDe2ThbwzF38BKkt+Rf25IZJ3jMwCgYIKoZIzj0EAwIw
        MzETMBEGA1UECgwKc2lnaWwuZnV6ejEcMBoGA1UEAwwTc2lnaWwtZnV6ei10c2Et
        cm9vdDAgFw0yNjEyMDEyMDM1MjJaGA8yMTI2MTEwNzIwMzUyMlowMzETMBEGA1UE
        CgwKc2lnaWwuZnV6ejEcMBoGA1UEAwwTc2lnaWwtZnV6ei10c2Etcm9vdDBZMBMG
        ByqGSM49AgEGCCqGSM49AwEHA0IABPaAUkbKWJzaJC8p5D33Q7YOgsUhuJ+funJu
        DUcNJ7EYeuB45BE/Fl5CXbtEI3Zq0il03F8BuPDf3aOejA6xXaijQjBAMA8GA1Ud
        EwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBTzbBlzdyGp/VEI
        Xpd1Dp6dQJoZzjAKBggqhkjOPQQDAgNIADBFAiAHpM881lgytyxfw3ntj6tJNWeG
        J987sCev9yFP01a1HAIhAL/9KFvypRWLzJZ6ZrHsyYzcCKJyA34EwQeNoraFoBtv
        -----END CERTIFICATE-----
)yaml";

RootPtr default_root() {
  static const RootPtr root = [] {
    auto d = sigil::policy::parse_documents(kDefaultRoot, "default-root.yaml");
    if (!d.ok() || d->trust_roots.size() != 1) std::abort();
    return d->trust_roots.front().root;
  }();
  return root;
}

bool names_origin(const std::string& message) {
  return message.rfind(kOrigin, 0) == 0;
}

bool has_static_pass(const Policy& p) {
  for (const auto& a : p.authorities) {
    if (a.kind == Authority::Kind::static_pass) return true;
  }
  return false;
}

// Policies that parsed (and, when linked, were linked) without error.
void check_policies(const std::vector<Policy>& policies, bool linked) {
  const std::string digest = "sha256:" + std::string(64, 'a');
  // A junk legacy signature: no authority may accept it.
  sigil::policy::Evidence junk;
  sigil::crypto::SignedEntity e;
  e.source = "fuzz";
  e.payload = R"({"critical":{"image":{"docker-manifest-digest":")" + digest +
              R"("},"type":"cosign container image signature"}})";
  e.signature = std::string(64, '\x01');
  junk.signatures.push_back(e);
  for (const auto& p : policies) {
    if (p.name.empty() || p.globs.empty() || p.authorities.empty()) std::abort();
    if (!names_origin(p.origin)) std::abort();
    if (!p.namespace_scope.empty() && p.name.find('/') == std::string::npos) std::abort();
    for (const auto& a : p.authorities) {
      if (a.name.empty()) std::abort();
      if (!linked) continue;
      if (!a.linked) std::abort();
      switch (a.kind) {
        case Authority::Kind::key:
          if (!a.key) std::abort();
          break;
        case Authority::Kind::keyless:
          if (a.cas.empty() || a.identities.empty()) std::abort();
          if (!a.insecure_ignore_sct && a.ctlogs.empty()) std::abort();
          if (a.require_tlog && a.tlogs.empty()) std::abort();
          if (!a.require_tlog && a.tsas.empty()) std::abort();  // nothing would prove the time
          for (const auto& id : a.identities) {
            if (id.issuer.empty() == id.issuer_regexp.empty()) std::abort();
            if (id.subject.empty() == id.subject_regexp.empty()) std::abort();
            if (!id.issuer_regexp.empty() && !id.issuer_re) std::abort();
            if (!id.subject_regexp.empty() && !id.subject_re) std::abort();
            (void)id.describe();
          }
          break;
        case Authority::Kind::static_pass:
        case Authority::Kind::static_fail:
          if (!a.cas.empty() || !a.tlogs.empty() || a.require_tlog) std::abort();
          break;
      }
      const auto req = sigil::policy::requirements_for(a);
      if (req.require_tlog != a.require_tlog) std::abort();
    }
    if (!linked) continue;
    const bool pass = has_static_pass(p);
    // No signatures at all, and a junk one.
    sigil::policy::Evidence none;
    for (const sigil::policy::Evidence* evidence : {&none, &junk}) {
      auto res = sigil::policy::judge(p, digest, *evidence);
      if (res.satisfied != pass) std::abort();
      // Satisfied exactly when nothing is unmet; a refusal says why, and a signature refusal
      // names crypto's failure.
      if (res.satisfied != (res.unmet == sigil::policy::Unmet::none)) std::abort();
      if (!res.satisfied && res.message.empty()) std::abort();
      if (res.unmet == sigil::policy::Unmet::signature &&
          res.signature_failure == sigil::crypto::Failure::none) {
        std::abort();
      }
    }
    // The legacy entry point agrees.
    if (sigil::policy::judge(p, digest, std::vector<sigil::crypto::Signature>{}).satisfied !=
        pass) {
      std::abort();
    }
  }
}

}  // namespace

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

  auto legacy = sigil::policy::parse_policies(text, kOrigin);
  auto docs = sigil::policy::parse_documents(text, kOrigin);

  // What a policy applies to (serve --kube keeps a policy it cannot compile by its scope): a
  // document parse_documents accepts has the same scope; a refusal names the origin.
  auto scope = sigil::policy::parse_policy_scope(text, kOrigin);
  if (!scope.ok() && !names_origin(scope.error().message)) std::abort();
  if (docs.ok() && docs->policies.size() == 1 && docs->trust_roots.empty()) {
    const Policy& p = docs->policies.front();
    if (!scope.ok() || scope->name != p.name || scope->namespace_scope != p.namespace_scope ||
        scope->mode != p.mode || !scope->authorities.empty() || scope->unavailable ||
        scope->globs.size() != p.globs.size()) {
      std::abort();
    }
    for (size_t i = 0; i < p.globs.size(); ++i) {
      if (scope->globs[i].pattern() != p.globs[i].pattern()) std::abort();
    }
  }
  if (!docs.ok()) {
    if (legacy.ok() || !names_origin(docs.error().message)) std::abort();
    return 0;
  }
  for (const auto& tr : docs->trust_roots) {
    if (tr.name.empty() || !tr.root || !names_origin(tr.origin)) std::abort();
  }
  check_policies(docs->policies, /*linked=*/false);

  // 1. No usable default root: what parse_policies does.
  int unusable_calls = 0;
  sigil::policy::DefaultTrustRoot unusable = [&]() -> sigil::Result<RootPtr> {
    ++unusable_calls;
    return sigil::make_error(sigil::Errc::invalid_argument, "no default root in this run");
  };
  std::vector<Policy> without = docs->policies;
  const auto st_without = sigil::policy::link_trust_roots(without, docs->trust_roots, unusable);
  if (st_without.ok() != legacy.ok()) std::abort();
  if (unusable_calls > 1 || (st_without.ok() && unusable_calls != 0)) std::abort();
  if (!st_without.ok() && !names_origin(st_without.error().message)) std::abort();
  if (legacy.ok()) check_policies(*legacy, /*linked=*/true);

  // 2. A usable default root (--trusted-root).
  int usable_calls = 0;
  sigil::policy::DefaultTrustRoot usable = [&]() -> sigil::Result<RootPtr> {
    ++usable_calls;
    return default_root();
  };
  std::vector<Policy> with = docs->policies;
  const auto st_with = sigil::policy::link_trust_roots(with, docs->trust_roots, usable);
  if (usable_calls > 1) std::abort();
  if (st_without.ok() && (!st_with.ok() || usable_calls != 0)) std::abort();
  if (!st_with.ok()) {
    if (!names_origin(st_with.error().message)) std::abort();
    return 0;
  }
  check_policies(with, /*linked=*/true);

  auto ref = sigil::oci::parse_reference("ghcr.io/org/app:v1");
  if (ref.ok()) {
    std::string ns;
    for (const auto& p : with) {
      if (!p.namespace_scope.empty()) ns = p.namespace_scope;
    }
    sigil::policy::PolicySet set(std::move(with), sigil::policy::NoMatch::deny, 1);
    const auto cluster = set.match(*ref);
    const auto scoped = set.match(*ref, ns);
    if (scoped.size() < cluster.size()) std::abort();  // a namespace only adds policies
    (void)sigil::policy::PolicySet::needs_signatures(scoped);
  }
  return 0;
}
