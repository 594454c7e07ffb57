# SPDX-License-Identifier: MIT
"""etrnd-spool's every way to be called wrong and every kind of bad spool it
can meet, beyond test_spool_tool (damaged record, unknown queue id) and
test_spool_list (states): each usage error exits 2 with the usage text; a
spool directory that is missing or not a directory exits 1 naming it; what
is not a shard or not a segment is named on stderr and skipped, the rest
still read (exit 0); a torn tail is counted and said but is not damage; a
message with 8-bit and SMTPUTF8 addresses is shown escaped (\\xNN in list
and show, \\u00NN in json) with its flags; show reads only the queue id's
shard; a full stdout (/dev/full) exits 1. The spool is written by a real
etrnd (2 shards), stopped by PID; its temp dir is removed."""

import json
import os
import re
import smtplib
import struct
import subprocess
import unittest

import etrnd_harness as h

DOMAIN = "demo.test"       # one of the harness's relay_domains: held
QUEUED_RE = re.compile(r"queued as ([0-9A-F]{14})")
EXIT_OK, EXIT_ERR, EXIT_USAGE = 0, 1, 2
USAGE_HEAD = "usage: etrnd-spool stats SPOOL_DIR\n"
UTF8_SENDER = "j\u00fcrgen@example.org"      # two bytes 0xC3 0xBC on the wire
UTF8_RCPT = "m\u00e4x@" + DOMAIN


def send(port, sender, rcpt, body, options=()):
    with smtplib.SMTP(h.HOST, port, timeout=30) as s:
        s.ehlo("client.test")
        code, text = s.mail(sender, list(options))
        if code != 250:
            raise AssertionError("MAIL: %d %r" % (code, text))
        code, text = s.rcpt(rcpt)
        if code != 250:
            raise AssertionError("RCPT: %d %r" % (code, text))
        code, text = s.data(body)
    if code != 250:
        raise AssertionError("DATA: %d %r" % (code, text))
    return QUEUED_RE.search(text.decode()).group(1)


class SpoolToolErrorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.e = h.Etrnd(threads="2")
        try:
            cls.e.start()
            cls.plain = [send(cls.e.port, "s@example.org", "u%d@%s" % (i, DOMAIN),
                              b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)) for i in range(4)]
            cls.utf8 = send(cls.e.port, UTF8_SENDER, UTF8_RCPT,
                            "Subject: 8bit\r\n\r\nGr\u00fc\u00dfe\r\n".encode(),
                            ("SMTPUTF8", "BODY=8BITMIME"))
            cls.e.stop()
            cls.e.proc = None
        except BaseException:
            cls.e.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.e.cleanup()

    def tool(self, *args, stdout=subprocess.PIPE):
        p = subprocess.run([self.e.spool_tool] + list(args), stdout=stdout,
                           stderr=subprocess.PIPE, timeout=60)
        out = p.stdout.decode("latin-1") if p.stdout is not None else None
        return p.returncode, out, p.stderr.decode("latin-1")

    def shard_dirs(self):
        return sorted(os.path.join(self.e.spool_dir, d) for d in os.listdir(self.e.spool_dir)
                      if d.isdigit())

    def test_usage_errors(self):
        sp = self.e.spool_dir
        for args in ([], ["stats"], ["frobnicate", sp], ["stats", sp, "x"],
                     ["show", sp], ["json"], ["json", sp, sp], ["list", "--all"],
                     ["show", sp, "A", "B"]):
            with self.subTest(args=args):
                rc, out, err = self.tool(*args)
                self.assertEqual((rc, out), (EXIT_USAGE, ""))
                self.assertTrue(err.startswith(USAGE_HEAD), err)
        # A queue id is 1 to 16 hex digits.
        for bad in ("", "12345678901234567", "12G4"):
            with self.subTest(qid=bad):
                rc, out, err = self.tool("show", sp, bad)
                self.assertEqual((rc, out), (EXIT_USAGE, ""))
                self.assertEqual(err, "etrnd-spool: %s: not a queue id\n" % bad)

    def test_bad_spool_dir(self):
        missing = os.path.join(self.e.dir, "no-such-spool")
        a_file = self.e.conf_path
        for cmd in (["stats"], ["list"], ["json"]):
            for d, why in ((missing, "No such file or directory"),
                           (a_file, "Not a directory")):
                with self.subTest(cmd=cmd, dir=d):
                    rc, out, err = self.tool(*(cmd + [d]))
                    self.assertEqual(rc, EXIT_ERR, err)
                    self.assertEqual(err, "etrnd-spool: %s: %s\n" % (d, why))
                    # stats prints nothing, not even its header, for no spool
                    self.assertEqual(out, "")
        rc, out, err = self.tool("show", missing, self.plain[0])
        self.assertEqual((rc, out), (EXIT_ERR, ""))
        self.assertEqual(err, "etrnd-spool: %s: No such file or directory\n" % missing)

    def test_strays_skipped(self):
        """Entries that are not shards or segments are named and skipped;
        every message is still listed and the exit status stays 0."""
        rc, before, err = self.tool("list", self.e.spool_dir)
        self.assertEqual(rc, EXIT_OK, err)
        self.assertEqual(len(before.splitlines()), 5)
        sp = self.e.spool_dir
        shard = self.shard_dirs()[0]
        strays = {
            # in the spool directory: not shards
            os.path.join(sp, "notes.txt"): "file",
            os.path.join(sp, "65536"): "dir",       # above the largest shard
            os.path.join(sp, "123456"): "dir",      # six digits
            os.path.join(sp, "7"): "file",          # a shard's name, a file
            # in a shard: not segments
            os.path.join(shard, "0000000000000009.seg"): "dir",
            os.path.join(shard, "000000000000000A.seg"): "file",   # upper case
            os.path.join(shard, "00000000000000g1.seg"): "file",
            os.path.join(shard, "0000000000000001.sig"): "file",
            os.path.join(shard, "01.seg"): "file",
        }
        made = []
        for path, kind in strays.items():
            if kind == "dir":
                os.mkdir(path)
            else:
                with open(path, "wb") as f:
                    f.write(b"not a record\n")
            made.append((path, kind))
        self.addCleanup(self.unmake, made)

        for cmd in ("stats", "list", "json"):
            with self.subTest(cmd=cmd):
                rc, out, err = self.tool(cmd, sp)
                self.assertEqual(rc, EXIT_OK, err)
                said = sorted(err.splitlines())
                want = sorted("etrnd-spool: %s: not a %s, skipped" % (
                    p, "shard" if os.path.dirname(p) == sp else "segment") for p in strays)
                self.assertEqual(said, want)
                if cmd == "list":
                    self.assertEqual(out, before)
                if cmd == "json":
                    got = {json.loads(line)["qid"] for line in out.splitlines()}
                    self.assertEqual(got, set(self.plain) | {self.utf8})

    @staticmethod
    def unmake(made):
        for path, kind in made:
            if kind == "dir":
                os.rmdir(path)
            else:
                os.unlink(path)

    def test_unreadable_segment(self):
        """A segment name that cannot be opened (a dangling symlink): an
        error naming it (exit 1), every other segment still read."""
        shard = self.shard_dirs()[0]
        seg = os.path.join(shard, "0000000000000fff.seg")
        os.symlink(os.path.join(self.e.dir, "nowhere"), seg)
        self.addCleanup(os.unlink, seg)
        for cmd in ("stats", "list", "json"):
            with self.subTest(cmd=cmd):
                rc, out, err = self.tool(cmd, self.e.spool_dir)
                self.assertEqual(rc, EXIT_ERR, err)
                self.assertEqual(err, "etrnd-spool: %s: No such file or directory\n" % seg)
                if cmd == "stats":
                    self.assertEqual(out.splitlines()[-1].split()[3], "5")
                elif cmd == "list":
                    self.assertEqual(len(out.splitlines()), 5)
                else:
                    got = {json.loads(line)["qid"] for line in out.splitlines()}
                    self.assertEqual(got, set(self.plain) | {self.utf8})

    def test_torn_tail(self):
        """A record cut short at the end of a segment (a crash mid-append):
        counted and said, not damage (exit 0); every message still there.
        The cut record goes where the records end: etrnd may have written
        zeros ahead of them (store/spool_prezero.h), which stay behind it,
        as they would after a crash."""
        shard = self.shard_dirs()[0]
        seg = os.path.join(shard, sorted(s for s in os.listdir(shard) if s.endswith(".seg"))[0])
        size = os.path.getsize(seg)
        with open(seg, "rb") as f:
            data = f.read()
        end = 0
        while data[end:end + 4] == b"ETRN":  # header: magic, ..., u32 length at 8
            end += 32 + struct.unpack_from("<I", data, end + 8)[0]
        self.assertGreater(end, 0)
        self.assertEqual(data[end:].strip(b"\0"), b"", "only zeros after the records")
        with open(seg, "r+b") as f:
            f.seek(end)
            f.write(data[:20])           # the start of the first record's header

        def restore():
            with open(seg, "r+b") as f:
                f.write(data)
                f.truncate(size)
        self.addCleanup(restore)
        torn = max(size, end + 20) - end
        rc, out, err = self.tool("stats", self.e.spool_dir)
        self.assertEqual(rc, EXIT_OK, err)
        self.assertEqual(err, "etrnd-spool: %s: offset %d: torn tail (%d bytes ignored)\n"
                         % (seg, end, torn))
        rows = {line.split()[0]: line.split() for line in out.splitlines()}
        # shard segments records msg done note sched bytes torn torn_bytes bad
        self.assertEqual(rows["total"][3], "5")
        self.assertEqual(rows["total"][8:], ["1", str(torn), "0"])
        self.assertEqual(rows[os.path.basename(shard)][8:], ["1", str(torn), "0"])

    def test_escaped_addresses_and_flags(self):
        rc, out, err = self.tool("show", self.e.spool_dir, self.utf8)
        self.assertEqual(rc, EXIT_OK, err)
        self.assertIn("flags: 8BITMIME SMTPUTF8\n", out)
        self.assertIn("sender: <j\\xC3\\xBCrgen@example.org>\n", out)
        self.assertIn("recipient: <m\\xC3\\xA4x@%s> pending\n" % DOMAIN, out)
        body = out.encode("latin-1").split(b"\n\n", 1)[1]
        self.assertTrue(body.endswith("Gr\u00fc\u00dfe\r\n".encode()), body)
        rc, out, err = self.tool("show", self.e.spool_dir, self.plain[0])
        self.assertEqual(rc, EXIT_OK, err)
        self.assertIn("flags: none\n", out)

        rc, out, err = self.tool("list", "--all", self.e.spool_dir)
        self.assertEqual(rc, EXIT_OK, err)
        line = [x for x in out.splitlines() if x.startswith(self.utf8)]
        self.assertEqual(len(line), 1, out)
        self.assertIn(" <j\\xC3\\xBCrgen@example.org> 1 <m\\xC3\\xA4x@%s>" % DOMAIN, line[0])

        rc, out, err = self.tool("json", self.e.spool_dir)
        self.assertEqual(rc, EXIT_OK, err)
        self.assertIn('"sender":"j\\u00C3\\u00BCrgen@example.org"', out)
        rec = [json.loads(x) for x in out.splitlines() if x.startswith('{"qid":"%s"' % self.utf8)]
        self.assertEqual(len(rec), 1)
        # The escapes give the exact bytes back.
        self.assertEqual(rec[0]["sender"].encode("latin-1"), UTF8_SENDER.encode())
        self.assertEqual(rec[0]["rcpts"], [UTF8_RCPT.encode().decode("latin-1")])
        self.assertEqual(rec[0]["flags"], 3)

    def test_show_reads_only_its_shard(self):
        """show opens only the shard its queue id names: a stray in the
        other shard, which stats reports, is never seen by show."""
        shards = self.shard_dirs()
        self.assertEqual(len(shards), 2)
        recs = h.spool_json(self.e.spool_dir, self.e.spool_tool)
        shard_of = {r["qid"]: r["shard"] for r in recs}
        qid = self.plain[0]
        other = [s for s in shards if int(os.path.basename(s)) != shard_of[qid]][0]
        stray = os.path.join(other, "stray.seg")
        with open(stray, "wb") as f:
            f.write(b"x")
        self.addCleanup(os.unlink, stray)
        rc, out, err = self.tool("stats", self.e.spool_dir)
        self.assertEqual((rc, err), (EXIT_OK, "etrnd-spool: %s: not a segment, skipped\n"
                                     % stray))
        rc, out, err = self.tool("show", self.e.spool_dir, qid)
        self.assertEqual((rc, err), (EXIT_OK, ""))
        self.assertIn("queue_id: %s\n" % qid, out)

    def test_full_stdout(self):
        with open("/dev/full", "wb") as full:
            rc, _, err = self.tool("json", self.e.spool_dir, stdout=full)
        self.assertEqual(rc, EXIT_ERR)
        self.assertEqual(err, "etrnd-spool: stdout: No space left on device\n")


if __name__ == "__main__":
    unittest.main()
