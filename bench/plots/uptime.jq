# SPDX-License-Identifier: MIT
# The uptime story (bench/uptime.c): resident memory and non-blocking
# failures over time. Rows: variant, seconds, resident MiB, failures so far.
.variants[] | .name as $v | .samples[] | [$v, .[0], .[1], .[2]] | @tsv
