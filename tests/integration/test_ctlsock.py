# SPDX-License-Identifier: MIT
"""The operator's control socket against local clients that misbehave.

A client that sends one byte a second, or twenty that connect and say
nothing, must not delay `etrnctl status` from another client beyond the
whole-request deadline (core/ctlsock.h, 2 s); the trickling client is closed
at that deadline however it trickles; and the socket file has mode 0600
from the first moment it exists (watched from before etrnd starts, with a
umask of 0 that would leave it 0777 between bind and a later chmod). An
SMTP session runs alongside and keeps getting its 250s. Loopback, a
private directory and a private redis-server only; both are stopped by PID.
"""

import os
import shutil
import socket
import smtplib
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as H  # noqa: E402
from test_redis import Redis  # noqa: E402

DEADLINE = 2.0      # CTLSOCK_REQUEST_TIMEOUT_MS
# A loaded 2-core machine may be late by seconds: bounds here are the
# deadline plus a generous slack, still far below what the misbehaving
# clients would cost if let (TRICKLE_FOR; twenty idle clients served one
# after another: 20 x DEADLINE).
SLACK = 10.0
TRICKLE_FOR = 60.0  # the slow client would go on this long if let


class CtlCase(unittest.TestCase):
    def start(self):
        # etrnctl wants the config's redis line; a real private Redis.
        tmp = tempfile.mkdtemp(prefix="etrnd-ctl-")
        self.addCleanup(shutil.rmtree, tmp, True)
        redis = Redis(tmp).start()
        self.addCleanup(redis.stop)
        e = H.Etrnd(threads="2", redis=redis.url())
        self.sock_path = os.path.join(e.dir, "ctl.sock")
        e.cfg["control_socket"] = self.sock_path
        self.addCleanup(e.cleanup)
        self.e = e
        return e

    def status(self, limit=30):
        t0 = time.monotonic()
        p = subprocess.run([H.env_path("ETRNCTL"), "-c", self.e.conf_path, "status"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=limit)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"shard ", p.stdout)
        return time.monotonic() - t0

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.connect(self.sock_path)
        return s

    def smtp_ok(self, n):
        """A well-behaved SMTP client: n messages, each a 250."""
        with smtplib.SMTP(H.HOST, self.e.port, timeout=15) as s:
            s.ehlo("client.example.org")
            for i in range(n):
                code, _ = s.docmd("MAIL FROM:<s@example.org>")
                self.assertEqual(code, 250)
                self.assertEqual(s.docmd("RCPT TO:<u%d@demo.test>" % i)[0], 250)
                self.assertEqual(s.data(b"Subject: x\r\n\r\nx\r\n")[0], 250)


class TestCtlSock(CtlCase):
    def test_mode_0600_from_the_first_moment(self):
        e = self.start()
        modes, stop = set(), threading.Event()

        def watch():
            while not stop.is_set():
                try:
                    modes.add(stat.S_IMODE(os.lstat(self.sock_path).st_mode))
                except FileNotFoundError:
                    pass

        w = threading.Thread(target=watch)
        w.start()
        try:
            old = os.umask(0)
            try:
                e.start()
            finally:
                os.umask(old)
            # Started: the socket has its final mode; the watcher stops
            # once it has looked at it (checked below), not after a pause.
            H.wait_for("the watcher saw the socket", lambda: modes)
        finally:
            stop.set()
            w.join()
        self.assertEqual(stat.S_IMODE(os.stat(self.sock_path).st_mode), 0o600)
        self.assertEqual(modes, {0o600}, "modes seen while etrnd started: %s"
                         % sorted(oct(m) for m in modes))

    def test_trickling_client_delays_no_one_and_is_closed(self):
        self.start().start()
        slow = self.connect()
        closed_after = []
        trickled = [0]

        def trickle():
            t0 = time.monotonic()
            while time.monotonic() - t0 < TRICKLE_FOR:
                try:
                    slow.send(b"s")
                    trickled[0] += 1
                except OSError:
                    break
                slow.settimeout(1.0)
                try:
                    if slow.recv(100) == b"":
                        break
                except socket.timeout:
                    continue
                except OSError:
                    break
            closed_after.append(time.monotonic() - t0)

        t = threading.Thread(target=trickle)
        t.start()
        try:
            H.wait_for("the slow client trickling", lambda: trickled[0] > 0 or closed_after)
            took = self.status()
            self.assertLess(took, SLACK, "etrnctl status took %.1f s beside a client "
                            "sending a byte a second" % took)
            self.smtp_ok(3)
        finally:
            t.join()
        self.assertLess(closed_after[0], DEADLINE + SLACK,
                        "the trickling client was served %.1f s" % closed_after[0])
        self.assertGreaterEqual(closed_after[0], DEADLINE - 0.5)

    def test_idle_clients_delay_status_at_most_the_deadline(self):
        self.start().start()
        idle = [self.connect() for _ in range(20)]
        took = self.status()
        self.assertLess(took, DEADLINE + SLACK, "status took %.1f s beside %d idle "
                        "clients" % (took, len(idle)))
        self.smtp_ok(2)
        # And they were closed at their deadline, not kept.
        for s in idle:
            s.settimeout(DEADLINE + SLACK)
            self.assertEqual(s.recv(10), b"")


if __name__ == "__main__":
    unittest.main(verbosity=2)
