#include "kube/config.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <utility>

#include <yaml-cpp/yaml.h>

#include "common/encoding.hpp"
#include "kube/object.hpp"

namespace sigil::kube {

namespace {

constexpr size_t kMaxKubeconfig = 4 * 1024 * 1024;
constexpr size_t kMaxPemFile = 1024 * 1024;
constexpr size_t kMaxTokenFile = 64 * 1024;
constexpr size_t kMaxNamespaceFile = 1024;

Error bad(std::string message) {
  return make_error(Errc::invalid_argument, std::move(message));
}

// Reads a whole file, at most max bytes. The message names the file, never the content.
Result<std::string> read_file(const std::string& path, size_t max, const std::string& what) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int e = errno;
    return make_error(
        e == ENOENT ? Errc::not_found : Errc::invalid_argument,
        what + ": cannot read " + path + ": " + (e != 0 ? std::strerror(e) : "cannot open"));
  }
  std::string out;
  char buf[8192];
  while (in) {
    in.read(buf, sizeof buf);
    out.append(buf, static_cast<size_t>(in.gcount()));
    if (out.size() > max) {
      return make_error(Errc::too_large,
                        what + ": " + path + " is larger than " + std::to_string(max) + " bytes");
    }
  }
  if (in.bad()) return bad(what + ": error reading " + path);
  return out;
}

bool looks_like_pem_cert(std::string_view pem) {
  return pem.find("-----BEGIN CERTIFICATE-----") != std::string_view::npos;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool valid_port(std::string_view s) {
  if (!all_digits(s) || s.size() > 5) return false;
  const long v = std::strtol(std::string(s).c_str(), nullptr, 10);
  return v >= 1 && v <= 65535;
}

// A host as it may appear in a URL or in KUBERNETES_SERVICE_HOST: DNS name or IP literal.
bool valid_host(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  for (char c : h) {
    auto u = static_cast<unsigned char>(c);
    bool ok = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '_' || c == '%';
    if (!ok) return false;
  }
  return true;
}

std::string resolve_path(const std::string& base_dir, const std::string& p) {
  if (p.empty() || base_dir.empty() || std::filesystem::path(p).is_absolute()) return p;
  return (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

// ---- kubeconfig field access, with a readable path for messages ----

struct Field {
  YAML::Node node;
  std::string path;  // "users[0] (\"admin\").user.token"
};

class Doc {
 public:
  Doc(std::string source) : source_(std::move(source)) {}
  Error err(const std::string& path, const std::string& why, Errc code = Errc::invalid_argument) {
    return make_error(code, source_ + ": " + path + ": " + why);
  }
  Error err_top(const std::string& why, Errc code = Errc::invalid_argument) {
    return make_error(code, source_ + ": " + why);
  }
  const std::string& source() const { return source_; }

  // The member key of map node, or a null node; error when node is not a map.
  Result<std::optional<YAML::Node>> member(const YAML::Node& map, const std::string& path,
                                           const char* key) {
    if (!map || map.IsNull()) return std::optional<YAML::Node>();
    if (!map.IsMap()) return err(path, "must be a mapping");
    YAML::Node v = map[key];
    if (!v || v.IsNull()) return std::optional<YAML::Node>();
    return std::optional<YAML::Node>(v);
  }

  Result<std::string> string_member(const YAML::Node& map, const std::string& path,
                                    const char* key) {
    auto m = member(map, path, key);
    if (!m) return m.error();
    if (!*m) return std::string();
    if (!(*m)->IsScalar()) return err(path + "." + key, "must be a string");
    return (*m)->Scalar();
  }

  Result<bool> bool_member(const YAML::Node& map, const std::string& path, const char* key) {
    auto m = member(map, path, key);
    if (!m) return m.error();
    if (!*m) return false;
    bool v = false;
    if (!(*m)->IsScalar() || !YAML::convert<bool>::decode(**m, v)) {
      return err(path + "." + key, "must be true or false");
    }
    return v;
  }

  // The entry of list `list_key` (a sequence of {name, <inner_key>}) whose name is `name`.
  Result<Field> named(const YAML::Node& root, const char* list_key, const std::string& name,
                      const char* inner_key) {
    auto list = member(root, "(top level)", list_key);
    if (!list) return list.error();
    if (!*list)
      return err_top(std::string(list_key) + " is missing (looking for \"" + name + "\")");
    if (!(*list)->IsSequence()) return err(list_key, "must be a list");
    size_t i = 0;
    for (const auto& entry : **list) {
      const std::string p = std::string(list_key) + "[" + std::to_string(i++) + "]";
      auto n = string_member(entry, p, "name");
      if (!n) return n.error();
      if (*n != name) continue;
      const std::string ip = p + " (\"" + sanitize_text(name, 80) + "\")." + inner_key;
      auto inner = member(entry, p, inner_key);
      if (!inner) return inner.error();
      if (!*inner) return err(ip, "is missing");
      if (!(*inner)->IsMap()) return err(ip, "must be a mapping");
      return Field{**inner, ip};
    }
    return err_top(std::string(list_key) + " has no entry named \"" + sanitize_text(name, 80) +
                   "\"");
  }

 private:
  std::string source_;
};

struct ServerParts {
  std::string host, port, path;
};

std::optional<ServerParts> parse_server(std::string_view s, std::string& why) {
  constexpr std::string_view kHttps = "https://";
  if (s.substr(0, 7) == "http://") {
    why = "plain http is refused: sigil talks to the API server over https only";
    return std::nullopt;
  }
  if (s.size() < kHttps.size() || ascii_lower(s.substr(0, kHttps.size())) != kHttps) {
    why = "must be an https:// URL";
    return std::nullopt;
  }
  s.remove_prefix(kHttps.size());
  if (s.find_first_of("?#") != std::string_view::npos) {
    why = "must not have a query or fragment";
    return std::nullopt;
  }
  const size_t slash = s.find('/');
  std::string_view auth = s.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : s.substr(slash);
  if (auth.find('@') != std::string_view::npos) {
    why = "must not carry user information";
    return std::nullopt;
  }
  ServerParts out;
  out.port = "443";
  if (!auth.empty() && auth.front() == '[') {
    const size_t close = auth.find(']');
    if (close == std::string_view::npos) {
      why = "has an IPv6 address without ']'";
      return std::nullopt;
    }
    out.host = std::string(auth.substr(1, close - 1));
    std::string_view rest = auth.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || !valid_port(rest.substr(1))) {
        why = "has a bad port";
        return std::nullopt;
      }
      out.port = std::string(rest.substr(1));
    }
    if (out.host.find(':') == std::string::npos) {
      why = "has brackets around something that is not an IPv6 address";
      return std::nullopt;
    }
  } else {
    const size_t colon = auth.find(':');
    out.host = std::string(auth.substr(0, colon));
    if (colon != std::string_view::npos) {
      if (!valid_port(auth.substr(colon + 1))) {
        why = "has a bad port";
        return std::nullopt;
      }
      out.port = std::string(auth.substr(colon + 1));
    }
    if (out.host.find(':') != std::string::npos) {
      why = "has an IPv6 address that is not in brackets";
      return std::nullopt;
    }
  }
  if (!valid_host(out.host)) {
    why = "has no valid host";
    return std::nullopt;
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  for (char c : path) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      why = "has a path with spaces or control characters";
      return std::nullopt;
    }
  }
  out.path = std::string(path);
  return out;
}

Result<std::string> decode_data(Doc& doc, const std::string& path, const std::string& b64) {
  auto d = base64_decode(b64);
  if (!d) return doc.err(path, "is not valid base64");
  return std::move(*d);
}

Result<ParsedKubeconfig> parse_kubeconfig_impl(std::string_view text, const KubeconfigOptions& o) {
  Doc doc(o.source.empty() ? "kubeconfig" : o.source);
  if (text.size() > kMaxKubeconfig) {
    return doc.err_top("larger than " + std::to_string(kMaxKubeconfig) + " bytes", Errc::too_large);
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return doc.err_top("not valid YAML: " + sanitize_text(e.what(), 200), Errc::parse_error);
  }
  if (!root || root.IsNull()) return doc.err_top("is empty", Errc::parse_error);
  if (!root.IsMap()) return doc.err_top("is not a YAML mapping", Errc::parse_error);

  ParsedKubeconfig out;
  std::string ctx_name = o.context;
  if (ctx_name.empty()) {
    auto cur = doc.string_member(root, "(top level)", "current-context");
    if (!cur) return cur.error();
    if (cur->empty()) return doc.err_top("current-context is not set and no context was given");
    ctx_name = std::move(*cur);
  }
  out.context = ctx_name;
  auto ctx = doc.named(root, "contexts", ctx_name, "context");
  if (!ctx) return ctx.error();
  auto cluster_name = doc.string_member(ctx->node, ctx->path, "cluster");
  if (!cluster_name) return cluster_name.error();
  if (cluster_name->empty()) return doc.err(ctx->path + ".cluster", "is missing");
  auto user_name = doc.string_member(ctx->node, ctx->path, "user");
  if (!user_name) return user_name.error();
  auto ns = doc.string_member(ctx->node, ctx->path, "namespace");
  if (!ns) return ns.error();

  ClusterConfig& c = out.config;
  c.source = doc.source() + " (context " + sanitize_text(ctx_name, 80) + ")";
  if (!ns->empty()) {
    if (auto p = collection_path(resources::secrets(), *ns); !p) {
      return doc.err(ctx->path + ".namespace", "is not a valid namespace");
    }
    c.default_namespace = std::move(*ns);
  }

  // ---- cluster ----
  auto cl = doc.named(root, "clusters", *cluster_name, "cluster");
  if (!cl) return cl.error();
  const std::string& cp = cl->path;
  auto server = doc.string_member(cl->node, cp, "server");
  if (!server) return server.error();
  if (server->empty()) return doc.err(cp + ".server", "is missing");
  std::string why;
  auto parts = parse_server(*server, why);
  if (!parts) return doc.err(cp + ".server", why);
  c.host = parts->host;
  c.port = parts->port;
  c.base_path = parts->path;
  auto proxy = doc.string_member(cl->node, cp, "proxy-url");
  if (!proxy) return proxy.error();
  if (!proxy->empty())
    return doc.err(cp + ".proxy-url", "proxies are not supported", Errc::unsupported);
  auto sni = doc.string_member(cl->node, cp, "tls-server-name");
  if (!sni) return sni.error();
  if (!sni->empty() && !valid_host(*sni))
    return doc.err(cp + ".tls-server-name", "is not a host name");
  c.tls_server_name = std::move(*sni);
  auto ca_data = doc.string_member(cl->node, cp, "certificate-authority-data");
  if (!ca_data) return ca_data.error();
  auto ca_file = doc.string_member(cl->node, cp, "certificate-authority");
  if (!ca_file) return ca_file.error();
  auto insecure = doc.bool_member(cl->node, cp, "insecure-skip-tls-verify");
  if (!insecure) return insecure.error();
  if (*insecure) {
    if (!o.allow_insecure) {
      return doc.err(cp + ".insecure-skip-tls-verify",
                     "true is refused: the API server's certificate would not be verified");
    }
    if (!ca_data->empty() || !ca_file->empty()) {
      return doc.err(cp + ".insecure-skip-tls-verify",
                     "cannot be combined with certificate-authority(-data)");
    }
    c.insecure_skip_tls_verify = true;
  }
  if (!ca_data->empty()) {
    auto pem = decode_data(doc, cp + ".certificate-authority-data", *ca_data);
    if (!pem) return pem.error();
    if (!looks_like_pem_cert(*pem)) {
      return doc.err(cp + ".certificate-authority-data", "holds no PEM certificate");
    }
    c.ca_pem = std::move(*pem);
  } else if (!ca_file->empty()) {
    out.files.ca_file = {resolve_path(o.base_dir, *ca_file), cp + ".certificate-authority"};
  }

  // ---- user ----
  if (!user_name->empty()) {
    auto us = doc.named(root, "users", *user_name, "user");
    if (!us) return us.error();
    const std::string& up = us->path;
    for (const char* plugin : {"exec", "auth-provider"}) {
      auto m = doc.member(us->node, up, plugin);
      if (!m) return m.error();
      if (*m) {
        return doc.err(up + "." + plugin,
                       std::string(plugin) +
                           " credential plugins are not supported; use token, tokenFile or a "
                           "client certificate",
                       Errc::unsupported);
      }
    }
    for (const char* k : {"username", "password"}) {
      auto m = doc.member(us->node, up, k);
      if (!m) return m.error();
      if (*m)
        return doc.err(up + "." + k, "basic authentication is not supported", Errc::unsupported);
    }
    for (const char* k : {"as", "as-uid", "as-groups", "as-user-extra"}) {
      auto m = doc.member(us->node, up, k);
      if (!m) return m.error();
      if (*m) return doc.err(up + "." + k, "impersonation is not supported", Errc::unsupported);
    }
    auto token = doc.string_member(us->node, up, "token");
    if (!token) return token.error();
    auto token_file = doc.string_member(us->node, up, "tokenFile");
    if (!token_file) return token_file.error();
    c.token = std::string(trim(*token));
    if (!token->empty() && c.token.empty()) return doc.err(up + ".token", "is blank");
    for (char ch : c.token) {
      auto u = static_cast<unsigned char>(ch);
      if (u < 0x21 || u == 0x7f)
        return doc.err(up + ".token", "contains whitespace or control bytes");
    }
    if (!token_file->empty()) {
      out.files.token_file = {resolve_path(o.base_dir, *token_file), up + ".tokenFile"};
      c.token_file = out.files.token_file.path;
    }
    struct Pair {
      const char* data_key;
      const char* file_key;
      std::string* pem;
      KubeconfigFiles::Ref* file;
    };
    Pair pairs[] = {
        {"client-certificate-data", "client-certificate", &c.client_cert_pem,
         &out.files.client_cert_file},
        {"client-key-data", "client-key", &c.client_key_pem, &out.files.client_key_file},
    };
    for (auto& p : pairs) {
      auto data = doc.string_member(us->node, up, p.data_key);
      if (!data) return data.error();
      auto file = doc.string_member(us->node, up, p.file_key);
      if (!file) return file.error();
      if (!data->empty()) {
        auto pem = decode_data(doc, up + "." + p.data_key, *data);
        if (!pem) return pem.error();
        if (pem->find("-----BEGIN ") == std::string::npos) {
          return doc.err(up + "." + p.data_key, "holds no PEM block");
        }
        *p.pem = std::move(*pem);
      } else if (!file->empty()) {
        *p.file = {resolve_path(o.base_dir, *file), up + "." + p.file_key};
      }
    }
    const bool have_cert = !c.client_cert_pem.empty() || !out.files.client_cert_file.path.empty();
    const bool have_key = !c.client_key_pem.empty() || !out.files.client_key_file.path.empty();
    if (have_cert != have_key) {
      return doc.err(up, have_cert ? "client-certificate without client-key"
                                   : "client-key without client-certificate");
    }
  }
  return out;
}

}  // namespace

std::string ClusterConfig::server_url() const {
  const bool v6 = host.find(':') != std::string::npos;
  return "https://" + (v6 ? "[" + host + "]" : host) + ":" + port + base_path;
}

Result<std::string> read_token_file(const std::string& path) {
  auto raw = read_file(path, kMaxTokenFile, "token file");
  if (!raw) return raw.error();
  std::string tok(trim(*raw));
  if (tok.empty()) return bad("token file " + path + " is empty");
  for (char ch : tok) {
    auto u = static_cast<unsigned char>(ch);
    if (u < 0x21 || u == 0x7f) {
      return bad("token file " + path + " holds whitespace or control bytes inside the token");
    }
  }
  return tok;
}

Result<ClusterConfig> in_cluster_config(const InClusterOptions& o) {
  std::string host = o.service_host;
  std::string port = o.service_port;
  if (o.use_environment) {
    const char* h = std::getenv("KUBERNETES_SERVICE_HOST");
    const char* p = std::getenv("KUBERNETES_SERVICE_PORT");
    host = h ? h : "";
    port = p ? p : "";
  }
  if (host.empty() && port.empty()) {
    return make_error(Errc::not_found,
                      "not running in a Kubernetes cluster: KUBERNETES_SERVICE_HOST and "
                      "KUBERNETES_SERVICE_PORT are not set");
  }
  if (host.empty()) return bad("in-cluster config: KUBERNETES_SERVICE_HOST is not set");
  if (port.empty()) return bad("in-cluster config: KUBERNETES_SERVICE_PORT is not set");
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (!valid_host(host)) {
    return bad("in-cluster config: KUBERNETES_SERVICE_HOST \"" + sanitize_text(host, 80) +
               "\" is not a host name or IP address");
  }
  if (!valid_port(port)) {
    return bad("in-cluster config: KUBERNETES_SERVICE_PORT \"" + sanitize_text(port, 20) +
               "\" is not a port number");
  }
  ClusterConfig c;
  c.host = host;
  c.port = port;
  c.source = "in-cluster";
  auto tok = read_token_file(o.token_file);
  if (!tok) return bad("in-cluster config: service account " + tok.error().message);
  c.token = std::move(*tok);
  c.token_file = o.token_file;
  auto ca = read_file(o.ca_file, kMaxPemFile, "in-cluster config: CA file");
  if (!ca) return bad(ca.error().message);
  if (!looks_like_pem_cert(*ca)) {
    return bad("in-cluster config: CA file " + o.ca_file + " holds no PEM certificate");
  }
  c.ca_pem = std::move(*ca);
  auto ns = read_file(o.namespace_file, kMaxNamespaceFile, "in-cluster config: namespace file");
  if (ns) {
    std::string n(trim(*ns));
    if (n.empty() || !collection_path(resources::secrets(), n)) {
      return bad("in-cluster config: namespace file " + o.namespace_file +
                 " does not hold a namespace name");
    }
    c.default_namespace = std::move(n);
  } else if (ns.error().code != Errc::not_found) {
    return bad(ns.error().message);
  }
  return c;
}

Result<ParsedKubeconfig> parse_kubeconfig(std::string_view yaml, const KubeconfigOptions& options) {
  try {
    return parse_kubeconfig_impl(yaml, options);
  } catch (const std::exception& e) {
    // yaml-cpp throws from accessors on odd node shapes; anything left is a malformed file.
    return make_error(Errc::parse_error,
                      (options.source.empty() ? std::string("kubeconfig") : options.source) +
                          ": malformed: " + sanitize_text(e.what(), 200));
  }
}

Result<ClusterConfig> load_kubeconfig(const std::string& path, KubeconfigOptions options) {
  if (options.source.empty() || options.source == "kubeconfig")
    options.source = "kubeconfig " + path;
  if (options.base_dir.empty()) {
    options.base_dir = std::filesystem::path(path).parent_path().string();
  }
  auto text = read_file(path, kMaxKubeconfig, "kubeconfig");
  if (!text) return text.error();
  auto parsed = parse_kubeconfig(*text, options);
  if (!parsed) return parsed.error();
  ClusterConfig c = std::move(parsed->config);
  const KubeconfigFiles& f = parsed->files;
  auto load = [&](const KubeconfigFiles::Ref& ref, std::string& into, bool cert) -> Status {
    if (ref.path.empty()) return {};
    auto data = read_file(ref.path, kMaxPemFile, options.source + ": " + ref.field);
    if (!data) return data.error();
    const bool pem_ok =
        cert ? looks_like_pem_cert(*data) : data->find("-----BEGIN ") != std::string::npos;
    if (!pem_ok) {
      return bad(options.source + ": " + ref.field + ": " + ref.path + " holds no PEM " +
                 (cert ? "certificate" : "block"));
    }
    into = std::move(*data);
    return {};
  };
  if (auto st = load(f.ca_file, c.ca_pem, true); !st) return st.error();
  if (auto st = load(f.client_cert_file, c.client_cert_pem, true); !st) return st.error();
  if (auto st = load(f.client_key_file, c.client_key_pem, false); !st) return st.error();
  if (!f.token_file.path.empty()) {
    auto tok = read_token_file(f.token_file.path);
    if (!tok) return bad(options.source + ": " + f.token_file.field + ": " + tok.error().message);
    c.token = std::move(*tok);
  }
  return c;
}

}  // namespace sigil::kube
