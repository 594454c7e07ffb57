# SPDX-License-Identifier: MIT
"""A wildcard row's quota_bytes is one total for every name it covers (issue
10 item 5): mail to ever new subdomains of *.example.test is refused with
452 4.2.2 once the row's total passes the quota. Before the fix each
subdomain was counted on its own, so any number of them filled the spool.
An exact row beside it keeps its own quota.
"""

import tempfile
import unittest

from etrnd_harness import Etrnd, msg_records, remove_tmp
from test_quota import BODY, send
from test_redis import Redis, etrnctl

QUOTA = 35000          # three ~10 KB messages fit, the fourth does not
TRIES = 12             # distinct subdomains tried


class WildcardQuotaTest(unittest.TestCase):
    def test_wildcard_row_shares_one_quota(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-wquota-")
        self.addCleanup(remove_tmp, tmp)  # runs last: after Redis stops
        r = Redis(tmp).start()
        self.addCleanup(r.stop)
        rc, out, err = etrnctl(r, "domain", "add", "*.example.test", "--quota", str(QUOTA))
        self.assertEqual(rc, 0, err)
        rc, out, err = etrnctl(r, "domain", "add", "exact.test", "--quota", str(QUOTA))
        self.assertEqual(rc, 0, err)
        e = Etrnd(redis=r.url(), relay_domains="static.test", threads="2")
        self.addCleanup(e.cleanup)
        e.start()
        codes = []
        for i in range(TRIES):
            code, msg = send(e, "u@s%d.example.test" % i)
            codes.append(code)
            if code != 250:
                self.assertEqual(code, 452, msg)
                self.assertTrue(msg.startswith(b"4.2.2"), msg)
        self.assertEqual(codes[:3], [250, 250, 250], codes)
        self.assertEqual(set(codes[3:]), {452}, codes)
        # A deeper name is under the same row and the same total.
        code, msg = send(e, "u@a.b.example.test")
        self.assertEqual(code, 452, msg)
        # The exact row is counted on its own.
        self.assertEqual(send(e, "u@exact.test")[0], 250)
        e.stop()
        held = [m for m in msg_records(e.spool_dir)
                if m["rcpts"][0].endswith(".example.test")]
        total = sum(len(m["body_b64"]) * 3 // 4 for m in held)
        self.assertLessEqual(total, QUOTA + 4, "held more than the row's quota")
        # After a restart the total is counted again from the spool.
        e.start()
        code, msg = send(e, "u@fresh.example.test")
        self.assertEqual(code, 452, msg)


if __name__ == "__main__":
    unittest.main()
