# SPDX-License-Identifier: MIT
"""etrnctl etrn (issue 14): the one-shot ETRN client's exit status for each
RFC 1985 reply class, against an upstream we did not write (aiosmtpd
through scripted_server.py, which answers ETRN with the reply a test
chooses and records what it was asked) and against a real etrnd upstream
(a private redis-server and etrnd: mail held -> 253, none -> 251, a domain
it does not know -> 459); a refused connection, --tls must and verify
against upstreams without STARTTLS or with a certificate for another name
(exit 1 and no ETRN sent), usage errors (exit 2 and a usage line), and
etrnctl activators / etrn --atrn through a running etrnd's control socket.
Loopback only; every process is stopped by PID."""

import os
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import unittest

import etrnd_harness as h
from customer_server import CustomerServer
from scripted_server import ScriptedServer
from test_redis import Redis, etrnctl

RUN_S = 60  # one etrnctl run on a loaded 2-core machine, sanitizers on


def run(*args, stdin=None, env=None):
    """etrnctl ARGS without a config: (exit status, stdout, stderr)."""
    e = dict(os.environ)
    e.pop("ETRND_CONF", None)
    e.update(env or {})
    p = subprocess.run([h.env_path("ETRNCTL")] + [str(a) for a in args],
                       input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=RUN_S, env=e, cwd=tempfile.gettempdir())
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


class EtrnctlEtrnScripted(unittest.TestCase):
    """Against aiosmtpd answering ETRN as scripted."""

    def upstream(self, replies=None, tls_context=None):
        s = ScriptedServer(h.free_port(), etrn=dict(replies or {}),
                           tls_context=tls_context).start()
        self.addCleanup(s.stop)
        return s

    def target(self, s):
        return "127.0.0.1:%d" % s.controller.port

    def test_reply_classes(self):
        cases = [
            ("250 2.0.0 queuing started", 0, "queuing started"),
            ("251 2.0.0 OK, no messages waiting for node a.example", 0, "no messages waiting"),
            ("252 2.0.0 OK, pending messages for node a.example started", 0,
             "pending messages started"),
            ("253 2.0.0 OK, 12 pending messages for node a.example started", 0,
             "pending messages started"),
            ("458 4.0.0 Unable to queue messages for node a.example", 1, "unable to queue"),
            ("459 5.7.1 Node a.example not allowed: not authorised", 1, "not allowed"),
            ("500 5.5.2 Syntax error", 1, None),
            ("501 5.5.4 Syntax: ETRN node", 1, None),
            ("530 5.7.0 Authentication required", 1, "authentication required"),
        ]
        for reply, want_rc, meaning in cases:
            with self.subTest(reply=reply):
                s = self.upstream({"a.example": reply})
                rc, out, err = run("etrn", self.target(s), "a.example", "--tls", "none")
                self.assertEqual(rc, want_rc, "%s\nstdout: %s\nstderr: %s" % (reply, out, err))
                code, rest = reply.split(" ", 1)
                self.assertIn("a.example: %s %s (" % (code, rest), out)
                if meaning:
                    self.assertIn("(%s" % meaning, out)
                self.assertEqual(s.recorder.etrn_seen, [("a.example", False)])
                s.stop()

    def test_several_nodes_one_fails(self):
        s = self.upstream({"b.example": "459 5.7.1 Node b.example not allowed"})
        rc, out, err = run("etrn", self.target(s), "a.example", "@b.example", "b.example",
                           "#q1", "--tls", "may")
        self.assertEqual(rc, 1, out + err)
        self.assertEqual([n for n, _ in s.recorder.etrn_seen],
                         ["a.example", "@b.example", "b.example", "#q1"])
        lines = out.splitlines()
        self.assertEqual(len(lines), 4, out)
        self.assertTrue(lines[0].startswith("a.example: 250 2.0.0 "), out)
        self.assertTrue(lines[2].startswith("b.example: 459 5.7.1 Node b.example not allowed ("),
                        out)
        self.assertTrue(lines[3].startswith("#q1: 250 "), out)
        # All succeed: 0.
        rc, out, err = run("etrn", self.target(s), "a.example", "#q1")
        self.assertEqual(rc, 0, out + err)

    def test_connection_refused(self):
        port = h.free_port()   # nothing listens there
        rc, out, err = run("etrn", "127.0.0.1:%d" % port, "a.example")
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(err, r"etrnctl: etrn: connect to 127\.0\.0\.1 port %d: "
                              r"Connection refused" % port)
        self.assertEqual(out, "")

    def test_tls_must_without_starttls(self):
        s = self.upstream()
        for level in ("must", "verify"):
            with self.subTest(tls=level):
                rc, out, err = run("etrn", self.target(s), "a.example", "--tls", level)
                self.assertEqual(rc, 1, out + err)
                self.assertIn("etrnctl: etrn: 127.0.0.1 port", err)
                self.assertIn("STARTTLS", err)
        self.assertEqual(s.recorder.etrn_seen, [], "no ETRN in the clear")

    def test_tls_must_and_verify_with_starttls(self):
        tmp = tempfile.mkdtemp(prefix="etrnctl-etrn-tls.")
        self.addCleanup(shutil.rmtree, tmp, True)
        cert, key = h.make_cert(tmp)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        s = self.upstream({"a.example": "253 2.0.0 OK, 3 pending messages started"},
                          tls_context=ctx)
        rc, out, err = run("etrn", self.target(s), "a.example", "--tls", "must")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("a.example: 253 2.0.0 OK, 3 pending messages started (", out)
        self.assertEqual(s.recorder.etrn_seen, [("a.example", True)], "ETRN inside TLS")
        # verify: the certificate is for mx.test.invalid, not 127.0.0.1.
        rc, out, err = run("etrn", self.target(s), "a.example", "--tls", "verify",
                           "--ca-file", cert)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("did not verify", err)
        self.assertEqual(len(s.recorder.etrn_seen), 1, "no ETRN after a failed verify")

    def test_timeout(self):
        # A listener that never greets: the timeout ends it, exit 1.
        import socket
        with socket.socket() as ls:
            ls.bind((h.HOST, 0))
            ls.listen(1)
            rc, out, err = run("etrn", "127.0.0.1:%d" % ls.getsockname()[1], "a.example",
                               "--timeout", "1s")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("timed out", out + err)

    def test_usage_errors(self):
        cases = [
            ("etrn",),
            ("etrn", "127.0.0.1:2525"),
            ("etrn", "127.0.0.1:0", "a.example"),
            ("etrn", "127.0.0.1:99999", "a.example"),
            ("etrn", "::1", "a.example"),
            ("etrn", "127.0.0.1", "a.example", "--tls", "maybe"),
            ("etrn", "127.0.0.1", "a.example", "--timeout", "soon"),
            ("etrn", "127.0.0.1", "a.example", "--timeout", "0"),
            ("etrn", "127.0.0.1", "a b"),
            ("etrn", "127.0.0.1", "@"),
            ("etrn", "127.0.0.1", "a.example", "--user", "u"),
            ("etrn", "127.0.0.1", "a.example", "--ca-file", "/etc/hosts"),
            ("etrn", "127.0.0.1", "--atrn", "--user", "u"),
            ("etrn", "127.0.0.1", "--atrn", "@a.example", "--user", "u", "--password-stdin"),
            ("etrn", "127.0.0.1", "a.example", "--bogus"),
            ("--json", "etrn", "127.0.0.1", "a.example"),
            ("status", "--atrn"),
            ("domain", "show", "a.example", "--helo", "x"),
        ]
        for args in cases:
            with self.subTest(args=args):
                rc, out, err = run(*args, stdin=b"pw\n")
                self.assertEqual(rc, 2, "%s: %s%s" % (args, out, err))
                self.assertIn("etrnctl", err)
                self.assertRegex(err, r"usage: etrnctl|see etrnctl --help|only go",
                                 "%s: %s" % (args, err))

    def test_help(self):
        rc, out, _ = run("--help")
        self.assertEqual(rc, 0)
        self.assertIn("etrn HOST[:PORT] DOMAIN|@DOMAIN|#QUEUE", out)
        self.assertIn("--atrn", out)
        self.assertIn("activators [NAME]", out)
        self.assertIn("activators run NAME", out)


class EtrnctlEtrnUpstream(unittest.TestCase):
    """Against a real etrnd holding mail (RFC 1985 replies of our own)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnctl-etrn.")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)
        self.customer = CustomerServer(h.free_port()).start()
        self.addCleanup(self.customer.stop)

    def test_held_none_unknown(self):
        for d in ("held.test", "empty.test"):
            rc, _, err = etrnctl(self.redis, "domain", "add", d, "--dest",
                                 "127.0.0.1:%d" % self.customer.controller.port,
                                 "--etrn-from", "127.0.0.0/8")
            self.assertEqual(rc, 0, err)
        e = h.Etrnd(redis=self.redis.url(), relay_domains="static.test")
        self.addCleanup(e.cleanup)
        e.start()
        with smtplib.SMTP(h.HOST, e.port, timeout=10) as s:
            s.sendmail("s@example.org", ["u@held.test"], b"Subject: held\r\n\r\nheld\r\n")
        target = "127.0.0.1:%d" % e.port
        rc, out, err = run("etrn", target, "held.test", "--tls", "none")
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"^held\.test: 253 2\.0\.0 OK, 1 pending messages? for node "
                              r"held\.test started \(pending messages started")
        self.assertTrue(self.customer.wait_count(1, h.LOG_WAIT_S), "the drain delivered")
        rc, out, err = run("etrn", target, "empty.test")
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"^empty\.test: 251 2\.0\.0 OK, no messages waiting for node "
                              r"empty\.test \(no messages waiting")
        rc, out, err = run("etrn", target, "unknown.test")
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(out, r"^unknown\.test: 459 \S+ .*\(node not allowed")


if __name__ == "__main__":
    unittest.main()
