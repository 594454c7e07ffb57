# SPDX-License-Identifier: MIT
"""Redis high availability through Sentinel (issue 16, admin/redis_conn.c).

A master and a replica redis-server and three sentinels on loopback ports
(each sentinel in its own temp dir, where it rewrites its config), two etrnd
nodes with redis_sentinels + redis_master_name, and etrnctl with --sentinels
(and with -c, the node's own config). kill -9 of the master: the nodes keep
accepting mail for provisioned domains through the outage (250), follow the
master the sentinels promote (their logs say so), pick up a domain etrnctl
provisions through Sentinel after the failover (by the pub/sub event on the
new master, not a resync), and etrnctl works against the new master. Then
the old master comes back (as a replica) and a manual SENTINEL FAILOVER
moves the master back: the nodes follow again. Every process is stopped by
PID; every wait is bounded and ends on an event.
"""

import os
import signal
import smtplib
import subprocess
import tempfile
import time
import unittest

from etrnd_harness import (Etrnd, HOST, LOG_WAIT_S, env_path, free_port, remove_tmp,
                           wait_for)
from test_redis import Redis, rcpt_code

MASTER = "mymaster"
START_S = 10.0
# Sentinel: the master is subjectively down after DOWN_AFTER_MS, the
# failover itself is bounded by FAILOVER_TIMEOUT_MS; discovery of the other
# sentinels runs on 2 s hello messages. Generous bounds for a loaded box.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
DISCOVER_S = 60.0
FAILOVER_S = 90.0


class Proc(Redis):
    """A redis-server (or sentinel) on a loopback TCP port, stopped by PID
    (test_redis.Redis.stop)."""

    def __init__(self, tmp, name, args, port):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.name, self.args, self.port, self.proc = name, args, port, None

    def start(self):
        self.log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen([env_path("REDIS_SERVER")] + self.args,
                                     cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        wait_for("%s answering on %d" % (self.name, self.port),
                 lambda: self.cli("PING") == "PONG", within=START_S)
        return self

    def cli(self, *args):
        p = subprocess.run(["redis-cli", "-h", HOST, "-p", str(self.port)] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=20)
        return p.stdout.decode().strip()

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=20)

    def log_tail(self, lines=12):
        with open(os.path.join(self.dir, "log"), "rb") as f:
            tail = f.read().decode(errors="replace").splitlines()[-lines:]
        return "".join("  %s| %s\n" % (self.name, t) for t in tail)


def data_server(tmp, name, port, replicaof=None):
    # A full sync goes over the socket with no delay and is loaded from it
    # (no RDB file on either side): it depends on neither the disk nor the
    # 5 s wait Redis keeps by default for more replicas to join.
    args = ["--port", str(port), "--bind", HOST, "--dir", os.path.join(tmp, name),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
            "--repl-diskless-load", "on-empty-db"]
    if replicaof:
        args += ["--replicaof", HOST, str(replicaof)]
    return Proc(tmp, name, args, port)


def sentinel(tmp, name, port, master_port):
    p = Proc(tmp, name, [], port)
    conf = os.path.join(p.dir, "sentinel.conf")
    with open(conf, "w") as f:
        f.write("port %d\nbind %s\ndir %s\n" % (port, HOST, p.dir))
        f.write("sentinel monitor %s %s %d 2\n" % (MASTER, HOST, master_port))
        f.write("sentinel down-after-milliseconds %s %d\n" % (MASTER, DOWN_AFTER_MS))
        f.write("sentinel failover-timeout %s %d\n" % (MASTER, FAILOVER_TIMEOUT_MS))
        f.write("sentinel parallel-syncs %s 1\n" % MASTER)
    p.args = [conf, "--sentinel"]
    return p


def auth_code(e, user, password):
    """AUTH PLAIN on e's trusted listener (no TLS needed): the reply code.
    The AUTH verifiers read the user from Redis through Sentinel too."""
    with smtplib.SMTP(HOST, e.ports["listen_trusted"], timeout=30) as s:
        s.ehlo("client.test")
        s.user, s.password = user, password
        try:
            return s.auth("PLAIN", s.auth_plain, initial_response_ok=True)[0]
        except smtplib.SMTPAuthenticationError as ex:
            return ex.smtp_code


def info_field(text, field):
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


class SentinelTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-sentinel-")
        self.addCleanup(remove_tmp, self.tmp)
        self.ports = {"a": free_port(), "b": free_port()}
        self.data = {
            "a": data_server(self.tmp, "redis-a", self.ports["a"]),
            "b": data_server(self.tmp, "redis-b", self.ports["b"], self.ports["a"]),
        }
        for d in self.data.values():
            self.addCleanup(d.stop)
            d.start()
        self.sentinels = []
        for i in range(3):
            s = sentinel(self.tmp, "sentinel-%d" % i, free_port(), self.ports["a"])
            self.addCleanup(s.stop)
            self.sentinels.append(s.start())
        self.slist = ",".join("%s:%d" % (HOST, s.port) for s in self.sentinels)
        self.wait("the sentinels to know each other and the replica", self.discovered,
                  within=DISCOVER_S, poll=0.2)

    def discovered(self):
        for s in self.sentinels:
            out = s.cli("SENTINEL", "master", MASTER).split("\n")
            kv = dict(zip(out[::2], out[1::2]))
            if kv.get("num-other-sentinels") != "2" or kv.get("num-slaves") != "1":
                return False
        return info_field(self.data["b"].cli("INFO", "replication"),
                          "master_link_status") == "up"

    def etrnctl(self, *args, conf=None):
        argv = [env_path("ETRNCTL")]
        argv += ["-c", conf] if conf else ["--sentinels", self.slist, "--master-name", MASTER]
        p = subprocess.run(argv + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(p.returncode, 0, "etrnctl %s: %s%s" % (
            " ".join(args), p.stdout.decode(), p.stderr.decode()))
        return p.stdout.decode()

    def named(self, which):
        return r"redis: sentinel %s:\d+ names master %s:%d for %s" % (
            HOST, HOST, self.ports[which], MASTER)

    def wait_master(self, which):
        """Until every sentinel names data server which as the master."""
        want = "%s\n%d" % (HOST, self.ports[which])
        self.wait("the sentinels to name %s" % which,
                  lambda: all(s.cli("SENTINEL", "get-master-addr-by-name", MASTER) == want
                              for s in self.sentinels), within=FAILOVER_S, poll=0.1)

    def replica_seen(self, which):
        """Every sentinel lists data server which as a replica in good
        standing (no down flags, its link to the master up): only such a
        replica can be promoted (SENTINEL FAILOVER answers NOGOODSLAVE
        until then)."""
        port = str(self.ports[which])
        for s in self.sentinels:
            out = s.cli("SENTINEL", "replicas", MASTER).split("\n")
            rows = []  # one dict per replica: each begins with its "name"
            for k, v in zip(out[::2], out[1::2]):
                if k == "name":
                    rows.append({})
                if rows:
                    rows[-1][k] = v
            if not any(r.get("port") == port and r.get("flags") == "slave" and
                       r.get("master-link-status") == "ok" for r in rows):
                return False
        return True

    def failover(self):
        """SENTINEL FAILOVER, asked again while a sentinel answers that one
        is already in progress or that it has no replica in good standing
        yet (both pass): ends when it answered OK."""
        said = []

        def asked():
            said.append(self.sentinels[0].cli("SENTINEL", "failover", MASTER))
            if not said[-1].startswith(("OK", "INPROG", "NOGOODSLAVE")):
                self.fail("SENTINEL FAILOVER: %r" % said[-1])
            return said[-1] == "OK"
        self.wait("SENTINEL FAILOVER to be accepted", asked, within=FAILOVER_S, poll=0.5)
        print("SENTINEL FAILOVER answered %s" % " then ".join(said))

    def wait(self, what, cond, within, poll):
        """wait_for(), and on time out the tails of the Redis servers' and
        sentinels' logs with the error: Sentinel's part of a failure is
        only seen there, and the temp dir goes with the test."""
        try:
            wait_for(what, cond, within=within, poll=poll)
        except AssertionError as e:
            procs = list(self.data.values()) + self.sentinels
            raise AssertionError("%s\n%s" % (e, "".join(p.log_tail() for p in procs))) from None

    def test_failover(self):
        self.etrnctl("domain", "add", "before.test")
        p = subprocess.run([env_path("ETRNCTL"), "--sentinels", self.slist, "--master-name",
                            MASTER, "user", "add", "u1", "--password-stdin"],
                           input=b"s3cret\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.data["a"].cli("EXISTS", "etrnd:domain:{before.test}"), "1")
        # Replication is asynchronous: on a loaded machine the replica may
        # not have these writes (or even its first sync) yet, and a master
        # killed now would lose them with it (Redis's promise, not ours).
        # WAIT until the replica acknowledged them (hang guard 60 s).
        self.assertEqual(self.data["a"].cli("WAIT", "1", "60000"), "1")
        self.assertEqual(self.data["b"].cli("EXISTS", "etrnd:domain:{before.test}"), "1")
        nodes = []
        for i in range(2):
            e = Etrnd(node_id="n%d" % (i + 1), redis_sentinels=self.slist,
                      redis_master_name=MASTER, log_level="debug", listen_trusted="auto",
                      # No periodic resync during the test: a change seen
                      # after the failover was carried by its event (a
                      # loaded machine can stretch the test past 60 s).
                      redis_resync="1d")
            self.addCleanup(e.cleanup)
            nodes.append(e.start())
        for e in nodes:
            e.wait_log(self.named("a"))
            e.wait_log(r"redis sentinel %s via .*: connected, 2 domain\(s\) loaded" % MASTER)
            self.assertEqual(rcpt_code(e, "before.test"), 250)
            self.assertEqual(auth_code(e, "u1", "s3cret"), 235)
        # etrnctl -c the node's config finds the master the same way.
        self.assertIn("before.test", self.etrnctl("domain", "list", conf=nodes[0].conf_path))

        marks = [e.log_mark() for e in nodes]
        self.data["a"].kill9()
        # Through the outage the last table serves: known domains 250,
        # unknown 451 (unless that node has already found the new master).
        for e, m in zip(nodes, marks):
            e.wait_log(r"serving 2 domain\(s\) from the last table", since=m)
        outage_451 = 0
        for e, m in zip(nodes, marks):
            self.assertEqual(rcpt_code(e, "before.test"), 250)
            code = rcpt_code(e, "unknown.test")
            if code == 451:
                outage_451 += 1
            else:
                self.assertEqual(code, 550)
                e.wait_log(r"connected again", since=m, within=10.0)
        self.wait_master("b")
        for e, m in zip(nodes, marks):
            e.wait_log(self.named("b"), since=m, within=FAILOVER_S)
            e.wait_log(r"redis sentinel %s via .*: connected again, 2 domain\(s\)" % MASTER,
                       since=m, within=FAILOVER_S)
            self.assertEqual(rcpt_code(e, "before.test"), 250)
            # The verifiers' connection to the dead master fails; they find
            # the new one (454 meanwhile, while in their back-off).
            wait_for("AUTH after the failover", lambda: auth_code(e, "u1", "s3cret") == 235,
                     within=LOG_WAIT_S, poll=0.2)
        print("outage: %d of %d nodes answered 451 for an unknown domain before the "
              "failover completed" % (outage_451, len(nodes)))

        # Provisioned through Sentinel after the failover: the event on the
        # new master reaches both nodes' subscribers.
        self.etrnctl("domain", "add", "after.test")
        self.assertEqual(self.data["b"].cli("EXISTS", "etrnd:domain:{after.test}"), "1")
        for e in nodes:
            wait_for("after.test on %s" % e.cfg["node_id"],
                     lambda: rcpt_code(e, "after.test") == 250, within=LOG_WAIT_S)
            self.assertNotIn("redis: resync,", e.stderr_text()[marks[nodes.index(e)]:],
                             "a resync, not the event, found it")
        self.assertEqual(self.etrnctl("domain", "list"), "after.test\nbefore.test\n")

        # The old master comes back, restarted as a replica of the new one
        # as an operator would configure it (the sentinels would convert a
        # returning master on their own, but not at once, and it would be a
        # master meanwhile: Redis's part, not what this test is about). A
        # manual failover then moves the master back, and the nodes follow
        # (the old connections are closed by the sentinels'
        # reconfiguration, or +switch-master is heard).
        self.data["a"].args += ["--replicaof", HOST, str(self.ports["b"])]
        self.data["a"].start()
        self.wait("the old master to replicate the new one",
                  lambda: info_field(self.data["a"].cli("INFO", "replication"),
                                     "master_link_status") == "up", within=FAILOVER_S, poll=0.2)
        self.wait("the sentinels to see the old master as a good replica",
                  lambda: self.replica_seen("a"), within=FAILOVER_S, poll=0.2)
        marks = [e.log_mark() for e in nodes]
        self.failover()
        self.wait_master("a")
        for e, m in zip(nodes, marks):
            e.wait_log(self.named("a"), since=m, within=FAILOVER_S)
            e.wait_log(r"connected again", since=m, within=FAILOVER_S)
        self.etrnctl("domain", "add", "back.test")
        self.assertEqual(self.data["a"].cli("EXISTS", "etrnd:domain:{back.test}"), "1")
        for e in nodes:
            wait_for("back.test", lambda: rcpt_code(e, "back.test") == 250, within=LOG_WAIT_S)
            self.assertEqual(rcpt_code(e, "after.test"), 250)


if __name__ == "__main__":
    unittest.main()
