# SPDX-License-Identifier: MIT
"""DNSBL at connect (issue 19 point 3): etrnd looks the connecting client up
in the `dnsbl` lists (Postfix's postscreen_dnsbl_sites syntax) before its
greeting, through its own resolver asking dns_server.py on a loopback port
(`dns_servers`). A client whose weights reach `dnsbl_threshold` gets
`dnsbl_reply` (554 5.7.1 naming the list) instead of the 220; everyone else
gets the 220 and is served as before. The clients are Python's smtplib
connecting from 127.0.0.2, so the lists are asked for 2.0.0.127.<list>, with
`dnsbl_skip_loopback = no` (the default, yes, skips loopback clients, which
Postfix does through mynetworks' default 127.0.0.0/8; one test shows it).
The harness's own probe at start connects from 127.0.0.1: its look-ups
(1.0.0.127.<list>, not in the zones: not listed) never count as the test
client's.

Every wait is for an event (a reply, a log line), never a fixed sleep;
deadlines are generous because the machine is loaded: a listed answer that
came after dnsbl_timeout would be taken as "not listed", so dnsbl_timeout
and dns_timeout are long except where a time-out is the point (a zone entry
that never answers). Every process is stopped by PID in the cleanups.
"""

import os
import re
import shutil
import smtplib
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as h  # noqa: E402
from dns_server import DnsServer  # noqa: E402
from test_redis import wait_log  # noqa: E402

CLIENT = "127.0.0.2"
CLIENT_Q = "2.0.0.127"            # CLIENT reversed (RFC 5782 2.1)
SMTP_WAIT_S = 120                 # smtplib's socket timeout on a loaded machine
# Long enough that a loaded machine never turns an answer into a time-out.
LONG = dict(dnsbl_timeout="50s", dns_timeout="60s")
BODY = b"Subject: dnsbl\r\n\r\nhello\r\n"


def q(site):
    return "%s.%s" % (CLIENT_Q, site)


class DnsblTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-dnsbl-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def dns(self, zone):
        d = DnsServer(zone).start()
        self.addCleanup(d.stop)
        return d

    def etrnd(self, dns, **cfg):
        conf = dict(control_socket="auto", dns_servers=dns.addr(),
                    dnsbl_skip_loopback="no")
        conf.update(LONG)
        conf.update(cfg)
        e = h.Etrnd(tmpdir=tempfile.mkdtemp(dir=self.tmp), **conf)
        self.addCleanup(e.cleanup)
        return e.start()

    def metrics_text(self, e):
        return h.control_request(e.ctl_path(), "metrics")

    def sample(self, e, series):
        """The value of one labelled sample (series as printed, e.g.
        'etrnd_dnsbl_clients_total{verdict="rejected"}'), or None."""
        m = re.search(r"^%s (\S+)$" % re.escape(series), self.metrics_text(e), re.M)
        return None if m is None else float(m.group(1))

    def served(self, e):
        """A whole session: the 220, then one message to demo.test."""
        s = smtplib.SMTP(h.HOST, e.port, timeout=SMTP_WAIT_S,
                         source_address=(CLIENT, 0))
        try:
            s.ehlo("client.test")
            s.sendmail("a@sender.test", ["b@demo.test"], BODY)
        finally:
            s.quit()

    def refused(self, e):
        """The greeting is the refusal: (code, text)."""
        with self.assertRaises(smtplib.SMTPConnectError) as cm:
            smtplib.SMTP(h.HOST, e.port, timeout=SMTP_WAIT_S,
                         source_address=(CLIENT, 0))
        return cm.exception.smtp_code, cm.exception.smtp_error.decode()

    def test_listed_client_refused_with_the_list_named(self):
        dns = self.dns({q("zen.test"): [("A", "127.0.0.2")],
                        q("clean.test"): [("NXDOMAIN",)]})
        e = self.etrnd(dns, dnsbl="zen.test*2, clean.test")
        code, text = self.refused(e)
        self.assertEqual(code, 554, text)
        self.assertEqual(text, "5.7.1 Service unavailable; client [127.0.0.2] "
                         "blocked using zen.test")
        wait_log(e, r"dnsbl: client \[127\.0\.0\.2\]: zen\.test\*2=127\.0\.0\.2\*2, "
                 r"clean\.test: not listed; score 2, threshold 1: rejected")
        # Both lists were asked, for A records only.
        self.assertEqual([x[2] for x in dns.queries(q("zen.test"))], ["A"])
        self.assertEqual([x[2] for x in dns.queries(q("clean.test"))], ["A"])
        self.assertEqual(self.sample(e, 'etrnd_dnsbl_clients_total{verdict="rejected"}'), 1)
        self.assertEqual(self.sample(
            e, 'etrnd_dnsbl_lookups_total{list="zen.test",result="listed"}'), 1)
        # RFC 5321 3.1: after the 554 the server waits for QUIT, answering
        # 503 to anything else (no mail taken on a raw session either).
        with socket.create_connection((h.HOST, e.port), timeout=SMTP_WAIT_S,
                                      source_address=(CLIENT, 0)) as c:
            f = c.makefile("rb")
            self.assertTrue(f.readline().startswith(b"554 5.7.1 "))
            for cmd in (b"EHLO client.test", b"MAIL FROM:<a@sender.test>"):
                c.sendall(cmd + b"\r\n")
                self.assertTrue(f.readline().startswith(b"503 5.5.1 "), cmd)
            c.sendall(b"QUIT\r\n")
            self.assertTrue(f.readline().startswith(b"221 "))
            self.assertEqual(f.read(), b"", "closed after QUIT")

    def test_unlisted_client_served(self):
        dns = self.dns({})
        e = self.etrnd(dns, dnsbl="zen.test")
        self.served(e)
        wait_log(e, r"dnsbl: client \[127\.0\.0\.2\]: zen\.test: not listed; score 0, "
                 r"threshold 1: passed")
        wait_log(e, r"from=<a@sender\.test>, size=\d+, nrcpt=1, client=\[127\.0\.0\.2\]")

    def test_weight_below_threshold_served(self):
        dns = self.dns({q("a.test"): [("A", "127.0.0.2")], q("b.test"): [("A", "127.0.0.2")]})
        e = self.etrnd(dns, dnsbl="a.test*2, b.test*-1, c.test", dnsbl_threshold="2")
        self.served(e)
        # 2 from a.test, -1 from the allow-list b.test: 1 < 2.
        wait_log(e, r"dnsbl: client \[127\.0\.0\.2\]: a\.test\*2=127\.0\.0\.2\*2, "
                 r"b\.test\*-1=127\.0\.0\.2\*-1, c\.test: not listed; score 1, threshold 2: passed")

    def test_weights_add_up_to_the_threshold(self):
        dns = self.dns({q("a.test"): [("A", "127.0.0.2")], q("b.test"): [("A", "127.0.0.3")]})
        e = self.etrnd(dns, dnsbl="a.test, b.test*3", dnsbl_threshold="4",
                       dnsbl_reply="554 5.7.1 $client is on $site")
        code, text = self.refused(e)
        self.assertEqual((code, text), (554, "5.7.1 127.0.0.2 is on b.test"))

    def test_filter_not_matching_served(self):
        dns = self.dns({q("zen.test"): [("A", "127.0.0.2")]})
        e = self.etrnd(dns, dnsbl="zen.test=127.0.0.[10..11];127.0.0.4")
        self.served(e)
        wait_log(e, r"zen\.test: not listed \(answer outside the filter\); score 0, "
                 r"threshold 1: passed")

    def test_filter_matching_refused(self):
        dns = self.dns({q("zen.test"): [("A", "127.0.0.4"), ("A", "127.0.0.11")]})
        e = self.etrnd(dns, dnsbl="zen.test=127.0.0.[10..11]*1")
        self.assertEqual(self.refused(e)[0], 554)

    def test_timeout_fails_open(self):
        dns = self.dns({q("slow.test"): [("TIMEOUT",)]})
        e = self.etrnd(dns, dnsbl="slow.test*5", dnsbl_timeout="1s")
        self.served(e)
        wait_log(e, r"slow\.test: timeout, taken as not listed; score 0, threshold 1: passed")
        self.assertEqual(self.sample(
            e, 'etrnd_dnsbl_lookups_total{list="slow.test",result="error"}'), 1)

    def test_servfail_fails_open(self):
        dns = self.dns({q("broken.test"): [("SERVFAIL",)]})
        e = self.etrnd(dns, dnsbl="broken.test*5")
        self.served(e)
        wait_log(e, r"broken\.test: server failure, taken as not listed; score 0")

    def test_log_only(self):
        dns = self.dns({q("zen.test"): [("A", "127.0.0.2")]})
        e = self.etrnd(dns, dnsbl="zen.test", dnsbl_action="log")
        self.served(e)
        wait_log(e, r"score 1, threshold 1: listed, logged only \(dnsbl_action = log\)")
        self.assertEqual(self.sample(e, 'etrnd_dnsbl_clients_total{verdict="logged"}'), 1)

    def test_loopback_skipped_by_default(self):
        dns = self.dns({q("zen.test"): [("A", "127.0.0.2")]})
        e = self.etrnd(dns, dnsbl="zen.test", dnsbl_skip_loopback="yes")
        self.served(e)
        # The check runs before the 220: once served, it was skipped or done.
        self.assertEqual(dns.queries(q("zen.test")), [])

    def test_mynetworks_skipped(self):
        dns = self.dns({q("zen.test"): [("A", "127.0.0.2")]})
        e = self.etrnd(dns, dnsbl="zen.test", mynetworks="127.0.0.0/8")
        self.served(e)
        self.assertEqual(dns.queries(q("zen.test")), [])

if __name__ == "__main__":
    unittest.main()
