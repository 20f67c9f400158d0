#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Check for, and where possible install, what building and testing iopool needs.
#
#   scripts/deps.sh [test|bench|deb]
#
#   test   cmake, make, a C compiler with the C library headers, pkg-config,
#          abigail-tools (the ABI check), valgrind (its headers, and the
#          memcheck tests);
#          with SANITIZE=address or SANITIZE=thread in the environment also the
#          compiler's sanitizer runtime (checked by building a tiny program).
#   bench  all of the above, plus the peers the benchmark compares against
#          (jemalloc, mimalloc, tcmalloc, DPDK), and
#          gnuplot (gnuplot-nox) and jq for the plots (bench/plot.sh).
#   deb    all of test, plus what building and checking the Debian package
#          needs (debhelper, dpkg-dev, build-essential, lintian): CI's deb
#          stage.
#
# Environment: CC (the compiler to check; default cc, else gcc), SANITIZE.
#
# Missing packages are installed with apt-get when running as root (one
# `apt-get update`, then `apt-get install --no-install-recommends`). Otherwise
# the exact command to run is printed and the script exits 1; missing bench
# peers only warn, since the benchmark reports them as "not installed", and
# so do missing plotting tools, since `make bench` then says it skips the
# plots.
#
# Fast when everything is present: commands are looked up with `command -v`,
# packages with `dpkg-query -W`; apt is only touched when something is missing.
set -euo pipefail

mode=${1:-test}
case $mode in
test | bench | deb) ;;
-h | --help)
	sed -n '3,25p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "usage: $0 [test|bench|deb]" >&2
	exit 2
	;;
esac
sanitize=${SANITIZE:-}
case $sanitize in
'' | address | thread) ;;
*)
	echo "deps.sh: SANITIZE must be empty, 'address' or 'thread' (got '$sanitize')" >&2
	exit 2
	;;
esac

say() { printf 'deps: %s\n' "$*"; }
warn() { printf 'deps: warning: %s\n' "$*" >&2; }

have_cmd() { command -v "$1" >/dev/null 2>&1; }
# A package counts as present only when dpkg says "install ok installed".
have_pkg() {
	have_cmd dpkg-query || return 1
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iop-deps.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# ---------------------------------------------------------------- compiler
# The compiler CMake will pick: $CC if set, else cc. With neither, we install
# gcc (Debian's default cc).
cc=${CC:-}
if [ -z "$cc" ]; then
	if have_cmd cc; then cc=cc; elif have_cmd gcc; then cc=gcc; else cc=cc; fi
fi
cc_bin=${cc%% *} # CC may carry flags ("gcc -m64"); the binary is the first word

# Which Debian packages provide a compiler and its sanitizer runtimes.
# gcc's libasan/libtsan/libubsan are dependencies of libgcc-N-dev (part of
# gcc-N); clang's runtimes are in libclang-rt-N-dev.
compiler_kind() {
	if "$cc_bin" --version 2>/dev/null | grep -qi clang; then echo clang; else echo gcc; fi
}
compiler_major() { "$cc_bin" -dumpversion 2>/dev/null | cut -d. -f1; }

required=() # packages we must have
peers=()    # bench peers: nice to have
plotting=() # bench/plot.sh: nice to have

if ! have_cmd "$cc_bin"; then
	case $cc_bin in
	clang*) required+=(clang libc6-dev) ;;
	*) required+=(gcc libc6-dev) ;;
	esac
else
	# The compiler exists; make sure it can build and link a C11 program
	# (gcc without libc6-dev, as --no-install-recommends gives, cannot).
	printf '#include <stdio.h>\n#include <pthread.h>\nint main(void){puts("ok");return 0;}\n' >"$tmp/hello.c"
	# shellcheck disable=SC2086 # CC may carry flags on purpose
	if ! $cc -std=c11 -pthread "$tmp/hello.c" -o "$tmp/hello" >"$tmp/hello.log" 2>&1; then
		required+=(libc6-dev)
	fi
fi

have_cmd cmake || required+=(cmake)
have_cmd make || required+=(make)
have_cmd pkg-config || required+=(pkg-config)
# liburing: the io_uring receive example and its test (examples/udp_rx).
have_pkg liburing-dev || required+=(liburing-dev)
# libnuma: NUMA topology and binding (optional for the build, which then has
# one memory domain; CMake says so); installed so CI builds the NUMA code.
have_pkg libnuma-dev || required+=(libnuma-dev)
# libxdp, libbpf, clang and iproute2: the AF_XDP example and its test
# (examples/xdp_rx: XDP program compiled by clang, veth in a namespace made
# with `ip`). liburing above also serves examples/tcp_zc.
for p in libxdp-dev libbpf-dev clang iproute2; do
	have_pkg "$p" || required+=("$p")
done

# C++ compilers for the consumer checks (tests/consumers): the header must
# build cleanly in g++ and clang++ users' projects; the C consumer uses gcc.
have_cmd g++ || required+=(g++)
have_cmd clang++ || required+=(clang)
have_cmd gcc || required+=(gcc)
# tmux: the iopool-top screen tests (tests/test_top_tmux.sh) run the tool in it.
have_cmd tmux || required+=(tmux)
# man-db (with groff-base): the man page test renders every generated page.
have_cmd man || required+=(man-db)
# valgrind: its headers (<valgrind/memcheck.h>) let the library describe its
# objects to memcheck, and the memcheck tests run it (ctest -L valgrind).
have_cmd valgrind || required+=(valgrind)
# abigail-tools: abidw and abidiff for the ABI check (scripts/abi.sh, the
# ctest test `abi`).
have_cmd abidiff && have_cmd abidw || required+=(abigail-tools)

# Sanitizer runtime: the only reliable check is to build and link with it.
sanitizer_flags() {
	case $1 in
	address) echo "-fsanitize=address,undefined" ;;
	thread) echo "-fsanitize=thread" ;;
	esac
}
sanitizer_pkgs() { # $1: address|thread; both runtimes come in one package
	local major
	major=$(compiler_major)
	if [ "$(compiler_kind)" = clang ]; then
		echo "libclang-rt-${major}-dev"
	else
		echo "libgcc-${major}-dev" # depends on libasan, libtsan and libubsan
	fi
}
check_sanitizer() {
	have_cmd "$cc_bin" || return 0 # checked again after the compiler is installed
	cat >"$tmp/san.c" <<'EOF'
#include <pthread.h>
static int counter;
static void *work(void *arg) { (void)arg; __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED); return 0; }
int main(void) { pthread_t t; pthread_create(&t, 0, work, 0); pthread_join(t, 0); return counter != 1; }
EOF
	# shellcheck disable=SC2086,SC2046
	$cc -std=c11 -pthread $(sanitizer_flags "$1") "$tmp/san.c" -o "$tmp/san" >"$tmp/san.log" 2>&1
}
if [ -n "$sanitize" ] && ! check_sanitizer "$sanitize"; then
	required+=("$(sanitizer_pkgs "$sanitize")")
fi

if [ "$mode" = deb ]; then
	for p in debhelper dpkg-dev build-essential lintian pkgconf; do
		have_pkg "$p" || required+=("$p")
	done
fi

if [ "$mode" = bench ]; then
	for p in libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev dpdk-dev; do
		have_pkg "$p" || peers+=("$p")
	done
	have_cmd gnuplot || plotting+=(gnuplot-nox)
	have_cmd jq || plotting+=(jq)
fi

# ---------------------------------------------------------------- install
if [ ${#required[@]} -eq 0 ] && [ ${#peers[@]} -eq 0 ] && [ ${#plotting[@]} -eq 0 ]; then
	say "all present (mode $mode${sanitize:+, SANITIZE=$sanitize}, CC=$cc)"
	exit 0
fi

apt_updated=0
apt_install() {
	if [ $apt_updated -eq 0 ]; then
		say "apt-get update"
		apt-get update -q
		apt_updated=1
	fi
	say "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

if [ "$(id -u)" -eq 0 ] && have_cmd apt-get; then
	if [ ${#required[@]} -gt 0 ]; then
		apt_install "${required[@]}"
		# A compiler that was just installed may itself lack the runtime.
		if [ -n "$sanitize" ] && ! check_sanitizer "$sanitize"; then
			apt_install "$(sanitizer_pkgs "$sanitize")"
			if ! check_sanitizer "$sanitize"; then
				echo "deps: $cc cannot build with $(sanitizer_flags "$sanitize"):" >&2
				cat "$tmp/san.log" >&2
				exit 1
			fi
		fi
	fi
	if [ ${#peers[@]} -gt 0 ]; then
		# The peers only widen the benchmark; their failure must not stop it.
		apt_install "${peers[@]}" || warn "could not install ${peers[*]}; the benchmark will report them as not installed"
	fi
	if [ ${#plotting[@]} -gt 0 ]; then
		apt_install "${plotting[@]}" || warn "could not install ${plotting[*]}; make bench will skip the plots"
	fi
	exit 0
fi

# Not root (or no apt-get): say exactly what to run.
if [ ${#required[@]} -gt 0 ]; then
	echo "deps: missing: ${required[*]}" >&2
	if [ -s "$tmp/san.log" ] && [ -n "$sanitize" ]; then
		echo "deps: (the $sanitize sanitizer check failed with:)" >&2
		sed 's/^/deps:   /' "$tmp/san.log" >&2
	fi
	echo "deps: install them with:" >&2
	echo "  sudo apt-get install -y --no-install-recommends ${required[*]}${peers[*]:+ ${peers[*]}}${plotting[*]:+ ${plotting[*]}}" >&2
	exit 1
fi
if [ ${#peers[@]} -gt 0 ]; then
	warn "benchmark peers not installed: ${peers[*]} (the benchmark will report them as not installed)"
	warn "to install them: sudo apt-get install -y --no-install-recommends ${peers[*]}"
fi
if [ ${#plotting[@]} -gt 0 ]; then
	warn "plotting tools not installed: ${plotting[*]} (make bench will skip the plots)"
	warn "to install them: sudo apt-get install -y --no-install-recommends ${plotting[*]}"
fi
exit 0
