#!/usr/bin/python3
"""A fake Kubernetes API server for sigil's tests, speaking the real wire format over real TLS.

What it serves (HTTPS on 127.0.0.1, HTTP/1.1 keep-alive, one thread per connection):
  sigil.dev/v1alpha1   clusterimagepolicies, trustroots (cluster-scoped), imagepolicies
                       (namespaced; listed per namespace or across all namespaces)
  v1                   secrets, serviceaccounts (namespaced)
  admissionregistration.k8s.io/v1   validatingwebhookconfigurations,
                       mutatingwebhookconfigurations (cluster-scoped)
  GET  <collection>                   a List: {"kind":"<Kind>List","apiVersion",
                                       "metadata":{"resourceVersion"[,"continue",
                                       "remainingItemCount"]},"items":[...]} with limit/continue
                                       paging over a consistent snapshot; continue tokens
                                       expire (410 Expired) on expire_history() or
                                       expire_continue_tokens(); resourceVersion=0 ignores limit
                                       (served "from the watch cache", as the real server does)
  GET  <collection>?watch=1           chunked newline-delimited {"type","object"} events after
                                       resourceVersion (none or 0: synthetic ADDED for what
                                       exists first), BOOKMARK on bookmark() when
                                       allowWatchBookmarks=true, a clean end after
                                       timeoutSeconds, ERROR 410 Expired for a too-old
                                       resourceVersion (or HTTP 410 with watch_gone_as_http),
                                       HTTP 504 "Too large resource version" (after 3 s) for one
                                       from the future
  GET  <collection>/NAME              one object, 404 as a metav1.Status
  PATCH <collection>/NAME/status      (sigil.dev kinds) application/merge-patch+json, RFC 7386;
                                       only .status is kept (status subresource), bumps
                                       resourceVersion (never generation) and sends MODIFIED;
                                       a patch that changes nothing is a no-op (no new
                                       resourceVersion, no event) as on a real server;
                                       metadata.resourceVersion/uid in the patch are
                                       preconditions (409 Conflict); the status is pruned and
                                       validated against the CRD schema (422 Invalid)
  POST <collection>                   (secrets, webhook configurations) create: 201, or 409
                                       AlreadyExists; a Secret is validated (422 Invalid)
  PUT  <collection>/NAME              (the same kinds) replace: metadata.resourceVersion, when
                                       sent, must be the stored one (409 Conflict); a PUT that
                                       changes nothing writes nothing
  GET  /version
Every request needs "Authorization: Bearer <token>" (401 Status otherwise; set_token() rotates).
resourceVersion is one global counter (like etcd's revision), as a decimal string; generation
is bumped on changes outside metadata and status only; every object has a uid, a
creationTimestamp and managedFields; apply() records kubectl's last-applied annotation.

Test API (in-process; every method is thread-safe):
  fk = FakeKube(token=...); fk.start() ... fk.stop()       (or `with FakeKube() as fk:`)
  fk.port, fk.url, fk.ca_pem, fk.ca_path, fk.token
  fk.apply(kind, obj) -> stored copy    create or update (kind: "ClusterImagePolicy",
                                        "ImagePolicy", "TrustRoot", "Secret", "ServiceAccount"
                                        or the plural); unchanged objects are not rewritten
  fk.delete(kind, name, ns=None) -> bool
  fk.get(kind, name, ns=None), fk.status_of(...), fk.ready_condition(...)
  fk.set_status(kind, name, status, ns=None)   another writer's status (not recorded as a patch)
  fk.patches(kind, name, ns=None)       every PATCH /status received, in order (dicts: body,
                                        content_type, code, noop, rv_before, rv_after)
  fk.resource_version                   current global resourceVersion (string)
  fk.write_kubeconfig(path, token_file=None, namespace=None)
  fk.write_token_file(path)             (for kubeconfig tokenFile rotation)
  fk.set_token(token, keep_old=False)
  watches:  fk.bookmark(); fk.expire_history(); fk.expire_continue_tokens()
            fk.drop_watches(mid_event=False)  close every open watch abruptly (no final chunk,
                                        no TLS close_notify); mid_event: half an event line first
            fk.cut_next_event()         each open watch sends only half of its next event, then
                                        closes (that change must arrive after the re-watch)
            fk.end_watches()            end every open watch cleanly (as timeoutSeconds does)
            fk.send_gone()              every open watch gets ERROR 410 Expired and ends
            fk.pause_watches() / fk.resume_watches()   drop open watches; new watch requests
                                        wait (unanswered) until resumed
            fk.watch_gone_as_http = True   a too-old watch is answered HTTP 410, not ERROR
            fk.expire_next_continue = True  the next continue token presented has expired
            fk.split_chunks = True      events go out cut across random chunk boundaries
            fk.open_watches(kind=None), fk.wait_watches(kind, n=1, timeout=10),
            fk.wait_watches_closed(kind=None, timeout=10)
            fk.status_patch_delay = 0.02  each PATCH of a status subresource takes this long
                                        (a slow API server; see "status_patches_max_in_flight")
  faults:   fk.fail_next(n, code=500, path=None, method=None, watch=None, prefix=False)
                                        (n=-1: until clear_faults())
            h = fk.hold(path=None, ...); h.wait_arrived(); h.release()   requests wait
  seen:     fk.requests(path=None, method=None, watch=None, prefix=False), fk.count(...)
            fk.stats: {"unauthorized", "gone_sent", "bookmarks_sent", "cuts", "drops",
                       "events_sent", "status_patches_max_in_flight"}; fk.last_bookmark_rv[kind]
  objects:  secret_object(), dockerconfigjson_secret(), dockercfg_secret(),
            service_account_object()
CLI:  fake_kube.py serve --dir DIR [--token T] [--object FILE.json ...]
      writes DIR/kubeconfig and DIR/ca.crt, prints the server URL, serves until SIGTERM.

What it does not model (keep tests inside this subset):
  - no CRD schema/CEL validation of spec (tests must apply only what the real API admits:
    schema-valid objects; secrets are checked like the real ValidateSecret for the docker
    types); no defaulting (spec.mode's default "enforce" is not filled in);
  - no create/update/delete through HTTP but POST and PUT of the kinds above and POST of
    Events (objects change through the test API otherwise), no JSON patch, strategic merge patch or server-side apply (415), no PATCH of the main
    resource, no dry-run, no fieldValidation;
  - label selectors: equality, inequality and existence only; field selectors: metadata.name
    and metadata.namespace only; an object that stops matching a selector is not turned into
    a DELETED event;
  - no WatchList (sendInitialEvents), no resourceVersionMatch semantics (a list is always
    served at the current resourceVersion), no protobuf, no table output, no discovery
    (except /version), no RBAC (one bearer token; no client certificates), no rate limiting
    or priority and fairness, no HTTP/2;
  - no inconsistent-continue token in the 410 of an expired continue;
  - bookmarks are sent only when asked (bookmark()), never periodically; watches without
    timeoutSeconds last until the test ends them.
Standard library + python3-cryptography only.
"""
import argparse
import base64
import bisect
import copy
import datetime as dt
import http.server
import json
import os
import random
import re
import select
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import registry  # noqa: E402  (test CA and server certificates)

from cryptography.hazmat.primitives import serialization  # noqa: E402


# ---------------------------------------------------------------------------------------------
# resources


class Kind:
    def __init__(self, kind, plural, group, version, namespaced, status_subresource,
                 generation):
        self.kind = kind
        self.list_kind = kind + "List"
        self.plural = plural
        self.group = group
        self.version = version
        self.api_version = "%s/%s" % (group, version) if group else version
        self.namespaced = namespaced
        self.status_subresource = status_subresource
        self.generation = generation  # whether metadata.generation is maintained

    @property
    def qualified(self):  # "clusterimagepolicies.sigil.dev", "secrets"
        return self.plural + ("." + self.group if self.group else "")

    def collection_path(self, ns=None):
        base = "/apis/%s/%s" % (self.group, self.version) if self.group else "/api/v1"
        if ns is not None:
            return "%s/namespaces/%s/%s" % (base, ns, self.plural)
        return "%s/%s" % (base, self.plural)

    def object_path(self, name, ns=None, sub=None):
        p = self.collection_path(ns if self.namespaced else None) + "/" + name
        return p + "/" + sub if sub else p


KINDS = [
    Kind("ClusterImagePolicy", "clusterimagepolicies", "sigil.dev", "v1alpha1", False, True, True),
    Kind("ImagePolicy", "imagepolicies", "sigil.dev", "v1alpha1", True, True, True),
    Kind("TrustRoot", "trustroots", "sigil.dev", "v1alpha1", False, True, True),
    Kind("Secret", "secrets", "", "v1", True, False, False),
    Kind("ServiceAccount", "serviceaccounts", "", "v1", True, False, False),
    Kind("Event", "events", "", "v1", True, False, False),  # core/v1; created by POST
    Kind("ValidatingWebhookConfiguration", "validatingwebhookconfigurations",
         "admissionregistration.k8s.io", "v1", False, False, True),
    Kind("MutatingWebhookConfiguration", "mutatingwebhookconfigurations",
         "admissionregistration.k8s.io", "v1", False, False, True),
]
# What POST (create) and PUT (replace) are modeled for: sigil's self-managed certificate writes
# its Secret and the caBundle of its webhook configurations.
WRITABLE = ("Secret", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
_BY_NAME = {}
for _k in KINDS:
    for _n in (_k.kind, _k.kind.lower(), _k.plural, _k.qualified):
        _BY_NAME[_n] = _k
_BY_PATH = {(k.group, k.version, k.plural): k for k in KINDS}


def kind_of(name):
    k = _BY_NAME.get(name) or _BY_NAME.get(str(name).lower())
    if k is None:
        raise ValueError("fake_kube: unknown kind %r (%s)" % (name,
                                                            ", ".join(k.kind for k in KINDS)))
    return k


def now_rfc3339():
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    else:
        target = dict(target)
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


def status_body(code, reason, message, details=None):
    """A metav1.Status as the API server writes it."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details is not None:
        body["details"] = details
    return body


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.body = status_body(code, reason, message, details)


def _not_found(kind, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (kind.qualified, name),
                    dict({"name": name, "kind": kind.plural},
                         **({"group": kind.group} if kind.group else {})))


def _parse_bool(v, what):
    if v in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if v in ("", "0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ApiError(400, "BadRequest", "invalid value %r for %s: not a boolean" % (v, what))


def _fields_v1(obj):
    """managedFields' fieldsV1 for a JSON object: {"f:key": {...}} (lists as leaves)."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out["f:" + k] = _fields_v1(v) if isinstance(v, dict) else {}
            if isinstance(v, dict):
                out["f:" + k]["."] = {}
    return out


# ---------------------------------------------------------------------------------------------
# selectors


_LABEL_REQ = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*))?\s*$")


def _label_selector(sel):
    reqs = []
    for part in [p for p in (sel or "").split(",") if p.strip()]:
        m = _LABEL_REQ.match(part)
        if not m or (m.group(1) and m.group(3)):
            raise ApiError(400, "BadRequest",
                           "unable to parse requirement %r (the fake supports =, ==, != and "
                           "existence only)" % part)
        reqs.append((m.group(1) == "!", m.group(2), m.group(3), m.group(4)))

    def match(obj):
        labels = (obj.get("metadata") or {}).get("labels") or {}
        for neg, key, op, val in reqs:
            if op is None:
                if (key in labels) == neg:
                    return False
            elif op in ("=", "=="):
                if labels.get(key) != val:
                    return False
            elif labels.get(key) == val:
                return False
        return True

    return match


def _field_selector(sel):
    reqs = []
    for part in [p for p in (sel or "").split(",") if p.strip()]:
        m = re.match(r"^\s*(metadata\.name|metadata\.namespace)\s*(==|=|!=)\s*(\S*)\s*$", part)
        if not m:
            raise ApiError(400, "BadRequest",
                           "field label not supported: %r (the fake supports metadata.name "
                           "and metadata.namespace)" % part)
        reqs.append((m.group(1).split(".")[1], m.group(2), m.group(3)))

    def match(obj):
        md = obj.get("metadata") or {}
        for key, op, val in reqs:
            have = md.get(key, "")
            if (have == val) != (op != "!="):
                return False
        return True

    return match


# ---------------------------------------------------------------------------------------------
# status schema of the sigil.dev CRDs (deploy/helm/sigil/crds/*.yaml)


_COND_TYPE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$")
_COND_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def prune_and_validate_status(status):
    """(pruned status, [(field, message)]): unknown fields dropped as a structural schema
    prunes them, then the CRD's status schema checked."""
    errs = []
    if status is None:
        return None, errs
    if not isinstance(status, dict):
        return status, [("status", "Invalid value: must be of type object")]
    out = {}
    if "observedGeneration" in status:
        og = status["observedGeneration"]
        if not _is_int(og):
            errs.append(("status.observedGeneration", "Invalid value: must be of type integer"))
        elif og < 0:
            errs.append(("status.observedGeneration",
                         "Invalid value: %d: should be greater than or equal to 0" % og))
        out["observedGeneration"] = og
    if "conditions" in status:
        conds = status["conditions"]
        if conds is None:
            pass
        elif not isinstance(conds, list):
            errs.append(("status.conditions", "Invalid value: must be of type array"))
        else:
            if len(conds) > 16:
                errs.append(("status.conditions", "Too many: %d: must have at most 16 items"
                             % len(conds)))
            seen = set()
            pruned = []
            for i, c in enumerate(conds):
                p = "status.conditions[%d]" % i
                if not isinstance(c, dict):
                    errs.append((p, "Invalid value: must be of type object"))
                    pruned.append(c)
                    continue
                pc = {k: v for k, v in c.items() if k in (
                    "type", "status", "observedGeneration", "lastTransitionTime", "reason",
                    "message")}
                for req in ("type", "status", "lastTransitionTime", "reason", "message"):
                    if req not in pc:
                        errs.append((p + "." + req, "Required value"))
                for k in ("type", "status", "lastTransitionTime", "reason", "message"):
                    if k in pc and not isinstance(pc[k], str):
                        errs.append((p + "." + k, "Invalid value: must be of type string"))
                t = pc.get("type")
                if isinstance(t, str):
                    if len(t) > 316 or not _COND_TYPE.match(t):
                        errs.append((p + ".type", "Invalid value: %r: should match the "
                                     "condition type pattern" % t))
                    if t in seen:
                        errs.append((p, "Duplicate value: {\"type\":%s}" % json.dumps(t)))
                    seen.add(t)
                s = pc.get("status")
                if isinstance(s, str) and s not in ("True", "False", "Unknown"):
                    errs.append((p + ".status", 'Unsupported value: %s: supported values: '
                                 '"True", "False", "Unknown"' % json.dumps(s)))
                r = pc.get("reason")
                if isinstance(r, str) and (not r or len(r) > 1024 or not _COND_REASON.match(r)):
                    errs.append((p + ".reason", "Invalid value: %s: should match "
                                 "'^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$'" % json.dumps(r)))
                m = pc.get("message")
                if isinstance(m, str) and len(m) > 32768:
                    errs.append((p + ".message", "Too long: may not be longer than 32768"))
                lt = pc.get("lastTransitionTime")
                if isinstance(lt, str) and not _RFC3339.match(lt):
                    errs.append((p + ".lastTransitionTime",
                                 "Invalid value: %s: must be a date-time" % json.dumps(lt)))
                if "observedGeneration" in pc:
                    og = pc["observedGeneration"]
                    if not _is_int(og):
                        errs.append((p + ".observedGeneration",
                                     "Invalid value: must be of type integer"))
                    elif og < 0:
                        errs.append((p + ".observedGeneration",
                                     "Invalid value: should be greater than or equal to 0"))
                pruned.append(pc)
            out["conditions"] = pruned
    return out, errs


# ---------------------------------------------------------------------------------------------
# object helpers for tests


def _b64(v):
    if isinstance(v, str):
        v = v.encode()
    return base64.b64encode(v).decode()


def secret_object(name, namespace, data, type_="Opaque", labels=None):
    """A v1 Secret; data values (bytes or str) are base64-encoded as the API stores them."""
    md = {"name": name, "namespace": namespace}
    if labels:
        md["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": md, "type": type_,
            "data": {k: _b64(v) for k, v in data.items()}}


def _auth_entry(user, password):
    return {"username": user, "password": password,
            "auth": _b64("%s:%s" % (user, password))}


def dockerconfigjson_secret(name, namespace, creds):
    """kubernetes.io/dockerconfigjson: creds = {registry host: (user, password)}."""
    cfg = {"auths": {h: _auth_entry(u, p) for h, (u, p) in creds.items()}}
    return secret_object(name, namespace, {".dockerconfigjson": json.dumps(cfg)},
                         "kubernetes.io/dockerconfigjson")


def dockercfg_secret(name, namespace, creds):
    """The legacy kubernetes.io/dockercfg: {host: {username, password, auth, email}}."""
    cfg = {h: dict(_auth_entry(u, p), email="none@example.com") for h, (u, p) in creds.items()}
    return secret_object(name, namespace, {".dockercfg": json.dumps(cfg)},
                         "kubernetes.io/dockercfg")


def service_account_object(name, namespace, pull_secrets=()):
    sa = {"apiVersion": "v1", "kind": "ServiceAccount",
          "metadata": {"name": name, "namespace": namespace}}
    if pull_secrets:
        sa["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
    return sa


def _validate_secret(obj):
    """What the real API server's ValidateSecret refuses (the parts that matter here)."""
    data = obj.get("data") or {}
    if not isinstance(data, dict):
        raise ValueError("Secret data must be a map")
    decoded = {}
    for k, v in data.items():
        if not re.match(r"^[-._a-zA-Z0-9]+$", k):
            raise ValueError("Secret data key %r is not a valid config key" % k)
        try:
            decoded[k] = base64.b64decode(v, validate=True)
        except (ValueError, TypeError):
            raise ValueError("Secret data[%s] is not base64" % k)
    t = obj.get("type") or "Opaque"
    need = {"kubernetes.io/dockerconfigjson": ".dockerconfigjson",
            "kubernetes.io/dockercfg": ".dockercfg"}.get(t)
    if need:
        if need not in decoded:
            raise ValueError("data[%s]: Required value" % need)
        try:
            json.loads(decoded[need])
        except ValueError:
            raise ValueError("data[%s]: Invalid value: invalid JSON" % need)


# ---------------------------------------------------------------------------------------------
# the server


class _Watch:
    def __init__(self, kind, ns, label_match, field_match, bookmarks, pos, rv):
        self.kind, self.ns = kind, ns
        self.label_match, self.field_match = label_match, field_match
        self.bookmarks = bookmarks
        self.pos = pos          # index into the history of the next event to consider
        self.start_rv = rv
        self.bookmark_pending = False
        # A drop/end/410 asked for at history length L delivers only events before L: what
        # happens after it must reach the client through its next watch, never this stream.
        self.limit = None
        self.drop = None        # None | "abrupt" | "mid_event"
        self.cut_next = False
        self.end_clean = False
        self.gone = False
        self.events_sent = 0

    def wants(self, entry):
        _rv, kind, ns, _type, obj = entry
        if kind is not self.kind:
            return False
        if self.ns is not None and ns != self.ns:
            return False
        return self.label_match(obj) and self.field_match(obj)


class Hold:
    """Requests matching a rule wait (unanswered) until release()."""

    def __init__(self, fake, rule):
        self._fake = fake
        self.rule = rule
        self.event = threading.Event()
        self.arrived = 0

    def wait_arrived(self, n=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._fake._cond:
            while self.arrived < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._fake._cond.wait(left)
        return True

    def release(self):
        with self._fake._cond:
            if self in self._fake._holds:
                self._fake._holds.remove(self)
            self.event.set()
            self._fake._cond.notify_all()


def _rule_matches(rule, method, path, watch):
    if rule.get("method") and rule["method"] != method:
        return False
    if rule.get("path") is not None:
        if rule.get("prefix"):
            if not path.startswith(rule["path"]):
                return False
        elif path != rule["path"]:
            return False
    if rule.get("watch") is not None and bool(rule["watch"]) != watch:
        return False
    return True


class FakeKube:
    def __init__(self, token="sigil-test-token", split_chunks=False, workdir=None):
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._tokens = {token}
        self.token = token
        self._rv = 100  # a fresh cluster is never at 0
        self._objects = {k.plural: {} for k in KINDS}  # plural -> {(ns, name): obj}
        self._history = []      # (rv int, Kind, ns, type, obj) in rv order
        self._history_rvs = []  # rv of each history entry (for bisect)
        self._too_old_below = 0  # a watch from an RV < this is 410 Expired
        self._snapshots = {}    # (plural, ns, lsel, fsel, rv) -> [items]
        self._expired_snapshot_rvs = set()
        self._watches = set()
        self._holds = []
        self._faults = []
        self._patches = []
        self._requests = []
        self._conns = set()
        self._watch_pause = None
        self.watch_gone_as_http = False
        self.expire_next_continue = False  # one-shot: the next continue request meets 410
        self.split_chunks = split_chunks
        self.stats = {"unauthorized": 0, "gone_sent": 0, "bookmarks_sent": 0, "cuts": 0,
                      "drops": 0, "events_sent": 0, "status_patches_max_in_flight": 0,
                      "creates": 0, "replaces": 0}
        # Seconds each PATCH of a status subresource takes (a slow API server): lets a test see
        # how many the client keeps in flight at once (stats["status_patches_max_in_flight"]).
        self.status_patch_delay = 0.0
        self._status_patches_in_flight = 0
        self.last_bookmark_rv = {}  # kind name -> resourceVersion of the last BOOKMARK sent
        self._stopping = False
        self._server = None
        self._thread = None
        self._dir = workdir or tempfile.mkdtemp(prefix="fake-kube-")
        os.makedirs(self._dir, exist_ok=True)
        ca_cert, ca_key = registry.make_ca("sigil fake kube-apiserver CA")
        srv_cert, srv_key = registry.issue_server_cert(ca_cert, ca_key,
                                                       ("127.0.0.1", "localhost"),
                                                       "kube-apiserver")
        self.ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        self.ca_path = os.path.join(self._dir, "ca.crt")
        with open(self.ca_path, "wb") as f:
            f.write(self.ca_pem)
        cert_path = os.path.join(self._dir, "apiserver.crt")
        key_path = os.path.join(self._dir, "apiserver.key")
        with open(cert_path, "wb") as f:
            f.write(srv_cert.public_bytes(serialization.Encoding.PEM) + self.ca_pem)
        with open(key_path, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(srv_key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.load_cert_chain(cert_path, key_path)
        self.port = None
        self.url = None

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self):
        fake = self

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 64

            def finish_request(self, request, client_address):
                request.settimeout(30)
                try:
                    conn = fake._ssl.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    request.close()
                    return
                conn.settimeout(None)
                with fake._lock:
                    fake._conns.add(conn)
                try:
                    self.RequestHandlerClass(conn, client_address, self)
                except (OSError, ssl.SSLError):
                    pass
                finally:
                    with fake._lock:
                        fake._conns.discard(conn)
                    try:
                        conn.close()
                    except OSError:
                        pass

        self._server = Server(("127.0.0.1", 0), _make_handler(self))
        self.port = self._server.server_address[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True,
                                        name="fake-kube-accept")
        self._thread.start()
        return self

    def stop(self):
        with self._cond:
            self._stopping = True
            for h in self._holds:
                h.event.set()
            self._holds = []
            if self._watch_pause:
                self._watch_pause.event.set()
            self._cond.notify_all()
            conns = list(self._conns)
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- state ------------------------------------------------------------------------------

    @property
    def resource_version(self):
        with self._lock:
            return str(self._rv)

    def _bump(self):
        self._rv += 1
        return self._rv

    def _record(self, kind, ns, type_, obj):
        rv = int(obj["metadata"]["resourceVersion"])
        self._history.append((rv, kind, ns, type_, copy.deepcopy(obj)))
        self._history_rvs.append(rv)
        self._cond.notify_all()

    @staticmethod
    def _key(kind, obj_or_name, ns=None):
        if isinstance(obj_or_name, dict):
            md = obj_or_name.get("metadata") or {}
            name, ns = md.get("name"), md.get("namespace")
        else:
            name = obj_or_name
        if not name:
            raise ValueError("fake_kube: object without metadata.name")
        if kind.namespaced:
            if not ns:
                raise ValueError("fake_kube: a %s needs metadata.namespace" % kind.kind)
        else:
            if ns:
                raise ValueError("fake_kube: a %s is cluster-scoped (no namespace)" % kind.kind)
            ns = None
        return (ns, name)

    def apply(self, kind, obj, manager="kubectl-client-side-apply"):
        """Creates or updates an object as `kubectl apply` would leave it. Returns a copy of
        what is stored. The main resource ignores .status (status subresource)."""
        kind = kind_of(kind)
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = kind.api_version
        obj["kind"] = kind.kind
        md = obj.setdefault("metadata", {})
        key = self._key(kind, obj)
        if kind.kind == "Secret":
            sd = obj.pop("stringData", None) or {}
            if sd:
                obj.setdefault("data", {}).update({k: _b64(v) for k, v in sd.items()})
            obj.setdefault("type", "Opaque")
            _validate_secret(obj)
        for f in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                  "selfLink", "deletionTimestamp"):
            md.pop(f, None)
        if kind.status_subresource:
            obj.pop("status", None)
        if manager == "kubectl-client-side-apply":
            applied = copy.deepcopy(obj)
            applied["metadata"] = {k: v for k, v in md.items() if k in ("name", "namespace",
                                                                          "labels",
                                                                          "annotations")}
            md.setdefault("annotations", {})[
                "kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(
                    applied, sort_keys=True, separators=(",", ":")) + "\n"
        with self._cond:
            store = self._objects[kind.plural]
            old = store.get(key)
            now = now_rfc3339()
            if old is None:
                md["uid"] = str(uuid.uuid4())
                md["creationTimestamp"] = now
                if kind.generation:
                    md["generation"] = 1
                md["managedFields"] = [self._managed_entry(kind, manager, obj, now)]
                type_ = "ADDED"
            else:
                omd = old["metadata"]
                body_old = {k: v for k, v in old.items() if k not in ("metadata", "status")}
                body_new = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
                meta_same = all(omd.get(f) == md.get(f) for f in ("labels", "annotations",
                                                                  "finalizers",
                                                                  "ownerReferences"))
                if body_old == body_new and meta_same:
                    return copy.deepcopy(old)  # a no-op update writes nothing
                md["uid"] = omd["uid"]
                md["creationTimestamp"] = omd["creationTimestamp"]
                if kind.generation:
                    md["generation"] = omd.get("generation", 1) + (0 if body_old == body_new
                                                                   else 1)
                mf = [e for e in omd.get("managedFields", [])
                      if not (e.get("manager") == manager and not e.get("subresource"))]
                md["managedFields"] = mf + [self._managed_entry(kind, manager, obj, now)]
                if kind.status_subresource and "status" in old:
                    obj["status"] = copy.deepcopy(old["status"])
                type_ = "MODIFIED"
            md["resourceVersion"] = str(self._bump())
            store[key] = obj
            self._record(kind, key[0], type_, obj)
            return copy.deepcopy(obj)

    @staticmethod
    def _managed_entry(kind, manager, obj, now, subresource=None):
        fields = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
        if subresource:
            fields = {"status": obj.get("status") or {}}
        md = fields.get("metadata")
        if isinstance(md, dict):
            fields["metadata"] = {k: v for k, v in md.items() if k in ("labels",
                                                                        "annotations")}
        e = {"manager": manager, "operation": "Update", "apiVersion": kind.api_version,
             "time": now, "fieldsType": "FieldsV1", "fieldsV1": _fields_v1(fields)}
        if subresource:
            e["subresource"] = subresource
        return e

    def delete(self, kind, name, ns=None):
        kind = kind_of(kind)
        key = self._key(kind, name, ns)
        with self._cond:
            obj = self._objects[kind.plural].pop(key, None)
            if obj is None:
                return False
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self._bump())
            self._record(kind, key[0], "DELETED", obj)
            return True

    def get(self, kind, name, ns=None):
        kind = kind_of(kind)
        with self._lock:
            o = self._objects[kind.plural].get(self._key(kind, name, ns))
            return copy.deepcopy(o) if o is not None else None

    def status_of(self, kind, name, ns=None):
        o = self.get(kind, name, ns)
        return (o or {}).get("status")

    def ready_condition(self, kind, name, ns=None):
        for c in (self.status_of(kind, name, ns) or {}).get("conditions") or []:
            if isinstance(c, dict) and c.get("type") == "Ready":
                return c
        return None

    def set_status(self, kind, name, status, ns=None):
        """Writes .status as another client would (bumps resourceVersion, MODIFIED)."""
        kind = kind_of(kind)
        key = self._key(kind, name, ns)
        with self._cond:
            obj = self._objects[kind.plural].get(key)
            if obj is None:
                raise KeyError(name)
            obj = copy.deepcopy(obj)
            obj["status"] = copy.deepcopy(status)
            obj["metadata"]["resourceVersion"] = str(self._bump())
            self._objects[kind.plural][key] = obj
            self._record(kind, key[0], "MODIFIED", obj)

    def patches(self, kind, name, ns=None):
        kind = kind_of(kind)
        with self._lock:
            return [copy.deepcopy(p) for p in self._patches
                    if p["kind"] == kind.kind and p["name"] == name and
                    (ns is None or p["namespace"] == ns)]

    def all_patches(self):
        with self._lock:
            return [copy.deepcopy(p) for p in self._patches]

    def objects(self, kind):
        kind = kind_of(kind)
        with self._lock:
            return [copy.deepcopy(o) for _, o in sorted(self._objects[kind.plural].items(),
                                                          key=lambda kv: (kv[0][0] or "",
                                                                          kv[0][1]))]

    # ---- create and replace (POST, PUT) -----------------------------------------------------

    @staticmethod
    def _json_object(kind, content_type, body):
        """The body of a POST or PUT: JSON (415 otherwise), an object of `kind` (400)."""
        if content_type.split(";")[0].strip() != "application/json":
            raise ApiError(415, "UnsupportedMediaType", "unsupported media type %r" % content_type)
        try:
            obj = json.loads(body)
        except ValueError:
            raise ApiError(400, "BadRequest", "the body is not JSON")
        if not isinstance(obj, dict) or obj.get("kind") != kind.kind or \
                obj.get("apiVersion") != kind.api_version:
            raise ApiError(400, "BadRequest", "the body is not a %s %s" % (kind.api_version,
                                                                          kind.kind))
        return obj

    def _write_body(self, kind, ns, name, content_type, body):
        """The object of a POST or PUT, checked as the API server does before storing it."""
        obj = self._json_object(kind, content_type, body)
        md = obj.get("metadata")
        if not isinstance(md, dict) or not md.get("name"):
            raise ApiError(422, "Invalid", "%s is invalid: metadata.name: Required value" %
                           kind.kind)
        if name is not None and md["name"] != name:
            raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the "
                           "name on the URL (%s)" % (md["name"], name))
        if kind.namespaced:
            if md.get("namespace", ns) != ns:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does "
                               "not match the namespace sent on the request")
            md["namespace"] = ns
        if kind.kind == "Secret":
            try:
                _validate_secret(obj)
            except ValueError as e:
                raise ApiError(422, "Invalid", "Secret %r is invalid: %s" % (md["name"], e))
        if kind.kind.endswith("WebhookConfiguration"):
            for w in obj.get("webhooks") or []:
                ca = ((w or {}).get("clientConfig") or {}).get("caBundle")
                if ca is None:
                    continue
                try:  # a []byte field: Go's encoding/json decodes it as strict standard base64
                    ok = isinstance(ca, str) and \
                        base64.b64encode(base64.b64decode(ca, validate=True)).decode() == ca
                except ValueError:
                    ok = False
                if not ok:
                    raise ApiError(400, "BadRequest", "json: illegal base64 data in "
                                   "webhooks.clientConfig.caBundle")
        obj.pop("status", None)
        return obj

    def _create(self, kind, ns, content_type, body):
        """POST <collection>: 201 and the stored object; 409 AlreadyExists when it exists."""
        obj = self._write_body(kind, ns, None, content_type, body)
        md = obj["metadata"]
        for f in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"):
            md.pop(f, None)
        with self._cond:
            key = self._key(kind, obj)
            store = self._objects[kind.plural]
            if key in store:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' %
                               (kind.qualified, md["name"]),
                               {"name": md["name"], "kind": kind.plural})
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_rfc3339()
            if kind.generation:
                md["generation"] = 1
            md["resourceVersion"] = str(self._bump())
            store[key] = obj
            self._record(kind, key[0], "ADDED", obj)
            self.stats["creates"] += 1
            return copy.deepcopy(obj)

    def _replace(self, kind, ns, name, content_type, body):
        """PUT <object>: the whole object replaced. metadata.resourceVersion, when sent, must be
        the stored one (409 Conflict otherwise); uid and creationTimestamp are kept."""
        obj = self._write_body(kind, ns, name, content_type, body)
        md = obj["metadata"]
        with self._cond:
            key = self._key(kind, obj)
            store = self._objects[kind.plural]
            old = store.get(key)
            if old is None:
                raise _not_found(kind, name)
            omd = old["metadata"]
            rv = md.get("resourceVersion")
            if rv and rv != omd["resourceVersion"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the '
                               "object has been modified; please apply your changes to the "
                               "latest version and try again" % (kind.qualified, name),
                               {"name": name, "kind": kind.plural})
            if md.get("uid") and md["uid"] != omd["uid"]:
                raise ApiError(409, "Conflict", "Precondition failed: UID in precondition: %s, "
                               "UID in object meta: %s" % (md["uid"], omd["uid"]))
            for f in ("uid", "creationTimestamp", "managedFields"):
                if f in omd:
                    md[f] = omd[f]
            body_old = {k: v for k, v in old.items() if k not in ("metadata", "status")}
            body_new = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
            if kind.generation:
                md["generation"] = omd.get("generation", 1) + (0 if body_old == body_new else 1)
            if body_old == body_new and all(omd.get(f) == md.get(f) for f in (
                    "labels", "annotations", "finalizers", "ownerReferences")):
                return copy.deepcopy(old)  # a no-op update writes nothing
            md["resourceVersion"] = str(self._bump())
            store[key] = obj
            self._record(kind, key[0], "MODIFIED", obj)
            self.stats["replaces"] += 1
            return copy.deepcopy(obj)

    # ---- events (POST /api/v1/namespaces/<ns>/events) ----------------------------------------

    def _create_event(self, ns, content_type, body):
        """Creates a core/v1 Event as the API server's create and validation do (the parts of
        ValidateEventCreate for a core/v1 request without eventTime): a DNS-subdomain name,
        involvedObject.namespace equal to the Event's, reason and type present. 201 + stored."""
        obj = self._json_object(kind_of("Event"), content_type, body)
        md = obj.setdefault("metadata", {})
        name = md.get("name", "")
        if md.get("namespace", ns) != ns:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not "
                           "match the namespace sent on the request")
        md["namespace"] = ns
        errs = []
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                            name or "") or len(name) > 253:
            errs.append("metadata.name: Invalid value: %r" % name[:80])
        io = obj.get("involvedObject") or {}
        if io.get("namespace") != ns:
            errs.append("involvedObject.namespace: Invalid value: %r: does not match "
                        "event.namespace" % io.get("namespace"))
        if not obj.get("reason"):
            errs.append("reason: Required value")
        if obj.get("type") not in ("Normal", "Warning"):
            errs.append("type: Unsupported value: %r" % obj.get("type"))
        if len(obj.get("reportingInstance", "")) > 128:
            errs.append("reportingInstance: Too long")
        if errs:
            raise ApiError(422, "Invalid", "Event %r is invalid: %s" % (name[:80],
                                                                        ", ".join(errs)))
        kind = kind_of("Event")
        with self._cond:
            store = self._objects[kind.plural]
            if (ns, name) in store:
                raise ApiError(409, "AlreadyExists", "events %r already exists" % name)
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_rfc3339()
            md["resourceVersion"] = str(self._bump())
            store[(ns, name)] = obj
            self._record(kind, ns, "ADDED", obj)
            return copy.deepcopy(obj)

    def events(self, ns=None):
        """The Events created so far (in ns, or all), oldest first."""
        evs = [e for e in self.objects("Event") if ns is None or e["metadata"]["namespace"] == ns]
        return sorted(evs, key=lambda e: int(e["metadata"]["resourceVersion"]))

    # ---- credentials ------------------------------------------------------------------------

    def set_token(self, token, keep_old=False):
        with self._lock:
            self._tokens = (self._tokens | {token}) if keep_old else {token}
            self.token = token

    def write_token_file(self, path, token=None):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write((token or self.token) + "\n")
        os.replace(tmp, path)
        return path

    def write_kubeconfig(self, path, token_file=None, namespace=None):
        """A kubeconfig for this server: certificate-authority-data and a bearer token (inline,
        or `tokenFile: token_file`, which is written too)."""
        user = {"tokenFile": token_file} if token_file else {"token": self.token}
        if token_file:
            self.write_token_file(token_file)
        ctx = {"cluster": "fake", "user": "sigil"}
        if namespace:
            ctx["namespace"] = namespace
        # JSON is YAML; but write block YAML as kubectl does.
        lines = ["apiVersion: v1", "kind: Config", "clusters:", "- name: fake", "  cluster:",
                 "    server: %s" % self.url,
                 "    certificate-authority-data: %s" % base64.b64encode(self.ca_pem).decode(),
                 "contexts:", "- name: fake", "  context:",
                 "    cluster: %s" % ctx["cluster"], "    user: %s" % ctx["user"]]
        if namespace:
            lines.append("    namespace: %s" % namespace)
        lines += ["current-context: fake", "preferences: {}", "users:", "- name: sigil",
                  "  user:"]
        for k, v in user.items():
            lines.append("    %s: %s" % (k, json.dumps(v)))
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
        return path

    # ---- watch control ----------------------------------------------------------------------

    def _each_watch(self, fn, kind=None):
        k = kind_of(kind) if kind else None
        with self._cond:
            n = 0
            for w in list(self._watches):
                if k is None or w.kind is k:
                    fn(w)
                    n += 1
            self._cond.notify_all()
            return n

    def bookmark(self, kind=None):
        """Every open watch that allows bookmarks gets a BOOKMARK at the current
        resourceVersion. Returns how many watches were asked."""
        def f(w):
            if w.bookmarks:
                w.bookmark_pending = True
        return self._each_watch(f, kind)

    def _limit(self, w):
        if w.limit is None:
            w.limit = len(self._history)

    def drop_watches(self, mid_event=False, kind=None):
        def f(w):
            w.drop = "mid_event" if mid_event else "abrupt"
            self._limit(w)
        return self._each_watch(f, kind)

    def cut_next_event(self, kind=None):
        def f(w):
            w.cut_next = True
        return self._each_watch(f, kind)

    def end_watches(self, kind=None):
        def f(w):
            w.end_clean = True
            self._limit(w)
        return self._each_watch(f, kind)

    def send_gone(self, kind=None):
        def f(w):
            w.gone = True
            self._limit(w)
        return self._each_watch(f, kind)

    def expire_history(self):
        """Compaction: every resourceVersion up to now becomes too old to watch from (410),
        and so do continue tokens. The cluster moves on by one revision (as it always does),
        so a fresh list's resourceVersion can be watched from."""
        with self._cond:
            self._bump()
            self._too_old_below = self._rv
            for k in list(self._snapshots):
                self._expired_snapshot_rvs.add(k[-1])
            self._snapshots.clear()
            self._cond.notify_all()

    def expire_continue_tokens(self):
        with self._cond:
            for k in list(self._snapshots):
                self._expired_snapshot_rvs.add(k[-1])
            self._snapshots.clear()

    def pause_watches(self):
        """Open watches are dropped; new watch requests wait unanswered until resume."""
        with self._cond:
            if self._watch_pause is None:
                self._watch_pause = Hold(self, {"watch": True})
                self._holds.append(self._watch_pause)
        self.drop_watches()

    def resume_watches(self):
        with self._cond:
            h, self._watch_pause = self._watch_pause, None
        if h:
            h.release()

    def open_watches(self, kind=None):
        k = kind_of(kind) if kind else None
        with self._lock:
            return sum(1 for w in self._watches if k is None or w.kind is k)

    def wait_watches(self, kind=None, n=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.open_watches(kind) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def wait_watches_closed(self, kind=None, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.open_watches(kind) > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    # ---- faults -----------------------------------------------------------------------------

    def fail_next(self, n, code=500, path=None, method=None, watch=None, prefix=False):
        with self._lock:
            self._faults.append({"n": n, "code": code, "path": path, "method": method,
                                 "watch": watch, "prefix": prefix})

    def clear_faults(self):
        with self._lock:
            self._faults = []

    def hold(self, path=None, method=None, watch=None, prefix=False):
        h = Hold(self, {"path": path, "method": method, "watch": watch, "prefix": prefix})
        with self._lock:
            self._holds.append(h)
        return h

    # ---- what was seen ----------------------------------------------------------------------

    def requests(self, path=None, method=None, watch=None, prefix=False):
        rule = {"path": path, "method": method, "watch": watch, "prefix": prefix}
        with self._lock:
            return [dict(r) for r in self._requests
                    if _rule_matches(rule, r["method"], r["path"], r["watch"])]

    def count(self, path=None, method=None, watch=None, prefix=False):
        return len(self.requests(path, method, watch, prefix))

    def wait_requests(self, n, path=None, method=None, watch=None, prefix=False, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(path, method, watch, prefix) >= n:
                return True
            time.sleep(0.02)
        return False

    # ---- request handling (called from handler threads) -------------------------------------

    def _route(self, path):
        parts = [p for p in path.split("/") if p != ""]
        if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource",
                           {})
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource",
                           {})
        kind = _BY_PATH.get((group, version, rest[0]))
        if kind is None or (ns is not None and not kind.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource",
                           {})
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if name is not None and kind.namespaced and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource",
                           {})
        return kind, ns, name, sub

    def _gate(self, method, path, watch):
        """Holds and injected failures. Returns an ApiError to answer with, or None."""
        with self._cond:
            while True:
                if self._stopping:
                    return ApiError(503, "ServiceUnavailable", "the fake API server is stopping")
                hold = next((h for h in self._holds
                             if _rule_matches(h.rule, method, path, watch)), None)
                if hold is None:
                    break
                hold.arrived += 1
                self._cond.notify_all()
                while not hold.event.is_set() and not self._stopping:
                    self._cond.wait(0.2)
            for f in self._faults:
                if f["n"] != 0 and _rule_matches(f, method, path, watch):
                    if f["n"] > 0:
                        f["n"] -= 1
                    return ApiError(f["code"], "InternalError" if f["code"] == 500 else
                                    "ServiceUnavailable",
                                    "Internal error occurred: injected by the fake API server",
                                    {"causes": [{"message": "injected failure"}]})
        return None

    def _list(self, kind, ns, q):
        limit = q.get("limit", "")
        try:
            limit = int(limit) if limit else 0
            if limit < 0:
                raise ValueError
        except ValueError:
            raise ApiError(400, "BadRequest", "invalid limit %r" % q.get("limit"))
        cont = q.get("continue", "")
        rv_param = q.get("resourceVersion", "")
        lsel, fsel = q.get("labelSelector", ""), q.get("fieldSelector", "")
        lm, fm = _label_selector(lsel), _field_selector(fsel)
        with self._lock:
            if cont:
                if rv_param:
                    raise ApiError(400, "BadRequest", "specifying resource version is not "
                                   "allowed when using continue")
                try:
                    tok = json.loads(base64.b64decode(cont, validate=True))
                    rv, start = int(tok["rv"]), str(tok["start"])
                    if tok.get("v") != "meta.k8s.io/v1":
                        raise ValueError
                except (ValueError, KeyError, TypeError):
                    raise ApiError(400, "BadRequest", "continue key is not valid: incorrect "
                                   "encoded start resourceVersion (version meta.k8s.io/v1)")
                skey = (kind.plural, ns, lsel, fsel, rv)
                if self.expire_next_continue and skey in self._snapshots:
                    self.expire_next_continue = False
                    del self._snapshots[skey]
                    self._expired_snapshot_rvs.add(rv)
                snap = self._snapshots.get(skey)
                if snap is None:
                    if rv in self._expired_snapshot_rvs or rv < self._too_old_below:
                        raise ApiError(
                            410, "Expired",
                            "The provided continue parameter is too old to display a "
                            "consistent list result. You can start a new list without the "
                            "continue parameter, or use the continue token in this response "
                            "to retrieve the remainder of the results. Continuing with the "
                            "provided token results in an inconsistent list - objects that "
                            "were created, modified, or deleted between the time the first "
                            "chunk was returned and now may show up in the list.")
                    raise ApiError(400, "BadRequest", "continue key is not valid for this "
                                   "collection")
                items = [o for o in snap if self._sort_key(o) >= start]
            else:
                if rv_param:
                    try:
                        int(rv_param)
                    except ValueError:
                        raise ApiError(400, "BadRequest",
                                       "invalid resource version %r" % rv_param)
                if rv_param == "0":
                    limit = 0  # served from the watch cache: no paging
                rv = self._rv
                items = [copy.deepcopy(o) for k, o in self._objects[kind.plural].items()
                         if (ns is None or k[0] == ns) and lm(o) and fm(o)]
                items.sort(key=self._sort_key)
                if limit and len(items) > limit:
                    self._snapshots[(kind.plural, ns, lsel, fsel, rv)] = items
            page = items[:limit] if limit else items
            meta = {"resourceVersion": str(rv)}
            if limit and len(items) > limit:
                start = self._sort_key(page[-1]) + "\x00"
                meta["continue"] = base64.b64encode(json.dumps(
                    {"v": "meta.k8s.io/v1", "rv": rv, "start": start},
                    separators=(",", ":")).encode()).decode()
                meta["remainingItemCount"] = len(items) - limit
        return {"kind": kind.list_kind, "apiVersion": kind.api_version, "metadata": meta,
                "items": page}

    @staticmethod
    def _sort_key(o):
        md = o.get("metadata") or {}
        return (md.get("namespace") or "") + "/" + md.get("name", "")

    def _get(self, kind, ns, name):
        with self._lock:
            o = self._objects[kind.plural].get((ns if kind.namespaced else None, name))
            if o is None:
                raise _not_found(kind, name)
            return copy.deepcopy(o)

    def _patch_status(self, kind, ns, name, content_type, body, manager):
        rec = {"kind": kind.kind, "namespace": ns, "name": name, "content_type": content_type,
               "raw": body.decode(errors="replace"), "body": None, "code": None, "noop": False,
               "rv_before": None, "rv_after": None, "time": time.time()}
        try:
            ct = content_type.split(";")[0].strip().lower()
            if ct != "application/merge-patch+json":
                raise ApiError(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted "
                               "media types include: application/merge-patch+json (the fake "
                               "models no other patch type)")
            try:
                patch = json.loads(body)
            except ValueError as e:
                raise ApiError(400, "BadRequest", "error decoding patch: %s" % e)
            rec["body"] = patch
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "error decoding patch: not a JSON object")
            with self._cond:
                key = (ns if kind.namespaced else None, name)
                obj = self._objects[kind.plural].get(key)
                if obj is None:
                    raise _not_found(kind, name)
                rec["rv_before"] = obj["metadata"]["resourceVersion"]
                pmd = patch.get("metadata") if isinstance(patch.get("metadata"), dict) else {}
                conflict = None
                if "resourceVersion" in pmd and pmd["resourceVersion"] != \
                        obj["metadata"]["resourceVersion"]:
                    conflict = "the object has been modified; please apply your changes to " \
                               "the latest version and try again"
                if "uid" in pmd and pmd["uid"] != obj["metadata"]["uid"]:
                    conflict = "Precondition failed: UID in precondition: %s, UID in object " \
                               "meta: %s" % (pmd["uid"], obj["metadata"]["uid"])
                if conflict:
                    raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": %s'
                                   % (kind.qualified, name, conflict),
                                   {"name": name, "group": kind.group, "kind": kind.plural})
                merged = merge_patch(copy.deepcopy(obj), patch)
                status, errs = prune_and_validate_status(merged.get("status"))
                if errs:
                    msg = "; ".join("%s: %s" % e for e in errs)
                    raise ApiError(422, "Invalid", '%s.%s "%s" is invalid: %s' % (
                        kind.kind, kind.group, name, msg),
                        {"name": name, "group": kind.group, "kind": kind.kind,
                         "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f}
                                    for f, m in errs]})
                new = copy.deepcopy(obj)
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
                if new == obj:
                    rec["noop"] = True
                    rec["rv_after"] = rec["rv_before"]
                    rec["code"] = 200
                    return copy.deepcopy(obj)
                now = now_rfc3339()
                md = new["metadata"]
                mf = [e for e in md.get("managedFields", [])
                      if not (e.get("manager") == manager and e.get("subresource") == "status")]
                md["managedFields"] = mf + [self._managed_entry(kind, manager, new, now,
                                                                "status")]
                md["resourceVersion"] = str(self._bump())
                self._objects[kind.plural][key] = new
                self._record(kind, key[0], "MODIFIED", new)
                rec["rv_after"] = md["resourceVersion"]
                rec["code"] = 200
                return copy.deepcopy(new)
        except ApiError as e:
            rec["code"] = e.code
            raise
        finally:
            with self._lock:
                self._patches.append(rec)

    def _log_request(self, method, path, q, watch, handler):
        """Recorded on arrival (code None until answered), so a held or open watch shows."""
        rec = {"method": method, "path": path, "query": dict(q), "watch": watch, "code": None,
               "time": time.time(), "user_agent": handler.headers.get("User-Agent", ""),
               "content_type": handler.headers.get("Content-Type", ""),
               "authorized": None}
        with self._cond:
            self._requests.append(rec)
            self._cond.notify_all()
        return rec

    def _answered(self, rec, code):
        with self._cond:
            rec["code"] = code
            self._cond.notify_all()

    # ---- watch streaming --------------------------------------------------------------------

    def _event_line(self, type_, obj):
        return (json.dumps({"type": type_, "object": obj}, separators=(",", ":")) +
                "\n").encode()

    def _watch(self, handler, kind, ns, q):
        """Serves one watch request on handler's connection. Returns the HTTP code logged."""
        rv_param = q.get("resourceVersion", "")
        bookmarks = _parse_bool(q.get("allowWatchBookmarks", ""), "allowWatchBookmarks")
        if q.get("sendInitialEvents"):
            raise ApiError(400, "BadRequest", "sendInitialEvents is not modeled by the fake "
                           "API server")
        timeout = q.get("timeoutSeconds", "")
        try:
            timeout = int(timeout) if timeout else None
            if timeout is not None and timeout < 0:
                raise ValueError
        except ValueError:
            raise ApiError(400, "BadRequest", "invalid timeoutSeconds %r" % q.get(
                "timeoutSeconds"))
        lm = _label_selector(q.get("labelSelector", ""))
        fm = _field_selector(q.get("fieldSelector", ""))
        initial = []
        gone = None
        with self._cond:
            if rv_param in ("", "0"):
                for k, o in sorted(self._objects[kind.plural].items(),
                                   key=lambda kv: (kv[0][0] or "", kv[0][1])):
                    if (ns is None or k[0] == ns) and lm(o) and fm(o):
                        initial.append(self._event_line("ADDED", o))
                pos = len(self._history)
                start_rv = self._rv
            else:
                try:
                    rv = int(rv_param)
                except ValueError:
                    raise ApiError(400, "BadRequest", "invalid resource version %r" % rv_param)
                if rv < self._too_old_below:
                    gone = "too old resource version: %d (%d)" % (rv, self._too_old_below)
                else:
                    deadline = time.monotonic() + 3.0
                    while rv > self._rv and time.monotonic() < deadline and \
                            not self._stopping:
                        self._cond.wait(0.1)
                    if rv > self._rv:
                        raise ApiError(504, "Timeout", "Too large resource version: %d, "
                                       "current: %d" % (rv, self._rv),
                                       {"causes": [{"reason": "ResourceVersionTooLarge",
                                                    "message": "Too large resource version"}],
                                        "retryAfterSeconds": 1})
                pos = bisect.bisect_right(self._history_rvs, rv)
                start_rv = rv
            if gone and self.watch_gone_as_http:
                self.stats["gone_sent"] += 1
                raise ApiError(410, "Expired", gone)
            w = _Watch(kind, ns, lm, fm, bookmarks, pos, start_rv)
            if not gone:
                self._watches.add(w)
                self._cond.notify_all()
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Cache-Control", "no-cache, private")
            handler.send_header("Audit-Id", str(uuid.uuid4()))
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            if gone:
                with self._lock:
                    self.stats["gone_sent"] += 1
                self._send_lines(handler, [self._event_line(
                    "ERROR", status_body(410, "Expired", gone))])
                self._end_chunks(handler)
                return 200
            self._send_lines(handler, initial)
            deadline = time.monotonic() + timeout if timeout else None
            while True:
                with self._cond:
                    while True:
                        end = len(self._history) if w.limit is None else w.limit
                        pending = [e for e in self._history[w.pos:end] if w.wants(e)]
                        if (pending or w.bookmark_pending or w.drop or w.end_clean or w.gone or
                                self._stopping):
                            break
                        if deadline is not None and time.monotonic() >= deadline:
                            break
                        if self._peer_gone(handler):
                            handler.close_connection = True
                            return 200
                        left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                        self._cond.wait(max(left, 0.01))
                    w.pos = max(w.pos, end)
                    lines = [self._event_line(e[3], e[4]) for e in pending]
                    bm = None
                    # never a bookmark past events this stream will not deliver
                    if w.bookmark_pending and w.limit is None:
                        w.bookmark_pending = False
                        bm = self._event_line("BOOKMARK", {
                            "kind": kind.kind, "apiVersion": kind.api_version,
                            "metadata": {"resourceVersion": str(self._rv)}})
                    cut, w.cut_next = (w.cut_next and bool(lines)), (w.cut_next and not lines)
                    drop, end, gone_now = w.drop, w.end_clean, w.gone
                    stopping = self._stopping
                if cut:
                    line = lines[0]
                    self._send_raw_chunk(handler, line[:max(1, len(line) // 2)])
                    with self._lock:
                        self.stats["cuts"] += 1
                    return self._abort(handler)
                self._send_lines(handler, lines)
                w.events_sent += len(lines)
                with self._lock:
                    self.stats["events_sent"] += len(lines)
                if bm:
                    self._send_lines(handler, [bm])
                    with self._cond:
                        self.stats["bookmarks_sent"] += 1
                        self.last_bookmark_rv[kind.kind] = json.loads(bm)["object"][
                            "metadata"]["resourceVersion"]
                        self._cond.notify_all()
                if drop:
                    if drop == "mid_event":
                        line = self._event_line("MODIFIED", self._any_object(kind, ns) or {
                            "kind": kind.kind, "apiVersion": kind.api_version,
                            "metadata": {"resourceVersion": str(self._rv)}})
                        self._send_raw_chunk(handler, line[:max(1, len(line) // 2)])
                    with self._lock:
                        self.stats["drops"] += 1
                    return self._abort(handler)
                if stopping:
                    return self._abort(handler)
                if gone_now:
                    with self._lock:
                        self.stats["gone_sent"] += 1
                    self._send_lines(handler, [self._event_line(
                        "ERROR", status_body(410, "Expired",
                                             "too old resource version: %d (%d)" % (
                                                 w.start_rv, self._rv)))])
                    self._end_chunks(handler)
                    return 200
                if end or (deadline is not None and time.monotonic() >= deadline):
                    self._end_chunks(handler)
                    return 200
        except (OSError, ssl.SSLError):
            handler.close_connection = True
            return 200
        finally:
            with self._cond:
                self._watches.discard(w)
                self._cond.notify_all()

    @staticmethod
    def _peer_gone(handler):
        """True when the client closed its end of a watch connection (it never sends anything
        else while a response is streaming: HTTP/1.1 clients do not pipeline)."""
        conn = handler.connection
        try:
            r, _, _ = select.select([conn], [], [], 0)
            if not r:
                return False
            conn.setblocking(False)
            try:
                return conn.recv(4096) == b""
            except (ssl.SSLWantReadError, BlockingIOError):
                return False
            finally:
                conn.setblocking(True)
        except (OSError, ValueError, ssl.SSLError):
            return True

    def _any_object(self, kind, ns):
        with self._lock:
            for k, o in self._objects[kind.plural].items():
                if ns is None or k[0] == ns:
                    return copy.deepcopy(o)
        return None

    def _send_raw_chunk(self, handler, data):
        if data:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _send_lines(self, handler, lines):
        if not lines:
            return
        if not self.split_chunks:
            for line in lines:
                self._send_raw_chunk(handler, line)
            return
        blob = b"".join(lines)
        i = 0
        while i < len(blob):
            n = random.randint(1, max(1, min(len(blob) - i, 97)))
            self._send_raw_chunk(handler, blob[i:i + n])
            i += n

    def _end_chunks(self, handler):
        handler.wfile.write(b"0\r\n\r\n")

    def _abort(self, handler):
        """Closes the connection abruptly: no final chunk, no TLS close_notify."""
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return 200


def _make_handler(fake):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-kube-apiserver"
        sys_version = ""

        def log_message(self, fmt, *args):  # quiet; requests are recorded in fake.requests()
            pass

        def _json(self, code, obj):
            body = json.dumps(obj, separators=(",", ":")).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Audit-Id", str(uuid.uuid4()))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self):
            n = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(n)) if n else b""

        def _handle(self, method):
            u = urllib.parse.urlsplit(self.path)
            path = u.path
            q = {k: v[0] for k, v in urllib.parse.parse_qs(u.query,
                                                           keep_blank_values=True).items()}
            body = self._body() if method in ("PATCH", "PUT", "POST") else b""
            try:
                watch = _parse_bool(q.get("watch", ""), "watch")
            except ApiError:
                watch = False
            rec = fake._log_request(method, path, q, watch, self)
            code = 500
            status_patch = method == "PATCH" and path.endswith("/status")
            if status_patch:
                with fake._lock:
                    fake._status_patches_in_flight += 1
                    fake.stats["status_patches_max_in_flight"] = max(
                        fake.stats["status_patches_max_in_flight"], fake._status_patches_in_flight)
                time.sleep(fake.status_patch_delay)
            try:
                auth = self.headers.get("Authorization", "")
                with fake._lock:
                    ok = auth.startswith("Bearer ") and auth[7:].strip() in fake._tokens
                    rec["authorized"] = ok
                    if not ok:
                        fake.stats["unauthorized"] += 1
                if not ok:
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                err = fake._gate(method, path, watch)
                if err:
                    raise err
                if path == "/version" and method == "GET":
                    code = 200
                    return self._json(200, {"major": "1", "minor": "31", "gitVersion":
                                            "v1.31.0-fake", "platform": "linux/amd64"})
                kind, ns, name, sub = fake._route(path)
                if method == "GET" and name is None:
                    if watch:
                        code = fake._watch(self, kind, ns, q)
                        return
                    code = 200
                    return self._json(200, fake._list(kind, ns, q))
                if method == "GET" and sub is None:
                    if watch:
                        raise ApiError(405, "MethodNotAllowed", "watch of a single object by "
                                       "path is not modeled; use a fieldSelector")
                    obj = fake._get(kind, ns, name)
                    code = 200
                    return self._json(200, obj)
                if method == "GET" and sub == "status" and kind.status_subresource:
                    obj = fake._get(kind, ns, name)
                    code = 200
                    return self._json(200, obj)
                if method == "PATCH" and sub == "status" and kind.status_subresource:
                    ua = self.headers.get("User-Agent", "") or "unknown"
                    manager = q.get("fieldManager") or ua.split("/")[0].split(" ")[0]
                    obj = fake._patch_status(kind, ns, name,
                                             self.headers.get("Content-Type", ""), body,
                                             manager)
                    code = 200
                    return self._json(200, obj)
                if method == "POST" and name is None and kind.kind in WRITABLE and sub is None:
                    obj = fake._create(kind, ns, self.headers.get("Content-Type", ""), body)
                    code = 201
                    return self._json(201, obj)
                if method == "PUT" and name is not None and sub is None and \
                        kind.kind in WRITABLE:
                    obj = fake._replace(kind, ns, name, self.headers.get("Content-Type", ""),
                                        body)
                    code = 200
                    return self._json(200, obj)
                if method == "POST" and name is None and kind.kind == "Event" and ns:
                    obj = fake._create_event(ns, self.headers.get("Content-Type", ""), body)
                    code = 201
                    return self._json(201, obj)
                if sub is not None and sub != "status" or (
                        sub == "status" and not kind.status_subresource):
                    raise ApiError(404, "NotFound",
                                   "the server could not find the requested resource", {})
                raise ApiError(405, "MethodNotAllowed",
                               "the fake API server does not model %s on %s" % (method, path))
            except ApiError as e:
                code = e.code
                try:
                    self._json(e.code, e.body)
                except OSError:
                    self.close_connection = True
            finally:
                if status_patch:
                    with fake._lock:
                        fake._status_patches_in_flight -= 1
                fake._answered(rec, code)

        def do_GET(self):
            self._handle("GET")

        def do_PATCH(self):
            self._handle("PATCH")

        def do_PUT(self):
            self._handle("PUT")

        def do_POST(self):
            self._handle("POST")

        def do_DELETE(self):
            self._handle("DELETE")

    return Handler


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the fake API server until SIGTERM")
    s.add_argument("--dir", required=True, help="writes kubeconfig and ca.crt here")
    s.add_argument("--token", default="sigil-test-token")
    s.add_argument("--object", action="append", default=[],
                   help="JSON file: one object or a List of them (repeatable)")
    a = ap.parse_args(argv)
    os.makedirs(a.dir, exist_ok=True)
    fk = FakeKube(token=a.token, workdir=a.dir)
    for path in a.object:
        with open(path) as f:
            doc = json.load(f)
        for o in doc.get("items", []) if doc.get("kind", "").endswith("List") else [doc]:
            fk.apply(o["kind"], o)
    fk.start()
    fk.write_kubeconfig(os.path.join(a.dir, "kubeconfig"))
    print(fk.url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    fk.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
