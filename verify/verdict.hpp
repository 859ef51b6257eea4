// verify/verdict.hpp: what verification answers for one image, and the one line it says.
//
// Role: the Verdict value shared by the engine, the server and the command line: allowed,
// denied or warned, with a typed Reason and the structured facts behind it (image, the pod's
// containers, policy, authority, detail, digest, whether details are withheld). A denial is a
// value, not an error. The one-line message a person reads is rendered from those fields here
// and nowhere else (message(), warning_lines()), so no code parses or patches message text, and
// a cached or shared verdict names whichever image asked by construction. Reason names are an
// API (logs, audit annotations, README.md's table, users' alerts): name() never changes for an
// existing reason. Small on purpose: the server links this (sigil::verdict), not the engine.
// Depends on common only.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sigil::verify {

enum class Outcome { allowed, denied, warned };

// Why an image was denied or warned about. README.md's reason table lists every one but none
// (tests/unit/verify/verdict_test.cpp checks). Add one here, to name(), is_transient(),
// severity() and kAllReasons (the compiler insists on the switches), and to the README.
enum class Reason : uint8_t {
  none,  // admitted by its policies: nothing to report

  // Judgements about the image's signatures (policy/ and crypto/ decided them).
  not_signed,           // NOT_SIGNED: no signature at all for the digest
  bad_signature,        // BAD_SIGNATURE: signatures exist, none verifies
  digest_mismatch,      // DIGEST_MISMATCH: a valid signature binds another digest
  identity_mismatch,    // IDENTITY_MISMATCH: a valid keyless signature by an identity not accepted
  missing_attestation,  // MISSING_ATTESTATION: no attestation of a required predicate type
  untrusted_certificate,  // UNTRUSTED_CERTIFICATE: no chain to a trusted CA, or no code signing
  tlog_invalid,           // TLOG_INVALID: no valid transparency log entry for the signature
  sct_invalid,            // SCT_INVALID: no valid embedded SCT
  no_signing_time,        // NO_SIGNING_TIME: keyless, nothing proves when it was signed
  timestamp_invalid,      // TIMESTAMP_INVALID: an RFC 3161 timestamp does not verify
  malformed_signature,    // MALFORMED_SIGNATURE: the signature material does not parse
  unsupported_signature,  // UNSUPPORTED_SIGNATURE: a valid format sigil cannot verify
  unsupported_digest,     // UNSUPPORTED_DIGEST: the digest is not sha256
  static_fail,            // STATIC_FAIL: a `static: fail` authority
  no_authority,           // NO_AUTHORITY: the policy has no authority that can pass

  // About the reference and the policy set.
  invalid_image,       // INVALID_IMAGE: the reference does not parse, or its digest is not sha256
  invalid_review,      // INVALID_REVIEW: the AdmissionReview cannot be read (over sigil's caps)
  no_matching_policy,  // NO_MATCHING_POLICY: no ClusterImagePolicy matches (no-match setting)
  digest_required,     // DIGEST_REQUIRED: referenced by tag, and a policy requires a digest
  not_pinned,  // NOT_PINNED: a Pod's new image by tag, with pinning on: /mutate did not pin it
  warn,        // WARN: admitted, but a warn-mode policy is not satisfied

  // About the moment, not the image: never cached (is_transient).
  policy_unavailable,    // POLICY_UNAVAILABLE: a matching policy cannot be compiled now
  image_not_found,       // IMAGE_NOT_FOUND: the registry has no such tag or digest
  registry_auth,         // REGISTRY_AUTH: the registry refused the credentials
  registry_unavailable,  // REGISTRY_UNAVAILABLE: the registry failed or could not be reached
  registry_integrity,    // REGISTRY_INTEGRITY: the registry served content that fails the checks
  timeout,               // TIMEOUT: not finished before the webhook deadline
  budget_exceeded,       // BUDGET_EXCEEDED: the admission's (or process') byte budget is spent
  internal,              // INTERNAL: a bug or an unexpected failure; fails closed
};

inline constexpr Reason kAllReasons[] = {
    Reason::none,
    Reason::not_signed,
    Reason::bad_signature,
    Reason::digest_mismatch,
    Reason::identity_mismatch,
    Reason::missing_attestation,
    Reason::untrusted_certificate,
    Reason::tlog_invalid,
    Reason::sct_invalid,
    Reason::no_signing_time,
    Reason::timestamp_invalid,
    Reason::malformed_signature,
    Reason::unsupported_signature,
    Reason::unsupported_digest,
    Reason::static_fail,
    Reason::no_authority,
    Reason::invalid_image,
    Reason::invalid_review,
    Reason::no_matching_policy,
    Reason::digest_required,
    Reason::not_pinned,
    Reason::warn,
    Reason::policy_unavailable,
    Reason::image_not_found,
    Reason::registry_auth,
    Reason::registry_unavailable,
    Reason::registry_integrity,
    Reason::timeout,
    Reason::budget_exceeded,
    Reason::internal,
};

// The outcome as logs, audit entries and metric labels spell it: "allowed", "warned",
// "denied".
const char* name(Outcome o) noexcept;
// The stable code ("NOT_SIGNED", ...); "" for Reason::none and for a value out of range.
std::string_view name(Reason r) noexcept;
// The Reason whose name() is code, if any (not none).
std::optional<Reason> reason_named(std::string_view code) noexcept;
// True for reasons that describe the moment (registry, deadline, budget, a policy that cannot
// be compiled now, a bug), not the image: such verdicts are never cached, and the next
// admission tries again.
bool is_transient(Reason r) noexcept;
// Which reason a verdict reports first when several policies refuse one image: the higher
// first. Every transient reason outranks every other (so a denial's reported reason says
// whether it may be cached): the moment (a bug, the budget, the deadline, the registry, a policy
// that cannot be enforced now) outranks a judgement, which may rest on what could not be read;
// a deliberate static fail outranks what signatures say; among signature failures, the one that
// got furthest through the checks (it is the one a person can act on); NOT_SIGNED last.
int severity(Reason r) noexcept;

// One policy's (or the engine's) judgement about an image, without the image: the Verdict
// names the image when it is rendered.
struct Finding {
  Reason reason = Reason::internal;
  std::string policy;      // the policy it is about; "" for the engine's own (registry, no match)
  std::string authority;   // the authority that passed, or whose failure detail describes
  std::string detail;      // one phrase: "no signatures found (key authority 'release-key')"
  bool warn_mode = false;  // from a warn-mode policy (or softened by one): warns, never denies
};

struct Verdict {
  Outcome outcome = Outcome::denied;  // a default Verdict is a denial (fails closed)
  std::string image;                  // as written in the pod spec
  // Where the pod uses the image, as admission/ names them ("spec.containers[0] (app)"); the
  // validator fills them.
  std::vector<std::string> containers;
  std::string digest;  // the digest verified (the tag resolved once), when known
  // sigil read the image's signatures with registry credentials of its own that the pod does
  // not hold: a denial withholds the digest and what the signatures say (the pod's creator could
  // not read them). The detail is kept here for sigil's log and the command line.
  bool withheld = false;

  // What the verdict reports: for a denial the most severe refusal; for a warning the first
  // warning's policy with Reason::warn (or the reason a registry failure, the no-match setting or
  // requireDigest gave); for an allow Reason::none and the satisfied policy and authority (or
  // NO_MATCHING_POLICY when admitted without one). A denial left without one reports INTERNAL
  // (reported_reason).
  Reason reason = Reason::none;
  std::string policy;
  std::string authority;
  std::string detail;
  // Denied: the other policies that refuse the image, most severe first. Allowed: the other
  // satisfied policies.
  std::vector<Finding> also;
  std::vector<Finding> warnings;  // warn-mode refusals and the no-match warning

  bool cached = false;
  // Engine::verify_cached found the digest of a tag in the pinning tag cache (for counting it
  // when the synchronous path answers: Engine::count_answered_now).
  bool tag_cached = false;
  // False when the verdict rests on something that must not be remembered: a guess about the
  // registry (an ambiguous referrers answer), whatever the outcome.
  bool cacheable = true;

  // Set when the image is admitted on a last-known-good verdict (`cache.staleIfError`,
  // verify/stale.hpp): the verification just made could not reach the registry (`fresh`:
  // REGISTRY_UNAVAILABLE or TIMEOUT, and its detail), and an allow for the same digest and
  // policies, `age` old, stands in. Such a verdict is warned (its reported reason is
  // fresh.reason) and never cached; warning_lines() and message() say so in one line.
  struct Stale {
    Finding fresh;
    std::chrono::milliseconds age{0};
    std::chrono::milliseconds grace{0};  // the setting, for the warning
  };
  std::optional<Stale> stale;

  // The reported finding (reason, policy, authority, detail).
  Finding primary() const;
  // Sets the reported finding.
  void report(const Finding& f);
};

// A denial for reason with detail, about image (the engine's, the validator's own).
Verdict denial(std::string image, Reason reason, std::string detail);

// The reason a verdict reports: v.reason, except that a denial without one is INTERNAL and a
// warning without one is WARN.
Reason reported_reason(const Verdict& v) noexcept;

// The one line a person reads: "image <image> (<containers>) (<digest>) is not admitted by
// policy <policy>: <detail>", "image <image>: <detail>", "image <image> (<digest>) admitted by
// <policy>/<authority>", ... Several refusing policies are joined with "; ". Never empty, never
// more than one line.
std::string message(const Verdict& v);
// One line per warning (without the containers: warnings are short), "(warn mode)" marked; a
// verdict admitted on a last-known-good one (Verdict::stale) says so first, and how old it is:
// "registry unreachable; admitted on a verdict from 12m ago (cache.staleIfError=1h): <image>".
std::vector<std::string> warning_lines(const Verdict& v);

// A setting as written: "1h", "90m", "2s", "1500ms".
std::string duration_text(std::chrono::milliseconds d);
// An age, rounded down for people: "45s", "12m", "1h30m".
std::string age_text(std::chrono::milliseconds d);

}  // namespace sigil::verify
