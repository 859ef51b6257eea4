#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <string>

#include "common/encoding.hpp"
#include "crypto/bundle.hpp"

using namespace sigil;
using namespace sigil::crypto;

namespace {

const std::string kV01 = "application/vnd.dev.sigstore.bundle+json;version=0.1";
const std::string kV02 = "application/vnd.dev.sigstore.bundle+json;version=0.2";
const std::string kV03 = "application/vnd.dev.sigstore.bundle.v0.3+json";

const std::string kBody = R"({"apiVersion":"0.0.1","kind":"hashedrekord","spec":{}})";

std::string b64(std::string_view s) {
  return base64_encode(s);
}

std::string promise() {
  return R"("inclusionPromise":{"signedEntryTimestamp":")" + b64("set") + "\"},";
}

std::string proof() {
  return R"("inclusionProof":{"logIndex":"1","rootHash":")" + b64(std::string(32, 'r')) +
         R"(","treeSize":"2","hashes":[")" + b64(std::string(32, 'h')) +
         R"("],"checkpoint":{"envelope":"origin\n2\nroot\n\n— origin c2ln\n"}},)";
}

std::string entry(const std::string& parts) {
  return R"({"logIndex":"42","logId":{"keyId":")" + b64(std::string(32, 'L')) +
         R"("},"kindVersion":{"kind":"hashedrekord","version":"0.0.1"},"integratedTime":"1700000000",)" +
         parts + R"("canonicalizedBody":")" + b64(kBody) + "\"}";
}

const std::string kCert = R"("certificate":{"rawBytes":")" + b64("leaf-der") + "\"}";
const std::string kChain = R"("x509CertificateChain":{"certificates":[{"rawBytes":")" +
                           b64("leaf-der") + R"("},{"rawBytes":")" + b64("intermediate-der") +
                           "\"}]}";
const std::string kKey = R"("publicKey":{"hint":"key-hint"})";

const std::string kMessage =
    R"("messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":")" +
    b64(std::string(32, 'd')) + R"("},"signature":")" + b64("msg-sig") + "\"}";
const std::string kDsse =
    R"("dsseEnvelope":{"payload":")" + b64("{}") +
    R"(","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":")" + b64("dsse-sig") +
    R"(","keyid":""}]})";

std::string bundle(const std::string& media, const std::string& material,
                   const std::string& entries, const std::string& content,
                   const std::string& extra_vm = "") {
  std::string vm = "{" + material;
  if (!entries.empty()) vm += ",\"tlogEntries\":[" + entries + "]";
  vm += extra_vm + "}";
  return "{\"mediaType\":\"" + media + "\",\"verificationMaterial\":" + vm +
         (content.empty() ? "" : "," + content) + "}";
}

std::string read_vector(const std::string& name) {
  std::ifstream in(std::string(SIGIL_SOURCE_DIR) + "/tests/unit/crypto/data/" + name,
                   std::ios::binary);
  REQUIRE(in.good());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

Bundle parsed(const std::string& json) {
  auto b = parse_bundle(json);
  if (!b) INFO(b.error().message);
  REQUIRE(b.ok());
  return *b;
}

}  // namespace

TEST_CASE("bundle v0.3: certificate, proof, DSSE envelope, RFC 3161 timestamps") {
  Bundle b =
      parsed(bundle(kV03, kCert, entry(proof()), kDsse,
                    R"(,"timestampVerificationData":{"rfc3161Timestamps":[{"signedTimestamp":")" +
                        b64("tsr-der") + "\"}]}"));
  CHECK(b.media_type == kV03);
  CHECK(b.minor_version == 3);
  CHECK(b.certificates_der == std::vector<std::string>{"leaf-der"});
  CHECK_FALSE(b.has_public_key);
  REQUIRE(b.tlog_entries.size() == 1);
  CHECK(b.tlog_entries[0].log_index == 42);
  CHECK(b.tlog_entries[0].inclusion_proof.has_value());
  CHECK(b.rfc3161_timestamps == std::vector<std::string>{"tsr-der"});
  CHECK(b.content == Bundle::Content::dsse);
  CHECK(b.envelope.payload == "{}");
  CHECK(b.envelope.payload_type == "application/vnd.in-toto+json");
  REQUIRE(b.envelope.signatures.size() == 1);
  CHECK(b.envelope.signatures[0].sig == "dsse-sig");
}

TEST_CASE("bundle v0.1 and v0.2: chains, keys, message signatures") {
  Bundle v1 = parsed(bundle(kV01, kChain, entry(promise()), kMessage));
  CHECK(v1.minor_version == 1);
  CHECK(v1.certificates_der == std::vector<std::string>{"leaf-der", "intermediate-der"});
  CHECK(v1.content == Bundle::Content::message_signature);
  CHECK(v1.message_digest_algorithm == HashAlgorithm::sha256);
  CHECK(v1.message_digest == std::string(32, 'd'));
  CHECK(v1.signature == "msg-sig");
  CHECK(v1.tlog_entries[0].signed_entry_timestamp == "set");

  Bundle v2 = parsed(bundle(kV02, kKey, entry(proof() + promise()), kMessage));
  CHECK(v2.minor_version == 2);
  CHECK(v2.certificates_der.empty());
  CHECK(v2.has_public_key);
  CHECK(v2.public_key_hint == "key-hint");

  // v0.1 and v0.2 may also use the single certificate.
  CHECK(parse_bundle(bundle(kV02, kCert, entry(proof()), kDsse)).ok());
  // A key-signed bundle without a hint, and one without log entries.
  Bundle bare = parsed(bundle(kV03, R"("publicKey":{})", "", kDsse));
  CHECK(bare.has_public_key);
  CHECK(bare.public_key_hint.empty());
  CHECK(bare.tlog_entries.empty());
}

TEST_CASE("bundle media types") {
  CHECK(parsed(bundle("application/vnd.dev.sigstore.bundle+json;version=0.3", kCert, entry(proof()),
                      kDsse))
            .minor_version == 3);
  const std::string media =
      GENERATE(std::string("application/vnd.dev.sigstore.bundle+json;version=0.4"),
               std::string("application/vnd.dev.sigstore.bundle.v0.4+json"),
               std::string("application/vnd.dev.sigstore.bundle.v0.2+json"),
               std::string("application/vnd.dev.sigstore.bundle+json"),
               std::string("application/vnd.dev.sigstore.bundle+json;version=0.3 "),
               std::string("APPLICATION/VND.DEV.SIGSTORE.BUNDLE.V0.3+JSON"),
               std::string("application/json"), std::string(""));
  INFO(media);
  auto r = parse_bundle(bundle(media, kCert, entry(proof()), kDsse));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::unsupported);
  auto none = parse_bundle("{\"verificationMaterial\":{" + kCert + "}," + kDsse + "}");
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == Errc::unsupported);
}

TEST_CASE("bundle structure rules") {
  struct Row {
    const char* why;
    std::string json;
    const char* names;
  };
  auto row = GENERATE_COPY(
      Row{"certificate and publicKey", bundle(kV03, kCert + "," + kKey, entry(proof()), kDsse),
          "exactly one of certificate"},
      Row{"chain and certificate", bundle(kV02, kChain + "," + kCert, entry(proof()), kDsse),
          "exactly one of certificate"},
      Row{"no verification content", bundle(kV03, R"("tlogEntries":[])", "", kDsse),
          "has none of certificate"},
      Row{"no verificationMaterial", "{\"mediaType\":\"" + kV03 + "\"," + kDsse + "}",
          "verificationMaterial is missing"},
      Row{"v0.1 entry without a promise", bundle(kV01, kChain, entry(proof()), kMessage),
          "has no inclusionPromise"},
      Row{"v0.1: the second entry lacks a promise",
          bundle(kV01, kChain, entry(promise()) + "," + entry(proof()), kMessage),
          "tlogEntries[1] has no inclusionPromise"},
      Row{"v0.2 entry without a proof", bundle(kV02, kChain, entry(promise()), kMessage),
          "has no inclusionProof"},
      Row{"v0.3 entry without a proof", bundle(kV03, kCert, entry(promise()), kDsse),
          "has no inclusionProof"},
      Row{"v0.3 with a chain", bundle(kV03, kChain, entry(proof()), kDsse),
          "not allowed in a v0.3 bundle"},
      Row{"both contents", bundle(kV03, kCert, entry(proof()), kMessage + "," + kDsse),
          "both messageSignature and dsseEnvelope"},
      Row{"no content", bundle(kV03, kCert, entry(proof()), ""),
          "neither messageSignature nor dsseEnvelope"},
      Row{"empty chain",
          bundle(kV02, R"("x509CertificateChain":{"certificates":[]})", entry(proof()), kDsse),
          "certificates is empty"},
      Row{"certificate without rawBytes",
          bundle(kV03, R"("certificate":{})", entry(proof()), kDsse),
          "certificate.rawBytes is missing"},
      Row{"certificate not base64",
          bundle(kV03, R"("certificate":{"rawBytes":"@@@@"})", entry(proof()), kDsse),
          "certificate.rawBytes is not valid base64"},
      Row{"chain certificate not base64",
          bundle(kV02, R"("x509CertificateChain":{"certificates":[{"rawBytes":"QQ="}]})",
                 entry(proof()), kDsse),
          "certificates[0].rawBytes"},
      Row{"signature not base64",
          bundle(kV03, kCert, entry(proof()), R"("messageSignature":{"signature":"a b="})"),
          "messageSignature.signature"},
      Row{"signature missing", bundle(kV03, kCert, entry(proof()), R"("messageSignature":{})"),
          "messageSignature.signature is missing"},
      Row{"digest of the wrong length",
          bundle(kV03, kCert, entry(proof()),
                 R"("messageSignature":{"messageDigest":{"algorithm":"SHA2_384","digest":")" +
                     b64(std::string(32, 'd')) + R"("},"signature":"AQ=="})"),
          "not a sha384 digest"},
      Row{"digest without algorithm",
          bundle(kV03, kCert, entry(proof()),
                 R"("messageSignature":{"messageDigest":{"digest":"AQ=="},"signature":"AQ=="})"),
          "algorithm is missing"},
      Row{"DSSE signature not base64",
          bundle(kV03, kCert, entry(proof()),
                 R"("dsseEnvelope":{"payload":"","payloadType":"t","signatures":[{"sig":"!"}]})"),
          "dsseEnvelope.signatures[0].sig"},
      Row{"DSSE payloadType in both spellings",
          bundle(
              kV03, kCert, entry(proof()),
              R"("dsseEnvelope":{"payload":"","payloadType":"t","payload_type":"t","signatures":[{"sig":"AQ=="}]})"),
          "given twice"},
      Row{"tlog entry error names its place",
          bundle(kV03, kCert, R"({"logId":{"keyId":"AQ=="}})", kDsse),
          "verificationMaterial.tlogEntries[0].kindVersion is missing"},
      Row{"tlogEntries not an array", bundle(kV03, kCert, "", kDsse, R"(,"tlogEntries":{})"),
          "tlogEntries must be an array"},
      Row{"timestamp not base64",
          bundle(kV03, kCert, entry(proof()), kDsse,
                 R"(,"timestampVerificationData":{"rfc3161Timestamps":[{"signedTimestamp":"*"}]})"),
          "rfc3161Timestamps[0].signedTimestamp"},
      Row{"timestamp missing",
          bundle(kV03, kCert, entry(proof()), kDsse,
                 R"(,"timestampVerificationData":{"rfc3161Timestamps":[{}]})"),
          "signedTimestamp is missing"},
      Row{"duplicate key", "{\"mediaType\":\"" + kV03 + "\",\"mediaType\":\"" + kV03 + "\"}",
          "duplicate key"},
      Row{"duplicate key deep inside",
          bundle(kV03, R"("certificate":{"rawBytes":"AQ==","rawBytes":"AQ=="})", entry(proof()),
                 kDsse),
          "duplicate key \"rawBytes\""},
      Row{"field in both spellings",
          bundle(kV03, kCert, entry(proof()), kDsse, R"(,"tlog_entries":[])"), "given twice"},
      Row{"malformed JSON", "{\"mediaType\":", "not valid JSON"},
      Row{"not an object", "[]", "must be a JSON object"});
  INFO(row.why);
  auto r = parse_bundle(row.json);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::parse_error);
  INFO(r.error().message);
  CHECK(r.error().message.find(row.names) != std::string::npos);
  CHECK(r.error().message.rfind("sigstore bundle", 0) == 0);
}

TEST_CASE("bundle message digests") {
  auto with = [](const std::string& alg, size_t len) {
    return bundle(kV03, kCert, entry(proof()),
                  R"("messageSignature":{"messageDigest":{"algorithm":)" + alg + R"(,"digest":")" +
                      b64(std::string(len, 'd')) + R"("},"signature":"AQ=="})");
  };
  CHECK(parsed(with("\"SHA2_384\"", 48)).message_digest_algorithm == HashAlgorithm::sha384);
  CHECK(parsed(with("\"SHA2_512\"", 64)).message_digest_algorithm == HashAlgorithm::sha512);
  CHECK(parsed(with("1", 32)).message_digest_algorithm == HashAlgorithm::sha256);
  auto sha3 = parse_bundle(with("\"SHA3_256\"", 32));
  REQUIRE_FALSE(sha3.ok());
  CHECK(sha3.error().code == Errc::unsupported);
  CHECK_FALSE(parse_bundle(with("\"HASH_ALGORITHM_UNSPECIFIED\"", 32)).ok());
  // messageDigest is optional.
  Bundle none =
      parsed(bundle(kV03, kCert, entry(proof()), R"("messageSignature":{"signature":"AQ=="})"));
  CHECK(none.message_digest.empty());
}

TEST_CASE("bundle protobuf JSON: proto field names, nulls, unknown members") {
  const std::string json =
      "{\"media_type\":\"" + kV03 +
      "\",\"verification_material\":{\"certificate\":{\"raw_bytes\":\"" + b64("leaf") +
      "\"},\"tlog_entries\":[" + entry(proof()) +
      "],\"timestamp_verification_data\":null},\"dsse_envelope\":{\"payload\":\"\","
      "\"payload_type\":\"t\",\"signatures\":[{\"sig\":\"AQ==\"}]},\"messageSignature\":null,"
      "\"futureField\":{\"x\":1}}";
  Bundle b = parsed(json);
  CHECK(b.certificates_der == std::vector<std::string>{"leaf"});
  CHECK(b.envelope.payload_type == "t");
  CHECK(b.content == Bundle::Content::dsse);
}

TEST_CASE("bundle size cap") {
  std::string big = bundle(kV03, kCert, entry(proof()),
                           R"("messageSignature":{"signature":")" +
                               b64(std::string(3 * 1024 * 1024 + 100, 's')) + "\"}");
  auto r = parse_bundle(big);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
}

TEST_CASE("bundle real vectors parse") {
  Bundle publish = parsed(read_vector("sigstore-go-bundle-publish.json"));
  CHECK(publish.minor_version == 1);
  CHECK(publish.has_public_key);
  CHECK(publish.public_key_hint == "SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA");
  REQUIRE(publish.tlog_entries.size() == 1);
  CHECK(publish.tlog_entries[0].log_index == 18300940);
  CHECK(publish.tlog_entries[0].integrated_time == 1681839916);
  CHECK(publish.tlog_entries[0].kind == "intoto");
  CHECK_FALSE(publish.tlog_entries[0].inclusion_proof.has_value());
  CHECK(publish.content == Bundle::Content::dsse);
  CHECK(publish.envelope.signatures[0].keyid == publish.public_key_hint);

  Bundle v02 = parsed(read_vector("sigstore-go-bundle-v02.json"));
  CHECK(v02.minor_version == 2);
  CHECK(v02.certificates_der.size() == 1);
  CHECK(v02.content == Bundle::Content::message_signature);
  CHECK(hex_encode(v02.message_digest) ==
        "a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf");
  REQUIRE(v02.tlog_entries.size() == 1);
  CHECK(v02.tlog_entries[0].signed_entry_timestamp.empty());
  CHECK(v02.tlog_entries[0].inclusion_proof->hashes.size() == 10);

  Bundle v03 = parsed(read_vector("conformance-rekor2-dsse-happy-path.sigstore.json"));
  CHECK(v03.minor_version == 3);
  CHECK(v03.media_type == kBundleMediaTypeV03);
  CHECK(v03.certificates_der.size() == 1);
  CHECK(v03.rfc3161_timestamps.size() == 1);
  REQUIRE(v03.tlog_entries.size() == 1);
  CHECK(v03.tlog_entries[0].kind == "dsse");
  CHECK(v03.tlog_entries[0].version == "0.0.2");
  CHECK(v03.tlog_entries[0].log_index == 7131);
  CHECK(v03.content == Bundle::Content::dsse);
  CHECK(v03.envelope.signatures[0].keyid.empty());

  // A v0.3 bundle turned into v0.1 lacks the promises v0.1 needs.
  std::string as_v01 = read_vector("conformance-rekor2-dsse-happy-path.sigstore.json");
  as_v01.replace(as_v01.find(kV03), kV03.size(), kV01);
  CHECK_FALSE(parse_bundle(as_v01).ok());
}
