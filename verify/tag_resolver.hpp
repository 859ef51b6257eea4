// verify/tag_resolver.hpp: tag -> digest, coalesced, and with pinning a short bounded cache.
//
// Role: every admission that names an image by tag and is judged by that tag must see where
// the tag points *now* (ARCHITECTURE.md section 5: a tag moved to an unsigned digest is denied
// at once). But a Deployment scaled to 50 replicas sends 50 admissions for the same tag within
// milliseconds, and one HEAD each is what limited the tag path to the registry's HEAD rate.
// TagResolver shares registry reads between concurrent requests for the same (registry,
// repository, tag, credentials) under one of two rules, chosen per request:
//
//  - TagFreshness::fresh (the default; /validate, `sigil verify`): a request only ever receives
//    the answer of a registry read that *started after the request arrived*. Requests that
//    arrive while a read is in flight wait for it to finish and share the next one. So an
//    answer is never older than the request it answers (linearizable, nothing stale), and
//    under load there is at most one read in flight per tag plus one queued.
//
//  - TagFreshness::pinned (/mutate with `pinning` on): the caller pins the Pod to the digest it
//    gets (`name:tag@sha256:...`), so the Pod runs exactly that digest and /validate judges that
//    digest, never the tag. Such a request may be answered from a cache of tag -> digest
//    entries at most `ttl` old (counted from when their read *started*), or join a read that is
//    already in flight. One HEAD then serves a whole burst, and a warm tag costs none.
//
// The cache exists only when TagCacheOptions::ttl > 0, which app/ sets only with `pinning` on;
// without it `pinned` behaves as `fresh` (no cache, no joining: exactly the linearizable rule).
// Every successful read (fresh or pinned) refreshes the entry, so a /validate that saw a tag
// move makes the next /mutate pin the new digest. Failures are never cached. The cache is an
// LRU bounded by `capacity`, keyed by (registry, repository, tag, credentials_id): an answer
// read with one pod's pull credentials never answers a request made with other credentials.
//
// Why the cache cannot admit a moved tag. Assume a hostile pod creator who controls image
// names, can push to (move) the tag, and can time requests. The cache only ever answers
// `pinned` requests, and /mutate writes the digest it answers into the Pod (tag@digest). What
// runs is that digest, and /validate verifies that digest's signatures (a reference with a
// digest is never resolved). So a cached, older digest D_old of a moved tag yields a Pod
// pinned to D_old that runs D_old, which was verified: the tag's newer target D_new is neither
// admitted nor run. A Pod that reaches /validate still tag-only was not mutated (no mutating
// webhook, a failed or skipped /mutate, a workload template): its tag is resolved `fresh` and
// the move is seen at once. Entries are per credentials, so no tenant's read answers for
// another; and per repository and tag as oci::parse_reference normalizes them, so no other
// name can reach an entry. What the TTL costs is freshness only: a push becomes visible to
// /mutate within the TTL (a fix pushed to a tag that pointed at an unsigned image is pinned,
// and denied, for up to that long). A wall clock that steps backwards expires entries.
//
// Depends on the registry::Client interface, common (Clock) and Asio only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "common/clock.hpp"
#include "common/result.hpp"
#include "oci/reference.hpp"
#include "registry/client.hpp"

namespace sigil::verify {

// How old an answer a request may take (see above).
enum class TagFreshness {
  fresh,   // from a read that started after the request arrived
  pinned,  // the caller pins the Pod to the answer: a cached entry within the TTL, or a read
           // already in flight, will do (only when the cache is on)
};

struct TagCacheOptions {
  std::chrono::seconds ttl{0};  // 0: no cache, and `pinned` is `fresh`
  size_t capacity = 10000;      // entries kept; the least recently used go first
};

class TagResolver {
 public:
  // client (and clock) must outlive every resolve() call and every read they started.
  // Without a clock there is no cache.
  explicit TagResolver(registry::Client& client);
  TagResolver(registry::Client& client, const Clock& clock, TagCacheOptions cache);
  ~TagResolver();
  TagResolver(const TagResolver&) = delete;
  TagResolver& operator=(const TagResolver&) = delete;

  // ref.tag must be set and ref.digest empty (callers use the digest of a pinned reference
  // directly). Waits at most until deadline: Errc::timeout after it. A queued registry read
  // runs with the latest deadline of the requests that share it; a `pinned` request that joins
  // a read in flight takes that read's answer, whatever deadline it runs under.
  // Reads and cache entries are shared only between requests with the same credentials_id.
  boost::asio::awaitable<Result<std::string>> resolve(const oci::Reference& ref, Deadline deadline,
                                                      registry::PullCredentials creds,
                                                      std::string credentials_id,
                                                      TagFreshness freshness);
  // Fresh. (No default arguments on coroutines: see Engine::verify.)
  boost::asio::awaitable<Result<std::string>> resolve(const oci::Reference& ref, Deadline deadline,
                                                      registry::PullCredentials creds,
                                                      std::string credentials_id) {
    return resolve(ref, deadline, std::move(creds), std::move(credentials_id), TagFreshness::fresh);
  }
  // Fresh, without credentials.
  boost::asio::awaitable<Result<std::string>> resolve(const oci::Reference& ref,
                                                      Deadline deadline) {
    return resolve(ref, deadline, registry::PullCredentials{}, std::string(), TagFreshness::fresh);
  }

  // The cache's answer for a `pinned` caller, without waiting: the digest when an entry within
  // the TTL holds one, else nullopt. Never reads a registry. nullopt whenever the cache is off.
  // Counts nothing: its caller (the synchronous path) may still give up and call resolve(),
  // which counts; count_cached() counts the answers it used.
  std::optional<std::string> cached(const oci::Reference& ref, const std::string& credentials_id);
  void count_cached(uint64_t n);

  struct Stats {
    uint64_t requests = 0;    // resolve() and answering cached() calls
    uint64_t reads = 0;       // registry reads started
    uint64_t cache_hits = 0;  // pinned requests answered from the cache
    uint64_t joined = 0;      // pinned requests that joined a read already in flight
    uint64_t cached = 0;      // entries in the cache now
  };
  Stats stats() const;

 private:
  struct Shared;
  struct Round;
  // Runs one round and then every round queued behind it; owns the shared state.
  static boost::asio::awaitable<void> run_rounds(std::shared_ptr<Shared> s, std::string key,
                                                 Round round);
  std::shared_ptr<Shared> shared_;
};

}  // namespace sigil::verify
