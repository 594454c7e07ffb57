# SPDX-License-Identifier: MIT
"""The forced close at shutdown_timeout (core/loop.c's timer): on SIGTERM a
session with no transaction open gets 421 and is closed at once, but one in
the middle of a transaction may finish it; a client that neither finishes
nor leaves is closed when shutdown_timeout has passed, said in the log, and
etrnd still exits 0. The only time bound checked is a lower one (etrnd did
not give up on the client before shutdown_timeout), which a loaded machine
cannot break. Loopback only; etrnd stopped by PID, its temp dir removed."""

import signal
import socket
import time
import unittest

import etrnd_harness as h

SHUTDOWN_S = 1.0       # shutdown_timeout: short, so the test is
EXIT_WAIT_S = 60.0     # a guard against a hang, not a bound on speed
RECV_MAX = 4096


def read_until(sock, complete):
    """Bytes until complete(data) says so, or EOF."""
    data = b""
    while not complete(data):
        chunk = sock.recv(RECV_MAX)
        if not chunk:
            break
        data += chunk
    return data


def reply_complete(data):
    lines = data.split(b"\r\n")
    return len(lines) > 1 and len(lines[-2]) >= 4 and lines[-2][3:4] == b" "


def reply(sock):
    """One SMTP reply (all its lines) as bytes; b"" at EOF."""
    return read_until(sock, reply_complete)


def until_eof(sock):
    return read_until(sock, lambda data: False)


def command(sock, line, want):
    sock.sendall(line + b"\r\n")
    got = reply(sock)
    if not got.startswith(want):
        raise AssertionError("%r: want %r, got %r" % (line, want, got))
    return got


class ShutdownDeadlineTest(unittest.TestCase):
    def setUp(self):
        # idle_timeout far beyond shutdown_timeout: only the deadline can
        # end the stuck session.
        self.e = h.Etrnd(threads="1", shutdown_timeout="%gs" % SHUTDOWN_S,
                         idle_timeout="300s")
        self.addCleanup(self.e.cleanup)
        self.e.start()

    def connect(self):
        s = socket.create_connection((h.HOST, self.e.port), timeout=EXIT_WAIT_S)
        self.addCleanup(s.close)
        self.assertTrue(reply(s).startswith(b"220 "))
        command(s, b"EHLO client.test", b"250")
        return s

    def test_stuck_transaction_closed_at_deadline(self):
        idle = self.connect()
        stuck = self.connect()
        command(stuck, b"MAIL FROM:<s@example.org>", b"250")
        command(stuck, b"RCPT TO:<u@demo.test>", b"250")
        mark = self.e.log_mark()
        t0 = time.monotonic()
        self.e.signal(signal.SIGTERM)
        # The idle session is told and closed at once (RFC 5321 3.8).
        got = reply(idle)
        self.assertTrue(got.startswith(b"421 4.3.2 "), got)
        self.assertEqual(reply(idle), b"")
        # The one in a transaction is kept until the deadline, then cut
        # off: EOF, no reply, and the log says why.
        self.assertEqual(reply(stuck), b"")
        self.assertGreaterEqual(time.monotonic() - t0, SHUTDOWN_S)
        rc = self.e.wait(timeout=EXIT_WAIT_S)
        self.assertEqual(rc, 0, self.e.stderr_text())
        self.assertRegex(self.e.stderr_text()[mark:],
                         r"warning: 127\.0\.0\.1: shutdown_timeout passed; closing\n")

    def test_transaction_finished_before_deadline(self):
        s = self.connect()
        command(s, b"MAIL FROM:<s@example.org>", b"250")
        command(s, b"RCPT TO:<u@demo.test>", b"250")
        self.e.signal(signal.SIGTERM)
        # The listener is closed first; then the session may still finish.
        h.wait_for("the listener closed", lambda: not self._listening(), within=EXIT_WAIT_S)
        command(s, b"DATA", b"354")
        s.sendall(b"Subject: late\r\n\r\nfinished after SIGTERM\r\n.\r\n")
        # Idle again: the session leaves with 421 at once, after the 250.
        self.assertRegex(until_eof(s), rb"^250 [^\r]*queued as [0-9A-F]{14}\r\n421 4\.3\.2 ")
        self.assertEqual(self.e.wait(timeout=EXIT_WAIT_S), 0, self.e.stderr_text())
        self.assertNotIn("shutdown_timeout passed", self.e.stderr_text())
        self.e.proc = None
        self.e.start()
        self.assertEqual(len(h.msg_records(self.e.spool_dir, self.e.spool_tool)), 1)

    def _listening(self):
        try:
            with socket.create_connection((h.HOST, self.e.port), timeout=1):
                return True
        except OSError:
            return False


if __name__ == "__main__":
    unittest.main()
