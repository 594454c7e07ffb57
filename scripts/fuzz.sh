#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run a libFuzzer target (tests/fuzz/fuzz_TARGET.c) or all of them, one after
# the other, for SECONDS each:  scripts/fuzz.sh TARGET|all SECONDS
# Builds the targets with clang in build-fuzz/ (FUZZ_BUILD) when needed, under
# a lock so parallel calls (ctest -j) build once. The seed corpus
# tests/fuzz/corpus/TARGET/ is read only; new entries go to a scratch dir
# (FUZZ_SCRATCH, default build-fuzz/scratch/TARGET). On a crash, leak, timeout
# or OOM the input is copied into tests/fuzz/corpus/TARGET/ as a regression
# input and the script exits 1. Without clang (FUZZ_CC), or with a clang that
# cannot link a libFuzzer target, it prints "SKIPPED: ..." with the reason and
# exits 77 (ctest: skipped).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz}
FUZZ_CC=${FUZZ_CC:-clang}
# A single input taking longer than this (s) is a defect (loaded machine:
# generous); RSS over this (MB) is one too.
FUZZ_TIMEOUT_S=${FUZZ_TIMEOUT_S:-25}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
SKIP_EXIT=77

usage() {
	echo "usage: scripts/fuzz.sh TARGET|all SECONDS  (targets: $(targets | tr '\n' ' '))" >&2
	exit 2
}

targets() {
	local f
	for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
		f=${f##*/fuzz_}
		echo "${f%.c}"
	done
}

skip() {
	echo "SKIPPED: fuzz.sh: $*"
	exit $SKIP_EXIT
}

# Can FUZZ_CC link a libFuzzer target with our sanitizers? Asked once per
# build dir (the answer is kept in .fuzzer-ok).
probe() {
	local dir
	[[ -f $BUILD/.fuzzer-ok ]] && return 0
	dir=$(mktemp -d "${TMPDIR:-/tmp}/etrnd-fuzz-probe.XXXXXX")
	printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
		>"$dir/p.c"
	if ! "$FUZZ_CC" -fsanitize=fuzzer,address,undefined "$dir/p.c" -o "$dir/p" \
		>"$dir/log" 2>&1; then
		local why
		why=$(head -c 300 "$dir/log")
		rm -rf "$dir"
		skip "$FUZZ_CC cannot link a libFuzzer target: $why"
	fi
	rm -rf "$dir"
	touch "$BUILD/.fuzzer-ok"
}

build() {
	command -v "$FUZZ_CC" >/dev/null ||
		skip "$FUZZ_CC not found: fuzz targets not built (apt-get install clang)"
	mkdir -p "$BUILD"
	(
		flock 9
		probe
		if [[ ! -f $BUILD/CMakeCache.txt ]]; then
			CC=$FUZZ_CC cmake -S "$ROOT" -B "$BUILD" -DETRND_FUZZ=ON \
				-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
		fi
		cmake --build "$BUILD" -j"$(nproc)" --target "${@/#/fuzz_}" >/dev/null
	) 9>"$BUILD/.lock"
}

# run TARGET SECONDS: 0 clean, 1 a crash (its input kept in the corpus).
run() {
	local t=$1 secs=$2 seeds=$ROOT/tests/fuzz/corpus/$1
	local scratch=${FUZZ_SCRATCH:-$BUILD/scratch}/$t art log rc=0 f
	art=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-$t.XXXXXX")
	log=$art/log
	mkdir -p "$scratch" "$seeds"
	"$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout="$FUZZ_TIMEOUT_S" \
		-rss_limit_mb="$FUZZ_RSS_MB" -artifact_prefix="$art/" -print_final_stats=1 \
		"$scratch" "$seeds" >"$log" 2>&1 || rc=$?
	grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|INFO: Loaded|#[0-9]+ *DONE)' "$log" |
		sed "s/^/fuzz $t: /" || true
	for f in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-* "$art"/slow-unit-*; do
		[[ -e $f ]] || continue
		[[ ${f##*/} == slow-unit-* ]] && { rm -f "$f"; continue; }
		cp "$f" "$seeds/"
		echo "fuzz $t: FOUND ${f##*/}: kept as tests/fuzz/corpus/$t/${f##*/}" >&2
		rc=1
	done
	if [[ $rc != 0 ]]; then
		tail -n 60 "$log" >&2
		rm -rf "$art"
		return 1
	fi
	rm -rf "$art"
	return 0
}

[[ $# == 2 && $2 =~ ^[0-9]+$ ]] || usage
if [[ $1 == all ]]; then
	mapfile -t list < <(targets)
else
	[[ -f $ROOT/tests/fuzz/fuzz_$1.c ]] || usage
	list=("$1")
fi
build "${list[@]}"
fail=0
for t in "${list[@]}"; do
	run "$t" "$2" || fail=1
done
exit $fail
