# SPDX-License-Identifier: MIT
"""Pipelining across messages in a drain (issue 17 point 5, RFC 2920 3.1):
etrnd sends message N+1's MAIL, RCPT and DATA behind message N's final
dot, never N+1's body before its own 354, and marks a message DONE only
after the reply to that message's own dot.

A raw scripted customer (it must see exactly which bytes came before which
reply) counts, for each final dot, whether the next MAIL had already
arrived when it sent the dot's reply ("behind"), records every message it
accepted by Message-ID, and can: not offer PIPELINING, refuse the second
MAIL of a connection, hang up after the second dot without replying, and
answer every command slowly. Each case checks what was delivered (each
message once), what stays held (the queue index over the control socket)
and that a second ETRN delivers the rest. Loopback only; every process is
stopped by PID."""

import os
import re
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etrnd_harness as h  # noqa: E402
from test_drain_stalled import StallingServer  # noqa: E402
from test_etrn import etrn, hold  # noqa: E402
from test_redis import Redis, etrnctl  # noqa: E402

DOMAIN = "pipe.test"
N = 12                       # messages held per case
DRAIN_WAIT_S = 120           # a loaded machine; not a bound on anything
MID_RE = re.compile(rb"^Message-ID: (<[^>]*>)", re.M | re.I)


class PipeCustomer(StallingServer):
    """The stalling server's listener and accept loop, with a whole SMTP
    session instead. pipelining: offer PIPELINING in EHLO. reject_mail:
    the nth MAIL of the first connection gets 452 (its RCPT and DATA then
    503). drop_dot: the first connection hangs up, unanswered, after its
    nth final dot. delay: seconds before each reply (a slow customer)."""

    def __init__(self, port, pipelining=True, reject_mail=0, drop_dot=0, delay=0.0):
        super().__init__(port)
        # Ordinary socket buffers (the stalling server shrinks them).
        self.lis.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.pipelining, self.reject_mail, self.drop_dot = pipelining, reject_mail, drop_dot
        self.delay = delay
        self.lock = threading.Lock()
        self.accepted = []        # Message-IDs, in order
        self.behind = 0           # dots answered with the next MAIL already in
        self.dots = 0
        self.conns = 0
        self.rejected_behind = None  # the refused MAIL came behind a dot
        self.sessions = []        # per connection: (Message-ID, behind) per dot

    def _send(self, s, text):
        if self.delay:
            time.sleep(self.delay)  # the customer's slowness, not a test wait
        s.sendall(text.encode())

    @staticmethod
    def _pending(s):
        """What has arrived without waiting (the dot's reply not sent yet)."""
        s.setblocking(False)
        try:
            return s.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return b""
        finally:
            s.setblocking(True)

    def _session(self, s, first):
        buf, body, mails, dots, data_ok, mail_ok = b"", None, 0, 0, False, False
        last_behind = False
        seq = []
        with self.lock:
            self.sessions.append(seq)
        self._send(s, "220 pipe.customer.test ESMTP\r\n")
        while not self.stop_ev.is_set():
            while b"\r\n" not in buf:
                data = s.recv(1 << 16)
                if not data:
                    return
                buf += data
            line, buf = buf.split(b"\r\n", 1)
            if body is not None:
                if line != b".":
                    body.append(line)
                    continue
                dots += 1
                if self.delay:
                    time.sleep(self.delay)
                buf += self._pending(s)
                last_behind = buf.upper().startswith(b"MAIL FROM")
                with self.lock:
                    self.dots += 1
                    self.behind += last_behind
                if first and dots == self.drop_dot:
                    return  # gone before the reply: nothing was accepted
                m = MID_RE.search(b"\r\n".join(body))
                with self.lock:
                    self.accepted.append(m.group(1).decode() if m else "?")
                    seq.append((self.accepted[-1], last_behind))
                body = None
                s.sendall(b"250 2.0.0 Ok: queued\r\n")
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                caps = ["pipe.customer.test"] + (["PIPELINING"] if self.pipelining else []) + \
                    ["8BITMIME"]
                self._send(s, "".join("250%s%s\r\n" % ("-" if i < len(caps) - 1 else " ", c)
                                      for i, c in enumerate(caps)))
            elif verb == b"MAIL":
                mails += 1
                if first and mails == self.reject_mail:
                    with self.lock:
                        self.rejected_behind = last_behind
                    mail_ok = False
                    self._send(s, "452 4.3.1 Insufficient system storage\r\n")
                else:
                    mail_ok = True
                    self._send(s, "250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                self._send(s, "250 2.1.5 Ok\r\n" if mail_ok else "503 5.5.1 need MAIL\r\n")
            elif verb == b"DATA":
                data_ok, mail_ok = mail_ok, False
                if data_ok:
                    body = []
                    self._send(s, "354 go ahead\r\n")
                else:
                    self._send(s, "503 5.5.1 need RCPT\r\n")
            elif verb == b"RSET":
                mail_ok = False
                self._send(s, "250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                self._send(s, "221 2.0.0 Bye\r\n")
                return
            else:
                self._send(s, "502 5.5.2 what\r\n")

    def _serve(self, s):
        with self.lock:
            self.conns += 1
            first = self.conns == 1
        try:
            self._session(s, first)
        except OSError:
            pass
        finally:
            try:
                s.shutdown(socket.SHUT_RDWR)  # hang up; stop() closes it
            except OSError:
                pass


class DrainPipeliningTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="etrnd-pipe-")
        self.addCleanup(h.remove_tmp, tmp)  # runs last: after Redis stops
        self.redis = Redis(tmp).start()
        self.addCleanup(self.redis.stop)
        self.cport = h.free_port()
        rc, _, err = etrnctl(self.redis, "domain", "add", DOMAIN, "--dest",
                             "127.0.0.1:%d" % self.cport, "--etrn-from", "127.0.0.0/8")
        self.assertEqual(rc, 0, err)
        self.e = h.Etrnd(redis=self.redis.url(), threads="1", drain_connections="1",
                         control_socket="auto")
        self.addCleanup(self.e.cleanup)
        self.e.start()
        self.ids = hold(self.e, DOMAIN, N, "pipe")

    def customer(self, **knobs):
        c = PipeCustomer(self.cport, **knobs)
        c.start()
        self.addCleanup(c.stop)
        return c

    def drain(self):
        """ETRN, then until the drain has ended; the messages still held."""
        code, _, _ = etrn(self.e, DOMAIN)
        self.assertIn(code, (250, 251, 253))
        self.e.wait_drains_ended(within=DRAIN_WAIT_S)
        return h.indexed_messages(self.e.ctl_path(), DOMAIN)[0]

    def finish(self, c):
        """A second ETRN delivers what is left; every message arrived once."""
        self.assertEqual(self.drain(), 0)
        with c.lock:
            got = list(c.accepted)
        self.assertEqual(sorted(got), sorted(self.ids), "each held message exactly once")
        self.assertNotIn("AddressSanitizer", self.e.stderr_text())

    def test_pipelined_behind_the_dot(self):
        c = self.customer()
        self.assertEqual(self.drain(), 0)
        with c.lock:
            self.assertEqual(sorted(c.accepted), sorted(self.ids))
            # The next MAIL came with (or before the reply to) a dot.
            self.assertGreater(c.behind, 0, "no MAIL behind a dot in %d dots" % c.dots)
        self.finish(c)

    def test_no_pipelining_one_transaction_at_a_time(self):
        # A slow reply to each dot gives an early MAIL every chance to
        # show; without PIPELINING none may come before the reply.
        c = self.customer(pipelining=False, delay=0.01)
        self.assertEqual(self.drain(), 0)
        with c.lock:
            self.assertEqual(c.behind, 0, "MAIL before the dot's reply, no PIPELINING")
            self.assertEqual(c.dots, N)
        self.finish(c)

    def test_second_mail_refused_behind_the_first_dot(self):
        c = self.customer(reject_mail=2, delay=0.005)
        held = self.drain()
        with c.lock:
            self.assertTrue(c.rejected_behind, "the second MAIL did not come behind the "
                            "first dot (%r)" % c.rejected_behind)
            # 452 to message 2's MAIL: it stays held (4xx), message 1 is
            # sent; the rest go on over the same connection.
            self.assertEqual(held, 1)
            self.assertEqual(len(c.accepted), N - 1)
            self.assertEqual(len(set(c.accepted)), N - 1)
        self.assertIn("status=deferred (452 4.3.1 Insufficient system storage)",
                      self.e.stderr_text())
        self.finish(c)

    def test_drop_after_dot_before_its_reply(self):
        # The second dot is never answered: message 2 stays held (it may
        # have been taken by a real server: RFC 1047's duplicate, the
        # next ETRN sends it again); message 3, whose commands went behind
        # that dot but whose body never did, goes back to the drain and
        # out over a fresh connection; nothing delivered is sent twice.
        c = self.customer(drop_dot=2, delay=0.005)
        held = self.drain()
        with c.lock:
            self.assertEqual(held, 1)
            self.assertEqual(len(c.accepted), N - 1)
            self.assertEqual(len(set(c.accepted)), N - 1)
            self.assertGreaterEqual(c.conns, 2)
            self.assertGreater(c.behind, 0, "message 3 never came behind a dot")
        self.finish(c)

    def test_slow_customer(self):
        c = self.customer(delay=0.02)
        self.assertEqual(self.drain(), 0)
        with c.lock:
            self.assertEqual(sorted(c.accepted), sorted(self.ids))
            self.assertGreater(c.behind, 0)
        self.finish(c)


if __name__ == "__main__":
    unittest.main()
