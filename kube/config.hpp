// kube/config.hpp: where the Kubernetes API server is and how to authenticate to it, from the
// in-cluster service account or from a kubeconfig file.
//
// Role: produce a ClusterConfig that kube::Client consumes. Reads files and (in-cluster)
// environment variables; no network, no Asio/Beast; yaml-cpp only in the .cpp and nothing
// throws out. Every error names the file (or variable) and the field. Only what sigil can do
// securely is accepted: HTTPS servers, bearer tokens (static or from a file that is re-read),
// client certificates; exec / auth-provider plugins and basic auth are refused as unsupported,
// insecure-skip-tls-verify is refused unless the caller explicitly allows it.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace sigil::kube {

struct ClusterConfig {
  // The API server: host (IP literal without brackets, or DNS name), port, optional path
  // prefix (kubeconfig servers behind a proxy: "https://proxy/k8s/clusters/c-1").
  std::string host;
  std::string port = "443";
  std::string base_path;                  // "" or "/prefix" (no trailing '/')
  std::string tls_server_name;            // overrides the name verified in the certificate
  std::string ca_pem;                     // PEM bundle; empty = the system roots
  bool insecure_skip_tls_verify = false;  // only when KubeconfigOptions::allow_insecure

  // Credentials. token_file (when set) is re-read periodically and after a 401; token is the
  // static fallback (kubeconfig `token`). Never log either.
  std::string token;
  std::string token_file;
  std::string client_cert_pem;  // leaf first, then intermediates
  std::string client_key_pem;

  std::string default_namespace = "default";  // in-cluster: the pod's namespace
  std::string source;  // "in-cluster" or "kubeconfig /path (context ctx)": for messages

  // "https://host:port" (IPv6 bracketed) + base_path.
  std::string server_url() const;
};

// Paths and variables of the in-cluster service account, overridable for tests.
struct InClusterOptions {
  std::string token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::string ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  std::string namespace_file = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
  // When set, used instead of the environment variables KUBERNETES_SERVICE_HOST / _PORT.
  bool use_environment = true;
  std::string service_host;
  std::string service_port;
};

// The in-cluster configuration (client-go rest.InClusterConfig): https://$HOST:$PORT, the
// service account token (file kept for re-reading), its CA, its namespace ("default" when
// the namespace file is missing). not_found when KUBERNETES_SERVICE_HOST/PORT are unset (not
// in a cluster); invalid_argument naming the variable or file otherwise.
Result<ClusterConfig> in_cluster_config(const InClusterOptions& options = {});

struct KubeconfigOptions {
  std::string context;          // "" = current-context
  bool allow_insecure = false;  // accept insecure-skip-tls-verify: true (tests, kind clusters)
  std::string base_dir;         // relative file paths resolve against this (the file's dir)
  std::string source = "kubeconfig";  // name used in messages (the path)
};

// Files a kubeconfig refers to, with the field that named them (for messages).
struct KubeconfigFiles {
  struct Ref {
    std::string path;   // resolved against KubeconfigOptions::base_dir
    std::string field;  // "users[0] (\"admin\").user.client-key"
  };
  Ref ca_file;           // certificate-authority (when no -data)
  Ref client_cert_file;  // client-certificate (when no -data)
  Ref client_key_file;   // client-key (when no -data)
  Ref token_file;        // tokenFile
};
struct ParsedKubeconfig {
  ClusterConfig config;  // *_pem filled from -data fields only
  KubeconfigFiles files;
  std::string context;  // the context used
};
// Parses kubeconfig YAML text (one document): the context (options.context or
// current-context), its cluster and its user. Reads no file: referenced paths land in `files`
// for load_kubeconfig. Errors name options.source and the field ("clusters[0] (\"kind\")
// .cluster.server: must be an https:// URL"): invalid_argument for a bad value, unsupported for
// exec/auth-provider plugins, basic auth, impersonation and proxy-url, parse_error for YAML
// that does not parse, too_large above 4 MiB.
Result<ParsedKubeconfig> parse_kubeconfig(std::string_view yaml, const KubeconfigOptions& options);

// Reads and parses a kubeconfig file (--kubeconfig), then the files it references. Relative
// paths resolve against the file's directory. A tokenFile is read once here (to fail early)
// and kept for periodic re-reading.
Result<ClusterConfig> load_kubeconfig(const std::string& path, KubeconfigOptions options = {});

// Reads a bearer token file: at most 64 KiB, surrounding whitespace trimmed, must not be
// empty. The message names the file, never the content.
Result<std::string> read_token_file(const std::string& path);

}  // namespace sigil::kube
