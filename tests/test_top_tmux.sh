#!/bin/sh
# SPDX-License-Identifier: MIT
# iopool-top's screen as a person sees it, in tmux at 80x24 and 200x50:
# tests/top_publisher (3 application pools and ~35 heap classes) publishes;
# the tool runs in a tmux session of that size; capture-pane shows what is
# on the screen after each key. Checks, at each size: the header; the
# application's pools on the first screen; resident bytes beside mapped
# ones (the totals line, the RESIDENT column, its sort key e); the heap's classes folded into
# one row, opened by h; names in numeric order; the / filter and
# --filter; scrolling the rows (PgDn) and, where columns are cut, the
# columns (Right); no line wider than the terminal (wrapped lines are
# joined by capture-pane -J, so a wrap shows as a long line); q quits.
#
#   test_top_tmux.sh IOPOOL_TOP TOP_PUBLISHER
#
# Exit 0 when every check passes, 1 otherwise, 77 when tmux is missing.
set -u
top=$1 pub=$2

if ! command -v tmux >/dev/null 2>&1; then
	echo "tmux is not installed (scripts/deps.sh test installs it): skipped"
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iop-top-tmux.XXXXXX")
sock=$tmp/tmux.0
nsock=0
failures=0
pub_pid=
cleanup() {
	for s in "$tmp"/tmux.*; do tmux -S "$s" kill-server >/dev/null 2>&1; done
	exec 3>&- 2>/dev/null # the publisher exits when its stdin closes
	[ -n "$pub_pid" ] && wait "$pub_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	echo "--- the screen:"
	cat "$tmp/screen"
	echo "---"
	failures=$((failures + 1))
}

# The publisher, fed through a fifo so that closing it ends the process.
mkfifo "$tmp/in"
"$pub" toppub <"$tmp/in" >"$tmp/pub.out" 2>&1 &
pub_pid=$!
exec 3>"$tmp/in"
i=0
while ! grep -q '^ready' "$tmp/pub.out" 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$pub_pid" 2>/dev/null; then
		echo "FAIL: the publisher did not start:"
		cat "$tmp/pub.out"
		exit 1
	fi
	sleep 0.1
done
pid=$(awk '/^ready/ {print $2}' "$tmp/pub.out")

# capture: the screen now into $tmp/screen, wrapped lines joined.
capture() { tmux -S "$sock" capture-pane -p -J -t iopt >"$tmp/screen" 2>/dev/null; }

# wait_for REGEX: until the screen shows a line matching it (5 s at most).
wait_for() {
	n=0
	while :; do
		capture
		grep -Eq -- "$1" "$tmp/screen" && return 0
		n=$((n + 1))
		[ $n -ge 50 ] && return 1
		sleep 0.1
	done
}

keys() { tmux -S "$sock" send-keys -t iopt "$@"; }

# check_width W: no line of the screen is wider than W.
check_width() {
	awk -v w="$1" 'length($0) > w { printf "line %d is %d wide: %s\n", NR, length($0), $0; bad = 1 }
		END { exit bad }' "$tmp/screen" >"$tmp/wide" || fail "${size}: lines wider than the terminal: $(cat "$tmp/wide")"
}

# new_session W H ARGS...: the tool in a fresh tmux server of its own (a
# server that is being killed may still hold the old socket).
new_session() {
	tmux -S "$sock" kill-server >/dev/null 2>&1
	nsock=$((nsock + 1))
	sock=$tmp/tmux.$nsock
	_w=$1 _h=$2
	shift 2
	tmux -S "$sock" new-session -d -s iopt -x "$_w" -y "$_h" "$top --delay 0.2 $*"
}

# line_of REGEX: the first screen line matching it (0: none).
line_of() { grep -En -- "$1" "$tmp/screen" | head -n 1 | cut -d: -f1 | grep . || echo 0; }

run_size() {
	w=$1 h=$2 size="${1}x${2}"
	shift 2
	new_session "$w" "$h" "$* $pid" || { fail "$size: tmux cannot start"; return; }
	wait_for "^ rows " || { fail "$size: no table within 5 s"; return; }

	# First screen: header, the application's pools, the heap folded.
	grep -Eq "^iopool-top - pid $pid \\(toppub\\), [0-9]+ pools" "$tmp/screen" || fail "$size: no header line"
	for p in app-rx-buffers app-sessions app-tx-frames; do
		grep -q "^$p " "$tmp/screen" || fail "$size: pool $p not on the first screen"
	done
	grep -Eq '^heap \([0-9]+ classes\) ' "$tmp/screen" || fail "$size: no folded heap row"
	grep -q 'heap-[0-9]' "$tmp/screen" && fail "$size: heap classes listed while folded"
	grep -Eq '^ rows 1-[0-9]+ of 4 ' "$tmp/screen" || fail "$size: status line does not say 4 rows"
	# Resident beside mapped: in the totals and as a column, even at 80.
	grep -Eq '^ Memory mapped / resident  : [0-9.]+ [KMG]?i?B / [0-9.]+ [KMG]?i?B;' "$tmp/screen" ||
		fail "$size: no 'Memory mapped / resident' line"
	grep -Eq '^NAME .* MAPPED +RESIDENT' "$tmp/screen" || fail "$size: no RESIDENT column after MAPPED"
	check_width "$w"

	# e sorts by resident bytes.
	keys e
	wait_for 'Sorted by RESIDENT \(descending\)' || fail "$size: e did not sort by RESIDENT"
	# Back to the first screen's order: which classes rank high by
	# resident bytes depends on the build (ASan's pages differ).
	keys m
	wait_for 'Sorted by MAPPED \(descending\)' || fail "$size: m did not sort by MAPPED again"

	# h opens the heap; sorted by name (n), heap-104 comes before heap-1024.
	keys h
	wait_for '^  heap-64 ' || fail "$size: h did not open the heap"
	check_width "$w"
	keys n
	wait_for 'Sorted by NAME' || fail "$size: n did not sort by name"
	if [ "$h" -ge 50 ]; then
		a=$(line_of '^  heap-104 ') b=$(line_of '^  heap-1024 ')
		[ "$a" -gt 0 ] && [ "$b" -gt "$a" ] || fail "$size: heap-104 (line $a) not before heap-1024 (line $b)"
	fi

	# Scrolling: the page moves down when there is more below.
	if grep -Eq '^ rows 1-[0-9]+ of [0-9]+ v ' "$tmp/screen"; then
		keys PageDown
		wait_for '^ rows ([2-9]|[1-9][0-9])[0-9]*-' || fail "$size: PgDn did not scroll"
		check_width "$w"
		keys Home
		wait_for '^ rows 1-' || fail "$size: Home did not scroll back"
	elif [ "$h" -lt 30 ]; then
		fail "$size: the opened heap should not fit in $h lines"
	fi

	# Columns: where they do not all fit, Right shows the next ones.
	head=$(grep '^NAME ' "$tmp/screen")
	if grep -Eq ' cols [0-9]+-[0-9]+ of 14 > ' "$tmp/screen"; then
		keys Right
		wait_for '^NAME +INFLIGHT' || fail "$size: Right did not scroll the columns"
		grep '^NAME ' "$tmp/screen" | grep -q ' SIZE ' && fail "$size: SIZE still shown after Right"
		check_width "$w"
		keys Left
		wait_for '^NAME +SIZE' || fail "$size: Left did not scroll back"
	else
		echo "$head" | grep -q ' CHUNKS$' || fail "$size: all columns fit but CHUNKS is not shown"
	fi

	# Filter: / app-tx Enter leaves one row; / Enter (empty) clears it.
	keys h
	wait_for '^heap \(' || fail "$size: h did not fold the heap"
	keys / a p p - t x Enter
	wait_for "^ Filter: 'app-tx' \\(1 row\\)" || fail "$size: the filter line does not show"
	grep -q '^app-tx-frames ' "$tmp/screen" || fail "$size: the filtered pool is missing"
	grep -Eq '^(app-rx-buffers|app-sessions|heap) ' "$tmp/screen" && fail "$size: the filter left other pools"
	check_width "$w"
	keys / BSpace BSpace BSpace BSpace BSpace BSpace Enter
	wait_for '^app-rx-buffers ' || fail "$size: clearing the filter did not bring the pools back"

	keys q
	n=0
	while tmux -S "$sock" has-session -t iopt 2>/dev/null; do
		n=$((n + 1))
		[ $n -ge 30 ] && { fail "$size: q did not quit"; break; }
		sleep 0.1
	done
	echo "$size: checked"
}

run_size 80 24
run_size 200 50

# --filter from the command line, and the heap opened with -H.
size=80x24-filter
new_session 80 24 "--filter SESSION $pid"
wait_for '^app-sessions ' || fail "$size: --filter SESSION does not show app-sessions"
grep -Eq '^(app-rx-buffers|app-tx-frames|heap) ' "$tmp/screen" && fail "$size: --filter left other pools"
check_width 80
new_session 80 24 "-H --filter heap $pid"
size=80x24-heap
wait_for '^  heap-16 ' || fail "$size: -H does not open the heap"
check_width 80

if [ $failures -ne 0 ]; then
	echo "$failures check(s) failed"
	exit 1
fi
echo "all screens as expected"
