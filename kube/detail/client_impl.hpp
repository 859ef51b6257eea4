// kube/detail/client_impl.hpp: the private parts of kube::Client, shared by its sources.
//
// Role: kube/client.cpp holds Cancel, the request/response calls (get, list, patch, create,
// replace, secrets, service accounts, events), the token and one request with its 401 retry;
// kube/client_watch.cpp the watch (Client::watch, open_watch, WatchStream). Every call runs on
// the client's strand through guarded(). Included only by kube/*.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include "common/deadline.hpp"
#include "common/result.hpp"
#include "kube/client.hpp"
#include "net/client.hpp"

namespace sigil::kube {

namespace detail {

namespace asio = boost::asio;

inline constexpr uint64_t kErrorBodyLimit = 64 * 1024;
inline constexpr uint32_t kHeaderLimit = 64 * 1024;

struct Resp {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

Error timeout_error(const std::string& what);
Error cancelled_error(const std::string& what);
// A net error, named after the call it ended ("GET /api/v1/...: TLS handshake with ...").
Error call_error(const std::string& what, const Error& e);
// "GET /api/v1/...: HTTP 403 (Forbidden: secrets \"x\" is forbidden: ...)".
Error api_error(const std::string& what, const Resp& r);

// The bridge from a kube::Cancel (a flag any thread may raise) to net's one cancellation
// idiom, Asio cancellation slots. A call runs on the client's strand under co_spawn, bound to
// `signal`; Cancel::cancel() posts the emission to the strand, and it is emitted only while
// the call's body runs there. So co_spawn's forwarding handler always meets a live child and
// dispatches inline (it is on the child's executor): Boost 1.81's raw-pointer dispatch to a
// child that already finished cannot happen. net::Client then sees the emission on the
// body's slot and closes the call's connection.
struct CallCancel {
  asio::cancellation_signal signal;  // emitted on the strand only
  bool running = false;              // strand only
};

// Runs body on the client's strand (the token is touched only there), honouring `cancel`
// and turning any exception into an error. Pass the body as a named lambda: GCC 12 destroys
// a temporary coroutine lambda in a co_await expression twice.
template <class T, class F>
boost::asio::awaitable<Result<T>> guarded(const boost::asio::any_io_executor& strand,
                                          const Cancel& cancel, F& body) {
  if (cancel.cancelled()) co_return cancelled_error("kube client");
  auto cc = std::make_shared<CallCancel>();
  const uint64_t id = cancel.subscribe([cc, strand] {
    asio::post(strand, [cc] {
      if (cc->running) cc->signal.emit(asio::cancellation_type::terminal);
    });
  });
  auto wrapped = [&body, &cancel, cc]() -> boost::asio::awaitable<std::optional<Result<T>>> {
    cc->running = true;
    std::optional<Result<T>> out;
    // A cancel() whose emission ran before `running` was set is seen here.
    if (cancel.cancelled()) {
      out.emplace(cancelled_error("kube client"));
    } else {
      try {
        out.emplace(co_await body());
      } catch (const boost::system::system_error& e) {
        if (e.code() == asio::error::operation_aborted) {
          out.emplace(cancelled_error("kube client"));
        } else {
          out.emplace(make_error(Errc::internal, std::string("kube client: ") + e.what()));
        }
      } catch (const std::exception& e) {
        out.emplace(make_error(Errc::internal, std::string("kube client: ") + e.what()));
      }
    }
    cc->running = false;
    co_return out;
  };
  std::optional<Result<T>> r;
  try {
    r = co_await asio::co_spawn(
        strand, wrapped(), asio::bind_cancellation_slot(cc->signal.slot(), asio::use_awaitable));
  } catch (const std::exception& e) {
    r.emplace(make_error(Errc::internal, std::string("kube client: ") + e.what()));
  }
  cancel.unsubscribe(id);
  if (!r) co_return make_error(Errc::internal, "kube client: no result");
  co_return std::move(*r);
}

}  // namespace detail

struct Client::Impl : std::enable_shared_from_this<Client::Impl> {
  boost::asio::any_io_executor base;  // the executor the client was given
  boost::asio::any_io_executor ex;    // a strand of it: calls run here (the token is strand-only)
  ClusterConfig cfg;
  ClientOptions opts;
  Status init;
  std::unique_ptr<net::Client> http;
  net::Url base_url;  // https://host:port, target = base_path

  // Strand only.
  std::string token;
  std::chrono::steady_clock::time_point token_read_at;

  std::atomic<uint64_t> token_reads{0};

  Status setup();

  // ---- token (strand only) ----

  // Reads the token file; true when the token changed. On failure the old token stays.
  bool reload_token();

  const std::string& current_token();

  // ---- requests ----

  net::Request make_request(net::Method method, const std::string& target, std::string body,
                            const std::string& content_type);

  static net::Limits limits(uint64_t max_body);

  // One request and its whole answer (body capped at limit for 2xx, 64 KiB otherwise), with
  // the token re-read and the request sent once more after a 401.
  boost::asio::awaitable<Result<detail::Resp>> request(net::Method method,
                                                       const std::string& target,
                                                       const std::string& body,
                                                       const std::string& content_type,
                                                       size_t limit, Deadline deadline);

  // One LIST page; status is the HTTP status (0 when none arrived), bytes its body's size.
  boost::asio::awaitable<Result<ObjectList>> list_page(const std::string& path,
                                                       const ListOptions& o, Deadline deadline,
                                                       unsigned& status, size_t& bytes);

  // client_watch.cpp: opens a watch; an HTTP 410 (or "too large resource version") becomes a
  // stream with one synthesized ERROR event.
  boost::asio::awaitable<Result<std::unique_ptr<WatchStream>>> open_watch(const std::string& target,
                                                                          const WatchOptions& wo,
                                                                          Deadline deadline,
                                                                          const Cancel& cancel,
                                                                          const std::string& what);
};

}  // namespace sigil::kube
