# SPDX-License-Identifier: MIT
"""etrnd + Redis + etrnctl: provisioning, live updates, outage, resync, import.

Each test starts a private redis-server on a unix socket in a temp dir (no
TCP port) and stops it by PID; etrnd comes from etrnd_harness.Etrnd.
Environment (tests/integration/CMakeLists.txt): ETRND_BIN, ETRND_SPOOL_TOOL,
ETRNCTL, REDIS_SERVER, SWAKS.
"""

import json
import os
import re
import shutil
import signal
import socket
import smtplib
import subprocess
import tempfile
import time
import unittest

from etrnd_harness import Etrnd, HOST, LOG_WAIT_S, env_path

REDIS_START_S = 10.0
# How long a test waits for etrnd to follow a change in Redis: a guard
# against a hang only (a loaded machine may be late by any amount). The
# pub/sub test turns the periodic resync off (redis_resync = 1d), so a change
# seen at all was carried by its event, whenever it arrived.
FOLLOW_WAIT_S = LOG_WAIT_S


class Redis:
    """A private redis-server on DIR/redis.sock. Saves to DIR/dump.rdb on
    SIGTERM so a restart comes back with the same data."""

    def __init__(self, tmpdir, sock=None):
        self.bin = env_path("REDIS_SERVER")
        self.dir = tmpdir
        self.sock = sock or os.path.join(tmpdir, "redis.sock")
        self.proc = None

    def start(self):
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [self.bin, "--port", "0", "--unixsocket", self.sock,
             "--unixsocketperm", "700", "--dir", self.dir,
             "--dbfilename", "dump.rdb", "--save", "3600 1",
             "--appendonly", "no", "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + REDIS_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited %d" % self.proc.returncode)
            # The socket file appears at bind(), a moment before Redis
            # answers on it: ready once it answers PING.
            if os.path.exists(self.sock) and self._pong():
                return self
            time.sleep(0.02)
        self.stop()
        raise AssertionError("redis-server did not create %s" % self.sock)

    def _pong(self):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.settimeout(5)
                c.connect(self.sock)
                c.sendall(b"PING\r\n")
                return c.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        if self.proc:
            self.log.close()
        self.proc = None

    def url(self):
        return "unix:" + self.sock


def etrnctl(redis, *args, stdin=None):
    """Run etrnctl against redis; returns (rc, stdout, stderr)."""
    p = subprocess.run([env_path("ETRNCTL"), "--redis", redis.url()] + list(args),
                       input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def rcpt_code(etrnd, domain):
    """The reply code to RCPT TO:<user@domain> (smtplib, fast)."""
    with smtplib.SMTP(HOST, etrnd.port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("sender@example.org")
        code, _ = s.rcpt("user@" + domain)
        s.rset()
        return code


def rcpt_swaks(etrnd, domain):
    """The RCPT reply code as swaks sees it (a real client we did not write)."""
    p = subprocess.run([env_path("SWAKS"), "--server", "%s:%d" % (HOST, etrnd.port),
                        "--to", "user@" + domain, "--from", "sender@example.org",
                        "--quit-after", "RCPT", "--timeout", "10"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    codes = re.findall(r"^<[-*~ ]+(\d{3}) ", out, re.M)
    # The last reply before QUIT's 221 is RCPT's.
    codes = [c for c in codes if c != "221"]
    if not codes:
        raise AssertionError("no reply in swaks output:\n" + out)
    return int(codes[-1])


def wait_code(etrnd, domain, want, within):
    """Poll RCPT until it gets want; returns the seconds it took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < within:
        last = rcpt_code(etrnd, domain)
        if last == want:
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError("RCPT for %s: want %d within %.1fs, last got %r"
                         % (domain, want, within, last))


def wait_log(etrnd, pattern, within=LOG_WAIT_S):
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if re.search(pattern, etrnd.stderr_text()):
            return
        time.sleep(0.05)
    raise AssertionError("no log line matching %r within %.0fs; stderr:\n%s"
                         % (pattern, within, etrnd.stderr_text()))


class RedisTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-redis-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)

    def etrnd(self, **cfg):
        d = tempfile.mkdtemp(prefix="etrnd-it-", dir=self.tmp)
        e = Etrnd(tmpdir=d, redis=self.redis.url(), **cfg)
        if "relay_domains" not in cfg:
            del e.cfg["relay_domains"]
        self.addCleanup(e.cleanup)
        e.start()
        return e

    def test_provision_delete_outage_resync(self):
        e = self.etrnd(redis_resync="1d")
        wait_log(e, r"redis unix:.*: connected, 0 domain\(s\) loaded")
        self.assertEqual(rcpt_code(e, "cust.test"), 550)

        rc, out, err = etrnctl(self.redis, "domain", "add", "Cust.Test",
                               "--dest", "127.0.0.1:2526", "--etrn-from", "127.0.0.0/8")
        self.assertEqual(rc, 0, err)
        self.assertIn("domain cust.test added", out)
        took = wait_code(e, "cust.test", 250, FOLLOW_WAIT_S)
        self.assertEqual(rcpt_swaks(e, "cust.test"), 250)
        self.assertEqual(rcpt_swaks(e, "CUST.TEST."), 250)

        rc, _, err = etrnctl(self.redis, "domain", "add", "other.test")
        self.assertEqual(rc, 0, err)
        wait_code(e, "other.test", 250, FOLLOW_WAIT_S)
        rc, out, err = etrnctl(self.redis, "domain", "del", "other.test")
        self.assertEqual(rc, 0, err)
        took = wait_code(e, "other.test", 550, FOLLOW_WAIT_S)
        self.assertEqual(rcpt_swaks(e, "other.test"), 550)
        print("add->accept and del->550 by their events (del took %.3fs)" % took)

        # Wildcard row.
        rc, _, err = etrnctl(self.redis, "domain", "add", "*.wild.test")
        self.assertEqual(rc, 0, err)
        wait_code(e, "a.b.wild.test", 250, FOLLOW_WAIT_S)
        self.assertEqual(rcpt_code(e, "wild.test"), 550)

        # Redis goes away: the last table keeps serving, unknown gets 451.
        self.redis.stop()
        wait_log(e, r"serving \d+ domain\(s\) from the last table")
        self.assertEqual(rcpt_swaks(e, "cust.test"), 250)
        self.assertEqual(rcpt_swaks(e, "unknown.test"), 451)
        self.assertEqual(rcpt_code(e, "x.wild.test"), 250)
        self.assertEqual(len(re.findall("from the last table", e.stderr_text())), 1,
                         "logged once per state change")

        # Change the data while etrnd cannot see it (another socket), then
        # bring Redis back where etrnd looks: the reload finds the change
        # although no event announced it to etrnd.
        alt = Redis(self.tmp, sock=os.path.join(self.tmp, "alt.sock")).start()
        try:
            rc, _, err = etrnctl(alt, "domain", "add", "resynced.test")
            self.assertEqual(rc, 0, err)
            rc, _, err = etrnctl(alt, "domain", "del", "cust.test")
            self.assertEqual(rc, 0, err)
        finally:
            alt.stop()
        self.redis.start()
        wait_log(e, r"connected again", within=FOLLOW_WAIT_S)
        wait_code(e, "resynced.test", 250, FOLLOW_WAIT_S)
        self.assertEqual(rcpt_swaks(e, "resynced.test"), 250)
        self.assertEqual(rcpt_code(e, "cust.test"), 550)
        self.assertEqual(rcpt_code(e, "unknown.test"), 550, "Redis is back: 550, not 451")

    def test_periodic_resync_catches_silent_writes(self):
        e = self.etrnd(redis_resync="1s")
        wait_log(e, r"connected, 0 domain")
        # Written behind etrnctl's back: no event on etrnd:events.
        subprocess.run(["redis-cli", "-s", self.redis.sock, "HSET",
                        "etrnd:domain:silent.test", "tls", "may"],
                       check=True, stdout=subprocess.DEVNULL, timeout=20)
        wait_code(e, "silent.test", 250, FOLLOW_WAIT_S)

    def test_start_needs_redis_or_static_domains(self):
        self.redis.stop()
        d = tempfile.mkdtemp(prefix="etrnd-it-", dir=self.tmp)
        e = Etrnd(tmpdir=d, redis=self.redis.url())
        del e.cfg["relay_domains"]
        self.addCleanup(e.cleanup)
        with self.assertRaises(AssertionError):
            e.start()
        self.assertEqual(e.proc.returncode, 2)
        self.assertIn("relay_domains lists no static domain", e.stderr_text())
        e.proc = None

        # With a static domain it starts, serves it, and gives 451 for the rest.
        e2 = self.etrnd(relay_domains="static.test")
        self.assertEqual(rcpt_code(e2, "static.test"), 250)
        self.assertEqual(rcpt_code(e2, "unknown.test"), 451)
        # Redis appears: etrnd connects, the table is no longer stale.
        self.redis.start()
        rc, _, err = etrnctl(self.redis, "domain", "add", "late.test")
        self.assertEqual(rc, 0, err)
        wait_code(e2, "late.test", 250, FOLLOW_WAIT_S)
        self.assertEqual(rcpt_code(e2, "unknown.test"), 550)
        self.assertEqual(rcpt_code(e2, "static.test"), 250)

    def test_import_csv_10000_with_bad_rows(self):
        e = self.etrnd()
        wait_log(e, r"connected, 0 domain")
        rc, _, err = etrnctl(self.redis, "user", "add", "alice", "--password-stdin",
                             stdin=b"correct horse\n")
        self.assertEqual(rc, 0, err)
        path = os.path.join(self.tmp, "domains.csv")
        bad = {}
        with open(path, "w") as f:
            f.write("domain,queue,dest,etrn_from,owner,max_hold,quota_bytes,tls\n")
            line = 1
            for i in range(10000):
                line += 1
                f.write("cust%05d.example.net,q%d,mx,\"10.%d.0.0/16,::1\",alice,5d,100M,may\n"
                        % (i, i % 7, i % 250))
                if i % 2000 == 1000:
                    for text, why in (
                            ("bad..domain.test,,,,,,,\n", "not a domain name"),
                            ("x%d.test,,,10.0.0.1/8,,,,\n" % i, "host bits set"),
                            ("y%d.test,,host:99999,,,,,\n" % i, "bad port"),
                            ("z%d.test,,,,,,,sometimes\n" % i, "want may, must or verify"),
                            ("w%d.test,,,,nobody,,,\n" % i, "does not exist"),
                            ("v%d.test,,,,,5 days,,\n" % i, "not a duration"),
                            ("\"u%d.test,,,,,,,\n" % i, "unterminated quoted field"),
                            ("cust00000.example.net,,,,,,,\n", "already on line 2")):
                        line += 1
                        f.write(text)
                        bad[line] = why
        t0 = time.monotonic()
        rc, out, err = etrnctl(self.redis, "import", path)
        took = time.monotonic() - t0
        self.assertEqual(rc, 1, "bad rows make the exit status 1")
        self.assertIn("10000 domain(s) imported, %d bad row(s) skipped" % len(bad), out)
        for ln, why in bad.items():
            self.assertRegex(err, re.escape("%s:%d: " % (path, ln)) + ".*" + re.escape(why))
        self.assertEqual(len(err.strip().splitlines()), len(bad), err)
        rc, out, err = etrnctl(self.redis, "--json", "domain", "list")
        self.assertEqual(rc, 0, err)
        names = json.loads(out)
        self.assertEqual(len(names), 10000)
        self.assertIn("cust09999.example.net", names)
        rc, out, _ = etrnctl(self.redis, "--json", "domain", "show", "cust00042.example.net")
        row = json.loads(out)
        self.assertEqual(row["etrn_from"], "10.42.0.0/16,::1/128")
        self.assertEqual(row["quota_bytes"], str(100 << 20))
        self.assertEqual(row["owner"], "alice")
        rc, out, _ = etrnctl(self.redis, "--json", "queue", "list")
        self.assertEqual(sum(q["domains"] for q in json.loads(out)), 10000)
        # The daemon followed the import.
        wait_code(e, "cust09999.example.net", 250, FOLLOW_WAIT_S)
        # export | import round-trips.
        rc, out, err = etrnctl(self.redis, "export")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.strip().splitlines()), 10001)
        exp = os.path.join(self.tmp, "export.csv")
        with open(exp, "w") as f:
            f.write(out)
        rc, out2, err = etrnctl(self.redis, "import", exp)
        self.assertEqual(rc, 0, err)
        self.assertIn("10000 domain(s) imported, 0 bad", out2)
        print("import of 10,000 rows: %.2fs" % took)

    def test_etrnctl_validation_and_users(self):
        cases = [
            (["domain", "add", "bad..name"], "not a domain name"),
            (["domain", "add", "nodot"], "at least two labels"),
            (["domain", "add", "x.test", "--etrn-from", "10.0.0.0/33"], "bad prefix length"),
            (["domain", "add", "x.test", "--etrn-from", "banana"], "not a network"),
            (["domain", "add", "x.test", "--dest", "2001:db8::1"], "brackets"),
            (["domain", "add", "x.test", "--dest", "h:0"], "bad port"),
            (["domain", "add", "x.test", "--tls", "always"], "want may, must or verify"),
            (["domain", "add", "x.test", "--max-hold", "forever"], "not a duration"),
            (["domain", "add", "x.test", "--quota", "lots"], "not a size"),
            (["domain", "add", "x.test", "--queue", "a b"], "queue name"),
            (["domain", "list", "--queue", "q"], "only go with domain add"),
            (["domain"], "which?"),
            (["frobnicate"], "unknown command"),
            (["domain", "add"], "want 1 argument"),
            (["queue", "show", "bad name"], "queue name"),
            (["user", "add", "bad name"], "user name"),
        ]
        for args, want in cases:
            rc, out, err = etrnctl(self.redis, *args)
            self.assertEqual(rc, 2, "%s: rc %d, stderr %s" % (args, rc, err))
            self.assertIn(want, err, args)
            self.assertTrue(err.startswith("etrnctl: "), err)
        p = subprocess.run([env_path("ETRNCTL"), "--redis", "localhost", "domain", "list"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--redis", p.stderr.decode())
        p = subprocess.run([env_path("ETRNCTL"), "--redis", "unix:" + self.tmp + "/nope.sock",
                            "domain", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("nope.sock", p.stderr.decode())
        # Not found is a failure (1), not a usage error.
        self.assertEqual(etrnctl(self.redis, "domain", "del", "none.test")[0], 1)
        self.assertEqual(etrnctl(self.redis, "domain", "show", "none.test")[0], 1)
        self.assertEqual(etrnctl(self.redis, "domain", "add", "o.test", "--owner", "bob")[0], 1)

        # Users: hashed with crypt(3), never stored in plain text.
        rc, _, err = etrnctl(self.redis, "user", "add", "bob", "--password-stdin", stdin=b"s3cret\n")
        self.assertEqual(rc, 0, err)
        self.assertEqual(etrnctl(self.redis, "user", "add", "bob", "--password-stdin",
                                 stdin=b"x\n")[0], 1)
        h1 = subprocess.run(["redis-cli", "-s", self.redis.sock, "HGET", "etrnd:user:{bob}",
                             "password"], stdout=subprocess.PIPE, timeout=20).stdout.decode().strip()
        self.assertRegex(h1, r"^\$(y|6)\$")
        self.assertNotIn("s3cret", h1)
        rc, _, err = etrnctl(self.redis, "user", "passwd", "bob", "--password-stdin", stdin=b"n3w\n")
        self.assertEqual(rc, 0, err)
        h2 = subprocess.run(["redis-cli", "-s", self.redis.sock, "HGET", "etrnd:user:{bob}",
                             "password"], stdout=subprocess.PIPE, timeout=20).stdout.decode().strip()
        self.assertNotEqual(h1, h2)
        self.assertEqual(etrnctl(self.redis, "user", "add", "eve", "--password-stdin",
                                 stdin=b"\n")[0], 2)
        rc, out, err = etrnctl(self.redis, "--json", "domain", "add", "b.test", "--owner", "bob",
                               "--queue", "nightly")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"domain": "b.test", "result": "added"})
        rc, out, _ = etrnctl(self.redis, "--json", "queue", "show", "nightly")
        self.assertEqual(json.loads(out), ["b.test"])
        # Moving the domain to another queue leaves the old set.
        etrnctl(self.redis, "domain", "add", "b.test", "--queue", "daily")
        self.assertEqual(etrnctl(self.redis, "queue", "show", "nightly")[0], 1)
        rc, _, _ = etrnctl(self.redis, "user", "del", "bob")
        self.assertEqual(rc, 0)
        self.assertEqual(etrnctl(self.redis, "user", "del", "bob")[0], 1)


if __name__ == "__main__":
    unittest.main()
