# SPDX-License-Identifier: MIT
# Case "size": one alloc+free pair by object size. Rows: allocator, bytes, ns.
def bytes: if endswith("KiB") then (.[:-3] | tonumber) * 1024
	elif endswith("MiB") then (.[:-3] | tonumber) * 1048576
	elif endswith("B") then .[:-1] | tonumber
	else tonumber end;
.results[] | select(.case == "size" and .status == "ok")
	| [.allocator, (.param | bytes), .ns_per_op] | @tsv
