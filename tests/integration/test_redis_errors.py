# SPDX-License-Identifier: MIT
"""Redis error replies against a real redis-server (issue 18, K2): an ACL
user denied one command (every use of it answers NOPERM), keys of the wrong
type (WRONGTYPE, inside and outside MULTI), maxmemory 1 with noeviction (OOM
on every write), a server stopped with SIGSTOP (a command times out) and a
server killed part way through an import. For each, etrnctl prints one
error naming the command and exits 1 (its documented "failed"), and a
refused transaction writes nothing: the whole data set is compared before
and after. etrnd, when its own commands are refused or time out, logs it
and keeps serving from its last table. Every process is stopped by PID;
the temp dir is removed."""

import base64
import os
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import threading
import time
import unittest

import etrnd_harness as h
from test_redis import rcpt_code, wait_log
from test_redis_tcp import DB, TcpRedis

LIMITED = "limited"
LIMITED_PW = "lim-pw-7"
CTL_S = 60.0          # guards against hangs, not a bound on speed
IMPORT_ROWS = 40000   # far more than one batch (ETRNCTL_BATCH, 1000)
IMPORT_KILL_KEYS = 1500

# Every key with its type and contents, sorted: equal before and after
# means nothing was written.
SNAPSHOT_LUA = """
local out = {}
local keys = redis.call('KEYS', '*')
table.sort(keys)
for _, k in ipairs(keys) do
  local t = redis.call('TYPE', k).ok
  local v = {}
  if t == 'hash' then
    local f = redis.call('HKEYS', k)
    table.sort(f)
    for _, n in ipairs(f) do table.insert(v, n .. '=' .. redis.call('HGET', k, n)) end
  elseif t == 'set' then
    v = redis.call('SMEMBERS', k)
    table.sort(v)
  elseif t == 'string' then
    v = {redis.call('GET', k)}
  elseif t == 'zset' then
    v = redis.call('ZRANGE', k, 0, -1)
  end
  table.insert(out, k .. ' ' .. t .. ' ' .. table.concat(v, ' '))
end
return out
"""

# Rows the cases work on (all through etrnctl as the default user).
BASE = [
    ("domain", "add", "base.test", "--queue", "q1", "--dest", "127.0.0.1:2525"),
    ("domain", "add", "other.test"),
    ("route", "add", "base.test", "127.0.0.1:2600"),
]

IMPORT_CSV = "domain,queue,dest\nimp1.test,qi,127.0.0.1:2525\nimp2.test,,\n"

# NOPERM: (the command the limited user may not run, etrnctl's arguments,
# the command named in the message). Each must exit 1, say NOPERM and the
# command, and leave the data set as it was.
NOPERM_CASES = [
    ("exists", ["domain", "add", "new.test"], "EXISTS"),
    ("hmget", ["domain", "add", "new.test"], "HMGET"),
    ("hset", ["domain", "add", "new.test", "--queue", "q2"], "domain add"),
    ("sadd", ["domain", "add", "new.test", "--queue", "q2"], "domain add"),
    ("publish", ["domain", "add", "new.test"], "domain add"),
    ("hgetall", ["domain", "set", "base.test", "--mode", "deliver"], "HGETALL"),
    # MULTI refused: the queued writes ran one by one (Redis cannot be
    # stopped once the pipeline is sent): etrnctl must say so.
    ("multi", ["domain", "del", "base.test"], "outside a transaction"),
    ("srem", ["domain", "del", "base.test"], "domain del"),
    ("hgetall", ["domain", "show", "base.test"], "HGETALL"),
    ("scan", ["domain", "list"], "SCAN"),
    ("set", ["route", "add", "new.test", "127.0.0.1:2700"], "route add"),
    ("del", ["route", "del", "base.test"], "route del"),
    ("publish", ["route", "del", "base.test"], "route del"),
    ("get", ["route", "list"], "GET"),
    ("scard", ["queue", "list"], "SCARD"),
    ("smembers", ["queue", "show", "q1"], "SMEMBERS"),
    ("hsetnx", ["user", "add", "bob", "--password-stdin"], "user add"),
    ("hgetall", ["user", "show", "alice"], "HGETALL"),
    ("hkeys", ["user", "del", "alice"], "HKEYS"),
    ("hset", ["user", "passwd", "alice", "--password-stdin"], "user passwd"),
    ("publish", ["user", "passwd", "alice", "--password-stdin"], "user passwd"),
    ("scan", ["import", "@CSV"], "SCAN"),
    ("hmget", ["import", "@CSV"], "HMGET"),
    ("hset", ["import", "@CSV"], "import"),
    ("hmget", ["export"], "HMGET"),
    ("zrange", ["status", "--cluster"], "ZRANGE"),
    ("hgetall", ["status", "--cluster"], "HGETALL"),
    ("exists", ["node", "drain", "gone-node"], "EXISTS"),
    ("zscore", ["node", "drain", "gone-node"], "ZSCORE"),
    ("set", ["node", "drain", "gone-node"], "SET"),
    ("exists", ["node", "forget", "gone-node"], "EXISTS"),
    ("zrem", ["node", "forget", "gone-node"], "ZREM"),
    ("scan", ["keys", "migrate"], "SCAN"),
    ("renamenx", ["keys", "migrate"], "RENAMENX"),
    # Reads before the writes (issue 18, F2): the owner's EXISTS, the old
    # row's HMGET of del, the user's EXISTS of passwd, the owners' HMGET
    # that user del and user show read.
    ("exists", ["domain", "add", "new.test", "--owner", "alice"], "EXISTS"),
    ("hmget", ["domain", "del", "base.test"], "HMGET"),
    ("exists", ["user", "passwd", "alice", "--password-stdin"], "EXISTS"),
    ("hmget", ["user", "del", "alice"], "HMGET"),
    ("hmget", ["user", "show", "alice"], "HMGET"),
]

# Refused after a first write that stays (no transaction spans them): the
# command still exits 1 naming what failed. (denied, argv, named)
NOPERM_LATE_CASES = [
    ("publish", ["node", "drain", "gone-node"], "PUBLISH"),
    ("publish", ["keys", "migrate"], "PUBLISH"),
]

# maxmemory 1, noeviction: every write refused (OOM) before EXEC, so the
# transaction writes nothing.
OOM_CASES = [
    ["domain", "add", "new.test", "--queue", "q2"],
    ["domain", "set", "base.test", "--mode", "deliver"],
    ["domain", "del", "base.test"],
    ["route", "add", "new.test", "127.0.0.1:2700"],
    ["user", "add", "bob", "--password-stdin"],
    ["user", "passwd", "alice", "--password-stdin"],
    ["import", "@CSV"],
]


class RedisCase(unittest.TestCase):
    """A private TcpRedis (requirepass, loopback port) per test; a server a
    test left SIGSTOPped is continued before it is stopped."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-rediserr-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = TcpRedis(self.tmp)
        self.addCleanup(self.redis.stop)
        self.addCleanup(self.cont)
        self.redis.start()
        self.admin = self.redis.url()

    def cont(self):
        """SIGCONT a stopped server, so the cleanup can stop it."""
        if self.redis.proc and self.redis.proc.poll() is None:
            os.kill(self.redis.proc.pid, signal.SIGCONT)


class ErrRedisTest(RedisCase):
    def setUp(self):
        super().setUp()
        self.csv = os.path.join(self.tmp, "rows.csv")
        with open(self.csv, "w") as f:
            f.write(IMPORT_CSV)

    def cli(self, *args):
        return self.redis.cli(DB, *args)

    def snapshot(self):
        return self.cli("EVAL_RO", SNAPSHOT_LUA, "0")

    def ctl(self, url, argv):
        argv = [self.csv if a == "@CSV" else a for a in argv]
        stdin = b"pw-new-1\n" if "--password-stdin" in argv else None
        return h.etrnctl(url, *argv, stdin=stdin, timeout=CTL_S)

    def provision(self):
        self.cli("FLUSHDB")
        for argv in BASE:
            h.etrnctl_ok(self.admin, *argv)
        rc, out, err = h.etrnctl(self.admin, "user", "add", "alice", "--password-stdin",
                                 "--domain", "base.test", stdin=b"pw-alice\n")
        self.assertEqual(rc, 0, err)
        # An untagged key for keys migrate to rename.
        self.cli("HSET", "etrnd:domain:untagged.test", "dest", "127.0.0.1:2525")
        # A node that stopped: listed, its hash expired.
        self.cli("ZADD", "etrnd:nodes", "1", "gone-node")
        self.cli("HSET", "etrnd:node:{live-node}", "state", "up", "msgs", "0")
        self.cli("ZADD", "etrnd:nodes", "2", "live-node")

    def limited(self, denied):
        """The ACL user allowed everything but denied; its URL."""
        self.cli("ACL", "SETUSER", LIMITED, "reset", "on", ">" + LIMITED_PW, "~*", "&*",
                 "+@all", "-" + denied)
        return self.redis.url(user=LIMITED, password=LIMITED_PW)

    def assert_failed(self, what, rc, out, err, said):
        self.assertEqual(rc, 1, "%s: exit %d\nstdout: %s\nstderr: %s" % (what, rc, out, err))
        self.assertRegex(err, r"^etrnctl: ", what)
        for s in said:
            self.assertIn(s, err, what)
        self.assertNotRegex(out, r"\b(added|updated|deleted|password changed)\b",
                            "%s: reported success" % what)

    def test_noperm_each_command(self):
        for denied, argv, named in NOPERM_CASES:
            with self.subTest(denied=denied, argv=argv):
                self.provision()
                before = self.snapshot()
                rc, out, err = self.ctl(self.limited(denied), argv)
                self.assert_failed("-%s: %s" % (denied, " ".join(argv)), rc, out, err,
                                   [named, "NOPERM", "'%s'" % denied])
                if named != "outside a transaction":
                    self.assertEqual(self.snapshot(), before,
                                     "-%s %s wrote in part" % (denied, argv))
        for denied, argv, named in NOPERM_LATE_CASES:
            with self.subTest(denied=denied, argv=argv):
                self.provision()
                rc, out, err = self.ctl(self.limited(denied), argv)
                self.assert_failed("-%s: %s" % (denied, " ".join(argv)), rc, out, err,
                                   [named, "NOPERM", "'%s'" % denied])
        # The same user, allowed everything again, succeeds: the refusals
        # above came from the ACL, not from the arguments.
        for _, argv, _ in NOPERM_CASES:
            if argv[:2] == ["node", "drain"]:
                continue
            with self.subTest(allowed=argv):
                self.provision()
                rc, out, err = self.ctl(self.limited("acl"), argv)
                self.assertEqual(rc, 0, "%s: %s" % (argv, err))

    def test_wrongtype(self):
        self.provision()
        self.cli("SET", "etrnd:queue:{qs}", "a string")
        self.cli("SET", "etrnd:user:{strusr}", "a string")
        self.cli("SET", "etrnd:domain:{str.test}", "a string")
        self.cli("HSET", "etrnd:route:{hash.test}", "a", "b")
        self.cli("SET", "etrnd:node:{str-node}", "a string")
        self.cli("ZADD", "etrnd:nodes", "3", "str-node")
        # Inside MULTI: Redis runs the other writes of the transaction and
        # cannot take them back; etrnctl must not call that a success.
        for argv, named in [
                (["domain", "add", "wq.test", "--queue", "qs"], "domain add"),
                (["domain", "add", "wo.test", "--owner", "strusr"], "domain add"),
                (["domain", "set", "base.test", "--queue", "qs"], "domain add")]:
            with self.subTest(argv=argv):
                rc, out, err = self.ctl(self.admin, argv)
                self.assert_failed(" ".join(argv), rc, out, err,
                                   [named, "WRONGTYPE", "the others were applied"])
        # Outside MULTI: refused before anything was written.
        for argv, named in [
                (["domain", "show", "str.test"], "HGETALL"),
                (["domain", "add", "str.test"], "HMGET"),
                (["queue", "show", "qs"], "SMEMBERS"),
                (["user", "show", "strusr"], "HGETALL"),
                (["status", "--cluster"], "HGETALL")]:
            with self.subTest(argv=argv):
                before = self.snapshot()
                rc, out, err = self.ctl(self.admin, argv)
                self.assert_failed(" ".join(argv), rc, out, err, [named, "WRONGTYPE"])
                self.assertEqual(self.snapshot(), before)
        # route list shows a route key of the wrong type as etrnd sees it.
        rc, out, err = self.ctl(self.admin, ["route", "list"])
        self.assertEqual(rc, 0, err)
        self.assertIn("hash.test\t\t(ignored by etrnd: not a string)", out)
        self.assertIn("base.test\t127.0.0.1:2600\n", out)

    def test_oom_refuses_every_write(self):
        self.provision()
        self.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.cli("CONFIG", "SET", "maxmemory", "1")
        try:
            for argv in OOM_CASES:
                with self.subTest(argv=argv):
                    before = self.snapshot()
                    rc, out, err = self.ctl(self.admin, argv)
                    self.assert_failed(" ".join(argv), rc, out, err, ["OOM"])
                    self.assertEqual(self.snapshot(), before)
            # Reads still work.
            rc, out, err = self.ctl(self.admin, ["domain", "list"])
            self.assertEqual((rc, out), (0, "base.test\nother.test\nuntagged.test\n"),
                             err)
        finally:
            self.cli("CONFIG", "SET", "maxmemory", "0")
        h.etrnctl_ok(self.admin, "domain", "add", "new.test")

    def test_stopped_server_times_out(self):
        self.provision()
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            rc, out, err = self.ctl(self.admin, ["domain", "add", "late.test"])
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        self.assert_failed("SIGSTOPped server", rc, out, err, ["redis"])
        # The connection is accepted by the kernel; AUTH gets no reply.
        self.assertRegex(err, r"AUTH: timed out, no reply")
        self.assertNotIn("late.test", self.cli("KEYS", "*"))

    def test_server_killed_mid_import(self):
        """The import's rows are written a batch at a time, each row its own
        transaction: when Redis goes away part way, etrnctl exits 1 and says
        how far it got, and the count it gives is really there (rows of the
        last batch may be there too, whole)."""
        path = os.path.join(self.tmp, "big.csv")
        with open(path, "w") as f:
            f.write("domain,queue\n")
            for i in range(IMPORT_ROWS):
                f.write("d%05d.test,q%d\n" % (i, i % 7))
        self.redis.cli(DB, "CONFIG", "SET", "save", "")
        killed = threading.Event()

        def killer():
            deadline = time.monotonic() + CTL_S
            while time.monotonic() < deadline:
                try:
                    n = int(self.cli("DBSIZE"))
                except (subprocess.CalledProcessError, ValueError):
                    return
                if n >= IMPORT_KILL_KEYS:
                    # Stop it first, then count what is there, then kill.
                    os.kill(self.redis.proc.pid, signal.SIGSTOP)
                    os.kill(self.redis.proc.pid, signal.SIGKILL)
                    killed.set()
                    return
                time.sleep(0.005)

        t = threading.Thread(target=killer)
        t.start()
        rc, out, err = h.etrnctl(self.admin, "import", path, timeout=CTL_S * 2)
        t.join()
        self.assertTrue(killed.is_set(), "the import ended before Redis was killed: %r"
                        % ((rc, out, err),))
        self.assertEqual(rc, 1, err)
        m = re.search(r"import %s stopped at line (\d+): (\d+) domain\(s\) written before "
                      r"the last batch" % re.escape(path), err)
        self.assertTrue(m, err)
        line, written = int(m.group(1)), int(m.group(2))
        self.assertLess(line, IMPORT_ROWS + 1)
        self.assertEqual(written % 1000, 0, "whole batches")
        self.assertGreaterEqual(written, 1000)
        self.assertNotIn("domain(s) imported", out)


class DaemonRedisErrorTest(RedisCase):
    """etrnd's own Redis commands refused or timing out: one clear line,
    and the last table keeps serving."""

    def etrnd(self, url, tls=False, **cfg):
        d = tempfile.mkdtemp(prefix="etrnd-it-", dir=self.tmp)
        e = h.Etrnd(tmpdir=d, redis=url, tls=tls, **cfg)
        del e.cfg["relay_domains"]
        self.addCleanup(e.cleanup)
        e.start()
        return e

    def test_daemon_denied_a_command_keeps_its_table(self):
        h.etrnctl_ok(self.admin, "domain", "add", "kept.test")
        self.redis.cli(DB, "ACL", "SETUSER", LIMITED, "reset", "on", ">" + LIMITED_PW,
                       "~*", "&*", "+@all")
        e = self.etrnd(self.redis.url(user=LIMITED, password=LIMITED_PW))
        wait_log(e, r"connected, 1 domain\(s\) loaded")
        self.assertEqual(rcpt_code(e, "kept.test"), 250)
        # From now on every read of a row is refused.
        self.redis.cli(DB, "ACL", "SETUSER", LIMITED, "-hgetall", "-hmget", "-scan")
        h.etrnctl_ok(self.admin, "domain", "add", "new.test")
        # A row Redis refuses is Redis trouble, not an absent row: the last
        # table serves, unknown domains (new.test) get 451, never 550.
        wait_log(e, r"redis .*: HGETALL: NOPERM this user has no permissions to run the "
                 r"'hgetall' command; serving 1 domain\(s\) from the last table, unknown "
                 r"domains get 451", within=CTL_S)
        self.assertEqual(rcpt_code(e, "kept.test"), 250, "the last table serves")
        self.assertEqual(rcpt_code(e, "new.test"), 451, "not loaded, not refused")
        self.assertTrue(e.alive())
        # Retries go on (each reconnect loads again, refused again): quiet.
        conns = self.conns()
        h.wait_for("three reconnects", lambda: self.conns() >= conns + 3, within=CTL_S)
        self.assertEqual(len(re.findall("NOPERM", e.stderr_text())), 1, "one line")
        self.redis.cli(DB, "ACL", "SETUSER", LIMITED, "+hgetall", "+hmget", "+scan")
        wait_log(e, r"connected again", within=CTL_S)
        self.assertEqual(rcpt_code(e, "new.test"), 250)

    def test_daemon_stopped_server(self):
        h.etrnctl_ok(self.admin, "domain", "add", "kept.test")
        e = self.etrnd(self.admin, redis_resync="1s")
        wait_log(e, r"connected, 1 domain\(s\) loaded")
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            wait_log(e, r"serving \d+ domain\(s\) from the last table", within=CTL_S)
            self.assertEqual(rcpt_code(e, "kept.test"), 250)
            self.assertEqual(rcpt_code(e, "unknown.test"), 451)
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        wait_log(e, r"connected again", within=CTL_S)
        self.assertEqual(rcpt_code(e, "unknown.test"), 550)
        self.assertEqual(len(re.findall("from the last table", e.stderr_text())), 1,
                         "logged once per state change")

    def auth(self, e, user, pw):
        """AUTH PLAIN on the trusted listener (no TLS needed): the code."""
        token = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
        with smtplib.SMTP(h.HOST, e.ports["listen_trusted"], timeout=CTL_S) as s:
            s.ehlo("client.test")
            return s.docmd("AUTH", "PLAIN " + token)[0]

    def test_auth_lookup_errors_answer_454(self):
        """The AUTH verifiers' HGET: a key of the wrong type, a refused
        command and a stopped server each answer 454 4.7.0 (try later), not
        535 (a wrong password), and are logged; a good user then gets 235."""
        h.add_user(self.admin, "alice", "alice-pw-1")
        self.redis.cli(DB, "SET", "etrnd:user:{strusr}", "a string")
        self.redis.cli(DB, "ACL", "SETUSER", LIMITED, "reset", "on", ">" + LIMITED_PW,
                       "~*", "&*", "+@all")
        e = self.etrnd(self.redis.url(user=LIMITED, password=LIMITED_PW), tls=True,
                       listen_trusted="auto", auth_failure_limit="1000")
        self.assertEqual(self.auth(e, "alice", "alice-pw-1"), 235)
        self.assertEqual(self.auth(e, "alice", "wrong"), 535)
        self.assertEqual(self.auth(e, "strusr", "x"), 454)
        wait_log(e, r"auth: HGET etrnd:user:\{strusr\}: WRONGTYPE")
        self.redis.cli(DB, "ACL", "SETUSER", LIMITED, "-hget")
        self.assertEqual(self.auth(e, "alice", "alice-pw-1"), 454)
        wait_log(e, r"auth: HGET etrnd:user:\{alice\}: NOPERM")
        self.redis.cli(DB, "ACL", "SETUSER", LIMITED, "+hget")
        self.assertEqual(self.auth(e, "alice", "alice-pw-1"), 235)
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            self.assertEqual(self.auth(e, "alice", "alice-pw-1"), 454)
            wait_log(e, r"auth: redis .*: HGET: timed out, no reply.*; AUTH answers 454")
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        h.wait_for("AUTH 235 again", lambda: self.auth(e, "alice", "alice-pw-1") == 235,
                   within=CTL_S)
        wait_log(e, r"auth: redis .*: (connected|answering) again")
        # Down and back again: said again (the flag was cleared).
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            self.assertEqual(self.auth(e, "alice", "alice-pw-1"), 454)
            h.wait_for("the second outage logged", lambda: len(re.findall(
                "AUTH answers 454", e.stderr_text())) == 2, within=CTL_S)
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)

    def test_cluster_writes_refused(self):
        """The node-state thread's writes refused (OOM) and its reads of a
        key of the wrong type (WRONGTYPE): one warning per outage, not one
        per retry; the table keeps serving; back when Redis accepts again."""
        h.etrnctl_ok(self.admin, "domain", "add", "kept.test")
        e = self.etrnd(self.admin, cluster_publish_interval="100ms")
        wait_log(e, r"cluster: node \S+ publishing to redis")
        self.redis.cli(DB, "CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.redis.cli(DB, "CONFIG", "SET", "maxmemory", "1")
        try:
            wait_log(e, r"cluster: redis .*: .*OOM command not allowed.*; node \S+'s "
                        r"counts are not published", within=CTL_S)
            # Retries go on meanwhile (every 100-2000 ms): count them by
            # Redis's own connection counter, then check the log is quiet.
            conns = self.conns()
            h.wait_for("five retries", lambda: self.conns() >= conns + 5, within=CTL_S)
            self.assertEqual(rcpt_code(e, "kept.test"), 250)
        finally:
            self.redis.cli(DB, "CONFIG", "SET", "maxmemory", "0")
        self.assertEqual(len(re.findall(r"cluster: redis .*OOM", e.stderr_text())), 1,
                         e.stderr_text())
        h.wait_for("publishing again", lambda: "publishing to redis" in
                   e.stderr_text().split("OOM", 1)[1], within=CTL_S)
        # A nodes key of the wrong type: the read of the others fails.
        self.redis.cli(DB, "DEL", "etrnd:nodes")
        self.redis.cli(DB, "SET", "etrnd:nodes", "a string")
        wait_log(e, r"cluster: redis .*WRONGTYPE", within=CTL_S)
        self.assertEqual(rcpt_code(e, "kept.test"), 250)
        self.assertTrue(e.alive())

    def test_daemon_refused_at_load(self):
        """etrnd's user refused a command of the first load: with no static
        domain to start with, etrnd does not start (exit 2, the command
        named), rather than answer 550 for a customer whose row Redis would
        not give; a row refused (not of the wrong type) is no absent row."""
        h.etrnctl_ok(self.admin, "domain", "add", "kept.test")
        h.etrnctl_ok(self.admin, "route", "add", "kept.test", "127.0.0.1:2600")
        url = self.redis.url(user=LIMITED, password=LIMITED_PW)
        for denied in ("subscribe", "scan", "hgetall", "get"):
            with self.subTest(denied=denied):
                self.redis.cli(DB, "ACL", "SETUSER", LIMITED, "reset", "on",
                               ">" + LIMITED_PW, "~*", "&*", "+@all", "-" + denied)
                d = tempfile.mkdtemp(prefix="etrnd-it-", dir=self.tmp)
                e = h.Etrnd(tmpdir=d, redis=url)
                del e.cfg["relay_domains"]
                with self.assertRaisesRegex(AssertionError, r"exit status 2"):
                    e.start()
                e.proc = None   # exited 2, as wanted: nothing for cleanup to stop
                self.addCleanup(e.cleanup)
                self.assertRegex(e.stderr_text(), r"etrnd: %s.*NOPERM .*'%s' command; and "
                                 r"relay_domains lists no static domain" % (
                                     denied.upper(), denied))

    def conns(self):
        """Connections Redis accepted, less the redis-cli runs of this very
        count (each is one)."""
        self.polls = getattr(self, "polls", 0) + 1
        info = self.redis.cli(DB, "INFO", "stats")
        return int(re.search(r"total_connections_received:(\d+)", info).group(1)) - self.polls


if __name__ == "__main__":
    unittest.main()
