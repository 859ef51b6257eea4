// kube/object.hpp: the Kubernetes JSON wire format sigil reads: object metadata, lists with
// resourceVersion and continue, metav1.Status errors, Secrets and ServiceAccounts, and the
// resource descriptors that name API paths.
//
// Role: turn outside bytes from the API server into small typed values and build request
// paths. Pure: no I/O, no Asio/Beast, no clock; nlohmann/json is used only in the .cpp and
// nothing throws out. An object keeps its full JSON text (for the caller's own parser, e.g.
// policy/) next to the metadata sigil needs. Error messages never contain Secret values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace sigil::kube {

// One API resource: where it lives and whether it is namespaced.
struct Resource {
  std::string group;    // "" = the core group (/api/v1)
  std::string version;  // "v1", "v1alpha1"
  std::string plural;   // "secrets", "clusterimagepolicies"
  bool namespaced = true;

  // "clusterimagepolicies.sigil.dev" / "secrets": for messages and logs.
  std::string display() const;
};

namespace resources {
// sigil's custom resources (group sigil.dev, version v1alpha1).
Resource cluster_image_policies();  // cluster-scoped
Resource image_policies();          // namespaced
Resource trust_roots();             // cluster-scoped
// Core resources read for keys and pull credentials.
Resource secrets();
Resource service_accounts();
// sigil's own webhook registrations (self-managed certificate: their caBundle), cluster-scoped.
Resource validating_webhook_configurations();
Resource mutating_webhook_configurations();
}  // namespace resources

// The collection path: "/apis/<g>/<v>[/namespaces/<ns>]/<plural>" (core: "/api/v1/...").
// An empty namespace on a namespaced resource means all namespaces. Fails (invalid_argument)
// on a namespace that is not a usable path segment, or a namespace for a cluster-scoped one.
Result<std::string> collection_path(const Resource& resource, std::string_view ns);
// collection_path + "/<name>" (+ "/<subresource>" when given, e.g. "status").
Result<std::string> object_path(const Resource& resource, std::string_view ns,
                                std::string_view name, std::string_view subresource = {});
// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay as they are).
std::string query_escape(std::string_view value);

// The metadata sigil needs from any object. resourceVersion is opaque: compare for equality.
struct ObjectMeta {
  std::string name;
  std::string namespace_;  // empty for cluster-scoped objects
  std::string uid;
  std::string resource_version;
  int64_t generation = 0;  // 0 when the object has none

  // "namespace/name", or "name" for cluster-scoped objects: the store key.
  std::string key() const;
};

struct Object {
  ObjectMeta meta;
  // The object as compact JSON text. From a list or a watch, without metadata.managedFields and
  // metadata.annotations: the reflectors' stores keep objects for as long as they exist, sigil
  // reads neither there, and they are often most of an object's bytes (the last-applied
  // configuration, a tenant's tooling). From a GET, whole: it may be edited and written back
  // with a PUT (app/selfcert.cpp), which would otherwise delete every annotation.
  std::string json;
};

struct ObjectList {
  std::vector<Object> items;
  std::string resource_version;  // metadata.resourceVersion of the list
  std::string continue_token;    // metadata.continue; empty on the last page
};

// A metav1.Status (the body of an API error, or the object of a watch ERROR event).
struct ApiStatus {
  int code = 0;               // HTTP code the server reports (410 = Gone/Expired)
  std::string status;         // "Failure"
  std::string reason;         // "Expired", "NotFound", "Forbidden", ...
  std::string message;        // the server's sentence; control bytes replaced, length capped
  bool rv_too_large = false;  // details.causes[].reason == "ResourceVersionTooLarge"

  // "Forbidden: secrets \"x\" is forbidden: ..." (reason and message, whichever exist).
  std::string describe() const;
};

// Caps (bytes of JSON) and nesting depth for everything parsed here.
inline constexpr size_t kMaxJsonDepth = 100;

// Parses one object; metadata.name is required unless allow_nameless (BOOKMARK objects).
// parse_error on malformed JSON, a non-object, nesting deeper than kMaxJsonDepth, or
// metadata members of the wrong type.
Result<Object> parse_object(std::string_view json, bool allow_nameless = false);
// Parses {"metadata":{"resourceVersion","continue"},"items":[...]}; every item as parse_object.
Result<ObjectList> parse_object_list(std::string_view json);
// Parses a metav1.Status body. parse_error when it is not one (not JSON, no code/reason).
Result<ApiStatus> parse_status(std::string_view json);

// A core/v1 Secret. Values are the base64-decoded bytes of `data`; never log them.
struct Secret {
  ObjectMeta meta;
  std::string type;  // "kubernetes.io/dockerconfigjson", "Opaque", ...
  std::map<std::string, std::string> data;
};
Result<Secret> parse_secret(std::string_view json);

// A core/v1 ServiceAccount: the names of its imagePullSecrets, in order.
struct ServiceAccount {
  ObjectMeta meta;
  std::vector<std::string> image_pull_secrets;
};
Result<ServiceAccount> parse_service_account(std::string_view json);

// sigil::printable with a longer default: for server text placed in messages.
std::string sanitize_text(std::string_view text, size_t max = 512);

}  // namespace sigil::kube
