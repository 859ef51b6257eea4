#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <spdlog/spdlog.h>

#include "net/detail/tls.hpp"
#include "net/url.hpp"

namespace sigil::net::detail {

namespace ssl = boost::asio::ssl;

namespace {

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

Error fail(Errc code, std::string message) {
  ERR_clear_error();
  return make_error(code, std::move(message));
}

BioPtr memory_bio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
}

// True when the last PEM read failed only because no further PEM block starts (the end of
// the input), false for a block that is there but does not parse.
bool at_end_of_pem() {
  const unsigned long e = ERR_peek_last_error();
  return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

// Reads every certificate of a PEM bundle; at least one, and none that fails to parse.
Result<std::vector<X509Ptr>> read_certificates(const std::string& pem, const std::string& what) {
  if (pem.size() > (64u << 20)) return fail(Errc::invalid_argument, what + " is too large");
  ERR_clear_error();
  auto bio = memory_bio(pem);
  if (!bio) return fail(Errc::internal, "cannot read " + what + ": out of memory");
  std::vector<X509Ptr> out;
  for (;;) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (x == nullptr) {
      if (!at_end_of_pem()) {
        return fail(Errc::invalid_argument, what + " is not a valid PEM certificate bundle");
      }
      ERR_clear_error();
      break;
    }
    out.emplace_back(x, &X509_free);
  }
  if (out.empty()) {
    return fail(Errc::invalid_argument, what + " holds no PEM certificate");
  }
  return out;
}

Status add_roots(SSL_CTX* ctx, const std::string& pem, const std::string& what) {
  auto certs = read_certificates(pem, what);
  if (!certs) return certs.error();
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  if (store == nullptr) return fail(Errc::internal, "no certificate store in the TLS context");
  for (auto& c : *certs) {
    // A certificate already in the store (a bundle listing a root twice) is not an error.
    if (X509_STORE_add_cert(store, c.get()) != 1) {
      const unsigned long e = ERR_peek_last_error();
      if (ERR_GET_REASON(e) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
        return fail(Errc::internal, "cannot add a certificate of " + what + " to the trust store");
      }
      ERR_clear_error();
    }
  }
  return {};
}

Status use_client_certificate(SSL_CTX* ctx, const TlsOptions& o) {
  if (o.client_cert_pem.empty() != o.client_key_pem.empty()) {
    return fail(Errc::invalid_argument,
                "a client certificate needs both the certificate and its private key");
  }
  auto chain = read_certificates(o.client_cert_pem, "the client certificate");
  if (!chain) return chain.error();
  if (SSL_CTX_use_certificate(ctx, (*chain)[0].get()) != 1) {
    return fail(Errc::invalid_argument, "the client certificate cannot be used");
  }
  for (size_t i = 1; i < chain->size(); ++i) {
    // add1: the context takes its own reference.
    if (SSL_CTX_add1_chain_cert(ctx, (*chain)[i].get()) != 1) {
      return fail(Errc::internal, "cannot add the client certificate's chain");
    }
  }
  ERR_clear_error();
  auto bio = memory_bio(o.client_key_pem);
  if (!bio) return fail(Errc::internal, "cannot read the client key: out of memory");
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  if (!key) return fail(Errc::invalid_argument, "the client key does not parse");
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return fail(Errc::invalid_argument, "the client key does not match the client certificate");
  }
  return {};
}

}  // namespace

Result<std::shared_ptr<ssl::context>> make_client_context(const TlsOptions& o) {
  ERR_clear_error();
  std::shared_ptr<ssl::context> ctx;
  try {
    ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  } catch (const std::exception& e) {
    return fail(Errc::internal, std::string("cannot create a TLS context: ") + e.what());
  }
  SSL_CTX* c = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1) {
    return fail(Errc::internal, "cannot require TLS 1.2");
  }
  if (o.insecure_skip_verify) {
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
  } else {
    if (o.system_roots && SSL_CTX_set_default_verify_paths(c) != 1) {
      return fail(Errc::internal, "cannot load the system CA certificates");
    }
    for (const auto& file : o.ca_files) {
      if (file.empty()) continue;
      if (SSL_CTX_load_verify_locations(c, file.c_str(), nullptr) != 1) {
        return fail(Errc::invalid_argument, "CA file " + file + " cannot be loaded as PEM");
      }
    }
    if (!o.ca_pem.empty()) {
      if (auto st = add_roots(c, o.ca_pem, "the CA certificate bundle"); !st) return st.error();
    }
    if (!o.system_roots && o.ca_files.empty() && o.ca_pem.empty()) {
      return fail(Errc::invalid_argument, "no CA certificates to verify servers with");
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  }
  if (!o.client_cert_pem.empty() || !o.client_key_pem.empty()) {
    if (auto st = use_client_certificate(c, o); !st) return st.error();
  }
  // OpenSSL may leave entries behind on success (a missing default CA directory).
  ERR_clear_error();
  return ctx;
}

Status prepare_handshake(SSL* s, const std::string& host, const TlsOptions& o) {
  const std::string& name = o.server_name.empty() ? host : o.server_name;
  bool ok = true;
  if (is_ip_literal(name)) {
    // RFC 6066: no IP literal in SNI. The certificate must carry this IP as a SAN.
    if (!o.insecure_skip_verify) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), name.c_str()) == 1;
    }
  } else {
    ok = SSL_set_tlsext_host_name(s, name.c_str()) == 1;
    if (ok && !o.insecure_skip_verify) {
      SSL_set_hostflags(s, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(s, name.c_str()) == 1;
    }
  }
  if (!ok) return fail(Errc::internal, "cannot set up TLS verification for " + name);
  SSL_set_verify(s, o.insecure_skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nullptr);
  return {};
}

std::optional<std::string> verification_failure(SSL* s) {
  const long vr = SSL_get_verify_result(s);
  ERR_clear_error();
  if (vr == X509_V_OK) return std::nullopt;
  return std::string("certificate verification failed: ") + X509_verify_cert_error_string(vr);
}

}  // namespace sigil::net::detail
