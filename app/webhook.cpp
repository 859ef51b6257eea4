// app/webhook.cpp: see webhook.hpp.
#include "app/webhook.hpp"

#include <utility>

#include "app/cluster.hpp"
#include "app/metrics.hpp"

namespace sigil::app {

namespace asio = boost::asio;

Webhook::Webhook(verify::Engine& engine, const PolicyStore& store, ClusterPolicies* cluster,
                 Metrics* metrics)
    : engine_(engine),
      store_(store),
      cluster_(cluster),
      metrics_(metrics),
      validator_(
          [this](std::string image, const verify::Context& context, Deadline deadline) {
            if (metrics_ != nullptr) return verify_counted(std::move(image), context, deadline);
            return verify_image(std::move(image), context, deadline);
          },
          [this](const admission::Request& request, Deadline deadline) {
            return admission_context(request, deadline);
          }),
      mutator_(
          // /mutate pins the Pod to the digest it gets: the tag cache may answer (pinning on).
          [this](std::string image, const verify::Context& context, Deadline deadline) {
            verify::Context pinning = context;
            pinning.pins_digest = true;
            return verify_image(std::move(image), pinning, deadline);
          },
          [this](const admission::Request& request, Deadline deadline) {
            return admission_context(request, deadline);
          }) {}

asio::awaitable<verify::Verdict> Webhook::verify_image(std::string image,
                                                       const verify::Context& context,
                                                       Deadline deadline) const {
  // Not a coroutine: the engine's coroutine owns its copies of everything.
  return engine_.verify(std::move(image), store_.get(), deadline, context);
}

asio::awaitable<verify::Verdict> Webhook::verify_counted(std::string image, verify::Context context,
                                                         Deadline deadline) const {
  // A coroutine of its own, owning its copies (the context by value).
  verify::Verdict v =
      co_await engine_.verify(std::move(image), store_.get(), deadline, std::move(context));
  metrics_->verdict(v);
  co_return v;
}

asio::awaitable<verify::Context> Webhook::admission_context(const admission::Request& request,
                                                            Deadline deadline) const {
  verify::Context context;
  if (cluster_ != nullptr) {
    context = co_await cluster_->context_for(request, deadline);
  } else {
    context.namespace_ = request.namespace_;
  }
  context.budget = engine_.admission_budget();
  co_return context;
}

}  // namespace sigil::app
