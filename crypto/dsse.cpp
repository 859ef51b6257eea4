// crypto/dsse.cpp: DSSE pre-authentication encoding, envelopes and in-toto statements.
// nlohmann comes first so that jcs.hpp and dsse.hpp declare their detail helpers here.
#include <nlohmann/json.hpp>

#include "crypto/dsse.hpp"
#include "crypto/json_detail.hpp"

#include <exception>
#include <new>
#include <utility>

#include "crypto/go_base64.hpp"
#include "crypto/jcs.hpp"

namespace sigil::crypto {

namespace {

using json = nlohmann::json;

std::string join(std::string_view path, std::string_view field) {
  if (path.empty()) return std::string(field);
  return std::string(path) + "." + std::string(field);
}

Error field_error(std::string_view field, std::string_view what) {
  return make_error(Errc::parse_error, std::string(field) + " " + std::string(what));
}

// The member called name, or nullptr when it is absent or null (JSON null reads as absent, as
// protobuf JSON and Go's decoder both treat it).
const json* member(const json& obj, std::string_view name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

Error prefixed(std::string_view doc, Error e) {
  e.message = std::string(doc) + ": " + e.message;
  return e;
}

// A bundle's envelope is protobuf JSON (protojson `bytes`); a bare envelope (cosign's .att
// layers) is read by go-securesystemslib, which takes standard and then URL-safe base64.
Result<std::string> envelope_bytes(const json& v, const std::string& field, bool protobuf) {
  if (protobuf) return detail::pb_bytes(v, field);
  if (!v.is_string()) return field_error(field, "must be a base64 string");
  auto raw = detail::dsse_base64(v.get_ref<const std::string&>());
  if (!raw) return field_error(field, "is " + raw.error().message);
  return raw;
}

}  // namespace

std::string dsse_pae(std::string_view payload_type, std::string_view payload) {
  std::string out = "DSSEv1 ";
  out += std::to_string(payload_type.size());
  out.push_back(' ');
  out += payload_type;
  out.push_back(' ');
  out += std::to_string(payload.size());
  out.push_back(' ');
  out += payload;
  return out;
}

namespace detail {

Result<DsseEnvelope> dsse_envelope_from_json(const json& v, std::string_view path,
                                             bool protobuf_names) {
  try {
    if (!v.is_object()) {
      return field_error(path.empty() ? "envelope" : path, "must be a JSON object");
    }
    DsseEnvelope env;

    const json* type = member(v, "payloadType");
    if (protobuf_names) {
      const json* snake = member(v, "payload_type");
      if (type != nullptr && snake != nullptr) {
        return field_error(join(path, "payloadType"), "is given twice (also as payload_type)");
      }
      if (type == nullptr) type = snake;
    }
    if (type == nullptr) return field_error(join(path, "payloadType"), "is missing");
    if (!type->is_string()) return field_error(join(path, "payloadType"), "must be a string");
    env.payload_type = type->get<std::string>();
    if (env.payload_type.empty()) return field_error(join(path, "payloadType"), "is empty");

    const json* payload = member(v, "payload");
    if (payload == nullptr) return field_error(join(path, "payload"), "is missing");
    auto raw = envelope_bytes(*payload, join(path, "payload"), protobuf_names);
    if (!raw) return std::move(raw).error();
    env.payload = std::move(raw).value();

    const json* sigs = member(v, "signatures");
    if (sigs == nullptr) return field_error(join(path, "signatures"), "is missing");
    if (!sigs->is_array()) return field_error(join(path, "signatures"), "must be an array");
    if (sigs->empty()) return field_error(join(path, "signatures"), "is empty");
    for (size_t i = 0; i < sigs->size(); ++i) {
      const json& s = (*sigs)[i];
      std::string at = join(path, "signatures[" + std::to_string(i) + "]");
      if (!s.is_object()) return field_error(at, "must be an object");
      DsseSignature out;
      const json* sig = member(s, "sig");
      if (sig == nullptr) return field_error(at + ".sig", "is missing");
      auto sig_raw = envelope_bytes(*sig, at + ".sig", protobuf_names);
      if (!sig_raw) return std::move(sig_raw).error();
      if (sig_raw->empty()) return field_error(at + ".sig", "is empty");
      out.sig = std::move(sig_raw).value();
      if (const json* keyid = member(s, "keyid")) {
        if (!keyid->is_string()) return field_error(at + ".keyid", "must be a string");
        out.keyid = keyid->get<std::string>();
      }
      env.signatures.push_back(std::move(out));
    }
    return env;
  } catch (const std::bad_alloc&) {
    return make_error(Errc::too_large, "DSSE envelope exhausted memory");
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "DSSE envelope is malformed");
  }
}

}  // namespace detail

Result<DsseEnvelope> parse_dsse_envelope(std::string_view text) {
  auto doc = detail::parse_json_strict(text, "DSSE envelope");
  if (!doc) return std::move(doc).error();
  auto env = detail::dsse_envelope_from_json(*doc, "", /*protobuf_names=*/false);
  if (!env) return prefixed("DSSE envelope", std::move(env).error());
  return env;
}

Result<InTotoStatement> parse_in_toto_statement(std::string_view text) {
  auto doc = detail::parse_json_strict(text, "in-toto statement");
  if (!doc) return std::move(doc).error();
  const std::string_view what = "in-toto statement";
  try {
    const json& v = *doc;
    if (!v.is_object()) return prefixed(what, field_error("document", "must be a JSON object"));
    InTotoStatement st;

    const json* type = member(v, "_type");
    if (type == nullptr) return prefixed(what, field_error("_type", "is missing"));
    if (!type->is_string()) return prefixed(what, field_error("_type", "must be a string"));
    st.type = type->get<std::string>();
    if (st.type != kInTotoStatementV01 && st.type != kInTotoStatementV1) {
      return prefixed(what, field_error("_type", "\"" + detail::printable(st.type, 80) +
                                                     "\" is not an in-toto statement type"));
    }

    const json* ptype = member(v, "predicateType");
    if (ptype == nullptr) return prefixed(what, field_error("predicateType", "is missing"));
    if (!ptype->is_string())
      return prefixed(what, field_error("predicateType", "must be a string"));
    st.predicate_type = ptype->get<std::string>();

    const json* subjects = member(v, "subject");
    if (subjects == nullptr) return prefixed(what, field_error("subject", "is missing"));
    if (!subjects->is_array()) return prefixed(what, field_error("subject", "must be an array"));
    if (subjects->empty()) return prefixed(what, field_error("subject", "is empty"));
    for (size_t i = 0; i < subjects->size(); ++i) {
      const json& s = (*subjects)[i];
      std::string at = "subject[" + std::to_string(i) + "]";
      if (!s.is_object()) return prefixed(what, field_error(at, "must be an object"));
      InTotoSubject sub;
      if (const json* name = member(s, "name")) {
        if (!name->is_string())
          return prefixed(what, field_error(at + ".name", "must be a string"));
        sub.name = name->get<std::string>();
      }
      const json* digest = member(s, "digest");
      if (digest == nullptr) return prefixed(what, field_error(at + ".digest", "is missing"));
      if (!digest->is_object()) {
        return prefixed(what, field_error(at + ".digest", "must be an object"));
      }
      for (auto it = digest->begin(); it != digest->end(); ++it) {
        if (!it->is_string()) {
          return prefixed(what, field_error(at + ".digest values", "must be strings"));
        }
        sub.digest.emplace(it.key(), it->get<std::string>());
      }
      st.subjects.push_back(std::move(sub));
    }

    if (const json* predicate = member(v, "predicate")) st.predicate_json = predicate->dump();
    return st;
  } catch (const std::bad_alloc&) {
    return make_error(Errc::too_large, "in-toto statement exhausted memory");
  } catch (const std::exception&) {
    return make_error(Errc::parse_error, "in-toto statement is malformed");
  }
}

bool statement_binds(const InTotoStatement& s, std::string_view algorithm, std::string_view hex) {
  if (hex.empty()) return false;
  for (const auto& sub : s.subjects) {
    auto it = sub.digest.find(std::string(algorithm));
    if (it == sub.digest.end()) continue;
    const std::string& have = it->second;
    if (have.size() != hex.size()) continue;
    bool same = true;
    for (size_t i = 0; i < hex.size() && same; ++i) {
      char a = have[i];
      char b = hex[i];
      if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
      if (b >= 'A' && b <= 'Z') b = static_cast<char>(b - 'A' + 'a');
      same = a == b;
    }
    if (same) return true;
  }
  return false;
}

}  // namespace sigil::crypto
