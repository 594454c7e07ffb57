# SPDX-License-Identifier: MIT
"""log = FILE (issue 15): the daemon appends its lines to a file; logrotate's
way of rotating it (rename, then SIGUSR1) loses no line while mail flows, and
every line lands whole in the old file or the new one. Untrusted text from a
client (control bytes, an escape sequence, NUL, a 10 kB EHLO name) reaches
the log escaped as \\xNN and cut, never raw, never as a forged line.

A second sender runs throughout the rotation, so lines are being written
while the file is renamed and reopened.

The catalogue etc/man/etrnd-log.7 lists every line type the sources write
(log_catalogue.py finds them), and passes `mandoc -T lint`.
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import threading
import time
import unittest

import etrnd_harness as h
import log_catalogue

BEFORE = 10              # messages before the rotation
AFTER = 10               # messages after it
SOCK_TIMEOUT_S = 30.0
LOG_LINE_MAX = 2048      # core/log.c: the longest line etrnd writes
HUGE_EHLO = 10 * 1024
FROM_RE = re.compile(r"^\S+ etrnd\[\d+\]: (?P<qid>%s): from=<" % h.QID_RE, re.M)
LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z etrnd\[\d+\]: ")


class FileLogEtrnd(h.Etrnd):
    """An etrnd with log = DIR/etrnd.log. The harness reads stderr for
    "etrnd started" and wait_log(): here that is stderr plus the log file."""

    def __init__(self, **cfg):
        super().__init__(**cfg)
        self.log_path = os.path.join(self.dir, "etrnd.log")
        self.cfg["log"] = self.log_path

    def stderr_text(self):
        return super().stderr_text() + read_text(self.log_path)


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def read_text(path):
    return read_bytes(path).decode("utf-8", "replace")


def send_one(port, n, tag):
    """One message over its own connection; its queue id."""
    with smtplib.SMTP(h.HOST, port, timeout=SOCK_TIMEOUT_S) as s:
        s.ehlo("client.test")
        s.mail("%s-%d@sender.test" % (tag, n))
        code, _ = s.rcpt("rcpt-%d@demo.test" % n)
        if code != 250:
            raise AssertionError("RCPT: %d" % code)
        code, msg = s.data(b"Subject: %s %d\r\n\r\nbody\r\n" % (tag.encode(), n))
        if code != 250:
            raise AssertionError("DATA: %d %r" % (code, msg))
        m = re.search(rb"queued as (\S+)", msg)
        return m.group(1).decode()


def check_lines(testcase, data, where):
    """Every line whole: a timestamped etrnd line, printable ASCII only."""
    testcase.assertTrue(data == b"" or data.endswith(b"\n"),
                        "%s: the last line has no newline" % where)
    for line in data.split(b"\n")[:-1]:
        testcase.assertLess(len(line) + 1, LOG_LINE_MAX + 1,
                            "%s: line of %d bytes" % (where, len(line)))
        bad = [b for b in line if b < 0x20 or b >= 0x7f]
        testcase.assertEqual(bad, [], "%s: raw bytes %r in %r" % (where, bad[:8], line[:200]))
        testcase.assertRegex(line.decode("ascii"), LINE_RE, "%s: not a whole line" % where)


class LogFileTest(unittest.TestCase):
    def test_rotate_with_sigusr1_loses_no_line(self):
        e = FileLogEtrnd()
        self.addCleanup(e.cleanup)
        e.start()
        rotated = e.log_path + ".1"
        qids_bg, stop = [], threading.Event()
        errors = []

        def background():
            n = 0
            try:
                while not stop.is_set():
                    qids_bg.append(send_one(e.port, n, "bg"))
                    n += 1
            except Exception as ex:  # reported below: a thread cannot fail the test
                errors.append(repr(ex))

        th = threading.Thread(target=background)
        th.start()
        try:
            before = [send_one(e.port, i, "before") for i in range(BEFORE)]
            h.wait_for("the last 'before' line in the log",
                       lambda: before[-1] + ": from=<" in read_text(e.log_path))
            os.rename(e.log_path, rotated)
            e.signal(signal.SIGUSR1)
            h.wait_for("the reopened file",
                       lambda: "log file %s reopened" % e.log_path in read_text(e.log_path))
            after = [send_one(e.port, i, "after") for i in range(AFTER)]
        finally:
            stop.set()
            th.join(timeout=SOCK_TIMEOUT_S * 2)
        self.assertEqual(errors, [])
        self.assertGreater(len(qids_bg), 0, "the background sender sent nothing")
        h.wait_for("every message's line",
                   lambda: all(q + ": from=<" in read_text(e.log_path)
                               for q in after + qids_bg[-1:]))
        old, new = read_bytes(rotated), read_bytes(e.log_path)
        check_lines(self, old, "rotated file")
        check_lines(self, new, "new file")
        in_old = FROM_RE.findall(old.decode("ascii"))
        in_new = FROM_RE.findall(new.decode("ascii"))
        for q in before:
            self.assertIn(q, in_old)
        for q in after:
            self.assertIn(q, in_new)
        seen = in_old + in_new
        for q in before + after + qids_bg:
            self.assertEqual(seen.count(q), 1, "%s logged %d times" % (q, seen.count(q)))
        self.assertIn("etrnd started:", old.decode("ascii"))

    def test_reopen_failure_keeps_the_old_file(self):
        """The file's directory is gone at SIGUSR1: an error line in the old
        file, which stays in use; the daemon goes on taking mail."""
        e = FileLogEtrnd()
        self.addCleanup(e.cleanup)
        logdir = os.path.join(e.dir, "logs")
        os.makedirs(logdir)
        e.log_path = os.path.join(logdir, "etrnd.log")
        e.cfg["log"] = e.log_path
        e.start()
        moved = logdir + ".moved"
        os.rename(logdir, moved)
        self.addCleanup(lambda: os.path.isdir(moved) and os.rename(moved, logdir))
        e.signal(signal.SIGUSR1)
        path = os.path.join(moved, "etrnd.log")
        h.wait_for("the reopen error", lambda: "cannot reopen the log file" in read_text(path))
        q = send_one(e.port, 0, "still")
        h.wait_for("a line after it", lambda: q + ": from=<" in read_text(path))
        os.rename(moved, logdir)

    def test_bad_log_path_refused_at_start(self):
        e = FileLogEtrnd()
        self.addCleanup(e.cleanup)
        e.cfg["log"] = os.path.join(e.dir, "no-such-dir", "etrnd.log")
        e.port = h.free_port()
        e.write_config()
        p = subprocess.run([e.bin, "-c", e.conf_path], capture_output=True,
                           timeout=h.START_WAIT_S * 3, env=e.env)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"no-such-dir/etrnd.log: No such file or directory", p.stderr)


def smtp_exchange(port, lines):
    """Send raw command lines one by one, reading the reply to each."""
    with socket.create_connection((h.HOST, port), timeout=SOCK_TIMEOUT_S) as s:
        f = s.makefile("rb")
        f.readline()
        for ln in lines:
            s.sendall(ln + b"\r\n")
            while True:
                r = f.readline()
                if not r or r[3:4] != b"-":
                    break


class HostileTextTest(unittest.TestCase):
    def test_control_bytes_and_huge_ehlo_escaped_and_cut(self):
        e = FileLogEtrnd(log_level="debug")
        self.addCleanup(e.cleanup)
        e.start()
        evil = b"evil\x01\x1b[31m\rfake etrnd[1]: forged\x7f\xff"
        smtp_exchange(e.port, [
            b"EHLO " + evil + b"x" * 300,
            b"EHLO a\x00b",
            b"EHLO " + b"h" * HUGE_EHLO,
            b"MAIL FROM:<s@sender.test>",
            b"RCPT TO:<" + evil + b"@elsewhere.test>",
            b"QUIT",
        ])
        good = send_one(e.port, 0, "good")
        h.wait_for("the good message's line", lambda: good + ": from=<" in read_text(e.log_path))
        data = read_bytes(e.log_path)
        check_lines(self, data, "log file")
        text = data.decode("ascii")
        esc = r"evil\x01\x1b[31m\x0dfake etrnd[1]: forged\x7f\xff"
        self.assertIn("< EHLO " + esc + "xxx", text)
        self.assertRegex(text, r"< EHLO evil.*x\.\.\.\n", "the long EHLO line is cut")
        self.assertIn(r"< EHLO a\x00b", text)
        self.assertIn("command line over 512 octets", text)
        self.assertNotIn("h" * 200, text, "the 10 kB EHLO name reached the log")
        self.assertIn("< RCPT TO:<" + esc + "@elsewhere.test>", text)
        self.assertNotRegex(text, r"(?m)^fake etrnd", "a forged line")


def resp(sock_path, *args):
    """One Redis command over its unix socket (RESP, no client library);
    the reply's first line."""
    req = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        req += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(SOCK_TIMEOUT_S)
        s.connect(sock_path)
        s.sendall(req)
        return s.makefile("rb").readline()


class RedisTextTest(unittest.TestCase):
    """Names from Redis are untrusted too: a domain key and a pub/sub
    event carrying control bytes reach the log escaped."""

    def test_hostile_key_and_event_escaped(self):
        import tempfile
        from test_redis import Redis
        tmp = tempfile.mkdtemp(prefix="etrnd-logs-")
        self.addCleanup(shutil.rmtree, tmp, True)
        redis = Redis(tmp).start()
        self.addCleanup(redis.stop)
        bad = b"etrnd:domain:bad\x1b[2J\x01.test"
        self.assertEqual(resp(redis.sock, "HSET", bad, "dest", "127.0.0.1:2526"), b":1\r\n")
        e = FileLogEtrnd(redis=redis.url())
        self.addCleanup(e.cleanup)
        e.start()
        h.wait_for("the bad key's line",
                   lambda: r"redis: key etrnd:domain:bad\x1b[2J\x01.test: " in read_text(e.log_path))
        resp(redis.sock, "PUBLISH", "etrnd:events", b"drain evil\x07\x1b]0;owned\x07.test")
        h.wait_for("the event's line",
                   lambda: r"redis event: drain evil\x07\x1b]0;owned\x07.test: " in read_text(e.log_path))
        check_lines(self, read_bytes(e.log_path), "log file")


class LogCatalogueTest(unittest.TestCase):
    def setUp(self):
        self.src = h.env_path("ETRND_SOURCE_DIR")
        self.page = os.path.join(self.src, "etc", "man", "etrnd-log.7")

    def test_every_log_line_is_in_the_catalogue(self):
        with open(self.page, encoding="utf-8") as f:
            have = log_catalogue.page_shapes(f.read())
        found = list(log_catalogue.calls(self.src))
        self.assertGreater(len(found), 200, "the source scan found too few log calls")
        missing = ["%s:%d: %s" % (rel, line, shp) for rel, line, _, shp in found
                   if shp not in have]
        self.assertEqual(missing, [], "log lines missing from etc/man/etrnd-log.7 "
                         "(python3 tests/integration/log_catalogue.py . prints them "
                         "in the page's form)")

    def test_catalogue_passes_mandoc_lint(self):
        mandoc = shutil.which("mandoc")
        if not mandoc:
            self.skipTest("mandoc is not installed (apt-get install mandoc)")
        p = subprocess.run([mandoc, "-T", "lint", "-W", "warning", self.page],
                           capture_output=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, b""))


if __name__ == "__main__":
    unittest.main()
