# SPDX-License-Identifier: MIT
"""Who may relay through etrnd (issue 13): clients in `mynetworks` and
authenticated users may send to any domain; everyone else gets 550 5.7.1
for a domain that is not a customer's (never an open relay), while a
customer domain still takes mail from anyone. The `submission_listen`
listener (RFC 6409) wants AUTH before MAIL: 530 5.7.0; one that can never
offer AUTH (no certificate) is logged once.

Clients are Python's smtplib, swaks and raw sockets, bound to 127.0.0.1 or
127.0.0.2 to be different addresses; users are made with `etrnctl user add`
in a private redis-server. What is checked here ends when the message is
queued (the spool record holds it); delivering it is the scheduler's. So
that nothing ever leaves the machine, relayhost and dns_servers point at
closed loopback ports. Every process is stopped by PID.
"""

import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as h  # noqa: E402
import test_auth  # noqa: E402  (not its AuthTest by name: it would run here too)
from test_auth import Raw, plain  # noqa: E402
from test_redis import Redis, wait_log  # noqa: E402

ALICE, ALICE_PW = "alice", "s3cret-relay-alice"   # owns no domain
CUSTOMER = "demo.test"                            # relay_domains: a customer
FOREIGN = "far.example.invalid"                   # no row: relaying
OTHER_ADDR = "127.0.0.2"
SWAKS_S = 60
BODY = b"Subject: relay test\r\n\r\nhello\r\n"
QUEUED_RE = re.compile(r"queued as (%s)" % h.QID_RE)


class RelayAccessTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-relay-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)
        h.add_user(self.redis.url(), ALICE, ALICE_PW)

    def etrnd(self, tls=True, **cfg):
        d = tempfile.mkdtemp(prefix="etrnd-it-", dir=self.tmp)
        # Nothing may leave the machine once the scheduler delivers what
        # these tests queue: the upstream and the DNS are closed ports.
        cfg.setdefault("relayhost", "[127.0.0.1]:%d" % h.free_port())
        cfg.setdefault("dns_servers", "127.0.0.1:%d" % h.free_port())
        e = h.Etrnd(tmpdir=d, tls=tls, redis=self.redis.url(),
                    relay_domains=CUSTOMER, **cfg)
        self.addCleanup(e.cleanup)
        return e.start()

    def smtp(self, e, port=None, source=h.HOST, tls=False):
        """An smtplib session (EHLO, STARTTLS and EHLO again with tls), as
        test_auth makes them; in the clear by default here."""
        return test_auth.AuthTest.smtp(self, e, source=source, tls=tls, port=port)

    def rcpt(self, s, domain):
        """MAIL, then RCPT TO:<user@domain>: (code, text); RSET after."""
        self.assertEqual(s.mail("sender@example.org")[0], 250)
        code, msg = s.rcpt("user@" + domain)
        s.rset()
        return code, msg.decode()

    def send(self, s, domain):
        """One message to user@domain; returns its queue id."""
        self.assertEqual(s.mail("sender@example.org")[0], 250)
        code, msg = s.rcpt("user@" + domain)
        self.assertEqual(code, 250, msg)
        code, msg = s.data(BODY)
        self.assertEqual(code, 250, msg)
        return QUEUED_RE.search(msg.decode()).group(1)

    def swaks(self, port, domain, *extra):
        """swaks to user@domain: (exit status, transcript)."""
        argv = [os.environ.get("SWAKS", "swaks"), "--server",
                "%s:%d" % (h.HOST, port), "--from", "sender@example.org",
                "--to", "user@" + domain, "--timeout", "30"] + list(extra)
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=SWAKS_S)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def assert_queued_for(self, e, qid, domain):
        rec = e.record(qid)
        self.assertEqual(rec["rcpts"], ["user@" + domain])
        return rec

    def assert_denied(self, code, msg):
        self.assertEqual(code, 550, msg)
        self.assertRegex(msg, r"^5\.7\.1 .*Relay access denied")

    def test_mynetworks_may_relay(self):
        e = self.etrnd(mynetworks="127.0.0.0/8")
        s = self.smtp(e)
        qid = self.send(s, FOREIGN)
        s.quit()
        self.assert_queued_for(e, qid, FOREIGN)
        rc, out = self.swaks(e.port, FOREIGN)
        self.assertEqual(rc, 0, out)
        q = re.search(r"<[-~] +250 2\.0\.0 Ok: queued as (%s)" % h.QID_RE, out)
        self.assertTrue(q, out)
        self.assert_queued_for(e, q.group(1), FOREIGN)
        self.assertRegex(e.stderr_text(), r"client \[127\.0\.0\.1\] may relay: mynetworks")

    def test_stranger_gets_550(self):
        # mynetworks is empty by default: loopback is not trusted.
        e = self.etrnd()
        s = self.smtp(e)
        self.assert_denied(*self.rcpt(s, FOREIGN))
        self.assertEqual(s.noop()[0], 250, "the session goes on after 550")
        s.quit()
        rc, out = self.swaks(e.port, FOREIGN)
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"<\*\* +550 5\.7\.1 ")
        self.assertEqual(e.records(), [], "nothing queued")
        self.assertNotIn("may relay", e.stderr_text())

    def test_mynetworks_matches_the_address(self):
        # One address in, the other out: the network decides, not "any
        # mynetworks at all".
        e = self.etrnd(mynetworks="%s/32" % OTHER_ADDR)
        self.assert_denied(*self.rcpt(self.smtp(e, source=h.HOST), FOREIGN))
        self.assertEqual(self.rcpt(self.smtp(e, source=OTHER_ADDR), FOREIGN)[0], 250)

    def test_relay_waits_while_redis_is_away(self):
        # With Redis gone, a domain missing from the last table may be a
        # customer not heard of yet, whose mail must be held, not sent on:
        # 451 even for a client that may relay; a known customer still 250.
        e = self.etrnd(mynetworks="127.0.0.0/8")
        wait_log(e, r"redis unix:.*: connected")
        self.assertEqual(self.rcpt(self.smtp(e), FOREIGN)[0], 250)
        self.redis.stop()
        wait_log(e, r"serving \d+ domain\(s\) from the last table")
        s = self.smtp(e)
        code, msg = self.rcpt(s, FOREIGN)
        self.assertEqual(code, 451, msg)
        self.assertEqual(self.rcpt(s, CUSTOMER)[0], 250)

    def test_customer_domain_from_anyone(self):
        e = self.etrnd()
        s = self.smtp(e)
        qid = self.send(s, CUSTOMER)
        s.quit()
        self.assert_queued_for(e, qid, CUSTOMER)

    def test_authenticated_user_may_relay(self):
        e = self.etrnd(listen_trusted="auto")
        s = self.smtp(e, tls=True)
        self.assert_denied(*self.rcpt(s, FOREIGN))
        s.user, s.password = ALICE, "not-the-password"
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)
        self.assert_denied(*self.rcpt(s, FOREIGN))
        s.user, s.password = ALICE, ALICE_PW
        self.assertEqual(s.auth("PLAIN", s.auth_plain)[0], 235)
        qid = self.send(s, FOREIGN)
        s.quit()
        rec = self.assert_queued_for(e, qid, FOREIGN)
        self.assertRegex(h.received_of(rec), r"\bwith ESMTPSA\b")
        self.assertRegex(e.stderr_text(),
                         r"client \[127\.0\.0\.1\] may relay: authenticated as alice")
        # listen_trusted: AUTH in the clear gives the same right.
        s = self.smtp(e, port=e.ports["listen_trusted"])
        self.assert_denied(*self.rcpt(s, FOREIGN))
        s.login(ALICE, ALICE_PW)
        self.assert_queued_for(e, self.send(s, FOREIGN), FOREIGN)
        s.quit()

    def test_submission_wants_auth(self):
        sub = h.free_port()
        e = self.etrnd(submission_listen="%s:%d" % (h.HOST, sub),
                       mynetworks="127.0.0.0/8")
        # In the clear: no AUTH offered, MAIL refused (even from mynetworks).
        r = Raw(self, sub)
        self.assertEqual(r.cmd("MAIL FROM:<sender@example.org>"),
                         (530, "5.7.0 Authentication required"))
        self.assertEqual(r.cmd("RCPT TO:<user@%s>" % CUSTOMER)[0], 503)
        # Inside TLS: AUTH offered; MAIL still 530 until it succeeds.
        s = self.smtp(e, port=sub, tls=True)
        self.assertTrue(s.has_extn("auth"), s.esmtp_features)
        code, msg = s.mail("sender@example.org")
        self.assertEqual((code, msg.decode()), (530, "5.7.0 Authentication required"))
        s.login(ALICE, ALICE_PW)
        qid = self.send(s, FOREIGN)
        s.quit()
        self.assert_queued_for(e, qid, FOREIGN)
        # swaks: with -tls -a PLAIN it goes through, without AUTH it is 530.
        rc, out = self.swaks(sub, FOREIGN, "-tls", "-a", "PLAIN", "--auth-user", ALICE,
                             "--auth-password", ALICE_PW)
        self.assertEqual(rc, 0, out)
        q = re.search(r"<~ +250 2\.0\.0 Ok: queued as (%s)" % h.QID_RE, out)
        self.assertTrue(q, out)
        self.assertRegex(h.received_of(self.assert_queued_for(e, q.group(1), FOREIGN)),
                         r"\bwith ESMTPSA\b")
        rc, out = self.swaks(sub, CUSTOMER, "-tls")
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"<~\* +530 5\.7\.0 Authentication required")
        # The SMTP port of the same daemon takes mynetworks' mail without AUTH.
        self.assertEqual(self.rcpt(self.smtp(e), FOREIGN)[0], 250)

    def test_submission_raw_auth_plain(self):
        # The protocol corner by hand: AUTH PLAIN with an initial response
        # inside TLS, then the whole transaction.
        sub = h.free_port()
        e = self.etrnd(submission_listen="%s:%d" % (h.HOST, sub))
        r = Raw(self, sub, e.client_tls())
        self.assertEqual(r.cmd("MAIL FROM:<sender@example.org>")[0], 530)
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW))[0], 235)
        self.assertEqual(r.cmd("MAIL FROM:<sender@example.org>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<user@%s>" % FOREIGN)[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        code, text = r.cmd("Subject: raw\r\n\r\nhi\r\n.")
        self.assertEqual(code, 250, text)
        self.assert_queued_for(e, QUEUED_RE.search(text).group(1), FOREIGN)
        self.assertEqual(r.cmd("QUIT")[0], 221)

    def test_submission_without_tls_warns(self):
        # No certificate: AUTH is never offered on the submission port, so
        # it can take no mail; the operator is told once, not per client.
        sub = h.free_port()
        e = self.etrnd(tls=False, submission_listen="%s:%d" % (h.HOST, sub))
        for _ in range(2):
            s = self.smtp(e, port=sub)
            self.assertFalse(s.has_extn("auth"), s.esmtp_features)
            self.assertEqual(s.mail("sender@example.org")[0], 530)
            s.quit()
        wait_log(e, r"submission_listen: AUTH is never offered there \(no TLS")
        self.assertEqual(e.stderr_text().count("AUTH is never offered"), 1)


if __name__ == "__main__":
    unittest.main()
