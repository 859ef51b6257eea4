#include "fake_http.hpp"

#include <openssl/ssl.h>

#include <atomic>
#include <future>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "run_coro.hpp"
#include "tls_pki.hpp"

namespace sigil::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view q) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start < q.size()) {
    size_t end = q.find('&', start);
    if (end == std::string_view::npos) end = q.size();
    auto kv = q.substr(start, end - start);
    if (!kv.empty()) {
      const size_t eq = kv.find('=');
      out[percent_decode(kv.substr(0, eq), true)] =
          eq == std::string_view::npos ? "" : percent_decode(kv.substr(eq + 1), true);
    }
    start = end + 1;
  }
  return out;
}

const char* reason_of(unsigned status) {
  auto r = http::obsolete_reason(static_cast<http::status>(status));
  return r.empty() ? "Status" : r.data();
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string percent_decode(std::string_view s, bool plus_as_space) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (s[i] == '+' && plus_as_space) {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string HttpRequest::header(std::string_view name) const {
  const std::string want = lower(name);
  for (const auto& [k, v] : headers) {
    if (lower(k) == want) return v;
  }
  return {};
}

HttpReply HttpReply::json(unsigned status, std::string body) {
  HttpReply r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = std::move(body);
  return r;
}

HttpReply HttpReply::text(unsigned status, std::string body) {
  HttpReply r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "text/plain");
  r.body = std::move(body);
  return r;
}

const char* fault_name(Fault fault) noexcept {
  switch (fault) {
    case Fault::none:
      return "none";
    case Fault::http_401:
      return "401";
    case Fault::http_404:
      return "404";
    case Fault::http_429:
      return "429";
    case Fault::http_500:
      return "500";
    case Fault::truncated_body:
      return "truncated body";
    case Fault::tls_error:
      return "TLS error";
    case Fault::stall:
      return "stall";
  }
  return "?";
}

asio::awaitable<bool> HttpConn::chunk(std::string_view data) {
  if (data.empty()) co_return true;  // an empty chunk would end the body
  std::ostringstream o;
  o << std::hex << data.size() << "\r\n" << data << "\r\n";
  co_return co_await write(o.str());
}

asio::awaitable<bool> HttpConn::end_chunks() {
  co_return co_await write("0\r\n\r\n");
}

// ---------------------------------------------------------------------------------------------
// The server

struct FakeHttpServer::Impl {
  // Declared first, destroyed last: frames still queued in it own only their session.
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::optional<ssl::context> ctx;
  StreamHandler handler;
  FakeHttpOptions opts;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::atomic<bool> stopped{false};
  std::atomic<int> accepted{0};
  std::atomic<int> handshakes_failed{0};
  std::atomic<int> live{0};

  mutable std::mutex mu;
  std::vector<HttpRequest> seen;
  int request_number = 0;
  Fault fault = Fault::none;
  int fault_at = 0;
  HttpHeaders fault_headers;
  std::string fault_body;
  bool fired = false;

  // Server thread only.
  std::map<int, std::function<void()>> aborters;

  class Session;
  asio::awaitable<void> accept_loop();
  void abort_all() {
    auto copy = aborters;
    for (auto& [n, f] : copy) f();
  }
};

class FakeHttpServer::Impl::Session final : public HttpConn {
 public:
  Session(Impl& server, tcp::socket sock, int number) : server_(server), number_(number) {
    if (server_.ctx) {
      tls_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(
          beast::tcp_stream(std::move(sock)), *server_.ctx);
    } else {
      plain_ = std::make_unique<beast::tcp_stream>(std::move(sock));
    }
  }

  beast::tcp_stream& lowest() { return tls_ ? tls_->next_layer() : *plain_; }

  asio::awaitable<bool> write(std::string_view bytes) override {
    if (aborted_) co_return false;
    lowest().expires_after(10s);
    boost::system::error_code ec;
    if (tls_) {
      auto [e, n] = co_await asio::async_write(*tls_, asio::buffer(bytes), use_tuple);
      (void)n;
      ec = e;
    } else {
      auto [e, n] = co_await asio::async_write(*plain_, asio::buffer(bytes), use_tuple);
      (void)n;
      ec = e;
    }
    co_return !ec;
  }

  asio::awaitable<bool> reply(const HttpReply& r) override {
    if (r.delay.count() > 0) co_await sleep(r.delay);
    if (r.stall) {
      co_await sleep(server_.opts.stall_for);
      abort();
      co_return false;
    }
    if (r.truncate) {
      std::string head =
          "HTTP/1.1 " + std::to_string(r.status) + " " + reason_of(r.status) + "\r\n";
      for (const auto& [k, v] : r.headers) head += k + ": " + v + "\r\n";
      head += "Content-Length: " + std::to_string(r.body.size()) + "\r\n\r\n";
      if (method_ != "HEAD") head += r.body.substr(0, r.body.size() / 2);
      co_await write(head);
      abort();
      co_return false;
    }
    http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
    for (const auto& [k, v] : r.headers) res.set(k, v);
    res.keep_alive(keep_alive_ && !r.close);
    res.body() = r.body;
    if (r.chunked) {
      res.chunked(true);
    } else {
      res.prepare_payload();
      if (method_ == "HEAD") res.content_length(r.body.size());
    }
    lowest().expires_after(10s);
    boost::system::error_code ec;
    if (method_ == "HEAD") {
      http::response_serializer<http::string_body> sr(res);
      sr.split(true);
      if (tls_) {
        auto [e, n] = co_await http::async_write_header(*tls_, sr, use_tuple);
        (void)n;
        ec = e;
      } else {
        auto [e, n] = co_await http::async_write_header(*plain_, sr, use_tuple);
        (void)n;
        ec = e;
      }
    } else if (tls_) {
      auto [e, n] = co_await http::async_write(*tls_, res, use_tuple);
      (void)n;
      ec = e;
    } else {
      auto [e, n] = co_await http::async_write(*plain_, res, use_tuple);
      (void)n;
      ec = e;
    }
    co_return !ec && res.keep_alive();
  }

  asio::awaitable<void> sleep(std::chrono::milliseconds d) override {
    const auto end = std::chrono::steady_clock::now() + d;
    asio::steady_timer t(server_.ioc);
    while (!server_.stopping && !aborted_ && std::chrono::steady_clock::now() < end) {
      t.expires_after(std::min<std::chrono::steady_clock::duration>(
          10ms, end - std::chrono::steady_clock::now()));
      co_await t.async_wait(use_tuple);
    }
  }

  void abort() override {
    if (aborted_) return;
    aborted_ = true;
    boost::system::error_code ignored;
    auto& sock = lowest().socket();
    sock.shutdown(tcp::socket::shutdown_both, ignored);
    sock.close(ignored);
  }

  bool stopping() const override { return server_.stopping || aborted_; }

  static asio::awaitable<void> run(std::shared_ptr<Session> self) {
    Impl& srv = self->server_;
    srv.aborters[self->number_] = [weak = std::weak_ptr<Session>(self)] {
      if (auto s = weak.lock()) s->abort();
    };
    ++srv.live;
    co_await self->serve();
    srv.aborters.erase(self->number_);
    self->abort();
    --srv.live;
  }

 private:
  bool tls_fault_here() {
    std::lock_guard lock(server_.mu);
    if (server_.fault != Fault::tls_error || server_.fault_at != number_ || server_.fired) {
      return false;
    }
    server_.fired = true;
    return true;
  }

  // The fault planned for request `n`, if any (claimed: it fires once).
  std::optional<HttpReply> fault_for(int n) {
    Fault f;
    HttpHeaders extra;
    std::string body;
    {
      std::lock_guard lock(server_.mu);
      if (server_.fired || server_.fault_at != n || server_.fault == Fault::none ||
          server_.fault == Fault::tls_error) {
        return std::nullopt;
      }
      server_.fired = true;
      f = server_.fault;
      extra = server_.fault_headers;
      body = server_.fault_body;
    }
    HttpReply r;
    switch (f) {
      case Fault::http_401:
        r = HttpReply::json(401, R"({"errors":[{"code":"UNAUTHORIZED"}]})");
        break;
      case Fault::http_404:
        r = HttpReply::json(404, R"({"errors":[{"code":"MANIFEST_UNKNOWN"}]})");
        break;
      case Fault::http_429:
        r = HttpReply::json(429, R"({"errors":[{"code":"TOOMANYREQUESTS"}]})");
        if (extra.empty()) r.headers.emplace_back("Retry-After", "0");
        break;
      case Fault::http_500:
        r = HttpReply::text(500, "injected failure");
        break;
      case Fault::truncated_body:
        r.truncate = true;  // the handler's own answer is cut (see serve())
        break;
      case Fault::stall:
        r.stall = true;
        break;
      default:
        return std::nullopt;
    }
    for (auto& h : extra) r.headers.push_back(std::move(h));
    if (!body.empty()) r.body = std::move(body);
    return r;
  }

  asio::awaitable<void> serve() {
    boost::system::error_code ignored;
    lowest().socket().set_option(tcp::no_delay(true), ignored);  // as Go servers do
    if (server_.opts.hang && server_.opts.hang->load()) {
      co_await sleep(server_.opts.stall_for);
      abort();
      co_return;
    }
    if (tls_fault_here()) {
      if (tls_) co_await write("HTTP/1.1 400 this is not TLS\r\n\r\n");
      abort();
      co_return;
    }
    if (tls_) {
      lowest().expires_after(5s);
      auto [hec] = co_await tls_->async_handshake(ssl::stream_base::server, use_tuple);
      if (hec) {
        ++server_.handshakes_failed;
        co_return;
      }
      const char* sni = SSL_get_servername(tls_->native_handle(), TLSEXT_NAMETYPE_host_name);
      if (sni != nullptr) sni_ = sni;
    }
    beast::flat_buffer buf;
    for (;;) {
      http::request_parser<http::string_body> p;
      p.body_limit(16u << 20);
      p.header_limit(64u << 10);
      lowest().expires_never();
      boost::system::error_code ec;
      if (tls_) {
        auto [e, n] = co_await http::async_read(*tls_, buf, p, use_tuple);
        (void)n;
        ec = e;
      } else {
        auto [e, n] = co_await http::async_read(*plain_, buf, p, use_tuple);
        (void)n;
        ec = e;
      }
      if (ec || server_.stopping) co_return;
      auto& m = p.get();
      HttpRequest req;
      req.connection = number_;
      req.sni = sni_;
      req.method = std::string(m.method_string());
      req.target = std::string(m.target());
      const size_t q = req.target.find('?');
      req.path = req.target.substr(0, q);
      if (q != std::string::npos)
        req.query = parse_query(std::string_view(req.target).substr(q + 1));
      for (const auto& f : m)
        req.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      req.body = m.body();
      req.keep_alive = m.keep_alive();
      {
        std::lock_guard lock(server_.mu);
        req.number = ++server_.request_number;
        server_.seen.push_back(req);
      }
      method_ = req.method;
      keep_alive_ = req.keep_alive;
      bool keep = false;
      if (auto f = fault_for(req.number)) {
        if (f->truncate) {
          // Cut the handler's own answer: record what it writes, then send half of it.
          keep = co_await truncate_handler_answer(req);
        } else {
          keep = co_await reply(*f);
        }
      } else {
        keep = co_await server_.handler(req, *this);
      }
      if (!keep || !req.keep_alive || server_.stopping) {
        // A graceful end: what was written is delivered, then FIN.
        lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
      }
    }
  }

  // Runs the handler against a recording connection and sends the first half of the body it
  // produced with the whole Content-Length.
  asio::awaitable<bool> truncate_handler_answer(const HttpRequest& req);

  Impl& server_;
  int number_;
  std::unique_ptr<beast::tcp_stream> plain_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls_;
  std::string method_;
  std::string sni_;
  bool keep_alive_ = true;
  bool aborted_ = false;
};

namespace {

// Captures an answer instead of sending it.
class Recorder final : public HttpConn {
 public:
  explicit Recorder(HttpConn& real) : real_(real) {}
  asio::awaitable<bool> write(std::string_view bytes) override {
    raw_ += bytes;
    co_return true;
  }
  asio::awaitable<bool> reply(const HttpReply& r) override {
    reply_ = r;
    co_return true;
  }
  asio::awaitable<void> sleep(std::chrono::milliseconds d) override { co_await real_.sleep(d); }
  void abort() override {}
  bool stopping() const override { return real_.stopping(); }
  std::optional<HttpReply> reply_;
  std::string raw_;

 private:
  HttpConn& real_;
};

}  // namespace

asio::awaitable<bool> FakeHttpServer::Impl::Session::truncate_handler_answer(
    const HttpRequest& req) {
  Recorder rec(*this);
  co_await server_.handler(req, rec);
  HttpReply r;
  if (rec.reply_) {
    r = *rec.reply_;
  } else {
    r.body = rec.raw_;  // a raw answer: cut it as a whole
  }
  r.truncate = true;
  r.chunked = false;
  r.stall = false;
  co_return co_await reply(r);
}

asio::awaitable<void> FakeHttpServer::Impl::accept_loop() {
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(use_tuple);
    if (ec || stopping) co_return;
    const int n = ++accepted;
    auto s = std::make_shared<Session>(*this, std::move(sock), n);
    asio::co_spawn(ioc, Session::run(s), asio::detached);
  }
}

// ---------------------------------------------------------------------------------------------

namespace {

StreamHandler adapt(Handler h) {
  return [h = std::move(h)](const HttpRequest& req, HttpConn& conn) -> asio::awaitable<bool> {
    HttpReply r = h(req);
    co_return co_await conn.reply(r);
  };
}

}  // namespace

FakeHttpServer::FakeHttpServer(Handler handler, FakeHttpOptions options)
    : FakeHttpServer(adapt(std::move(handler)), std::move(options)) {}

FakeHttpServer::FakeHttpServer(StreamHandler handler, FakeHttpOptions options)
    : impl_(std::make_shared<Impl>()) {
  impl_->handler = std::move(handler);
  impl_->opts = std::move(options);
  if (impl_->opts.tls) {
    const FakeTls& p = tls_pki();
    impl_->ctx.emplace(ssl::context::tls_server);
    auto& ctx = *impl_->ctx;
    const std::string cert =
        impl_->opts.cert_pem.empty() ? p.server_cert_pem : impl_->opts.cert_pem;
    const std::string key = impl_->opts.key_pem.empty() ? p.server_key_pem : impl_->opts.key_pem;
    ctx.use_certificate_chain(asio::buffer(cert));
    ctx.use_private_key(asio::buffer(key), ssl::context::pem);
    if (impl_->opts.require_client_cert) {
      ctx.add_certificate_authority(asio::buffer(p.ca_pem));
      ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    }
  }
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([i = impl_.get()] { i->ioc.run(); });
}

FakeHttpServer::~FakeHttpServer() {
  stop();
}

void FakeHttpServer::stop() {
  if (impl_->stopped.exchange(true)) return;
  impl_->stopping = true;
  std::promise<void> done;
  asio::post(impl_->ioc, [i = impl_.get(), &done] {
    boost::system::error_code ignored;
    i->acceptor.close(ignored);
    i->abort_all();
    done.set_value();
  });
  done.get_future().wait();
  // Sessions notice within a few milliseconds (every wait is sliced); then the loop runs out
  // of work and the thread ends on its own.
  eventually([&] { return impl_->live.load() == 0; }, 2000ms);
  impl_->ioc.stop();
  impl_->thread.join();
}

void FakeHttpServer::drop_connections() {
  std::promise<void> done;
  asio::post(impl_->ioc, [i = impl_.get(), &done] {
    i->abort_all();
    done.set_value();
  });
  done.get_future().wait();
}

uint16_t FakeHttpServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}

std::string FakeHttpServer::authority() const {
  return "127.0.0.1:" + std::to_string(port());
}

std::string FakeHttpServer::origin() const {
  return std::string(impl_->opts.tls ? "https" : "http") + "://" + authority();
}

std::string FakeHttpServer::url(std::string_view target) const {
  return origin() + std::string(target);
}

void FakeHttpServer::fail_nth(Fault fault, int n, HttpHeaders headers, std::string body) {
  std::lock_guard lock(impl_->mu);
  impl_->fault = fault;
  impl_->fault_at = n;
  impl_->fault_headers = std::move(headers);
  impl_->fault_body = std::move(body);
  impl_->fired = false;
}

bool FakeHttpServer::fault_fired() const {
  std::lock_guard lock(impl_->mu);
  return impl_->fired;
}

std::vector<HttpRequest> FakeHttpServer::seen() const {
  std::lock_guard lock(impl_->mu);
  return impl_->seen;
}

int FakeHttpServer::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->request_number;
}

int FakeHttpServer::connections() const {
  return impl_->accepted.load();
}

int FakeHttpServer::failed_handshakes() const {
  return impl_->handshakes_failed.load();
}

// ---------------------------------------------------------------------------------------------
// TLS material

namespace {

void take(const TlsIdentity& id, std::string& cert_pem, std::string& key_pem) {
  cert_pem = id.cert_pem();
  key_pem = id.key_pem();
}

std::string ip4(unsigned char a, unsigned char b, unsigned char c, unsigned char d) {
  return std::string{static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                     static_cast<char>(d)};
}

CertSpec server_spec(const std::string& cn, std::vector<SanEntry> sans) {
  CertSpec s = TlsPki::leaf_spec(cn, "serverAuth");
  s.sans = std::move(sans);
  s.san_critical = false;
  return s;
}

FakeTls make_tls_pki() {
  const TlsPki ca = TlsPki::create("sigil test CA");
  FakeTls p;
  p.ca_pem = ca.ca_pem();
  p.ca_key_pem = ca.ca_key().private_pem();
  take(ca.server("localhost"), p.server_cert_pem, p.server_key_pem);
  take(ca.issue(server_spec("other.example", {SanEntry::dns("other.example")})),
       p.other_name_cert_pem, p.other_name_key_pem);
  take(ca.issue(server_spec("127.0.0.2", {SanEntry::ip(ip4(127, 0, 0, 2))})), p.other_ip_cert_pem,
       p.other_ip_key_pem);
  CertSpec expired =
      server_spec("localhost", {SanEntry::ip(ip4(127, 0, 0, 1)), SanEntry::dns("localhost")});
  const auto now = std::chrono::system_clock::now();
  expired.not_before = now - std::chrono::hours(48);
  expired.not_after = now - std::chrono::hours(24);
  take(ca.issue(expired), p.expired_cert_pem, p.expired_key_pem);
  take(ca.client("sigil-test-client"), p.client_cert_pem, p.client_key_pem);
  p.other_ca_pem = TlsPki::create("some other CA").ca_pem();
  static const TempDir dir;
  p.ca_file = dir.file("ca.pem", p.ca_pem);
  return p;
}

}  // namespace

const FakeTls& tls_pki() {
  static const FakeTls p = make_tls_pki();
  return p;
}

}  // namespace sigil::test
