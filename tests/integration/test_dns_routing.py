# SPDX-License-Identifier: MIT
"""Name and MX routing against a real DNS server (issue 18, item 4): etrnd's
resolver (`dns_servers`, the key the issue calls `resolver`) asks
dns_server.py, an authoritative server on a loopback port (UDP and TCP),
for A, AAAA, MX (several preferences, one host dead), CNAME, NXDOMAIN,
SERVFAIL, a name that never answers and a null MX (RFC 7505). Mail goes to
Postfix's smtp-sink; domains are provisioned with etrnctl in a private
redis-server.

Drains (ETRN): a dest that is a host name (A, through a CNAME, AAAA only,
an answer too big for UDP so asked again over TCP), dest = mx (the best MX
only; the first MX dead -> the next), and the look-ups that fail (the
drain ends, logged, mail stays held). The outbound scheduler (mode
deliver): MX fallback, NXDOMAIN and null MX bounced with a DSN, a look-up
that times out or SERVFAILs deferred.

An MX host takes mail on port 25 (RFC 5321 4.5.4.2), so the MX tests give
each host its own random 127/8 address and listen on its port 25: only
root may bind it (they are skipped, with the reason, otherwise). A "dead"
MX is such an address where nothing listens: the connect is refused.
"""

import os
import random
import re
import shutil
import smtplib
import socket
import tempfile
import unittest

import etrnd_harness as h
from dns_server import DnsServer
from test_redis import Redis, wait_code

SMTP_PORT = 25
QUEUED_RE = re.compile(rb"queued as ([0-9A-F]{14})")
# A whole look-up's deadline in the test that never gets an answer
# (etrnd's dns_timeout; the others keep the default, 15 s, so a loaded
# machine never turns an answer into a time-out).
DNS_TIMEOUT = "2s"
MSGS = 3
ADDR_TRIES = 50
TABLE_WAIT_S = 30.0       # a domain added in Redis reaching the daemon
ROOT_ONLY = ("MX hosts listen on port 25 of their own 127/8 address, "
             "which only root may bind")


def random_loopback(port):
    """A 127/8 address (never 127.0.0.1) whose port is free right now:
    an MX host of its own (smtp-sink listens there) or a dead one (nothing
    does: a connect is refused)."""
    for _ in range(ADDR_TRIES):
        a = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255),
                              random.randint(1, 254))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((a, port))
            except OSError:
                continue
        return a
    raise AssertionError("no free %d on %d random 127/8 addresses" % (port, ADDR_TRIES))


def send(port, rcpt, sender="s@sender.test", subject="dns"):
    """One message to rcpt through etrnd; its queue id."""
    msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nrouted by DNS\r\n"
           % (sender, rcpt, subject)).encode()
    with smtplib.SMTP(h.HOST, port, timeout=15) as s:
        s.ehlo("client.dns.test")
        s.mail(sender)
        code, text = s.rcpt(rcpt)
        if code != 250:
            raise AssertionError("RCPT %s: %d %r" % (rcpt, code, text))
        code, text = s.data(msg)
    if code != 250:
        raise AssertionError("DATA: %d %r" % (code, text))
    return QUEUED_RE.search(text).group(1).decode()


def etrn(e, dom):
    with smtplib.SMTP(h.HOST, e.port, timeout=15) as s:
        s.ehlo("customer.dns.test")
        code, msg = s.docmd("ETRN", dom)
    return code, msg.decode()


class DnsCase(unittest.TestCase):
    """A private Redis and DNS server per test, etrnd asking that server;
    everything started here is stopped by the cleanups."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-dns-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)
        self.url = self.redis.url()

    def need_root(self):
        if os.getuid() != 0:
            self.skipTest(ROOT_ONLY)

    def dns(self, zone):
        d = DnsServer(zone).start()
        self.addCleanup(d.stop)
        return d

    def sink(self, host=h.HOST, port=None, *options):
        s = h.SmtpSink(port=port, options=options, host=host)
        self.addCleanup(s.cleanup)
        return s.start()

    def mx_sink(self):
        return self.sink(random_loopback(SMTP_PORT), SMTP_PORT)

    def etrnd(self, dns, **cfg):
        conf = dict(threads="2", redis=self.url, control_socket="auto",
                    dns_servers=dns.addr())
        conf.update(cfg)
        e = h.Etrnd(**conf)
        self.addCleanup(e.cleanup)
        return e.start()

    def domain(self, e, dom, *args):
        """Provision dom and wait until the running etrnd e takes mail
        for it (the change comes by pub/sub)."""
        h.etrnctl_ok(self.url, "domain", "add", dom, *args)
        wait_code(e, dom, 250, TABLE_WAIT_S)

    def held(self, e, dom):
        return h.indexed_messages(e.ctl_path(), dom)[0]

    def hold(self, e, dom, n=MSGS):
        """n messages held for u<i>@dom; waits until the index has them."""
        for i in range(n):
            send(e.port, "u%d@%s" % (i, dom), subject="%s %d" % (dom, i))
        h.wait_for("%d held for %s" % (n, dom), lambda: self.held(e, dom) == n)

    def drained(self, e, dom, relay, n=MSGS):
        """ETRN dom: every message sent to relay, none left held."""
        self.assertEqual(etrn(e, dom)[0], 253)
        for i in range(n):
            e.wait_log(h.log_field_re("u%d@%s" % (i, dom), "sent", relay=relay))
        h.wait_for("nothing held for %s" % dom, lambda: self.held(e, dom) == 0)

    def stays_held(self, e, dom, why_re, n=MSGS):
        """ETRN dom: the drain starts, ends on the logged look-up failure
        why_re, nothing goes anywhere; the next ETRN starts a new drain
        (253: the first one is over) and fails alike."""
        mark = e.log_mark()
        self.assertEqual(etrn(e, dom)[0], 253)
        line = r"drain %s: cannot resolve: %s; mail stays queued" % (re.escape(dom), why_re)
        e.wait_log(line, since=mark)
        self.assertEqual(self.held(e, dom), n)
        # The line comes just before the drain lets the domain go: an ETRN
        # in between joins it (252, starting nothing); the next one is new.
        h.wait_for("a new drain of %s" % dom, lambda: etrn(e, dom)[0] == 253, poll=0.2)
        e.wait_log(line, count=2, since=mark)
        self.assertEqual(self.held(e, dom), n)
        self.assertNotRegex(e.stderr_text()[mark:], r"drain %s \(shard \d+\): \d+ message"
                            % re.escape(dom), "a drain that did not resolve started a job")


class DrainDestNameTest(DnsCase):
    def test_dest_host_names(self):
        """A row's dest "name:port" is that host's addresses (never its
        MX): A, an alias (CNAME), AAAA only, and an answer with TC set
        over UDP, which the resolver asks again over TCP."""
        s4 = self.sink()
        s6 = self.sink("::1")
        dns = self.dns({
            "mail.a.test": [("A", h.HOST), ("MX", 10, "elsewhere.test")],
            "alias.b.test": [("CNAME", "real.b.test")],
            "real.b.test": [("A", h.HOST)],
            "v6.c.test": [("AAAA", "::1")],
            "big.d.test": [("TRUNCATE",), ("A", h.HOST)],
        })
        e = self.etrnd(dns)
        cases = (("a.test", "mail.a.test", s4), ("b.test", "alias.b.test", s4),
                 ("c.test", "v6.c.test", s6), ("d.test", "big.d.test", s4))
        for dom, host, sink in cases:
            self.domain(e, dom, "--dest", "%s:%d" % (host, sink.port),
                        "--etrn-from", "127.0.0.0/8")
            self.hold(e, dom)
        for dom, host, sink in cases:
            addr = "[::1]" if sink is s6 else "[%s]" % h.HOST
            relay = "%s%s:%d" % (host, addr, sink.port)
            self.drained(e, dom, relay)
            e.wait_log(r"drain %s: dest %s:%d: 1 address\(es\) to try: %s$" % (
                re.escape(dom), re.escape(host), sink.port, re.escape(relay)))
        self.assertEqual(s4.wait_count(3 * MSGS) and s4.count(), 3 * MSGS)
        self.assertEqual(s6.wait_count(MSGS) and s6.count(), MSGS)
        self.assertEqual(dns.queries("elsewhere.test"), [], "a dest is no MX")
        self.assertEqual(dns.queries("mail.a.test", "MX"), [], "a dest is no MX")
        self.assertTrue(dns.queries("alias.b.test", "A"), "the alias was never asked")
        self.assertIn(("tcp", "big.d.test", "A"), dns.queries("big.d.test"),
                      "the truncated answer was not asked again over TCP")


class DrainMxTest(DnsCase):
    def test_best_mx_only(self):
        """dest = mx: the MX with the lowest preference takes everything
        (listed first in the drain's log), the other sees nothing."""
        self.need_root()
        best, backup = self.mx_sink(), self.mx_sink()
        dns = self.dns({
            # The answer's order is not the preference order.
            "pref.test": [("MX", 20, "backup.pref.test"), ("MX", 10, "best.pref.test")],
            "best.pref.test": [("A", best.host)],
            "backup.pref.test": [("A", backup.host)],
        })
        e = self.etrnd(dns)
        self.domain(e, "pref.test", "--dest", "mx", "--etrn-from", "127.0.0.0/8")
        self.hold(e, "pref.test")
        relay = "best.pref.test[%s]:25" % best.host
        self.drained(e, "pref.test", relay)
        e.wait_log(r"drain pref\.test: mx pref\.test: 2 address\(es\) to try: %s, "
                   r"backup\.pref\.test\[%s\]:25$" % (re.escape(relay), re.escape(backup.host)))
        self.assertTrue(best.wait_count(MSGS))
        self.assertEqual(best.count(), MSGS)
        self.assertEqual(backup.count(), 0)
        self.assertEqual([q[2] for q in dns.queries("pref.test")][:1], ["MX"])

    def test_first_mx_dead_next_takes_it(self):
        """The best MX refuses connections: each shard's drain gives up on
        it at the first refusal and goes on to the next MX, which gets
        every message; nothing is left held."""
        self.need_root()
        dead = random_loopback(SMTP_PORT)
        live = self.mx_sink()
        dns = self.dns({
            "fall.test": [("MX", 10, "dead.fall.test"), ("MX", 20, "live.fall.test")],
            "dead.fall.test": [("A", dead)],
            "live.fall.test": [("A", live.host)],
        })
        e = self.etrnd(dns)
        self.domain(e, "fall.test", "--dest", "mx", "--etrn-from", "127.0.0.0/8")
        self.hold(e, "fall.test")
        dead_relay = "dead.fall.test[%s]:25" % dead
        live_relay = "live.fall.test[%s]:25" % live.host
        self.drained(e, "fall.test", live_relay)
        log = e.stderr_text()
        self.assertRegex(log, r"drain fall\.test: connect to %s: Connection refused; "
                         r"the next address follows" % re.escape(dead_relay))
        moved = re.findall(r"drain fall\.test \(shard \d+\): gave up on %s \(connect to %s: "
                           r"Connection refused\); (\d+) message\(s\) go to the next address, "
                           r"%s \(2 of 2\)" % (re.escape(dead_relay), re.escape(dead_relay),
                                               re.escape(live_relay)), log)
        self.assertTrue(moved, "no fallback logged:\n" + log[-3000:])
        self.assertEqual(sum(int(n) for n in moved), MSGS)
        self.assertTrue(live.wait_count(MSGS))
        self.assertEqual(live.count(), MSGS)
        self.assertNotRegex(log, r"status=sent.*relay=%s" % re.escape(dead_relay))

    def test_backup_mx_drains_to_better_mx_only(self):
        """The usual ETRN set-up: the customer's server is the best MX and
        etrnd (its hostname) the backup. The drain goes to the better MX
        only (RFC 5321 5.1); when that one refuses, the mail stays held and
        etrnd never connects to itself."""
        self.need_root()
        cust = random_loopback(SMTP_PORT)
        dns = self.dns({
            "backup.test": [("MX", 10, "cust.backup.test"), ("MX", 20, "mx.test.invalid")],
            "cust.backup.test": [("A", cust)],
            "mx.test.invalid": [("A", h.HOST)],
        })
        e = self.etrnd(dns, hostname="mx.test.invalid")
        self.domain(e, "backup.test", "--dest", "mx", "--etrn-from", "127.0.0.0/8")
        self.hold(e, "backup.test")
        cust_relay = "cust.backup.test[%s]:25" % cust
        self.assertEqual(etrn(e, "backup.test")[0], 253)
        e.wait_log(r"drain backup\.test: mx backup\.test: 1 address\(es\) to try: %s$"
                   % re.escape(cust_relay))
        e.wait_log(r"connect to %s: Connection refused; mail stays queued" % re.escape(cust_relay))
        h.wait_for("a new drain of backup.test", lambda: etrn(e, "backup.test")[0] == 253,
                   poll=0.2)
        self.assertEqual(self.held(e, "backup.test"), MSGS)
        self.assertNotIn("mx.test.invalid[", e.stderr_text())

    def test_every_mx_dead_mail_stays(self):
        """Both MX hosts refuse: each shard tries both, once each in
        order, and the mail stays held for the next ETRN."""
        self.need_root()
        d1, d2 = random_loopback(SMTP_PORT), random_loopback(SMTP_PORT)
        dns = self.dns({
            "gone.test": [("MX", 10, "a.gone.test"), ("MX", 20, "b.gone.test")],
            "a.gone.test": [("A", d1)],
            "b.gone.test": [("A", d2)],
        })
        e = self.etrnd(dns)
        self.domain(e, "gone.test", "--dest", "mx", "--etrn-from", "127.0.0.0/8")
        self.hold(e, "gone.test")
        self.assertEqual(etrn(e, "gone.test")[0], 253)
        started = r"drain gone\.test \(shard \d+\): \d+ message\(s\) to "
        ended = r"drain gone\.test \(shard \d+\): 0 sent, 0 deferred, 0 bounced, (\d+) not"
        h.wait_for("every shard's drain over", lambda: re.findall(started, e.stderr_text())
                   and len(re.findall(started, e.stderr_text()))
                   == len(re.findall(ended, e.stderr_text())))
        log = e.stderr_text()
        self.assertEqual(sum(int(n) for n in re.findall(ended, log)), MSGS)
        self.assertEqual(self.held(e, "gone.test"), MSGS)
        a_relay = "a.gone.test[%s]:25" % d1
        b_relay = "b.gone.test[%s]:25" % d2
        self.assertRegex(log, r"gave up on %s \(connect to %s: Connection refused\); \d+ "
                         r"message\(s\) go to the next address, %s \(2 of 2\)"
                         % (re.escape(a_relay), re.escape(a_relay), re.escape(b_relay)))
        self.assertRegex(log, r"connect to %s: Connection refused; mail stays queued"
                         % re.escape(b_relay))
        self.assertRegex(log, r"drain gone\.test \(shard \d+\) to %s: \d+ connection\(s\) "
                         r"ended early; giving up, \d+ message\(s\) stay queued for the "
                         r"next ETRN" % re.escape(b_relay))


class DrainLookupFailureTest(DnsCase):
    def test_failed_lookups_keep_mail_held(self):
        """NXDOMAIN and a null MX (permanent), SERVFAIL, no answer at all
        and our own name as the best MX (temporary): the drain ends at once
        (or at dns_timeout), says why, and the mail stays held; no drain
        job starts, nothing is bounced."""
        dns = self.dns({
            "servfail.test": [("SERVFAIL",)],
            "silent.test": [("TIMEOUT",)],
            "nullmx.test": [("MX", 0, ".")],
            # Our own name (the harness's hostname) is the best MX: a
            # backup MX never sends to itself (RFC 5321 5.1).
            "self.test": [("MX", 10, "mx.test.invalid"), ("MX", 20, "other.self.test")],
            "mx.test.invalid": [("A", h.HOST)],
            "other.self.test": [("A", h.HOST)],
        })
        e = self.etrnd(dns, dns_timeout=DNS_TIMEOUT, hostname="mx.test.invalid")
        for dom in ("nx.test", "servfail.test", "silent.test", "nullmx.test", "self.test"):
            self.domain(e, dom, "--dest", "mx", "--etrn-from", "127.0.0.0/8")
            self.hold(e, dom)
        self.stays_held(e, "nx.test", r"MX lookup of nx\.test: NXDOMAIN \(permanent\)")
        self.stays_held(e, "nullmx.test",
                        r"nullmx\.test has a null MX \(RFC 7505\): it accepts no mail \(permanent\)")
        self.stays_held(e, "servfail.test", r"MX lookup of servfail\.test: .* \(temporary\)")
        self.stays_held(e, "silent.test", r".*silent\.test.* \(temporary\)")
        self.stays_held(e, "self.test", r"mail for self\.test loops back to myself: "
                        r"mx\.test\.invalid is its best MX \(temporary\)")
        self.assertTrue(dns.queries("silent.test", "MX"), "the silent name was never asked")
        self.assertNotIn("status=bounced", e.stderr_text())


class OutboundDnsTest(DnsCase):
    """mode deliver: the scheduler routes by MX through the same server."""

    def test_outbound_mx_fallback(self):
        """The first MX refuses: the scheduler marks it dead and delivers
        to the second at once."""
        self.need_root()
        dead = random_loopback(SMTP_PORT)
        live = self.mx_sink()
        dns = self.dns({
            "out.test": [("MX", 5, "dead.out.test"), ("MX", 50, "live.out.test")],
            "dead.out.test": [("A", dead)],
            "live.out.test": [("A", live.host)],
        })
        e = self.etrnd(dns, test_clock="yes")
        self.domain(e, "out.test", "--mode", "deliver")
        qid = send(e.port, "u@out.test")
        live_relay = "live.out.test[%s]:25" % live.host
        e.wait_log(h.log_field_re("u@out.test", "sent", relay=live_relay, qid=qid))
        e.wait_log(r"sched \(shard \d+\): dead\.out\.test\[%s\]:25 is dead for \d+ s: "
                   r"connect to" % re.escape(dead))
        self.assertTrue(live.wait_count(1))
        self.assertEqual(live.messages()[0]["rcpts"], ["u@out.test"])

    def test_outbound_nxdomain_and_null_mx_bounce(self):
        """A recipient domain that does not exist (5.1.2) or takes no mail
        (null MX, 5.1.10) is bounced at once, with a DSN to the sender,
        whose route ("dsnmx.test:PORT", no brackets: that domain's MX on
        PORT) is looked up in the same DNS."""
        dsn = self.sink()
        h.route_add(self.url, "sender.test", "dsnmx.test:%d" % dsn.port)
        dns = self.dns({"nullo.test": [("MX", 0, ".")],
                        "dsnmx.test": [("MX", 10, "in.dsnmx.test")],
                        "in.dsnmx.test": [("A", h.HOST)]})
        e = self.etrnd(dns, test_clock="yes")
        self.domain(e, "nxo.test", "--mode", "deliver")
        self.domain(e, "nullo.test", "--mode", "deliver")
        dsn_relay = "in.dsnmx.test[%s]:%d" % (h.HOST, dsn.port)
        for dom, status in (("nxo.test", r"5\.1\.2"), ("nullo.test", r"5\.1\.10")):
            qid = send(e.port, "u@" + dom, sender="alice@sender.test")
            e.wait_log(r"%s: to=<u@%s>, relay=none, .*dsn=%s, status=bounced" % (
                qid, re.escape(dom), status))
            dqid = e.wait_log(r"%s: sender non-delivery notification: (%s)" % (
                qid, h.QID_RE))[0]
            e.wait_log(h.log_field_re("alice@sender.test", "sent", relay=dsn_relay, qid=dqid))
        self.assertTrue(dsn.wait_count(2), "the DSNs never reached the sender")
        got = sorted(m["msg"].as_string() for m in dsn.messages())
        self.assertIn("5.1.10", got[0] + got[1])
        self.assertIn("5.1.2", got[0] + got[1])
        self.assertEqual(self.held(e, "nxo.test") + self.held(e, "nullo.test"), 0)

    def test_outbound_timeout_and_servfail_defer(self):
        """No answer (dns_timeout) and SERVFAIL are temporary: the mail is
        deferred (4.4.3), stays queued, and nothing is bounced."""
        dns = self.dns({"slow.test": [("TIMEOUT",)], "sf.test": [("SERVFAIL",)]})
        e = self.etrnd(dns, test_clock="yes", dns_timeout=DNS_TIMEOUT)
        for dom in ("slow.test", "sf.test"):
            self.domain(e, dom, "--mode", "deliver")
            qid = send(e.port, "u@" + dom)
            e.wait_log(r"%s: to=<@%s>, relay=none, .*dsn=4\.4\.3, status=deferred \(.*%s" % (
                qid, re.escape(dom), re.escape(dom)))
            self.assertEqual(self.held(e, dom), 1)
        self.assertNotIn("status=bounced", e.stderr_text())


if __name__ == "__main__":
    unittest.main()
