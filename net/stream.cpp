// net/stream.cpp: answers read as they arrive (Kubernetes watches): Client::open and
// ResponseStream. A streamed connection is never pooled again.
#include <array>

#include "net/detail/client_impl.hpp"

namespace sigil::net {

// ---------------------------------------------------------------------------------------------
// ResponseStream

struct ResponseStream::Impl {
  std::shared_ptr<Client::Impl> client;
  std::shared_ptr<Conn> conn;
  http::response_parser<http::buffer_body> parser;
  unsigned status = 0;
  Headers headers;
  Url url;
  std::optional<Error> failed;   // strand only: once failed, every read says so
  std::optional<Error> pending;  // strand only: an error that came with the last bytes
  bool ended = false;            // strand only
  std::array<char, kReadChunk> buf{};

  ~Impl() {
    // The connection's socket and timer belong to the strand: release them there.
    if (conn && client) {
      asio::post(client->strand, [c = std::move(conn)] {
        c->disarm();
        c->close();
      });
    }
  }

  template <class Stream>
  awaitable<Result<std::string>> read_on(Stream& stream, Deadline deadline, CallState& call) {
    const std::string where = url.authority();
    for (;;) {
      if (parser.is_done()) {
        ended = true;
        conn->close();
        co_return std::string();
      }
      parser.get().body().data = buf.data();
      parser.get().body().size = buf.size();
      conn->arm(deadline);
      auto [ec, n] = co_await http::async_read_some(stream, conn->buffer, parser, use_tuple);
      (void)n;
      if (ec == http::error::need_buffer) ec = {};
      const size_t got = buf.size() - parser.get().body().size;
      std::optional<Error> err;
      if (call.cancelled) {
        err = cancelled_error("reading from " + where);
      } else if (conn->closed) {
        err = make_error(Errc::unavailable, "reading from " + where + ": closed");
      } else if (ec == http::error::buffer_overflow) {
        err = buffer_overflow_error(where, *conn);
      } else if (ec == beast::error::timeout || (ec && SteadyClock::now() >= deadline)) {
        err = timeout_error("reading from " + where);
      } else if (ec) {
        err = make_error(Errc::unavailable,
                         "the answer of " + where + " was cut short: " + ec.message());
      }
      if (err) conn->close();
      if (got > 0) {
        if (err) pending = std::move(err);
        co_return std::string(buf.data(), got);
      }
      if (err) co_return *err;
    }
  }

  awaitable<Result<std::string>> read(Deadline deadline, CallState& call) {
    if (failed) co_return *failed;
    if (pending) {
      failed = std::move(pending);
      pending.reset();
      co_return *failed;
    }
    if (ended) co_return std::string();
    call.active = conn;
    Result<std::string> r = make_error(Errc::internal, "no read");
    if (conn->tls) {
      r = co_await read_on(*conn->tls, deadline, call);
    } else {
      r = co_await read_on(*conn->plain, deadline, call);
    }
    if (!r) failed = r.error();
    co_return r;
  }
};

ResponseStream::ResponseStream(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
ResponseStream::~ResponseStream() = default;

unsigned ResponseStream::status() const {
  return impl_->status;
}
const Headers& ResponseStream::headers() const {
  return impl_->headers;
}
const Url& ResponseStream::url() const {
  return impl_->url;
}

awaitable<Result<std::string>> ResponseStream::read_some(Deadline deadline) {
  auto impl = impl_;
  auto body = [impl, deadline](CallState& call) -> awaitable<Result<std::string>> {
    co_return co_await impl->read(deadline, call);
  };
  co_return co_await Client::Impl::on_strand<std::string>(
      impl->client, "reading from " + impl->url.authority(), body);
}

awaitable<Result<std::string>> ResponseStream::read_rest(uint64_t limit, Deadline deadline) {
  std::string out;
  while (out.size() < limit) {
    auto r = co_await read_some(deadline);
    if (!r) co_return r.error();
    if (r->empty()) break;
    out += *r;
  }
  if (out.size() > limit) out.resize(limit);
  co_return out;
}

void ResponseStream::close() {
  auto impl = impl_;
  asio::post(impl->client->strand, [impl] {
    impl->ended = true;
    if (impl->conn) impl->conn->close();
  });
}

// ---------------------------------------------------------------------------------------------
// Client::open: the header now, the body as it arrives

awaitable<Result<std::unique_ptr<ResponseStream>>> Client::open(Request request, Deadline deadline,
                                                                Limits limits) {
  if (!impl_) co_return make_error(Errc::internal, "net client not constructed");
  auto impl = impl_;
  const std::string what = std::string(method_name(request.method)) + " " + request.url.authority();
  auto body = [&](CallState& call) -> awaitable<Result<std::unique_ptr<ResponseStream>>> {
    call.operator_named = request.operator_named;
    call.operator_listed = request.operator_listed;
    if (!impl->init) co_return impl->init.error();
    if (auto st = check_request(request); !st) co_return st.error();
    const Url& url = request.url;
    const std::string where = url.authority();
    auto m = impl->make_message(request, url, true);
    for (int i = 0; i < 2; ++i) {
      if (call.cancelled) co_return cancelled_error("request to " + where);
      if (SteadyClock::now() >= deadline) co_return timeout_error("request to " + where);
      const auto start = SteadyClock::now();
      bool reused = false;
      bool retryable = true;
      SteadyClock::time_point dialed{};
      bool queued = false;
      auto c =
          co_await impl->acquire(url, deadline, call, i > 0, reused, retryable, dialed, queued);
      if (!c) {
        impl->observe(url, request.method, 0, c.error().code, start, false, call);
        co_return c.error();
      }
      auto s = std::make_shared<ResponseStream::Impl>();
      s->client = impl;
      s->conn = std::move(*c);
      s->url = url;
      impl->requests.fetch_add(1, std::memory_order_relaxed);
      bool stale = false;
      Status st;
      if (s->conn->tls) {
        st = co_await impl->write_and_read_header(*s->conn->tls, *s->conn, m, s->parser, limits,
                                                  deadline, call, where, stale);
      } else {
        st = co_await impl->write_and_read_header(*s->conn->plain, *s->conn, m, s->parser, limits,
                                                  deadline, call, where, stale);
      }
      if (!st) {
        impl->observe(url, request.method, 0, st.error().code, start, reused, call);
        s->conn->close();
        if (reused && stale && !call.cancelled) continue;
        co_return st.error();
      }
      s->status = s->parser.get().result_int();
      for (const auto& f : s->parser.get()) {
        s->headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      }
      s->parser.body_limit(boost::none);  // the caller bounds what it keeps
      impl->observe(url, request.method, s->status, Errc::internal, start, reused, call);
      co_return std::make_unique<ResponseStream>(std::move(s));
    }
    co_return make_error(Errc::unavailable, where + " closed the connection");
  };
  co_return co_await Impl::on_strand<std::unique_ptr<ResponseStream>>(impl, what, body);
}

}  // namespace sigil::net
