#!/bin/sh
# SPDX-License-Identifier: MIT
# Check that iopool-mempool-perf runs each repetition in a process of its
# own by default, and all of them in its own process with --one-process,
# with every repetition's rates reaching the JSON either way.
#
# usage: bench/mp_fresh_check.sh path/to/iopool-mempool-perf
#
# Reads the JSON's "pid" (the process that wrote it), "rep_pids" (the
# process each repetition ran in) and each cell's iopool "reps" (one rate
# per repetition). Exit 0 when both runs say what they should, 1 otherwise.
set -eu

bin=${1:?usage: $0 path/to/iopool-mempool-perf}
reps=3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# field JSON NAME: the value of "NAME": on its line, brackets and commas
# turned into spaces.
field() {
	sed -n "s/.*\"$2\": *\\(\\[[^]]*\\]\\|[0-9]*\\).*/\\1/p" "$1" | head -n 1 | tr '[],' '   '
}

status=0
for mode in fresh one; do
	opt=
	[ "$mode" = one ] && opt=--one-process
	json=$tmp/$mode.json
	"$bin" --quick --cores 1 --reps $reps --cells 32:4:4:var,512:1:1:const $opt --json "$json" >"$tmp/out" 2>&1 || {
		echo "mp_fresh_check: $mode: $bin failed:" >&2
		cat "$tmp/out" >&2
		exit 1
	}
	pid=$(field "$json" pid)
	pids=$(field "$json" rep_pids)
	n=$(echo $pids | wc -w)
	distinct=$(for p in $pids; do echo "$p"; done | sort -u | wc -l)
	same=0
	for p in $pids; do [ "$p" = "$pid" ] && same=$((same + 1)); done
	# One "reps" array of $reps rates per cell (2) and allocator that ran
	# ("ok" in "allocators": DPDK is not built into sanitizer builds).
	ran=$(grep '"allocators"' "$json" | grep -o '": "ok"' | wc -l)
	grep -o '"reps": \[[^]]*\]' "$json" | sed 's/.*\[//; s/\]//' >"$tmp/rates"
	arrays=$(wc -l <"$tmp/rates")
	short=$(awk -F, -v r=$reps 'NF != r' "$tmp/rates" | wc -l)
	echo "$mode: pid $pid, repetitions in $pids: $n, $distinct distinct, $same the writer's; $arrays rate arrays of $((2 * ran)), $short not of $reps"
	if [ "$n" -ne $reps ] || [ "$ran" -eq 0 ] || [ "$arrays" -ne $((2 * ran)) ] || [ "$short" -ne 0 ]; then
		status=1
	elif [ "$mode" = fresh ] && { [ "$distinct" -ne $reps ] || [ "$same" -ne 0 ]; }; then
		status=1
	elif [ "$mode" = one ] && [ "$same" -ne $reps ]; then
		status=1
	fi
done
[ $status -eq 0 ] && echo "mp_fresh_check: ok" || echo "mp_fresh_check: FAILED"
exit $status
