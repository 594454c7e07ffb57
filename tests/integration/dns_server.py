# SPDX-License-Identifier: MIT
"""A small authoritative DNS server for the integration tests (issue 18):
etrnd's resolver (c-ares, `dns_servers = 127.0.0.1:PORT`) asks it, so name
and MX routing run against real DNS packets on loopback. Packets are parsed
and built with dnslib (Debian's python3-dnslib); the server loop is ours:
one thread, one UDP socket and one TCP listener on the same free loopback
port, a bounded number of TCP clients, stopped by the test (stop()).

The zone is a dict: name (any case, no trailing dot) -> list of entries
    ("A", "127.0.0.1")  ("AAAA", "::1")  ("MX", 10, "mx1.example.test")
    ("CNAME", "target.test")  ("MX", 0, ".")  (a null MX, RFC 7505)
    ("TXT", "v=spf1 -all")  (one record; longer than 255 octets: several
                            character-strings, RFC 1035 3.3.14)
or one behaviour instead of records:
    ("NXDOMAIN",)   the name does not exist (also any name not in the zone)
    ("SERVFAIL",)   server failure, every query for the name
    ("TIMEOUT",)    never answered (UDP nor TCP): the client's time-out
    ("TRUNCATE",)   with the name's records: over UDP an empty answer with
                    TC set, so the client asks again over TCP (RFC 1035 4.2.1)
A name with records but none of the type asked is NODATA (NOERROR, empty
answer). Every query is recorded (queries()) as (transport, name, type), so
a test can tell what etrnd asked and over which transport.
"""

import os
import selectors
import socket
import threading
import time

from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, SOA, TXT, A, DNSRecord

HOST = "127.0.0.1"
TTL = 60
# RFC 1035 4.2.1: a UDP answer is at most 512 octets without EDNS(0).
UDP_MAX = 512
# RFC 6891 6.2.5: what an EDNS client says it takes, capped.
EDNS_MAX = 4096
# TCP: how many clients at once (more are closed at accept), the biggest
# message (RFC 1035 4.2.2: a 2-octet length), how long a quiet client stays.
TCP_CLIENTS_MAX = 16
TCP_MSG_MAX = 65535
TCP_IDLE_S = 10.0
# How long stop() waits for the thread, and the loop's longest nap.
STOP_WAIT_S = 10.0
TICK_S = 1.0
# Queries kept for queries(): the oldest are dropped past it.
QUERIES_MAX = 10000
# The SOA in negative answers (RFC 2308), for the zone "test".
SOA_NAME = "test."
SOA_RDATA = SOA("ns.test.", "hostmaster.test.", (1, 3600, 600, 86400, TTL))

BEHAVIOURS = ("NXDOMAIN", "SERVFAIL", "TIMEOUT")
RDATA = {"A": lambda e: A(e[1]), "AAAA": lambda e: AAAA(e[1]),
         "MX": lambda e: MX(e[2] if e[2] != "." else ".", e[1]),
         "CNAME": lambda e: CNAME(e[1]),
         "TXT": lambda e: TXT([e[1][i:i + 255].encode() for i in range(0, max(len(e[1]), 1), 255)])}
CNAME_CHAIN_MAX = 8


def norm(name):
    return str(name).rstrip(".").lower()


class DnsServer:
    """start() binds UDP and TCP on one free loopback port and runs the
    loop in a thread; stop() ends it and closes every socket."""

    def __init__(self, zone):
        self.zone = {norm(k): list(v) for k, v in zone.items()}
        self.lock = threading.Lock()
        self._queries = []
        self.udp = self.tcp = None
        self.port = None
        self._thread = None
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._clients = {}     # socket -> {"buf": bytes, "seen": monotonic}

    def addr(self):
        """The dns_servers value for etrnd."""
        return "%s:%d" % (HOST, self.port)

    # ---- life -----------------------------------------------------------

    def _bind(self):
        # The UDP port is the kernel's choice; TCP must get the same
        # number. Another process may hold it: try a few.
        for _ in range(20):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind((HOST, 0))
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                t.bind((HOST, u.getsockname()[1]))
            except OSError:
                u.close()
                t.close()
                continue
            t.listen(TCP_CLIENTS_MAX)
            return u, t
        raise AssertionError("dns_server: no loopback port free for both UDP and TCP")

    def start(self):
        self.udp, self.tcp = self._bind()
        self.port = self.udp.getsockname()[1]
        self.udp.setblocking(False)
        self.tcp.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="dns_server", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread is None:
            return
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=STOP_WAIT_S)
        if self._thread.is_alive():
            raise AssertionError("dns_server thread did not stop")
        self._thread = None
        for c in list(self._clients):
            c.close()
        self._clients.clear()
        self.udp.close()
        self.tcp.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ---- what was asked -------------------------------------------------

    def queries(self, name=None, qtype=None):
        """Every query so far as (transport "udp"/"tcp", name, type), or
        those for name (and qtype) only."""
        with self.lock:
            q = list(self._queries)
        return [x for x in q if (name is None or x[1] == norm(name))
                and (qtype is None or x[2] == qtype)]

    def _note(self, transport, name, qtype):
        with self.lock:
            self._queries.append((transport, name, qtype))
            del self._queries[:-QUERIES_MAX]

    # ---- answers (pure) -------------------------------------------------

    def _records(self, name, qtype, reply, depth=0):
        """Add name's records of qtype to reply, following an in-zone
        CNAME; returns the rcode for the answer."""
        entries = self.zone.get(name)
        if entries is None or ("NXDOMAIN",) in entries:
            return RCODE.NXDOMAIN if depth == 0 else RCODE.NOERROR
        if ("SERVFAIL",) in entries:
            return RCODE.SERVFAIL
        for e in entries:
            if e[0] == "CNAME" and qtype != "CNAME" and depth < CNAME_CHAIN_MAX:
                reply.add_answer(RR(name + ".", QTYPE.CNAME, ttl=TTL, rdata=RDATA["CNAME"](e)))
                return self._records(norm(e[1]), qtype, reply, depth + 1)
        for e in entries:
            if e[0] == qtype:
                reply.add_answer(RR(name + ".", getattr(QTYPE, qtype), ttl=TTL,
                                    rdata=RDATA[qtype](e)))
        return RCODE.NOERROR

    def answer(self, data, transport):
        """The reply to one query packet (bytes), or None for no reply (a
        TIMEOUT name, or a packet that is no query)."""
        try:
            q = DNSRecord.parse(data)
        except Exception:      # dnslib raises several kinds on junk
            return None
        if q.header.qr or not q.questions:
            return None
        name = norm(q.q.qname)
        qtype = QTYPE.get(q.q.qtype)
        self._note(transport, name, qtype)
        entries = self.zone.get(name, [])
        if ("TIMEOUT",) in entries:
            return None
        reply = q.reply()      # aa=1, ra=1, the question echoed
        reply.header.ra = 0
        if transport == "udp" and ("TRUNCATE",) in entries:
            reply.header.tc = 1
            return reply.pack()
        rcode = self._records(name, qtype, reply)
        reply.header.rcode = rcode
        if rcode in (RCODE.NXDOMAIN, RCODE.NOERROR) and not reply.rr:
            reply.add_auth(RR(SOA_NAME, QTYPE.SOA, ttl=TTL, rdata=SOA_RDATA))
        out = reply.pack()
        if transport == "udp":
            limit = UDP_MAX
            for ar in q.ar:
                if ar.rtype == QTYPE.OPT:
                    limit = max(UDP_MAX, min(ar.rclass, EDNS_MAX))
            if len(out) > limit:
                short = q.reply()
                short.header.ra = 0
                short.header.tc = 1
                out = short.pack()
        return out

    # ---- the loop ---------------------------------------------------------

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        sel.register(self.udp, selectors.EVENT_READ, "udp")
        sel.register(self.tcp, selectors.EVENT_READ, "accept")
        try:
            while not self._stopping:
                for key, _ in sel.select(timeout=TICK_S):
                    if key.data == "udp":
                        self._udp_one()
                    elif key.data == "accept":
                        self._accept(sel)
                    elif key.data == "client":
                        self._client_read(sel, key.fileobj)
                self._reap(sel)
        finally:
            sel.close()

    def _udp_one(self):
        try:
            data, peer = self.udp.recvfrom(EDNS_MAX)
        except (BlockingIOError, InterruptedError):
            return
        out = self.answer(data, "udp")
        if out is not None:
            try:
                self.udp.sendto(out, peer)
            except OSError:
                pass           # the client went away: nothing to do

    def _accept(self, sel):
        try:
            c, _ = self.tcp.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(self._clients) >= TCP_CLIENTS_MAX:
            c.close()
            return
        c.setblocking(False)
        self._clients[c] = {"buf": b"", "seen": time.monotonic()}
        sel.register(c, selectors.EVENT_READ, "client")

    def _drop(self, sel, c):
        sel.unregister(c)
        self._clients.pop(c, None)
        c.close()

    def _client_read(self, sel, c):
        st = self._clients[c]
        try:
            data = c.recv(TCP_MSG_MAX + 2)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sel, c)
            return
        st["buf"] += data
        st["seen"] = time.monotonic()
        while len(st["buf"]) >= 2:
            n = int.from_bytes(st["buf"][:2], "big")
            if len(st["buf"]) < 2 + n:
                if len(st["buf"]) > TCP_MSG_MAX + 2:
                    self._drop(sel, c)
                return
            msg, st["buf"] = st["buf"][2:2 + n], st["buf"][2 + n:]
            out = self.answer(msg, "tcp")
            if out is None:
                continue
            try:
                c.setblocking(True)
                c.settimeout(TICK_S)
                c.sendall(len(out).to_bytes(2, "big") + out)
                c.setblocking(False)
            except OSError:
                self._drop(sel, c)
                return

    def _reap(self, sel):
        now = time.monotonic()
        for c, st in list(self._clients.items()):
            if now - st["seen"] > TCP_IDLE_S:
                self._drop(sel, c)


if __name__ == "__main__":
    # By hand: python3 dns_server.py, then dig @127.0.0.1 -p PORT mx demo.test
    srv = DnsServer({"demo.test": [("MX", 10, "mx.demo.test")],
                     "mx.demo.test": [("A", HOST)]}).start()
    print("listening on %s (UDP and TCP); Ctrl-C stops" % srv.addr(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
