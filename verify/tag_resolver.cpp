// verify/tag_resolver.cpp: see tag_resolver.hpp.
//
// Per key there is at most one round in flight (`running`) and at most one round queued
// (`next`). A request that finds no round running starts one that serves it alone; a request
// that finds one running joins the queued round, which starts when the running one ends. The
// round's runner is a detached coroutine that owns the shared state, so a request that gives up
// at its deadline never strands the others, and the runner never touches a request's frame.
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

std::string key_of(const oci::Reference& ref) {
  return ref.registry + "/" + ref.repository + ":" + ref.tag;
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
    std::optional<Round> next;  // queued behind the running round
  };
  explicit Shared(registry::Client& c) : client(c) {}
  registry::Client& client;
  std::mutex mu;
  std::unordered_map<std::string, KeyState> running;  // key present = a round is in flight
  Stats stats;
};

asio::awaitable<void> TagResolver::run_rounds(std::shared_ptr<Shared> s, std::string key,
                                              Round round) {
  for (;;) {
    ReadOutcome out;
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
    for (auto& w : round.waiters) w->try_send(boost::system::error_code{}, out);

    std::lock_guard lock(s->mu);
    auto it = s->running.find(key);
    if (it == s->running.end() || !it->second.next) {
      if (it != s->running.end()) s->running.erase(it);
      co_return;
    }
    round = std::move(*it->second.next);
    it->second.next.reset();
    ++s->stats.reads;
  }
}

TagResolver::TagResolver(registry::Client& client) : shared_(std::make_shared<Shared>(client)) {}
TagResolver::~TagResolver() = default;

TagResolver::Stats TagResolver::stats() const {
  std::lock_guard lock(shared_->mu);
  return shared_->stats;
}

asio::awaitable<Result<std::string>> TagResolver::resolve(const oci::Reference& ref,
                                                          Deadline deadline,
                                                          registry::PullCredentials creds,
                                                          std::string credentials_id) {
  using namespace asio::experimental::awaitable_operators;
  auto executor = co_await asio::this_coro::executor;
  auto channel = std::make_shared<Channel>(executor, 1);
  const std::string key = key_of(ref) + "#" + credentials_id;
  std::optional<Round> start;
  {
    std::lock_guard lock(shared_->mu);
    ++shared_->stats.requests;
    auto [it, inserted] = shared_->running.try_emplace(key);
    if (inserted) {
      // Nothing in flight: a read that starts now serves this request.
      start = Round{ref, creds, deadline, {channel}};
      ++shared_->stats.reads;
    } else {
      // A read is in flight, but it started before we arrived: wait for the next one.
      auto& next = it->second.next;
      if (!next) next = Round{ref, creds, deadline, {}};
      next->deadline = std::max(next->deadline, deadline);
      next->waiters.push_back(channel);
    }
  }
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
