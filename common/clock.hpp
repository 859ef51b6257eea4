// common/clock.hpp: the wall-clock interface that pure modules take instead of reading time.
//
// Role: lets tests inject time (certificate validity, cache TTLs). Depends on nothing.
#pragma once

#include <atomic>
#include <chrono>

namespace sigil {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point now() const = 0;
};

class SystemClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::now();
  }
};

// A clock tests move by hand.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::chrono::system_clock::time_point start = {})
      : t_(start.time_since_epoch().count()) {}
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::time_point(std::chrono::system_clock::duration(t_.load()));
  }
  void advance(std::chrono::system_clock::duration d) { t_ += d.count(); }

 private:
  std::atomic<std::chrono::system_clock::duration::rep> t_;
};

}  // namespace sigil
