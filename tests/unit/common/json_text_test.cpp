#include <catch2/catch.hpp>

#include <string>

#include "common/json_text.hpp"

using namespace sigil;

namespace {
std::string lit(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}
}  // namespace

TEST_CASE("append_json_string escapes exactly as RFC 8785 prescribes") {
  CHECK(lit("") == R"("")");
  CHECK(lit("a/b\x7f") == "\"a/b\x7f\"");  // '/' and DEL are not escaped
  CHECK(lit("\"\\") == R"("\"\\")");
  CHECK(lit("\b\f\n\r\t") == R"("\b\f\n\r\t")");
  CHECK(lit(std::string("\x00\x01\x1f", 3)) == R"("\u0000\u0001\u001f")");  // lowercase hex
  CHECK(lit("\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91") == "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91\"");
}

TEST_CASE("append_json_string replaces every byte that starts no well-formed UTF-8 sequence") {
  const std::string fffd = "\xef\xbf\xbd";
  CHECK(lit("\x80") == "\"" + fffd + "\"");
  CHECK(lit("\xc0\x80") == "\"" + fffd + fffd + "\"");                        // overlong
  CHECK(lit("\xed\xa0\x80") == "\"" + fffd + fffd + fffd + "\"");             // surrogate
  CHECK(lit("\xf4\x90\x80\x80") == "\"" + fffd + fffd + fffd + fffd + "\"");  // > U+10FFFF
  CHECK(lit("a\xe2\x82") == "\"a" + fffd + fffd + "\"");                      // cut at the end
  CHECK(lit("\xe2\x82\"") == "\"" + fffd + fffd + "\\\"\"");  // a quote after a cut sequence
  CHECK(lit("\xf4\x8f\xbf\xbf") == "\"\xf4\x8f\xbf\xbf\"");   // U+10FFFF itself is fine
}

TEST_CASE("json_depth_ok counts brackets outside strings only") {
  CHECK(json_depth_ok("[[[]]]", 3));
  CHECK_FALSE(json_depth_ok("[[[[]]]]", 3));
  CHECK(json_depth_ok(R"(["[[[[[[", "\"[[[[["])", 1));
  CHECK_FALSE(json_depth_ok(std::string(100000, '['), 64));
  CHECK(json_depth_ok("]]]]", 1));  // unbalanced closers are the parser's problem
}

TEST_CASE("append_json_string escapes inside and at the ends of plain runs") {
  // The plain-ASCII runs are appended in one piece: what ends a run must still be escaped.
  CHECK(lit("abc\"def\\ghi\njkl") == R"("abc\"def\\ghi\njkl")");
  CHECK(lit("\"abc\"") == R"("\"abc\"")");
  CHECK(lit(std::string("x\x00y", 3)) == R"("x\u0000y")");
  CHECK(lit("caf\xc3\xa9 ok\x1f") == "\"caf\xc3\xa9 ok\\u001f\"");
  const std::string long_plain(5000, 'a');
  CHECK(lit(long_plain + "\"") == "\"" + long_plain + "\\\"\"");
  std::string out = "prefix:";  // appends, keeps what was there
  append_json_string(out, "v");
  CHECK(out == R"(prefix:"v")");
}

TEST_CASE("append_json_string finds every byte that needs a look, at every place in a word") {
  // Plain runs are scanned eight bytes at a time: each byte value, at each offset of the first
  // two words and of the byte-wise tail, must end the run exactly where a byte-wise scan would.
  for (int c = 0; c < 256; ++c) {
    const std::string one(1, static_cast<char>(c));
    const std::string alone = lit(one);
    const std::string inner = alone.substr(1, alone.size() - 2);
    for (size_t at = 0; at < 19; ++at) {
      std::string s(19, 'p');
      s[at] = static_cast<char>(c);
      const std::string expected =
          "\"" + std::string(at, 'p') + inner + std::string(18 - at, 'p') + "\"";
      INFO("byte " << c << " at " << at);
      CHECK(lit(s) == expected);
    }
  }
}
