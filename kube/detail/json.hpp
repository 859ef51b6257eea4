// kube/detail/json.hpp: nlohmann/json helpers shared by kube's .cpp files.
//
// Role: internal to the kube module (never included by a public kube header or by another
// module), so nlohmann stays out of the headers others see. Every function is exception-free.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "kube/object.hpp"

namespace sigil::kube::detail {

// Parses with the depth check (sigil::json_depth_ok); parse_error "<what>: not valid JSON"
// otherwise.
Result<nlohmann::json> parse_json(std::string_view text, const char* what);
// An optional string member ("" when absent or null); parse_error for another type.
Result<std::string> opt_string(const nlohmann::json& obj, const char* key,
                               const std::string& where);
Result<ObjectMeta> parse_meta(const nlohmann::json& obj, const std::string& where,
                              bool allow_nameless);
// metadata + compact JSON text of obj. `slim`: without metadata.managedFields and
// metadata.annotations (what lists and watches keep; see Object::json).
Result<Object> object_from_json(const nlohmann::json& obj, const std::string& where,
                                bool allow_nameless, bool slim = false);
// Best effort: a metav1.Status from whatever members are there.
ApiStatus status_from_json(const nlohmann::json& obj);

}  // namespace sigil::kube::detail
