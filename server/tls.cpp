#include "server/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

namespace sigil::server {
namespace {

namespace ssl = boost::asio::ssl;

std::string openssl_error(const std::string& what) {
  std::string out = what;
  unsigned long e = 0;
  bool first = true;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += first ? ": " : "; ";
    out += buf;
    first = false;
  }
  return out;
}

}  // namespace

namespace {

// The hardened context without a certificate.
Result<std::shared_ptr<ssl::context>> base_context() {
  ERR_clear_error();
  std::shared_ptr<ssl::context> ctx;
  try {
    ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string("TLS context: ") + e.what());
  }
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_SSLv3 |
                                  SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1);
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1)
    return make_error(Errc::internal, openssl_error("TLS: cannot set minimum version 1.2"));
  // TLS 1.2: forward-secret AEAD suites only. TLS 1.3 suites are all AEAD; keep OpenSSL's.
  if (SSL_CTX_set_cipher_list(native,
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1)
    return make_error(Errc::internal, openssl_error("TLS: cannot set cipher list"));
  return ctx;
}

}  // namespace

Result<std::shared_ptr<ssl::context>> make_server_context(const std::string& cert_file,
                                                          const std::string& key_file) {
  auto base = base_context();
  if (!base) return base.error();
  std::shared_ptr<ssl::context> ctx = std::move(*base);
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_use_certificate_chain_file(native, cert_file.c_str()) != 1)
    return make_error(Errc::invalid_argument,
                      openssl_error("TLS certificate file " + cert_file + " unusable"));
  if (SSL_CTX_use_PrivateKey_file(native, key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return make_error(Errc::invalid_argument,
                      openssl_error("TLS key file " + key_file + " unusable"));
  if (SSL_CTX_check_private_key(native) != 1)
    return make_error(
        Errc::invalid_argument,
        openssl_error("TLS key " + key_file + " does not match certificate " + cert_file));
  ERR_clear_error();
  return ctx;
}

Result<std::shared_ptr<ssl::context>> make_server_context_pem(const std::string& cert_pem,
                                                              const std::string& key_pem) {
  auto base = base_context();
  if (!base) return base.error();
  std::shared_ptr<ssl::context> ctx = std::move(*base);
  boost::system::error_code ec;
  ctx->use_certificate_chain(boost::asio::buffer(cert_pem), ec);
  if (ec) return make_error(Errc::invalid_argument, openssl_error("TLS certificate unusable"));
  ctx->use_private_key(boost::asio::buffer(key_pem), ssl::context::pem, ec);
  if (ec) return make_error(Errc::invalid_argument, openssl_error("TLS key unusable"));
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    return make_error(Errc::invalid_argument,
                      openssl_error("TLS key does not match the certificate"));
  ERR_clear_error();
  return ctx;
}

CertStore::CertStore() : interval_(0) {}

Status CertStore::set_pem(const std::string& cert_pem, const std::string& key_pem) {
  auto ctx = make_server_context_pem(cert_pem, key_pem);
  if (!ctx) return ctx.error();
  std::lock_guard lock(mu_);
  if (ctx_) ++reloads_;
  ctx_ = std::move(*ctx);
  return {};
}

bool CertStore::loaded() const {
  std::lock_guard lock(mu_);
  return ctx_ != nullptr;
}

CertStore::CertStore(std::string cert_file, std::string key_file,
                     std::chrono::milliseconds check_interval)
    : cert_file_(std::move(cert_file)), key_file_(std::move(key_file)), interval_(check_interval) {}

Result<CertStore::Stamp> CertStore::stamp() const {
  std::error_code ec;
  Stamp s;
  s.cert_mtime = std::filesystem::last_write_time(cert_file_, ec);
  if (ec)
    return make_error(Errc::not_found, "TLS certificate file " + cert_file_ + ": " + ec.message());
  s.cert_size = std::filesystem::file_size(cert_file_, ec);
  if (ec)
    return make_error(Errc::not_found, "TLS certificate file " + cert_file_ + ": " + ec.message());
  s.key_mtime = std::filesystem::last_write_time(key_file_, ec);
  if (ec) return make_error(Errc::not_found, "TLS key file " + key_file_ + ": " + ec.message());
  s.key_size = std::filesystem::file_size(key_file_, ec);
  if (ec) return make_error(Errc::not_found, "TLS key file " + key_file_ + ": " + ec.message());
  return s;
}

Status CertStore::load() {
  auto s = stamp();
  if (!s) return s.error();
  auto ctx = make_server_context(cert_file_, key_file_);
  if (!ctx) return ctx.error();
  std::lock_guard lock(mu_);
  ctx_ = std::move(*ctx);
  stamp_ = *s;
  last_check_ = std::chrono::steady_clock::now();
  return {};
}

std::shared_ptr<ssl::context> CertStore::current() {
  std::lock_guard lock(mu_);
  if (cert_file_.empty()) return ctx_;  // from memory (set_pem): nothing to check
  const auto now = std::chrono::steady_clock::now();
  if (!ctx_ || now - last_check_ < interval_) return ctx_;
  last_check_ = now;
  auto s = stamp();
  if (!s) {
    spdlog::error("TLS reload check failed, keeping the current certificate: {}",
                  s.error().message);
    return ctx_;
  }
  if (*s == stamp_) return ctx_;
  auto ctx = make_server_context(cert_file_, key_file_);
  if (!ctx) {
    // Remember the stamp so a broken pair is not re-parsed on every connection; a further
    // change is picked up again.
    stamp_ = *s;
    spdlog::error("TLS reload failed, keeping the current certificate: {}", ctx.error().message);
    return ctx_;
  }
  ctx_ = std::move(*ctx);
  stamp_ = *s;
  ++reloads_;
  spdlog::info("TLS certificate reloaded from {}", cert_file_);
  return ctx_;
}

uint64_t CertStore::reloads() const {
  std::lock_guard lock(mu_);
  return reloads_;
}

}  // namespace sigil::server
