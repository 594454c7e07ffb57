# SPDX-License-Identifier: MIT
"""The On-Demand Mail Relay listener's own protocol (RFC 2645), against a
real etrnd over loopback, with raw sockets: the greeting, EHLO's keywords
(STARTTLS and ATRN, AUTH once TLS is up; no PIPELINING, nothing about
mail transactions), 530 for ATRN before AUTH, 502 5.5.1 for MAIL, RCPT,
DATA, ETRN, VRFY and TURN there, and the SMTP port beside it: ATRN 502
unless smtp_atrn = yes, TURN 502 always, mail still taken. The reversed
session itself (AUTH, ATRN, delivery) is test_atrn.py's. etrnd is stopped
by PID (harness cleanup).
"""

import os
import smtplib
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as h  # noqa: E402

TIMEOUT_S = 30
NOT_HERE = "not available on the on-demand mail relay port"


class Session:
    """One raw SMTP session: send a line, read one (multi-line) reply."""

    def __init__(self, testcase, port):
        self.sock = socket.create_connection((h.HOST, port), timeout=TIMEOUT_S)
        testcase.addCleanup(self.close)
        self.reader = h.Reader(self.sock)

    def close(self):
        self.sock.close()

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reader.reply()

    def starttls(self, ctx):
        code, _ = self.cmd("STARTTLS")
        assert code == 220, code
        self.sock = ctx.wrap_socket(self.sock, server_hostname=h.TLS_NAME)
        self.reader = h.Reader(self.sock)


def keywords(lines):
    """EHLO reply lines after the first, as upper-case keywords."""
    return [ln.split(" ")[0].upper() for ln in lines[1:]]


class OdmrPortTest(unittest.TestCase):
    def test_odmr_session_protocol(self):
        e = h.Etrnd.started(self, tls=True, odmr_listen="auto")
        s = Session(self, e.ports["odmr_listen"])
        code, text = s.reader.reply()
        self.assertEqual(code, 220)
        self.assertIn("on-demand mail relay", text[0])
        code, text = s.cmd("EHLO customer.test")
        self.assertEqual(code, 250, text)
        self.assertEqual(keywords(text), ["ENHANCEDSTATUSCODES", "STARTTLS", "ATRN"])
        code, text = s.cmd("ATRN demo.test")
        self.assertEqual((code, text[0][:5]), (530, "5.7.0"), text)
        for line in ("MAIL FROM:<s@example.org>", "RCPT TO:<u@demo.test>", "DATA",
                     "ETRN demo.test", "VRFY u"):
            code, text = s.cmd(line)
            self.assertEqual(code, 502, line)
            self.assertIn(NOT_HERE, text[0], line)
        code, text = s.cmd("TURN")
        self.assertEqual((code, text[0][:5]), (502, "5.5.1"), text)
        s.starttls(e.client_tls())
        code, text = s.cmd("EHLO customer.test")
        self.assertEqual(code, 250, text)
        self.assertNotIn("PIPELINING", keywords(text))
        self.assertEqual(keywords(text)[-1], "ATRN")
        self.assertNotIn("STARTTLS", keywords(text))
        self.assertEqual(s.cmd("ATRN")[0], 530)
        self.assertEqual(s.cmd("QUIT")[0], 221)

    def test_smtp_port_beside_it(self):
        """ATRN is 502 on the SMTP port by default, TURN always; a message
        is still taken there, while an ODMR session is open."""
        e = h.Etrnd.started(self, tls=True, odmr_listen="auto")
        odmr = Session(self, e.ports["odmr_listen"])
        self.assertEqual(odmr.reader.reply()[0], 220)
        with smtplib.SMTP(h.HOST, e.port, timeout=TIMEOUT_S) as c:
            c.ehlo("client.test")
            self.assertNotIn("atrn", c.esmtp_features)
            self.assertEqual(c.docmd("ATRN", "demo.test")[0], 502)
            self.assertEqual(c.docmd("TURN")[0], 502)
            c.sendmail("s@example.org", ["u@demo.test"], b"Subject: x\r\n\r\nbody\r\n")
        self.assertEqual(odmr.cmd("NOOP")[0], 250)

    def test_smtp_atrn_yes(self):
        """smtp_atrn = yes: EHLO on the SMTP port offers ATRN, which wants
        AUTH first (530), as on the ODMR port."""
        e = h.Etrnd.started(self, tls=True, smtp_atrn="yes")
        with smtplib.SMTP(h.HOST, e.port, timeout=TIMEOUT_S) as c:
            c.ehlo("client.test")
            self.assertIn("atrn", c.esmtp_features)
            self.assertEqual(c.docmd("ATRN")[0], 530)
            self.assertEqual(c.docmd("TURN")[0], 502)

    def test_bad_config_names_line(self):
        """A bad odmr_listen stops etrnd at start with file:line."""
        e = h.Etrnd(odmr_listen="localhost:366")
        self.addCleanup(e.cleanup)
        e.port = h.free_port()
        e.write_config()
        r = subprocess.run([e.bin, "-t", "-c", e.conf_path],
                                         capture_output=True, timeout=TIMEOUT_S)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"etrnd.conf:", r.stderr)
        self.assertIn(b'bad value for odmr_listen: "localhost:366"', r.stderr)


if __name__ == "__main__":
    unittest.main()
