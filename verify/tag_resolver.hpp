// verify/tag_resolver.hpp: tag -> digest, coalesced without ever answering from the past.
//
// Role: every admission that names an image by tag must see where the tag points *now*
// (ARCHITECTURE.md section 5: a tag moved to an unsigned digest is denied at once), so sigil
// never caches tag -> digest. But a Deployment scaled to 50 replicas sends 50 admissions for
// the same tag within milliseconds, and one HEAD each is what limited the tag path to the
// registry's HEAD rate. TagResolver shares registry reads between concurrent requests for the
// same (registry, repository, tag) under one rule: a request only ever receives the answer of
// a registry read that *started after the request arrived*. Requests that arrive while a read
// is in flight wait for it to finish and share the next one. So an answer is never older than
// the request it answers (linearizable, no TTL, nothing stale), and under load there is at
// most one read in flight per tag plus one queued, whatever the request rate.
//
// Depends on the registry::Client interface and Asio (awaitable, channels, timers) only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "common/result.hpp"
#include "oci/reference.hpp"
#include "registry/client.hpp"

namespace sigil::verify {

class TagResolver {
 public:
  // client must outlive every resolve() call and every read they started.
  explicit TagResolver(registry::Client& client);
  ~TagResolver();
  TagResolver(const TagResolver&) = delete;
  TagResolver& operator=(const TagResolver&) = delete;

  // ref.tag must be set and ref.digest empty (callers use the digest of a pinned reference
  // directly). Waits at most until deadline: Errc::timeout after it. A registry read runs with
  // the latest deadline of the requests that share it.
  // Reads are shared only between requests with the same credentials_id.
  boost::asio::awaitable<Result<std::string>> resolve(const oci::Reference& ref, Deadline deadline,
                                                      registry::PullCredentials creds,
                                                      std::string credentials_id);
  // Without credentials. (No default arguments on coroutines: see Engine::verify.)
  boost::asio::awaitable<Result<std::string>> resolve(const oci::Reference& ref,
                                                      Deadline deadline) {
    return resolve(ref, deadline, registry::PullCredentials{}, std::string());
  }

  struct Stats {
    uint64_t requests = 0;  // resolve() calls
    uint64_t reads = 0;     // registry reads started
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
