# SPDX-License-Identifier: MIT
"""kill -9 during a drain, 20 times with random delays (issue 10 item 12).

Mail for one customer domain is held, then released with ETRN to a customer
server (aiosmtpd, customer_server.py) that records every message it accepts;
etrnd is killed with SIGKILL at a random moment of the drain, restarted on
the same spool, and ETRN is sent again, 20 times. At the end every held
message must have arrived (lost = 0), and duplicates are counted per crash:
a message goes out twice only when the customer accepted it but its DONE was
not durable at the kill, and the drain holds each final dot while
drain_done_window delivered messages of its connection have DONEs in flight,
so a crash duplicates at most that many per open drain connection (threads x
drain_connections x drain_done_window; this test runs with 1).
"""

import random
import signal
import tempfile
import time
import unittest
from collections import Counter, defaultdict

import etrnd_harness as h
from customer_server import CustomerServer
from test_etrn import etrn, hold
from test_redis import Redis, etrnctl

CRASHES = 20
MESSAGES = 4000
THREADS = 2
CONNECTIONS = 4                  # drain_connections
WINDOW = 1                       # drain_done_window: the strict bound
DELAY_MIN_S, DELAY_MAX_S = 0.05, 0.4
CUSTOMER_DELAY_S = 0.0           # the customer as fast as it goes: many messages per fsync
FINISH_S = 120                   # the last, undisturbed drain (loaded machine)


class CrashDrainTest(unittest.TestCase):
    def test_kill9_during_drain_20_times(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-crashdrain-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        redis = Redis(tmp).start()
        self.addCleanup(redis.stop)
        cport = h.free_port()
        rc, out, err = etrnctl(redis, "domain", "add", "a.test", "--dest",
                               "127.0.0.1:%d" % cport, "--etrn-from", "127.0.0.0/8")
        self.assertEqual(rc, 0, err)
        e = h.Etrnd(redis=redis.url(), relay_domains="static.test", threads=str(THREADS),
                    drain_connections=str(CONNECTIONS), etrn_rate_limit="1000",
                    drain_done_window=str(WINDOW))
        self.addCleanup(e.cleanup)
        e.start()
        ids = hold(e, "a.test", MESSAGES, "crash")   # each got its 250
        c = CustomerServer(cport, delay=CUSTOMER_DELAY_S).start()
        self.addCleanup(c.stop)
        rng = random.Random(2645)
        cuts = []                 # deliveries recorded at each kill
        during = 0                # kills that hit a running drain
        for k in range(CRASHES):
            if k:
                e.start()
            code = etrn(e, "a.test")[0]
            self.assertIn(code, (251, 253), "ETRN answered %d" % code)
            time.sleep(rng.uniform(DELAY_MIN_S, DELAY_MAX_S))
            during += code == 253 and "sent," not in e.stderr_text()
            e.signal(signal.SIGKILL)
            self.assertEqual(e.wait(), -signal.SIGKILL)
            # A DATA the customer was still answering belongs to this
            # crash: count once the customer saw every connection go
            # (aiosmtpd then cancels a DATA handler still running).
            self.assertTrue(c.recorder.wait_closed(h.LOG_WAIT_S), "the customer kept a connection")
            cuts.append(c.recorder.count())
        # Undisturbed: ETRN until nothing is left.
        e.start()
        deadline = time.monotonic() + FINISH_S
        while etrn(e, "a.test")[0] != 251:
            self.assertLess(time.monotonic(), deadline, "mail still held")
            time.sleep(0.3)
        e.stop()
        got = c.recorder.message_ids()
        count = Counter(got)
        lost = [m for m in ids if m not in count]
        self.assertEqual(lost, [], "%d acknowledged message(s) lost" % len(lost))
        self.assertEqual(set(count), set(ids), "only the held mail arrived")
        # A repeat is charged to the crash after the delivery it repeats.
        per_crash = defaultdict(int)
        last = {}
        for i, mid in enumerate(got):
            if mid in last:
                crash = next((k for k, n in enumerate(cuts) if last[mid] < n), CRASHES)
                per_crash[crash] += 1
            last[mid] = i
        dups = sum(n - 1 for n in count.values())
        worst = max(per_crash.values(), default=0)
        bound = THREADS * CONNECTIONS * WINDOW
        print("kill -9 during a drain: %d crashes (%d mid-drain), %d acknowledged, "
              "%d delivered, 0 lost, %d duplicated, worst %d in one crash (bound %d)"
              % (CRASHES, during, len(ids), len(set(got)), dups, worst, bound))
        self.assertLessEqual(worst, bound, "duplicates per crash: %r" % dict(per_crash))


if __name__ == "__main__":
    unittest.main()
