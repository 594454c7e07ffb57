#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Recovery benchmark: generate a spool of MESSAGES messages of BODY bytes over
# SHARDS shards (etrnd-spoolgen; default 10,000,000 x 64 bytes, about 1.6 GiB
# of segments: issue 17 asks for a 10M-message spool recovered in under
# 10 s with at most 64 index bytes per held message), then time start-up
# recovery of it
# (etrnd-recoverbench: one thread per shard, as etrnd's engine threads do),
# first with the spool in the page cache (a restart), then, when this user may
# drop caches, cold (a reboot). Builds nothing: give the build directory of a
# release build (no sanitizers). The spool is removed on exit unless KEEP=1.
#
#   bench/recovery.sh [BUILD_DIR]          (default: build/)
#   MESSAGES=200000 SHARDS=2 BODY=4096 bench/recovery.sh /tmp/build-rel
# It refuses (exit 1) when the spool's file system has less free space than
# twice the spool's estimated size.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
MESSAGES=${MESSAGES:-10000000}
SHARDS=${SHARDS:-2}
BODY=${BODY:-64}
DONE_PCT=${DONE_PCT:-10}
ROUNDS=${ROUNDS:-3}
KEEP=${KEEP:-0}

GEN=$BUILD/etrnd-spoolgen
RB=$BUILD/etrnd-recoverbench
for f in "$GEN" "$RB"; do
	[[ -x $f ]] || { echo "recovery.sh: $f not found (cmake --build $BUILD --target etrnd-spoolgen etrnd-recoverbench)" >&2; exit 1; }
done
if grep -q '^ETRND_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
	echo "recovery.sh: $BUILD is a sanitizer build; use a release build" >&2
	exit 1
fi

# A MSG record is about 100 bytes of header and envelope plus the body
# (spoolgen: 1-3 recipients); DONE records add DONE_PCT% x 48 bytes.
EST_KIB=$(( (MESSAGES * (BODY + 120) + MESSAGES * DONE_PCT / 100 * 48) / 1024 ))
PARENT=${TMPDIR:-/tmp}
AVAIL_KIB=$(df -Pk "$PARENT" | awk 'NR == 2 { print $4 }')
if (( AVAIL_KIB < 2 * EST_KIB )); then
	echo "recovery.sh: $PARENT has $((AVAIL_KIB / 1024)) MiB free, the spool needs about $((EST_KIB / 1024)) MiB (twice that wanted): set TMPDIR, or lower MESSAGES or BODY" >&2
	exit 1
fi

WORK=$(mktemp -d "$PARENT/etrnd-recovery.XXXXXX")
cleanup() { [[ $KEEP == 1 ]] && echo "spool kept in $WORK" || rm -rf "$WORK"; }
trap cleanup EXIT

echo "== generating: $MESSAGES messages x $BODY bytes, $SHARDS shards, ${DONE_PCT}% with a DONE"
/usr/bin/time -f "spoolgen: %e s" "$GEN" -s "$SHARDS" -n "$MESSAGES" -b "$BODY" -D "$DONE_PCT" "$WORK/spool"
du -sh "$WORK/spool"
sync

for r in $(seq 1 "$ROUNDS"); do
	echo "== warm (page cache) round $r"
	"$RB" "$WORK/spool"
done
if [[ -w /proc/sys/vm/drop_caches ]]; then
	for r in $(seq 1 "$ROUNDS"); do
		echo "== cold (caches dropped) round $r"
		sync
		echo 3 > /proc/sys/vm/drop_caches
		"$RB" "$WORK/spool"
	done
else
	echo "== cold: skipped (cannot write /proc/sys/vm/drop_caches)"
fi
