// app/selfcert.hpp: the self-managed webhook certificate (chart `tls.mode: self`).
//
// Role: sigil keeps its own CA and serving certificate in a Secret it owns, publishes the CA
// in the caBundle of its own webhook configurations, rotates both well before expiry, and hands
// the serving certificate to the server in memory (Server::set_certificate). Lives in app/
// because it joins kube/ (the API), crypto/ (minting, crypto/certgen.hpp) and server/.
//
// The Secret (type kubernetes.io/tls) holds: tls.crt/tls.key (the serving certificate, signed
// by the active CA), ca.crt/ca.key (the active CA), and during a CA rollover ca-next.crt/
// ca-next.key (the incoming CA, trusted but not yet signing) or ca-prev.crt (the outgoing CA,
// still trusted while replicas move to a leaf of the new CA). The caBundle is ca-prev + ca +
// ca-next, in that order. Every write is a PUT carrying the resourceVersion read (a 409 means
// someone else wrote: re-read and use theirs); the first write is a POST (a 409 means another
// replica won the race: re-read and use its CA).
//
// Rotation (times are the injected Clock's; "created" is a certificate's notBefore + the
// backdate):
//   1. the active CA is within ca_renew_before of its end: a new CA is minted into ca-next;
//      the bundle grows to carry both;
//   2. once this replica has seen the bundle with ca-next published on every configured
//      webhook configuration, and rollover_grace has passed since ca-next was created, the
//      serving certificate is re-issued by ca-next, which becomes the active CA; the old one
//      moves to ca-prev;
//   3. rollover_grace after that serving certificate was created (every replica has re-read
//      the Secret by then: grace >= 2 x resync is enforced), ca-prev is dropped.
// A serving certificate within cert_renew_before of its end (or of its CA's end), or whose
// DNS names are not the Service's, is re-issued by the same CA: no bundle change.
//
// Bad content: the Secret is never served as it is unless every pair checks. A CA that does
// not parse, is not a CA, has expired or whose key does not match is REPLACED by a new CA and
// serving certificate (logged as an error with the reason; the bundle follows); a bad serving
// pair (parse, key mismatch, not signed by the active CA, expired) is re-issued by the CA; a
// bad ca-next or ca-prev is dropped. A Secret sigil cannot read or write leaves the current
// certificate in place and is retried.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "common/clock.hpp"
#include "common/result.hpp"
#include "crypto/certgen.hpp"

namespace sigil::kube {
class Client;
}  // namespace sigil::kube

namespace sigil::app {

using std::chrono::hours;

struct SelfCertOptions {
  std::string namespace_;  // sigil's namespace: the Secret and the Service
  std::string secret_name = "sigil-webhook-tls";
  std::string service_name = "sigil";  // the serving certificate's DNS names come from it
  std::string cluster_domain = "cluster.local";
  std::vector<std::string> validating_webhooks;          // ValidatingWebhookConfiguration names
  std::vector<std::string> mutating_webhooks;            // MutatingWebhookConfiguration names
  std::chrono::seconds ca_validity = hours(87600);       // 10 years
  std::chrono::seconds ca_renew_before = hours(17520);   // a new CA 2 years before the end
  std::chrono::seconds cert_validity = hours(8760);      // 1 year
  std::chrono::seconds cert_renew_before = hours(2920);  // re-issued 4 months before the end
  std::chrono::seconds rollover_grace = hours(1);
  std::chrono::milliseconds resync{60000};  // Secret re-read, caBundle re-asserted
  std::chrono::milliseconds retry{5000};    // after a failed pass
  std::chrono::milliseconds request_timeout{10000};

  // <svc>.<ns>.svc, <svc>.<ns>.svc.<cluster_domain>.
  std::vector<std::string> dns_names() const;
  // The settings named, when inconsistent (renew-before >= validity, grace < 2 x resync, ...).
  Status validate() const;
};

// One PEM certificate and its key.
using Pem = crypto::CertAndKey;

// What the Secret holds (PEM text; empty = absent).
struct CertState {
  Pem ca, ca_next, serving;
  std::string ca_prev;  // certificate only
  bool operator==(const CertState&) const = default;

  // ca-prev + ca + ca-next (each only when present).
  std::string bundle() const;
};

// The next state for `now`: the same when nothing is due. `next_published`: this replica has
// seen the bundle carrying ca_next on every webhook configuration. `notes` tells what changed
// and why (for the log). Errors only when minting fails.
Result<CertState> plan_certificates(const CertState& current, const SelfCertOptions& options,
                                    std::chrono::system_clock::time_point now, bool next_published,
                                    std::vector<std::string>& notes);

// Secret data <-> state.
CertState state_from_secret_data(const std::map<std::string, std::string>& data);

class SelfCert {
 public:
  // install is called with every new serving pair (after it checked), on the client's
  // executor; it returns whether the server took it.
  using Install = std::function<Status(const std::string& cert_pem, const std::string& key_pem)>;

  SelfCert(boost::asio::io_context& io, std::shared_ptr<kube::Client> client, const Clock& clock,
           SelfCertOptions options, Install install);
  ~SelfCert();
  SelfCert(const SelfCert&) = delete;
  SelfCert& operator=(const SelfCert&) = delete;

  // Starts the loop: a pass at once, then every resync (retry after a failure).
  Status start();
  void stop();

  // One pass: read (or create) the Secret, plan, write it back when it changed, install the
  // serving certificate, publish the caBundle on every configured webhook configuration.
  boost::asio::awaitable<Status> reconcile();

  struct Stats {
    uint64_t passes = 0, failures = 0;
    uint64_t secret_writes = 0, conflicts = 0;
    uint64_t installs = 0, bundle_writes = 0;
  };
  Stats stats() const;
  // What the webhook configurations were last seen carrying on all of them ("" = not yet).
  std::string published_bundle() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sigil::app
