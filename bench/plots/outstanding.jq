# SPDX-License-Identifier: MIT
# Case "outstanding": N allocations, then N frees. Rows: allocator, N, ns per pair.
.results[] | select(.case == "outstanding" and .status == "ok")
	| [.allocator, (.param | tonumber), .ns_per_op] | @tsv
