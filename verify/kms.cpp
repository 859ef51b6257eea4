// verify/kms.cpp: see detail/kms.hpp.
#include "verify/detail/kms.hpp"

#include <algorithm>
#include <exception>
#include <optional>

#include <spdlog/spdlog.h>

#include "common/encoding.hpp"

namespace sigil::verify::detail {

namespace asio = boost::asio;

namespace {

bool has_kms(const policy::Policy& p) {
  return std::any_of(p.authorities.begin(), p.authorities.end(), [](const policy::Authority& a) {
    return a.kind == policy::Authority::Kind::key && !a.kms.empty();
  });
}

// A KMS authority with its key filled in, as judge() wants it.
void use_key(policy::Authority& a, const crypto::PublicKey& key) {
  a.key = key;
  a.hash = a.explicit_hash ? *a.explicit_hash : crypto::default_hash_for(key.type());
}

}  // namespace

asio::awaitable<KmsKeys> resolve_kms(KeyResolver* keys,
                                     const std::vector<const policy::Policy*>& matched,
                                     Deadline deadline) {
  KmsKeys out;
  for (const policy::Policy* p : matched) {
    for (const auto& a : p->authorities) {
      if (a.kind != policy::Authority::Kind::key || a.kms.empty() || out.count(a.kms)) continue;
      Result<crypto::PublicKey> k =
          make_error(Errc::unsupported, "no Key Vault access is configured (the azure: section)");
      if (keys) {
        try {
          k = co_await keys->key(a.kms, deadline);
        } catch (const std::exception& e) {
          k = make_error(Errc::internal, std::string("internal error: ") + e.what());
        }
      }
      if (!k) {
        // Resolvers may name the key first: it is named once, by the denial.
        Error e = k.error();
        if (e.message.rfind(a.kms + ": ", 0) == 0) e.message.erase(0, a.kms.size() + 2);
        spdlog::warn("key {}: {}", a.kms, e.message);
        k = std::move(e);
      }
      out.emplace(a.kms, std::move(k));
    }
  }
  co_return out;
}

asio::awaitable<policy::PolicyResult> judge_policy(KeyResolver* keys, const policy::Policy& p,
                                                   const std::string& digest,
                                                   const policy::EvidenceFor& evidence_for,
                                                   const policy::JudgeLimits& limits, KmsKeys& kms,
                                                   std::set<std::string>& refetched,
                                                   Deadline deadline, bool& rotated) {
  if (!has_kms(p)) co_return policy::judge(p, digest, evidence_for, limits);
  policy::Policy copy = p;
  copy.authorities.clear();
  std::vector<const policy::Authority*> original;  // copy.authorities[i] stands for original[i]
  std::string key_error;
  std::string key_error_authority;
  for (const auto& a : p.authorities) {
    if (a.kind == policy::Authority::Kind::key && !a.kms.empty()) {
      const auto it = kms.find(a.kms);
      if (it == kms.end() || !it->second) {
        if (key_error.empty()) {
          key_error_authority = a.name;
          key_error = "key " + a.kms + " could not be read: " +
                      (it == kms.end() ? std::string("not resolved") : it->second.error().message);
        }
        continue;
      }
      copy.authorities.push_back(a);
      use_key(copy.authorities.back(), *it->second);
    } else {
      copy.authorities.push_back(a);
    }
    original.push_back(&a);
  }
  const policy::EvidenceFor copy_evidence =
      [&](const policy::Authority& a) -> const policy::Evidence* {
    const auto i = static_cast<size_t>(&a - copy.authorities.data());
    return i < original.size() ? evidence_for(*original[i]) : nullptr;
  };
  policy::PolicyResult r;
  if (!copy.authorities.empty()) r = policy::judge(copy, digest, copy_evidence, limits);
  if (!r.satisfied && !copy.authorities.empty() && keys) {
    bool changed = false;
    for (size_t i = 0; i < copy.authorities.size(); ++i) {
      policy::Authority& a = copy.authorities[i];
      if (a.kms.empty()) continue;
      const policy::Evidence* ev = evidence_for(*original[i]);
      if (ev == nullptr || ev->signatures.empty()) continue;  // nothing failed with the key
      if (!refetched.insert(a.kms).second) {
        // Looked at already in this verification (another policy): use what it found.
        if (auto it = kms.find(a.kms);
            it != kms.end() && it->second && it->second->spki_der() != a.key->spki_der()) {
          use_key(a, *it->second);
          changed = true;
        }
        continue;
      }
      Result<std::optional<crypto::PublicKey>> fresh = std::optional<crypto::PublicKey>();
      try {
        fresh = co_await keys->refetch_after_failure(a.kms, deadline);
      } catch (const std::exception& e) {
        fresh = make_error(Errc::internal, std::string("internal error: ") + e.what());
      }
      if (!fresh) {
        spdlog::warn("key {}: looking again after a failed verification: {}", a.kms,
                     fresh.error().message);
        continue;
      }
      if (!fresh->has_value()) continue;
      spdlog::info("key {} changed (rotated): judging image {} again with the new key", a.kms,
                   short_digest(digest));
      kms.insert_or_assign(a.kms, **fresh);
      use_key(a, **fresh);
      changed = true;
    }
    if (changed) {
      rotated = true;
      r = policy::judge(copy, digest, copy_evidence, limits);
    }
  }
  if (!r.satisfied && !key_error.empty()) {
    r.satisfied = false;
    r.policy = p.name;
    r.authority = key_error_authority;
    r.unmet = policy::Unmet::unavailable;
    r.message = key_error;
  }
  co_return r;
}

}  // namespace sigil::verify::detail
