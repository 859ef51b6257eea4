// admission/admission.cpp: AdmissionReview decode (image extraction per kind) and encode.
//
// The review is read with simdjson's DOM (the API server waits for every admission, and the
// parse was half of the CPU of a cached admission with nlohmann's DOM); the response, a fixed
// shape, is written directly. Every access below is type-checked with error codes; a try/catch at
// each public function is the last line so that no exception ever escapes. simdjson validates UTF-8
// and limits nesting (kMaxDepth) while it parses. A member named twice in one object reads as its
// first occurrence; the API server re-serializes every object, so it never sends one.
#include "admission/admission.hpp"

#include <algorithm>
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include <simdjson.h>

#include "common/json_text.hpp"

namespace sigil::admission {
namespace {

namespace dom = simdjson::dom;

constexpr std::size_t kMaxDepth = 64;
constexpr std::size_t kMaxContainers = 1000;
// Bodies up to this size are parsed by a parser kept per thread (its buffers grow to the largest
// body it has seen, about 15 bytes per input byte); a larger one gets a parser of its own, freed
// when the call returns, so one 7 MiB review does not pin 100 MiB per thread for good.
constexpr std::size_t kReusedParserBytes = 256 * 1024;

Error parse_err(std::string what) {
  return make_error(Errc::parse_error, "AdmissionReview: " + std::move(what));
}

// The member `key` of obj; nullopt when absent or null (Kubernetes treats both the same).
std::optional<dom::element> member(dom::object obj, std::string_view key) {
  dom::element e;
  if (obj.at_key(key).get(e) != simdjson::SUCCESS || e.is_null()) return std::nullopt;
  return e;
}

// Reads an optional string member; fails if present with another type.
Result<std::string> opt_string(dom::object obj, const char* key, const std::string& where) {
  auto e = member(obj, key);
  if (!e) return std::string();
  std::string_view v;
  if (e->get_string().get(v) != simdjson::SUCCESS) {
    return parse_err(where + "." + key + ": not a string");
  }
  return std::string(v);
}

Result<std::string> req_string(dom::object obj, const char* key, const std::string& where) {
  auto e = member(obj, key);
  if (!e) return parse_err(where + "." + key + ": missing");
  std::string_view v;
  if (e->get_string().get(v) != simdjson::SUCCESS) {
    return parse_err(where + "." + key + ": not a string");
  }
  return std::string(v);
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

  Status list(dom::object spec, const std::string& spec_path, const char* field) {
    auto e = member(spec, field);
    if (!e) return {};
    const std::string list_path = spec_path + "." + field;
    dom::array items;
    if (e->get_array().get(items) != simdjson::SUCCESS) {
      return parse_err(list_path + ": not an array");
    }
    std::size_t i = 0;
    for (dom::element item : items) {
      const std::string at = list_path + "[" + std::to_string(i++) + "]";
      if (++count_ > kMaxContainers) {
        return make_error(Errc::too_large, "AdmissionReview: more than " +
                                               std::to_string(kMaxContainers) + " containers");
      }
      dom::object c;
      if (item.get_object().get(c) != simdjson::SUCCESS) return parse_err(at + ": not an object");
      auto name = opt_string(c, "name", at);
      if (!name) return name.error();
      dom::element image;
      std::string_view img;
      if (c.at_key("image").get(image) != simdjson::SUCCESS ||
          image.get_string().get(img) != simdjson::SUCCESS) {
        return parse_err(at + ".image: missing or not a string");
      }
      if (img.empty()) return parse_err(at + ".image: empty");
      std::string path = name->empty() ? at : at + " (" + *name + ")";
      if (seen_.emplace(img).second) out_.push_back(ImageUse{std::string(img), std::move(path)});
    }
    return {};
  }

 private:
  std::vector<ImageUse>& out_;
  std::set<std::string, std::less<>> seen_;
  std::size_t count_ = 0;
};

Error json_error(simdjson::error_code code) {
  switch (code) {
    case simdjson::DEPTH_ERROR:
      return parse_err("JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
    case simdjson::CAPACITY:
      return make_error(Errc::too_large, "AdmissionReview: body too large to parse");
    case simdjson::MEMALLOC:
      return make_error(Errc::internal, "AdmissionReview: out of memory while parsing");
    case simdjson::UTF8_ERROR:
      return parse_err("body is not valid UTF-8");
    default:
      return parse_err(std::string("body is not valid JSON (") + simdjson::error_message(code) +
                       ")");
  }
}

// Parses body with `parser` (depth-limited) into what decode needs. Every string is copied out
// before the parser is reused, so no view into its buffers outlives this call.
Result<Request> decode_with(dom::parser& parser, std::string_view body) {
  if (parser.max_depth() != kMaxDepth) {
    if (auto err = parser.allocate(std::max<std::size_t>(body.size(), 1024), kMaxDepth)) {
      return json_error(err);
    }
  }
  dom::element root;
  if (auto err = parser.parse(body.data(), body.size()).get(root)) return json_error(err);
  dom::object doc;
  if (root.get_object().get(doc) != simdjson::SUCCESS) {
    return parse_err("body is not a JSON object");
  }

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

  auto req_el = member(doc, "request");
  dom::object r;
  if (!req_el || req_el->get_object().get(r) != simdjson::SUCCESS) {
    return parse_err("request: missing or not an object");
  }

  Request out;
  auto uid = req_string(r, "uid", "request");
  if (!uid) return uid.error();
  if (uid->empty()) return parse_err("request.uid: empty");
  out.uid = std::move(*uid);

  auto k_el = member(r, "kind");
  dom::object k;
  if (!k_el || k_el->get_object().get(k) != simdjson::SUCCESS) {
    return parse_err("request.kind: missing or not an object");
  }
  auto kk = req_string(k, "kind", "request.kind");
  if (!kk) return kk.error();
  auto kg = opt_string(k, "group", "request.kind");
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

  if (auto dry = member(r, "dryRun")) {
    bool b = false;
    if (dry->get_bool().get(b) != simdjson::SUCCESS) {
      return parse_err("request.dryRun: not a boolean");
    }
    out.dry_run = b;
  }

  const bool writes = out.operation == "CREATE" || out.operation == "UPDATE";
  auto object = [&]() -> Result<dom::object> {
    auto e = member(r, "object");
    dom::object o;
    if (!e || e->get_object().get(o) != simdjson::SUCCESS) {
      return parse_err("request.object: missing or not an object for " + out.operation + " of " +
                       out.kind);
    }
    return o;
  };

  if (out.group == "sigil.dev" && writes) {
    auto obj = object();
    if (!obj) return obj.error();
    out.object_json = simdjson::minify(*obj);
    return out;
  }

  const auto path = pod_spec_path(out.group, out.kind);
  if (path.empty() || !writes) {
    out.judged = false;
    return out;
  }
  out.judged = true;

  // The new object. For UPDATE (including the ephemeralcontainers subresource) every image of
  // the new object is checked, not only the changed ones: simple, and never weaker.
  auto obj = object();
  if (!obj) return obj.error();
  dom::object spec = *obj;
  std::string spec_path;
  for (const char* step : path) {
    spec_path += spec_path.empty() ? step : std::string(".") + step;
    auto next = member(spec, step);
    if (!next || next->get_object().get(spec) != simdjson::SUCCESS) {
      return parse_err("request.object." + spec_path + ": missing or not an object");
    }
  }

  Extractor ex(out.images);
  for (const char* field : {"initContainers", "containers", "ephemeralContainers"}) {
    if (auto st = ex.list(spec, spec_path, field); !st) return st.error();
  }
  auto sa = opt_string(spec, "serviceAccountName", "request.object." + spec_path);
  if (!sa) return sa.error();
  out.service_account = sa->empty() ? "default" : std::move(*sa);
  if (auto ips = member(spec, "imagePullSecrets")) {
    dom::array list;
    if (ips->get_array().get(list) != simdjson::SUCCESS) {
      return parse_err("request.object." + spec_path + ".imagePullSecrets: not a list");
    }
    for (dom::element e : list) {
      dom::object ref;
      std::string_view n;
      if (e.get_object().get(ref) != simdjson::SUCCESS) continue;
      if (ref.at_key("name").get_string().get(n) == simdjson::SUCCESS && !n.empty() &&
          out.image_pull_secrets.size() < 64) {
        out.image_pull_secrets.emplace_back(n);
      }
    }
  }
  return out;
}

Result<Request> decode(std::string_view body) {
  if (body.size() <= kReusedParserBytes) {
    thread_local dom::parser parser;
    return decode_with(parser, body);
  }
  dom::parser parser;
  return decode_with(parser, body);
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

// Written directly rather than through a JSON DOM: it runs on every admission, and the fixed
// shape needs no more than string escaping (tested against nlohmann's parser, and fuzzed).
std::string encode_response(const Response& response) {
  try {
    std::string out;
    out.reserve(256 + response.uid.size() + response.message.size());
    out += R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":)";
    append_json_string(out, response.uid);
    out += response.allowed ? R"(,"allowed":true)" : R"(,"allowed":false)";
    if (!response.allowed) {
      out += R"(,"status":{"code":)";
      out += std::to_string(response.code);
      out += R"(,"reason":)";
      append_json_string(out, response.reason.empty() ? "Forbidden" : response.reason);
      out += R"(,"message":)";
      append_json_string(out, response.message);
      out.push_back('}');
    }
    if (!response.warnings.empty()) {
      out += R"(,"warnings":[)";
      for (size_t i = 0; i < response.warnings.size(); ++i) {
        if (i) out.push_back(',');
        append_json_string(out, response.warnings[i]);
      }
      out.push_back(']');
    }
    if (!response.audit_annotations.empty()) {
      out += R"(,"auditAnnotations":{)";
      bool first = true;
      for (const auto& [key, value] : response.audit_annotations) {
        if (!first) out.push_back(',');
        first = false;
        append_json_string(out, key);
        out.push_back(':');
        append_json_string(out, value);
      }
      out.push_back('}');
    }
    out += "}}";
    return out;
  } catch (...) {
    // Only std::bad_alloc can get here; fail closed with a body the API server accepts.
    return R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"",)"
           R"("allowed":false,"status":{"code":500,"message":"sigil: internal error encoding response"}}})";
  }
}

}  // namespace sigil::admission
