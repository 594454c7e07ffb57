# SPDX-License-Identifier: MIT
"""A destination mail server with a script, for the outbound tests (issue
13): Python's aiosmtpd (a real SMTP server we did not write, through
customer_server.CustomerServer) whose RCPT replies are taken in turn from a
list before it accepts ("451 twice, then 250"), or fixed per recipient (550
for chosen addresses). It keeps every envelope and message it accepts, and
counts the RCPTs and sessions it saw, so a test can tell the attempts apart
without trusting the sender's logs.

With etrn (a dict: node -> reply; other nodes get 250) it also offers and
answers ETRN (RFC 1985), which aiosmtpd lacks, recording each node asked
(etrn_seen), for the tests of `etrnctl etrn` (issue 14)."""

import email
import email.policy
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from customer_server import CountingSMTP, CustomerServer, Recorder


class ScriptRecorder(Recorder):
    def __init__(self, rcpt_script=(), reject=None, delay=0.0, etrn=None):
        super().__init__(delay=delay)
        self.etrn = etrn                       # None: no ETRN
        self.etrn_seen = []                    # (node, over TLS)
        self.rcpt_script = list(rcpt_script)   # replies for the first RCPTs
        self.reject_map = dict(reject or {})   # address -> reply, always
        self.rcpt_replies = []                 # (monotonic time, address, reply)
        self.sessions = 0
        self.accepted = []                     # (sender, rcpts, email.message)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        if self.etrn is not None:
            responses.insert(len(responses) - 1, "250-ETRN")
        return responses

    def etrn_reply(self, session, node):
        with self.lock:
            self.etrn_seen.append((node, bool(session.ssl)))
        return self.etrn.get(node, "250 2.0.0 queuing for node %s started" % node)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpt_seen += 1
            if address in self.reject_map:
                reply = self.reject_map[address]
            elif self.rcpt_script:
                reply = self.rcpt_script.pop(0)
            else:
                reply = "250 2.1.5 OK"
            self.rcpt_replies.append((time.monotonic(), address, reply))
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.compat32)
        with self.lock:
            self.accepted.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return reply

    def replies(self):
        with self.lock:
            return [r[2] for r in self.rcpt_replies]


class EtrnSMTP(CountingSMTP):
    """aiosmtpd's SMTP with ETRN, answered by the handler's etrn_reply()."""

    async def smtp_ETRN(self, arg):
        if not self.session.extended_smtp:
            await self.push("503 5.5.1 EHLO first")
            return
        await self.push(self.event_handler.etrn_reply(self.session, arg))


class EtrnController(Controller):
    def factory(self):
        return EtrnSMTP(self.handler, **self.SMTP_kwargs)


class ScriptedServer(CustomerServer):
    """CustomerServer with a ScriptRecorder: rcpt_script, reject, delay;
    etrn (node -> reply) answers ETRN; tls_context offers STARTTLS; auth
    (user, password) offers AUTH PLAIN and LOGIN, in the clear too, and
    counts the attempts (auth_tries)."""

    def __init__(self, port, rcpt_script=(), reject=None, delay=0.0, etrn=None,
                 tls_context=None, auth=None):
        super().__init__(port)
        self.recorder = ScriptRecorder(rcpt_script, reject, delay, etrn)
        self.controller.handler = self.recorder
        if etrn is not None:
            kw = {"tls_context": tls_context} if tls_context else {}
            if auth:
                kw.update(authenticator=self._authenticator(auth), auth_require_tls=False)
            self.auth_tries = []
            self.controller = EtrnController(self.recorder, hostname="127.0.0.1", port=port,
                                             ready_timeout=10, **kw)

    def _authenticator(self, auth):
        def check(server, session, envelope, mechanism, data):
            ok = (data.login.decode(), data.password.decode()) == tuple(auth)
            self.auth_tries.append((mechanism, ok))
            return AuthResult(success=ok, handled=False)  # aiosmtpd replies
        return check

    def route(self):
        return "[127.0.0.1]:%d" % self.controller.port
