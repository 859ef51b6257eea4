// policy/secrets.cpp: the Secrets policies name (key.secretRef, keyless.ca-cert.secretRef):
// listing them, and filling keys and CA chains from what the caller read.
#include <exception>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "policy/yaml_detail.hpp"

namespace sigil::policy {

std::vector<SecretRef> secret_refs(const std::vector<Policy>& policies,
                                   std::string_view default_namespace) {
  std::vector<SecretRef> out;
  auto add = [&](SecretRef r) {
    if (r.namespace_.empty()) r.namespace_ = std::string(default_namespace);
    for (const auto& o : out) {
      if (o.namespace_ == r.namespace_ && o.name == r.name) return;
    }
    out.push_back(std::move(r));
  };
  for (const auto& p : policies) {
    for (const auto& a : p.authorities) {
      if (a.key_secret) add(*a.key_secret);
      if (a.ca_cert_secret) add(*a.ca_cert_secret);
    }
  }
  return out;
}

namespace {

// The value of the first of `preferred` keys present in data, else the only one.
Result<std::string> secret_value(const std::map<std::string, std::string>& data,
                                 std::initializer_list<const char*> preferred,
                                 const std::string& secret) {
  for (const char* k : preferred) {
    if (auto it = data.find(k); it != data.end()) return it->second;
  }
  if (data.size() == 1) return data.begin()->second;
  std::string keys;
  for (const auto& [k, v] : data) keys += (keys.empty() ? "" : ", ") + k;
  std::string want;
  for (const char* k : preferred) want += (want.empty() ? "" : " or ") + std::string(k);
  return make_error(Errc::invalid_argument,
                    "the Secret " + secret + " has " +
                        (data.empty() ? std::string("no data") : "keys " + keys) + "; expected " +
                        want + ", or exactly one key");
}

}  // namespace

Status resolve_secrets(std::vector<Policy>& policies, const SecretLookup& lookup,
                       std::string_view default_namespace) {
  try {
    for (auto& p : policies) {
      p.id = 0;  // keys and CAs are filled in: other content than any id named
      for (auto& a : p.authorities) {
        auto read = [&](const SecretRef& ref,
                        std::initializer_list<const char*> preferred) -> Result<std::string> {
          const std::string ns =
              ref.namespace_.empty() ? std::string(default_namespace) : ref.namespace_;
          const std::string where = p.origin + " (" + p.name + "): " + ref.field;
          if (!lookup) {
            return make_error(Errc::invalid_argument,
                              where + ": keys from Secrets need the Kubernetes API (serve --kube)");
          }
          auto data = lookup(ns, ref.name);
          if (!data) {
            return make_error(data.error().code, where + ": " + data.error().message);
          }
          auto v = secret_value(*data, preferred, ns + "/" + ref.name);
          if (!v) return make_error(Errc::invalid_argument, where + ": " + v.error().message);
          return v;
        };
        if (a.key_secret) {
          auto pem = read(*a.key_secret, {"cosign.pub"});
          if (!pem) return pem.error();
          auto pk = crypto::PublicKey::from_pem(*pem);
          if (!pk) {
            return make_error(
                Errc::invalid_argument,
                p.origin + " (" + p.name + "): " + a.key_secret->field +
                    ": the Secret does not hold a PEM public key: " + pk.error().message);
          }
          a.hash = a.explicit_hash ? *a.explicit_hash : crypto::default_hash_for(pk->type());
          a.key = std::move(*pk);
        }
        if (a.ca_cert_secret) {
          auto text = read(*a.ca_cert_secret, {"ca.crt", "ca.pem"});
          if (!text) return text.error();
          auto ca = detail::ca_from_text(*text, a.name);
          if (!ca) {
            return make_error(Errc::invalid_argument,
                              p.origin + " (" + p.name + "): " + a.ca_cert_secret->field +
                                  ": the Secret does not hold a CA chain: " + ca.error().message);
          }
          a.ca_cert = std::move(*ca);
        }
      }
    }
    return {};
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string("reading Secrets: ") + e.what());
  }
}

}  // namespace sigil::policy
