// tests/support/cpp/run_coro.hpp: running a coroutine to completion from a test.
//
// Role: the one "run a coroutine" helper of the C++ tests. A Loop is an io_context run by
// background threads for the duration of a test (clients under test live on it); run() spawns
// an awaitable on it and blocks until its result. run_coro() is the same on a private
// single-threaded io_context. Also eventually() (poll a condition) and TempDir. Test-only.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

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

// Runs aw to completion on a private io_context on this thread.
template <class T>
T run_coro(boost::asio::awaitable<T> aw) {
  boost::asio::io_context ioc;
  auto f = boost::asio::co_spawn(ioc, detail::as_optional(std::move(aw)), boost::asio::use_future);
  ioc.run();
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

// A fresh directory under the system temp directory, removed with everything in it.
struct TempDir {
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // Writes content to name (atomically: a reader never sees half a file); returns the path.
  std::string file(const std::string& name, const std::string& content) const;
  std::filesystem::path path;
};
// Writes data to p through a temporary file and a rename.
void write_file_atomic(const std::filesystem::path& p, const std::string& data);

}  // namespace sigil::test
