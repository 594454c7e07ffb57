# SPDX-License-Identifier: MIT
"""Hostile TLS clients against etrnd (core/loop.c's TLS on memory BIOs,
core/tls.c): garbage after STARTTLS and on the implicit-TLS port, a
ClientHello cut in half and left open, a full ClientHello and then silence,
a TLS client that pipelines commands and never reads, and a TLS 1.2
client that asks to renegotiate. Each must cost
only its own connection: a good client (smtplib over STARTTLS, on the same
single engine thread) keeps getting its 250s, etrnd's descriptors come back
to where they were and its RSS stays within a generous bound.

Attackers bind to 127.0.0.3 so that etrnd's sockets to them can be told
apart (ss) from the good client's on 127.0.0.1. Loopback only, bounded in
time and count; every process is stopped by PID (etrnd_harness).
"""

import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as h  # noqa: E402

ATTACKER = "127.0.0.3"
HS_TIMEOUT_S = 2          # tls_handshake_timeout in the stall tests
HS_TIMEOUT_LONG = "60s"   # in the garbage tests: a close is the garbage's doing
CLOSE_SLACK_S = 15.0      # a loaded 2-core machine, sanitizer build
SEND_TIMEOUT_S = 3
CLOSE_TIMEOUT_S = 1
GOOD_GAP_MAX_S = 15.0
GOOD_MIN_ACKS = 10
RSS_GROWTH_MAX_KB = 32 * 1024
# Under AddressSanitizer freed memory sits in a quarantine (256 MiB by
# default) and counts in RSS: every TLS session of the good client grew it
# by ~1 MiB, 43 MiB in the stall test. A 4 MiB quarantine keeps RSS a
# measure of what etrnd holds (no effect on a build without ASan).
ASAN_QUARANTINE = "quarantine_size_mb=4"
FD_SLACK = 4              # the good client's connection, a timer, ...
STALLERS_PER_KIND = 4
FLOOD_BYTES = 10_500_000
FLOOD_ATTACKERS = 2
SEND_STALL_S = 3.0
FLOOD_MAX_S = 30.0
SMALL_RCVBUF = 4096
SHUTDOWN_S = 3


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def etrnd_conns_to(port, peer_ip):
    """etrnd's established sockets on port whose peer is peer_ip."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%d )" % port],
                         stdout=subprocess.PIPE, check=True, timeout=10).stdout.decode()
    return [l for l in out.splitlines() if " %s:" % peer_ip in l]


class TlsPipe:
    """A TLS client on memory BIOs over a raw socket: the test decides
    what reaches the wire and when (or whether) to read."""

    def __init__(self, sock, ctx):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=h.TLS_NAME)
        self.plain = b""

    def client_hello(self):
        """The ClientHello bytes, not sent."""
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.out.read()

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self._recv()
        self.flush()

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("closed during TLS")
        self.inc.write(data)

    def flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def records(self, plaintext):
        """plaintext encrypted, as bytes for the wire."""
        self.obj.write(plaintext)
        return self.out.read()

    def reply(self):
        """One SMTP reply's last line (code, text)."""
        while True:
            lines = self.plain.split(b"\r\n")
            for i, l in enumerate(lines[:-1]):
                if len(l) >= 4 and l[3:4] == b" ":
                    self.plain = b"\r\n".join(lines[i + 1:])
                    return int(l[:3]), l[4:].decode()
            try:
                self.plain += self.obj.read(65536)
            except ssl.SSLWantReadError:
                self._recv()


def clear_to_starttls(e, timeout=30):
    """An attacker socket after EHLO and STARTTLS's 220 (clear text)."""
    s = socket.create_connection((h.HOST, e.port), timeout=timeout,
                                 source_address=(ATTACKER, 0))
    rd = h.Reader(s)
    for cmd, want in ((None, 220), (b"EHLO attacker.test", 250), (b"STARTTLS", 220)):
        if cmd:
            s.sendall(cmd + b"\r\n")
        code, text = rd.reply()
        if code != want:
            raise AssertionError("%s -> %d %s" % (cmd, code, text))
    return s


def tls_port_socket(e, timeout=30):
    return socket.create_connection((h.HOST, e.ports["listen_tls"]), timeout=timeout,
                                    source_address=(ATTACKER, 0))


def wait_closed(sock, within):
    """Read (and drop) until etrnd closes: EOF or reset. The seconds it took,
    or None if it was still open after `within`."""
    t0 = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - t0 < within:
        try:
            if not sock.recv(65536):
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
    return None


GARBAGE = [
    ("random bytes", bytes([0]) + random.Random(11).randbytes(16383)),
    ("clear SMTP", b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@demo.test>\r\n"),
    ("oversized record header", b"\x16\x03\x01\xff\xff" + b"\x01" * 4096),
    ("HTTP request", b"GET / HTTP/1.1\r\nHost: mx.test.invalid\r\n\r\n"),
    ("alert then junk", b"\x15\x03\x03\x00\x02\x02\x28" + b"\xff" * 64),
]


class TlsHostileTest(unittest.TestCase):
    def start(self, **cfg):
        base = dict(threads="1", listen_tls="auto", send_timeout="%ds" % SEND_TIMEOUT_S,
                    close_timeout="%ds" % CLOSE_TIMEOUT_S)
        base.update(cfg)
        asan = os.environ.get("ASAN_OPTIONS", "")
        asan = asan + ":" + ASAN_QUARANTINE if asan else ASAN_QUARANTINE
        e = h.Etrnd.started(self, tls=True, env={"ASAN_OPTIONS": asan}, **base)
        good = h.GoodClient(e.port, tls_context=e.client_tls())
        good.start()
        self.addCleanup(lambda: good.is_alive() and good.stop())
        deadline = time.monotonic() + GOOD_GAP_MAX_S
        while not good.acks and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(good.acks, "the good client got no 250 before the attack: %r"
                        % good.failures)
        return e, good, h.proc_kb(e.proc.pid), nfds(e.proc.pid)

    def assertLogCount(self, e, log_re, count):
        """Exactly count log lines match log_re (waiting a while for them:
        the line may follow the close)."""
        deadline = time.monotonic() + CLOSE_SLACK_S
        while len(re.findall(log_re, e.stderr_text())) < count and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(len(re.findall(log_re, e.stderr_text())), count,
                         "want %d log lines matching %r" % (count, log_re))

    def finish(self, e, good, rss0, fds0, what, log_re, log_count):
        """The good client's bound, then etrnd's descriptors back to where
        they were, its RSS growth bounded, and its log saying why, once per
        attacking connection (log_re, log_count)."""
        acks, gap = good.check(self, GOOD_GAP_MAX_S, GOOD_MIN_ACKS)
        self.assertLogCount(e, log_re, log_count)
        deadline = time.monotonic() + CLOSE_SLACK_S
        while nfds(e.proc.pid) > fds0 + FD_SLACK and time.monotonic() < deadline:
            time.sleep(0.1)
        fds, rss = nfds(e.proc.pid), h.proc_kb(e.proc.pid)
        hwm = h.proc_kb(e.proc.pid, "VmHWM")
        sys.stderr.write("%s: good client %d 250s, longest gap %.2fs; etrnd fds %d -> %d, "
                         "RSS %d -> %d kB (peak %d)\n" % (what, acks, gap, fds0, fds, rss0,
                                                          rss, hwm))
        self.assertLessEqual(fds, fds0 + FD_SLACK, "descriptors not given back")
        self.assertLess(rss - rss0, RSS_GROWTH_MAX_KB, "RSS grew %d kB" % (rss - rss0))
        self.assertEqual(etrnd_conns_to(e.port, ATTACKER), [])
        self.assertTrue(e.alive())

    def test_garbage_after_starttls_and_on_tls_port(self):
        """Each garbage kind, after STARTTLS and as the first bytes on
        listen_tls: the connection is closed well before the handshake
        timeout (60 s here), so by the bad record itself."""
        e, good, rss0, fds0 = self.start(tls_handshake_timeout=HS_TIMEOUT_LONG)
        for name, payload in GARBAGE:
            for where, opener in (("STARTTLS", clear_to_starttls), ("listen_tls", tls_port_socket)):
                with self.subTest(garbage=name, where=where):
                    s = opener(e)
                    try:
                        try:
                            s.sendall(payload)
                        except (ConnectionResetError, BrokenPipeError):
                            pass  # closed already: fine
                        took = wait_closed(s, CLOSE_SLACK_S)
                    finally:
                        s.close()
                    self.assertIsNotNone(took, "%s after %s: still open after %.0fs"
                                         % (name, where, CLOSE_SLACK_S))
        # After the handshake: a record replayed (its MAC no longer fits).
        for where, opener in (("STARTTLS", clear_to_starttls), ("listen_tls", tls_port_socket)):
            with self.subTest(garbage="replayed record", where=where):
                s = opener(e)
                try:
                    tp = TlsPipe(s, e.client_tls())
                    tp.handshake()
                    if where == "listen_tls":
                        self.assertEqual(tp.reply()[0], 220, "greeting inside TLS")
                    s.sendall(tp.records(b"EHLO replay.test\r\n"))
                    self.assertEqual(tp.reply()[0], 250)
                    rec = tp.records(b"NOOP\r\n")
                    s.sendall(rec)
                    self.assertEqual(tp.reply()[0], 250)
                    s.sendall(rec)
                    took = wait_closed(s, CLOSE_SLACK_S)
                finally:
                    s.close()
                self.assertIsNotNone(took, "replayed record on %s: still open" % where)
        self.assertLogCount(e, r"127\.0\.0\.3: TLS error: ", 2)
        self.finish(e, good, rss0, fds0, "garbage",
                    r"127\.0\.0\.3: TLS handshake failed: ", 2 * len(GARBAGE))

    def test_stalled_handshakes_cut_after_timeout(self):
        """Half a ClientHello left open, and a whole one followed by
        silence, after STARTTLS and on listen_tls: each is closed after
        tls_handshake_timeout (not before; idle_timeout is 300 s)."""
        e, good, rss0, fds0 = self.start(tls_handshake_timeout="%ds" % HS_TIMEOUT_S)
        results, threads = [], []

        def one(kind, where):
            t0 = time.monotonic()
            s = clear_to_starttls(e) if where == "STARTTLS" else tls_port_socket(e)
            try:
                hello = TlsPipe(s, e.client_tls()).client_hello()
                s.sendall(hello[:len(hello) // 2] if kind == "half" else hello)
                took = wait_closed(s, HS_TIMEOUT_S + CLOSE_SLACK_S)
                results.append((kind, where, time.monotonic() - t0 if took else None))
            except Exception as ex:  # noqa: BLE001 - reported below
                results.append((kind, where, repr(ex)))
            finally:
                s.close()

        for kind in ("half", "whole"):
            for where in ("STARTTLS", "listen_tls"):
                for _ in range(STALLERS_PER_KIND):
                    t = threading.Thread(target=one, args=(kind, where), daemon=True)
                    t.start()
                    threads.append(t)
        h.join_threads(threads, HS_TIMEOUT_S + CLOSE_SLACK_S + 30, "staller")
        sys.stderr.write("stalled handshakes closed after: %s\n" % ", ".join(
            "%s/%s %s" % (k, w, "%.2fs" % t if isinstance(t, float) else t)
            for k, w, t in sorted(results, key=str)))
        self.assertEqual(len(results), len(threads))
        for kind, where, took in results:
            self.assertIsInstance(took, float, "%s hello on %s: %s" % (kind, where, took))
            self.assertGreaterEqual(took, HS_TIMEOUT_S - 0.1, "cut before the timeout")
            self.assertLess(took, HS_TIMEOUT_S + CLOSE_SLACK_S)
        self.finish(e, good, rss0, fds0, "stalled handshakes",
                    r"127\.0\.0\.3: TLS handshake not done within tls_handshake_timeout",
                    len(threads))

    def test_tls12_client_renegotiation_refused(self):
        """A TLS 1.2 client asks to renegotiate (openssl s_client's "R"; a
        handshake's CPU on demand, CVE-2011-1473): refused, as Postfix does;
        the session does not go on (its NOOP gets no 250), it costs only
        that connection, and the log says why."""
        e, good, rss0, fds0 = self.start()
        p = subprocess.Popen(["openssl", "s_client", "-connect", "%s:%d" % (h.HOST, e.port),
                              "-starttls", "smtp", "-name", "reneg.test", "-tls1_2"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        try:
            for line, pause in ((b"EHLO reneg.test\n", 1.0), (b"R\n", 2.0), (b"NOOP\n", 1.0)):
                try:
                    p.stdin.write(line)
                    p.stdin.flush()
                except BrokenPipeError:
                    break   # s_client left: etrnd closed the connection
                time.sleep(pause)
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
            out = p.stdout.read().decode("utf-8", "replace")
            p.wait(timeout=CLOSE_SLACK_S)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=CLOSE_SLACK_S)
            p.stdout.close()
        self.assertIn("250 SMTPUTF8", out, "EHLO inside TLS 1.2 first")
        self.assertIn("RENEGOTIATING", out, "s_client did not ask")
        self.assertNotIn("250 2.0.0 Ok", out, "the session went on after renegotiating")
        self.finish(e, good, rss0, fds0, "renegotiation",
                    r"127\.0\.0\.1: TLS error: ", 1)

    def test_sigterm_with_tls_clients_stuck(self):
        """SIGTERM while half handshakes wait (tls_handshake_timeout 60 s)
        and a TLS client that never reads holds unsent replies
        (send_timeout 60 s): etrnd still exits 0, after shutdown_timeout
        (3 s) and within a bound, logging that it cut them."""
        e = h.Etrnd.started(self, tls=True, threads="1", listen_tls="auto",
                            tls_handshake_timeout=HS_TIMEOUT_LONG, send_timeout="60s",
                            shutdown_timeout="%ds" % SHUTDOWN_S)
        socks = []
        for opener in (clear_to_starttls, tls_port_socket) * 2:
            s = opener(e)
            socks.append(s)
            hello = TlsPipe(s, e.client_tls()).client_hello()
            s.sendall(hello[:len(hello) // 2])
        socks.append(self.flood(e, []))
        try:
            t0 = time.monotonic()
            e.signal(signal.SIGTERM)
            rc = e.wait(timeout=SHUTDOWN_S + CLOSE_SLACK_S)
            took = time.monotonic() - t0
        finally:
            for s in socks:
                s.close()
        sys.stderr.write("SIGTERM with 4 stalled handshakes and a non-reading TLS client: "
                         "exit %d after %.2fs\n" % (rc, took))
        self.assertEqual(rc, 0, e.stderr_text()[-3000:])
        self.assertIn("shutdown_timeout passed", e.stderr_text())

    def flood(self, e, sent):
        """A TLS client that never reads: STARTTLS, handshake, EHLO, then
        encrypted pipelined HELP/NOOP until etrnd stops taking it."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
        s.bind((ATTACKER, 0))
        s.settimeout(30)
        s.connect((h.HOST, e.port))
        rd = h.Reader(s)
        for cmd, want in ((None, 220), (b"EHLO flood.test", 250), (b"STARTTLS", 220)):
            if cmd:
                s.sendall(cmd + b"\r\n")
            self.assertEqual(rd.reply()[0], want, cmd)
        tp = TlsPipe(s, e.client_tls())
        tp.handshake()
        s.sendall(tp.records(b"EHLO flood.test\r\n"))
        self.assertEqual(tp.reply()[0], 250)
        # Each chunk encrypted afresh (a record's sequence number is in its
        # MAC: a resent record would be garbage, a different test).
        plain = b"HELP\r\nNOOP\r\n" * 2048
        s.settimeout(SEND_STALL_S)
        total, end, pending = 0, time.monotonic() + FLOOD_MAX_S, b""
        try:
            while total < FLOOD_BYTES and time.monotonic() < end:
                pending = pending or tp.records(plain)
                n = s.send(pending)   # a partial send keeps the rest in order
                total += n
                pending = pending[n:]
        except OSError:
            pass  # socket.timeout: etrnd stopped reading; or it cut us off
        sent.append(total)
        return s

    def test_tls_client_never_reads(self):
        """Pipelined HELP/NOOP inside TLS, never read: etrnd stops reading
        (memory bounded), then send_timeout and close_timeout end it."""
        e, good, rss0, fds0 = self.start()
        sent, socks = [], []
        threads = [threading.Thread(target=lambda: socks.append(self.flood(e, sent)),
                                    daemon=True) for _ in range(FLOOD_ATTACKERS)]
        for t in threads:
            t.start()
        peak = rss0
        while any(t.is_alive() for t in threads):
            peak = max(peak, h.proc_kb(e.proc.pid))
            time.sleep(0.1)
        self.assertEqual(len(socks), FLOOD_ATTACKERS, "an attacker failed to set up")
        deadline = time.monotonic() + SEND_TIMEOUT_S + CLOSE_TIMEOUT_S + CLOSE_SLACK_S
        while etrnd_conns_to(e.port, ATTACKER) and time.monotonic() < deadline:
            peak = max(peak, h.proc_kb(e.proc.pid))
            time.sleep(0.2)
        left = etrnd_conns_to(e.port, ATTACKER)
        for s in socks:
            s.close()
        sys.stderr.write("never reads: sent %s bytes; etrnd RSS %d -> peak %d kB\n"
                         % (sent, rss0, peak))
        self.assertEqual(left, [], "etrnd kept the non-reading TLS clients past "
                         "send_timeout + close_timeout")
        self.assertLess(peak - rss0, RSS_GROWTH_MAX_KB, "RSS grew with the input")
        self.finish(e, good, rss0, fds0, "never reads",
                    r"timeout from \[127\.0\.0\.3\]", FLOOD_ATTACKERS)


if __name__ == "__main__":
    unittest.main()
