#!/bin/sh
# SPDX-License-Identifier: MIT
#
# ctest inline_ab_compares_two_versions_in_each_layout: bench/inline_ab.sh,
# HEAD against the working tree, two layouts, two cells, a few
# repetitions. Checks that each layout printed a row for both cells and a
# geometric mean, and that the summary has two ratios per cell and their
# median; then that a name that is no revision is refused (status 2).
# No timing is checked: the rates are whatever the machine gives.
#   sh bench/inline_ab_check.sh BUILD_DIR
set -u
build=$1
here=$(dirname "$0")
log=$build/inline-ab-check.log
PADS="0 16" OUT=$build/inline-ab-check BUILD=$build sh "$here/inline_ab.sh" HEAD -- --reps 3 --cells 32:4:4,32:1:1 >"$log" 2>&1
st=$?
[ $st -eq 77 ] && { cat "$log"; exit 77; }
fail() { cat "$log"; echo "inline_ab_check: $*"; exit 1; }
[ $st -eq 0 ] || fail "inline_ab.sh exited with $st"
for cell in 32:4:4 32:1:1; do
	n=$(grep -Ec "^$cell +[0-9]+[.][0-9] +[0-9]+[.][0-9] +[0-9][.][0-9]{3}x" "$log")
	[ "$n" -eq 2 ] || fail "$cell: $n rows of rates, not one per layout (2)"
	grep -Eq "^$cell +[0-9][.][0-9]{3} +[0-9][.][0-9]{3} +median [0-9][.][0-9]{3}x$" "$log" ||
		fail "$cell: no summary row with two ratios and their median"
done
n=$(grep -Ec "^geometric mean new/old: [0-9][.][0-9]{3}x over 2 cells" "$log")
[ "$n" -eq 2 ] || fail "$n geometric means over 2 cells, not 2"
grep -Eq "^geomean +[0-9][.][0-9]{3} +[0-9][.][0-9]{3} +median" "$log" || fail "no summary of the geometric means"
OUT=$build/inline-ab-check BUILD=$build sh "$here/inline_ab.sh" no-such-revision >"$log" 2>&1
st=$?
[ $st -eq 2 ] && grep -q "'no-such-revision' is not a revision" "$log" || fail "a bad revision: status $st"
echo "inline_ab_check: ok"
