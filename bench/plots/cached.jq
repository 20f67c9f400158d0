# SPDX-License-Identifier: MIT
# Cached memory against threads (bench/cached.c). Rows: mode, threads,
# cached KiB, percent of it iop_reclaim() gave back.
.results[] | [("per-" + .mode), .threads, (.cached_bytes / 1024),
	(if .cached_bytes > 0 then 100 * .reclaimed_bytes / .cached_bytes else 100 end)] | @tsv
