# SPDX-License-Identifier: MIT
"""The milter client (issue 19 point 2) against a real milter: pymilter's
libmilter (milter_filter.py), started on a free loopback port and
stopped by PID. Each verdict shows in the SMTP reply and in the spool:
accept, reject with the filter's text (at RCPT: that recipient only),
tempfail, discard (250, nothing stored), header added and changed in the
stored message, quarantine (stored held: MilterHoldTest drains, restarts
and releases it); the filter killed mid-message,
too slow, or not running gets milter_default_action; bad milter keys are
refused with file:line.
"""

import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import unittest

from etrnd_harness import (Etrnd, HOST, client_body, free_port, msg_records,
                           remove_tmp, stored_body, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
SPOOL_MSG_HELD = 0x4  # store/spool_rec.h
QUEUED_RE = re.compile(rb"queued as ([0-9A-F]{14})")
# pymilter is Debian's python3-milter: /usr/bin/python3, not a pyenv one.
MILTER_PYTHON = "/usr/bin/python3"


def have_pymilter():
    return subprocess.run([MILTER_PYTHON, "-c", "import Milter"],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


class Filter:
    """The scripted pymilter filter on a free port."""

    def __init__(self):
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [MILTER_PYTHON, os.path.join(HERE, "milter_filter.py"), str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.proc.stdout.readline()  # "ready": runmilter comes next

        def listening():
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return True
            except OSError:
                return self.proc.poll() is not None
        wait_for("test milter listening", listening)
        if self.proc.poll() is not None:
            raise AssertionError("test milter exited: %r" % self.proc.stderr.read())
        return self

    def exited(self):
        return self.proc is not None and self.proc.poll() is not None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(timeout=10)
            self.proc.stdout.close()
            self.proc.stderr.close()
        self.proc = None

    def spec(self):
        return "inet:%s:%d" % (HOST, self.port)


def send(e, subject, rcpts=("u@demo.test",), body=b"hello\r\n"):
    """[(rcpt, code)], (data code, text) of one message."""
    out = []
    with smtplib.SMTP(HOST, e.port, timeout=30) as s:
        s.ehlo("client.test")
        code, _ = s.mail("sender@example.org")
        if code != 250:
            return [], (code, b"MAIL")
        for r in rcpts:
            out.append((r, s.rcpt(r)[0]))
        if not any(c == 250 for _, c in out):
            return out, (None, b"")
        msg = b"Subject: " + subject.encode() + b"\r\nFrom: a@example.org\r\n\r\n" + body
        try:
            code, text = s.data(msg)
        except smtplib.SMTPDataError as err:
            code, text = err.smtp_code, err.smtp_error
        return out, (code, text)


def stored(e, marker):
    """The spool records whose body holds marker."""
    return [r for r in msg_records(e.spool_dir) if marker in stored_body(r)]


@unittest.skipUnless(have_pymilter(), "python3-milter (pymilter) not installed for /usr/bin/python3")
class MilterTest(unittest.TestCase):
    def setUp(self):
        self.f = Filter().start()
        self.addCleanup(self.f.stop)

    def etrnd(self, **cfg):
        cfg.setdefault("milter", self.f.spec())
        cfg.setdefault("milter_command_timeout", "10s")
        cfg.setdefault("milter_content_timeout", "10s")
        return Etrnd.started(self, **cfg)

    def test_verdicts(self):
        e = self.etrnd()
        # accept
        rc, (code, text) = send(e, "plain one", body=b"m-accept\r\n")
        self.assertEqual(rc, [("u@demo.test", 250)])
        self.assertEqual(code, 250, text)
        self.assertEqual(len(stored(e, b"m-accept")), 1)
        # RCPT reject: that recipient only, with the filter's text
        with smtplib.SMTP(HOST, e.port, timeout=30) as s:
            s.ehlo("client.test")
            s.mail("sender@example.org")
            code, text = s.rcpt("reject@demo.test")
            self.assertEqual((code, text), (550, b"5.7.1 recipient refused by test milter"))
            code, text = s.rcpt("tempfail@demo.test")
            self.assertEqual(code, 451, text)
            self.assertTrue(text.startswith(b"4.7.1"), text)
            self.assertEqual(s.rcpt("ok@demo.test")[0], 250)
            code, text = s.data(b"Subject: two\r\n\r\nm-rcpt\r\n")
            self.assertEqual(code, 250, text)
        recs = stored(e, b"m-rcpt")
        self.assertEqual(len(recs), 1)
        self.assertEqual(recs[0]["rcpts"] if "rcpts" in recs[0] else None, recs[0].get("rcpts"))
        # content reject with the filter's code and text; nothing stored
        _, (code, text) = send(e, "please reject", body=b"m-reject\r\n")
        self.assertEqual((code, text), (554, b"5.7.1 content rejected by test milter"))
        self.assertEqual(stored(e, b"m-reject"), [])
        # tempfail at end of data
        _, (code, text) = send(e, "tempfail me", body=b"m-tempfail\r\n")
        self.assertEqual(code, 451, text)
        self.assertEqual(stored(e, b"m-tempfail"), [])
        # discard: 250 to the client, never stored, counted
        _, (code, text) = send(e, "discard me", body=b"m-discard\r\n")
        self.assertEqual(code, 250, text)
        self.assertEqual(stored(e, b"m-discard"), [])
        wait_for("discard logged", lambda: "discarded, not stored" in e.stderr_text())
        # add header and change header, in the stored message
        _, (code, text) = send(e, "addheader chgheader", body=b"m-edit\r\n")
        self.assertEqual(code, 250, text)
        recs = stored(e, b"m-edit")
        self.assertEqual(len(recs), 1)
        body = client_body(recs[0])
        self.assertIn(b"X-Test-Milter: added\r\n", body)
        self.assertIn(b"Subject: changed by milter\r\n", body)
        self.assertNotIn(b"addheader chgheader", body)
        # quarantine: 250, stored with the held mark (MilterHoldTest: the
        # drains, restart and release)
        _, (code, text) = send(e, "hold me", body=b"m-hold\r\n")
        self.assertEqual(code, 250, text)
        recs = stored(e, b"m-hold")
        self.assertEqual(len(recs), 1)
        self.assertTrue(recs[0]["flags"] & SPOOL_MSG_HELD, recs[0])
        self.assertFalse(stored(e, b"m-accept")[0]["flags"] & SPOOL_MSG_HELD)
        # the headers stay ahead of the body
        self.assertTrue(body.endswith(b"\r\n\r\nm-edit\r\n"), body)

    def test_what_the_filter_sees_and_more_edits(self):
        e = self.etrnd()
        # echo: the filter saw the headers (ours first) and the body with
        # the dot-stuffing undone
        body = b"line one\r\n.dot line\r\nend\r\n"
        _, (code, text) = send(e, "echo it", body=body)
        self.assertEqual(code, 250, text)
        recs = stored(e, b"X-Milter-Seen-Body")
        self.assertEqual(len(recs), 1)
        got = client_body(recs[0])
        self.assertIn(b"X-Milter-Seen-Body: " + body.hex().encode() + b"\r\n", got)
        seen = re.search(rb"X-Milter-Seen-Headers: ([0-9a-f]+)\r\n", got).group(1)
        seen = bytes.fromhex(seen.decode())
        self.assertTrue(seen.startswith(b"Received:from client.test"), seen)
        self.assertIn(b"Subject:echo it\n", seen)
        # a multi-line reply from the filter, as it gave it
        _, (code, text) = send(e, "multiline")
        self.assertEqual(code, 550, text)
        self.assertIn(b"rejected by test milter", text)
        self.assertIn(b"second line", text)
        # delete a header, insert one before every other (ours included)
        with smtplib.SMTP(HOST, e.port, timeout=30) as c:
            c.ehlo("client.test")
            c.mail("sender@example.org")
            c.rcpt("u@demo.test")
            code, text = c.data(b"Subject: edits\r\nX-Milter-Delete: gone\r\n\r\nm-edits\r\n")
            self.assertEqual(code, 250, text)
        recs = stored(e, b"m-edits")
        self.assertEqual(len(recs), 1)
        raw = stored_body(recs[0])
        self.assertTrue(raw.startswith(b"X-Milter-First: yes\r\nReceived: "), raw[:80])
        self.assertNotIn(b"X-Milter-Delete", raw)

    def test_filter_killed_mid_message_tempfail(self):
        e = self.etrnd()  # milter_default_action = tempfail (Postfix's default)
        _, (code, text) = send(e, "die now", body=b"m-die\r\n")
        self.assertEqual(code, 451, text)
        wait_for("test milter gone", self.f.exited)
        self.assertEqual(stored(e, b"m-die"), [])
        wait_for("failure logged", lambda: "milter_default_action = tempfail" in e.stderr_text())
        # the filter is gone: a new session gets the default at once (421)
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            smtplib.SMTP(HOST, e.port, timeout=30)
        self.assertEqual(cm.exception.smtp_code, 421)

    def test_filter_killed_mid_message_accept(self):
        e = self.etrnd(milter_default_action="accept")
        _, (code, text) = send(e, "die now", body=b"m-die-accept\r\n")
        self.assertEqual(code, 250, text)
        self.assertEqual(len(stored(e, b"m-die-accept")), 1)
        # and without any filter at all
        _, (code, text) = send(e, "plain", body=b"m-after\r\n")
        self.assertEqual(code, 250, text)

    def test_filter_too_slow_reject(self):
        e = self.etrnd(milter_default_action="reject", milter_content_timeout="1s")
        _, (code, text) = send(e, "slow please", body=b"m-slow\r\n")
        self.assertEqual(code, 550, text)
        self.assertEqual(stored(e, b"m-slow"), [])
        wait_for("timeout logged", lambda: "milter_content_timeout" in e.stderr_text())

    def test_filter_not_running(self):
        self.f.stop()
        e = self.etrnd(milter="inet:%s:%d" % (HOST, self.f.port), milter_default_action="accept")
        _, (code, text) = send(e, "plain", body=b"m-nofilter\r\n")
        self.assertEqual(code, 250, text)
        self.assertEqual(len(stored(e, b"m-nofilter")), 1)
        wait_for("connect failure logged", lambda: "cannot connect" in e.stderr_text())


@unittest.skipUnless(have_pymilter(), "python3-milter (pymilter) not installed for /usr/bin/python3")
class MilterHoldTest(unittest.TestCase):
    """Quarantine = hold (Postfix's hold queue): the filter's hold verdict
    gets 250 and the message is stored held; mailq marks it '!'; ETRN
    delivers the domain's other mail but not it, also after kill -9;
    etrnctl message release lets the next ETRN deliver it."""

    def setUp(self):
        from customer_server import CustomerServer
        from test_redis import Redis, etrnctl as redis_ctl
        self.f = Filter().start()
        self.addCleanup(self.f.stop)
        tmp = tempfile.mkdtemp(prefix="etrnd-hold-")
        self.addCleanup(remove_tmp, tmp)  # runs last: after Redis stops
        self.redis = Redis(tmp).start()
        self.addCleanup(self.redis.stop)
        cport = free_port()
        rc, _, err = redis_ctl(self.redis, "domain", "add", "hold.test", "--dest",
                               "%s:%d" % (HOST, cport), "--etrn-from", "127.0.0.0/8")
        self.assertEqual(rc, 0, err)
        self.c = CustomerServer(cport).start()
        self.addCleanup(self.c.stop)
        self.e = Etrnd(redis=self.redis.url(), milter=self.f.spec(),
                       milter_command_timeout="10s", milter_content_timeout="10s",
                       control_socket="auto", etrn_rate_limit="1000")
        self.addCleanup(self.e.cleanup)
        self.e.start()

    def mail(self, subject, mid):
        """One message to u@hold.test: its queue id (after a 250)."""
        with smtplib.SMTP(HOST, self.e.port, timeout=30) as s:
            s.ehlo("client.test")
            self.assertEqual(s.mail("sender@example.org")[0], 250)
            self.assertEqual(s.rcpt("u@hold.test")[0], 250)
            code, text = s.data(("Subject: %s\r\nMessage-ID: <%s>\r\n\r\nbody\r\n"
                                 % (subject, mid)).encode())
        self.assertEqual(code, 250, text)
        return QUEUED_RE.search(text).group(1).decode()

    def mailq(self):
        """{qid: held} of what etrnctl mailq lists."""
        rc, out, err = self.e.etrnctl("mailq")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^total \d+$")
        got = {}
        for line in out.splitlines():
            m = re.match(r"^([0-9A-F]{14})(!?)\t", line)
            if m:
                got[m.group(1)] = m.group(2) == "!"
        return got

    def etrn_and_drain(self, want):
        """ETRN hold.test; wait until the customer has want messages and
        every drain started has logged its end."""
        with smtplib.SMTP(HOST, self.e.port, timeout=30) as s:
            s.ehlo("customer.test")
            code, text = s.docmd("ETRN", "hold.test")
        self.assertIn(code, (250, 251, 252, 253), text)
        self.assertTrue(self.c.wait_count(want, 60), "customer got %d" % self.c.recorder.count())

        def drained():
            log = self.e.stderr_text()
            started = len(re.findall(r"drain \S+ \(shard \d+\): \d+ message\(s\) to", log))
            return started > 0 and started == len(re.findall(
                r"drain \S+ \(shard \d+\): \d+ sent,", log))
        wait_for("drains ended", drained)

    def test_hold_release_across_restart(self):
        held = self.mail("please hold", "held@x")
        plain = self.mail("plain", "plain-1@x")
        self.assertEqual(self.mailq(), {held: True, plain: False})
        rc, out, err = self.e.etrnctl("--json", "mailq")
        self.assertEqual(rc, 0, err)
        self.assertEqual({m["qid"]: m.get("held", False) for m in json.loads(out)},
                         {held: True, plain: False})
        self.assertTrue(self.e.record(held)["flags"] & SPOOL_MSG_HELD)
        self.assertFalse(self.e.record(plain)["flags"] & SPOOL_MSG_HELD)

        # ETRN: the domain's other mail goes, the held message stays.
        self.etrn_and_drain(1)
        self.assertEqual(self.c.recorder.message_ids(), ["<plain-1@x>"])
        self.assertEqual(self.mailq(), {held: True})

        # kill -9 and start again on the same spool: still held.
        self.e.kill9()
        self.e.start()
        self.assertEqual(self.mailq(), {held: True})
        plain2 = self.mail("plain", "plain-2@x")
        self.etrn_and_drain(2)
        self.assertEqual(self.c.recorder.message_ids(), ["<plain-1@x>", "<plain-2@x>"])
        self.assertNotIn(plain2, self.mailq())

        # Release (postsuper -H): durable before the answer, so it
        # survives kill -9 too; a second release is refused.
        rc, out, err = self.e.etrnctl("message", "release", held)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("ok: %s released" % held, out)
        wait_for("release logged",
                 lambda: "%s: released from quarantine by" % held in self.e.stderr_text())
        rc, out, err = self.e.etrnctl("message", "release", held)
        self.assertNotEqual(rc, 0)
        self.assertIn("not quarantined", out + err)
        self.assertEqual(self.mailq(), {held: False})
        self.e.kill9()
        self.e.start()
        self.assertEqual(self.mailq(), {held: False})
        self.etrn_and_drain(3)
        self.assertEqual(self.c.recorder.message_ids()[2:], ["<held@x>"])
        self.assertEqual(self.mailq(), {})


class MilterConfigTest(unittest.TestCase):
    def check_bad(self, key, value, want):
        e = Etrnd(**{key: value})
        self.addCleanup(e.cleanup)
        e.write_config_only = True
        e.port = free_port()
        e.write_config()
        p = subprocess.run([e.bin, "-c", e.conf_path, "-t"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        err = p.stderr.decode()
        line = [n for n, l in enumerate(open(e.conf_path), 1) if l.startswith(key + " ")][0]
        self.assertIn("%s:%d: " % (e.conf_path, line), err)
        self.assertIn(want, err)

    def test_bad_values(self):
        self.check_bad("milter", "tcp:1.2.3.4:5", "want inet:host:port")
        self.check_bad("milter", "inet:localhost:11332", "want inet:host:port")
        self.check_bad("milter", "inet:127.0.0.1:0", "want inet:host:port")
        self.check_bad("milter", "unix:relative", "want inet:host:port")
        self.check_bad("milter_default_action", "maybe", "want accept, tempfail or reject")
        self.check_bad("milter_command_timeout", "forever", "milter_command_timeout")


if __name__ == "__main__":
    unittest.main()
