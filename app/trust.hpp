// app/trust.hpp: where keyless verification's trust material comes from.
//
// Role: the default trust root of keyless authorities that name no TrustRoot: the file given
// with --trusted-root / `trustedRoot:`, else the sigstore public-good root compiled into the
// binary (data/sigstore/). It is parsed only when some authority needs it, so key-only policies
// never depend on it, and nothing is ever fetched from the network.
#pragma once

#include <string>
#include <string_view>

#include "policy/policy.hpp"

namespace sigil::app {

// The public-good trusted_root.json shipped with this build.
std::string_view public_good_trusted_root();

// Loads `file` (a trusted_root.json), or the public-good root when file is empty.
policy::DefaultTrustRoot default_trust_root(std::string file);

}  // namespace sigil::app
