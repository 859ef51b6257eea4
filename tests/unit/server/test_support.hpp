// Test helpers for the server module: a CA and a server certificate for 127.0.0.1 from the
// shared test PKI (tests/support/cpp/tls_pki.hpp), a fake verifier, fixture loading, and a TLS
// client on Beast.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "server/validator.hpp"
#include "tls_pki.hpp"

namespace sigil::test {

struct TestPki {
  std::shared_ptr<const TlsPki> ca;  // the shared test PKI's CA (tls_pki.hpp)
  std::filesystem::path dir;
  std::string ca_pem;
  std::string cert_file, key_file;
};

// A fresh CA and a fresh temp dir holding server.pem (the leaf alone) and server.key for
// 127.0.0.1, ::1 and localhost. cn names the leaf so tests can tell certificates apart.
TestPki make_pki(const std::string& leaf_cn = "sigil-test-server");
// Writes a new leaf (same CA) over pki.cert_file/key_file.
void rewrite_leaf(const TestPki& pki, const std::string& leaf_cn);

std::string read_fixture(const std::string& name);
// kubectl-run Pod fixture with its containers replaced by one container per image.
std::string pod_with_images(const std::vector<std::string>& images,
                            const std::string& uid = "3a2c9f0e-4b1d-4c9e-9a51-0d4f3c1b2e71");

// The fake verifier: "good" -> allowed, "bad" -> denied NOT_SIGNED, "warn" -> warned,
// "slow" -> allowed after 300 ms, "stall" -> allowed after 20 s, "stubborn" -> ignores
// cancellation and answers after 3 s, "throw" -> throws. Tracks concurrency.
struct FakeVerifier {
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  std::atomic<int> calls{0};
  // The Context's namespace of the last call.
  std::string last_namespace() const {
    std::lock_guard lock(mu);
    return last_ns;
  }
  mutable std::mutex mu;
  std::string last_ns;
  boost::asio::awaitable<verify::Verdict> operator()(std::string image, Deadline deadline);
  server::VerifyImage fn();
  // The synchronous path (server::VerifyNow): the verdict operator() gives, at once, for
  // images without "throw", "stubborn", "stall", "slow", "expire" or "miss"; else nullopt.
  // ("expire" waits until its deadline, then is denied TIMEOUT with a detail naming the step.)
  std::atomic<int> now_calls{0};
  std::optional<verify::Verdict> now(const std::string& image);
  server::VerifyNow now_fn();
  // The verdict fields operator() and now() set from the image's name ("private": withheld).
  static void verdict_for(const std::string& image, verify::Verdict& v);
};

struct ClientOptions {
  int max_tls_version = 0;  // 0 = library default; e.g. TLS1_1_VERSION
  std::string extra_headers;
  std::chrono::milliseconds timeout{10000};
};

struct ClientReply {
  bool ok = false;    // a complete HTTP response was read
  std::string error;  // transport error otherwise
  int status = 0;
  std::string body;
  std::string allow;
  std::string content_type;
  std::string peer_cn;  // CN of the server certificate
  std::chrono::milliseconds elapsed{0};
};

ClientReply https_request(uint16_t port, const std::string& ca_pem, const std::string& method,
                          const std::string& target, const std::string& body = "",
                          const ClientOptions& options = {});
// The same from another local address (each 127.0.0.x is its own peer to the server).
ClientReply https_request_from(const std::string& source_ip, uint16_t port,
                               const std::string& ca_pem, const std::string& method,
                               const std::string& target, const std::string& body,
                               const ClientOptions& options);

// A TLS connection held open by a test, to play a client that connects and then does as it
// likes: idles, sends part of a request, trickles bytes. Every call is bounded by its timeout.
class RawTlsClient {
 public:
  RawTlsClient(uint16_t port, const std::string& ca_pem,
               const std::string& source_ip = "127.0.0.1");
  ~RawTlsClient();
  RawTlsClient(const RawTlsClient&) = delete;
  RawTlsClient& operator=(const RawTlsClient&) = delete;

  // TCP connect (from source_ip) and TLS handshake: "" when done, else what failed.
  std::string connect(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  bool send(const std::string& bytes, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  struct Response {
    bool ok = false;  // a status line, headers and the Content-Length body were read
    int status = 0;
    std::string headers;  // the header block, as received
    std::string body;
    std::string error;
  };
  Response read_response(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // True when the server closes the connection within timeout (what it sends first is dropped).
  bool closed_within(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "POST target HTTP/1.1" headers for a body of content_length bytes ("" = chunked), ending
// with the blank line.
std::string post_head(const std::string& target, const std::string& content_length);

}  // namespace sigil::test
