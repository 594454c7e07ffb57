#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Recovery benchmark: generate a spool of MESSAGES messages of BODY bytes over
# SHARDS shards (etrnd-spoolgen), then time start-up recovery of it
# (etrnd-recoverbench: one thread per shard, as etrnd's engine threads do),
# first with the spool in the page cache (a restart), then, when this user may
# drop caches, cold (a reboot). Builds nothing: give the build directory of a
# release build (no sanitizers). The spool is removed on exit unless KEEP=1.
#
#   bench/recovery.sh [BUILD_DIR]          (default: build/)
#   MESSAGES=200000 SHARDS=2 BODY=4096 bench/recovery.sh /tmp/build-rel
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
MESSAGES=${MESSAGES:-1000000}
SHARDS=${SHARDS:-2}
BODY=${BODY:-1024}
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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/etrnd-recovery.XXXXXX")
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
