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
