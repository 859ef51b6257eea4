"""Attacks by an unauthenticated client on sigil's webhook port (issue 9, points 7 and 8), and
what is needed to run them against the real `sigil serve` in its deployed configuration.

Shared by tests/integration/e2e/test_attacks.py (is a legitimate admission still answered
correctly? are over-budget bodies refused with 503? are idle sockets evicted?) and
bench/attacks.py (peak RSS of the server and latency of a legitimate admission during each).

  deployed_config(...)     sigil's config.yaml as the Helm chart writes it with its defaults
                           (deploy/helm/sigil/values.yaml), policies from files instead of the
                           cluster; tests/deploy/test_chart.py checks the chart writes exactly that.
  PartialBodies            n connections that each send a request whose body is complete but
                           for its last bytes, and hold it; again and again until stopped.
  IdleConnections          n TLS keep-alive connections that ask once, then idle.
  RssSampler               the server's VmRSS, sampled, and its peak.
  admit(...)               one legitimate POST /validate on a new connection: (status, response,
                           seconds).
Everything talks to 127.0.0.0/8 only; another 127.0.0.x source address is another peer.
Standard library and python3-yaml only.
"""
import collections
import http.client
import json
import os
import select
import socket
import ssl
import threading
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHART_VALUES = os.path.join(ROOT, "deploy", "helm", "sigil", "values.yaml")
MiB = 1 << 20


def chart_defaults():
    with open(CHART_VALUES) as f:
        return yaml.safe_load(f)


def deployed_config(tls_cert, tls_key, policies, insecure=(), values=None, server_overrides=None):
    """config.yaml as templates/configmap.yaml writes it from the chart's values, except that
    the policies come from files (the chart's `kube: {enabled: true}` needs a cluster)."""
    v = values or chart_defaults()
    c = v["config"]
    server = dict(c["server"])
    server.update(server_overrides or {})
    cfg = {
        "listen": "%s:8443" % c["listenAddress"],
        "tlsCert": tls_cert,
        "tlsKey": tls_key,
        "noMatchPolicy": c["noMatchPolicy"],
        "timeout": c["timeout"] or "%ds" % int(v["webhook"]["timeoutSeconds"]),
        "logLevel": c["logLevel"],
        "server": server,
        "cache": dict(c["cache"]),
        "policies": list(policies),
    }
    if c["threads"]:
        cfg["threads"] = int(c["threads"])
    if insecure:
        cfg["registry"] = {"insecure": list(insecure)}
    return cfg


def write_config(path, cfg):
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return path


def _tls_socket(ctx, port, source, timeout):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    raw.bind((source, 0))
    raw.connect(("127.0.0.1", port))
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _status_of(data):
    """The status code of an HTTP response that starts data, or None."""
    if data.startswith(b"HTTP/1.1 ") and len(data) >= 12:
        try:
            return int(data[9:12])
        except ValueError:
            return None
    return None


def admit(port, ctx, review, source="127.0.0.1", timeout=30):
    """One legitimate admission on a new connection: (HTTP status, response dict or None,
    seconds). A transport failure is status 0."""
    body = json.dumps(review).encode()
    t0 = time.monotonic()
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout,
                                    source_address=(source, 0))
    try:
        c.request("POST", "/validate?timeout=10s", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        elapsed = time.monotonic() - t0
        if r.status != 200:
            return r.status, None, elapsed
        return 200, json.loads(data)["response"], elapsed
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError):
        return 0, None, time.monotonic() - t0
    finally:
        c.close()


class PartialBodies:
    """n attackers, each: connect, send a POST /validate whose body is size bytes (announced in
    Content-Length, or chunked) but for its last `tail` bytes, then hold the connection and wait
    for whatever the server does. When the server answers or cuts the connection, the attacker
    connects again, until stop(). outcomes counts what the server did per attempt: the status
    it answered ("413", "503", ...) or "cut" (closed without an answer)."""

    CHUNK = 64 * 1024

    def __init__(self, port, ctx, n, size, chunked=False, tail=1024, sources=("127.0.0.1",)):
        self.port, self.ctx, self.n, self.size = port, ctx, n, size
        self.chunked, self.tail, self.sources = chunked, tail, sources
        self.outcomes = collections.Counter()
        self.retry_after = collections.Counter()  # Retry-After values seen on 503s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._in_place = threading.Semaphore(0)
        self._threads = []

    def start(self):
        for i in range(self.n):
            t = threading.Thread(target=self._run, args=(self.sources[i % len(self.sources)],),
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def wait_in_place(self, timeout=120):
        """Waits until every attacker has sent its first request (all but the tail)."""
        end = time.monotonic() + timeout
        for _ in range(self.n):
            if not self._in_place.acquire(timeout=max(0.0, end - time.monotonic())):
                return False
        return True

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _record(self, outcome, data=b""):
        with self._lock:
            self.outcomes[outcome] += 1
            if outcome == "503":
                for line in data.split(b"\r\n"):
                    if line.lower().startswith(b"retry-after:"):
                        self.retry_after[line.split(b":", 1)[1].strip().decode()] += 1

    def _send_body(self, s):
        todo = self.size - self.tail
        if self.chunked:
            while todo > 0:
                n = min(self.CHUNK, todo)
                s.sendall(b"%x\r\n" % n + b"x" * n + b"\r\n")
                todo -= n
        else:
            block = b" " * self.CHUNK
            while todo > 0:
                n = min(self.CHUNK, todo)
                s.sendall(block[:n])
                todo -= n

    def _run(self, source):
        first = True
        while not self._stop.is_set():
            try:
                s = _tls_socket(self.ctx, self.port, source, 10)
            except (OSError, ssl.SSLError):
                self._record("connect-failed")
                if first:
                    self._in_place.release()
                    first = False
                time.sleep(0.2)
                continue
            head = b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            head += (b"Transfer-Encoding: chunked\r\n" if self.chunked
                     else b"Content-Length: %d\r\n" % self.size) + b"\r\n"
            try:
                s.sendall(head)
                self._send_body(s)
            except (OSError, ssl.SSLError):
                pass  # answered early and closed: read what it said
            if first:
                self._in_place.release()
                first = False
            # Hold, reading whatever comes, until the server answers or closes, or stop().
            data = b""
            s.settimeout(0.25)
            while not self._stop.is_set():
                try:
                    got = s.recv(65536)
                except socket.timeout:
                    continue
                except (OSError, ssl.SSLError):
                    break
                if not got:
                    break
                data += got
            status = _status_of(data)
            if status is not None:
                self._record(str(status), data)
            elif not self._stop.is_set():
                self._record("cut")
            try:
                s.close()
            except OSError:
                pass


class IdleConnections:
    """n TLS connections (from the given source addresses, in turn) that each ask GET /healthz
    once with keep-alive and then idle. closed() counts those the server has closed since."""

    def __init__(self, port, ctx, n, sources=("127.0.0.1",), workers=8):
        self.port, self.ctx, self.n, self.sources, self.workers = port, ctx, n, sources, workers
        self.socks = []
        self.failed = 0  # connections refused or cut before their first answer
        self._lock = threading.Lock()

    def open(self):
        order = list(range(self.n))

        def work(ids):
            for i in ids:
                try:
                    s = _tls_socket(self.ctx, self.port, self.sources[i % len(self.sources)], 10)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    data = b""
                    while b"\r\n\r\nok\n" not in data:
                        got = s.recv(4096)
                        if not got:
                            raise OSError("closed")
                        data += got
                    with self._lock:
                        self.socks.append(s)
                except (OSError, ssl.SSLError):
                    with self._lock:
                        self.failed += 1

        # A few workers, each opening its share in order, so the flood is fast but its
        # connections still have a clear age order.
        ts = [threading.Thread(target=work, args=(order[k::self.workers],), daemon=True)
              for k in range(self.workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def closed(self):
        """How many of the open connections the server has closed (EOF or reset)."""
        n = 0
        for s in self.socks:
            if is_closed(s):
                n += 1
        return n

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.socks = []


def is_closed(s):
    """Whether the server closed this (idle) TLS socket."""
    try:
        if s.pending() == 0:
            p = select.poll()  # not select(): more than 1024 descriptors are open
            p.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
            if not p.poll(0):
                return False
        s.settimeout(0.05)
        got = s.recv(4096)
        return not got
    except socket.timeout:
        return False
    except (OSError, ssl.SSLError):
        return True


class RssSampler:
    """Samples /proc/PID/status VmRSS every interval seconds in a thread; peak in bytes."""

    def __init__(self, pid, interval=0.02):
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.first = self.rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def rss(self):
        return _status_kb(self.pid, "VmRSS") * 1024

    def hwm(self):
        return _status_kb(self.pid, "VmHWM") * 1024

    def start(self):
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def stop(self):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())
        return self.peak


def _status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
