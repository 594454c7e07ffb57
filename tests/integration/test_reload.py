# SPDX-License-Identifier: MIT
"""SIGHUP (admin/reload.h): the configuration re-read while mail flows.

A client stays mid-transaction (after DATA's 354, before the dot) through a
refused bad config and a taken good one: its message still gets 250. The
bad config is logged with its file:line and changes nothing; the good one
turns live keys on at once (log_level) and logs restart keys. A renewed
certificate is served to the next STARTTLS while a running TLS session
keeps its own. A new Redis address and key prefix are followed.
Environment (tests/integration/CMakeLists.txt): ETRND_BIN, ETRND_SPOOL_TOOL,
ETRNCTL, REDIS_SERVER.
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import test_redis as tr
from etrnd_harness import Etrnd, HOST, etrnctl, make_cert

LOG_WAIT_S = tr.LOG_WAIT_S  # a hang guard (etrnd_harness)
IO_TIMEOUT_S = 10.0


def wait_log(e, pattern, within=LOG_WAIT_S, after=0):
    """Poll etrnd's stderr (from offset after) for pattern; the match."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        m = re.search(pattern, e.stderr_text()[after:])
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError("no log line matching %r within %.0fs; stderr:\n%s"
                         % (pattern, within, e.stderr_text()))


def write_conf(e, extra_lines=(), **cfg):
    """e's config as the harness writes it (same port) with cfg's keys
    changed, plus extra lines; returns the number of the first extra line.
    e.cfg is left as it was."""
    saved = dict(e.cfg)
    e.cfg.update(cfg)
    try:
        e.write_config()
    finally:
        e.cfg = saved
    with open(e.conf_path) as f:
        n = len(f.read().splitlines())
    with open(e.conf_path, "a") as f:
        for line in extra_lines:
            f.write(line + "\n")
    return n + 1


def reload(e, pattern):
    """SIGHUP and wait for the reload's outcome line (after this signal)."""
    mark = len(e.stderr_text())
    e.signal(signal.SIGHUP)
    return wait_log(e, pattern, after=mark), mark


class Line:
    """A raw SMTP client, one reply at a time (multi-line aware)."""

    def __init__(self, port):
        self.s = socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S)
        self.f = self.s.makefile("rb")

    def reply(self):
        lines = []
        while True:
            ln = self.f.readline()
            if not ln:
                raise AssertionError("connection closed; got %r" % lines)
            lines.append(ln.decode("utf-8", "replace").rstrip("\r\n"))
            if len(ln) < 4 or ln[3:4] != b"-":
                return int(lines[-1][:3]), lines

    def cmd(self, line, want):
        self.s.sendall(line.encode() + b"\r\n")
        code, lines = self.reply()
        if code != want:
            raise AssertionError("%s: want %d, got %r" % (line, want, lines))
        return lines

    def close(self):
        self.f.close()
        self.s.close()


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def debug_lines(e, after):
    return re.findall(r"smtp [^:]+: \S+ -> \S+", e.stderr_text()[after:])


class ReloadTest(unittest.TestCase):
    def test_mid_transaction_bad_then_good(self):
        e = Etrnd.started(self)
        c = Line(e.port)
        self.addCleanup(c.close)
        greeting = c.reply()[1]
        self.assertIn("mx.test.invalid", greeting[0])
        c.cmd("EHLO client.test", 250)
        c.cmd("MAIL FROM:<s@example.org>", 250)
        c.cmd("RCPT TO:<u@demo.test>", 250)
        c.cmd("DATA", 354)
        c.s.sendall(b"Subject: reload\r\n\r\nfirst half\r\n")

        # A bad config (the debug level it asks for must not be taken).
        bad = write_conf(e, ["message_size_limit = lots"], log_level="debug",
                         hostname="new.test.invalid")
        m, mark = reload(e, r"reload: (.*); refused, the configuration in force stays")
        self.assertRegex(m.group(0), r"reload: %s:%d: bad value for message_size_limit"
                         % (re.escape(e.conf_path), bad))
        print("refused:", m.group(0))
        with smtplib.SMTP(HOST, e.port, timeout=IO_TIMEOUT_S) as s:
            code, msg = s.ehlo("probe.test")
            self.assertEqual(code, 250)
        self.assertEqual(debug_lines(e, mark), [], "the bad config's log_level was taken")

        # A good one: log_level live, hostname and spool_direct_io wait
        # for a restart.
        write_conf(e, log_level="debug", hostname="new.test.invalid", spool_direct_io="no")
        m, mark = reload(e, r"reload: \S+ taken: TLS certificates read again, 1 other "
                         r"live change\(s\) applied, 2 key\(s\) wait for a restart")
        for key in ("hostname", "spool_direct_io"):
            self.assertIn("reload: %s changed: takes effect at restart" % key,
                          e.stderr_text()[mark:])
        with smtplib.SMTP(HOST, e.port, timeout=IO_TIMEOUT_S) as s:
            self.assertIn(b"mx.test.invalid", s.ehlo("probe.test")[1],
                          "a restart key changed without a restart")
        wait_log(e, r"smtp [^:]+: \S+ -> \S+", after=mark)

        # The transaction begun before both reloads completes.
        c.s.sendall(b"second half\r\n.\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250, lines)
        c.cmd("QUIT", 221)
        recs = e.records()
        self.assertEqual(len(recs), 1)
        self.assertTrue(e.alive())

    def test_renewed_certificate(self):
        e = Etrnd.started(self, tls=True)
        old_der = pem_der(e.cert)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

        def starttls():
            s = smtplib.SMTP(HOST, e.port, timeout=IO_TIMEOUT_S)
            s.ehlo("client.test")
            s.starttls(context=ctx)
            s.ehlo("client.test")
            return s, s.sock.getpeercert(binary_form=True)

        before, der = starttls()
        self.addCleanup(before.close)
        self.assertEqual(der, old_der)

        # Renewal in place: same paths, new files (as certbot does).
        tmp = tempfile.mkdtemp(prefix="etrnd-cert-", dir=e.dir)
        cert, key = make_cert(tmp, name="renewed.test.invalid")
        shutil.copy(cert, e.cert)
        shutil.copy(key, e.key)
        new_der = pem_der(e.cert)
        self.assertNotEqual(new_der, old_der)
        write_conf(e)
        reload(e, r"reload: \S+ taken")

        after, der = starttls()
        self.assertEqual(der, new_der, "the new STARTTLS got the old certificate")
        after.quit()
        # The session begun before keeps its keys and goes on.
        self.assertEqual(before.noop()[0], 250)
        self.assertEqual(before.sock.getpeercert(binary_form=True), old_der)
        before.quit()

        # A key that does not match the certificate: refused, naming it.
        make_cert(tmp, name="other.test.invalid", stem="other")
        write_conf(e, tls_key_file=os.path.join(tmp, "other.key"))
        m, _ = reload(e, r"reload: .*; refused")
        with open(e.conf_path) as f:
            line = [i + 1 for i, ln in enumerate(f) if ln.startswith("tls_key_file")][0]
        self.assertIn("%s:%d" % (e.conf_path, line), m.group(0))
        print("refused:", m.group(0))
        again, der = starttls()
        self.assertEqual(der, new_der)
        again.quit()


class CheckOnlyTest(unittest.TestCase):
    """etrnd -t checks what a reload and a start check: TLS files (and a
    key that does not match) and activators (fields, password_file)."""

    def check(self, tmp, lines):
        conf = os.path.join(tmp, "t.conf")
        with open(conf, "w") as f:
            f.write("relay_domains = demo.test\n")
            for ln in lines:
                f.write(ln + "\n")
        p = subprocess.run([os.environ["ETRND_BIN"], "-c", conf, "-t"], cwd=tmp,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def test_tls_and_activators(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-check-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cert, key = make_cert(tmp)
        _, other_key = make_cert(tmp, stem="other")
        cases = [
            (["tls_cert_file = " + cert, "tls_key_file = " + key], 0, ""),
            (["tls_cert_file = " + os.path.join(tmp, "none.crt"),
              "tls_key_file = " + key], 2, r"t\.conf:2: tls_cert_file .*none\.crt"),
            (["tls_cert_file = " + cert, "tls_key_file = " + other_key], 2,
             r"t\.conf:3: tls_key_file .*key values mismatch"),
            (["activator.up.host = 127.0.0.1", "activator.up.method = atrn",
              "activator.up.schedule = every 1h"], 2, r"t\.conf:2: activator up: "),
            (["activator.up.host = 127.0.0.1", "activator.up.request = a.test",
              "activator.up.schedule = every 1h", "activator.up.user = u",
              "activator.up.password_file = " + os.path.join(tmp, "none")], 2,
             r"t\.conf:6: activator up: password_file"),
        ]
        for lines, want_rc, want_out in cases:
            with self.subTest(lines=lines):
                rc, out = self.check(tmp, lines)
                self.assertEqual(rc, want_rc, out)
                if want_out:
                    self.assertRegex(out, want_out)
                else:
                    self.assertEqual(out, "")


class ReloadRedisTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-reload-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.a = tr.Redis(self.tmp, os.path.join(self.tmp, "a.sock")).start()
        self.addCleanup(self.a.stop)
        self.b = tr.Redis(self.tmp, os.path.join(self.tmp, "b.sock")).start()
        self.addCleanup(self.b.stop)

    def provision(self, redis, prefix, domain):
        conf = os.path.join(self.tmp, "ctl-%s.conf" % domain)
        with open(conf, "w") as f:
            f.write("redis = %s\nredis_prefix = %s\n" % (redis.url(), prefix))
        rc, out, err = etrnctl(None, "domain", "add", domain, conf=conf)
        self.assertEqual(rc, 0, err)

    def test_address_and_prefix_followed(self):
        self.provision(self.a, "etrnd:", "a.test")
        self.provision(self.b, "other:", "b.test")
        d = tempfile.mkdtemp(prefix="etrnd-it-", dir=self.tmp)
        e = Etrnd(tmpdir=d, redis=self.a.url())
        del e.cfg["relay_domains"]
        self.addCleanup(e.cleanup)
        e.start()
        tr.wait_code(e, "a.test", 250, tr.FOLLOW_WAIT_S)
        self.assertEqual(tr.rcpt_code(e, "b.test"), 550)

        e.cfg["redis"] = self.b.url()
        e.cfg["redis_prefix"] = "other:"
        write_conf(e)
        t0 = time.monotonic()
        reload(e, r"reload: \S+ taken")
        wait_log(e, r"redis: new settings \(reload\): unix:%s, prefix \"other:\""
                 % re.escape(self.b.sock))
        tr.wait_code(e, "b.test", 250, tr.FOLLOW_WAIT_S)
        took = time.monotonic() - t0
        self.assertEqual(tr.rcpt_code(e, "a.test"), 550)
        print("new Redis and prefix followed %.3fs after SIGHUP" % took)
        # Events on the new prefix's channel are followed too.
        self.provision(self.b, "other:", "c.test")
        tr.wait_code(e, "c.test", 250, tr.FOLLOW_WAIT_S)


if __name__ == "__main__":
    unittest.main()
