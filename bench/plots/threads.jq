# SPDX-License-Identifier: MIT
# Case "threads": T threads doing pairs. Rows: allocator, T, Mops/s, CPU ns per pair per thread.
.results[] | select(.case == "threads" and .status == "ok")
	| [.allocator, (.param | tonumber), .mops, .ns_per_op] | @tsv
