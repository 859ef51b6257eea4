// admission/admission.cpp: AdmissionReview decode (image extraction per kind) and encode.
//
// The review is read with simdjson's DOM (the API server waits for every admission, and the
// parse was half of the CPU of a cached admission with nlohmann's DOM); the response, a fixed
// shape, is written directly. Every access below is type-checked with error codes; a try/catch at
// each public function is the last line so that no exception ever escapes. simdjson validates UTF-8
// and limits nesting (kMaxDepth) while it parses. A key that sigil reads and that an object names
// twice is refused ("duplicate key"), as every other parser of outside bytes in sigil does: the
// API server's Go decoder reads the last of a repeated key and simdjson's lookups the first, so a
// repeat is the one place where sigil and the API server could read different images from the
// same bytes. The API server re-serializes every object, so it never sends one.
#include "admission/admission.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <exception>
#include <initializer_list>
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

std::string concat(std::initializer_list<std::string_view> parts) {
  size_t n = 0;
  for (auto p : parts) n += p.size();
  std::string out;
  out.reserve(n);
  for (auto p : parts) out += p;
  return out;
}

using Member = std::optional<dom::element>;

// The member `key` of obj into `to` (nullopt when absent or null: Kubernetes treats both the
// same). False when obj names key twice.
[[nodiscard]] bool read_member(dom::object obj, std::string_view key, Member& to) {
  to.reset();
  bool seen = false;
  for (dom::key_value_pair field : obj) {
    if (field.key != key) continue;
    if (seen) return false;
    seen = true;
    if (!field.value.is_null()) to = field.value;
  }
  return true;
}

// The members `keys` of obj into `to`, found in one pass over its fields rather than a scan from
// the first field per key (most of a pod spec's lookups are for keys it does not have). A null
// reads as absent. Returns the key of `keys` that obj names twice, else nullptr.
template <size_t N>
[[nodiscard]] const std::string_view* read_members(dom::object obj,
                                                   const std::array<std::string_view, N>& keys,
                                                   std::array<Member, N>& to) {
  std::array<bool, N> seen{};
  for (dom::key_value_pair field : obj) {
    for (size_t i = 0; i < N; ++i) {
      if (field.key != keys[i]) continue;
      if (seen[i]) return &keys[i];
      seen[i] = true;
      if (!field.value.is_null()) to[i] = field.value;
      break;
    }
  }
  return nullptr;
}

// "AdmissionReview: <where...>: duplicate key \"<key>\"".
Error duplicate_err(std::initializer_list<std::string_view> where, std::string_view key) {
  return parse_err(concat(where) + ": duplicate key \"" + std::string(key) + "\"");
}

// A string member (e: the member, nullopt when absent or null) as a view into the parser's
// buffers; `to` is left as it is when absent. nullptr when that worked, else what is wrong
// ("missing" when absent and `required`, or "not a string"), for field_err: no text is built
// unless something is wrong.
const char* read_view(const Member& e, std::string_view& to, bool required) {
  if (!e) return required ? "missing" : nullptr;
  return e->get_string().get(to) == simdjson::SUCCESS ? nullptr : "not a string";
}

// read_view, copied into `to`.
const char* read_string(const Member& e, std::string& to, bool required) {
  std::string_view v;
  if (const char* bad = read_view(e, v, required)) return bad;
  if (e) to.assign(v.data(), v.size());
  return nullptr;
}

// "AdmissionReview: <where>.<key>: <what>" ("request.kind", "kind", "missing").
Error field_err(std::string_view where, std::string_view key, const char* what) {
  return parse_err(concat({where, ".", key, ": ", what}));
}

// An object member that must be there: fails with "<where>: missing or not an object".
Status read_object(const Member& e, dom::object& to, std::string_view where) {
  if (!e || e->get_object().get(to) != simdjson::SUCCESS) {
    return parse_err(concat({where, ": missing or not an object"}));
  }
  return {};
}

// Where the pod spec sits, by request.resource and request.subResource: what the API server
// routed, whatever request.kind says. A pod's only judged subresource is ephemeralcontainers
// (the one that adds images); others (status, binding, eviction, ...) change no image. nullptr
// when sigil does not judge the resource.
struct SpecPath {
  std::string_view path;     // "spec.template.spec": the members taken, for messages
  std::string_view pointer;  // "/spec/template/spec": each member is its own RFC 6901 token
};
constexpr SpecPath kPodSpec{"spec", "/spec"};
constexpr SpecPath kTemplateSpec{"spec.template.spec", "/spec/template/spec"};
constexpr SpecPath kCronJobSpec{"spec.jobTemplate.spec.template.spec",
                                "/spec/jobTemplate/spec/template/spec"};

const SpecPath* pod_spec_path(std::string_view group, std::string_view resource,
                              std::string_view sub_resource) {
  if (group.empty() && resource == "pods") {
    if (sub_resource.empty() || sub_resource == "ephemeralcontainers") return &kPodSpec;
    return nullptr;
  }
  if (!sub_resource.empty()) return nullptr;  // scale, status, ...: no pod template in the object
  if (group.empty() && resource == "replicationcontrollers") return &kTemplateSpec;
  if (group == "apps" && (resource == "deployments" || resource == "replicasets" ||
                          resource == "statefulsets" || resource == "daemonsets")) {
    return &kTemplateSpec;
  }
  if (group == "batch" && resource == "jobs") return &kTemplateSpec;
  if (group == "batch" && resource == "cronjobs") return &kCronJobSpec;
  return nullptr;
}

// The members of a pod spec that decode reads.
constexpr std::array<std::string_view, 6> kSpecKeys = {"initContainers",      "containers",
                                                       "ephemeralContainers", "serviceAccountName",
                                                       "imagePullSecrets",    "volumes"};
constexpr size_t kFirstList = 0, kLists = 3, kServiceAccount = 3, kPullSecrets = 4, kVolumes = 5;

// Appends every image use of one container list (spec.<field>) to out, each with its message
// path and its JSON pointer (built from the steps actually taken, never from the message path).
class Extractor {
 public:
  explicit Extractor(std::vector<ImageUse>& out) : out_(out) {}

  // field: one of the container list names (no '~' or '/': its pointer token is itself); e its
  // member of the spec.
  Status list(const Member& e, std::string_view spec_path, std::string_view spec_pointer,
              std::string_view field) {
    if (!e) return {};
    dom::array items;
    if (e->get_array().get(items) != simdjson::SUCCESS) {
      return parse_err(concat({spec_path, ".", field, ": not an array"}));
    }
    static constexpr std::array<std::string_view, 2> kKeys = {"name", "image"};
    char digits[24];
    std::size_t i = 0;
    for (dom::element item : items) {
      if (++count_ > kMaxContainers) {
        return make_error(Errc::too_large, "AdmissionReview: more than " +
                                               std::to_string(kMaxContainers) + " containers");
      }
      const char* end = std::to_chars(std::begin(digits), std::end(digits), i++).ptr;
      const std::string_view index(digits, static_cast<size_t>(end - digits));
      dom::object c;
      if (item.get_object().get(c) != simdjson::SUCCESS) {
        return parse_err(concat({spec_path, ".", field, "[", index, "]: not an object"}));
      }
      std::array<Member, 2> m;
      if (const auto* dup = read_members(c, kKeys, m)) {
        return duplicate_err({spec_path, ".", field, "[", index, "]"}, *dup);
      }
      std::string_view name, img;
      if (m[0] && m[0]->get_string().get(name) != simdjson::SUCCESS) {
        return parse_err(concat({spec_path, ".", field, "[", index, "].name: not a string"}));
      }
      // Present and a string; a null image reads as missing.
      if (!m[1] || m[1]->get_string().get(img) != simdjson::SUCCESS) {
        return parse_err(
            concat({spec_path, ".", field, "[", index, "].image: missing or not a string"}));
      }
      if (img.empty())
        return parse_err(concat({spec_path, ".", field, "[", index, "].image: empty"}));
      ImageUse& use = out_.emplace_back();
      use.image.assign(img.data(), img.size());
      use.path = name.empty() ? concat({spec_path, ".", field, "[", index, "]"})
                              : concat({spec_path, ".", field, "[", index, "] (", name, ")"});
      use.pointer = concat({spec_pointer, "/", field, "/", index, "/image"});
    }
    return {};
  }

  // The image volumes of spec.volumes (Kubernetes' ImageVolume: an OCI image or artifact
  // mounted into the pod's containers): volumes[i].image.reference, judged and pinned like a
  // container's image. Other volumes are skipped unread.
  Status volumes(const Member& e, std::string_view spec_path, std::string_view spec_pointer) {
    if (!e) return {};
    dom::array items;
    if (e->get_array().get(items) != simdjson::SUCCESS) {
      return parse_err(concat({spec_path, ".volumes: not an array"}));
    }
    static constexpr std::array<std::string_view, 2> kKeys = {"name", "image"};
    char digits[24];
    std::size_t i = 0;
    for (dom::element item : items) {
      const char* end = std::to_chars(std::begin(digits), std::end(digits), i++).ptr;
      const std::string_view index(digits, static_cast<size_t>(end - digits));
      dom::object v;
      if (item.get_object().get(v) != simdjson::SUCCESS) {
        return parse_err(concat({spec_path, ".volumes[", index, "]: not an object"}));
      }
      std::array<Member, 2> m;
      if (const auto* dup = read_members(v, kKeys, m)) {
        return duplicate_err({spec_path, ".volumes[", index, "]"}, *dup);
      }
      if (!m[1]) continue;  // not an image volume
      if (++count_ > kMaxContainers) {
        return make_error(Errc::too_large, "AdmissionReview: more than " +
                                               std::to_string(kMaxContainers) + " containers");
      }
      std::string_view name, img;
      if (m[0] && m[0]->get_string().get(name) != simdjson::SUCCESS) {
        return parse_err(concat({spec_path, ".volumes[", index, "].name: not a string"}));
      }
      dom::object source;
      if (m[1]->get_object().get(source) != simdjson::SUCCESS) {
        return parse_err(concat({spec_path, ".volumes[", index, "].image: not an object"}));
      }
      Member ref;
      if (!read_member(source, "reference", ref)) {
        return duplicate_err({spec_path, ".volumes[", index, "].image"}, "reference");
      }
      if (!ref || ref->get_string().get(img) != simdjson::SUCCESS) {
        return parse_err(
            concat({spec_path, ".volumes[", index, "].image.reference: missing or not a string"}));
      }
      if (img.empty()) {
        return parse_err(concat({spec_path, ".volumes[", index, "].image.reference: empty"}));
      }
      ImageUse& use = out_.emplace_back();
      use.image.assign(img.data(), img.size());
      use.path = name.empty() ? concat({spec_path, ".volumes[", index, "]"})
                              : concat({spec_path, ".volumes[", index, "] (", name, ")"});
      use.pointer = concat({spec_pointer, "/volumes/", index, "/image/reference"});
    }
    return {};
  }

 private:
  std::vector<ImageUse>& out_;
  std::size_t count_ = 0;
};

// The members of an object sigil reads: its metadata (read_metadata) and its spec, the first
// step of every SpecPath; one pass over the object's fields finds both.
constexpr std::array<std::string_view, 2> kObjectKeys = {"metadata", "spec"};
constexpr size_t kObjectMetadata = 0, kObjectSpec = 1;

// The pod spec along path from the object's spec member (`first`), one member per
// '.'-separated step of path.path after the first ("spec").
Status find_pod_spec(const Member& first, const SpecPath& path, std::string_view object_name,
                     dom::object& spec) {
  const size_t first_end = std::min(path.path.find('.'), path.path.size());
  if (!first || first->get_object().get(spec) != simdjson::SUCCESS) {
    return parse_err(
        concat({object_name, ".", path.path.substr(0, first_end), ": missing or not an object"}));
  }
  for (size_t from = first_end + 1; from < path.path.size();) {
    const size_t end = std::min(path.path.find('.', from), path.path.size());
    const std::string_view step = path.path.substr(from, end - from);
    Member next;
    if (!read_member(spec, step, next)) {
      // The object that names the step twice.
      return duplicate_err({object_name, ".", path.path.substr(0, from - 1)}, step);
    }
    if (!next || next->get_object().get(spec) != simdjson::SUCCESS) {
      // The steps up to and including the failing one.
      return parse_err(
          concat({object_name, ".", path.path.substr(0, end), ": missing or not an object"}));
    }
    from = end + 1;
  }
  return {};
}

Status extract_images(const std::array<Member, kSpecKeys.size()>& spec, const SpecPath& path,
                      std::vector<ImageUse>& out) {
  Extractor ex(out);
  for (size_t i = kFirstList; i < kFirstList + kLists; ++i) {
    if (auto st = ex.list(spec[i], path.path, path.pointer, kSpecKeys[i]); !st) return st;
  }
  return ex.volumes(spec[kVolumes], path.path, path.pointer);
}

// metadata.deletionTimestamp (being deleted: a non-empty string, what the API server writes;
// anything else, including a malformed value, reads as "not being deleted" and the object is
// then judged as usual), metadata.uid and the controller ownerReference of obj, for Events.
// Lenient: a member of the wrong type is skipped (it never decides an admission). A repeated
// key is not: a second deletionTimestamp would decide whether an UPDATE is judged at all.
Status read_metadata(const Member& meta, Request& out) {
  dom::object md;
  if (!meta || meta->get_object().get(md) != simdjson::SUCCESS) return {};
  static constexpr std::array<std::string_view, 3> kKeys = {"deletionTimestamp", "uid",
                                                            "ownerReferences"};
  std::array<Member, 3> m;
  if (const auto* dup = read_members(md, kKeys, m)) {
    return duplicate_err({"request.object.metadata"}, *dup);
  }
  std::string_view v;
  out.deleting = m[0] && m[0]->get_string().get(v) == simdjson::SUCCESS && !v.empty();
  if (m[1] && m[1]->get_string().get(v) == simdjson::SUCCESS) out.object_uid.assign(v);
  dom::array list;
  if (!m[2] || m[2]->get_array().get(list) != simdjson::SUCCESS) return {};
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
    return {};  // Kubernetes allows one controller
  }
  return {};
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

// Parses body with `parser` (depth-limited) into out, a default Request. Every string is copied
// out before the parser is reused, so no view into its buffers outlives this call.
Status decode_with(dom::parser& parser, std::string_view body, Request& out) {
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

  static constexpr std::array<std::string_view, 3> kReviewKeys = {"apiVersion", "kind", "request"};
  std::array<Member, kReviewKeys.size()> review;
  if (const auto* dup = read_members(doc, kReviewKeys, review)) {
    return duplicate_err({"review"}, *dup);
  }
  std::string_view api_version, review_kind;
  if (auto bad = read_view(review[0], api_version, true)) {
    return field_err("review", "apiVersion", bad);
  }
  if (api_version != "admission.k8s.io/v1") {
    return make_error(Errc::parse_error, concat({"AdmissionReview: apiVersion \"", api_version,
                                                 "\" is not supported; configure the webhook "
                                                 "with admissionReviewVersions: [\"v1\"]"}));
  }
  if (auto bad = read_view(review[1], review_kind, true)) return field_err("review", "kind", bad);
  if (review_kind != "AdmissionReview") {
    return parse_err(concat({"kind \"", review_kind, "\" is not AdmissionReview"}));
  }
  dom::object r;
  if (auto st = read_object(review[2], r, "request"); !st) return st;

  static constexpr std::array<std::string_view, 10> kRequestKeys = {
      "uid",       "kind", "resource", "operation", "subResource",
      "namespace", "name", "dryRun",   "object",    "oldObject"};
  std::array<Member, kRequestKeys.size()> rm;
  if (const auto* dup = read_members(r, kRequestKeys, rm)) return duplicate_err({"request"}, *dup);
  const Member &m_uid = rm[0], &m_kind = rm[1], &m_resource = rm[2], &m_operation = rm[3],
               &m_sub = rm[4], &m_namespace = rm[5], &m_name = rm[6], &m_dry_run = rm[7],
               &m_object = rm[8], &m_old_object = rm[9];

  if (auto bad = read_string(m_uid, out.uid, true)) return field_err("request", "uid", bad);
  if (out.uid.empty()) return parse_err("request.uid: empty");

  static constexpr std::array<std::string_view, 3> kKindKeys = {"kind", "group", "version"};
  dom::object k;
  if (auto st = read_object(m_kind, k, "request.kind"); !st) return st;
  std::array<Member, kKindKeys.size()> km;
  if (const auto* dup = read_members(k, kKindKeys, km)) {
    return duplicate_err({"request.kind"}, *dup);
  }
  if (auto bad = read_string(km[0], out.kind, true)) return field_err("request.kind", "kind", bad);
  if (auto bad = read_string(km[1], out.group, false)) {
    return field_err("request.kind", "group", bad);
  }
  if (auto bad = read_string(km[2], out.version, false)) {
    return field_err("request.kind", "version", bad);
  }

  // request.resource is what the API server routed (and what the webhook's rules match); the
  // kind only names the object in messages.
  static constexpr std::array<std::string_view, 2> kResourceKeys = {"resource", "group"};
  dom::object res;
  if (auto st = read_object(m_resource, res, "request.resource"); !st) return st;
  std::array<Member, kResourceKeys.size()> resm;
  if (const auto* dup = read_members(res, kResourceKeys, resm)) {
    return duplicate_err({"request.resource"}, *dup);
  }
  if (auto bad = read_string(resm[0], out.resource, true)) {
    return field_err("request.resource", "resource", bad);
  }
  if (auto bad = read_string(resm[1], out.resource_group, false)) {
    return field_err("request.resource", "group", bad);
  }

  std::string_view op;
  if (auto bad = read_view(m_operation, op, true)) return field_err("request", "operation", bad);
  if (op != "CREATE" && op != "UPDATE" && op != "DELETE" && op != "CONNECT") {
    return parse_err(concat({"request.operation: unknown operation \"", op, "\""}));
  }
  out.operation.assign(op);

  if (auto bad = read_string(m_sub, out.sub_resource, false)) {
    return field_err("request", "subResource", bad);
  }
  if (auto bad = read_string(m_namespace, out.namespace_, false)) {
    return field_err("request", "namespace", bad);
  }
  if (auto bad = read_string(m_name, out.name, false)) return field_err("request", "name", bad);

  if (m_dry_run) {
    bool b = false;
    if (m_dry_run->get_bool().get(b) != simdjson::SUCCESS) {
      return parse_err("request.dryRun: not a boolean");
    }
    out.dry_run = b;
  }

  const bool writes = op == "CREATE" || op == "UPDATE";
  auto object = [&](dom::object& o) -> Status {
    if (!m_object || m_object->get_object().get(o) != simdjson::SUCCESS) {
      return parse_err(
          concat({"request.object: missing or not an object for ", op, " of ", out.kind}));
    }
    return {};
  };

  if (out.resource_group == "sigil.dev" && writes) {
    dom::object obj;
    if (auto st = object(obj); !st) return st;
    out.object_json = simdjson::minify(obj);
    return {};
  }

  const SpecPath* path = pod_spec_path(out.resource_group, out.resource, out.sub_resource);
  if (path == nullptr || !writes) {
    out.judged = false;
    return {};
  }
  out.judged = true;

  // The new object. For UPDATE (including the ephemeralcontainers subresource) every image of
  // the new object is listed, not only the changed ones; old_images tells which are new.
  dom::object obj, spec;
  if (auto st = object(obj); !st) return st;
  std::array<Member, kObjectKeys.size()> om;
  if (const auto* dup = read_members(obj, kObjectKeys, om)) {
    return duplicate_err({"request.object"}, *dup);
  }
  if (auto st = find_pod_spec(om[kObjectSpec], *path, "request.object", spec); !st) return st;
  std::array<Member, kSpecKeys.size()> sm;
  if (const auto* dup = read_members(spec, kSpecKeys, sm)) {
    return duplicate_err({"request.object.", path->path}, *dup);
  }
  if (auto st = extract_images(sm, *path, out.images); !st) return st;
  if (auto st = read_metadata(om[kObjectMetadata], out); !st) return st;

  // The old object of an UPDATE, read the same way. A defect in it only means that no image
  // counts as unchanged: it never fails the review, and never admits anything by itself.
  if (op == "UPDATE") {
    dom::object old, old_spec;
    std::array<Member, kObjectKeys.size()> old_om;
    std::array<Member, kSpecKeys.size()> old_sm;
    if (m_old_object && m_old_object->get_object().get(old) == simdjson::SUCCESS &&
        read_members(old, kObjectKeys, old_om) == nullptr &&
        find_pod_spec(old_om[kObjectSpec], *path, "request.oldObject", old_spec) &&
        read_members(old_spec, kSpecKeys, old_sm) == nullptr &&
        extract_images(old_sm, *path, out.old_images)) {
      out.has_old_images = true;
    } else {
      out.old_images.clear();
    }
  }

  std::string_view sa;
  if (auto bad = read_view(sm[kServiceAccount], sa, false)) {
    return field_err(concat({"request.object.", path->path}), "serviceAccountName", bad);
  }
  out.service_account.assign(sa.empty() ? std::string_view("default") : sa);
  if (const Member& ips = sm[kPullSecrets]) {
    dom::array list;
    if (ips->get_array().get(list) != simdjson::SUCCESS) {
      return parse_err(concat({"request.object.", path->path, ".imagePullSecrets: not a list"}));
    }
    std::size_t i = 0;
    for (dom::element e : list) {
      dom::object ref;
      std::string_view n;
      const std::size_t index = i++;
      if (e.get_object().get(ref) != simdjson::SUCCESS) continue;
      Member name;
      if (!read_member(ref, "name", name)) {
        return duplicate_err(
            {"request.object.", path->path, ".imagePullSecrets[", std::to_string(index), "]"},
            "name");
      }
      if (name && name->get_string().get(n) == simdjson::SUCCESS && !n.empty() &&
          out.image_pull_secrets.size() < 64) {
        out.image_pull_secrets.emplace_back(n);
      }
    }
  }
  return {};
}

// The parser kept per thread (see kReusedParserBytes), shared by decode and review_uid; neither
// keeps a view into it past its return.
dom::parser& reused_parser() {
  thread_local dom::parser parser;
  return parser;
}

// One Result, filled in place and returned by name (no Request is moved on the way out).
Result<Request> decode(std::string_view body) {
  Result<Request> out{Request{}};
  Status st;
  if (body.size() <= kReusedParserBytes) {
    st = decode_with(reused_parser(), body, *out);
  } else {
    dom::parser parser;
    st = decode_with(parser, body, *out);
  }
  if (!st) out = std::move(st).error();
  return out;
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

bool writes_pod_spec(const Request& request) {
  return request.resource_group.empty() && request.resource == "pods" && request.judged &&
         (request.sub_resource.empty() || request.sub_resource == "ephemeralcontainers");
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
