# etrnd: a thin driver over CMake. On a fresh Debian 12 machine:
#   make run    install what is missing, build, run etrnd on 127.0.0.1:2525
#   make test   install what is missing, build with sanitizers, run every test
# Other targets: deps, build, tsan, fuzz, coverage, bench, clean.

JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake
CTEST ?= ctest

.PHONY: all deps build run test tsan fuzz coverage bench bench-quick clean

all: build

deps:
	bash scripts/deps.sh

# Release build: build/etrnd, build/etrnd-spool.
build:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
	$(CMAKE) --build build -j$(JOBS)

run:
	$(MAKE) --no-print-directory deps
	$(MAKE) --no-print-directory build
	bash scripts/run.sh

# Test build: Debug with AddressSanitizer and UBSan, in build-test/.
# ctest exits non-zero if any test fails, and so does make. A case that
# could not run here (no clang for fuzz.*, no TSan for tsan_stress.*, a
# skipped Python test) is Skipped, and its "SKIPPED: reason" lines are
# repeated at the end.
test:
	$(MAKE) --no-print-directory deps
	$(CMAKE) -S . -B build-test -DETRND_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	$(CMAKE) --build build-test -j$(JOBS)
	@rc=0; $(CTEST) --test-dir build-test --output-on-failure -j$(JOBS) || rc=$$?; \
	  grep -h '^SKIPPED: ' build-test/Testing/Temporary/LastTest.log 2>/dev/null | sort -u; \
	  exit $$rc

# ThreadSanitizer build in build-tsan/ (ETRND_TSAN; gcc): the concurrency
# unit tests (label tsan: domtab, domtab_stress, addrlimit, authpool, resolver, drain, loop_adopt, sched, route, activator,
# spool) and the integration tests that run etrnd with threads = 2. Every
# TSan report (etrnd's too) lands in build-tsan/tsan-report.PID: any fails.
TSAN_IT ?= ^integration\.(smtplib|etrn|etrn_rate|drain_shutdown|crash|outbound|activator|etrnctl_etrn|reload|metrics|top|cluster|cluster_atrn|decommission|sentinel)$$
tsan:
	$(MAKE) --no-print-directory deps
	$(CMAKE) -S . -B build-tsan -DETRND_TSAN=ON -DCMAKE_BUILD_TYPE=Debug
	$(CMAKE) --build build-tsan -j$(JOBS)
	rm -f build-tsan/tsan-report.*
	TSAN_OPTIONS="log_path=$(CURDIR)/build-tsan/tsan-report second_deadlock_stack=1" \
	  $(CTEST) --test-dir build-tsan --output-on-failure -j$(JOBS) -L tsan
	TSAN_OPTIONS="log_path=$(CURDIR)/build-tsan/tsan-report second_deadlock_stack=1" \
	  $(CTEST) --test-dir build-tsan --output-on-failure -j$(JOBS) -R '$(TSAN_IT)'
	@if ls build-tsan/tsan-report.* >/dev/null 2>&1; then \
	  cat build-tsan/tsan-report.*; echo "make tsan: ThreadSanitizer reports above"; exit 1; fi
	@echo "make tsan: no ThreadSanitizer reports"

# Fuzz every libFuzzer target for FUZZ_SECONDS each (clang, build-fuzz/).
FUZZ_SECONDS ?= 60
fuzz:
	bash scripts/fuzz.sh all $(FUZZ_SECONDS)

# Coverage build in build-cov/ (--coverage, atomic counters; no sanitizers):
# runs the suite but the fuzz label, then prints gcovr's per-file table and a
# per-layer summary for core/ proto/ store/ admin/ (scripts/coverage.sh).
coverage:
	$(MAKE) --no-print-directory deps
	JOBS=$(JOBS) bash scripts/coverage.sh

# Benchmarks side by side with smtp-sink and a private Postfix; regenerates
# bench/RESULTS.md and its plots (~18 min here; bench-quick: ~4 min, no RESULTS).
bench:
	$(MAKE) --no-print-directory deps
	$(MAKE) --no-print-directory build
	command -v gnuplot >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox
	bash bench/run.sh

bench-quick:
	$(MAKE) --no-print-directory deps
	$(MAKE) --no-print-directory build
	command -v gnuplot >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox
	RESULTS=/tmp/etrnd-bench-quick.md bash bench/run.sh --quick

clean:
	rm -rf build build-test build-tsan build-fuzz build-cov
