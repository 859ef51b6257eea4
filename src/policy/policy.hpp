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

namespace sigil::policy {

enum class Mode { enforce, warn };
enum class NoMatch { deny, warn, allow };
Result<NoMatch> parse_no_match(std::string_view s);  // "deny" | "warn" | "allow"

// A compiled image glob with policy-controller semantics.
class Glob {
 public:
  static Result<Glob> compile(std::string_view pattern);
  // image: a normalized reference name ("docker.io/library/nginx" or with tag/digest).
  bool matches(const oci::Reference& image) const;
  const std::string& pattern() const noexcept { return pattern_; }

 private:
  std::string pattern_;
  std::string normalized_;
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
  std::string authority;    // the authority that passed, when satisfied
  std::string reason_code;  // NOT_SIGNED, BAD_SIGNATURE, DIGEST_MISMATCH, STATIC_FAIL, ...
  std::string message;      // one readable phrase: why no authority passed
};

// Within one policy any authority may satisfy it. digest is the admitted "sha256:..." digest.
PolicyResult evaluate(const Policy& policy, std::string_view digest,
                      const std::vector<crypto::Signature>& signatures);

}  // namespace sigil::policy
