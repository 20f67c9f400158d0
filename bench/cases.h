/* SPDX-License-Identifier: MIT */
/*
 * The benchmark cases, written once and instantiated once per allocator so
 * that every timed loop calls its allocator directly, as an application
 * would: no function pointer in the loop; DPDK's rte_mempool_get/put and
 * iopool's fast paths are inlined from their headers, malloc and free are
 * plain calls.
 *
 * Include this file once, from an alloc_*.c, after defining:
 *
 *   A_NAME                       the allocator's name (a string literal)
 *   actx_t                       per-pool context (a typedef)
 *   int  actx_open(actx_t *c, size_t obj_size, char *why, size_t len)
 *                                0, or -1 with a reason in why
 *   void actx_close(actx_t *c)
 *   void *a_alloc(actx_t *c)     NULL on failure
 *   void a_free(actx_t *c, void *p)
 *   int  a_alloc_bulk(actx_t *c, void **objs, unsigned n)
 *                                0 when all n were allocated, else -1
 *   void a_free_bulk(actx_t *c, void **objs, unsigned n)
 *   int  a_thread_enter(char *why, size_t len)
 *                                a new thread announces itself (DPDK lcore
 *                                registration); 0, or -1 with a reason
 *   void a_thread_exit(void)
 *
 * and, for the recycle case, when the allocator has refcounted buffers:
 *
 *   A_HAS_BUF                    defined
 *   int  actx_open_buf(actx_t *c, size_t obj_size, char *why, size_t len)
 *                                a pool of refcounted buffers; as actx_open
 *   void *a_buf_alloc(actx_t *c) a buffer with one reference; NULL on failure
 *   void a_buf_put(actx_t *c, void *p)
 *                                drop the reference (the last one recycles)
 *
 * (without A_HAS_BUF the recycle case is n/a: "no refcounted buffers"),
 * and it defines `static void run_cases(const struct child_opts *o)`.
 */
#ifndef A_NAME
#error "define the allocator before including cases.h"
#endif

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct loop_arg {
	actx_t *ctx;
	unsigned n;      /* outstanding count or bulk size */
	void **objs;     /* MAX_LIVE slots */
	struct xring *ring;
	char why[192];   /* why a loop failed (it then returns LOOP_FAILED) */
};

static void alloc_failed(const char *what)
{
	die("%s: %s failed: allocation returned nothing", A_NAME, what);
}

/* fastpath, size, and the body of every threads worker. */
static uint64_t loop_pair(void *varg, uint64_t iters)
{
	struct loop_arg *a = varg;
	actx_t *c = a->ctx;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		void *p = a_alloc(c);

		if (__builtin_expect(p == NULL, 0))
			alloc_failed("alloc");
		touch(p, i);
		escape(p);
		a_free(c, p);
	}
	return now_ns() - t0;
}

#ifdef A_HAS_BUF
/* recycle "buf_put": loop_pair with a refcounted buffer. */
static uint64_t loop_buf_pair(void *varg, uint64_t iters)
{
	struct loop_arg *a = varg;
	actx_t *c = a->ctx;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		void *p = a_buf_alloc(c);

		if (__builtin_expect(p == NULL, 0))
			alloc_failed("buf alloc");
		touch(p, i);
		escape(p);
		a_buf_put(c, p);
	}
	return now_ns() - t0;
}

/* recycle "buf_alloc+free": a refcounted buffer released with a plain free
 * (which skips its count), to isolate what the put itself costs. */
static uint64_t loop_buf_free(void *varg, uint64_t iters)
{
	struct loop_arg *a = varg;
	actx_t *c = a->ctx;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		void *p = a_buf_alloc(c);

		if (__builtin_expect(p == NULL, 0))
			alloc_failed("buf alloc");
		touch(p, i);
		escape(p);
		a_free(c, p);
	}
	return now_ns() - t0;
}
#endif

/* outstanding: n allocations, then the n frees, in allocation order. */
static uint64_t loop_outstanding(void *varg, uint64_t iters)
{
	struct loop_arg *a = varg;
	actx_t *c = a->ctx;
	void **objs = a->objs;
	unsigned n = a->n;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		for (unsigned k = 0; k < n; k++) {
			void *p = a_alloc(c);

			if (__builtin_expect(p == NULL, 0))
				alloc_failed("alloc");
			touch(p, i);
			objs[k] = p;
		}
		escape(objs);
		for (unsigned k = 0; k < n; k++)
			a_free(c, objs[k]);
	}
	return now_ns() - t0;
}

/* bulk of a fixed size; objects are not touched (only escaped), as in the
 * page_pool and mempool bulk tests, so this isolates the allocator. */
static uint64_t loop_bulk(void *varg, uint64_t iters)
{
	struct loop_arg *a = varg;
	actx_t *c = a->ctx;
	void **objs = a->objs;
	unsigned n = a->n;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		if (__builtin_expect(a_alloc_bulk(c, objs, n) != 0, 0))
			alloc_failed("bulk alloc");
		escape(objs);
		a_free_bulk(c, objs, n);
	}
	return now_ns() - t0;
}

/* bulk "rand1-64": one iteration is one pass over the precomputed table. */
static uint64_t loop_bulk_rand(void *varg, uint64_t iters)
{
	struct loop_arg *a = varg;
	actx_t *c = a->ctx;
	void **objs = a->objs;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		for (unsigned k = 0; k < BULK_RAND_TABLE; k++) {
			unsigned n = bulk_rand_table[k];

			if (__builtin_expect(a_alloc_bulk(c, objs, n) != 0, 0))
				alloc_failed("bulk alloc");
			escape(objs);
			a_free_bulk(c, objs, n);
		}
	}
	return now_ns() - t0;
}

/* ---- crossthread: alloc here, free on a consumer thread via the ring ---- */

struct xconsumer {
	struct loop_arg *a;
	uint64_t n;
	_Atomic int ready;   /* 1 = consuming, -1 = could not start */
	uint64_t t_end;
};

static void *xconsumer_main(void *varg)
{
	struct xconsumer *x = varg;
	actx_t *c = x->a->ctx;
	struct xring *r = x->a->ring;

	if (a_thread_enter(x->a->why, sizeof(x->a->why)) != 0) {
		atomic_store(&x->ready, -1);
		return NULL;
	}
	atomic_store(&x->ready, 1);
	for (uint64_t i = 0; i < x->n; i++)
		a_free(c, xring_pop(r));
	x->t_end = now_ns();
	a_thread_exit();
	return NULL;
}

static uint64_t loop_crossthread(void *varg, uint64_t iters)
{
	struct loop_arg *a = varg;
	struct xring *r = a->ring;
	struct xconsumer x = { .a = a, .n = iters };
	pthread_t th;
	uint64_t t0;
	int err;

	xring_reset(r);
	err = pthread_create(&th, NULL, xconsumer_main, &x);
	if (err != 0) {
		snprintf(a->why, sizeof(a->why), "pthread_create: %s",
			 strerror(err));
		return LOOP_FAILED;
	}
	while (atomic_load(&x.ready) == 0)
		cpu_relax();
	if (atomic_load(&x.ready) < 0) {
		pthread_join(th, NULL);
		return LOOP_FAILED;
	}
	t0 = now_ns();
	for (uint64_t i = 0; i < iters; i++) {
		void *p = a_alloc(a->ctx);

		if (__builtin_expect(p == NULL, 0))
			alloc_failed("alloc");
		touch(p, i);
		xring_push(r, p);
	}
	xring_flush(r);
	pthread_join(th, NULL);
	return x.t_end - t0;
}

/* ---- threads: T workers doing pairs, released together by one flag ---- */

struct tshared {
	actx_t *ctx;
	uint64_t pairs;
	_Atomic unsigned ready;
	_Atomic int go;
	_Atomic int failed;
	char why[192];
};

struct tworker {
	_Alignas(64) struct tshared *s;
	pthread_t th;
	uint64_t cpu_ns;
	uint64_t t_end;
};

static void *tworker_main(void *varg)
{
	struct tworker *w = varg;
	struct tshared *s = w->s;
	struct loop_arg a = { .ctx = s->ctx };
	char why[sizeof(s->why)];
	uint64_t c0;

	if (a_thread_enter(why, sizeof(why)) != 0) {
		if (atomic_exchange(&s->failed, 1) == 0)
			memcpy(s->why, why, sizeof(why));
		atomic_fetch_add(&s->ready, 1);
		return NULL;
	}
	atomic_fetch_add(&s->ready, 1);
	/* More threads than cores is intended: yield while waiting so the
	 * threads not yet started (and the releasing thread) get to run. */
	while (!atomic_load_explicit(&s->go, memory_order_acquire))
		sched_yield();
	c0 = thread_cpu_ns();
	loop_pair(&a, s->pairs);
	w->cpu_ns = thread_cpu_ns() - c0;
	w->t_end = now_ns();
	a_thread_exit();
	return NULL;
}

static void case_threads(const struct child_opts *o, actx_t *c)
{
	const struct case_desc *cd = &bench_cases[CASE_THREADS];
	struct loop_arg a = { .ctx = c };
	struct tworker *w;
	uint64_t pairs;
	double ns;

	w = aligned_alloc(64, sizeof(*w) * THREADS_MAX);
	if (w == NULL)
		die("out of memory");
	/* Pairs per thread: what one thread of this allocator does in about
	 * one timed loop, so that every allocator's T = 1 runs long enough
	 * for the scheduler to have spread the threads when T is small; the
	 * same count for every T. */
	ns = measure(o, loop_pair, &a, 1);
	pairs = (uint64_t)((double)o->target_ns / (ns > 0 ? ns : 1));
	if (pairs < THREAD_PAIRS_MIN)
		pairs = THREAD_PAIRS_MIN;
	if (pairs > THREAD_PAIRS_MAX)
		pairs = THREAD_PAIRS_MAX;
	/* pi == -1: one untimed single-thread round first, so that carving and
	 * faulting the pool's first memory is not charged to T = 1. */
	for (int pi = -1; pi < (int)cd->nparams; pi++) {
		unsigned t = pi < 0 ? 1 : thread_counts[pi], started = 0;
		struct tshared s = { .ctx = c, .pairs = pairs };
		uint64_t t0, last = 0, cpu = 0;
		int err = 0;

		for (; started < t; started++) {
			memset(&w[started], 0, sizeof(w[started]));
			w[started].s = &s;
			err = pthread_create(&w[started].th, NULL, tworker_main,
					     &w[started]);
			if (err != 0)
				break;
		}
		while (atomic_load(&s.ready) < started)
			sched_yield();
		t0 = now_ns();
		atomic_store_explicit(&s.go, 1, memory_order_release);
		for (unsigned i = 0; i < started; i++) {
			pthread_join(w[i].th, NULL);
			if (w[i].t_end > last)
				last = w[i].t_end;
			cpu += w[i].cpu_ns;
		}
		if (pi < 0)
			continue;
		if (err != 0) {
			emit_na(CASE_THREADS, cd->params[pi],
				"pthread_create: %s", strerror(err));
		} else if (atomic_load(&s.failed)) {
			emit_na(CASE_THREADS, cd->params[pi], "%s", s.why);
		} else {
			double per = (double)cpu / t / (double)s.pairs;
			double mops = (double)t * (double)s.pairs * 1e3 /
				      (double)(last - t0);

			emit_row(CASE_THREADS, cd->params[pi], per, mops);
		}
	}
	free(w);
}

/* ---- driver of the cases ---- */

static int open_or_na(actx_t *c, size_t size, enum bench_case cs,
		      const char *param)
{
	char why[192];

	if (actx_open(c, size, why, sizeof(why)) == 0)
		return 0;
	if (param != NULL)
		emit_na(cs, param, "%s", why);
	else
		emit_case_na(cs, why);
	return -1;
}

static void emit_measured(const struct child_opts *o, enum bench_case cs,
			  const char *param, loop_fn fn, struct loop_arg *a,
			  double ops_per_iter)
{
	double ns;

	a->why[0] = '\0';
	ns = measure(o, fn, a, ops_per_iter);
	if (ns < 0)
		emit_na(cs, param, "%s", a->why[0] ? a->why : "loop failed");
	else
		emit_row(cs, param, ns, -1);
}

/* recycle: the same pair with a plain free ("free", the fastpath loop) and
 * with a refcounted buffer's put ("buf_put"), one pool each. */
static void case_recycle(const struct child_opts *o, struct loop_arg *a,
			 actx_t *c)
{
	const struct case_desc *cd = &bench_cases[CASE_RECYCLE];
#ifdef A_HAS_BUF
	char why[192];

	if (open_or_na(c, OBJ_SIZE_DEFAULT, CASE_RECYCLE, cd->params[0]) == 0) {
		emit_measured(o, CASE_RECYCLE, cd->params[0], loop_pair, a, 1);
		actx_close(c);
	}
	if (actx_open_buf(c, OBJ_SIZE_DEFAULT, why, sizeof(why)) != 0) {
		emit_na(CASE_RECYCLE, cd->params[1], "%s", why);
		return;
	}
	emit_measured(o, CASE_RECYCLE, cd->params[1], loop_buf_pair, a, 1);
	/* Checked pools refuse a plain free of a referenced buffer. */
	const char *checked = getenv("IOPOOL_CHECKED");
	if (IOP_BENCH_DEBUG >= 2 || (checked && *checked && strcmp(checked, "0") != 0))
		emit_na(CASE_RECYCLE, cd->params[2], "%s", "checked pools refuse iop_free of a referenced buffer");
	else
		emit_measured(o, CASE_RECYCLE, cd->params[2], loop_buf_free, a, 1);
	actx_close(c);
#else
	(void)o;
	(void)a;
	(void)c;
	(void)cd;
	emit_case_na(CASE_RECYCLE, "no refcounted buffers");
#endif
}

static void run_cases(const struct child_opts *o)
{
	const struct case_desc *cd;
	struct loop_arg a = { 0 };
	actx_t c;

	a.ctx = &c;
	/* On a cache line, as DPDK's tests declare their obj_table
	 * (__rte_cache_aligned): where the array starts decides whether the
	 * bulk calls' 16- and 32-byte copies straddle lines. */
	a.objs = aligned_alloc(64, MAX_LIVE * sizeof(void *));
	a.ring = aligned_alloc(64, sizeof(struct xring));
	if (a.objs == NULL || a.ring == NULL)
		die("out of memory");

	if ((o->case_mask & (1u << CASE_FASTPATH)) &&
	    open_or_na(&c, OBJ_SIZE_DEFAULT, CASE_FASTPATH, NULL) == 0) {
		cd = &bench_cases[CASE_FASTPATH];
		emit_measured(o, CASE_FASTPATH, cd->params[0], loop_pair, &a, 1);
		actx_close(&c);
	}
	if (o->case_mask & (1u << CASE_SIZE)) {
		cd = &bench_cases[CASE_SIZE];
		for (unsigned pi = 0; pi < cd->nparams; pi++) {
			if (open_or_na(&c, size_case_sizes[pi], CASE_SIZE,
				       cd->params[pi]) != 0)
				continue;
			emit_measured(o, CASE_SIZE, cd->params[pi], loop_pair,
				      &a, 1);
			actx_close(&c);
		}
	}
	if ((o->case_mask & (1u << CASE_OUTSTANDING)) &&
	    open_or_na(&c, OBJ_SIZE_DEFAULT, CASE_OUTSTANDING, NULL) == 0) {
		cd = &bench_cases[CASE_OUTSTANDING];
		for (unsigned pi = 0; pi < cd->nparams; pi++) {
			a.n = outstanding_counts[pi];
			emit_measured(o, CASE_OUTSTANDING, cd->params[pi],
				      loop_outstanding, &a, a.n);
		}
		actx_close(&c);
	}
	if ((o->case_mask & (1u << CASE_CROSSTHREAD)) &&
	    open_or_na(&c, OBJ_SIZE_DEFAULT, CASE_CROSSTHREAD, NULL) == 0) {
		cd = &bench_cases[CASE_CROSSTHREAD];
		emit_measured(o, CASE_CROSSTHREAD, cd->params[0],
			      loop_crossthread, &a, 1);
		actx_close(&c);
	}
	if ((o->case_mask & (1u << CASE_BULK)) &&
	    open_or_na(&c, OBJ_SIZE_DEFAULT, CASE_BULK, NULL) == 0) {
		unsigned order[BENCH_MAX_PARAMS];
		double sum = 0;

		cd = &bench_cases[CASE_BULK];
		bulk_prepare(o->rep, order);
		for (unsigned k = 0; k < BULK_RAND_TABLE; k++)
			sum += bulk_rand_table[k];
		for (unsigned k = 0; k < cd->nparams; k++) {
			unsigned pi = order[k];

			a.n = bulk_sizes[pi];
			if (a.n == 0)
				emit_measured(o, CASE_BULK, cd->params[pi],
					      loop_bulk_rand, &a, sum);
			else
				emit_measured(o, CASE_BULK, cd->params[pi],
					      loop_bulk, &a, a.n);
		}
		actx_close(&c);
	}
	if ((o->case_mask & (1u << CASE_THREADS)) &&
	    open_or_na(&c, OBJ_SIZE_DEFAULT, CASE_THREADS, NULL) == 0) {
		case_threads(o, &c);
		actx_close(&c);
	}
	if (o->case_mask & (1u << CASE_RECYCLE))
		case_recycle(o, &a, &c);
	free(a.ring);
	free(a.objs);
}
