#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make coverage: build with --coverage in build-cov/ (ETRND_COVERAGE), run the
# whole ctest suite but the fuzz label (those are clang/libFuzzer builds of
# their own, in build-fuzz/), then print gcovr's per-file table and a
# per-layer summary (lines, branches, functions) for core/ proto/ store/ admin/.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
BUILD=${COV_BUILD:-build-cov}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
CMAKE=${CMAKE:-cmake}
CTEST=${CTEST:-ctest}
# COV_CTEST_ARGS: extra ctest arguments, e.g. "-R unit\." for a quick look.
COV_CTEST_ARGS=${COV_CTEST_ARGS:-}
LAYERS=(core proto store admin)

command -v gcovr >/dev/null || { echo "coverage.sh: gcovr missing: make deps" >&2; exit 1; }

$CMAKE -S . -B "$BUILD" -DETRND_COVERAGE=ON -DCMAKE_BUILD_TYPE=Debug || exit 1
$CMAKE --build "$BUILD" -j"$JOBS" || exit 1

# Counters from an earlier run would add to this one's: start every counter
# file empty (libgcov writes an empty one afresh) and writable by all, since
# etrnd started as root with user = nobody (test_privs) writes its counts
# after it dropped root, and a root-owned 0644 file would lose them.
find "$BUILD" -name '*.gcda' -delete
find "$BUILD" -name '*.gcno' | while read -r f; do
	: >"${f%.gcno}.gcda" && chmod 666 "${f%.gcno}.gcda"
done
# shellcheck disable=SC2086
$CTEST --test-dir "$BUILD" --output-on-failure -j"$JOBS" -LE fuzz $COV_CTEST_ARGS
ctest_rc=$?

filters=()
for l in "${LAYERS[@]}"; do filters+=(--filter "$l/"); done
gcovr -r . --object-directory "$BUILD" "${filters[@]}" -j "$JOBS" \
	--print-summary --txt "$BUILD/coverage.txt" \
	--json-summary-pretty --json-summary "$BUILD/coverage-summary.json" || exit 1
cat "$BUILD/coverage.txt"

# Per layer: sum the files' counts (gcovr prints only the grand total).
python3 - "$BUILD/coverage-summary.json" "${LAYERS[@]}" <<'PY'
import json, sys
files = json.load(open(sys.argv[1]))["files"]
rows = []
for layer in sys.argv[2:] + ["all"]:
    t = {k: 0 for k in ("line_total", "line_covered", "branch_total",
                        "branch_covered", "function_total", "function_covered")}
    for f in files:
        if layer == "all" or f["filename"].startswith(layer + "/"):
            for k in t:
                t[k] += f[k]
    pct = lambda c, n: 100.0 * c / n if n else 100.0
    rows.append((layer, t))
print("%-6s %18s %18s %16s" % ("layer", "lines", "branches", "functions"))
for layer, t in rows:
    print("%-6s %6d/%-6d %5.1f%% %6d/%-6d %5.1f%% %5d/%-5d %5.1f%%" % (
        layer + "/" if layer != "all" else "all",
        t["line_covered"], t["line_total"], pct(t["line_covered"], t["line_total"]),
        t["branch_covered"], t["branch_total"], pct(t["branch_covered"], t["branch_total"]),
        t["function_covered"], t["function_total"], pct(t["function_covered"], t["function_total"])))
PY
echo "coverage.sh: per-file table in $BUILD/coverage.txt, JSON in $BUILD/coverage-summary.json"
if [[ $ctest_rc -ne 0 ]]; then
	echo "coverage.sh: some tests failed (ctest exit $ctest_rc): the numbers above miss what they did not run" >&2
fi
exit "$ctest_rc"
