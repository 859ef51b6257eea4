#include "app/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include "common/encoding.hpp"
#include "oci/reference.hpp"
#include "server/duration.hpp"

namespace sigil::app {

namespace fs = std::filesystem;

Result<std::string> read_file(const std::string& path, size_t max_size) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) return make_error(Errc::not_found, path + ": " + ec.message());
  if (size > max_size)
    return make_error(Errc::too_large,
                      path + ": file is larger than " + std::to_string(max_size) + " bytes");
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::not_found, path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  auto d = server::parse_go_duration(text);
  if (!d.ok()) return d.error();
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
}

Result<size_t> parse_size(std::string_view text) {
  auto bad = [&] {
    return make_error(Errc::invalid_argument,
                      "\"" + std::string(text.substr(0, 40)) +
                          "\" is not a size (bytes, or a number with Ki, Mi or Gi)");
  };
  size_t shift = 0;
  std::string_view digits = text;
  if (text.ends_with("Ki")) {
    shift = 10;
  } else if (text.ends_with("Mi")) {
    shift = 20;
  } else if (text.ends_with("Gi")) {
    shift = 30;
  }
  if (shift) digits.remove_suffix(2);
  if (digits.empty() || digits.size() > 12 ||
      digits.find_first_not_of("0123456789") != std::string_view::npos) {
    return bad();
  }
  const uint64_t n = std::stoull(std::string(digits));
  if (n > (uint64_t{1} << 40) >> shift) return bad();  // at most 1 TiB
  return static_cast<size_t>(n << shift);
}

namespace {

Status get_size(const YAML::Node& node, const char* key, size_t& out, const std::string& path) {
  const YAML::Node v = node[key];
  if (!v) return {};
  if (!v.IsScalar()) {
    return make_error(Errc::invalid_argument,
                      path + ": setting \"server." + key + "\": not a size");
  }
  auto n = parse_size(v.Scalar());
  if (!n) {
    return make_error(Errc::invalid_argument,
                      path + ": setting \"server." + key + "\": " + n.error().message);
  }
  out = *n;
  return {};
}

Status get_count(const YAML::Node& node, const char* key, size_t& out, const std::string& path,
                 std::string_view section = "server.") {
  const YAML::Node v = node[key];
  if (!v) return {};
  const std::string text = v.IsScalar() ? v.Scalar() : std::string();
  if (text.empty() || text.size() > 9 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return make_error(Errc::invalid_argument, path + ": setting \"" + std::string(section) + key +
                                                  "\": not a whole number");
  }
  out = std::stoul(text);
  return {};
}

template <class T>
Status get(const YAML::Node& node, const char* key, T& out, const std::string& path) {
  const YAML::Node v = node[key];
  if (!v) return {};
  try {
    out = v.as<T>();
  } catch (const YAML::Exception& e) {
    return make_error(Errc::invalid_argument, path + ": setting \"" + key + "\": " + e.msg);
  }
  return {};
}

Status get_duration(const YAML::Node& node, const char* key, std::chrono::milliseconds& out,
                    const std::string& path) {
  std::string text;
  if (auto s = get(node, key, text, path); !s.ok()) return s;
  if (text.empty()) return {};
  auto d = parse_duration(text);
  if (!d.ok())
    return make_error(Errc::invalid_argument,
                      path + ": setting \"" + key + "\": " + d.error().message);
  out = *d;
  return {};
}
// Refuses a section that is not a mapping or that names a key it does not know: a misspelt
// setting must fail the start, never be ignored in silence.
Status check_section(const YAML::Node& node, const std::string& section,
                     std::initializer_list<std::string_view> known, const std::string& path) {
  if (!node.IsMap()) {
    return make_error(Errc::invalid_argument,
                      path + ": setting \"" + section + "\" must be a mapping");
  }
  for (const auto& kv : node) {
    const auto key = kv.first.as<std::string>();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return make_error(Errc::invalid_argument,
                        path + ": unknown setting \"" + section + "." + key + "\"");
    }
  }
  return {};
}

}  // namespace

RegistrySettings with_registry_flags(RegistrySettings file, const RegistrySettings& flags,
                                     const FlagGiven& given) {
  if (given("--registry-config")) file.config_file = flags.config_file;
  if (given("--registry-ca")) file.ca_file = flags.ca_file;
  if (given("--insecure-registry")) file.insecure_hosts = flags.insecure_hosts;
  return file;
}

Settings with_flags(Settings file, const Settings& flags, const FlagGiven& given) {
  if (given("--listen")) file.listen = flags.listen;
  if (given("--tls-cert")) file.tls_cert = flags.tls_cert;
  if (given("--tls-key")) file.tls_key = flags.tls_key;
  if (given("--policy")) file.policy_paths = flags.policy_paths;
  if (given("--no-match-policy")) file.no_match = flags.no_match;
  if (given("--trusted-root")) file.trusted_root_file = flags.trusted_root_file;
  if (given("--kube")) file.kube.enabled = flags.kube.enabled;
  if (given("--kubeconfig")) file.kube.kubeconfig = flags.kube.kubeconfig;
  if (given("--kube-context")) file.kube.context = flags.kube.context;
  if (given("--kube-namespace")) file.kube.namespace_ = flags.kube.namespace_;
  if (given("--threads")) file.threads = flags.threads;
  if (given("--log-level")) file.log_level = flags.log_level;
  if (given("--pinning")) file.pinning = flags.pinning;
  if (given("--metrics-listen")) file.metrics.listen = flags.metrics.listen;
  if (given("--events")) file.events.enabled = flags.events.enabled;
  file.registry = with_registry_flags(std::move(file.registry), flags.registry, given);
  return file;
}

Status load_config_file(const std::string& path, Settings& s) {
  auto text = read_file(path, 1u << 20);
  if (!text.ok()) return make_error(Errc::invalid_argument, "--config " + text.error().message);
  YAML::Node root;
  try {
    root = YAML::Load(*text);
  } catch (const YAML::Exception& e) {
    return make_error(Errc::invalid_argument, path + ": " + e.what());
  }
  if (!root.IsMap())
    return make_error(Errc::invalid_argument, path + ": the config must be a YAML mapping");
  static const char* kKnown[] = {"listen",      "tlsCert",  "tlsKey", "policies", "noMatchPolicy",
                                 "registry",    "timeout",  "cache",  "threads",  "logLevel",
                                 "trustedRoot", "kube",     "server", "pinning",  "azure",
                                 "metrics",     "selfCert", "events", "checks"};
  for (const auto& kv : root) {
    auto key = kv.first.as<std::string>();
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
      return make_error(Errc::invalid_argument, path + ": unknown setting \"" + key + "\"");
    }
  }
  Status st;
  if (!(st = get(root, "listen", s.listen, path)).ok()) return st;
  if (!(st = get(root, "tlsCert", s.tls_cert, path)).ok()) return st;
  if (!(st = get(root, "tlsKey", s.tls_key, path)).ok()) return st;
  if (!(st = get(root, "policies", s.policy_paths, path)).ok()) return st;
  if (!(st = get(root, "noMatchPolicy", s.no_match, path)).ok()) return st;
  if (!(st = get(root, "trustedRoot", s.trusted_root_file, path)).ok()) return st;
  if (const YAML::Node kube = root["kube"]) {
    st = check_section(kube, "kube", {"enabled", "kubeconfig", "context", "namespace", "resync"},
                       path);
    if (!st.ok()) return st;
    if (!(st = get(kube, "enabled", s.kube.enabled, path)).ok()) return st;
    if (!(st = get(kube, "kubeconfig", s.kube.kubeconfig, path)).ok()) return st;
    if (!(st = get(kube, "context", s.kube.context, path)).ok()) return st;
    if (!(st = get(kube, "namespace", s.kube.namespace_, path)).ok()) return st;
    std::chrono::milliseconds resync = s.kube.resync;
    if (!(st = get_duration(kube, "resync", resync, path)).ok()) return st;
    s.kube.resync = resync;
  }
  if (const YAML::Node srv = root["server"]) {
    st = check_section(srv, "server",
                       {"maxBody", "bodyBudget", "maxConnections", "maxConnectionsPerPeer",
                        "readTimeout", "idleTimeout", "lameDuck"},
                       path);
    if (!st.ok()) return st;
    auto& sv = s.server;
    if (!(st = get_size(srv, "maxBody", sv.max_body, path)).ok()) return st;
    if (!(st = get_size(srv, "bodyBudget", sv.body_budget, path)).ok()) return st;
    if (!(st = get_count(srv, "maxConnections", sv.max_connections, path)).ok()) return st;
    if (!(st = get_count(srv, "maxConnectionsPerPeer", sv.max_connections_per_peer, path)).ok()) {
      return st;
    }
    if (!(st = get_duration(srv, "readTimeout", sv.read_timeout, path)).ok()) return st;
    if (!(st = get_duration(srv, "idleTimeout", sv.idle_timeout, path)).ok()) return st;
    auto fail = [&](const std::string& why) {
      return make_error(Errc::invalid_argument, path + ": setting \"server." + why);
    };
    if (sv.max_body == 0) return fail("maxBody\" must be more than 0");
    if (sv.body_budget - sv.body_budget / 4 < sv.max_body) {
      return fail("bodyBudget\" (" + std::to_string(sv.body_budget) +
                  " bytes) must be at least 4/3 of server.maxBody (" + std::to_string(sv.max_body) +
                  " bytes): a quarter of the budget is kept for small bodies");
    }
    if (sv.max_connections == 0) return fail("maxConnections\" must be more than 0");
    if (sv.max_connections_per_peer == 0 || sv.max_connections_per_peer > sv.max_connections) {
      return fail("maxConnectionsPerPeer\" must be from 1 to server.maxConnections");
    }
    if (sv.read_timeout.count() <= 0 || sv.idle_timeout.count() <= 0) {
      return fail("readTimeout\" and \"server.idleTimeout\" must be more than 0");
    }
    // "" (the chart's default) keeps the default: timeout + 5 s.
    if (const YAML::Node ld = srv["lameDuck"]; ld && !(ld.IsScalar() && ld.Scalar().empty())) {
      std::chrono::milliseconds lame_duck{0};  // a negative duration is not a duration
      if (!(st = get_duration(srv, "lameDuck", lame_duck, path)).ok()) return st;
      sv.lame_duck = lame_duck;
    }
  }
  if (const YAML::Node m = root["metrics"]) {
    if (!(st = check_section(m, "metrics", {"listen"}, path)).ok()) return st;
    if (!(st = get(m, "listen", s.metrics.listen, path)).ok()) return st;
  }
  if (const YAML::Node ev = root["events"]) {
    if (!(st = check_section(ev, "events", {"enabled", "interval"}, path)).ok()) return st;
    if (!(st = get(ev, "enabled", s.events.enabled, path)).ok()) return st;
    if (!(st = get_duration(ev, "interval", s.events.interval, path)).ok()) return st;
  }
  if (const YAML::Node sc = root["selfCert"]) {
    st = check_section(sc, "selfCert",
                       {"enabled", "secretName", "serviceName", "clusterDomain",
                        "validatingWebhooks", "mutatingWebhooks", "caValidity", "caRenewBefore",
                        "certValidity", "certRenewBefore", "rolloverGrace", "resync"},
                       path);
    if (!st.ok()) return st;
    auto& c = s.self_cert;
    if (!(st = get(sc, "enabled", c.enabled, path)).ok()) return st;
    if (!(st = get(sc, "secretName", c.secret_name, path)).ok()) return st;
    if (!(st = get(sc, "serviceName", c.service_name, path)).ok()) return st;
    if (!(st = get(sc, "clusterDomain", c.cluster_domain, path)).ok()) return st;
    if (!(st = get(sc, "validatingWebhooks", c.validating_webhooks, path)).ok()) return st;
    if (!(st = get(sc, "mutatingWebhooks", c.mutating_webhooks, path)).ok()) return st;
    if (!(st = get_duration(sc, "caValidity", c.ca_validity, path)).ok()) return st;
    if (!(st = get_duration(sc, "caRenewBefore", c.ca_renew_before, path)).ok()) return st;
    if (!(st = get_duration(sc, "certValidity", c.cert_validity, path)).ok()) return st;
    if (!(st = get_duration(sc, "certRenewBefore", c.cert_renew_before, path)).ok()) return st;
    if (!(st = get_duration(sc, "rolloverGrace", c.rollover_grace, path)).ok()) return st;
    if (!(st = get_duration(sc, "resync", c.resync, path)).ok()) return st;
  }
  if (!(st = get(root, "threads", s.threads, path)).ok()) return st;
  if (!(st = get(root, "logLevel", s.log_level, path)).ok()) return st;
  if (!(st = get(root, "pinning", s.pinning, path)).ok()) return st;
  if (!(st = get_duration(root, "timeout", s.timeout, path)).ok()) return st;
  if (const YAML::Node az = root["azure"]) {
    auto parsed = azure::parse_azure_settings(az);
    if (!parsed.ok())
      return make_error(Errc::invalid_argument, path + ": " + parsed.error().message);
    s.registry.azure = std::move(*parsed);
  }
  if (const YAML::Node reg = root["registry"]) {
    st = check_section(
        reg, "registry",
        {"config", "ca", "insecure", "revealPrivateDetails", "dns", "failFast", "connections"},
        path);
    if (!st.ok()) return st;
    if (!(st = get(reg, "config", s.registry.config_file, path)).ok()) return st;
    if (!(st = get(reg, "ca", s.registry.ca_file, path)).ok()) return st;
    if (!(st = get(reg, "insecure", s.registry.insecure_hosts, path)).ok()) return st;
    if (!(st = get(reg, "revealPrivateDetails", s.registry.reveal_private_details, path)).ok())
      return st;
    if (const YAML::Node dns = reg["dns"]) {
      st = check_section(dns, "registry.dns",
                         {"maxLookups", "reservedLookups", "timeout", "attempts"}, path);
      if (!st.ok()) return st;
      auto& d = s.registry.dns;
      size_t attempts = static_cast<size_t>(d.attempts);
      if (!(st = get_count(dns, "maxLookups", d.max_lookups, path, "registry.dns.")).ok() ||
          !(st = get_count(dns, "reservedLookups", d.reserved_lookups, path, "registry.dns."))
               .ok() ||
          !(st = get_count(dns, "attempts", attempts, path, "registry.dns.")).ok() ||
          !(st = get_duration(dns, "timeout", d.try_timeout, path)).ok()) {
        return st;
      }
      auto fail = [&](const std::string& why) {
        return make_error(Errc::invalid_argument, path + ": setting \"registry.dns." + why);
      };
      if (d.max_lookups == 0) return fail("maxLookups\" must be more than 0");
      if (d.reserved_lookups == 0) return fail("reservedLookups\" must be more than 0");
      if (attempts < 1 || attempts > 16) return fail("attempts\" must be from 1 to 16");
      if (d.try_timeout.count() <= 0 || d.try_timeout > std::chrono::seconds(30)) {
        return fail("timeout\" must be more than 0 and at most 30s");
      }
      d.attempts = static_cast<int>(attempts);
    }
    if (const YAML::Node ff = reg["failFast"]) {
      st = check_section(ff, "registry.failFast", {"after", "backoff", "maxBackoff"}, path);
      if (!st.ok()) return st;
      auto& f = s.registry.fail_fast;
      if (!(st = get_count(ff, "after", f.after, path, "registry.failFast.")).ok() ||
          !(st = get_duration(ff, "backoff", f.backoff, path)).ok() ||
          !(st = get_duration(ff, "maxBackoff", f.max_backoff, path)).ok()) {
        return st;
      }
      auto fail = [&](const std::string& why) {
        return make_error(Errc::invalid_argument, path + ": setting \"registry.failFast." + why);
      };
      if (f.after > 100) return fail("after\" must be at most 100 (0 turns it off)");
      if (f.backoff.count() <= 0 || f.backoff > std::chrono::minutes(5)) {
        return fail("backoff\" must be more than 0 and at most 5m");
      }
      if (f.max_backoff < f.backoff || f.max_backoff > std::chrono::minutes(30)) {
        return fail("maxBackoff\" must be at least backoff and at most 30m");
      }
    }
    if (const YAML::Node cn = reg["connections"]) {
      st = check_section(cn, "registry.connections", {"max", "reserved", "perHost"}, path);
      if (!st.ok()) return st;
      auto& c = s.registry.connections;
      if (!(st = get_count(cn, "max", c.max, path, "registry.connections.")).ok() ||
          !(st = get_count(cn, "reserved", c.reserved, path, "registry.connections.")).ok() ||
          !(st = get_count(cn, "perHost", c.per_host, path, "registry.connections.")).ok()) {
        return st;
      }
      auto fail = [&](const std::string& why) {
        return make_error(Errc::invalid_argument, path + ": setting \"registry.connections." + why);
      };
      if (c.max < 8 || c.max > 65536) return fail("max\" must be from 8 to 65536");
      if (c.reserved < 1 || c.reserved > 65536) return fail("reserved\" must be from 1 to 65536");
      if (c.per_host < 1 || c.per_host > c.max) return fail("perHost\" must be from 1 to max");
    }
  }
  if (const YAML::Node checks = root["checks"]) {
    st = check_section(checks, "checks", {"namespacePerSecond", "namespaceBurst"}, path);
    if (!st.ok()) return st;
    size_t rate = s.namespace_checks_per_second, burst = s.namespace_checks_burst;
    if (!(st = get_count(checks, "namespacePerSecond", rate, path, "checks.")).ok() ||
        !(st = get_count(checks, "namespaceBurst", burst, path, "checks.")).ok()) {
      return st;
    }
    // A burst below the dearest check (a keyless one, 20 units) would refuse it forever.
    if (burst < 64 || burst > 100000000) {
      return make_error(Errc::invalid_argument,
                        path + ": setting \"checks.namespaceBurst\" must be from 64 to 100000000");
    }
    s.namespace_checks_per_second = rate;
    s.namespace_checks_burst = burst;
  }
  if (const YAML::Node cache = root["cache"]) {
    st = check_section(cache, "cache", {"ttl", "negativeTtl", "size", "staleIfError", "tagTtl"},
                       path);
    if (!st.ok()) return st;
    std::chrono::milliseconds ttl = s.cache_ttl, neg = s.negative_cache_ttl, tag = s.tag_cache_ttl;
    if (!(st = get_duration(cache, "ttl", ttl, path)).ok()) return st;
    if (!(st = get_duration(cache, "negativeTtl", neg, path)).ok()) return st;
    if (!(st = get_duration(cache, "tagTtl", tag, path)).ok()) return st;
    if (tag.count() % 1000 != 0) {
      return make_error(Errc::invalid_argument,
                        path + ": setting \"cache.tagTtl\" must be whole seconds (e.g. 10s, 0s)");
    }
    s.tag_cache_ttl = std::chrono::duration_cast<std::chrono::seconds>(tag);
    if (!(st = get(cache, "size", s.cache_size, path)).ok()) return st;
    // "" or "0" (the chart's default): off.
    if (!(st = get_duration(cache, "staleIfError", s.stale_if_error, path)).ok()) return st;
    s.cache_ttl = std::chrono::duration_cast<std::chrono::seconds>(ttl);
    s.negative_cache_ttl = std::chrono::duration_cast<std::chrono::seconds>(neg);
  }
  return {};
}

Result<policy::Documents> load_documents(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> in_dir;
      for (const auto& e : fs::directory_iterator(p, ec)) {
        auto ext = e.path().extension().string();
        if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml"))
          in_dir.push_back(e.path().string());
      }
      if (ec) return make_error(Errc::invalid_argument, "--policy " + p + ": " + ec.message());
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else if (fs::exists(p, ec)) {
      files.push_back(p);
    } else {
      return make_error(Errc::invalid_argument, "--policy " + p + ": no such file or directory");
    }
  }
  policy::Documents all;
  std::map<std::string, std::string> seen;  // "policy <name>" / "TrustRoot <name>" -> origin
  for (const auto& f : files) {
    auto text = read_file(f);
    if (!text.ok()) return make_error(Errc::invalid_argument, "--policy " + text.error().message);
    auto parsed = policy::parse_documents(*text, f);
    if (!parsed.ok()) return make_error(Errc::invalid_argument, parsed.error().message);
    auto once = [&](const std::string& what, const std::string& origin) -> Status {
      auto [it, fresh] = seen.emplace(what, origin);
      if (fresh) return {};
      return make_error(Errc::invalid_argument,
                        what + " is defined twice: in " + it->second + " and in " + origin);
    };
    for (auto& p : parsed->policies) {
      if (auto st = once("policy \"" + p.name + "\"", p.origin); !st) return st.error();
      all.policies.push_back(std::move(p));
    }
    for (auto& r : parsed->trust_roots) {
      if (auto st = once("TrustRoot \"" + r.name + "\"", r.origin); !st) return st.error();
      all.trust_roots.push_back(std::move(r));
    }
  }
  return all;
}

Result<std::shared_ptr<const policy::PolicySet>> load_policies(
    const std::vector<std::string>& paths, policy::NoMatch no_match, uint64_t generation,
    const policy::DefaultTrustRoot& default_root) {
  auto docs = load_documents(paths);
  if (!docs.ok()) return docs.error();
  auto& all = docs->policies;
  auto& roots = docs->trust_roots;
  // Files cannot name Secrets: only the Kubernetes API can read them (serve --kube).
  if (auto st = policy::resolve_secrets(all, nullptr, ""); !st) {
    return make_error(Errc::invalid_argument, st.error().message);
  }
  if (auto st = policy::link_trust_roots(all, roots, default_root); !st) {
    return make_error(Errc::invalid_argument, st.error().message);
  }
  return std::make_shared<const policy::PolicySet>(std::move(all), no_match, generation);
}

std::vector<std::string> operator_registries(const policy::PolicySet& set,
                                             const std::vector<std::string>& also) {
  std::vector<std::string> out;
  for (const auto& r : also) {
    if (!r.empty()) out.push_back(oci::canonical_registry(ascii_lower(r)));
  }
  for (const auto& p : set.policies()) {
    if (!p.namespace_scope.empty()) continue;
    for (const auto& g : p.globs) {
      if (std::string r = g.literal_registry(); !r.empty()) out.push_back(std::move(r));
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace sigil::app
