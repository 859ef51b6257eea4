// net/client.hpp: sigil's one outbound HTTP(S) layer (HTTP/1.1 on Boost.Beast, OpenSSL 3).
//
// Role: every byte sigil sends to another server goes through net::Client: the registry client
// (registry/), the Kubernetes client (kube/) and the Azure identity clients. It owns what
// those must never each re-implement: client TLS (TLS 1.2+, peer verification against the
// client's own roots, SNI and host-name checks for names, IP-SAN checks and no SNI for IP
// literals, an optional client certificate), connecting under a deadline, a bounded idle pool
// per origin, body and header caps, redirects that never carry credentials to another origin,
// retries with jittered backoff and Retry-After, streaming answers (watches), and cancellation
// through Asio cancellation slots. It knows nothing of registries, tokens or Kubernetes: auth
// schemes, status meanings and retry budgets are the callers'. Depends on common, Boost.Asio
// (awaitable) in this header, Beast and OpenSSL in the .cpp only; never throws: every failure
// is a Result.
//
// Errors: invalid_argument (a malformed request: a header with CR/LF, a credential in
// `headers`; or a bad TLS setup, from every call), timeout (the deadline passed), too_large (a
// 2xx body or a header over its cap), unavailable (resolve/connect/TLS/read failures, a refused
// or endless redirect, cancellation: the message ends in "cancelled"). A 4xx/5xx answer is a
// Response, not an error.
//
// Threads and cancellation: a Client may be used from any thread. Its connections live on a
// private strand; send() and the stream reads run there and complete on the caller's
// executor. A call honours the caller's cancellation slot (this_coro::cancellation_state):
// on cancellation the call's connection is closed on the strand and the call ends with
// "cancelled". The bridge holds the call's state by shared ownership and does nothing once the
// call is over, because Boost 1.81's co_spawn forwards a cancellation to another executor
// through a raw pointer that dangles when the child finishes first. CancelSignal is the
// thread-safe trigger for work that must be stopped from another thread (a reflector's stop).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>

#include "common/deadline.hpp"
#include "common/result.hpp"
#include "net/conn_stats.hpp"
#include "net/outage.hpp"
#include "net/retry.hpp"
#include "net/tls.hpp"
#include "net/url.hpp"

namespace sigil::net {

enum class Method { get, head, post, put, patch, delete_ };
const char* method_name(Method method) noexcept;

using Header = std::pair<std::string, std::string>;
using Headers = std::vector<Header>;

// The first value of the field `name` (case-insensitive), or "" when absent.
std::string find_header(const Headers& headers, std::string_view name);

struct Request {
  Method method = Method::get;
  Url url;
  // Accept, Content-Type, Metadata, ...: never credentials. Authorization, Proxy-Authorization
  // and Cookie here are refused (invalid_argument): a credential goes in `authorization`.
  Headers headers;
  // The Authorization value, sent only to url's origin (scheme, host and port): a redirect to
  // any other origin is followed without it.
  std::string authorization;
  std::string body;  // sent with Content-Length (forms, patches); empty for GET/HEAD
  // Redirects (301, 302, 303, 307, 308 answering a GET or HEAD) followed at most this many
  // times; 0 (the default): a 3xx is the answer. Past the limit: unavailable.
  int max_redirects = 0;
  // Whether a redirect may go to `to`. Unset: only to https URLs (never a downgrade).
  std::function<bool(const Url& to)> redirect_allowed;
  RetryPolicy retry;  // default: no retries
  // Sent on behalf of a host the operator configured (a registry sigil holds credentials for or
  // was told to reach over plain HTTP), never one a pod author named. Its host-name lookups, and
  // its redirects', may use the reserved DNS slots (ClientOptions::reserved_dns_lookups), which
  // lookups of other names cannot fill; its exchanges say so (Exchange::operator_named).
  bool operator_named = false;
  // operator_named, and the operator named this very host (a docker config entry, a literal
  // registry in a cluster-wide policy), not a pattern such as "*.azurecr.io" inside which pod
  // authors choose names. Carried to its exchanges (Exchange::operator_listed), its redirects'
  // included: what gets metric series no pod can take.
  bool operator_listed = false;
};

// Helpers for the requests sigil makes.
Request get_request(Url url, std::string accept = {});
// POST application/x-www-form-urlencoded (token endpoints), Accept: application/json.
Request form_post(Url url, const std::vector<std::pair<std::string, std::string>>& fields);

struct Limits {
  uint64_t max_body = 1024 * 1024;  // a 2xx body longer than this fails with too_large
  // A non-2xx body longer than this is cut (Response::truncated), not an error: error bodies
  // are for messages.
  uint64_t max_error_body = 64 * 1024;
  uint32_t max_header = 32 * 1024;  // status line and fields; more fails with too_large
};

struct Response {
  unsigned status = 0;
  Headers headers;
  std::string body;
  bool truncated = false;  // an error body over max_error_body: body holds at most its start
  Url url;                 // where the answer came from (after redirects)
  std::string header(std::string_view name) const { return find_header(headers, name); }
};

// One request on the wire as send()/open() made it, for metrics (every attempt, retries and
// redirect hops included). status 0: no answer; then error says why.
struct Exchange {
  std::string origin;  // "https://host:port"
  Method method = Method::get;
  unsigned status = 0;
  Errc error = Errc::internal;  // meaningful when status == 0
  std::chrono::steady_clock::duration duration{};
  bool reused = false;           // sent on a pooled connection
  bool operator_named = false;   // the request's Request::operator_named
  bool operator_listed = false;  // the request's Request::operator_listed
};
// Called on the client's strand after each exchange; must be quick and must not throw.
using Observer = std::function<void(const Exchange&)>;

struct ClientOptions {
  TlsOptions tls;
  std::string user_agent = "sigil/0.1";
  size_t max_idle_per_origin = 16;  // idle keep-alive connections kept per origin
  // Origins with idle connections kept at most, and idle connections in all. Past either, the
  // expired ones are closed, then the origin least recently parked at: origins are named by
  // image references, so a hostile pod could otherwise hold every slot for good.
  size_t max_origins = 256;
  size_t max_idle_total = 1024;
  // An idle connection unused this long is closed instead of reused: servers drop idle
  // keep-alive connections (Go's default 90 s, nginx 75 s), and one found dead costs a retry.
  std::chrono::milliseconds idle_timeout{50000};
  bool tcp_nodelay = true;  // Nagle off on every socket (false only to measure its cost)
  Observer observer;
  // Host names are resolved with c-ares on the client's strand, each lookup bounded by its
  // call's deadline and abandoned past it: a name whose DNS server never answers (image names
  // are the pod author's, and so is their DNS) holds up nothing else. /etc/resolv.conf and
  // /etc/hosts as getaddrinfo reads them, unless `dns_servers` ("127.0.0.1:5353,..." : tests
  // run their own server) names others. Past `max_dns_lookups` in flight (abandoned ones
  // included until c-ares times them out) a lookup fails at once. Requests marked
  // operator_named have `reserved_dns_lookups` more of their own: a pod author who names hosts
  // whose DNS never answers can fill the shared slots, but not these, so the operator's own
  // registries still resolve. Concurrent lookups of one name share one slot and one query.
  // c-ares asks each server `dns_attempts` times, waiting `dns_try_timeout` for the first
  // answer and twice as long on each later round (these replace resolv.conf's `options
  // timeout:` and `attempts:`): with one server, a name that never answers holds its slot and
  // sends queries to the cluster's DNS for dns_try_timeout * (2^dns_attempts - 1), 3 s by
  // default, instead of c-ares' 75 s.
  std::string dns_servers;
  size_t max_dns_lookups = 256;
  size_t reserved_dns_lookups = 64;
  std::chrono::milliseconds dns_try_timeout{1000};
  int dns_attempts = 2;
  // Origins that cannot be reached fail their calls at once for a while (net/outage.hpp). Off
  // unless fail_fast.after > 0: the registry client turns it on.
  FailFastOptions fail_fast;
  // Connections open at once, each a file descriptor from its socket's creation to its close
  // (connecting, in use, or idle in the pool): at most `max_connections`, and requests marked
  // operator_named have `reserved_connections` more of their own. Requests not marked
  // operator_listed have at most `max_connections_per_host` open to one host name, whatever the
  // port (the operator's listed hosts are not held to it, and do not count against it). A
  // request that needs a new connection past a cap closes idle connections that hold a slot it
  // may use (least recently parked first), then waits within its deadline for a connection to
  // close or be parked: each such event wakes one waiter per cap, operator_named ones first. A
  // wait that outlives the deadline fails with timeout and never counts against the origin
  // (fail_fast). Pod authors name hosts, and a host can hold each connection sigil opens to it
  // until the deadline: without the caps, admissions that name hosts that hang could take every
  // descriptor, and with them the webhook's listener (accept fails with EMFILE). The per-host
  // cap is by name: a wildcard DNS domain gives a pod author any number of hosts, so the total
  // and the reserve are what keep the operator's registries answered. 0: no cap (the default;
  // the registry and Azure clients set them).
  size_t max_connections = 0;
  size_t reserved_connections = 0;
  size_t max_connections_per_host = 0;
  // Calls not marked operator_named that may wait at once for one cap (the total, or one host's):
  // past it such a call fails at once (Errc::unavailable, never counted against the origin). Each
  // freed or parked slot looks through a cap's waiters for the one to wake, so without a bound
  // pods naming hosts that hang could queue calls by the ten thousand and make every request's
  // end cost as many steps. The operator's calls are never refused for it. 0: no bound.
  size_t max_waiting_per_cap = 1024;
};

class Client;

// A client's host-name lookups, for metrics (Client::dns_stats; any thread may read them).
struct DnsStats {
  size_t in_flight = 0;           // in the shared slots, abandoned ones included
  size_t reserved_in_flight = 0;  // in the reserved slots (ClientOptions::reserved_dns_lookups)
  size_t max_lookups = 0;         // ClientOptions::max_dns_lookups
  size_t reserved_lookups = 0;    // ClientOptions::reserved_dns_lookups
  uint64_t joined = 0;            // lookups that joined one of the same name in flight
  uint64_t refused = 0;           // lookups refused because every slot they may take was taken
  // Calls waiting on lookups in flight, counted as the lookups hold them: a call that gave up
  // waiting stays counted until its lookup ends or prunes its list (bounded: see resolver.cpp).
  size_t waiting = 0;
};

// An answer read as it arrives (a Kubernetes watch): the status and header first, then the
// body in pieces. The connection is never pooled again. Not thread-safe except close(); one
// read at a time.
class ResponseStream {
 public:
  ~ResponseStream();
  ResponseStream(const ResponseStream&) = delete;
  ResponseStream& operator=(const ResponseStream&) = delete;

  unsigned status() const;
  const Headers& headers() const;
  std::string header(std::string_view name) const { return find_header(headers(), name); }
  const Url& url() const;

  // The next bytes of the body as they arrive (at most 16 KiB; chunk boundaries are not
  // kept), or "" once the body has ended cleanly. Bytes that arrived together with an error
  // are returned first; the error comes with the next call, and every later call repeats it.
  // The caller bounds what it accumulates (one watch event, say).
  boost::asio::awaitable<Result<std::string>> read_some(Deadline deadline);
  // The rest of the body, at most `limit` bytes; a longer body is cut (not an error). For
  // reading an error answer's message.
  boost::asio::awaitable<Result<std::string>> read_rest(uint64_t limit, Deadline deadline);
  // From any thread: closes the connection; a pending read ends with an error.
  void close();

  struct Impl;
  explicit ResponseStream(std::shared_ptr<Impl> impl);

 private:
  std::shared_ptr<Impl> impl_;
};

class Client {
 public:
  // Never throws on bad options: a client whose TLS setup failed (a CA or client key that
  // does not parse) answers every call with that error; see init_status().
  Client(const boost::asio::any_io_executor& executor, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Status init_status() const;

  // Sends `request` and reads the whole answer, following redirects and retrying as the
  // request says, all before `deadline`. A connection taken from the pool that fails before
  // any byte of the answer (a keep-alive connection the server closed) is replaced by a fresh
  // one once, whatever the retry policy.
  boost::asio::awaitable<Result<Response>> send(Request request, Deadline deadline, Limits limits);

  // Sends `request` (no redirects, no retries but the stale-connection one) and returns once
  // the status and header have arrived before `deadline`; the body is then read from the
  // stream, each read with its own deadline. limits.max_header applies.
  boost::asio::awaitable<Result<std::unique_ptr<ResponseStream>>> open(Request request,
                                                                       Deadline deadline,
                                                                       Limits limits);

  uint64_t request_count() const;          // requests written so far (every attempt)
  uint64_t connection_count() const;       // connections opened so far
  DnsStats dns_stats() const;              // thread-safe
  OutageMemo::Stats outage_stats() const;  // thread-safe
  ConnStats conn_stats() const;            // thread-safe

  struct PoolStats {
    size_t idle = 0;  // connections resting in the pool now
    // Of those, how many still have a deadline armed on their stream: always 0. A pooled
    // connection's timer must never fire on the request that reuses it (the expires_never
    // rule); tests check it here.
    size_t idle_armed = 0;
  };
  PoolStats pool_stats() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// A cancellation that any thread may trigger, for coroutines that run on one executor (a
// strand) and were bound to it: co_spawn(strand, work(), bind_cancellation_slot(sig.slot(),
// handler)) with a handler that has no associated executor. cancel() posts the emission to
// that executor, so the signal is only ever touched there; net calls inside `work` then end
// with "cancelled", timers and other Asio operations with operation_aborted (co_await
// this_coro::throw_if_cancelled(false) to see them as values).
class CancelSignal {
 public:
  explicit CancelSignal(boost::asio::any_io_executor executor);
  // The slot to bind. Call it on the executor, or before anything may call cancel().
  boost::asio::cancellation_slot slot() const;
  // From any thread, idempotent: emits cancellation_type::terminal on the executor.
  void cancel() const;
  bool cancelled() const;

 private:
  struct State;
  std::shared_ptr<State> s_;
};

}  // namespace sigil::net
