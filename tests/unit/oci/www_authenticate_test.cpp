#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "oci/www_authenticate.hpp"

using sigil::Errc;
using sigil::oci::parse_www_authenticate;

namespace {

using Params = std::map<std::string, std::string>;

struct Expected {
  std::string scheme;
  Params params;
  std::string token68;
};

struct Case {
  std::string name, header;
  std::vector<Expected> want;
};

}  // namespace

TEST_CASE("parse_www_authenticate parses challenges", "[oci][www_authenticate]") {
  const auto c = GENERATE_REF(values<Case>({
      {"Docker Hub",
       R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull")",
       {{"bearer",
         {{"realm", "https://auth.docker.io/token"},
          {"service", "registry.docker.io"},
          {"scope", "repository:library/nginx:pull"}},
         ""}}},
      {"ACR",
       R"(Bearer realm="https://myacr.azurecr.io/oauth2/token",service="myacr.azurecr.io",scope="repository:team/app:pull")",
       {{"bearer",
         {{"realm", "https://myacr.azurecr.io/oauth2/token"},
          {"service", "myacr.azurecr.io"},
          {"scope", "repository:team/app:pull"}},
         ""}}},
      {"ACR /v2/ with no scope",
       R"(Bearer realm="https://myacr.azurecr.io/oauth2/token",service="myacr.azurecr.io")",
       {{"bearer",
         {{"realm", "https://myacr.azurecr.io/oauth2/token"}, {"service", "myacr.azurecr.io"}},
         ""}}},
      {"distribution registry with error param",
       R"(Bearer realm="http://127.0.0.1:5001/auth",service="Docker registry",scope="repository:a:pull",error="insufficient_scope")",
       {{"bearer",
         {{"realm", "http://127.0.0.1:5001/auth"},
          {"service", "Docker registry"},
          {"scope", "repository:a:pull"},
          {"error", "insufficient_scope"}},
         ""}}},
      {"Basic", R"(Basic realm="Registry Realm")", {{"basic", {{"realm", "Registry Realm"}}, ""}}},
      {"Basic with charset",
       R"(Basic realm="x", charset="UTF-8")",
       {{"basic", {{"realm", "x"}, {"charset", "UTF-8"}}, ""}}},
      {"two challenges",
       R"(Basic realm="x", Bearer realm="y")",
       {{"basic", {{"realm", "x"}}, ""}, {"bearer", {{"realm", "y"}}, ""}}},
      {"two challenges with several params",
       R"(Bearer realm="a",service="b", Basic realm="c",charset="UTF-8")",
       {{"bearer", {{"realm", "a"}, {"service", "b"}}, ""},
        {"basic", {{"realm", "c"}, {"charset", "UTF-8"}}, ""}}},
      {"case-insensitive names",
       R"(BEARER Realm="R",SERVICE="S")",
       {{"bearer", {{"realm", "R"}, {"service", "S"}}, ""}}},
      {"whitespace everywhere",
       "  Bearer \t realm = \"a\" ,\tservice=\"b\"  ,  ",
       {{"bearer", {{"realm", "a"}, {"service", "b"}}, ""}}},
      {"empty list elements",
       R"(,, Basic realm="x" ,, , Bearer realm="y",,)",
       {{"basic", {{"realm", "x"}}, ""}, {"bearer", {{"realm", "y"}}, ""}}},
      {"token values",
       R"(Bearer realm=x,error=invalid_token)",
       {{"bearer", {{"realm", "x"}, {"error", "invalid_token"}}, ""}}},
      {"escapes",
       R"(Bearer realm="a\"b\\c\d",service="")",
       {{"bearer", {{"realm", R"(a"b\cd)"}, {"service", ""}}, ""}}},
      {"comma inside quotes",
       R"(Bearer scope="repository:a:pull,push",realm="r")",
       {{"bearer", {{"scope", "repository:a:pull,push"}, {"realm", "r"}}, ""}}},
      {"scheme only", "Negotiate", {{"negotiate", {}, ""}}},
      {"schemes only", "Negotiate, NTLM", {{"negotiate", {}, ""}, {"ntlm", {}, ""}}},
      {"token68",
       "Negotiate YIIBhAYGKwYBBQUCoIIBeDCCAXSgMDAu+/==",
       {{"negotiate", {}, "YIIBhAYGKwYBBQUCoIIBeDCCAXSgMDAu+/=="}}},
      {"token68 then challenge",
       R"(Foo abc=, Bearer realm="r")",
       {{"foo", {}, "abc="}, {"bearer", {{"realm", "r"}}, ""}}},
      // Grammatically token68, not a parameter with an empty value (RFC 7235 section 2.1).
      {"token68 look-alike", "Bearer realm=", {{"bearer", {}, "realm="}}},
      {"token68 look-alike padded", "Bearer realm==", {{"bearer", {}, "realm=="}}},
      {"obs-text in quotes",
       "Basic realm=\"caf\xc3\xa9\"",
       {{"basic", {{"realm", "caf\xc3\xa9"}}, ""}}},
  }));
  CAPTURE(c.name, c.header);
  const auto r = parse_www_authenticate(c.header);
  REQUIRE(r.ok());
  REQUIRE(r->size() == c.want.size());
  for (std::size_t i = 0; i < c.want.size(); ++i) {
    CHECK((*r)[i].scheme == c.want[i].scheme);
    CHECK((*r)[i].params == c.want[i].params);
    CHECK((*r)[i].token68 == c.want[i].token68);
  }
}

TEST_CASE("parse_www_authenticate rejects malformed headers", "[oci][www_authenticate]") {
  const auto header = GENERATE_REF(values<std::string>({
      "",
      "   ",
      ",,,",
      R"(Bearer realm="unterminated)",
      R"(Bearer realm="x",service="y)",
      R"(Bearer realm="ends in backslash\)",
      "Bearer realm=\"a\x01b\"",
      "Bearer realm=\"a\x7f\"",
      "Bearer realm=\"a\\\x01\"",
      "Bearer realm=\"a\"\r\nX-Injected: 1",
      "Bearer realm=\"a\nb\"",
      std::string("Bearer realm=\"a\0b\"", 18),
      "Bearer realm=,service=\"x\"",
      R"(Bearer realm="a" service="b")",
      R"(Bearer realm="a"service="b")",
      R"(Bearer realm="a" junk)",
      R"(Bearer ="a")",
      R"(Bearer realm "a")",
      R"(Bearer realm=@)",
      R"(Bearer realm=a b)",
      R"("Bearer" realm="a")",
      R"(=Bearer)",
      R"(Bearer@ realm="x")",
      R"(Bearer, realm="x")",
      R"(Bearer realm="a",)" + std::string(17000, 'x'),
      // A parameter named twice: which realm gets the credentials?
      R"(Bearer realm="https://good.example/token",realm="https://evil.example/token")",
      R"(Bearer realm="a",REALM="b")",
  }));
  CAPTURE(header);
  const auto r = parse_www_authenticate(header);
  REQUIRE_FALSE(r.ok());
  CHECK_FALSE(r.error().message.empty());
}

TEST_CASE("parse_www_authenticate duplicate realm is a parse error, not last-wins",
          "[oci][www_authenticate]") {
  const auto r = parse_www_authenticate(R"(Bearer realm="a", realm="b")");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::parse_error);
  CHECK_THAT(r.error().message, Catch::Contains("realm"));
  // The same name in two different challenges is fine.
  const auto ok = parse_www_authenticate(R"(Basic realm="a", Bearer realm="b")");
  REQUIRE(ok.ok());
  CHECK(ok->size() == 2);
}

TEST_CASE("parse_www_authenticate size cap", "[oci][www_authenticate]") {
  const std::string big = "Bearer realm=\"" + std::string(17000, 'a') + "\"";
  const auto r = parse_www_authenticate(big);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::too_large);
  CHECK(parse_www_authenticate("Bearer realm=\"" + std::string(16000, 'a') + "\"").ok());
}
