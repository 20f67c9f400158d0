# SPDX-License-Identifier: MIT
# Sourced by the scripts that count instructions with callgrind
# (bench/callgrind.sh, bench/mp_callgrind.sh, bench/owner_callgrind.sh,
# tests/simd_callgrind.sh): the one way they run it and read its count.
#
#   cg_ir FUNCTION OUT LOG COMMAND [ARG...]
#
# Runs COMMAND under callgrind, counting only inside FUNCTION (a callgrind
# --toggle-collect pattern: the loop being measured, so start-up and
# set-up are not in the count), writes callgrind's output to OUT and the
# program's and callgrind's messages to LOG, and prints the instructions
# (Ir) counted. Fails (1) when COMMAND fails (LOG ends with its messages)
# and when nothing was counted in FUNCTION (LOG ends with a line saying
# so): a loop that was inlined or renamed must not read as a count of
# zero. CG_PRELOAD, when set, is the program's LD_PRELOAD.

cg_ir() {
	cg_fn=$1 cg_out=$2 cg_log=$3
	shift 3
	if ! env ${CG_PRELOAD:+LD_PRELOAD="$CG_PRELOAD"} valgrind --tool=callgrind --collect-atstart=no \
		--toggle-collect="$cg_fn" --callgrind-out-file="$cg_out" "$@" >"$cg_log" 2>&1; then
		return 1
	fi
	# "totals:" (or "summary:" in older callgrinds) holds the event totals.
	cg_n=$(sed -n 's/^totals: *\([0-9][0-9]*\).*/\1/p' "$cg_out" | head -n 1)
	[ -n "$cg_n" ] || cg_n=$(sed -n 's/^summary: *\([0-9][0-9]*\).*/\1/p' "$cg_out" | head -n 1)
	if [ -z "$cg_n" ] || [ "$cg_n" -eq 0 ]; then
		echo "no instructions counted in $cg_fn (was it inlined or renamed?): $*" >>"$cg_log"
		return 1
	fi
	echo "$cg_n"
}
