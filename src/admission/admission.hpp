// admission/admission.hpp: AdmissionReview (admission.k8s.io/v1) decode and encode.
//
// Role: turn the API server's JSON into the list of images a request would run (containers,
// initContainers, ephemeralContainers of Pods, and the pod templates of Deployment,
// ReplicaSet, StatefulSet, DaemonSet, Job, CronJob), and build the response. Pure: common,
// oci and nlohmann only; never throws across its boundary.
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
};

struct Request {
  std::string uid;
  std::string kind;          // request.kind.kind
  std::string group;         // request.kind.group
  std::string operation;     // CREATE | UPDATE | DELETE | CONNECT
  std::string sub_resource;  // "" or "ephemeralcontainers"
  std::string namespace_;
  std::string name;
  bool dry_run = false;
  bool judged = false;           // true when the kind carries a pod spec sigil checks
  std::vector<ImageUse> images;  // distinct by (image); empty when nothing to check
  // The pod spec's registry credentials, as the kubelet would use them (judged kinds only):
  // spec.serviceAccountName ("default" when absent) and spec.imagePullSecrets[].name.
  std::string service_account;
  std::vector<std::string> image_pull_secrets;
  // The new object as compact JSON, for sigil.dev kinds (ClusterImagePolicy, ImagePolicy,
  // TrustRoot) on CREATE/UPDATE only: what POST /validate-policy judges.
  std::string object_json;
};

// Fails (Errc::parse_error) on malformed JSON, wrong apiVersion/kind, missing request/uid.
Result<Request> decode_review(std::string_view body);

struct Response {
  std::string uid;
  bool allowed = false;
  std::string message;  // status.message when denied
  std::string reason;   // status.reason (e.g. "Forbidden")
  int code = 403;       // status.code when denied
  std::vector<std::string> warnings;
  std::map<std::string, std::string> audit_annotations;
};

std::string encode_response(const Response& response);

}  // namespace sigil::admission
