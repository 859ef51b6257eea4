// bench_keyless_verify: CPU time of one keyless verification on a warm process, against the
// raw signature checks it performs.
//
// A keyless signature needs four public-key operations of its own: the signature itself (leaf
// key, ECDSA P-256), the Rekor SET (P-256), the embedded SCT (P-256), and the leaf certificate
// (signed by the intermediate, P-384). The fifth, the intermediate signed by the root (P-384),
// is the same for every signature: a warm process has it in its crypto::ChainCache, as
// `sigil serve` has in each keyless authority's. The "raw" cost is the four operations alone,
// timed with OpenSSL directly on the same keys and sizes; the "verify" cost is
// crypto::verify_entity doing everything (parsing the certificates, the tlog body, JCS, chain
// building, identity extraction, claims) with a warm chain cache. Target: verify <= 1.3x raw.
// Also printed: verify_entity without a cache (both chain checks on every call), and the raw
// total with the intermediate's check (the old baseline, up to 2026-12-03).
//
// Two shapes are measured: a legacy .sig layer (certificate + Rekor bundle annotation) and a
// cosign v3 DSSE bundle with an inclusion proof and checkpoint (one more P-256 check: the
// checkpoint note). Material is minted in-process by tests/support/cpp (no network).
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "common/encoding.hpp"
#include "crypto/dsse.hpp"
#include "crypto/sigstore.hpp"
#include "rekor_fixture.hpp"
#include "sigstore_pki.hpp"

using namespace sigil;
using namespace sigil::crypto;

namespace {

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// One measured call and its CPU microseconds per call, one sample per round.
struct Timed {
  std::function<void()> fn;
  std::vector<double> us;
};

// `rounds` rounds of `iterations` calls of every function in turn. Interleaved, so that a slow
// phase of a shared machine (CPU steal, a neighbour's burst) slows the raw checks and the
// verifications alike: the ratios are taken per round.
void measure(const std::vector<Timed*>& all, int iterations, int rounds) {
  for (Timed* t : all) {
    for (int i = 0; i < iterations / 10 + 1; ++i) t->fn();  // warm caches
  }
  for (int r = 0; r < rounds; ++r) {
    for (Timed* t : all) {
      const double t0 = cpu_seconds();
      for (int i = 0; i < iterations; ++i) t->fn();
      t->us.push_back((cpu_seconds() - t0) * 1e6 / iterations);
    }
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

bool evp_verify(EVP_PKEY* key, const EVP_MD* md, const std::string& msg, const std::string& sig) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, key) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

std::string payload_for(const std::string& digest) {
  return R"({"critical":{"identity":{"docker-reference":"reg.test/app"},"image":{"docker-manifest-digest":")" +
         digest + R"("},"type":"cosign container image signature"},"optional":null})";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_keyless_verify: CPU per keyless verification vs its raw signature checks"};
  int iterations = 400;
  app.add_option("--iterations", iterations, "calls per timing round (default 400)");
  CLI11_PARSE(app, argc, argv);

  const auto t0 = sigil::test::test_epoch();
  auto pki = sigil::test::FulcioPki::create(t0);
  sigil::test::TestLog rekor;
  std::vector<CertificateAuthority> cas{pki.authority()};
  std::vector<TransparencyLog> tlogs{rekor.log()};
  std::vector<TransparencyLog> ctlogs{pki.ct_log()};
  std::vector<CertificateAuthority> tsas;
  Requirements req;
  req.cas = &cas;
  req.tlogs = &tlogs;
  req.require_tlog = true;
  req.ctlogs = &ctlogs;
  req.require_sct = true;
  req.tsas = &tsas;
  req.min_signing_times = 1;
  ChainCache chain_cache;
  req.chain_cache = &chain_cache;
  Requirements req_uncached = req;
  req_uncached.chain_cache = nullptr;

  const std::string digest = "sha256:" + std::string(64, 'a');
  Artifact image;
  image.kind = Artifact::Kind::image;
  image.digest = digest;

  // Legacy .sig: payload signed by the leaf; Rekor SET over a hashedrekord entry.
  sigil::test::KeyPair leaf_key;
  auto leaf = pki.leaf(pki.leaf_spec(t0), &leaf_key);
  SignedEntity legacy;
  legacy.kind = SignedEntity::Kind::simple_signing;
  legacy.payload = payload_for(digest);
  legacy.signature = leaf_key.sign(legacy.payload);
  legacy.certificates_der = {leaf.der()};
  legacy.tlog_entries = {
      rekor.entry(sigil::test::TestLog::hashedrekord(legacy.payload, legacy.signature, leaf.pem()),
                  to_unix_seconds(t0) + 30)};
  if (!verify_entity(legacy, req, image).ok) {
    std::fprintf(stderr, "bench_keyless_verify: the legacy signature does not verify\n");
    return 1;
  }

  // The raw operations that verification performs, on the same keys and bytes.
  const TlogEntry& entry = legacy.tlog_entries.front();
  const std::string set_msg = R"({"body":")" + base64_encode(entry.canonicalized_body) +
                              R"(","integratedTime":)" + std::to_string(entry.integrated_time) +
                              R"(,"logID":")" + hex_encode(entry.log_id) + R"(","logIndex":42})";
  const std::string tbs = sigil::test::precert_tbs(leaf);
  sigil::test::SctSpec sct = pki.sct_at(t0);
  // An RFC 6962 digitally-signed struct's shape: version, type, timestamp, entry type, key id,
  // the TBS certificate with its length, no extensions (its bytes only need to be signed).
  const std::string sct_data = std::string(2, '\0') + std::string(8, 'T') +
                               std::string("\x00\x01", 2) + std::string(32, 'k') +
                               std::string(3, '\0') + tbs + std::string(2, '\0');
  const std::string sct_sig = pki.ct_key.sign(sct_data);
  EVP_PKEY* leaf_pub = X509_get0_pubkey(leaf.x509.get());
  EVP_PKEY* inter_pub = X509_get0_pubkey(pki.intermediate.x509.get());
  EVP_PKEY* root_pub = X509_get0_pubkey(pki.root.x509.get());
  EVP_PKEY* log_pub = rekor.key.pkey.get();
  EVP_PKEY* ct_pub = pki.ct_key.pkey.get();
  // A cosign v3 DSSE bundle, logged with a SET (the dsse body) and verified the same way.
  SignedEntity dsse;
  dsse.kind = SignedEntity::Kind::dsse;
  dsse.bundle_minor_version = 3;
  dsse.payload_type = std::string(kInTotoPayloadType);
  dsse.payload =
      R"({"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"reg.test/app","digest":{"sha256":")" +
      digest.substr(7) +
      R"("}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}})";
  dsse.signature = leaf_key.sign(dsse_pae(dsse.payload_type, dsse.payload));
  dsse.certificates_der = {leaf.der()};
  dsse.tlog_entries = {
      rekor.entry(sigil::test::TestLog::dsse(dsse.payload, dsse.signature, leaf.pem()),
                  to_unix_seconds(t0) + 30)};

  bool raw_ok = true;
  bool all_ok = true;
  Timed raw_sig{
      [&] { raw_ok &= evp_verify(leaf_pub, EVP_sha256(), legacy.payload, legacy.signature); }, {}};
  Timed raw_set{
      [&] { raw_ok &= evp_verify(log_pub, EVP_sha256(), set_msg, entry.signed_entry_timestamp); },
      {}};
  Timed raw_sct{[&] { raw_ok &= evp_verify(ct_pub, EVP_sha256(), sct_data, sct_sig); }, {}};
  Timed raw_leaf_cert{[&] { raw_ok &= X509_verify(leaf.x509.get(), inter_pub) == 1; }, {}};
  Timed raw_inter_cert{[&] { raw_ok &= X509_verify(pki.intermediate.x509.get(), root_pub) == 1; },
                       {}};
  Timed legacy_v{[&] { all_ok &= verify_entity(legacy, req, image).ok; }, {}};
  Timed legacy_uncached{[&] { all_ok &= verify_entity(legacy, req_uncached, image).ok; }, {}};
  Timed dsse_v{[&] { all_ok &= verify_entity(dsse, req, image).ok; }, {}};
  measure({&raw_sig, &raw_set, &raw_sct, &raw_leaf_cert, &raw_inter_cert, &legacy_v,
           &legacy_uncached, &dsse_v},
          iterations, 9);
  if (!raw_ok) {
    std::fprintf(stderr, "bench_keyless_verify: a raw check failed\n");
    return 1;
  }
  if (!all_ok) {
    std::fprintf(stderr, "bench_keyless_verify: a verification failed while timing\n");
    return 1;
  }
  // The raw checks of one legacy verification, and each verification's ratio to them, per round.
  std::vector<double> raw_legacy_r, ratio_legacy_r, ratio_dsse_r;
  for (size_t r = 0; r < legacy_v.us.size(); ++r) {
    raw_legacy_r.push_back(raw_sig.us[r] + raw_set.us[r] + raw_sct.us[r] + raw_leaf_cert.us[r]);
    ratio_legacy_r.push_back(legacy_v.us[r] / raw_legacy_r[r]);
    ratio_dsse_r.push_back(dsse_v.us[r] / raw_legacy_r[r]);
  }
  const double raw_legacy = median(raw_legacy_r);
  if (chain_cache.hits() == 0) {
    std::fprintf(stderr, "bench_keyless_verify: the chain cache was never used\n");
    return 1;
  }

  std::printf("raw.signature_us=%.1f\nraw.set_us=%.1f\nraw.sct_us=%.1f\n", median(raw_sig.us),
              median(raw_set.us), median(raw_sct.us));
  std::printf("raw.leaf_cert_us=%.1f\nraw.intermediate_cert_us=%.1f\nraw.total_us=%.1f\n",
              median(raw_leaf_cert.us), median(raw_inter_cert.us), raw_legacy);
  std::printf("raw.total_with_intermediate_us=%.1f\n", raw_legacy + median(raw_inter_cert.us));
  std::printf("verify.legacy_us=%.1f\nverify.dsse_bundle_us=%.1f\n", median(legacy_v.us),
              median(dsse_v.us));
  std::printf("verify.legacy_uncached_us=%.1f\n", median(legacy_uncached.us));
  std::printf("ratio.legacy=%.2f\nratio.dsse_bundle=%.2f\n", median(ratio_legacy_r),
              median(ratio_dsse_r));
  return 0;
}
