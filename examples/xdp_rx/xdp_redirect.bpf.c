// SPDX-License-Identifier: MIT
/*
 * The XDP program of iop-xdp-rx: every frame that arrives on the receive
 * queue of a bound AF_XDP socket goes to that socket; frames on a queue
 * without one go on to the kernel's stack (XDP_PASS). The user-space side
 * classifies what it receives (test frames, short, malformed, foreign), so
 * this program does not parse: malformed frames must reach the socket for
 * the receiver's checks to be exercised.
 *
 * Built by clang -target bpf at build time (examples/CMakeLists.txt) and
 * embedded into the executable, so the program needs no file at run time.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Queue index -> AF_XDP socket. veth pairs have one queue by default; 64
 * leaves room for multi-queue devices. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

/* Frames this program saw, per CPU (index 0): the receiver compares it with
 * what the socket delivered, so a frame lost between XDP and the rings is
 * visible as such. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen_map SEC(".maps");

SEC("xdp")
int iop_xdp_redirect(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *seen = bpf_map_lookup_elem(&seen_map, &zero);
	if (seen)
		(*seen)++;
	/* XDP_PASS when no socket is bound to this queue. */
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

/* Neither helper used here is GPL-only; "Dual MIT/GPL" is the spelling the
 * kernel's license check knows. */
char _license[] SEC("license") = "Dual MIT/GPL";
