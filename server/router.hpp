// server/router.hpp: which handler answers a request: path + method -> handler, else 404 / 405.
//
// Role: the routing table of one listener, in one place. The webhook listener's table is built
// by Server::Impl::routes() in server.cpp (POST /validate, /mutate, /validate-policy; GET
// /healthz, /readyz); another listener (a /metrics port) gets a Router of its own. A handler
// takes the request, its body moved in, and returns an awaitable reply; the session loop keeps
// everything about sockets, limits and deadlines and asks the Router only "what answers this".
// Paths match exactly (no prefixes, no patterns). No Beast here: server.hpp and the tests stay
// free of it.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "server/validator.hpp"

namespace sigil::server {

enum class Method { get, head, post, other };

struct RouteRequest {
  Method method = Method::other;
  std::string path;  // the target's path, without the query
  std::string body;
  Deadline deadline{};  // the request's hard deadline (request_budget)
};

// Must not throw; the awaitable it returns may (the session answers 500 then).
using RouteHandler = std::function<boost::asio::awaitable<HttpReply>(RouteRequest request)>;

// A route's synchronous path: the reply when it can be given without waiting, else nullopt
// (then the RouteHandler runs). Must not throw.
using RouteNow = std::function<std::optional<HttpReply>(const RouteRequest& request)>;

// A plain-text reply ("ok", "not found", ...), newline-terminated.
HttpReply text_reply(int status, std::string body);

class Router {
 public:
  // Serves POST path; `now`, when given, is asked first (answer_now).
  void post(std::string path, RouteHandler handler, RouteNow now = {});
  // Serves GET path, and HEAD with the same status and headers (the session drops the body).
  void get(std::string path, RouteHandler handler);

  // The handler for method and path, or nullptr with *refusal set: 404 for a path no route
  // serves, 405 naming the allowed methods (HttpReply::allow) for another method.
  const RouteHandler* find(Method method, std::string_view path, HttpReply* refusal) const;

  // The route's synchronous answer, or nullopt: no such route, no synchronous path, or it
  // needs waiting. The session asks this first, then dispatch().
  std::optional<HttpReply> answer_now(const RouteRequest& request) const;

  // The reply: the route's handler, or the 404 / 405.
  boost::asio::awaitable<HttpReply> dispatch(RouteRequest request) const;

 private:
  struct Route {
    Method method = Method::other;  // post or get (get also answers head)
    RouteHandler handler;
    RouteNow now;
  };
  std::map<std::string, Route, std::less<>> routes_;
};

}  // namespace sigil::server
