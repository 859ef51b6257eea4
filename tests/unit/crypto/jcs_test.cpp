#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <string>

#include "crypto/jcs.hpp"

using namespace sigil;
using namespace sigil::crypto;

namespace {

double from_bits(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

std::string canon(std::string_view in) {
  auto r = canonicalize_json(in);
  INFO(in);
  if (!r) INFO(r.error().message);
  REQUIRE(r.ok());
  return *r;
}

}  // namespace

// RFC 8785 Appendix B: IEEE 754 bit patterns and the text each must take.
TEST_CASE("JCS numbers follow RFC 8785 appendix B") {
  struct Row {
    uint64_t bits;
    const char* text;
  };
  auto row = GENERATE(
      Row{0x0000000000000000, "0"}, Row{0x8000000000000000, "0"}, Row{0x0000000000000001, "5e-324"},
      Row{0x8000000000000001, "-5e-324"}, Row{0x7fefffffffffffff, "1.7976931348623157e+308"},
      Row{0xffefffffffffffff, "-1.7976931348623157e+308"},
      Row{0x4340000000000000, "9007199254740992"}, Row{0xc340000000000000, "-9007199254740992"},
      Row{0x4430000000000000, "295147905179352830000"},
      Row{0x44b52d02c7e14af5, "9.999999999999997e+22"}, Row{0x44b52d02c7e14af6, "1e+23"},
      Row{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
      Row{0x444b1ae4d6e2ef4e, "999999999999999700000"},
      Row{0x444b1ae4d6e2ef4f, "999999999999999900000"}, Row{0x444b1ae4d6e2ef50, "1e+21"},
      Row{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"}, Row{0x3eb0c6f7a0b5ed8d, "0.000001"},
      Row{0x41b3de4355555553, "333333333.3333332"}, Row{0x41b3de4355555554, "333333333.33333325"},
      Row{0x41b3de4355555555, "333333333.3333333"}, Row{0x41b3de4355555556, "333333333.3333334"},
      Row{0x41b3de4355555557, "333333333.33333343"},
      Row{0xbecbf647612f3696, "-0.0000033333333333333333"},
      Row{0x43143ff3c1cb0959, "1424953923781206.2"});
  INFO(row.text);
  CHECK(ecmascript_number(from_bits(row.bits)) == row.text);
  // The same value written in JSON canonicalizes to the same text.
  CHECK(canon(row.text) == row.text);
}

TEST_CASE("JCS numbers: the ECMAScript forms around the exponent boundaries") {
  struct Row {
    const char* in;
    const char* out;
  };
  auto row = GENERATE(Row{"1e21", "1e+21"}, Row{"1e20", "100000000000000000000"},
                      Row{"0.000001", "0.000001"}, Row{"1e-7", "1e-7"}, Row{"0.0000001", "1e-7"},
                      Row{"-0", "0"}, Row{"-0.0", "0"}, Row{"1.0", "1"}, Row{"4.50", "4.5"},
                      Row{"2e-3", "0.002"}, Row{"1E30", "1e+30"}, Row{"123456789", "123456789"},
                      Row{"1.5e300", "1.5e+300"}, Row{"-1.25e-10", "-1.25e-10"}, Row{"1e-400", "0"},
                      // Integers beyond 2^53 are read as the nearest double, as RFC 8785 asks.
                      Row{"9007199254740993", "9007199254740992"},
                      Row{"18446744073709551615", "18446744073709552000"},
                      Row{"123456789012345678901234567890", "1.2345678901234568e+29"});
  INFO(row.in);
  CHECK(canon(row.in) == row.out);
}

TEST_CASE("JCS reproduces the RFC 8785 section 3.2.4 example") {
  const std::string in = R"({
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
})";
  const std::string want =
      "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
      "\"string\":\"\xE2\x82\xAC$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
  CHECK(canon(in) == want);
}

TEST_CASE("JCS sorts members by UTF-16 code units (RFC 8785 section 3.2.3)") {
  const std::string in = R"({
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
})";
  // UTF-8 byte order would put U+FB33 (EF AC B3) before U+1F600 (F0 9F 98 80); UTF-16 puts
  // the surrogate pair D83D DE00 first.
  const std::string want =
      "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xC2\x80\":\"Control\","
      "\"\xC3\xB6\":\"Latin Small Letter O With Diaeresis\",\"\xE2\x82\xAC\":\"Euro Sign\","
      "\"\xF0\x9F\x98\x80\":\"Emoji: Grinning Face\","
      "\"\xEF\xAC\xB3\":\"Hebrew Letter Dalet With Dagesh\"}";
  CHECK(canon(in) == want);
}

TEST_CASE("JCS escapes exactly the characters RFC 8785 section 3.2.2.2 names") {
  CHECK(canon(R"("\u0000\u0001\u001f\b\f\n\r\t")") == R"("\u0000\u0001\u001f\b\f\n\r\t")");
  CHECK(canon(R"("\u007f\/<>&'")") == "\"\x7f/<>&'\"");
  CHECK(canon(R"("\u00e9")") == "\"\xC3\xA9\"");
  CHECK(canon("\"\xC3\xA9\"") == "\"\xC3\xA9\"");
  CHECK(canon(R"("\"\\")") == R"("\"\\")");
}

TEST_CASE("JCS removes whitespace and keeps literals, arrays and nesting") {
  CHECK(canon(" { \"b\" : [ 1 , { \"d\" : null , \"c\" : true } ] , \"a\" : \"x\" } ") ==
        R"({"a":"x","b":[1,{"c":true,"d":null}]})");
  CHECK(canon("[]") == "[]");
  CHECK(canon("{}") == "{}");
  CHECK(canon("\"\"") == "\"\"");
  CHECK(canon("false") == "false");
}

TEST_CASE("JCS output is a fixed point") {
  const std::string in =
      R"({"z":[1e21,0.1,-0,"\u00e9\ud83d\ude00"],"a":{"\u20ac":1,"\ud83d\ude00":2}})";
  std::string once = canon(in);
  CHECK(canon(once) == once);
}

TEST_CASE("JCS rejects what RFC 8785 and strict JSON forbid") {
  struct Row {
    const char* why;
    std::string in;
  };
  auto row = GENERATE(
      Row{"duplicate member", R"({"a":1,"a":2})"},
      Row{"duplicate after unescaping", R"({"a":1,"\u0061":2})"},
      Row{"duplicate in a nested object", R"({"x":{"k":1,"k":1}})"},
      Row{"lone high surrogate", R"("\ud800")"}, Row{"lone low surrogate", R"("\udc00x")"},
      Row{"invalid UTF-8", "\"\xC3\x28\""}, Row{"overlong UTF-8", "\"\xC0\xAF\""},
      Row{"UTF-8 surrogate", "\"\xED\xA0\x80\""}, Row{"raw control character", "\"a\x01\""},
      Row{"number overflow", "1e400"}, Row{"negative overflow", "-1e309"},
      Row{"NaN literal", "NaN"}, Row{"Infinity literal", "Infinity"},
      Row{"trailing garbage", "{} x"}, Row{"two documents", "1 2"}, Row{"comment", "{/* c */}"},
      Row{"byte order mark", "\xEF\xBB\xBF{}"}, Row{"single quotes", "{'a':1}"},
      Row{"trailing comma", "[1,]"}, Row{"empty", ""}, Row{"leading zero", "01"},
      Row{"bare fraction", ".5"});
  INFO(row.why);
  auto r = canonicalize_json(row.in);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::parse_error);
}

TEST_CASE("JCS nesting: 64 levels are accepted, 65 are not") {
  std::string ok = std::string(64, '[') + std::string(64, ']');
  CHECK(canonicalize_json(ok).ok());
  std::string deep = std::string(65, '[') + std::string(65, ']');
  auto r = canonicalize_json(deep);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("nesting") != std::string::npos);
  // A very deep input fails fast, without recursion trouble.
  std::string huge(200000, '[');
  CHECK_FALSE(canonicalize_json(huge).ok());
}

TEST_CASE("JCS refuses inputs over 4 MiB") {
  std::string big = "\"" + std::string(4 * 1024 * 1024, 'a') + "\"";
  auto r = canonicalize_json(big);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
  std::string fits = "\"" + std::string(4 * 1024 * 1024 - 2, 'a') + "\"";
  CHECK(canonicalize_json(fits).ok());
}

TEST_CASE("JCS error messages are ASCII and name the problem") {
  auto r = canonicalize_json("{\"a\":1,\"a\":2}");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("duplicate key \"a\"") != std::string::npos);
  auto bad = canonicalize_json("[\"\xFF\"]");
  REQUIRE_FALSE(bad.ok());
  for (char c : bad.error().message) CHECK(static_cast<unsigned char>(c) < 0x80);
}

TEST_CASE("ecmascript_number has no text for NaN and infinities") {
  CHECK(ecmascript_number(from_bits(0x7fffffffffffffff)).empty());
  CHECK(ecmascript_number(from_bits(0x7ff0000000000000)).empty());
  CHECK(ecmascript_number(from_bits(0xfff0000000000000)).empty());
}
