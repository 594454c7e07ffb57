#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run the built etrnd in the foreground with etc/etrnd.conf: listens on
# 127.0.0.1:2525 (and implicit TLS on 127.0.0.1:4650 with a self-signed
# certificate made under var/tls/ when the config names none; ODMR, RFC
# 2645, on 127.0.0.1:3366 when it names no odmr_listen; submission, RFC
# 6409, on 127.0.0.1:5870 when it names no submission_listen; Prometheus
# metrics on 127.0.0.1:9325 when it names no metrics_listen), spool under
# ./var/spool. When the config's redis is the
# embedded default (unix:var/redis.sock), a private redis-server is started on
# that socket first (data in var/redis/), demo.test is provisioned in it with
# build/etrnctl, and the redis-server is stopped (by PID) when etrnd exits.
# Ctrl-C (SIGINT) or SIGTERM stops both, etrnd first (the transactions in
# flight finish), then redis-server; the script then exits with etrnd's own
# status, 0 after a clean stop, so `make run` reports no error (and, on a
# terminal, where Ctrl-C reaches etrnd alone, make exits 0 too).
#
# Other places (tests/integration/test_run_script.py): RUN_BUILD (default
# build) holds etrnd and etrnctl, RUN_CONF (default etc/etrnd.conf) is the
# config, RUN_VAR (default var) gets the private redis-server's socket
# (redis = unix:RUN_VAR/redis.sock in the config) and data, and the made
# certificate.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD=${RUN_BUILD:-build}
CONF=${RUN_CONF:-etc/etrnd.conf}
VAR=${RUN_VAR:-var}
SOCK=$VAR/redis.sock
for f in "$BUILD/etrnd" "$BUILD/etrnctl"; do
	if [[ ! -x $f ]]; then
		echo "run.sh: $f not built: run 'make run' (or 'make build')" >&2
		exit 1
	fi
done
mkdir -p "$VAR/redis"
mkdir -p "$VAR/spool" && chmod 0750 "$VAR/spool" # etrnd refuses a spool others may write (umask 002)
abs_path() { if [[ $1 == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }

REDIS_PID=
ETRND_PID=
# Stop one process by PID: TERM, up to 10 s to finish, then KILL.
stop_pid() {
	kill -0 "$1" 2>/dev/null || return 0
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
}
# On a terminal, etrnd runs as the terminal's foreground process group, so
# Ctrl-C reaches etrnd alone and not make, which would otherwise end by the
# signal (exit 130) however cleanly etrnd stopped. TTY_PGRP is the group to
# give the terminal back to at the end (make's), set only when that group
# holds the terminal now; TTY_EXEC starts etrnd in a group of its own that
# takes the terminal before etrnd runs (SIGTTOU ignored for that: the
# caller's group holds it; SIGINT back to default, which a background job
# of a script would otherwise inherit as ignored; /dev/tty, since such a
# job's stdin is /dev/null). python3 -S: no site packages, a faster start.
TTY_PGRP=
TTY_EXEC=()
tty_give() {
	python3 -S -c 'import os, signal, sys
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
try:
    fd = os.open("/dev/tty", os.O_RDWR)
    os.tcsetpgrp(fd, int(sys.argv[1]))
except OSError:
    pass' "$1" || true
}
if [[ -t 0 ]] && command -v python3 >/dev/null; then
	TTY_PGRP=$(python3 -S -c 'import os; g = os.getpgrp(); print(g if os.tcgetpgrp(0) == g else "")' 2>/dev/null) || TTY_PGRP=
fi
if [[ -n $TTY_PGRP ]]; then
	TTY_EXEC=(python3 -S -c 'import os, signal, sys
os.setpgid(0, 0)
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
try:
    fd = os.open("/dev/tty", os.O_RDWR)
    os.tcsetpgrp(fd, os.getpgrp())
    os.close(fd)
except OSError:
    pass
for s in (signal.SIGTTOU, signal.SIGINT):
    signal.signal(s, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])')
fi
stop_all() {
	local pid
	for pid in $ETRND_PID $REDIS_PID; do
		stop_pid "$pid"
	done
	if [[ -n $TTY_PGRP ]]; then
		tty_give "$TTY_PGRP"
	fi
}
trap stop_all EXIT
# A stop signal during start-up ends it (exit 0: the user asked for it and
# nothing failed); once etrnd runs, it is asked to stop and the wait at the
# end returns its status.
on_stop_signal() {
	if [[ -z $ETRND_PID ]]; then
		exit 0
	fi
	kill -TERM "$ETRND_PID" 2>/dev/null || true
}
trap on_stop_signal INT TERM

if grep -Eq "^[[:space:]]*redis[[:space:]]*=[[:space:]]*unix:$SOCK[[:space:]]*$" "$CONF"; then
	command -v redis-server >/dev/null || { echo "run.sh: redis-server missing: make deps" >&2; exit 1; }
	rm -f "$SOCK" # left by a killed run
	# --dir makes redis-server chdir: give it the socket as an absolute path.
	# setsid: Ctrl-C reaches etrnd and this script, not redis-server, which
	# must outlive etrnd's stop (stop_all ends it after etrnd).
	setsid redis-server --port 0 --unixsocket "$(abs_path "$SOCK")" --unixsocketperm 700 \
		--dir "$VAR/redis" --dbfilename dump.rdb --save "60 1" --appendonly no \
		--daemonize no --logfile redis.log &
	REDIS_PID=$!
	for _ in $(seq 1 100); do
		[[ -S $SOCK ]] && break
		kill -0 "$REDIS_PID" 2>/dev/null || { echo "run.sh: redis-server failed: see $VAR/redis/redis.log" >&2; exit 1; }
		sleep 0.05
	done
	[[ -S $SOCK ]] || { echo "run.sh: redis-server did not create $SOCK" >&2; exit 1; }
	echo "run.sh: redis-server (pid $REDIS_PID) on $SOCK, data in $VAR/redis/"
	"$BUILD/etrnctl" -c "$CONF" domain add demo.test --dest 127.0.0.1:2526 --etrn-from 127.0.0.0/8
fi

# STARTTLS out of the box: when the config names no certificate, a
# self-signed one (CN = this host's name) is made once under var/tls/ (key
# mode 0600) and given to etrnd, with an implicit-TLS listener on
# 127.0.0.1:4650 unless the config has listen_tls.
TLS_OPTS=()
TLS_DIR=$VAR/tls
if ! grep -Eq "^[[:space:]]*tls_cert_file[[:space:]]*=" "$CONF"; then
	if [[ ! -s $TLS_DIR/cert.pem || ! -s $TLS_DIR/key.pem ]]; then
		command -v openssl >/dev/null || { echo "run.sh: openssl missing: make deps" >&2; exit 1; }
		mkdir -p "$TLS_DIR"
		CN=$(uname -n)
		(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-days 825 -subj "/CN=$CN" -addext "subjectAltName=DNS:$CN,DNS:localhost,IP:127.0.0.1" \
			-keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2>/dev/null) ||
			{ echo "run.sh: openssl req failed to make $TLS_DIR/cert.pem" >&2; exit 1; }
		chmod 644 "$TLS_DIR/cert.pem"
		echo "run.sh: made a self-signed certificate for $CN in $TLS_DIR/"
	fi
	TLS_OPTS=(-o "tls_cert_file=$TLS_DIR/cert.pem" -o "tls_key_file=$TLS_DIR/key.pem")
	if grep -Eq "^[[:space:]]*listen_tls[[:space:]]*=" "$CONF"; then
		echo "TLS with $TLS_DIR/cert.pem (STARTTLS, and listen_tls as $CONF says)"
	else
		TLS_OPTS+=(-o listen_tls=127.0.0.1:4650)
		echo "TLS with $TLS_DIR/cert.pem: implicit TLS on 127.0.0.1:4650. Try: openssl s_client -connect 127.0.0.1:4650 -quiet"
	fi
fi

# On-Demand Mail Relay (RFC 2645) out of the box: the ODMR listener on
# 127.0.0.1:3366 (366 in production) unless the config has odmr_listen.
ODMR_OPTS=()
if ! grep -Eq "^[[:space:]]*odmr_listen[[:space:]]*=" "$CONF"; then
	ODMR_OPTS=(-o odmr_listen=127.0.0.1:3366)
	echo "ODMR (ATRN) on 127.0.0.1:3366: STARTTLS, AUTH as a user (build/etrnctl user add NAME --domain demo.test), then ATRN"
fi

# Message submission (RFC 6409; port 587 in production) out of the box: on
# 127.0.0.1:5870 unless the config has submission_listen. MAIL there needs
# STARTTLS and AUTH first (530 5.7.0); an authenticated user may then send
# to any domain. mynetworks stays empty (loopback is not trusted), so on
# 2525 a recipient outside the customer domains still gets 550 5.7.1.
SUB_OPTS=()
if ! grep -Eq "^[[:space:]]*submission_listen[[:space:]]*=" "$CONF"; then
	SUB_OPTS=(-o submission_listen=127.0.0.1:5870)
	echo "Submission on 127.0.0.1:5870: STARTTLS and AUTH first (build/etrnctl user add NAME), then any domain. Try: swaks --server 127.0.0.1:5870 -tls -a PLAIN --au NAME --ap PASSWORD --to someone@example.org"
fi

# Prometheus metrics out of the box: on 127.0.0.1:9325 unless the config
# has metrics_listen.
METRICS_OPTS=()
if ! grep -Eq "^[[:space:]]*metrics_listen[[:space:]]*=" "$CONF"; then
	METRICS_OPTS=(-o metrics_listen=127.0.0.1:9325)
	echo "Metrics (Prometheus) on 127.0.0.1:9325. Try: curl -s http://127.0.0.1:9325/metrics"
fi

echo "etrnd on 127.0.0.1:2525 (spool var/spool). Try: swaks --server 127.0.0.1:2525 --to user@demo.test --from you@example.org   then: build/etrnd-spool list var/spool"
echo "Provision more: build/etrnctl domain add customer.example --dest mail.customer.example:25"
echo "Not an open relay: swaks --server 127.0.0.1:2525 --to someone@example.org   gets 550 5.7.1 Relay access denied (mynetworks is empty)"
"${TTY_EXEC[@]}" "$BUILD/etrnd" -c "$CONF" "${TLS_OPTS[@]}" "${ODMR_OPTS[@]}" "${SUB_OPTS[@]}" "${METRICS_OPTS[@]}" &
ETRND_PID=$!
# A trapped signal cuts wait short (status > 128) while etrnd still stops:
# wait again until it is gone. Bash keeps a background job's status, so the
# last wait returns etrnd's own even when it ended during the trap.
rc=0
while :; do
	wait "$ETRND_PID" && rc=0 || rc=$?
	kill -0 "$ETRND_PID" 2>/dev/null || break
done
wait "$ETRND_PID" 2>/dev/null && rc=0 || rc=$?
ETRND_PID=
exit "$rc"
