/* SPDX-License-Identifier: MIT */
/*
 * Two versions of iopool's inline fast paths (include/iopool/inline.h and
 * owner.h) in one process, for bench/inline_ab.sh: the loop of DPDK's
 * mempool_perf (get `keep` objects in bursts of `get`, put them back in
 * bursts of `put`) compiled twice, once against each version's headers,
 * and run alternately on one pool, on one pinned thread.
 *
 * Why: DPDK's matrix (iopool-mempool-perf) runs each repetition in its own
 * process, and on a shared VM a process's speed moves by 10-20% from one
 * to the next, more than most changes to the inline code. Here both
 * versions share the process, the pool and the per-CPU slot, and each
 * repetition times them back to back, the first alternating. What is left
 * is code layout: the same code placed elsewhere runs a few per cent
 * faster or slower, so the script builds each pair with the loops shifted
 * by 0, 16, 32 and 48 bytes (AB_PAD) and reports every layout.
 *
 * Compiled with -DAB_LOOP=NAME it is one loop, NAME; without, the driver:
 *   inline-ab [--reps N] [--size BYTES] [--cells KEEP:GET:PUT,...]
 * prints, per cell, the median rate of each version (millions of objects
 * got per second) and the ratio new/old, then their geometric mean.
 * Only for changes to the inline code: both loops call the library built
 * from the working tree (build/libiopool.a) on their slow paths, so the
 * two versions must agree on IOP__INLINE_ABI (the script checks).
 */
#define _GNU_SOURCE
#include <iopool.h>
#include <stdint.h>

#include "bench.h" /* now_ns(), escape() */

typedef uint64_t (*ab_loop_fn)(iop_pool_t *pool, void **table, unsigned keep, unsigned get, unsigned put,
			       unsigned rounds);

#ifdef AB_LOOP
#ifndef AB_PAD
#define AB_PAD 0
#endif
#define AB_STR_(x) #x
#define AB_STR(x) AB_STR_(x)
/* The loop's place in the text, moved by AB_PAD bytes (the file is
 * compiled with -fno-toplevel-reorder, so this comes before the loop). */
#if AB_PAD > 0
__asm__(".text\n\t.skip " AB_STR(AB_PAD) ", 0x90\n\t");
#endif

/* The matrix's own get and put (iop_get, iop_put). */
#include "iop_getput.h"

uint64_t AB_LOOP(iop_pool_t *pool, void **table, unsigned keep, unsigned get, unsigned put, unsigned rounds);
uint64_t AB_LOOP(iop_pool_t *pool, void **table, unsigned keep, unsigned get, unsigned put, unsigned rounds)
{
	uint64_t t0 = now_ns();
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned i = 0; i < keep; i += get)
			if (__builtin_expect(iop_get(pool, &table[i], get) != 0, 0))
				return 0;
		escape(table);
		for (unsigned i = 0; i < keep; i += put)
			iop_put(pool, &table[i], put);
	}
	return now_ns() - t0;
}

#else /* the driver */

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t ab_loop_old(iop_pool_t *, void **, unsigned, unsigned, unsigned, unsigned);
uint64_t ab_loop_new(iop_pool_t *, void **, unsigned, unsigned, unsigned, unsigned);

#define AB_REPS_MAX 201
#define AB_KEEP_MAX 512
#define AB_DEFAULT_CELLS                                                                   \
	"32:4:4,32:8:4,32:32:4,128:4:4,128:32:4,512:4:4,512:32:4,32:4:8,128:8:8,512:32:32," \
	"32:1:1,512:1:1,32:32:1"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
	fputs("usage: inline-ab [--reps N] [--size BYTES] [--cells KEEP:GET:PUT,...]\n"
	      "  (built and run by bench/inline_ab.sh)\n",
	      f);
}

int main(int argc, char **argv)
{
	unsigned reps = 15;
	size_t size = 2048;
	const char *cells = AB_DEFAULT_CELLS;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
			reps = (unsigned)strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
			size = strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--cells") == 0 && i + 1 < argc) {
			cells = argv[++i];
		} else {
			usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
			return strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	if (reps < 1 || reps > AB_REPS_MAX) {
		fprintf(stderr, "inline-ab: --reps is 1 to %d\n", AB_REPS_MAX);
		return 2;
	}

	/* One CPU: the first of the affinity mask, so both versions use
	 * the same per-CPU slot. */
	cpu_set_t set, one;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		for (int c = 0; c < CPU_SETSIZE; c++) {
			if (CPU_ISSET(c, &set)) {
				CPU_ZERO(&one);
				CPU_SET(c, &one);
				if (sched_setaffinity(0, sizeof(one), &one) != 0)
					fprintf(stderr, "inline-ab: pinning to CPU %d: %s\n", c, strerror(errno));
				break;
			}
		}
	}

	struct iop_pool_params prm = IOP_POOL_PARAMS_INIT;
	prm.name = "inline-ab";
	prm.obj_size = size;
	iop_pool_t *pool = iop_pool_create(&prm);
	if (pool == NULL) {
		fprintf(stderr, "inline-ab: iop_pool_create: %s\n", strerror(errno));
		return 1;
	}
	static void *table[AB_KEEP_MAX] __attribute__((aligned(64)));
	static double rate[2][AB_REPS_MAX];
	const ab_loop_fn fn[2] = { ab_loop_old, ab_loop_new };
	char *list = strdup(cells), *save = NULL;
	double log_sum = 0;
	unsigned ncells = 0;
	int failed = 0;

	printf("%-10s %9s %9s %8s   (M objects/s, median of %u; old q1-q3, new q1-q3)\n", "cell", "old", "new",
	       "new/old", reps);
	for (char *c = strtok_r(list, ",", &save); c != NULL; c = strtok_r(NULL, ",", &save)) {
		unsigned keep, get, put;
		if (sscanf(c, "%u:%u:%u", &keep, &get, &put) != 3 || keep == 0 || keep > AB_KEEP_MAX || get == 0 ||
		    put == 0 || keep % get != 0 || keep % put != 0) {
			fprintf(stderr, "inline-ab: a cell is KEEP:GET:PUT (KEEP up to %d, a multiple of both), not '%s'\n",
				AB_KEEP_MAX, c);
			return 2;
		}
		/* About 0.5 M objects a timing, as DPDK's 65536 a round x 8. */
		const unsigned rounds = 8u * 65536u / keep;
		for (int v = 0; v < 2; v++)
			fn[v](pool, table, keep, get, put, rounds / 8);
		for (unsigned r = 0; r < reps; r++) {
			for (unsigned j = 0; j < 2; j++) {
				const unsigned v = (r + j) & 1;
				const uint64_t ns = fn[v](pool, table, keep, get, put, rounds);
				if (ns == 0) {
					fprintf(stderr, "inline-ab: %s: a get failed\n", c);
					failed = 1;
					rate[v][r] = 0;
				} else {
					rate[v][r] = (double)rounds * keep / (double)ns * 1e3;
				}
			}
		}
		qsort(rate[0], reps, sizeof(double), cmp_double);
		qsort(rate[1], reps, sizeof(double), cmp_double);
		const double m0 = rate[0][reps / 2], m1 = rate[1][reps / 2];
		printf("%-10s %9.1f %9.1f %7.3fx   (%.0f-%.0f, %.0f-%.0f)\n", c, m0, m1, m0 > 0 ? m1 / m0 : 0.0,
		       rate[0][reps / 4], rate[0][3 * reps / 4], rate[1][reps / 4], rate[1][3 * reps / 4]);
		if (m0 > 0 && m1 > 0) {
			log_sum += log(m1 / m0);
			ncells++;
		}
	}
	printf("geometric mean new/old: %.3fx over %u cells\n", ncells ? exp(log_sum / ncells) : 0.0, ncells);
	free(list);
	iop_pool_destroy(pool);
	return failed;
}
#endif
