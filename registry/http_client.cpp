// registry/http_client.cpp: HttpClient (see http_client.hpp): the origin of a registry (plain
// http only for insecure_hosts), one registry API call with auth, net's retries and redirects
// (Impl::fetch, fetch_with), and the public calls (resolve, get_manifest, get_blob,
// get_referrers). The auth side (credentials, tokens, challenges, the credential trail) is in
// http_auth.cpp; the Impl is declared in registry/detail/http_client_impl.hpp.
#include "registry/http_client.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include "common/encoding.hpp"
#include "oci/manifest.hpp"
#include "oci/reference.hpp"
#include "registry/auth.hpp"
#include "registry/detail/http_client_impl.hpp"

namespace sigil::registry {

using boost::asio::awaitable;
using Clock = std::chrono::steady_clock;
using detail::status_text;
using net::Url;

Result<std::string> sha256_digest(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1 || len != 32) {
    ERR_clear_error();
    return make_error(Errc::internal, "sha256 failed in OpenSSL");
  }
  return "sha256:" + hex_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

namespace {

constexpr uint64_t kErrorBodyLimit = 64 * 1024;

bool is_sha256_digest(std::string_view d) {
  return d.size() == 71 && d.substr(0, 7) == "sha256:" && is_lower_hex(d.substr(7));
}

Error timeout_error(const std::string& what) {
  return make_error(Errc::timeout, what + ": deadline exceeded");
}

}  // namespace

Status HttpClient::Impl::setup(const boost::asio::any_io_executor& executor) {
  for (auto& h : opts.insecure_hosts) h = ascii_lower(h);
  if (opts.max_retries < 0) opts.max_retries = 0;
  if (opts.max_redirects < 0) opts.max_redirects = 0;
  net::ClientOptions no;
  no.tls.system_roots = true;
  if (!opts.ca_file.empty()) no.tls.ca_files.push_back(opts.ca_file);
  no.user_agent = opts.user_agent;
  no.max_idle_per_origin = opts.max_idle_per_host;
  no.observer = opts.observer;
  no.max_dns_lookups = opts.max_dns_lookups;
  no.reserved_dns_lookups = opts.reserved_dns_lookups;
  no.dns_try_timeout = opts.dns_try_timeout;
  no.dns_attempts = opts.dns_attempts;
  no.dns_servers = opts.dns_servers;
  no.fail_fast = opts.fail_fast;
  no.max_connections = opts.max_connections;
  no.reserved_connections = opts.reserved_connections;
  no.max_connections_per_host = opts.max_connections_per_host;
  http = std::make_unique<net::Client>(executor, std::move(no));
  if (auto st = http->init_status(); !st) {
    return make_error(st.error().code, "registry TLS setup: " + st.error().message);
  }
  return {};
}

net::RetryPolicy HttpClient::Impl::retry_policy() const {
  net::RetryPolicy p;
  p.max_retries = opts.max_retries;
  p.backoff_base = opts.backoff_base;
  p.max_backoff = opts.max_backoff;
  return p;
}

bool HttpClient::Impl::insecure(std::string_view registry, const std::string& authority) const {
  std::string r = ascii_lower(registry);
  for (const auto& h : opts.insecure_hosts) {
    if (h == r || h == authority) return true;
  }
  return false;
}

HttpClient::Impl::Owner HttpClient::Impl::owner(const std::string& registry) const {
  const bool configured = opts.credentials.find(registry).has_value() ||
                          opts.credentials.scoped.count(normalize_registry_host(registry)) != 0;
  if (configured || insecure(registry, registry)) {
    return Owner::listed;
  }
  std::shared_ptr<const std::vector<std::string>> named;
  {
    std::lock_guard lock(operator_mu);
    named = operator_registries;
  }
  if (named && std::binary_search(named->begin(), named->end(),
                                  oci::canonical_registry(ascii_lower(registry)))) {
    return Owner::listed;
  }
  if (opts.identity && opts.identity->covers(registry)) return Owner::covered;
  return Owner::pod;
}

void HttpClient::Impl::mark(net::Request& req, Owner owner) {
  req.operator_named = owner != Owner::pod;
  req.operator_listed = owner == Owner::listed;
}

Result<Url> HttpClient::Impl::origin(const std::string& registry) const {
  if (registry.empty()) return make_error(Errc::invalid_argument, "empty registry host");
  std::string api = oci::api_host(registry);
  auto hp = net::split_host_port(api, "443");
  if (!hp)
    return make_error(Errc::invalid_argument, "registry host " + api + ": " + hp.error().message);
  Url u;
  u.host = hp->first;
  u.port = hp->second;
  bool plain = insecure(registry, u.authority()) || insecure(api, u.authority());
  if (plain) {
    auto hp80 = net::split_host_port(api, "80");
    if (!hp80) return hp80.error();
    u.port = hp80->second;
  }
  u.scheme = plain ? "http" : "https";
  u.target = "/";
  return u;
}

bool HttpClient::Impl::identity_for(const std::string& registry) const {
  if (opts.identity == nullptr || !opts.identity->covers(registry)) return false;
  auto o = origin(registry);
  return o && o->scheme == "https";
}

awaitable<Result<net::Response>> HttpClient::Impl::fetch(
    net::Method method, const std::string& registry, const std::string& repository,
    const std::string& path, std::string accept, uint64_t limit, Deadline deadline,
    const DockerConfig* extra) {
  AuthNotes notes;
  auto r = co_await fetch_with(method, registry, repository, path, std::move(accept), limit,
                               deadline, extra, &notes);
  if (!r && r.error().code == Errc::unauthorized) {
    Error e = r.error();
    if (notes.identity_failure) e.message += "; " + notes.identity_failure->message;
    e.detail = trail(registry, repository, extra, notes, r.error());
    co_return e;
  }
  co_return r;
}

awaitable<Result<net::Response>> HttpClient::Impl::fetch_with(
    net::Method method, const std::string& registry, const std::string& repository,
    const std::string& path, std::string accept, uint64_t limit, Deadline deadline,
    const DockerConfig* extra, AuthNotes* notes) {
  // The identity source (Azure) only where neither the pod's pull secrets nor the docker
  // config have a key for this repository (credential_for): those come first, as in the
  // kubelet's order.
  bool use_identity =
      identity_for(registry) && !credential_for(registry, repository, extra).has_value();
  const Owner own = owner(registry);
  auto o = origin(registry);
  if (!o) co_return o.error();
  Url url = *o;
  url.target = path;
  const std::string scope = pull_scope(repository);
  net::Limits limits;
  limits.max_body = limit;
  limits.max_error_body = kErrorBodyLimit;
  bool reauthed = false;
  for (;;) {
    if (Clock::now() >= deadline) co_return timeout_error("registry " + registry);
    Result<std::string> a = std::string();
    if (use_identity) {
      auto c = co_await opts.identity->for_registry(registry, repository, deadline);
      if (c && c->has_value()) {
        a = std::move(**c);
      } else {
        if (!c) notes->identity_failure = c.error();
        use_identity = false;  // nothing from the identities: anonymous from here on
      }
    }
    if (!use_identity) {
      a = co_await authorization_for(*o, registry, repository, scope, deadline, extra);
    }
    if (!a) co_return a.error();
    net::Request req = net::get_request(url, accept);
    req.method = method;
    req.authorization = std::move(*a);
    req.retry = retry_policy();
    mark(req, own);
    if (method == net::Method::get) req.max_redirects = opts.max_redirects;
    req.redirect_allowed = [this](const Url& to) {
      return to.scheme == "https" || insecure(to.authority(), to.authority());
    };
    auto r = co_await http->send(std::move(req), deadline, limits);
    if (!r) co_return r.error();
    const unsigned s = r->status;
    const bool same = r->url.same_origin(*o);
    if (s == 401 && same && !reauthed) {
      reauthed = true;
      if (use_identity) {  // the identity's token refused: a fresh one, once
        opts.identity->rejected(registry, repository);
        continue;
      }
      auto st = co_await on_challenge(*o, registry, repository, scope,
                                      r->header("WWW-Authenticate"), deadline, extra);
      if (!st) co_return st.error();
      continue;
    }
    if (s == 401 || s == 403) {
      notes->identity_token_used = use_identity;
      co_return make_error(Errc::unauthorized, "registry " + registry + " denied access to " +
                                                   repository + " (" + status_text(s) + ")");
    }
    if (s == 429 || s >= 500) {
      co_return make_error(Errc::unavailable,
                           "registry " + registry + " unavailable (" + status_text(s) + ")");
    }
    co_return r;
  }
}

HttpClient::HttpClient(const boost::asio::any_io_executor& executor, ClientOptions options) {
  try {
    impl_ = std::make_shared<Impl>();
    impl_->opts = std::move(options);
    impl_->init = impl_->setup(executor);
  } catch (const std::exception& e) {
    if (impl_)
      impl_->init = make_error(Errc::internal, std::string("registry client: ") + e.what());
  }
}

HttpClient::~HttpClient() = default;

Status HttpClient::init_status() const {
  if (!impl_) return make_error(Errc::internal, "registry client not constructed");
  return impl_->init;
}

net::DnsStats HttpClient::dns_stats() const {
  return impl_ && impl_->http ? impl_->http->dns_stats() : net::DnsStats{};
}

net::ConnStats HttpClient::conn_stats() const {
  return impl_ && impl_->http ? impl_->http->conn_stats() : net::ConnStats{};
}

net::OutageMemo::Stats HttpClient::outage_stats() const {
  return impl_ && impl_->http ? impl_->http->outage_stats() : net::OutageMemo::Stats{};
}

bool HttpClient::has_credentials_for(const std::string& registry,
                                     const std::string& repository) const {
  return impl_ && (impl_->opts.credentials.find(registry, repository).has_value() ||
                   impl_->identity_for(registry));
}

bool HttpClient::covers(const PullCredentials& creds, const std::string& registry,
                        const std::string& repository) const {
  // The same lookup as credential_for's first step.
  return creds && creds->find(registry, repository).has_value();
}

bool HttpClient::operator_named(const std::string& registry) const {
  return impl_ && impl_->owner(registry) != Impl::Owner::pod;
}

uint64_t HttpClient::request_count() const {
  return impl_ && impl_->http ? impl_->http->request_count() : 0;
}
void HttpClient::set_operator_registries(std::vector<std::string> registries) {
  if (!impl_) return;
  std::sort(registries.begin(), registries.end());
  registries.erase(std::unique(registries.begin(), registries.end()), registries.end());
  auto list = std::make_shared<const std::vector<std::string>>(std::move(registries));
  std::lock_guard lock(impl_->operator_mu);
  impl_->operator_registries = std::move(list);
}

uint64_t HttpClient::token_request_count() const {
  return impl_ ? impl_->token_requests.load() : 0;
}

namespace {

// Runs body on the caller's executor, turning any exception into an error: a bad_alloc or a
// library surprise is Errc::internal, and the operation_aborted that a cancelled coroutine
// meets at its next co_await is a cancellation. No hop to another executor here: the only
// one is net::Client's to its strand, which binds an EMPTY cancellation slot to its co_spawn
// and bridges the caller's slot itself (Boost 1.81's co_spawn forwards a cancellation across
// executors through a raw pointer that dangles once the child finished: the crash of an
// admission cut short with fetches in flight). The Impl's own state is behind its mutex.
template <class T, class F>
awaitable<Result<T>> guarded(F& body) {
  try {
    co_return co_await body();
  } catch (const boost::system::system_error& e) {
    if (e.code() == boost::asio::error::operation_aborted) {
      co_return make_error(Errc::unavailable, "registry client: cancelled");
    }
    co_return make_error(Errc::internal, std::string("registry client: ") + e.what());
  } catch (const std::exception& e) {
    co_return make_error(Errc::internal, std::string("registry client: ") + e.what());
  }
}

}  // namespace

awaitable<Result<std::string>> HttpClient::resolve(const oci::Reference& ref, Deadline deadline,
                                                   PullCredentials creds) {
  if (ref.has_digest()) co_return ref.digest;
  auto st = init_status();
  if (!st) co_return st.error();
  auto impl = impl_;
  auto body = [&]() -> awaitable<Result<std::string>> {
    auto path = manifest_path(ref.repository, ref.tag);
    if (!path) co_return path.error();
    auto r =
        co_await impl->fetch(net::Method::head, ref.registry, ref.repository, *path,
                             std::string(oci::media::kManifestAccept), 0, deadline, creds.get());
    if (!r) co_return r.error();
    if (r->status == 404) {
      co_return make_error(Errc::not_found, "image " + ref.str() + " not found in registry");
    }
    if (r->status != 200) {
      co_return make_error(Errc::unavailable, "resolving " + ref.str() + ": registry answered " +
                                                  status_text(r->status));
    }
    if (!r->header("Docker-Content-Digest").empty()) {
      if (!is_sha256_digest(r->header("Docker-Content-Digest"))) {
        co_return make_error(Errc::verification,
                             "resolving " + ref.str() +
                                 ": registry sent a Docker-Content-Digest that is not sha256");
      }
      co_return r->header("Docker-Content-Digest");
    }
    // No digest header: fetch the manifest and hash it ourselves.
    auto m = co_await get_manifest(ref.registry, ref.repository, ref.tag, deadline, creds);
    if (!m) co_return m.error();
    co_return m->digest;
  };
  co_return co_await guarded<std::string>(body);
}

awaitable<Result<ManifestResponse>> HttpClient::get_manifest(const std::string& registry,
                                                             const std::string& repository,
                                                             const std::string& reference,
                                                             Deadline deadline,
                                                             PullCredentials creds) {
  auto st = init_status();
  if (!st) co_return st.error();
  auto impl = impl_;
  auto body = [&]() -> awaitable<Result<ManifestResponse>> {
    const bool by_digest = reference.find(':') != std::string::npos;
    if (by_digest && !is_sha256_digest(reference)) {
      co_return make_error(Errc::unsupported,
                           "manifest digest " + reference + " is not a sha256 digest");
    }
    auto path = manifest_path(repository, reference);
    if (!path) co_return path.error();
    auto r = co_await impl->fetch(
        net::Method::get, registry, repository, *path, std::string(oci::media::kManifestAccept),
        static_cast<uint64_t>(impl->opts.max_manifest_size), deadline, creds.get());
    if (!r) co_return r.error();
    const std::string what = registry + "/" + repository + (by_digest ? "@" : ":") + reference;
    if (r->status == 404) {
      co_return make_error(Errc::not_found, "manifest " + what + " not found in registry");
    }
    if (r->status != 200) {
      co_return make_error(Errc::unavailable,
                           "fetching manifest " + what + ": " + status_text(r->status));
    }
    auto d = sha256_digest(r->body);
    if (!d) co_return d.error();
    if (by_digest && *d != reference) {
      co_return make_error(Errc::verification,
                           "manifest " + what + ": registry served bytes with digest " + *d);
    }
    ManifestResponse out;
    out.digest = std::move(*d);
    out.media_type = r->header("Content-Type");
    out.body = std::move(r->body);
    co_return out;
  };
  co_return co_await guarded<ManifestResponse>(body);
}

awaitable<Result<std::string>> HttpClient::get_blob(const std::string& registry,
                                                    const std::string& repository,
                                                    const std::string& digest, int64_t max_size,
                                                    Deadline deadline, PullCredentials creds) {
  auto st = init_status();
  if (!st) co_return st.error();
  auto impl = impl_;
  auto body = [&]() -> awaitable<Result<std::string>> {
    if (!is_sha256_digest(digest)) {
      co_return make_error(Errc::unsupported, "blob digest " + digest + " is not sha256");
    }
    if (max_size < 0) co_return make_error(Errc::invalid_argument, "negative blob size cap");
    auto path = blob_path(repository, digest);
    if (!path) co_return path.error();
    auto r = co_await impl->fetch(net::Method::get, registry, repository, *path, std::string(),
                                  static_cast<uint64_t>(max_size), deadline, creds.get());
    if (!r) co_return r.error();
    const std::string what = registry + "/" + repository + "@" + digest;
    if (r->status == 404) co_return make_error(Errc::not_found, "blob " + what + " not found");
    if (r->status != 200) {
      co_return make_error(Errc::unavailable,
                           "fetching blob " + what + ": " + status_text(r->status));
    }
    auto d = sha256_digest(r->body);
    if (!d) co_return d.error();
    if (*d != digest) {
      co_return make_error(Errc::verification,
                           "blob " + what + ": registry served bytes with digest " + *d);
    }
    co_return std::move(r->body);
  };
  co_return co_await guarded<std::string>(body);
}

awaitable<Result<std::vector<oci::Descriptor>>> HttpClient::get_referrers(
    const std::string& registry, const std::string& repository, const std::string& digest,
    const std::string& artifact_type, Deadline deadline, PullCredentials creds) {
  auto st = init_status();
  if (!st) co_return st.error();
  auto impl = impl_;
  auto body = [&]() -> awaitable<Result<std::vector<oci::Descriptor>>> {
    if (!is_sha256_digest(digest)) {
      co_return make_error(Errc::unsupported, "referrers of " + digest + ": not a sha256 digest");
    }
    auto first = referrers_path(repository, digest, artifact_type);
    if (!first) co_return first.error();
    const auto unsupported = [&] {
      return make_error(Errc::unsupported, "registry " + registry + " has no referrers API");
    };
    // Per credential too: what a registry answers without credentials (a bare 404 from one
    // that hides its API from anonymous callers) says nothing of what it answers a pod that
    // brings its pull secret.
    const std::string memo_key = Impl::token_scope(
        registry + "/" + repository, impl->credential_for(registry, repository, creds.get()));
    {
      std::lock_guard lock(impl->mu);
      auto it = impl->no_referrers.find(memo_key);
      if (it != impl->no_referrers.end()) {
        if (Clock::now() < it->second) co_return unsupported();
        impl->no_referrers.erase(it);
      }
    }
    const std::string what = registry + "/" + repository + "@" + digest;
    std::vector<oci::Descriptor> out;
    uint64_t held = 0;  // what `out` holds (oci::held_bytes), at most max_manifest_size
    std::string path = std::move(*first);
    // Later pages: this repository's referrers of this digest, whatever query the registry adds.
    const std::string list = path.substr(0, path.find('?'));
    for (int page = 0; !path.empty(); ++page) {
      if (page >= impl->opts.max_referrers_pages) {
        co_return make_error(Errc::too_large, "referrers of " + what + ": more than " +
                                                  std::to_string(impl->opts.max_referrers_pages) +
                                                  " pages");
      }
      auto r = co_await impl->fetch(
          net::Method::get, registry, repository, path, std::string(oci::media::kOciIndex),
          static_cast<uint64_t>(impl->opts.max_manifest_size), deadline, creds.get());
      if (!r) co_return r.error();
      if (r->status == 404) {
        if (!oci::distribution_error_codes(r->body).empty()) {
          // The registry routed the request and has no such repository or manifest: it may
          // well have a referrers API. Nothing is learnt; this caller falls back once.
          co_return make_error(Errc::not_found,
                               "referrers of " + what + ": the registry knows no such repository");
        }
        std::lock_guard lock(impl->mu);
        if (impl->no_referrers.size() > 4096) impl->no_referrers.clear();
        impl->no_referrers[memo_key] = Clock::now() + impl->opts.no_referrers_memo;
        co_return unsupported();
      }
      if (r->status != 200) {
        co_return make_error(Errc::unavailable,
                             "listing referrers of " + what + ": " + status_text(r->status));
      }
      auto index = oci::parse_manifest(r->body, r->header("Content-Type"));
      if (!index) {
        co_return make_error(Errc::parse_error,
                             "referrers of " + what + ": " + index.error().message);
      }
      if (!index->is_index) {
        co_return make_error(Errc::parse_error, "referrers of " + what + ": not an image index");
      }
      for (auto& d : index->manifests) {
        if (!artifact_type.empty() && d.artifact_type != artifact_type) continue;
        if (out.size() >= impl->opts.max_referrers) {
          co_return make_error(Errc::too_large, "referrers of " + what + ": more than " +
                                                    std::to_string(impl->opts.max_referrers) +
                                                    " descriptors");
        }
        // Which artifacts, never their annotations: unused by callers, and up to a page each
        // of map nodes (ten times their JSON) held across all the pages.
        std::map<std::string, std::string>().swap(d.annotations);
        // What is kept over all the pages holds no more than one page may: each page is dropped
        // once read, but a descriptor's strings (a mediaType of a page's size) would stay.
        held += oci::held_bytes(d);
        if (held > static_cast<uint64_t>(impl->opts.max_manifest_size)) {
          co_return make_error(Errc::too_large,
                               "referrers of " + what + ": the list would hold more than " +
                                   std::to_string(impl->opts.max_manifest_size) + " bytes");
        }
        out.push_back(std::move(d));
      }
      path = link_next_target(r->header("Link"), list);
    }
    co_return out;
  };
  co_return co_await guarded<std::vector<oci::Descriptor>>(body);
}

}  // namespace sigil::registry
