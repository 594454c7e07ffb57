# SPDX-License-Identifier: MIT
"""etrnd-spool list and show say each message's state (issue 15 item 7): a
real etrnd holds mail for two customer domains, one is drained to a
customer server (delivered), one message is deleted (expired), one with a
recipient in each domain is left half done (held, one recipient delivered)
and another is then deleted (finished: delivered and expired). `list`
shows only the live messages, `list --all` every one, each with its state,
before and after a restart (recovery's reading is the tool's). Loopback,
a private redis-server and customer server; every process stopped by PID."""

import os
import re
import subprocess
import tempfile
import time
import unittest

import etrnd_harness as h
from customer_server import CustomerServer
from test_outbound import send as outbound_send
from test_redis import Redis, etrnctl, wait_code

# QID STATE TIME SIZE <SENDER> NRCPT <RCPT>[(STATE)]...
LIST_RE = re.compile(r"^([0-9A-F]{14}) (\S+) (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) "
                     r"(\d+) <([^>]*)> (\d+)((?: <[^>]*>(?:\([a-z]+\))?)+)$")
RCPT_RE = re.compile(r" <([^>]*)>(?:\(([a-z]+)\))?")
WAIT_S = 30


def send(e, rcpts, tag):
    """One message from s@example.org to rcpts; its queue id."""
    return outbound_send(e.port, "s@example.org", rcpts, tag)


class SpoolListTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-slist-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        self.redis = Redis(tmp).start()
        self.addCleanup(self.redis.stop)
        cport = h.free_port()
        self.cust = CustomerServer(cport).start()
        self.addCleanup(self.cust.stop)
        for d in ("one.test", "two.test"):
            rc, _, err = etrnctl(self.redis, "domain", "add", d,
                                 "--dest", "127.0.0.1:%d" % cport)
            self.assertEqual(rc, 0, err)
        # One shard, one segment: the live messages keep the finished ones
        # on disk (etrnd unlinks a segment once all in it is done, and
        # --all can only show what is still there).
        self.e = h.Etrnd(redis=self.redis.url(), threads="1")
        self.e.cfg["control_socket"] = os.path.join(self.e.dir, "ctl.sock")
        self.addCleanup(self.e.cleanup)
        self.e.start()
        wait_code(self.e, "one.test", 250, WAIT_S)
        wait_code(self.e, "two.test", 250, WAIT_S)

    def ctl(self, *args):
        p = subprocess.run([h.env_path("ETRNCTL"), "-c", self.e.conf_path] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, "etrnctl %s: %s%s" % (
            " ".join(args), p.stdout.decode(), p.stderr.decode()))
        return p.stdout.decode()

    def tool(self, *args, want_rc=0):
        p = subprocess.run([self.e.spool_tool] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, want_rc, p.stderr.decode())
        return p.stdout.decode("latin-1")

    def listed(self, *opts):
        """{qid: (state, {rcpt: own state or None})} from etrnd-spool list."""
        out = {}
        for line in self.tool("list", *opts, self.e.spool_dir).splitlines():
            m = LIST_RE.match(line)
            self.assertIsNotNone(m, "list line %r" % line)
            rcpts = dict(RCPT_RE.findall(m.group(7)))
            self.assertEqual(int(m.group(6)), len(rcpts), line)
            self.assertEqual(m.group(5), "s@example.org")
            out[m.group(1)] = (m.group(2), {r: (s or None) for r, s in rcpts.items()})
        return out

    def wait_listed(self, want, *opts):
        deadline = time.monotonic() + WAIT_S
        got = self.listed(*opts)
        while got != want and time.monotonic() < deadline:
            time.sleep(0.1)
            got = self.listed(*opts)
        self.assertEqual(got, want)

    def test_states_live_and_all(self):
        gone = send(self.e, ["a@one.test"], "delivered")
        both = send(self.e, ["b@one.test", "c@two.test"], "half")
        rest = send(self.e, ["d@one.test", "e@two.test"], "finished")
        self.wait_listed({gone: ("held", {"a@one.test": None}),
                          both: ("held", {"b@one.test": None, "c@two.test": None}),
                          rest: ("held", {"d@one.test": None, "e@two.test": None})})
        self.assertTrue(self.ctl("flush", "one.test").startswith("253"))
        self.assertTrue(self.cust.wait_count(3, WAIT_S))
        # Every DONE of the drain durable before the deletes below.
        self.wait_listed({both: ("held", {"b@one.test": "delivered", "c@two.test": None}),
                          rest: ("held", {"d@one.test": "delivered", "e@two.test": None})})
        held = send(self.e, ["f@one.test"], "held")
        dele = send(self.e, ["g@two.test"], "expired")
        self.assertIn("deleted", self.ctl("message", "delete", dele))
        self.assertIn("deleted", self.ctl("message", "delete", rest))

        live = {both: ("held", {"b@one.test": "delivered", "c@two.test": None}),
                held: ("held", {"f@one.test": None})}
        every = dict(live)
        every.update({gone: ("delivered", {"a@one.test": None}),
                      dele: ("expired", {"g@two.test": None}),
                      rest: ("finished", {"d@one.test": "delivered",
                                          "e@two.test": "expired"})})
        self.wait_listed(live)
        self.assertEqual(self.listed("--all"), every)

        show = self.tool("show", self.e.spool_dir, both)
        self.assertIn("state: held\n", show)
        self.assertIn("recipient: <b@one.test> delivered\n", show)
        self.assertIn("recipient: <c@two.test> pending\n", show)
        show = self.tool("show", self.e.spool_dir, rest)
        self.assertIn("state: finished\n", show)
        self.assertIn("recipient: <e@two.test> expired\n", show)
        self.assertIn("state: delivered\n", self.tool("show", self.e.spool_dir, gone))

        # Recovery reads the spool as the tool does: after a restart the
        # daemon holds exactly the live messages.
        self.e.stop()
        self.e.start()
        rows = self.ctl("queue", "list", "one.test") + self.ctl("queue", "list", "two.test")
        self.assertEqual(sorted(set(re.findall(r"(?m)^([0-9A-F]{14})\t", rows))),
                         sorted(live))
        self.assertEqual(self.listed(), live)
        self.assertEqual(self.listed("--all"), every)

    def test_usage(self):
        self.tool("list", want_rc=2)
        self.tool("list", "--all", want_rc=2)
        self.tool("list", self.e.spool_dir, "extra", want_rc=2)
        self.tool("stats", "--all", self.e.spool_dir, want_rc=2)
        self.assertEqual(self.tool("list", "--all", self.e.spool_dir),
                         self.tool("list", self.e.spool_dir, "--all"))


if __name__ == "__main__":
    unittest.main()
