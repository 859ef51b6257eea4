// server/tls.hpp: the server's TLS context and its certificate reload.
//
// Role: build a hardened server ssl::context (TLS 1.2 minimum, AEAD ECDHE ciphers only, no
// compression, no renegotiation) from PEM cert-chain and key files, and swap it when the files
// change, or from PEM held in memory (the self-managed certificate, handed over by app/ through
// Server::set_certificate: the key never touches a file). Internal to the server module
// (server.hpp does not include it).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include <boost/asio/ssl/context.hpp>

#include "common/result.hpp"

namespace sigil::server {

// Loads cert chain + private key and checks that they match. Never throws.
Result<std::shared_ptr<boost::asio::ssl::context>> make_server_context(const std::string& cert_file,
                                                                       const std::string& key_file);

// The same from PEM text (cert chain, leaf first; private key). Never throws.
Result<std::shared_ptr<boost::asio::ssl::context>> make_server_context_pem(
    const std::string& cert_pem, const std::string& key_pem);

// Holds the current context; current() re-reads the files when their mtime or size changed,
// checking at most once per check_interval. A failed reload keeps the old context and logs.
// Thread-safe.
class CertStore {
 public:
  CertStore(std::string cert_file, std::string key_file, std::chrono::milliseconds check_interval);
  // Empty file names (or this constructor): memory mode, empty until set_pem(); current() is
  // then null (no TLS can be offered).
  CertStore();

  // Memory mode: installs a cert/key pair after checking that they match; a bad pair keeps the
  // current context and fails. Counts as a reload when a context was there before.
  Status set_pem(const std::string& cert_pem, const std::string& key_pem);
  bool loaded() const;

  // First load; fails when the files are missing or invalid.
  Status load();

  // Null before the first certificate (memory mode).
  std::shared_ptr<boost::asio::ssl::context> current();

  // Number of successful reloads after the first load (for tests and metrics).
  uint64_t reloads() const;

 private:
  struct Stamp {
    std::filesystem::file_time_type cert_mtime{}, key_mtime{};
    uintmax_t cert_size = 0, key_size = 0;
    bool operator==(const Stamp&) const = default;
  };
  Result<Stamp> stamp() const;

  const std::string cert_file_, key_file_;
  const std::chrono::milliseconds interval_;
  mutable std::mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;
  Stamp stamp_;
  std::chrono::steady_clock::time_point last_check_{};
  uint64_t reloads_ = 0;
};

}  // namespace sigil::server
