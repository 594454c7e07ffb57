# SPDX-License-Identifier: MIT
"""SPF at MAIL FROM and no backscatter (issue 19, points 3 and 4), end to
end: etrnd's resolver asks dns_server.py (a real DNS server on a loopback
port) for the senders' TXT records; libspf2 evaluates them; Python's
smtplib is the client; Postfix's smtp-sink and aiosmtpd
(scripted_server.py) are the servers mail and bounces go to. Domains are
provisioned with etrnctl in a private redis-server; routes point at
loopback ports.

spf = on: pass, softfail, none and the null sender's HELO identity are
taken, each stored with its Received-SPF field on top; fail gets 550
5.7.23, a DNS failure (SERVFAIL) 451 4.7.24; each decision is logged and
counted (etrnd_spf_results_total). spf = log takes everything. No
backscatter: a message from an SPF-failing sender (taken in log mode)
whose delivery gets 5xx is bounced without a DSN (logged,
etrnd_bounces_suppressed_total{reason="spf_fail"}); the same from a
passing or softfailing sender gets its DSN. Clients in mynetworks are not
checked. With recipient validation on,
an unknown recipient is refused at RCPT, and a validated one the customer's
server refuses later still bounces to its (SPF-passing) sender.

The clients connect from 127.0.0.1: etrnd checks loopback clients like
any other (libspf2 alone would pass every loopback client).
"""

import re
import smtplib
import unittest

import etrnd_harness as h
from dns_server import DnsServer
from test_outbound import OutboundCase, dsn_parts, rcpt_reply
from test_redis import wait_code

QUEUED_RE = re.compile(rb"queued as ([0-9A-F]{14})")
TABLE_WAIT_S = 20.0
# A check's deadline: long enough for a loaded machine, short enough that a
# test never waits on a silent server (none here answers late).
SPF_TIMEOUT = "10s"
HELO = "client.spf.test"

ZONE = {
    "pass.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all"), ("TXT", "some other text")],
    "fail.test": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "soft.test": [("TXT", "v=spf1 ~all")],
    "none.test": [("A", "192.0.2.1")],
    "servfail.test": [("SERVFAIL",)],
    "helo.spf.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
}


def mail_reply(port, sender, helo=HELO, source=None):
    """The reply to MAIL FROM:<sender> (code, text), from source (our
    address) when given."""
    src = (source, 0) if source else None
    with smtplib.SMTP(h.HOST, port, timeout=30, source_address=src) as s:
        s.ehlo(helo)
        code, text = s.mail(sender)
        s.rset()
        return code, text.decode("utf-8", "replace")


def send(port, sender, rcpt, subject, helo=HELO):
    """One message; its queue id."""
    msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nspf test\r\n"
           % (sender or "postmaster@" + helo, rcpt, subject)).encode()
    with smtplib.SMTP(h.HOST, port, timeout=30) as s:
        s.ehlo(helo)
        code, text = s.mail(sender)
        if code != 250:
            raise AssertionError("MAIL %s: %d %r" % (sender, code, text))
        code, text = s.rcpt(rcpt)
        if code != 250:
            raise AssertionError("RCPT %s: %d %r" % (rcpt, code, text))
        code, text = s.data(msg)
    if code != 250:
        raise AssertionError("DATA: %d %r" % (code, text))
    return QUEUED_RE.search(text).group(1).decode()


def labelled(e, name):
    """{label text: value} of one series from the control socket's metrics."""
    out = {}
    for line in h.control_request(e.ctl_path(), "metrics").splitlines():
        m = re.match(r"%s\{([^}]*)\} (\S+)$" % re.escape(name), line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def spf_field(body):
    """Our Received-SPF field of a stored body, unfolded: it comes first,
    above our Received:."""
    if not body.startswith(b"Received-SPF: "):
        raise AssertionError("no Received-SPF on top: %r" % body[:200])
    end = body.find(b"\r\nReceived: ")
    if end < 0:
        raise AssertionError("our Received: does not follow: %r" % body[:400])
    return re.sub(r"\r\n[ \t]+", " ", body[:end].decode("ascii"))


class SpfCase(OutboundCase):
    def setUp(self):
        super().setUp()
        self.dns = DnsServer(ZONE).start()
        self.addCleanup(self.dns.stop)

    def spf_etrnd(self, mode):
        return self.etrnd(spf=mode, dns_servers=self.dns.addr(), spf_timeout=SPF_TIMEOUT)


class SpfAtMailTest(SpfCase):
    def test_on_results_replies_and_fields(self):
        self.ctl("domain", "add", "cust.test")
        e = self.spf_etrnd("on")
        wait_code(e, "cust.test", 250, TABLE_WAIT_S)
        # wait_code's probes were checked too: count from here.
        before = labelled(e, "etrnd_spf_results_total")

        q = {}
        for who in ("pass", "soft", "none"):
            q[who] = send(e.port, "a@%s.test" % who, "u@cust.test", "spf-" + who)
        q["null"] = send(e.port, "", "u@cust.test", "spf-null", helo="helo.spf.test")
        code, text = mail_reply(e.port, "a@fail.test")
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith("5.7.23 "), text)
        self.assertIn("fail.test", text)
        code, text = mail_reply(e.port, "a@servfail.test")
        self.assertEqual(code, 451, text)
        self.assertTrue(text.startswith("4.7.24 "), text)

        e.wait_log(r"spf: client=127\.0\.0\.1, from=<a@pass\.test>, result=pass \(.*\), accepted")
        e.wait_log(r"spf: client=127\.0\.0\.1, from=<a@fail\.test>, result=fail \(.*\), rejected")
        e.wait_log(r"spf: client=127\.0\.0\.1, from=<a@servfail\.test>, result=temperror "
                   r"\(.*\), deferred")
        e.wait_log(r"spf: client=127\.0\.0\.1, helo=<helo\.spf\.test>, result=pass")
        counts = labelled(e, "etrnd_spf_results_total")
        want = {"pass": 2, "fail": 1, "softfail": 1, "none": 1, "temperror": 1,
                "neutral": 0, "permerror": 0}
        self.assertEqual({k: counts.get('result="%s"' % k) - before.get('result="%s"' % k, 0)
                          for k in want},
                         {k: float(v) for k, v in want.items()})
        # The TXT records were asked over DNS, not taken from anywhere else.
        self.assertTrue(self.dns.queries("pass.test", "TXT"))

        e.stop()
        recs = {r["qid"]: r for r in h.msg_records(e.spool_dir)}
        self.assertEqual(sorted(recs), sorted(q.values()), "only the four taken are stored")
        fields = {who: spf_field(h.stored_body(recs[qid])) for who, qid in q.items()}
        self.assertRegex(fields["pass"], r"^Received-SPF: pass \(.*\) client-ip=127\.0\.0\.1; "
                         r"envelope-from=\"a@pass\.test\"; helo=\"client\.spf\.test\"; "
                         r"receiver=\"[^\"]+\"; identity=mailfrom$")
        self.assertRegex(fields["soft"], r"^Received-SPF: softfail ")
        self.assertRegex(fields["none"], r"^Received-SPF: none ")
        self.assertRegex(fields["null"], r"^Received-SPF: pass .*identity=helo$")

    def test_log_mode_takes_fail(self):
        self.ctl("domain", "add", "cust.test")
        e = self.spf_etrnd("log")
        wait_code(e, "cust.test", 250, TABLE_WAIT_S)
        qid = send(e.port, "a@fail.test", "u@cust.test", "spf-log")
        e.wait_log(r"spf: client=127\.0\.0\.1, from=<a@fail\.test>, result=fail \(.*\), logged")
        e.stop()
        rec = [r for r in h.msg_records(e.spool_dir) if r["qid"] == qid][0]
        self.assertRegex(spf_field(h.stored_body(rec)), r"^Received-SPF: fail ")


    def test_mynetworks_not_checked(self):
        """Clients in mynetworks (like authenticated ones) are ours: not
        checked, as Postfix's permit_mynetworks comes before its SPF policy
        service. A client outside it is."""
        self.ctl("domain", "add", "cust.test")
        e = self.etrnd(spf="on", dns_servers=self.dns.addr(), spf_timeout=SPF_TIMEOUT,
                       mynetworks="127.0.0.1/32")
        wait_code(e, "cust.test", 250, TABLE_WAIT_S)
        code, text = mail_reply(e.port, "a@fail.test", source="127.0.0.2")
        self.assertEqual(code, 550, text)
        e.wait_log(r"spf: client=127\.0\.0\.2, from=<a@fail\.test>, result=fail")
        code, text = mail_reply(e.port, "a@fail.test")
        self.assertEqual(code, 250, text)
        self.assertNotRegex(e.stderr_text(), r"spf: client=127\.0\.0\.1, ")


class BackscatterTest(SpfCase):
    def test_no_dsn_to_spf_failed_sender(self):
        """Delivery gets 550 for all three; the passing and the softfailing
        senders get their DSN, the failing one (taken in log mode) none."""
        peer = self.scripted(reject={"nobody@rej.test": "550 5.1.1 <nobody@rej.test>: no such user"})
        self.deliver_domain("rej.test", peer.route())
        dsn_sink = self.sink()
        for dom in ("pass.test", "soft.test", "fail.test"):
            h.route_add(self.url, dom, dsn_sink.route())
        e = self.spf_etrnd("log")
        wait_code(e, "rej.test", 250, TABLE_WAIT_S)

        qf = send(e.port, "alice@fail.test", "nobody@rej.test", "bs-fail")
        qp = send(e.port, "bob@pass.test", "nobody@rej.test", "bs-pass")
        qs = send(e.port, "carol@soft.test", "nobody@rej.test", "bs-soft")
        for q in (qf, qp, qs):
            e.wait_log(h.log_field_re("nobody@rej.test", "bounced", qid=q))
        e.wait_log(r"%s: bounce to <alice@fail\.test> not sent: the sender's domain failed "
                   r"SPF \(no backscatter\)" % qf)
        dp = e.wait_log(r"%s: sender non-delivery notification: (%s)" % (qp, h.QID_RE))[0]
        ds = e.wait_log(r"%s: sender non-delivery notification: (%s)" % (qs, h.QID_RE))[0]
        e.wait_log(h.log_field_re("bob@pass.test", "sent", qid=dp))
        e.wait_log(h.log_field_re("carol@soft.test", "sent", qid=ds))
        self.assertTrue(dsn_sink.wait_count(2))
        self.assertEqual(labelled(e, "etrnd_bounces_suppressed_total"),
                         {'reason="spf_fail"': 1.0})
        # Nothing more comes: no DSN to alice, now or later.
        self.still(e, e.log_mark(), "two DSNs, none to alice", dsn_sink.count, 2)
        self.assertNotRegex(e.stderr_text(), r"%s: sender non-delivery notification" % qf)
        got = sorted(m["rcpts"][0] for m in dsn_sink.messages())
        self.assertEqual(got, ["bob@pass.test", "carol@soft.test"])
        for m in dsn_sink.messages():
            _, per_rcpt, _ = dsn_parts(m["msg"])
            self.assertEqual(per_rcpt[0]["Status"].strip(), "5.1.1")

        e.stop()
        recs = h.spool_json(e.spool_dir)
        done = {(r["qid"], r["rcpt"]) for r in recs if r["type"] == "DONE"}
        self.assertIn((qf, 0), done, "the failed sender's recipient is done all the same")
        msgs = sorted(r["qid"] for r in recs if r["type"] == "MSG")
        self.assertEqual(msgs, sorted([qf, qp, qs, dp, ds]), "three messages, two DSNs")

    def test_validated_recipient_still_bounces(self):
        """Recipient validation on (issue 19 point 1): an unknown recipient
        is refused at RCPT (550 5.1.1, no bounce ever); a validated one the
        customer's server refuses later (550) is bounced to its sender,
        whose domain passed SPF, with a DSN."""
        peer = self.scripted(reject={"gone@val.test": "550 5.1.1 <gone@val.test>: mailbox gone"})
        self.ctl("domain", "add", "val.test", "--mode", "deliver", "--rcpt-check", "on")
        self.ctl("rcpt", "add", "val.test", "gone")
        h.route_add(self.url, "val.test", peer.route())
        dsn_sink = self.sink()
        h.route_add(self.url, "pass.test", dsn_sink.route())
        e = self.spf_etrnd("on")
        h.wait_for("val.test and its recipients loaded",
                   lambda: rcpt_reply(e.port, "bob@pass.test", "gone@val.test")[0] == 250,
                   within=TABLE_WAIT_S)

        with smtplib.SMTP(h.HOST, e.port, timeout=30) as c:
            c.ehlo(HELO)
            self.assertEqual(c.mail("bob@pass.test")[0], 250)
            code, text = c.rcpt("stranger@val.test")
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith(b"5.1.1 "), text)
        q = send(e.port, "bob@pass.test", "gone@val.test", "validated")
        e.wait_log(h.log_field_re("gone@val.test", "bounced", qid=q))
        d = e.wait_log(r"%s: sender non-delivery notification: (%s)" % (q, h.QID_RE))[0]
        e.wait_log(h.log_field_re("bob@pass.test", "sent", qid=d))
        self.assertTrue(dsn_sink.wait_count(1))
        m = dsn_sink.messages()[0]
        self.assertEqual((m["sender"], m["rcpts"]), ("", ["bob@pass.test"]))
        _, per_rcpt, _ = dsn_parts(m["msg"])
        self.assertEqual(per_rcpt[0]["Final-Recipient"], "rfc822; gone@val.test")
        self.assertEqual(labelled(e, "etrnd_bounces_suppressed_total"),
                         {'reason="spf_fail"': 0.0})


if __name__ == "__main__":
    unittest.main()
