#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every tracked source, script and build file starts with an SPDX license
# line (after a #! line where there is one), so that each file states its
# license when it is copied out of the tree.
#
#   scripts/spdx.sh --check   list the files without it; exit 1 if any
#   scripts/spdx.sh --fix     add it where it is missing (idempotent; re-run
#                             after merging branches that add files)
#
# Which files count, and their comment syntax, is decided by name below;
# files of no listed kind (Markdown, SVG, debian/ metadata with its own
# formats) are not source files and are left alone. Run from anywhere in
# the repository; only files that git tracks are looked at (--fix also
# takes untracked files that are not ignored, so new files can be stamped
# before they are added).
set -euo pipefail

tag='SPDX-License-Identifier: MIT'

mode=${1:-}
case $mode in
--check | --fix) ;;
*)
	echo "usage: $0 --check|--fix" >&2
	exit 2
	;;
esac

cd "$(git rev-parse --show-toplevel)"

# The comment that carries the tag in a file of this name, or nothing when
# the file is not a source file.
comment_for() {
	case $1 in
	*.c | *.h | *.cc | *.cpp | *.hpp) echo "/* $tag */" ;;
	*.3 | *.1 | *.man) echo ".\\\" $tag" ;;
	*CMakeLists.txt | *.cmake | *.cmake.in | *.pc.in | *Makefile | *.mk | *.sh | *.gp | *.jq | *.awk | \
		.ci/* | debian/rules | debian/control | debian/*.install | debian/*.links | debian/*.manpages | \
		debian/*.symbols | debian/*.lintian-overrides | debian/source/format | debian/watch | .gitignore | \
		*.yml | *.yaml | *.py)
		echo "# $tag"
		;;
	esac
}

# A file whose first line is #! counts as a script whatever its name.
is_script() { [ "$(head -c 2 "$1" 2>/dev/null)" = '#!' ]; }

# The tag must be on the first line, or the second after #!.
has_tag() { head -n 2 "$1" | grep -q "$tag"; }

files() {
	if [ "$mode" = --fix ]; then
		git ls-files --cached --others --exclude-standard
	else
		git ls-files
	fi
}

missing=0
while IFS= read -r f; do
	[ -f "$f" ] || continue # deleted in the work tree
	c=$(comment_for "$f")
	if [ -z "$c" ] && is_script "$f"; then
		c="# $tag"
	fi
	[ -n "$c" ] || continue
	# debian/source/format and symbols files are parsed by dpkg, which
	# takes '#' lines in symbols files but not in source/format.
	[ "$f" = debian/source/format ] && continue
	has_tag "$f" && continue
	if [ "$mode" = --check ]; then
		echo "$f"
		missing=$((missing + 1))
		continue
	fi
	tmp=$(mktemp "$f.spdx.XXXXXX")
	if is_script "$f"; then
		{ head -n 1 "$f"; echo "$c"; tail -n +2 "$f"; } >"$tmp"
	else
		{ echo "$c"; cat "$f"; } >"$tmp"
	fi
	chmod --reference="$f" "$tmp"
	mv "$tmp" "$f"
	echo "stamped $f"
done < <(files)

if [ "$mode" = --check ] && [ $missing -gt 0 ]; then
	echo "spdx: $missing file(s) above lack '$tag' on their first line (after #!); run scripts/spdx.sh --fix" >&2
	exit 1
fi
exit 0
