# SPDX-License-Identifier: MIT
"""The customer's side of On-Demand Mail Relay (RFC 2645), written for the
tests: a mail server on a dynamic address that connects to the ISP's ODMR
port, and then serves the reversed session on the same socket.

As a client: 220, EHLO, STARTTLS (RFC 3207) when given a TLS context, EHLO
again, AUTH PLAIN (RFC 4954) when given credentials, ATRN [d1,d2,...]. A
reply other than "250" to ATRN ends the client there (the test reads
atrn_reply and may go on with cmd(), e.g. QUIT). After the 250 the same
connection (inside the same TLS session when one is up) turns around: this
side sends its 220, answers EHLO with PIPELINING, takes MAIL, RCPT and DATA
and records every message byte for byte (dot-unstuffed, without the final
"."), answers QUIT with 221.

Knobs: drop_after N (after the 250 of the Nth message the TCP connection is
cut without a reply or a TLS close), fail421_after N (the command after
the Nth message gets 421 and the connection is closed), delay (seconds
before each message's 250: a slow customer), silent (no 220 after the
250: the session must be ended by etrnd's drain_greeting_timeout). Every read has a socket time-out
and every line and message a size bound, so a test using it is bounded.
Loopback only.
"""

import base64
import socket
import struct
import threading
import time

HOST = "127.0.0.1"
TLS_NAME = "mx.test.invalid"
LINE_MAX = 4096                 # a command or reply line (RFC 5321: 512/1000)
MESSAGE_MAX = 64 << 20          # one message's DATA
REPLY_LINES_MAX = 100           # lines of one multi-line reply
GREETING = b"220 customer.test ESMTP odmr_client (RFC 2645 customer)\r\n"
EHLO_REPLY = (b"250-customer.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
              b"250-ENHANCEDSTATUSCODES\r\n250 SIZE 104857600\r\n")
REVERSING = "OK now reversing the connection"


class Lines:
    """CRLF lines from a socket (plain or TLS), bounded by LINE_MAX."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self, limit=LINE_MAX):
        while True:
            pos = self.buf.find(b"\r\n")
            if pos >= 0:
                out, self.buf = self.buf[:pos], self.buf[pos + 2:]
                return out
            if len(self.buf) > limit:
                raise AssertionError("line over %d octets: %r..."
                                     % (limit, self.buf[:80]))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("peer closed; unread %r" % self.buf[:200])
            self.buf += chunk

    def reply(self):
        """One SMTP reply: (code, [text lines])."""
        texts = []
        for _ in range(REPLY_LINES_MAX):
            ln = self.line()
            if len(ln) < 3 or not ln[:3].isdigit() or ln[3:4] not in (b"", b" ", b"-"):
                raise AssertionError("malformed reply line %r" % ln)
            texts.append(ln[4:].decode("utf-8", "replace"))
            if ln[3:4] != b"-":
                return int(ln[:3]), texts
        raise AssertionError("reply of more than %d lines" % REPLY_LINES_MAX)


def unstuff_line(ln):
    """RFC 5321 4.5.2: a leading "." of a data line was added by the sender."""
    return ln[1:] if ln.startswith(b".") else ln


class OdmrClient(threading.Thread):
    """One ODMR customer session. run() in a thread (start()/join()) or
    call session() directly. Results: atrn_reply (code, text), ehlo
    (code, lines of the first EHLO reply), messages (list of (mail_from,
    [rcpts], data)), commands (every command line of the reversed session,
    in order), quit (QUIT seen), error (repr of what ended it otherwise)."""

    def __init__(self, port, user=None, password=None, domains=None,
                 tls_ctx=None, server_name=TLS_NAME, drop_after=None,
                 fail421_after=None, delay=0.0, silent=False, timeout=30.0):
        super().__init__(daemon=True)
        self.port, self.user, self.password = port, user, password
        self.domains = domains        # None: "ATRN" alone; else "ATRN d1,d2"
        self.tls_ctx, self.server_name = tls_ctx, server_name
        self.drop_after, self.fail421_after = drop_after, fail421_after
        self.delay, self.timeout = delay, timeout
        self.silent = silent          # after the 250: no 220, wait for the close
        self.lock = threading.Lock()
        self.sock = self.rd = None
        self.ehlo = None
        self.auth_reply = None
        self.atrn_reply = None
        self.messages = []
        self.commands = []
        self.quit = False
        self.dropped = False
        self.error = None
        self.t_reversed = None
        self.tls_version = None

    # ---- the client half -------------------------------------------------

    def cmd(self, line):
        """Send one command line, read its reply: (code, last text line)."""
        self.sock.sendall(line.encode() + b"\r\n")
        code, texts = self.rd.reply()
        return code, texts[-1]

    def connect(self):
        self.sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
        # As a mail server's socket (asyncio's, Postfix's): replies to
        # pipelined commands go out at once, not after the peer's delayed ACK.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rd = Lines(self.sock)
        code, texts = self.rd.reply()
        if code != 220:
            raise AssertionError("greeting %d %r" % (code, texts))
        self.sock.sendall(b"EHLO customer.test\r\n")
        self.ehlo = self.rd.reply()
        if self.tls_ctx is not None:
            code, text = self.cmd("STARTTLS")
            if code != 220:
                raise AssertionError("STARTTLS got %d %r" % (code, text))
            self.sock = self.tls_ctx.wrap_socket(self.sock,
                                                 server_hostname=self.server_name)
            self.tls_version = self.sock.version()
            self.rd = Lines(self.sock)
            self.sock.sendall(b"EHLO customer.test\r\n")
            self.ehlo = self.rd.reply()
        return self

    def extensions(self):
        """EHLO keywords of the last EHLO (upper case)."""
        return [t.split()[0].upper() for t in self.ehlo[1][1:] if t.split()]

    def auth(self):
        raw = ("\0%s\0%s" % (self.user, self.password)).encode()
        self.auth_reply = self.cmd("AUTH PLAIN " + base64.b64encode(raw).decode())
        return self.auth_reply

    def atrn(self):
        line = "ATRN" if self.domains is None else "ATRN " + ",".join(self.domains)
        self.atrn_reply = self.cmd(line)
        return self.atrn_reply

    # ---- the reversed session: this side is the server -------------------

    def _send(self, data):
        self.sock.sendall(data)

    def _drop(self):
        """Cut the line: no reply, no TLS close_notify, no FIN wait."""
        self.dropped = True
        raw = self.sock
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                           struct.pack("ii", 1, 0))    # linger 0: close sends RST
        except OSError:
            pass
        raw.close()

    def _data(self):
        """DATA content until the "." line: unstuffed, CRLF-joined, without
        the final ".", as the customer's mailbox would see it."""
        lines, size = [], 0
        while True:
            ln = self.rd.line(limit=MESSAGE_MAX)
            if ln == b".":
                return b"\r\n".join(lines) + (b"\r\n" if lines else b"")
            size += len(ln) + 2
            if size > MESSAGE_MAX:
                raise AssertionError("message over %d octets" % MESSAGE_MAX)
            lines.append(unstuff_line(ln))

    def _after(self, knob):
        return knob is not None and len(self.messages) >= knob

    def serve(self):
        """The reversed session until QUIT, a drop or the peer leaving."""
        self.t_reversed = time.monotonic()
        if self.silent:
            # Never greet: wait for etrnd to give up (or the time-out).
            try:
                self.rd.line()
            except (EOFError, OSError) as ex:
                self.error = repr(ex)
            return
        self._send(GREETING)
        mail_from, rcpts = None, []
        while True:
            ln = self.rd.line()
            with self.lock:
                self.commands.append(ln.decode("utf-8", "replace"))
            verb = ln[:4].upper()
            if self._after(self.fail421_after) and verb != b"QUIT":
                self._send(b"421 4.3.2 customer.test shutting down\r\n")
                self.sock.close()
                return
            if verb in (b"EHLO", b"HELO"):
                self._send(EHLO_REPLY if verb == b"EHLO" else b"250 customer.test\r\n")
            elif verb == b"MAIL":
                mail_from, rcpts = ln[10:].decode("utf-8", "replace"), []
                self._send(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                rcpts.append(ln[8:].decode("utf-8", "replace"))
                self._send(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                if not rcpts:
                    self._send(b"503 5.5.1 no valid recipients\r\n")
                    continue
                self._send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                data = self._data()
                if self.delay:
                    time.sleep(self.delay)
                with self.lock:
                    self.messages.append((mail_from, rcpts, data))
                self._send(b"250 2.0.0 Ok: stored by customer.test\r\n")
                mail_from, rcpts = None, []
                if self._after(self.drop_after):
                    self._drop()
                    return
            elif verb in (b"RSET", b"NOOP"):
                mail_from, rcpts = (None, []) if verb == b"RSET" else (mail_from, rcpts)
                self._send(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                self.quit = True
                self._send(b"221 2.0.0 customer.test closing\r\n")
                self.sock.close()
                return
            else:
                self._send(b"502 5.5.2 command not recognized\r\n")

    # ---- the whole session -----------------------------------------------

    def session(self):
        """connect, AUTH (when credentials), ATRN; on 250 serve. Returns
        atrn_reply."""
        self.connect()
        if self.user is not None:
            self.auth()
        code, text = self.atrn()
        if code == 250:
            self.serve()
        return self.atrn_reply

    def run(self):
        try:
            self.session()
        except Exception as ex:          # recorded for the test to assert on
            self.error = repr(ex)
        finally:
            if self.sock is not None and not self.dropped:
                try:
                    self.sock.close()
                except OSError:
                    pass

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass

    def count(self):
        with self.lock:
            return len(self.messages)

    def wait_count(self, n, within):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and self.count() < n:
            if not self.is_alive():
                break
            time.sleep(0.02)
        return self.count() >= n

    def finish(self, within):
        """join; raises if the session is still running after within s."""
        self.join(timeout=within)
        if self.is_alive():
            self.close()
            self.join(timeout=5)
            raise AssertionError("ODMR session still running after %.0fs "
                                 "(%d messages, last commands %r)"
                                 % (within, self.count(), self.commands[-5:]))
