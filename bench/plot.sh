#!/bin/sh
# SPDX-License-Identifier: MIT
# Plots from the benchmarks' JSON: one SVG per bench/plots/NAME.gp whose
# input file exists.
#
#   sh bench/plot.sh [RESULTS_DIR [OUT_DIR]]    defaults: build docs
#
# A plot is two small files in bench/plots/:
#   NAME.jq   turns the input into rows "series<TAB>x<TAB>y[<TAB>y2...]"
#             (jq -r; an input of several JSON documents, one per line, is
#             read as a stream, as jq reads it)
#   NAME.gp   draws them with gnuplot; a line "# input: FILE" names the
#             input, a file in RESULTS_DIR
# This script groups the rows by series (one gnuplot data block per series,
# headed by its name, in the order the series first appear) and runs gnuplot
# with these variables set:
#   data      the data file               out      the SVG to write
#   machine   where the input was measured (its "machine" object)
#   note      the input file, repetitions, --quick
#   nseries   how many series             dir      bench/plots
# A plot whose input is missing is skipped with a message saying so; to add
# one (the spike and uptime scenarios, another benchmark), drop NAME.jq and
# NAME.gp beside the others.
#
# Needs gnuplot (Debian: gnuplot-nox) and jq; `scripts/deps.sh bench`
# installs both. Exit status: 0 when every plot whose input exists was
# drawn, 1 otherwise (2 when gnuplot or jq is missing).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
plots=$here/plots
results=${1:-build}
out_dir=${2:-docs}

for tool in gnuplot jq; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "plot.sh: $tool is not installed (scripts/deps.sh bench installs it): no plots drawn" >&2
		exit 2
	fi
done
mkdir -p "$out_dir"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/iop-plot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The machine and the run, from the input's first document.
describe() {
	jq -rs '.[0] |
		(if .machine then .machine |
			"\(.cpu), \(.cores) cores, \(.kernel), \(.compiler), \(.libc); \(.build)"
		 else "machine not recorded in the input" end),
		(if .config then .config |
			"median of \(.reps) repetitions\(if .quick then ", --quick (short loops)" else "" end)"
		 else "" end) +
		(if .machine.loadavg_start then
			"; load average \(.machine.loadavg_start | split(" ")[0]) before, " +
			"\(.machine.loadavg_end | split(" ")[0]) after (other work on the machine)"
		 else "" end)' "$1"
}

drawn=0
failed=0
for gp in "$plots"/*.gp; do
	name=$(basename "$gp" .gp)
	[ "$name" = common ] && continue
	input=$(sed -n 's/^# input: *//p' "$gp" | head -n 1)
	if [ -z "$input" ]; then
		echo "plot.sh: $gp names no input ('# input: FILE'): skipped" >&2
		failed=$((failed + 1))
		continue
	fi
	if [ ! -f "$results/$input" ]; then
		echo "plot.sh: $name: no $results/$input: skipped"
		continue
	fi
	data=$tmp/$name.dat
	if ! jq -r -f "$plots/$name.jq" "$results/$input" >"$tmp/$name.rows"; then
		echo "plot.sh: $name: jq could not read $results/$input" >&2
		failed=$((failed + 1))
		continue
	fi
	awk -F '\t' '
		BEGIN { n = 0 } # numeric, so that block[] and rows[] keys agree
		!($1 in block) { block[$1] = n; names[n++] = $1 }
		{ rows[block[$1]] = rows[block[$1]] $0 "\n" }
		END {
			for (i = 0; i < n; i++)
				printf "%s\"%s\"\n%s", i ? "\n\n" : "", names[i], rows[i]
			print n > "/dev/stderr"
		}' "$tmp/$name.rows" >"$data" 2>"$tmp/$name.n"
	nseries=$(cat "$tmp/$name.n")
	if [ "$nseries" -eq 0 ]; then
		echo "plot.sh: $name: $results/$input has no results for it: skipped"
		continue
	fi
	machine=$(describe "$results/$input" | sed -n 1p)
	note="$input: $(describe "$results/$input" | sed -n 2p)"
	svg=$out_dir/$name.svg
	# Variables go in as gnuplot strings: quotes and backslashes escaped.
	esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
	if gnuplot -e "data=\"$(esc "$data")\"; out=\"$(esc "$svg")\"; dir=\"$(esc "$plots")\"" \
		-e "machine=\"$(esc "$machine")\"; note=\"$(esc "$note")\"; nseries=$nseries" \
		"$gp" 2>"$tmp/$name.err"; then
		echo "plot.sh: $svg ($nseries series, from $results/$input)"
		drawn=$((drawn + 1))
	else
		echo "plot.sh: $name: gnuplot failed:" >&2
		cat "$tmp/$name.err" >&2
		failed=$((failed + 1))
	fi
done
echo "plot.sh: $drawn plot(s) drawn in $out_dir/"
[ "$failed" -eq 0 ]
