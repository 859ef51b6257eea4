// crypto/sigstore.cpp: verify_entity, one function per step of cosign's verification layering
// (numbered as in sigstore.hpp): what was fetched (read_signed_bytes, read_verifying_key), the
// signature (4, check_signature, first because it is cheapest), the tlog entries (2,
// check_tlog_entries), the signing times (1, check_timestamps, check_signing_times), the
// certificate chain, its validity at those times, and its SCT (3, check_certificate), and the
// claims (5, check_claims). Each step's failure is a distinct Failure so that policy/ can tell
// a person which link broke.
#include "crypto/sigstore.hpp"

#include <algorithm>
#include <exception>
#include <utility>

#include "common/encoding.hpp"
#include "crypto/dsse.hpp"
#include "crypto/sct.hpp"
#include "crypto/tsa.hpp"

namespace sigil::crypto {

namespace {

VerifiedSignature fail(Failure f, std::string message) {
  VerifiedSignature v;
  v.ok = false;
  v.failure = f;
  v.message = std::move(message);
  return v;
}

// The digest algorithms an artifact may be named by, with the names in-toto subjects and
// "<alg>:<hex>" strings use for them.
constexpr std::pair<std::string_view, HashAlgorithm> kArtifactHashes[] = {
    {"sha256", HashAlgorithm::sha256},
    {"sha384", HashAlgorithm::sha384},
    {"sha512", HashAlgorithm::sha512},
};

std::string_view algorithm_name(HashAlgorithm h) {
  for (auto [name, alg] : kArtifactHashes) {
    if (alg == h) return name;
  }
  return hash_name(h);
}

// "sha256:<hex>" names the artifact by its digest.
std::string digest_string(HashAlgorithm h, std::string_view raw) {
  return std::string(algorithm_name(h)) + ":" + hex_encode(raw);
}

// The verifier a Rekor body records, compared with the one that checked the signature: the
// same certificate (keyless), or the same public key (key-signed: the body holds the key, or
// a certificate for it).
bool same_verifier(const RekorVerifier& recorded, const std::optional<Certificate>& leaf,
                   const PublicKey& key) {
  if (leaf) return recorded.is_certificate && recorded.der == leaf->der();
  if (!recorded.is_certificate) return recorded.der == key.spki_der();
  auto cert = Certificate::from_der(recorded.der);
  return cert && cert->spki_der() == key.spki_der();
}

// Does the entry's body record exactly this signature, this verifier and this payload?
Status body_matches(const SignedEntity& e, const RekorBody& body, const std::string& signed_bytes,
                    const std::string& message_digest, const std::optional<Certificate>& leaf,
                    const PublicKey& key) {
  if (body.signatures.empty() || body.signatures.size() != body.verifiers.size()) {
    return make_error(Errc::verification, "log entry records no signature");
  }
  bool sig_found = false;
  for (size_t i = 0; i < body.signatures.size(); ++i) {
    if (body.signatures[i] == e.signature && same_verifier(body.verifiers[i], leaf, key)) {
      sig_found = true;
    }
  }
  if (!sig_found) {
    return make_error(Errc::verification,
                      "log entry records another signature or signer (" + body.kind + ")");
  }
  // The entry states its hash algorithm (Rekor v2 takes it from the key's details: SHA-384 for
  // a P-384 key); the bytes are hashed with it here.
  const HashAlgorithm h = body.hash_algorithm;
  std::string expected;
  if (body.kind == "hashedrekord") {
    switch (e.kind) {
      case SignedEntity::Kind::simple_signing:
        expected = digest(h, e.payload);
        break;
      case SignedEntity::Kind::message_signature:
        if (h != e.message_digest_algorithm) {
          return make_error(Errc::verification, std::string("log entry records a ") + hash_name(h) +
                                                    " digest, the bundle a " +
                                                    hash_name(e.message_digest_algorithm) + " one");
        }
        expected = message_digest;
        break;
      case SignedEntity::Kind::dsse:
        // Rekor v2 logs DSSE as a hashedrekord over the PAE.
        expected = digest(h, signed_bytes);
        break;
    }
  } else if (body.kind == "dsse" || body.kind == "intoto") {
    if (e.kind != SignedEntity::Kind::dsse) {
      return make_error(Errc::verification, "log entry is a " + body.kind +
                                                " entry, but the signature is not a DSSE envelope");
    }
    expected = digest(h, e.payload);
  } else {
    return make_error(Errc::unsupported, "log entry kind " + body.kind + " is not supported");
  }
  if (expected.empty() || body.hash != expected) {
    return make_error(Errc::verification, "log entry records another payload hash");
  }
  return {};
}

}  // namespace

std::optional<std::pair<HashAlgorithm, std::string>> parse_artifact_digest(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view name = text.substr(0, colon);
  std::string_view hex = text.substr(colon + 1);
  for (auto [n, alg] : kArtifactHashes) {
    if (n != name) continue;
    if (hex.size() != 2 * digest_size(alg) || !is_lower_hex(hex)) return std::nullopt;
    auto raw = hex_decode(hex);
    if (!raw) return std::nullopt;
    return std::make_pair(alg, std::move(*raw));
  }
  return std::nullopt;
}

const char* failure_name(Failure f) noexcept {
  switch (f) {
    case Failure::none:
      return "none";
    case Failure::malformed:
      return "malformed";
    case Failure::bad_signature:
      return "bad_signature";
    case Failure::wrong_type:
      return "wrong_type";
    case Failure::digest_mismatch:
      return "digest_mismatch";
    case Failure::untrusted_certificate:
      return "untrusted_certificate";
    case Failure::sct:
      return "sct";
    case Failure::tlog:
      return "tlog";
    case Failure::timestamp:
      return "timestamp";
    case Failure::no_signing_time:
      return "no_signing_time";
    case Failure::unsupported:
      return "unsupported";
  }
  return "unknown";
}

namespace {

// verify_entity, one function per step. A step returns nullopt to go on, or the result that
// ends the verification (a failure). The steps run in the order verify_entity lists.
using Stop = std::optional<VerifiedSignature>;

// What the first steps establish and the later ones check against.
struct Material {
  bool keyless = false;
  // The artifact as the caller names it.
  HashAlgorithm artifact_alg = HashAlgorithm::sha256;
  std::string artifact_raw;
  // What was signed.
  std::string signed_bytes;
  std::string message_digest;  // message_signature: the raw digest the signature covers
  // The verifying key: the policy's, or the leaf certificate's (with the chain the signer
  // brought, roots left out).
  std::optional<Certificate> leaf;
  std::vector<Certificate> untrusted;
  std::optional<PublicKey> leaf_key;
  const PublicKey* key = nullptr;
  HashAlgorithm hash = HashAlgorithm::sha256;
};

// The requirements can be met at all, and the entity has the shape of one signature.
Stop check_shape(const SignedEntity& e, const Requirements& req) {
  if (req.key == nullptr && req.cas == nullptr) {
    return fail(Failure::malformed, "no key and no certificate authority to verify with");
  }
  if (!e.signature_count_ok) {
    return fail(Failure::malformed, "a DSSE envelope must carry exactly one signature");
  }
  if (e.signature.empty()) return fail(Failure::bad_signature, "signature is empty");
  return std::nullopt;
}

// (fetch) What was signed: the payload, the DSSE PAE, or the artifact's digest in the
// bundle's algorithm.
Stop read_signed_bytes(const SignedEntity& e, const Artifact& artifact, Material& m) {
  auto named = parse_artifact_digest(artifact.digest);
  if (!named || (artifact.kind == Artifact::Kind::image && named->first != HashAlgorithm::sha256)) {
    return fail(Failure::unsupported,
                "the artifact digest is not a sha256, sha384 or sha512 "
                "digest (images: sha256)");
  }
  m.artifact_alg = named->first;
  m.artifact_raw = std::move(named->second);
  switch (e.kind) {
    case SignedEntity::Kind::simple_signing:
      m.signed_bytes = e.payload;
      break;
    case SignedEntity::Kind::dsse:
      m.signed_bytes = dsse_pae(e.payload_type, e.payload);
      break;
    case SignedEntity::Kind::message_signature: {
      if (artifact.kind != Artifact::Kind::blob) {
        return fail(Failure::wrong_type,
                    "a message signature over a blob is not an image signature (cosign v3 "
                    "signs images with DSSE bundles)");
      }
      // The artifact's digest in the bundle's algorithm: computed from its bytes when the
      // caller has them, else the digest given, which must then use that algorithm.
      const HashAlgorithm alg = e.message_digest_algorithm;
      if (artifact.bytes) {
        m.message_digest = digest(alg, *artifact.bytes);
        if (m.message_digest.empty()) return fail(Failure::malformed, "cannot hash the artifact");
      } else if (m.artifact_alg == alg) {
        m.message_digest = m.artifact_raw;
      } else {
        return fail(Failure::unsupported,
                    "the bundle signs a " + std::string(algorithm_name(alg)) + " digest, which a " +
                        std::string(algorithm_name(m.artifact_alg)) +
                        " digest of the artifact cannot be checked against (pass the file)");
      }
      if (!e.message_digest.empty() && e.message_digest != m.message_digest) {
        VerifiedSignature v =
            fail(Failure::digest_mismatch,
                 "the bundle signs " + short_digest(digest_string(alg, e.message_digest)) +
                     ", not " + short_digest(digest_string(alg, m.message_digest)));
        v.bound_digest = digest_string(alg, e.message_digest);
        return v;
      }
      if (artifact.bytes) m.signed_bytes = *artifact.bytes;
      break;
    }
  }
  return std::nullopt;
}

// (fetch) The verifying key: the policy's, or the leaf certificate's.
Stop read_verifying_key(const SignedEntity& e, const Requirements& req, Material& m) {
  m.keyless = req.key == nullptr;
  m.key = req.key;
  m.hash = req.key_hash;
  if (!m.keyless) return std::nullopt;
  if (e.certificates_der.empty()) {
    return fail(Failure::untrusted_certificate,
                "not a keyless signature: it carries no certificate");
  }
  auto c = Certificate::from_der(e.certificates_der.front());
  if (!c) return fail(Failure::malformed, "certificate: " + c.error().message);
  m.leaf = std::move(*c);
  for (size_t i = 1; i < e.certificates_der.size(); ++i) {
    auto ci = Certificate::from_der(e.certificates_der[i]);
    if (!ci) return fail(Failure::malformed, "certificate chain: " + ci.error().message);
    if (ci->is_self_signed()) {
      // A signer cannot bring its own root (conformance bundle-with-root-cert_fail); the
      // legacy chain annotation lists the root by habit and is simply not trusted here.
      if (e.bundle_minor_version != 0) {
        return fail(Failure::untrusted_certificate,
                    "the bundle includes a root certificate; roots come only from the trust "
                    "root");
      }
      continue;
    }
    m.untrusted.push_back(std::move(*ci));
  }
  auto k = m.leaf->public_key();
  if (!k) return fail(Failure::malformed, "certificate key: " + k.error().message);
  m.leaf_key = std::move(*k);
  m.key = &*m.leaf_key;
  m.hash = default_hash_for(m.key->type());
  return std::nullopt;
}

// (4) The signature over the signed bytes. A message signature is checked, as sigstore-go
// checks it, over the bundle's digest in the bundle's algorithm (the artifact's bytes only ever
// reach it through that digest), except Ed25519's, which signs the bytes themselves and so
// needs them.
Stop check_signature(const SignedEntity& e, const Artifact& artifact, const Material& m) {
  bool prehashed = false;
  if (e.kind == SignedEntity::Kind::message_signature) {
    prehashed = m.key->type() != KeyType::ed25519 || !artifact.bytes;
  }
  Status sig_ok =
      prehashed ? m.key->verify_prehashed(m.message_digest, e.signature, e.message_digest_algorithm)
                : m.key->verify(m.signed_bytes, e.signature, m.hash);
  if (!sig_ok) {
    if (sig_ok.error().code == Errc::unsupported) {
      return fail(Failure::unsupported,
                  sig_ok.error().message + " (pass the artifact file instead of its digest)");
    }
    return fail(Failure::bad_signature, m.keyless
                                            ? "signature does not verify with its certificate"
                                            : "signature does not verify with the policy's key");
  }
  return std::nullopt;
}

// (2) Transparency log entries: SET and/or inclusion proof, about this very signature. Each
// verified SET adds its integrated time to out.signing_times (1).
Stop check_tlog_entries(const SignedEntity& e, const Requirements& req, const Material& m,
                        VerifiedSignature& out) {
  if (!req.require_tlog) return std::nullopt;
  bool tlog_ok = false;
  std::string tlog_problem;
  for (const auto& entry : e.tlog_entries) {
    const TransparencyLog* log = req.tlogs ? find_log(*req.tlogs, entry.log_id) : nullptr;
    if (log == nullptr) {
      tlog_problem = "its log entry is from a transparency log the policy does not trust";
      continue;
    }
    auto body = parse_rekor_body(entry.canonicalized_body,
                                 m.leaf ? std::string_view(m.leaf->der()) : std::string_view());
    if (!body) {
      tlog_problem = "log entry body: " + body.error().message;
      continue;
    }
    if (auto match = body_matches(e, *body, m.signed_bytes, m.message_digest, m.leaf, *m.key);
        !match) {
      return fail(Failure::tlog, match.error().message);
    }
    bool proved = false;
    if (!entry.signed_entry_timestamp.empty()) {
      if (auto st = verify_signed_entry_timestamp(entry, *log); !st) {
        return fail(Failure::tlog, st.error().message);
      }
      const TimePoint t = from_unix_seconds(entry.integrated_time);
      if (!log->valid_for.contains(t)) {
        return fail(Failure::tlog,
                    "the log's key was not valid at the entry's time " + format_time(t));
      }
      out.signing_times.push_back(t);
      proved = true;
    }
    if (entry.inclusion_proof) {
      if (auto st = verify_inclusion_proof(entry, *log, e.bundle_minor_version >= 2); !st) {
        return fail(Failure::tlog, st.error().message);
      }
      proved = true;
    }
    if (proved) {
      tlog_ok = true;
    } else {
      tlog_problem = "its log entry has neither a signed entry timestamp nor an inclusion proof";
    }
  }
  if (!tlog_ok) {
    return fail(Failure::tlog, tlog_problem.empty()
                                   ? "it has no transparency log entry (Rekor), which the "
                                     "policy requires"
                                   : tlog_problem);
  }
  return std::nullopt;
}

// (1) RFC 3161 timestamps over the signature bytes, each a signing time.
Stop check_timestamps(const SignedEntity& e, const Requirements& req, VerifiedSignature& out) {
  if (req.tsas == nullptr || req.tsas->empty()) return std::nullopt;
  for (const auto& ts : e.rfc3161_timestamps) {
    auto t = verify_rfc3161_timestamp(ts, e.timestamped.empty() ? e.signature : e.timestamped,
                                      *req.tsas);
    if (!t) return fail(Failure::timestamp, "RFC 3161 timestamp: " + t.error().message);
    out.signing_times.push_back(*t);
  }
  return std::nullopt;
}

// (1) Enough proved signing times: the certificate's validity (expiry) is judged at them, never
// at "now".
Stop check_signing_times(const Requirements& req, const Material& m, const VerifiedSignature& out) {
  if (out.signing_times.size() >= req.min_signing_times) return std::nullopt;
  return fail(Failure::no_signing_time,
              m.keyless ? "nothing proves when it was signed (no verified transparency log "
                          "timestamp or RFC 3161 timestamp), so its short-lived certificate "
                          "cannot be checked"
                        : "nothing proves when it was signed (no verified transparency log "
                          "timestamp or RFC 3161 timestamp)");
}

// (3) The certificate: chained to a trusted CA and valid at every proved signing time, code
// signing, and logged in certificate transparency. Fills the identity it proves.
Stop check_certificate(const Requirements& req, const Material& m, VerifiedSignature& out) {
  if (!m.keyless) return std::nullopt;
  std::optional<VerifiedChain> chain;
  for (const TimePoint t : out.signing_times) {
    auto vc = verify_certificate_any(*m.leaf, m.untrusted, *req.cas, t,
                                     ExtendedKeyUsage::code_signing, req.chain_cache);
    if (!vc) {
      return fail(Failure::untrusted_certificate, "certificate not trusted at signing time " +
                                                      format_time(t) + ": " + vc.error().message);
    }
    if (!chain) chain = std::move(*vc);
  }
  if (req.require_sct) {
    if (req.ctlogs == nullptr || req.ctlogs->empty()) {
      return fail(Failure::sct, "no CT log is configured to check the certificate's SCT");
    }
    if (auto st = verify_embedded_sct(*m.leaf, chain->issuer(), *req.ctlogs); !st) {
      return fail(Failure::sct, "certificate transparency: " + st.error().message);
    }
  }
  auto id = certificate_identity(*m.leaf);
  if (!id) return fail(Failure::malformed, "certificate identity: " + id.error().message);
  out.identity = std::move(*id);
  out.identity_proved = true;
  return std::nullopt;
}

// A failure of the claims: everything before verified, so it still reports who signed (the
// caller checks its identities first).
VerifiedSignature claim_failure(const VerifiedSignature& out, Failure f, std::string message) {
  VerifiedSignature v = out;
  v.ok = false;
  v.failure = f;
  v.message = std::move(message);
  return v;
}

// (5) The claims: the payload binds the admitted digest. Sets out.bound_digest.
Stop check_claims(const SignedEntity& e, const Requirements& req, const Artifact& artifact,
                  const Material& m, VerifiedSignature& out) {
  switch (e.kind) {
    case SignedEntity::Kind::simple_signing: {
      if (artifact.kind != Artifact::Kind::image) {
        return claim_failure(out, Failure::wrong_type,
                             "a container image signature, not a blob signature");
      }
      auto p = parse_simple_signing(e.payload);
      if (!p)
        return claim_failure(out, Failure::wrong_type,
                             "signed payload is malformed: " + p.error().message);
      out.bound_digest = p->docker_manifest_digest;
      if (p->type != kCosignSignatureType) {
        return claim_failure(out, Failure::wrong_type,
                             "payload type is not a cosign container image signature");
      }
      if (p->docker_manifest_digest != artifact.digest) {
        VerifiedSignature v =
            claim_failure(out, Failure::digest_mismatch,
                          "signature is for " + short_digest(p->docker_manifest_digest) +
                              ", not for " + short_digest(artifact.digest));
        v.bound_digest = p->docker_manifest_digest;
        return v;
      }
      break;
    }
    case SignedEntity::Kind::dsse: {
      if (e.payload_type != kInTotoPayloadType) {
        return claim_failure(out, Failure::wrong_type, "DSSE payload type is not in-toto");
      }
      auto st = parse_in_toto_statement(e.payload);
      if (!st) {
        return claim_failure(out, Failure::wrong_type, "in-toto statement: " + st.error().message);
      }
      if (artifact.kind == Artifact::Kind::image && !req.dsse_predicate.empty() &&
          st->predicate_type != req.dsse_predicate) {
        return claim_failure(out, Failure::wrong_type,
                             "predicate type " + st->predicate_type.substr(0, 120) +
                                 " makes it an attestation, not an image signature");
      }
      // A subject names the artifact by any digest sigstore-go computes (sha256, sha384,
      // sha512): with the artifact's bytes each is recomputed, else the given one must match.
      bool bound = false;
      if (artifact.bytes) {
        for (auto [name, alg] : kArtifactHashes) {
          bound = bound || statement_binds(*st, name, hex_encode(digest(alg, *artifact.bytes)));
        }
      } else {
        bound = statement_binds(*st, algorithm_name(m.artifact_alg), hex_encode(m.artifact_raw));
      }
      if (!bound) {
        VerifiedSignature v = claim_failure(
            out, Failure::digest_mismatch,
            "the in-toto statement's subject is not " + short_digest(artifact.digest));
        for (const auto& sub : st->subjects) {
          auto it = sub.digest.find(std::string(algorithm_name(m.artifact_alg)));
          if (it != sub.digest.end()) {
            v.bound_digest = it->first + ":" + it->second;
            break;
          }
        }
        return v;
      }
      out.bound_digest = artifact.digest;
      break;
    }
    case SignedEntity::Kind::message_signature:
      if (artifact.bytes && digest(m.artifact_alg, *artifact.bytes) != m.artifact_raw) {
        return claim_failure(out, Failure::digest_mismatch,
                             "the artifact bytes do not hash to its digest");
      }
      out.bound_digest = artifact.digest;
      break;
  }
  return std::nullopt;
}

}  // namespace

VerifiedSignature verify_entity(const SignedEntity& e, const Requirements& req,
                                const Artifact& artifact) {
  try {
    if (Stop s = check_shape(e, req)) return std::move(*s);
    Material m;
    if (Stop s = read_signed_bytes(e, artifact, m)) return std::move(*s);
    if (Stop s = read_verifying_key(e, req, m)) return std::move(*s);
    // (4) first: the cheapest check, and nothing else matters if it fails (the tlog step also
    // needs the key it checked with).
    if (Stop s = check_signature(e, artifact, m)) return std::move(*s);
    VerifiedSignature out;
    if (Stop s = check_tlog_entries(e, req, m, out)) return std::move(*s);
    if (Stop s = check_timestamps(e, req, out)) return std::move(*s);
    if (Stop s = check_signing_times(req, m, out)) return std::move(*s);
    if (Stop s = check_certificate(req, m, out)) return std::move(*s);
    if (Stop s = check_claims(e, req, artifact, m, out)) return std::move(*s);
    out.ok = true;
    out.failure = Failure::none;
    return out;
  } catch (const std::exception& ex) {
    return fail(Failure::malformed, std::string("verification failed unexpectedly: ") + ex.what());
  } catch (...) {
    return fail(Failure::malformed, "verification failed unexpectedly");
  }
}

}  // namespace sigil::crypto
