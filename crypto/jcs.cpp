// crypto/jcs.cpp: RFC 8785 canonicalization, and the strict JSON reader the crypto parsers share.
// nlohmann comes first so that jcs.hpp declares detail::parse_json_strict here too.
#include <nlohmann/json.hpp>

#include "crypto/jcs.hpp"
#include "crypto/json_detail.hpp"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <new>
#include <set>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include "common/encoding.hpp"
#include "common/json_text.hpp"
#include "crypto/go_base64.hpp"

namespace sigil::crypto {

namespace {

using json = nlohmann::json;

struct Rejected : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using detail::printable;

// Watches the parse: rejects a member name repeated in one object (nlohmann would silently
// keep the last; with an identity, names equal through it) and nesting deeper than max_depth.
// Throws Rejected, which parse_json_strict turns into an error before it leaves this file.
class StrictGuard {
 public:
  StrictGuard(int max_depth, detail::MemberIdentity identity)
      : max_depth_(max_depth), identity_(identity) {}

  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open(true);
        break;
      case json::parse_event_t::array_start:
        open(false);
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!stack_.empty()) stack_.pop_back();
        break;
      case json::parse_event_t::key:
        if (!stack_.empty() && stack_.back().is_object && parsed.is_string()) {
          const auto& key = parsed.get_ref<const std::string&>();
          Frame& top = stack_.back();
          top.pending_key = key;
          if (!top.keys.insert(identity_ ? identity_(path(), key) : key).second) {
            throw Rejected("duplicate key \"" + printable(key, 64) + "\"");
          }
        }
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool is_object = false;
    std::string name;         // its member name in the parent ("" in an array, or the root)
    std::string pending_key;  // objects: the member being read
    std::set<std::string> keys;
  };

  void open(bool is_object) {
    if (stack_.size() >= static_cast<size_t>(max_depth_)) {
      throw Rejected("nesting deeper than " + std::to_string(max_depth_) + " levels");
    }
    Frame f;
    f.is_object = is_object;
    if (!stack_.empty() && stack_.back().is_object) f.name = stack_.back().pending_key;
    stack_.push_back(std::move(f));
  }

  // The member names from the document down to the innermost open container.
  std::vector<std::string> path() const {
    std::vector<std::string> out;
    for (size_t i = 1; i < stack_.size(); ++i) out.push_back(stack_[i].name);
    return out;
  }

  int max_depth_;
  detail::MemberIdentity identity_;
  std::vector<Frame> stack_;
};

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest reads well.
std::string describe(const std::exception& e) {
  std::string_view m = e.what();
  if (!m.empty() && m.front() == '[') {
    size_t close = m.find("] ");
    if (close != std::string_view::npos) m.remove_prefix(close + 2);
  }
  return printable(m, 200);
}

// UTF-16 code units of valid UTF-8 (nlohmann has validated every string it returns).
std::u16string utf16(std::string_view s) {
  std::u16string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp = c;
    size_t len = 1;
    const size_t rest = s.size() - i;
    if (c >= 0xF0 && rest >= 4) {
      cp = ((c & 0x07u) << 18) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 12) |
           ((static_cast<unsigned char>(s[i + 2]) & 0x3Fu) << 6) |
           (static_cast<unsigned char>(s[i + 3]) & 0x3Fu);
      len = 4;
    } else if (c >= 0xE0 && rest >= 3) {
      cp = ((c & 0x0Fu) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
           (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
      len = 3;
    } else if (c >= 0xC0 && rest >= 2) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
      len = 2;
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out.push_back(static_cast<char16_t>(0xD800 + (cp >> 10)));
      out.push_back(static_cast<char16_t>(0xDC00 + (cp & 0x3FF)));
    } else {
      out.push_back(static_cast<char16_t>(cp));
    }
    i += len;
  }
  return out;
}

void append_canonical(std::string& out, const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      out += "null";
      return;
    case json::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      return;
    case json::value_t::number_integer:
      out += ecmascript_number(static_cast<double>(v.get<int64_t>()));
      return;
    case json::value_t::number_unsigned:
      out += ecmascript_number(static_cast<double>(v.get<uint64_t>()));
      return;
    case json::value_t::number_float: {
      double d = v.get<double>();
      if (!std::isfinite(d)) throw Rejected("number is outside the IEEE 754 double range");
      out += ecmascript_number(d);
      return;
    }
    case json::value_t::string:
      // The text is valid UTF-8 (parse_json_strict), so nothing is replaced: RFC 8785 bytes.
      append_json_string(out, v.get_ref<const std::string&>());
      return;
    case json::value_t::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& e : v) {
        if (!first) out.push_back(',');
        first = false;
        append_canonical(out, e);
      }
      out.push_back(']');
      return;
    }
    case json::value_t::object: {
      // nlohmann keeps members in UTF-8 byte order; RFC 8785 wants UTF-16 code unit order,
      // which differs once characters beyond U+FFFF meet characters in U+E000..U+FFFF.
      std::vector<std::pair<std::u16string, json::const_iterator>> members;
      members.reserve(v.size());
      for (auto it = v.cbegin(); it != v.cend(); ++it) members.emplace_back(utf16(it.key()), it);
      std::sort(members.begin(), members.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      out.push_back('{');
      bool first = true;
      for (const auto& [_, it] : members) {
        if (!first) out.push_back(',');
        first = false;
        append_json_string(out, it.key());
        out.push_back(':');
        append_canonical(out, *it);
      }
      out.push_back('}');
      return;
    }
    case json::value_t::binary:
    case json::value_t::discarded:
      break;
  }
  throw Rejected("value has no JSON form");
}

}  // namespace

std::string ecmascript_number(double value) {
  if (!std::isfinite(value)) return "";
  if (value == 0) return "0";  // also -0
  std::string out;
  if (value < 0) {
    out.push_back('-');
    value = -value;
  }
  // Shortest round-trip digits: "d.ddde±XX". Among the shortest, to_chars picks the one
  // closest to the exact value, which is what ECMAScript's Number::toString asks for.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  if (r.ec != std::errc()) return "";
  std::string_view sci(buf, static_cast<size_t>(r.ptr - buf));
  size_t e = sci.find('e');
  if (e == std::string_view::npos) return "";
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  std::string_view exp_text = sci.substr(e + 1);
  bool negative_exp = !exp_text.empty() && exp_text.front() == '-';
  if (!exp_text.empty() && (exp_text.front() == '-' || exp_text.front() == '+')) {
    exp_text.remove_prefix(1);
  }
  int exp = 0;
  auto er = std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exp);
  if (er.ec != std::errc()) return "";
  if (negative_exp) exp = -exp;
  // ECMAScript: value = digits x 10^(n - k), k = number of digits.
  const int k = static_cast<int>(digits.size());
  const int n = exp + 1;
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out += digits.substr(0, static_cast<size_t>(n));
    out.push_back('.');
    out += digits.substr(static_cast<size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-n), '0');
    out += digits;
  } else {
    out.push_back(digits[0]);
    if (k > 1) {
      out.push_back('.');
      out += digits.substr(1);
    }
    out.push_back('e');
    out.push_back(n - 1 >= 0 ? '+' : '-');
    out += std::to_string(n - 1 >= 0 ? n - 1 : -(n - 1));
  }
  return out;
}

namespace detail {

std::string go_fold(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (size_t i = 0; i < key.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(key[i]);
    if (c == 0xE2 && i + 2 < key.size() && static_cast<unsigned char>(key[i + 1]) == 0x84 &&
        static_cast<unsigned char>(key[i + 2]) == 0xAA) {
      out.push_back('k');  // U+212A
      i += 2;
    } else if (c == 0xC5 && i + 1 < key.size() && static_cast<unsigned char>(key[i + 1]) == 0xBF) {
      out.push_back('s');  // U+017F
      i += 1;
    } else if (c >= 'A' && c <= 'Z') {
      out.push_back(static_cast<char>(c - 'A' + 'a'));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

Result<json> parse_json_strict(std::string_view text, std::string_view what, size_t max_bytes) {
  return parse_json_strict(text, what, max_bytes, kMaxJsonDepth, nullptr);
}

Result<json> parse_json_strict(std::string_view text, std::string_view what, size_t max_bytes,
                               int max_depth, MemberIdentity identity) {
  const std::string name(what);
  if (text.size() > max_bytes) {
    return make_error(Errc::too_large,
                      name + " is larger than " + std::to_string(max_bytes / 1024) + " KiB");
  }
  // nlohmann skips a UTF-8 byte order mark; RFC 8259 forbids emitting one, and a signed
  // document has no reason to carry it.
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") {
    return make_error(Errc::parse_error, name + " starts with a byte order mark");
  }
  try {
    StrictGuard guard(max_depth, identity);
    json doc = json::parse(text.data(), text.data() + text.size(), std::ref(guard),
                           /*allow_exceptions=*/true, /*ignore_comments=*/false);
    return doc;
  } catch (const Rejected& e) {
    return make_error(Errc::parse_error, name + ": " + e.what());
  } catch (const json::exception& e) {
    return make_error(Errc::parse_error, name + " is not valid JSON: " + describe(e));
  } catch (const std::bad_alloc&) {
    return make_error(Errc::too_large, name + " exhausted memory while parsing");
  } catch (const std::exception& e) {
    return make_error(Errc::parse_error, name + ": " + describe(e));
  } catch (...) {
    return make_error(Errc::internal, name + ": unexpected failure while parsing");
  }
}

Result<const json*> pb_member(const json& obj, std::string_view json_name,
                              std::string_view proto_name, std::string_view field) {
  const json* found = nullptr;
  if (auto it = obj.find(json_name); it != obj.end() && !it->is_null()) found = &*it;
  if (proto_name != json_name) {
    if (auto it = obj.find(proto_name); it != obj.end() && !it->is_null()) {
      if (found != nullptr) {
        return make_error(Errc::parse_error, std::string(field) + " is given twice (as " +
                                                 std::string(json_name) + " and " +
                                                 std::string(proto_name) + ")");
      }
      found = &*it;
    }
  }
  return found;
}

Result<std::string> pb_bytes(const json& v, std::string_view field) {
  if (!v.is_string()) {
    return make_error(Errc::parse_error, std::string(field) + " must be a base64 string");
  }
  auto raw = protojson_base64(v.get_ref<const std::string&>());
  if (!raw) return make_error(Errc::parse_error, std::string(field) + " is " + raw.error().message);
  return std::move(raw).value();
}

Result<std::string> go_std_bytes(const json& v, std::string_view field) {
  if (!v.is_string()) {
    return make_error(Errc::parse_error, std::string(field) + " must be a base64 string");
  }
  auto raw = go_std_base64(v.get_ref<const std::string&>());
  if (!raw) return make_error(Errc::parse_error, std::string(field) + " is " + raw.error().message);
  return std::move(raw).value();
}

Result<int64_t> pb_int64(const json& v, std::string_view field, int64_t min) {
  int64_t out = 0;
  if (v.is_number_integer() && !v.is_number_unsigned()) {
    out = v.get<int64_t>();
  } else if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) {
      return make_error(Errc::parse_error, std::string(field) + " is out of range");
    }
    out = static_cast<int64_t>(u);
  } else if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    std::string_view digits = s;
    if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
    bool canonical = !digits.empty() && (digits.size() == 1 || digits.front() != '0');
    for (char c : digits) canonical = canonical && c >= '0' && c <= '9';
    if (!canonical || s == "-0") {
      return make_error(Errc::parse_error, std::string(field) + " must be a decimal integer");
    }
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
      return make_error(Errc::parse_error, std::string(field) + " is out of range");
    }
  } else {
    return make_error(Errc::parse_error, std::string(field) + " must be an integer");
  }
  if (out < min) {
    return make_error(Errc::parse_error,
                      std::string(field) + " must be at least " + std::to_string(min));
  }
  return out;
}

Result<std::string> pb_string(const json& v, std::string_view field) {
  if (!v.is_string())
    return make_error(Errc::parse_error, std::string(field) + " must be a string");
  return v.get<std::string>();
}

}  // namespace detail

Result<std::string> canonicalize_json(std::string_view text) {
  auto doc = detail::parse_json_strict(text, "JSON document");
  if (!doc) return std::move(doc).error();
  try {
    std::string out;
    out.reserve(text.size());
    append_canonical(out, *doc);
    return out;
  } catch (const Rejected& e) {
    return make_error(Errc::parse_error, std::string("JSON document: ") + e.what());
  } catch (const std::bad_alloc&) {
    return make_error(Errc::too_large, "JSON document exhausted memory while canonicalizing");
  } catch (const std::exception& e) {
    return make_error(Errc::parse_error, "JSON document: " + describe(e));
  } catch (...) {
    return make_error(Errc::internal, "JSON document: unexpected failure while canonicalizing");
  }
}

}  // namespace sigil::crypto
