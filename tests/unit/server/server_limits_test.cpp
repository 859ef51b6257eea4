// The listener's limits against real TLS clients on 127.0.0.x (each address is its own peer):
// the body budget (503 with Retry-After, small reviews still served), connection caps per peer
// and in all (the idlest idle connection makes room, a busy one never does), and the timeouts
// that end slow or idle connections.
#include <catch2/catch.hpp>

#include <functional>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "server/server.hpp"
#include "test_support.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using nlohmann::json;
using namespace sigil::server;
using namespace sigil::test;

namespace {

constexpr size_t KiB = 1024;

// sigil's Server with the fake verifier on 127.0.0.1:0, run on two threads as in production.
class LimitedServer {
 public:
  explicit LimitedServer(ServerOptions o) : pki_(make_pki()), validator_(fake_.fn()) {
    o.listen = "127.0.0.1:0";
    o.cert_file = pki_.cert_file;
    o.key_file = pki_.key_file;
    server_ = std::make_unique<Server>(ioc_, o, validator_);
    auto st = server_->start();
    if (!st) FAIL("start: " << st.error().message);
    for (auto& t : threads_) t = std::thread([this] { ioc_.run(); });
  }
  ~LimitedServer() {
    server_->stop();
    const auto end = std::chrono::steady_clock::now() + 8s;
    while (!ioc_.stopped() && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(10ms);
    ioc_.stop();
    for (auto& t : threads_) t.join();
    std::error_code ec;
    std::filesystem::remove_all(pki_.dir, ec);
  }
  uint16_t port() const { return server_->port(); }
  ServerStats stats() const { return server_->stats(); }
  std::unique_ptr<RawTlsClient> client(const std::string& source = "127.0.0.1") {
    return std::make_unique<RawTlsClient>(port(), pki_.ca_pem, source);
  }
  // A legitimate admission (one signed image) on a new connection from source.
  ClientReply admit(const std::string& source, const std::string& uid) {
    return https_request_from(source, port(), pki_.ca_pem, "POST", "/validate",
                              pod_with_images({"r/good:1"}, uid), ClientOptions());
  }
  FakeVerifier& fake() { return fake_; }

 private:
  TestPki pki_;
  FakeVerifier fake_;
  Validator validator_;
  asio::io_context ioc_;
  std::unique_ptr<Server> server_;
  std::thread threads_[2];
};

// Polls cond until it holds or 10 s pass (the machine may be loaded; nothing sleeps for a
// result).
bool eventually(const std::function<bool()>& cond) {
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

void require_allowed(const ClientReply& r, const std::string& uid) {
  INFO(r.error << " " << r.body);
  REQUIRE(r.ok);
  REQUIRE(r.status == 200);
  auto resp = json::parse(r.body)["response"];
  CHECK(resp["uid"] == uid);
  CHECK(resp["allowed"] == true);
}

// A valid review of exactly size bytes (padded with a JSON field).
std::string review_of_size(size_t size, const std::string& uid) {
  std::string doc = pod_with_images({"r/good:1"}, uid);
  const std::string head = ",\"pad\":\"";
  const size_t pad = size - doc.size() - head.size() - 1;
  doc.insert(doc.size() - 1, head + std::string(pad, 'x') + "\"");
  REQUIRE(doc.size() == size);
  return doc;
}

ServerOptions budget_options() {
  ServerOptions o;
  o.body_budget = 1024 * KiB;  // bodies above 256 KiB may use 768 KiB of it
  o.max_body = 768 * KiB;
  o.stalled_body = 60s;  // no body is cut for being slow, however slow this machine is
  return o;
}

}  // namespace

TEST_CASE("limits: a body past the budget gets 503 with Retry-After before it is sent",
          "[server][limits]") {
  LimitedServer s(budget_options());
  // A holds 768 KiB of the budget, all large bodies may have: its Content-Length is reserved
  // before its body is read, with its decode (12 times, at most the large limit).
  const std::string a_body = review_of_size(700 * KiB, "u-a");
  auto a = s.client("127.0.0.2");
  REQUIRE(a->connect() == "");
  REQUIRE(
      a->send(post_head("/validate", std::to_string(a_body.size())) + a_body.substr(0, 100 * KiB)));
  REQUIRE(eventually([&] { return s.stats().body_bytes_in_use == 768 * KiB; }));

  // B announces 300 KiB: no room. It is answered at once, before sending its body.
  auto b = s.client("127.0.0.3");
  REQUIRE(b->connect() == "");
  REQUIRE(b->send(post_head("/validate", std::to_string(300 * KiB))));
  auto rb = b->read_response(5s);
  INFO(rb.error << rb.headers);
  REQUIRE(rb.ok);
  CHECK(rb.status == 503);
  CHECK_THAT(rb.headers, Catch::Contains("Retry-After: 1"));
  CHECK_THAT(rb.headers, Catch::Contains("Connection: close"));
  CHECK_THAT(rb.body, Catch::Contains("budget of 1048576 bytes"));
  CHECK(b->closed_within(5s));
  CHECK(s.stats().body_budget_refusals == 1);
  CHECK(s.fake().calls == 0);

  // A small review (the API server's usual) still fits: the reserve is for it.
  require_allowed(s.admit("127.0.0.4", "u-small"), "u-small");

  // A completes and is answered; its bytes go back to the budget.
  REQUIRE(a->send(a_body.substr(100 * KiB)));
  auto ra = a->read_response(10s);
  INFO(ra.error);
  REQUIRE(ra.ok);
  CHECK(ra.status == 200);
  CHECK_THAT(ra.body, Catch::Contains("\"uid\":\"u-a\""));
  CHECK(eventually([&] { return s.stats().body_bytes_in_use == 0; }));
}

TEST_CASE("limits: bodies withheld past stalled_body are cut when a review needs the budget",
          "[server][limits]") {
  // One peer announces small bodies (which may use the whole budget) and never sends them.
  // Without the cut, every review from the API server got 503 for as long as it kept that up:
  // a cluster-wide outage under failurePolicy Fail, everything admitted under Ignore.
  ServerOptions o = budget_options();
  o.stalled_body = 300ms;
  LimitedServer s(o);
  std::vector<std::unique_ptr<RawTlsClient>> holders;
  for (int i = 0; i < 4; ++i) {  // 4 x 256 KiB: the whole budget
    holders.push_back(s.client("127.0.0.2"));
    REQUIRE(holders.back()->connect() == "");
    REQUIRE(holders.back()->send(post_head("/validate", std::to_string(256 * KiB)) + "{"));
  }
  REQUIRE(eventually([&] { return s.stats().body_bytes_in_use == 1024 * KiB; }));
  // Young bodies are not cut: the review waits its turn (503, Retry-After).
  auto early = s.admit("127.0.0.4", "u-early");
  REQUIRE(early.ok);
  CHECK(early.status == 503);
  CHECK(s.stats().stalled_bodies_cut == 0);
  std::this_thread::sleep_for(400ms);
  // Withheld past stalled_body: cut, and the review is served.
  require_allowed(s.admit("127.0.0.4", "u-api"), "u-api");
  CHECK(s.stats().stalled_bodies_cut == 4);
  for (auto& h : holders) CHECK(h->closed_within(5s));
  CHECK(eventually([&] { return s.stats().body_bytes_in_use == 0; }));
}

TEST_CASE("limits: large bodies cannot take the reserve of small ones", "[server][limits]") {
  LimitedServer s(budget_options());
  std::vector<std::unique_ptr<RawTlsClient>> holders;
  for (int i = 0; i < 2; ++i) {  // 2 x 384 KiB = 768 KiB, all that large bodies may hold
    holders.push_back(s.client("127.0.0.2"));
    REQUIRE(holders.back()->connect() == "");
    REQUIRE(holders.back()->send(post_head("/validate", std::to_string(384 * KiB)) + "{"));
  }
  REQUIRE(eventually([&] { return s.stats().body_bytes_in_use == 768 * KiB; }));
  auto third = s.client("127.0.0.2");
  REQUIRE(third->connect() == "");
  REQUIRE(third->send(post_head("/validate", std::to_string(257 * KiB))));
  auto r = third->read_response(5s);
  REQUIRE(r.ok);
  CHECK(r.status == 503);
  // Small reviews keep being served, several at once.
  std::vector<std::thread> ts;
  std::vector<ClientReply> replies(4);
  for (size_t i = 0; i < replies.size(); ++i) {
    ts.emplace_back([&, i] { replies[i] = s.admit("127.0.0.5", "u-" + std::to_string(i)); });
  }
  for (auto& t : ts) t.join();
  for (size_t i = 0; i < replies.size(); ++i) require_allowed(replies[i], "u-" + std::to_string(i));
}

TEST_CASE("limits: a chunked body is counted as it arrives", "[server][limits]") {
  LimitedServer s(budget_options());
  auto a = s.client("127.0.0.2");
  REQUIRE(a->connect() == "");
  REQUIRE(a->send(post_head("/validate", std::to_string(700 * KiB)) + "{"));
  REQUIRE(eventually([&] { return s.stats().body_bytes_in_use == 768 * KiB; }));
  auto b = s.client("127.0.0.3");
  REQUIRE(b->connect() == "");
  REQUIRE(b->send(post_head("/validate", "")));
  const std::string chunk = "10000\r\n" + std::string(64 * KiB, ' ') + "\r\n";  // 64 KiB each
  for (int i = 0; i < 6; ++i) {      // 384 KiB in all, never the final chunk
    if (!b->send(chunk, 2s)) break;  // the server may have answered and stopped reading
  }
  auto r = b->read_response(5s);
  INFO(r.error << r.headers);
  REQUIRE(r.ok);
  CHECK(r.status == 503);
  CHECK_THAT(r.headers, Catch::Contains("Retry-After: 1"));
  CHECK(s.stats().body_budget_refusals == 1);
  // Alone, the same chunked body is read and judged.
  a.reset();
  REQUIRE(eventually([&] { return s.stats().body_bytes_in_use == 0; }));
  auto c = s.client("127.0.0.3");
  REQUIRE(c->connect() == "");
  const std::string review = pod_with_images({"r/good:1"}, "u-chunked");
  std::string body;
  char size_hex[16];
  std::snprintf(size_hex, sizeof size_hex, "%zx", review.size());
  body = std::string(size_hex) + "\r\n" + review + "\r\n";
  for (int i = 0; i < 5; ++i) body += chunk;  // whitespace after the JSON: still valid
  body += "0\r\n\r\n";
  REQUIRE(c->send(post_head("/validate", "") + body));
  auto rc = c->read_response(10s);
  INFO(rc.error);
  REQUIRE(rc.ok);
  CHECK(rc.status == 200);
  CHECK_THAT(rc.body, Catch::Contains("\"allowed\":true"));
}

TEST_CASE("limits: a chunk extension or trailer that never ends is refused, not buffered",
          "[server][limits]") {
  // Beast keeps a chunk header and a trailer in the read buffer until their line ends; neither
  // counts against the header or body limit, nor against the body budget. Without a cap on the
  // buffer, `1;aaaa...` grows it for as long as the client keeps sending.
  const bool trailer = GENERATE(false, true);
  CAPTURE(trailer);
  LimitedServer s(ServerOptions{});
  auto c = s.client("127.0.0.2");
  REQUIRE(c->connect() == "");
  REQUIRE(c->send(post_head("/validate", "") + (trailer ? "1\r\n{\r\n0\r\n" : "1;")));
  const std::string line =
      trailer ? "X-T: " + std::string(60 * KiB, 't') + "\r\n" : std::string(64 * KiB, 'a');
  size_t sent = 0;
  constexpr size_t kFlood = size_t{32} << 20;
  while (sent < kFlood && c->send(line, 2s)) sent += line.size();
  CHECK(sent < kFlood);
  CHECK(c->closed_within(5s));
  CHECK(s.stats().body_bytes_in_use == 0);
  // The server still answers.
  require_allowed(s.admit("127.0.0.3", "u-after"), "u-after");
}

TEST_CASE("limits: at the per-peer cap the peer's idlest idle connection is closed",
          "[server][limits]") {
  ServerOptions o;
  o.max_connections_per_peer = 3;
  LimitedServer s(o);
  // The API server's warm connection from another address, idle the whole time.
  auto warm = s.client("127.0.0.9");
  REQUIRE(warm->connect() == "");
  REQUIRE(eventually([&] { return s.stats().connections == 1; }));
  std::vector<std::unique_ptr<RawTlsClient>> flood;
  for (int i = 0; i < 3; ++i) {
    flood.push_back(s.client("127.0.0.2"));
    REQUIRE(flood.back()->connect() == "");
    REQUIRE(eventually([&] { return s.stats().connections == size_t(2 + i); }));
  }
  // A fourth from the same address: the first (the idlest) is closed, not the new one.
  flood.push_back(s.client("127.0.0.2"));
  REQUIRE(flood.back()->connect() == "");
  CHECK(flood[0]->closed_within(5s));
  CHECK(s.stats().evicted == 1);
  CHECK(s.stats().refused == 0);
  // The newest works, and so does the other address's idle connection.
  REQUIRE(flood.back()->send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK(flood.back()->read_response().status == 200);
  REQUIRE(warm->send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK(warm->read_response().status == 200);
  // Many more from the flooding address: the peer never holds more than 3, the other keeps its
  // connection, and a legitimate admission from the flooding address itself is served.
  for (int i = 0; i < 20; ++i) {
    flood.push_back(s.client("127.0.0.2"));
    REQUIRE(flood.back()->connect() == "");
  }
  require_allowed(s.admit("127.0.0.2", "u-same-peer"), "u-same-peer");
  CHECK(eventually([&] { return s.stats().connections <= 4; }));
  REQUIRE(warm->send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK(warm->read_response().status == 200);
}

TEST_CASE(
    "limits: a connection being judged, or sending its body, is not evicted; with all busy "
    "the new one is refused",
    "[server][limits]") {
  ServerOptions o;
  o.max_connections_per_peer = 2;
  o.stalled_body = 30s;  // the body being sent is not stalled yet (next test)
  LimitedServer s(o);
  // Two busy connections: one waits for its verdict (a stalled verifier, cut at the deadline),
  // one is sending its body.
  auto judging = s.client("127.0.0.2");
  REQUIRE(judging->connect() == "");
  const std::string stall = pod_with_images({"r/stall:1"}, "u-stall");
  REQUIRE(judging->send(post_head("/validate?timeout=3s", std::to_string(stall.size())) + stall));
  REQUIRE(eventually([&] { return s.fake().in_flight == 1; }));
  auto sending = s.client("127.0.0.2");
  REQUIRE(sending->connect() == "");
  REQUIRE(sending->send(post_head("/validate", "5000") + "{"));
  // Both bodies are held until their requests are answered.
  REQUIRE(eventually([&] { return s.stats().body_bytes_in_use == 5000 + stall.size(); }));
  // A third from that address has nothing idle to replace: it is refused.
  auto third = s.client("127.0.0.2");
  CHECK(third->connect() != "");
  CHECK(eventually([&] { return s.stats().refused == 1; }));
  CHECK(s.stats().evicted == 0);
  // The busy ones were left alone: the judged one gets its (TIMEOUT) answer.
  auto r = judging->read_response(10s);
  INFO(r.error);
  REQUIRE(r.ok);
  CHECK(r.status == 200);
  CHECK_THAT(r.body, Catch::Contains("\"uid\":\"u-stall\""));
  CHECK_THAT(r.body, Catch::Contains("TIMEOUT"));
  // Once answered it is idle again (the server marks it so right after writing the answer,
  // which the client may read first), and so the one to make room.
  std::unique_ptr<RawTlsClient> fourth;
  REQUIRE(eventually([&] {
    fourth = s.client("127.0.0.2");
    return fourth->connect() == "";
  }));
  CHECK(judging->closed_within(5s));
  CHECK(s.stats().evicted == 1);
}

TEST_CASE("limits: a body withheld past stalled_body is evicted when nothing is idle",
          "[server][limits]") {
  // Headers with Content-Length, then nothing: from a few addresses such connections filled
  // both caps, nothing could close them, and the API server's new connections were refused.
  ServerOptions o;
  o.max_connections = 3;
  o.stalled_body = 300ms;
  o.read_timeout = 20s;  // so that only the eviction closes them in time
  LimitedServer s(o);
  std::vector<std::unique_ptr<RawTlsClient>> withheld;
  for (const char* peer : {"127.0.0.2", "127.0.0.3", "127.0.0.4"}) {
    withheld.push_back(s.client(peer));
    REQUIRE(withheld.back()->connect() == "");
    REQUIRE(withheld.back()->send(post_head("/validate", "100") + "{"));
  }
  REQUIRE(eventually([&] { return s.stats().body_bytes_in_use == 300; }));
  std::this_thread::sleep_for(400ms);
  // A review from another address is admitted and answered: the longest-withheld body made
  // room (and its connection was closed).
  require_allowed(s.admit("127.0.0.5", "u-after-withheld"), "u-after-withheld");
  CHECK(s.stats().evicted >= 1);
  CHECK(s.stats().refused == 0);
  CHECK(withheld[0]->closed_within(5s));
}

TEST_CASE("limits: at the global cap the idlest idle connection of anyone is closed",
          "[server][limits]") {
  ServerOptions o;
  o.max_connections = 3;
  LimitedServer s(o);
  std::vector<std::unique_ptr<RawTlsClient>> cs;
  for (const char* ip : {"127.0.0.2", "127.0.0.3", "127.0.0.4"}) {
    cs.push_back(s.client(ip));
    REQUIRE(cs.back()->connect() == "");
    REQUIRE(eventually([&] { return s.stats().connections == cs.size(); }));
  }
  // The second is used, so the first and third are idler; the first idlest of all.
  REQUIRE(cs[1]->send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(cs[1]->read_response().status == 200);
  require_allowed(s.admit("127.0.0.5", "u-new"), "u-new");
  CHECK(cs[0]->closed_within(5s));
  CHECK(s.stats().evicted >= 1);
  REQUIRE(cs[1]->send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  CHECK(cs[1]->read_response().status == 200);
}

TEST_CASE("limits: a slow first request and an idle keep-alive connection are closed",
          "[server][limits]") {
  ServerOptions o;
  o.read_timeout = 500ms;
  o.idle_timeout = 800ms;
  LimitedServer s(o);
  SECTION("headers trickled one byte at a time (slowloris)") {
    auto c = s.client();
    REQUIRE(c->connect() == "");
    const std::string head = "POST /validate HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    bool closed = false;
    for (size_t i = 0; i < head.size() + 40 && !closed; ++i) {
      c->send(std::string(1, i < head.size() ? head[i] : 'a'), 1s);
      closed = c->closed_within(100ms);
    }
    CHECK(closed);  // long before the trickle (about 8 s) would have finished
  }
  SECTION("a keep-alive connection with nothing more to ask") {
    auto c = s.client();
    REQUIRE(c->connect() == "");
    REQUIRE(c->send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    REQUIRE(c->read_response().status == 200);
    CHECK(c->closed_within(5s));
  }
}

TEST_CASE("limits: a body that arrives just after the request's deadline is still answered",
          "[server][limits]") {
  // The body is read for at least kBodyReadFloor (1 s) past the deadline: a body already sent
  // when this server got to it late (a busy machine) gets an answer instead of a
  // connection closed without one (what a 13-client race test saw under ASan on two loaded
  // cores). One that is withheld is still cut, a bounded time after the deadline.
  ServerOptions o;
  o.safety_margin = 0ms;
  o.max_margin_fraction = 0;
  LimitedServer s(o);
  const std::string body = pod_with_images({"r/good:1"}, "u-late-body");
  const std::string head =
      "POST /validate?timeout=20ms HTTP/1.1\r\nHost: x\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  SECTION("sent 200 ms after its header: answered") {
    auto c = s.client();
    REQUIRE(c->connect() == "");
    REQUIRE(c->send(head));
    std::this_thread::sleep_for(200ms);
    REQUIRE(c->send(body));
    const auto r = c->read_response();
    INFO(r.error);
    REQUIRE(r.ok);
    CHECK(r.status == 200);
    const auto resp = json::parse(r.body)["response"];
    CHECK(resp["uid"] == "u-late-body");  // (its verdict is at hand: answered, not TIMEOUT)
  }
  SECTION("withheld: the connection is closed") {
    auto c = s.client();
    REQUIRE(c->connect() == "");
    REQUIRE(c->send(head));
    CHECK(c->closed_within(5s));
  }
}
