#include "test_support.hpp"

#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

namespace sigil::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

TestPki make_pki(const std::string& leaf_cn) {
  TestPki pki;
  pki.ca = std::make_shared<const TlsPki>(TlsPki::create());
  pki.dir = make_temp_dir("sigil-server-test");
  pki.ca_pem = pki.ca->ca_pem();
  const TlsFiles files = write_tls_files(pki.dir, "server", pki.ca->server(leaf_cn));
  pki.cert_file = files.cert_file;
  pki.key_file = files.key_file;
  return pki;
}

void rewrite_leaf(const TestPki& pki, const std::string& leaf_cn) {
  write_tls_files(pki.dir, "server", pki.ca->server(leaf_cn));
}

std::string read_fixture(const std::string& name) {
  const std::string path = std::string(SIGIL_SOURCE_DIR) + "/tests/unit/server/data/" + name;
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("missing fixture " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string pod_with_images(const std::vector<std::string>& images, const std::string& uid) {
  auto j = nlohmann::json::parse(read_fixture("pod-create-kubectl-run.json"));
  j["request"]["uid"] = uid;
  auto& containers = j["request"]["object"]["spec"]["containers"];
  const auto tmpl = containers.at(0);
  containers = nlohmann::json::array();
  for (size_t i = 0; i < images.size(); ++i) {
    auto c = tmpl;
    c["name"] = "c" + std::to_string(i);
    c["image"] = images[i];
    containers.push_back(c);
  }
  return j.dump();
}

asio::awaitable<verify::Verdict> FakeVerifier::operator()(std::string image, Deadline deadline) {
  ++calls;
  const int now = ++in_flight;
  int prev = max_in_flight.load();
  while (now > prev && !max_in_flight.compare_exchange_weak(prev, now)) {
  }
  struct Leave {
    std::atomic<int>& n;
    ~Leave() { --n; }
  } leave{in_flight};
  verify::Verdict v;
  v.image = image;
  v.digest = "sha256:" + std::string(64, 'a');
  auto ex = co_await asio::this_coro::executor;
  if (image.find("throw") != std::string::npos) throw std::runtime_error("verifier exploded");
  if (image.find("stubborn") != std::string::npos) {
    co_await asio::this_coro::reset_cancellation_state(asio::disable_cancellation());
    asio::steady_timer t(ex, 3s);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  } else if (image.find("stall") != std::string::npos) {
    asio::steady_timer t(ex, 20s);
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      v.outcome = verify::Outcome::denied;
      v.reason = verify::Reason::timeout;
      v.detail = "verification cancelled";
      co_return v;
    }
  } else if (image.find("slow") != std::string::npos) {
    asio::steady_timer t(ex, 300ms);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  } else if (image.find("expire") != std::string::npos) {
    // As the engine does: wait for the registry until the deadline it was given, then say so.
    asio::steady_timer t(ex, deadline);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    // Its answer then takes a few turns to come back (a socket closed, a read aborted, the
    // verdict handed over), as the engine's does.
    for (int i = 0; i < 3; ++i) co_await asio::post(ex, asio::use_awaitable);
    v.outcome = verify::Outcome::denied;
    v.reason = verify::Reason::timeout;
    v.policy = "prod";
    v.detail = "registry r did not answer the manifest request in time";
    co_return v;
  }
  verdict_for(image, v);
  co_return v;
}

void FakeVerifier::verdict_for(const std::string& image, verify::Verdict& v) {
  // Read with sigil's own registry credentials, which the pod does not hold.
  v.withheld = image.find("private") != std::string::npos;
  if (image.find("bad") != std::string::npos) {
    v.outcome = verify::Outcome::denied;
    v.reason = verify::Reason::not_signed;
    v.policy = "prod";
    v.detail = "no signatures found";
  } else if (image.find("warn") != std::string::npos) {
    v.outcome = verify::Outcome::warned;
    v.reason = verify::Reason::warn;
    v.policy = "audit";
    v.detail = "no signatures found";
    v.warnings.push_back(verify::Finding{verify::Reason::not_signed, "audit", "",
                                         "no signatures found; this warning is long on purpose "
                                         "so that it must be shortened before it reaches kubectl",
                                         true});
  } else if (image.find("good") != std::string::npos || image.find("slow") != std::string::npos ||
             image.find("stall") != std::string::npos ||
             image.find("stubborn") != std::string::npos) {
    v.outcome = verify::Outcome::allowed;
    v.reason = verify::Reason::none;
    v.policy = "prod";
  } else {
    v.outcome = verify::Outcome::denied;
    v.reason = verify::Reason::no_matching_policy;
  }
}

std::optional<verify::Verdict> FakeVerifier::now(const std::string& image) {
  // What would need waiting (or throws) is not answered at once; nor is "miss" (not cached).
  for (const char* wait : {"throw", "stubborn", "stall", "slow", "expire", "miss"}) {
    if (image.find(wait) != std::string::npos) return std::nullopt;
  }
  ++now_calls;
  verify::Verdict v;
  v.image = image;
  v.digest = "sha256:" + std::string(64, 'a');
  verdict_for(image, v);
  return v;
}

server::VerifyNow FakeVerifier::now_fn() {
  return [this](const std::string& image, const verify::Context& ctx) {
    {
      std::lock_guard lock(mu);
      last_ns = ctx.namespace_;
    }
    return now(image);
  };
}

server::VerifyImage FakeVerifier::fn() {
  return [this](std::string image, const verify::Context& ctx, Deadline d) {
    {
      std::lock_guard lock(mu);
      last_ns = ctx.namespace_;
    }
    return (*this)(std::move(image), d);
  };
}

namespace {

asio::awaitable<void> client_coro(ssl::context& ctx, uint16_t port, const std::string& method,
                                  const std::string& target, const std::string& body,
                                  const ClientOptions& options, const std::string& source_ip,
                                  ClientReply& out) {
  auto ex = co_await asio::this_coro::executor;
  beast::ssl_stream<beast::tcp_stream> s(ex, ctx);
  auto& lowest = beast::get_lowest_layer(s);
  lowest.expires_after(options.timeout);
  if (!source_ip.empty()) {
    lowest.socket().open(tcp::v4());
    lowest.socket().bind(tcp::endpoint(asio::ip::make_address(source_ip), 0));
  }
  auto [cec] =
      co_await lowest.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                    asio::as_tuple(asio::use_awaitable));
  if (cec) {
    out.error = "connect: " + cec.message();
    co_return;
  }
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s.native_handle()), "127.0.0.1");
  auto [hec] =
      co_await s.async_handshake(ssl::stream_base::client, asio::as_tuple(asio::use_awaitable));
  if (hec) {
    out.error = "handshake: " + hec.message();
    co_return;
  }
  if (X509* peer = SSL_get1_peer_certificate(s.native_handle())) {
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    out.peer_cn = cn;
    X509_free(peer);
  }
  std::string raw =
      method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + options.extra_headers;
  if (method == "POST" || !body.empty())
    raw +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  raw += "\r\n";
  raw += body;
  auto [wec, wn] =
      co_await asio::async_write(s, asio::buffer(raw), asio::as_tuple(asio::use_awaitable));
  (void)wn;
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  auto [rec, rn] = co_await http::async_read(s, buf, parser, asio::as_tuple(asio::use_awaitable));
  (void)rn;
  if (rec) {
    out.error = std::string(wec ? "write: " + wec.message() + "; " : "") + "read: " + rec.message();
    co_return;
  }
  auto& res = parser.get();
  out.ok = true;
  out.status = static_cast<int>(res.result_int());
  out.body = res.body();
  out.allow = std::string(res[http::field::allow]);
  out.content_type = std::string(res[http::field::content_type]);
}

}  // namespace

ClientReply https_request(uint16_t port, const std::string& ca_pem, const std::string& method,
                          const std::string& target, const std::string& body,
                          const ClientOptions& options) {
  return https_request_from("", port, ca_pem, method, target, body, options);
}

ClientReply https_request_from(const std::string& source_ip, uint16_t port,
                               const std::string& ca_pem, const std::string& method,
                               const std::string& target, const std::string& body,
                               const ClientOptions& options) {
  ClientReply out;
  ssl::context ctx(ssl::context::tls_client);
  boost::system::error_code ec;
  ctx.add_certificate_authority(asio::buffer(ca_pem), ec);
  if (ec) throw std::runtime_error("client CA: " + ec.message());
  ctx.set_verify_mode(ssl::verify_peer);
  if (options.max_tls_version) {
    SSL_CTX_set_security_level(ctx.native_handle(), 0);
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_VERSION);
    SSL_CTX_set_cipher_list(ctx.native_handle(), "ALL:@SECLEVEL=0");
    SSL_CTX_set_max_proto_version(ctx.native_handle(), options.max_tls_version);
  }
  asio::io_context ioc;
  const auto start = std::chrono::steady_clock::now();
  asio::co_spawn(ioc, client_coro(ctx, port, method, target, body, options, source_ip, out),
                 [&](std::exception_ptr e) {
                   if (e) out.error = "client exception";
                 });
  ioc.run_for(options.timeout + 2s);
  out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  if (!ioc.stopped()) out.error = "client timed out";
  return out;
}

struct RawTlsClient::Impl {
  Impl(uint16_t p, const std::string& ca_pem, const std::string& src) : port(p), source(src) {
    boost::system::error_code ec;
    ctx.add_certificate_authority(asio::buffer(ca_pem), ec);
    if (ec) throw std::runtime_error("client CA: " + ec.message());
    ctx.set_verify_mode(ssl::verify_peer);
  }
  // Starts one operation (start(handler)), runs it for up to t; cancels it past t.
  template <class Start>
  boost::system::error_code run(Start start, std::chrono::milliseconds t, size_t* n = nullptr) {
    bool done = false;
    boost::system::error_code result = asio::error::timed_out;
    start([&](boost::system::error_code ec, size_t bytes = 0) {
      done = true;
      result = ec;
      if (n) *n = bytes;
    });
    ioc.restart();
    ioc.run_for(t);
    if (!done) {
      boost::system::error_code ignored;
      stream.lowest_layer().cancel(ignored);
      ioc.restart();
      ioc.run_for(2s);
      return asio::error::timed_out;
    }
    return result;
  }

  asio::io_context ioc;
  ssl::context ctx{ssl::context::tls_client};
  ssl::stream<tcp::socket> stream{ioc, ctx};
  uint16_t port;
  std::string source;
  std::string pending;  // received and not yet consumed
};

RawTlsClient::RawTlsClient(uint16_t port, const std::string& ca_pem, const std::string& source_ip)
    : impl_(std::make_unique<Impl>(port, ca_pem, source_ip)) {}
RawTlsClient::~RawTlsClient() = default;

std::string RawTlsClient::connect(std::chrono::milliseconds timeout) {
  auto& s = impl_->stream;
  boost::system::error_code ec;
  s.lowest_layer().open(tcp::v4(), ec);
  if (!ec) s.lowest_layer().bind(tcp::endpoint(asio::ip::make_address(impl_->source), 0), ec);
  if (ec) return "bind: " + ec.message();
  ec = impl_->run(
      [&](auto h) {
        s.lowest_layer().async_connect(
            tcp::endpoint(asio::ip::make_address("127.0.0.1"), impl_->port),
            [h](boost::system::error_code e) mutable { h(e); });
      },
      timeout);
  if (ec) return "connect: " + ec.message();
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s.native_handle()), "127.0.0.1");
  ec = impl_->run(
      [&](auto h) {
        s.async_handshake(ssl::stream_base::client,
                          [h](boost::system::error_code e) mutable { h(e); });
      },
      timeout);
  if (ec) return "handshake: " + ec.message();
  return {};
}

bool RawTlsClient::send(const std::string& bytes, std::chrono::milliseconds timeout) {
  auto ec = impl_->run(
      [&](auto h) {
        asio::async_write(impl_->stream, asio::buffer(bytes),
                          [h](boost::system::error_code e, size_t n) mutable { h(e, n); });
      },
      timeout);
  return !ec;
}

RawTlsClient::Response RawTlsClient::read_response(std::chrono::milliseconds timeout) {
  Response out;
  const auto end = std::chrono::steady_clock::now() + timeout;
  auto& p = impl_->pending;
  std::array<char, 16 * 1024> buf{};
  while (true) {
    const auto head_end = p.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      out.headers = p.substr(0, head_end + 4);
      size_t length = 0;
      std::string lower = out.headers;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (auto cl = lower.find("\r\ncontent-length:"); cl != std::string::npos) {
        length = std::stoul(lower.substr(cl + 17));
      }
      if (p.size() >= head_end + 4 + length) {
        out.body = p.substr(head_end + 4, length);
        p.erase(0, head_end + 4 + length);
        if (out.headers.rfind("HTTP/1.1 ", 0) == 0)
          out.status = std::stoi(out.headers.substr(9, 3));
        out.ok = out.status != 0;
        return out;
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      out.error = "timed out";
      return out;
    }
    size_t n = 0;
    auto ec = impl_->run(
        [&](auto h) {
          impl_->stream.async_read_some(
              asio::buffer(buf), [h](boost::system::error_code e, size_t k) mutable { h(e, k); });
        },
        left, &n);
    p.append(buf.data(), n);
    if (ec) {
      out.error = ec.message();
      if (n == 0 && ec != asio::error::timed_out) {
        // Closed: maybe with a complete response in pending (handled by the next loop turn).
        const auto head_end2 = p.find("\r\n\r\n");
        if (head_end2 == std::string::npos) return out;
        out.headers = p.substr(0, head_end2 + 4);
        out.body = p.substr(head_end2 + 4);
        if (out.headers.rfind("HTTP/1.1 ", 0) == 0)
          out.status = std::stoi(out.headers.substr(9, 3));
        out.ok = out.status != 0;
        p.clear();
        return out;
      }
      if (ec == asio::error::timed_out) return out;
    }
  }
}

bool RawTlsClient::closed_within(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  std::array<char, 16 * 1024> buf{};
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left <= 0ms) return false;
    auto ec = impl_->run(
        [&](auto h) {
          impl_->stream.async_read_some(
              asio::buffer(buf), [h](boost::system::error_code e, size_t k) mutable { h(e, k); });
        },
        left);
    if (ec == asio::error::timed_out) return false;
    if (ec) return true;
  }
}

std::string post_head(const std::string& target, const std::string& content_length) {
  std::string h =
      "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
  h += content_length.empty() ? "Transfer-Encoding: chunked\r\n"
                              : "Content-Length: " + content_length + "\r\n";
  return h + "\r\n";
}

}  // namespace sigil::test
