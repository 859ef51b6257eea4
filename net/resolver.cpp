// net/resolver.cpp: c-ares on the client's strand (see net/detail/resolver.hpp).
//
// c-ares tells us which of its sockets it wants to read or write (the socket-state callback)
// and when its next timeout is (ares_timeout); we wait for those with Asio and hand each event
// back (ares_process_fd), all on the strand, so c-ares is only ever entered from one place at a
// time. Its callbacks (the socket state, a finished lookup) run inside those calls.
#include "net/detail/resolver.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>

namespace sigil::net::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// A descriptor c-ares owns: we wait on it, never close it (release() before it goes).
struct Watch {
  std::unique_ptr<asio::posix::stream_descriptor> sd;
  uint64_t gen = 0;  // tells a new socket on a reused descriptor number from the old one
  bool want_read = false, want_write = false;
  bool reading = false, writing = false;  // a wait is pending
};

bool ready_now(int fd, short events) {
  pollfd p{};
  p.fd = fd;
  p.events = events;
  return ::poll(&p, 1, 0) > 0;
}

// One c-ares lookup of one name, and every call waiting for it. Waiters are held weakly: a call
// that abandoned its wait (deadline, cancellation) frees its Lookup, and its entry here is only
// skipped when the answer comes.
struct Flight {
  bool reserved_slot = false;
  std::vector<std::pair<std::weak_ptr<Lookup>, uint16_t>> waiters;  // with each one's port
  // When the list reaches this size, the abandoned waiters are dropped and it is set to twice
  // what is left (at least kPruneWaitersAt): a burst of admissions naming one host whose DNS
  // never answers does not grow the list without bound, and joining stays amortised O(1).
  size_t prune_at = 0;
};
constexpr size_t kPruneWaitersAt = 64;

}  // namespace

struct Resolver::State : std::enable_shared_from_this<State> {
  explicit State(const asio::any_io_executor& ex) : strand(ex), timer(ex) {}
  ~State() { shutdown(); }

  asio::any_io_executor strand;
  asio::steady_timer timer;  // c-ares' next timeout
  ares_channel channel = nullptr;
  Status init;
  size_t max_lookups = 256;
  size_t max_reserved = 64;
  // Changed on the strand only; atomic so that stats() may read them from another thread.
  std::atomic<size_t> in_flight{0};           // in shared slots
  std::atomic<size_t> reserved_in_flight{0};  // in reserved slots
  std::atomic<uint64_t> joined{0}, refused{0};
  std::atomic<size_t> waiting{0};  // entries of the flights' waiter lists
  // The lookups in flight, by name: one of a name already asked for is joined, not repeated.
  std::map<std::string, std::shared_ptr<Flight>, std::less<>> flights;
  uint64_t next_gen = 1;
  std::map<ares_socket_t, Watch> watches;

  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<State*>(data)->sock_state(fd, readable != 0, writable != 0);
  }

  void forget(ares_socket_t fd) {
    auto it = watches.find(fd);
    if (it == watches.end()) return;
    boost::system::error_code ec;
    it->second.sd->cancel(ec);  // pending waits end with operation_aborted
    (void)it->second.sd->release();
    watches.erase(it);
  }

  void sock_state(ares_socket_t fd, bool readable, bool writable) {
    if (!readable && !writable) {  // c-ares is about to close it
      forget(fd);
      return;
    }
    auto& w = watches[fd];
    if (!w.sd) {
      w.sd = std::make_unique<asio::posix::stream_descriptor>(strand, fd);
      w.gen = next_gen++;
    }
    w.want_read = readable;
    w.want_write = writable;
    arm(fd);
  }

  // Keeps a wait pending for what c-ares wants of fd. Asio's epoll reactor is edge-triggered
  // and a wait is not speculative: readiness that came before the wait was queued would not
  // wake it, so the descriptor is also polled once right after a wait is queued (only then: a
  // descriptor that stays ready must not spin the strand).
  void arm(ares_socket_t fd) {
    auto it = watches.find(fd);
    if (it == watches.end() || !channel) return;
    Watch& w = it->second;
    const uint64_t gen = w.gen;
    // Queues a wait in one direction unless one is pending; true when it queued one.
    auto wait = [&](bool want, bool& pending, bool read) {
      if (!want || pending) return false;
      pending = true;
      w.sd->async_wait(
          read ? asio::posix::descriptor_base::wait_read : asio::posix::descriptor_base::wait_write,
          [self = shared_from_this(), fd, gen, read](boost::system::error_code ec) {
            self->ready(fd, gen, read, ec);
          });
      return true;
    };
    const bool queued_read = wait(w.want_read, w.reading, true);
    const bool queued_write = wait(w.want_write, w.writing, false);
    const bool r = queued_read && ready_now(fd, POLLIN);
    const bool wr = queued_write && ready_now(fd, POLLOUT);
    if (r || wr) {
      // Handled later on the strand, not from inside the c-ares call that got us here.
      asio::post(strand, [self = shared_from_this(), fd, gen, r, wr] {
        auto at = self->watches.find(fd);
        if (!self->channel || at == self->watches.end() || at->second.gen != gen) return;
        ares_process_fd(self->channel, r ? fd : ARES_SOCKET_BAD, wr ? fd : ARES_SOCKET_BAD);
        self->arm(fd);
        self->rearm_timer();
      });
    }
  }

  void ready(ares_socket_t fd, uint64_t gen, bool read, boost::system::error_code ec) {
    auto it = watches.find(fd);
    if (it == watches.end() || it->second.gen != gen) return;  // released, or a new socket
    (read ? it->second.reading : it->second.writing) = false;
    if (ec || !channel) return;
    ares_process_fd(channel, read ? fd : ARES_SOCKET_BAD, read ? ARES_SOCKET_BAD : fd);
    it = watches.find(fd);
    if (it != watches.end() && it->second.gen == gen) arm(fd);
    rearm_timer();
  }

  void rearm_timer() {
    if (!channel) return;
    timeval buf{};
    timeval* tv = ares_timeout(channel, nullptr, &buf);
    if (!tv) {
      timer.cancel();
      return;
    }
    timer.expires_after(std::chrono::seconds(tv->tv_sec) + std::chrono::microseconds(tv->tv_usec) +
                        std::chrono::milliseconds(1));
    timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || !self->channel) return;
      ares_process_fd(self->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      self->rearm_timer();
    });
  }

  // Ends every lookup (their callbacks see ARES_EDESTRUCTION) and lets go of the sockets.
  void shutdown() {
    if (channel) {
      ares_channel c = channel;
      channel = nullptr;
      ares_destroy(c);  // closes its sockets: sock_state(fd, 0, 0) for each
    }
    while (!watches.empty()) forget(watches.begin()->first);
    timer.cancel();
  }
};

namespace {

// What c-ares carries for one lookup until its callback, which always comes exactly once.
struct Pending {
  Resolver::State* state;
  std::string host;
  std::shared_ptr<Flight> flight;
};

void on_addrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
  std::unique_ptr<Pending> p(static_cast<Pending*>(arg));
  Resolver::State& st = *p->state;
  --(p->flight->reserved_slot ? st.reserved_in_flight : st.in_flight);
  st.waiting -= p->flight->waiters.size();
  if (auto it = st.flights.find(p->host); it != st.flights.end() && it->second == p->flight) {
    st.flights.erase(it);  // a later lookup of this name asks again
  }
  std::vector<asio::ip::address> addresses;
  if (status == ARES_SUCCESS && res) {
    for (const ares_addrinfo_node* n = res->nodes; n; n = n->ai_next) {
      if (n->ai_family == AF_INET && n->ai_addrlen >= sizeof(sockaddr_in)) {
        sockaddr_in sa{};
        std::memcpy(&sa, n->ai_addr, sizeof sa);
        addresses.emplace_back(asio::ip::address_v4(ntohl(sa.sin_addr.s_addr)));
      } else if (n->ai_family == AF_INET6 && n->ai_addrlen >= sizeof(sockaddr_in6)) {
        sockaddr_in6 sa{};
        std::memcpy(&sa, n->ai_addr, sizeof sa);
        asio::ip::address_v6::bytes_type b;
        std::memcpy(b.data(), &sa.sin6_addr, b.size());
        addresses.emplace_back(asio::ip::address_v6(b, sa.sin6_scope_id));
      }
    }
  }
  if (res) ares_freeaddrinfo(res);
  for (const auto& [weak, port] : p->flight->waiters) {
    const std::shared_ptr<Lookup> l = weak.lock();
    if (!l) continue;  // abandoned
    l->status = status;
    for (const auto& a : addresses) l->endpoints.emplace_back(a, port);
    l->done = true;
    l->wake.cancel();
  }
}

std::once_flag library_once;
int library_status = ARES_SUCCESS;

}  // namespace

Resolver::Resolver(const asio::any_io_executor& strand, const ResolverOptions& options)
    : s_(std::make_shared<State>(strand)) {
  s_->max_lookups = options.max_lookups;
  s_->max_reserved = options.reserved_lookups;
  if (options.try_timeout.count() <= 0 || options.try_timeout > std::chrono::hours(1) ||
      options.attempts < 1 || options.attempts > 16) {
    s_->init = make_error(Errc::invalid_argument,
                          "DNS: the try timeout must be in (0, 1h], the attempts 1 to 16");
    return;
  }
  std::call_once(library_once, [] { library_status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (library_status != ARES_SUCCESS) {
    s_->init = make_error(Errc::internal, "DNS resolver: " + describe(library_status));
    return;
  }
  ares_options o{};
  o.sock_state_cb = &State::on_sock_state;
  o.sock_state_cb_data = s_.get();
  o.timeout = static_cast<int>(options.try_timeout.count());  // milliseconds: ARES_OPT_TIMEOUTMS
  o.tries = options.attempts;
  ares_channel channel = nullptr;
  if (int rc = ares_init_options(&channel, &o,
                                 ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
      rc != ARES_SUCCESS) {
    s_->init = make_error(Errc::internal, "DNS resolver: " + describe(rc));
    return;
  }
  s_->channel = channel;
  if (!options.servers.empty()) {
    if (int rc = ares_set_servers_ports_csv(channel, options.servers.c_str()); rc != ARES_SUCCESS) {
      s_->init = make_error(Errc::invalid_argument,
                            "DNS servers '" + options.servers + "': " + describe(rc));
    }
  }
}

Resolver::~Resolver() {
  // Pending waits hold the state; they end once the channel and its sockets are gone. That
  // happens on the strand, where c-ares is entered; if the strand never runs it again (its
  // io_context is being destroyed), the state's destructor does it.
  const asio::any_io_executor strand = s_->strand;  // before the lambda takes s_
  asio::post(strand, [s = std::move(s_)] { s->shutdown(); });
}

const Status& Resolver::init_status() const {
  return s_->init;
}

DnsStats Resolver::stats() const {
  DnsStats d;
  d.in_flight = s_->in_flight.load(std::memory_order_relaxed);
  d.reserved_in_flight = s_->reserved_in_flight.load(std::memory_order_relaxed);
  d.max_lookups = s_->max_lookups;
  d.reserved_lookups = s_->max_reserved;
  d.joined = s_->joined.load(std::memory_order_relaxed);
  d.refused = s_->refused.load(std::memory_order_relaxed);
  d.waiting = s_->waiting.load(std::memory_order_relaxed);
  return d;
}

std::string Resolver::describe(int status) {
  switch (status) {
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
      return "no such host";
    case ARES_ETIMEOUT:
      return "the DNS server did not answer";
    case ARES_ECONNREFUSED:
      return "the DNS server refused the connection";
    default:
      return ares_strerror(status);
  }
}

HostLookupFailure::Why Resolver::why(int status) {
  switch (status) {
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
      return HostLookupFailure::Why::no_such_host;
    case ARES_ETIMEOUT:
      return HostLookupFailure::Why::no_answer;
    default:
      return HostLookupFailure::Why::failed;
  }
}

bool Resolver::worth_retrying(int status, bool reserved) {
  switch (status) {
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
      return false;
    case ARES_ECONNREFUSED:
      return true;
    default:
      return reserved;
  }
}

Status Resolver::start(const std::string& host, uint16_t port,
                       const std::shared_ptr<Lookup>& lookup, bool reserved) {
  if (!s_->init) return s_->init.error();
  if (!s_->channel) return make_error(Errc::unavailable, "resolving " + host + ": shut down");
  if (auto it = s_->flights.find(host); it != s_->flights.end()) {
    Flight& f = *it->second;
    if (f.waiters.size() >= std::max(f.prune_at, kPruneWaitersAt)) {
      s_->waiting -= std::erase_if(f.waiters, [](const auto& w) { return w.first.expired(); });
      f.prune_at = 2 * f.waiters.size();
    }
    f.waiters.emplace_back(lookup, port);
    ++s_->waiting;
    s_->joined.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  const bool reserved_slot = reserved && s_->reserved_in_flight < s_->max_reserved;
  if (!reserved_slot && s_->in_flight >= s_->max_lookups) {
    s_->refused.fetch_add(1, std::memory_order_relaxed);
    const size_t busy = s_->in_flight + (reserved ? s_->reserved_in_flight.load() : 0);
    return make_error(Errc::unavailable, "resolving " + host + ": " + std::to_string(busy) +
                                             " DNS lookups are already in flight");
  }
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  ++(reserved_slot ? s_->reserved_in_flight : s_->in_flight);
  auto flight = std::make_shared<Flight>();
  flight->reserved_slot = reserved_slot;
  flight->waiters.emplace_back(lookup, port);
  ++s_->waiting;
  // In the map before c-ares may answer: /etc/hosts answers inside ares_getaddrinfo.
  s_->flights.emplace(host, flight);
  auto* p = new Pending{s_.get(), host, std::move(flight)};
  ares_getaddrinfo(s_->channel, host.c_str(), nullptr, &hints, &on_addrinfo, p);
  s_->rearm_timer();
  return {};
}

}  // namespace sigil::net::detail
