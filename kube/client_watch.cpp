// kube/client_watch.cpp: the watch half of kube::Client (see client.hpp): Client::watch opens
// the stream (open_watch: the 401 retry with a rotated token, an HTTP 410 turned into an ERROR
// event), WatchStream::next reads events from it under the watch's deadline and the caller's
// Cancel. The request/response calls are in client.cpp.
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "kube/client.hpp"
#include "kube/detail/client_impl.hpp"
#include "kube/object.hpp"
#include "kube/watch.hpp"
#include "net/client.hpp"

namespace sigil::kube {

namespace asio = boost::asio;
using asio::awaitable;
using detail::api_error;
using detail::call_error;
using detail::cancelled_error;
using detail::guarded;
using detail::kErrorBodyLimit;
using detail::Resp;
using detail::timeout_error;
using SteadyClock = std::chrono::steady_clock;

struct WatchStream::Impl {
  std::shared_ptr<Client::Impl> client;
  std::unique_ptr<net::ResponseStream> stream;
  EventStreamParser events;
  Deadline deadline{};
  Cancel cancel;
  std::string what;
  std::optional<WatchEvent> synthesized;  // an HTTP 410 turned into an ERROR event
  std::optional<Error> failed;            // once failed, every later next() says so
  bool done = false;                      // strand only

  explicit Impl(size_t max_event) : events(max_event) {}

  Result<std::vector<WatchEvent>> fail(Error e) {
    done = true;
    failed = e;
    if (stream) stream->close();
    return e;
  }

  // Strand only. net returns the bytes that came with a drop first and the error with the
  // next read, so events that arrived before a drop are delivered before it.
  awaitable<Result<std::vector<WatchEvent>>> read_events() {
    std::vector<WatchEvent> none;
    if (synthesized) {
      std::vector<WatchEvent> out;
      out.push_back(std::move(*synthesized));
      synthesized.reset();
      done = true;
      co_return out;
    }
    if (failed) co_return *failed;
    if (done || !stream) co_return none;
    for (;;) {
      if (cancel.cancelled()) co_return fail(cancelled_error(what));
      auto r = co_await stream->read_some(deadline);
      if (!r) {
        if (cancel.cancelled()) co_return fail(cancelled_error(what));
        if (r.error().code == Errc::timeout) {
          co_return fail(timeout_error(what + ": no end of the watch by its deadline"));
        }
        co_return fail(
            make_error(Errc::unavailable,
                       what + ": watch stream dropped" +
                           std::string(events.mid_event() ? " in the middle of an event" : "") +
                           ": " + r.error().message));
      }
      if (r->empty()) {
        done = true;
        auto fin = events.finish();
        if (!fin) co_return fail(make_error(Errc::unavailable, what + ": " + fin.error().message));
        stream->close();
        co_return std::move(*fin);
      }
      auto evs = events.feed(*r);
      if (!evs) co_return fail(make_error(evs.error().code, what + ": " + evs.error().message));
      if (!evs->empty()) co_return std::move(*evs);
    }
  }
};

WatchStream::WatchStream(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
WatchStream::~WatchStream() = default;

awaitable<Result<std::vector<WatchEvent>>> WatchStream::next() {
  auto impl = impl_;
  auto body = [impl]() -> awaitable<Result<std::vector<WatchEvent>>> {
    co_return co_await impl->read_events();
  };
  co_return co_await guarded<std::vector<WatchEvent>>(impl->client->ex, impl->cancel, body);
}

void WatchStream::close() {
  auto impl = impl_;
  if (impl->stream) impl->stream->close();  // thread-safe; a pending read ends with an error
  asio::post(impl->client->ex, [impl] { impl->done = true; });
}

awaitable<Result<std::unique_ptr<WatchStream>>> Client::Impl::open_watch(const std::string& target,
                                                                         const WatchOptions& wo,
                                                                         Deadline deadline,
                                                                         const Cancel& cancel,
                                                                         const std::string& what) {
  if (!init) co_return init.error();
  for (int attempt = 0;; ++attempt) {
    auto impl = std::make_shared<WatchStream::Impl>(opts.max_event);
    impl->client = shared_from_this();
    impl->cancel = cancel;
    impl->what = what;
    auto s = co_await http->open(make_request(net::Method::get, target, {}, {}), deadline,
                                 limits(opts.max_response));
    if (!s) co_return call_error(what, s.error());
    const unsigned status = (*s)->status();
    if (status == 200) {
      const auto span =
          std::chrono::seconds(std::max<int64_t>(wo.timeout_seconds, 0)) + wo.read_slack;
      impl->deadline = SteadyClock::now() + span;
      impl->stream = std::move(*s);
      co_return std::make_unique<WatchStream>(std::move(impl));
    }
    // An error answer: read its (small) body, then decide.
    Resp r;
    r.status = status;
    r.content_type = (*s)->header("Content-Type");
    auto b = co_await (*s)->read_rest(kErrorBodyLimit, deadline);
    if (b) r.body = std::move(*b);
    (*s)->close();
    if (status == 401 && attempt == 0 && reload_token()) {
      spdlog::info("kube: API server answered 401 to a watch; retrying with the rotated token");
      continue;
    }
    auto st = parse_status(r.body);
    const bool too_large = st && st->rv_too_large;
    if (status == 410 || too_large) {
      WatchEvent ev;
      ev.type = EventType::error;
      if (st) ev.status = *st;
      if (ev.status.code == 0) ev.status.code = static_cast<int>(status);
      if (ev.status.reason.empty()) ev.status.reason = status == 410 ? "Expired" : "Timeout";
      impl->synthesized = std::move(ev);
      co_return std::make_unique<WatchStream>(std::move(impl));
    }
    co_return api_error(what, r);
  }
}

awaitable<Result<std::unique_ptr<WatchStream>>> Client::watch(Resource resource, std::string ns,
                                                              WatchOptions options,
                                                              Deadline connect_deadline,
                                                              Cancel cancel) {
  auto impl = impl_;
  auto path = collection_path(resource, ns);
  if (!path) co_return path.error();
  std::string target = *path + "?watch=true";
  auto add = [&](const char* k, const std::string& v) {
    if (v.empty()) return;
    target += "&";
    target += k;
    target += "=";
    target += query_escape(v);
  };
  add("resourceVersion", options.resource_version);
  if (options.allow_bookmarks) add("allowWatchBookmarks", "true");
  if (options.timeout_seconds > 0) add("timeoutSeconds", std::to_string(options.timeout_seconds));
  add("labelSelector", options.label_selector);
  add("fieldSelector", options.field_selector);
  const std::string what = "WATCH " + *path;
  auto body = [&]() -> awaitable<Result<std::unique_ptr<WatchStream>>> {
    co_return co_await impl->open_watch(target, options, connect_deadline, cancel, what);
  };
  co_return co_await guarded<std::unique_ptr<WatchStream>>(impl->ex, cancel, body);
}

}  // namespace sigil::kube
