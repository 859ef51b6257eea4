// Fuzzes the readers of Azure's answers: AAD's and IMDS's token bodies, JWT claims, ACR's
// exchange and token bodies, Key Vault's key bundles, JWKs and error answers, and azurekms://
// references (a policy's). Each either fails cleanly or keeps what its header promises.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "azure/jwk.hpp"
#include "azure/tokens.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sigil::azure;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const SysTime now = SysTime(std::chrono::seconds(1'800'000'000));
  if (auto t = parse_aad_token_response(in, now); t.ok()) {
    if (t->access_token.empty()) __builtin_trap();
  }
  (void)jwt_expiry(in);
  (void)jwt_tenant(in);
  (void)base64url_decode(in);
  (void)aad_error_message(in);
  (void)acr_error_message(in);
  if (key_vault_inner_error(in).size() > 200) __builtin_trap();  // printable, cut at 100
  if (auto r = parse_acr_refresh_token(in); r.ok() && r->empty()) __builtin_trap();
  if (auto a = parse_acr_access_token(in); a.ok() && a->empty()) __builtin_trap();
  (void)public_key_from_jwk(in);
  if (auto k = parse_key_vault_key(in); k.ok()) {
    // version is kid's last segment: never longer than kid.
    if (k->version.size() > k->kid.size()) __builtin_trap();
  }
  if (auto ref = parse_azurekms(in); ref.ok()) {
    if (ref->vault.empty() || ref->key.empty() || ref->target().front() != '/') __builtin_trap();
  }
  return 0;
}
