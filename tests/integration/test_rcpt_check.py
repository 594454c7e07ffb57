# SPDX-License-Identifier: MIT
"""Recipient validation (issue 19 point 1): a domain with rcpt_check on takes
only the recipients of its Redis set (etrnctl rcpt add|del|import), case-
insensitively; any other gets 550 5.1.1 at RCPT time, counted and logged. A
domain with rcpt_check off takes everyone. Changes are followed live, a bad
import line writes nothing, a set over rcpt_max_per_domain is refused (the
domain's RCPTs then get 451 4.3.0, Postfix's answer for a map it cannot
read), and while Redis is down the last sets keep answering. A real Redis,
smtplib and swaks.
"""

import os
import re
import smtplib
import tempfile
import unittest

from etrnd_harness import (Etrnd, HOST, control_request, remove_tmp, wait_for,
                           msg_records)
from test_redis import Redis, etrnctl, rcpt_swaks


def rcpt(e, addr):
    """(code, text) of RCPT TO:<addr>."""
    with smtplib.SMTP(HOST, e.port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("sender@example.org")
        code, msg = s.rcpt(addr)
        s.rset()
        return code, msg.decode("utf-8", "replace")


def code(e, addr):
    return rcpt(e, addr)[0]


def refused_unknown_user(e):
    text = control_request(e.ctl_path(), "metrics")
    m = re.search(r'^etrnd_recipients_refused_total\{reason="unknown_user"\} (\d+)', text,
                  re.M)
    return int(m.group(1)) if m else None


def ok(testcase, r, *args, stdin=None):
    rc, out, err = etrnctl(r, *args, stdin=stdin)
    testcase.assertEqual(rc, 0, "etrnctl %s: %s%s" % (" ".join(args), out, err))
    return out


class RcptCheckTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-rcpt-")
        self.addCleanup(remove_tmp, self.tmp)  # runs last
        self.r = Redis(self.tmp).start()
        self.addCleanup(self.r.stop)

    def start(self, **cfg):
        e = Etrnd(redis=self.r.url(), control_socket="auto", threads="2",
                  rcpt_max_per_domain="4", **cfg)
        self.addCleanup(e.cleanup)
        e.start()
        return e

    def test_known_unknown_live_and_off(self):
        r = self.r
        ok(self, r, "domain", "add", "v.test", "--rcpt-check", "on")
        ok(self, r, "domain", "add", "open.test")
        ok(self, r, "rcpt", "add", "v.test", "alice", "Bob@V.test")
        e = self.start()
        self.assertEqual(code(e, "alice@v.test"), 250)
        self.assertEqual(code(e, "ALICE@V.TEST"), 250)   # case-insensitive
        self.assertEqual(code(e, "bob@v.test"), 250)
        c, msg = rcpt(e, "carol@v.test")
        self.assertEqual((c, msg),
                         (550, "5.1.1 <carol@v.test>: Recipient address rejected: User unknown"))
        # swaks, a client we did not write, sees the same.
        self.assertEqual(rcpt_swaks(e, "v.test"), 550)
        self.assertEqual(code(e, "anyone@open.test"), 250)  # rcpt_check off
        e.wait_log(r"reject RCPT <carol@v\.test>: user unknown")
        self.assertGreaterEqual(refused_unknown_user(e), 2)
        # A message to a known recipient is stored; the unknown one is not
        # in its envelope.
        with smtplib.SMTP(HOST, e.port, timeout=10) as s:
            s.ehlo("client.test")
            refused = s.sendmail("s@example.org", ["alice@v.test", "carol@v.test"],
                                 b"Subject: t\r\n\r\nhi\r\n")
        self.assertEqual(list(refused), ["carol@v.test"])

        # Live: add, del, the whole domain off, on again; no restart.
        ok(self, r, "rcpt", "add", "v.test", "carol")
        wait_for("carol added", lambda: code(e, "carol@v.test") == 250)
        ok(self, r, "rcpt", "del", "v.test", "alice")
        wait_for("alice removed", lambda: code(e, "alice@v.test") == 550)
        ok(self, r, "domain", "set", "v.test", "--rcpt-check", "off")
        wait_for("rcpt_check off", lambda: code(e, "zed@v.test") == 250)
        ok(self, r, "domain", "set", "v.test", "--rcpt-check", "on")
        wait_for("rcpt_check on", lambda: code(e, "zed@v.test") == 550)
        self.assertEqual(code(e, "carol@v.test"), 250)
        # A catch-all "@" takes every address of the domain.
        ok(self, r, "rcpt", "add", "v.test", "@")
        wait_for("catch-all", lambda: code(e, "zed@v.test") == 250)
        ok(self, r, "rcpt", "del", "v.test", "@")
        wait_for("catch-all gone", lambda: code(e, "zed@v.test") == 550)
        e.stop()
        rcpts = [m["rcpts"] for m in msg_records(e.spool_dir)]
        self.assertEqual(rcpts, [["alice@v.test"]])

    def test_import_bad_line_replace_and_cap(self):
        r = self.r
        ok(self, r, "domain", "add", "v.test", "--rcpt-check", "on")
        ok(self, r, "rcpt", "add", "v.test", "old")
        e = self.start()
        self.assertEqual(code(e, "old@v.test"), 250)
        bad = os.path.join(self.tmp, "bad.txt")
        with open(bad, "w") as f:
            f.write("# nightly export\nnew1\nnot an address\n<new2@v.test>\n"
                    "x@other.test\nnew3@v.test  # a comment\n")
        rc, out, err = etrnctl(r, "rcpt", "import", "--replace", "v.test", bad)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("%s:3: more than one word" % bad, err)
        self.assertIn("%s:4: one of < > " % bad, err)
        self.assertIn("%s:5: an address of another domain" % bad, err)
        self.assertIn("nothing written", err)
        self.assertEqual(ok(self, r, "rcpt", "list", "v.test").split(), ["old"])
        # The merge mode checks the whole file first too.
        rc, out, err = etrnctl(r, "rcpt", "import", "v.test", bad)
        self.assertEqual(rc, 1, out + err)
        self.assertEqual(ok(self, r, "rcpt", "list", "v.test").split(), ["old"])
        # A good file replaces the set at once (stdin here).
        out = ok(self, r, "rcpt", "import", "--replace", "v.test", "-",
                 stdin=b"# ok\nnew1\r\nNew3@v.test\n\n")
        self.assertIn("2 recipient(s) now", out)
        self.assertEqual(sorted(ok(self, r, "rcpt", "list", "v.test").split()),
                         ["new1", "new3@v.test"])
        wait_for("replaced set", lambda: code(e, "old@v.test") == 550)
        self.assertEqual(code(e, "new1@v.test"), 250)
        self.assertEqual(code(e, "new3@v.test"), 250)
        # Bad command-line input is exit 2, before Redis is touched.
        rc, out, err = etrnctl(r, "rcpt", "add", "v.test", "a b")
        self.assertEqual(rc, 2, out + err)
        rc, out, err = etrnctl(r, "rcpt", "import", "--replace", "bad..domain", bad)
        self.assertEqual(rc, 2, out + err)

        # Over rcpt_max_per_domain (4 here): refused, logged, old set kept.
        mark = e.log_mark()
        ok(self, r, "rcpt", "import", "v.test", "-", stdin=b"a\nb\nc\n")
        e.wait_log(r"rcpts v\.test: 5 recipient\(s\): over rcpt_max_per_domain \(4\).*"
                   r"keeping the previous set \(2 recipient", since=mark)
        self.assertEqual(code(e, "new1@v.test"), 250)
        self.assertEqual(code(e, "a@v.test"), 550)
        # A domain whose first set is over the cap has none: 451 4.3.0.
        ok(self, r, "rcpt", "import", "big.test", "-", stdin=b"a\nb\nc\nd\ne\n")
        ok(self, r, "domain", "add", "big.test", "--rcpt-check", "on")
        e.wait_log(r"rcpts big\.test: 5 recipient\(s\): over .*no set loaded")
        c, msg = rcpt(e, "a@big.test")
        self.assertEqual(c, 451, msg)
        self.assertTrue(msg.startswith("4.3.0 "), msg)
        # Back under the cap: loaded, and checked.
        ok(self, r, "rcpt", "del", "big.test", "e", "d")
        wait_for("big.test loaded", lambda: code(e, "a@big.test") == 250)
        self.assertEqual(code(e, "e@big.test"), 550)

    def test_redis_down_keeps_last_set(self):
        r = self.r
        ok(self, r, "domain", "add", "v.test", "--rcpt-check", "on")
        ok(self, r, "rcpt", "add", "v.test", "alice")
        e = self.start()
        self.assertEqual(code(e, "alice@v.test"), 250)
        r.stop()
        e.wait_log(r"serving \d+ domain\(s\) from the last table")
        self.assertEqual(code(e, "alice@v.test"), 250)
        self.assertEqual(code(e, "bob@v.test"), 550)
        r.start()
        e.wait_log(r"redis .*: connected again")
        ok(self, r, "rcpt", "add", "v.test", "bob")
        wait_for("bob added after the restart", lambda: code(e, "bob@v.test") == 250)
        self.assertEqual(code(e, "alice@v.test"), 250)


if __name__ == "__main__":
    unittest.main()
