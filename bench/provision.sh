#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Provisioning benchmark: (1) `etrnctl import` of a 100,000-row CSV into a
# private redis-server (unix socket in a temp dir), ROUNDS times from an empty
# Redis, with a running etrnd subscribed and following the changes; (2) the
# time from `etrnctl domain add` being started to etrnd accepting RCPT for
# that domain, SAMPLES times (one SMTP session polls RCPT every 1 ms).
# Targets (issue 4): import under 5 s, add->RCPT p99 under 100 ms.
# Prints a summary; everything runs on 127.0.0.1 / unix sockets and every
# process is stopped by PID on exit.
#
#   bench/provision.sh              (make build first)
#   ROWS=100000 ROUNDS=3 SAMPLES=200 bench/provision.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export ETRND_BIN=${ETRND_BIN:-$ROOT/build/etrnd}
export ETRND_SPOOL_TOOL=${ETRND_SPOOL_TOOL:-$ROOT/build/etrnd-spool}
ETRNCTL=${ETRNCTL:-$ROOT/build/etrnctl}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
ROWS=${ROWS:-100000}
ROUNDS=${ROUNDS:-3}
SAMPLES=${SAMPLES:-200}

for f in "$ETRND_BIN" "$ETRNCTL" "$REDIS_SERVER"; do
	[[ -x $f ]] || { echo "provision.sh: $f not found or not executable (make build; make deps)" >&2; exit 1; }
done

# shellcheck source=../tests/integration/etrnd_harness.sh
source "$ROOT/tests/integration/etrnd_harness.sh"

SOCK=$H_TMP/redis.sock
"$REDIS_SERVER" --port 0 --unixsocket "$SOCK" --unixsocketperm 700 --dir "$H_TMP" \
	--save "" --appendonly no --daemonize no >"$H_TMP/redis.log" 2>&1 &
REDIS_PID=$!
H_PIDS+=("$REDIS_PID")
for _ in $(seq 1 200); do [[ -S $SOCK ]] && break; sleep 0.05; done
[[ -S $SOCK ]] || { echo "provision.sh: redis-server did not start" >&2; cat "$H_TMP/redis.log" >&2; exit 1; }
CTL=("$ETRNCTL" --redis "unix:$SOCK")

# Polling RCPT costs an error per 550: allow plenty per session.
h_start_etrnd "redis=unix:$SOCK" threads=2 sync=none log_level=warn smtp_max_errors=1000

# 1. Import.
CSV=$H_TMP/domains.csv
awk -v n="$ROWS" 'BEGIN {
	print "domain,queue,dest,etrn_from,owner,max_hold,quota_bytes,tls"
	for (i = 0; i < n; i++)
		printf "customer-%06d.example.net,q%d,mx,\"10.%d.%d.0/24\",,5d,500M,may\n", i, i % 50, (i / 256) % 256, i % 256
}' >"$CSV"
times=()
for r in $(seq 1 "$ROUNDS"); do
	redis-cli -s "$SOCK" FLUSHALL >/dev/null
	t0=$(date +%s.%N)
	"${CTL[@]}" import "$CSV" >"$H_TMP/import.out" 2>"$H_TMP/import.err" </dev/null
	t1=$(date +%s.%N)
	n=$("${CTL[@]}" domain list | wc -l)
	[[ $n -eq $ROWS ]] || { echo "provision.sh: $n domains in Redis after import, want $ROWS" >&2; exit 1; }
	times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')")
	echo "import round $r: ${times[-1]} s ($(cat "$H_TMP/import.out"))"
done
IMPORT_MEDIAN=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')

# The daemon follows: the last row must become acceptable.
"$H_PY" - "$ETRND_PORT" "customer-$(printf %06d $((ROWS - 1))).example.net" <<'PYEOF'
import smtplib, sys, time
port, dom = int(sys.argv[1]), sys.argv[2]
t0 = time.monotonic()
s = smtplib.SMTP("127.0.0.1", port, timeout=10); s.ehlo("bench.test"); s.mail("a@example.org")
while s.rcpt("u@" + dom)[0] != 250:
    if time.monotonic() - t0 > 30: sys.exit("daemon never accepted " + dom)
    time.sleep(0.01)
print("etrnd accepted the last imported domain %.2f s after the import ended" % (time.monotonic() - t0))
PYEOF

# 2. add -> RCPT latency, with the 100,000-domain table loaded.
"$H_PY" - "$ETRND_PORT" "$SAMPLES" "${CTL[@]}" <<'PYEOF'
import smtplib, subprocess, sys, time
port, samples, ctl = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
lat = []
for i in range(samples):
    s = smtplib.SMTP("127.0.0.1", port, timeout=10); s.ehlo("bench.test"); s.mail("a@example.org")
    dom = "latency-%d-%d.example.org" % (i, int(time.time()))
    t0 = time.monotonic()
    subprocess.run(ctl + ["domain", "add", dom], check=True, stdout=subprocess.DEVNULL)
    while s.rcpt("u@" + dom)[0] != 250:
        if time.monotonic() - t0 > 10: sys.exit("never accepted " + dom)
        time.sleep(0.001)
    lat.append((time.monotonic() - t0) * 1000)
    s.quit()
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
print("add->RCPT 250 over %d samples: p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (len(lat), pct(50), pct(99), lat[-1]))
PYEOF

echo "import of $ROWS domains: median $IMPORT_MEDIAN s over $ROUNDS round(s) (target < 5 s)"
h_stop_etrnd
