// policy/policy.hpp: ClusterImagePolicy documents -> validated, compiled, immutable PolicySet.
//
// Role: parse multi-document YAML in sigstore policy-controller's ClusterImagePolicy schema
// (apiVersion sigil.dev/v1alpha1, policy.sigstore.dev/v1beta1 or v1alpha1), validate every
// field (unsupported ones are errors, never ignored), compile globs and keys once, and judge an
// image's signatures against a policy's authorities (judge(), typed results: no reason strings
// here). Pure: common, crypto, oci, yaml-cpp; no I/O (callers read files), no clock, no Asio.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/budget.hpp"
#include "common/result.hpp"
#include "crypto/cosign.hpp"
#include "crypto/keys.hpp"
#include "crypto/sigstore.hpp"
#include "crypto/trust_root.hpp"
#include "crypto/x509.hpp"
#include "oci/reference.hpp"

namespace re2 {
class RE2;
}  // namespace re2

namespace sigil::policy {

enum class Mode { enforce, warn };
enum class NoMatch { deny, warn, allow };
Result<NoMatch> parse_no_match(std::string_view s);  // "deny" | "warn" | "allow"

// A compiled image glob with policy-controller semantics (see glob.cpp for the full rules):
// `*` matches within one path component (no `/`), `**` across components, `?` one character
// other than `/`, everything else literally; the glob must match a whole candidate string.
// The candidates for an image are its repository name and that name with its tag and/or
// digest, each spelled with the registry as written by users: for Docker Hub images
// `index.docker.io/library/nginx`, `docker.io/library/nginx`, `library/nginx` and `nginx`
// (and `registry-1.docker.io/...`, `registry.hub.docker.com/...`); for other registries
// `host/...` and `host:443/...`. The image itself is normalized first (oci::parse_reference), so
// no spelling of an origin escapes a glob written for it. A glob whose registry or repository
// has an uppercase letter is refused (it could never match). Matching compiles to an anchored
// RE2 regex, linear in the input.
class Glob {
 public:
  static Result<Glob> compile(std::string_view pattern);
  bool matches(const oci::Reference& image) const;
  // Whether the glob matches this one spelling, exactly as given (matches() tries them all).
  bool matches_spelling(std::string_view name) const;
  const std::string& pattern() const noexcept { return pattern_; }
  // The pattern after policy-controller's rewrites ("*" -> "index.docker.io/library/*").
  const std::string& normalized() const noexcept { return normalized_; }
  // The registry this glob names literally, in oci::canonical_registry's spelling ("ghcr.io",
  // "myreg:5000", "docker.io" for index.docker.io), or "" when its registry part has a wildcard
  // or it names none (a bare "nginx", "**"). Whoever wrote the glob chose that host.
  std::string literal_registry() const;
  // Whether the glob names a tag: its last path component, before any '@', holds a ':'
  // ("r/app:prod-*"). Such a glob selects by a label the pod's author writes:
  // name:tag@sha256:... may pair any tag with any digest, and pinning keeps the tag, so sigil
  // matches it as written. (A wildcard can also reach into the tag, `r/*-prod` matching
  // app:x-prod, but such a glob matches repository names just as well; it is not counted.)
  bool selects_by_tag() const;

  struct Program;  // glob.cpp: the compiled matcher

 private:
  std::string pattern_;
  std::string normalized_;
  std::shared_ptr<const Program> program_;
};

// One accepted keyless identity (policy-controller `keyless.identities[]`): the issuer is
// matched against the leaf's Fulcio OIDC issuer, the subject against every SAN of the leaf.
// Exact strings compare byte for byte; regular expressions are RE2 (Go's syntax and linear
// time) and must match the WHOLE string (cosign matches any substring; sigil is strict).
struct Identity {
  std::string issuer, subject;                // exact, when set
  std::string issuer_regexp, subject_regexp;  // as written, when set
  std::shared_ptr<const re2::RE2> issuer_re, subject_re;
  bool matches(const crypto::CertificateIdentity& id) const;
  std::string describe() const;  // "issuer https://… subject ~ ^https://github.com/org/.*$"
};

// Where the signatures of an image may be (policy-controller `signatureFormat`).
enum class SignatureFormat {
  any,     // legacy .sig tags and sigstore bundles (sigil's default)
  legacy,  // only sha256-<hex>.sig
  bundle,  // only sigstore bundles attached as OCI 1.1 referrers
};

// A Secret a policy reads its key or CA from (policy-controller `secretRef`). An empty
// namespace means sigil's own (ClusterImagePolicy); an ImagePolicy may only name Secrets of
// its own namespace.
struct SecretRef {
  std::string namespace_;
  std::string name;
  std::string field;  // "spec.authorities[0].key.secretRef", for messages
};

// Where an authority reads signatures (policy-controller `source[]`): another repository
// (cosign's COSIGN_REPOSITORY) and the pull secrets (in the admitted object's namespace) that
// reading it needs.
struct SignatureSource {
  std::string registry;                   // "myacr.azurecr.io"; empty: the image's own repository
  std::string repository;                 // "signatures/payments"
  std::vector<std::string> pull_secrets;  // signaturePullSecrets[].name
  std::string key() const;                // identifies the source for sharing fetches
};

// One attestation an authority requires (policy-controller `authorities[].attestations[]`): a
// verified in-toto statement of this predicate type, signed as the authority demands of
// signatures, whose subject is the admitted digest. policy/attestation.cpp.
struct Attestation {
  std::string name;            // attestations[i].name
  std::string predicate_type;  // as written: a URI or one of cosign's abbreviations
  std::string predicate_uri;   // what the statement's predicateType must equal
};

// cosign's `--type` abbreviations (cmd/cosign/cli/options/predicate.go PredicateTypeMap):
// "slsaprovenance" -> "https://slsa.dev/provenance/v0.2", ..., "custom" ->
// "https://cosign.sigstore.dev/attestation/v1"; anything else is returned as it is (a URI).
std::string predicate_uri(std::string_view predicate_type);

struct Authority {
  enum class Kind { key, keyless, static_pass, static_fail };
  std::string name;  // spec.authorities[i].name, or "authority-<i>"
  Kind kind = Kind::key;
  SignatureFormat format = SignatureFormat::any;
  // Empty: the image's own repository with the admission's credentials.
  std::vector<SignatureSource> sources;

  // key (from key.data, or from key_secret once resolve_secrets() has read it)
  std::optional<crypto::PublicKey> key;
  crypto::HashAlgorithm hash = crypto::HashAlgorithm::sha256;
  std::optional<crypto::HashAlgorithm> explicit_hash;  // key.hashAlgorithm, when given
  std::optional<SecretRef> key_secret;
  // key.kms, normalized ("azurekms://myvault.vault.azure.net/cosign[/<version>]"). The key is
  // not known at parse time: verify/ resolves it through its KeyResolver (Key Vault, in app/)
  // for each verification, with `hash` = explicit_hash or the key type's default.
  std::string kms;
  std::string static_message;  // for static fail
  // Non-empty: the authority passes on attestations (every one of these predicate types), not
  // on signatures, as policy-controller's does.
  std::vector<Attestation> attestations;

  // keyless
  std::vector<Identity> identities;
  std::string keyless_trust_root_ref;                   // keyless.trustRootRef
  std::optional<crypto::CertificateAuthority> ca_cert;  // keyless.ca-cert (instead of Fulcio)
  std::optional<SecretRef> ca_cert_secret;              // keyless.ca-cert.secretRef
  bool insecure_ignore_sct = false;

  // Rekor (`ctlog`): absent -> required for keyless, off for keys; `ctlog: {}` -> off;
  // with url and/or trustRootRef -> required.
  bool ctlog_present = false;
  std::string ctlog_url;
  std::string ctlog_trust_root_ref;
  // RFC 3161 timestamp authorities (`rfc3161timestamp.trustRootRef`).
  std::string tsa_trust_root_ref;

  // Filled by link_trust_roots(): the material the checks use.
  bool require_tlog = false;
  std::vector<crypto::CertificateAuthority> cas;
  std::vector<crypto::TransparencyLog> tlogs;
  std::vector<crypto::TransparencyLog> ctlogs;
  std::vector<crypto::CertificateAuthority> tsas;
  // Keyless: CA paths validated against `cas`, so each signature pays for its leaf's check
  // only (crypto::ChainCache). A new one at every link: it lives and dies with this trust
  // material; shared (and thread-safe) between copies of this authority.
  std::shared_ptr<crypto::ChainCache> chain_cache;
  bool linked = false;
};

struct Policy {
  std::string name;    // metadata.name
  std::string origin;  // "policies/prod.yaml document 2", for messages
  // Empty for a ClusterImagePolicy; an ImagePolicy's metadata.namespace (it applies only to
  // pods of that namespace, and can only add requirements).
  std::string namespace_scope;
  std::vector<Glob> globs;
  std::vector<Authority> authorities;
  Mode mode = Mode::enforce;
  // spec.requireDigest: an image this policy matches must be referenced by digest
  // (name@sha256:... or name:tag@sha256:...); a tag-only reference is refused (DIGEST_REQUIRED)
  // before any registry is asked. For clusters that forbid mutation (no /mutate pinning).
  bool require_digest = false;
  // Set on a policy that is in the cluster but cannot be enforced: its globs were read, its
  // authorities could not be built (a Secret missing or unreadable, a TrustRoot absent, a
  // field sigil refuses). It still matches as usual, and judge() fails every image it matches
  // with Unmet::unavailable (POLICY_UNAVAILABLE; a warning in warn mode): a policy that cannot
  // compile never silently drops out. One line saying why, never secret content; no authorities.
  std::optional<std::string> unavailable;
  // Which compiled content this is: unique in the process, never reused for other content.
  // Verdicts are cached under the ids of the policies that matched, so a policy carried
  // unchanged into a new set keeps its verdicts (app/compile_cluster.cpp carries one over when
  // its object generation, its Secrets and the TrustRoots are what they were), and editing one
  // policy leaves every other policy's verdicts alone. 0: none yet; PolicySet gives it a fresh
  // one. Whatever changes a Policy's content must set this back to 0 (resolve_secrets and
  // link_trust_roots do); never copy a Policy, change it and keep its id.
  uint64_t id = 0;
};

// A policy id no Policy of this process has had (Policy::id).
uint64_t fresh_policy_id() noexcept;

// A TrustRoot document (policy-controller's `spec.sigstoreKeys`), compiled.
struct TrustRootDocument {
  std::string name;
  std::string origin;
  std::shared_ptr<const crypto::TrustedRoot> root;
};

// Every document of one YAML text: ClusterImagePolicy, ImagePolicy and TrustRoot.
struct Documents {
  std::vector<Policy> policies;
  std::vector<TrustRootDocument> trust_roots;
};
Result<Documents> parse_documents(std::string_view yaml, std::string_view origin);

// What one policy document applies to, for a document parse_documents() refuses: its name,
// namespace scope, spec.images globs and mode (warn only when it says exactly `warn`), without
// authorities and without refusing fields sigil does not know. Fails when even those cannot
// be read (then the policy has nothing to match). The caller marks the result unavailable.
Result<Policy> parse_policy_scope(std::string_view yaml, std::string_view origin);

// What `kubectl apply` should warn about in a policy that is valid: a line per glob that selects
// by tag (Glob::selects_by_tag), since a Pod's author picks the tag of name:tag@digest and so
// which of such policies apply; at most kMaxScopeWarnings such lines, then one saying how many
// more. Each line names the policy and the glob (both cut short), under the API server's 256
// characters per warning.
inline constexpr size_t kMaxScopeWarnings = 4;
std::vector<std::string> scope_warnings(const Policy& p);

// Every Secret the policies refer to (key.secretRef, keyless.ca-cert.secretRef), with empty
// namespaces replaced by default_namespace. Duplicates removed.
std::vector<SecretRef> secret_refs(const std::vector<Policy>& policies,
                                   std::string_view default_namespace);

// Reads a Secret's data (values base64-decoded) for resolve_secrets(); errors name the Secret.
using SecretLookup = std::function<Result<std::map<std::string, std::string>>(
    const std::string& ns, const std::string& name)>;

// Fills keys and CAs from their Secrets: a public key is the data key `cosign.pub` (cosign's
// k8s:// convention) or the Secret's only key; a CA chain is `ca.crt`, `ca.pem` or the only
// key. Errors name the policy, the field and the Secret (never its content). With an empty
// lookup every secretRef is an error ("needs the Kubernetes API").
Status resolve_secrets(std::vector<Policy>& policies, const SecretLookup& lookup,
                       std::string_view default_namespace);

// The trust root keyless authorities use when they name none: `--trusted-root FILE`, or the
// sigstore public-good root shipped with sigil. Called at most once, and only when some
// authority needs it, so key-only policies never need any trust root (air-gapped clusters).
using DefaultTrustRoot = std::function<Result<std::shared_ptr<const crypto::TrustedRoot>>()>;

// Resolves every trustRootRef against roots (by name) or the default, and fills each
// authority's CAs, logs and TSAs. Errors name the policy, the authority and the reference:
// an unknown TrustRoot, a root without the CAs/logs an authority needs, a `ctlog.url` that no
// log of the root has, a keyless authority with neither a log nor a timestamp authority to
// prove its signing time.
Status link_trust_roots(std::vector<Policy>& policies, const std::vector<TrustRootDocument>& roots,
                        const DefaultTrustRoot& default_root);

// Parses every document in one YAML text. origin names the file in error messages, which read
// "<origin> document <n> (<name>): spec.authorities[0].key.data: <what is wrong>". The
// policies of parse_documents(), linked against the TrustRoots of the same text and no default
// root (for key-only use and tests).
Result<std::vector<Policy>> parse_policies(std::string_view yaml, std::string_view origin);

// The policy `sigil verify --key FILE` uses: named "cli-key", matching every image (`**`), one
// key authority with the key's default cosign hash. Fails if pem is not a supported public key.
Result<Policy> key_policy(std::string_view pem, std::string_view origin);

// The policy `sigil verify --certificate-identity[-regexp] --certificate-oidc-issuer[-regexp]`
// (and `sigil verify-bundle`) uses: named "cli-keyless", matching every image, one keyless
// authority with that identity (exactly one of subject / subject_regexp, and of issuer /
// issuer_regexp), Rekor and SCT required (unless insecure_ignore_sct). Not yet linked: call
// link_trust_roots with the default root.
Result<Policy> identity_policy(std::string_view subject, std::string_view subject_regexp,
                               std::string_view issuer, std::string_view issuer_regexp,
                               bool insecure_ignore_sct);

// An immutable snapshot. Requests hold a shared_ptr<const PolicySet> for their whole life.
class PolicySet {
 public:
  // Policies without an id get a fresh one, and so does any policy whose id an earlier one of
  // the same set has: two policies of one set never share an id.
  PolicySet(std::vector<Policy> policies, NoMatch no_match, uint64_t generation);
  // Every policy with at least one glob matching the image, in load order: the cluster-wide
  // ones and those scoped to `ns` (empty: cluster-wide ones only).
  std::vector<const Policy*> match(const oci::Reference& image, std::string_view ns = {}) const;
  // True when some policy is namespace-scoped (verdicts then depend on the namespace).
  bool has_namespaced() const noexcept { return has_namespaced_; }
  const std::vector<Policy>& policies() const noexcept { return policies_; }
  NoMatch no_match() const noexcept { return no_match_; }
  // The generation the caller numbered this set with (logs, status, metrics).
  uint64_t generation() const noexcept { return generation_; }
  // True when any matched policy needs signatures fetched (has a key or keyless authority and
  // is not unavailable).
  static bool needs_signatures(const std::vector<const Policy*>& matched);

 private:
  std::vector<Policy> policies_;
  NoMatch no_match_;
  uint64_t generation_;
  bool has_namespaced_ = false;
};

// Everything found for one image digest: legacy .sig layers and bundles, normalized, plus
// what could not be read (named in denials, never used).
struct Evidence {
  std::vector<crypto::SignedEntity> signatures;
  // Legacy cosign attestations (sha256-<hex>.att layers, DSSE). Bundles, attestations or not,
  // are all in `signatures`.
  std::vector<crypto::SignedEntity> attestations;
  std::vector<std::string> unreadable;  // "referrer sha256:ab…: bundle: unknown media type"
};

// Legacy .sig layers -> Evidence (unparsable certificate/bundle annotations go to unreadable).
Evidence evidence_from_legacy(const std::vector<crypto::Signature>& signatures);

// Why one policy does not admit an image digest, at the policy level. Typed, never a string:
// verify/ maps it (with crypto's failure) to the stable reason codes people see
// (verify/reason_map.hpp).
enum class Unmet {
  none,                 // satisfied
  unavailable,          // Policy::unavailable: the policy could not be compiled
  static_fail,          // a `static: fail` authority (it vetoes even a passing one's absence)
  unsupported_digest,   // the digest is not sha256: no key or keyless authority can check it
  no_authority,         // no authority can pass (unreachable for parsed policies)
  not_signed,           // no signature any authority could look at
  identity_mismatch,    // a keyless signature, proved, by an identity no authority accepts
  missing_attestation,  // no attestation of a required predicate type (none claims it)
  signature,  // signatures failed crypto's checks: PolicyResult::signature_failure says how
  internal,   // an unexpected failure while judging (fails closed)
  // Judging stopped before an authority passed (JudgeLimits): never a judgement of the image.
  check_budget,  // the admission's signature-check budget is spent
  out_of_time,   // the admission's deadline passed
};

// The outcome of one policy for one image digest.
struct PolicyResult {
  bool satisfied = false;
  std::string policy;
  // The authority that passed (satisfied), or whose failure message describes.
  std::string authority;
  Unmet unmet = Unmet::internal;  // Unmet::none exactly when satisfied
  // For Unmet::signature: how the most informative signature failed (never none).
  crypto::Failure signature_failure = crypto::Failure::none;
  std::string message;  // one readable phrase: why no authority passed
};

// Judges one policy against an image digest's signatures. Within one policy any authority may
// satisfy it (as in policy-controller, a static fail authority never passes but does not veto
// another authority that does). When none passes the result says, in this order: STATIC_FAIL,
// an unsupported digest, no signatures at all, else the failure that got furthest through the
// checks (a proved signer the authority does not accept comes just below a signature that binds
// another digest). digest is the admitted "sha256:..." digest. Never throws.
PolicyResult judge(const Policy& policy, std::string_view digest, const Evidence& evidence);
// The same, with each authority judged on the evidence of its own sources (nullptr: none).
using EvidenceFor = std::function<const Evidence*(const Authority&)>;
PolicyResult judge(const Policy& policy, std::string_view digest, const EvidenceFor& evidence_for);
// What one admission lets judging spend. Every signature or attestation check costs
// check_cost() units of `checks` before it runs, and `out_of_time` (called before each check)
// stops judging at the admission's deadline; either stops with Unmet::check_budget or
// Unmet::out_of_time, a refusal that names no signature. Without them, a tenant's 32
// authorities against a registry's 80 signatures is 2,560 checks for one image, seconds of a
// server thread. Defaults: no limit (the CLI, tests).
struct JudgeLimits {
  WorkBudget* checks = nullptr;
  std::function<bool()> out_of_time;  // the clock stays out of policy/
};
PolicyResult judge(const Policy& policy, std::string_view digest, const EvidenceFor& evidence_for,
                   const JudgeLimits& limits);
// What one check with authority `a` costs, in units of about one P-256 signature check (60 us
// here): 1 for P-256, Ed25519 and RSA up to 4096 bits; 8 for P-384; 6 for P-521; 4 and 16 for
// RSA up to 8192 and 16384 bits (verification is quadratic in the modulus); 20 for a keyless
// check (the leaf's chain, the signature, the SCT, the Rekor SET).
uint32_t check_cost(const Authority& a) noexcept;
// Legacy convenience: judge(policy, digest, evidence_from_legacy(signatures)).
PolicyResult judge(const Policy& policy, std::string_view digest,
                   const std::vector<crypto::Signature>& signatures);

// The crypto requirements of one linked authority (exposed for `sigil verify-bundle`).
crypto::Requirements requirements_for(const Authority& a);

}  // namespace sigil::policy
