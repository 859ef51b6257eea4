#include "server/mutator.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "admission/admission.hpp"
#include "common/encoding.hpp"
#include "oci/reference.hpp"

namespace sigil::server {
namespace {

namespace asio = boost::asio;

constexpr size_t kMaxAnnotation = 2 * 1024;

HttpReply allowed_unchanged(const std::string& uid) {
  admission::Response resp;
  resp.uid = uid;
  resp.allowed = true;
  return HttpReply{200, "application/json", admission::encode_response(resp)};
}

bool is_sha256_digest(std::string_view digest) {
  constexpr std::string_view kPrefix = "sha256:";
  return digest.size() == kPrefix.size() + 64 && digest.substr(0, kPrefix.size()) == kPrefix &&
         is_lower_hex(digest.substr(kPrefix.size()));
}

}  // namespace

std::string pin_image(std::string_view image, std::string_view digest) {
  if (!is_sha256_digest(digest)) return {};
  auto ref = oci::parse_reference(image);
  if (!ref || ref->has_digest()) return {};
  std::string out(image);
  // A tag is a ':' in the last path component; "host:5000/app" has none, "app" neither.
  const size_t slash = out.rfind('/');
  if (out.find(':', slash == std::string::npos ? 0 : slash + 1) == std::string::npos) {
    out += ":" + ref->tag;
  }
  out += "@";
  out += digest;
  auto back = oci::parse_reference(out);
  if (!back || back->registry != ref->registry || back->repository != ref->repository ||
      back->tag != ref->tag || back->digest != digest) {
    return {};
  }
  return out;
}

Mutator::Mutator(VerifyImage verify_image, MakeContext make_context)
    : verify_image_(std::move(verify_image)), make_context_(std::move(make_context)) {}

asio::awaitable<HttpReply> Mutator::handle(std::string_view body, Deadline deadline) const {
  const auto start = std::chrono::steady_clock::now();
  auto decoded = admission::decode_review(body);
  if (!decoded) {
    // A review whose object sigil cannot read (the API server runs mutating webhooks before it
    // validates the object, so an empty image can get here) is admitted unchanged: /validate
    // and the API server's own validation decide about it.
    const std::string uid = admission::review_uid(body);
    spdlog::warn("mutation uid={}: AdmissionReview not decoded, nothing patched: {}",
                 uid.empty() ? "?" : uid, truncate_politely(decoded.error().message, 200));
    if (uid.empty()) {
      nlohmann::json j;
      j["error"] = "malformed AdmissionReview: " + decoded.error().message;
      co_return HttpReply{400, "application/json",
                          j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
    }
    co_return allowed_unchanged(uid);
  }
  const admission::Request& req = *decoded;

  auto log_line = [&](size_t pinned, const std::string& detail) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    spdlog::info(
        "mutation uid={} kind={} op={} object={}/{} images={} pinned={} detail={} "
        "latency_ms={}",
        req.uid, req.kind, req.operation, req.namespace_, req.name, req.images.size(), pinned,
        detail.empty() ? "-" : detail, ms);
  };

  // Pods only (never workload templates), and only their spec or ephemeral containers.
  const bool pod = req.resource_group.empty() && req.resource == "pods" && req.judged &&
                   (req.sub_resource.empty() || req.sub_resource == "ephemeralcontainers");
  if (!pod) {
    log_line(0, "NOT_A_POD_SPEC_WRITE");
    co_return allowed_unchanged(req.uid);
  }

  // The new tag-only uses: on UPDATE, an image already at its place is left as it is (rewriting
  // it would restart its container).
  std::vector<const admission::ImageUse*> uses;
  std::vector<std::string> images;  // distinct, first-seen order
  for (const admission::ImageUse* use : admission::new_image_uses(req)) {
    auto ref = oci::parse_reference(use->image);
    if (!ref || ref->has_digest()) continue;
    uses.push_back(use);
    if (std::find(images.begin(), images.end(), use->image) == images.end()) {
      images.push_back(use->image);
    }
  }
  if (images.empty()) {
    log_line(0, "NO_TAG_TO_PIN");
    co_return allowed_unchanged(req.uid);
  }

  const verify::Context context = co_await build_context(make_context_, req, deadline);
  const std::vector<verify::Verdict> verdicts =
      co_await verify_all(verify_image_, images, context, deadline);

  // Past the deadline the Server has already answered for us: nothing more to say.
  if (std::chrono::steady_clock::now() >= deadline) {
    log_line(0, "TIMEOUT");
    co_return allowed_unchanged(req.uid);
  }

  std::map<std::string, std::string> pinned_as;  // image -> pinned reference
  std::string unresolved;
  nlohmann::json summary = nlohmann::json::object();
  for (size_t i = 0; i < images.size(); ++i) {
    std::string pinned = pin_image(images[i], verdicts[i].digest);
    if (pinned.empty()) {
      // No policy matched it, or its tag could not be resolved: left as written, and /validate
      // judges it (denies it, if it must).
      if (!unresolved.empty()) unresolved += ",";
      const verify::Reason reason = verify::reported_reason(verdicts[i]);
      unresolved += reason == verify::Reason::none ? "NO_DIGEST" : verify::name(reason);
      continue;
    }
    summary[images[i]] = verdicts[i].digest;
    pinned_as.emplace(images[i], std::move(pinned));
  }
  std::vector<admission::ImagePatch> patches;
  for (const admission::ImageUse* use : uses) {
    auto it = pinned_as.find(use->image);
    if (it != pinned_as.end()) patches.push_back({use->pointer, use->image, it->second});
  }

  admission::Response resp;
  resp.uid = req.uid;
  resp.allowed = true;  // never denies: /validate does
  if (!patches.empty()) {
    resp.patch = admission::encode_image_patch(patches);
    resp.audit_annotations["pinned"] = truncate_politely(
        summary.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), kMaxAnnotation);
  }
  log_line(patches.size(), unresolved.empty() ? "" : "unpinned:" + unresolved);
  co_return HttpReply{200, "application/json", admission::encode_response(resp)};
}

HttpReply Mutator::timeout_reply(std::string_view body) const {
  const std::string uid = admission::review_uid(body);
  spdlog::warn("mutation uid={} pinned=0 detail=TIMEOUT (left unchanged for /validate)",
               uid.empty() ? "?" : uid);
  return allowed_unchanged(uid);
}

}  // namespace sigil::server
