#include "kube/object.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "common/encoding.hpp"
#include "common/json_text.hpp"
#include "kube/detail/json.hpp"

namespace sigil::kube {

using json = nlohmann::json;

namespace {

Error perr(std::string what) {
  return make_error(Errc::parse_error, std::move(what));
}

// A namespace or name that can be one path segment: not empty, no '/', not "." or "..", no
// control bytes, at most 253 bytes (DNS subdomain names are shorter still).
Status check_segment(std::string_view s, const char* what) {
  auto bad = [&](const char* why) {
    return make_error(Errc::invalid_argument,
                      std::string(what) + " \"" + sanitize_text(s, 80) + "\" " + why);
  };
  if (s.empty()) return bad("is empty");
  if (s.size() > 253) return bad("is longer than 253 bytes");
  if (s == "." || s == "..") return bad("is not a valid name");
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '/' || u < 0x20 || u == 0x7f) return bad("contains a '/' or a control character");
  }
  return {};
}

std::string path_escape(std::string_view s) {
  return query_escape(s);
}

}  // namespace

std::string Resource::display() const {
  return group.empty() ? plural : plural + "." + group;
}

namespace resources {
Resource cluster_image_policies() {
  return {"sigil.dev", "v1alpha1", "clusterimagepolicies", false};
}
Resource image_policies() {
  return {"sigil.dev", "v1alpha1", "imagepolicies", true};
}
Resource trust_roots() {
  return {"sigil.dev", "v1alpha1", "trustroots", false};
}
Resource secrets() {
  return {"", "v1", "secrets", true};
}
Resource service_accounts() {
  return {"", "v1", "serviceaccounts", true};
}
Resource validating_webhook_configurations() {
  return {"admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", false};
}
Resource mutating_webhook_configurations() {
  return {"admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", false};
}
}  // namespace resources

std::string query_escape(std::string_view value) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    bool unreserved = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

Result<std::string> collection_path(const Resource& r, std::string_view ns) {
  if (r.version.empty() || r.plural.empty()) {
    return make_error(Errc::invalid_argument, "resource " + r.display() + " has no version/plural");
  }
  std::string p = r.group.empty() ? "/api/" + path_escape(r.version)
                                  : "/apis/" + path_escape(r.group) + "/" + path_escape(r.version);
  if (!ns.empty()) {
    if (!r.namespaced) {
      return make_error(Errc::invalid_argument,
                        "resource " + r.display() + " is cluster-scoped: no namespace allowed");
    }
    if (auto st = check_segment(ns, "namespace"); !st) return st.error();
    p += "/namespaces/" + path_escape(ns);
  }
  p += "/" + path_escape(r.plural);
  return p;
}

Result<std::string> object_path(const Resource& r, std::string_view ns, std::string_view name,
                                std::string_view subresource) {
  if (r.namespaced && ns.empty()) {
    return make_error(Errc::invalid_argument,
                      "resource " + r.display() + " is namespaced: a namespace is required");
  }
  auto p = collection_path(r, ns);
  if (!p) return p;
  if (auto st = check_segment(name, "name"); !st) return st.error();
  std::string out = std::move(*p) + "/" + path_escape(name);
  if (!subresource.empty()) {
    if (auto st = check_segment(subresource, "subresource"); !st) return st.error();
    out += "/" + path_escape(subresource);
  }
  return out;
}

std::string ObjectMeta::key() const {
  return namespace_.empty() ? name : namespace_ + "/" + name;
}

std::string ApiStatus::describe() const {
  std::string out;
  if (!reason.empty()) out = reason;
  if (!message.empty()) out += (out.empty() ? "" : ": ") + message;
  if (out.empty()) out = status.empty() ? "no reason given" : status;
  return out;
}

std::string sanitize_text(std::string_view text, size_t max) {
  return printable(text, max);
}

namespace detail {

Result<json> parse_json(std::string_view text, const char* what) {
  if (!json_depth_ok(text, kMaxJsonDepth)) {
    return perr(std::string(what) + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                " levels");
  }
  try {
    json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return perr(std::string(what) + ": not valid JSON");
    return j;
  } catch (const std::exception&) {
    return perr(std::string(what) + ": not valid JSON");
  }
}

Result<std::string> opt_string(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) return perr(where + "." + key + " is not a string");
  return it->get<std::string>();
}

Result<ObjectMeta> parse_meta(const json& obj, const std::string& where, bool allow_nameless) {
  if (!obj.is_object()) return perr(where + " is not a JSON object");
  ObjectMeta m;
  auto it = obj.find("metadata");
  if (it == obj.end() || it->is_null()) {
    if (!allow_nameless) return perr(where + " has no metadata");
    return m;
  }
  if (!it->is_object()) return perr(where + ".metadata is not an object");
  const json& md = *it;
  const std::string mw = where + ".metadata";
  auto name = opt_string(md, "name", mw);
  if (!name) return name.error();
  auto ns = opt_string(md, "namespace", mw);
  if (!ns) return ns.error();
  auto uid = opt_string(md, "uid", mw);
  if (!uid) return uid.error();
  auto rv = opt_string(md, "resourceVersion", mw);
  if (!rv) return rv.error();
  m.name = std::move(*name);
  m.namespace_ = std::move(*ns);
  m.uid = std::move(*uid);
  m.resource_version = std::move(*rv);
  if (m.name.empty() && !allow_nameless) return perr(mw + ".name is missing");
  if (m.name.find('/') != std::string::npos || m.namespace_.find('/') != std::string::npos) {
    return perr(mw + ": name or namespace contains '/'");
  }
  auto g = md.find("generation");
  if (g != md.end() && !g->is_null()) {
    if (!g->is_number_integer()) return perr(mw + ".generation is not an integer");
    m.generation = g->get<int64_t>();
    if (m.generation < 0) return perr(mw + ".generation is negative");
  }
  return m;
}

Result<Object> object_from_json(const json& j, const std::string& where, bool allow_nameless,
                                bool slim) {
  auto meta = parse_meta(j, where, allow_nameless);
  if (!meta) return meta.error();
  Object o;
  o.meta = std::move(*meta);
  try {
    if (!slim) {
      o.json = j.dump(-1, ' ', false, json::error_handler_t::replace);
      return o;
    }
    json kept = json::object();
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() != "metadata" || !it->is_object()) {
        kept[it.key()] = *it;
        continue;
      }
      json m = json::object();
      for (auto f = it->begin(); f != it->end(); ++f) {
        if (f.key() != "managedFields" && f.key() != "annotations") m[f.key()] = *f;
      }
      kept["metadata"] = std::move(m);
    }
    o.json = kept.dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (const std::exception&) {
    return perr(where + ": cannot be serialized");
  }
  return o;
}

ApiStatus status_from_json(const json& j) {
  ApiStatus s;
  auto str = [&](const char* k) -> std::string {
    auto it = j.find(k);
    if (it != j.end() && it->is_string()) return sanitize_text(it->get<std::string>());
    return {};
  };
  s.status = str("status");
  s.reason = str("reason");
  s.message = str("message");
  auto c = j.find("code");
  if (c != j.end() && c->is_number_integer()) {
    auto v = c->get<int64_t>();
    if (v >= 0 && v < 1000) s.code = static_cast<int>(v);
  }
  auto d = j.find("details");
  if (d != j.end() && d->is_object()) {
    auto causes = d->find("causes");
    if (causes != d->end() && causes->is_array()) {
      for (const auto& cause : *causes) {
        if (!cause.is_object()) continue;
        auto r = cause.find("reason");
        if (r != cause.end() && r->is_string() &&
            r->get<std::string>() == "ResourceVersionTooLarge")
          s.rv_too_large = true;
      }
    }
  }
  return s;
}

}  // namespace detail

Result<Object> parse_object(std::string_view text, bool allow_nameless) {
  auto j = detail::parse_json(text, "object");
  if (!j) return j.error();
  return detail::object_from_json(*j, "object", allow_nameless);
}

Result<ObjectList> parse_object_list(std::string_view text) {
  auto j = detail::parse_json(text, "list");
  if (!j) return j.error();
  if (!j->is_object()) return perr("list is not a JSON object");
  ObjectList out;
  auto md = j->find("metadata");
  if (md != j->end() && !md->is_null()) {
    if (!md->is_object()) return perr("list.metadata is not an object");
    auto rv = detail::opt_string(*md, "resourceVersion", "list.metadata");
    if (!rv) return rv.error();
    auto cont = detail::opt_string(*md, "continue", "list.metadata");
    if (!cont) return cont.error();
    out.resource_version = std::move(*rv);
    out.continue_token = std::move(*cont);
  }
  auto items = j->find("items");
  if (items == j->end()) return perr("list has no items");
  if (items->is_null()) return out;
  if (!items->is_array()) return perr("list.items is not an array");
  out.items.reserve(items->size());
  size_t i = 0;
  for (const auto& item : *items) {
    auto o = detail::object_from_json(item, "list.items[" + std::to_string(i++) + "]", false, true);
    if (!o) return o.error();
    out.items.push_back(std::move(*o));
  }
  return out;
}

Result<ApiStatus> parse_status(std::string_view text) {
  auto j = detail::parse_json(text, "Status");
  if (!j) return j.error();
  if (!j->is_object()) return perr("Status is not a JSON object");
  auto kind = j->find("kind");
  bool is_status = kind != j->end() && kind->is_string() && kind->get<std::string>() == "Status";
  ApiStatus s = detail::status_from_json(*j);
  if (!is_status && s.code == 0 && s.reason.empty()) return perr("body is not a metav1.Status");
  return s;
}

Result<Secret> parse_secret(std::string_view text) {
  auto j = detail::parse_json(text, "Secret");
  if (!j) return j.error();
  auto meta = detail::parse_meta(*j, "Secret", false);
  if (!meta) return meta.error();
  Secret s;
  s.meta = std::move(*meta);
  const std::string where = "Secret " + s.meta.key();
  auto type = detail::opt_string(*j, "type", where);
  if (!type) return type.error();
  s.type = std::move(*type);
  auto data = j->find("data");
  if (data != j->end() && !data->is_null()) {
    if (!data->is_object()) return perr(where + ": data is not an object");
    for (const auto& [k, v] : data->items()) {
      if (v.is_null()) {
        s.data[k] = std::string();
        continue;
      }
      if (!v.is_string())
        return perr(where + ": data." + sanitize_text(k, 80) + " is not a string");
      auto dec = base64_decode(v.get_ref<const std::string&>());
      // The message names the key only: the value is secret.
      if (!dec) return perr(where + ": data." + sanitize_text(k, 80) + " is not valid base64");
      s.data[k] = std::move(*dec);
    }
  }
  return s;
}

Result<ServiceAccount> parse_service_account(std::string_view text) {
  auto j = detail::parse_json(text, "ServiceAccount");
  if (!j) return j.error();
  auto meta = detail::parse_meta(*j, "ServiceAccount", false);
  if (!meta) return meta.error();
  ServiceAccount sa;
  sa.meta = std::move(*meta);
  const std::string where = "ServiceAccount " + sa.meta.key();
  auto ips = j->find("imagePullSecrets");
  if (ips != j->end() && !ips->is_null()) {
    if (!ips->is_array()) return perr(where + ": imagePullSecrets is not an array");
    for (const auto& ref : *ips) {
      if (!ref.is_object()) return perr(where + ": imagePullSecrets entry is not an object");
      auto n = detail::opt_string(ref, "name", where + ".imagePullSecrets[]");
      if (!n) return n.error();
      if (!n->empty()) sa.image_pull_secrets.push_back(std::move(*n));
    }
  }
  return sa;
}

}  // namespace sigil::kube
