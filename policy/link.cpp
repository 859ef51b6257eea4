// policy/link.cpp: link_trust_roots, which resolves every authority's trustRootRef (or the
// default root) into the CAs, transparency logs, CT logs and timestamp authorities it checks.
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/encoding.hpp"
#include "policy/policy.hpp"

namespace sigil::policy {

namespace {

std::string normalized_url(std::string_view u) {
  std::string s = ascii_lower(trim(u));
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

Status link_trust_roots(std::vector<Policy>& policies, const std::vector<TrustRootDocument>& roots,
                        const DefaultTrustRoot& default_root) {
  try {
    std::optional<Result<std::shared_ptr<const crypto::TrustedRoot>>> fallback;
    for (auto& p : policies) {
      p.id = 0;  // its authorities change: other content than any id named
      for (std::size_t i = 0; i < p.authorities.size(); ++i) {
        Authority& a = p.authorities[i];
        const std::string where = p.origin + " (" + p.name + "): spec.authorities[" +
                                  std::to_string(i) + "] (" + a.name + ")";
        auto fail = [&](const std::string& what) {
          return make_error(Errc::invalid_argument, where + ": " + what);
        };
        using RootPtr = std::shared_ptr<const crypto::TrustedRoot>;
        auto named = [&](const std::string& ref, const char* field) -> Result<RootPtr> {
          for (const auto& r : roots) {
            if (r.name == ref) return r.root;
          }
          return fail(std::string(field) + ": \"" + ref + "\" names no TrustRoot");
        };
        auto the_default = [&](const char* why) -> Result<RootPtr> {
          if (!fallback)
            fallback =
                default_root
                    ? default_root()
                    : Result<RootPtr>(make_error(Errc::invalid_argument, "none is configured"));
          if (!fallback->ok()) {
            return fail(std::string(why) + " needs the default trust root, which is unusable: " +
                        fallback->error().message);
          }
          return fallback->value();
        };
        a.cas.clear();
        a.tlogs.clear();
        a.ctlogs.clear();
        a.tsas.clear();
        a.chain_cache.reset();
        a.require_tlog = false;
        if (a.kind == Authority::Kind::static_pass || a.kind == Authority::Kind::static_fail) {
          a.linked = true;
          continue;
        }
        if (a.kind == Authority::Kind::key && !a.key && a.kms.empty()) {
          return fail(a.key_secret ? "key.secretRef: the Secret " + a.key_secret->namespace_ + "/" +
                                         a.key_secret->name + " has not been read"
                                   : std::string("no key"));
        }
        if (a.kind == Authority::Kind::keyless && a.ca_cert_secret && !a.ca_cert) {
          return fail("keyless.ca-cert.secretRef: the Secret " + a.ca_cert_secret->namespace_ +
                      "/" + a.ca_cert_secret->name + " has not been read");
        }
        RootPtr keyless_root;  // the root a keyless authority's CA (and default logs) come from
        if (a.kind == Authority::Kind::keyless) {
          if (!a.keyless_trust_root_ref.empty()) {
            auto r = named(a.keyless_trust_root_ref, "keyless.trustRootRef");
            if (!r) return r.error();
            keyless_root = *r;
          } else if (!a.ca_cert) {
            auto r = the_default("a keyless authority without trustRootRef");
            if (!r) return r.error();
            keyless_root = *r;
          }
          if (a.ca_cert) {
            a.cas.push_back(*a.ca_cert);
          } else {
            a.cas = keyless_root->certificate_authorities;
            if (a.cas.empty()) {
              return fail(keyless_root->name + " has no certificate authorities (Fulcio)");
            }
          }
          a.chain_cache = std::make_shared<crypto::ChainCache>();
          if (!a.insecure_ignore_sct) {
            RootPtr ct = keyless_root;
            if (!ct) {
              auto r = the_default("checking SCTs of a ca-cert authority");
              if (!r) return r.error();
              ct = *r;
            }
            a.ctlogs = ct->ctlogs;
            if (a.ctlogs.empty()) {
              return fail(ct->name +
                          " has no CT logs to check the certificate's SCT against (set "
                          "keyless.insecureIgnoreSCT: true if your CA has none)");
            }
          }
        }
        // Rekor.
        const bool ctlog_configured =
            a.ctlog_present && (!a.ctlog_url.empty() || !a.ctlog_trust_root_ref.empty());
        a.require_tlog = a.kind == Authority::Kind::keyless ? (!a.ctlog_present || ctlog_configured)
                                                            : ctlog_configured;
        if (a.require_tlog) {
          RootPtr tl;
          if (!a.ctlog_trust_root_ref.empty()) {
            auto r = named(a.ctlog_trust_root_ref, "ctlog.trustRootRef");
            if (!r) return r.error();
            tl = *r;
          } else if (keyless_root) {
            tl = keyless_root;
          } else {
            auto r = the_default("a transparency log check without ctlog.trustRootRef");
            if (!r) return r.error();
            tl = *r;
          }
          for (const auto& log : tl->tlogs) {
            if (a.ctlog_url.empty() ||
                normalized_url(log.base_url) == normalized_url(a.ctlog_url)) {
              a.tlogs.push_back(log);
            }
          }
          if (a.tlogs.empty()) {
            return fail(a.ctlog_url.empty()
                            ? tl->name + " has no transparency logs (Rekor)"
                            : "ctlog.url " + a.ctlog_url + ": no transparency log of " + tl->name +
                                  " has that base URL");
          }
        }
        // RFC 3161 timestamp authorities.
        if (!a.tsa_trust_root_ref.empty()) {
          auto r = named(a.tsa_trust_root_ref, "rfc3161timestamp.trustRootRef");
          if (!r) return r.error();
          a.tsas = (*r)->timestamp_authorities;
          if (a.tsas.empty()) return fail((*r)->name + " has no timestamp authorities");
        } else if (keyless_root) {
          a.tsas = keyless_root->timestamp_authorities;
        }
        if (a.kind == Authority::Kind::keyless && !a.require_tlog && a.tsas.empty()) {
          return fail(
              "with ctlog: {} the signing time can only be proved by an RFC 3161 timestamp, but "
              "no timestamp authority is configured (rfc3161timestamp.trustRootRef)");
        }
        a.linked = true;
      }
    }
    return {};
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string("linking trust roots: ") + e.what());
  }
}

}  // namespace sigil::policy
