#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/ingest_acks.sh: ingest rate while the spool is busy with acks (a drain
# appending a DONE per delivered recipient) and compaction, against plain
# ingest, on the same etrnd build, alternating rounds (issue 3: "within 10%").
#
# Each round starts a fresh etrnd (segment_size 4M, compact_min_age 0) on a
# fresh spool. In "acks" rounds the spool first holds HELD messages for
# held.test interleaved with KEEP for keep.test (never drained), so that as
# the drain of held.test runs its segments become mostly dead and are
# compacted; the ingest load then runs while that drain and compaction go on.
# Loopback only; every process is stopped by PID. Writes its section into
# bench/RESULTS.md between markers (bench/report.py keeps it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-5}          # seconds of measured ingest per round
HELD=${HELD:-150000}   # 1 KiB messages held for held.test (drained)
KEEP=${KEEP:-20000}    # 1 KiB messages held for keep.test (stay: compaction)
SESS=20
EB=$BUILD/etrnbench
for f in "$BUILD/etrnd" "$BUILD/etrnctl" "$EB"; do
	[[ -x $f ]] || { echo "ingest_acks.sh: $f missing (make build)" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/etrnd-acks.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

redis-server --port 0 --unixsocket "$WORK/r.sock" --daemonize no --save "" \
	>"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [[ -S $WORK/r.sock ]] && break; sleep 0.05; done
SINK=$(free_port)
CTL=("$BUILD/etrnctl" --redis "unix:$WORK/r.sock")
"${CTL[@]}" domain add held.test --dest "127.0.0.1:$SINK" --etrn-from 127.0.0.0/8 >/dev/null
"${CTL[@]}" domain add keep.test --dest "127.0.0.1:$SINK" --etrn-from 127.0.0.0/8 >/dev/null
DOMS=""
for i in $(seq 0 99); do
	"${CTL[@]}" domain add "dom$i.test" >/dev/null
	DOMS+="${DOMS:+,}dom$i.test"
done

round() { # MODE -> prints msgs/s of the measured ingest
	local mode=$1 port epid spid rate
	rm -rf "$WORK/spool"
	port=$(free_port)
	"$BUILD/etrnd" -c "$ROOT/etc/etrnd.conf" -o "listen=127.0.0.1:$port" \
		-o "spool_dir=$WORK/spool" -o "redis=unix:$WORK/r.sock" \
		-o "control_socket=$WORK/ctl" -o segment_size=4M -o compact_min_age=0 \
		-o log_level=info >"$WORK/etrnd.$mode.log" 2>&1 &
	epid=$!
	PIDS+=($epid)
	for _ in $(seq 1 100); do [[ -S $WORK/ctl ]] && break; sleep 0.05; done
	sleep 0.3
	if [[ $mode == acks ]]; then
		"$EB" send --server "127.0.0.1:$port" -c 10 -n "$HELD" --size 1024 --pipelining \
			--domain-list held.test --json >/dev/null &
		local h1=$!
		"$EB" send --server "127.0.0.1:$port" -c 2 -n "$KEEP" --size 1024 --pipelining \
			--domain-list keep.test --json >/dev/null
		wait "$h1"
		timeout 120 "$EB" etrn --server "127.0.0.1:$port" --domain held.test \
			--sink "127.0.0.1:$SINK" --expect "$HELD" --timeout 100 --json \
			>"$WORK/etrn.json" 2>&1 &
		spid=$!
		PIDS+=($spid)
		sleep 0.2 # the drain is under way
	fi
	rate=$(timeout $((DUR + 30)) "$EB" send --server "127.0.0.1:$port" -c $SESS \
		--duration "$DUR" --size 4096 --pipelining --domain-list "$DOMS" --json | json msgs_per_s)
	if [[ $mode == acks ]]; then
		wait "$spid" || true
		# What ran beside the load: segments compacted, recipients acked.
		echo "$(grep -c "compacted segment" "$WORK/etrnd.$mode.log" || true)" \
			"$(grep -c "status=sent" "$WORK/etrnd.$mode.log" || true)" >"$WORK/side"
	fi
	kill "$epid"
	wait "$epid" 2>/dev/null || true
	echo "$rate"
}

plain=() acks=() side=()
for r in $(seq 1 "$ROUNDS"); do
	p=$(round plain)
	a=$(round acks)
	plain+=("$p")
	acks+=("$a")
	read -r nc ns <"$WORK/side"
	side+=("$nc/$ns")
	echo "round $r: plain $p msgs/s; with acks+compaction $a msgs/s ($nc segments compacted, $ns recipients delivered)" >&2
done
python3 - "$RESULTS" "$ROUNDS" "$DUR" "$HELD" "$KEEP" "${plain[*]}" "${acks[*]}" "${side[*]}" <<'EOF'
import re, statistics, sys
path, rounds, dur, held, keep, plain, acks, side = sys.argv[1:9]
side = [x.split("/") for x in side.split()]
plain = [float(x) for x in plain.split()]
acks = [float(x) for x in acks.split()]
mp, ma = statistics.median(plain), statistics.median(acks)
ratio = ma / mp
rows = "\n".join("| %d | %.0f | %.0f | %.2f | %s | %s |" % (i + 1, p, a, a / p, c, d)
                 for i, (p, a, (c, d)) in enumerate(zip(plain, acks, side)))
verdict = "met" if ratio >= 0.9 else "**MISSED**"
sec = f"""<!-- ingest_acks.sh:begin (rewritten by bench/ingest_acks.sh) -->
## Ingest with acks and compaction running (bench/ingest_acks.sh)

`ROUNDS={rounds} DUR={dur} HELD={held} KEEP={keep} bench/ingest_acks.sh`: 4 KiB
ingest by `etrnbench send -c 20 --pipelining` for {dur} s over 100 domains, into
a fresh etrnd (`segment_size = 4M`, `compact_min_age = 0`), plain, and while a
drain of {held} held 1 KiB messages (interleaved with {keep} that stay, so
their segments get compacted) appends a DONE per delivery. Rounds alternate.

| round | plain msgs/s | with acks + compaction msgs/s | ratio | segments compacted | held recipients delivered |
|---|---:|---:|---:|---:|---:|
{rows}
| median | {mp:.0f} | {ma:.0f} | {ratio:.2f} | | |

Both modes log at `log_level = info` (a line per message, as in production).

Target (issue 3): within 10% of plain ingest: {verdict} ({(1 - ratio) * 100:.1f}% slower).
<!-- ingest_acks.sh:end -->
"""
try:
    old = open(path).read()
except FileNotFoundError:
    old = "# etrnd benchmark results\n"
if "<!-- ingest_acks.sh:begin" in old:
    old = re.sub(r"<!-- ingest_acks.sh:begin.*?<!-- ingest_acks.sh:end -->\n?", sec, old, flags=re.S)
else:
    old = old.rstrip("\n") + "\n\n" + sec
open(path, "w").write(old)
print(f"plain {mp:.0f} msgs/s, with acks+compaction {ma:.0f} msgs/s: ratio {ratio:.2f}")
EOF
