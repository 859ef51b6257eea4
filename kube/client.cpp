// kube/client.cpp: see client.hpp. Cancel, the client's setup and token, one request with its
// 401 retry, and the request/response calls (get, list, patch, create, replace, secrets,
// service accounts, events). The watch is in client_watch.cpp; the parts both share are in
// detail/client_impl.hpp.
#include "kube/client.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/strand.hpp>

#include "kube/detail/client_impl.hpp"
#include "net/client.hpp"

namespace sigil::kube {

namespace asio = boost::asio;
using asio::awaitable;
using detail::api_error;
using detail::call_error;
using detail::guarded;
using detail::kErrorBodyLimit;
using detail::kHeaderLimit;
using detail::Resp;
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

Errc errc_for_status(unsigned s) {
  if (s == 401 || s == 403) return Errc::unauthorized;
  if (s == 404) return Errc::not_found;
  if (s == 400 || s == 422) return Errc::invalid_argument;
  if (s == 413) return Errc::too_large;
  if (s == 504) return Errc::timeout;
  return Errc::unavailable;
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

Error detail::timeout_error(const std::string& what) {
  return make_error(Errc::timeout, what + ": deadline exceeded");
}
Error detail::cancelled_error(const std::string& what) {
  return make_error(Errc::unavailable, what + ": cancelled");
}
// A net error, named after the call it ended ("GET /api/v1/...: TLS handshake with ...").
Error detail::call_error(const std::string& what, const Error& e) {
  return make_error(e.code, what + ": " + e.message);
}

// "GET /api/v1/...: HTTP 403 (Forbidden: secrets \"x\" is forbidden: ...)".
Error detail::api_error(const std::string& what, const Resp& r) {
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

// ---------------------------------------------------------------------------------------------
// Client::Impl

Status Client::Impl::setup() {
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

bool Client::Impl::reload_token() {
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

const std::string& Client::Impl::current_token() {
  if (!cfg.token_file.empty() && SteadyClock::now() - token_read_at >= opts.token_reload) {
    reload_token();
  }
  return token;
}

net::Request Client::Impl::make_request(net::Method method, const std::string& target,
                                        std::string body, const std::string& content_type) {
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

net::Limits Client::Impl::limits(uint64_t max_body) {
  net::Limits l;
  l.max_body = max_body;
  l.max_error_body = kErrorBodyLimit;
  l.max_header = kHeaderLimit;
  return l;
}

awaitable<Result<Resp>> Client::Impl::request(net::Method method, const std::string& target,
                                              const std::string& body,
                                              const std::string& content_type, size_t limit,
                                              Deadline deadline) {
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

awaitable<Result<ObjectList>> Client::Impl::list_page(const std::string& path, const ListOptions& o,
                                                      Deadline deadline, unsigned& status,
                                                      size_t& bytes) {
  const std::string target = path + list_query(o);
  auto r = co_await request(net::Method::get, target, {}, {}, opts.max_response, deadline);
  if (!r) co_return r.error();
  status = r->status;
  bytes = r->body.size();
  if (r->status != 200) co_return api_error("LIST " + path, *r);
  auto l = parse_object_list(r->body);
  if (!l) co_return make_error(l.error().code, "LIST " + path + ": " + l.error().message);
  co_return std::move(*l);
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
    size_t bytes = 0;
    co_return co_await impl->list_page(*path, options, deadline, status, bytes);
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
      size_t total = 0;
      bool first = true;
      for (;;) {
        unsigned status = 0;
        size_t bytes = 0;
        auto r = co_await impl->list_page(*path, page, deadline, status, bytes);
        if (!r && r.error().code == Errc::too_large && status == 0 && page.limit != 1) {
          // A page past max_response: large objects (up to etcd's 1.5 MiB each, a tenant's
          // ImagePolicies) make a page of `limit` too big to read. The same page again, in
          // pages of a quarter the size, down to one object each.
          page.limit = page.limit > 1 ? std::max<int64_t>(1, page.limit / 4) : 16;
          spdlog::info("kube: a page of the list of {} was too large; asking for {} at a time",
                       resource.display(), page.limit);
          continue;
        }
        if (!r) {
          // An expired continue token (410) restarts the list from the top, once.
          if (!first && status == 410 && round == 0) break;
          co_return r.error();
        }
        // Each page is capped; so is what the list keeps of them all (managedFields and
        // annotations are not kept: kube/object.hpp), or a server that never stops sending
        // continue tokens (or a collection far larger than sigil's) would grow it without end.
        for (const auto& o : r->items) total += o.json.size();
        if (total > impl->opts.max_list)
          co_return make_error(Errc::too_large, "LIST " + *path + ": more than " +
                                                    std::to_string(impl->opts.max_list) +
                                                    " bytes over its pages");
        if (first) all.resource_version = std::move(r->resource_version);
        first = false;
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
