// tests/support/cpp/sigstore_pki.cpp: see sigstore_pki.hpp.
#include "sigstore_pki.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ess.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>

#include <fstream>
#include <iterator>
#include <stdexcept>

#include "common/encoding.hpp"

namespace sigil::test {

namespace {

using detail::check;
using detail::Free;
using detail::unix_seconds;

using BioPtr = std::unique_ptr<BIO, Free<BIO, BIO_free_all>>;
using ObjPtr = std::unique_ptr<ASN1_OBJECT, Free<ASN1_OBJECT, ASN1_OBJECT_free>>;
using TsReqPtr = std::unique_ptr<TS_REQ, Free<TS_REQ, TS_REQ_free>>;
using TsRespPtr = std::unique_ptr<TS_RESP, Free<TS_RESP, TS_RESP_free>>;
using TsRespCtxPtr = std::unique_ptr<TS_RESP_CTX, Free<TS_RESP_CTX, TS_RESP_CTX_free>>;
using ImprintPtr = std::unique_ptr<TS_MSG_IMPRINT, Free<TS_MSG_IMPRINT, TS_MSG_IMPRINT_free>>;
using AlgorPtr = std::unique_ptr<X509_ALGOR, Free<X509_ALGOR, X509_ALGOR_free>>;
using TstInfoPtr = std::unique_ptr<TS_TST_INFO, Free<TS_TST_INFO, TS_TST_INFO_free>>;
using Pkcs7Ptr = std::unique_ptr<PKCS7, Free<PKCS7, PKCS7_free>>;
using IntPtr = std::unique_ptr<ASN1_INTEGER, Free<ASN1_INTEGER, ASN1_INTEGER_free>>;
using StatusPtr = std::unique_ptr<TS_STATUS_INFO, Free<TS_STATUS_INFO, TS_STATUS_INFO_free>>;
using EssV2Ptr =
    std::unique_ptr<ESS_SIGNING_CERT_V2, Free<ESS_SIGNING_CERT_V2, ESS_SIGNING_CERT_V2_free>>;

int ts_time_cb(TS_RESP_CTX*, void* data, long* sec, long* usec) {
  *sec = static_cast<long>(*static_cast<int64_t*>(data));
  *usec = 0;
  return 1;
}

}  // namespace

// ---- sigil's view of the minted material (declared in pki.hpp) -------------------------------

crypto::PublicKey KeyPair::public_key() const {
  auto k = crypto::PublicKey::from_der(spki_der());
  if (!k) throw std::runtime_error("sigstore_pki: sigil refuses the key: " + k.error().message);
  return *k;
}

crypto::Certificate Cert::certificate() const {
  auto c = crypto::Certificate::from_der(der());
  if (!c)
    throw std::runtime_error("sigstore_pki: sigil refuses the certificate: " + c.error().message);
  return *c;
}

// ---- FulcioPki --------------------------------------------------------------------------------

FulcioPki FulcioPki::create(TimePoint start) {
  FulcioPki p;
  p.start = start;
  p.root_key = generate_key("P-384");
  p.intermediate_key = generate_key("P-384");
  p.ct_key = generate_key("P-256");
  CertSpec root;
  root.subject = "O=sigil-test,CN=sigil-test-root";
  root.not_before = start - std::chrono::hours(24);
  root.not_after = start + std::chrono::hours(24 * 3650);
  root.ca = true;
  root.key_usage = "critical,keyCertSign,cRLSign";
  p.root = self_signed(root, p.root_key);
  CertSpec inter = root;
  inter.subject = "O=sigil-test,CN=sigil-test-intermediate";
  inter.path_len = 0;
  inter.ext_key_usage = {"codeSigning"};
  p.intermediate = issue(inter, p.intermediate_key, p.root, p.root_key);
  return p;
}

crypto::CertificateAuthority FulcioPki::authority() const {
  crypto::CertificateAuthority ca;
  ca.uri = "https://fulcio.test";
  ca.subject = "O=sigil-test, CN=sigil-test-root";
  ca.chain = {intermediate.certificate(), root.certificate()};
  return ca;
}

crypto::TransparencyLog FulcioPki::ct_log() const {
  crypto::TransparencyLog log;
  log.base_url = "https://ctfe.test";
  log.key = ct_key.public_key();
  log.log_id = crypto::key_log_id(log.key);
  log.hash = crypto::HashAlgorithm::sha256;
  return log;
}

CertSpec FulcioPki::leaf_spec(TimePoint not_before, std::string email, std::string issuer) const {
  CertSpec s;
  s.not_before = not_before;
  s.not_after = not_before + std::chrono::minutes(10);
  s.key_usage = "critical,digitalSignature";
  s.ext_key_usage = {"codeSigning"};
  s.sans = {SanEntry::email(std::move(email))};
  s.san_critical = true;
  s.issuer_v1 = issuer;
  s.issuer_v2 = issuer;
  return s;
}

SctSpec FulcioPki::sct_at(TimePoint t) const {
  SctSpec s;
  s.log_key = ct_key;
  s.timestamp = t;
  return s;
}

Cert FulcioPki::leaf(const CertSpec& spec, KeyPair* key) const {
  KeyPair k = generate_key("P-256");
  Cert c = issue(spec, k, intermediate, intermediate_key, {sct_at(spec.not_before)});
  if (key != nullptr) *key = k;
  return c;
}

Cert FulcioPki::leaf(TimePoint not_before, KeyPair* key) const {
  return leaf(leaf_spec(not_before), key);
}

// ---- TestTsa ------------------------------------------------------------------------------------

TestTsa TestTsa::create(TimePoint start, bool with_eku, std::optional<TimePoint> not_after) {
  TestTsa t;
  t.with_eku_ = with_eku;
  t.root_key = generate_key("P-256");
  t.key = generate_key("P-256");
  CertSpec root;
  root.subject = "O=sigil-test,CN=sigil-test-tsa-root";
  root.not_before = start - std::chrono::hours(24);
  root.not_after = not_after ? *not_after : start + std::chrono::hours(24 * 3650);
  root.ca = true;
  root.key_usage = "critical,keyCertSign,cRLSign";
  t.root = self_signed(root, t.root_key);
  CertSpec leaf;
  leaf.subject = "O=sigil-test,CN=sigil-test-tsa";
  leaf.not_before = root.not_before;
  leaf.not_after = root.not_after;
  leaf.key_usage = "critical,digitalSignature";
  if (with_eku) {
    leaf.ext_key_usage = {"timeStamping"};
    leaf.eku_critical = true;
  }
  t.cert = issue(leaf, t.key, t.root, t.root_key);
  return t;
}

crypto::CertificateAuthority TestTsa::authority() const {
  crypto::CertificateAuthority ca;
  ca.uri = "https://tsa.test";
  ca.subject = "O=sigil-test, CN=sigil-test-tsa";
  ca.chain = {cert.certificate(), root.certificate()};
  return ca;
}

std::string TestTsa::stamp(std::string_view data, TimePoint gen_time,
                           const StampOptions& opts) const {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  check(EVP_Digest(data.data(), data.size(), digest, &digest_len, opts.imprint_md, nullptr) == 1,
        "EVP_Digest");
  AlgorPtr alg(X509_ALGOR_new());
  check(alg && X509_ALGOR_set0(alg.get(), OBJ_nid2obj(EVP_MD_get_type(opts.imprint_md)),
                               V_ASN1_NULL, nullptr) == 1,
        "X509_ALGOR_set0");
  ImprintPtr imprint(TS_MSG_IMPRINT_new());
  check(imprint && TS_MSG_IMPRINT_set_algo(imprint.get(), alg.get()) == 1 &&
            TS_MSG_IMPRINT_set_msg(imprint.get(), digest, static_cast<int>(digest_len)) == 1,
        "TS_MSG_IMPRINT");
  ObjPtr policy(OBJ_txt2obj("1.3.6.1.4.1.57264.2", 1));
  check(policy != nullptr, "policy OID");
  int64_t secs = unix_seconds(gen_time);

  TS_RESP* raw_resp = nullptr;
  if (with_eku_) {
    // The ordinary route: a TimeStampReq answered by OpenSSL's TSA implementation.
    TsReqPtr req(TS_REQ_new());
    check(req && TS_REQ_set_version(req.get(), 1) == 1 &&
              TS_REQ_set_msg_imprint(req.get(), imprint.get()) == 1 &&
              TS_REQ_set_cert_req(req.get(), opts.include_certs ? 1 : 0) == 1,
          "TS_REQ");
    BioPtr req_bio(BIO_new(BIO_s_mem()));
    check(req_bio && i2d_TS_REQ_bio(req_bio.get(), req.get()) == 1, "i2d_TS_REQ_bio");
    TsRespCtxPtr ctx(TS_RESP_CTX_new());
    check(ctx != nullptr, "TS_RESP_CTX_new");
    check(TS_RESP_CTX_set_signer_cert(ctx.get(), cert.x509.get()) == 1, "set_signer_cert");
    check(TS_RESP_CTX_set_signer_key(ctx.get(), key.pkey.get()) == 1, "set_signer_key");
    check(TS_RESP_CTX_set_signer_digest(ctx.get(), EVP_sha256()) == 1, "set_signer_digest");
    check(TS_RESP_CTX_set_ess_cert_id_digest(ctx.get(), EVP_sha256()) == 1, "ess digest");
    check(TS_RESP_CTX_set_def_policy(ctx.get(), policy.get()) == 1, "set_def_policy");
    if (opts.reject) {
      // Accept only SHA-1 imprints: the SHA-2 request is answered with "rejection" (badAlg).
      check(TS_RESP_CTX_add_md(ctx.get(), EVP_sha1()) == 1, "add_md");
    } else {
      check(TS_RESP_CTX_add_md(ctx.get(), opts.imprint_md) == 1, "add_md");
    }
    check(TS_RESP_CTX_set_accuracy(ctx.get(), 1, 0, 0) == 1, "set_accuracy");
    TS_RESP_CTX_set_time_cb(ctx.get(), ts_time_cb, &secs);
    raw_resp = TS_RESP_create_response(ctx.get(), req_bio.get());
    check(raw_resp != nullptr, "TS_RESP_create_response");
  } else {
    // TS_RESP_CTX refuses a signer without the timeStamping EKU, so sign the TSTInfo as
    // TS_RESP_CTX would (CMS SignedData, content type id-ct-TSTInfo, ESS signingCertificateV2).
    TstInfoPtr tst(TS_TST_INFO_new());
    IntPtr serial(ASN1_INTEGER_new());
    check(tst && serial && ASN1_INTEGER_set(serial.get(), 7) == 1 &&
              TS_TST_INFO_set_version(tst.get(), 1) == 1 &&
              TS_TST_INFO_set_policy_id(tst.get(), policy.get()) == 1 &&
              TS_TST_INFO_set_msg_imprint(tst.get(), imprint.get()) == 1 &&
              TS_TST_INFO_set_serial(tst.get(), serial.get()) == 1,
          "TS_TST_INFO");
    ASN1_GENERALIZEDTIME* gt = ASN1_GENERALIZEDTIME_set(nullptr, static_cast<time_t>(secs));
    check(gt != nullptr, "ASN1_GENERALIZEDTIME_set");
    int ok = TS_TST_INFO_set_time(tst.get(), gt);
    ASN1_GENERALIZEDTIME_free(gt);
    check(ok == 1, "TS_TST_INFO_set_time");

    Pkcs7Ptr p7(PKCS7_new());
    check(p7 && PKCS7_set_type(p7.get(), NID_pkcs7_signed) == 1 &&
              ASN1_INTEGER_set(p7->d.sign->version, 3) == 1,
          "PKCS7_set_type");
    if (opts.include_certs)
      check(PKCS7_add_certificate(p7.get(), cert.x509.get()) == 1, "add cert");
    PKCS7_SIGNER_INFO* si =
        PKCS7_add_signature(p7.get(), cert.x509.get(), key.pkey.get(), EVP_sha256());
    check(si != nullptr, "PKCS7_add_signature");
    check(PKCS7_add_signed_attribute(si, NID_pkcs9_contentType, V_ASN1_OBJECT,
                                     OBJ_nid2obj(NID_id_smime_ct_TSTInfo)) == 1,
          "contentType attribute");
    EssV2Ptr ess(OSSL_ESS_signing_cert_v2_new_init(EVP_sha256(), cert.x509.get(), nullptr, 0));
    check(ess != nullptr, "OSSL_ESS_signing_cert_v2_new_init");
    unsigned char* ess_der = nullptr;
    int ess_len = i2d_ESS_SIGNING_CERT_V2(ess.get(), &ess_der);
    check(ess_len > 0, "i2d_ESS_SIGNING_CERT_V2");
    ASN1_STRING* seq = ASN1_STRING_new();
    check(seq && ASN1_STRING_set(seq, ess_der, ess_len) == 1, "ASN1_STRING_set");
    OPENSSL_free(ess_der);
    check(PKCS7_add_signed_attribute(si, NID_id_smime_aa_signingCertificateV2, V_ASN1_SEQUENCE,
                                     seq) == 1,
          "signingCertificateV2 attribute");
    // Encapsulated content of type id-ct-TSTInfo.
    PKCS7* inner = PKCS7_new();
    check(inner != nullptr, "PKCS7_new");
    inner->type = OBJ_nid2obj(NID_id_smime_ct_TSTInfo);
    inner->d.other = ASN1_TYPE_new();
    check(inner->d.other != nullptr, "ASN1_TYPE_new");
    ASN1_TYPE_set(inner->d.other, V_ASN1_OCTET_STRING, ASN1_OCTET_STRING_new());
    check(PKCS7_set_content(p7.get(), inner) == 1, "PKCS7_set_content");
    BIO* p7bio = PKCS7_dataInit(p7.get(), nullptr);
    check(p7bio != nullptr, "PKCS7_dataInit");
    bool wrote =
        i2d_TS_TST_INFO_bio(p7bio, tst.get()) == 1 && PKCS7_dataFinal(p7.get(), p7bio) == 1;
    BIO_free_all(p7bio);
    check(wrote, "PKCS7_dataFinal");

    TsRespPtr resp(TS_RESP_new());
    StatusPtr status(TS_STATUS_INFO_new());
    check(resp && status && TS_STATUS_INFO_set_status(status.get(), TS_STATUS_GRANTED) == 1 &&
              TS_RESP_set_status_info(resp.get(), status.get()) == 1,
          "TS_RESP status");
    TS_RESP_set_tst_info(resp.get(), p7.release(), tst.release());
    raw_resp = resp.release();
  }
  TsRespPtr resp(raw_resp);
  unsigned char* der = nullptr;
  int len = 0;
  if (opts.bare_token) {
    PKCS7* token = TS_RESP_get_token(resp.get());
    check(token != nullptr, "response has no token");
    len = i2d_PKCS7(token, &der);
  } else {
    len = i2d_TS_RESP(resp.get(), &der);
  }
  check(len > 0, "DER encoding of the timestamp");
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  ERR_clear_error();
  return out;
}

// ---- real sigstore material
// ----------------------------------------------------------------------

namespace {
std::string b64(const char* text) {
  auto raw = base64_decode(text);
  if (!raw) throw std::runtime_error("sigstore_pki: bad embedded base64");
  return *raw;
}
}  // namespace

const PublicGoodSample& public_good_sample() {
  static const PublicGoodSample sample = [] {
    PublicGoodSample s;
    s.leaf_der = b64(
        "MIIIMjCCB7igAwIBAgIUEV+DuCyZBHIfhrcs4UuD7F4NNbIwCgYIKoZIzj0EAwMwNzEVMBMGA1UEChMMc2lnc3Rv"
        "cmUuZGV2MR4wHAYDVQQDExVzaWdzdG9yZS1pbnRlcm1lZGlhdGUwHhcNMjYwNTEzMTk0NzMzWhcNMjYwNTEzMTk1"
        "NzMzWjAAMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQtFTxn7YqZGY2akKVcel6AdZQgPpi4JVI/kYbPOJ7IJw"
        "B2mZBYJyChwtZ5ogXK/vEtRVocTyI63tchvWhp8sy6OCBtcwggbTMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAK"
        "BggrBgEFBQcDAzAdBgNVHQ4EFgQUv64l+fm/kPy0XYHcv6xc8HRQsF8wHwYDVR0jBBgwFoAU39Ppz1YkEZb5qNjp"
        "KFWixi4YZD8wgaUGA1UdEQEB/wSBmjCBl4aBlGh0dHBzOi8vZ2l0aHViLmNvbS9zaWdzdG9yZS1jb25mb3JtYW5j"
        "ZS9leHRyZW1lbHktZGFuZ2Vyb3VzLXB1YmxpYy1vaWRjLWJlYWNvbi8uZ2l0aHViL3dvcmtmbG93cy9leHRyZW1l"
        "bHktZGFuZ2Vyb3VzLW9pZGMtYmVhY29uLnltbEByZWZzL2hlYWRzL21haW4wOQYKKwYBBAGDvzABAQQraHR0cHM6"
        "Ly90b2tlbi5hY3Rpb25zLmdpdGh1YnVzZXJjb250ZW50LmNvbTAfBgorBgEEAYO/MAECBBF3b3JrZmxvd19kaXNw"
        "YXRjaDA2BgorBgEEAYO/MAEDBCg5NzdlOGQwODU1NGNhOWJkYTI3OWM5NmU5MWJlMjExOWZiNjdjNzMwMC0GCisG"
        "AQQBg78wAQQEH0V4dHJlbWVseSBkYW5nZXJvdXMgT0lEQyBiZWFjb24wSQYKKwYBBAGDvzABBQQ7c2lnc3RvcmUt"
        "Y29uZm9ybWFuY2UvZXh0cmVtZWx5LWRhbmdlcm91cy1wdWJsaWMtb2lkYy1iZWFjb24wHQYKKwYBBAGDvzABBgQP"
        "cmVmcy9oZWFkcy9tYWluMDsGCisGAQQBg78wAQgELQwraHR0cHM6Ly90b2tlbi5hY3Rpb25zLmdpdGh1YnVzZXJj"
        "b250ZW50LmNvbTCBpgYKKwYBBAGDvzABCQSBlwyBlGh0dHBzOi8vZ2l0aHViLmNvbS9zaWdzdG9yZS1jb25mb3Jt"
        "YW5jZS9leHRyZW1lbHktZGFuZ2Vyb3VzLXB1YmxpYy1vaWRjLWJlYWNvbi8uZ2l0aHViL3dvcmtmbG93cy9leHRy"
        "ZW1lbHktZGFuZ2Vyb3VzLW9pZGMtYmVhY29uLnltbEByZWZzL2hlYWRzL21haW4wOAYKKwYBBAGDvzABCgQqDCg5"
        "NzdlOGQwODU1NGNhOWJkYTI3OWM5NmU5MWJlMjExOWZiNjdjNzMwMB0GCisGAQQBg78wAQsEDwwNZ2l0aHViLWhv"
        "c3RlZDBeBgorBgEEAYO/MAEMBFAMTmh0dHBzOi8vZ2l0aHViLmNvbS9zaWdzdG9yZS1jb25mb3JtYW5jZS9leHRy"
        "ZW1lbHktZGFuZ2Vyb3VzLXB1YmxpYy1vaWRjLWJlYWNvbjA4BgorBgEEAYO/MAENBCoMKDk3N2U4ZDA4NTU0Y2E5"
        "YmRhMjc5Yzk2ZTkxYmUyMTE5ZmI2N2M3MzAwHwYKKwYBBAGDvzABDgQRDA9yZWZzL2hlYWRzL21haW4wGQYKKwYB"
        "BAGDvzABDwQLDAk2MzI1OTY4OTcwNwYKKwYBBAGDvzABEAQpDCdodHRwczovL2dpdGh1Yi5jb20vc2lnc3RvcmUt"
        "Y29uZm9ybWFuY2UwGQYKKwYBBAGDvzABEQQLDAkxMzE4MDQ1NjMwgaYGCisGAQQBg78wARIEgZcMgZRodHRwczov"
        "L2dpdGh1Yi5jb20vc2lnc3RvcmUtY29uZm9ybWFuY2UvZXh0cmVtZWx5LWRhbmdlcm91cy1wdWJsaWMtb2lkYy1i"
        "ZWFjb24vLmdpdGh1Yi93b3JrZmxvd3MvZXh0cmVtZWx5LWRhbmdlcm91cy1vaWRjLWJlYWNvbi55bWxAcmVmcy9o"
        "ZWFkcy9tYWluMDgGCisGAQQBg78wARMEKgwoOTc3ZThkMDg1NTRjYTliZGEyNzljOTZlOTFiZTIxMTlmYjY3Yzcz"
        "MDAhBgorBgEEAYO/MAEUBBMMEXdvcmtmbG93X2Rpc3BhdGNoMIGCBgorBgEEAYO/MAEVBHQMcmh0dHBzOi8vZ2l0"
        "aHViLmNvbS9zaWdzdG9yZS1jb25mb3JtYW5jZS9leHRyZW1lbHktZGFuZ2Vyb3VzLXB1YmxpYy1vaWRjLWJlYWNv"
        "bi9hY3Rpb25zL3J1bnMvMjU4MjIzMzA3MTYvYXR0ZW1wdHMvMTAWBgorBgEEAYO/MAEWBAgMBnB1YmxpYzCBigYK"
        "KwYBBAHWeQIEAgR8BHoAeAB2AN09MGrGxxEyYxkeHJlnNwKiSl643jyt/4eKcoAvKe6OAAABniLhVaoAAAQDAEcw"
        "RQIgaZEVl1qfbesps2ql0ceH6cf1w7ZcUC8LNJfiCMelSAACIQCx40jIf9CbJ7Zyevbm4c6WycLGVemDQMa0ssa7"
        "hdkNuzAKBggqhkjOPQQDAwNoADBlAjEA9Cgh/3a03bJOXiWvrqqoJwvVLNdAGnNrAUnUiSk8YpiPFpGbUxXge4y1"
        "SKLkwwufAjB3P3Ke74iq1L+ODOLnjA91b76S7tSh6ajVhboyppurh7/lIQfnzGcYhIuxYfQlxdQ=");
    s.signature = b64(
        "MEQCID/2YpEq1G8vQ15ieOqasU14e59f01Vqo+qpw32coGE/AiASDlXJ/EDmnPXsAtqZJsgSuC+R8XngSF+W/yWB"
        "cbSBfQ==");
    s.timestamp_der = b64(
        "MIICyTADAgEAMIICwAYJKoZIhvcNAQcCoIICsTCCAq0CAQMxDTALBglghkgBZQMEAgEwgbcGCyqGSIb3DQEJEAEE"
        "oIGnBIGkMIGhAgEBBgkrBgEEAYO/MAIwMTANBglghkgBZQMEAgEFAAQgoWQn+cb/SPqTxJIkqGQALTO/DBciPXCI"
        "kYKF0tALmpwCFALwSRvi4NNL5Xiin3sVIvFIMQTJGA8yMDI2MDUxMzE5NDczM1owAwIBAaAypDAwLjEVMBMGA1UE"
        "ChMMc2lnc3RvcmUuZGV2MRUwEwYDVQQDEwxzaWdzdG9yZS10c2GgADGCAdswggHXAgEBMFEwOTEVMBMGA1UEChMM"
        "c2lnc3RvcmUuZGV2MSAwHgYDVQQDExdzaWdzdG9yZS10c2Etc2VsZnNpZ25lZAIUOhNULwyQYe68wUMvy4qOiyoj"
        "iwwwCwYJYIZIAWUDBAIBoIH8MBoGCSqGSIb3DQEJAzENBgsqhkiG9w0BCRABBDAcBgkqhkiG9w0BCQUxDxcNMjYw"
        "NTEzMTk0NzMzWjAvBgkqhkiG9w0BCQQxIgQgnR5CJpZH+j2Y/xkVR/ytAAyKNumNOloakgDo3IvLP8EwgY4GCyqG"
        "SIb3DQEJEAIvMX8wfTB7MHkEIIX5J7wHq2LKw7RDVsEO/IGyxog/2nq55thw2dE6zQW3MFUwPaQ7MDkxFTATBgNV"
        "BAoTDHNpZ3N0b3JlLmRldjEgMB4GA1UEAxMXc2lnc3RvcmUtdHNhLXNlbGZzaWduZWQCFDoTVC8MkGHuvMFDL8uK"
        "josqI4sMMAoGCCqGSM49BAMCBGcwZQIwQdwg6IMcYgp48pykABEmJT6YA9YkBgCLhFpDi7vfZxAcc+FzyebD/U17"
        "+kfKZqDMAjEA7shEMiHnxnWTj1tE4xBTD110pih/R2AGXEI8a09pvUORkii5gAyII3dgupOYu4lb");
    s.integrated_time = 1778701653;
    return s;
  }();
  return sample;
}

std::string read_source_file(const std::string& relative_path) {
  std::ifstream in(std::string(SIGIL_SOURCE_DIR) + "/" + relative_path, std::ios::binary);
  if (!in) throw std::runtime_error("sigstore_pki: cannot read " + relative_path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace sigil::test
