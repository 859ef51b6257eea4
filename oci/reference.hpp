// oci/reference.hpp: image reference grammar, normalization and digests.
//
// Role: parse what a pod spec says (`nginx`, `myacr.azurecr.io/app:1.0@sha256:...`) into a
// normalized Reference, following distribution/reference (docker.io + library/ defaults,
// `index.docker.io` -> `docker.io`, `:latest` when neither tag nor digest), and going further so
// that one origin has one name: the host lowercased, the HTTPS default port dropped
// (`myacr.azurecr.io:443` -> `myacr.azurecr.io`), `registry-1.docker.io` and
// `registry.hub.docker.com` -> `docker.io`. Policy globs match that name. Pure: depends only on
// common (no I/O, no Asio, no OpenSSL).
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace sigil::oci {

struct Reference {
  std::string registry;    // "docker.io", "myacr.azurecr.io", "127.0.0.1:5000"
  std::string repository;  // "library/nginx", "team/app"
  std::string tag;         // may be empty when digest is set
  std::string digest;      // "sha256:<64 hex>" or empty

  // registry + "/" + repository
  std::string name() const;
  // Full normalized form: name[:tag][@digest]
  std::string str() const;
  // name@digest when a digest is known, else name:tag
  std::string pinned() const;
  bool has_digest() const noexcept { return !digest.empty(); }
};

// Parses and normalizes. Rejects anything that distribution/reference rejects (uppercase
// repository, empty components, bad tag, bad digest, name > 255 chars), with a message.
Result<Reference> parse_reference(std::string_view text);

// True for "sha256:<64 lowercase hex>" or "sha512:<128 lowercase hex>". sigil only verifies
// sha256 digests; others are rejected by callers with Errc::unsupported.
bool is_valid_digest(std::string_view digest) noexcept;

// The one spelling of a registry host[:port] that is already lowercase and valid (as in a
// parsed Reference or a docker config key): the port without leading zeros, the HTTPS default
// port dropped when the host still reads as a registry without it ("myacr.azurecr.io:443" ->
// "myacr.azurecr.io", but "foo:443" stays), and Docker Hub's other names ("index.docker.io",
// "registry-1.docker.io", "registry.hub.docker.com") -> "docker.io".
std::string canonical_registry(std::string registry);

// The registry host used for API calls: "docker.io" -> "registry-1.docker.io".
std::string api_host(std::string_view registry);

// Legacy cosign signature tag for a digest: "sha256:abc" -> "sha256-abc.sig".
std::string signature_tag(std::string_view digest);

// OCI 1.1 referrers tag schema for registries without the referrers API:
// "sha256:abc" -> "sha256-abc" (an index of the manifests whose subject is that digest).
std::string referrers_tag(std::string_view digest);

}  // namespace sigil::oci
