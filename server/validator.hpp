// server/validator.hpp: the /validate glue between an AdmissionReview body and the verifier.
//
// Role: decode the review (admission/), verify every distinct image concurrently through an
// injected VerifyImage function (app/webhook.cpp binds it to the verify engine in production; a
// fake in tests), give each verdict the containers that use its image, and encode the response
// with the verdicts' own one-line messages (verify::message) and reason codes. No sockets and no
// Beast here; the Server owns the transport and the hard deadline. Sees only verify/verdict.hpp
// and verify/context.hpp, never the engine. Never throws; an internal failure denies.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "admission/admission.hpp"
#include "common/deadline.hpp"
#include "verify/context.hpp"
#include "verify/verdict.hpp"

namespace sigil::server {

// What an admission answered, for metrics (ServerOptions::observe_admission). none: the reply
// is not an admission decision (the server counts a 200 as allowed, anything else as error).
enum class AdmissionResult : uint8_t { none, allowed, warned, denied, error };
std::string_view result_name(AdmissionResult r) noexcept;

struct HttpReply {
  int status = 500;
  std::string content_type;
  std::string body;
  std::string allow = {};  // the Allow header of a 405 (router.hpp)
  AdmissionResult result = AdmissionResult::none;
};

// Who answers an admission whose handler is still running near its deadline: the handler, with
// its verdict, or the Server, with TIMEOUT. Each side claims the answer once it has one; the first
// claim wins and the other side learns that it lost, so exactly one answer is logged as the
// decision, counted and told to the observer (an Event), and it is the one the API server gets.
// Shared by the Server and the handler's coroutine, which the Server abandons at the deadline.
class AnswerOnce {
 public:
  // The handler, its verdict in hand: true when its answer is the one sent; false when the Server
  // has answered TIMEOUT already (the verdict is late).
  bool claim_verdict() noexcept { return claim(kVerdict); }
  // The Server, at the deadline: true when it answers TIMEOUT; false when the handler has claimed
  // the answer and its reply is on the way.
  bool claim_timeout() noexcept { return claim(kTimeout); }

 private:
  static constexpr uint8_t kOpen = 0, kVerdict = 1, kTimeout = 2;
  bool claim(uint8_t who) noexcept {
    uint8_t seen = kOpen;
    return state_.compare_exchange_strong(seen, who) || seen == who;
  }
  std::atomic<uint8_t> state_{kOpen};
};

// Verifies one image (as written in the pod spec) for the admission described by context,
// before the deadline. Must not throw; if it does, the image is denied with reason INTERNAL.
using VerifyImage = std::function<boost::asio::awaitable<verify::Verdict>(
    std::string image, const verify::Context& context, Deadline deadline)>;

// Builds the verification context of one admission (its namespace, the registry credentials
// its pod would pull with), once per request. The default: the namespace only.
using MakeContext = std::function<boost::asio::awaitable<verify::Context>(
    const admission::Request& request, Deadline deadline)>;

// The verification context of one admission: make_context's answer, or the request's namespace
// alone when there is none or it throws.
boost::asio::awaitable<verify::Context> build_context(const MakeContext& make_context,
                                                      const admission::Request& request,
                                                      Deadline deadline);

// Verifies every image (a few at a time, concurrently) and returns their verdicts in the same
// order. A verifier that throws, or a result that is lost, is a denied verdict with reason
// INTERNAL (fail closed). Each verifier ends by the deadline on its own. The arguments must stay
// alive until the returned awaitable completes. pod_images (null: none), one flag per image:
// the images verified with Context::pod_image set (pod_images_of).
boost::asio::awaitable<std::vector<verify::Verdict>> verify_all(
    const VerifyImage& verify_image, const std::vector<std::string>& images,
    const verify::Context& context, Deadline deadline,
    const std::vector<char>* pod_images = nullptr);

// For each of images (a request's distinct images), whether it is written by tag and new in a
// Pod's spec (admission::writes_pod_spec, admission::new_image_uses): what /mutate pins, so that
// reaching /validate this way it was not pinned (verify::Context::pod_image). Empty when no
// image is.
std::vector<char> pod_images_of(const admission::Request& req,
                                const std::vector<std::string>& images);

// The synchronous path of an admission whose every answer is at hand (a cached verdict): what
// VerifyImage would answer for the image, or nullopt when finding out needs waiting (then the
// whole admission takes the asynchronous path). Must not wait, must not read a registry.
using VerifyNow = std::function<std::optional<verify::Verdict>(const std::string& image,
                                                               const verify::Context& context)>;
// What MakeContext would answer, or nullopt when that needs waiting (the Kubernetes API).
using ContextNow = std::function<std::optional<verify::Context>(const admission::Request& request)>;
// Told of the verdicts the synchronous path answers an admission with (every image's), once it
// has them all; not told when it gives up, after which the asynchronous path asks for all of
// them again. What counts cache hits (Engine::count_answered_now), so each counts once.
using AnsweredNow = std::function<void(const std::vector<verify::Verdict>& verdicts)>;
// The synchronous part of Validator::answer_now and Mutator::answer_now: the context
// (context_now's, or the request's namespace when there is no MakeContext, as build_context)
// and the verdict of every image from verify_now, in order, told to `answered` (when set);
// nullopt as soon as one is not at hand. Callers check first that they may answer without
// waiting (verify_now set, and context_now set when they have a MakeContext). pod_images as
// verify_all's.
std::optional<std::vector<verify::Verdict>> verdicts_now(
    const VerifyNow& verify_now, const ContextNow& context_now, const AnsweredNow& answered,
    const admission::Request& request, const std::vector<std::string>& images,
    const std::vector<char>* pod_images = nullptr);

// Appends one value of a log line (key=value pairs) made one-line safe: a review's fields are
// the caller's text (anyone who reaches the port can post one), so control bytes, spaces and
// quotes become '?', and an empty value reads "-".
void append_log_value(std::string& line, std::string_view value);

// Told of every image's verdict of a judged admission, once, whichever path judged it (metrics).
using CountVerdict = std::function<void(const verify::Verdict& verdict)>;

// Told of each judged POST /validate decision that denies or carries warnings, after the reply
// is built: the decoded request, the response sent and the images' verdicts (in the order of
// first use; none for a TIMEOUT). Never of a verdict that came after the TIMEOUT was sent.
// Kubernetes Events (app/events.hpp). Runs on the admission's path: it must be quick (queue, never
// wait) and must not throw (an exception is logged and ignored).
using ObserveDecision =
    std::function<void(const admission::Request& request, const admission::Response& response,
                       const std::vector<verify::Verdict>& verdicts)>;

class Validator {
 public:
  explicit Validator(VerifyImage verify_image, MakeContext make_context = {});

  // Set before serving (not synchronised with handle()).
  void set_observer(ObserveDecision observe) { observe_ = std::move(observe); }
  // Set before serving: the synchronous path (answer_now). Without verify_now there is none.
  // context_now is needed when the Validator has a MakeContext; without one, the context is the
  // request's namespace, as in handle(). answered (optional) is told what it answers with.
  void set_now(VerifyNow verify_now, ContextNow context_now = {}, AnsweredNow answered = {}) {
    verify_now_ = std::move(verify_now);
    context_now_ = std::move(context_now);
    answered_now_ = std::move(answered);
  }
  // Set before serving.
  void set_counter(CountVerdict count) { count_ = std::move(count); }

  // body: the raw POST body. Returns 400 for an undecodable review, else 200 with an
  // AdmissionReview response. Verifies every distinct image concurrently; each verifier gets
  // the deadline. The caller is responsible for guarding the deadline itself (see Server).
  // Allowed without any verification: kinds and operations sigil does not judge, an UPDATE of
  // an object whose metadata.deletionTimestamp is set, and an UPDATE whose every image use
  // oldObject already had at the same JSON pointer (admission::new_image_uses is empty).
  // once (the Server's): claimed before the decision is logged; when the Server has answered
  // TIMEOUT first, the verdict is logged as late (decision=late-...) and neither counted nor
  // observed. Without it, the verdict is always the answer.
  boost::asio::awaitable<HttpReply> handle(std::string_view body, Deadline deadline,
                                           AnswerOnce* once = nullptr) const;

  // handle()'s answer when it can be given without waiting, else nullopt (then handle() must
  // run; nothing has been logged, counted or observed). Given: a review that does not decode
  // (400), one sigil does not judge, and one whose context and every image's verdict the
  // VerifyNow and ContextNow functions answer (a cached admission: no coroutine, no timer).
  // The reply is byte for byte the one handle() would build from the same verdicts.
  std::optional<HttpReply> answer_now(std::string_view body) const;

  // The deny sent when verification did not finish in time: allowed=false, reason TIMEOUT,
  // uid echoed when the body decodes. Logged as the decision and told to the observer (an
  // Event), as any denial. Synchronous and cheap.
  HttpReply timeout_reply(std::string_view body) const;

 private:
  // Tells observe_ (when set) of a decision sent; an exception is logged and ignored.
  void observe(const admission::Request& req, const admission::Response& resp,
               const std::vector<verify::Verdict>& verdicts) const;
  // The reply for a judged admission from its images' verdicts (both paths end here).
  // late: the Server answered TIMEOUT first; the verdict is only logged (decision=late-...).
  HttpReply finish(const admission::Request& req, const std::vector<std::string>& images,
                   std::vector<verify::Verdict>& verdicts,
                   std::chrono::steady_clock::time_point start, bool late = false) const;

  VerifyImage verify_image_;
  MakeContext make_context_;
  ObserveDecision observe_;
  VerifyNow verify_now_;
  ContextNow context_now_;
  AnsweredNow answered_now_;
  CountVerdict count_;
};

// POST /validate-policy: judges a sigil.dev custom resource (ClusterImagePolicy, ImagePolicy,
// TrustRoot) being created or updated, so that `kubectl apply` of a broken policy fails with a
// message naming the field instead of the policy failing later in the watch. check returns an
// empty problem when the object is valid, else the one-line reason; a valid object may come
// with warnings, which kubectl shows ("Warning: ..."). Other kinds and DELETE are allowed.
struct PolicyCheck {
  std::string problem;
  std::vector<std::string> warnings;
};
using CheckPolicyObject =
    std::function<PolicyCheck(const std::string& kind, const std::string& object_json)>;
HttpReply handle_policy_review(std::string_view body, const CheckPolicyObject& check);

// A JSON object of string members, written directly (strings escaped by common/json_text.hpp;
// invalid UTF-8 becomes U+FFFD) and never longer than max_bytes: once a member does not fit,
// it and every later one are left out and counted in a last member "...": "N more", so an
// audit annotation of a pod with hundreds of images is still valid JSON, only shorter.
class JsonObjectWithin {
 public:
  explicit JsonObjectWithin(size_t max_bytes);
  void add(std::string_view key, std::string_view value);
  std::string finish() &&;

 private:
  std::string out_, member_;
  size_t max_;
  size_t left_out_ = 0;
};

// The "images" audit annotation of a judged admission: a JSON object from each image to its
// entry ("allowed", "denied NOT_SIGNED sha256:..."), keys in byte order (of equal keys, the
// last), at most max_bytes (JsonObjectWithin). Written directly: it runs on every admission.
std::string audit_images_json(std::vector<std::pair<std::string_view, std::string>> entries,
                              size_t max_bytes = std::string::npos);

// Shortens s to at most max_len bytes, ending in "..." when cut, never splitting a UTF-8
// sequence.
std::string truncate_politely(std::string_view s, size_t max_len);

}  // namespace sigil::server
