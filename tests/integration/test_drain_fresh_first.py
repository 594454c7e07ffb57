# SPDX-License-Identifier: MIT
"""Issue 17 point 6, fresh first, end to end: 200 customer domains routed to
one customer server (aiosmtpd, see customer_server.py) are released at once
by one ETRN #queue (RFC 1985 section 3) sent with Python's smtplib. Every
domain's first message reaches the server before any domain's last one: the
server's own record, in arrival order, is the evidence (no time bound).
Twice: to aiosmtpd, which offers no PIPELINING, and to a raw customer that
does (test_drain_pipelining's), where the next domain's first message must
also go behind the dot of the message before it (RFC 2920 3.1).

One engine thread for the order: it is a promise per thread (each
shard's drains share that thread's connections), and with two a domain's
mail is split between shards at random. Two connections to the
destination (per thread), so that the order the connections choose is what
the server sees. A last case runs two threads: a domain one thread has
begun goes after those no thread has, so every domain's first message
comes among about the first DOMAINS deliveries, not 2 x DOMAINS. Loopback
only; every process is stopped by PID."""

import os
import re
import smtplib
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as h  # noqa: E402
from customer_server import CustomerServer  # noqa: E402
from test_drain_pipelining import PipeCustomer  # noqa: E402
from test_redis import Redis, etrnctl  # noqa: E402

DOMAINS = 200
PER_DOMAIN = 4
DEST_CONNS = 2


def hold_all(e, doms, per, per_conn=100):
    """per messages to u@d for each d, over one connection per per_conn
    messages; their Message-IDs by domain."""
    ids = {d: [] for d in doms}
    s = None
    k = 0
    for i in range(per):
        for d in doms:
            if k % per_conn == 0:
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

    def held(self, threads=1):
        """etrnd with DOMAINS domains of PER_DOMAIN messages each held, all
        routed to the customer at self.cport; (etrnd, Message-IDs by domain)."""
        doms = ["f%03d.test" % i for i in range(DOMAINS)]
        csv = os.path.join(self.tmp, "doms.csv")
        with open(csv, "w") as f:
            f.write("domain,queue,dest,etrn_from\n")
            for d in doms:
                f.write("%s,burst,127.0.0.1:%d,127.0.0.0/8\n" % (d, self.cport))
        rc, out, err = etrnctl(self.redis, "import", csv)
        self.assertEqual(rc, 0, err)
        e = h.Etrnd(redis=self.redis.url(), relay_domains="static.test", threads=str(threads),
                    control_socket="auto",
                    drain_destination_concurrency=str(DEST_CONNS * threads))
        self.addCleanup(e.cleanup)
        e.start()
        # With two threads, each domain's messages come over 4 of 80
        # connections, each placed on a thread by the kernel: nearly every
        # domain is held on both.
        return e, hold_all(e, doms, PER_DOMAIN, 100 if threads == 1 else 10)

    def etrn_burst(self, e, pending):
        """ETRN #burst (smtplib), with pending messages held."""
        with smtplib.SMTP(h.HOST, e.port, timeout=30) as s:
            s.ehlo("customer.test")
            code, msg = s.docmd("ETRN", "#burst")
        self.assertEqual((code, msg.decode()),
                         (253, "2.0.0 OK, %d pending messages for node #burst started" % pending))

    def burst(self, serve, threads=1):
        """Hold, start the customer's server (serve(port) -> wait(n),
        arrived()), release all with one ETRN #queue; the Message-IDs in
        arrival order, each held message once."""
        e, ids = self.held(threads)
        self.etrnd = e
        wait, arrived = serve(self.cport)
        total = DOMAINS * PER_DOMAIN
        self.etrn_burst(e, total)
        self.assertTrue(wait(total), "got %d of %d" % (len(arrived()), total))
        e.wait_drains_ended()
        got = arrived()
        self.assertEqual(sorted(got), sorted(m for d in ids for m in ids[d]),
                         "every message once")
        self.assertNotIn("AddressSanitizer", e.stderr_text())
        return got

    def pipe_customer(self, port, **knobs):
        """test_drain_pipelining's raw customer (PIPELINING offered) for
        burst(): (the server, wait(n), arrived())."""
        c = PipeCustomer(port, pipelining=True, **knobs)
        c.start()
        self.addCleanup(c.stop)

        def wait(n):
            return h.wait_for("%d messages at the customer" % n,
                              lambda: len(c.accepted) >= n, within=120)
        return c, wait, lambda: list(c.accepted)

    def assert_fresh_first(self, order):
        """Every domain's first message arrived before any domain's last."""
        first, last = {}, {}
        for i, mid in enumerate(order):
            d = domain_of(mid)
            first.setdefault(d, i)
            last[d] = i
        latest_first = max(first.items(), key=lambda kv: kv[1])
        earliest_last = min(last.items(), key=lambda kv: kv[1])
        self.assertLess(latest_first[1], earliest_last[1],
                        "%s finished (its last message arrived %d-th) before %s's first "
                        "arrived (%d-th)" % (earliest_last[0], earliest_last[1] + 1,
                                             latest_first[0], latest_first[1] + 1))
        print("last first message: %d-th of %d; first last message: %d-th"
              % (latest_first[1] + 1, len(order), earliest_last[1] + 1))

    def test_every_domain_first_before_any_finishes(self):
        """aiosmtpd offers no PIPELINING: one transaction at a time."""
        def serve(port):
            c = CustomerServer(port).start()
            self.addCleanup(c.stop)
            return (lambda n: c.wait_count(n, 120)), c.recorder.message_ids

        order = self.burst(serve)
        self.assertEqual(len(order), DOMAINS * PER_DOMAIN)
        self.assert_fresh_first(order)

    def test_fresh_first_pipelined_behind_the_dot(self):
        """A customer with PIPELINING: the next domain's first message is
        read ahead, and its MAIL goes behind the dot of the message before
        it (another domain's), on the same connection."""
        box = {}

        def serve(port):
            box["c"], wait, arrived = self.pipe_customer(port)
            return wait, arrived

        order = self.burst(serve)
        self.assert_fresh_first(order)
        c = box["c"]
        with c.lock:
            seqs = [list(q) for q in c.sessions]
        # (a, b) on one connection, b's MAIL already in when a's dot was
        # answered, from different domains: a domain change pipelined.
        cross = sum(1 for q in seqs for (a, behind), (b, _) in zip(q, q[1:])
                    if behind and domain_of(a) != domain_of(b))
        print("%d dots over %d connections, %d of them with another domain's MAIL "
              "behind" % (c.dots, len(seqs), cross))
        # Each of the DOMAINS - DEST_CONNS domains no connection starts with
        # is begun by a switch of a connection; at least half of those go
        # behind a dot (a read slot busy at the time sends one after it).
        self.assertGreaterEqual(cross, (DOMAINS - DEST_CONNS) // 2)

    def test_fresh_first_message_behind_a_dropped_dot(self):
        """The customer hangs up after the first connection's 3rd dot,
        unanswered, with the next domain's first message (read ahead for
        a job still waiting for its first connection) behind it: that
        message goes back to its domain untried, the dot's message stays
        held, the burst goes on; a second ETRN delivers what is left, and
        every held message arrives exactly once."""
        e, ids = self.held()
        c, wait, arrived = self.pipe_customer(self.cport, drop_dot=3)
        total = DOMAINS * PER_DOMAIN
        self.etrn_burst(e, total)
        e.wait_drains_ended(within=120)
        left = sum(h.indexed_messages(e.ctl_path(), d)[0] for d in ids)
        self.assertGreaterEqual(left, 1, "the dropped dot's message stays held")
        self.assertEqual(len(arrived()) + left, total)
        self.etrn_burst(e, left)
        self.assertTrue(wait(total), "got %d of %d" % (len(arrived()), total))
        e.wait_drains_ended()
        self.assertEqual(sorted(arrived()), sorted(m for d in ids for m in ids[d]),
                         "every message once")
        with c.lock:
            first = c.sessions[0]
        self.assertEqual(len(first), 2, "the first connection's 3rd dot is unanswered")
        self.assertNotIn("AddressSanitizer", e.stderr_text())
        print("%d held after the hang-up, delivered by the second ETRN" % left)


    def test_each_domain_begun_by_one_thread(self):
        """Two engine threads, each holding its share of every domain
        (each serves its share over its own DEST_CONNS connections): a
        domain one thread has begun goes after those no thread has begun
        on the other, so every domain has its first message among about
        the first DOMAINS to arrive, not the first 2 x DOMAINS (each
        thread sending a first message for every domain)."""
        box = {}

        def serve(port):
            box["c"], wait, arrived = self.pipe_customer(port)
            return wait, arrived

        order = self.burst(serve, threads=2)
        self.assert_fresh_first(order)
        # Only a domain held on both threads can tell: count them.
        jobs = re.findall(r"drain (f\d+\.test) \(shard (\d)\): \d+ message\(s\) to",
                          self.etrnd.stderr_text())
        shards = {}
        for d, k in jobs:
            shards.setdefault(d, set()).add(k)
        both = sum(1 for v in shards.values() if len(v) == 2)
        first = {}
        for i, mid in enumerate(order):
            first.setdefault(domain_of(mid), i)
        latest = max(first.values()) + 1
        print("%d of %d domains held on both threads; every domain's first message "
              "among the first %d" % (both, DOMAINS, latest))
        self.assertGreaterEqual(both, DOMAINS // 2, "the holding spread too few domains")
        # Each thread for itself would put about `both` more first messages
        # ahead; half of them is the margin for the race of two threads
        # beginning one domain at the same moment.
        self.assertLess(latest, DOMAINS + both // 2)


def domain_of(mid):
    """"<f001.test-2@sender.test>" (hold_all()'s) -> "f001.test"."""
    return mid[1:].rsplit("-", 1)[0]


if __name__ == "__main__":
    unittest.main()
