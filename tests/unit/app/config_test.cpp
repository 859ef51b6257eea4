// app/config.cpp: the `cache:` section, cache.staleIfError among it; registry.dns; the registries
// policies name.
#include <catch2/catch.hpp>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "app/commands_detail.hpp"
#include "app/config.hpp"

namespace {

sigil::Status load(const std::string& text, sigil::app::Settings& s) {
  const std::string path = std::string(SIGIL_BINARY_DIR) + "/config_test_cache.yaml";
  {
    std::ofstream f(path);
    f << text;
  }
  return sigil::app::load_config_file(path, s);
}

}  // namespace

TEST_CASE("config: cache.staleIfError is a duration, off unless set") {
  using namespace std::chrono_literals;
  sigil::app::Settings s;
  CHECK(s.stale_if_error == 0ms);
  REQUIRE(load("cache: {ttl: 5m, negativeTtl: 30s, size: 100, staleIfError: 1h}\n", s).ok());
  CHECK(s.stale_if_error == 1h);
  CHECK(s.cache_ttl == 5min);
  CHECK(s.cache_size == 100);
  sigil::app::Settings off;
  REQUIRE(load("cache: {staleIfError: \"\"}\n", off).ok());  // the chart's default
  CHECK(off.stale_if_error == 0ms);
  REQUIRE(load("cache: {staleIfError: 2s}\n", off).ok());
  CHECK(off.stale_if_error == 2s);
}

TEST_CASE("config: a bad or misspelt cache setting is refused, naming it") {
  sigil::app::Settings s;
  auto bad = load("cache: {staleIfError: an hour}\n", s);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("\"staleIfError\"") != std::string::npos);
  auto typo = load("cache: {staleIfErorr: 1h}\n", s);
  REQUIRE_FALSE(typo.ok());
  CHECK(typo.error().message.find("unknown setting \"cache.staleIfErorr\"") != std::string::npos);
  auto neg = load("cache: {staleIfError: -1h}\n", s);
  REQUIRE_FALSE(neg.ok());
  auto scalar = load("cache: 5m\n", s);
  REQUIRE_FALSE(scalar.ok());
  CHECK(scalar.error().message.find("\"cache\" must be a mapping") != std::string::npos);
}

TEST_CASE("config: every section refuses a key it does not know, and a non-mapping") {
  // A misspelt setting would otherwise be ignored: `registry: {insecrue: [...]}` would leave
  // the registry on TLS, `kube: {namspace: x}` would watch another namespace, without a word.
  const std::pair<const char*, const char*> sections[] = {
      {"registry", "insecrue: [\"127.0.0.1:5000\"]"},
      {"kube", "namspace: sigil"},
      {"server", "maxbody: 100"},
      {"metrics", "port: 9090"},
      {"events", "enable: true"},
      {"selfCert", "secret: x"},
      {"cache", "ttll: 5m"}};
  for (const auto& [section, entry] : sections) {
    INFO(section);
    sigil::app::Settings s;
    auto typo = load(std::string(section) + ": {" + entry + "}\n", s);
    REQUIRE_FALSE(typo.ok());
    const std::string key = std::string(entry).substr(0, std::string(entry).find(':'));
    CHECK(typo.error().message.find("unknown setting \"" + std::string(section) + "." + key +
                                    "\"") != std::string::npos);
    auto scalar = load(std::string(section) + ": 5\n", s);
    REQUIRE_FALSE(scalar.ok());
    CHECK(scalar.error().message.find("\"" + std::string(section) + "\" must be a mapping") !=
          std::string::npos);
  }
  // The keys the chart writes are known.
  sigil::app::Settings ok;
  REQUIRE(load("registry: {config: /etc/sigil/registry/config.json, ca: /etc/ca.pem, insecure: "
               "[\"127.0.0.1:5000\"], revealPrivateDetails: false}\n",
               ok)
              .ok());
  CHECK(ok.registry.insecure_hosts == std::vector<std::string>{"127.0.0.1:5000"});
}

TEST_CASE("config: the registries cluster-wide policies name, never a namespace's") {
  const std::string yaml = R"(apiVersion: sigil.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: cluster}
spec:
  images: [{glob: "ghcr.io/org/**"}, {glob: "**"}, {glob: "myreg.example:5000/app"}]
  authorities: [{static: {action: pass}}]
---
apiVersion: sigil.dev/v1alpha1
kind: ImagePolicy
metadata: {name: tenant, namespace: team-a}
spec:
  images: [{glob: "evil.example/**"}]
  authorities: [{static: {action: pass}}]
)";
  auto docs = sigil::policy::parse_documents(yaml, "test.yaml");
  INFO((docs.ok() ? std::string() : docs.error().message));
  REQUIRE(docs.ok());
  const sigil::policy::PolicySet set(docs->policies, sigil::policy::NoMatch::allow, 1);
  CHECK(sigil::app::operator_registries(set) ==
        std::vector<std::string>{"ghcr.io", "myreg.example:5000"});
  // azure.warmRegistries are listed by name too: canonical, once each.
  CHECK(sigil::app::operator_registries(set, {"MyACR.azurecr.io", "ghcr.io:443"}) ==
        std::vector<std::string>{"ghcr.io", "myacr.azurecr.io", "myreg.example:5000"});
}

TEST_CASE("config: flags given on the command line go on top of the file; the rest is the file's") {
  // serve --config: the file is the base. registry.dns was once dropped here, because the
  // merge copied the file's settings one by one and that list did not have it: the chart's
  // config.registry.dns never reached the registry client. test_dns.py sees it end to end.
  using namespace std::chrono_literals;
  sigil::app::Settings file;
  auto st = load(
      "listen: 0.0.0.0:9443\nlogLevel: debug\npinning: true\n"
      "registry:\n  ca: /file/ca.pem\n  insecure: [\"file.test:5000\"]\n"
      "  dns: {maxLookups: 96, reservedLookups: 32, timeout: 500ms, attempts: 3}\n"
      "cache: {staleIfError: 1h, tagTtl: 30s}\nmetrics: {listen: \":9090\"}\n",
      file);
  INFO((st.ok() ? std::string() : st.error().message));
  REQUIRE(st.ok());
  sigil::app::Settings flags;  // as the command line parsed them
  flags.listen = "127.0.0.1:8443";
  flags.registry.insecure_hosts = {"flag.test:5000"};
  flags.metrics.listen = "127.0.0.1:9091";
  flags.log_level = "warn";  // not given: its default stays out
  const std::set<std::string> given = {"--listen", "--insecure-registry", "--metrics-listen"};
  const auto m =
      sigil::app::with_flags(file, flags, [&](const char* f) { return given.count(f) > 0; });
  CHECK(m.listen == "127.0.0.1:8443");
  CHECK(m.registry.insecure_hosts == std::vector<std::string>{"flag.test:5000"});
  CHECK(m.metrics.listen == "127.0.0.1:9091");
  CHECK(m.log_level == "debug");
  CHECK(m.pinning);
  CHECK(m.registry.ca_file == "/file/ca.pem");
  CHECK(m.registry.dns.max_lookups == 96);
  CHECK(m.registry.dns.reserved_lookups == 32);
  CHECK(m.registry.dns.try_timeout == 500ms);
  CHECK(m.registry.dns.attempts == 3);
  CHECK(m.stale_if_error == 1h);
  CHECK(m.tag_cache_ttl == 30s);
  // `sigil verify --config` takes the file's registry section, dns included, the same way.
  const auto r = sigil::app::with_registry_flags(file.registry, flags.registry, [](const char* f) {
    return f == std::string("--registry-ca");
  });
  CHECK(r.ca_file.empty());
  CHECK(r.insecure_hosts == std::vector<std::string>{"file.test:5000"});
  CHECK(r.dns.max_lookups == 96);
}

TEST_CASE("config: registry.dns bounds the lookups of registry names, and reaches the client") {
  using namespace std::chrono_literals;
  sigil::app::Settings d;
  REQUIRE(load("registry: {insecure: []}\n", d).ok());
  CHECK(d.registry.dns.max_lookups == 256);
  CHECK(d.registry.dns.reserved_lookups == 64);
  CHECK(d.registry.dns.try_timeout == 1s);
  CHECK(d.registry.dns.attempts == 2);

  sigil::app::Settings s;
  auto st = load(
      "registry:\n  dns: {maxLookups: 96, reservedLookups: 32, timeout: 500ms, "
      "attempts: 3}\n",
      s);
  INFO((st.ok() ? std::string() : st.error().message));
  REQUIRE(st.ok());
  auto o = sigil::app::detail::registry_options(s.registry);
  REQUIRE(o.ok());
  CHECK(o->max_dns_lookups == 96);
  CHECK(o->reserved_dns_lookups == 32);
  CHECK(o->dns_try_timeout == 500ms);
  CHECK(o->dns_attempts == 3);

  const std::pair<const char*, const char*> bad[] = {
      {"maxLookups: 0", "\"registry.dns.maxLookups\" must be more than 0"},
      {"reservedLookups: 0", "\"registry.dns.reservedLookups\" must be more than 0"},
      {"maxLookups: -1", "\"registry.dns.maxLookups\": not a whole number"},
      {"attempts: 0", "\"registry.dns.attempts\" must be from 1 to 16"},
      {"attempts: 17", "\"registry.dns.attempts\" must be from 1 to 16"},
      {"timeout: 0s", "\"registry.dns.timeout\" must be more than 0 and at most 30s"},
      {"timeout: 1m", "\"registry.dns.timeout\" must be more than 0 and at most 30s"},
      {"timout: 1s", "unknown setting \"registry.dns.timout\""},
  };
  for (const auto& [entry, message] : bad) {
    INFO(entry);
    sigil::app::Settings b;
    auto r = load(std::string("registry: {dns: {") + entry + "}}\n", b);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(message) != std::string::npos);
  }
}

TEST_CASE("config: registry.connections reaches the registry client; bad values are refused") {
  sigil::app::Settings d;
  REQUIRE(load("registry: {insecure: []}\n", d).ok());
  auto od = sigil::app::detail::registry_options(d.registry);
  REQUIRE(od.ok());
  CHECK(od->max_connections == 512);  // capped by default
  CHECK(od->reserved_connections == 128);
  CHECK(od->max_connections_per_host == 64);

  sigil::app::Settings s;
  auto st = load("registry:\n  connections: {max: 100, reserved: 20, perHost: 10}\n", s);
  INFO((st.ok() ? std::string() : st.error().message));
  REQUIRE(st.ok());
  auto o = sigil::app::detail::registry_options(s.registry);
  REQUIRE(o.ok());
  CHECK(o->max_connections == 100);
  CHECK(o->reserved_connections == 20);
  CHECK(o->max_connections_per_host == 10);

  const std::pair<const char*, const char*> bad[] = {
      {"max: 7", "\"registry.connections.max\" must be from 8 to 65536"},
      {"max: 65537", "\"registry.connections.max\" must be from 8 to 65536"},
      {"reserved: 0", "\"registry.connections.reserved\" must be from 1 to 65536"},
      {"perHost: 0", "\"registry.connections.perHost\" must be from 1 to max"},
      {"max: 32, perHost: 33", "\"registry.connections.perHost\" must be from 1 to max"},
      {"max: -1", "\"registry.connections.max\": not a whole number"},
      {"perhost: 2", "unknown setting \"registry.connections.perhost\""},
  };
  for (const auto& [entry, message] : bad) {
    INFO(entry);
    sigil::app::Settings b;
    auto r = load(std::string("registry: {connections: {") + entry + "}}\n", b);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(message) != std::string::npos);
  }
}

TEST_CASE("config: checks sets each namespace's share of signature checks; bad values refused") {
  sigil::app::Settings d;
  REQUIRE(load("cache: {size: 10}\n", d).ok());
  CHECK(d.namespace_checks_per_second == 2048);  // on by default
  CHECK(d.namespace_checks_burst == 16384);
  sigil::app::Settings s;
  auto st = load("checks: {namespacePerSecond: 0, namespaceBurst: 64}\n", s);
  INFO((st.ok() ? std::string() : st.error().message));
  REQUIRE(st.ok());
  CHECK(s.namespace_checks_per_second == 0);  // off
  CHECK(s.namespace_checks_burst == 64);
  const std::pair<const char*, const char*> bad[] = {
      {"namespaceBurst: 63", "\"checks.namespaceBurst\" must be from 64 to 100000000"},
      {"namespacePerSecond: -5", "\"checks.namespacePerSecond\": not a whole number"},
      {"perNamespace: 5", "unknown setting \"checks.perNamespace\""},
  };
  for (const auto& [entry, message] : bad) {
    INFO(entry);
    sigil::app::Settings b;
    auto r = load(std::string("checks: {") + entry + "}\n", b);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(message) != std::string::npos);
  }
}

TEST_CASE("config: registry.failFast reaches the registry client; bad values are refused") {
  using namespace std::chrono_literals;
  sigil::app::Settings d;
  REQUIRE(load("registry: {insecure: []}\n", d).ok());
  auto od = sigil::app::detail::registry_options(d.registry);
  REQUIRE(od.ok());
  CHECK(od->fail_fast.after == 2);  // on by default
  CHECK(od->fail_fast.backoff == 2s);
  CHECK(od->fail_fast.max_backoff == 30s);

  sigil::app::Settings s;
  auto st = load("registry:\n  failFast: {after: 3, backoff: 500ms, maxBackoff: 1m}\n", s);
  INFO((st.ok() ? std::string() : st.error().message));
  REQUIRE(st.ok());
  auto o = sigil::app::detail::registry_options(s.registry);
  REQUIRE(o.ok());
  CHECK(o->fail_fast.after == 3);
  CHECK(o->fail_fast.backoff == 500ms);
  CHECK(o->fail_fast.max_backoff == 1min);
  sigil::app::Settings off;
  REQUIRE(load("registry: {failFast: {after: 0}}\n", off).ok());
  CHECK(sigil::app::detail::registry_options(off.registry)->fail_fast.after == 0);

  const std::pair<const char*, const char*> bad[] = {
      {"after: 101", "\"registry.failFast.after\" must be at most 100"},
      {"after: -1", "\"registry.failFast.after\": not a whole number"},
      {"backoff: 0s", "\"registry.failFast.backoff\" must be more than 0 and at most 5m"},
      {"backoff: 6m", "\"registry.failFast.backoff\" must be more than 0 and at most 5m"},
      {"backoff: 10s, maxBackoff: 5s", "\"registry.failFast.maxBackoff\" must be at least backoff"},
      {"maxBackoff: 31m", "\"registry.failFast.maxBackoff\" must be at least backoff and at most"},
      {"afer: 2", "unknown setting \"registry.failFast.afer\""},
  };
  for (const auto& [entry, message] : bad) {
    INFO(entry);
    sigil::app::Settings b;
    auto r = load(std::string("registry: {failFast: {") + entry + "}}\n", b);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(message) != std::string::npos);
  }
}

// The limits and cross-checks of the config file, each refused by name (a mutation sweep of
// app/ found these unheld).
TEST_CASE("config: sizes, budgets and connection limits that cannot work are refused") {
  using sigil::app::parse_size;
  CHECK(parse_size("1024Gi").value() == size_t{1} << 40);
  for (const char* big : {"1025Gi", "99999999999Gi", "18446744073709551615Ki", "2000000000000"}) {
    CAPTURE(big);
    CHECK_FALSE(parse_size(big).ok());
  }
  struct Case {
    std::string yaml, error;
  };
  const auto c = GENERATE(
      Case{"server: {maxBody: 4Mi, bodyBudget: 5Mi}\n", "bodyBudget\" (5242880 bytes) must be"},
      Case{"server: {maxConnections: 10, maxConnectionsPerPeer: 11}\n",
           "maxConnectionsPerPeer\" must be from 1 to server.maxConnections"},
      Case{"server: {maxBody: 99999999999Gi}\n", "maxBody"});
  CAPTURE(c.yaml);
  sigil::app::Settings s;
  auto st = load(c.yaml, s);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message.find(c.error) != std::string::npos);
  // The same limits at what they allow.
  sigil::app::Settings fine;
  CHECK(load("server: {maxBody: 3Mi, bodyBudget: 4Mi, maxConnections: 10, "
             "maxConnectionsPerPeer: 10}\n",
             fine)
            .ok());
}

TEST_CASE("config: files past their cap are refused, not read whole") {
  const std::string path = std::string(SIGIL_BINARY_DIR) + "/config_test_big.yaml";
  {
    std::ofstream f(path);
    f << std::string(2000, '#') << "\n";
  }
  auto small = sigil::app::read_file(path, 1000);
  REQUIRE_FALSE(small.ok());
  CHECK(small.error().code == sigil::Errc::too_large);
  CHECK(sigil::app::read_file(path, 2001).ok());
}

TEST_CASE("config: --no-match-policy on the command line wins over the file") {
  sigil::app::Settings file, flags;
  file.no_match = "allow";
  flags.no_match = "deny";
  const auto m = sigil::app::with_flags(
      file, flags, [](const char* f) { return f == std::string("--no-match-policy"); });
  CHECK(m.no_match == "deny");
  CHECK(sigil::app::with_flags(file, flags, [](const char*) { return false; }).no_match == "allow");
}

TEST_CASE("config: policy files: a name defined twice, and keys from Secrets without --kube") {
  const std::string dir = std::string(SIGIL_BINARY_DIR) + "/config_test_policies";
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream f(dir + "-" + name);
    f << text;
    return dir + "-" + name;
  };
  auto policy = [](const std::string& name, const std::string& authority) {
    return "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: " + name +
           "}\nspec:\n  images: [{glob: \"reg.test/**\"}]\n  authorities:\n  - name: a\n" +
           authority;
  };
  const std::string pass = "    static: {action: pass}\n";
  const std::string a = write("a.yaml", policy("same", pass));
  const std::string b = write("b.yaml", policy("same", pass));
  auto twice = sigil::app::load_documents({a, b});
  REQUIRE_FALSE(twice.ok());
  CHECK(twice.error().message.find(a) != std::string::npos);
  CHECK(twice.error().message.find(b) != std::string::npos);
  REQUIRE(sigil::app::load_documents({a}).ok());

  const std::string secret =
      write("secret.yaml", policy("from-secret", "    key: {secretRef: {name: k}}\n"));
  auto no_kube = sigil::app::load_policies({secret}, sigil::policy::NoMatch::deny, 1, nullptr);
  REQUIRE_FALSE(no_kube.ok());
  CHECK(no_kube.error().message.find("need the Kubernetes API") != std::string::npos);
}

TEST_CASE("config: an insecure registry on port 443 is refused (it would name the https origin)") {
  sigil::app::RegistrySettings r;
  r.insecure_hosts = {"reg.test:443"};
  auto o = sigil::app::detail::registry_options(r);
  REQUIRE_FALSE(o.ok());
  CHECK(o.error().message.find("port 443 is the https port") != std::string::npos);
  r.insecure_hosts = {"reg.test:5000"};
  CHECK(sigil::app::detail::registry_options(r).ok());
}

TEST_CASE("inbound connections fit the descriptors beside the outbound ones") {
  using sigil::app::detail::inbound_connections;
  // Outbound at most: the registry client's 512 + 128, the Azure identity's 256 + 64, and 256
  // for the Kubernetes client and files: 1,216.
  constexpr uint64_t kRegistry = 512 + 128;
  CHECK(inbound_connections(2048, 0, kRegistry) == 2048);                // limit unknown
  CHECK(inbound_connections(2048, 1u << 20, kRegistry) == 2048);         // room for everything
  CHECK(inbound_connections(2048, 2048 + 1216, kRegistry) == 2048);      // exactly enough
  CHECK(inbound_connections(2048, 2048 + 1215, kRegistry) == 1599);      // (3263 - 64) / 2
  CHECK(inbound_connections(2048, 1024, kRegistry) == 480);              // a container's 1,024
  CHECK(inbound_connections(100, 1024, kRegistry) == 100);               // never above the cap
  CHECK(inbound_connections(2048, 64, kRegistry) == 16);                 // always a few
  CHECK(inbound_connections(2048, 2048 + 1216, kRegistry + 1) == 1600);  // (3264 - 64) / 2
}
