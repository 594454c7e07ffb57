# SPDX-License-Identifier: MIT
"""ETRN end to end (RFC 1985): mail held for customer domains in etrnd is
released to the customer's server (aiosmtpd, see customer_server.py) when the
customer sends ETRN with Python's smtplib. Domains are provisioned in a
private redis-server with etrnctl. Loopback only; every process is stopped by
PID."""

import re
import smtplib
import tempfile
import time
import unittest
from collections import Counter

import etrnd_harness as h
from customer_server import CustomerServer
from test_redis import Redis, etrnctl

QUEUED_RE = re.compile(rb"queued as ([0-9A-F]{14})")
# test_kill_mid_drain_resumes: connections per drain per thread, and the
# DONE window per connection (the duplicates a kill -9 may cause each).
KILL_CONNECTIONS = 4
KILL_WINDOW = 2


def hold(e, domain, n, tag):
    """Send n messages to u@domain over a few connections; their Message-IDs."""
    ids = []
    s = None
    for i in range(n):
        if i % 100 == 0:
            if s:
                s.quit()
            s = smtplib.SMTP(h.HOST, e.port, timeout=10)
            s.ehlo("sender.test")
        mid = "<%s-%d@sender.test>" % (tag, i)
        body = ("From: s@example.org\r\nTo: u@%s\r\nSubject: %s %d\r\nMessage-ID: %s\r\n\r\n"
                "held for %s\r\n" % (domain, tag, i, mid, domain)).encode()
        s.sendmail("s@example.org", ["u@%s" % domain], body)
        ids.append(mid)
    if s:
        s.quit()
    return ids


def wait_drained(tc, e, within=20):
    """Until every shard that started a drain has logged its summary."""
    deadline = time.monotonic() + within
    while True:
        log = e.stderr_text()
        started = len(re.findall(r"drain \S+ \(shard \d+\): \d+ message\(s\) to", log))
        ended = len(re.findall(r"drain \S+ \(shard \d+\): \d+ sent,", log))
        if started and started == ended:
            return
        tc.assertLess(time.monotonic(), deadline, "drain did not finish:\n" + log[-3000:])
        time.sleep(0.05)


def rcpt_ok(e, addr):
    with smtplib.SMTP(h.HOST, e.port, timeout=10) as s:
        s.ehlo("sender.test")
        s.mail("s@example.org")
        return s.rcpt(addr)[0] == 250


def etrn(e, node):
    with smtplib.SMTP(h.HOST, e.port, timeout=10) as s:
        s.ehlo("customer.test")
        t0 = time.monotonic()
        code, msg = s.docmd("ETRN", node)
        return code, msg.decode(), time.monotonic() - t0


class EtrnTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-etrn-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        self.redis = Redis(tmp).start()
        self.addCleanup(self.redis.stop)
        self.cport = h.free_port()

    def provision(self, *doms, etrn_from="127.0.0.0/8"):
        for d in doms:
            rc, out, err = etrnctl(self.redis, "domain", "add", d, "--dest",
                                   "127.0.0.1:%d" % self.cport, "--etrn-from", etrn_from)
            self.assertEqual(rc, 0, err)

    def customer(self, **knobs):
        c = CustomerServer(self.cport, **knobs).start()
        self.addCleanup(c.stop)
        return c

    def etrnd(self, **cfg):
        # The control socket: the tests wait for every drain's end on it.
        cfg.setdefault("control_socket", "auto")
        e = h.Etrnd(redis=self.redis.url(), relay_domains="static.test", threads="2", **cfg)
        self.addCleanup(e.cleanup)
        return e.start()

    def test_drains_exactly_that_domain(self):
        self.provision("a.test", "b.test", "c.test")
        e = self.etrnd()
        ids = {d: hold(e, d, n, d) for d, n in (("a.test", 400), ("b.test", 300), ("c.test", 300))}
        c = self.customer()
        code, msg, took = etrn(e, "a.test")
        self.assertEqual((code, msg), (253, "2.0.0 OK, 400 pending messages for node a.test started"))
        t_reply = time.monotonic()
        self.assertTrue(c.wait_count(400, 60), "only %d of 400 arrived" % c.recorder.count())
        e.wait_drains_ended()  # anything extra was delivered by then
        got = c.recorder.message_ids()
        self.assertEqual(sorted(got), sorted(ids["a.test"]), "exactly a.test's mail, once each")
        print("ETRN reply in %.2f ms; first delivery %.1f ms after it; 400 in %.2f s"
              % (took * 1000, (c.recorder.first_at - t_reply) * 1000,
                 c.recorder.messages[-1][2] - t_reply))
        # The others stay held; a second ETRN for a.test finds nothing.
        self.assertRegex(etrn(e, "a.test")[1], r"^2\.0\.0 OK, no messages waiting for node a\.test$")
        self.assertEqual(etrn(e, "a.test")[0], 251)
        e.stop()
        recs = h.spool_json(e.spool_dir)
        done = {r["qid"] for r in recs if r["type"] == "DONE"}
        held = [r for r in recs if r["type"] == "MSG" and r["qid"] not in done]
        self.assertEqual(Counter(r["rcpts"][0].split("@")[1] for r in held),
                         Counter({"b.test": 300, "c.test": 300}))
        self.assertIn("status=sent (250 2.0.0 OK: stored)", e.stderr_text())

    def test_tempfail_every_third_then_next_etrn(self):
        self.provision("a.test")
        e = self.etrnd()
        ids = hold(e, "a.test", 300, "tf")
        c = self.customer(tempfail_every=3)
        self.assertEqual(etrn(e, "a.test")[0], 253)
        self.assertTrue(c.wait_count(200, 60), "got %d" % c.recorder.count())
        wait_drained(self, e)
        first = c.recorder.count()
        self.assertEqual(first, 200, "two of three delivered on the first ETRN")
        self.assertIn("status=deferred (452 4.2.1", e.stderr_text())
        c.recorder.tempfail_every = 0
        code, msg, _ = etrn(e, "a.test")
        self.assertEqual((code, msg), (253, "2.0.0 OK, 100 pending messages for node a.test started"))
        self.assertTrue(c.wait_count(300, 60), "got %d" % c.recorder.count())
        e.wait_drains_ended()  # a duplicate was delivered by then
        got = Counter(c.recorder.message_ids())
        self.assertEqual(sorted(got), sorted(ids), "every message arrived")
        self.assertEqual(max(got.values()), 1, "no duplicates")

    def test_etrnctl_flush_and_status(self):
        """The operator's flush (ETRN on the customer's behalf) and status,
        through etrnctl and the daemon's control socket."""
        import os
        import subprocess
        self.provision("a.test", "b.test")
        e = h.Etrnd(redis=self.redis.url(), relay_domains="static.test", threads="2")
        e.cfg["control_socket"] = os.path.join(e.dir, "ctl.sock")
        self.addCleanup(e.cleanup)
        e.start()
        hold(e, "a.test", 30, "fl")
        hold(e, "b.test", 5, "st")
        ctl = [h.env_path("ETRNCTL"), "-c", e.conf_path]
        p = subprocess.run(ctl + ["status"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout.decode()
        self.assertRegex(out, r"domain a\.test: messages 30, recipients 30, bytes \d+, oldest \d+ s")
        self.assertRegex(out, r"domain b\.test: messages 5, ")
        self.assertEqual(len(re.findall(r"^shard \d+: messages", out, re.M)), 2)
        c = self.customer()
        p = subprocess.run(ctl + ["flush", "a.test"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        self.assertEqual((p.returncode, p.stdout.decode()),
                         (0, "253 2.0.0 OK, 30 pending messages for node a.test started\n"), p.stderr)
        self.assertTrue(c.wait_count(30, 30))
        wait_drained(self, e)
        p = subprocess.run(ctl + ["flush", "nothere.test"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stdout.decode().startswith("459 4.7.1 "), p.stdout)
        p = subprocess.run(ctl + ["flush", "not a domain"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)
        p = subprocess.run(ctl + ["status"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertNotIn("domain a.test:", p.stdout.decode())

    def test_queue_and_subdomains(self):
        """ETRN #queue and ETRN @domain (RFC 1985 section 3)."""
        for d, q in (("a.test", "q1"), ("sub.a.test", "q1"), ("b.test", "q2")):
            rc, out, err = etrnctl(self.redis, "domain", "add", d, "--dest",
                                   "127.0.0.1:%d" % self.cport, "--etrn-from", "127.0.0.0/8",
                                   "--queue", q)
            self.assertEqual(rc, 0, err)
        e = self.etrnd()
        want = hold(e, "a.test", 10, "qa") + hold(e, "sub.a.test", 5, "qs")
        other = hold(e, "b.test", 3, "qb")
        c = self.customer()
        code, msg, _ = etrn(e, "#q1")
        self.assertEqual((code, msg), (253, "2.0.0 OK, 15 pending messages for node #q1 started"))
        self.assertTrue(c.wait_count(15, 30))
        wait_drained(self, e)
        self.assertEqual(sorted(c.recorder.message_ids()), sorted(want))
        self.assertEqual(etrn(e, "@a.test")[:2], (251, "2.0.0 OK, no messages waiting for node @a.test"))
        self.assertEqual(etrn(e, "@b.test")[:2], (253, "2.0.0 OK, 3 pending messages for node @b.test started"))
        self.assertTrue(c.wait_count(18, 30))
        self.assertEqual(sorted(c.recorder.message_ids()), sorted(want + other))
        self.assertEqual(etrn(e, "#nosuch")[0], 459)

    def test_many_domains_at_once(self):
        """Many drains at once want more spool reads than a shard runs in
        parallel: they wait their turn, and every message still arrives
        exactly once."""
        doms = ["m%d.test" % i for i in range(60)]
        self.provision(*doms)
        e = self.etrnd(etrn_rate_limit="1000")
        want = []
        for d in doms:
            want += hold(e, d, 5, d)
        c = self.customer()
        with smtplib.SMTP(h.HOST, e.port, timeout=30) as s:
            s.ehlo("customer.test")
            for d in doms:
                code, msg = s.docmd("ETRN", d)
                self.assertEqual(code, 253, msg)
        self.assertTrue(c.wait_count(len(want), 60), "got %d of %d" % (c.recorder.count(), len(want)))
        wait_drained(self, e)
        got = Counter(c.recorder.message_ids())
        self.assertEqual(sorted(got), sorted(want))
        self.assertEqual(max(got.values()), 1, "no duplicates")

    def test_refusals(self):
        self.provision("a.test")
        self.provision("far.test", etrn_from="10.0.0.0/8")
        e = self.etrnd()
        with smtplib.SMTP(h.HOST, e.port, timeout=10) as s:
            s.ehlo("customer.test")
            self.assertIn("etrn", s.esmtp_features)
            code, msg = s.docmd("ETRN", "far.test")
            self.assertEqual((code, msg), (459, b"4.7.1 Node far.test not allowed: client 127.0.0.1 may not release it"))
            code, msg = s.docmd("ETRN", "unknown.test")
            self.assertEqual(code, 459)
            code, msg = s.docmd("ETRN")
            self.assertEqual((code, msg), (500, b"5.5.2 Syntax: ETRN domain"))
            code, msg = s.docmd("ETRN", "bad domain!")
            self.assertEqual(code, 501)
            s.mail("s@example.org")
            code, msg = s.docmd("ETRN", "a.test")
            self.assertEqual((code, msg), (503, b"5.5.1 Error: MAIL transaction in progress"))

    def test_rate_limit(self):
        self.provision("a.test")
        e = self.etrnd(etrn_rate_limit="3")
        codes = []
        with smtplib.SMTP(h.HOST, e.port, timeout=10) as s:
            s.ehlo("customer.test")
            for _ in range(5):
                codes.append(s.docmd("ETRN", "a.test")[0])
        self.assertEqual(codes[:3], [251, 251, 251])
        self.assertEqual(codes[3:], [458, 458])

    def test_bounce_5xx(self):
        self.provision("a.test")
        e = self.etrnd()
        with smtplib.SMTP(h.HOST, e.port, timeout=10) as s:
            s.sendmail("alice@example.org", ["good@a.test", "bad@a.test"],
                       b"Subject: mixed\r\nMessage-ID: <mixed@x>\r\n\r\nhi\r\n")
        c = self.customer(reject=("bad@a.test",))
        self.assertEqual(etrn(e, "a.test")[0], 253)
        self.assertTrue(c.wait_count(1, 30))
        deadline = time.monotonic() + 10
        while "sender non-delivery notification" not in e.stderr_text():
            self.assertLess(time.monotonic(), deadline, e.stderr_text())
            time.sleep(0.05)
        e.stop()
        self.assertEqual(c.recorder.messages[0][0], ["good@a.test"])
        recs = h.spool_json(e.spool_dir)
        self.assertEqual(sorted((r["rcpt"], r["status"]) for r in recs if r["type"] == "DONE"),
                         [(0, "delivered"), (1, "bounced")])
        dsn = [r for r in recs if r["type"] == "MSG" and r["sender"] == ""]
        self.assertEqual(len(dsn), 1)
        self.assertEqual(dsn[0]["rcpts"], ["alice@example.org"])
        body = h.stored_body(dsn[0])
        self.assertIn(b"Final-Recipient: rfc822; bad@a.test", body)
        self.assertIn(b"Status: 5.1.1", body)
        self.assertIn(b"Diagnostic-Code: smtp; 550 5.1.1", body)

    def test_quiet_log_level_verdicts(self):
        """With log_level = warn a drain makes no delivery line (they are
        formatted only when logged, issue 17), yet every verdict is kept as
        at info: delivered recipients get a DONE, a 550 a DONE and a DSN,
        a 452 nothing (held for the next ETRN, which delivers it)."""
        self.provision("a.test")
        # One session holds everything in one shard; one connection sends
        # it in order, so which RCPTs get the 452 is fixed.
        e = self.etrnd(log_level="warn", drain_connections="1")
        n = 40
        # No log line says the domain table is in: RCPT does.
        h.wait_for("a.test provisioned", lambda: rcpt_ok(e, "x@a.test"))
        with smtplib.SMTP(h.HOST, e.port, timeout=10) as s:
            for i in range(n):
                s.sendmail("alice@example.org", ["good%d@a.test" % i, "bad@a.test"],
                           ("Subject: q %d\r\nMessage-ID: <q%d@x>\r\n\r\nhi\r\n"
                            % (i, i)).encode())
        # 550 for bad@ in every message; 452 for every third RCPT
        # otherwise (good1, good4, ...: the 6th, 12th, ... are bad@'s).
        c = self.customer(reject=("bad@a.test",), tempfail_every=3)
        self.assertEqual(etrn(e, "a.test")[0], 253)
        e.wait_drains_ended(within=60)
        self.assertEqual(c.recorder.count(), n - len(range(1, n, 3)), "good1, good4, ... held")
        c.recorder.tempfail_every = 0
        self.assertEqual(etrn(e, "a.test")[0], 253)
        self.assertTrue(c.wait_count(n, 60), "got %d" % c.recorder.count())
        e.wait_drains_ended(within=60)
        e.stop()
        log = e.stderr_text()
        self.assertNotIn("status=sent", log)
        self.assertNotIn("status=bounced", log)
        got = Counter(tuple(m[0]) for m in c.recorder.messages)
        self.assertEqual(sorted(got), sorted((("good%d@a.test" % i,) for i in range(n))),
                         "each good recipient once, never bad@")
        self.assertEqual(max(got.values()), 1, "no duplicates")
        recs = h.spool_json(e.spool_dir)
        dones = Counter(r["status"] for r in recs if r["type"] == "DONE")
        self.assertEqual(dones, Counter({"delivered": n, "bounced": n}))
        dsn = [r for r in recs if r["type"] == "MSG" and r["sender"] == ""]
        self.assertEqual(len(dsn), n, "one DSN per message with bad@")
        self.assertIn(b"Diagnostic-Code: smtp; 550 5.1.1", h.stored_body(dsn[0]))

    def test_kill_mid_drain_resumes(self):
        self.provision("a.test")
        e = self.etrnd(drain_connections=str(KILL_CONNECTIONS),
                       drain_done_window=str(KILL_WINDOW))
        ids = hold(e, "a.test", 300, "kill")
        c = self.customer(delay=0.01)
        self.assertEqual(etrn(e, "a.test")[0], 253)
        self.assertTrue(c.wait_count(60, 60))
        e.signal(9)
        e.wait()
        at_kill = c.recorder.count()
        e.start()
        self.assertEqual(etrn(e, "a.test")[0], 253)
        self.assertTrue(c.wait_count(300, 60), "got %d" % c.recorder.count())
        deadline = time.monotonic() + 20
        while etrn(e, "a.test")[0] != 251:
            self.assertLess(time.monotonic(), deadline, "mail still held")
            time.sleep(0.2)
        got = Counter(c.recorder.message_ids())
        self.assertEqual(sorted(got), sorted(ids), "every message arrived")
        dups = sum(n - 1 for n in got.values())
        # The promise (README, drain_done_window): at the kill, each open
        # drain connection (2 threads x drain_connections) may have had
        # at most drain_done_window messages accepted by the customer
        # whose DONE was not yet durable. The window is set small here so
        # the bound is tight; the default 64 would allow 512. (A bound of
        # 2 per connection, which a quiet machine meets, failed under
        # load with the default window: slower group commits leave more
        # DONEs pending, within the promise.)
        bound = 2 * KILL_CONNECTIONS * KILL_WINDOW
        print("kill mid-drain: %d delivered before the kill, %d duplicate(s) (bound %d)"
              % (at_kill, dups, bound))
        self.assertLessEqual(dups, bound)


if __name__ == "__main__":
    unittest.main()
