# SPDX-License-Identifier: MIT
"""Redis over TCP with AUTH and SELECT (admin/redis_conn.c): every other test
talks to Redis on a unix socket without a password. Here a private
redis-server listens on a free loopback port with requirepass and an ACL
user; etrnctl writes through redis://:PASSWORD@127.0.0.1:PORT/DB (and as the
ACL user), the rows land in that database and no other, and etrnd loads
them, follows live changes over the same kind of connection, and says
clearly (without the password) when AUTH or SELECT is refused. Every
process is stopped by PID; the temp dir is removed."""

import os
import shutil
import socket
import subprocess
import tempfile
import unittest

import etrnd_harness as h
from test_redis import Redis, rcpt_code, wait_code, wait_log

PASSWORD = "s3cret-pw"
ACL_USER = "etrnadmin"
ACL_PASSWORD = "acl-pw-9"
DB = 3
START_S = 10.0
LOAD_S = 30.0          # a guard against hangs, not a bound on speed


class TcpRedis(Redis):
    """redis-server on 127.0.0.1:<free port> with requirepass and one ACL
    user, no persistence; stopped as test_redis.Redis is."""

    def __init__(self, tmpdir):
        super().__init__(tmpdir)
        self.port = h.free_port()

    def start(self):
        conf = os.path.join(self.dir, "redis.conf")
        with open(conf, "w") as f:
            f.write("bind 127.0.0.1\nport %d\nsave \"\"\nappendonly no\n"
                    "dir %s\nrequirepass %s\n"
                    "user %s on >%s ~* &* +@all\n" % (
                        self.port, self.dir, PASSWORD, ACL_USER, ACL_PASSWORD))
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen([self.bin, conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        h.wait_for("redis-server on port %d" % self.port, self._listening,
                   within=START_S)
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited %d" % self.proc.returncode)
        try:
            with socket.create_connection((h.HOST, self.port), timeout=1):
                return True
        except OSError:
            return False

    def url(self, user="", password=PASSWORD, db=DB):
        auth = "%s:%s@" % (user, password) if password else ""
        return "redis://%s%s:%d/%d" % (auth, h.HOST, self.port, db)

    def cli(self, db, *args):
        """redis-cli as the default user on database db; its output."""
        p = subprocess.run(["redis-cli", "-h", h.HOST, "-p", str(self.port),
                            "--no-auth-warning", "-a", PASSWORD, "-n", str(db)]
                           + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60, check=True)
        return p.stdout.decode().strip()


class RedisTcpTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-redistcp-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = TcpRedis(self.tmp)
        self.addCleanup(self.redis.stop)
        self.redis.start()

    def etrnd(self, url, **cfg):
        d = tempfile.mkdtemp(prefix="etrnd-it-", dir=self.tmp)
        e = h.Etrnd(tmpdir=d, redis=url, **cfg)
        self.addCleanup(e.cleanup)
        e.start()
        return e

    def test_auth_select_load_and_live_update(self):
        # etrnctl as the default user (requirepass), database DB.
        h.etrnctl_ok(self.redis.url(), "domain", "add", "one.test")
        # The row is in DB and only there: SELECT was sent and obeyed.
        self.assertEqual(self.redis.cli(DB, "EXISTS", "etrnd:domain:{one.test}"), "1")
        self.assertEqual(self.redis.cli(0, "EXISTS", "etrnd:domain:{one.test}"), "0")
        # Without the password Redis refuses etrnctl, and etrnctl says so.
        rc, _, err = h.etrnctl(self.redis.url(password=""), "domain", "add", "x.test")
        self.assertNotEqual(rc, 0)
        self.assertIn("NOAUTH", err)

        e = self.etrnd(self.redis.url(), relay_domains="static.test")
        # Two: static.test and the row in DB.
        wait_log(e, r"redis redis://\*\*\*@127\.0\.0\.1:%d/%d: connected, 2 domain"
                 % (self.redis.port, DB), within=LOAD_S)
        self.assertEqual(rcpt_code(e, "one.test"), 250)
        self.assertEqual(rcpt_code(e, "unknown.test"), 550)
        # A live change by the ACL user (AUTH user password) reaches etrnd
        # over its subscription, itself authenticated and on DB.
        h.etrnctl_ok(self.redis.url(user=ACL_USER, password=ACL_PASSWORD),
                     "domain", "add", "two.test")
        wait_code(e, "two.test", 250, LOAD_S)
        self.assertNotIn(PASSWORD, e.stderr_text())

    def test_etrnd_as_acl_user(self):
        h.etrnctl_ok(self.redis.url(), "domain", "add", "acl.test")
        e = self.etrnd(self.redis.url(user=ACL_USER, password=ACL_PASSWORD),
                       relay_domains="static.test")
        # Two: static.test and the row in DB.
        wait_log(e, r"redis redis://%s:\*\*\*@127\.0\.0\.1:%d/%d: connected, 2 domain"
                 % (ACL_USER, self.redis.port, DB), within=LOAD_S)
        self.assertEqual(rcpt_code(e, "acl.test"), 250)
        self.assertNotIn(ACL_PASSWORD, e.stderr_text())

    def test_wrong_password_refused_and_said(self):
        h.etrnctl_ok(self.redis.url(), "domain", "add", "one.test")
        e = self.etrnd(self.redis.url(password="not-the-pw"), relay_domains="static.test")
        # The refusal is logged with Redis's own words, the password is not.
        wait_log(e, r"redis redis://\*\*\*@127\.0\.0\.1:%d/%d: AUTH: WRONGPASS"
                 % (self.redis.port, DB), within=LOAD_S)
        self.assertNotIn("not-the-pw", e.stderr_text())
        # Never loaded: the static domain is served, Redis's domains are not
        # (451: the table is stale, not 250 and not 550).
        self.assertEqual(rcpt_code(e, "static.test"), 250)
        self.assertEqual(rcpt_code(e, "one.test"), 451)

    def test_select_refused_and_said(self):
        e = self.etrnd(self.redis.url(db=999999), relay_domains="static.test")
        wait_log(e, r"redis redis://\*\*\*@127\.0\.0\.1:%d/999999: SELECT: "
                 r"ERR DB index is out of range" % self.redis.port, within=LOAD_S)
        self.assertEqual(rcpt_code(e, "static.test"), 250)
        self.assertEqual(rcpt_code(e, "any.test"), 451)


if __name__ == "__main__":
    unittest.main()
