# SPDX-License-Identifier: MIT
"""Expiry: mail held longer than max_hold is expired and its sender gets an
RFC 3464 DSN; younger mail and the null sender are left alone. With
delay_warning, the sender is warned once before that. The clock is
the test's (config key clock_offset, read at start), never a sleep. A check
that nothing (more) expired waits first for a finished expiry scan
(etrnd_expiry_scans_total on the control socket's "metrics").
"""

import base64
import re
import smtplib
import time
import unittest

import etrnd_harness as h

QUEUED_RE = re.compile(rb"queued as ([0-9A-F]{14})")
# A hang guard only (a loaded machine, sanitizer builds).
WAIT_S = h.LOG_WAIT_S


def send(e, sender, rcpts, subject):
    body = ("Subject: %s\r\nMessage-ID: <%s@expiry.test>\r\n\r\nheld mail\r\n"
            % (subject, subject)).encode()
    with smtplib.SMTP(h.HOST, e.port, timeout=10) as s:
        s.ehlo("expiry.test")
        s.mail(sender)
        for r in rcpts:
            s.rcpt(r)
        code, msg = s.data(body)
    assert code == 250, (code, msg)
    return QUEUED_RE.search(msg).group(1).decode()


def wait_for_log(e, pattern, count):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if len(re.findall(pattern, e.stderr_text())) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("log never showed %d x %r:\n%s" % (count, pattern, e.stderr_text()))


class ExpiryTest(unittest.TestCase):
    def test_expire_with_dsn(self):
        e = h.Etrnd(threads="1", max_hold="5d", relay_domains="demo.test other.test",
                    control_socket="auto")
        self.addCleanup(e.cleanup)
        e.start()
        q1 = send(e, "alice@example.org", ["u1@demo.test"], "one")
        q2 = send(e, "bob@example.net", ["u2@demo.test", "u3@other.test"], "two")
        q3 = send(e, "", ["u4@demo.test"], "bounce-of-a-bounce")
        e.stop()

        # Four days later: nothing is old enough.
        e.cfg["clock_offset"] = "4d"
        e.start()
        e.wait_expiry_scans()  # a whole scan ran; it must have found nothing
        e.stop()
        self.assertNotIn("status=expired", e.stderr_text())
        self.assertEqual([r for r in h.spool_json(e.spool_dir) if r["type"] == "DONE"], [])

        # Six days later: all three expire; two DSNs (none to <>).
        e.cfg["clock_offset"] = "6d"
        e.start()
        wait_for_log(e, r"status=expired", 4)
        wait_for_log(e, r"sender non-delivery notification", 2)
        e.stop()
        log = e.stderr_text()
        self.assertIn("%s: null sender: no delivery status notification" % q3, log)
        for q, rcpt in ((q1, "u1@demo.test"), (q2, "u2@demo.test"), (q2, "u3@other.test"),
                        (q3, "u4@demo.test")):
            self.assertRegex(log, r"%s: to=<%s>, relay=none, delay=\d+, status=expired"
                             % (q, re.escape(rcpt)))

        recs = h.spool_json(e.spool_dir)
        dones = sorted((r["qid"], r["rcpt"], r["status"]) for r in recs if r["type"] == "DONE")
        self.assertEqual(dones, sorted([(q1, 0, "expired"), (q2, 0, "expired"),
                                        (q2, 1, "expired"), (q3, 0, "expired")]))
        dsns = [r for r in recs if r["type"] == "MSG" and r["sender"] == ""
                and r["qid"] not in (q3,)]
        self.assertEqual(sorted(d["rcpts"][0] for d in dsns),
                         ["alice@example.org", "bob@example.net"])
        for d in dsns:
            body = base64.b64decode(d["body_b64"])
            self.assertIn(b"Content-Type: multipart/report; report-type=delivery-status", body)
            self.assertIn(b"Auto-Submitted: auto-replied", body)
            self.assertIn(b"Action: failed", body)
            self.assertIn(b"Status: 4.4.7", body)
            self.assertNotIn(b"\r\n.\r\n", body)
            if d["rcpts"][0] == "bob@example.net":
                self.assertIn(b"Final-Recipient: rfc822; u2@demo.test", body)
                self.assertIn(b"Final-Recipient: rfc822; u3@other.test", body)
                self.assertIn(b"Subject: two", body)   # original headers returned
                self.assertIn(("X-Etrnd-Queue-ID: %s" % q2).encode(), body)

        # A restart does not expire anything twice. (The DSNs themselves
        # are now "six days old" too: they expire, without a DSN, being
        # from <>.)
        dsn_qids = {d["qid"] for d in dsns}
        e.start()
        wait_for_log(e, r"status=expired", 2)
        e.wait_expiry_scans()  # that scan is over: anything else is logged
        e.stop()
        expired = re.findall(r"([0-9A-F]{14}): to=<[^>]*>, relay=none, delay=\d+, status=expired",
                             e.stderr_text())
        self.assertEqual(sorted(expired), sorted(dsn_qids))


    def test_delay_warning_once(self):
        """delay_warning: one delayed DSN per message past it (none for <>),
        never a second one, also not after restarts; expiry still follows
        at max_hold."""
        e = h.Etrnd(threads="1", max_hold="5d", delay_warning="4h",
                    relay_domains="demo.test other.test", control_socket="auto")
        self.addCleanup(e.cleanup)
        e.start()
        q1 = send(e, "alice@example.org", ["u1@demo.test"], "one")
        q2 = send(e, "bob@example.net", ["u2@demo.test", "u3@other.test"], "two")
        q3 = send(e, "", ["u4@demo.test"], "null-sender")
        e.stop()

        # Three hours: too early.
        e.cfg["clock_offset"] = "3h"
        e.start()
        e.wait_expiry_scans()
        e.stop()
        self.assertNotIn("status=deferred", e.stderr_text())

        # Five hours: one warning each for q1 and q2, none to <> for q3.
        e.cfg["clock_offset"] = "5h"
        e.start()
        wait_for_log(e, r"sender delay notification", 2)
        wait_for_log(e, r"%s: null sender: no delay notification" % q3, 1)
        e.wait_expiry_scans()
        e.stop()
        log = e.stderr_text()
        warned = dict(re.findall(r"([0-9A-F]{14}): sender delay notification: ([0-9A-F]{14})", log))
        self.assertEqual(sorted(warned), sorted([q1, q2]))
        for q, rcpt in ((q1, "u1@demo.test"), (q2, "u2@demo.test"), (q2, "u3@other.test"),
                        (q3, "u4@demo.test")):
            self.assertRegex(log, r"%s: to=<%s>, relay=none, delay=\d+, status=deferred "
                             r"\(delayed longer than delay_warning\)" % (q, re.escape(rcpt)))
        self.assertNotIn("status=expired", log)

        recs = h.spool_json(e.spool_dir)
        self.assertEqual([r for r in recs if r["type"] == "DONE"], [])
        notes = sorted((r["qid"], r["kind"]) for r in recs if r["type"] == "NOTE")
        self.assertEqual(notes, sorted([(q1, "delay_warned"), (q2, "delay_warned"),
                                        (q3, "delay_warned")]))
        dsns = {r["qid"]: r for r in recs if r["type"] == "MSG" and r["qid"] in warned.values()}
        self.assertEqual(sorted(d["rcpts"][0] for d in dsns.values()),
                         ["alice@example.org", "bob@example.net"])
        for d in dsns.values():
            self.assertEqual(d["sender"], "")
            body = base64.b64decode(d["body_b64"])
            self.assertIn(b"Subject: Delayed Mail (still being retried)", body)
            self.assertIn(b"Content-Type: multipart/report; report-type=delivery-status", body)
            self.assertIn(b"Action: delayed", body)
            self.assertIn(b"Status: 4.4.7", body)
            self.assertIn(b"Will-Retry-Until: ", body)
            self.assertNotIn(b"Action: failed", body)
            self.assertNotIn(b"\r\n.\r\n", body)
            if d["rcpts"][0] == "bob@example.net":
                self.assertIn(b"Final-Recipient: rfc822; u2@demo.test", body)
                self.assertIn(b"Final-Recipient: rfc822; u3@other.test", body)
                self.assertIn(b"Subject: two", body)

        # Six hours, after a restart: no second warning for anything. (The
        # warnings themselves, from <>, are past delay_warning too: noted,
        # never answered.)
        e.cfg["clock_offset"] = "6h"
        e.start()
        e.wait_expiry_scans()
        e.stop()
        log = e.stderr_text()
        self.assertNotIn("sender delay notification", log)
        for q in (q1, q2, q3):
            self.assertNotRegex(log, r"%s: to=<[^>]*>, relay=none, delay=\d+, status=deferred" % q)
        notes = [r["qid"] for r in h.spool_json(e.spool_dir) if r["type"] == "NOTE"]
        self.assertEqual(len(notes), len(set(notes)), "a message noted twice")

        # Six days: expiry as before, with its own DSNs (none to <>).
        e.cfg["clock_offset"] = "6d"
        e.start()
        wait_for_log(e, r"sender non-delivery notification", 2)
        e.stop()
        log = e.stderr_text()
        for q, rcpt in ((q1, "u1@demo.test"), (q2, "u2@demo.test"), (q2, "u3@other.test"),
                        (q3, "u4@demo.test")):
            self.assertRegex(log, r"%s: to=<%s>, relay=none, delay=\d+, status=expired"
                             % (q, re.escape(rcpt)))
        self.assertNotIn("sender delay notification", log)
        dones = sorted((r["qid"], r["rcpt"]) for r in h.spool_json(e.spool_dir)
                       if r["type"] == "DONE" and r["qid"] in (q1, q2, q3))
        self.assertEqual(dones, sorted([(q1, 0), (q2, 0), (q2, 1), (q3, 0)]))

    def test_per_domain_max_hold(self):
        """A domain's own max_hold (Redis row) wins over the default; a
        message for two domains expires only for the one past its hold."""
        import tempfile
        from test_redis import Redis, etrnctl
        tmp = tempfile.mkdtemp(prefix="etrnd-hold-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        r = Redis(tmp).start()
        self.addCleanup(r.stop)
        self.assertEqual(etrnctl(r, "domain", "add", "short.test", "--max-hold", "1d")[0], 0)
        self.assertEqual(etrnctl(r, "domain", "add", "long.test")[0], 0)
        e = h.Etrnd(threads="1", max_hold="5d", redis=r.url(), relay_domains="static.test",
                    control_socket="auto")
        self.addCleanup(e.cleanup)
        e.start()
        q = send(e, "carol@example.org", ["a@short.test", "b@long.test"], "mixed")
        e.stop()
        e.cfg["clock_offset"] = "2d"
        e.start()
        wait_for_log(e, r"sender non-delivery notification", 1)
        e.wait_expiry_scans()
        e.stop()
        log = e.stderr_text()
        self.assertIn("%s: to=<a@short.test>" % q, log)
        self.assertNotIn("to=<b@long.test>", log)
        dones = [(x["qid"], x["rcpt"]) for x in h.spool_json(e.spool_dir) if x["type"] == "DONE"]
        self.assertEqual(dones, [(q, 0)])


class ExpiryShutdownTest(unittest.TestCase):
    def test_sigterm_during_mass_expiry(self):
        """Expiry of a big backlog never holds up SIGTERM: the loop stops
        starting expiry steps, finishes the one in flight and exits."""
        e = h.Etrnd(threads="2", max_hold="5d")
        self.addCleanup(e.cleanup)
        e.start()
        with smtplib.SMTP(h.HOST, e.port, timeout=10) as s:
            s.ehlo("expiry.test")
            for i in range(3000):
                s.sendmail("old@example.org", ["u@demo.test"], b"Subject: old\r\n\r\nx\r\n")
        e.stop()
        e.cfg["clock_offset"] = "6d"
        e.start()
        e.wait_log(r"status=expired")  # expiry is under way
        t0 = time.monotonic()
        e.stop()         # asserts exit status 0 within the harness bound
        took = time.monotonic() - t0
        # No wall-clock bound here (a loaded machine can miss any): the
        # harness's stop bound catches a hang, and the count below shows
        # that the stop cut the backlog short instead of waiting for it.
        print("SIGTERM during mass expiry: exited after %.2f s" % took)
        done = [r for r in h.spool_json(e.spool_dir) if r["type"] == "DONE"]
        self.assertGreater(len(done), 0, "expiry had started")
        self.assertLess(len(done), 3000, "stopped before expiring everything")


if __name__ == "__main__":
    unittest.main()
