# SPDX-License-Identifier: MIT
"""`etrnctl top` against a loaded etrnd (issue 15, part T).

A real etrnd with a private redis-server holds mail for three domains
(5, 3 and 1 messages, sent over SMTP). `etrnctl top --once` prints one plain
frame naming them with their counts, biggest first; the live view, run in a
pseudo-terminal (Python's pty) of a known size, draws the same domains, and
q or Ctrl-C ends it with exit 0 and the terminal's modes as they were
before (echo and line editing back, the alternate screen left, the cursor
shown). Without a terminal (and without --once) it refuses with exit 2.
Loopback, a private directory and a private redis-server only; every process
is stopped by PID.
"""

import fcntl
import os
import re
import select
import shutil
import signal
import smtplib
import struct
import subprocess
import sys
import tempfile
import termios
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as H  # noqa: E402
from test_redis import Redis, wait_code  # noqa: E402

# Held messages per domain: distinct counts, so the order is checked too.
LOAD = (("big.top.test", 5), ("mid.top.test", 3), ("one.top.test", 1))
COLS, ROWS = 120, 40
FRAME_WAIT_S = 20.0  # a loaded 2-core machine
EXIT_WAIT_S = 10.0
ANSI_RE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


class PtyTop:
    """etrnctl top on a pseudo-terminal of COLS x ROWS (closed and reaped
    by the test's cleanups)."""

    def __init__(self, tc, argv):
        self.master, self.slave = os.openpty()
        tc.addCleanup(os.close, self.master)
        tc.addCleanup(os.close, self.slave)
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.before = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave, start_new_session=True)
        tc.addCleanup(self.reap)
        self.out = b""

    def read(self, wait):
        if select.select([self.master], [], [], wait)[0]:
            try:
                self.out += os.read(self.master, 65536)
            except OSError:
                pass

    def frame(self):
        """The last frame drawn: the text after the last "home" escape."""
        return ANSI_RE.sub(b"", self.out.split(b"\x1b[H")[-1]).decode(errors="replace")

    def wait_frame(self, ok, within=FRAME_WAIT_S):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.read(0.2)
            if ok(self.frame()):
                return self.frame()
        return self.frame()

    def quit(self, key):
        os.write(self.master, key)
        rc = self.proc.wait(EXIT_WAIT_S)
        before = None
        while before != len(self.out):
            before = len(self.out)
            self.read(0.2)
        return rc

    def reap(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def domain_row(text, domain):
    """The HELD count top shows for domain, or None."""
    m = re.search(r"^%s\s+(\d+)\s" % re.escape(domain), text, re.M)
    return int(m.group(1)) if m else None


class TopTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="etrnd-top-")
        cls.redis = Redis(cls.tmp).start()
        try:
            for dom, _ in LOAD:
                H.etrnctl_ok(cls.redis.url(), "domain", "add", dom)
            e = cls.e = H.Etrnd(threads="2", redis=cls.redis.url())
            e.cfg["control_socket"] = os.path.join(e.dir, "ctl.sock")
            e.start()
            for dom, _ in LOAD:
                wait_code(e, dom, 250, H.LOG_WAIT_S)
            cls.load()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "e", None):
            cls.e.cleanup()
        cls.redis.stop()
        shutil.rmtree(cls.tmp, True)

    @classmethod
    def load(cls):
        with smtplib.SMTP(H.HOST, cls.e.port, timeout=30) as s:
            s.ehlo("client.example.org")
            for dom, n in LOAD:
                for i in range(n):
                    s.sendmail("s@example.org", ["u%d@%s" % (i, dom)],
                               b"Subject: top %d\r\n\r\nheld for %s\r\n" % (i, dom.encode()))

    def top_cmd(self, *args):
        return [H.env_path("ETRNCTL"), "-c", self.e.conf_path, "top"] + list(args)

    def test_once_prints_the_held_domains_biggest_first(self):
        p = subprocess.run(self.top_cmd("--once"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("\x1b", out, "--once is plain text")
        for dom, n in LOAD:
            self.assertEqual(domain_row(out, dom), n, out)
        self.assertIn("held: 9 messages", out)
        self.assertIn("3 domains", out)
        order = [out.index(dom) for dom, _ in LOAD]
        self.assertEqual(order, sorted(order), "biggest first:\n" + out)
        metrics = H.control_request(self.e.cfg["control_socket"], "metrics")
        if metrics.startswith("error:"):
            print("\n[test_top] no metrics in this build (%s): connection counts not checked"
                  % metrics.strip())
            self.assertIn("(the daemon answers no metrics)", out)
        else:
            # RCPT probes and the loading session: at least one each.
            m = re.search(r"accepted (\d+)", out)
            self.assertIsNotNone(m, out)
            self.assertGreaterEqual(int(m.group(1)), 2, out)
            self.assertIn("(received %d)" % sum(n for _, n in LOAD), out)
            self.assertIn("redis: connected", out)

    def test_without_a_terminal_it_wants_once(self):
        p = subprocess.run(self.top_cmd(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"--once", p.stderr)

    def test_once_without_a_daemon_fails(self):
        conf = os.path.join(self.tmp, "nodaemon.conf")
        with open(self.e.conf_path) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(re.sub(r"(?m)^control_socket\s*=.*$",
                           "control_socket = %s" % os.path.join(self.tmp, "none.sock"), text))
        p = subprocess.run([H.env_path("ETRNCTL"), "-c", conf, "top", "--once"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"is etrnd running", p.stderr)

    # ---- the live view in a pseudo-terminal ----

    def run_in_pty(self, key):
        """Top on a pty until a frame shows every domain, then key: (exit
        code, whole output, that frame, the modes before, the modes after)."""
        t = PtyTop(self, self.top_cmd())
        frame = t.wait_frame(lambda f: all(domain_row(f, d) == n for d, n in LOAD))
        rc = t.quit(key)
        return rc, t.out, frame, t.before, termios.tcgetattr(t.slave)

    def check_live(self, key):
        rc, out, frame, before, after = self.run_in_pty(key)
        for dom, n in LOAD:
            self.assertEqual(domain_row(frame, dom), n, "frame:\n" + frame)
        self.assertIn("(q quits)", frame)
        self.assertEqual(rc, 0, out[-500:])
        self.assertIn(b"\x1b[?1049h", out, "the alternate screen was entered")
        self.assertTrue(out.rstrip(b"\r\n").endswith(b"\x1b[?25h\x1b[?1049l"),
                        "the cursor shown and the alternate screen left last: %r" % out[-60:])
        self.assertEqual(after, before, "the terminal's modes are restored")
        self.assertTrue(after[3] & termios.ECHO and after[3] & termios.ICANON)
        for line in frame.splitlines():
            self.assertLessEqual(len(line.rstrip("\r")), COLS, line)

    def test_live_view_in_a_pty_q_quits(self):
        self.check_live(b"q")

    def test_live_view_in_a_pty_ctrl_c_quits(self):
        self.check_live(b"\x03")


class TopDrainTest(unittest.TestCase):
    """A drain while top runs: the domain's row counts down to 0 held and
    its bar fills (peak seen since top started), and it stays listed."""

    DOM, N = "drain.top.test", 4

    def test_drain_progress_bar_fills(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-top-drain-")
        self.addCleanup(shutil.rmtree, tmp, True)
        redis = Redis(tmp).start()
        self.addCleanup(redis.stop)
        sink = H.SmtpSink()
        sink.start()
        self.addCleanup(sink.cleanup)
        H.etrnctl_ok(redis.url(), "domain", "add", self.DOM, "--dest", sink.addr())
        e = H.Etrnd(threads="2", redis=redis.url())
        e.cfg["control_socket"] = os.path.join(e.dir, "ctl.sock")
        self.addCleanup(e.cleanup)
        e.start()
        wait_code(e, self.DOM, 250, H.LOG_WAIT_S)
        with smtplib.SMTP(H.HOST, e.port, timeout=30) as s:
            for i in range(self.N):
                s.sendmail("s@example.org", ["u%d@%s" % (i, self.DOM)], b"Subject: d\r\n\r\nd\r\n")
        t = PtyTop(self, [H.env_path("ETRNCTL"), "-c", e.conf_path, "top"])
        frame = t.wait_frame(lambda f: domain_row(f, self.DOM) == self.N)
        self.assertEqual(domain_row(frame, self.DOM), self.N, frame)
        rc, out, err = H.etrnctl(None, "flush", self.DOM, conf=e.conf_path)
        self.assertEqual(rc, 0, out + err)
        sink.wait_count(self.N)
        bar = "[%s] %d/%d" % ("#" * 20, self.N, self.N)
        frame = t.wait_frame(lambda f: bar in f and domain_row(f, self.DOM) == 0)
        self.assertEqual(domain_row(frame, self.DOM), 0, frame)
        self.assertIn(bar, frame)
        self.assertIn("held: 0 messages", frame)
        self.assertIn("(no mail held)", frame)
        if "(the daemon answers no metrics)" not in frame:
            self.assertIn("(sent %d," % self.N, frame)
            self.assertIn("(received %d)" % self.N, frame)
        self.assertEqual(t.quit(b"q"), 0)


if __name__ == "__main__":
    unittest.main()
