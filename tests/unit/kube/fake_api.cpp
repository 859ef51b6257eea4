// tests/unit/kube/fake_api.cpp: the fake Kubernetes API server, as a handler on the shared
// fake HTTP server (tests/support/cpp/fake_http.hpp: TLS, sessions, request log) with the
// shared test PKI (tls_pki()). This file holds only what is Kubernetes: objects, lists with
// continue, watches, /status merge-patch, and their failure knobs.
#include "fake_api.hpp"

#include <random>
#include <sstream>
#include <stdexcept>

namespace sigil::test {

namespace asio = boost::asio;

namespace {

// ---- HTTP helpers ----

std::string pct_decode(std::string_view s) {
  return percent_decode(s, false);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t e = s.find(sep, start);
    if (e == std::string_view::npos) e = s.size();
    if (e > start) out.emplace_back(s.substr(start, e - start));
    start = e + 1;
  }
  return out;
}

json status_json(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
          {"status", "Failure"}, {"message", message}, {"reason", reason},
          {"code", code}};
}

struct Route {
  bool ok = false;
  std::string plural, ns, name, sub;
  std::string api_version;  // "v1" or "sigil.dev/v1alpha1"
};

Route parse_route(const std::string& path) {
  Route r;
  auto seg = split(path, '/');
  for (auto& s : seg) s = pct_decode(s);
  size_t i = 0;
  if (seg.size() >= 2 && seg[0] == "api") {
    r.api_version = seg[1];
    i = 2;
  } else if (seg.size() >= 3 && seg[0] == "apis") {
    r.api_version = seg[1] + "/" + seg[2];
    i = 3;
  } else {
    return r;
  }
  if (seg.size() >= i + 3 && seg[i] == "namespaces") {
    r.ns = seg[i + 1];
    i += 2;
  }
  if (i >= seg.size()) return r;
  r.plural = seg[i++];
  if (i < seg.size()) r.name = seg[i++];
  if (i < seg.size()) r.sub = seg[i++];
  r.ok = i == seg.size();
  return r;
}

std::string key_of(const json& obj) {
  const auto& md = obj.at("metadata");
  std::string ns = md.value("namespace", "");
  std::string name = md.value("name", "");
  return ns.empty() ? name : ns + "/" + name;
}

}  // namespace

const Pki& pki() {
  static const Pki p = [] {
    const FakeTls& t = tls_pki();
    Pki out;
    out.dir = std::filesystem::path(t.ca_file).parent_path();
    out.ca_pem = t.ca_pem;
    out.ca_key_pem = t.ca_key_pem;
    out.server_cert_pem = t.server_cert_pem;
    out.server_key_pem = t.server_key_pem;
    out.client_cert_pem = t.client_cert_pem;
    out.client_key_pem = t.client_key_pem;
    out.other_ca_pem = t.other_ca_pem;
    return out;
  }();
  return p;
}

json policy_object(const std::string& name, const std::string& ns, json spec) {
  json md = {{"name", name}};
  if (!ns.empty()) md["namespace"] = ns;
  return {{"apiVersion", "sigil.dev/v1alpha1"},
          {"kind", ns.empty() ? "ClusterImagePolicy" : "ImagePolicy"},
          {"metadata", md},
          {"spec", spec}};
}

// ---------------------------------------------------------------------------------------------

struct Event {
  int64_t rv = 0;
  std::string plural, ns, type;
  json object;
};

struct FakeApi::Impl {
  FakeApi* owner = nullptr;
  FakeOptions opts;

  mutable std::mutex mu;
  int64_t rv = 100;
  int64_t next_uid = 1;
  std::map<std::string, std::map<std::string, json>> objects;
  std::vector<Event> log;
  int64_t compacted_rv = 0;
  uint64_t bookmark_gen = 0, expire_gen = 0, kick_gen = 0;
  std::atomic<int> open_watches{0};
  std::string token;
  std::vector<Seen> seen;
  std::vector<std::string> patches;
  std::mt19937 rng{12345};

  // Last member: destroyed (stopped) first, while the state its handler uses still lives.
  std::unique_ptr<FakeHttpServer> http;

  void record_event(const std::string& type, const std::string& plural, const json& obj) {
    Event e;
    e.rv = rv;
    e.plural = plural;
    e.ns = obj["metadata"].value("namespace", "");
    e.type = type;
    e.object = obj;
    log.push_back(std::move(e));
  }

  static asio::awaitable<bool> respond(HttpConn& s, unsigned status, const json& body) {
    co_return co_await s.reply(HttpReply::json(status, body.dump()));
  }

  // Answers one request; returns whether the connection stays usable.
  asio::awaitable<bool> handle(const HttpRequest& req, HttpConn& s) {
    Seen seen_req;
    seen_req.path = req.path;
    const size_t q = req.target.find('?');
    if (q != std::string::npos) {
      for (const auto& kv : split(std::string_view(req.target).substr(q + 1), '&')) {
        const size_t eq = kv.find('=');
        seen_req.query[pct_decode(kv.substr(0, eq))] =
            eq == std::string::npos ? "" : pct_decode(kv.substr(eq + 1));
      }
    }
    seen_req.method = req.method;
    seen_req.authorization = req.header("Authorization");
    seen_req.content_type = req.header("Content-Type");
    seen_req.body = req.body;
    const bool watch = seen_req.query.count("watch") &&
                       (seen_req.query["watch"] == "true" || seen_req.query["watch"] == "1");
    auto record = [&](int status) {
      seen_req.status = status;
      std::lock_guard lock(mu);
      seen.push_back(seen_req);
    };
    {
      std::string tok;
      {
        std::lock_guard lock(mu);
        tok = token;
      }
      if (!tok.empty() && seen_req.authorization != "Bearer " + tok) {
        ++owner->unauthorized_;
        record(401);
        co_return co_await respond(s, 401, status_json(401, "Unauthorized", "Unauthorized"));
      }
    }
    Route r = parse_route(seen_req.path);
    if (!r.ok) {
      record(404);
      co_return co_await respond(s, 404, status_json(404, "NotFound", "no such path"));
    }
    const bool get = req.method == "GET";
    if (get && r.name.empty() && watch) {
      record(200);
      co_return co_await serve_watch(s, r, seen_req.query);
    }
    if (get && r.name.empty()) {
      auto [status, body] = list(r, seen_req.query);
      record(static_cast<int>(status));
      co_return co_await respond(s, status, body);
    }
    if (get && r.sub.empty()) {
      if (r.name == "stall") co_await s.sleep(std::chrono::milliseconds(owner->stall_ms.load()));
      if (owner->hide_gets.load() > 0) {  // a reader that lost a race: 404 though it exists
        --owner->hide_gets;
        record(404);
        co_return co_await respond(s, 404, status_json(404, "NotFound", "hidden"));
      }
      const int forced = owner->fail_gets_with.load();
      if (forced) {
        record(forced);
        co_return co_await respond(s, static_cast<unsigned>(forced),
                                   status_json(forced, "InternalError", "injected failure"));
      }
      unsigned status = 200;
      json body;
      {
        std::lock_guard lock(mu);
        auto& m = objects[r.plural];
        auto it = m.find(r.ns.empty() ? r.name : r.ns + "/" + r.name);
        if (it == m.end()) {
          status = 404;
          body = status_json(404, "NotFound", r.plural + " \"" + r.name + "\" not found");
          body["details"] = {{"name", r.name}, {"kind", r.plural}};
        } else {
          body = it->second;
        }
      }
      record(static_cast<int>(status));
      co_return co_await respond(s, status, body);
    }
    if (req.method == "PATCH" && r.sub == "status") {
      auto [status, body] = patch_status(r, seen_req.content_type, req.body);
      record(static_cast<int>(status));
      co_return co_await respond(s, status, body);
    }
    const bool create = req.method == "POST" && r.name.empty() && r.sub.empty();
    if (create) {
      // A POST of an object named "stall" or "stall.*" (Events) waits stall_ms first, as GETs
      // of "stall" do; the API server takes only JSON bodies.
      json obj = json::parse(req.body, nullptr, false);
      const std::string name =
          obj.is_object() && obj.contains("metadata") && obj["metadata"].is_object()
              ? obj["metadata"].value("name", "")
              : "";
      if (name == "stall" || name.rfind("stall.", 0) == 0)
        co_await s.sleep(std::chrono::milliseconds(owner->stall_ms.load()));
      if (seen_req.content_type != "application/json") {
        record(415);
        co_return co_await respond(
            s, 415, status_json(415, "UnsupportedMediaType", "want application/json"));
      }
    }
    if (create || (req.method == "PUT" && !r.name.empty() && r.sub.empty())) {
      auto [status, body] = write(r, create, req.body);
      record(static_cast<int>(status));
      co_return co_await respond(s, status, body);
    }
    record(405);
    co_return co_await respond(s, 405, status_json(405, "MethodNotAllowed", "not here"));
  }

  // POST (create: 409 AlreadyExists) and PUT (update: 409 Conflict when the body's
  // metadata.resourceVersion is not the stored one), as the API server answers them.
  std::pair<unsigned, json> write(const Route& r, bool create, const std::string& text) {
    json obj = json::parse(text, nullptr, false);
    if (obj.is_discarded() || !obj.is_object() || !obj["metadata"].is_object())
      return {400, status_json(400, "BadRequest", "body is not an object with metadata")};
    auto& md = obj["metadata"];
    if (!r.ns.empty()) md["namespace"] = r.ns;
    if (!create) md["name"] = r.name;
    const std::string name = md.value("name", "");
    if (name.empty()) return {422, status_json(422, "Invalid", "metadata.name: Required value")};
    const std::string key = r.ns.empty() ? name : r.ns + "/" + name;
    std::lock_guard lock(mu);
    auto& m = objects[r.plural];
    auto it = m.find(key);
    if (create && it != m.end())
      return {409,
              status_json(409, "AlreadyExists", r.plural + " \"" + name + "\" already exists")};
    if (!create && it == m.end())
      return {404, status_json(404, "NotFound", r.plural + " \"" + name + "\" not found")};
    if (!create) {
      const std::string want = md.value("resourceVersion", "");
      const auto& stored = it->second["metadata"];
      if (!want.empty() && want != stored.value("resourceVersion", ""))
        return {409, status_json(409, "Conflict",
                                 "Operation cannot be fulfilled on " + r.plural + " \"" + name +
                                     "\": the object has been modified; please apply your "
                                     "changes to the latest version and try again")};
      md["uid"] = stored.value("uid", "");
      md["creationTimestamp"] = stored.value("creationTimestamp", "");
    } else {
      md["uid"] = "uid-" + std::to_string(next_uid++);
      md["creationTimestamp"] = "2024-05-01T12:00:00Z";
    }
    ++rv;
    md["resourceVersion"] = std::to_string(rv);
    m[key] = obj;
    record_event(create ? "ADDED" : "MODIFIED", r.plural, obj);
    return {create ? 201u : 200u, obj};
  }

  std::pair<unsigned, json> list(const Route& r, std::map<std::string, std::string>& query) {
    if (owner->fail_lists.load() > 0) {
      --owner->fail_lists;
      return {500, status_json(500, "InternalError", "injected list failure")};
    }
    std::lock_guard lock(mu);
    if (owner->empty_lists.load() > 0) {
      --owner->empty_lists;
      return {200,
              {{"kind", "List"},
               {"apiVersion", r.api_version},
               {"metadata", {{"resourceVersion", std::to_string(rv)}}},
               {"items", json::array()}}};
    }
    size_t offset = 0;
    int64_t list_rv = rv;
    const std::string cont = query["continue"];
    if (!cont.empty()) {
      if (owner->expire_continue.exchange(false) || owner->expire_continues.load()) {
        return {410, status_json(410, "Expired",
                                 "The provided continue parameter is too old to display a "
                                 "consistent list result.")};
      }
      const size_t colon = cont.find(':');
      offset = std::stoul(cont.substr(0, colon));
      list_rv = std::stoll(cont.substr(colon + 1));
    }
    const size_t limit = query.count("limit") ? std::stoul(query["limit"]) : 0;
    json items = json::array();
    size_t index = 0;
    bool more = false;
    for (const auto& [key, obj] : objects[r.plural]) {
      if (!r.ns.empty() && obj["metadata"].value("namespace", "") != r.ns) continue;
      if (index++ < offset) continue;
      if (limit > 0 && items.size() >= limit) {
        more = true;
        break;
      }
      items.push_back(obj);
    }
    json md = {{"resourceVersion", std::to_string(list_rv)}};
    if (more)
      md["continue"] = std::to_string(offset + items.size()) + ":" + std::to_string(list_rv);
    return {200,
            {{"kind", "List"}, {"apiVersion", r.api_version}, {"metadata", md}, {"items", items}}};
  }

  std::pair<unsigned, json> patch_status(const Route& r, const std::string& ctype,
                                         const std::string& body) {
    if (ctype != "application/merge-patch+json") {
      return {415, status_json(415, "UnsupportedMediaType", "want merge-patch")};
    }
    json patch = json::parse(body, nullptr, false);
    if (patch.is_discarded() || !patch.is_object()) {
      return {400, status_json(400, "BadRequest", "patch is not JSON")};
    }
    std::lock_guard lock(mu);
    auto& m = objects[r.plural];
    auto it = m.find(r.ns.empty() ? r.name : r.ns + "/" + r.name);
    if (it == m.end()) return {404, status_json(404, "NotFound", r.name + " not found")};
    patches.push_back(body);
    // The status subresource ignores everything but .status.
    if (patch.contains("status")) {
      json only = {{"status", patch["status"]}};
      it->second.merge_patch(only);
    }
    ++rv;
    it->second["metadata"]["resourceVersion"] = std::to_string(rv);
    record_event("MODIFIED", r.plural, it->second);
    return {200, it->second};
  }

  asio::awaitable<bool> serve_watch(HttpConn& s, const Route& r,
                                    std::map<std::string, std::string>& query) {
    if (owner->fail_watches.load() > 0) {
      --owner->fail_watches;
      co_return co_await respond(s, 500,
                                 status_json(500, "InternalError", "injected watch failure"));
    }
    int64_t cursor = 0;
    bool gone = false;
    uint64_t bm_gen = 0, ex_gen = 0, k_gen = 0;
    {
      std::lock_guard lock(mu);
      const std::string from = query["resourceVersion"];
      cursor = from.empty() || from == "0" ? rv : std::stoll(from);
      gone = cursor < compacted_rv || owner->always_gone.load();
      bm_gen = bookmark_gen;
      ex_gen = expire_gen;
      k_gen = kick_gen;
    }
    if (owner->rv_too_large.exchange(false)) {
      json st = status_json(504, "Timeout",
                            "Too large resource version: " + std::to_string(cursor) +
                                ", current: " + std::to_string(cursor - 1));
      st["details"] = {
          {"causes",
           {{{"reason", "ResourceVersionTooLarge"}, {"message", "Too large resource version"}}}},
          {"retryAfterSeconds", 1}};
      co_return co_await respond(s, 504, st);
    }
    const std::string too_old = "too old resource version: " + std::to_string(cursor);
    if (gone && owner->gone_as_http.load()) {
      co_return co_await respond(s, 410, status_json(410, "Expired", too_old));
    }
    const std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if (!co_await s.write(head)) co_return false;
    // Open from here to its end: it took bookmark_gen, expire_gen and kick_gen above, so a
    // bookmark(), expire_watches() or kick() called once open_watches() counts it reaches it.
    struct Open {
      std::atomic<int>& n;
      explicit Open(std::atomic<int>& count) : n(count) { ++n; }
      Open(const Open&) = delete;
      Open& operator=(const Open&) = delete;
      ~Open() { --n; }
    } const open(open_watches);
    if (gone) {
      if (owner->bookmark_before_gone.load()) {
        json mark = {{"type", "BOOKMARK"},
                     {"object",
                      {{"kind", "ClusterImagePolicy"},
                       {"apiVersion", "sigil.dev/v1alpha1"},
                       {"metadata", {{"resourceVersion", std::to_string(cursor)}}}}}};
        co_await s.chunk(mark.dump() + "\n");
      }
      json ev = {{"type", "ERROR"}, {"object", status_json(410, "Expired", too_old)}};
      co_await s.chunk(ev.dump() + "\n");
      co_await s.write("0\r\n\r\n");
      co_return false;
    }
    if (owner->instant_end_watches.load() > 0) {
      --owner->instant_end_watches;
      co_await s.write("0\r\n\r\n");
      co_return false;
    }
    const bool bookmarks = query["allowWatchBookmarks"] == "true";
    int64_t timeout = query.count("timeoutSeconds") ? std::stoll(query["timeoutSeconds"]) : 60;
    const auto end_at = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
    if (owner->silent_watches.load()) {  // a half-open stream: headers, then nothing, ever
      while (!s.stopping()) co_await s.sleep(std::chrono::milliseconds(50));
      s.abort();
      co_return false;
    }
    // The knobs apply to the watch that is open when they are set (or the next one).
    int drop_budget = -1;  // events still to send before the connection is dropped
    bool mid = false;
    for (;;) {
      if (s.stopping()) {
        s.abort();
        co_return false;
      }
      std::vector<std::string> lines;
      std::vector<int64_t> rvs;
      bool send_bookmark = false, expire = false, kick = false;
      int64_t now_rv = 0;
      {
        std::lock_guard lock(mu);
        for (const auto& e : log) {
          if (e.rv <= cursor || e.plural != r.plural) continue;
          if (!r.ns.empty() && e.ns != r.ns) continue;
          lines.push_back(json{{"type", e.type}, {"object", e.object}}.dump() + "\n");
          rvs.push_back(e.rv);
        }
        now_rv = rv;
        send_bookmark = bookmark_gen != bm_gen;
        bm_gen = bookmark_gen;
        expire = expire_gen != ex_gen;
        kick = kick_gen != k_gen;
      }
      if (kick) {
        s.abort();
        co_return false;
      }
      const int knob = owner->drop_after_events.exchange(-1);
      if (knob >= 0) drop_budget = knob;
      if (owner->drop_mid_event.exchange(false)) mid = true;
      if (!lines.empty()) {
        if (drop_budget >= 0 || mid) {
          for (size_t i = 0; i < lines.size(); ++i) {
            if (drop_budget == 0) {
              s.abort();
              co_return false;
            }
            if (mid) {
              co_await s.chunk(lines[i].substr(0, lines[i].size() / 2));
              s.abort();
              co_return false;
            }
            if (!co_await s.chunk(lines[i])) co_return false;
            cursor = rvs[i];
            if (drop_budget > 0) --drop_budget;
            ++owner->events_sent_;
          }
          if (drop_budget == 0) {
            s.abort();
            co_return false;
          }
        } else {
          std::string all;
          for (const auto& l : lines) all += l;
          if (owner->split_events.load()) {
            // Cut the bytes anywhere: events split across chunks and several in one chunk.
            size_t pos = 0;
            while (pos < all.size()) {
              std::uniform_int_distribution<size_t> d(1, 97);
              const size_t n = std::min(all.size() - pos, d(rng));
              if (!co_await s.chunk(all.substr(pos, n))) co_return false;
              pos += n;
            }
          } else if (!co_await s.chunk(all)) {
            co_return false;
          }
          cursor = rvs.back();
          owner->events_sent_ += static_cast<int>(lines.size());
        }
      }
      if (send_bookmark && bookmarks) {
        json bm = {{"type", "BOOKMARK"},
                   {"object",
                    {{"kind", "Bookmark"},
                     {"apiVersion", r.api_version},
                     {"metadata", {{"resourceVersion", std::to_string(now_rv)}}}}}};
        if (!co_await s.chunk(bm.dump() + "\n")) co_return false;
        cursor = std::max(cursor, now_rv);
      }
      if (expire) {
        json ev = {{"type", "ERROR"},
                   {"object", status_json(410, "Expired", "too old resource version")}};
        co_await s.chunk(ev.dump() + "\n");
        co_await s.write("0\r\n\r\n");
        co_return false;
      }
      if (std::chrono::steady_clock::now() >= end_at) {
        co_return co_await s.write("0\r\n\r\n");
      }
      co_await s.sleep(5ms);
    }
  }
};

FakeApi::FakeApi(FakeOptions options) : impl_(std::make_shared<Impl>()) {
  impl_->owner = this;
  impl_->opts = options;
  impl_->token = options.token;
  FakeHttpOptions http;
  http.tls = true;
  http.require_client_cert = options.require_client_cert;
  impl_->http = std::make_unique<FakeHttpServer>(
      StreamHandler([i = impl_.get()](const HttpRequest& req, HttpConn& conn) {
        return i->handle(req, conn);
      }),
      http);
}

FakeApi::~FakeApi() {
  impl_->http->stop();  // every open watch ends; no handler runs after this
}

FakeHttpServer& FakeApi::http() {
  return *impl_->http;
}

int FakeApi::connections() const {
  return impl_->http->connections();
}

uint16_t FakeApi::port() const {
  return impl_->http->port();
}

kube::ClusterConfig FakeApi::config() const {
  kube::ClusterConfig c;
  c.host = "127.0.0.1";
  c.port = std::to_string(port());
  c.ca_pem = pki().ca_pem;
  c.token = impl_->opts.token;
  c.source = "fake";
  return c;
}

std::string FakeApi::create(const std::string& plural, json obj) {
  std::lock_guard lock(impl_->mu);
  ++impl_->rv;
  auto& md = obj["metadata"];
  md["resourceVersion"] = std::to_string(impl_->rv);
  md["uid"] = "uid-" + std::to_string(impl_->next_uid++);
  md["generation"] = 1;
  md["creationTimestamp"] = "2024-05-01T12:00:00Z";
  impl_->objects[plural][key_of(obj)] = obj;
  impl_->record_event("ADDED", plural, obj);
  return std::to_string(impl_->rv);
}

std::string FakeApi::update(const std::string& plural, const std::string& key,
                            const std::function<void(json&)>& mutate, bool bump_generation) {
  std::lock_guard lock(impl_->mu);
  auto& obj = impl_->objects[plural].at(key);
  mutate(obj);
  if (bump_generation) obj["metadata"]["generation"] = obj["metadata"].value("generation", 0) + 1;
  ++impl_->rv;
  obj["metadata"]["resourceVersion"] = std::to_string(impl_->rv);
  impl_->record_event("MODIFIED", plural, obj);
  return std::to_string(impl_->rv);
}

std::string FakeApi::remove(const std::string& plural, const std::string& key) {
  std::lock_guard lock(impl_->mu);
  auto& m = impl_->objects[plural];
  json obj = m.at(key);
  m.erase(key);
  ++impl_->rv;
  obj["metadata"]["resourceVersion"] = std::to_string(impl_->rv);
  impl_->record_event("DELETED", plural, obj);
  return std::to_string(impl_->rv);
}

void FakeApi::remove_silently(const std::string& plural, const std::string& key) {
  std::lock_guard lock(impl_->mu);
  impl_->objects[plural].erase(key);
  ++impl_->rv;
}

void FakeApi::compact() {
  std::lock_guard lock(impl_->mu);
  impl_->log.clear();
  impl_->compacted_rv = impl_->rv;
}

void FakeApi::bookmark() {
  std::lock_guard lock(impl_->mu);
  ++impl_->bookmark_gen;
}

void FakeApi::expire_watches() {
  std::lock_guard lock(impl_->mu);
  ++impl_->expire_gen;
}

int FakeApi::open_watches() const {
  return impl_->open_watches.load();
}

void FakeApi::kick() {
  std::lock_guard lock(impl_->mu);
  ++impl_->kick_gen;
}

std::optional<json> FakeApi::object(const std::string& plural, const std::string& key) const {
  std::lock_guard lock(impl_->mu);
  auto p = impl_->objects.find(plural);
  if (p == impl_->objects.end()) return std::nullopt;
  auto it = p->second.find(key);
  if (it == p->second.end()) return std::nullopt;
  return it->second;
}

std::string FakeApi::resource_version() const {
  std::lock_guard lock(impl_->mu);
  return std::to_string(impl_->rv);
}

void FakeApi::set_token(std::string token) {
  std::lock_guard lock(impl_->mu);
  impl_->token = std::move(token);
}

std::vector<Seen> FakeApi::seen() const {
  std::lock_guard lock(impl_->mu);
  return impl_->seen;
}

int FakeApi::count(const std::string& method, const std::string& path_prefix,
                   bool watch_only) const {
  std::lock_guard lock(impl_->mu);
  int n = 0;
  for (const auto& s : impl_->seen) {
    if (s.method != method || s.path.rfind(path_prefix, 0) != 0) continue;
    const bool is_watch = s.query.count("watch") != 0;
    if (watch_only != is_watch) continue;
    ++n;
  }
  return n;
}

std::vector<std::string> FakeApi::patches() const {
  std::lock_guard lock(impl_->mu);
  return impl_->patches;
}

}  // namespace sigil::test
