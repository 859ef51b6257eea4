#include "app/selfcert.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/encoding.hpp"
#include "crypto/certgen.hpp"
#include "kube/client.hpp"

namespace sigil::app {

namespace asio = boost::asio;
using asio::awaitable;
using json = nlohmann::json;
using TimePoint = std::chrono::system_clock::time_point;

namespace {

// Certificates start this long before they are minted (clock skew between sigil, the API
// server and other replicas); "created" is notBefore + this.
constexpr std::chrono::seconds kBackdate = std::chrono::hours(1);

// Secret data keys.
constexpr const char* kTlsCrt = "tls.crt";
constexpr const char* kTlsKey = "tls.key";
constexpr const char* kCaCrt = "ca.crt";
constexpr const char* kCaKey = "ca.key";
constexpr const char* kNextCrt = "ca-next.crt";
constexpr const char* kNextKey = "ca-next.key";
constexpr const char* kPrevCrt = "ca-prev.crt";

TimePoint created(const crypto::Certificate& c) {
  return c.not_before() + kBackdate;
}

std::string when(TimePoint t) {
  return crypto::format_time(t);
}

// A CA pair that may sign: parses, is a CA, the key is its own, not expired.
Result<crypto::Certificate> usable_ca(const Pem& p, TimePoint now) {
  if (p.cert_pem.empty() || p.key_pem.empty()) return make_error(Errc::not_found, "missing");
  auto c = crypto::Certificate::from_pem(p.cert_pem);
  if (!c) return make_error(c.error().code, "certificate: " + c.error().message);
  if (!c->is_ca()) return make_error(Errc::verification, "the certificate is not a CA");
  if (auto st = crypto::check_key_pair(p.cert_pem, p.key_pem); !st) return st.error();
  if (now >= c->not_after())
    return make_error(Errc::verification, "expired at " + when(c->not_after()));
  return c;
}

}  // namespace

std::vector<std::string> SelfCertOptions::dns_names() const {
  const std::string svc = service_name + "." + namespace_ + ".svc";
  return {svc, svc + "." + cluster_domain};
}

Status SelfCertOptions::validate() const {
  auto bad = [](const std::string& what) { return make_error(Errc::invalid_argument, what); };
  if (namespace_.empty()) return bad("selfCert: no namespace");
  if (secret_name.empty()) return bad("selfCert.secretName is empty");
  if (service_name.empty()) return bad("selfCert.serviceName is empty");
  if (validating_webhooks.empty() && mutating_webhooks.empty())
    return bad("selfCert: name at least one webhook configuration (validatingWebhooks)");
  if (ca_renew_before <= std::chrono::seconds(0) || ca_renew_before >= ca_validity)
    return bad("selfCert.caRenewBefore must be > 0 and below selfCert.caValidity");
  if (cert_renew_before <= std::chrono::seconds(0) || cert_renew_before >= cert_validity)
    return bad("selfCert.certRenewBefore must be > 0 and below selfCert.certValidity");
  if (cert_validity > ca_validity)
    return bad("selfCert.certValidity must not exceed selfCert.caValidity");
  if (resync < std::chrono::seconds(1))
    return bad("selfCert.resync must be at least 1s (each pass reads the Secret and the webhooks)");
  if (rollover_grace < 2 * resync)
    return bad(
        "selfCert.rolloverGrace must be at least twice selfCert.resync (every replica re-reads "
        "the Secret within the grace)");
  if (4 * rollover_grace >= ca_renew_before)
    return bad("selfCert.rolloverGrace must be well below selfCert.caRenewBefore");
  return {};
}

std::string CertState::bundle() const {
  std::string out;
  for (const std::string* p : {&ca_prev, &ca.cert_pem, &ca_next.cert_pem}) {
    if (p->empty()) continue;
    out += *p;
    if (out.back() != '\n') out += '\n';
  }
  return out;
}

CertState state_from_secret_data(const std::map<std::string, std::string>& data) {
  auto get = [&](const char* k) {
    auto it = data.find(k);
    return it == data.end() ? std::string() : it->second;
  };
  CertState s;
  s.serving = Pem{get(kTlsCrt), get(kTlsKey)};
  s.ca = Pem{get(kCaCrt), get(kCaKey)};
  s.ca_next = Pem{get(kNextCrt), get(kNextKey)};
  s.ca_prev = get(kPrevCrt);
  return s;
}

Result<CertState> plan_certificates(const CertState& current, const SelfCertOptions& o,
                                    TimePoint now, bool next_published,
                                    std::vector<std::string>& notes) {
  CertState s = current;
  auto mint_ca = [&]() -> Result<Pem> {
    auto ca = crypto::make_ca("sigil webhook CA " + crypto::format_time(now), now - kBackdate,
                              now - kBackdate + o.ca_validity);
    if (!ca) return make_error(ca.error().code, "minting a CA: " + ca.error().message);
    return std::move(*ca);
  };

  // The active CA: replaced (with everything it signed) when it cannot sign.
  auto ca = usable_ca(s.ca, now);
  if (!ca) {
    if (s.ca.cert_pem.empty() && s.ca.key_pem.empty()) {
      notes.emplace_back("no CA yet: minting one");
    } else {
      notes.push_back("the CA in the Secret is unusable (" + ca.error().message +
                      "): a new CA replaces it");
    }
    auto fresh = mint_ca();
    if (!fresh) return fresh.error();
    s = CertState{};
    s.ca = std::move(*fresh);
    ca = usable_ca(s.ca, now);
    if (!ca) return make_error(Errc::internal, "the minted CA is unusable: " + ca.error().message);
  }
  // The incoming and outgoing CAs: dropped when they do not check.
  std::optional<crypto::Certificate> next;
  if (!s.ca_next.cert_pem.empty() || !s.ca_next.key_pem.empty()) {
    auto n = usable_ca(s.ca_next, now);
    if (n) {
      next = *n;
    } else {
      notes.push_back("the incoming CA (ca-next) is unusable (" + n.error().message + "): dropped");
      s.ca_next = {};
    }
  }
  if (!s.ca_prev.empty()) {
    auto p = crypto::Certificate::from_pem(s.ca_prev);
    if (!p || !p->is_ca() || now >= p->not_after() || s.ca_prev == s.ca.cert_pem) {
      notes.emplace_back("the outgoing CA (ca-prev) is unusable, expired or current: dropped");
      s.ca_prev.clear();
    }
  }

  // Rotation 1: a new CA enters the bundle well before the active one ends.
  if (!next && now >= ca->not_after() - o.ca_renew_before) {
    auto fresh = mint_ca();
    if (!fresh) return fresh.error();
    s.ca_next = std::move(*fresh);
    next = *crypto::Certificate::from_pem(s.ca_next.cert_pem);
    notes.push_back("the CA ends " + when(ca->not_after()) +
                    ": a new CA is added to the caBundle (the serving certificate moves to it "
                    "once the bundle is published and the rollover grace has passed)");
  }
  // Rotation 2: the serving certificate moves to the new CA once the bundle carrying it is
  // published and has had the grace to reach every API server.
  if (next && next_published && now >= created(*next) + o.rollover_grace) {
    s.ca_prev = s.ca.cert_pem;
    s.ca = s.ca_next;
    s.ca_next = {};
    ca = *next;
    next.reset();
    s.serving = {};
    notes.emplace_back(
        "the new CA is published: it now signs the serving certificate; the old CA stays in the "
        "caBundle for the rollover grace");
  }

  // The serving certificate: re-issued by the active CA whenever it does not check.
  const auto names = o.dns_names();
  std::string why;
  std::optional<crypto::Certificate> leaf;
  if (s.serving.cert_pem.empty() || s.serving.key_pem.empty()) {
    why = "no serving certificate yet";
  } else if (auto l = crypto::Certificate::from_pem(s.serving.cert_pem); !l) {
    why = "the serving certificate does not parse";
  } else if (auto kp = crypto::check_key_pair(s.serving.cert_pem, s.serving.key_pem); !kp) {
    why = "the serving key is unusable (" + kp.error().message + ")";
  } else if (auto by = crypto::check_issued_by(*l, *ca); !by) {
    why = "the serving certificate is not from the active CA (" + by.error().message + ")";
  } else if (auto dn = crypto::dns_names(*l); !dn || *dn != names) {
    why = "the serving certificate's DNS names are not the Service's";
  } else if (now >= l->not_after() - o.cert_renew_before) {
    why = "the serving certificate ends " + when(l->not_after());
  } else {
    leaf = *l;
  }
  if (!leaf) {
    const TimePoint nb = now - kBackdate;
    const TimePoint na = std::min(nb + o.cert_validity, ca->not_after());
    auto issued = crypto::issue_server_cert(s.ca, names, nb, na);
    if (!issued)
      return make_error(issued.error().code,
                        "issuing the serving certificate: " + issued.error().message);
    s.serving = std::move(*issued);
    leaf = *crypto::Certificate::from_pem(s.serving.cert_pem);
    if (!current.serving.cert_pem.empty() || !notes.empty() || why != "no serving certificate yet")
      notes.push_back(why + ": a serving certificate is issued by the active CA");
  }

  // Rotation 3: the old CA leaves the bundle once every replica has had the grace to load a
  // serving certificate of the new one.
  if (!s.ca_prev.empty() && now >= created(*leaf) + o.rollover_grace) {
    s.ca_prev.clear();
    notes.emplace_back("the rollover is complete: the old CA leaves the caBundle");
  }
  return s;
}

// ---------------------------------------------------------------------------------------------

struct SelfCert::Impl : std::enable_shared_from_this<SelfCert::Impl> {
  Impl(asio::io_context& io, std::shared_ptr<kube::Client> c, const Clock& clk, SelfCertOptions o,
       Install inst)
      : strand(asio::make_strand(io)),
        client(std::move(c)),
        clock(clk),
        opts(std::move(o)),
        install(std::move(inst)),
        timer(strand) {}

  asio::strand<asio::io_context::executor_type> strand;
  std::shared_ptr<kube::Client> client;
  const Clock& clock;
  const SelfCertOptions opts;
  Install install;
  asio::steady_timer timer;
  std::atomic<bool> stopped{false};

  mutable std::mutex mu;  // guards the fields below
  Stats stats;
  std::string published;  // the bundle last seen on every webhook configuration
  Pem installed;

  Deadline deadline() const { return std::chrono::steady_clock::now() + opts.request_timeout; }

  void count(uint64_t Stats::*field) {
    std::lock_guard lock(mu);
    ++(stats.*field);
  }

  static json secret_data(const CertState& s) {
    json d = json::object();
    auto put = [&](const char* k, const std::string& v) {
      if (!v.empty()) d[k] = base64_encode(v);
    };
    put(kTlsCrt, s.serving.cert_pem);
    put(kTlsKey, s.serving.key_pem);
    put(kCaCrt, s.ca.cert_pem);
    put(kCaKey, s.ca.key_pem);
    put(kNextCrt, s.ca_next.cert_pem);
    put(kNextKey, s.ca_next.key_pem);
    put(kPrevCrt, s.ca_prev);
    return d;
  }

  json new_secret(const CertState& s) const {
    return {{"apiVersion", "v1"},
            {"kind", "Secret"},
            {"type", "kubernetes.io/tls"},
            {"metadata",
             {{"name", opts.secret_name},
              {"namespace", opts.namespace_},
              {"labels", {{"app.kubernetes.io/managed-by", "sigil"}}},
              {"annotations",
               {{"sigil.dev/self-managed",
                 "the webhook's CA and serving certificate; sigil rotates them"}}}}},
            {"data", secret_data(s)}};
  }

  // Reads the Secret (creating it when missing) and writes the planned state back; returns
  // the state in force. A 409 re-reads, up to three times.
  awaitable<Result<CertState>> settle_secret() {
    const auto secrets = kube::resources::secrets();
    for (int attempt = 0; attempt < 4; ++attempt) {
      auto got = co_await client->get(secrets, opts.namespace_, opts.secret_name, deadline());
      std::vector<std::string> notes;
      const TimePoint now = clock.now();
      if (!got && got.error().code == Errc::not_found) {
        auto fresh = plan_certificates(CertState{}, opts, now, false, notes);
        if (!fresh) co_return fresh.error();
        auto made = co_await client->create(secrets, opts.namespace_, new_secret(*fresh).dump(),
                                            deadline());
        if (!made) co_return made.error();
        if (made->conflict) {
          count(&Stats::conflicts);
          spdlog::info("selfcert: Secret {}/{} was created by another replica; using theirs",
                       opts.namespace_, opts.secret_name);
          continue;
        }
        count(&Stats::secret_writes);
        spdlog::info("selfcert: created Secret {}/{} with a new CA and serving certificate",
                     opts.namespace_, opts.secret_name);
        co_return std::move(*fresh);
      }
      if (!got) co_return got.error();
      auto secret = kube::parse_secret(got->json);
      if (!secret) co_return secret.error();
      const CertState current = state_from_secret_data(secret->data);
      bool next_published = false;
      {
        std::lock_guard lock(mu);
        next_published = !current.ca_next.cert_pem.empty() &&
                         published.find(current.ca_next.cert_pem) != std::string::npos;
      }
      auto next = plan_certificates(current, opts, now, next_published, notes);
      if (!next) co_return next.error();
      if (*next == current) co_return current;
      json obj = json::parse(got->json, nullptr, false);
      if (obj.is_discarded() || !obj.is_object())
        co_return make_error(Errc::parse_error, "selfcert: the Secret is not a JSON object");
      // Keys sigil does not own stay as they are; its own are replaced.
      json data = obj.contains("data") && obj["data"].is_object() ? obj["data"] : json::object();
      for (const char* k : {kTlsCrt, kTlsKey, kCaCrt, kCaKey, kNextCrt, kNextKey, kPrevCrt})
        data.erase(k);
      data.update(secret_data(*next));
      obj["data"] = data;
      auto put = co_await client->replace(secrets, opts.namespace_, opts.secret_name, obj.dump(),
                                          deadline());
      if (!put) co_return put.error();
      if (put->conflict) {
        count(&Stats::conflicts);
        spdlog::info("selfcert: Secret {}/{} changed meanwhile (409); reading it again",
                     opts.namespace_, opts.secret_name);
        continue;
      }
      count(&Stats::secret_writes);
      for (const auto& n : notes)
        spdlog::warn("selfcert: Secret {}/{}: {}", opts.namespace_, opts.secret_name, n);
      co_return std::move(*next);
    }
    co_return make_error(Errc::unavailable,
                         "selfcert: Secret " + opts.namespace_ + "/" + opts.secret_name +
                             " keeps changing under us (409 four times); retrying later");
  }

  // Puts the bundle into every webhook entry of one configuration (PUT with its
  // resourceVersion; a 409 re-reads).
  awaitable<Status> publish_one(kube::Resource resource, std::string name, std::string b64) {
    const std::string what = resource.plural + " " + name;
    for (int attempt = 0; attempt < 4; ++attempt) {
      auto got = co_await client->get(resource, "", name, deadline());
      if (!got) co_return make_error(got.error().code, "selfcert: " + got.error().message);
      json obj = json::parse(got->json, nullptr, false);
      if (obj.is_discarded() || !obj.contains("webhooks") || !obj["webhooks"].is_array() ||
          obj["webhooks"].empty())
        co_return make_error(Errc::invalid_argument, "selfcert: " + what + " has no webhooks");
      bool changed = false;
      for (auto& w : obj["webhooks"]) {
        if (!w.is_object()) continue;
        auto& cc = w["clientConfig"];
        if (!cc.is_object()) cc = json::object();
        if (cc.value("caBundle", "") != b64) {
          cc["caBundle"] = b64;
          changed = true;
        }
      }
      if (!changed) co_return Status{};
      auto put = co_await client->replace(resource, "", name, obj.dump(), deadline());
      if (!put) co_return make_error(put.error().code, "selfcert: " + put.error().message);
      if (put->conflict) {
        count(&Stats::conflicts);
        continue;
      }
      count(&Stats::bundle_writes);
      spdlog::info("selfcert: caBundle of {} updated", what);
      co_return Status{};
    }
    co_return make_error(Errc::unavailable, "selfcert: " + what + " keeps changing (409)");
  }

  awaitable<Status> reconcile() {
    count(&Stats::passes);
    auto state = co_await settle_secret();
    if (!state) {
      count(&Stats::failures);
      co_return state.error();
    }
    bool fresh = false;
    {
      std::lock_guard lock(mu);
      fresh = !(installed == state->serving);
    }
    if (fresh) {
      if (auto st = install(state->serving.cert_pem, state->serving.key_pem); !st) {
        count(&Stats::failures);
        co_return make_error(
            st.error().code,
            "selfcert: the server refused the serving certificate: " + st.error().message);
      }
      std::lock_guard lock(mu);
      installed = state->serving;
      ++stats.installs;
    }
    const std::string bundle = state->bundle();
    const std::string b64 = base64_encode(bundle);
    Status result;
    for (const auto& n : opts.validating_webhooks) {
      auto st = co_await publish_one(kube::resources::validating_webhook_configurations(), n, b64);
      if (!st && result) result = st;
    }
    for (const auto& n : opts.mutating_webhooks) {
      auto st = co_await publish_one(kube::resources::mutating_webhook_configurations(), n, b64);
      if (!st && result) result = st;
    }
    if (!result) {
      count(&Stats::failures);
      co_return result;
    }
    std::lock_guard lock(mu);
    published = bundle;
    co_return Status{};
  }

  static awaitable<void> loop(std::shared_ptr<Impl> self) {
    while (!self->stopped) {
      Status st = make_error(Errc::internal, "no pass");
      try {
        st = co_await self->reconcile();
      } catch (const std::exception& e) {
        st = make_error(Errc::internal, std::string("selfcert: ") + e.what());
      }
      if (!st) spdlog::error("selfcert: {} (retrying)", st.error().message);
      if (self->stopped) co_return;
      self->timer.expires_after(st ? self->opts.resync : self->opts.retry);
      co_await self->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }
};

SelfCert::SelfCert(asio::io_context& io, std::shared_ptr<kube::Client> client, const Clock& clock,
                   SelfCertOptions options, Install install)
    : impl_(std::make_shared<Impl>(io, std::move(client), clock, std::move(options),
                                   std::move(install))) {}

SelfCert::~SelfCert() {
  stop();
}

Status SelfCert::start() {
  if (auto st = impl_->opts.validate(); !st) return st;
  asio::co_spawn(impl_->strand, Impl::loop(impl_), asio::detached);
  return {};
}

void SelfCert::stop() {
  if (impl_->stopped.exchange(true)) return;
  auto impl = impl_;
  asio::post(impl->strand, [impl] { impl->timer.cancel(); });
}

awaitable<Status> SelfCert::reconcile() {
  auto impl = impl_;
  co_return co_await impl->reconcile();
}

SelfCert::Stats SelfCert::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

std::string SelfCert::published_bundle() const {
  std::lock_guard lock(impl_->mu);
  return impl_->published;
}

}  // namespace sigil::app
