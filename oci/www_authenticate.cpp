// oci/www_authenticate.cpp: RFC 7235 / RFC 9110 section 11.6.1 challenge list parser.
//
//   WWW-Authenticate = #challenge
//   challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//   auth-param = token BWS "=" BWS ( token / quoted-string )
//   token68    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//
// The list comma is ambiguous between "next parameter" and "next challenge"; after a comma,
// `token OWS "="` is a parameter of the current challenge, any other token starts a new one.
#include "oci/www_authenticate.hpp"

#include <cstddef>
#include <string>
#include <utility>

namespace sigil::oci {
namespace {

constexpr std::size_t kMaxHeaderBytes = 16 * 1024;

bool is_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

bool is_tchar(char c) noexcept {
  if (is_alpha(c) || is_digit(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool is_token68_char(char c) noexcept {
  return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' ||
         c == '/';
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  Result<std::vector<Challenge>> run() {
    std::vector<Challenge> out;
    while (true) {
      skip_list_separators();
      if (at_end()) break;
      auto c = challenge();
      if (!c) return std::move(c).error();
      out.push_back(std::move(*c));
      skip_ows();
      if (at_end()) break;
      if (peek() != ',') return fail("expected ',' between challenges");
    }
    if (out.empty()) return fail("no challenge");
    return out;
  }

 private:
  bool at_end() const noexcept { return pos_ >= s_.size(); }
  char peek() const noexcept { return s_[pos_]; }

  std::size_t skip_ows() {
    const std::size_t start = pos_;
    while (!at_end() && (peek() == ' ' || peek() == '\t')) ++pos_;
    return pos_ - start;
  }
  void skip_list_separators() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == ',')) ++pos_;
  }

  std::string_view token() {
    const std::size_t start = pos_;
    while (!at_end() && is_tchar(peek())) ++pos_;
    return s_.substr(start, pos_ - start);
  }

  Error fail(std::string_view why) const {
    return make_error(Errc::parse_error, "WWW-Authenticate: " + std::string(why) + " at offset " +
                                             std::to_string(pos_));
  }

  // After a comma inside a challenge: is the next element `token OWS "="` (a parameter)?
  bool next_is_param() const {
    std::size_t p = pos_;
    const std::size_t start = p;
    while (p < s_.size() && is_tchar(s_[p])) ++p;
    if (p == start) return false;
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t')) ++p;
    return p < s_.size() && s_[p] == '=';
  }

  // token68 followed by OWS and then end or ','. Leaves pos_ untouched when it does not match.
  bool try_token68(std::string& out) {
    std::size_t p = pos_;
    const std::size_t start = p;
    while (p < s_.size() && is_token68_char(s_[p])) ++p;
    if (p == start) return false;
    while (p < s_.size() && s_[p] == '=') ++p;
    const std::size_t end = p;
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t')) ++p;
    if (p < s_.size() && s_[p] != ',') return false;
    out = std::string(s_.substr(start, end - start));
    pos_ = p;
    return true;
  }

  Result<std::string> quoted_string() {
    ++pos_;  // opening quote
    std::string value;
    while (true) {
      if (at_end()) return fail("unterminated quoted string");
      const char ch = peek();
      const auto c = static_cast<unsigned char>(ch);
      ++pos_;
      if (ch == '"') return value;
      if (ch == '\\') {
        if (at_end()) return fail("unterminated quoted string");
        const auto e = static_cast<unsigned char>(peek());
        if (e != '\t' && (e < 0x20 || e == 0x7f)) return fail("control character in quoted-pair");
        value += peek();
        ++pos_;
        continue;
      }
      if (c != '\t' && (c < 0x20 || c == 0x7f)) return fail("control character in quoted string");
      value += ch;
    }
  }

  Result<Challenge> challenge() {
    Challenge c;
    const auto scheme = token();
    if (scheme.empty()) return fail("expected an auth-scheme");
    c.scheme = lower(scheme);
    const std::size_t spaces = skip_ows();
    if (at_end() || peek() == ',') return c;
    if (spaces == 0) return fail("expected a space after the auth-scheme");
    if (try_token68(c.token68)) return c;

    while (true) {
      const auto name = token();
      if (name.empty()) return fail("expected a parameter name");
      skip_ows();
      if (at_end() || peek() != '=') return fail("expected '=' after parameter name");
      ++pos_;
      skip_ows();
      if (at_end()) return fail("missing parameter value");
      std::string value;
      if (peek() == '"') {
        auto q = quoted_string();
        if (!q) return std::move(q).error();
        value = std::move(*q);
      } else {
        const auto t = token();
        if (t.empty()) return fail("expected a token or quoted string as parameter value");
        value = std::string(t);
      }
      // RFC 7235: each parameter name MUST occur only once per challenge. Two realms would
      // leave it to chance where credentials are sent, so refuse.
      if (!c.params.emplace(lower(name), std::move(value)).second) {
        return fail("parameter \"" + lower(name) + "\" given twice");
      }
      skip_ows();
      if (at_end()) return c;
      if (peek() != ',') return fail("expected ',' after a parameter");
      const std::size_t comma = pos_;
      skip_list_separators();
      if (at_end()) return c;
      if (!next_is_param()) {
        pos_ = comma;  // the comma starts the next challenge
        return c;
      }
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace

Result<std::vector<Challenge>> parse_www_authenticate(std::string_view header) {
  if (header.size() > kMaxHeaderBytes) {
    return make_error(Errc::too_large, "WWW-Authenticate: header longer than 16 KiB");
  }
  for (char ch : header) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\r' || c == '\n' || c == 0) {
      return make_error(Errc::parse_error, "WWW-Authenticate: contains CR, LF or NUL");
    }
  }
  return Parser(header).run();
}

}  // namespace sigil::oci
