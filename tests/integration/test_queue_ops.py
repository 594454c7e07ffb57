# SPDX-License-Identifier: MIT
"""The operator's queue commands (issue 10 item 14): mail held for a domain
that was then deleted from Redis is stranded (`etrnctl flush` answers 459);
`etrnctl queue list`, `message show|delete|bounce` and `flush --force --to`
release it, all through the running daemon's control socket, each logged
with who asked. Also `status --json` (item 13) and bad input. Loopback, a
private redis-server and customer server; every process stopped by PID."""

import json
import os
import re
import smtplib
import socket
import subprocess
import tempfile
import time
import unittest

import etrnd_harness as h
from customer_server import CustomerServer
from test_redis import Redis, etrnctl, wait_code

QUEUED_RE = re.compile(rb"queued as ([0-9A-F]{14})")
LINE_RE = re.compile(r"^([0-9A-F]{14})\t(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\t(\d+)\t(\d+)\t(\S+)"
                     r"\t<([^>]*)>$")


def send(e, domain, n, tag, sender="s@example.org"):
    """n messages to u@domain; their queue ids, in order."""
    qids = []
    with smtplib.SMTP(h.HOST, e.port, timeout=15) as s:
        s.ehlo("sender.test")
        for i in range(n):
            body = ("From: %s\r\nTo: u@%s\r\nSubject: %s %d\r\nMessage-ID: <%s-%d@x>\r\n\r\n"
                    "held for %s\r\n" % (sender, domain, tag, i, tag, i, domain)).encode()
            s.mail(sender)
            s.rcpt("u@%s" % domain)
            code, msg = s.data(body)
            if code != 250:
                raise AssertionError("DATA: %d %r" % (code, msg))
            qids.append(QUEUED_RE.search(msg).group(1).decode())
    return qids


class QueueOpsTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-qops-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        self.redis = Redis(tmp).start()
        self.addCleanup(self.redis.stop)
        self.cport = h.free_port()

    def ctl(self, *args):
        p = subprocess.run([h.env_path("ETRNCTL"), "-c", self.e.conf_path] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode()

    def listed(self, *dom):
        rc, out, err = self.ctl("queue", "list", *dom) if dom else self.ctl("mailq")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^total \d+$")
        return [LINE_RE.match(l).groups() for l in out.splitlines() if LINE_RE.match(l)]

    def stranded(self, n=4):
        """etrnd holding n messages for gone.test, then gone.test deleted."""
        rc, _, err = etrnctl(self.redis, "domain", "add", "gone.test", "--dest", "127.0.0.1:1")
        self.assertEqual(rc, 0, err)
        self.e = h.Etrnd(redis=self.redis.url(), threads="2")
        self.e.cfg["control_socket"] = os.path.join(self.e.dir, "ctl.sock")
        self.addCleanup(self.e.cleanup)
        self.e.start()
        wait_code(self.e, "gone.test", 250, h.LOG_WAIT_S)
        qids = send(self.e, "gone.test", n, "st")
        rc, _, err = etrnctl(self.redis, "domain", "del", "gone.test")
        self.assertEqual(rc, 0, err)
        wait_code(self.e, "gone.test", 550, h.LOG_WAIT_S)
        return qids

    def test_stranded_mail_list_show_force_flush(self):
        qids = self.stranded(40)  # > DQ_LIST_READS per shard: envelope reads queue up
        rows = self.listed("gone.test")
        self.assertEqual(sorted(r[0] for r in rows), sorted(qids))
        for r in rows:
            self.assertEqual((r[3], r[4], r[5]), ("1", "gone.test", "s@example.org"))
            self.assertGreater(int(r[2]), 0)
        self.assertEqual(sorted(r[0] for r in self.listed()), sorted(qids))
        rc, out, _ = self.ctl("--json", "mailq")
        self.assertEqual(rc, 0)
        self.assertEqual(sorted(m["qid"] for m in json.loads(out)), sorted(qids))
        self.assertEqual({m["sender"] for m in json.loads(out)}, {"s@example.org"})

        rc, out, err = self.ctl("message", "show", qids[0])
        self.assertEqual(rc, 0, err)
        self.assertIn("qid: %s\n" % qids[0], out)
        self.assertIn("sender: <s@example.org>\n", out)
        self.assertIn("recipient: <u@gone.test> pending\n", out)
        self.assertIn("Subject: st 0", out)
        self.assertNotIn("held for gone.test", out, "the header only")
        rc, out, err = self.ctl("message", "show", "--full", qids[0])
        self.assertEqual(rc, 0, err)
        self.assertIn("held for gone.test", out)

        rc, out, _ = self.ctl("flush", "gone.test")
        self.assertEqual(rc, 1)
        self.assertTrue(out.startswith("459"), out)
        c = CustomerServer(self.cport).start()
        self.addCleanup(c.stop)
        rc, out, err = self.ctl("flush", "--force", "gone.test", "--to", "127.0.0.1:%d" % self.cport)
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith("253"), out)
        self.assertTrue(c.wait_count(40, 30), "got %d of 40" % c.recorder.count())
        deadline = time.monotonic() + 20
        while self.listed("gone.test") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.listed("gone.test"), [])
        log = self.e.stderr_text()
        self.assertRegex(log, r"forced flush of gone\.test to 127\.0\.0\.1:\d+, asked by uid=\d+")
        self.assertRegex(log, r"control socket: show %s, asked by uid=\d+" % qids[0])

    def test_delete_survives_restart(self):
        qids = self.stranded(3)
        rc, out, err = self.ctl("message", "delete", qids[1])
        self.assertEqual(rc, 0, err)
        self.assertIn("ok: %s deleted: 1 recipient(s) marked done" % qids[1], out)
        self.assertEqual(sorted(r[0] for r in self.listed("gone.test")),
                         sorted([qids[0], qids[2]]))
        rc, _, err = self.ctl("message", "delete", qids[1])
        self.assertEqual(rc, 1)
        self.assertIn("no such message held", err)
        self.assertRegex(self.e.stderr_text(), r"%s: deleted by uid=\d+" % qids[1])
        self.e.stop()
        recs = h.spool_json(self.e.spool_dir)
        self.assertIn(qids[1], {r["qid"] for r in recs if r["type"] == "DONE"})
        self.e.start()
        self.assertEqual(sorted(r[0] for r in self.listed("gone.test")),
                         sorted([qids[0], qids[2]]))

    def test_bounce_sends_dsn_to_sender(self):
        qids = self.stranded(2)
        rc, out, err = self.ctl("message", "bounce", qids[0])
        self.assertEqual(rc, 0, err)
        m = re.search(r"ok: %s returned to its sender: 1 recipient\(s\), DSN ([0-9A-F]{14})"
                      % qids[0], out)
        self.assertTrue(m, out)
        dsn = m.group(1)
        self.assertEqual([r[0] for r in self.listed("gone.test")], [qids[1]])
        # The DSN is held for the sender's domain.
        self.assertEqual([(r[0], r[4], r[5]) for r in self.listed("example.org")],
                         [(dsn, "example.org", "")])  # from <>, RFC 3464
        rc, out, _ = self.ctl("message", "show", "--full", dsn)
        self.assertEqual(rc, 0)
        self.assertIn("recipient: <s@example.org> pending", out)
        self.assertIn("5.0.0", out)

    def test_status_json(self):
        self.stranded(2)
        rc, out, err = self.ctl("--json", "status")
        self.assertEqual(rc, 0, err)
        p = subprocess.run(["python3", "-m", "json.tool"], input=out.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        st = json.loads(out)
        self.assertEqual(set(st), {"shards", "domains", "deferred", "atrn", "complete"})
        self.assertEqual(st["atrn"], [])  # no ATRN session in progress
        self.assertIsInstance(st["deferred"], list)  # the scheduler's queue
        self.assertTrue(st["complete"])
        self.assertEqual(len(st["shards"]), 2)
        for s in st["shards"]:
            self.assertTrue(s["answered"])
            for k in ("messages", "recipients", "domains", "segments", "bytes",
                      "live_bytes", "delivered", "bounced", "expired"):
                self.assertIsInstance(s[k], int, k)
        self.assertEqual(sum(s["messages"] for s in st["shards"]), 2)
        (d,) = st["domains"]
        self.assertEqual((d["domain"], d["messages"], d["recipients"]), ("gone.test", 2, 2))
        self.assertIn("oldest_s", d)

    def test_bad_input(self):
        self.stranded(1)
        for args, want in ((["message", "show", "0123"], "not a queue id"),
                           (["message", "delete", "ZZZZZZZZZZZZZZ"], "not a queue id"),
                           (["message", "bounce", "00000000000000"], "no such message held"),
                           (["message", "show", "7F0000000000FF"], "no such message held"),
                           (["message", "frob", "00000000000000"], "unknown command"),
                           (["queue", "list", "bad_dom!ain"], "bad_dom!ain"),
                           (["flush", "--to", "127.0.0.1:1", "gone.test"], "--to only goes"),
                           (["flush", "--force", "#q"], "one domain"),
                           (["status", "--full"], "--full only goes")):
            rc, out, err = self.ctl(*args)
            self.assertNotEqual(rc, 0, args)
            self.assertIn(want, err, args)
        # Raw requests straight to the socket: a bad one is an error line.
        for req, want in ((b"frobnicate all\n", b"error: unknown request"),
                          (b"show\n", b"error: unknown request"),
                          (b"show \n", b"error: unknown request"),
                          (b"delete 00000000000000 00000000000000\n", b"error: unknown request"),
                          (b"status xml\n", b"error: status takes"),
                          (b"queue gone.test\tby evil\x01\n", b"total 1\n"),
                          (b"delete 01000000000000\tby evil\x01\n",
                           b"error: 01000000000000: no such message held\n")):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.addCleanup(s.close)
            s.settimeout(10)
            s.connect(self.e.cfg["control_socket"])
            s.sendall(req)
            got = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
            self.assertTrue(got.startswith(want) or got.endswith(want), (req, got))
        self.assertIn("control socket: delete 01000000000000, asked by evil?", self.e.stderr_text())

if __name__ == "__main__":
    unittest.main()
