// common/budget.hpp: byte budgets for what outside parties can make sigil hold in memory.
//
// Role: a registry chosen by whoever creates a pod decides how many bytes sigil downloads
// (signature manifests, payloads, bundles). Every such byte is taken from a budget before it
// is read and given back when it is dropped: one budget per admission, chained to one for the
// whole process, so no admission and no crowd of admissions can push the process past its
// memory limit. Past a budget the work fails with Errc::exhausted and the admission is denied
// (never allowed, never an outage). Signature checks, which cost CPU, have WorkBudget (per
// admission) and RateBudget (a namespace's share over time). Pure and thread-safe; no I/O, and
// no clock of their own (RateBudget is told the time).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

#include "common/clock.hpp"
#include "common/token_bucket.hpp"

namespace sigil {

class ByteBudget {
 public:
  // Taking from this budget takes from parent (optional) too, and from `also` (optional: a
  // pool that bytes of one kind share, such as those of registries pods name); both are kept
  // alive.
  explicit ByteBudget(uint64_t limit, std::shared_ptr<ByteBudget> parent = nullptr,
                      std::shared_ptr<ByteBudget> also = nullptr) noexcept
      : limit_(limit), parent_(std::move(parent)), also_(std::move(also)) {}
  ByteBudget(const ByteBudget&) = delete;
  ByteBudget& operator=(const ByteBudget&) = delete;

  // Takes n bytes from this budget and every parent, all or nothing.
  bool try_take(uint64_t n) noexcept {
    uint64_t used = used_.load(std::memory_order_relaxed);
    do {
      if (n > limit_ || used > limit_ - n) return false;
    } while (!used_.compare_exchange_weak(used, used + n, std::memory_order_relaxed));
    if (parent_ != nullptr && !parent_->try_take(n)) {
      used_.fetch_sub(n, std::memory_order_relaxed);
      return false;
    }
    if (also_ != nullptr && !also_->try_take(n)) {
      if (parent_ != nullptr) parent_->give(n);
      used_.fetch_sub(n, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  void give(uint64_t n) noexcept {
    used_.fetch_sub(n, std::memory_order_relaxed);
    if (parent_ != nullptr) parent_->give(n);
    if (also_ != nullptr) also_->give(n);
  }
  uint64_t used() const noexcept { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const noexcept { return limit_; }
  const ByteBudget* parent() const noexcept { return parent_.get(); }
  // The high-water mark is not kept: peak RSS is measured from outside (bench/).

 private:
  std::atomic<uint64_t> used_{0};
  const uint64_t limit_;
  const std::shared_ptr<ByteBudget> parent_;
  const std::shared_ptr<ByteBudget> also_;
};

// Bytes taken from a budget, given back when the reservation is destroyed or released. The
// budget must outlive the reservation.
class Reservation {
 public:
  Reservation() noexcept = default;
  // An empty reservation when the budget cannot give n bytes (check with ok()).
  static Reservation take(ByteBudget& budget, uint64_t n) noexcept {
    Reservation r;
    if (budget.try_take(n)) {
      r.budget_ = &budget;
      r.bytes_ = n;
      r.ok_ = true;
    }
    return r;
  }
  Reservation(Reservation&& o) noexcept
      : budget_(std::exchange(o.budget_, nullptr)),
        bytes_(std::exchange(o.bytes_, 0)),
        ok_(std::exchange(o.ok_, false)) {}
  Reservation& operator=(Reservation&& o) noexcept {
    if (this != &o) {
      release();
      budget_ = std::exchange(o.budget_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
      ok_ = std::exchange(o.ok_, false);
    }
    return *this;
  }
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() { release(); }

  bool ok() const noexcept { return ok_; }
  uint64_t bytes() const noexcept { return bytes_; }
  // Gives back what is no longer held (e.g. a reservation made for a cap, once the real size
  // is known). Returns false, keeping everything, if n is more than is held.
  bool shrink_to(uint64_t n) noexcept {
    if (budget_ == nullptr || n > bytes_) return false;
    budget_->give(bytes_ - n);
    bytes_ = n;
    return true;
  }
  void release() noexcept {
    if (budget_ != nullptr && bytes_ > 0) budget_->give(bytes_);
    budget_ = nullptr;
    bytes_ = 0;
    ok_ = false;
  }

 private:
  ByteBudget* budget_ = nullptr;
  uint64_t bytes_ = 0;
  bool ok_ = false;
};

// Check units that come back over time: one namespace's share of the process's signature checks
// (verify::EngineOptions::namespace_checks_per_second). Without it, whoever may create pods in
// one namespace can make every admission cost a whole admission budget (new digests, each with
// many signatures that verify against nothing), and keep sigil's threads busy for everyone. It
// holds `burst` units at most and gets `per_second` back each second; taking fails, all or
// nothing, when fewer are left. The time comes from the caller (the engine's clock); the
// arithmetic, and what a clock that steps back does, is TokenBucket's.
class RateBudget {
 public:
  using TimePoint = std::chrono::system_clock::time_point;
  RateBudget(uint64_t per_second, uint64_t burst) noexcept
      : bucket_(static_cast<double>(per_second), static_cast<double>(burst)) {}
  RateBudget(const RateBudget&) = delete;
  RateBudget& operator=(const RateBudget&) = delete;

  bool try_spend(uint64_t n, TimePoint now) noexcept {
    std::lock_guard lock(m_);
    return bucket_.try_take(static_cast<double>(n), now);
  }
  // Whether it holds `burst` again at `now` (a share nobody has used lately: forgetting it
  // loses nothing).
  bool full(TimePoint now) noexcept {
    std::lock_guard lock(m_);
    return bucket_.full(now);
  }
  // (The rate and burst never change: read without the lock.)
  uint64_t per_second() const noexcept { return static_cast<uint64_t>(bucket_.rate()); }
  uint64_t burst() const noexcept { return static_cast<uint64_t>(bucket_.burst()); }

 private:
  std::mutex m_;
  TokenBucket<TimePoint> bucket_;  // its tokens under m_
};

// Work that is spent, not held: signature checks (policy::judge), which cost CPU rather than
// memory. One per admission, shared by its images (their verifications may run on several
// threads); nothing is ever given back. Taking fails, all or nothing, once the limit would be
// passed, or when `share` (optional: the admission's namespace's RateBudget, read at `clock`'s
// time) has too few units left; share_refused() then says which.
class WorkBudget {
 public:
  explicit WorkBudget(uint64_t limit) noexcept : limit_(limit) {}
  WorkBudget(uint64_t limit, std::shared_ptr<RateBudget> share, const Clock& clock) noexcept
      : limit_(limit), share_(std::move(share)), clock_(&clock) {}
  WorkBudget(const WorkBudget&) = delete;
  WorkBudget& operator=(const WorkBudget&) = delete;

  bool try_spend(uint64_t n) noexcept {
    uint64_t spent = spent_.load(std::memory_order_relaxed);
    do {
      if (n > limit_ || spent > limit_ - n) return false;
    } while (!spent_.compare_exchange_weak(spent, spent + n, std::memory_order_relaxed));
    if (share_ != nullptr && !share_->try_spend(n, clock_->now())) {
      spent_.fetch_sub(n, std::memory_order_relaxed);
      share_refused_.store(true, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  uint64_t spent() const noexcept { return spent_.load(std::memory_order_relaxed); }
  uint64_t limit() const noexcept { return limit_; }
  // The namespace's share (null: none), and whether it refused a check.
  const RateBudget* share() const noexcept { return share_.get(); }
  bool share_refused() const noexcept { return share_refused_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> spent_{0};
  const uint64_t limit_;
  std::shared_ptr<RateBudget> share_;
  const Clock* clock_ = nullptr;  // outlives the budget (the engine's)
  std::atomic<bool> share_refused_{false};
};

}  // namespace sigil
