# SPDX-License-Identifier: MIT
# iopool: the front door. CMake does the building; this file picks the build
# directory and options, installs what is missing, and runs things.
#
#   make test                  Release build in build/, then ctest
#   make test SANITIZE=address ASan+UBSan, RelWithDebInfo, in build-asan/
#   make test SANITIZE=thread  TSan, RelWithDebInfo, in build-tsan/
#   make test DEBUG=2          IOP_DEBUG=2, in build-debug2/ (build-asan-debug2/ ...)
#   make bench                 benchmarks (Release, build/), then callgrind
#   make callgrind             only the callgrind instruction counts
#   make plots                 only the SVG plots in docs/, from build/*.json
#   make install               build and install (PREFIX=/usr/local, DESTDIR)
#   make all / make clean
#
# Variables: SANITIZE=address|thread, DEBUG=0..3, BUILD=dir (overrides the
# directory chosen from SANITIZE and DEBUG), BUILD_TYPE, CTEST_ARGS, BENCH_ARGS,
# VMALLOC_ARGS (for iopool-vmalloc-bench, e.g. 'run_test_mask=7 nr_threads=64'),
# CMAKE_ARGS (extra -D options), PREFIX, DESTDIR, JOBS (default: nproc),
# CC (as CMake reads it). CI=true adds -DIOP_WERROR=ON.

SHELL := /bin/bash
.DEFAULT_GOAL := all
# cmake --build runs make again; its "Entering directory" lines are noise.
MAKEFLAGS += --no-print-directory

SANITIZE ?=
DEBUG ?= 0
PREFIX ?= /usr/local
DESTDIR ?=
CTEST_ARGS ?=
BENCH_ARGS ?=
VMALLOC_ARGS ?=
CMAKE_ARGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

ifeq ($(SANITIZE),)
  build_dir := build
  default_build_type := Release
else ifeq ($(SANITIZE),address)
  build_dir := build-asan
  default_build_type := RelWithDebInfo
else ifeq ($(SANITIZE),thread)
  build_dir := build-tsan
  default_build_type := RelWithDebInfo
else
  $(error SANITIZE must be empty, 'address' or 'thread', not '$(SANITIZE)')
endif

ifeq ($(filter $(DEBUG),0 1 2 3),)
  $(error DEBUG must be 0, 1, 2 or 3, not '$(DEBUG)')
endif
ifneq ($(DEBUG),0)
  build_dir := $(build_dir)-debug$(DEBUG)
endif

BUILD ?= $(build_dir)
BUILD_TYPE ?= $(default_build_type)

ifeq ($(CI),true)
  werror := ON
else
  werror := OFF
endif

# Everything the cache must agree with is passed on every configure, so a
# build directory never keeps a stale option from an earlier run. The bench is
# built in every mode: its smoke test is one of the tests (sanitized builds
# leave DPDK out by themselves).
cmake_opts := \
	-DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	-DCMAKE_INSTALL_PREFIX=$(PREFIX) \
	-DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
	-DIOP_DEBUG=$(DEBUG) \
	-DIOP_SANITIZE=$(SANITIZE) \
	-DIOP_WERROR=$(werror) \
	-DIOP_BUILD_TESTS=ON \
	-DIOP_BUILD_BENCH=ON \
	$(CMAKE_ARGS)

# Sanitized test programs run through scripts/sanitizer-run.sh: the gcc 12 /
# clang 14 sanitizer runtimes abort ("ThreadSanitizer: unexpected memory
# mapping", "AddressSanitizer:DEADLYSIGNAL") when the kernel's
# vm.mmap_rnd_bits is above 28. The script probes, and if needed runs ctest
# under `setarch -R` or (root) lowers mmap_rnd_bits; its header has the numbers.
ifneq ($(SANITIZE),)
  test_runner := scripts/sanitizer-run.sh $(SANITIZE)
else
  test_runner :=
endif

BENCH_BIN := $(BUILD)/bench/iopool-bench

.PHONY: all test bench callgrind plots install clean deps deps-bench configure build

all: build

deps:
	@SANITIZE='$(SANITIZE)' scripts/deps.sh test

deps-bench:
	@scripts/deps.sh bench

# Re-running cmake on a configured directory is cheap (well under a second)
# and applies any changed variable.
configure:
	cmake -S . -B $(BUILD) $(cmake_opts)

build: deps configure
	cmake --build $(BUILD) -j $(JOBS)

# The ctest summary is the last thing printed.
test: build
	$(test_runner) ctest --test-dir $(BUILD) --output-on-failure $(CTEST_ARGS)

bench: deps-bench build
	$(if $(SANITIZE),@echo "warning: benchmarking a SANITIZE=$(SANITIZE) build" >&2)
	$(BENCH_BIN) --json $(BUILD)/bench-results.json --markdown $(BUILD)/bench-results.md $(BENCH_ARGS)
	$(BUILD)/bench/iopool-spike --json $(BUILD)/spike-results.json
	$(BUILD)/bench/iopool-vmalloc-bench --json $(BUILD)/vmalloc-results.json --markdown $(BUILD)/vmalloc-results.md $(VMALLOC_ARGS)
	$(BUILD)/bench/iopool-uptime --json $(BUILD)/uptime-results.json
	$(BUILD)/bench/iopool-mempool-perf --json $(BUILD)/mempool-perf-results.json --markdown $(BUILD)/mempool-perf-results.md
	$(BUILD)/bench/iopool-owner-bench --json $(BUILD)/owner-bench-results.json
	$(BUILD)/bench/iopool-cached-bench --json $(BUILD)/cached-results.json
	@rm -f $(BUILD)/udp-rx-results.jsonl
	@if [ -x $(BUILD)/examples/udp_rx/iop-udp-rx ]; then \
		echo "$(BUILD)/examples/udp_rx/iop-udp-rx --json $(BUILD)/udp-rx-results.jsonl"; \
		$(BUILD)/examples/udp_rx/iop-udp-rx --json $(BUILD)/udp-rx-results.jsonl || [ $$? -eq 77 ]; \
	else echo "iop-udp-rx not built (liburing-dev missing): skipping the UDP receive run"; fi
	@rm -f $(BUILD)/xdp-rx-results.jsonl $(BUILD)/tcp-zc-results.jsonl
	@if [ -x $(BUILD)/examples/xdp_rx/iop-xdp-rx ]; then \
		echo "$(BUILD)/examples/xdp_rx/iop-xdp-rx --packets 300000 --json $(BUILD)/xdp-rx-results.jsonl"; \
		$(BUILD)/examples/xdp_rx/iop-xdp-rx --packets 300000 --json $(BUILD)/xdp-rx-results.jsonl || [ $$? -eq 77 ]; \
	else echo "iop-xdp-rx not built (libxdp-dev, libbpf-dev or clang missing): skipping the AF_XDP run"; fi
	@if [ -x $(BUILD)/examples/tcp_zc/iop-tcp-zc ]; then \
		for sz in 4096 65536; do \
		echo "$(BUILD)/examples/tcp_zc/iop-tcp-zc --resp-size $$sz --json $(BUILD)/tcp-zc-results.jsonl"; \
		$(BUILD)/examples/tcp_zc/iop-tcp-zc --resp-size $$sz --json $(BUILD)/tcp-zc-results.jsonl || [ $$? -eq 77 ] || exit 1; \
		done; \
	else echo "iop-tcp-zc not built (liburing-dev missing): skipping the zero-copy TCP run"; fi
	@if command -v valgrind >/dev/null 2>&1; then \
		echo "sh bench/callgrind.sh $(BENCH_BIN)"; sh bench/callgrind.sh $(BENCH_BIN); \
		echo "sh bench/mp_callgrind.sh $(BUILD)/bench/iopool-mempool-perf"; \
		sh bench/mp_callgrind.sh $(BUILD)/bench/iopool-mempool-perf; \
	else \
		echo "valgrind not installed: skipping callgrind (scripts/deps.sh bench installs it)"; \
	fi
	@$(MAKE) plots

# SVG charts in docs/ from the JSON the benchmarks wrote (bench/plot.sh).
plots:
	@if command -v gnuplot >/dev/null 2>&1 && command -v jq >/dev/null 2>&1; then \
		echo "sh bench/plot.sh $(BUILD) docs"; sh bench/plot.sh $(BUILD) docs; \
	else \
		echo "gnuplot or jq not installed: skipping the plots (scripts/deps.sh bench installs them)"; \
	fi

callgrind:
	@if [ ! -x $(BENCH_BIN) ]; then echo "$(BENCH_BIN) is not built: run 'make bench' or 'make all' first" >&2; exit 1; fi
	sh bench/callgrind.sh $(BENCH_BIN)

# Only the libraries and the tools need building to install (not the tests or
# the bench). Installing never installs system packages: no deps here (only
# test and bench run scripts/deps.sh); a missing build tool fails the build.
install: configure
	cmake --build $(BUILD) -j $(JOBS) --target iopool iopool_static iopool-top man
	DESTDIR='$(DESTDIR)' cmake --install $(BUILD)

# The standard build directories, CI's logs, and BUILD when it is a CMake build
# directory (never some other directory that BUILD happens to name).
clean:
	rm -rf build build-asan* build-tsan* build-debug* build-ci
	@if [ -f '$(BUILD)/CMakeCache.txt' ]; then echo "rm -rf $(BUILD)"; rm -rf '$(BUILD)'; fi
