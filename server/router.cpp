// server/router.cpp: see router.hpp.
#include "server/router.hpp"

#include <utility>

namespace sigil::server {

namespace asio = boost::asio;

HttpReply text_reply(int status, std::string body) {
  return HttpReply{status, "text/plain; charset=utf-8", std::move(body) + "\n"};
}

void Router::post(std::string path, RouteHandler handler, RouteNow now) {
  routes_.insert_or_assign(std::move(path),
                           Route{Method::post, std::move(handler), std::move(now)});
}

void Router::get(std::string path, RouteHandler handler) {
  routes_.insert_or_assign(std::move(path), Route{Method::get, std::move(handler), {}});
}

std::optional<HttpReply> Router::answer_now(const RouteRequest& request) const {
  auto it = routes_.find(request.path);
  if (it == routes_.end() || !it->second.now || request.method != it->second.method) {
    return std::nullopt;
  }
  return it->second.now(request);
}

const RouteHandler* Router::find(Method method, std::string_view path, HttpReply* refusal) const {
  auto it = routes_.find(path);
  if (it == routes_.end() || !it->second.handler) {
    if (refusal) *refusal = text_reply(404, "not found");
    return nullptr;
  }
  const Route& route = it->second;
  const bool allowed =
      method == route.method || (route.method == Method::get && method == Method::head);
  if (allowed) return &route.handler;
  if (refusal) {
    if (route.method == Method::post) {
      *refusal = text_reply(405, "method not allowed: use POST");
      refusal->allow = "POST";
    } else {
      *refusal = text_reply(405, "method not allowed: use GET");
      refusal->allow = "GET, HEAD";
    }
  }
  return nullptr;
}

asio::awaitable<HttpReply> Router::dispatch(RouteRequest request) const {
  HttpReply refusal;
  const RouteHandler* handler = find(request.method, request.path, &refusal);
  if (handler == nullptr) co_return refusal;
  co_return co_await (*handler)(std::move(request));
}

}  // namespace sigil::server
