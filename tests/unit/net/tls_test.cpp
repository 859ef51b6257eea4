// net::Client's TLS against the fake server over real TLS: trust, host names, IP SANs, SNI,
// client certificates, SSL_CERT_FILE.
#include <cstdlib>
#include <memory>

#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "tls_pki.hpp"

using namespace sigil;
using namespace sigil::net;
using namespace sigil::test;

namespace {

HttpReply ok(const HttpRequest&) {
  return HttpReply::text(200, "hello");
}

Result<Response> get(Loop& loop, Client& c, const Url& url) {
  return loop.run(c.send(get_request(url), in(5s), Limits{}));
}

Url with_host(Url u, std::string host) {
  u.host = std::move(host);
  return u;
}

}  // namespace

TEST_CASE("TLS: verified against the client's own CA; a name gets SNI, an IP literal none") {
  FakeHttpServer srv(ok, tls_server());
  Loop loop;
  Client c(loop.ioc.get_executor(), tls_options());
  REQUIRE(c.init_status().ok());
  auto by_ip = get(loop, c, url_of(srv));
  REQUIRE(by_ip.ok());
  CHECK(by_ip->status == 200);
  CHECK(by_ip->body == "hello");
  auto by_name = get(loop, c, with_host(url_of(srv), "localhost"));
  REQUIRE(by_name.ok());
  auto seen = srv.seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].sni.empty());  // RFC 6066: no IP literal in SNI
  CHECK(seen[1].sni == "localhost");
  CHECK(seen[1].header("Host") == "localhost:" + std::to_string(srv.port()));
}

TEST_CASE(
    "TLS: a certificate for another name, another IP, from another CA or expired is "
    "refused") {
  struct Case {
    const char* what;
    std::string cert, key;
    std::string host;  // what the client connects to
    std::string ca;    // what the client trusts
  };
  const auto& p = tls_pki();
  auto c = GENERATE_REF(values<Case>({
      {"name mismatch", p.other_name_cert_pem, p.other_name_key_pem, "localhost", p.ca_pem},
      {"IP literal vs a DNS-only certificate", p.other_name_cert_pem, p.other_name_key_pem,
       "127.0.0.1", p.ca_pem},
      {"another IP SAN", p.other_ip_cert_pem, p.other_ip_key_pem, "127.0.0.1", p.ca_pem},
      {"unknown CA", p.server_cert_pem, p.server_key_pem, "127.0.0.1", p.other_ca_pem},
      {"expired", p.expired_cert_pem, p.expired_key_pem, "localhost", p.ca_pem},
  }));
  CAPTURE(c.what);
  FakeHttpServer srv(ok, tls_server(c.cert, c.key));
  Loop loop;
  auto o = tls_options();
  o.tls.ca_pem = c.ca;
  Client client(loop.ioc.get_executor(), o);
  auto r = loop.run(client.send(get_request(with_host(url_of(srv), c.host)), in(5s), Limits{}));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unavailable);
  CHECK(contains(r.error().message, "certificate verification failed"));
  CHECK(srv.requests() == 0);
}

TEST_CASE("TLS: a certificate error is not retried, whatever the retry policy") {
  const auto& p = tls_pki();
  FakeHttpServer srv(ok, tls_server(p.other_name_cert_pem, p.other_name_key_pem));
  Loop loop;
  Client client(loop.ioc.get_executor(), tls_options());
  auto req = get_request(url_of(srv));
  req.retry.max_retries = 3;
  req.retry.backoff_base = 1ms;
  auto r = loop.run(client.send(req, in(5s), Limits{}));
  REQUIRE_FALSE(r.ok());
  CHECK(srv.connections() == 1);
}

TEST_CASE("TLS: server_name overrides the name verified and sent (kubeconfig tls-server-name)") {
  const auto& p = tls_pki();
  FakeHttpServer srv(ok, tls_server(p.other_name_cert_pem, p.other_name_key_pem));
  Loop loop;
  auto o = tls_options();
  o.tls.server_name = "other.example";
  Client right(loop.ioc.get_executor(), o);
  REQUIRE(get(loop, right, url_of(srv)).ok());
  CHECK(srv.seen().back().sni == "other.example");
  o.tls.server_name = "evil.example";
  Client wrong(loop.ioc.get_executor(), o);
  auto r = get(loop, wrong, url_of(srv));
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "certificate verification failed"));
}

TEST_CASE("TLS: a partial wildcard (reg*.example.com) matches no name; a whole-label one does") {
  // RFC 6125 section 7.2 and the CA/Browser Forum forbid wildcards inside a label; OpenSSL
  // accepts them unless told not to.
  const TlsPki pki = TlsPki::create("sigil wildcard test CA");
  auto serve = [&](const std::string& san) {
    const TlsIdentity id = pki.server("wildcard", {san});
    return std::make_unique<FakeHttpServer>(ok, tls_server(id.cert_pem(), id.key_pem()));
  };
  Loop loop;
  auto o = tls_options();
  o.tls.ca_pem = pki.ca_pem();
  o.tls.server_name = "registry.example.com";
  Client client(loop.ioc.get_executor(), o);
  auto partial = serve("reg*.example.com");
  auto r = get(loop, client, url_of(*partial));
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "certificate verification failed"));
  o.tls.server_name = "registry.sub.example.com";
  Client whole_label(loop.ioc.get_executor(), o);
  auto whole = serve("*.sub.example.com");
  CHECK(get(loop, whole_label, url_of(*whole)).ok());
}

TEST_CASE("TLS: the system roots come from OpenSSL's default paths (SSL_CERT_FILE)") {
  FakeHttpServer srv(ok, tls_server());
  Loop loop;
  ClientOptions o;  // system roots only
  {
    Client without(loop.ioc.get_executor(), o);
    REQUIRE(without.init_status().ok());
    auto r = get(loop, without, url_of(srv));
    REQUIRE_FALSE(r.ok());
    CHECK(contains(r.error().message, "certificate verification failed"));
  }
  ::setenv("SSL_CERT_FILE", tls_pki().ca_file.c_str(), 1);
  Client with(loop.ioc.get_executor(), o);
  ::unsetenv("SSL_CERT_FILE");
  auto r = get(loop, with, url_of(srv));
  INFO((r ? std::string() : r.error().message));
  CHECK(r.ok());
}

TEST_CASE("TLS: extra CA files are added to the roots; an unreadable one fails closed") {
  FakeHttpServer srv(ok, tls_server());
  Loop loop;
  ClientOptions o;
  o.tls.ca_files = {tls_pki().ca_file};
  Client c(loop.ioc.get_executor(), o);
  CHECK(get(loop, c, url_of(srv)).ok());

  o.tls.ca_files = {"/nonexistent/ca.pem"};
  Client bad(loop.ioc.get_executor(), o);
  REQUIRE_FALSE(bad.init_status().ok());
  CHECK(bad.init_status().error().code == Errc::invalid_argument);
  auto r = get(loop, bad, url_of(srv));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::invalid_argument);
  CHECK(srv.connections() == 1);
}

TEST_CASE("TLS: a CA PEM that does not parse fails every call, sending nothing") {
  auto pem =
      GENERATE(as<std::string>{}, "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
               "not PEM at all", tls_pki().ca_pem + "-----BEGIN CERTIFICATE-----\nAA\n");
  FakeHttpServer srv(ok, tls_server());
  Loop loop;
  auto o = tls_options();
  o.tls.ca_pem = pem;
  Client c(loop.ioc.get_executor(), o);
  CHECK_FALSE(c.init_status().ok());
  auto r = get(loop, c, url_of(srv));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::invalid_argument);
  CHECK(srv.connections() == 0);
}

TEST_CASE("TLS: client certificate authentication") {
  FakeHttpOptions so = tls_server();
  so.require_client_cert = true;
  FakeHttpServer srv(ok, so);
  Loop loop;
  {
    Client without(loop.ioc.get_executor(), tls_options());
    CHECK_FALSE(get(loop, without, url_of(srv)).ok());
  }
  auto o = tls_options();
  o.tls.client_cert_pem = tls_pki().client_cert_pem;
  o.tls.client_key_pem = tls_pki().client_key_pem;
  Client with(loop.ioc.get_executor(), o);
  REQUIRE(with.init_status().ok());
  CHECK(get(loop, with, url_of(srv)).ok());

  auto mismatched = o;
  mismatched.tls.client_key_pem = tls_pki().server_key_pem;
  CHECK_FALSE(Client(loop.ioc.get_executor(), mismatched).init_status().ok());
  auto half = o;
  half.tls.client_key_pem.clear();
  CHECK_FALSE(Client(loop.ioc.get_executor(), half).init_status().ok());
}

TEST_CASE("TLS: insecure_skip_verify accepts any certificate (explicit opt-in only)") {
  const auto& p = tls_pki();
  FakeHttpServer srv(ok, tls_server(p.other_name_cert_pem, p.other_name_key_pem));
  Loop loop;
  ClientOptions o;
  o.tls.system_roots = false;
  o.tls.insecure_skip_verify = true;
  Client c(loop.ioc.get_executor(), o);
  CHECK(get(loop, c, url_of(srv)).ok());
}

TEST_CASE("TLS: a client with no roots at all is refused at construction") {
  Loop loop;
  ClientOptions o;
  o.tls.system_roots = false;
  Client c(loop.ioc.get_executor(), o);
  CHECK_FALSE(c.init_status().ok());
}

TEST_CASE("plain HTTP to a TLS server and TLS to a plain server fail cleanly") {
  FakeHttpServer tls(ok, tls_server());
  FakeHttpServer plain(ok);
  Loop loop;
  Client c(loop.ioc.get_executor(), tls_options());
  auto u = url_of(tls);
  u.scheme = "http";
  auto r1 = get(loop, c, u);
  CHECK_FALSE(r1.ok());
  auto v = url_of(plain);
  v.scheme = "https";
  auto r2 = get(loop, c, v);
  REQUIRE_FALSE(r2.ok());
  CHECK(contains(r2.error().message, "TLS handshake"));
  CHECK(plain.requests() == 0);
}
