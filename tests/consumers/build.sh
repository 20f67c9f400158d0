#!/bin/sh
# SPDX-License-Identifier: MIT
# Build a consumer of include/iopool.h with one compiler at one language
# standard under the strictest warnings a user's project may have, link it
# against the built library and run it (tests/CMakeLists.txt registers one
# test per compiler and standard).
#
#   build.sh COMPILER STD SOURCE INCLUDE_DIR LIBRARY OUT_DIR
#
# C sources get -Wall -Wextra -pedantic -Wshadow -Werror; C++ sources also
# -Wold-style-cast, and with clang++ -Wzero-as-null-pointer-constant (which
# g++ applies to its own NULL, so only clang++ can hold a header to it).
# Each is built twice: as it is, and with -DIOP_PROFILE.
# Exit 77 (skipped) when the compiler is not installed.
set -eu
[ $# -eq 6 ] || { echo "usage: $0 COMPILER STD SOURCE INCLUDE_DIR LIBRARY OUT_DIR" >&2; exit 2; }
cc=$1 std=$2 src=$3 inc=$4 lib=$5 out=$6

if ! command -v "$cc" >/dev/null 2>&1; then
	echo "$cc is not installed (scripts/deps.sh test installs g++ and clang): skipped"
	exit 77
fi
flags="-std=$std -Wall -Wextra -pedantic -Wshadow -Werror"
case $src in
*.cpp)
	flags="$flags -Wold-style-cast"
	case $cc in clang++*) flags="$flags -Wzero-as-null-pointer-constant" ;; esac
	;;
esac
mkdir -p "$out"
bin=$out/consumer-$cc-$std
# INCLUDE_DIR may be a colon-separated list (the source tree's include/ and
# the build tree's, which holds the generated iopool/buildconf.h).
incs=$(echo "$inc" | tr ':' '\n' | sed 's/^/-I/' | tr '\n' ' ')
echo "$cc $flags $incs $src $lib"
# shellcheck disable=SC2086 # flags and incs are lists on purpose
"$cc" $flags $incs -o "$bin" "$src" "$lib" -Wl,-rpath,"$(dirname "$lib")" -pthread
"$bin"
# Again with IOP_PROFILE: the profiling macros and their inline path are
# header code too.
echo "$cc $flags -DIOP_PROFILE $incs $src $lib"
# shellcheck disable=SC2086
"$cc" $flags -DIOP_PROFILE $incs -o "$bin-profile" "$src" "$lib" -Wl,-rpath,"$(dirname "$lib")" -pthread
"$bin-profile"
