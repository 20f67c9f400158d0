# SPDX-License-Identifier: MIT
# Settings every plot shares; each NAME.gp loads this first. plot.sh sets
# the variables: data, out, machine, note, nseries, dir.

set terminal svg size 960,560 dynamic font "sans,13" background rgb "white"
set output out
set encoding utf8

# The first series is iopool's (the benchmark lists it first): a thick red
# line, so the eye finds it; the peers in distinct colours and markers.
set linetype 1 lc rgb "#d62728" lw 3.0 pt 7 ps 0.9
set linetype 2 lc rgb "#1f77b4" lw 1.5 pt 5 ps 0.7
set linetype 3 lc rgb "#2ca02c" lw 1.5 pt 9 ps 0.8
set linetype 4 lc rgb "#9467bd" lw 1.5 pt 11 ps 0.8
set linetype 5 lc rgb "#ff7f0e" lw 1.5 pt 13 ps 0.8
set linetype 6 lc rgb "#8c564b" lw 1.5 pt 4 ps 0.7
set linetype 7 lc rgb "#17becf" lw 1.5 pt 6 ps 0.7
set linetype 8 lc rgb "#7f7f7f" lw 1.5 pt 8 ps 0.7
set linetype cycle 8

set style data linespoints
set grid back lc rgb "#e0e0e0" lw 1
set border 3 lc rgb "#555555"
set tics nomirror
set key outside right top vertical noenhanced samplen 2.5 spacing 1.2 title "allocator"
set bmargin 6

# Where and how it was measured, at the foot of the picture.
set label 100 machine."\n".note at screen 0.01, screen 0.055 left noenhanced font ",10" tc rgb "#555555"
