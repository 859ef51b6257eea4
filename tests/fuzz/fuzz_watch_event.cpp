// Fuzzes the watch event stream: kube::parse_watch_event on the whole input, and the
// incremental EventStreamParser fed the same bytes cut into pieces (sizes taken from the first
// byte), which must yield exactly the events of one whole feed, in order.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "kube/watch.hpp"

namespace {

std::vector<std::string> summary(const std::vector<sigil::kube::WatchEvent>& evs) {
  std::vector<std::string> out;
  for (const auto& e : evs) {
    out.push_back(std::string(sigil::kube::event_type_name(e.type)) + "|" + e.object.meta.key() +
                  "|" + e.object.meta.resource_version + "|" + std::to_string(e.status.code));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  constexpr size_t kCap = 64 * 1024;
  auto one = sigil::kube::parse_watch_event(in, kCap);
  if (one.ok()) {
    const auto& e = *one;
    if (e.type != sigil::kube::EventType::error && e.type != sigil::kube::EventType::bookmark &&
        e.object.meta.name.empty()) {
      __builtin_trap();  // named events always carry a name
    }
    if (e.type == sigil::kube::EventType::bookmark && e.object.meta.resource_version.empty()) {
      __builtin_trap();
    }
  }

  sigil::kube::EventStreamParser whole(kCap);
  auto all = whole.feed(in);
  std::vector<sigil::kube::WatchEvent> whole_events;
  bool whole_ok = all.ok();
  if (whole_ok) {
    whole_events = std::move(*all);
    auto fin = whole.finish();
    whole_ok = fin.ok();
    if (fin.ok()) {
      for (auto& e : *fin) whole_events.push_back(std::move(e));
    }
  }

  sigil::kube::EventStreamParser pieces(kCap);
  const size_t step = size == 0 ? 1 : (static_cast<unsigned char>(in[0]) % 17) + 1;
  std::vector<sigil::kube::WatchEvent> piece_events;
  bool pieces_ok = true;
  for (size_t pos = 0; pos < size && pieces_ok; pos += step) {
    auto evs = pieces.feed(in.substr(pos, step));
    if (!evs) {
      pieces_ok = false;
      break;
    }
    for (auto& e : *evs) piece_events.push_back(std::move(e));
  }
  if (pieces_ok) {
    auto fin = pieces.finish();
    pieces_ok = fin.ok();
    if (fin.ok()) {
      for (auto& e : *fin) piece_events.push_back(std::move(e));
    }
  }
  // Cutting the stream differently never changes the outcome.
  if (whole_ok != pieces_ok) __builtin_trap();
  if (whole_ok && summary(whole_events) != summary(piece_events)) __builtin_trap();
  return 0;
}
