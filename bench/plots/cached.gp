# SPDX-License-Identifier: MIT
# input: cached-results.json
# Cached memory of one pool with T idle threads: per-CPU caches hold at
# most an array per CPU whatever the threads; per-thread caches grow with
# the threads. Right: what iop_reclaim() from another thread gives back
# without the idle threads' help.
load dir."/common.gp"
set multiplot layout 1, 2 title "one pool of 2 KiB objects, T idle threads that each used it" noenhanced
set logscale x 2
set format x "%.0f"
set xlabel "threads"
set title "memory cached (lower is better)" noenhanced
set ylabel "KiB cached (log scale)"
set logscale y 10
set key inside top left
plot for [i = 0:nseries - 1] data index i using 2:3 with linespoints title columnheader(1)
unset label 100
set title "cached memory iop_reclaim() returns" noenhanced
set ylabel "percent"
unset logscale y
set yrange [0:105]
set key off
plot for [i = 0:nseries - 1] data index i using 2:4 with linespoints title columnheader(1)
unset multiplot
