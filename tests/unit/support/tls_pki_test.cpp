// Tests for tests/support/cpp/tls_pki: the certificates it mints carry real TLS handshakes
// (OpenSSL, in memory) for 127.0.0.1, ::1 and localhost, with and without client
// certificates, and nothing else verifies against them.
#include <catch2/catch.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "tls_pki.hpp"

using sigil::test::TlsIdentity;
using sigil::test::TlsPki;

namespace {

using CtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;
using SslPtr = std::unique_ptr<SSL, decltype(&SSL_free)>;

X509* x509_from_pem(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  return PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
}

EVP_PKEY* key_from_pem(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  return PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
}

// An SSL_CTX presenting id (when given) and trusting ca_pem (when given) for peer checks.
CtxPtr context(bool server, const TlsIdentity* id, const std::string& ca_pem) {
  CtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()), SSL_CTX_free);
  REQUIRE(ctx);
  if (id != nullptr) {
    std::unique_ptr<X509, decltype(&X509_free)> cert(x509_from_pem(id->cert_pem()), X509_free);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(key_from_pem(id->key_pem()),
                                                            EVP_PKEY_free);
    REQUIRE(cert);
    REQUIRE(key);
    REQUIRE(SSL_CTX_use_certificate(ctx.get(), cert.get()) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey(ctx.get(), key.get()) == 1);
  }
  if (!ca_pem.empty()) {
    std::unique_ptr<X509, decltype(&X509_free)> ca(x509_from_pem(ca_pem), X509_free);
    REQUIRE(ca);
    REQUIRE(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca.get()) == 1);
    SSL_CTX_set_verify(ctx.get(),
                       server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                       nullptr);
  }
  return ctx;
}

struct Handshake {
  bool ok = false;
  long client_verify = X509_V_OK;
};

// A client and a server handshaking over an in-memory BIO pair. host: what the client checks
// the server's certificate against (an IP address or a DNS name).
Handshake handshake(SSL_CTX* server_ctx, SSL_CTX* client_ctx, const std::string& host) {
  SslPtr server(SSL_new(server_ctx), SSL_free);
  SslPtr client(SSL_new(client_ctx), SSL_free);
  REQUIRE(server);
  REQUIRE(client);
  BIO* server_bio = nullptr;
  BIO* client_bio = nullptr;
  REQUIRE(BIO_new_bio_pair(&server_bio, 0, &client_bio, 0) == 1);
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_bio(client.get(), client_bio, client_bio);
  X509_VERIFY_PARAM* param = SSL_get0_param(client.get());
  std::unique_ptr<ASN1_OCTET_STRING, decltype(&ASN1_OCTET_STRING_free)> ip(
      a2i_IPADDRESS(host.c_str()), ASN1_OCTET_STRING_free);
  if (ip) {
    REQUIRE(X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) == 1);
  } else {
    REQUIRE(X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0) == 1);
  }
  SSL_set_accept_state(server.get());
  SSL_set_connect_state(client.get());
  Handshake h;
  bool client_done = false;
  bool server_done = false;
  for (int round = 0; round < 20 && !(client_done && server_done); ++round) {
    if (!client_done) {
      const int r = SSL_do_handshake(client.get());
      if (r == 1) {
        client_done = true;
      } else if (SSL_get_error(client.get(), r) != SSL_ERROR_WANT_READ) {
        break;
      }
    }
    if (!server_done) {
      const int r = SSL_do_handshake(server.get());
      if (r == 1) {
        server_done = true;
      } else if (SSL_get_error(server.get(), r) != SSL_ERROR_WANT_READ) {
        break;
      }
    }
  }
  h.client_verify = SSL_get_verify_result(client.get());
  h.ok = client_done && server_done && h.client_verify == X509_V_OK;
  ERR_clear_error();
  return h;
}

std::string read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("a server certificate verifies for 127.0.0.1, ::1 and localhost, and nothing else") {
  const TlsPki pki = TlsPki::create();
  const TlsIdentity server = pki.server();
  auto server_ctx = context(true, &server, "");
  auto client_ctx = context(false, nullptr, pki.ca_pem());
  for (const char* host : {"127.0.0.1", "::1", "localhost"}) {
    INFO(host);
    CHECK(handshake(server_ctx.get(), client_ctx.get(), host).ok);
  }
  for (const char* host : {"127.0.0.2", "::2"}) {
    INFO(host);
    const Handshake h = handshake(server_ctx.get(), client_ctx.get(), host);
    CHECK_FALSE(h.ok);
    CHECK(h.client_verify == X509_V_ERR_IP_ADDRESS_MISMATCH);
  }
  for (const char* host : {"example.com", "sigil-test-server"}) {
    INFO(host);
    const Handshake h = handshake(server_ctx.get(), client_ctx.get(), host);
    CHECK_FALSE(h.ok);
    CHECK(h.client_verify == X509_V_ERR_HOSTNAME_MISMATCH);
  }
}

TEST_CASE("extra DNS names are in the server certificate") {
  const TlsPki pki = TlsPki::create();
  const TlsIdentity server = pki.server("fake-apiserver", {"kubernetes.default.svc"});
  auto server_ctx = context(true, &server, "");
  auto client_ctx = context(false, nullptr, pki.ca_pem());
  CHECK(handshake(server_ctx.get(), client_ctx.get(), "kubernetes.default.svc").ok);
  CHECK(handshake(server_ctx.get(), client_ctx.get(), "127.0.0.1").ok);
}

TEST_CASE("a client trusting another CA refuses the server") {
  const TlsPki pki = TlsPki::create();
  const TlsPki other = TlsPki::create("some other CA");
  const TlsIdentity server = pki.server();
  auto server_ctx = context(true, &server, "");
  auto client_ctx = context(false, nullptr, other.ca_pem());
  const Handshake h = handshake(server_ctx.get(), client_ctx.get(), "127.0.0.1");
  CHECK_FALSE(h.ok);
  CHECK(h.client_verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

TEST_CASE("client certificates carry mutual TLS; a server requiring one refuses a client without") {
  const TlsPki pki = TlsPki::create();
  const TlsIdentity server = pki.server();
  const TlsIdentity client = pki.client();
  auto server_ctx = context(true, &server, pki.ca_pem());
  auto with_cert = context(false, &client, pki.ca_pem());
  auto without = context(false, nullptr, pki.ca_pem());
  CHECK(handshake(server_ctx.get(), with_cert.get(), "127.0.0.1").ok);
  CHECK_FALSE(handshake(server_ctx.get(), without.get(), "127.0.0.1").ok);
  // A server certificate is not a client certificate (EKU serverAuth only).
  auto server_as_client = context(false, &server, pki.ca_pem());
  CHECK_FALSE(handshake(server_ctx.get(), server_as_client.get(), "127.0.0.1").ok);
}

TEST_CASE("write_tls_files writes the key and the certificate as PEM files") {
  const TlsPki pki = TlsPki::create();
  const auto dir = sigil::test::make_temp_dir("sigil-tls-pki-test");
  const TlsIdentity first = pki.server("first");
  const auto files = sigil::test::write_tls_files(dir, "server", first);
  CHECK(files.cert_file == (dir / "server.pem").string());
  CHECK(files.key_file == (dir / "server.key").string());
  CHECK(read(files.cert_file) == first.cert_pem());
  CHECK(read(files.key_file) == first.key_pem());
  // Rewriting replaces both (a certificate rotation), leaving no temporary file behind.
  const TlsIdentity second = pki.server("second");
  sigil::test::write_tls_files(dir, "server", second);
  CHECK(read(files.cert_file) == second.cert_pem());
  CHECK(read(files.key_file) == second.key_pem());
  CHECK(std::distance(std::filesystem::directory_iterator(dir),
                      std::filesystem::directory_iterator()) == 2);
  std::filesystem::remove_all(dir);
}
