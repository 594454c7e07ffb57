# SPDX-License-Identifier: MIT
"""Outbound delivery end to end (issue 13): what etrnd does not hold goes
out through its scheduler, to real servers we did not write: Postfix's
smtp-sink (etrnd_harness.SmtpSink, dumping what it takes, or answering 4xx
/ 5xx) and aiosmtpd with a script of RCPT replies (scripted_server.py).
Domains, modes and routes (etrnd:route:<domain>) are provisioned with
etrnctl in a private redis-server; routes point at loopback ports, so no
DNS is involved. Time moves by the test clock (test_clock = yes, `etrnctl
clock step`): back-off and expiry are driven by clock steps, never by
sleeping; a test only sleeps to poll. A check that something must NOT
happen (a retry before its time, a second DSN) first waits for the proof
that the daemon looked: every engine thread ran a whole turn at its present
clock (the control socket's "turns"), and no delivery job started since
(each logs "sched DOM (shard N): ..." as it starts).

Covered: an expired message's DSN (and a delay warning before it) reaches
its sender's server and is a valid RFC 3464 report; a mode deliver domain
answering 451 twice is delivered on the third attempt, with the back-off
honoured; flush retries now; hold -> deliver releases what was held; a
dead destination is cached and does not stall another; mynetworks and
authenticated clients (also on the submission listener) relay through
relayhost, a stranger gets 550; 5xx bounces give one DSN, none to the null
sender, a bouncing DSN is not bounced, a deferring DSN expires without one;
kill -9 during delivery loses nothing (repeats bounded) and keeps the retry
schedule; what fell due while etrnd was down is spread over
queue_restart_spread. The integration harness points dns_servers at a
silent loopback port, so nothing here looks up a real MX.
"""

import re
import shutil
import signal
import smtplib
import tempfile
import time
import unittest
from collections import Counter

import etrnd_harness as h
from customer_server import CustomerServer
from scripted_server import ScriptedServer
from test_redis import Redis, wait_code

QUEUED_RE = re.compile(rb"queued as ([0-9A-F]{14})")
# The line a delivery job of the scheduler logs as it starts
# (proto/sched_job.c).
# proto/expire.c EXPIRE_SCAN_INTERVAL_US: a scan a minute (daemon clock).
EXPIRY_SCAN_S = 60
JOB_START_RE = r"\bsched \S+ \(shard \d+\): \d+ message\(s\), "
TABLE_WAIT_S = 20.0       # the domain table from Redis after start
MINIMAL_BACKOFF_S = 300   # etrnd's default, Postfix's
MAXIMAL_BACKOFF_S = 4000
DAY_S = 86400
STRANGER = "127.0.0.2"    # loopback, but outside mynetworks = 127.0.0.1/32


def send(port, sender, rcpts, subject, source=None, tls=None, login=None,
         body="outbound test\r\n"):
    """One message over smtplib; its queue id. tls: an SSLContext for
    STARTTLS; login: (user, password) for AUTH; source: our address."""
    src = (source, 0) if source else None
    msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@outbound.test>\r\n"
           "\r\n%s" % (sender, rcpts[0], subject, subject, body)).encode()
    with smtplib.SMTP(h.HOST, port, timeout=15, source_address=src) as s:
        s.ehlo("client.outbound.test")
        if tls is not None:
            s.starttls(context=tls)
            s.ehlo("client.outbound.test")
        if login is not None:
            s.login(*login)
        s.mail(sender)
        for r in rcpts:
            code, text = s.rcpt(r)
            if code != 250:
                raise AssertionError("RCPT %s: %d %r" % (r, code, text))
        code, text = s.data(msg)
    if code != 250:
        raise AssertionError("DATA: %d %r" % (code, text))
    return QUEUED_RE.search(text).group(1).decode()


def rcpt_reply(port, sender, rcpt, source=None):
    """The reply to RCPT TO:<rcpt> after MAIL FROM:<sender>."""
    src = (source, 0) if source else None
    with smtplib.SMTP(h.HOST, port, timeout=15, source_address=src) as s:
        s.ehlo("client.outbound.test")
        s.mail(sender)
        code, text = s.rcpt(rcpt)
        s.rset()
        return code, text.decode("utf-8", "replace")


def dsn_parts(msg):
    """An RFC 3464 report's pieces: (per-message fields, [per-recipient
    fields], the returned content part). Asserts the structure: a
    multipart/report with report-type=delivery-status whose second part is
    message/delivery-status."""
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status", msg["Content-Type"]
    parts = msg.get_payload()
    assert len(parts) >= 2, "a report has at least two parts, got %d" % len(parts)
    assert parts[0].get_content_maintype() == "text", parts[0].get_content_type()
    assert parts[1].get_content_type() == "message/delivery-status", parts[1].get_content_type()
    blocks = parts[1].get_payload()
    assert len(blocks) >= 2, "per-message fields and at least one recipient"
    return blocks[0], blocks[1:], parts[2] if len(parts) > 2 else None


def wait_unindexed(e, dom):
    """Every message of dom leaves the queue index. A delivered message's
    DONE is on disk (and the message out of the index) one group commit
    after its "status=sent" line, so this waits for that commit; a
    message that stays indexed fails it with etrnctl's status."""
    h.wait_for("%s: nothing left in the queue index" % dom,
               lambda: h.indexed_messages(e.ctl_path(), dom)[0] == 0)


class OutboundCase(unittest.TestCase):
    """A private Redis per test; etrnd with the test clock and a control
    socket; every server started here stopped by PID at cleanup."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-out-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)
        self.url = self.redis.url()

    def ctl(self, *args):
        return h.etrnctl_ok(self.url, *args)

    def etrnd(self, start=True, **cfg):
        conf = dict(threads="2", redis=self.url, relay_domains="demo.test",
                    test_clock="yes", control_socket="auto")
        conf.update(cfg)
        e = h.Etrnd(**conf)
        self.addCleanup(e.cleanup)
        if start:
            e.start()
        return e

    def sink(self, *options):
        s = h.SmtpSink(options=options)
        self.addCleanup(s.cleanup)
        return s.start()

    def scripted(self, **knobs):
        p = ScriptedServer(h.free_port(), **knobs).start()
        self.addCleanup(p.stop)
        return p

    def deliver_domain(self, dom, route, mode="deliver"):
        self.ctl("domain", "add", dom, "--mode", mode)
        h.route_add(self.url, dom, route)

    def status(self, e):
        rc, out, err = e.etrnctl("status")
        self.assertEqual(rc, 0, err)
        return out

    def still(self, e, since, what, fn, want):
        """A negative check: every engine thread of e ran a whole turn at
        the daemon's present clock, so what was due has started; no
        delivery job started since the log offset since; and fn() (what a
        destination saw) is still want."""
        e.nothing_since(self, since, JOB_START_RE, what)
        self.assertEqual(fn(), want, what)


class ExpiryDsnTest(OutboundCase):
    def test_expired_dsn_reaches_sender(self):
        """Held mail past max_hold expires; its DSN goes to the sender's
        domain through the scheduler (a route to smtp-sink), is a valid RFC
        3464 report naming both recipients, and nothing stays queued."""
        dsn_sink = self.sink()
        h.route_add(self.url, "sender.test", dsn_sink.route())
        e = self.etrnd(max_hold="5d")
        qid = send(e.port, "alice@sender.test", ["u1@demo.test", "u2@demo.test"], "expire-me")
        # demo.test is held (relay_domains): nothing goes out by itself.
        self.still(e, 0, "held mail stays held", dsn_sink.count, 0)
        self.assertNotIn("status=sent", e.stderr_text())

        e.clock_step(6 * DAY_S)
        e.wait_log(r"%s: to=<u[12]@demo\.test>, relay=none, delay=\d+, status=expired" % qid, 2)
        dqid = e.wait_log(r"%s: sender non-delivery notification: (%s)" % (qid, h.QID_RE))[0]
        sent = e.wait_log(h.log_field_re("alice@sender.test", "sent", qid=dqid))
        self.assertIn("[127.0.0.1]:%d" % dsn_sink.port, sent[0][1])
        self.assertEqual(sent[0][2][:2], "2.")
        self.assertTrue(dsn_sink.wait_count(1), "the DSN never reached the sender's server")

        msgs = dsn_sink.messages()
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertEqual(m["sender"], "", "a DSN comes from the null sender")
        self.assertEqual(m["rcpts"], ["alice@sender.test"])
        self.assertEqual(m["msg"]["Auto-Submitted"], "auto-replied")
        per_msg, per_rcpt, returned = dsn_parts(m["msg"])
        self.assertIn("Reporting-MTA", per_msg)
        finals = sorted(b["Final-Recipient"] for b in per_rcpt)
        self.assertEqual(finals, ["rfc822; u1@demo.test", "rfc822; u2@demo.test"])
        for b in per_rcpt:
            self.assertEqual(b["Action"].strip(), "failed")
            self.assertEqual(b["Status"].strip(), "4.4.7")
        self.assertIsNotNone(returned, "the original's header is returned")
        self.assertIn(b"Subject: expire-me", returned.as_bytes())

        # Nothing left in the daemon: not the original, not the DSN.
        e.wait_log(r"%s: .*status=sent" % dqid)
        rc, out, err = e.etrnctl("queue", "list")
        self.assertEqual(rc, 0, err)
        self.assertNotIn(qid, out)
        self.assertNotIn(dqid, out)
        wait_unindexed(e, "demo.test")
        e.stop()
        dones = sorted((r["qid"], r["rcpt"], r["status"]) for r in h.spool_json(e.spool_dir)
                       if r["type"] == "DONE")
        self.assertIn((qid, 0, "expired"), dones)
        self.assertIn((qid, 1, "expired"), dones)
        self.assertEqual([d for d in dones if d[0] == dqid], [(dqid, 0, "delivered")],
                         "the DSN is delivered, once")

    def test_delay_warning_reaches_sender(self):
        """delay_warning: the delayed DSN goes to the sender's server
        through the scheduler too (Action: delayed), once; the failure DSN
        at max_hold follows it."""
        dsn_sink = self.sink()
        h.route_add(self.url, "sender.test", dsn_sink.route())
        e = self.etrnd(max_hold="5d", delay_warning="4h")
        qid = send(e.port, "alice@sender.test", ["u1@demo.test"], "warn-me")
        e.clock_step(5 * 3600)
        wq = e.wait_log(r"%s: sender delay notification: (%s)" % (qid, h.QID_RE))[0]
        e.wait_log(h.log_field_re("alice@sender.test", "sent", qid=wq))
        self.assertTrue(dsn_sink.wait_count(1))
        m = dsn_sink.messages()[0]
        self.assertEqual((m["sender"], m["rcpts"]), ("", ["alice@sender.test"]))
        _, per_rcpt, _ = dsn_parts(m["msg"])
        self.assertEqual([b["Action"].strip() for b in per_rcpt], ["delayed"])
        self.assertEqual(per_rcpt[0]["Final-Recipient"], "rfc822; u1@demo.test")
        self.assertIsNotNone(per_rcpt[0]["Will-Retry-Until"])
        # A second warning would come from a later expiry scan: step the
        # clock past the scan interval and wait for that scan to finish.
        mark = e.log_mark()
        scans = e.metric("etrnd_expiry_scans_total")
        e.clock_step(EXPIRY_SCAN_S + 1)
        e.wait_expiry_scans(scans + int(e.cfg["threads"]))
        self.still(e, mark, "one delay warning", dsn_sink.count, 1)

        e.clock_step(6 * DAY_S)
        fq = e.wait_log(r"%s: sender non-delivery notification: (%s)" % (qid, h.QID_RE))[0]
        e.wait_log(h.log_field_re("alice@sender.test", "sent", qid=fq))
        self.assertTrue(dsn_sink.wait_count(2))
        actions = sorted(b["Action"].strip() for m in dsn_sink.messages()
                         for b in dsn_parts(m["msg"])[1])
        self.assertEqual(actions, ["delayed", "failed"])


class DeliverModeTest(OutboundCase):
    def test_451_twice_then_250(self):
        """mode deliver: the first attempt is at once; 451 defers it by
        minimal_backoff (no retry before, even with the clock stepped to
        just under it); 451 again; the third attempt is delivered. The
        deferral is logged Postfix's way and etrnctl status shows it."""
        peer = self.scripted(rcpt_script=["451 4.3.0 try again later (first)",
                                          "451 4.3.0 try again later (second)"])
        self.deliver_domain("now.test", peer.route())
        e = self.etrnd()
        wait_code(e, "now.test", 250, TABLE_WAIT_S)
        rcpt = lambda: peer.recorder.rcpt_seen  # noqa: E731

        qid = send(e.port, "carol@example.org", ["bob@now.test"], "try-thrice")
        d1 = e.wait_log(h.log_field_re("bob@now.test", "deferred", qid=qid))
        self.assertIn("451", d1[0][3])
        self.assertIn("[127.0.0.1]:%d" % peer.controller.port, d1[0][1])
        self.assertEqual(d1[0][2], "4.3.0")
        self.assertEqual(rcpt(), 1)
        status = self.status(e)
        self.assertIn("now.test", status)
        self.assertIn("451", status, "the deferred section shows the last error")

        # Not before minimal_backoff: 100 s later nothing happens.
        mark = e.log_mark()
        e.clock_step(100)
        self.still(e, mark, "no retry before minimal_backoff", rcpt, 1)
        e.clock_step(MINIMAL_BACKOFF_S - 100 + 5)
        d2 = e.wait_log(h.log_field_re("bob@now.test", "deferred", qid=qid), 2)
        self.assertIn("second", d2[1][3])
        self.assertEqual(rcpt(), 2)

        e.clock_step(MAXIMAL_BACKOFF_S + 5)
        sent = e.wait_log(h.log_field_re("bob@now.test", "sent", qid=qid))
        self.assertEqual(sent[0][2], "2.0.0")
        self.assertTrue(peer.wait_count(1, h.LOG_WAIT_S))
        self.assertEqual(rcpt(), 3)
        self.assertEqual(peer.recorder.replies()[:2], ["451 4.3.0 try again later (first)",
                                                       "451 4.3.0 try again later (second)"])
        self.assertEqual([a[1] for a in peer.recorder.accepted], [["bob@now.test"]])
        self.assertEqual(peer.recorder.accepted[0][0], "carol@example.org")
        self.assertEqual(peer.recorder.accepted[0][2]["Subject"], "try-thrice")
        # Delivered once, and done.
        self.still(e, e.log_mark(), "delivered once", peer.recorder.count, 1)
        wait_unindexed(e, "now.test")

    def test_flush_retries_now(self):
        """etrnctl flush of a mode deliver domain means retry now: no
        clock step needed."""
        peer = self.scripted(rcpt_script=["451 4.3.0 later"])
        self.deliver_domain("flush.test", peer.route())
        e = self.etrnd()
        wait_code(e, "flush.test", 250, TABLE_WAIT_S)
        qid = send(e.port, "carol@example.org", ["bob@flush.test"], "flush-me")
        e.wait_log(h.log_field_re("bob@flush.test", "deferred", qid=qid))
        rc, out, err = e.etrnctl("flush", "flush.test")
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"^25[0-3] ", "answered like a started drain")
        e.wait_log(h.log_field_re("bob@flush.test", "sent", qid=qid))
        self.assertTrue(peer.wait_count(1, h.LOG_WAIT_S))
        self.assertEqual(peer.recorder.rcpt_seen, 2)

    def test_hold_then_deliver(self):
        """A held domain's mail stays (no attempt, no retry); switching its
        row to mode deliver sends what it held, at once."""
        peer = self.scripted()
        self.deliver_domain("later.test", peer.route(), mode="hold")
        e = self.etrnd()
        wait_code(e, "later.test", 250, TABLE_WAIT_S)
        qids = [send(e.port, "carol@example.org", ["u%d@later.test" % i], "held-%d" % i)
                for i in range(3)]
        self.still(e, 0, "mode hold: no attempt", lambda: peer.recorder.sessions, 0)
        self.ctl("domain", "set", "later.test", "--mode", "deliver")
        for q in qids:
            e.wait_log(r"%s: to=<u\d@later\.test>, .*status=sent" % q)
        self.assertTrue(peer.wait_count(3, h.LOG_WAIT_S))
        self.assertEqual(sorted(m[2]["Subject"] for m in peer.recorder.accepted),
                         ["held-0", "held-1", "held-2"])

    def test_dead_destination_does_not_stall_others(self):
        """One destination refuses connections: its mail is deferred and the
        address is dead for minimal_backoff (a second message goes to the
        deferred queue without a connection), while another domain's mail
        is delivered at once all along."""
        dead_port = h.free_port()
        self.deliver_domain("dead.test", "[127.0.0.1]:%d" % dead_port)
        peer = self.scripted()
        self.deliver_domain("alive.test", peer.route())
        e = self.etrnd(threads="1")
        wait_code(e, "dead.test", 250, TABLE_WAIT_S)
        wait_code(e, "alive.test", 250, TABLE_WAIT_S)
        anyone = r"(?:u\d)?@dead\.test"
        q1 = send(e.port, "carol@example.org", ["u1@dead.test"], "dead-1")
        e.wait_log(h.log_field_re(None, "deferred", qid=q1, rcpt_re=anyone))
        e.wait_log(r"127\.0\.0\.1\[127\.0\.0\.1\]:%d is dead for %d s" % (dead_port, MINIMAL_BACKOFF_S))
        mark = e.log_mark()
        q2 = send(e.port, "carol@example.org", ["u2@dead.test"], "dead-2")
        qa = send(e.port, "carol@example.org", ["v@alive.test"], "alive")
        e.wait_log(h.log_field_re("v@alive.test", "sent", qid=qa), since=mark)
        d2 = e.wait_log(h.log_field_re(None, "deferred", qid=q2, rcpt_re=anyone), since=mark)
        self.assertIn("dead", d2[0][3])
        self.assertNotRegex(e.stderr_text()[mark:], r"outbound dead\.test .* over \d+ connection",
                            "no connection to a dead destination")
        self.assertEqual([m[2]["Subject"] for m in peer.recorder.accepted], ["alive"])


class RelayTest(OutboundCase):
    def test_mynetworks_and_auth_relay_through_relayhost(self):
        """A client in mynetworks and an authenticated user (STARTTLS, AUTH,
        on the main listener and on the submission listener) send to a
        foreign domain: delivered through relayhost to smtp-sink. A stranger
        asking the same gets 550 5.7.1 and nothing leaves."""
        upstream = self.sink()
        e = self.etrnd(tls=True, mynetworks="127.0.0.1/32", relayhost=upstream.route(),
                       submission_listen="auto")
        h.add_user(self.url, "cust", "cust-password-13")

        code, text = rcpt_reply(e.port, "x@stranger.test", "victim@foreign.example", STRANGER)
        self.assertEqual(code, 550, text)
        self.assertIn("5.7.1", text)

        q1 = send(e.port, "a@mynet.test", ["r1@foreign.example"], "from-mynetworks")
        q2 = send(e.port, "b@auth.test", ["r2@foreign.example"], "from-auth-user",
                  source=STRANGER, tls=e.client_tls(), login=("cust", "cust-password-13"))
        sub = e.ports["submission_listen"]
        with smtplib.SMTP(h.HOST, sub, timeout=15, source_address=(STRANGER, 0)) as s:
            s.ehlo("client.outbound.test")
            s.starttls(context=e.client_tls())
            s.ehlo("client.outbound.test")
            code, text = s.docmd("MAIL", "FROM:<c@auth.test>")
            self.assertEqual(code, 530, text)
            s.rset()
        q3 = send(sub, "c@auth.test", ["r3@other.example"], "from-submission",
                  source=STRANGER, tls=e.client_tls(), login=("cust", "cust-password-13"))

        for q, r in ((q1, "r1@foreign.example"), (q2, "r2@foreign.example"),
                     (q3, "r3@other.example")):
            got = e.wait_log(h.log_field_re(r, "sent", qid=q))
            self.assertIn("[127.0.0.1]:%d" % upstream.port, got[0][1])
        self.assertTrue(upstream.wait_count(3))
        got = sorted((m["sender"], tuple(m["rcpts"]), m["msg"]["Subject"])
                     for m in upstream.messages())
        self.assertEqual(got, [("a@mynet.test", ("r1@foreign.example",), "from-mynetworks"),
                               ("b@auth.test", ("r2@foreign.example",), "from-auth-user"),
                               ("c@auth.test", ("r3@other.example",), "from-submission")])
        self.assertNotRegex(e.stderr_text(), r"to=<victim@foreign\.example>")
        self.still(e, e.log_mark(), "the stranger's attempt sent nothing", upstream.count, 3)


class BounceTest(OutboundCase):
    def test_5xx_one_dsn_none_to_null_sender_none_for_a_dsn(self):
        """The destination refuses a recipient (550): the sender gets
        exactly one DSN; the same from the null sender gets none; a DSN
        whose own delivery is refused (550 at the sender's server) is
        dropped, never bounced."""
        peer = self.scripted(reject={"nobody@rej.test": "550 5.1.1 <nobody@rej.test>: no such user"})
        self.deliver_domain("rej.test", peer.route())
        dsn_sink = self.sink()
        h.route_add(self.url, "sender.test", dsn_sink.route())
        hard = self.sink("-f", "RCPT", "-B", "550 5.1.1 no bounces accepted here")
        h.route_add(self.url, "bad.test", hard.route())
        e = self.etrnd()
        wait_code(e, "rej.test", 250, TABLE_WAIT_S)

        qa = send(e.port, "alice@sender.test", ["nobody@rej.test"], "bounce-a")
        qb = send(e.port, "", ["nobody@rej.test"], "bounce-null")
        qc = send(e.port, "bob@bad.test", ["nobody@rej.test"], "bounce-c")
        for q in (qa, qb, qc):
            b = e.wait_log(h.log_field_re("nobody@rej.test", "bounced", qid=q))
            self.assertEqual(b[0][2], "5.1.1")
            self.assertIn("550", b[0][3])
        da = e.wait_log(r"%s: sender non-delivery notification: (%s)" % (qa, h.QID_RE))[0]
        dc = e.wait_log(r"%s: sender non-delivery notification: (%s)" % (qc, h.QID_RE))[0]
        e.wait_log(h.log_field_re("alice@sender.test", "sent", qid=da))
        e.wait_log(h.log_field_re("bob@bad.test", "bounced", qid=dc))
        self.assertTrue(dsn_sink.wait_count(1))
        # Nothing more comes: no second DSN to alice, none for the DSN to bob.
        self.still(e, e.log_mark(), "one DSN to alice", dsn_sink.count, 1)
        log = e.stderr_text()
        self.assertNotRegex(log, r"%s: sender non-delivery notification" % qb)
        self.assertNotRegex(log, r"%s: sender non-delivery notification" % dc)
        self.assertEqual(hard.count(), 0)

        m = dsn_sink.messages()[0]
        self.assertEqual((m["sender"], m["rcpts"]), ("", ["alice@sender.test"]))
        _, per_rcpt, _ = dsn_parts(m["msg"])
        self.assertEqual(len(per_rcpt), 1)
        self.assertEqual(per_rcpt[0]["Final-Recipient"], "rfc822; nobody@rej.test")
        self.assertEqual(per_rcpt[0]["Action"].strip(), "failed")
        self.assertEqual(per_rcpt[0]["Status"].strip(), "5.1.1")
        self.assertIn("550", per_rcpt[0]["Diagnostic-Code"] or "")

        e.stop()
        recs = h.spool_json(e.spool_dir)
        msgs = [r for r in recs if r["type"] == "MSG"]
        self.assertEqual(sorted(r["qid"] for r in msgs), sorted([qa, qb, qc, da, dc]),
                         "three messages and two DSNs, nothing else")
        pending = {(r["qid"], i) for r in msgs for i in range(len(r["rcpts"]))}
        done = {(r["qid"], r["rcpt"]) for r in recs if r["type"] == "DONE"}
        self.assertEqual(pending - done, set(), "every recipient is done")

    def test_deferred_dsn_expires_without_dsn(self):
        """A DSN whose sender's server keeps answering 451 is retried, then
        dropped at its own max_hold: logged as expired, and no DSN is
        made for it (it comes from the null sender)."""
        peer = self.scripted(reject={"nobody@rej.test": "550 5.1.1 no such user"})
        self.deliver_domain("rej.test", peer.route())
        busy = self.sink("-r", "RCPT", "-b", "451 4.3.0 mailbox busy, try later")
        h.route_add(self.url, "slow.test", busy.route())
        e = self.etrnd(max_hold="5d")
        wait_code(e, "rej.test", 250, TABLE_WAIT_S)
        q = send(e.port, "bob@slow.test", ["nobody@rej.test"], "dsn-deferred")
        dq = e.wait_log(r"%s: sender non-delivery notification: (%s)" % (q, h.QID_RE))[0]
        d = e.wait_log(h.log_field_re("bob@slow.test", "deferred", qid=dq))
        self.assertIn("451", d[0][3])
        e.clock_step(6 * DAY_S)
        e.wait_log(r"%s: to=<bob@slow\.test>, relay=none, delay=\d+, status=expired" % dq)
        e.wait_log(r"%s: null sender: no delivery status notification" % dq)
        e.stop()
        # Counted while etrnd ran, this saw one dump file twice under load
        # (most likely smtp-sink's file for a transaction still open during
        # a retry, dropped when the RCPT is refused). Once etrnd has stopped
        # no transaction is open, and none may stay: nothing was accepted.
        h.wait_for("the busy sink to hold no message", lambda: busy.count() == 0)
        msgs = [r["qid"] for r in h.spool_json(e.spool_dir) if r["type"] == "MSG"]
        self.assertEqual(sorted(msgs), sorted([q, dq]), "no DSN for the DSN")


class CrashTest(OutboundCase):
    THREADS = 2
    CONNECTIONS = 2     # drain_connections: per job
    # drain_destination_concurrency: connections to one host:port, node-wide
    # (several outbound jobs of a domain may be in flight, each with up to
    # drain_connections): the bound on connections open at the kill.
    DEST_CONNECTIONS = 4
    WINDOW = 1          # drain_done_window
    MESSAGES = 300

    def test_kill9_during_delivery(self):
        """kill -9 while a slow destination takes mail: after a restart
        every message arrives (none lost); a message goes twice only when
        its DONE was in flight at the kill, at most drain_done_window per
        open connection (at most drain_destination_concurrency of them)."""
        from test_etrn import hold
        # 0.2 s per message on each of at most DEST_CONNECTIONS connections:
        # sending MESSAGES takes far less than delivering them.
        peer = CustomerServer(h.free_port(), delay=0.2).start()
        self.addCleanup(peer.stop)
        self.deliver_domain("k9.test", "[127.0.0.1]:%d" % peer.controller.port)
        e = self.etrnd(threads=str(self.THREADS), drain_connections=str(self.CONNECTIONS),
                       drain_destination_concurrency=str(self.DEST_CONNECTIONS),
                       drain_done_window=str(self.WINDOW), queue_restart_spread="2s")
        wait_code(e, "k9.test", 250, TABLE_WAIT_S)
        ids = hold(e, "k9.test", self.MESSAGES, "k9")
        # A fast machine may take all of them before the first delivery
        # ends: kill once etrnd has logged one sent (the destination's
        # count alone may run ahead of our reading its 250).
        self.assertTrue(peer.wait_count(1, h.LOG_WAIT_S), "no delivery started")
        e.wait_log(r"status=sent")
        at_kill = peer.recorder.count()
        e.kill9()
        self.assertGreater(at_kill, 0, "delivery had not started at the kill")
        self.assertLess(at_kill, self.MESSAGES, "delivery was over before the kill")
        # DATA the peer was answering belongs to this crash: count once
        # the peer saw every connection go (aiosmtpd then cancels a DATA
        # still being answered, so nothing more is recorded for them).
        self.assertTrue(peer.recorder.wait_closed(h.LOG_WAIT_S), "the peer kept a connection")
        cut = peer.recorder.count()
        log1 = e.stderr_text()
        peer.recorder.delay = 0.0
        e.start()
        deadline = time.monotonic() + 90
        while not set(ids) <= set(peer.recorder.message_ids()):
            self.assertLess(time.monotonic(), deadline,
                            "%d of %d arrived after the restart:\n%s" % (
                                len(set(peer.recorder.message_ids())), len(ids),
                                e.stderr_text()[-3000:]))
            time.sleep(0.1)
        self.still(e, e.log_mark(), "nothing more arrives", peer.recorder.count,
                   peer.recorder.count())
        got = peer.recorder.message_ids()
        count = Counter(got)
        self.assertEqual(set(count), set(ids))
        dups = [m for m, n in count.items() if n > 1]
        bound = self.DEST_CONNECTIONS * self.WINDOW
        print("kill -9 during outbound delivery: %d acknowledged, %d arrived before the kill, "
              "%d after; 0 lost, %d duplicated (bound %d)" % (
                  len(ids), cut, len(got) - cut, len(dups), bound))
        conns = re.findall(r"outbound k9\.test \(shard \d\): \d+ message\(s\) to \S+ over \d+ "
                           r"connection\(s\)", log1)
        self.assertLessEqual(len(dups), bound, "duplicates: %r; jobs before the kill:\n%s" % (
            dups, "\n".join(conns[-20:])))
        # Only what was in flight at the kill can repeat.
        before = set(got[:cut])
        self.assertTrue(set(dups) <= before, "a duplicate that had not arrived before the kill")
        self.assertIn("status=sent", log1)
        wait_unindexed(e, "k9.test")

    def test_kill9_keeps_schedule(self):
        """A deferred message's next attempt survives kill -9: after the
        restart (queue_restart_spread = 0, so mail due at start goes at
        once) it is not tried until the clock reaches its next attempt."""
        port = h.free_port()          # nobody listens yet: refused
        self.deliver_domain("later.test", "[127.0.0.1]:%d" % port)
        e = self.etrnd(queue_restart_spread="0s")
        wait_code(e, "later.test", 250, TABLE_WAIT_S)
        qid = send(e.port, "carol@example.org", ["bob@later.test"], "kept-schedule")
        # Never attempted (the connection was refused): proto/sched_job.c
        # names the domain, not each recipient, in this line ("to=<@dom>").
        d = e.wait_log(h.log_field_re(None, "deferred", qid=qid,
                                      rcpt_re=r"(?:bob)?@later\.test"))
        self.assertRegex(d[0][3], r"(?i)connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: "
                         r"connection refused" % port)
        self.assertEqual(d[0][2][:2], "4.")
        # The deferral's SCHED record is in the segment (what a kill -9
        # keeps: written, whether or not its fdatasync is done).
        h.wait_for("the SCHED record of %s" % qid, lambda: [
            r for r in h.spool_json(e.spool_dir)
            if r["type"] == "SCHED" and r["qid"] == qid])
        e.kill9()
        peer = ScriptedServer(port).start()
        self.addCleanup(peer.stop)
        e.start()
        self.still(e, 0, "not retried before its next attempt",
                   lambda: peer.recorder.sessions, 0)
        n, status = h.indexed_messages(e.ctl_path(), "later.test")
        self.assertEqual(n, 1, status)
        e.clock_step(MINIMAL_BACKOFF_S + 5)
        e.wait_log(h.log_field_re("bob@later.test", "sent", qid=qid))
        self.assertTrue(peer.wait_count(1, h.LOG_WAIT_S))
        self.assertEqual(peer.recorder.accepted[0][2]["Subject"], "kept-schedule")

    def test_restart_spreads_what_fell_due(self):
        """Mail that fell due while etrnd was down is spread over
        queue_restart_spread after the restart, not tried at once: eight
        deferred messages, a restart ten minutes later (clock_offset), and
        their attempts at the destination span most of the spread."""
        spread_s, n = 4.0, 8
        port = h.free_port()          # refused: every message deferred
        self.deliver_domain("spread.test", "[127.0.0.1]:%d" % port)
        e = self.etrnd(queue_restart_spread="%ds" % spread_s)
        wait_code(e, "spread.test", 250, TABLE_WAIT_S)
        qids = [send(e.port, "carol@example.org", ["u%d@spread.test" % i], "spread-%d" % i)
                for i in range(n)]
        for q in qids:
            e.wait_log(h.log_field_re(None, "deferred", qid=q, rcpt_re=r"(?:u\d)?@spread\.test"))
        e.stop()
        peer = ScriptedServer(port).start()
        self.addCleanup(peer.stop)
        e.cfg["clock_offset"] = "10m"  # every next attempt is in the past
        e.start()
        t0 = time.monotonic()
        self.assertTrue(peer.wait_count(n, h.LOG_WAIT_S + spread_s), "%d of %d arrived:\n%s" % (
            peer.recorder.count(), n, e.stderr_text()[-3000:]))
        times = sorted(t for t, _, reply in peer.recorder.rcpt_replies if reply.startswith("250"))
        span = times[-1] - times[0]
        print("restart spread %.0f s: %d messages tried over %.2f s, the first %.2f s after start"
              % (spread_s, n, span, times[0] - t0))
        self.assertGreaterEqual(span, spread_s / 2, "tried at once: %r" % [t - t0 for t in times])
        self.assertEqual(sorted(m[1][0] for m in peer.recorder.accepted),
                         sorted("u%d@spread.test" % i for i in range(n)))


if __name__ == "__main__":
    unittest.main()
