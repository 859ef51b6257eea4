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

TEST_CASE("json_depth_ok: braces count and a closer with nothing open buys no depth") {
  CHECK(json_depth_ok("{[{}]}", 3));
  CHECK_FALSE(json_depth_ok("{[{[]}]}", 3));
  CHECK_FALSE(json_depth_ok(std::string(100000, '{'), 64));
  for (const char* closer : {"]", "}"}) {
    INFO("closer " << closer);
    CHECK(json_depth_ok(std::string(closer) + "[[[]]]", 3));
    CHECK_FALSE(json_depth_ok(std::string(closer) + "[[[[]]]]", 3));
  }
}

TEST_CASE("append_json_string reads nothing past the end of a view") {
  // Views into a longer buffer: the bytes after the view would complete a word of plain bytes
  // or a UTF-8 sequence, and must neither be read nor copied.
  const std::string plain(24, 'p');
  for (size_t len = 0; len < plain.size(); ++len) {
    INFO("length " << len);
    CHECK(lit(std::string_view(plain.data(), len)) == "\"" + std::string(len, 'p') + "\"");
  }
  const std::string fffd = "\xef\xbf\xbd";
  for (const std::string seq : {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x94\x91"}) {
    REQUIRE(lit(seq) == "\"" + seq + "\"");
    for (size_t cut = 1; cut < seq.size(); ++cut) {
      INFO("sequence of " << seq.size() << " cut at " << cut);
      std::string expected = "\"";
      for (size_t i = 0; i < cut; ++i) expected += fffd;
      CHECK(lit(std::string_view(seq.data(), cut)) == expected + "\"");
    }
  }
}

TEST_CASE("append_json_string replaces overlong, out-of-range and broken sequences byte by byte") {
  const std::string fffd = "\xef\xbf\xbd";
  auto replaced = [&](size_t n) {
    std::string s = "\"";
    for (size_t i = 0; i < n; ++i) s += fffd;
    return s + "\"";
  };
  CHECK(lit("\xc1\xbf") == replaced(2));                     // overlong two-byte
  CHECK(lit("\xe0\x80\xa2") == replaced(3));                 // overlong three-byte ('"')
  CHECK(lit("\xe0\x9f\xbf") == replaced(3));                 // overlong three-byte, highest
  CHECK(lit("\xf0\x80\x80\xa2") == replaced(4));             // overlong four-byte
  CHECK(lit("\xf0\x8f\xbf\xbf") == replaced(4));             // overlong four-byte, highest
  CHECK(lit("\xf5\x80\x80\x80") == replaced(4));             // lead byte past U+10FFFF
  CHECK(lit("\xf7\xbf\xbf\xbf") == replaced(4));             // lead byte past U+10FFFF
  CHECK(lit("\xc3\xc0") == replaced(2));                     // a lead byte is no continuation
  CHECK(lit("\xe2\x82\xc0") == replaced(3));                 // nor in the third place
  CHECK(lit("\xe0\xa0\x80") == "\"\xe0\xa0\x80\"");          // the lowest three-byte is fine
  CHECK(lit("\xf0\x90\x80\x80") == "\"\xf0\x90\x80\x80\"");  // the lowest four-byte too
}
