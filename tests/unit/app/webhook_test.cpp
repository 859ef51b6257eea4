// app/webhook: what every admission's verify context carries from the engine. The engine
// falls back to a budget per image when the context has none (verify/engine.cpp), so without
// this wiring a Pod of many images would get many budgets: the per-admission caps on signature
// checks and registry bytes would hold per image only.
#include <catch2/catch.hpp>
#include <chrono>
#include <future>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "app/webhook.hpp"
#include "common/clock.hpp"

using namespace sigil;
namespace asio = boost::asio;

namespace {

// A registry that is never reached: building a context reads none.
class NoRegistry final : public registry::Client {
 public:
  asio::awaitable<Result<std::string>> resolve(const oci::Reference&, Deadline,
                                               registry::PullCredentials) override {
    ++calls;
    co_return make_error(Errc::unavailable, "no registry");
  }
  asio::awaitable<Result<registry::ManifestResponse>> get_manifest(
      const std::string&, const std::string&, const std::string&, Deadline,
      registry::PullCredentials) override {
    ++calls;
    co_return make_error(Errc::unavailable, "no registry");
  }
  asio::awaitable<Result<std::string>> get_blob(const std::string&, const std::string&,
                                                const std::string&, int64_t, Deadline,
                                                registry::PullCredentials) override {
    ++calls;
    co_return make_error(Errc::unavailable, "no registry");
  }
  uint64_t request_count() const override { return calls; }
  uint64_t calls = 0;
};

}  // namespace

TEST_CASE("each admission's context has its own check and byte budgets, at the engine's caps") {
  NoRegistry reg;
  SystemClock clock;
  verify::EngineOptions options;
  options.max_admission_checks = 37;
  options.max_admission_bytes = 4096;
  verify::Engine engine(reg, clock, options);
  const app::PolicyStore store(nullptr);
  const app::Webhook hook(engine, store, nullptr);

  admission::Request request;
  request.uid = "u";
  request.namespace_ = "team-a";
  const Deadline deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  asio::io_context ioc;
  auto first = asio::co_spawn(ioc, hook.admission_context(request, deadline), asio::use_future);
  auto second = asio::co_spawn(ioc, hook.admission_context(request, deadline), asio::use_future);
  ioc.run();
  const verify::Context a = first.get();
  const verify::Context b = second.get();

  CHECK(a.namespace_ == "team-a");
  // One budget of each kind for all the admission's images, sized by the engine's options.
  REQUIRE(a.checks);
  REQUIRE(a.budget);
  CHECK(a.checks->limit() == 37);
  CHECK(a.checks->spent() == 0);
  CHECK(a.budget->limit() == 4096);
  CHECK(a.budget->used() == 0);
  // Fresh per admission: one Pod's spending never starves the next.
  REQUIRE(b.checks);
  REQUIRE(b.budget);
  CHECK(a.checks != b.checks);
  CHECK(a.budget != b.budget);
  // ...but one share of checks per namespace (EngineOptions::namespace_checks_per_second).
  REQUIRE(a.checks->share() != nullptr);
  CHECK(a.checks->share() == b.checks->share());
  CHECK(a.checks->share()->per_second() == options.namespace_checks_per_second);
  admission::Request other = request;
  other.namespace_ = "team-b";
  auto third = asio::co_spawn(ioc, hook.admission_context(other, deadline), asio::use_future);
  ioc.restart();
  ioc.run();
  const verify::Context c = third.get();
  REQUIRE(c.checks);
  CHECK(c.checks->share() != a.checks->share());
  CHECK(reg.calls == 0);
}
