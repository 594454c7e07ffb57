# SPDX-License-Identifier: MIT
"""Shared fixture of the issue 16 tests (several etrnd nodes, one Redis).

    c = Cluster(self, n=3, cluster_node_ttl="3s")  # registers its cleanups
    c.provision("cust.test")            # every domain's dest: c.customer
    sink = c.start_customer()           # customer_server.CustomerServer
    ids = c.send_round_robin("cust.test", 30, "tag")   # Message-IDs
    c.wait_held({"cust.test": 30})      # the node hashes in Redis say 30
    c.wait_view(1, "cust.test", 20)     # node 1's view has the other 20
    code, text = c.etrn(1, "cust.test")    # over SMTP on node 1
    c.status()                          # `etrnctl status --cluster --json`

Cluster(testcase, n=3, redis_tcp=False, start=True, **cfg):
  redis: a private redis-server (RedisServer: unix socket, or a loopback
    TCP port with redis_tcp=True; .url(), .cli(*args) runs redis-cli).
  nodes[i]: etrnd_harness.Etrnd, node_id "node<i+1>", its own dir and
    spool, control socket, cluster_listen on a port chosen first
    (c.cluster_port[i]), one cluster_secret_file (c.secret_path, secret
    c.secret), odmr_listen="auto" (ATRN; e.ports["odmr_listen"]), and cfg
    (any etrnd key; e.g. cluster_publish_interval, cluster_node_ttl).
  cport: the customer's port (start_customer() serves it; every provisioned
    domain's dest).
  node_ids(): ["node1", ...]; node(i): nodes[i]; start_node(i) /
    stop_node(i) / kill9(i): one node (restart keeps its spool and ports).
  send(i, domain, k, tag) / send_round_robin(domain, k, tag): k messages to
    u@domain (one connection per node), each with a unique Message-ID
    "<tag-N@sender.test>"; returns the ids (round-robin: message N to node
    N % n).
  held(): {node_id: {domain: msgs}} as the node hashes in Redis say (an
    expired hash: {}).
  wait_held(want, within): until the totals per domain over the node
    hashes equal want ({domain: msgs}; a missing domain = 0).
  wait_view(i, domain, remote): until node i's view (what its ETRN counts)
    holds `remote` messages for domain on the other nodes: the other
    hashes sum to it, and node i read them after that (its hash's "read":
    unix ms of its last read of the others, every
    cluster_publish_interval).
  etrn(i, spec): ETRN over SMTP on node i: (code, text).
  status(): etrnctl status --cluster --json of node 0's config, parsed.
Everything started is stopped by PID at cleanup (nodes first: exit 0
asserted, like Etrnd.cleanup), the temp dirs removed (ETRND_KEEP_TMP keeps
them).
"""

import json
import os
import signal
import smtplib
import subprocess
import tempfile
import time

import etrnd_harness as h
from customer_server import CustomerServer

REDIS_START_S = 10.0
REDIS_STOP_S = 20.0
# At least 16 bytes (config: cluster_secret_file).
SECRET = "cluster-test-secret-0123456789"
SEND_TIMEOUT_S = 30
WAIT_S = h.LOG_WAIT_S
POLL_S = 0.05


class RedisServer:
    """A private redis-server in dir: on a unix socket (url "unix:...") or,
    with tcp=True, on a free loopback port (url "127.0.0.1:PORT", which
    Sentinel tests need). Stopped by PID."""

    def __init__(self, dirpath, tcp=False, port=None):
        self.bin = h.env_path("REDIS_SERVER")
        self.dir = dirpath
        self.tcp = tcp
        self.port = port or (h.free_port() if tcp else 0)
        self.sock = os.path.join(dirpath, "redis.sock")
        self.proc = None
        self.log = None

    def url(self):
        return "%s:%d" % (h.HOST, self.port) if self.tcp else "unix:" + self.sock

    def start(self, extra=()):
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        argv = [self.bin, "--port", str(self.port), "--bind", h.HOST,
                "--unixsocket", self.sock, "--unixsocketperm", "700",
                "--dir", self.dir, "--dbfilename", "dump.rdb",
                "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(argv + list(extra), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + REDIS_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited %d" % self.proc.returncode)
            if os.path.exists(self.sock) and self.cli("PING", check=False) == "PONG":
                return self
            time.sleep(POLL_S)
        self.stop()
        raise AssertionError("redis-server did not answer PING on %s" % self.url())

    def cli(self, *args, check=True):
        """redis-cli over the unix socket: stdout stripped (str)."""
        p = subprocess.run(["redis-cli", "-s", self.sock] + [str(a) for a in args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=REDIS_START_S)
        if check and p.returncode != 0:
            raise AssertionError("redis-cli %r exited %d: %s" % (
                args, p.returncode, p.stderr.decode("utf-8", "replace")))
        return p.stdout.decode("utf-8", "replace").strip()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=REDIS_STOP_S)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=REDIS_STOP_S)
        if self.log is not None:
            self.log.close()
            self.log = None
        self.proc = None


class Cluster:
    def __init__(self, tc, n=3, redis_tcp=False, start=True, **cfg):
        self.tc = tc
        self.n = n
        self.tmp = tempfile.mkdtemp(prefix="etrnd-cluster-")
        tc.addCleanup(h.remove_tmp, self.tmp)
        self.redis = RedisServer(self.tmp, tcp=redis_tcp)
        self.secret = SECRET
        self.secret_path = os.path.join(self.tmp, "cluster.secret")
        with open(self.secret_path, "w") as f:
            f.write(SECRET + "\n")
        os.chmod(self.secret_path, 0o600)
        self.cport = h.free_port()
        self.customer = None
        self.cluster_port = [h.free_port() for _ in range(n)]
        self.nodes = []
        for i in range(n):
            d = os.path.join(self.tmp, "node%d" % (i + 1))
            os.mkdir(d)
            conf = {"redis": self.redis.url(), "relay_domains": "static.test",
                    "node_id": "node%d" % (i + 1), "control_socket": "auto",
                    "cluster_listen": "%s:%d" % (h.HOST, self.cluster_port[i]),
                    "cluster_secret_file": self.secret_path,
                    "odmr_listen": "auto"}
            conf.update(cfg)
            self.nodes.append(h.Etrnd(tmpdir=d, **conf))
        # Cleanups run last-in first-out: nodes stop before Redis.
        tc.addCleanup(self.redis.stop)
        for e in self.nodes:
            tc.addCleanup(e.cleanup)
        tc.addCleanup(self._stop_customer)
        if start:
            self.start()

    def start(self):
        self.redis.start()
        for e in self.nodes:
            e.start()
        return self

    def node_ids(self):
        return [e.cfg["node_id"] for e in self.nodes]

    def node(self, i):
        return self.nodes[i]

    def start_node(self, i):
        return self.nodes[i].start()

    def stop_node(self, i):
        self.nodes[i].stop()

    def kill9(self, i):
        """SIGKILL node i (a crash); its cleanup then has nothing to stop
        (start_node(i) brings it back on its spool)."""
        self.nodes[i].kill9()
        self.nodes[i].proc = None

    def _stop_customer(self):
        if self.customer is not None:
            self.customer.stop()

    def start_customer(self, **knobs):
        """The customer's server (customer_server.py) on cport."""
        self.customer = CustomerServer(self.cport, **knobs).start()
        return self.customer

    def provision(self, *domains, etrn_from="127.0.0.0/8"):
        for d in domains:
            h.etrnctl_ok(self.redis.url(), "domain", "add", d, "--dest",
                         "%s:%d" % (h.HOST, self.cport), "--etrn-from", etrn_from)
        # Every node loads the domain from the events channel.
        for e in self.nodes:
            for d in domains:
                self.wait_accepts(e, d)

    def wait_accepts(self, e, domain, within=WAIT_S):
        """Until node e takes RCPT TO:<u@domain> (its table has it)."""
        deadline = time.monotonic() + within
        while True:
            with smtplib.SMTP(h.HOST, e.port, timeout=SEND_TIMEOUT_S) as s:
                s.ehlo("sender.test")
                s.mail("s@example.org")
                code, _ = s.rcpt("u@" + domain)
                s.rset()
            if code == 250:
                return
            if time.monotonic() > deadline:
                raise AssertionError("%s never accepted mail for %s (%d)" % (
                    e.cfg["node_id"], domain, code))
            time.sleep(POLL_S)

    @staticmethod
    def _body(domain, tag, n, mid):
        return ("From: s@example.org\r\nTo: u@%s\r\nSubject: %s %d\r\n"
                "Message-ID: %s\r\n\r\nheld for %s\r\n" % (domain, tag, n, mid,
                                                        domain)).encode()

    def send(self, i, domain, k, tag, first=0):
        """k messages to u@domain on node i; their Message-IDs."""
        ids = []
        with smtplib.SMTP(h.HOST, self.nodes[i].port, timeout=SEND_TIMEOUT_S) as s:
            s.ehlo("sender.test")
            for n in range(first, first + k):
                mid = "<%s-%d@sender.test>" % (tag, n)
                s.sendmail("s@example.org", ["u@" + domain], self._body(domain, tag, n, mid))
                ids.append(mid)
        return ids

    def send_round_robin(self, domain, k, tag):
        """k messages, message N to node N % n; their Message-IDs in order."""
        conns = [smtplib.SMTP(h.HOST, e.port, timeout=SEND_TIMEOUT_S) for e in self.nodes]
        ids = []
        try:
            for s in conns:
                s.ehlo("sender.test")
            for n in range(k):
                mid = "<%s-%d@sender.test>" % (tag, n)
                conns[n % self.n].sendmail("s@example.org", ["u@" + domain],
                                           self._body(domain, tag, n, mid))
                ids.append(mid)
        finally:
            for s in conns:
                s.quit()
        return ids

    def status(self, i=0, *extra):
        """`etrnctl -c <node i's config> status --cluster --json`, parsed."""
        rc, out, err = h.etrnctl(None, "status", "--cluster", "--json", *extra,
                                 conf=self.nodes[i].conf_path)
        if rc != 0:
            raise AssertionError("etrnctl status --cluster exited %d: %s%s" % (rc, out, err))
        return json.loads(out)

    def held(self):
        """{node_id: {domain: msgs}} straight from the node hashes."""
        out = {}
        for nid in self.node_ids():
            key = "etrnd:node:{%s}" % nid
            flat = self.redis.cli("HGETALL", key).split("\n") if self.redis.cli(
                "EXISTS", key) == "1" else []
            doms = {}
            for f, v in zip(flat[0::2], flat[1::2]):
                if f.startswith("d:"):
                    doms[f[2:]] = int(v.split()[0])
            out[nid] = doms
        return out

    def wait_held(self, want, within=WAIT_S):
        """Until the per-domain totals over every node hash equal want
        ({domain: msgs}); returns held()."""
        deadline = time.monotonic() + within
        while True:
            got = self.held()
            tot = {}
            for doms in got.values():
                for d, m in doms.items():
                    tot[d] = tot.get(d, 0) + m
            if all(tot.get(d, 0) == m for d, m in want.items()):
                return got
            if time.monotonic() > deadline:
                raise AssertionError("held counts never reached %r: %r" % (want, got))
            time.sleep(POLL_S)

    def read_ms(self, i):
        """Node i's hash's "read" (unix ms of its last read of the other
        nodes), 0 if none."""
        v = self.redis.cli("HGET", "etrnd:node:{%s}" % self.node_ids()[i], "read")
        return int(v) if v.isdigit() else 0

    def wait_view(self, i, domain, remote, within=WAIT_S):
        """Until node i's view has `remote` messages for domain on the other
        nodes: their hashes sum to it (at wall time T), then node i's own
        hash says it read them after T ("read")."""
        me = self.node_ids()[i]
        deadline = time.monotonic() + within
        while True:
            got = self.held()
            s = sum(doms.get(domain, 0) for nid, doms in got.items() if nid != me)
            if s == remote:
                break
            if time.monotonic() > deadline:
                raise AssertionError("remote held for %s never reached %d: %r"
                                     % (domain, remote, got))
            time.sleep(POLL_S)
        t = int(time.time() * 1000)
        while self.read_ms(i) <= t:
            if time.monotonic() > deadline:
                raise AssertionError("%s did not refresh after %d" % (me, t))
            time.sleep(POLL_S)
        return got

    def etrn(self, i, spec):
        """ETRN spec over SMTP on node i: (code, text)."""
        with smtplib.SMTP(h.HOST, self.nodes[i].port, timeout=SEND_TIMEOUT_S) as s:
            s.ehlo("customer.test")
            code, msg = s.docmd("ETRN", spec)
            return code, msg.decode("utf-8", "replace")
