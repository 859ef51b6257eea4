// tests/support/cpp/fake_http.hpp: the one fake HTTP server of the C++ tests.
//
// Role: a real HTTP/1.1 server on 127.0.0.1:0 (Boost.Beast), plain or TLS (certificates from
// tls_pki(), minted at test time with pki.hpp), on its own thread, that the net, registry
// and kube tests (and the Azure ones after them) talk to over real sockets. A handler answers
// each request, either with a whole HttpReply or, for streaming answers (a Kubernetes watch),
// by writing to the connection itself. Failure injection, the n-th request failing while the
// test loops n until success: 401, 404, 429, 500, a truncated body, a TLS error (the n-th
// connection), a stall. Every request is recorded. Test-only; failures throw.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

namespace sigil::test {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// %XX sequences decoded; with plus_as_space (query strings), '+' as a space too.
std::string percent_decode(std::string_view s, bool plus_as_space);

struct HttpRequest {
  int number = 0;                            // 1-based, over the server's life
  int connection = 0;                        // 1-based number of the connection it came on
  std::string method;                        // "GET", "HEAD", ...
  std::string target;                        // as sent: path + query
  std::string path;                          // target without the query
  std::map<std::string, std::string> query;  // percent-decoded
  HttpHeaders headers;
  std::string body;
  bool keep_alive = true;
  std::string sni;  // TLS: the server name the client sent ("" for none, or plain HTTP)
  // The first value of a field (case-insensitive), "" when absent.
  std::string header(std::string_view name) const;
};

struct HttpReply {
  unsigned status = 200;
  HttpHeaders headers;
  std::string body;
  bool chunked = false;   // Transfer-Encoding: chunked instead of Content-Length
  bool truncate = false;  // announce the whole body, send half of it, close
  bool stall = false;     // send nothing and hold the connection (FakeHttpOptions::stall_for)
  bool close = false;     // Connection: close after this answer
  std::chrono::milliseconds delay{0};  // answered after this long (a slow server)

  static HttpReply json(unsigned status, std::string body);
  static HttpReply text(unsigned status, std::string body);
};

// What the n-th request (or, for tls_error, the n-th connection) meets instead of its answer.
enum class Fault {
  none,
  http_401,        // 401 (with FaultPlan::headers, e.g. a WWW-Authenticate challenge)
  http_404,        // 404 {"errors":[{"code":"MANIFEST_UNKNOWN"}]}
  http_429,        // 429 with Retry-After: 0 unless headers say otherwise
  http_500,        // 500
  truncated_body,  // the handler's answer, cut in the middle of its body, then the close
  tls_error,       // TLS: the n-th connection gets bytes that are not TLS; plain: closed at once
  stall,           // no answer at all until stall_for passes
};
const char* fault_name(Fault fault) noexcept;

// The connection a streaming handler writes its answer to (on the server's thread).
class HttpConn {
 public:
  virtual ~HttpConn() = default;
  // Each returns false once the peer is gone.
  virtual boost::asio::awaitable<bool> write(std::string_view bytes) = 0;
  virtual boost::asio::awaitable<bool> reply(const HttpReply& reply) = 0;
  // One chunk of a chunked body (after a header with Transfer-Encoding: chunked), the end.
  boost::asio::awaitable<bool> chunk(std::string_view data);
  boost::asio::awaitable<bool> end_chunks();
  virtual boost::asio::awaitable<void> sleep(std::chrono::milliseconds d) = 0;
  // Closes at once: no more bytes, no TLS close_notify.
  virtual void abort() = 0;
  // True once the server is stopping: long-running answers end.
  virtual bool stopping() const = 0;
};

// Answers one request; returns whether the connection stays open for the next one.
using StreamHandler = std::function<boost::asio::awaitable<bool>(const HttpRequest&, HttpConn&)>;
using Handler = std::function<HttpReply(const HttpRequest&)>;

struct FakeHttpOptions {
  bool tls = false;
  // The server certificate (leaf first) and key; empty: tls_pki().server_* (localhost).
  std::string cert_pem;
  std::string key_pem;
  bool require_client_cert = false;  // verified against tls_pki().ca_pem
  std::chrono::milliseconds stall_for{3000};
  // While *hang is true, each new connection is accepted and then held without a byte (no TLS
  // handshake, no answer) for stall_for, then closed: a host that cannot be reached.
  std::shared_ptr<std::atomic<bool>> hang;
};

class FakeHttpServer {
 public:
  explicit FakeHttpServer(Handler handler, FakeHttpOptions options = {});
  explicit FakeHttpServer(StreamHandler handler, FakeHttpOptions options = {});
  ~FakeHttpServer();  // stop()
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;

  uint16_t port() const;
  std::string authority() const;  // "127.0.0.1:port"
  std::string origin() const;     // "http(s)://127.0.0.1:port"
  std::string url(std::string_view target) const;

  // One-shot: the n-th request from now on counting from the server's start (tls_error: the
  // n-th connection) fails this way; headers/body replace the fault's defaults.
  void fail_nth(Fault fault, int n, HttpHeaders headers = {}, std::string body = {});
  bool fault_fired() const;  // the planned fault has been applied

  std::vector<HttpRequest> seen() const;  // every request so far, in order
  int requests() const;
  int connections() const;        // accepted
  int failed_handshakes() const;  // TLS handshakes the server saw fail
  // Closes every open connection abruptly (a keep-alive connection the server dropped).
  void drop_connections();
  // Stops accepting, ends every connection and joins the thread. Idempotent.
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// The TLS material of the fake servers, minted once per test process with tls_pki.hpp.
struct FakeTls {
  std::string ca_pem, ca_key_pem;
  std::string ca_file;  // ca_pem written to a file (for options that take a path)
  std::string server_cert_pem, server_key_pem;          // SAN IP:127.0.0.1, IP:::1, DNS:localhost
  std::string other_name_cert_pem, other_name_key_pem;  // SAN DNS:other.example only
  std::string other_ip_cert_pem, other_ip_key_pem;      // SAN IP:127.0.0.2 only
  std::string expired_cert_pem, expired_key_pem;        // localhost, expired yesterday
  std::string client_cert_pem, client_key_pem;          // clientAuth, CN=sigil-test-client
  std::string other_ca_pem;                             // an unrelated CA
};
const FakeTls& tls_pki();

}  // namespace sigil::test
