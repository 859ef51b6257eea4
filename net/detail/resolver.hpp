// net/detail/resolver.hpp: name resolution for net::Client, on c-ares (Debian libc-ares).
//
// Why not Asio's resolver: it runs getaddrinfo() on one private thread per io_context, so a
// lookup cannot be abandoned (cancel() reaches it only before it starts) and one slow lookup
// holds up every other. Image names are chosen by whoever creates a pod, and so is the DNS
// server that answers for them: a name whose server never answers would stall every registry
// lookup in the process past every deadline. c-ares resolves on the client's own strand,
// each lookup on its own, and a lookup that passes its deadline is abandoned at once (c-ares
// finishes it by its own timeouts, counted against max_lookups until then). Those timeouts are
// ours (try_timeout, attempts), not c-ares' defaults: with one server those would keep a name
// that never answers for 5 + 10 + 20 + 40 = 75 s, sending 8 queries to the cluster's DNS.
// Concurrent lookups of one name share one c-ares lookup and one slot.
//
// It reads what getaddrinfo() would: /etc/resolv.conf (servers, search domains, ndots; not its
// timeout and attempts, which ResolverOptions sets), /etc/nsswitch.conf's order and /etc/hosts.
// Included only by net/*.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/deadline.hpp"
#include "common/host_lookup.hpp"
#include "common/result.hpp"
#include "net/client.hpp"

namespace sigil::net::detail {

struct ResolverOptions {
  // "host:port,host:port" (c-ares' CSV form): the DNS servers to ask instead of
  // /etc/resolv.conf's. Empty: resolv.conf. For tests, which run their own server on 127.0.0.1.
  std::string servers;
  // Lookups in flight at most, abandoned ones included until c-ares ends them; past it a lookup
  // fails at once (unavailable) instead of queueing behind names that never answer.
  size_t max_lookups = 256;
  // Lookups for reserved callers (Resolver::start's `reserved`) have this many slots more, which
  // other lookups never take.
  size_t reserved_lookups = 64;
  // Each query's first wait for an answer, doubled on each round through the servers, and the
  // rounds (c-ares' ARES_OPT_TIMEOUTMS and ARES_OPT_TRIES, which take precedence over
  // resolv.conf's `options timeout:` and `attempts:`). With one server a name that never
  // answers holds its slot for try_timeout * (2^attempts - 1): 3 s by default.
  std::chrono::milliseconds try_timeout{1000};
  int attempts = 2;
};

// One lookup, shared by the waiting call, c-ares' callback and a cancellation.
struct Lookup {
  explicit Lookup(const boost::asio::any_io_executor& ex) : wake(ex) {}
  boost::asio::steady_timer wake;  // waited on until the deadline; cancelled to wake the call
  bool done = false;               // c-ares has answered (status, endpoints)
  int status = 0;                  // c-ares status (ARES_SUCCESS ...)
  std::vector<boost::asio::ip::tcp::endpoint> endpoints;
  // The call was cancelled (it knows: CallState::cancelled): wake it.
  void cancel() { wake.cancel(); }
};

class Resolver {
 public:
  // Runs on `strand`: every member below must be called there.
  Resolver(const boost::asio::any_io_executor& strand, const ResolverOptions& options);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // The channel could not be set up (bad `servers`, no memory): every lookup fails with it.
  const Status& init_status() const;

  // The slots in use and the lookups joined and refused so far; any thread may call it.
  DnsStats stats() const;

  // Starts a lookup of host's IPv4 and IPv6 addresses; `lookup` is filled when c-ares answers
  // (possibly before this returns: /etc/hosts) and its timer cancelled. A lookup of a name
  // already being looked up joins it: no query, no slot. An error when the lookup could not
  // start (too many in flight, the channel failed). A `reserved` lookup takes a reserved slot,
  // or a shared one when every reserved slot is taken. The resolver holds `lookup` weakly: an
  // abandoned one is freed with its call.
  Status start(const std::string& host, uint16_t port, const std::shared_ptr<Lookup>& lookup,
               bool reserved = false);

  // The message for a c-ares status ("not found", "timeout" ...).
  static std::string describe(int status);

  // What a c-ares status means for the person reading the denial (common/host_lookup.hpp).
  static HostLookupFailure::Why why(int status);

  // Whether a lookup that ended with this c-ares status is worth starting again (after the
  // caller's backoff). "No such host" is an answer: never. No DNS server could be reached
  // (ECONNREFUSED, which costs no time): always. Otherwise (a timeout, a SERVFAIL: c-ares has
  // already asked every server `attempts` times) only for a `reserved` caller, the operator's
  // registries, whose admissions are worth another lookup inside the deadline; for a name a pod
  // author chose, a new lookup would repeat those queries and hold a slot as long again, per
  // retry, and run the admission to its deadline.
  static bool worth_retrying(int status, bool reserved);

  struct State;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace sigil::net::detail
