// app/compile_cluster.cpp: see compile_cluster.hpp.
#include "app/compile_cluster.hpp"

#include <cctype>
#include <exception>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

namespace sigil::app {

namespace {

constexpr const char* kCompiled = "Compiled";
constexpr const char* kInvalid = "Invalid";
constexpr const char* kSecretUnavailable = "SecretUnavailable";

// A policy error reads "<origin> document <n> (<name>): field: what"; the object's own status
// (and a denial naming the policy) needs only "field: what". head is "<origin> document" or
// a policy's origin ("<file> document 2").
std::string local_message(const std::string& message, const std::string& head) {
  if (message.rfind(head, 0) != 0) return message;
  size_t i = head.size();
  if (i < message.size() && message[i] == ' ' && i + 1 < message.size() &&
      std::isdigit(static_cast<unsigned char>(message[i + 1]))) {
    ++i;
  }
  while (i < message.size() && std::isdigit(static_cast<unsigned char>(message[i]))) ++i;
  if (message.compare(i, 2, " (") == 0) {
    const size_t end = message.find("): ", i);
    if (end != std::string::npos) return message.substr(end + 3);
  }
  if (message.compare(i, 2, ": ") == 0) return message.substr(i + 2);
  return message;
}

// The short cause of a failed read, for people: "HTTP 500", "timed out", ...
std::string brief_cause(const Error& e) {
  const std::string& m = e.message;
  for (size_t at = m.find("HTTP "); at != std::string::npos; at = m.find("HTTP ", at + 1)) {
    if (at + 8 <= m.size() && std::isdigit(static_cast<unsigned char>(m[at + 5])) &&
        std::isdigit(static_cast<unsigned char>(m[at + 6])) &&
        std::isdigit(static_cast<unsigned char>(m[at + 7]))) {
      return m.substr(at, 8);
    }
  }
  switch (e.code) {
    case Errc::timeout:
      return "timed out";
    case Errc::unauthorized:
      return "access denied";
    case Errc::too_large:
      return "too large";
    case Errc::parse_error:
      return "unreadable answer";
    default:
      return "API server unavailable";
  }
}

ObjectStatus make_status(ObjectOutcome outcome, const char* reason, std::string message,
                         int64_t generation) {
  ObjectStatus s;
  s.outcome = outcome;
  s.ready = outcome == ObjectOutcome::compiled;
  s.reason = reason;
  s.message = std::move(message);
  s.generation = generation;
  return s;
}

std::string meanwhile(policy::Mode mode) {
  return mode == policy::Mode::warn
             ? "; meanwhile the images it matches get a warning (POLICY_UNAVAILABLE, warn mode)"
             : "; meanwhile the images it matches are denied (POLICY_UNAVAILABLE)";
}

// A policy that cannot be compiled, reduced to what it applies to.
policy::Policy unavailable_policy(policy::Policy scope, std::string why) {
  scope.authorities.clear();
  scope.unavailable = std::move(why);
  scope.id = 0;  // other content: the set gives it a fresh id
  return scope;
}

std::string cache_key(const ClusterObject& obj) {
  return std::string(kind_name(obj.kind)) + "/" + obj.key();
}

// The origin in parse errors: "TrustRoot corp", "ImagePolicy team/p".
std::string origin_of(const ClusterObject& obj) {
  if (obj.kind == ObjectKind::trust_root) return "TrustRoot " + obj.name;
  return std::string(kind_name(obj.kind)) + " " + obj.key();
}

}  // namespace

std::string object_document(const std::string& json) {
  try {
    const auto j = nlohmann::json::parse(json);
    if (!j.is_object()) return json;
    nlohmann::json doc = nlohmann::json::object();
    for (const char* k : {"apiVersion", "kind", "spec"}) {
      if (auto it = j.find(k); it != j.end()) doc[k] = *it;
    }
    if (auto meta = j.find("metadata"); meta != j.end() && meta->is_object()) {
      nlohmann::json m = nlohmann::json::object();
      for (const char* k : {"name", "namespace", "uid", "resourceVersion", "generation"}) {
        if (auto it = meta->find(k); it != meta->end()) m[k] = *it;
      }
      doc["metadata"] = std::move(m);
    } else if (meta != j.end()) {
      doc["metadata"] = *meta;  // the parser names the problem
    }
    return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const std::exception&) {
    return json;
  }
}

namespace {

// obj parsed: from the cache when it holds this uid and generation, else parsed now.
const Result<policy::Documents>& parsed_docs(const ParseCache& parsed, const ClusterObject& obj,
                                             std::optional<Result<policy::Documents>>& scratch) {
  auto it = parsed.find(cache_key(obj));
  if (it != parsed.end() && it->second.uid == obj.uid && it->second.generation == obj.generation) {
    return it->second.docs;
  }
  scratch = policy::parse_documents(object_document(obj.json), origin_of(obj));
  return *scratch;
}

void count(ClusterCompile& out, ObjectOutcome o) {
  if (o == ObjectOutcome::unavailable) ++out.unavailable;
  if (o == ObjectOutcome::kept) ++out.kept;
  if (o == ObjectOutcome::invalid) ++out.invalid;
}

}  // namespace

const char* kind_name(ObjectKind kind) noexcept {
  switch (kind) {
    case ObjectKind::cluster_image_policy:
      return "ClusterImagePolicy";
    case ObjectKind::image_policy:
      return "ImagePolicy";
    case ObjectKind::trust_root:
      return "TrustRoot";
  }
  return "object";
}

std::string ClusterObject::key() const {
  return namespace_.empty() ? name : namespace_ + "/" + name;
}

SecretRead secret_read_failure(const std::string& ns, const std::string& name, const Error& e) {
  SecretRead r;
  const std::string key = ns + "/" + name;
  if (e.code == Errc::not_found) {
    r.data = make_error(Errc::not_found, "the Secret " + key + " does not exist");
    r.version = "missing";
  } else {
    const std::string cause = brief_cause(e);
    r.data =
        make_error(e.code, "the Secret " + key + " could not be read (" + cause + "); retrying");
    r.version = "error " + cause;
  }
  return r;
}

ParseCache parse_objects(const ClusterInputs& inputs, const ParseCache& previous) {
  ParseCache out;
  for (const auto* list : {&inputs.trust_roots, &inputs.policies}) {
    for (const auto& obj : *list) {
      const std::string key = cache_key(obj);
      auto it = previous.find(key);
      if (obj.generation != 0 && it != previous.end() && it->second.uid == obj.uid &&
          it->second.generation == obj.generation) {
        out.insert(*it);
        continue;
      }
      out.insert_or_assign(
          key, ParsedObject{obj.uid, obj.generation,
                            policy::parse_documents(object_document(obj.json), origin_of(obj))});
    }
  }
  return out;
}

std::vector<policy::SecretRef> cluster_secret_refs(const ClusterInputs& inputs,
                                                   const ParseCache& parsed,
                                                   const std::string& own_namespace,
                                                   const CompileState* last) {
  std::vector<policy::Policy> policies = inputs.files.policies;
  for (const auto& obj : inputs.policies) {
    std::optional<Result<policy::Documents>> scratch;
    const auto& d = parsed_docs(parsed, obj, scratch);
    if (d.ok()) policies.insert(policies.end(), d->policies.begin(), d->policies.end());
  }
  // A last good generation may stay in force while its object is broken: only while its own
  // Secrets stand, so they are read too.
  if (last != nullptr) {
    for (const auto& [key, good] : last->policies) policies.push_back(good.value);
  }
  return policy::secret_refs(policies, own_namespace);
}

std::vector<policy::SecretRef> cluster_secret_refs(const ClusterInputs& inputs,
                                                   const std::string& own_namespace) {
  return cluster_secret_refs(inputs, parse_objects(inputs, {}), own_namespace);
}

ClusterCompile compile_cluster(const ClusterInputs& inputs, const CompileState& last,
                               const CompileOptions& options) {
  return compile_cluster(inputs, parse_objects(inputs, {}), last, options);
}

ClusterCompile compile_cluster(const ClusterInputs& in, const ParseCache& parsed,
                               const CompileState& last, const CompileOptions& opts) {
  ClusterCompile out;
  std::string& fp = out.state.fingerprint;
  fp = "files#" + std::to_string(in.files_generation) + ";";

  // TrustRoots first: the policies link against them.
  std::vector<policy::TrustRootDocument> roots = in.files.trust_roots;
  for (const auto& obj : in.trust_roots) {
    const std::string key = obj.key();
    fp += "TrustRoot " + key + "@" + obj.uid + "#" + std::to_string(obj.generation) + ";";
    const std::string origin = origin_of(obj);
    std::optional<Result<policy::Documents>> scratch;
    const auto& d = parsed_docs(parsed, obj, scratch);
    std::string problem;
    if (!d.ok()) {
      problem = local_message(d.error().message, origin + " document");
    } else if (d->trust_roots.size() != 1 || !d->policies.empty()) {
      problem = "not a TrustRoot";
    }
    if (problem.empty()) {
      roots.push_back(d->trust_roots.front());
      out.state.roots[key] = {obj.uid, obj.generation, d->trust_roots.front(), {}};
      out.root_statuses.push_back(
          make_status(ObjectOutcome::compiled, kCompiled, "loaded", obj.generation));
      continue;
    }
    ObjectStatus s;
    auto lg = last.roots.find(key);
    if (lg != last.roots.end() && lg->second.uid == obj.uid) {
      roots.push_back(lg->second.value);
      out.state.roots[key] = lg->second;
      s = make_status(
          ObjectOutcome::kept, kInvalid,
          problem + "; generation " + std::to_string(lg->second.generation) + " stays in force",
          obj.generation);
    } else {
      s = make_status(ObjectOutcome::invalid, kInvalid,
                      problem + "; not loaded: policies naming it cannot be enforced",
                      obj.generation);
    }
    count(out, s.outcome);
    out.root_statuses.push_back(std::move(s));
  }

  // What every policy links against (the TrustRoots, the files' among them): part of each
  // policy's inputs.
  const std::string roots_fingerprint = fp;

  // Secrets, as the caller read them.
  for (const auto& [key, read] : in.secrets) {
    fp += "Secret " + key + "@" + read.version + ";";
    if (!read.data.ok() && read.data.error().code != Errc::not_found) out.retry = true;
  }
  const policy::SecretLookup lookup =
      [&in](const std::string& ns,
            const std::string& name) -> Result<std::map<std::string, std::string>> {
    auto it = in.secrets.find(ns + "/" + name);
    if (it == in.secrets.end()) {
      return make_error(Errc::internal, "the Secret " + ns + "/" + name + " was not read");
    }
    return it->second.data;
  };
  // Secrets, then TrustRoots: the authorities of one policy, or why they cannot be built.
  struct Built {
    std::optional<policy::Policy> policy;
    const char* reason = kInvalid;
    std::string problem;  // the full message
    // What failed is the cluster's present state, not a read that may succeed on retry: a
    // Secret that does not exist or holds no usable key, a TrustRoot that is gone. The last
    // good generation is then not kept: trusting a key or a root after it was deleted or
    // replaced would admit what the cluster no longer trusts.
    bool definitive = false;
  };
  // Everything a policy compiles from besides its own document: its Secrets as read (by
  // version) and every TrustRoot. Equal inputs compile to an equal policy, so a policy whose
  // inputs are those of its last good compile is carried over as it is, id included.
  auto policy_inputs = [&](const policy::Policy& p) {
    std::string s = roots_fingerprint;
    for (const auto& r : policy::secret_refs({p}, opts.own_namespace)) {
      const std::string key = r.namespace_ + "/" + r.name;
      auto it = in.secrets.find(key);
      s += "Secret " + key + "@";
      s += it == in.secrets.end() ? "?" : it->second.data.ok() ? it->second.version : "!";
      s += ";";
    }
    return s;
  };
  auto build = [&](policy::Policy p) {
    Built b;
    std::vector<policy::Policy> one{std::move(p)};
    if (auto st = policy::resolve_secrets(one, lookup, opts.own_namespace); !st) {
      b.reason = kSecretUnavailable;
      b.problem = st.error().message;
      b.definitive =
          st.error().code == Errc::not_found || st.error().code == Errc::invalid_argument;
    } else if (auto lk = policy::link_trust_roots(one, roots, opts.default_root); !lk) {
      b.problem = lk.error().message;
      b.definitive = true;
    } else {
      b.policy = std::move(one.front());
      b.policy->id = policy::fresh_policy_id();  // new content: verdicts start over
    }
    return b;
  };

  // File policies (parsed at load; they may name the cluster's TrustRoots and Secrets).
  for (const auto& fpol : in.files.policies) {
    // The document (file and index: its content for this generation of the files) and what it
    // links against; the files' generation is part of every policy's inputs.
    const std::string inputs = fpol.origin + ";" + policy_inputs(fpol);
    auto lg = last.file_policies.find(fpol.name);
    if (lg != last.file_policies.end() && lg->second.inputs == inputs) {
      out.state.file_policies[fpol.name] = lg->second;  // nothing it compiles from changed
      out.policies.push_back(lg->second.value);
      continue;
    }
    Built b = build(fpol);
    if (b.policy) {
      out.state.file_policies[fpol.name] = {{}, 0, *b.policy, inputs};
      out.policies.push_back(std::move(*b.policy));
      continue;
    }
    if (lg != last.file_policies.end() && !b.definitive) {
      out.state.file_policies[fpol.name] = lg->second;
      out.policies.push_back(lg->second.value);
      out.file_problems.push_back(b.problem + "; its previous version stays in force");
      count(out, ObjectOutcome::kept);
    } else {
      out.policies.push_back(unavailable_policy(fpol, local_message(b.problem, fpol.origin)));
      out.file_problems.push_back(b.problem + meanwhile(fpol.mode));
      count(out, ObjectOutcome::unavailable);
    }
  }

  // Cluster policies: each object on its own.
  for (const auto& obj : in.policies) {
    const std::string kind = kind_name(obj.kind);
    const std::string key = kind + "/" + obj.key();
    const std::string origin = origin_of(obj);
    fp += key + "@" + obj.uid + "#" + std::to_string(obj.generation) + ";";

    Built b;
    std::string inputs;                   // what it compiles from, once it parsed
    std::optional<policy::Policy> scope;  // what it applies to, once its globs were read
    std::optional<Result<policy::Documents>> scratch;
    const auto& d = parsed_docs(parsed, obj, scratch);
    if (!d.ok()) {
      b.problem = d.error().message;
    } else if (d->policies.size() != 1 || !d->trust_roots.empty()) {
      b.problem = "not a " + kind;
    } else {
      scope = d->policies.front();
      // An object without a generation may change without it saying so: never carried over
      // (parse_objects parses it again too).
      if (obj.generation > 0) {
        inputs = obj.uid + "#" + std::to_string(obj.generation) + ";" + policy_inputs(*scope);
      }
      auto lg = last.policies.find(key);
      if (!inputs.empty() && lg != last.policies.end() && lg->second.inputs == inputs) {
        // Nothing it compiles from changed: the same policy, id and verdicts included.
        out.state.policies[key] = lg->second;
        out.policies.push_back(lg->second.value);
        out.policy_statuses.push_back(make_status(
            ObjectOutcome::compiled, kCompiled,
            "enforced (generation " + std::to_string(obj.generation) + ")", obj.generation));
        continue;
      }
      b = build(d->policies.front());
    }
    if (b.policy) {
      out.state.policies[key] = {obj.uid, obj.generation, *b.policy, inputs};
      out.policies.push_back(std::move(*b.policy));
      out.policy_statuses.push_back(make_status(
          ObjectOutcome::compiled, kCompiled,
          "enforced (generation " + std::to_string(obj.generation) + ")", obj.generation));
      continue;
    }
    std::string problem = local_message(b.problem, origin + " document");
    ObjectStatus s;
    // This generation cannot be enforced for now (a broken edit, a Secret that could not be
    // read): the last one that could stays in force, never relaxed. But only as its own Secrets
    // and TrustRoots stand now (read_secrets reads those of every last good generation): a key
    // or a root deleted or replaced while the object is broken is not trusted on. When what it
    // links against changed, it is compiled again from them; when that fails for good, it goes.
    std::optional<LastGood<policy::Policy>> kept;
    std::optional<policy::Policy> revoked;  // a last good generation that no longer stands
    auto lg = last.policies.find(key);
    if (lg != last.policies.end() && lg->second.uid == obj.uid && !b.definitive) {
      kept = lg->second;
      const size_t cut = kept->inputs.find(';');  // "uid#generation;" then what it links
      const std::string links = policy_inputs(kept->value);
      if (cut == std::string::npos ||
          kept->inputs.compare(cut + 1, std::string::npos, links) != 0) {
        Built again = build(kept->value);
        if (again.policy) {
          kept->value = std::move(*again.policy);
          if (cut != std::string::npos) kept->inputs = kept->inputs.substr(0, cut + 1) + links;
        } else if (again.definitive) {
          problem += "; generation " + std::to_string(kept->generation) +
                     " is not kept either: " + local_message(again.problem, origin + " document");
          revoked = std::move(kept->value);
          kept.reset();
        }
      }
    }
    if (kept) {
      out.state.policies[key] = *kept;
      out.policies.push_back(kept->value);
      s = make_status(
          ObjectOutcome::kept, b.reason,
          problem + "; generation " + std::to_string(kept->generation) + " stays in force",
          obj.generation);
    } else {
      // What it denies meanwhile: what the generation that no longer stands matched, when
      // this one's images cannot be read.
      if (!scope && revoked) scope = std::move(revoked);
      if (!scope && d.ok() == false) {
        // The whole document was refused: maybe its globs can still be read.
        auto sc = policy::parse_policy_scope(object_document(obj.json), origin);
        if (sc.ok()) {
          scope = std::move(*sc);
        } else {
          s = make_status(ObjectOutcome::invalid, kInvalid,
                          local_message(sc.error().message, origin + " document") +
                              "; nothing is enforced: its images cannot be read",
                          obj.generation);
        }
      }
      if (scope) {
        const policy::Mode mode = scope->mode;
        out.policies.push_back(unavailable_policy(std::move(*scope), problem));
        s = make_status(ObjectOutcome::unavailable, b.reason, problem + meanwhile(mode),
                        obj.generation);
      } else if (s.message.empty()) {
        s = make_status(ObjectOutcome::invalid, kInvalid,
                        problem + "; nothing is enforced: its images cannot be read",
                        obj.generation);
      }
    }
    count(out, s.outcome);
    out.policy_statuses.push_back(std::move(s));
  }
  out.changed = out.state.fingerprint != last.fingerprint;
  return out;
}

}  // namespace sigil::app
