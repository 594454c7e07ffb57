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
# Ctrl-C (SIGINT) or SIGTERM stops both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONF=etc/etrnd.conf
SOCK=var/redis.sock
for f in build/etrnd build/etrnctl; do
	if [[ ! -x $f ]]; then
		echo "run.sh: $f not built: run 'make run' (or 'make build')" >&2
		exit 1
	fi
done
mkdir -p var/spool var/redis

REDIS_PID=
ETRND_PID=
stop_all() {
	local pid
	for pid in $ETRND_PID $REDIS_PID; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 1 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if grep -Eq "^[[:space:]]*redis[[:space:]]*=[[:space:]]*unix:$SOCK[[:space:]]*$" "$CONF"; then
	command -v redis-server >/dev/null || { echo "run.sh: redis-server missing: make deps" >&2; exit 1; }
	rm -f "$SOCK" # left by a killed run
	# --dir makes redis-server chdir: give it the socket as an absolute path.
	redis-server --port 0 --unixsocket "$PWD/$SOCK" --unixsocketperm 700 \
		--dir var/redis --dbfilename dump.rdb --save "60 1" --appendonly no \
		--daemonize no --logfile redis.log &
	REDIS_PID=$!
	for _ in $(seq 1 100); do
		[[ -S $SOCK ]] && break
		kill -0 "$REDIS_PID" 2>/dev/null || { echo "run.sh: redis-server failed: see var/redis/redis.log" >&2; exit 1; }
		sleep 0.05
	done
	[[ -S $SOCK ]] || { echo "run.sh: redis-server did not create $SOCK" >&2; exit 1; }
	echo "run.sh: redis-server (pid $REDIS_PID) on $SOCK, data in var/redis/"
	build/etrnctl -c "$CONF" domain add demo.test --dest 127.0.0.1:2526 --etrn-from 127.0.0.0/8
fi

# STARTTLS out of the box: when the config names no certificate, a
# self-signed one (CN = this host's name) is made once under var/tls/ (key
# mode 0600) and given to etrnd, with an implicit-TLS listener on
# 127.0.0.1:4650 unless the config has listen_tls.
TLS_OPTS=()
TLS_DIR=var/tls
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
	grep -Eq "^[[:space:]]*listen_tls[[:space:]]*=" "$CONF" || TLS_OPTS+=(-o listen_tls=127.0.0.1:4650)
	echo "TLS with $TLS_DIR/cert.pem: implicit TLS on 127.0.0.1:4650. Try: openssl s_client -connect 127.0.0.1:4650 -quiet"
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
build/etrnd -c "$CONF" "${TLS_OPTS[@]}" "${ODMR_OPTS[@]}" "${SUB_OPTS[@]}" "${METRICS_OPTS[@]}" &
ETRND_PID=$!
rc=0
wait "$ETRND_PID" || rc=$?
ETRND_PID=
exit "$rc"
