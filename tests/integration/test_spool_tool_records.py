# SPDX-License-Identifier: MIT
"""etrnd-spool on a spool written record by record (store/spool_rec.h's
layout, CRC-32C computed here from its definition, not by our C code):
every record type (MSG, DONE of each status, NOTE, SCHED) shown by json,
stats, list --all and show (delay_warned, next_attempt, a recipient's
status); and every kind of damage said by name with its offset, exit 3,
the intact records around it still read: bad magic, an unknown version, a
length past the file, a bad CRC, good CRCs over payloads that do not parse
(a MSG, a DONE, a NOTE, a SCHED); plus a segment with a torn tail. No etrnd
is started: the spool lives in a temp dir removed afterwards."""

import base64
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import unittest

import etrnd_harness as h

MAGIC = 0x4E525445
VERSION = 1
MSG, DONE, NOTE, SCHED = 1, 2, 3, 4
DELIVERED, BOUNCED, EXPIRED = 1, 2, 3
DELAY_WARNED = 1
SHARD = 2
T0 = 1700000000123456                    # 2023-11-14T22:13:20.123456Z
EXIT_OK, EXIT_DAMAGE = 0, 3


def _crc32c_table():
    tab = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        tab.append(c)
    return tab


_TAB = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TAB[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def msgid(seq):
    return (SHARD << 48) | seq


def qid(mid):
    return "%014X" % mid


def record(rtype, mid, payload, flags=0, time_us=T0, magic=MAGIC, version=VERSION,
           length=None, crc=None):
    """Header (32 bytes, little-endian) and payload; the CRC covers header
    bytes 0..11 and 16..31, then the payload."""
    length = len(payload) if length is None else length
    head = struct.pack("<IBBHI", magic, version, rtype, flags, length)
    tail = struct.pack("<QQ", mid, time_us)
    if crc is None:
        crc = crc32c(payload, crc32c(head + tail))
    return head + struct.pack("<I", crc) + tail + payload


def msg_payload(sender, rcpts, body):
    p = struct.pack("<HII", len(sender), len(rcpts), len(body)) + sender
    for r in rcpts:
        p += struct.pack("<H", len(r)) + r
    return p + body


def done_payload(rcpt, status):
    return struct.pack("<IB3x", rcpt, status)


def note_payload(kind, reserved=0):
    return struct.pack("<II", kind, reserved)


def sched_payload(next_us, dom):
    return struct.pack("<QH", next_us, len(dom)) + dom


BODY = b"Subject: s\r\n\r\nline\r\n..dotted\r\n"


class SpoolToolRecordsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="etrnd-srec-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.spool = os.path.join(self.dir, "spool")
        self.shard = os.path.join(self.spool, str(SHARD))
        os.makedirs(self.shard)
        self.tool_bin = h.env_path("ETRND_SPOOL_TOOL")

    def seg(self, seq, *recs):
        path = os.path.join(self.shard, "%016x.seg" % seq)
        with open(path, "wb") as f:
            f.write(b"".join(recs))
        return path

    def tool(self, *args):
        p = subprocess.run([self.tool_bin] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        return p.returncode, p.stdout.decode("latin-1"), p.stderr.decode("latin-1")

    def test_every_record_type(self):
        a, b, c = msgid(0x10), msgid(0x11), msgid(0x12)
        self.seg(0x10,
                 record(MSG, a, msg_payload(b"s@x.test", [b"u@d.test", b"v@e.test"], BODY),
                        flags=1),
                 record(MSG, b, msg_payload(b"", [b"w@d.test"], b"b\r\n")),
                 record(MSG, c, msg_payload(b"s@x.test", [b"x@d.test", b"y@d.test",
                                                          b"z@d.test"], b"c\r\n")),
                 record(DONE, a, done_payload(0, DELIVERED), time_us=T0 + 1),
                 record(NOTE, a, note_payload(DELAY_WARNED), time_us=T0 + 2),
                 record(SCHED, a, sched_payload(T0 + 3600 * 10**6, b"e.test"), time_us=T0 + 3),
                 record(SCHED, a, sched_payload(0, b"d.test"), time_us=T0 + 4),
                 record(DONE, b, done_payload(0, BOUNCED), time_us=T0 + 5),
                 record(DONE, c, done_payload(0, EXPIRED), time_us=T0 + 6),
                 record(DONE, c, done_payload(1, DELIVERED), time_us=T0 + 7),
                 record(DONE, c, done_payload(2, BOUNCED), time_us=T0 + 8))

        rc, out, err = self.tool("json", self.spool)
        self.assertEqual((rc, err), (EXIT_OK, ""))
        recs = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([r["type"] for r in recs],
                         ["MSG"] * 3 + ["DONE", "NOTE", "SCHED", "SCHED"] + ["DONE"] * 4)
        self.assertEqual(recs[0]["sender"], "s@x.test")
        self.assertEqual(recs[0]["rcpts"], ["u@d.test", "v@e.test"])
        self.assertEqual(recs[0]["flags"], 1)
        self.assertEqual(recs[0]["time_us"], T0)
        self.assertEqual(base64.b64decode(recs[0]["body_b64"]), BODY)
        self.assertEqual(base64.b64decode(recs[1]["body_b64"]), b"b\r\n")
        self.assertEqual((recs[3]["rcpt"], recs[3]["status"]), (0, "delivered"))
        self.assertEqual(recs[4]["kind"], "delay_warned")
        self.assertEqual((recs[5]["domain"], recs[5]["next_us"]), ("e.test", T0 + 3600 * 10**6))
        self.assertEqual([r["status"] for r in recs[7:]], ["bounced", "expired", "delivered",
                                                           "bounced"])
        self.assertTrue(all(r["shard"] == SHARD for r in recs))

        rc, out, err = self.tool("stats", self.spool)
        self.assertEqual((rc, err), (EXIT_OK, ""))
        row = out.splitlines()[1].split()
        # shard segments records msg done note sched bytes torn torn_bytes bad
        self.assertEqual(row[:7], [str(SHARD), "1", "11", "3", "5", "1", "2"])

        rc, out, err = self.tool("list", self.spool)
        self.assertEqual((rc, err), (EXIT_OK, ""))
        self.assertEqual([line.split()[0] for line in out.splitlines()], [qid(a)])
        self.assertIn(" <u@d.test>(delivered) <v@e.test>", out)
        rc, out, err = self.tool("list", "--all", self.spool)
        self.assertEqual((rc, err), (EXIT_OK, ""))
        lines = {line.split()[0]: line for line in out.splitlines()}
        self.assertEqual(set(lines), {qid(a), qid(b), qid(c)})
        self.assertRegex(lines[qid(b)], r"^%s bounced 2023-11-14T22:13:20\.123456Z 3 <> 1 "
                         r"<w@d\.test>$" % qid(b))
        self.assertIn(" <x@d.test>(expired) <y@d.test>(delivered) <z@d.test>(bounced)",
                      lines[qid(c)])

        rc, out, err = self.tool("show", self.spool, qid(a))
        self.assertEqual((rc, err), (EXIT_OK, ""))
        self.assertIn("flags: 8BITMIME\n", out)
        self.assertIn("delay_warned: yes\n", out)
        self.assertIn("next_attempt: e.test 2023-11-14T23:13:20.123456Z\n", out)
        self.assertIn("next_attempt: d.test at once\n", out)
        self.assertIn("recipient: <u@d.test> delivered\n", out)
        self.assertIn("recipient: <v@e.test> pending\n", out)
        self.assertTrue(out.endswith("\n\nSubject: s\r\n\r\nline\r\n.dotted\r\n"), out)
        rc, out, err = self.tool("show", self.spool, "%x" % b)   # lower case, short
        self.assertEqual((rc, err), (EXIT_OK, ""))
        self.assertIn("sender: <>\n", out)
        self.assertIn("delay_warned: no\n", out)

    def test_every_kind_of_damage(self):
        good = [record(MSG, msgid(0x20 + i), msg_payload(b"s@x.test", [b"u@d.test"], b"ok\r\n"))
                for i in range(6)]
        bad = [
            ("bad magic", record(MSG, msgid(0x30), b"x" * 20, magic=0x12345678)),
            ("unknown record version", record(MSG, msgid(0x31), b"x" * 20, version=9)),
            ("CRC mismatch", record(MSG, msgid(0x32), b"x" * 20, crc=1)),
            ("bad payload", record(MSG, msgid(0x33), struct.pack("<HII", 500, 1, 0) + b"s")),
            ("bad payload", record(DONE, msgid(0x20), done_payload(0, 7))),
            ("bad payload", record(NOTE, msgid(0x20), note_payload(9))),
            ("bad payload", record(SCHED, msgid(0x20), struct.pack("<QH", 1, 40) + b"d")),
        ]
        recs = [good[0]]
        for i, (_, r) in enumerate(bad):
            recs.append(r)
            recs.append(good[1 + i % 5])
        path = self.seg(0x20, *recs)
        offs, at = [], 0
        for r in recs:
            offs.append(at)
            at += len(r)
        # A second segment: a length running past its end, after a good one.
        tail_good = record(MSG, msgid(0x40), msg_payload(b"s@x.test", [b"u@d.test"], b"t\r\n"))
        torn = record(MSG, msgid(0x41), msg_payload(b"s@x.test", [b"u@d.test"], b"u" * 100))
        path2 = self.seg(0x40, tail_good, torn[:60])

        for cmd in ("stats", "list", "json"):
            with self.subTest(cmd=cmd):
                rc, out, err = self.tool(cmd, self.spool)
                self.assertEqual(rc, EXIT_DAMAGE, err)
                said = err.splitlines()
                for i, (why, r) in enumerate(bad):
                    want = "etrnd-spool: %s: offset %d: %s (%d bytes skipped)" % (
                        path, offs[1 + 2 * i], why, len(r))
                    self.assertIn(want, said)
                self.assertIn("etrnd-spool: %s: offset %d: torn tail (60 bytes ignored)"
                              % (path2, len(tail_good)), said)
                self.assertEqual(len(said), len(bad) + 1, err)
                if cmd == "stats":
                    total = out.splitlines()[-1].split()
                    # msg (the good ones and the last segment's), torn, bad
                    self.assertEqual(total[3], str(len(recs) - len(bad) + 1))
                    self.assertEqual(total[8:], ["1", "60", str(len(bad))])
                if cmd == "json":
                    got = [json.loads(line)["qid"] for line in out.splitlines()]
                    self.assertEqual(len(got), len(recs) - len(bad) + 1)

    def test_odd_but_valid_records(self):
        """Addresses that need escaping or cutting, a message stored twice
        (a compaction copy), more next attempts than show's first table,
        a SCHED before its MSG (recovery ignores it: so does show)."""
        long_sender = b"a" * 3000 + b"@x.test"
        odd_sender = b'q"b\\c\x01@x.test'
        a, b = msgid(0x50), msgid(0x51)
        doms = [b"d%d.test" % i for i in range(6)]
        self.seg(0x50,
                 record(SCHED, a, sched_payload(T0, b"early.test")),
                 record(MSG, a, msg_payload(long_sender, [b"u@d.test"], b"a\r\n"), flags=2),
                 *[record(SCHED, a, sched_payload(T0 + i, d)) for i, d in enumerate(doms)],
                 record(MSG, b, msg_payload(odd_sender, [b"u@d.test"], b"first\r\n")))
        self.seg(0x60, record(MSG, b, msg_payload(odd_sender, [b"u@d.test"], b"copy\r\n")))

        rc, out, err = self.tool("show", self.spool, qid(a))
        self.assertEqual((rc, err), (EXIT_OK, ""))
        self.assertIn("flags: SMTPUTF8\n", out)
        self.assertIn("sender: <%s...>\n" % ("a" * 2043), out)
        self.assertNotIn("early.test", out)
        got = re.findall(r"^next_attempt: (\S+) ", out, re.M)
        self.assertEqual(got, [d.decode() for d in doms])
        self.assertIn("state: deferred\n", out)

        rc, out, err = self.tool("show", self.spool, qid(b))
        self.assertEqual((rc, err), (EXIT_OK, ""))
        self.assertIn('sender: <q"b\\x5Cc\\x01@x.test>\n', out)
        self.assertIn("segment: %s offset " % os.path.join(self.shard, "%016x.seg" % 0x50), out)
        self.assertTrue(out.endswith("\n\nfirst\r\n"), out)

        rc, out, err = self.tool("list", self.spool)
        self.assertEqual((rc, err), (EXIT_OK, ""))
        self.assertEqual([line.split()[0] for line in out.splitlines()], [qid(a), qid(b)])

        rc, out, err = self.tool("json", self.spool)
        self.assertEqual((rc, err), (EXIT_OK, ""))
        self.assertIn('"sender":"q\\"b\\\\c\\u0001@x.test"', out)
        senders = [json.loads(line).get("sender") for line in out.splitlines()]
        self.assertEqual(senders.count(odd_sender.decode("latin-1")), 2)
        self.assertIn(long_sender.decode(), senders)

    def test_lengths_that_lie(self):
        """A length past the records that follow (the length field was the
        damage) and one past the largest payload: bad record length."""
        good = [record(MSG, msgid(0x70 + i), msg_payload(b"s@x.test", [b"u@d.test"], b"ok\r\n"))
                for i in range(3)]
        long_len = record(MSG, msgid(0x78), b"y" * 40, length=100000)
        huge_len = record(MSG, msgid(0x79), b"z" * 40, length=0x7FFFFFFF)
        path = self.seg(0x70, good[0], long_len, good[1], huge_len, good[2])
        rc, out, err = self.tool("stats", self.spool)
        self.assertEqual(rc, EXIT_DAMAGE, err)
        off1 = len(good[0])
        off2 = off1 + len(long_len) + len(good[1])
        self.assertEqual(err.splitlines(), [
            "etrnd-spool: %s: offset %d: bad record length (%d bytes skipped)"
            % (path, off1, len(long_len)),
            "etrnd-spool: %s: offset %d: bad record length (%d bytes skipped)"
            % (path, off2, len(huge_len))])
        self.assertEqual(out.splitlines()[-1].split()[3], "3")


if __name__ == "__main__":
    unittest.main()
