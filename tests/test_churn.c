/* SPDX-License-Identifier: MIT */
/*
 * Thread churn: waves of short-lived threads allocate, free, hand objects to
 * each other through shared slots and exit (most without calling
 * iop_thread_flush, so their exit must return their caches), while a few
 * long-lived threads keep allocating and freeing across every wave.
 *
 * Afterwards no object may be stranded: with every worker joined and before
 * main touches a pool, cached == 0 and in_flight == objects left in the
 * slots; after main frees those and flushes, cached == 0 and in_flight == 0;
 * the audit passes; destroy succeeds.
 *
 * Usage: test_churn [threads] [scale] [iterations]
 *   threads     short-lived threads per wave (default 8)
 *   scale       work per short-lived thread: 200 * scale operations (50)
 *   iterations  waves (default 40)
 * Smaller defaults under ThreadSanitizer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"

#include <pthread.h>
#include <sched.h>

#if TH_TSAN
#define DEFAULT_THREADS 6
#define DEFAULT_SCALE 30
#define DEFAULT_ITER 20
#else
#define DEFAULT_THREADS 8
#define DEFAULT_SCALE 50
#define DEFAULT_ITER 40
#endif

#define LONG_LIVED 2
#define SLOTS 512
#define LOCAL_MAX 512

struct pool_def {
	const char *name;
	size_t size;
	uint32_t cache, flags;
};

static const struct pool_def defs[] = {
	{ "c32", 32, 0, 0 },
	{ "c512-small-mags", 512, 4, 0 },
	{ "c8k", 8192, 0, 0 },
	{ "c96-checked", 96, 16, IOP_F_CHECKED },
};
#define NPOOLS (sizeof defs / sizeof *defs)

static iop_pool_t *pools[NPOOLS];
static _Atomic(void *) slots[SLOTS];
static atomic_int stop;
static int threads = DEFAULT_THREADS, scale = DEFAULT_SCALE,
	   iterations = DEFAULT_ITER;

static void *new_obj(unsigned pl, uint64_t *rng)
{
	void *p = iop_alloc(pools[pl]);
	if (!p) {
		th_fail_at(__FILE__, __LINE__, "iop_alloc(%s) failed",
			   defs[pl].name);
		exit(TH_FAIL);
	}
	th_stamp(p, defs[pl].size, (uint64_t)pl << 56 | (th_rand(rng) >> 8));
	return p;
}

static unsigned verify(void *p)
{
	uint64_t tag = ((uint64_t *)p)[1] ^ th_cookie;
	unsigned pl = (unsigned)(tag >> 56);
	if (pl >= NPOOLS || iop_pool_of(p) != pools[pl]) {
		th_fail_at(__FILE__, __LINE__, "%p: bad tag %#llx or owner",
			   p, (unsigned long long)tag);
		exit(TH_FAIL);
	}
	CHECK_STAMP(p, defs[pl].size, tag);
	return pl;
}

static void release(void *p)
{
	unsigned pl = verify(p);
	((uint64_t *)p)[0] = 0;
	iop_free(pools[pl], p);
}

/* Put p in a random slot; free whatever was there. */
static void trade(void *p, uint64_t *rng)
{
	void *old = atomic_exchange(&slots[th_rand(rng) % SLOTS], p);
	if (old)
		release(old);
}

enum role { MIXED, ALLOCATOR, FREER, FLUSHER };

struct worker {
	int id;
	enum role role;
};

static void *short_lived(void *arg)
{
	struct worker *w = arg;
	uint64_t rng = th_seed(1000, (uint64_t)w->id);
	void *local[LOCAL_MAX];
	size_t n = 0;
	size_t nops = 200 * (size_t)scale;
	for (size_t op = 0; op < nops; op++) {
		unsigned r = (unsigned)(th_rand(&rng) % 100);
		unsigned pl = (unsigned)(th_rand(&rng) % NPOOLS);
		switch (w->role) {
		case FREER:
			/* only frees what others left: its cache fills with
			 * objects it never allocated */
			if (r < 70) {
				void *p = atomic_exchange(
					&slots[th_rand(&rng) % SLOTS], NULL);
				if (p)
					release(p);
			} else if (r < 80) {
				trade(new_obj(pl, &rng), &rng);
			}
			break;
		case ALLOCATOR:
			/* only allocates; everything goes to the slots */
			if (r < 60) {
				trade(new_obj(pl, &rng), &rng);
			} else if (n < LOCAL_MAX) {
				local[n++] = new_obj(pl, &rng);
			}
			break;
		case MIXED:
		case FLUSHER:
			if (r < 45 && n < LOCAL_MAX) {
				local[n++] = new_obj(pl, &rng);
			} else if (r < 80 && n > 0) {
				size_t i = th_rand(&rng) % n;
				release(local[i]);
				local[i] = local[--n];
			} else if (n > 0) {
				size_t i = th_rand(&rng) % n;
				trade(local[i], &rng);
				local[i] = local[--n];
			}
			break;
		}
	}
	/* half of what is left outlives this thread */
	for (size_t i = 0; i < n; i++) {
		if (th_rand(&rng) % 2)
			trade(local[i], &rng);
		else
			release(local[i]);
	}
	if (w->role == FLUSHER)
		iop_thread_flush();
	return NULL; /* the others exit with their caches loaded */
}

static void *long_lived(void *arg)
{
	struct worker *w = arg;
	uint64_t rng = th_seed(2000, (uint64_t)w->id);
	void *local[64];
	size_t n = 0;
	uint64_t loops = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		unsigned pl = (unsigned)(th_rand(&rng) % NPOOLS);
		unsigned r = (unsigned)(th_rand(&rng) % 100);
		if (r < 50 && n < 64) {
			local[n++] = new_obj(pl, &rng);
		} else if (r < 85 && n > 0) {
			size_t i = th_rand(&rng) % n;
			release(local[i]);
			local[i] = local[--n];
		} else if (n > 0) {
			size_t i = th_rand(&rng) % n;
			trade(local[i], &rng);
			local[i] = local[--n];
		}
		if (++loops % 256 == 0)
			sched_yield(); /* leave room for the short-lived */
	}
	for (size_t i = 0; i < n; i++)
		release(local[i]);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		threads = th_parse_arg(argv[1], 1, 512, "threads");
	if (argc > 2)
		scale = th_parse_arg(argv[2], 1, 100000, "scale");
	if (argc > 3)
		iterations = th_parse_arg(argv[3], 1, 100000, "iterations");
	th_current = "churn";
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("churn: %d threads per wave, scale %d, %d waves, %d long-lived"
	       "%s\n", threads, scale, iterations, LONG_LIVED,
	       TH_TSAN ? " (TSan)" : "");

	for (unsigned i = 0; i < NPOOLS; i++)
		pools[i] = MKPOOL(defs[i].name, defs[i].size, 0, defs[i].cache,
				  0, defs[i].flags);

	pthread_t lt[LONG_LIVED];
	struct worker lw[LONG_LIVED];
	for (int i = 0; i < LONG_LIVED; i++) {
		lw[i].id = i;
		lw[i].role = MIXED;
		REQUIRE(pthread_create(&lt[i], NULL, long_lived, &lw[i]) == 0);
	}

	pthread_t *st = calloc((size_t)threads, sizeof *st);
	struct worker *sw = calloc((size_t)threads, sizeof *sw);
	REQUIRE(st && sw);
	int id = LONG_LIVED;
	for (int wave = 0; wave < iterations && !th_failed(); wave++) {
		for (int t = 0; t < threads; t++) {
			sw[t].id = id++;
			sw[t].role = (enum role)((wave + t) % 4);
			REQUIRE(pthread_create(&st[t], NULL, short_lived,
					       &sw[t]) == 0);
		}
		for (int t = 0; t < threads; t++)
			pthread_join(st[t], NULL);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < LONG_LIVED; i++)
		pthread_join(lt[i], NULL);

	/* Every worker is gone and main has not touched a pool: nothing may
	 * be cached, and the slots hold exactly what is in flight. */
	uint64_t parked[NPOOLS] = { 0 };
	for (size_t i = 0; i < SLOTS; i++) {
		void *p = atomic_load(&slots[i]);
		if (p)
			parked[verify(p)]++;
	}
	for (unsigned i = 0; i < NPOOLS; i++) {
		struct iop_pool_stats s = STATS(pools[i]);
		if (s.cached > th_unowned_max(&s))
			th_fail_at(__FILE__, __LINE__,
				   "pool %s: %llu objects stranded in the "
				   "caches of exited threads", defs[i].name,
				   (unsigned long long)s.cached);
		if (s.in_flight != parked[i])
			th_fail_at(__FILE__, __LINE__,
				   "pool %s: in_flight %llu, parked %llu",
				   defs[i].name,
				   (unsigned long long)s.in_flight,
				   (unsigned long long)parked[i]);
		CHECK_CONSERVED(s);
		CHECK_EQ(s.alloc_fail, 0);
		CHECK_AUDIT(pools[i]);
	}

	/* main frees the leftovers: its own cache fills, then is flushed */
	for (size_t i = 0; i < SLOTS; i++) {
		void *p = atomic_exchange(&slots[i], NULL);
		if (p)
			release(p);
	}
	for (unsigned i = 0; i < NPOOLS; i++) {
		FLUSH_ALL(pools[i]);
		struct iop_pool_stats s = STATS(pools[i]);
		CHECK_EQ(s.cached, 0);
		CHECK_EQ(s.in_flight, 0);
		CHECK_CONSERVED(s);
		if (i == 0)
			printf("%s: %llu chunks, %llu objects, %llu magazines "
			       "made\n", defs[i].name,
			       (unsigned long long)s.chunks,
			       (unsigned long long)s.total,
			       (unsigned long long)s.mag_alloc);
		CHECK_AUDIT(pools[i]);
		CHECK_DESTROY(pools[i]);
	}
	free(st);
	free(sw);
	printf("churn: %d threads in all: %s\n", id,
	       th_failed() ? "FAIL" : "PASS");
	return th_failed() ? TH_FAIL : TH_PASS;
}
