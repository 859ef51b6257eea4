// server/mutator.hpp: the /mutate glue: pins the tags of a Pod's images to verified digests.
//
// Role: the mutating webhook for Pods. sigil verifies the digest a tag points to at admission,
// but the kubelet pulls the tag later (new nodes, imagePullPolicy Always, restarts), so a tag
// moved in between would run unverified. For every new tag-only image use of a Pod (CREATE, and
// UPDATE including the ephemeralcontainers subresource) it runs the verification /validate runs
// (the injected VerifyImage, which resolves the tag once and verifies that digest) and rewrites
// the image to `name:tag@sha256:<digest>` with a JSONPatch. The tag stays, so tag-specific policy
// globs still match; the digest is what the kubelet pulls and what /validate then verifies (a
// verdict cache hit). An image the verifier resolved no digest for (no policy matched it, or the
// tag could not be resolved) is left as written. The mutating webhook never denies: validation
// does. Pod templates of workloads are never touched (GitOps tools see no drift). No sockets here;
// the Server owns the transport and the deadline. Never throws.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "oci/reference.hpp"
#include "server/validator.hpp"

namespace sigil::server {

class Mutator {
 public:
  explicit Mutator(VerifyImage verify_image, MakeContext make_context = {});

  // body: the raw POST body. 400 when it is not an AdmissionReview at all; otherwise 200 with
  // allowed=true, and a JSONPatch (test + replace per image field) when an image was pinned.
  // The caller guards the deadline (see Server). once: as Validator::handle's; without it, a
  // verdict past the deadline pins nothing.
  boost::asio::awaitable<HttpReply> handle(std::string_view body, Deadline deadline,
                                           AnswerOnce* once = nullptr) const;

  // Set before serving: the synchronous path (answer_now), as Validator::set_now. The two
  // answer as the Mutator's VerifyImage does, for a Pod pinned to what it is told (the caller's
  // functions set Context::pins_digest themselves).
  void set_now(VerifyNow verify_now, ContextNow context_now = {}, AnsweredNow answered = {}) {
    verify_now_ = std::move(verify_now);
    context_now_ = std::move(context_now);
    answered_now_ = std::move(answered);
  }
  // handle()'s answer when it needs no waiting (a review with nothing to pin, or one whose
  // context and every image's verdict are at hand), else nullopt: then nothing was logged, and
  // handle() must run. The reply is byte for byte the one handle() would build.
  std::optional<HttpReply> answer_now(std::string_view body) const;

  // The answer when the deadline passed first: allowed, nothing patched (validation decides).
  HttpReply timeout_reply(std::string_view body) const;

 private:
  VerifyImage verify_image_;
  MakeContext make_context_;
  VerifyNow verify_now_;
  ContextNow context_now_;
  AnsweredNow answered_now_;
};

// image (a tag-only reference, as written) pinned to digest: "name:tag@sha256:<hex>", with the
// implied ":latest" written out. Empty when image is not a valid tag-only reference, digest is
// not "sha256:" and 64 lowercase hex digits, or the result would not read back as the same
// repository, tag and digest.
std::string pin_image(std::string_view image, std::string_view digest);
// pin_image for an image already parsed (parsed = oci::parse_reference(image)); the result is
// still parsed back and checked.
std::string pin_parsed(std::string_view image, const oci::Reference& parsed,
                       std::string_view digest);

}  // namespace sigil::server
