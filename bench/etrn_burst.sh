#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Issue 17 point 6, A/B: bench/run.sh's "1000 domains at once" drain
# (NDOM domains, PER messages of 4 KiB held each, NDOM ETRNs over 10
# sessions, every domain routed to etrnbench's one sink) for one or more
# etrnd binaries, alternating them ROUNDS times in one run so that they see
# the same (loaded) machine. Prints one line per run and writes each run's
# JSON to $OUT (default a temp dir), with the load average before and after.
#
#   bench/etrn_burst.sh [-r ROUNDS] [-n NDOM] [-p PER] ETRND_A [ETRND_B ...]
#
# The other tools (etrnbench, etrnctl) come from ETRNBENCH / ETRNCTL or
# build/. Loopback only; every process it starts is stopped by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3 NDOM=1000 PER=50
while getopts "r:n:p:" o; do
	case $o in
	r) ROUNDS=$OPTARG ;; n) NDOM=$OPTARG ;; p) PER=$OPTARG ;;
	*) echo "usage: $0 [-r ROUNDS] [-n NDOM] [-p PER] ETRND..." >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 ]] || { echo "usage: $0 [-r ROUNDS] [-n NDOM] [-p PER] ETRND..." >&2; exit 2; }
EB=${ETRNBENCH:-$ROOT/build/etrnbench}
ETRNCTL=${ETRNCTL:-$ROOT/build/etrnctl}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server)}
WORK=$(mktemp -d /tmp/etrn-burst.XXXXXX)
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK/spool"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SINK_PORT=$(free_port)
# The private redis-server of bench/bench_lib.sh, in $WORK, stopped with ours.
# shellcheck source=bench_lib.sh
. "$ROOT/bench/bench_lib.sh"
H_TMP=$WORK H_PIDS=()
bench_redis_start etrn_burst.sh
PIDS+=("${H_PIDS[@]}")
{
	echo "domain,queue,dest,etrn_from"
	for i in $(seq 0 $((NDOM - 1))); do echo "dom$i.test,,127.0.0.1:$SINK_PORT,127.0.0.0/8"; done
} >"$WORK/domains.csv"
"$ETRNCTL" --redis "unix:$WORK/redis.sock" import "$WORK/domains.csv" >/dev/null </dev/null
for i in $(seq 0 $((NDOM - 1))); do echo "dom$i.test"; done >"$WORK/domains.txt"
last="dom$((NDOM - 1)).test"

run_one() { # BINARY TAG
	local bin=$1 tag=$2 port pid rc=0
	port=$(free_port)
	rm -rf "$WORK/spool"
	mkdir -p -m 0750 "$WORK/spool"
	cat >"$WORK/etrnd.conf" <<EOF
listen = 127.0.0.1:$port
spool_dir = $WORK/spool
redis = unix:$WORK/redis.sock
relay_domains = static.test
hostname = etrnd.bench.test
threads = auto
sync = batch
etrn_rate_limit = 100000
log_level = warn
shutdown_timeout = 10s
EOF
	"$bin" -c "$WORK/etrnd.conf" </dev/null >"$OUT/$tag.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	# Up once the domain table has the last domain.
	for _ in $(seq 1 300); do
		/usr/bin/python3 - "$port" "$last" <<'PYEOF' 2>/dev/null && break
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=5); s.ehlo("x"); s.mail("a@b.test")
sys.exit(0 if s.rcpt("u@" + sys.argv[2])[0] == 250 else 1)
PYEOF
		sleep 0.1
	done
	"$EB" send --server "127.0.0.1:$port" -c 20 -n $((NDOM * PER)) --size 4096 --pipelining \
		--json --domain-list "@$WORK/domains.txt" >"$OUT/$tag.hold.json" 2>&1 || rc=$?
	echo "load $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/$tag.load"
	"$EB" etrn --server "127.0.0.1:$port" --sink "127.0.0.1:$SINK_PORT" \
		--expect $((NDOM * PER)) --verify --timeout 300 --idle-exit 10 --json \
		--domain-list "@$WORK/domains.txt" --etrn-sessions 10 >"$OUT/$tag.json" \
		2>"$OUT/$tag.err" || rc=$?
	echo "load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/$tag.load"
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	/usr/bin/python3 - "$OUT/$tag.json" "$tag" "$rc" "$OUT/$tag.load" <<'PYEOF'
import json, sys
path, tag, rc, load = sys.argv[1:5]
try:
    j = json.load(open(path))
except Exception as e:
    print("%s: exit %s, no JSON (%s)" % (tag, rc, e)); sys.exit(0)
e = j.get("etrn", {})
r, f = e.get("reply_ms", {}), e.get("per_domain_first_ms", {})
w = e.get("wakeup_late_ms", {})
print("%s: exit %s; ETRN span %.1f ms; reply p50/p99/max %.2f/%.2f/%.2f ms (a sleeper wakes p99 %.2f ms late); "
      "first msg after reply p50/p99/max %.1f/%.1f/%.1f ms; %d/%d in %.2f s (%.0f msgs/s); %s"
      % (tag, rc, e.get("etrn_span_ms", 0), r.get("p50", -1), r.get("p99", -1), r.get("max", -1), w.get("p99", -1),
         f.get("p50", -1), f.get("p99", -1), f.get("max", -1), e.get("delivered", 0),
         e.get("expected", 0), e.get("drain_s", 0), e.get("drain_msgs_per_s", 0),
         " / ".join(l.strip() for l in open(load))))
PYEOF
}

echo "etrn_burst: $NDOM domains x $PER held, $ROUNDS round(s); results in $OUT"
for r in $(seq 1 "$ROUNDS"); do
	k=0
	for bin in "$@"; do
		k=$((k + 1))
		run_one "$bin" "r$r.b$k"
	done
done
