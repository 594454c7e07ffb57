# SPDX-License-Identifier: MIT
"""Harness for etrnd integration tests: a private etrnd per test.

Each Etrnd instance owns a temp dir (config, spool, stderr log), listens on a
free loopback port, and is stopped by PID (SIGTERM, then SIGKILL after a
bounded wait). Only 127.0.0.1 is ever contacted.

Environment (set by tests/integration/CMakeLists.txt):
  ETRND_BIN         the etrnd daemon
  ETRND_SPOOL_TOOL  etrnd-spool (offline spool reader)
  ETRND_SOURCE_DIR  the source tree

etrnd-spool json writes strings as bytes (each byte >= 0x80 as \\u00XX), so
addresses compare as str here and str.encode("latin-1") gives the bytes.

Run as a script it is also a small helper for the shell tests:
  etrnd_harness.py free-port                   PORT LOCK_FILE (h_free_port takes the lock)
  etrnd_harness.py records SPOOL_DIR            one line per MSG: qid sender rcpt,...
  etrnd_harness.py body SPOOL_DIR QID           the body as the client sent it
  etrnd_harness.py check-load SPOOL_DIR N SENDER RCPT [MIN_BODY]

TLS and AUTH (issue 11): make_cert() makes a throw-away self-signed
certificate with `openssl req` in a test's temp dir; Etrnd(tls=True) makes
one in its own dir and sets tls_cert_file/tls_key_file; listen_tls="auto"
and listen_trusted="auto" give the extra listeners free ports (e.ports);
so do odmr_listen="auto" and odmr_listen_trusted="auto" (ATRN, RFC 2645;
the customer's side is odmr_client.py);
client_tls() is the matching client context (verifies chain and name);
add_user() provisions a user with `etrnctl user add NAME --domain D
--password-stdin`.

Outbound delivery (issue 13): etrnctl() runs etrnctl against a Redis URL or
a config; route_add()/route_del() manage etrnd:route:<domain> with `etrnctl
route add|del`; Etrnd(control_socket="auto") gives the daemon a control
socket in its dir, and with test_clock="yes" e.clock_step(SECONDS) moves its
clock forward (`etrnctl clock step`); e.wait_log() polls stderr for a
pattern; SmtpSink is Postfix's smtp-sink on a free port dumping every
message it takes into a directory (-d), or answering 4xx/5xx to chosen
commands (-r/-f), restartable on the same port; sink.messages() parses the
dumps (envelope and email.message); log_field_re() is the regular
expression of one Postfix-shaped delivery log line.

Activators (issue 14): activator_keys() writes one activator's
"activator.NAME.*" keys, write_password_file() its password_file;
Etrnd(port=N) listens on a port chosen before start (a peer's route or
activator names it first: two sites side by side); e.activators() /
e.activator(NAME) read `activators json` from the control socket; tz_at()
is a TZ under which the local time of day is what a timetable test wants;
wait_for() polls for something that must happen; ScriptedUpstream is a raw
scripted upstream that counts connections (a 421 greeting, ATRN 250 then
silence); PrivatePostfix is a private Postfix instance (bench/pf_lib.sh in
Python), skipped with the reason where it cannot run.

Negative checks (issue 18): a test never sleeps and then checks that
something did NOT happen; it waits for the event that proves the daemon
looked, then checks. With a control socket (control_socket="auto"):
e.turns() returns once every engine thread ran a whole turn (every turn
hook: expiry, scheduler, activators) begun after the call; e.nothing_since()
is that, then no log line of the unwanted thing since a log_mark();
e.wait_expiry_scans() waits for finished expiry scans
(etrnd_expiry_scans_total); e.wait_drains_ended() for every drain and ATRN
session to end; e.metrics() / e.metric() read the counters of the control
socket's "metrics". Deadlines (LOG_WAIT_S...) only guard against hangs.
"""

import base64
import email
import email.policy
import fcntl
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
# Hang guards only (a loaded 2-core machine, sanitizer builds, a spool of
# thousands of messages to recover): never a measure of speed.
START_WAIT_S = 30.0
STOP_WAIT_S = 30.0
QID_RE = r"[0-9A-F]{14}"
# The test certificate: its name, and how long it is valid (a test that
# runs longer than this is hung anyway).
TLS_NAME = "mx.test.invalid"
TLS_CERT_DAYS = 2
OPENSSL_WAIT_S = 120.0
# Config keys whose value "auto" means: a free loopback port, chosen at start
# (odmr_*: the On-Demand Mail Relay listeners of RFC 2645, issue 12).
AUTO_LISTEN_KEYS = ("listen_tls", "listen_trusted", "odmr_listen",
                    "odmr_listen_trusted", "submission_listen")
# How long a test waits for a log line or a delivery by default (a loaded
# 2-core machine: sanitizer builds, other engineers' tests beside it).
LOG_WAIT_S = 30.0
SINK_START_S = 30.0
SINK_STOP_S = 30.0
ETRNCTL_WAIT_S = 120.0


def env_path(name):
    v = os.environ.get(name)
    if not v:
        raise RuntimeError("%s is not set: run through ctest (make test)"
                           % name)
    return v


# Ports handed out by free_port(): below the kernel's ephemeral range
# (ip_local_port_range), from this port up.
FREE_PORT_LOW = 10000
FREE_PORT_TRIES = 200
# One lock file per port handed out, shared by every test process on the
# machine (tests/unit/loopback.c and etrnd_harness.sh use it too).
PORT_LOCK_DIR = "/tmp/etrnd-test-ports"
_reserved = {}  # port -> the descriptor holding its lock, until we exit
_port_lock_dir_made = False


def ephemeral_range():
    """The kernel's ephemeral port range: what bind() to port 0 and an
    unbound connect() draw from."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _port_lock_dir():
    """Make PORT_LOCK_DIR, once per process."""
    global _port_lock_dir_made
    if _port_lock_dir_made:
        return
    os.makedirs(PORT_LOCK_DIR, exist_ok=True)
    try:
        os.chmod(PORT_LOCK_DIR, 0o1777)  # every user's tests share it, like /tmp
    except OSError:
        pass  # another user made it: they set its mode
    _port_lock_dir_made = True


def port_lock(port):
    """Take port's lock file (PORT_LOCK_DIR/PORT) without waiting: the
    descriptor holding it, or None when another process holds it. The
    lock goes when the descriptor is closed or the process ends, however
    it ends."""
    _port_lock_dir()
    fd = os.open(os.path.join(PORT_LOCK_DIR, str(port)), os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def free_port(keep=True):
    """A loopback port free right now, for a server the test starts later,
    or for a test that wants a port where nobody listens.

    Not the kernel's choice (bind to 0): that comes from the ephemeral
    range, which every other process's bind(0) and connect() also draw
    from. Below that range only free_port() (and the unit tests'
    loopback_free_port()) hand out ports, each at random among some
    20,000, and each port handed out stays reserved by a lock file
    (PORT_LOCK_DIR) until this process ends: a test running beside this
    one cannot be handed it between our check and our server's bind (a
    cluster test binds its nodes' ports seconds after choosing them;
    seen as "bind: Address already in use" in a loaded parallel run), nor
    listen on a port this test relies on being refused. keep=False
    releases the lock at once (the shell harness takes it itself)."""
    lo, hi = ephemeral_range()
    # No room below it: above.
    low, high = (FREE_PORT_LOW, lo - 1) if lo > FREE_PORT_LOW + 1 else (hi + 1, 65535)
    rng = random.SystemRandom()
    for _ in range(FREE_PORT_TRIES):
        port = rng.randint(low, high)
        if port in _reserved:
            continue  # ours already: handed out earlier in this process
        lock = port_lock(port)
        if lock is None:
            continue  # another test's
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                os.close(lock)
                continue  # in use (or in TIME_WAIT): another
        if keep:
            _reserved[port] = lock
        else:
            os.close(lock)
        return port
    raise AssertionError("no free port in %d-%d after %d tries" % (low, high, FREE_PORT_TRIES))


def remove_tmp(path):
    """Remove a test's temp dir, or keep it (and say so) when
    ETRND_KEEP_TMP is set, to look at after a failure."""
    if os.environ.get("ETRND_KEEP_TMP"):
        sys.stderr.write("kept %s\n" % path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def make_cert(dirpath, name=TLS_NAME, stem="server"):
    """A self-signed RSA certificate for `name` (also valid for localhost
    and 127.0.0.1), made here by `openssl req` in dirpath: (cert, key)
    absolute paths. It is its own CA: a client trusts it with
    client_tls(cert)."""
    cert = os.path.abspath(os.path.join(dirpath, stem + ".crt"))
    key = os.path.abspath(os.path.join(dirpath, stem + ".key"))
    p = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-sha256", "-days", str(TLS_CERT_DAYS), "-subj", "/CN=" + name,
         "-addext", "subjectAltName=DNS:%s,DNS:localhost,IP:%s" % (name, HOST),
         "-keyout", key, "-out", cert],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=OPENSSL_WAIT_S)
    if p.returncode != 0:
        raise AssertionError("openssl req exited %d: %s" % (
            p.returncode, p.stdout.decode("utf-8", "replace")))
    return cert, key


def client_tls(cafile, check_hostname=True):
    """A client context that trusts only cafile and (by default) checks the
    server's name; smtplib.starttls(context=) and SMTP_SSL use it."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = check_hostname
    return ctx


def add_user(redis_url, name, password, domain=None):
    """`etrnctl user add NAME [--domain D] --password-stdin` against
    redis_url; asserts exit 0, returns etrnctl's stdout."""
    argv = [env_path("ETRNCTL"), "--redis", redis_url, "user", "add", name]
    if domain:
        argv += ["--domain", domain]
    argv.append("--password-stdin")
    p = subprocess.run(argv, input=(password + "\n").encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    if p.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (
            " ".join(argv), p.returncode, p.stderr.decode("utf-8", "replace")))
    return p.stdout.decode()


def etrnctl(redis_url, *args, conf=None, stdin=None, timeout=ETRNCTL_WAIT_S):
    """Run etrnctl with --redis redis_url (or -c conf when redis_url is
    None); returns (exit status, stdout, stderr) as str."""
    argv = [env_path("ETRNCTL")]
    argv += ["-c", conf] if redis_url is None else ["--redis", redis_url]
    p = subprocess.run(argv + [str(a) for a in args], input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def etrnctl_ok(redis_url, *args, conf=None):
    """etrnctl that must succeed: its stdout."""
    rc, out, err = etrnctl(redis_url, *args, conf=conf)
    if rc != 0:
        raise AssertionError("etrnctl %s exited %d: %s%s" % (
            " ".join(str(a) for a in args), rc, out, err))
    return out


def route_add(redis_url, domain, dest):
    """etrnd:route:<domain> = dest (`etrnctl route add DOMAIN DEST`, which
    publishes the change: a running etrnd follows it live)."""
    return etrnctl_ok(redis_url, "route", "add", domain, dest)


def route_del(redis_url, domain):
    return etrnctl_ok(redis_url, "route", "del", domain)


def log_field_re(rcpt, status, relay=None, qid=QID_RE, rcpt_re=None):
    """A Postfix-shaped delivery line of etrnd (issue 13):
    'QID: to=<rcpt>, relay=host[ip]:port, delay=D, delays=a/b/c/d, dsn=X.Y.Z,
    status=STATUS (reply)', with ', tls=VERSION:CIPHER' after it when the
    connection used TLS. relay None: any relay; rcpt_re: a regular
    expression for the address instead of rcpt. The groups: qid, relay,
    dsn, the text in parentheses."""
    rel = r"[^,]*" if relay is None else re.escape(relay)
    to = rcpt_re if rcpt_re is not None else re.escape(rcpt)
    return (r"(%s): to=<%s>, relay=(%s), delay=[0-9.]+, "
            r"delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=([245]\.\d+\.\d+), "
            r"status=%s \((.*)\)(?:, tls=\S+)?$" % (qid, to, rel, status))


class SmtpSink:
    """Postfix's smtp-sink (a real SMTP server we did not write) on a free
    loopback port, started and stopped by PID. It dumps every message it
    accepts into its own directory (-d, one file each, with X-Mail-Args and
    X-Rcpt-Args headers of the envelope in front); extra options make it
    misbehave: ("-r", "RCPT") 4xx to every RCPT (with ("-b", REPLY) the
    reply), ("-f", "RCPT") 5xx (("-B", REPLY)), ("-w", "2") wait before
    answering DATA. stop() and start() again keep the port, so a test can
    swap a failing server for a working one at the same address. host: the
    address it listens on (another 127/8 address, "::1"; default HOST)."""

    def __init__(self, port=None, options=(), host=HOST):
        self.host = host
        self.port = port or free_port()
        self.options = list(options)
        # The sink drops root for nobody (-u): its directory must be
        # reachable and writable by nobody.
        self.dir = tempfile.mkdtemp(prefix="etrnd-sink-")
        os.chmod(self.dir, 0o755)
        self.dump = os.path.join(self.dir, "dump")
        os.mkdir(self.dump)
        os.chmod(self.dump, 0o777)
        self.log_path = os.path.join(self.dir, "sink.log")
        self.proc = None
        self.starts = 0

    def addr(self):
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)

    def route(self):
        """The route (or relayhost) that names this sink: no MX look-up."""
        return "[%s]:%d" % (self.host, self.port)

    def start(self, options=None):
        if options is not None:
            self.options = list(options)
        argv = ["/usr/sbin/smtp-sink"]
        if os.getuid() == 0:
            argv += ["-u", "nobody"]
        self.starts += 1
        argv += ["-d", os.path.join(self.dump, "%%Y%%m%%d%%H%%M%%S.%d." % self.starts)]
        argv += self.options + [self.addr(), "128"]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + SINK_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as c:
                    c.recv(512)           # its banner
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        with open(self.log_path, "rb") as f:
            raise AssertionError("smtp-sink did not listen on %s: %s" % (
                self.addr(), f.read().decode("utf-8", "replace")))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=SINK_STOP_S)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=SINK_STOP_S)
        self.proc = None

    def cleanup(self):
        self.stop()
        remove_tmp(self.dir)

    def files(self):
        return sorted(glob.glob(os.path.join(self.dump, "*")))

    def count(self):
        return len(self.files())

    def messages(self):
        """Every dumped message: dicts with "sender" (the MAIL FROM path
        without <>), "rcpts" (RCPT TO paths) and "msg" (email.message of
        what the client sent after DATA, smtp-sink's own headers removed)."""
        out = []
        for path in self.files():
            with open(path, "rb") as f:
                raw = f.read()
            head, sep, rest = raw.partition(b"\nReceived: from ")
            if not sep:
                raise AssertionError("%s: no smtp-sink Received: header" % path)
            env = email.message_from_bytes(head + b"\n\n")
            # smtp-sink's Received: is three lines (from, by, date).
            rest = rest.split(b"\n", 3)[3]
            args = env.get("X-Mail-Args", "")
            m = re.match(r"<([^>]*)>", args)
            out.append({
                "path": path,
                "sender": m.group(1) if m else args,
                "rcpts": [re.match(r"<([^>]*)>", a).group(1)
                          for a in env.get_all("X-Rcpt-Args", [])],
                "msg": email.message_from_bytes(rest, policy=email.policy.compat32),
                "raw": rest,
            })
        return out

    def wait_count(self, n, within=LOG_WAIT_S):
        """Until at least n messages are dumped; False when time ran out.
        A dump is written while its DATA arrives: read messages() once the
        sender logged its delivery (e.wait_log)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.count() >= n:
                return True
            time.sleep(0.05)
        return self.count() >= n


def spool_json(spool_dir, tool=None):
    """All records of a spool as dicts, via `etrnd-spool json SPOOL_DIR`."""
    tool = tool or env_path("ETRND_SPOOL_TOOL")
    p = subprocess.run([tool, "json", spool_dir], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    if p.returncode != 0:
        raise AssertionError("%s json %s exited %d: %s" % (
            tool, spool_dir, p.returncode,
            p.stderr.decode("utf-8", "replace")))
    out = []
    for n, line in enumerate(p.stdout.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as e:
            raise AssertionError("etrnd-spool json line %d is not JSON (%s): %r"
                                 % (n, e, line[:200]))
    return out


def msg_records(spool_dir, tool=None):
    return [r for r in spool_json(spool_dir, tool) if r.get("type") == "MSG"]


def stored_body(rec):
    """The body bytes as stored (Received: header first, dot-stuffed)."""
    return base64.b64decode(rec["body_b64"])


def split_received(stored):
    """Split a stored body into (our Received: header field, the rest).

    Our header is the first field: a line starting "Received:" and the
    continuation lines after it (starting with TAB or space, RFC 5322 2.2.3).
    Raises AssertionError if the body does not start with it."""
    if not stored.startswith(b"Received: "):
        raise AssertionError("stored body does not start with our Received: "
                             "header: %r" % stored[:120])
    pos = stored.find(b"\r\n")
    if pos < 0:
        raise AssertionError("Received: header not CRLF-terminated: %r"
                             % stored[:200])
    pos += 2
    while pos < len(stored) and stored[pos:pos + 1] in (b"\t", b" "):
        nxt = stored.find(b"\r\n", pos)
        if nxt < 0:
            raise AssertionError("Received: continuation not CRLF-terminated")
        pos = nxt + 2
    return stored[:pos], stored[pos:]


def received_of(rec):
    """Our Received: header field of a spool record, unfolded to one line
    (str), for looking for "with ESMTPS", the TLS version, the user."""
    hdr, _ = split_received(stored_body(rec))
    return re.sub(r"\r\n[ \t]+", " ", hdr.decode("latin-1")).strip()


def proc_kb(pid, field="VmRSS"):
    """VmRSS / VmHWM (or another /proc/PID/status field) in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def unstuff(data):
    """Undo SMTP dot-stuffing (RFC 5321 4.5.2) of CRLF-separated lines."""
    lines = data.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


def client_body(rec):
    """What the client sent after DATA (CRLF lines, not dot-stuffed, without
    the final "."), recovered from a spool record."""
    _, rest = split_received(stored_body(rec))
    return unstuff(rest)


def has_8bitmime(rec):
    """The 8BITMIME flag of a record, whether the tool prints flags as a
    number or as names."""
    f = rec.get("flags")
    if isinstance(f, int):
        return bool(f & 0x1)
    if isinstance(f, str):
        return "8BITMIME" in f.upper()
    if isinstance(f, list):
        return any("8BITMIME" in str(x).upper() for x in f)
    raise AssertionError("unexpected flags field %r" % (f,))


def control_request(path, line):
    """One request to etrnd's control socket (what etrnctl status sends);
    returns the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode()
            out += chunk


def indexed_messages(ctl_path, domain):
    """(messages the daemon's queue index holds for domain, the status text)."""
    status = control_request(ctl_path, "status")
    pat = r"^domain %s: messages (\d+)," % re.escape(domain)
    return sum(int(n) for n in re.findall(pat, status, re.M)), status


def activator_keys(name, host, port=None, method="etrn", request=(),
                   schedule="every 1h", user=None, password_file=None,
                   tls=None, idle_timeout=None):
    """The etrnd.conf keys of one activator (issue 14: "activator.NAME.FIELD
    = value", core/config.h), as a dict for Etrnd(**keys): host[:port],
    method, request (a list, written comma-separated), schedule (a
    core/timetable.h timetable), and user, password_file, tls, idle_timeout
    when given."""
    pre = "activator.%s." % name
    keys = {pre + "host": host if port is None else "%s:%d" % (host, port),
            pre + "method": method, pre + "schedule": schedule}
    if request:
        keys[pre + "request"] = ", ".join(request)
    for field, v in (("user", user), ("password_file", password_file),
                     ("tls", tls), ("idle_timeout", idle_timeout)):
        if v is not None:
            keys[pre + field] = v
    return keys


def write_password_file(dirpath, password, stem="activator"):
    """A password_file for an activator (its first line is the password),
    readable by its owner only; the absolute path."""
    path = os.path.abspath(os.path.join(dirpath, stem + ".password"))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return path


# Seconds in a day, for tz_at().
DAY_S = 86400


def tz_at(local_s, now=None):
    """A POSIX TZ value (no daylight saving) under which the local time of
    day is local_s seconds after midnight at the wall-clock time now
    (default: now). A test gives it to etrnd (Etrnd(env={"TZ": ...})) so a
    timetable's local times ("every 1h" at the hour, "08:00-09:00") fall
    where the test wants them, whatever the real time: nothing then happens
    by the wall clock during the test, only by clock steps."""
    now = time.time() if now is None else now
    off = int(local_s - (int(now) % DAY_S)) % DAY_S
    # POSIX: "std offset" is what is added to local time to get UTC, so a
    # zone east of UTC has a negative offset.
    return "ETR-%02d:%02d:%02d" % (off // 3600, off // 60 % 60, off % 60)


def still(testcase, what, fn, want, within=2.5, poll=0.1):
    """fn() stays want for `within` seconds (polled): a bounded look for
    something that must NOT happen. On a slow machine the look may end
    before the daemon looked at all: prefer waiting for the proof that it
    did (Etrnd.nothing_since: a whole turn of every engine thread, then no
    log line of the unwanted thing; Etrnd.wait_expiry_scans,
    Etrnd.wait_drains_ended), then checking. No test of ours uses this any
    more; it stays for tests written against it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        testcase.assertEqual(fn(), want, what)
        time.sleep(poll)
    testcase.assertEqual(fn(), want, what)


def wait_for(what, fn, within=LOG_WAIT_S, poll=0.05):
    """Poll fn() until it returns something true; that value. Raises with
    what and fn()'s last value when time runs out."""
    deadline = time.monotonic() + within
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.0fs (last %r)"
                                 % (what, within, v))
        time.sleep(poll)


# How often ScriptedUpstream's accept loop looks whether it should stop.
ACCEPT_POLL_S = 0.1


class ScriptedUpstream:
    """A raw scripted SMTP-like server on a free loopback port, for the
    activator tests (issue 14): an upstream that does exactly what a test
    needs and counts what it saw, independent of etrnd's own logs.

    greeting: the banner (a reply starting 4xx or 5xx is followed by a
    close, as a busy server does); ehlo: the keywords after the first EHLO
    line; replies: VERB -> reply line(s) for other commands (default "250
    2.0.0 OK"; QUIT "221 2.0.0 Bye" and close); silent_after: a verb whose
    reply is sent and after which the server reads but never answers (ATRN
    250 and then nothing: the reversed session's idle time-out). Each
    connection is recorded as a dict: accepted / closed (monotonic times),
    lines (what the peer sent, CRLF stripped), silent_at (when it went
    silent). Started and stopped by the test (stop() closes everything)."""

    def __init__(self, greeting="220 upstream.test ESMTP scripted",
                 ehlo=("PIPELINING", "ENHANCEDSTATUSCODES", "ETRN"),
                 replies=None, silent_after=None):
        self.greeting = greeting
        self.ehlo = list(ehlo)
        self.replies = dict(replies or {})
        self.silent_after = silent_after
        self.lock = threading.Lock()
        self.conns = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads = []
        self._socks = []

    def start(self):
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        if self._stop.is_set():
            return
        self._stop.set()
        join_threads(self._threads[:1], SINK_STOP_S, "scripted upstream accept")
        self.sock.close()
        with self.lock:
            socks = list(self._socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        join_threads(self._threads, SINK_STOP_S, "scripted upstream")

    def count(self):
        with self.lock:
            return len(self.conns)

    def records(self):
        with self.lock:
            return [dict(c) for c in self.conns]

    def _accept(self):
        # accept() in a thread is not woken by close() from another: poll
        # the stop flag between short waits.
        self.sock.settimeout(ACCEPT_POLL_S)
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            rec = {"accepted": time.monotonic(), "closed": None,
                   "lines": [], "silent_at": None}
            with self.lock:
                self.conns.append(rec)
                self._socks.append(c)
            t = threading.Thread(target=self._serve, args=(c, rec), daemon=True)
            t.start()
            self._threads.append(t)

    def _reply(self, verb):
        if verb == "EHLO":
            lines = ["upstream.test"] + self.ehlo
            return "".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", x)
                           for i, x in enumerate(lines))
        if verb == "QUIT":
            return "221 2.0.0 Bye\r\n"
        return self.replies.get(verb, "250 2.0.0 OK") + "\r\n"

    def _serve(self, c, rec):
        buf = b""
        silent = False
        try:
            c.sendall(self.greeting.encode() + b"\r\n")
            if self.greeting[:1] in "45":
                return
            while not self._stop.is_set():
                data = c.recv(4096)
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    text = line.decode("latin-1")
                    with self.lock:
                        rec["lines"].append(text)
                    if silent:
                        continue
                    verb = text.split(" ", 1)[0].upper()
                    c.sendall(self._reply(verb).encode())
                    if verb == "QUIT":
                        return
                    if verb == self.silent_after:
                        silent = True
                        with self.lock:
                            rec["silent_at"] = time.monotonic()
        except OSError:
            pass
        finally:
            with self.lock:
                rec["closed"] = time.monotonic()
            c.close()


class PrivatePostfix:
    """A private Postfix instance (Debian's package; bench/pf_lib.sh in
    Python): its own config, queue and data directories under one temp
    directory, smtpd on a free 127.0.0.1 port, chroot off, its log in a
    file; the system's Postfix is never touched. extra: main.cf lines
    (relay_domains, transport_maps...); files: {name: text} written into
    its config directory first (a transport table). start() raises
    unittest.SkipTest (with the reason) where Postfix is not installed or
    cannot run here (not root). Stopped by `postfix stop`, then its master
    PID by SIGKILL if it is still there."""

    POSTFIX = "/usr/sbin/postfix"
    WAIT_S = 20.0

    def __init__(self, extra="", files=None):
        self.dir = tempfile.mkdtemp(prefix="etrnd-pf-")
        # Postfix's daemons run as mail_owner: they must reach the
        # directories (mkdtemp makes them 0700).
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        for d in (self.etc, self.queue, os.path.join(self.dir, "data")):
            os.mkdir(d)
        self.port = free_port()
        self.extra = extra
        self.files = dict(files or {})
        self.master = None
        self.maillog = os.path.join(self.dir, "maillog")

    def skip_reason(self):
        if not os.path.exists(self.POSTFIX):
            return "Postfix is not installed (%s): `make deps`" % self.POSTFIX
        if os.getuid() != 0:
            return "a private Postfix instance must be started as root"
        return None

    def _main_cf(self):
        return """# Private test instance written by etrnd_harness.PrivatePostfix.
compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/queue
data_directory = {d}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.upstream.test
mydomain = upstream.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
biff = no
smtputf8_enable = no
{extra}
""".format(d=self.dir, extra=self.extra)

    def _master_cf(self):
        services = [
            "127.0.0.1:%d inet n - n - - smtpd" % self.port,
            "pickup unix n - n 60 1 pickup", "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr", "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify", "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap", "proxywrite unix - - n - 1 proxymap",
            "smtp unix - - n - - smtp", "relay unix - - n - - smtp",
            "showq unix n - n - - showq", "error unix - - n - - error",
            "retry unix - - n - - error", "discard unix - - n - - discard",
            "anvil unix - - n - 1 anvil", "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd"]
        return "\n".join(services) + "\n"

    def start(self):
        import unittest
        why = self.skip_reason()
        if why:
            raise unittest.SkipTest(why)
        subprocess.run(["chown", "postfix:postfix", os.path.join(self.dir, "data")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=30)
        for name, text in self.files.items():
            with open(os.path.join(self.etc, name), "w") as f:
                f.write(text)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(self._main_cf())
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(self._master_cf())
        p = subprocess.run([self.POSTFIX, "-c", self.etc, "start"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120)
        if p.returncode != 0:
            raise AssertionError("postfix start exited %d: %s\n%s" % (
                p.returncode, p.stdout.decode("utf-8", "replace"), self.log()[-2000:]))
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        self.master = int(wait_for("postfix master.pid",
                                   lambda: self._read(pidfile).strip(),
                                   within=self.WAIT_S))

        def listening():
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as c:
                    return c.recv(512).startswith(b"220")
            except OSError:
                return False
        wait_for("postfix smtpd on %s:%d" % (HOST, self.port), listening,
                 within=self.WAIT_S)
        return self

    @staticmethod
    def _read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    def log(self):
        return self._read(self.maillog)

    def _files_in(self, *queues):
        n = 0
        for q in queues:
            for _, _, files in os.walk(os.path.join(self.queue, q)):
                n += len(files)
        return n

    def deferred(self):
        return self._files_in("deferred")

    def queued(self):
        """Every message Postfix still has (incoming, active, deferred...)."""
        return self._files_in("maildrop", "incoming", "active", "deferred", "hold")

    def stop(self):
        if self.master is None:
            return
        subprocess.run([self.POSTFIX, "-c", self.etc, "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)
        deadline = time.monotonic() + self.WAIT_S
        while time.monotonic() < deadline:
            try:
                os.kill(self.master, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            try:
                os.kill(self.master, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.master = None

    def cleanup(self):
        self.stop()
        remove_tmp(self.dir)


class Etrnd:
    """One private etrnd: temp dir, config, process. Use start()/stop(), or
    Etrnd.started(testcase, **cfg) which registers the stop as a cleanup."""

    def __init__(self, tmpdir=None, tls=False, env=None, port=None, **cfg):
        self.bin = env_path("ETRND_BIN")
        self.spool_tool = env_path("ETRND_SPOOL_TOOL")
        self._own_tmp = None
        if tmpdir is None:
            tmpdir = self._own_tmp = tempfile.mkdtemp(prefix="etrnd-it-")
        self.dir = tmpdir
        self.spool_dir = os.path.join(self.dir, "spool")
        self.conf_path = os.path.join(self.dir, "etrnd.conf")
        self.stderr_path = os.path.join(self.dir, "etrnd.stderr")
        # port: a listen port chosen before start (a peer's config or a
        # route names it first) and kept across restarts; None: a free
        # port at each start.
        self.fixed_port = port
        self.port = port
        self.ports = {}       # listen_tls / listen_trusted: the chosen port
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.cert = self.key = None
        self.cfg = {
            "threads": "2",
            "hostname": "mx.test.invalid",
            "spool_dir": self.spool_dir,
            "relay_domains": "demo.test",
            "sync": "batch",
            "log_level": "info",
            "shutdown_timeout": "10s",
            # Issue 13: what etrnd does not hold it delivers (DSNs to their
            # senders, relayed mail), looking up MX records for domains
            # without a route. Tests stay on loopback: the resolver asks a
            # loopback port where nothing answers, so a look-up fails as
            # temporary and the mail waits, never leaving the machine.
            "dns_servers": "%s:%d" % (HOST, free_port()),
        }
        if tls:
            self.cert, self.key = make_cert(self.dir)
            self.cfg["tls_cert_file"] = self.cert
            self.cfg["tls_key_file"] = self.key
        self.cfg.update({k: str(v) for k, v in cfg.items()})
        self.hostname = self.cfg["hostname"]

    def client_tls(self, check_hostname=True):
        """A client context trusting this etrnd's test certificate."""
        return client_tls(self.cert, check_hostname)

    @classmethod
    def started(cls, testcase, **cfg):
        e = cls(**cfg)
        testcase.addCleanup(e.cleanup)
        e.start()
        return e

    def write_config(self):
        with open(self.conf_path, "w") as f:
            f.write("# written by etrnd_harness.py\n")
            f.write("listen = %s:%d\n" % (HOST, self.port))
            for k, v in self.cfg.items():
                if k in AUTO_LISTEN_KEYS and v == "auto":
                    self.ports[k] = free_port()
                    v = "%s:%d" % (HOST, self.ports[k])
                if k == "control_socket" and v == "auto":
                    v = self.ctl_path()
                f.write("%s = %s\n" % (k, v))

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def start(self):
        # 0750 whatever the umask: etrnd refuses a spool others may write.
        os.makedirs(self.spool_dir, mode=0o750, exist_ok=True)
        # The port is free when chosen but another process could take it
        # before etrnd binds it: retry a few times on a bind failure.
        for attempt in range(3):
            self.port = self.fixed_port or free_port()
            self.write_config()
            errf = open(self.stderr_path, "wb")
            self.proc = subprocess.Popen([self.bin, "-c", self.conf_path],
                                         stdin=subprocess.DEVNULL,
                                         stdout=errf, stderr=errf,
                                         cwd=self.dir, env=self.env)
            errf.close()
            if self._wait_listening():
                return self
            rc = self.proc.poll()
            err = self.stderr_text()
            if (rc is not None and "in use" in err and attempt < 2
                    and not self.fixed_port):
                continue
            self._kill()
            raise AssertionError(
                "etrnd did not start listening on %s:%d within %.0fs "
                "(exit status %r); stderr:\n%s" % (
                    HOST, self.port, START_WAIT_S, rc, err))
        return self

    def _wait_listening(self):
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            # Listening sockets exist before the spool is recovered; etrnd
            # says "etrnd started" once every engine thread is ready. A
            # quieter log_level (warn, err) does not log it: the control
            # socket's turn on every engine thread says it then.
            if "etrnd started:" in self.stderr_text():
                return True
            if self.cfg["log_level"] not in ("info", "debug") and "control_socket" in self.cfg:
                try:
                    self.turns(1)
                    return True
                except (OSError, AssertionError):
                    pass  # the control socket is not up yet
            time.sleep(0.02)
        return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait(self, timeout=STOP_WAIT_S):
        """Wait for exit; returns the status (negative: killed by signal)."""
        return self.proc.wait(timeout=timeout)

    def kill9(self):
        """SIGKILL (a crash) and wait; asserts the process died of it and
        had not exited before."""
        self.signal(signal.SIGKILL)
        rc = self.wait()
        if rc != -signal.SIGKILL:
            raise AssertionError("etrnd exited with %d before the SIGKILL; "
                                 "stderr:\n%s" % (rc, self.stderr_text()))

    def _kill(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_WAIT_S)

    def stop(self):
        """SIGTERM, bounded wait, SIGKILL fallback. Asserts a clean exit 0."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            rc = self.proc.returncode
        else:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self._kill()
                raise AssertionError(
                    "etrnd (pid %d) did not exit within %.0fs of SIGTERM; "
                    "killed. stderr:\n%s" % (self.proc.pid, STOP_WAIT_S,
                                             self.stderr_text()))
        if rc != 0:
            raise AssertionError("etrnd exited with status %d after SIGTERM "
                                 "(want 0); stderr:\n%s"
                                 % (rc, self.stderr_text()))

    def cleanup(self):
        """For addCleanup: stops etrnd (asserting exit status 0, so a daemon
        that crashed or leaked during a test fails it even if every reply
        looked right), and always kills and removes what is left."""
        try:
            self.stop()
        finally:
            self._kill()
            if self._own_tmp is not None:
                remove_tmp(self._own_tmp)

    def records(self):
        return msg_records(self.spool_dir, self.spool_tool)

    def record(self, qid):
        recs = [r for r in self.records() if r.get("qid") == qid]
        if len(recs) != 1:
            raise AssertionError("want exactly one MSG record with qid %s, "
                                 "found %d" % (qid, len(recs)))
        return recs[0]

    def connect(self, timeout=10):
        return socket.create_connection((HOST, self.port), timeout=timeout)

    def ctl_path(self):
        """The control socket of control_socket = auto (in our dir)."""
        return os.path.join(self.dir, "ctl.sock")

    def etrnctl(self, *args):
        """etrnctl -c our config (so it reaches our control socket and our
        Redis): (exit status, stdout, stderr)."""
        return etrnctl(None, *args, conf=self.conf_path)

    def clock_step(self, seconds):
        """Move the daemon's clock forward (config test_clock = yes):
        `etrnctl clock step SECONDS`. Back-off and expiry see the time
        later by that much; nothing sleeps."""
        rc, out, err = self.etrnctl("clock", "step", str(int(seconds)))
        if rc != 0:
            raise AssertionError("etrnctl clock step %s exited %d: %s%s"
                                 % (seconds, rc, out, err))
        return out

    def wait_log(self, pattern, count=1, within=LOG_WAIT_S, since=0):
        """Until stderr (from offset since) has count matches of the
        regular expression pattern (re.M); returns the matches. Raises
        with the log's tail when time runs out."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + within
        while True:
            found = rx.findall(self.stderr_text()[since:])
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError("log never showed %d x %r within %.0fs "
                                     "(%d seen); log tail:\n%s" % (
                                         count, pattern, within, len(found),
                                         self.stderr_text()[-4000:]))
            if not self.alive():
                raise AssertionError("etrnd exited (%r) while waiting for %r:"
                                     "\n%s" % (self.proc.returncode, pattern,
                                               self.stderr_text()[-4000:]))
            time.sleep(0.05)

    def log_mark(self):
        """The log's length now: wait_log(since=...) looks only after it."""
        return len(self.stderr_text())

    def turns(self, within=LOG_WAIT_S):
        """Until every engine thread has run a whole turn (every turn
        hook: expiry, the scheduler, the activators) begun after this call
        (the control socket's "turns" barrier, admin/ctl_turns.h): what was
        due by the daemon's clock is then started and logged. Needs a
        control socket (control_socket="auto")."""
        def passed():
            text = control_request(self.ctl_path(), "turns")
            m = re.match(r"turns: (\d+) of (\d+) engine threads$", text.strip())
            if m is None:
                raise AssertionError("turns answered %r" % text[:300])
            return m.group(1) == m.group(2)
        wait_for("every engine thread passed a turn", passed, within=within)

    def metrics(self):
        """The daemon's counters as the control socket's "metrics" gives
        them (the Prometheus exposition): {name: value summed over its
        samples}."""
        out = {}
        for line in control_request(self.ctl_path(), "metrics").splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            name = name.split("{", 1)[0]
            out[name] = out.get(name, 0) + float(value)
        return out

    def metric(self, name):
        return self.metrics().get(name, 0)

    def wait_metric(self, name, at_least, within=LOG_WAIT_S):
        """Until the counter name (summed) reaches at_least; its value."""
        return wait_for("%s >= %s" % (name, at_least),
                        lambda: (lambda v: v if v >= at_least else 0)(
                            self.metric(name)), within=within)

    def wait_expiry_scans(self, n=None, within=LOG_WAIT_S):
        """Until n expiry scans have finished (etrnd_expiry_scans_total:
        a scan and every expiry and delay warning it found, logged and
        durable); default: one per engine thread. A check that nothing
        (more) expired comes after this."""
        if n is None:
            n = int(self.cfg.get("threads", "1"))
        return self.wait_metric("etrnd_expiry_scans_total", n, within)

    def wait_drains_ended(self, within=LOG_WAIT_S):
        """Until every drain started so far has ended: a turn on every
        engine thread (a drain posted before this call has started), then
        etrnd_drains_started_total == etrnd_drains_finished_total and no
        drain or ATRN session running. Any delivery they make is done (and
        logged) by then."""
        self.turns(within)

        def ended():
            m = self.metrics()
            return (m.get("etrnd_drains_started_total", 0)
                    == m.get("etrnd_drains_finished_total", 0)
                    and m.get("etrnd_drains_running", 0) == 0
                    and m.get("etrnd_atrn_sessions_running", 0) == 0)
        wait_for("every drain ended", ended, within=within)

    def nothing_since(self, testcase, mark, pattern, what):
        """A negative check: after a whole turn of every engine thread
        (turns()), stderr from offset mark has no match of pattern: what
        was due has been started and logged, and it was not this."""
        self.turns()
        found = re.findall(pattern, self.stderr_text()[mark:], re.M)
        testcase.assertEqual(found, [], "%s: log shows %r" % (what, found[:5]))

    def activators(self, name=None):
        """The daemon's activators (issue 14) as the control socket's
        `activators json [NAME]` gives them: a list of dicts (name, method,
        host, request, schedule, state, runs, failures, last, reply,
        meaning, next; received for ATRN). Times are epoch seconds or
        None."""
        line = "activators json" + (" " + name if name else "")
        text = control_request(self.ctl_path(), line)
        try:
            v = json.loads(text)
        except ValueError:
            raise AssertionError("%r answered %r" % (line, text[:500]))
        return v if isinstance(v, list) else [v]

    def activator(self, name):
        """One activator's status dict (see activators())."""
        for a in self.activators(name):
            if a.get("name") == name:
                return a
        raise AssertionError("no activator %r in the daemon's list" % name)


class Reader:
    """Reads SMTP replies from a raw socket (multi-line aware)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; unread %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """One reply: (code:int, [text lines])."""
        lines = []
        while True:
            line = self._line()
            if len(line) < 4 or not line[:3].isdigit() or line[3:4] not in (b" ", b"-"):
                raise AssertionError("malformed reply line %r" % line)
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] == b" ":
                return int(line[:3]), lines

    def rest(self):
        """Everything until the peer closes (socket timeout bounds it)."""
        data = self.buf
        self.buf = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return data
            data += chunk


def join_threads(threads, timeout, what="thread"):
    """Join each thread; raises if one is still running after timeout."""
    for t in threads:
        t.join(timeout=timeout)
        if t.is_alive():
            raise AssertionError("%s hung" % what)


class GoodClient(threading.Thread):
    """A well-behaved client to run beside a hostile one: smtplib sessions of
    MSGS_PER_SESSION messages each (over STARTTLS when tls_context is
    given), one after another, until stop(). It keeps
    the monotonic time of every 250 after DATA and every failure (a reply
    other than 250, or an exception), so a test can assert that an attack
    did not starve the good client: check(testcase, max_gap_s, min_acks)."""

    MSGS_PER_SESSION = 5

    def __init__(self, port, rcpt="u@demo.test", timeout=30, pause=0.02,
                 tls_context=None):
        super().__init__(daemon=True)
        self.port, self.rcpt, self.timeout, self.pause = port, rcpt, timeout, pause
        self.tls_context = tls_context   # set: STARTTLS in every session
        self._stop_ev = threading.Event()
        self.t0 = time.monotonic()
        self.acks = []        # monotonic time of each 250 after DATA
        self.failures = []    # (monotonic time, what went wrong)

    def _session(self, smtplib):
        s = smtplib.SMTP(HOST, self.port, timeout=self.timeout)
        try:
            s.ehlo("good.test")
            if self.tls_context is not None:
                code, msg = s.starttls(context=self.tls_context)
                if code != 220:
                    raise AssertionError("STARTTLS got %d %r" % (code, msg))
                s.ehlo("good.test")
            for i in range(self.MSGS_PER_SESSION):
                if self._stop_ev.is_set():
                    break
                body = b"Subject: good %d\r\n\r\nwell behaved\r\n" % len(self.acks)
                s.mail("good@example.org")
                s.rcpt(self.rcpt)
                code, msg = s.data(body)
                if code != 250:
                    raise AssertionError("DATA got %d %r" % (code, msg))
                self.acks.append(time.monotonic())
            s.quit()
        finally:
            s.close()

    def run(self):
        import smtplib
        while not self._stop_ev.is_set():
            try:
                self._session(smtplib)
            except (OSError, EOFError, AssertionError, smtplib.SMTPException) as e:
                self.failures.append((time.monotonic(), repr(e)))
            self._stop_ev.wait(self.pause)

    def stop(self):
        self._stop_ev.set()
        self.join(timeout=2 * self.timeout)
        if self.is_alive():
            raise AssertionError("good client did not stop")

    def max_gap(self, until=None):
        """The longest time without a 250, from start to the last 250 (or
        to `until`, e.g. the moment stop() was called)."""
        marks = [self.t0] + self.acks + ([until] if until else [])
        return max(b - a for a, b in zip(marks, marks[1:]))

    def check(self, testcase, max_gap_s, min_acks):
        """Stop (once min_acks 250s came, or max_gap_s from now), then
        assert no failure, at least min_acks 250s, and no wait for a 250
        longer than max_gap_s. Returns (acks, max gap)."""
        deadline = time.monotonic() + max_gap_s
        while len(self.acks) < min_acks and time.monotonic() < deadline:
            time.sleep(0.05)   # a short attack: give the good client its turn
        end = time.monotonic()
        self.stop()
        testcase.assertEqual(self.failures, [], "the good client failed")
        testcase.assertGreaterEqual(len(self.acks), min_acks,
                                    "the good client got too few 250s")
        gap = self.max_gap(until=end)
        testcase.assertLess(gap, max_gap_s, "the good client waited %.1fs "
                            "for a 250" % gap)
        return len(self.acks), gap


def _cli(argv):
    if len(argv) >= 1 and argv[0] == "free-port":
        port = free_port(keep=False)
        print(port, os.path.join(PORT_LOCK_DIR, str(port)))
        return 0
    if len(argv) == 2 and argv[0] == "records":
        for r in msg_records(argv[1]):
            print(r["qid"], r["sender"], ",".join(r["rcpts"]))
        return 0
    if len(argv) == 3 and argv[0] == "body":
        recs = [r for r in msg_records(argv[1]) if r.get("qid") == argv[2]]
        if len(recs) != 1:
            print("want one MSG with qid %s, found %d" % (argv[2], len(recs)),
                  file=sys.stderr)
            return 1
        sys.stdout.buffer.write(client_body(recs[0]))
        return 0
    if len(argv) in (5, 6) and argv[0] == "check-load":
        spool, n, sender, rcpt = argv[1], int(argv[2]), argv[3], argv[4]
        min_body = int(argv[5]) if len(argv) == 6 else 0
        recs = msg_records(spool)
        qids = {r["qid"] for r in recs}
        bad = [r["qid"] for r in recs
               if r["sender"] != sender or r["rcpts"] != [rcpt]]
        short = [r["qid"] for r in recs if len(client_body(r)) < min_body]
        print("records=%d distinct_qids=%d wrong_envelope=%d body_under_%d=%d"
              % (len(recs), len(qids), len(bad), min_body, len(short)))
        ok = len(recs) == n and len(qids) == n and not bad and not short
        if bad:
            print("first wrong envelope: %s" % bad[0], file=sys.stderr)
        if short:
            print("first short body: %s" % short[0], file=sys.stderr)
        return 0 if ok else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
