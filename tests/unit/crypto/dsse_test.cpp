#include <catch2/catch.hpp>

#include <string>

#include "common/encoding.hpp"
#include "crypto/dsse.hpp"
#include "crypto/keys.hpp"
#include "pki.hpp"

using namespace sigil;
using namespace sigil::crypto;
using sigil::test::cached_key;

namespace {

const std::string kStatement =
    R"({"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"registry.example/app",)"
    R"("digest":{"sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}],)"
    R"("predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{"b":[1,2],"a":"x"}})";

std::string envelope(std::string_view payload, std::string_view sig_b64,
                     std::string_view extra = "") {
  return "{\"payloadType\":\"application/vnd.in-toto+json\",\"payload\":\"" +
         base64_encode(payload) + "\",\"signatures\":[{\"keyid\":\"\",\"sig\":\"" +
         std::string(sig_b64) + "\"}]" + std::string(extra) + "}";
}

}  // namespace

TEST_CASE("DSSE PAE is the DSSEv1 encoding") {
  // The example from the DSSE protocol description.
  CHECK(dsse_pae("http://example.com/HelloWorld", "hello world") ==
        "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
  CHECK(dsse_pae("", "") == "DSSEv1 0  0 ");
  // Lengths count bytes, not characters.
  CHECK(dsse_pae("t", "\xC3\xA9") == "DSSEv1 1 t 2 \xC3\xA9");
  std::string with_nul("a\0b", 3);
  CHECK(dsse_pae("x", with_nul) == std::string("DSSEv1 1 x 3 a\0b", 16));
}

TEST_CASE("a DSSE envelope signature verifies over the PAE, not the envelope") {
  const auto& k = cached_key("P-256");
  auto pub = PublicKey::from_pem(k.public_pem());
  REQUIRE(pub.ok());
  std::string pae = dsse_pae(kInTotoPayloadType, kStatement);
  std::string sig = k.sign(pae, EVP_sha256());
  auto env = parse_dsse_envelope(envelope(kStatement, base64_encode(sig)));
  REQUIRE(env.ok());
  CHECK(env->payload_type == kInTotoPayloadType);
  CHECK(env->payload == kStatement);
  REQUIRE(env->signatures.size() == 1);
  CHECK(env->signatures[0].keyid.empty());
  CHECK(env->signatures[0].sig == sig);
  CHECK(pub->verify(dsse_pae(env->payload_type, env->payload), env->signatures[0].sig).ok());
  CHECK_FALSE(pub->verify(env->payload, env->signatures[0].sig).ok());
}

TEST_CASE("DSSE envelopes: several signatures, keyids, null keyid, unknown members") {
  auto env = parse_dsse_envelope(
      R"({"payload":"aGk=","payloadType":"text/plain","signatures":[{"sig":"AQI=","keyid":"k1"},)"
      R"({"sig":"AwQ=","keyid":null}],"extra":{"ignored":true}})");
  REQUIRE(env.ok());
  CHECK(env->payload == "hi");
  REQUIRE(env->signatures.size() == 2);
  CHECK(env->signatures[0].keyid == "k1");
  CHECK(env->signatures[0].sig == "\x01\x02");
  CHECK(env->signatures[1].keyid.empty());
  // An empty payload is valid base64 for no bytes.
  CHECK(parse_dsse_envelope(R"({"payload":"","payloadType":"t","signatures":[{"sig":"AQ=="}]})")
            .ok());
}

TEST_CASE("DSSE envelopes are parsed strictly") {
  struct Row {
    const char* why;
    std::string in;
    const char* names;
  };
  auto row = GENERATE(
      Row{"not JSON", "{", "not valid JSON"}, Row{"not an object", "[]", "must be a JSON object"},
      Row{"missing payload", R"({"payloadType":"t","signatures":[{"sig":"AQ=="}]})", "payload"},
      Row{"missing payloadType", R"({"payload":"","signatures":[{"sig":"AQ=="}]})", "payloadType"},
      Row{"empty payloadType", R"({"payload":"","payloadType":"","signatures":[{"sig":"AQ=="}]})",
          "payloadType"},
      Row{"payload not a string",
          R"({"payload":1,"payloadType":"t","signatures":[{"sig":"AQ=="}]})", "payload"},
      Row{"bad base64 payload",
          R"({"payload":"a","payloadType":"t","signatures":[{"sig":"AQ=="}]})", "payload"},
      Row{"unpadded base64 (go-securesystemslib pads)",
          R"({"payload":"aGk","payloadType":"t","signatures":[{"sig":"AQ=="}]})", "payload"},
      Row{"base64 with a tab",
          R"({"payload":"aGk=\t","payloadType":"t","signatures":[{"sig":"AQ=="}]})", "payload"},
      Row{"base64 with whitespace",
          R"({"payload":"aG k=","payloadType":"t","signatures":[{"sig":"AQ=="}]})", "payload"},
      Row{"no signatures", R"({"payload":"","payloadType":"t"})", "signatures"},
      Row{"empty signatures", R"({"payload":"","payloadType":"t","signatures":[]})", "signatures"},
      Row{"signatures not an array", R"({"payload":"","payloadType":"t","signatures":{}})",
          "signatures"},
      Row{"signature not an object", R"({"payload":"","payloadType":"t","signatures":["x"]})",
          "signatures[0]"},
      Row{"missing sig", R"({"payload":"","payloadType":"t","signatures":[{"keyid":""}]})",
          "signatures[0].sig"},
      Row{"empty sig", R"({"payload":"","payloadType":"t","signatures":[{"sig":""}]})",
          "signatures[0].sig"},
      Row{"bad sig base64", R"({"payload":"","payloadType":"t","signatures":[{"sig":"!!!!"}]})",
          "signatures[0].sig"},
      Row{"keyid not a string",
          R"({"payload":"","payloadType":"t","signatures":[{"sig":"AQ==","keyid":3}]})", "keyid"},
      Row{"duplicate key",
          R"({"payload":"","payload":"aGk=","payloadType":"t","signatures":[{"sig":"AQ=="}]})",
          "duplicate key"},
      Row{"proto spelling outside a bundle",
          R"({"payload":"","payload_type":"t","signatures":[{"sig":"AQ=="}]})", "payloadType"});
  INFO(row.why);
  auto env = parse_dsse_envelope(row.in);
  REQUIRE_FALSE(env.ok());
  CHECK(env.error().code == Errc::parse_error);
  CHECK(env.error().message.find(row.names) != std::string::npos);
  CHECK(env.error().message.rfind("DSSE envelope", 0) == 0);
}

TEST_CASE("DSSE envelopes over 4 MiB are too large") {
  std::string big = envelope(std::string(3 * 1024 * 1024 + 1, 'x'), "AQ==");
  auto env = parse_dsse_envelope(big);
  REQUIRE_FALSE(env.ok());
  CHECK(env.error().code == Errc::too_large);
}

TEST_CASE("in-toto statements: v1 and v0.1, subjects, predicate") {
  auto st = parse_in_toto_statement(kStatement);
  REQUIRE(st.ok());
  CHECK(st->type == "https://in-toto.io/Statement/v1");
  CHECK(st->predicate_type == kCosignSignPredicate);
  REQUIRE(st->subjects.size() == 1);
  CHECK(st->subjects[0].name == "registry.example/app");
  CHECK(st->subjects[0].digest.at("sha256") ==
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  CHECK(st->predicate_json == R"({"a":"x","b":[1,2]})");

  auto v01 = parse_in_toto_statement(
      R"({"_type":"https://in-toto.io/Statement/v0.1","predicateType":"p",)"
      R"("subject":[{"name":"a","digest":{"sha256":"aa"}},{"digest":{"sha512":"bb","sha256":"cc"}}]})");
  REQUIRE(v01.ok());
  CHECK(v01->subjects.size() == 2);
  CHECK(v01->subjects[1].name.empty());
  CHECK(v01->predicate_json.empty());
}

TEST_CASE("statement_binds matches algorithm exactly and hex case-insensitively") {
  auto st = parse_in_toto_statement(
      R"({"_type":"https://in-toto.io/Statement/v1","predicateType":"p",)"
      R"("subject":[{"name":"a","digest":{"sha256":"AbCd"}},{"digest":{"sha512":"ef01"}}]})");
  REQUIRE(st.ok());
  CHECK(statement_binds(*st, "sha256", "abcd"));
  CHECK(statement_binds(*st, "sha256", "ABCD"));
  CHECK(statement_binds(*st, "sha512", "EF01"));
  // A digest copied from another subject or another algorithm does not bind.
  CHECK_FALSE(statement_binds(*st, "sha256", "ef01"));
  CHECK_FALSE(statement_binds(*st, "sha512", "abcd"));
  CHECK_FALSE(statement_binds(*st, "SHA256", "abcd"));
  CHECK_FALSE(statement_binds(*st, "sha256", "abc"));
  CHECK_FALSE(statement_binds(*st, "sha256", "abcde"));
  CHECK_FALSE(statement_binds(*st, "sha256", ""));
}

TEST_CASE("in-toto statements are parsed strictly") {
  struct Row {
    const char* why;
    std::string in;
    const char* names;
  };
  const std::string subj = R"("subject":[{"digest":{"sha256":"aa"}}])";
  auto row = GENERATE_COPY(
      Row{"missing _type", "{\"predicateType\":\"p\"," + subj + "}", "_type"},
      Row{"unknown _type",
          "{\"_type\":\"https://in-toto.io/Statement/v2\",\"predicateType\":\"p\"," + subj + "}",
          "_type"},
      Row{"_type not a string", "{\"_type\":1,\"predicateType\":\"p\"," + subj + "}", "_type"},
      Row{"missing predicateType", "{\"_type\":\"https://in-toto.io/Statement/v1\"," + subj + "}",
          "predicateType"},
      Row{"predicateType not a string",
          "{\"_type\":\"https://in-toto.io/Statement/v1\",\"predicateType\":[]," + subj + "}",
          "predicateType"},
      Row{"missing subject", R"({"_type":"https://in-toto.io/Statement/v1","predicateType":"p"})",
          "subject"},
      Row{"empty subject",
          R"({"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[]})",
          "subject"},
      Row{"subject not an array",
          R"({"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":{}})",
          "subject"},
      Row{"subject entry not an object",
          R"({"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[1]})",
          "subject[0]"},
      Row{"missing digest",
          R"({"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"name":"a"}]})",
          "subject[0].digest"},
      Row{"digest not an object",
          R"({"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"digest":"x"}]})",
          "subject[0].digest"},
      Row{"digest value not a string",
          R"({"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"digest":{"sha256":1}}]})",
          "subject[0].digest"},
      Row{"name not a string",
          R"({"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"name":1,"digest":{}}]})",
          "subject[0].name"},
      Row{"duplicate digest algorithm",
          R"({"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"digest":{"sha256":"aa","sha256":"bb"}}]})",
          "duplicate key"},
      Row{"not an object", "[]", "must be a JSON object"});
  INFO(row.why);
  auto st = parse_in_toto_statement(row.in);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == Errc::parse_error);
  CHECK(st.error().message.find(row.names) != std::string::npos);
}
