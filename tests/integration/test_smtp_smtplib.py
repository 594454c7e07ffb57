# SPDX-License-Identifier: MIT
"""etrnd's SMTP server against Python's smtplib and raw loopback sockets.

Every test starts its own etrnd (etrnd_harness.Etrnd) on a free 127.0.0.1
port and stops it by PID; every reply is checked for its exact code and its
enhanced status code (RFC 3463), and every accepted message is read back from
the spool with etrnd-spool and compared byte for byte with what was sent.
"""

import os
import re
import signal
import smtplib
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as H  # noqa: E402

SENDER = "sender@example.org"
RCPT = "user@demo.test"
QUEUED_RE = re.compile(rb"^2\.0\.0 Ok: queued as ([0-9A-F]{14})$")


def message(subject, body_lines):
    """A small RFC 5322 message with CRLF line endings, ending in CRLF."""
    head = [b"From: <" + SENDER.encode() + b">",
            b"To: <" + RCPT.encode() + b">",
            b"Subject: " + subject.encode(),
            b"Message-ID: <" + subject.replace(" ", ".").encode() + b"@example.org>",
            b""]
    return b"\r\n".join(head + list(body_lines)) + b"\r\n"


class SmtpCase(unittest.TestCase):
    cfg = {}

    def setUp(self):
        self.t0 = time.time()
        self.e = H.Etrnd.started(self, **self.cfg)

    def smtp(self, ehlo=True):
        s = smtplib.SMTP(timeout=15)
        self.addCleanup(s.close)
        code, banner = s.connect(H.HOST, self.e.port)
        self.assertEqual(code, 220)
        self.assertEqual(banner, ("%s ESMTP etrnd" % self.e.hostname).encode())
        if ehlo:
            code, _ = s.ehlo("client.example.org")
            self.assertEqual(code, 250)
        return s

    def raw(self, timeout=15):
        sock = self.e.connect(timeout=timeout)
        self.addCleanup(sock.close)
        r = H.Reader(sock)
        code, text = r.reply()
        self.assertEqual((code, text), (220, ["%s ESMTP etrnd" % self.e.hostname]))
        return sock, r

    def assertReply(self, got, code, enhanced):
        """got is smtplib's (code, bytes) or the harness's (code, [lines])."""
        gcode, text = got
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        elif isinstance(text, list):
            text = text[-1]
        self.assertEqual(gcode, code, "reply %r" % (got,))
        if enhanced is not None:
            self.assertTrue(text.startswith(enhanced + " "),
                            "want enhanced code %s, reply %d %s"
                            % (enhanced, gcode, text))

    def queued_qid(self, got):
        self.assertReply(got, 250, "2.0.0")
        m = QUEUED_RE.match(got[1])
        self.assertIsNotNone(m, "250 after DATA without a queue id: %r" % (got,))
        qid = m.group(1).decode()
        self.assertLess(int(qid[:2], 16), 256)
        return qid

    def send(self, s, sender, rcpts, msg, mail_options=()):
        self.assertReply(s.mail(sender, list(mail_options)), 250, "2.1.0")
        for r in rcpts:
            self.assertReply(s.rcpt(r), 250, "2.1.5")
        return self.queued_qid(s.data(msg))

    def assertStored(self, qid, sender, rcpts, msg):
        rec = self.e.record(qid)
        self.assertEqual(rec["type"], "MSG")
        self.assertEqual(rec["sender"], sender)
        self.assertEqual(rec["rcpts"], list(rcpts))
        received, _ = H.split_received(H.stored_body(rec))
        self.assertIn(self.e.hostname.encode(), received)
        self.assertEqual(H.client_body(rec), msg)
        # Written during this test, by the clock of this machine.
        self.assertGreaterEqual(rec["time_us"], int((self.t0 - 5) * 1e6))
        self.assertLessEqual(rec["time_us"], int((time.time() + 5) * 1e6))
        return rec

    def assertOnlyStored(self, qids):
        """The spool holds exactly these messages (so a rejected one is not
        there; the accepted one proves the spool reader is looking)."""
        self.assertEqual(sorted(r["qid"] for r in self.e.records()), sorted(qids))


class TestAccept(SmtpCase):
    def test_ehlo_advertises_extensions(self):
        s = self.smtp()
        for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes",
                    "smtputf8"):
            self.assertTrue(s.has_extn(ext), "EHLO lacks %s: %r"
                            % (ext, s.esmtp_features))
        self.assertEqual(s.esmtp_features["size"], str(50 * 1024 * 1024))
        self.assertReply(s.noop(), 250, "2.0.0")
        self.assertReply(s.docmd("QUIT"), 221, "2.0.0")

    def test_single_message_with_dot_lines(self):
        msg = message("dots", [
            b"first line",
            b".leading dot",
            b"..two leading dots",
            b".",
            b"  . not at start",
            b"",
            b"last line"])
        s = self.smtp()
        qid = self.send(s, SENDER, [RCPT], msg)
        self.assertReply(s.docmd("QUIT"), 221, "2.0.0")
        rec = self.assertStored(qid, SENDER, [RCPT], msg)
        # Stored still dot-stuffed, as it goes back on the wire.
        _, rest = H.split_received(H.stored_body(rec))
        self.assertIn(b"\r\n..leading dot\r\n...two leading dots\r\n..\r\n", rest)
        self.assertFalse(H.has_8bitmime(rec))

    def test_8bitmime_body(self):
        msg = message("eight bit", [
            "Grüße aus Köln — ünïcödé".encode("utf-8"),
            bytes(range(0x80, 0x100)),
            b".\xe9t\xe9"])
        s = self.smtp()
        qid = self.send(s, SENDER, [RCPT], msg, ["BODY=8BITMIME"])
        rec = self.assertStored(qid, SENDER, [RCPT], msg)
        self.assertTrue(H.has_8bitmime(rec), "flags %r" % rec.get("flags"))

    def test_two_messages_one_session_and_rset(self):
        s = self.smtp()
        m1 = message("one", [b"body one"])
        m2 = message("two", [b"body two"])
        q1 = self.send(s, SENDER, [RCPT], m1)
        # A transaction abandoned with RSET leaves nothing behind.
        self.assertReply(s.mail(SENDER), 250, "2.1.0")
        self.assertReply(s.rcpt("other@demo.test"), 250, "2.1.5")
        self.assertReply(s.rset(), 250, "2.0.0")
        q2 = self.send(s, "", ["postmaster@demo.test"], m2)  # null sender
        self.assertNotEqual(q1, q2)
        self.assertStored(q1, SENDER, [RCPT], m1)
        self.assertStored(q2, "", ["postmaster@demo.test"], m2)
        self.assertOnlyStored([q1, q2])

    def test_hundred_recipients(self):
        rcpts = ["user%03d@demo.test" % i for i in range(100)]
        msg = message("hundred", [b"to many"])
        s = self.smtp()
        qid = self.send(s, SENDER, rcpts, msg)
        self.assertStored(qid, SENDER, rcpts, msg)

    def test_domain_case_insensitive(self):
        s = self.smtp()
        msg = message("case", [b"x"])
        self.assertReply(s.mail(SENDER), 250, "2.1.0")
        self.assertReply(s.rcpt("User@DEMO.Test."), 250, "2.1.5")
        qid = self.queued_qid(s.data(msg))
        # etrnd stores the domain normalised (lower case, no trailing dot:
        # domains are case-insensitive, RFC 5321 2.4) and the local part
        # exactly as sent (it MUST be preserved, RFC 5321 2.4).
        self.assertStored(qid, SENDER, ["User@demo.test"], msg)


class TestSizeLimit(SmtpCase):
    cfg = {"message_size_limit": "64k"}

    def test_size_advertised(self):
        s = self.smtp()
        self.assertEqual(s.esmtp_features["size"], "65536")

    def test_size_param_too_big(self):
        s = self.smtp()
        self.assertReply(s.mail(SENDER, ["SIZE=100000"]), 552, "5.3.4")
        self.assertReply(s.mail(SENDER, ["SIZE=1000"]), 250, "2.1.0")

    def test_actual_body_too_big(self):
        big = message("big", [b"y" * 998] * 100)   # ~100 KB > 64 KiB
        s = self.smtp()
        self.assertReply(s.mail(SENDER), 250, "2.1.0")   # no SIZE= given
        self.assertReply(s.rcpt(RCPT), 250, "2.1.5")
        # smtplib's data() returns the reply after the final dot.
        self.assertReply(s.data(big), 552, "5.3.4")
        # The session goes on; a small message still gets through.
        small = message("small", [b"fits"])
        self.assertReply(s.rset(), 250, "2.0.0")
        qid = self.send(s, SENDER, [RCPT], small)
        self.assertStored(qid, SENDER, [RCPT], small)
        self.assertOnlyStored([qid])


class TestRelayControl(SmtpCase):
    def test_foreign_domain_denied(self):
        s = self.smtp()
        self.assertReply(s.mail(SENDER), 250, "2.1.0")
        got = s.rcpt("victim@example.com")
        self.assertReply(got, 550, "5.7.1")
        self.assertIn(b"<victim@example.com>", got[1])
        self.assertIn(b"Relay access denied", got[1])
        # No valid recipient: DATA must not start a transaction.
        code, text = s.docmd("DATA")
        self.assertEqual(code // 100, 5, "DATA without recipients: %d %r"
                         % (code, text))
        self.assertReply(s.rset(), 250, "2.0.0")
        msg = message("after relay attempt", [b"ok"])
        qid = self.send(s, SENDER, [RCPT], msg)
        self.assertOnlyStored([qid])

    def test_mixed_recipients_keep_only_local(self):
        s = self.smtp()
        msg = message("mixed", [b"m"])
        self.assertReply(s.mail(SENDER), 250, "2.1.0")
        self.assertReply(s.rcpt("a@demo.test"), 250, "2.1.5")
        self.assertReply(s.rcpt("b@example.net"), 550, "5.7.1")
        self.assertReply(s.rcpt("c@demo.test"), 250, "2.1.5")
        qid = self.queued_qid(s.data(msg))
        self.assertStored(qid, SENDER, ["a@demo.test", "c@demo.test"], msg)


class TestPostmaster(SmtpCase):
    """RFC 5321 4.5.1: a server MUST accept <postmaster> (any case) and
    postmaster at the domains it serves itself; etrnd stores it for the
    configured postmaster address (held like any other mail until the
    outbound engine exists). postmaster@customer is the customer's own."""
    cfg = {"postmaster": "Hostmaster@NOC.example.net"}

    def test_postmaster_accepted_and_stored_for_configured_address(self):
        s = self.smtp()
        msg = message("to the postmaster", [b"hello postmaster"])
        self.assertReply(s.mail(SENDER), 250, "2.1.0")
        self.assertReply(s.docmd("RCPT TO:<postmaster>"), 250, "2.1.5")
        self.assertReply(s.docmd("RCPT TO:<POSTMASTER@%s>" % self.e.hostname.upper()),
                         250, "2.1.5")
        self.assertReply(s.rcpt("postmaster@demo.test"), 250, "2.1.5")
        got = s.rcpt("postmaster@example.com")
        self.assertReply(got, 550, "5.7.1")
        qid = self.queued_qid(s.data(msg))
        self.assertStored(qid, SENDER, ["Hostmaster@noc.example.net",
                                        "Hostmaster@noc.example.net",
                                        "postmaster@demo.test"], msg)
        self.assertOnlyStored([qid])


class TestUntrustedRouting(SmtpCase):
    """Postfix's allow_untrusted_routing = no (etrnd's default): a local
    part that routes on (user%other@, other!user@, "user@other"@) to a
    customer domain gets Postfix's reply, 554 5.7.1 Relay access denied, and
    nothing is stored; a plain recipient in the same session still works."""

    def test_routing_in_local_part_refused(self):
        s = self.smtp()
        self.assertReply(s.mail(SENDER), 250, "2.1.0")
        for rcpt in ("user%victim.example@demo.test", "victim.example!user@demo.test",
                     '"user@victim.example"@demo.test'):
            got = s.docmd("RCPT TO:<%s>" % rcpt)
            self.assertReply(got, 554, "5.7.1")
            self.assertIn(("<%s>: Relay access denied" % rcpt).encode(), got[1])
        code, _ = s.docmd("DATA")
        self.assertEqual(code, 554)
        self.assertReply(s.rset(), 250, "2.0.0")
        msg = message("after routing attempts", [b"ok"])
        qid = self.send(s, SENDER, [RCPT], msg)
        self.assertOnlyStored([qid])


class TestUntrustedRoutingAllowed(SmtpCase):
    cfg = {"allow_untrusted_routing": "yes"}

    def test_routing_in_local_part_accepted_when_allowed(self):
        s = self.smtp()
        msg = message("routed", [b"r"])
        qid = self.send(s, SENDER, ["user%other.example@demo.test"], msg)
        self.assertStored(qid, SENDER, ["user%other.example@demo.test"], msg)


class TestRecipientLimit(SmtpCase):
    cfg = {"smtp_max_recipients": "5"}

    def test_sixth_recipient_gets_452(self):
        s = self.smtp()
        rcpts = ["r%d@demo.test" % i for i in range(1, 7)]
        self.assertReply(s.mail(SENDER), 250, "2.1.0")
        for r in rcpts[:5]:
            self.assertReply(s.rcpt(r), 250, "2.1.5")
        got = s.rcpt(rcpts[5])
        self.assertReply(got, 452, "4.5.3")
        self.assertIn(b"too many recipients", got[1])
        msg = message("five", [b"5"])
        qid = self.queued_qid(s.data(msg))
        self.assertStored(qid, SENDER, rcpts[:5], msg)
        self.assertOnlyStored([qid])


class TestRawProtocol(SmtpCase):
    def test_pipelined_transaction(self):
        sock, r = self.raw()
        sock.sendall(b"EHLO client.example.org\r\n"
                     b"MAIL FROM:<sender@example.org>\r\n"
                     b"RCPT TO:<p1@demo.test>\r\n"
                     b"RCPT TO:<p2@demo.test>\r\n"
                     b"DATA\r\n")
        code, ehlo = r.reply()
        self.assertEqual(code, 250)
        self.assertIn("PIPELINING", ehlo)
        self.assertReply(r.reply(), 250, "2.1.0")
        self.assertReply(r.reply(), 250, "2.1.5")
        self.assertReply(r.reply(), 250, "2.1.5")
        code, text = r.reply()
        self.assertEqual((code, text), (354, ["End data with <CR><LF>.<CR><LF>"]))
        body = message("pipelined", [b"piped", b".dot"])
        stuffed = body.replace(b"\r\n.", b"\r\n..")
        sock.sendall(stuffed + b".\r\nQUIT\r\n")
        code, text = r.reply()
        qid = self.queued_qid((code, text[-1].encode()))
        self.assertReply(r.reply(), 221, "2.0.0")
        self.assertEqual(r.rest(), b"")  # server closes after 221
        self.assertStored(qid, SENDER, ["p1@demo.test", "p2@demo.test"], body)

    def test_command_line_too_long(self):
        sock, r = self.raw()
        sock.sendall(b"EHLO client.example.org\r\n")
        self.assertEqual(r.reply()[0], 250)
        sock.sendall(b"NOOP " + b"x" * 600 + b"\r\n")
        got = r.reply()
        self.assertReply(got, 500, "5.5.2")
        self.assertIn("line too long", got[1][-1])
        # The rest of the overlong line is not read as a command; the
        # session goes on.
        sock.sendall(b"NOOP\r\n")
        self.assertReply(r.reply(), 250, "2.0.0")
        sock.sendall(b"MAIL FROM:<" + b"a" * 520 + b"@example.org>\r\n")
        self.assertReply(r.reply(), 500, "5.5.2")
        sock.sendall(b"QUIT\r\n")
        self.assertReply(r.reply(), 221, "2.0.0")

    def _bare_data(self, payload):
        sock, r = self.raw()
        sock.sendall(b"EHLO client.example.org\r\n")
        self.assertEqual(r.reply()[0], 250)
        sock.sendall(b"MAIL FROM:<sender@example.org>\r\n")
        self.assertReply(r.reply(), 250, "2.1.0")
        sock.sendall(b"RCPT TO:<user@demo.test>\r\n")
        self.assertReply(r.reply(), 250, "2.1.5")
        sock.sendall(b"DATA\r\n")
        self.assertEqual(r.reply()[0], 354)
        sock.sendall(payload)
        got = r.reply()
        self.assertReply(got, 554, "5.6.0")
        self.assertIn("bare <LF> or <CR>", got[1][-1])

    def test_bare_lf_rejected(self):
        self._bare_data(b"Subject: smuggle\r\n\r\nline one\nline two\r\n.\r\n")
        self._bare_data(b"Subject: smuggle\r\n\r\nx\n.\nMAIL FROM:<a@b>\r\n.\r\n")
        self._bare_data(b"Subject: cr\r\n\r\nline one\rline two\r\n.\r\n")
        s = self.smtp()
        msg = message("clean", [b"ok"])
        qid = self.send(s, SENDER, [RCPT], msg)
        self.assertOnlyStored([qid])


class TestCommandErrors(SmtpCase):
    cfg = {"smtp_max_errors": "3"}

    def test_sequence_errors_then_error_limit(self):
        sock, r = self.raw()
        sock.sendall(b"MAIL FROM:<sender@example.org>\r\n")   # before EHLO
        self.assertReply(r.reply(), 503, "5.5.1")
        sock.sendall(b"EHLO client.example.org\r\n")
        self.assertEqual(r.reply()[0], 250)
        sock.sendall(b"DATA\r\n")                              # before MAIL
        self.assertReply(r.reply(), 503, "5.5.1")
        sock.sendall(b"XYZZY\r\n")                             # 3rd error
        self.assertReply(r.reply(), 500, "5.5.2")
        got = r.reply()
        self.assertReply(got, 421, "4.7.0")
        self.assertEqual(got[1], ["4.7.0 %s Error: too many errors" % self.e.hostname])
        self.assertEqual(r.rest(), b"")

    def test_bad_syntax(self):
        sock, r = self.raw()
        sock.sendall(b"EHLO client.example.org\r\n")
        self.assertEqual(r.reply()[0], 250)
        sock.sendall(b"MAIL FROM:<sender@example.org\r\n")     # no ">"
        code, text = r.reply()
        self.assertEqual(code, 501, text)
        self.assertRegex(text[-1], r"^5\.[15]\.[0-9]+ ")
        sock.sendall(b"RSET\r\n")
        self.assertReply(r.reply(), 250, "2.0.0")

    def test_http_request_ends_session(self):
        sock, r = self.raw()
        sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        self.assertReply(r.reply(), 221, "2.7.0")
        self.assertEqual(r.rest(), b"")


# idle_timeout of TestIdleTimeout, and how long its client waits at most for
# the 421 (a hang guard only: a loaded machine may be late by any amount).
IDLE_S = 2.0
IDLE_HANG_S = 30


class TestIdleTimeout(SmtpCase):
    cfg = {"idle_timeout": "%ds" % IDLE_S}

    def test_idle_client_gets_421(self):
        # Timed from before the connection: etrnd's idle clock starts at
        # its accept, later, so the wait is at least idle_timeout however
        # slow the machine; only a timer firing early can make it less.
        t0 = time.monotonic()
        sock, r = self.raw(timeout=IDLE_HANG_S)
        got = r.reply()
        waited = time.monotonic() - t0
        self.assertReply(got, 421, "4.4.2")
        self.assertEqual(got[1], ["4.4.2 %s Error: timeout exceeded" % self.e.hostname])
        self.assertGreaterEqual(waited, IDLE_S)
        self.assertEqual(r.rest(), b"")  # then the server closes
        print("idle_timeout %.0f s: 421 after %.2f s" % (IDLE_S, waited))

    def test_activity_resets_idle_timer(self):
        """NOOPs a quarter of idle_timeout apart for twice idle_timeout:
        each answered 250, so each reset the clock (without the reset the
        421 would have come halfway). The pace is the test; a quarter
        leaves three quarters of margin for a slow machine. Then silence:
        421."""
        sock, r = self.raw(timeout=IDLE_HANG_S)
        t0 = time.monotonic()
        noops = 0
        while time.monotonic() - t0 < 2 * IDLE_S:
            time.sleep(IDLE_S / 4)
            sock.sendall(b"NOOP\r\n")
            self.assertReply(r.reply(), 250, "2.0.0")
            noops += 1
        self.assertGreaterEqual(noops, 8)
        self.assertReply(r.reply(), 421, "4.4.2")


class TestShutdown(SmtpCase):
    cfg = {"shutdown_timeout": "15s"}

    def _open_data(self):
        """A session that has sent DATA and got 354."""
        sock, r = self.raw(timeout=20)
        sock.sendall(b"EHLO client.example.org\r\n")
        self.assertEqual(r.reply()[0], 250)
        sock.sendall(b"MAIL FROM:<sender@example.org>\r\n")
        self.assertReply(r.reply(), 250, "2.1.0")
        sock.sendall(b"RCPT TO:<user@demo.test>\r\n")
        self.assertReply(r.reply(), 250, "2.1.5")
        sock.sendall(b"DATA\r\n")
        self.assertEqual(r.reply()[0], 354)
        return sock, r

    def _sigterm(self):
        """SIGTERM, and wait until etrnd has taken it (its "stopping"
        line). That it did not exit with the transaction in flight is then
        shown by the transaction's own 250 that each test waits for."""
        mark = self.e.log_mark()
        self.e.signal(signal.SIGTERM)
        self.e.wait_log(r": stopping \(no new connections", since=mark)
        # The line above is the signal's; each engine thread closes its
        # listeners on its next turn (a client connecting in between is
        # greeted, then told 421 4.3.2 at once).
        self.e.wait_log(r"engine \d+: stopped accepting", since=mark,
                        count=int(self.e.cfg.get("threads", "1")))
        self.assertTrue(self.e.alive(), "etrnd exited with a transaction in "
                        "flight; stderr:\n" + self.e.stderr_text())

    def test_sigterm_mid_data_completes_transaction(self):
        sock, r = self._open_data()
        body = message("shutdown", [b"part %d" % i for i in range(200)])
        half = len(body) // 2
        sock.sendall(body[:half])
        time.sleep(0.3)  # a client pausing mid-DATA: the pace is the test
        self._sigterm()
        sock.sendall(body[half:] + b".\r\n")
        code, text = r.reply()
        qid = self.queued_qid((code, text[-1].encode()))
        # Then the server says goodbye (421 4.3.2) or just closes.
        tail = r.rest()
        self.assertTrue(tail == b"" or tail.startswith(b"421 4.3.2 "),
                        "after the 250 during shutdown: %r" % tail)
        rc = self.e.wait(timeout=20)
        self.assertEqual(rc, 0, "exit status after SIGTERM; stderr:\n"
                         + self.e.stderr_text())
        self.assertStored(qid, SENDER, [RCPT], body)

    def test_no_new_sessions_during_shutdown(self):
        # Keep a transaction in flight so etrnd stays in its shutdown phase.
        sock, r = self._open_data()
        self._sigterm()
        # "Stop accepting": a new client is refused (listener closed) or
        # told 421 4.3.2 at once; it must not sit unanswered in a listen
        # queue until etrnd exits.
        try:
            with socket.create_connection((H.HOST, self.e.port), timeout=3) as c2:
                first = H.Reader(c2).rest()
                self.assertTrue(first == b"" or first.startswith(b"421 4.3.2 "),
                                "new connection during shutdown got %r" % first)
        except (ConnectionRefusedError, ConnectionResetError):
            pass
        except socket.timeout:
            self.fail("a new connection during shutdown was accepted by the "
                      "kernel but got neither a reply nor a close within 3 s: "
                      "the listening socket stays open while etrnd drains")
        finally:
            sock.sendall(b"Subject: x\r\n\r\nx\r\n.\r\n")
            self.queued_qid((lambda c, t: (c, t[-1].encode()))(*r.reply()))
            self.assertEqual(self.e.wait(timeout=20), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
