// net/detail/tls.hpp: the OpenSSL half of net's client TLS (internal to net/).
//
// Role: build one SSL_CTX per net::Client from its TlsOptions, and set up each connection's
// SSL object for its peer (SNI, host name or IP SAN). Every OpenSSL return value is checked
// and the error queue is cleared on every path. Not included by any public header.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ssl/context.hpp>

#include "common/result.hpp"
#include "net/tls.hpp"

namespace sigil::net::detail {

// TLS 1.2 or later; peer verification (unless insecure_skip_verify) against the roots the
// options name; the client certificate when given. invalid_argument naming what did not
// load (a CA file, the CA PEM, the client certificate or key), internal for an OpenSSL
// failure that is not the caller's.
Result<std::shared_ptr<boost::asio::ssl::context>> make_client_context(const TlsOptions& options);

// Prepares ssl for a handshake with `host` (the URL's host, or options.server_name when set):
// a DNS name is sent as SNI and checked against the certificate's DNS SANs (no partial
// wildcards); an IP literal gets no SNI and must be an IP SAN.
Status prepare_handshake(SSL* ssl, const std::string& host, const TlsOptions& options);

// After a failed handshake: "certificate verification failed: <OpenSSL's reason>" when the
// peer's certificate was refused, nullopt when the handshake failed for another reason.
std::optional<std::string> verification_failure(SSL* ssl);

}  // namespace sigil::net::detail
