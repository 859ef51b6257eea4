// policy/attestation.cpp: `authorities[].attestations[]` (policy-controller's shape) read from
// YAML, cosign's predicate type abbreviations, and judging an image's attestations.
//
// An authority with attestations passes on attestations alone, as policy-controller's does:
// for each listed predicate type a DSSE in-toto statement must verify exactly as a signature of
// that authority would (crypto::verify_entity with requirements_for(): key or Fulcio chain,
// Rekor, SCT, RFC 3161 timestamps), come from one of its identities (keyless), and name the
// admitted digest as a subject (sha256). The predicate type is read from the verified
// statement, never from an annotation. `attestations[].policy` (CUE, Rego) is refused.
#include <algorithm>
#include <array>
#include <exception>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/encoding.hpp"
#include "crypto/dsse.hpp"
#include "policy/attestation_detail.hpp"
#include "policy/yaml_detail.hpp"

namespace sigil::policy {

namespace {

// cosign cmd/cosign/cli/options/predicate.go, PredicateTypeMap (cosign v3, in-toto-golang
// v0.11 constants), in the order of cosign's `--type` help.
constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kCosignPredicateTypes = {{
    {"slsaprovenance", "https://slsa.dev/provenance/v0.2"},
    {"slsaprovenance02", "https://slsa.dev/provenance/v0.2"},
    {"slsaprovenance1", "https://slsa.dev/provenance/v1"},
    {"link", "https://in-toto.io/Link/v1"},
    {"spdx", "https://spdx.dev/Document"},
    {"spdxjson", "https://spdx.dev/Document"},
    {"cyclonedx", "https://cyclonedx.org/bom"},
    {"vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"},
    {"openvex", "https://openvex.dev/ns"},
    {"custom", "https://cosign.sigstore.dev/attestation/v1"},
}};

bool is_abbreviation(std::string_view t) {
  return std::any_of(kCosignPredicateTypes.begin(), kCosignPredicateTypes.end(),
                     [t](const auto& p) { return p.first == t; });
}

// An absolute URI as Go's url.ParseRequestURI takes one in practice: a scheme
// (ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")), ':', something after it, no whitespace or control
// character.
bool is_absolute_uri(std::string_view t) {
  const size_t colon = t.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= t.size()) return false;
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!alpha(t[0])) return false;
  for (size_t i = 1; i < colon; ++i) {
    const char c = t[i];
    if (!alpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.') return false;
  }
  return std::none_of(t.begin(), t.end(),
                      [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
}

std::string abbreviations() {
  std::string s;
  for (const auto& [name, uri] : kCosignPredicateTypes) {
    if (!s.empty()) s += ", ";
    s += name;
  }
  return s;
}

}  // namespace

std::string predicate_uri(std::string_view predicate_type) {
  for (const auto& [name, uri] : kCosignPredicateTypes) {
    if (name == predicate_type) return std::string(uri);
  }
  return std::string(predicate_type);
}

namespace detail {

Result<std::vector<Attestation>> parse_attestations(const YAML::Node& node, const Where& w,
                                                    const std::string& path) {
  if (!node.IsSequence())
    return w.err(Errc::invalid_argument, path, "expected a list" + line_of(node));
  std::vector<Attestation> out;
  for (std::size_t i = 0; i < node.size(); ++i) {
    const std::string at = path + "[" + std::to_string(i) + "]";
    auto f = fields(node[i], w, at);
    if (!f) return f.error();
    if (auto st = check_fields(*f, w, at, {"name", "predicateType"},
                               {{"policy",
                                 "attestation policies (CUE, Rego) are not supported; sigil checks "
                                 "that a verified attestation of the predicate type exists, and "
                                 "nothing in its predicate"}});
        !st) {
      return st.error();
    }
    Attestation att;
    const auto* name = get(*f, "name");
    if (!name) return w.err(Errc::invalid_argument, at + ".name", "missing");
    auto n = scalar(*name, w, at + ".name");
    if (!n) return n.error();
    if (n->empty()) return w.err(Errc::invalid_argument, at + ".name", "empty");
    att.name = *n;
    const auto* type = get(*f, "predicateType");
    if (!type) return w.err(Errc::invalid_argument, at + ".predicateType", "missing");
    auto t = scalar(*type, w, at + ".predicateType");
    if (!t) return t.error();
    if (t->empty()) return w.err(Errc::invalid_argument, at + ".predicateType", "empty");
    if (!is_abbreviation(*t) && !is_absolute_uri(*t)) {
      // policy-controller only warns here; such a type can never match a statement, so every
      // image would be denied for it: say so when the policy is loaded instead.
      return w.err(Errc::invalid_argument, at + ".predicateType",
                   "\"" + printable(*t, 100) +
                       "\" is neither a URI nor one of cosign's predicate " + "types (" +
                       abbreviations() + ")");
    }
    att.predicate_type = *t;
    att.predicate_uri = predicate_uri(*t);
    for (const auto& other : out) {
      if (other.name == att.name) {
        return w.err(Errc::invalid_argument, at + ".name",
                     "\"" + att.name + "\" is used twice in this authority");
      }
    }
    out.push_back(std::move(att));
  }
  return out;
}

namespace {

// The predicate type a DSSE entity claims, before anything is verified (for messages only);
// "" when its payload is not an in-toto statement.
std::string claimed_predicate(const crypto::SignedEntity& e) {
  if (e.payload_type != crypto::kInTotoPayloadType) return {};
  auto st = crypto::parse_in_toto_statement(e.payload);
  return st ? st->predicate_type : std::string();
}

struct Miss {
  int rank = -1;
  Unmet unmet = Unmet::signature;
  crypto::Failure failure = crypto::Failure::bad_signature;
  std::string message;
  size_t count = 0;  // attestations claiming the type that failed
};

std::string describe_type(const Attestation& att) {
  std::string s = printable(att.predicate_uri, 200);
  if (att.predicate_type != att.predicate_uri) s += " (" + att.predicate_type + ")";
  return s;
}

}  // namespace

AttestationOutcome judge_attestations(const Authority& a, std::string_view digest,
                                      const Evidence& evidence, Meter& meter) {
  AttestationOutcome out;
  try {
    crypto::Requirements req = requirements_for(a);
    req.dsse_predicate = {};  // any predicate: each is matched against the wanted types below
    crypto::Artifact artifact;
    artifact.kind = crypto::Artifact::Kind::image;
    artifact.digest = std::string(digest);

    std::set<std::string> verified;      // predicate types of verified attestations
    std::map<std::string, Miss> missed;  // claimed predicate type -> best failure
    size_t candidates = 0;
    auto consider = [&](const crypto::SignedEntity& e) {
      if (e.kind != crypto::SignedEntity::Kind::dsse || !format_allows(a, e)) return;
      ++candidates;
      if (!meter.allow(a)) return;
      const std::string claimed = claimed_predicate(e);
      const crypto::VerifiedSignature v = crypto::verify_entity(e, req, artifact);
      Miss m;
      if (a.kind == Authority::Kind::keyless && (v.ok || v.identity_proved)) {
        bool accepted = false;
        for (const auto& id : a.identities) accepted = accepted || id.matches(v.identity);
        if (!accepted) {
          m.unmet = Unmet::identity_mismatch;
          m.failure = crypto::Failure::none;
          const std::string who =
              v.identity.sans.empty() ? "(no subject alternative name)" : v.identity.sans[0].value;
          m.message = "signed by " + printable(who) + " (issuer " +
                      printable(v.identity.issuer.empty() ? "none" : v.identity.issuer) +
                      "), whom keyless authority '" + a.name + "' does not accept";
        }
      }
      if (m.message.empty()) {
        if (v.ok) {
          verified.insert(claimed);
          return;
        }
        m.failure = v.failure;
        if (v.failure == crypto::Failure::digest_mismatch) {
          m.message = "an attestation verified with " + std::string(kind_word(a)) + " authority '" +
                      a.name + "' is about " +
                      short_digest(v.bound_digest.empty() ? "another digest" : v.bound_digest) +
                      ", not this image (copied from another image?)";
        } else if (v.failure == crypto::Failure::bad_signature) {
          m.message = "it does not verify with " + std::string(kind_word(a)) + " authority '" +
                      a.name + "' (" + e.source + ")";
        } else {
          m.message = printable(v.message, 300) + " (" + e.source + ", " + kind_word(a) +
                      " authority '" + a.name + "')";
        }
      }
      m.rank = progress(m.unmet, m.failure);
      Miss& best = missed[claimed];
      const size_t count = best.count + 1;
      if (m.rank > best.rank) best = std::move(m);
      best.count = count;
    };
    for (const auto& e : evidence.attestations) consider(e);
    for (const auto& e : evidence.signatures) consider(e);
    if (meter.stopped() != Unmet::none) {
      for (const auto& att : a.attestations) {
        if (verified.count(att.predicate_uri) != 0) continue;
        out.unmet = meter.stopped();  // judge() says why
        out.failure = crypto::Failure::none;
        return out;
      }
    }

    for (const auto& att : a.attestations) {
      if (verified.count(att.predicate_uri) != 0) continue;
      std::string msg = "no verified attestation of type " + describe_type(att) + " for " +
                        kind_word(a) + " authority '" + a.name + "'";
      if (auto it = missed.find(att.predicate_uri); it != missed.end()) {
        const Miss& m = it->second;
        out.unmet = m.unmet;
        out.failure = m.failure;
        msg += ": " + std::to_string(m.count) + " found, " + m.message;
      } else {
        out.unmet = Unmet::missing_attestation;
        out.failure = crypto::Failure::none;
        if (candidates == 0) {
          msg += ": no attestations found";
          if (!evidence.unreadable.empty()) {
            msg += " (" + std::to_string(evidence.unreadable.size()) +
                   " could not be read: " + printable(evidence.unreadable.front(), 200) + ")";
          }
        } else if (verified.empty()) {
          msg += ": " + std::to_string(candidates) + " attestation" +
                 (candidates == 1 ? " of another type" : "s of other types") +
                 " found, none verified";
        } else {
          std::string types;
          for (const auto& t : verified) {
            types += (types.empty() ? "" : ", ") + printable(t.empty() ? "(none)" : t, 120);
          }
          msg += ": verified attestations are of type " + types;
        }
      }
      out.message = std::move(msg);
      return out;
    }
    out.satisfied = true;
    out.unmet = Unmet::none;
    out.message.clear();
  } catch (const std::exception&) {
    out = AttestationOutcome{};
    out.unmet = Unmet::internal;
    out.message = "internal error while checking attestations";
  }
  return out;
}

}  // namespace detail
}  // namespace sigil::policy
