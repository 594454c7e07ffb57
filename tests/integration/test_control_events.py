# SPDX-License-Identifier: MIT
"""The control thread's events on etrnd:events (admin/control.c) from a real
redis-server, on the paths test_redis does not take (issue 18, branch
coverage): "full" asks for a reload at once (a row written without an event
is served although the periodic resync is a day away); an event naming a
domain longer than any domain is dropped with a warning and the events after
it still apply; a burst of more events than one table build takes
(CONTROL_BATCH_MAX, 20000) is applied whole, the first and the last domain
of it both served (how many builds it takes depends on how fast the events
arrive; none may be lost either way); a relay_domains domain whose row is
deleted keeps being served; a row key of the wrong type (WRONGTYPE) and
event names that are no domain are logged and change nothing. Private
redis-server and etrnd, stopped by PID.
"""

import subprocess
import unittest

import test_redis
from test_redis import FOLLOW_WAIT_S, rcpt_code, wait_code, wait_log

BATCH_MAX = 20000     # CONTROL_BATCH_MAX (admin/control.c)
NAME_LONG = 300       # over DOMTAB_NAME_MAX + 1


def resp(*args):
    """One command in the Redis protocol (for redis-cli --pipe)."""
    out = "*%d\r\n" % len(args)
    for a in args:
        out += "$%d\r\n%s\r\n" % (len(a.encode()), a)
    return out


class ControlEvents(unittest.TestCase):
    # A private redis-server and etrnd as test_redis's tests have them
    # (its tests themselves are not inherited).
    setUp = test_redis.RedisTest.setUp
    etrnd = test_redis.RedisTest.etrnd

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-s", self.redis.sock] + list(args),
                              stdout=subprocess.PIPE, check=True,
                              timeout=FOLLOW_WAIT_S).stdout.decode().strip()

    def test_full_event_reloads_at_once(self):
        e = self.etrnd(redis_resync="1d")
        wait_log(e, r"connected, 0 domain")
        # Written behind etrnctl's back: no event names it.
        self.cli("HSET", "etrnd:domain:{silent.test}", "tls", "may")
        self.cli("PUBLISH", "etrnd:events", "full")
        wait_code(e, "silent.test", 250, FOLLOW_WAIT_S)

    def test_overlong_event_dropped_later_ones_applied(self):
        e = self.etrnd(redis_resync="1d")
        wait_log(e, r"connected, 0 domain")
        self.cli("PUBLISH", "etrnd:events", "domain " + "a" * NAME_LONG)
        wait_log(e, r"redis: event \"domain a{20}.*\" dropped \(too long or out of "
                    r"memory\); the next resync covers it")
        self.cli("HSET", "etrnd:domain:{after.test}", "tls", "may")
        self.cli("PUBLISH", "etrnd:events", "domain after.test")
        wait_code(e, "after.test", 250, FOLLOW_WAIT_S)
        self.assertEqual(rcpt_code(e, "other.test"), 550)

    def test_burst_over_one_batch_is_applied_whole(self):
        e = self.etrnd(redis_resync="1d")
        wait_log(e, r"connected, 0 domain")
        n = BATCH_MAX + 50
        self.cli("HSET", "etrnd:domain:{d0.test}", "tls", "may")
        self.cli("HSET", "etrnd:domain:{d%d.test}" % (n - 1), "tls", "may")
        cmds = "".join(resp("PUBLISH", "etrnd:events", "domain d%d.test" % i)
                       for i in range(n))
        p = subprocess.run(["redis-cli", "-s", self.redis.sock, "--pipe"],
                           input=cmds.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=FOLLOW_WAIT_S * 4)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertIn("replies: %d" % n, p.stdout.decode())
        wait_code(e, "d%d.test" % (n - 1), 250, FOLLOW_WAIT_S * 4)
        self.assertEqual(rcpt_code(e, "d0.test"), 250)
        self.assertEqual(rcpt_code(e, "d1.test"), 550, "named by an event, no row")


    def test_static_domain_keeps_its_default_row_when_redis_drops_it(self):
        e = self.etrnd(redis_resync="1d", relay_domains="static.test")
        wait_log(e, r"connected, 1 domain")
        self.cli("HSET", "etrnd:domain:{static.test}", "tls", "must")
        self.cli("PUBLISH", "etrnd:events", "domain static.test")
        self.cli("HSET", "etrnd:domain:{mark1.test}", "tls", "may")
        self.cli("PUBLISH", "etrnd:events", "domain mark1.test")
        wait_code(e, "mark1.test", 250, FOLLOW_WAIT_S)
        self.cli("DEL", "etrnd:domain:{static.test}")
        self.cli("PUBLISH", "etrnd:events", "domain static.test")
        # Events apply in order: once the next one is seen, the delete was.
        self.cli("HSET", "etrnd:domain:{mark2.test}", "tls", "may")
        self.cli("PUBLISH", "etrnd:events", "domain mark2.test")
        wait_code(e, "mark2.test", 250, FOLLOW_WAIT_S)
        self.assertEqual(rcpt_code(e, "static.test"), 250, "relay_domains keeps it")

    def test_keys_that_are_not_rows_are_logged_and_change_nothing(self):
        e = self.etrnd(redis_resync="1d")
        wait_log(e, r"connected, 0 domain")
        self.cli("HSET", "etrnd:domain:{w.test}", "tls", "may")
        self.cli("PUBLISH", "etrnd:events", "domain w.test")
        wait_code(e, "w.test", 250, FOLLOW_WAIT_S)
        # The row's key turns into a string: HGETALL is refused, the row
        # stays as it was.
        self.cli("DEL", "etrnd:domain:{w.test}")
        self.cli("SET", "etrnd:domain:{w.test}", "not a hash")
        self.cli("PUBLISH", "etrnd:events", "domain w.test")
        wait_log(e, r"redis: HGETALL etrnd:domain:\{w\.test\}: WRONGTYPE .*; the row "
                    r"stays as it was")
        self.assertEqual(rcpt_code(e, "w.test"), 250)
        # Names that are no domain, in either kind of event: ignored.
        self.cli("PUBLISH", "etrnd:events", "domain bad..name")
        wait_log(e, r"redis: key etrnd:domain:.*bad\.\.name.*: .*; ignored")
        self.cli("PUBLISH", "etrnd:events", "route bad..route")
        wait_log(e, r"redis: key etrnd:route:.*bad\.\.route.*: .*; ignored")
        self.assertEqual(rcpt_code(e, "w.test"), 250)


if __name__ == "__main__":
    unittest.main()
