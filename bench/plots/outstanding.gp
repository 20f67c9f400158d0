# SPDX-License-Identifier: MIT
# input: bench-results.json
# The outstanding-N curve (case "outstanding"): N objects allocated before
# any is freed, as a receive burst does. Where a curve bends up, N has
# outgrown that allocator's per-thread cache.
load dir."/common.gp"
set title "N allocations, then N frees (2 KiB objects)" noenhanced
set xlabel "N, objects outstanding"
set ylabel "ns per alloc+free pair (log scale; lower is better)"
set logscale x 2
set logscale y 10
set format x "%.0f"
set format y "%g"
plot for [i = 0:nseries - 1] data index i using 2:3 title columnheader(1)
