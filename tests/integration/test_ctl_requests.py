# SPDX-License-Identifier: MIT
"""The control socket's request grammar (admin/ctl_requests.c) against a real
etrnd, raw lines as any local client may send them (issue 18, branch
coverage): a request with too few or too many words, a trailing blank, a
name that only starts like one, a destination over its limit, a queue id
that is none, a message shown whole past its cap, activators
and one-shot activations that cannot be, and a clock step past its bound.
Each gets its one error line (or the RFC 1985 reply for force), the daemon
logs what was asked, and it keeps answering good requests between the bad
ones. No Redis (a static relay domain); loopback and a temp dir only; etrnd
is stopped by PID.
"""

import smtplib
import unittest

import etrnd_harness as h

UNKNOWN = "error: unknown request (want: flush DOMAIN, "
ACT_USAGE = "error: want activators [json] [NAME] or activators run NAME\n"
DEST_LONG = 300     # over CTL_REQUESTS_DEST_MAX (admin/ctl_requests.c)
NAME_LONG = 100     # over CONFIG_ACTIVATOR_NAME_MAX
SHOW_MAX = 512 * 1024   # DRAIN_QUEUE_SHOW_MAX (proto/drain_queue.h)
BIG_LINE = "a line of the body of a big message\r\n"
BIG_LINES = 20000       # about 740 KiB: over SHOW_MAX


class CtlRequests(unittest.TestCase):
    def test_malformed_requests_get_their_error_and_good_ones_still_work(self):
        e = h.Etrnd.started(self, control_socket="auto")
        sock = e.ctl_path()
        cases = [
            ("flush", UNKNOWN),                    # too few words
            ("flush ", UNKNOWN),                   # the name and a blank
            ("status json ", UNKNOWN),             # a trailing blank
            ("status json x", UNKNOWN),            # too many words
            ("queue demo.test more", UNKNOWN),
            ("statusx", UNKNOWN),                  # only starts like a name
            ("show", UNKNOWN),
            ("metrics now", UNKNOWN),              # takes nothing
            ("force demo.test " + "h" * DEST_LONG, "501 5.5.4 destination too long\r\n"),
            ("activators a b", ACT_USAGE),
            ("activators " + "n" * NAME_LONG, ACT_USAGE),
            ("activators json a b", UNKNOWN),
            ("activators run x", "error: no activator x\n"),
            ("activators nosuch", "error: no activator nosuch\n"),
            ("activate x", "error: activate: want KEY=VALUE with KEY one of method,"),
            ("activate method=etrn", "error: activate: no host"),
            ("show ZZ", "error: \"ZZ\": not a queue id (14 hex digits)\n"),
            ("show-full ZZZZZZZZZZZZZZ", "error: \"ZZZZZZZZZZZZZZ\": not a queue id"),
            # A domain longer than any queue's name: nothing held for it.
            ("queue " + "a" * DEST_LONG, "total 0\n"),
            ("clock step 99999999999999999999",
             "error: clock step \"99999999999999999999\": want whole seconds from 1 to "),
        ]
        for line, want in cases:
            got = h.control_request(sock, line)
            self.assertTrue(got.startswith(want), "%r: %r" % (line, got))
            # Every bad request leaves the daemon answering good ones.
            self.assertEqual(h.control_request(sock, "queue"), "total 0\n", line)
        # No activators configured: an empty list, in either form.
        self.assertEqual(h.control_request(sock, "activators json"), "[]\n")
        self.assertEqual(h.control_request(sock, "activators"), "")
        # force with a destination within its limit is a real flush: the
        # RFC 1985 reply for a domain with nothing held.
        self.assertEqual(h.control_request(sock, "force demo.test 127.0.0.1:1"),
                         "251 2.0.0 OK, no messages waiting for node demo.test\r\n")
        self.assertTrue(h.control_request(sock, "metrics").startswith("# HELP etrnd_"))
        self.assertRegex(h.control_request(sock, "turns"),
                         r"^turns: 2 of 2 engine threads\n$")
        # show-full of a message over DRAIN_QUEUE_SHOW_MAX: the first part
        # and where it was cut, never the whole.
        with smtplib.SMTP(h.HOST, e.port, timeout=60) as c:
            c.sendmail("a@x.test", ["u@demo.test"],
                       "Subject: big\r\n\r\n" + BIG_LINE * BIG_LINES)
        listing = h.control_request(sock, "queue demo.test")
        qid = listing.split("\t")[0]
        size = int(listing.split("\t")[2])
        full = h.control_request(sock, "show-full " + qid)
        self.assertTrue(full.endswith("\n[cut at %d bytes of %d]\n" % (SHOW_MAX, size)),
                        full[-200:])
        self.assertLess(len(full), SHOW_MAX + 4096)
        e.stop()
        log = e.stderr_text()
        self.assertIn("forced flush of demo.test to 127.0.0.1:1, asked by the operator", log)
        self.assertIn("control socket: activate x, asked by the operator", log)
        # A request not understood is never logged as asked (nor acted on).
        self.assertNotIn("control socket: statusx", log)


if __name__ == "__main__":
    unittest.main()
