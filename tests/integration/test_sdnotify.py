# SPDX-License-Identifier: MIT
"""systemd's notify protocol (issue 15), with this test as systemd: a
datagram socket in $NOTIFY_SOCKET and $WATCHDOG_USEC set. etrnd says
READY=1 once it takes mail, WATCHDOG=1 every half period while its engine
threads answer, nothing while one is stopped (ptrace-interrupted, the
rest of the process running), again once it runs, and STOPPING=1 at SIGTERM."""

import ctypes
import os
import shutil
import signal
import smtplib
import socket
import tempfile
import time
import unittest

import etrnd_harness as h

WATCHDOG_USEC = 200000                   # pings every 0.1 s
PERIOD_S = WATCHDOG_USEC / 2 / 1e6
WAIT_S = 20                              # generous: the machine is loaded
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17
WALL = 0x40000000                        # __WALL: wait for threads too


class Notify:
    """The systemd side: collects what etrnd sends."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.got = []                    # (monotonic time, one KEY=VALUE)

    def close(self):
        self.sock.close()

    def pump(self, within):
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return
            now = time.monotonic()
            self.got += [(now, kv) for kv in data.decode().split("\n") if kv]

    def wait(self, key, within=WAIT_S, since=0.0):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for t, kv in self.got:
                if t >= since and kv.startswith(key):
                    return kv
            self.pump(0.05)
        raise AssertionError("no %s within %ss; got %r" % (key, within, self.got[-20:]))

    def count(self, key, since):
        return sum(1 for t, kv in self.got if t >= since and kv == key)


def engine_tasks(pid):
    """Every thread but the main one and the watchdog's."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            comm = f.read().strip()
        if int(tid) != pid and comm != "etrnd-watchdog":
            out.append(int(tid))
    return out


class SdNotifyTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-sdnotify-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.n = Notify(self.tmp)
        self.addCleanup(self.n.close)

    def etrnd(self, watchdog=True):
        env = {"NOTIFY_SOCKET": self.n.path}
        if watchdog:
            env["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
        e = h.Etrnd(env=env)
        self.addCleanup(e.cleanup)
        return e.start()

    def test_ready_watchdog_stopping(self):
        e = self.etrnd()
        self.assertEqual(self.n.wait("READY="), "READY=1")
        self.assertRegex(self.n.wait("STATUS="), r"running: 2 engine thread\(s\), watchdog on")
        # Pings keep coming: three in a row, each waited for (a count in a
        # fixed time would depend on the load).
        since = time.monotonic()
        for _ in range(3):
            self.n.wait("WATCHDOG=1", since=since)
            since = max(t for t, kv in self.n.got if kv == "WATCHDOG=1") + 1e-6
        with smtplib.SMTP(h.HOST, e.port, timeout=10) as s:  # it takes mail meanwhile
            s.sendmail("a@example.org", ["u@demo.test"], b"Subject: t\r\n\r\nx\r\n")
        t1 = time.monotonic()
        e.signal(signal.SIGTERM)
        self.assertEqual(self.n.wait("STOPPING=", since=t1), "STOPPING=1")
        self.assertEqual(e.wait(), 0, e.stderr_text())

    def test_no_watchdog_without_watchdog_usec(self):
        e = self.etrnd(watchdog=False)
        self.n.wait("READY=1")
        # The proof first: no watchdog thread runs, so nothing can ping;
        # then nothing did.
        pid = e.proc.pid
        self.assertEqual(len(engine_tasks(pid)) + 1, len(os.listdir("/proc/%d/task" % pid)),
                         "a watchdog thread without $WATCHDOG_USEC")
        self.n.pump(0.05)   # read what is queued on our socket
        self.assertEqual(self.n.count("WATCHDOG=1", 0.0), 0)

    @unittest.skipUnless(os.geteuid() == 0 or os.path.exists("/proc/sys/kernel/yama/ptrace_scope")
                         and open("/proc/sys/kernel/yama/ptrace_scope").read().strip() == "0",
                         "ptrace of etrnd's threads not allowed here (not root, yama ptrace_scope)")
    def test_stopped_engine_thread_withholds_watchdog(self):
        e = self.etrnd()
        self.n.wait("READY=1")
        self.n.wait("WATCHDOG=1")
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        tids = engine_tasks(e.proc.pid)
        stopped = []
        try:
            for tid in tids:
                if libc.ptrace(PTRACE_SEIZE, tid, None, None) == 0:
                    stopped.append(tid)
                    libc.ptrace(PTRACE_INTERRUPT, tid, None, None)
                    os.waitpid(tid, WALL)
            self.assertTrue(stopped, "could not ptrace any thread: errno %d" % ctypes.get_errno())
            # A ping answered just before the stop may feed once more; the
            # first period without an answer says so, and from then on
            # nothing feeds systemd until the thread runs again.
            self.assertRegex(self.n.wait("STATUS=engine thread"),
                             r"STATUS=engine thread \d+ not answering")
            # Ten periods without a ping: the window is what is tested
            # (a loaded machine makes it fewer periods, never a false
            # failure).
            t0 = time.monotonic()
            self.n.pump(10 * PERIOD_S)
            self.assertEqual(self.n.count("WATCHDOG=1", t0), 0, self.n.got[-10:])
        finally:
            for tid in stopped:
                libc.ptrace(PTRACE_DETACH, tid, None, None)
        t1 = time.monotonic()
        self.n.wait("WATCHDOG=1", since=t1)
        e.wait_log(r"watchdog: engine thread \d+ has not answered for \d+ ms")
        e.wait_log(r"watchdog: every engine thread answers")


if __name__ == "__main__":
    unittest.main()
