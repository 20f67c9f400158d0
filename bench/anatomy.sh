#!/bin/sh
# SPDX-License-Identifier: MIT
# What each part of the inlined fast path costs: bench/anatomy.c built
# against the shipped iopool.h and against copies with parts removed, timed
# in rounds so that drift on a noisy machine hits every variant alike.
#
# usage: bench/anatomy.sh BUILD_DIR [ROUNDS]    (BUILD_DIR holds libiopool.a)
#
#   shipped   the header as installed
#   nocount   without the fast-allocation counter
#   nocheck   without the owner check on free (NOT a supported build: the
#             check is always on; this only measures what it costs)
#   bare      neither: the pop/push floor
#   call      the shipped code through the exported calls (IOP_NO_INLINE)
set -eu
build=${1:?usage: $0 BUILD_DIR [ROUNDS]}
rounds=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
hdr=$here/../include/iopool.h
lib=$build/libiopool.a
[ -f "$lib" ] || { echo "anatomy.sh: $lib not found (build first)" >&2; exit 2; }
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

bump='#define IOP__BUMP(p, n) __asm__ volatile("addq %1, %0" : "+m"(*(p)) : "er"((uint64_t)(n)))'
check='	if (__builtin_expect(!iop__owned(pool, obj), 0)) {'
grep -qF "$bump" "$hdr" && grep -qF "$check" "$hdr" || {
	echo "anatomy.sh: iopool.h no longer has the lines this script removes; update it" >&2
	exit 1
}
variant() { # NAME SED-SCRIPT
	mkdir -p "$tmp/$1"
	sed "$2" "$hdr" >"$tmp/$1/iopool.h"
	$cc -O2 -I"$tmp/$1" "$here/anatomy.c" "$lib" -lpthread -o "$tmp/$1/run"
}
variant shipped ''
variant nocount 's|^#define IOP__BUMP(p, n) __asm__ volatile.*|#define IOP__BUMP(p, n) ((void)0)|'
variant nocheck 's|^	if (__builtin_expect(!iop__owned(pool, obj), 0)) {|	if (__builtin_expect(obj == 0, 0)) {|'
variant bare 's|^#define IOP__BUMP(p, n) __asm__ volatile.*|#define IOP__BUMP(p, n) ((void)0)|; s|^	if (__builtin_expect(!iop__owned(pool, obj), 0)) {|	if (__builtin_expect(obj == 0, 0)) {|'
mkdir -p "$tmp/call"
$cc -O2 -DIOP_NO_INLINE -I"$here/../include" "$here/anatomy.c" "$lib" -lpthread -o "$tmp/call/run"

echo "ns per alloc+free pair (2 KiB), best of 7 loops of 5e7 pairs, $rounds rounds:"
printf '%-8s' round bare nocheck nocount shipped call; echo
r=1
while [ "$r" -le "$rounds" ]; do
	printf '%-8s' "$r"
	for v in bare nocheck nocount shipped call; do printf '%-8s' "$("$tmp/$v/run")"; done
	echo
	r=$((r + 1))
done
