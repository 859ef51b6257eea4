// admission/admission.hpp: AdmissionReview (admission.k8s.io/v1) decode and encode.
//
// Role: turn the API server's JSON into the list of images a request would run (containers,
// initContainers, ephemeralContainers and image volumes of Pods, and the pod templates of
// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob), each with the JSON pointer it sits
// at, and the old object's images for an UPDATE; build the response, with a JSONPatch for /mutate.
// Pure: common and simdjson only; never throws across its boundary.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace sigil::admission {

struct ImageUse {
  std::string image;  // exactly as written in the spec
  std::string path;   // "spec.containers[0] (app)", for messages
  // RFC 6901 pointer of the image field in the object ("/spec/containers/0/image"): where
  // /mutate patches it, and what an UPDATE's new and old images are compared by.
  std::string pointer;
};

// A metadata.ownerReferences entry (what Kubernetes Events name as involvedObject).
struct OwnerRef {
  std::string api_version, kind, name, uid;
};

struct Request {
  std::string uid;
  std::string kind;            // request.kind.kind (for messages only)
  std::string group;           // request.kind.group (for messages only)
  std::string version;         // request.kind.version (for Events' involvedObject)
  std::string resource_group;  // request.resource.group: with resource, what decides
  std::string resource;        // request.resource.resource ("pods", "deployments", ...)
  std::string operation;       // CREATE | UPDATE | DELETE | CONNECT
  std::string sub_resource;    // request.subResource: "" or e.g. "ephemeralcontainers"
  std::string namespace_;
  std::string name;
  bool dry_run = false;
  // true when the resource carries a pod spec sigil checks. Decided by request.resource and
  // request.subResource (the API server's routing), never by the kind's spelling.
  bool judged = false;
  // Every image use of the new object, in spec order (initContainers, containers,
  // ephemeralContainers); one image may appear at several pointers. Empty when nothing to check.
  std::vector<ImageUse> images;
  // UPDATE of a judged kind: the image uses of request.oldObject, extracted the same way.
  // has_old_images is false when the review carries no oldObject or its pod spec cannot be read
  // (then nothing counts as unchanged).
  std::vector<ImageUse> old_images;
  bool has_old_images = false;
  // The new object's metadata.deletionTimestamp is set: the object is being deleted.
  bool deleting = false;
  // Judged kinds: the new object's metadata.uid ("" when absent), and its controller (the
  // ownerReference with controller: true; empty name when none). For Kubernetes Events only:
  // read leniently, a malformed entry is ignored and never fails the review.
  std::string object_uid;
  OwnerRef controller;
  // The pod spec's registry credentials, as the kubelet would use them (judged kinds only):
  // spec.serviceAccountName ("default" when absent) and spec.imagePullSecrets[].name.
  std::string service_account;
  std::vector<std::string> image_pull_secrets;
  // The new object as compact JSON, for sigil.dev kinds (ClusterImagePolicy, ImagePolicy,
  // TrustRoot) on CREATE/UPDATE only: what POST /validate-policy judges.
  std::string object_json;
};

// Fails (Errc::parse_error) on malformed JSON, wrong apiVersion/kind, missing request/uid, and a
// key it reads that an object names twice (Go reads the last, a first-match lookup the first).
Result<Request> decode_review(std::string_view body);

// request.uid of an AdmissionReview v1, or "" when body is not one: for answering a review whose
// object decode_review refused (the mutating webhook admits such a review unchanged).
std::string review_uid(std::string_view body);

// The image uses of request.images that are new: every one, unless the request is an UPDATE
// whose oldObject held the same image at the same pointer (then that use is not new). An UPDATE
// with no new use (a label change, a finalizer removal, a scale to zero) runs nothing new.
std::vector<const ImageUse*> new_image_uses(const Request& request);

// Whether the request writes a Pod's spec or its ephemeral containers: what /mutate pins (never
// a workload's template, never another subresource).
bool writes_pod_spec(const Request& request);

// One JSON pointer token escaped per RFC 6901: '~' -> "~0", '/' -> "~1".
std::string json_pointer_token(std::string_view token);

// A JSONPatch (RFC 6902) that rewrites image fields: for each, a `test` that the field still
// holds `from` (so a patch can never land on another field than the one verified), then a
// `replace` with `to`.
struct ImagePatch {
  std::string pointer;
  std::string from;
  std::string to;
};
std::string encode_image_patch(const std::vector<ImagePatch>& patches);

struct Response {
  std::string uid;
  bool allowed = false;
  std::string message;  // status.message when denied
  std::string reason;   // status.reason (e.g. "Forbidden")
  int code = 403;       // status.code when denied
  std::vector<std::string> warnings;
  std::map<std::string, std::string> audit_annotations;
  // A JSONPatch document (JSON text), sent base64-encoded with patchType JSONPatch; only with
  // allowed (the API server applies no patch of a denied request).
  std::string patch;
};

std::string encode_response(const Response& response);

}  // namespace sigil::admission
