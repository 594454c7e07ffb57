# SPDX-License-Identifier: MIT
"""scripts/run.sh, what `make run` runs, stops cleanly (issue 15 item 7):
SIGTERM to the script, Ctrl-C (SIGINT to its whole process group),
SIGTERM to the script under make, and Ctrl-C typed on the terminal
(a pseudo-terminal) of `make` each end with exit status 0 (make's own too),
no make error, and neither its redis-server nor its etrnd left running; the message
accepted before the stop is in the spool. Run with RUN_BUILD (this build),
RUN_CONF (a config on free loopback ports) and RUN_VAR (a temp dir), so it
never touches the checkout's var/ or make run's ports."""

import os
import pty
import re
import select
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
import unittest

import etrnd_harness as h

START_WAIT_S = 60.0
STOP_WAIT_S = 60.0
REDIS_PID_RE = re.compile(rb"redis-server \(pid (\d+)\)")


def children(pid):
    """PIDs whose parent is pid (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may hold spaces: fields after ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d))
    return out


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def alive(pid):
    """Running (a zombie or a gone process is not)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class RunScriptTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-run-")
        self.addCleanup(h.remove_tmp, self.tmp)
        self.var = os.path.join(self.tmp, "var")
        self.port = h.free_port()
        self.conf = os.path.join(self.tmp, "etrnd.conf")
        with open(self.conf, "w") as f:
            f.write("listen = 127.0.0.1:%d\n" % self.port)
            f.write("listen_tls = 127.0.0.1:%d\n" % h.free_port())
            f.write("odmr_listen = 127.0.0.1:%d\n" % h.free_port())
            f.write("submission_listen = 127.0.0.1:%d\n" % h.free_port())
            f.write("threads = 1\n")
            f.write("spool_dir = %s/spool\n" % self.var)
            f.write("control_socket = %s/etrnd.ctl\n" % self.var)
            f.write("redis = unix:%s/redis.sock\n" % self.var)
            f.write("shutdown_timeout = 10s\n")
        self.env = dict(os.environ,
                        RUN_BUILD=os.path.dirname(h.env_path("ETRND_BIN")),
                        RUN_CONF=self.conf, RUN_VAR=self.var)
        self.pids = []
        self.addCleanup(self.kill_left)

    def kill_left(self):
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    def start(self, argv, **kw):
        out = open(os.path.join(self.tmp, "out"), "wb")
        self.addCleanup(out.close)
        p = subprocess.Popen(argv, cwd=h.env_path("ETRND_SOURCE_DIR"), env=self.env,
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             **kw)
        self.pids.append(p.pid)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p

    def output(self):
        with open(os.path.join(self.tmp, "out"), "rb") as f:
            return f.read()

    def wait_up(self, p):
        """Send one message to demo.test (provisioned by run.sh) once
        etrnd answers; the PIDs of run.sh's redis-server and etrnd."""
        deadline = time.monotonic() + START_WAIT_S
        while True:
            self.assertIsNone(p.poll(), "run.sh ended: %r" % self.output())
            try:
                with smtplib.SMTP(h.HOST, self.port, timeout=10) as s:
                    s.ehlo("client.test")
                    code, msg = s.rcpt("u@demo.test") if s.mail("s@example.org")[0] == 250 \
                        else (0, b"MAIL")
                    if code == 250:
                        self.assertEqual(s.data(b"Subject: run\r\n\r\nrun.sh\r\n")[0], 250)
                        break
            except OSError:
                pass
            self.assertLess(time.monotonic(), deadline, self.output())
            time.sleep(0.2)
        redis = int(REDIS_PID_RE.search(self.output()).group(1))
        etrnd = self.etrnd_pid(p.pid)
        self.pids += [redis, etrnd]  # killed by cleanup if a check fails
        return redis, etrnd

    def etrnd_pid(self, top):
        """etrnd below top (run.sh, or make's child run.sh)."""
        todo = [top]
        while todo:
            pid = todo.pop()
            if comm(pid) == "etrnd":
                return pid
            todo.extend(children(pid))
        self.fail("no etrnd below %d: %r" % (top, self.output()))

    def check_stopped(self, p, redis, etrnd, rc=None, out=None):
        if rc is None:
            rc = p.wait(timeout=STOP_WAIT_S)
            out = self.output()
        self.assertEqual(rc, 0, out)
        self.assertNotIn(b"Error", out)
        self.assertFalse(alive(etrnd), "etrnd %d still runs" % etrnd)
        self.assertFalse(alive(redis), "redis-server %d still runs" % redis)
        self.assertFalse(os.path.exists(os.path.join(self.var, "etrnd.ctl")))
        recs = h.msg_records(os.path.join(self.var, "spool"))
        self.assertEqual([r["rcpts"] for r in recs], [["u@demo.test"]])

    def test_sigterm_to_script_exits_0(self):
        p = self.start(["bash", "scripts/run.sh"])
        redis, etrnd = self.wait_up(p)
        p.send_signal(signal.SIGTERM)
        self.check_stopped(p, redis, etrnd)

    def test_ctrl_c_to_process_group_exits_0(self):
        # A terminal's Ctrl-C: SIGINT to every process of the foreground
        # group (the script, etrnd; redis-server runs in its own session).
        p = self.start(["bash", "scripts/run.sh"], start_new_session=True)
        redis, etrnd = self.wait_up(p)
        os.killpg(p.pid, signal.SIGINT)
        self.check_stopped(p, redis, etrnd)

    def test_sigterm_under_make_exits_0(self):
        make = shutil.which("make")
        if make is None:
            self.skipTest("make is not installed")
        mk = os.path.join(self.tmp, "Makefile")
        with open(mk, "w") as f:
            f.write("run:\n\tbash scripts/run.sh\n")
        p = self.start([make, "--no-print-directory", "-f", mk, "run"])
        redis, etrnd = self.wait_up(p)
        scripts = [c for c in children(p.pid) if comm(c) == "bash"]
        self.assertEqual(len(scripts), 1, self.output())
        os.kill(scripts[0], signal.SIGTERM)
        self.check_stopped(p, redis, etrnd)

    def test_ctrl_c_on_terminal_make_exits_0(self):
        make = shutil.which("make")
        if make is None:
            self.skipTest("make is not installed")
        mk = os.path.join(self.tmp, "Makefile")
        with open(mk, "w") as f:
            f.write("run:\n\tbash scripts/run.sh\n")
        pid, fd = pty.fork()
        if pid == 0:  # the child: make, on the pseudo-terminal
            try:
                os.chdir(h.env_path("ETRND_SOURCE_DIR"))
                os.execvpe(make, [make, "--no-print-directory", "-f", mk, "run"], self.env)
            finally:
                os._exit(127)
        self.pids.append(pid)
        term = PtyReader(fd)
        self.addCleanup(term.close)
        p = PtyChild(pid, term)
        self.output = term.text
        redis, etrnd = self.wait_up(p)
        os.write(fd, b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground group
        rc = p.wait(STOP_WAIT_S)
        self.check_stopped(p, redis, etrnd, rc, term.text())
        # etrnd got the Ctrl-C itself: it held the terminal, not make.
        self.assertIn(b"SIGINT: stopping", term.text())


class PtyReader:
    """What a pseudo-terminal's child wrote, read as it comes (the child
    blocks when nobody reads)."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""

    def pump(self, seconds):
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            r, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not r:
                return
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the child side is closed
                return
            if not data:
                return
            self.buf += data

    def text(self):
        self.pump(0)
        return self.buf

    def close(self):
        os.close(self.fd)


class PtyChild:
    """The parts of Popen that RunScriptTest uses, for a pty.fork() child."""

    def __init__(self, pid, term):
        self.pid = pid
        self.term = term
        self.rc = None

    def poll(self):
        self.term.pump(0)
        if self.rc is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.rc = os.waitstatus_to_exitcode(status)
        return self.rc

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("make still runs after %.0f s" % timeout)
            self.term.pump(0.1)
        return self.rc

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)


if __name__ == "__main__":
    unittest.main()
