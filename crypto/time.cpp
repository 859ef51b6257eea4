// crypto/time.cpp: see x509.hpp (format_time, parse_rfc3339) and x509_detail.hpp
// (asn1_to_time). Proleptic Gregorian calendar arithmetic in UTC, with no libc time zone state,
// and every result clamped to what a TimePoint can hold.
#include <openssl/asn1.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

#include "common/encoding.hpp"
#include "crypto/detail/ossl.hpp"
#include "crypto/x509.hpp"
#include "crypto/x509_detail.hpp"

namespace sigil::crypto {

namespace {

// ---- calendar arithmetic (proleptic Gregorian, UTC) ----------------------------------------

constexpr int64_t days_from_civil(int64_t y, unsigned m, unsigned d) noexcept {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct Civil {
  int64_t year;
  unsigned month;
  unsigned day;
};

constexpr Civil civil_from_days(int64_t z) noexcept {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return Civil{y + (m <= 2), m, d};
}

constexpr bool is_leap(int64_t y) noexcept {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

constexpr unsigned days_in_month(int64_t y, unsigned m) noexcept {
  constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

// Seconds (+ nanoseconds) since the epoch -> TimePoint, clamped to what a TimePoint can hold
// (system_clock counts nanoseconds in 64 bits: roughly years 1678 to 2262). A certificate's
// "99991231235959Z" (no well-defined expiry, RFC 5280 section 4.1.2.5) becomes TimePoint::max().
TimePoint clamp_time(int64_t seconds, int64_t nanos = 0) noexcept {
  using Dur = TimePoint::duration;
  constexpr int64_t kMaxSeconds =
      std::chrono::duration_cast<std::chrono::seconds>(Dur::max()).count() - 1;
  constexpr int64_t kMinSeconds =
      std::chrono::duration_cast<std::chrono::seconds>(Dur::min()).count() + 1;
  if (seconds >= kMaxSeconds) return TimePoint::max();
  if (seconds <= kMinSeconds) return TimePoint::min();
  return TimePoint(std::chrono::duration_cast<Dur>(std::chrono::seconds(seconds)) +
                   std::chrono::duration_cast<Dur>(std::chrono::nanoseconds(nanos)));
}

}  // namespace

Result<TimePoint> detail::asn1_to_time(const ASN1_TIME* t, const char* what) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return openssl_error(Errc::parse_error, std::string("certificate ") + what + " is malformed");
  }
  int64_t days = days_from_civil(int64_t{tm.tm_year} + 1900, static_cast<unsigned>(tm.tm_mon + 1),
                                 static_cast<unsigned>(tm.tm_mday));
  int64_t secs = days * 86400 + int64_t{tm.tm_hour} * 3600 + int64_t{tm.tm_min} * 60 + tm.tm_sec;
  return clamp_time(secs);
}

// ---- time -----------------------------------------------------------------------------------

std::string format_time(TimePoint t) {
  using namespace std::chrono;
  auto secs = floor<seconds>(t.time_since_epoch());
  int64_t s = secs.count();
  auto nanos = duration_cast<nanoseconds>(t.time_since_epoch() - secs).count();
  int64_t days = s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
  int64_t rem = s - days * 86400;
  Civil c = civil_from_days(days);
  char buf[64];
  int n = std::snprintf(buf, sizeof(buf), "%04lld-%02u-%02uT%02lld:%02lld:%02lld",
                        static_cast<long long>(c.year), c.month, c.day,
                        static_cast<long long>(rem / 3600), static_cast<long long>(rem % 3600 / 60),
                        static_cast<long long>(rem % 60));
  std::string out(buf, n > 0 ? static_cast<size_t>(n) : 0);
  if (nanos != 0) {
    char frac[16];
    std::snprintf(frac, sizeof(frac), ".%09lld", static_cast<long long>(nanos));
    std::string f(frac);
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  out += 'Z';
  return out;
}

Result<TimePoint> parse_rfc3339(std::string_view text) {
  auto fail = [&]() {
    return make_error(Errc::parse_error, "\"" + printable(text, 40) + "\" is not an RFC 3339 time");
  };
  size_t i = 0;
  auto digits = [&](size_t n, int64_t& out) {
    if (i + n > text.size()) return false;
    out = 0;
    for (size_t k = 0; k < n; ++k) {
      char c = text[i + k];
      if (c < '0' || c > '9') return false;
      out = out * 10 + (c - '0');
    }
    i += n;
    return true;
  };
  auto expect = [&](char a, char b = '\0') {
    if (i >= text.size() || (text[i] != a && (b == '\0' || text[i] != b))) return false;
    ++i;
    return true;
  };
  int64_t year, month, day, hour, minute, second;
  if (!digits(4, year) || !expect('-') || !digits(2, month) || !expect('-') || !digits(2, day) ||
      !expect('T', 't') || !digits(2, hour) || !expect(':') || !digits(2, minute) || !expect(':') ||
      !digits(2, second)) {
    return fail();
  }
  if (month < 1 || month > 12 || day < 1 ||
      day > days_in_month(year, static_cast<unsigned>(month)) || hour > 23 || minute > 59 ||
      second > 59) {
    return fail();
  }
  int64_t nanos = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (i - start < 9) nanos = nanos * 10 + (text[i] - '0');
      ++i;
    }
    size_t nd = i - start;
    if (nd == 0 || nd > 9) return fail();
    for (size_t k = nd; k < 9; ++k) nanos *= 10;
  }
  int64_t offset = 0;
  if (i < text.size() && (text[i] == 'Z' || text[i] == 'z')) {
    ++i;
  } else if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    int sign = text[i] == '-' ? -1 : 1;
    ++i;
    int64_t oh, om;
    if (!digits(2, oh) || !expect(':') || !digits(2, om) || oh > 23 || om > 59) return fail();
    offset = sign * (oh * 3600 + om * 60);
  } else {
    return fail();
  }
  if (i != text.size()) return fail();
  int64_t days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset;
  return clamp_time(secs, nanos);
}

}  // namespace sigil::crypto
