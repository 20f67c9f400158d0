#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The layering check: fails when a library file includes a header of, or
# calls a function (or uses a variable) defined by, a layer above its own.
# The layers and the rules are in ONE file, scripts/layers.rules.
#
#   scripts/layers.sh [--rules FILE] [--move PATH=MODULE]... OBJECT|DIR|@LIST...
#
# OBJECT: the library's object files, or @LIST, a file naming one a line
# (tests/CMakeLists.txt writes it from $<TARGET_OBJECTS:iopool_obj>) (CMake's $<TARGET_OBJECTS:iopool_obj>,
# named .../iopool_obj.dir/src/x.c.o), or a DIR searched for *.o. Calls are
# read with nm: each object's undefined symbols, mapped to the object that
# defines them; so inline functions of internal.h count where they are
# used, and static helpers not at all. Includes are read from the sources
# (#include "..."), which are found from the object names relative to the
# repository (this script's parent directory).
#
# --move PATH=MODULE puts a file in another module for this run: the
# self-test (ctest layering_catches_upward_calls) moves src/depot.c below
# the slab it calls and expects the check to fail.
#
# Exit status: 0 when every use goes down (known ones listed), 1 when one
# goes up or a file has no rule, 2 on bad usage.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rules=$root/scripts/layers.rules
moves=()
inputs=()
while [ $# -gt 0 ]; do
	case $1 in
	--rules) rules=$2; shift 2 ;;
	--move) moves+=("$2"); shift 2 ;;
	-h | --help) sed -n '4,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "layers.sh: unknown option $1" >&2; exit 2 ;;
	*) inputs+=("$1"); shift ;;
	esac
done
[ ${#inputs[@]} -gt 0 ] || { echo "usage: $0 [--rules FILE] [--move PATH=MODULE]... OBJECT|DIR..." >&2; exit 2; }
[ -r "$rules" ] || { echo "layers.sh: cannot read $rules" >&2; exit 2; }
command -v nm >/dev/null || { echo "layers.sh: nm (binutils) not found" >&2; exit 2; }

objects=()
for i in "${inputs[@]}"; do
	if [ "${i#@}" != "$i" ]; then
		while IFS= read -r o; do [ -z "$o" ] || objects+=("$o"); done <"${i#@}"
	elif [ -d "$i" ]; then
		while IFS= read -r o; do objects+=("$o"); done < <(find "$i" -name '*.o' | sort)
	else
		objects+=("$i")
	fi
done
[ ${#objects[@]} -gt 0 ] || { echo "layers.sh: no object files in ${inputs[*]}" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iop-layers.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# One line per fact, for awk:  D src/x.c SYMBOL | U src/x.c SYMBOL | I src/x.c src/y.h
for o in "${objects[@]}"; do
	# .../iopool_obj.dir/src/x.c.o -> src/x.c
	src=${o##*.dir/}
	src=${src%.o}
	[ -f "$root/$src" ] || { echo "layers.sh: $o: no source $src in $root" >&2; exit 2; }
	nm -g --defined-only "$o" | awk -v f="$src" 'NF >= 3 {print "D", f, $3}'
	nm -u "$o" | awk -v f="$src" '{print "U", f, $NF}'
	echo "S $src"
done >"$tmp/facts"
# Includes of every source and of every header under src/ (headers
# include headers too), resolved next to the including file.
{
	awk '$1 == "S" {print $2}' "$tmp/facts"
	(cd "$root" && find src -name '*.h' | sort)
} | sort -u | while IFS= read -r f; do
	echo "S $f"
	sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$root/$f" | while IFS= read -r h; do
		dir=$(dirname "$f")
		if [ -f "$root/$dir/$h" ]; then
			echo "I $f $(realpath -m --relative-to="$root" "$root/$dir/$h")"
		fi # else a public header (include/): below every rule
	done
done >>"$tmp/facts"

printf '%s\n' "${moves[@]+"${moves[@]}"}" >"$tmp/moves"

awk -v rulesfile="$rules" -v movesfile="$tmp/moves" '
function fail(msg) { print "layers: " msg; bad++ }
function allowed(a, b,   ka, kb, ra, rb) {
	if (a == b) return 1
	ka = kind[a]; kb = kind[b]; ra = rank[a]; rb = rank[b]
	if (kb == "shared") return 1
	if (kb == "base") return ka != "base" || rb >= ra
	if (ka == "base") return 0
	if (ka == "stack" && kb == "stack") return rb >= ra
	if (ka == "stack" && kb == "beside") return ra < bottom
	if (ka == "beside" && kb == "stack") return rb > 0
	if (ka == "beside" && kb == "beside") return rb >= ra
	return 0
}
function where(f) { return f " (" mod[f] ")" }
BEGIN {
	while ((getline line < rulesfile) > 0) {
		n++
		sub(/#.*/, "", line)
		nw = split(line, w)
		if (nw == 0) continue
		if (w[1] == "module" && nw == 4 && w[2] ~ /^(stack|beside|base|shared)$/ && w[3] ~ /^[0-9]+$/) {
			kind[w[4]] = w[2]; rank[w[4]] = w[3] + 0
			if (w[2] == "stack" && rank[w[4]] > bottom) bottom = rank[w[4]]
		} else if (w[1] == "file" && nw == 3 && (w[3] in kind)) {
			mod[w[2]] = w[3]
		} else if (w[1] == "known" && nw >= 2) {
			known[w[2]] = 1
		} else {
			print "layers: " rulesfile ":" n ": cannot read (or unknown module): " line; fatal = 1; exit
		}
	}
	while ((getline line < movesfile) > 0) {
		if (line == "") continue
		split(line, mv, "=")
		if (!(mv[2] in kind)) { print "layers: --move " line ": unknown module"; fatal = 1; exit }
		mod[mv[1]] = mv[2]
	}
}
$1 == "S" { if (!($2 in mod) && !norule[$2]++) fail("no layer for " $2 ": add a line \"file " $2 " MODULE\" to scripts/layers.rules") }
$1 == "D" { def[$3] = $2 }
$1 == "U" { nu++; uf[nu] = $2; us[nu] = $3 }
$1 == "I" { ni++; inf[ni] = $2; inh[ni] = $3 }
END {
	if (fatal) exit 2
	if (bad) exit 1
	for (i = 1; i <= ni; i++) {
		a = inf[i]; b = inh[i]
		if (!(b in mod)) { fail("no layer for " b " (included by " a "): add a line \"file " b " MODULE\""); continue }
		if (!allowed(mod[a], mod[b]))
			fail(where(a) " includes " where(b) ": a header of a layer above")
	}
	for (i = 1; i <= nu; i++) {
		a = uf[i]; s = us[i]
		if (!(s in def)) continue   # libc, libnuma, the sanitizers
		b = def[s]
		if (allowed(mod[a], mod[b])) continue
		if (s in known) { knownuse[s] = knownuse[s] " " a; continue }
		fail(where(a) " calls " s " of " where(b) ": a call up the layers")
		calls++
	}
	for (s in known) {
		if (s in knownuse) printf "layers: known, being removed: calls of %s from%s\n", s, knownuse[s]
		else printf "layers: note: \"known %s\" is no longer needed: remove it from the rules\n", s
	}
	if (bad) { print "layers: FAILED: " bad " problem(s); the rules are in scripts/layers.rules"; exit 1 }
	print "layers: ok: every include and call goes down the layers"
}' "$tmp/facts"
