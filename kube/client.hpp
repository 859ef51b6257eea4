// kube/client.hpp: sigil's Kubernetes API client (HTTPS, bearer token or client certificate).
//
// Role: the only code in sigil that talks to the API server, in Kubernetes terms: GET, paged
// LIST, WATCH streams, merge-patch of the status subresource, Secrets and ServiceAccounts,
// create (POST) and replace (PUT, optimistic concurrency on resourceVersion, 409 as a value); a
// bearer token re-read from its file every token_reload and once more after a 401 (bound
// service-account tokens rotate); metav1.Status error bodies turned into one readable line
// with the HTTP code; a watch refused with 410 turned into an ERROR event. The transport is
// net::Client's (net/client.hpp): TLS 1.2+ verified against the cluster CA (host name or IP
// SAN, tls-server-name, client certificates), the keep-alive pool and its expires_never rule,
// the stale-connection retry, body and header caps, deadlines, and cancellation: a Cancel
// fired from any thread reaches net as an Asio cancellation on the call's slot.
// Depends on common and Boost.Asio (awaitable) in this header; net, nlohmann and spdlog stay
// in the .cpp (pimpl). Never throws: every failure is a Result.
//
// Errors: 401/403 -> unauthorized, 404 -> not_found, 400/422 -> invalid_argument, 413 ->
// too_large, 504 -> timeout, anything else (410, 409, 429, 5xx, network) -> unavailable. The
// message carries "HTTP <code>" and the server's reason and message.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "common/deadline.hpp"
#include "common/result.hpp"
#include "kube/config.hpp"
#include "kube/object.hpp"
#include "kube/watch.hpp"

namespace sigil::kube {

// Aborts the calls it is handed, from any thread: an in-flight request or watch read ends
// promptly with Errc::unavailable ("cancelled"), later calls fail at once. Copies share state.
class Cancel {
 public:
  Cancel();
  void cancel() const;  // idempotent
  bool cancelled() const;

  // For implementations: fn runs once on cancel() (on the cancelling thread; it should only
  // post work), or at once when already cancelled (then 0 is returned). unsubscribe(id) after
  // the operation ends.
  uint64_t subscribe(std::function<void()> fn) const;
  void unsubscribe(uint64_t id) const;

 private:
  struct State;
  std::shared_ptr<State> s_;
};

struct ClientOptions {
  std::chrono::milliseconds token_reload{60000};  // token file re-read period (client-go: 1 min)
  size_t max_response = 32 * 1024 * 1024;         // GET / one LIST page / PATCH answer
  size_t max_list = 256 * 1024 * 1024;            // one whole LIST, its pages' bodies together
  size_t max_event = kDefaultMaxEventSize;        // one watch event
  size_t max_idle = 4;                            // idle keep-alive connections kept
  std::string user_agent = "sigil/0.1";
};

struct ListOptions {
  int64_t limit = 500;         // page size; 0 = no limit
  std::string continue_token;  // from the previous page
  std::string label_selector;
  std::string field_selector;
};

struct WatchOptions {
  std::string resource_version;   // start after this version ("" = server's choice)
  int64_t timeout_seconds = 300;  // the server ends the stream after this (0 = server default)
  bool allow_bookmarks = true;
  std::string label_selector;
  std::string field_selector;
  // The stream's own deadline is now + timeout_seconds + read_slack: a silent half-open
  // connection is given up then.
  std::chrono::milliseconds read_slack{30000};
};

class Client;

// The answer to a write (create / replace). A 409 (AlreadyExists on create, Conflict on a
// replace whose metadata.resourceVersion is stale) is an expected outcome of optimistic
// concurrency, not an error: conflict is true, status carries the server's reason, and the
// caller re-reads. Otherwise object is what the server stored.
struct Written {
  bool conflict = false;
  ApiStatus status;
  Object object;
};

// An open watch. next() reads until at least one event has arrived and returns those events
// (in order; several when they shared a read). An empty vector: the server ended the watch
// cleanly (timeoutSeconds passed); later calls return empty too. After an error every later
// call returns that error. Errors: the connection dropped
// (mid-stream or mid-event), the stream deadline passed, an event was malformed or oversized,
// or the Cancel given to Client::watch fired. Events already returned stay valid.
//
// When the server refused the watch with HTTP 410 (Gone/Expired) or "resourceVersion too
// large", watch() still succeeds and next() yields one synthesized ERROR event carrying that
// Status: both forms of "your resourceVersion is gone" reach the caller the same way.
class WatchStream {
 public:
  ~WatchStream();
  WatchStream(const WatchStream&) = delete;
  WatchStream& operator=(const WatchStream&) = delete;

  boost::asio::awaitable<Result<std::vector<WatchEvent>>> next();
  // Closes the connection (thread-safe); a pending next() ends with an error.
  void close();

  struct Impl;
  explicit WatchStream(std::shared_ptr<Impl> impl);

 private:
  std::shared_ptr<Impl> impl_;
};

class Client {
 public:
  // Never throws on bad configuration: a client whose TLS setup failed (a CA or client key that
  // does not parse) answers every call with that error; see init_status().
  Client(const boost::asio::any_io_executor& executor, ClusterConfig config,
         ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Status init_status() const;
  const ClusterConfig& config() const;
  // The executor the client was built with (its connections run on a private strand of it).
  boost::asio::any_io_executor executor() const;

  // Each call below has a plain overload without the Cancel that forwards an empty one: a
  // coroutine takes no default argument of class type (a GCC 12 bug; README, "Build from
  // source").
  //
  // GET one object. not_found on 404.
  boost::asio::awaitable<Result<Object>> get(Resource resource, std::string ns, std::string name,
                                             Deadline deadline, Cancel cancel);
  boost::asio::awaitable<Result<Object>> get(Resource resource, std::string ns, std::string name,
                                             Deadline deadline) {
    return get(std::move(resource), std::move(ns), std::move(name), deadline, Cancel());
  }
  // One LIST page (limit + continue). An expired continue token fails (HTTP 410).
  boost::asio::awaitable<Result<ObjectList>> list_page(Resource resource, std::string ns,
                                                       ListOptions options, Deadline deadline,
                                                       Cancel cancel);
  boost::asio::awaitable<Result<ObjectList>> list_page(Resource resource, std::string ns,
                                                       ListOptions options, Deadline deadline) {
    return list_page(std::move(resource), std::move(ns), std::move(options), deadline, Cancel());
  }
  // The whole collection, following continue tokens (options.limit per page). When a continue
  // token expires (410) the list restarts from the first page, once. resource_version is the
  // first page's (the consistent snapshot the pages belong to). too_large once the pages'
  // bodies together pass ClientOptions::max_list (each page is capped by max_response).
  boost::asio::awaitable<Result<ObjectList>> list(Resource resource, std::string ns,
                                                  ListOptions options, Deadline deadline,
                                                  Cancel cancel);
  boost::asio::awaitable<Result<ObjectList>> list(Resource resource, std::string ns,
                                                  ListOptions options, Deadline deadline) {
    return list(std::move(resource), std::move(ns), std::move(options), deadline, Cancel());
  }
  // Opens a watch (?watch=true&resourceVersion=&allowWatchBookmarks=&timeoutSeconds=).
  // connect_deadline bounds connecting and the response header; see WatchStream for reads.
  boost::asio::awaitable<Result<std::unique_ptr<WatchStream>>> watch(Resource resource,
                                                                     std::string ns,
                                                                     WatchOptions options,
                                                                     Deadline connect_deadline,
                                                                     Cancel cancel);
  boost::asio::awaitable<Result<std::unique_ptr<WatchStream>>> watch(Resource resource,
                                                                     std::string ns,
                                                                     WatchOptions options,
                                                                     Deadline connect_deadline) {
    return watch(std::move(resource), std::move(ns), std::move(options), connect_deadline,
                 Cancel());
  }
  // PATCH <object>/status with Content-Type application/merge-patch+json (RFC 7386); returns
  // the object as the server stored it.
  boost::asio::awaitable<Result<Object>> merge_patch_status(Resource resource, std::string ns,
                                                            std::string name,
                                                            std::string patch_json,
                                                            Deadline deadline, Cancel cancel);
  boost::asio::awaitable<Result<Object>> merge_patch_status(Resource resource, std::string ns,
                                                            std::string name,
                                                            std::string patch_json,
                                                            Deadline deadline) {
    return merge_patch_status(std::move(resource), std::move(ns), std::move(name),
                              std::move(patch_json), deadline, Cancel());
  }
  // POST the object (JSON text) to its collection. Written::conflict on 409 (it exists).
  boost::asio::awaitable<Result<Written>> create(Resource resource, std::string ns,
                                                 std::string object_json, Deadline deadline,
                                                 Cancel cancel);
  boost::asio::awaitable<Result<Written>> create(Resource resource, std::string ns,
                                                 std::string object_json, Deadline deadline) {
    return create(std::move(resource), std::move(ns), std::move(object_json), deadline, Cancel());
  }
  // PUT the whole object (an update). The body should carry metadata.resourceVersion: the
  // server then refuses it with 409 (Written::conflict) when the object changed since it was
  // read, so no one's write is lost.
  boost::asio::awaitable<Result<Written>> replace(Resource resource, std::string ns,
                                                  std::string name, std::string object_json,
                                                  Deadline deadline, Cancel cancel);
  boost::asio::awaitable<Result<Written>> replace(Resource resource, std::string ns,
                                                  std::string name, std::string object_json,
                                                  Deadline deadline) {
    return replace(std::move(resource), std::move(ns), std::move(name), std::move(object_json),
                   deadline, Cancel());
  }
  // GET a core/v1 Secret (values decoded; never log them) / ServiceAccount. not_found on 404.
  boost::asio::awaitable<Result<Secret>> get_secret(std::string ns, std::string name,
                                                    Deadline deadline, Cancel cancel);
  boost::asio::awaitable<Result<Secret>> get_secret(std::string ns, std::string name,
                                                    Deadline deadline) {
    return get_secret(std::move(ns), std::move(name), deadline, Cancel());
  }
  boost::asio::awaitable<Result<ServiceAccount>> get_service_account(std::string ns,
                                                                     std::string name,
                                                                     Deadline deadline,
                                                                     Cancel cancel);
  boost::asio::awaitable<Result<ServiceAccount>> get_service_account(std::string ns,
                                                                     std::string name,
                                                                     Deadline deadline) {
    return get_service_account(std::move(ns), std::move(name), deadline, Cancel());
  }

  // POST a core/v1 Event (JSON from kube/events.hpp's encode_event) to
  // /api/v1/namespaces/<ns>/events; returns the metadata the server stored (201, or 200).
  boost::asio::awaitable<Result<ObjectMeta>> create_event(std::string ns, std::string event_json,
                                                          Deadline deadline, Cancel cancel);

  // HTTP requests sent so far, and how often the token file was read (tests, metrics).
  uint64_t request_count() const;
  uint64_t token_reads() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sigil::kube
