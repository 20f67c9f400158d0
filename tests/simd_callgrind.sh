#!/bin/sh
# SPDX-License-Identifier: MIT
# The inline bursts follow the pool's simd byte: callgrind counts the
# instructions of one iop_alloc_bulk()+iop_free_bulk() burst (of 4, 8, 16
# and 64 objects, a count the compiler does not know) with the byte as the
# library set it and with it cleared (tests/simd_count.c). Cleared, the
# bursts run their SSE2 paths, which take more instructions than the AVX2
# ones at every one of these counts; a burst that ignored the byte (and
# asked the CPU itself, or always ran one path) would count the same
# either way, and this fails.
#
#   simd_callgrind.sh path/to/simd_count
#
# Each count is run for N1 and N2 bursts, and the difference divided by
# N2 - N1, so that the first burst's slow path is not in the figure.
# Exit 77 (skipped) without valgrind, where the library found no AVX2
# (the byte has nothing to choose), without the per-CPU caches, or when
# the program was compiled for AVX (then the bursts do not read the byte).
set -eu

bin=${1:?usage: $0 path/to/simd_count}
N1=1000
N2=2000
# Cleared must cost at least this many percent more (measured in the
# Release build: 40% at 4 and 8 objects, 60% at 16, 282% at 64).
MIN_PCT=20

if ! command -v valgrind >/dev/null 2>&1; then
	echo "valgrind is not installed (apt-get install valgrind): skipped"
	exit 77
fi
. "$(dirname "$0")/../bench/cg_ir.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# ir MODE COUNT N: instructions counted inside cg_simd_loop.
ir() {
	if ! cg_ir cg_simd_loop "$tmp/cg.$1.$2.$3" "$tmp/log" "$bin" "$1" "$2" "$3"; then
		cat "$tmp/log" >&2
		echo "simd_callgrind.sh: $bin $1 $2 $3 failed under callgrind" >&2
		exit 1
	fi
}

# What the library found, as the program prints it: "simd byte B, cache mode M".
line=$(valgrind --tool=none -q "$bin" set 4 1 | head -n 1)
byte=$(echo "$line" | sed -n 's/^simd byte \([0-9]*\),.*/\1/p')
mode=$(echo "$line" | sed -n 's/.*cache mode \([a-z]*\).*/\1/p')
echo "under valgrind: $line"
case $line in
*"compiled for AVX"*)
	echo "the program was compiled for AVX (-mavx, -march=native): the bursts do not ask the byte: skipped"
	exit 77
	;;
esac
if [ "$mode" != cpu ]; then
	echo "the per-CPU caches are off (the inline bursts never run): skipped"
	exit 77
fi
# IOP__SIMD_AVX2 is bit 1 (include/iopool/inline.h).
if [ $((byte & 2)) -eq 0 ]; then
	echo "the library found no AVX2 here: the byte has nothing to choose: skipped"
	exit 77
fi

fail=0
for count in 4 8 16 64; do
	per=""
	for m in set cleared; do
		a=$(ir $m $count $N1)
		b=$(ir $m $count $N2)
		per="$per $(((b - a) / (N2 - N1)))"
	done
	# shellcheck disable=SC2086 # two numbers
	set -- $per
	pct=$((($2 - $1) * 100 / $1))
	verdict=ok
	if [ "$pct" -lt "$MIN_PCT" ]; then
		verdict="FAIL: cleared should cost at least $MIN_PCT% more"
		fail=1
	fi
	printf 'burst of %2u: %5u instructions with the byte set, %5u cleared (+%u%%) %s\n' \
		"$count" "$1" "$2" "$pct" "$verdict"
done
exit $fail
