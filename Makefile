# etrnd: a thin driver over CMake. On a fresh Debian 12 machine:
#   make run    install what is missing, build, run etrnd on 127.0.0.1:2525
#   make test   install what is missing, build with sanitizers, run every test
# Other targets: deps, build, bench, clean.

JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake
CTEST ?= ctest

.PHONY: all deps build run test bench bench-quick clean

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
# ctest exits non-zero if any test fails, and so does make.
test:
	$(MAKE) --no-print-directory deps
	$(CMAKE) -S . -B build-test -DETRND_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	$(CMAKE) --build build-test -j$(JOBS)
	$(CTEST) --test-dir build-test --output-on-failure -j$(JOBS)

# Benchmarks side by side with smtp-sink and a private Postfix; regenerates
# bench/RESULTS.md and its plots (~8 min; bench-quick: ~2 min, no RESULTS).
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
	rm -rf build build-test
