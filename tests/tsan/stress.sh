#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The ThreadSanitizer stress of make test (ctest case tsan_stress.domtab):
# builds only what it needs in build-tsan/ (TSAN_BUILD; the tree make tsan
# uses), checks that TSan reports a planted race (tsan_selfcheck), then runs
# tests/unit/domtab_stress.c for TSAN_STRESS_SWAPS table swaps, bounded by
# TSAN_STRESS_TIMEOUT_S. Exit 0 clean, 1 a race or a broken build, 77
# (ctest: skipped, the reason printed) where gcc cannot build and run a
# -fsanitize=thread program (no libtsan, or a kernel whose memory layout
# TSan refuses).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${TSAN_BUILD:-$ROOT/build-tsan}
TSAN_CC=${TSAN_CC:-gcc}
SWAPS=${TSAN_STRESS_SWAPS:-5000}
# Against a hang only: the 5000 swaps take about 3 s unloaded, 10 s loaded.
TIMEOUT_S=${TSAN_STRESS_TIMEOUT_S:-600}
# tsan_selfcheck's exit status when TSan reported its race (TSAN_OPTIONS
# exitcode, as tests/tsan/CMakeLists.txt sets it).
RACE_EXIT=66
SKIP_EXIT=77

skip() {
	echo "SKIPPED: tsan_stress: $*"
	exit $SKIP_EXIT
}

PROBE=$(mktemp -d "${TMPDIR:-/tmp}/etrnd-tsan-probe.XXXXXX")
trap 'rm -rf "$PROBE"' EXIT

# Can this compiler build and run a threaded TSan program here?
probe() {
	command -v "$TSAN_CC" >/dev/null || skip "$TSAN_CC not found"
	cat >"$PROBE/p.c" <<'EOF'
#include <pthread.h>
static void *run(void *a) { return a; }
int main(void) { pthread_t t; return pthread_create(&t, 0, run, 0) || pthread_join(t, 0); }
EOF
	if ! "$TSAN_CC" -fsanitize=thread -pthread "$PROBE/p.c" -o "$PROBE/p" >"$PROBE/log" 2>&1; then
		skip "$TSAN_CC -fsanitize=thread cannot build here: $(head -c 300 "$PROBE/log")"
	fi
	if ! "$PROBE/p" >"$PROBE/log" 2>&1; then
		skip "a -fsanitize=thread program does not run here: $(head -c 300 "$PROBE/log")"
	fi
}

# Configure build-tsan once (as make tsan does) and build the two programs,
# under a lock so a parallel make tsan or ctest run builds once.
build() {
	mkdir -p "$BUILD"
	(
		flock 9
		if [[ ! -f $BUILD/CMakeCache.txt ]]; then
			CC=$TSAN_CC cmake -S "$ROOT" -B "$BUILD" -DETRND_TSAN=ON \
				-DCMAKE_BUILD_TYPE=Debug >"$PROBE/cmake.log" 2>&1 ||
				{ cat "$PROBE/cmake.log"; exit 1; }
		fi
		cmake --build "$BUILD" -j"$(nproc)" --target tsan_selfcheck tsan_domtab_stress \
			>"$PROBE/build.log" 2>&1 || { tail -n 60 "$PROBE/build.log"; exit 1; }
	) 9>"$BUILD/.stress.lock"
}

probe
build
rc=0
TSAN_OPTIONS="exitcode=$RACE_EXIT" timeout 120 "$BUILD/tests/tsan/tsan_selfcheck" \
	>"$PROBE/self.log" 2>&1 || rc=$?
if [[ $rc != "$RACE_EXIT" ]] || ! grep -q "WARNING: ThreadSanitizer: data race" "$PROBE/self.log"; then
	echo "tsan_stress: the planted race was not reported (exit $rc): TSan is not checking"
	tail -n 40 "$PROBE/self.log"
	exit 1
fi
echo "tsan_stress: the planted race is reported (TSan checks)"
rc=0
TSAN_OPTIONS="exitcode=$RACE_EXIT halt_on_error=1 second_deadlock_stack=1" \
	timeout "$TIMEOUT_S" "$BUILD/tests/tsan/tsan_domtab_stress" "$SWAPS" || rc=$?
case $rc in
0) echo "tsan_stress: domtab_stress, $SWAPS swaps: no ThreadSanitizer report" ;;
124) echo "tsan_stress: domtab_stress did not end within ${TIMEOUT_S}s"; exit 1 ;;
*) echo "tsan_stress: domtab_stress failed (exit $rc; $RACE_EXIT: a TSan report)"; exit 1 ;;
esac
