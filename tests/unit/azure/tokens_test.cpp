// azure/tokens.hpp: AAD and IMDS answers (numbers as strings), JWT claims, ACR forms.
#include <catch2/catch.hpp>

#include "azure/tokens.hpp"
#include "common/encoding.hpp"

using namespace sigil;
using namespace sigil::azure;
using namespace std::chrono;

namespace {

std::string b64url(const std::string& s) {
  std::string b = base64_encode(s);
  for (char& c : b) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!b.empty() && b.back() == '=') b.pop_back();
  return b;
}

std::string jwt(const std::string& claims) {
  return b64url(R"({"alg":"none"})") + "." + b64url(claims) + ".";
}

const SysTime kNow = SysTime(seconds(1700000000));

}  // namespace

TEST_CASE("tokens: AAD v2.0 answer: expires_in as a number") {
  auto t = parse_aad_token_response(
      R"({"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":")" +
          jwt(R"({"tid":"tenant-1","exp":1})") + "\"}",
      kNow);
  REQUIRE(t.ok());
  CHECK(t->expires_at == kNow + seconds(3599));
  CHECK(t->tenant == "tenant-1");
}

TEST_CASE("tokens: IMDS answer: numbers as strings, expires_on wins") {
  auto t = parse_aad_token_response(
      R"({"access_token":"opaque","refresh_token":"","expires_in":"86399",)"
      R"("expires_on":"1700003600","not_before":"1699999999","resource":"https://containerregistry.azure.net","token_type":"Bearer"})",
      kNow);
  REQUIRE(t.ok());
  CHECK(t->expires_at == SysTime(seconds(1700003600)));
  CHECK(t->access_token == "opaque");
  auto only_in = parse_aad_token_response(R"({"access_token":"a","expires_in":"60"})", kNow);
  REQUIRE(only_in.ok());
  CHECK(only_in->expires_at == kNow + seconds(60));
}

TEST_CASE("tokens: answers without a token or an expiry are errors, never tokens") {
  auto body = GENERATE(as<std::string>{}, "", "[]", "{}", R"({"access_token":""})",
                       R"({"access_token":"opaque"})",  // no expiry anywhere
                       R"({"access_token":"opaque","expires_in":"soon"})",
                       R"({"access_token":5,"expires_in":60})");
  CAPTURE(body);
  CHECK_FALSE(parse_aad_token_response(body, kNow).ok());
}

// An expiry is kept as nanoseconds since 1970 (SysTime): until 2262. A hostile or broken token
// endpoint's number past that must be an error, never an overflow (undefined behaviour, and a
// token that looks valid forever or expired at once). The sanitizer build aborts on overflow.
TEST_CASE("tokens: an expiry past 2100 or a lifetime past ten years is an error, not an overflow") {
  struct Case {
    std::string body, error;
  };
  auto c =
      GENERATE(Case{R"({"access_token":"a","expires_on":99999999999})",
                    "expires_on 99999999999 is past 2100"},
               Case{R"({"access_token":"a","expires_on":"9223372036854775807"})", "is past 2100"},
               Case{R"({"access_token":"a","expires_on":18446744073709551615})", "is past 2100"},
               Case{R"({"access_token":"a","expires_on":4102444801})", "is past 2100"},
               Case{R"({"access_token":"a","expires_in":1e300})", "is longer than ten years"},
               Case{R"({"access_token":"a","expires_in":9223372036})", "is longer than ten years"},
               Case{R"({"access_token":"a","expires_in":316224001})", "is longer than ten years"});
  CAPTURE(c.body);
  auto t = parse_aad_token_response(c.body, kNow);
  REQUIRE_FALSE(t.ok());
  CHECK(t.error().code == Errc::parse_error);
  CHECK(t.error().message.find(c.error) != std::string::npos);

  // At the bounds: taken as they are.
  auto latest = parse_aad_token_response(R"({"access_token":"a","expires_on":4102444800})", kNow);
  REQUIRE(latest.ok());
  CHECK(latest->expires_at == SysTime(seconds(4102444800)));
  auto longest = parse_aad_token_response(R"({"access_token":"a","expires_in":316224000.9})", kNow);
  REQUIRE(longest.ok());
  CHECK(longest->expires_at == kNow + seconds(316224000));
  // A JWT's exp: the same bound (ACR's refresh and access tokens are JWTs).
  CHECK(jwt_expiry(jwt(R"({"exp":4102444800})")).ok());
  auto far = jwt_expiry(jwt(R"({"exp":1e19})"));
  REQUIRE_FALSE(far.ok());
  CHECK(far.error().message.find("is past 2100") != std::string::npos);
  CHECK_FALSE(jwt_expiry(jwt(R"({"exp":4102444801})")).ok());
}

TEST_CASE("tokens: a JWT's exp and tid, read without verification") {
  auto e = jwt_expiry(jwt(R"({"exp":1700000300,"tid":"t"})"));
  REQUIRE(e.ok());
  CHECK(*e == SysTime(seconds(1700000300)));
  CHECK(jwt_tenant(jwt(R"({"tid":"abc"})")) == "abc");
  CHECK_FALSE(jwt_expiry("opaque").ok());
  CHECK_FALSE(jwt_expiry("a.b.c").ok());
  CHECK_FALSE(jwt_expiry(jwt(R"({"nbf":1})")).ok());
  CHECK_FALSE(jwt_expiry(jwt(R"({"exp":"x"})")).ok());
  CHECK(jwt_tenant("garbage") == "");
}

TEST_CASE("tokens: error messages quote error and description, never a token") {
  CHECK(aad_error_message(R"({"error":"invalid_client","error_description":"AADSTS700024"})") ==
        "invalid_client: AADSTS700024");
  CHECK(acr_error_message(R"({"errors":[{"code":"UNAUTHORIZED","message":"bad"}]})") ==
        "UNAUTHORIZED: bad");
  CHECK(aad_error_message("not json") == "");
  CHECK(aad_error_message(R"({"error":{"code":"Unauthorized","message":"AKV10000"}})") ==
        "Unauthorized: AKV10000");

  // The endpoints' text reaches logs, Events and denials: control bytes are replaced and the
  // length is capped, whatever the endpoint sends.
  const std::string forged = R"(line1\r\nlevel=warn msg=\"forged\"\u001b[31m)";
  for (const std::string& m :
       {aad_error_message(R"({"error":"invalid_client","error_description":")" + forged + "\"}"),
        acr_error_message(R"({"errors":[{"code":"DENIED","message":")" + forged + "\"}]}")}) {
    CAPTURE(m);
    CHECK(m.find("line1") != std::string::npos);
    CHECK(m.find_first_of("\r\n\x1b") == std::string::npos);
  }
  const std::string longer = std::string(5000, 'x');
  for (const std::string& m :
       {aad_error_message(R"({"error":"e","error_description":")" + longer + "\"}"),
        acr_error_message(R"({"errors":[{"code":"E","message":")" + longer + "\"}]}")}) {
    CHECK(m.size() >= 200);
    CHECK(m.size() <= 203);  // 200 bytes and an ellipsis (3)
  }
  // Shapes ACR does not send are no message, never an exception.
  for (const std::string body : {R"({"errors":{"0":{"code":"E"}}})", R"({"errors":{"code":"E"}})",
                                 R"({"errors":"E"})", R"({"errors":[]})", R"({"errors":["E"]})"}) {
    CAPTURE(body);
    CHECK(acr_error_message(body).empty());
  }
}

TEST_CASE("tokens: forms and scopes") {
  auto f = acr_exchange_form("r.azurecr.io", "tid", "AAD");
  REQUIRE(f.size() == 4);
  CHECK(f[0] == std::make_pair(std::string("grant_type"), std::string("access_token")));
  CHECK(acr_exchange_form("r", "", "AAD").size() == 3);  // tenant left out when unknown
  CHECK(acr_pull_scope("team/app") == "repository:team/app:pull");
  CHECK(resource_of_scope(kAcrScope) == "https://containerregistry.azure.net");
  CHECK(resource_of_scope("https://x") == "https://x");
  CHECK(parse_acr_refresh_token(R"({"refresh_token":"rt"})").value() == "rt");
  CHECK_FALSE(parse_acr_refresh_token(R"({"access_token":"at"})").ok());
  CHECK(parse_acr_access_token(R"({"access_token":"at"})").value() == "at");
}

TEST_CASE("tokens: base64url") {
  CHECK(base64url_decode(b64url("\xff\xfe\xfd hello")).value() == "\xff\xfe\xfd hello");
  CHECK_FALSE(base64url_decode("ab+c").ok());
  CHECK_FALSE(base64url_decode("ab c").ok());
  CHECK_FALSE(base64url_decode("a").ok());
}

TEST_CASE("tokens: Key Vault's inner error code, the innermost one") {
  CHECK(key_vault_inner_error(
            R"({"error":{"code":"Forbidden","message":"Operation get is not )"
            R"(allowed on a disabled key.","innererror":{"code":"KeyDisabled"}}})") ==
        "KeyDisabled");
  CHECK(key_vault_inner_error(R"({"error":{"code":"Forbidden","innerError":{"code":"A",)"
                              R"("innererror":{"code":"ForbiddenByRbac"}}}})") ==
        "ForbiddenByRbac");
  for (const std::string body :
       {"", "not json", R"({"error":"x"})", R"({"error":{"code":"Forbidden"}})",
        R"({"error":{"innererror":"KeyDisabled"}})", R"({"innererror":{"code":"KeyDisabled"}})"}) {
    CAPTURE(body);
    CHECK(key_vault_inner_error(body).empty());
  }
}
