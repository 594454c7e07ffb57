# SPDX-License-Identifier: MIT
"""etrnd-spool on what README's walkthrough and an operator meet beyond
test_spool_list's states: `show` of a message whose body has dot-stuffed
lines (printed as the client sent them), a queue id that is not one (exit
2) or is not there (exit 1), a usage error; then a spool with one record
damaged (a flipped byte): stats, list, json and show say where and why on
stderr, exit 3, and still give every intact message; etrnd's recovery skips
the damaged region and keeps the rest queued; and `show` of a relayed
message whose delivery was refused prints its next attempt (its SCHED
record). Loopback only; etrnd stopped by PID, its temp dir removed."""

import json
import re
import smtplib
import subprocess
import unittest

import etrnd_harness as h

DOMAIN = "demo.test"       # one of the harness's relay_domains: held
BODIES = [
    "Subject: one\r\n\r\nplain\r\n",
    "Subject: two\r\n\r\n.starts with a dot\r\n..two dots\r\nend\r\n",
    "Subject: three\r\n\r\nthe last\r\n",
]
QUEUED_RE = re.compile(r"queued as ([0-9A-F]{14})")
EXIT_ERR, EXIT_USAGE, EXIT_DAMAGE = 1, 2, 3


def send(port, body, rcpt):
    with smtplib.SMTP(h.HOST, port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail("s@example.org")
        code, text = s.rcpt(rcpt)
        if code != 250:
            raise AssertionError("RCPT: %d %r" % (code, text))
        code, text = s.data(body.encode())
    if code != 250:
        raise AssertionError("DATA: %d %r" % (code, text))
    return QUEUED_RE.search(text.decode()).group(1)


class SpoolToolTest(unittest.TestCase):
    def setUp(self):
        self.e = h.Etrnd(threads="1")
        self.addCleanup(self.e.cleanup)
        self.e.start()
        self.qids = [send(self.e.port, b, "u%d@%s" % (i, DOMAIN))
                     for i, b in enumerate(BODIES)]
        self.e.stop()
        self.e.proc = None

    def tool(self, *args):
        p = subprocess.run([self.e.spool_tool] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        return p.returncode, p.stdout.decode("latin-1"), p.stderr.decode("latin-1")

    def test_show_and_its_errors(self):
        rc, out, err = self.tool("show", self.e.spool_dir, self.qids[1])
        self.assertEqual(rc, 0, err)
        self.assertIn("queue_id: %s\n" % self.qids[1], out)
        self.assertIn("state: held\n", out)
        self.assertIn("recipient: <u1@%s> pending\n" % DOMAIN, out)
        # The body after the blank line: un-stuffed (smtplib sent, and the
        # spool keeps, "..starts" and "...two"), as the client meant it.
        body = out.split("\n\n", 1)[1]
        self.assertTrue(body.endswith("\r\n" + BODIES[1]), body)

        rc, out, err = self.tool("show", self.e.spool_dir, "not-a-qid")
        self.assertEqual((rc, out), (EXIT_USAGE, ""))
        self.assertEqual(err, "etrnd-spool: not-a-qid: not a queue id\n")
        missing = "%014X" % (int(self.qids[0], 16) ^ 0x1)
        if missing in self.qids:
            missing = "%014X" % (int(self.qids[0], 16) ^ 0x100)
        rc, out, err = self.tool("show", self.e.spool_dir, missing)
        self.assertEqual((rc, out), (EXIT_ERR, ""))
        self.assertEqual(err, "etrnd-spool: %s: not found\n" % missing)
        rc, out, err = self.tool("list", self.e.spool_dir, "extra", "operand")
        self.assertEqual((rc, out), (EXIT_USAGE, ""))
        self.assertTrue(err.startswith("usage: etrnd-spool stats SPOOL_DIR\n"), err)

    def test_damaged_record(self):
        recs = h.spool_json(self.e.spool_dir, self.e.spool_tool)
        msg = {r["qid"]: r for r in recs if r["type"] == "MSG"}
        bad = msg[self.qids[1]]
        # A byte inside the second message's record: its CRC no longer holds.
        with open(bad["segment"], "r+b") as f:
            f.seek(bad["offset"] + 40)
            b = f.read(1)
            f.seek(bad["offset"] + 40)
            f.write(bytes([b[0] ^ 0xFF]))
        where = re.escape("%s: offset %d: " % (bad["segment"], bad["offset"]))

        rc, out, err = self.tool("stats", self.e.spool_dir)
        self.assertEqual(rc, EXIT_DAMAGE, err)
        self.assertRegex(err, where + r"CRC mismatch \(\d+ bytes skipped\)\n")
        total = out.splitlines()[-1].split()
        self.assertEqual(total[0], "total")
        self.assertEqual((total[3], total[-1]), ("2", "1"))  # msg, bad

        rc, out, err = self.tool("list", self.e.spool_dir)
        self.assertEqual(rc, EXIT_DAMAGE, err)
        self.assertRegex(err, where + r"CRC mismatch")
        listed = [line.split()[0] for line in out.splitlines()]
        self.assertEqual(listed, [self.qids[0], self.qids[2]])

        rc, out, err = self.tool("json", self.e.spool_dir)
        self.assertEqual(rc, EXIT_DAMAGE, err)
        got = [json.loads(line)["qid"] for line in out.splitlines()]
        self.assertEqual(got, [self.qids[0], self.qids[2]])

        rc, out, err = self.tool("show", self.e.spool_dir, self.qids[1])
        self.assertEqual(rc, EXIT_ERR, err)
        self.assertIn("%s: not found" % self.qids[1], err)
        rc, out, err = self.tool("show", self.e.spool_dir, self.qids[2])
        self.assertEqual(rc, EXIT_DAMAGE, err)
        self.assertIn("the last\r\n", out)

        # etrnd's own recovery: the bad region is skipped and said, the two
        # intact messages stay queued.
        self.e.start()
        self.e.wait_log(r"1 bad region")
        self.e.stop()
        self.e.proc = None
        rc, out, err = self.tool("list", self.e.spool_dir)
        self.assertEqual([line.split()[0] for line in out.splitlines()],
                         [self.qids[0], self.qids[2]])


class SpoolToolSchedTest(unittest.TestCase):
    def test_show_next_attempt(self):
        """A relayed message whose delivery was refused has a SCHED record:
        show prints its next attempt."""
        dead = h.free_port()             # nobody listens: refused
        e = h.Etrnd(threads="1", mynetworks="127.0.0.1/32",
                    relayhost="[127.0.0.1]:%d" % dead)
        self.addCleanup(e.cleanup)
        e.start()
        qid = send(e.port, BODIES[0], "x@far.test")
        e.wait_log(r"%s: .*status=deferred" % qid)
        e.stop()                          # SIGTERM: the SCHED is committed
        e.proc = None
        p = subprocess.run([e.spool_tool, "show", e.spool_dir, qid], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        out = p.stdout.decode("latin-1")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("state: deferred\n", out)
        self.assertRegex(out, r"\nnext_attempt: far\.test \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
                              r"\.\d{6}Z\n")


if __name__ == "__main__":
    unittest.main()
