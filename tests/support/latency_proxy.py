#!/usr/bin/python3
"""A TCP proxy on 127.0.0.1 that delays every byte sent to its target by a fixed time.

It models a registry some milliseconds away: each request sigil sends reaches the real
registry `delay` later (responses come straight back), so every request costs at least one
`delay`, and requests sent one after the other add up while concurrent ones overlap. Latency
then tells how many requests lie on the critical path. Order on each connection is kept.

usage: LatencyProxy("127.0.0.1:PORT", 0.05).start() -> .address; .stop()
.refuse() closes every connection and each new one at once (a registry that fails), and
.hang() closes every connection and holds each new one open without a byte (a registry that
hangs: .held counts them), until .admit().
Only the Python standard library.
"""
import collections
import socket
import threading
import time


def _forward(dst, data):
    """Sends data to dst, or passes an end of stream on (b""). False when the pump is done."""
    try:
        if not data:
            dst.shutdown(socket.SHUT_WR)
            return False
        dst.sendall(data)
        return True
    except OSError:
        return False


class LatencyProxy:
    def __init__(self, target, delay):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.delay = float(delay)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self._stop = False
        self._refusing = False
        self._hanging = False
        self._held = []
        self.held = 0
        self._conns = []
        self._lock = threading.Lock()

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass

    def refuse(self):
        self._refusing = True
        self._drop_all()

    def hang(self):
        self._hanging = True
        self._drop_all()

    def _drop_all(self):
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def admit(self):
        self._refusing = False
        self._hanging = False
        with self._lock:
            held, self._held = self._held, []
        for c in held:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            if self._hanging:
                with self._lock:
                    self._held.append(client)  # open, read nothing, answer nothing
                    self.held += 1
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns += [client, upstream]
            queue = collections.deque()
            ready = threading.Condition()
            threading.Thread(target=self._read_delayed, args=(client, queue, ready),
                             daemon=True).start()
            threading.Thread(target=self._send_delayed, args=(upstream, queue, ready),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _read_delayed(self, src, queue, ready):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            with ready:
                queue.append((time.monotonic() + self.delay, data))
                ready.notify()
            if not data:
                return

    def _send_delayed(self, dst, queue, ready):
        while True:
            with ready:
                while not queue:
                    ready.wait()
                due, data = queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not _forward(dst, data):
                return

    @staticmethod
    def _pump(src, dst):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not _forward(dst, data):
                return
