// crypto/json_detail.hpp: the strict JSON reading the crypto parsers share. PRIVATE to
// crypto/: included only by its .cpp files (jcs, dsse, rekor, bundle, cosign), never by another
// module, so nlohmann stays out of every public header.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/encoding.hpp"
#include "common/result.hpp"
#include "crypto/dsse.hpp"
#include "crypto/rekor.hpp"

namespace sigil::crypto::detail {

inline constexpr size_t kMaxJsonBytes = 4 * 1024 * 1024;
inline constexpr int kMaxJsonDepth = 64;

// Parses text as one JSON value: duplicate member names (after unescaping), nesting deeper
// than kMaxJsonDepth, a leading byte order mark, invalid UTF-8 and lone surrogates are
// Errc::parse_error; more than max_bytes is Errc::too_large. Messages start with `what`
// ("sigstore bundle: duplicate key \"mediaType\""). Never throws.
Result<nlohmann::json> parse_json_strict(std::string_view text, std::string_view what,
                                         size_t max_bytes = kMaxJsonBytes);

// How parse_json_strict tells the member names of one object apart: two names with equal
// results are duplicates. `path` holds the names leading from the document to the object
// ("" for an array element); `key` is the unescaped name.
using MemberIdentity = std::string (*)(const std::vector<std::string>& path,
                                       const std::string& key);
// The same with a nesting limit of max_depth and names compared through identity (e.g.
// go_fold for the objects Go decodes into structs).
Result<nlohmann::json> parse_json_strict(std::string_view text, std::string_view what,
                                         size_t max_bytes, int max_depth, MemberIdentity identity);

// Protobuf JSON (the proto3 JSON mapping sigstore bundles and trusted roots use). Errors are
// Errc::parse_error "<field> <what is wrong>", without a document prefix.
//
// The member of obj spelled json_name (lowerCamelCase) or proto_name (the .proto field name,
// which protobuf JSON parsers also accept); nullptr when absent or null (null means "not
// set" in protobuf JSON). Both spellings at once is an error naming `field`.
Result<const nlohmann::json*> pb_member(const nlohmann::json& obj, std::string_view json_name,
                                        std::string_view proto_name, std::string_view field);
// `bytes`, as Go's protojson reads them (protojson_base64 in go_base64.hpp): standard or
// URL-safe alphabet, padded or not, '\r' and '\n' skipped; any other whitespace is refused.
Result<std::string> pb_bytes(const nlohmann::json& v, std::string_view field);
// A base64 string as Go's base64.StdEncoding reads it (go_std_base64): what go-openapi's
// strfmt.Base64 and encoding/json's []byte fields accept (cosign annotations, Rekor v1 bodies).
Result<std::string> go_std_bytes(const nlohmann::json& v, std::string_view field);
// `int64`/`uint64` fields: a JSON integer or a decimal string ("79571823"), no fraction, no
// exponent, no leading zeros or '+'; must lie in [min, INT64_MAX].
Result<int64_t> pb_int64(const nlohmann::json& v, std::string_view field, int64_t min);
// `string` fields.
Result<std::string> pb_string(const nlohmann::json& v, std::string_view field);

// A member name folded the way Go's encoding/json matches names to struct fields
// (bytes.EqualFold): ASCII case, plus U+212A KELVIN SIGN (k) and U+017F LATIN SMALL LETTER
// LONG S (s), the two non-ASCII runes whose fold orbit reaches ASCII. cosign reads its JSON
// with Go, so two names equal after folding are one field to it, and must be to us.
std::string go_fold(std::string_view key);

// Outside text for an error message: common/encoding.hpp's printable (ASCII only).
using sigil::printable;

// parse_bundle_tlog_entry on a parsed value; `path` prefixes field names in messages
// ("verificationMaterial.tlogEntries[0]"), which carry no document prefix.
Result<TlogEntry> tlog_entry_from_json(const nlohmann::json& v, std::string_view path);

// The envelope in v, already parsed strictly. `path` prefixes field names in messages
// ("dsseEnvelope"). With protobuf_names, payload_type is accepted for payloadType (protobuf
// JSON allows the proto field name; both at once is an error).
Result<DsseEnvelope> dsse_envelope_from_json(const nlohmann::json& v, std::string_view path,
                                             bool protobuf_names);

}  // namespace sigil::crypto::detail
