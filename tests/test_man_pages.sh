#!/bin/sh
# SPDX-License-Identifier: MIT
# Every public function of include/iopool.h has a man page: a page of its
# own or a .so link to its family's page, which names it under NAME; and
# iopool-top has iopool-top(1). Where man(1) is installed, every page also
# renders without a warning. The names are found here with grep, not with
# the generator's parser, so that a declaration the generator misses fails.
#
#   test_man_pages.sh HEADER MANDIR
set -u
header=$1 mandir=$2
fail=0

names=$(grep -E '^(IOP_API|static inline|IOPINLINE) [^(]*[ *(]iop_[a-z][a-z0-9_]*\)?\(' "$header" |
	sed -E 's/\((iop_[a-z0-9_]*)\)/\1/; s/\(.*//; s/.*[ *]//' | sort -u)
count=$(printf '%s\n' "$names" | grep -c .)
if [ "$count" -lt 40 ]; then
	echo "FAIL: only $count public functions found in $header: the pattern is broken"
	exit 1
fi

for n in $names; do
	page=$mandir/man3/$n.3
	if [ ! -f "$page" ]; then
		echo "FAIL: $n has no page ($page)"
		fail=1
		continue
	fi
	target=$page
	if head -n 1 "$page" | grep -q '^\.so '; then
		target=$mandir/$(head -n 1 "$page" | sed 's/^\.so //')
		[ -f "$target" ] || { echo "FAIL: $n.3 links to a missing $target"; fail=1; continue; }
	fi
	# NAME: the line after .SH NAME lists the call.
	awk '/^\.SH NAME/ {getline; print; exit}' "$target" | grep -Eq "(^|[ ,])$n(,| )" ||
		{ echo "FAIL: $target does not name $n under NAME"; fail=1; }
	grep -q "$n(" "$target" || { echo "FAIL: $target has no synopsis for $n"; fail=1; }
done
[ -f "$mandir/man3/iopool.3" ] || { echo "FAIL: no iopool(3) overview"; fail=1; }
if [ -f "$mandir/man1/iopool-top.1" ]; then
	grep -q -- '--filter' "$mandir/man1/iopool-top.1" || { echo "FAIL: iopool-top.1 lacks the options"; fail=1; }
else
	echo "FAIL: no iopool-top(1)"
	fail=1
fi

if command -v man >/dev/null 2>&1 && command -v groff >/dev/null 2>&1; then
	for p in "$mandir"/man3/*.3 "$mandir"/man1/*.1; do
		[ -f "$p" ] || continue
		w=$(cd "$mandir" && MANWIDTH=80 man --warnings -l "${p#"$mandir"/}" 2>&1 >/dev/null)
		[ -z "$w" ] || { echo "FAIL: $p renders with warnings: $w"; fail=1; }
	done
else
	echo "man or groff not installed: pages not rendered"
fi
[ $fail -eq 0 ] && echo "$count public functions, each with a page"
exit $fail
