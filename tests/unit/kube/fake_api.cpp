#include "fake_api.hpp"

#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace sigil::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// ---- PKI ----

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("OpenSSL test PKI: ") + what);
}

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;

KeyPtr new_key() {
  KeyPtr k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), &EVP_PKEY_free);
  check(k != nullptr, "keygen");
  return k;
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, "extension");
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  check(ok == 1, "add extension");
}

enum class Kind { ca, server, client };

CertPtr make_cert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                  Kind kind) {
  CertPtr c(X509_new(), &X509_free);
  check(c != nullptr, "X509_new");
  static std::mt19937_64 rng{std::random_device{}()};
  check(X509_set_version(c.get(), 2) == 1, "version");
  check(ASN1_INTEGER_set_uint64(X509_get_serialNumber(c.get()), rng() >> 2) == 1, "serial");
  check(X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600) != nullptr, "notBefore");
  check(X509_gmtime_adj(X509_getm_notAfter(c.get()), 24 * 3600) != nullptr, "notAfter");
  check(X509_set_pubkey(c.get(), key) == 1, "pubkey");
  X509_NAME* name = X509_get_subject_name(c.get());
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                   0) == 1,
        "CN");
  X509* iss = issuer ? issuer : c.get();
  check(X509_set_issuer_name(c.get(), X509_get_subject_name(iss)) == 1, "issuer");
  if (kind == Kind::ca) {
    add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(c.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(c.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(c.get(), iss, NID_key_usage, "critical,digitalSignature");
    if (kind == Kind::server) {
      add_ext(c.get(), iss, NID_ext_key_usage, "serverAuth");
      add_ext(c.get(), iss, NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost");
    } else {
      add_ext(c.get(), iss, NID_ext_key_usage, "clientAuth");
    }
  }
  check(X509_sign(c.get(), issuer_key ? issuer_key : key, EVP_sha256()) > 0, "sign");
  return c;
}

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string cert_pem(X509* c) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  check(bio && PEM_write_bio_X509(bio.get(), c) == 1, "PEM cert");
  return bio_string(bio.get());
}

std::string key_pem(EVP_PKEY* k) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  check(bio && PEM_write_bio_PrivateKey(bio.get(), k, nullptr, nullptr, 0, nullptr, nullptr) == 1,
        "PEM key");
  return bio_string(bio.get());
}

Pki make_pki() {
  Pki p;
  auto ca_key = new_key();
  auto ca = make_cert(ca_key.get(), "sigil kube test CA", nullptr, nullptr, Kind::ca);
  p.ca_pem = cert_pem(ca.get());
  p.ca_key_pem = key_pem(ca_key.get());
  auto sk = new_key();
  auto sc = make_cert(sk.get(), "fake-apiserver", ca.get(), ca_key.get(), Kind::server);
  p.server_cert_pem = cert_pem(sc.get());
  p.server_key_pem = key_pem(sk.get());
  auto ck = new_key();
  auto cc = make_cert(ck.get(), "sigil-test-client", ca.get(), ca_key.get(), Kind::client);
  p.client_cert_pem = cert_pem(cc.get());
  p.client_key_pem = key_pem(ck.get());
  auto ok = new_key();
  auto oc = make_cert(ok.get(), "some other CA", nullptr, nullptr, Kind::ca);
  p.other_ca_pem = cert_pem(oc.get());
  return p;
}

// ---- HTTP helpers ----

std::string pct_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
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
  static const Pki p = make_pki();
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
  using Stream = beast::ssl_stream<beast::tcp_stream>;

  asio::io_context ioc;  // first: destroyed last
  FakeApi* owner = nullptr;
  FakeOptions opts;
  ssl::context ctx{ssl::context::tls_server};
  tcp::acceptor acceptor{ioc};
  std::thread thread;
  std::atomic<bool> stopping{false};

  mutable std::mutex mu;
  int64_t rv = 100;
  int64_t next_uid = 1;
  std::map<std::string, std::map<std::string, json>> objects;
  std::vector<Event> log;
  int64_t compacted_rv = 0;
  uint64_t bookmark_gen = 0, expire_gen = 0, kick_gen = 0;
  std::string token;
  std::vector<Seen> seen;
  std::vector<std::string> patches;
  std::mt19937 rng{12345};

  void record_event(const std::string& type, const std::string& plural, const json& obj) {
    Event e;
    e.rv = rv;
    e.plural = plural;
    e.ns = obj["metadata"].value("namespace", "");
    e.type = type;
    e.object = obj;
    log.push_back(std::move(e));
  }

  // ---- sessions ----

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, sock] = co_await acceptor.async_accept(use_tuple);
      if (ec || stopping) co_return;
      ++owner->accepted_;
      asio::co_spawn(ioc, session(std::move(sock)), asio::detached);
    }
  }

  static asio::awaitable<bool> write_raw(Stream& s, const std::string& data) {
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(data), use_tuple);
    (void)n;
    co_return !ec;
  }
  static asio::awaitable<bool> write_chunk(Stream& s, const std::string& data) {
    std::ostringstream o;
    o << std::hex << data.size() << "\r\n" << data << "\r\n";
    co_return co_await write_raw(s, o.str());
  }
  static void abort(Stream& s) {
    boost::system::error_code ignored;
    auto& sock = beast::get_lowest_layer(s).socket();
    sock.shutdown(tcp::socket::shutdown_both, ignored);
    sock.close(ignored);
  }

  static asio::awaitable<bool> respond(Stream& s, unsigned status, const json& body,
                                       bool keep_alive) {
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "application/json");
    res.keep_alive(keep_alive);
    res.body() = body.dump();
    res.prepare_payload();
    auto [ec, n] = co_await http::async_write(s, res, use_tuple);
    (void)n;
    co_return !ec;
  }

  asio::awaitable<void> session(tcp::socket sock) {
    Stream stream(beast::tcp_stream(std::move(sock)), ctx);
    beast::get_lowest_layer(stream).expires_after(5s);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, use_tuple);
    if (hec) co_return;
    beast::flat_buffer buf;
    for (;;) {
      http::request<http::string_body> req;
      beast::get_lowest_layer(stream).expires_after(60s);
      auto [ec, n] = co_await http::async_read(stream, buf, req, use_tuple);
      (void)n;
      if (ec || stopping) co_return;
      beast::get_lowest_layer(stream).expires_never();
      bool keep = co_await handle(stream, req);
      if (!keep || !req.keep_alive()) {
        abort(stream);
        co_return;
      }
    }
  }

  // Returns whether the connection stays usable.
  asio::awaitable<bool> handle(Stream& s, const http::request<http::string_body>& req) {
    Seen seen_req;
    std::string target(req.target());
    const size_t q = target.find('?');
    seen_req.path = target.substr(0, q);
    if (q != std::string::npos) {
      for (const auto& kv : split(std::string_view(target).substr(q + 1), '&')) {
        const size_t eq = kv.find('=');
        seen_req.query[pct_decode(kv.substr(0, eq))] =
            eq == std::string::npos ? "" : pct_decode(kv.substr(eq + 1));
      }
    }
    seen_req.method = std::string(req.method_string());
    seen_req.authorization = std::string(req[http::field::authorization]);
    seen_req.content_type = std::string(req[http::field::content_type]);
    seen_req.body = req.body();
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
        co_return co_await respond(s, 401, status_json(401, "Unauthorized", "Unauthorized"), true);
      }
    }
    Route r = parse_route(seen_req.path);
    if (!r.ok) {
      record(404);
      co_return co_await respond(s, 404, status_json(404, "NotFound", "no such path"), true);
    }
    if (req.method() == http::verb::get && r.name.empty() && watch) {
      record(200);
      co_return co_await serve_watch(s, r, seen_req.query);
    }
    if (req.method() == http::verb::get && r.name.empty()) {
      auto [status, body] = list(r, seen_req.query);
      record(status);
      co_return co_await respond(s, status, body, true);
    }
    if (req.method() == http::verb::get && r.sub.empty()) {
      if (r.name == "stall") {
        asio::steady_timer t(ioc, std::chrono::milliseconds(owner->stall_ms.load()));
        co_await t.async_wait(use_tuple);
      }
      if (owner->hide_gets.load() > 0) {  // a reader that lost a race: 404 though it exists
        --owner->hide_gets;
        record(404);
        co_return co_await respond(s, 404, status_json(404, "NotFound", "hidden"), true);
      }
      const int forced = owner->fail_gets_with.load();
      if (forced) {
        record(forced);
        co_return co_await respond(s, static_cast<unsigned>(forced),
                                   status_json(forced, "InternalError", "injected failure"), true);
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
      co_return co_await respond(s, status, body, true);
    }
    if (req.method() == http::verb::patch && r.sub == "status") {
      auto [status, body] = patch_status(r, seen_req.content_type, req.body());
      record(status);
      co_return co_await respond(s, status, body, true);
    }
    if ((req.method() == http::verb::post && r.name.empty()) ||
        (req.method() == http::verb::put && !r.name.empty() && r.sub.empty())) {
      auto [status, body] = write(r, req.method() == http::verb::post, req.body());
      record(static_cast<int>(status));
      co_return co_await respond(s, status, body, true);
    }
    record(405);
    co_return co_await respond(s, 405, status_json(405, "MethodNotAllowed", "not here"), true);
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
    size_t offset = 0;
    int64_t list_rv = rv;
    const std::string cont = query["continue"];
    if (!cont.empty()) {
      if (owner->expire_continue.exchange(false)) {
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

  asio::awaitable<bool> serve_watch(Stream& s, const Route& r,
                                    std::map<std::string, std::string>& query) {
    if (owner->fail_watches.load() > 0) {
      --owner->fail_watches;
      co_return co_await respond(s, 500,
                                 status_json(500, "InternalError", "injected watch failure"), true);
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
      co_return co_await respond(s, 504, st, true);
    }
    const std::string too_old = "too old resource version: " + std::to_string(cursor);
    if (gone && owner->gone_as_http.load()) {
      co_return co_await respond(s, 410, status_json(410, "Expired", too_old), true);
    }
    const std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if (!co_await write_raw(s, head)) co_return false;
    if (gone) {
      json ev = {{"type", "ERROR"}, {"object", status_json(410, "Expired", too_old)}};
      co_await write_chunk(s, ev.dump() + "\n");
      co_await write_raw(s, "0\r\n\r\n");
      co_return false;
    }
    if (owner->instant_end_watches.load() > 0) {
      --owner->instant_end_watches;
      co_await write_raw(s, "0\r\n\r\n");
      co_return false;
    }
    const bool bookmarks = query["allowWatchBookmarks"] == "true";
    int64_t timeout = query.count("timeoutSeconds") ? std::stoll(query["timeoutSeconds"]) : 60;
    const auto end_at = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
    // The knobs apply to the watch that is open when they are set (or the next one).
    int drop_budget = -1;  // events still to send before the connection is dropped
    bool mid = false;
    asio::steady_timer tick(ioc);
    for (;;) {
      if (stopping) {
        abort(s);
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
        abort(s);
        co_return false;
      }
      const int knob = owner->drop_after_events.exchange(-1);
      if (knob >= 0) drop_budget = knob;
      if (owner->drop_mid_event.exchange(false)) mid = true;
      if (!lines.empty()) {
        if (drop_budget >= 0 || mid) {
          for (size_t i = 0; i < lines.size(); ++i) {
            if (drop_budget == 0) {
              abort(s);
              co_return false;
            }
            if (mid) {
              co_await write_chunk(s, lines[i].substr(0, lines[i].size() / 2));
              abort(s);
              co_return false;
            }
            if (!co_await write_chunk(s, lines[i])) co_return false;
            cursor = rvs[i];
            if (drop_budget > 0) --drop_budget;
            ++owner->events_sent_;
          }
          if (drop_budget == 0) {
            abort(s);
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
              if (!co_await write_chunk(s, all.substr(pos, n))) co_return false;
              pos += n;
            }
          } else if (!co_await write_chunk(s, all)) {
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
        if (!co_await write_chunk(s, bm.dump() + "\n")) co_return false;
        cursor = std::max(cursor, now_rv);
      }
      if (expire) {
        json ev = {{"type", "ERROR"},
                   {"object", status_json(410, "Expired", "too old resource version")}};
        co_await write_chunk(s, ev.dump() + "\n");
        co_await write_raw(s, "0\r\n\r\n");
        co_return false;
      }
      if (std::chrono::steady_clock::now() >= end_at) {
        co_return co_await write_raw(s, "0\r\n\r\n");
      }
      tick.expires_after(5ms);
      co_await tick.async_wait(use_tuple);
    }
  }
};

FakeApi::FakeApi(FakeOptions options) : impl_(std::make_shared<Impl>()) {
  impl_->owner = this;
  impl_->opts = options;
  impl_->token = options.token;
  const Pki& p = pki();
  impl_->ctx.use_certificate_chain(asio::buffer(p.server_cert_pem));
  impl_->ctx.use_private_key(asio::buffer(p.server_key_pem), ssl::context::pem);
  if (options.require_client_cert) {
    impl_->ctx.add_certificate_authority(asio::buffer(p.ca_pem));
    impl_->ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  }
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([i = impl_.get()] { i->ioc.run(); });
}

FakeApi::~FakeApi() {
  impl_->stopping = true;
  std::promise<void> done;
  asio::post(impl_->ioc, [this, &done] {
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
    done.set_value();
  });
  done.get_future().wait();
  std::this_thread::sleep_for(20ms);  // watch loops notice `stopping` within 5 ms
  impl_->ioc.stop();
  impl_->thread.join();
}

uint16_t FakeApi::port() const {
  return impl_->acceptor.local_endpoint().port();
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
