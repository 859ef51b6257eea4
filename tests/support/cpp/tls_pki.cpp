// tests/support/cpp/tls_pki.cpp: see tls_pki.hpp.
#include "tls_pki.hpp"

#include <chrono>
#include <fstream>
#include <random>
#include <stdexcept>

namespace sigil::test {

namespace {

CertSpec tls_spec(const std::string& cn) {
  const auto now = std::chrono::system_clock::now();
  CertSpec s;
  s.subject = "CN=" + cn;
  s.not_before = now - std::chrono::hours(1);
  s.not_after = now + std::chrono::hours(24);
  return s;
}

}  // namespace

TlsPki TlsPki::create(const std::string& ca_cn) {
  TlsPki p;
  p.ca_.key = generate_key("P-256");
  CertSpec s = tls_spec(ca_cn);
  s.ca = true;
  s.key_usage = "critical,keyCertSign,cRLSign";
  p.ca_.cert = self_signed(s, p.ca_.key);
  return p;
}

CertSpec TlsPki::leaf_spec(const std::string& cn, const std::string& ext_key_usage) {
  CertSpec s = tls_spec(cn);
  s.ca = false;
  s.key_usage = "critical,digitalSignature";
  s.ext_key_usage = {ext_key_usage};
  return s;
}

TlsIdentity TlsPki::issue(const CertSpec& spec) const {
  TlsIdentity id;
  id.key = generate_key("P-256");
  id.cert = sigil::test::issue(spec, id.key, ca_.cert, ca_.key);
  return id;
}

TlsIdentity TlsPki::server(const std::string& cn, const std::vector<std::string>& extra_dns) const {
  CertSpec s = leaf_spec(cn, "serverAuth");
  s.san_critical = false;
  s.sans = {SanEntry::ip(std::string("\x7f\x00\x00\x01", 4)),
            SanEntry::ip(std::string(15, '\0') + '\x01'), SanEntry::dns("localhost")};
  for (const auto& d : extra_dns) s.sans.push_back(SanEntry::dns(d));
  return issue(s);
}

TlsIdentity TlsPki::client(const std::string& cn) const {
  return issue(leaf_spec(cn, "clientAuth"));
}

std::filesystem::path make_temp_dir(const std::string& prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto dir = std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(rng()));
    if (std::filesystem::create_directory(dir)) return dir;
  }
  throw std::runtime_error("cannot make a temporary directory for " + prefix);
}

void write_file_atomically(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f) throw std::runtime_error("cannot write " + tmp.string());
  }
  std::filesystem::rename(tmp, path);
}

TempDir::TempDir() : path(make_temp_dir("sigil-test")) {}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::string TempDir::file(const std::string& name, const std::string& content) const {
  auto p = path / name;
  std::filesystem::create_directories(p.parent_path());
  write_file_atomically(p, content);
  return p.string();
}

TlsFiles write_tls_files(const std::filesystem::path& dir, const std::string& name,
                         const TlsIdentity& id) {
  TlsFiles files{(dir / (name + ".pem")).string(), (dir / (name + ".key")).string()};
  write_file_atomically(files.key_file, id.key_pem());
  write_file_atomically(files.cert_file, id.cert_pem());
  return files;
}

}  // namespace sigil::test
