#include "net/retry.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

namespace sigil::net {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr seconds kMaxWait{24 * 3600};

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Parses exactly `width` digits (or 1..width when width_min < width) at s[pos].
std::optional<int> number(std::string_view s, size_t pos, size_t width) {
  if (pos + width > s.size()) return std::nullopt;
  auto part = s.substr(pos, width);
  if (!all_digits(part)) return std::nullopt;
  int v = 0;
  for (char c : part) v = v * 10 + (c - '0');
  return v;
}

std::optional<unsigned> month_of(std::string_view m) {
  static constexpr std::array<std::string_view, 12> kMonths = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (size_t i = 0; i < kMonths.size(); ++i) {
    if (m == kMonths[i]) return static_cast<unsigned>(i + 1);
  }
  return std::nullopt;
}

// "HH:MM:SS" at s[pos].
std::optional<seconds> time_of_day(std::string_view s, size_t pos) {
  auto h = number(s, pos, 2);
  auto m = number(s, pos + 3, 2);
  auto sec = number(s, pos + 6, 2);
  if (!h || !m || !sec || s.size() < pos + 8 || s[pos + 2] != ':' || s[pos + 5] != ':') {
    return std::nullopt;
  }
  if (*h > 23 || *m > 59 || *sec > 60) return std::nullopt;
  return seconds(*h * 3600 + *m * 60 + *sec);
}

std::optional<std::chrono::system_clock::time_point> make_time(int year, unsigned month, int day,
                                                               seconds tod) {
  std::chrono::year_month_day ymd{std::chrono::year(year), std::chrono::month(month),
                                  std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return std::nullopt;
  return std::chrono::sys_days(ymd) + tod;
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view s) {
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (29 characters).
  if (s.size() == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' && s[16] == ' ' &&
      s.substr(25) == " GMT") {
    auto day = number(s, 5, 2);
    auto month = month_of(s.substr(8, 3));
    auto year = number(s, 12, 4);
    auto tod = time_of_day(s, 17);
    if (day && month && year && tod) return make_time(*year, *month, *day, *tod);
    return std::nullopt;
  }
  // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" (two-digit year: RFC 9110 says a year that
  // looks more than 50 years ahead is in the past century).
  if (auto comma = s.find(", "); comma != std::string_view::npos && comma >= 6 &&
                                 s.size() == comma + 24 && s.substr(s.size() - 4) == " GMT") {
    size_t p = comma + 2;
    auto day = number(s, p, 2);
    auto month = month_of(s.substr(p + 3, 3));
    auto yy = number(s, p + 7, 2);
    auto tod = time_of_day(s, p + 10);
    if (!day || !month || !yy || !tod || s[p + 2] != '-' || s[p + 6] != '-' || s[p + 9] != ' ') {
      return std::nullopt;
    }
    return make_time(*yy < 70 ? 2000 + *yy : 1900 + *yy, *month, *day, *tod);
  }
  // asctime: "Sun Nov  6 08:49:37 1994" (24 characters; the day is space-padded).
  if (s.size() == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ') {
    auto month = month_of(s.substr(4, 3));
    std::string_view d = s.substr(8, 2);
    if (d[0] == ' ') d.remove_prefix(1);
    auto day = number(d, 0, d.size());
    auto tod = time_of_day(s, 11);
    auto year = number(s, 20, 4);
    if (day && month && year && tod) return make_time(*year, *month, *day, *tod);
  }
  return std::nullopt;
}

}  // namespace

milliseconds backoff_delay(const RetryPolicy& policy, int retry, double unit) {
  const int64_t base = std::max<int64_t>(policy.backoff_base.count(), 0);
  const int64_t cap = std::max<int64_t>(policy.max_backoff.count(), 0);
  const int shift = std::clamp(retry, 0, 30);
  // base * 2^shift without overflow.
  const int64_t d = base > (cap >> shift) ? cap : std::min(cap, base << shift);
  unit = std::clamp(unit, 0.0, 1.0);
  // NOLINTNEXTLINE(bugprone-integer-division): halves of whole milliseconds, on purpose
  return milliseconds(d / 2 + static_cast<int64_t>(static_cast<double>(d - d / 2) * unit));
}

std::optional<milliseconds> parse_retry_after(std::string_view value,
                                              std::chrono::system_clock::time_point now) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (all_digits(value)) {
    if (value.size() > 6) return milliseconds(kMaxWait);
    return std::min<milliseconds>(seconds(std::stoll(std::string(value))), kMaxWait);
  }
  auto at = parse_http_date(value);
  if (!at) return std::nullopt;
  if (*at <= now) return milliseconds(0);
  return std::min<milliseconds>(std::chrono::duration_cast<milliseconds>(*at - now), kMaxWait);
}

}  // namespace sigil::net
