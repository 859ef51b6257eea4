// crypto/chain_cache.cpp: ChainCache (see x509.hpp), the paths above a leaf that validated
// against a CA entry, and the short validation that reuses one: only the leaf under its
// remembered issuer is checked by OpenSSL, then the same final checks as a full validation
// (x509.cpp's check_path). verify_certificate in x509.cpp calls verify_with_cache first and
// remember_chain after a full validation succeeds.
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "crypto/detail/ossl.hpp"
#include "crypto/x509.hpp"
#include "crypto/x509_detail.hpp"

namespace sigil::crypto {

namespace {

using detail::mutable_x509;
using detail::StoreCtxPtr;
using detail::StorePtr;

// Constraints a CA places on the names or resources of every certificate below it: OpenSSL
// checks them against the leaf only when that CA is on the chain it builds.
bool constrains_leaf(const Certificate& c) {
  const X509* x = static_cast<const X509*>(c.native());
  return X509_get_ext_by_NID(x, NID_name_constraints, -1) >= 0 ||
         X509_get_ext_by_NID(x, NID_sbgp_ipAddrBlock, -1) >= 0 ||
         X509_get_ext_by_NID(x, NID_sbgp_autonomousSysNum, -1) >= 0;
}

void append_der(std::string& key, const std::string& der) {
  const auto n = static_cast<uint32_t>(der.size());
  for (int shift = 24; shift >= 0; shift -= 8)
    key.push_back(static_cast<char>((n >> shift) & 0xff));
  key += der;
}

// The CA entry's identity (every certificate of its chain, the anchor last) and the issuer's:
// exact bytes, length-prefixed, so no two different (CA, issuer) pairs share a key.
std::string chain_cache_key(const CertificateAuthority& ca, const Certificate& issuer) {
  size_t total = issuer.der().size() + 8;
  for (const auto& c : ca.chain) total += c.der().size() + 4;
  std::string key;
  key.reserve(total);
  key += "ca";
  for (const auto& c : ca.chain) append_der(key, c.der());
  key += "issuer";
  append_der(key, issuer.der());
  return key;
}

}  // namespace

// A path above some leaf, validated against one CA entry: path[0] issued that leaf, path.back()
// is the CA's anchor. `store` trusts path[0] alone, for validating the next leaf under it.
struct ChainCache::Entry {
  std::vector<Certificate> path;
  TimePoint not_before{};  // the latest notBefore on path
  TimePoint not_after{};   // the earliest notAfter on path (exclusive, as OpenSSL's)
  StorePtr store;
};

struct ChainCache::State {
  mutable std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<const Entry>> entries;
  std::deque<std::string> order;  // insertion order, for eviction
  std::atomic<uint64_t> hits{0};
};

ChainCache::ChainCache(size_t capacity)
    : capacity_(capacity == 0 ? 1 : capacity), state_(std::make_unique<State>()) {}
ChainCache::~ChainCache() = default;

size_t ChainCache::size() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->entries.size();
}

uint64_t ChainCache::hits() const {
  return state_->hits.load(std::memory_order_relaxed);
}

struct ChainCacheAccess {
  static std::shared_ptr<const ChainCache::Entry> find(ChainCache& cache, const std::string& key) {
    std::lock_guard<std::mutex> lock(cache.state_->mu);
    auto it = cache.state_->entries.find(key);
    return it == cache.state_->entries.end() ? nullptr : it->second;
  }
  static void hit(ChainCache& cache) { cache.state_->hits.fetch_add(1, std::memory_order_relaxed); }
  // Remembers the part above the leaf of a path that validated against ca. Never fails the
  // validation that produced it: a path that cannot be remembered is simply not.
  static void remember(ChainCache& cache, const CertificateAuthority& ca,
                       const VerifiedChain& chain) {
    if (chain.path.size() < 3) return;  // leaf -> anchor: one signature check, nothing to save
    for (size_t i = 2; i < chain.path.size(); ++i) {
      if (constrains_leaf(chain.path[i])) return;
    }
    auto entry = std::make_shared<ChainCache::Entry>();
    entry->path.assign(chain.path.begin() + 1, chain.path.end());
    entry->not_before = TimePoint::min();
    entry->not_after = TimePoint::max();
    for (const auto& c : entry->path) {
      entry->not_before = std::max(entry->not_before, c.not_before());
      entry->not_after = std::min(entry->not_after, c.not_after());
    }
    entry->store.reset(X509_STORE_new());
    if (!entry->store ||
        X509_STORE_add_cert(entry->store.get(), mutable_x509(entry->path.front())) != 1) {
      ERR_clear_error();
      return;
    }
    std::string key = chain_cache_key(ca, entry->path.front());
    std::lock_guard<std::mutex> lock(cache.state_->mu);
    auto& st = *cache.state_;
    if (st.entries.count(key) != 0) return;
    while (st.entries.size() >= cache.capacity_ && !st.order.empty()) {
      st.entries.erase(st.order.front());
      st.order.pop_front();
    }
    st.order.push_back(key);
    st.entries.emplace(std::move(key), std::move(entry));
  }
};

void detail::remember_chain(ChainCache& cache, const CertificateAuthority& ca,
                            const VerifiedChain& chain) {
  ChainCacheAccess::remember(cache, ca, chain);
}

// The short path: a remembered path above an issuer of this leaf, for this CA entry. Returns
// the validated path, or nullopt for "validate in full" (no entry, or any check failed: the
// full validation then decides, and words the refusal).
std::optional<VerifiedChain> detail::verify_with_cache(const Certificate& leaf,
                                                       const std::vector<Certificate>& untrusted,
                                                       const CertificateAuthority& ca, TimePoint at,
                                                       ExtendedKeyUsage eku, const std::string& who,
                                                       ChainCache& cache) {
  X509* leaf_x = mutable_x509(leaf);
  auto try_issuer = [&](const Certificate& candidate) -> std::optional<VerifiedChain> {
    // Names, key identifiers and the issuer's keyCertSign: no signature check yet.
    if (X509_check_issued(mutable_x509(candidate), leaf_x) != X509_V_OK) return std::nullopt;
    auto entry = ChainCacheAccess::find(cache, chain_cache_key(ca, candidate));
    if (!entry) return std::nullopt;
    // The remembered part must be valid at the signing time, as OpenSSL judges it: from
    // notBefore up to, not including, notAfter.
    if (at < entry->not_before || at >= entry->not_after) return std::nullopt;
    // OpenSSL validates the leaf under the issuer alone: the leaf's signature, validity and
    // extensions, the issuer's validity, CA flag, key usage and name constraints.
    StoreCtxPtr ctx(X509_STORE_CTX_new());
    if (!ctx || X509_STORE_CTX_init(ctx.get(), entry->store.get(), leaf_x, nullptr) != 1 ||
        !set_verify_params(ctx.get(), at) || X509_verify_cert(ctx.get()) != 1 ||
        sk_X509_num(X509_STORE_CTX_get0_chain(ctx.get())) != 2) {
      ERR_clear_error();
      return std::nullopt;
    }
    ERR_clear_error();
    VerifiedChain out;
    out.path.reserve(entry->path.size() + 1);
    out.path.push_back(leaf);
    out.path.insert(out.path.end(), entry->path.begin(), entry->path.end());
    if (!check_path(out, at, eku, who)) return std::nullopt;
    ChainCacheAccess::hit(cache);
    return out;
  };
  for (const auto& c : untrusted) {
    if (auto r = try_issuer(c)) return r;
  }
  for (size_t i = 0; i + 1 < ca.chain.size(); ++i) {
    if (auto r = try_issuer(ca.chain[i])) return r;
  }
  return std::nullopt;
}

}  // namespace sigil::crypto
