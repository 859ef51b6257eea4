#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "common/clock.hpp"
#include "common/encoding.hpp"

using namespace sigil;

TEST_CASE("hex round trip and rejection") {
  CHECK(hex_encode(std::string("\x00\xff\x10", 3)) == "00ff10");
  auto d = hex_decode("00FF10");
  REQUIRE(d.ok());
  CHECK(*d == std::string("\x00\xff\x10", 3));
  CHECK_FALSE(hex_decode("abc").ok());
  CHECK_FALSE(hex_decode("zz").ok());
  CHECK(is_lower_hex("0a9f"));
  CHECK_FALSE(is_lower_hex("0A9F"));
  CHECK_FALSE(is_lower_hex(""));
}

TEST_CASE("base64 matches RFC 4648 vectors") {
  auto [plain, enc] = GENERATE(table<std::string, std::string>({{"", ""},
                                                                {"f", "Zg=="},
                                                                {"fo", "Zm8="},
                                                                {"foo", "Zm9v"},
                                                                {"foob", "Zm9vYg=="},
                                                                {"fooba", "Zm9vYmE="},
                                                                {"foobar", "Zm9vYmFy"}}));
  CHECK(base64_encode(plain) == enc);
  auto d = base64_decode(enc);
  REQUIRE(d.ok());
  CHECK(*d == plain);
}

TEST_CASE("base64 round-trips every length and byte value") {
  for (size_t len = 0; len < 300; ++len) {
    std::string plain;
    for (size_t i = 0; i < len; ++i) plain.push_back(static_cast<char>((i * 37 + len * 11) & 0xff));
    const std::string enc = base64_encode(plain);
    CHECK(enc.size() == (len + 2) / 3 * 4);
    CHECK(enc.find_first_not_of(
              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") ==
          std::string::npos);
    auto back = base64_decode(enc);
    REQUIRE(back.ok());
    CHECK(*back == plain);
  }
}

TEST_CASE("base64 rejects malformed input") {
  auto bad = GENERATE(as<std::string>{}, "Zg=", "Z===", "Zm9v!A==", "Zg==Zg==", "=Zg=", "Zm=v");
  CHECK_FALSE(base64_decode(bad).ok());
}

TEST_CASE("base64 skips PEM whitespace") {
  auto d = base64_decode("Zm9v\nYmFy\r\n");
  REQUIRE(d.ok());
  CHECK(*d == "foobar");
}

TEST_CASE("Result carries value or error") {
  Result<int> ok = 3;
  CHECK(ok.ok());
  CHECK(*ok == 3);
  Result<int> bad = make_error(Errc::parse_error, "nope");
  CHECK_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::parse_error);
  CHECK(std::string(errc_name(Errc::timeout)) == "timeout");
  Status s;
  CHECK(s.ok());
}

TEST_CASE("ManualClock advances") {
  ManualClock c;
  auto t0 = c.now();
  c.advance(std::chrono::seconds(5));
  CHECK(c.now() - t0 == std::chrono::seconds(5));
}

TEST_CASE("short_digest keeps the algorithm and 12 characters, printable only") {
  CHECK(short_digest("sha256:" + std::string(64, 'a')) == "sha256:aaaaaaaaaaaa…");
  CHECK(short_digest("sha256:abc") == "sha256:abc");
  CHECK(short_digest("") == "(empty)");
  CHECK(short_digest("sha256:ab\ncd") == "sha256:ab?cd");
  CHECK(short_digest(std::string(40, 'x')).size() == 19 + std::string("…").size());
}

TEST_CASE("printable makes outside text safe for one line") {
  CHECK(printable("plain text") == "plain text");
  CHECK(printable("a\nb\x1b[31m\x7f") == "a?b?[31m?");
  // Non-ASCII bytes too: a cut UTF-8 sequence would make the JSON response invalid.
  CHECK(printable("\xc3\xa9") == "??");
  CHECK(printable("a\xc3\xa9", 2) == "a?\xE2\x80\xA6");
  CHECK(printable("abcdef", 3) == "abc\xE2\x80\xA6");
  CHECK(printable("abc", 3) == "abc");
}

TEST_CASE("hex_decode and is_lower_hex judge every byte on either side of a pair") {
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    const bool lower = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    const bool hex = lower || (c >= 'A' && c <= 'F');
    INFO("byte " << c);
    const auto first = hex_decode(std::string{ch, '0'});
    const auto second = hex_decode(std::string{'0', ch});
    CHECK(first.ok() == hex);
    CHECK(second.ok() == hex);
    if (hex && first.ok() && second.ok()) {
      CHECK(hex_encode(*first) == ascii_lower(std::string{ch, '0'}));
      CHECK(hex_encode(*second) == ascii_lower(std::string{'0', ch}));
    }
    CHECK(is_lower_hex(std::string{'0', ch}) == lower);
  }
}

TEST_CASE("hex_decode reads nothing past the end of a view") {
  // An odd length is refused before a pair is read: the byte after the view is valid hex here.
  const std::string buffer = "abcd";
  CHECK_FALSE(hex_decode(std::string_view(buffer.data(), 3)).ok());
  CHECK_FALSE(hex_decode(std::string_view(buffer.data(), 1)).ok());
}

TEST_CASE("printable keeps printable ASCII and makes every other byte '?'") {
  for (int c = 0; c < 256; ++c) {
    const std::string one(1, static_cast<char>(c));
    INFO("byte " << c);
    CHECK(printable(one) == (c >= 0x20 && c < 0x7f ? one : std::string("?")));
  }
}

TEST_CASE("short_digest stays short whatever comes before the colon") {
  const std::string tail(64, 'a');
  // Up to 16 characters are an algorithm, kept whole; a longer prefix is cut as a whole digest.
  const std::string alg16(16, 'x');
  CHECK(short_digest(alg16 + ":" + tail) == alg16 + ":" + tail.substr(0, 12) + "…");
  const std::string alg17(17, 'x');
  CHECK(short_digest(alg17 + ":" + tail) == alg17 + ":a…");
  CHECK(short_digest(std::string(30, 'x') + ":" + tail) == std::string(19, 'x') + "…");
}

TEST_CASE("errc_name gives every code a name of its own") {
  // The names are metric labels and words in denials: two codes must never read the same.
  std::set<std::string> names;
  const int last = static_cast<int>(Errc::internal);
  for (int c = 0; c <= last; ++c) names.insert(errc_name(static_cast<Errc>(c)));
  CHECK(names.size() == static_cast<size_t>(last) + 1);
}
