# SPDX-License-Identifier: MIT
"""A scripted milter for test_milter.py, written with pymilter (Debian's
python3-milter, libmilter underneath): run with /usr/bin/python3
milter_filter.py PORT. What it does depends on what it sees, so one
filter serves every case:

  RCPT reject@...       550 5.7.1 recipient refused by test milter
  RCPT tempfail@...     TEMPFAIL (the MTA's default 4xx text)
  Subject ...reject     554 5.7.1 content rejected by test milter (at EOM)
  Subject ...tempfail   TEMPFAIL at EOM
  Subject ...discard    DISCARD
  Subject ...addheader  adds X-Test-Milter: added
  Subject ...chgheader  changes Subject to "changed by milter"
  Subject ...hold       quarantine("held by test milter")
  Subject ...die        the process exits inside EOM (killed mid-message)
  Subject ...slow       sleeps 30 s inside EOM (the test's timeout is short)
Everything else is accepted.
"""

import os
import sys
import time

import Milter


class TestMilter(Milter.Base):
    def __init__(self):
        self.subject = ""

    def envfrom(self, f, *params):
        self.subject = ""
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        t = to.lower().strip("<>")
        if t.startswith("reject@"):
            self.setreply("550", "5.7.1", "recipient refused by test milter")
            return Milter.REJECT
        if t.startswith("tempfail@"):
            return Milter.TEMPFAIL
        return Milter.CONTINUE

    def header(self, name, value):
        if name.lower() == "subject":
            self.subject = value
        return Milter.CONTINUE

    def eom(self):
        s = self.subject
        if "die" in s:
            os._exit(3)
        if "slow" in s:
            time.sleep(30)
        if "reject" in s:
            self.setreply("554", "5.7.1", "content rejected by test milter")
            return Milter.REJECT
        if "tempfail" in s:
            return Milter.TEMPFAIL
        if "discard" in s:
            return Milter.DISCARD
        if "addheader" in s:
            self.addheader("X-Test-Milter", "added")
        if "chgheader" in s:
            self.chgheader("Subject", 1, "changed by milter")
        if "hold" in s:
            self.quarantine("held by test milter")
        return Milter.ACCEPT


def main():
    port = int(sys.argv[1])
    Milter.factory = TestMilter
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    Milter.runmilter("etrnd-test", "inet:%d@127.0.0.1" % port, 60)


if __name__ == "__main__":
    main()
