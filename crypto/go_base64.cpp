// crypto/go_base64.cpp: see go_base64.hpp. A decoder written to Go's encoding/base64 rules
// (decodeQuantum in base64.go), not to RFC 4648's: the two differ in what they skip.
#include "crypto/go_base64.hpp"

#include <array>
#include <cstdint>

namespace sigil::crypto::detail {

namespace {

using Table = std::array<int8_t, 256>;

constexpr Table make_table(const char* alphabet) {
  Table t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<int8_t>(i);
  return t;
}

constexpr Table kStandard =
    make_table("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
constexpr Table kUrl =
    make_table("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");

Error bad(const char* what) {
  return make_error(Errc::parse_error, std::string("not valid base64: ") + what);
}

}  // namespace

Result<std::string> go_base64_decode(std::string_view text, Base64Alphabet alphabet, bool padded) {
  const Table& table = alphabet == Base64Alphabet::url ? kUrl : kStandard;
  // Go skips '\r' and '\n' wherever they are, padding included; nothing else is skipped.
  std::string clean;
  clean.reserve(text.size());
  for (char c : text) {
    if (c != '\r' && c != '\n') clean.push_back(c);
  }
  size_t data_len = clean.size();
  if (padded) {
    if (clean.size() % 4 != 0) return bad("its length is not a multiple of 4");
    size_t pads = 0;
    while (pads < 2 && data_len > 0 && clean[data_len - 1] == '=') {
      --data_len;
      ++pads;
    }
    // "x===" and a pad before the end are refused below ('=' is not in the alphabet).
    if (pads > 0 && data_len % 4 + pads != 4) return bad("misplaced padding");
  } else if (clean.size() % 4 == 1) {
    return bad("a final quantum of one character");
  }
  std::string out;
  out.reserve(data_len / 4 * 3 + 3);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < data_len; ++i) {
    // NOLINTNEXTLINE(bugprone-signed-char-misuse): -1 marks a byte outside the alphabet
    int v = table[static_cast<unsigned char>(clean[i])];
    if (v < 0)
      return bad(clean[i] == '=' ? "misplaced padding" : "a character outside the alphabet");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

Result<std::string> go_std_base64(std::string_view text) {
  return go_base64_decode(text, Base64Alphabet::standard, /*padded=*/true);
}

Result<std::string> protojson_base64(std::string_view text) {
  const bool url = text.find_first_of("-_") != std::string_view::npos;
  return go_base64_decode(text, url ? Base64Alphabet::url : Base64Alphabet::standard,
                          /*padded=*/text.size() % 4 == 0);
}

Result<std::string> dsse_base64(std::string_view text) {
  auto std_decoded = go_base64_decode(text, Base64Alphabet::standard, /*padded=*/true);
  if (std_decoded) return std_decoded;
  return go_base64_decode(text, Base64Alphabet::url, /*padded=*/true);
}

}  // namespace sigil::crypto::detail
