// kube/events.cpp: see events.hpp.
#include "kube/events.hpp"

#include <algorithm>
#include <ctime>
#include <deque>
#include <list>
#include <mutex>
#include <random>
#include <unordered_map>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "common/encoding.hpp"
#include "common/token_bucket.hpp"
#include "kube/client.hpp"

namespace sigil::kube {

namespace asio = boost::asio;
using json = nlohmann::json;
using SteadyTime = std::chrono::steady_clock::time_point;

namespace {

bool lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool alnum(char c) {
  return lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

Error bad(const char* field, std::string_view value, const char* why) {
  return make_error(Errc::invalid_argument,
                    std::string("event ") + field + " \"" + printable(value, 64) + "\" " + why);
}

// RFC 1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63.
bool dns_label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!lower_alnum(s.front()) || !lower_alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return lower_alnum(c) || c == '-'; });
}

// RFC 1123 subdomain: labels joined by '.', at most 253.
bool dns_subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  for (;;) {
    const size_t dot = s.find('.', start);
    const std::string_view label =
        s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (label.empty() || !lower_alnum(label.front()) || !lower_alnum(label.back())) return false;
    if (!std::all_of(label.begin(), label.end(), [](char c) { return lower_alnum(c) || c == '-'; }))
      return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool plain(std::string_view s, size_t max, std::string_view extra) {
  if (s.size() > max) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return alnum(c) || extra.find(c) != std::string_view::npos; });
}

// One line of at most max bytes: control bytes as '?', other bytes kept (invalid UTF-8 is
// replaced when the JSON is written), cut on a UTF-8 boundary with "\u2026" when too long.
std::string one_line(std::string_view s, size_t max) {
  std::string out;
  const bool cut = s.size() > max;
  size_t n = cut ? max - 3 : s.size();
  while (cut && n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  out.reserve(n + 3);
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    out.push_back(c < 0x20 || c == 0x7f ? '?' : static_cast<char>(c));
  }
  if (cut) out += "\xE2\x80\xA6";
  return out;
}

std::string rfc3339_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

}  // namespace

Status validate_event(const Event& e) {
  const ObjectReference& o = e.involved;
  if (!dns_label(o.namespace_))
    return bad("involvedObject.namespace", o.namespace_, "is not a DNS label");
  if (!dns_subdomain(o.name)) {
    return bad("involvedObject.name", o.name, "is not a DNS subdomain of at most 253 bytes");
  }
  if (o.kind.empty() || !plain(o.kind, 63, "")) {
    return bad("involvedObject.kind", o.kind, "is not alphanumeric (at most 63)");
  }
  if (o.api_version.empty() || !plain(o.api_version, 253 + 1 + 63, ".-/")) {
    return bad("involvedObject.apiVersion", o.api_version, "is not a group/version");
  }
  if (!plain(o.uid, 128, "-")) return bad("involvedObject.uid", o.uid, "is not a uid");
  if (e.reason.empty() || !plain(e.reason, kMaxEventReason, "")) {
    return bad("reason", e.reason, "is not alphanumeric (at most 128)");
  }
  if (e.type != "Normal" && e.type != "Warning")
    return bad("type", e.type, "is not Normal or Warning");
  if (!plain(e.action, 128, ""))
    return bad("action", e.action, "is not alphanumeric (at most 128)");
  return {};
}

std::string event_name(std::string_view involved_name, uint64_t suffix) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(16, '0');
  for (size_t i = 0; i < 16; ++i) hex[15 - i] = kHex[(suffix >> (4 * i)) & 0xf];
  std::string name(involved_name.substr(0, 253 - 1 - hex.size()));
  while (!name.empty() && !lower_alnum(name.back())) name.pop_back();
  if (name.empty()) name = "sigil";
  return name + "." + hex;
}

std::string encode_event(const Event& e, std::string_view name, std::string_view timestamp,
                         std::string_view controller, std::string_view instance) {
  json j;
  j["apiVersion"] = "v1";
  j["kind"] = "Event";
  j["metadata"] = {{"name", std::string(name)}, {"namespace", e.involved.namespace_}};
  json io = {{"apiVersion", e.involved.api_version},
             {"kind", e.involved.kind},
             {"namespace", e.involved.namespace_},
             {"name", e.involved.name}};
  if (!e.involved.uid.empty()) io["uid"] = e.involved.uid;
  j["involvedObject"] = std::move(io);
  j["reason"] = e.reason;
  j["message"] = one_line(e.message, kMaxEventMessage);
  j["type"] = e.type;
  if (!e.action.empty()) j["action"] = e.action;
  j["source"] = {{"component", std::string(controller)}};
  j["reportingComponent"] = std::string(controller);
  j["reportingInstance"] = printable(instance, 120);
  j["firstTimestamp"] = std::string(timestamp);
  j["lastTimestamp"] = std::string(timestamp);
  j["count"] = 1;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string_view outcome_name(EventRecorder::Outcome o) noexcept {
  switch (o) {
    case EventRecorder::Outcome::queued:
      return "queued";
    case EventRecorder::Outcome::rate_limited:
      return "rate_limited";
    case EventRecorder::Outcome::throttled:
      return "throttled";
    case EventRecorder::Outcome::queue_full:
      return "queue_full";
    case EventRecorder::Outcome::invalid:
      return "invalid";
    case EventRecorder::Outcome::stopped:
      return "stopped";
  }
  return "invalid";
}

// ---------------------------------------------------------------------------------------------

struct EventRecorder::Impl : std::enable_shared_from_this<EventRecorder::Impl> {
  using Bucket = TokenBucket<SteadyTime>;  // full at first, refilled per second up to burst

  Impl(std::shared_ptr<Client> c, EventRecorderOptions o)
      : client(std::move(c)), opt(std::move(o)), all(opt.per_second, opt.burst) {}

  std::shared_ptr<Client> client;
  EventRecorderOptions opt;
  Cancel cancel;

  mutable std::mutex mu;
  // LRU of (object, reason) -> when its last Event was queued; front = most recent.
  std::list<std::pair<std::string, SteadyTime>> lru;
  std::unordered_map<std::string, std::list<std::pair<std::string, SteadyTime>>::iterator> keys;
  Bucket all;
  // Each namespace's bucket, the least recently used forgotten first (opt.max_namespaces).
  std::list<std::pair<std::string, Bucket>> ns_lru;
  std::unordered_map<std::string, std::list<std::pair<std::string, Bucket>>::iterator> ns_buckets;
  std::deque<Event> queue;
  bool running = false;  // a worker is draining the queue
  bool stopped = false;
  std::mt19937_64 rng{std::random_device{}()};
  EventRecorderStats st;
  std::string last_failure;  // logged once per distinct error

  SteadyTime now() const { return opt.now ? opt.now() : std::chrono::steady_clock::now(); }

  // Under mu.
  bool allow_key(const std::string& key, SteadyTime t) {
    auto it = keys.find(key);
    if (it != keys.end()) {
      lru.splice(lru.begin(), lru, it->second);  // seen again: most recent
      if (t - it->second->second < opt.per_object_interval) return false;
      return true;
    }
    return true;
  }
  void remember(const std::string& key, SteadyTime t) {
    auto it = keys.find(key);
    if (it != keys.end()) {
      it->second->second = t;
      lru.splice(lru.begin(), lru, it->second);
      return;
    }
    lru.emplace_front(key, t);
    keys.emplace(key, lru.begin());
    while (keys.size() > std::max<size_t>(opt.max_keys, 1)) {
      keys.erase(lru.back().first);
      lru.pop_back();
    }
  }
  Bucket& namespace_bucket(const std::string& ns) {
    auto it = ns_buckets.find(ns);
    if (it != ns_buckets.end()) {
      ns_lru.splice(ns_lru.begin(), ns_lru, it->second);
      return it->second->second;
    }
    ns_lru.emplace_front(ns, Bucket(opt.per_namespace_per_second, opt.per_namespace_burst));
    ns_buckets.emplace(ns, ns_lru.begin());
    while (ns_buckets.size() > std::max<size_t>(opt.max_namespaces, 1)) {
      ns_buckets.erase(ns_lru.back().first);
      ns_lru.pop_back();
    }
    return ns_lru.front().second;
  }
  // One token from the namespace's bucket and one from everyone's, or none when either is
  // empty (a namespace over its rate spends nothing of the others').
  bool take_token(const std::string& ns, SteadyTime t) {
    Bucket& mine = namespace_bucket(ns);
    if (mine.available(t) < 1 || all.available(t) < 1) return false;
    mine.take(1);
    all.take(1);
    return true;
  }

  static asio::awaitable<void> drain(std::shared_ptr<Impl> self) {
    for (;;) {
      Event ev;
      std::string name;
      {
        std::lock_guard lock(self->mu);
        if (self->stopped || self->queue.empty()) {
          self->running = false;
          co_return;
        }
        ev = std::move(self->queue.front());
        self->queue.pop_front();
        name = event_name(ev.involved.name, self->rng());
      }
      std::string body =
          encode_event(ev, name, rfc3339_now(), self->opt.controller, self->opt.instance);
      const Deadline deadline = std::chrono::steady_clock::now() + self->opt.post_timeout;
      auto r = co_await self->client->create_event(ev.involved.namespace_, std::move(body),
                                                   deadline, self->cancel);
      std::lock_guard lock(self->mu);
      if (r) {
        ++self->st.sent;
        if (!self->last_failure.empty()) {
          spdlog::info("events: the API server takes Events again");
          self->last_failure.clear();
        }
      } else {
        ++self->st.failed;
        if (self->last_failure != r.error().message) {
          self->last_failure = r.error().message;
          spdlog::warn(
              "events: could not create an Event for {} {}/{}: {} (admissions are not "
              "affected; further failures like it are counted, not logged)",
              ev.involved.kind, ev.involved.namespace_, ev.involved.name, r.error().message);
        }
      }
    }
  }
};

EventRecorder::EventRecorder(std::shared_ptr<Client> client, EventRecorderOptions options)
    : impl_(std::make_shared<Impl>(std::move(client), std::move(options))) {}

EventRecorder::~EventRecorder() {
  stop();
}

EventRecorder::Outcome EventRecorder::record(Event event) {
  try {
    if (!validate_event(event)) {
      std::lock_guard lock(impl_->mu);
      ++impl_->st.invalid;
      return Outcome::invalid;
    }
    std::string key;
    key.reserve(event.involved.namespace_.size() + event.involved.kind.size() +
                event.involved.name.size() + event.reason.size() + 3);
    key.append(event.involved.namespace_).push_back('\0');
    key.append(event.involved.kind).push_back('\0');
    key.append(event.involved.name).push_back('\0');
    key.append(event.reason);
    bool start = false;
    {
      std::lock_guard lock(impl_->mu);
      if (impl_->stopped || !impl_->client) return Outcome::stopped;
      const SteadyTime t = impl_->now();
      if (!impl_->allow_key(key, t)) {
        ++impl_->st.rate_limited;
        return Outcome::rate_limited;
      }
      if (impl_->queue.size() >= impl_->opt.queue_size) {
        ++impl_->st.queue_full;
        return Outcome::queue_full;
      }
      if (!impl_->take_token(event.involved.namespace_, t)) {
        ++impl_->st.throttled;
        return Outcome::throttled;
      }
      impl_->remember(key, t);
      impl_->queue.push_back(std::move(event));
      start = !impl_->running;
      impl_->running = true;
    }
    // Posted, outside the lock: co_spawn would start the worker inline when the caller runs on
    // the executor (an admission's coroutine does), and the worker takes the lock; the caller
    // must not do the worker's first steps either.
    if (start) {
      auto ex = impl_->client->executor();
      asio::post(ex, [impl = impl_, ex] { asio::co_spawn(ex, Impl::drain(impl), asio::detached); });
    }
    return Outcome::queued;
  } catch (const std::exception& e) {
    spdlog::warn("events: cannot queue an Event: {}", e.what());
    return Outcome::invalid;
  }
}

void EventRecorder::stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
    impl_->queue.clear();
  }
  impl_->cancel.cancel();
}

EventRecorderStats EventRecorder::stats() const {
  std::lock_guard lock(impl_->mu);
  EventRecorderStats s = impl_->st;
  s.queued = impl_->queue.size();
  s.keys = impl_->keys.size();
  s.namespaces = impl_->ns_buckets.size();
  return s;
}

}  // namespace sigil::kube
