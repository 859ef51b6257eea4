// Fuzzes registry::parse_docker_config (docker config.json / .dockerconfigjson bytes) and the
// host lookup that follows it.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "registry/docker_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto cfg = sigil::registry::parse_docker_config(in);
  if (cfg.ok()) {
    for (const auto& [host, cred] : cfg->auths) {
      // Every stored key is already normalized and must be found again exactly.
      if (sigil::registry::normalize_registry_host(host) != host) __builtin_trap();
      if (!cfg->find(host)) __builtin_trap();
      (void)cred;
    }
    (void)cfg->find(in.substr(0, 64));
  }
  (void)sigil::registry::normalize_registry_host(in);
  return 0;
}
