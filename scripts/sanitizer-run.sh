#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run a command (ctest) whose children are sanitizer-instrumented programs,
# working around the sanitizer runtimes' trouble with high ASLR entropy.
#
#   scripts/sanitizer-run.sh address|thread COMMAND [ARGS...]
#
# Why: the TSan and ASan runtimes of gcc 12 and clang 14 (Debian 12) assume
# the layout that vm.mmap_rnd_bits=28 gives. Kernels (or distributions) that
# raise it, up to 32 on x86-64, make TSan abort at start with
#     FATAL: ThreadSanitizer: unexpected memory mapping 0x5b9e...
# and make ASan die at random with "AddressSanitizer:DEADLYSIGNAL". Measured on
# this project's Debian 12 machines (kernel 6.x) with a tiny threaded program:
#     mmap_rnd_bits 28: TSan 0/200 runs fail     (the default there)
#     mmap_rnd_bits 30: TSan 15/20 fail
#     mmap_rnd_bits 32: TSan 20/20 fail, ASan 7/20 fail
#     32 under `setarch -R`: TSan 0/20, ASan 0/20 fail
# Newer TSan runtimes (LLVM 18+) re-exec themselves without ASLR; these do not.
#
# What this does, in order of preference:
#   1. if the sanitized probe runs cleanly as things are, run COMMAND as is;
#   2. else run COMMAND under `setarch $(uname -m) -R` (ASLR off for this
#      process tree only: nothing global changes, no root needed). Containers
#      whose seccomp profile forbids personality(ADDR_NO_RANDOMIZE) refuse it;
#   3. else, as root, lower vm.mmap_rnd_bits to 28 (system-wide until reboot;
#      it is said so on stderr) and run COMMAND;
#   4. else fail with instructions, before running anything.
# "Runs cleanly" means a threaded probe built with the same compiler and
# sanitizer passes several runs in a row, and mmap_rnd_bits (when readable:
# it is root-only) is at most 28, since at 29-32 failures are random.
#
# Environment: CC (default cc), as for the build. Default sanitizer options
# are set unless the caller set them.
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: $0 address|thread COMMAND [ARGS...]" >&2
	exit 2
fi
san=$1
shift
case $san in
address) flags=("-fsanitize=address,undefined") ;;
thread) flags=(-fsanitize=thread) ;;
*)
	echo "sanitizer-run: unknown sanitizer '$san'" >&2
	exit 2
	;;
esac

# Useful defaults; a caller's own settings win.
export UBSAN_OPTIONS=${UBSAN_OPTIONS-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS-second_deadlock_stack=1}

note() { printf 'sanitizer-run: %s\n' "$*" >&2; }

rnd_file=/proc/sys/vm/mmap_rnd_bits
rnd_max_ok=28
rnd_bits() { cat "$rnd_file" 2>/dev/null || echo unknown; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iop-san.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/probe.c" <<'EOF'
#include <pthread.h>
#include <stdlib.h>
static int shared;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *work(void *arg)
{
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&lock);
		shared++;
		pthread_mutex_unlock(&lock);
	}
	free(malloc(64));
	return arg;
}
int main(void)
{
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, work, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	return shared != 4000;
}
EOF
cc=${CC:-cc}
# shellcheck disable=SC2086 # CC may carry flags on purpose
if ! $cc -std=c11 -O1 -pthread "${flags[@]}" "$tmp/probe.c" -o "$tmp/probe" 2>"$tmp/cc.log"; then
	note "cannot build a -fsanitize=$san program with $cc (run scripts/deps.sh):"
	cat "$tmp/cc.log" >&2
	exit 1
fi

# probe_ok [PREFIX...]: the probe passes 10 runs in a row under PREFIX (at
# mmap_rnd_bits=32 one ASan run in three fails: 10 leave a 1% chance to miss).
probe_ok() {
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		timeout 20 "$@" "$tmp/probe" >"$tmp/probe.log" 2>&1 || return 1
	done
}
# run COMMAND in place of this script (exec skips the EXIT trap: clean first).
run() {
	rm -rf "$tmp"
	exec "$@"
}
rnd_ok() {
	local bits
	bits=$(rnd_bits)
	[ "$bits" = unknown ] || [ "$bits" -le "$rnd_max_ok" ]
}

# 1. As things are.
if probe_ok; then
	rnd_ok && run "$@"
	note "vm.mmap_rnd_bits=$(rnd_bits) is above $rnd_max_ok: the $san sanitizer would fail at random"
else
	note "the $san sanitizer probe fails as things are (vm.mmap_rnd_bits=$(rnd_bits)):"
	sed -n '1,3s/^/sanitizer-run:   probe: /p' "$tmp/probe.log" >&2
fi

# 2. ASLR off for this process tree.
setarch_cmd=(setarch "$(uname -m)" -R)
if "${setarch_cmd[@]}" true 2>/dev/null && probe_ok "${setarch_cmd[@]}"; then
	note "running under '${setarch_cmd[*]}' (address randomisation off for the tests only)"
	run "${setarch_cmd[@]}" "$@"
fi

# 3. Lower the entropy system-wide.
if [ "$(id -u)" -eq 0 ] && [ -w "$rnd_file" ]; then
	old=$(rnd_bits)
	if echo "$rnd_max_ok" >"$rnd_file" 2>/dev/null && probe_ok; then
		note "setarch -R is not allowed here; lowered vm.mmap_rnd_bits from $old to $rnd_max_ok"
		note "system-wide until reboot (restore with: sysctl -w vm.mmap_rnd_bits=$old)"
		run "$@"
	fi
fi

# 4. Give up, saying what would help.
note "no workaround worked. Either allow personality(ADDR_NO_RANDOMIZE) (setarch -R)"
note "or, as root: sysctl -w vm.mmap_rnd_bits=$rnd_max_ok. Last probe output:"
sed 's/^/sanitizer-run:   /' "$tmp/probe.log" >&2
exit 1
