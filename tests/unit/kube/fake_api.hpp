// Test support for the kube module: the shared test PKI (tls_pki(), as Pki), an io_context on
// background threads (run_coro.hpp's Loop), and an in-process fake Kubernetes API server on
// 127.0.0.1:0 (a handler on the shared FakeHttpServer) speaking the real wire format over real
// TLS: JSON lists with metadata.resourceVersion and continue paging,
// chunked watch streams of {"type","object"} events, bookmarks, 410 Gone both as an ERROR event
// and as an HTTP status, connections dropped mid-stream and mid-event, bearer-token checks,
// merge-patch on /status, Secrets and ServiceAccounts, POST (409 AlreadyExists) and PUT
// (409 Conflict on a stale metadata.resourceVersion).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include "fake_http.hpp"
#include "kube/config.hpp"
#include "run_coro.hpp"

namespace sigil::test {

using json = nlohmann::json;
using namespace std::chrono_literals;

struct Pki {
  std::filesystem::path dir;
  std::string ca_pem, ca_key_pem;
  std::string server_cert_pem, server_key_pem;  // SAN IP:127.0.0.1, IP:::1, DNS:localhost
  std::string client_cert_pem, client_key_pem;  // clientAuth, CN=sigil-test-client
  std::string other_ca_pem;                     // an unrelated CA
};
// One PKI per test process (key generation is the slow part): tls_pki()'s.
const Pki& pki();

struct Seen {
  std::string method, path;
  std::map<std::string, std::string> query;
  std::string authorization, content_type, body;
  int status = 0;
};

struct FakeOptions {
  bool require_client_cert = false;
  std::string token = "good-token";  // "" = no auth check
};

class FakeApi {
 public:
  explicit FakeApi(FakeOptions options = {});
  ~FakeApi();
  FakeApi(const FakeApi&) = delete;
  FakeApi& operator=(const FakeApi&) = delete;

  uint16_t port() const;
  // host 127.0.0.1, this port, the test CA, token "good-token".
  kube::ClusterConfig config() const;

  // ---- state (every change bumps the global resourceVersion and logs a watch event) ----
  // plural: "clusterimagepolicies" (cluster-scoped), "imagepolicies", "secrets", ...
  // obj must carry metadata.name (and metadata.namespace for namespaced kinds). Returns the
  // new resourceVersion.
  std::string create(const std::string& plural, json obj);
  std::string update(const std::string& plural, const std::string& key,
                     const std::function<void(json&)>& mutate, bool bump_generation = true);
  std::string remove(const std::string& plural, const std::string& key);
  // Deletes without a watch event (the deletion fell into compacted history).
  void remove_silently(const std::string& plural, const std::string& key);
  // Forgets all events so far: a watch from an older resourceVersion gets 410.
  void compact();
  // Every open watch (with allowWatchBookmarks) sends a BOOKMARK at the current version.
  void bookmark();
  // Every open watch sends an ERROR 410 event and ends.
  void expire_watches();
  // Every open watch connection is closed abruptly (no final chunk, no TLS close_notify).
  void kick();
  std::optional<json> object(const std::string& plural, const std::string& key) const;
  std::string resource_version() const;
  void set_token(std::string token);

  // ---- failure injection (each one-shot or a countdown) ----
  std::atomic<int> drop_after_events{-1};         // next watch: close after sending N events
  std::atomic<bool> drop_mid_event{false};        // next watch: send half of its first event, close
  std::atomic<bool> gone_as_http{false};          // compaction 410 as HTTP status, not ERROR event
  std::atomic<bool> always_gone{false};           // every watch meets 410, whatever its version
  std::atomic<bool> bookmark_before_gone{false};  // ... after a BOOKMARK (a broken server)
  std::atomic<bool> rv_too_large{false};      // next watch: HTTP 504 "Too large resource version"
  std::atomic<int> fail_watches{0};           // next N watch requests: 500
  std::atomic<int> fail_lists{0};             // next N list requests: 500
  std::atomic<int> empty_lists{0};            // next N list requests: 200 with no items
  std::atomic<int> instant_end_watches{0};    // next N watches: 200 then at once a clean end
  std::atomic<bool> expire_continue{false};   // next continue token: 410 Expired
  std::atomic<bool> expire_continues{false};  // every continue token: 410 Expired
  std::atomic<bool> silent_watches{false};    // watches ignore timeoutSeconds and send nothing
  std::atomic<bool> split_events{true};       // send events cut into random chunks
  std::atomic<int> stall_ms{0};               // GETs of objects named "stall" wait this long
  std::atomic<int> fail_gets_with{0};         // GETs answer this status (0 = normal)
  std::atomic<int> hide_gets{0};              // next N GETs of one object: 404 (lost a race)

  // ---- what was seen ----
  std::vector<Seen> seen() const;
  int count(const std::string& method, const std::string& path_prefix = "",
            bool watch_only = false) const;
  int connections() const;  // accepted, TLS handshake or not
  // Watches streaming now. One counted here sees every later bookmark(), expire_watches() and
  // kick(); one merely recorded in seen() may not have started, and would miss them.
  int open_watches() const;
  int unauthorized() const { return unauthorized_.load(); }
  int events_sent() const { return events_sent_.load(); }
  std::vector<std::string> patches() const;  // bodies of PATCH /status

  // The HTTP server underneath: its request log (seen()) and its transport-level failure
  // injection (fail_nth: a TLS error, a stall, a truncated answer on the n-th request).
  FakeHttpServer& http();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
  std::atomic<int> unauthorized_{0};
  std::atomic<int> events_sent_{0};
  friend struct Impl;
};

// A CR of sigil's kinds: {"apiVersion":"sigil.dev/v1alpha1","kind":..,"metadata":{..},"spec":..}
json policy_object(const std::string& name, const std::string& ns = "", json spec = json::object());

}  // namespace sigil::test
