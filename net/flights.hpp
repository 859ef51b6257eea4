// net/flights.hpp: one fetch per key in flight, its result shared by concurrent callers.
//
// Role: the coalescing of the clients built on net/: AzureCredentials' token fetches
// (azure/acr_exchange.cpp), Key Vault key reads (azure/keyvault.cpp), and the Secrets and
// ServiceAccounts admissions read (kube/cache.cpp). The first caller for a key leads: it fetches
// and lands the result; the others follow, polling the flight every few milliseconds until it has
// landed or their own deadline passes. Polling keeps every follower on its own executor and timer
// (no cross-thread wake-up of a timer). The owner's mutex guards the map and every flight: join and
// land are called with it held (so an owner can apply a result to its caches in the same step),
// follow takes it to look. Header only: Asio's timer and the standard library.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/deadline.hpp"

namespace sigil::net {

template <class T>
class Flights {
 public:
  struct Flight {
    bool done = false;
    std::optional<T> result;
  };

  // Under the owner's mutex: the caller's flight for key, and whether it leads it.
  std::pair<std::shared_ptr<Flight>, bool> join(const std::string& key) {
    auto& f = flights_[key];
    if (f) return {f, false};
    f = std::make_shared<Flight>();
    return {f, true};
  }

  // Under the owner's mutex: the leader's result, for its followers; the key is free again.
  void land(const std::string& key, const std::shared_ptr<Flight>& f, T result) {
    f->result = std::move(result);
    f->done = true;
    auto it = flights_.find(key);
    if (it != flights_.end() && it->second == f) flights_.erase(it);
  }

  // The landed result, or nullopt when the deadline passed or the wait was cancelled first.
  static boost::asio::awaitable<std::optional<T>> follow(std::mutex& mu, std::shared_ptr<Flight> f,
                                                         Deadline deadline) {
    namespace asio = boost::asio;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (f->done) co_return f->result;
      }
      if (std::chrono::steady_clock::now() >= deadline) co_return std::nullopt;
      timer.expires_after(std::chrono::milliseconds(5));
      auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return std::nullopt;
    }
  }

 private:
  std::map<std::string, std::shared_ptr<Flight>> flights_;
};

}  // namespace sigil::net
