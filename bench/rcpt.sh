#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Recipient validation benchmark (issue 19 point 1), one run:
#  1. an import file of N addresses (u0..u999, the local parts etrnbench
#     sends to, then first.lastNNN names), imported into one domain with
#     `etrnctl rcpt import --replace` into a private redis-server (timed);
#  2. etrnd's RSS with the domain's rcpt_check off (no set held), then on
#     (the daemon reads and builds the set: its log line gives the load time
#     and the set's own bytes): memory per million addresses;
#  3. the lookup alone (build/etrnd-rcptbench: ns per hit and per miss);
#  4. ingest (`etrnbench send`, SESSIONS sessions, PIPELINING, 4 KiB, DUR s
#     each, recipients in the set) with rcpt_check on against off, ROUNDS
#     rounds each, alternating, the same etrnd. Target: on >= 95% of off.
# Writes RES/rcpt.json (one line, bench/report.py's "Recipient validation"
# section) and prints it. Loopback only; every process is stopped by PID.
#
#   bench/rcpt.sh [BUILD_DIR]            (default build/: a release build)
#   bench/rcpt.sh --quick [BUILD_DIR]    (N=100000, DUR=2, ROUNDS=2)
#   N=1000000 DUR=10 ROUNDS=3 RES=DIR bench/rcpt.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
[[ ${1:-} == --quick ]] && { QUICK=1; shift; }
BUILD=${1:-${BUILD:-$ROOT/build}}
if [[ $QUICK == 1 ]]; then
	N=${N:-100000}; DUR=${DUR:-2}; ROUNDS=${ROUNDS:-2}
else
	N=${N:-1000000}; DUR=${DUR:-10}; ROUNDS=${ROUNDS:-3}
fi
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
LOOKUPS=${LOOKUPS:-1000000}
DOMAIN=rcpt.test
export ETRND_BIN=$BUILD/etrnd ETRND_SPOOL_TOOL=$BUILD/etrnd-spool
ETRNCTL=$BUILD/etrnctl
EB=$BUILD/etrnbench
RB=$BUILD/etrnd-rcptbench
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
for f in "$ETRND_BIN" "$ETRNCTL" "$EB" "$RB" "$REDIS_SERVER"; do
	[[ -x $f ]] || { echo "rcpt.sh: $f missing (cmake --build $BUILD)" >&2; exit 1; }
done
if grep -q '^ETRND_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
	echo "rcpt.sh: $BUILD is a sanitizer build: figures are not comparable with RESULTS.md" >&2
fi

# shellcheck source=../tests/integration/etrnd_harness.sh
source "$ROOT/tests/integration/etrnd_harness.sh"
# shellcheck source=bench_lib.sh
source "$ROOT/bench/bench_lib.sh"
RES=${RES:-$H_TMP/res}
mkdir -p "$RES"
log() { echo "== $(date +%T) $*" >&2; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

bench_redis_start rcpt.sh
ctl() { "$ETRNCTL" --redis "unix:$REDIS_SOCK" "$@"; }

# 1. The file and its import.
FILE=$H_TMP/rcpts.txt
/usr/bin/python3 - "$N" "$FILE" <<'PYEOF'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
first = ["anna", "bernd", "chloe", "dmitri", "eva", "farid", "greta", "hiro", "ines", "jonas"]
last = ["meier", "schmidt", "okafor", "tanaka", "rossi", "novak", "garcia", "lindqvist"]
with open(path, "w") as f:
    f.write("# bench/rcpt.sh: etrnbench's u0..u999, then made-up names\n")
    for i in range(n):
        if i < 1000:
            f.write("u%d\n" % i)
        else:
            f.write("%s.%s%d\n" % (first[i % 10], last[(i // 10) % 8], i))
PYEOF
ctl domain add "$DOMAIN" --rcpt-check off >/dev/null
t0=$(date +%s.%N)
ctl rcpt import --replace "$DOMAIN" "$FILE" >"$H_TMP/import.out"
t1=$(date +%s.%N)
IMPORT_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
log "imported $N addresses in $IMPORT_S s: $(cat "$H_TMP/import.out")"

# 2. etrnd, the set not held, then held.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
h_start_etrnd threads=auto sync=batch "redis=unix:$REDIS_SOCK" relay_domains=static.test \
	"rcpt_max_per_domain=$((N + 1000))" "rcpt_max_total=$((N + 1000))"
LOADED_RE="rcpts $DOMAIN: [0-9]+ recipient\\(s\\) loaded in"
loaded_count() { grep -cE "$LOADED_RE" "$ETRND_STDERR" || true; }
dropped_count() { grep -c "rcpts $DOMAIN: rcpt_check off" "$ETRND_STDERR" || true; }
# wait_count FN N: until FN prints at least N (a hang guard bounds it).
wait_count() {
	for _ in $(seq 1 2400); do
		[[ $($1) -ge $2 ]] && return 0
		sleep 0.05
	done
	echo "rcpt.sh: $1 never reached $2; log tail:" >&2
	tail -n 20 "$ETRND_STDERR" >&2
	exit 1
}
sleep 1   # the engines' first allocations settle (RSS, not a correctness wait)
RSS_OFF=$(rss_kib "$ETRND_PID")
ctl domain set "$DOMAIN" --rcpt-check on >/dev/null
wait_count loaded_count 1
RSS_ON=$(rss_kib "$ETRND_PID")
LOAD_LINE=$(grep -E "$LOADED_RE" "$ETRND_STDERR" | tail -n 1)
log "$LOAD_LINE; RSS $RSS_OFF -> $RSS_ON KiB"

# 3. The lookup alone.
"$RB" "$FILE" "$DOMAIN" "$LOOKUPS" >"$RES/rcpt.lookup.json"
log "lookup: $(cat "$RES/rcpt.lookup.json")"

# 4. Ingest, on and off alternating (on first in odd rounds).
send() { # LABEL
	timeout $((DUR + 120)) "$EB" send --server "127.0.0.1:$ETRND_PORT" -c "$SESSIONS" --pipelining \
		--size "$SIZE" --domain-list "$DOMAIN" --duration "$DUR" --json --label "$1" \
		>"$RES/rcpt.$1.json" 2>"$RES/rcpt.$1.err"
}
set_check() { # on|off
	local n
	if [[ $1 == on ]]; then
		n=$(loaded_count)
		ctl domain set "$DOMAIN" --rcpt-check on >/dev/null
		wait_count loaded_count $((n + 1))
	else
		n=$(dropped_count)
		ctl domain set "$DOMAIN" --rcpt-check off >/dev/null
		wait_count dropped_count $((n + 1))
	fi
}
ON=() OFF=()
state=on
for r in $(seq 1 "$ROUNDS"); do
	order="on off"
	[[ $((r % 2)) == 0 ]] && order="off on"
	for m in $order; do
		[[ $state == "$m" ]] || { set_check "$m"; state=$m; }
		send "$m.$r"
		rate=$(json_get "$RES/rcpt.$m.$r.json" msgs_per_s)
		failed=$(json_get "$RES/rcpt.$m.$r.json" messages_failed)
		log "round $r, rcpt_check $m: $rate msgs/s ($failed failed)"
		[[ $m == on ]] && ON+=("$rate") || OFF+=("$rate")
	done
done
h_stop_etrnd || true
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo "+uncommitted" || true)

/usr/bin/python3 - "$RES" <<PYEOF
import json, re, statistics, sys
res = sys.argv[1]
on = [float(x) for x in "${ON[*]}".split()]
off = [float(x) for x in "${OFF[*]}".split()]
look = json.loads(open(res + "/rcpt.lookup.json").read())
m = re.search(r"(\d+) recipient\(s\) loaded in (\d+) ms, (\d+) bytes", """$LOAD_LINE""")
j = {
    "bench": "rcpt", "commit": "$REV$DIRTY", "n": $N, "sessions": $SESSIONS, "size": $SIZE,
    "dur": $DUR, "rounds": $ROUNDS, "import_s": $IMPORT_S,
    "daemon_loaded": int(m.group(1)) if m else None,
    "daemon_load_ms": int(m.group(2)) if m else None,
    "set_bytes": int(m.group(3)) if m else None,
    "rss_off_kib": $RSS_OFF, "rss_on_kib": $RSS_ON,
    "rss_per_million_mib": ($RSS_ON - $RSS_OFF) / 1024.0 * 1e6 / $N,
    "lookup": look, "on": on, "off": off,
    "on_median": statistics.median(on) if on else None,
    "off_median": statistics.median(off) if off else None,
    "load_before": "$LOAD_BEFORE", "load_after": "$LOAD_AFTER",
}
j["ratio"] = j["on_median"] / j["off_median"] if on and off and j["off_median"] else None
line = json.dumps(j)
open(res + "/rcpt.json", "w").write(line + "\n")
print(line)
PYEOF
