# SPDX-License-Identifier: MIT
"""A huge max_hold is refused, never wrapped (issue 10 item 7): 18446744073710s
times 1000 wraps a 64-bit millisecond count to under a second, which expired
mail at once. etrnctl refuses it (exit 2, the reason on stderr); a Redis row
written behind etrnctl's back with it is logged and the field left at the
default, so its domain's mail is held as long as everyone's. A domain with a
real 1 s hold beside it shows that expiry did run.
"""

import subprocess
import tempfile
import unittest

import etrnd_harness as h
from test_expiry import send, wait_for_log
from test_redis import Redis, etrnctl, wait_log

HUGE = "18446744073710s"


class MaxHoldOverflowTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-hold-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        self.redis = Redis(tmp).start()
        self.addCleanup(self.redis.stop)

    def test_etrnctl_refuses(self):
        for value in (HUGE, "50d", "18446744073709551616ms", "0s"):
            rc, out, err = etrnctl(self.redis, "domain", "add", "big.test", "--max-hold", value)
            self.assertNotEqual(rc, 0, value)
            self.assertIn("--max-hold", err, value)
            self.assertRegex(err, r"want a duration from 1s to 49d|too long \(at most|not a duration", value)
            rc, out, err = etrnctl(self.redis, "domain", "show", "big.test")
            self.assertNotEqual(rc, 0, "nothing was written for %s: %s" % (value, out))
        rc, out, err = etrnctl(self.redis, "domain", "add", "big.test", "--max-hold", "49d")
        self.assertEqual(rc, 0, err)

    def test_redis_row_refused_and_mail_kept(self):
        subprocess.run(["redis-cli", "-s", self.redis.sock, "HSET",
                        "etrnd:domain:huge.test", "max_hold", HUGE],
                       check=True, stdout=subprocess.DEVNULL, timeout=20)
        self.assertEqual(etrnctl(self.redis, "domain", "add", "short.test",
                                 "--max-hold", "1s")[0], 0)
        e = h.Etrnd(threads="1", max_hold="5d", redis=self.redis.url(),
                    relay_domains="static.test")
        self.addCleanup(e.cleanup)
        e.start()
        wait_log(e, r"redis: etrnd:domain:huge\.test: max_hold: \"%s\": .*"
                 r"\(those fields left at their defaults\)" % HUGE)
        huge = send(e, "carol@example.org", ["a@huge.test"], "huge")
        short = send(e, "carol@example.org", ["b@short.test"], "short")
        e.stop()
        # An hour later: the 1 s hold is long past, the default 5 d is not.
        e.cfg["clock_offset"] = "1h"
        e.start()
        wait_for_log(e, r"sender non-delivery notification", 1)
        e.stop()
        log = e.stderr_text()
        self.assertIn("%s: to=<b@short.test>" % short, log)
        self.assertNotIn("to=<a@huge.test>", log)
        dones = [x["qid"] for x in h.spool_json(e.spool_dir) if x["type"] == "DONE"]
        self.assertNotIn(huge, dones)
        self.assertIn(short, dones)


if __name__ == "__main__":
    unittest.main()
