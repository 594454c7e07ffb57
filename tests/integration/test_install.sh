#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `cmake --install` as a packager runs it, into a temp prefix: the programs,
# the man pages, etc/etrnd/etrnd.conf (an installed node's paths, checked by
# the installed `etrnd -t`, never written over an operator's own) and the
# systemd unit (`systemd-analyze verify`). Each page passes `mandoc -T lint`
# and renders with `man -l`; etrnd.conf(5) names every key of core/config.c.
# Last line: "N passed, M failed"; non-zero exit on any failure.
set -euo pipefail

: "${ETRND_BIN:?set by ctest}"
: "${ETRND_SOURCE_DIR:?set by ctest}"
: "${ETRND_BUILD_DIR:?set by ctest}"
: "${CMAKE:?set by ctest}"
export ETRND_SPOOL_TOOL=${ETRND_SPOOL_TOOL:-unused}
# shellcheck source=etrnd_harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/etrnd_harness.sh"

P=$H_TMP/prefix
SRC=$ETRND_SOURCE_DIR
# Bound every tool run: a hung one fails the test instead of the ctest timeout.
T="timeout 120"

# --- the install itself ---------------------------------------------------
if $T "$CMAKE" --install "$ETRND_BUILD_DIR" --prefix "$P" >"$H_TMP/install.out" 2>&1; then
	h_pass "cmake --install --prefix exits 0"
else
	h_fail "cmake --install --prefix exits 0"; cat "$H_TMP/install.out"
	h_summary; exit 1
fi

for f in sbin/etrnd bin/etrnctl bin/etrnd-spool; do
	h_check "$f installed and executable" test -x "$P/$f"
done
quiet() { "$@" >/dev/null; }
h_check "installed etrnd -h runs" quiet $T "$P/sbin/etrnd" -h
h_check "installed etrnctl --help runs" quiet $T "$P/bin/etrnctl" --help

# Every page in etc/man is installed in its section's directory; the four the
# issue names must be among them.
for page in etrnd.8 etrnd.conf.5 etrnctl.1 etrnd-spool.1; do
	h_check "etc/man/$page exists" test -f "$SRC/etc/man/$page"
done
PAGES=()
for src in "$SRC"/etc/man/*.[1-9]; do
	name=$(basename "$src")
	dst=$P/share/man/man${name##*.}/$name
	PAGES+=("$dst")
	h_check "$name installed in man${name##*.}" cmp -s "$src" "$dst"
done

# --- the configuration ----------------------------------------------------
CONF=$P/etc/etrnd/etrnd.conf
h_check "etc/etrnd/etrnd.conf installed" test -f "$CONF"
want_line() { grep -qxF -- "$2" "$1"; }
h_check "installed spool_dir is under the prefix's var" \
	want_line "$CONF" "spool_dir = $P/var/spool/etrnd"
h_check "installed control_socket is under the prefix's run dir" \
	want_line "$CONF" "control_socket = $P/var/run/etrnd/etrnd.ctl"
h_check "installed redis is the system's" want_line "$CONF" "redis = 127.0.0.1:6379"
RC=0
$T "$P/sbin/etrnd" -c "$CONF" -t >"$H_TMP/t.out" 2>&1 || RC=$?
if [[ $RC -eq 0 && ! -s $H_TMP/t.out ]]; then
	h_pass "installed etrnd -t accepts the installed etrnd.conf"
else
	h_fail "installed etrnd -t accepts the installed etrnd.conf (exit $RC)"; cat "$H_TMP/t.out"
fi

# A second install keeps the operator's edited file and puts the new one
# beside it; an unedited one is simply rewritten (no .default).
$T "$CMAKE" --install "$ETRND_BUILD_DIR" --prefix "$P" >"$H_TMP/install2.out" 2>&1 || true
h_check "reinstall over an unedited etrnd.conf writes no .default" test ! -e "$CONF.default"
echo "threads = 1 # the operator's own" >>"$CONF"
cp "$CONF" "$H_TMP/edited.conf"
if $T "$CMAKE" --install "$ETRND_BUILD_DIR" --prefix "$P" >"$H_TMP/install3.out" 2>&1 &&
	cmp -s "$CONF" "$H_TMP/edited.conf" && test -f "$CONF.default"; then
	h_pass "reinstall keeps an edited etrnd.conf, new one as etrnd.conf.default"
else
	h_fail "reinstall keeps an edited etrnd.conf, new one as etrnd.conf.default"
	cat "$H_TMP/install3.out"
fi

# --- the man pages --------------------------------------------------------
# mandoc -T lint (every message level). A warning or worse fails, and so
# does a cross-reference to one of our own pages that this install lacks;
# style suggestions (a long source line, a reference to a page of another
# package, such as systemd(1), which depends on the machine) are shown only.
ours=" $(for p in "${PAGES[@]}"; do n=$(basename "$p"); printf '%s %s ' "${n%.*}" "${n##*.}"; done)"
lint_ok() {
	local page=$1 line bad=0 xr
	# -W style -M: cross-references are looked up in the installed tree
	# only (without -W style, mandoc searches its default path too).
	$T mandoc -T lint -W style -M "$P/share/man" "$page" >"$H_TMP/lint" 2>&1 || true
	while IFS= read -r line; do
		if [[ $line =~ referenced\ manual\ not\ found:\ Xr\ ([^ ]+)\ ([0-9]) ]]; then
			xr="${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
			if [[ $ours == *" $xr "* ]]; then
				echo "  $line (a page of ours, installed)"; bad=1
			fi
		elif [[ $line == *"outdated mandoc.db lacks"* ]]; then
			# The page was found, by file name, in a tree without
			# a makewhatis database: not a problem of the page.
			continue
		elif [[ $line == *": STYLE: "* ]]; then
			echo "  note: $line"
		else
			echo "  $line"; bad=1
		fi
	done <"$H_TMP/lint"
	return $bad
}
command -v mandoc >/dev/null || h_fail "mandoc installed (scripts/deps.sh installs it)"
command -v man >/dev/null || h_fail "man installed (scripts/deps.sh installs man-db)"
renders() {
	local page=$1 name
	name=$(basename "$page")
	name=${name%.*}
	MANWIDTH=80 $T man -l "$page" >"$H_TMP/render" 2>"$H_TMP/render.err" || return 1
	# The title line names the page, NAME says what it is, nothing on stderr.
	head -1 "$H_TMP/render" | grep -qi "^${name//./\\.}(" &&
		grep -q '^NAME' "$H_TMP/render" && [[ ! -s $H_TMP/render.err ]]
}
for page in "${PAGES[@]}"; do
	if command -v mandoc >/dev/null; then
		h_check "mandoc -T lint $(basename "$page")" lint_ok "$page"
	fi
	if command -v man >/dev/null; then
		h_check "man -l $(basename "$page") renders" renders "$page"
	fi
done

# etrnd.conf(5) has an entry (".It Cm KEY") for every key of config_keys[]
# and every activator field (activator.NAME.FIELD).
keys=$(sed -n '/^static const struct config_key config_keys\[\] = {/,/^};/p' "$SRC/core/config.c" |
	sed -n 's/^[[:space:]]*{ "\([a-z0-9_]*\)".*/\1/p')
fields=$(sed -n '/^static const struct ca_field ca_fields\[\] = {/,/^};/p' "$SRC/core/config_activator.c" |
	sed -n 's/^[[:space:]]*{ "\([a-z0-9_]*\)".*/\1/p')
nkeys=$(wc -w <<<"$keys")
nfields=$(wc -w <<<"$fields")
if [[ $nkeys -lt 60 || $nfields -lt 6 ]]; then
	h_fail "read the key tables (found $nkeys keys, $nfields activator fields: did their shape change?)"
fi
missing=
for k in $keys $(for f in $fields; do echo "activator.NAME.$f"; done); do
	grep -qE "^\.It Cm ${k//./\\.}( |$)" "$SRC/etc/man/etrnd.conf.5" || missing+=" $k"
done
if [[ -z $missing ]]; then
	h_pass "etrnd.conf.5 describes all $nkeys keys and $nfields activator fields"
else
	h_fail "etrnd.conf.5 lacks:$missing"
fi

# --- the systemd unit -----------------------------------------------------
UNIT=$P/lib/systemd/system/etrnd.service
if [[ ! -f $SRC/etc/systemd/etrnd.service ]]; then
	h_skip "etc/systemd/etrnd.service is not in this tree"
else
	h_check "etrnd.service installed in lib/systemd/system" test -f "$UNIT"
	h_check "the unit's ExecStart is the installed etrnd" \
		grep -qE "^ExecStart=$P/sbin/etrnd( |$)" "$UNIT"
	if command -v systemd-analyze >/dev/null; then
		# MANPATH: its Documentation=man:etrnd(8) ... must be found, in
		# this install.
		if MANPATH=$P/share/man $T systemd-analyze verify "$UNIT" >"$H_TMP/verify" 2>&1; then
			h_pass "systemd-analyze verify etrnd.service"
		else
			h_fail "systemd-analyze verify etrnd.service"; cat "$H_TMP/verify"
		fi
	else
		h_skip "systemd-analyze verify: no systemd-analyze on this machine"
	fi
fi

h_summary
