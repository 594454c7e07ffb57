# SPDX-License-Identifier: MIT
"""etrnctl user add NAME --domain D [...] and user show NAME, against a
private redis-server (test_redis.Redis: a unix socket in a temp dir, stopped
by PID): ownership written on both sides (the domain row's owner, the user's
domain:D), a domain that does not exist refused before anything is written,
ownership moved from a previous owner, user show never printing the hash.
"""

import json
import shutil
import subprocess
import tempfile
import unittest

from test_redis import Redis, etrnctl


class EtrnctlUser(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnctl_user.")
        self.redis = Redis(self.tmp).start()
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.addCleanup(self.redis.stop)

    def hgetall(self, key):
        out = subprocess.run(["redis-cli", "-s", self.redis.sock, "--no-raw", "HGETALL", key],
                             stdout=subprocess.PIPE, timeout=20).stdout.decode().split("\n")
        vals = [line.split(") ", 1)[1].strip('"') for line in out if ") " in line]
        return dict(zip(vals[0::2], vals[1::2]))

    def test_add_with_domains_show_and_refusals(self):
        for d in ("a.test", "b.test", "c.test"):
            rc, _, err = etrnctl(self.redis, "domain", "add", d)
            self.assertEqual(rc, 0, err)
        # Usage and input errors: exit 2, nothing written.
        for args, want in [
            (["user", "add", "u1", "--domain", "bad..name"], "--domain"),
            (["user", "passwd", "u1", "--domain", "a.test"], "only goes with user add"),
            (["domain", "add", "x.test", "--domain", "a.test"], "only goes with user add"),
            (["user", "show", "bad name"], "user name"),
        ]:
            rc, _, err = etrnctl(self.redis, *args, stdin=b"pw\n")
            self.assertEqual(rc, 2, "%s: %d %s" % (args, rc, err))
            self.assertIn(want, err, args)
        # A domain that does not exist: exit 1, the user is not made.
        rc, _, err = etrnctl(self.redis, "user", "add", "u1", "--domain", "a.test",
                             "--domain", "nope.test", "--password-stdin", stdin=b"pw\n")
        self.assertEqual(rc, 1, err)
        self.assertIn("nope.test: no such domain", err)
        self.assertEqual(self.hgetall("etrnd:user:{u1}"), {})
        self.assertNotIn("owner", self.hgetall("etrnd:domain:{a.test}"))

        rc, out, err = etrnctl(self.redis, "--json", "user", "add", "u1", "--domain", "A.test.",
                               "--domain", "b.test", "--password-stdin", stdin=b"pw1\n")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"user": "u1", "result": "added",
                                           "domains": ["a.test", "b.test"]})
        u1 = self.hgetall("etrnd:user:{u1}")
        self.assertRegex(u1["password"], r"^\$(y|6)\$")
        self.assertEqual(u1.get("domain:a.test"), "1")
        self.assertEqual(u1.get("domain:b.test"), "1")
        self.assertEqual(self.hgetall("etrnd:domain:{a.test}")["owner"], "u1")
        # Taking a domain from its owner moves it on both sides.
        rc, out, err = etrnctl(self.redis, "user", "add", "u2", "--domain", "b.test",
                               "--domain", "c.test", "--password-stdin", stdin=b"pw2\n")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "user u2 added, owns b.test c.test\n")
        self.assertNotIn("domain:b.test", self.hgetall("etrnd:user:{u1}"))
        self.assertEqual(self.hgetall("etrnd:domain:{b.test}")["owner"], "u2")
        # An existing user is not added again (its domains unchanged).
        rc, _, err = etrnctl(self.redis, "user", "add", "u2", "--domain", "a.test",
                             "--password-stdin", stdin=b"x\n")
        self.assertEqual(rc, 1, err)
        self.assertEqual(self.hgetall("etrnd:domain:{a.test}")["owner"], "u1")

        rc, out, err = etrnctl(self.redis, "--json", "user", "show", "u1")
        self.assertEqual(rc, 0, err)
        shown = json.loads(out)
        self.assertEqual(shown["user"], "u1")
        self.assertIn(shown["password"], ("yescrypt", "sha-512"))
        self.assertEqual(shown["domains"], [{"domain": "a.test"}])
        self.assertNotIn("$", out)
        # A row that names someone else, and an unusable hash, are shown as such.
        subprocess.run(["redis-cli", "-s", self.redis.sock, "HSET", "etrnd:user:{u1}",
                        "domain:c.test", "1", "password", "$1$abc$def"],
                       stdout=subprocess.DEVNULL, timeout=20, check=True)
        rc, out, err = etrnctl(self.redis, "user", "show", "u1")
        self.assertEqual(rc, 0, err)
        self.assertIn("password: unusable", out)
        self.assertIn("c.test (row names another owner)", out)
        self.assertNotIn("$1$", out)
        rc, _, err = etrnctl(self.redis, "user", "show", "nobody")
        self.assertEqual(rc, 1)
        self.assertIn("does not exist", err)

        # user del takes the user's name off the rows that still name it
        # (a.test), not off one that names another (c.test): a user added
        # later under the same name inherits nothing.
        rc, out, err = etrnctl(self.redis, "user", "del", "u1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.hgetall("etrnd:user:{u1}"), {})
        self.assertNotIn("owner", self.hgetall("etrnd:domain:{a.test}"))
        self.assertNotEqual(self.hgetall("etrnd:domain:{a.test}"), {}, "the row itself stays")
        self.assertEqual(self.hgetall("etrnd:domain:{c.test}")["owner"], "u2")
        rc, _, err = etrnctl(self.redis, "user", "add", "u1", "--password-stdin", stdin=b"x\n")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("owner", self.hgetall("etrnd:domain:{a.test}"))
        self.assertEqual(etrnctl(self.redis, "user", "del", "nobody")[0], 1)


if __name__ == "__main__":
    unittest.main()
