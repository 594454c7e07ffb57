# SPDX-License-Identifier: MIT
"""etrnctl route add|del|list, domain add|set --mode, and clock step, against
a private redis-server (test_redis.Redis: a unix socket in a temp dir,
stopped by PID) and a real etrnd (etrnd_harness.Etrnd): what lands in Redis,
what the daemon loads at start, follows by event and by resync, what it
logs for a value it ignores, and the clear message and exit status of every
bad input (2) or refused operation (1).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from etrnd_harness import Etrnd, LOG_WAIT_S as HARNESS_WAIT_S, env_path
from test_redis import Redis, etrnctl, wait_log

LOG_WAIT_S = HARNESS_WAIT_S   # a hang guard (a loaded 2-core machine)


class EtrnctlRoute(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnctl_route.")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-s", self.redis.sock] + list(args),
                             stdout=subprocess.PIPE, timeout=20).stdout.decode()
        return out.strip()

    def ok(self, *args):
        rc, out, err = etrnctl(self.redis, *args)
        self.assertEqual(rc, 0, "%s: %s" % (args, err))
        return out

    def etrnd(self, **cfg):
        d = tempfile.mkdtemp(prefix="etrnd-it-", dir=self.tmp)
        e = Etrnd(tmpdir=d, redis=self.redis.url(), **cfg)
        del e.cfg["relay_domains"]
        e.cfg["control_socket"] = os.path.join(d, "ctl.sock")
        self.addCleanup(e.cleanup)
        e.start()
        return e

    def daemon_ctl(self, e, *args):
        p = subprocess.run([env_path("ETRNCTL"), "-c", e.conf_path] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def test_route_add_list_del(self):
        self.assertEqual(self.ok("route", "add", "Sink.Example.", "[127.0.0.1]:2526"),
                         "route sink.example [127.0.0.1]:2526 added\n")
        self.assertEqual(self.cli("GET", "etrnd:route:{sink.example}"), "[127.0.0.1]:2526")
        self.assertEqual(self.ok("route", "add", "sink.example", "relay.example.net:587"),
                         "route sink.example relay.example.net:587 updated\n")
        self.ok("route", "add", "*.wild.example", "[2001:db8::1]:25")
        self.ok("route", "add", "a.example", "localhost")
        # Sorted, one "DOMAIN TAB DEST" a line; --json an array.
        self.assertEqual(self.ok("route", "list"),
                         "*.wild.example\t[2001:db8::1]:25\n"
                         "a.example\tlocalhost\n"
                         "sink.example\trelay.example.net:587\n")
        self.assertEqual(json.loads(self.ok("--json", "route", "list")), [
            {"domain": "*.wild.example", "dest": "[2001:db8::1]:25"},
            {"domain": "a.example", "dest": "localhost"},
            {"domain": "sink.example", "dest": "relay.example.net:587"}])
        # A value written by hand that etrnd would ignore is flagged.
        self.cli("SET", "etrnd:route:hand.example", "no such:port")
        self.assertIn("hand.example\tno such:port\t(ignored by etrnd: ",
                      self.ok("route", "list"))
        self.assertEqual(json.loads(self.ok("--json", "route", "del", "A.example")),
                         {"route": "a.example", "result": "deleted"})
        self.assertEqual(self.cli("EXISTS", "etrnd:route:{a.example}", "etrnd:route:a.example"), "0")
        rc, _, err = etrnctl(self.redis, "route", "del", "a.example")
        self.assertEqual(rc, 1, err)
        self.assertIn("route a.example: no such route", err)

    def test_bad_input_exits_2_with_a_clear_message(self):
        cases = [
            (["route", "add", "x.example", "bad host:25"], "destination \"bad host:25\": want [host]:port"),
            (["route", "add", "x.example", "x.example:0"], "port 1 to 65535"),
            (["route", "add", "x.example", "x.example:99999"], "port 1 to 65535"),
            (["route", "add", "x.example", "[x.example"], "want [host]:port"),
            (["route", "add", "x.example", "x.example: 25"], "want [host]:port"),
            (["route", "add", "bad..example", "h.example"], "domain \"bad..example\": not a domain name"),
            (["route", "add", "x.example"], "want 2 argument(s), got 1"),
            (["route", "del", "nodot"], "at least two labels"),
            (["route", "list", "x.example"], "want 0 argument(s), got 1"),
            (["route"], "which?"),
            (["route", "show", "x.example"], "unknown command \"route show\""),
            (["domain", "add", "m.example", "--mode", "later"], "--mode: \"later\": want hold or deliver"),
            (["domain", "add", "m.example", "--mode", "Deliver"], "want hold or deliver"),
            (["domain", "set", "m.example", "--mode", "send"], "want hold or deliver"),
            (["route", "list", "--mode", "deliver"], "only go with domain add and domain set"),
            (["clock", "step", "0"], "clock step \"0\": want whole seconds"),
            (["clock", "step", "1.5"], "want whole seconds"),
            (["clock", "step", "99999999999"], "want whole seconds"),
            (["clock"], "which?"),
        ]
        for args, want in cases:
            rc, out, err = etrnctl(self.redis, *args)
            self.assertEqual(rc, 2, "%s: rc %d, stderr %s" % (args, rc, err))
            self.assertTrue(err.startswith("etrnctl: "), err)
            self.assertIn(want, err, args)
            self.assertEqual(out, "", args)
        self.assertEqual(self.cli("DBSIZE"), "0", "nothing written")
        # Refused, not bad input: exit 1.
        rc, _, err = etrnctl(self.redis, "domain", "set", "none.example", "--mode", "deliver")
        self.assertEqual(rc, 1, err)
        self.assertIn("domain none.example: not provisioned", err)
        self.assertEqual(self.cli("DBSIZE"), "0")

    def test_domain_mode_add_set_show_export(self):
        self.assertEqual(self.ok("domain", "add", "d.example", "--mode", "deliver"),
                         "domain d.example added\n")
        self.assertEqual(self.cli("HGET", "etrnd:domain:{d.example}", "mode"), "deliver")
        self.assertIn("mode: deliver\n", self.ok("domain", "show", "d.example"))
        # No --mode: no field, and show says what that means.
        self.ok("domain", "add", "h.example", "--queue", "q1", "--tls", "must")
        self.assertEqual(self.cli("HEXISTS", "etrnd:domain:{h.example}", "mode"), "0")
        self.assertEqual(json.loads(self.ok("--json", "domain", "show", "h.example")),
                         {"domain": "h.example", "queue": "q1", "tls": "must", "mode": "hold"})
        # set changes only what it is given; the queue set follows.
        self.assertEqual(self.ok("domain", "set", "h.example", "--mode", "deliver"),
                         "domain h.example updated\n")
        self.assertEqual(json.loads(self.ok("--json", "domain", "show", "h.example")),
                         {"domain": "h.example", "queue": "q1", "tls": "must", "mode": "deliver"})
        self.ok("domain", "set", "h.example", "--queue", "", "--mode", "hold")
        self.assertEqual(json.loads(self.ok("--json", "domain", "show", "h.example")),
                         {"domain": "h.example", "tls": "must", "mode": "hold"})
        self.assertEqual(self.cli("SCARD", "etrnd:queue:{q1}"), "0")
        # export has a mode column that import reads back.
        out = self.ok("export")
        self.assertEqual(out.splitlines()[0],
                         "domain,queue,dest,etrn_from,owner,max_hold,quota_bytes,tls,mode,rcpt_check")
        self.assertIn("d.example,,,,,,,may,deliver,", out.splitlines())
        path = os.path.join(self.tmp, "modes.csv")
        with open(path, "w") as f:
            f.write("domain,mode\ni1.example,deliver\ni2.example,\ni3.example,sometimes\n")
        rc, out, err = etrnctl(self.redis, "import", path)
        self.assertEqual(rc, 1, err)
        self.assertIn("2 domain(s) imported, 1 bad row(s) skipped", out)
        self.assertIn(":4: mode: \"sometimes\": want hold or deliver; skipped", err)
        self.assertEqual(self.cli("HGET", "etrnd:domain:{i1.example}", "mode"), "deliver")
        self.assertEqual(self.cli("HEXISTS", "etrnd:domain:{i2.example}", "mode"), "0")

    def test_daemon_loads_follows_and_ignores_bad_routes(self):
        self.ok("route", "add", "first.example", "[127.0.0.1]:2526")
        self.cli("SET", "etrnd:route:bad.example", "bad host")
        self.cli("HSET", "etrnd:route:hash.example", "a", "b")
        self.cli("HSET", "etrnd:domain:m.example", "mode", "soon", "queue", "q1")
        e = self.etrnd(log_level="debug", redis_resync="1s")
        wait_log(e, r"connected, 1 domain\(s\) loaded in \d+ ms, 1 route\(s\)", LOG_WAIT_S)
        log = e.stderr_text()
        self.assertRegex(log, r"redis: etrnd:route:bad\.example: \"bad host\": want \[host\]:port"
                              r".*; route ignored")
        self.assertRegex(log, r"redis: etrnd:route:hash\.example: not a string.*; route ignored")
        self.assertRegex(log, r"redis: etrnd:domain:m\.example: mode: \"soon\": want hold or "
                              r"deliver \(those fields left at their defaults\)")
        # An event: the daemon reads the route again at once.
        self.ok("route", "add", "second.example", "relay.example.net")
        wait_log(e, r"0 domain and 1 route change\(s\) applied, 1 domain\(s\), 2 route\(s\)",
                 LOG_WAIT_S)
        self.ok("route", "del", "first.example")
        wait_log(e, r"0 domain and 1 route change\(s\) applied, 1 domain\(s\), 1 route\(s\)",
                 LOG_WAIT_S)
        # No event (written by hand): the resync finds it.
        self.cli("SET", "etrnd:route:third.example", "[192.0.2.1]:25")
        wait_log(e, r"redis: resync, 1 domain\(s\), 2 route\(s\)", LOG_WAIT_S)
        # A bad value by event: logged, and the old good one dropped.
        # (etrnctl wrote the tagged key: a hand edit of it)
        self.cli("SET", "etrnd:route:{second.example}", "x:0")
        self.cli("PUBLISH", "etrnd:events", "route second.example")
        wait_log(e, r"redis: etrnd:route:\{second\.example\}: \"x:0\": .*; route ignored",
                 LOG_WAIT_S)
        wait_log(e, r"0 domain and 1 route change\(s\) applied, 1 domain\(s\), 1 route\(s\)",
                 LOG_WAIT_S)
        self.assertFalse(re.search(r"(ERROR|runtime error|AddressSanitizer)", e.stderr_text()))
        e.stop()

    def test_clock_step_only_with_test_clock(self):
        off = self.etrnd()
        rc, out, err = self.daemon_ctl(off, "clock", "step", "60")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("error: test_clock is off", err)
        self.assertNotIn("test clock: stepped", off.stderr_text())
        off.stop()
        on = self.etrnd(test_clock="yes")
        rc, out, err = self.daemon_ctl(on, "clock", "step", "60")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "clock stepped forward 60 s (60 s in all)\n")
        rc, out, err = self.daemon_ctl(on, "clock", "step", "3600")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "clock stepped forward 3600 s (3660 s in all)\n")
        wait_log(on, r"test clock: stepped forward 3600 s by uid=\d+\(.*\), 3660 s in all",
                 LOG_WAIT_S)
        # The daemon checks the step itself too (a raw socket request).
        from etrnd_harness import control_request
        sock = on.cfg["control_socket"]
        self.assertIn("error: clock step \"0\": want whole seconds",
                      control_request(sock, "clock step 0"))
        self.assertIn("error: clock step \"12x\"", control_request(sock, "clock step 12x"))
        self.assertIn("error: clock takes \"step SECONDS\"", control_request(sock, "clock go 5"))
        self.assertIn("error: unknown request", control_request(sock, "clock step"))
        rc, out, err = self.daemon_ctl(on, "clock", "step", "1")
        self.assertEqual(out, "clock stepped forward 1 s (3661 s in all)\n")
        on.stop()


if __name__ == "__main__":
    unittest.main()
