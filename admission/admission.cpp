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
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include <simdjson.h>

#include "common/encoding.hpp"
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

// Reads an optional string member (e: the member, nullopt when absent or null); fails if
// present with another type. `where` names the object in the error ("request.kind"); a view:
// only an error builds text.
Result<std::string> opt_string(const std::optional<dom::element>& e, const char* key,
                               std::string_view where) {
  if (!e) return std::string();
  std::string_view v;
  if (e->get_string().get(v) != simdjson::SUCCESS) {
    return parse_err(std::string(where) + "." + key + ": not a string");
  }
  return std::string(v);
}

Result<std::string> req_string(const std::optional<dom::element>& e, const char* key,
                               std::string_view where) {
  if (!e) return parse_err(std::string(where) + "." + key + ": missing");
  return opt_string(e, key, where);
}

Result<std::string> opt_string(dom::object obj, const char* key, std::string_view where) {
  return opt_string(member(obj, key), key, where);
}

Result<std::string> req_string(dom::object obj, const char* key, std::string_view where) {
  return req_string(member(obj, key), key, where);
}

// The members of `request` that decode reads, found in one pass over its fields (each at_key
// scans from the first field). As with at_key, the first of a repeated key is the one read, and
// a null reads as absent.
struct RequestMembers {
  std::optional<dom::element> uid, kind, resource, operation, sub_resource, namespace_, name,
      dry_run, object, old_object;
};

RequestMembers request_members(dom::object r) {
  using Slot = std::optional<dom::element> RequestMembers::*;
  static constexpr std::pair<std::string_view, Slot> kFields[] = {
      {"uid", &RequestMembers::uid},
      {"kind", &RequestMembers::kind},
      {"resource", &RequestMembers::resource},
      {"operation", &RequestMembers::operation},
      {"subResource", &RequestMembers::sub_resource},
      {"namespace", &RequestMembers::namespace_},
      {"name", &RequestMembers::name},
      {"dryRun", &RequestMembers::dry_run},
      {"object", &RequestMembers::object},
      {"oldObject", &RequestMembers::old_object}};
  RequestMembers m;
  bool seen[std::size(kFields)] = {};
  for (dom::key_value_pair field : r) {
    for (size_t i = 0; i < std::size(kFields); ++i) {
      if (field.key != kFields[i].first) continue;
      if (!seen[i]) {
        seen[i] = true;
        if (!field.value.is_null()) m.*kFields[i].second = field.value;
      }
      break;
    }
  }
  return m;
}

// Where the pod spec lives inside the object, per (group, kind). Empty when sigil does not judge
// the kind.
// Where the pod spec sits, by request.resource and request.subResource: what the API server
// routed, whatever request.kind says. A pod's only judged subresource is ephemeralcontainers
// (the one that adds images); others (status, binding, eviction, ...) change no image.
std::vector<const char*> pod_spec_path(const std::string& group, const std::string& resource,
                                       const std::string& sub_resource) {
  if (group.empty() && resource == "pods") {
    if (sub_resource.empty() || sub_resource == "ephemeralcontainers") return {"spec"};
    return {};
  }
  if (!sub_resource.empty()) return {};  // scale, status, ...: no pod template in the object
  if (group.empty() && resource == "replicationcontrollers") return {"spec", "template", "spec"};
  if (group == "apps" && (resource == "deployments" || resource == "replicasets" ||
                          resource == "statefulsets" || resource == "daemonsets")) {
    return {"spec", "template", "spec"};
  }
  if (group == "batch" && resource == "jobs") return {"spec", "template", "spec"};
  if (group == "batch" && resource == "cronjobs") {
    return {"spec", "jobTemplate", "spec", "template", "spec"};
  }
  return {};
}

// Appends every image use of one container list (spec.<field>) to out, each with its message
// path and its JSON pointer (built from the steps actually taken, never from the message path).
class Extractor {
 public:
  explicit Extractor(std::vector<ImageUse>& out) : out_(out) {}

  // field: one of the container list names (no '~' or '/': its pointer token is itself).
  Status list(dom::object spec, const std::string& spec_path, const std::string& spec_pointer,
              std::string_view field) {
    auto e = member(spec, field);
    if (!e) return {};
    std::string list_path;
    list_path.reserve(spec_path.size() + 1 + field.size());
    list_path += spec_path;
    list_path += '.';
    list_path += field;
    std::string list_pointer;
    list_pointer.reserve(spec_pointer.size() + 1 + field.size());
    list_pointer += spec_pointer;
    list_pointer += '/';
    list_pointer += field;
    dom::array items;
    if (e->get_array().get(items) != simdjson::SUCCESS) {
      return parse_err(list_path + ": not an array");
    }
    std::size_t i = 0;
    for (dom::element item : items) {
      const std::string index = std::to_string(i++);
      std::string at;
      at.reserve(list_path.size() + index.size() + 2);
      at += list_path;
      at += '[';
      at += index;
      at += ']';
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
      std::string pointer;
      pointer.reserve(list_pointer.size() + index.size() + 7);
      pointer += list_pointer;
      pointer += '/';
      pointer += index;
      pointer += "/image";
      if (!name->empty()) {
        at.reserve(at.size() + name->size() + 3);
        at += " (";
        at += *name;
        at += ')';
      }
      out_.push_back(ImageUse{std::string(img), std::move(at), std::move(pointer)});
    }
    return {};
  }

 private:
  std::vector<ImageUse>& out_;
  std::size_t count_ = 0;
};

// The pod spec inside obj along path, with its message path ("spec.template.spec") and pointer
// ("/spec/template/spec").
struct PodSpec {
  dom::object spec;
  std::string path;
  std::string pointer;
};

Result<PodSpec> find_pod_spec(dom::object obj, const std::vector<const char*>& steps,
                              const char* object_name) {
  PodSpec out;
  out.spec = obj;
  for (const char* step : steps) {
    out.path += out.path.empty() ? step : std::string(".") + step;
    out.pointer += "/" + json_pointer_token(step);
    auto next = member(out.spec, step);
    if (!next || next->get_object().get(out.spec) != simdjson::SUCCESS) {
      return parse_err(std::string(object_name) + "." + out.path + ": missing or not an object");
    }
  }
  return out;
}

Status extract_images(const PodSpec& ps, std::vector<ImageUse>& out) {
  Extractor ex(out);
  for (std::string_view field : {"initContainers", "containers", "ephemeralContainers"}) {
    if (auto st = ex.list(ps.spec, ps.path, ps.pointer, field); !st) return st.error();
  }
  return {};
}

// True when obj.metadata.deletionTimestamp is a non-empty string (what the API server writes
// for an object being deleted). Anything else, including a malformed value, reads as "not being
// deleted": the object is then judged as usual.
bool being_deleted(dom::object obj) {
  auto meta = member(obj, "metadata");
  dom::object m;
  if (!meta || meta->get_object().get(m) != simdjson::SUCCESS) return false;
  auto ts = member(m, "deletionTimestamp");
  std::string_view v;
  return ts && ts->get_string().get(v) == simdjson::SUCCESS && !v.empty();
}

// metadata.uid and the controller ownerReference of obj, for Events. Lenient: a member of the
// wrong type is skipped (it never decides an admission).
void read_owner(dom::object obj, Request& out) {
  auto meta = member(obj, "metadata");
  dom::object m;
  if (!meta || meta->get_object().get(m) != simdjson::SUCCESS) return;
  std::string_view v;
  if (auto uid = member(m, "uid"); uid && uid->get_string().get(v) == simdjson::SUCCESS) {
    out.object_uid = std::string(v);
  }
  auto refs = member(m, "ownerReferences");
  dom::array list;
  if (!refs || refs->get_array().get(list) != simdjson::SUCCESS) return;
  for (dom::element e : list) {
    dom::object ref;
    bool controller = false;
    if (e.get_object().get(ref) != simdjson::SUCCESS) continue;
    if (ref.at_key("controller").get_bool().get(controller) != simdjson::SUCCESS || !controller) {
      continue;
    }
    OwnerRef o;
    auto str = [&](const char* key, std::string& to) {
      std::string_view s;
      if (ref.at_key(key).get_string().get(s) != simdjson::SUCCESS) return false;
      to = std::string(s);
      return true;
    };
    if (str("apiVersion", o.api_version) && str("kind", o.kind) && str("name", o.name)) {
      str("uid", o.uid);
      out.controller = std::move(o);
    }
    return;  // Kubernetes allows one controller
  }
}

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
  const RequestMembers rm = request_members(r);

  Request out;
  auto uid = req_string(rm.uid, "uid", "request");
  if (!uid) return uid.error();
  if (uid->empty()) return parse_err("request.uid: empty");
  out.uid = std::move(*uid);

  const auto& k_el = rm.kind;
  dom::object k;
  if (!k_el || k_el->get_object().get(k) != simdjson::SUCCESS) {
    return parse_err("request.kind: missing or not an object");
  }
  auto kk = req_string(k, "kind", "request.kind");
  if (!kk) return kk.error();
  auto kg = opt_string(k, "group", "request.kind");
  if (!kg) return kg.error();
  auto kv = opt_string(k, "version", "request.kind");
  if (!kv) return kv.error();
  out.kind = std::move(*kk);
  out.group = std::move(*kg);
  out.version = std::move(*kv);

  // request.resource is what the API server routed (and what the webhook's rules match); the
  // kind only names the object in messages.
  const auto& res_el = rm.resource;
  dom::object res;
  if (!res_el || res_el->get_object().get(res) != simdjson::SUCCESS) {
    return parse_err("request.resource: missing or not an object");
  }
  auto rr = req_string(res, "resource", "request.resource");
  if (!rr) return rr.error();
  auto rg = opt_string(res, "group", "request.resource");
  if (!rg) return rg.error();
  out.resource = std::move(*rr);
  out.resource_group = std::move(*rg);

  auto op = req_string(rm.operation, "operation", "request");
  if (!op) return op.error();
  if (*op != "CREATE" && *op != "UPDATE" && *op != "DELETE" && *op != "CONNECT") {
    return parse_err("request.operation: unknown operation \"" + *op + "\"");
  }
  out.operation = std::move(*op);

  auto sub = opt_string(rm.sub_resource, "subResource", "request");
  if (!sub) return sub.error();
  out.sub_resource = std::move(*sub);
  auto ns = opt_string(rm.namespace_, "namespace", "request");
  if (!ns) return ns.error();
  out.namespace_ = std::move(*ns);
  auto name = opt_string(rm.name, "name", "request");
  if (!name) return name.error();
  out.name = std::move(*name);

  if (const auto& dry = rm.dry_run) {
    bool b = false;
    if (dry->get_bool().get(b) != simdjson::SUCCESS) {
      return parse_err("request.dryRun: not a boolean");
    }
    out.dry_run = b;
  }

  const bool writes = out.operation == "CREATE" || out.operation == "UPDATE";
  auto object = [&]() -> Result<dom::object> {
    const auto& e = rm.object;
    dom::object o;
    if (!e || e->get_object().get(o) != simdjson::SUCCESS) {
      return parse_err("request.object: missing or not an object for " + out.operation + " of " +
                       out.kind);
    }
    return o;
  };

  if (out.resource_group == "sigil.dev" && writes) {
    auto obj = object();
    if (!obj) return obj.error();
    out.object_json = simdjson::minify(*obj);
    return out;
  }

  const auto path = pod_spec_path(out.resource_group, out.resource, out.sub_resource);
  if (path.empty() || !writes) {
    out.judged = false;
    return out;
  }
  out.judged = true;

  // The new object. For UPDATE (including the ephemeralcontainers subresource) every image of
  // the new object is listed, not only the changed ones; old_images tells which are new.
  auto obj = object();
  if (!obj) return obj.error();
  auto pod_spec = find_pod_spec(*obj, path, "request.object");
  if (!pod_spec) return pod_spec.error();
  if (auto st = extract_images(*pod_spec, out.images); !st) return st.error();
  out.deleting = being_deleted(*obj);
  read_owner(*obj, out);

  // The old object of an UPDATE, read the same way. A defect in it only means that no image
  // counts as unchanged: it never fails the review, and never admits anything by itself.
  if (out.operation == "UPDATE") {
    dom::object old;
    if (const auto& e = rm.old_object; e && e->get_object().get(old) == simdjson::SUCCESS) {
      auto old_spec = find_pod_spec(old, path, "request.oldObject");
      if (old_spec && extract_images(*old_spec, out.old_images)) {
        out.has_old_images = true;
      } else {
        out.old_images.clear();
      }
    }
  }

  const dom::object spec = pod_spec->spec;
  const std::string& spec_path = pod_spec->path;
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

// The parser kept per thread (see kReusedParserBytes), shared by decode and review_uid; neither
// keeps a view into it past its return.
dom::parser& reused_parser() {
  thread_local dom::parser parser;
  return parser;
}

Result<Request> decode(std::string_view body) {
  if (body.size() <= kReusedParserBytes) return decode_with(reused_parser(), body);
  dom::parser parser;
  return decode_with(parser, body);
}

std::string uid_with(dom::parser& parser, std::string_view body) {
  if (parser.max_depth() != kMaxDepth) {
    if (parser.allocate(std::max<std::size_t>(body.size(), 1024), kMaxDepth)) return {};
  }
  dom::element root;
  std::string_view api_version, kind, uid;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS ||
      root["apiVersion"].get_string().get(api_version) != simdjson::SUCCESS ||
      api_version != "admission.k8s.io/v1" ||
      root["kind"].get_string().get(kind) != simdjson::SUCCESS || kind != "AdmissionReview" ||
      root["request"]["uid"].get_string().get(uid) != simdjson::SUCCESS) {
    return {};
  }
  return std::string(uid);
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

std::string review_uid(std::string_view body) {
  try {
    if (body.size() <= kReusedParserBytes) return uid_with(reused_parser(), body);
    dom::parser parser;
    return uid_with(parser, body);
  } catch (...) {
    return {};
  }
}

std::string json_pointer_token(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::vector<const ImageUse*> new_image_uses(const Request& request) {
  std::vector<const ImageUse*> out;
  const bool compare = request.operation == "UPDATE" && request.has_old_images;
  std::map<std::string_view, std::string_view> old;  // pointer -> image
  if (compare) {
    for (const auto& use : request.old_images) old.emplace(use.pointer, use.image);
  }
  for (const auto& use : request.images) {
    auto it = compare ? old.find(use.pointer) : old.end();
    if (it == old.end() || it->second != use.image) out.push_back(&use);
  }
  return out;
}

// A fixed shape written like encode_response below: only the strings need escaping.
std::string encode_image_patch(const std::vector<ImagePatch>& patches) {
  std::string out = "[";
  for (const auto& p : patches) {
    if (out.size() > 1) out.push_back(',');
    out += R"({"op":"test","path":)";
    append_json_string(out, p.pointer);
    out += R"(,"value":)";
    append_json_string(out, p.from);
    out += R"(},{"op":"replace","path":)";
    append_json_string(out, p.pointer);
    out += R"(,"value":)";
    append_json_string(out, p.to);
    out.push_back('}');
  }
  out.push_back(']');
  return out;
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
    if (response.allowed && !response.patch.empty()) {
      out += R"(,"patchType":"JSONPatch","patch":)";
      append_json_string(out, base64_encode(response.patch));
    }
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
