# SPDX-License-Identifier: MIT
"""A drain to a customer server that stops reading (core/loop.c
send_timeout and close deadline on an outbound connection): the server
greets, takes EHLO, MAIL, RCPT and DATA, then never reads the body. The
drain connection is timed out (send_timeout: its send makes no progress),
its last send never completes, and close_timeout cuts it off: the mail
stays held, the drain ends and says so, and a good session runs all along.
Before, the drain waited out the 10-minute final-dot timeout (the body sat
in a send nobody read) and then hung for good on the close. Loopback only;
every process is stopped by PID."""

import os
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as h  # noqa: E402
from test_hostile import GoodSession  # noqa: E402
from test_redis import Redis, etrnctl  # noqa: E402

DOMAIN = "stall.test"
BODY_BYTES = 16 << 20     # far more than the socket buffers take
DRAIN_END_WAIT_S = 60     # send_timeout 2s + close_timeout 1s, loaded


class StallingServer(threading.Thread):
    """Accepts, greets, answers up to DATA (354), then never reads again.
    Keeps every accepted socket open until stop()."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.lis = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lis.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lis.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.lis.bind((h.HOST, port))
        self.lis.listen(8)
        self.lis.settimeout(0.5)
        self.stop_ev = threading.Event()
        self.socks = []
        self.stalled = threading.Event()

    def _serve(self, s):
        s.settimeout(60)
        f = s.makefile("rb")
        s.sendall(b"220 stall.customer.test ESMTP\r\n")
        for line in f:
            cmd = line[:4].upper()
            if cmd in (b"EHLO", b"HELO"):
                s.sendall(b"250 stall.customer.test\r\n")
            elif cmd in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                s.sendall(b"250 2.0.0 Ok\r\n")
            elif cmd == b"DATA":
                s.sendall(b"354 go ahead\r\n")
                self.stalled.set()
                return  # and never read again
            else:
                s.sendall(b"221 2.0.0 Bye\r\n")
                return

    def run(self):
        while not self.stop_ev.is_set():
            try:
                s, _ = self.lis.accept()
            except socket.timeout:
                continue
            self.socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def stop(self):
        self.stop_ev.set()
        self.join(5)
        for s in self.socks:
            s.close()
        self.lis.close()


class DrainStalledTest(unittest.TestCase):
    def test_customer_stops_reading(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-stall-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        redis = Redis(tmp).start()
        self.addCleanup(redis.stop)
        cport = h.free_port()
        rc, _, err = etrnctl(redis, "domain", "add", DOMAIN, "--dest",
                             "127.0.0.1:%d" % cport, "--etrn-from", "127.0.0.0/8")
        self.assertEqual(rc, 0, err)
        cust = StallingServer(cport)
        cust.start()
        self.addCleanup(cust.stop)
        e = h.Etrnd(redis=redis.url(), threads="1", drain_connections="1",
                    send_timeout="2s", close_timeout="1s",
                    message_size_limit="40M")
        self.addCleanup(e.cleanup)
        e.start()
        with e.connect(timeout=30) as s:
            rd = h.Reader(s)
            for cmd, want in ((None, 220), (b"EHLO big.sender.test", 250),
                              (b"MAIL FROM:<big@sender.test>", 250),
                              (b"RCPT TO:<u@%s>" % DOMAIN.encode(), 250),
                              (b"DATA", 354)):
                if cmd:
                    s.sendall(cmd + b"\r\n")
                self.assertEqual(rd.reply()[0], want, cmd)
            line = b"x" * 998 + b"\r\n"
            s.sendall(b"Subject: big\r\n\r\n" + line * (BODY_BYTES // len(line)) + b".\r\n")
            self.assertEqual(rd.reply()[0], 250)
            good = GoodSession(e, pause=0.2)
            good.start()
            since = time.monotonic()
            s.sendall(b"ETRN %s\r\n" % DOMAIN.encode())
            self.assertIn(rd.reply()[0], (250, 251, 252, 253))
            s.sendall(b"QUIT\r\n")
        self.assertTrue(cust.stalled.wait(60), "the drain never reached DATA")
        end = "drain %s (shard 0): 0 sent, 1 deferred" % DOMAIN
        deadline = time.monotonic() + DRAIN_END_WAIT_S
        while end not in e.stderr_text() and time.monotonic() < deadline:
            time.sleep(1)
        log = e.stderr_text()
        good.finish(self, since)
        self.assertIn(end, log, "the drain did not end within %ds" % DRAIN_END_WAIT_S)
        self.assertIn("close_timeout; connection cut off", log)
        e.stop()
        big = [r for r in e.records() if r["sender"] == "big@sender.test"]
        self.assertEqual(len(big), 1)  # held: "1 deferred" above
        self.assertNotIn("AddressSanitizer", e.stderr_text())


if __name__ == "__main__":
    unittest.main()
