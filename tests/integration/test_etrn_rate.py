# SPDX-License-Identifier: MIT
"""etrn_rate_limit is one limit per client address for the whole node, not
one per engine thread: many connections from 127.0.0.1 to an etrnd with two
engine threads (SO_REUSEPORT spreads them over both) get no more than
etrn_rate_limit ETRNs accepted in total. Redis provisions the domain; every
process is stopped by PID. Expected to fail until proto/drain.c's rate_ok
calls core/addrlimit (each thread counted separately before)."""

import smtplib
import tempfile
import time
import unittest

import etrnd_harness as h
from test_redis import Redis, etrnctl

LIMIT = 5          # etrn_rate_limit: one token back every 12 s
CONNS = 40         # all on one thread of two: odds 2**-39
ROUNDS = 3         # ETRNs per connection
PERIOD_S = 60.0    # etrn_rate_limit counts per minute


class EtrnRateTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-etrn-rate-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        self.redis = Redis(tmp).start()
        self.addCleanup(self.redis.stop)
        rc, out, err = etrnctl(self.redis, "domain", "add", "a.test", "--dest",
                               "127.0.0.1:%d" % h.free_port(), "--etrn-from", "127.0.0.0/8")
        self.assertEqual(rc, 0, err)

    def connect(self, e):
        s = smtplib.SMTP(h.HOST, e.port, timeout=10)
        self.addCleanup(s.close)
        s.ehlo("customer.test")
        return s

    def test_limit_is_node_wide(self):
        e = h.Etrnd(redis=self.redis.url(), relay_domains="static.test", threads="2",
                    etrn_rate_limit=str(LIMIT))
        self.addCleanup(e.cleanup)
        e.start()
        # Every connection open at once, so they stay spread over both
        # engine threads while the ETRNs go round them.
        conns = [self.connect(e) for _ in range(CONNS)]
        codes = []
        t0 = time.monotonic()
        for _ in range(ROUNDS):
            for s in conns:
                codes.append(s.docmd("ETRN", "a.test")[0])
        elapsed = time.monotonic() - t0
        for s in conns:
            s.quit()
        self.assertEqual(set(codes) - {251, 458}, set(), codes)
        accepted = codes.count(251)
        # A token bucket gives one back every PERIOD_S / LIMIT seconds: allow
        # for a slow machine, without letting a per-thread count (2 * LIMIT
        # at once) through.
        refilled = int(elapsed * LIMIT / PERIOD_S)
        print("%d of %d ETRNs accepted in %.2f s (limit %d per minute)"
              % (accepted, len(codes), elapsed, LIMIT))
        self.assertGreaterEqual(accepted, LIMIT, codes)
        self.assertLessEqual(accepted, LIMIT + refilled,
                             "%d ETRNs accepted from one address with etrn_rate_limit = %d "
                             "and %d engine threads" % (accepted, LIMIT, 2))


if __name__ == "__main__":
    unittest.main()
