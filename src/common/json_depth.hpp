// common/json_depth.hpp: a nesting-depth pre-check for JSON text from outside.
//
// Role: run before nlohmann parses a body from the network, so a hostile body of a million '['
// can neither exhaust the stack nor make us allocate a deep tree. Pure; depends on nothing.
#pragma once

#include <cstddef>
#include <string_view>

namespace sigil {

// False when brackets in `text` (outside string literals) nest deeper than max_depth. Does not
// validate the JSON otherwise: the parser that runs next does.
bool json_depth_ok(std::string_view text, std::size_t max_depth) noexcept;

}  // namespace sigil
