# SPDX-License-Identifier: MIT
"""Faults under load: the disk fills up, the spool turns read-only, Redis is
killed and restarted. Clients keep sending throughout (smtplib threads that
log the queue id and body of every 250). What must hold: a fault gives the
client a 4xx (never a 250 for a message not stored, never a 5xx), etrnd
says what went wrong in one clear log line, every acknowledged message is in
the spool afterwards with its body, and service comes back when the fault
goes away. Tests that need a mount skip, with the reason, where mounting is
not allowed (as test_disk_full does).
"""

import os
import re
import signal
import smtplib
import subprocess
import tempfile
import threading
import time
import unittest

import etrnd_harness as h
from test_redis import Redis, etrnctl, rcpt_code, wait_code, wait_log

CLIENTS = 6
MSG_LINES = 200             # ~16 KiB bodies
TMPFS_SIZE = "8m"
BALLAST_BYTES = 6 << 20     # fills most of the tmpfs; deleting it frees space
EXT4_IMG_BYTES = 32 << 20
FAULT_WAIT_S = 30.0         # a fault shows in the replies within this
RECOVER_WAIT_S = 30.0       # service comes back within this
LOAD_S = 2.0                # load before the fault
QUEUED_RE = re.compile(rb"queued as ([0-9A-F]{14})")
TEMPFAIL_RE = re.compile(rb"^4\.3\.0 ")


def run(*argv, check=True):
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (" ".join(argv), p.returncode,
                                                   p.stdout.decode(errors="replace")))
    return p


class Load:
    """CLIENTS smtplib threads sending to rcpt until stop(). Keeps every
    (qid, body) acknowledged with 250 and every other DATA reply."""

    def __init__(self, port, rcpt="u@demo.test", clients=CLIENTS):
        self.port, self.rcpt = port, rcpt
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}        # qid -> body
        self.ack_time = {}     # qid -> monotonic time the 250 was read
        self.replies = []      # (code, text) of every DATA reply not 250
        self.errors = 0        # connections that failed (not counted above)
        self.n = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(clients)]
        for t in self.threads:
            t.start()

    def _one(self, s, cid):
        with self.lock:
            self.n += 1
            tag = "c%d-%d" % (cid, self.n)
        body = ("Subject: %s\r\nMessage-ID: <%s@faults.test>\r\n\r\n" % (tag, tag)
                + ("load %s\r\n" % tag) * MSG_LINES).encode()
        s.mail("s@example.org")
        code, msg = s.rcpt(self.rcpt)
        if code != 250:
            s.rset()
            return code, msg
        try:
            code, msg = s.data(body)
        except smtplib.SMTPDataError as err:
            code, msg = err.smtp_code, err.smtp_error
        if code == 250:
            with self.lock:
                qid = QUEUED_RE.search(msg).group(1).decode()
                self.acked[qid] = body
                self.ack_time[qid] = time.monotonic()
        return code, msg

    def _run(self, cid):
        while not self.stop_ev.is_set():
            try:
                with smtplib.SMTP(h.HOST, self.port, timeout=30) as s:
                    s.ehlo("faults.test")
                    for _ in range(10):
                        if self.stop_ev.is_set():
                            break
                        code, msg = self._one(s, cid)
                        if code != 250:
                            with self.lock:
                                self.replies.append((code, msg))
                            time.sleep(0.05)
            except (OSError, smtplib.SMTPException):
                with self.lock:
                    self.errors += 1
                time.sleep(0.05)

    def wait_for(self, pred, within, what):
        t0 = time.monotonic()
        while time.monotonic() - t0 < within:
            with self.lock:
                if pred(self):
                    return time.monotonic() - t0
            time.sleep(0.05)
        raise AssertionError("load: no %s within %.0fs (acked %d, other replies "
                             "%r)" % (what, within, len(self.acked), self.replies[-3:]))

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=60)
            if t.is_alive():
                raise AssertionError("load client hung")


def check_spool(tc, e, acked, log_before="", may_miss=()):
    """Every acknowledged message is in e's spool with its body, once,
    except those in may_miss. Returns the number of records.
    log_before: etrnd's log from before a restart, for the failure message."""
    recs = {}
    for r in e.records():
        tc.assertNotIn(r["qid"], recs, "qid %s stored twice" % r["qid"])
        recs[r["qid"]] = r
    lost = [q for q in acked if q not in recs and q not in may_miss]
    if lost:
        log = [l for l in (log_before + e.stderr_text()).splitlines()
               if "error" in l or "warning" in l or any(q in l for q in lost[:3])]
        tc.fail("%d acknowledged message(s) lost, e.g. %s; log:\n%s"
                % (len(lost), lost[:3], "\n".join(log[:40])))
    for qid, body in acked.items():
        if qid in recs:
            tc.assertEqual(h.client_body(recs[qid]), body, "body of %s differs" % qid)
    p = run(e.spool_tool, "stats", e.spool_dir, check=False)
    tc.assertEqual(p.returncode, 0, "spool damaged: %s" % p.stdout.decode())
    return len(recs)


def assert_only_tempfail(tc, replies):
    for code, msg in replies:
        tc.assertEqual(code, 451, (code, msg))
        tc.assertRegex(msg, TEMPFAIL_RE)


class MountTest(unittest.TestCase):
    """A private mount point under a temp dir, unmounted at the end."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="etrnd-faults-")
        self.mnt = os.path.join(self.dir, "spool")
        os.makedirs(self.mnt)
        self.addCleanup(lambda: run("rm", "-rf", self.dir, check=False))

    def mount(self, *argv):
        p = run("mount", *argv, self.mnt, check=False)
        if p.returncode != 0:
            self.skipTest("cannot mount here (%s): test skipped"
                          % p.stdout.decode().strip())
        self.addCleanup(lambda: run("umount", self.mnt, check=False))

    def start_under_load(self, **cfg):
        """etrnd on the mount, and a Load that has had its first 250s."""
        e = h.Etrnd(tmpdir=self.dir, threads="2", **cfg)
        self.addCleanup(e.cleanup)
        e.start()
        load = Load(e.port)
        self.addCleanup(load.stop)
        load.wait_for(lambda l: len(l.acked) >= 20, FAULT_WAIT_S, "250s")
        return e, load


class DiskFullTest(MountTest):
    def test_disk_full_under_load_then_space_freed(self):
        self.mount("-t", "tmpfs", "-o", "size=" + TMPFS_SIZE + ",mode=0700", "tmpfs")
        ballast = os.path.join(self.mnt, "ballast")
        e, load = self.start_under_load(segment_size="1M")
        try:
            # The disk fills up under the load (another process's file).
            with open(ballast, "wb") as f:
                try:
                    f.write(b"\0" * BALLAST_BYTES)
                except OSError:
                    pass
            took = load.wait_for(lambda l: len(l.replies) >= 10, FAULT_WAIT_S, "451s")
            # Restart on the full disk: recovery must cope with a spool it
            # cannot grow, and etrnd must come up and answer.
            load.stop()
            e.stop()
            e.start()
            load2 = Load(e.port)
            load2.wait_for(lambda l: len(l.replies) >= 5, FAULT_WAIT_S, "451s after restart")
            n_before = len(load2.acked)
            os.unlink(ballast)
            back = load2.wait_for(lambda l: len(l.acked) >= n_before + 10,
                                  RECOVER_WAIT_S, "250s once space returned")
        finally:
            load.stop_ev.set()
            if "load2" in locals():
                load2.stop()
            load.stop()
        e.stop()
        acked = dict(load.acked, **load2.acked)
        assert_only_tempfail(self, load.replies + load2.replies)
        log = e.stderr_text()
        self.assertRegex(log, r"error: spool shard \d+: writing \d+ message\(s\) at "
                         r"offset \d+: No space left on device")
        stored = check_spool(self, e, acked)
        print("disk full under load: %d acknowledged, %d stored, %d got 451 4.3.0 "
              "(first after %.2fs), restart on the full disk ok, 250s again %.2fs "
              "after space was freed" % (len(acked), stored,
                                         len(load.replies) + len(load2.replies),
                                         took, back))


class ReadOnlyTest(MountTest):
    """ext4 on a loop device with errors=remount-ro; the test makes ext4 see
    an error (/sys/fs/ext4/DEV/trigger_fs_error), which turns the mount
    read-only at once, open files included: what a failing disk does.

    Every message acknowledged before the error must survive. One whose
    fdatasync ran while ext4 handled the error may not: the kernel (seen
    on 6.18) can return 0 from an fdatasync whose journal commit the
    error's journal abort then drops, so the data is gone after e2fsck.
    The same loss happens with plain write+fdatasync from Python threads
    and no etrnd (2 runs in 20, 4 files; a second fdatasync after the
    first still lost data in 1 run in 40), so no caller can tell. Those
    messages (250 read after the error was triggered) are counted, not
    asserted."""

    def test_spool_turns_read_only_under_load(self):
        img = os.path.join(self.dir, "spool.img")
        with open(img, "wb") as f:
            f.truncate(EXT4_IMG_BYTES)
        run("mkfs.ext4", "-q", "-F", img)
        self.mount("-o", "loop,errors=remount-ro", img)
        dev = os.path.basename(run("findmnt", "-no", "SOURCE", self.mnt).stdout.decode().strip())
        trigger = "/sys/fs/ext4/%s/trigger_fs_error" % dev
        if not os.path.exists(trigger):
            self.skipTest("%s missing: cannot make ext4 read-only here" % trigger)
        e, load = self.start_under_load()
        try:
            t_fault = time.monotonic()
            with open(trigger, "w") as f:
                f.write("etrnd test: spool goes read-only\n")
            took = load.wait_for(lambda l: len(l.replies) >= 10, FAULT_WAIT_S, "451s")
            # Still answering: a session gets its greeting and NOOP.
            with smtplib.SMTP(h.HOST, e.port, timeout=30) as s:
                self.assertEqual(s.noop()[0], 250)
        finally:
            load.stop()
        assert_only_tempfail(self, load.replies)
        log = e.stderr_text()
        self.assertRegex(log, r"error: spool shard \d+: .*Read-only file system")
        # The operator stops etrnd, repairs the filesystem, starts again.
        e.signal(signal.SIGTERM)
        rc = e.wait()
        run("umount", self.mnt)
        fsck = run("e2fsck", "-fy", img, check=False)
        self.assertIn(fsck.returncode, (0, 1), fsck.stdout.decode())
        run("mount", "-o", "loop,errors=remount-ro", img, self.mnt)
        e.start()
        window = {q for q, t in load.ack_time.items() if t >= t_fault}
        stored = check_spool(self, e, load.acked, log, may_miss=window)
        recs = {r["qid"] for r in e.records()}
        window_lost = [q for q in window if q not in recs]
        load2 = Load(e.port, clients=1)
        try:
            load2.wait_for(lambda l: len(l.acked) >= 5, RECOVER_WAIT_S, "250s after repair")
        finally:
            load2.stop()
        e.stop()
        print("read-only spool under load: %d acknowledged before the error, "
              "all found after fsck (%d records); %d acknowledged while the error "
              "was handled, %d of them lost (kernel fdatasync race, see the class "
              "comment); 451 4.3.0 %.2fs after the error; exit status %d on "
              "SIGTERM while read-only" % (len(load.acked) - len(window), stored,
                                           len(window), len(window_lost), took, rc))


class RedisKilledTest(unittest.TestCase):
    """Redis is killed (SIGKILL) under load and started again: mail for the
    provisioned domains keeps getting 250 from the last table, an unknown
    domain gets 451 4.3.0 while Redis is gone, and provisioning changes made
    after the restart reach etrnd."""

    def test_redis_kill9_mid_load(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-faults-redis-")
        self.addCleanup(lambda: run("rm", "-rf", tmp, check=False))
        redis = Redis(tmp).start()
        self.addCleanup(redis.stop)
        for d in ("a.test", "b.test"):
            rc, _, err = etrnctl(redis, "domain", "add", d)
            self.assertEqual(rc, 0, err)
        # The snapshot a restarted Redis loads (kill -9 saves nothing).
        run("redis-cli", "-s", redis.sock, "SAVE")
        e = h.Etrnd(tmpdir=tempfile.mkdtemp(dir=tmp), redis=redis.url(), threads="2")
        del e.cfg["relay_domains"]
        self.addCleanup(e.cleanup)
        e.start()
        wait_log(e, r"connected, 2 domain\(s\) loaded")
        load = Load(e.port, rcpt="u@a.test")
        try:
            load.wait_for(lambda l: len(l.acked) >= 20, FAULT_WAIT_S, "250s")
            os.kill(redis.proc.pid, signal.SIGKILL)
            redis.proc.wait(timeout=20)
            redis.log.close()
            redis.proc = None
            wait_log(e, r"serving \d+ domain\(s\) from the last table", within=FAULT_WAIT_S)
            n = len(load.acked)
            load.wait_for(lambda l: len(l.acked) >= n + 20, FAULT_WAIT_S,
                          "250s while Redis is down")
            self.assertEqual(rcpt_code(e, "b.test"), 250)
            with smtplib.SMTP(h.HOST, e.port, timeout=30) as s:
                s.ehlo("faults.test")
                s.mail("s@example.org")
                code, msg = s.rcpt("u@unknown.test")
            self.assertEqual(code, 451, msg)
            self.assertRegex(msg, TEMPFAIL_RE)
            redis.start()
            wait_log(e, r"connected again", within=RECOVER_WAIT_S)
            rc, _, err = etrnctl(redis, "domain", "add", "new.test")
            self.assertEqual(rc, 0, err)
            wait_code(e, "new.test", 250, RECOVER_WAIT_S)
            rc, _, err = etrnctl(redis, "domain", "del", "b.test")
            self.assertEqual(rc, 0, err)
            wait_code(e, "b.test", 550, RECOVER_WAIT_S)
            self.assertEqual(rcpt_code(e, "unknown.test"), 550)
            n = len(load.acked)
            load.wait_for(lambda l: len(l.acked) >= n + 10, FAULT_WAIT_S,
                          "250s after Redis came back")
        finally:
            load.stop()
        e.stop()
        self.assertEqual(load.replies, [], "a provisioned domain got a non-250")
        stored = check_spool(self, e, load.acked)
        print("redis kill -9 under load: %d acknowledged, %d stored, no refusal "
              "for a provisioned domain; unknown got 451 4.3.0 while down; "
              "add/del after restart applied" % (len(load.acked), stored))


if __name__ == "__main__":
    unittest.main()
