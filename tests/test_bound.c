/* SPDX-License-Identifier: MIT */
/*
 * Bounded pools: the limit, the three allocation modes, FIFO waits,
 * throttling with hysteresis, timeouts, signals during waits, objects
 * stranded in idle threads' caches, and destroy with waiters.
 *
 * Every case that can hang arms a watchdog (SIGALRM) that fails the test
 * with a message instead: a lost wake-up shows as a named failure, not as a
 * CTest timeout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL
/* How late a wait may return: generous, for sanitizers on a loaded VM. */
#define SLACK_NS (2000 * MS)

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0)
		;
}

static iop_pool_t *mkbound(const char *name, uint64_t limit, uint32_t on, uint32_t off, uint32_t cache,
			   size_t populate, uint32_t flags)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = name;
	pp.obj_size = 512;
	pp.limit = limit;
	pp.throttle_on_pct = on;
	pp.throttle_off_pct = off;
	pp.cache_size = cache;
	pp.populate = populate;
	pp.flags = flags;
	iop_pool_t *p = iop_pool_create(&pp);
	if (!p) {
		th_fail_at(__FILE__, __LINE__, "iop_pool_create(%s, limit %llu) failed: %s", name,
			   (unsigned long long)limit, strerror(errno));
		exit(TH_FAIL);
	}
	return p;
}

/* Poll until the pool has `n` waiters (the watchdog ends a hang). */
static void await_waiters(iop_pool_t *pool, uint64_t n)
{
	while (STATS(pool).waiters != n)
		sched_yield();
}

static void hold(iop_pool_t *pool, void **objs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		objs[i] = iop_alloc(pool);
		REQUIRE(objs[i] != NULL);
	}
}

static void release(iop_pool_t *pool, void **objs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		iop_free(pool, objs[i]);
}

/* The end of every case: nothing in flight, books balanced, gone. */
static void finish(iop_pool_t *pool)
{
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.waiters, 0);
	CHECK_LE(st.high_water, st.limit);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(pool);
	CHECK_DESTROY(pool);
}

/* ------------------------------------------------------------------------ */
/* Creation                                                                  */
/* ------------------------------------------------------------------------ */

static void expect_einval(struct iop_pool_params pp, const char *needle)
{
	th_capture_begin();
	errno = 0;
	iop_pool_t *p = iop_pool_create(&pp);
	int err = errno;
	char *out = th_capture_end();
	CHECK(p == NULL);
	CHECK_EQ(err, EINVAL);
	CHECK_STR_HAS(out, needle);
	free(out);
	if (p)
		iop_pool_destroy(p);
}

TEST(bound_create_rejects_bad_limits)
{
	struct iop_pool_params base = IOP_POOL_PARAMS_INIT;
	base.obj_size = 512;
	struct iop_pool_params pp = base;
	pp.limit = 10;
	pp.limit_bytes = 5120;
	expect_einval(pp, "not both");
	pp = base;
	pp.limit_bytes = 100;
	expect_einval(pp, "less than one object");
	pp = base;
	pp.throttle_on_pct = 50;
	expect_einval(pp, "without a limit");
	pp = base;
	pp.limit = 10;
	pp.throttle_on_pct = 101;
	expect_einval(pp, "throttle_on_pct 101");
	pp.throttle_on_pct = 50;
	pp.throttle_off_pct = 50;
	expect_einval(pp, "throttle_off_pct 50");
	pp.throttle_on_pct = 0;
	pp.throttle_off_pct = 40;
	expect_einval(pp, "throttle_on_pct 0");
	pp = base;
	pp.limit = 10;
	pp.populate = 11;
	expect_einval(pp, "above the limit");
	pp = base;
	pp.limit = (uint64_t)1 << 41;
	expect_einval(pp, "is above");
	return TH_PASS;
}

TEST(bound_limit_bytes_and_default_thresholds)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.obj_size = 512;
	pp.limit_bytes = 20 * 512 + 100;
	iop_pool_t *pool = iop_pool_create(&pp);
	REQUIRE(pool != NULL);
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.limit, 20);
	CHECK_EQ(st.throttle_on, 14);  /* 70% */
	CHECK_EQ(st.throttle_off, 13); /* 65% */
	CHECK_LE(st.cache_size, 20 / 16 + 1);
	finish(pool);

	/* 100% turns throttling off: waiting callers wait only at the limit. */
	pool = mkbound("nothrottle", 10, 100, 0, 0, 0, 0);
	st = STATS(pool);
	CHECK_EQ(st.throttle_on, 10);
	CHECK_EQ(st.throttle_off, 10);
	finish(pool);

	/* A 0.2 caller (struct without the bounds) gets an unbounded pool. */
	struct iop_pool_params old = IOP_POOL_PARAMS_INIT;
	old.struct_size = IOP_POOL_PARAMS_SIZE_V2;
	old.obj_size = 64;
	pool = iop_pool_create(&old);
	REQUIRE(pool != NULL);
	st = STATS(pool);
	CHECK_EQ(st.limit, 0);
	CHECK_EQ(st.high_water, 0);
	CHECK_EQ(iop_pool_reset_high_water(pool), 0);
	finish(pool);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Modes                                                                     */
/* ------------------------------------------------------------------------ */

TEST(bound_default_mode_fails_at_the_limit)
{
	iop_pool_t *pool = mkbound("deflimit", 10, 0, 0, 0, 0, 0);
	void *objs[16];
	hold(pool, objs, 10);
	errno = 0;
	CHECK(iop_alloc(pool) == NULL);
	CHECK_EQ(errno, ENOMEM);
	void *p = (void *)1;
	CHECK_EQ(iop_alloc_ex(pool, &p, 0, 0), -ENOMEM);
	CHECK(p == NULL);
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.in_flight, 10);
	CHECK_EQ(st.high_water, 10);
	CHECK_EQ(st.limit_hits, 2);
	CHECK_EQ(st.fail_default, 2);
	CHECK_EQ(st.alloc_fail, 2);
	/* Never carved beyond the limit: the pool's memory is capped too. */
	CHECK_EQ(st.total - st.slab_free, 10);

	iop_free(pool, objs[9]);
	objs[9] = iop_alloc(pool);
	CHECK(objs[9] != NULL);
	release(pool, objs, 10);

	/* Bulk calls stop at the limit. */
	CHECK_EQ(iop_alloc_bulk(pool, objs, 16), 10);
	iop_free_bulk(pool, objs, 10);

	CHECK_EQ(iop_pool_reset_high_water(pool), 10);
	CHECK_EQ(STATS(pool).high_water, 0);
	p = iop_alloc(pool);
	CHECK_EQ(STATS(pool).high_water, 1);
	iop_free(pool, p);
	finish(pool);
	return TH_PASS;
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
	return x < y ? -1 : x > y;
}

/* objs[0..n) are n different addresses. */
static void check_distinct(void *const *objs, unsigned n)
{
	void **s = malloc(n * sizeof(void *));
	REQUIRE(s);
	memcpy(s, objs, n * sizeof(void *));
	qsort(s, n, sizeof(void *), cmp_ptr);
	for (unsigned i = 1; i < n; i++)
		CHECK(s[i] != s[i - 1]);
	free(s);
}

/*
 * A bulk call near the limit gets what fits and no more; the part of its
 * reservation it could not use is given back at once (in the per-thread
 * mode the call reserves all n in one step), so the count stays exact:
 * in flight is what the caller holds, a single allocation at the limit
 * fails, and after the frees a bulk call of exactly the limit succeeds.
 */
TEST(bulk_at_the_limit_takes_what_fits_and_gives_back_the_rest)
{
	enum { LIMIT = 100 };
	iop_pool_t *pool = mkbound("bulklimit", LIMIT, 0, 0, 0, 0, 0);
	void *held[LIMIT], *more[2 * LIMIT];
	hold(pool, held, 90);
	errno = 0;
	CHECK_EQ(iop_alloc_bulk(pool, more, 20), 10);
	CHECK_EQ(errno, ENOMEM);
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.in_flight, LIMIT);
	CHECK_EQ(st.high_water, LIMIT);
	CHECK_EQ(st.limit_hits, 1);
	CHECK_EQ(st.fail_default, 1);
	CHECK(iop_alloc(pool) == NULL);
	/* Nothing fits: 0, and nothing reserved. */
	errno = 0;
	CHECK_EQ(iop_alloc_bulk(pool, more + 10, 8), 0);
	CHECK_EQ(errno, ENOMEM);
	CHECK_EQ(STATS(pool).in_flight, LIMIT);
	release(pool, more, 5);
	CHECK_EQ(iop_alloc_bulk(pool, more, 8), 5);
	CHECK_EQ(STATS(pool).in_flight, LIMIT);
	for (unsigned i = 0; i < 10; i++)
		CHECK_PTR_EQ(iop_pool_of(more[i]), pool);
	release(pool, more, 10);
	release(pool, held, 90);
	CHECK_EQ(STATS(pool).in_flight, 0);
	/* The whole limit in one call, then past it by one. */
	CHECK_EQ(iop_alloc_bulk(pool, more, LIMIT), LIMIT);
	check_distinct(more, LIMIT);
	iop_free_bulk(pool, more, LIMIT);
	CHECK_EQ(iop_alloc_bulk(pool, more, LIMIT + 1), LIMIT);
	iop_free_bulk(pool, more, LIMIT);
	/* IOP_WAIT's extras stop at throttle_on (here 80% of the limit). */
	iop_pool_t *thr = mkbound("bulkthrottle", LIMIT, 80, 50, 0, 0, 0);
	int got = iop_alloc_bulk_ex(thr, more, LIMIT, IOP_WAIT, 0);
	CHECK_EQ(got, 80);
	CHECK_EQ(STATS(thr).in_flight, 80);
	iop_free_bulk(thr, more, (unsigned)got);
	finish(thr);
	finish(pool);
	return TH_PASS;
}

TEST(nowait_uses_only_the_cache_and_the_depot)
{
	/* Nothing cached: fails at once, maps nothing. */
	iop_pool_t *pool = mkbound("nowait", 64, 0, 0, 0, 0, 0);
	void *p;
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_NOWAIT, 0), -ENOMEM);
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.chunk_acquire, 0);
	CHECK_EQ(st.fail_nowait, 1);
	finish(pool);

	/* With 16 populated: 16 and no more, still mapping nothing new. */
	pool = mkbound("nowait-pop", 64, 0, 0, 0, 16, 0);
	uint64_t chunks = STATS(pool).chunk_acquire;
	void *objs[16];
	for (int i = 0; i < 16; i++)
		CHECK_EQ(iop_alloc_ex(pool, &objs[i], IOP_NOWAIT, 0), 0);
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_NOWAIT, 0), -ENOMEM);
	CHECK_EQ(STATS(pool).chunk_acquire, chunks);
	release(pool, objs, 16);
	finish(pool);

	/* Unbounded pools too. */
	pool = MKPOOL("nowait-unbounded", 256, 0, 0, 0, 0);
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_NOWAIT, 0), -ENOMEM);
	CHECK_EQ(STATS(pool).chunk_acquire, 0);
	CHECK_EQ(STATS(pool).fail_nowait, 1);
	p = iop_alloc(pool);
	iop_free(pool, p);
	void *q;
	CHECK_EQ(iop_alloc_ex(pool, &q, IOP_NOWAIT, 0), 0);
	CHECK_PTR_EQ(q, p);
	/* IOP_WAIT on an unbounded pool is the default mode. */
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_WAIT, IOP_FOREVER), 0);
	iop_free(pool, p);
	iop_free(pool, q);
	finish(pool);
	return TH_PASS;
}

TEST(alloc_ex_rejects_bad_arguments)
{
	iop_pool_t *pool = mkbound("badargs", 8, 0, 0, 0, 0, 0);
	void *p = (void *)1;
	CHECK_EQ(iop_alloc_ex(NULL, &p, 0, 0), -EINVAL);
	CHECK(p == NULL);
	CHECK_EQ(iop_alloc_ex(pool, NULL, 0, 0), -EINVAL);
	CHECK_EQ(iop_alloc_ex(pool, &p, 0x80, 0), -EINVAL);
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_NOWAIT | IOP_WAIT, 0), -EINVAL);
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_ABSTIME, 0), -EINVAL);
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_WAIT, -5), -EINVAL);
	CHECK_EQ(iop_buf_alloc_ex(pool, &p, 0, 0), -EINVAL); /* not refcounted */
	finish(pool);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Waits                                                                     */
/* ------------------------------------------------------------------------ */

TEST(wait_times_out_within_the_slack)
{
	th_watchdog("wait_times_out_within_the_slack", 30);
	iop_pool_t *pool = mkbound("timeout", 4, 100, 0, 0, 0, 0);
	void *objs[4], *p;
	hold(pool, objs, 4);

	int64_t t0 = now_ns();
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_WAIT, 50 * MS), -ETIMEDOUT);
	int64_t el = now_ns() - t0;
	CHECK_GE(el, 50 * MS);
	CHECK_LE(el, 50 * MS + SLACK_NS);
	CHECK(p == NULL);

	/* Absolute deadline. */
	t0 = now_ns();
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_WAIT | IOP_ABSTIME, t0 + 30 * MS), -ETIMEDOUT);
	el = now_ns() - t0;
	CHECK_GE(el, 30 * MS);
	CHECK_LE(el, 30 * MS + SLACK_NS);

	/* Zero and past deadlines try once. */
	t0 = now_ns();
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_WAIT, 0), -ETIMEDOUT);
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_WAIT | IOP_ABSTIME, t0 - 1000), -ETIMEDOUT);
	CHECK_LE(now_ns() - t0, SLACK_NS);

	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.timeouts, 4);
	CHECK_EQ(st.fail_wait, 4);
	CHECK_EQ(st.waits, 2); /* the zero ones never slept */
	CHECK_EQ(st.throttled, 0);
	CHECK_GE(st.wait_max_ns, 50 * MS);
	CHECK_GE(st.wait_ns, 80 * MS);
	CHECK_LE(st.wait_p50_ns, st.wait_p99_ns);
	CHECK_LE(st.wait_p99_ns, st.wait_max_ns);
	CHECK_GE(st.wait_p50_ns, 28 * MS);
	release(pool, objs, 4);
	finish(pool);
	return TH_PASS;
}

struct waiter {
	iop_pool_t *pool;
	int id;
	unsigned how;
	int64_t timeout;
	int rc;
	void *obj;
	int64_t elapsed;
	atomic_int *served;
	atomic_bool done;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	int64_t t0 = now_ns();
	w->rc = iop_alloc_ex(w->pool, &w->obj, w->how ? w->how : IOP_WAIT, w->timeout);
	w->elapsed = now_ns() - t0;
	atomic_store(&w->done, true);
	if (w->served)
		atomic_fetch_add(w->served, 1);
	return NULL;
}

static void start_waiter(pthread_t *t, struct waiter *w)
{
	REQUIRE(pthread_create(t, NULL, waiter_main, w) == 0);
}

TEST(free_hands_its_object_to_the_waiter)
{
	th_watchdog("free_hands_its_object_to_the_waiter", 30);
	iop_pool_t *pool = mkbound("handoff", 2, 100, 0, 0, 0, 0);
	void *objs[2];
	hold(pool, objs, 2);
	struct waiter w = { .pool = pool, .timeout = IOP_FOREVER };
	pthread_t t;
	start_waiter(&t, &w);
	await_waiters(pool, 1);
	iop_free(pool, objs[0]);
	pthread_join(t, NULL);
	CHECK_EQ(w.rc, 0);
	CHECK_PTR_EQ(w.obj, objs[0]);
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.waits, 1);
	CHECK_EQ(st.limit_hits, 1);
	CHECK_EQ(st.high_water, 2);
	iop_free(pool, w.obj);
	iop_free(pool, objs[1]);
	finish(pool);
	return TH_PASS;
}

#define FIFO_WAITERS 8

TEST(waiters_are_served_in_order_one_per_free)
{
	th_watchdog("waiters_are_served_in_order_one_per_free", 60);
	iop_pool_t *pool = mkbound("fifo", 4, 100, 0, 0, 0, 0);
	void *objs[4];
	hold(pool, objs, 4);
	struct waiter w[FIFO_WAITERS];
	pthread_t t[FIFO_WAITERS];
	atomic_int served = 0;
	for (int i = 0; i < FIFO_WAITERS; i++) {
		w[i] = (struct waiter){ .pool = pool, .id = i, .timeout = IOP_FOREVER, .served = &served };
		start_waiter(&t[i], &w[i]);
		await_waiters(pool, (uint64_t)i + 1); /* queued in this order */
	}
	/* A burst of 3 frees wakes 3 waiters, the first three, no more. */
	release(pool, objs, 3);
	while (atomic_load(&served) < 3)
		sched_yield();
	sleep_ms(50);
	CHECK_EQ(atomic_load(&served), 3);
	CHECK_EQ(STATS(pool).waiters, FIFO_WAITERS - 3);
	for (int i = 0; i < FIFO_WAITERS; i++)
		CHECK_EQ(atomic_load(&w[i].done), i < 3);
	/* Then each free serves the oldest of those left. */
	void *give = objs[3];
	for (int i = 3; i < FIFO_WAITERS; i++) {
		iop_free(pool, give);
		pthread_join(t[i], NULL);
		CHECK_EQ(w[i].rc, 0);
		for (int j = i + 1; j < FIFO_WAITERS; j++)
			CHECK(!atomic_load(&w[j].done));
		give = w[i].obj;
	}
	iop_free(pool, give);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(w[i].rc, 0);
		iop_free(pool, w[i].obj);
	}
	CHECK_EQ(STATS(pool).high_water, 4);
	finish(pool);
	return TH_PASS;
}

TEST(throttling_holds_waiting_callers_with_hysteresis)
{
	th_watchdog("throttling_holds_waiting_callers_with_hysteresis", 60);
	/* limit 20: waiting callers stop at 10 in flight and resume below 5. */
	iop_pool_t *pool = mkbound("throttle", 20, 50, 25, 0, 20, 0);
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.throttle_on, 10);
	CHECK_EQ(st.throttle_off, 5);
	void *objs[20], *p;
	/* Waiting callers get buffers up to the threshold... */
	for (int i = 0; i < 10; i++)
		CHECK_EQ(iop_alloc_ex(pool, &objs[i], IOP_WAIT, 0), 0);
	/* ...then wait although buffers remain... */
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_WAIT, 0), -ETIMEDOUT);
	/* ...which stay for the callers that cannot wait. */
	for (int i = 10; i < 20; i++)
		CHECK_EQ(iop_alloc_ex(pool, &objs[i], IOP_NOWAIT, 0), 0);
	CHECK(iop_alloc(pool) == NULL);
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_NOWAIT, 0), -ENOMEM);

	struct waiter w = { .pool = pool, .timeout = IOP_FOREVER };
	pthread_t t;
	start_waiter(&t, &w);
	await_waiters(pool, 1);
	/* Down to 6 in flight: still throttled (not below 5). */
	release(pool, objs + 6, 14);
	sleep_ms(50);
	CHECK_EQ(STATS(pool).waiters, 1);
	/* Below 5: served. */
	release(pool, objs + 4, 2);
	pthread_join(t, NULL);
	CHECK_EQ(w.rc, 0);
	st = STATS(pool);
	CHECK_EQ(st.waits, 1);
	CHECK_EQ(st.throttled, 1);
	CHECK_GE(st.throttled_ns, 40 * MS);
	CHECK_GE(st.high_water, 20);
	iop_free(pool, w.obj);
	release(pool, objs, 4);
	finish(pool);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Stranded capacity                                                         */
/* ------------------------------------------------------------------------ */

#define STRAND 64

struct idler {
	iop_pool_t *pool;
	void *objs[STRAND];
	unsigned n;          /* objects to allocate first */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int phase;           /* 0 start, 1 holding, 2 free now, 3 freed, 4 exit */
};

static void idler_set(struct idler *d, int phase)
{
	pthread_mutex_lock(&d->mu);
	d->phase = phase;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static void idler_await(struct idler *d, int phase)
{
	pthread_mutex_lock(&d->mu);
	while (d->phase < phase)
		pthread_cond_wait(&d->cv, &d->mu);
	pthread_mutex_unlock(&d->mu);
}

/* Allocates, waits for the word, frees everything into its own cache, and
 * then sleeps in a condition wait without calling iopool again. */
static void *idler_main(void *arg)
{
	struct idler *d = arg;
	for (unsigned i = 0; i < d->n; i++)
		d->objs[i] = iop_alloc(d->pool);
	idler_set(d, 1);
	idler_await(d, 2);
	for (unsigned i = 0; i < d->n; i++)
		iop_free(d->pool, d->objs[i]);
	idler_set(d, 3);
	idler_await(d, 4);
	return NULL;
}

static void idler_start(pthread_t *t, struct idler *d, iop_pool_t *pool, unsigned n)
{
	memset(d, 0, sizeof(*d));
	d->pool = pool;
	d->n = n;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	REQUIRE(pthread_create(t, NULL, idler_main, d) == 0);
	idler_await(d, 1);
	for (unsigned i = 0; i < n; i++)
		REQUIRE(d->objs[i] != NULL);
}

/* ------------------------------------------------------------------------ */
/* iop_alloc_bulk_ex                                                         */
/* ------------------------------------------------------------------------ */

struct bulk_waiter {
	iop_pool_t *pool;
	void *objs[8];
	int rc;
};

static void *bulk_waiter_main(void *arg)
{
	struct bulk_waiter *w = arg;
	w->rc = iop_alloc_bulk_ex(w->pool, w->objs, 8, IOP_WAIT, 20000 * MS);
	return NULL;
}

TEST(alloc_bulk_ex_waits_for_the_first_and_takes_what_is_there)
{
	th_watchdog("alloc_bulk_ex_waits_for_the_first_and_takes_what_is_there", 60);
	iop_pool_t *pool = mkbound("bulk-ex", 16, 100, 0, 0, 0, 0);
	void *objs[32], *one[1];
	CHECK_EQ(iop_alloc_bulk_ex(pool, NULL, 4, 0, 0), -EINVAL);
	CHECK_EQ(iop_alloc_bulk_ex(pool, objs, 0, 0, 0), -EINVAL);
	CHECK_EQ(iop_alloc_bulk_ex(pool, objs, 4, IOP_NOWAIT | IOP_WAIT, 0), -EINVAL);
	CHECK_EQ(iop_alloc_bulk_ex(NULL, objs, 4, 0, 0), -EINVAL);
	/* Up to the limit, not past it. */
	CHECK_EQ(iop_alloc_bulk_ex(pool, objs, 32, 0, 0), 16);
	CHECK_EQ(iop_alloc_bulk_ex(pool, one, 1, IOP_NOWAIT, 0), -ENOMEM);
	CHECK_EQ(iop_alloc_bulk_ex(pool, one, 1, 0, 0), -ENOMEM);
	CHECK_EQ(iop_alloc_bulk_ex(pool, one, 1, IOP_WAIT, 0), -ETIMEDOUT);
	CHECK_EQ(STATS(pool).in_flight, 16);

	/* A waiting burst returns with the first freed object, and takes
	 * what else is there at that moment. */
	struct bulk_waiter w = { .pool = pool, .rc = -1 };
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, bulk_waiter_main, &w) == 0);
	await_waiters(pool, 1);
	iop_free(pool, objs[15]);
	pthread_join(t, NULL);
	CHECK_EQ(w.rc, 1);
	CHECK_PTR_EQ(w.objs[0], objs[15]);
	objs[15] = w.objs[0];
	release(pool, objs + 8, 8);
	/* Eight free now: a burst of 8 gets all of them at once. */
	CHECK_EQ(iop_alloc_bulk_ex(pool, objs + 8, 8, IOP_WAIT, 1000 * MS), 8);
	CHECK_EQ(STATS(pool).in_flight, 16);
	release(pool, objs, 16);
	finish(pool);

	/* IOP_WAIT stops at the throttle threshold: 10 of 20. */
	pool = mkbound("bulk-ex-throttle", 20, 50, 25, 0, 20, 0);
	CHECK_EQ(iop_alloc_bulk_ex(pool, objs, 15, IOP_WAIT, 0), 10);
	CHECK_EQ(iop_alloc_bulk_ex(pool, objs + 10, 5, IOP_NOWAIT, 0), 5);
	release(pool, objs, 15);
	finish(pool);

	/* Unbounded pools: IOP_NOWAIT only what is cached. */
	pool = MKPOOL("bulk-ex-unbounded", 256, 0, 0, 0, 0);
	CHECK_EQ(iop_alloc_bulk_ex(pool, objs, 8, IOP_NOWAIT, 0), -ENOMEM);
	CHECK_EQ(iop_alloc_bulk_ex(pool, objs, 8, 0, 0), 8);
	release(pool, objs, 8);
	int got = iop_alloc_bulk_ex(pool, objs, 8, IOP_NOWAIT, 0);
	CHECK_GE(got, 1);
	CHECK_LE(got, 8);
	if (got > 0)
		release(pool, objs, (unsigned)got);
	finish(pool);
	return TH_PASS;
}

TEST(idle_thread_cache_serves_other_threads)
{
	th_watchdog("idle_thread_cache_serves_other_threads", 60);
	/* Magazines as large as the limit: the idle thread caches it all. */
	iop_pool_t *pool = mkbound("strand", STRAND, 100, 0, STRAND, 0, 0);
	struct idler d;
	pthread_t t;
	idler_start(&t, &d, pool, STRAND);
	idler_set(&d, 2);
	idler_await(&d, 3); /* freed into its cache; now idle */
	struct iop_pool_stats st = STATS(pool);
	/* A thread's cache takes all of it; a CPU's slots hold at most half
	 * a bounded pool's limit (the rest is in the depot). */
	if (st.cache_mode == IOP_CACHE_MODE_CPU) {
		CHECK_GT(st.cached, 0);
		CHECK_LE(st.cached, STRAND / 2);
		CHECK_LE(st.cached, th_unowned_max(&st));
	} else {
		CHECK_EQ(st.cached, STRAND);
	}
	CHECK_EQ(st.in_flight, 0);

	/* Every object is in the idle thread's cache (or its CPU's), yet all of them can be
	 * had here, in every mode that may wait for a lock. */
	void *objs[STRAND];
	int64_t t0 = now_ns();
	for (int i = 0; i < STRAND; i++) {
		int rc = iop_alloc_ex(pool, &objs[i], i & 1 ? IOP_WAIT : 0, 5000 * MS);
		CHECK_EQ(rc, 0);
	}
	CHECK_LE(now_ns() - t0, 5000 * MS);
	st = STATS(pool);
	CHECK_EQ(st.in_flight, STRAND);
	CHECK_EQ(st.fail_wait + st.fail_default, 0);
	release(pool, objs, STRAND);
	idler_set(&d, 4);
	pthread_join(t, NULL);
	finish(pool);
	return TH_PASS;
}

TEST(blocked_caller_gets_a_buffer_from_a_thread_gone_idle)
{
	th_watchdog("blocked_caller_gets_a_buffer_from_a_thread_gone_idle", 60);
	iop_pool_t *pool = mkbound("strand-blocked", STRAND, 100, 0, STRAND, 0, 0);
	struct idler d;
	pthread_t t;
	idler_start(&t, &d, pool, STRAND); /* A holds everything */

	/* B blocks at the limit; C behind it. */
	struct waiter b = { .pool = pool, .id = 0, .timeout = 10000 * MS };
	struct waiter c = { .pool = pool, .id = 1, .timeout = 10000 * MS };
	pthread_t tb, tc;
	start_waiter(&tb, &b);
	await_waiters(pool, 1);
	start_waiter(&tc, &c);
	await_waiters(pool, 2);

	/* A frees everything (into its cache once nobody waits) and sleeps. */
	idler_set(&d, 2);
	idler_await(&d, 3);
	pthread_join(tb, NULL);
	pthread_join(tc, NULL);
	CHECK_EQ(b.rc, 0);
	CHECK_EQ(c.rc, 0);
	CHECK_LE(b.elapsed, 10000 * MS);

	/* The rest sit in A's cache; a blocked caller still gets them. */
	void *objs[STRAND];
	for (int i = 0; i < STRAND - 2; i++)
		CHECK_EQ(iop_alloc_ex(pool, &objs[i], IOP_WAIT, 5000 * MS), 0);
	void *p;
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_WAIT, 10 * MS), -ETIMEDOUT);
	release(pool, objs, STRAND - 2);
	iop_free(pool, b.obj);
	iop_free(pool, c.obj);
	idler_set(&d, 4);
	pthread_join(t, NULL);
	finish(pool);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Many threads                                                              */
/* ------------------------------------------------------------------------ */

#if TH_TSAN
#define CROWD_LIMIT 4
#define CROWD_ITERS 300
#else
#define CROWD_LIMIT 16
#define CROWD_ITERS 3000
#endif
#define CROWD_THREADS (4 * CROWD_LIMIT)

/* The callers took n more objects: count them in *held (the callers' own
 * count), keep its largest value in *most, and fail past the limit. */
static void note_held(atomic_long *held, atomic_long *most, long n, long limit)
{
	long h = atomic_fetch_add(held, n) + n;
	if (h > limit)
		th_fail_at(__FILE__, __LINE__, "%ld objects held, limit %ld", h, limit);
	long m = atomic_load(most);
	while (h > m && !atomic_compare_exchange_weak(most, &m, h))
		;
}

struct crowd {
	iop_pool_t *pool;
	atomic_long held;   /* objects callers hold, counted by the callers */
	atomic_long most;
	atomic_long waits_failed;
	atomic_long got[3];
};

static void *crowd_main(void *arg)
{
	struct crowd *c = arg;
	static atomic_uint seeds;
	uint64_t rng = th_seed(77, atomic_fetch_add(&seeds, 1));
	for (int i = 0; i < CROWD_ITERS; i++) {
		unsigned mode = (unsigned)(th_rand(&rng) % 3);
		static const unsigned how[3] = { 0, IOP_NOWAIT, IOP_WAIT };
		void *p;
		int rc = iop_alloc_ex(c->pool, &p, how[mode], IOP_FOREVER);
		if (rc != 0) {
			if (mode == 2) {
				atomic_fetch_add(&c->waits_failed, 1);
				th_fail_at(__FILE__, __LINE__, "a wait without end failed: %s", strerror(-rc));
			}
			continue;
		}
		atomic_fetch_add(&c->got[mode], 1);
		note_held(&c->held, &c->most, 1, CROWD_LIMIT);
		memset(p, 0x5a, 64);
		if (th_rand(&rng) % 4 == 0)
			sched_yield();
		atomic_fetch_sub(&c->held, 1);
		iop_free(c->pool, p);
	}
	return NULL;
}

/* Run fn(arg) on `threads` threads at once and join them. */
static void run_crowd(int threads, void *(*fn)(void *), void *arg)
{
	pthread_t *t = calloc((size_t)threads, sizeof(*t));
	REQUIRE(t);
	for (int i = 0; i < threads; i++)
		REQUIRE(pthread_create(&t[i], NULL, fn, arg) == 0);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	free(t);
}

/* After a crowd: the callers never held more than the limit (their own
 * count, `most`), nor did the pool's high-water mark or its carved
 * objects pass it, and each of the `got` objects was freed. Returns the
 * pool's statistics. */
static struct iop_pool_stats check_crowd(iop_pool_t *pool, atomic_long *most, uint64_t limit, uint64_t got)
{
	CHECK_LE(atomic_load(most), limit);
	struct iop_pool_stats st = STATS(pool);
	CHECK_LE(st.high_water, limit);
	CHECK_LE(st.total - st.slab_free, limit);
	CHECK_COUNTS(pool, 0, got, got);
	return st;
}

TEST(limit_holds_with_four_times_the_threads)
{
	th_watchdog("limit_holds_with_four_times_the_threads", 240);
	iop_pool_t *pool = mkbound("crowd", CROWD_LIMIT, 0, 0, 0, 0, 0);
	struct crowd c = { .pool = pool };
	run_crowd(CROWD_THREADS, crowd_main, &c);
	CHECK_EQ(atomic_load(&c.waits_failed), 0);
	CHECK_GT(atomic_load(&c.got[2]), 0);
	uint64_t got = (uint64_t)(atomic_load(&c.got[0]) + atomic_load(&c.got[1]) + atomic_load(&c.got[2]));
	check_crowd(pool, &c.most, CROWD_LIMIT, got);
	finish(pool);
	return TH_PASS;
}

/* Bulk calls of 1 to 24 from 4 threads on a limit of 64: every call gets
 * at most what it asked for, the objects the callers hold (counted by
 * them) never pass the limit, and every object comes back. */
#define BULK_CROWD_LIMIT 64
#define BULK_CROWD_THREADS 4

struct bulk_crowd {
	iop_pool_t *pool;
	atomic_long held, most, got, calls, short_calls;
};

static void *bulk_crowd_main(void *arg)
{
	struct bulk_crowd *c = arg;
	static atomic_uint seeds;
	uint64_t rng = th_seed(91, atomic_fetch_add(&seeds, 1));
	void *objs[24];
	for (int i = 0; i < CROWD_ITERS; i++) {
		unsigned n = 1 + (unsigned)(th_rand(&rng) % 24);
		unsigned got = iop_alloc_bulk(c->pool, objs, n);
		atomic_fetch_add(&c->calls, 1);
		if (got > n) {
			th_fail_at(__FILE__, __LINE__, "asked for %u, got %u", n, got);
			return NULL;
		}
		if (got < n)
			atomic_fetch_add(&c->short_calls, 1);
		atomic_fetch_add(&c->got, got);
		note_held(&c->held, &c->most, got, BULK_CROWD_LIMIT);
		for (unsigned k = 0; k < got; k++)
			memset(objs[k], 0x5a, 64);
		if (th_rand(&rng) % 4 == 0)
			sched_yield();
		atomic_fetch_sub(&c->held, got);
		iop_free_bulk(c->pool, objs, got);
	}
	return NULL;
}

TEST(bulk_callers_never_pass_the_limit)
{
	th_watchdog("bulk_callers_never_pass_the_limit", 240);
	iop_pool_t *pool = mkbound("bulkcrowd", BULK_CROWD_LIMIT, 0, 0, 0, 0, 0);
	struct bulk_crowd c = { .pool = pool };
	run_crowd(BULK_CROWD_THREADS, bulk_crowd_main, &c);
	CHECK_GT(atomic_load(&c.got), 0);
	uint64_t got = (uint64_t)atomic_load(&c.got);
	struct iop_pool_stats st = check_crowd(pool, &c.most, BULK_CROWD_LIMIT, got);
	printf("%s: %ld calls, %ld short, %llu objects, at most %ld held\n",
	       st.cache_mode == IOP_CACHE_MODE_CPU ? "per CPU" : "per thread", atomic_load(&c.calls),
	       atomic_load(&c.short_calls), (unsigned long long)got, atomic_load(&c.most));
	finish(pool);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Races with the timeout, signals, destroy                                  */
/* ------------------------------------------------------------------------ */

/* A free that races a waiter's timeout either serves the waiter or
 * comes back to the pool; the object is never lost. Both outcomes must
 * occur, or the race was not run: the free's delay walks towards the
 * moment of the timeout (longer after a serve, shorter after a timeout),
 * and the case runs until each outcome has happened at least
 * MIN_EACH times (and MIN_ROUNDS rounds), at most MAX_ROUNDS. After every round the one
 * object is back: in flight 0, the audit clean, and an IOP_NOWAIT
 * allocation gets that same object. */
TEST(free_racing_the_timeout_loses_nothing)
{
	th_watchdog("free_racing_the_timeout_loses_nothing", 120);
	enum { MIN_EACH = 5, MIN_ROUNDS = TH_TSAN ? 40 : 200, MAX_ROUNDS = 3000 };
	iop_pool_t *pool = mkbound("race", 1, 100, 0, 0, 0, 0);
	int rounds = 0, served = 0, timed_out = 0;
	long delay_us = 700;
	while ((served < MIN_EACH || timed_out < MIN_EACH || rounds < MIN_ROUNDS) && rounds < MAX_ROUNDS) {
		rounds++;
		void *p = iop_alloc(pool);
		REQUIRE(p != NULL);
		struct waiter w = { .pool = pool, .how = IOP_WAIT, .timeout = 1 * MS };
		pthread_t t;
		start_waiter(&t, &w);
		/* Free around the moment the wait times out. */
		struct timespec ts = { 0, delay_us * 1000 };
		nanosleep(&ts, NULL);
		iop_free(pool, p);
		pthread_join(t, NULL);
		if (w.rc == 0) {
			served++;
			CHECK_PTR_EQ(w.obj, p);
			iop_free(pool, w.obj);
			delay_us += 25;
		} else {
			timed_out++;
			CHECK_EQ(w.rc, -ETIMEDOUT);
			CHECK(w.obj == NULL);
			if (delay_us > 25)
				delay_us -= 25;
		}
		/* Either way the one object is back and can be had (in the
		 * default mode: in the per-CPU mode it may sit in another CPU's
		 * cache, which IOP_NOWAIT does not drain). */
		struct iop_pool_stats st = STATS(pool);
		CHECK_EQ(st.in_flight, 0);
		CHECK_AUDIT(pool);
		void *again = NULL;
		CHECK_EQ(iop_alloc_ex(pool, &again, 0, 0), 0);
		CHECK_PTR_EQ(again, p);
		iop_free(pool, again);
	}
	printf("%d rounds: %d served, %d timed out (free after %ld us)\n", rounds, served, timed_out, delay_us);
	CHECK_GE(served, MIN_EACH);
	CHECK_GE(timed_out, MIN_EACH);
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.timeouts, (uint64_t)timed_out);
	finish(pool);
	return TH_PASS;
}

static atomic_long signals_seen;

static void on_usr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&signals_seen, 1);
}

struct storm {
	pthread_t targets[2];
	atomic_bool stop;
};

static void *storm_main(void *arg)
{
	struct storm *s = arg;
	while (!atomic_load(&s->stop)) {
		for (int i = 0; i < 2; i++)
			pthread_kill(s->targets[i], SIGUSR1);
		struct timespec ts = { 0, 100000 }; /* 100 us */
		nanosleep(&ts, NULL);
	}
	return NULL;
}

TEST(signal_storm_neither_ends_waits_nor_loses_buffers)
{
	th_watchdog("signal_storm_neither_ends_waits_nor_loses_buffers", 60);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART */
	REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0);

	iop_pool_t *pool = mkbound("storm", 2, 100, 0, 0, 0, 0);
	void *objs[2];
	hold(pool, objs, 2);
	struct waiter timed = { .pool = pool, .id = 0, .timeout = 300 * MS };
	struct waiter forever = { .pool = pool, .id = 1, .timeout = IOP_FOREVER };
	struct storm s = { .stop = false };
	start_waiter(&s.targets[0], &timed);
	await_waiters(pool, 1);
	start_waiter(&s.targets[1], &forever);
	await_waiters(pool, 2);
	pthread_t st;
	REQUIRE(pthread_create(&st, NULL, storm_main, &s) == 0);

	/* The first waiter times out: not early, in spite of the signals. */
	while (!atomic_load(&timed.done))
		sleep_ms(1);
	CHECK_EQ(timed.rc, -ETIMEDOUT);
	CHECK_GE(timed.elapsed, 300 * MS);
	/* The second is still there after more signals, and gets the buffer. */
	sleep_ms(100);
	CHECK_EQ(STATS(pool).waiters, 1);
	iop_free(pool, objs[0]);
	pthread_join(s.targets[1], NULL);
	atomic_store(&s.stop, true);
	pthread_join(st, NULL);
	pthread_join(s.targets[0], NULL);
	CHECK_EQ(forever.rc, 0);
	CHECK_PTR_EQ(forever.obj, objs[0]);
	CHECK_GT(atomic_load(&signals_seen), 100);
	iop_free(pool, forever.obj);
	iop_free(pool, objs[1]);
	finish(pool);
	return TH_PASS;
}

TEST(destroy_wakes_waiters_with_eshutdown)
{
	th_watchdog("destroy_wakes_waiters_with_eshutdown", 60);
	iop_pool_t *pool = mkbound("shutdown", 4, 100, 0, 0, 0, 0);
	void *objs[4];
	hold(pool, objs, 4);
	struct waiter w[3];
	pthread_t t[3];
	for (int i = 0; i < 3; i++) {
		w[i] = (struct waiter){ .pool = pool, .id = i, .timeout = IOP_FOREVER };
		start_waiter(&t[i], &w[i]);
	}
	await_waiters(pool, 3);
	th_capture_begin();
	CHECK_EQ(iop_pool_destroy(pool), -EBUSY); /* 4 still in flight */
	char *out = th_capture_end();
	CHECK_STR_HAS(out, "4 objects still in flight");
	free(out);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(w[i].rc, -ESHUTDOWN);
		CHECK(w[i].obj == NULL);
	}
	/* Later allocations are refused; frees still work. */
	errno = 0;
	CHECK(iop_alloc(pool) == NULL);
	CHECK_EQ(errno, ESHUTDOWN);
	void *p;
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_WAIT, IOP_FOREVER), -ESHUTDOWN);
	CHECK_EQ(iop_alloc_ex(pool, &p, IOP_NOWAIT, 0), -ESHUTDOWN);
	release(pool, objs, 4);
	CHECK_EQ(STATS(pool).waiters, 0);
	CHECK_AUDIT(pool);
	CHECK_DESTROY(pool);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Refcounted buffers and statistics                                         */
/* ------------------------------------------------------------------------ */

struct putter {
	iop_pool_t *pool;
	void *buf;
};

static void *putter_main(void *arg)
{
	struct putter *p = arg;
	iop_buf_put(p->pool, p->buf);
	return NULL;
}

TEST(refcounted_buffers_wait_and_hand_over)
{
	th_watchdog("refcounted_buffers_wait_and_hand_over", 30);
	iop_pool_t *pool = mkbound("bufs", 2, 100, 0, 0, 0, IOP_F_REFCOUNT);
	void *a, *b, *c;
	CHECK_EQ(iop_buf_alloc_ex(pool, &a, IOP_WAIT, 0), 0);
	CHECK_EQ(iop_buf_alloc_ex(pool, &b, 0, 0), 0);
	CHECK_EQ(iop_buf_alloc_ex(pool, &c, IOP_NOWAIT, 0), -ENOMEM);
	iop_buf_get(pool, a); /* two references: the first put keeps it */
	struct putter pa = { pool, a };
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, putter_main, &pa) == 0);
	pthread_join(t, NULL);
	CHECK_EQ(iop_buf_refcount(pool, a), 1);
	/* The last put, on another thread, hands the buffer to the waiter. */
	REQUIRE(pthread_create(&t, NULL, putter_main, &pa) == 0);
	CHECK_EQ(iop_buf_alloc_ex(pool, &c, IOP_WAIT, IOP_FOREVER), 0);
	pthread_join(t, NULL);
	CHECK_PTR_EQ(c, a);
	CHECK_EQ(iop_buf_refcount(pool, c), 1);
	iop_buf_put(pool, b);
	iop_buf_put(pool, c);
	finish(pool);
	return TH_PASS;
}

TEST(stats_print_shows_the_bounds)
{
	iop_pool_t *pool = mkbound("printed", 10, 0, 0, 0, 0, 0);
	void *p = iop_alloc(pool);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	REQUIRE(f != NULL);
	CHECK_EQ(iop_pool_stats_print(pool, f, IOP_FMT_JSON), 0);
	CHECK_EQ(iop_pool_stats_print(pool, f, IOP_FMT_TEXT), 0);
	fclose(f);
	CHECK_STR_HAS(buf, "\"limit\":10,\"throttle_on\":7,\"throttle_off\":6,\"high_water\":1");
	CHECK_STR_HAS(buf, "fail_wait");
	CHECK_STR_HAS(buf, "  wait_p99_ns");
	free(buf);

	/* A 0.2 caller's stats struct is not written past its end. */
	struct iop_pool_stats st;
	memset(&st, 0xee, sizeof(st));
	st.struct_size = IOP_POOL_STATS_SIZE_V2;
	CHECK_EQ(iop_pool_stats(pool, &st), 0);
	CHECK_EQ(st.limit, 0xeeeeeeeeeeeeeeeeull);
	CHECK_EQ(st.in_flight, 1);
	iop_free(pool, p);
	finish(pool);
	return TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
