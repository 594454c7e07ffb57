# SPDX-License-Identifier: MIT
"""Issue 17 point 6, fresh first, end to end: 200 customer domains routed to
one customer server (aiosmtpd, see customer_server.py) are released at once
by one ETRN #queue (RFC 1985 section 3) sent with Python's smtplib. Every
domain's first message reaches the server before any domain's last one: the
server's own record, in arrival order, is the evidence (no time bound).

One engine thread: the order is a promise per thread (each shard's drains
share that thread's connections), and with two a domain's mail would be
split between shards at random. Two connections to the destination, so
that the order the connections choose is what the server sees. Loopback
only; every process is stopped by PID."""

import os
import smtplib
import tempfile
import unittest
from collections import Counter

import etrnd_harness as h
from customer_server import CustomerServer
from test_redis import Redis, etrnctl

DOMAINS = 200
PER_DOMAIN = 4
DEST_CONNS = 2


def hold_all(e, doms, per):
    """per messages to u@d for each d, over one connection per 100; their
    Message-IDs by domain."""
    ids = {d: [] for d in doms}
    s = None
    k = 0
    for i in range(per):
        for d in doms:
            if k % 100 == 0:
                if s:
                    s.quit()
                s = smtplib.SMTP(h.HOST, e.port, timeout=30)
                s.ehlo("sender.test")
            k += 1
            mid = "<%s-%d@sender.test>" % (d, i)
            body = ("From: s@example.org\r\nTo: u@%s\r\nSubject: %d\r\nMessage-ID: %s\r\n\r\n"
                    "held for %s\r\n" % (d, i, mid, d)).encode()
            s.sendmail("s@example.org", ["u@%s" % d], body)
            ids[d].append(mid)
    if s:
        s.quit()
    return ids


class FreshFirstTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-fresh-")
        self.addCleanup(h.remove_tmp, self.tmp)  # runs last: after Redis stops
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)
        self.cport = h.free_port()

    def test_every_domain_first_before_any_finishes(self):
        doms = ["f%03d.test" % i for i in range(DOMAINS)]
        csv = os.path.join(self.tmp, "doms.csv")
        with open(csv, "w") as f:
            f.write("domain,queue,dest,etrn_from\n")
            for d in doms:
                f.write("%s,burst,127.0.0.1:%d,127.0.0.0/8\n" % (d, self.cport))
        rc, out, err = etrnctl(self.redis, "import", csv)
        self.assertEqual(rc, 0, err)
        e = h.Etrnd(redis=self.redis.url(), relay_domains="static.test", threads="1",
                    control_socket="auto",
                    drain_destination_concurrency=str(DEST_CONNS))
        self.addCleanup(e.cleanup)
        e.start()
        ids = hold_all(e, doms, PER_DOMAIN)
        c = CustomerServer(self.cport).start()
        self.addCleanup(c.stop)
        total = DOMAINS * PER_DOMAIN
        with smtplib.SMTP(h.HOST, e.port, timeout=30) as s:
            s.ehlo("customer.test")
            code, msg = s.docmd("ETRN", "#burst")
        self.assertEqual((code, msg.decode()),
                         (253, "2.0.0 OK, %d pending messages for node #burst started" % total))
        self.assertTrue(c.wait_count(total, 120), "got %d of %d" % (c.recorder.count(), total))
        e.wait_drains_ended()
        got = c.recorder.message_ids()
        self.assertEqual(sorted(got), sorted(m for d in doms for m in ids[d]),
                         "every message once")
        # Arrival order: index of each domain's first and last message.
        first, last = {}, {}
        for i, rec in enumerate(c.recorder.messages):
            d = rec[0][0].split("@")[1]
            first.setdefault(d, i)
            last[d] = i
        self.assertEqual(Counter(len(r[0]) for r in c.recorder.messages), Counter({1: total}))
        latest_first = max(first.items(), key=lambda kv: kv[1])
        earliest_last = min(last.items(), key=lambda kv: kv[1])
        self.assertLess(latest_first[1], earliest_last[1],
                        "%s finished (its last message arrived %d-th) before %s's first "
                        "arrived (%d-th)" % (earliest_last[0], earliest_last[1] + 1,
                                             latest_first[0], latest_first[1] + 1))
        print("last first message: %d-th of %d; first last message: %d-th"
              % (latest_first[1] + 1, total, earliest_last[1] + 1))


if __name__ == "__main__":
    unittest.main()
