/* SPDX-License-Identifier: MIT */
/*
 * Refcounted buffers (IOP_F_REFCOUNT), the pool hooks (map, unmap,
 * release), mapping handles, buffer bases and fragments: every call of the
 * header's "Refcounted buffers, mapping handles, fragments" section and every
 * promise it makes that a test can see, single-threaded and with references
 * dropped on other threads. The aborts (underflow, foreign pointers) are in
 * test_death.c.
 *
 * Built twice: test_buf (iop_buf_put inline from iopool.h) and
 * test_buf_noinline (IOP_NO_INLINE: the exported functions).
 * Usage: test_buf [case...]   (no argument: every case, each in a child)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>

/* Fewer operations under ThreadSanitizer, which runs this 10-20x slower. */
#define SCALE(n) (TH_TSAN ? (n) / 10 : (n))

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (void *const *)a;
	uintptr_t y = (uintptr_t) * (void *const *)b;
	return x < y ? -1 : x > y;
}

static uintptr_t chunk_base_of(const void *p, size_t chunk_size)
{
	return (uintptr_t)p & ~(uintptr_t)(chunk_size - 1);
}

/* ------------------------------------------------------------------------ */
/* A recorder for the hooks                                                  */
/* ------------------------------------------------------------------------ */

#define HK_MAX_CHUNKS 1024

struct hk_chunk {
	void *base;
	size_t len;
	uint64_t handle;
	int unmapped; /* times the unmap hook saw it */
};

struct hk {
	iop_pool_t *pool; /* what the release hook must be given */

	/* map / unmap */
	pthread_mutex_t lock;
	struct hk_chunk chunk[HK_MAX_CHUNKS];
	int nchunk;         /* successful maps recorded */
	int map_calls;      /* every call, failed ones included */
	int unmaps;
	int fail_at;        /* the fail_at-th map call fails (1-based); 0 none */
	int fail_all;       /* every map call fails while set */
	int map_err;        /* positive errno the failing map returns */
	size_t want_len;    /* 0, or the len every map and unmap must see */
	iop_pool_t *other;  /* map and unmap hooks allocate from this pool and
	                       read its statistics */
	int map_stats;      /* map hook reads its own pool's statistics */
	int map_flush;      /* map hook flushes this thread's caches */
	int map_self;       /* map hook allocates from its own pool */

	/* release */
	atomic_ulong releases;
	atomic_ulong kept;
	atomic_long keep_budget;       /* keep while > 0 */
	atomic_uchar *seen;            /* per buffer tag: releases seen */
	size_t nseen;
	size_t obj_size;               /* for the stamp check */
	void *stash[64];               /* buffers the hook kept */
	atomic_int nstash;
	int reenter;                   /* release hook calls the pool */
};

static void hk_init(struct hk *h)
{
	memset(h, 0, sizeof *h);
	pthread_mutex_init(&h->lock, NULL);
	h->map_err = EIO;
}

static void hk_fini(struct hk *h)
{
	pthread_mutex_destroy(&h->lock);
	free(h->seen);
	h->seen = NULL;
}

/* Handles that no two chunks share and that are never 0. */
static uint64_t hk_handle(int n)
{
	return 0x1000u + 0x10001ull * (uint64_t)n;
}

static __thread int in_release_hook, in_map_hook;

/* One allocation and free on pool q, and its statistics. */
static void use_pool(iop_pool_t *q)
{
	struct iop_pool_stats st;
	memset(&st, 0, sizeof st);
	st.struct_size = sizeof st;
	CHECK_EQ(iop_pool_stats(q, &st), 0);
	void *o = iop_alloc(q);
	CHECK(o != NULL);
	iop_free(q, o);
}

static int hk_map(void *arg, void *base, size_t len, uint64_t *handle)
{
	struct hk *h = arg;
	if (h->map_stats && h->pool) {
		/* no iopool lock may be held around the hook */
		struct iop_pool_stats st;
		memset(&st, 0, sizeof st);
		st.struct_size = sizeof st;
		CHECK_EQ(iop_pool_stats(h->pool, &st), 0);
	}
	if (h->other)
		use_pool(h->other);
	if (h->map_flush)
		iop_thread_flush();
	if (h->map_self && h->pool && !in_map_hook) {
		/* the pool's own allocation needing a chunk is in progress */
		in_map_hook = 1;
		void *b = iop_buf_alloc(h->pool);
		CHECK(b != NULL);
		if (b) {
			memset(b, 0x77, h->obj_size);
			iop_buf_put(h->pool, b);
		}
		in_map_hook = 0;
	}
	pthread_mutex_lock(&h->lock);
	int n = ++h->map_calls;
	int fail = h->fail_all || n == h->fail_at;
	if (!fail) {
		if (h->nchunk == HK_MAX_CHUNKS) {
			pthread_mutex_unlock(&h->lock);
			th_fail_at(__FILE__, __LINE__, "more than %d chunks",
				   HK_MAX_CHUNKS);
			return -ENOSPC;
		}
		struct hk_chunk *c = &h->chunk[h->nchunk++];
		c->base = base;
		c->len = len;
		c->handle = hk_handle(h->nchunk);
		c->unmapped = 0;
		*handle = c->handle;
	}
	pthread_mutex_unlock(&h->lock);
	if (h->want_len && len != h->want_len)
		th_fail_at(__FILE__, __LINE__, "map hook: len %zu, want %zu",
			   len, h->want_len);
	if ((uintptr_t)base % (2 * MiB))
		th_fail_at(__FILE__, __LINE__, "map hook: base %p is not a "
			   "chunk start", base);
	return fail ? -h->map_err : 0;
}

static void hk_unmap(void *arg, void *base, size_t len, uint64_t handle)
{
	struct hk *h = arg;
	if (h->other)
		use_pool(h->other);
	pthread_mutex_lock(&h->lock);
	h->unmaps++;
	struct hk_chunk *c = NULL;
	for (int i = h->nchunk - 1; i >= 0; i--)
		if (h->chunk[i].base == base && !h->chunk[i].unmapped) {
			c = &h->chunk[i];
			break;
		}
	if (c)
		c->unmapped++;
	pthread_mutex_unlock(&h->lock);
	if (!c) {
		th_fail_at(__FILE__, __LINE__, "unmap hook: %p (len %zu, "
			   "handle %#llx) was not mapped, or unmapped twice",
			   base, len, (unsigned long long)handle);
		return;
	}
	if (len != c->len || handle != c->handle)
		th_fail_at(__FILE__, __LINE__, "unmap hook: %p with len %zu "
			   "handle %#llx; map saw len %zu and stored %#llx",
			   base, len, (unsigned long long)handle, c->len,
			   (unsigned long long)c->handle);
}

/* The record of the live (not unmapped) chunk at base, or NULL. */
static struct hk_chunk *hk_find(struct hk *h, uintptr_t base)
{
	struct hk_chunk *c = NULL;
	pthread_mutex_lock(&h->lock);
	for (int i = h->nchunk - 1; i >= 0; i--)
		if ((uintptr_t)h->chunk[i].base == base &&
		    !h->chunk[i].unmapped) {
			c = &h->chunk[i];
			break;
		}
	pthread_mutex_unlock(&h->lock);
	return c;
}

/* Every chunk mapped was unmapped exactly once. */
static void hk_check_all_unmapped(struct hk *h)
{
	CHECK_EQ(h->unmaps, h->nchunk);
	for (int i = 0; i < h->nchunk; i++)
		if (h->chunk[i].unmapped != 1)
			th_fail_at(__FILE__, __LINE__, "chunk %p (handle "
				   "%#llx) unmapped %d times",
				   h->chunk[i].base,
				   (unsigned long long)h->chunk[i].handle,
				   h->chunk[i].unmapped);
}

static int hk_release(void *arg, iop_pool_t *pool, void *buf)
{
	struct hk *h = arg;
	atomic_fetch_add(&h->releases, 1);
	if (pool != h->pool)
		th_fail_at(__FILE__, __LINE__, "release hook: pool %p, want "
			   "%p", (void *)pool, (void *)h->pool);
	if (iop_buf_base(pool, buf) != buf)
		th_fail_at(__FILE__, __LINE__, "release hook: %p is not a "
			   "buffer start (that is %p)", buf,
			   iop_buf_base(pool, buf));
	if (h->seen) {
		/* whole buffers stamped with th_stamp(buf, obj_size, tag) */
		uint64_t tag = ((const uint64_t *)buf)[1] ^ th_cookie;
		if (tag >= h->nseen)
			th_fail_at(__FILE__, __LINE__, "release hook: %p "
				   "carries no tag (%#llx)", buf,
				   (unsigned long long)tag);
		else if (CHECK_STAMP(buf, h->obj_size, tag))
			atomic_fetch_add(&h->seen[tag], 1);
	}
	if (h->reenter && !in_release_hook) {
		/* hooks may call iopool: a nested allocation and release
		 * (whose own hook call recycles), and the statistics */
		in_release_hook = 1;
		void *b = iop_buf_alloc(pool);
		CHECK(b != NULL);
		if (b)
			iop_buf_put(pool, b);
		struct iop_pool_stats st;
		memset(&st, 0, sizeof st);
		st.struct_size = sizeof st;
		CHECK_EQ(iop_pool_stats(pool, &st), 0);
		iop_thread_flush();
		in_release_hook = 0;
	}
	if (atomic_fetch_sub(&h->keep_budget, 1) > 0) {
		int n = atomic_fetch_add(&h->nstash, 1);
		if (n < 64)
			h->stash[n] = buf;
		atomic_fetch_add(&h->kept, 1);
		return IOP_RELEASE_KEEP;
	}
	atomic_fetch_add(&h->keep_budget, 1); /* undo: stays at 0 */
	return IOP_RELEASE_RECYCLE;
}

/* Parameters of a refcounted pool with the hooks of h (any may be 0). */
struct hooked {
	const char *name;
	size_t obj_size, align, chunk_size, populate;
	uint32_t cache_size, flags;
	int map, release;
};

static iop_pool_t *make_hooked(const char *file, int line,
			       const struct hooked *hp, struct hk *h)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = hp->name;
	pp.obj_size = hp->obj_size;
	pp.align = hp->align;
	pp.chunk_size = hp->chunk_size;
	pp.populate = hp->populate;
	pp.cache_size = hp->cache_size;
	pp.flags = hp->flags;
	if (hp->map) {
		pp.map = hk_map;
		pp.unmap = hk_unmap;
	}
	if (hp->release)
		pp.release = hk_release;
	pp.hook_arg = h;
	h->obj_size = hp->obj_size;
	errno = 0;
	iop_pool_t *p = iop_pool_create(&pp);
	if (!p) {
		th_fail_at(file, line, "iop_pool_create(%s) failed: %s",
			   hp->name, strerror(errno));
		exit(TH_FAIL);
	}
	h->pool = p;
	return p;
}
#define MKHOOKED(h, ...) \
	make_hooked(__FILE__, __LINE__, &(struct hooked){ __VA_ARGS__ }, (h))

/* ------------------------------------------------------------------------ */
/* References                                                                */
/* ------------------------------------------------------------------------ */

TEST(buf_alloc_starts_with_one_reference)
{
	iop_pool_t *p = MKPOOL("buf-one", 2048, 0, 0, 0, IOP_F_REFCOUNT);
	void *b = iop_buf_alloc(p);
	REQUIRE(b);
	CHECK_EQ(iop_buf_refcount(p, b), 1);
	CHECK_PTR_EQ(iop_buf_base(p, b), b);
	CHECK_PTR_EQ(iop_pool_of(b), p);
	CHECK_EQ(STATS(p).in_flight, 1);
	/* the count is kept outside the buffer's bytes */
	memset(b, 0xff, 2048);
	CHECK_EQ(iop_buf_refcount(p, b), 1);
	memset(b, 0, 2048);
	CHECK_EQ(iop_buf_refcount(p, b), 1);
	CHECK_EQ(iop_buf_refcount(p, (char *)b + 2047), 1);
	iop_buf_put(p, b);
	CHECK_EQ(iop_buf_refcount(p, b), 0); /* 0 once released */
	CHECK_EQ(STATS(p).in_flight, 0);

	/* every buffer handed out starts at one, also when recycled, and
	 * from past the thread's magazines */
	enum { N = 700 };
	void *bufs[N];
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			bufs[i] = iop_buf_alloc(p);
			REQUIRE(bufs[i]);
			CHECK_EQ(iop_buf_refcount(p, bufs[i]), 1);
			th_stamp(bufs[i], 2048, (uint64_t)i);
		}
		for (int i = 0; i < N; i++)
			CHECK_EQ(iop_buf_refcount(p, bufs[i]), 1);
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.in_flight, N);
		CHECK_CONSERVED(st);
		for (int i = 0; i < N; i++) {
			CHECK_STAMP(bufs[i], 2048, (uint64_t)i);
			iop_buf_put(p, bufs[i]);
		}
		CHECK_EQ(STATS(p).in_flight, 0);
	}
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(buf_get_and_put_count_references)
{
	iop_pool_t *p = MKPOOL("buf-count", 1000, 0, 0, 0, IOP_F_REFCOUNT);
	void *b = iop_buf_alloc(p), *nb = iop_buf_alloc(p);
	REQUIRE(b && nb);
	enum { K = 100 };
	/* any address inside the buffer stands for it */
	for (unsigned k = 1; k <= K; k++) {
		char *at = (char *)b + (k % 2 ? 0 : (k * 13) % 1000);
		iop_buf_get(p, at);
		CHECK_EQ(iop_buf_refcount(p, b), 1 + k);
		CHECK_EQ(iop_buf_refcount(p, (char *)b + 999), 1 + k);
	}
	/* the neighbour's count is its own */
	CHECK_EQ(iop_buf_refcount(p, nb), 1);
	CHECK_EQ(STATS(p).in_flight, 2);
	for (unsigned k = K; k >= 1; k--) {
		char *at = (char *)b + (k % 3 ? (k * 7) % 1000 : 0);
		iop_buf_put(p, at);
		CHECK_EQ(iop_buf_refcount(p, b), k);
		CHECK_EQ(STATS(p).in_flight, 2); /* held all along */
	}
	CHECK_EQ(iop_buf_refcount(p, nb), 1);
	iop_buf_put(p, (char *)b + 500); /* the last, through the interior */
	CHECK_EQ(iop_buf_refcount(p, b), 0);
	CHECK_EQ(STATS(p).in_flight, 1);
	iop_buf_put(p, nb);
	CHECK_EQ(STATS(p).in_flight, 0);

	/* counts far above one, and many buffers with different counts */
	enum { N = 300 };
	void *bufs[N];
	CHECK_EQ(iop_buf_alloc_bulk(p, bufs, N), N);
	for (int i = 0; i < N; i++)
		for (int k = 0; k < i % 7; k++)
			iop_buf_get(p, bufs[i]);
	for (int i = 0; i < N; i++)
		CHECK_EQ(iop_buf_refcount(p, bufs[i]), 1 + i % 7);
	for (int k = 0; k < 100000; k++)
		iop_buf_get(p, bufs[0]);
	CHECK_EQ(iop_buf_refcount(p, bufs[0]), 100001);
	for (int k = 0; k < 100000; k++)
		iop_buf_put(p, bufs[0]);
	for (int i = 0; i < N; i++)
		for (int k = 0; k <= i % 7; k++)
			iop_buf_put(p, bufs[i]);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(last_put_recycles_through_the_thread_cache)
{
	/* On one CPU throughout: a migration between the put and the next
	 * allocation would find another CPU's cache (per-CPU mode). */
	cpu_set_t old, one;
	REQUIRE(sched_getaffinity(0, sizeof(old), &old) == 0);
	int cpu = sched_getcpu();
	REQUIRE(cpu >= 0);
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	REQUIRE(sched_setaffinity(0, sizeof(one), &one) == 0);
	iop_pool_t *p = MKPOOL("buf-recycle", 2048, 0, 0, 0, IOP_F_REFCOUNT);
	/* warm: the first allocation carves the chunk */
	void *w = iop_buf_alloc(p);
	REQUIRE(w);
	iop_buf_put(p, w);

	struct iop_pool_stats a = STATS(p);
	void *b = iop_buf_alloc(p);
	REQUIRE(b);
	CHECK_EQ(STATS(p).in_flight, 1);
	iop_buf_put(p, b);
	struct iop_pool_stats c = STATS(p);
	CHECK_EQ(c.in_flight, 0);
	CHECK_EQ(c.cached, a.cached); /* back in this thread's magazine */
	CHECK_EQ(c.depot, a.depot);
	CHECK_EQ(c.chunks, a.chunks);
	if (!TH_ALL_CHECKED)
		CHECK_EQ(c.free_slow, a.free_slow);
	void *again = iop_buf_alloc(p);
	CHECK_PTR_EQ(again, b); /* the same buffer, from the thread cache */
	CHECK_EQ(iop_buf_refcount(p, again), 1);

	/* a shared buffer recycles on its last put only, also through the
	 * library's path (the count was above one) */
	iop_buf_get(p, b);
	iop_buf_put(p, b);
	CHECK_EQ(STATS(p).in_flight, 1);
	CHECK_EQ(iop_buf_refcount(p, b), 1);
	void *other = iop_buf_alloc(p);
	REQUIRE(other);
	CHECK(other != b);
	iop_buf_put(p, other);
	iop_buf_get(p, b);
	iop_buf_get(p, (char *)b + 100);
	iop_buf_put(p, (char *)b + 2000);
	iop_buf_put(p, b);
	CHECK_EQ(STATS(p).in_flight, 1);
	iop_buf_put(p, (char *)b + 1); /* last, through the interior */
	struct iop_pool_stats d = STATS(p);
	CHECK_EQ(d.in_flight, 0);
	CHECK_EQ(d.cached, a.cached);
	CHECK_EQ(d.chunks, a.chunks);
	CHECK_PTR_EQ(iop_buf_alloc(p), b);
	iop_buf_put(p, b);

	/* a million recycles map nothing new */
	for (int i = 0; i < SCALE(1000000); i++) {
		void *x = iop_buf_alloc(p);
		if (x != b) {
			th_fail_at(__FILE__, __LINE__, "recycle %d: %p, not "
				   "%p", i, x, b);
			iop_buf_put(p, x);
			break;
		}
		iop_buf_put(p, x);
	}
	struct iop_pool_stats e = STATS(p);
	CHECK_EQ(e.in_flight, 0);
	CHECK_EQ(e.chunk_acquire, a.chunk_acquire);
	CHECK_CONSERVED(e);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	REQUIRE(sched_setaffinity(0, sizeof(old), &old) == 0);
	return TH_PASS;
}

TEST(buf_alloc_in_a_plain_pool_fails_with_einval)
{
	static const uint32_t flags[] = { 0, IOP_F_CHECKED };
	for (int f = 0; f < 2; f++) {
		iop_pool_t *p = MKPOOL("plain", 256, 0, 0, 0, flags[f]);
		errno = 0;
		CHECK(iop_buf_alloc(p) == NULL);
		CHECK_EQ(errno, EINVAL);
		void *bufs[8] = { 0 };
		errno = 0;
		CHECK_EQ(iop_buf_alloc_bulk(p, bufs, 8), 0);
		CHECK_EQ(errno, EINVAL);
		/* also once the pool has memory */
		void *o = iop_alloc(p);
		REQUIRE(o);
		errno = 0;
		CHECK(iop_buf_alloc(p) == NULL);
		CHECK_EQ(errno, EINVAL);
		errno = 0;
		CHECK_EQ(iop_buf_alloc_bulk(p, bufs, 1), 0);
		CHECK_EQ(errno, EINVAL);
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.in_flight, 1); /* nothing handed out */
		CHECK_EQ(st.alloc_fail, 0); /* not an out-of-memory */
		iop_free(p, o);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

TEST(buf_alloc_bulk_gives_each_one_reference)
{
	iop_pool_t *p = MKPOOL("buf-bulk", 512, 0, 16, 0, IOP_F_REFCOUNT);
	enum { N = 700 };
	void *bufs[N], *sorted[N];
	errno = 1234;
	CHECK_EQ(iop_buf_alloc_bulk(p, bufs, 0), 0);
	CHECK_EQ(errno, 1234); /* n == 0 leaves errno alone */
	for (int round = 0; round < 3; round++) {
		/* from the magazine, and more than two magazines hold */
		unsigned n = round == 0 ? 5 : N;
		CHECK_EQ(iop_buf_alloc_bulk(p, bufs, n), n);
		for (unsigned i = 0; i < n; i++) {
			CHECK_EQ(iop_buf_refcount(p, bufs[i]), 1);
			CHECK_PTR_EQ(iop_buf_base(p, bufs[i]), bufs[i]);
			th_stamp(bufs[i], 512, i);
		}
		memcpy(sorted, bufs, n * sizeof *bufs);
		qsort(sorted, n, sizeof *sorted, cmp_ptr);
		for (unsigned i = 1; i < n; i++)
			if ((uintptr_t)sorted[i - 1] + 512 > (uintptr_t)sorted[i])
				th_fail_at(__FILE__, __LINE__, "buffers %p and "
					   "%p overlap", sorted[i - 1],
					   sorted[i]);
		CHECK_EQ(STATS(p).in_flight, n);
		/* each one is released by its own single put */
		for (unsigned i = 0; i < n; i++) {
			CHECK_STAMP(bufs[i], 512, i);
			iop_buf_put(p, bufs[i]);
			CHECK_EQ(iop_buf_refcount(p, bufs[i]), 0);
		}
		CHECK_EQ(STATS(p).in_flight, 0);
	}
	/* bulk and single allocations mix */
	CHECK_EQ(iop_buf_alloc_bulk(p, bufs, 10), 10);
	void *one = iop_buf_alloc(p);
	REQUIRE(one);
	for (int i = 0; i < 10; i++)
		CHECK(bufs[i] != one);
	iop_buf_put(p, one);
	for (int i = 0; i < 10; i++)
		iop_buf_put(p, bufs[i]);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* Buffers of a chunk larger than the 2 MiB granule of the address map: the
 * count of every buffer is its own, in every granule of the chunk. */
TEST(refcounts_are_per_buffer_in_every_granule_of_a_large_chunk)
{
	static const size_t chunks[] = { 4 * MiB, 8 * MiB };
	for (int c = 0; c < 2; c++) {
		iop_pool_t *p = MKPOOL("buf-big-chunk", 4096, 0, 0, chunks[c],
				       IOP_F_REFCOUNT | IOP_F_NO_THP);
		struct iop_pool_stats st = STATS(p);
		CHECK_EQ(st.chunk_size, chunks[c]);
		size_t n = 2 * st.objs_per_chunk + 3;
		void **bufs = calloc(n, sizeof *bufs);
		REQUIRE(bufs);
		for (size_t i = 0; i < n; i++) {
			bufs[i] = iop_buf_alloc(p);
			REQUIRE(bufs[i]);
			for (size_t k = 0; k < i % 5; k++)
				iop_buf_get(p, (char *)bufs[i] + 4095);
		}
		for (size_t i = 0; i < n; i++)
			if (iop_buf_refcount(p, bufs[i]) != 1 + i % 5) {
				th_fail_at(__FILE__, __LINE__, "chunk %zu MiB: "
					   "%p (granule %zu of its chunk) has "
					   "count %u, want %zu", chunks[c] / MiB,
					   bufs[i], ((uintptr_t)bufs[i] &
						     (chunks[c] - 1)) / (2 * MiB),
					   iop_buf_refcount(p, bufs[i]),
					   1 + i % 5);
				break;
			}
		for (size_t i = 0; i < n; i++) {
			/* every put but the last one leaves it in flight */
			for (size_t k = 0; k < i % 5; k++)
				iop_buf_put(p, bufs[i]);
			CHECK_EQ(iop_buf_refcount(p, bufs[i]), 1);
		}
		CHECK_EQ(STATS(p).in_flight, n);
		for (size_t i = 0; i < n; i++)
			iop_buf_put(p, bufs[i]);
		st = STATS(p);
		CHECK_EQ(st.in_flight, 0);
		CHECK_CONSERVED(st);
		free(bufs);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* The release hook                                                          */
/* ------------------------------------------------------------------------ */

struct putter {
	iop_pool_t *pool;
	void **bufs;
	size_t n;
	unsigned shift; /* where in the buffer this thread puts */
	pthread_barrier_t *bar;
};

static void *put_all_thread(void *arg)
{
	struct putter *pt = arg;
	pthread_barrier_wait(pt->bar);
	for (size_t i = 0; i < pt->n; i++)
		iop_buf_put(pt->pool, (char *)pt->bufs[i] + pt->shift);
	return NULL;
}

TEST(release_hook_runs_exactly_once_per_release)
{
	struct hk h;
	hk_init(&h);
	iop_pool_t *p = MKHOOKED(&h, .name = "rel-once", .obj_size = 1024,
				 .flags = IOP_F_REFCOUNT, .release = 1);
	enum { NT = 4 };
	size_t n = SCALE(20000);
	h.nseen = n;
	h.seen = calloc(n, sizeof *h.seen);
	void **bufs = calloc(n, sizeof *bufs);
	unsigned *refs = calloc(n, sizeof *refs);
	REQUIRE(h.seen && bufs && refs);

	/* one thread: counts of 1 to 4, puts interleaved across buffers,
	 * some through interior addresses */
	uint64_t rng = th_seed(7, 1);
	for (size_t i = 0; i < n; i++) {
		bufs[i] = iop_buf_alloc(p);
		REQUIRE(bufs[i]);
		th_stamp(bufs[i], 1024, i);
		refs[i] = 1 + (unsigned)(th_rand(&rng) % 4);
		for (unsigned k = 1; k < refs[i]; k++)
			iop_buf_get(p, bufs[i]);
	}
	size_t live = n, releases = 0;
	while (live) {
		size_t i = th_rand(&rng) % n;
		if (!refs[i])
			continue;
		size_t off = th_rand(&rng) % 2 ? 0 : th_rand(&rng) % 1024;
		/* the hook must not have seen it before its last put */
		CHECK_EQ(atomic_load(&h.seen[i]), 0);
		if (refs[i] == 1) {
			/* a put that releases reads the stamp in the hook */
			iop_buf_put(p, (char *)bufs[i] + off);
			releases++;
			live--;
			CHECK_EQ(atomic_load(&h.seen[i]), 1);
		} else {
			iop_buf_put(p, (char *)bufs[i] + off);
		}
		refs[i]--;
		CHECK_EQ(atomic_load(&h.releases), releases);
	}
	for (size_t i = 0; i < n; i++)
		if (atomic_load(&h.seen[i]) != 1) {
			th_fail_at(__FILE__, __LINE__, "buffer %zu released "
				   "%u times", i, atomic_load(&h.seen[i]));
			break;
		}
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.release_hook, n);
	CHECK_EQ(st.hook_kept, 0);

	/* shared by NT threads, each dropping one reference, from a
	 * different place in the buffer; the hook runs on whichever is last */
	memset(h.seen, 0, n * sizeof *h.seen);
	atomic_store(&h.releases, 0);
	for (size_t i = 0; i < n; i++) {
		bufs[i] = iop_buf_alloc(p);
		REQUIRE(bufs[i]);
		th_stamp(bufs[i], 1024, i);
		for (int k = 1; k < NT; k++)
			iop_buf_get(p, bufs[i]);
	}
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NT);
	pthread_t th[NT];
	struct putter pt[NT];
	for (int t = 0; t < NT; t++) {
		pt[t] = (struct putter){ p, bufs, n, (unsigned)t * 300, &bar };
		REQUIRE(pthread_create(&th[t], NULL, put_all_thread, &pt[t]) ==
			0);
	}
	for (int t = 0; t < NT; t++)
		pthread_join(th[t], NULL);
	pthread_barrier_destroy(&bar);
	CHECK_EQ(atomic_load(&h.releases), n);
	for (size_t i = 0; i < n; i++)
		if (atomic_load(&h.seen[i]) != 1) {
			th_fail_at(__FILE__, __LINE__, "shared buffer %zu "
				   "released %u times", i,
				   atomic_load(&h.seen[i]));
			break;
		}
	st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.release_hook, 2 * n);
	CHECK_CONSERVED(st);

	/* fragments: the hook is given the buffer's start, once */
	free(h.seen);
	h.seen = NULL;
	free(bufs);
	atomic_store(&h.releases, 0);
	enum { F = 3000 };
	void **frags = calloc(F, sizeof *frags);
	REQUIRE(frags);
	iop_frag_t *fc = iop_frag_create(p);
	REQUIRE(fc);
	uintptr_t last = 0;
	size_t uses = 0;
	for (int i = 0; i < F; i++) {
		frags[i] = iop_frag_alloc(fc, 1 + (size_t)i % 300, 8);
		REQUIRE(frags[i]);
		uintptr_t base = (uintptr_t)iop_buf_base(p, frags[i]);
		uses += base != last;
		last = base;
	}
	iop_frag_destroy(fc);
	for (int i = F - 1; i >= 0; i--)
		iop_buf_put(p, frags[i]);
	CHECK_EQ(atomic_load(&h.releases), uses);
	CHECK_EQ(STATS(p).in_flight, 0);
	free(frags);
	free(refs);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	hk_fini(&h);
	return TH_PASS;
}

TEST(release_hook_can_keep_the_buffer)
{
	struct hk h;
	hk_init(&h);
	iop_pool_t *p = MKHOOKED(&h, .name = "rel-keep", .obj_size = 2048,
				 .flags = IOP_F_REFCOUNT, .release = 1);
	void *b = iop_buf_alloc(p);
	REQUIRE(b);
	th_stamp(b, 2048, 42);

	/* kept: the caller owns it again with one reference */
	atomic_store(&h.keep_budget, 1);
	iop_buf_put(p, b);
	CHECK_EQ(atomic_load(&h.releases), 1);
	CHECK_EQ(atomic_load(&h.kept), 1);
	CHECK_EQ(atomic_load(&h.nstash), 1);
	CHECK_PTR_EQ(h.stash[0], b);
	CHECK_EQ(iop_buf_refcount(p, b), 1);
	CHECK_STAMP(b, 2048, 42); /* not recycled: the bytes are as left */
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 1);
	CHECK_EQ(st.release_hook, 1);
	CHECK_EQ(st.hook_kept, 1);
	CHECK_CONSERVED(st);
	/* a kept buffer is in flight: destroy refuses */
	th_capture_begin();
	int rc = iop_pool_destroy(p);
	free(th_capture_end());
	CHECK_EQ(rc, -EBUSY);

	/* as if just allocated: shared and put again without the hook ... */
	iop_buf_get(p, b);
	CHECK_EQ(iop_buf_refcount(p, b), 2);
	iop_buf_put(p, b);
	CHECK_EQ(atomic_load(&h.releases), 1);
	/* ... until the last put, which runs the hook again: recycle */
	iop_buf_put(p, b);
	CHECK_EQ(atomic_load(&h.releases), 2);
	CHECK_EQ(atomic_load(&h.kept), 1);
	CHECK_EQ(iop_buf_refcount(p, b), 0);
	st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.release_hook, 2);
	CHECK_EQ(st.hook_kept, 1);

	/* kept five times in a row, recycled the sixth */
	void *c = iop_buf_alloc(p);
	REQUIRE(c);
	th_stamp(c, 2048, 7);
	atomic_store(&h.keep_budget, 5);
	for (int k = 0; k < 5; k++) {
		iop_buf_put(p, (char *)c + 100 * k);
		CHECK_EQ(iop_buf_refcount(p, c), 1);
		CHECK_STAMP(c, 2048, 7);
	}
	CHECK_EQ(atomic_load(&h.kept), 6);
	iop_buf_put(p, c);
	CHECK_EQ(iop_buf_refcount(p, c), 0);
	st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.release_hook, 8);
	CHECK_EQ(st.hook_kept, 6);

	/* stolen from a put on another thread, used here */
	void *d = iop_buf_alloc(p);
	REQUIRE(d);
	atomic_store(&h.nstash, 0);
	atomic_store(&h.keep_budget, 1);
	void *dd[1] = { d };
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, 1);
	struct putter pt = { p, dd, 1, 0, &bar };
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, put_all_thread, &pt) == 0);
	pthread_join(t, NULL);
	pthread_barrier_destroy(&bar);
	CHECK_EQ(atomic_load(&h.nstash), 1);
	CHECK_PTR_EQ(h.stash[0], d);
	CHECK_EQ(iop_buf_refcount(p, d), 1);
	CHECK_EQ(STATS(p).in_flight, 1);
	memset(d, 0x33, 2048);
	iop_buf_put(p, d);
	CHECK_EQ(STATS(p).in_flight, 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	hk_fini(&h);
	return TH_PASS;
}

TEST(release_hook_recycle_returns_it_to_the_pool)
{
	struct hk h;
	hk_init(&h);
	iop_pool_t *p = MKHOOKED(&h, .name = "rel-recycle", .obj_size = 2048,
				 .flags = IOP_F_REFCOUNT, .release = 1);
	void *w = iop_buf_alloc(p);
	REQUIRE(w);
	iop_buf_put(p, w);
	struct iop_pool_stats a = STATS(p);
	void *b = iop_buf_alloc(p);
	REQUIRE(b);
	iop_buf_put(p, b);
	CHECK_EQ(atomic_load(&h.releases), 2);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.release_hook, 2);
	CHECK_EQ(st.hook_kept, 0);
	CHECK_EQ(st.cached, a.cached); /* thread cache first */
	CHECK_PTR_EQ(iop_buf_alloc(p), b);
	CHECK_EQ(iop_buf_refcount(p, b), 1);
	iop_buf_put(p, b);

	/* many, past the magazines: all back, the books balanced */
	enum { N = 2000 };
	void **bufs = calloc(N, sizeof *bufs);
	REQUIRE(bufs);
	for (int round = 0; round < 3; round++) {
		CHECK_EQ(iop_buf_alloc_bulk(p, bufs, N), N);
		for (int i = 0; i < N; i++) {
			iop_buf_get(p, bufs[i]);
			iop_buf_put(p, bufs[i]);
			iop_buf_put(p, bufs[i]);
		}
		st = STATS(p);
		CHECK_EQ(st.in_flight, 0);
		CHECK_CONSERVED(st);
	}
	CHECK_EQ(st.release_hook, 3 + 3 * N);
	CHECK_EQ(atomic_load(&h.releases), 3 + 3 * N);
	CHECK_EQ(st.total, st.chunks * st.objs_per_chunk);
	CHECK_LE(st.chunks, (N + st.objs_per_chunk - 1) / st.objs_per_chunk +
				    1);
	free(bufs);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	hk_fini(&h);
	return TH_PASS;
}

TEST(release_hook_stats_count_every_call_and_every_keep)
{
	struct hk h;
	hk_init(&h);
	iop_pool_t *p = MKHOOKED(&h, .name = "rel-stats", .obj_size = 256,
				 .flags = IOP_F_REFCOUNT, .release = 1);
	enum { N = 64 };
	void *bufs[N];
	CHECK_EQ(iop_buf_alloc_bulk(p, bufs, N), N);
	uint64_t rng = th_seed(3, 3), kept = 0;
	for (int op = 0; op < SCALE(100000); op++) {
		int i = (int)(th_rand(&rng) % N);
		if (th_rand(&rng) % 2) {
			iop_buf_get(p, bufs[i]);
			iop_buf_put(p, bufs[i]);
			continue;
		}
		int keep = th_rand(&rng) % 3 == 0;
		atomic_store(&h.keep_budget, keep);
		atomic_store(&h.nstash, 0);
		iop_buf_put(p, bufs[i]);
		if (keep) {
			kept++;
			CHECK_EQ(iop_buf_refcount(p, bufs[i]), 1);
		} else {
			CHECK_EQ(iop_buf_refcount(p, bufs[i]), 0);
			bufs[i] = iop_buf_alloc(p);
			REQUIRE(bufs[i]);
		}
	}
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.release_hook, atomic_load(&h.releases));
	CHECK_EQ(st.hook_kept, atomic_load(&h.kept));
	CHECK_EQ(st.hook_kept, kept);
	CHECK_EQ(st.in_flight, N);
	atomic_store(&h.keep_budget, 0);
	for (int i = 0; i < N; i++)
		iop_buf_put(p, bufs[i]);
	st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.release_hook, atomic_load(&h.releases));
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);

	/* without a release hook the counters stay at zero */
	iop_pool_t *q = MKPOOL("rel-none", 256, 0, 0, 0, IOP_F_REFCOUNT);
	CHECK_EQ(iop_buf_alloc_bulk(q, bufs, N), N);
	for (int i = 0; i < N; i++) {
		iop_buf_get(q, bufs[i]);
		iop_buf_put(q, bufs[i]);
		iop_buf_put(q, bufs[i]);
	}
	st = STATS(q);
	CHECK_EQ(st.release_hook, 0);
	CHECK_EQ(st.hook_kept, 0);
	CHECK_EQ(st.map_calls, 0);
	CHECK_EQ(st.unmap_calls, 0);
	CHECK_AUDIT(q);
	CHECK_DESTROY(q);
	hk_fini(&h);
	return TH_PASS;
}

/* Hooks may call iopool: no iopool lock is held around them. */
TEST(hooks_may_call_the_pool)
{
	alarm(60); /* a lock held around a hook deadlocks: die, not hang */
	struct hk h;
	hk_init(&h);
	iop_pool_t *other = MKPOOL("hook-other", 128, 0, 0, 0, 0);
	h.other = other;
	h.map_stats = 1;
	h.reenter = 1;
	iop_pool_t *p = MKHOOKED(&h, .name = "hook-reenter", .obj_size = 64 * KiB,
				 .chunk_size = 2 * MiB, .cache_size = 4,
				 .flags = IOP_F_REFCOUNT, .map = 1,
				 .release = 1);
	enum { N = 100 }; /* several chunks: the map hook runs again */
	void *bufs[N];
	for (int i = 0; i < N; i++) {
		bufs[i] = iop_buf_alloc(p);
		REQUIRE(bufs[i]);
	}
	CHECK_GE(h.nchunk, 3);
	for (int i = 0; i < N; i++)
		iop_buf_put(p, bufs[i]);
	/* each release ran one nested release (not re-entered further) */
	CHECK_EQ(atomic_load(&h.releases), 2 * N);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.release_hook, 2 * N);
	CHECK_EQ(STATS(other).in_flight, 0);
	CHECK_AUDIT(p);
	h.other = NULL;
	CHECK_DESTROY(p);
	hk_check_all_unmapped(&h);
	CHECK_AUDIT(other);
	CHECK_DESTROY(other);
	hk_fini(&h);
	alarm(0);
	return TH_PASS;
}

/* Allocate n buffers of p (one at a time, or in bulks of 7), check they
 * are distinct and audit, free them. */
static void alloc_distinct_and_free(iop_pool_t *p, size_t n, size_t obj_size,
				    int bulk)
{
	void **bufs = calloc(n + 7, sizeof *bufs);
	REQUIRE(bufs);
	for (size_t i = 0; i < n;) {
		if (bulk) {
			unsigned got = iop_buf_alloc_bulk(p, bufs + i, 7);
			REQUIRE(got == 7);
		} else {
			bufs[i] = iop_buf_alloc(p);
			REQUIRE(bufs[i]);
		}
		for (size_t end = i + (bulk ? 7 : 1); i < end; i++)
			th_stamp(bufs[i], obj_size, i);
	}
	n += bulk ? (7 - n % 7) % 7 : 0;
	for (size_t i = 0; i < n; i++)
		CHECK_STAMP(bufs[i], obj_size, i);
	qsort(bufs, n, sizeof *bufs, cmp_ptr);
	for (size_t i = 1; i < n; i++)
		if (bufs[i] == bufs[i - 1])
			th_fail_at(__FILE__, __LINE__, "%p handed out twice",
				   bufs[i]);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, n);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	for (size_t i = 0; i < n; i++)
		iop_buf_put(p, bufs[i]);
	free(bufs);
	st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CONSERVED(st);
}

/* The header: hooks run with no iopool lock held and may call iopool (not
 * iop_pool_destroy() of their own pool). A map hook runs while the
 * allocation that needed the chunk is in progress on this thread: flushing
 * this thread's caches then must not lose or duplicate anything. */
TEST(map_hook_may_flush_this_threads_caches)
{
	alarm(60);
	struct hk h;
	hk_init(&h);
	h.map_flush = 1;
	iop_pool_t *p = MKHOOKED(&h, .name = "map-flush", .obj_size = 64 * KiB,
				 .chunk_size = 2 * MiB, .cache_size = 4,
				 .flags = IOP_F_REFCOUNT, .map = 1);
	alloc_distinct_and_free(p, 100, 64 * KiB, 0); /* several chunks */
	CHECK_GE(h.nchunk, 3);
	alloc_distinct_and_free(p, 300, 64 * KiB, 1);
	CHECK_GE(h.nchunk, 9);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	hk_check_all_unmapped(&h);
	hk_fini(&h);
	alarm(0);
	return TH_PASS;
}

/* ... and allocating from its own pool then (a map hook that sets up a
 * descriptor buffer of the same pool, say). */
/* A map hook that frees (plain free, bulk free, last put) into its own
 * pool on the allocating thread, while that thread's slot has no loaded
 * magazine: the frees must land somewhere real, and nothing may be lost. */
static iop_pool_t *free_hook_pool;
static void *free_hook_saved[3];
static int free_hook_refcount;
static int free_hook_map(void *arg, void *base, size_t len, uint64_t *h)
{
	(void)arg;
	(void)base;
	(void)len;
	*h = 0;
	if (free_hook_saved[0]) {
		if (free_hook_refcount) {
			for (int i = 0; i < 3; i++)
				iop_buf_put(free_hook_pool, free_hook_saved[i]);
		} else {
			iop_free(free_hook_pool, free_hook_saved[0]);
			iop_free_bulk(free_hook_pool, &free_hook_saved[1], 2);
		}
		free_hook_saved[0] = free_hook_saved[1] = free_hook_saved[2] = NULL;
	}
	return 0;
}

static void *hook_free_alloc(iop_pool_t *p)
{
	return free_hook_refcount ? iop_buf_alloc(p) : iop_alloc(p);
}

static void hook_free_release(iop_pool_t *p, void *o)
{
	if (free_hook_refcount)
		iop_buf_put(p, o);
	else
		iop_free(p, o);
}

static void map_hook_frees_into_its_own_pool(int refcount)
{
	alarm(60);
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "hook-free";
	pp.obj_size = 256 * KiB; /* 8 per 2 MiB chunk */
	pp.cache_size = 4;
	pp.flags = refcount ? IOP_F_REFCOUNT : 0;
	pp.map = free_hook_map;
	free_hook_refcount = refcount;
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p);
	free_hook_pool = p;
	void *o[24];
	for (int i = 0; i < 8; i++) {
		o[i] = hook_free_alloc(p); /* fills chunk 1 */
		REQUIRE(o[i]);
	}
	free_hook_saved[0] = o[0];
	free_hook_saved[1] = o[1];
	free_hook_saved[2] = o[2];
	for (int i = 8; i < 24; i++) {
		o[i] = hook_free_alloc(p); /* needs chunk 2: the hook frees 3 */
		REQUIRE(o[i]);
	}
	CHECK(free_hook_saved[0] == NULL);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 24 - 3);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	for (int i = 3; i < 24; i++)
		hook_free_release(p, o[i]);
	CHECK_EQ(STATS(p).in_flight, 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	alarm(0);
}

TEST(map_hook_may_free_into_its_own_pool)
{
	map_hook_frees_into_its_own_pool(0);
	return TH_PASS;
}

TEST(map_hook_may_put_into_its_own_pool)
{
	map_hook_frees_into_its_own_pool(1);
	return TH_PASS;
}

/* Failed allocations are not frees: free_fast is derived from the
 * allocation counts, so a failure must not count as an allocation. */
static int failing_map(void *arg, void *base, size_t len, uint64_t *h)
{
	(void)arg;
	(void)base;
	(void)len;
	(void)h;
	return -ENOSPC;
}

TEST(failed_allocations_count_as_failures_not_frees)
{
	struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
	pp.name = "fails";
	pp.obj_size = 2048;
	pp.map = failing_map;
	iop_pool_t *p = iop_pool_create(&pp);
	REQUIRE(p);
	for (int i = 0; i < 100; i++) {
		errno = 0;
		CHECK(iop_alloc(p) == NULL);
		CHECK_EQ(errno, ENOSPC);
	}
	void *v[8];
	CHECK_EQ(iop_alloc_bulk(p, v, 8), 0);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.alloc_fail, 101);
	CHECK_EQ(st.alloc_slow, 0);
	CHECK_EQ(st.alloc_fast, 0);
	CHECK_EQ(st.free_fast, 0);
	CHECK_EQ(st.free_slow, 0);
	CHECK_EQ(st.in_flight, 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(map_hook_may_allocate_from_its_own_pool)
{
	alarm(60);
	struct hk h;
	hk_init(&h);
	h.map_self = 1;
	iop_pool_t *p = MKHOOKED(&h, .name = "map-self", .obj_size = 64 * KiB,
				 .chunk_size = 2 * MiB, .cache_size = 4,
				 .flags = IOP_F_REFCOUNT, .map = 1);
	alloc_distinct_and_free(p, 100, 64 * KiB, 0);
	CHECK_GE(h.nchunk, 3);
	alloc_distinct_and_free(p, 300, 64 * KiB, 1);
	CHECK_GE(h.nchunk, 9);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	hk_check_all_unmapped(&h);
	hk_fini(&h);
	alarm(0);
	return TH_PASS;
}

/* Map hooks at create (populate) and unmap hooks at destroy may use other
 * pools: no registry or pool lock is held around them either. */
TEST(hooks_may_call_other_pools_at_create_and_destroy)
{
	alarm(60);
	iop_pool_t *other = MKPOOL("hook-other2", 128, 0, 0, 0, 0);
	struct hk h;
	hk_init(&h);
	h.other = other;
	iop_pool_t *p = MKHOOKED(&h, .name = "hook-populate",
				 .obj_size = 64 * KiB, .chunk_size = 2 * MiB,
				 .populate = 80, .flags = IOP_F_REFCOUNT,
				 .map = 1, .release = 1);
	CHECK_GE(h.nchunk, 3);
	alloc_distinct_and_free(p, 100, 64 * KiB, 0);
	alloc_distinct_and_free(p, 200, 64 * KiB, 1);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p); /* the unmap hook uses `other` */
	hk_check_all_unmapped(&h);
	CHECK_EQ(STATS(other).in_flight, 0);
	CHECK_AUDIT(other);
	CHECK_DESTROY(other);
	hk_fini(&h);
	alarm(0);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* The map and unmap hooks                                                   */
/* ------------------------------------------------------------------------ */

/* The buffer's handle is the one map stored for its chunk. */
static void check_mapping_of(iop_pool_t *p, struct hk *h, const void *b)
{
	uint64_t handle = 0;
	size_t off = 0;
	CHECK_EQ(iop_buf_mapping(p, b, &handle, &off), 0);
	struct hk_chunk *c = hk_find(h, (uintptr_t)b - off);
	if (!c)
		th_fail_at(__FILE__, __LINE__, "%p: offset %zu gives no mapped "
			   "chunk", b, off);
	else
		CHECK_EQ(handle, c->handle);
}

TEST(map_hook_called_once_per_chunk_across_a_million_recycles)
{
	struct hk h;
	hk_init(&h);
	h.want_len = 2 * MiB;
	iop_pool_t *p = MKHOOKED(&h, .name = "map-once", .obj_size = 2048,
				 .flags = IOP_F_REFCOUNT, .map = 1);
	CHECK_EQ(h.map_calls, 0); /* no chunk yet */
	struct iop_pool_stats st = STATS(p);
	size_t n = 2 * st.objs_per_chunk + st.objs_per_chunk / 2;
	void **bufs = calloc(n, sizeof *bufs);
	REQUIRE(bufs);
	for (size_t i = 0; i < n; i++) {
		bufs[i] = iop_buf_alloc(p);
		REQUIRE(bufs[i]);
		/* mapped before any of its buffers was handed out */
		uintptr_t base = chunk_base_of(bufs[i], 2 * MiB);
		if (!hk_find(&h, base)) {
			th_fail_at(__FILE__, __LINE__, "buffer %p handed out "
				   "from chunk %p before the map hook saw "
				   "it", bufs[i], (void *)base);
			break;
		}
	}
	st = STATS(p);
	CHECK_GE(st.chunks, 3);
	CHECK_EQ(st.map_calls, st.chunks);
	CHECK_EQ(st.map_calls, st.chunk_acquire);
	CHECK_EQ(h.map_calls, st.chunks);
	CHECK_EQ(h.nchunk, st.chunks);
	CHECK_EQ(st.unmap_calls, 0);
	CHECK_EQ(h.unmaps, 0);
	for (size_t i = 0; i < n; i++)
		iop_buf_put(p, bufs[i]);

	/* a million recycles in bursts: the mapping survives them all */
	uint64_t rng = th_seed(11, 2);
	size_t done = 0, want = SCALE(1000000);
	while (done < want) {
		unsigned burst = 1 + (unsigned)(th_rand(&rng) % 64);
		if (th_rand(&rng) % 2) {
			CHECK_EQ(iop_buf_alloc_bulk(p, bufs, burst), burst);
		} else {
			for (unsigned k = 0; k < burst; k++) {
				bufs[k] = iop_buf_alloc(p);
				REQUIRE(bufs[k]);
			}
		}
		for (unsigned k = 0; k < burst; k++)
			iop_buf_put(p, bufs[k]);
		done += burst;
	}
	struct iop_pool_stats after = STATS(p);
	CHECK_EQ(after.map_calls, st.map_calls);
	CHECK_EQ(after.chunk_acquire, st.chunk_acquire);
	CHECK_EQ(after.unmap_calls, 0);
	CHECK_EQ(h.map_calls, st.chunks);
	CHECK_EQ(h.unmaps, 0);
	CHECK_EQ(after.in_flight, 0);
	CHECK_CONSERVED(after);
	/* a destroy refused for a buffer in flight unmaps nothing */
	bufs[0] = iop_buf_alloc(p);
	REQUIRE(bufs[0]);
	th_capture_begin();
	int rc = iop_pool_destroy(p);
	free(th_capture_end());
	CHECK_EQ(rc, -EBUSY);
	CHECK_EQ(h.unmaps, 0);
	CHECK_EQ(STATS(p).unmap_calls, 0);
	check_mapping_of(p, &h, bufs[0]);
	iop_buf_put(p, bufs[0]);
	free(bufs);
	CHECK_AUDIT(p);
	/* destroy unmaps every chunk, with the handle map stored */
	CHECK_DESTROY(p);
	CHECK_EQ(h.unmaps, h.map_calls);
	hk_check_all_unmapped(&h);

	/* a plain pool runs the hooks too */
	struct hk g;
	hk_init(&g);
	g.want_len = 4 * MiB;
	iop_pool_t *q = MKHOOKED(&g, .name = "map-plain", .obj_size = 100,
				 .chunk_size = 4 * MiB, .map = 1);
	for (int i = 0; i < SCALE(100000); i++) {
		void *o = iop_alloc(q);
		REQUIRE(o);
		iop_free(q, o);
	}
	st = STATS(q);
	CHECK_EQ(st.chunks, 1);
	CHECK_EQ(st.map_calls, 1);
	CHECK_EQ(g.map_calls, 1);
	CHECK_AUDIT(q);
	CHECK_DESTROY(q);
	hk_check_all_unmapped(&g);
	hk_fini(&g);
	hk_fini(&h);
	return TH_PASS;
}

TEST(map_hook_failure_fails_the_allocation_and_leaks_nothing)
{
	static const uint32_t flags[] = { IOP_F_REFCOUNT, 0 };
	for (int f = 0; f < 2; f++) {
		int rc = flags[f] != 0;
		struct hk h;
		hk_init(&h);
		h.map_err = EIO;
		/* 64 KiB buffers: about 32 to a chunk */
		iop_pool_t *p = MKHOOKED(&h, .name = "map-fail",
					 .obj_size = 64 * KiB,
					 .chunk_size = 2 * MiB,
					 .cache_size = 4, .flags = flags[f],
					 .map = 1);
		struct iop_pool_stats st = STATS(p);
		size_t opc = st.objs_per_chunk, cap = 3 * opc, n = 0;
		void **bufs = calloc(cap + 8, sizeof *bufs);
		REQUIRE(bufs);
		bufs[n++] = rc ? iop_buf_alloc(p) : iop_alloc(p);
		REQUIRE(bufs[0]);
		CHECK_EQ(h.map_calls, 1);
		h.fail_all = 1; /* the second chunk cannot be mapped */
		int err = 0;
		while (n < cap) {
			errno = 0;
			void *b = rc ? iop_buf_alloc(p) : iop_alloc(p);
			if (!b) {
				err = errno;
				break;
			}
			bufs[n++] = b;
		}
		/* every buffer of the first chunk, then the failure */
		CHECK_EQ(n, opc);
		CHECK_EQ(err, EIO); /* the map hook's errno */
		CHECK_GE(h.map_calls, 2);
		/* and again: the failure does not stick to a chunk */
		errno = 0;
		CHECK((rc ? iop_buf_alloc(p) : iop_alloc(p)) == NULL);
		CHECK_EQ(errno, EIO);
		void *more[8];
		errno = 0;
		unsigned got = rc ? iop_buf_alloc_bulk(p, more, 8)
				  : iop_alloc_bulk(p, more, 8);
		CHECK_EQ(got, 0);
		CHECK_EQ(errno, EIO);
		/* no chunk leaked, nothing handed out, the books balance */
		st = STATS(p);
		CHECK_EQ(st.chunks, 1);
		CHECK_EQ(st.in_flight, n);
		CHECK_EQ(st.map_calls, h.map_calls);
		CHECK_EQ(h.unmaps, 0); /* the failed chunks were never mapped */
		CHECK_CONSERVED(st);
		CHECK_AUDIT(p);

		/* mapping works again: allocation goes on */
		h.fail_all = 0;
		int calls = h.map_calls;
		bufs[n] = rc ? iop_buf_alloc(p) : iop_alloc(p);
		REQUIRE(bufs[n]);
		n++;
		CHECK_EQ(h.map_calls, calls + 1);
		st = STATS(p);
		CHECK_EQ(st.chunks, 2);
		CHECK_EQ(st.in_flight, n);
		CHECK_CONSERVED(st);
		uint64_t handle = 0;
		CHECK_EQ(iop_buf_mapping(p, bufs[n - 1], &handle, NULL), 0);
		struct hk_chunk *c =
			hk_find(&h, chunk_base_of(bufs[n - 1], 2 * MiB));
		REQUIRE(c);
		CHECK_EQ(handle, c->handle);
		for (size_t i = 0; i < n; i++) {
			if (rc)
				iop_buf_put(p, bufs[i]);
			else
				iop_free(p, bufs[i]);
		}
		free(bufs);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
		CHECK_EQ(h.unmaps, 2);
		hk_check_all_unmapped(&h);
		hk_fini(&h);
	}
	return TH_PASS;
}

TEST(map_hook_runs_at_create_for_populate)
{
	struct hk h;
	hk_init(&h);
	/* 64 KiB buffers, about 32 a chunk: 80 take three chunks */
	iop_pool_t *p = MKHOOKED(&h, .name = "map-populate",
				 .obj_size = 64 * KiB, .chunk_size = 2 * MiB,
				 .populate = 80, .flags = IOP_F_REFCOUNT,
				 .map = 1);
	struct iop_pool_stats st = STATS(p);
	CHECK_GE(st.chunks, 3);
	CHECK_EQ(h.map_calls, st.chunks);
	CHECK_EQ(st.map_calls, st.chunks);
	CHECK_EQ(st.in_flight, 0);
	void *bufs[80];
	for (int i = 0; i < 80; i++) {
		bufs[i] = iop_buf_alloc(p);
		REQUIRE(bufs[i]);
		CHECK(hk_find(&h, chunk_base_of(bufs[i], 2 * MiB)) != NULL);
	}
	CHECK_EQ(h.map_calls, st.chunks); /* nothing more to map */
	for (int i = 0; i < 80; i++)
		iop_buf_put(p, bufs[i]);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	hk_check_all_unmapped(&h);
	hk_fini(&h);

	/* a map hook failing for a populate chunk fails the creation with
	 * its errno; the chunks mapped before are unmapped, through the
	 * unmap hook, and nothing stays mapped */
	static const int fail_at[] = { 1, 2, 3 };
	for (int k = 0; k < 3; k++) {
		hk_init(&h);
		h.map_err = EACCES;
		h.fail_at = fail_at[k];
		size_t vs = th_vm_size();
		struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
		pp.name = "map-populate-fail";
		pp.obj_size = 64 * KiB;
		pp.chunk_size = 2 * MiB;
		pp.populate = 80;
		pp.flags = IOP_F_REFCOUNT;
		pp.map = hk_map;
		pp.unmap = hk_unmap;
		pp.hook_arg = &h;
		errno = 0;
		th_capture_begin();
		iop_pool_t *bad = iop_pool_create(&pp);
		int err = errno;
		free(th_capture_end());
		CHECK(bad == NULL);
		CHECK_EQ(err, EACCES);
		CHECK_EQ(h.map_calls, fail_at[k]);
		CHECK_EQ(h.nchunk, fail_at[k] - 1);
		hk_check_all_unmapped(&h);
		if (!TH_ASAN && !TH_TSAN && vs)
			CHECK_LE(th_vm_size(), vs + 1 * MiB);
		if (bad)
			iop_pool_destroy(bad);
		hk_fini(&h);
	}

	/* without populate a failing map hook does not fail the creation */
	hk_init(&h);
	h.fail_all = 1;
	p = MKHOOKED(&h, .name = "map-lazy", .obj_size = 256,
		     .flags = IOP_F_REFCOUNT, .map = 1);
	CHECK_EQ(h.map_calls, 0);
	errno = 0;
	CHECK(iop_buf_alloc(p) == NULL);
	CHECK_EQ(errno, EIO);
	CHECK_EQ(STATS(p).chunks, 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	CHECK_EQ(h.unmaps, 0);
	hk_fini(&h);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Mapping handles and buffer bases                                          */
/* ------------------------------------------------------------------------ */

static void check_mapping(iop_pool_t *p, struct hk *h, void *b,
			  size_t obj_size, size_t chunk_size)
{
	uintptr_t base = chunk_base_of(b, chunk_size);
	uint64_t want = 0;
	if (h) {
		struct hk_chunk *c = hk_find(h, base);
		if (!c) {
			th_fail_at(__FILE__, __LINE__, "no map of chunk %p",
				   (void *)base);
			return;
		}
		want = c->handle;
	}
	const size_t offs[] = { 0, 1, obj_size / 2, obj_size - 1 };
	for (int k = 0; k < 4; k++) {
		const char *at = (const char *)b + offs[k];
		uint64_t handle = 0xdead;
		size_t off = 0xbeef;
		int rc = iop_buf_mapping(p, at, &handle, &off);
		if (rc != 0 || handle != want ||
		    off != (size_t)((uintptr_t)at - base)) {
			th_fail_at(__FILE__, __LINE__, "iop_buf_mapping(%p) = "
				   "%d, handle %#llx offset %zu; want 0, "
				   "%#llx, %zu", (const void *)at, rc,
				   (unsigned long long)handle, off,
				   (unsigned long long)want,
				   (size_t)((uintptr_t)at - base));
			return;
		}
	}
	/* either output may be NULL */
	uint64_t handle = 0;
	size_t off = 0;
	CHECK_EQ(iop_buf_mapping(p, b, NULL, NULL), 0);
	CHECK_EQ(iop_buf_mapping(p, b, &handle, NULL), 0);
	CHECK_EQ(handle, want);
	CHECK_EQ(iop_buf_mapping(p, b, NULL, &off), 0);
	CHECK_EQ(off, (uintptr_t)b - base);
}

TEST(buf_mapping_gives_handle_and_offset_in_o1)
{
	struct hk h;
	hk_init(&h);
	/* 4 MiB chunks: two granules of the address map each */
	iop_pool_t *p = MKHOOKED(&h, .name = "mapping", .obj_size = 3000,
				 .chunk_size = 4 * MiB,
				 .flags = IOP_F_REFCOUNT | IOP_F_NO_THP,
				 .map = 1);
	struct iop_pool_stats st = STATS(p);
	size_t n = 3 * st.objs_per_chunk;
	void **bufs = calloc(n, sizeof *bufs);
	REQUIRE(bufs);
	for (size_t i = 0; i < n; i++) {
		bufs[i] = iop_buf_alloc(p);
		REQUIRE(bufs[i]);
	}
	CHECK_GE(STATS(p).chunks, 3);
	for (size_t i = 0; i < n; i++)
		check_mapping(p, &h, bufs[i], 3000, 4 * MiB);
	/* distinct chunks, distinct handles */
	for (int i = 0; i < h.nchunk; i++)
		for (int j = i + 1; j < h.nchunk; j++)
			CHECK_NE(h.chunk[i].handle, h.chunk[j].handle);

	/* not an address of this pool: -EINVAL, outputs untouched or not */
	iop_pool_t *q = MKPOOL("mapping-other", 3000, 0, 0, 0, IOP_F_REFCOUNT);
	void *qb = iop_buf_alloc(q);
	void *m = malloc(64);
	char local[16];
	REQUIRE(qb && m);
	uint64_t handle;
	size_t off;
	CHECK_EQ(iop_buf_mapping(NULL, bufs[0], &handle, &off), -EINVAL);
	CHECK_EQ(iop_buf_mapping(p, qb, &handle, &off), -EINVAL);
	CHECK_EQ(iop_buf_mapping(p, m, &handle, &off), -EINVAL);
	CHECK_EQ(iop_buf_mapping(p, local, &handle, &off), -EINVAL);
	CHECK_EQ(iop_buf_mapping(p, NULL, &handle, &off), -EINVAL);
	CHECK_EQ(iop_buf_mapping(p, (void *)UINTPTR_MAX, &handle, &off),
		 -EINVAL);
	free(m);

	/* a pool without hooks: handle 0, the offset all the same */
	for (int i = 0; i < 10; i++)
		check_mapping(q, NULL, qb, 3000, 2 * MiB);
	iop_buf_put(q, qb);
	/* and a plain pool, with and without hooks */
	iop_pool_t *r = MKPOOL("mapping-plain", 100, 0, 0, 0, 0);
	void *o = iop_alloc(r);
	REQUIRE(o);
	check_mapping(r, NULL, o, 100, 2 * MiB);
	iop_free(r, o);
	struct hk g;
	hk_init(&g);
	iop_pool_t *s = MKHOOKED(&g, .name = "mapping-plain-hooked",
				 .obj_size = 100, .map = 1);
	o = iop_alloc(s);
	REQUIRE(o);
	check_mapping(s, &g, o, 100, 2 * MiB);
	CHECK_EQ(iop_buf_mapping(s, bufs[0], &handle, &off), -EINVAL);
	iop_free(s, o);

	for (size_t i = 0; i < n; i++)
		iop_buf_put(p, bufs[i]);
	free(bufs);
	CHECK_AUDIT(p);
	CHECK_AUDIT(q);
	CHECK_AUDIT(r);
	CHECK_AUDIT(s);
	CHECK_DESTROY(p);
	CHECK_DESTROY(q);
	CHECK_DESTROY(r);
	CHECK_DESTROY(s);
	hk_check_all_unmapped(&h);
	hk_check_all_unmapped(&g);
	hk_fini(&g);
	hk_fini(&h);
	return TH_PASS;
}

TEST(buf_base_finds_the_start_from_any_interior_address)
{
	/* stride 1024 for 1000-byte buffers; 4 MiB chunks, so buffers lie in
	 * both granules of a chunk */
	iop_pool_t *p = MKPOOL("base", 1000, 64, 0, 4 * MiB,
			       IOP_F_REFCOUNT | IOP_F_NO_THP);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.obj_stride, 1024);
	size_t n = st.objs_per_chunk + 10;
	void **bufs = calloc(n, sizeof *bufs);
	REQUIRE(bufs);
	for (size_t i = 0; i < n; i++) {
		bufs[i] = iop_buf_alloc(p);
		REQUIRE(bufs[i]);
	}
	int granules[2] = { 0, 0 };
	for (size_t i = 0; i < n; i++) {
		granules[((uintptr_t)bufs[i] >> 21) & 1]++;
		/* every byte of a sample, the ends of every buffer */
		int all = i % 97 == 0 || i == n - 1;
		for (size_t off = 0; off < 1000; off += all ? 1 : 999) {
			void *got = iop_buf_base(p, (char *)bufs[i] + off);
			if (got != bufs[i]) {
				th_fail_at(__FILE__, __LINE__, "iop_buf_base"
					   "(%p + %zu) = %p", bufs[i], off,
					   got);
				break;
			}
		}
	}
	CHECK_GT(granules[0], 0);
	CHECK_GT(granules[1], 0);
	for (size_t i = 0; i < n; i++)
		iop_buf_put(p, bufs[i]);
	free(bufs);

	/* any pool: a plain one with an odd stride */
	iop_pool_t *q = MKPOOL("base-plain", 200, 8, 0, 0, 0);
	CHECK_EQ(STATS(q).obj_stride, 200);
	void *objs[500];
	for (int i = 0; i < 500; i++) {
		objs[i] = iop_alloc(q);
		REQUIRE(objs[i]);
	}
	for (int i = 0; i < 500; i++)
		for (size_t off = 0; off < 200; off += 7)
			CHECK_PTR_EQ(iop_buf_base(q, (char *)objs[i] + off),
				     objs[i]);
	for (int i = 0; i < 500; i++)
		iop_free(q, objs[i]);
	CHECK_AUDIT(p);
	CHECK_AUDIT(q);
	CHECK_DESTROY(p);
	CHECK_DESTROY(q);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Fragments                                                                 */
/* ------------------------------------------------------------------------ */

struct frag {
	void *p;
	size_t len;
};

/* Fill every fragment, then check none was overwritten by another. */
static void check_frags_disjoint(struct frag *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		th_fill(f[i].p, f[i].len, 0x9e37 * (uint64_t)i);
	for (size_t i = 0; i < n; i++) {
		size_t bad = th_verify(f[i].p, f[i].len, 0x9e37 * (uint64_t)i);
		if (bad != (size_t)-1) {
			th_fail_at(__FILE__, __LINE__, "fragment %zu (%p, %zu "
				   "bytes) overwritten at byte %zu", i, f[i].p,
				   f[i].len, bad);
			return;
		}
	}
}

static void check_frag_at(iop_pool_t *p, const void *f, size_t len,
			  size_t align, size_t obj_size)
{
	if (align > 1 && (uintptr_t)f % align)
		th_fail_at(__FILE__, __LINE__, "fragment %p of %zu bytes not "
			   "aligned to %zu", f, len, align);
	const char *base = iop_buf_base(p, f);
	if ((const char *)f < base || (const char *)f + len > base + obj_size)
		th_fail_at(__FILE__, __LINE__, "fragment %p of %zu bytes "
			   "outside its buffer %p of %zu", f, len,
			   (const void *)base, obj_size);
	if (iop_buf_refcount(p, f) < 1)
		th_fail_at(__FILE__, __LINE__, "fragment %p: buffer %p has "
			   "no reference", f, (const void *)base);
}

TEST(frag_alloc_honours_length_and_alignment)
{
	/* buffers aligned to 4096, so every alignment up to that fits */
	iop_pool_t *p = MKPOOL("frag-align", 4096, 4096, 0, 0, IOP_F_REFCOUNT);
	iop_frag_t *fc = iop_frag_create(p);
	REQUIRE(fc);
	static const size_t lens[] = { 1,  2,   3,   5,    7,    8,
				       13, 16,  31,  64,   100,  255,
				       1000, 2048, 4000, 4095, 4096 };
	static const size_t aligns[] = { 0,   1,   2,    4,    8,
					 16,  32,  64,   128,  256,
					 512, 1024, 2048, 4096 };
	enum { NL = sizeof lens / sizeof *lens,
	       NA = sizeof aligns / sizeof *aligns, NR = 3000 };
	struct frag *f = calloc(NL * NA + NR, sizeof *f);
	REQUIRE(f);
	size_t n = 0;
	for (size_t l = 0; l < NL; l++)
		for (size_t a = 0; a < NA; a++) {
			errno = 0;
			void *x = iop_frag_alloc(fc, lens[l], aligns[a]);
			if (!x) {
				th_fail_at(__FILE__, __LINE__, "iop_frag_alloc"
					   "(%zu, %zu): %s", lens[l],
					   aligns[a], strerror(errno));
				continue;
			}
			check_frag_at(p, x, lens[l], aligns[a], 4096);
			f[n++] = (struct frag){ x, lens[l] };
		}
	uint64_t rng = th_seed(5, 5);
	for (int i = 0; i < NR; i++) {
		size_t len = 1 + th_rand(&rng) % (th_rand(&rng) % 8 ? 300 : 4096);
		size_t align = (size_t)1 << (th_rand(&rng) % 13);
		void *x = iop_frag_alloc(fc, len, align);
		REQUIRE(x);
		check_frag_at(p, x, len, align, 4096);
		f[n++] = (struct frag){ x, len };
	}
	check_frags_disjoint(f, n);
	struct iop_pool_stats st = STATS(p);
	CHECK_GE(st.in_flight, 1);
	CHECK_CONSERVED(st);
	for (size_t i = 0; i < n; i++)
		iop_buf_put(p, f[i].p);
	iop_frag_destroy(fc);
	CHECK_EQ(STATS(p).in_flight, 0);
	free(f);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(fragments_share_one_buffer_until_it_is_full)
{
	iop_pool_t *p = MKPOOL("frag-share", 2048, 64, 0, 0, IOP_F_REFCOUNT);
	iop_frag_t *fc = iop_frag_create(p);
	REQUIRE(fc);

	/* 100-byte fragments at any alignment: 20 fill 2048 bytes */
	struct frag f[64];
	for (int i = 0; i < 21; i++) {
		f[i].p = iop_frag_alloc(fc, 100, 1);
		f[i].len = 100;
		REQUIRE(f[i].p);
	}
	void *first = iop_buf_base(p, f[0].p);
	for (int i = 1; i < 20; i++)
		CHECK_PTR_EQ(iop_buf_base(p, f[i].p), first);
	void *second = iop_buf_base(p, f[20].p);
	CHECK(second != first);
	check_frags_disjoint(f, 21);
	/* the allocator has moved on: the first buffer's references are its
	 * 20 fragments' */
	CHECK_EQ(iop_buf_refcount(p, first), 20);
	CHECK_EQ(STATS(p).in_flight, 2);

	/* 64-byte fragments aligned to 64 in a new buffer: 32 exactly */
	iop_frag_destroy(fc);
	fc = iop_frag_create(p);
	REQUIRE(fc);
	struct frag g[33];
	for (int i = 0; i < 33; i++) {
		g[i].p = iop_frag_alloc(fc, 64, 64);
		g[i].len = 64;
		REQUIRE(g[i].p);
		CHECK_EQ((uintptr_t)g[i].p % 64, 0);
	}
	void *third = iop_buf_base(p, g[0].p);
	for (int i = 1; i < 32; i++)
		CHECK_PTR_EQ(iop_buf_base(p, g[i].p), third);
	CHECK(iop_buf_base(p, g[32].p) != third);
	CHECK_EQ(iop_buf_refcount(p, third), 32);
	check_frags_disjoint(g, 33);

	/* sizes that add up to the buffer exactly share it */
	iop_frag_destroy(fc);
	fc = iop_frag_create(p);
	REQUIRE(fc);
	struct frag e[4] = { { NULL, 1000 }, { NULL, 1000 }, { NULL, 48 },
			     { NULL, 1 } };
	for (int i = 0; i < 4; i++) {
		e[i].p = iop_frag_alloc(fc, e[i].len, 1);
		REQUIRE(e[i].p);
	}
	void *fourth = iop_buf_base(p, e[0].p);
	CHECK_PTR_EQ(iop_buf_base(p, e[1].p), fourth);
	CHECK_PTR_EQ(iop_buf_base(p, e[2].p), fourth);
	CHECK(iop_buf_base(p, e[3].p) != fourth);
	check_frags_disjoint(e, 4);

	/* a whole-buffer fragment */
	void *whole = iop_frag_alloc(fc, 2048, 64);
	REQUIRE(whole);
	CHECK_PTR_EQ(iop_buf_base(p, whole), whole);
	iop_frag_destroy(fc);

	for (int i = 0; i < 21; i++)
		iop_buf_put(p, f[i].p);
	for (int i = 0; i < 33; i++)
		iop_buf_put(p, g[i].p);
	for (int i = 0; i < 4; i++)
		iop_buf_put(p, e[i].p);
	iop_buf_put(p, whole);
	CHECK_EQ(STATS(p).in_flight, 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(buffer_recycles_when_its_last_fragment_is_put)
{
	iop_pool_t *p = MKPOOL("frag-recycle", 1024, 0, 0, 0, IOP_F_REFCOUNT);
	iop_frag_t *fc = iop_frag_create(p);
	REQUIRE(fc);
	CHECK_EQ(STATS(p).in_flight, 0); /* no buffer before the first */

	/* buffer A: three fragments, then the allocator moves on to B */
	void *a[3];
	for (int i = 0; i < 3; i++) {
		a[i] = iop_frag_alloc(fc, 300, 8);
		REQUIRE(a[i]);
	}
	void *A = iop_buf_base(p, a[0]);
	CHECK_GE(iop_buf_refcount(p, A), 3);
	void *b0 = iop_frag_alloc(fc, 300, 8);
	REQUIRE(b0);
	void *B = iop_buf_base(p, b0);
	CHECK(B != A);
	CHECK_EQ(iop_buf_refcount(p, A), 3);
	CHECK_EQ(STATS(p).in_flight, 2);
	iop_buf_put(p, a[1]);
	iop_buf_put(p, a[0]);
	CHECK_EQ(iop_buf_refcount(p, A), 1);
	CHECK_EQ(STATS(p).in_flight, 2);
	iop_buf_put(p, a[2]); /* A's last */
	CHECK_EQ(iop_buf_refcount(p, A), 0);
	CHECK_EQ(STATS(p).in_flight, 1);

	/* B's only fragment put while the allocator still holds B */
	iop_buf_put(p, b0);
	CHECK_GE(iop_buf_refcount(p, B), 1);
	CHECK_EQ(STATS(p).in_flight, 1);
	/* more fragments come from B still */
	void *b1 = iop_frag_alloc(fc, 300, 8);
	REQUIRE(b1);
	CHECK_PTR_EQ(iop_buf_base(p, b1), B);
	/* destroying the allocator leaves B to its fragment ... */
	iop_frag_destroy(fc);
	CHECK_EQ(iop_buf_refcount(p, B), 1);
	CHECK_EQ(STATS(p).in_flight, 1);
	/* ... whose put recycles it */
	iop_buf_put(p, b1);
	CHECK_EQ(iop_buf_refcount(p, B), 0);
	CHECK_EQ(STATS(p).in_flight, 0);

	/* an allocator destroyed with all its fragments put recycles its
	 * buffer at once */
	fc = iop_frag_create(p);
	REQUIRE(fc);
	void *c = iop_frag_alloc(fc, 10, 0);
	REQUIRE(c);
	iop_buf_put(p, c);
	CHECK_EQ(STATS(p).in_flight, 1);
	iop_frag_destroy(fc);
	CHECK_EQ(STATS(p).in_flight, 0);

	/* an allocator that never allocated holds nothing */
	fc = iop_frag_create(p);
	REQUIRE(fc);
	iop_frag_destroy(fc);
	iop_frag_destroy(NULL);

	/* fragments take extra references like any address of a buffer */
	fc = iop_frag_create(p);
	REQUIRE(fc);
	void *d = iop_frag_alloc(fc, 1024, 0);
	REQUIRE(d);
	iop_frag_destroy(fc);
	CHECK_EQ(iop_buf_refcount(p, d), 1);
	iop_buf_get(p, d);
	iop_buf_put(p, d);
	CHECK_EQ(STATS(p).in_flight, 1);
	iop_buf_put(p, d);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(frag_alloc_rejects_bad_length_and_alignment)
{
	iop_pool_t *p = MKPOOL("frag-bad", 2048, 0, 0, 0, IOP_F_REFCOUNT);
	iop_frag_t *fc = iop_frag_create(p);
	REQUIRE(fc);
	void *keep = iop_frag_alloc(fc, 100, 8);
	REQUIRE(keep);
	void *base = iop_buf_base(p, keep);
	struct {
		size_t len, align;
	} bad[] = {
		{ 0, 0 },         { 0, 1 },           { 0, 64 },
		{ 2049, 0 },      { 2049, 1 },        { 4096, 8 },
		{ SIZE_MAX, 1 },  { SIZE_MAX / 2 + 1, 1 },
		{ 8, 3 },         { 8, 6 },           { 8, 12 },
		{ 8, 24 },        { 8, 100 },         { 8, (1u << 20) + 1 },
		{ 8, SIZE_MAX },  { 1, SIZE_MAX / 2 },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		errno = 0;
		void *x = iop_frag_alloc(fc, bad[i].len, bad[i].align);
		if (x || errno != EINVAL)
			th_fail_at(__FILE__, __LINE__, "iop_frag_alloc(%zu, "
				   "%zu) = %p, errno %d; want NULL, EINVAL",
				   bad[i].len, bad[i].align, x, errno);
	}
	/* the errors took nothing: the current buffer goes on */
	void *next = iop_frag_alloc(fc, 100, 8);
	REQUIRE(next);
	CHECK_PTR_EQ(iop_buf_base(p, next), base);
	CHECK_EQ(STATS(p).in_flight, 1);
	/* the longest fragment: a whole buffer */
	void *whole = iop_frag_alloc(fc, 2048, 1);
	REQUIRE(whole);
	CHECK_PTR_EQ(iop_buf_base(p, whole), whole);
	iop_buf_put(p, whole);
	whole = iop_frag_alloc(fc, 2048, 16);
	REQUIRE(whole);
	iop_frag_destroy(fc);
	iop_buf_put(p, whole);
	iop_buf_put(p, keep);
	iop_buf_put(p, next);
	CHECK_EQ(STATS(p).in_flight, 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(frag_create_needs_a_refcount_pool)
{
	static const uint32_t flags[] = { 0, IOP_F_CHECKED, IOP_F_NO_THP };
	for (int f = 0; f < 3; f++) {
		iop_pool_t *p = MKPOOL("frag-plain", 2048, 0, 0, 0, flags[f]);
		errno = 0;
		CHECK(iop_frag_create(p) == NULL);
		CHECK_EQ(errno, EINVAL);
		CHECK_EQ(STATS(p).in_flight, 0);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	errno = 0;
	CHECK(iop_frag_create(NULL) == NULL);
	CHECK_EQ(errno, EINVAL);
	iop_frag_destroy(NULL);
	/* a refcounted pool takes any number of allocators */
	iop_pool_t *p = MKPOOL("frag-ok", 2048, 0, 0, 0, IOP_F_REFCOUNT);
	iop_frag_t *fc[4];
	void *x[4];
	for (int i = 0; i < 4; i++) {
		fc[i] = iop_frag_create(p);
		REQUIRE(fc[i]);
		x[i] = iop_frag_alloc(fc[i], 16, 0);
		REQUIRE(x[i]);
	}
	for (int i = 1; i < 4; i++)
		CHECK(iop_buf_base(p, x[i]) != iop_buf_base(p, x[0]));
	for (int i = 0; i < 4; i++)
		iop_buf_put(p, x[i]);
	/* the allocators still hold their buffers: in flight */
	CHECK_EQ(STATS(p).in_flight, 4);
	th_capture_begin();
	int rc = iop_pool_destroy(p);
	free(th_capture_end());
	CHECK_EQ(rc, -EBUSY);
	for (int i = 0; i < 4; i++)
		iop_frag_destroy(fc[i]);
	CHECK_EQ(STATS(p).in_flight, 0);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

/* Single-producer single-consumer ring of pointers. */
#define RING_SIZE 1024u

struct ring {
	_Alignas(64) atomic_size_t head;
	_Alignas(64) atomic_size_t tail;
	void *slot[RING_SIZE];
};

static void ring_push(struct ring *r, void *p)
{
	size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	while (h - atomic_load_explicit(&r->tail, memory_order_acquire) ==
	       RING_SIZE)
		sched_yield();
	r->slot[h % RING_SIZE] = p;
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
}

static void *ring_pop(struct ring *r)
{
	size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	while (atomic_load_explicit(&r->head, memory_order_acquire) == t)
		sched_yield();
	void *p = r->slot[t % RING_SIZE];
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return p;
}

struct consumer {
	iop_pool_t *pool;
	struct ring *ring;
	size_t obj_size; /* 0: fragments (len in the first word) */
	uint64_t seed;
	size_t got;
};

/* Take buffers (or fragments) off the ring until NULL, check each while
 * this thread holds its reference, and put it, through any address. */
static void *consumer_main(void *arg)
{
	struct consumer *c = arg;
	uint64_t rng = c->seed;
	for (void *b; (b = ring_pop(c->ring)) != NULL; c->got++) {
		if (c->obj_size) {
			uint64_t tag = ((const uint64_t *)b)[1] ^ th_cookie;
			CHECK_STAMP(b, c->obj_size, tag);
			size_t off = th_rand(&rng) % c->obj_size;
			iop_buf_put(c->pool, (char *)b + off);
		} else {
			uint64_t len;
			memcpy(&len, b, 8);
			size_t bad = th_verify((char *)b + 8, len - 8,
					       (uintptr_t)b);
			if (bad != (size_t)-1)
				th_fail_at(__FILE__, __LINE__, "fragment %p "
					   "of %llu bytes overwritten at %zu",
					   b, (unsigned long long)len, 8 + bad);
			iop_buf_put(c->pool, b);
		}
	}
	return NULL;
}

TEST(refs_dropped_on_other_threads)
{
	enum { NC = 3 };
	struct hk h;
	hk_init(&h);
	iop_pool_t *p = MKHOOKED(&h, .name = "xrefs", .obj_size = 2048,
				 .flags = IOP_F_REFCOUNT, .release = 1,
				 .map = 1);
	size_t n = SCALE(100000);
	h.nseen = n;
	h.seen = calloc(n, sizeof *h.seen);
	REQUIRE(h.seen);
	struct ring *rings = aligned_alloc(64, NC * sizeof *rings);
	REQUIRE(rings);
	struct consumer cs[NC];
	pthread_t th[NC];
	for (int t = 0; t < NC; t++) {
		atomic_init(&rings[t].head, 0);
		atomic_init(&rings[t].tail, 0);
		cs[t] = (struct consumer){ p, &rings[t], 2048,
					   th_seed(9, (uint64_t)t), 0 };
		REQUIRE(pthread_create(&th[t], NULL, consumer_main, &cs[t]) ==
			0);
	}
	/* this thread allocates each buffer and takes one reference per
	 * consumer beyond its own; each consumer puts once; this thread
	 * puts its own first (every other buffer) or not at all (the
	 * consumers then hold the last reference from the start) */
	uint64_t rng = th_seed(9, 99);
	for (size_t i = 0; i < n; i++) {
		void *b = iop_buf_alloc(p);
		REQUIRE(b);
		th_stamp(b, 2048, i);
		int own = (int)(th_rand(&rng) % 2);
		for (int k = 1; k < NC + own; k++)
			iop_buf_get(p, b);
		for (int t = 0; t < NC; t++)
			ring_push(&rings[t], b);
		if (own)
			iop_buf_put(p, (char *)b + 7);
	}
	for (int t = 0; t < NC; t++)
		ring_push(&rings[t], NULL);
	for (int t = 0; t < NC; t++) {
		pthread_join(th[t], NULL);
		CHECK_EQ(cs[t].got, n);
	}
	/* every buffer released exactly once, by the hook */
	CHECK_EQ(atomic_load(&h.releases), n);
	for (size_t i = 0; i < n; i++)
		if (atomic_load(&h.seen[i]) != 1) {
			th_fail_at(__FILE__, __LINE__, "buffer %zu released "
				   "%u times", i, atomic_load(&h.seen[i]));
			break;
		}
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.release_hook, n);
	CHECK_EQ(st.map_calls, st.chunks);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	free(rings);
	CHECK_DESTROY(p);
	hk_check_all_unmapped(&h);
	hk_fini(&h);
	return TH_PASS;
}

TEST(fragments_put_from_other_threads)
{
	enum { NC = 3 };
	struct hk h;
	hk_init(&h);
	iop_pool_t *p = MKHOOKED(&h, .name = "xfrags", .obj_size = 4096,
				 .flags = IOP_F_REFCOUNT, .release = 1);
	size_t n = SCALE(100000);
	struct ring *rings = aligned_alloc(64, NC * sizeof *rings);
	REQUIRE(rings);
	struct consumer cs[NC];
	pthread_t th[NC];
	for (int t = 0; t < NC; t++) {
		atomic_init(&rings[t].head, 0);
		atomic_init(&rings[t].tail, 0);
		cs[t] = (struct consumer){ p, &rings[t], 0,
					   th_seed(8, (uint64_t)t), 0 };
		REQUIRE(pthread_create(&th[t], NULL, consumer_main, &cs[t]) ==
			0);
	}
	/* two allocators, as two queues would have; fragments go to the
	 * consumers round-robin, each holding its length and a pattern. The
	 * buffers the allocators take are counted by the pool's allocation
	 * counters (a buffer whose fragments were all put may come back as
	 * the allocator's next one, so its address does not tell). */
	struct iop_pool_stats st0 = STATS(p);
	iop_frag_t *fc[2];
	for (int k = 0; k < 2; k++) {
		fc[k] = iop_frag_create(p);
		REQUIRE(fc[k]);
	}
	uint64_t rng = th_seed(8, 99);
	for (size_t i = 0; i < n; i++) {
		int k = (int)(th_rand(&rng) % 2);
		size_t len = 16 + th_rand(&rng) % (th_rand(&rng) % 16 ? 200
								       : 4080);
		size_t align = (size_t)8 << (th_rand(&rng) % 4);
		void *f = iop_frag_alloc(fc[k], len, align);
		REQUIRE(f);
		CHECK_EQ((uintptr_t)f % align, 0);
		uint64_t l = len;
		memcpy(f, &l, 8);
		th_fill((char *)f + 8, len - 8, (uintptr_t)f);
		ring_push(&rings[i % NC], f);
	}
	for (int k = 0; k < 2; k++)
		iop_frag_destroy(fc[k]);
	for (int t = 0; t < NC; t++)
		ring_push(&rings[t], NULL);
	size_t got = 0;
	for (int t = 0; t < NC; t++) {
		pthread_join(th[t], NULL);
		got += cs[t].got;
	}
	CHECK_EQ(got, n);
	/* each buffer the allocators took released once */
	struct iop_pool_stats st = STATS(p);
	uint64_t uses = st.alloc_fast + st.alloc_slow - st0.alloc_fast -
			st0.alloc_slow;
	CHECK_GE(uses, 2);
	CHECK_EQ(atomic_load(&h.releases), uses);
	CHECK_EQ(st.in_flight, 0);
	CHECK_EQ(st.release_hook, uses);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(p);
	free(rings);
	CHECK_DESTROY(p);
	hk_fini(&h);
	return TH_PASS;
}

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
