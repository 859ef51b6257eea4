"""A DNS server on UDP for the end-to-end tests: RFC 1035 queries and answers, nothing more.

    dns = FakeDns("127.0.0.77", port=53, answers={"good.test": "127.0.0.1"},
                  silent=("stall.test",))

A name equal to or under a key of `answers` gets its IPv4 address (A) and an empty NOERROR answer
for any other type (AAAA); a name under a `silent` suffix is counted and never answered (what a
hostile pod author's own DNS does); any other name gets NXDOMAIN. `queries(name)` counts the
queries seen for a name, by type. Only loopback addresses are accepted.
"""
import ipaddress
import socket
import struct
import threading

TYPE_A = 1
TYPE_AAAA = 28


def _under(name, suffix):
    return name == suffix or name.endswith("." + suffix)


def parse_question(packet):
    """(id, flags, name, qtype) of a query with one question; ValueError when malformed."""
    if len(packet) < 12:
        raise ValueError("short header")
    qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        raise ValueError("%d questions" % qdcount)
    labels, i = [], 12
    while True:
        if i >= len(packet):
            raise ValueError("name runs past the packet")
        n = packet[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0 or i + n > len(packet):
            raise ValueError("compressed or truncated label")
        labels.append(packet[i:i + n].decode("ascii").lower())
        i += n
    if i + 4 > len(packet):
        raise ValueError("no type and class")
    qtype, _qclass = struct.unpack("!HH", packet[i:i + 4])
    return qid, flags, ".".join(labels), qtype, packet[12:i + 4]


def answer(qid, flags, question, rcode, records=()):
    """A response to the query: the question echoed, then `records` (type, rdata) for it."""
    rd = flags & 0x0100
    header = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1,
                         len(records), 0, 0)
    body = question
    for rtype, rdata in records:
        # A pointer to the question's name (offset 12), class IN, TTL 30 s.
        body += struct.pack("!HHHIH", 0xC00C, rtype, 1, 30, len(rdata)) + rdata
    return header + body


class FakeDns:
    def __init__(self, host, port=53, answers=None, silent=()):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("FakeDns listens on loopback only, not %s" % host)
        self.answers = {k.lower(): v for k, v in (answers or {}).items()}
        self.silent = tuple(s.lower() for s in silent)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))  # PermissionError for port 53 without root
        self.sock.settimeout(0.2)  # so that stop() is seen
        self.address = self.sock.getsockname()
        self._lock = threading.Lock()
        self._counts = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def queries(self, name, qtype=None):
        """Queries seen for `name`: of one type, or all types when qtype is None."""
        with self._lock:
            return sum(n for (q, t), n in self._counts.items()
                       if q == name.lower() and (qtype is None or t == qtype))

    def names(self, suffix):
        with self._lock:
            return sorted({q for (q, _t) in self._counts if _under(q, suffix.lower())})

    def _reply(self, packet):
        qid, flags, name, qtype, question = parse_question(packet)
        with self._lock:
            self._counts[(name, qtype)] = self._counts.get((name, qtype), 0) + 1
        if any(_under(name, s) for s in self.silent):
            return None
        for zone, addr in self.answers.items():
            if _under(name, zone):
                records = [(TYPE_A, socket.inet_aton(addr))] if qtype == TYPE_A else []
                return answer(qid, flags, question, 0, records)
        return answer(qid, flags, question, 3)  # NXDOMAIN

    def _run(self):
        while not self._stop:
            try:
                packet, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                out = self._reply(packet)
            except (ValueError, UnicodeDecodeError):
                continue
            if out is not None:
                self.sock.sendto(out, peer)

    def stop(self):
        self._stop = True
        self._thread.join(5)
        self.sock.close()
