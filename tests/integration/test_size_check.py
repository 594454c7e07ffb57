# SPDX-License-Identifier: MIT
"""Start-up cross-check of message_size_limit against segment_size and
data_memory_limit (issue 10 item 9): a message within the size limit whose
stored record (dot-stuffed, with our Received: header and envelope) could not
fit one segment was answered 451 for ever; now such a configuration is
refused at start with file:line, and a default size is lowered to fit.
"""

import os
import re
import smtplib
import subprocess
import unittest

import etrnd_harness as h


class SizeCheckTest(unittest.TestCase):
    def run_etrnd(self, **cfg):
        e = h.Etrnd(**cfg)
        self.addCleanup(e.cleanup)
        e.port = h.free_port()
        os.makedirs(e.spool_dir, exist_ok=True)
        e.write_config()
        p = subprocess.run([e.bin, "-c", e.conf_path], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        return e, p.returncode, p.stderr.decode()

    def conf_line(self, e, key):
        with open(e.conf_path) as f:
            for n, line in enumerate(f, 1):
                if line.startswith(key + " "):
                    return n
        raise AssertionError(key)

    def test_too_big_for_segment_refused(self):
        e, rc, err = self.run_etrnd(segment_size="64M", message_size_limit="50M")
        self.assertEqual(rc, 2, err)
        want = "%s:%d: message_size_limit 52428800: such a message is stored as up to" % (
            e.conf_path, self.conf_line(e, "message_size_limit"))
        self.assertIn(want, err)
        self.assertIn("more than segment_size 67108864 (%s:%d)" % (
            e.conf_path, self.conf_line(e, "segment_size")), err)

    def test_budget_below_one_message_refused(self):
        e, rc, err = self.run_etrnd(message_size_limit="40M", data_memory_limit="32M")
        self.assertEqual(rc, 2, err)
        self.assertIn("%s:%d: data_memory_limit 33554432: one message of" % (
            e.conf_path, self.conf_line(e, "data_memory_limit")), err)

    def test_default_size_lowered_to_fit(self):
        e = h.Etrnd.started(self, segment_size="1M")
        m = re.search(r"message_size_limit lowered from 52428800 to (\d+)", e.stderr_text())
        self.assertIsNotNone(m, e.stderr_text())
        with smtplib.SMTP(h.HOST, e.port, timeout=10) as s:
            s.ehlo("size.test")
            self.assertEqual(s.esmtp_features["size"], m.group(1))


if __name__ == "__main__":
    unittest.main()
