# SPDX-License-Identifier: MIT
"""etrnctl import against a real redis-server: the rows of a CSV file (BOM,
CRLF, quotes, empty fields, a reordered header, more than one batch) land in
Redis as the schema says, a re-import moves a domain between queues, and bad
files exit non-zero naming FILE:LINE. Redis is read back with redis-cli, not
with etrnctl, so a bug in etrnctl cannot hide itself.

Environment (tests/integration/CMakeLists.txt): ETRNCTL, REDIS_SERVER.
"""

import os
import shutil
import subprocess
import tempfile
import unittest

from etrnd_harness import env_path
from test_redis import Redis, etrnctl

BATCH = 1000  # ETRNCTL_BATCH in admin/etrnctl.c


def redis_cli_path():
    near = os.path.join(os.path.dirname(env_path("REDIS_SERVER")), "redis-cli")
    return near if os.access(near, os.X_OK) else shutil.which("redis-cli")


class ImportTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-import-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)
        self.cli = redis_cli_path()
        self.assertTrue(self.cli, "redis-cli not found")

    def r(self, *args):
        """One redis-cli command on the test's socket; stdout lines."""
        p = subprocess.run([self.cli, "-s", self.redis.sock] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30, check=True)
        return p.stdout.decode().splitlines()

    def hash(self, key):
        v = self.r("HGETALL", key)
        return dict(zip(v[0::2], v[1::2]))

    def write(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_rows_land_in_redis(self):
        rc, _, err = etrnctl(self.redis, "user", "add", "alice", "--password-stdin",
                             stdin=b"pw\n")
        self.assertEqual(rc, 0, err)
        lines = [b"\xef\xbb\xbfdomain , tls,queue,etrn-from,max_hold,quota_bytes,owner,dest",
                 b"# a comment",
                 b"",
                 b"A.Example.NET.,must,q1,\"10.0.0.0/8, 2001:db8::/32\",1w,64k,alice,\"relay.test:2525\"",
                 b"b.example.net,,q1,,1500ms,,,",
                 b"\"c.example.net\",may,\"q2\",,,0,,mx"]
        lines += [b"bulk%04d.example.net,,bulk,,5d,1M,," % i for i in range(2 * BATCH + 7)]
        path = self.write("ok.csv", b"\r\n".join(lines) + b"\r\n")
        rc, out, err = etrnctl(self.redis, "import", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        self.assertIn("import %s: %d domain(s) imported, 0 bad row(s) skipped"
                      % (path, 3 + 2 * BATCH + 7), out)
        self.assertEqual(self.hash("etrnd:domain:{a.example.net}"), {
            "tls": "must", "queue": "q1", "etrn_from": "10.0.0.0/8,2001:db8::/32",
            "max_hold": "1w", "quota_bytes": "65536", "owner": "alice",
            "dest": "relay.test:2525"})
        self.assertEqual(self.hash("etrnd:domain:{b.example.net}"),
                         {"tls": "may", "queue": "q1", "max_hold": "1500ms"})
        self.assertEqual(self.hash("etrnd:domain:{c.example.net}"),
                         {"tls": "may", "queue": "q2", "quota_bytes": "0", "dest": "mx"})
        self.assertEqual(sorted(self.r("SMEMBERS", "etrnd:queue:{q1}")),
                         ["a.example.net", "b.example.net"])
        self.assertEqual(self.r("SCARD", "etrnd:queue:{bulk}"), [str(2 * BATCH + 7)])
        self.assertEqual(self.hash("etrnd:domain:{bulk%04d.example.net}" % (2 * BATCH + 6)),
                         {"tls": "may", "queue": "bulk", "max_hold": "5d",
                          "quota_bytes": str(1 << 20)})
        self.assertEqual(self.r("HGET", "etrnd:user:{alice}", "domain:a.example.net"), ["1"])
        # A re-import moves b to q2 and drops a's owner: the old sets lose
        # them, as etrnctl domain add does.
        path2 = self.write("move.csv", b"domain,queue,owner\nb.example.net,q2,\n"
                                       b"a.example.net,q1,\n")
        rc, out, err = etrnctl(self.redis, "import", path2)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.r("SMEMBERS", "etrnd:queue:{q1}"), ["a.example.net"])
        self.assertEqual(sorted(self.r("SMEMBERS", "etrnd:queue:{q2}")),
                         ["b.example.net", "c.example.net"])
        self.assertEqual(self.r("HEXISTS", "etrnd:user:{alice}", "domain:a.example.net"), ["0"])

    def test_bad_rows_exit_1_with_file_and_line(self):
        path = self.write("bad.csv", b"domain,queue,max_hold,quota_bytes\r\n"
                                     b"good.example.net,q,1w,2G\r\n"
                                     b"bad..example.net,q,,\r\n"
                                     b"x.example.net,q,5 days,\r\n"
                                     b"y.example.net,q,,18446744073709551616\r\n"
                                     b"\"z.example.net,q,,\r\n"
                                     b"good.example.net,q,,\r\n"
                                     b"w.example.net,q,50d,\r\n")
        rc, out, err = etrnctl(self.redis, "import", path)
        self.assertEqual(rc, 1, err)
        self.assertIn("1 domain(s) imported, 6 bad row(s) skipped", out)
        want = [(3, "not a domain name"), (4, "max_hold: \"5 days\": not a duration"),
                (5, "quota: \"18446744073709551616\": too large"),
                (6, "unterminated quoted field"), (7, "already on line 2"),
                (8, "max_hold: \"50d\": want a duration from 1s to 49d")]
        got = err.splitlines()
        self.assertEqual(len(got), len(want), err)
        for (line, why), text in zip(want, got):
            self.assertTrue(text.startswith("%s:%d: " % (path, line)), text)
            self.assertIn(why, text)
            self.assertTrue(text.endswith("; skipped"), text)
        self.assertEqual(self.hash("etrnd:domain:{good.example.net}"),
                         {"tls": "may", "queue": "q", "max_hold": "1w",
                          "quota_bytes": str(2 << 30)})
        self.assertEqual(self.r("EXISTS", "etrnd:domain:{x.example.net}"), ["0"])

    def test_bad_files_write_nothing(self):
        cases = [
            (b"domain,queue,colour\na.example.net,q,red\n", 2,
             ":1: unknown column \"colour\""),
            (b"# first\ndomain,queue,queue\na.example.net,q,q\n", 2,
             ":2: column \"queue\" given twice"),
            (b"domain,\"queue\na.example.net,q\n", 1,
             ":1: header: unterminated quoted field"),
        ]
        for i, (data, want_rc, want) in enumerate(cases):
            path = self.write("bad%d.csv" % i, data)
            rc, out, err = etrnctl(self.redis, "import", path)
            self.assertEqual(rc, want_rc, err)
            self.assertTrue(err.startswith("etrnctl: " + path + want), err)
            self.assertEqual(out, "")
        missing = os.path.join(self.tmp, "missing.csv")
        rc, _, err = etrnctl(self.redis, "import", missing)
        self.assertEqual(rc, 1)
        self.assertEqual(err, "etrnctl: %s: No such file or directory\n" % missing)
        self.assertEqual(self.r("DBSIZE"), ["0"])


if __name__ == "__main__":
    unittest.main()
