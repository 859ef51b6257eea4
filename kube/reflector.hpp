// kube/reflector.hpp: list+watch one resource into an in-memory store (the informer sigil
// needs), handing the caller a consistent snapshot after the initial list and after changes.
//
// Role: keep a local copy of a collection in step with the API server, the way client-go's
// Reflector does: LIST (paged) -> WATCH from the list's resourceVersion with bookmarks and a
// random timeoutSeconds in [min_watch_timeout, max_watch_timeout); ADDED/MODIFIED/DELETED
// update the store keyed by namespace/name; BOOKMARK only advances the resourceVersion; a 410
// (as an ERROR event or as the watch's HTTP status) or "resourceVersion too large" -> relist,
// which also drops objects deleted meanwhile; a dropped connection or any other error ->
// re-watch from the last resourceVersion after an exponential backoff with jitter (bounded,
// reset after healthy progress; a watch that ends at once with nothing is a failure too, so a
// server that keeps failing is never busy-looped). resourceVersions are compared for equality
// only. Depends on kube/client.hpp and Boost.Asio; no Beast, no nlohmann.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kube/client.hpp"

namespace sigil::kube {

struct ReflectorOptions {
  Resource resource;
  std::string namespace_;  // "" = all namespaces (and cluster-scoped resources)
  std::string label_selector;
  std::string field_selector;
  int64_t page_size = 500;
  // Each watch asks for timeoutSeconds uniformly random in [min, max) (client-go: 5-10 min).
  std::chrono::seconds min_watch_timeout{300};
  std::chrono::seconds max_watch_timeout{600};
  std::chrono::milliseconds request_timeout{30000};   // one LIST (all pages); opening a watch
  std::chrono::milliseconds watch_read_slack{30000};  // see WatchOptions::read_slack
  // Backoff before retry n (1-based): uniform in [d/2, d], d = min(max, initial * 2^(n-1)).
  std::chrono::milliseconds backoff_initial{800};
  std::chrono::milliseconds backoff_max{30000};
  // A watch that ends (cleanly or not) sooner than this without a single event counts as a
  // failure (client-go's "very short watch").
  std::chrono::milliseconds min_watch_duration{1000};
  // Only a watch that lasted this long, or that applied a change, resets the backoff: a
  // broken server answering every watch with a bookmark and then 410 otherwise had every
  // replica list everything again at once, per watch, without end.
  std::chrono::milliseconds healthy_watch_duration{30000};
  // After this many failed watches in a row (a 403 after an RBAC change, an event sigil cannot
  // read, 5xx), list again: re-watching from the same resourceVersion forever kept policies
  // as they were with nothing to say so but a log line.
  int relist_after_failed_watches = 5;
  // A relist that finds no object while the store holds some is made again after this before
  // it empties the store (a broken server's empty answer would drop every policy).
  std::chrono::milliseconds confirm_empty_after{1000};
};

// An immutable view of the store. Objects sorted by key ("namespace/name" or "name").
struct Snapshot {
  std::vector<std::shared_ptr<const Object>> objects;
  std::string resource_version;  // the store's resourceVersion when the snapshot was taken
  uint64_t sequence = 0;         // 1 for the first (synced) snapshot, +1 per notification
  // The object with this key, or nullptr (binary search).
  const Object* find(std::string_view key) const;
};

// Called on the reflector's strand, never concurrently with itself: once after the initial
// list ("synced"), then after every batch of changes (events that arrived in one read are
// applied together; a relist that changed nothing and bookmarks notify nobody). Keep it short:
// the reflector waits for it. It may call stop().
using SnapshotCallback = std::function<void(std::shared_ptr<const Snapshot>)>;

struct ReflectorStats {
  uint64_t lists = 0;    // successful LISTs (the first one included)
  uint64_t relists = 0;  // LISTs after a 410 or a too-large resourceVersion
  uint64_t watches = 0;  // watch requests opened
  uint64_t events = 0;   // ADDED/MODIFIED/DELETED applied
  uint64_t bookmarks = 0;
  uint64_t failures = 0;       // failed attempts (each followed by a backoff)
  uint64_t notifications = 0;  // callback invocations
  std::string resource_version;
  std::string last_error;  // "" when the last attempt succeeded
  bool synced = false;
  // When the store was last known to be the server's: a LIST, a watch event or bookmark, or a
  // watch that ran to its timeout. The epoch until the first LIST.
  std::chrono::steady_clock::time_point current_at{};
};

class Reflector {
 public:
  // The client must stay usable while the reflector runs (it is shared, not owned alone).
  Reflector(std::shared_ptr<Client> client, ReflectorOptions options, SnapshotCallback on_change);
  // Stops (see stop()).
  ~Reflector();
  Reflector(const Reflector&) = delete;
  Reflector& operator=(const Reflector&) = delete;

  // Starts the list+watch loop on a strand of the client's executor. Once.
  void start();
  // Ends everything promptly from any thread: the watch connection is closed, a pending list
  // or backoff is cancelled. When stop() returns no callback is running (unless stop() was
  // called from inside it) and none will start; the callback is released. Idempotent.
  void stop();

  // True once the first snapshot (after the initial list) has been handed to the callback.
  bool synced() const;
  // True from start() until the loop has ended after stop() (its last request released).
  bool running() const;
  // The latest snapshot (nullptr before the first list).
  std::shared_ptr<const Snapshot> snapshot() const;
  ReflectorStats stats() const;
  const Resource& resource() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sigil::kube
