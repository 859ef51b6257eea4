// crypto/rekor.cpp: Rekor log entries (cosign's annotation, a bundle's tlog entries) and their
// signed entry timestamps. Entry bodies are read in rekor_body.cpp, inclusion proofs checked in
// rekor_merkle.cpp, checkpoints in rekor_checkpoint.cpp.
#include <nlohmann/json.hpp>

#include "crypto/json_detail.hpp"
#include "crypto/rekor.hpp"
#include "crypto/rekor_detail.hpp"

#include <climits>
#include <exception>
#include <new>
#include <utility>

#include "common/encoding.hpp"
#include "crypto/go_base64.hpp"
#include "crypto/jcs.hpp"

namespace sigil::crypto {

namespace detail {

// The log as messages name it: its URL, else the start of its id.
std::string log_name(const TransparencyLog& log) {
  return log.base_url.empty() ? short_hex(log.log_id) + "..." : printable(log.base_url, 80);
}

Status same_log(const TlogEntry& entry, const TransparencyLog& log) {
  if (entry.log_id == log.log_id) return {};
  return verify_err("log entry is from log " + short_hex(entry.log_id) + "..., not from " +
                    log_name(log));
}

}  // namespace detail

namespace {

using json = nlohmann::json;

constexpr size_t kMaxProofHashes = 64;

using detail::log_name;
using detail::parse_err;
using detail::prefixed;
using detail::printable;
using detail::same_log;
using detail::verify_err;

// --- Go encoding/json member matching (for cosign's annotation) --------------------------

// The one member whose folded name equals `folded`, nullptr when none (or null).
Result<const json*> go_member(const json& obj, std::string_view folded, std::string_view field) {
  const json* found = nullptr;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (detail::go_fold(it.key()) != folded) continue;
    if (found != nullptr)
      return parse_err(field, "is given twice (member names differing in case)");
    if (!it->is_null()) found = &*it;
  }
  return found;
}

Result<int64_t> go_int64(const json& v, std::string_view field) {
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      return parse_err(field, "is out of range");
    return static_cast<int64_t>(v.get<uint64_t>());
  }
  if (v.is_number_integer()) {
    int64_t n = v.get<int64_t>();
    if (n < 0) return parse_err(field, "must not be negative");
    return n;
  }
  return parse_err(field, "must be an integer");
}

// --- entry bodies ----------------------------------------------------------------------

// kind and apiVersion of a body, as the consistency check with kindVersion needs them.
Result<std::pair<std::string, std::string>> body_kind(std::string_view body,
                                                      std::string_view field) {
  auto doc = detail::parse_json_strict(body, std::string(field));
  if (!doc) return std::move(doc).error();
  const json& v = *doc;
  if (!v.is_object()) return parse_err(field, "is not a JSON object");
  auto kind = v.find("kind");
  auto version = v.find("apiVersion");
  if (kind == v.end() || !kind->is_string()) return parse_err(field, "has no string kind");
  if (version == v.end() || !version->is_string()) {
    return parse_err(field, "has no string apiVersion");
  }
  return std::make_pair(kind->get<std::string>(), version->get<std::string>());
}

}  // namespace

// --- public: parsers --------------------------------------------------------------------

Result<TlogEntry> parse_rekor_bundle_annotation(std::string_view text) {
  constexpr std::string_view what = "Rekor bundle annotation";
  auto doc = detail::parse_json_strict(text, what);
  if (!doc) return std::move(doc).error();
  try {
    const json& v = *doc;
    if (!v.is_object()) return prefixed(what, parse_err("document", "must be a JSON object"));
    TlogEntry e;

    auto set = go_member(v, "signedentrytimestamp", "SignedEntryTimestamp");
    if (!set) return prefixed(what, std::move(set).error());
    if (*set == nullptr) return prefixed(what, parse_err("SignedEntryTimestamp", "is missing"));
    auto set_raw = detail::go_std_bytes(**set, "SignedEntryTimestamp");
    if (!set_raw) return prefixed(what, std::move(set_raw).error());
    if (set_raw->empty()) return prefixed(what, parse_err("SignedEntryTimestamp", "is empty"));
    e.signed_entry_timestamp = std::move(set_raw).value();

    auto payload = go_member(v, "payload", "Payload");
    if (!payload) return prefixed(what, std::move(payload).error());
    if (*payload == nullptr) return prefixed(what, parse_err("Payload", "is missing"));
    const json& p = **payload;
    if (!p.is_object()) return prefixed(what, parse_err("Payload", "must be an object"));

    auto body = go_member(p, "body", "Payload.body");
    if (!body) return prefixed(what, std::move(body).error());
    if (*body == nullptr) return prefixed(what, parse_err("Payload.body", "is missing"));
    auto body_raw = detail::go_std_bytes(**body, "Payload.body");
    if (!body_raw) return prefixed(what, std::move(body_raw).error());
    if (body_raw->empty()) return prefixed(what, parse_err("Payload.body", "is empty"));
    e.canonicalized_body = std::move(body_raw).value();

    auto time = go_member(p, "integratedtime", "Payload.integratedTime");
    if (!time) return prefixed(what, std::move(time).error());
    if (*time == nullptr) return prefixed(what, parse_err("Payload.integratedTime", "is missing"));
    auto time_v = go_int64(**time, "Payload.integratedTime");
    if (!time_v) return prefixed(what, std::move(time_v).error());
    e.integrated_time = *time_v;

    auto index = go_member(p, "logindex", "Payload.logIndex");
    if (!index) return prefixed(what, std::move(index).error());
    if (*index == nullptr) return prefixed(what, parse_err("Payload.logIndex", "is missing"));
    auto index_v = go_int64(**index, "Payload.logIndex");
    if (!index_v) return prefixed(what, std::move(index_v).error());
    e.log_index = *index_v;

    auto id = go_member(p, "logid", "Payload.logID");
    if (!id) return prefixed(what, std::move(id).error());
    if (*id == nullptr) return prefixed(what, parse_err("Payload.logID", "is missing"));
    if (!(*id)->is_string()) return prefixed(what, parse_err("Payload.logID", "must be a string"));
    const auto& id_hex = (*id)->get_ref<const std::string&>();
    if (!is_lower_hex(id_hex) || id_hex.size() % 2 != 0) {
      return prefixed(what, parse_err("Payload.logID", "is not lowercase hex"));
    }
    auto id_raw = hex_decode(id_hex);
    if (!id_raw) return prefixed(what, parse_err("Payload.logID", "is not lowercase hex"));
    e.log_id = std::move(id_raw).value();

    auto kind = body_kind(e.canonicalized_body, "Payload.body");
    if (!kind) return prefixed(what, std::move(kind).error());
    e.kind = std::move(kind->first);
    e.version = std::move(kind->second);
    return e;
  } catch (const std::bad_alloc&) {
    return make_error(Errc::too_large, "Rekor bundle annotation exhausted memory");
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "Rekor bundle annotation is malformed");
  }
}

namespace detail {

Result<TlogEntry> tlog_entry_from_json(const json& v, std::string_view path) {
  try {
    const std::string at(path);
    if (!v.is_object()) return parse_err(at.empty() ? "tlog entry" : at, "must be an object");
    TlogEntry e;

    auto index = pb_member(v, "logIndex", "log_index", join(at, "logIndex"));
    if (!index) return std::move(index).error();
    if (*index != nullptr) {
      auto n = pb_int64(**index, join(at, "logIndex"), 0);
      if (!n) return std::move(n).error();
      e.log_index = *n;
    }

    auto log_id = pb_member(v, "logId", "log_id", join(at, "logId"));
    if (!log_id) return std::move(log_id).error();
    if (*log_id == nullptr) return parse_err(join(at, "logId"), "is missing");
    if (!(*log_id)->is_object()) return parse_err(join(at, "logId"), "must be an object");
    auto key_id = pb_member(**log_id, "keyId", "key_id", join(at, "logId.keyId"));
    if (!key_id) return std::move(key_id).error();
    if (*key_id == nullptr) return parse_err(join(at, "logId.keyId"), "is missing");
    auto key_id_raw = pb_bytes(**key_id, join(at, "logId.keyId"));
    if (!key_id_raw) return std::move(key_id_raw).error();
    if (key_id_raw->empty()) return parse_err(join(at, "logId.keyId"), "is empty");
    e.log_id = std::move(key_id_raw).value();

    auto kv = pb_member(v, "kindVersion", "kind_version", join(at, "kindVersion"));
    if (!kv) return std::move(kv).error();
    if (*kv == nullptr) return parse_err(join(at, "kindVersion"), "is missing");
    if (!(*kv)->is_object()) return parse_err(join(at, "kindVersion"), "must be an object");
    for (auto [name, dest] : {std::pair<const char*, std::string*>{"kind", &e.kind},
                              std::pair<const char*, std::string*>{"version", &e.version}}) {
      const std::string field = join(at, std::string("kindVersion.") + name);
      auto m = pb_member(**kv, name, name, field);
      if (!m) return std::move(m).error();
      if (*m == nullptr) return parse_err(field, "is missing");
      auto s = pb_string(**m, field);
      if (!s) return std::move(s).error();
      if (s->empty()) return parse_err(field, "is empty");
      *dest = std::move(s).value();
    }

    auto time = pb_member(v, "integratedTime", "integrated_time", join(at, "integratedTime"));
    if (!time) return std::move(time).error();
    if (*time != nullptr) {
      auto n = pb_int64(**time, join(at, "integratedTime"), 0);
      if (!n) return std::move(n).error();
      e.integrated_time = *n;
    }

    auto promise =
        pb_member(v, "inclusionPromise", "inclusion_promise", join(at, "inclusionPromise"));
    if (!promise) return std::move(promise).error();
    if (*promise != nullptr) {
      const std::string field = join(at, "inclusionPromise.signedEntryTimestamp");
      if (!(*promise)->is_object())
        return parse_err(join(at, "inclusionPromise"), "must be an object");
      auto set = pb_member(**promise, "signedEntryTimestamp", "signed_entry_timestamp", field);
      if (!set) return std::move(set).error();
      if (*set == nullptr) return parse_err(field, "is missing");
      auto raw = pb_bytes(**set, field);
      if (!raw) return std::move(raw).error();
      if (raw->empty()) return parse_err(field, "is empty");
      e.signed_entry_timestamp = std::move(raw).value();
    }

    auto proof = pb_member(v, "inclusionProof", "inclusion_proof", join(at, "inclusionProof"));
    if (!proof) return std::move(proof).error();
    if (*proof != nullptr) {
      const std::string pp = join(at, "inclusionProof");
      const json& pj = **proof;
      if (!pj.is_object()) return parse_err(pp, "must be an object");
      InclusionProof ip;
      auto pidx = pb_member(pj, "logIndex", "log_index", join(pp, "logIndex"));
      if (!pidx) return std::move(pidx).error();
      if (*pidx != nullptr) {
        auto n = pb_int64(**pidx, join(pp, "logIndex"), 0);
        if (!n) return std::move(n).error();
        ip.log_index = *n;
      }
      auto size = pb_member(pj, "treeSize", "tree_size", join(pp, "treeSize"));
      if (!size) return std::move(size).error();
      if (*size != nullptr) {
        auto n = pb_int64(**size, join(pp, "treeSize"), 0);
        if (!n) return std::move(n).error();
        ip.tree_size = *n;
      }
      auto root = pb_member(pj, "rootHash", "root_hash", join(pp, "rootHash"));
      if (!root) return std::move(root).error();
      if (*root == nullptr) return parse_err(join(pp, "rootHash"), "is missing");
      auto root_raw = pb_bytes(**root, join(pp, "rootHash"));
      if (!root_raw) return std::move(root_raw).error();
      if (root_raw->size() != kHashSize) {
        return parse_err(join(pp, "rootHash"), "is not a 32-byte SHA-256 hash");
      }
      ip.root_hash = std::move(root_raw).value();
      auto hashes = pb_member(pj, "hashes", "hashes", join(pp, "hashes"));
      if (!hashes) return std::move(hashes).error();
      if (*hashes != nullptr) {
        if (!(*hashes)->is_array()) return parse_err(join(pp, "hashes"), "must be an array");
        if ((*hashes)->size() > kMaxProofHashes) {
          return parse_err(join(pp, "hashes"), "has more than 64 hashes");
        }
        for (size_t i = 0; i < (*hashes)->size(); ++i) {
          const std::string field = join(pp, "hashes[" + std::to_string(i) + "]");
          auto h = pb_bytes((**hashes)[i], field);
          if (!h) return std::move(h).error();
          if (h->size() != kHashSize) return parse_err(field, "is not a 32-byte SHA-256 hash");
          ip.hashes.push_back(std::move(h).value());
        }
      }
      auto cp = pb_member(pj, "checkpoint", "checkpoint", join(pp, "checkpoint"));
      if (!cp) return std::move(cp).error();
      if (*cp != nullptr) {
        if (!(*cp)->is_object()) return parse_err(join(pp, "checkpoint"), "must be an object");
        auto env = pb_member(**cp, "envelope", "envelope", join(pp, "checkpoint.envelope"));
        if (!env) return std::move(env).error();
        if (*env != nullptr) {
          auto s = pb_string(**env, join(pp, "checkpoint.envelope"));
          if (!s) return std::move(s).error();
          ip.checkpoint = std::move(s).value();
        }
      }
      e.inclusion_proof = std::move(ip);
    }

    auto body =
        pb_member(v, "canonicalizedBody", "canonicalized_body", join(at, "canonicalizedBody"));
    if (!body) return std::move(body).error();
    if (*body == nullptr) return parse_err(join(at, "canonicalizedBody"), "is missing");
    auto body_raw = pb_bytes(**body, join(at, "canonicalizedBody"));
    if (!body_raw) return std::move(body_raw).error();
    if (body_raw->empty()) return parse_err(join(at, "canonicalizedBody"), "is empty");
    e.canonicalized_body = std::move(body_raw).value();

    auto kind = body_kind(e.canonicalized_body, join(at, "canonicalizedBody"));
    if (!kind) return std::move(kind).error();
    if (kind->first != e.kind || kind->second != e.version) {
      return parse_err(join(at, "kindVersion"), "says " + printable(e.kind, 32) + " " +
                                                    printable(e.version, 16) + " but the body is " +
                                                    printable(kind->first, 32) + " " +
                                                    printable(kind->second, 16));
    }
    return e;
  } catch (const std::bad_alloc&) {
    return make_error(Errc::too_large, "tlog entry exhausted memory");
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "tlog entry is malformed");
  }
}

}  // namespace detail

Result<TlogEntry> parse_bundle_tlog_entry(std::string_view text) {
  auto doc = detail::parse_json_strict(text, "tlog entry");
  if (!doc) return std::move(doc).error();
  auto e = detail::tlog_entry_from_json(*doc, "");
  if (!e) return prefixed("tlog entry", std::move(e).error());
  return e;
}

// --- public: verification ---------------------------------------------------------------

Status verify_signed_entry_timestamp(const TlogEntry& entry, const TransparencyLog& log) {
  try {
    if (entry.signed_entry_timestamp.empty()) {
      return verify_err("log entry " + std::to_string(entry.log_index) +
                        " has no signed entry timestamp");
    }
    if (auto same = same_log(entry, log); !same) return same;
    // The payload Rekor signs, canonicalized (RFC 8785) as Rekor and cosign do. As written here
    // it is canonical already (keys in order, no space, base64 and hex need no escaping), except
    // for its numbers: RFC 8785 writes them as IEEE doubles, which changes an integer only past
    // 2^53 in magnitude. So the canonicalizer (a parse and a rewrite: about 2% of a keyless
    // verification) runs only for such a value, which it rounds as Rekor's did.
    std::string payload = "{\"body\":\"" + base64_encode(entry.canonicalized_body) +
                          "\",\"integratedTime\":" + std::to_string(entry.integrated_time) +
                          ",\"logID\":\"" + hex_encode(entry.log_id) +
                          "\",\"logIndex\":" + std::to_string(entry.log_index) + "}";
    constexpr int64_t kExactInDouble = int64_t{1} << 53;
    const auto exact = [](int64_t v) { return v >= -kExactInDouble && v <= kExactInDouble; };
    if (!exact(entry.integrated_time) || !exact(entry.log_index)) {
      auto canonical = canonicalize_json(payload);
      if (!canonical) return make_error(Errc::internal, "cannot canonicalize the SET payload");
      payload = std::move(*canonical);
    }
    if (auto ok = log.key.verify(payload, entry.signed_entry_timestamp, log.hash); !ok) {
      if (ok.error().code == Errc::internal) return ok;
      return verify_err("signed entry timestamp of log entry " + std::to_string(entry.log_index) +
                        " does not verify with the key of log " + log_name(log));
    }
    return {};
  } catch (const std::bad_alloc&) {
    return make_error(Errc::internal, "SET check exhausted memory");
  }
}

}  // namespace sigil::crypto
