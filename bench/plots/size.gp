# SPDX-License-Identifier: MIT
# input: bench-results.json
# What an alloc+free pair costs as the object grows (case "size"): pools
# cost the same at every size, general allocators change size classes and,
# past their thresholds, go to the OS.
load dir."/common.gp"
set title "One alloc+free pair, same thread, by object size" noenhanced
set xlabel "object size"
set ylabel "ns per alloc+free pair (log scale; lower is better)"
set logscale x 2
set xrange [45:370000] # room for the first and last labels
set logscale y 10
set xtics ("64 B" 64, "256 B" 256, "1 KiB" 1024, "2 KiB" 2048, "4 KiB" 4096, \
	"16 KiB" 16384, "64 KiB" 65536, "256 KiB" 262144)
set format y "%g"
plot for [i = 0:nseries - 1] data index i using 2:3 title columnheader(1)
