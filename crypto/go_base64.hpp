// crypto/go_base64.hpp: base64 exactly as the Go readers of sigstore material decode it.
//
// Role: most bundles, trust roots, Rekor entries and cosign annotations are written and read by
// Go programs, so "valid base64" means what Go's encoding/base64 accepts there: '\r' and '\n'
// anywhere are skipped (Go's decoder ignores them), and nothing else outside the alphabet is.
// Which alphabet and padding depends on the reader; each reader sigil mirrors has its function
// here. PRIVATE to crypto/ (included by its .cpp files and its unit tests). Pure: common only.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace sigil::crypto::detail {

enum class Base64Alphabet { standard, url };  // "+/" or "-_"

// (*base64.Encoding).DecodeString of the encoding with this alphabet, padded ('=') or not
// (NoPadding): '\r' and '\n' are skipped wherever they are; padded input must be whole
// four-character quanta with at most two trailing '=' (and nothing after them); unpadded input
// may end in a quantum of two or three characters, and '=' is refused. Trailing bits are not
// checked (Go's non-Strict mode). Errc::parse_error otherwise.
Result<std::string> go_base64_decode(std::string_view text, Base64Alphabet alphabet, bool padded);

// base64.StdEncoding.DecodeString: cosign's annotations (signature, bundle SET and body, RFC
// 3161 timestamp), Rekor v1 entry bodies (go-openapi strfmt.Base64), checkpoint fields.
Result<std::string> go_std_base64(std::string_view text);

// protojson's `bytes` (google.golang.org/protobuf/encoding/protojson): the URL alphabet when
// the text holds '-' or '_', else the standard one; padded when the text's length (before
// '\r'/'\n' are skipped) is a multiple of four, else unpadded. Bundles, trusted roots and
// Rekor v2 entry bodies.
Result<std::string> protojson_base64(std::string_view text);

// go-securesystemslib's DSSE envelope decoder: StdEncoding, and when that fails URLEncoding
// (both padded). Legacy DSSE envelopes (cosign's .att layers).
Result<std::string> dsse_base64(std::string_view text);

}  // namespace sigil::crypto::detail
