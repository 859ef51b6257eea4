#include "kube/client.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include "net/client.hpp"

namespace sigil::kube {

namespace asio = boost::asio;
using asio::awaitable;
using SteadyClock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Cancel

struct Cancel::State {
  std::mutex mu;
  bool cancelled = false;
  uint64_t next = 1;
  std::map<uint64_t, std::function<void()>> fns;
};

Cancel::Cancel() : s_(std::make_shared<State>()) {}

void Cancel::cancel() const {
  std::map<uint64_t, std::function<void()>> fns;
  {
    std::lock_guard lock(s_->mu);
    if (s_->cancelled) return;
    s_->cancelled = true;
    fns.swap(s_->fns);
  }
  for (auto& [id, fn] : fns) {
    if (fn) fn();
  }
}

bool Cancel::cancelled() const {
  std::lock_guard lock(s_->mu);
  return s_->cancelled;
}

uint64_t Cancel::subscribe(std::function<void()> fn) const {
  {
    std::lock_guard lock(s_->mu);
    if (!s_->cancelled) {
      const uint64_t id = s_->next++;
      s_->fns.emplace(id, std::move(fn));
      return id;
    }
  }
  if (fn) fn();
  return 0;
}

void Cancel::unsubscribe(uint64_t id) const {
  if (id == 0) return;
  std::lock_guard lock(s_->mu);
  s_->fns.erase(id);
}

// ---------------------------------------------------------------------------------------------

namespace {

constexpr uint64_t kErrorBodyLimit = 64 * 1024;
constexpr uint32_t kHeaderLimit = 64 * 1024;

struct Resp {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

Error timeout_error(const std::string& what) {
  return make_error(Errc::timeout, what + ": deadline exceeded");
}
Error cancelled_error(const std::string& what) {
  return make_error(Errc::unavailable, what + ": cancelled");
}
// A net error, named after the call it ended ("GET /api/v1/...: TLS handshake with ...").
Error call_error(const std::string& what, const Error& e) {
  return make_error(e.code, what + ": " + e.message);
}

Errc errc_for_status(unsigned s) {
  if (s == 401 || s == 403) return Errc::unauthorized;
  if (s == 404) return Errc::not_found;
  if (s == 400 || s == 422) return Errc::invalid_argument;
  if (s == 413) return Errc::too_large;
  if (s == 504) return Errc::timeout;
  return Errc::unavailable;
}

// "GET /api/v1/...: HTTP 403 (Forbidden: secrets \"x\" is forbidden: ...)".
Error api_error(const std::string& what, const Resp& r) {
  std::string detail;
  auto st = parse_status(r.body);
  if (st) {
    detail = st->describe();
  } else if (!r.body.empty() && r.content_type.rfind("text/", 0) == 0) {
    detail = sanitize_text(r.body, 200);
  }
  std::string msg = what + ": HTTP " + std::to_string(r.status);
  if (!detail.empty()) msg += " (" + detail + ")";
  return make_error(errc_for_status(r.status), std::move(msg));
}

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
awaitable<Result<T>> guarded(const asio::any_io_executor& strand, const Cancel& cancel, F& body) {
  if (cancel.cancelled()) co_return cancelled_error("kube client");
  auto cc = std::make_shared<CallCancel>();
  const uint64_t id = cancel.subscribe([cc, strand] {
    asio::post(strand, [cc] {
      if (cc->running) cc->signal.emit(asio::cancellation_type::terminal);
    });
  });
  auto wrapped = [&body, &cancel, cc]() -> awaitable<std::optional<Result<T>>> {
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

std::string list_query(const ListOptions& o) {
  std::string q;
  auto add = [&](const char* k, const std::string& v) {
    if (v.empty()) return;
    q += (q.empty() ? "?" : "&");
    q += k;
    q += "=";
    q += query_escape(v);
  };
  if (o.limit > 0) add("limit", std::to_string(o.limit));
  add("continue", o.continue_token);
  add("labelSelector", o.label_selector);
  add("fieldSelector", o.field_selector);
  return q;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Client::Impl

struct Client::Impl : std::enable_shared_from_this<Client::Impl> {
  asio::any_io_executor base;  // the executor the client was given
  asio::any_io_executor ex;    // a strand of it: calls run here (the token is strand-only)
  ClusterConfig cfg;
  ClientOptions opts;
  Status init;
  std::unique_ptr<net::Client> http;
  net::Url base_url;  // https://host:port, target = base_path

  // Strand only.
  std::string token;
  SteadyClock::time_point token_read_at;

  std::atomic<uint64_t> token_reads{0};

  Status setup() {
    if (cfg.host.empty())
      return make_error(Errc::invalid_argument, "kube client: no API server host");
    auto url = net::parse_url(cfg.server_url());
    if (!url || url->scheme != "https") {
      return make_error(Errc::invalid_argument, "kube client (" + cfg.source +
                                                    "): the API server URL " + cfg.server_url() +
                                                    " is not a valid https URL");
    }
    base_url = std::move(*url);
    base_url.target = cfg.base_path;
    net::ClientOptions no;
    if (cfg.insecure_skip_tls_verify) {
      spdlog::warn("kube: TLS verification of the API server {} is DISABLED ({})", cfg.host,
                   cfg.source);
      no.tls.insecure_skip_verify = true;
    }
    // The cluster CA alone when there is one, else the system roots.
    no.tls.system_roots = cfg.ca_pem.empty();
    no.tls.ca_pem = cfg.ca_pem;
    no.tls.client_cert_pem = cfg.client_cert_pem;
    no.tls.client_key_pem = cfg.client_key_pem;
    no.tls.server_name = cfg.tls_server_name;
    no.user_agent = opts.user_agent;
    no.max_idle_per_origin = std::min<size_t>(opts.max_idle, 64);
    http = std::make_unique<net::Client>(base, std::move(no));
    if (auto st = http->init_status(); !st) {
      return make_error(st.error().code, "kube client (" + cfg.source + "): " + st.error().message);
    }
    token = cfg.token;
    token_read_at = SteadyClock::now();
    return {};
  }

  // ---- token (strand only) ----

  // Reads the token file; true when the token changed. On failure the old token stays.
  bool reload_token() {
    if (cfg.token_file.empty()) return false;
    token_read_at = SteadyClock::now();
    token_reads.fetch_add(1, std::memory_order_relaxed);
    auto t = read_token_file(cfg.token_file);
    if (!t) {
      spdlog::warn("kube: cannot re-read the API token: {} (keeping the previous one)",
                   t.error().message);
      return false;
    }
    if (*t == token) return false;
    token = std::move(*t);
    return true;
  }

  const std::string& current_token() {
    if (!cfg.token_file.empty() && SteadyClock::now() - token_read_at >= opts.token_reload) {
      reload_token();
    }
    return token;
  }

  // ---- requests ----

  net::Request make_request(net::Method method, const std::string& target, std::string body,
                            const std::string& content_type) {
    net::Request r;
    r.method = method;
    r.url = base_url;
    r.url.target = cfg.base_path + target;
    r.headers.emplace_back("Accept", "application/json");
    if (!content_type.empty()) r.headers.emplace_back("Content-Type", content_type);
    const std::string& tok = current_token();
    if (!tok.empty()) r.authorization = "Bearer " + tok;
    r.body = std::move(body);
    return r;
  }

  static net::Limits limits(uint64_t max_body) {
    net::Limits l;
    l.max_body = max_body;
    l.max_error_body = kErrorBodyLimit;
    l.max_header = kHeaderLimit;
    return l;
  }

  // One request and its whole answer (body capped at limit for 2xx, 64 KiB otherwise), with
  // the token re-read and the request sent once more after a 401.
  awaitable<Result<Resp>> request(net::Method method, const std::string& target,
                                  const std::string& body, const std::string& content_type,
                                  size_t limit, Deadline deadline) {
    if (!init) co_return init.error();
    const std::string what = std::string(net::method_name(method)) + " " + target;
    for (int attempt = 0;; ++attempt) {
      auto r = co_await http->send(make_request(method, target, body, content_type), deadline,
                                   limits(limit));
      if (!r) co_return call_error(what, r.error());
      if (r->status == 401 && attempt == 0 && reload_token()) {
        spdlog::info("kube: API server answered 401; retrying with the rotated token");
        continue;
      }
      Resp out;
      out.status = r->status;
      out.content_type = r->header("Content-Type");
      out.body = std::move(r->body);
      co_return out;
    }
  }

  // One LIST page; status is the HTTP status (0 when none arrived).
  awaitable<Result<ObjectList>> list_page(const std::string& path, const ListOptions& o,
                                          Deadline deadline, unsigned& status) {
    const std::string target = path + list_query(o);
    auto r = co_await request(net::Method::get, target, {}, {}, opts.max_response, deadline);
    if (!r) co_return r.error();
    status = r->status;
    if (r->status != 200) co_return api_error("LIST " + path, *r);
    auto l = parse_object_list(r->body);
    if (!l) co_return make_error(l.error().code, "LIST " + path + ": " + l.error().message);
    co_return std::move(*l);
  }

  awaitable<Result<std::unique_ptr<WatchStream>>> open_watch(const std::string& target,
                                                             const WatchOptions& wo,
                                                             Deadline deadline,
                                                             const Cancel& cancel,
                                                             const std::string& what);
};

// ---------------------------------------------------------------------------------------------
// WatchStream

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

// ---------------------------------------------------------------------------------------------
// Client

Client::Client(const asio::any_io_executor& executor, ClusterConfig config, ClientOptions options) {
  try {
    impl_ = std::make_shared<Impl>();
    impl_->base = executor;
    impl_->ex = asio::make_strand(executor);
    impl_->cfg = std::move(config);
    impl_->opts = std::move(options);
    impl_->init = impl_->setup();
  } catch (const std::exception& e) {
    if (impl_)
      impl_->init = make_error(Errc::internal, std::string("kube client setup: ") + e.what());
  }
}

Client::~Client() = default;

Status Client::init_status() const {
  if (!impl_) return make_error(Errc::internal, "kube client not constructed");
  return impl_->init;
}

const ClusterConfig& Client::config() const {
  return impl_->cfg;
}

boost::asio::any_io_executor Client::executor() const {
  return impl_->base;
}

uint64_t Client::request_count() const {
  return impl_ && impl_->http ? impl_->http->request_count() : 0;
}

uint64_t Client::token_reads() const {
  return impl_ ? impl_->token_reads.load() : 0;
}

awaitable<Result<Object>> Client::get(Resource resource, std::string ns, std::string name,
                                      Deadline deadline, Cancel cancel) {
  auto impl = impl_;
  auto path = object_path(resource, ns, name);
  if (!path) co_return path.error();
  auto body = [&]() -> awaitable<Result<Object>> {
    auto r =
        co_await impl->request(net::Method::get, *path, {}, {}, impl->opts.max_response, deadline);
    if (!r) co_return r.error();
    if (r->status != 200) co_return api_error("GET " + *path, *r);
    auto o = parse_object(r->body);
    if (!o) co_return make_error(o.error().code, "GET " + *path + ": " + o.error().message);
    co_return std::move(*o);
  };
  co_return co_await guarded<Object>(impl->ex, cancel, body);
}

awaitable<Result<ObjectList>> Client::list_page(Resource resource, std::string ns,
                                                ListOptions options, Deadline deadline,
                                                Cancel cancel) {
  auto impl = impl_;
  auto path = collection_path(resource, ns);
  if (!path) co_return path.error();
  auto body = [&]() -> awaitable<Result<ObjectList>> {
    unsigned status = 0;
    co_return co_await impl->list_page(*path, options, deadline, status);
  };
  co_return co_await guarded<ObjectList>(impl->ex, cancel, body);
}

awaitable<Result<ObjectList>> Client::list(Resource resource, std::string ns, ListOptions options,
                                           Deadline deadline, Cancel cancel) {
  auto impl = impl_;
  auto path = collection_path(resource, ns);
  if (!path) co_return path.error();
  auto body = [&]() -> awaitable<Result<ObjectList>> {
    for (int round = 0;; ++round) {
      ObjectList all;
      ListOptions page = options;
      page.continue_token.clear();
      for (bool first = true;; first = false) {
        unsigned status = 0;
        auto r = co_await impl->list_page(*path, page, deadline, status);
        if (!r) {
          // An expired continue token (410) restarts the list from the top, once.
          if (!first && status == 410 && round == 0) break;
          co_return r.error();
        }
        if (first) all.resource_version = std::move(r->resource_version);
        for (auto& o : r->items) all.items.push_back(std::move(o));
        if (r->continue_token.empty()) co_return all;
        page.continue_token = std::move(r->continue_token);
      }
      spdlog::info("kube: list of {} outlived its continue token; listing again",
                   resource.display());
    }
  };
  co_return co_await guarded<ObjectList>(impl->ex, cancel, body);
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

awaitable<Result<Object>> Client::merge_patch_status(Resource resource, std::string ns,
                                                     std::string name, std::string patch_json,
                                                     Deadline deadline, Cancel cancel) {
  auto impl = impl_;
  auto path = object_path(resource, ns, name, "status");
  if (!path) co_return path.error();
  if (patch_json.size() > impl->opts.max_response) {
    co_return make_error(Errc::too_large, "PATCH " + *path + ": patch too large");
  }
  auto body = [&]() -> awaitable<Result<Object>> {
    auto r =
        co_await impl->request(net::Method::patch, *path, patch_json,
                               "application/merge-patch+json", impl->opts.max_response, deadline);
    if (!r) co_return r.error();
    if (r->status != 200) co_return api_error("PATCH " + *path, *r);
    auto o = parse_object(r->body);
    if (!o) co_return make_error(o.error().code, "PATCH " + *path + ": " + o.error().message);
    co_return std::move(*o);
  };
  co_return co_await guarded<Object>(impl->ex, cancel, body);
}

namespace {

// A write's answer: 200/201 -> the stored object, 409 -> conflict, anything else -> error.
Result<Written> written(const std::string& what, const Resp& r) {
  Written w;
  if (r.status == 409) {
    w.conflict = true;
    if (auto st = parse_status(r.body)) w.status = std::move(*st);
    if (w.status.code == 0) w.status.code = 409;
    return w;
  }
  if (r.status != 200 && r.status != 201) return api_error(what, r);
  auto o = parse_object(r.body);
  if (!o) return make_error(o.error().code, what + ": " + o.error().message);
  w.object = std::move(*o);
  return w;
}

}  // namespace

awaitable<Result<Written>> Client::create(Resource resource, std::string ns,
                                          std::string object_json, Deadline deadline,
                                          Cancel cancel) {
  auto impl = impl_;
  auto path = collection_path(resource, ns);
  if (!path) co_return path.error();
  if (object_json.size() > impl->opts.max_response) {
    co_return make_error(Errc::too_large, "POST " + *path + ": object too large");
  }
  auto body = [&]() -> awaitable<Result<Written>> {
    auto r = co_await impl->request(net::Method::post, *path, object_json, "application/json",
                                    impl->opts.max_response, deadline);
    if (!r) co_return r.error();
    co_return written("POST " + *path, *r);
  };
  co_return co_await guarded<Written>(impl->ex, cancel, body);
}

awaitable<Result<Written>> Client::replace(Resource resource, std::string ns, std::string name,
                                           std::string object_json, Deadline deadline,
                                           Cancel cancel) {
  auto impl = impl_;
  auto path = object_path(resource, ns, name);
  if (!path) co_return path.error();
  if (object_json.size() > impl->opts.max_response) {
    co_return make_error(Errc::too_large, "PUT " + *path + ": object too large");
  }
  auto body = [&]() -> awaitable<Result<Written>> {
    auto r = co_await impl->request(net::Method::put, *path, object_json, "application/json",
                                    impl->opts.max_response, deadline);
    if (!r) co_return r.error();
    co_return written("PUT " + *path, *r);
  };
  co_return co_await guarded<Written>(impl->ex, cancel, body);
}

awaitable<Result<Secret>> Client::get_secret(std::string ns, std::string name, Deadline deadline,
                                             Cancel cancel) {
  auto impl = impl_;
  auto path = object_path(resources::secrets(), ns, name);
  if (!path) co_return path.error();
  auto body = [&]() -> awaitable<Result<Secret>> {
    auto r =
        co_await impl->request(net::Method::get, *path, {}, {}, impl->opts.max_response, deadline);
    if (!r) co_return r.error();
    if (r->status != 200) co_return api_error("GET " + *path, *r);
    auto s = parse_secret(r->body);
    if (!s) co_return make_error(s.error().code, "GET " + *path + ": " + s.error().message);
    co_return std::move(*s);
  };
  co_return co_await guarded<Secret>(impl->ex, cancel, body);
}

awaitable<Result<ServiceAccount>> Client::get_service_account(std::string ns, std::string name,
                                                              Deadline deadline, Cancel cancel) {
  auto impl = impl_;
  auto path = object_path(resources::service_accounts(), ns, name);
  if (!path) co_return path.error();
  auto body = [&]() -> awaitable<Result<ServiceAccount>> {
    auto r =
        co_await impl->request(net::Method::get, *path, {}, {}, impl->opts.max_response, deadline);
    if (!r) co_return r.error();
    if (r->status != 200) co_return api_error("GET " + *path, *r);
    auto s = parse_service_account(r->body);
    if (!s) co_return make_error(s.error().code, "GET " + *path + ": " + s.error().message);
    co_return std::move(*s);
  };
  co_return co_await guarded<ServiceAccount>(impl->ex, cancel, body);
}

awaitable<Result<ObjectMeta>> Client::create_event(std::string ns, std::string event_json,
                                                   Deadline deadline, Cancel cancel) {
  auto impl = impl_;
  const Resource events{"", "v1", "events", true};
  if (ns.empty()) co_return make_error(Errc::invalid_argument, "POST events: no namespace");
  auto path = collection_path(events, ns);
  if (!path) co_return path.error();
  if (event_json.size() > impl->opts.max_response) {
    co_return make_error(Errc::too_large, "POST " + *path + ": event too large");
  }
  auto body = [&]() -> awaitable<Result<ObjectMeta>> {
    auto r = co_await impl->request(net::Method::post, *path, event_json, "application/json",
                                    impl->opts.max_response, deadline);
    if (!r) co_return r.error();
    if (r->status != 201 && r->status != 200) co_return api_error("POST " + *path, *r);
    auto o = parse_object(r->body);
    if (!o) co_return make_error(o.error().code, "POST " + *path + ": " + o.error().message);
    co_return std::move(o->meta);
  };
  co_return co_await guarded<ObjectMeta>(impl->ex, cancel, body);
}

}  // namespace sigil::kube
