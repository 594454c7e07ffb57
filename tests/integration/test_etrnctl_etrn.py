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

import json
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

RUN_S = 120  # one etrnctl run (--atrn waits up to 60 s) on a loaded machine, sanitizers on


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
            ("459 4.7.1 Node a.example not allowed: not authorised", 1, "node not allowed"),
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
        s = self.upstream({"b.example": "459 4.7.1 Node b.example not allowed"})
        rc, out, err = run("etrn", self.target(s), "a.example", "@b.example", "b.example",
                           "#q1", "--tls", "may")
        self.assertEqual(rc, 1, out + err)
        self.assertEqual([n for n, _ in s.recorder.etrn_seen],
                         ["a.example", "@b.example", "b.example", "#q1"])
        lines = out.splitlines()
        self.assertEqual(len(lines), 4, out)
        self.assertTrue(lines[0].startswith("a.example: 250 2.0.0 "), out)
        self.assertTrue(lines[2].startswith("b.example: 459 4.7.1 Node b.example not allowed ("),
                        out)
        self.assertTrue(lines[3].startswith("#q1: 250 "), out)
        # All succeed: 0.
        rc, out, err = run("etrn", self.target(s), "a.example", "#q1")
        self.assertEqual(rc, 0, out + err)

    def test_auth(self):
        s = ScriptedServer(h.free_port(), etrn={}, auth=("cust", "p w 1985")).start()
        self.addCleanup(s.stop)
        base = ("etrn", self.target(s), "a.example", "--tls", "none", "--user", "cust",
                "--password-stdin")
        rc, out, err = run(*base, stdin=b"wrong\n")
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(err, r"etrnctl: etrn: 127\.0\.0\.1 port \d+: 535 ")
        self.assertEqual(s.recorder.etrn_seen, [], "no ETRN after a refused AUTH")
        rc, out, err = run(*base, stdin=b"p w 1985\r\n")
        self.assertEqual(rc, 0, out + err)
        self.assertEqual([ok for _, ok in s.auth_tries], [False, True])
        self.assertEqual(s.recorder.etrn_seen, [("a.example", False)])
        # Credentials never go out in the clear unless --tls none says so.
        rc, out, err = run("etrn", self.target(s), "a.example", "--user", "cust",
                           "--password-stdin", stdin=b"p w 1985\n")
        self.assertEqual(rc, 1, out + err)
        self.assertEqual(len(s.auth_tries), 2, "no AUTH without TLS under --tls may")

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
                self.assertIn("TLS is required", err)
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
        # verify: the chain against --ca-file and the name (the test
        # certificate names 127.0.0.1 too) ...
        rc, out, err = run("etrn", self.target(s), "a.example", "--tls", "verify",
                           "--ca-file", cert)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(len(s.recorder.etrn_seen), 2)
        # ... and against another CA it does not verify: no ETRN.
        other, _ = h.make_cert(tmp, stem="other")
        rc, out, err = run("etrn", self.target(s), "a.example", "--tls", "verify",
                           "--ca-file", other)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("did not verify", err)
        self.assertEqual(len(s.recorder.etrn_seen), 2, "no ETRN after a failed verify")

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



class EtrnctlDaemon(unittest.TestCase):
    """etrnctl activators and etrn --atrn through a running etrnd's control
    socket: two etrnd instances (an upstream with an ODMR listener holding
    mail for the customer site, and the customer site), each with its own
    redis-server, ports, spool and control socket."""

    CUST = "cust.test"
    USER, PASSWORD = "custsite", "an ODMR password with spaces 2645"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnctl-atrn.")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def redis(self, name):
        d = os.path.join(self.tmp, name)
        os.mkdir(d)
        r = Redis(d).start()
        self.addCleanup(r.stop)
        return r

    def site(self, redis, **cfg):
        d = tempfile.mkdtemp(prefix="site-", dir=self.tmp)
        conf = dict(threads="2", redis=redis.url(), control_socket="auto")
        conf.update(cfg)
        e = h.Etrnd(tmpdir=d, **conf)
        self.addCleanup(e.cleanup)
        return e.start()

    def ctl(self, e, *args, stdin=None):
        return run("-c", e.conf_path, *args, stdin=stdin)

    def test_activators_list_and_run(self):
        dead = h.free_port()    # nothing listens: each run fails, refused
        keys = h.activator_keys("isp1", h.HOST, dead, request=["a.test", "@b.test"],
                                schedule="every 1h")
        # (not "#q1": etrnd.conf takes '#' anywhere as a comment's start)
        keys.update(h.activator_keys("isp2", h.HOST, dead, request=["c.test"],
                                     schedule="08:00-18:00 every 5m, after-outbound"))
        e = self.site(self.redis("redis"), relay_domains="a.test", **keys)
        h.wait_for("isp1's first run ended",
                   lambda: e.activator("isp1")["state"] == "idle"
                   and e.activator("isp1")["runs"] >= 1, within=RUN_S)
        rc, out, err = self.ctl(e, "activators")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual([ln.split(" ", 1)[0] for ln in lines], ["isp1", "isp2"], out)
        self.assertIn("method=etrn host=127.0.0.1:%d request=a.test,@b.test" % dead, lines[0])
        self.assertIn('schedule="every 1h"', lines[0])
        self.assertRegex(lines[0], r" failures=[1-9]")
        self.assertIn("request=c.test", lines[1])
        self.assertIn("after-outbound", lines[1])
        rc, out, err = self.ctl(e, "--json", "activators")
        self.assertEqual(rc, 0, err)
        got = json.loads(out)
        self.assertEqual([a["name"] for a in got], ["isp1", "isp2"])
        self.assertEqual(got[0]["meaning"], "run failed", got[0])
        rc, out, err = self.ctl(e, "--json", "activators", "isp2")
        self.assertEqual((rc, [a["name"] for a in json.loads(out)]), (0, ["isp2"]), err)
        # One run now: counted once more.
        runs = e.activator("isp1")["runs"]
        rc, out, err = self.ctl(e, "activators", "run", "isp1")
        self.assertEqual((rc, out), (0, "ok\n"), err)
        h.wait_for("the asked run ended", lambda: e.activator("isp1")["runs"] >= runs + 1
                   and e.activator("isp1")["state"] == "idle", within=RUN_S)
        for args in (("activators", "nosuch"), ("activators", "run", "nosuch")):
            rc, out, err = self.ctl(e, *args)
            self.assertEqual(rc, 1, args)
            self.assertIn("error: no activator nosuch", err)
        for args in (("activators", "bad name!"), ("activators", "run"),
                     ("activators", "run", "a", "b")):
            rc, out, err = self.ctl(e, *args)
            self.assertEqual(rc, 2, "%s: %s%s" % (args, out, err))

    def atrn_pair(self):
        """The upstream (holding 3 messages for CUST, its user owning it,
        ATRN on a trusted ODMR listener) and the customer site."""
        up = self.site(self.redis("redis-up"), relay_domains="upstream-local.test",
                       odmr_listen_trusted="auto")
        h.etrnctl_ok(self_url(up), "domain", "add", self.CUST, "--dest",
                     "127.0.0.1:%d" % h.free_port(), "--etrn-from", "127.0.0.0/8")
        h.add_user(self_url(up), self.USER, self.PASSWORD, domain=self.CUST)
        with smtplib.SMTP(h.HOST, up.port, timeout=30) as s:
            for i in range(3):
                s.sendmail("s@example.org", ["u@" + self.CUST],
                           b"Subject: held %d\r\n\r\nheld\r\n" % i)
        h.wait_for("3 held upstream",
                   lambda: h.indexed_messages(up.ctl_path(), self.CUST)[0] == 3)
        cust = self.site(self.redis("redis-cust"), relay_domains=self.CUST)
        return up, cust, "127.0.0.1:%d" % up.ports["odmr_listen_trusted"]

    def test_atrn_through_the_daemon(self):
        up, cust, target = self.atrn_pair()
        # A wrong password: the upstream's 535, exit 1, nothing moves.
        rc, out, err = self.ctl(cust, "etrn", "--atrn", target, self.CUST, "--user",
                                self.USER, "--password-stdin", "--tls", "none",
                                stdin=b"wrong\n")
        self.assertEqual(rc, 1, out + err)
        self.assertEqual(h.indexed_messages(up.ctl_path(), self.CUST)[0], 3)
        rc, out, err = self.ctl(cust, "etrn", "--atrn", target, self.CUST, "--user",
                                self.USER, "--password-stdin", "--tls", "none",
                                stdin=self.PASSWORD.encode() + b"\n")
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"^ATRN: 250 .*\(reversing the connection\); messages "
                              r"received: 3\n$")
        self.assertEqual(h.indexed_messages(cust.ctl_path(), self.CUST)[0], 3)
        # The password is in no log and no output.
        for text in (out, err, cust.stderr_text(), up.stderr_text()):
            self.assertNotIn(self.PASSWORD, text)
        self.assertIn("pass=*", cust.stderr_text())

    def test_atrn_without_daemon(self):
        conf = os.path.join(self.tmp, "etrnd.conf")
        with open(conf, "w") as f:
            f.write("redis = 127.0.0.1:1\ncontrol_socket = %s/none.sock\n" % self.tmp)
        rc, out, err = run("-c", conf, "etrn", "--atrn", "127.0.0.1:366", "--user", "u",
                           "--password-stdin", stdin=b"pw\n")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("etrnctl: --atrn needs a running etrnd (the reversed session is served "
                      "by it): control socket %s/none.sock: " % self.tmp, err)


def self_url(e):
    """The Redis URL an Etrnd was started with."""
    return e.cfg["redis"]


if __name__ == "__main__":
    unittest.main()
