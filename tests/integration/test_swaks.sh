#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# etrnd against swaks (a real SMTP client we did not write), on 127.0.0.1:
# plain and pipelined messages, --quit-after, a relay attempt, a ~1 MB body.
# Each accepted message is read back with etrnd-spool and compared byte for
# byte (after removing our Received: header and un-dot-stuffing) with the
# --data file. Last line: "N passed, M failed"; non-zero exit on any failure.
set -euo pipefail

: "${ETRND_BIN:?set by ctest}" "${ETRND_SPOOL_TOOL:?set by ctest}"
SWAKS=${SWAKS:-swaks}
# shellcheck source=etrnd_harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/etrnd_harness.sh"

FROM=sender@example.org
QIDS=()   # every message etrnd said it queued

# make_data FILE KIND: a --data file (LF line endings, no final newline, no
# swaks %TOKENS% or backslashes) and FILE.expect, the bytes swaks then sends
# after DATA: CRLF line endings, a final CRLF, not dot-stuffed.
make_data() {
	"$H_PY" - "$1" "$2" <<'EOF'
import base64, random, sys
path, kind = sys.argv[1], sys.argv[2]
head = ["From: <sender@example.org>", "To: <user@demo.test>",
        "Subject: swaks %s" % kind, "Message-ID: <%s.swaks@example.org>" % kind,
        "MIME-Version: 1.0"]
if kind == "big":
    rnd = random.Random(5321)
    raw = bytes(rnd.getrandbits(8) for _ in range(780 * 1024))
    b64 = base64.b64encode(raw).decode()
    lines = [b64[i:i + 76] for i in range(0, len(b64), 76)]
    for i in range(0, len(lines), 997):
        lines.insert(i, ".dot line %d" % i)      # exercises dot-stuffing
    body = ["Content-Type: application/octet-stream",
            "Content-Transfer-Encoding: base64", ""] + lines
    head = head + body[:2]
    body = body[2:]
else:
    body = ["", "Hello from swaks (%s)." % kind, ".leading dot", "..two dots",
            ".", "", "end"]
text = "\n".join(head + body)
with open(path, "w") as f:
    f.write(text)
with open(path + ".expect", "wb") as f:
    f.write(text.replace("\n", "\r\n").encode() + b"\r\n")
EOF
}

# run_swaks OUT [swaks args...]: runs swaks against our etrnd, transcript in
# OUT, returns swaks' exit status.
run_swaks() {
	local out=$1; shift
	local rc=0
	timeout 60 "$SWAKS" --server "127.0.0.1:$ETRND_PORT" --helo client.example.org \
		--from "$FROM" --timeout 30 "$@" >"$out" 2>&1 </dev/null || rc=$?
	return $rc
}

qid_of() { grep -oE 'queued as [0-9A-F]{14}' "$1" | head -n1 | awk '{print $3}'; }

# check_stored NAME QID DATAFILE RCPT: the spool record for QID carries the
# envelope and exactly the bytes swaks sent.
check_stored() {
	local name=$1 qid=$2 data=$3 rcpt=$4
	local got=$H_TMP/$name.got
	if [[ -z $qid ]]; then
		h_fail "$name: no queue id in swaks' transcript"; return
	fi
	QIDS+=("$qid")
	if ! "$H_PY" "$H_DIR/etrnd_harness.py" body "$ETRND_SPOOL" "$qid" >"$got"; then
		h_fail "$name: record $qid not readable from the spool"; return
	fi
	if cmp -s "$got" "$data.expect"; then
		h_pass "$name: stored body of $qid equals what swaks sent ($(wc -c <"$got") bytes)"
	else
		h_fail "$name: stored body of $qid differs from what swaks sent"
		cmp "$got" "$data.expect" | head -n 3 || true
	fi
	local env
	env=$("$H_PY" "$H_DIR/etrnd_harness.py" records "$ETRND_SPOOL" | awk -v q="$qid" '$1 == q {print $2, $3}')
	if [[ $env == "$FROM $rcpt" ]]; then
		h_pass "$name: envelope of $qid is <$FROM> -> <$rcpt>"
	else
		h_fail "$name: envelope of $qid: want '$FROM $rcpt', got '$env'"
	fi
}

h_start_etrnd

make_data "$H_TMP/small.txt" small
make_data "$H_TMP/big.txt" big

# 1. --quit-after RCPT (pipelined MAIL+RCPT): a clean session, nothing stored.
out=$H_TMP/quit-after.out
if run_swaks "$out" --to user@demo.test --pipeline --quit-after RCPT \
	&& grep -q '^<-  250 2\.1\.0' "$out" && grep -q '^<-  250 2\.1\.5' "$out" \
	&& grep -q '^<-  221 2\.0\.0' "$out"; then
	h_pass "swaks --pipeline --quit-after RCPT: 250 2.1.0, 250 2.1.5, 221 2.0.0"
else
	h_fail "swaks --quit-after RCPT"; cat "$out"
fi

# 2. One message, no pipelining.
out=$H_TMP/plain.out
if run_swaks "$out" --to user@demo.test --data "@$H_TMP/small.txt" \
	&& grep -q '^<-  354 ' "$out" && grep -qE '^<-  250 2\.0\.0 Ok: queued as [0-9A-F]{14}$' "$out"; then
	h_pass "swaks single message: 354 then 250 2.0.0 queued as QID"
	check_stored plain "$(qid_of "$out")" "$H_TMP/small.txt" user@demo.test
else
	h_fail "swaks single message"; cat "$out"
fi

# 3. The same with --pipeline.
out=$H_TMP/pipeline.out
if run_swaks "$out" --to user@demo.test --pipeline --data "@$H_TMP/small.txt" \
	&& grep -qE '^<-  250 2\.0\.0 Ok: queued as [0-9A-F]{14}$' "$out"; then
	h_pass "swaks --pipeline: 250 2.0.0 queued as QID"
	check_stored pipeline "$(qid_of "$out")" "$H_TMP/small.txt" user@demo.test
else
	h_fail "swaks --pipeline"; cat "$out"
fi

# 4. Relay attempt to a domain we do not serve: 550 5.7.1, swaks exits 24
# ("no RCPTs accepted").
out=$H_TMP/relay.out
rc=0
run_swaks "$out" --to victim@example.com --data "@$H_TMP/small.txt" || rc=$?
if [[ $rc -eq 24 ]] && grep -qE '^<\*\* 550 5\.7\.1 <victim@example\.com>: Relay access denied' "$out"; then
	h_pass "swaks relay attempt: 550 5.7.1 Relay access denied, swaks exit 24"
else
	h_fail "swaks relay attempt: exit $rc (want 24)"; cat "$out"
fi

# 5. A ~1 MB body (base64 attachment-sized, dot lines inside), pipelined.
out=$H_TMP/big.out
if run_swaks "$out" --to big@demo.test --pipeline --suppress-data --data "@$H_TMP/big.txt" \
	&& grep -qE '^<-  250 2\.0\.0 Ok: queued as [0-9A-F]{14}$' "$out"; then
	h_pass "swaks ~1 MB message: 250 2.0.0 queued as QID"
	check_stored big "$(qid_of "$out")" "$H_TMP/big.txt" big@demo.test
else
	h_fail "swaks ~1 MB message"; cat "$out"
fi

# The spool holds exactly the accepted messages: nothing from the
# --quit-after session or the relay attempt.
want=$(printf '%s\n' "${QIDS[@]}" | sort)
have=$("$H_PY" "$H_DIR/etrnd_harness.py" records "$ETRND_SPOOL" | awk '{print $1}' | sort)
if [[ ${#QIDS[@]} -eq 3 && $want == "$have" ]]; then
	h_pass "spool holds exactly the 3 accepted messages"
else
	h_fail "spool holds [$(echo $have)], want the ${#QIDS[@]} accepted [$(echo $want)] (3 expected)"
fi

if h_stop_etrnd; then
	h_pass "etrnd exits 0 on SIGTERM"
else
	h_fail "etrnd exits 0 on SIGTERM"
fi

h_summary
