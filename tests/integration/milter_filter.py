# SPDX-License-Identifier: MIT
"""A real mail filter for the milter tests: pymilter over Sendmail's own
libmilter (Debian's python3-milter), so the MTA side meets the protocol as
rspamd, OpenDKIM and spamass-milter speak it.

    /usr/bin/python3 milter_filter.py inet:PORT@127.0.0.1|unix:/path [ACTION]

What it does with a message is its ACTION (default "accept"), or the value
of the message's "X-Milter-Action" header when it has one:
  accept      SMFIS_ACCEPT at end of message
  continue    SMFIS_CONTINUE at end of message
  reject      SMFIS_REJECT (the MTA's default 5xx text)
  tempfail    SMFIS_TEMPFAIL (the MTA's default 4xx text)
  discard     SMFIS_DISCARD (accepted, dropped)
  replycode   smfi_setmlreply 550 5.7.1, two lines, then SMFIS_REJECT
  addheader   add "X-Milter-Filter: checked" (folded continuation line),
              then accept
  chgheader   change the first Subject: to "[filtered] <old>", delete
              the first X-Milter-Delete:, insert "X-Milter-First: yes" at
              the top, then accept
  hold        smfi_quarantine("held by milter_filter"), then accept
  echo        add "X-Milter-Seen-Headers: HEX" and "X-Milter-Seen-Body: HEX",
              the hex of what the filter got (each header "name:value\n",
              the body's octets), then accept
  rcptreject  a recipient whose local part starts with "reject" gets
              550 5.1.1 at RCPT time (the rest of the message: accept)
  exit        the filter process exits at end of message (killed
              mid-message: the MTA's milter_default_action applies)
  sleep       wait 3600 s at end of message (a hung filter: the MTA's
              timeout applies)
Each end-of-message writes one line "eom ACTION from=<..> rcpts=N" to
stdout (flushed), so a test can see the filter got the message. Loopback
or a private socket path only.
"""

import os
import sys
import time

import Milter

FILTER_NAME = "etrnd-test-filter"
HUNG_S = 3600


class TestFilter(Milter.Base):
    def __init__(self):
        self.default = DEFAULT_ACTION
        self.reset()

    def reset(self):
        self.action = self.default
        self.sender = ""
        self.rcpts = 0
        self.subject = None
        self.seen_headers = b""
        self.seen_body = b""

    def envfrom(self, mailfrom, *args):
        self.reset()
        self.sender = mailfrom
        return Milter.CONTINUE

    def envrcpt(self, to, *args):
        local = to.strip("<>").split("@")[0]
        if self.default == "rcptreject" and local.startswith("reject"):
            self.setreply("550", "5.1.1", "milter_filter: no such user here")
            return Milter.REJECT
        self.rcpts += 1
        return Milter.CONTINUE

    def header(self, name, value):
        self.seen_headers += ("%s:%s\n" % (name, value)).encode("utf-8", "surrogateescape")
        if name.lower() == "x-milter-action":
            self.action = value.strip()
        elif name.lower() == "subject" and self.subject is None:
            self.subject = value
        return Milter.CONTINUE

    def body(self, chunk):
        self.seen_body += chunk
        return Milter.CONTINUE

    def eom(self):
        act = self.action
        print("eom %s from=%s rcpts=%d" % (act, self.sender, self.rcpts), flush=True)
        if act == "exit":
            os._exit(3)
        if act == "sleep":
            time.sleep(HUNG_S)
        if act == "continue":
            return Milter.CONTINUE
        if act == "reject":
            return Milter.REJECT
        if act == "tempfail":
            return Milter.TEMPFAIL
        if act == "discard":
            return Milter.DISCARD
        if act == "replycode":
            self.setreply("550", "5.7.1", "milter_filter: rejected", "second line")
            return Milter.REJECT
        if act == "addheader":
            self.addheader("X-Milter-Filter", "checked\n\tby milter_filter")
        elif act == "chgheader":
            self.chgheader("Subject", 1, "[filtered]" + (self.subject or ""))
            self.chgheader("X-Milter-Delete", 1, "")
            self.addheader("X-Milter-First", "yes", 0)
        elif act == "echo":
            self.addheader("X-Milter-Seen-Headers", self.seen_headers.hex())
            self.addheader("X-Milter-Seen-Body", self.seen_body.hex())
        elif act == "hold":
            self.quarantine("held by milter_filter")
        return Milter.ACCEPT


DEFAULT_ACTION = "accept"


def main():
    global DEFAULT_ACTION
    if len(sys.argv) not in (2, 3):
        sys.stderr.write(__doc__)
        sys.exit(2)
    if len(sys.argv) == 3:
        DEFAULT_ACTION = sys.argv[2]
    Milter.factory = TestFilter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE)
    print("ready", flush=True)
    Milter.runmilter(FILTER_NAME, sys.argv[1], 240)


if __name__ == "__main__":
    main()
