#include "net/client.hpp"

#include <atomic>

#include "common/encoding.hpp"
#include "net/detail/client_impl.hpp"
#include "net/detail/tls.hpp"

namespace sigil::net {

// ---------------------------------------------------------------------------------------------
// Small public helpers

const char* method_name(Method method) noexcept {
  switch (method) {
    case Method::get:
      return "GET";
    case Method::head:
      return "HEAD";
    case Method::post:
      return "POST";
    case Method::put:
      return "PUT";
    case Method::patch:
      return "PATCH";
    case Method::delete_:
      return "DELETE";
  }
  return "GET";
}

std::string find_header(const Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && ascii_lower(k) == ascii_lower(name)) return v;
  }
  return {};
}

Request get_request(Url url, std::string accept) {
  Request r;
  r.url = std::move(url);
  if (!accept.empty()) r.headers.emplace_back("Accept", std::move(accept));
  return r;
}

Request form_post(Url url, const std::vector<std::pair<std::string, std::string>>& fields) {
  Request r;
  r.method = Method::post;
  r.url = std::move(url);
  r.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  r.headers.emplace_back("Accept", "application/json");
  r.body = form_encode(fields);
  return r;
}

namespace detail {

Error timeout_error(const std::string& what) {
  return make_error(Errc::timeout, what + ": deadline exceeded");
}
Error buffer_overflow_error(const std::string& where, const Conn& conn) {
  return make_error(Errc::too_large, "the answer of " + where +
                                         " has a header, chunk header or trailer that does not "
                                         "end within " +
                                         std::to_string(conn.buffer.max_size()) + " bytes");
}
Error cancelled_error(const std::string& what) {
  return make_error(Errc::unavailable, what + ": cancelled");
}

http::verb verb_of(Method m) {
  switch (m) {
    case Method::get:
      return http::verb::get;
    case Method::head:
      return http::verb::head;
    case Method::post:
      return http::verb::post;
    case Method::put:
      return http::verb::put;
    case Method::patch:
      return http::verb::patch;
    case Method::delete_:
      return http::verb::delete_;
  }
  return http::verb::get;
}

bool field_name_ok(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool field_value_ok(std::string_view value) {
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

// A request net can send as asked, or why not.
Status check_request(const Request& r) {
  if (r.url.scheme != "https" && r.url.scheme != "http") {
    return make_error(Errc::invalid_argument, "request URL is not http(s)");
  }
  if (r.url.target.empty() || r.url.target.front() != '/' || !field_value_ok(r.url.target)) {
    return make_error(Errc::invalid_argument, "request target is not a path");
  }
  auto hp = split_host_port(r.url.authority(), "");
  if (r.url.host.empty() || !hp || hp->second != r.url.port) {
    return make_error(Errc::invalid_argument, "request URL has no valid host and port");
  }
  for (const auto& [name, value] : r.headers) {
    if (!field_name_ok(name) || !field_value_ok(value)) {
      return make_error(Errc::invalid_argument,
                        "request header " + printable(name, 64) + " is not a valid HTTP field");
    }
    const std::string lower = ascii_lower(name);
    if (lower == "authorization" || lower == "proxy-authorization" || lower == "cookie") {
      return make_error(Errc::invalid_argument,
                        "request header " + name + " carries a credential: use authorization");
    }
    if (lower == "host" || lower == "content-length" || lower == "transfer-encoding" ||
        lower == "connection") {
      return make_error(Errc::invalid_argument, "request header " + name + " is net's to set");
    }
  }
  if (!field_value_ok(r.authorization)) {
    return make_error(Errc::invalid_argument, "the Authorization value has a line break");
  }
  return {};
}

bool is_redirect(unsigned s) {
  return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

// A connection error on a keep-alive connection that the peer closed while it was idle.
bool closed_by_peer(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted || ec == ssl::error::stream_truncated;
}
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Client

Client::Client(const asio::any_io_executor& executor, ClientOptions options) {
  try {
    impl_ = std::make_shared<Impl>();
    impl_->strand = asio::make_strand(executor);
    impl_->opts = std::move(options);
    impl_->resolver = std::make_unique<detail::Resolver>(
        impl_->strand,
        detail::ResolverOptions{impl_->opts.dns_servers, impl_->opts.max_dns_lookups,
                                impl_->opts.reserved_dns_lookups, impl_->opts.dns_try_timeout,
                                impl_->opts.dns_attempts});
    if (const Status& dns = impl_->resolver->init_status(); !dns) impl_->init = dns;
    if (impl_->opts.fail_fast.after > 0) {
      impl_->outages = std::make_unique<OutageMemo>(impl_->opts.fail_fast);
    }
    auto ctx = detail::make_client_context(impl_->opts.tls);
    if (ctx) {
      impl_->ctx = std::move(*ctx);
    } else {
      impl_->init = ctx.error();
    }
  } catch (const std::exception& e) {
    if (impl_) impl_->init = make_error(Errc::internal, std::string("net client: ") + e.what());
  }
}

Client::~Client() = default;

Status Client::init_status() const {
  if (!impl_) return make_error(Errc::internal, "net client not constructed");
  return impl_->init;
}

DnsStats Client::dns_stats() const {
  return impl_ && impl_->resolver ? impl_->resolver->stats() : DnsStats{};
}

OutageMemo::Stats Client::outage_stats() const {
  return impl_ && impl_->outages ? impl_->outages->stats() : OutageMemo::Stats{};
}

ConnStats Client::conn_stats() const {
  ConnStats s;
  if (!impl_) return s;
  {
    std::lock_guard lock(impl_->slots.m);
    s.open = impl_->slots.shared + impl_->slots.reserved;
    s.reserved_open = impl_->slots.reserved;
  }
  s.max_connections = impl_->opts.max_connections;
  s.reserved_connections = impl_->opts.reserved_connections;
  s.waiting = impl_->slot_waiting.load(std::memory_order_relaxed);
  s.waited = impl_->slot_waited.load(std::memory_order_relaxed);
  s.timed_out = impl_->slot_timed_out.load(std::memory_order_relaxed);
  s.refused = impl_->slot_refused.load(std::memory_order_relaxed);
  return s;
}

uint64_t Client::request_count() const {
  return impl_ ? impl_->requests.load() : 0;
}
uint64_t Client::connection_count() const {
  return impl_ ? impl_->connections.load() : 0;
}
Client::PoolStats Client::pool_stats() const {
  PoolStats s;
  if (impl_) {
    s.idle = impl_->idle_total.load();
    s.idle_armed = impl_->idle_armed.load();
  }
  return s;
}

awaitable<Result<Response>> Client::send(Request request, Deadline deadline, Limits limits) {
  if (!impl_) co_return make_error(Errc::internal, "net client not constructed");
  auto impl = impl_;
  const std::string what = std::string(method_name(request.method)) + " " + request.url.authority();
  auto body = [&](CallState& call) -> awaitable<Result<Response>> {
    call.operator_named = request.operator_named;
    call.operator_listed = request.operator_listed;
    co_return co_await impl->send_on_strand(request, deadline, limits, call);
  };
  co_return co_await Impl::on_strand<Response>(impl, what, body);
}

// ---------------------------------------------------------------------------------------------
// CancelSignal

struct CancelSignal::State {
  explicit State(asio::any_io_executor e) : ex(std::move(e)) {}
  asio::any_io_executor ex;
  asio::cancellation_signal signal;  // touched only on ex (slot() before any cancel())
  std::atomic<bool> cancelled{false};
};

CancelSignal::CancelSignal(asio::any_io_executor executor)
    : s_(std::make_shared<State>(std::move(executor))) {}

asio::cancellation_slot CancelSignal::slot() const {
  return s_->signal.slot();
}

void CancelSignal::cancel() const {
  if (s_->cancelled.exchange(true)) return;
  asio::post(s_->ex, [s = s_] { s->signal.emit(asio::cancellation_type::terminal); });
}

bool CancelSignal::cancelled() const {
  return s_->cancelled.load();
}

}  // namespace sigil::net
