# SPDX-License-Identifier: MIT
# Shared by the stand-alone bench scripts (bench/atrn.sh, bench/drain.sh),
# sourced after tests/integration/etrnd_harness.sh (H_TMP, H_PIDS):
#   json_get FILE KEY.PATH   one value from the last JSON line of FILE ("nan")
#   bench_redis_start NAME   a private redis-server on a unix socket in H_TMP,
#                            stopped by PID on exit; sets REDIS_SOCK
json_get() {
	python3 - "$1" "$2" <<'PYEOF'
import json, sys
try:
    j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
    for k in sys.argv[2].split("."):
        j = j[k]
    print(j)
except (OSError, ValueError, IndexError, KeyError, TypeError):
    print("nan")
PYEOF
}

bench_redis_start() {
	REDIS_SOCK=$H_TMP/redis.sock
	"$REDIS_SERVER" --port 0 --unixsocket "$REDIS_SOCK" --unixsocketperm 700 --dir "$H_TMP" \
		--save "" --appendonly no --daemonize no >"$H_TMP/redis.log" 2>&1 &
	H_PIDS+=($!)
	for _ in $(seq 1 200); do [[ -S $REDIS_SOCK ]] && break; sleep 0.05; done
	[[ -S $REDIS_SOCK ]] || { echo "$1: redis-server did not start" >&2; exit 1; }
}
