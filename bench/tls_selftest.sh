#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# etrnbench's STARTTLS, checked against itself and against Python's ssl:
# the client (send pipelined and one session per message, idle) through its
# own sink offering STARTTLS, every body's checksum verified; a client told
# --starttls against a sink that does not offer it fails and sends nothing in
# clear; smtplib.starttls() against the sink, which must drop what a client
# pipelined after STARTTLS (RFC 3207 4.2). No etrnd involved: run this before
# trusting bench/run.sh's STARTTLS rows. Loopback only; every process it
# starts is stopped by PID. Exit 0 when every check passed.
#
#   bench/tls_selftest.sh            (BUILD=build by default)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EB=${BUILD:-$ROOT/build}/etrnbench
PY=/usr/bin/python3
[[ -x $EB ]] || { echo "tls_selftest: $EB missing (make build)" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/etrnbench-tls.XXXXXX")
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
FAILS=0
check() { # NAME EXPECTED-RC CMD...: runs CMD, compares its exit code
	local name=$1 want=$2 rc=0; shift 2
	"$@" >"$WORK/$name.out" 2>&1 || rc=$?
	if [[ $rc -eq $want ]]; then echo "ok   $name"; else
		echo "FAIL $name: exit $rc, wanted $want: $(tail -c 400 "$WORK/$name.out")"; FAILS=$((FAILS + 1)); fi
}
json() { "$PY" -c 'import json,sys; j=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(eval(sys.argv[2]))' "$@"; }

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=sink.etrnbench.test" \
	-keyout "$WORK/key.pem" -out "$WORK/cert.pem" >"$WORK/req.log" 2>&1
TLS_PORT=$(free_port)
CLEAR_PORT=$(free_port)
"$EB" sink --listen "127.0.0.1:$TLS_PORT" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
	--verify --duration 60 --json >"$WORK/sink.json" 2>"$WORK/sink.err" &
SINK_PID=$!
PIDS+=("$SINK_PID")
"$EB" sink --listen "127.0.0.1:$CLEAR_PORT" --duration 60 --json >"$WORK/clear.json" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$CLEAR_PORT") 2>/dev/null && break
	sleep 0.05
done

check pipelined 0 timeout 60 "$EB" send --server "127.0.0.1:$TLS_PORT" -c 20 -n 2000 --pipelining --starttls --json
[[ $(json "$WORK/pipelined.out" 'j["tls"]["handshakes"]') == 20 ]] || { echo "FAIL pipelined: not 20 handshakes"; FAILS=$((FAILS + 1)); }
check per_conn 0 timeout 60 "$EB" send --server "127.0.0.1:$TLS_PORT" -c 5 -n 100 --per-conn 1 --starttls --json
[[ $(json "$WORK/per_conn.out" 'j["tls"]["handshakes"]') == 100 ]] || { echo "FAIL per_conn: not 100 handshakes"; FAILS=$((FAILS + 1)); }
check sizes 0 timeout 60 "$EB" send --server "127.0.0.1:$TLS_PORT" -c 10 -n 500 --pipelining --starttls \
	--size-dist 1k:40,4k:30,100k:5 --json
check idle 0 timeout 60 "$EB" idle --server "127.0.0.1:$TLS_PORT" -c 50 --duration 2 --starttls --json
[[ $(json "$WORK/idle.out" 'j["ready"]') == 50 ]] || { echo "FAIL idle: not 50 held"; FAILS=$((FAILS + 1)); }
# No STARTTLS offered: every session fails, no message goes in clear.
check not_offered 1 timeout 60 "$EB" send --server "127.0.0.1:$CLEAR_PORT" -c 2 -n 10 --starttls --json
[[ $(json "$WORK/not_offered.out" 'j["messages_ok"], j["tls"]["not_offered"]') == "(0, 2)" ]] || {
	echo "FAIL not_offered: $(cat "$WORK/not_offered.out")"; FAILS=$((FAILS + 1)); }
check smtplib 0 timeout 60 "$PY" - "$TLS_PORT" <<'PYEOF'
import smtplib, socket, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port, timeout=10)
s.ehlo("x")
assert s.has_extn("starttls")
s.starttls(context=ctx)
s.ehlo("x")
assert not s.has_extn("starttls"), "STARTTLS offered again inside TLS"
s.sendmail("a@b.test", ["u@dom0.test"], "Subject: x\r\n\r\nhello\r\n")
s.quit()
# RSET pipelined after STARTTLS must be dropped: the first reply inside TLS
# answers NOOP, and nothing follows it.
c = socket.create_connection(("127.0.0.1", port), timeout=10)
f = c.makefile("rb")
f.readline()
c.sendall(b"EHLO x\r\n")
while f.readline()[3:4] != b" ":
    pass
c.sendall(b"STARTTLS\r\nRSET\r\n")
assert f.readline().startswith(b"220 ")
t = ctx.wrap_socket(c, server_hostname="sink")
t.sendall(b"NOOP\r\n")
assert t.recv(100) == b"250 2.0.0 Ok\r\n"
t.settimeout(0.5)
try:
    extra = t.recv(100)
except socket.timeout:
    extra = b""
assert extra == b"", extra
PYEOF
kill -TERM "$SINK_PID"
wait "$SINK_PID" || { echo "FAIL sink exit $?: $(cat "$WORK/sink.err")"; FAILS=$((FAILS + 1)); }
# 2,000 + 100 + 500 + 1 messages, all over TLS, all checksums good.
sink=$(json "$WORK/sink.json" 'j["messages"], j["tls_sink"]["messages"], j["bad_sum"], j["tls_sink"]["failed"]')
[[ $sink == "(2601, 2601, 0, 0)" ]] && echo "ok   sink $sink" || { echo "FAIL sink (messages, over TLS, bad sums, failed handshakes): $sink"; FAILS=$((FAILS + 1)); }
[[ $FAILS -eq 0 ]] && echo "tls_selftest: all passed" || echo "tls_selftest: $FAILS failed"
exit $((FAILS > 0))
