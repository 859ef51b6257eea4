// Standard signature test vectors through crypto::PublicKey: NIST CAVP ECDSA SigVer (FIPS
// 186-3) and RSA PKCS#1 v1.5 SigVer, and the RFC 8032-style Ed25519 vectors, as Debian's
// python3-cryptography-vectors ships them. Every case sigil supports runs: ECDSA P-256/SHA-256,
// P-384/SHA-384 and P-521/SHA-512, RSA >= 2048 bits with SHA-256, and all Ed25519 lines; sigil's
// verdict must equal the file's (a key the file marks as modified may already be refused by
// PublicKey::from_der, which counts as a rejection). The Ed25519 file has valid signatures
// only; each also yields negatives: a bit of the signature (in R, in S), of the message and of
// the key flipped, and S + L (the malleable, non-canonical form RFC 8032 5.1.7 requires to be
// rejected).
//
// The SubjectPublicKeyInfo and the DER ECDSA signatures are built here from the raw numbers,
// not by OpenSSL. Without the package (or SIGIL_CRYPTOGRAPHY_VECTORS pointing at a
// cryptography_vectors directory) the test warns and passes: `apt-get install
// python3-cryptography-vectors` (scripts/deps.sh installs it).
#include <catch2/catch.hpp>

#include <openssl/bn.h>
#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/encoding.hpp"
#include "crypto/keys.hpp"

using namespace sigil;
using namespace sigil::crypto;

namespace {

constexpr const char* kDebianVectors = "/usr/lib/python3/dist-packages/cryptography_vectors";

// The cryptography_vectors directory, or nothing when it is not installed.
std::optional<std::string> vectors_dir() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("SIGIL_CRYPTOGRAPHY_VECTORS"); env && *env) {
    candidates.emplace_back(env);
  }
  candidates.emplace_back(kDebianVectors);
  for (const auto& dir : candidates) {
    std::ifstream probe(dir + "/asymmetric/ECDSA/FIPS_186-3/SigVer.rsp");
    if (probe) return dir;
  }
  return std::nullopt;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    out.push_back(trim(text.substr(0, nl)));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

std::string unhex(std::string_view hex) {
  auto r = hex_decode(hex);
  INFO("hex: " << hex.substr(0, 80));
  REQUIRE(r.ok());
  return *r;
}

// A big-endian number: CAVP drops a leading zero nibble (P-521 values have 131 digits).
std::string unhex_number(std::string_view hex) {
  if (hex.size() % 2 == 0) return unhex(hex);
  return unhex("0" + std::string(hex));
}

// A CAVP .rsp file: [section] headers, then records of "Key = value" lines, each ending at
// "Result = P" or "Result = F (reason)". RSA's n (with p, q) stands between records and applies
// to the records after it.
struct Record {
  std::string section;
  std::map<std::string, std::string, std::less<>> fields;
  bool pass = false;
  std::string reason;  // for F: "2 - R changed"
};

const std::string& field(const Record& r, const char* key) {
  auto it = r.fields.find(key);
  INFO("[" << r.section << "] record without " << key);
  REQUIRE(it != r.fields.end());
  return it->second;
}

std::vector<Record> parse_rsp(std::string_view text) {
  std::vector<Record> out;
  std::string section;
  std::map<std::string, std::string, std::less<>> section_fields, current;
  bool in_record = false;
  for (std::string_view line : lines_of(text)) {
    if (line.empty() || line.front() == '#') continue;
    if (line.front() == '[') {
      auto close = line.find(']');
      REQUIRE(close != std::string_view::npos);
      section = std::string(trim(line.substr(1, close - 1)));
      section_fields.clear();
      current.clear();
      in_record = false;
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    std::string key(trim(line.substr(0, eq)));
    std::string value(trim(line.substr(eq + 1)));
    if (key == "Result") {
      Record r;
      r.section = section;
      r.fields = section_fields;
      for (auto& [k, v] : current) r.fields[k] = v;
      REQUIRE(!value.empty());
      r.pass = value.front() == 'P';
      INFO("Result = " << value);
      REQUIRE((value.front() == 'P' || value.front() == 'F'));
      if (auto open = value.find('('); open != std::string::npos) {
        auto close = value.find(')', open);
        r.reason = std::string(trim(value.substr(open + 1, close - open - 1)));
      }
      out.push_back(std::move(r));
      current.clear();
      in_record = false;
      continue;
    }
    // Before the first record of a section (RSA's n, p, q) or inside a record.
    if (!in_record && (key == "n" || key == "p" || key == "q")) {
      section_fields[key] = value;
    } else {
      in_record = true;
      current[key] = value;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// DER, written out by hand.

std::string der_length(size_t n) {
  std::string out;
  if (n < 0x80) {
    out.push_back(static_cast<char>(n));
    return out;
  }
  std::string bytes;
  while (n > 0) {
    bytes.insert(bytes.begin(), static_cast<char>(n & 0xff));
    n >>= 8;
  }
  out.push_back(static_cast<char>(0x80 | bytes.size()));
  return out + bytes;
}

std::string tlv(unsigned char tag, std::string_view content) {
  std::string out(1, static_cast<char>(tag));
  out += der_length(content.size());
  out += content;
  return out;
}

std::string seq(std::string_view content) {
  return tlv(0x30, content);
}

// A non-negative INTEGER from big-endian magnitude bytes: minimal, with a 0x00 before a set
// high bit.
std::string der_uint(std::string_view magnitude) {
  size_t i = 0;
  while (i + 1 < magnitude.size() && magnitude[i] == '\0') ++i;
  std::string v(magnitude.substr(i));
  if (v.empty()) v.assign(1, '\0');
  if (static_cast<unsigned char>(v.front()) & 0x80) v.insert(v.begin(), '\0');
  return tlv(0x02, v);
}

std::string bit_string(std::string_view bytes) {
  return tlv(0x03, std::string(1, '\0') + std::string(bytes));
}

std::string oid(std::initializer_list<unsigned char> encoded) {
  return tlv(0x06, std::string(encoded.begin(), encoded.end()));
}

// 1.2.840.10045.2.1 id-ecPublicKey
const std::string kEcPublicKey = oid({0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01});

struct Curve {
  const char* section;  // "P-256,SHA-256"
  std::string oid;
  size_t field_bytes;
  HashAlgorithm hash;
  const EVP_MD* (*md)();
};

const std::vector<Curve>& curves() {
  static const std::vector<Curve> c = {
      // 1.2.840.10045.3.1.7 prime256v1
      {"P-256,SHA-256", oid({0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), 32,
       HashAlgorithm::sha256, EVP_sha256},
      // 1.3.132.0.34 secp384r1
      {"P-384,SHA-384", oid({0x2b, 0x81, 0x04, 0x00, 0x22}), 48, HashAlgorithm::sha384, EVP_sha384},
      // 1.3.132.0.35 secp521r1
      {"P-521,SHA-512", oid({0x2b, 0x81, 0x04, 0x00, 0x23}), 66, HashAlgorithm::sha512, EVP_sha512},
  };
  return c;
}

std::string left_pad(std::string bytes, size_t size) {
  while (bytes.size() < size) bytes.insert(bytes.begin(), '\0');
  return bytes;
}

std::string ec_spki(const Curve& c, std::string_view qx_hex, std::string_view qy_hex) {
  std::string x = unhex_number(qx_hex), y = unhex_number(qy_hex);
  // A coordinate that does not fit the field cannot be a point of the curve: keep its bytes
  // (the key is then refused), but never truncate.
  std::string point = "\x04" + left_pad(x, c.field_bytes) + left_pad(y, c.field_bytes);
  return seq(seq(kEcPublicKey + c.oid) + bit_string(point));
}

std::string ecdsa_sig(std::string_view r_hex, std::string_view s_hex) {
  return seq(der_uint(unhex_number(r_hex)) + der_uint(unhex_number(s_hex)));
}

std::string rsa_spki(std::string_view n_hex, std::string_view e_hex) {
  // 1.2.840.113549.1.1.1 rsaEncryption, NULL parameters
  const std::string alg =
      seq(oid({0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01}) + std::string("\x05\x00", 2));
  return seq(alg + bit_string(seq(der_uint(unhex_number(n_hex)) + der_uint(unhex_number(e_hex)))));
}

std::string ed25519_spki(std::string_view raw_key) {
  return seq(seq(oid({0x2b, 0x65, 0x70})) + bit_string(raw_key));  // 1.3.101.112
}

std::string digest(std::string_view message, const EVP_MD* md) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  REQUIRE(EVP_Digest(message.data(), message.size(), out, &len, md, nullptr) == 1);
  return std::string(reinterpret_cast<const char*>(out), len);
}

// S + L (little-endian, 32 bytes), L = 2^252 + 27742317777372353535851937790883648493, the
// order of the Ed25519 base point. S < L, so the sum fits.
std::string plus_l(std::string_view s) {
  static const unsigned char kL[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,
                                       0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
                                       0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                       0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};
  std::string out(32, '\0');
  unsigned carry = 0;
  for (size_t i = 0; i < 32; ++i) {
    unsigned v = static_cast<unsigned char>(s[i]) + kL[i] + carry;
    out[i] = static_cast<char>(v & 0xff);
    carry = v >> 8;
  }
  return out;
}

// plus_l checked against OpenSSL's bignums: S + L, with L from its decimal value.
bool plus_l_is_right(std::string_view s, std::string_view sum) {
  BIGNUM* l = nullptr;
  BIGNUM* a = BN_lebin2bn(reinterpret_cast<const unsigned char*>(s.data()), 32, nullptr);
  BIGNUM* b = BN_lebin2bn(reinterpret_cast<const unsigned char*>(sum.data()), 32, nullptr);
  bool ok =
      a && b &&
      BN_dec2bn(
          &l, "7237005577332262213973186563042994240857116359379907606001950938285454250989") > 0 &&
      BN_add(a, a, l) == 1 && BN_cmp(a, b) == 0 && BN_cmp(b, l) > 0;
  BN_free(l);
  BN_free(a);
  BN_free(b);
  return ok;
}

std::string flip(std::string s, size_t byte, unsigned char mask = 0x01) {
  s[byte] = static_cast<char>(s[byte] ^ mask);
  return s;
}

// The tallies printed at the end.
struct Tally {
  int run = 0, accepted = 0, rejected = 0, refused_key = 0, agree = 0;
  void add(bool expected_pass, bool key_ok, bool verified) {
    ++run;
    if (!key_ok) ++refused_key;
    (verified ? accepted : rejected) += 1;
    if (verified == expected_pass) ++agree;
  }
  void print(const char* what) const {
    std::printf(
        "vectors: %-24s %4d run, %4d accepted, %4d rejected (%d keys refused by from_der), %4d "
        "agree with the file\n",
        what, run, accepted, rejected, refused_key, agree);
  }
};

}  // namespace

TEST_CASE("NIST CAVP ECDSA SigVer vectors (FIPS 186-3)", "[vectors]") {
  auto dir = vectors_dir();
  if (!dir) {
    WARN("python3-cryptography-vectors is not installed (" << kDebianVectors
                                                           << "): ECDSA CAVP vectors skipped");
    return;
  }
  const auto records = parse_rsp(read_file(*dir + "/asymmetric/ECDSA/FIPS_186-3/SigVer.rsp"));
  REQUIRE(records.size() > 100);
  for (const Curve& c : curves()) {
    Tally t;
    int expect_pass = 0, expect_fail = 0;
    for (const Record& r : records) {
      if (r.section != c.section) continue;
      INFO(c.section << " Msg = " << field(r, "Msg").substr(0, 32) << "… Result "
                     << (r.pass ? "P" : "F (" + r.reason + ")"));
      (r.pass ? expect_pass : expect_fail) += 1;
      const std::string msg = unhex(field(r, "Msg"));
      const std::string sig = ecdsa_sig(field(r, "R"), field(r, "S"));
      auto key = PublicKey::from_der(ec_spki(c, field(r, "Qx"), field(r, "Qy")));
      bool verified = false;
      if (key) {
        CHECK(key->type() == (c.field_bytes == 32   ? KeyType::ecdsa_p256
                              : c.field_bytes == 48 ? KeyType::ecdsa_p384
                                                    : KeyType::ecdsa_p521));
        Status v = key->verify(msg, sig, c.hash);
        Status vp = key->verify_prehashed(digest(msg, c.md()), sig, c.hash);
        CHECK(v.ok() == vp.ok());  // the two paths agree
        if (!v.ok()) CHECK(v.error().code == Errc::verification);
        if (!vp.ok()) CHECK(vp.error().code == Errc::verification);
        verified = v.ok() && vp.ok();
      } else {
        // Only a key the file says was changed may be refused.
        CHECK_FALSE(r.pass);
        CHECK(r.reason.find("Q changed") != std::string::npos);
      }
      CHECK(verified == r.pass);
      t.add(r.pass, key.ok(), verified);
    }
    CHECK(expect_pass > 0);
    CHECK(expect_fail > 0);
    t.print(c.section);
    CHECK(t.agree == t.run);
  }
}

TEST_CASE("NIST CAVP RSA PKCS#1 v1.5 SigVer vectors (FIPS 186-3), >= 2048 bits, SHA-256",
          "[vectors]") {
  auto dir = vectors_dir();
  if (!dir) {
    WARN("python3-cryptography-vectors is not installed (" << kDebianVectors
                                                           << "): RSA CAVP vectors skipped");
    return;
  }
  const auto records = parse_rsp(read_file(*dir + "/asymmetric/RSA/FIPS_186-2/SigVer15_186-3.rsp"));
  REQUIRE(records.size() > 100);
  std::map<int, Tally> by_size;
  Tally all;
  int smaller_refused = 0;
  for (const Record& r : records) {
    REQUIRE(r.section.rfind("mod = ", 0) == 0);
    const int bits = std::stoi(r.section.substr(6));
    if (field(r, "SHAAlg") != "SHA256") continue;
    const std::string spki = rsa_spki(field(r, "n"), field(r, "e"));
    if (bits < 2048) {
      // Out of scope for the verdicts, but sigil must refuse such keys outright.
      CHECK_FALSE(PublicKey::from_der(spki).ok());
      ++smaller_refused;
      continue;
    }
    INFO("mod " << bits << " Msg = " << field(r, "Msg").substr(0, 32) << "… Result "
                << (r.pass ? "P" : "F (" + r.reason + ")"));
    const std::string msg = unhex(field(r, "Msg"));
    const std::string sig = unhex(field(r, "S"));
    auto key = PublicKey::from_der(spki);
    bool verified = false;
    if (key) {
      CHECK(key->type() == KeyType::rsa);
      Status v = key->verify(msg, sig, HashAlgorithm::sha256);
      Status vp = key->verify_prehashed(digest(msg, EVP_sha256()), sig, HashAlgorithm::sha256);
      CHECK(v.ok() == vp.ok());
      verified = v.ok() && vp.ok();
    } else {
      CHECK_FALSE(r.pass);
      CHECK(r.reason.find("e changed") != std::string::npos);
    }
    CHECK(verified == r.pass);
    by_size[bits].add(r.pass, key.ok(), verified);
    all.add(r.pass, key.ok(), verified);
  }
  CHECK(by_size.size() >= 3);  // 2048, 3072, 4096
  for (const auto& [bits, t] : by_size) {
    const std::string name = "RSA-" + std::to_string(bits) + ",SHA-256";
    t.print(name.c_str());
  }
  CHECK(smaller_refused > 0);
  std::printf("vectors: RSA < 2048 bits,SHA-256  %4d keys, all refused by from_der\n",
              smaller_refused);
  CHECK(all.accepted > 0);
  CHECK(all.rejected > 0);
  CHECK(all.agree == all.run);
}

TEST_CASE("Ed25519 vectors (sign.input) and negatives derived from them", "[vectors]") {
  auto dir = vectors_dir();
  if (!dir) {
    WARN("python3-cryptography-vectors is not installed (" << kDebianVectors
                                                           << "): Ed25519 vectors skipped");
    return;
  }
  const std::string text = read_file(*dir + "/asymmetric/Ed25519/sign.input");
  Tally valid, negative;
  int line_no = 0;
  for (std::string_view line : lines_of(text)) {
    ++line_no;
    if (line.empty()) continue;
    // secret||public : public : message : signature||message :
    std::vector<std::string_view> f;
    for (size_t pos = 0;;) {
      auto colon = line.find(':', pos);
      f.push_back(line.substr(pos, colon - pos));
      if (colon == std::string_view::npos) break;
      pos = colon + 1;
    }
    INFO("sign.input line " << line_no);
    REQUIRE(f.size() >= 4);
    const std::string pk = unhex(f[1]);
    const std::string msg = unhex(f[2]);
    const std::string sig_msg = unhex(f[3]);
    REQUIRE(pk.size() == 32);
    REQUIRE(sig_msg.size() == 64 + msg.size());
    REQUIRE(sig_msg.substr(64) == msg);
    REQUIRE(unhex(f[0]).substr(32) == pk);
    const std::string sig = sig_msg.substr(0, 64);

    auto judge = [&](Tally& t, bool expected, const std::string& key_raw, const std::string& m,
                     const std::string& s, const char* what) {
      INFO(what);
      auto key = PublicKey::from_der(ed25519_spki(key_raw));
      bool verified = false;
      if (key) {
        CHECK(key->type() == KeyType::ed25519);
        Status v = key->verify(m, s);
        verified = v.ok();
        if (!v.ok()) CHECK(v.error().code == Errc::verification);
        // Ed25519 is pure: sigil never verifies it against a digest.
        Status vp = key->verify_prehashed(digest(m, EVP_sha512()), s, HashAlgorithm::sha512);
        REQUIRE_FALSE(vp.ok());
        CHECK(vp.error().code == Errc::unsupported);
      } else {
        CHECK_FALSE(expected);
      }
      CHECK(verified == expected);
      t.add(expected, key.ok(), verified);
    };

    judge(valid, true, pk, msg, sig, "the vector as given");
    judge(negative, false, pk, msg, flip(sig, 0), "a bit of R flipped");
    judge(negative, false, pk, msg, flip(sig, 32), "a bit of S flipped");
    const std::string s_plus_l = plus_l(sig.substr(32));
    REQUIRE(plus_l_is_right(sig.substr(32), s_plus_l));
    judge(negative, false, pk, msg, sig.substr(0, 32) + s_plus_l, "S + L (non-canonical S)");
    judge(negative, false, pk, msg.empty() ? std::string(1, '\0') : flip(msg, msg.size() - 1), sig,
          msg.empty() ? "a byte appended to the empty message" : "a bit of the message flipped");
    judge(negative, false, flip(pk, 0), msg, sig, "a bit of the key flipped");
  }
  CHECK(valid.run >= 1000);
  valid.print("Ed25519 (file)");
  negative.print("Ed25519 (derived F)");
  CHECK(valid.agree == valid.run);
  CHECK(negative.agree == negative.run);
}
