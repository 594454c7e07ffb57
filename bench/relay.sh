#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Outbound relay benchmark (issue 13): N messages of SIZE bytes from
# SESSIONS sessions of a mynetworks client (`etrnbench send`, PIPELINING)
# to a foreign domain, relayed through relayhost to a sink (`etrnbench
# sink --verify`), by etrnd (mynetworks = 127.0.0.0/8, relayhost =
# [127.0.0.1]:SINK, threads = auto) and by a private Postfix (the same
# relayhost and mynetworks, its default queue manager; bench/pf_lib.sh),
# ROUNDS rounds each, alternating which goes first, in one run.
# Rate = messages delivered / (start of the load -> last message at the
# sink); the load and the sink print their CLOCK_MONOTONIC start, so both
# ends are on one clock. Every round must deliver each acknowledged message
# exactly once (distinct X-Etrnbench seqs = acknowledged, no repeats, every
# checksum good) and leave the relay's queue empty, or the script fails.
# Target: etrnd >= 20x Postfix's delivered rate.
#
#   bench/relay.sh [BUILD_DIR]          (default build/: a release build)
#   N=20000 ROUNDS=3 bench/relay.sh /tmp/build-rel
#   RES=DIR keeps every run's JSON (bench/run.sh's report reads relay.*);
#   PF_N: Postfix's message count (default N); ETRND_KEEP_TMP=1 keeps the
#   temp dir. Prints a markdown table and the ratio.
# Loopback only; every process started here is stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${BUILD:-$ROOT/build}}
N=${N:-20000}
PF_N=${PF_N:-$N}
ROUNDS=${ROUNDS:-1}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}   # seconds, per load and per sink
IDLE_EXIT=${IDLE_EXIT:-10}        # the sink ends this long after its last message
DOMAIN=relay.example              # foreign: no row, no route: relayhost
TARGET=20
export ETRND_BIN=$BUILD/etrnd ETRND_SPOOL_TOOL=$BUILD/etrnd-spool
EB=$BUILD/etrnbench
for f in "$ETRND_BIN" "$ETRND_SPOOL_TOOL" "$EB" /usr/sbin/postfix; do
	[[ -x $f ]] || { echo "relay.sh: $f missing (cmake --build $BUILD; apt-get install postfix)" >&2; exit 1; }
done
if grep -q '^ETRND_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
	echo "relay.sh: $BUILD is a sanitizer build: figures are not comparable with RESULTS.md" >&2
fi

# The shell harness: H_TMP, every process in H_PIDS stopped by PID on exit.
# shellcheck source=../tests/integration/etrnd_harness.sh
source "$ROOT/tests/integration/etrnd_harness.sh"
# shellcheck source=pf_lib.sh
source "$ROOT/bench/pf_lib.sh"
chmod 755 "$H_TMP"   # Postfix (user postfix) must reach its data and queue dirs
trap 'pf_stop; h_cleanup' EXIT
RES=${RES:-$H_TMP/res}
mkdir -p "$RES"
log() { echo "== $(date +%T) $*" >&2; }

# sink_start NAME: a fresh sink on a fresh port (SINK_PORT, SINK_PID).
sink_start() {
	h_free_port SINK_PORT
	"$EB" sink --listen "127.0.0.1:$SINK_PORT" --verify --idle-exit "$IDLE_EXIT" \
		--duration "$RUN_TIMEOUT" --json >"$RES/$1.sink.json" 2>"$RES/$1.sink.err" &
	SINK_PID=$!
	H_PIDS+=("$SINK_PID")
	h_wait_port "$SINK_PORT" "$SINK_PID" 10 || { echo "relay.sh: sink did not start" >&2; exit 1; }
}

# load NAME PORT COUNT: the load against PORT, then until the sink is done
# (IDLE_EXIT seconds without a message, or RUN_TIMEOUT).
load() {
	local name=$1 port=$2 n=$3 rc=0
	timeout "$RUN_TIMEOUT" "$EB" send --server "127.0.0.1:$port" -c "$SESSIONS" -n "$n" \
		--size "$SIZE" --pipelining --domain-list "$DOMAIN" --json \
		>"$RES/$name.send.json" 2>"$RES/$name.send.err" || rc=$?
	[[ $rc -eq 0 ]] || log "$name: etrnbench send exited $rc: $(tail -n 3 "$RES/$name.send.err")"
	# Nothing acknowledged: nothing will arrive, do not wait for the sink.
	grep -q '"messages_ok":0,' "$RES/$name.send.json" 2>/dev/null && kill -TERM "$SINK_PID" 2>/dev/null
	wait "$SINK_PID" || log "$name: the sink exited $?"
}

# check NAME QUEUED: one round's figures as a JSON line in RES/NAME.json;
# fails unless every acknowledged message arrived once and the queue is empty.
check() {
	python3 - "$RES" "$1" "$2" <<'PYEOF'
import json, sys
res, name, queued = sys.argv[1], sys.argv[2], int(sys.argv[3])
def last(f):
    return json.loads(open("%s/%s" % (res, f)).read().strip().splitlines()[-1])
s, k = last(name + ".send.json"), last(name + ".sink.json")
span = k["t0_mono_s"] + k["last_s"] - s["t0_mono_s"]
r = {"name": name, "acked": s["messages_ok"], "failed": s["messages_failed"],
     "delivered": k["messages"], "distinct": k["distinct"], "dups": k["dups"],
     "bad_sum": k["bad_sum"], "no_sum": k["no_sum"], "queued_after": queued,
     "ingest_msgs_per_s": s["msgs_per_s"], "span_s": round(span, 3),
     "first_delivery_s": round(k["t0_mono_s"] + k["first_s"] - s["t0_mono_s"], 3),
     "relay_msgs_per_s": round(k["distinct"] / span, 1) if span > 0 else 0,
     "sink_connections": k["connections"]}
r["once"] = (r["acked"] > 0 and r["failed"] == 0 and r["distinct"] == r["acked"] and
             r["delivered"] == r["acked"] and r["dups"] == 0 and r["bad_sum"] == 0 and
             r["no_sum"] == 0 and queued == 0)
open("%s/%s.json" % (res, name), "w").write(json.dumps(r) + "\n")
print(json.dumps(r))
sys.exit(0 if r["once"] else 1)
PYEOF
}

FAILED=0
run_etrnd() { # NAME
	local name=$1 left
	sink_start "$name"
	rm -rf "$H_TMP/spool" "$H_TMP/etrnd.stderr"
	h_start_etrnd threads=auto hostname=etrnd.bench.test relay_domains=static.test \
		mynetworks=127.0.0.0/8 "relayhost=[127.0.0.1]:$SINK_PORT" log_level=warn
	for _ in $(seq 1 200); do grep -q 'etrnd started:' "$ETRND_STDERR" && break; sleep 0.05; done
	load "$name" "$ETRND_PORT" "$N"
	h_stop_etrnd || FAILED=1
	cp "$ETRND_STDERR" "$RES/$name.etrnd.log"
	# etrnd-spool stats, total row: ... msg done ...: what is not done is
	# still queued (one recipient per message).
	left=$("$ETRND_SPOOL_TOOL" stats "$ETRND_SPOOL" | awk '$1 == "total" { print $4 - $5 }')
	check "$name" "${left:-1}" >&2 || { log "$name: not every message once"; FAILED=1; }
}
run_postfix() { # NAME
	local name=$1 left
	sink_start "$name"
	pf_prepare "$H_TMP/postfix"
	local pf_port
	h_free_port pf_port
	pf_launch "$pf_port" "# Relays everything from mynetworks through the sink, default qmgr.
relayhost = [127.0.0.1]:$SINK_PORT" || exit 1
	H_PIDS+=("$PF_MASTER")
	load "$name" "$PF_PORT" "$PF_N"
	left=$(( $(pf_queued) + $(pf_deferred) ))
	pf_stop
	cp "$PF_DIR/maillog" "$RES/$name.postfix.log" 2>/dev/null || true
	check "$name" "$left" >&2 || { log "$name: not every message once"; FAILED=1; }
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$ROUNDS"); do
	order="etrnd postfix"
	(( r % 2 == 0 )) && order="postfix etrnd"
	for sys in $order; do
		log "round $r: $sys relays $([[ $sys == etrnd ]] && echo "$N" || echo "$PF_N") x $SIZE B from $SESSIONS sessions"
		"run_$sys" "relay.$sys.$r"
	done
done
echo "load_before=$LOAD_BEFORE load_after=$(cut -d' ' -f1-3 /proc/loadavg) n=$N pf_n=$PF_N rounds=$ROUNDS sessions=$SESSIONS size=$SIZE" >"$RES/relay.meta"

python3 - "$RES" "$ROUNDS" "$TARGET" <<'PYEOF' | tee "$RES/relay.summary"
import json, statistics, sys
res, rounds, target = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rates = {"etrnd": [], "postfix": []}
print("| relay through relayhost | messages | delivered once | ingest msgs/s | first delivery (s) | load start -> last delivery (s) | relayed msgs/s | messages per connection |")
print("|---|---:|---|---:|---:|---:|---:|---:|")
for sys_ in rates:
    for r in range(1, rounds + 1):
        try:
            j = json.loads(open("%s/relay.%s.%d.json" % (res, sys_, r)).read())
        except (OSError, ValueError):
            print("| %s round %d | | not measured | | | | | |" % (sys_, r))
            continue
        rates[sys_].append(j["relay_msgs_per_s"])
        print("| %s round %d | %d | %s | %.0f | %.3f | %.3f | %.0f | %.1f |" % (
            sys_, r, j["acked"], "yes" if j["once"] else "**no**: %d distinct, %d repeats, %d still queued" % (
                j["distinct"], j["dups"], j["queued_after"]),
            j["ingest_msgs_per_s"], j["first_delivery_s"], j["span_s"], j["relay_msgs_per_s"],
            j["delivered"] / max(j["sink_connections"], 1)))
e = statistics.median(rates["etrnd"]) if rates["etrnd"] else None
p = statistics.median(rates["postfix"]) if rates["postfix"] else None
print("")
if e and p:
    print("etrnd / Postfix relayed rate = %.1fx (target >= %.0fx): %s" % (e / p, target, "met" if e >= target * p else "MISSED"))
else:
    print("etrnd / Postfix relayed rate: not measured")
PYEOF
[[ $FAILED -eq 0 ]] || { echo "relay.sh: a round did not deliver every message exactly once" >&2; exit 1; }
