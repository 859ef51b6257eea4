// verify/evidence.cpp: see evidence.hpp.
#include "verify/evidence.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "common/encoding.hpp"
#include "crypto/bundle.hpp"
#include "crypto/cosign.hpp"
#include "crypto/sigstore.hpp"
#include "oci/manifest.hpp"
#include "oci/reference.hpp"

namespace sigil::verify {

namespace asio = boost::asio;

namespace {

std::string mib(uint64_t bytes) {
  const uint64_t m = bytes >> 20;
  return m > 0 ? std::to_string(m) + " MiB" : std::to_string(bytes >> 10) + " KiB";
}

// Takes n bytes for `what`, or says which budget is spent.
Result<Reservation> take(ByteBudget& budget, uint64_t n, const std::string& what) {
  Reservation r = Reservation::take(budget, n);
  if (r.ok()) return r;
  // The admission's budget: the first with a limit (an image's own, in front of it, has none).
  const ByteBudget* admission = &budget;
  while (admission->limit() == std::numeric_limits<uint64_t>::max() &&
         admission->parent() != nullptr) {
    admission = admission->parent();
  }
  if (n > admission->limit() || admission->used() > admission->limit() - n) {
    return make_error(Errc::exhausted, what + " would take this admission past sigil's " +
                                           mib(admission->limit()) + " budget for registry data");
  }
  return make_error(Errc::exhausted,
                    what +
                        ": sigil holds too much registry data right now (its process budget); "
                        "retry shortly");
}

bool is_bundle_type(std::string_view t) {
  return t == crypto::kBundleMediaTypeV03 ||
         t.rfind("application/vnd.dev.sigstore.bundle+json;version=", 0) == 0;
}

std::string annotation(const oci::Descriptor& d, std::string_view key) {
  auto it = d.annotations.find(std::string(key));
  return it == d.annotations.end() ? std::string() : it->second;
}

struct Part {
  std::vector<crypto::SignedEntity> signatures;
  std::vector<std::string> unreadable;
  std::vector<Reservation> held;
  bool guessed = false;
};

// The manifest a cosign tag (sha256-<hex>.sig or .att) holds, with the budget it takes (the
// body and its parse) held by the caller until it is done with the layers. nullopt when the tag
// does not exist: no signatures (or attestations), not an error. `what` names the tag's kind in
// messages ("signature", "attestation").
struct TagManifest {
  oci::Manifest manifest;
  Reservation reserved;
  Reservation parsed;  // what the parse holds beyond `reserved` (charge_parsed)
};

// Charges what a parsed manifest holds (oci::held_bytes) beyond what `reserved` already holds
// for its body: annotations parsed into maps cost over ten times their JSON, which the
// reservation made for the body does not cover. The extra is added to `reserved`'s budget as a
// second reservation, returned to be held as long as the manifest is.
Result<Reservation> charge_parsed(ByteBudget& budget, const Reservation& reserved,
                                  const oci::Manifest& m, const std::string& what) {
  const uint64_t held = oci::held_bytes(m);
  if (held <= reserved.bytes()) return Reservation();
  return take(budget, held - reserved.bytes(), what);
}

asio::awaitable<Result<std::optional<TagManifest>>> read_tag_manifest(
    registry::Client& client, const Location& where, const std::string& tag,
    const std::string& what, Deadline deadline, const registry::PullCredentials& creds,
    ByteBudget& budget, const EvidenceLimits& limits) {
  auto reserved = take(budget, limits.manifest_reservation, "reading " + what + " manifest " + tag);
  if (!reserved.ok()) co_return reserved.error();
  auto manifest =
      co_await client.get_manifest(where.registry, where.repository, tag, deadline, creds);
  if (!manifest.ok()) {
    if (manifest.error().code == Errc::not_found) co_return std::optional<TagManifest>();
    co_return manifest.error();
  }
  auto parsed = oci::parse_manifest(manifest->body, manifest->media_type);
  if (!parsed.ok()) {
    co_return make_error(Errc::parse_error,
                         what + " manifest " + tag + " is malformed: " + parsed.error().message);
  }
  if (parsed->is_index) {
    co_return make_error(Errc::parse_error,
                         what + " tag " + tag + " holds an index, not a manifest");
  }
  reserved->shrink_to(std::min<uint64_t>(limits.manifest_reservation, manifest->body.size() * 2));
  auto parsed_bytes =
      charge_parsed(budget, *reserved, *parsed, "holding " + what + " manifest " + tag);
  if (!parsed_bytes.ok()) co_return parsed_bytes.error();
  std::optional<TagManifest> out(std::in_place);
  out->manifest = std::move(*parsed);
  out->reserved = std::move(*reserved);
  out->parsed = std::move(*parsed_bytes);
  co_return out;
}

// Legacy cosign signatures: sha256-<hex>.sig in the same repository. A missing tag means
// "no signatures", not an error.
asio::awaitable<Result<Part>> read_legacy(registry::Client& client, const Location& where,
                                          const std::string& digest, Deadline deadline,
                                          const registry::PullCredentials& creds,
                                          ByteBudget& budget, const EvidenceLimits& limits) {
  Part out;
  const std::string tag = oci::signature_tag(digest);
  auto fetched =
      co_await read_tag_manifest(client, where, tag, "signature", deadline, creds, budget, limits);
  if (!fetched.ok()) co_return fetched.error();
  if (!fetched->has_value()) co_return out;
  const oci::Manifest& manifest = (*fetched)->manifest;

  std::map<std::string, std::string> payloads;  // blob digest -> bytes: each blob read once
  std::set<std::string> seen;                   // exact duplicate layers are dropped
  size_t index = 0, taken = 0;
  for (const auto& layer : manifest.layers) {
    const size_t layer_index = index++;
    if (taken >= limits.max_signatures) {
      out.unreadable.push_back(tag + ": more than " + std::to_string(limits.max_signatures) +
                               " signatures; the rest were not read");
      break;
    }
    if (layer.media_type != oci::media::kCosignSimpleSigning) continue;
    const std::string sig_b64 = annotation(layer, crypto::kAnnotationSignature);
    if (sig_b64.empty()) continue;  // cosign itself rejects such a layer
    const std::string where_layer = ".sig layer " + std::to_string(layer_index);
    auto raw_sig = crypto::decode_signature_annotation(sig_b64);
    if (!raw_sig.ok() || raw_sig->empty()) {
      out.unreadable.push_back(where_layer + ": the signature annotation is not base64");
      continue;
    }
    if (layer.size > limits.max_signature_payload) {
      out.unreadable.push_back(where_layer + ": a payload of " + std::to_string(layer.size) +
                               " bytes is over sigil's cap of " +
                               std::to_string(limits.max_signature_payload));
      continue;
    }
    crypto::Signature sig;
    sig.signature = std::move(*raw_sig);
    sig.certificate_pem = annotation(layer, crypto::kAnnotationCertificate);
    sig.chain_pem = annotation(layer, crypto::kAnnotationChain);
    sig.bundle_json = annotation(layer, crypto::kAnnotationBundle);
    sig.rfc3161_json = annotation(layer, crypto::kAnnotationRfc3161);
    std::string identity = layer.digest;
    const std::initializer_list<const std::string*> parts = {
        &sig_b64, &sig.certificate_pem, &sig.chain_pem, &sig.bundle_json, &sig.rfc3161_json};
    for (const std::string* part : parts) {
      identity += '\0' + std::to_string(part->size()) + ':' + *part;
    }
    if (!seen.insert(std::move(identity)).second) continue;
    ++taken;
    const auto size = static_cast<uint64_t>(layer.size);
    auto it = payloads.find(layer.digest);
    if (it == payloads.end()) {
      auto held = take(budget, size, "reading signature payloads");
      if (!held.ok()) co_return held.error();
      auto blob = co_await client.get_blob(where.registry, where.repository, layer.digest,
                                           layer.size, deadline, creds);
      if (!blob.ok()) co_return blob.error();
      out.held.push_back(std::move(*held));
      it = payloads.emplace(layer.digest, std::move(*blob)).first;
    }
    // The entity keeps its own copy of the payload (verification parses it): counted too, at
    // the size of the blob held, not this layer's: a later layer naming a blob already read
    // can declare any size (0), and a copy of 256 KiB would then be held for nothing.
    auto copy = take(budget, it->second.size(), "reading signature payloads");
    if (!copy.ok()) co_return copy.error();
    out.held.push_back(std::move(*copy));
    sig.payload = it->second;
    sig.source = where_layer;
    auto entity = crypto::entity_from_legacy(sig);
    if (entity.ok()) {
      out.signatures.push_back(std::move(*entity));
    } else {
      out.unreadable.push_back(where_layer + ": " + entity.error().message);
    }
  }
  co_return out;
}

// Sigstore bundles attached to digest as OCI 1.1 referrers (cosign v3's default). Each bundle
// manifest is fetched by digest (so its bytes are verified) and must name this digest as its
// subject; an index that lists other things is not trusted for anything.
asio::awaitable<Result<Part>> read_bundles(registry::Client& client, const Location& where,
                                           const std::string& digest, Deadline deadline,
                                           const registry::PullCredentials& creds,
                                           ByteBudget& budget, const EvidenceLimits& limits) {
  Part out;
  std::vector<oci::Descriptor> listed;
  // What the listing holds, charged for as long as `listed` is held: the registry client keeps
  // at most max_manifest_size of a referrers listing; the tag schema's index is charged its
  // parse.
  std::vector<Reservation> listing;
  bool via_api = true;
  {
    auto reserved = take(budget, limits.manifest_reservation, "listing referrers");
    if (!reserved.ok()) co_return reserved.error();
    auto r =
        co_await client.get_referrers(where.registry, where.repository, digest,
                                      std::string(crypto::kBundleMediaTypeV03), deadline, creds);
    if (r.ok()) {
      listed = std::move(*r);
      listing.push_back(std::move(*reserved));
    } else if (r.error().code == Errc::unsupported) {
      via_api = false;  // no referrers API: the tag schema
    } else if (r.error().code == Errc::not_found) {
      via_api = false;  // ambiguous (NAME_UNKNOWN): the tag schema, this once
      out.guessed = true;
    } else {
      co_return r.error();
    }
  }
  const std::string schema_tag = oci::referrers_tag(digest);
  if (!via_api) {
    auto reserved = take(budget, limits.manifest_reservation, "reading referrers index");
    if (!reserved.ok()) co_return reserved.error();
    auto idx =
        co_await client.get_manifest(where.registry, where.repository, schema_tag, deadline, creds);
    if (!idx.ok()) {
      if (idx.error().code == Errc::not_found) co_return out;
      co_return idx.error();
    }
    auto parsed = oci::parse_manifest(idx->body, idx->media_type);
    if (!parsed.ok() || !parsed->is_index) {
      out.unreadable.push_back("referrers tag " + schema_tag + ": " +
                               (parsed.ok() ? "not an image index" : parsed.error().message));
      co_return out;
    }
    auto parsed_bytes = charge_parsed(budget, *reserved, *parsed, "reading referrers index");
    if (!parsed_bytes.ok()) co_return parsed_bytes.error();
    listed = std::move(parsed->manifests);
    // What is kept of the listing: which artifacts, never their annotations (unused here, and
    // a hostile index can make them the most of its bytes), as get_referrers does.
    for (auto& d : listed) std::map<std::string, std::string>().swap(d.annotations);
    listing.push_back(std::move(*reserved));
    listing.push_back(std::move(*parsed_bytes));
  }
  size_t taken = 0;
  for (const auto& d : listed) {
    if (!is_bundle_type(d.artifact_type)) continue;
    if (taken++ >= limits.max_bundles) {
      out.unreadable.push_back("more than " + std::to_string(limits.max_bundles) +
                               " bundles; the rest were not read");
      break;
    }
    const std::string where_ref = "referrer " + short_digest(d.digest);
    auto reserved = take(budget, limits.manifest_reservation, "reading bundle manifests");
    if (!reserved.ok()) co_return reserved.error();
    auto m =
        co_await client.get_manifest(where.registry, where.repository, d.digest, deadline, creds);
    if (!m.ok()) {
      if (m.error().code == Errc::not_found) {
        out.unreadable.push_back(where_ref + ": listed but not found");
        continue;
      }
      co_return m.error();
    }
    auto manifest = oci::parse_manifest(m->body, m->media_type);
    if (!manifest.ok() || manifest->is_index) {
      out.unreadable.push_back(
          where_ref + ": " + (manifest.ok() ? std::string("an index") : manifest.error().message));
      continue;
    }
    auto parsed_bytes = charge_parsed(budget, *reserved, *manifest, "reading bundle manifests");
    if (!parsed_bytes.ok()) co_return parsed_bytes.error();
    if (!manifest->subject || manifest->subject->digest != digest) {
      out.unreadable.push_back(where_ref + ": its subject is not this image");
      continue;
    }
    const oci::Descriptor* layer = nullptr;
    for (const auto& l : manifest->layers) {
      if (is_bundle_type(l.media_type)) {
        layer = &l;
        break;
      }
    }
    if (layer == nullptr) {
      out.unreadable.push_back(where_ref + ": no sigstore bundle layer");
      continue;
    }
    if (layer->size > limits.max_bundle_size) {
      out.unreadable.push_back(where_ref + ": bundle larger than the cap");
      continue;
    }
    // The JSON and what is parsed from it.
    auto held = take(budget, 2 * static_cast<uint64_t>(layer->size), "reading bundles");
    if (!held.ok()) co_return held.error();
    auto blob = co_await client.get_blob(where.registry, where.repository, layer->digest,
                                         layer->size, deadline, creds);
    if (!blob.ok()) co_return blob.error();
    out.held.push_back(std::move(*held));
    auto parsed = crypto::parse_bundle(*blob);
    if (!parsed.ok()) {
      out.unreadable.push_back(where_ref + ": " + parsed.error().message);
      continue;
    }
    auto e = crypto::entity_from_bundle(*parsed, where_ref);
    if (!e.ok()) {
      out.unreadable.push_back(where_ref + ": " + e.error().message);
      continue;
    }
    out.signatures.push_back(std::move(*e));
  }
  co_return out;
}

// Legacy cosign attestations (docs/sigstore-formats.md 1.2): the `.att` tag of a digest is an OCI
// manifest whose layers are DSSE envelopes (application/vnd.dsse.envelope.v1+json), one per
// attestation, with the certificate, chain, Rekor bundle and RFC 3161 annotations of a `.sig`
// layer. Each blob is read by digest (hashed by the client) within the budget and becomes
// crypto::SignedEntity values for policy/ to verify; what cannot be read is listed, never used.
constexpr std::string_view kDsseEnvelopeMediaType = "application/vnd.dsse.envelope.v1+json";

struct AttestationPart {
  std::vector<crypto::SignedEntity> attestations;
  std::vector<std::string> unreadable;
  std::vector<Reservation> held;
};

// "sha256:<hex>" -> "sha256-<hex>.att".
std::string attestation_tag(const std::string& digest) {
  std::string tag = oci::signature_tag(digest);  // sha256-<hex>.sig
  return tag.substr(0, tag.size() - 4) + ".att";
}

asio::awaitable<Result<AttestationPart>> read_attestations(
    registry::Client& client, const Location& where, const std::string& digest, Deadline deadline,
    const registry::PullCredentials& creds, ByteBudget& budget, const EvidenceLimits& limits) {
  AttestationPart out;
  const std::string tag = attestation_tag(digest);
  auto fetched = co_await read_tag_manifest(client, where, tag, "attestation", deadline, creds,
                                            budget, limits);
  if (!fetched.ok()) co_return fetched.error();
  if (!fetched->has_value()) co_return out;
  const oci::Manifest& manifest = (*fetched)->manifest;

  std::set<std::string> seen;  // exact duplicate layers are dropped
  size_t index = 0, taken = 0;
  for (const auto& layer : manifest.layers) {
    const size_t layer_index = index++;
    if (layer.media_type != kDsseEnvelopeMediaType) continue;
    const std::string where_layer = ".att layer " + std::to_string(layer_index);
    if (taken >= limits.max_attestations) {
      out.unreadable.push_back(tag + ": more than " + std::to_string(limits.max_attestations) +
                               " attestations; the rest were not read");
      break;
    }
    if (layer.size > limits.max_attestation_size) {
      out.unreadable.push_back(where_layer + ": an envelope of " + std::to_string(layer.size) +
                               " bytes is over sigil's cap of " +
                               std::to_string(limits.max_attestation_size));
      continue;
    }
    crypto::Signature annotations;
    annotations.certificate_pem = annotation(layer, crypto::kAnnotationCertificate);
    annotations.chain_pem = annotation(layer, crypto::kAnnotationChain);
    annotations.bundle_json = annotation(layer, crypto::kAnnotationBundle);
    annotations.rfc3161_json = annotation(layer, crypto::kAnnotationRfc3161);
    annotations.source = where_layer;
    std::string identity = layer.digest;
    for (const std::string* part : {&annotations.certificate_pem, &annotations.chain_pem,
                                    &annotations.bundle_json, &annotations.rfc3161_json}) {
      identity += '\0' + std::to_string(part->size()) + ':' + *part;
    }
    if (!seen.insert(std::move(identity)).second) continue;
    ++taken;
    // The blob while it is read and parsed (twice: the parse holds the decoded payload), then
    // what the entities keep (payload, envelope for the timestamp, annotations).
    const auto size = static_cast<uint64_t>(layer.size);
    auto reading = take(budget, 2 * size, "reading attestations");
    if (!reading.ok()) co_return reading.error();
    auto blob = co_await client.get_blob(where.registry, where.repository, layer.digest, layer.size,
                                         deadline, creds);
    if (!blob.ok()) co_return blob.error();
    auto entities = crypto::entities_from_attestation_layer(*blob, annotations, 4);
    if (!entities.ok()) {
      out.unreadable.push_back(where_layer + ": " + entities.error().message);
      continue;
    }
    uint64_t kept = 0;
    for (const auto& e : *entities) {
      kept += e.payload.size() + e.timestamped.size() + e.signature.size() + 1024;
      for (const auto& c : e.certificates_der) kept += c.size();
    }
    auto held = take(budget, kept, "reading attestations");
    if (!held.ok()) co_return held.error();
    out.held.push_back(std::move(*held));
    for (auto& e : *entities) out.attestations.push_back(std::move(e));
  }
  co_return out;
}

// Legacy attestations, as a Part whose signatures are the attestations.
asio::awaitable<Result<Part>> read_attestation_part(registry::Client& client, const Location& where,
                                                    const std::string& digest, Deadline deadline,
                                                    const registry::PullCredentials& creds,
                                                    ByteBudget& budget,
                                                    const EvidenceLimits& limits) {
  auto got = co_await read_attestations(client, where, digest, deadline, creds, budget, limits);
  if (!got.ok()) co_return got.error();
  Part p;
  p.signatures = std::move(got->attestations);
  p.unreadable = std::move(got->unreadable);
  p.held = std::move(got->held);
  co_return p;
}

}  // namespace

asio::awaitable<FetchedEvidence> fetch_evidence(registry::Client& client, const Location& where,
                                                const std::string& digest, Wanted wanted,
                                                Deadline deadline, registry::PullCredentials creds,
                                                ByteBudget& budget, const EvidenceLimits& limits) {
  using namespace asio::experimental::awaitable_operators;
  FetchedEvidence out;
  // Named lambdas (GCC 12: no lambda temporary inside a co_await expression).
  auto legacy_task = [&]() -> asio::awaitable<std::optional<Result<Part>>> {
    if (!wanted.legacy) co_return Part{};
    try {
      co_return co_await read_legacy(client, where, digest, deadline, creds, budget, limits);
    } catch (const std::exception& e) {
      co_return make_error(Errc::internal, std::string("reading signatures: ") + e.what());
    }
  };
  auto bundle_task = [&]() -> asio::awaitable<std::optional<Result<Part>>> {
    if (!wanted.bundles) co_return Part{};
    try {
      co_return co_await read_bundles(client, where, digest, deadline, creds, budget, limits);
    } catch (const std::exception& e) {
      co_return make_error(Errc::internal, std::string("reading bundles: ") + e.what());
    }
  };
  auto attestation_task = [&]() -> asio::awaitable<std::optional<Result<Part>>> {
    if (!wanted.attestations) co_return Part{};
    try {
      co_return co_await read_attestation_part(client, where, digest, deadline, creds, budget,
                                               limits);
    } catch (const std::exception& e) {
      co_return make_error(Errc::internal, std::string("reading attestations: ") + e.what());
    }
  };
  auto [sigs, haul, atts] = co_await (legacy_task() && bundle_task() && attestation_task());
  for (auto* part : {&sigs, &haul, &atts}) {
    if (!*part || !(*part)->ok()) {
      if (!out.failure)
        out.failure = *part ? (*part)->error() : make_error(Errc::internal, "no result");
      (part == &sigs   ? out.failed.legacy
       : part == &haul ? out.failed.bundles
                       : out.failed.attestations) = true;
      continue;
    }
    Part& p = (*part)->value();
    auto& into = part == &atts ? out.evidence.attestations : out.evidence.signatures;
    for (auto& s : p.signatures) into.push_back(std::move(s));
    for (auto& u : p.unreadable) out.evidence.unreadable.push_back(std::move(u));
    for (auto& h : p.held) out.held.push_back(std::move(h));
    out.guessed = out.guessed || p.guessed;
  }
  co_return out;
}

}  // namespace sigil::verify
