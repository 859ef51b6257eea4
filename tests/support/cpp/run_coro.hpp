// tests/support/cpp/run_coro.hpp: running a coroutine to completion from a test.
//
// Role: the one "run a coroutine" helper of the C++ tests. A Loop is an io_context run by
// background threads for the duration of a test (clients under test live on it); run() spawns
// an awaitable on it and blocks until its result. run_coro() is the same on a private
// single-threaded io_context. Also eventually() (poll a condition); TempDir comes with
// tls_pki.hpp. Test-only.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "tls_pki.hpp"

namespace sigil::test {

namespace detail {
template <class T>
boost::asio::awaitable<std::optional<T>> as_optional(boost::asio::awaitable<T> aw) {
  co_return co_await std::move(aw);
}
inline boost::asio::awaitable<bool> as_bool(boost::asio::awaitable<void> aw) {
  co_await std::move(aw);
  co_return true;
}
}  // namespace detail

// An io_context run by `threads` background threads until destruction. Declare it before
// anything that lives on it (clients, servers sharing it), so that it is destroyed last.
struct Loop {
  explicit Loop(int threads = 1) : guard(ioc.get_executor()) {
    for (int i = 0; i < threads; ++i) workers.emplace_back([this] { ioc.run(); });
  }
  ~Loop() {
    guard.reset();
    ioc.stop();
    for (auto& t : workers) t.join();
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Runs aw on the loop and waits for its result (rethrows what it throws).
  template <class T>
  T run(boost::asio::awaitable<T> aw) {
    return *boost::asio::co_spawn(ioc, detail::as_optional(std::move(aw)), boost::asio::use_future)
                .get();
  }
  void run(boost::asio::awaitable<void> aw) {
    boost::asio::co_spawn(ioc, detail::as_bool(std::move(aw)), boost::asio::use_future).get();
  }

  boost::asio::io_context ioc;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard;
  std::vector<std::thread> workers;
};

// Runs aw to completion on a private io_context on this thread. A coroutine still running
// after `limit` fails the test (std::runtime_error) instead of hanging it.
template <class T>
T run_coro(boost::asio::awaitable<T> aw,
           std::chrono::milliseconds limit = std::chrono::milliseconds(60000)) {
  boost::asio::io_context ioc;
  auto f = boost::asio::co_spawn(ioc, detail::as_optional(std::move(aw)), boost::asio::use_future);
  ioc.run_for(limit);
  if (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    throw std::runtime_error("run_coro: the coroutine did not finish within " +
                             std::to_string(limit.count()) + " ms");
  }
  return *f.get();
}

// Polls pred every 5 ms until it holds or timeout passes; returns its last value.
inline bool eventually(const std::function<bool()>& pred,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

}  // namespace sigil::test
