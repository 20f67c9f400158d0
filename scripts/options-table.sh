#!/bin/sh
# SPDX-License-Identifier: MIT
#
# README's table of IOPOOL_* variables comes from src/options.h (the one
# table of them): this prints it, checks README against it, or rewrites
# README's copy.
#
#   scripts/options-table.sh                  print the table
#   scripts/options-table.sh --check [FILE]   exit 1 when FILE's differs
#   scripts/options-table.sh --update [FILE]  replace FILE's table
#
# FILE defaults to README.md. CC picks the compiler (default cc).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The table does not depend on how the library is built: a stand-in for the
# buildconf.h that CMake generates.
mkdir -p "$tmp/iopool"
printf '#define IOP__LIB_ASAN 0\n#define IOP__LIB_TSAN 0\n#define IOP__LIB_RSEQ 0\n' >"$tmp/iopool/buildconf.h"
${CC:-cc} -std=c11 -D_GNU_SOURCE -Wall -Wextra -I"$root/src" -I"$root/include" -I"$tmp" \
	-o "$tmp/options-table" "$root/scripts/options-table.c"
file=${2:-$root/README.md}
case "${1:-}" in
"") "$tmp/options-table" ;;
--check) "$tmp/options-table" --check "$file" ;;
--update)
	"$tmp/options-table" >"$tmp/table"
	awk -v table="$tmp/table" '
		/^<!-- options table:/ { while ((getline line < table) > 0) print line; skip = 1; next }
		skip && /^<!-- end of options table -->/ { skip = 0; next }
		!skip' "$file" >"$tmp/new"
	grep -q '^<!-- options table:' "$file" || { echo "$file has no options table markers" >&2; exit 1; }
	cat "$tmp/new" >"$file"
	;;
*) echo "usage: $0 [--check|--update] [FILE]" >&2; exit 2 ;;
esac
