/* SPDX-License-Identifier: MIT */
/*
 * One timed loop of iop_heap_alloc + iop_heap_free pairs, compiled with and
 * without IOP_PROFILE (the includer decides) for the profiling cost. A
 * loop_fn (bench.h): arg points to the size; returns elapsed ns.
 */
#include "bench.h"

uint64_t VM_PAIRS_FN(void *arg, uint64_t iters)
{
	size_t size = *(const size_t *)arg;
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		void *p = iop_heap_alloc(size);
		if (__builtin_expect(p == NULL, 0))
			return LOOP_FAILED;
		touch(p, i);
		iop_heap_free(p);
	}
	return now_ns() - t0;
}
