// app/serve.cpp: `sigil serve`, the wiring of the webhook: policies (files, or the cluster
// with --kube), the registry client and verify::Engine, the Webhook bridge, server::Server,
// metrics, Events and the self-managed certificate; then signals (SIGHUP reload, SIGTERM lame
// duck and drain) and the io_context on N threads. Flags are bound in commands.cpp.
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "app/azure_glue.hpp"
#include "app/cluster.hpp"
#include "app/commands_detail.hpp"
#include "app/compile_cluster.hpp"
#include "app/config.hpp"
#include "app/events.hpp"
#include "app/metrics.hpp"
#include "app/openssl_alloc.hpp"
#include "app/selfcert.hpp"
#include "app/trust.hpp"
#include "app/webhook.hpp"
#include "azure/azure.hpp"
#include "common/clock.hpp"
#include "kube/client.hpp"
#include "kube/config.hpp"
#include "registry/http_client.hpp"
#include "server/server.hpp"
#include "verify/engine.hpp"

namespace sigil::app {

namespace asio = boost::asio;

namespace {

// The file descriptors sigil may open: the soft limit raised to the hard one first (as Go's
// runtime does; many container runtimes leave the soft limit at 1024). 0 when unknown.
uint64_t raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return lim.rlim_cur == RLIM_INFINITY ? 0 : static_cast<uint64_t>(lim.rlim_cur);
}

asio::awaitable<void> read_kms_key_ahead(std::shared_ptr<verify::KeyResolver> keys,
                                         std::string uri) {
  auto key = co_await keys->key(uri, std::chrono::steady_clock::now() + std::chrono::seconds(30));
  if (key.ok()) {
    spdlog::debug("key.kms {}: read ahead", uri);
  } else {
    spdlog::warn(
        "key.kms {}: could not be read ahead (admissions under it are denied "
        "POLICY_UNAVAILABLE until it can): {}",
        uri, key.error().message);
  }
}

// Reads every `key.kms` key the set names, in the background, so that the first admission
// under it does not wait for AAD and Key Vault (the resolver caches what it reads, and never a
// failure). A key that cannot be read is logged here, once per set.
void read_kms_keys_ahead(asio::io_context& io, const std::shared_ptr<verify::KeyResolver>& keys,
                         const policy::PolicySet& set) {
  if (!keys) return;
  std::set<std::string> uris;
  for (const auto& policy : set.policies()) {
    for (const auto& authority : policy.authorities) {
      if (!authority.kms.empty()) uris.insert(authority.kms);
    }
  }
  for (const auto& uri : uris) asio::co_spawn(io, read_kms_key_ahead(keys, uri), asio::detached);
}

}  // namespace

size_t detail::inbound_connections(size_t configured, uint64_t fd_limit,
                                   uint64_t registry_outbound) {
  const uint64_t kOutbound =
      registry_outbound + azure::kMaxConnections + azure::kReservedConnections + 256;
  if (fd_limit == 0 || fd_limit >= configured + kOutbound) return configured;
  const uint64_t half = fd_limit > 64 ? (fd_limit - 64) / 2 : 0;
  return static_cast<size_t>(std::min<uint64_t>(configured, std::max<uint64_t>(16, half)));
}

int detail::run_serve(Settings s) {
  if (s.self_cert.enabled && (!s.tls_cert.empty() || !s.tls_key.empty())) {
    return config_error("serve: selfCert.enabled and --tls-cert/--tls-key exclude each other");
  }
  if (!s.self_cert.enabled && (s.tls_cert.empty() || s.tls_key.empty())) {
    return config_error(
        "serve: --tls-cert and --tls-key are required (sigil serves HTTPS only), or "
        "selfCert.enabled in --config");
  }
  if (s.policy_paths.empty() && !s.kube.enabled) {
    return config_error("serve: give at least one --policy PATH, or --kube");
  }
  auto no_match = policy::parse_no_match(s.no_match);
  if (!no_match.ok()) return config_error("--no-match-policy: " + no_match.error().message);
  auto level = spdlog::level::from_str(s.log_level);
  if (level == spdlog::level::off && s.log_level != "off")
    return config_error("--log-level: unknown level \"" + s.log_level + "\"");
  spdlog::set_level(level);

  std::atomic<uint64_t> generation{1};
  const auto default_root = default_trust_root(s.trusted_root_file);
  // Without --kube the files are the whole set; with it they are loaded by the cluster source
  // (and link against the cluster's TrustRoots), and nothing is served before the first sync.
  std::shared_ptr<const policy::PolicySet> initial;
  if (s.kube.enabled) {
    if (auto docs = load_documents(s.policy_paths); !docs.ok()) {
      return config_error(docs.error().message);
    }
    initial =
        std::make_shared<const policy::PolicySet>(std::vector<policy::Policy>{}, *no_match, 0);
  } else {
    auto loaded = load_policies(s.policy_paths, *no_match, generation, default_root);
    if (!loaded.ok()) return config_error(loaded.error().message);
    initial = std::move(*loaded);
    spdlog::info("loaded {} polic{} from {} path{}", initial->policies().size(),
                 initial->policies().size() == 1 ? "y" : "ies", s.policy_paths.size(),
                 s.policy_paths.size() == 1 ? "" : "s");
  }
  PolicyStore store(std::move(initial));

  auto ropts = registry_options(s.registry);
  if (!ropts.ok()) return config_error(ropts.error().message);

  unsigned threads = s.threads ? s.threads : std::max(1u, std::thread::hardware_concurrency());
  // Before the io_context: the metrics listener's connections and the observers below use it
  // until the loop's last handler is gone. Without metrics.listen nothing is observed.
  Metrics metrics;
  const bool metrics_on = !s.metrics.listen.empty();
  if (metrics_on) {
    ropts->observer = [&metrics](const net::Exchange& e) { metrics.registry_exchange(e); };
  }
  asio::io_context io(static_cast<int>(threads));
  verify::EngineOptions eopts;
  if (auto st = attach_azure(*ropts, s.registry, io.get_executor(), true, eopts.keys,
                             metrics_on ? &metrics : nullptr);
      !st.ok())
    return config_error(st.error().message);
  registry::HttpClient client(io.get_executor(), std::move(*ropts));
  if (auto st = client.init_status(); !st.ok()) return config_error(st.error().message);
  // Named one by one by the operator: their DNS slots and metric series are kept for them.
  const std::vector<std::string> warm = s.registry.azure.warm_registries;
  client.set_operator_registries(operator_registries(*store.get(), warm));
  SystemClock clock;
  eopts.cache_ttl = s.cache_ttl;
  eopts.negative_cache_ttl = s.negative_cache_ttl;
  eopts.cache_capacity = s.cache_size;
  eopts.stale_if_error = s.stale_if_error;  // cache.staleIfError (verify/stale.hpp)
  eopts.pinning = s.pinning;
  // The tag cache only with pinning: /mutate pins what it answers (verify/tag_resolver.hpp).
  if (s.pinning) eopts.tag_cache_ttl = s.tag_cache_ttl;
  eopts.reveal_private_details = s.registry.reveal_private_details;
  eopts.namespace_checks_per_second = s.namespace_checks_per_second;  // checks.*
  eopts.namespace_checks_burst = s.namespace_checks_burst;
  verify::Engine engine(client, clock, eopts);
  read_kms_keys_ahead(io, eopts.keys, *store.get());
  // Every later set (a cluster compile, a SIGHUP reload) is published through here.
  auto publish = [&store, &io, &client, &warm,
                  keys = eopts.keys](std::shared_ptr<const policy::PolicySet> set) {
    read_kms_keys_ahead(io, keys, *set);
    client.set_operator_registries(operator_registries(*set, warm));
    store.set(std::move(set));
  };

  // The Kubernetes API: policies, trust roots, Secrets and pull credentials; and the
  // self-managed certificate's Secret and webhook configurations.
  std::unique_ptr<ClusterPolicies> cluster;
  std::unique_ptr<kube::EventRecorder> events;
  std::shared_ptr<kube::Client> kclient;
  std::string own_ns;
  if (s.kube.enabled || s.self_cert.enabled) {
    Result<kube::ClusterConfig> kcfg = make_error(Errc::internal, "no cluster configuration");
    own_ns = s.kube.namespace_;
    if (s.kube.kubeconfig.empty()) {
      kcfg = kube::in_cluster_config();
      if (!kcfg.ok()) {
        return config_error("--kube: " + kcfg.error().message +
                            (kcfg.error().code == Errc::not_found
                                 ? " (outside a cluster, pass --kubeconfig FILE)"
                                 : ""));
      }
      if (own_ns.empty()) own_ns = kcfg->default_namespace;
    } else {
      kube::KubeconfigOptions ko;
      ko.context = s.kube.context;
      kcfg = kube::load_kubeconfig(s.kube.kubeconfig, ko);
      if (!kcfg.ok()) return config_error("--kubeconfig: " + kcfg.error().message);
      if (own_ns.empty()) own_ns = "sigil-system";
    }
    kclient = std::make_shared<kube::Client>(io.get_executor(), std::move(*kcfg));
    if (auto st = kclient->init_status(); !st.ok())
      return config_error("--kube: " + st.error().message);
  }
  if (s.kube.enabled) {
    ClusterOptions co;
    co.own_namespace = own_ns;
    co.no_match = *no_match;
    co.default_root = default_root;
    co.file_documents = [paths = s.policy_paths]() { return load_documents(paths); };
    co.resync = std::max(std::chrono::milliseconds(1000), s.kube.resync);
    cluster = std::make_unique<ClusterPolicies>(io, kclient, clock, std::move(co), publish);
    if (auto st = cluster->start(); !st.ok()) return config_error(st.error().message);
    spdlog::info("kube: watching sigil.dev policies and trust roots at {} (own namespace {})",
                 kclient->config().source, own_ns);
    if (s.events.enabled) {
      // Events on denied and warned objects, off the admission path (app/events.hpp).
      kube::EventRecorderOptions eo;
      eo.per_object_interval = s.events.interval;
      const char* pod = std::getenv("POD_NAME");
      if (pod == nullptr) pod = std::getenv("HOSTNAME");
      eo.instance = pod != nullptr ? pod : "sigil";
      events = std::make_unique<kube::EventRecorder>(kclient, std::move(eo));
      spdlog::info(
          "events: Kubernetes Events on denied and warned objects (one per object and "
          "reason every {} s)",
          std::chrono::duration_cast<std::chrono::seconds>(s.events.interval).count());
    }
  } else if (s.events.enabled) {
    spdlog::warn("events: events.enabled needs --kube (an API server to send them to); off");
  }

  // The bridge from the server to the engine: what /validate and /mutate call for each image
  // (app/webhook.hpp).
  Webhook webhook(engine, store, cluster.get(), metrics_on ? &metrics : nullptr);
  // pinning: the chart registered /mutate, so Pods run the digests sigil verified, and /mutate
  // may pin a tag from the tag cache; /mutate is served either way.
  if (s.pinning) {
    spdlog::info(
        "pinning: on (the mutating webhook pins Pods' tags to digests; /mutate may pin a tag to "
        "the digest it resolved to within the last {} s)",
        eopts.tag_cache_ttl.count());
  } else {
    spdlog::info("pinning: off (tags are resolved at every admission)");
  }
  spdlog::debug("OpenSSL allocates through sigil's functions (free(NULL) skipped): {}",
                openssl_allocator_installed() ? "yes" : "no, OpenSSL had allocated already");
  server::ServerOptions sopts;
  sopts.listen = s.listen;
  sopts.cert_file = s.tls_cert;
  sopts.key_file = s.tls_key;
  sopts.external_certificate = s.self_cert.enabled;
  sopts.default_timeout = s.timeout;
  sopts.max_body = s.server.max_body;
  sopts.body_budget = s.server.body_budget;
  const uint64_t fd_limit = raise_fd_limit();
  sopts.max_connections =
      detail::inbound_connections(s.server.max_connections, fd_limit,
                                  s.registry.connections.max + s.registry.connections.reserved);
  if (sopts.max_connections < s.server.max_connections) {
    spdlog::warn(
        "server.maxConnections lowered from {} to {}: the file descriptor limit is {}, too few "
        "for that many connections beside the outbound ones (raise the hard limit, "
        "RLIMIT_NOFILE, of the container)",
        s.server.max_connections, sopts.max_connections, fd_limit);
  }
  sopts.max_connections_per_peer = s.server.max_connections_per_peer;
  sopts.read_timeout = s.server.read_timeout;
  sopts.idle_timeout = s.server.idle_timeout;
  // Drain: every request's budget ends by min(timeout, max_timeout) (request_budget).
  sopts.shutdown_grace = std::min(s.timeout, sopts.max_timeout) + std::chrono::seconds(1);
  // Not ready before the cluster's policies are in force: a replica with an empty set would
  // deny (or with noMatchPolicy allow, admit) every pod.
  if (cluster) sopts.ready = [&cluster] { return cluster->ready(); };
  // kubectl apply of a broken policy fails with the field named, before the watch sees it.
  sopts.check_policy = [](const std::string& kind, const std::string& object_json) {
    server::PolicyCheck checked;
    const std::string doc = object_document(object_json);
    if (doc.size() > kMaxAppliedDocument) {
      checked.problem = kind + ": its apiVersion, kind, metadata and spec take " +
                        std::to_string(doc.size()) + " bytes, more than sigil accepts (" +
                        std::to_string(kMaxAppliedDocument) +
                        "); a policy holds keys and identities, not data";
      return checked;
    }
    auto docs = policy::parse_documents(doc, kind);
    if (!docs) {
      checked.problem = docs.error().message;
      return checked;
    }
    for (const auto& p : docs->policies) {
      for (auto& w : policy::scope_warnings(p)) checked.warnings.push_back(std::move(w));
    }
    return checked;
  };
  sopts.mutator = &webhook.mutator();
  if (events) {
    webhook.validator().set_observer([&events](const admission::Request& request,
                                               const admission::Response& response,
                                               const std::vector<verify::Verdict>& verdicts) {
      if (auto e = admission_event(request, response, verdicts)) events->record(std::move(*e));
    });
  }
  std::unique_ptr<MetricsServer> metrics_server;
  if (metrics_on) {
    sopts.observe_admission = [&metrics](std::string_view route, server::AdmissionResult result,
                                         std::chrono::steady_clock::duration elapsed) {
      metrics.admission(route, result, elapsed);
    };
    metrics.set_engine(&engine);
    if (events) metrics.set_event_stats([&events] { return events->stats(); });
    metrics.set_dns_stats([&client] { return client.dns_stats(); });
    metrics.add_outage_stats([&client] { return client.outage_stats(); });
    metrics.add_conn_stats([&client] { return client.conn_stats(); });
    metrics.set_policy_state([&store, &cluster] {
      PolicyState ps;
      ps.source = cluster ? "kube" : "files";
      ps.synced = !cluster || cluster->ready();
      const auto set = store.get();
      ps.generation = set ? set->generation() : 0;
      ps.policies = set ? set->policies().size() : 0;
      if (cluster) {
        ps.compiles = cluster->stats().compiles;
        ps.sync_age_seconds = cluster->sync_ages();
      }
      return ps;
    });
    metrics_server = std::make_unique<MetricsServer>(io, metrics, s.metrics.listen);
    if (auto st = metrics_server->start(); !st.ok()) return config_error(st.error().message);
    spdlog::info("metrics: http://{}/metrics (port {})", s.metrics.listen, metrics_server->port());
  }
  server::Server srv(io, sopts, webhook.validator());
  if (auto st = srv.start(); !st.ok()) return config_error(st.error().message);
  // selfCert: the certificate is minted or read from its Secret, handed to the server in
  // memory, and its CA published on the webhook configurations; /readyz waits for it.
  std::unique_ptr<SelfCert> self_cert;
  if (s.self_cert.enabled) {
    const auto& c = s.self_cert;
    SelfCertOptions so;
    so.namespace_ = own_ns;
    so.secret_name = c.secret_name;
    so.service_name = c.service_name;
    so.cluster_domain = c.cluster_domain;
    so.validating_webhooks = c.validating_webhooks;
    so.mutating_webhooks = c.mutating_webhooks;
    auto secs = [](std::chrono::milliseconds d) {
      return std::chrono::duration_cast<std::chrono::seconds>(d);
    };
    so.ca_validity = secs(c.ca_validity);
    so.ca_renew_before = secs(c.ca_renew_before);
    so.cert_validity = secs(c.cert_validity);
    so.cert_renew_before = secs(c.cert_renew_before);
    so.rollover_grace = secs(c.rollover_grace);
    so.resync = c.resync;
    self_cert = std::make_unique<SelfCert>(
        io, kclient, clock, std::move(so), [&srv](const std::string& cert, const std::string& key) {
          auto st = srv.set_certificate(cert, key);
          if (st) spdlog::info("selfcert: serving certificate installed");
          return st;
        });
    if (auto st = self_cert->start(); !st.ok()) return config_error(st.error().message);
    spdlog::info("selfcert: the serving certificate is kept in Secret {}/{}", own_ns,
                 c.secret_name);
  }
  spdlog::info("sigil serving https on {} (port {})", s.listen, srv.port());

  // SIGHUP re-reads the policy files; a broken set is refused and the last good one stays.
  asio::signal_set hup(io, SIGHUP);
  asio::signal_set stop_signals(io, SIGINT, SIGTERM);
  asio::steady_timer stop_deadline(io);
  std::function<void(const boost::system::error_code&)> check_stopped;
  // SIGTERM (what the kubelet sends) starts the lame duck: /readyz answers 503 while admissions
  // are still served, so requests routed here before the endpoints moved away get their answer.
  // Then, or at once on SIGINT (Ctrl-C) or a second signal: stop accepting, drain, exit 0.
  const auto lame_duck = s.server.lame_duck.value_or(s.timeout + std::chrono::seconds(5));
  asio::steady_timer lame_duck_timer(io);
  std::atomic<bool> shutting_down{false};
  std::function<void(int)> shut_down;
  stop_signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (sig != SIGTERM || lame_duck.count() <= 0) return shut_down(sig);
    spdlog::info("SIGTERM: lame duck for {} ms (/readyz answers 503, admissions are served)",
                 lame_duck.count());
    srv.lame_duck();
    lame_duck_timer.expires_after(lame_duck);
    lame_duck_timer.async_wait([&, sig](const boost::system::error_code& tec) {
      if (!tec) shut_down(sig);
    });
    stop_signals.async_wait([&](const boost::system::error_code& sec, int again) {
      if (!sec) shut_down(again);
    });
  });
  shut_down = [&](int sig) {
    if (shutting_down.exchange(true)) return;
    lame_duck_timer.cancel();
    spdlog::info("signal {}: shutting down (in-flight requests get up to {} ms)", sig,
                 sopts.shutdown_grace.count());
    hup.cancel();
    if (cluster) cluster->stop();
    if (events) events->stop();
    if (self_cert) self_cert->stop();
    if (metrics_server) metrics_server->stop();
    srv.stop();
    // Idle registry connections and stragglers must not keep the process alive: after the
    // grace period the loop is stopped whatever is left.
    const auto give_up =
        std::chrono::steady_clock::now() + sopts.shutdown_grace + std::chrono::seconds(1);
    check_stopped = [&, give_up](const boost::system::error_code& tec) {
      if (tec) return;
      if (srv.connections() == 0 || std::chrono::steady_clock::now() >= give_up) {
        io.stop();
        return;
      }
      stop_deadline.expires_after(std::chrono::milliseconds(50));
      stop_deadline.async_wait(check_stopped);
    };
    stop_deadline.expires_after(std::chrono::milliseconds(50));
    stop_deadline.async_wait(check_stopped);
  };
  std::function<void(const boost::system::error_code&, int)> on_hup =
      [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        if (cluster) {
          cluster->reload_files();
          hup.async_wait(on_hup);
          return;
        }
        auto next = load_policies(s.policy_paths, *no_match, ++generation, default_root);
        if (next.ok()) {
          publish(std::move(*next));
          spdlog::info("policies reloaded (generation {})", generation.load());
        } else {
          spdlog::error("policy reload refused, keeping the previous set: {}",
                        next.error().message);
        }
        hup.async_wait(on_hup);
      };
  hup.async_wait(on_hup);

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  return 0;
}

}  // namespace sigil::app
