/* SPDX-License-Identifier: MIT */
/*
 * The anatomy of the inlined fast path: one alloc+free pair of a 2 KiB
 * object in a loop, as bench/cases.h's fastpath but without touching the
 * object, so that only the allocator's instructions are timed. anatomy.sh
 * compiles this file against variants of iopool.h with parts of the fast
 * path removed (the statistics counter, the owner check) to show what each
 * part costs. Prints the best of 7 loops of 5e7 pairs, in ns per pair.
 */
#include <iopool.h>
#include <stdio.h>
#include <time.h>

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(void)
{
	struct iop_pool_params p = IOP_POOL_PARAMS_INIT;
	p.obj_size = 2048;
	iop_pool_t *pool = iop_pool_create(&p);
	if (!pool) {
		perror("iop_pool_create");
		return 1;
	}
	const long n = 50000000;
	double best = 1e9;
	for (int r = 0; r < 7; r++) {
		double t0 = now_ns();
		for (long i = 0; i < n; i++) {
			void *x = iop_alloc(pool);
			__asm__ volatile("" : : "r"(x) : "memory");
			iop_free(pool, x);
		}
		double t = (now_ns() - t0) / (double)n;
		if (t < best)
			best = t;
	}
	printf("%.2f\n", best);
	return iop_pool_destroy(pool) == 0 ? 0 : 1;
}
