// kube/events.hpp: Kubernetes Events (core/v1) sigil reports, and the recorder that sends them.
//
// Role: an Event names an object (involvedObject), a reason and a one-line message, so that
// `kubectl describe` and `kubectl get events` show what sigil decided about the object. The
// recorder sends them off the admission path: record() never waits for the API server and never
// throws; it validates and bounds every field (hostile names from a review are refused, not
// stored), rate-limits per (object, reason) with an LRU of bounded size, caps the rate of all
// Events with a token bucket and each namespace's with one of its own, and queues at most
// queue_size of them; what does not fit is
// dropped and counted. One worker coroutine POSTs the queue through kube::Client, each under its
// own deadline. core/v1 (not events.k8s.io/v1): every API server sigil supports serves it,
// `kubectl describe` reads it, and one RBAC rule (create on "" events) covers it. Events are
// never aggregated (no PATCH of count): the rate limit makes one per (object, reason) and
// interval. Depends on common, kube/client and Boost.Asio (in the .cpp); nlohmann in the .cpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace sigil::kube {

class Client;

// core/v1 ObjectReference, as an Event's involvedObject.
struct ObjectReference {
  std::string api_version;  // "v1", "apps/v1"
  std::string kind;         // "Pod", "ReplicaSet"
  std::string namespace_;   // the Event lives here too
  std::string name;
  std::string uid;  // "" when the object does not exist (a denied CREATE)
};

struct Event {
  ObjectReference involved;
  std::string type = "Warning";  // "Normal" | "Warning"
  std::string reason;            // CamelCase, e.g. "ImageNotVerified"
  std::string message;           // one line; cut to kMaxEventMessage bytes
  std::string action;            // what sigil did: "Deny", "Warn"
};

// The limits of Kubernetes' own validation (events.k8s.io note, reason and action lengths).
inline constexpr size_t kMaxEventMessage = 1024;
inline constexpr size_t kMaxEventReason = 128;

// Checks that every field is what Kubernetes accepts and small: namespace a DNS label, name a
// DNS subdomain (at most 253 bytes), kind alphanumeric (at most 63), apiVersion and uid short
// and plain, reason CamelCase, type Normal or Warning. invalid_argument naming the field (its
// value cut short) otherwise. The message is not checked: encode_event cleans and cuts it.
Status validate_event(const Event& event);

// The JSON body of POST /api/v1/namespaces/<ns>/events: metadata.name, involvedObject, reason,
// message (control bytes as '?', cut to kMaxEventMessage bytes on a UTF-8 boundary),
// type, action, source.component and reportingComponent = controller, reportingInstance =
// instance (cut to 128), firstTimestamp = lastTimestamp = timestamp (RFC 3339), count 1.
std::string encode_event(const Event& event, std::string_view name, std::string_view timestamp,
                         std::string_view controller, std::string_view instance);

// "<involved name>.<suffix>", the name cut so the whole stays a DNS subdomain of at most 253
// bytes (the form client-go uses: name.<hex>).
std::string event_name(std::string_view involved_name, uint64_t suffix);

struct EventRecorderOptions {
  size_t queue_size = 256;  // Events waiting for the worker; more are dropped (queue_full)
  // (object, reason) pairs remembered; the least recently seen is forgotten first. Each entry
  // is at most ~600 bytes (the field bounds above), so memory stays under max_keys * 600 B.
  size_t max_keys = 4096;
  // One Event per (object, reason) per interval; the others are counted as rate_limited.
  std::chrono::milliseconds per_object_interval{std::chrono::minutes(5)};
  // All Events: a token bucket of `burst`, refilled at `per_second`.
  double per_second = 5;
  double burst = 25;
  // Each namespace's Events as well: one tenant whose pods are denied over and over takes at
  // most this from the bucket above, and the other namespaces' Events still get through.
  // Buckets are kept for the max_namespaces most recently seen namespaces (a forgotten one
  // comes back with a full bucket).
  double per_namespace_per_second = 1;
  double per_namespace_burst = 10;
  size_t max_namespaces = 1024;
  std::chrono::milliseconds post_timeout{10000};  // one POST
  std::string controller = "sigil";               // source.component, reportingComponent
  std::string instance;                           // reportingInstance: the pod's name
  // The clock of the rate limits (tests); empty = std::chrono::steady_clock.
  std::function<std::chrono::steady_clock::time_point()> now;
};

// What the recorder did with Events so far (metrics and tests).
struct EventRecorderStats {
  uint64_t sent = 0;          // created by the API server
  uint64_t failed = 0;        // POST failed (answer, network, deadline)
  uint64_t rate_limited = 0;  // same (object, reason) within per_object_interval
  uint64_t throttled = 0;     // over the global rate, or over its namespace's
  uint64_t queue_full = 0;    // the queue was full
  uint64_t invalid = 0;       // refused by validate_event
  size_t queued = 0;          // waiting now
  size_t keys = 0;            // (object, reason) pairs remembered now
  size_t namespaces = 0;      // namespaces with a token bucket now
};

class EventRecorder {
 public:
  enum class Outcome : uint8_t { queued, rate_limited, throttled, queue_full, invalid, stopped };

  // client must stay alive while Events are sent (the recorder holds it).
  EventRecorder(std::shared_ptr<Client> client, EventRecorderOptions options);
  ~EventRecorder();  // stop()
  EventRecorder(const EventRecorder&) = delete;
  EventRecorder& operator=(const EventRecorder&) = delete;

  // Thread-safe, never blocks on I/O, never throws.
  Outcome record(Event event);
  // Drops what is queued and cancels the POST in flight; later record() calls return stopped.
  void stop();
  EventRecorderStats stats() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

std::string_view outcome_name(EventRecorder::Outcome o) noexcept;

}  // namespace sigil::kube
