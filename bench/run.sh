#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# etrnd's benchmark suite, side by side in one run: etrnd, a private Postfix
# (Debian's package, its own config/queue/data directories under a temp dir,
# holding mail with defer_transports + fast_flush_domains, released by ETRN)
# and Postfix's smtp-sink (it throws mail away). Each figure is also set
# against the limit that really bounds it, measured in the same run (issue
# 17): etrnd itself with `sync = none` (what durability costs), `etrnbench
# sink` alone (a no-disk io_uring receiver: what client and loopback allow,
# and for drains what the customer's side takes), and the disk's sequential
# write bandwidth with fdatasync (dd). The load and the customer's server
# are bench/etrnbench (build/etrnbench). Scenarios:
#   ingest 4 KiB with 20/200/2000 sessions; p99 latency at 50% of peak;
#   ingest 100 KiB; drain of held mail for one domain (ETRN) and for 1,000
#   domains at once (1,000 ETRNs); the same drain over the customer's own
#   connection (ATRN, bench/atrn.sh) against ETRN; 10,000 idle connections
#   during ingest; STARTTLS (issue 11): ingest with STARTTLS on every
#   session against the same load in clear, TLS handshakes per second and
#   per core (a new session per message), a drain to a STARTTLS sink against
#   the same drain in clear, the memory of 1,000 idle TLS sessions;
#   outbound relay of a mynetworks client's mail through relayhost against
#   Postfix doing the same (issue 13, bench/relay.sh); ingest with an
#   accept-everything milter against none (issue 19, bench/milter.sh);
#   start-up recovery of a big spool; provisioning (bench/provision.sh);
#   recipient validation, a 1M-address set on against off (bench/rcpt.sh);
#   a callgrind profile of etrnd's ingest path.
# Everything talks to 127.0.0.1 only; each load is bounded in count and
# time; every process started here is stopped by PID on exit.
# Writes bench/RESULTS.md (keeping bench/ingest.sh's section) and PNG plots.
#
#   bench/run.sh            full mode (about 10 minutes on 2 cores, 3 of them STARTTLS)
#   bench/run.sh --quick    small counts (about 3 minutes, STARTTLS rows under 1)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

MODE=full
[[ ${1:-} == --quick ]] && MODE=quick
[[ $# -gt 0 && ${1:-} != --quick ]] && { echo "usage: bench/run.sh [--quick]" >&2; exit 2; }

BUILD=${BUILD:-$ROOT/build}
ETRND=$BUILD/etrnd
ETRNCTL=$BUILD/etrnctl
EB=$BUILD/etrnbench
SPOOLGEN=$BUILD/etrnd-spoolgen
RECOVERBENCH=$BUILD/etrnd-recoverbench
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
POSTFIX=${POSTFIX:-/usr/sbin/postfix}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
for f in "$ETRND" "$ETRNCTL" "$EB" "$SPOOLGEN" "$RECOVERBENCH" "$SMTP_SINK" "$POSTFIX" "$REDIS_SERVER"; do
	[[ -x $f ]] || { echo "run.sh: $f missing (make build; apt-get install postfix redis-server)" >&2; exit 1; }
done
command -v gnuplot >/dev/null || { echo "run.sh: gnuplot missing (apt-get install gnuplot-nox)" >&2; exit 1; }

# Recovery spool: small bodies keep 10M messages near 1.6 GiB (issue 17).
RECOVER_BODY=64
if [[ $MODE == quick ]]; then
	DUR=2; SESSIONS_LIST="20 200 2000"; BIG_SESS=20; DD_MB=256; COMMIT_N=500
	DRAIN1_N=10000; DRAIN_CMP_N=1000; DRAINK_PER=5; PF_DRAINK_PER=1
	IDLE_N=2000; RECOVER_N=50000; PROV_ROWS=10000; PROV_SAMPLES=10
	PROFILE_N=0; TLS_HS_SESS=10; TLS_DRAIN_N=10000
	RELAY_N=5000; RELAY_ROUNDS=1
	MILTER_N=5000; MILTER_ROUNDS=1
	CLUSTER_N=10000; CLUSTER_LAT_ROUNDS=20
	RCPT_N=100000; RCPT_ROUNDS=2
else
	DUR=10; SESSIONS_LIST="20 200 2000"; BIG_SESS=20; DD_MB=1024; COMMIT_N=4000
	DRAIN1_N=100000; DRAIN_CMP_N=20000; DRAINK_PER=50; PF_DRAINK_PER=20
	IDLE_N=10000; RECOVER_N=10000000; PROV_ROWS=100000; PROV_SAMPLES=100
	PROFILE_N=3000; TLS_HS_SESS=20; TLS_DRAIN_N=50000
	RELAY_N=20000; RELAY_ROUNDS=3
	MILTER_N=20000; MILTER_ROUNDS=3
	CLUSTER_N=100000; CLUSTER_LAT_ROUNDS=100
	RCPT_N=1000000; RCPT_ROUNDS=3
fi
NDOM=1000
ATRN_ROUNDS=3
RUN_TIMEOUT=$((DUR + 240))
# The issue's TLS figures: ingest at 200 sessions, 1,000 idle TLS sessions.
TLS_SESS=200
TLS_IDLE_N=1000
# Key of the test certificate (openssl req -newkey): RSA 2048, what Debian's
# ssl-cert snakeoil certificate (Postfix's default on Debian) uses; "ec
# -pkeyopt ec_paramgen_curve:P-256" measures an ECDSA certificate instead.
TLS_KEY=${TLS_KEY:-rsa:2048}
TLS_ORDER="clear.1 tls.1 tls.2 clear.2"
[[ $TLS_KEY == rsa:2048 ]] || TLS_SPEED_ALG=${TLS_SPEED_ALG:-ecdsap256}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/etrnd-bench.XXXXXX")
chmod 755 "$WORK"   # Postfix (user postfix) must reach its data and queue dirs
RES=$WORK/res
mkdir -p "$RES"
PIDS=()
PF_DIR=
cleanup() {
	local pid i
	if [[ -n $PF_DIR && -f $PF_DIR/queue/pid/master.pid ]]; then pf_stop || true; fi
	for pid in "${PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	if [[ -z ${KEEP:-} ]]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 10,000 idle connections plus the load: many descriptors on both sides.
ulimit -Hn 200000 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log() { echo "== $(date +%T) $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # PORT PID SECONDS
	local i
	for i in $(seq 1 $(($3 * 20))); do
		kill -0 "$2" 2>/dev/null || return 1
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# CPU ticks (user+sys, children reaped included), RSS and PSS in KiB of a
# process and its direct children (Postfix's master and its services).
cat >"$WORK/procstat.py" <<'PYEOF'
import os, sys
root = int(sys.argv[1])
def stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()
def kib(pid, path, key):
    try:
        with open("/proc/%d/%s" % (pid, path)) as f:
            for l in f:
                if l.startswith(key + ":"):
                    return int(l.split()[1])
    except OSError:
        pass
    return 0
ticks = rss = pss = n = 0
hwm = 0
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    pid = int(d)
    try:
        st = stat(pid)
    except OSError:
        continue
    if pid != root and int(st[1]) != root:
        continue
    # fields 14..17 of stat: utime stime cutime cstime (index 11..14 here)
    ticks += int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])
    rss += kib(pid, "status", "VmRSS")
    pss += kib(pid, "smaps_rollup", "Pss")
    hwm += kib(pid, "status", "VmHWM")
    n += 1
print(ticks, rss, pss, hwm, n)
PYEOF
procstat() { python3 "$WORK/procstat.py" "$1"; }
# settle NAME: sync, then wait (at most 30 s) until the kernel has written
# back what the scenarios before left dirty; the dirty and writeback kB
# found and the time it took go to $RES/NAME.settle. No drain then starts
# while writeback of what ran before competes with it (the run of
# 2026-12-03 10:21 found 0.2-19 MB left there, written back in 8-53 ms).
settle() {
	local t0 d0 t
	t0=$(date +%s%N)
	d0=$(awk '/^Dirty:/ { d = $2 } /^Writeback:/ { w = $2 } END { print "dirty_kb=" d, "writeback_kb=" w }' /proc/meminfo)
	sync
	for t in $(seq 1 300); do
		awk '/^(Dirty|Writeback):/ { s += $2 } END { exit !(s < 16384) }' /proc/meminfo && break
		sleep 0.1
	done
	echo "$d0 settle_ms=$(( ($(date +%s%N) - t0) / 1000000 ))" >"$RES/$1.settle"
}
# Each thread of PID: "TID RUN_NS WAIT_NS SLICES" (/proc/.../schedstat: time
# on a CPU, time runnable but waiting for one, times it ran).
sched_snap() { local t; for t in /proc/"$1"/task/*; do echo "${t##*/} $(cat "$t/schedstat" 2>/dev/null)"; done; }
HZ=$(getconf CLK_TCK)

# run_measured NAME ROOTPID CMD...: runs a load, records the JSON it prints
# and the server's CPU and memory around it in $RES/NAME.{json,sys}.
run_measured() {
	local name=$1 root=$2; shift 2
	local a b rc=0
	a=$(procstat "$root")
	timeout "$RUN_TIMEOUT" "$@" >"$RES/$name.json" 2>"$RES/$name.err" || rc=$?
	b=$(procstat "$root")
	echo "$a $b $HZ $rc" >"$RES/$name.sys"
	echo "$* (exit $rc)" >"$RES/$name.cmd"
	log "$name: $(head -c 400 "$RES/$name.json")"
	[[ $rc -eq 0 ]] || { log "$name: exit $rc: $(tail -n 3 "$RES/$name.err")"; }
	return 0
}

# etrnd's group commits, from its metrics endpoint (etrnd_spool_fsync_seconds:
# each group commit: its O_DSYNC write, or write + fdatasync): "COUNT SECONDS" so far, "0 0" when the
# endpoint does not answer. etrnd_start opens the endpoint on
# $ETRND_METRICS_PORT; a scenario reads it before and after its load
# (commit_stats) to give the commits per second, their size and their
# latency in the same run as the rate they bound.
commits_now() {
	python3 - "$ETRND_METRICS_PORT" <<'PYEOF' 2>/dev/null || echo "0 0"
import sys, urllib.request
n = s = 0.0
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
for line in body.splitlines():
    f = line.split()
    if len(f) == 2 and f[0] == "etrnd_spool_fsync_seconds_count": n += float(f[1])
    if len(f) == 2 and f[0] == "etrnd_spool_fsync_seconds_sum": s += float(f[1])
print("%d %.6f" % (n, s))
PYEOF
}
# commit_stats NAME BEFORE: the commits since BEFORE (a commits_now) into
# $RES/NAME.commits as "COUNT SECONDS".
commit_stats() {
	local b
	b=$(commits_now)
	awk -v a="$2" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%d %.6f\n", y[1] - x[1], y[2] - x[2] }' \
		>"$RES/$1.commits"
}

# ---- Redis with 1,000 customer domains (dom0.test .. dom999.test) ----------
SINK_PORT=$(free_port)     # the customer's server (etrnbench etrn --sink)
REDIS_SOCK=$WORK/redis.sock
"$REDIS_SERVER" --port 0 --unixsocket "$REDIS_SOCK" --unixsocketperm 700 --dir "$WORK" \
	--save "" --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do [[ -S $REDIS_SOCK ]] && break; sleep 0.05; done
[[ -S $REDIS_SOCK ]] || { echo "run.sh: redis-server did not start" >&2; exit 1; }
{
	echo "domain,queue,dest,etrn_from"
	for i in $(seq 0 $((NDOM - 1))); do echo "dom$i.test,,127.0.0.1:$SINK_PORT,127.0.0.0/8"; done
} >"$WORK/domains.csv"
"$ETRNCTL" --redis "unix:$REDIS_SOCK" import "$WORK/domains.csv" >/dev/null </dev/null
for i in $(seq 0 $((NDOM - 1))); do echo "dom$i.test"; done >"$WORK/domains.txt"

# ---- etrnd -------------------------------------------------------------------
ETRND_PID=
ETRND_STOP_WAIT=30   # seconds etrnd_stop waits after SIGTERM before SIGKILL
ETRND_PORT=
ETRND_RUNS=0
etrnd_start() { # [key=value...]; fresh spool unless KEEP_SPOOL=1
	ETRND_PORT=$(free_port)
	ETRND_METRICS_PORT=$(free_port)
	[[ ${KEEP_SPOOL:-0} == 1 ]] || rm -rf "$WORK/spool"
	mkdir -p -m 0750 "$WORK/spool" # etrnd refuses a spool others may write
	{
		echo "listen = 127.0.0.1:$ETRND_PORT"
		echo "spool_dir = $WORK/spool"
		echo "redis = unix:$REDIS_SOCK"
		echo "relay_domains = static.test"
		echo "hostname = etrnd.bench.test"
		[[ " $* " == *" threads="* ]] || echo "threads = auto"
		echo "sync = batch"
		echo "etrn_rate_limit = 100000"
		echo "log_level = warn"
		echo "shutdown_timeout = 10s"
		echo "metrics_listen = 127.0.0.1:$ETRND_METRICS_PORT"
		local kv
		for kv in "$@"; do echo "${kv%%=*} = ${kv#*=}"; done
	} >"$WORK/etrnd.conf"
	ETRND_RUNS=$((ETRND_RUNS + 1))
	: >"$WORK/etrnd.log"
	"$ETRND" -c "$WORK/etrnd.conf" </dev/null >>"$WORK/etrnd.log" 2>&1 &
	ETRND_PID=$!
	PIDS+=("$ETRND_PID")
	wait_port "$ETRND_PORT" "$ETRND_PID" "${ETRND_START_WAIT:-120}" || { echo "run.sh: etrnd did not start" >&2; tail "$WORK/etrnd.log" >&2; exit 1; }
	# The domain table arrives from Redis shortly after the listener.
	local i
	for i in $(seq 1 100); do
		python3 - "$ETRND_PORT" <<'PYEOF' && return 0
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=5); s.ehlo("x"); s.mail("a@b.test")
sys.exit(0 if s.rcpt("u@dom999.test")[0] == 250 else 1)
PYEOF
		sleep 0.1
	done
	echo "run.sh: etrnd never accepted dom999.test" >&2
	exit 1
}
etrnd_stop() {
	local i rc=0
	kill -TERM "$ETRND_PID" 2>/dev/null || true
	for i in $(seq 1 $((ETRND_STOP_WAIT * 10))); do
		kill -0 "$ETRND_PID" 2>/dev/null || break
		sleep 0.1
	done
	local killed=
	if kill -0 "$ETRND_PID" 2>/dev/null; then
		killed=" (SIGKILL: still running $ETRND_STOP_WAIT s after SIGTERM)"
		kill -KILL "$ETRND_PID" 2>/dev/null || true
	fi
	wait "$ETRND_PID" 2>/dev/null || rc=$?
	[[ $rc -eq 0 ]] || log "etrnd exited $rc: $(tail -n 3 "$WORK/etrnd.log")"
	# Kept for the report: etrnd's warnings and errors during each run.
	{ echo "exit $rc$killed"; cat "$WORK/etrnd.log"; } >"$RES/etrnd-log.$ETRND_RUNS.${ETRND_SCENARIO:-run}"
	ETRND_PID=
}

# ---- Postfix, private instance (bench/pf_lib.sh) ---------------------------
# shellcheck source=pf_lib.sh
source "$ROOT/bench/pf_lib.sh"
pf_start() {
	pf_prepare "$WORK/postfix"
	cp "$WORK/domains.txt" "$PF_DIR/etc/relay_domains"
	pf_launch "$(free_port)" "# Relays dom0..dom999.test to the customer's server ([127.0.0.1]:$SINK_PORT),
# holding it until ETRN.
relay_domains = $PF_DIR/etc/relay_domains
relayhost = [127.0.0.1]:$SINK_PORT
defer_transports = relay
fast_flush_domains = \$relay_domains
smtpd_etrn_restrictions = permit" || { echo "run.sh: postfix did not start" >&2; exit 1; }
	PIDS+=("$PF_MASTER")
}
# Until every message is parked in the deferred queue (held for ETRN).
pf_wait_held() {
	local want=$1 i
	for i in $(seq 1 1200); do
		[[ $(pf_queued) -eq 0 && $(pf_deferred) -ge $want ]] && return 0
		sleep 0.1
	done
	log "postfix: $(pf_deferred) deferred, $(pf_queued) still queued after 120 s"
}

# ---- smtp-sink (the ceiling) ------------------------------------------------
SS_PORT=$(free_port)
ss_user=()
[[ $(id -u) -eq 0 ]] && ss_user=(-u nobody)
"$SMTP_SINK" "${ss_user[@]}" "127.0.0.1:$SS_PORT" 4096 >"$WORK/smtp-sink.log" 2>&1 &
SS_PID=$!
PIDS+=("$SS_PID")
wait_port "$SS_PORT" "$SS_PID" 10 || { echo "run.sh: smtp-sink did not start" >&2; exit 1; }

# ---- etrnbench sink (the no-disk ceiling) ----------------------------------
# One io_uring receiver that takes SMTP and throws the mail away: what the
# client and loopback allow, with no disk and no Redis behind it.
EBS_PORT=$(free_port)
"$EB" sink --listen "127.0.0.1:$EBS_PORT" --duration 86400 >"$WORK/ebsink.log" 2>&1 &
EBS_PID=$!
PIDS+=("$EBS_PID")
wait_port "$EBS_PORT" "$EBS_PID" 10 || { echo "run.sh: etrnbench sink did not start" >&2; exit 1; }

# The disk's sequential write bandwidth with fdatasync, on the filesystem
# the spools use ($WORK): DD_MB MiB in 1 MiB writes and one fdatasync at
# the end, and the same bytes in 256 KiB O_DSYNC writes (each write synced,
# about a group commit's size). Written as "bytes seconds" to $RES/NAME.dd.
# With --over, the file is first written and synced (MB MiB), and dd writes
# over it (conv=notrunc): what a commit into blocks the file already has costs.
disk_ceiling() { # [--over MB] NAME DD-ARGS...
	if [[ $1 == --over ]]; then
		LC_ALL=C dd if=/dev/zero of="$WORK/ddfile" bs=1M count="$2" conv=fdatasync 2>/dev/null || true
		shift 2
		set -- "$@" conv=notrunc
	fi
	local name=$1; shift
	LC_ALL=C dd if=/dev/zero of="$WORK/ddfile" "$@" 2>"$RES/$name.dd.err" >/dev/null || true
	rm -f "$WORK/ddfile"
	awk '/bytes .* copied/ { for (i = 1; i <= NF; i++) if ($i ~ /^copied,?$/) print $1, $(i + 1) }' \
		"$RES/$name.dd.err" >"$RES/$name.dd"
	log "$name: $(tail -n 1 "$RES/$name.dd.err")"
}

T_START=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# The disk's commit latency, which a durable server whose sessions
# each wait for their 250 pays (issue 17 point 2): COMMIT_N appends of 4 KiB,
# each synced before the next (dd oflag=dsync: a write and an fdatasync);
# then the same writes over blocks already written and synced, which is
# what etrnd's small commits do (zeros written ahead, store/spool_prezero.h).
# report.py prints both beside etrnd's own commits in that run (commit_stats).
disk_ceiling disk_commit bs=4k count="$COMMIT_N" oflag=dsync
disk_ceiling --over $(((COMMIT_N * 4 + 1023) / 1024)) disk_commit_over bs=4k count="$COMMIT_N" oflag=dsync

# ============================ 1. ingest ===================================
send_args=(--domain-list "@$WORK/domains.txt" --json)
for sess in $SESSIONS_LIST; do
	log "ingest 4 KiB, $sess sessions"
	ETRND_SCENARIO=ingest4k_s$sess
	etrnd_start
	c0=$(commits_now)
	run_measured "ingest4k_s${sess}.etrnd" "$ETRND_PID" "$EB" send --server "127.0.0.1:$ETRND_PORT" \
		-c "$sess" --duration "$DUR" --size 4096 --pipelining "${send_args[@]}"
	commit_stats "ingest4k_s${sess}.etrnd" "$c0"
	grep -h '^VmHWM' "/proc/$ETRND_PID/status" | awk '{print $2}' >"$RES/ingest4k_s${sess}.etrnd.hwm"
	etrnd_stop
	# Ceiling: the same etrnd and load without durability.
	ETRND_SCENARIO=ingest4k_s${sess}_none
	etrnd_start sync=none
	run_measured "ingest4k_s${sess}.none" "$ETRND_PID" "$EB" send --server "127.0.0.1:$ETRND_PORT" \
		-c "$sess" --duration "$DUR" --size 4096 --pipelining "${send_args[@]}"
	etrnd_stop
	# Ceiling: the no-disk receiver alone under the same load.
	run_measured "ingest4k_s${sess}.ebsink" "$EBS_PID" "$EB" send --server "127.0.0.1:$EBS_PORT" \
		-c "$sess" --duration "$DUR" --size 4096 --pipelining "${send_args[@]}"
	pf_start
	run_measured "ingest4k_s${sess}.postfix" "$PF_MASTER" "$EB" send --server "127.0.0.1:$PF_PORT" \
		-c "$sess" --duration "$DUR" --size 4096 --pipelining "${send_args[@]}"
	pf_stop
	run_measured "ingest4k_s${sess}.sink" "$SS_PID" "$EB" send --server "127.0.0.1:$SS_PORT" \
		-c "$sess" --duration "$DUR" --size 4096 --pipelining "${send_args[@]}"
done

# p99 at 50% of each system's own 20-session peak, same sessions.
half() { python3 -c 'import json,sys; print("%.0f" % (json.load(open(sys.argv[1]))["msgs_per_s"] / 2))' "$RES/ingest4k_s20.$1.json"; }
log "ingest at 50% of peak"
ETRND_SCENARIO=half
etrnd_start
run_measured "half.etrnd" "$ETRND_PID" "$EB" send --server "127.0.0.1:$ETRND_PORT" \
	-c 20 --duration "$DUR" --size 4096 --pipelining --rate "$(half etrnd)" "${send_args[@]}"
etrnd_stop
pf_start
run_measured "half.postfix" "$PF_MASTER" "$EB" send --server "127.0.0.1:$PF_PORT" \
	-c 20 --duration "$DUR" --size 4096 --pipelining --rate "$(half postfix)" "${send_args[@]}"
pf_stop
run_measured "half.sink" "$SS_PID" "$EB" send --server "127.0.0.1:$SS_PORT" \
	-c 20 --duration "$DUR" --size 4096 --pipelining --rate "$(half sink)" "${send_args[@]}"

log "ingest 100 KiB (the disk's bandwidth measured before and after)"
disk_ceiling disk_seq.1 bs=1M count="$DD_MB" conv=fdatasync
# The same dd again at once, into the page cache the first has just given
# back: on a VM whose freed memory goes back to the host (virtio-balloon
# free page reporting), a write into memory the guest has not touched
# lately pays a host fault per page, and buffered writes (dd's and the
# spool's) grow the page cache into such memory. The two differ by what
# that costs; report.py prints both.
disk_ceiling disk_seq_reused bs=1M count="$DD_MB" conv=fdatasync
# And with O_DIRECT, as etrnd writes its spool (spool_direct_io = yes): no
# page cache at all, so neither of the above costs.
disk_ceiling disk_seq_direct bs=1M count="$DD_MB" oflag=direct conv=fdatasync
disk_ceiling disk_dsync.1 bs=256k count=$((DD_MB * 4)) oflag=dsync
ETRND_SCENARIO=ingest100k
etrnd_start
c0=$(commits_now)
run_measured "ingest100k.etrnd" "$ETRND_PID" "$EB" send --server "127.0.0.1:$ETRND_PORT" \
	-c "$BIG_SESS" --duration "$DUR" --size 100k --pipelining "${send_args[@]}"
commit_stats ingest100k.etrnd "$c0"
etrnd_stop
# The disk with one sync per write of the size etrnd's 100 KiB commits had
# (message bytes per commit, rounded up to 4 KiB; O_DIRECT, as the spool
# is written): what that commit size allows one commit at a time.
commit_kb=$(python3 - "$RES/ingest100k.etrnd.json" "$RES/ingest100k.etrnd.commits" <<'PYEOF' 2>/dev/null || echo 0
import json, sys
b = json.load(open(sys.argv[1]))["bytes"]
n = int(open(sys.argv[2]).read().split()[0])
print((b // n + 4095) // 4096 * 4 if n else 0)
PYEOF
)
if [[ $commit_kb -gt 0 ]]; then
	disk_ceiling disk_commit100k bs="${commit_kb}k" count=$((DD_MB * 1024 / commit_kb + 1)) oflag=direct,dsync
fi
ETRND_SCENARIO=ingest100k_none
etrnd_start sync=none
run_measured "ingest100k.none" "$ETRND_PID" "$EB" send --server "127.0.0.1:$ETRND_PORT" \
	-c "$BIG_SESS" --duration "$DUR" --size 100k --pipelining "${send_args[@]}"
etrnd_stop
run_measured "ingest100k.ebsink" "$EBS_PID" "$EB" send --server "127.0.0.1:$EBS_PORT" \
	-c "$BIG_SESS" --duration "$DUR" --size 100k --pipelining "${send_args[@]}"
disk_ceiling disk_seq.2 bs=1M count="$DD_MB" conv=fdatasync
pf_start
run_measured "ingest100k.postfix" "$PF_MASTER" "$EB" send --server "127.0.0.1:$PF_PORT" \
	-c "$BIG_SESS" --duration "$DUR" --size 100k --pipelining "${send_args[@]}"
pf_stop
run_measured "ingest100k.sink" "$SS_PID" "$EB" send --server "127.0.0.1:$SS_PORT" \
	-c "$BIG_SESS" --duration "$DUR" --size 100k --pipelining "${send_args[@]}"

# ============================ 2. drains ===================================
# hold SERVERPORT N DOMAINS_ARGS...: put N 4 KiB messages in the queue.
hold() {
	local name=$1 port=$2 n=$3; shift 3
	timeout "$RUN_TIMEOUT" "$EB" send --server "127.0.0.1:$port" -c 20 -n "$n" --size 4096 \
		--pipelining --json "$@" >"$RES/$name.hold.json" 2>"$RES/$name.hold.err" || true
	log "$name hold: $(head -c 300 "$RES/$name.hold.json")"
}
drain_etrnd() { # NAME N ETRN-ARGS...
	local name=$1 n=$2; shift 2
	ETRND_SCENARIO=$name
	etrnd_start
	if [[ $name == drainK* ]]; then
		hold "$name.etrnd" "$ETRND_PORT" "$n" --domain-list "@$WORK/domains.txt"
	else
		hold "$name.etrnd" "$ETRND_PORT" "$n" --domain-list dom0.test
	fi
	settle "$name.etrnd"
	sched_snap "$ETRND_PID" >"$RES/$name.etrnd.sched0"
	run_measured "$name.etrnd" "$ETRND_PID" "$EB" etrn --server "127.0.0.1:$ETRND_PORT" \
		--sink "127.0.0.1:$SINK_PORT" --expect "$n" --verify --timeout 300 --idle-exit 10 --json "$@"
	sched_snap "$ETRND_PID" >"$RES/$name.etrnd.sched1"
	grep -h '^VmHWM' "/proc/$ETRND_PID/status" | awk '{print $2}' >"$RES/$name.etrnd.hwm"
	etrnd_stop
}
drain_postfix() {
	local name=$1 n=$2; shift 2
	pf_start
	if [[ $name == drainK* ]]; then
		hold "$name.postfix" "$PF_PORT" "$n" --domain-list "@$WORK/domains.txt"
	else
		hold "$name.postfix" "$PF_PORT" "$n" --domain-list dom0.test
	fi
	pf_wait_held "$n"
	settle "$name.postfix"
	run_measured "$name.postfix" "$PF_MASTER" "$EB" etrn --server "127.0.0.1:$PF_PORT" \
		--sink "127.0.0.1:$SINK_PORT" --expect "$n" --verify --timeout 300 --idle-exit 10 --json "$@"
	pf_stop
}
log "drain, one domain: etrnd $DRAIN1_N and $DRAIN_CMP_N held, Postfix $DRAIN_CMP_N"
# Ceiling: the customer's side alone. A load generator with the drain's
# connections (drain_connections = 4 per engine thread, threads = auto) and
# message size, into etrnbench sink, the same program the drains deliver to.
DRAIN_CONNS=$(( $(nproc) * 4 ))
settle drain1.sinkalone
run_measured "drain1.sinkalone" "$EBS_PID" "$EB" send --server "127.0.0.1:$EBS_PORT" \
	-c "$DRAIN_CONNS" -n "$DRAIN1_N" --size 4096 --pipelining --domain-list dom0.test --json
drain_etrnd drain1_big "$DRAIN1_N" --domain dom0.test
drain_etrnd drain1 "$DRAIN_CMP_N" --domain dom0.test
drain_postfix drain1 "$DRAIN_CMP_N" --domain dom0.test
log "drain, $NDOM domains"
drain_etrnd drainK $((NDOM * DRAINK_PER)) --domain-list "@$WORK/domains.txt" --etrn-sessions 10
drain_postfix drainK $((NDOM * PF_DRAINK_PER)) --domain-list "@$WORK/domains.txt" --etrn-sessions 10

log "drain over the customer's connection: ATRN against ETRN, $ATRN_ROUNDS rounds of $DRAIN_CMP_N"
# etrnd's defaults; one drain connection per engine thread (ETRN's drain then
# has as many connections as there are shards; ATRN always one); one engine
# thread and one drain connection (one shard: only the connection differs).
for keys in "" "drain_connections=1" "threads=1 drain_connections=1"; do
	tag=atrn$(tr -cd '1' <<<"$keys")
	TAG=$tag ATRN_ETRND_KEYS=$keys N=$DRAIN_CMP_N ROUNDS=$ATRN_ROUNDS RES=$RES RUN_TIMEOUT=$RUN_TIMEOUT \
		bash "$ROOT/bench/atrn.sh" "$BUILD" >"$RES/$tag.out" 2>"$RES/$tag.err" ||
		log "atrn.sh $keys failed: $(tail -n 3 "$RES/$tag.err")"
done

# ============================ 2c. outbound relay =============================
# Issue 13: a mynetworks client's mail relayed through relayhost to a sink,
# etrnd against a Postfix with the same relayhost (bench/relay.sh; its own
# sink per round, every message checked to arrive once).
log "outbound relay through relayhost: $RELAY_N messages, $RELAY_ROUNDS round(s) each"
N=$RELAY_N ROUNDS=$RELAY_ROUNDS RES=$RES RUN_TIMEOUT=$RUN_TIMEOUT \
	bash "$ROOT/bench/relay.sh" "$BUILD" >"$RES/relay.out" 2>"$RES/relay.err" ||
	log "relay.sh failed: $(tail -n 3 "$RES/relay.err")"

# ============================ 2c2. milter ====================================
# Issue 19: ingest with one accept-everything C milter against none, same
# run, alternating (bench/milter.sh): the ratio and the milter client's CPU
# per message.
log "milter: $MILTER_N messages, $MILTER_ROUNDS round(s) each, with and without"
N=$MILTER_N ROUNDS=$MILTER_ROUNDS RES=$RES RUN_TIMEOUT=$RUN_TIMEOUT \
	bash "$ROOT/bench/milter.sh" "$BUILD" >"$RES/milter.out" 2>"$RES/milter.err" ||
	log "milter.sh failed: $(tail -n 3 "$RES/milter.err")"

# ============================ 2d. several nodes ==============================
# Issue 16 (bench/cluster_bench.py): three etrnd nodes and one redis-server
# on this machine. A drain of CLUSTER_N held messages spread over the three
# against the same held on one node (same run), and the time from an ETRN
# on one node to the first delivery from each other node.
log "several nodes: drain of $CLUSTER_N spread over 3 against held on 1; ETRN fan-out x $CLUSTER_LAT_ROUNDS"
N=$CLUSTER_N ROUNDS=1 LAT_ROUNDS=$CLUSTER_LAT_ROUNDS RES=$RES REDIS_SERVER=$REDIS_SERVER \
	timeout $((RUN_TIMEOUT * 4)) "${PYTHON3:-/usr/bin/python3}" "$ROOT/bench/cluster_bench.py" "$BUILD" \
	>"$RES/cluster.out" 2>"$RES/cluster.err" ||
	log "cluster_bench.py failed: $(tail -n 3 "$RES/cluster.err")"

# ============================ 2e. recipient validation ======================
# Issue 19 (bench/rcpt.sh): a 1,000,000-address set imported with etrnctl,
# etrnd's memory with it held, the lookup alone, and ingest with
# rcpt_check on against off (same etrnd, alternating).
log "recipient validation: $RCPT_N addresses, ingest on/off x $RCPT_ROUNDS"
N=$RCPT_N DUR=$DUR ROUNDS=$RCPT_ROUNDS RES=$RES REDIS_SERVER=$REDIS_SERVER \
	timeout $((RUN_TIMEOUT * 4)) bash "$ROOT/bench/rcpt.sh" "$BUILD" \
	>"$RES/rcpt.out" 2>"$RES/rcpt.err" ||
	log "rcpt.sh failed: $(tail -n 3 "$RES/rcpt.err")"

# ============================ 3. idle connections ===========================
log "$IDLE_N idle connections during ingest"
ETRND_SCENARIO=idle
etrnd_start
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
run_measured "idle_a1.etrnd" "$ETRND_PID" "$EB" send --server "127.0.0.1:$ETRND_PORT" \
	-c 20 --duration "$DUR" --size 4096 --pipelining "${send_args[@]}"
RSS0=$(rss "$ETRND_PID")
"$EB" idle --server "127.0.0.1:$ETRND_PORT" -c "$IDLE_N" --duration $((DUR * 3 + 120)) --json \
	>"$RES/idle.json" 2>"$RES/idle.err" &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
for _ in $(seq 1 1200); do grep -q 'ready' "$RES/idle.err" && break; sleep 0.1; done
sleep 1
RSS1=$(rss "$ETRND_PID")
run_measured "idle_b.etrnd" "$ETRND_PID" "$EB" send --server "127.0.0.1:$ETRND_PORT" \
	-c 20 --duration "$DUR" --size 4096 --pipelining "${send_args[@]}"
RSS2=$(rss "$ETRND_PID")
kill -TERM "$IDLE_PID" 2>/dev/null || true
wait "$IDLE_PID" 2>/dev/null || true
sleep 1
run_measured "idle_a2.etrnd" "$ETRND_PID" "$EB" send --server "127.0.0.1:$ETRND_PORT" \
	-c 20 --duration "$DUR" --size 4096 --pipelining "${send_args[@]}"
RSS3=$(rss "$ETRND_PID")
echo "{\"n\":$IDLE_N,\"rss0\":$RSS0,\"rss1\":$RSS1,\"rss2\":$RSS2,\"rss3\":$RSS3,\"ready\":\"$(grep -o 'ready [0-9]*' "$RES/idle.err" | head -1)\"}" >"$RES/idle.mem.json"
etrnd_stop

# ============================ 3b. STARTTLS ===================================
# One test certificate made here, served by etrnd (tls_cert_file) and by the
# customer's sink (etrnbench --tls-cert) alike. Every TLS row has its clear
# twin in the same run, against an etrnd with the same configuration: the
# only difference is the client saying STARTTLS (or the sink offering it).
log "STARTTLS: ingest at $TLS_SESS sessions, handshakes, drain, $TLS_IDLE_N idle sessions"
TLS_DIR=$WORK/tls
mkdir -p "$TLS_DIR"
# shellcheck disable=SC2086 # TLS_KEY may carry -pkeyopt words
openssl req -x509 -newkey $TLS_KEY -nodes -days 2 -subj "/CN=etrnd.bench.test" \
	-addext "subjectAltName=DNS:etrnd.bench.test,IP:127.0.0.1" \
	-keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" >"$TLS_DIR/req.log" 2>&1 || {
	echo "run.sh: openssl req failed: $(tail -n 3 "$TLS_DIR/req.log")" >&2; exit 1; }
chmod 600 "$TLS_DIR/key.pem"
TLS_CONF=("tls_cert_file=$TLS_DIR/cert.pem" "tls_key_file=$TLS_DIR/key.pem")
SINK_TLS=(--tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem")
# The clients verify nothing (a test certificate on loopback); --tls-ca only
# spares each of them loading the system trust store at start.
CLIENT_TLS=(--starttls --tls-ca "$TLS_DIR/cert.pem")
# An etrnd without the TLS keys (a build before issue 11) skips the section.
{ echo "listen = 127.0.0.1:$(free_port)"; echo "spool_dir = $WORK/tlsprobe"; echo "redis = unix:$REDIS_SOCK"
  for kv in "${TLS_CONF[@]}"; do echo "${kv%%=*} = ${kv#*=}"; done; } >"$WORK/tlsprobe.conf"
if "$ETRND" -t -c "$WORK/tlsprobe.conf" >"$RES/tls.probe" 2>&1; then
	# Ingest: the same load with and without STARTTLS on every session,
	# twice each in the order of TLS_ORDER (A B B A: a machine that gets
	# busier or quieter during the run weighs on both alike).
	for v in $TLS_ORDER; do
		t=${v%.*}
		ETRND_SCENARIO=tls_ingest_$v
		etrnd_start "${TLS_CONF[@]}"
		tls_flag=(); [[ $t == tls ]] && tls_flag=("${CLIENT_TLS[@]}")
		run_measured "tls_ingest.$v" "$ETRND_PID" "$EB" send --server "127.0.0.1:$ETRND_PORT" \
			-c "$TLS_SESS" --duration "$DUR" --size 4096 --pipelining "${tls_flag[@]}" "${send_args[@]}"
		etrnd_stop
	done
	# A new session per message (--per-conn 1): full handshakes (the
	# client keeps no session to resume), per second and per CPU-second
	# of etrnd; the clear twin is connections per second.
	for t in clear tls; do
		ETRND_SCENARIO=tls_hs_$t
		etrnd_start "${TLS_CONF[@]}"
		tls_flag=(); [[ $t == tls ]] && tls_flag=("${CLIENT_TLS[@]}")
		run_measured "tls_hs.$t" "$ETRND_PID" "$EB" send --server "127.0.0.1:$ETRND_PORT" \
			-c "$TLS_HS_SESS" --per-conn 1 --duration "$DUR" --size 4096 "${tls_flag[@]}" "${send_args[@]}"
		etrnd_stop
	done
	# The reference for handshakes: the same load against etrnbench's own
	# TLS sink (core/tls, one thread, no spool, no Redis), and what
	# OpenSSL signs per second on one core with this key (a full TLS 1.3
	# handshake with a certificate costs the server one signature).
	HS_SINK_PORT=$(free_port)
	"$EB" sink --listen "127.0.0.1:$HS_SINK_PORT" "${SINK_TLS[@]}" --duration $((DUR + 120)) \
		>"$RES/tls_hs.sinkside.json" 2>&1 &
	hs_sink_pid=$!
	PIDS+=("$hs_sink_pid")
	wait_port "$HS_SINK_PORT" "$hs_sink_pid" 10 || { echo "run.sh: TLS sink did not start" >&2; exit 1; }
	run_measured "tls_hs.sink" "$hs_sink_pid" "$EB" send --server "127.0.0.1:$HS_SINK_PORT" \
		-c "$TLS_HS_SESS" --per-conn 1 --duration "$DUR" --size 4096 "${CLIENT_TLS[@]}" "${send_args[@]}"
	kill -TERM "$hs_sink_pid" 2>/dev/null || true
	wait "$hs_sink_pid" 2>/dev/null || true
	# shellcheck disable=SC2086
	timeout 60 openssl speed -seconds 1 ${TLS_SPEED_ALG:-rsa2048} >"$RES/tls_speed.txt" 2>/dev/null || true
	# Drain of one domain to the sink in clear, then to the same sink
	# offering STARTTLS (etrnd's drain takes it: tls = may by default).
	for v in $TLS_ORDER; do
		sink_flag=(); [[ ${v%.*} == tls ]] && sink_flag=("${SINK_TLS[@]}")
		drain_etrnd "tls_drain.$v" "$TLS_DRAIN_N" --domain dom0.test "${sink_flag[@]}"
	done
	# Idle sessions: etrnd's VmRSS before and after opening them (each past
	# EHLO, and for TLS past STARTTLS, the handshake and the second EHLO),
	# after a warm-up load of the same kind.
	for t in clear tls; do
		ETRND_SCENARIO=tls_idle_$t
		etrnd_start "${TLS_CONF[@]}"
		tls_flag=(); [[ $t == tls ]] && tls_flag=("${CLIENT_TLS[@]}")
		"$EB" send --server "127.0.0.1:$ETRND_PORT" -c 20 -n 2000 --size 4096 --pipelining \
			"${tls_flag[@]}" "${send_args[@]}" >"$RES/tls_idle.$t.warm.json" 2>&1 || true
		sleep 1
		r0=$(rss "$ETRND_PID")
		"$EB" idle --server "127.0.0.1:$ETRND_PORT" -c "$TLS_IDLE_N" --duration $((DUR * 3 + 120)) \
			"${tls_flag[@]}" --json >"$RES/tls_idle.$t.json" 2>"$RES/tls_idle.$t.err" &
		idle_pid=$!
		PIDS+=("$idle_pid")
		for _ in $(seq 1 1200); do grep -q 'ready' "$RES/tls_idle.$t.err" && break; sleep 0.1; done
		sleep 1
		r1=$(rss "$ETRND_PID")
		sleep 2
		r2=$(rss "$ETRND_PID")
		echo "$EB idle --server 127.0.0.1:PORT -c $TLS_IDLE_N ${tls_flag[*]} --json" >"$RES/tls_idle.$t.cmd"
		kill -TERM "$idle_pid" 2>/dev/null || true
		wait "$idle_pid" 2>/dev/null || true
		echo "{\"n\":$TLS_IDLE_N,\"rss0\":$r0,\"rss1\":$r1,\"rss2\":$r2,\"ready\":\"$(grep -o 'ready [0-9]*' "$RES/tls_idle.$t.err" | head -1)\"}" >"$RES/tls_idle.$t.mem.json"
		log "tls_idle.$t: $(cat "$RES/tls_idle.$t.mem.json")"
		etrnd_stop
	done
else
	log "STARTTLS rows skipped: etrnd -t rejects the TLS keys: $(tail -n 1 "$RES/tls.probe")"
fi

# ============================ 4. recovery ===================================
log "recovery of $RECOVER_N messages"
# About (body + 120) bytes a message: refuse (skip the section) without
# twice that free.
rec_need_kib=$(( RECOVER_N * (RECOVER_BODY + 120) / 1024 * 2 ))
rec_free_kib=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
if (( rec_free_kib < rec_need_kib )); then
	log "recovery skipped: $((rec_free_kib / 1024)) MiB free in $WORK, $((rec_need_kib / 1024)) MiB wanted"
	echo "recovery skipped: $((rec_free_kib / 1024)) MiB free, $((rec_need_kib / 1024)) MiB wanted" >"$RES/recovery.gen"
else
"$SPOOLGEN" -s "$(nproc)" -n "$RECOVER_N" -b "$RECOVER_BODY" -D 10 "$WORK/rspool" >"$RES/recovery.gen" 2>&1
# The issue's spool is held mail: rows (held for ETRN) for spoolgen's
# customer0..999.example. Without them the mail is outbound (no row) and
# start-up spreads its 10M next attempts (queue_restart_spread), which is
# not recovery.
{
	echo "domain,queue,dest,etrn_from"
	for i in $(seq 0 999); do echo "customer$i.example,,127.0.0.1:$SINK_PORT,127.0.0.0/8"; done
} >"$WORK/spooldomains.csv"
"$ETRNCTL" --redis "unix:$REDIS_SOCK" import "$WORK/spooldomains.csv" >/dev/null </dev/null
sync
"$RECOVERBENCH" "$WORK/rspool" >"$RES/recovery.bench" 2>&1 || true
rm -rf "$WORK/spool"
mv "$WORK/rspool" "$WORK/spool"
t0=$(date +%s.%N)
ETRND_SCENARIO=recovery
KEEP_SPOOL=1 ETRND_START_WAIT=900 etrnd_start
t1=$(date +%s.%N)
echo "{\"start_s\":$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'),\"rss_kb\":$(rss "$ETRND_PID")}" >"$RES/recovery.etrnd.json"
etrnd_stop
rm -rf "$WORK/spool"
fi

# ============================ 5. provisioning ===============================
log "provisioning (bench/provision.sh, $PROV_ROWS rows)"
ROWS=$PROV_ROWS ROUNDS=1 SAMPLES=$PROV_SAMPLES ETRND_BIN=$ETRND ETRND_SPOOL_TOOL=$BUILD/etrnd-spool \
	ETRNCTL=$ETRNCTL timeout 300 bash "$ROOT/bench/provision.sh" >"$RES/provision.out" 2>&1 || \
	echo "provision.sh failed (exit $?)" >>"$RES/provision.out"

# ============================ 6. profile ====================================
# The steady state only: callgrind starts with instrumentation off (start-up,
# TLS trust store and Redis load are not in it), a warm-up of PROFILE_N/4
# messages from the 200 sessions fills the buffers, then instrumentation is
# switched on for PROFILE_N messages and off again before shutdown. The
# release build ($BUILD) is profiled. profile.irmsg: Ir per message.
log "callgrind profile of etrnd ingest, steady state ($PROFILE_N messages, 200 sessions)"
if [[ $PROFILE_N -gt 0 ]] && command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
	ETRND_REAL=$ETRND
	ETRND=$WORK/etrnd-callgrind.sh
	cat >"$ETRND" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$WORK/callgrind.out "$ETRND_REAL" "\$@"
EOF
	chmod +x "$ETRND"
	ETRND_SCENARIO=profile
	etrnd_start threads=1
	"$EB" send --server "127.0.0.1:$ETRND_PORT" -c 200 -n "$((PROFILE_N / 4))" --size 4096 --pipelining \
		"${send_args[@]}" >"$RES/profile.warmup.json" 2>&1 || true
	callgrind_control -i on "$ETRND_PID" >/dev/null 2>&1 || log "profile: callgrind_control -i on failed"
	"$EB" send --server "127.0.0.1:$ETRND_PORT" -c 200 -n "$PROFILE_N" --size 4096 --pipelining \
		"${send_args[@]}" >"$RES/profile.json" 2>&1 || true
	callgrind_control -i off "$ETRND_PID" >/dev/null 2>&1 || log "profile: callgrind_control -i off failed"
	# Under valgrind etrnd took 25-39 s from SIGTERM to its engine's stop
	# here (4e02117 and 535782a alike), and a SIGKILL leaves callgrind.out
	# empty: it is written at exit.
	ETRND_STOP_WAIT=180 etrnd_stop
	ETRND=$ETRND_REAL
	callgrind_annotate --inclusive=no "$WORK/callgrind.out" 2>/dev/null | \
		grep -E '^ *[0-9,]+ \(' | head -n 16 >"$RES/profile.self" || true
	callgrind_annotate --inclusive=yes "$WORK/callgrind.out" 2>/dev/null | \
		grep -E '^ *[0-9,]+ \(' | head -n 16 >"$RES/profile.incl" || true
	# Ir of the whole process and of the engine thread (loop_run), each per
	# message the measured load had accepted.
	python3 - "$RES/profile.json" "$RES/profile.self" "$RES/profile.incl" >"$RES/profile.irmsg" <<'PYEOF' || true
import json, re, sys
msgs = json.load(open(sys.argv[1]))["messages_ok"]
def ir(path, pat):
    for l in open(path):
        if re.search(pat, l):
            return int(l.split()[0].replace(",", ""))
    return 0
tot = ir(sys.argv[2], r"PROGRAM TOTALS")
eng = ir(sys.argv[3], r":loop_run ")
print("messages=%d ir_total=%d ir_per_msg=%d engine_ir_per_msg=%d"
      % (msgs, tot, tot // max(msgs, 1), eng // max(msgs, 1)))
PYEOF
fi

T_END=$(date +%s)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ============================ report ========================================
{
	echo "mode=$MODE"
	echo "dur=$DUR"
	echo "elapsed=$((T_END - T_START))"
	echo "nproc=$(nproc)"
	echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "kernel=$(uname -r)"
	echo "mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "disk=$(df -hT "$WORK" | awk 'NR == 2 { print $1 " (" $2 ", " $3 " size, " $5 " free)" }')"
	echo "load_before=$LOAD_BEFORE"
	echo "dd_mb=$DD_MB"
	# Free page reporting (freed guest memory goes back to the host): the
	# smallest block reported, as a page order; "none" without it.
	echo "page_reporting_order=$(cat /sys/module/page_reporting/parameters/page_reporting_order 2>/dev/null || echo none)"
	echo "commit_n=$COMMIT_N"
	echo "commit100k_kb=${commit_kb:-0}"
	echo "drain_conns=$DRAIN_CONNS"
	echo "load_after=$LOAD_AFTER"
	# A run's own outputs (RESULTS.md and the plots a run before this
	# one left) are not changes to what is measured.
	echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" status --porcelain -- . ':(exclude)bench/RESULTS.md' ':(exclude)bench/*.png' 2>/dev/null | grep -q . && echo '+uncommitted changes' || true)"
	echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "postfix=$(dpkg-query -W -f '${Version}' postfix 2>/dev/null || echo unknown)"
	echo "sessions=$SESSIONS_LIST"
	echo "drain1_n=$DRAIN1_N"
	echo "drain_cmp_n=$DRAIN_CMP_N"
	echo "draink_per=$DRAINK_PER"
	echo "atrn_rounds=$ATRN_ROUNDS"
	echo "pf_draink_per=$PF_DRAINK_PER"
	echo "ndom=$NDOM"
	echo "idle_n=$IDLE_N"
	echo "recover_n=$RECOVER_N"
	echo "recover_body=$RECOVER_BODY"
	echo "prov_rows=$PROV_ROWS"
	echo "profile_n=$PROFILE_N"
	echo "tls_sess=$TLS_SESS"
	echo "tls_hs_sess=$TLS_HS_SESS"
	echo "tls_idle_n=$TLS_IDLE_N"
	echo "tls_drain_n=$TLS_DRAIN_N"
	echo "tls_order=$TLS_ORDER"
	echo "tls_key=$TLS_KEY"
	echo "openssl=$(openssl version 2>/dev/null || echo unknown)"
} >"$RES/meta"
python3 "$ROOT/bench/report.py" "$RES" "$RESULTS" "$(dirname "$RESULTS")"
log "wrote $RESULTS"
