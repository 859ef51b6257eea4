// verify/verdict.cpp: see verdict.hpp. The one place a verdict becomes text.
#include "verify/verdict.hpp"

#include <algorithm>
#include <cstdint>

#include "common/encoding.hpp"

namespace sigil::verify {

const char* name(Outcome o) noexcept {
  switch (o) {
    case Outcome::allowed:
      return "allowed";
    case Outcome::warned:
      return "warned";
    case Outcome::denied:
      return "denied";
  }
  return "denied";
}

std::string_view name(Reason r) noexcept {
  switch (r) {
    case Reason::none:
      return "";
    case Reason::not_signed:
      return "NOT_SIGNED";
    case Reason::bad_signature:
      return "BAD_SIGNATURE";
    case Reason::digest_mismatch:
      return "DIGEST_MISMATCH";
    case Reason::identity_mismatch:
      return "IDENTITY_MISMATCH";
    case Reason::missing_attestation:
      return "MISSING_ATTESTATION";
    case Reason::untrusted_certificate:
      return "UNTRUSTED_CERTIFICATE";
    case Reason::tlog_invalid:
      return "TLOG_INVALID";
    case Reason::sct_invalid:
      return "SCT_INVALID";
    case Reason::no_signing_time:
      return "NO_SIGNING_TIME";
    case Reason::timestamp_invalid:
      return "TIMESTAMP_INVALID";
    case Reason::malformed_signature:
      return "MALFORMED_SIGNATURE";
    case Reason::unsupported_signature:
      return "UNSUPPORTED_SIGNATURE";
    case Reason::unsupported_digest:
      return "UNSUPPORTED_DIGEST";
    case Reason::static_fail:
      return "STATIC_FAIL";
    case Reason::no_authority:
      return "NO_AUTHORITY";
    case Reason::invalid_image:
      return "INVALID_IMAGE";
    case Reason::invalid_review:
      return "INVALID_REVIEW";
    case Reason::no_matching_policy:
      return "NO_MATCHING_POLICY";
    case Reason::digest_required:
      return "DIGEST_REQUIRED";
    case Reason::not_pinned:
      return "NOT_PINNED";
    case Reason::warn:
      return "WARN";
    case Reason::policy_unavailable:
      return "POLICY_UNAVAILABLE";
    case Reason::image_not_found:
      return "IMAGE_NOT_FOUND";
    case Reason::registry_auth:
      return "REGISTRY_AUTH";
    case Reason::registry_unavailable:
      return "REGISTRY_UNAVAILABLE";
    case Reason::registry_integrity:
      return "REGISTRY_INTEGRITY";
    case Reason::timeout:
      return "TIMEOUT";
    case Reason::budget_exceeded:
      return "BUDGET_EXCEEDED";
    case Reason::internal:
      return "INTERNAL";
  }
  return "";
}

std::optional<Reason> reason_named(std::string_view code) noexcept {
  if (code.empty()) return std::nullopt;
  for (Reason r : kAllReasons) {
    if (name(r) == code) return r;
  }
  return std::nullopt;
}

bool is_transient(Reason r) noexcept {
  switch (r) {
    case Reason::policy_unavailable:
    case Reason::image_not_found:
    case Reason::registry_auth:
    case Reason::registry_unavailable:
    case Reason::registry_integrity:
    case Reason::timeout:
    case Reason::budget_exceeded:
    case Reason::internal:
      return true;
    case Reason::none:
    case Reason::not_signed:
    case Reason::bad_signature:
    case Reason::digest_mismatch:
    case Reason::identity_mismatch:
    case Reason::missing_attestation:
    case Reason::untrusted_certificate:
    case Reason::tlog_invalid:
    case Reason::sct_invalid:
    case Reason::no_signing_time:
    case Reason::timestamp_invalid:
    case Reason::malformed_signature:
    case Reason::unsupported_signature:
    case Reason::unsupported_digest:
    case Reason::static_fail:
    case Reason::no_authority:
    case Reason::invalid_image:
    case Reason::invalid_review:
    case Reason::no_matching_policy:
    case Reason::digest_required:
    case Reason::not_pinned:
    case Reason::warn:
      return false;
  }
  return true;  // out of range: never cached
}

int severity(Reason r) noexcept {
  switch (r) {
    case Reason::internal:
      return 100;
    case Reason::budget_exceeded:
      return 95;
    case Reason::timeout:
      return 94;
    case Reason::registry_auth:
      return 93;
    case Reason::registry_unavailable:
      return 92;
    case Reason::registry_integrity:
      return 91;
    case Reason::image_not_found:
      return 90;
    case Reason::policy_unavailable:
      return 80;
    case Reason::invalid_review:
      return 76;
    case Reason::invalid_image:
      return 75;
    case Reason::static_fail:
      return 70;
    case Reason::digest_required:
      return 65;
    case Reason::not_pinned:
      return 64;
    case Reason::no_matching_policy:
      return 60;
    case Reason::unsupported_digest:
      return 55;
    case Reason::no_authority:
      return 50;
    // Signature failures: the furthest through the checks first (as policy/ picks a policy's
    // most informative signature failure).
    case Reason::digest_mismatch:
      return 45;
    case Reason::identity_mismatch:
      return 44;
    case Reason::sct_invalid:
      return 43;
    case Reason::tlog_invalid:
      return 42;
    case Reason::timestamp_invalid:
      return 41;
    case Reason::no_signing_time:
      return 40;
    case Reason::untrusted_certificate:
      return 39;
    case Reason::bad_signature:
      return 38;
    case Reason::unsupported_signature:
      return 37;
    case Reason::malformed_signature:
      return 36;
    // Nothing of a required kind found: like NOT_SIGNED, after every failure of what was found.
    case Reason::missing_attestation:
      return 31;
    case Reason::not_signed:
      return 30;
    case Reason::warn:
      return 10;
    case Reason::none:
      return 0;
  }
  return 100;  // out of range: treated as a bug
}

Finding Verdict::primary() const {
  return Finding{reason, policy, authority, detail, false};
}

void Verdict::report(const Finding& f) {
  reason = f.reason;
  policy = f.policy;
  authority = f.authority;
  detail = f.detail;
}

Verdict denial(std::string image, Reason reason, std::string detail) {
  Verdict v;
  v.outcome = Outcome::denied;
  v.image = std::move(image);
  v.reason = reason;
  v.detail = std::move(detail);
  return v;
}

Reason reported_reason(const Verdict& v) noexcept {
  if (v.reason != Reason::none) return v.reason;
  switch (v.outcome) {
    case Outcome::denied:
      return Reason::internal;
    case Outcome::warned:
      return Reason::warn;
    case Outcome::allowed:
      return Reason::none;
  }
  return Reason::internal;
}

namespace {

// The phrase a refusal gives when its details are withheld.
std::string_view withheld_phrase(Reason r) {
  switch (r) {
    case Reason::not_signed:
      return "no signature found";
    case Reason::bad_signature:
      return "no signature verifies with the policy's authorities";
    case Reason::digest_mismatch:
      return "a valid signature names another image";
    case Reason::identity_mismatch:
      return "signed by an identity the policy does not accept";
    case Reason::missing_attestation:
      return "no verified attestation of a type the policy requires";
    case Reason::untrusted_certificate:
      return "the signing certificate is not trusted";
    case Reason::tlog_invalid:
      return "no valid transparency log entry";
    case Reason::sct_invalid:
      return "no valid certificate transparency proof";
    case Reason::no_signing_time:
      return "nothing proves when it was signed";
    case Reason::timestamp_invalid:
      return "its timestamp does not verify";
    default:
      return "its signatures do not satisfy the policy";
  }
}

// Whether a policy's refusal for r tells what sigil read in the registry (then it is withheld
// from a pod that could not read it). A static message and an unavailable policy do not.
bool tells_registry_content(Reason r) {
  return r != Reason::static_fail && r != Reason::policy_unavailable;
}

// An image reference as written, quoted when it holds anything a reference cannot (spaces,
// quotes, controls): a malformed one must not blur into the sentence around it.
std::string image_text(std::string_view image) {
  bool plain = !image.empty();
  for (char c : image) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-' || c == ':' || c == '/' || c == '@';
    plain = plain && ok;
  }
  if (plain) return std::string(image);
  return "\"" + printable(image, 300) + "\"";
}

// "spec.containers[0] (app)" -> "spec.containers[0] app": the list goes inside parentheses.
std::string containers_text(const std::vector<std::string>& containers) {
  if (containers.empty()) return {};
  std::string out = " (";
  bool first = true;
  for (const auto& c : containers) {
    if (!first) out += ", ";
    first = false;
    for (char ch : c) {
      if (ch != '(' && ch != ')') out += ch;
    }
  }
  return out + ")";
}

enum class Role { admit, refuse, warn };

std::string line(const Verdict& v, const Finding& f, Role role, bool with_containers) {
  std::string s = "image " + image_text(v.image);
  if (with_containers) s += containers_text(v.containers);
  const std::string digest = v.digest.empty() ? "" : " (" + short_digest(v.digest) + ")";
  switch (f.reason) {
    case Reason::none: {
      if (!v.withheld) s += digest;
      if (f.policy.empty()) {
        s += " admitted";
        break;
      }
      s += " admitted by ";
      auto by = [](const std::string& p, const std::string& a) {
        return a.empty() ? p : p + "/" + a;
      };
      s += by(f.policy, f.authority);
      for (const auto& other : v.also) s += ", " + by(other.policy, other.authority);
      break;
    }
    case Reason::no_matching_policy:
      s += " matches no ClusterImagePolicy";
      if (role == Role::admit) s += " (allowed by no-match-policy)";
      if (role == Role::refuse) s += ", and images without a policy are denied";
      break;
    case Reason::digest_required:
      s += " is referenced by tag; policy " + f.policy + " requires a digest (" + f.detail + ")";
      break;
    case Reason::not_pinned:
      s += " is referenced by tag and was not pinned to a digest by sigil's /mutate (pinning is "
           "on: its tag could not be resolved in time, or a later webhook changed the image); "
           "policy " +
           f.policy + " admits a Pod's image only pinned: retry, or write " + f.detail;
      break;
    default:
      if (f.policy.empty()) {
        s += ": " + f.detail;
      } else if (v.withheld && tells_registry_content(f.reason)) {
        s += " is not admitted by policy " + f.policy + ": " +
             std::string(withheld_phrase(f.reason)) +
             " (details withheld: sigil read this image with registry credentials the pod does "
             "not hold; see sigil's log)";
      } else {
        s += digest + " is not admitted by policy " + f.policy + ": " + f.detail;
      }
      break;
  }
  if (f.warn_mode) s += " (warn mode)";
  // A status message is one line.
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

// The first warning of a verdict admitted on a last-known-good one says so: "fetching
// signatures: registry R could not be reached or failed; admitted on a verdict from 12m ago
// (cache.staleIfError=1h)".
Finding stale_told(const Verdict& v, const Finding& w) {
  if (!v.stale) return w;
  Finding f = w;
  f.detail += "; admitted on a verdict from " + age_text(v.stale->age) +
              " ago (cache.staleIfError=" + duration_text(v.stale->grace) + ")";
  return f;
}

}  // namespace

std::string message(const Verdict& v) {
  switch (v.outcome) {
    case Outcome::allowed:
      return line(v, v.primary(), Role::admit, true);
    case Outcome::warned:
      if (!v.warnings.empty()) return line(v, stale_told(v, v.warnings.front()), Role::warn, true);
      return line(v, v.primary(), Role::warn, true);
    case Outcome::denied:
      break;
  }
  Finding first = v.primary();
  first.reason = reported_reason(v);
  if (first.detail.empty() && first.policy.empty() && first.reason != Reason::no_matching_policy) {
    first.detail = "denied (" + std::string(name(first.reason)) + ")";
  }
  std::string s = line(v, first, Role::refuse, true);
  for (const auto& f : v.also) s += "; " + line(v, f, Role::refuse, false);
  return s;
}

std::vector<std::string> warning_lines(const Verdict& v) {
  std::vector<std::string> out;
  out.reserve(v.warnings.size());
  for (const auto& w : v.warnings) {
    if (v.stale && &w == v.warnings.data()) {
      // What matters first: the API server shows warnings of 120 characters at most (the
      // server truncates), and the image reference is the long part. message() has it all.
      std::string s =
          v.stale->fresh.reason == Reason::timeout ? "registry timed out" : "registry unreachable";
      s += "; admitted on a verdict from " + age_text(v.stale->age) +
           " ago (cache.staleIfError=" + duration_text(v.stale->grace) +
           "): " + image_text(v.image);
      out.push_back(std::move(s));
      continue;
    }
    out.push_back(line(v, w, Role::warn, false));
  }
  return out;
}

std::string duration_text(std::chrono::milliseconds d) {
  const int64_t ms = std::max<int64_t>(0, d.count());
  if (ms % 1000 != 0) return std::to_string(ms) + "ms";
  const int64_t s = ms / 1000;
  if (s != 0 && s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s != 0 && s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

std::string age_text(std::chrono::milliseconds d) {
  const int64_t s = std::max<int64_t>(0, d.count()) / 1000;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m";
  const int64_t m = s % 3600 / 60;
  return std::to_string(s / 3600) + "h" + (m ? std::to_string(m) + "m" : std::string());
}

}  // namespace sigil::verify
