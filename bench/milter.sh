#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Milter benchmark (issue 19 point 2): ingest of N messages of SIZE bytes
# from SESSIONS sessions (`etrnbench send`) by etrnd with no milter against
# etrnd with one accept-everything milter (build/etrnd-milterbench: C over
# proto/milter_codec, every event asked for and answered, so etrnd's client
# does all its work and the filter is not the bottleneck: its own CPU is
# reported), alternating which goes first, ROUNDS rounds each, in one run.
# Reported: the rates and their ratio, and etrnd's CPU per message (user +
# system from /proc/PID/stat around the load) with the milter minus
# without: the CPU the milter client costs per message. Every round must
# have every message acknowledged and stored (etrnd-spool stats).
#
#   bench/milter.sh [BUILD_DIR]          (default build/: a release build)
#   N=20000 ROUNDS=3 bench/milter.sh /tmp/build-rel
#   RES=DIR keeps every run's JSON (bench/run.sh's report reads milter.*).
# Loopback only; every process started here is stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${BUILD:-$ROOT/build}}
N=${N:-20000}
ROUNDS=${ROUNDS:-3}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}   # seconds, per load
export ETRND_BIN=$BUILD/etrnd ETRND_SPOOL_TOOL=$BUILD/etrnd-spool
EB=$BUILD/etrnbench
MB=$BUILD/etrnd-milterbench
for f in "$ETRND_BIN" "$ETRND_SPOOL_TOOL" "$EB" "$MB"; do
	[[ -x $f ]] || { echo "milter.sh: $f missing (cmake --build $BUILD)" >&2; exit 1; }
done
if grep -q '^ETRND_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
	echo "milter.sh: $BUILD is a sanitizer build: figures are not comparable with RESULTS.md" >&2
fi

# The shell harness: H_TMP, every process in H_PIDS stopped by PID on exit.
# shellcheck source=../tests/integration/etrnd_harness.sh
source "$ROOT/tests/integration/etrnd_harness.sh"
RES=${RES:-$H_TMP/res}
mkdir -p "$RES"
log() { echo "== $(date +%T) $*" >&2; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# The filter, started once for every milter round.
h_free_port MILTER_PORT
"$MB" "$MILTER_PORT" >"$RES/milter.filter.log" 2>&1 &
MILTER_PID=$!
H_PIDS+=("$MILTER_PID")
h_wait_port "$MILTER_PORT" "$MILTER_PID" 10 || { echo "milter.sh: etrnd-milterbench did not start" >&2; exit 1; }

FAILED=0
run() { # NAME [key=value...]
	local name=$1 rc=0 e0 e1 f0 f1 stored
	shift
	rm -rf "$H_TMP/spool" "$H_TMP/etrnd.stderr"
	h_start_etrnd threads=auto hostname=etrnd.bench.test relay_domains=demo.test log_level=warn "$@"
	e0=$(ticks "$ETRND_PID")
	f0=$(ticks "$MILTER_PID")
	timeout "$RUN_TIMEOUT" "$EB" send --server "127.0.0.1:$ETRND_PORT" -c "$SESSIONS" -n "$N" \
		--size "$SIZE" --pipelining --domain-list demo.test --json \
		>"$RES/$name.send.json" 2>"$RES/$name.send.err" || rc=$?
	e1=$(ticks "$ETRND_PID")
	f1=$(ticks "$MILTER_PID")
	[[ $rc -eq 0 ]] || { log "$name: etrnbench send exited $rc: $(tail -n 3 "$RES/$name.send.err")"; FAILED=1; }
	h_stop_etrnd || FAILED=1
	cp "$ETRND_STDERR" "$RES/$name.etrnd.log"
	stored=$("$ETRND_SPOOL_TOOL" stats "$ETRND_SPOOL" | awk '$1 == "total" { print $4 }')
	/usr/bin/python3 - "$RES" "$name" "$e0" "$e1" "$f0" "$f1" "$HZ" "${stored:-0}" <<'PYEOF' || FAILED=1
import json, sys
res, name = sys.argv[1], sys.argv[2]
e0, e1, f0, f1, hz, stored = (int(x) for x in sys.argv[3:9])
s = json.loads(open("%s/%s.send.json" % (res, name)).read().strip().splitlines()[-1])
ok = s["messages_ok"]
r = {"name": name, "acked": ok, "failed": s["messages_failed"], "stored": stored,
     "msgs_per_s": s["msgs_per_s"], "etrnd_cpu_s": (e1 - e0) / hz,
     "filter_cpu_s": (f1 - f0) / hz,
     "etrnd_cpu_us_per_msg": (e1 - e0) / hz * 1e6 / ok if ok else None}
r["good"] = ok > 0 and r["failed"] == 0 and stored == ok
open("%s/%s.json" % (res, name), "w").write(json.dumps(r) + "\n")
print(json.dumps(r))
sys.exit(0 if r["good"] else 1)
PYEOF
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$ROUNDS"); do
	order="none milter"
	(( r % 2 == 0 )) && order="milter none"
	for kind in $order; do
		log "round $r: $kind, $N x $SIZE B from $SESSIONS sessions"
		if [[ $kind == milter ]]; then
			run "milter.milter.$r" "milter=inet:127.0.0.1:$MILTER_PORT" >&2
		else
			run "milter.none.$r" >&2
		fi
	done
done
echo "load_before=$LOAD_BEFORE load_after=$(cut -d' ' -f1-3 /proc/loadavg) n=$N rounds=$ROUNDS sessions=$SESSIONS size=$SIZE commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" >"$RES/milter.meta"

/usr/bin/python3 - "$RES" "$ROUNDS" <<'PYEOF' | tee "$RES/milter.summary"
import json, statistics, sys
res, rounds = sys.argv[1], int(sys.argv[2])
v = {"none": [], "milter": []}
print("| ingest 4 KiB | round | messages | stored | msgs/s | etrnd CPU us/msg | filter CPU s |")
print("|---|---:|---:|---|---:|---:|---:|")
for kind in v:
    for r in range(1, rounds + 1):
        try:
            j = json.loads(open("%s/milter.%s.%d.json" % (res, kind, r)).read())
        except (OSError, ValueError):
            print("| %s | %d | | not measured | | | |" % (kind, r))
            continue
        if j["good"]:
            v[kind].append(j)
        print("| %s | %d | %d | %s | %.0f | %.1f | %.2f |" % (kind, r, j["acked"],
              "yes" if j["good"] else "**no**", j["msgs_per_s"], j["etrnd_cpu_us_per_msg"] or 0,
              j["filter_cpu_s"]))
med = lambda k, f: statistics.median(x[f] for x in v[k]) if v[k] else None
rn, rm = med("none", "msgs_per_s"), med("milter", "msgs_per_s")
cn, cm = med("none", "etrnd_cpu_us_per_msg"), med("milter", "etrnd_cpu_us_per_msg")
print("")
if rn and rm:
    print("with milter / without = %.2f; etrnd CPU per message %.1f us with, %.1f us without: the milter client costs %.1f us per message" % (
        rm / rn, cm, cn, cm - cn))
else:
    print("with milter / without: not measured")
PYEOF
[[ $FAILED -eq 0 ]] || { echo "milter.sh: a round failed (see $RES)" >&2; exit 1; }
