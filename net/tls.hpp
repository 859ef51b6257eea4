// net/tls.hpp: what a client trusts and presents on TLS connections.
//
// Role: the configuration half of net's client TLS (the OpenSSL half is in tls.cpp, behind
// net::Client). Every net::Client has its own trust: the registry client trusts the system
// roots plus registry.ca, the Kubernetes client the cluster CA alone, an Azure client the
// system roots. No OpenSSL or Asio here.
#pragma once

#include <string>
#include <vector>

namespace sigil::net {

struct TlsOptions {
  // The system roots, found the way OpenSSL finds them (SSL_CERT_FILE / SSL_CERT_DIR when
  // set, else the distribution's bundle): what `curl` on the same machine trusts.
  bool system_roots = true;
  std::vector<std::string> ca_files;  // more PEM bundles (every certificate in them)
  std::string ca_pem;                 // more PEM certificates, in memory (a cluster CA)
  // A client certificate (kubeconfig client-certificate): leaf first, then intermediates,
  // and its private key. Both or neither.
  std::string client_cert_pem;
  std::string client_key_pem;
  // Verify (and send as SNI) this name instead of the URL's host: kubeconfig
  // tls-server-name, for an API server reached by IP whose certificate names a host.
  std::string server_name;
  // No verification of the peer at all. Only for a kubeconfig that sets
  // insecure-skip-tls-verify and a caller that explicitly accepted it; logged as a warning.
  bool insecure_skip_verify = false;
};

}  // namespace sigil::net
