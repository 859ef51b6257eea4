#include "kube/watch.hpp"

#include <nlohmann/json.hpp>

#include "common/encoding.hpp"
#include "kube/detail/json.hpp"

namespace sigil::kube {

using json = nlohmann::json;

namespace {

Error perr(std::string what) {
  return make_error(Errc::parse_error, "watch event: " + std::move(what));
}

bool blank(std::string_view s) {
  return trim(s).empty();
}

}  // namespace

const char* event_type_name(EventType type) noexcept {
  switch (type) {
    case EventType::added:
      return "ADDED";
    case EventType::modified:
      return "MODIFIED";
    case EventType::deleted:
      return "DELETED";
    case EventType::bookmark:
      return "BOOKMARK";
    case EventType::error:
      return "ERROR";
  }
  return "?";
}

Result<WatchEvent> parse_watch_event(std::string_view line, size_t max_size) {
  if (line.size() > max_size) {
    return make_error(Errc::too_large, "watch event of " + std::to_string(line.size()) +
                                           " bytes exceeds the " + std::to_string(max_size) +
                                           " byte limit");
  }
  auto j = detail::parse_json(line, "watch event");
  if (!j) return j.error();
  if (!j->is_object()) return perr("not a JSON object");
  auto t = j->find("type");
  if (t == j->end() || !t->is_string()) return perr("no type");
  const auto& type = t->get_ref<const std::string&>();
  WatchEvent ev;
  if (type == "ADDED") {
    ev.type = EventType::added;
  } else if (type == "MODIFIED") {
    ev.type = EventType::modified;
  } else if (type == "DELETED") {
    ev.type = EventType::deleted;
  } else if (type == "BOOKMARK") {
    ev.type = EventType::bookmark;
  } else if (type == "ERROR") {
    ev.type = EventType::error;
  } else {
    return perr("unknown type \"" + sanitize_text(type, 40) + "\"");
  }
  auto o = j->find("object");
  if (o == j->end() || !o->is_object()) return perr(std::string(type) + " without an object");
  if (ev.type == EventType::error) {
    ev.status = detail::status_from_json(*o);
    return ev;
  }
  const bool bookmark = ev.type == EventType::bookmark;
  auto obj = detail::object_from_json(*o, std::string(type) + " object", bookmark, true);
  if (!obj) return perr(obj.error().message);
  if (bookmark) {
    if (obj->meta.resource_version.empty()) return perr("BOOKMARK without a resourceVersion");
    // A bookmark carries only a resourceVersion; its text is of no use to anyone.
    obj->json.clear();
  }
  ev.object = std::move(*obj);
  return ev;
}

Result<std::vector<WatchEvent>> EventStreamParser::feed(std::string_view bytes) {
  if (failed_) return error_;
  std::vector<WatchEvent> out;
  auto fail = [&](Error e) -> Result<std::vector<WatchEvent>> {
    failed_ = true;
    error_ = std::move(e);
    pending_.clear();
    return error_;
  };
  while (!bytes.empty()) {
    const size_t nl = bytes.find('\n');
    const std::string_view piece = bytes.substr(0, nl);
    if (pending_.size() + piece.size() > max_) {
      return fail(make_error(Errc::too_large,
                             "watch event exceeds the " + std::to_string(max_) + " byte limit"));
    }
    if (nl == std::string_view::npos) {
      pending_.append(piece);
      break;
    }
    std::string_view line = piece;
    if (!pending_.empty()) {
      pending_.append(piece);
      line = pending_;
    }
    if (!blank(line)) {
      auto ev = parse_watch_event(line, max_);
      if (!ev) return fail(std::move(ev).error());
      out.push_back(std::move(*ev));
    }
    pending_.clear();
    bytes.remove_prefix(nl + 1);
  }
  return out;
}

Result<std::vector<WatchEvent>> EventStreamParser::finish() {
  if (failed_) return error_;
  std::vector<WatchEvent> out;
  if (blank(pending_)) {
    pending_.clear();
    return out;
  }
  auto ev = parse_watch_event(pending_, max_);
  pending_.clear();
  if (!ev) {
    failed_ = true;
    error_ = make_error(Errc::parse_error, "watch stream ended in the middle of an event");
    return error_;
  }
  out.push_back(std::move(*ev));
  return out;
}

bool EventStreamParser::mid_event() const noexcept {
  return !blank(pending_);
}

}  // namespace sigil::kube
