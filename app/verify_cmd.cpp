// app/verify_cmd.cpp: `sigil verify` (images checked the way the webhook would, for CI and
// policy authors) and `sigil verify-bundle` (a blob against a sigstore bundle, the
// sigstore-conformance protocol). Flags are bound in commands.cpp.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "app/azure_glue.hpp"
#include "app/commands_detail.hpp"
#include "app/config.hpp"
#include "app/trust.hpp"
#include "common/clock.hpp"
#include "crypto/bundle.hpp"
#include "crypto/sigstore.hpp"
#include "registry/http_client.hpp"
#include "verify/engine.hpp"

namespace sigil::app {

namespace asio = boost::asio;

// ---------------------------------------------------------------------------------- verify

int detail::run_verify(const VerifyArgs& a) {
  const bool keyless = !a.identity.empty() || !a.identity_regexp.empty() || !a.issuer.empty() ||
                       !a.issuer_regexp.empty();
  const int modes = (a.policies.empty() ? 0 : 1) + (a.key.empty() ? 0 : 1) + (keyless ? 1 : 0);
  if (modes != 1) {
    return config_error(
        "verify: give exactly one of --policy PATH (repeatable), --key FILE, or "
        "--certificate-identity[-regexp] with --certificate-oidc-issuer[-regexp]");
  }
  auto timeout = parse_duration(a.timeout);
  if (!timeout.ok()) return config_error("--timeout: " + timeout.error().message);
  auto no_match = policy::parse_no_match(a.no_match);
  if (!no_match.ok()) return config_error("--no-match-policy: " + no_match.error().message);
  const auto default_root = default_trust_root(a.trusted_root);

  std::shared_ptr<const policy::PolicySet> policies;
  if (!a.key.empty() || keyless) {
    Result<policy::Policy> p = make_error(Errc::internal, "no policy");
    if (!a.key.empty()) {
      auto pem = read_file(a.key, 1u << 20);
      if (!pem.ok()) return config_error("--key " + pem.error().message);
      p = policy::key_policy(*pem, a.key);
      if (!p.ok()) return config_error("--key " + a.key + ": " + p.error().message);
    } else {
      p = policy::identity_policy(a.identity, a.identity_regexp, a.issuer, a.issuer_regexp,
                                  a.insecure_ignore_sct);
      if (!p.ok()) return config_error(p.error().message);
    }
    std::vector<policy::Policy> v;
    v.push_back(std::move(*p));
    if (auto st = policy::link_trust_roots(v, {}, default_root); !st.ok()) {
      return config_error(st.error().message);
    }
    policies = std::make_shared<const policy::PolicySet>(std::move(v), *no_match, 1);
  } else {
    auto loaded = load_policies(a.policies, *no_match, 1, default_root);
    if (!loaded.ok()) return config_error(loaded.error().message);
    policies = std::move(*loaded);
  }
  auto ropts = registry_options(a.registry);
  if (!ropts.ok()) return config_error(ropts.error().message);

  asio::io_context io;
  verify::EngineOptions eopts;
  if (auto st = attach_azure(*ropts, a.registry, io.get_executor(), false, eopts.keys); !st.ok())
    return config_error(st.error().message);
  registry::HttpClient client(io.get_executor(), std::move(*ropts));
  if (auto st = client.init_status(); !st.ok()) return config_error(st.error().message);
  SystemClock clock;
  eopts.reveal_private_details = true;  // whoever runs this holds the credentials
  verify::Engine engine(client, clock, eopts);
  const auto deadline = std::chrono::steady_clock::now() + *timeout;
  std::vector<std::future<verify::Verdict>> futures;
  for (const auto& image : a.images) {
    futures.push_back(
        asio::co_spawn(io, engine.verify(image, policies, deadline), asio::use_future));
  }
  io.run();

  bool denied = false;
  nlohmann::json out = nlohmann::json::array();
  for (auto& f : futures) {
    verify::Verdict v = f.get();
    denied = denied || v.outcome == verify::Outcome::denied;
    const std::string reason(verify::name(verify::reported_reason(v)));
    const std::string message = verify::message(v);
    const std::vector<std::string> warnings = verify::warning_lines(v);
    if (a.output == "json") {
      out.push_back({{"image", v.image},
                     {"digest", v.digest},
                     {"allowed", v.outcome != verify::Outcome::denied},
                     {"outcome", verify::name(v.outcome)},
                     {"reason", reason},
                     {"policy", v.policy},
                     {"authority", v.authority},
                     {"detail", v.detail},
                     {"message", message},
                     {"warnings", warnings}});
    } else {
      const char* mark = v.outcome == verify::Outcome::denied   ? "DENIED "
                         : v.outcome == verify::Outcome::warned ? "WARNED "
                                                                : "ALLOWED";
      std::printf("%s %s\n", mark, message.c_str());
      if (!reason.empty() && v.outcome == verify::Outcome::denied)
        std::printf("        reason: %s\n", reason.c_str());
      for (const auto& w : warnings) {
        if (w != message) std::printf("        warning: %s\n", w.c_str());
      }
    }
  }
  if (a.output == "json")
    std::printf("%s\n", (a.images.size() == 1 ? out[0] : out).dump(2).c_str());
  return denied ? kExitDenied : kExitAdmitted;
}

// ---------------------------------------------------------------------------- verify-bundle

int detail::run_verify_bundle(const VerifyBundleArgs& a) {
  const bool keyless = !a.identity.empty() || !a.identity_regexp.empty();
  if (keyless == !a.key.empty()) {
    return config_error(
        "verify-bundle: give either --certificate-identity (with --certificate-oidc-issuer) or "
        "--key FILE");
  }
  if (a.staging && a.trusted_root.empty()) {
    return config_error("verify-bundle: sigil ships no staging trust root; pass --trusted-root");
  }
  auto root = default_trust_root(a.trusted_root)();
  if (!root.ok()) return config_error(root.error().message);

  crypto::Artifact artifact;
  artifact.kind = crypto::Artifact::Kind::blob;
  std::error_code ec;
  if (std::filesystem::is_regular_file(a.artifact, ec)) {
    auto bytes = read_file(a.artifact, 1u << 30);
    if (!bytes.ok()) return config_error(bytes.error().message);
    artifact.digest = "sha256:" + crypto::sha256_hex(*bytes);
    artifact.bytes = std::move(*bytes);
  } else if (crypto::parse_artifact_digest(a.artifact)) {
    artifact.digest = a.artifact;  // sha256:, sha384: or sha512:<hex>
  } else {
    return config_error("verify-bundle: " + a.artifact +
                        " is neither a file nor sha256:, sha384: or sha512:<hex>");
  }

  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "sigil: verify-bundle: %s: %s\n", a.bundle.c_str(), why.c_str());
    return kExitDenied;
  };
  auto text = read_file(a.bundle, 4u << 20);
  if (!text.ok()) return fail(text.error().message);
  auto bundle = crypto::parse_bundle(*text);
  if (!bundle.ok()) return fail(bundle.error().message);
  auto entity = crypto::entity_from_bundle(*bundle, a.bundle);
  if (!entity.ok()) return fail(entity.error().message);

  std::vector<policy::Policy> ps;
  if (keyless) {
    auto p = policy::identity_policy(a.identity, a.identity_regexp, a.issuer, a.issuer_regexp,
                                     /*insecure_ignore_sct=*/false);
    if (!p.ok()) return config_error(p.error().message);
    ps.push_back(std::move(*p));
  } else {
    auto pem = read_file(a.key, 1u << 20);
    if (!pem.ok()) return config_error("--key " + pem.error().message);
    auto p = policy::key_policy(*pem, a.key);
    if (!p.ok()) return config_error("--key " + a.key + ": " + p.error().message);
    // As sigstore's verifiers do for bundles: the key's signature must be in the log, and
    // its time proved.
    p->authorities.front().ctlog_present = true;
    p->authorities.front().ctlog_url.clear();
    ps.push_back(std::move(*p));
  }
  auto shared_root = *root;
  policy::DefaultTrustRoot given =
      [shared_root]() -> Result<std::shared_ptr<const crypto::TrustedRoot>> { return shared_root; };
  if (!keyless) {
    // key_policy's authority has no ctlog reference; require the log of the given root.
    ps.front().authorities.front().ctlog_trust_root_ref = "";
  }
  if (auto st = policy::link_trust_roots(ps, {}, given); !st.ok()) {
    return config_error(st.error().message);
  }
  policy::Authority& auth = ps.front().authorities.front();
  crypto::Requirements req = policy::requirements_for(auth);
  if (!keyless) {
    req.require_tlog = !shared_root->tlogs.empty();
    req.tlogs = &shared_root->tlogs;
    req.tsas = &shared_root->timestamp_authorities;
    req.min_signing_times = 1;
  }
  crypto::VerifiedSignature v = crypto::verify_entity(*entity, req, artifact);
  if (!v.ok) return fail(v.message);
  if (keyless) {
    bool matched = false;
    for (const auto& id : auth.identities) matched = matched || id.matches(v.identity);
    if (!matched) {
      std::string who = v.identity.sans.empty() ? "(no SAN)" : v.identity.sans.front().value;
      return fail("signed by " + who + " (issuer " + v.identity.issuer + "), not by " +
                  auth.identities.front().describe());
    }
  }
  std::printf("OK: %s verified for %s\n", a.bundle.c_str(), artifact.digest.c_str());
  return kExitAdmitted;
}

}  // namespace sigil::app
