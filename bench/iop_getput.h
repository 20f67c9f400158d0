/* SPDX-License-Identifier: MIT */
/*
 * iop_get() and iop_put(): DPDK's get and put of a burst, as a user of
 * iopool writes them, for the matrix's loops (mempool_perf.c) and for
 * bench/inline_ab.c, which must time the same calls. Include after
 * <iopool.h>.
 */
#ifndef IOP_BENCH_GETPUT_H
#define IOP_BENCH_GETPUT_H

/*
 * The two wrappers are always_inline, as rte_mempool_get_bulk/put_bulk
 * are (__rte_always_inline): a user who writes iop_alloc_bulk() in a loop
 * gets it inlined there, with the burst's size as the compiler knows it.
 * Plain `static inline`, GCC 12 called iop_get() out of line from all 13
 * loops (it is large once the bulk call is inlined into it), so the size
 * was a variable even in the const cells and every get paid a call: at
 * bursts of 4, 38.3 instructions per object got and put against 23.8
 * inlined (callgrind, a copy of the const loop built at -O2). In the
 * matrix's own loop (mempool_perf.c), with the constant-size sequences
 * since: 19.97, DPDK's 19.91 (bench/mp_callgrind.sh).
 */
static inline __attribute__((always_inline)) int iop_get(iop_pool_t *pool, void **objs, unsigned n)
{
	if (n == 1) {
		void *p = iop_alloc(pool);

		if (__builtin_expect(p == NULL, 0))
			return -1;
		objs[0] = p;
		return 0;
	}
	unsigned got = iop_alloc_bulk(pool, objs, n);
	if (__builtin_expect(got == n, 1))
		return 0;
	if (got)
		iop_free_bulk(pool, objs, got);
	return -1;
}

static inline __attribute__((always_inline)) void iop_put(iop_pool_t *pool, void **objs, unsigned n)
{
	if (n == 1)
		iop_free(pool, objs[0]);
	else
		iop_free_bulk(pool, objs, n);
}

#endif
