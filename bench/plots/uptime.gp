# SPDX-License-Identifier: MIT
# input: uptime-results.json
# The KTLS uptime story: load, a quiet phase in which decay trims, a sudden
# return of load, three times, on an OS that is slow and fails a quarter of
# its chunk requests. Above: resident memory falls within a few decay
# intervals of each quiet phase (the worker keeps its reserve). Below: the
# refill worker keeps IOP_NOWAIT fed; refilling inline fails at every
# return of load.
load dir."/common.gp"
set terminal svg size 960,720 dynamic font "sans,13" background rgb "white"
set output out
set multiplot layout 2,1 title "iopool-uptime: load, quiet, sudden load (slow and failing OS)" noenhanced
set xlabel "seconds"
set ylabel "resident memory (MiB)"
set yrange [0:*]
set style data lines
# The machine's label (common.gp) goes under the lower plot only.
unset label 100
set bmargin 3
plot for [i = 0:nseries - 1] data index i using 2:3 with lines title columnheader(1)
set ylabel "non-blocking failures so far"
set bmargin 7
set label 100 machine."\n".note at screen 0.01, screen 0.035 left noenhanced font ",10" tc rgb "#555555"
plot for [i = 0:nseries - 1] data index i using 2:4 with steps title columnheader(1)
unset multiplot
