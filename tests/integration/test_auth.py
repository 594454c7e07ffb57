# SPDX-License-Identifier: MIT
"""SMTP AUTH (RFC 4954) PLAIN and LOGIN on etrnd, and ETRN by a domain's
owner. Users are made with `etrnctl user add NAME --domain D
--password-stdin` in a private redis-server; clients are Python's smtplib,
swaks and raw sockets (for the protocol corners). Loopback only: clients
bind to 127.0.0.1, 127.0.0.2 or 127.0.0.3 to be different addresses;
every process is stopped by PID.

What is checked: 235 / 535 5.7.8 for good and bad credentials with both
mechanisms and both clients; 538 5.7.11 before TLS, AUTH offered and taken
in the clear on a listen_trusted listener; 504, 501 (bad base64, "*"
cancels), 503 (twice, inside a transaction); after auth_failure_limit
failures an address gets 454 4.7.0 while another address still
authenticates; an owner's ETRN from outside etrn_from is accepted and
delivers, the same ETRN without AUTH gets 459; Received: says ESMTPSA
(RFC 3848) and the user; the password never reaches the log.
"""

import base64
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as h  # noqa: E402
from customer_server import CustomerServer  # noqa: E402
from test_redis import Redis, etrnctl  # noqa: E402

ALICE, ALICE_PW = "alice", "Tr0ub4dor&3-alice-pw"     # owns owned.test
BOB, BOB_PW = "bob", "correct horse battery bob"      # owns nothing
OWNED = "owned.test"
FAIL_LIMIT = 3
BRUTE_S = 8.0            # how long the brute-force attackers run
BRUTE_CONNS = 6          # their connections, one AUTH in flight each
GOOD_AUTH_MAX_S = 15.0   # a loaded 2-core machine, sanitizer build
SWAKS_S = 60
DELIVER_S = 60
OUTSIDE = "127.0.0.2"    # not in OWNED's etrn_from (127.0.0.1/32)
BODY = b"Subject: authenticated\r\n\r\nsent after AUTH\r\n"
QUEUED_RE = re.compile(r"queued as (%s)" % h.QID_RE)


def b64(data):
    return base64.b64encode(data).decode()


def plain(user, pw, authzid=""):
    return b64(("%s\0%s\0%s" % (authzid, user, pw)).encode())


class Raw:
    """A raw session: connect from `source`, optional STARTTLS + EHLO."""

    def __init__(self, tc, port, tls_ctx=None, source=h.HOST):
        self.sock = socket.create_connection((h.HOST, port), timeout=30,
                                             source_address=(source, 0))
        tc.addCleanup(self.close)
        self.rd = h.Reader(self.sock)
        tc.assertEqual(self.rd.reply()[0], 220)
        tc.assertEqual(self.cmd("EHLO raw.test")[0], 250)
        if tls_ctx is not None:
            tc.assertEqual(self.cmd("STARTTLS")[0], 220)
            self.sock = tls_ctx.wrap_socket(self.sock, server_hostname=h.TLS_NAME)
            self.rd = h.Reader(self.sock)
            tc.assertEqual(self.cmd("EHLO raw.test")[0], 250)

    def cmd(self, line):
        """Send one line; (code, last line of the reply)."""
        self.sock.sendall(line.encode() + b"\r\n")
        code, lines = self.rd.reply()
        return code, lines[-1]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class AuthTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-auth-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)
        self.cport = h.free_port()
        rc, _, err = etrnctl(self.redis, "domain", "add", OWNED, "--dest",
                             "127.0.0.1:%d" % self.cport, "--etrn-from", "127.0.0.1/32")
        self.assertEqual(rc, 0, err)
        h.add_user(self.redis.url(), ALICE, ALICE_PW, OWNED)
        h.add_user(self.redis.url(), BOB, BOB_PW)

    def etrnd(self, **cfg):
        d = tempfile.mkdtemp(prefix="etrnd-it-", dir=self.tmp)
        cfg.setdefault("control_socket", "auto")  # turns, metrics
        e = h.Etrnd(tmpdir=d, tls=True, redis=self.redis.url(),
                    relay_domains="demo.test", **cfg)
        self.addCleanup(e.cleanup)
        return e.start()

    def smtp(self, e, source=h.HOST, tls=True, port=None):
        s = smtplib.SMTP(h.HOST, port or e.port, timeout=30, source_address=(source, 0))
        self.addCleanup(s.close)
        s.ehlo("client.test")
        if tls:
            self.assertEqual(s.starttls(context=e.client_tls())[0], 220)
            s.ehlo("client.test")
        return s

    def login(self, s, mech, user, pw):
        """smtplib's AUTH with a chosen mechanism: (code, text)."""
        s.user, s.password = user, pw
        fn = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login}[mech]
        try:
            code, msg = s.auth(mech, fn, initial_response_ok=(mech == "PLAIN"))
        except smtplib.SMTPAuthenticationError as ex:
            code, msg = ex.smtp_code, ex.smtp_error
        return code, msg.decode() if isinstance(msg, bytes) else msg

    def send(self, s, rcpt="u@demo.test"):
        s.mail("sender@example.org")
        self.assertEqual(s.rcpt(rcpt)[0], 250)
        code, msg = s.data(BODY)
        self.assertEqual(code, 250, msg)
        return QUEUED_RE.search(msg.decode()).group(1)

    def received(self, e, qid):
        return h.received_of(e.record(qid))

    def authed_mail(self, e, s, proto):
        """AUTH as alice on s, one message; its Received: must say `with
        proto` and name alice. Returns that header (one line)."""
        self.assertEqual(self.login(s, "PLAIN", ALICE, ALICE_PW)[0], 235)
        qid = self.send(s)
        s.quit()
        rcvd = self.received(e, qid)
        self.assertRegex(rcvd, r"\bwith %s\b" % proto, rcvd)
        self.assertIn(ALICE, rcvd)
        return rcvd

    def test_plain_and_login_smtplib(self):
        e = self.etrnd()
        for mech in ("PLAIN", "LOGIN"):
            with self.subTest(mech=mech):
                s = self.smtp(e)
                code, msg = self.login(s, mech, ALICE, ALICE_PW)
                self.assertEqual(code, 235, msg)
                self.assertTrue(msg.startswith("2.7.0"), msg)
                s.quit()
                for user, pw in ((ALICE, "wrong-password"), ("nosuchuser", ALICE_PW),
                                 (BOB, ALICE_PW)):
                    s = self.smtp(e)
                    code, msg = self.login(s, mech, user, pw)
                    self.assertEqual(code, 535, (user, msg))
                    self.assertTrue(msg.startswith("5.7.8"), msg)
                    self.assertEqual(s.noop()[0], 250, "session goes on after 535")
                    s.quit()

    def swaks(self, e, mech, user, pw):
        p = subprocess.run([os.environ.get("SWAKS", "swaks"), "--server",
                            "%s:%d" % (h.HOST, e.port), "--tls", "--auth", mech,
                            "--auth-user", user, "--auth-password", pw,
                            "--from", "sender@example.org", "--to", "u@demo.test",
                            "--timeout", "30"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=SWAKS_S)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def test_plain_and_login_swaks(self):
        e = self.etrnd(auth_failure_limit="100")
        for mech in ("PLAIN", "LOGIN"):
            with self.subTest(mech=mech):
                rc, out = self.swaks(e, mech, ALICE, ALICE_PW)
                self.assertEqual(rc, 0, out)
                self.assertRegex(out, r"<~ +235 2\.7\.0")
                q = re.search(r"<~ +250 2\.0\.0 Ok: queued as (%s)" % h.QID_RE, out)
                self.assertTrue(q, out)
                self.assertRegex(self.received(e, q.group(1)), r"\bwith ESMTPSA\b")
                rc, out = self.swaks(e, mech, ALICE, "not-the-password")
                self.assertNotEqual(rc, 0, out)
                self.assertRegex(out, r"<~\* +535 5\.7\.8")
                self.assertNotRegex(out, r"queued as")

    def test_auth_before_tls_refused_538(self):
        e = self.etrnd()
        r = Raw(self, e.port)
        for line in ("AUTH PLAIN " + plain(ALICE, ALICE_PW), "AUTH LOGIN", "AUTH PLAIN"):
            code, text = r.cmd(line)
            self.assertEqual(code, 538, (line, text))
            self.assertTrue(text.startswith("5.7.11"), text)
        self.assertEqual(r.cmd("NOOP")[0], 250)
        # And the same user inside TLS on the same listener: accepted.
        r = Raw(self, e.port, e.client_tls())
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW))[0], 235)

    def test_protocol_replies(self):
        """RFC 4954 corners: 504 unknown mechanism; 501 bad base64; "*"
        cancels with 501; PLAIN without initial response (334 ""); 503 inside
        a transaction and after success; LOGIN's 334 prompts."""
        e = self.etrnd(auth_failure_limit="100")
        r = Raw(self, e.port, e.client_tls())
        code, text = r.cmd("AUTH CRAM-MD5")
        self.assertEqual(code, 504, text)
        self.assertEqual(r.cmd("AUTH PLAIN !!not-base64!!")[0], 501)
        self.assertEqual(r.cmd("AUTH PLAIN")[0:2], (334, ""))
        self.assertEqual(r.cmd("*")[0], 501, "* cancels")
        self.assertEqual(r.cmd("AUTH LOGIN")[0], 334)
        self.assertEqual(r.cmd("%%%")[0], 501, "bad base64 in a LOGIN step")
        code, text = r.cmd("AUTH LOGIN")
        self.assertEqual((code, base64.b64decode(text).lower()), (334, b"username:"))
        code, text = r.cmd(b64(ALICE.encode()))
        self.assertEqual((code, base64.b64decode(text).lower()), (334, b"password:"))
        self.assertEqual(r.cmd("*")[0], 501)
        self.assertEqual(r.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW))[0], 503,
                         "AUTH inside a mail transaction")
        self.assertEqual(r.cmd("RSET")[0], 250)
        self.assertEqual(r.cmd("AUTH PLAIN")[0], 334)
        self.assertEqual(r.cmd(plain(ALICE, ALICE_PW))[0], 235)
        self.assertEqual(r.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW))[0], 503,
                         "AUTH after a successful AUTH")
        self.assertEqual(r.cmd("NOOP")[0], 250)

    def test_plain_authzid_is_not_an_impersonation(self):
        """PLAIN with authzid alice but bob's credentials: never alice (535,
        or bob at most: alice's domain stays out of reach)."""
        e = self.etrnd(auth_failure_limit="100")
        r = Raw(self, e.port, e.client_tls(), source=OUTSIDE)
        code, text = r.cmd("AUTH PLAIN " + plain(BOB, BOB_PW, authzid=ALICE))
        self.assertIn(code, (235, 535), text)
        if code == 235:
            self.assertEqual(r.cmd("ETRN " + OWNED)[0], 459, "bob acted as alice")

    def test_trusted_listener_auth_in_clear(self):
        """listen_trusted: AUTH offered and accepted without TLS, Received:
        says ESMTPA; the ordinary listener of the same etrnd still says 538."""
        e = self.etrnd(listen_trusted="auto")
        s = self.smtp(e, tls=False, port=e.ports["listen_trusted"])
        self.assertTrue(s.has_extn("auth"), s.ehlo_resp)
        self.assertNotIn("TLS", self.authed_mail(e, s, "ESMTPA"))
        s = self.smtp(e, tls=False)
        self.assertFalse(s.has_extn("auth"), s.ehlo_resp)
        self.assertEqual(s.docmd("AUTH", "PLAIN " + plain(ALICE, ALICE_PW))[0], 538)

    def test_failure_limit_per_address(self):
        """After auth_failure_limit failures from 127.0.0.3, even the right
        password gets 454 4.7.0 there; 127.0.0.2 still authenticates, and a
        failure there is still a 535."""
        e = self.etrnd(auth_failure_limit=str(FAIL_LIMIT))
        bad = "127.0.0.3"
        for i in range(FAIL_LIMIT):
            r = Raw(self, e.port, e.client_tls(), source=bad)
            code, text = r.cmd("AUTH PLAIN " + plain(ALICE, "guess-%d" % i))
            self.assertEqual(code, 535, "failure %d: %s" % (i + 1, text))
            r.close()
        for mech in ("PLAIN", "LOGIN"):
            s = self.smtp(e, source=bad)
            code, msg = self.login(s, mech, ALICE, ALICE_PW)
            self.assertEqual(code, 454, "limited address, %s: %d %s" % (mech, code, msg))
            self.assertTrue(msg.startswith("4.7.0"), msg)
        s = self.smtp(e, source=OUTSIDE)
        self.assertEqual(self.login(s, "PLAIN", BOB, "wrong")[0], 535)
        s = self.smtp(e, source=OUTSIDE)
        self.assertEqual(self.login(s, "LOGIN", ALICE, ALICE_PW)[0], 235)
        # Mail without AUTH from the limited address is not affected.
        s = self.smtp(e, source=bad)
        self.send(s)

    def test_brute_force_beside_good_client(self):
        """Many failing AUTHs from one address while a good client sends
        mail over STARTTLS: its 250s keep coming; a good AUTH from another
        address is answered within a bound."""
        e = self.etrnd(threads="1", auth_failure_limit=str(FAIL_LIMIT))
        good = h.GoodClient(e.port, tls_context=e.client_tls())
        good.start()
        attacks = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            r = Raw(self, e.port, e.client_tls(), source="127.0.0.3")
            for i in range(8):
                code, text = r.cmd("AUTH PLAIN " + plain(ALICE, "x%d" % i))
                self.assertIn(code, (535, 454), text)
                attacks += 1
            r.close()
        t0 = time.monotonic()
        s = self.smtp(e, source=OUTSIDE)
        self.assertEqual(self.login(s, "PLAIN", ALICE, ALICE_PW)[0], 235)
        took = time.monotonic() - t0
        acks, gap = good.check(self, max_gap_s=15, min_acks=10)
        sys.stderr.write("brute force: %d AUTH attempts; good client %d 250s, longest "
                         "gap %.2fs; good AUTH from elsewhere in %.2fs\n"
                         % (attacks, acks, gap, took))
        self.assertLess(took, 15)

    def test_verifiers_saturated_beside_good_client(self):
        """No failure limit: every wrong password costs a crypt(3) on the
        verifier pool. With BRUTE_CONNS attackers keeping it busy, the good
        client's 250s keep coming (the checks are not on the engine thread)
        and alice, from elsewhere, still authenticates within a bound (454
        4.7.0 while the queue is full is allowed, then she retries)."""
        e = self.etrnd(threads="1", auth_failure_limit="100000")
        good = h.GoodClient(e.port, tls_context=e.client_tls())
        good.start()
        stop_at = time.monotonic() + BRUTE_S
        codes, errors = [], []

        def attacker():
            try:
                r = Raw(self, e.port, e.client_tls(), source="127.0.0.3")
                i = 0
                while time.monotonic() < stop_at:
                    codes.append(r.cmd("AUTH PLAIN " + plain(ALICE, "x%d" % i))[0])
                    i += 1
                    if i % 8 == 0:   # stay under smtp_max_errors
                        r.close()
                        r = Raw(self, e.port, e.client_tls(), source="127.0.0.3")
                r.close()
            except Exception as ex:  # noqa: BLE001 - reported below
                errors.append(repr(ex))

        ths = [threading.Thread(target=attacker, daemon=True) for _ in range(BRUTE_CONNS)]
        for t in ths:
            t.start()
        # Alice tries once the attack is under way (every attacker has had
        # answers), not after a fixed time.
        h.wait_for("the attack under way", lambda: len(codes) >= 2 * BRUTE_CONNS or errors)
        t0, got, tries = time.monotonic(), None, 0
        while got != 235 and time.monotonic() - t0 < GOOD_AUTH_MAX_S:
            s = self.smtp(e, source=OUTSIDE)
            got = self.login(s, "PLAIN", ALICE, ALICE_PW)[0]
            tries += 1
            self.assertIn(got, (235, 454))
            s.close()
        took = time.monotonic() - t0
        h.join_threads(ths, BRUTE_S + 60, "attacker")
        acks, gap = good.check(self, max_gap_s=15, min_acks=10)
        n = len(codes)
        sys.stderr.write("verifiers saturated: %d AUTH in %.0fs from %d connections (%.0f/s; "
                         "535: %d, 454: %d); good client %d 250s, longest gap %.2fs; alice "
                         "authenticated after %.2fs, %d tries\n"
                         % (n, BRUTE_S, BRUTE_CONNS, n / BRUTE_S, codes.count(535),
                            codes.count(454), acks, gap, took, tries))
        self.assertEqual(errors, [])
        self.assertEqual(set(codes) - {535, 454}, set(), "only 535 or 454")
        self.assertEqual(got, 235, "alice could not authenticate within %.0fs" % GOOD_AUTH_MAX_S)

    def test_etrn_by_owner_from_outside_etrn_from(self):
        """owned.test allows ETRN from 127.0.0.1/32 only. From 127.0.0.2:
        without AUTH 459; bob (owns nothing) 459; alice (the owner) 253,
        and the held mail reaches the customer's server. From 127.0.0.1
        without AUTH: 253 (etrn_from keeps working)."""
        e = self.etrnd()
        s = self.smtp(e)
        qid = self.send(s, "u@" + OWNED)
        s.quit()
        c = CustomerServer(self.cport).start()
        self.addCleanup(c.stop)
        s = self.smtp(e, source=OUTSIDE, tls=False)
        code, msg = s.docmd("ETRN", OWNED)
        self.assertEqual(code, 459, msg)
        s = self.smtp(e, source=OUTSIDE)
        self.assertEqual(s.docmd("ETRN", OWNED)[0], 459, "TLS alone is no credential")
        s = self.smtp(e, source=OUTSIDE)
        self.assertEqual(self.login(s, "PLAIN", BOB, BOB_PW)[0], 235)
        self.assertEqual(s.docmd("ETRN", OWNED)[0], 459, "bob does not own it")
        e.wait_drains_ended()  # a drain a refused ETRN wrongly started is over
        self.assertEqual(e.metric("etrnd_drains_started_total"), 0, "a refused ETRN drained")
        self.assertEqual(c.recorder.count(), 0, "nothing delivered yet")
        s = self.smtp(e, source=OUTSIDE)
        self.assertEqual(self.login(s, "LOGIN", ALICE, ALICE_PW)[0], 235)
        code, msg = s.docmd("ETRN", OWNED)
        self.assertEqual(code, 253, msg)
        self.assertTrue(c.wait_count(1, DELIVER_S), "the owner's ETRN delivered nothing")
        self.assertEqual(c.recorder.count(), 1)
        # The customer counts the message at its 250; etrnd logs it once
        # it has read that reply: wait for the line, do not just look.
        e.wait_log(r"%s: to=<u@%s>, .*status=sent" % (qid, re.escape(OWNED)))
        # etrn_from still works for a customer without credentials.
        s = self.smtp(e)
        self.send(s, "u@" + OWNED)
        s = self.smtp(e, tls=False)
        self.assertEqual(s.docmd("ETRN", OWNED)[0], 253, "ETRN from inside etrn_from")
        self.assertTrue(c.wait_count(2, DELIVER_S), "the etrn_from ETRN delivered nothing")

    def test_esmtpsa_received_and_password_not_logged(self):
        """Mail after AUTH over STARTTLS: Received: with ESMTPSA and the user.
        At log_level debug, after good and bad AUTHs of both mechanisms,
        neither the password nor any base64 form of it is in the log."""
        e = self.etrnd(log_level="debug", auth_failure_limit="100")
        self.assertRegex(self.authed_mail(e, self.smtp(e), "ESMTPSA"), r"TLSv1\.[23]")
        wrong = "Wr0ng-but-secret-pw"
        for mech in ("PLAIN", "LOGIN"):
            for pw in (ALICE_PW, wrong):
                s = self.smtp(e)
                self.assertIn(self.login(s, mech, ALICE, pw)[0], (235, 535))
                s.quit()
        r = Raw(self, e.port)   # in the clear: 538, still not logged
        r.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW))
        r.close()
        e.stop()
        log = e.stderr_text()
        self.assertIn("etrnd started:", log)
        for pw in (ALICE_PW, wrong):
            for secret in (pw, b64(pw.encode()), plain(ALICE, pw)):
                self.assertNotIn(secret, log, "a password form is in the log")
        hashed = self.redis_hget("etrnd:user:{" + ALICE + "}", "password")
        self.assertRegex(hashed, r"^\$(y|6)\$", "stored as a crypt(3) hash")
        self.assertNotIn(ALICE_PW, hashed)

    def redis_hget(self, key, field):
        """HGET over the redis-server's unix socket (RESP, no client lib)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as so:
            so.settimeout(10)
            so.connect(self.redis.sock)
            parts = [b"HGET", key.encode(), field.encode()]
            so.sendall(b"*%d\r\n" % len(parts) +
                       b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
            data = b""
            while not (data.startswith((b"-", b"$-1")) and data.endswith(b"\r\n")) \
                    and data.count(b"\r\n") < 2:
                chunk = so.recv(4096)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"$") and not data.startswith(b"$-1"), data)
        return data.split(b"\r\n")[1].decode()


if __name__ == "__main__":
    unittest.main()
