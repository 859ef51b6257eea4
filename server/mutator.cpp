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
  auto ref = oci::parse_reference(image);
  if (!ref) return {};
  return pin_parsed(image, *ref, digest);
}

std::string pin_parsed(std::string_view image, const oci::Reference& parsed,
                       std::string_view digest) {
  if (!is_sha256_digest(digest) || parsed.has_digest()) return {};
  std::string out(image);
  // A tag is a ':' in the last path component; "host:5000/app" has none, "app" neither.
  const size_t slash = out.rfind('/');
  if (out.find(':', slash == std::string::npos ? 0 : slash + 1) == std::string::npos) {
    out += ":" + parsed.tag;
  }
  out += "@";
  out += digest;
  auto back = oci::parse_reference(out);
  if (!back || back->registry != parsed.registry || back->repository != parsed.repository ||
      back->tag != parsed.tag || back->digest != digest) {
    return {};
  }
  return out;
}

Mutator::Mutator(VerifyImage verify_image, MakeContext make_context)
    : verify_image_(std::move(verify_image)), make_context_(std::move(make_context)) {}

namespace {

// The line logged per mutation; the request's fields made one-line safe (append_log_value).
void log_mutation(const admission::Request& req, size_t pinned, std::string_view detail,
                  std::chrono::steady_clock::time_point start) {
  if (!spdlog::default_logger_raw()->should_log(spdlog::level::info)) return;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  std::string line = "mutation uid=";
  line.reserve(160);
  append_log_value(line, req.uid);
  line += " kind=";
  append_log_value(line, req.kind);
  line += " op=";
  append_log_value(line, req.operation);
  line += " object=";
  append_log_value(line, req.namespace_);
  line += '/';
  append_log_value(line, req.name);
  line += " images=";
  line += std::to_string(req.images.size());
  line += " pinned=";
  line += std::to_string(pinned);
  line += " detail=";
  line += detail.empty() ? std::string_view("-") : detail;
  line += " latency_ms=";
  line += std::to_string(ms);
  spdlog::info(line);
}

// The new tag-only image uses of a Pod, and their distinct images (first-seen order).
struct ToPin {
  std::vector<const admission::ImageUse*> uses;
  std::vector<std::string> images;
  std::vector<oci::Reference> refs;  // images[i] parsed
};

// The start of handle() and answer_now(): the answer when nothing is to be pinned (not a
// review, not a Pod's spec, no new tag), else nullopt with `out` filled.
std::optional<HttpReply> answer_without_pinning(std::string_view body,
                                                const Result<admission::Request>& decoded,
                                                ToPin& out,
                                                std::chrono::steady_clock::time_point start) {
  if (!decoded) {
    // A review whose object sigil cannot read (the API server runs mutating webhooks before it
    // validates the object, so an empty image can get here) is admitted unchanged: /validate
    // and the API server's own validation decide about it.
    const std::string uid = admission::review_uid(body);
    std::string line = "mutation uid=";
    append_log_value(line, uid.empty() ? "?" : uid);
    line += ": AdmissionReview not decoded, nothing patched: ";
    line += printable(decoded.error().message, 200);  // a decoded key or value may be in it
    spdlog::warn(line);
    if (uid.empty()) {
      nlohmann::json j;
      j["error"] = "malformed AdmissionReview: " + decoded.error().message;
      return HttpReply{400, "application/json",
                       j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
    }
    return allowed_unchanged(uid);
  }
  const admission::Request& req = *decoded;
  // Pods only (never workload templates), and only their spec or ephemeral containers.
  if (!admission::writes_pod_spec(req)) {
    log_mutation(req, 0, "NOT_A_POD_SPEC_WRITE", start);
    return allowed_unchanged(req.uid);
  }
  // The new tag-only uses: on UPDATE, an image already at its place is left as it is (rewriting
  // it would restart its container).
  for (const admission::ImageUse* use : admission::new_image_uses(req)) {
    auto ref = oci::parse_reference(use->image);
    if (!ref || ref->has_digest()) continue;
    out.uses.push_back(use);
    if (std::find(out.images.begin(), out.images.end(), use->image) == out.images.end()) {
      out.images.push_back(use->image);
      out.refs.push_back(std::move(*ref));
    }
  }
  if (out.images.empty()) {
    log_mutation(req, 0, "NO_TAG_TO_PIN", start);
    return allowed_unchanged(req.uid);
  }
  return std::nullopt;
}

// The reply from the images' verdicts (both paths end here): each image pinned to the digest
// its verdict names, when it names one.
HttpReply pin_reply(const admission::Request& req, const ToPin& to_pin,
                    const std::vector<verify::Verdict>& verdicts,
                    std::chrono::steady_clock::time_point start) {
  const std::vector<std::string>& images = to_pin.images;
  std::map<std::string, std::string> pinned_as;  // image -> pinned reference
  std::string unresolved;
  std::map<std::string_view, std::string_view> summary;  // image -> digest, for the annotation
  for (size_t i = 0; i < images.size(); ++i) {
    std::string pinned = pin_parsed(images[i], to_pin.refs[i], verdicts[i].digest);
    if (pinned.empty()) {
      // No policy matched it, or its tag could not be resolved: left as written, and /validate
      // judges it (denies it, if it must).
      if (!unresolved.empty()) unresolved += ",";
      const verify::Reason reason = verify::reported_reason(verdicts[i]);
      unresolved += reason == verify::Reason::none ? "NO_DIGEST" : verify::name(reason);
      continue;
    }
    summary.emplace(images[i], verdicts[i].digest);
    pinned_as.emplace(images[i], std::move(pinned));
  }
  std::vector<admission::ImagePatch> patches;
  for (const admission::ImageUse* use : to_pin.uses) {
    auto it = pinned_as.find(use->image);
    if (it != pinned_as.end()) patches.push_back({use->pointer, use->image, it->second});
  }

  admission::Response resp;
  resp.uid = req.uid;
  resp.allowed = true;  // never denies: /validate does
  if (!patches.empty()) {
    resp.patch = admission::encode_image_patch(patches);
    // {"image":"digest",...} in image order, as a JSON object's dump would write it.
    JsonObjectWithin pinned_json(kMaxAnnotation);
    for (const auto& [image, digest] : summary) pinned_json.add(image, digest);
    resp.audit_annotations["pinned"] = std::move(pinned_json).finish();
  }
  log_mutation(req, patches.size(), unresolved.empty() ? "" : "unpinned:" + unresolved, start);
  return HttpReply{200, "application/json", admission::encode_response(resp)};
}

}  // namespace

asio::awaitable<HttpReply> Mutator::handle(std::string_view body, Deadline deadline,
                                           AnswerOnce* once) const {
  const auto start = std::chrono::steady_clock::now();
  auto decoded = admission::decode_review(body);
  ToPin to_pin;
  if (auto early = answer_without_pinning(body, decoded, to_pin, start)) co_return *early;
  const admission::Request& req = *decoded;

  const verify::Context context = co_await build_context(make_context_, req, deadline);
  const std::vector<verify::Verdict> verdicts =
      co_await verify_all(verify_image_, to_pin.images, context, deadline);

  // The Server answered for us first (allowed, nothing patched; its line says TIMEOUT): this
  // late answer is only logged. Without the Server's claim, past the deadline pins nothing.
  if (once != nullptr ? !once->claim_verdict() : std::chrono::steady_clock::now() >= deadline) {
    log_mutation(req, 0, once != nullptr ? "LATE" : "TIMEOUT", start);
    co_return allowed_unchanged(req.uid);
  }
  co_return pin_reply(req, to_pin, verdicts, start);
}

std::optional<HttpReply> Mutator::answer_now(std::string_view body) const {
  if (!verify_now_ || (make_context_ && !context_now_)) return std::nullopt;
  const auto start = std::chrono::steady_clock::now();
  try {
    auto decoded = admission::decode_review(body);
    ToPin to_pin;
    if (auto early = answer_without_pinning(body, decoded, to_pin, start)) return early;
    const admission::Request& req = *decoded;
    auto verdicts = verdicts_now(verify_now_, context_now_, answered_now_, req, to_pin.images);
    if (!verdicts) return std::nullopt;  // nothing pinned or logged yet: handle() starts over
    return pin_reply(req, to_pin, *verdicts, start);
  } catch (const std::exception& e) {
    spdlog::debug("mutation: the synchronous path gave up: {}", e.what());
    return std::nullopt;
  }
}

HttpReply Mutator::timeout_reply(std::string_view body) const {
  const std::string uid = admission::review_uid(body);
  std::string line = "mutation uid=";
  append_log_value(line, uid.empty() ? "?" : uid);
  line += " pinned=0 detail=TIMEOUT (left unchanged for /validate)";
  spdlog::warn(line);
  return allowed_unchanged(uid);
}

}  // namespace sigil::server
