// In-cluster and kubeconfig configuration: the good shapes and every bad field.
#include <cstdlib>

#include <catch2/catch.hpp>

#include "common/encoding.hpp"
#include "fake_api.hpp"
#include "kube/config.hpp"

using namespace sigil;
using namespace sigil::kube;
using sigil::test::pki;
using sigil::test::TempDir;

namespace {

struct InCluster {
  TempDir dir;
  InClusterOptions opts;
  InCluster() {
    opts.token_file = dir.file("token", "tok-1\n");
    opts.ca_file = dir.file("ca.crt", pki().ca_pem);
    opts.namespace_file = dir.file("namespace", "sigil-system");
    opts.use_environment = false;
    opts.service_host = "10.0.0.1";
    opts.service_port = "443";
  }
};

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

std::string b64(const std::string& s) {
  return base64_encode(s);
}

// A kubeconfig with one context "ctx" -> cluster "c" and user "u"; the cluster and user
// bodies are given as YAML lines (indented by the caller's 4 spaces).
std::string kubeconfig(const std::string& cluster, const std::string& user,
                       const std::string& extra_context = "") {
  return "apiVersion: v1\nkind: Config\ncurrent-context: ctx\n"
         "clusters:\n- name: other\n  cluster:\n    server: https://other.example\n"
         "- name: c\n  cluster:\n" +
         cluster +
         "contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n    namespace: team\n" +
         extra_context + "users:\n- name: u\n  user:\n" + user;
}

const std::string kServer = "    server: https://127.0.0.1:6443\n";

std::string ca_data() {
  return "    certificate-authority-data: " + b64(pki().ca_pem) + "\n";
}

Result<ParsedKubeconfig> parse(const std::string& yaml, KubeconfigOptions o = {}) {
  o.source = "kubeconfig /test/config";
  return parse_kubeconfig(yaml, o);
}

}  // namespace

TEST_CASE("in-cluster: service host, port, token file, CA, namespace") {
  InCluster ic;
  auto c = in_cluster_config(ic.opts);
  REQUIRE(c.ok());
  CHECK(c->server_url() == "https://10.0.0.1:443");
  CHECK(c->token == "tok-1");
  CHECK(c->token_file == ic.opts.token_file);
  CHECK(c->ca_pem == pki().ca_pem);
  CHECK(c->default_namespace == "sigil-system");
  CHECK(c->source == "in-cluster");
}

TEST_CASE("in-cluster: IPv6 service host is bracketed in the URL") {
  InCluster ic;
  ic.opts.service_host = "fd00:10::1";
  ic.opts.service_port = "6443";
  auto c = in_cluster_config(ic.opts);
  REQUIRE(c.ok());
  CHECK(c->host == "fd00:10::1");
  CHECK(c->server_url() == "https://[fd00:10::1]:6443");
}

TEST_CASE("in-cluster: reads KUBERNETES_SERVICE_HOST/PORT from the environment") {
  InCluster ic;
  ic.opts.use_environment = true;
  ::setenv("KUBERNETES_SERVICE_HOST", "192.0.2.7", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "8443", 1);
  auto c = in_cluster_config(ic.opts);
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  ::unsetenv("KUBERNETES_SERVICE_PORT");
  REQUIRE(c.ok());
  CHECK(c->server_url() == "https://192.0.2.7:8443");
  auto none = in_cluster_config(ic.opts);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == Errc::not_found);
  CHECK(contains(none.error().message, "KUBERNETES_SERVICE_HOST"));
}

TEST_CASE("in-cluster: each bad piece is named") {
  InCluster ic;
  SECTION("missing port") {
    ic.opts.service_port = "";
    auto c = in_cluster_config(ic.opts);
    REQUIRE_FALSE(c.ok());
    CHECK(contains(c.error().message, "KUBERNETES_SERVICE_PORT"));
  }
  SECTION("bad port") {
    ic.opts.service_port = "99999";
    CHECK(contains(in_cluster_config(ic.opts).error().message, "KUBERNETES_SERVICE_PORT"));
  }
  SECTION("bad host") {
    ic.opts.service_host = "a/b";
    CHECK(contains(in_cluster_config(ic.opts).error().message, "KUBERNETES_SERVICE_HOST"));
  }
  SECTION("missing token file") {
    ic.opts.token_file = (ic.dir.path / "nope").string();
    auto c = in_cluster_config(ic.opts);
    REQUIRE_FALSE(c.ok());
    CHECK(contains(c.error().message, ic.opts.token_file));
  }
  SECTION("a token file past its cap") {
    ic.opts.token_file = ic.dir.file("token", std::string(64 * 1024 + 1, 'a'));
    auto c = in_cluster_config(ic.opts);
    REQUIRE_FALSE(c.ok());
    CHECK(contains(c.error().message,
                   "token file: " + ic.opts.token_file + " is larger than 65536 bytes"));
    ic.opts.token_file = ic.dir.file("token", std::string(64 * 1024, 'a'));
    CHECK(in_cluster_config(ic.opts).ok());
  }
  SECTION("a CA file past its cap") {
    ic.opts.ca_file = ic.dir.file("ca.crt", pki().ca_pem + std::string(1024 * 1024, '\n'));
    auto c = in_cluster_config(ic.opts);
    REQUIRE_FALSE(c.ok());
    CHECK(contains(c.error().message, ic.opts.ca_file + " is larger than 1048576 bytes"));
  }
  SECTION("empty token") {
    ic.opts.token_file = ic.dir.file("token", "  \n");
    CHECK(contains(in_cluster_config(ic.opts).error().message, "is empty"));
  }
  SECTION("missing CA") {
    ic.opts.ca_file = (ic.dir.path / "none.crt").string();
    CHECK(contains(in_cluster_config(ic.opts).error().message, "none.crt"));
  }
  SECTION("CA is not PEM") {
    ic.opts.ca_file = ic.dir.file("ca.crt", "hello");
    CHECK(contains(in_cluster_config(ic.opts).error().message, "no PEM certificate"));
  }
  SECTION("namespace file missing: default") {
    ic.opts.namespace_file = (ic.dir.path / "none").string();
    auto c = in_cluster_config(ic.opts);
    REQUIRE(c.ok());
    CHECK(c->default_namespace == "default");
  }
  SECTION("namespace file garbage") {
    ic.opts.namespace_file = ic.dir.file("namespace", "a/b");
    CHECK(contains(in_cluster_config(ic.opts).error().message, "namespace file"));
  }
}

TEST_CASE("kubeconfig: current-context, token, CA data, namespace") {
  auto p = parse(kubeconfig(kServer + ca_data(), "    token: abc.def\n"));
  REQUIRE(p.ok());
  const auto& c = p->config;
  CHECK(p->context == "ctx");
  CHECK(c.host == "127.0.0.1");
  CHECK(c.port == "6443");
  CHECK(c.ca_pem == pki().ca_pem);
  CHECK(c.token == "abc.def");
  CHECK(c.default_namespace == "team");
  CHECK(contains(c.source, "context ctx"));
}

TEST_CASE("kubeconfig: a named context, IPv6 server, path prefix, tls-server-name") {
  const std::string extra = "- name: other-ctx\n  context:\n    cluster: other\n    user: u\n";
  auto cfg = kubeconfig(kServer + ca_data(), "    token: t\n", extra);
  KubeconfigOptions o;
  o.context = "other-ctx";
  auto p = parse(cfg, o);
  REQUIRE(p.ok());
  CHECK(p->config.host == "other.example");
  CHECK(p->config.port == "443");
  CHECK(p->config.default_namespace == "default");

  auto v6 =
      parse(kubeconfig("    server: https://[fd00::1]:8443/k8s/clusters/c-1/\n"
                       "    tls-server-name: kubernetes\n" +
                           ca_data(),
                       "    token: t\n"));
  REQUIRE(v6.ok());
  CHECK(v6->config.host == "fd00::1");
  CHECK(v6->config.port == "8443");
  CHECK(v6->config.base_path == "/k8s/clusters/c-1");
  CHECK(v6->config.tls_server_name == "kubernetes");
  CHECK(v6->config.server_url() == "https://[fd00::1]:8443/k8s/clusters/c-1");
}

TEST_CASE("kubeconfig: client certificate data") {
  auto p = parse(kubeconfig(kServer + ca_data(),
                            "    client-certificate-data: " + b64(pki().client_cert_pem) +
                                "\n    client-key-data: " + b64(pki().client_key_pem) + "\n"));
  REQUIRE(p.ok());
  CHECK(p->config.client_cert_pem == pki().client_cert_pem);
  CHECK(p->config.client_key_pem == pki().client_key_pem);
}

TEST_CASE("kubeconfig: every bad field is named") {
  struct Case {
    std::string yaml;
    std::string field;
    Errc code;
  };
  const std::string tok = "    token: t\n";
  const auto c = GENERATE_REF(values<Case>({
      {kubeconfig("    server: http://127.0.0.1:8080\n", tok), "clusters[1] (\"c\").cluster.server",
       Errc::invalid_argument},
      {kubeconfig("    certificate-authority-data: x\n", tok), "cluster.server: is missing",
       Errc::invalid_argument},
      {kubeconfig("    server: https://h:0\n", tok), "cluster.server: has a bad port",
       Errc::invalid_argument},
      {kubeconfig("    server: https://fd00::1\n", tok), "cluster.server", Errc::invalid_argument},
      {kubeconfig("    server: https://u:p@h\n", tok), "cluster.server", Errc::invalid_argument},
      {kubeconfig(kServer + "    insecure-skip-tls-verify: true\n", tok),
       "cluster.insecure-skip-tls-verify: true is refused", Errc::invalid_argument},
      {kubeconfig(kServer + "    insecure-skip-tls-verify: maybe\n", tok),
       "insecure-skip-tls-verify: must be true or false", Errc::invalid_argument},
      {kubeconfig(kServer + "    certificate-authority-data: '***'\n", tok),
       "certificate-authority-data: is not valid base64", Errc::invalid_argument},
      {kubeconfig(kServer + "    certificate-authority-data: " + b64("not pem") + "\n", tok),
       "certificate-authority-data: holds no PEM certificate", Errc::invalid_argument},
      {kubeconfig(kServer + "    proxy-url: http://proxy:3128\n", tok), "cluster.proxy-url",
       Errc::unsupported},
      {kubeconfig(kServer, "    exec:\n      command: kubelogin\n"), "users[0] (\"u\").user.exec",
       Errc::unsupported},
      {kubeconfig(kServer, "    auth-provider:\n      name: azure\n"), "user.auth-provider",
       Errc::unsupported},
      {kubeconfig(kServer, "    username: admin\n    password: pw\n"), "user.username",
       Errc::unsupported},
      {kubeconfig(kServer, "    as: someone\n"), "user.as: impersonation", Errc::unsupported},
      // A space or a control byte in the server's path or in the token would be written into
      // the request line or the Authorization header of every call.
      {kubeconfig("    server: \"https://127.0.0.1:6443/a b\"\n", tok),
       "cluster.server: has a path with spaces or control characters", Errc::invalid_argument},
      {kubeconfig("    server: \"https://127.0.0.1:6443/a\\r\\nX-Evil: 1\"\n", tok),
       "cluster.server: has a path with spaces or control characters", Errc::invalid_argument},
      {kubeconfig(kServer, "    token: \"t\\r\\nX-Evil: 1\"\n"),
       "user.token: contains whitespace or control bytes", Errc::invalid_argument},
      {kubeconfig(kServer, "    token: \"a b\"\n"),
       "user.token: contains whitespace or control bytes", Errc::invalid_argument},
      {kubeconfig(kServer, "    token: [1, 2]\n"), "user.token: must be a string",
       Errc::invalid_argument},
      {kubeconfig(kServer, "    client-certificate-data: " + b64(pki().client_cert_pem) + "\n"),
       "client-certificate without client-key", Errc::invalid_argument},
      {kubeconfig(kServer, "    client-key-data: " + b64(pki().client_key_pem) + "\n"),
       "client-key without client-certificate", Errc::invalid_argument},
      {kubeconfig(kServer, "    client-key-data: " + b64("nope") +
                               "\n    client-certificate-data: " + b64(pki().client_cert_pem) +
                               "\n"),
       "client-key-data: holds no PEM block", Errc::invalid_argument},
      {"apiVersion: v1\nclusters: []\n", "current-context is not set", Errc::invalid_argument},
      {"current-context: x\ncontexts: []\n", "contexts has no entry named \"x\"",
       Errc::invalid_argument},
      {"current-context: x\ncontexts: {a: 1}\n", "contexts: must be a list",
       Errc::invalid_argument},
      {"current-context: x\ncontexts:\n- name: x\n  context:\n    cluster: nope\n",
       "clusters is missing", Errc::invalid_argument},
      {"current-context: x\ncontexts:\n- name: x\n  context: {user: u}\n",
       "context.cluster: is missing", Errc::invalid_argument},
      {kubeconfig(kServer, tok).replace(kubeconfig(kServer, tok).find("user: u"), 7, "user: v"),
       "users has no entry named \"v\"", Errc::invalid_argument},
      {"- a\n- b\n", "is not a YAML mapping", Errc::parse_error},
      {"a: [\n", "not valid YAML", Errc::parse_error},
      {"", "is empty", Errc::parse_error},
  }));
  auto p = parse(c.yaml);
  REQUIRE_FALSE(p.ok());
  INFO(p.error().message);
  CHECK(p.error().code == c.code);
  CHECK(contains(p.error().message, "kubeconfig /test/config"));
  CHECK(contains(p.error().message, c.field));
}

TEST_CASE("kubeconfig: insecure-skip-tls-verify only when explicitly allowed, never with a CA") {
  KubeconfigOptions o;
  o.allow_insecure = true;
  auto p = parse(kubeconfig(kServer + "    insecure-skip-tls-verify: true\n", "    token: t\n"), o);
  REQUIRE(p.ok());
  CHECK(p->config.insecure_skip_tls_verify);
  auto both = parse(
      kubeconfig(kServer + ca_data() + "    insecure-skip-tls-verify: true\n", "    token: t\n"),
      o);
  REQUIRE_FALSE(both.ok());
  CHECK(contains(both.error().message, "cannot be combined"));
}

TEST_CASE("load_kubeconfig reads referenced files relative to the kubeconfig") {
  TempDir dir;
  dir.file("certs/ca.pem", pki().ca_pem);
  dir.file("certs/client.pem", pki().client_cert_pem);
  dir.file("certs/client.key", pki().client_key_pem);
  dir.file("token", "file-token\n");
  const std::string path =
      dir.file("kube/config",
               kubeconfig(kServer + "    certificate-authority: ../certs/ca.pem\n",
                          "    tokenFile: ../token\n    client-certificate: ../certs/client.pem\n"
                          "    client-key: ../certs/client.key\n"));
  auto c = load_kubeconfig(path);
  REQUIRE(c.ok());
  CHECK(c->ca_pem == pki().ca_pem);
  CHECK(c->client_cert_pem == pki().client_cert_pem);
  CHECK(c->client_key_pem == pki().client_key_pem);
  CHECK(c->token == "file-token");
  CHECK(c->token_file == (dir.path / "token").string());

  SECTION("a missing referenced file names the field and the path") {
    std::filesystem::remove(dir.path / "certs/client.key");
    auto m = load_kubeconfig(path);
    REQUIRE_FALSE(m.ok());
    CHECK(contains(m.error().message, "user.client-key"));
    CHECK(contains(m.error().message, "client.key"));
  }
  SECTION("a CA file that is not PEM") {
    dir.file("certs/ca.pem", "garbage");
    auto m = load_kubeconfig(path);
    REQUIRE_FALSE(m.ok());
    CHECK(contains(m.error().message, "certificate-authority"));
  }
  SECTION("an empty token file") {
    dir.file("token", "\n");
    auto m = load_kubeconfig(path);
    REQUIRE_FALSE(m.ok());
    CHECK(contains(m.error().message, "tokenFile"));
  }
  SECTION("the kubeconfig itself is missing") {
    auto m = load_kubeconfig((dir.path / "nope").string());
    REQUIRE_FALSE(m.ok());
    CHECK(contains(m.error().message, "nope"));
  }
}
