/* SPDX-License-Identifier: MIT */
/*
 * Multi-threaded stress, after mimalloc's test-stress.c and DPDK's mempool
 * stress: threads allocate from several pools of different sizes (one of
 * them checked), singly and in bulk, free locally and in bulk, and trade
 * objects through a shared transfer array with atomic exchange, so that
 * objects are freed by threads that did not allocate them, often after
 * their allocating thread has exited.
 *
 * Every object is stamped on allocation (its address ^ a cookie, a tag that
 * names its pool, a pattern and a tail word; see iop_test.h) and verified
 * before it is freed. Between iterations, when every worker has exited, the
 * books must balance exactly: in_flight == objects parked in the transfer
 * array, cached == 0 (exited threads leave nothing behind), the audit passes.
 *
 * Usage: test_stress [threads] [scale] [iterations]
 *   threads     worker threads per iteration (default 4)
 *   scale       work per thread: 1000 * scale operations, times 1 to 4
 *               by thread (default 50)
 *   iterations  rounds of fresh threads (default 20)
 * Smaller defaults under ThreadSanitizer and in checked (IOP_DEBUG >= 2)
 * builds. Seeds are fixed: a run is repeatable up to thread interleaving.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"

#include <pthread.h>
#include <stddef.h>
#include <time.h>

#if TH_TSAN
#define DEFAULT_THREADS 4
#define DEFAULT_SCALE 20
#define DEFAULT_ITER 10
#elif IOP_TEST_DEBUG >= 3 /* and every iop_thread_flush() audits */
#define DEFAULT_THREADS 4
#define DEFAULT_SCALE 5
#define DEFAULT_ITER 10
#elif IOP_TEST_DEBUG >= 2 /* every pool poisons and checks every object */
#define DEFAULT_THREADS 4
#define DEFAULT_SCALE 20
#define DEFAULT_ITER 20
#else
#define DEFAULT_THREADS 4
#define DEFAULT_SCALE 50
#define DEFAULT_ITER 20
#endif

#define TRANSFERS 1000
#define LOCAL_MAX 2048
#define BULK_MAX 64

struct pool_def {
	const char *name;
	size_t size, align, chunk;
	uint32_t cache, flags;
	unsigned weight; /* percent of allocations */
};

static const struct pool_def defs[] = {
	{ "s16", 16, 0, 0, 0, 0, 30 },
	{ "s64-small-mags", 64, 0, 0, 8, 0, 25 },
	{ "s200-checked", 200, 8, 0, 0, IOP_F_CHECKED, 15 },
	{ "s1k", 1024, 0, 0, 0, 0, 15 },
	{ "s4k-aligned", 4096, 4096, 0, 0, 0, 10 },
	{ "s16k", 16384, 0, 0, 0, 0, 5 },
};
#define NPOOLS (sizeof defs / sizeof *defs)

static iop_pool_t *pools[NPOOLS];
static _Atomic(void *) transfer[TRANSFERS];
static int threads = DEFAULT_THREADS, scale = DEFAULT_SCALE,
	   iterations = DEFAULT_ITER;
static int cur_iter;
static atomic_ullong total_ops;

/* A tag names the pool in its top byte; the rest is random. */
static uint64_t make_tag(unsigned pool, uint64_t *rng)
{
	return (uint64_t)pool << 56 | (th_rand(rng) >> 8);
}

static unsigned pick_pool(uint64_t *rng)
{
	unsigned r = (unsigned)(th_rand(rng) % 100), acc = 0;
	for (unsigned i = 0; i < NPOOLS; i++) {
		acc += defs[i].weight;
		if (r < acc)
			return i;
	}
	return 0;
}

static void *stamped(void *p, unsigned pool, uint64_t *rng)
{
	th_stamp(p, defs[pool].size, make_tag(pool, rng));
	return p;
}

/* Check an object's stamp and owner; returns its pool index. */
static unsigned verify(void *p)
{
	uint64_t tag = ((uint64_t *)p)[1] ^ th_cookie;
	unsigned pool = (unsigned)(tag >> 56);
	if (pool >= NPOOLS) {
		th_fail_at(__FILE__, __LINE__, "%p: tag %#llx names no pool",
			   p, (unsigned long long)tag);
		exit(TH_FAIL); /* freeing it anywhere would abort */
	}
	if (iop_pool_of(p) != pools[pool]) {
		th_fail_at(__FILE__, __LINE__, "%p: iop_pool_of says %s, "
			   "stamp says %s", p,
			   iop_pool_of(p) ? iop_pool_name(iop_pool_of(p)) :
					    "none",
			   defs[pool].name);
		exit(TH_FAIL);
	}
	CHECK_STAMP(p, defs[pool].size, tag);
	return pool;
}

static void verify_and_free(void *p)
{
	unsigned pool = verify(p);
	/* scribble so a stale copy of this pointer cannot verify again */
	((uint64_t *)p)[0] = 0;
	iop_free(pools[pool], p);
}

struct worker {
	int tid;
	uint64_t ops;
};

static void *stress(void *arg)
{
	struct worker *w = arg;
	uint64_t rng = th_seed((uint64_t)cur_iter, (uint64_t)w->tid);
	size_t nops = 1000 * (size_t)scale * (size_t)(1 + w->tid % 4);
	void **data = calloc(LOCAL_MAX, sizeof *data);
	if (!data)
		abort();
	size_t n = 0;

	for (size_t op = 0; op < nops; op++) {
		unsigned r = (unsigned)(th_rand(&rng) % 1000);
		if (r < 400 && n < LOCAL_MAX) {
			/* one object */
			unsigned pl = pick_pool(&rng);
			void *p = iop_alloc(pools[pl]);
			if (!p) {
				th_fail_at(__FILE__, __LINE__,
					   "iop_alloc(%s) failed",
					   defs[pl].name);
				exit(TH_FAIL);
			}
			data[n++] = stamped(p, pl, &rng);
		} else if (r < 450 && n + BULK_MAX <= LOCAL_MAX) {
			/* a bulk */
			unsigned pl = pick_pool(&rng);
			unsigned k = (unsigned)(th_rand(&rng) % BULK_MAX) + 1;
			unsigned got = iop_alloc_bulk(pools[pl], data + n, k);
			if (got != k) {
				th_fail_at(__FILE__, __LINE__,
					   "iop_alloc_bulk(%s, %u) gave %u",
					   defs[pl].name, k, got);
				exit(TH_FAIL);
			}
			for (unsigned i = 0; i < k; i++)
				stamped(data[n + i], pl, &rng);
			n += k;
		} else if (r < 800 && n > 0) {
			/* free one */
			size_t i = th_rand(&rng) % n;
			verify_and_free(data[i]);
			data[i] = data[--n];
		} else if (r < 850 && n > 0) {
			/* free a bulk of one pool's objects */
			size_t start = th_rand(&rng) % n;
			unsigned pl = verify(data[start]);
			void *batch[BULK_MAX];
			unsigned k = 0;
			unsigned limit = (unsigned)(th_rand(&rng) % BULK_MAX) + 1;
			for (size_t i = start; i < n && k < limit;) {
				if (iop_pool_of(data[i]) == pools[pl]) {
					verify(data[i]);
					batch[k++] = data[i];
					data[i] = data[--n];
				} else {
					i++;
				}
			}
			iop_free_bulk(pools[pl], batch, k);
		} else if (r < 995) {
			/* trade with the transfer array: put one of ours (or
			 * nothing) in, take what was there */
			size_t slot = th_rand(&rng) % TRANSFERS;
			void *mine = NULL;
			size_t i = 0;
			if (n > 0 && th_rand(&rng) % 4 != 0) {
				i = th_rand(&rng) % n;
				mine = data[i];
				data[i] = data[--n];
			}
			void *theirs = atomic_exchange(&transfer[slot], mine);
			if (theirs) {
				verify(theirs);
				if (n < LOCAL_MAX)
					data[n++] = theirs;
				else
					verify_and_free(theirs);
			}
		} else {
			iop_thread_flush();
		}
	}

	/* leave: park some objects for other threads (or the next
	 * iteration), free the rest; exit with a warm cache */
	for (size_t i = 0; i < n; i++) {
		if (th_rand(&rng) % 2 == 0) {
			size_t slot = th_rand(&rng) % TRANSFERS;
			void *theirs = atomic_exchange(&transfer[slot], data[i]);
			if (theirs)
				verify_and_free(theirs);
		} else {
			verify_and_free(data[i]);
		}
	}
	free(data);
	w->ops = nops;
	return NULL;
}

/* Counters only grow, also when the threads that bumped them have exited. */
static struct iop_pool_stats last[NPOOLS];

static void check_counters_grow(unsigned i, const struct iop_pool_stats *st)
{
	static const struct {
		const char *name;
		size_t off;
	} ctr[] = {
#define C(f) { #f, offsetof(struct iop_pool_stats, f) }
		C(alloc_fast), C(alloc_slow),    C(alloc_fail),
		C(free_fast),  C(free_slow),     C(depot_get),
		C(depot_put),  C(mag_alloc),     C(chunk_acquire),
		C(chunk_release),
#undef C
	};
	for (size_t k = 0; k < sizeof ctr / sizeof *ctr; k++) {
		uint64_t was, now;
		memcpy(&was, (const char *)&last[i] + ctr[k].off, 8);
		memcpy(&now, (const char *)st + ctr[k].off, 8);
		if (now < was)
			th_fail_at(__FILE__, __LINE__,
				   "iteration %d, pool %s: %s went down from "
				   "%llu to %llu", cur_iter, defs[i].name,
				   ctr[k].name, (unsigned long long)was,
				   (unsigned long long)now);
	}
	last[i] = *st;
}

/* With every worker gone: the books must balance exactly. */
static void check_quiescent(int final)
{
	uint64_t parked[NPOOLS] = { 0 };
	for (size_t i = 0; i < TRANSFERS; i++) {
		void *p = atomic_load(&transfer[i]);
		if (p)
			parked[verify(p)]++;
	}
	for (unsigned i = 0; i < NPOOLS; i++) {
		struct iop_pool_stats st = STATS(pools[i]);
		if (st.in_flight != parked[i])
			th_fail_at(__FILE__, __LINE__,
				   "iteration %d, pool %s: in_flight %llu but "
				   "%llu objects are parked", cur_iter,
				   defs[i].name,
				   (unsigned long long)st.in_flight,
				   (unsigned long long)parked[i]);
		if (st.cached > th_unowned_max(&st))
			th_fail_at(__FILE__, __LINE__,
				   "iteration %d, pool %s: %llu objects "
				   "cached after every thread exited",
				   cur_iter, defs[i].name,
				   (unsigned long long)st.cached);
		CHECK_CONSERVED(st);
		CHECK_EQ(st.alloc_fail, 0);
		check_counters_grow(i, &st);
		int rc = iop_pool_audit(pools[i]);
		if (rc != 0)
			th_fail_at(__FILE__, __LINE__,
				   "iteration %d, pool %s: audit %d",
				   cur_iter, defs[i].name, rc);
		if (final && i == 0)
			printf("%s: %llu chunks, %llu objects, alloc fast "
			       "%llu slow %llu\n", defs[i].name,
			       (unsigned long long)st.chunks,
			       (unsigned long long)st.total,
			       (unsigned long long)st.alloc_fast,
			       (unsigned long long)st.alloc_slow);
	}
}

int main(int argc, char **argv)
{
	if (argc > 1)
		threads = th_parse_arg(argv[1], 1, 512, "threads");
	if (argc > 2)
		scale = th_parse_arg(argv[2], 1, 100000, "scale");
	if (argc > 3)
		iterations = th_parse_arg(argv[3], 1, 100000, "iterations");
	th_current = "stress";
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("stress: %d threads, scale %d, %d iterations%s\n", threads,
	       scale, iterations, TH_TSAN ? " (TSan)" : "");

	for (unsigned i = 0; i < NPOOLS; i++)
		pools[i] = MKPOOL(defs[i].name, defs[i].size, defs[i].align,
				  defs[i].cache, defs[i].chunk, defs[i].flags);

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_t *tids = calloc((size_t)threads, sizeof *tids);
	struct worker *ws = calloc((size_t)threads, sizeof *ws);
	REQUIRE(tids && ws);
	for (cur_iter = 0; cur_iter < iterations && !th_failed(); cur_iter++) {
		for (int t = 0; t < threads; t++) {
			ws[t].tid = t;
			REQUIRE(pthread_create(&tids[t], NULL, stress,
					       &ws[t]) == 0);
		}
		for (int t = 0; t < threads; t++) {
			pthread_join(tids[t], NULL);
			atomic_fetch_add(&total_ops, ws[t].ops);
		}
		check_quiescent(0);
	}
	cur_iter--;
	check_quiescent(1);

	/* main frees what is parked, flushes its own cache, and tears down */
	for (size_t i = 0; i < TRANSFERS; i++) {
		void *p = atomic_exchange(&transfer[i], NULL);
		if (p)
			verify_and_free(p);
	}
	for (unsigned i = 0; i < NPOOLS; i++) {
		FLUSH_ALL(pools[i]);
		struct iop_pool_stats st = STATS(pools[i]);
		CHECK_EQ(st.in_flight, 0);
		CHECK_EQ(st.cached, 0);
		CHECK_CONSERVED(st);
		CHECK_AUDIT(pools[i]);
		CHECK_DESTROY(pools[i]);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) +
		   (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("stress: %llu operations in %.2f s: %s\n",
	       (unsigned long long)atomic_load(&total_ops), s,
	       th_failed() ? "FAIL" : "PASS");
	free(tids);
	free(ws);
	return th_failed() ? TH_FAIL : TH_PASS;
}
