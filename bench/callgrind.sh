#!/bin/sh
# SPDX-License-Identifier: MIT
# Instructions per fast-path alloc+free pair, counted by callgrind (and per
# iop_buf_alloc+iop_buf_put pair of a refcounted buffer).
#
# usage: bench/callgrind.sh path/to/iopool-bench
#
# The bench's --callgrind-loop N runs exactly N iop_alloc+iop_free pairs of
# 2 KiB inside cg_fastpath_loop(); callgrind counts only inside that function
# (--collect-atstart=no --toggle-collect). Running it for two N and dividing
# the difference of the totals by the difference of N removes what does not
# grow with N: the first allocations' slow path (carving a chunk, filling a
# magazine) and the call itself. The loop's own instructions (counter,
# compare, branch, the NULL check) are in the figure, as they are in any
# caller's loop. --callgrind-loop-buf does the same for iop_buf_alloc+
# iop_buf_put in an IOP_F_REFCOUNT pool (cg_buf_loop), --callgrind-loop-dpdk
# for rte_mempool_get+put; --callgrind-loop-bulk and -dpdk-bulk count
# N objects through bulk calls of 64 (instructions per object).
# --callgrind-loop-heap64 and -heap64-prof count the heap's 64 B pair,
# plain and compiled with IOP_PROFILE: the profiling cost.
# Instruction counts are deterministic: unlike the timings they do not move
# with a noisy machine, which makes them a regression guard.
set -eu

bench=${1:?usage: $0 path/to/iopool-bench}
N1=${CALLGRIND_N1:-100000}
N2=${CALLGRIND_N2:-200000}

if ! command -v valgrind >/dev/null 2>&1; then
	echo "callgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2
	exit 77
fi
if [ ! -x "$bench" ]; then
	echo "callgrind.sh: $bench: not an executable" >&2
	exit 2
fi

. "$(dirname "$0")/cg_ir.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# total_ir MODE FUNCTION N: the Ir callgrind counted inside FUNCTION.
total_ir() {
	cg_ir "$2" "$tmp/callgrind.$2.$3" "$tmp/log" "$bench" "$1" "$3"
}

# report NAME MODE FUNCTION [WHAT]
report() {
	if ! ir1=$(total_ir "$2" "$3" "$N1") || ! ir2=$(total_ir "$2" "$3" "$N2"); then
		return 1
	fi
	echo "$1: $3: N=$N1 Ir=$ir1, N=$N2 Ir=$ir2"
	awk -v a="$ir1" -v b="$ir2" -v n1="$N1" -v n2="$N2" -v name="$1" \
		-v what="${4:-fast-path pair}" \
		'BEGIN { printf "%s: instructions per %s: %.2f\n", name, what, (b - a) / (n2 - n1) }'
}

status=0
if ! report iopool --callgrind-loop cg_fastpath_loop; then
	echo "callgrind.sh: iopool: failed:" >&2
	tail -n 20 "$tmp/log" >&2
	status=1
fi
if ! report iopool --callgrind-loop-buf cg_buf_loop "iop_buf_alloc+iop_buf_put pair"; then
	echo "callgrind.sh: iopool (refcounted buffers): failed:" >&2
	tail -n 20 "$tmp/log" >&2
	status=1
fi

# DPDK: only when the bench was built with it (exit 77 says it was not).
if ! report iopool --callgrind-loop-bounded cg_fastpath_loop "pair on a bounded pool"; then
	echo "callgrind.sh: iopool (bounded pool): failed:" >&2
	tail -n 20 "$tmp/log" >&2
	status=1
fi

# Bulk calls of 64 (DPDK's burst): instructions per object, alloc+free.
if ! report iopool --callgrind-loop-bulk cg_bulk_loop "object, iop_alloc_bulk+iop_free_bulk of 64"; then
	echo "callgrind.sh: iopool (bulk): failed:" >&2
	tail -n 20 "$tmp/log" >&2
	status=1
fi

# The heap's pair against malloc's for 12 KiB (glibc, and tcmalloc preloaded
# when it is installed).
if ! report iopool --callgrind-loop-heap cg_heap_loop "iop_heap_alloc+iop_heap_free pair (12 KiB)"; then
	echo "callgrind.sh: iopool (heap): failed:" >&2
	tail -n 20 "$tmp/log" >&2
	status=1
fi
# The profiling cost: the heap's 64 B pair, plain and with IOP_PROFILE.
if ! report iopool --callgrind-loop-heap64 cg_heap64_loop "iop_heap_alloc+iop_heap_free pair (64 B)"; then
	echo "callgrind.sh: iopool (heap, 64 B): failed:" >&2
	tail -n 20 "$tmp/log" >&2
	status=1
fi
if ! report iopool --callgrind-loop-heap64-prof cg_heap64_prof_loop \
	"profiled iop_heap_alloc+iop_heap_free pair (64 B, IOP_PROFILE)"; then
	echo "callgrind.sh: iopool (heap, 64 B, profiled): failed:" >&2
	tail -n 20 "$tmp/log" >&2
	status=1
fi
report glibc --callgrind-loop-malloc cg_malloc_loop "malloc+free pair (12 KiB)" || {
	echo "glibc: skipped: $(tail -n 1 "$tmp/log")"
}
tc=$(ldconfig -p 2>/dev/null | sed -n 's/.*libtcmalloc_minimal\.so\.4 .*=> //p' | head -n 1)
if [ -n "$tc" ]; then
	CG_PRELOAD=$tc
	report tcmalloc --callgrind-loop-malloc cg_malloc_loop "malloc+free pair (12 KiB)" || {
		echo "tcmalloc: skipped: $(tail -n 1 "$tmp/log")"
	}
	CG_PRELOAD=
else
	echo "tcmalloc: not installed"
fi

if "$bench" --callgrind-loop-dpdk 0 >"$tmp/probe" 2>&1; then
	if ! report dpdk --callgrind-loop-dpdk cg_dpdk_loop; then
		echo "dpdk: skipped: EAL or the pool did not run under valgrind:"
		tail -n 5 "$tmp/log"
	fi
else
	echo "dpdk: skipped: $(tail -n 1 "$tmp/probe")"
fi
if "$bench" --callgrind-loop-dpdk-bulk 0 >"$tmp/probe" 2>&1; then
	report dpdk --callgrind-loop-dpdk-bulk cg_dpdk_bulk_loop "object, rte_mempool_get_bulk+put_bulk of 64" || {
		echo "dpdk (bulk): skipped:"
		tail -n 5 "$tmp/log"
	}
fi
exit $status
