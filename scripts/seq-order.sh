#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Every restartable sequence reads its slot's cap before its head word.
#
# usage: scripts/seq-order.sh [--min N] FILE...
#
# FILE is an ELF object (disassembled with objdump -d) or, when its name
# ends in .txt, a disassembly already made (tests/seq-order-*.txt). In each
# sequence of include/iopool/inline.h the arm store
#     mov  %REG,%fs:0x8(%OFF)       (rseq_cs)
# is followed by
#     movslq %fs:0x4(%OFF),%T       (cpu_id)
#     shl $0x6,%T ; add %BASE,%T    (the slot)
# and the first access through %T must be the cap, 0x8(%T); the head word,
# (%T) (written 0x0(%T) when T is %rbp or %r13, which need a
# displacement), comes after it. Why: src/ccache.c's drain stores head, then cap;
# a sequence that started after the drain's fence is safe only if it sees
# the cap first (the comment above the sequences in inline.h). Fails when a
# sequence reads the head first, or when fewer than N sequences (default 1
# per file) were found: a check that found nothing has checked nothing.
set -eu

min=1
if [ "${1:-}" = "--min" ]; then
	min=$2
	shift 2
fi
[ $# -gt 0 ] || { echo "usage: $0 [--min N] FILE..." >&2; exit 2; }
command -v objdump >/dev/null 2>&1 || { echo "seq-order: objdump not found (apt-get install binutils)" >&2; exit 2; }

status=0
for f in "$@"; do
	case $f in
	*.txt) cat "$f" ;;
	*) objdump -d --no-show-raw-insn "$f" ;;
	esac | awk -v file="$f" -v min="$min" '
	function fail(msg) { printf "seq-order: %s: %s <%s> at %s: %s\n", file, "in", fn, at, msg; bad++ }
	/^[0-9a-f]+ <.*>:$/ { fn = $2; gsub(/[<>:]/, "", fn); state = 0; next }
	/^ *[0-9a-f]+:\t/ {
		addr = $1; sub(/:$/, "", addr)
		line = $0; sub(/^ *[0-9a-f]+:\t/, "", line)
		if (line ~ /^mov +%[a-z0-9]+,%fs:0x8\(%[a-z0-9]+\)$/) {
			state = 1; at = addr; n = 0; next
		}
		if (state == 1) {
			if (line ~ /^movslq +%fs:0x4\(%[a-z0-9]+\),%[a-z0-9]+$/) {
				t = line; sub(/.*,/, "", t); state = 2; seen = 0; n = 0
			} else {
				state = 0
			}
			next
		}
		if (state == 2) {
			n++
			if (index(line, "0x8(" t ")") > 0) {
				if (!seen) { seen = 1 }
			} else if (line ~ ("[ ,](0x0)?\\(" t "\\)")) {
				if (!seen) { fail("reads the head, (" t "), before the cap, 0x8(" t ")"); state = 0; next }
				checked++; state = 0; next
			}
			if (n > 12) { fail("no head load through " t " within 12 instructions of the start"); state = 0 }
		}
	}
	END {
		if (checked + bad < min) {
			printf "seq-order: %s: %d sequences found, expected at least %d\n", file, checked + bad, min
			exit 1
		}
		printf "seq-order: %s: %d sequences read the cap before the head, %d do not\n", file, checked, bad
		exit bad ? 1 : 0
	}' || status=1
done
exit $status
