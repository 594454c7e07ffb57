# SPDX-License-Identifier: MIT
"""A destination mail server with a script, for the outbound tests (issue
13): Python's aiosmtpd (a real SMTP server we did not write, through
customer_server.CustomerServer) whose RCPT replies are taken in turn from a
list before it accepts ("451 twice, then 250"), or fixed per recipient (550
for chosen addresses). It keeps every envelope and message it accepts, and
counts the RCPTs and sessions it saw, so a test can tell the attempts apart
without trusting the sender's logs."""

import email
import email.policy
import time

from customer_server import CustomerServer, Recorder


class ScriptRecorder(Recorder):
    def __init__(self, rcpt_script=(), reject=None, delay=0.0):
        super().__init__(delay=delay)
        self.rcpt_script = list(rcpt_script)   # replies for the first RCPTs
        self.reject_map = dict(reject or {})   # address -> reply, always
        self.rcpt_replies = []                 # (monotonic time, address, reply)
        self.sessions = 0
        self.accepted = []                     # (sender, rcpts, email.message)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        return responses

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


class ScriptedServer(CustomerServer):
    """CustomerServer with a ScriptRecorder: rcpt_script, reject, delay."""

    def __init__(self, port, rcpt_script=(), reject=None, delay=0.0):
        super().__init__(port)
        self.recorder = ScriptRecorder(rcpt_script, reject, delay)
        self.controller.handler = self.recorder

    def route(self):
        return "[127.0.0.1]:%d" % self.controller.port
