// bench/bare_responder.cpp: the ceiling sigil's /validate throughput is compared against.
//
// A minimal HTTPS server built the same way as sigil's (Beast over Asio, C++20 coroutines, a
// strand per connection, N threads on one io_context, the same TLS context from
// server::make_server_context: TLS 1.2+, AEAD ECDHE suites) that reads each request fully and
// answers every POST with one fixed AdmissionReview response (allowed=true, fixed uid). It
// does no JSON parsing, no policy work and no logging, so the gap between it and sigil is what
// sigil's own request path costs. Used only by bench/run.sh; not a test.
#include <CLI/CLI.hpp>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/server.hpp"
#include "server/tls.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// What sigil answers for an admitted pod, byte for byte in shape (uid fixed).
constexpr const char* kResponse =
    R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":)"
    R"({"uid":"3a2c9f0e-4b1d-4c9e-9a51-0d4f3c1b2e71","allowed":true}})";

constexpr size_t kMaxBody = 7 * 1024 * 1024;  // sigil's default
constexpr size_t kMaxHeader = 16 * 1024;

asio::awaitable<void> session(tcp::socket socket, std::shared_ptr<ssl::context> ctx) {
  beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *ctx);
  auto& tcp_layer = beast::get_lowest_layer(stream);
  tcp_layer.expires_after(5s);
  auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
  if (hec) co_return;

  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxHeader);
    parser.body_limit(kMaxBody);
    tcp_layer.expires_after(60s);
    auto [rec, rn] = co_await http::async_read(stream, buffer, parser, use_tuple);
    (void)rn;
    if (rec) break;  // EOF, timeout, limit or garbage: just close, this is a benchmark peer
    const auto& req = parser.get();
    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(req.keep_alive());
    res.set(http::field::server, "bench-bare");
    if (req.method() == http::verb::post) {
      res.result(http::status::ok);
      res.set(http::field::content_type, "application/json");
      res.body() = kResponse;
    } else {
      res.result(http::status::method_not_allowed);
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "POST only\n";
    }
    res.prepare_payload();
    tcp_layer.expires_after(10s);
    auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
    (void)wn;
    if (wec || !res.keep_alive()) break;
  }
  tcp_layer.expires_after(2s);
  co_await stream.async_shutdown(use_tuple);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, asio::io_context& io,
                                  std::shared_ptr<ssl::context> ctx) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(io), use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      asio::steady_timer t(acceptor.get_executor(), 50ms);  // EMFILE: back off, don't spin
      co_await t.async_wait(use_tuple);
      continue;
    }
    auto ex = socket.get_executor();
    asio::co_spawn(ex, session(std::move(socket), ctx), asio::detached);
  }
}

int run(int argc, char** argv) {
  CLI::App app{"bench_bare_responder: fixed AdmissionReview over HTTPS (benchmark ceiling)"};
  std::string listen = "127.0.0.1:0";
  std::string cert, key;
  unsigned threads = 2;
  app.add_option("--listen", listen, "ADDR:PORT (port 0 = ephemeral; the port is printed)");
  app.add_option("--cert", cert, "PEM certificate chain")->required();
  app.add_option("--key", key, "PEM private key")->required();
  app.add_option("--threads", threads, "worker threads")->check(CLI::Range(1u, 256u));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  auto addr = sigil::server::parse_listen_address(listen);
  if (!addr.ok()) {
    std::fprintf(stderr, "bench_bare_responder: --listen: %s\n", addr.error().message.c_str());
    return 2;
  }
  auto ctx = sigil::server::make_server_context(cert, key);
  if (!ctx.ok()) {
    std::fprintf(stderr, "bench_bare_responder: %s\n", ctx.error().message.c_str());
    return 2;
  }

  asio::io_context io(static_cast<int>(threads));
  tcp::acceptor acceptor(asio::make_strand(io));
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(addr->host, ec);
  if (ec) {
    std::fprintf(stderr, "bench_bare_responder: --listen %s: %s\n", listen.c_str(),
                 ec.message().c_str());
    return 2;
  }
  const tcp::endpoint ep(ip, addr->port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::fprintf(stderr, "bench_bare_responder: --listen %s: %s\n", listen.c_str(),
                 ec.message().c_str());
    return 2;
  }
  const auto port = acceptor.local_endpoint(ec).port();
  if (ec) {
    std::fprintf(stderr, "bench_bare_responder: %s\n", ec.message().c_str());
    return 2;
  }
  std::printf("listening on %s port %u\n", addr->host.c_str(), static_cast<unsigned>(port));
  std::fflush(stdout);

  asio::co_spawn(acceptor.get_executor(), accept_loop(acceptor, io, *ctx), asio::detached);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& sec, int) {
    if (!sec) io.stop();
  });

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_bare_responder: %s\n", e.what());
    return 1;
  }
}
