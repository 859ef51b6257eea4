// policy/glob.cpp: image globs, compiled once to a bit-parallel matcher (see Glob in policy.hpp).
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "policy/policy.hpp"

namespace sigil::policy {
namespace {

constexpr std::size_t kMaxGlobLength = 1024;

// ---------------------------------------------------------------------------------------------
// Glob semantics (policy-controller pkg/apis/glob, mirrored and documented here).
//
// policy-controller validates a glob against [a-zA-Z0-9-_:/*.], rewrites the bare globs "*"
// and "*/*" to "index.docker.io/library/*" and "index.docker.io/*/*", translates "." to a
// literal dot, "**" to ".*" and "*" to "[^/]*", anchors the regex, and matches it against the
// image's full name as go-containerregistry spells it (`index.docker.io/library/nginx:latest`,
// or `...@sha256:...`), falling back to the image string exactly as written in the pod spec.
//
// sigil keeps those rules and additionally accepts `?` (one character other than `/`) and `@`
// (so a glob may name a digest). Because sigil sees a parsed oci::Reference rather than the
// original string, the glob is tried against every spelling policy-controller could have seen:
// the repository name alone and with ":tag", "@digest" and ":tag@digest", each with the
// registry written as `index.docker.io/`, `docker.io/`, or (Docker Hub only) omitted, with and
// without `library/`. A glob therefore matches when policy-controller's would; matching more
// spellings only makes more policies apply, which can only add requirements (fail closed).
//
// The image's registry is normalized (oci/reference.cpp: lowercase host, no `:443`, Docker Hub's
// aliases as docker.io), so `myacr.azurecr.io:443/prod/app` is matched as
// `myacr.azurecr.io/prod/app` and cannot dodge a `myacr.azurecr.io/prod/**` policy. The other
// spellings of the same origin are candidates too, so a glob written with one of them still
// applies: `host:443/` beside `host/`, and for Docker Hub also `registry-1.docker.io/` and
// `registry.hub.docker.com/` (each with `:443`). A glob with an uppercase letter in its
// registry or repository can never match a normalized name, so it is refused at load.
// ---------------------------------------------------------------------------------------------

bool valid_glob_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == ':' || c == '/' || c == '*' || c == '.' || c == '?' || c == '@';
}

// Whether a normalized registry has no port and would still be read as a registry with one
// (so `host:443` is another spelling of it).
bool default_port_spelling(std::string_view registry) {
  const auto close = registry.rfind(']');
  const auto colon = registry.rfind(':');
  const bool has_port =
      colon != std::string_view::npos && (close == std::string_view::npos || colon > close);
  return !has_port && (registry.find('.') != std::string_view::npos || registry == "localhost" ||
                       registry.front() == '[');
}

std::vector<std::string> candidates(const oci::Reference& image) {
  std::vector<std::string> bases;
  const bool hub = image.registry == "docker.io" || image.registry == "index.docker.io";
  if (hub) {
    // The spellings users write first (most globs match one of them and stop there).
    bases.push_back("index.docker.io/" + image.repository);
    bases.push_back("docker.io/" + image.repository);
    bases.push_back(image.repository);
    constexpr std::string_view kLibrary = "library/";
    if (image.repository.rfind(kLibrary, 0) == 0) {
      bases.push_back(image.repository.substr(kLibrary.size()));
    }
    for (const char* host : {"registry-1.docker.io", "registry.hub.docker.com"}) {
      bases.push_back(std::string(host) + "/" + image.repository);
    }
    for (const char* host :
         {"index.docker.io", "docker.io", "registry-1.docker.io", "registry.hub.docker.com"}) {
      bases.push_back(std::string(host) + ":443/" + image.repository);
    }
  } else if (!image.registry.empty()) {
    bases.push_back(image.registry + "/" + image.repository);
    if (default_port_spelling(image.registry)) {
      bases.push_back(image.registry + ":443/" + image.repository);
    }
  }
  std::vector<std::string> out;
  for (const auto& b : bases) {
    out.push_back(b);
    if (!image.tag.empty()) out.push_back(b + ":" + image.tag);
    if (!image.digest.empty()) {
      out.push_back(b + "@" + image.digest);
      if (!image.tag.empty()) out.push_back(b + ":" + image.tag + "@" + image.digest);
    }
  }
  return out;
}

}  // namespace

// A glob as a nondeterministic automaton run bit-parallel (Shift-And), one bit per token: a
// literal character, `?` (one character but '/'), `*` (any run without '/') or `**` (any run).
// Bit i set means tokens 0..i-1 have matched; bit `tokens` is the end. It takes time linear in
// the name times the glob's length in 64-bit words, and memory fixed at compile time, whatever
// the glob and the name: RE2's lazily built DFA grew to about 3 MiB for one hostile glob such
// as `**a??????????` and ran it at up to a millisecond per name, and tenants write globs.
// The same language as policy-controller's regex translation ("**" -> ".*", "*" -> "[^/]*").
struct Glob::Program {
  size_t tokens = 0;
  size_t words = 0;
  std::array<int16_t, 256> column{};  // byte -> row of `literal`, or -1 when no token is it
  std::vector<uint64_t> literal;      // per row: tokens that are this byte
  std::vector<uint64_t> one;          // `?`
  std::vector<uint64_t> star;         // `*`
  std::vector<uint64_t> any;          // `**`

  static Program compile(std::string_view glob) {
    enum class T : uint8_t { literal, one, star, any };
    std::vector<std::pair<T, char>> toks;
    for (size_t i = 0; i < glob.size(); ++i) {
      const char c = glob[i];
      T t = T::literal;
      if (c == '*') {
        t = i + 1 < glob.size() && glob[i + 1] == '*' ? T::any : T::star;
        if (t == T::any) ++i;
        // A run of stars is one: "**" in it makes it "**" (".*[^/]*" is ".*"), else "*".
        if (!toks.empty() && (toks.back().first == T::star || toks.back().first == T::any)) {
          if (t == T::any) toks.back().first = T::any;
          continue;
        }
      } else if (c == '?') {
        t = T::one;
      }
      toks.emplace_back(t, c);
    }
    Program p;
    p.tokens = toks.size();
    p.words = (p.tokens + 1 + 63) / 64;
    p.column.fill(-1);
    p.one.assign(p.words, 0);
    p.star.assign(p.words, 0);
    p.any.assign(p.words, 0);
    for (size_t i = 0; i < toks.size(); ++i) {
      const uint64_t bit = uint64_t{1} << (i % 64);
      switch (toks[i].first) {
        case T::literal: {
          auto& col = p.column[static_cast<unsigned char>(toks[i].second)];
          if (col < 0) {
            col = static_cast<int16_t>(p.literal.size() / p.words);
            p.literal.resize(p.literal.size() + p.words, 0);
          }
          p.literal[static_cast<size_t>(col) * p.words + i / 64] |= bit;
          break;
        }
        case T::one:
          p.one[i / 64] |= bit;
          break;
        case T::star:
          p.star[i / 64] |= bit;
          break;
        case T::any:
          p.any[i / 64] |= bit;
          break;
      }
    }
    return p;
  }

  // States reached without reading: past a star (no two stars are adjacent, so one step).
  void close(std::vector<uint64_t>& d) const {
    uint64_t carry = 0;
    for (size_t w = 0; w < words; ++w) {
      const uint64_t skip = d[w] & (star[w] | any[w]);
      d[w] |= (skip << 1) | carry;
      carry = skip >> 63;
    }
  }

  bool matches(std::string_view name, std::vector<uint64_t>& d) const {
    d.assign(words, 0);
    d[0] = 1;
    close(d);
    for (const char ch : name) {
      const auto col = column[static_cast<unsigned char>(ch)];
      const uint64_t* lit = col < 0 ? nullptr : &literal[static_cast<size_t>(col) * words];
      const bool slash = ch == '/';
      uint64_t carry = 0, alive = 0;
      for (size_t w = 0; w < words; ++w) {
        const uint64_t advance = d[w] & ((lit ? lit[w] : 0) | (slash ? 0 : one[w]));
        const uint64_t stay = d[w] & ((slash ? 0 : star[w]) | any[w]);
        d[w] = (advance << 1) | carry | stay;
        carry = advance >> 63;
        alive |= d[w];
      }
      if (alive == 0) return false;
      close(d);
    }
    return (d[tokens / 64] >> (tokens % 64)) & 1;
  }
};

Result<Glob> Glob::compile(std::string_view pattern) {
  try {
    if (pattern.empty()) return make_error(Errc::invalid_argument, "glob is empty");
    if (pattern.size() > kMaxGlobLength) {
      return make_error(Errc::invalid_argument,
                        "glob is longer than " + std::to_string(kMaxGlobLength) + " characters");
    }
    for (char c : pattern) {
      if (!valid_glob_char(c)) {
        return make_error(Errc::invalid_argument,
                          "invalid glob \"" + std::string(pattern) +
                              "\": only letters, digits and - _ : / . @ * ? are allowed");
      }
    }
    // The name part (before a tag or digest) must be lowercase: image names are matched
    // normalized, so an uppercase letter there would make the glob match nothing, silently.
    {
      std::string_view name = pattern.substr(0, pattern.find('@'));
      const auto last_slash = name.rfind('/');
      if (const auto colon = name.find(':', last_slash == std::string_view::npos ? 0 : last_slash);
          colon != std::string_view::npos) {
        name = name.substr(0, colon);
      }
      const auto upper =
          std::find_if(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
      if (upper != name.end()) {
        const auto first_slash = name.find('/');
        const bool in_registry = first_slash != std::string_view::npos &&
                                 static_cast<std::size_t>(upper - name.begin()) < first_slash;
        std::string lowered(pattern);
        for (std::size_t i = 0; i < name.size(); ++i) {
          if (lowered[i] >= 'A' && lowered[i] <= 'Z')
            lowered[i] = static_cast<char>(lowered[i] + 32);
        }
        return make_error(
            Errc::invalid_argument,
            "invalid glob \"" + std::string(pattern) + "\": the " +
                (in_registry ? "registry" : "repository") +
                " must be lowercase (image names are matched lowercased and normalized, so "
                "this glob would match nothing); write \"" +
                lowered + "\"");
      }
    }
    Glob g;
    g.pattern_ = std::string(pattern);
    g.normalized_ = g.pattern_;
    if (g.normalized_ == "*") g.normalized_ = "index.docker.io/library/*";
    if (g.normalized_ == "*/*") g.normalized_ = "index.docker.io/*/*";
    g.program_ = std::make_shared<const Program>(Program::compile(g.normalized_));
    return g;
  } catch (const std::exception& e) {
    return make_error(Errc::internal, std::string("compiling glob: ") + e.what());
  }
}

bool Glob::selects_by_tag() const {
  std::string_view p = pattern_;
  p = p.substr(0, p.find('@'));  // a digest's "sha256:" is no tag
  const size_t slash = p.rfind('/');
  const std::string_view last = slash == std::string_view::npos ? p : p.substr(slash + 1);
  return last.find(':') != std::string_view::npos;
}

std::string Glob::literal_registry() const {
  const std::string_view n = normalized_;
  const size_t slash = n.find('/');
  if (slash == std::string_view::npos) return {};
  const std::string_view host = n.substr(0, slash);
  if (host.find_first_of("*?@") != std::string_view::npos) return {};
  // Docker's rule: a first component is a registry only with a '.' or a ':', or as localhost.
  if (host.find_first_of(".:") == std::string_view::npos && host != "localhost") return {};
  return oci::canonical_registry(std::string(host));
}

bool Glob::matches_spelling(std::string_view name) const {
  if (!program_) return false;
  std::vector<uint64_t> states;
  return program_->matches(name, states);
}

bool Glob::matches(const oci::Reference& image) const {
  if (!program_) return false;
  try {
    std::vector<uint64_t> states;
    for (const auto& c : candidates(image)) {
      if (program_->matches(c, states)) return true;
    }
  } catch (...) {
    // Allocation failure: report a match, which makes the policy apply (fail closed).
    return true;
  }
  return false;
}

}  // namespace sigil::policy
