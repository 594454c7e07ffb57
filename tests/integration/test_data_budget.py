# SPDX-License-Identifier: MIT
"""The DATA buffers of all sessions share one budget, data_memory_limit
(issue 10 item 5). Eight clients each send an unfinished 40 MiB message at
once: before the budget etrnd's RSS grew by the sum of them (342 MB in the
issue); now it stays under the budget plus a stated overhead, the sessions
that find the budget used up get 452 4.3.1 at the end of their DATA (the rest
is read and dropped, so they stay in step), and a well-behaved client beside
them keeps getting its 250s.

Run as a script (see main()) to print the RSS figures with and without the
budget.
"""

import os
import smtplib
import socket
import sys
import threading
import time
import unittest

from etrnd_harness import Etrnd, HOST

MiB = 1024 * 1024
ATTACKERS = 8
ATTACK_BYTES = 40 * MiB
BUDGET = 80 * MiB          # one worst-case 50M message fits (the start-up check)
# Besides the budget: each thread's receive buffers and queues, the good
# client's session, allocator slack and (under ASan) its bookkeeping. 64 MiB
# was exceeded by 0.3 MiB once beside a CPU hog (frees and new buffers
# interleave differently); 80 MiB keeps the bound at half of what the attack
# would hold without the budget (ATTACKERS x ATTACK_BYTES = 320 MiB).
OVERHEAD = 80 * MiB
GOOD_EVERY_S = 0.5
GOOD_REPLY_S = 30.0     # generous: a loaded 2-core machine
ATTACK_WAIT_S = 240.0
LINE = b"x" * 98 + b"\r\n"
CHUNK = LINE * 655      # ~64 KiB of whole lines


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cmd(f, s, line):
    s.sendall(line)
    while True:
        r = f.readline()
        if not r or r[3:4] != b"-":
            return r


def attacker(port, results, i):
    """DATA with 40 MiB and no final dot; then hold the socket open until
    told. Records whether the whole text was accepted by the kernel."""
    s = socket.create_connection((HOST, port), timeout=ATTACK_WAIT_S)
    f = s.makefile("rb")
    f.readline()
    cmd(f, s, b"EHLO attacker%d.test\r\n" % i)
    cmd(f, s, b"MAIL FROM:<a@attacker.test>\r\n")
    cmd(f, s, b"RCPT TO:<u@demo.test>\r\n")
    r = cmd(f, s, b"DATA\r\n")
    assert r.startswith(b"354"), r
    sent = 0
    while sent < ATTACK_BYTES:
        s.sendall(CHUNK)
        sent += len(CHUNK)
    results[i] = (s, f)


def finish(s, f):
    """The final dot: the reply to the unfinished message."""
    s.sendall(b".\r\n")
    r = f.readline()
    s.close()
    return r


class Good(threading.Thread):
    """A well-behaved client: one small message every GOOD_EVERY_S."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop, self.codes, self.worst = port, threading.Event(), [], 0.0

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with smtplib.SMTP(HOST, self.port, timeout=GOOD_REPLY_S) as c:
                    c.sendmail("g@good.test", ["u@demo.test"], b"Subject: g\r\n\r\nhello\r\n")
                self.codes.append(250)
            except smtplib.SMTPException as e:
                self.codes.append(getattr(e, "smtp_code", -1))
            except OSError:
                self.codes.append(-1)
            self.worst = max(self.worst, time.monotonic() - t0)
            self.stop.wait(GOOD_EVERY_S)


def attack(e):
    """Run the attack on a started etrnd; returns (base, peak RSS, replies to
    the unfinished messages, the good client)."""
    pid = e.proc.pid
    base = rss(pid)
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    good = Good(e.port)
    good.start()
    results = [None] * ATTACKERS
    ts = [threading.Thread(target=attacker, args=(e.port, results, i), daemon=True)
          for i in range(ATTACKERS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(ATTACK_WAIT_S)
    # A half-second more of sampling: a measuring window after the attack
    # (the peak is what is measured), not a wait before a negative check.
    time.sleep(0.5)
    peak[0] = max(peak[0], rss(pid))
    replies = [finish(*r) for r in results if r]
    good.stop.set()
    good.join(GOOD_REPLY_S)
    done.set()
    sampler.join()
    return base, peak[0], replies, good


class DataBudgetTest(unittest.TestCase):
    def setUp(self):
        # ASan keeps freed memory in quarantine (RSS would not fall when a
        # refused session frees its buffer): turn the quarantine off.
        old = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = (old + ":" if old else "") + "quarantine_size_mb=0"
        self.addCleanup(lambda: os.environ.__setitem__("ASAN_OPTIONS", old)
                        if old is not None else os.environ.pop("ASAN_OPTIONS"))

    def test_eight_unfinished_messages_stay_in_budget(self):
        e = Etrnd.started(self, data_memory_limit="%dM" % (BUDGET // MiB))
        base, peak, replies, good = attack(e)
        sys.stderr.write("RSS: %.1f MiB before, peak %.1f MiB (budget %d MiB)\n"
                         % (base / MiB, peak / MiB, BUDGET // MiB))
        self.assertEqual(len(replies), ATTACKERS)
        self.assertLessEqual(peak - base, BUDGET + OVERHEAD,
                             "RSS grew %.1f MiB" % ((peak - base) / MiB))
        refused = [r for r in replies if r.startswith(b"452 4.3.1")]
        self.assertGreater(len(refused), 0, replies)
        for r in replies:
            self.assertTrue(r.startswith(b"250 ") or r.startswith(b"452 4.3.1"), r)
        self.assertIn("DATA memory budget exhausted", e.stderr_text())
        # The good client: every message taken, none waited past the bound.
        self.assertGreater(len(good.codes), 0)
        self.assertEqual(set(good.codes), {250}, good.codes)
        self.assertLess(good.worst, GOOD_REPLY_S)


def main():
    """Print the RSS figures without a budget to speak of (1T: the old
    behaviour) and with the test's."""
    for limit in ("1T", "%dM" % (BUDGET // MiB)):
        e = Etrnd(data_memory_limit=limit).start()
        try:
            base, peak, replies, good = attack(e)
            print("data_memory_limit=%s: RSS %.1f MiB before, peak %.1f MiB; "
                  "unfinished: %s; good: %d x 250 of %d, worst %.1fs"
                  % (limit, base / MiB, peak / MiB,
                     sorted(set(r[:9] for r in replies)), good.codes.count(250),
                     len(good.codes), good.worst))
        finally:
            e.stop()
            e.cleanup()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        main()
    else:
        unittest.main()
