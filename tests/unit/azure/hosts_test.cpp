// azure::HostAllowlist: whole-host patterns, lookalikes, ports (issue 11 item 5).
#include <catch2/catch.hpp>

#include "azure/hosts.hpp"

using namespace sigil;
using namespace sigil::azure;

TEST_CASE("hosts: the default ACR rule is ^[a-z0-9-]+\\.azurecr\\.(io|cn|us|de)$") {
  const HostAllowlist l = HostAllowlist::default_registries();
  struct Row {
    const char* host;
    bool allowed;
  };
  auto row = GENERATE(values<Row>({
      {"myacr.azurecr.io", true},
      {"MyAcr.AzureCR.io", true},  // hosts are case-insensitive
      {"my-acr1.azurecr.cn", true},
      {"x.azurecr.us", true},
      {"x.azurecr.de", true},
      {"myacr.azurecr.io:443", true},        // the https default port is the same host
      {"x.azurecr.io.evil.example", false},  // the lookalike of old credential helpers
      {"evil.example/x.azurecr.io", false},
      {"a.b.azurecr.io", false},  // one label, as the regex has it
      {"azurecr.io", false},
      {".azurecr.io", false},
      {"x.azurecr.io.", false},
      {"x.azurecr.com", false},
      {"xazurecr.io", false},
      {"x_y.azurecr.io", false},
      {"x.azurecr.io:5000", false},  // another port is another origin
      {"x.azurecr.io:", false},
      {"https://x.azurecr.io", false},
      {"user@x.azurecr.io", false},
      {"", false},
      {"mcr.microsoft.com", false},
  }));
  CAPTURE(row.host);
  CHECK(l.allows(row.host) == row.allowed);
}

TEST_CASE("hosts: configured patterns: *.suffix, exact host, exact host:port") {
  auto l = HostAllowlist::parse(
      {"*.azurecr.microsoftazure.de", "127.0.0.1:8443", "[::1]:5000", "registry.internal"});
  REQUIRE(l.ok());
  CHECK(l->allows("x.azurecr.microsoftazure.de"));
  CHECK_FALSE(l->allows("x.azurecr.microsoftazure.de.evil"));
  CHECK(l->allows("127.0.0.1:8443"));
  CHECK_FALSE(l->allows("127.0.0.1"));        // no port is another origin
  CHECK_FALSE(l->allows("127.0.0.1:84430"));  // not a prefix
  CHECK_FALSE(l->allows("127.0.0.1:844"));
  CHECK_FALSE(l->allows("127.0.0.10:8443"));
  CHECK(l->allows("[::1]:5000"));
  CHECK(l->allows("registry.internal"));
  CHECK(l->allows("registry.internal:443"));
  CHECK_FALSE(l->allows("x.registry.internal"));  // an exact host is not a suffix
  CHECK_FALSE(l->allows("registry.internal.evil"));
  CHECK_FALSE(HostAllowlist::default_registries().allows("127.0.0.1:8443"));
  // names(): only the exact entries, as the operator wrote them (normalized).
  CHECK(l->names("registry.internal"));
  CHECK(l->names("Registry.Internal:443"));
  CHECK(l->names("127.0.0.1:8443"));
  CHECK_FALSE(l->names("x.azurecr.microsoftazure.de"));  // a wildcard's match is not a name
  CHECK_FALSE(l->names("x.registry.internal"));
  CHECK_FALSE(l->names("azurecr.microsoftazure.de"));  // a wildcard's suffix names nothing
  CHECK_FALSE(l->names(""));
  CHECK_FALSE(HostAllowlist::default_registries().names("x.azurecr.io"));
}

TEST_CASE("hosts: malformed patterns are refused with the pattern named") {
  auto bad =
      GENERATE(as<std::string>{}, "", "*", "*.", "x.*.io", "**.azurecr.io", "https://x.azurecr.io",
               "x.azurecr.io/path", "u@x.io", "x.io:0", "x.io:99999", "*.[::1]");
  CAPTURE(bad);
  auto l = HostAllowlist::parse({bad});
  REQUIRE_FALSE(l.ok());
  CHECK(l.error().code == Errc::invalid_argument);
}

TEST_CASE("hosts: the default vault rule is *.vault.azure.net") {
  const HostAllowlist l = HostAllowlist::default_vaults();
  CHECK(l.allows("myvault.vault.azure.net"));
  CHECK_FALSE(l.allows("myvault.vault.azure.net.evil.example"));
  CHECK_FALSE(l.allows("myvault.azurecr.io"));
  CHECK_FALSE(HostAllowlist::default_registries().allows("myvault.vault.azure.net"));
}
