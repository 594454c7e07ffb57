#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run the built etrnd in the foreground with etc/etrnd.conf: listens on
# 127.0.0.1:2525, spool under ./var/spool. When the config's redis is the
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

echo "etrnd on 127.0.0.1:2525 (spool var/spool). Try: swaks --server 127.0.0.1:2525 --to user@demo.test --from you@example.org   then: build/etrnd-spool list var/spool"
echo "Provision more: build/etrnctl domain add customer.example --dest mail.customer.example:25"
build/etrnd -c "$CONF" &
ETRND_PID=$!
rc=0
wait "$ETRND_PID" || rc=$?
ETRND_PID=
exit "$rc"
