// app/metrics.hpp: what each observer call does to the exposition, the config section, and the
// /proc/self figures.
#include "app/metrics.hpp"

#include <catch2/catch.hpp>
#include <fstream>
#include <optional>
#include <string>

#include "app/config.hpp"

using sigil::app::Metrics;
namespace verify = sigil::verify;
namespace server = sigil::server;

namespace {

// The value of the one exposition line that starts with `series ` (name and labels exactly as
// serialised), or -1.
double sample(const std::string& text, const std::string& series) {
  const std::string needle = "\n" + series + " ";
  const auto at = ("\n" + text).find(needle);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 1));
}

}  // namespace

TEST_CASE("metrics: a verdict counts by outcome and reason code") {
  Metrics m;
  const std::string series = R"(sigil_verdicts_total{outcome="denied",reason="NOT_SIGNED"})";
  CHECK(sample(m.scrape(), series) == 0);
  verify::Verdict v = verify::denial("img", verify::Reason::not_signed, "no signatures");
  m.verdict(v);
  m.verdict(v);
  CHECK(sample(m.scrape(), series) == 2);
  verify::Verdict ok;
  ok.outcome = verify::Outcome::allowed;
  ok.reason = verify::Reason::none;
  m.verdict(ok);
  CHECK(sample(m.scrape(), R"(sigil_verdicts_total{outcome="allowed",reason="NONE"})") == 1);
  // A denial without a reason reports INTERNAL (verify::reported_reason), never NONE.
  verify::Verdict bare;
  m.verdict(bare);
  CHECK(sample(m.scrape(), R"(sigil_verdicts_total{outcome="denied",reason="INTERNAL"})") == 1);
  CHECK(m.scrape().find(R"(outcome="denied",reason="NONE")") == std::string::npos);
}

TEST_CASE("metrics: admissions observe the histogram of their route and result") {
  Metrics m;
  m.admission("validate", server::AdmissionResult::denied, std::chrono::milliseconds(3));
  m.admission("mutate", server::AdmissionResult::allowed, std::chrono::milliseconds(1));
  m.admission("validate", server::AdmissionResult::none, std::chrono::milliseconds(1));
  const std::string text = m.scrape();
  CHECK(sample(text,
               R"(sigil_admission_duration_seconds_count{result="denied",route="validate"})") == 1);
  CHECK(sample(text,
               R"(sigil_admission_duration_seconds_count{result="allowed",route="mutate"})") == 1);
  CHECK(sample(text,
               R"(sigil_admission_duration_seconds_count{result="error",route="validate"})") == 1);
  CHECK(
      sample(
          text,
          R"(sigil_admission_duration_seconds_bucket{result="denied",route="validate",le="0.0025"})") ==
      0);
  CHECK(
      sample(
          text,
          R"(sigil_admission_duration_seconds_bucket{result="denied",route="validate",le="0.005"})") ==
      1);
}

TEST_CASE("metrics: registry exchanges by host and status; token refreshes by source") {
  Metrics m;
  sigil::net::Exchange e;
  e.origin = "https://myacr.azurecr.io";
  e.status = 200;
  e.duration = std::chrono::milliseconds(20);
  m.registry_exchange(e);
  e.status = 0;
  e.error = sigil::Errc::timeout;
  m.registry_exchange(e);
  CHECK(m.scrape().find("# TYPE sigil_token_refreshes_total counter") == std::string::npos);
  m.token_refresh("workload-identity", false);
  const std::string text = m.scrape();
  CHECK(sample(text, R"(sigil_registry_requests_total{host="myacr.azurecr.io",status="200"})") ==
        1);
  CHECK(
      sample(text,
             R"(sigil_registry_requests_total{host="myacr.azurecr.io",status="error:timeout"})") ==
      1);
  CHECK(sample(text, R"(sigil_registry_request_duration_seconds_count{host="myacr.azurecr.io"})") ==
        2);
  CHECK(sample(text,
               R"(sigil_token_refreshes_total{result="failed",source="workload-identity"})") == 1);
}

TEST_CASE(
    "metrics: registry hosts pods name beyond 64 share host=\"other\"; the operator's do not") {
  Metrics m;
  sigil::net::Exchange e;
  e.status = 200;
  // One exchange with each of 70 hosts "https://<prefix><i><suffix>".
  auto seventy = [&](const std::string& prefix, const std::string& suffix) {
    for (int i = 0; i < 70; ++i) {
      e.origin = "https://" + prefix + std::to_string(i) + suffix;
      m.registry_exchange(e);
    }
  };
  seventy("r", ".example");
  e.origin = "https://r0.example";  // a host seen before the cap keeps its series
  m.registry_exchange(e);
  const std::string text = m.scrape();
  CHECK(sample(text, R"(sigil_registry_requests_total{host="r0.example",status="200"})") == 2);
  CHECK(sample(text, R"(sigil_registry_requests_total{host="r63.example",status="200"})") == 1);
  CHECK(sample(text, R"(sigil_registry_requests_total{host="r64.example",status="200"})") == -1);
  CHECK(sample(text, R"(sigil_registry_requests_total{host="other",status="200"})") == 6);
  // The operator's registry, named by the operator and first seen after pods took every slot,
  // keeps its own series.
  e.origin = "https://myacr.azurecr.io";
  e.operator_named = true;
  e.operator_listed = true;
  m.registry_exchange(e);
  m.registry_exchange(e);
  const std::string after = m.scrape();
  CHECK(sample(after, R"(sigil_registry_requests_total{host="myacr.azurecr.io",status="200"})") ==
        2);
  CHECK(sample(after, R"(sigil_registry_requests_total{host="other",status="200"})") == 6);
  // Names inside a pattern the operator allows (the Azure identity's *.azurecr.io) are chosen
  // by pod authors: they share the pods' series, and take none of the operator's.
  e.operator_listed = false;
  seventy("a", ".azurecr.io");
  const std::string covered = m.scrape();
  CHECK(sample(covered, R"(sigil_registry_requests_total{host="a0.azurecr.io",status="200"})") ==
        -1);
  CHECK(sample(covered, R"(sigil_registry_requests_total{host="other",status="200"})") == 76);
  // The listed ones are bounded too: 64 series, myacr's among them.
  e.operator_listed = true;
  seventy("l", ".example");
  const std::string last = m.scrape();
  CHECK(sample(last, R"(sigil_registry_requests_total{host="l62.example",status="200"})") == 1);
  CHECK(sample(last, R"(sigil_registry_requests_total{host="l63.example",status="200"})") == -1);
  CHECK(sample(last, R"(sigil_registry_requests_total{host="other",status="200"})") == 83);
  e.origin = "https://myacr.azurecr.io";
  m.registry_exchange(e);
  CHECK(sample(m.scrape(),
               R"(sigil_registry_requests_total{host="myacr.azurecr.io",status="200"})") == 3);
}

TEST_CASE("metrics: the policy state and the process figures are read at scrape time") {
  Metrics m;
  CHECK(m.scrape().find("sigil_policy_synced") == std::string::npos);
  bool synced = false;
  std::optional<uint64_t> compiles;
  m.set_policy_state([&] {
    sigil::app::PolicyState s;
    s.source = "kube";
    s.synced = synced;
    s.compiles = compiles;
    s.generation = 7;
    s.policies = 3;
    if (compiles) s.sync_age_seconds = {{"clusterimagepolicies", 12.5}, {"trustroots", -1}};
    return s;
  });
  CHECK(sample(m.scrape(), R"(sigil_policy_synced{source="kube"})") == 0);
  synced = true;
  CHECK(sample(m.scrape(), R"(sigil_policy_synced{source="kube"})") == 1);
  CHECK(sample(m.scrape(), "sigil_policy_generation") == 7);
  CHECK(sample(m.scrape(), "sigil_policy_compiles_total") == -1);  // files: no compiles
  CHECK(m.scrape().find("sigil_policy_sync_age_seconds") == std::string::npos);
  compiles = 12;
  CHECK(sample(m.scrape(), "sigil_policy_compiles_total") == 12);
  CHECK(sample(m.scrape(), R"(sigil_policy_sync_age_seconds{resource="clusterimagepolicies"})") ==
        12.5);
  CHECK(sample(m.scrape(), R"(sigil_policy_sync_age_seconds{resource="trustroots"})") == -1);
  auto p = sigil::app::read_process_figures();
  REQUIRE(p.ok());
  CHECK(p->resident_bytes > 1e6);
  CHECK(p->open_fds >= 3);
  CHECK(p->start_time_seconds > 1.7e9);
  CHECK(sample(m.scrape(), "process_open_fds") >= 3);
}

TEST_CASE("metrics: the registry client's DNS slots and lookups are read at scrape time") {
  Metrics m;
  CHECK(m.scrape().find("sigil_dns_lookups_in_flight") == std::string::npos);
  sigil::net::DnsStats d;
  d.in_flight = 5;
  d.reserved_in_flight = 1;
  d.max_lookups = 256;
  d.reserved_lookups = 64;
  d.joined = 12;
  d.refused = 3;
  d.waiting = 41;
  m.set_dns_stats([&] { return d; });
  const std::string text = m.scrape();
  CHECK(sample(text, R"(sigil_dns_lookups_in_flight{slots="shared"})") == 5);
  CHECK(sample(text, R"(sigil_dns_lookups_in_flight{slots="reserved"})") == 1);
  CHECK(sample(text, R"(sigil_dns_lookup_slots{slots="shared"})") == 256);
  CHECK(sample(text, R"(sigil_dns_lookup_slots{slots="reserved"})") == 64);
  CHECK(sample(text, "sigil_dns_lookups_joined_total") == 12);
  CHECK(sample(text, "sigil_dns_lookups_refused_total") == 3);
  CHECK(sample(text, "sigil_dns_lookup_waiters") == 41);
  d.refused = 4;  // read again at each scrape
  CHECK(sample(m.scrape(), "sigil_dns_lookups_refused_total") == 4);
}

TEST_CASE("metrics: origins down and requests failed at once, summed, read at each scrape") {
  Metrics m;
  CHECK(m.scrape().find("sigil_registry_hosts_down") == std::string::npos);
  sigil::net::OutageMemo::Stats registry;
  registry.down = 3;
  registry.down_listed = 1;
  registry.refused = 17;
  registry.went_down = 3;
  sigil::net::OutageMemo::Stats azure;
  azure.down = 1;
  azure.down_listed = 1;
  azure.refused = 2;
  azure.went_down = 1;
  m.add_outage_stats([&] { return registry; });
  m.add_outage_stats([&] { return azure; });
  const std::string text = m.scrape();
  CHECK(sample(text, R"(sigil_registry_hosts_down{owner="operator"})") == 2);
  CHECK(sample(text, R"(sigil_registry_hosts_down{owner="other"})") == 2);
  CHECK(sample(text, "sigil_registry_fail_fast_total") == 19);
  CHECK(sample(text, "sigil_registry_went_down_total") == 4);
  registry.down = 0;
  registry.down_listed = 0;
  CHECK(sample(m.scrape(), R"(sigil_registry_hosts_down{owner="operator"})") == 1);
}

TEST_CASE("config: metrics.listen, and unknown metrics keys refused") {
  const std::string path = std::string(SIGIL_BINARY_DIR) + "/metrics_test_config.yaml";
  {
    std::ofstream f(path);
    f << "metrics:\n  listen: \":9090\"\n";
  }
  sigil::app::Settings s;
  REQUIRE(sigil::app::load_config_file(path, s).ok());
  CHECK(s.metrics.listen == ":9090");
  {
    std::ofstream f(path);
    f << "metrics:\n  port: 9090\n";
  }
  auto st = sigil::app::load_config_file(path, s);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message.find("unknown setting \"metrics.port\"") != std::string::npos);
}
