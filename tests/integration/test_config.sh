#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# etrnd's configuration errors as an operator and a script see them:
# "etrnd: FILE:LINE: what is wrong" on stderr and exit status 2 for a bad
# file, a non-zero exit naming the path for a missing one, and `etrnd -t`
# (check only) silent with exit 0 for a good one. Every run is bounded by
# timeout(1); the one daemon started (to hold a port) is stopped by PID.
# Last line: "N passed, M failed"; non-zero exit on any failure.
set -euo pipefail

: "${ETRND_BIN:?set by ctest}"
: "${ETRND_SOURCE_DIR:?set by ctest}"
export ETRND_SPOOL_TOOL=${ETRND_SPOOL_TOOL:-unused}
# shellcheck source=etrnd_harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/etrnd_harness.sh"

D=$H_TMP
mkdir -p "$D/spool"

# run_etrnd NAME ARGS...: runs etrnd (bounded), sets RC, OUT, ERR.
run_etrnd() {
	local name=$1; shift
	RC=0
	timeout 20 "$ETRND_BIN" "$@" </dev/null >"$D/$name.out" 2>"$D/$name.err" || RC=$?
	OUT=$(cat "$D/$name.out")
	ERR=$(cat "$D/$name.err")
}

show() { echo "  exit $RC; stdout: ${OUT:0:300}"; echo "  stderr: ${ERR:0:600}"; }

h_free_port GOOD_PORT || exit 1
good_conf() {
	cat <<EOF
# a good configuration
listen = 127.0.0.1:$GOOD_PORT
threads = 1
spool_dir = $D/spool
relay_domains = demo.test, example.net
sync = none
idle_timeout = 5m
message_size_limit = 10M
EOF
}

# 1. Unknown key on line 3: exit 2 and exactly this line on stderr.
printf '# line 1\nlisten = 127.0.0.1:2525\nthreds = 2\nspool_dir = %s/spool\n' "$D" >"$D/bad.conf"
run_etrnd unknown -c "$D/bad.conf"
want="etrnd: $D/bad.conf:3: unknown key \"threds\""
if [[ $RC -eq 2 && $ERR == "$want" && -z $OUT ]]; then
	h_pass "unknown key: exit 2, stderr is exactly '$want'"
else
	h_fail "unknown key: want exit 2 and stderr exactly '$want'"; show
fi

# 2. The same file under -t.
run_etrnd unknown-t -t -c "$D/bad.conf"
if [[ $RC -eq 2 && $ERR == "$want" ]]; then
	h_pass "unknown key with -t: exit 2, same message"
else
	h_fail "unknown key with -t: want exit 2 and '$want'"; show
fi

# 3. Bad values: exit 2, stderr starts "etrnd: FILE:LINE:" and names the key.
# Each case: line number, key, bad value.
bad_value_case() {
	local line=$1 key=$2 value=$3 f=$D/badval-$2.conf i
	: >"$f"
	for ((i = 1; i < line; i++)); do echo "# filler $i" >>"$f"; done
	echo "$key = $value" >>"$f"
	run_etrnd "badval-$key" -t -c "$f"
	local prefix="etrnd: $f:$line: "
	if [[ $RC -eq 2 && $ERR == "$prefix"* && $ERR == *"$key"* \
		&& $(printf '%s\n' "$ERR" | wc -l) -eq 1 ]]; then
		h_pass "bad value $key = $value: exit 2, '$ERR'"
	else
		h_fail "bad value $key = $value: want exit 2, one line starting '$prefix' naming $key"; show
	fi
}
bad_value_case 4 sync sometimes
bad_value_case 2 threads many
bad_value_case 7 idle_timeout 5x
bad_value_case 1 message_size_limit 12Q
bad_value_case 3 listen 127.0.0.1:99999
bad_value_case 5 bare_lf maybe
bad_value_case 2 log_level loud

# 4. A line that is not "key = value".
printf 'listen = 127.0.0.1:2525\njust some words\n' >"$D/syntax.conf"
run_etrnd syntax -t -c "$D/syntax.conf"
if [[ $RC -eq 2 && $ERR == "etrnd: $D/syntax.conf:2: "* ]]; then
	h_pass "line without '=': exit 2, '$ERR'"
else
	h_fail "line without '=': want exit 2 and 'etrnd: $D/syntax.conf:2: ...'"; show
fi

# 5. Missing file: non-zero, the path in the message.
run_etrnd missing -c "$D/missing.conf"
if [[ $RC -ne 0 && $ERR == *"$D/missing.conf"* ]]; then
	h_pass "missing config: exit $RC, message names the path"
else
	h_fail "missing config: want non-zero exit and the path in stderr"; show
fi

# 6. -t on a good file: silent, exit 0. Also the shipped etc/etrnd.conf.
good_conf >"$D/good.conf"
run_etrnd good -t -c "$D/good.conf"
if [[ $RC -eq 0 && -z $OUT && -z $ERR ]]; then
	h_pass "-t on a good config: exit 0, prints nothing"
else
	h_fail "-t on a good config: want exit 0 and no output"; show
fi
run_etrnd shipped -t -c "$ETRND_SOURCE_DIR/etc/etrnd.conf"
if [[ $RC -eq 0 && -z $OUT && -z $ERR ]]; then
	h_pass "-t on etc/etrnd.conf: exit 0, prints nothing"
else
	h_fail "-t on etc/etrnd.conf: want exit 0 and no output"; show
fi

# 6b. A key given twice: still exit 0 under -t, with one warning on stderr
# naming file:line and the earlier line (Postfix: "overriding earlier
# entry"); the last value wins (threads = 1 is the first line of the pair).
{ good_conf; echo "threads = 2"; } >"$D/twice.conf"
first=$(grep -n '^threads' "$D/twice.conf" | head -1 | cut -d: -f1)
last=$(wc -l <"$D/twice.conf")
run_etrnd twice -t -c "$D/twice.conf"
want="warning: $D/twice.conf:$last: overriding earlier entry for threads on line $first: the last value wins"
if [[ $RC -eq 0 && $ERR == *"$want" && $(grep -c . <<<"$ERR") -eq 1 ]]; then
	h_pass "duplicate key: exit 0, one warning '$want'"
else
	h_fail "duplicate key: want exit 0 and one line ending '$want'"; show
fi

# 7. -o overrides: a good one passes -t, an unknown key fails with exit 2.
run_etrnd override-good -t -c "$D/good.conf" -o threads=2 -o sync=always
if [[ $RC -eq 0 && -z $ERR ]]; then
	h_pass "-o threads=2 -o sync=always with -t: exit 0"
else
	h_fail "-o good overrides: want exit 0"; show
fi
run_etrnd override-bad -t -c "$D/good.conf" -o threds=2
if [[ $RC -eq 2 && $ERR == "etrnd: "* && $ERR == *'"threds"'* ]]; then
	h_pass "-o threds=2: exit 2, '$ERR'"
else
	h_fail "-o threds=2: want exit 2 and a message naming \"threds\""; show
fi
# Not KEY=VALUE at all (no '=', no key, a key longer than any): exit 2,
# the -o named.
longkey=$(printf 'k%.0s' $(seq 70))
for o in bogus =2 "$longkey=1"; do
	run_etrnd override-form -t -c "$D/good.conf" -o "$o"
	if [[ $RC -eq 2 && $ERR == "etrnd: -o $o: want KEY=VALUE" ]]; then
		h_pass "-o $o: exit 2, '$ERR'"
	else
		h_fail "-o $o: want exit 2 and 'etrnd: -o $o: want KEY=VALUE'"; show
	fi
done

# 7b. Activators (issue 14): a bad one stops `etrnd -t` with exit 2 and one
# line "etrnd: FILE:LINE: activator NAME: ..." (the key's line for a bad
# value, the activator's first key's for a missing field); a good one, and
# one made on the command line, pass silently.
printf 'pw\n' >"$D/act.pw"
chmod 600 "$D/act.pw"
# activator_case NAME WANT_LINE WANT_TEXT LINES...: the lines after good_conf.
activator_case() {
	local name=$1 line=$2 text=$3 f=$D/act-$1.conf base
	shift 3
	good_conf >"$f"
	base=$(wc -l <"$f")
	printf '%s\n' "$@" >>"$f"
	run_etrnd "act-$name" -t -c "$f"
	local want="etrnd: $f:$((base + line)): activator isp: $text"
	if [[ $RC -eq 2 && $ERR == "$want"* && $(grep -c . <<<"$ERR") -eq 1 ]]; then
		h_pass "activator $name: exit 2, '$ERR'"
	else
		h_fail "activator $name: want exit 2 and one line starting '$want'"; show
	fi
}
activator_case no-host 1 "no host" \
	"activator.isp.schedule = every 1h" "activator.isp.request = example.com"
activator_case bad-schedule 2 'bad value for schedule: "every 10s": every 10s: under the minimum of 1m' \
	"activator.isp.host = mx.isp.example" "activator.isp.schedule = every 10s"
activator_case atrn-queue 2 'method atrn takes domains only, not "#q1"' \
	"activator.isp.host = mx.isp.example" "activator.isp.request = example.com, #q1" \
	"activator.isp.method = atrn" "activator.isp.user = node1" \
	"activator.isp.password_file = $D/act.pw" "activator.isp.schedule = every 1h"
activator_case no-password-file 3 "password_file $D/nonexistent.pw: No such file or directory" \
	"activator.isp.host = mx.isp.example" "activator.isp.user = node1" \
	"activator.isp.password_file = $D/nonexistent.pw" "activator.isp.request = example.com" \
	"activator.isp.schedule = every 1h"
{ good_conf; printf '%s\n' "activator.isp.host = mx.isp.example:2525" \
	"activator.isp.request = example.com, @example.org, #q1" \
	"activator.isp.schedule = 08:00-18:00 every 5m, after-outbound" \
	"activator.odmr.host = [::1]" "activator.odmr.method = atrn" "activator.odmr.user = node1" \
	"activator.odmr.password_file = $D/act.pw" "activator.odmr.schedule = every 15m"; } >"$D/act-good.conf"
run_etrnd act-good -t -c "$D/act-good.conf"
if [[ $RC -eq 0 && -z $OUT && -z $ERR ]]; then
	h_pass "-t on good activators: exit 0, prints nothing"
else
	h_fail "-t on good activators: want exit 0 and no output"; show
fi
run_etrnd act-o -t -c "$D/good.conf" -o activator.x.host=[127.0.0.1]:2526 \
	-o activator.x.request=example.com -o "activator.x.schedule=every 1h"
if [[ $RC -eq 0 && -z $ERR ]]; then
	h_pass "-o activator.x.host=... with -t: exit 0"
else
	h_fail "-o activator.x.*: want exit 0"; show
fi
run_etrnd act-o-bad -t -c "$D/good.conf" -o activator.x.host=mx.example
want="etrnd: command line -o: activator x: method etrn needs a request"
if [[ $RC -eq 2 && $ERR == "$want"* ]]; then
	h_pass "-o an incomplete activator: exit 2, '$ERR'"
else
	h_fail "-o an incomplete activator: want exit 2 and '$want...'"; show
fi

# 8. The listen address is taken (by another etrnd): a clear error naming
# it and a non-zero exit, not a second daemon sharing the port.
h_start_etrnd
sed "s|^spool_dir = .*|spool_dir = $D/spool2|" "$H_TMP/etrnd.conf" >"$D/dup.conf"
run_etrnd dup -c "$D/dup.conf"
if [[ $RC -ne 0 && $ERR == *"127.0.0.1:$ETRND_PORT"* ]]; then
	h_pass "listen address in use: exit $RC, '$ERR'"
else
	h_fail "listen address in use: want non-zero exit naming 127.0.0.1:$ETRND_PORT"; show
fi
h_check "first etrnd still exits 0 on SIGTERM" h_stop_etrnd

# 9. -h: usage on stdout, exit 0.
run_etrnd help -h
if [[ $RC -eq 0 && $OUT == usage:* && -z $ERR ]]; then
	h_pass "-h: exit 0, usage on stdout"
else
	h_fail "-h: want exit 0 and 'usage:' on stdout"; show
fi

# 10. Bad command line: exit 2, nothing on stdout, and on stderr getopt's
# line naming the option then exactly the usage -h printed; a stray
# argument: exit 2 and the usage alone.
USAGE=$OUT
run_etrnd badopt --no-such-option
want="$ETRND_BIN: invalid option -- '-'"$'\n'"$USAGE"
if [[ $RC -eq 2 && -z $OUT && $ERR == "$want" && $USAGE == usage:* ]]; then
	h_pass "unknown command-line option: exit 2, stderr is getopt's line and the usage"
else
	h_fail "unknown command-line option: want exit 2 and stderr exactly: $want"; show
fi
run_etrnd stray -t stray-argument
if [[ $RC -eq 2 && -z $OUT && $ERR == "$USAGE" ]]; then
	h_pass "stray argument: exit 2, stderr is exactly the usage"
else
	h_fail "stray argument: want exit 2 and stderr exactly the usage"; show
fi

# 11. README.md's configuration table lists exactly the keys of
# etc/etrnd.conf, with the same default wherever it shows a literal value.
if out=$("$H_PY" - "$ETRND_SOURCE_DIR" <<'PYEOF'
import re, sys
root = sys.argv[1]
conf = {}
for line in open(root + "/etc/etrnd.conf"):
    m = re.match(r"^#?([a-z_]+) = (.*)$", line.strip())
    if m:
        conf[m.group(1)] = m.group(2).strip()
readme = {}
for line in open(root + "/README.md"):
    m = re.match(r"^\| `([a-z_]+)` \| ([^|]*) \|", line)
    if m:
        readme[m.group(1)] = m.group(2).strip()
problems = []
for k in sorted(set(conf) ^ set(readme)):
    problems.append("%s only in %s" % (k, "etc/etrnd.conf" if k in conf else "README.md"))
for k in sorted(set(conf) & set(readme)):
    lit = re.fullmatch(r"`([^`]*)`", readme[k])
    if lit and lit.group(1) != conf[k]:
        problems.append("%s: README says %s, etc/etrnd.conf %s" % (k, lit.group(1), conf[k]))
print("; ".join(problems) if problems else "%d keys agree" % len(conf))
sys.exit(1 if problems or not conf else 0)
PYEOF
); then
	h_pass "README.md config table matches etc/etrnd.conf: $out"
else
	h_fail "README.md config table vs etc/etrnd.conf: $out"
fi

h_summary
