# SPDX-License-Identifier: MIT
"""Hash-tagged Redis keys (issue 16, admin/schema.h): PREFIX KIND:{NAME}.

etrnd and etrnctl read both forms (the tagged key wins when both exist),
etrnctl writes the tagged one and removes (or folds in) the untagged twin,
and `etrnctl keys migrate` renames every untagged key while the daemon keeps
serving. A private redis-server on a unix socket per test (test_redis.Redis),
stopped by PID; every wait is bounded and ends on an event (a log line, a
reply), never a fixed sleep before a negative check.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from etrnd_harness import Etrnd, LOG_WAIT_S, env_path
from test_redis import Redis, etrnctl, rcpt_code, wait_code

CODE_WAIT_S = 30.0   # a loaded machine: an event applied within this


class RedisKeysTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-keys-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)

    def cli(self, *args):
        p = subprocess.run(["redis-cli", "-s", self.redis.sock] + list(args),
                           stdout=subprocess.PIPE, timeout=20, check=True)
        return p.stdout.decode().strip()

    def keys(self):
        return sorted(self.cli("--scan").split())

    def ok(self, *args):
        rc, out, err = etrnctl(self.redis, *args)
        self.assertEqual(rc, 0, "etrnctl %s: %s%s" % (" ".join(args), out, err))
        return out

    def etrnd(self, **cfg):
        d = tempfile.mkdtemp(prefix="etrnd-it-", dir=self.tmp)
        e = Etrnd(tmpdir=d, redis=self.redis.url(), relay_domains="static.test",
                  log_level="debug", **cfg)
        self.addCleanup(e.cleanup)
        e.start()
        return e

    def test_both_forms_load_and_tagged_wins(self):
        self.cli("HSET", "etrnd:domain:old.test", "queue", "q1")
        self.cli("HSET", "etrnd:domain:{new.test}", "queue", "q1")
        # Twins: each carries a bad field of its own, so the log says which
        # one the daemon read.
        self.cli("HSET", "etrnd:domain:twin.test", "mode", "soon")
        self.cli("HSET", "etrnd:domain:{twin.test}", "max_hold", "forever")
        self.cli("SET", "etrnd:route:old.test", "[127.0.0.1]:2526")
        self.cli("SET", "etrnd:route:{new.test}", "[127.0.0.1]:2527")
        e = self.etrnd()
        # old, new, twin and the static domain: twins are one row.
        e.wait_log(r"connected, 4 domain\(s\) loaded in \d+ ms, 2 route\(s\)")
        log = e.stderr_text()
        self.assertIn("redis: etrnd:domain:{twin.test}: max_hold: \"forever\"", log)
        self.assertNotIn("mode: \"soon\"", log, "the untagged twin was read")
        for d in ("old.test", "new.test", "twin.test", "static.test"):
            self.assertEqual(rcpt_code(e, d), 250, d)
        self.assertEqual(rcpt_code(e, "other.test"), 550)
        # etrnctl reads the same way.
        self.assertEqual(json.loads(self.ok("--json", "domain", "show", "twin.test")),
                         {"domain": "twin.test", "max_hold": "forever", "mode": "hold"})
        self.assertEqual(self.ok("domain", "list"), "new.test\nold.test\ntwin.test\n")
        self.assertEqual(self.ok("route", "list"),
                         "new.test\t[127.0.0.1]:2527\nold.test\t[127.0.0.1]:2526\n")

    def test_events_for_either_form_apply_live(self):
        e = self.etrnd()
        e.wait_log(r"connected, 1 domain\(s\) loaded")
        self.cli("HSET", "etrnd:domain:{live.test}", "queue", "q1")
        self.cli("PUBLISH", "etrnd:events", "domain live.test")
        wait_code(e, "live.test", 250, CODE_WAIT_S)
        # An untagged twin beside it: deleting the tagged key leaves the
        # twin serving; deleting the twin too removes the domain.
        self.cli("HSET", "etrnd:domain:live.test", "queue", "q2")
        self.cli("DEL", "etrnd:domain:{live.test}")
        mark = e.log_mark()
        self.cli("PUBLISH", "etrnd:events", "domain live.test")
        e.wait_log(r"1 domain and 0 route change\(s\) applied", since=mark)
        self.assertEqual(rcpt_code(e, "live.test"), 250)
        self.cli("DEL", "etrnd:domain:live.test")
        self.cli("PUBLISH", "etrnd:events", "domain live.test")
        wait_code(e, "live.test", 550, CODE_WAIT_S)
        # A tagged route by event.
        mark = e.log_mark()
        self.cli("SET", "etrnd:route:{live.test}", "[127.0.0.1]:2526")
        self.cli("PUBLISH", "etrnd:events", "route live.test")
        e.wait_log(r"0 domain and 1 route change\(s\) applied, 1 domain\(s\), 1 route\(s\)",
                   since=mark)

    def test_etrnctl_writes_tagged_and_removes_twins(self):
        self.cli("HSET", "etrnd:domain:a.test", "queue", "q1", "owner", "u1", "dest", "mx")
        self.cli("SADD", "etrnd:queue:q1", "a.test", "z.test")
        self.cli("HSET", "etrnd:user:u1", "password", "$6$x$y", "domain:a.test", "1")
        self.cli("SET", "etrnd:route:a.test", "[127.0.0.1]:2526")
        self.ok("domain", "set", "a.test", "--mode", "deliver")
        self.ok("domain", "add", "b.test", "--queue", "q1", "--owner", "u1")
        self.ok("route", "add", "a.test", "[127.0.0.1]:2527")
        self.assertEqual(self.keys(), ["etrnd:domain:{a.test}", "etrnd:domain:{b.test}",
                                       "etrnd:queue:{q1}", "etrnd:route:{a.test}",
                                       "etrnd:user:{u1}"])
        row = self.cli("HGETALL", "etrnd:domain:{a.test}").split("\n")
        row = dict(zip(row[::2], row[1::2]))
        self.assertEqual((row["queue"], row["owner"], row["dest"], row["mode"]),
                         ("q1", "u1", "mx", "deliver"), "the old row carried over")
        # The set and the user were folded in, not replaced.
        self.assertEqual(sorted(self.cli("SMEMBERS", "etrnd:queue:{q1}").split()),
                         ["a.test", "b.test", "z.test"])
        self.assertEqual(self.cli("HGET", "etrnd:user:{u1}", "password"), "$6$x$y")
        self.assertEqual(self.cli("HGET", "etrnd:user:{u1}", "domain:b.test"), "1")
        self.assertEqual(self.cli("GET", "etrnd:route:{a.test}"), "[127.0.0.1]:2527")
        # A user known only untagged: passwd works on it (and tags it).
        self.cli("HSET", "etrnd:user:u2", "password", "$6$a$b", "domain:c.test", "1")
        rc, out, err = etrnctl(self.redis, "user", "passwd", "u2", "--password-stdin",
                               stdin=b"n3w\n")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.cli("EXISTS", "etrnd:user:u2"), "0")
        self.assertEqual(self.cli("HGET", "etrnd:user:{u2}", "domain:c.test"), "1")
        self.assertNotEqual(self.cli("HGET", "etrnd:user:{u2}", "password"), "$6$a$b")
        # Deletes reach both forms.
        self.cli("HSET", "etrnd:domain:d.test", "queue", "q1")
        self.ok("domain", "del", "d.test")
        self.cli("SET", "etrnd:route:r.test", "[127.0.0.1]:25")
        self.ok("route", "del", "r.test")
        self.assertEqual(self.cli("EXISTS", "etrnd:domain:d.test", "etrnd:route:r.test"), "0")

    def test_keys_migrate_while_serving(self):
        n = 50
        for i in range(n):
            self.cli("HSET", "etrnd:domain:m%02d.test" % i, "queue", "bulk")
        self.cli("SADD", "etrnd:queue:bulk", *["m%02d.test" % i for i in range(n)])
        self.cli("SET", "etrnd:route:m00.test", "[127.0.0.1]:2526")
        self.cli("HSET", "etrnd:user:u1", "password", "$6$x$y")
        # A twin: skipped, left in place, and the tagged one still wins.
        self.cli("HSET", "etrnd:domain:{m01.test}", "queue", "tagged")
        e = self.etrnd()
        e.wait_log(r"connected, %d domain\(s\) loaded" % (n + 1))
        mark = e.log_mark()
        out = self.ok("keys", "migrate")
        self.assertIn("domain keys: %d renamed, 1 skipped" % (n - 1), out)
        self.assertIn("route keys: 1 renamed, 0 skipped", out)
        self.assertIn("user keys: 1 renamed, 0 skipped", out)
        self.assertIn("queue keys: 1 renamed, 0 skipped", out)
        # etrnd:nodes (the cluster's node set: no name in it, so no tag)
        # is the one key that stays untagged by design.
        untagged = [k for k in self.keys() if "{" not in k and k != "etrnd:nodes"]
        self.assertEqual(untagged, ["etrnd:domain:m01.test"])
        # "full" was published: the daemon reads everything again and still
        # serves every domain.
        e.wait_log(r"redis: resync, %d domain\(s\), 1 route\(s\)" % (n + 1), since=mark)
        for i in range(n):
            self.assertEqual(rcpt_code(e, "m%02d.test" % i), 250)
        self.assertEqual(self.cli("HGET", "etrnd:domain:{m01.test}", "queue"), "tagged")
        # Again: nothing left to rename (the twin is skipped again).
        out = json.loads(self.ok("--json", "keys", "migrate"))
        self.assertEqual(out["renamed"], 0)
        self.assertEqual(out["domain"], {"renamed": 0, "skipped": 1, "gone": 0})
        # Redis failing: exit 1.
        dead = os.path.join(self.tmp, "nothing.sock")
        p = subprocess.run([env_path("ETRNCTL"), "--redis", "unix:" + dead, "keys",
                            "migrate"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        self.assertEqual(p.returncode, 1, p.stderr)


if __name__ == "__main__":
    unittest.main()
