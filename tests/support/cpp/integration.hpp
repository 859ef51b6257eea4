// tests/support/cpp/integration.hpp: what the C++ integration tests (tests/integration/*/)
// share: running the Python harness (tests/support/*.py), skipping when the real registry
// or python3-cryptography is missing, and the deadline every call gets. The coroutine loop is
// run_coro.hpp's Loop. Header-only; its includer defines SIGIL_SOURCE_DIR and SIGIL_PYTHON.
// Test-only.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include <catch2/catch.hpp>

#include "common/deadline.hpp"
#include "run_coro.hpp"

namespace sigil::test {

// tests/support/, with its trailing slash.
inline std::string support_dir() {
  return std::string(SIGIL_SOURCE_DIR) + "/tests/support/";
}

// "<python> <args>": the Python with python3-cryptography the build found.
inline std::string python(const std::string& args) {
  return std::string(SIGIL_PYTHON) + " " + args;
}

// Runs a shell command; its stdout without surrounding whitespace, or nullopt on a non-zero
// exit.
inline std::optional<std::string> run_command(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return std::nullopt;
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  if (::pclose(p) != 0) return std::nullopt;
  const auto first = out.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return std::string();
  return out.substr(first, out.find_last_not_of(" \t\r\n") - first + 1);
}

// Ends the test process with ctest's SKIP_RETURN_CODE 77 when the real registry
// (docker-registry) or python3-cryptography is missing.
inline void skip_without_registry_tools() {
  if (std::filesystem::exists("/usr/bin/docker-registry") &&
      run_command(python("-c 'import cryptography' 2>/dev/null"))) {
    return;
  }
  WARN("docker-registry or python3-cryptography not installed: skipping");
  std::exit(77);
}

// The deadline of one call to a real server.
inline Deadline soon() {
  return std::chrono::steady_clock::now() + std::chrono::seconds(20);
}

}  // namespace sigil::test
