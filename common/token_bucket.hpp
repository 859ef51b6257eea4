// common/token_bucket.hpp: the arithmetic of a token bucket, for rates that outside parties can
// push on (a namespace's share of signature checks, the Events sigil writes to Kubernetes).
//
// Role: holds `burst` tokens at most and gets `rate` back each second. It has no lock and no
// clock: its owner holds the lock and says the time, in whichever clock it keeps (TimePoint).
// A bucket starts full; its first reading only records the time. A clock that steps back (by
// more than kStep) gives nothing back, and time counts on from where it stepped to, so an NTP
// correction of a system clock never freezes a bucket until the clock is back where it was. A
// reading a little older than the last is another thread's, taken before it got its owner's
// lock: it gives nothing and moves nothing, or the time between would be refilled twice.
#pragma once

#include <algorithm>
#include <chrono>

namespace sigil {

template <class TimePoint>
class TokenBucket {
 public:
  TokenBucket(double rate, double burst) noexcept : rate_(rate), burst_(burst), tokens_(burst) {}

  // The tokens held at `now` (refilled up to then, nothing taken).
  double available(TimePoint now) noexcept {
    refill(now);
    return tokens_;
  }
  // Takes n tokens at `now`, all or nothing.
  bool try_take(double n, TimePoint now) noexcept {
    if (n > available(now)) return false;
    tokens_ -= n;
    return true;
  }
  // Takes n tokens already seen to be there (available() at the same time said so): for owners
  // that take from two buckets, or from none.
  void take(double n) noexcept { tokens_ -= n; }
  // Whether it holds `burst` again at `now`: a bucket nobody used lately, which a new one equals.
  bool full(TimePoint now) noexcept { return available(now) >= burst_; }

  double rate() const noexcept { return rate_; }
  double burst() const noexcept { return burst_; }

 private:
  static constexpr std::chrono::seconds kStep{1};

  void refill(TimePoint now) noexcept {
    if (read_ && now > last_) {
      const double secs = std::chrono::duration<double>(now - last_).count();
      tokens_ = std::min(burst_, tokens_ + secs * rate_);
    } else if (read_ && last_ - now <= kStep) {
      return;  // late, or the same instant
    }
    read_ = true;
    last_ = now;  // also after a step back: count on from here
  }

  double rate_;
  double burst_;
  double tokens_;
  TimePoint last_{};
  bool read_ = false;  // no reading yet: full, whatever the time
};

}  // namespace sigil
