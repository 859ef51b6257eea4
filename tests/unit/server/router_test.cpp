// server/router: path + method -> handler, else 404 or 405 with Allow; no sockets involved.
#include <catch2/catch.hpp>

#include <string>

#include "run_coro.hpp"
#include "server/router.hpp"

namespace asio = boost::asio;
using sigil::server::HttpReply;
using sigil::server::Method;
using sigil::server::Router;
using sigil::server::RouteRequest;

namespace {

asio::awaitable<HttpReply> echo(RouteRequest req) {
  co_return HttpReply{200, "text/plain", req.path + ":" + req.body};
}

HttpReply dispatch(const Router& router, Method method, std::string path, std::string body) {
  RouteRequest req;
  req.method = method;
  req.path = std::move(path);
  req.body = std::move(body);
  return sigil::test::run_coro(router.dispatch(std::move(req)));
}

Router table() {
  Router r;
  r.post("/validate", echo);
  r.get("/healthz", echo);
  return r;
}

}  // namespace

TEST_CASE("router: a route answers its method, with the request's body", "[router]") {
  const Router r = table();
  const HttpReply v = dispatch(r, Method::post, "/validate", "review");
  CHECK(v.status == 200);
  CHECK(v.body == "/validate:review");
  CHECK(dispatch(r, Method::get, "/healthz", "").status == 200);
  // HEAD is GET without the body (the session drops it).
  CHECK(dispatch(r, Method::head, "/healthz", "").status == 200);
}

TEST_CASE("router: another method is 405 naming the allowed ones", "[router]") {
  const Router r = table();
  const HttpReply get_validate = dispatch(r, Method::get, "/validate", "");
  CHECK(get_validate.status == 405);
  CHECK(get_validate.allow == "POST");
  const HttpReply post_health = dispatch(r, Method::post, "/healthz", "x");
  CHECK(post_health.status == 405);
  CHECK(post_health.allow == "GET, HEAD");
  CHECK(dispatch(r, Method::head, "/validate", "").status == 405);
  CHECK(dispatch(r, Method::other, "/validate", "").status == 405);
}

TEST_CASE("router: paths match exactly", "[router]") {
  const Router r = table();
  for (const char* path : {"/", "/validatex", "/validate/", "/VALIDATE", "/healthz/x", ""}) {
    INFO(path);
    const HttpReply reply = dispatch(r, Method::post, path, "");
    CHECK(reply.status == 404);
    CHECK(reply.allow.empty());
  }
  HttpReply refusal;
  CHECK(r.find(Method::post, "/validate", &refusal) != nullptr);
  CHECK(r.find(Method::post, "/nope", &refusal) == nullptr);
  CHECK(refusal.status == 404);
}
