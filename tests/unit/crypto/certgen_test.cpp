#include <catch2/catch.hpp>

#include "crypto/certgen.hpp"

using namespace sigil;
using namespace sigil::crypto;
using namespace std::chrono_literals;

namespace {
const TimePoint t0 = from_unix_seconds(1'800'000'000);
}

TEST_CASE("certgen: a CA signs a serving certificate for the service's names") {
  auto ca = make_ca("sigil webhook CA", t0, t0 + 24h * 3650);
  REQUIRE(ca.ok());
  REQUIRE(check_key_pair(ca->cert_pem, ca->key_pem).ok());
  auto ca_cert = Certificate::from_pem(ca->cert_pem);
  REQUIRE(ca_cert.ok());
  CHECK(ca_cert->is_ca());
  CHECK(ca_cert->is_self_signed());
  CHECK(ca_cert->not_before() == t0);
  CHECK(ca_cert->not_after() == t0 + 24h * 3650);

  const std::vector<std::string> names{"sigil.sigil-system.svc",
                                       "sigil.sigil-system.svc.cluster.local"};
  auto leaf = issue_server_cert(*ca, names, t0, t0 + 24h * 365);
  REQUIRE(leaf.ok());
  REQUIRE(check_key_pair(leaf->cert_pem, leaf->key_pem).ok());
  auto leaf_cert = Certificate::from_pem(leaf->cert_pem);
  REQUIRE(leaf_cert.ok());
  CHECK_FALSE(leaf_cert->is_ca());
  CHECK(check_issued_by(*leaf_cert, *ca_cert).ok());
  auto got = dns_names(*leaf_cert);
  REQUIRE(got.ok());
  CHECK(*got == names);
}

TEST_CASE("certgen: mismatched keys, foreign CAs and bad input are refused") {
  auto ca = make_ca("one", t0, t0 + 24h);
  auto other = make_ca("two", t0, t0 + 24h);
  REQUIRE(ca.ok());
  REQUIRE(other.ok());
  auto leaf = issue_server_cert(*ca, {"a.b.svc"}, t0, t0 + 1h);
  REQUIRE(leaf.ok());

  auto mismatch = check_key_pair(leaf->cert_pem, other->key_pem);
  REQUIRE_FALSE(mismatch.ok());
  CHECK(mismatch.error().code == Errc::verification);
  CHECK(mismatch.error().message.find("PRIVATE") == std::string::npos);

  auto leaf_cert = Certificate::from_pem(leaf->cert_pem);
  auto other_cert = Certificate::from_pem(other->cert_pem);
  REQUIRE(leaf_cert.ok());
  REQUIRE(other_cert.ok());
  CHECK_FALSE(check_issued_by(*leaf_cert, *other_cert).ok());
  // A leaf is no CA: it cannot vouch for another leaf.
  CHECK_FALSE(check_issued_by(*leaf_cert, *leaf_cert).ok());

  CHECK_FALSE(check_key_pair("garbage", ca->key_pem).ok());
  CHECK_FALSE(check_key_pair(ca->cert_pem, "garbage").ok());
  // A CA whose key is not its own, a leaf posing as a CA, no names, inverted validity.
  CHECK_FALSE(issue_server_cert({ca->cert_pem, other->key_pem}, {"a"}, t0, t0 + 1h).ok());
  CHECK_FALSE(issue_server_cert(*leaf, {"a"}, t0, t0 + 1h).ok());
  CHECK_FALSE(issue_server_cert(*ca, {}, t0, t0 + 1h).ok());
  CHECK_FALSE(issue_server_cert(*ca, {"a,DNS:evil"}, t0, t0 + 1h).ok());
  CHECK_FALSE(issue_server_cert(*ca, {"a"}, t0 + 1h, t0).ok());
  CHECK_FALSE(make_ca("", t0, t0 + 1h).ok());
}
