#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Issue 16's benchmark: three etrnd nodes and one redis-server on this
machine (tests/integration/cluster_harness.py), sharing its CPUs.

  drain: N messages for dom0.test spread over the 3 nodes (N/3 each, sent
    by `etrnbench send`), released by one ETRN on node 2, against the same
    N held on node 2 alone, in the same run (alternating, ROUNDS each):
    messages/s at the customer's sink (`etrnbench etrn --sink`) and the
    time until all arrived.
  fanout: the time from an ETRN on node 2 to the first delivery of the
    mail held on node 1 and on node 3 (one message each, a unique
    Message-ID per node and round, at an aiosmtpd customer server in this
    process): p50/p99 over LAT_ROUNDS ETRNs. Target: under 50 ms.

  bench/cluster_bench.py [BUILD_DIR]     (default build/: a release build)
  N=100000 ROUNDS=1 LAT_ROUNDS=50 RES=DIR bench/cluster_bench.py build
Prints one JSON line per result, and writes them to RES/cluster.json when
RES is set. Loopback only; every process is stopped by PID at the end.
"""

import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
os.environ.setdefault("ETRND_BIN", os.path.join(BUILD, "etrnd"))
os.environ.setdefault("ETRND_SPOOL_TOOL", os.path.join(BUILD, "etrnd-spool"))
os.environ.setdefault("ETRNCTL", os.path.join(BUILD, "etrnctl"))
os.environ.setdefault("REDIS_SERVER", "/usr/bin/redis-server")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import cluster_harness  # noqa: E402  (after the path and environment)

EB = os.path.join(BUILD, "etrnbench")
N = int(os.environ.get("N", "100000"))
ROUNDS = int(os.environ.get("ROUNDS", "1"))
LAT_ROUNDS = int(os.environ.get("LAT_ROUNDS", "50"))
RES = os.environ.get("RES")
DOM = "dom0.test"
SEND_SESSIONS = 20
RUN_TIMEOUT_S = 600
WAIT_S = 600.0
LAT_WAIT_S = 30.0
MS = 1000.0


class Cleanups:
    """The part of unittest.TestCase the harness uses: addCleanup."""

    def __init__(self):
        self.fns = []

    def addCleanup(self, fn, *args):
        self.fns.append((fn, args))

    def run(self):
        for fn, args in reversed(self.fns):
            try:
                fn(*args)
            except Exception as e:  # report, and stop the rest all the same
                sys.stderr.write("cleanup %r: %s\n" % (fn, e))


def eb(*args):
    p = subprocess.run([EB] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=RUN_TIMEOUT_S)
    if p.returncode != 0:
        raise RuntimeError("etrnbench %s exited %d: %s" % (
            args[0], p.returncode, p.stderr.decode("utf-8", "replace")[-2000:]))
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def hold(c, shares):
    """shares[i] messages for DOM on node i, then until Redis says so."""
    for i, n in enumerate(shares):
        if n:
            eb("send", "--server", "127.0.0.1:%d" % c.node(i).port, "-n", n,
               "-c", SEND_SESSIONS, "--domains", 1, "--json")
    c.wait_held({DOM: sum(shares)}, within=WAIT_S)
    c.wait_view(1, DOM, sum(shares) - shares[1], within=WAIT_S)


def drain(c, label, shares):
    hold(c, shares)
    j = eb("etrn", "--server", "127.0.0.1:%d" % c.node(1).port, "--domain", DOM,
           "--sink", "127.0.0.1:%d" % c.cport, "--expect", sum(shares),
           "--timeout", RUN_TIMEOUT_S, "--json")
    e = j.get("etrn", j)
    row = {"bench": "cluster_drain", "layout": label, "n": sum(shares),
           "codes": e.get("codes"), "delivered": e.get("delivered"),
           "msgs_per_s": e.get("drain_msgs_per_s"), "drain_s": e.get("drain_s"),
           "last_delivery_ms": e.get("last_delivery_ms")}
    c.wait_held({DOM: 0}, within=WAIT_S)
    return row


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] if v else float("nan")


def drains_ended(c):
    """Until every drain each node started has logged its summary: a drain
    event that finds the domain still draining joins that drain, and mail
    held after its snapshot waits for the next ETRN (as on one node)."""
    deadline = time.monotonic() + LAT_WAIT_S
    while True:
        busy = 0
        for e in c.nodes:
            log = e.stderr_text()
            busy += (len(re.findall(r"drain \S+ \(shard \d+\): \d+ message\(s\) to", log))
                     - len(re.findall(r"drain \S+ \(shard \d+\): \d+ sent,", log)))
        if busy == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("%d drain(s) still running" % busy)
        time.sleep(0.01)


def fanout(c):
    """ETRN on node 2, one message held on nodes 1 and 3: ms to each."""
    sink = c.start_customer()
    lat = {"node1": [], "node3": []}
    try:
        for r in range(LAT_ROUNDS):
            want = {}
            for i, nid in ((0, "node1"), (2, "node3")):
                want[c.send(i, DOM, 1, "lat-%s-%d" % (nid, r))[0]] = nid
            t0 = time.monotonic()
            code, text = c.etrn(1, DOM)
            deadline = t0 + LAT_WAIT_S
            seen = {}
            while len(seen) < len(want) and time.monotonic() < deadline:
                with sink.recorder.lock:
                    for _, mid, at, _ in sink.recorder.messages:
                        if mid in want and mid not in seen:
                            seen[mid] = at
                time.sleep(0.001)
            if len(seen) < len(want):
                raise RuntimeError("round %d: %d of %d arrived (ETRN %d %s)"
                                   % (r, len(seen), len(want), code, text))
            for mid, at in seen.items():
                lat[want[mid]].append((at - t0) * MS)
            drains_ended(c)
    finally:
        sink.stop()
    out = []
    for nid, v in lat.items():
        out.append({"bench": "cluster_fanout", "from": nid, "rounds": len(v),
                    "p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2),
                    "max_ms": round(max(v), 2)})
    return out


def main():
    cl = Cleanups()
    rows = []
    try:
        # etrn_rate_limit: the fan-out loop sends LAT_ROUNDS ETRNs a minute.
        c = cluster_harness.Cluster(cl, n=3, cluster_publish_interval="1s",
                                    cluster_node_ttl="10s",
                                    etrn_rate_limit=str(10 * LAT_ROUNDS + 100))
        c.provision(DOM)
        third = N // 3
        for _ in range(ROUNDS):
            rows.append(drain(c, "spread over 3 nodes", [third, N - 2 * third, third]))
            print(json.dumps(rows[-1]), flush=True)
            rows.append(drain(c, "held on node 2 alone", [0, N, 0]))
            print(json.dumps(rows[-1]), flush=True)
        rows += fanout(c)
    finally:
        cl.run()
    for r in rows:
        if r["bench"] == "cluster_fanout":
            print(json.dumps(r))
    if RES:
        with open(os.path.join(RES, "cluster.json"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
