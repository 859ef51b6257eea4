// app/metrics.cpp: see metrics.hpp.
#include "app/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <vector>

#include "server/limits.hpp"
#include "server/router.hpp"
#include "server/server.hpp"

namespace sigil::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
namespace prom = prometheus;

namespace {

// Admission latency: the webhook answers in milliseconds when cached, in seconds when a
// registry is slow, and never past the API server's timeout (at most 30 s).
prom::Histogram::BucketBoundaries admission_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}
prom::Histogram::BucketBoundaries registry_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

constexpr server::AdmissionResult kResults[] = {
    server::AdmissionResult::allowed, server::AdmissionResult::warned,
    server::AdmissionResult::denied, server::AdmissionResult::error};
constexpr verify::Outcome kOutcomes[] = {verify::Outcome::allowed, verify::Outcome::warned,
                                         verify::Outcome::denied};
constexpr size_t kReasons = std::size(verify::kAllReasons);
constexpr size_t kMaxRegistryHosts = 64;

// The reason label: verify::name(), "NONE" for an admitted image (name() is "" for it).
std::string reason_label(verify::Reason r) {
  const std::string_view n = verify::name(r);
  return n.empty() ? std::string("NONE") : std::string(n);
}

prom::MetricFamily family(std::string name, std::string help, prom::MetricType type) {
  prom::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void add_value(prom::MetricFamily& f, double value,
               std::vector<prom::ClientMetric::Label> labels = {}) {
  prom::ClientMetric m;
  m.label = std::move(labels);
  if (f.type == prom::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
}

// "https://host:port" -> "host:port" (the label people filter on).
std::string host_of(const std::string& origin) {
  const auto p = origin.find("://");
  return p == std::string::npos ? origin : origin.substr(p + 3);
}

}  // namespace

struct Metrics::Impl {
  prom::Registry registry;
  prom::Family<prom::Histogram>& admission_seconds =
      prom::BuildHistogram()
          .Name("sigil_admission_duration_seconds")
          .Help(
              "Time from a POST /validate or /mutate body read to sigil's answer, by route and "
              "result (allowed, warned, denied, error; a TIMEOUT answer is denied)")
          .Register(registry);
  prom::Family<prom::Counter>& verdicts =
      prom::BuildCounter()
          .Name("sigil_verdicts_total")
          .Help(
              "Verdicts on images admitted through POST /validate, by outcome and reason code "
              "(README's reason table; NONE for an image its policies admit)")
          .Register(registry);
  prom::Family<prom::Counter>& registry_requests =
      prom::BuildCounter()
          .Name("sigil_registry_requests_total")
          .Help(
              "HTTP exchanges with registries (every attempt, retries and redirects included), "
              "by host and status (error:<kind> when there was no answer)")
          .Register(registry);
  prom::Family<prom::Histogram>& registry_seconds =
      prom::BuildHistogram()
          .Name("sigil_registry_request_duration_seconds")
          .Help("Latency of one HTTP exchange with a registry, by host")
          .Register(registry);
  prom::Family<prom::Counter>& token_refreshes =
      prom::BuildCounter()
          .Name("sigil_token_refreshes_total")
          .Help("Registry credential token refreshes by source and result (ok, failed)")
          .Register(registry);

  // route (validate, mutate) x result, created up front.
  std::array<std::array<prom::Histogram*, std::size(kResults)>, 2> admission_by{};
  // outcome x reason, created up front: a verdict costs an index and an atomic add.
  std::array<std::array<prom::Counter*, kReasons>, std::size(kOutcomes)> verdict_by{};

  std::mutex hosts_mu;
  // Registry hosts with series of their own, each set bounded: pod-named ones, the operator's.
  std::set<std::string, std::less<>> hosts;
  std::set<std::string, std::less<>> operator_hosts;  // net::Exchange::operator_listed

  mutable std::mutex mu;  // the scrape-time sources
  const verify::Engine* engine = nullptr;
  std::function<PolicyState()> policy_state;
  std::function<kube::EventRecorderStats()> event_stats;
  std::function<net::DnsStats()> dns_stats;
  std::vector<std::function<net::OutageMemo::Stats()>> outage_stats;
  std::vector<std::function<net::ConnStats()>> conn_stats;

  Impl() {
    const char* routes[] = {"validate", "mutate"};
    for (size_t r = 0; r < 2; ++r) {
      for (size_t i = 0; i < std::size(kResults); ++i) {
        admission_by[r][i] = &admission_seconds.Add(
            {{"route", routes[r]}, {"result", std::string(server::result_name(kResults[i]))}},
            admission_buckets());
      }
    }
    for (size_t o = 0; o < std::size(kOutcomes); ++o) {
      for (size_t i = 0; i < kReasons; ++i) {
        const verify::Reason reason = verify::kAllReasons[i];
        // Only the pairs that can happen: an allowed verdict reports NONE or
        // NO_MATCHING_POLICY; a denial never NONE.
        const bool possible =
            kOutcomes[o] == verify::Outcome::denied ? reason != verify::Reason::none : true;
        if (!possible) continue;
        verdict_by[o][i] = &verdicts.Add(
            {{"outcome", verify::name(kOutcomes[o])}, {"reason", reason_label(reason)}});
      }
    }
  }

  std::vector<prom::MetricFamily> scrape_time() const {
    std::vector<prom::MetricFamily> out;
    const verify::Engine* e = nullptr;
    std::function<PolicyState()> ps;
    std::function<kube::EventRecorderStats()> es;
    std::function<net::DnsStats()> ds;
    std::vector<std::function<net::OutageMemo::Stats()>> os;
    std::vector<std::function<net::ConnStats()>> cs;
    {
      std::lock_guard lock(mu);
      e = engine;
      ps = policy_state;
      es = event_stats;
      ds = dns_stats;
      os = outage_stats;
      cs = conn_stats;
    }
    if (!cs.empty()) {
      net::ConnStats c;  // the registry client's and the Azure identity's, summed
      for (const auto& source : cs) {
        const net::ConnStats one = source();
        c.open += one.open;
        c.reserved_open += one.reserved_open;
        c.max_connections += one.max_connections;
        c.reserved_connections += one.reserved_connections;
        c.waiting += one.waiting;
        c.waited += one.waited;
        c.timed_out += one.timed_out;
        c.refused += one.refused;
      }
      auto open = family("sigil_registry_connections_open",
                         "Connections open to registries, their token services and blob storage "
                         "and the Azure identity's endpoints (connecting, in use or idle), by "
                         "slots: shared, or reserved for the hosts the operator configured",
                         prom::MetricType::Gauge);
      add_value(open, static_cast<double>(c.open - std::min(c.open, c.reserved_open)),
                {{"slots", "shared"}});
      add_value(open, static_cast<double>(c.reserved_open), {{"slots", "reserved"}});
      auto slots = family("sigil_registry_connection_slots",
                          "Connections allowed open at once (registry.connections max and "
                          "reserved, and the Azure identity's)",
                          prom::MetricType::Gauge);
      add_value(slots, static_cast<double>(c.max_connections), {{"slots", "shared"}});
      add_value(slots, static_cast<double>(c.reserved_connections), {{"slots", "reserved"}});
      auto waiters = family("sigil_registry_connection_waiters",
                            "Requests waiting for a connection now, because a cap was reached "
                            "(registry.connections)",
                            prom::MetricType::Gauge);
      add_value(waiters, static_cast<double>(c.waiting));
      auto waits = family("sigil_registry_connection_waits_total",
                          "Requests that had to wait for a connection (registry.connections)",
                          prom::MetricType::Counter);
      add_value(waits, static_cast<double>(c.waited));
      auto timeouts = family("sigil_registry_connection_wait_timeouts_total",
                             "Requests whose deadline passed while they waited for a connection "
                             "(registry.connections): the registry call failed",
                             prom::MetricType::Counter);
      add_value(timeouts, static_cast<double>(c.timed_out));
      auto refused = family("sigil_registry_connection_waits_refused_total",
                            "Requests refused at once because 1024 others already waited for the "
                            "same cap (registry.connections): the registry call failed",
                            prom::MetricType::Counter);
      add_value(refused, static_cast<double>(c.refused));
      out.push_back(std::move(open));
      out.push_back(std::move(slots));
      out.push_back(std::move(waiters));
      out.push_back(std::move(waits));
      out.push_back(std::move(timeouts));
      out.push_back(std::move(refused));
    }
    if (!os.empty()) {
      net::OutageMemo::Stats o;  // the registry client's and the Azure identity's, summed
      for (const auto& source : os) {
        const net::OutageMemo::Stats one = source();
        o.down += one.down;
        o.down_listed += one.down_listed;
        o.refused += one.refused;
        o.went_down += one.went_down;
      }
      auto down = family("sigil_registry_hosts_down",
                         "Origins (registries, their token services and blob storage, the Azure "
                         "identity's endpoints) that could not be reached: their requests fail "
                         "at once until a probe connects (registry.failFast). owner=operator: "
                         "hosts the operator named; other: hosts pods named",
                         prom::MetricType::Gauge);
      add_value(down, static_cast<double>(o.down_listed), {{"owner", "operator"}});
      add_value(down, static_cast<double>(o.down - std::min(o.down, o.down_listed)),
                {{"owner", "other"}});
      auto fast = family("sigil_registry_fail_fast_total",
                         "Requests failed at once, unsent, because their origin could not be "
                         "reached (registry.failFast)",
                         prom::MetricType::Counter);
      add_value(fast, static_cast<double>(o.refused));
      auto went = family("sigil_registry_went_down_total",
                         "Times an origin was taken to be down after attempts in a row could "
                         "not connect (registry.failFast)",
                         prom::MetricType::Counter);
      add_value(went, static_cast<double>(o.went_down));
      out.push_back(std::move(down));
      out.push_back(std::move(fast));
      out.push_back(std::move(went));
    }
    if (ds) {
      const net::DnsStats d = ds();
      auto in_flight = family("sigil_dns_lookups_in_flight",
                              "Registry host-name lookups in flight, abandoned ones included, by "
                              "slots: shared (any host) or reserved (the registries the operator "
                              "configured or names)",
                              prom::MetricType::Gauge);
      add_value(in_flight, static_cast<double>(d.in_flight), {{"slots", "shared"}});
      add_value(in_flight, static_cast<double>(d.reserved_in_flight), {{"slots", "reserved"}});
      auto slots = family("sigil_dns_lookup_slots",
                          "Registry host-name lookups allowed in flight (registry.dns maxLookups "
                          "and reservedLookups)",
                          prom::MetricType::Gauge);
      add_value(slots, static_cast<double>(d.max_lookups), {{"slots", "shared"}});
      add_value(slots, static_cast<double>(d.reserved_lookups), {{"slots", "reserved"}});
      auto joined = family("sigil_dns_lookups_joined_total",
                           "Registry host-name lookups that joined one of the same name in flight",
                           prom::MetricType::Counter);
      add_value(joined, static_cast<double>(d.joined));
      auto refused = family("sigil_dns_lookups_refused_total",
                            "Registry host-name lookups refused because every slot they may take "
                            "was taken (the registry call fails REGISTRY_UNAVAILABLE)",
                            prom::MetricType::Counter);
      add_value(refused, static_cast<double>(d.refused));
      auto waiting = family("sigil_dns_lookup_waiters",
                            "Registry calls waiting on a host-name lookup in flight (one that "
                            "gave up waiting stays counted until its lookup ends or is pruned)",
                            prom::MetricType::Gauge);
      add_value(waiting, static_cast<double>(d.waiting));
      out.push_back(std::move(in_flight));
      out.push_back(std::move(waiting));
      out.push_back(std::move(slots));
      out.push_back(std::move(joined));
      out.push_back(std::move(refused));
    }
    if (es) {
      const kube::EventRecorderStats st = es();
      auto total = family("sigil_events_total",
                          "Kubernetes Events on denied and warned objects, by result: sent, failed "
                          "(the API server refused or did not answer), rate_limited (same object "
                          "and reason within the interval), throttled (over the global rate), "
                          "queue_full, invalid (a field Kubernetes would refuse)",
                          prom::MetricType::Counter);
      const std::pair<const char*, uint64_t> results[] = {{"sent", st.sent},
                                                          {"failed", st.failed},
                                                          {"rate_limited", st.rate_limited},
                                                          {"throttled", st.throttled},
                                                          {"queue_full", st.queue_full},
                                                          {"invalid", st.invalid}};
      for (const auto& [name, n] : results) {
        add_value(total, static_cast<double>(n), {{"result", name}});
      }
      auto queued = family("sigil_events_queued", "Kubernetes Events waiting to be sent",
                           prom::MetricType::Gauge);
      add_value(queued, static_cast<double>(st.queued));
      out.push_back(std::move(total));
      out.push_back(std::move(queued));
    }
    if (e != nullptr) {
      const auto st = e->stats();
      auto hits =
          family("sigil_verdict_cache_hits_total", "Verifications answered from the verdict cache",
                 prom::MetricType::Counter);
      add_value(hits, static_cast<double>(st.cache_hits));
      auto misses =
          family("sigil_verdict_cache_misses_total",
                 "Verifications the verdict cache could not answer", prom::MetricType::Counter);
      add_value(misses, static_cast<double>(st.cache_misses));
      auto coalesced = family("sigil_verdict_coalesced_total",
                              "Verifications that waited for identical work already in flight",
                              prom::MetricType::Counter);
      add_value(coalesced, static_cast<double>(st.coalesced));
      auto tags = family("sigil_tag_resolutions_total", "Tags resolved to digests for admissions",
                         prom::MetricType::Counter);
      add_value(tags, static_cast<double>(st.tag_resolutions));
      auto stale = family("sigil_stale_verdicts_total",
                          "Images admitted on a last-known-good verdict (cache.staleIfError) "
                          "because the registry could not be reached, by that failure's reason",
                          prom::MetricType::Counter);
      add_value(stale, static_cast<double>(st.stale_registry_unavailable),
                {{"reason", reason_label(verify::Reason::registry_unavailable)}});
      add_value(stale, static_cast<double>(st.stale_timeout),
                {{"reason", reason_label(verify::Reason::timeout)}});
      auto tag_hits = family("sigil_tag_cache_hits_total",
                             "Tags /mutate took from the pinning tag cache (cache.tagTtl)",
                             prom::MetricType::Counter);
      add_value(tag_hits, static_cast<double>(st.tag_cache_hits));
      out.push_back(std::move(hits));
      out.push_back(std::move(misses));
      out.push_back(std::move(coalesced));
      out.push_back(std::move(tags));
      out.push_back(std::move(stale));
      out.push_back(std::move(tag_hits));
    }
    if (ps) {
      PolicyState s;
      try {
        s = ps();
      } catch (...) {
        s.synced = false;
      }
      auto synced = family("sigil_policy_synced",
                           "1 when the policies in force are the source's (kube: the first list of "
                           "policies, trust roots and Secrets is done), else 0",
                           prom::MetricType::Gauge);
      add_value(synced, s.synced ? 1 : 0, {{"source", s.source}});
      auto gen = family("sigil_policy_generation",
                        "Generation of the policy set in force (grows at every reload or change)",
                        prom::MetricType::Gauge);
      add_value(gen, static_cast<double>(s.generation));
      auto count =
          family("sigil_policies", "Policies in the set in force", prom::MetricType::Gauge);
      add_value(count, static_cast<double>(s.policies));
      out.push_back(std::move(synced));
      out.push_back(std::move(gen));
      out.push_back(std::move(count));
      if (s.compiles) {
        auto compiles = family("sigil_policy_compiles_total",
                               "Compiles of the cluster's policy set (serve --kube): spec, Secret "
                               "and file changes, resyncs; never a status write",
                               prom::MetricType::Counter);
        add_value(compiles, static_cast<double>(*s.compiles));
        out.push_back(std::move(compiles));
      }
      if (!s.sync_age_seconds.empty()) {
        auto age = family("sigil_policy_sync_age_seconds",
                          "Seconds since sigil's copy of a policy resource was last known to be "
                          "the API server's (a list, a watch event or bookmark, a watch that ran "
                          "its course); -1 before its first list. Growing: policy changes are "
                          "not reaching sigil (watch failures, RBAC), see its log",
                          prom::MetricType::Gauge);
        for (const auto& [resource, seconds] : s.sync_age_seconds) {
          add_value(age, seconds, {{"resource", resource}});
        }
        out.push_back(std::move(age));
      }
    }
    if (auto p = read_process_figures(); p.ok()) {
      auto add = [&](const char* name, const char* help, prom::MetricType t, double v) {
        auto f = family(name, help, t);
        add_value(f, v);
        out.push_back(std::move(f));
      };
      add("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
          prom::MetricType::Counter, p->cpu_seconds);
      add("process_resident_memory_bytes", "Resident memory size in bytes.",
          prom::MetricType::Gauge, p->resident_bytes);
      add("process_virtual_memory_bytes", "Virtual memory size in bytes.", prom::MetricType::Gauge,
          p->virtual_bytes);
      add("process_open_fds", "Number of open file descriptors.", prom::MetricType::Gauge,
          p->open_fds);
      add("process_max_fds", "Maximum number of open file descriptors.", prom::MetricType::Gauge,
          p->max_fds);
      add("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          prom::MetricType::Gauge, p->start_time_seconds);
    }
    return out;
  }
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {}
Metrics::~Metrics() = default;

void Metrics::admission(std::string_view route, server::AdmissionResult result,
                        std::chrono::steady_clock::duration elapsed) {
  size_t r = route == "mutate" ? 1 : 0;
  size_t i = 0;
  while (i < std::size(kResults) && kResults[i] != result) ++i;
  if (i == std::size(kResults)) i = std::size(kResults) - 1;  // none: counted as error
  impl_->admission_by[r][i]->Observe(std::chrono::duration<double>(elapsed).count());
}

void Metrics::verdict(const verify::Verdict& v) {
  const verify::Reason reason = verify::reported_reason(v);
  size_t o = 0;
  while (o < std::size(kOutcomes) && kOutcomes[o] != v.outcome) ++o;
  size_t i = 0;
  while (i < kReasons && verify::kAllReasons[i] != reason) ++i;
  if (o == std::size(kOutcomes) || i == kReasons) return;
  if (prom::Counter* c = impl_->verdict_by[o][i]) c->Increment();
}

void Metrics::registry_exchange(const net::Exchange& e) {
  // Hosts come from the images pods name (where a policy's globs match them): past
  // kMaxRegistryHosts distinct ones, the rest share host="other", so pods cannot grow the
  // series without bound. The operator's registries (and where they redirect) have series of
  // their own, kMaxRegistryHosts more, so pods naming hosts first cannot take theirs: only the
  // hosts the operator named one by one (net::Exchange::operator_listed), never those a pattern
  // such as "*.azurecr.io" allows, since pods choose names inside it. Bounded too.
  std::string host = host_of(e.origin);
  {
    std::lock_guard lock(impl_->hosts_mu);
    auto& own = e.operator_listed ? impl_->operator_hosts : impl_->hosts;
    if (impl_->hosts.count(host) == 0 && impl_->operator_hosts.count(host) == 0) {
      if (own.size() < kMaxRegistryHosts) {
        own.insert(host);
      } else {
        host = "other";
      }
    }
  }
  const std::string status =
      e.status != 0 ? std::to_string(e.status) : std::string("error:") + errc_name(e.error);
  impl_->registry_requests.Add({{"host", host}, {"status", status}}).Increment();
  impl_->registry_seconds.Add({{"host", host}}, registry_buckets())
      .Observe(std::chrono::duration<double>(e.duration).count());
}

void Metrics::token_refresh(std::string_view source, bool ok) {
  impl_->token_refreshes.Add({{"source", std::string(source)}, {"result", ok ? "ok" : "failed"}})
      .Increment();
}

void Metrics::set_engine(const verify::Engine* engine) {
  std::lock_guard lock(impl_->mu);
  impl_->engine = engine;
}

void Metrics::set_policy_state(std::function<PolicyState()> state) {
  std::lock_guard lock(impl_->mu);
  impl_->policy_state = std::move(state);
}

void Metrics::set_event_stats(std::function<kube::EventRecorderStats()> stats) {
  std::lock_guard lock(impl_->mu);
  impl_->event_stats = std::move(stats);
}

void Metrics::set_dns_stats(std::function<net::DnsStats()> stats) {
  std::lock_guard lock(impl_->mu);
  impl_->dns_stats = std::move(stats);
}

void Metrics::add_outage_stats(std::function<net::OutageMemo::Stats()> stats) {
  std::lock_guard lock(impl_->mu);
  impl_->outage_stats.push_back(std::move(stats));
}

void Metrics::add_conn_stats(std::function<net::ConnStats()> stats) {
  std::lock_guard lock(impl_->mu);
  impl_->conn_stats.push_back(std::move(stats));
}

std::string Metrics::scrape() const {
  std::vector<prom::MetricFamily> all = impl_->registry.Collect();
  auto more = impl_->scrape_time();
  all.insert(all.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  return prom::TextSerializer().Serialize(all);
}

// ------------------------------------------------------------------------------ /proc/self

Result<ProcessFigures> read_process_figures() {
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // The command name (field 2) is in parentheses and may hold spaces: fields count from the last
  // ')'. After it: state (3), ... utime (14), stime (15), ... starttime (22), vsize (23), rss (24).
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return make_error(Errc::not_found, "/proc/self/stat unreadable");
  std::istringstream in(stat.substr(close + 2));
  std::vector<std::string> f;
  for (std::string x; in >> x;) f.push_back(x);
  if (f.size() < 22) return make_error(Errc::parse_error, "/proc/self/stat: too few fields");
  auto field = [&](int n) { return std::stod(f[static_cast<size_t>(n - 3)]); };
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  ProcessFigures p;
  p.cpu_seconds = (field(14) + field(15)) / ticks;
  p.virtual_bytes = field(23);
  p.resident_bytes = field(24) * page;
  std::ifstream proc_stat("/proc/stat");
  for (std::string line; std::getline(proc_stat, line);) {
    if (line.rfind("btime ", 0) == 0) {
      p.start_time_seconds = std::stod(line.substr(6)) + field(22) / ticks;
      break;
    }
  }
  std::error_code ec;
  double fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  p.open_fds = fds;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) p.max_fds = static_cast<double>(lim.rlim_cur);
  return p;
}

// --------------------------------------------------------------------------- MetricsServer

struct MetricsServer::Impl : std::enable_shared_from_this<MetricsServer::Impl> {
  // 32 connections, 8 from one address; a scrape answers in milliseconds and closes. A
  // connection still waiting for its request when the caps are reached is evicted for the new
  // one, the longest waiting first (the webhook port's ConnectionTable): otherwise anyone who
  // reaches the port holds Prometheus out with 32 silent connections, renewed every 5 s.
  static constexpr size_t kMaxConnections = 32;
  static constexpr size_t kMaxPerPeer = 8;
  static constexpr auto kReadTimeout = std::chrono::seconds(5);

  Impl(asio::io_context& io, const Metrics& m, std::string l)
      : metrics(m), listen(std::move(l)), acceptor(asio::make_strand(io)) {
    router.get("/metrics", [this](server::RouteRequest) -> asio::awaitable<server::HttpReply> {
      server::HttpReply r;
      r.status = 200;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = metrics.scrape();
      co_return r;
    });
    router.get("/healthz", [](server::RouteRequest) -> asio::awaitable<server::HttpReply> {
      co_return server::text_reply(200, "ok");
    });
  }

  const Metrics& metrics;
  const std::string listen;
  tcp::acceptor acceptor;
  server::Router router;
  server::ConnectionTable table{server::ConnectionLimits{kMaxConnections, kMaxPerPeer, {}}};
  // How to close each connection in the table: on its own strand, never from the acceptor's.
  std::mutex closers_mu;
  std::map<server::ConnectionTable::Id, std::function<void()>> closers;
  std::atomic<uint16_t> bound{0};

  void evict(server::ConnectionTable::Id id) {
    std::function<void()> close;
    {
      std::lock_guard lock(closers_mu);
      auto it = closers.find(id);
      if (it == closers.end()) return;
      close = std::move(it->second);
      closers.erase(it);
    }
    close();
  }

  Status start() {
    auto addr = server::parse_listen_address(listen);
    if (!addr) {
      return make_error(Errc::invalid_argument, "metrics.listen: " + addr.error().message);
    }
    boost::system::error_code ec;
    const auto ip = asio::ip::make_address(addr->host, ec);
    if (ec) return make_error(Errc::invalid_argument, "metrics.listen: bad address " + listen);
    const tcp::endpoint ep(ip, addr->port);
    if (acceptor.open(ep.protocol(), ec); ec) {
      return make_error(Errc::unavailable, "metrics.listen " + listen + ": " + ec.message());
    }
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (acceptor.bind(ep, ec); ec) {
      return make_error(Errc::unavailable, "metrics.listen " + listen + ": " + ec.message());
    }
    if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
      return make_error(Errc::unavailable, "metrics.listen " + listen + ": " + ec.message());
    }
    bound = acceptor.local_endpoint().port();
    asio::co_spawn(acceptor.get_executor(), accept_loop(shared_from_this()), asio::detached);
    return {};
  }

  static asio::awaitable<void> accept_loop(std::shared_ptr<Impl> self) {
    for (;;) {
      auto [ec, socket] = co_await self->acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) co_return;
      if (ec) {
        // EMFILE and friends: accept() fails at once, again and again; wait instead of
        // spinning a core.
        asio::steady_timer wait(self->acceptor.get_executor(), std::chrono::milliseconds(50));
        co_await wait.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      boost::system::error_code pec;
      const auto remote = socket.remote_endpoint(pec);
      if (pec) continue;  // gone already
      const auto now = std::chrono::steady_clock::now();
      const auto admitted = self->table.admit(remote.address().to_string(), now);
      if (admitted.evict) self->evict(*admitted.evict);
      if (!admitted.admitted) continue;  // closed as it goes out of scope
      auto ex = asio::make_strand(self->acceptor.get_executor());
      auto conn = std::make_shared<Conn>(std::move(socket));
      {
        std::lock_guard lock(self->closers_mu);
        // Run on the session's strand, so it sees `answering` as the session left it: the table
        // picked this connection while it waited for a request, which may have come since.
        self->closers[admitted.id] = [ex, weak = std::weak_ptr<Conn>(conn)] {
          asio::post(ex, [weak] {
            if (auto c = weak.lock(); c && !c->answering) c->stream.cancel();
          });
        };
      }
      asio::co_spawn(ex, session(self, std::move(conn), admitted.id), asio::detached);
    }
  }

  // One connection: its stream, and whether it is being answered (then never cancelled). Both
  // touched only on the session's strand.
  struct Conn {
    explicit Conn(tcp::socket s) : stream(std::move(s)) {}
    beast::tcp_stream stream;
    bool answering = false;
  };

  static asio::awaitable<void> session(std::shared_ptr<Impl> self, std::shared_ptr<Conn> conn,
                                       server::ConnectionTable::Id id) {
    struct Release {
      Impl* impl;
      server::ConnectionTable::Id id;
      ~Release() {
        impl->table.remove(id);
        std::lock_guard lock(impl->closers_mu);
        impl->closers.erase(id);
      }
    } release{self.get(), id};
    beast::tcp_stream& stream = conn->stream;
    beast::flat_buffer buffer(8 * 1024);
    http::request_parser<http::empty_body> parser;
    parser.header_limit(8 * 1024);
    parser.body_limit(0);
    stream.expires_after(kReadTimeout);
    auto [rec, rn] =
        co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    (void)rn;
    if (rec) co_return;
    // Answering now: never evicted, and a cancel already posted for it does nothing.
    conn->answering = true;
    self->table.set_busy(id, true, std::chrono::steady_clock::now());
    const auto& req = parser.get();
    server::RouteRequest rr;
    rr.method = req.method() == http::verb::get    ? server::Method::get
                : req.method() == http::verb::head ? server::Method::head
                                                   : server::Method::other;
    const std::string_view target(req.target().data(), req.target().size());
    rr.path = std::string(target.substr(0, target.find('?')));
    server::HttpReply reply;
    try {
      reply = co_await self->router.dispatch(std::move(rr));
    } catch (...) {
      reply = server::text_reply(500, "internal error");
    }
    http::response<http::string_body> res{static_cast<http::status>(reply.status), req.version()};
    res.set(http::field::content_type,
            reply.content_type.empty() ? "text/plain" : reply.content_type);
    if (!reply.allow.empty()) res.set(http::field::allow, reply.allow);
    res.keep_alive(false);
    if (req.method() == http::verb::head) {
      res.content_length(reply.body.size());
    } else {
      res.body() = std::move(reply.body);
      res.prepare_payload();
    }
    stream.expires_after(kReadTimeout);
    if (req.method() == http::verb::head) {
      http::response_serializer<http::string_body> sr(res);
      sr.split(true);
      auto [wec, wn] =
          co_await http::async_write_header(stream, sr, asio::as_tuple(asio::use_awaitable));
      (void)wec;
      (void)wn;
    } else {
      auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      (void)wec;
      (void)wn;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }
};

MetricsServer::MetricsServer(asio::io_context& io, const Metrics& metrics, std::string listen)
    : impl_(std::make_shared<Impl>(io, metrics, std::move(listen))) {}

MetricsServer::~MetricsServer() {
  stop();
}

Status MetricsServer::start() {
  return impl_->start();
}

void MetricsServer::stop() {
  asio::post(impl_->acceptor.get_executor(), [impl = impl_] {
    boost::system::error_code ec;
    impl->acceptor.close(ec);
  });
}

uint16_t MetricsServer::port() const {
  return impl_->bound.load();
}

}  // namespace sigil::app
