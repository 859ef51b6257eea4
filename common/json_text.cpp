// common/json_text.cpp: see json_text.hpp.
#include "common/json_text.hpp"

#include <array>
#include <cstdint>
#include <cstring>

namespace sigil {

bool json_depth_ok(std::string_view text, std::size_t max_depth) noexcept {
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return false;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return true;
}

namespace {

// Bytes copied as they are without a look at their neighbours: printable ASCII but '"' and '\\'.
constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<size_t>(c)] = c != '"' && c != '\\';
  return t;
}();

// Whether all 8 bytes of w are kPlain (SWAR: "has a byte less than n" and "has a zero byte" are
// exact as to whether any byte qualifies): none >= 0x80, < 0x20, '"' or '\\'.
constexpr bool all_plain(uint64_t w) noexcept {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  const uint64_t below_space = (w - kOnes * 0x20) & ~w & kHigh;
  const uint64_t q = w ^ (kOnes * static_cast<uint64_t>('"'));
  const uint64_t b = w ^ (kOnes * static_cast<uint64_t>('\\'));
  const uint64_t quote = (q - kOnes) & ~q & kHigh;
  const uint64_t backslash = (b - kOnes) & ~b & kHigh;
  return ((w & kHigh) | below_space | quote | backslash) == 0;
}

// The end of the run of kPlain bytes of p[i, n): eight at a time, then one at a time.
size_t plain_run_end(const unsigned char* p, size_t i, size_t n) noexcept {
  while (i + 8 <= n) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (!all_plain(w)) break;
    i += 8;
  }
  while (i < n && kPlain[p[i]]) ++i;
  return i;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out.push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  auto cont = [&](size_t at, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return at < n && p[at] >= lo && p[at] <= hi;
  };
  while (i < n) {
    // The common case, a run of printable ASCII that needs no escaping, in one append.
    const size_t run = plain_run_end(p, i, n);
    if (run > i) {
      out.append(s.data() + i, run - i);
      i = run;
      continue;
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          if (c < 0x20) {
            out += "\\u00";
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0xF]);
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    size_t len = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = cont(i + 1) ? 2 : 0;
    } else if (c == 0xE0) {
      len = cont(i + 1, 0xA0) && cont(i + 2) ? 3 : 0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      len = cont(i + 1) && cont(i + 2) ? 3 : 0;
    } else if (c == 0xED) {
      len = cont(i + 1, 0x80, 0x9F) && cont(i + 2) ? 3 : 0;
    } else if (c == 0xF0) {
      len = cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    } else if (c >= 0xF1 && c <= 0xF3) {
      len = cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    } else if (c == 0xF4) {
      len = cont(i + 1, 0x80, 0x8F) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    }
    if (len == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      ++i;
    } else {
      out.append(s.data() + i, len);
      i += len;
    }
  }
  out.push_back('"');
}

}  // namespace sigil
