# SPDX-License-Identifier: MIT
# input: bench-results.json
# Thread scaling (case "threads"): the aggregate rate should grow with T up
# to the number of cores and then stay flat; the CPU time per pair should
# stay flat throughout (no shared lock, no cache-line ping-pong).
load dir."/common.gp"
set multiplot layout 1, 2 title "T threads doing alloc+free pairs (2 KiB objects)" noenhanced
set logscale x 2
set format x "%.0f"
set xlabel "threads"

set title "aggregate rate (higher is better)" noenhanced
set ylabel "million pairs per second, all threads"
set yrange [0:*]
# The key in two rows above the curves, with room made for it.
set key inside top left horizontal maxrows 2 width -1
set offsets 0, 0, graph 0.22, 0
plot for [i = 0:nseries - 1] data index i using 2:3 title columnheader(1)

unset label 100
set title "CPU time per pair, per thread (lower is better)" noenhanced
set ylabel "thread CPU ns per pair (log scale)"
set logscale y 10
set yrange [*:*]
set offsets 0, 0, 0, 0
set format y "%g"
set key off
plot for [i = 0:nseries - 1] data index i using 2:4 title columnheader(1)
unset multiplot
