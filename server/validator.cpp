#include "server/validator.hpp"

#include <algorithm>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "admission/admission.hpp"
#include "common/encoding.hpp"
#include "common/json_text.hpp"

namespace sigil::server {
namespace {

namespace asio = boost::asio;
using verify::Outcome;
using verify::Reason;
using verify::Verdict;

constexpr size_t kMaxWarning = 120;
constexpr size_t kMaxMessage = 8 * 1024;
constexpr size_t kMaxAnnotation = 2 * 1024;
constexpr size_t kMaxWarnings = 20;

std::string json_error(std::string_view message) {
  nlohmann::json j;
  j["error"] = std::string(message);
  // error_handler_t::replace: a message quoting invalid UTF-8 must not throw.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

HttpReply ok_json(std::string body) {
  return HttpReply{200, "application/json", std::move(body)};
}

// context with Context::pod_image set, for the images pod_images flags (a flag per image, as
// pod_images_of gives); nullopt when there are no flags.
std::optional<verify::Context> pod_context_of(const verify::Context& context,
                                              const std::vector<char>* pod_images) {
  if (pod_images == nullptr) return std::nullopt;
  std::optional<verify::Context> out(context);
  out->pod_image = true;
  return out;
}

// Runs one verifier and turns any exception into a denied verdict (fail closed).
asio::awaitable<Verdict> run_one(const VerifyImage* fn, std::string image,
                                 const verify::Context* context, Deadline deadline) {
  try {
    if (!*fn) throw std::runtime_error("no verifier configured");
    Verdict v = co_await (*fn)(image, *context, deadline);
    v.image = image;  // the verdict names the image this admission asked about
    co_return v;
  } catch (const std::exception& e) {
    co_return verify::denial(image, Reason::internal,
                             std::string("could not be verified: internal error: ") + e.what());
  } catch (...) {
    co_return verify::denial(image, Reason::internal, "could not be verified: internal error");
  }
}

// The images of one admission, verified by a few workers on one strand (no locks needed):
// each worker takes the next image until none is left.
constexpr size_t kMaxParallelImages = 4;
struct Batch {
  const VerifyImage* fn;
  const std::vector<std::string>* images;
  const verify::Context* context;
  const verify::Context* pod_context;   // for the images flagged in pod_images
  const std::vector<char>* pod_images;  // null or one flag per image
  Deadline deadline;
  std::vector<Verdict>* verdicts;
  std::vector<char>* have;
  size_t next;
};

asio::awaitable<void> verify_batch(Batch* b) {
  if (b == nullptr) co_return;
  while (b->next < b->images->size()) {
    const size_t i = b->next++;
    const bool pod = b->pod_images != nullptr && (*b->pod_images)[i] != 0;
    (*b->verdicts)[i] =
        co_await run_one(b->fn, (*b->images)[i], pod ? b->pod_context : b->context, b->deadline);
    (*b->have)[i] = 1;
  }
}

}  // namespace

JsonObjectWithin::JsonObjectWithin(size_t max_bytes) : max_(max_bytes) {
  out_.push_back('{');
}

void JsonObjectWithin::add(std::string_view key, std::string_view value) {
  // Room kept for the closing brace and a `,"...":"<n> more"` member.
  constexpr size_t kTail = 32;
  if (left_out_ > 0) {
    ++left_out_;
    return;
  }
  member_.clear();
  if (out_.size() > 1) member_.push_back(',');
  append_json_string(member_, key);
  member_.push_back(':');
  append_json_string(member_, value);
  if (max_ != std::string::npos && out_.size() + member_.size() + kTail > max_) {
    ++left_out_;
    return;
  }
  out_ += member_;
}

std::string JsonObjectWithin::finish() && {
  if (left_out_ > 0) {
    if (out_.size() > 1) out_.push_back(',');
    out_ += "\"...\":\"";
    out_ += std::to_string(left_out_);
    out_ += " more\"";
  }
  out_.push_back('}');
  return std::move(out_);
}

std::string audit_images_json(std::vector<std::pair<std::string_view, std::string>> entries,
                              size_t max_bytes) {
  // Byte order of the keys (std::string's, which compares as unsigned char), as the nlohmann
  // object this replaced wrote them; stable, so of equal keys the last one set is kept.
  // (std::stable_sort allocates a buffer even for one element: most pods have one image.)
  if (entries.size() > 1) {
    std::stable_sort(entries.begin(), entries.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  JsonObjectWithin out(max_bytes);
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i + 1 < entries.size() && entries[i + 1].first == entries[i].first) continue;
    out.add(entries[i].first, entries[i].second);
  }
  return std::move(out).finish();
}

std::string truncate_politely(std::string_view s, size_t max_len) {
  if (s.size() <= max_len) return std::string(s);
  if (max_len < 3) return std::string(max_len, '.');
  size_t cut = max_len - 3;
  // Do not split a UTF-8 sequence: back up over continuation bytes.
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(s.substr(0, cut)) + "...";
}

asio::awaitable<verify::Context> build_context(const MakeContext& make_context,
                                               const admission::Request& request,
                                               Deadline deadline) {
  verify::Context context;
  context.namespace_ = request.namespace_;
  if (!make_context) co_return context;
  try {
    context = co_await make_context(request, deadline);
  } catch (const std::exception& e) {
    std::string uid;
    append_log_value(uid, request.uid);
    spdlog::warn("admission uid={}: building its context failed: {}", uid, e.what());
    context = verify::Context{};
    context.namespace_ = request.namespace_;
  }
  co_return context;
}

asio::awaitable<std::vector<Verdict>> verify_all(const VerifyImage& verify_image,
                                                 const std::vector<std::string>& images,
                                                 const verify::Context& context, Deadline deadline,
                                                 const std::vector<char>* pod_images) {
  // Concurrently, at most kMaxParallelImages at a time (a pod of 50 images from one hostile
  // registry must not open 50 fetch pipelines at once); the group waits for every worker, and
  // each verification ends by the deadline on its own.
  std::vector<Verdict> verdicts(images.size());
  std::vector<char> have(images.size(), 0);
  if (pod_images != nullptr && pod_images->size() != images.size()) pod_images = nullptr;
  const std::optional<verify::Context> pod_context = pod_context_of(context, pod_images);
  if (images.size() == 1) {
    // Most pods run one image: await it directly (no spawn, no group).
    const bool pod = pod_images != nullptr && (*pod_images)[0] != 0;
    verdicts[0] =
        co_await run_one(&verify_image, images[0], pod ? &*pod_context : &context, deadline);
    have[0] = 1;
  } else if (!images.empty()) {
    auto ex = co_await asio::this_coro::executor;
    Batch batch{&verify_image,
                &images,
                &context,
                pod_context ? &*pod_context : nullptr,
                pod_images,
                deadline,
                &verdicts,
                &have,
                0};
    using Op = decltype(asio::co_spawn(ex, verify_batch(nullptr), asio::deferred));
    std::vector<Op> ops;
    const size_t workers = std::min(images.size(), kMaxParallelImages);
    ops.reserve(workers);
    for (size_t w = 0; w < workers; ++w)
      ops.push_back(asio::co_spawn(ex, verify_batch(&batch), asio::deferred));
    auto [order, errors] = co_await asio::experimental::make_parallel_group(std::move(ops))
                               .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
    (void)order;
    (void)errors;  // run_one catches everything; an image left without a verdict is denied
  }
  for (size_t i = 0; i < images.size(); ++i) {
    if (have[i]) continue;
    verdicts[i] =
        verify::denial(images[i], Reason::internal, "could not be verified: internal error");
  }
  co_return verdicts;
}

Validator::Validator(VerifyImage verify_image, MakeContext make_context)
    : verify_image_(std::move(verify_image)), make_context_(std::move(make_context)) {}

namespace {

// The line logged per admission: key=value pairs, values made safe by append_log_value. Built by
// hand (no format string parsed at run time): it is written once per admission, and was a tenth
// of sigil's own instructions on the cached path.
std::string decision_line(const admission::Request* req, std::string_view decision,
                          std::string_view reasons, std::optional<long long> latency_ms) {
  std::string line;
  line.reserve(160);
  line += "admission uid=";
  append_log_value(line, req ? std::string_view(req->uid) : "?");
  line += " kind=";
  append_log_value(line, req ? std::string_view(req->kind) : "?");
  if (req) {
    line += " op=";
    append_log_value(line, req->operation);
  }
  line += " object=";
  append_log_value(line, req ? std::string_view(req->namespace_) : "?");
  line += '/';
  append_log_value(line, req ? std::string_view(req->name) : "?");
  if (req) {
    line += req->dry_run ? " dryRun=true images=" : " dryRun=false images=";
    line += std::to_string(req->images.size());
  }
  line += " decision=";
  line += decision;
  line += " reasons=";
  line += reasons.empty() ? std::string_view("-") : reasons;
  if (latency_ms) {
    line += " latency_ms=";
    line += std::to_string(*latency_ms);
  }
  return line;
}

// late: the verdict came after the Server answered TIMEOUT, which was logged as the decision; this
// line says what the verdict would have been ("decision=late-denied ... answered=TIMEOUT"), so
// that a search for decision=denied still finds one line per admission.
void log_decision(const admission::Request& req, std::string_view decision,
                  std::string_view reasons, std::chrono::steady_clock::time_point start,
                  bool late = false) {
  if (!spdlog::default_logger_raw()->should_log(spdlog::level::info)) return;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  std::string late_decision;
  if (late) late_decision.append("late-").append(decision);
  std::string line =
      decision_line(&req, late ? late_decision : decision, reasons, static_cast<long long>(ms));
  if (late) line += " answered=TIMEOUT";
  // spdlog::info(string) writes the line as it is: no format string, so no '{' in it matters.
  spdlog::info(line);
}

// The start of handle() and answer_now(): the reply to a review that does not decode or that
// runs nothing sigil judges; nullopt when its images must be verified.
std::optional<HttpReply> answer_without_verifying(std::string_view body,
                                                  const Result<admission::Request>& decoded,
                                                  std::chrono::steady_clock::time_point start) {
  if (!decoded) {
    // A review past sigil's caps (more than 1000 containers, a repeated key) whose uid can be
    // read is denied with a 200 (one nested past 64 levels has no readable uid: the uid is read
    // with the same parser): an HTTP error would leave the decision to the
    // webhook's failurePolicy, and with `Ignore` admit a Pod nobody judged. Only a body that is
    // no review at all gets a 400.
    const std::string uid = admission::review_uid(body);
    std::string line = "admission uid=";
    append_log_value(line, uid.empty() ? "?" : uid);
    line += uid.empty() ? " rejected (HTTP 400)" : " decision=denied reasons=INVALID_REVIEW";
    line += ": malformed AdmissionReview: ";
    line += printable(decoded.error().message, 200);  // a decoded key or value may be in it
    spdlog::warn(line);
    if (uid.empty()) {
      return HttpReply{400, "application/json",
                       json_error("malformed AdmissionReview: " + decoded.error().message)};
    }
    admission::Response resp;
    resp.uid = uid;
    resp.allowed = false;
    resp.code = 400;
    resp.reason = std::string(verify::name(Reason::invalid_review));
    resp.message = "sigil cannot read this AdmissionReview, so none of its images is judged: " +
                   printable(decoded.error().message, 300);
    resp.audit_annotations["images"] = "INVALID_REVIEW";
    HttpReply reply = ok_json(admission::encode_response(resp));
    reply.result = AdmissionResult::denied;
    return reply;
  }
  const admission::Request& req = *decoded;
  const char* why = nullptr;
  if (!req.judged || req.operation == "DELETE" || req.operation == "CONNECT" ||
      req.images.empty()) {
    why = "";
  } else if (req.operation == "UPDATE" && req.deleting) {
    // Nothing new can run, so nothing is asked of a registry: an object being deleted (a Job's
    // pod losing its finalizer must not hang in Terminating because a registry is down), and an
    // UPDATE whose every image the old object already had at the same place (a label, a
    // finalizer, a scale to zero). Pods are always judged when they are created: the API
    // server clears a deletionTimestamp on CREATE before validating webhooks run, and a CREATE
    // that still carries one is judged all the same.
    why = "BEING_DELETED";
  } else if (req.operation == "UPDATE" && admission::new_image_uses(req).empty()) {
    why = "IMAGES_UNCHANGED";
  }
  if (why == nullptr) return std::nullopt;
  admission::Response resp;
  resp.uid = req.uid;
  resp.allowed = true;
  log_decision(req, "allowed-unjudged", why, start);
  return ok_json(admission::encode_response(resp));
}

// Up to this many images, a request's images are matched by a linear scan, which allocates
// nothing; past it by a set or map (a hostile pod may list 10k containers).
constexpr size_t kScanImages = 16;

// Where each of a request's distinct images sits in `images`: found by a scan up to
// kScanImages (allocating nothing), by a map past it (a hostile pod may list 10k).
class ImageIndex {
 public:
  explicit ImageIndex(const std::vector<std::string>& images) : images_(images) {
    if (images.size() > kScanImages) {
      for (size_t i = 0; i < images.size(); ++i) map_.emplace(images[i], i);
    }
  }
  // The position of image, or images.size() when it is not there.
  size_t find(std::string_view image) const {
    if (images_.size() > kScanImages) {
      const auto it = map_.find(image);
      return it == map_.end() ? images_.size() : it->second;
    }
    size_t i = 0;
    while (i < images_.size() && images_[i] != image) ++i;
    return i;
  }

 private:
  const std::vector<std::string>& images_;
  std::map<std::string_view, size_t> map_;
};

// The distinct images of a judged request, in first-seen order.
std::vector<std::string> distinct_images(const admission::Request& req) {
  std::vector<std::string> images;
  if (req.images.size() <= kScanImages) {  // a pod's handful: nothing allocated but the result
    images.reserve(req.images.size());
    for (const auto& use : req.images) {
      if (std::find(images.begin(), images.end(), use.image) == images.end()) {
        images.push_back(use.image);
      }
    }
    return images;
  }
  std::set<std::string_view> seen;  // views of req's strings: a hostile pod may list 10k
  for (const auto& use : req.images) {
    if (seen.insert(use.image).second) images.push_back(use.image);
  }
  return images;
}

// The guard's TIMEOUT message, naming the admission's images (the first two, then a count), so
// that the one line says which pod's verification was slow. At most kMaxMessage bytes.
std::string timeout_message(const std::vector<std::string>& images) {
  std::string msg = "sigil did not finish verifying ";
  if (images.empty()) {
    msg += "within the webhook timeout (TIMEOUT)";
    return msg;
  }
  msg += images.size() == 1 ? "image " : "images ";
  for (size_t i = 0; i < images.size() && i < 2; ++i) {
    if (i > 0) msg += images.size() == 2 ? " and " : ", ";
    msg += truncate_politely(images[i], 200);
  }
  if (images.size() > 2) msg += " and " + std::to_string(images.size() - 2) + " more";
  msg += " within the webhook timeout (TIMEOUT)";
  return truncate_politely(msg, kMaxMessage);
}

}  // namespace

std::vector<char> pod_images_of(const admission::Request& req,
                                const std::vector<std::string>& images) {
  std::vector<char> flags;
  if (!admission::writes_pod_spec(req)) return flags;
  // Cheap first: a request whose every image names a digest (a pinned Pod) has none.
  const auto by_tag = [](std::string_view image) {
    return image.find('@') == std::string_view::npos;
  };
  if (std::none_of(req.images.begin(), req.images.end(),
                   [&](const admission::ImageUse& use) { return by_tag(use.image); })) {
    return flags;
  }
  bool any = false;
  flags.assign(images.size(), 0);
  const ImageIndex index(images);
  for (const admission::ImageUse* use : admission::new_image_uses(req)) {
    if (!by_tag(use->image)) continue;
    const size_t i = index.find(use->image);
    if (i == images.size()) continue;
    flags[i] = 1;
    any = true;
  }
  if (!any) flags.clear();
  return flags;
}

std::optional<std::vector<Verdict>> verdicts_now(const VerifyNow& verify_now,
                                                 const ContextNow& context_now,
                                                 const AnsweredNow& answered,
                                                 const admission::Request& request,
                                                 const std::vector<std::string>& images,
                                                 const std::vector<char>* pod_images) {
  std::optional<verify::Context> context;
  if (context_now) {
    context = context_now(request);
    if (!context) return std::nullopt;
  } else {
    context.emplace();
    context->namespace_ = request.namespace_;
  }
  if (pod_images != nullptr && pod_images->size() != images.size()) pod_images = nullptr;
  const std::optional<verify::Context> pod_context = pod_context_of(*context, pod_images);
  std::vector<Verdict> verdicts;
  verdicts.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const bool pod = pod_images != nullptr && (*pod_images)[i] != 0;
    std::optional<Verdict> v = verify_now(images[i], pod ? *pod_context : *context);
    if (!v) return std::nullopt;
    verdicts.push_back(std::move(*v));
  }
  if (answered) answered(verdicts);
  return verdicts;
}

void append_log_value(std::string& line, std::string_view v) {
  if (v.empty()) {
    line += '-';
    return;
  }
  const size_t from = line.size();
  line += v;  // one copy, then the rare unsafe byte replaced in place
  for (char *p = line.data() + from, *end = line.data() + line.size(); p != end; ++p) {
    const auto c = static_cast<unsigned char>(*p);
    if (c <= 0x20 || c == 0x7f || c == '"') *p = '?';
  }
}

void Validator::observe(const admission::Request& req, const admission::Response& resp,
                        const std::vector<Verdict>& verdicts) const {
  if (!observe_) return;
  try {
    observe_(req, resp, verdicts);
  } catch (const std::exception& e) {
    std::string uid;
    append_log_value(uid, req.uid);
    spdlog::warn("admission uid={}: decision observer failed: {}", uid, e.what());
  }
}

HttpReply Validator::finish(const admission::Request& req, const std::vector<std::string>& images,
                            std::vector<Verdict>& verdicts,
                            std::chrono::steady_clock::time_point start, bool late) const {
  // Each image's verdict gets every path it appears at.
  const ImageIndex index(images);
  for (const auto& use : req.images) {
    const size_t i = index.find(use.image);
    if (i < images.size()) verdicts[i].containers.push_back(use.path);
  }
  admission::Response resp;
  resp.uid = req.uid;
  std::vector<std::string> deny_lines;
  std::string reasons;
  std::vector<std::pair<std::string_view, std::string>> summary;
  summary.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    Verdict& v = verdicts[i];
    v.image = images[i];
    if (count_ && !late) {
      try {
        count_(v);
      } catch (...) {  // metrics never fail an admission
      }
    }
    // The audit annotation: "denied NOT_SIGNED sha256:...", "allowed", "warned WARN sha256:...".
    const std::string_view reason = verify::name(verify::reported_reason(v));
    const std::string_view outcome = verify::name(v.outcome);
    std::string entry;
    entry.reserve(outcome.size() + reason.size() + v.digest.size() + 2);
    entry += outcome;
    if (!reason.empty()) entry.append(" ").append(reason);
    // A digest read with sigil's own credentials is withheld here too: the reply goes to
    // whoever posted the review.
    if (!v.digest.empty() && !v.withheld) entry.append(" ").append(v.digest);
    summary.emplace_back(images[i], std::move(entry));
    if (v.outcome == Outcome::denied) {
      deny_lines.push_back(verify::message(v));
      if (!reasons.empty()) reasons += ",";
      reasons += reason;
    } else {
      std::vector<std::string> ws = verify::warning_lines(v);
      if (v.outcome == Outcome::warned && ws.empty()) ws.push_back(verify::message(v));
      for (const auto& w : ws) {
        if (resp.warnings.size() >= kMaxWarnings) break;
        resp.warnings.push_back(truncate_politely(w, kMaxWarning));
      }
      if (v.outcome == Outcome::warned) {
        if (!reasons.empty()) reasons += ",";
        reasons += reason;
      }
    }
  }

  resp.audit_annotations["images"] = audit_images_json(std::move(summary), kMaxAnnotation);
  if (!deny_lines.empty()) {
    std::string msg;
    for (const auto& line : deny_lines) {
      if (!msg.empty()) msg += "; ";
      msg += line;
    }
    resp.allowed = false;
    resp.reason = "Forbidden";
    resp.code = 403;
    resp.message = truncate_politely(msg, kMaxMessage);
    log_decision(req, "denied", reasons, start, late);
  } else {
    resp.allowed = true;
    log_decision(req, resp.warnings.empty() ? "allowed" : "allowed-with-warnings", reasons, start,
                 late);
  }
  HttpReply reply = ok_json(admission::encode_response(resp));
  reply.result = !resp.allowed           ? AdmissionResult::denied
                 : resp.warnings.empty() ? AdmissionResult::allowed
                                         : AdmissionResult::warned;
  if (!late && reply.result != AdmissionResult::allowed) observe(req, resp, verdicts);
  return reply;
}

asio::awaitable<HttpReply> Validator::handle(std::string_view body, Deadline deadline,
                                             AnswerOnce* once) const {
  const auto start = std::chrono::steady_clock::now();
  auto decoded = admission::decode_review(body);
  if (auto early = answer_without_verifying(body, decoded, start)) co_return std::move(*early);
  const admission::Request& req = *decoded;
  const std::vector<std::string> images = distinct_images(req);
  const std::vector<char> pod_images = pod_images_of(req, images);
  // Who is asking (namespace, pull credentials), once for all images; then every image at once.
  const verify::Context context = co_await build_context(make_context_, req, deadline);
  std::vector<Verdict> verdicts = co_await verify_all(verify_image_, images, context, deadline,
                                                      pod_images.empty() ? nullptr : &pod_images);
  // Near the deadline the Server may have answered TIMEOUT already: then this verdict is late,
  // and only logged. Otherwise the claim makes it the answer, even past the deadline.
  const bool late = once != nullptr && !once->claim_verdict();
  co_return finish(req, images, verdicts, start, late);
}

std::optional<HttpReply> Validator::answer_now(std::string_view body) const {
  if (!verify_now_ || (make_context_ && !context_now_)) return std::nullopt;
  const auto start = std::chrono::steady_clock::now();
  try {
    auto decoded = admission::decode_review(body);
    if (auto early = answer_without_verifying(body, decoded, start)) return early;
    const admission::Request& req = *decoded;
    const std::vector<std::string> images = distinct_images(req);
    const std::vector<char> pod_images = pod_images_of(req, images);
    auto verdicts = verdicts_now(verify_now_, context_now_, answered_now_, req, images,
                                 pod_images.empty() ? nullptr : &pod_images);
    if (!verdicts) return std::nullopt;  // nothing logged or counted yet: handle() starts over
    return finish(req, images, *verdicts, start);
  } catch (const std::exception& e) {
    // handle() starts over and, failing again, denies (fail closed).
    spdlog::debug("admission: the synchronous path gave up: {}", e.what());
    return std::nullopt;
  }
}

HttpReply handle_policy_review(std::string_view body, const CheckPolicyObject& check) {
  auto decoded = admission::decode_review(body);
  if (!decoded) {
    return HttpReply{400, "application/json",
                     json_error("malformed AdmissionReview: " + decoded.error().message)};
  }
  admission::Response resp;
  resp.uid = decoded->uid;
  resp.allowed = true;
  if (!decoded->object_json.empty() && check) {
    PolicyCheck checked;
    try {
      checked = check(decoded->kind, decoded->object_json);
    } catch (const std::exception& e) {
      checked.problem = std::string("internal error while checking the policy: ") + e.what();
    }
    if (!checked.problem.empty()) {
      resp.allowed = false;
      resp.reason = "Invalid";
      resp.code = 422;
      resp.message = truncate_politely(checked.problem, kMaxMessage);
    } else {
      resp.warnings = std::move(checked.warnings);
    }
  }
  // The same one-line-safe values as the admission line: anyone who reaches /validate-policy
  // chooses these fields.
  std::string line = "policy review uid=";
  append_log_value(line, decoded->uid);
  line += " kind=";
  append_log_value(line, decoded->kind);
  line += " op=";
  append_log_value(line, decoded->operation);
  line += " object=";
  append_log_value(line, decoded->namespace_);
  line += '/';
  append_log_value(line, decoded->name);
  line += resp.allowed ? " decision=allowed" : " decision=denied";
  spdlog::info(line);
  return ok_json(admission::encode_response(resp));
}

HttpReply Validator::timeout_reply(std::string_view body) const {
  admission::Response resp;
  auto decoded = admission::decode_review(body);
  if (decoded) resp.uid = decoded->uid;
  resp.allowed = false;
  resp.reason = std::string(verify::name(Reason::timeout));
  resp.code = 403;
  resp.message = timeout_message(decoded ? distinct_images(*decoded) : std::vector<std::string>{});
  resp.audit_annotations["images"] = "TIMEOUT";
  spdlog::warn(decision_line(decoded ? &*decoded : nullptr, "denied", "TIMEOUT", std::nullopt));
  HttpReply reply = ok_json(admission::encode_response(resp));
  reply.result = AdmissionResult::denied;
  if (decoded) observe(*decoded, resp, {});  // a denial like any other: the Event names TIMEOUT
  return reply;
}

std::string_view result_name(AdmissionResult r) noexcept {
  switch (r) {
    case AdmissionResult::none:
      return "none";
    case AdmissionResult::allowed:
      return "allowed";
    case AdmissionResult::warned:
      return "warned";
    case AdmissionResult::denied:
      return "denied";
    case AdmissionResult::error:
      return "error";
  }
  return "error";
}

}  // namespace sigil::server
