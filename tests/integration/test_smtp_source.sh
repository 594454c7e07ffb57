#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Load test with Postfix's smtp-source on 127.0.0.1: 50 parallel sessions,
# 5000 messages of 4 KiB, one connection per message (smtp-source's default).
# Then the spool must hold exactly 5000 MSG records with 5000 distinct queue
# ids, each with the sender and the one recipient smtp-source used.
# Last line: "N passed, M failed"; non-zero exit on any failure.
set -euo pipefail

: "${ETRND_BIN:?set by ctest}" "${ETRND_SPOOL_TOOL:?set by ctest}"
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
SESSIONS=${SESSIONS:-50}
MESSAGES=${MESSAGES:-5000}
SENDER=sender@example.org
RCPT=user@demo.test
# shellcheck source=etrnd_harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/etrnd_harness.sh"

h_start_etrnd

t0=$(date +%s.%N)
rc=0
timeout 120 "$SMTP_SOURCE" -s "$SESSIONS" -m "$MESSAGES" -l 4096 \
	-f "$SENDER" -t "$RCPT" -M client.example.org \
	"127.0.0.1:$ETRND_PORT" >"$H_TMP/smtp-source.out" 2>&1 || rc=$?
t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
if [[ $rc -eq 0 ]]; then
	h_pass "smtp-source -s $SESSIONS -m $MESSAGES -l 4096: every reply as expected (${secs}s)"
else
	# smtp-source exits non-zero on the first unexpected reply (it was run
	# without -A); timeout(1) says 124.
	h_fail "smtp-source exited $rc after ${secs}s"
	tail -n 20 "$H_TMP/smtp-source.out"
fi

# Read the spool after a clean shutdown: nothing is still being written.
if h_stop_etrnd; then
	h_pass "etrnd exits 0 on SIGTERM after the load"
else
	h_fail "etrnd exits 0 on SIGTERM after the load"
fi

if out=$("$H_PY" "$H_DIR/etrnd_harness.py" check-load "$ETRND_SPOOL" "$MESSAGES" "$SENDER" "$RCPT" 4096); then
	h_pass "spool: $out (want $MESSAGES records, $MESSAGES distinct qids, <$SENDER> -> <$RCPT>, bodies >= 4096 bytes)"
else
	h_fail "spool: $out (want $MESSAGES records, $MESSAGES distinct qids, <$SENDER> -> <$RCPT>, bodies >= 4096 bytes)"
fi

h_summary
