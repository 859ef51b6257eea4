#include "kube/cache.hpp"

#include <chrono>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "net/flights.hpp"

namespace sigil::kube {

using boost::asio::awaitable;
using SysTime = std::chrono::system_clock::time_point;

namespace {

template <class T>
struct Entry {
  std::shared_ptr<const T> value;  // null: cached 404
  Error missing;
  SysTime expires;
  size_t bytes = 0;  // what it holds, estimated (held_bytes)
};

// What an entry holds beyond its key, estimated: its strings plus a fixed overhead per entry and
// per map or vector element.
constexpr size_t kEntryOverhead = 256;
constexpr size_t kElementOverhead = 64;
size_t held_bytes(const ObjectMeta& m) {
  return m.name.size() + m.namespace_.size() + m.uid.size() + m.resource_version.size();
}
size_t held_bytes(const Secret& s) {
  size_t n = kEntryOverhead + held_bytes(s.meta) + s.type.size();
  for (const auto& [k, v] : s.data) n += kElementOverhead + k.size() + v.size();
  return n;
}
size_t held_bytes(const ServiceAccount& a) {
  size_t n = kEntryOverhead + held_bytes(a.meta);
  for (const auto& s : a.image_pull_secrets) n += kElementOverhead + s.size();
  return n;
}

// Entries by key, and an index by expiry, so that making room takes the entry that expires
// soonest in O(log n): the mutex around a Table is the one the cached path takes, and a pod's
// author chooses which Secrets are read (once this scanned every entry for every eviction).
template <class T>
class Table {
 public:
  // A live entry, or nullopt.
  std::optional<Entry<T>> find(const std::string& key, SysTime now) const {
    auto it = map_.find(key);
    if (it == map_.end() || it->second.entry.expires <= now) return std::nullopt;
    return it->second.entry;
  }
  void put(std::string key, Entry<T> e, SysTime now, size_t max, size_t max_bytes) {
    e.bytes += key.size();
    erase(map_.find(key));
    if (e.bytes > max_bytes) return;  // answered, never kept
    const SysTime expires = e.expires;
    const size_t bytes = e.bytes;
    auto it = map_.emplace(std::move(key), Slot{std::move(e), {}}).first;
    try {
      it->second.by_expiry = expiry_.emplace(expires, &it->first);
    } catch (...) {
      map_.erase(it);
      throw;
    }
    bytes_ += bytes;
    // Expired entries first, then the ones that expire soonest.
    while (!expiry_.empty() && expiry_.begin()->first <= now) erase_soonest();
    while ((map_.size() > max || bytes_ > max_bytes) && !expiry_.empty()) erase_soonest();
  }
  void clear() {
    expiry_.clear();
    map_.clear();
    bytes_ = 0;
  }
  size_t bytes() const { return bytes_; }
  size_t size() const { return map_.size(); }

 private:
  // The expiry index names entries by their key in map_ (stable until erased).
  using Expiry = std::multimap<SysTime, const std::string*>;
  struct Slot {
    Entry<T> entry;
    typename Expiry::iterator by_expiry;
  };
  using Map = std::map<std::string, Slot>;
  void erase(typename Map::iterator it) {
    if (it == map_.end()) return;
    bytes_ -= it->second.entry.bytes;
    expiry_.erase(it->second.by_expiry);
    map_.erase(it);
  }
  void erase_soonest() { erase(map_.find(*expiry_.begin()->second)); }
  Map map_;
  Expiry expiry_;
  size_t bytes_ = 0;
};

}  // namespace

struct SecretCache::Impl {
  std::shared_ptr<Client> client;
  CacheOptions opts;
  const Clock& clock;
  mutable std::mutex mu;
  Table<Secret> secrets;
  Table<ServiceAccount> accounts;
  // One GET per object in flight: after every resync (the cache is cleared) the admissions of
  // a busy namespace all miss its ServiceAccount at once, and each sent its own GET to an API
  // server that may be the one in trouble.
  net::Flights<Result<std::shared_ptr<const Secret>>> secret_flights;
  net::Flights<Result<std::shared_ptr<const ServiceAccount>>> account_flights;
  CacheStats st;

  Impl(std::shared_ptr<Client> c, CacheOptions o, const Clock& k)
      : client(std::move(c)), opts(o), clock(k) {}

  template <class T, class Fetch>
  awaitable<Result<std::shared_ptr<const T>>> get(
      Table<T>& table, net::Flights<Result<std::shared_ptr<const T>>>& flights, const char* kind,
      std::string ns, std::string name, Deadline deadline, Fetch& fetch) {
    using Got = Result<std::shared_ptr<const T>>;
    const std::string key = ns + "/" + name;
    // Lookup and store happen in plain functions: no lock is held, and no variable declared in
    // a condition lives, across a suspension point of this coroutine.
    std::optional<Entry<T>> hit = lookup(table, key);
    if (hit) {
      if (hit->value) co_return hit->value;
      co_return hit->missing;
    }
    for (;;) {
      auto joined = join(flights, key);
      if (joined.second) {
        Got got = make_error(Errc::internal, std::string(kind) + " " + key + ": internal error");
        try {
          Result<T> r = co_await fetch(ns, name, deadline);
          got = store(table, kind, key, std::move(r));
        } catch (const std::exception& e) {
          got = make_error(Errc::internal,
                           std::string(kind) + " " + key + ": internal error: " + e.what());
        } catch (...) {
          // Whatever was thrown, the flight lands: else every later reader of this object
          // would wait out its deadline on it.
        }
        land(flights, key, joined.first, got);
        co_return got;
      }
      std::optional<Got> shared = co_await net::Flights<Got>::follow(mu, joined.first, deadline);
      if (!shared) {
        co_return make_error(Errc::timeout, std::string(kind) + " " + key +
                                                ": timed out waiting for the API server");
      }
      // The leader's own deadline cut its read: ours may have time left to read it again.
      if (shared->ok() || shared->error().code != Errc::timeout ||
          std::chrono::steady_clock::now() >= deadline) {
        co_return std::move(*shared);
      }
    }
  }

  template <class Got>
  std::pair<std::shared_ptr<typename net::Flights<Got>::Flight>, bool> join(
      net::Flights<Got>& flights, const std::string& key) {
    std::lock_guard lock(mu);
    return flights.join(key);
  }

  template <class Got>
  void land(net::Flights<Got>& flights, const std::string& key,
            const std::shared_ptr<typename net::Flights<Got>::Flight>& f, const Got& got) {
    std::lock_guard lock(mu);
    flights.land(key, f, got);
  }

  template <class T>
  std::optional<Entry<T>> lookup(Table<T>& table, const std::string& key) {
    std::lock_guard lock(mu);
    auto e = table.find(key, clock.now());
    if (!e) {
      ++st.misses;
    } else if (e->value) {
      ++st.hits;
    } else {
      ++st.negative_hits;
    }
    return e;
  }

  template <class T>
  std::optional<Result<std::shared_ptr<const T>>> peek(Table<T>& table, const std::string& key) {
    std::lock_guard lock(mu);
    auto e = table.find(key, clock.now());
    if (!e) return std::nullopt;
    if (e->value) {
      ++st.hits;
      return Result<std::shared_ptr<const T>>(std::move(e->value));
    }
    ++st.negative_hits;
    return Result<std::shared_ptr<const T>>(std::move(e->missing));
  }

  template <class T>
  Result<std::shared_ptr<const T>> store(Table<T>& table, const char* kind, const std::string& key,
                                         Result<T> r) {
    std::lock_guard lock(mu);
    const SysTime now = clock.now();
    if (r) {
      auto v = std::make_shared<const T>(std::move(r).value());
      table.put(key, Entry<T>{v, {}, now + opts.ttl, held_bytes(*v)}, now, opts.max_entries,
                opts.max_bytes);
      return std::shared_ptr<const T>(v);
    }
    if (r.error().code == Errc::not_found && opts.negative_ttl.count() > 0) {
      Error missing = make_error(Errc::not_found, std::string(kind) + " " + key + " not found (" +
                                                      r.error().message + ")");
      table.put(key,
                Entry<T>{nullptr, missing, now + opts.negative_ttl,
                         kEntryOverhead + missing.message.size()},
                now, opts.max_entries, opts.max_bytes);
      return missing;
    }
    return std::move(r).error();
  }
};

SecretCache::SecretCache(std::shared_ptr<Client> client, CacheOptions options, const Clock& clock)
    : impl_(std::make_shared<Impl>(std::move(client), options, clock)) {}

SecretCache::~SecretCache() = default;

awaitable<Result<std::shared_ptr<const Secret>>> SecretCache::secret(std::string ns,
                                                                     std::string name,
                                                                     Deadline deadline) {
  auto impl = impl_;
  auto client = impl->client;
  // A named lambda: GCC 12 destroys a temporary one in a co_await expression twice.
  auto fetch = [client](std::string n, std::string m, Deadline d) -> awaitable<Result<Secret>> {
    co_return co_await client->get_secret(std::move(n), std::move(m), d);
  };
  co_return co_await impl->get<Secret>(impl->secrets, impl->secret_flights, "Secret", std::move(ns),
                                       std::move(name), deadline, fetch);
}

awaitable<Result<std::shared_ptr<const ServiceAccount>>> SecretCache::service_account(
    std::string ns, std::string name, Deadline deadline) {
  auto impl = impl_;
  auto client = impl->client;
  auto fetch = [client](std::string n, std::string m,
                        Deadline d) -> awaitable<Result<ServiceAccount>> {
    co_return co_await client->get_service_account(std::move(n), std::move(m), d);
  };
  co_return co_await impl->get<ServiceAccount>(impl->accounts, impl->account_flights,
                                               "ServiceAccount", std::move(ns), std::move(name),
                                               deadline, fetch);
}

std::optional<Result<std::shared_ptr<const Secret>>> SecretCache::cached_secret(
    const std::string& ns, const std::string& name) {
  return impl_->peek(impl_->secrets, ns + "/" + name);
}

std::optional<Result<std::shared_ptr<const ServiceAccount>>> SecretCache::cached_service_account(
    const std::string& ns, const std::string& name) {
  return impl_->peek(impl_->accounts, ns + "/" + name);
}

void SecretCache::clear() {
  std::lock_guard lock(impl_->mu);
  impl_->secrets.clear();
  impl_->accounts.clear();
}

CacheStats SecretCache::stats() const {
  std::lock_guard lock(impl_->mu);
  CacheStats s = impl_->st;
  s.entries = impl_->secrets.size() + impl_->accounts.size();
  s.bytes = impl_->secrets.bytes() + impl_->accounts.bytes();
  return s;
}

}  // namespace sigil::kube
