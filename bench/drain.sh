#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Drain against its ceiling (issue 17, point 5), on its own: one etrnd per
# build given (A/B alternating, a fresh spool each time), N held 4 KiB
# messages for one domain (or DOMAINS domains and that many ETRNs), released
# by ETRN to etrnbench's sink (`etrnbench etrn --sink --verify`); then, in
# the same round, the ceiling: the same sink code alone (`etrnbench sink
# --verify`) fed by `etrnbench send` over as many connections as the drain
# opens (engine threads x drain_connections), the same count and size.
# Rate = messages / (ETRN reply -> last message) for the drain, messages /
# (first -> last message) at the sink alone.
#
#   bench/drain.sh [BUILD_DIR...]     (default: build/; release builds)
#   N=100000 ROUNDS=3 DOMAINS=1 CONNS=8 ETRND_KEYS="k=v ..." bench/drain.sh A B
#   RES=DIR keeps every run's JSON there.
#   PROFILE=1: etrnd runs under callgrind (threads = THREADS), collecting
#   during the drain only; RES/NAME.callgrind and its annotation (no rates:
#   valgrind's are meaningless). e.g. PROFILE=1 THREADS=1 N=5000 ROUNDS=1
#   TRACE=1: `perf stat` on etrnd during the drain counts, per delivered
#   message, its system calls (all, and io_uring_enter), the SQEs it
#   submitted and its io_uring completions of receives, sends and spool
#   file ops (user_data's op, core/loop.c): counts, so they do not depend
#   on the machine's load (RES/NAME.perf; a "trace" table at the end).
# Every process started here is stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILDS=("$@")
[[ ${#BUILDS[@]} -gt 0 ]] || BUILDS=("${BUILD:-$ROOT/build}")
N=${N:-100000}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-4096}
DOMAINS=${DOMAINS:-1}
THREADS=${THREADS:-2}
CONNS=${CONNS:-$((THREADS * 4))}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
EB=${BUILDS[0]}/etrnbench
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
export ETRND_SPOOL_TOOL=${BUILDS[0]}/etrnd-spool ETRND_BIN=${BUILDS[0]}/etrnd
for b in "${BUILDS[@]}"; do
	for f in "$b/etrnd" "$b/etrnctl"; do
		[[ -x $f ]] || { echo "drain.sh: $f missing" >&2; exit 1; }
	done
	if grep -q '^ETRND_SANITIZE:BOOL=ON' "$b/CMakeCache.txt" 2>/dev/null; then
		echo "drain.sh: $b is a sanitizer build" >&2
	fi
done

# shellcheck source=../tests/integration/etrnd_harness.sh
source "$ROOT/tests/integration/etrnd_harness.sh"
# shellcheck source=bench_lib.sh
source "$ROOT/bench/bench_lib.sh"
RES=${RES:-$H_TMP/res}
mkdir -p "$RES"
log() { echo "== $(date +%T) [load $(cut -d' ' -f1-3 /proc/loadavg)] $*" >&2; }

h_free_port SINK_PORT
bench_redis_start drain.sh
{
	echo "domain,queue,dest,etrn_from"
	for i in $(seq 0 $((DOMAINS - 1))); do echo "dom$i.test,,127.0.0.1:$SINK_PORT,127.0.0.0/8"; done
} >"$H_TMP/domains.csv"
"${BUILDS[0]}/etrnctl" --redis "unix:$REDIS_SOCK" import "$H_TMP/domains.csv" >/dev/null </dev/null
for i in $(seq 0 $((DOMAINS - 1))); do echo "dom$i.test"; done >"$H_TMP/domains.txt"
last_dom=dom$((DOMAINS - 1)).test

fsyncs() { # METRICS_PORT: group-commit fdatasyncs so far (all shards); 0 if unknown
	python3 - "$1" <<'PYEOF' || echo 0
import sys, urllib.request
t = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=60).read().decode()
print(sum(int(float(l.split()[-1])) for l in t.splitlines() if l.startswith("etrnd_spool_fsync_seconds_count")))
PYEOF
}

# perf stat's events for TRACE=1, in the order of its CSV lines: the
# completions are told apart by the op in user_data's top byte (core/loop.c
# enum loop_op: 2 receive, 3 send, 4 spool file op).
TRACE_NAMES=(syscalls io_uring_enter sqes recv_cqes send_cqes file_cqes)
trace_start() { # NAME PID: sets TRACE_PID
	TRACE_PID=
	[[ ${TRACE:-0} == 1 ]] || return 0
	local f='user_data >= 0x%x00000000000000 && user_data < 0x%x00000000000000'
	perf stat -x, -o "$RES/$1.perf" -p "$2" \
		-e raw_syscalls:sys_enter -e syscalls:sys_enter_io_uring_enter \
		-e io_uring:io_uring_submit_req \
		-e io_uring:io_uring_complete --filter "$(printf "$f" 2 3)" \
		-e io_uring:io_uring_complete --filter "$(printf "$f" 3 4)" \
		-e io_uring:io_uring_complete --filter "$(printf "$f" 4 5)" &
	TRACE_PID=$!
	H_PIDS+=("$TRACE_PID")
	sleep 0.5 # perf attaches to every thread before the ETRN
}
trace_stop() { # perf stat writes its counts on SIGINT
	[[ -n ${TRACE_PID:-} ]] || return 0
	kill -INT "$TRACE_PID" 2>/dev/null || true
	wait "$TRACE_PID" 2>/dev/null || true
}

drain_one() { # BUILD NAME
	local b=$1 name=$2
	rm -rf "$H_TMP/spool"
	ETRND_BIN=$b/etrnd
	if [[ ${PROFILE:-0} == 1 ]]; then
		ETRND_BIN=$H_TMP/etrnd-callgrind.sh
		printf '#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=%s %s "$@"\n' \
			"$RES/$name.callgrind" "$b/etrnd" >"$ETRND_BIN"
		chmod +x "$ETRND_BIN"
	fi
	# shellcheck disable=SC2086 # ETRND_KEYS: key=value words
	local mport
	h_free_port mport
	h_start_etrnd "redis=unix:$REDIS_SOCK" relay_domains=static.test hostname=etrnd.bench.test \
		threads=$THREADS etrn_rate_limit=100000 log_level=warn "metrics_listen=127.0.0.1:$mport" \
		${ETRND_KEYS:-}
	for _ in $(seq 1 400); do
		python3 - "$ETRND_PORT" "$last_dom" <<'PYEOF' 2>/dev/null && break
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=5); s.ehlo("x"); s.mail("a@b.test")
sys.exit(0 if s.rcpt("u@" + sys.argv[2])[0] == 250 else 1)
PYEOF
		sleep 0.1
	done
	timeout "$RUN_TIMEOUT" "$EB" send --server "127.0.0.1:$ETRND_PORT" -c 20 -n "$N" --size "$SIZE" \
		--pipelining --domain-list "@$H_TMP/domains.txt" --json >"$RES/$name.hold.json" 2>"$RES/$name.hold.err"
	local t0 t1
	local s0 s1 f0 f1
	f0=$(fsyncs "$mport")
	t0=$(awk '{print $14+$15}' "/proc/$ETRND_PID/stat")
	s0=$(awk '{print $15}' "/proc/$ETRND_PID/stat")
	[[ ${PROFILE:-0} == 1 ]] && callgrind_control -i on "$ETRND_PID" >"$RES/$name.cgctl" 2>&1
	trace_start "$name" "$ETRND_PID"
	local etrn_args=(--domain-list "@$H_TMP/domains.txt")
	[[ $DOMAINS -gt 1 ]] && etrn_args+=(--etrn-sessions 10)
	timeout "$RUN_TIMEOUT" "$EB" etrn --server "127.0.0.1:$ETRND_PORT" --sink "127.0.0.1:$SINK_PORT" \
		--expect "$N" --verify --timeout "$RUN_TIMEOUT" --idle-exit 10 --json "${etrn_args[@]}" \
		>"$RES/$name.json" 2>"$RES/$name.err" || log "$name: etrnbench etrn failed: $(tail -n 2 "$RES/$name.err")"
	trace_stop
	t1=$(awk '{print $14+$15}' "/proc/$ETRND_PID/stat")
	s1=$(awk '{print $15}' "/proc/$ETRND_PID/stat")
	f1=$(fsyncs "$mport")
	echo "$((f1 - f0))" >"$RES/$name.fsyncs"
	[[ ${PROFILE:-0} == 1 ]] && { callgrind_control -i off "$ETRND_PID" && callgrind_control -d "$ETRND_PID"; } >>"$RES/$name.cgctl" 2>&1
	echo "$(( (t1 - t0) * 1000000 / $(getconf CLK_TCK) ))" >"$RES/$name.cpu_us"
	echo "$(( (s1 - s0) * 1000000 / $(getconf CLK_TCK) ))" >"$RES/$name.sys_us"
	h_stop_etrnd || log "$name: etrnd did not stop cleanly"
	if [[ ${PROFILE:-0} == 1 ]]; then
		# The dump taken right after the drain (the exit's own may be empty).
		local cg
		cg=$(ls -S "$RES/$name.callgrind"* | head -n 1)
		# head closes the pipe early: not a failure (pipefail, set -e).
		callgrind_annotate --inclusive=no "$cg" 2>/dev/null | head -n 60 >"$RES/$name.self" || true
		callgrind_annotate --inclusive=yes "$cg" 2>/dev/null | head -n 80 >"$RES/$name.incl" || true
	fi
	log "$name: $(json_get "$RES/$name.json" etrn.drain_msgs_per_s) msgs/s, etrnd CPU $(( $(cat "$RES/$name.cpu_us") / N )) us/msg (system $(( $(cat "$RES/$name.sys_us") / N ))), $(cat "$RES/$name.fsyncs") fdatasyncs"
}

sink_alone() { # NAME
	local name=$1 port pid
	h_free_port port
	"$EB" sink --listen "127.0.0.1:$port" --verify --expect "$N" --idle-exit 10 --json \
		>"$RES/$name.json" 2>"$RES/$name.err" &
	pid=$!
	H_PIDS+=("$pid")
	h_wait_port "$port" "$pid" 10 || { echo "drain.sh: sink did not start" >&2; exit 1; }
	timeout "$RUN_TIMEOUT" "$EB" send --server "127.0.0.1:$port" -c "$CONNS" -n "$N" --size "$SIZE" \
		--pipelining --domain-list "@$H_TMP/domains.txt" --json >"$RES/$name.send.json" 2>"$RES/$name.send.err" || true
	wait "$pid" || true
	log "$name: $(json_get "$RES/$name.json" msgs_per_s) msgs/s (sink alone, $CONNS connections)"
}

for r in $(seq 1 "$ROUNDS"); do
	order=$(seq 0 $((${#BUILDS[@]} - 1)))
	(( r % 2 == 0 )) && order=$(seq $((${#BUILDS[@]} - 1)) -1 0)
	for i in $order; do
		drain_one "${BUILDS[$i]}" "drain.b$i.$r"
	done
	sink_alone "sink.$r"
done

python3 - "$RES" "$ROUNDS" "${#BUILDS[@]}" "$N" "${TRACE:-0}" "${TRACE_NAMES[*]}" "${BUILDS[@]}" <<'PYEOF' | tee "$RES/summary"
import json, statistics, sys
res, rounds, nb, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
trace, tnames = sys.argv[5] == "1", sys.argv[6].split()
builds = sys.argv[7:]
def last(path):
    return json.loads(open(path).read().strip().splitlines()[-1])
sink = [last("%s/sink.%d.json" % (res, r))["msgs_per_s"] for r in range(1, rounds + 1)]
print("| what | median msgs/s | of the sink alone | etrnd CPU us/msg | runs |")
print("|---|---:|---:|---:|---|")
print("| sink alone | %.0f | | | %s |" % (statistics.median(sink), ", ".join("%.0f" % x for x in sink)))
for i in range(nb):
    rates, cpu = [], []
    for r in range(1, rounds + 1):
        try:
            rates.append(last("%s/drain.b%d.%d.json" % (res, i, r))["etrn"]["drain_msgs_per_s"])
            cpu.append(int(open("%s/drain.b%d.%d.cpu_us" % (res, i, r)).read()) / n)
        except (OSError, ValueError, KeyError, IndexError):
            pass
    m = statistics.median(rates) if rates else float("nan")
    print("| drain %s | %.0f | %.0f%% | %.1f | %s |" % (builds[i], m, 100 * m / statistics.median(sink),
          statistics.median(cpu) if cpu else float("nan"), ", ".join("%.0f" % x for x in rates)))
if trace:
    # perf stat -x, lines: value,unit,event,... (comments start with #).
    print()
    print("| per delivered message (perf stat, medians) | " + " | ".join(tnames) + " |")
    print("|---|" + "---:|" * len(tnames))
    for i in range(nb):
        cols = [[] for _ in tnames]
        for r in range(1, rounds + 1):
            try:
                vals = [l.split(",")[0] for l in open("%s/drain.b%d.%d.perf" % (res, i, r))
                        if l.strip() and not l.startswith("#")]
                for k in range(len(tnames)):
                    cols[k].append(float(vals[k]) / n)
            except (OSError, ValueError, IndexError):
                pass
        print("| drain %s | " % builds[i] + " | ".join(
            "%.2f" % statistics.median(c) if c else "?" for c in cols) + " |")
PYEOF
