// Shared by the net tests: deadlines, URLs of the fake server, client options.
#pragma once

#include <chrono>
#include <string>

#include "fake_http.hpp"
#include "net/client.hpp"
#include "run_coro.hpp"

namespace sigil::test {

using namespace std::chrono_literals;

inline Deadline in(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

inline net::Url url_of(const FakeHttpServer& s, const std::string& target = "/") {
  auto u = net::parse_url(s.url(target));
  if (!u) throw std::runtime_error("bad test URL " + s.url(target));
  return *u;
}

// Trusts the test CA only.
inline net::ClientOptions tls_options() {
  net::ClientOptions o;
  o.tls.system_roots = false;
  o.tls.ca_pem = tls_pki().ca_pem;
  return o;
}

inline FakeHttpOptions tls_server(std::string cert = {}, std::string key = {}) {
  FakeHttpOptions o;
  o.tls = true;
  o.cert_pem = std::move(cert);
  o.key_pem = std::move(key);
  return o;
}

inline bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace sigil::test
