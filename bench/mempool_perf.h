/* SPDX-License-Identifier: MIT */
/*
 * iopool-mempool-perf internals shared by the driver (mempool_perf.c, which
 * also runs iopool) and DPDK's side (mempool_perf_dpdk.c, compiled with
 * DPDK's flags and run in a child process of its own, since EAL is
 * process-wide).
 *
 * The matrix is DPDK's app/test/test_mempool_perf.c: each core gets n_keep
 * objects in bulks of n_get_bulk, then puts them back in bulks of
 * n_put_bulk, over and over for a fixed time; the rate is objects got per
 * second, summed over the cores.
 */
#ifndef IOPOOL_MEMPOOL_PERF_H
#define IOPOOL_MEMPOOL_PERF_H

#include <stddef.h>
#include <stdint.h>

#include "bench.h"

/* DPDK's bulk sizes and kept counts (its test also has larger ones). */
#define MP_NBULK 4u
#define MP_NKEEP 3u
extern const unsigned mp_bulks[MP_NBULK];   /* 1, 4, 8, 32 */
extern const unsigned mp_keeps[MP_NKEEP];   /* 32, 128, 512 */
#define MP_KEEP_MAX 512u
#define MP_BULK_MAX 32u
/* Every n_get_bulk x n_put_bulk x n_keep with sizes in variables, then
 * get = put with every size a literal constant (DPDK's const variants). */
#define MP_VAR_CELLS (MP_NBULK * MP_NBULK * MP_NKEEP)
#define MP_CELLS (MP_VAR_CELLS + MP_NBULK * MP_NKEEP)
#define MP_CORES_MAX 2u

struct mp_cell {
	unsigned keep, get, put;
	int is_const;
	unsigned bulk_idx, keep_idx;   /* const cells: which literal loop */
};

/* Cell i of the matrix (0 <= i < MP_CELLS). */
void mp_cell_get(unsigned i, struct mp_cell *c);

/*
 * Objects got per round between two reads of the clock: DPDK's N (65536),
 * a multiple of every n_keep. At about a nanosecond an object that is
 * 65 us, so a cell overruns its time by less than that.
 */
#define MP_ROUND 65536u

/*
 * One timed loop of a cell on one core: returns the objects got until
 * `deadline` (CLOCK_MONOTONIC ns); on an allocation failure stops, puts
 * back what it holds and says why in why[0..len).
 */
typedef uint64_t (*mp_loop_fn)(void *ctx, const struct mp_cell *c, void **table, uint64_t deadline, char *why,
			       size_t len);

/*
 * The loop, written once as a macro and instantiated for each allocator
 * (A_GET/A_PUT/A_CTX, defined by the includer) with the sizes as variables
 * and, for the const cells, as literals, so that the compiler sees the
 * bulk size at each call as DPDK's const variants let it.
 *   A_GET(ctx, objs, n)  0 when all n were got, else -1 (and holds none)
 *   A_PUT(ctx, objs, n)
 */
#define MP_DEFINE_LOOP(name, KEEP, GET, PUT)                                                         \
	static uint64_t name(void *vctx, const struct mp_cell *c, void **table, uint64_t deadline,  \
			     char *why, size_t len)                                                 \
	{                                                                                            \
		A_CTX *ctx = vctx;                                                                   \
		const unsigned keep = (KEEP), nget = (GET), nput = (PUT);                            \
		uint64_t done = 0;                                                                   \
		(void)c;                                                                             \
		do {                                                                                 \
			for (unsigned r = 0; r < MP_ROUND / keep; r++) {                             \
				for (unsigned i = 0; i < keep; i += nget) {                          \
					if (__builtin_expect(A_GET(ctx, &table[i], nget) != 0, 0)) { \
						for (unsigned k = 0; k < i; k++)                     \
							A_PUT(ctx, &table[k], 1);                    \
						snprintf(why, len,                                   \
							 "get of %u failed with %u objects held "    \
							 "by this core",                             \
							 nget, i);                                   \
						return done;                                         \
					}                                                            \
				}                                                                    \
				escape(table);                                                       \
				for (unsigned i = 0; i < keep; i += nput)                            \
					A_PUT(ctx, &table[i], nput);                                 \
			}                                                                            \
			done += MP_ROUND;                                                            \
		} while (now_ns() < deadline);                                                       \
		return done;                                                                         \
	}

/* The variable loop and the 12 literal ones, and a picker for a cell. */
#define MP_DEFINE_LOOPS(prefix)                                                                      \
	MP_DEFINE_LOOP(prefix##_var, c->keep, c->get, c->put)                                        \
	MP_DEFINE_LOOP(prefix##_1_32, 32, 1, 1)                                                      \
	MP_DEFINE_LOOP(prefix##_1_128, 128, 1, 1)                                                    \
	MP_DEFINE_LOOP(prefix##_1_512, 512, 1, 1)                                                    \
	MP_DEFINE_LOOP(prefix##_4_32, 32, 4, 4)                                                      \
	MP_DEFINE_LOOP(prefix##_4_128, 128, 4, 4)                                                    \
	MP_DEFINE_LOOP(prefix##_4_512, 512, 4, 4)                                                    \
	MP_DEFINE_LOOP(prefix##_8_32, 32, 8, 8)                                                      \
	MP_DEFINE_LOOP(prefix##_8_128, 128, 8, 8)                                                    \
	MP_DEFINE_LOOP(prefix##_8_512, 512, 8, 8)                                                    \
	MP_DEFINE_LOOP(prefix##_32_32, 32, 32, 32)                                                   \
	MP_DEFINE_LOOP(prefix##_32_128, 128, 32, 32)                                                 \
	MP_DEFINE_LOOP(prefix##_32_512, 512, 32, 32)                                                 \
	static mp_loop_fn prefix##_pick(const struct mp_cell *c)                                     \
	{                                                                                            \
		static const mp_loop_fn lit[MP_NBULK][MP_NKEEP] = {                                  \
			{ prefix##_1_32, prefix##_1_128, prefix##_1_512 },                           \
			{ prefix##_4_32, prefix##_4_128, prefix##_4_512 },                           \
			{ prefix##_8_32, prefix##_8_128, prefix##_8_512 },                           \
			{ prefix##_32_32, prefix##_32_128, prefix##_32_512 },                        \
		};                                                                                   \
		return c->is_const ? lit[c->bulk_idx][c->keep_idx] : prefix##_var;                   \
	}

/*
 * Worker threads, one per core, each pinned to its own CPU (the i-th CPU of
 * the process's affinity mask), kept for the whole run so that a DPDK lcore
 * registration and iopool's thread caches outlive a cell.
 */
struct mp_runner;
/* thread_init runs once on each worker (DPDK: rte_thread_register); 0 or
 * -1 with a reason. Returns NULL with a reason in why. */
struct mp_runner *mp_runner_start(unsigned nthreads, int (*thread_init)(char *why, size_t len), char *why,
				  size_t len);
/* Per-core results of one run of a cell. */
struct mp_result {
	double rate;                   /* objects/s, summed over the cores */
	double core_rate[MP_CORES_MAX];
	uint64_t locks, contended;     /* iopool's mutexes, all cores (mempool_perf.c) */
	uint64_t wait_ns;              /* time the contended ones waited */
	uint64_t lock_ns, hold_ns;     /* --lock-timing: in lock calls, and held */
	char why[160];                 /* non-empty: the cell failed */
};
/* Run one cell on the first `cores` workers at once, for `seconds`. */
void mp_runner_run(struct mp_runner *r, unsigned cores, mp_loop_fn fn, void *ctx, const struct mp_cell *c,
		   double seconds, struct mp_result *out);
void mp_runner_stop(struct mp_runner *r);

/* DPDK's side (mempool_perf_dpdk.c): the driver asks a child to run cells. */
struct mp_dpdk;
/* Fork the child, bring EAL up there and create the pool of pool_objs
 * objects of obj_size bytes with a cache of 512; NULL with a reason (DPDK
 * not built in: "not installed ..."). Call before any thread is started. */
struct mp_dpdk *mp_dpdk_open(unsigned cores_max, unsigned pool_objs, size_t obj_size, char *why, size_t len);
/* Run cell i on `cores` cores in the child; -1 when the child is gone. */
int mp_dpdk_run(struct mp_dpdk *d, unsigned cell, unsigned cores, double seconds, struct mp_result *out);
void mp_dpdk_close(struct mp_dpdk *d);
/* --callgrind-loop for DPDK: in this process (no child, no thread), bring
 * EAL up, make the same pool and call cell i's loop `calls` times, each one
 * round (deadline 0). 0, or -1 with a reason. */
int mp_dpdk_count(unsigned cell, unsigned calls, unsigned pool_objs, size_t obj_size, char *why, size_t len);
/* The DPDK version built against, or "" */
extern const char mp_dpdk_version[];

#endif /* IOPOOL_MEMPOOL_PERF_H */
