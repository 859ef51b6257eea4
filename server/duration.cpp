#include "server/duration.hpp"

#include <cstdint>
#include <limits>

namespace sigil::server {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

Error bad(std::string_view text, const char* why) {
  std::string shown(text.substr(0, 40));
  return make_error(Errc::parse_error, "invalid duration \"" + shown + "\": " + why);
}

}  // namespace

Result<std::chrono::nanoseconds> parse_go_duration(std::string_view text) {
  const std::string_view original = text;
  if (text.empty()) return bad(original, "empty");
  if (text == "0") return std::chrono::nanoseconds(0);
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t total = 0;
  while (!text.empty()) {
    // Integer part.
    uint64_t whole = 0;
    size_t i = 0;
    bool whole_overflow = false;
    while (i < text.size() && is_digit(text[i])) {
      const uint64_t d = static_cast<uint64_t>(text[i] - '0');
      if (whole > (kMax - d) / 10) whole_overflow = true;
      if (!whole_overflow) whole = whole * 10 + d;
      ++i;
    }
    const bool had_whole = i > 0;
    // Fraction part: keep up to 18 digits, enough for nanoseconds of hours.
    uint64_t frac = 0;
    uint64_t frac_scale = 1;
    bool had_frac = false;
    if (i < text.size() && text[i] == '.') {
      ++i;
      while (i < text.size() && is_digit(text[i])) {
        if (frac_scale < 1000000000000000000ULL) {
          frac = frac * 10 + static_cast<uint64_t>(text[i] - '0');
          frac_scale *= 10;
        }
        had_frac = true;
        ++i;
      }
    }
    if (!had_whole && !had_frac) return bad(original, "expected a number");
    if (whole_overflow) return bad(original, "overflow");
    text.remove_prefix(i);
    // Unit.
    uint64_t unit = 0;
    size_t unit_len = 0;
    struct U {
      std::string_view name;
      uint64_t ns;
    };
    static constexpr U kUnits[] = {
        {"ns", 1ULL},
        {"us", 1000ULL},
        {"\xC2\xB5s", 1000ULL},  // U+00B5 micro sign
        {"\xCE\xBCs", 1000ULL},  // U+03BC greek mu
        {"ms", 1000000ULL},
        {"s", 1000000000ULL},
        {"m", 60ULL * 1000000000ULL},
        {"h", 3600ULL * 1000000000ULL},
    };
    for (const U& u : kUnits) {
      if (text.substr(0, u.name.size()) == u.name && u.name.size() > unit_len) {
        unit = u.ns;
        unit_len = u.name.size();
      }
    }
    if (unit_len == 0) return bad(original, text.empty() ? "missing unit" : "unknown unit");
    text.remove_prefix(unit_len);
    if (whole > kMax / unit) return bad(original, "overflow");
    uint64_t value = whole * unit;
    if (had_frac) {
      // frac / frac_scale * unit without overflow: unit <= 3.6e12, frac < 1e18.
      const long double part = static_cast<long double>(frac) * static_cast<long double>(unit) /
                               static_cast<long double>(frac_scale);
      const uint64_t add = static_cast<uint64_t>(part);
      if (value > kMax - add) return bad(original, "overflow");
      value += add;
    }
    if (total > kMax - value) return bad(original, "overflow");
    total += value;
  }
  return std::chrono::nanoseconds(static_cast<int64_t>(total));
}

}  // namespace sigil::server
