# SPDX-License-Identifier: MIT
"""SIGTERM in the middle of drains (proto/drain_conn.c): connections are
stopped while they connect, read the spool or wait for a read slot. The
daemon must exit 0 with no sanitizer report each time. Before the drain
connection had a CONNECTING state, a connection still connecting at SIGTERM
was handed its job as if it were the connection (UBSan: misaligned access
in smtp_client.c, exit 1). Loopback only; every process is stopped by PID."""

import smtplib
import tempfile
import time
import unittest

import etrnd_harness as h
from customer_server import CustomerServer
from test_etrn import hold
from test_redis import Redis, etrnctl

DOMAINS = 40
MESSAGES = 40          # per domain
CONNECTIONS = "16"     # drain_connections: many connect at once
ROUNDS = 10


class DrainShutdownTest(unittest.TestCase):
    def test_sigterm_mid_drain(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-sigterm-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        redis = Redis(tmp).start()
        self.addCleanup(redis.stop)
        cport = h.free_port()
        doms = ["t%d.test" % i for i in range(DOMAINS)]
        for d in doms:
            rc, out, err = etrnctl(redis, "domain", "add", d, "--dest", "127.0.0.1:%d" % cport,
                                   "--etrn-from", "127.0.0.0/8")
            self.assertEqual(rc, 0, err)
        c = CustomerServer(cport).start()
        self.addCleanup(c.stop)
        e = h.Etrnd(redis=redis.url(), relay_domains="static.test", threads="2",
                    etrn_rate_limit="1000", drain_connections=CONNECTIONS)
        self.addCleanup(e.cleanup)
        e.start()
        for d in doms:
            hold(e, d, MESSAGES, d)
        for r in range(ROUNDS):
            with smtplib_session(e) as s:
                for d in doms:
                    code, msg = s.docmd("ETRN", d)
                    self.assertIn(code, (251, 252, 253), msg)
            time.sleep(0.005 * (r % 8))  # stop at different points of the drains
            e.stop()  # SIGTERM; asserts exit status 0
            log = e.stderr_text()
            self.assertNotIn("AddressSanitizer", log)
            self.assertNotIn("runtime error", log)
            e.start()


def smtplib_session(e):
    s = smtplib.SMTP(h.HOST, e.port, timeout=30)
    s.ehlo("customer.test")
    return s


if __name__ == "__main__":
    unittest.main()
