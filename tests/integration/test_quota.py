# SPDX-License-Identifier: MIT
"""Per-domain quota (DESIGN.md 5): a domain provisioned with quota_bytes takes
mail until it holds that much; then RCPT gets 452 4.2.2, and a message that
would cross the quota gets 452 4.2.2 at the end of DATA with nothing written.
Other domains are unaffected, and the held bytes survive a restart.
"""

import re
import smtplib
import tempfile
import time
import unittest

from etrnd_harness import Etrnd, HOST, LOG_WAIT_S, msg_records, remove_tmp
from test_redis import Redis, etrnctl

BODY = b"Subject: q\r\n\r\n" + (b"y" * 98 + b"\r\n") * 100   # ~10 KB each
QUOTA = 35000


def send(e, rcpt, body=BODY, stage=False):
    """(code, text) of one message: RCPT's reply when it was refused, else the
    reply after DATA; with stage=True also "rcpt" or "data"."""
    with smtplib.SMTP(HOST, e.port, timeout=10) as s:
        s.ehlo("quota.test")
        s.mail("s@example.org")
        code, msg = s.rcpt(rcpt)
        if code != 250:
            return (code, msg, "rcpt") if stage else (code, msg)
        try:
            code, msg = s.data(body)
        except smtplib.SMTPDataError as err:
            code, msg = err.smtp_code, err.smtp_error
        return (code, msg, "data") if stage else (code, msg)


class QuotaTest(unittest.TestCase):
    def test_quota(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-quota-")
        self.addCleanup(remove_tmp, tmp)  # runs last: after Redis stops
        r = Redis(tmp).start()
        self.addCleanup(r.stop)
        rc, out, err = etrnctl(r, "domain", "add", "small.test", "--quota", str(QUOTA))
        self.assertEqual(rc, 0, err)
        rc, out, err = etrnctl(r, "domain", "add", "big.test")
        self.assertEqual(rc, 0, err)
        e = Etrnd(redis=r.url(), relay_domains="static.test", threads="2")
        self.addCleanup(e.cleanup)
        e.start()
        # Three ~10 KB messages fit in 35000 bytes (with our Received:).
        for i in range(3):
            self.assertEqual(send(e, "u@small.test")[0], 250, i)
        # The fourth would cross the quota: refused at end of DATA.
        code, msg = send(e, "u@small.test")
        self.assertEqual(code, 452, msg)
        self.assertTrue(msg.startswith(b"4.2.2"), msg)
        # A small one still fits under the quota ...
        self.assertEqual(send(e, "u@small.test", b"Subject: s\r\n\r\nsmall\r\n")[0], 250)
        # The operator lowers the quota below what is held: now RCPT itself
        # is refused (the table follows Redis within a moment).
        rc, out, err = etrnctl(r, "domain", "add", "small.test", "--quota", "1000")
        self.assertEqual(rc, 0, err)
        deadline = time.monotonic() + LOG_WAIT_S  # a hang guard only
        while True:
            code, msg, stage = send(e, "u@small.test", BODY, stage=True)
            if stage == "rcpt" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual((code, stage), (452, "rcpt"), msg)
        self.assertRegex(msg.decode(), r"^4\.2\.2 ")
        # Other domains do not care.
        self.assertEqual(send(e, "u@big.test")[0], 250)
        self.assertEqual(send(e, "u@static.test")[0], 250)
        e.stop()
        recs = msg_records(e.spool_dir)
        small = [m for m in recs if m["rcpts"] == ["u@small.test"]]
        total = sum(len(m["body_b64"]) * 3 // 4 for m in small)
        self.assertLessEqual(total, QUOTA + 4, "held more than the quota")
        # After a restart the held bytes are counted again from the spool.
        e.start()
        code, msg, stage = send(e, "u@small.test", b"Subject: h\r\n\r\nhello\r\n", stage=True)
        self.assertEqual((code, stage), (452, "rcpt"), msg)
        self.assertEqual(send(e, "u@big.test")[0], 250)


if __name__ == "__main__":
    unittest.main()
