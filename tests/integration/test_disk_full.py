# SPDX-License-Identifier: MIT
"""Disk full: the spool lives on a small tmpfs the test mounts. Messages are
sent until the disk is full; the one that does not fit must get 451 4.3.0
(never a 250), every message acknowledged before stays intact, the spool stays
readable without damage, and once space returns the next message is accepted.
Skipped, with the reason printed, where mounting is not allowed.
"""

import os
import re
import smtplib
import subprocess
import tempfile
import unittest

import etrnd_harness as h

TMPFS_SIZE = "3m"
MSG_BYTES = 96 * 1024
QUEUED_RE = re.compile(rb"queued as ([0-9A-F]{14})")


class DiskFullTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="etrnd-full-")
        self.mnt = os.path.join(self.dir, "spool")
        os.makedirs(self.mnt)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + TMPFS_SIZE + ",mode=0700",
                            "tmpfs", self.mnt], stderr=subprocess.PIPE)
        if p.returncode != 0:
            os.rmdir(self.mnt)
            os.rmdir(self.dir)
            self.skipTest("cannot mount a tmpfs here (%s): disk-full test skipped"
                          % p.stderr.decode().strip())
        self.addCleanup(self._unmount)

    def _unmount(self):
        subprocess.run(["umount", self.mnt])
        subprocess.run(["rm", "-rf", self.dir])

    def send(self, e, tag):
        body = ("Subject: %s\r\n\r\n" % tag).encode() + (b"x" * 78 + b"\r\n") * (MSG_BYTES // 80)
        s = smtplib.SMTP(h.HOST, e.port, timeout=10)
        try:
            s.ehlo("full.test")
            s.mail("s@example.org")
            s.rcpt("u@demo.test")
            try:
                code, msg = s.data(body)
            except smtplib.SMTPDataError as err:
                code, msg = err.smtp_code, err.smtp_error
            s.quit()
        finally:
            s.close()
        return code, msg, body

    def test_disk_full_gives_451_and_loses_nothing(self):
        e = h.Etrnd(tmpdir=self.dir, threads="1", segment_size="1M")
        self.addCleanup(e.cleanup)
        e.start()
        acked = {}
        refused = None
        for i in range(100):
            code, msg, body = self.send(e, "m%d" % i)
            if code == 250:
                acked[QUEUED_RE.search(msg).group(1).decode()] = body
                continue
            refused = (code, msg)
            break
        self.assertIsNotNone(refused, "3 MiB tmpfs never filled up")
        self.assertEqual(refused[0], 451, refused)
        self.assertTrue(refused[1].startswith(b"4.3.0"), refused)
        self.assertGreater(len(acked), 5)
        self.assertIn("No space left on device", e.stderr_text())
        # Still full: still a temporary error, and the session survives.
        code, msg, _ = self.send(e, "again")
        self.assertEqual(code, 451, msg)
        # Space comes back (the operator grows the filesystem): the next
        # message is stored without restarting etrnd.
        subprocess.run(["mount", "-o", "remount,size=16m", self.mnt], check=True)
        code, msg, body = self.send(e, "after")
        self.assertEqual(code, 250, msg)
        acked[QUEUED_RE.search(msg).group(1).decode()] = body
        e.stop()
        recs = {r["qid"]: r for r in e.records()}
        for qid, body in acked.items():
            self.assertIn(qid, recs)
            self.assertEqual(h.client_body(recs[qid]), body)
        tool = subprocess.run([e.spool_tool, "stats", e.spool_dir],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(tool.returncode, 0, "spool damaged after disk full: %s"
                         % tool.stderr.decode())
        print("disk full: %d stored, then 451 4.3.0, then stored again after space came back"
              % (len(acked) - 1))


if __name__ == "__main__":
    unittest.main()
