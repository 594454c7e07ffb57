# SPDX-License-Identifier: MIT
"""ATRN (On-Demand Mail Relay, RFC 2645) end to end: the customer (the
test's odmr_client.py) connects to etrnd's odmr_listen port, STARTTLS,
AUTH PLAIN, ATRN, and serves the reversed session on the same connection
inside the same TLS session; etrnd delivers every message held for the
customer's domains, spread over its engine threads' spool shards (threads =
2), then QUIT. Users and domains are provisioned with etrnctl in a private
redis-server; the ETRN customer beside it is aiosmtpd (customer_server.py).
Loopback only; every process is stopped by PID.

Checked: every held message arrives exactly once, byte for byte (our
Received: header, then what the sender sent); EHLO on the ODMR port offers
STARTTLS, then AUTH and ATRN; ATRN before AUTH gets 530; a domain the user
does not own 450; nothing held 453 (RFC 2645 4.2.3, 4.3); ATRN alone
releases every domain the user owns, ATRN d1,d2 only those; a customer that
drops the line or says 421 after half the messages finds the other half,
once, at the next ATRN; ETRN and ATRN for the same domain at once deliver
nothing twice; mail arriving during a session is delivered in it or held
for the next; kill -9 in the middle of a session loses nothing (duplicates
only within drain_done_window); TURN on the SMTP port gets 502 5.5.1, and
ATRN works there only with smtp_atrn = yes;
etrnctl status shows the session while it runs.
"""

import os
import random
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import threading
import time
import unittest
from collections import Counter

import etrnd_harness as h
from customer_server import CustomerServer
from odmr_client import REVERSING, OdmrClient
from test_redis import Redis, etrnctl

ALICE, ALICE_PW = "alice", "alice's ODMR password 2645"   # owns a, b, c
BOB, BOB_PW = "bob", "bob's ODMR password 1985"           # owns other.test
A, B, C, OTHER = "a.test", "b.test", "c.test", "other.test"
THREADS = 2
WINDOW = 1                 # drain_done_window: duplicates per crash at most
KILL_CUSTOMER_DELAY_S = 0.005   # so that each kill lands inside a session
SESSION_S = 120            # one ATRN session, loaded machine, sanitizers
RETRY_S = 30               # a refused ATRN (451: the domain still busy) retried
MSGS_PER_CONN = 10         # held over many connections: every shard gets some
QUEUED_RE = re.compile(r"queued as (%s)" % h.QID_RE)
MSGID_RE = re.compile(rb"^Message-ID: (<[^>\r\n]+>)\r$", re.M | re.I)


def body_for(domain, tag, i):
    """A message with the corners a relay can spoil: a leading dot (stuffed
    on the wire), a line of 998 octets, 8-bit text, an empty line."""
    mid = "<%s-%d@sender.test>" % (tag, i)
    return mid, (
        "From: s@example.org\r\nTo: u@%s\r\nSubject: %s %d\r\nMessage-ID: %s\r\n"
        "\r\n.leading dot %d\r\n..two dots\r\n%s\r\n\r\ncaf\xe9 8-bit %d\r\n.\r\nend\r\n"
        % (domain, tag, i, mid, i, "x" * 998, i)).encode("latin-1")


def hold(e, domain, n, tag):
    """n messages to u@domain over n/MSGS_PER_CONN connections (the kernel
    spreads them over the engine threads); {Message-ID: body as sent}."""
    sent = {}
    s = None
    for i in range(n):
        if i % MSGS_PER_CONN == 0:
            if s:
                s.quit()
            s = smtplib.SMTP(h.HOST, e.port, timeout=30)
            s.ehlo("sender.test")
        mid, body = body_for(domain, tag, i)
        s.sendmail("s@example.org", ["u@%s" % domain], body, ["BODY=8BITMIME"])
        sent[mid] = body
    if s:
        s.quit()
    return sent


def msgid(data):
    m = MSGID_RE.search(data)
    if not m:
        raise AssertionError("no Message-ID in %r" % data[:300])
    return m.group(1).decode()


class AtrnTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-atrn-")
        self.addCleanup(h.remove_tmp, self.tmp)
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)
        self.cport = h.free_port()       # the ETRN customer (aiosmtpd)
        for d in (A, B, C, OTHER):
            rc, _, err = etrnctl(self.redis, "domain", "add", d, "--dest",
                                 "127.0.0.1:%d" % self.cport, "--etrn-from", "127.0.0.0/8")
            self.assertEqual(rc, 0, err)
        for user, pw, doms in ((ALICE, ALICE_PW, (A, B, C)), (BOB, BOB_PW, (OTHER,))):
            args = ["user", "add", user]
            for d in doms:
                args += ["--domain", d]
            rc, _, err = etrnctl(self.redis, *args, "--password-stdin",
                                 stdin=(pw + "\n").encode())
            self.assertEqual(rc, 0, err)

    def etrnd(self, **cfg):
        d = tempfile.mkdtemp(prefix="etrnd-it-", dir=self.tmp)
        e = h.Etrnd(tmpdir=d, tls=True, redis=self.redis.url(), relay_domains="static.test",
                    threads=str(THREADS), odmr_listen="auto", etrn_rate_limit="1000",
                    control_socket=os.path.join(d, "ctl.sock"), **cfg)
        self.addCleanup(e.cleanup)
        return e.start()

    def odmr(self, e, user=ALICE, password=ALICE_PW, domains=None, **knobs):
        knobs.setdefault("tls_ctx", e.client_tls())
        c = OdmrClient(e.ports["odmr_listen"], user, password, domains, **knobs)
        self.addCleanup(c.close)
        return c

    def session(self, e, **kw):
        """One whole ATRN session in this thread; the client, finished."""
        c = self.odmr(e, **kw)
        c.start()
        c.finish(SESSION_S)
        return c

    def atrn_until(self, e, want_codes=(250, 453), **kw):
        """ATRN until the reply is one of want_codes (451: the domains are
        still being drained, by an ETRN or a session ending); the session."""
        deadline = time.monotonic() + RETRY_S
        while True:
            c = self.session(e, **kw)
            if c.atrn_reply[0] in want_codes:
                return c
            self.assertEqual(c.atrn_reply[0], 451, c.atrn_reply)
            self.assertLess(time.monotonic(), deadline, "ATRN refused 451 for %ds" % RETRY_S)
            time.sleep(0.2)

    def status(self, e):
        p = subprocess.run([h.env_path("ETRNCTL"), "-c", e.conf_path, "status"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.decode()

    def shards_holding(self, e):
        counts = re.findall(r"^shard (\d+): messages (\d+)", self.status(e), re.M)
        return {int(s) for s, n in counts if int(n) > 0}

    def assert_arrived_once(self, sent, *clients):
        """Every message of sent arrived once over clients' sessions, and
        nothing else; each is our Received: header, then the sent bytes."""
        got = [m for c in clients for m in c.messages]
        ids = Counter(msgid(data) for _, _, data in got)
        self.assertEqual(sorted(m for m in ids if ids[m] > 1), [], "delivered twice")
        self.assertEqual(sorted(ids), sorted(sent), "exactly the held mail")
        for mail_from, rcpts, data in got:
            mid = msgid(data)
            _, rest = h.split_received(data)
            self.assertEqual(rest, sent[mid], "%s altered on the way" % mid)
            self.assertEqual(mail_from.split()[0], "<s@example.org>")
            self.assertEqual(len(rcpts), 1, rcpts)

    def assert_reversed_session(self, c):
        """One EHLO from etrnd, messages, one QUIT, inside TLS."""
        self.assertIsNone(c.error, c.error)
        self.assertEqual(c.atrn_reply, (250, REVERSING))
        self.assertTrue(c.tls_version, "the session ran in the clear")
        verbs = [x.split()[0].upper() for x in c.commands if x.split()]
        self.assertEqual(verbs.count("EHLO") + verbs.count("HELO"), 1, verbs[:10])
        self.assertEqual(verbs[0], "EHLO", verbs[:3])
        self.assertEqual(verbs[-1], "QUIT", verbs[-3:])
        self.assertTrue(c.quit)
        self.assertNotIn("STARTTLS", verbs, "STARTTLS inside TLS")

    # ---- the tests -----------------------------------------------------

    def test_every_held_message_once_byte_for_byte(self):
        e = self.etrnd()
        sent = hold(e, A, 300, "once")
        self.assertGreaterEqual(len(self.shards_holding(e)), 2,
                                "the held mail is on one shard only: the test "
                                "would not cross threads")
        t0 = time.monotonic()
        c = self.session(e, domains=[A])
        took = time.monotonic() - t0
        self.assert_reversed_session(c)
        self.assert_arrived_once(sent, c)
        print("ATRN: %d messages from %d shards over one connection in %.2f s"
              % (len(c.messages), THREADS, took))
        # The first session holds its domains until its last DONE is
        # durable, which may be just after the customer saw QUIT: an ATRN
        # in that moment is told 451 (try later), never given mail twice.
        deadline = time.monotonic() + 15
        while True:
            code = self.session(e, domains=[A]).atrn_reply[0]
            if code != 451 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(code, 453)
        self.assertRegex(e.stderr_text(), r"(?i)atrn")

    def test_ehlo_and_auth_required(self):
        """EHLO offers STARTTLS, then AUTH and ATRN; ATRN without AUTH 530."""
        e = self.etrnd()
        hold(e, A, 3, "noauth")
        c = self.odmr(e, user=None, domains=[A], tls_ctx=None)
        c.connect()
        self.assertIn("STARTTLS", c.extensions())
        c.close()
        c = self.odmr(e, user=None, domains=[A]).connect()
        self.assertIn("AUTH", c.extensions())
        self.assertIn("ATRN", c.extensions())
        code, text = c.atrn()
        self.assertEqual(code, 530, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        c = self.odmr(e, password="not the password", domains=[A]).connect()
        self.assertEqual(c.auth()[0], 535)
        self.assertEqual(c.atrn()[0], 530, "ATRN after a failed AUTH")
        # Still held: alice gets them.
        c = self.session(e, domains=[A])
        self.assertEqual(c.count(), 3)

    def test_refusals_450_and_453(self):
        e = self.etrnd()
        hold(e, OTHER, 5, "bobs")
        c = self.odmr(e, domains=[OTHER]).connect()
        c.auth()
        code, text = c.atrn()
        self.assertEqual(code, 450, "a domain alice does not own: %r" % text)
        code, text = c.cmd("ATRN nosuch.test")
        self.assertEqual(code, 450, "a domain nobody provisioned: %r" % text)
        code, text = c.cmd("ATRN " + C)
        self.assertEqual(code, 453, "owned, nothing held: %r" % text)
        self.assertEqual(c.cmd("NOOP")[0], 250, "the session goes on after a refusal")
        self.assertEqual(c.cmd("QUIT")[0], 221)
        # bob's mail was not touched.
        self.assertEqual(self.session(e, user=BOB, password=BOB_PW).count(), 5)

    def test_all_owned_or_named(self):
        e = self.etrnd()
        sent = {d: hold(e, d, n, d) for d, n in ((A, 20), (B, 15), (C, 10), (OTHER, 7))}
        c = self.session(e, domains=[A, B])
        self.assert_reversed_session(c)
        self.assert_arrived_once(dict(sent[A], **sent[B]), c)
        # ATRN alone: every owned domain. Right after a session its
        # domains may still be held until its DONEs are durable (451).
        c = self.atrn_until(e)
        self.assert_reversed_session(c)
        self.assert_arrived_once(sent[C], c)
        self.assertEqual(self.atrn_until(e).atrn_reply[0], 453)
        self.assertRegex(self.status(e), r"domain %s: messages 7," % re.escape(OTHER))

    def drop_then_next(self, knob):
        e = self.etrnd()
        sent = hold(e, A, 100, "half")
        first = self.session(e, domains=[A], **{knob: 50})
        self.assertEqual(first.count(), 50)
        # The rest stay held and arrive, once, at the next ATRN.
        second = self.atrn_until(e, domains=[A])
        self.assert_reversed_session(second)
        self.assert_arrived_once(sent, first, second)
        self.assertEqual(self.atrn_until(e, domains=[A]).atrn_reply[0], 453)

    def test_customer_drops_after_half(self):
        self.drop_then_next("drop_after")

    def test_customer_421_after_half(self):
        self.drop_then_next("fail421_after")

    def test_etrn_and_atrn_at_once_no_duplicates(self):
        e = self.etrnd()
        sent = hold(e, A, 400, "race")
        cust = CustomerServer(self.cport).start()
        self.addCleanup(cust.stop)
        c = self.odmr(e, domains=[A])
        go = threading.Barrier(2, timeout=30)
        etrn_reply = []

        def etrn():
            with smtplib.SMTP(h.HOST, e.port, timeout=30) as s:
                s.ehlo("customer.test")
                go.wait()
                etrn_reply.append(s.docmd("ETRN", A))

        t = threading.Thread(target=etrn, daemon=True)
        t.start()
        c.connect()
        c.auth()
        go.wait()
        if c.atrn()[0] == 250:
            c.serve()
        h.join_threads([t], 30, "ETRN client")
        # Then whatever is left, until neither finds anything.
        sessions = [c]
        deadline = time.monotonic() + SESSION_S
        while True:
            self.assertLess(time.monotonic(), deadline, "mail still held")
            s = self.atrn_until(e, domains=[A])
            sessions.append(s)
            if s.atrn_reply[0] == 453 and not self.status_has(e, A):
                break
            time.sleep(0.2)
        e.wait_drains_ended()    # the ETRN drain's deliveries are all in
        etrn_got = cust.recorder.message_ids()
        atrn_got = [msgid(d) for s in sessions for _, _, d in s.messages]
        both = Counter(etrn_got + atrn_got)
        print("ETRN %r and ATRN %r at once: %d by ETRN, %d by ATRN"
              % (etrn_reply[0][0], c.atrn_reply[0], len(etrn_got), len(atrn_got)))
        self.assertEqual(sorted(m for m in both if both[m] > 1), [], "delivered twice")
        self.assertEqual(sorted(both), sorted(sent), "every message arrived")

    def test_exclusive_with_etrn_both_ways(self):
        """A drain running when ATRN comes: 451, nothing twice. An ATRN
        session running when ETRN comes: the ETRN starts no second drain
        (the RFC 1985 reply of a drain already running), nothing twice."""
        e = self.etrnd()
        sent = hold(e, A, 60, "etrnfirst")
        cust = CustomerServer(self.cport, delay=0.05).start()   # 3 s of drain
        self.addCleanup(cust.stop)
        with smtplib.SMTP(h.HOST, e.port, timeout=30) as s:
            s.ehlo("customer.test")
            self.assertEqual(s.docmd("ETRN", A)[0], 253)
        self.assertTrue(cust.wait_count(1, SESSION_S))
        c = self.session(e, domains=[A])
        first = c.atrn_reply
        self.assertEqual(c.atrn_reply[0], 451, "ATRN while ETRN drains: %r" % (c.atrn_reply,))
        self.assertEqual(c.messages, [])
        self.assertTrue(cust.wait_count(len(sent), SESSION_S), cust.recorder.count())
        sent2 = hold(e, A, 40, "atrnfirst")
        c = self.odmr(e, domains=[A], delay=0.05)                # 2 s of session
        c.start()
        self.assertTrue(c.wait_count(1, SESSION_S), c.error)
        with smtplib.SMTP(h.HOST, e.port, timeout=30) as s:
            s.ehlo("customer.test")
            code, msg = s.docmd("ETRN", A)
        self.assertIn(code, (250, 252), "ETRN during the ATRN session: %r" % msg)
        print("ATRN during an ETRN drain: %d %s; ETRN during an ATRN session: %d %s"
              % (first[0], first[1], code, msg.decode()))
        c.finish(SESSION_S)
        self.assert_reversed_session(c)
        e.wait_drains_ended()    # a drain the ETRN wrongly started is over
        both = Counter(cust.recorder.message_ids() + [msgid(d) for _, _, d in c.messages])
        self.assertEqual(sorted(m for m in both if both[m] > 1), [], "delivered twice")
        self.assertEqual(sorted(both), sorted(list(sent) + list(sent2)))
        self.assertEqual(cust.recorder.count(), len(sent), "the ETRN drained during ATRN")

    def test_silent_customer_and_two_users_at_once(self):
        """A customer that never sends its 220 after the 250 is cut after
        drain_greeting_timeout and its mail stays held; meanwhile another
        user's session runs beside it."""
        e = self.etrnd(drain_greeting_timeout="2s")
        sent = hold(e, A, 30, "silent")
        bobs = hold(e, OTHER, 30, "bob")
        mute = self.odmr(e, domains=[A], silent=True)
        t0 = time.monotonic()
        mute.start()
        bob = self.session(e, user=BOB, password=BOB_PW)
        self.assert_reversed_session(bob)
        self.assert_arrived_once(bobs, bob)
        mute.finish(SESSION_S)
        took = time.monotonic() - t0
        self.assertEqual(mute.atrn_reply[0], 250)
        self.assertIsNotNone(mute.error, "etrnd never closed the silent session")
        self.assertLess(took, 2 + RETRY_S, "cut after %.1f s" % took)
        print("silent customer cut after %.2f s (drain_greeting_timeout 2 s): %s"
              % (took, mute.error))
        c = self.atrn_until(e, domains=[A])
        self.assert_reversed_session(c)
        self.assert_arrived_once(sent, c)

    def status_has(self, e, domain):
        return re.search(r"^domain %s: messages [1-9]" % re.escape(domain),
                         self.status(e), re.M) is not None

    def test_status_and_mail_arriving_during_session(self):
        """A slow customer: etrnctl status shows the ATRN session, its
        domain and its progress; mail sent meanwhile arrives in this session
        or at the next, once."""
        e = self.etrnd()
        sent = hold(e, A, 40, "slow")
        c = self.odmr(e, domains=[A], delay=0.15)
        c.start()
        self.assertTrue(c.wait_count(3, SESSION_S), c.error)
        st = self.status(e)
        lines = [ln for ln in st.splitlines() if re.search(r"(?i)\batrn\b", ln)]
        self.assertTrue(lines, "no ATRN session in status:\n" + st)
        self.assertTrue(any(A in ln and re.search(r"\d", ln) for ln in lines),
                        "the ATRN line names neither the domain nor progress:\n" + st)
        sent.update(hold(e, A, 10, "during"))
        c.finish(SESSION_S)
        self.assert_reversed_session(c)
        deadline = time.monotonic() + RETRY_S
        while True:
            st = self.status(e)
            if not re.search(r"(?im)\batrn\b.*" + re.escape(A), st):
                break
            self.assertLess(time.monotonic(), deadline,
                            "the session is over but status still shows it:\n" + st)
            time.sleep(0.1)
        rest = self.atrn_until(e, domains=[A])
        self.assert_arrived_once(sent, c, rest)

    def test_turn_502_on_smtp_port(self):
        e = self.etrnd()
        with smtplib.SMTP(h.HOST, e.port, timeout=30) as s:
            s.ehlo("customer.test")
            code, msg = s.docmd("TURN")
            self.assertEqual(code, 502, msg)
            self.assertTrue(msg.startswith(b"5.5.1"), msg)
            self.assertNotIn("atrn", s.esmtp_features, "ATRN offered on the SMTP port")
            self.assertNotEqual(s.docmd("ATRN", A)[0], 250)
            self.assertEqual(s.noop()[0], 250)
        # And on the ODMR port too: RFC 2645 replaces TURN by ATRN.
        c = self.odmr(e).connect()
        c.auth()
        self.assertEqual(c.cmd("TURN")[0], 502)

    def test_smtp_atrn_option(self):
        """smtp_atrn = yes: ATRN on the SMTP port, answered as on ODMR."""
        e = self.etrnd(smtp_atrn="yes")
        sent = hold(e, A, 20, "smtpport")
        c = OdmrClient(e.port, ALICE, ALICE_PW, [A], tls_ctx=e.client_tls())
        self.addCleanup(c.close)
        c.start()
        c.finish(SESSION_S)
        self.assertIn("ATRN", c.extensions())
        self.assert_reversed_session(c)
        self.assert_arrived_once(sent, c)

    def test_kill9_mid_session_nothing_lost(self):
        crashes, n = 3, 600
        e = self.etrnd(drain_done_window=str(WINDOW))
        sent = hold(e, A, n, "crash")
        rng = random.Random(2645)
        got, cuts = [], []
        for k in range(crashes):
            if k:
                e.start()
            c = self.odmr(e, domains=[A], delay=KILL_CUSTOMER_DELAY_S)
            c.start()
            target = len(got) + rng.randint(n // 10, n // (crashes + 1))
            c.wait_count(target - len(got), SESSION_S)
            e.signal(signal.SIGKILL)
            self.assertEqual(e.wait(), -signal.SIGKILL)
            c.finish(30)
            self.assertEqual(c.atrn_reply[0], 250, c.atrn_reply)
            self.assertFalse(c.quit, "the kill came after the session had ended")
            got += [msgid(d) for _, _, d in c.messages]
            cuts.append(len(got))
        e.start()
        last = self.atrn_until(e, domains=[A])
        got += [msgid(d) for _, _, d in last.messages]
        self.assertEqual(self.atrn_until(e, domains=[A]).atrn_reply[0], 453)
        count = Counter(got)
        lost = [m for m in sent if m not in count]
        self.assertEqual(lost, [], "%d acknowledged message(s) lost" % len(lost))
        self.assertEqual(set(count), set(sent))
        dups = sum(v - 1 for v in count.values())
        print("kill -9 in ATRN sessions: %d crashes, %d held, 0 lost, %d duplicated "
              "(bound %d)" % (crashes, n, dups, crashes * WINDOW))
        self.assertLessEqual(dups, crashes * WINDOW, "more duplicates than drain_done_window")


if __name__ == "__main__":
    unittest.main()
