// kube/watch.hpp: the watch event stream format: newline-delimited JSON events
// {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}} arriving in arbitrary
// chunks.
//
// Role: parse one event, and cut a byte stream into events incrementally (an event may be
// split across any number of reads; several may share one). Pure: no I/O, no Asio/Beast;
// nlohmann/json only in the .cpp; nothing throws out. One event's size is capped so a hostile
// or broken server cannot make us buffer without bound.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "kube/object.hpp"

namespace sigil::kube {

enum class EventType { added, modified, deleted, bookmark, error };
const char* event_type_name(EventType type) noexcept;

struct WatchEvent {
  EventType type = EventType::added;
  Object object;     // added/modified/deleted: the object; bookmark: only meta.resource_version
  ApiStatus status;  // error: the metav1.Status the server sent
};

inline constexpr size_t kDefaultMaxEventSize = 4 * 1024 * 1024;

// Parses one event (surrounding whitespace allowed). parse_error on malformed JSON, an
// unknown type, a missing object, an ADDED/MODIFIED/DELETED object without metadata.name,
// a BOOKMARK without metadata.resourceVersion; too_large above max_size.
Result<WatchEvent> parse_watch_event(std::string_view line, size_t max_size = kDefaultMaxEventSize);

// Cuts a stream into events. Feed it the bytes of each read in order; it returns the events
// completed by those bytes. After an error the parser is poisoned (the stream must be
// dropped): every later feed() returns the same error.
class EventStreamParser {
 public:
  explicit EventStreamParser(size_t max_event_size = kDefaultMaxEventSize) : max_(max_event_size) {}

  // Appends bytes; returns the events they complete (possibly none). Blank lines are skipped.
  // too_large when a pending event grows past the cap, parse_error for a malformed event.
  Result<std::vector<WatchEvent>> feed(std::string_view bytes);
  // The stream ended: parses what is buffered after the last newline as a final event (the
  // API server ends every event with a newline, so this is normally empty). parse_error when
  // those bytes are not a whole event: the stream was cut mid-event.
  Result<std::vector<WatchEvent>> finish();
  // True when bytes of an unfinished event are buffered (a stream ending now was cut).
  bool mid_event() const noexcept;
  size_t buffered() const noexcept { return pending_.size(); }

 private:
  size_t max_;
  std::string pending_;
  bool failed_ = false;
  Error error_;
};

}  // namespace sigil::kube
