// azure::AzureCredentials end to end against tests/support/azure_fakes.py: Workload Identity
// with FakeAad, managed identity with FakeImds, the exchange on AcrFront, and the token it
// yields accepted by the REAL distribution registry behind the front (token auth: only tokens
// signed by the registry's token signer pass). Python is an independent implementation of the
// wire formats, so the two sides agreeing is the check.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "azure/azure.hpp"
#include "crypto/keys.hpp"
#include "integration.hpp"
#include "net/client.hpp"

namespace fs = std::filesystem;
using namespace sigil;
using namespace sigil::azure;
using namespace std::chrono_literals;
using namespace sigil::test;

namespace {

const std::string kWorld =
    std::string(SIGIL_SOURCE_DIR) + "/tests/integration/azure/azure_world.py";

// azure_world.py, running until this process closes its stdin.
struct World {
  std::string dir;
  FILE* proc = nullptr;
  nlohmann::json w;
  World() {
    char tmpl[] = "/tmp/sigil-azure-it-XXXXXX";
    dir = ::mkdtemp(tmpl);
    proc = ::popen(python(kWorld + " --dir " + dir).c_str(), "w");
    if (proc == nullptr) throw std::runtime_error("cannot start azure_world.py");
    const auto end = std::chrono::steady_clock::now() + 120s;
    while (!fs::exists(dir + "/world.json")) {
      if (std::chrono::steady_clock::now() > end)
        throw std::runtime_error("azure_world.py did not start");
      std::this_thread::sleep_for(50ms);
    }
    std::ifstream f(dir + "/world.json");
    w = nlohmann::json::parse(f);
  }
  ~World() {
    if (proc != nullptr) ::pclose(proc);  // closes its stdin: it stops everything
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string s(const char* k) const { return w.at(k).get<std::string>(); }
};

World& world() {
  static World w;
  return w;
}

Options base_options(const World& w) {
  Options o;
  o.registries = HostAllowlist::parse({w.s("acr")}).value();
  o.tls.system_roots = false;
  o.tls.ca_files = {w.s("aad_ca"), w.s("acr_ca")};
  return o;
}

// GET the image's manifest by tag through the front, with the token, as registry/ will.
net::Response get_manifest(Loop& l, const World& w, const std::string& authorization) {
  net::ClientOptions co;
  co.tls.system_roots = false;
  co.tls.ca_files = {w.s("acr_ca")};
  net::Client c(l.ioc.get_executor(), co);
  auto url = net::parse_url("https://" + w.s("acr") + "/v2/" + w.s("repository") + "/manifests/" +
                            w.s("tag"));
  REQUIRE(url.ok());
  net::Request req = net::get_request(*url, "application/vnd.oci.image.manifest.v1+json");
  req.authorization = authorization;
  auto r = l.run(c.send(req, soon(), net::Limits{}));
  INFO((r ? std::string() : r.error().message));
  REQUIRE(r.ok());
  return std::move(r).value();
}

void check_pull(Loop& l, AzureCredentials& az, const World& w) {
  auto cred = l.run(az.for_registry(w.s("acr"), w.s("repository"), soon()));
  INFO((cred ? std::string() : cred.error().message));
  REQUIRE(cred.ok());
  REQUIRE(cred->has_value());
  auto r = get_manifest(l, w, **cred);
  CHECK(r.status == 200);
  CHECK("sha256:" + crypto::sha256_hex(r.body) == w.s("digest"));
  // Without it, the real registry refuses.
  CHECK(get_manifest(l, w, "").status == 401);
}

}  // namespace

TEST_CASE("integration: workload identity -> AAD -> ACR exchange -> the real registry") {
  skip_without_registry_tools();
  World& w = world();
  Loop l;
  Options o = base_options(w);
  o.workload_identity = WorkloadIdentityConfig{w.s("client_id"), w.s("tenant"), w.s("token_file"),
                                               w.s("aad_authority")};
  AzureCredentials az(l.ioc.get_executor(), o);
  REQUIRE(az.init_status().ok());
  check_pull(l, az, w);

  // The projected token rotates: FakeAad accepts only the file's current content.
  {
    std::ofstream f(w.s("token_file") + ".new");
    f << "federated-token-2";
  }
  fs::rename(w.s("token_file") + ".new", w.s("token_file"));
  auto t = l.run(az.aad_token(std::string(kAcrScope), soon(), true));
  INFO((t ? std::string() : t.error().message));
  CHECK(t.ok());
}

TEST_CASE("integration: the kubelet identity through IMDS -> ACR exchange -> the real registry") {
  skip_without_registry_tools();
  World& w = world();
  Loop l;
  Options o = base_options(w);
  o.managed_identity.enabled = true;
  o.managed_identity.client_id = w.s("kubelet_id");
  o.managed_identity.endpoint = w.s("imds");
  AzureCredentials az(l.ioc.get_executor(), o);
  check_pull(l, az, w);
  // Another client id (an identity not on this node): a clear error, no token.
  Options other = o;
  other.managed_identity.client_id = "00000000-0000-0000-0000-000000000000";
  AzureCredentials az2(l.ioc.get_executor(), other);
  auto r = l.run(az2.for_registry(w.s("acr"), w.s("repository"), soon()));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("azure managed identity") != std::string::npos);
}
