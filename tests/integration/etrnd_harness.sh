# SPDX-License-Identifier: MIT
# Bash harness for etrnd's shell integration tests and bench/ingest.sh:
# a private etrnd on a free 127.0.0.1 port with its spool in a temp dir,
# stopped by PID (SIGTERM, bounded wait, SIGKILL fallback) on exit, plus
# pass/fail counters that end with the line "N passed, M failed".
# Source it; it needs ETRND_BIN and ETRND_SPOOL_TOOL (ctest sets them).

H_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
H_PY=${ETRND_PYTHON:-python3}
H_PASS=0
H_FAIL=0
H_SKIP=0
# h_summary's status when nothing failed but a check was skipped (ctest's
# SKIP_RETURN_CODE, tests/integration/CMakeLists.txt).
H_SKIP_EXIT=77
H_PIDS=()          # every background process we started, by PID
ETRND_PID=
ETRND_PORT=
H_TMP=$(mktemp -d "${TMPDIR:-/tmp}/etrnd-it.XXXXXX")

h_cleanup() {
	local pid
	for pid in "${H_PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			local i
			for i in $(seq 1 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	if [[ -z ${ETRND_KEEP_TMP:-} ]]; then
		rm -rf "$H_TMP"
	else
		echo "kept $H_TMP" >&2
	fi
}
trap h_cleanup EXIT

h_pass() { H_PASS=$((H_PASS + 1)); echo "ok: $*"; }
h_fail() { H_FAIL=$((H_FAIL + 1)); echo "FAIL: $*"; }
# h_check NAME CMD...: runs CMD, counts it as a pass if it exits 0.
h_check() {
	local name=$1; shift
	if "$@"; then h_pass "$name"; else h_fail "$name"; fi
}
# h_skip WHAT: a check that cannot run on this machine, and why.
h_skip() { H_SKIP=$((H_SKIP + 1)); echo "SKIPPED: $*"; }
h_summary() {
	if [[ $H_SKIP -eq 0 ]]; then
		echo "$H_PASS passed, $H_FAIL failed"
	else
		echo "$H_PASS passed, $H_FAIL failed, $H_SKIP skipped"
	fi
	[[ $H_FAIL -eq 0 ]] || return 1
	[[ $H_SKIP -eq 0 ]] || return $H_SKIP_EXIT
}

# h_free_port VAR: a free loopback port in VAR (etrnd_harness.py's
# free_port()), its lock file held by this shell until it exits, so that no
# test running beside this one is handed it meanwhile. Not in a $(...)
# subshell: the lock would go with it. (Its own locals are h_fp_*, so that
# VAR may be any name of the caller's, a local one too.)
h_free_port() {
	local -n h_fp_out=$1
	local h_fp_port h_fp_lock h_fp_fd h_fp_i
	for h_fp_i in 1 2 3 4 5 6 7 8 9 10; do
		read -r h_fp_port h_fp_lock < <("$H_PY" "$H_DIR/etrnd_harness.py" free-port) || return 1
		exec {h_fp_fd}<"$h_fp_lock" || return 1
		if flock -n "$h_fp_fd"; then
			h_fp_out=$h_fp_port
			return 0
		fi
		exec {h_fp_fd}>&- # taken since it was chosen: another
	done
	echo "h_free_port: no free port after $h_fp_i tries" >&2
	return 1
}

# How long a start or a stop may take: a guard against a hang only (a loaded
# 2-core machine, sanitizer builds), never a measure of speed.
H_START_WAIT_S=30
H_STOP_WAIT_S=30

# h_wait_port PORT PID SECONDS: until PORT accepts TCP connections; fails if
# PID dies or the time runs out.
h_wait_port() {
	local port=$1 pid=$2 secs=$3 i
	for i in $(seq 1 $((secs * 20))); do
		kill -0 "$pid" 2>/dev/null || return 1
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# h_start_etrnd [key=value ...]: writes $H_TMP/etrnd.conf (spool in
# $H_TMP/spool, relay_domains demo.test) plus the given keys, starts etrnd.
# Sets ETRND_PID, ETRND_PORT, ETRND_SPOOL, ETRND_STDERR.
h_start_etrnd() {
	ETRND_SPOOL=$H_TMP/spool
	ETRND_STDERR=$H_TMP/etrnd.stderr
	h_free_port ETRND_PORT || return 1
	mkdir -p -m 0750 "$ETRND_SPOOL" # etrnd refuses a spool others may write
	# Defaults, then the caller's keys (a key given twice is written once).
	local -a keys=(listen threads hostname spool_dir relay_domains sync shutdown_timeout)
	local -A val=(
		[listen]="127.0.0.1:$ETRND_PORT" [threads]=2
		[hostname]=mx.test.invalid [spool_dir]="$ETRND_SPOOL"
		[relay_domains]=demo.test [sync]=batch [shutdown_timeout]=10s)
	local kv k
	for kv in "$@"; do
		k=${kv%%=*}
		[[ -v "val[$k]" ]] || keys+=("$k")
		val[$k]=${kv#*=}
	done
	{
		echo "# written by etrnd_harness.sh"
		for k in "${keys[@]}"; do
			echo "$k = ${val[$k]}"
		done
	} >"$H_TMP/etrnd.conf"
	"$ETRND_BIN" -c "$H_TMP/etrnd.conf" </dev/null >>"$ETRND_STDERR" 2>&1 &
	ETRND_PID=$!
	H_PIDS+=("$ETRND_PID")
	if ! h_wait_port "$ETRND_PORT" "$ETRND_PID" "$H_START_WAIT_S"; then
		echo "etrnd did not start listening on 127.0.0.1:$ETRND_PORT; stderr:" >&2
		cat "$ETRND_STDERR" >&2
		return 1
	fi
	# Listening sockets exist before the spool is recovered: etrnd says
	# "etrnd started" once every engine thread is ready (an info line: a
	# quieter log_level, as the benchmarks use, goes by the port alone).
	case ${val[log_level]:-info} in info | debug) ;; *) return 0 ;; esac
	local i
	for i in $(seq 1 $((H_START_WAIT_S * 20))); do
		grep -q "etrnd started:" "$ETRND_STDERR" && return 0
		kill -0 "$ETRND_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "etrnd did not say it started; stderr:" >&2
	cat "$ETRND_STDERR" >&2
	return 1
}

# h_stop_etrnd: SIGTERM, wait up to H_STOP_WAIT_S, SIGKILL fallback. Returns 0 only
# on a clean exit with status 0.
h_stop_etrnd() {
	local pid=$ETRND_PID i rc
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 $((H_STOP_WAIT_S * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "etrnd (pid $pid) still running $H_STOP_WAIT_S s after SIGTERM: SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		ETRND_PID=
		return 1
	fi
	rc=0
	wait "$pid" || rc=$?
	ETRND_PID=
	if [[ $rc -ne 0 ]]; then
		echo "etrnd exited with status $rc after SIGTERM; stderr:" >&2
		tail -n 50 "$ETRND_STDERR" >&2
		return 1
	fi
}
