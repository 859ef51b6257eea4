// server/server.hpp: the HTTPS listener for the admission webhook.
//
// Role: accept TLS connections (Beast over Asio, C++20 coroutines, a strand per connection),
// parse HTTP/1.1 requests with bounded headers and bodies (and a process-wide budget for bodies
// being read), bound connections per peer and in all (server/limits.hpp), route POST /validate to
// the Validator and POST /mutate to the Mutator, each under a hard deadline derived from the API
// server's `?timeout=`, answer /healthz and /readyz, reload the certificate when its files change
// (or take it from memory, set_certificate),
// stop gracefully. Beast stays out of this header (pimpl). Depends on common, admission (via
// Validator) and the verify interface; never on a registry or policy implementation.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "common/result.hpp"
#include "server/validator.hpp"

namespace sigil::server {

class Mutator;

struct ServerOptions {
  // "ADDR:PORT": "0.0.0.0:8443", "127.0.0.1:0", "[::1]:8443", ":8443" (all IPv4). Port 0 picks
  // an ephemeral port; Server::port() tells which.
  std::string listen = "0.0.0.0:8443";
  std::string cert_file;  // PEM certificate chain, leaf first
  std::string key_file;   // PEM private key
  // The certificate comes from memory through Server::set_certificate (the self-managed
  // certificate of app/selfcert.hpp), not from the files above. Until the first one arrives,
  // connections are closed at once and /readyz is not Ready.
  bool external_certificate = false;
  // Larger bodies get 413 and the connection is closed. An AdmissionReview carries the object
  // and, for UPDATE, the old object: each at most about 1.5 MiB as stored, so 4 MiB is ample.
  size_t max_body = 4 * 1024 * 1024;
  // Bytes of request bodies being read at once, over all connections (reserved from
  // Content-Length before the body is read, or as a chunked body arrives; given back when the
  // request is answered). Past it the request gets 503 with Retry-After and the connection
  // closes. A quarter of it is kept for bodies of at most 256 KiB (the API server's usual
  // reviews), which a flood of large bodies cannot take. When a request finds it full, the
  // bodies that have been arriving for longer than stalled_body are cut (their connections
  // closed) to make room: the API server sends a review's body at once, so only a client that
  // announces a body and withholds it holds the budget that long.
  size_t body_budget = 64 * 1024 * 1024;
  std::chrono::milliseconds stalled_body{500};
  size_t max_header = 16 * 1024;  // larger headers get 431
  // Verification budget: min(?timeout=, default_timeout, max_timeout) minus a margin of
  // min(safety_margin, budget * max_margin_fraction), so the reply leaves before the API
  // server gives up. A missing or malformed ?timeout= uses default_timeout.
  std::chrono::milliseconds default_timeout{10000};
  std::chrono::milliseconds max_timeout{30000};
  std::chrono::milliseconds safety_margin{500};
  double max_margin_fraction = 0.25;
  // The handler's verifiers stop this long (at most a tenth of what is left) before that
  // deadline: one that runs out of time then answers for itself, naming its image and the step
  // that was slow, and the Server's bare TIMEOUT is left for a handler that is stuck.
  std::chrono::milliseconds answer_slack{200};
  // /readyz answers 200 when this returns true (an empty function counts as ready).
  std::function<bool()> ready;
  // POST /validate-policy (the policies' own validating webhook); 404 when empty.
  CheckPolicyObject check_policy;
  // POST /mutate (pins Pods' tags to verified digests); 404 when null. Must outlive the Server's
  // connections, as the Validator does.
  const Mutator* mutator = nullptr;
  // Told of every answered POST /validate and /mutate (route "validate" or "mutate"): its result
  // (a 200 the handler did not classify counts as allowed, any other status as error; the
  // TIMEOUT reply as denied) and the time from the body read to the answer. Metrics (app/);
  // must be quick and must not throw.
  std::function<void(std::string_view route, AdmissionResult result,
                     std::chrono::steady_clock::duration elapsed)>
      observe_admission;
  std::chrono::milliseconds handshake_timeout{5000};  // TCP accept -> TLS established
  // The first request's headers (after the handshake), and any body: the API server sends a
  // request at once, so a slow one is a slowloris.
  std::chrono::milliseconds read_timeout{5000};
  // Keep-alive wait for the next request's headers. Shorter than the API server's own idle
  // timeout (Go's transport: 90 s), long enough that a busy cluster reuses connections.
  std::chrono::milliseconds idle_timeout{30000};
  std::chrono::milliseconds write_timeout{10000};
  std::chrono::milliseconds cert_check_interval{10000};  // mtime check, on new connections
  std::chrono::milliseconds shutdown_grace{10000};       // stop(): in-flight requests finish
  // Open connections, in all and per peer address. At either cap the idlest idle connection
  // (the peer's own first) is closed to make room; a busy one never is, and only when every
  // candidate is busy is the new connection refused. On AKS the API server arrives through a
  // few konnectivity-agent pod IPs: evicting idle connections, not refusing new ones, is what
  // keeps its keep-alive pool working while someone floods the port.
  size_t max_connections = 2048;
  size_t max_connections_per_peer = 512;
};

// Counters for tests, logs and metrics.
struct ServerStats {
  size_t connections = 0;             // open now
  uint64_t evicted = 0;               // idle connections closed to make room for new ones
  uint64_t refused = 0;               // new connections closed at a cap with no idle one to evict
  size_t body_bytes_in_use = 0;       // of body_budget, now
  uint64_t body_budget_refusals = 0;  // requests answered 503 because of body_budget
  uint64_t stalled_bodies_cut = 0;    // connections closed to make room in body_budget
};

class Server {
 public:
  // The Validator must outlive every connection (i.e. until the io_context stops running).
  Server(boost::asio::io_context& ioc, ServerOptions options, Validator& validator);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads the certificate and binds the listener. Fails (naming the setting) on a bad listen
  // address, an unusable cert/key, or a bind error. Thread-safe to call once.
  Status start();
  // Stops accepting, closes idle connections, lets in-flight requests finish for up to
  // shutdown_grace, then closes everything. Thread-safe; idempotent.
  void stop();
  // external_certificate: installs (or hot-swaps) the serving certificate; new connections use
  // it, open ones keep theirs. A pair whose key does not match is refused and the current one
  // stays. Thread-safe.
  Status set_certificate(const std::string& cert_pem, const std::string& key_pem);
  bool has_certificate() const;
  // Lame duck, the first step of a graceful shutdown (SIGTERM): /readyz answers 503 from now on,
  // so load balancers and endpoints move away, while every request is still served as before;
  // responses carry `Connection: close`, so pooled keep-alive connections move too. stop() ends
  // it. Thread-safe; idempotent.
  void lame_duck();
  // The bound port (the real one when listening on port 0); 0 before start().
  uint16_t port() const;
  // Number of open connections (for tests and metrics).
  size_t connections() const;
  ServerStats stats() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Pure helpers, exposed for tests.
struct ListenAddress {
  std::string host;  // literal IP, brackets removed
  uint16_t port = 0;
};
Result<ListenAddress> parse_listen_address(std::string_view text);

// The budget for one /validate request given the raw value of ?timeout= ("" when absent) and
// the options; the hard deadline is receipt time + this.
std::chrono::milliseconds request_budget(std::string_view timeout_param,
                                         const ServerOptions& options);

// The deadline the handler works to (ServerOptions::answer_slack): min(slack, (hard - now) / 10)
// before the hard deadline, never later than it and never before now.
Deadline handler_deadline(Deadline hard, std::chrono::steady_clock::time_point now,
                          std::chrono::milliseconds slack);

}  // namespace sigil::server
