# SPDX-License-Identifier: MIT
"""Compaction: old segments that are mostly dead are compacted away (their
live messages copied to the head segment, then unlinked), and the survivors
stay intact, byte for byte, across a restart. Most messages are made dead by
expiry (a domain with a short max_hold, null sender so no DSN); the clock is
the test's (clock_offset), never a sleep of days.
"""

import base64
import os
import re
import smtplib
import tempfile
import time
import unittest

import etrnd_harness as h
from test_redis import Redis, etrnctl

QUEUED_RE = re.compile(rb"queued as ([0-9A-F]{14})")
WAIT_S = 30.0
NMSG = 100
KEEP_EVERY = 8            # every 8th message survives (long.test)
BODY_LINES = 400          # ~30 KB a message: ~3 MB, several 1 MiB segments


def body_for(i):
    lines = ["Subject: compaction %d" % i, "Message-ID: <c%d@compaction.test>" % i, ""]
    lines += ["line %04d of message %03d %s" % (k, i, "x" * 40) for k in range(BODY_LINES)]
    return ("\r\n".join(lines) + "\r\n").encode()


def send_all(e):
    """Send NMSG messages in one session; returns {qid: (i, keep)}."""
    out = {}
    with smtplib.SMTP(h.HOST, e.port, timeout=30) as s:
        s.ehlo("compaction.test")
        for i in range(NMSG):
            keep = i % KEEP_EVERY == 0
            s.mail("keeper@example.org" if keep else "")
            s.rcpt("u%d@long.test" % i if keep else "u%d@short.test" % i)
            code, msg = s.data(body_for(i))
            assert code == 250, (code, msg)
            out[QUEUED_RE.search(msg).group(1).decode()] = (i, keep)
    return out


def segments(e):
    d = os.path.join(e.spool_dir, "0")
    return sorted(f for f in os.listdir(d) if f.endswith(".seg"))


def wait_for(pred, what, e):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("never %s:\n%s" % (what, e.stderr_text()[-4000:]))


class CompactionTest(unittest.TestCase):
    def test_mostly_dead_segments_compacted_survivors_intact(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-compact-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        r = Redis(tmp).start()
        self.addCleanup(r.stop)
        self.assertEqual(etrnctl(r, "domain", "add", "short.test", "--max-hold", "1d")[0], 0)
        self.assertEqual(etrnctl(r, "domain", "add", "long.test")[0], 0)
        e = h.Etrnd(threads="1", max_hold="5d", redis=r.url(), relay_domains="static.test",
                    segment_size="1M", compact_threshold="25", compact_min_age="1h")
        self.addCleanup(e.cleanup)
        e.start()
        sent = send_all(e)
        e.stop()
        keep = {q for q, (_, k) in sent.items() if k}
        before = segments(e)
        self.assertGreaterEqual(len(before), 3, before)
        bodies = {x["qid"]: x["body_b64"] for x in h.spool_json(e.spool_dir)
                  if x["type"] == "MSG" and x["qid"] in keep}
        self.assertEqual(set(bodies), keep)

        # Two days later: every short.test message expires (no DSN: null
        # sender); each old segment is left with an eighth of its bytes
        # live, is compacted, and goes.
        e.cfg["clock_offset"] = "2d"
        e.start()
        wait_for(lambda: not set(before) & set(segments(e)),
                 "removed the old segments %s (now %s)" % (before, segments(e)), e)
        e.stop()
        log = e.stderr_text()
        self.assertEqual(len(re.findall(r"status=expired", log)), NMSG - len(keep))
        compacted = re.findall(r"spool shard 0: compacted segment ([0-9a-f]{16}\.seg): "
                               r"(\d+) live messages \((\d+) bytes\) moved", log)
        self.assertEqual(sorted(c[0] for c in compacted), before, log[-4000:])
        self.assertEqual(sum(int(c[1]) for c in compacted), len(keep))

        def check_survivors():
            recs = h.spool_json(e.spool_dir)
            msgs = [x for x in recs if x["type"] == "MSG"]
            self.assertEqual(sorted({x["qid"] for x in msgs}), sorted(keep))
            for x in msgs:
                self.assertEqual(x["body_b64"], bodies[x["qid"]], x["qid"])
                i = sent[x["qid"]][0]
                self.assertEqual(base64.b64decode(x["body_b64"]).count(b"line "), BODY_LINES)
                self.assertIn(("Subject: compaction %d" % i).encode(),
                              base64.b64decode(x["body_b64"]))
            # No survivor has a DONE: none was delivered or expired.
            self.assertEqual([x for x in recs if x["type"] == "DONE" and x["qid"] in keep], [])
            for seg in before:
                self.assertNotIn(seg, segments(e))

        check_survivors()

        # A restart finds exactly the survivors held, and nothing expires.
        e.start()
        wait_for(lambda: re.search(r"messages \(\d+ recipients\) queued", e.stderr_text()),
                 "saw recovery finish", e)
        e.stop()
        log = e.stderr_text()
        self.assertRegex(log, r"spool: [^:]*: %d messages \(%d recipients\) queued"
                         % (len(keep), len(keep)))
        self.assertNotIn("status=expired", log)
        check_survivors()


if __name__ == "__main__":
    unittest.main()
