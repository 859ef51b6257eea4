// common/result.hpp: the error and result types every sigil module returns.
//
// Role: a pure fallible function returns Result<T>, which holds either a T or an Error (a stable
// code plus a context string a person can read). Must not depend on anything but the standard
// library; every other module depends on it.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <variant>

namespace sigil {

enum class Errc {
  invalid_argument,  // caller passed something malformed (bad flag, bad policy field)
  parse_error,       // outside bytes did not parse (JSON, YAML, PEM, reference, header)
  too_large,         // outside bytes exceeded a cap
  not_found,         // registry 404, missing file
  unauthorized,      // 401/403, bad credentials
  unavailable,       // network failure, 5xx, 429 after retries
  timeout,           // the deadline passed
  verification,      // a signature or digest check failed
  unsupported,       // a valid feature sigil does not implement (yet)
  exhausted,         // a budget (bytes held, work per admission) is spent; retried later
  internal,          // a bug or library failure; callers fail closed
};

const char* errc_name(Errc code) noexcept;

// Typed facts one module attaches to an error for another downstream (registry/'s list of
// the credential sources it tried, for verify/'s REGISTRY_AUTH denial). Read with
// dynamic_cast; never needed to understand the error.
struct ErrorDetail {
  virtual ~ErrorDetail() = default;
};

struct Error {
  Errc code = Errc::internal;
  std::string message;
  std::shared_ptr<const ErrorDetail> detail;  // may be null
};

inline Error make_error(Errc code, std::string message) {
  return Error{code, std::move(message), nullptr};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error)
      : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace sigil
