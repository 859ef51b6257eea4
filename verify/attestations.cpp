// verify/attestations.cpp: see attestations.hpp.
#include "verify/attestations.hpp"

#include <algorithm>
#include <set>
#include <utility>

#include "crypto/cosign.hpp"
#include "oci/manifest.hpp"
#include "oci/reference.hpp"

namespace sigil::verify {

namespace {

std::string annotation(const oci::Descriptor& d, std::string_view key) {
  auto it = d.annotations.find(std::string(key));
  return it == d.annotations.end() ? std::string() : it->second;
}

}  // namespace

std::string attestation_tag(const std::string& digest) {
  std::string tag = oci::signature_tag(digest);  // sha256-<hex>.sig
  return tag.substr(0, tag.size() - 4) + ".att";
}

boost::asio::awaitable<Result<AttestationPart>> read_attestations(
    registry::Client& client, const Location& where, const std::string& digest, Deadline deadline,
    const registry::PullCredentials& creds, ByteBudget& budget, const EvidenceLimits& limits) {
  AttestationPart out;
  const std::string tag = attestation_tag(digest);
  auto reserved =
      detail::take(budget, limits.manifest_reservation, "reading attestation manifest " + tag);
  if (!reserved.ok()) co_return reserved.error();
  auto manifest =
      co_await client.get_manifest(where.registry, where.repository, tag, deadline, creds);
  if (!manifest.ok()) {
    if (manifest.error().code == Errc::not_found) co_return out;
    co_return manifest.error();
  }
  auto parsed = oci::parse_manifest(manifest->body, manifest->media_type);
  if (!parsed.ok()) {
    co_return make_error(Errc::parse_error, "attestation manifest " + tag +
                                                " is malformed: " + parsed.error().message);
  }
  if (parsed->is_index) {
    co_return make_error(Errc::parse_error,
                         "attestation tag " + tag + " holds an index, not a manifest");
  }
  reserved->shrink_to(std::min<uint64_t>(limits.manifest_reservation, manifest->body.size() * 2));

  std::set<std::string> seen;  // exact duplicate layers are dropped
  size_t index = 0, taken = 0;
  for (const auto& layer : parsed->layers) {
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
    auto reading = detail::take(budget, 2 * size, "reading attestations");
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
    auto held = detail::take(budget, kept, "reading attestations");
    if (!held.ok()) co_return held.error();
    out.held.push_back(std::move(*held));
    for (auto& e : *entities) out.attestations.push_back(std::move(e));
  }
  co_return out;
}

}  // namespace sigil::verify
