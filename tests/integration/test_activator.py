# SPDX-License-Identifier: MIT
"""Activators end to end (issue 14): an etrnd at a customer site asks its
upstream for its own mail, by ETRN (RFC 1985) or ATRN (RFC 2645), on a
timetable. Two etrnd instances side by side on loopback (the upstream and
the customer site: own ports, spools, control sockets and redis-servers),
a private Postfix as the upstream, and a scripted upstream
(etrnd_harness.ScriptedUpstream) that counts connections and can refuse or
fall silent. Time moves by the test clock (test_clock = yes, `etrnctl clock
step`) and the customer site's TZ puts the local time of day where a test
wants it (etrnd_harness.tz_at), so nothing is due by the wall clock during
a test; a test sleeps only to poll. A check that something must NOT happen
(a run before its time) first waits for the proof that the daemon looked:
every engine thread ran a whole turn at its present clock (the control
socket's "turns"), and no run started since (each logs "activator NAME: run
starts"); mail that must not arrive twice waits for the upstream's drains
and ATRN sessions to end.

Covered: ETRN and ATRN (plain on a trusted ODMR listener, and STARTTLS with
the upstream's certificate verified) pull every held message into the
customer site's spool exactly once, and the upstream holds nothing after;
the same ETRN against Postfix with fast_flush_domains (skipped with the
reason only where Postfix cannot run); a failing upstream (refused, 421)
is tried once at start and then once per scheduled time, never in a loop;
a daily window runs only inside it; after-outbound runs once after the
relayhost took mail and not again within ACTIVATOR_AFTER_OUTBOUND_GAP_S;
an upstream that answers ATRN 250 and then says nothing is dropped after
atrn_idle_timeout and tried again only at the next scheduled time.
"""

import os
import re
import shutil
import smtplib
import tempfile
import time
import unittest
from collections import Counter

import etrnd_harness as h
from test_redis import Redis, wait_code

CUST = "cust.test"           # the customer site's domain, held upstream
FAR = "far.test"             # mail the customer site sends out via relayhost
USER, PASSWORD = "custsite", "the customer site's ODMR password 2645"
HELD = 25                    # messages held upstream per test
HOUR_S = 3600
# The customer site's local time of day at its start (tz_at): two minutes
# past ten, so "every 1h" next runs at 11:00, 58 minutes of wall time
# away: only clock steps make it due.
TEN_PAST_S = 10 * HOUR_S + 120
# Whole runs (resolve, connect, ETRN, the upstream's drain) on a loaded
# machine with sanitizers.
RUN_S = 60.0
# A scheduled time computed by the test and the daemon's: both read the
# same wall clock under the same TZ (an offset in whole seconds), so they
# differ by the rounding to seconds only.
NEXT_SLACK_S = 3
# ACTIVATOR_AFTER_OUTBOUND_GAP_S (proto/activator.h).
AFTER_OUTBOUND_GAP_S = 60
IDLE_TIMEOUT_S = 2           # atrn_idle_timeout in the idle test
# The idle time-out is a timer on a loaded machine: a guard against a hang
# only (a loaded machine may be late by any amount; never early).
IDLE_SLACK_S = RUN_S
# What an activator logs as a run starts (proto/activator.c).
RUN_START_RE = r"\bactivator \S+: run starts "
MSGID_RE = re.compile(rb"^Message-ID: (<[^>\r\n]+>)\r?$", re.M | re.I)
ETRN_LOG = r"activator %s: ETRN %s to \S+: (\d{3})\b(.*)$"
ATRN_LOG = r"activator %s: ATRN\b.* to \S+: (\d{3})\b(.*)$"


def send(port, rcpt, n, tag, sender="s@example.org"):
    """n messages to rcpt over one smtplib session; their Message-IDs."""
    ids = []
    with smtplib.SMTP(h.HOST, port, timeout=30) as s:
        s.ehlo("sender.test")
        for i in range(n):
            mid = "<%s-%d@sender.test>" % (tag, i)
            body = ("From: %s\r\nTo: %s\r\nSubject: %s %d\r\nMessage-ID: %s\r\n\r\n"
                    ".a leading dot\r\nheld for the customer site\r\n"
                    % (sender, rcpt, tag, i, mid)).encode()
            s.sendmail(sender, [rcpt], body)
            ids.append(mid)
    return ids


def spool_msgids(e):
    """Counter of the Message-IDs in e's spool (etrnd-spool, offline)."""
    out = Counter()
    for rec in e.records():
        m = MSGID_RE.search(h.client_body(rec))
        out[m.group(1).decode() if m else "(none: %s)" % rec["qid"]] += 1
    return out


def next_hour(now_s, local_s=TEN_PAST_S):
    """The epoch time of the next local full hour after now_s, for a site
    started under tz_at(local_s) at about now_s."""
    return now_s + (HOUR_S - local_s % HOUR_S)


class ActivatorCase(unittest.TestCase):
    """Two private redis-servers (the upstream's and the customer site's:
    each site has its own domain table), the sites on loopback, every
    process stopped by PID at cleanup."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-act-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis_up = self._redis("redis-up")
        self.redis_cust = self._redis("redis-cust")
        self.t_cust = None       # the wall clock when the site's TZ was chosen

    def _redis(self, name):
        d = os.path.join(self.tmp, name)
        os.mkdir(d)
        r = Redis(d).start()
        self.addCleanup(r.stop)
        return r

    def site(self, redis, start=True, port=None, env=None, **cfg):
        conf = dict(threads="2", redis=redis.url(), control_socket="auto",
                    test_clock="yes")
        conf.update(cfg)
        d = tempfile.mkdtemp(prefix="site-", dir=self.tmp)
        e = h.Etrnd(tmpdir=d, port=port, env=env, **conf)
        self.addCleanup(e.cleanup)
        if start:
            e.start()
        return e

    def upstream(self, **cfg):
        cfg.setdefault("relay_domains", "upstream-local.test")
        return self.site(self.redis_up, **cfg)

    def customer(self, port=None, local_s=TEN_PAST_S, start=True, **cfg):
        """The customer site: holds CUST (relay_domains), its local time of
        day local_s at start."""
        cfg.setdefault("relay_domains", CUST)
        self.t_cust = time.time()
        return self.site(self.redis_cust, start=start, port=port,
                         env={"TZ": h.tz_at(local_s, now=self.t_cust)}, **cfg)

    def provision(self, dest_port, owner=None):
        """The upstream's row for CUST: held, drained to dest_port, ETRN
        from loopback; owner: a user owning it (ATRN)."""
        h.etrnctl_ok(self.redis_up.url(), "domain", "add", CUST, "--dest",
                     "127.0.0.1:%d" % dest_port, "--etrn-from", "127.0.0.0/8")
        if owner:
            h.add_user(self.redis_up.url(), owner, PASSWORD, domain=CUST)

    def quiet(self, e, since, what, fn, want):
        """A negative check on the site e: every engine thread ran a whole
        turn at e's present clock, so a run that was due has started; no
        run started since the log offset since; fn() is still want."""
        e.nothing_since(self, since, RUN_START_RE, what)
        self.assertEqual(fn(), want, what)

    def landed(self, up, cust, what, n):
        """Nothing more reaches cust: every drain and ATRN session of up
        (the only sender) has ended, cust ran a turn; cust holds n."""
        up.wait_drains_ended(within=RUN_S)
        cust.turns()
        self.assertEqual(self.held(cust), n, what)

    def held(self, e, domain=CUST):
        return h.indexed_messages(e.ctl_path(), domain)[0]

    def hold(self, up, n=HELD, tag="held"):
        """n messages for CUST sent to the upstream and held there (once
        the upstream follows CUST's row: provision() writes Redis, and
        etrnd learns it by its event, a moment later)."""
        wait_code(up, CUST, 250, RUN_S)
        ids = send(up.port, "u@" + CUST, n, tag)
        h.wait_for("%d held upstream" % n, lambda: self.held(up) == n)
        return ids

    def assert_landed_once(self, up, cust, ids):
        """Every message of ids reached cust's spool once and nothing else;
        the upstream holds nothing for CUST."""
        n = len(ids)
        h.wait_for("%d held at the customer site" % n,
                   lambda: self.held(cust) >= n, within=RUN_S)
        h.wait_for("nothing held upstream", lambda: self.held(up) == 0,
                   within=RUN_S)
        self.landed(up, cust, "nothing more arrives", n)
        cust.stop()
        got = spool_msgids(cust)
        self.assertEqual(sorted(m for m in got if got[m] > 1), [], "arrived twice")
        self.assertEqual(sorted(got), sorted(ids), "exactly the held mail")

    def wait_activator(self, e, name, what, pred, within=RUN_S):
        """Poll e's status of activator name until pred(status); it."""
        box = {}

        def check():
            box["a"] = e.activator(name)
            return pred(box["a"])
        try:
            h.wait_for(what, check, within=within)
        except AssertionError as err:
            raise AssertionError("%s; last status %r" % (err, box.get("a")))
        return box["a"]

    def runs(self, e, name):
        return e.activator(name)["runs"]

    def assert_next_near(self, a, want_s, what):
        self.assertIsNotNone(a["next"], "%s: no next run" % what)
        self.assertLess(abs(a["next"] - want_s), NEXT_SLACK_S,
                        "%s: next run at %r, want about %r (%+.0f s)"
                        % (what, a["next"], want_s, a["next"] - want_s))


class EtrnAtrnTest(ActivatorCase):
    def test_etrn_activator_pulls_held_mail_once(self):
        """Held upstream for the customer site (which is down: nothing can
        go); the site starts with an ETRN activator (every 1h: it runs at
        start), the upstream answers 253 and drains to the site's port;
        every message lands in its spool once, the upstream holds none."""
        cport = h.free_port()
        up = self.upstream()
        self.provision(cport)
        ids = self.hold(up)
        up.nothing_since(self, 0, r"\bdrain \S+ \(shard \d+\): ", "held while nobody asks")
        self.assertEqual(self.held(up), HELD, "held while nobody asks")
        cust = self.customer(port=cport, **h.activator_keys(
            "isp", h.HOST, up.port, request=[CUST], schedule="every 1h"))
        code, text = cust.wait_log(ETRN_LOG % ("isp", re.escape(CUST)),
                                   within=RUN_S)[0]
        self.assertEqual(code, "253", text)
        self.assertIn("%d pending" % HELD, text)
        a = self.wait_activator(cust, "isp", "the run ends",
                                lambda a: a["state"] == "idle" and a["runs"] >= 1)
        self.assertEqual((a["method"], a["runs"], a["failures"]), ("etrn", 1, 0), a)
        self.assertTrue(a["reply"].startswith("253"), a)
        self.assert_next_near(a, next_hour(self.t_cust), "every 1h")
        rc, out, err = cust.etrnctl("activators")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^isp method=etrn host=127\.0\.0\.1:%d "
                         r"request=cust\.test .*runs=1 failures=0 .*reply=\"253 "
                         % up.port)
        self.assert_landed_once(up, cust, ids)

    def atrn(self, tls):
        """ATRN from the customer site to the upstream's ODMR listener:
        tls False: odmr_listen_trusted, AUTH in the clear (tls = none);
        True: odmr_listen with STARTTLS, the upstream's certificate
        verified against tls_ca_file (tls = verify)."""
        if tls:
            up = self.upstream(tls=True, odmr_listen="auto")
            oport = up.ports["odmr_listen"]
            extra = {"tls_ca_file": up.cert}
        else:
            up = self.upstream(odmr_listen_trusted="auto")
            oport = up.ports["odmr_listen_trusted"]
            extra = {}
        # The drain's dest is never used: ATRN turns the customer site's own
        # connection around.
        self.provision(h.free_port(), owner=USER)
        ids = self.hold(up)
        pw = h.write_password_file(self.tmp, PASSWORD)
        extra.update(h.activator_keys(
            "isp", h.HOST, oport, method="atrn", request=[CUST], user=USER,
            password_file=pw, tls="verify" if tls else "none",
            schedule="every 1h"))
        cust = self.customer(**extra)
        code, text = cust.wait_log(ATRN_LOG % "isp", within=RUN_S)[0]
        self.assertEqual(code, "250", text)
        a = self.wait_activator(cust, "isp", "the reversed session ends",
                                lambda a: a["state"] == "idle" and a["runs"] >= 1)
        self.assertEqual((a["method"], a["runs"], a["failures"]), ("atrn", 1, 0), a)
        self.assertEqual(a.get("received"), HELD, a)
        self.assert_next_near(a, next_hour(self.t_cust), "every 1h")
        self.assert_landed_once(up, cust, ids)
        # The upstream wrote a DONE for each: nothing comes back at restart.
        up.stop()
        dones = [r for r in h.spool_json(up.spool_dir) if r["type"] == "DONE"]
        self.assertEqual(len(dones), HELD, dones[:3])
        self.assertEqual({d["status"] for d in dones}, {"delivered"})
        return cust

    def test_atrn_activator_trusted_listener(self):
        self.atrn(tls=False)

    def test_atrn_activator_starttls_verified(self):
        cust = self.atrn(tls=True)
        recs = cust.records()
        self.assertTrue(recs)
        for rec in recs:
            self.assertIn("ESMTPS", h.received_of(rec),
                          "the reversed session ran in the clear")


class PostfixUpstreamTest(ActivatorCase):
    def test_etrn_activator_against_postfix(self):
        """Postfix relays CUST with fast_flush_domains; the customer site
        is down, so Postfix defers; the site starts with an ETRN activator,
        Postfix answers 250 and delivers at once (its own retry is an hour
        away: queue_run_delay and the back-off); every message arrives
        once."""
        cport = h.free_port()
        pf = h.PrivatePostfix(files={
            "transport": "%s smtp:[%s]:%d\n" % (CUST, h.HOST, cport)})
        # Postfix's own retries an hour away: only the ETRN can release
        # the mail within the test.
        pf.extra = ("relay_domains = %s\nfast_flush_domains = $relay_domains\n"
                    "transport_maps = texthash:%s/transport\n"
                    "smtp_connect_timeout = 5s\nqueue_run_delay = 1h\n"
                    "minimal_backoff_time = 1h\nmaximal_backoff_time = 1h\n"
                    % (CUST, pf.etc))
        self.addCleanup(pf.cleanup)
        why = pf.skip_reason()
        if why:
            print("skipped: %s" % why)
        pf.start()
        ids = send(pf.port, "u@" + CUST, HELD, "postfix")
        h.wait_for("Postfix deferred %d (the site is down)" % HELD,
                   lambda: pf.deferred() == HELD, within=RUN_S)
        t_etrn = time.monotonic()
        cust = self.customer(port=cport, **h.activator_keys(
            "isp", h.HOST, pf.port, request=[CUST], schedule="every 1h"))
        code, text = cust.wait_log(ETRN_LOG % ("isp", re.escape(CUST)),
                                   within=RUN_S)[0]
        self.assertEqual(code, "250", text)
        h.wait_for("Postfix delivered every message",
                   lambda: self.held(cust) >= HELD and pf.queued() == 0,
                   within=RUN_S)
        print("Postfix flushed %d messages %.1f s after the site started"
              % (HELD, time.monotonic() - t_etrn))
        self.assertEqual(len(re.findall(r"status=sent", pf.log())), HELD,
                         pf.log()[-3000:])
        # Postfix has nothing queued (waited for above): nothing more can
        # come; the site ran a turn since.
        cust.turns()
        self.assertEqual(self.held(cust), HELD, "nothing more arrives")
        cust.stop()
        got = spool_msgids(cust)
        self.assertEqual(sorted(m for m in got if got[m] > 1), [], "arrived twice")
        self.assertEqual(sorted(got), sorted(ids), "exactly the deferred mail")


class ScheduleTest(ActivatorCase):
    def test_failing_upstream_once_per_scheduled_time(self):
        """Two failing upstreams, every 1h: one refuses the connection, one
        answers 421 at once (counted at its listener). Each is tried once
        at start, not again while the clock is before the next full hour
        (a step of 30 minutes), once more when a step passes it."""
        busy = h.ScriptedUpstream(greeting="421 4.3.2 upstream busy").start()
        self.addCleanup(busy.stop)
        dead = h.free_port()
        keys = h.activator_keys("busy", h.HOST, busy.port, request=[CUST])
        keys.update(h.activator_keys("dead", h.HOST, dead, request=[CUST]))
        cust = self.customer(**keys)
        for name in ("busy", "dead"):
            a = self.wait_activator(cust, name, "%s fails once" % name,
                                    lambda a: a["failures"] >= 1 and a["state"] == "idle")
            self.assertEqual((a["runs"], a["failures"]), (1, 1), a)
            self.assert_next_near(a, next_hour(self.t_cust), name)
        self.assertEqual(busy.count(), 1)

        def attempts():
            return (busy.count(), self.runs(cust, "busy"), self.runs(cust, "dead"))
        mark = cust.log_mark()
        self.quiet(cust, mark, "no retry before the next scheduled time", attempts, (1, 1, 1))
        mark = cust.log_mark()
        cust.clock_step(HOUR_S // 2)
        self.quiet(cust, mark, "no retry half an hour later", attempts, (1, 1, 1))
        cust.clock_step(HOUR_S // 2)
        for name in ("busy", "dead"):
            self.wait_activator(cust, name, "%s tried at 11:00" % name,
                                lambda a: a["failures"] >= 2 and a["state"] == "idle")
        self.quiet(cust, cust.log_mark(), "once per scheduled time", attempts, (2, 2, 2))
        # The operator's `etrnctl activators run NAME`: one run now, and
        # the schedule stays as it was.
        rc, out, err = cust.etrnctl("activators", "run", "busy")
        self.assertEqual(rc, 0, out + err)
        h.wait_for("the requested run", lambda: busy.count() == 3)
        self.wait_activator(cust, "busy", "the requested run ends",
                            lambda a: a["runs"] == 3 and a["state"] == "idle")
        self.quiet(cust, cust.log_mark(), "one run per request", attempts, (3, 3, 2))
        log = cust.stderr_text()
        self.assertIn("activator busy:", log)
        self.assertIn("activator dead:", log)

    def test_window_runs_only_inside_it(self):
        """08:00-09:00 every 30m, the site started at 07:00:30 local: no run
        at start; runs at 08:00 and 08:30, none at 09:00 (the end is
        outside), the next one tomorrow at 08:00."""
        up = h.ScriptedUpstream(replies={"ETRN": "250 2.0.0 Queuing started"}).start()
        self.addCleanup(up.stop)
        local = 7 * HOUR_S + 30
        cust = self.customer(local_s=local, **h.activator_keys(
            "win", h.HOST, up.port, request=[CUST],
            schedule="08:00-09:00 every 30m"))
        a = cust.activator("win")
        self.assertEqual(a["runs"], 0, a)
        self.assert_next_near(a, self.t_cust + HOUR_S - 30, "the window's start")
        self.quiet(cust, 0, "no run outside the window", up.count, 0)
        cust.clock_step(HOUR_S)                       # 08:00:30+
        self.wait_activator(cust, "win", "the 08:00 run", lambda a: a["runs"] == 1)
        # The upstream records a line as its thread reads it: wait for it.
        h.wait_for("the upstream read the ETRN",
                   lambda: up.count() and "ETRN %s" % CUST in up.records()[0]["lines"])
        self.assertEqual(up.count(), 1)
        cust.clock_step(HOUR_S // 2)                  # 08:30:30+
        a = self.wait_activator(cust, "win", "the 08:30 run",
                                lambda a: a["runs"] == 2 and a["state"] == "idle")
        self.assertEqual(a["failures"], 0, a)
        self.assertTrue(a["reply"].startswith("250"), a)
        mark = cust.log_mark()
        cust.clock_step(HOUR_S // 2)                  # 09:00:30+
        self.quiet(cust, mark, "no run at the window's end", up.count, 2)
        a = cust.activator("win")
        # Status times are the daemon's (stepped) clock: today's 08:00 was
        # t_cust + HOUR_S - 30 there, tomorrow's is a day later.
        self.assert_next_near(a, self.t_cust + HOUR_S - 30 + h.DAY_S,
                              "tomorrow's window start")

    def test_after_outbound_once_per_gap(self):
        """The customer site sends mail out through relayhost = the
        upstream; after the delivery its after-outbound ETRN activator runs
        (logged); a second delivery within ACTIVATOR_AFTER_OUTBOUND_GAP_S
        does not run it again then, but once the gap has passed (a clock
        step): at most one run per gap, none lost."""
        up = self.upstream(relay_domains=FAR)
        self.provision(h.free_port())
        wait_code(up, CUST, 250, RUN_S)  # the upstream follows the row
        cust = self.customer(relayhost="[%s]:%d" % (h.HOST, up.port),
                             mynetworks="127.0.0.1/32", **h.activator_keys(
                                 "after", h.HOST, up.port, request=[CUST],
                                 schedule="after-outbound"))
        a = cust.activator("after")
        self.assertIsNone(a["next"], "after-outbound alone has no scheduled time")
        self.quiet(cust, 0, "no run before any outbound mail",
                   lambda: self.runs(cust, "after"), 0)
        sent_re = h.log_field_re("x@" + FAR, "sent")

        def deliver(tag, k):
            send(cust.port, "x@" + FAR, 1, tag, sender="me@" + CUST)
            cust.wait_log(sent_re, count=k, within=RUN_S)
        deliver("out1", 1)
        code, text = cust.wait_log(ETRN_LOG % ("after", re.escape(CUST)),
                                   within=RUN_S)[0]
        self.assertEqual(code, "251", text)     # nothing held upstream
        self.wait_activator(cust, "after", "one after-outbound run",
                            lambda a: a["runs"] == 1 and a["state"] == "idle")
        mark = cust.log_mark()
        deliver("out2", 2)
        self.quiet(cust, mark, "not again within the gap",
                   lambda: self.runs(cust, "after"), 1)
        self.assertEqual(self.held(up, FAR), 2)
        # The delivery inside the gap is not forgotten: it gives one run
        # when the gap has passed, and only one.
        cust.clock_step(AFTER_OUTBOUND_GAP_S + 1)
        self.wait_activator(cust, "after", "one run at the gap's end",
                            lambda a: a["runs"] == 2 and a["state"] == "idle")
        self.quiet(cust, cust.log_mark(), "once per gap", lambda: self.runs(cust, "after"), 2)


class IdleTimeoutTest(ActivatorCase):
    def test_silent_upstream_after_atrn_250(self):
        """The upstream answers ATRN 250 and then sends nothing: the
        reversed session (our 220, then nothing from the upstream) is
        dropped after atrn_idle_timeout with a 421 (logged), and
        the activator is not tried again before its next scheduled time."""
        up = h.ScriptedUpstream(
            ehlo=("ENHANCEDSTATUSCODES", "AUTH PLAIN LOGIN", "ATRN"),
            replies={"AUTH": "235 2.7.0 Authentication successful",
                     "ATRN": "250 OK now reversing the connection"},
            silent_after="ATRN").start()
        self.addCleanup(up.stop)
        pw = h.write_password_file(self.tmp, PASSWORD)
        cust = self.customer(atrn_idle_timeout="%ds" % IDLE_TIMEOUT_S,
                             **h.activator_keys(
                                 "idle", h.HOST, up.port, method="atrn",
                                 request=[CUST], user=USER, password_file=pw,
                                 tls="none", schedule="every 1h"))
        h.wait_for("the customer site cut the silent session",
                   lambda: up.count() == 1 and up.records()[0]["closed"],
                   within=RUN_S)
        rec = up.records()[0]
        self.assertIsNotNone(rec["silent_at"], rec["lines"])
        waited = rec["closed"] - rec["silent_at"]
        print("silent upstream cut %.2f s after ATRN 250 (atrn_idle_timeout %d s)"
              % (waited, IDLE_TIMEOUT_S))
        self.assertGreaterEqual(waited, IDLE_TIMEOUT_S - 0.2, rec)
        self.assertLess(waited, IDLE_TIMEOUT_S + IDLE_SLACK_S, rec)
        after = rec["lines"][rec["lines"].index(
            next(x for x in rec["lines"] if x.upper().startswith("ATRN"))) + 1:]
        self.assertTrue(after and after[0].startswith("220 "),
                        "our greeting after ATRN 250: %r" % after)
        self.assertTrue(after[-1].startswith("421 4.4.2 "),
                        "a 421 before the close: %r" % after)
        cust.wait_log(r"activator idle: reversed session ended: 0 message\(s\) "
                      r"received \([^)]*time ?out[^)]*\)", within=RUN_S)
        a = self.wait_activator(cust, "idle", "the run ends",
                                lambda a: a["state"] == "idle" and a["runs"] == 1)
        self.assertEqual(a.get("received"), 0, a)
        self.assert_next_near(a, next_hour(self.t_cust), "every 1h")
        self.quiet(cust, cust.log_mark(), "no retry before the next scheduled time",
                   up.count, 1)
        cust.clock_step(HOUR_S)
        h.wait_for("tried again at the next hour", lambda: up.count() == 2,
                   within=RUN_S)


if __name__ == "__main__":
    unittest.main()
