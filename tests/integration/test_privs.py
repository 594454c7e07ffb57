# SPDX-License-Identifier: MIT
"""Privileges (issue 15): started as root with user = nobody, etrnd binds its
ports (a port below 1024 too) and then runs as nobody in every thread with no
capability left; mail is still spooled (250, the segment is nobody's) and
drained after ETRN. A spool another user may write, or owns, is refused
(exit 2, a clear error). The systemd unit passes systemd-analyze verify.
Root-only cases skip with the reason when run unprivileged."""

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import unittest

import etrnd_harness as h
from customer_server import CustomerServer
from test_etrn import etrn, hold, wait_drained
from test_redis import Redis, etrnctl

RUN_USER = "nobody"
# Loopback ports below 1024 tried for the privileged bind, in this order.
LOW_PORTS = range(1023, 900, -1)
REFUSE_WAIT_S = 30


def low_port():
    """A free loopback port below 1024, or None."""
    for port in LOW_PORTS:
        s = socket.socket()
        try:
            s.bind((h.HOST, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    return None


def status_ids(path):
    """{"Uid": [...], "Gid": [...], "CapEff": int, "CapPrm": int} of a task."""
    out = {}
    with open(path) as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("Uid", "Gid"):
                out[key] = [int(v) for v in val.split()]
            elif key in ("CapEff", "CapPrm"):
                out[key] = int(val, 16)
    return out


def run_user():
    pw = pwd.getpwnam(RUN_USER)
    return pw.pw_uid, pw.pw_gid


@unittest.skipUnless(os.geteuid() == 0, "needs root: start etrnd as root to see it drop to "
                     "user = nobody (run the suite as root, as make test in the container does)")
class PrivsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-privs-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        os.chmod(self.tmp, 0o711)  # nobody must reach the spool and Redis' socket
        self.uid, self.gid = run_user()

    def redis(self):
        r = Redis(self.tmp).start()
        self.addCleanup(r.stop)
        os.chmod(r.sock, 0o777)
        return r

    def etrnd_dir(self):
        d = os.path.join(self.tmp, "etrnd")
        os.mkdir(d, 0o711)
        return d

    def test_drops_to_user_and_still_spools_and_drains(self):
        redis = self.redis()
        cport = h.free_port()
        rc, _, err = etrnctl(redis, "domain", "add", "held.test", "--dest",
                             "127.0.0.1:%d" % cport, "--etrn-from", "127.0.0.0/8")
        self.assertEqual(rc, 0, err)
        d = self.etrnd_dir()
        spool = os.path.join(d, "spool")
        os.mkdir(spool, 0o700)
        os.chown(spool, self.uid, self.gid)
        port = low_port()
        if port is None:
            print("no free loopback port below 1024: the privileged bind is not tried")
        e = h.Etrnd(tmpdir=d, port=port, user=RUN_USER, redis=redis.url())
        self.addCleanup(e.cleanup)
        e.start()
        self.assertIn("running as user %s (uid %d" % (RUN_USER, self.uid), e.stderr_text())
        tasks = os.listdir("/proc/%d/task" % e.proc.pid)
        self.assertGreater(len(tasks), 2)
        for tid in tasks:  # every thread: glibc's setxid broadcast reached it
            st = status_ids("/proc/%d/task/%s/status" % (e.proc.pid, tid))
            self.assertEqual(st["Uid"], [self.uid] * 4, tid)
            self.assertEqual(st["Gid"], [self.gid] * 4, tid)
            self.assertEqual((st["CapEff"], st["CapPrm"]), (0, 0), tid)
        ids = hold(e, "held.test", 20, "privs")
        segs = [os.path.join(r, f) for r, _, fs in os.walk(spool) for f in fs]
        self.assertTrue(segs, "no segment written")
        for p in segs + [os.path.join(spool, s) for s in os.listdir(spool)]:
            self.assertEqual(os.stat(p).st_uid, self.uid, p)
        c = CustomerServer(cport).start()
        self.addCleanup(c.stop)
        code, msg, _ = etrn(e, "held.test")
        self.assertIn(code, (250, 253), msg)
        c.wait_count(len(ids), within=30)
        wait_drained(self, e)
        got = set(c.recorder.message_ids())
        self.assertEqual(got, set(ids))

    def refused(self, user, setup, want):
        """etrnd with user and the spool set up by setup(spool): exit 2, want
        in its stderr, nothing listening."""
        d = self.etrnd_dir()
        spool = os.path.join(d, "spool")
        setup(spool)
        e = h.Etrnd(tmpdir=d, **({"user": user} if user else {}))
        e.port = h.free_port()
        e.write_config()
        p = subprocess.run([e.bin, "-c", e.conf_path], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=e.env, cwd=d, timeout=REFUSE_WAIT_S)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 2, out)
        self.assertRegex(out, want)
        shutil.rmtree(d)

    def test_refuses_unsafe_spool(self):
        uid, gid = self.uid, self.gid

        def mine(mode):
            def setup(spool):
                os.mkdir(spool)
                os.chmod(spool, mode)
                os.chown(spool, uid, gid)
            return setup

        def shard(mode, owner):
            def setup(spool):
                mine(0o750)(spool)
                os.mkdir(os.path.join(spool, "0"))
                os.chmod(os.path.join(spool, "0"), mode)
                os.chown(os.path.join(spool, "0"), owner, gid)
            return setup

        def root_segment(spool):
            shard(0o750, uid)(spool)
            open(os.path.join(spool, "0", "0000000000000001.seg"), "wb").close()

        def root_owned(spool):
            os.mkdir(spool, 0o700)

        cases = [
            # (name, user, setup, want in stderr)
            ("others may write", RUN_USER, mine(0o777), r"spool_dir: \S+/spool has mode 0777: "
             r"other users may write it, refusing to run"),
            ("group may write", RUN_USER, mine(0o770), r"has mode 0770: other users may write"),
            ("sticky but others write", None, lambda s: (os.mkdir(s), os.chmod(s, 0o1777)),
             r"has mode 1777"),
            ("shard group-writable", RUN_USER, shard(0o775, uid), r"spool/0 has mode 0775"),
            ("shard owned by root", RUN_USER, shard(0o750, 0),
             r"spool/0 is owned by uid 0, etrnd runs as uid %d" % uid),
            ("segment left by a root run", RUN_USER, root_segment,
             r"0000000000000001\.seg is owned by uid 0"),
            ("spool root's, user nobody", RUN_USER, root_owned,
             r"spool is owned by uid 0, etrnd runs as uid %d: chown -R" % uid),
            ("no such user", "no-such-user-p1", mine(0o700), r"user = no-such-user-p1: no such user"),
            ("user root", "root", mine(0o700), r"user = root: that is root"),
        ]
        for name, user, setup, want in cases:
            with self.subTest(name):
                self.refused(user, setup, want)

    def test_check_only_names_a_bad_user(self):
        """etrnd -t (systemd's ExecStartPre): an unknown user or root is a
        config error, an existing user passes; no spool is looked at."""
        for user, want_rc, want in (("no-such-user-p1", 2, "user = no-such-user-p1: no such user"),
                                    ("root", 2, "user = root: that is root"),
                                    (RUN_USER, 0, "")):
            with self.subTest(user):
                d = self.etrnd_dir()
                e = h.Etrnd(tmpdir=d, user=user, spool_dir="/nonexistent/spool")
                e.port = h.free_port()
                e.write_config()
                p = subprocess.run([e.bin, "-t", "-c", e.conf_path], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, env=e.env, timeout=REFUSE_WAIT_S)
                out = p.stdout.decode("utf-8", "replace")
                self.assertEqual(p.returncode, want_rc, out)
                self.assertIn(want, out)
                if not want:
                    self.assertEqual(out, "")
                shutil.rmtree(d)

    def test_root_without_user_warns(self):
        d = self.etrnd_dir()
        e = h.Etrnd(tmpdir=d)
        self.addCleanup(e.cleanup)
        e.start()
        self.assertRegex(e.stderr_text(), r"warning: running as root: set user =")
        st = status_ids("/proc/%d/status" % e.proc.pid)
        self.assertEqual(st["Uid"], [0] * 4)


@unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze not installed "
                     "(Debian's systemd package): the unit is not verified")
class UnitTest(unittest.TestCase):
    def test_unit_verifies(self):
        """etc/systemd/etrnd.service with its ExecStart= pointed at the build
        (systemd-analyze wants the binary to exist). Man pages are P2's:
        --man=no here, the install test checks them."""
        src = os.path.join(h.env_path("ETRND_SOURCE_DIR"), "etc", "systemd", "etrnd.service")
        with open(src) as f:
            unit = f.read()
        for key in ("Type=notify", "WatchdogSec=", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                    "ProtectSystem=strict", "ReadWritePaths=/var/spool/etrnd",
                    "NoNewPrivileges=yes", "PrivateTmp=yes",
                    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "User=etrnd"):
            self.assertRegex(unit, r"(?m)^" + re.escape(key), key)
        tmp = tempfile.mkdtemp(prefix="etrnd-unit-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "etrnd.service")
        with open(path, "w") as f:
            f.write(unit.replace("/usr/sbin/etrnd", h.env_path("ETRND_BIN")))
        p = subprocess.run(["systemd-analyze", "verify", "--man=no", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertNotIn("etrnd.service:", out, out)  # no warning about our unit


if __name__ == "__main__":
    unittest.main()
