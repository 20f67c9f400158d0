#!/bin/sh
# SPDX-License-Identifier: MIT
# Instructions per object got and put back, in cells of DPDK's
# mempool_perf matrix, for iopool, the bounded iopool (limited to DPDK's
# pool size, as in the matrix) and DPDK, counted by callgrind in the
# benchmark's own loops (bench/mempool_perf.h), compiled as the benchmark
# is.
#
# usage: bench/mp_callgrind.sh path/to/iopool-mempool-perf [CELL ...]
#
# A CELL is KEEP:GET:PUT:KIND (KIND var or const); without any, the twelve
# const cells at n_keep 32 and 512 and a few var ones. For each cell and
# allocator, `iopool-mempool-perf --callgrind-loop ALLOC:CELL:CALLS` calls
# the loop once and twice (one round of 65536 objects a call); callgrind
# counts only inside the loop (--toggle-collect), so the difference is one
# round, without the first call's misses of an empty cache. iopool runs on
# bench_rseq_stand_in() (valgrind has no rseq), so its per-CPU sequences
# are what is counted. Counts are deterministic: unlike the matrix's rates
# they do not move with a noisy machine.
set -eu

bin=${1:?usage: $0 path/to/iopool-mempool-perf [KEEP:GET:PUT:KIND ...]}
shift
if ! command -v valgrind >/dev/null 2>&1; then
	echo "mp_callgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2
	exit 77
fi
if [ $# -eq 0 ]; then
	set -- 32:1:1:const 32:4:4:const 32:8:8:const 32:32:32:const \
		512:1:1:const 512:4:4:const 512:8:8:const 512:32:32:const \
		32:4:4:var 32:8:4:var 32:32:4:var 32:32:1:var 32:4:32:var 32:32:32:var
fi
. "$(dirname "$0")/cg_ir.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# ir ALLOC CELL CALLS: the instructions callgrind counted inside the loop.
ir() {
	case $1 in iopool | bounded) fn='iop_loop_*' ;; *) fn='dpdk_loop_*' ;; esac
	if ! cg_ir "$fn" "$tmp/cg.out" "$tmp/log" "$bin" --callgrind-loop "$1:$2:$3"; then
		echo "mp_callgrind.sh: $1 $2 failed:" >&2
		tail -n 5 "$tmp/log" >&2
		return 1
	fi
}

per_object() {
	a=$(ir "$1" "$2" 1) || return 1
	b=$(ir "$1" "$2" 2) || return 1
	awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b - a) / 65536 }'
}

# ratio A B: A / B as "1.23x", or "-" when either is missing.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "-" }'
}

printf '%-16s %10s %10s %10s %12s %14s\n' "cell" "iopool" "bounded" "dpdk" "iopool/dpdk" "bounded/iopool"
for cell in "$@"; do
	i=$(per_object iopool "$cell") || i=-
	b=$(per_object bounded "$cell") || b=-
	d=$(per_object dpdk "$cell") || d="n/a"
	printf '%-16s %10s %10s %10s %12s %14s\n' "$cell" "$i" "$b" "$d" "$(ratio "$i" "$d")" "$(ratio "$b" "$i")"
done
echo "(instructions per object got and put back, in the benchmark's loop; callgrind)"
