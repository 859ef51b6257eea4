// policy/policy.hpp: ClusterImagePolicy documents -> validated, compiled, immutable PolicySet.
//
// Role: parse multi-document YAML in sigstore policy-controller's ClusterImagePolicy schema
// (apiVersion sigil.dev/v1alpha1, policy.sigstore.dev/v1beta1 or v1alpha1), validate every
// field (unsupported ones are errors, never ignored), compile globs and keys once, and evaluate
// an image's signatures against a policy's authorities. Pure: common, crypto, oci, yaml-cpp;
// no I/O (callers read files), no clock, no Asio.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "crypto/cosign.hpp"
#include "crypto/keys.hpp"
#include "oci/reference.hpp"

namespace re2 {
class RE2;
}  // namespace re2

namespace sigil::policy {

enum class Mode { enforce, warn };
enum class NoMatch { deny, warn, allow };
Result<NoMatch> parse_no_match(std::string_view s);  // "deny" | "warn" | "allow"

// A compiled image glob with policy-controller semantics (see policy.cpp for the full rules):
// `*` matches within one path component (no `/`), `**` across components, `?` one character
// other than `/`, everything else literally; the glob must match a whole candidate string.
// The candidates for an image are its repository name and that name with its tag and/or
// digest, each spelled with the registry as written by users: for Docker Hub images
// `index.docker.io/library/nginx`, `docker.io/library/nginx`, `library/nginx` and `nginx`.
// Matching compiles to an anchored RE2 regex, linear in the input.
class Glob {
 public:
  static Result<Glob> compile(std::string_view pattern);
  bool matches(const oci::Reference& image) const;
  const std::string& pattern() const noexcept { return pattern_; }
  // The pattern after policy-controller's rewrites ("*" -> "index.docker.io/library/*").
  const std::string& normalized() const noexcept { return normalized_; }

 private:
  std::string pattern_;
  std::string normalized_;
  std::shared_ptr<const re2::RE2> re_;
};

struct Authority {
  enum class Kind { key, static_pass, static_fail };
  std::string name;  // spec.authorities[i].name, or "authority-<i>"
  Kind kind = Kind::key;
  std::optional<crypto::PublicKey> key;
  crypto::HashAlgorithm hash = crypto::HashAlgorithm::sha256;
  std::string static_message;  // for static fail
};

struct Policy {
  std::string name;    // metadata.name
  std::string origin;  // "policies/prod.yaml document 2", for messages
  std::vector<Glob> globs;
  std::vector<Authority> authorities;
  Mode mode = Mode::enforce;
};

// Parses every document in one YAML text. origin names the file in error messages, which read
// "<origin> document <n> (<name>): spec.authorities[0].key.data: <what is wrong>".
Result<std::vector<Policy>> parse_policies(std::string_view yaml, std::string_view origin);

// The policy `sigil verify --key FILE` uses: named "cli-key", matching every image (`**`), one
// key authority with the key's default cosign hash. Fails if pem is not a supported public key.
Result<Policy> key_policy(std::string_view pem, std::string_view origin);

// An immutable snapshot. Requests hold a shared_ptr<const PolicySet> for their whole life.
class PolicySet {
 public:
  PolicySet(std::vector<Policy> policies, NoMatch no_match, uint64_t generation);
  // Every policy with at least one glob matching the image, in load order.
  std::vector<const Policy*> match(const oci::Reference& image) const;
  const std::vector<Policy>& policies() const noexcept { return policies_; }
  NoMatch no_match() const noexcept { return no_match_; }
  uint64_t generation() const noexcept { return generation_; }
  // True when any matched policy needs signatures fetched (has a key authority).
  static bool needs_signatures(const std::vector<const Policy*>& matched);

 private:
  std::vector<Policy> policies_;
  NoMatch no_match_;
  uint64_t generation_;
};

// The outcome of one policy for one image digest.
struct PolicyResult {
  bool satisfied = false;
  std::string policy;
  std::string authority;  // the authority that passed, when satisfied
  // NOT_SIGNED (no signatures at all), DIGEST_MISMATCH (a signature verified with a trusted
  // key but binds another digest), BAD_SIGNATURE (signatures exist, none verifies with any key
  // authority, or a verified payload is malformed), STATIC_FAIL, UNSUPPORTED_DIGEST.
  std::string reason_code;
  std::string message;  // one readable phrase: why no authority passed
};

// Within one policy any authority may satisfy it (as in policy-controller, a static fail
// authority never passes but does not veto another authority that does). When none passes the
// result carries the most informative reason: STATIC_FAIL, then NOT_SIGNED, DIGEST_MISMATCH,
// BAD_SIGNATURE. digest is the admitted "sha256:..." digest.
PolicyResult evaluate(const Policy& policy, std::string_view digest,
                      const std::vector<crypto::Signature>& signatures);

}  // namespace sigil::policy
