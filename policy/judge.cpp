// policy/judge.cpp: an image's signatures against one policy's authorities (policy::judge).
//
// Every signature (legacy .sig layer or bundle) is verified by crypto::verify_entity with the
// authority's requirements; a keyless signature that verifies must also come from one of the
// authority's identities. When nothing passes, the denial names the failure that got furthest
// through the checks, because that is the one a person can act on ("signed by the wrong
// workflow" says more than "some other signature did not verify").
#include <re2/re2.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <string>
#include <utility>

#include "common/encoding.hpp"
#include "policy/attestation_detail.hpp"
#include "policy/policy.hpp"

namespace sigil::policy {

namespace {

// One refusal a signature earned: a crypto failure, or a proved signer no authority accepts.
struct Refusal {
  Unmet unmet = Unmet::signature;  // signature or identity_mismatch
  crypto::Failure failure = crypto::Failure::bad_signature;
};

int progress(const Refusal& r) {
  return detail::progress(r.unmet, r.failure);
}

struct Best {
  int rank = -1;
  std::optional<Refusal> refusal;
  std::string message;
  std::string authority;
  void offer(Refusal r, std::string m, const std::string& auth) {
    const int p = progress(r);
    if (p > rank) {
      rank = p;
      refusal = r;
      message = std::move(m);
      authority = auth;
    }
  }
};

std::string first_san(const crypto::CertificateIdentity& id) {
  return id.sans.empty() ? std::string("(no subject alternative name)") : id.sans.front().value;
}

}  // namespace

const char* detail::kind_word(const Authority& a) {
  return a.kind == Authority::Kind::keyless ? "keyless" : "key";
}

bool detail::format_allows(const Authority& a, const crypto::SignedEntity& e) {
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

// How far a signature got through the checks, highest first: the most informative refusal wins
// the policy's denial. A proved signer the authority does not accept ranks just below a
// signature that binds another digest (the signer is wrong whatever it signed); an attestation
// authority whose signer verified but whose predicate type is absent just below that.
int detail::progress(Unmet unmet, crypto::Failure failure) {
  if (unmet == Unmet::identity_mismatch) return 90;
  if (unmet == Unmet::missing_attestation) return 85;
  switch (failure) {
    case crypto::Failure::digest_mismatch:
      return 100;
    case crypto::Failure::wrong_type:
      return 80;
    case crypto::Failure::sct:
      return 70;
    case crypto::Failure::tlog:
      return 60;
    case crypto::Failure::timestamp:
      return 55;
    case crypto::Failure::no_signing_time:
      return 50;
    case crypto::Failure::untrusted_certificate:
      return 40;
    case crypto::Failure::bad_signature:
      return 30;
    case crypto::Failure::unsupported:
      return 20;
    case crypto::Failure::malformed:
      return 10;
    case crypto::Failure::none:
      return 0;
  }
  return 0;
}

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
    req.chain_cache = a.chain_cache.get();
    req.require_sct = !a.insecure_ignore_sct;
    req.ctlogs = &a.ctlogs;
    req.min_signing_times = 1;
  }
  req.require_tlog = a.require_tlog;
  req.tlogs = &a.tlogs;
  req.tsas = &a.tsas;
  return req;
}

uint32_t check_cost(const Authority& a) noexcept {
  if (a.kind == Authority::Kind::keyless) return 20;
  if (a.kind != Authority::Kind::key || !a.key) return 1;
  switch (a.key->type()) {
    case crypto::KeyType::ecdsa_p256:
    case crypto::KeyType::ed25519:
      return 1;
    case crypto::KeyType::ecdsa_p384:
      return 8;
    case crypto::KeyType::ecdsa_p521:
      return 6;
    case crypto::KeyType::rsa: {
      const int bits = a.key->bits();
      return bits <= 4096 ? 1 : bits <= 8192 ? 4 : 16;
    }
  }
  return 16;
}

namespace detail {

bool Meter::allow(const Authority& a) {
  if (stopped_ != Unmet::none) return false;
  if (limits_.out_of_time && limits_.out_of_time()) {
    stopped_ = Unmet::out_of_time;
    return false;
  }
  if (limits_.checks != nullptr && !limits_.checks->try_spend(check_cost(a))) {
    stopped_ = Unmet::check_budget;
    return false;
  }
  ++checks_;
  return true;
}

}  // namespace detail

PolicyResult judge(const Policy& policy, std::string_view digest, const Evidence& evidence) {
  return judge(policy, digest, [&evidence](const Authority&) { return &evidence; });
}

PolicyResult judge(const Policy& policy, std::string_view digest, const EvidenceFor& evidence_for) {
  static const JudgeLimits unlimited;
  return judge(policy, digest, evidence_for, unlimited);
}

PolicyResult judge(const Policy& policy, std::string_view digest, const EvidenceFor& evidence_for,
                   const JudgeLimits& limits) {
  PolicyResult r;
  r.policy = policy.name;
  detail::Meter meter(limits);
  // The policy is satisfied by authority a.
  const auto passed_by = [&r](const Authority& a) {
    r.satisfied = true;
    r.unmet = Unmet::none;
    r.authority = a.name;
    return r;
  };
  try {
    if (policy.unavailable) {
      // A policy that could not be compiled denies what it matches; it never drops out. Like
      // every message here it follows "... is not admitted by policy <name>: ".
      r.unmet = Unmet::unavailable;
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
      if (a.kind == Authority::Kind::static_pass) return passed_by(a);
      if (a.kind == Authority::Kind::static_fail) {
        if (static_fail == nullptr) static_fail = &a;
        continue;
      }
      checking.push_back(&a);
      if (!digest_ok) continue;
      if (!a.linked) {
        best.offer({Unmet::signature, crypto::Failure::malformed},
                   "authority '" + a.name + "' has no trust material", a.name);
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
      if (!a.attestations.empty()) {
        // Attestations instead of signatures (policy-controller): attestation.cpp.
        auto o = detail::judge_attestations(a, digest, *evidence, meter);
        if (o.satisfied) return passed_by(a);
        if (meter.stopped() != Unmet::none) break;
        best.offer({o.unmet, o.failure}, o.message, a.name);
        considered = std::max<size_t>(considered, 1);  // its message says what was found
        continue;
      }
      for (const auto& e : evidence->signatures) {
        if (!detail::format_allows(a, e)) continue;
        ++seen_here;
        if (!meter.allow(a)) break;
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
            best.offer({Unmet::identity_mismatch, crypto::Failure::none},
                       "signed by " + printable(first_san(v.identity)) + " (issuer " +
                           printable(v.identity.issuer.empty() ? "none" : v.identity.issuer) +
                           "), which keyless authority '" + a.name + "' does not accept (" +
                           accepts + ")",
                       a.name);
            continue;
          }
        }
        if (v.ok) return passed_by(a);
        std::string msg;
        if (v.failure == crypto::Failure::wrong_type) {
          msg = "signature verified with " + std::string(detail::kind_word(a)) + " authority '" +
                a.name + "' but its payload is unusable: " + printable(v.message, 300);
        } else if (v.failure == crypto::Failure::digest_mismatch) {
          msg = "signature verified with " + std::string(detail::kind_word(a)) + " authority '" +
                a.name + "' but is for " +
                short_digest(v.bound_digest.empty() ? "another digest" : v.bound_digest) +
                ", not this image (copied from another image?)";
        } else if (v.failure == crypto::Failure::bad_signature && a.kind == Authority::Kind::key) {
          msg.clear();  // summarized below with the count
        } else {
          msg = printable(v.message, 300) + " (" + e.source + ", " + detail::kind_word(a) +
                " authority '" + a.name + "')";
        }
        best.offer({Unmet::signature, v.failure}, msg, a.name);
      }
      considered = std::max(considered, seen_here);
      if (meter.stopped() != Unmet::none) break;
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

    if (meter.stopped() != Unmet::none) {
      // Judging stopped before every authority was looked at: a static one further on still
      // decides as it would have (a pass admits, a fail is the reason).
      for (const auto& a : policy.authorities) {
        if (a.kind == Authority::Kind::static_pass) return passed_by(a);
        if (a.kind == Authority::Kind::static_fail && static_fail == nullptr) static_fail = &a;
      }
    }
    if (static_fail == nullptr && meter.stopped() != Unmet::none) {
      // Not a judgement of the image: no authority passed before judging had to stop.
      r.unmet = meter.stopped();
      const std::string done = std::to_string(meter.checks()) + " signature check" +
                               (meter.checks() == 1 ? "" : "s") + " under this policy";
      if (r.unmet == Unmet::out_of_time) {
        r.message = "the webhook deadline passed while checking signatures (" + done + ")";
      } else if (limits.checks->share_refused()) {
        const RateBudget& share = *limits.checks->share();
        r.message = "stopped checking signatures: the namespace's share of signature checks (" +
                    std::to_string(share.per_second()) + " check units a second, " +
                    std::to_string(share.burst()) + " at once) is spent for now (" + done +
                    "; too many new images, policies, authorities or signatures from one "
                    "namespace at once)";
      } else {
        r.message = "stopped checking signatures: the admission's budget of " +
                    std::to_string(limits.checks->limit()) + " check units is spent (" + done +
                    "; too many policies, authorities or signatures for one admission)";
      }
    } else if (static_fail != nullptr) {
      r.unmet = Unmet::static_fail;
      r.authority = static_fail->name;
      r.message = "disallowed by static authority '" + static_fail->name + "'";
      if (!static_fail->static_message.empty()) r.message += ": " + static_fail->static_message;
    } else if (!checking.empty() && !digest_ok) {
      r.unmet = Unmet::unsupported_digest;
      r.message = "digest \"" + short_digest(digest) + "\" is not a sha256 digest; " +
                  quoted_names() + " cannot be checked";
    } else if (checking.empty()) {
      // Unreachable for parsed policies (every authority is key, keyless or static).
      r.unmet = Unmet::no_authority;
      r.message = "policy has no authority that can pass";
    } else if (considered == 0) {
      r.unmet = Unmet::not_signed;
      r.message = "no signatures found (" + quoted_names() + ")" + unreadable_note();
    } else if (best.refusal && best.refusal->unmet == Unmet::signature &&
               best.refusal->failure == crypto::Failure::bad_signature && best.message.empty()) {
      r.unmet = Unmet::signature;
      r.signature_failure = crypto::Failure::bad_signature;
      r.message = std::to_string(considered) +
                  (considered == 1 ? " signature found, it does not verify with "
                                   : " signatures found, none verifies with ") +
                  quoted_names() + unreadable_note();
    } else {
      r.unmet = best.refusal ? best.refusal->unmet : Unmet::signature;
      r.signature_failure = best.refusal ? best.refusal->failure : crypto::Failure::bad_signature;
      // A failure that names none (a bug below) is still a bad signature, never a pass.
      if (r.unmet == Unmet::signature && r.signature_failure == crypto::Failure::none) {
        r.signature_failure = crypto::Failure::bad_signature;
      }
      r.authority = best.authority;
      r.message =
          best.message.empty() ? "no signature verifies (" + quoted_names() + ")" : best.message;
    }
  } catch (...) {
    r.satisfied = false;
    r.unmet = Unmet::internal;
    r.message = "internal error while evaluating policy";
  }
  return r;
}

PolicyResult judge(const Policy& policy, std::string_view digest,
                   const std::vector<crypto::Signature>& signatures) {
  return judge(policy, digest, evidence_from_legacy(signatures));
}

}  // namespace sigil::policy
