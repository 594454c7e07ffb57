# SPDX-License-Identifier: MIT
"""Issue 16 item 5, node decommission: three etrnd nodes and one
redis-server on loopback (cluster_harness.py). While senders keep sending
to all three, `etrnctl node drain node3 --wait` makes node 3 refuse new
connections, hand its held mail to nodes 1 and 2 (both get some) over the
cluster listener with AUTH as node3, and exit 0 with nothing live left in
its spool; then one ETRN on node 1 releases every message any node
acknowledged to the customer's server, each exactly once. A kill -9 of
node 3 in the middle of its hand-off, then a restart: it finds its
decommission key, resumes, exits 0; nothing is lost, and the duplicates
(counted by Message-ID) stay within the drain's crash bound. Every process
is stopped by PID."""

import collections
import os
import re
import smtplib
import subprocess
import threading
import time
import unittest

import etrnd_harness as h
from cluster_harness import Cluster

PARENT = "cust.test"
DOMS = ["d%d.cust.test" % i for i in range(1, 5)]
PUBLISH = "300ms"
TTL = "2s"
# node3's drain_done_window in the kill -9 test, and what bounds the
# duplicates a crash may make: a window per connection, connections at
# most threads x peers x drain_connections.
WINDOW = 4
THREADS = 2
PEERS = 2
CONNS = 4
DUP_BOUND = WINDOW * THREADS * PEERS * CONNS
PER_DOM = 300              # kill -9 test: messages per domain on node 3
WAIT_S = 120.0
NO_MORE_S = 1.5
SENT_RE = re.compile(r"relay=(node[12])\[[^\]]*\]:\d+, .*status=sent")


def cluster(tc, **node3):
    c = Cluster(tc, n=3, cluster_publish_interval=PUBLISH, cluster_node_ttl=TTL,
                threads=THREADS, start=False)
    c.node(2).cfg.update(node3)
    c.start()
    c.provision(*DOMS)
    return c


def start_nowait(e):
    """Start node e on its spool without waiting for its SMTP listener: a
    node resuming its decommission closes it at once (and may be done and
    gone before anyone looks)."""
    e.write_config()
    with open(e.stderr_path, "wb") as errf:
        e.proc = subprocess.Popen([e.bin, "-c", e.conf_path], stdin=subprocess.DEVNULL,
                                  stdout=errf, stderr=errf, cwd=e.dir, env=e.env)


class Senders:
    """One thread per node sending messages one connection at a time, the
    domains in turn, until stop(); acked[i] holds the Message-IDs node i
    answered 250, refused[i] counts connections it refused (or 421)."""

    def __init__(self, c, tag):
        self.c = c
        self.tag = tag
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.acked = [[] for _ in c.nodes]
        self.tried = [0] * len(c.nodes)
        self.refused = [0] * len(c.nodes)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(len(c.nodes))]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, i):
        n = 0
        while not self.stop_ev.is_set():
            mid = "<%s-n%d-%d@sender.test>" % (self.tag, i + 1, n)
            dom = DOMS[n % len(DOMS)]
            body = self.c._body(dom, self.tag, n, mid)
            n += 1
            with self.lock:
                self.tried[i] += 1
            try:
                with smtplib.SMTP(h.HOST, self.c.node(i).port, timeout=30) as s:
                    s.sendmail("s@example.org", ["u@" + dom], body)
            except (OSError, smtplib.SMTPException):
                with self.lock:
                    self.refused[i] += 1
                time.sleep(0.05)
                continue
            with self.lock:
                self.acked[i].append(mid)
            time.sleep(0.01)

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(60)
            if t.is_alive():
                raise AssertionError("a sender thread did not stop")

    def all_acked(self):
        with self.lock:
            return [m for a in self.acked for m in a]


class DecommissionTest(unittest.TestCase):
    def wait_exit0(self, e, what):
        """Node e exits by itself with status 0 within WAIT_S."""
        try:
            rc = e.wait(timeout=WAIT_S)
        except Exception:
            raise AssertionError("%s did not exit; stderr:\n%s" % (what, e.stderr_text()))
        self.assertEqual(rc, 0, "%s exits 0; stderr:\n%s" % (what, e.stderr_text()))

    def assert_spool_empty(self, e):
        """Every MSG record of e's spool has every recipient DONE (or the
        segments are gone altogether)."""
        recs = h.spool_json(e.spool_dir, e.spool_tool)
        want = {(r["qid"], i) for r in recs if r.get("type") == "MSG"
                for i in range(len(r["rcpts"]))}
        done = {(r["qid"], r["rcpt"]) for r in recs if r.get("type") == "DONE"}
        self.assertEqual(sorted(want - done), [], "nothing live left in the spool")

    def release_all(self, c, sink, ids):
        """One ETRN @cust.test on node 1; every id arrives exactly once."""
        code, text = c.etrn(0, "@" + PARENT)
        self.assertIn(code, (250, 253), text)
        want = set(ids)
        deadline = time.monotonic() + WAIT_S
        while not want <= set(sink.recorder.message_ids()):
            self.assertLess(time.monotonic(), deadline, "only %d of %d arrived" % (
                len(want & set(sink.recorder.message_ids())), len(want)))
            time.sleep(0.05)
        h.still(self, "nothing more arrives", sink.recorder.count, sink.recorder.count(),
                within=NO_MORE_S)
        got = collections.Counter(sink.recorder.message_ids())
        missing = set(ids) - set(got)
        self.assertEqual(missing, set(), "every acknowledged message arrives")
        return got

    def test_drain_under_load(self):
        c = cluster(self)
        pre = c.send(2, DOMS[0], 10, "pre0") + c.send(2, DOMS[1], 10, "pre1") + \
            c.send(2, DOMS[2], 10, "pre2")
        c.wait_held({DOMS[0]: 10, DOMS[1]: 10, DOMS[2]: 10})
        c.wait_view(2, DOMS[0], 0)  # node 3 has read the others at least once
        # Refusals first: a live node is not forgotten, an unknown one not
        # drained, --timeout without --wait is a usage error.
        rc, out, err = h.etrnctl(c.redis.url(), "node", "forget", "node3")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("still alive", err)
        rc, out, err = h.etrnctl(c.redis.url(), "node", "drain", "node9")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("not in the cluster", err)
        rc, out, err = h.etrnctl(c.redis.url(), "node", "drain", "node3", "--timeout", "5s")
        self.assertEqual(rc, 2, out + err)
        self.assertEqual(c.redis.cli("EXISTS", "etrnd:decommission:{node3}"), "0")
        load = Senders(c, "load").start()
        try:
            mark = c.node(2).log_mark()
            time.sleep(0.5)  # the senders are under way on all three
            t0 = time.monotonic()
            rc, out, err = h.etrnctl(c.redis.url(), "node", "drain", "node3", "--wait",
                                     "--timeout", "%ds" % WAIT_S, timeout=WAIT_S + 30)
            self.assertEqual(rc, 0, out + err)
            self.assertIn("hand-off done", out)
            self.wait_exit0(c.node(2), "node3")
            took = time.monotonic() - t0
            # Keep sending to nodes 1 and 2 a little after node 3 left.
            time.sleep(0.3)
        finally:
            load.stop()
        stderr = c.node(2).stderr_text()[mark:]
        self.assertRegex(stderr, r"decommission node3: started")
        self.assertRegex(stderr, r"decommission node3: spool empty")
        self.assertGreater(load.refused[2], 0, "node 3 refused new connections")
        relays = collections.Counter(m.group(1) for m in SENT_RE.finditer(stderr))
        self.assertGreater(relays["node1"], 0, "node 1 got some: %r" % relays)
        self.assertGreater(relays["node2"], 0, "node 2 got some: %r" % relays)
        self.assertEqual(c.redis.cli("EXISTS", "etrnd:decommission:{node3}"), "0")
        self.assert_spool_empty(c.node(2))
        acked = pre + load.all_acked()
        sink = c.start_customer()
        got = self.release_all(c, sink, acked)
        dups = {m: n for m, n in got.items() if n > 1}
        self.assertEqual(dups, {}, "nothing arrives twice")
        extra = set(got) - set(acked)
        tried = sum(load.tried)
        self.assertLessEqual(len(extra), tried - len(load.all_acked()),
                             "extras only from sends that got no answer")
        # Gone: once its hash expired, node 3 may be forgotten.
        deadline = time.monotonic() + WAIT_S
        while c.redis.cli("EXISTS", "etrnd:node:{node3}") != "0":
            self.assertLess(time.monotonic(), deadline, "node 3's hash never went")
            time.sleep(0.1)
        rc, out, err = h.etrnctl(c.redis.url(), "node", "forget", "node3")
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(c.redis.cli("ZSCORE", "etrnd:nodes", "node3"), "")
        print("decommission under load: node3 handed %d message(s) (node1 %d, node2 %d) "
              "and exited in %.2f s; %d acked in all, %d refused by node 3"
              % (sum(relays.values()), relays["node1"], relays["node2"], took,
                 len(acked), load.refused[2]))

    def test_kill9_mid_handoff_resumes(self):
        c = cluster(self, drain_done_window=WINDOW)
        ids = []
        for i, d in enumerate(DOMS):
            ids += c.send(2, d, PER_DOM, "k%d" % i)
        c.wait_held({d: PER_DOM for d in DOMS})
        c.wait_view(2, DOMS[0], 0)
        mark = c.node(2).log_mark()
        rc, out, err = h.etrnctl(c.redis.url(), "node", "drain", "node3")
        self.assertEqual(rc, 0, out + err)
        # The first message handed off: kill -9 in the middle of it all
        # (polled often: a hand-off of it all takes a fraction of a second).
        deadline = time.monotonic() + WAIT_S
        while not SENT_RE.search(c.node(2).stderr_text()[mark:]):
            self.assertLess(time.monotonic(), deadline, "no hand-off seen")
            time.sleep(0.002)
        c.kill9(2)
        first_log = c.node(2).stderr_text()[mark:]
        before = len(SENT_RE.findall(first_log))
        self.assertLess(before, len(ids), "killed before the end of the hand-off")
        self.assertEqual(c.redis.cli("EXISTS", "etrnd:decommission:{node3}"), "1",
                         "the key stays set")
        start_nowait(c.node(2))
        self.wait_exit0(c.node(2), "node3 after its restart")
        self.assertRegex(c.node(2).stderr_text(), r"decommission node3: .* is set: resuming")
        self.assertEqual(c.redis.cli("EXISTS", "etrnd:decommission:{node3}"), "0")
        self.assert_spool_empty(c.node(2))
        sink = c.start_customer()
        got = self.release_all(c, sink, ids)
        self.assertEqual(set(got), set(ids), "nothing but what was sent")
        dups = sum(n - 1 for n in got.values())
        self.assertLessEqual(dups, DUP_BOUND, "duplicates within the crash bound")
        print("kill -9 mid-hand-off: %d handed before the kill, %d message(s) in all, "
              "%d duplicate(s) (bound %d)" % (before, len(ids), dups, DUP_BOUND))

    def test_no_live_peer_waits_draining(self):
        """With the other nodes gone, node 3 stops accepting, says draining
        and retries with back-off; the first node back gets it all."""
        c = cluster(self)
        ids = c.send(2, DOMS[0], 20, "lone")
        c.wait_held({DOMS[0]: 20})
        c.stop_node(0)
        c.stop_node(1)
        deadline = time.monotonic() + WAIT_S
        while any(c.redis.cli("EXISTS", "etrnd:node:{node%d}" % i) != "0" for i in (1, 2)):
            self.assertLess(time.monotonic(), deadline, "the stopped nodes' hashes stay")
            time.sleep(0.1)
        mark = c.node(2).log_mark()
        rc, out, err = h.etrnctl(c.redis.url(), "node", "drain", "node3")
        self.assertEqual(rc, 0, out + err)
        c.node(2).wait_log(r"round 2: 0 peer\(s\).*no live peer", since=mark)
        self.assertEqual(c.redis.cli("HGET", "etrnd:node:{node3}", "state"), "draining")
        with self.assertRaises(OSError):
            c.node(2).connect(timeout=5).close()
        self.assertTrue(c.node(2).alive(), "it waits for a peer")
        c.start_node(0)
        self.wait_exit0(c.node(2), "node3 once node 1 is back")
        log = c.node(2).stderr_text()[mark:]
        self.assertEqual(len(re.findall(r"relay=node1\[[^\]]*\]:\d+, .*status=sent", log)), 20)
        self.assert_spool_empty(c.node(2))
        sink = c.start_customer()
        got = self.release_all(c, sink, ids)
        self.assertEqual(dict(got), {m: 1 for m in ids})


if __name__ == "__main__":
    unittest.main()
