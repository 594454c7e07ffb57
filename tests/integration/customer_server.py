# SPDX-License-Identifier: MIT
"""A customer's mail server for ETRN tests: Python's aiosmtpd (Debian's
python3-aiosmtpd, a real SMTP server we did not write) on 127.0.0.1, recording
every message it accepts, with knobs to misbehave: 452 on every Nth RCPT, 550
for chosen recipients, a delay per message. With tls_context (an
ssl.SSLContext for the server side) it offers STARTTLS (RFC 3207) and records
the TLS version and cipher each message came in over."""

import asyncio
import email
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class Recorder:
    def __init__(self, tempfail_every=0, reject=(), delay=0.0):
        self.lock = threading.Lock()
        self.messages = []          # (rcpt list, Message-ID, arrival time, tls)
        self.rcpt_seen = 0
        self.tempfail_every = tempfail_every
        self.reject = set(reject)
        self.delay = delay
        self.open_conns = 0         # connections made and not yet lost
        self.first_at = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpt_seen += 1
            n = self.rcpt_seen
        if address in self.reject:
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % address
        if self.tempfail_every and n % self.tempfail_every == 0:
            return "452 4.2.1 <%s>: mailbox busy, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        msg = email.message_from_bytes(envelope.content)
        tls = None
        ssl_object = (session.ssl or {}).get("ssl_object")
        if ssl_object is not None:
            tls = (ssl_object.version(), ssl_object.cipher()[0])
        with self.lock:
            if self.first_at is None:
                self.first_at = time.monotonic()
            self.messages.append((list(envelope.rcpt_tos), msg.get("Message-ID"),
                                  time.monotonic(), tls))
        return "250 2.0.0 OK: stored"

    def count(self):
        with self.lock:
            return len(self.messages)

    def conns(self):
        with self.lock:
            return self.open_conns

    def wait_closed(self, within):
        """Until every connection is lost (aiosmtpd then cancels a DATA
        still being answered: nothing more is recorded for it); False when
        time ran out."""
        deadline = time.monotonic() + within
        while self.conns() > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def message_ids(self):
        with self.lock:
            return [m[1] for m in self.messages]

    def tls_seen(self):
        """(version, cipher) of each message's session, None when clear."""
        with self.lock:
            return [m[3] for m in self.messages]


class CountingSMTP(SMTP):
    """aiosmtpd's SMTP, counting its open connections in the handler's
    open_conns (a Recorder's)."""

    def connection_made(self, transport):
        # A STARTTLS upgrade calls this again for the same connection.
        if self.transport is None:
            with self.event_handler.lock:
                self.event_handler.open_conns += 1
        super().connection_made(transport)

    def connection_lost(self, error):
        with self.event_handler.lock:
            self.event_handler.open_conns -= 1
        super().connection_lost(error)


class CountingController(Controller):
    def factory(self):
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


class CustomerServer:
    def __init__(self, port, tls_context=None, require_starttls=False, **knobs):
        self.recorder = Recorder(**knobs)
        tls = {}
        if tls_context is not None:
            tls = {"tls_context": tls_context, "require_starttls": require_starttls}
        self.controller = CountingController(self.recorder, hostname="127.0.0.1", port=port,
                                             ready_timeout=10, **tls)

    def start(self):
        self.controller.start()
        self.running = True
        return self

    def stop(self):
        """Stop serving; a second call (a test's own, then its cleanup's)
        does nothing."""
        if getattr(self, "running", False):
            self.running = False
            self.controller.stop()

    def wait_count(self, n, within):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.recorder.count() >= n:
                return True
            time.sleep(0.02)
        return self.recorder.count() >= n
