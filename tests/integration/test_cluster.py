# SPDX-License-Identifier: MIT
"""Issue 16, several nodes: three etrnd nodes and one redis-server on
loopback (cluster_harness.py). Mail for one domain spread over all three;
an ETRN on node 2 releases every node's share to the customer's server
(aiosmtpd) exactly once, and its 253 count is the cluster's total; 251 only
when no node holds any; etrnctl flush drains every node once; a node killed
with SIGKILL leaves the count after cluster_node_ttl and shows as gone in
`etrnctl status --cluster`. Every process is stopped by PID."""

import re
import time
import unittest

import etrnd_harness as h
from cluster_harness import Cluster

DOM = "cust.test"
K = 30                       # messages, round-robin over the three nodes
# Short so the test waits seconds, not the default 3 s / 15 s.
PUBLISH = "300ms"
TTL = "2s"
COUNT_RE = re.compile(r"OK, (\d+) pending messages? for node %s started" % re.escape(DOM))
# After the last expected delivery, how long a duplicate is looked for.
NO_MORE_S = 1.5


def cluster(tc, **cfg):
    c = Cluster(tc, n=3, cluster_publish_interval=PUBLISH, cluster_node_ttl=TTL, **cfg)
    c.provision(DOM)
    return c


class ClusterEtrnTest(unittest.TestCase):
    def delivered_once(self, sink, ids):
        self.assertTrue(sink.wait_count(len(ids), h.LOG_WAIT_S),
                        "only %d of %d arrived" % (sink.recorder.count(), len(ids)))
        h.still(self, "no message arrives twice", sink.recorder.count, len(ids),
                within=NO_MORE_S)
        self.assertEqual(sorted(sink.recorder.message_ids()), sorted(ids),
                         "every message once, nothing else")

    def test_etrn_on_node2_releases_all_three(self):
        c = cluster(self)
        sink = c.start_customer()
        ids = c.send_round_robin(DOM, K, "rr")
        held = c.wait_held({DOM: K})
        self.assertEqual([held[n].get(DOM) for n in c.node_ids()], [K // 3] * 3,
                         "a third on each node")
        st = c.status(1)
        self.assertEqual({n["id"]: n["state"] for n in st["nodes"]},
                         {"node1": "up", "node2": "up", "node3": "up"})
        self.assertEqual(st["domains"][0]["domain"], DOM)
        self.assertEqual(st["domains"][0]["msgs"], K)
        self.assertEqual(st["domains"][0]["nodes"], {n: K // 3 for n in c.node_ids()})
        c.wait_view(1, DOM, K - K // 3)
        t0 = time.monotonic()
        code, text = c.etrn(1, DOM)
        self.assertEqual(code, 253, text)
        self.assertEqual(int(COUNT_RE.search(text).group(1)), K, "the cluster's total")
        self.delivered_once(sink, ids)
        print("ETRN on node2: %d messages from 3 nodes in %.2f s"
              % (K, sink.recorder.messages[-1][2] - t0))
        # Every node logged its own share's drain; nodes 1 and 3 were told.
        for i in (0, 2):
            c.node(i).wait_log(r"redis event: drain %s: " % re.escape(DOM))
        self.assertNotIn("redis event: drain", c.node(1).stderr_text(),
                         "node 2 ignores its own event")
        c.wait_held({DOM: 0})
        c.wait_view(1, DOM, 0)
        code, text = c.etrn(1, DOM)
        self.assertEqual(code, 251, text)

    def test_mail_only_elsewhere_counts(self):
        c = cluster(self)
        sink = c.start_customer()
        ids = c.send(2, DOM, 5, "n3")
        c.wait_view(0, DOM, 5)
        code, text = c.etrn(0, DOM)
        self.assertEqual(code, 253, "nothing on node 1, 5 on node 3: " + text)
        self.assertEqual(int(COUNT_RE.search(text).group(1)), 5)
        self.delivered_once(sink, ids)

    def test_event_joining_a_drain_drains_again(self):
        """Node 1 is still draining (a slow customer) when a second ETRN on
        node 2 tells it again: it joins, and when its drain ends it drains
        once more, so the mail that came since is released too."""
        # One shard, one connection: 6 x 0.3 s, a drain of about 2 s.
        c = cluster(self, threads=1, drain_connections=1)
        sink = c.start_customer(delay=0.3)
        first = c.send(0, DOM, 6, "slow")
        c.wait_view(1, DOM, 6)
        code, text = c.etrn(1, DOM)
        self.assertEqual(code, 253, text)
        h.wait_for("node 1's drain delivering", lambda: sink.recorder.count() >= 1)
        later = c.send(0, DOM, 2, "later")
        mark = c.node(0).log_mark()
        c.etrn(1, DOM)
        c.node(0).wait_log(r"ETRN %s from .*: joins the drain already running" % re.escape(DOM),
                           since=mark)
        c.node(0).wait_log(r"drain %s: again, for the mail held since" % re.escape(DOM),
                           since=mark)
        self.delivered_once(sink, first + later)

    def test_flush_drains_every_node_once(self):
        c = cluster(self)
        sink = c.start_customer()
        ids = c.send_round_robin(DOM, K, "fl")
        c.wait_held({DOM: K})
        # Through node 2's control socket: it drains its share and
        # publishes "drain cust.test" (no "from") to every node.
        rc, out, err = h.etrnctl(None, "flush", DOM, conf=c.node(1).conf_path)
        self.assertEqual(rc, 0, out + err)
        self.delivered_once(sink, ids)
        c.wait_held({DOM: 0})

    def test_killed_node_is_gone(self):
        c = cluster(self)
        c.send(2, DOM, 4, "dead")
        ids = c.send(0, DOM, 3, "live")
        c.wait_view(1, DOM, 7)
        c.kill9(2)
        st = h.wait_for("node3 shown as gone", lambda: [
            n for n in c.status(1)["nodes"] if n["id"] == "node3" and n["state"] == "gone"])
        self.assertGreaterEqual(st[0]["seen_ago_ms"], 1000, "seen at least a TTL ago")
        self.assertEqual(st[0]["msgs"], 0)
        c.wait_view(1, DOM, 3)
        sink = c.start_customer()
        code, text = c.etrn(1, DOM)
        self.assertEqual(code, 253, text)
        self.assertEqual(int(COUNT_RE.search(text).group(1)), 3, "node3's 4 not counted")
        self.delivered_once(sink, ids)
        rc, out, err = h.etrnctl(None, "status", "--cluster", conf=c.node(0).conf_path)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^node3\s+gone\s+\d+\.\ds ago")

    def test_redis_restart_republishes(self):
        """Redis comes back empty (the harness's saves nothing): each node
        reconnects (back-off) and writes its whole hash again."""
        c = cluster(self)
        c.send(0, DOM, 3, "a")
        c.send(2, DOM, 2, "b")
        c.wait_held({DOM: 5})
        mark = [e.log_mark() for e in c.nodes]
        c.redis.stop()
        c.redis.start()
        # The nodes may have written again already; nothing else writes
        # the domain rows back.
        self.assertEqual(c.redis.cli("KEYS", "etrnd:domain*"), "", "Redis came back empty")
        held = c.wait_held({DOM: 5})
        self.assertEqual((held["node1"].get(DOM), held["node3"].get(DOM)), (3, 2))
        for e, m in zip(c.nodes, mark):
            e.wait_log(r"cluster: redis .*; node \S+'s counts are not published", since=m)
            e.wait_log(r"cluster: node \S+ publishing to redis", since=m)

    def test_status_cluster_without_redis(self):
        c = cluster(self)
        for i in range(3):
            c.stop_node(i)
        c.redis.stop()
        rc, out, err = h.etrnctl(None, "status", "--cluster", conf=c.node(0).conf_path)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("status --cluster", err)


if __name__ == "__main__":
    unittest.main()
