# The uptime story (bench/uptime.c): resident memory and non-blocking
# failures over time, for iopool with the refill worker, iopool refilling
# inline, and malloc. Reads the data file iopool-uptime --data writes (one
# block per variant: t_s resident_mib nowait_failures) and writes an SVG:
#
#   gnuplot -e "datafile='build/uptime.dat'; outfile='docs/uptime.svg'" bench/plots/uptime.gp
if (!exists("datafile")) datafile = 'build/uptime.dat'
if (!exists("outfile")) outfile = 'docs/uptime.svg'

set terminal svg size 900,640 dynamic font "sans,11"
set output outfile
set multiplot layout 2,1 title "iopool-uptime: load, quiet, sudden load (slow and failing OS)"
set grid
set key top right
set xlabel "time (s)"

set ylabel "resident memory (MiB)"
plot datafile index 0 using 1:2 with lines lw 2 title "iopool + refill worker", \
     datafile index 1 using 1:2 with lines lw 2 title "iopool, inline refill", \
     datafile index 2 using 1:2 with lines lw 2 title "malloc"

set ylabel "non-blocking failures (cumulative)"
plot datafile index 0 using 1:3 with steps lw 2 title "iopool + refill worker", \
     datafile index 1 using 1:3 with steps lw 2 title "iopool, inline refill"
unset multiplot
