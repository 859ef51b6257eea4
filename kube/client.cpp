#include "kube/client.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace sigil::kube {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using SteadyClock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Cancel

struct Cancel::State {
  std::mutex mu;
  bool cancelled = false;
  uint64_t next = 1;
  std::map<uint64_t, std::function<void()>> fns;
};

Cancel::Cancel() : s_(std::make_shared<State>()) {}

void Cancel::cancel() const {
  std::map<uint64_t, std::function<void()>> fns;
  {
    std::lock_guard lock(s_->mu);
    if (s_->cancelled) return;
    s_->cancelled = true;
    fns.swap(s_->fns);
  }
  for (auto& [id, fn] : fns) {
    if (fn) fn();
  }
}

bool Cancel::cancelled() const {
  std::lock_guard lock(s_->mu);
  return s_->cancelled;
}

uint64_t Cancel::subscribe(std::function<void()> fn) const {
  {
    std::lock_guard lock(s_->mu);
    if (!s_->cancelled) {
      const uint64_t id = s_->next++;
      s_->fns.emplace(id, std::move(fn));
      return id;
    }
  }
  if (fn) fn();
  return 0;
}

void Cancel::unsubscribe(uint64_t id) const {
  if (id == 0) return;
  std::lock_guard lock(s_->mu);
  s_->fns.erase(id);
}

// ---------------------------------------------------------------------------------------------

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr size_t kErrorBodyLimit = 64 * 1024;
constexpr uint32_t kHeaderLimit = 64 * 1024;
constexpr size_t kReadChunk = 16 * 1024;

using Stream = beast::ssl_stream<beast::tcp_stream>;

struct Conn {
  Conn(const asio::any_io_executor& ex, ssl::context& ctx) : stream(ex, ctx), resolver(ex) {}
  Stream stream;
  tcp::resolver resolver;
  beast::flat_buffer buffer;
  bool closed = false;  // closed by a Cancel; never reused
  beast::tcp_stream& low() { return stream.next_layer(); }
  // Strand only.
  void close() {
    closed = true;
    resolver.cancel();
    low().close();
  }
};

// While alive, a Cancel closes `conn` (on the strand). Constructed and destroyed on the strand.
class CancelHook {
 public:
  CancelHook(const Cancel& cancel, const asio::any_io_executor& strand,
             const std::shared_ptr<Conn>& conn)
      : cancel_(cancel), active_(std::make_shared<std::atomic<bool>>(true)) {
    std::weak_ptr<Conn> weak = conn;
    auto active = active_;
    id_ = cancel_.subscribe([strand, weak, active] {
      asio::post(strand, [weak, active] {
        if (!active->load()) return;
        if (auto c = weak.lock()) c->close();
      });
    });
  }
  ~CancelHook() {
    active_->store(false);
    cancel_.unsubscribe(id_);
  }
  CancelHook(const CancelHook&) = delete;
  CancelHook& operator=(const CancelHook&) = delete;

 private:
  Cancel cancel_;
  std::shared_ptr<std::atomic<bool>> active_;
  uint64_t id_ = 0;
};

struct Resp {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

Error timeout_error(const std::string& what) {
  return make_error(Errc::timeout, what + ": deadline exceeded");
}
Error cancelled_error(const std::string& what) {
  return make_error(Errc::unavailable, what + ": cancelled");
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

Errc errc_for_status(unsigned s) {
  if (s == 401 || s == 403) return Errc::unauthorized;
  if (s == 404) return Errc::not_found;
  if (s == 400 || s == 422) return Errc::invalid_argument;
  if (s == 413) return Errc::too_large;
  if (s == 504) return Errc::timeout;
  return Errc::unavailable;
}

// "GET /api/v1/...: HTTP 403 (Forbidden: secrets \"x\" is forbidden: ...)".
Error api_error(const std::string& what, const Resp& r) {
  std::string detail;
  auto st = parse_status(r.body);
  if (st) {
    detail = st->describe();
  } else if (!r.body.empty() && r.content_type.rfind("text/", 0) == 0) {
    detail = sanitize_text(r.body, 200);
  }
  std::string msg = what + ": HTTP " + std::to_string(r.status);
  if (!detail.empty()) msg += " (" + detail + ")";
  return make_error(errc_for_status(r.status), std::move(msg));
}

// Runs body on the client's strand (connections, the pool and the token are touched only
// there), turning any exception into Errc::internal. Pass the body as a named lambda: GCC 12
// destroys a temporary coroutine lambda in a co_await expression twice.
template <class T, class F>
awaitable<Result<T>> guarded(const asio::any_io_executor& strand, F&& body) {
  try {
    auto wrapped = [&]() -> awaitable<std::optional<Result<T>>> { co_return co_await body(); };
    // Not connected to the caller's cancellation slot, as in the registry client: Boost
    // 1.81's co_spawn forwards a cancellation across executors through a pointer that
    // dangles once the child finished. Calls stop at their deadline or the client's Cancel.
    auto r = co_await asio::co_spawn(
        strand, wrapped(),
        asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable));
    if (!r) co_return make_error(Errc::internal, "kube client: no result");
    co_return std::move(*r);
  } catch (const std::exception& e) {
    co_return make_error(Errc::internal, std::string("kube client: ") + e.what());
  }
}

bool transport_closed(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == ssl::error::stream_truncated;
}

std::string list_query(const ListOptions& o) {
  std::string q;
  auto add = [&](const char* k, const std::string& v) {
    if (v.empty()) return;
    q += (q.empty() ? "?" : "&");
    q += k;
    q += "=";
    q += query_escape(v);
  };
  if (o.limit > 0) add("limit", std::to_string(o.limit));
  add("continue", o.continue_token);
  add("labelSelector", o.label_selector);
  add("fieldSelector", o.field_selector);
  return q;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Client::Impl

struct Client::Impl : std::enable_shared_from_this<Client::Impl> {
  asio::any_io_executor base;  // the executor the client was given
  asio::any_io_executor ex;    // a strand of it: every connection is touched only here
  ClusterConfig cfg;
  ClientOptions opts;
  Status init;
  ssl::context ctx{ssl::context::tls_client};
  std::string host_header;
  std::string verify_name;  // DNS name or IP checked in the server certificate
  bool verify_ip = false;

  // Strand only.
  std::vector<std::shared_ptr<Conn>> idle;
  std::string token;
  SteadyClock::time_point token_read_at;

  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> token_reads{0};

  Status setup() {
    if (cfg.host.empty())
      return make_error(Errc::invalid_argument, "kube client: no API server host");
    SSL_CTX* c = ctx.native_handle();
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1) {
      ERR_clear_error();
      return make_error(Errc::internal, "kube client: cannot require TLS 1.2");
    }
    boost::system::error_code ec;
    if (cfg.insecure_skip_tls_verify) {
      spdlog::warn("kube: TLS verification of the API server {} is DISABLED ({})", cfg.host,
                   cfg.source);
      ctx.set_verify_mode(ssl::verify_none, ec);
    } else {
      if (cfg.ca_pem.empty()) {
        ctx.set_default_verify_paths(ec);
        if (ec) {
          ERR_clear_error();
          return make_error(Errc::internal, "kube client: cannot load the system CA certificates");
        }
      } else {
        ctx.add_certificate_authority(asio::buffer(cfg.ca_pem), ec);
        if (ec) {
          ERR_clear_error();
          return make_error(Errc::invalid_argument,
                            "kube client (" + cfg.source +
                                "): the cluster CA is not a valid PEM certificate bundle");
        }
      }
      ctx.set_verify_mode(ssl::verify_peer, ec);
    }
    if (!cfg.client_cert_pem.empty() || !cfg.client_key_pem.empty()) {
      ctx.use_certificate_chain(asio::buffer(cfg.client_cert_pem), ec);
      if (ec) {
        ERR_clear_error();
        return make_error(Errc::invalid_argument, "kube client (" + cfg.source +
                                                      "): the client certificate does not parse");
      }
      ctx.use_private_key(asio::buffer(cfg.client_key_pem), ssl::context::pem, ec);
      if (ec || SSL_CTX_check_private_key(c) != 1) {
        ERR_clear_error();
        return make_error(Errc::invalid_argument,
                          "kube client (" + cfg.source +
                              "): the client key does not parse or does not match the certificate");
      }
    }
    ERR_clear_error();
    const bool v6 = cfg.host.find(':') != std::string::npos;
    host_header = (v6 ? "[" + cfg.host + "]" : cfg.host);
    if (cfg.port != "443") host_header += ":" + cfg.port;
    verify_name = cfg.tls_server_name.empty() ? cfg.host : cfg.tls_server_name;
    verify_ip = cfg.tls_server_name.empty() && is_ip_literal(cfg.host);
    token = cfg.token;
    token_read_at = SteadyClock::now();
    if (opts.max_idle > 64) opts.max_idle = 64;
    return {};
  }

  // ---- token (strand only) ----

  // Reads the token file; true when the token changed. On failure the old token stays.
  bool reload_token() {
    if (cfg.token_file.empty()) return false;
    token_read_at = SteadyClock::now();
    token_reads.fetch_add(1, std::memory_order_relaxed);
    auto t = read_token_file(cfg.token_file);
    if (!t) {
      spdlog::warn("kube: cannot re-read the API token: {} (keeping the previous one)",
                   t.error().message);
      return false;
    }
    if (*t == token) return false;
    token = std::move(*t);
    return true;
  }

  const std::string& current_token() {
    if (!cfg.token_file.empty() && SteadyClock::now() - token_read_at >= opts.token_reload) {
      reload_token();
    }
    return token;
  }

  // ---- connections (strand only) ----

  void put_idle(std::shared_ptr<Conn> c) {
    if (c->closed) return;
    // Disarm the deadline before the connection rests in the pool (see registry/http_client).
    c->low().expires_never();
    if (idle.size() < opts.max_idle) idle.push_back(std::move(c));
  }

  std::shared_ptr<Conn> take_idle() {
    if (idle.empty()) return nullptr;
    auto c = std::move(idle.back());
    idle.pop_back();
    return c;
  }

  awaitable<Status> connect(Conn& conn, Deadline deadline, const std::string& what) {
    const std::string where = cfg.host + ":" + cfg.port;
    // Resolve, bounded by a timer that cancels the resolver.
    asio::steady_timer timer(ex);
    timer.expires_at(deadline);
    bool timed_out = false;
    timer.async_wait([&conn, &timed_out](boost::system::error_code ec) {
      if (!ec) {
        timed_out = true;
        conn.resolver.cancel();
      }
    });
    auto [rec, results] = co_await conn.resolver.async_resolve(cfg.host, cfg.port, use_tuple);
    timer.cancel();
    if (conn.closed) co_return cancelled_error(what);
    if (timed_out) co_return timeout_error(what + ": resolving " + cfg.host);
    if (rec) {
      co_return make_error(Errc::unavailable, what + ": cannot resolve API server host " +
                                                  cfg.host + ": " + rec.message());
    }
    conn.low().expires_at(deadline);
    auto [cec, ep] = co_await conn.low().async_connect(results, use_tuple);
    (void)ep;
    if (conn.closed) co_return cancelled_error(what);
    if (cec) {
      if (cec == beast::error::timeout) co_return timeout_error(what + ": connecting to " + where);
      co_return make_error(Errc::unavailable,
                           what + ": cannot connect to API server " + where + ": " + cec.message());
    }
    SSL* s = conn.stream.native_handle();
    bool ok;
    if (verify_ip) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), verify_name.c_str()) == 1;
    } else {
      ok = SSL_set_tlsext_host_name(s, verify_name.c_str()) == 1 &&
           SSL_set1_host(s, verify_name.c_str()) == 1;
    }
    if (!ok) {
      ERR_clear_error();
      co_return make_error(Errc::internal,
                           what + ": cannot set TLS verification for " + verify_name);
    }
    conn.low().expires_at(deadline);
    auto [hec] = co_await conn.stream.async_handshake(ssl::stream_base::client, use_tuple);
    if (conn.closed) co_return cancelled_error(what);
    if (hec) {
      if (hec == beast::error::timeout)
        co_return timeout_error(what + ": TLS handshake with " + where);
      std::string why = hec.message();
      const long vr = SSL_get_verify_result(s);
      if (vr != X509_V_OK) {
        why = std::string("certificate verification failed: ") + X509_verify_cert_error_string(vr);
      }
      ERR_clear_error();
      co_return make_error(Errc::unavailable,
                           what + ": TLS handshake with API server " + where + " failed: " + why);
    }
    co_return Status{};
  }

  http::request<http::string_body> make_request(http::verb method, const std::string& target,
                                                const std::string& body,
                                                const std::string& content_type) {
    http::request<http::string_body> m{method, cfg.base_path + target, 11};
    m.set(http::field::host, host_header);
    m.set(http::field::user_agent, opts.user_agent);
    m.set(http::field::accept, "application/json");
    const std::string& tok = current_token();
    if (!tok.empty()) m.set(http::field::authorization, "Bearer " + tok);
    if (!content_type.empty()) m.set(http::field::content_type, content_type);
    m.body() = body;
    m.keep_alive(true);
    m.prepare_payload();
    return m;
  }

  // Sends `m` on a pooled or new connection and reads the response header into `parser`.
  // A reused connection that turns out closed by the server is replaced once.
  template <class Parser>
  awaitable<Result<std::shared_ptr<Conn>>> send(http::request<http::string_body>& m,
                                                Parser& parser_slot, Deadline deadline,
                                                const Cancel& cancel, const std::string& what,
                                                std::optional<CancelHook>& hook) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (cancel.cancelled()) co_return cancelled_error(what);
      if (SteadyClock::now() >= deadline) co_return timeout_error(what);
      auto conn = take_idle();
      const bool reused = conn != nullptr;
      if (!conn) conn = std::make_shared<Conn>(ex, ctx);
      hook.reset();
      hook.emplace(cancel, ex, conn);
      if (!reused) {
        auto st = co_await connect(*conn, deadline, what);
        if (!st) co_return st.error();
      }
      requests.fetch_add(1, std::memory_order_relaxed);
      conn->low().expires_at(deadline);
      auto [wec, wn] = co_await http::async_write(conn->stream, m, use_tuple);
      (void)wn;
      if (conn->closed) co_return cancelled_error(what);
      if (wec) {
        if (wec == beast::error::timeout) co_return timeout_error(what + ": sending");
        if (reused) continue;
        co_return make_error(Errc::unavailable, what + ": sending failed: " + wec.message());
      }
      parser_slot.emplace();
      auto& p = *parser_slot;
      p.header_limit(kHeaderLimit);
      conn->low().expires_at(deadline);
      auto [hec, hn] = co_await http::async_read_header(conn->stream, conn->buffer, p, use_tuple);
      (void)hn;
      if (conn->closed) co_return cancelled_error(what);
      if (hec) {
        if (hec == beast::error::timeout)
          co_return timeout_error(what + ": waiting for the answer");
        if (reused && transport_closed(hec)) {
          conn->buffer.clear();
          continue;
        }
        co_return make_error(Errc::unavailable,
                             what + ": reading the answer failed: " + hec.message());
      }
      co_return conn;
    }
    co_return make_error(Errc::unavailable, what + ": the API server closed the connection");
  }

  // One request and its whole response (body capped at limit for 2xx, 64 KiB otherwise).
  awaitable<Result<Resp>> round_trip(http::verb method, const std::string& target,
                                     const std::string& body, const std::string& content_type,
                                     size_t limit, Deadline deadline, const Cancel& cancel,
                                     const std::string& what) {
    auto m = make_request(method, target, body, content_type);
    std::optional<http::response_parser<http::string_body>> parser;
    std::optional<CancelHook> hook;
    auto c = co_await send(m, parser, deadline, cancel, what, hook);
    if (!c) co_return c.error();
    auto conn = std::move(*c);
    auto& p = *parser;
    Resp r;
    r.status = p.get().result_int();
    r.content_type = std::string(p.get()[http::field::content_type]);
    const bool success = r.status >= 200 && r.status < 300;
    const uint64_t cap = success ? limit : kErrorBodyLimit;
    auto cl = p.content_length();
    if (cl && *cl > cap) {
      if (success) {
        co_return make_error(Errc::too_large, what + ": answer of " + std::to_string(*cl) +
                                                  " bytes exceeds the " + std::to_string(cap) +
                                                  " byte limit");
      }
      co_return r;  // an oversized error body is not read; the connection is dropped
    }
    p.body_limit(cap);
    conn->low().expires_at(deadline);
    auto [bec, bn] = co_await http::async_read(conn->stream, conn->buffer, p, use_tuple);
    (void)bn;
    if (conn->closed) co_return cancelled_error(what);
    if (bec) {
      if (bec == beast::error::timeout) co_return timeout_error(what + ": reading the answer");
      if (bec == http::error::body_limit) {
        if (!success) co_return r;
        co_return make_error(Errc::too_large,
                             what + ": answer exceeds the " + std::to_string(cap) + " byte limit");
      }
      co_return make_error(Errc::unavailable,
                           what + ": reading the answer failed: " + bec.message());
    }
    r.body = std::move(p.get().body());
    if (p.get().keep_alive()) {
      hook.reset();
      put_idle(std::move(conn));
    }
    co_return r;
  }

  // round_trip, with the token re-read and the request sent once more after a 401.
  awaitable<Result<Resp>> request(http::verb method, const std::string& target,
                                  const std::string& body, const std::string& content_type,
                                  size_t limit, Deadline deadline, const Cancel& cancel) {
    if (!init) co_return init.error();
    const std::string what = std::string(http::to_string(method)) + " " + target;
    for (int attempt = 0;; ++attempt) {
      auto r =
          co_await round_trip(method, target, body, content_type, limit, deadline, cancel, what);
      if (!r) co_return r;
      if (r->status == 401 && attempt == 0 && reload_token()) {
        spdlog::info("kube: API server answered 401; retrying with the rotated token");
        continue;
      }
      co_return r;
    }
  }

  // One LIST page; status is the HTTP status (0 when none arrived).
  awaitable<Result<ObjectList>> list_page(const std::string& path, const ListOptions& o,
                                          Deadline deadline, const Cancel& cancel,
                                          unsigned& status) {
    const std::string target = path + list_query(o);
    auto r = co_await request(http::verb::get, target, {}, {}, opts.max_response, deadline, cancel);
    if (!r) co_return r.error();
    status = r->status;
    if (r->status != 200) co_return api_error("LIST " + path, *r);
    auto l = parse_object_list(r->body);
    if (!l) co_return make_error(l.error().code, "LIST " + path + ": " + l.error().message);
    co_return std::move(*l);
  }

  awaitable<Result<std::unique_ptr<WatchStream>>> open_watch(const std::string& target,
                                                             const WatchOptions& wo,
                                                             Deadline deadline,
                                                             const Cancel& cancel,
                                                             const std::string& what);
};

// ---------------------------------------------------------------------------------------------
// WatchStream

struct WatchStream::Impl {
  std::shared_ptr<Client::Impl> client;
  std::shared_ptr<Conn> conn;
  std::optional<http::response_parser<http::buffer_body>> parser;
  std::optional<CancelHook> hook;
  EventStreamParser events;
  Deadline deadline{};
  Cancel cancel;
  std::string what;
  std::optional<WatchEvent> synthesized;  // an HTTP 410 turned into an ERROR event
  std::optional<Error> pending_error;     // an error seen after events that were returned
  std::optional<Error> failed;            // once failed, every later next() says so
  bool done = false;
  std::array<char, kReadChunk> buf{};

  explicit Impl(size_t max_event) : events(max_event) {}

  ~Impl() {
    hook.reset();  // thread-safe: an atomic flag and the Cancel's mutex
    // Release the connection on the strand: its timer and socket belong there.
    if (conn && client) {
      asio::post(client->ex, [c = std::move(conn)] {
        c->low().expires_never();
        c->close();
      });
    }
  }

  Result<std::vector<WatchEvent>> fail(Error e) {
    done = true;
    failed = e;
    if (conn) conn->close();
    return e;
  }

  // Strand only.
  awaitable<Result<std::vector<WatchEvent>>> read_events() {
    std::vector<WatchEvent> none;
    if (synthesized) {
      std::vector<WatchEvent> out;
      out.push_back(std::move(*synthesized));
      synthesized.reset();
      done = true;
      co_return out;
    }
    if (pending_error) {
      Error e = std::move(*pending_error);
      pending_error.reset();
      co_return fail(std::move(e));
    }
    if (failed) co_return *failed;
    if (done) co_return none;
    for (;;) {
      if (cancel.cancelled() || conn->closed) co_return fail(cancelled_error(what));
      auto& p = *parser;
      if (p.is_done()) {
        done = true;
        auto fin = events.finish();
        if (!fin) co_return fail(make_error(Errc::unavailable, what + ": " + fin.error().message));
        conn->close();
        co_return std::move(*fin);
      }
      p.get().body().data = buf.data();
      p.get().body().size = buf.size();
      conn->low().expires_at(deadline);
      auto [ec, n] = co_await http::async_read_some(conn->stream, conn->buffer, p, use_tuple);
      (void)n;
      if (ec == http::error::need_buffer) ec = {};
      const size_t got = buf.size() - p.get().body().size;
      std::optional<Error> err;
      if (conn->closed || cancel.cancelled()) {
        err = cancelled_error(what);
      } else if (ec == beast::error::timeout) {
        err = timeout_error(what + ": no end of the watch by its deadline");
      } else if (ec) {
        const bool mid = events.mid_event() || got > 0;
        err =
            make_error(Errc::unavailable, what + ": watch stream dropped" +
                                              std::string(mid ? " in the middle of an event" : "") +
                                              ": " + ec.message());
      }
      if (got > 0) {
        auto evs = events.feed(std::string_view(buf.data(), got));
        if (!evs) co_return fail(make_error(evs.error().code, what + ": " + evs.error().message));
        if (!evs->empty()) {
          // Events that arrived with the error are delivered first; the error comes next call.
          if (err) pending_error = std::move(*err);
          co_return std::move(*evs);
        }
        if (!err) continue;
      }
      if (err) co_return fail(std::move(*err));
    }
  }
};

WatchStream::WatchStream(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
WatchStream::~WatchStream() = default;

awaitable<Result<std::vector<WatchEvent>>> WatchStream::next() {
  auto impl = impl_;
  auto body = [impl]() -> awaitable<Result<std::vector<WatchEvent>>> {
    co_return co_await impl->read_events();
  };
  co_return co_await guarded<std::vector<WatchEvent>>(impl->client->ex, body);
}

void WatchStream::close() {
  auto impl = impl_;
  asio::post(impl->client->ex, [impl] {
    impl->done = true;
    if (impl->conn) impl->conn->close();
  });
}

awaitable<Result<std::unique_ptr<WatchStream>>> Client::Impl::open_watch(const std::string& target,
                                                                         const WatchOptions& wo,
                                                                         Deadline deadline,
                                                                         const Cancel& cancel,
                                                                         const std::string& what) {
  if (!init) co_return init.error();
  for (int attempt = 0;; ++attempt) {
    auto impl = std::make_shared<WatchStream::Impl>(opts.max_event);
    impl->client = shared_from_this();
    impl->cancel = cancel;
    impl->what = what;
    auto m = make_request(http::verb::get, target, {}, {});
    auto c = co_await send(m, impl->parser, deadline, cancel, what, impl->hook);
    if (!c) co_return c.error();
    impl->conn = std::move(*c);
    auto& p = *impl->parser;
    p.body_limit(boost::none);  // a watch is endless; each event is capped instead
    const unsigned status = p.get().result_int();
    if (status == 200) {
      const auto span =
          std::chrono::seconds(std::max<int64_t>(wo.timeout_seconds, 0)) + wo.read_slack;
      impl->deadline = SteadyClock::now() + span;
      co_return std::make_unique<WatchStream>(std::move(impl));
    }
    // An error answer: read its (small) body, then decide.
    Resp r;
    r.status = status;
    r.content_type = std::string(p.get()[http::field::content_type]);
    while (!p.is_done() && r.body.size() < kErrorBodyLimit) {
      p.get().body().data = impl->buf.data();
      p.get().body().size = impl->buf.size();
      impl->conn->low().expires_at(deadline);
      auto [ec, n] =
          co_await http::async_read_some(impl->conn->stream, impl->conn->buffer, p, use_tuple);
      (void)n;
      if (ec == http::error::need_buffer) ec = {};
      r.body.append(impl->buf.data(), impl->buf.size() - p.get().body().size);
      if (ec) break;
    }
    impl->conn->close();
    if (status == 401 && attempt == 0 && reload_token()) {
      spdlog::info("kube: API server answered 401 to a watch; retrying with the rotated token");
      continue;
    }
    auto st = parse_status(r.body);
    const bool too_large = st && st->rv_too_large;
    if (status == 410 || too_large) {
      WatchEvent ev;
      ev.type = EventType::error;
      if (st) ev.status = *st;
      if (ev.status.code == 0) ev.status.code = static_cast<int>(status);
      if (ev.status.reason.empty()) ev.status.reason = status == 410 ? "Expired" : "Timeout";
      impl->synthesized = std::move(ev);
      co_return std::make_unique<WatchStream>(std::move(impl));
    }
    co_return api_error(what, r);
  }
}

// ---------------------------------------------------------------------------------------------
// Client

Client::Client(asio::any_io_executor executor, ClusterConfig config, ClientOptions options) {
  try {
    impl_ = std::make_shared<Impl>();
    impl_->base = executor;
    impl_->ex = asio::make_strand(executor);
    impl_->cfg = std::move(config);
    impl_->opts = std::move(options);
    impl_->init = impl_->setup();
  } catch (const std::exception& e) {
    ERR_clear_error();
    if (impl_)
      impl_->init = make_error(Errc::internal, std::string("kube client setup: ") + e.what());
  }
}

Client::~Client() = default;

Status Client::init_status() const {
  if (!impl_) return make_error(Errc::internal, "kube client not constructed");
  return impl_->init;
}

const ClusterConfig& Client::config() const {
  return impl_->cfg;
}

boost::asio::any_io_executor Client::executor() const {
  return impl_->base;
}

uint64_t Client::request_count() const {
  return impl_ ? impl_->requests.load() : 0;
}

uint64_t Client::token_reads() const {
  return impl_ ? impl_->token_reads.load() : 0;
}

awaitable<Result<Object>> Client::get(Resource resource, std::string ns, std::string name,
                                      Deadline deadline, Cancel cancel) {
  auto impl = impl_;
  auto path = object_path(resource, ns, name);
  if (!path) co_return path.error();
  auto body = [&]() -> awaitable<Result<Object>> {
    auto r = co_await impl->request(http::verb::get, *path, {}, {}, impl->opts.max_response,
                                    deadline, cancel);
    if (!r) co_return r.error();
    if (r->status != 200) co_return api_error("GET " + *path, *r);
    auto o = parse_object(r->body);
    if (!o) co_return make_error(o.error().code, "GET " + *path + ": " + o.error().message);
    co_return std::move(*o);
  };
  co_return co_await guarded<Object>(impl->ex, body);
}

awaitable<Result<ObjectList>> Client::list_page(Resource resource, std::string ns,
                                                ListOptions options, Deadline deadline,
                                                Cancel cancel) {
  auto impl = impl_;
  auto path = collection_path(resource, ns);
  if (!path) co_return path.error();
  auto body = [&]() -> awaitable<Result<ObjectList>> {
    unsigned status = 0;
    co_return co_await impl->list_page(*path, options, deadline, cancel, status);
  };
  co_return co_await guarded<ObjectList>(impl->ex, body);
}

awaitable<Result<ObjectList>> Client::list(Resource resource, std::string ns, ListOptions options,
                                           Deadline deadline, Cancel cancel) {
  auto impl = impl_;
  auto path = collection_path(resource, ns);
  if (!path) co_return path.error();
  auto body = [&]() -> awaitable<Result<ObjectList>> {
    for (int round = 0;; ++round) {
      ObjectList all;
      ListOptions page = options;
      page.continue_token.clear();
      for (bool first = true;; first = false) {
        unsigned status = 0;
        auto r = co_await impl->list_page(*path, page, deadline, cancel, status);
        if (!r) {
          // An expired continue token (410) restarts the list from the top, once.
          if (!first && status == 410 && round == 0) break;
          co_return r.error();
        }
        if (first) all.resource_version = std::move(r->resource_version);
        for (auto& o : r->items) all.items.push_back(std::move(o));
        if (r->continue_token.empty()) co_return all;
        page.continue_token = std::move(r->continue_token);
      }
      spdlog::info("kube: list of {} outlived its continue token; listing again",
                   resource.display());
    }
  };
  co_return co_await guarded<ObjectList>(impl->ex, body);
}

awaitable<Result<std::unique_ptr<WatchStream>>> Client::watch(Resource resource, std::string ns,
                                                              WatchOptions options,
                                                              Deadline connect_deadline,
                                                              Cancel cancel) {
  auto impl = impl_;
  auto path = collection_path(resource, ns);
  if (!path) co_return path.error();
  std::string target = *path + "?watch=true";
  auto add = [&](const char* k, const std::string& v) {
    if (v.empty()) return;
    target += "&";
    target += k;
    target += "=";
    target += query_escape(v);
  };
  add("resourceVersion", options.resource_version);
  if (options.allow_bookmarks) add("allowWatchBookmarks", "true");
  if (options.timeout_seconds > 0) add("timeoutSeconds", std::to_string(options.timeout_seconds));
  add("labelSelector", options.label_selector);
  add("fieldSelector", options.field_selector);
  const std::string what = "WATCH " + *path;
  auto body = [&]() -> awaitable<Result<std::unique_ptr<WatchStream>>> {
    co_return co_await impl->open_watch(target, options, connect_deadline, cancel, what);
  };
  co_return co_await guarded<std::unique_ptr<WatchStream>>(impl->ex, body);
}

awaitable<Result<Object>> Client::merge_patch_status(Resource resource, std::string ns,
                                                     std::string name, std::string patch_json,
                                                     Deadline deadline, Cancel cancel) {
  auto impl = impl_;
  auto path = object_path(resource, ns, name, "status");
  if (!path) co_return path.error();
  if (patch_json.size() > impl->opts.max_response) {
    co_return make_error(Errc::too_large, "PATCH " + *path + ": patch too large");
  }
  auto body = [&]() -> awaitable<Result<Object>> {
    auto r =
        co_await impl->request(http::verb::patch, *path, patch_json, "application/merge-patch+json",
                               impl->opts.max_response, deadline, cancel);
    if (!r) co_return r.error();
    if (r->status != 200) co_return api_error("PATCH " + *path, *r);
    auto o = parse_object(r->body);
    if (!o) co_return make_error(o.error().code, "PATCH " + *path + ": " + o.error().message);
    co_return std::move(*o);
  };
  co_return co_await guarded<Object>(impl->ex, body);
}

awaitable<Result<Secret>> Client::get_secret(std::string ns, std::string name, Deadline deadline,
                                             Cancel cancel) {
  auto impl = impl_;
  auto path = object_path(resources::secrets(), ns, name);
  if (!path) co_return path.error();
  auto body = [&]() -> awaitable<Result<Secret>> {
    auto r = co_await impl->request(http::verb::get, *path, {}, {}, impl->opts.max_response,
                                    deadline, cancel);
    if (!r) co_return r.error();
    if (r->status != 200) co_return api_error("GET " + *path, *r);
    auto s = parse_secret(r->body);
    if (!s) co_return make_error(s.error().code, "GET " + *path + ": " + s.error().message);
    co_return std::move(*s);
  };
  co_return co_await guarded<Secret>(impl->ex, body);
}

awaitable<Result<ServiceAccount>> Client::get_service_account(std::string ns, std::string name,
                                                              Deadline deadline, Cancel cancel) {
  auto impl = impl_;
  auto path = object_path(resources::service_accounts(), ns, name);
  if (!path) co_return path.error();
  auto body = [&]() -> awaitable<Result<ServiceAccount>> {
    auto r = co_await impl->request(http::verb::get, *path, {}, {}, impl->opts.max_response,
                                    deadline, cancel);
    if (!r) co_return r.error();
    if (r->status != 200) co_return api_error("GET " + *path, *r);
    auto s = parse_service_account(r->body);
    if (!s) co_return make_error(s.error().code, "GET " + *path + ": " + s.error().message);
    co_return std::move(*s);
  };
  co_return co_await guarded<ServiceAccount>(impl->ex, body);
}

}  // namespace sigil::kube
