# SPDX-License-Identifier: MIT
"""The drain's STARTTLS client (RFC 3207) end to end: etrnd drains to a
customer server that is Python's aiosmtpd with a TLS context
(customer_server.py), under each per-domain tls policy in Redis: may
(opportunistic), must (never in the clear) and verify (certificate checked
against tls_ca_file and the destination name). The certificates are made
here with `openssl req`/`openssl x509`: a test CA, a server certificate for
localhost, one for the wrong name. Loopback only; every process is stopped
by PID."""

import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import unittest

import etrnd_harness as h
from customer_server import CustomerServer
from test_etrn import etrn, hold, wait_drained
from test_redis import Redis, etrnctl

OPENSSL_TIMEOUT_S = 60
DELIVER_WITHIN_S = 60
N_MSGS = 5
ESTABLISHED_RE = re.compile(
    r"(Verified|Untrusted) TLS connection established to \S+: (TLSv1\.[23]) with cipher (\S+) "
    r"\((\d+)/(\d+) bits\)")


def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=OPENSSL_TIMEOUT_S)
    if p.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), p.stderr.decode()))


def make_certs(d):
    """A CA, and two server certificates it signed: for localhost (and
    127.0.0.1), and for wrong.test. Returns their paths."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=etrnd test CA", "-keyout", "ca.key", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, san in (("good", "DNS:localhost,IP:127.0.0.1"), ("wrong", "DNS:wrong.test")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % san.split(",")[0][4:],
                "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % san)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", name + ".ext",
                "-out", name + ".pem", cwd=d)
    return {k: os.path.join(d, k + ".pem") for k in ("ca", "good", "wrong")}


def server_context(certs, which, tls12_client_cert=False):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs[which], certs[which][:-4] + ".key")
    if tls12_client_cert:
        # A server that wants a client certificate we do not have: with
        # TLS 1.2 the handshake itself fails (TLS 1.3 would fail later).
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs["ca"])
    return ctx


class DrainTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="etrnd-drain-tls-")
        cls.certs = make_certs(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-drain-tls-r-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        self.redis = Redis(tmp).start()
        self.addCleanup(self.redis.stop)
        self.cport = h.free_port()

    def provision(self, domain, tls, host="127.0.0.1"):
        rc, out, err = etrnctl(self.redis, "domain", "add", domain, "--dest",
                               "%s:%d" % (host, self.cport), "--etrn-from", "127.0.0.0/8",
                               "--tls", tls)
        self.assertEqual(rc, 0, err)

    def customer(self, ctx=None, **knobs):
        c = CustomerServer(self.cport, tls_context=ctx, **knobs).start()
        self.addCleanup(c.stop)
        return c

    def etrnd(self, **cfg):
        e = h.Etrnd(redis=self.redis.url(), relay_domains="static.test", threads="2", **cfg)
        e.cfg["control_socket"] = os.path.join(e.dir, "ctl.sock")
        self.addCleanup(e.cleanup)
        return e.start()

    def status(self, e, *args):
        p = subprocess.run([h.env_path("ETRNCTL"), "-c", e.conf_path] + list(args) + ["status"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.decode()

    def held(self, e, domain):
        """Messages still queued for domain, read from the spool after stop."""
        e.stop()
        recs = h.spool_json(e.spool_dir)
        done = {r["qid"] for r in recs if r["type"] == "DONE"}
        return [r for r in recs if r["type"] == "MSG" and r["qid"] not in done
                and r["rcpts"][0].endswith("@" + domain)]

    def drain(self, e, domain, tag):
        ids = hold(e, domain, N_MSGS, tag)
        code, msg, _ = etrn(e, domain)
        self.assertEqual(code, 253, msg)
        return ids

    def assert_held_for(self, e, domain, why_re):
        """The drain ended without delivering; the reason is in the log and
        in etrnctl status (text and JSON); the spool still has the mail."""
        wait_drained(self, e)
        log = e.stderr_text()
        self.assertRegex(log, r"drain %s \(shard \d+\) to \S+: %s.*; tls=\w+, mail stays held"
                         % (re.escape(domain), why_re))
        self.assertNotIn("status=sent", log)
        out = self.status(e)
        self.assertRegex(out, r"domain %s: messages %d, .*held: %s" % (re.escape(domain), N_MSGS,
                                                                       why_re))
        doms = json.loads(self.status(e, "--json"))["domains"]
        mine = [d for d in doms if d["domain"] == domain]
        self.assertEqual(len(mine), 1, doms)
        self.assertRegex(mine[0].get("held", ""), why_re)
        self.assertEqual(len(self.held(e, domain)), N_MSGS, "every message still held")

    def test_etrnctl_and_import_take_verify(self):
        """tls verify through etrnctl domain add and a CSV import row; a
        bad value is refused with the accepted ones named."""
        self.provision("a.test", "verify")
        csv = os.path.join(self.tmp, "doms-%d.csv" % self.cport)
        with open(csv, "w") as f:
            f.write("domain,dest,tls\nb.test,127.0.0.1:%d,verify\nc.test,mx,must\n" % self.cport)
        rc, out, err = etrnctl(self.redis, "import", csv)
        self.assertEqual(rc, 0, err)
        for dom, want in (("a.test", "verify"), ("b.test", "verify"), ("c.test", "must")):
            rc, out, err = etrnctl(self.redis, "--json", "domain", "show", dom)
            self.assertEqual(rc, 0, err)
            self.assertEqual(json.loads(out)["tls"], want, out)
        rc, out, err = etrnctl(self.redis, "domain", "add", "d.test", "--tls", "encrypt")
        self.assertEqual(rc, 2, err)
        self.assertIn("want may, must or verify", err)

    def test_may_delivers_over_tls_and_logs_it(self):
        self.provision("a.test", "may")
        e = self.etrnd()
        c = self.customer(server_context(self.certs, "good"))
        ids = self.drain(e, "a.test", "may")
        self.assertTrue(c.wait_count(N_MSGS, DELIVER_WITHIN_S), "got %d" % c.recorder.count())
        wait_drained(self, e)
        self.assertEqual(sorted(c.recorder.message_ids()), sorted(ids))
        seen = c.recorder.tls_seen()
        self.assertTrue(all(t and t[0] in ("TLSv1.2", "TLSv1.3") for t in seen), seen)
        log = e.stderr_text()
        m = ESTABLISHED_RE.search(log)
        self.assertIsNotNone(m, log[-3000:])
        # Not verified: may does not check the certificate (nor do we trust
        # the test CA here).
        self.assertEqual(m.group(1), "Untrusted")
        self.assertEqual((m.group(2), m.group(3)), seen[0])
        sent = re.findall(r"to=<[^>]*>, relay=\S+, delay=[\d.]+, delays=[\d./]+, "
                          r"dsn=2\.\d+\.\d+, status=sent \(250 [^\n]*\), "
                          r"tls=(TLSv1\.[23]):(\S+)$", log, re.M)
        self.assertEqual(len(sent), N_MSGS, log[-3000:])
        self.assertEqual(sent[0], seen[0])
        self.assertNotIn("held:", self.status(e))
        print("may: %d messages over %s with %s" % (N_MSGS, seen[0][0], seen[0][1]))

    def test_may_without_starttls_goes_in_the_clear(self):
        self.provision("a.test", "may")
        e = self.etrnd()
        c = self.customer()
        self.drain(e, "a.test", "clear")
        self.assertTrue(c.wait_count(N_MSGS, DELIVER_WITHIN_S), "got %d" % c.recorder.count())
        self.assertEqual(c.recorder.tls_seen(), [None] * N_MSGS)
        wait_drained(self, e)
        self.assertNotRegex(e.stderr_text(), r"tls=TLS")

    def test_must_without_starttls_keeps_mail_held(self):
        self.provision("m.test", "must")
        e = self.etrnd()
        c = self.customer()
        self.drain(e, "m.test", "must")
        self.assert_held_for(e, "m.test", r"TLS is required, but was not offered by host")
        self.assertEqual(c.recorder.count(), 0)

    def test_must_held_then_delivered_once_the_customer_has_tls(self):
        """The hold reason lasts until a drain gets past TLS: the customer
        turns STARTTLS on, the next ETRN delivers and status forgets why."""
        self.provision("m.test", "must")
        e = self.etrnd()
        c = self.customer()
        ids = self.drain(e, "m.test", "later")
        wait_drained(self, e)
        self.assertIn("held: TLS is required", self.status(e))
        c.stop()
        c = self.customer(server_context(self.certs, "good"))
        self.assertEqual(etrn(e, "m.test")[0], 253)
        self.assertTrue(c.wait_count(N_MSGS, DELIVER_WITHIN_S), "got %d" % c.recorder.count())
        wait_drained(self, e)
        self.assertEqual(sorted(c.recorder.message_ids()), sorted(ids))
        self.assertTrue(all(c.recorder.tls_seen()))
        self.assertNotIn("held:", self.status(e))

    def test_verify_with_the_wrong_name_keeps_mail_held(self):
        self.provision("v.test", "verify", host="localhost")
        e = self.etrnd(tls_ca_file=self.certs["ca"])
        c = self.customer(server_context(self.certs, "wrong"))
        self.drain(e, "v.test", "wrong")
        self.assert_held_for(e, "v.test", r"certificate verification failed for localhost: ")
        self.assertEqual(c.recorder.count(), 0)

    def test_verify_with_the_right_name_and_ca_delivers(self):
        self.provision("v.test", "verify", host="localhost")
        e = self.etrnd(tls_ca_file=self.certs["ca"])
        c = self.customer(server_context(self.certs, "good"))
        ids = self.drain(e, "v.test", "right")
        self.assertTrue(c.wait_count(N_MSGS, DELIVER_WITHIN_S), "got %d" % c.recorder.count())
        wait_drained(self, e)
        self.assertEqual(sorted(c.recorder.message_ids()), sorted(ids))
        m = ESTABLISHED_RE.search(e.stderr_text())
        self.assertIsNotNone(m)
        self.assertEqual(m.group(1), "Verified")

    def test_may_after_a_failed_handshake_goes_in_the_clear(self):
        """Postfix's fallback for may: the handshake fails (the server wants
        a client certificate), the next connection delivers in the clear."""
        self.provision("f.test", "may")
        e = self.etrnd()
        c = self.customer(server_context(self.certs, "good", tls12_client_cert=True))
        ids = self.drain(e, "f.test", "fallback")
        self.assertTrue(c.wait_count(N_MSGS, DELIVER_WITHIN_S), "got %d" % c.recorder.count())
        wait_drained(self, e)
        self.assertEqual(sorted(c.recorder.message_ids()), sorted(ids))
        self.assertEqual(c.recorder.tls_seen(), [None] * N_MSGS)
        self.assertRegex(e.stderr_text(), r"cannot start TLS: handshake failed with \S+: .*; "
                         r"the next connection goes in the clear")

    def test_must_with_a_failed_handshake_keeps_mail_held(self):
        self.provision("g.test", "must")
        e = self.etrnd()
        c = self.customer(server_context(self.certs, "good", tls12_client_cert=True))
        self.drain(e, "g.test", "mustfail")
        self.assert_held_for(e, "g.test", r"cannot start TLS: handshake failed with ")
        self.assertEqual(c.recorder.count(), 0)


if __name__ == "__main__":
    unittest.main()
