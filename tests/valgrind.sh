#!/bin/sh
# SPDX-License-Identifier: MIT
# Run a program under memcheck and check its report (tests/CMakeLists.txt
# registers one test per use).
#
#   valgrind.sh clean PROGRAM [ARGS...]
#       the program must run clean: no memcheck error and no block
#       definitely or possibly lost (exit status 0 with --error-exitcode)
#   valgrind.sh expect 'PATTERN'... -- PROGRAM [ARGS...]
#       memcheck must count errors, and its report must hold a line
#       matching each extended regular expression PATTERN (the error's
#       kind, what it says of the block, where it was allocated)
#
# "Still reachable" blocks are not errors here: what a library keeps for
# the life of the process (the heap's class pools, a thread's caches) is
# reachable from its globals at exit, as glibc's own state is
# (--errors-for-leak-kinds=definite,possible, the kinds that are leaks).
# VG_LEAK_CHECK=no leaves the leak check out (it reads every mapping the
# library reserved, seconds of work): for the checks that need none.
# Exit 77 (skipped) when valgrind is not installed.
set -eu

if ! command -v valgrind >/dev/null 2>&1; then
	echo "valgrind is not installed (apt-get install valgrind): skipped"
	exit 77
fi
mode=${1:?usage: $0 clean|expect ...}
shift
patterns=$(mktemp)
log=$(mktemp)
trap 'rm -f "$log" "$patterns"' EXIT INT TERM
if [ "$mode" = expect ]; then
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		printf '%s\n' "$1" >>"$patterns"
		shift
	done
	[ $# -gt 1 ] || { echo "usage: $0 expect PATTERN... -- PROGRAM [ARGS...]" >&2; exit 2; }
	shift
fi

set +e
valgrind --tool=memcheck --error-exitcode=99 --leak-check="${VG_LEAK_CHECK:-full}" \
	--errors-for-leak-kinds=definite,possible --show-leak-kinds=definite,possible \
	--num-callers=20 --log-file="$log" "$@"
rc=$?
set -e
cat "$log"
case $mode in
clean)
	if [ "$rc" -ne 0 ]; then
		echo "valgrind.sh: $*: exit status $rc under memcheck (99: memcheck found errors)" >&2
		exit 1
	fi
	grep -q 'ERROR SUMMARY: 0 errors' "$log" || {
		echo "valgrind.sh: $*: memcheck reported errors" >&2
		exit 1
	}
	;;
expect)
	if [ "$rc" -ne 99 ]; then
		echo "valgrind.sh: $*: exit status $rc, not 99: memcheck found no error" >&2
		exit 1
	fi
	while IFS= read -r pattern; do
		grep -Eq "$pattern" "$log" || {
			echo "valgrind.sh: $*: nothing matches '$pattern' in memcheck's report" >&2
			exit 1
		}
	done <"$patterns"
	;;
*)
	echo "usage: $0 clean|expect ..." >&2
	exit 2
	;;
esac
echo "valgrind.sh: $*: as expected"
