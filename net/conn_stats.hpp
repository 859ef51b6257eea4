// net/conn_stats.hpp: a net::Client's open connections, for metrics (net::Client::conn_stats).
// Apart from net/client.hpp so that headers which only report them need not include it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sigil::net {

// A client's open connections (Client::conn_stats; any thread may read them).
struct ConnStats {
  size_t open = 0;           // open now: connecting, in use and idle
  size_t reserved_open = 0;  // of those, in the reserved slots (ClientOptions)
  size_t max_connections = 0;
  size_t reserved_connections = 0;
  size_t waiting = 0;      // calls waiting for a connection now (a cap reached)
  uint64_t waited = 0;     // calls that had to wait
  uint64_t timed_out = 0;  // of those, calls whose deadline passed (or were cancelled) first
  uint64_t refused = 0;    // calls refused at once: max_waiting_per_cap calls already waited
};

}  // namespace sigil::net
