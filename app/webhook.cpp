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
          }) {
  // /validate's synchronous path: a cached verdict for every image, a context at hand.
  // Cache hits are counted once the synchronous path answers (Engine::count_answered_now): one
  // that gives up on an admission asks verify() for every image again, which counts its own.
  const auto answered = [this](const std::vector<verify::Verdict>& verdicts) {
    engine_.count_answered_now(verdicts);
  };
  validator_.set_now(
      [this](const std::string& image, const verify::Context& context) {
        return engine_.verify_cached(image, store_.get(), context);
      },
      [this](const admission::Request& request) { return context_now(request); }, answered);
  // /mutate's: the same, for a Pod pinned to the digest it gets (the tag cache may answer).
  mutator_.set_now(
      [this](const std::string& image, const verify::Context& context) {
        return engine_.verify_cached(image, store_.get(), context);
      },
      [this](const admission::Request& request) {
        auto context = context_now(request);
        if (context) context->pins_digest = true;
        return context;
      },
      answered);
  // Each /validate verdict counted once by reason, whichever path judged it (/mutate is not
  // counted, so an image pinned then validated counts once).
  if (metrics_ != nullptr) {
    validator_.set_counter([this](const verify::Verdict& v) { metrics_->verdict(v); });
  }
}

asio::awaitable<verify::Verdict> Webhook::verify_image(std::string image,
                                                       const verify::Context& context,
                                                       Deadline deadline) const {
  // Not a coroutine: the engine's coroutine owns its copies of everything.
  return engine_.verify(std::move(image), store_.get(), deadline, context);
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
  context.checks = engine_.admission_checks(request.namespace_);
  co_return context;
}

std::optional<verify::Context> Webhook::context_now(const admission::Request& request) const {
  if (cluster_ != nullptr) return cluster_->context_now(request);
  verify::Context context;
  context.namespace_ = request.namespace_;
  // No budget: nothing answered without waiting reads a registry.
  return context;
}

}  // namespace sigil::app
