// crypto/rekor_checkpoint.cpp: a transparency log's checkpoint (a signed note, Rekor v1 and
// C2SP tlog-checkpoint for Rekor v2) verified with the log's key.
#include "crypto/json_detail.hpp"
#include "crypto/rekor.hpp"
#include "crypto/rekor_detail.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <climits>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "common/encoding.hpp"
#include "crypto/go_base64.hpp"

namespace sigil::crypto {

namespace {

constexpr size_t kMaxCheckpointBytes = 256 * 1024;
constexpr size_t kMaxNoteSignatures = 100;
constexpr std::string_view kEmDash = "\xE2\x80\x94";  // U+2014, which opens a signature line

using detail::kHashSize;
using detail::printable;
using detail::verify_err;

// Go's note.Open refuses control characters and splits fields at spaces: note fields hold none.
bool has_space(std::string_view s) {
  return s.find_first_of(" \t\r\n") != std::string_view::npos;
}

// The next code point of s at pos (well-formed UTF-8 only: no overlong forms, surrogates or
// values past U+10FFFF, as Go's utf8.DecodeRune accepts), advancing pos; -1 when malformed.
int32_t next_rune(std::string_view s, size_t& pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  size_t n;
  int32_t r;
  int32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, r = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, r = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, r = b0 & 0x07, min = 0x10000;
  } else {
    return -1;
  }
  if (pos + n > s.size()) return -1;
  for (size_t i = 1; i < n; ++i) {
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if ((b & 0xC0) != 0x80) return -1;
    r = (r << 6) | (b & 0x3F);
  }
  if (r < min || r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF)) return -1;
  pos += n;
  return r;
}

// golang.org/x/mod/sumdb/note: a note is valid UTF-8 with no control character but '\n'.
bool note_characters_ok(std::string_view note) {
  for (size_t pos = 0; pos < note.size();) {
    int32_t r = next_rune(note, pos);
    if (r < 0 || (r < 0x20 && r != '\n')) return false;
  }
  return true;
}

// note's isValidName: non-empty UTF-8 without '+' or white space (Go's unicode.IsSpace).
bool note_name_ok(std::string_view name) {
  if (name.empty()) return false;
  for (size_t pos = 0; pos < name.size();) {
    int32_t r = next_rune(name, pos);
    if (r < 0 || r == '+') return false;
    const bool space = (r >= 0x09 && r <= 0x0D) || r == 0x20 || r == 0x85 || r == 0xA0 ||
                       r == 0x1680 || (r >= 0x2000 && r <= 0x200A) || r == 0x2028 || r == 0x2029 ||
                       r == 0x202F || r == 0x205F || r == 0x3000;
    if (space) return false;
  }
  return true;
}

// Decimal tree size as the note writes it: digits only, no leading zeros (except "0").
bool parse_size(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 19 || (s.size() > 1 && s.front() == '0')) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    int d = c - '0';
    if (v > (INT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

// Rekor v1 writes "<hostname> - <tree id>"; rekor-tiles (v2) writes the bare log name.
bool is_v1_origin(std::string_view origin) {
  size_t sep = origin.rfind(" - ");
  if (sep == std::string_view::npos || sep == 0) return false;
  std::string_view id = origin.substr(sep + 3);
  if (id.empty()) return false;
  for (char c : id) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// The host of a URL, as Go's url.URL.Hostname() gives it ("https://a.b:443/x" -> "a.b").
std::string url_host(std::string_view url) {
  size_t scheme = url.find("://");
  if (scheme != std::string_view::npos) url.remove_prefix(scheme + 3);
  size_t end = url.find_first_of("/?#");
  if (end != std::string_view::npos) url = url.substr(0, end);
  size_t at = url.rfind('@');
  if (at != std::string_view::npos) url.remove_prefix(at + 1);
  if (!url.empty() && url.front() == '[') {
    size_t close = url.find(']');
    return std::string(close == std::string_view::npos ? url.substr(1) : url.substr(1, close - 1));
  }
  size_t colon = url.rfind(':');
  if (colon != std::string_view::npos) url = url.substr(0, colon);
  return std::string(url);
}

Result<std::string> raw_public_key(const PublicKey& key) {
  const auto* pkey = static_cast<const EVP_PKEY*>(key.native());
  if (pkey == nullptr) return verify_err("the log has no key");
  size_t len = 0;
  if (EVP_PKEY_get_raw_public_key(pkey, nullptr, &len) != 1 || len == 0 || len > 256) {
    ERR_clear_error();
    return make_error(Errc::internal, "cannot read the log's raw public key");
  }
  std::string raw(len, '\0');
  if (EVP_PKEY_get_raw_public_key(pkey, reinterpret_cast<unsigned char*>(raw.data()), &len) != 1) {
    ERR_clear_error();
    return make_error(Errc::internal, "cannot read the log's raw public key");
  }
  raw.resize(len);
  return raw;
}

// The key hints a signature line by `log` may carry for a note with this origin.
Result<std::vector<std::string>> key_hints(const TransparencyLog& log, std::string_view origin,
                                           bool v1) {
  std::vector<std::string> hints;
  if (v1) {
    hints.push_back(sha256(log.key.spki_der()).substr(0, 4));
  } else {
    auto id = rekor_v2_log_id(log.key, origin);
    if (!id) return std::move(id).error();
    hints.push_back(id->substr(0, 4));
  }
  if (log.checkpoint_key_id.size() >= 4) hints.push_back(log.checkpoint_key_id.substr(0, 4));
  for (const auto& h : hints) {
    if (h.size() != 4) return make_error(Errc::internal, "cannot compute the log's key hint");
  }
  return hints;
}

}  // namespace

std::string rekor_v2_origin(std::string_view base_url) {
  return url_host(base_url);
}

Result<std::string> rekor_v2_log_id(const PublicKey& key, std::string_view origin) {
  std::string m(origin);
  switch (key.type()) {
    case KeyType::ed25519: {
      auto raw = raw_public_key(key);
      if (!raw) return std::move(raw).error();
      m += "\n\x01";
      m += *raw;
      return sha256(m);
    }
    case KeyType::rsa:
      m += "\n\xFFPKIX-RSA-PKCS#1v1.5";
      m += key.spki_der();
      return sha256(m);
    case KeyType::ecdsa_p256:
    case KeyType::ecdsa_p384:
    case KeyType::ecdsa_p521:
      // rekor-tiles keeps Rekor v1's SHA-256(SPKI) for ECDSA (not the C2SP form).
      return sha256(key.spki_der());
  }
  return make_error(Errc::internal, "cannot compute the log's key ID");
}

Result<Checkpoint> verify_checkpoint(std::string_view note, const TransparencyLog& log) {
  try {
    if (note.size() > kMaxCheckpointBytes) return verify_err("checkpoint is larger than 256 KiB");
    if (!note_characters_ok(note)) {
      return verify_err(
          "checkpoint is not a signed note: not UTF-8, or a control character other than "
          "newline");
    }
    size_t split = note.rfind("\n\n");
    if (split == std::string_view::npos) {
      return verify_err("checkpoint is not a signed note: no blank line before its signatures");
    }
    std::string_view text = note.substr(0, split + 1);
    std::string_view sigs = note.substr(split + 2);
    if (sigs.empty()) return verify_err("checkpoint has no signature lines");
    if (sigs.back() != '\n') {
      return verify_err("checkpoint signatures do not end with a newline");
    }

    // The note text: origin, size, root hash, then optional lines, each ending in '\n'.
    std::vector<std::string_view> lines;
    for (size_t pos = 0; pos < text.size();) {
      size_t nl = text.find('\n', pos);
      lines.push_back(text.substr(pos, nl - pos));
      pos = nl + 1;
    }
    if (lines.size() < 3) return verify_err("checkpoint has fewer than three lines");
    for (auto l : lines) {
      if (l.empty()) return verify_err("checkpoint text has an empty line");
    }
    Checkpoint cp;
    cp.origin = std::string(lines[0]);
    if (!parse_size(lines[1], cp.tree_size)) {
      return verify_err("checkpoint tree size \"" + printable(lines[1], 24) +
                        "\" is not a decimal number");
    }
    auto root = detail::go_std_base64(lines[2]);
    if (!root || root->size() != kHashSize || has_space(lines[2])) {
      return verify_err("checkpoint root hash is not a base64 SHA-256 hash");
    }
    cp.root_hash = std::move(root).value();
    for (size_t i = 3; i < lines.size(); ++i) cp.extra_lines.emplace_back(lines[i]);

    const bool v1 = is_v1_origin(cp.origin);
    if (!v1) {
      if (log.base_url.empty()) {
        return verify_err("checkpoint origin \"" + printable(cp.origin, 80) +
                          "\" cannot be checked: the log has no base URL");
      }
      if (cp.origin != url_host(log.base_url)) {
        return verify_err("checkpoint origin \"" + printable(cp.origin, 80) + "\" is not the log " +
                          printable(log.base_url, 80));
      }
    }
    auto hints = key_hints(log, cp.origin, v1);
    if (!hints) return std::move(hints).error();

    size_t matched = 0;
    size_t count = 0;
    for (size_t pos = 0; pos < sigs.size();) {
      size_t nl = sigs.find('\n', pos);
      std::string_view line = sigs.substr(pos, nl - pos);
      pos = nl + 1;
      if (++count > kMaxNoteSignatures) return verify_err("checkpoint has too many signatures");
      if (line.substr(0, kEmDash.size()) != kEmDash || line.size() < kEmDash.size() + 1 ||
          line[kEmDash.size()] != ' ') {
        return verify_err("checkpoint signature line does not start with \"\xE2\x80\x94 \"");
      }
      std::string_view rest = line.substr(kEmDash.size() + 1);
      size_t space = rest.find(' ');
      if (space == std::string_view::npos || space == 0) {
        return verify_err("checkpoint signature line has no key name");
      }
      std::string_view name = rest.substr(0, space);
      std::string_view b64 = rest.substr(space + 1);
      if (!note_name_ok(name)) {
        return verify_err("checkpoint signature line names \"" + printable(name, 80) +
                          "\", which is not a valid signer name");
      }
      if (b64.empty() || has_space(b64)) {
        return verify_err("checkpoint signature line is malformed");
      }
      auto sig = detail::go_std_base64(b64);
      if (!sig || sig->size() < 5) return verify_err("checkpoint signature is not valid base64");
      std::string_view hint = std::string_view(*sig).substr(0, 4);
      bool ours = false;
      for (const auto& h : *hints) ours = ours || h == hint;
      if (!v1 && name != cp.origin) ours = false;
      if (!ours) continue;  // another signer's (a witness) or another key's line
      ++matched;
      auto ok = log.key.verify(text, std::string_view(*sig).substr(4), log.hash);
      if (!ok) {
        if (ok.error().code == Errc::internal) return std::move(ok).error();
        return verify_err("checkpoint signature by " + printable(name, 80) +
                          " does not verify with the log's key");
      }
    }
    if (matched == 0) {
      return verify_err("checkpoint has no signature by the log's key (no key hint matches)");
    }
    return cp;
  } catch (const std::bad_alloc&) {
    return make_error(Errc::internal, "checkpoint check exhausted memory");
  }
}

}  // namespace sigil::crypto
