// server/server.hpp: the HTTPS listener for the admission webhook.
//
// Role: accept TLS connections (Beast over Asio, C++20 coroutines, a strand per connection),
// parse HTTP/1.1 requests with bounded headers and bodies, route POST /validate to the
// Validator and POST /mutate to the Mutator, each under a hard deadline derived from the API
// server's `?timeout=`, answer
// /healthz and /readyz, reload the certificate when its files change, stop gracefully.
// Beast stays out of this header (pimpl). Depends on common, admission (via Validator) and the
// verify interface; never on a registry or policy implementation.
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
  std::string cert_file;              // PEM certificate chain, leaf first
  std::string key_file;               // PEM private key
  size_t max_body = 7 * 1024 * 1024;  // larger bodies get 413 and the connection is closed
  size_t max_header = 16 * 1024;      // larger headers get 431
  // Verification budget: min(?timeout=, default_timeout, max_timeout) minus a margin of
  // min(safety_margin, budget * max_margin_fraction), so the reply leaves before the API
  // server gives up. A missing or malformed ?timeout= uses default_timeout.
  std::chrono::milliseconds default_timeout{10000};
  std::chrono::milliseconds max_timeout{30000};
  std::chrono::milliseconds safety_margin{500};
  double max_margin_fraction = 0.25;
  // /readyz answers 200 when this returns true (an empty function counts as ready).
  std::function<bool()> ready;
  // POST /validate-policy (the policies' own validating webhook); 404 when empty.
  CheckPolicyObject check_policy;
  // POST /mutate (pins Pods' tags to verified digests); 404 when null. Must outlive the Server's
  // connections, as the Validator does.
  const Mutator* mutator = nullptr;
  std::chrono::milliseconds handshake_timeout{5000};  // TCP accept -> TLS established
  std::chrono::milliseconds read_timeout{10000};      // first request: headers and body
  std::chrono::milliseconds idle_timeout{60000};      // keep-alive wait for the next request
  std::chrono::milliseconds write_timeout{10000};
  std::chrono::milliseconds cert_check_interval{10000};  // mtime check, on new connections
  std::chrono::milliseconds shutdown_grace{10000};       // stop(): in-flight requests finish
  size_t max_connections = 2048;
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
  // The bound port (the real one when listening on port 0); 0 before start().
  uint16_t port() const;
  // Number of open connections (for tests and metrics).
  size_t connections() const;

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

}  // namespace sigil::server
