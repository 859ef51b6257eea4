// policy/evaluate.cpp: an image's signatures against one policy's authorities.
//
// Every signature (legacy .sig layer or bundle) is verified by crypto::verify_entity with the
// authority's requirements; a keyless signature that verifies must also come from one of the
// authority's identities. When nothing passes, the denial names the failure that got furthest
// through the checks, because that is the one a person can act on ("signed by the wrong
// workflow" says more than "some other signature did not verify").
#include <re2/re2.h>

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

#include "common/encoding.hpp"
#include "policy/policy.hpp"

namespace sigil::policy {

namespace {

const char* kind_word(const Authority& a) {
  return a.kind == Authority::Kind::keyless ? "keyless" : "key";
}

// How far a failure got, highest first; the most informative failure wins the denial.
int rank(std::string_view code) {
  static constexpr std::pair<std::string_view, int> kRanks[] = {
      {"DIGEST_MISMATCH", 100},      {"IDENTITY_MISMATCH", 90},     {"WRONG_TYPE", 80},
      {"SCT_INVALID", 70},           {"TLOG_INVALID", 60},          {"TIMESTAMP_INVALID", 55},
      {"NO_SIGNING_TIME", 50},       {"UNTRUSTED_CERTIFICATE", 40}, {"BAD_SIGNATURE", 30},
      {"UNSUPPORTED_SIGNATURE", 20}, {"MALFORMED_SIGNATURE", 10},
  };
  for (auto [c, r] : kRanks) {
    if (c == code) return r;
  }
  return 0;
}

std::string reason_for(crypto::Failure f) {
  switch (f) {
    case crypto::Failure::digest_mismatch:
      return "DIGEST_MISMATCH";
    case crypto::Failure::wrong_type:
      return "WRONG_TYPE";
    case crypto::Failure::sct:
      return "SCT_INVALID";
    case crypto::Failure::tlog:
      return "TLOG_INVALID";
    case crypto::Failure::timestamp:
      return "TIMESTAMP_INVALID";
    case crypto::Failure::no_signing_time:
      return "NO_SIGNING_TIME";
    case crypto::Failure::untrusted_certificate:
      return "UNTRUSTED_CERTIFICATE";
    case crypto::Failure::unsupported:
      return "UNSUPPORTED_SIGNATURE";
    case crypto::Failure::malformed:
      return "MALFORMED_SIGNATURE";
    case crypto::Failure::bad_signature:
    case crypto::Failure::none:
      break;
  }
  return "BAD_SIGNATURE";
}

struct Best {
  int rank = -1;
  std::string code;
  std::string message;
  std::string authority;
  void offer(std::string c, std::string m, const std::string& auth) {
    int r = policy::rank(c);
    if (r > rank) {
      rank = r;
      code = std::move(c);
      message = std::move(m);
      authority = auth;
    }
  }
};

bool format_allows(const Authority& a, const crypto::SignedEntity& e) {
  switch (a.format) {
    case SignatureFormat::any:
      return true;
    case SignatureFormat::legacy:
      return e.bundle_minor_version == 0;
    case SignatureFormat::bundle:
      return e.bundle_minor_version != 0;
  }
  return false;
}

std::string first_san(const crypto::CertificateIdentity& id) {
  return id.sans.empty() ? std::string("(no subject alternative name)") : id.sans.front().value;
}

}  // namespace

bool Identity::matches(const crypto::CertificateIdentity& id) const {
  try {
    bool issuer_ok = issuer_re ? RE2::FullMatch(id.issuer, *issuer_re) : id.issuer == issuer;
    if (!issuer_ok || id.issuer.empty()) return false;
    for (const auto& san : id.sans) {
      bool ok = subject_re ? RE2::FullMatch(san.value, *subject_re) : san.value == subject;
      if (ok) return true;
    }
  } catch (...) {
    // Allocation failure: no match (fails closed).
  }
  return false;
}

std::string Identity::describe() const {
  std::string s = issuer_re ? "issuer ~ " + issuer_regexp : "issuer " + issuer;
  s += subject_re ? ", subject ~ " + subject_regexp : ", subject " + subject;
  return s;
}

Evidence evidence_from_legacy(const std::vector<crypto::Signature>& signatures) {
  Evidence ev;
  for (const auto& sig : signatures) {
    auto e = crypto::entity_from_legacy(sig);
    if (e) {
      ev.signatures.push_back(std::move(*e));
    } else {
      ev.unreadable.push_back(sig.source + ": " + e.error().message);
    }
  }
  return ev;
}

crypto::Requirements requirements_for(const Authority& a) {
  crypto::Requirements req;
  if (a.kind == Authority::Kind::key && a.key) {
    req.key = &*a.key;
    req.key_hash = a.hash;
    req.min_signing_times = 0;
    req.require_sct = false;
  } else if (a.kind == Authority::Kind::keyless) {
    req.cas = &a.cas;
    req.require_sct = !a.insecure_ignore_sct;
    req.ctlogs = &a.ctlogs;
    req.min_signing_times = 1;
  }
  req.require_tlog = a.require_tlog;
  req.tlogs = &a.tlogs;
  req.tsas = &a.tsas;
  return req;
}

PolicyResult evaluate(const Policy& policy, std::string_view digest, const Evidence& evidence) {
  return evaluate(policy, digest, [&evidence](const Authority&) { return &evidence; });
}

PolicyResult evaluate(const Policy& policy, std::string_view digest,
                      const EvidenceFor& evidence_for) {
  PolicyResult r;
  r.policy = policy.name;
  try {
    if (policy.unavailable) {
      // A policy that could not be compiled denies what it matches; it never drops out. Like
      // every message here it follows "... is not admitted by policy <name>: ".
      r.reason_code = "POLICY_UNAVAILABLE";
      r.message = "the policy cannot be enforced yet: " + printable(*policy.unavailable, 400);
      return r;
    }
    const Authority* static_fail = nullptr;
    std::vector<const Authority*> checking;  // key and keyless authorities
    const bool digest_ok = digest.rfind("sha256:", 0) == 0 && oci::is_valid_digest(digest);
    Best best;
    size_t considered = 0;  // signatures some authority looked at
    std::vector<const Evidence*> looked_at;

    for (const auto& a : policy.authorities) {
      if (a.kind == Authority::Kind::static_pass) {
        r.satisfied = true;
        r.authority = a.name;
        return r;
      }
      if (a.kind == Authority::Kind::static_fail) {
        if (static_fail == nullptr) static_fail = &a;
        continue;
      }
      checking.push_back(&a);
      if (!digest_ok) continue;
      if (!a.linked) {
        best.offer("MALFORMED_SIGNATURE", "authority '" + a.name + "' has no trust material",
                   a.name);
        continue;
      }
      const crypto::Requirements req = requirements_for(a);
      crypto::Artifact artifact;
      artifact.kind = crypto::Artifact::Kind::image;
      artifact.digest = std::string(digest);
      size_t seen_here = 0;
      const Evidence* evidence = evidence_for ? evidence_for(a) : nullptr;
      if (evidence == nullptr) continue;
      if (std::find(looked_at.begin(), looked_at.end(), evidence) == looked_at.end()) {
        looked_at.push_back(evidence);
      }
      for (const auto& e : evidence->signatures) {
        if (!format_allows(a, e)) continue;
        ++seen_here;
        const crypto::VerifiedSignature v = crypto::verify_entity(e, req, artifact);
        // Keyless: who signed, once the certificate is proved, comes before what was signed. A
        // signer the authority does not accept is the denial even when its payload is also
        // unusable (an attestation, another image's digest): the authority never trusts it.
        const bool signer_known = v.ok || v.identity_proved;
        bool accepted_signer = a.kind == Authority::Kind::key;
        if (a.kind == Authority::Kind::keyless && signer_known) {
          for (const auto& id : a.identities)
            accepted_signer = accepted_signer || id.matches(v.identity);
          if (!accepted_signer) {
            std::string accepts;
            for (const auto& id : a.identities)
              accepts += (accepts.empty() ? "" : "; ") + id.describe();
            best.offer("IDENTITY_MISMATCH",
                       "signed by " + printable(first_san(v.identity)) + " (issuer " +
                           printable(v.identity.issuer.empty() ? "none" : v.identity.issuer) +
                           "), which keyless authority '" + a.name + "' does not accept (" +
                           accepts + ")",
                       a.name);
            continue;
          }
        }
        if (v.ok) {
          r.satisfied = true;
          r.authority = a.name;
          return r;
        }
        std::string code = reason_for(v.failure);
        std::string msg;
        if (v.failure == crypto::Failure::wrong_type) {
          msg = "signature verified with " + std::string(kind_word(a)) + " authority '" + a.name +
                "' but its payload is unusable: " + printable(v.message, 300);
        } else if (v.failure == crypto::Failure::digest_mismatch) {
          msg = "signature verified with " + std::string(kind_word(a)) + " authority '" + a.name +
                "' but is for " +
                short_digest(v.bound_digest.empty() ? "another digest" : v.bound_digest) +
                ", not this image (copied from another image?)";
        } else if (v.failure == crypto::Failure::bad_signature && a.kind == Authority::Kind::key) {
          msg.clear();  // summarized below with the count
        } else {
          msg = printable(v.message, 300) + " (" + e.source + ", " + kind_word(a) + " authority '" +
                a.name + "')";
        }
        best.offer(code, msg, a.name);
      }
      considered = std::max(considered, seen_here);
    }

    auto quoted_names = [&] {
      std::string s;
      bool all_key = true, all_keyless = true;
      for (std::size_t i = 0; i < checking.size(); ++i) {
        if (i) s += ", ";
        s += "'" + checking[i]->name + "'";
        all_key = all_key && checking[i]->kind == Authority::Kind::key;
        all_keyless = all_keyless && checking[i]->kind == Authority::Kind::keyless;
      }
      const char* kind = all_key ? "key " : all_keyless ? "keyless " : "";
      return std::string(kind) + (checking.size() == 1 ? "authority " : "authorities ") + s;
    };
    auto unreadable_note = [&] {
      std::vector<std::string> all;
      for (const Evidence* ev : looked_at) {
        all.insert(all.end(), ev->unreadable.begin(), ev->unreadable.end());
      }
      if (all.empty()) return std::string();
      return "; " + std::to_string(all.size()) + " signature" +
             (all.size() == 1 ? " could" : "s could") +
             " not be read: " + printable(all.front(), 200);
    };

    if (static_fail != nullptr) {
      r.reason_code = "STATIC_FAIL";
      r.authority = static_fail->name;
      r.message = "disallowed by static authority '" + static_fail->name + "'";
      if (!static_fail->static_message.empty()) r.message += ": " + static_fail->static_message;
    } else if (!checking.empty() && !digest_ok) {
      r.reason_code = "UNSUPPORTED_DIGEST";
      r.message = "digest \"" + short_digest(digest) + "\" is not a sha256 digest; " +
                  quoted_names() + " cannot be checked";
    } else if (checking.empty()) {
      // Unreachable for parsed policies (every authority is key, keyless or static).
      r.reason_code = "NO_AUTHORITY";
      r.message = "policy has no authority that can pass";
    } else if (considered == 0) {
      r.reason_code = "NOT_SIGNED";
      r.message = "no signatures found (" + quoted_names() + ")" + unreadable_note();
    } else if (best.code == "BAD_SIGNATURE" && best.message.empty()) {
      r.reason_code = "BAD_SIGNATURE";
      r.message = std::to_string(considered) +
                  (considered == 1 ? " signature found, it does not verify with "
                                   : " signatures found, none verifies with ") +
                  quoted_names() + unreadable_note();
    } else {
      // WRONG_TYPE only ranks: to people it is a bad signature (the payload is not ours).
      r.reason_code = best.code.empty() || best.code == "WRONG_TYPE" ? "BAD_SIGNATURE" : best.code;
      r.authority = best.authority;
      r.message =
          best.message.empty() ? "no signature verifies (" + quoted_names() + ")" : best.message;
    }
  } catch (...) {
    r.satisfied = false;
    r.reason_code = "INTERNAL";
    r.message = "internal error while evaluating policy";
  }
  return r;
}

PolicyResult evaluate(const Policy& policy, std::string_view digest,
                      const std::vector<crypto::Signature>& signatures) {
  return evaluate(policy, digest, evidence_from_legacy(signatures));
}

}  // namespace sigil::policy
