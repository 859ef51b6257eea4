// app/metrics.hpp: sigil's Prometheus metrics and the plain-HTTP /metrics listener.
//
// Role: the one registry of metrics (prometheus-cpp core, Debian's prometheus-cpp-dev) and the
// listener that serves it (config `metrics.listen`, off when empty). It lives in app/ so the
// modules stay free of it: the pure ones (common, crypto, oci, policy, admission) never see a
// metric, and server/ and net/ only call the plain observer functions app/ hands them
// (ServerOptions::observe_admission, net::ClientOptions::observer). Counters that modules already
// keep (the engine's cache statistics), the policy snapshot and the process's own figures
// (/proc/self) are read when Prometheus scrapes, so they cost nothing on the admission path.
// Hot-path series (admission latency by result, verdicts by reason) are created up front and
// found by index, never by label lookup.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "common/result.hpp"
#include "kube/events.hpp"
#include "net/client.hpp"
#include "server/validator.hpp"
#include "verify/engine.hpp"
#include "verify/verdict.hpp"

namespace sigil::app {

// What the policy source says at scrape time.
struct PolicyState {
  std::string source;   // "files" or "kube"
  bool synced = false;  // the policies in force are the source's (kube: first sync done)
  uint64_t generation = 0;
  size_t policies = 0;
  // serve --kube: compiles of the cluster's policy set (every spec change, Secret change and
  // resync; not a status write).
  std::optional<uint64_t> compiles;
  // serve --kube: per resource, seconds since its store was last the API server's (-1: never).
  std::vector<std::pair<std::string, double>> sync_age_seconds;
};

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // One answered admission (server::ServerOptions::observe_admission).
  void admission(std::string_view route, server::AdmissionResult result,
                 std::chrono::steady_clock::duration elapsed);
  // One image's verdict for POST /validate, by outcome and reason code (verify::name).
  void verdict(const verify::Verdict& v);
  // One registry HTTP exchange (net::Observer): by host and status ("error:<errc>" when there
  // was no answer), with its latency.
  void registry_exchange(const net::Exchange& e);
  // A credential token fetched from upstream, by source ("workload-identity",
  // "managed-identity", "acr-refresh-token", "acr-access-token": azure::Options::on_refresh) and
  // whether it worked.
  void token_refresh(std::string_view source, bool ok);

  // Read at scrape time. Each must outlive the Metrics or be reset before it goes.
  void set_engine(const verify::Engine* engine);
  void set_policy_state(std::function<PolicyState()> state);
  // Kubernetes Events (kube::EventRecorder): sigil_events_total{result} and
  // sigil_events_queued.
  void set_event_stats(std::function<kube::EventRecorderStats()> stats);
  // The registry client's host-name lookups (registry::HttpClient::dns_stats):
  // sigil_dns_lookups_in_flight{slots}, sigil_dns_lookup_slots{slots},
  // sigil_dns_lookups_joined_total and sigil_dns_lookups_refused_total.
  void set_dns_stats(std::function<net::DnsStats()> stats);
  // A client's memory of origins that cannot be reached (registry::HttpClient::outage_stats,
  // azure::AzureCredentials::outage_stats), summed over every source added:
  // sigil_registry_hosts_down{owner}, sigil_registry_fail_fast_total and
  // sigil_registry_went_down_total.
  void add_outage_stats(std::function<net::OutageMemo::Stats()> stats);
  // A client's open connections (registry::HttpClient::conn_stats,
  // azure::AzureCredentials::conn_stats), summed over every source added:
  // sigil_registry_connections_open{slots}, sigil_registry_connection_slots{slots},
  // sigil_registry_connection_waiters, sigil_registry_connection_waits_total and
  // sigil_registry_connection_wait_timeouts_total.
  void add_conn_stats(std::function<net::ConnStats()> stats);

  // The exposition, Prometheus text format 0.0.4.
  std::string scrape() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The process's own figures from /proc (Linux), as Prometheus' process collector names them.
struct ProcessFigures {
  double resident_bytes = 0, virtual_bytes = 0, cpu_seconds = 0, start_time_seconds = 0;
  double open_fds = 0, max_fds = 0;
};
Result<ProcessFigures> read_process_figures();

// GET /metrics (and /healthz) on a plain-HTTP port of its own: one request per connection, a
// small header cap, a read timeout, a cap on connections at once. Never the webhook's port.
class MetricsServer {
 public:
  MetricsServer(boost::asio::io_context& io, const Metrics& metrics, std::string listen);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds the listener ("ADDR:PORT", ":9090"); fails naming the address.
  Status start();
  void stop();
  uint16_t port() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sigil::app
