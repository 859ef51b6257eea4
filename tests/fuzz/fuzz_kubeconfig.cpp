// Fuzzes kube::parse_kubeconfig (kubeconfig YAML), with and without a named context and with
// insecure-skip-tls-verify allowed, checking what a successful parse promises.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kube/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (int variant = 0; variant < 2; ++variant) {
    sigil::kube::KubeconfigOptions o;
    o.source = "fuzz";
    o.base_dir = "/base";
    if (variant == 1) {
      o.context = "ctx";
      o.allow_insecure = true;
    }
    auto r = sigil::kube::parse_kubeconfig(in, o);
    if (!r.ok()) {
      if (r.error().message.rfind("fuzz", 0) != 0) __builtin_trap();  // errors name the source
      continue;
    }
    const auto& c = r->config;
    if (c.host.empty() || c.port.empty()) __builtin_trap();
    if (c.insecure_skip_tls_verify && !o.allow_insecure) __builtin_trap();
    if (c.insecure_skip_tls_verify && !c.ca_pem.empty()) __builtin_trap();
    if (c.server_url().rfind("https://", 0) != 0) __builtin_trap();
    const bool cert = !c.client_cert_pem.empty() || !r->files.client_cert_file.path.empty();
    const bool key = !c.client_key_pem.empty() || !r->files.client_key_file.path.empty();
    if (cert != key) __builtin_trap();
  }
  return 0;
}
