// bench/cold_verify.cpp: cold verification latency and registry requests per image.
//
// For each image (tag-referenced, as pods usually name them) a FRESH verify::Engine, so its
// verdict cache is empty and the image is new to it, verifies it once against the policies;
// the wall time of that verify() and the delta of HttpClient::request_count() are recorded.
// One HttpClient is shared across images, as in `sigil serve`, so keep-alive connections to
// the registry are reused (the first image also pays the TCP connect). The same is then done
// for the digest-referenced form of each image (registry/repo@sha256:..., from the first
// pass's verdict), which needs no tag resolution.
//
// Output: key=value lines on stdout (bench/run.sh reads them), details with --verbose on
// stderr. Exit 0 when every image was admitted, 1 when any was not (the numbers would then
// describe a denial path, not the one asked for), 2 on a usage or configuration error.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <future>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "app/config.hpp"
#include "app/trust.hpp"
#include "common/clock.hpp"
#include "policy/policy.hpp"
#include "registry/http_client.hpp"
#include "verify/engine.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using sigil::verify::Outcome;
using sigil::verify::Verdict;

struct Sample {
  std::string image;
  Verdict verdict;
  double ms = 0;
  uint64_t requests = 0;
};

// Nearest-rank percentile of an ascending vector (q in (0, 1]).
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

// "reg:5000/repo:tag" or "reg:5000/repo@sha256:.." -> "reg:5000/repo@<digest>".
std::string digest_form(const std::string& image, const std::string& digest) {
  std::string name = image.substr(0, image.find('@'));
  const size_t slash = name.rfind('/');
  const size_t colon = name.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    name.resize(colon);
  }
  return name + "@" + digest;
}

// One image through a fresh Engine, timed inside the coroutine.
asio::awaitable<Sample> verify_one(sigil::registry::HttpClient& client, const sigil::Clock& clock,
                                   std::string image,
                                   std::shared_ptr<const sigil::policy::PolicySet> policies,
                                   std::chrono::milliseconds timeout) {
  sigil::verify::Engine engine(client, clock);  // empty cache: the image is new to it
  Sample s;
  s.image = image;
  const uint64_t before = client.request_count();
  const auto t0 = std::chrono::steady_clock::now();
  s.verdict = co_await engine.verify(std::move(image), std::move(policies), t0 + timeout);
  const auto t1 = std::chrono::steady_clock::now();
  s.ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  s.requests = client.request_count() - before;
  co_return s;
}

struct Pass {
  std::vector<Sample> samples;
  bool hung = false;
};

// Verifies the images one after another (never concurrently: each latency is alone).
Pass run_pass(asio::io_context& io, sigil::registry::HttpClient& client, const sigil::Clock& clock,
              const std::vector<std::string>& images,
              const std::shared_ptr<const sigil::policy::PolicySet>& policies,
              std::chrono::milliseconds timeout, bool verbose) {
  Pass pass;
  for (const auto& image : images) {
    auto fut =
        asio::co_spawn(io, verify_one(client, clock, image, policies, timeout), asio::use_future);
    // The engine must answer by its deadline; allow 5 s more before calling it a hang.
    if (fut.wait_for(timeout + 5s) != std::future_status::ready) {
      std::fprintf(stderr, "bench_cold_verify: %s: no verdict %lld ms after its deadline\n",
                   image.c_str(), static_cast<long long>(timeout.count()) + 5000);
      pass.hung = true;
      return pass;
    }
    try {
      pass.samples.push_back(fut.get());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_cold_verify: %s: exception escaped verify(): %s\n", image.c_str(),
                   e.what());
      pass.hung = true;
      return pass;
    }
    const Sample& s = pass.samples.back();
    if (verbose) {
      std::fprintf(stderr, "%-8s %7.2f ms %2llu req  %s\n",
                   s.verdict.outcome == Outcome::denied ? "DENIED" : "ALLOWED", s.ms,
                   static_cast<unsigned long long>(s.requests), s.image.c_str());
    }
  }
  return pass;
}

// Prints the key=value summary of one pass under `prefix`; returns the number not admitted.
size_t report(const char* prefix, const Pass& pass) {
  std::vector<double> ms;
  std::vector<uint64_t> req;
  size_t denied = 0;
  for (const auto& s : pass.samples) {
    ms.push_back(s.ms);
    req.push_back(s.requests);
    if (s.verdict.outcome == Outcome::denied) {
      if (denied == 0) {
        std::fprintf(stderr, "bench_cold_verify: %s not admitted: %s: %s\n", s.image.c_str(),
                     std::string(sigil::verify::name(s.verdict.reason)).c_str(),
                     sigil::verify::message(s.verdict).c_str());
      }
      ++denied;
    }
  }
  std::sort(ms.begin(), ms.end());
  std::sort(req.begin(), req.end());
  const double n = static_cast<double>(std::max<size_t>(ms.size(), 1));
  std::printf("%s.images=%zu\n", prefix, ms.size());
  std::printf("%s.denied=%zu\n", prefix, denied);
  std::printf("%s.p50_ms=%.3f\n", prefix, percentile(ms, 0.50));
  std::printf("%s.p99_ms=%.3f\n", prefix, percentile(ms, 0.99));
  std::printf("%s.mean_ms=%.3f\n", prefix, std::accumulate(ms.begin(), ms.end(), 0.0) / n);
  std::printf("%s.max_ms=%.3f\n", prefix, ms.empty() ? 0.0 : ms.back());
  std::printf("%s.requests_min=%llu\n", prefix,
              static_cast<unsigned long long>(req.empty() ? 0 : req.front()));
  std::printf("%s.requests_max=%llu\n", prefix,
              static_cast<unsigned long long>(req.empty() ? 0 : req.back()));
  std::printf("%s.requests_mean=%.2f\n", prefix,
              static_cast<double>(std::accumulate(req.begin(), req.end(), uint64_t{0})) / n);
  // The first image of a run also teaches the client what the registry is (the TCP/TLS
  // connection, and whether it has the referrers API): every later image is new to the engine
  // but not to the registry client, as in a long-running sigil.
  uint64_t later_max = 0;
  for (size_t i = 1; i < pass.samples.size(); ++i) {
    later_max = std::max(later_max, pass.samples[i].requests);
  }
  std::printf("%s.requests_first=%llu\n", prefix,
              static_cast<unsigned long long>(pass.samples.empty() ? 0 : pass.samples[0].requests));
  std::printf("%s.requests_max_after_first=%llu\n", prefix,
              static_cast<unsigned long long>(later_max));
  return denied;
}

int run(int argc, char** argv) {
  CLI::App app{
      "bench_cold_verify: cold verification latency (p50/p99) and registry requests per image"};
  std::string registry_addr, images_file, trusted_root, timeout_text = "10s", prefix = "cold";
  std::vector<std::string> policy_paths, images;
  bool verbose = false;
  app.add_option("--registry", registry_addr,
                 "HOST:PORT of the local registry (reached over plain HTTP)")
      ->required();
  app.add_option("--policy", policy_paths, "ClusterImagePolicy file or directory (repeatable)")
      ->required();
  app.add_option("--images-file", images_file, "file with one tag-referenced image per line");
  app.add_option("--timeout", timeout_text, "deadline of one verification (Go duration)");
  app.add_option("--trusted-root", trusted_root,
                 "trusted_root.json for keyless policies (default: public-good)");
  app.add_flag("--verbose", verbose, "one line per image on stderr");
  app.add_option("--prefix", prefix, "prefix of the printed keys (default cold)");
  app.add_option("images", images, "tag-referenced images");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (!images_file.empty()) {
    auto text = sigil::app::read_file(images_file, 16u << 20);
    if (!text.ok()) {
      std::fprintf(stderr, "bench_cold_verify: --images-file %s\n", text.error().message.c_str());
      return 2;
    }
    size_t pos = 0;
    while (pos < text->size()) {
      size_t end = text->find('\n', pos);
      if (end == std::string::npos) end = text->size();
      std::string line = text->substr(pos, end - pos);
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (!line.empty() && line[0] != '#') images.push_back(std::move(line));
      pos = end + 1;
    }
  }
  if (images.empty()) {
    std::fprintf(stderr, "bench_cold_verify: no images given\n");
    return 2;
  }
  auto timeout = sigil::app::parse_duration(timeout_text);
  if (!timeout.ok()) {
    std::fprintf(stderr, "bench_cold_verify: --timeout: %s\n", timeout.error().message.c_str());
    return 2;
  }
  auto policies = sigil::app::load_policies(policy_paths, sigil::policy::NoMatch::deny, 1,
                                            sigil::app::default_trust_root(trusted_root));
  if (!policies.ok()) {
    std::fprintf(stderr, "bench_cold_verify: %s\n", policies.error().message.c_str());
    return 2;
  }

  asio::io_context io(1);
  auto work = asio::make_work_guard(io);
  sigil::registry::ClientOptions copts;
  copts.insecure_hosts = {registry_addr};
  sigil::registry::HttpClient client(io.get_executor(), copts);
  if (auto st = client.init_status(); !st.ok()) {
    std::fprintf(stderr, "bench_cold_verify: registry client: %s\n", st.error().message.c_str());
    return 2;
  }
  const sigil::SystemClock clock;
  std::thread runner([&] { io.run(); });

  const Pass tags = run_pass(io, client, clock, images, *policies, *timeout, verbose);
  std::vector<std::string> by_digest;
  for (const auto& s : tags.samples) {
    if (!s.verdict.digest.empty()) by_digest.push_back(digest_form(s.image, s.verdict.digest));
  }
  Pass digests;
  if (!tags.hung) digests = run_pass(io, client, clock, by_digest, *policies, *timeout, verbose);

  if (tags.hung || digests.hung) {
    std::fflush(stdout);
    std::_Exit(1);  // a coroutine is stuck on the io thread: do not wait for it
  }
  work.reset();
  io.stop();
  runner.join();

  const size_t denied =
      report((prefix + ".tag").c_str(), tags) + report((prefix + ".digest").c_str(), digests);
  if (by_digest.size() != tags.samples.size()) {
    std::fprintf(stderr, "bench_cold_verify: %zu verdicts carried no digest\n",
                 tags.samples.size() - by_digest.size());
    return 1;
  }
  return denied == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cold_verify: %s\n", e.what());
    return 1;
  }
}
