// app/compile_cluster.hpp: the pure step of `serve --kube`: the cluster's objects, the Secrets
// they name (already read) and the --policy files, plus what was last in force -> the policies
// to publish, each object's status, and what is in force now.
//
// Role: decide, without any I/O, what every ClusterImagePolicy, ImagePolicy and TrustRoot
// contributes to the PolicySet. Each object is compiled on its own, so one broken object never
// blocks the others. The rules, in order, for a policy object:
//   1. it compiles (parse, Secrets, TrustRoots): it is in force, and becomes its last good;
//   2. it does not, and an earlier generation of the same object (same uid) compiled: that
//      generation stays in force (never a silent relaxation);
//   3. it does not and never did, but its spec.images globs can be read: it is in the set as
//      an *unavailable* policy (policy::Policy::unavailable), which denies every image it
//      matches with POLICY_UNAVAILABLE (warns in warn mode) until it compiles: a policy present
//      in the cluster never drops out just because it could not be compiled;
//   4. not even its globs can be read: it has nothing to match; its status says Invalid (the
//      /validate-policy webhook refuses such objects at apply time).
// A TrustRoot that does not compile keeps its last good generation, or is absent (and the
// policies naming it become unavailable). --policy files follow rules 1-3 by policy name.
// Depends on policy/ only (no Asio, no kube client, no clock): app/cluster.cpp does the reads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "policy/policy.hpp"

namespace sigil::app {

enum class ObjectKind { cluster_image_policy, image_policy, trust_root };
const char* kind_name(ObjectKind kind) noexcept;  // "ClusterImagePolicy", ...

// An object as the API server stores it (JSON) -> the document its policy or TrustRoot is
// parsed from: apiVersion, kind, metadata's name, namespace, uid, resourceVersion and
// generation, and spec. What others write is left out (annotations, labels, managedFields,
// status: a tenant's tooling, the API server, other controllers): it must neither push the
// document past the parser's size cap, which would leave the policy nothing to match (rule 4
// below) on a replica that parses it afresh, nor cost the parser. The object's own JSON when it
// is not a JSON object (the parser then says why).
std::string object_document(const std::string& json);
// /validate-policy refuses an object whose document is larger: the YAML parser takes about 200
// times a document's size in memory and runs on a server thread. Objects stored before this cap
// are still compiled up to the parser's own (1 MiB), so none drops out on an upgrade.
inline constexpr size_t kMaxAppliedDocument = 256u << 10;

// One custom resource as listed from the API server.
struct ClusterObject {
  ObjectKind kind = ObjectKind::cluster_image_policy;
  std::string namespace_;  // ImagePolicy only
  std::string name;
  std::string uid;
  int64_t generation = 0;
  std::string json;         // the whole object
  std::string key() const;  // "name", or "namespace/name"
};

// One Secret a policy names, as read: its data (values decoded), or why it could not be read
// (not_found: it does not exist; anything else: a failed read, retried by the caller).
struct SecretRead {
  Result<std::map<std::string, std::string>> data =
      make_error(Errc::internal, "the Secret was not read");
  std::string version;  // its resourceVersion when read (a change means a new policy set)
};

// The SecretRead for a failed read of the Secret `ns/name`: a one-line reason people can act
// on, naming the Secret and never its content ("the Secret a/b does not exist", "the Secret
// a/b could not be read (HTTP 500); retrying"). The full error is the caller's to log.
SecretRead secret_read_failure(const std::string& ns, const std::string& name, const Error& e);

struct ClusterInputs {
  std::vector<ClusterObject> trust_roots;
  // ClusterImagePolicies, then ImagePolicies: the order policies take in the set.
  std::vector<ClusterObject> policies;
  policy::Documents files;        // from --policy (parsed, not linked)
  uint64_t files_generation = 0;  // bumped on every reload of the files
  // By "namespace/name": at least every Secret cluster_secret_refs() named.
  std::map<std::string, SecretRead> secrets;
};

struct CompileOptions {
  // Where a ClusterImagePolicy's (or a file policy's) secretRef without namespace points.
  std::string own_namespace = "sigil-system";
  // Keyless authorities without trustRootRef; called only when one needs it.
  policy::DefaultTrustRoot default_root;
};

template <class T>
struct LastGood {
  std::string uid;  // of the object (empty for files)
  int64_t generation = 0;
  T value;
  // Everything value was compiled from (policies only; see policy_inputs in the .cpp): a later
  // compile with the same inputs carries value over as it is, its Policy::id included, and so
  // keeps the verdicts cached under that id.
  std::string inputs;
};

// What is in force after a compile; the next compile's `last`.
struct CompileState {
  std::map<std::string, LastGood<policy::Policy>> policies;          // "Kind/key"
  std::map<std::string, LastGood<policy::TrustRootDocument>> roots;  // TrustRoot key
  std::map<std::string, LastGood<policy::Policy>> file_policies;     // policy name
  // Everything the compile was made of (objects' uid and generation, Secrets' versions, files'
  // generation): equal fingerprints compile to equal sets.
  std::string fingerprint;
};

enum class ObjectOutcome {
  compiled,     // this generation is in force
  kept,         // it does not compile; an earlier generation stays in force
  unavailable,  // it does not compile and never did: denies what it matches (policies only)
  invalid,      // nothing of it is in force (a TrustRoot, or a policy without readable globs)
};

// The status of one object, for its Ready condition (reason and message, one line each).
struct ObjectStatus {
  ObjectOutcome outcome = ObjectOutcome::invalid;
  bool ready = false;             // outcome == compiled
  std::string reason;             // "Compiled", "Invalid", "SecretUnavailable"
  std::string message;            // what is wrong and what is in force meanwhile
  int64_t generation = 0;         // observedGeneration
  bool secret_transient = false;  // a Secret read failed with something other than 404
};

struct ClusterCompile {
  // The policies of the new PolicySet: file policies, then ClusterImagePolicies, then
  // ImagePolicies (unavailable ones included).
  std::vector<policy::Policy> policies;
  std::vector<ObjectStatus> root_statuses;    // parallel to inputs.trust_roots
  std::vector<ObjectStatus> policy_statuses;  // parallel to inputs.policies
  // One line per --policy file policy that does not compile (for the log).
  std::vector<std::string> file_problems;
  CompileState state;
  bool changed = false;  // state.fingerprint differs from last.fingerprint
  bool retry = false;    // some Secret read failed with something other than 404
  uint64_t unavailable = 0, kept = 0, invalid = 0;  // objects and file policies
};

// One object, parsed (parse_documents). Parsing is most of a compile's cost (about 0.6 ms per
// policy on the CI machine), and an object's spec changes only with its generation, so parses
// are kept across compiles by uid and generation.
struct ParsedObject {
  std::string uid;
  int64_t generation = 0;
  Result<policy::Documents> docs = make_error(Errc::internal, "not parsed");
};
using ParseCache = std::map<std::string, ParsedObject>;  // "Kind/key"

// Every object of inputs parsed: previous's entry where uid and generation match (objects
// without a generation are always parsed again), a fresh parse otherwise. Objects no longer
// in inputs are dropped.
ParseCache parse_objects(const ClusterInputs& inputs, const ParseCache& previous);

// Every Secret the policies (cluster objects and files) may read: their secretRefs, with
// ClusterImagePolicies' and files' defaulting to own_namespace. Objects that do not parse name
// none; with `last` (the compile in force), its policies' Secrets are named too, since a last
// good generation stays in force only while they stand.
std::vector<policy::SecretRef> cluster_secret_refs(const ClusterInputs& inputs,
                                                   const ParseCache& parsed,
                                                   const std::string& own_namespace,
                                                   const CompileState* last = nullptr);

// The pure compile. parsed is parse_objects(inputs, ...). Never throws for bad objects: every
// failure is a status.
ClusterCompile compile_cluster(const ClusterInputs& inputs, const ParseCache& parsed,
                               const CompileState& last, const CompileOptions& options);

// The same, parsing every object (tests, one-off use).
std::vector<policy::SecretRef> cluster_secret_refs(const ClusterInputs& inputs,
                                                   const std::string& own_namespace);
ClusterCompile compile_cluster(const ClusterInputs& inputs, const CompileState& last,
                               const CompileOptions& options);

}  // namespace sigil::app
