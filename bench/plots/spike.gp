# SPDX-License-Identifier: MIT
# input: spike-results.json
# The swiotlb throttling experiment: every 2 ms all producers submit a burst
# at once. malloc follows the burst; the pool that fails and the fixed array
# are flat at the limit (and drop what does not fit); the waiting, throttled
# pool is flat at the throttle threshold and drops nothing.
load dir."/common.gp"
set title "Buffers in flight during bursts (limit L = 256, throttled from 70%)" noenhanced
set xlabel "ms since the first burst"
set ylabel "buffers in flight"
set yrange [0:*]
set arrow from graph 0, first 256 to graph 1, first 256 nohead dashtype 2 lc rgb "#888888"
set label "L" at graph 1.01, first 256 left
plot for [i = 0:nseries - 1] data index i using 2:3 with lines title columnheader(1)
