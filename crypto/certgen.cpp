#include "crypto/certgen.hpp"

#include <ctime>
#include <memory>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace sigil::crypto {
namespace {

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

Error ossl_error(Errc code, std::string message) {
  ERR_clear_error();
  return make_error(code, std::move(message));
}

Result<KeyPtr> new_p256_key() {
  KeyPtr k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), &EVP_PKEY_free);
  if (!k) return ossl_error(Errc::internal, "cannot generate a P-256 key");
  return k;
}

Result<std::string> bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  if (n <= 0 || data == nullptr) return ossl_error(Errc::internal, "empty PEM output");
  return std::string(data, static_cast<size_t>(n));
}

Result<std::string> cert_to_pem(X509* c) {
  BioPtr bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio || PEM_write_bio_X509(bio.get(), c) != 1)
    return ossl_error(Errc::internal, "cannot write the certificate as PEM");
  return bio_text(bio.get());
}

Result<std::string> key_to_pem(EVP_PKEY* k) {
  BioPtr bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), k, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return ossl_error(Errc::internal, "cannot write the private key as PEM");
  return bio_text(bio.get());
}

Result<KeyPtr> key_from_pem(std::string_view pem) {
  if (pem.size() > 64 * 1024) return make_error(Errc::too_large, "private key PEM over 64 KiB");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (!bio) return ossl_error(Errc::internal, "BIO_new_mem_buf");
  // A null password callback with an empty password: an encrypted key fails instead of
  // prompting on a terminal.
  char empty[] = "";
  KeyPtr k(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, empty), &EVP_PKEY_free);
  if (!k) return ossl_error(Errc::parse_error, "the private key does not parse as PEM");
  return k;
}

Result<X509Ptr> x509_from_pem(std::string_view pem) {
  auto c = Certificate::from_pem(pem);
  if (!c) return c.error();
  X509* x = X509_dup(static_cast<X509*>(const_cast<void*>(c->native())));
  if (x == nullptr) return ossl_error(Errc::internal, "X509_dup");
  return X509Ptr(x, &X509_free);
}

bool set_time(ASN1_TIME* field, TimePoint t) {
  return ASN1_TIME_set(field, static_cast<time_t>(to_unix_seconds(t))) != nullptr;
}

Status add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return ossl_error(Errc::internal, "cannot build extension " + value);
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return ossl_error(Errc::internal, "cannot add extension " + value);
  return {};
}

// Version 3, a random positive 127-bit serial, validity, subject CN, public key.
Result<X509Ptr> new_cert(EVP_PKEY* key, const std::string& cn, TimePoint not_before,
                         TimePoint not_after) {
  X509Ptr c(X509_new(), &X509_free);
  if (!c) return ossl_error(Errc::internal, "X509_new");
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1)
    return ossl_error(Errc::internal, "no randomness for a serial number");
  serial[0] &= 0x7f;
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(serial, sizeof serial, nullptr),
                                                 &BN_free);
  if (!bn || X509_set_version(c.get(), 2) != 1 ||
      BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(c.get())) == nullptr ||
      !set_time(X509_getm_notBefore(c.get()), not_before) ||
      !set_time(X509_getm_notAfter(c.get()), not_after) || X509_set_pubkey(c.get(), key) != 1)
    return ossl_error(Errc::internal, "cannot fill in the certificate");
  X509_NAME* name = X509_get_subject_name(c.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()),
                                 static_cast<int>(cn.size()), -1, 0) != 1)
    return ossl_error(Errc::invalid_argument, "cannot use \"" + cn + "\" as a common name");
  return c;
}

}  // namespace

Result<CertAndKey> make_ca(std::string_view common_name, TimePoint not_before,
                           TimePoint not_after) {
  if (common_name.empty() || common_name.size() > 64)
    return make_error(Errc::invalid_argument, "CA common name must be 1 to 64 bytes");
  if (not_after <= not_before)
    return make_error(Errc::invalid_argument, "CA validity ends before it starts");
  ERR_clear_error();
  auto key = new_p256_key();
  if (!key) return key.error();
  auto c = new_cert(key->get(), std::string(common_name), not_before, not_after);
  if (!c) return c.error();
  X509* x = c->get();
  if (X509_set_issuer_name(x, X509_get_subject_name(x)) != 1)
    return ossl_error(Errc::internal, "cannot set the CA issuer");
  for (const auto& [nid, value] :
       {std::pair<int, const char*>{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"}}) {
    if (auto st = add_ext(x, x, nid, value); !st) return st.error();
  }
  if (X509_sign(x, key->get(), EVP_sha256()) <= 0)
    return ossl_error(Errc::internal, "cannot sign the CA certificate");
  auto cert_pem = cert_to_pem(x);
  if (!cert_pem) return cert_pem.error();
  auto key_pem = key_to_pem(key->get());
  if (!key_pem) return key_pem.error();
  return CertAndKey{std::move(*cert_pem), std::move(*key_pem)};
}

Result<CertAndKey> issue_server_cert(const CertAndKey& ca,
                                     const std::vector<std::string>& dns_names,
                                     TimePoint not_before, TimePoint not_after) {
  if (dns_names.empty())
    return make_error(Errc::invalid_argument, "a serving certificate needs a DNS name");
  std::string san;
  for (const auto& n : dns_names) {
    if (n.empty() || n.size() > 253 || n.find_first_of(",:\n\r ") != std::string::npos)
      return make_error(Errc::invalid_argument, "\"" + n + "\" is not a usable DNS name");
    san += (san.empty() ? "DNS:" : ",DNS:") + n;
  }
  if (not_after <= not_before)
    return make_error(Errc::invalid_argument, "certificate validity ends before it starts");
  ERR_clear_error();
  if (auto st = check_key_pair(ca.cert_pem, ca.key_pem); !st)
    return make_error(st.error().code, "CA: " + st.error().message);
  auto ca_x = x509_from_pem(ca.cert_pem);
  if (!ca_x) return make_error(ca_x.error().code, "CA: " + ca_x.error().message);
  if (X509_check_ca(ca_x->get()) == 0) {
    ERR_clear_error();
    return make_error(Errc::invalid_argument, "CA: the certificate is not a CA");
  }
  auto ca_key = key_from_pem(ca.key_pem);
  if (!ca_key) return make_error(ca_key.error().code, "CA: " + ca_key.error().message);
  auto key = new_p256_key();
  if (!key) return key.error();
  auto c = new_cert(key->get(), dns_names.front().substr(0, 64), not_before, not_after);
  if (!c) return c.error();
  X509* x = c->get();
  if (X509_set_issuer_name(x, X509_get_subject_name(ca_x->get())) != 1)
    return ossl_error(Errc::internal, "cannot set the issuer");
  for (const auto& [nid, value] :
       {std::pair<int, std::string>{NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
        {NID_subject_alt_name, san}}) {
    if (auto st = add_ext(x, ca_x->get(), nid, value); !st) return st.error();
  }
  if (X509_sign(x, ca_key->get(), EVP_sha256()) <= 0)
    return ossl_error(Errc::internal, "cannot sign the serving certificate");
  auto cert_pem = cert_to_pem(x);
  if (!cert_pem) return cert_pem.error();
  auto key_pem = key_to_pem(key->get());
  if (!key_pem) return key_pem.error();
  return CertAndKey{std::move(*cert_pem), std::move(*key_pem)};
}

Status check_key_pair(std::string_view cert_pem, std::string_view key_pem) {
  ERR_clear_error();
  auto x = x509_from_pem(cert_pem);
  if (!x) return x.error();
  auto k = key_from_pem(key_pem);
  if (!k) return k.error();
  if (X509_check_private_key(x->get(), k->get()) != 1)
    return ossl_error(Errc::verification, "the private key does not match the certificate");
  return {};
}

Status check_issued_by(const Certificate& leaf, const Certificate& ca) {
  ERR_clear_error();
  auto* l = static_cast<X509*>(const_cast<void*>(leaf.native()));
  auto* c = static_cast<X509*>(const_cast<void*>(ca.native()));
  if (!ca.is_ca()) return make_error(Errc::verification, "the issuer is not a CA");
  if (X509_NAME_cmp(X509_get_issuer_name(l), X509_get_subject_name(c)) != 0)
    return make_error(Errc::verification, "the certificate names another issuer");
  EVP_PKEY* pub = X509_get0_pubkey(c);
  if (pub == nullptr || X509_verify(l, pub) != 1)
    return ossl_error(Errc::verification, "the certificate is not signed by the CA's key");
  return {};
}

Result<std::vector<std::string>> dns_names(const Certificate& cert) {
  auto id = certificate_identity(cert);
  if (!id) return id.error();
  std::vector<std::string> out;
  for (const auto& s : id->sans) {
    if (s.type == SubjectAltName::Type::dns) out.push_back(s.value);
  }
  return out;
}

}  // namespace sigil::crypto
