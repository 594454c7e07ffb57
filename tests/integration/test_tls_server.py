# SPDX-License-Identifier: MIT
"""STARTTLS on etrnd's server side (RFC 3207) and the implicit-TLS listener,
against clients we did not write: Python's smtplib, swaks --tls and
`openssl s_client -starttls smtp`. The certificate is made by the test with
`openssl req` (etrnd_harness.make_cert) and clients verify it (chain and
name). Loopback only; every process is stopped by PID.

What is checked: EHLO offers STARTTLS and not AUTH in the clear, AUTH and
not STARTTLS inside TLS; mail sent over TLS is stored with "with ESMTPS"
and the TLS version and cipher in our Received: header (RFC 3848); TLS 1.3
by default, 1.2 on request, 1.1 refused; a command pipelined right after
STARTTLS is discarded and the session starts over (RFC 3207 4.2 and 5,
CVE-2011-0411); listen_tls speaks TLS from the first byte (smtplib.SMTP_SSL).
"""

import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as h  # noqa: E402
from test_redis import Redis  # noqa: E402

QUEUED_RE = re.compile(r"queued as (%s)" % h.QID_RE)
OPENSSL_S = 60          # one openssl s_client / s_server run
SWAKS_S = 60
# TLS 1.2 suites no server should take: no authentication, no encryption.
WEAK_CIPHERS = "ADH-AES128-SHA:AECDH-AES128-SHA:NULL-SHA:NULL-SHA256:@SECLEVEL=0"
BODY = b"Subject: over tls\r\n\r\nsent inside TLS\r\n"


def qid_of(msg):
    m = QUEUED_RE.search(msg.decode() if isinstance(msg, bytes) else msg)
    if not m:
        raise AssertionError("no queue id in %r" % msg)
    return m.group(1)


def s_client(port, *args):
    """openssl s_client -starttls smtp against port, stdin empty (it says
    QUIT and leaves at once); returns (exit status, all it printed)."""
    p = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (h.HOST, port),
                        "-starttls", "smtp", "-name", "client.test", "-brief"] + list(args),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=OPENSSL_S)
    return p.returncode, p.stdout.decode("utf-8", "replace")


class TlsServerTest(unittest.TestCase):
    def etrnd(self, **cfg):
        return h.Etrnd.started(self, tls=True, **cfg)

    def etrnd_with_users(self, **cfg):
        """An etrnd with a user database (a private redis-server), so AUTH
        is enabled and offered where it is safe."""
        redis = Redis(self.tmp()).start()
        self.addCleanup(redis.stop)
        return self.etrnd(redis=redis.url(), **cfg)

    def tmp(self):
        d = tempfile.mkdtemp(prefix="etrnd-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def starttls(self, e, ehlo=True):
        """smtplib session on the plain listener, after STARTTLS (verified)
        and, by default, the second EHLO."""
        s = smtplib.SMTP(h.HOST, e.port, timeout=30)
        self.addCleanup(s.close)
        s.ehlo("client.test")
        code, msg = s.starttls(context=e.client_tls())
        self.assertEqual(code, 220, msg)
        if ehlo:
            s.ehlo("client.test")
        return s

    def send(self, s, rcpt="u@demo.test", body=BODY):
        s.mail("sender@example.org")
        code, msg = s.rcpt(rcpt)
        self.assertEqual(code, 250, msg)
        code, msg = s.data(body)
        self.assertEqual(code, 250, msg)
        return qid_of(msg)

    def assertEsmtps(self, e, qid, version, cipher, body=BODY):
        rcvd = h.received_of(e.record(qid))
        self.assertRegex(rcvd, r"\bwith ESMTPS\b", rcvd)
        self.assertIn(version, rcvd, "TLS version not in Received:")
        self.assertIn(cipher, rcvd, "cipher not in Received:")
        if body is not None:
            self.assertEqual(h.client_body(e.record(qid)), body, "body changed")

    def test_ehlo_offers_starttls_then_auth(self):
        """Clear: STARTTLS, no AUTH (RFC 4954 4: AUTH only where it is safe).
        Inside TLS: AUTH PLAIN LOGIN, no second STARTTLS (RFC 3207 4.2),
        and a second STARTTLS is refused with 5xx."""
        e = self.etrnd_with_users()
        s = smtplib.SMTP(h.HOST, e.port, timeout=30)
        self.addCleanup(s.close)
        s.ehlo("client.test")
        self.assertTrue(s.has_extn("starttls"), s.ehlo_resp)
        self.assertFalse(s.has_extn("auth"), s.ehlo_resp)
        self.assertEqual(s.starttls(context=e.client_tls())[0], 220)
        s.ehlo("client.test")
        self.assertFalse(s.has_extn("starttls"), s.ehlo_resp)
        self.assertTrue(s.has_extn("auth"), s.ehlo_resp)
        mechs = s.esmtp_features["auth"].upper().split()
        self.assertIn("PLAIN", mechs)
        self.assertIn("LOGIN", mechs)
        code, msg = s.docmd("STARTTLS")
        self.assertTrue(500 <= code < 600, "second STARTTLS got %d %r" % (code, msg))
        self.assertEqual(s.noop()[0], 250, "the session survives it")

    def test_smtplib_starttls_stores_esmtps(self):
        """Mail over STARTTLS lands in the spool, Received: says ESMTPS with
        the version and cipher the client agreed; clear mail says ESMTP."""
        e = self.etrnd()
        s = self.starttls(e)
        version, cipher = s.sock.version(), s.sock.cipher()[0]
        self.assertEqual(version, "TLSv1.3", "TLS 1.3 by default")
        qids = [self.send(s) for _ in range(3)]
        s.quit()
        with smtplib.SMTP(h.HOST, e.port, timeout=30) as c:
            c.ehlo("clear.test")
            clear = self.send(c)
        for q in qids:
            self.assertEsmtps(e, q, version, cipher)
        rcvd = h.received_of(e.record(clear))
        self.assertRegex(rcvd, r"\bwith ESMTP id\b", rcvd)
        self.assertNotIn("TLS", rcvd)

    def test_swaks_tls(self):
        """swaks --tls (Perl's IO::Socket::SSL) delivers; Received: ESMTPS."""
        e = self.etrnd()
        p = subprocess.run([os.environ.get("SWAKS", "swaks"), "--server",
                            "%s:%d" % (h.HOST, e.port), "--tls", "--ehlo", "swaks.test",
                            "--from", "sender@example.org", "--to", "u@demo.test",
                            "--timeout", "30"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=SWAKS_S)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        m = re.search(r"TLS started with cipher (TLSv1\.[23]):([A-Za-z0-9_-]+)", out)
        self.assertTrue(m, "swaks did not start TLS:\n" + out)
        self.assertRegex(out, r"<~ +250 ", "EHLO answered inside TLS")
        q = re.search(r"<~ +250 2\.0\.0 Ok: queued as (%s)" % h.QID_RE, out)
        self.assertTrue(q, "no encrypted 250 after DATA:\n" + out)
        self.assertEsmtps(e, q.group(1), m.group(1), m.group(2), body=None)

    def test_openssl_s_client_versions(self):
        """s_client sees TLSv1.3 and verifies the chain and name; -tls1_2
        gets TLSv1.2; -tls1_1 is refused, and so are anonymous and NULL
        ciphers under 1.2, although the same client gets them from an
        `openssl s_server` that allows them (the control), so the refusal
        is etrnd's. etrnd runs with an empty OPENSSL_CONF, so
        Debian's system-wide MinProtocol does not do its job for it."""
        empty = os.path.join(self.tmp(), "empty-openssl.cnf")
        open(empty, "w").close()
        e = self.etrnd(env={"OPENSSL_CONF": empty})
        verify = ["-CAfile", e.cert, "-verify_return_error",
                  "-verify_hostname", h.TLS_NAME]
        rc, out = s_client(e.port, *verify)
        self.assertEqual(rc, 0, out)
        self.assertIn("Protocol version: TLSv1.3", out)
        self.assertIn("Verification: OK", out)
        rc, out = s_client(e.port, "-tls1_2", *verify)
        self.assertEqual(rc, 0, out)
        self.assertIn("Protocol version: TLSv1.2", out)
        old = ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]
        self.assertIn("Protocol version: TLSv1.1", self.control_server(e, old, old), "control")
        rc, out = s_client(e.port, *old)
        self.assertNotEqual(rc, 0, out)
        self.assertNotIn("Protocol version", out)
        # Anonymous and NULL ciphers under TLS 1.2: the same control first.
        weak = ["-tls1_2", "-cipher", WEAK_CIPHERS]
        ctl = self.control_server(e, ["-tls1_2", "-cipher", "ALL:eNULL:@SECLEVEL=0"], weak)
        self.assertRegex(ctl, r"Ciphersuite: (ADH|AECDH|NULL)-", "control")
        rc, out = s_client(e.port, *weak)
        self.assertNotEqual(rc, 0, out)
        self.assertNotIn("Ciphersuite", out)
        s = self.starttls(e)
        self.assertEqual(s.noop()[0], 250, "etrnd still serves TLS after the refusal")

    def control_server(self, e, server_args, client_args):
        """openssl s_server with the same certificate and server_args (what
        etrnd must refuse, allowed), one connection; the output of an
        s_client with client_args against it."""
        port = h.free_port()
        srv = subprocess.Popen(["openssl", "s_server", "-accept", "%s:%d" % (h.HOST, port),
                                "-cert", e.cert, "-key", e.key, "-naccept", "1"] + server_args,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
        try:
            line = srv.stdout.readline()
            while line and b"ACCEPT" not in line:
                line = srv.stdout.readline()
            self.assertIn(b"ACCEPT", line, "openssl s_server did not start")
            p = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (h.HOST, port),
                                "-brief"] + client_args, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=OPENSSL_S)
            return p.stdout.decode("utf-8", "replace")
        finally:
            if srv.poll() is None:
                srv.kill()
            srv.wait(timeout=OPENSSL_S)
            srv.stdout.close()
            srv.stdin.close()

    def test_command_pipelined_after_starttls_not_executed(self):
        """"STARTTLS\\r\\nMAIL FROM:<evil@...>\\r\\n" in one packet: the 220
        is the only clear reply, inside TLS the first reply is NOOP's (the
        pipelined commands did not run), RCPT gets 503 (no MAIL), and the
        session is back at its start (MAIL before the new EHLO gets 503).
        Checked against a mutant without the discard (core/loop.c's void
        of kept input, smtpd's and smtp_server_feed's "consume it all"):
        there the first reply inside TLS is the pipelined MAIL's 503."""
        e = self.etrnd()
        raw = e.connect(timeout=30)
        self.addCleanup(raw.close)
        rd = h.Reader(raw)
        self.assertEqual(rd.reply()[0], 220)
        raw.sendall(b"EHLO client.test\r\n")
        self.assertEqual(rd.reply()[0], 250)
        raw.sendall(b"STARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\n"
                    b"RCPT TO:<u@demo.test>\r\n")
        code, text = rd.reply()
        self.assertEqual(code, 220, text)
        raw.settimeout(0.5)
        try:
            extra = raw.recv(4096, socket.MSG_PEEK)
        except socket.timeout:
            extra = b""
        self.assertEqual(rd.buf + extra, b"", "clear bytes after the 220")
        raw.settimeout(30)
        tls = e.client_tls().wrap_socket(raw, server_hostname=h.TLS_NAME)
        rd = h.Reader(tls)
        # Had the pipelined MAIL and RCPT run, their replies would come
        # before NOOP's.
        tls.sendall(b"NOOP\r\n")
        got = rd.reply()
        self.assertEqual(got, (250, ["2.0.0 Ok"]), "first reply inside TLS: a "
                         "command pipelined after STARTTLS ran")
        tls.settimeout(0.5)
        try:
            extra = tls.recv(4096)
        except socket.timeout:
            extra = b""
        self.assertEqual(rd.buf + extra, b"", "replies nobody asked for inside TLS")
        tls.settimeout(30)
        for cmd, code, text in ((b"RCPT TO:<u@demo.test>", 503, None),
                                (b"MAIL FROM:<good@example.org>", 503, "HELO/EHLO"),
                                (b"EHLO client.test", 250, None),
                                (b"RCPT TO:<u@demo.test>", 503, "MAIL"),
                                (b"MAIL FROM:<good@example.org>", 250, None),
                                (b"RCPT TO:<u@demo.test>", 250, None),
                                (b"DATA", 354, None)):
            tls.sendall(cmd + b"\r\n")
            got, lines = rd.reply()
            self.assertEqual(got, code, "%s -> %d %s" % (cmd, got, lines))
            if text:
                self.assertIn(text, lines[-1], cmd)
        tls.sendall(BODY + b".\r\n")
        code, lines = rd.reply()
        self.assertEqual(code, 250, lines)
        qid = qid_of(lines[-1])
        version, cipher = tls.version(), tls.cipher()[0]
        tls.sendall(b"QUIT\r\n")
        self.assertEqual(rd.reply()[0], 221)
        tls.close()
        recs = e.records()
        self.assertEqual([r["sender"] for r in recs], ["good@example.org"],
                         "only the message sent after the handshake")
        self.assertEsmtps(e, qid, version, cipher)

    def test_implicit_tls_listener(self):
        """listen_tls: TLS from the first byte (port-465 style); EHLO offers
        AUTH and not STARTTLS; mail is stored with ESMTPS; the plain
        listener beside it still works in the clear."""
        e = self.etrnd_with_users(listen_tls="auto")
        s = smtplib.SMTP_SSL(h.HOST, e.ports["listen_tls"], timeout=30,
                             context=e.client_tls())
        self.addCleanup(s.close)
        s.ehlo("client.test")
        self.assertFalse(s.has_extn("starttls"), s.ehlo_resp)
        self.assertTrue(s.has_extn("auth"), s.ehlo_resp)
        version, cipher = s.sock.version(), s.sock.cipher()[0]
        qid = self.send(s)
        s.quit()
        self.assertEsmtps(e, qid, version, cipher)
        with smtplib.SMTP(h.HOST, e.port, timeout=30) as c:
            c.ehlo("clear.test")
            self.assertTrue(c.has_extn("starttls"))
            self.send(c)
        # A clear client on the TLS port is a handshake failure: it costs
        # that connection only, within a bound (not the idle timeout).
        t0 = time.monotonic()
        with socket.create_connection((h.HOST, e.ports["listen_tls"]), timeout=30) as raw:
            raw.sendall(b"EHLO clear.test\r\n")
            try:
                while raw.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        self.assertLess(time.monotonic() - t0, 25, "clear text on listen_tls not closed")
        self.assertEqual(len(e.records()), 2)


if __name__ == "__main__":
    unittest.main()
