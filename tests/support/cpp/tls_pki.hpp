// tests/support/cpp/tls_pki.hpp: a CA and the TLS certificates test servers and clients use.
//
// Role: what a TLS test on loopback needs, minted at test time: a CA; server certificates for
// 127.0.0.1, ::1 and localhost (serverAuth); client certificates (clientAuth) for mutual TLS;
// PEM text for an SSL context; and files, written atomically, for code that reads (and
// reloads) its certificate from disk. Valid from an hour ago for a day by the real clock,
// which the TLS stacks under test check. Built on pki.hpp, OpenSSL only (library
// sigil_test_pki), so the test of any module may link it. Test-only: failures throw
// std::runtime_error; never link into sigil.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "pki.hpp"

namespace sigil::test {

// A certificate and its private key.
struct TlsIdentity {
  KeyPair key;
  Cert cert;
  std::string cert_pem() const { return cert.pem(); }
  std::string key_pem() const { return key.private_pem(); }
};

class TlsPki {
 public:
  // A fresh CA: P-256, self-signed, critical CA:TRUE, keyCertSign and cRLSign.
  static TlsPki create(const std::string& ca_cn = "sigil test CA");

  const Cert& ca() const noexcept { return ca_.cert; }
  const KeyPair& ca_key() const noexcept { return ca_.key; }
  std::string ca_pem() const { return ca_.cert.pem(); }

  // A fresh P-256 key and a certificate for it: CA:FALSE, digitalSignature, serverAuth, SAN
  // IP:127.0.0.1, IP:::1, DNS:localhost and each of extra_dns.
  TlsIdentity server(const std::string& cn = "sigil-test-server",
                     const std::vector<std::string>& extra_dns = {}) const;
  // A fresh P-256 key and a certificate for it: CA:FALSE, digitalSignature, clientAuth.
  TlsIdentity client(const std::string& cn = "sigil-test-client") const;
  // A fresh P-256 key and a certificate for it exactly as spec says, issued by this CA (for
  // the odd ones: other SANs only, expired, ...).
  TlsIdentity issue(const CertSpec& spec) const;
  // CertSpec of a leaf: CN=cn, CA:FALSE, digitalSignature, this extended key usage, valid
  // from an hour ago for a day; no SANs.
  static CertSpec leaf_spec(const std::string& cn, const std::string& ext_key_usage);

 private:
  TlsIdentity ca_;
};

// Where write_tls_files put an identity.
struct TlsFiles {
  std::string cert_file;
  std::string key_file;
};

// A fresh directory "<prefix>-<random>" under the system's temporary directory; the caller
// removes it.
std::filesystem::path make_temp_dir(const std::string& prefix);
// Writes text to path through a sibling temporary file and a rename, so that a reader never
// sees half of it.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);
// Writes id's key as dir/<name>.key and then its certificate as dir/<name>.pem, each
// atomically (code that reloads on a change of the certificate finds the key already there).
// A fresh directory under the system temp directory, removed with everything in it.
struct TempDir {
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // Writes content to name (atomically: a reader never sees half a file); returns the path.
  std::string file(const std::string& name, const std::string& content) const;
  std::filesystem::path path;
};
TlsFiles write_tls_files(const std::filesystem::path& dir, const std::string& name,
                         const TlsIdentity& id);

}  // namespace sigil::test
