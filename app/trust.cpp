#include "app/trust.hpp"

#include <spdlog/spdlog.h>

#include "app/config.hpp"
#include "crypto/trust_root.hpp"

namespace sigil::app {

namespace {
// Entries sigil cannot use were skipped (crypto::TrustedRoot::warnings): say which.
void log_skipped(const crypto::TrustedRoot& root) {
  for (const auto& w : root.warnings) spdlog::warn("{}: {}", root.name, w);
}
}  // namespace

policy::DefaultTrustRoot default_trust_root(std::string file) {
  return [file = std::move(file)]() -> Result<std::shared_ptr<const crypto::TrustedRoot>> {
    if (file.empty()) {
      auto root = crypto::parse_trusted_root(public_good_trusted_root(),
                                             "the sigstore public-good trusted root");
      if (!root) return root.error();
      log_skipped(*root);
      return std::make_shared<const crypto::TrustedRoot>(std::move(*root));
    }
    auto text = read_file(file, 4u << 20);
    if (!text) return make_error(Errc::invalid_argument, "--trusted-root " + text.error().message);
    auto root = crypto::parse_trusted_root(*text, file);
    if (!root) {
      return make_error(Errc::invalid_argument,
                        "--trusted-root " + file + ": " + root.error().message);
    }
    log_skipped(*root);
    return std::make_shared<const crypto::TrustedRoot>(std::move(*root));
  };
}

}  // namespace sigil::app
