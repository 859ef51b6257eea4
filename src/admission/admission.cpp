// admission/admission.cpp: AdmissionReview decode (image extraction per kind) and encode.
//
// nlohmann is used in its non-throwing parse mode, and every access below is type-checked;
// a try/catch at each public function is the last line so that no exception ever escapes.
#include "admission/admission.hpp"

#include <cstddef>
#include <exception>
#include <set>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/json_depth.hpp"

namespace sigil::admission {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxDepth = 64;
constexpr std::size_t kMaxContainers = 1000;

Error parse_err(std::string what) {
  return make_error(Errc::parse_error, "AdmissionReview: " + std::move(what));
}

// Reads an optional string member; fails if present with another type.
Result<std::string> opt_string(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) return parse_err(where + "." + key + ": not a string");
  return it->get<std::string>();
}

Result<std::string> req_string(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return parse_err(where + "." + key + ": missing");
  if (!it->is_string()) return parse_err(where + "." + key + ": not a string");
  return it->get<std::string>();
}

// Where the pod spec lives inside the object, per (group, kind). Empty when sigil does not judge
// the kind.
std::vector<const char*> pod_spec_path(const std::string& group, const std::string& kind) {
  if (group.empty() && kind == "Pod") return {"spec"};
  if (group.empty() && kind == "ReplicationController") return {"spec", "template", "spec"};
  if (group == "apps" && (kind == "Deployment" || kind == "ReplicaSet" || kind == "StatefulSet" ||
                          kind == "DaemonSet")) {
    return {"spec", "template", "spec"};
  }
  if (group == "batch" && kind == "Job") return {"spec", "template", "spec"};
  if (group == "batch" && kind == "CronJob") {
    return {"spec", "jobTemplate", "spec", "template", "spec"};
  }
  return {};
}

class Extractor {
 public:
  explicit Extractor(std::vector<ImageUse>& out) : out_(out) {}

  Status list(const json& spec, const std::string& spec_path, const char* field) {
    auto it = spec.find(field);
    if (it == spec.end() || it->is_null()) return {};
    const std::string list_path = spec_path + "." + field;
    if (!it->is_array()) return parse_err(list_path + ": not an array");
    std::size_t i = 0;
    for (const json& c : *it) {
      const std::string at = list_path + "[" + std::to_string(i++) + "]";
      if (++count_ > kMaxContainers) {
        return make_error(Errc::too_large, "AdmissionReview: more than " +
                                               std::to_string(kMaxContainers) + " containers");
      }
      if (!c.is_object()) return parse_err(at + ": not an object");
      auto name = opt_string(c, "name", at);
      if (!name) return name.error();
      auto image = c.find("image");
      if (image == c.end() || !image->is_string()) {
        return parse_err(at + ".image: missing or not a string");
      }
      std::string img = image->get<std::string>();
      if (img.empty()) return parse_err(at + ".image: empty");
      std::string path = name->empty() ? at : at + " (" + *name + ")";
      if (seen_.insert(img).second) out_.push_back(ImageUse{std::move(img), std::move(path)});
    }
    return {};
  }

 private:
  std::vector<ImageUse>& out_;
  std::set<std::string> seen_;
  std::size_t count_ = 0;
};

Result<Request> decode(std::string_view body) {
  // Before nlohmann sees the body: a million '[' must neither exhaust the stack nor build a
  // deep tree.
  if (!json_depth_ok(body, kMaxDepth)) {
    return parse_err("JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return parse_err("body is not valid JSON");
  if (!doc.is_object()) return parse_err("body is not a JSON object");

  auto api_version = req_string(doc, "apiVersion", "review");
  if (!api_version) return api_version.error();
  if (*api_version != "admission.k8s.io/v1") {
    return make_error(Errc::parse_error, "AdmissionReview: apiVersion \"" + *api_version +
                                             "\" is not supported; configure the webhook with "
                                             "admissionReviewVersions: [\"v1\"]");
  }
  auto kind = req_string(doc, "kind", "review");
  if (!kind) return kind.error();
  if (*kind != "AdmissionReview") return parse_err("kind \"" + *kind + "\" is not AdmissionReview");

  auto req_it = doc.find("request");
  if (req_it == doc.end() || !req_it->is_object()) {
    return parse_err("request: missing or not an object");
  }
  const json& r = *req_it;

  Request out;
  auto uid = req_string(r, "uid", "request");
  if (!uid) return uid.error();
  if (uid->empty()) return parse_err("request.uid: empty");
  out.uid = std::move(*uid);

  auto k = r.find("kind");
  if (k == r.end() || !k->is_object()) return parse_err("request.kind: missing or not an object");
  auto kk = req_string(*k, "kind", "request.kind");
  if (!kk) return kk.error();
  auto kg = opt_string(*k, "group", "request.kind");
  if (!kg) return kg.error();
  out.kind = std::move(*kk);
  out.group = std::move(*kg);

  auto op = req_string(r, "operation", "request");
  if (!op) return op.error();
  if (*op != "CREATE" && *op != "UPDATE" && *op != "DELETE" && *op != "CONNECT") {
    return parse_err("request.operation: unknown operation \"" + *op + "\"");
  }
  out.operation = std::move(*op);

  auto sub = opt_string(r, "subResource", "request");
  if (!sub) return sub.error();
  out.sub_resource = std::move(*sub);
  auto ns = opt_string(r, "namespace", "request");
  if (!ns) return ns.error();
  out.namespace_ = std::move(*ns);
  auto name = opt_string(r, "name", "request");
  if (!name) return name.error();
  out.name = std::move(*name);

  auto dry = r.find("dryRun");
  if (dry != r.end() && !dry->is_null()) {
    if (!dry->is_boolean()) return parse_err("request.dryRun: not a boolean");
    out.dry_run = dry->get<bool>();
  }

  if (out.group == "sigil.dev" && (out.operation == "CREATE" || out.operation == "UPDATE")) {
    auto obj = r.find("object");
    if (obj == r.end() || !obj->is_object()) {
      return parse_err("request.object: missing or not an object for " + out.operation + " of " +
                       out.kind);
    }
    out.object_json = obj->dump(-1, ' ', false, json::error_handler_t::replace);
    return out;
  }

  const auto path = pod_spec_path(out.group, out.kind);
  if (path.empty() || (out.operation != "CREATE" && out.operation != "UPDATE")) {
    out.judged = false;
    return out;
  }
  out.judged = true;

  // The new object. For UPDATE (including the ephemeralcontainers subresource) every image of
  // the new object is checked, not only the changed ones: simple, and never weaker.
  auto obj = r.find("object");
  if (obj == r.end() || !obj->is_object()) {
    return parse_err("request.object: missing or not an object for " + out.operation + " of " +
                     out.kind);
  }
  const json* spec = &*obj;
  std::string spec_path;
  for (const char* step : path) {
    auto next = spec->find(step);
    spec_path += spec_path.empty() ? step : std::string(".") + step;
    if (next == spec->end() || !next->is_object()) {
      return parse_err("request.object." + spec_path + ": missing or not an object");
    }
    spec = &*next;
  }

  Extractor ex(out.images);
  for (const char* field : {"initContainers", "containers", "ephemeralContainers"}) {
    if (auto st = ex.list(*spec, spec_path, field); !st) return st.error();
  }
  auto sa = opt_string(*spec, "serviceAccountName", "request.object." + spec_path);
  if (!sa) return sa.error();
  out.service_account = sa->empty() ? "default" : std::move(*sa);
  auto ips = spec->find("imagePullSecrets");
  if (ips != spec->end() && !ips->is_null()) {
    if (!ips->is_array()) {
      return parse_err("request.object." + spec_path + ".imagePullSecrets: not a list");
    }
    for (const auto& e : *ips) {
      if (!e.is_object()) continue;
      auto n = e.find("name");
      if (n != e.end() && n->is_string() && !n->get_ref<const std::string&>().empty() &&
          out.image_pull_secrets.size() < 64) {
        out.image_pull_secrets.push_back(n->get<std::string>());
      }
    }
  }
  return out;
}

}  // namespace

Result<Request> decode_review(std::string_view body) {
  try {
    return decode(body);
  } catch (const std::exception& e) {
    return make_error(Errc::parse_error, std::string("AdmissionReview: ") + e.what());
  } catch (...) {
    return make_error(Errc::internal, "AdmissionReview: unexpected failure while decoding");
  }
}

std::string encode_response(const Response& response) {
  try {
    json resp = json::object();
    resp["uid"] = response.uid;
    resp["allowed"] = response.allowed;
    if (!response.allowed) {
      resp["status"] = json{{"code", response.code},
                            {"reason", response.reason.empty() ? "Forbidden" : response.reason},
                            {"message", response.message}};
    }
    if (!response.warnings.empty()) resp["warnings"] = response.warnings;
    if (!response.audit_annotations.empty()) {
      resp["auditAnnotations"] = response.audit_annotations;
    }
    json doc = {{"apiVersion", "admission.k8s.io/v1"},
                {"kind", "AdmissionReview"},
                {"response", std::move(resp)}};
    // Messages may quote outside bytes: replace invalid UTF-8 rather than throw.
    return doc.dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (...) {
    // Cannot happen with the replace handler; fail closed with a body the API server accepts.
    return R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"",)"
           R"("allowed":false,"status":{"code":500,"message":"sigil: internal error encoding response"}}})";
  }
}

}  // namespace sigil::admission
