# SPDX-License-Identifier: MIT
"""kill -9 during ingest, ROUNDS times at random moments, under load; the
clients behave like MTAs: a message whose 250 never came (the connection
died first) is sent again, on a new connection, until it gets one. Small
and large messages are mixed so that kills land inside DATA too.

At the end the spool (read offline with etrnd-spool) must hold every queue
id that got a 250, with the body sent for it (lost = 0), no queue id twice,
and the daemon's own index must count exactly what is on disk. A message
stored whose 250 died with the process is sent again by its client: that is
a duplicate in the spool (at-least-once). Each client has at most one
message in flight, so one crash can duplicate at most CLIENTS messages; the
test asserts that bound and prints acknowledged / found / lost / duplicated
and the worst crash.
"""

import os
import random
import re
import smtplib
import threading
import time
import unittest

import etrnd_harness as h

ROUNDS = 20
CLIENTS = 8
ROUND_MIN_S = 0.3
ROUND_MAX_S = 2.0
# Each round kills only once this many more 250s came (an event, not a
# time: a loaded machine acknowledges fewer per second), after its random
# pause; so the load means something however slow the machine is.
ROUND_MIN_ACKS = 21
LARGE_EVERY = 10            # one message in ten is large
SMALL_LINES = 40
LARGE_LINES = 4000          # ~200 KiB: a kill often lands inside its DATA
QUEUED_RE = re.compile(rb"queued as ([0-9A-F]{14})")
TAG_RE = re.compile(rb"^Message-ID: <([^@>]+)@crash-ingest\.test>", re.M)
TRY_RE = re.compile(rb"^X-Try: (\d+)", re.M)


class Client(threading.Thread):
    """Sends its own messages one at a time, each until it gets a 250."""

    def __init__(self, cid, where, stop, rng_seed):
        super().__init__(daemon=True)
        self.cid, self.where, self.stop = cid, where, stop
        self.rng = random.Random(rng_seed)
        self.acked = []      # (qid, tag, body)
        self.pending = None  # tag of the message without a 250 yet
        self.n = 0

    def body(self, tag):
        lines = LARGE_LINES if self.n % LARGE_EVERY == 0 else SMALL_LINES
        # X-Try: the round of this attempt (to tell which crash made a
        # duplicate); the tag stays the same over the retries.
        return ("Subject: %s\r\nMessage-ID: <%s@crash-ingest.test>\r\n"
                "X-Try: %d\r\n\r\n" % (tag, tag, self.where["round"])
                + ("line %s\r\n" % tag) * lines).encode()

    def session(self):
        with smtplib.SMTP(h.HOST, self.where["port"], timeout=10) as s:
            s.ehlo("crash.test")
            while not self.stop.is_set():
                if self.pending is None:
                    self.n += 1
                    self.pending = "c%d-m%d" % (self.cid, self.n)
                body = self.body(self.pending)
                s.mail("s@example.org")
                s.rcpt("u@demo.test")
                code, msg = s.data(body)
                if code != 250:
                    raise AssertionError("DATA got %d %r" % (code, msg))
                m = QUEUED_RE.search(msg)
                if not m:
                    raise AssertionError("250 without queue id: %r" % msg)
                self.acked.append((m.group(1).decode(), self.pending, body))
                self.pending = None

    def run(self):
        while not self.stop.is_set():
            try:
                self.session()
            except (OSError, smtplib.SMTPException, EOFError):
                time.sleep(0.02)   # killed under us: the message is retried


def tally(tc, recs, clients):
    """(acked, found, lost, duplicated, worst crash, stored without a 250)."""
    acked = {q: body for c in clients for q, _, body in c.acked}
    by_qid = {}
    for r in recs:
        tc.assertNotIn(r["qid"], by_qid, "qid %s stored twice" % r["qid"])
        by_qid[r["qid"]] = r
    lost = [q for q in acked if q not in by_qid]
    for q, body in acked.items():
        if q in by_qid:
            tc.assertEqual(h.client_body(by_qid[q]), body, "body of %s differs" % q)
    per_tag = {}
    unacked_by_round = {}
    for q, r in by_qid.items():
        stored = h.client_body(r)
        tag = TAG_RE.search(stored).group(1).decode()
        per_tag[tag] = per_tag.get(tag, 0) + 1
        if q not in acked:
            rnd = int(TRY_RE.search(stored).group(1))
            unacked_by_round[rnd] = unacked_by_round.get(rnd, 0) + 1
    dups = sum(n - 1 for n in per_tag.values())
    worst = max(unacked_by_round.values(), default=0)
    return len(acked), len(acked) - len(lost), lost, dups, worst, \
        sum(unacked_by_round.values())


class CrashIngestTest(unittest.TestCase):
    def test_kill9_during_ingest_20_times(self):
        e = h.Etrnd(sync="batch", threads="2")
        e.cfg["control_socket"] = os.path.join(e.dir, "ctl.sock")
        self.addCleanup(e.cleanup)
        rng = random.Random(int(os.environ.get("CRASH_SEED", "1985")))
        where = {"port": 0, "round": 0}
        stop = threading.Event()
        clients = [Client(i, where, stop, rng.random()) for i in range(CLIENTS)]
        self.addCleanup(stop.set)
        for rnd in range(ROUNDS):
            e.start()
            where["round"] = rnd      # first: a client on the new port sees it
            where["port"] = e.port
            if rnd == 0:
                for c in clients:
                    c.start()
            before = sum(len(c.acked) for c in clients)
            time.sleep(rng.uniform(ROUND_MIN_S, ROUND_MAX_S))  # a random moment
            h.wait_for("%d acknowledged in round %d" % (ROUND_MIN_ACKS, rnd),
                       lambda: sum(len(c.acked) for c in clients) >= before + ROUND_MIN_ACKS)
            e.kill9()
        stop.set()
        h.join_threads(clients, 30, "client thread")
        e.start()
        indexed, status = h.indexed_messages(e.cfg["control_socket"], "demo.test")
        e.stop()
        recs = e.records()
        acked, found, lost, dups, worst, unacked = tally(self, recs, clients)
        print("kill -9 during ingest: %d rounds, acknowledged %d, found %d, "
              "lost %d, stored without a 250 %d, duplicated in spool %d, worst "
              "crash %d (bound %d)" % (ROUNDS, acked, found, len(lost), unacked,
                                       dups, worst, CLIENTS))
        self.assertGreaterEqual(acked, ROUND_MIN_ACKS * ROUNDS, "too little load to mean anything")
        self.assertEqual(lost, [], "%d acknowledged message(s) lost" % len(lost))
        self.assertLessEqual(worst, CLIENTS, "more duplicates in one crash than "
                             "messages in flight")
        self.assertEqual(indexed, len(recs), "index after restart:\n" + status)


if __name__ == "__main__":
    unittest.main()
