#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Ingest benchmark: the same Postfix smtp-source load against a private etrnd
# (sync = batch, threads = auto, spool in a temp dir) and against Postfix's
# smtp-sink (which throws mail away: the client's ceiling), alternating,
# ROUNDS rounds each, in two client modes: a new connection per message
# (smtp-source's default) and connections reused (-d). Each etrnd round starts
# from an empty spool and must leave exactly MESSAGES records in it.
# Prints a markdown table and rewrites its section of bench/RESULTS.md.
# Everything runs on 127.0.0.1; every process is stopped by PID on exit.
#
#   bench/ingest.sh            (make bench builds build/etrnd first)
#   ROUNDS=5 MESSAGES=50000 bench/ingest.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export ETRND_BIN=${ETRND_BIN:-$ROOT/build/etrnd}
export ETRND_SPOOL_TOOL=${ETRND_SPOOL_TOOL:-$ROOT/build/etrnd-spool}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
ROUNDS=${ROUNDS:-3}
MESSAGES=${MESSAGES:-20000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}   # seconds, per smtp-source run
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
SENDER=sender@example.org
RCPT=user@demo.test

for f in "$ETRND_BIN" "$ETRND_SPOOL_TOOL" "$SMTP_SOURCE" "$SMTP_SINK"; do
	[[ -x $f ]] || { echo "ingest.sh: $f not found or not executable (make build; make deps)" >&2; exit 1; }
done

# shellcheck source=../tests/integration/etrnd_harness.sh
source "$ROOT/tests/integration/etrnd_harness.sh"

# smtp-sink, started once: -u is required when running as root.
h_free_port SINK_PORT
sink_user=()
[[ $(id -u) -eq 0 ]] && sink_user=(-u nobody)
"$SMTP_SINK" "${sink_user[@]}" "127.0.0.1:$SINK_PORT" 1024 >"$H_TMP/sink.log" 2>&1 &
SINK_PID=$!
H_PIDS+=("$SINK_PID")
if ! h_wait_port "$SINK_PORT" "$SINK_PID" 10; then
	echo "ingest.sh: smtp-sink did not start:" >&2; cat "$H_TMP/sink.log" >&2; exit 1
fi

# load PORT MODEFLAGS...: one smtp-source run; prints messages/s.
load() {
	local port=$1; shift
	local t0 t1 rc=0
	t0=$(date +%s.%N)
	timeout "$RUN_TIMEOUT" "$SMTP_SOURCE" "$@" -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" \
		-f "$SENDER" -t "$RCPT" -M client.example.org "127.0.0.1:$port" \
		>"$H_TMP/source.log" 2>&1 || rc=$?
	t1=$(date +%s.%N)
	if [[ $rc -ne 0 ]]; then
		echo "ingest.sh: smtp-source $* against port $port exited $rc:" >&2
		tail -n 5 "$H_TMP/source.log" >&2
		return 1
	fi
	awk -v n="$MESSAGES" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f\n", n / (b - a) }'
}

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A RATES
FAILED=0
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for mode in new reuse; do
	flags=()
	[[ $mode == reuse ]] && flags=(-d)
	for round in $(seq 1 "$ROUNDS"); do
		# etrnd from an empty spool, stopped (exit 0) before counting.
		rm -rf "$H_TMP/spool"
		h_start_etrnd threads=auto sync=batch
		if r=$(load "$ETRND_PORT" "${flags[@]}"); then
			RATES[etrnd,$mode]+=" $r"
		else
			FAILED=1
		fi
		if ! h_stop_etrnd; then FAILED=1; fi
		# etrnd-spool stats, "total" row: records msg done ... torn bad.
		stored=$("$ETRND_SPOOL_TOOL" stats "$H_TMP/spool" | awk '$1 == "total" { print $4 "/" $7 "/" $9 }') || stored=error
		if [[ $stored == "$MESSAGES/0/0" ]]; then
			echo "round $round, $mode connections: etrnd ${r:-failed} msg/s; spool holds $MESSAGES messages"
		else
			echo "ingest.sh: etrnd's spool after $MESSAGES messages: msg/torn/bad = $stored" >&2
			FAILED=1
		fi
		if r=$(load "$SINK_PORT" "${flags[@]}"); then
			RATES[sink,$mode]+=" $r"
			echo "round $round, $mode connections: smtp-sink $r msg/s"
		else
			FAILED=1
		fi
	done
done

if [[ $FAILED -ne 0 ]]; then
	echo "ingest.sh: a run failed; $RESULTS left unchanged" >&2
	exit 1
fi

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
disk=$(df -hT "$H_TMP" | awk 'NR == 2 { print $1 " (" $2 ", " $3 ")" }')
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo "+uncommitted changes" || true)
{
	echo "<!-- ingest.sh:begin (rewritten by bench/ingest.sh) -->"
	echo "## Ingest: etrnd vs smtp-sink under smtp-source"
	echo
	echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') at commit $rev$dirty with:"
	echo
	echo '```'
	echo "ROUNDS=$ROUNDS MESSAGES=$MESSAGES SESSIONS=$SESSIONS SIZE=$SIZE bench/ingest.sh"
	echo "smtp-source [-d] -s $SESSIONS -m $MESSAGES -l $SIZE -f $SENDER -t $RCPT 127.0.0.1:PORT"
	echo '```'
	echo
	echo "etrnd: \`${ETRND_BIN#"$ROOT"/}\` (\`make build\`: RelWithDebInfo), sync = batch, threads = auto, every round"
	echo "from an empty spool and checked afterwards to hold all $MESSAGES messages."
	echo "smtp-sink: Postfix's, discarding everything (the client's ceiling)."
	echo "Machine: $(nproc) CPUs ($cpu), kernel $(uname -r), spool on $disk;"
	echo "smtp-source, etrnd and smtp-sink share these CPUs; load average before the run"
	echo "$LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows here)."
	echo
	echo "| connections | etrnd msg/s (median) | smtp-sink msg/s (median) | etrnd / sink | etrnd rounds | smtp-sink rounds |"
	echo "|---|---:|---:|---:|---|---|"
	for mode in new reuse; do
		# shellcheck disable=SC2086
		e=$(median ${RATES[etrnd,$mode]})
		# shellcheck disable=SC2086
		s=$(median ${RATES[sink,$mode]})
		ratio=$(awk -v a="$e" -v b="$s" 'BEGIN { printf "%.2f", a / b }')
		label="new per message"
		[[ $mode == reuse ]] && label="reused (-d)"
		# shellcheck disable=SC2086
		er=$(echo ${RATES[etrnd,$mode]} | sed 's/ /, /g')
		# shellcheck disable=SC2086
		sr=$(echo ${RATES[sink,$mode]} | sed 's/ /, /g')
		echo "| $label | $e | $s | $ratio | $er | $sr |"
	done
	echo "<!-- ingest.sh:end -->"
} >"$H_TMP/section.md"

cat "$H_TMP/section.md"

# Replace our section of RESULTS.md (or append it).
if [[ -f $RESULTS ]] && grep -q '^<!-- ingest.sh:begin' "$RESULTS"; then
	awk -v sec="$H_TMP/section.md" '
		/^<!-- ingest.sh:begin/ { while ((getline l < sec) > 0) print l; skip = 1; next }
		/^<!-- ingest.sh:end/ { skip = 0; next }
		!skip { print }' "$RESULTS" >"$H_TMP/results.new"
	cat "$H_TMP/results.new" >"$RESULTS"
else
	{ [[ -f $RESULTS ]] && cat "$RESULTS" && echo; cat "$H_TMP/section.md"; } >"$H_TMP/results.new"
	cat "$H_TMP/results.new" >"$RESULTS"
fi
echo "ingest.sh: wrote $RESULTS"
