/* SPDX-License-Identifier: MIT */
/*
 * Objects allocated on one thread and freed on another, handed over through
 * a single-producer single-consumer ring, the way a receive thread hands
 * buffers to a worker. Checks that every object arrives intact and in order,
 * that the pool's books balance at every quiescent point, and that memory
 * stays bounded: cross-thread frees must recycle, not leak into new chunks.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"

#include <pthread.h>
#include <sched.h>

#if TH_TSAN
#define OBJECTS 60000
#else
#define OBJECTS 1000000
#endif

#define RING 1024 /* slots; a power of two */
#define OBJ_SIZE 256
#define CACHE 32

/* ---- SPSC ring: head written by the consumer, tail by the producer ---- */

struct ring {
	_Alignas(64) atomic_size_t head;
	_Alignas(64) atomic_size_t tail;
	_Alignas(64) void *slot[RING];
};

static void ring_init(struct ring *r)
{
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
}

static int ring_push(struct ring *r, void *p)
{
	size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
	if (t - h == RING)
		return 0;
	r->slot[t & (RING - 1)] = p;
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return 1;
}

static void *ring_pop(struct ring *r)
{
	size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	if (h == t)
		return NULL;
	void *p = r->slot[h & (RING - 1)];
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
	return p;
}

/* ---- producer and consumer ---------------------------------------------- */

/* Object i of a stream carries tag (stream << 40 | i). */
static void produce(iop_pool_t *pool, struct ring *r, uint64_t stream,
		    uint64_t seed)
{
	uint64_t rng = th_seed(seed, stream);
	uint64_t i = 0;
	void *batch[64];
	while (i < OBJECTS) {
		unsigned want = (unsigned)(th_rand(&rng) % 64) + 1;
		if (want > OBJECTS - i)
			want = (unsigned)(OBJECTS - i);
		unsigned got;
		if (want == 1) {
			batch[0] = iop_alloc(pool);
			got = batch[0] != NULL;
		} else {
			got = iop_alloc_bulk(pool, batch, want);
		}
		if (got != want) {
			th_fail_at(__FILE__, __LINE__,
				   "allocation failed: %u of %u", got, want);
			exit(TH_FAIL);
		}
		for (unsigned k = 0; k < got; k++) {
			th_stamp(batch[k], OBJ_SIZE, stream << 40 | (i + k));
			while (!ring_push(r, batch[k]))
				sched_yield();
		}
		i += got;
	}
}

static void consume(iop_pool_t *pool, struct ring *r, uint64_t stream,
		    uint64_t seed)
{
	uint64_t rng = th_seed(seed, stream + 100);
	uint64_t i = 0;
	void *batch[64];
	unsigned nb = 0, want = 1;
	while (i < OBJECTS) {
		void *p = ring_pop(r);
		if (!p) {
			sched_yield();
			continue;
		}
		if (!CHECK_STAMP(p, OBJ_SIZE, stream << 40 | i))
			exit(TH_FAIL); /* out of order, lost or corrupted */
		if (iop_pool_of(p) != pool) {
			th_fail_at(__FILE__, __LINE__, "%p: wrong owner", p);
			exit(TH_FAIL);
		}
		i++;
		/* free singly or in bulk runs of random length */
		batch[nb++] = p;
		if (nb == want || i == OBJECTS) {
			if (nb == 1)
				iop_free(pool, batch[0]);
			else
				iop_free_bulk(pool, batch, nb);
			nb = 0;
			want = (unsigned)(th_rand(&rng) % 64) + 1;
		}
	}
}

/* ---- the cases ------------------------------------------------------------ */

struct side {
	iop_pool_t *pool;
	struct ring *ab, *ba; /* a -> b and b -> a */
	pthread_barrier_t *bar;
	int is_a;
	int mode; /* 0: phases with a barrier between; 1: both at once */
};

/*
 * Phases, with main checking the books at each barrier:
 *   1. A allocates, B frees
 *   2. B allocates, A frees
 */
static void *side_main(void *arg)
{
	struct side *s = arg;
	if (s->is_a)
		produce(s->pool, s->ab, 1, 42);
	else
		consume(s->pool, s->ab, 1, 42);
	pthread_barrier_wait(s->bar);
	pthread_barrier_wait(s->bar);
	if (s->is_a)
		consume(s->pool, s->ba, 2, 43);
	else
		produce(s->pool, s->ba, 2, 43);
	pthread_barrier_wait(s->bar);
	pthread_barrier_wait(s->bar);
	return NULL;
}

struct dual {
	iop_pool_t *pool;
	struct ring *out, *in;
	uint64_t out_stream, in_stream;
};

/* Both directions at once: each thread produces on one ring and consumes
 * the other, alternating without blocking on either. */
static void *dual_main(void *arg)
{
	struct dual *d = arg;
	uint64_t rng = th_seed(7, d->out_stream);
	uint64_t sent = 0, got = 0;
	while (sent < OBJECTS || got < OBJECTS) {
		uint64_t before = sent + got;
		unsigned burst = (unsigned)(th_rand(&rng) % 32) + 1;
		for (unsigned k = 0; k < burst && sent < OBJECTS; k++) {
			void *p = iop_alloc(d->pool);
			if (!p) {
				th_fail_at(__FILE__, __LINE__, "alloc failed");
				exit(TH_FAIL);
			}
			th_stamp(p, OBJ_SIZE, d->out_stream << 40 | sent);
			if (!ring_push(d->out, p)) {
				iop_free(d->pool, p); /* ring full: try later */
				break;
			}
			sent++;
		}
		for (unsigned k = 0; k < 2 * burst && got < OBJECTS; k++) {
			void *p = ring_pop(d->in);
			if (!p)
				break;
			if (!CHECK_STAMP(p, OBJ_SIZE, d->in_stream << 40 | got))
				exit(TH_FAIL);
			iop_free(d->pool, p);
			got++;
		}
		if (sent + got == before)
			sched_yield(); /* no progress: let the other side run */
	}
	return NULL;
}

/*
 * Objects in a quiescent pool with at most RING in the ring and a few
 * magazines per thread: beyond that memory has leaked into new chunks.
 */
static void check_bounded(const struct iop_pool_stats *st, unsigned rings)
{
	uint64_t live = (uint64_t)rings * RING + 2 * 4 * CACHE + 8 * CACHE;
	uint64_t max_chunks = live / st->objs_per_chunk + 2;
	if (st->chunks > max_chunks)
		th_fail_at(__FILE__, __LINE__,
			   "%llu chunks (%llu objects) for at most %llu live "
			   "objects: cross-thread frees are not recycled",
			   (unsigned long long)st->chunks,
			   (unsigned long long)st->total,
			   (unsigned long long)live);
}

static void check_quiescent(iop_pool_t *pool, uint64_t in_flight,
			    unsigned rings)
{
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.in_flight, in_flight);
	CHECK_CONSERVED(st);
	check_bounded(&st, rings);
	CHECK_AUDIT(pool); /* threads hold caches, but none is calling */
}

TEST(crossthread_alloc_on_a_free_on_b_then_reverse)
{
	iop_pool_t *pool = MKPOOL("xthread", OBJ_SIZE, 0, CACHE, 0, 0);
	static struct ring ab, ba;
	ring_init(&ab);
	ring_init(&ba);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, 3);
	struct side a = { pool, &ab, &ba, &bar, 1, 0 };
	struct side b = { pool, &ab, &ba, &bar, 0, 0 };
	pthread_t ta, tb;
	REQUIRE(pthread_create(&ta, NULL, side_main, &a) == 0);
	REQUIRE(pthread_create(&tb, NULL, side_main, &b) == 0);

	pthread_barrier_wait(&bar); /* phase 1 done */
	check_quiescent(pool, 0, 1);
	struct iop_pool_stats st = STATS(pool);
	CHECK_GE(st.alloc_fast + st.alloc_slow, OBJECTS);
	CHECK_GE(st.free_fast + st.free_slow, OBJECTS);
	pthread_barrier_wait(&bar);

	pthread_barrier_wait(&bar); /* phase 2 done */
	check_quiescent(pool, 0, 1);
	pthread_barrier_wait(&bar);

	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_barrier_destroy(&bar);
	st = STATS(pool);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CACHED_BY_NO_THREAD(st); /* both threads exited */
	CHECK_GE(st.alloc_fast + st.alloc_slow, 2 * OBJECTS);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(pool);
	CHECK_DESTROY(pool);
	return TH_PASS;
}

TEST(crossthread_both_directions_at_once)
{
	iop_pool_t *pool = MKPOOL("duplex", OBJ_SIZE, 0, CACHE, 0, 0);
	static struct ring ab, ba;
	ring_init(&ab);
	ring_init(&ba);
	struct dual a = { pool, &ab, &ba, 1, 2 };
	struct dual b = { pool, &ba, &ab, 2, 1 };
	pthread_t ta, tb;
	REQUIRE(pthread_create(&ta, NULL, dual_main, &a) == 0);
	REQUIRE(pthread_create(&tb, NULL, dual_main, &b) == 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CACHED_BY_NO_THREAD(st);
	CHECK_CONSERVED(st);
	check_bounded(&st, 2);
	CHECK_AUDIT(pool);
	CHECK_DESTROY(pool);
	return TH_PASS;
}

/* Main allocates, a worker frees; main's own cache runs dry and must be
 * refilled from what the worker returned to the depot. */
struct drain {
	iop_pool_t *pool;
	struct ring *r;
};

static void *drain_main(void *arg)
{
	struct drain *d = arg;
	consume(d->pool, d->r, 3, 44);
	return NULL;
}

TEST(crossthread_frees_refill_the_allocating_thread)
{
	iop_pool_t *pool = MKPOOL("refill", OBJ_SIZE, 0, CACHE, 0, 0);
	static struct ring r;
	ring_init(&r);
	struct drain d = { pool, &r };
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, drain_main, &d) == 0);
	produce(pool, &r, 3, 44);
	pthread_join(t, NULL);
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CONSERVED(st);
	check_bounded(&st, 1);
	/* the producer took back what the consumer gave to the depot */
	CHECK_GT(st.depot_put, 0);
	CHECK_GT(st.depot_get, 0);
	FLUSH_ALL(pool);
	st = STATS(pool);
	CHECK_EQ(st.cached, 0);
	CHECK_AUDIT(pool);
	CHECK_DESTROY(pool);
	return TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
