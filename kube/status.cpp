#include "kube/status.hpp"

#include <algorithm>
#include <cstdint>
#include <ctime>

#include <nlohmann/json.hpp>

#include "kube/detail/json.hpp"

namespace sigil::kube {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxReason = 1024;
constexpr size_t kMaxMessage = 4096;

// metav1.Condition reason: ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$, at most 1024 bytes.
bool valid_reason(std::string_view r) {
  if (r.empty() || r.size() > kMaxReason) return false;
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (!alpha(r.front())) return false;
  for (char c : r) {
    if (!(alpha(c) || digit(c) || c == '_' || c == ',' || c == ':')) return false;
  }
  const char last = r.back();
  return alpha(last) || digit(last) || last == '_';
}

// Valid UTF-8 only (each invalid byte becomes '?', so what the server stores and shows back
// is byte-for-byte what we compare with), cut at max bytes without splitting a sequence.
std::string clean_utf8(std::string_view in, size_t max) {
  std::string out;
  out.reserve(std::min(in.size(), max));
  size_t i = 0;
  while (i < in.size()) {
    const auto b = static_cast<unsigned char>(in[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (b < 0x80) {
      len = 1;
      cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4;
      cp = b & 0x07;
    }
    bool ok = len > 0 && i + len <= in.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const auto c = static_cast<unsigned char>(in[i + k]);
      if ((c & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (c & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
               (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)) {
      ok = false;
    }
    if (!ok) len = 1;
    if (out.size() + (ok ? len : 1) > max) break;
    if (ok) {
      out.append(in.substr(i, len));
    } else {
      out.push_back('?');
    }
    i += len;
  }
  return out;
}

std::string string_at(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

bool int_at(const json& obj, const char* key, int64_t& out) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return false;
  out = it->get<int64_t>();
  return true;
}

}  // namespace

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  if (std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) return "1970-01-01T00:00:00Z";
  return buf;
}

Result<std::optional<std::string>> ready_status_patch(const Object& object, const ReadyCondition& c,
                                                      std::chrono::system_clock::time_point now) {
  if (!valid_reason(c.reason)) {
    return make_error(Errc::invalid_argument,
                      "status reason \"" + sanitize_text(c.reason, 80) +
                          "\" is not a valid condition reason (CamelCase letters, digits, _ , :)");
  }
  if (c.observed_generation < 0) {
    return make_error(Errc::invalid_argument, "observedGeneration must not be negative");
  }
  auto parsed = detail::parse_json(object.json, "object");
  if (!parsed) return parsed.error();
  const json& obj = *parsed;
  if (!obj.is_object()) return make_error(Errc::parse_error, "object is not a JSON object");
  const std::string want_status = c.ready ? "True" : "False";
  const std::string message = clean_utf8(c.message, kMaxMessage);

  json conditions = json::array();
  const json* old_ready = nullptr;
  int64_t observed = -1;
  auto status = obj.find("status");
  if (status != obj.end() && status->is_object()) {
    int_at(*status, "observedGeneration", observed);
    auto conds = status->find("conditions");
    if (conds != status->end() && conds->is_array()) {
      for (const auto& cond : *conds) {
        if (cond.is_object() && string_at(cond, "type") == "Ready") {
          if (!old_ready) old_ready = &cond;
        }
      }
    }
  }
  if (old_ready && observed == c.observed_generation) {
    int64_t cond_gen = -1;
    int_at(*old_ready, "observedGeneration", cond_gen);
    if (string_at(*old_ready, "status") == want_status &&
        string_at(*old_ready, "reason") == c.reason && cond_gen == c.observed_generation &&
        string_at(*old_ready, "message") == message) {
      return std::optional<std::string>();
    }
  }
  std::string transition = rfc3339(now);
  if (old_ready && string_at(*old_ready, "status") == want_status) {
    const std::string prev = string_at(*old_ready, "lastTransitionTime");
    if (!prev.empty()) transition = prev;
  }
  json ready = {{"type", "Ready"},
                {"status", want_status},
                {"reason", c.reason},
                {"message", message},
                {"lastTransitionTime", transition},
                {"observedGeneration", c.observed_generation}};
  bool placed = false;
  if (status != obj.end() && status->is_object()) {
    auto conds = status->find("conditions");
    if (conds != status->end() && conds->is_array()) {
      for (const auto& cond : *conds) {
        if (cond.is_object() && string_at(cond, "type") == "Ready") {
          if (!placed) conditions.push_back(ready);
          placed = true;
        } else {
          conditions.push_back(cond);
        }
      }
    }
  }
  if (!placed) conditions.push_back(ready);
  json patch = {
      {"status",
       {{"observedGeneration", c.observed_generation}, {"conditions", std::move(conditions)}}}};
  try {
    return std::optional<std::string>(patch.dump(-1, ' ', false, json::error_handler_t::replace));
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string("status patch: ") + e.what());
  }
}

namespace {
// The damping of a status that another writer undoes (StatusWriter::write).
constexpr std::chrono::milliseconds kRewriteBackoffMin{1000};
constexpr std::chrono::milliseconds kRewriteBackoffMax{5 * 60 * 1000};
}  // namespace

StatusWriter::StatusWriter(std::shared_ptr<Client> client, Resource resource, const Clock& clock)
    : client_(std::move(client)), resource_(std::move(resource)), clock_(clock) {}

uint64_t StatusWriter::patches() const {
  std::lock_guard lock(mu_);
  return patches_;
}

size_t StatusWriter::remembered() const {
  std::lock_guard lock(mu_);
  return written_.size();
}

boost::asio::awaitable<Result<bool>> StatusWriter::write(Object object, ReadyCondition condition,
                                                         Deadline deadline) {
  auto patch = ready_status_patch(object, condition, clock_.now());
  if (!patch) co_return patch.error();
  if (!*patch) co_return false;
  const std::string key = object.meta.key();
  const std::string fingerprint = std::string(condition.ready ? "T" : "F") + "\n" +
                                  std::to_string(condition.observed_generation) + "\n" +
                                  condition.reason + "\n" + condition.message;
  const auto now = clock_.now();
  Written mine{object.meta.uid, object.meta.resource_version, fingerprint, now, {}};
  {
    std::lock_guard lock(mu_);
    // Objects written more than twice the longest backoff ago are forgotten (deleted since, or
    // long settled): such an entry decides nothing an absent one would not, and without this
    // the map kept every object ever written, however many came and went.
    std::erase_if(written_,
                  [&](const auto& kv) { return now - kv.second.at > 2 * kRewriteBackoffMax; });
    auto it = written_.find(key);
    if (it != written_.end() && it->second.uid == mine.uid &&
        it->second.fingerprint == mine.fingerprint) {
      const Written& last = it->second;
      if (last.resource_version == mine.resource_version) {
        co_return false;  // written (or being written) already; the watch has not caught up
      }
      // We wrote exactly this, and the object shows something else: someone undid it.
      const auto since = now - last.at;
      if (since >= std::chrono::system_clock::duration::zero() && since < last.backoff) {
        co_return false;  // a rewrite was sent less than a backoff ago: not another
      }
      // A quarrel long over (no rewrite for twice the longest backoff) starts over at the least.
      mine.backoff = since > 2 * kRewriteBackoffMax
                         ? kRewriteBackoffMin
                         : std::clamp(2 * last.backoff, kRewriteBackoffMin, kRewriteBackoffMax);
    }
    // Claimed before the PATCH, so a second snapshot racing this one does not send it again.
    written_[key] = mine;
  }
  auto r = co_await client_->merge_patch_status(resource_, object.meta.namespace_, object.meta.name,
                                                std::move(**patch), deadline);
  std::lock_guard lock(mu_);
  if (!r) {
    auto it = written_.find(key);
    if (it != written_.end() && it->second.resource_version == mine.resource_version &&
        it->second.fingerprint == mine.fingerprint) {
      written_.erase(it);  // let the next attempt try again
    }
    co_return r.error();
  }
  ++patches_;
  co_return true;
}

}  // namespace sigil::kube
