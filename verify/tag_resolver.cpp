// verify/tag_resolver.cpp: see tag_resolver.hpp.
//
// Per key there is at most one round in flight (`running`) and at most one round queued
// (`next`). A request that finds no round running starts one that serves it alone; a `fresh`
// request that finds one running joins the queued round, which starts when the running one
// ends; a `pinned` request (cache on) joins the running round itself (`joined`). The round's
// runner is a detached coroutine that owns the shared state, so a request that gives up at its
// deadline never strands the others, and the runner never touches a request's frame. With the
// cache on, the runner stores each successful answer, stamped with the time its read started.
#include "verify/tag_resolver.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sigil::verify {

namespace asio = boost::asio;

namespace {

// What a round delivers (default-constructible, as channel payloads must be).
struct ReadOutcome {
  bool ok = false;
  std::string digest;
  Error error;
};

using Channel =
    asio::experimental::concurrent_channel<void(boost::system::error_code, ReadOutcome)>;

// (registry, repository, tag, credentials): NUL-separated, so no part can run into another.
std::string key_of(const oci::Reference& ref, const std::string& credentials_id) {
  std::string key;
  key.reserve(ref.registry.size() + ref.repository.size() + ref.tag.size() + credentials_id.size() +
              3);
  key += ref.registry;
  key += '\0';
  key += ref.repository;
  key += '\0';
  key += ref.tag;
  key += '\0';
  key += credentials_id;
  return key;
}

}  // namespace

struct TagResolver::Round {
  oci::Reference ref;
  registry::PullCredentials creds;
  Deadline deadline{};
  std::vector<std::shared_ptr<Channel>> waiters;
};

struct TagResolver::Shared {
  struct KeyState {
    std::vector<std::shared_ptr<Channel>> joined;  // pinned requests sharing the running round
    std::optional<Round> next;                     // queued behind the running round
  };
  struct Entry {
    std::string digest;
    std::chrono::system_clock::time_point read_at;  // when the read that found it started
    std::list<std::string>::iterator lru;
  };
  Shared(registry::Client& c, const Clock* k, TagCacheOptions o)
      : client(c), clock(k), options(o) {}
  registry::Client& client;
  const Clock* clock;  // null: no cache
  TagCacheOptions options;
  std::mutex mu;
  std::unordered_map<std::string, KeyState> running;  // key present = a round is in flight
  std::unordered_map<std::string, Entry> cache;
  std::list<std::string> lru;  // front = most recently used
  Stats stats;

  bool cache_on() const {
    return clock != nullptr && options.ttl.count() > 0 && options.capacity > 0;
  }

  // The cached digest for key if its read started less than ttl ago. Under mu.
  std::optional<std::string> lookup(const std::string& key) {
    auto it = cache.find(key);
    if (it == cache.end()) return std::nullopt;
    const auto now = clock->now();
    // A clock that stepped backwards (now < read_at) expires the entry too.
    if (now < it->second.read_at || now - it->second.read_at >= options.ttl) {
      lru.erase(it->second.lru);
      cache.erase(it);
      return std::nullopt;
    }
    lru.splice(lru.begin(), lru, it->second.lru);
    return it->second.digest;
  }

  // Remembers digest for key, read at read_at. Under mu.
  void store(const std::string& key, const std::string& digest,
             std::chrono::system_clock::time_point read_at) {
    auto it = cache.find(key);
    if (it != cache.end()) {
      it->second.digest = digest;
      it->second.read_at = read_at;
      lru.splice(lru.begin(), lru, it->second.lru);
      return;
    }
    lru.push_front(key);
    cache.emplace(key, Entry{digest, read_at, lru.begin()});
    while (cache.size() > options.capacity) {
      cache.erase(lru.back());
      lru.pop_back();
    }
  }
};

asio::awaitable<void> TagResolver::run_rounds(std::shared_ptr<Shared> s, std::string key,
                                              Round round) {
  for (;;) {
    ReadOutcome out;
    const bool cache_on = s->cache_on();
    const auto read_at = cache_on ? s->clock->now() : std::chrono::system_clock::time_point{};
    try {
      auto r = co_await s->client.resolve(round.ref, round.deadline, round.creds);
      if (r.ok()) {
        out.ok = true;
        out.digest = std::move(r).value();
      } else {
        out.error = std::move(r).error();
      }
    } catch (const std::exception& e) {
      out.error = make_error(Errc::internal, std::string("resolving the tag: ") + e.what());
    }

    // Everyone this read answers: the round's own waiters and the pinned requests that joined
    // it. Sent outside the lock.
    std::vector<std::shared_ptr<Channel>> answered = std::move(round.waiters);
    bool more = false;
    {
      std::lock_guard lock(s->mu);
      if (cache_on && out.ok) s->store(key, out.digest, read_at);
      auto it = s->running.find(key);
      if (it != s->running.end()) {
        for (auto& w : it->second.joined) answered.push_back(std::move(w));
        it->second.joined.clear();
        if (it->second.next) {
          more = true;
          round = std::move(*it->second.next);
          it->second.next.reset();
          ++s->stats.reads;
        } else {
          s->running.erase(it);
        }
      }
    }
    for (auto& w : answered) w->try_send(boost::system::error_code{}, out);
    if (!more) co_return;
  }
}

TagResolver::TagResolver(registry::Client& client)
    : shared_(std::make_shared<Shared>(client, nullptr, TagCacheOptions{})) {}
TagResolver::TagResolver(registry::Client& client, const Clock& clock, TagCacheOptions cache)
    : shared_(std::make_shared<Shared>(client, &clock, cache)) {}
TagResolver::~TagResolver() = default;

TagResolver::Stats TagResolver::stats() const {
  std::lock_guard lock(shared_->mu);
  Stats s = shared_->stats;
  s.cached = shared_->cache.size();
  return s;
}

std::optional<std::string> TagResolver::cached(const oci::Reference& ref,
                                               const std::string& credentials_id) {
  if (!shared_->cache_on()) return std::nullopt;
  const std::string key = key_of(ref, credentials_id);
  std::lock_guard lock(shared_->mu);
  return shared_->lookup(key);
}

void TagResolver::count_cached(uint64_t n) {
  std::lock_guard lock(shared_->mu);
  shared_->stats.requests += n;
  shared_->stats.cache_hits += n;
}

asio::awaitable<Result<std::string>> TagResolver::resolve(const oci::Reference& ref,
                                                          Deadline deadline,
                                                          registry::PullCredentials creds,
                                                          std::string credentials_id,
                                                          TagFreshness freshness) {
  using namespace asio::experimental::awaitable_operators;
  auto executor = co_await asio::this_coro::executor;
  const std::string key = key_of(ref, credentials_id);
  std::shared_ptr<Channel> channel;
  std::optional<Round> start;
  std::optional<std::string> hit;
  {
    std::lock_guard lock(shared_->mu);
    ++shared_->stats.requests;
    // Only a caller that pins the Pod to the answer may take one older than its arrival.
    const bool may_share = freshness == TagFreshness::pinned && shared_->cache_on();
    if (may_share) hit = shared_->lookup(key);
    if (hit) {
      ++shared_->stats.cache_hits;
    } else {
      channel = std::make_shared<Channel>(executor, 1);
      auto [it, inserted] = shared_->running.try_emplace(key);
      if (inserted) {
        // Nothing in flight: a read that starts now serves this request.
        start = Round{ref, creds, deadline, {channel}};
        ++shared_->stats.reads;
      } else if (may_share) {
        // A read is in flight: its answer, as recent as a cached one, will do.
        it->second.joined.push_back(channel);
        ++shared_->stats.joined;
      } else {
        // A read is in flight, but it started before we arrived: wait for the next one.
        auto& next = it->second.next;
        if (!next) next = Round{ref, creds, deadline, {}};
        next->deadline = std::max(next->deadline, deadline);
        next->waiters.push_back(channel);
      }
    }
  }
  if (hit) co_return std::move(*hit);
  if (start) asio::co_spawn(executor, run_rounds(shared_, key, std::move(*start)), asio::detached);

  asio::steady_timer timer(executor, deadline);
  auto result = co_await (channel->async_receive(asio::as_tuple(asio::use_awaitable)) ||
                          timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (result.index() == 0) {
    auto& [ec, out] = std::get<0>(result);
    if (!ec) {
      if (out.ok) co_return std::move(out.digest);
      co_return std::move(out.error);
    }
  }
  co_return make_error(Errc::timeout,
                       "resolving the tag " + ref.tag + " did not finish before the deadline");
}

}  // namespace sigil::verify
