#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Two versions of iopool's inline fast paths side by side, in one process,
# over four code layouts (bench/inline_ab.c says why):
#
#   sh bench/inline_ab.sh [OLD [NEW]] [-- inline-ab options]
#
# OLD is a git revision (default HEAD), NEW a revision or, by default, the
# working tree; only their include/ directories are used. Both are linked
# with build/libiopool.a (make build first), so they must agree on
# IOP__INLINE_ABI. For each layout (the loops moved by PADS bytes, default
# "0 16 32 48") it builds build/inline-ab/ab-PAD and prints its table;
# then, per cell, the ratios new/old of every layout and their median,
# and the geometric mean of each layout. The options after -- go to the
# driver: --reps N (default 15), --size BYTES, --cells KEEP:GET:PUT,...
# Environment: BUILD (default build), CC (default cc), PADS, OUT (where
# the binaries go; default BUILD/inline-ab).
# Exit status: 0; 1 when a build or a run failed; 2 usage; 77 outside a
# git checkout.
set -eu

root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null) || {
	echo "inline_ab.sh: $(dirname "$0") is not in a git checkout: no revisions to compare" >&2
	exit 77
}
build=${BUILD:-$root/build}
case $build in /*) ;; *) build=$root/$build ;; esac
cc=${CC:-cc}
pads=${PADS:-0 16 32 48}
old=HEAD
new=
if [ $# -gt 0 ] && [ "$1" != -- ]; then old=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != -- ]; then new=$1; shift; fi
if [ $# -gt 0 ]; then
	if [ "$1" != -- ]; then
		echo "usage: sh bench/inline_ab.sh [OLD [NEW]] [-- inline-ab options]" >&2
		exit 2
	fi
	shift
fi

lib=$build/libiopool.a
if [ ! -f "$lib" ] || [ ! -f "$build/include/iopool/buildconf.h" ]; then
	echo "inline_ab.sh: $lib or $build/include/iopool/buildconf.h is missing: run 'make build' first" >&2
	exit 1
fi
libs=$(sed -n 's/^Libs.private: *//p' "$build/iopool.pc" 2>/dev/null || true)

for rev in "$old" "$new"; do
	if [ -n "$rev" ] && ! git -C "$root" rev-parse --verify -q "$rev^{commit}" >/dev/null; then
		echo "inline_ab.sh: '$rev' is not a revision" >&2
		exit 2
	fi
done

out=${OUT:-$build/inline-ab}
rm -rf "$out"
mkdir -p "$out/old" "$out/new"
headers() { # REV DIR: REV's include/ into DIR (the working tree's when REV is empty)
	if [ -z "$1" ]; then
		cp -r "$root/include" "$2/"
	else
		git -C "$root" archive "$1" include | tar -x -C "$2"
	fi
}
headers "$old" "$out/old"
headers "$new" "$out/new"
abi() { sed -n 's/^#define IOP__INLINE_ABI \([0-9]*\).*/\1/p' "$1/include/iopool/inline.h"; }
if [ "$(abi "$out/old")" != "$(abi "$out/new")" ]; then
	echo "inline_ab.sh: IOP__INLINE_ABI differs ($(abi "$out/old") and $(abi "$out/new")): the library cannot serve both" >&2
	exit 1
fi

status=0
flags="-O3 -DNDEBUG -std=c11 -fno-toplevel-reorder -I$build/include"
echo "inline-ab: old = ${old}, new = ${new:-the working tree}; $(uname -m), $("$cc" --version | head -n 1)"
# shellcheck disable=SC2086
"$cc" $flags -I"$root/include" -c "$root/bench/inline_ab.c" -o "$out/main.o"
for pad in $pads; do
	bin=$out/ab-$pad
	# shellcheck disable=SC2086
	"$cc" $flags -DAB_LOOP=ab_loop_old -DAB_PAD="$pad" -I"$out/old/include" -c "$root/bench/inline_ab.c" -o "$bin-old.o"
	# shellcheck disable=SC2086
	"$cc" $flags -DAB_LOOP=ab_loop_new -DAB_PAD="$pad" -I"$out/new/include" -c "$root/bench/inline_ab.c" -o "$bin-new.o"
	# shellcheck disable=SC2086
	"$cc" -o "$bin" "$out/main.o" "$bin-old.o" "$bin-new.o" "$lib" $libs -lm
	echo
	echo "layout: loops moved by $pad bytes"
	"$bin" "$@" >"$bin.txt" || status=1
	cat "$bin.txt"
done

echo
echo "summary: new/old per cell, one ratio per layout ($pads), and their median"
awk '
FNR == 1 { nf++ }
$2 ~ /^[0-9.]+$/ && $4 ~ /x$/ {
	cell = $1; r = $4; sub(/x$/, "", r)
	if (!(cell in seen)) { seen[cell] = 1; order[++n] = cell }
	ratio[cell, nf] = r
}
/^geometric mean/ { g = $4; sub(/x$/, "", g); gm[nf] = g }
function median(a, k,    i, j, t) {
	for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
END {
	for (c = 1; c <= n; c++) {
		line = sprintf("%-10s", order[c]); k = 0
		for (f = 1; f <= nf; f++) if ((order[c], f) in ratio) { line = line sprintf(" %6.3f", ratio[order[c], f]); v[++k] = ratio[order[c], f] }
		printf "%s   median %.3fx\n", line, median(v, k)
	}
	line = sprintf("%-10s", "geomean"); k = 0
	for (f = 1; f <= nf; f++) { line = line sprintf(" %6.3f", gm[f]); v[++k] = gm[f] }
	printf "%s   median %.3fx\n", line, median(v, k)
}' $(for pad in $pads; do echo "$out/ab-$pad.txt"; done)
exit $status
