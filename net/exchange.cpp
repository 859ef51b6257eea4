// net/exchange.cpp: one request/answer exchange with its caps, the stale keep-alive retry,
// the retry loop (backoff, Retry-After) and redirects without credentials.
#include <optional>
#include <random>

#include <spdlog/spdlog.h>

#include "net/detail/client_impl.hpp"

namespace sigil::net {

http::request<http::string_body> Client::Impl::make_message(const Request& req, const Url& url,
                                                            bool with_auth) const {
  http::request<http::string_body> m{verb_of(req.method), url.target, 11};
  std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  if (!url.is_default_port()) host += ":" + url.port;
  m.set(http::field::host, host);
  m.set(http::field::user_agent, opts.user_agent);
  for (const auto& [k, v] : req.headers) m.set(k, v);
  if (with_auth && !req.authorization.empty()) {
    m.set(http::field::authorization, req.authorization);
  }
  if (!req.body.empty()) m.body() = req.body;
  m.keep_alive(true);
  m.prepare_payload();
  return m;
}

template <class Stream>
awaitable<Attempt> Client::Impl::exchange_on(Stream& stream, Conn& conn,
                                             http::request<http::string_body>& m, const Url& url,
                                             bool head, const Limits& limits, Deadline deadline,
                                             CallState& call, bool& keep) {
  keep = false;
  Attempt a;
  a.retryable = true;
  const std::string where = url.authority();
  http::response_parser<http::string_body> p;
  if (head) p.skip(true);
  auto st =
      co_await write_and_read_header(stream, conn, m, p, limits, deadline, call, where, a.stale);
  if (!st) {
    const Errc code = st.error().code;
    a.retryable = code == Errc::unavailable && !call.cancelled;
    a.result = st.error();
    co_return a;
  }
  a.answered = true;
  Response r;
  r.status = p.get().result_int();
  r.url = url;
  const bool success = r.status >= 200 && r.status < 300;
  const uint64_t cap = success ? limits.max_body : limits.max_error_body;
  auto cl = p.content_length();
  bool skip_body = false;
  if (!head && cl && *cl > cap) {
    if (success) {
      a.retryable = false;
      a.result = make_error(Errc::too_large, "the answer of " + where + " is " +
                                                 std::to_string(*cl) + " bytes, over the " +
                                                 std::to_string(cap) + " byte limit");
      co_return a;
    }
    // An error body over its cap is not read: the connection is dropped instead.
    skip_body = true;
    r.truncated = true;
  }
  if (!skip_body && !p.is_done()) {
    p.body_limit(cap);
    conn.arm(deadline);
    auto [bec, bn] = co_await http::async_read(stream, conn.buffer, p, use_tuple);
    (void)bn;
    if (call.cancelled) {
      a.result = cancelled_error("reading from " + where);
      a.retryable = false;
      co_return a;
    }
    if (bec == http::error::body_limit) {
      if (success) {
        a.retryable = false;
        a.result = make_error(Errc::too_large, "the answer of " + where + " exceeds the " +
                                                   std::to_string(cap) + " byte limit");
        co_return a;
      }
      r.truncated = true;
      skip_body = true;
      r.body = std::move(p.get().body());
      if (r.body.size() > cap) r.body.resize(cap);
    } else if (bec == http::error::buffer_overflow) {
      a.retryable = false;
      a.result = buffer_overflow_error(where, conn);
      co_return a;
    } else if (bec) {
      if (bec == beast::error::timeout || SteadyClock::now() >= deadline) {
        a.retryable = false;
        a.result = timeout_error("reading from " + where);
      } else {
        a.result = make_error(Errc::unavailable,
                              "the answer of " + where + " was cut short: " + bec.message());
      }
      co_return a;
    }
  }
  const auto& h = p.get();
  for (const auto& f : h)
    r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  if (!skip_body) r.body = std::move(p.get().body());
  // Bytes beyond the answer (we never pipeline) mean a confused peer: do not reuse.
  keep = !skip_body && h.keep_alive() && p.is_done() && conn.buffer.size() == 0;
  a.result = std::move(r);
  co_return a;
}

namespace {

// Tells the outage memo how one round trip went, exactly once: at the first outcome given, or
// as neutral when the round trip ends (or throws, or its frame is destroyed unresumed at
// shutdown: it owns the client's state, so that is still there) without one.
class OutageSettle {
 public:
  OutageSettle(std::shared_ptr<Client::Impl> impl, const std::string& origin, bool listed)
      : impl_(std::move(impl)), origin_(origin), listed_(listed) {}
  ~OutageSettle() {
    // The memo only: waiters are not woken from here (this may run while the io_context is
    // being destroyed); they stop waiting at their own bound.
    if (!armed_) return;
    armed_ = false;
    try {
      impl_->outages->after(origin_, ticket_, OutageMemo::Outcome::neutral, nullptr, listed_,
                            SteadyClock::now());
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw
    }
  }
  OutageSettle(const OutageSettle&) = delete;
  OutageSettle& operator=(const OutageSettle&) = delete;

  void arm(OutageMemo::Ticket ticket) {
    ticket_ = ticket;
    armed_ = true;
  }
  void operator()(OutageMemo::Outcome outcome, const Error* error) {
    if (!armed_) return;
    armed_ = false;
    impl_->outages->after(origin_, ticket_, outcome, error, listed_, SteadyClock::now());
    if (ticket_.probe) impl_->wake_probe_waiters(origin_);
  }

 private:
  std::shared_ptr<Client::Impl> impl_;
  std::string origin_;
  bool listed_;
  OutageMemo::Ticket ticket_;
  bool armed_ = false;
};

}  // namespace

awaitable<void> Client::Impl::await_probe(const std::string& origin, Deadline until,
                                          CallState& call) {
  auto timer = std::make_shared<asio::steady_timer>(strand);
  timer->expires_at(until);
  auto& waiters = probe_waiters[origin];
  std::erase_if(waiters, [](const auto& w) { return w.expired(); });
  waiters.push_back(timer);
  call.sleeping = timer;
  co_await timer->async_wait(use_tuple);
  call.sleeping.reset();
}

void Client::Impl::wake_probe_waiters(const std::string& origin) {
  auto it = probe_waiters.find(origin);
  if (it == probe_waiters.end()) return;
  auto waiters = std::move(it->second);
  probe_waiters.erase(it);
  for (auto& w : waiters) {
    if (auto t = w.lock()) t->cancel();
  }
}

awaitable<Attempt> Client::Impl::round_trip(const Request& req, const Url& url, bool with_auth,
                                            const Limits& limits, Deadline deadline,
                                            CallState& call) {
  auto m = make_message(req, url, with_auth);
  const bool head = req.method == Method::head;
  Attempt a;
  // An origin that cannot be reached: fail at once, or wait for its probe, or go as the probe
  // (net/outage.hpp). Only connecting is judged: what comes after depends on the path.
  const std::string origin = outages ? url.origin() : std::string();
  std::optional<OutageSettle> settle;  // only for a client with the memo
  if (outages) {
    settle.emplace(shared_from_this(), origin, call.operator_listed);
    // While a probe is out, wait for it (a probe that says nothing lets another go: wait again)
    // up to probe_wait.
    const Deadline wait_until =
        std::min(deadline, SteadyClock::now() + outages->options().probe_wait);
    while (outages->probing(origin) && !call.cancelled && SteadyClock::now() < wait_until) {
      co_await await_probe(origin, wait_until, call);
    }
    if (call.cancelled) {
      a.result = cancelled_error("request to " + url.authority());
      co_return a;
    }
    const auto now = SteadyClock::now();
    auto t = outages->before(origin, now, deadline - now);
    if (!t) {
      a.result = std::move(t).error();
      co_return a;
    }
    settle->arm(*t);
  }
  for (int i = 0; i < 2; ++i) {
    if (call.cancelled) {
      a.result = cancelled_error("request to " + url.authority());
      a.retryable = false;
      co_return a;
    }
    if (SteadyClock::now() >= deadline) {
      a.result = timeout_error("request to " + url.authority());
      a.retryable = false;
      co_return a;
    }
    const auto start = SteadyClock::now();
    bool reused = false;
    bool retryable = true;
    SteadyClock::time_point dialed = start;
    bool queued = false;
    auto c = co_await acquire(url, deadline, call, i > 0, reused, retryable, dialed, queued);
    if (!c) {
      // Judged from when connecting began: a wait for a slot (the connection caps) says
      // nothing about the origin.
      if (settle) {
        (*settle)(queued ? OutageMemo::Outcome::neutral
                         : outages->classify(c.error(), SteadyClock::now() - dialed,
                                             deadline - dialed, call.cancelled),
                  &c.error());
      }
      observe(url, req.method, 0, c.error().code, start, false, call);
      a.result = c.error();
      a.retryable = retryable;
      a.stale = false;
      co_return a;
    }
    if (!reused && settle) (*settle)(OutageMemo::Outcome::reached, nullptr);
    auto conn = std::move(*c);
    requests.fetch_add(1, std::memory_order_relaxed);
    bool keep = false;
    // No co_await inside ?: (GCC 12 miscompiles it).
    if (conn->tls) {
      a = co_await exchange_on(*conn->tls, *conn, m, url, head, limits, deadline, call, keep);
    } else {
      a = co_await exchange_on(*conn->plain, *conn, m, url, head, limits, deadline, call, keep);
    }
    if (a.answered && settle) (*settle)(OutageMemo::Outcome::reached, nullptr);
    observe(url, req.method, a.result ? a.result->status : 0,
            a.result ? Errc::internal : a.result.error().code, start, reused, call);
    if (!a.result && reused && a.stale && !call.cancelled) {
      spdlog::debug("net: pooled connection to {} was closed by the peer; reconnecting",
                    url.authority());
      continue;
    }
    a.stale = false;
    if (keep) {
      park(std::move(conn));
    } else {
      conn->disarm();
    }
    co_return a;
  }
  co_return a;
}

awaitable<bool> Client::Impl::sleep(std::chrono::milliseconds delay, Deadline deadline,
                                    CallState& call) {
  if (SteadyClock::now() + delay >= deadline) co_return false;
  if (delay.count() <= 0) co_return !call.cancelled;
  auto timer = std::make_shared<asio::steady_timer>(strand);
  timer->expires_after(delay);
  call.sleeping = timer;
  co_await timer->async_wait(use_tuple);
  call.sleeping.reset();
  co_return !call.cancelled && SteadyClock::now() < deadline;
}

awaitable<Result<Response>> Client::Impl::send_retrying(const Request& req, const Url& url,
                                                        bool with_auth, const Limits& limits,
                                                        Deadline deadline, CallState& call) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  for (int attempt = 0;; ++attempt) {
    auto a = co_await round_trip(req, url, with_auth, limits, deadline, call);
    bool again = false;
    std::optional<std::chrono::milliseconds> wait;
    if (!a.result) {
      again = a.retryable;
    } else {
      const unsigned s = a.result->status;
      again = s == 429 || s >= 500;
      if (again) {
        wait = parse_retry_after(a.result->header("Retry-After"), std::chrono::system_clock::now());
      }
    }
    if (!again || attempt >= req.retry.max_retries || call.cancelled) co_return a.result;
    if (!wait) {
      std::uniform_real_distribution<double> unit(0.0, 1.0);
      wait = backoff_delay(req.retry, attempt, unit(rng));
    }
    spdlog::debug("net: {} {} again in {} ms ({})", method_name(req.method), url.authority(),
                  wait->count(),
                  a.result ? "HTTP " + std::to_string(a.result->status) : a.result.error().message);
    if (!co_await sleep(*wait, deadline, call)) {
      if (call.cancelled) co_return cancelled_error("request to " + url.authority());
      co_return a.result;
    }
  }
}

awaitable<Result<Response>> Client::Impl::send_on_strand(const Request& req, Deadline deadline,
                                                         const Limits& limits, CallState& call) {
  if (!init) co_return init.error();
  if (auto st = check_request(req); !st) co_return st.error();
  Url cur = req.url;
  int redirects = 0;
  const bool followable = req.method == Method::get || req.method == Method::head;
  for (;;) {
    const bool with_auth = cur.same_origin(req.url);
    auto r = co_await send_retrying(req, cur, with_auth, limits, deadline, call);
    if (!r || !is_redirect(r->status) || req.max_redirects <= 0 || !followable) co_return r;
    if (++redirects > req.max_redirects) {
      co_return make_error(Errc::unavailable, req.url.authority() + ": more than " +
                                                  std::to_string(req.max_redirects) + " redirects");
    }
    const std::string location = r->header("Location");
    if (location.empty()) {
      co_return make_error(Errc::unavailable,
                           cur.authority() + " answered a redirect without a Location");
    }
    auto next = resolve_location(cur, location);
    if (!next) {
      co_return make_error(Errc::unavailable, cur.authority() +
                                                  " redirected to an unusable "
                                                  "Location: " +
                                                  next.error().message);
    }
    const bool allowed =
        req.redirect_allowed ? req.redirect_allowed(*next) : next->scheme == "https";
    if (!allowed) {
      co_return make_error(Errc::unavailable, cur.authority() + " redirected to " + next->origin() +
                                                  ", which this request may not follow");
    }
    cur = std::move(*next);
  }
}

}  // namespace sigil::net
