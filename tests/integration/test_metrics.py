# SPDX-License-Identifier: MIT
"""The Prometheus endpoint (metrics_listen, admin/metrics_http.c): scraped
before and after a known load (N messages of S bytes with smtplib, a relay
recipient refused, an ETRN), the counters move by exactly that load; the held
gauges follow the mail; `promtool check metrics` passes on the output (Debian's
prometheus package; skipped with the reason when promtool is missing); a
hostile client (slowloris, a huge request) costs only itself. Loopback only;
every process is stopped by PID."""

import http.client
import os
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
import unittest

import etrnd_harness as h
from customer_server import CustomerServer
from test_redis import Redis, etrnctl

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')
N = 7          # messages of the load
S = 3000       # bytes of each (DATA's content, CRLF line ends, final CRLF)


def parse(text):
    """{(name, ((label, value), ...)): float} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "not a sample line: %r" % line
        labels = tuple(sorted(LABEL_RE.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def get(port, path="/metrics", method="GET", timeout=10):
    c = http.client.HTTPConnection(h.HOST, port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def body_of(size, tag):
    """A message of exactly size bytes as DATA carries it: CRLF line ends,
    the last one included, and no line starting with a dot."""
    text = "From: s@example.org\r\nTo: u@a.test\r\nSubject: %s\r\n\r\n" % tag
    left = size - len(text)
    full, rem = divmod(left, 72)
    if 0 < rem < 3:  # a last line needs a byte and its CRLF
        full, rem = full - 1, rem + 72
    text += ("x" * 70 + "\r\n") * full + ("y" * (rem - 2) + "\r\n" if rem else "")
    return text.encode()


class MetricsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="etrnd-metrics-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.redis = Redis(self.tmp).start()
        self.addCleanup(self.redis.stop)
        self.cport = h.free_port()
        for d in ("a.test", "b.test"):
            rc, _, err = etrnctl(self.redis, "domain", "add", d, "--dest",
                                 "127.0.0.1:%d" % self.cport, "--etrn-from", "127.0.0.0/8")
            self.assertEqual(rc, 0, err)
        self.mport = h.free_port()
        # dnsbl (issue 19): its per-list family goes through promtool too;
        # loopback clients are not looked up (dnsbl_skip_loopback's default).
        self.e = h.Etrnd(redis=self.redis.url(), relay_domains="static.test", threads="2",
                         metrics_listen="%s:%d" % (h.HOST, self.mport),
                         dnsbl="bl.metrics.invalid*2")
        self.addCleanup(self.e.cleanup)
        self.e.start()

    def scrape(self):
        status, hdrs, body = get(self.mport)
        self.assertEqual(status, 200, body[:300])
        self.assertTrue(hdrs["Content-Type"].startswith("text/plain; version=0.0.4"), hdrs)
        self.assertEqual(int(hdrs["Content-Length"]), len(body))
        return body.decode(), parse(body.decode())

    def settled_scrape(self):
        """A scrape in which every accepted client has been counted by the
        DNSBL check too (skipped: each client here is on loopback). An
        engine thread counts a client accepted, then skipped a few
        statements later in the same turn; a scrape reads the counters one
        by one and may fall between the two, more often on a loaded
        machine."""
        def settled():
            text, m = self.scrape()
            ok = self.total(m, "etrnd_dnsbl_clients_total", verdict="skipped") == \
                self.total(m, "etrnd_connections_accepted_total")
            return (text, m) if ok else None
        return h.wait_for("DNSBL skipped count equal to the accepts", settled)

    @staticmethod
    def total(samples, name, **want):
        """Sum of name's samples whose labels include want."""
        return sum(v for (n, labels), v in samples.items()
                   if n == name and set(want.items()) <= set(labels))

    def load(self):
        """N messages of S bytes to a.test and one relay recipient refused,
        in one session."""
        body = body_of(S, "load")
        self.assertEqual(len(body), S)
        with smtplib.SMTP(h.HOST, self.e.port, timeout=10) as s:
            s.ehlo("sender.test")
            for _ in range(N):
                self.assertEqual(s.sendmail("s@example.org", ["u@a.test"], body), {})
            s.mail("s@example.org")
            code, _ = s.rcpt("u@elsewhere.example")
            self.assertEqual(code, 550)
            s.rset()

    def test_counters_move_by_the_load(self):
        _, before = self.settled_scrape()
        self.load()
        text, after = self.settled_scrape()

        def delta(name, **labels):
            return self.total(after, name, **labels) - self.total(before, name, **labels)

        self.assertEqual(delta("etrnd_messages_received_total"), N)
        self.assertEqual(delta("etrnd_received_bytes_total"), N * S)
        self.assertEqual(delta("etrnd_smtp_replies_total", **{"class": "3xx"}), N)  # 354s
        self.assertEqual(delta("etrnd_smtp_replies_total", **{"class": "5xx"}), 1)
        self.assertEqual(delta("etrnd_smtp_replies_total", **{"class": "4xx"}), 0)
        self.assertGreaterEqual(delta("etrnd_smtp_replies_total", **{"class": "2xx"}), 3 * N)
        self.assertEqual(delta("etrnd_recipients_refused_total", reason="relay"), 1)
        self.assertGreaterEqual(delta("etrnd_connections_accepted_total"), 1)
        # Held: per shard and for the domain (node-wide gauges).
        self.assertEqual(self.total(after, "etrnd_held_messages"), N)
        self.assertEqual(after[("etrnd_domain_held_messages", (("domain", "a.test"),))], N)
        self.assertGreaterEqual(after[("etrnd_domain_held_bytes", (("domain", "a.test"),))], N * S)
        self.assertNotIn(("etrnd_domain_held_messages", (("domain", "b.test"),)), after)
        self.assertEqual(after[("etrnd_domains_holding_mail", ())], 1)
        self.assertGreaterEqual(after[("etrnd_held_oldest_message_age_seconds", ())], 0)
        self.assertEqual(after[("etrnd_redis_up", ())], 1)
        self.assertGreaterEqual(after[("etrnd_redis_last_resync_age_seconds", ())], 0)
        self.assertGreater(after[("etrnd_spool_free_bytes", ())], 0)
        # Every loopback client is skipped, the load's among them
        # (settled_scrape() waited for skipped == accepted; it fails if a
        # client is never skipped). Not "exactly 1": the harness's
        # readiness probe is accepted (and skipped) whenever its engine
        # thread gets to it, which under load can be after the first scrape.
        self.assertGreaterEqual(delta("etrnd_dnsbl_clients_total", verdict="skipped"), 1)
        self.assertEqual(after[("etrnd_dnsbl_lookups_total",
                                (("list", "bl.metrics.invalid"), ("result", "listed")))], 0)
        self.promtool(text)

        # ETRN: 253 counted once; the drain empties the held gauges.
        c = CustomerServer(self.cport).start()
        self.addCleanup(c.stop)
        with smtplib.SMTP(h.HOST, self.e.port, timeout=10) as s:
            s.ehlo("customer.test")
            self.assertEqual(s.docmd("ETRN", "a.test")[0], 253)
        self.assertTrue(c.wait_count(N, 30), "only %d of %d arrived" % (c.recorder.count(), N))
        drained = h.wait_for("held gauges at 0", lambda: (
            lambda m: m if self.total(m, "etrnd_held_messages") == 0 and
            ("etrnd_domain_held_messages", (("domain", "a.test"),)) not in m else None)(
                self.scrape()[1]))
        self.assertEqual(self.total(drained, "etrnd_etrn_requests_total", code="253") -
                         self.total(after, "etrnd_etrn_requests_total", code="253"), 1)
        self.assertEqual(drained[("etrnd_held_oldest_message_age_seconds", ())], 0)
        self.assertEqual(drained[("etrnd_domains_holding_mail", ())], 0)

    def promtool(self, text):
        tool = shutil.which("promtool")
        if not tool:
            print("promtool check metrics skipped: promtool not installed "
                  "(Debian package prometheus; scripts/deps.sh installs it)")
            return
        p = subprocess.run([tool, "check", "metrics"], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode())
        print("promtool check metrics: passed (%d bytes)" % len(text))

    def test_dashboard_on_served_series(self):
        """etc/grafana/etrnd.json names only series a scrape declares, and
        its expressions are PromQL that promtool parses."""
        import json
        src = os.environ.get("ETRND_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
        with open(os.path.join(src, "etc", "grafana", "etrnd.json")) as f:
            dash = json.load(f)
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        self.assertGreaterEqual(len(exprs), 15)
        text, _ = self.scrape()
        declared = set()
        for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M):
            declared.add(m.group(1))
            if m.group(2) == "histogram":
                declared.update(m.group(1) + x for x in ("_bucket", "_sum", "_count"))
        used = {n for e in exprs for n in re.findall(r"\betrnd_[a-z_]+", e)}
        self.assertEqual(used - declared, set(), "the dashboard names series never served")
        tool = shutil.which("promtool")
        if not tool:
            print("dashboard PromQL check skipped: promtool not installed")
            return
        rules = os.path.join(self.tmp, "dash.rules.yml")
        with open(rules, "w") as f:
            f.write("groups:\n- name: dash\n  rules:\n")
            for i, e in enumerate(exprs):
                e = e.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$instance", ".*")
                f.write("  - record: dash:expr%d\n    expr: %s\n" % (i, json.dumps(e)))
        p = subprocess.run([tool, "check", "rules", rules], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout.decode())

    def test_http_answers(self):
        self.assertEqual(get(self.mport, "/nothere")[0], 404)
        self.assertEqual(get(self.mport, "/metrics", method="POST")[0], 405)
        status, hdrs, body = get(self.mport, "/metrics", method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertGreater(int(hdrs["Content-Length"]), 0)
        self.assertEqual(get(self.mport, "/metrics?x=1")[0], 200)
        with socket.create_connection((h.HOST, self.mport), timeout=5) as k:
            k.sendall(b"GET /metrics HTTP/2.0\r\n\r\n")
            self.assertTrue(k.recv(100).startswith(b"HTTP/1.1 505 "))
        with socket.create_connection((h.HOST, self.mport), timeout=5) as k:
            k.sendall(b"GET /metrics\rX HTTP/1.1\r\n\r\n")
            self.assertTrue(k.recv(100).startswith(b"HTTP/1.1 400 "))

    def test_hostile_clients_cost_only_themselves(self):
        # Slow clients: more than the endpoint serves at once, each
        # trickling a byte now and then and never finishing its head.
        slow = []
        for _ in range(40):
            k = socket.create_connection((h.HOST, self.mport), timeout=5)
            k.sendall(b"GET /metr")
            slow.append(k)
        self.addCleanup(lambda: [k.close() for k in slow])
        # A huge request head: refused with 431, not buffered.
        with socket.create_connection((h.HOST, self.mport), timeout=5) as k:
            k.sendall(b"GET /metrics HTTP/1.1\r\n")
            try:
                for _ in range(256):
                    k.sendall(b"X-Junk: " + b"j" * 4088 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                answer = k.recv(100)
            except ConnectionResetError:
                answer = b""
            self.assertIn(answer[:13], (b"HTTP/1.1 431 ", b""), answer)
        # A good scrape still answers at once, several times over.
        for i in range(3):
            for k in slow[i::3]:
                try:
                    k.send(b"i")
                except OSError:
                    pass
            t0 = time.monotonic()
            status, _, body = get(self.mport, timeout=5)
            took = time.monotonic() - t0
            self.assertEqual(status, 200)
            self.assertIn(b"etrnd_redis_up 1", body)
            self.assertLess(took, 3.5, "a scrape waited behind the slow clients (their deadline is 5 s)")
            print("scrape %d beside 40 slow clients: %.1f ms" % (i, took * 1000))
        # SMTP is untouched.
        with smtplib.SMTP(h.HOST, self.e.port, timeout=10) as s:
            self.assertEqual(s.ehlo("sender.test")[0], 250)
        self.assertIsNone(self.e.proc.poll())


if __name__ == "__main__":
    unittest.main()
