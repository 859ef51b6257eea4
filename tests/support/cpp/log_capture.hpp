// tests/support/cpp/log_capture.hpp: what is logged through spdlog's default logger, for
// tests that check log lines. The test links spdlog::spdlog (the compiled library the modules
// log through; a header-only copy would keep a default logger of its own).
#pragma once

#include <memory>
#include <sstream>
#include <string>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

namespace sigil::test {

// While alive, the default logger writes each message alone ("%v" and a newline) to `out`.
class LogCapture {
 public:
  LogCapture() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_pattern("%v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::string text() const { return out_.str(); }
  void clear() { out_.str(""); }
  // Occurrences of `what` in the text logged so far.
  size_t count(const std::string& what) const {
    const std::string t = text();
    size_t n = 0;
    for (size_t at = t.find(what); at != std::string::npos; at = t.find(what, at + 1)) ++n;
    return n;
  }

 private:
  std::shared_ptr<spdlog::logger> previous_ = spdlog::default_logger();
  std::ostringstream out_;
};

}  // namespace sigil::test
