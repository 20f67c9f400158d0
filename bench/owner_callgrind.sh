#!/bin/sh
# SPDX-License-Identifier: MIT
# Instructions per object of the owner check of a freed array, in each form
# (bench/owner_bench.c), counted by callgrind inside cg_owner_loop.
#
# usage: bench/owner_callgrind.sh path/to/iopool-owner-bench [N...]
#
# Each form checks one array of N pointers (default 8 16 32 64 256) I1 and I2
# times; (Ir(I2) - Ir(I1)) / ((I2 - I1) * N) is the count per object, the
# loop's own increment, compare and branch included, the set-up excluded.
set -eu

bench=${1:?usage: $0 path/to/iopool-owner-bench [N...]}
shift
ns=${*:-8 16 32 64 256}
I1=${CALLGRIND_I1:-1000}
I2=${CALLGRIND_I2:-2000}

if ! command -v valgrind >/dev/null 2>&1; then
	echo "owner_callgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2
	exit 77
fi
. "$(dirname "$0")/cg_ir.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# ir FORM N STRIDE LAYOUT ITERS: the Ir counted inside cg_owner_loop.
ir() {
	cg_ir cg_owner_loop "$tmp/cg.out" "$tmp/log" "$bench" --callgrind "$@" || {
		cat "$tmp/log" >&2
		return 1
	}
}

forms="owned_all scalar sse2 avx2 owned_array"
grep -qw avx2 /proc/cpuinfo || forms="owned_all scalar sse2 owned_array"
for stride in 2048 2064; do
	for layout in 0 1; do
		[ "$layout" = 0 ] && what="one chunk" || what="two chunks"
		printf '\nstride %s, %s: instructions per object\n%-12s' "$stride" "$what" form
		for n in $ns; do printf '  n=%-5s' "$n"; done
		printf '\n'
		for f in $forms; do
			printf '%-12s' "$f"
			for n in $ns; do
				a=$(ir "$f" "$n" "$stride" "$layout" "$I1")
				b=$(ir "$f" "$n" "$stride" "$layout" "$I2")
				awk -v a="$a" -v b="$b" -v n="$n" -v i1="$I1" -v i2="$I2" \
					'BEGIN { printf "  %7.2f", (b - a) / ((i2 - i1) * n) }'
			done
			printf '\n'
		done
	done
done
