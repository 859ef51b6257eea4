// policy/yaml_reader.cpp: reading YAML fields strictly, for the policy parsers (see
// yaml_detail.hpp): duplicate, non-scalar and unknown keys are errors naming the field.
#include "policy/yaml_detail.hpp"

#include <re2/re2.h>

#include "common/encoding.hpp"

namespace sigil::policy::detail {

constexpr std::size_t kMaxRegexpLength = 1024;

std::string line_of(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  if (m.line < 0) return "";
  return " (line " + std::to_string(m.line + 1) + ")";
}

// A map's pairs by key, rejecting non-scalar and duplicate keys.
Result<std::map<std::string, YAML::Node>> fields(const YAML::Node& node, const Where& w,
                                                 const std::string& path) {
  if (!node.IsMap())
    return w.err(Errc::invalid_argument, path, "expected a mapping" + line_of(node));
  std::map<std::string, YAML::Node> out;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) {
      return w.err(Errc::invalid_argument, path, "non-scalar key" + line_of(it->first));
    }
    const std::string key = it->first.Scalar();
    if (!out.emplace(key, it->second).second) {
      return w.err(Errc::invalid_argument, path.empty() ? key : path + "." + key,
                   "duplicate field" + line_of(it->first));
    }
  }
  return out;
}

// Rejects fields outside `known`; fields in `unsupported` get Errc::unsupported and `why`.
Status check_fields(
    const std::map<std::string, YAML::Node>& f, const Where& w, const std::string& path,
    std::initializer_list<std::string_view> known,
    std::initializer_list<std::pair<std::string_view, std::string_view>> unsupported) {
  for (const auto& [key, node] : f) {
    const std::string at = path.empty() ? key : path + "." + key;
    bool ok = false;
    for (auto k : known) ok = ok || k == key;
    if (ok) continue;
    for (auto [k, why] : unsupported) {
      if (k == key) return w.err(Errc::unsupported, at, std::string(why) + " not supported yet");
    }
    return w.err(Errc::invalid_argument, at, "unknown field" + line_of(node));
  }
  return {};
}

Result<std::string> scalar(const YAML::Node& n, const Where& w, const std::string& path) {
  if (!n.IsScalar()) return w.err(Errc::invalid_argument, path, "expected a string" + line_of(n));
  return n.Scalar();
}

const YAML::Node* get(const std::map<std::string, YAML::Node>& f, const char* key) {
  auto it = f.find(key);
  if (it == f.end() || it->second.IsNull()) return nullptr;
  return &it->second;
}

bool dns1123_subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  for (char c : s) {
    if (!alnum(c) && c != '-' && c != '.') return false;
  }
  return true;
}

// A PEM text, or the base64 of one (policy-controller's []byte fields arrive as base64 in
// YAML/JSON; people also paste PEM directly).
Result<std::string> pem_or_base64_pem(const std::string& text) {
  std::string_view t = trim(text);
  if (t.rfind("-----BEGIN", 0) == 0) return std::string(t);
  auto decoded = base64_decode(t);
  if (!decoded) return make_error(Errc::invalid_argument, "neither PEM nor base64 of a PEM");
  std::string_view d = trim(*decoded);
  if (d.rfind("-----BEGIN", 0) != 0) {
    return make_error(Errc::invalid_argument, "base64 that does not decode to a PEM");
  }
  return std::string(d);
}

Result<std::shared_ptr<const re2::RE2>> compile_regexp(const std::string& pattern, const Where& w,
                                                       const std::string& path) {
  if (pattern.size() > kMaxRegexpLength) {
    return w.err(Errc::invalid_argument, path, "regular expression longer than 1024 characters");
  }
  RE2::Options opts;
  opts.set_log_errors(false);
  opts.set_max_mem(1 << 20);
  auto re = std::make_shared<const RE2>(pattern, opts);
  if (!re->ok()) {
    return w.err(Errc::invalid_argument, path, "invalid regular expression: " + re->error());
  }
  return std::shared_ptr<const re2::RE2>(std::move(re));
}

}  // namespace sigil::policy::detail
