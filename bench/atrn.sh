#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ATRN against ETRN drain rate (issue 12): one etrnd, one domain (dom0.test,
# owned by the bench user), the same held mail (N messages of SIZE bytes,
# `etrnbench send`) released ROUNDS times by ETRN to the customer's server
# and ROUNDS times by ATRN over the customer's own connection, alternating
# which goes first. The customer side of both is etrnbench's one sink code
# (`etrnbench etrn --sink` / `etrnbench atrn`, --verify: every body's
# checksum checked); the only difference is the connection: ETRN's drain
# opens its own (drain_connections per engine thread), ATRN's one connection
# moves from shard to shard. AUTH goes in the clear on an
# odmr_listen_trusted listener (loopback only). Rate = messages / (last
# message received - ETRN or ATRN sent). Target: ATRN >= 90% of ETRN.
#
#   bench/atrn.sh [BUILD_DIR]                 (default: build/; a release build)
#   N=20000 ROUNDS=3 SIZE=4096 bench/atrn.sh /tmp/build-rel
#   RES=DIR: the JSON of every run is kept there (bench/run.sh's report reads
#   atrn.*.json); ATRN_ETRND_KEYS="k=v ...": extra etrnd config lines (e.g.
#   drain_connections=1); TAG=NAME: the runs' files are NAME.{etrn,atrn}.R.json
#   (default atrn); ETRND_KEEP_TMP=1 keeps the temp dir.
# Every process started here is stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${BUILD:-$ROOT/build}}
N=${N:-20000}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-4096}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
TAG=${TAG:-atrn}
export ETRND_BIN=$BUILD/etrnd ETRND_SPOOL_TOOL=$BUILD/etrnd-spool
ETRNCTL=$BUILD/etrnctl
EB=$BUILD/etrnbench
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
BENCH_USER=benchuser
BENCH_PW=bench-odmr-password
for f in "$ETRND_BIN" "$ETRNCTL" "$EB" "$REDIS_SERVER"; do
	[[ -x $f ]] || { echo "atrn.sh: $f missing (cmake --build $BUILD)" >&2; exit 1; }
done
if grep -q '^ETRND_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
	echo "atrn.sh: $BUILD is a sanitizer build: figures are not comparable with RESULTS.md" >&2
fi

# The shell harness: H_TMP, every process in H_PIDS stopped by PID on exit.
# shellcheck source=../tests/integration/etrnd_harness.sh
source "$ROOT/tests/integration/etrnd_harness.sh"
# shellcheck source=bench_lib.sh
source "$ROOT/bench/bench_lib.sh"
RES=${RES:-$H_TMP/res}
mkdir -p "$RES"
log() { echo "== $(date +%T) $*" >&2; }

# ---- Redis: dom0.test, released to the sink, owned by the bench user ---------
h_free_port SINK_PORT
bench_redis_start atrn.sh
CTL=("$ETRNCTL" --redis "unix:$REDIS_SOCK")
"${CTL[@]}" domain add dom0.test --dest "127.0.0.1:$SINK_PORT" --etrn-from 127.0.0.0/8 >/dev/null
"${CTL[@]}" user add "$BENCH_USER" --domain dom0.test --password-stdin <<<"$BENCH_PW" >/dev/null

# ---- etrnd: threads = auto, as bench/run.sh runs it ----------------------------
h_free_port ODMR_PORT
# shellcheck disable=SC2086 # ATRN_ETRND_KEYS is a list of key=value words
h_start_etrnd "odmr_listen_trusted=127.0.0.1:$ODMR_PORT" "redis=unix:$REDIS_SOCK" \
	relay_domains=static.test hostname=etrnd.bench.test threads=auto \
	etrn_rate_limit=100000 log_level=warn ${ATRN_ETRND_KEYS:-}
PORT=$ETRND_PORT
for i in $(seq 1 400); do   # until the domain table from Redis is there
	python3 - "$PORT" <<'PYEOF' 2>/dev/null && break
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=5); s.ehlo("x"); s.mail("a@b.test")
sys.exit(0 if s.rcpt("u@dom0.test")[0] == 250 else 1)
PYEOF
	sleep 0.1
done

hold() { # NAME: N messages for dom0.test, every one acknowledged
	timeout "$RUN_TIMEOUT" "$EB" send --server "127.0.0.1:$PORT" -c 20 -n "$N" --size "$SIZE" \
		--pipelining --domain-list dom0.test --json >"$RES/$1.hold.json" 2>"$RES/$1.hold.err" || {
		echo "atrn.sh: holding $N for $1 failed: $(tail -n 3 "$RES/$1.hold.err")" >&2; exit 1; }
	local ok
	ok=$(json_get "$RES/$1.hold.json" messages_ok)
	[[ $ok == "$N" ]] || { echo "atrn.sh: $1: $ok of $N held" >&2; exit 1; }
}
drain() { # etrn|atrn NAME: release what hold() held; the drain's JSON in RES
	local how=$1 name=$2 try
	local args=(--expect "$N" --verify --timeout "$RUN_TIMEOUT" --json --domain dom0.test)
	for try in $(seq 1 50); do
		if [[ $how == etrn ]]; then
			timeout "$RUN_TIMEOUT" "$EB" etrn --server "127.0.0.1:$PORT" \
				--sink "127.0.0.1:$SINK_PORT" --idle-exit 10 "${args[@]}" \
				>"$RES/$name.json" 2>"$RES/$name.err" && return 0
		else
			timeout "$RUN_TIMEOUT" "$EB" atrn --server "127.0.0.1:$ODMR_PORT" \
				--user "$BENCH_USER" --password "$BENCH_PW" "${args[@]}" \
				>"$RES/$name.json" 2>"$RES/$name.err" && return 0
		fi
		# The previous drain's connections may still be closing: ETRN
		# 252 / ATRN 451 mean "busy", anything else is a failure.
		grep -Eq '"(252|451)":' "$RES/$name.json" || break
		sleep 0.2
	done
	echo "atrn.sh: $how drain $name failed: $(head -c 600 "$RES/$name.json") $(tail -n 3 "$RES/$name.err")" >&2
	exit 1
}

for r in $(seq 1 "$ROUNDS"); do
	order="etrn atrn"
	(( r % 2 == 0 )) && order="atrn etrn"
	for how in $order; do
		hold "$TAG.$how.$r"
		drain "$how" "$TAG.$how.$r"
		log "round $r $how: $(json_get "$RES/$TAG.$how.$r.json" "$how.drain_msgs_per_s") msgs/s"
	done
done
h_stop_etrnd || { echo "atrn.sh: etrnd did not exit cleanly" >&2; exit 1; }

python3 - "$RES" "$ROUNDS" "$N" "$SIZE" "$TAG" <<'PYEOF' | tee "$RES/$TAG.summary"
import json, statistics, sys
res, rounds, n, size, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rates = {"etrn": [], "atrn": []}
for how in rates:
    for r in range(1, rounds + 1):
        j = json.loads(open("%s/%s.%s.%d.json" % (res, tag, how, r)).read().strip().splitlines()[-1])
        rates[how].append(j[how]["drain_msgs_per_s"])
e, a = statistics.median(rates["etrn"]), statistics.median(rates["atrn"])
print("| drain of %s held (%s B), one domain | median msgs/s | runs |" % (n, size))
print("|---|---:|---|")
for how, label in (("etrn", "ETRN (drain's own connections)"), ("atrn", "ATRN (the customer's connection)")):
    print("| %s | %.0f | %s |" % (label, statistics.median(rates[how]), ", ".join("%.0f" % x for x in rates[how])))
print("")
print("ATRN / ETRN = %.0f%% (target >= 90%%): %s" % (100 * a / e, "met" if a >= 0.9 * e else "MISSED"))
PYEOF
