/* SPDX-License-Identifier: MIT */
/*
 * A loop for callgrind (tests/simd_callgrind.sh): bursts of COUNT objects
 * of 2 KiB through iop_alloc_bulk() and iop_free_bulk(), the count not
 * known to the compiler, in a pool whose simd byte (inline.h, IOP__SIMD_*)
 * is as the library set it or cleared:
 *
 *   simd_count set|cleared COUNT N     runs N bursts in cg_simd_loop()
 *
 * It prints the byte as the library set it. The inline bursts choose
 * their AVX and AVX2 paths by that byte alone, so with it cleared they
 * run the SSE2 paths, which take more instructions; if they ignored the
 * byte, both runs would count the same.
 */
#include "rseq_stand_in.h" /* bench/ */

#include <iopool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OBJ_SIZE 2048
#define COUNT_MAX 64

void cg_simd_loop(iop_pool_t *pool, void **objs, unsigned n, unsigned long iters);

__attribute__((noinline, noclone)) void cg_simd_loop(iop_pool_t *pool, void **objs, unsigned n,
						     unsigned long iters)
{
	for (unsigned long i = 0; i < iters; i++) {
		if (iop_alloc_bulk(pool, objs, n) != n) {
			fprintf(stderr, "simd_count: iop_alloc_bulk of %u failed\n", n);
			exit(1);
		}
		__asm__ volatile("" : : "r"(objs) : "memory");
		iop_free_bulk(pool, objs, n);
	}
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[1], "set") != 0 && strcmp(argv[1], "cleared") != 0)) {
		fprintf(stderr, "usage: simd_count set|cleared COUNT N\n");
		return 2;
	}
	/* volatile: the count must stay a variable, as a ring's burst is. */
	volatile unsigned count = (unsigned)strtoul(argv[2], NULL, 10);
	unsigned long iters = strtoul(argv[3], NULL, 10);
	if (count < 1 || count > COUNT_MAX) {
		fprintf(stderr, "simd_count: COUNT is 1 to %d\n", COUNT_MAX);
		return 2;
	}
	/* valgrind has no rseq: CPU 0 in this thread's rseq area, or every
	 * call would take the per-thread fallback (bench/rseq_stand_in.h). */
	bench_rseq_stand_in();
	struct iop_pool_params p = IOP_POOL_PARAMS_INIT;
	p.name = "simd_count";
	p.obj_size = OBJ_SIZE;
	iop_pool_t *pool = iop_pool_create(&p);
	if (!pool) {
		perror("iop_pool_create");
		return 2;
	}
	struct iop__pool_hot *hot = (struct iop__pool_hot *)(void *)pool;
	/* Compiled for AVX, the bursts use it without asking the byte. */
#ifdef __AVX__
	const char *built = ", compiled for AVX";
#else
	const char *built = "";
#endif
	printf("simd byte %u, cache mode %s%s\n", (unsigned)hot->simd,
	       iop_cache_mode() == IOP_CACHE_MODE_CPU ? "cpu" : "thread", built);
	if (strcmp(argv[1], "cleared") == 0)
		hot->simd = 0;
	void *objs[COUNT_MAX];
	/* The first burst fills the CPU's slot (the slow path, not counted). */
	cg_simd_loop(pool, objs, count, 1);
	cg_simd_loop(pool, objs, count, iters);
	iop_pool_destroy(pool);
	return 0;
}
