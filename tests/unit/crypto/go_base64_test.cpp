// Base64 exactly as the Go readers of sigstore material decode it (issue 13, point 3): '\r' and
// '\n' are skipped wherever they are, nothing else is; each reader's alphabet and padding rules.
// The expected values follow Go's encoding/base64 (decodeQuantum), protojson's unmarshalBytes
// and go-securesystemslib's DSSE b64Decode.
#include <catch2/catch.hpp>

#include <optional>
#include <string>

#include "common/encoding.hpp"
#include "crypto/bundle.hpp"
#include "crypto/dsse.hpp"
#include "crypto/go_base64.hpp"
#include "crypto/rekor.hpp"
#include "crypto/sigstore.hpp"
#include "crypto/trust_root.hpp"
#include "sigstore_pki.hpp"

using namespace sigil;
using namespace sigil::crypto;
using namespace sigil::crypto::detail;

namespace {

struct Row {
  std::string in;
  std::optional<std::string> out;  // nullopt: Go refuses it
};

void check_rows(Result<std::string> (*decode)(std::string_view), const std::vector<Row>& rows) {
  for (const auto& r : rows) {
    INFO("input \"" + r.in + "\"");
    auto got = decode(r.in);
    if (r.out) {
      REQUIRE(got.ok());
      CHECK(*got == *r.out);
    } else {
      CHECK_FALSE(got.ok());
    }
  }
}

}  // namespace

TEST_CASE("Go StdEncoding: \\r and \\n skipped anywhere, nothing else") {
  check_rows(go_std_base64, {
                                {"", ""},
                                {"aGk=", "hi"},
                                {"aGVsbG8=", "hello"},
                                {"aG\nk=", "hi"},
                                {"aGk\r\n=", "hi"},
                                {"\naGk=\n", "hi"},
                                {"aGVs\r\nbG8=", "hello"},
                                {"YQ=\n=", "a"},  // even between the two pads
                                {"\r\n", ""},
                                {"aG k=", std::nullopt},     // a space
                                {"aGk=\t", std::nullopt},    // a tab
                                {"aGk=\f", std::nullopt},    // a form feed
                                {"aGk=\v", std::nullopt},    // a vertical tab
                                {"aGk", std::nullopt},       // unpadded
                                {"aGk==", std::nullopt},     // one pad too many
                                {"a===", std::nullopt},      // pads where data must be
                                {"aGk=aGk=", std::nullopt},  // a pad before the end
                                {"-_8=", std::nullopt},      // the URL alphabet
                                {std::string("aGk=\0", 5), std::nullopt},
                            });
}

TEST_CASE("protojson bytes: alphabet from '-'/'_', padding from the raw length") {
  check_rows(protojson_base64, {
                                   {"aGk=", "hi"},
                                   {"aGk", "hi"},         // length 3: unpadded
                                   {"-_8=", "\xfb\xff"},  // URL alphabet, padded
                                   {"-_8", "\xfb\xff"},   // URL alphabet, unpadded
                                   {"aGk\n\n", "hi"},     // length 5: unpadded, newlines skipped
                                   {"aGVs\nbG8=\n\n\n", "hello"},  // length 12: padded
                                   // Length 5 makes it unpadded, where '=' is not allowed: the
                                   // wrapped base64 of `base64 file` is refused when its length
                                   // is not a multiple of 4, as protojson refuses it.
                                   {"aG\nk=", std::nullopt},
                                   {"aG\nk", std::nullopt},  // length 4: padded, "aGk" is short
                                   {"a", std::nullopt},      // one character
                                   {"a+_b", std::nullopt},   // '+' outside the URL alphabet
                                   {"aGk= ", std::nullopt},  // a space
                               });
}

TEST_CASE("go-securesystemslib DSSE: standard, else URL-safe, both padded") {
  check_rows(dsse_base64, {
                              {"aGk=", "hi"},
                              {"-_8=", "\xfb\xff"},
                              {"aG\nk=", "hi"},
                              {"aGk", std::nullopt},
                              {"aGk=\t", std::nullopt},
                              {"+_8=", std::nullopt},  // mixed alphabets: neither decoder
                          });
}

TEST_CASE("base64 with line breaks is read where Go reads it") {
  const std::string sig = "a signature";
  // base64("a signature") broken into lines, as JSON text: 20 characters once unescaped (a
  // multiple of 4, so protojson reads it padded).
  const std::string wrapped_sig = "YSBz\\r\\naWdu\\r\\nYXR1cmU=";
  REQUIRE(base64_encode(sig) == "YSBzaWduYXR1cmU=");

  SECTION("a sigstore bundle (protojson bytes)") {
    const std::string bundle =
        R"({"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"k"},"tlogEntries":[]},"messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":")" +
        base64_encode(std::string(32, 'd')) + R"("},"signature":")" + wrapped_sig + R"("}})";
    auto b = parse_bundle(bundle);
    INFO((b ? std::string() : b.error().message));
    REQUIRE(b.ok());
    CHECK(b->signature == sig);
    std::string spaced = bundle;
    spaced.replace(spaced.find("YSBz\\r\\n"), 8, "YSBz  ");
    CHECK_FALSE(parse_bundle(spaced).ok());
  }
  SECTION("a legacy DSSE envelope") {
    auto env =
        parse_dsse_envelope(R"({"payload":"aGVs\nbG8=","payloadType":"t","signatures":[{"sig":")" +
                            wrapped_sig + R"("}]})");
    REQUIRE(env.ok());
    CHECK(env->payload == "hello");
    CHECK(env->signatures[0].sig == sig);
  }
  SECTION("cosign's RFC 3161 annotation (encoding/json []byte: StdEncoding)") {
    Signature s;
    s.signature = sig;
    s.payload = "{}";
    s.rfc3161_json = R"({"SignedRFC3161Timestamp":")" + wrapped_sig + R"("})";
    auto e = entity_from_legacy(s);
    REQUIRE(e.ok());
    REQUIRE(e->rfc3161_timestamps.size() == 1);
    CHECK(e->rfc3161_timestamps[0] == sig);
    s.rfc3161_json = R"({"SignedRFC3161Timestamp":"YSBz aWdu YXR1cmU="})";  // spaces: Go refuses
    CHECK_FALSE(entity_from_legacy(s).ok());
  }
  SECTION("cosign's Rekor bundle annotation") {
    const std::string body = R"({"apiVersion":"0.0.1","kind":"hashedrekord","spec":{}})";
    std::string wrapped_body = base64_encode(body);
    wrapped_body.insert(8, "\\r\\n");
    const std::string ann = R"({"SignedEntryTimestamp":")" + wrapped_sig +
                            R"(","Payload":{"body":")" + wrapped_body +
                            R"(","integratedTime":1,"logIndex":2,"logID":"00"}})";
    auto e = parse_rekor_bundle_annotation(ann);
    INFO((e ? std::string() : e.error().message));
    REQUIRE(e.ok());
    CHECK(e->signed_entry_timestamp == sig);
    CHECK(e->canonicalized_body == body);
  }
  SECTION("a trusted root: \\r\\n skipped, a tab refused") {
    const std::string text =
        sigil::test::read_source_file("data/sigstore/trusted_root.public-good.json");
    const std::string id = "wNI9atQGlz+VWfO6LRygH4QUfY/8W4RFwiT5i5WRgB0=";
    REQUIRE(text.find(id) != std::string::npos);
    std::string wrapped = text;
    wrapped.replace(wrapped.find(id), id.size(),
                    "wNI9atQGlz+VWfO6\\r\\nLRygH4QUfY/8\\r\\nW4RFwiT5i5WRgB0=");
    auto root = parse_trusted_root(wrapped, "t");
    INFO((root ? std::string() : root.error().message));
    REQUIRE(root.ok());
    CHECK(base64_encode(root->tlogs[0].log_id) == id);
    std::string tabbed = text;
    tabbed.replace(tabbed.find(id), id.size(),
                   "wNI9atQGlz+VWfO6\\t\\t\\t\\tLRygH4QUfY/8W4RFwiT5i5WRgB0=");
    CHECK_FALSE(parse_trusted_root(tabbed, "t").ok());
  }
}
