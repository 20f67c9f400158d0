# SPDX-License-Identifier: MIT
# The spike (bench/spike.c): buffers in flight over the first 30 ms of each
# mode's first run. Rows: mode, ms since the first burst, buffers in flight.
.results[] | .mode as $m | .series[] | select(.[0] >= 0 and .[0] < 30)
	| [$m, .[0], .[1]] | @tsv
