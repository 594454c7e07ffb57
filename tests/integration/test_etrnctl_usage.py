# SPDX-License-Identifier: MIT
"""etrnctl's documented exit statuses on the paths the other etrnctl tests do
not take (issue 18, branch coverage of admin/etrnctl.c): options given to a
command that does not take them, config files that are missing, bad or
without Redis, Redis that is not there, the daemon's socket that is absent,
too long, silent or answering an error, and input refused only once Redis
was asked (passwords, --domain limits, rows that are not there).

Each case asserts the exit status (0 done, 1 failed, 2 bad usage or input),
the one "etrnctl: ..." line that says why, and, where Redis was reachable,
that a refused command wrote nothing (DBSIZE before and after). The daemon
side is a unix socket served by this test (a fake etrnd that records the
request line it got), so the request etrnctl sends is checked too. Only a
private redis-server on a unix socket and sockets in a temp dir are used.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import unittest

from etrnd_harness import env_path
from test_redis import Redis, etrnctl

CTL_S = 60.0            # hang guard for one etrnctl run, not a bound on speed
USER_DOMAINS_MAX = 64   # ETRNCTL_USER_DOMAINS_MAX (admin/etrnctl.c)
PASSWORD_MAX = 1024     # ETRNCTL_PASSWORD_MAX


def run_ctl(*args, stdin=None, env=None):
    """etrnctl with exactly these arguments (no --redis added)."""
    p = subprocess.run([env_path("ETRNCTL")] + list(args), input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CTL_S,
                       env=dict(os.environ, **(env or {})))
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class FakeDaemon:
    """A unix socket that answers each connection with a fixed reply (or
    closes without one when reply is None), keeping the request lines."""

    def __init__(self, path, reply):
        self.path, self.reply = path, reply
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                buf = b""
                while not buf.endswith(b"\n"):
                    d = c.recv(4096)
                    if not d:
                        break
                    buf += d
                self.requests.append(buf.decode(errors="replace"))
                if self.reply is not None:
                    c.sendall(self.reply)

    def stop(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(CTL_S)


class EtrnctlUsage(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnctl_usage.")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def conf(self, text, name="etrnd.conf"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, cases, runner):
        for args, want_rc, want in cases:
            rc, out, err = runner(*args)
            self.assertEqual(rc, want_rc, "%s: rc %d, stderr %r" % (args, rc, err))
            # getopt's own complaint comes first for an unknown option.
            self.assertTrue(err.startswith("etrnctl: ") or err.startswith("usage:") or
                            "unrecognized option" in err, "%s: %r" % (args, err))
            self.assertIn(want, err, args)

    def test_options_a_command_does_not_take(self):
        # No Redis is named or reachable: each is refused before it is asked.
        nore = ["--redis", "unix:" + os.path.join(self.tmp, "none.sock")]
        self.check([
            ([], 2, "usage: etrnctl"),
            (["--no-such-option"], 2, "usage: etrnctl"),
            (["node", "forget", "n1", "--timeout", "1s"], 2,
             "--timeout also with node drain --wait"),
            (["domain", "list", "--helo", "h.test"], 2, "only go with etrn"),
            (["domain", "list", "--password-stdin"], 2,
             "--password-stdin only goes with user add, user passwd and etrn"),
            (["domain", "list", "--tls", "may"], 2,
             "--tls only goes with domain add, domain set and etrn"),
            (["domain", "list", "--wait"], 2, "--wait only goes with node drain"),
            (["domain", "list", "--force"], 2, "--force and --to only go with flush"),
            (["domain", "list", "--once"], 2, "--once only goes with top"),
            (["status", "--top", "5"], 2, "--top N (a number) only goes with status --cluster"),
            (["status", "--cluster", "--top", "5x"], 2, "--top N (a number)"),
            (["status", "--cluster", "--top", ""], 2, "--top N (a number)"),
            (["activators", "run"], 2, "activators run: which?"),
            (["activators", "no/such"], 2, "want a name (letters, digits, - and _)"),
            (["activators", "run", ""], 2, "want a name"),
            (["activators", "a" * 200], 2, "want a name"),
            (["mailq", "bad..dom"], 2, "not a domain name"),
            (["flush", "bad..dom"], 2, "flush \"bad..dom\""),
            (["flush", "#bad queue"], 2, "flush \"#bad queue\""),
            (["flush", "--force", "@a.test"], 2, "(one domain: not @ or #)"),
            (["flush", "--force", "a.test", "--to", ""], 2, "--to \"\": want HOST[:PORT]"),
            (["flush", "--force", "a.test", "--to", "h .test"], 2, "want HOST[:PORT]"),
            (["flush", "--force", "a.test", "--to", "h" * 400], 2, "want HOST[:PORT]"),
            (["etrn", "127.0.0.1:1", "a.test", "--json"], 2, "--json does not go with etrn"),
            # etrn's own checks (etrnctl_etrn.c), each with its message.
            (["etrn", "[::1", "a.test"], 2, "\"[::1\": want HOST[:PORT] or [HOST]:PORT"),
            (["etrn", "[::1]x", "a.test"], 2, "want HOST[:PORT] or [HOST]:PORT"),
            (["etrn", "[]:25", "a.test"], 2, "want HOST[:PORT] or [HOST]:PORT"),
            (["etrn", "h.test:", "a.test"], 2, "want HOST[:PORT] or [HOST]:PORT"),
            (["etrn", "h.test:25x", "a.test"], 2, "want HOST[:PORT] or [HOST]:PORT"),
            (["etrn", "h" * 300, "a.test"], 2, "want HOST[:PORT] or [HOST]:PORT"),
            (["etrn", "127.0.0.1"], 2, "want at least one DOMAIN, @DOMAIN or #QUEUE"),
            (["etrn", "127.0.0.1"] + ["d%d.test" % i for i in range(17)], 2,
             "more than 16 requests"),
            (["etrn", "127.0.0.1", ""], 2, "\"\": want DOMAIN, @DOMAIN or #QUEUE"),
            (["etrn", "127.0.0.1", "a,b.test"], 2, "want DOMAIN, @DOMAIN or #QUEUE"),
            (["etrn", "127.0.0.1", "@#"], 2, "want DOMAIN, @DOMAIN or #QUEUE"),
            (["etrn", "127.0.0.1", "a" * 300], 2, "want DOMAIN, @DOMAIN or #QUEUE"),
            (["etrn", "127.0.0.1", "a.test", "--timeout", "30d"], 2, "--timeout \"30d\": "),
            (["etrn", "127.0.0.1", "a.test", "--helo", ""], 2,
             "--helo \"\": want a host name"),
            (["etrn", "127.0.0.1", "a.test", "--helo", "a b"], 2, "want a host name"),
            (["etrn", "127.0.0.1", "a.test", "--ca-file", "/x"], 2,
             "--ca-file goes with --tls verify"),
            (["etrn", "127.0.0.1", "a.test", "--user", "u"], 2,
             "--user and --password-stdin go together"),
            (["etrn", "--atrn", "127.0.0.1", "a.test"], 2,
             "--atrn needs --user USER and --password-stdin"),
            (["etrn", "--atrn", "127.0.0.1", "#q", "--user", "u", "--password-stdin"], 2,
             "--atrn \"#q\": ATRN asks for domains only (RFC 2645)"),
        ], lambda *a: run_ctl(*(nore + list(a))))
        # --help is the one usage that succeeds: on stdout, exit 0.
        rc, out, err = run_ctl("--help")
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("Exit status: 0 done, 1 failed", out)

    def test_config_and_redis_settings(self):
        none_sock = os.path.join(self.tmp, "none.sock")
        good = self.conf("redis = unix:%s\n" % none_sock)
        badline = self.conf("redis = unix:%s\nno_such_key = 1\n" % none_sock, "bad.conf")
        noredis = self.conf("spool_dir = %s\n" % self.tmp, "noredis.conf")
        half_sentinel = self.conf("redis = unix:%s\nredis_master_name = m\n" % none_sock,
                                  "half.conf")
        self.check([
            (["-c", os.path.join(self.tmp, "missing.conf"), "domain", "list"], 2,
             "missing.conf"),
            (["-c", badline, "domain", "list"], 2, "bad.conf:2:"),
            (["-c", noredis, "domain", "list"], 2, "noredis.conf: no \"redis = \" line"),
            (["-c", half_sentinel, "domain", "list"], 2, "half.conf: "),
            (["-c", good, "--master-name", "m", "domain", "list"], 2,
             "redis_sentinels and redis_master_name go together"),
            (["--redis", "redis://h.test:0", "domain", "list"], 2, "--redis \"redis://h.test:0\""),
            (["--sentinels", "127.0.0.1:1", "domain", "list"], 2,
             "redis_sentinels and redis_master_name go together"),
            (["--sentinels", "127.0.0.1:99999", "--master-name", "m", "domain", "list"], 2,
             "--sentinels: bad value for redis_sentinels"),
            (["-c", badline, "--redis", "unix:" + none_sock, "domain", "list"], 2,
             "bad.conf:2:"),
            # The config names a Redis that is not there: failed, exit 1.
            (["-c", good, "domain", "list"], 1, none_sock),
            (["--redis", "127.0.0.1:1", "domain", "show", "a.test"], 1,
             "redis 127.0.0.1:1: Connection refused"),
            # ETRND_CONF is the default config's path.
        ], run_ctl)
        rc, _, err = run_ctl("domain", "list", env={"ETRND_CONF": badline})
        self.assertEqual(rc, 2, err)
        self.assertIn("bad.conf:2:", err)
        # Sentinels that do not answer: failed (1), not bad usage.
        rc, _, err = run_ctl("--sentinels", "127.0.0.1:1", "--master-name", "m",
                             "domain", "list")
        self.assertEqual(rc, 1, err)
        self.assertIn("etrnctl: redis sentinel m via 127.0.0.1:1: no master", err)

    def test_daemon_socket_absent_too_long_silent_or_refusing(self):
        sock = os.path.join(self.tmp, "ctl.sock")
        none_sock = os.path.join(self.tmp, "none.sock")
        redis = "redis = unix:%s\n" % none_sock
        nosock = self.conf(redis, "nosock.conf")
        absent = self.conf(redis + "control_socket = %s\n" % sock, "absent.conf")
        self.check([
            (["-c", nosock, "status"], 1, "no \"control_socket = \" in the etrnd config"),
            (["-c", nosock, "top", "--once"], 1, "no \"control_socket = \""),
            (["-c", nosock, "flush", "a.test"], 1, "no \"control_socket = \""),
            (["-c", absent, "status"], 1, "(is etrnd running with this config?)"),
            (["-c", absent, "message", "show", "0123456789ABCD"], 1, "is etrnd running"),
            # flush still asks the daemon when Redis is down.
            (["-c", absent, "flush", "a.test"], 1, "is etrnd running"),
        ], run_ctl)
        # A path longer than sun_path: the config refuses it (file:line, 2).
        deep = os.path.join(self.tmp, "d" * 100, "e" * 100, "ctl.sock")
        toolong = self.conf(redis + "control_socket = %s\n" % deep, "long.conf")
        rc, _, err = run_ctl("-c", toolong, "status")
        self.assertEqual(rc, 2, err)
        self.assertIn("long.conf:2: bad value for control_socket", err)

        conf = self.conf(redis + "control_socket = %s\n" % sock, "fake.conf")

        def ask(reply, *cmds):
            """Each etrnctl command against a fake daemon answering reply:
            [(rc, out, err)], and the request lines it got."""
            fake = FakeDaemon(sock, reply)
            try:
                got = [run_ctl("-c", conf, *c) for c in cmds]
            finally:
                fake.stop()
                os.unlink(sock)
            return got, fake.requests

        # A daemon that closes without a word: failed, and says so.
        [(rc, out, err)], reqs = ask(None, ["status"])
        self.assertEqual(rc, 1, err)
        self.assertIn("%s: no reply from etrnd" % sock, err)
        self.assertTrue(reqs[0].startswith("status\tby uid="), reqs)

        # An "error:" line anywhere in a reply fails the command (exit 1),
        # the reply going to stderr.
        [(rc, out, err)], _ = ask(b"shard 0\nerror: spool busy\n", ["status"])
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, "")
        self.assertIn("error: spool busy", err)

        # flush prints the RFC 1985 reply; a 458 is a failure, in --json too.
        [(rc, out, err)], reqs = ask(b"458 4.0.0 unable to queue messages for a.test\r\n",
                                     ["--json", "flush", "@a.test"])
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, '{"code":458,"reply":"458 4.0.0 unable to queue messages '
                              'for a.test"}\n')
        self.assertTrue(reqs[0].startswith("flush @a.test\tby uid="), reqs)

        # mailq --json: the listing's message lines as objects, others dropped.
        [(rc, out, err)], reqs = ask(b"0123456789ABCD\t2026-01-01 00:00:00\t120\t2\ta.test\t"
                                     b"<s\"q@x.test>\nshort\tline\ntotal 1\n",
                                     ["--json", "mailq"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, '[{"qid":"0123456789ABCD","arrival":"2026-01-01 00:00:00",'
                              '"size":120,"pending":2,"domain":"a.test",'
                              '"sender":"s\\"q@x.test"}]\n')
        self.assertEqual(reqs[0].split("\t")[0], "queue")

        # activators --json NAME, activators run NAME, message show --full:
        # the request lines.
        got, reqs = ask(b"ok\n", ["--json", "activators", "up1"], ["activators", "run", "up1"],
                        ["message", "show", "--full", "0123456789abcd"])
        self.assertEqual([g[0] for g in got], [0, 0, 0], got)
        self.assertEqual([r.split("\t")[0] for r in reqs],
                         ["activators json up1", "activators run up1",
                          "show-full 0123456789abcd"])

    def test_refused_after_asking_redis_writes_nothing(self):
        redis = Redis(self.tmp).start()
        self.addCleanup(redis.stop)

        def dbsize():
            return subprocess.run(["redis-cli", "-s", redis.sock, "DBSIZE"],
                                  stdout=subprocess.PIPE, timeout=CTL_S).stdout.strip()

        self.assertEqual(etrnctl(redis, "domain", "add", "a.test")[0], 0)
        self.assertEqual(etrnctl(redis, "user", "add", "u1", "--password-stdin",
                                 stdin=b"pw\n")[0], 0)
        before = dbsize()
        too_many = []
        for i in range(USER_DOMAINS_MAX + 1):
            too_many += ["--domain", "d%d.test" % i]
        cases = [
            (["user", "add", "u2", "--password-stdin"], b"\n", 2, "empty password"),
            (["user", "add", "u2", "--password-stdin"], b"", 2, "empty password"),
            (["user", "add", "u2", "--password-stdin"], b"x" * PASSWORD_MAX + b"\n", 2,
             "password longer than"),
            (["user", "passwd", "u1", "--password-stdin"], b"\r\n", 2, "empty password"),
            (["user", "add", "u2"] + too_many, b"pw\n", 2,
             "at most %d --domain in one command" % USER_DOMAINS_MAX),
            (["user", "add", "u1", "--password-stdin"], b"pw\n", 1, "user u1 already exists"),
            (["user", "passwd", "nobody", "--password-stdin"], b"pw\n", 1,
             "user nobody does not exist"),
            (["user", "passwd", "bad name"], b"pw\n", 2, "user name"),
            (["user", "del", "nobody"], None, 1, "user nobody does not exist"),
            (["domain", "set", "none.test", "--queue", "q1"], None, 1,
             "domain none.test: not provisioned"),
            (["domain", "set", "a.test", "--quota", "lots"], None, 2, "not a size"),
            (["domain", "del", "bad..name"], None, 2, "not a domain name"),
            (["domain", "show", "bad..name"], None, 2, "not a domain name"),
            (["domain", "add", "a.test", "--owner", "nobody"], None, 1,
             "--owner: user \"nobody\" does not exist"),
        ]
        for args, stdin, want_rc, want in cases:
            rc, out, err = etrnctl(redis, *args, stdin=stdin)
            self.assertEqual(rc, want_rc, "%s: rc %d, stderr %r" % (args, rc, err))
            self.assertTrue(err.startswith("etrnctl: "), "%s: %r" % (args, err))
            self.assertIn(want, err, args)
            self.assertEqual(out, "", args)
        self.assertEqual(dbsize(), before, "a refused command wrote nothing")

        # Redis stops between two commands: the next one fails (1), saying
        # where it tried.
        redis.stop()
        rc, _, err = etrnctl(redis, "domain", "show", "a.test")
        self.assertEqual(rc, 1, err)
        self.assertIn(redis.sock, err)


    def test_json_and_text_reports(self):
        """Each command's --json report (and the text forms around them)."""
        redis = Redis(self.tmp).start()
        self.addCleanup(redis.stop)

        def ok(*args, stdin=None):
            rc, out, err = etrnctl(redis, *args, stdin=stdin)
            self.assertEqual(rc, 0, "%s: %s" % (args, err))
            return out

        def cli(*args):
            subprocess.run(["redis-cli", "-s", redis.sock] + list(args), check=True,
                           stdout=subprocess.DEVNULL, timeout=CTL_S)

        self.assertEqual(ok("--json", "domain", "list"), "[]\n")
        self.assertEqual(json.loads(ok("--json", "domain", "add", "a.test", "--queue", "q1")),
                         {"domain": "a.test", "result": "added"})
        self.assertEqual(json.loads(ok("--json", "domain", "add", "a.test", "--queue", "q2")),
                         {"domain": "a.test", "result": "updated"})
        # A row without mode holds its mail: shown as such.
        self.assertEqual(json.loads(ok("--json", "domain", "show", "a.test")),
                         {"domain": "a.test", "queue": "q2", "tls": "may", "mode": "hold"})
        ok("domain", "set", "a.test", "--mode", "deliver")
        self.assertEqual(json.loads(ok("--json", "domain", "show", "a.test"))["mode"], "deliver")
        self.assertIn("mode: deliver\n", ok("domain", "show", "a.test"))
        self.assertEqual(json.loads(ok("--json", "queue", "show", "q2")), ["a.test"])
        self.assertEqual(json.loads(ok("--json", "queue", "list")),
                         [{"queue": "q2", "domains": 1}])
        ok("user", "add", "u1", "--domain", "a.test", "--password-stdin", stdin=b"pw\n")
        # A user whose hash is gone and who names a row that is gone.
        cli("HDEL", "etrnd:user:{u1}", "password")
        cli("HSET", "etrnd:user:{u1}", "domain:gone.test", "1")
        shown = json.loads(ok("--json", "user", "show", "u1"))
        self.assertEqual(shown["password"], "none")
        self.assertEqual(sorted(shown["domains"], key=lambda d: d["domain"]),
                         [{"domain": "a.test"},
                          {"domain": "gone.test", "problem": "no such domain"}])
        text = ok("user", "show", "u1")
        self.assertIn("password: none\n", text)
        self.assertIn("gone.test (no such domain)", text)
        self.assertEqual(json.loads(ok("--json", "user", "passwd", "u1", "--password-stdin",
                                       stdin=b"pw2\n")),
                         {"user": "u1", "result": "password changed"})
        self.assertEqual(json.loads(ok("--json", "user", "del", "u1")),
                         {"user": "u1", "result": "deleted"})
        self.assertEqual(json.loads(ok("--json", "domain", "del", "a.test")),
                         {"domain": "a.test", "result": "deleted"})
        self.assertEqual(ok("--json", "domain", "list"), "[]\n")
        self.assertEqual(ok("--json", "route", "list"), "[]\n")


if __name__ == "__main__":
    unittest.main()
