# SPDX-License-Identifier: MIT
"""Hostile input on the SMTP port: HTTP and proxy requests (a browser, a
cross-protocol attack, an open-proxy scanner), binary garbage (random bytes,
NULs, a TLS ClientHello on the plain port). Each attack runs with a
well-behaved client beside it (etrnd_harness.GoodClient) that must keep
getting its 250s within GOOD_MAX_GAP_S; etrnd must answer each attacker as
Postfix would, end the connection promptly, and exit 0 on SIGTERM at the end
(no crash, no leak: the harness asserts it).

Bounds are for a loaded 2-core machine: "promptly" is PROMPT_S, far below
the IDLE_TIMEOUT the tests configure, so a close that only the idle timer
did fails.
"""

import random
import re
import socket
import ssl
import threading
import time
import unittest

import etrnd_harness as h

IDLE_TIMEOUT = "60s"     # far above PROMPT_S: the timer must not be what closes
# An attacker's connection ends within this: a hang guard, not a timer
# margin (a loaded machine may be slow by any amount); a close by the idle
# timer would come only at IDLE_TIMEOUT, and the replies show who closed.
PROMPT_S = 30.0
SOCK_TIMEOUT_S = 30.0    # no single read waits longer (bounds every test)
MAX_ERRORS = 10          # smtp_max_errors (the default, written explicitly)
GOOD_MAX_GAP_S = 15.0    # the good client's longest wait for a 250
GOOD_MIN_ACKS = 5
ATTACKERS = 8            # parallel hostile connections
ROUNDS = 25              # hostile connections per attacker thread, at least
ATTACK_MIN_S = 5.0       # and for at least this long (the good client's view)
ROUNDS_MAX = 2000        # but never more than this many
GARBAGE_NO_LF = 64 << 20 # octets of one command "line" without LF
RSS_GROWTH_MAX_KB = 32 << 10
HTTP_REQUESTS = {
    "GET": b"GET / HTTP/1.1\r\nHost: mx.test.invalid\r\nUser-Agent: t\r\n"
           b"Accept: */*\r\n\r\n",
    "POST": b"POST /cgi-bin/x HTTP/1.1\r\nHost: mx.test.invalid\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 27\r\n\r\nMAIL FROM:<a@b>\r\nRCPT TO:<",
    "CONNECT": b"CONNECT mx.example.com:25 HTTP/1.1\r\n"
               b"Host: mx.example.com:25\r\n\r\n",
}
CLOSE_REPLY_RE = re.compile(rb"^221 2\.7\.0 ")
BUDGET_REPLY_RE = re.compile(rb"^421 4\.7\.0 .*too many errors")


def client_hello():
    """The first flight of a real TLS client (Python's ssl, TLS 1.2+)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="mx.test.invalid")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert hello[:1] == b"\x16", hello[:8]
    return hello


def exchange(port, data, send_first=False):
    """Connect, (optionally wait for the greeting,) send data, and read until
    the server ends the connection. Returns (bytes received, seconds from the
    end of sending to the end of the connection, how it ended)."""
    with socket.create_connection((h.HOST, port), timeout=SOCK_TIMEOUT_S) as s:
        got = b""
        if not send_first:
            while b"\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    return got, 0.0, "eof-before-greeting"
                got += chunk
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: also an end
        t0 = time.monotonic()
        how = "eof"
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            how = "reset"   # closed with our unread input pending: RST
        except socket.timeout:
            how = "timeout"
        return got, time.monotonic() - t0, how


def reply_lines(data):
    return [l for l in data.split(b"\r\n") if l]


def close_wait(port):
    """Sockets of etrnd's port whose peer has closed and etrnd has not
    (TCP state CLOSE_WAIT, 08 in /proc/net/tcp)."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if int(local.split(":")[1], 16) == port and state == "08":
                n += 1
    return n


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class HostileTest(unittest.TestCase):
    def start(self, **cfg):
        conf = {"threads": "2", "idle_timeout": IDLE_TIMEOUT,
                "smtp_max_errors": str(MAX_ERRORS)}
        conf.update(cfg)
        e = h.Etrnd.started(self, **conf)
        self.port = e.port
        good = h.GoodClient(e.port)
        good.start()
        self.addCleanup(lambda: good.is_alive() and good.stop())
        return e, good

    def attack(self, fn):
        """fn(round) in ATTACKERS threads, ROUNDS times each and for at
        least ATTACK_MIN_S; raises the first exception any of them raised.
        Returns the number of calls."""
        errors = []
        count = [0] * ATTACKERS
        end = time.monotonic() + ATTACK_MIN_S

        def run(i):
            try:
                r = 0
                while r < ROUNDS_MAX and (r < ROUNDS or time.monotonic() < end):
                    fn(r)
                    r += 1
                    count[i] = r
            except Exception as ex:  # reported by the caller
                errors.append(ex)
        threads = [threading.Thread(target=run, args=(i,), daemon=True)
                   for i in range(ATTACKERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=ATTACK_MIN_S + ROUNDS * SOCK_TIMEOUT_S)
            self.assertFalse(t.is_alive(), "attacker thread hung")
        if errors:
            raise errors[0]
        # Every attacker has gone: etrnd must have closed its side of each.
        deadline = time.monotonic() + PROMPT_S
        while close_wait(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(close_wait(self.port), 0, "connections left in CLOSE-WAIT")
        return sum(count)

    def assert_http_closed(self, verb, got, took, how):
        lines = reply_lines(got)
        self.assertNotEqual(how, "timeout", "%s: connection not closed" % verb)
        self.assertLess(took, PROMPT_S, "%s: closed only after %.1fs" % (verb, took))
        self.assertTrue(lines and lines[0].startswith(b"220 "),
                        "%s: first reply is not the greeting: %r" % (verb, got))
        if how == "eof" or len(lines) > 1:
            # The 221 and nothing else: the header lines after the request
            # line must not be answered (nor a POST body run as commands).
            self.assertEqual(len(lines), 2, "%s: %r" % (verb, got))
            self.assertRegex(lines[1], CLOSE_REPLY_RE, verb)

    def test_http_and_proxy_requests_are_closed_at_once(self):
        e, good = self.start()
        seen = {}

        def one(r):
            verb = list(HTTP_REQUESTS)[r % len(HTTP_REQUESTS)]
            send_first = bool(r & 1)   # a browser does not wait for a greeting
            got, took, how = exchange(e.port, HTTP_REQUESTS[verb], send_first)
            self.assert_http_closed(verb, got, took, how)
            seen[(verb, how)] = seen.get((verb, how), 0) + 1
        n = self.attack(one)
        # In the middle of a session too: EHLO first, then a GET.
        got, took, how = exchange(e.port, b"EHLO x.test\r\n" + HTTP_REQUESTS["GET"])
        lines = reply_lines(got)
        self.assertEqual(how, "eof")
        self.assertLess(took, PROMPT_S)
        self.assertRegex(lines[-1], CLOSE_REPLY_RE)
        self.assertTrue(any(l.startswith(b"250 ") for l in lines), lines)
        acks, gap = good.check(self, GOOD_MAX_GAP_S, GOOD_MIN_ACKS)
        log = e.stderr_text()
        for verb in HTTP_REQUESTS:
            self.assertIn("non-SMTP command %s, disconnecting" % verb, log)
        print("http: %d requests closed with 221 2.7.0 (%s); good client: %d "
              "250s, longest wait %.2fs" % (n + 1, seen, acks, gap))

    def garbage_attack(self, e, make):
        """Attackers send make(rng) after the greeting; each must get a 500
        per line, then 421 4.7.0 after MAX_ERRORS, and be closed promptly."""
        def one(r):
            rng = random.Random(r * 7919 + threading.get_ident())
            data = make(rng)
            got, took, how = exchange(e.port, data)
            lines = reply_lines(got)
            self.assertNotEqual(how, "timeout", "not closed: %r" % got[-200:])
            self.assertLess(took, PROMPT_S)
            self.assertTrue(lines[0].startswith(b"220 "), lines[:1])
            if how == "eof" or len(lines) > 1:
                self.assertRegex(lines[-1], BUDGET_REPLY_RE)
                # The greeting, one 500 per line, the 421.
                self.assertEqual(len(lines), MAX_ERRORS + 2, lines)
                for l in lines[1:-1]:
                    self.assertTrue(l.startswith(b"500 5.5.2 "), l)
        return self.attack(one)

    def test_random_bytes_use_up_the_error_budget(self):
        e, good = self.start()

        def make(rng):
            # Random bytes cut into lines (no LF inside a line), as many
            # lines as the budget (a line more would be unread input at the
            # close, and the kernel would answer it with a reset), lines of every length up to 2 KiB (past
            # smtp_command_max: "500 line too long" counts as well).
            out = b""
            for _ in range(MAX_ERRORS):
                n = rng.randrange(1, 2048)
                line = bytes(rng.randrange(256) for _ in range(n)).replace(b"\n", b"?")
                out += b"\x00" + line[1:] if rng.random() < 0.3 else line
                out += b"\r\n"
            return out
        n = self.garbage_attack(e, make)
        acks, gap = good.check(self, GOOD_MAX_GAP_S, GOOD_MIN_ACKS)
        self.assertIn("too many errors (%d), disconnecting" % MAX_ERRORS, e.stderr_text())
        print("random bytes: %d connections got 421 4.7.0 after %d errors; good "
              "client: %d 250s, longest wait %.2fs"
              % (n, MAX_ERRORS, acks, gap))

    def test_nul_lines_use_up_the_error_budget(self):
        e, good = self.start()
        n = self.garbage_attack(e, lambda rng: (b"\x00" * rng.randrange(1, 400) + b"\r\n")
                            * MAX_ERRORS)
        acks, gap = good.check(self, GOOD_MAX_GAP_S, GOOD_MIN_ACKS)
        print("NUL lines: %d connections got 421 after %d errors; good client: "
              "%d 250s, longest wait %.2fs" % (n, MAX_ERRORS, acks, gap))

    def test_tls_client_hello_on_the_plain_port(self):
        e, good = self.start()
        hello = client_hello()

        # A real TLS client: it reads "220 ..." as a TLS record, fails and
        # goes away. etrnd must notice the close at once.
        def real_tls(r):
            raw = socket.create_connection((h.HOST, e.port), timeout=SOCK_TIMEOUT_S)
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            t0 = time.monotonic()
            with self.assertRaises((ssl.SSLError, OSError)):
                ctx.wrap_socket(raw, server_hostname="mx.test.invalid")
            raw.close()
            self.assertLess(time.monotonic() - t0, PROMPT_S)
        n_tls = self.attack(real_tls)
        # A scanner that repeats the ClientHello on one connection, each
        # ending in a line feed: one 500 per hello, then the budget.
        n = self.garbage_attack(e, lambda rng: (hello.replace(b"\n", b"") + b"\r\n")
                            * MAX_ERRORS)
        acks, gap = good.check(self, GOOD_MAX_GAP_S, GOOD_MIN_ACKS)
        print("TLS ClientHello (%d octets): %d real TLS clients failed fast, "
              "%d repeats got 421; good client: %d 250s, longest wait %.2fs"
              % (len(hello), n_tls, n, acks, gap))

    def test_garbage_without_line_feed_keeps_memory_bounded(self):
        """64 MiB of bytes without a line feed is one overlong command line:
        dropped as it arrives (the buffer stays smtp_command_max), one
        "500 line too long" when the LF comes."""
        e, good = self.start(threads="1")
        rss0 = rss_kb(e.proc.pid)
        rng = random.Random(25)
        chunk = bytes(rng.randrange(256) for _ in range(1 << 16)).replace(b"\n", b"?")
        with socket.create_connection((h.HOST, e.port), timeout=SOCK_TIMEOUT_S) as s:
            r = h.Reader(s)
            self.assertEqual(r.reply()[0], 220)
            for _ in range(GARBAGE_NO_LF // len(chunk)):
                s.sendall(chunk)
            rss1 = rss_kb(e.proc.pid)
            s.sendall(b"\r\nNOOP\r\n")
            self.assertEqual(r.reply()[0], 500)
            self.assertEqual(r.reply()[0], 250, "session goes on after the 500")
        acks, gap = good.check(self, GOOD_MAX_GAP_S, GOOD_MIN_ACKS)
        grew = rss1 - rss0
        self.assertLess(grew, RSS_GROWTH_MAX_KB, "RSS grew %d KiB for %d MiB of "
                        "one line" % (grew, GARBAGE_NO_LF >> 20))
        print("64 MiB without LF: RSS %d -> %d KiB; good client: %d 250s, longest "
              "wait %.2fs" % (rss0, rss1, acks, gap))


if __name__ == "__main__":
    unittest.main()
