// The verify engine against an in-memory registry (registry::Client is an interface; the real
// HTTPS client is exercised against the real registry in tests/integration). Signatures are
// real: made here with OpenSSL over cosign's exact payload bytes.
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <thread>

#include "common/encoding.hpp"
#include "crypto/keys.hpp"
#include "log_capture.hpp"
#include "oci/manifest.hpp"
#include "oci/reference.hpp"
#include "policy/policy.hpp"
#include "run_coro.hpp"
#include "verify/engine.hpp"

namespace asio = boost::asio;
using namespace sigil;
using namespace std::chrono_literals;

namespace {

struct Key {
  std::shared_ptr<EVP_PKEY> pkey;
  std::string pub_pem;
};

Key make_key() {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  REQUIRE(k != nullptr);
  Key key{std::shared_ptr<EVP_PKEY>(k, EVP_PKEY_free), {}};
  BIO* bio = BIO_new(BIO_s_mem());
  REQUIRE(PEM_write_bio_PUBKEY(bio, k) == 1);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  key.pub_pem.assign(data, static_cast<size_t>(n));
  BIO_free(bio);
  return key;
}

std::string sign(const Key& key, const std::string& message) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  REQUIRE(EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key.pkey.get()) == 1);
  size_t len = 0;
  REQUIRE(EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(message.data()),
                         message.size()) == 1);
  std::string sig(len, '\0');
  REQUIRE(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                         reinterpret_cast<const unsigned char*>(message.data()),
                         message.size()) == 1);
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  return sig;
}

std::string payload_for(const std::string& digest) {
  return R"({"critical":{"identity":{"docker-reference":"reg.test/team/app"},"image":{"docker-manifest-digest":")" +
         digest + R"("},"type":"cosign container image signature"},"optional":null})";
}

std::string fake_digest(char c) {
  return "sha256:" + std::string(64, c);
}

// An in-memory registry: tags, manifests and blobs, with call counting and failure switches.
class FakeRegistry final : public registry::Client {
 public:
  std::map<std::string, std::string> tags;       // "repo:tag" -> digest
  std::map<std::string, std::string> manifests;  // "repo:ref" -> body
  std::map<std::string, std::string> blobs;      // digest -> body
  bool fail_unavailable = false;
  std::optional<Error> fail_error;  // resolve() of a tag answers this
  std::optional<Error> fail_reads;  // manifest and referrers reads answer this (tags resolve)
  std::string fail_message = "HTTP 503 from registry";
  std::chrono::milliseconds delay{0};
  std::map<std::string, std::chrono::milliseconds> host_delay;  // more, for one registry
  mutable std::atomic<uint64_t> calls{0};
  std::vector<registry::PullCredentials> seen_creds;  // per call, in order
  std::map<std::string, int> blob_fetches;            // digest -> GETs
  bool own_credentials = false;                       // sigil's own credentials cover reg.test
  bool sig_needs_creds = false;        // without pull credentials a .sig reads as 404 (not 401)
  Errc referrers = Errc::unsupported;  // what get_referrers answers
  std::atomic<uint64_t> referrer_calls{0};

  asio::awaitable<Result<std::string>> resolve(const oci::Reference& ref, sigil::Deadline,
                                               registry::PullCredentials creds) override {
    co_await pause(ref.registry);
    seen_creds.push_back(creds);
    if (ref.has_digest()) co_return ref.digest;
    ++calls;
    if (fail_error) co_return *fail_error;
    if (fail_unavailable) co_return make_error(Errc::unavailable, fail_message);
    auto it = tags.find(ref.repository + ":" + ref.tag);
    if (it == tags.end()) co_return make_error(Errc::not_found, "manifest unknown");
    co_return it->second;
  }
  asio::awaitable<Result<registry::ManifestResponse>> get_manifest(
      const std::string& registry, const std::string& repo, const std::string& reference,
      sigil::Deadline, registry::PullCredentials creds) override {
    co_await pause(registry);
    seen_creds.push_back(creds);
    ++calls;
    if (fail_unavailable) co_return make_error(Errc::unavailable, fail_message);
    if (fail_reads) co_return *fail_reads;
    if (sig_needs_creds && !creds && reference.size() > 4 &&
        reference.compare(reference.size() - 4, 4, ".sig") == 0) {
      co_return make_error(Errc::not_found, "manifest unknown");
    }
    auto it = manifests.find(repo + ":" + reference);
    if (it == manifests.end()) co_return make_error(Errc::not_found, "manifest unknown");
    // An index says so in its first members, as the tests write them.
    const bool index =
        it->second.find(R"("mediaType":"application/vnd.oci.image.index.v1+json")") < 64;
    co_return registry::ManifestResponse{"",
                                         index ? "application/vnd.oci.image.index.v1+json"
                                               : "application/vnd.oci.image.manifest.v1+json",
                                         it->second};
  }
  asio::awaitable<Result<std::string>> get_blob(const std::string& registry, const std::string&,
                                                const std::string& digest, int64_t, sigil::Deadline,
                                                registry::PullCredentials) override {
    co_await pause(registry);
    ++calls;
    ++blob_fetches[digest];
    auto it = blobs.find(digest);
    if (it == blobs.end()) co_return make_error(Errc::not_found, "blob unknown");
    co_return it->second;
  }
  asio::awaitable<Result<std::vector<oci::Descriptor>>> get_referrers(
      const std::string& registry, const std::string&, const std::string&, const std::string&,
      sigil::Deadline, registry::PullCredentials) override {
    co_await pause(registry);
    ++referrer_calls;  // not in `calls`: the older tests count the other requests
    if (fail_unavailable) co_return make_error(Errc::unavailable, fail_message);
    if (fail_reads) co_return *fail_reads;
    co_return make_error(referrers, "referrers");
  }
  uint64_t request_count() const override { return calls; }
  // The operator's registry is reg.test (a policy glob names it); any other is a pod's.
  bool operator_named(const std::string& registry) const override { return registry == "reg.test"; }
  bool has_credentials_for(const std::string& registry, const std::string&) const override {
    return own_credentials && registry == "reg.test";
  }
  // As the real client: the pod's credentials cover a repository they hold a key for, one
  // with a path that starts the repository's, or one for the whole registry.
  bool covers(const registry::PullCredentials& creds, const std::string& registry,
              const std::string& repository) const override {
    if (creds == nullptr) return false;
    if (auto h = creds->scoped.find(registry); h != creds->scoped.end()) {
      for (const auto& [path, c] : h->second) {
        if (repository.rfind(path, 0) == 0) return true;
      }
    }
    return creds->auths.count(registry) != 0;
  }

  // Attach a legacy cosign signature (one layer per entry) to image digest in repo.
  void attach(const std::string& repo, const std::string& image_digest,
              const std::vector<std::pair<std::string, std::string>>& payload_and_sig) {
    std::string layers;
    for (const auto& [payload, sig] : payload_and_sig) {
      std::string d = "sha256:" + crypto::sha256_hex(payload);
      blobs[d] = payload;
      if (!layers.empty()) layers += ",";
      layers += R"({"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":)" +
                std::to_string(payload.size()) + R"(,"digest":")" + d +
                R"(","annotations":{"dev.cosignproject.cosign/signature":")" + base64_encode(sig) +
                R"("}})";
    }
    std::string manifest =
        R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":")" +
        fake_digest('c') + R"("},"layers":[)" + layers + "]}";
    manifests[repo + ":" + oci::signature_tag(image_digest)] = manifest;
  }

 private:
  asio::awaitable<void> pause(const std::string& registry) {
    auto d = delay;
    if (auto it = host_delay.find(registry); it != host_delay.end()) d += it->second;
    if (d.count() > 0) {
      asio::steady_timer t(co_await asio::this_coro::executor, d);
      co_await t.async_wait(asio::use_awaitable);
    }
  }
};

// A PEM block as a YAML literal's lines under `data: |`, ten spaces in.
std::string indent_pem(const std::string& pem) {
  std::string out;
  for (size_t i = 0, start = 0; i <= pem.size(); ++i) {
    if (i == pem.size() || pem[i] == '\n') {
      if (i > start) out += "          " + pem.substr(start, i - start) + "\n";
      start = i + 1;
    }
  }
  return out;
}

std::shared_ptr<const policy::PolicySet> policies_for(
    const std::string& pub_pem, const char* mode = "enforce",
    policy::NoMatch no_match = policy::NoMatch::deny, uint64_t generation = 1,
    const std::string& glob = "reg.test/team/**") {
  const std::string indented = indent_pem(pub_pem);
  std::string yaml = std::string(R"(apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: team-images
spec:
  mode: )") + mode + R"(
  images:
    - glob: ")" + glob +
                     R"("
  authorities:
    - name: release-key
      key:
        data: |
)" + indented;
  auto parsed = policy::parse_policies(yaml, "test.yaml");
  if (!parsed.ok()) FAIL(parsed.error().message);
  return std::make_shared<const policy::PolicySet>(std::move(*parsed), no_match, generation);
}

verify::Verdict run(verify::Engine& engine, const std::string& image,
                    std::shared_ptr<const policy::PolicySet> policies,
                    std::chrono::milliseconds budget = 5s, verify::Context context = {}) {
  return sigil::test::run_coro(
      engine.verify(image, policies, std::chrono::steady_clock::now() + budget, context));
}

// Two verifications of one image at once: the leader starts first, the waiter joins it. Each
// with its own deadline (from now) and context; both verdicts, once both have finished.
std::pair<verify::Verdict, verify::Verdict> lead_and_join(
    verify::Engine& engine, const std::string& image,
    const std::shared_ptr<const policy::PolicySet>& policies, std::chrono::milliseconds leader_in,
    std::chrono::milliseconds waiter_in, const verify::Context& leader_context = {}) {
  asio::io_context io;
  const auto now = std::chrono::steady_clock::now();
  auto leader = asio::co_spawn(io, engine.verify(image, policies, now + leader_in, leader_context),
                               asio::use_future);
  auto waiter =
      asio::co_spawn(io, engine.verify(image, policies, now + waiter_in), asio::use_future);
  io.run();
  return {leader.get(), waiter.get()};
}

struct Fixture {
  FakeRegistry reg;
  ManualClock clock{std::chrono::system_clock::time_point(std::chrono::hours(24 * 365 * 50))};
  Key key = make_key();
  Key other = make_key();
  std::string digest = fake_digest('a');
  Fixture() { reg.tags["team/app:v1"] = digest; }
};

}  // namespace

TEST_CASE("a key-signed image is admitted, tag resolved to the signed digest") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  CHECK(v.outcome == verify::Outcome::allowed);
  CHECK(v.digest == f.digest);
  CHECK(verify::message(v).find("team-images") != std::string::npos);
  // HEAD + .sig manifest + payload blob, and the referrers tag schema (this fake registry has
  // no referrers API) looked at at the same time for sigstore bundles
  CHECK(f.reg.calls == 4);
}

TEST_CASE("an unsigned image is denied with NOT_SIGNED naming image and policy") {
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::not_signed);
  CHECK(verify::message(v).find("reg.test/team/app:v1") != std::string::npos);
  CHECK(verify::message(v).find("team-images") != std::string::npos);
}

TEST_CASE("a signature by an untrusted key is denied") {
  Fixture f;
  f.reg.attach("team/app", f.digest,
               {{payload_for(f.digest), sign(f.other, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason != verify::Reason::not_signed);
}

TEST_CASE("a signature copied from another image is denied") {
  Fixture f;
  std::string other_digest = fake_digest('b');
  // A valid signature by the trusted key, but over the other image's digest, placed under
  // this image's .sig tag.
  f.reg.attach("team/app", f.digest,
               {{payload_for(other_digest), sign(f.key, payload_for(other_digest))}});
  verify::Engine engine(f.reg, f.clock);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::digest_mismatch);
}

TEST_CASE("a tag moved to an unsigned digest after signing is denied") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);
  CHECK(run(engine, "reg.test/team/app:v1", policies).outcome == verify::Outcome::allowed);
  f.reg.tags["team/app:v1"] = fake_digest('d');  // moved, unsigned
  auto v = run(engine, "reg.test/team/app:v1", policies);
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.digest == fake_digest('d'));
  CHECK_FALSE(v.cached);
}

TEST_CASE("one good signature among bad ones admits the image") {
  Fixture f;
  f.reg.attach("team/app", f.digest,
               {{payload_for(f.digest), sign(f.other, payload_for(f.digest))},
                {payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  CHECK(run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem)).outcome ==
        verify::Outcome::allowed);
}

TEST_CASE("verdicts are cached by digest and policy generation, with a TTL") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock, verify::EngineOptions{});
  auto policies = policies_for(f.key.pub_pem);
  std::string pinned = "reg.test/team/app@" + f.digest;
  CHECK(run(engine, pinned, policies).outcome == verify::Outcome::allowed);
  uint64_t after_first = f.reg.calls;
  auto second = run(engine, pinned, policies);
  CHECK(second.outcome == verify::Outcome::allowed);
  CHECK(second.cached);
  CHECK(f.reg.calls == after_first);  // no registry traffic on the cached path

  // A new policy generation is a new key.
  auto v3 = run(engine, pinned, policies_for(f.key.pub_pem, "enforce", policy::NoMatch::deny, 2));
  CHECK_FALSE(v3.cached);

  f.clock.advance(std::chrono::seconds(301));
  auto v4 = run(engine, pinned, policies);
  CHECK_FALSE(v4.cached);
}

TEST_CASE("a namespace's flood of verdicts does not push another namespace's out") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::EngineOptions o;
  o.cache_capacity = 8;  // a quarter: 2
  verify::Engine engine(f.reg, f.clock, o);
  auto policies = policies_for(f.key.pub_pem);
  const std::string pinned = "reg.test/team/app@" + f.digest;
  verify::Context team;
  team.namespace_ = "team-a";
  REQUIRE(run(engine, pinned, policies, 5s, team).outcome == verify::Outcome::allowed);
  // Another namespace's pods name 40 unsigned images: 40 denials, each cached.
  verify::Context tenant;
  tenant.namespace_ = "tenant-x";
  for (int i = 0; i < 40; ++i) {
    const std::string digest = "sha256:" + std::string(60, 'b') + std::to_string(1000 + i);
    const auto v = run(engine, "reg.test/team/junk@" + digest, policies, 5s, tenant);
    REQUIRE(v.reason == verify::Reason::not_signed);
  }
  const uint64_t before = f.reg.calls;
  const auto again = run(engine, pinned, policies, 5s, team);
  CHECK(again.outcome == verify::Outcome::allowed);
  CHECK(again.cached);
  CHECK(f.reg.calls == before);
}

TEST_CASE("registry failures deny and are not cached") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);
  f.reg.fail_unavailable = true;
  auto v = run(engine, "reg.test/team/app:v1", policies);
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::registry_unavailable);
  f.reg.fail_unavailable = false;
  CHECK(run(engine, "reg.test/team/app:v1", policies).outcome == verify::Outcome::allowed);
}

TEST_CASE("warn mode admits with a warning") {
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem, "warn"));
  CHECK(v.outcome == verify::Outcome::warned);
  REQUIRE_FALSE(v.warnings.empty());
  CHECK(verify::warning_lines(v)[0].find("team-images") != std::string::npos);
}

TEST_CASE("an image no policy matches follows no-match-policy") {
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  auto deny = run(engine, "other.test/x:1", policies_for(f.key.pub_pem));
  CHECK(deny.outcome == verify::Outcome::denied);
  CHECK(deny.reason == verify::Reason::no_matching_policy);
  CHECK(
      run(engine, "other.test/x:1", policies_for(f.key.pub_pem, "enforce", policy::NoMatch::allow))
          .outcome == verify::Outcome::allowed);
  CHECK(run(engine, "other.test/x:1", policies_for(f.key.pub_pem, "enforce", policy::NoMatch::warn))
            .outcome == verify::Outcome::warned);
  CHECK(f.reg.calls == 0);
}

TEST_CASE("an invalid reference is denied, not crashed on") {
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  auto v = run(engine, "Reg.test/UPPER/..bad", policies_for(f.key.pub_pem));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::invalid_image);
}

TEST_CASE("identical concurrent verifications are coalesced") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  f.reg.delay = 50ms;
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);
  asio::io_context io;
  std::vector<std::future<verify::Verdict>> futures;
  for (int i = 0; i < 8; ++i) {
    futures.push_back(asio::co_spawn(io,
                                     engine.verify("reg.test/team/app@" + f.digest, policies,
                                                   std::chrono::steady_clock::now() + 5s),
                                     asio::use_future));
  }
  std::thread t2([&] { io.run(); });
  io.run();
  t2.join();
  for (auto& fu : futures) CHECK(fu.get().outcome == verify::Outcome::allowed);
  CHECK(f.reg.calls == 3);  // .sig manifest + payload + referrers tag schema, once
  CHECK(engine.stats().coalesced == 7);
}

TEST_CASE("a verification that outlives its deadline is denied with TIMEOUT for waiters") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  f.reg.delay = 300ms;
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);
  auto [leader, w] = lead_and_join(engine, "reg.test/team/app@" + f.digest, policies, 5s, 50ms);
  CHECK(leader.outcome == verify::Outcome::allowed);
  CHECK(w.outcome == verify::Outcome::denied);
  CHECK(w.reason == verify::Reason::timeout);
}

TEST_CASE("a leader that runs out of its own shorter time does not time its waiters out") {
  // Any client of the webhook port may post reviews of an image with a short ?timeout=: the
  // API server's own admissions of that image joined the doomed verification and were denied
  // TIMEOUT for as long as that went on. A waiter with time left verifies once more itself.
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  f.reg.delay = 150ms;  // three reads: about 450 ms
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);
  auto [leader, w] = lead_and_join(engine, "reg.test/team/app@" + f.digest, policies, 200ms, 10s);
  CHECK(leader.reason == verify::Reason::timeout);
  INFO(verify::message(w));
  CHECK(w.outcome == verify::Outcome::allowed);
  CHECK(engine.stats().coalesced == 1);
}

TEST_CASE("a leader whose own admission's budget ran out does not deny its waiters") {
  // The check budget is the admission's: a pod of many costly images spends it, and another
  // pod's admission of a shared image must not take that BUDGET_EXCEEDED as its own.
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  f.reg.delay = 100ms;
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);
  verify::Context spent;
  spent.checks = std::make_shared<sigil::WorkBudget>(0);
  auto [leader, w] =
      lead_and_join(engine, "reg.test/team/app@" + f.digest, policies, 10s, 10s, spent);
  CHECK(leader.reason == verify::Reason::budget_exceeded);
  INFO(verify::message(w));
  CHECK(w.outcome == verify::Outcome::allowed);
  CHECK(engine.stats().coalesced == 1);
}

TEST_CASE("a waiter whose leader's own budget ran out retries in its own namespace's flight") {
  // A namespace whose share of checks is spent can keep a verification of another namespace's
  // image in flight at almost no cost (each is refused at its first check). A waiter handed such
  // a leader's BUDGET_EXCEEDED retries in a flight of its own namespace's admissions, which the
  // spent namespace cannot lead.
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  f.reg.delay = 100ms;
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);
  verify::Context spent1, spent2, ours_context;
  spent1.namespace_ = spent2.namespace_ = "spent";
  spent1.checks = std::make_shared<sigil::WorkBudget>(0);
  spent2.checks = std::make_shared<sigil::WorkBudget>(0);
  ours_context.namespace_ = "team-b";
  const std::string image = "reg.test/team/app@" + f.digest;
  asio::io_context io;
  const auto until = std::chrono::steady_clock::now() + 10s;
  // The first leads; the second (spent too) and then ours wait. When the first fails, the second
  // is resumed first and leads its namespace's flight, which fails too; ours leads its own.
  auto l1 = asio::co_spawn(io, engine.verify(image, policies, until, spent1), asio::use_future);
  auto l2 = asio::co_spawn(io, engine.verify(image, policies, until, spent2), asio::use_future);
  auto ours =
      asio::co_spawn(io, engine.verify(image, policies, until, ours_context), asio::use_future);
  io.run();
  CHECK(l1.get().reason == verify::Reason::budget_exceeded);
  CHECK(l2.get().reason == verify::Reason::budget_exceeded);
  auto w = ours.get();
  INFO(verify::message(w));
  CHECK(w.outcome == verify::Outcome::allowed);
  CHECK(engine.stats().coalesced == 2);
}

TEST_CASE("waiters of a leader that failed on its own verify once, together, not each alone") {
  // A spent namespace leads; a rollout of 5 pods of another namespace waits for it. They retry
  // in one flight: one verification's reads, not five.
  Fixture f;
  const std::string payload = payload_for(f.digest);
  f.reg.attach("team/app", f.digest, {{payload, sign(f.key, payload)}});
  f.reg.delay = 100ms;
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);
  verify::Context spent, rollout;
  spent.namespace_ = "spent";
  spent.checks = std::make_shared<sigil::WorkBudget>(0);
  rollout.namespace_ = "team-b";
  const std::string image = "reg.test/team/app@" + f.digest;
  asio::io_context io;
  const auto until = std::chrono::steady_clock::now() + 10s;
  auto l = asio::co_spawn(io, engine.verify(image, policies, until, spent), asio::use_future);
  std::vector<std::future<verify::Verdict>> pods;
  for (int i = 0; i < 5; ++i) {
    pods.push_back(
        asio::co_spawn(io, engine.verify(image, policies, until, rollout), asio::use_future));
  }
  io.run();
  CHECK(l.get().reason == verify::Reason::budget_exceeded);
  for (auto& p : pods) CHECK(p.get().outcome == verify::Outcome::allowed);
  CHECK(engine.stats().coalesced == 5 + 4);
  CHECK(f.reg.blob_fetches["sha256:" + crypto::sha256_hex(payload)] <= 2);
}

TEST_CASE("a solo verification never ends another leader's flight") {
  // A waiter whose namespace's retry flight fails on its own leader's budget too verifies solo,
  // leading no flight. By the time it finishes, another waiter of its namespace may lead a
  // new retry flight, with waiters of its own: those wait for their leader, never taking the
  // solo one's verdict and ending its flight.
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  // Each read takes 500 ms, and a verification by digest reads twice (the .sig manifest with the
  // referrers lookup, then the payload): a spent leader fails at its first check, 1 s after it
  // leads. Namespace "a" is spent, "b" is the team's:
  //   0 s    spent-a leads the key's flight; spent-b, then solo (both b) join it
  //   1 s    spent-a fails; spent-b leads b's retry flight, solo joins it
  //   1.2 s  spent-a2 leads the key's flight again; x and y (b) join it at 1.3 and 1.4 s
  //   2 s    spent-b fails; solo verifies alone, until 3 s
  //   2.2 s  spent-a2 fails; x leads b's retry flight (the first is over), y joins it
  //   3 s    solo ends; x ends at 3.2 s and hands y its verdict
  // At least 200 ms lies between any two of these.
  f.reg.delay = 500ms;
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);
  auto spent_in = [](const char* ns) {
    verify::Context c;
    c.namespace_ = ns;
    c.checks = std::make_shared<sigil::WorkBudget>(0);
    return c;
  };
  verify::Context team;
  team.namespace_ = "b";
  const std::string image = "reg.test/team/app@" + f.digest;
  asio::io_context io;
  const auto t0 = std::chrono::steady_clock::now();
  const auto until = t0 + 20s;
  std::vector<std::string> order;  // who finished, in order
  auto run_as = [&](std::string who, std::chrono::milliseconds after,
                    verify::Context context) -> asio::awaitable<verify::Verdict> {
    asio::steady_timer t(co_await asio::this_coro::executor, t0 + after);
    co_await t.async_wait(asio::use_awaitable);
    auto v = co_await engine.verify(image, policies, until, context);
    order.push_back(who);
    co_return v;
  };
  auto spawn = [&](std::string who, std::chrono::milliseconds after, verify::Context context) {
    return asio::co_spawn(io, run_as(std::move(who), after, std::move(context)), asio::use_future);
  };
  auto spent_a = spawn("spent-a", 0ms, spent_in("a"));
  auto spent_b = spawn("spent-b", 50ms, spent_in("b"));  // joins first, so resumes first
  auto solo = spawn("solo", 100ms, team);
  auto spent_a2 = spawn("spent-a2", 1200ms, spent_in("a"));
  auto x = spawn("x", 1300ms, team);
  auto y = spawn("y", 1400ms, team);
  io.run();
  CHECK(spent_a.get().reason == verify::Reason::budget_exceeded);
  CHECK(spent_b.get().reason == verify::Reason::budget_exceeded);
  CHECK(spent_a2.get().reason == verify::Reason::budget_exceeded);
  CHECK(solo.get().outcome == verify::Outcome::allowed);
  CHECK(x.get().outcome == verify::Outcome::allowed);
  CHECK(y.get().outcome == verify::Outcome::allowed);
  CHECK(order == std::vector<std::string>{"spent-a", "spent-b", "spent-a2", "solo", "x", "y"});
  // spent-b, solo; x, y (the key's flights); solo (b's first); y (b's second)
  CHECK(engine.stats().coalesced == 6);
}

TEST_CASE("a waiter's TIMEOUT withholds a digest resolved with sigil's own credentials") {
  Fixture f;
  f.reg.own_credentials = true;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  // The tag resolves after two delays; the leader's reads take two more (.sig, then its
  // payload): the waiter's deadline (three) falls between, a delay of margin either side.
  f.reg.delay = 300ms;
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);
  auto [leader, w] = lead_and_join(engine, "reg.test/team/app:v1", policies, 10s, 900ms);
  CHECK(leader.outcome == verify::Outcome::allowed);
  REQUIRE(w.reason == verify::Reason::timeout);
  CHECK(w.digest == f.digest);
  CHECK(w.withheld);
}

TEST_CASE("a registry failure under warn-mode policies only warns, and is not cached") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  auto warn_only = policies_for(f.key.pub_pem, "warn");
  f.reg.fail_unavailable = true;
  auto v = run(engine, "reg.test/team/app:v1", warn_only);
  CHECK(v.outcome == verify::Outcome::warned);
  CHECK(v.reason == verify::Reason::registry_unavailable);
  REQUIRE_FALSE(v.warnings.empty());
  // An enforcing policy still fails closed.
  auto enforce = policies_for(f.key.pub_pem);
  CHECK(run(engine, "reg.test/team/app:v1", enforce).outcome == verify::Outcome::denied);
  f.reg.fail_unavailable = false;
  auto again = run(engine, "reg.test/team/app:v1", warn_only);
  CHECK(again.outcome == verify::Outcome::allowed);
  CHECK_FALSE(again.cached);
}

TEST_CASE("a tag that resolves to a non-sha256 digest is denied, never verified") {
  Fixture f;
  // A valid sha512 digest: the registry may answer it, but cosign signs sha256 digests and
  // the engine must not compare or fetch anything for another algorithm.
  f.reg.tags["team/app:v1"] = "sha512:" + std::string(128, 'e');
  verify::Engine engine(f.reg, f.clock);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::invalid_image);
  CHECK(f.reg.calls == 1);  // the HEAD only; no signature fetched
}

namespace {

verify::Context in_ns(std::string ns, registry::PullCredentials creds = {}, std::string id = {}) {
  verify::Context c;
  c.namespace_ = std::move(ns);
  c.credentials = std::move(creds);
  c.credentials_id = std::move(id);
  return c;
}

// A cluster policy (static pass for reg.test/team/**) plus a namespace policy of "team-a"
// requiring the key, for the same images.
std::shared_ptr<const policy::PolicySet> with_image_policy(const std::string& pub_pem,
                                                           const std::string& cluster_glob,
                                                           policy::NoMatch no_match) {
  const std::string indented = indent_pem(pub_pem);
  std::string yaml =
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: "
      "base}\nspec:\n  images: [{glob: \"" +
      cluster_glob +
      "\"}]\n  authorities: [{static: {action: pass}}]\n---\n"
      "apiVersion: sigil.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: signed, "
      "namespace: team-a}\nspec:\n  images:\n    - glob: \"reg.test/team/**\"\n  "
      "authorities:\n    - key:\n        data: |\n" +
      indented;
  auto parsed = policy::parse_policies(yaml, "test.yaml");
  if (!parsed.ok()) FAIL(parsed.error().message);
  return std::make_shared<const policy::PolicySet>(std::move(*parsed), no_match, 1);
}

}  // namespace

TEST_CASE("an ImagePolicy adds requirements in its namespace only") {
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  auto set = with_image_policy(f.key.pub_pem, "reg.test/**", policy::NoMatch::deny);
  // Unsigned: the cluster policy passes everyone, team-a's policy wants the key.
  auto elsewhere = run(engine, "reg.test/team/app:v1", set, 5s, in_ns("team-b"));
  CHECK(elsewhere.outcome == verify::Outcome::allowed);
  auto in_team = run(engine, "reg.test/team/app:v1", set, 5s, in_ns("team-a"));
  CHECK(in_team.outcome == verify::Outcome::denied);
  CHECK(in_team.reason == verify::Reason::not_signed);
  CHECK(verify::message(in_team).find("team-a/signed") != std::string::npos);
  // The cached team-b verdict was not reused for team-a (and the reverse).
  CHECK(run(engine, "reg.test/team/app:v1", set, 5s, in_ns("team-b")).outcome ==
        verify::Outcome::allowed);
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine fresh(f.reg, f.clock);  // team-a's denial is cached for a while in the first
  CHECK(run(fresh, "reg.test/team/app:v1", set, 5s, in_ns("team-a")).outcome ==
        verify::Outcome::allowed);
}

TEST_CASE("an ImagePolicy never stands in for a missing ClusterImagePolicy") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  // No cluster policy matches reg.test/team/**; team-a's (satisfied) policy must not admit it
  // past a cluster-wide deny.
  auto deny_set = with_image_policy(f.key.pub_pem, "other.test/**", policy::NoMatch::deny);
  auto v = run(engine, "reg.test/team/app:v1", deny_set, 5s, in_ns("team-a"));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::no_matching_policy);
  // With no-match allow, the namespace policy still applies (it adds requirements).
  auto allow_set = with_image_policy(f.key.pub_pem, "other.test/**", policy::NoMatch::allow);
  CHECK(run(engine, "reg.test/team/app:v1", allow_set, 5s, in_ns("team-a")).outcome ==
        verify::Outcome::allowed);
  f.reg.tags["team/unsigned:v1"] = fake_digest('d');
  auto unsigned_v = run(engine, "reg.test/team/unsigned:v1", allow_set, 5s, in_ns("team-a"));
  CHECK(unsigned_v.outcome == verify::Outcome::denied);
  CHECK(unsigned_v.reason == verify::Reason::not_signed);
}

TEST_CASE("the pod's pull credentials reach every registry call") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  auto creds = std::make_shared<registry::DockerConfig>();
  creds->auths["reg.test"] = registry::Credential{"pod-user", "pod-pass", ""};
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem), 5s,
               in_ns("default", creds, "pod-creds"));
  CHECK(v.outcome == verify::Outcome::allowed);
  REQUIRE(f.reg.seen_creds.size() >= 3);
  for (const auto& c : f.reg.seen_creds) CHECK(c == creds);
}

TEST_CASE("a verdict is kept per credentials when the pod's key covers a source's repository") {
  // The pod's pull secret has a key for reg.test/signatures only: it covers the authority's
  // source, not the image's repository. The verdict read with it is that credential's.
  Fixture f;
  f.reg.attach("signatures", f.digest,
               {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  const std::string indented = indent_pem(f.key.pub_pem);
  auto parsed = policy::parse_policies(
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: p}\nspec:\n"
      "  images: [{glob: \"reg.test/team/**\"}]\n  authorities:\n    - name: k\n"
      "      source: [{oci: reg.test/signatures}]\n      key:\n        data: |\n" +
          indented,
      "test.yaml");
  REQUIRE(parsed.ok());
  auto set =
      std::make_shared<const policy::PolicySet>(std::move(*parsed), policy::NoMatch::deny, 1);
  auto scoped = std::make_shared<registry::DockerConfig>();
  scoped->scoped["reg.test"]["signatures"] = registry::Credential{"sig-reader", "pw", ""};
  verify::Engine engine(f.reg, f.clock);
  const std::string pinned = "reg.test/team/app@" + f.digest;
  REQUIRE(run(engine, pinned, set, 5s, in_ns("team-a", scoped, "team-a|regcred@1")).outcome ==
          verify::Outcome::allowed);
  // The same credentials: answered from the cache.
  uint64_t before = f.reg.calls;
  CHECK(run(engine, pinned, set, 5s, in_ns("team-a", scoped, "team-a|regcred@1")).cached);
  CHECK(f.reg.calls == before);
  // None: verified afresh, never handed the other pod's verdict.
  const auto bare = run(engine, pinned, set, 5s, in_ns("team-b"));
  CHECK_FALSE(bare.cached);
  CHECK(f.reg.calls > before);
}

TEST_CASE("an authority's source: signatures from another repository, with its pull secrets") {
  Fixture f;
  // The signature lives in reg.test/signatures, not next to the image.
  f.reg.attach("signatures", f.digest,
               {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  const std::string indented = indent_pem(f.key.pub_pem);
  auto parse = [&](const std::string& source, uint64_t generation) {
    std::string yaml =
        "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: p}\nspec:\n"
        "  images: [{glob: \"reg.test/team/**\"}]\n  authorities:\n    - name: k\n" +
        source + "      key:\n        data: |\n" + indented;
    auto parsed = policy::parse_policies(yaml, "test.yaml");
    if (!parsed.ok()) FAIL(parsed.error().message);
    return std::make_shared<const policy::PolicySet>(std::move(*parsed), policy::NoMatch::deny,
                                                     generation);
  };
  auto own = parse("", 1);
  auto sourced = parse(
      "      source: [{oci: reg.test/signatures, signaturePullSecrets: [{name: sig-pull}]}]\n", 2);
  verify::Engine engine(f.reg, f.clock);
  CHECK(run(engine, "reg.test/team/app:v1", own).reason == verify::Reason::not_signed);

  auto sig_creds = std::make_shared<registry::DockerConfig>();
  sig_creds->auths["reg.test"] = registry::Credential{"sig-reader", "pw", ""};
  std::vector<std::string> asked;
  verify::Context ctx = in_ns("team-a");
  ctx.source_credentials = [&](std::vector<std::string> names,
                               sigil::Deadline) -> asio::awaitable<registry::PullCredentials> {
    asked.insert(asked.end(), names.begin(), names.end());
    co_return sig_creds;
  };
  f.reg.seen_creds.clear();
  auto v = run(engine, "reg.test/team/app:v1", sourced, 5s, ctx);
  CHECK(v.outcome == verify::Outcome::allowed);
  CHECK(asked == std::vector<std::string>{"sig-pull"});
  // The tag was resolved with the pod's credentials (none), the signature read with the
  // source's.
  REQUIRE(f.reg.seen_creds.size() >= 3);
  CHECK(f.reg.seen_creds.front() == nullptr);
  CHECK(f.reg.seen_creds.back() == sig_creds);

  // Another namespace's Secret of that name holds nothing that reads the signatures: its pod is
  // judged with what it holds, never with team-a's verdict.
  f.reg.sig_needs_creds = true;
  verify::Context other = in_ns("team-b");
  other.source_credentials = [&](std::vector<std::string> names,
                                 sigil::Deadline) -> asio::awaitable<registry::PullCredentials> {
    asked.insert(asked.end(), names.begin(), names.end());
    co_return nullptr;
  };
  auto theirs = run(engine, "reg.test/team/app:v1", sourced, 5s, other);
  CHECK(theirs.outcome == verify::Outcome::denied);
  CHECK(asked.size() == 2);
  CHECK(run(engine, "reg.test/team/app:v1", sourced, 5s, ctx).outcome == verify::Outcome::allowed);

  // A source repository is a repository: a tag or digest in it is refused.
  auto bad = policy::parse_policies(
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: p}\nspec:\n"
      "  images: [{glob: '**'}]\n  authorities: [{static: {action: pass}, source: [{oci: "
      "'reg.test/sigs:v1'}]}]\n",
      "t.yaml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("is not a repository") != std::string::npos);
}

// ------------------------------------------------------------------ verdict integrity (#9)

namespace {

std::string key_policy_doc(const std::string& name, const std::string& glob,
                           const std::string& pub_pem) {
  return "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: " +
         name + "\nspec:\n  images:\n    - glob: \"" + glob +
         "\"\n  authorities:\n    - name: " + name + "-key\n      key:\n        data: |\n" +
         indent_pem(pub_pem);
}

std::shared_ptr<const policy::PolicySet> set_of(const std::string& yaml) {
  auto parsed = policy::parse_policies(yaml, "test.yaml");
  if (!parsed.ok()) FAIL(parsed.error().message);
  return std::make_shared<const policy::PolicySet>(std::move(*parsed), policy::NoMatch::deny, 1);
}

// Two tags of one digest signed by the CI key only; the :prod tag also needs the release key.
struct TwoTags : Fixture {
  Key ci = make_key();
  Key release = make_key();
  std::shared_ptr<const policy::PolicySet> set =
      set_of(key_policy_doc("ci", "reg.test/team/**", ci.pub_pem) + "---\n" +
             key_policy_doc("release", "reg.test/team/app:prod", release.pub_pem));
  TwoTags() {
    reg.tags["team/app:dev"] = digest;
    reg.tags["team/app:prod"] = digest;
    reg.attach("team/app", digest, {{payload_for(digest), sign(ci, payload_for(digest))}});
  }
};

}  // namespace

TEST_CASE("a verdict is never shared between tags that match different policies") {
  TwoTags f;
  SECTION("the dev tag first") {
    verify::Engine engine(f.reg, f.clock);
    CHECK(run(engine, "reg.test/team/app:dev", f.set).outcome == verify::Outcome::allowed);
    auto prod = run(engine, "reg.test/team/app:prod", f.set);
    CHECK(prod.outcome == verify::Outcome::denied);
    CHECK(verify::message(prod).find("policy release") != std::string::npos);
    CHECK(verify::message(prod).find("reg.test/team/app:prod") != std::string::npos);
    auto pinned = run(engine, "reg.test/team/app:prod@" + f.digest, f.set);
    CHECK(pinned.outcome == verify::Outcome::denied);
  }
  SECTION("the prod tag first") {
    verify::Engine engine(f.reg, f.clock);
    CHECK(run(engine, "reg.test/team/app:prod", f.set).outcome == verify::Outcome::denied);
    auto dev = run(engine, "reg.test/team/app:dev", f.set);
    CHECK(dev.outcome == verify::Outcome::allowed);
    CHECK_FALSE(dev.cached);
  }
  SECTION("both at once (coalescing)") {
    f.reg.delay = 20ms;
    verify::Engine engine(f.reg, f.clock);
    asio::io_context io;
    const auto dl = std::chrono::steady_clock::now() + 5s;
    auto dev =
        asio::co_spawn(io, engine.verify("reg.test/team/app:dev", f.set, dl), asio::use_future);
    auto prod =
        asio::co_spawn(io, engine.verify("reg.test/team/app:prod", f.set, dl), asio::use_future);
    auto dev2 =
        asio::co_spawn(io, engine.verify("reg.test/team/app:dev", f.set, dl), asio::use_future);
    io.run();
    CHECK(dev.get().outcome == verify::Outcome::allowed);
    CHECK(prod.get().outcome == verify::Outcome::denied);
    auto second = dev2.get();
    CHECK(second.outcome == verify::Outcome::allowed);
    CHECK(verify::message(second).find("reg.test/team/app:dev") != std::string::npos);
  }
}

TEST_CASE("a coalesced or cached verdict names the image the request asked about") {
  TwoTags f;
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);  // one policy for all tags: they share
  auto a = run(engine, "reg.test/team/app:dev", policies);
  auto b = run(engine, "reg.test/team/app:prod", policies);
  REQUIRE(b.cached);
  CHECK(b.image == "reg.test/team/app:prod");
  CHECK(verify::message(b).find("reg.test/team/app:prod") != std::string::npos);
  CHECK(verify::message(b).find("app:dev") == std::string::npos);
  CHECK(a.reason == b.reason);
}

TEST_CASE("an answer read without the pod's credentials is never reused with them") {
  Fixture f;
  f.reg.sig_needs_creds = true;  // a registry that says 404, not 401, to the anonymous
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  auto creds = std::make_shared<registry::DockerConfig>();
  creds->auths["reg.test"] = registry::Credential{"pod-user", "pod-pass", ""};
  auto policies = policies_for(f.key.pub_pem);
  SECTION("anonymous first") {
    verify::Engine engine(f.reg, f.clock);
    CHECK(run(engine, "reg.test/team/app:v1", policies, 5s, in_ns("a")).reason ==
          verify::Reason::not_signed);
    auto with = run(engine, "reg.test/team/app:v1", policies, 5s, in_ns("a", creds, "a|pull"));
    CHECK(with.outcome == verify::Outcome::allowed);
    CHECK_FALSE(with.cached);
  }
  SECTION("with credentials first") {
    verify::Engine engine(f.reg, f.clock);
    CHECK(run(engine, "reg.test/team/app:v1", policies, 5s, in_ns("a", creds, "a|pull")).outcome ==
          verify::Outcome::allowed);
    auto without = run(engine, "reg.test/team/app:v1", policies, 5s, in_ns("b"));
    CHECK(without.outcome == verify::Outcome::denied);
    CHECK_FALSE(without.cached);
  }
}

TEST_CASE("a denial withholds what sigil read with credentials the pod does not hold") {
  Fixture f;
  f.reg.own_credentials = true;
  f.reg.attach("team/app", f.digest,
               {{payload_for(f.digest), sign(f.other, payload_for(f.digest))}});
  auto policies = policies_for(f.key.pub_pem);
  const std::string shown = short_digest(f.digest);
  SECTION("withheld by default") {
    verify::Engine engine(f.reg, f.clock);
    auto v = run(engine, "reg.test/team/app:v1", policies);
    CHECK(v.outcome == verify::Outcome::denied);
    CHECK(v.reason == verify::Reason::bad_signature);
    CHECK(verify::message(v).find(shown) == std::string::npos);
    CHECK(verify::message(v).find(f.digest.substr(7, 12)) == std::string::npos);
    CHECK(verify::message(v).find("withheld") != std::string::npos);
    CHECK(verify::message(v).find("policy team-images") != std::string::npos);
  }
  SECTION("withheld when the signatures cannot be read, and in the audit's digest") {
    // The tag resolved with sigil's credentials, then the reads failed: the digest is still not
    // the pod's to learn (a client of the port posting reviews of private tags asked for it).
    f.reg.fail_reads = make_error(sigil::Errc::unavailable, "HTTP 503 from registry");
    verify::Engine engine(f.reg, f.clock);
    auto v = run(engine, "reg.test/team/app:v1", policies);
    CHECK(v.reason == verify::Reason::registry_unavailable);
    CHECK(v.withheld);
  }
  SECTION("the pod's own credentials: everything is said") {
    verify::Engine engine(f.reg, f.clock);
    auto creds = std::make_shared<registry::DockerConfig>();
    creds->auths["reg.test"] = registry::Credential{"pod-user", "pod-pass", ""};
    auto v = run(engine, "reg.test/team/app:v1", policies, 5s, in_ns("a", creds, "a|pull"));
    CHECK(verify::message(v).find(shown) != std::string::npos);
  }
  SECTION("revealed when configured") {
    verify::EngineOptions o;
    o.reveal_private_details = true;
    verify::Engine engine(f.reg, f.clock, o);
    auto v = run(engine, "reg.test/team/app:v1", policies);
    CHECK(verify::message(v).find(shown) != std::string::npos);
    CHECK(verify::message(v).find("withheld") == std::string::npos);
  }
}

TEST_CASE("a registry failure is named by kind, never by its raw error") {
  Fixture f;
  f.reg.fail_unavailable = true;
  f.reg.fail_message = "cannot connect to 10.1.2.3:5000: Connection refused";
  verify::Engine engine(f.reg, f.clock);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  CHECK(v.reason == verify::Reason::registry_unavailable);
  CHECK(verify::message(v).find("Connection refused") == std::string::npos);
  CHECK(verify::message(v).find("10.1.2.3") == std::string::npos);
  CHECK(verify::message(v).find("registry reg.test") != std::string::npos);
}

TEST_CASE("a registry failure's message is logged on one line") {
  // What the message holds may one day be a registry's own text: it cannot forge a log line.
  sigil::test::LogCapture log;
  Fixture f;
  f.reg.fail_unavailable = true;
  f.reg.fail_message = "HTTP 503\nimage reg.test/team/app:v1 verified: allowed";
  verify::Engine engine(f.reg, f.clock);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  CHECK(v.reason == verify::Reason::registry_unavailable);
  INFO(log.text());
  CHECK(log.count("HTTP 503?image reg.test/team/app:v1 verified: allowed") >= 1);
  CHECK(log.count("\nimage reg.test/team/app:v1 verified") == 0);
}

TEST_CASE("a blob listed many times is read once") {
  Fixture f;
  std::vector<std::pair<std::string, std::string>> layers;
  for (int i = 0; i < 40; ++i) {
    // ECDSA signatures are randomised: 40 distinct signatures over one payload blob.
    layers.emplace_back(payload_for(f.digest), sign(f.other, payload_for(f.digest)));
  }
  layers.emplace_back(payload_for(f.digest), sign(f.key, payload_for(f.digest)));
  f.reg.attach("team/app", f.digest, layers);
  verify::Engine engine(f.reg, f.clock);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  CHECK(v.outcome == verify::Outcome::allowed);
  const std::string blob = "sha256:" + crypto::sha256_hex(payload_for(f.digest));
  CHECK(f.reg.blob_fetches[blob] == 1);
}

TEST_CASE("a blob listed again under a smaller size is charged what it holds") {
  // One real 200 KiB payload, then layers naming the same blob with "size": 0, each with its own
  // signature: every signature holds a copy of the 200 KiB payload, and each copy is charged.
  Fixture f;
  const std::string junk(200 * 1024, 'j');
  std::vector<std::pair<std::string, std::string>> layers;
  for (int i = 0; i < 30; ++i) layers.emplace_back(junk, sign(f.other, junk));
  f.reg.attach("team/app", f.digest, layers);
  std::string& manifest = f.reg.manifests["team/app:" + oci::signature_tag(f.digest)];
  const std::string declared = "\"size\":" + std::to_string(junk.size()) + ",";
  size_t at = manifest.find(declared);
  REQUIRE(at != std::string::npos);
  int lowered = 0;
  while ((at = manifest.find(declared, at + 1)) != std::string::npos) {
    manifest.replace(at, declared.size(), "\"size\":0,");
    ++lowered;
  }
  REQUIRE(lowered == 29);
  verify::EngineOptions opts;
  opts.max_admission_bytes = 4 * 1024 * 1024;  // 30 copies of 200 KiB are 6 MiB
  verify::Engine engine(f.reg, f.clock, opts);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  INFO(verify::message(v));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::budget_exceeded);
  CHECK(f.reg.blob_fetches["sha256:" + crypto::sha256_hex(junk)] == 1);
}

TEST_CASE("a .sig manifest is read up to 64 signatures, and the denial says so") {
  // A registry's .sig manifest fits thousands of layers in its 1 MiB: each would be a
  // signature check. Past the cap the rest are not read, and not silently.
  Fixture f;
  std::vector<std::pair<std::string, std::string>> layers;
  for (int i = 0; i < 70; ++i) {
    layers.emplace_back(payload_for(f.digest), sign(f.other, payload_for(f.digest)));
  }
  layers.emplace_back(payload_for(f.digest), sign(f.key, payload_for(f.digest)));  // the 71st
  f.reg.attach("team/app", f.digest, layers);
  verify::Engine engine(f.reg, f.clock);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK_THAT(verify::message(v),
             Catch::Contains("more than 64 signatures; the rest were not read"));
}

TEST_CASE("past the admission's byte budget the image is denied, and it is not cached") {
  Fixture f;
  std::vector<std::pair<std::string, std::string>> layers;
  for (int i = 0; i < 60; ++i) {
    std::string junk(200 * 1024, static_cast<char>('a' + i % 26));
    junk += std::to_string(i);
    layers.emplace_back(junk, sign(f.other, junk));
  }
  f.reg.attach("team/app", f.digest, layers);
  verify::Engine engine(f.reg, f.clock);
  // The operator's registry, or one a pod named (whose images also draw on a shared pool):
  // either way the denial names the admission's budget, not the process's.
  const std::string image =
      GENERATE(std::string("reg.test"), std::string("evil.test")) + "/team/app:v1";
  CAPTURE(image);
  // One set: the cache key names it.
  const auto policies = policies_for(f.key.pub_pem, "enforce", policy::NoMatch::deny, 1, "**");
  auto v = run(engine, image, policies);
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::budget_exceeded);
  CHECK_THAT(verify::message(v), Catch::Contains("would take this admission past sigil's 16 MiB"));
  const auto before = f.reg.calls.load();
  auto again = run(engine, image, policies);
  CHECK_FALSE(again.cached);
  CHECK(f.reg.calls > before);
}

TEST_CASE("a signature manifest is charged what its parse holds, not its body's size") {
  // 1 MiB of annotations is over ten MiB of map nodes, held while the signatures are read.
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  std::string& manifest = f.reg.manifests["team/app:" + oci::signature_tag(f.digest)];
  std::string flood;
  for (int i = 0; i < 80000; ++i) flood += "\"k" + std::to_string(i) + "\":\"\",";
  const std::string key = R"("annotations":{)";
  const size_t at = manifest.find(key);
  REQUIRE(at != std::string::npos);
  manifest.insert(at + key.size(), flood);
  REQUIRE(manifest.size() < 1024 * 1024);
  verify::EngineOptions opts;
  opts.max_admission_bytes = 4 * 1024 * 1024;
  verify::Engine engine(f.reg, f.clock, opts);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::budget_exceeded);
  CHECK(verify::message(v).find("holding signature manifest") != std::string::npos);
}

TEST_CASE("a referrers index and a bundle manifest are charged what their parse holds") {
  // As a .sig manifest (above): the tag-schema index that lists bundles, and each bundle
  // manifest read from it, are charged their parsed size, not their body's.
  Fixture f;
  std::string flood;
  for (int i = 0; i < 80000; ++i) flood += "\"k" + std::to_string(i) + "\":\"\",";
  flood.pop_back();
  const std::string bundle_digest = fake_digest('b');
  const std::string index =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)"
      R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
      bundle_digest +
      R"(","size":500,"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json")";
  const std::string schema_key = "team/app:" + oci::referrers_tag(f.digest);
  SECTION("the index") {
    f.reg.manifests[schema_key] = index + R"(,"annotations":{)" + flood + "}}]}";
  }
  SECTION("a bundle manifest it lists") {
    f.reg.manifests[schema_key] = index + "}]}";
    f.reg.manifests["team/app:" + bundle_digest] =
        R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
        R"("config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":")" +
        fake_digest('c') +
        R"("},"layers":[],"subject":{"mediaType":)"
        R"("application/vnd.oci.image.manifest.v1+json","size":500,"digest":")" +
        f.digest + R"("},"annotations":{)" + flood + "}}";
  }
  verify::EngineOptions opts;
  opts.max_admission_bytes = 4 * 1024 * 1024;
  verify::Engine engine(f.reg, f.clock, opts);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  INFO(verify::message(v));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::budget_exceeded);
}

TEST_CASE("a referrers index stays charged while the bundles it lists are read") {
  // The listing is kept while up to 16 bundle manifests are fetched one after another (each can
  // be slow): what it holds stays charged until then, not only while it is parsed.
  Fixture f;
  std::string listed;
  for (int i = 0; i < 4000; ++i) {
    if (!listed.empty()) listed += ",";
    listed += R"({"mediaType":"application/vnd.oci.image.manifest.v1+json;x=)" +
              std::string(120, 'x') + R"(","digest":"sha256:)" +
              crypto::sha256_hex(std::to_string(i)) +
              R"(","size":500,"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"})";
  }
  const std::string index =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)" +
      listed + "]}";
  f.reg.manifests["team/app:" + oci::referrers_tag(f.digest)] = index;
  auto parsed = oci::parse_manifest(index);
  REQUIRE(parsed.ok());
  const uint64_t held = oci::held_bytes(*parsed);
  REQUIRE(held > 1024 * 1024);
  verify::EngineOptions opts;
  // Room for the listing, and for one 1 MiB manifest read only when the listing is let go.
  opts.max_admission_bytes = held + 512 * 1024;
  verify::Engine engine(f.reg, f.clock, opts);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  INFO(verify::message(v));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::budget_exceeded);
  CHECK_THAT(verify::message(v), Catch::Contains("reading bundle manifests"));
}

namespace {

constexpr const char* kBundleType = "application/vnd.dev.sigstore.bundle.v0.3+json";

// Bundle referrers through the referrers tag schema: one index listing `n` bundle manifests,
// each with subject `subject`, one bundle layer of `declared_size` bytes and an unreadable
// blob, listed (and typed) as `listed_type`. Returns the bundle blobs' digests.
std::vector<std::string> attach_bundles(FakeRegistry& reg, const std::string& image_digest, int n,
                                        const std::string& subject, int64_t declared_size = 64,
                                        const std::string& listed_type = kBundleType) {
  const std::string bundle_type = kBundleType;
  std::string listed;
  std::vector<std::string> blobs;
  for (int i = 0; i < n; ++i) {
    const std::string blob = "not a bundle " + std::to_string(i);
    const std::string blob_digest = "sha256:" + crypto::sha256_hex(blob);
    reg.blobs[blob_digest] = blob;
    blobs.push_back(blob_digest);
    const std::string manifest =
        R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
        R"("artifactType":")" +
        listed_type +
        R"(","config":{"mediaType":)"
        R"("application/vnd.oci.empty.v1+json","size":2,"digest":")" +
        fake_digest('c') + R"("},"layers":[{"mediaType":")" + bundle_type + R"(","size":)" +
        std::to_string(declared_size) + R"(,"digest":")" + blob_digest +
        R"("}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":500,)"
        R"("digest":")" +
        subject + R"("}})";
    const std::string manifest_digest = "sha256:" + crypto::sha256_hex(manifest);
    reg.manifests["team/app:" + manifest_digest] = manifest;
    listed += std::string(listed.empty() ? "" : ",") +
              R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
              manifest_digest + R"(","size":)" + std::to_string(manifest.size()) +
              R"(,"artifactType":")" + listed_type + R"("})";
  }
  reg.manifests["team/app:" + oci::referrers_tag(image_digest)] =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[)" +
      listed + "]}";
  return blobs;
}

int fetched(const FakeRegistry& reg, const std::vector<std::string>& digests) {
  int n = 0;
  for (const auto& d : digests) {
    auto it = reg.blob_fetches.find(d);
    if (it != reg.blob_fetches.end()) n += it->second;
  }
  return n;
}

}  // namespace

TEST_CASE(
    "bundle referrers: what a registry lists is read within limits, and only for this image") {
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  SECTION("at most 16 bundles per image") {
    auto blobs = attach_bundles(f.reg, f.digest, 20, f.digest);
    auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
    CHECK(v.outcome == verify::Outcome::denied);
    CHECK(fetched(f.reg, blobs) == 16);
  }
  SECTION("a bundle over 1 MiB is not fetched") {
    auto blobs = attach_bundles(f.reg, f.digest, 1, f.digest, (1 << 20) + 1);
    auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
    CHECK(v.outcome == verify::Outcome::denied);
    CHECK(fetched(f.reg, blobs) == 0);
    CHECK_THAT(verify::message(v), Catch::Contains("bundle larger than the cap"));
  }
  SECTION("a bundle whose subject is another image is not fetched") {
    auto blobs = attach_bundles(f.reg, f.digest, 1, fake_digest('e'));
    auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
    CHECK(v.outcome == verify::Outcome::denied);
    CHECK(fetched(f.reg, blobs) == 0);
    CHECK_THAT(verify::message(v), Catch::Contains("its subject is not this image"));
  }
  SECTION("referrers of other types are not read, so they cannot crowd the bundles out") {
    // An image's SBOMs, scans and other signatures are its referrers too; a registry may list
    // hundreds. Only sigstore bundles count toward the 16.
    auto blobs = attach_bundles(f.reg, f.digest, 20, f.digest, 64, "application/spdx+json");
    auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
    CHECK(v.outcome == verify::Outcome::denied);
    CHECK(fetched(f.reg, blobs) == 0);
    CHECK_THAT(verify::message(v), !Catch::Contains("bundles; the rest were not read"));
  }
}

TEST_CASE("a .sig layer of another media type is not read as a signature") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  const std::string key = "team/app:" + oci::signature_tag(f.digest);
  std::string& manifest = f.reg.manifests[key];
  const std::string simple = "application/vnd.dev.cosign.simplesigning.v1+json";
  SECTION("as written by cosign it admits") {
    verify::Engine engine(f.reg, f.clock);
    CHECK(run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem)).outcome ==
          verify::Outcome::allowed);
  }
  SECTION("another media type: not fetched, not verified") {
    manifest.replace(manifest.find(simple), simple.size(), "application/octet-stream");
    verify::Engine engine(f.reg, f.clock);
    auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
    CHECK(v.outcome == verify::Outcome::denied);
    CHECK(fetched(f.reg, {"sha256:" + crypto::sha256_hex(payload_for(f.digest))}) == 0);
  }
}

TEST_CASE("past the process byte budget every image is denied, then admitted when it frees") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::EngineOptions o;
  o.max_process_bytes = 1u << 20;  // exactly one manifest read at a time
  verify::Engine engine(f.reg, f.clock, o);
  auto hog = engine.admission_budget();
  REQUIRE(hog->try_take(1));  // someone else holds a byte
  verify::Context ctx;
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem), 5s, ctx);
  CHECK(v.reason == verify::Reason::budget_exceeded);
  CHECK(verify::message(v).find("process budget") != std::string::npos);
  hog->give(1);
  CHECK(run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem)).outcome ==
        verify::Outcome::allowed);
}

TEST_CASE("an admission's signature checks are capped: denied BUDGET_EXCEEDED, not cached") {
  // Policies x authorities x signatures is the work one image asks for; a registry chooses the
  // signatures and a tenant the policies. Four signatures for other images come before the good
  // one here: five checks to pass.
  Fixture f;
  const std::string payload = payload_for(f.digest);
  std::vector<std::pair<std::string, std::string>> layers;
  for (const char* digest : {"b", "c", "d", "e"}) {  // another image's: each layer distinct
    const std::string elsewhere = payload_for(fake_digest(digest[0]));
    layers.emplace_back(elsewhere, sign(f.key, elsewhere));
  }
  layers.emplace_back(payload, sign(f.key, payload));
  f.reg.attach("team/app", f.digest, layers);
  verify::EngineOptions o;
  o.max_admission_checks = 4;
  verify::Engine engine(f.reg, f.clock, o);
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  INFO(verify::message(v));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::budget_exceeded);
  CHECK(verify::message(v).find("budget of 4 check units") != std::string::npos);
  // The admission's own budget (Context::checks) is what is spent, and the denial was not
  // remembered: with budget left the same image is admitted.
  verify::Context ctx;
  ctx.checks = std::make_shared<sigil::WorkBudget>(5);
  auto again = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem), 5s, ctx);
  CHECK(again.outcome == verify::Outcome::allowed);
  CHECK(ctx.checks->spent() == 5);
}

TEST_CASE("a namespace's share of signature checks: spent, it denies that namespace only") {
  // Whoever may create pods in one namespace chooses images (new digests, many signatures that
  // verify against nothing): each admission within its own budget, yet together they could
  // keep sigil's threads busy for every tenant. Each image here costs five checks (four
  // signatures for other images come before the good one); the namespace gets 12 at once and
  // one more a second.
  Fixture f;
  const auto five_checks = [&f](const std::string& tag, char d) {
    const std::string digest = fake_digest(d);
    f.reg.tags["team/app:" + tag] = digest;
    std::vector<std::pair<std::string, std::string>> layers;
    for (const char other : {'w', 'x', 'y', 'z'}) {
      const std::string elsewhere = payload_for(fake_digest(other));
      layers.emplace_back(elsewhere, sign(f.key, elsewhere));
    }
    layers.emplace_back(payload_for(digest), sign(f.key, payload_for(digest)));
    f.reg.attach("team/app", digest, layers);
  };
  for (const auto& [tag, d] : {std::pair{"v1", 'b'}, {"v2", 'c'}, {"v3", 'd'}, {"v4", 'e'}}) {
    five_checks(tag, d);
  }
  verify::EngineOptions o;
  o.namespace_checks_per_second = 1;
  o.namespace_checks_burst = 12;
  verify::Engine engine(f.reg, f.clock, o);
  const auto policies = policies_for(f.key.pub_pem);
  const auto in = [&engine](const std::string& ns) {
    verify::Context ctx;
    ctx.namespace_ = ns;
    ctx.checks = engine.admission_checks(ns);
    return ctx;
  };
  CHECK(run(engine, "reg.test/team/app:v1", policies, 5s, in("team-a")).outcome ==
        verify::Outcome::allowed);
  CHECK(run(engine, "reg.test/team/app:v2", policies, 5s, in("team-a")).outcome ==
        verify::Outcome::allowed);
  // Two units left: the third image stops after two checks, a denial that names the share.
  auto spent = run(engine, "reg.test/team/app:v3", policies, 5s, in("team-a"));
  INFO(verify::message(spent));
  CHECK(spent.outcome == verify::Outcome::denied);
  CHECK(spent.reason == verify::Reason::budget_exceeded);
  CHECK(verify::message(spent).find("the namespace's share of signature checks (1 check units a "
                                    "second, 12 at once) is spent") != std::string::npos);
  // Another namespace has its own share.
  CHECK(run(engine, "reg.test/team/app:v3", policies, 5s, in("team-b")).outcome ==
        verify::Outcome::allowed);
  CHECK(engine.namespace_shares() == 2);
  // Still spent for team-a; after five seconds, five units are back: one more image.
  CHECK(run(engine, "reg.test/team/app:v4", policies, 5s, in("team-a")).reason ==
        verify::Reason::budget_exceeded);
  f.clock.advance(5s);
  CHECK(run(engine, "reg.test/team/app:v4", policies, 5s, in("team-a")).outcome ==
        verify::Outcome::allowed);
}

TEST_CASE("namespace_checks_per_second 0: no share, only the admission's own budget") {
  Fixture f;
  verify::EngineOptions o;
  o.namespace_checks_per_second = 0;
  o.namespace_checks_burst = 10;
  verify::Engine engine(f.reg, f.clock, o);
  auto checks = engine.admission_checks("team-a");
  CHECK(checks->share() == nullptr);
  CHECK(checks->try_spend(100));  // more than the burst: no share to refuse it
  CHECK(engine.namespace_shares() == 0);
}

TEST_CASE("namespace shares are bounded: full ones are forgotten, past the bound one is shared") {
  Fixture f;
  verify::EngineOptions o;
  o.namespace_checks_per_second = 1;
  o.namespace_checks_burst = 100;
  verify::Engine engine(f.reg, f.clock, o);
  constexpr size_t kBound = 4096;
  for (size_t i = 0; i < kBound; ++i) {
    REQUIRE(engine.admission_checks("ns-" + std::to_string(i))->try_spend(1));
  }
  CHECK(engine.namespace_shares() == kBound);
  // None is full: a new namespace shares the overflow share, and nothing is forgotten.
  auto late = engine.admission_checks("late");
  auto later = engine.admission_checks("later");
  CHECK(engine.namespace_shares() == kBound);
  REQUIRE(late->share() != nullptr);
  CHECK(late->share() == later->share());
  CHECK(engine.admission_checks("ns-7")->share() != late->share());
  // A second later every share is full again: forgotten, and the new namespace has its own.
  f.clock.advance(1s);
  auto fresh = engine.admission_checks("fresh");
  CHECK(engine.namespace_shares() == 1);
  CHECK(fresh->share() != late->share());
}

TEST_CASE("registries pods name cannot take the operator's share of the process budget") {
  // A registry anyone can name stalls every read: each image on it holds what its reads were
  // charged until the deadline. However many such admissions, the operator's registry (reg.test
  // here) keeps reserved_process_bytes of the process budget.
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  f.reg.host_delay["evil.test"] = 1500ms;
  verify::EngineOptions o;
  o.max_process_bytes = 6u << 20;
  o.reserved_process_bytes = 2u << 20;  // pod-named registries share 4 MiB
  verify::Engine engine(f.reg, f.clock, o);
  const auto policies = policies_for(f.key.pub_pem, "enforce", policy::NoMatch::deny, 1, "**");
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  // Three stalled images on evil.test: each holds 2 MiB (its .sig read and its referrers read)
  // while it waits; the third cannot, as the first two fill what pod-named registries share.
  std::vector<std::future<verify::Verdict>> stalled;
  for (const char* repo : {"a", "b", "c"}) {
    stalled.push_back(
        asio::co_spawn(io,
                       engine.verify(std::string("evil.test/") + repo + "@" + fake_digest('e'),
                                     policies, std::chrono::steady_clock::now() + 5s),
                       asio::use_future));
  }
  std::this_thread::sleep_for(300ms);
  auto v = run(engine, "reg.test/team/app:v1", policies);
  INFO(verify::message(v));
  CHECK(v.outcome == verify::Outcome::allowed);
  guard.reset();
  int budget_denials = 0;
  for (auto& s : stalled) {
    auto sv = s.get();
    CHECK(sv.outcome == verify::Outcome::denied);
    if (sv.reason == verify::Reason::budget_exceeded) ++budget_denials;
  }
  runner.join();
  CHECK(budget_denials == 1);
}

TEST_CASE("'not signed' learnt from an ambiguous referrers answer is not cached") {
  Fixture f;
  f.reg.referrers = Errc::not_found;  // NAME_UNKNOWN: the registry may well have the API
  verify::Engine engine(f.reg, f.clock);
  const auto policies = policies_for(f.key.pub_pem);  // one set: the cache key names it
  auto v = run(engine, "reg.test/team/app:v1", policies);
  CHECK(v.reason == verify::Reason::not_signed);
  auto again = run(engine, "reg.test/team/app:v1", policies);
  CHECK_FALSE(again.cached);
  // A registry that plainly has no referrers API gives a definitive answer, remembered.
  f.reg.referrers = Errc::unsupported;
  verify::Engine other(f.reg, f.clock);
  CHECK(run(other, "reg.test/team/app:v1", policies).reason == verify::Reason::not_signed);
  CHECK(run(other, "reg.test/team/app:v1", policies).cached);
}

// ---------------------------------------------------------------------------------------------
// spec.requireDigest, and what /mutate relies on: a digest only when a policy matched.

namespace {

// team-images (the key, for reg.test/team/**) with requireDigest and the given mode, and an
// unrelated policy for reg.test/other/** without it.
std::shared_ptr<const policy::PolicySet> digest_required(const std::string& pub_pem,
                                                         const char* mode) {
  const std::string indented = indent_pem(pub_pem);
  const std::string key = "  authorities:\n    - key:\n        data: |\n" + indented;
  std::string yaml =
      std::string("apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\n") +
      "metadata: {name: team-images}\nspec:\n  requireDigest: true\n  mode: " + mode +
      "\n  images: [{glob: \"reg.test/team/**\"}]\n" + key +
      "---\napiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\n"
      "metadata: {name: other}\nspec:\n  images: [{glob: \"reg.test/other/**\"}]\n" +
      key;
  auto parsed = policy::parse_policies(yaml, "test.yaml");
  if (!parsed.ok()) FAIL(parsed.error().message);
  return std::make_shared<const policy::PolicySet>(std::move(*parsed), policy::NoMatch::deny, 1);
}

}  // namespace

TEST_CASE("requireDigest denies a tag-only reference before asking any registry") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  f.reg.tags["other/app:v1"] = f.digest;
  f.reg.attach("other/app", f.digest,
               {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  auto set = digest_required(f.key.pub_pem, "enforce");

  auto tag = run(engine, "reg.test/team/app:v1", set);
  CHECK(tag.outcome == verify::Outcome::denied);
  CHECK(tag.reason == verify::Reason::digest_required);
  CHECK(verify::message(tag) ==
        "image reg.test/team/app:v1 is referenced by tag; policy team-images requires a digest "
        "(reg.test/team/app:v1@sha256:...)");
  CHECK(tag.digest.empty());
  CHECK(f.reg.calls == 0);
  // An implied :latest is a tag too.
  CHECK(run(engine, "reg.test/team/app", set).reason == verify::Reason::digest_required);
  CHECK(f.reg.calls == 0);

  // By digest, with or without the tag: verified as usual.
  CHECK(run(engine, "reg.test/team/app@" + f.digest, set).outcome == verify::Outcome::allowed);
  CHECK(run(engine, "reg.test/team/app:v1@" + f.digest, set).outcome == verify::Outcome::allowed);
  // A policy without it still takes tags.
  CHECK(run(engine, "reg.test/other/app:v1", set).outcome == verify::Outcome::allowed);
}

TEST_CASE("requireDigest in warn mode warns, verifies the digest, and caches no warning") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  auto set = digest_required(f.key.pub_pem, "warn");

  auto tag = run(engine, "reg.test/team/app:v1", set);
  CHECK(tag.outcome == verify::Outcome::warned);
  CHECK(tag.image == "reg.test/team/app:v1");
  CHECK(tag.digest == f.digest);
  REQUIRE(tag.warnings.size() == 1);
  CHECK(verify::warning_lines(tag)[0].find(
            "is referenced by tag; policy team-images requires a digest") != std::string::npos);
  // The signed digest, by digest: admitted, and the tag's warning was not cached with it.
  auto pinned = run(engine, "reg.test/team/app:v1@" + f.digest, set);
  CHECK(pinned.outcome == verify::Outcome::allowed);
  CHECK(pinned.cached);
  CHECK(pinned.warnings.empty());
  // A tag moved to an unsigned digest: the warn-mode policy still only warns, about both.
  f.reg.tags["team/app:v1"] = fake_digest('d');
  auto moved = run(engine, "reg.test/team/app:v1", set);
  CHECK(moved.outcome == verify::Outcome::warned);
  CHECK(moved.digest == fake_digest('d'));
  CHECK(moved.warnings.size() == 2);
}

TEST_CASE("with pinning on, a Pod's new image by tag is denied NOT_PINNED before any registry read",
          "[pinning]") {
  // /mutate pins a Pod's new tag-only images; one that reaches /validate still by tag was not
  // pinned (its tag could not be resolved then, or a later webhook changed it). Resolving the
  // tag now would verify a digest the kubelet need not pull: a registry may fail /mutate's read,
  // answer /validate's with a signed digest, and serve the kubelet an unsigned one.
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::EngineOptions opts;
  opts.pinning = GENERATE(false, true);
  INFO("pinning " << opts.pinning);
  verify::Engine engine(f.reg, f.clock, opts);
  auto policies = policies_for(f.key.pub_pem, "enforce", policy::NoMatch::allow);
  verify::Context pod;
  pod.pod_image = true;

  auto tag = run(engine, "reg.test/team/app:v1", policies, 5s, pod);
  if (opts.pinning) {
    CHECK(tag.outcome == verify::Outcome::denied);
    CHECK(tag.reason == verify::Reason::not_pinned);
    CHECK(tag.digest.empty());
    CHECK(f.reg.calls == 0);
    CHECK(verify::message(tag) ==
          "image reg.test/team/app:v1 is referenced by tag and was not pinned to a digest by "
          "sigil's /mutate (pinning is on: its tag could not be resolved in time, or a later "
          "webhook changed the image); policy team-images admits a Pod's image only pinned: "
          "retry, or write reg.test/team/app:v1@sha256:...");
  } else {
    CHECK(tag.outcome == verify::Outcome::allowed);  // no /mutate: resolved fresh, as before
    CHECK(tag.digest == f.digest);
  }
  // What /mutate writes, by digest with or without the tag: verified as usual.
  CHECK(run(engine, "reg.test/team/app:v1@" + f.digest, policies, 5s, pod).outcome ==
        verify::Outcome::allowed);
  CHECK(run(engine, "reg.test/team/app@" + f.digest, policies, 5s, pod).outcome ==
        verify::Outcome::allowed);
  // Not a Pod's new image (a workload template, a container the Pod already ran): resolved.
  CHECK(run(engine, "reg.test/team/app:v1", policies).outcome == verify::Outcome::allowed);
  // An image no policy matches is not pinned by /mutate either: the no-match rule decides.
  CHECK(run(engine, "other.test/x:1", policies, 5s, pod).outcome == verify::Outcome::allowed);
}

TEST_CASE("with pinning on, a warn-mode policy warns NOT_PINNED and verifies the tag's digest",
          "[pinning]") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::EngineOptions opts;
  opts.pinning = true;
  verify::Engine engine(f.reg, f.clock, opts);
  verify::Context pod;
  pod.pod_image = true;
  auto warn = policies_for(f.key.pub_pem, "warn");
  auto v = run(engine, "reg.test/team/app:v1", warn, 5s, pod);
  CHECK(v.outcome == verify::Outcome::warned);
  CHECK(v.digest == f.digest);
  REQUIRE(v.warnings.size() == 1);
  CHECK(v.warnings[0].reason == verify::Reason::not_pinned);
  // requireDigest's own reason comes first when the policy asks for a digest itself.
  auto strict = digest_required(f.key.pub_pem, "enforce");
  CHECK(run(engine, "reg.test/team/app:v1", strict, 5s, pod).reason ==
        verify::Reason::digest_required);
}

TEST_CASE("a verdict carries a digest only when a policy matched and the tag resolved") {
  // What /mutate pins by: no digest, nothing pinned.
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  auto allow = policies_for(f.key.pub_pem, "enforce", policy::NoMatch::allow);
  auto unmatched = run(engine, "other.test/x:1", allow);
  CHECK(unmatched.outcome == verify::Outcome::allowed);
  CHECK(unmatched.digest.empty());
  CHECK(f.reg.calls == 0);
  auto missing = run(engine, "reg.test/team/nothing:v1", allow);
  CHECK(missing.reason == verify::Reason::image_not_found);
  CHECK(missing.digest.empty());
  auto matched = run(engine, "reg.test/team/app:v1", allow);
  CHECK(matched.reason == verify::Reason::not_signed);
  CHECK(matched.digest == f.digest);
}

TEST_CASE("a policy that cannot be compiled denies what it matches, and is never cached") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  for (const char* mode : {"enforce", "warn"}) {
    INFO(mode);
    auto base = policies_for(f.key.pub_pem, mode);
    std::vector<policy::Policy> ps = base->policies();
    ps[0].authorities.clear();
    ps[0].unavailable = "spec.authorities[0].key.secretRef: the Secret s/k does not exist";
    auto set = std::make_shared<const policy::PolicySet>(std::move(ps), policy::NoMatch::allow,
                                                         mode[0] == 'e' ? 7 : 8);
    const std::string pinned = "reg.test/team/app@" + f.digest;
    for (int i = 0; i < 2; ++i) {
      const uint64_t calls = f.reg.calls;
      auto v = run(engine, pinned, set);
      // Never cached, neither the denial nor the warning a warn-mode policy turns it into.
      CHECK_FALSE(v.cached);
      CHECK(f.reg.calls == calls);  // no signatures fetched for a policy that cannot judge them
      const std::string line =
          "is not admitted by policy team-images: the policy cannot be "
          "enforced yet: spec.authorities[0].key.secretRef: the Secret s/k "
          "does not exist";
      if (mode[0] == 'e') {
        CHECK(v.outcome == verify::Outcome::denied);
        CHECK(v.reason == verify::Reason::policy_unavailable);
        CHECK(verify::message(v).find(line) != std::string::npos);
      } else {
        CHECK(v.outcome == verify::Outcome::warned);
        REQUIRE_FALSE(v.warnings.empty());
        CHECK(verify::warning_lines(v)[0].find(line) != std::string::npos);
      }
    }
  }
}

namespace {

// The same policy as policies_for, its authority requiring a provenance attestation.
std::shared_ptr<const policy::PolicySet> attestation_policies(const std::string& pub_pem,
                                                              uint64_t generation) {
  const std::string indented = indent_pem(pub_pem);
  const std::string yaml =
      "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
      "metadata:\n  name: team-images\nspec:\n  images:\n    - glob: "
      "\"reg.test/team/**\"\n  authorities:\n    - name: release-key\n"
      "      attestations:\n        - {name: provenance, predicateType: "
      "slsaprovenance1}\n      key:\n        data: |\n" +
      indented;
  auto parsed = policy::parse_policies(yaml, "test.yaml");
  if (!parsed.ok()) FAIL(parsed.error().message);
  return std::make_shared<const policy::PolicySet>(std::move(*parsed), policy::NoMatch::deny,
                                                   generation);
}

// A cosign .att manifest for image_digest with one DSSE envelope layer signed by key.
void attach_attestation(FakeRegistry& reg, const std::string& repo, const std::string& image_digest,
                        const Key& key) {
  const std::string statement =
      R"({"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v1","subject":[{"name":"x","digest":{"sha256":")" +
      image_digest.substr(7) + R"("}}],"predicate":{}})";
  const std::string type = "application/vnd.in-toto+json";
  const std::string pae = "DSSEv1 " + std::to_string(type.size()) + " " + type + " " +
                          std::to_string(statement.size()) + " " + statement;
  const std::string envelope = R"({"payloadType":")" + type + R"(","payload":")" +
                               base64_encode(statement) + R"(","signatures":[{"keyid":"","sig":")" +
                               base64_encode(sign(key, pae)) + R"("}]})";
  const std::string d = "sha256:" + crypto::sha256_hex(envelope);
  reg.blobs[d] = envelope;
  std::string tag = oci::signature_tag(image_digest);
  tag.replace(tag.size() - 4, 4, ".att");
  reg.manifests[repo + ":" + tag] =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":")" +
      fake_digest('c') +
      R"("},"layers":[{"mediaType":"application/vnd.dsse.envelope.v1+json","size":)" +
      std::to_string(envelope.size()) + R"(,"digest":")" + d +
      R"(","annotations":{"dev.cosignproject.cosign/signature":"","predicateType":"https://slsa.dev/provenance/v1"}}]})";
}

}  // namespace

TEST_CASE("an authority with attestations reads the .att tag, and its verdicts are its own") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  // Signed, not attested: the signature policy admits; the attestation policy (the next
  // generation) must not reuse that verdict.
  auto signed_only = run(engine, "reg.test/team/app:v1",
                         policies_for(f.key.pub_pem, "enforce", policy::NoMatch::deny, 1));
  CHECK(signed_only.outcome == verify::Outcome::allowed);
  auto attested = attestation_policies(f.key.pub_pem, 2);
  auto v = run(engine, "reg.test/team/app:v1", attested);
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::missing_attestation);
  CHECK_THAT(verify::message(v), Catch::Contains("https://slsa.dev/provenance/v1"));

  attach_attestation(f.reg, "team/app", f.digest, f.key);
  f.clock.advance(std::chrono::minutes(10));  // past the denial's TTL
  auto ok = run(engine, "reg.test/team/app:v1", attested);
  INFO(verify::message(ok));
  CHECK(ok.outcome == verify::Outcome::allowed);
  // An attestation copied to another image's .att tag does not admit it.
  f.reg.tags["team/other:v1"] = fake_digest('e');
  f.reg.manifests["team/other:" + [&] {
    std::string t = oci::signature_tag(fake_digest('e'));
    return t.replace(t.size() - 4, 4, ".att");
  }()] = f.reg.manifests["team/app:" + [&] {
    std::string t = oci::signature_tag(f.digest);
    return t.replace(t.size() - 4, 4, ".att");
  }()];
  auto copied = run(engine, "reg.test/team/other:v1", attested);
  CHECK(copied.outcome == verify::Outcome::denied);
  CHECK(copied.reason == verify::Reason::digest_mismatch);
}

// ---------------------------------------------------------------------------- key.kms keys

namespace {

// A Key Vault in memory, as verify::KeyResolver sees it: `current` is the key's newest version;
// `cached` what key() hands out (KeyVaultKeys caches; a refetch reads `current`).
class FakeKeys final : public verify::KeyResolver {
 public:
  std::optional<crypto::PublicKey> current;
  std::optional<crypto::PublicKey> cached;
  std::string fail;  // key() fails with this when set and nothing is cached
  int key_calls = 0, refetches = 0;

  asio::awaitable<Result<crypto::PublicKey>> key(std::string uri, sigil::Deadline) override {
    ++key_calls;
    if (!cached && !fail.empty()) co_return make_error(Errc::unauthorized, uri + ": " + fail);
    if (!cached) cached = current;
    co_return *cached;
  }
  asio::awaitable<Result<std::optional<crypto::PublicKey>>> refetch_after_failure(
      std::string, sigil::Deadline) override {
    ++refetches;
    const bool changed = cached->spki_der() != current->spki_der();
    cached = current;
    co_return changed ? std::optional<crypto::PublicKey>(current)
                      : std::optional<crypto::PublicKey>();
  }
};

crypto::PublicKey public_key(const Key& k) {
  auto pk = crypto::PublicKey::from_pem(k.pub_pem);
  REQUIRE(pk.ok());
  return *pk;
}

std::shared_ptr<const policy::PolicySet> kms_policies(uint64_t generation = 1) {
  auto parsed = policy::parse_policies(R"(apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: vault-images
spec:
  images:
    - glob: "reg.test/team/**"
  authorities:
    - name: vault-key
      key:
        kms: azurekms://myvault.vault.azure.net/cosign
)",
                                       "test.yaml");
  if (!parsed.ok()) FAIL(parsed.error().message);
  return std::make_shared<const policy::PolicySet>(std::move(*parsed), policy::NoMatch::deny,
                                                   generation);
}

}  // namespace

TEST_CASE("key.kms: the resolver's key admits its signature, another key's is denied", "[kms]") {
  Fixture f;
  auto keys = std::make_shared<FakeKeys>();
  keys->current = public_key(f.key);
  verify::EngineOptions o;
  o.keys = keys;
  verify::Engine engine(f.reg, f.clock, o);
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  const std::string other_digest = fake_digest('b');
  f.reg.attach("team/app", other_digest,
               {{payload_for(other_digest), sign(f.other, payload_for(other_digest))}});
  auto ok = run(engine, "reg.test/team/app@" + f.digest, kms_policies());
  CHECK(ok.outcome == verify::Outcome::allowed);
  CHECK(ok.authority == "vault-key");
  auto bad = run(engine, "reg.test/team/app@" + other_digest, kms_policies());
  CHECK(bad.outcome == verify::Outcome::denied);
  CHECK(bad.reason == verify::Reason::bad_signature);
  CHECK(keys->refetches == 1);  // the failure made the engine look at the key again
}

TEST_CASE("key.kms: after a rotation, a failed verification refetches and the new key admits",
          "[kms]") {
  Fixture f;
  auto keys = std::make_shared<FakeKeys>();
  keys->current = public_key(f.key);
  verify::EngineOptions o;
  o.keys = keys;
  verify::Engine engine(f.reg, f.clock, o);
  auto policies = kms_policies();
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  const std::string old_pinned = "reg.test/team/app@" + f.digest;
  CHECK(run(engine, old_pinned, policies).outcome == verify::Outcome::allowed);
  CHECK(run(engine, old_pinned, policies).cached);

  keys->current = public_key(f.other);  // the vault's new version; the resolver has the old one
  const std::string new_digest = fake_digest('e');
  f.reg.attach("team/app", new_digest,
               {{payload_for(new_digest), sign(f.other, payload_for(new_digest))}});
  auto v = run(engine, "reg.test/team/app@" + new_digest, policies);
  CHECK(v.outcome == verify::Outcome::allowed);  // judged again with the refetched key
  CHECK(keys->refetches == 1);
  CHECK_FALSE(v.cached);
  // Not remembered under the old key's fingerprint, but under the new one from now on.
  CHECK_FALSE(run(engine, "reg.test/team/app@" + new_digest, policies).cached);
  CHECK(run(engine, "reg.test/team/app@" + new_digest, policies).cached);

  // The verdict made with the old key is retired with it: an image signed only by the old key
  // is judged again (same policy generation, same TTL) and denied.
  auto old = run(engine, old_pinned, policies);
  CHECK_FALSE(old.cached);
  CHECK(old.outcome == verify::Outcome::denied);
  CHECK(old.reason == verify::Reason::bad_signature);

  // The vault rolls back to the old version; a new image signed by it is judged, fails with the
  // newer key and refetches. The image signed only by the newer key must then be judged with
  // the old key, never answered by the verdict the newer key made during the first rotation
  // (it was judged while the old key's fingerprint was the one in use).
  keys->current = public_key(f.key);
  const std::string third = fake_digest('d');
  f.reg.attach("team/app", third, {{payload_for(third), sign(f.key, payload_for(third))}});
  CHECK(run(engine, "reg.test/team/app@" + third, policies).outcome == verify::Outcome::allowed);
  CHECK(keys->refetches == 3);  // one more for the old image judged above
  auto after = run(engine, "reg.test/team/app@" + new_digest, policies);
  CHECK_FALSE(after.cached);
  CHECK(after.outcome == verify::Outcome::denied);
}

TEST_CASE("key.kms: a key that cannot be read denies with one clear line, never cached", "[kms]") {
  Fixture f;
  auto keys = std::make_shared<FakeKeys>();
  keys->current = public_key(f.key);
  keys->fail = "Key Vault answered 403 (Forbidden: no get permission)";
  verify::EngineOptions o;
  o.keys = keys;
  verify::Engine engine(f.reg, f.clock, o);
  auto policies = kms_policies();
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  const std::string pinned = "reg.test/team/app@" + f.digest;
  auto v = run(engine, pinned, policies);
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::policy_unavailable);
  const std::string m = verify::message(v);
  CHECK(m.find('\n') == std::string::npos);
  CHECK_THAT(m, Catch::Contains("vault-images") &&
                    Catch::Contains("key azurekms://myvault.vault.azure.net/cosign could not be "
                                    "read") &&
                    Catch::Contains("403"));
  keys->fail.clear();  // the vault answers again: the next admission asks again
  auto again = run(engine, pinned, policies);
  CHECK_FALSE(again.cached);
  CHECK(again.outcome == verify::Outcome::allowed);
  CHECK(keys->key_calls == 2);
}

TEST_CASE("key.kms without a key resolver denies, never allows", "[kms]") {
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  auto v = run(engine, "reg.test/team/app@" + f.digest, kms_policies());
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(v.reason == verify::Reason::policy_unavailable);
  CHECK_THAT(verify::message(v), Catch::Contains("no Key Vault access is configured"));
}

TEST_CASE("REGISTRY_AUTH names every credential source tried, in sigil's words only") {
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  Error e = make_error(Errc::unauthorized,
                       "token service refused (HTTP 401); azure workload identity: AAD answered "
                       "401 (invalid_client: AADSTS700024 eyJhbGciOi.secret)");
  using K = registry::CredentialSourceKind;
  using O = registry::CredentialOutcome;
  auto trail = std::make_shared<registry::CredentialTrail>();
  trail->tried = {{K::pull_secret, O::none_for_host, 0},
                  {K::docker_config, O::none_for_host, 0},
                  {K::workload_identity, O::refused, 0},
                  {K::managed_identity, O::timeout, 0},
                  {K::anonymous, O::refused, 401}};
  e.detail = trail;
  f.reg.fail_error = e;
  auto v = run(engine, "reg.test/team/app:v1", policies_for(f.key.pub_pem));
  CHECK(v.reason == verify::Reason::registry_auth);
  const std::string m = verify::message(v);
  CHECK(m.find('\n') == std::string::npos);
  CHECK_THAT(m, Catch::Contains("registry reg.test refused access (tried pod pull secret: none for "
                                "this host; docker config: none for this host; azure workload "
                                "identity: refused; azure managed identity: timed out; anonymous: "
                                "refused (401))"));
  CHECK(m.find("AADSTS") == std::string::npos);
  CHECK(m.find("eyJ") == std::string::npos);
}

// cache.staleIfError (verify/stale.hpp): a registry outage during steady traffic.
namespace {

verify::EngineOptions stale_options(bool pinning) {
  verify::EngineOptions o;
  o.cache_ttl = 10s;
  o.stale_if_error = 1h;
  o.pinning = pinning;
  return o;
}

}  // namespace

TEST_CASE("staleIfError: by digest, an outage admits on the last allow with a warning, then denies",
          "[stale]") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock, stale_options(false));
  auto policies = policies_for(f.key.pub_pem);
  const std::string pinned = "reg.test/team/app@" + f.digest;
  REQUIRE(run(engine, pinned, policies).outcome == verify::Outcome::allowed);

  f.reg.fail_unavailable = true;
  f.clock.advance(12min);  // past the verdict cache's TTL, inside the grace period
  auto v = run(engine, pinned, policies);
  CHECK(v.outcome == verify::Outcome::warned);
  CHECK(v.reason == verify::Reason::registry_unavailable);
  REQUIRE(v.stale);
  CHECK(v.digest == f.digest);
  CHECK_FALSE(v.cacheable);
  REQUIRE(verify::warning_lines(v).size() == 1);
  CHECK(verify::warning_lines(v)[0].rfind("registry unreachable; admitted on a verdict from 12m "
                                          "ago (cache.staleIfError=1h)",
                                          0) == 0);
  CHECK(engine.stats().stale_registry_unavailable == 1);
  // Not cached: the next admission asks the registry again.
  const uint64_t before = f.reg.calls;
  CHECK(run(engine, pinned, policies).stale);
  CHECK(f.reg.calls > before);

  f.clock.advance(48min + 1s);  // past the grace period (measured from the verification)
  auto late = run(engine, pinned, policies);
  CHECK(late.outcome == verify::Outcome::denied);
  CHECK(late.reason == verify::Reason::registry_unavailable);
  CHECK_FALSE(late.stale);
}

TEST_CASE("staleIfError: a timeout qualifies too; off by default", "[stale]") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  auto policies = policies_for(f.key.pub_pem);
  const std::string pinned = "reg.test/team/app@" + f.digest;
  verify::EngineOptions off;
  off.cache_ttl = 10s;
  verify::Engine plain(f.reg, f.clock, off);
  verify::Engine engine(f.reg, f.clock, stale_options(false));
  REQUIRE(run(plain, pinned, policies).outcome == verify::Outcome::allowed);
  REQUIRE(run(engine, pinned, policies).outcome == verify::Outcome::allowed);
  f.reg.fail_reads = make_error(Errc::timeout, "no answer");
  f.clock.advance(1min);
  CHECK(run(plain, pinned, policies).outcome == verify::Outcome::denied);
  auto v = run(engine, pinned, policies);
  CHECK(v.outcome == verify::Outcome::warned);
  CHECK(v.reason == verify::Reason::timeout);
  CHECK(engine.stats().stale_timeout == 1);
}

TEST_CASE("staleIfError: never for another policy set, a previous denial, or another failure",
          "[stale]") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock, stale_options(false));
  auto policies = policies_for(f.key.pub_pem);
  const std::string pinned = "reg.test/team/app@" + f.digest;
  REQUIRE(run(engine, pinned, policies).outcome == verify::Outcome::allowed);
  f.clock.advance(1min);

  SECTION("a new policy generation is another key") {
    f.reg.fail_unavailable = true;
    auto v = run(engine, pinned, policies_for(f.key.pub_pem, "enforce", policy::NoMatch::deny, 2));
    CHECK(v.outcome == verify::Outcome::denied);
    CHECK_FALSE(v.stale);
  }
  SECTION("the signature was removed: NOT_SIGNED, then the outage") {
    f.reg.manifests.clear();
    REQUIRE(run(engine, pinned, policies).reason == verify::Reason::not_signed);
    f.clock.advance(1min);  // past the denial's cache TTL
    f.reg.fail_unavailable = true;
    auto v = run(engine, pinned, policies);
    CHECK(v.outcome == verify::Outcome::denied);
    CHECK_FALSE(v.stale);
  }
  SECTION("the registry refuses the credentials (REGISTRY_AUTH)") {
    f.reg.fail_reads = make_error(Errc::unauthorized, "401");
    auto v = run(engine, pinned, policies);
    CHECK(v.reason == verify::Reason::registry_auth);
    CHECK_FALSE(v.stale);
  }
  SECTION("the registry serves content that fails the checks") {
    f.reg.fail_reads = make_error(Errc::verification, "digest mismatch");
    auto v = run(engine, pinned, policies);
    CHECK(v.reason == verify::Reason::registry_integrity);
    CHECK_FALSE(v.stale);
  }
}

TEST_CASE("staleIfError: a policy's refusal is never hidden by a part only another policy reads",
          "[stale]") {
  // p1 reads .sig only (signatureFormat: legacy); p2 reads .sig and bundles. When p1's
  // signature is withdrawn and only the referrers listing fails, p1 has read everything it
  // needs and refuses: a judgement, which no last-known-good allow may stand in for, and which
  // forgets the allow.
  Fixture f;  // f.key for p1, f.other for p2
  std::string p1 = key_policy_doc("p1", "reg.test/team/**", f.key.pub_pem);
  p1.replace(p1.find("      key:"), 0, "      signatureFormat: legacy\n");
  auto policies = set_of(p1 + "---\n" + key_policy_doc("p2", "reg.test/team/**", f.other.pub_pem));
  f.reg.attach("team/app", f.digest,
               {{payload_for(f.digest), sign(f.key, payload_for(f.digest))},
                {payload_for(f.digest), sign(f.other, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock, stale_options(false));
  const std::string pinned = "reg.test/team/app@" + f.digest;
  REQUIRE(run(engine, pinned, policies).outcome == verify::Outcome::allowed);

  // p1's signature is withdrawn; the referrers listing (which p1 never reads) fails.
  f.reg.attach("team/app", f.digest,
               {{payload_for(f.digest), sign(f.other, payload_for(f.digest))}});
  f.reg.referrers = Errc::unavailable;
  f.clock.advance(1min);  // past the verdict cache's TTL, inside the grace period
  auto v = run(engine, pinned, policies);
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK_FALSE(v.stale);
  CHECK(v.policy == "p1");
  CHECK(v.reason == verify::Reason::bad_signature);  // p2's signature is not p1's key
  CHECK_FALSE(v.cached);
  // The allow is forgotten: the whole registry failing next does not bring it back.
  f.clock.advance(1min);
  f.reg.fail_unavailable = true;
  auto later = run(engine, pinned, policies);
  CHECK(later.outcome == verify::Outcome::denied);
  CHECK_FALSE(later.stale);
  // When the failed part is one the refusing policy reads, it is a registry failure as before.
  f.reg.fail_unavailable = false;
  auto only_p2 = set_of(key_policy_doc("p2", "reg.test/team/**", f.other.pub_pem));
  f.reg.attach("team/app", f.digest, {});
  CHECK(run(engine, pinned, only_p2).reason == verify::Reason::registry_unavailable);
}

TEST_CASE("staleIfError: a refusal that is not cached still forgets the last allow", "[stale]") {
  // "Not signed" learnt after an ambiguous referrers answer is not cached (it rests on a guess
  // about the registry), but it is a judgement: the allow before it must not stand in later.
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock, stale_options(false));
  auto policies = policies_for(f.key.pub_pem);
  const std::string pinned = "reg.test/team/app@" + f.digest;
  REQUIRE(run(engine, pinned, policies).outcome == verify::Outcome::allowed);
  f.reg.manifests.clear();            // the signature is removed
  f.reg.referrers = Errc::not_found;  // NAME_UNKNOWN: a guess
  f.clock.advance(1min);
  auto removed = run(engine, pinned, policies);
  REQUIRE(removed.reason == verify::Reason::not_signed);
  REQUIRE_FALSE(removed.cacheable);
  f.clock.advance(1min);
  f.reg.fail_unavailable = true;
  auto v = run(engine, pinned, policies);
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK_FALSE(v.stale);
}

TEST_CASE("staleIfError: a tag stands in only with pinning on", "[stale]") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  auto policies = policies_for(f.key.pub_pem);
  const bool pinning = GENERATE(false, true);
  INFO("pinning " << pinning);
  verify::Engine engine(f.reg, f.clock, stale_options(pinning));
  REQUIRE(run(engine, "reg.test/team/app:v1", policies).outcome == verify::Outcome::allowed);
  // The tag still resolves; the signatures cannot be read.
  f.reg.fail_reads = make_error(Errc::unavailable, "HTTP 503");
  f.clock.advance(1min);
  auto v = run(engine, "reg.test/team/app:v1", policies);
  CHECK(v.outcome == (pinning ? verify::Outcome::warned : verify::Outcome::denied));
  CHECK(v.stale.has_value() == pinning);
  // The same digest written by the pod stands either way.
  CHECK(run(engine, "reg.test/team/app@" + f.digest, policies).stale);
}

TEST_CASE("staleIfError: requireDigest in warn mode never stands in for an unpinned tag",
          "[stale]") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  // A warn-mode requireDigest policy verifies the digest the tag names now (a recursion with
  // the digest written); the enforcing key policy makes the registry failure a denial.
  auto digests = policy::parse_policies(
      "apiVersion: sigil.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: digests}\n"
      "spec:\n  mode: warn\n  requireDigest: true\n  images: [{glob: \"reg.test/team/**\"}]\n"
      "  authorities: [{static: {action: pass}}]\n",
      "digests.yaml");
  REQUIRE(digests.ok());
  auto keyed = policies_for(f.key.pub_pem);
  std::vector<policy::Policy> all = std::move(*digests);
  all.insert(all.end(), keyed->policies().begin(), keyed->policies().end());
  auto policies =
      std::make_shared<const policy::PolicySet>(std::move(all), policy::NoMatch::deny, 1);
  const bool pinning = GENERATE(false, true);
  INFO("pinning " << pinning);
  verify::Engine engine(f.reg, f.clock, stale_options(pinning));
  REQUIRE(run(engine, "reg.test/team/app:v1", policies).outcome == verify::Outcome::warned);
  f.reg.fail_reads = make_error(Errc::unavailable, "HTTP 503");
  f.clock.advance(1min);
  auto v = run(engine, "reg.test/team/app:v1", policies);
  CHECK(v.outcome == (pinning ? verify::Outcome::warned : verify::Outcome::denied));
  CHECK(v.stale.has_value() == pinning);
}

TEST_CASE("with the tag cache on, only a pinning caller takes a cached digest", "[tagcache]") {
  // /mutate (Context::pins_digest) may pin a moved tag to the digest it verified before, for
  // the TTL; /validate of a Pod that was not mutated sees the move at once.
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::EngineOptions opts;
  opts.tag_cache_ttl = std::chrono::seconds(10);
  verify::Engine engine(f.reg, f.clock, opts);
  auto policies = policies_for(f.key.pub_pem);
  verify::Context mutate;
  mutate.pins_digest = true;
  CHECK(run(engine, "reg.test/team/app:v1", policies, 5s, mutate).outcome ==
        verify::Outcome::allowed);
  f.reg.tags["team/app:v1"] = fake_digest('d');  // moved, unsigned
  const uint64_t before = f.reg.calls;
  auto pinned = run(engine, "reg.test/team/app:v1", policies, 5s, mutate);
  CHECK(pinned.outcome == verify::Outcome::allowed);
  CHECK(pinned.digest == f.digest);  // the digest /mutate writes into the Pod, and verified
  CHECK(f.reg.calls == before);      // neither the tag nor the verdict asked the registry
  CHECK(engine.stats().tag_cache_hits == 1);
  auto validate = run(engine, "reg.test/team/app:v1", policies);
  CHECK(validate.outcome == verify::Outcome::denied);
  CHECK(validate.digest == fake_digest('d'));
}

TEST_CASE("without the tag cache (pinning off) /mutate resolves tags fresh", "[tagcache]") {
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);  // EngineOptions' default: no tag cache
  auto policies = policies_for(f.key.pub_pem);
  verify::Context mutate;
  mutate.pins_digest = true;
  CHECK(run(engine, "reg.test/team/app:v1", policies, 5s, mutate).outcome ==
        verify::Outcome::allowed);
  f.reg.tags["team/app:v1"] = fake_digest('d');
  auto v = run(engine, "reg.test/team/app:v1", policies, 5s, mutate);
  CHECK(v.digest == fake_digest('d'));
  CHECK(v.outcome == verify::Outcome::denied);
  CHECK(engine.stats().tag_cache_hits == 0);
}

namespace {

// The [fastpath] tests' start: team/app signed with `key`, an engine with a 10 s tag cache,
// the policies trusting the key, and the image pinned to its digest.
struct SignedApp : Fixture {
  static verify::EngineOptions with_tag_cache() {
    verify::EngineOptions o;
    o.tag_cache_ttl = std::chrono::seconds(10);
    return o;
  }
  SignedApp() : engine(reg, clock, with_tag_cache()) {
    reg.attach("team/app", digest, {{payload_for(digest), sign(key, payload_for(digest))}});
  }
  verify::Engine engine;
  std::shared_ptr<const policy::PolicySet> policies = policies_for(key.pub_pem);
  const std::string pinned = "reg.test/team/app@" + digest;
};

}  // namespace

TEST_CASE_METHOD(SignedApp, "verify_cached answers only what verify() would answer from its cache",
                 "[fastpath]") {
  // Nothing verified yet: no answer, no registry call, no miss counted.
  CHECK_FALSE(engine.verify_cached(pinned, policies, {}).has_value());
  CHECK(reg.calls == 0);
  CHECK(engine.stats().cache_misses == 0);

  const auto fresh = run(engine, pinned, policies);
  REQUIRE(fresh.outcome == verify::Outcome::allowed);
  const auto from_verify = run(engine, pinned, policies);
  const auto now = engine.verify_cached(pinned, policies, {});
  REQUIRE(now.has_value());
  CHECK(now->cached);
  CHECK(now->outcome == from_verify.outcome);
  CHECK(now->reason == from_verify.reason);
  CHECK(now->digest == from_verify.digest);
  CHECK(now->policy == from_verify.policy);
  CHECK(now->authority == from_verify.authority);
  CHECK(now->image == pinned);

  // Another policy generation, another key: not answered.
  CHECK_FALSE(
      engine
          .verify_cached(pinned, policies_for(key.pub_pem, "enforce", policy::NoMatch::deny, 2), {})
          .has_value());

  // By tag, before the tag was ever read: nothing at once, pinning or not.
  verify::Context mutate;
  mutate.pins_digest = true;
  CHECK_FALSE(engine.verify_cached("reg.test/team/app:v1", policies, mutate).has_value());
  CHECK(run(engine, "reg.test/team/app:v1", policies, 5s, mutate).outcome ==
        verify::Outcome::allowed);
  // /validate (no pinning) always resolves fresh, so never at once, even with the tag cached.
  CHECK_FALSE(engine.verify_cached("reg.test/team/app:v1", policies, {}).has_value());
  // /mutate (pinning) with its tag cached: the verified digest, at once.
  const uint64_t calls = reg.calls;
  auto by_tag = engine.verify_cached("reg.test/team/app:v1", policies, mutate);
  REQUIRE(by_tag.has_value());
  CHECK(by_tag->digest == digest);
  CHECK(by_tag->image == "reg.test/team/app:v1");
  CHECK(reg.calls == calls);
  // Past the tag cache's TTL the tag must be read again.
  clock.advance(std::chrono::seconds(11));
  CHECK_FALSE(engine.verify_cached("reg.test/team/app:v1", policies, mutate).has_value());
  // Past the verdict's TTL the digest must be verified again.
  clock.advance(std::chrono::seconds(300));
  CHECK_FALSE(engine.verify_cached(pinned, policies, {}).has_value());
}

TEST_CASE_METHOD(SignedApp, "a cache hit counts once, whichever path answers the admission",
                 "[fastpath]") {
  // The synchronous path asks verify_cached for every image and gives up on the first it does
  // not have; the asynchronous path then asks verify() for all of them. Before, the hits found
  // before the give-up were counted twice.
  const std::string uncached = "reg.test/team/app@" + fake_digest('e');
  REQUIRE(run(engine, pinned, policies).outcome == verify::Outcome::allowed);  // a miss
  const auto start = engine.stats();

  // A mixed admission: the first image at hand, the second not.
  const auto first = engine.verify_cached(pinned, policies, {});
  REQUIRE(first.has_value());
  CHECK_FALSE(engine.verify_cached(uncached, policies, {}).has_value());
  CHECK(engine.stats().cache_hits == start.cache_hits);  // nothing counted yet
  // ... so the asynchronous path verifies both: one hit, one miss, each counted once.
  run(engine, pinned, policies);
  run(engine, uncached, policies);
  CHECK(engine.stats().cache_hits == start.cache_hits + 1);
  CHECK(engine.stats().cache_misses == start.cache_misses + 1);

  // An admission answered at once counts its hits when it is answered, tags included.
  verify::Context mutate;
  mutate.pins_digest = true;
  REQUIRE(run(engine, "reg.test/team/app:v1", policies, 5s, mutate).outcome ==
          verify::Outcome::allowed);
  const auto before = engine.stats();
  auto by_digest = engine.verify_cached(pinned, policies, {});
  auto by_tag = engine.verify_cached("reg.test/team/app:v1", policies, mutate);
  REQUIRE(by_digest.has_value());
  REQUIRE(by_tag.has_value());
  CHECK_FALSE(by_digest->tag_cached);
  CHECK(by_tag->tag_cached);
  CHECK(engine.stats().tag_cache_hits == before.tag_cache_hits);
  engine.count_answered_now({*by_digest, *by_tag});
  CHECK(engine.stats().cache_hits == before.cache_hits + 2);
  CHECK(engine.stats().tag_cache_hits == before.tag_cache_hits + 1);
}

TEST_CASE("verify_cached: denials it remembers, failures it never does", "[fastpath]") {
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  auto policies = policies_for(f.key.pub_pem);
  const std::string pinned = "reg.test/team/app@" + f.digest;
  // An unsigned image: the cached denial, at once.
  CHECK(run(engine, pinned, policies).reason == verify::Reason::not_signed);
  auto denied = engine.verify_cached(pinned, policies, {});
  REQUIRE(denied.has_value());
  CHECK(denied->outcome == verify::Outcome::denied);
  CHECK(denied->reason == verify::Reason::not_signed);
  // A registry failure is not remembered: the next admission must ask again.
  const std::string other = "reg.test/team/app@" + fake_digest('b');
  f.reg.fail_unavailable = true;
  CHECK(run(engine, other, policies).reason == verify::Reason::registry_unavailable);
  CHECK_FALSE(engine.verify_cached(other, policies, {}).has_value());
  f.reg.fail_unavailable = false;
  // What the policies decide alone needs no registry: no match, an invalid reference.
  const uint64_t calls = f.reg.calls;
  auto unmatched = engine.verify_cached("other.test/x@" + f.digest, policies, {});
  REQUIRE(unmatched.has_value());
  CHECK(unmatched->reason == verify::Reason::no_matching_policy);
  CHECK(unmatched->outcome == verify::Outcome::denied);
  auto invalid = engine.verify_cached("reg.test/team/app@sha256:zz", policies, {});
  REQUIRE(invalid.has_value());
  CHECK(invalid->reason == verify::Reason::invalid_image);
  CHECK(f.reg.calls == calls);
}

TEST_CASE("verify_cached never answers for a key.kms policy or requireDigest on a tag",
          "[fastpath]") {
  Fixture f;
  auto keys = std::make_shared<FakeKeys>();
  keys->current = public_key(f.key);
  verify::EngineOptions o;
  o.keys = keys;
  o.tag_cache_ttl = std::chrono::seconds(10);
  verify::Engine engine(f.reg, f.clock, o);
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  const std::string pinned = "reg.test/team/app@" + f.digest;
  const auto policies = kms_policies();
  REQUIRE(run(engine, pinned, policies).outcome == verify::Outcome::allowed);
  // The verdict is cached, but its key names the KMS key's fingerprint, read through the
  // resolver (which may wait): that path is verify()'s.
  CHECK_FALSE(engine.verify_cached(pinned, policies, {}).has_value());
  CHECK(run(engine, pinned, policies).cached);
}

TEST_CASE("verify_cached: what it remembers of an image is per namespace and per credentials",
          "[fastpath]") {
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  auto set = with_image_policy(f.key.pub_pem, "reg.test/**", policy::NoMatch::deny);
  const std::string pinned = "reg.test/team/app@" + f.digest;
  // Unsigned: team-b's cluster policy passes it, team-a's ImagePolicy wants the key.
  CHECK(run(engine, pinned, set, 5s, in_ns("team-b")).outcome == verify::Outcome::allowed);
  CHECK(run(engine, pinned, set, 5s, in_ns("team-a")).outcome == verify::Outcome::denied);
  for (int round = 0; round < 2; ++round) {  // the second round from what was remembered
    auto b = engine.verify_cached(pinned, set, in_ns("team-b"));
    auto a = engine.verify_cached(pinned, set, in_ns("team-a"));
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    CHECK(b->outcome == verify::Outcome::allowed);
    CHECK(a->outcome == verify::Outcome::denied);
    CHECK(a->reason == verify::Reason::not_signed);
  }
  // A policy swap forgets it all: under a set that no longer passes everyone, nothing is
  // answered from the old set's verdicts.
  auto stricter = policies_for(f.key.pub_pem, "enforce", policy::NoMatch::deny, 2);
  CHECK_FALSE(engine.verify_cached(pinned, stricter, in_ns("team-b")).has_value());
  // Pull credentials that cover the registry are part of the key: a verdict made without them
  // is not answered to a pod holding some (nor the reverse), and ids keep holders apart.
  auto creds = std::make_shared<registry::DockerConfig>();
  creds->auths["reg.test"] = registry::Credential{"user", "pass", ""};
  CHECK(run(engine, pinned, stricter, 5s, in_ns("team-b")).reason == verify::Reason::not_signed);
  REQUIRE(engine.verify_cached(pinned, stricter, in_ns("team-b")).has_value());
  CHECK_FALSE(engine.verify_cached(pinned, stricter, in_ns("team-b", creds, "id-1")).has_value());
  CHECK(run(engine, pinned, stricter, 5s, in_ns("team-b", creds, "id-1")).reason ==
        verify::Reason::not_signed);
  CHECK(engine.verify_cached(pinned, stricter, in_ns("team-b", creds, "id-1")).has_value());
  CHECK_FALSE(engine.verify_cached(pinned, stricter, in_ns("team-b", creds, "id-2")).has_value());
  CHECK_FALSE(engine.verify_cached(pinned, stricter, in_ns("team-b", creds, "")).has_value());
}

TEST_CASE("verify_cached: credentials without an id are never remembered as another's",
          "[fastpath]") {
  // Two pods whose pull secrets carry no id: one holds reg.test, the other only another host.
  // What verify_cached made of the image for the first (a verdict key naming its credentials)
  // must not be answered to the second, who does not hold them.
  Fixture f;
  verify::Engine engine(f.reg, f.clock);
  auto set = policies_for(f.key.pub_pem, "enforce", policy::NoMatch::deny, 1);
  const std::string pinned = "reg.test/team/app@" + f.digest;
  auto holds = std::make_shared<registry::DockerConfig>();
  holds->auths["reg.test"] = registry::Credential{"user", "pass", ""};
  auto elsewhere = std::make_shared<registry::DockerConfig>();
  elsewhere->auths["other.test"] = registry::Credential{"user", "pass", ""};
  CHECK_FALSE(engine.verify_cached(pinned, set, in_ns("team", holds, "")).has_value());
  CHECK(run(engine, pinned, set, 5s, in_ns("team", holds, "")).reason ==
        verify::Reason::not_signed);
  // Its verdict is cached under its credentials (an empty id: the same for every such pod) ...
  REQUIRE(engine.verify_cached(pinned, set, in_ns("team", holds, "")).has_value());
  // ... and the pod without reg.test's credentials is not handed it.
  CHECK_FALSE(engine.verify_cached(pinned, set, in_ns("team", elsewhere, "")).has_value());
  auto own = run(engine, pinned, set, 5s, in_ns("team", elsewhere, ""));
  CHECK(own.reason == verify::Reason::not_signed);
  CHECK_FALSE(own.cached);
}

TEST_CASE("two policy sets never share a verdict through other policies, even numbered alike") {
  // Generations are the caller's numbering (files, the cluster): the cache key names the matched
  // policies by id, and every policy compiled anew has a fresh one.
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock);
  const std::string pinned = "reg.test/team/app@" + f.digest;
  auto trusts_key = policies_for(f.key.pub_pem, "enforce", policy::NoMatch::deny, 7);
  auto trusts_other = policies_for(f.other.pub_pem, "enforce", policy::NoMatch::deny, 7);
  CHECK(run(engine, pinned, trusts_key).outcome == verify::Outcome::allowed);
  auto other = run(engine, pinned, trusts_other);
  CHECK(other.outcome == verify::Outcome::denied);
  CHECK_FALSE(other.cached);
  CHECK_FALSE(engine
                  .verify_cached(pinned,
                                 policies_for(f.other.pub_pem, "enforce", policy::NoMatch::deny, 7),
                                 {})
                  .has_value());
}

TEST_CASE("a new set that carries a policy unchanged keeps its verdicts and last known good",
          "[stale]") {
  // A tenant editing its own ImagePolicy, or any policy an image does not match, publishes a new
  // set; the images it does not concern keep their verdicts (no re-verification storm) and,
  // during an outage, their last-known-good allows.
  Fixture f;
  f.reg.attach("team/app", f.digest, {{payload_for(f.digest), sign(f.key, payload_for(f.digest))}});
  verify::Engine engine(f.reg, f.clock, stale_options(false));
  const std::string pinned = "reg.test/team/app@" + f.digest;
  auto v1 = set_of(key_policy_doc("team", "reg.test/team/**", f.key.pub_pem) + "---\n" +
                   key_policy_doc("elsewhere", "other.test/**", f.key.pub_pem));
  REQUIRE(run(engine, pinned, v1).outcome == verify::Outcome::allowed);
  const uint64_t calls = f.reg.calls;

  // "elsewhere" edited: "team" carried over as it is, id included.
  auto edited = policy::parse_policies(
      key_policy_doc("elsewhere", "other.test/**", f.other.pub_pem), "test.yaml");
  REQUIRE(edited.ok());
  std::vector<policy::Policy> next{v1->policies()[0], edited->front()};
  auto v2 = std::make_shared<const policy::PolicySet>(next, policy::NoMatch::deny, 2);
  CHECK(v2->policies()[0].id == v1->policies()[0].id);
  auto hit = run(engine, pinned, v2);
  CHECK(hit.outcome == verify::Outcome::allowed);
  CHECK(hit.cached);
  CHECK(f.reg.calls == calls);
  CHECK(engine.verify_cached(pinned, v2, {}).has_value());

  // Past the verdict's TTL the registry is down: the allow made under v1 stands under v2.
  f.clock.advance(1min);
  f.reg.fail_unavailable = true;
  auto stale = run(engine, pinned, v2);
  CHECK(stale.outcome == verify::Outcome::warned);
  CHECK(stale.stale);

  // The same document compiled again is a new policy (a new id): nothing is shared with it,
  // and a set that copies a policy but changes it is refused its id by whoever changed it.
  auto fresh = set_of(key_policy_doc("team", "reg.test/team/**", f.key.pub_pem));
  CHECK(fresh->policies()[0].id != v1->policies()[0].id);
  auto miss = run(engine, pinned, fresh);
  CHECK(miss.outcome == verify::Outcome::denied);
  CHECK_FALSE(miss.cached);
  CHECK_FALSE(miss.stale);
  std::vector<policy::Policy> rekeyed{v1->policies()[0]};
  REQUIRE(policy::resolve_secrets(rekeyed, {}, "ns").ok());  // changes content: forgets the id
  CHECK(rekeyed[0].id == 0);
  std::vector<policy::Policy> relinked{v1->policies()[0]};
  REQUIRE(policy::link_trust_roots(relinked, {}, {}).ok());  // likewise
  CHECK(relinked[0].id == 0);
  // Two policies of one set never share an id.
  policy::PolicySet twice({v1->policies()[0], v1->policies()[0]}, policy::NoMatch::deny, 3);
  CHECK(twice.policies()[0].id != twice.policies()[1].id);
}
