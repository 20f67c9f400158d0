#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The ABI check: libiopool.so against the baseline in abi/libiopool.abi.
#
#   scripts/abi.sh [LIB]            compare (the ctest test `abi` runs this)
#   scripts/abi.sh --update [LIB]   write LIB's ABI as the new baseline
#
# LIB defaults to build/libiopool.so (make builds it there). The dump is
# abidw's (Debian: abigail-tools; scripts/deps.sh test installs it) of the
# exported symbols, their versions (src/iopool.map.in) and the types of the
# public headers (include/); the library's own types are left out, so only
# what a program can see is compared. Any difference fails: a removed or
# added symbol, a changed version node, a changed public struct. Exit 0 when
# they agree, 1 when they differ, 2 on bad usage or a missing tool.
#
# Update the baseline on purpose, in the commit that changes the ABI, and
# say so in the commit message: a new call, a changed struct, a raised
# IOP__INLINE_ABI. Run `make` first, so LIB is the library of that commit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
baseline=$root/abi/libiopool.abi
update=0
if [ "${1:-}" = --update ]; then
	update=1
	shift
fi
case ${1:-} in -h | --help) sed -n '4,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; -*) echo "usage: $0 [--update] [LIB]" >&2; exit 2 ;; esac
lib=${1:-$root/build/libiopool.so}
[ $# -le 1 ] || { echo "usage: $0 [--update] [LIB]" >&2; exit 2; }

for t in abidw abidiff; do
	command -v $t >/dev/null || {
		echo "abi.sh: $t not found: install abigail-tools (scripts/deps.sh test does)" >&2
		exit 2
	}
done
[ -f "$lib" ] || { echo "abi.sh: no library at $lib: build it first (make)" >&2; exit 2; }
readelf -S "$lib" | grep -q '\.debug_info' || {
	echo "abi.sh: $lib has no debug information (CMakeLists.txt builds the library with -g)" >&2
	exit 2
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iop-abi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Only the exported symbols and the public headers' types (not the
# library's own declarations); no paths or source locations, so the dump is
# the same from any build directory and checkout.
abidw --headers-dir "$root/include" --drop-private-types --drop-undefined-syms --no-corpus-path --no-comp-dir-path \
	--no-show-locs --out-file "$tmp/now.abi" "$lib"

if [ $update -eq 1 ]; then
	mkdir -p "$(dirname "$baseline")"
	cp "$tmp/now.abi" "$baseline"
	echo "abi: baseline written: ${baseline#"$root"/} ($(grep -c '<elf-symbol ' "$baseline") symbols)"
	exit 0
fi

[ -f "$baseline" ] || { echo "abi.sh: no baseline $baseline: run $0 --update" >&2; exit 2; }
rc=0
abidiff "$baseline" "$tmp/now.abi" >"$tmp/diff" 2>&1 || rc=$?
if [ $rc -ne 0 ]; then
	cat "$tmp/diff"
	echo "abi: FAILED: $lib differs from ${baseline#"$root"/} (abidiff exit $rc)."
	echo "abi: if the change is meant, run scripts/abi.sh --update and commit the baseline with it"
	echo "abi: (README, \"The ABI\"); if it changes what the inline code sees, raise IOP__INLINE_ABI."
	exit 1
fi
echo "abi: ok: $(grep -c '<elf-symbol ' "$baseline") symbols and the public types match ${baseline#"$root"/}"
