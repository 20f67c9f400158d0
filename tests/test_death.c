/* SPDX-License-Identifier: MIT */
/*
 * Death tests: every misuse that iopool cannot report with an error code
 * must abort (SIGABRT) with a message on stderr of the form
 *     iopool: pool '<name>': ... <address as %p> ... <fault>
 * Each case runs the misuse in a forked child (see harness.h) and checks the
 * signal, the pool's name, the address and the exact fault phrase.
 *
 * The pool and its objects are made in the parent before the fork, so the
 * parent knows the addresses the child will print, and cleans up after.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"

#include <pthread.h>

#define PREFIX(name) "iopool: pool '" name "': "

struct bad_free {
	iop_pool_t *pool;
	void *ptr;       /* handed to iop_free */
	void **bulk;     /* or this array to iop_free_bulk */
	unsigned nbulk;
	iop_pool_t *pool2;
};

static void do_free(void *arg)
{
	struct bad_free *b = arg;
	iop_free(b->pool, b->ptr);
}

static void do_free_bulk(void *arg)
{
	struct bad_free *b = arg;
	iop_free_bulk(b->pool, b->bulk, b->nbulk);
}

/* "%p" of an address, as the library prints it */
static const char *addr(const void *p, char buf[32])
{
	snprintf(buf, 32, "%p", p);
	return buf;
}

/* ------------------------------------------------------------------------ */
/* Addresses that no pool handed out                                         */
/* ------------------------------------------------------------------------ */

static char static_buffer[256];

TEST(free_of_malloc_pointer_aborts_not_from_any_pool)
{
	iop_pool_t *p = MKPOOL("victim", 64, 0, 0, 0, 0);
	void *keep = iop_alloc(p); /* the pool has a chunk */
	REQUIRE(keep);
	void *m = malloc(64);
	REQUIRE(m);
	struct bad_free b = { .pool = p, .ptr = m };
	char a[32];
	EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("victim"), addr(m, a),
		     "not from any pool");
	/* a large malloc block (mmap'd) as well */
	void *big = malloc(4 * MiB);
	REQUIRE(big);
	b.ptr = big;
	EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("victim"), addr(big, a),
		     "not from any pool");
	free(big);
	free(m);
	iop_free(p, keep);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(free_of_stack_pointer_aborts_not_from_any_pool)
{
	iop_pool_t *p = MKPOOL("stacky", 64, 0, 0, 0, 0);
	char local[64];
	struct bad_free b = { .pool = p, .ptr = local };
	char a[32];
	EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("stacky"), addr(local, a),
		     "not from any pool");
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(free_of_static_pointer_aborts_not_from_any_pool)
{
	iop_pool_t *p = MKPOOL("statics", 64, 0, 0, 0, 0);
	struct bad_free b = { .pool = p, .ptr = static_buffer + 64 };
	char a[32];
	EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("statics"),
		     addr(static_buffer + 64, a), "not from any pool");
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/*
 * An object's address with a bit at or above the top of the user range
 * set (non-canonical, or the kernel's half): iop__owned()'s first test
 * refuses it before the map is indexed, which it would overrun. Through
 * iop_free() and a bulk free of one.
 */
TEST(free_of_an_address_above_the_user_range_aborts_not_from_any_pool)
{
	iop_pool_t *p = MKPOOL("highaddr", 2048, 0, 0, 0, 0);
	void *o = iop_alloc(p);
	REQUIRE(o);
#if defined(__aarch64__)
	static const unsigned bits[] = { 48, 52, 56, 63 };
#else
	static const unsigned bits[] = { 47, 48, 56, 63 };
#endif
	for (size_t i = 0; i < sizeof bits / sizeof *bits; i++) {
		void *bad = (void *)((uintptr_t)o | ((uintptr_t)1 << bits[i]));
		void *one[1] = { bad };
		struct bad_free b = { .pool = p, .ptr = bad, .bulk = one, .nbulk = 1 };
		char a[32];
		if (!EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("highaddr"), addr(bad, a), "not from any pool") ||
		    !EXPECT_DEATH(do_free_bulk, &b, SIGABRT, PREFIX("highaddr"), addr(bad, a), "not from any pool"))
			printf("  (bit %u)\n", bits[i]);
	}
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(free_of_another_pools_object_aborts_naming_both_pools)
{
	iop_pool_t *p = MKPOOL("mine", 64, 0, 0, 0, 0);
	iop_pool_t *q = MKPOOL("theirs", 64, 0, 0, 0, 0);
	void *o = iop_alloc(q);
	REQUIRE(o);
	struct bad_free b = { .pool = p, .ptr = o };
	char a[32];
	EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("mine"), addr(o, a),
		     "belongs to pool 'theirs'");
	iop_free(q, o);
	CHECK_AUDIT(p);
	CHECK_AUDIT(q);
	CHECK_DESTROY(p);
	CHECK_DESTROY(q);
	return TH_PASS;
}

/*
 * A bulk free whose every pointer is an object of another pool, all from
 * one chunk of it: the inline tests of a power-of-two stride compare the
 * others with the first pointer, so only the map's answer for the first
 * one stands between this and a push of another pool's objects. At each
 * size the inline paths take (one, a run of 4 to 8, 16 and more) and at a
 * power-of-two stride and one that is not.
 */
TEST(bulk_free_of_another_pools_objects_aborts_naming_both_pools)
{
	static const size_t sizes[] = { 64, 96, 2048 };
	static const unsigned counts[] = { 1, 2, 4, 5, 8, 9, 16, 17, 32, 64 };
	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
		iop_pool_t *p = MKPOOL("mine", sizes[s], 0, 0, 0, 0);
		iop_pool_t *q = MKPOOL("theirs", sizes[s], 0, 0, 0, 0);
		void *keep = iop_alloc(p); /* p has a chunk of its own */
		void *objs[64];
		REQUIRE(keep);
		REQUIRE(iop_alloc_bulk(q, objs, 64) == 64);
		for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
			struct bad_free b = { .pool = p, .bulk = objs, .nbulk = counts[c] };
			char a[32];
			if (!EXPECT_DEATH(do_free_bulk, &b, SIGABRT, PREFIX("mine"), addr(objs[0], a),
					  "belongs to pool 'theirs'"))
				printf("  (size %zu, n %u)\n", sizes[s], counts[c]);
		}
		iop_free_bulk(q, objs, 64);
		iop_free(p, keep);
		CHECK_AUDIT(p);
		CHECK_AUDIT(q);
		CHECK_DESTROY(p);
		CHECK_DESTROY(q);
	}
	return TH_PASS;
}

/* The address map forgets a destroyed pool: a stale pointer into it is
 * from no pool, even when handed to a live pool of the same size. */
TEST(free_of_a_destroyed_pools_object_aborts_not_from_any_pool)
{
	iop_pool_t *p = MKPOOL("survivor", 64, 0, 0, 0, 0);
	void *keep = iop_alloc(p);
	iop_pool_t *q = MKPOOL("departed", 64, 0, 0, 0, 0);
	void *stale = iop_alloc(q);
	REQUIRE(keep && stale);
	iop_free(q, stale);
	CHECK_DESTROY(q);
	struct bad_free b = { .pool = p, .ptr = stale };
	char a[32];
	EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("survivor"), addr(stale, a),
		     "not from any pool");
	iop_free(p, keep);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(free_of_interior_pointer_aborts)
{
	iop_pool_t *p = MKPOOL("interior", 256, 0, 0, 0, 0);
	void *objs[3];
	for (int i = 0; i < 3; i++) {
		objs[i] = iop_alloc(p);
		REQUIRE(objs[i]);
	}
	size_t stride = STATS(p).obj_stride;
	static const size_t offs[] = { 1, 8, 16, 0 /* stride / 2 */, 255 };
	for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
		size_t off = offs[i] ? offs[i] : stride / 2;
		char *bad = (char *)objs[1] + off;
		struct bad_free b = { .pool = p, .ptr = bad };
		char a[32];
		if (!EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("interior"),
				  addr(bad, a), "interior pointer"))
			printf("  (offset %zu)\n", off);
	}
	for (int i = 0; i < 3; i++)
		iop_free(p, objs[i]);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(free_of_interior_pointer_aborts_in_checked_pool)
{
	iop_pool_t *p = MKPOOL("interior-chk", 100, 64, 0, 0, IOP_F_CHECKED);
	void *o = iop_alloc(p);
	REQUIRE(o);
	char *bad = (char *)o + 64;
	struct bad_free b = { .pool = p, .ptr = bad };
	char a[32];
	EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("interior-chk"),
		     addr(bad, a), "interior pointer");
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(free_of_chunk_address_past_the_last_object_aborts_not_an_object)
{
	/* 300 KiB objects in 2 MiB chunks: six objects and a 248 KiB tail
	 * that is no object at all */
	iop_pool_t *p = MKPOOL("tail", 300 * KiB, 0, 0, 2 * MiB, IOP_F_NO_THP);
	struct iop_pool_stats st = STATS(p);
	CHECK_EQ(st.objs_per_chunk, 6);
	/* a fresh pool carves its first chunk: find its last object */
	void *objs[6];
	CHECK_EQ(iop_alloc_bulk(p, objs, 6), 6);
	uintptr_t base = (uintptr_t)objs[0] & ~(uintptr_t)(2 * MiB - 1);
	uintptr_t last = 0;
	for (int i = 0; i < 6; i++)
		if (((uintptr_t)objs[i] & ~(uintptr_t)(2 * MiB - 1)) == base &&
		    (uintptr_t)objs[i] > last)
			last = (uintptr_t)objs[i];
	char *past = (char *)last + st.obj_stride;
	int have_tail = (uintptr_t)past < base + 2 * MiB &&
			iop_pool_of(past) == p;
	if (have_tail) {
		struct bad_free b = { .pool = p, .ptr = past };
		char a[32];
		EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("tail"),
			     addr(past, a), "not an object");
		/* and the last byte of the chunk */
		b.ptr = (void *)(base + 2 * MiB - 1);
		EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("tail"),
			     addr(b.ptr, a), "not an object");
	}
	iop_free_bulk(p, objs, 6);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	TH_SKIP_IF(!have_tail && !th_failed(),
		   "the chunk has no tail past its last object");
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Bulk free checks every object before freeing any                          */
/* ------------------------------------------------------------------------ */

TEST(free_bulk_with_one_bad_pointer_aborts_naming_it)
{
	iop_pool_t *p = MKPOOL("bulky", 128, 0, 0, 0, 0);
	iop_pool_t *q = MKPOOL("other", 128, 0, 0, 0, 0);
	void *good[6];
	CHECK_EQ(iop_alloc_bulk(p, good, 6), 6);
	void *foreign = iop_alloc(q);
	void *m = malloc(128);
	REQUIRE(foreign && m);

	struct {
		void *bad;
		const char *fault;
	} cases[] = {
		{ m, "not from any pool" },
		{ foreign, "belongs to pool 'other'" },
		{ (char *)good[2] + 8, "interior pointer" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		void *arr[8] = { good[0], good[1], NULL, good[3],
				 cases[i].bad, good[4], good[5], good[2] };
		struct bad_free b = { .pool = p, .bulk = arr, .nbulk = 8 };
		char a[32];
		EXPECT_DEATH(do_free_bulk, &b, SIGABRT, PREFIX("bulky"),
			     addr(cases[i].bad, a), cases[i].fault);
		/* alone: a bulk of one takes iop_free()'s check inline */
		struct bad_free one = { .pool = p, .bulk = &cases[i].bad, .nbulk = 1 };
		EXPECT_DEATH(do_free_bulk, &one, SIGABRT, PREFIX("bulky"),
			     addr(cases[i].bad, a), cases[i].fault);
	}
	/* the bad pointer first and last, too */
	void *first[3] = { m, good[0], good[1] };
	struct bad_free b = { .pool = p, .bulk = first, .nbulk = 3 };
	char a[32];
	EXPECT_DEATH(do_free_bulk, &b, SIGABRT, PREFIX("bulky"), addr(m, a),
		     "not from any pool");
	void *last[3] = { good[0], good[1], m };
	b.bulk = last;
	EXPECT_DEATH(do_free_bulk, &b, SIGABRT, PREFIX("bulky"), addr(m, a),
		     "not from any pool");

	iop_free_bulk(p, good, 6);
	iop_free(q, foreign);
	free(m);
	CHECK_AUDIT(p);
	CHECK_AUDIT(q);
	CHECK_DESTROY(p);
	CHECK_DESTROY(q);
	return TH_PASS;
}

/* Bulk frees whose size is a literal: the push's copy laid out for it. */
#define DO_FREE_BULK_K(K)                                      \
	static void do_free_bulk_##K(void *arg)                \
	{                                                      \
		struct bad_free *b = arg;                      \
		iop_free_bulk(b->pool, b->bulk, K);            \
	}
DO_FREE_BULK_K(4)
DO_FREE_BULK_K(5)
DO_FREE_BULK_K(8)
DO_FREE_BULK_K(16)
DO_FREE_BULK_K(17)
DO_FREE_BULK_K(40)
DO_FREE_BULK_K(64)

/*
 * The bad bulk frees below: a pool `name` of objects of obj bytes whose
 * first 65 are held in good[], and one object of a pool `other`.
 */
struct bad_bulk {
	iop_pool_t *p, *q;
	void *good[65], *arr[65], *foreign;
	char prefix[64], other[64];
	size_t obj;
};

static void bad_bulk_open(struct bad_bulk *f, const char *name, const char *other, size_t obj)
{
	memset(f, 0, sizeof *f);
	f->obj = obj;
	snprintf(f->prefix, sizeof f->prefix, "iopool: pool '%s': ", name);
	snprintf(f->other, sizeof f->other, "belongs to pool '%s'", other);
	f->p = MKPOOL(name, obj, 0, 0, 0, 0);
	f->q = MKPOOL(other, 128, 0, 0, 0, 0);
	CHECK_EQ(iop_alloc_bulk(f->p, f->good, 65), 65);
	f->foreign = iop_alloc(f->q);
	REQUIRE(f->foreign);
}

/* good[0..k) with good[at] replaced by the foreign object (foreign) or
 * by an interior pointer (good[at] + 64), freed by fn: 1 when that
 * aborts naming it. */
static int bad_bulk_dies(struct bad_bulk *f, void (*fn)(void *), unsigned k, unsigned at, int foreign)
{
	void *bad = foreign ? f->foreign : (char *)f->good[at] + 64;
	memcpy(f->arr, f->good, sizeof f->arr);
	f->arr[at] = bad;
	struct bad_free b = { .pool = f->p, .bulk = f->arr, .nbulk = k };
	char a[32];
	if (EXPECT_DEATH(fn, &b, SIGABRT, f->prefix, addr(bad, a), foreign ? f->other : "interior pointer"))
		return 1;
	printf("  (stride of %zu, %u objects, bad at %u)\n", f->obj, k, at);
	return 0;
}

static void bad_bulk_close(struct bad_bulk *f)
{
	iop_free_bulk(f->p, f->good, 65);
	iop_free(f->q, f->foreign);
	CHECK_AUDIT(f->p);
	CHECK_AUDIT(f->q);
	CHECK_DESTROY(f->p);
	CHECK_DESTROY(f->q);
}

/*
 * Arrays of 2 to 15, the size a variable and a literal (4, 5, 8), with one
 * bad pointer at every place: the SSE2 runs (2 to 8), the two 32-byte runs
 * checked inside the push (4 to 8, with AVX2: inline.h,
 * iop__seq_push8_own) and the check of 9 to 15. The abort names it, so the
 * push did not take it.
 */
static void bad_bulks_of_2_to_15(size_t obj)
{
	struct bad_bulk f;
	bad_bulk_open(&f, "bulkshort", "othershort", obj);
	for (unsigned k = 2; k <= 15; k++) {
		void (*lit)(void *) = k == 4 ? do_free_bulk_4 : k == 5 ? do_free_bulk_5 : k == 8 ? do_free_bulk_8 : NULL;
		for (unsigned at = 0; at < k; at++) {
			int foreign = (at + k) % 2;
			bad_bulk_dies(&f, do_free_bulk, k, at, foreign);
			if (lit)
				bad_bulk_dies(&f, lit, k, at, foreign);
		}
	}
	bad_bulk_close(&f);
}

TEST(free_bulk_of_2_to_15_with_one_bad_pointer_anywhere_aborts_naming_it)
{
	/* a power-of-two stride, and 96: its interior pointer at +64 has
	 * the low bits of an object, so only the offset's multiply sees it */
	bad_bulks_of_2_to_15(128);
	bad_bulks_of_2_to_15(96);
	return TH_PASS;
}

/*
 * Arrays of 16 to 65, the size a variable and a literal (with AVX2, the
 * push checks them inside its copy: inline.h, iop__seq_push_bulk_own) with
 * one bad pointer at each place where the copy's blocks start, end and
 * overlap: the abort names it, so the push did not take it.
 */
static void bad_bulks_of_16_to_65(size_t obj)
{
	struct bad_bulk f;
	bad_bulk_open(&f, "bulkwide", "otherwide", obj);
	static const unsigned sizes[] = { 16, 17, 31, 32, 33, 48, 63, 64, 65 };
	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
		unsigned k = sizes[s];
		/* the same size as a literal */
		void (*lit)(void *) = k == 16 ? do_free_bulk_16 : k == 17 ? do_free_bulk_17 :
				      k == 64 ? do_free_bulk_64 : NULL;
		const unsigned at[] = { 0, 1, 3, 4, 15, 16, 31, k / 2, k - 17, k - 5, k - 4, k - 1 };
		for (size_t j = 0; j < sizeof at / sizeof *at; j++) {
			if (at[j] >= k)
				continue;
			bad_bulk_dies(&f, do_free_bulk, k, at[j], j % 2);
			if (lit)
				bad_bulk_dies(&f, lit, k, at[j], j % 2);
		}
	}
	/* 40 as a literal: two groups of 16 and the last 16 ending at 40 */
	static const unsigned at40[] = { 0, 15, 16, 23, 24, 31, 32, 39 };
	for (size_t j = 0; j < sizeof at40 / sizeof *at40; j++)
		bad_bulk_dies(&f, do_free_bulk_40, 40, at40[j], 1);
	bad_bulk_close(&f);
}

TEST(free_bulk_of_16_to_65_with_one_bad_pointer_aborts_naming_it)
{
	/* a power-of-two stride, and 96 (the offset's multiply) */
	bad_bulks_of_16_to_65(128);
	bad_bulks_of_16_to_65(96);
	return TH_PASS;
}

/* In the child, when the abort comes, report how many objects the pool still
 * counts in flight: a bulk free must abort before it frees any object. */
static iop_pool_t *abort_pool;

static void report_in_flight(int sig)
{
	(void)sig;
	struct iop_pool_stats st;
	memset(&st, 0, sizeof st);
	st.struct_size = sizeof st;
	char buf[64];
	int n = iop_pool_stats(abort_pool, &st) == 0 ?
		snprintf(buf, sizeof buf, "\nin_flight=%llu;\n",
			 (unsigned long long)st.in_flight) :
		snprintf(buf, sizeof buf, "\nno stats\n");
	ssize_t w = write(2, buf, (size_t)n);
	(void)w;
	/* returning lets abort() die by SIGABRT */
}

static void do_free_bulk_reporting(void *arg)
{
	struct bad_free *b = arg;
	abort_pool = b->pool;
	signal(SIGABRT, report_in_flight);
	iop_free_bulk(b->pool, b->bulk, b->nbulk);
}

TEST(free_bulk_with_a_bad_pointer_frees_nothing_before_aborting)
{
	static const uint32_t flags[] = { 0, IOP_F_CHECKED };
	for (int f = 0; f < 2; f++) {
		iop_pool_t *p = MKPOOL("all-or-nothing", 64, 0, 0, 0, flags[f]);
		void *good[8];
		CHECK_EQ(iop_alloc_bulk(p, good, 8), 8);
		void *m = malloc(64);
		REQUIRE(m);
		void *arr[9] = { good[0], good[1], good[2], good[3], m,
				 good[4], good[5], good[6], good[7] };
		struct bad_free b = { .pool = p, .bulk = arr, .nbulk = 9 };
		char a[32];
		EXPECT_DEATH(do_free_bulk_reporting, &b, SIGABRT,
			     PREFIX("all-or-nothing"), addr(m, a),
			     "not from any pool", "in_flight=8;");
		iop_free_bulk(p, good, 8);
		free(m);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Double frees (checked mode)                                               */
/* ------------------------------------------------------------------------ */

static void do_double_free(void *arg)
{
	struct bad_free *b = arg;
	iop_free(b->pool, b->ptr);
	iop_free(b->pool, b->ptr);
}

TEST(double_free_in_checked_pool_aborts)
{
	iop_pool_t *p = MKPOOL("dbl", 64, 0, 0, 0, IOP_F_CHECKED);
	void *objs[10];
	CHECK_EQ(iop_alloc_bulk(p, objs, 10), 10);
	struct bad_free b = { .pool = p, .ptr = objs[3] };
	char a[32];
	EXPECT_DEATH(do_double_free, &b, SIGABRT, PREFIX("dbl"),
		     addr(objs[3], a), "double free");
	iop_free_bulk(p, objs, 10);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* free, let the object travel through the magazine to the depot and the
 * slab, then free it again: still caught */
static void do_distant_double_free(void *arg)
{
	struct bad_free *b = arg;
	iop_free(b->pool, b->ptr);
	for (int i = 0; i < 200; i++)
		iop_free(b->pool, b->bulk[i]);
	iop_thread_flush();
	iop_free(b->pool, b->ptr);
}

TEST(double_free_after_the_object_left_the_cache_aborts)
{
	iop_pool_t *p = MKPOOL("dbl-far", 64, 0, 8, 0, IOP_F_CHECKED);
	void *victim = iop_alloc(p);
	void *others[200];
	CHECK_EQ(iop_alloc_bulk(p, others, 200), 200);
	struct bad_free b = { .pool = p, .ptr = victim, .bulk = others };
	char a[32];
	EXPECT_DEATH(do_distant_double_free, &b, SIGABRT, PREFIX("dbl-far"),
		     addr(victim, a), "double free");
	iop_free(p, victim);
	iop_free_bulk(p, others, 200);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* An object of the pool that it never handed out (one still free in its
 * chunk, 1000 objects past the first one carved) is not in flight: a
 * checked pool refuses it with a message. (An unchecked pool accepts it;
 * README, "Checked mode".) */
TEST(free_of_an_object_never_handed_out_aborts_in_checked_pool)
{
	iop_pool_t *p = MKPOOL("never", 64, 0, 8, 0, IOP_F_CHECKED);
	void *o = iop_alloc(p);
	REQUIRE(o);
	struct iop_pool_stats st = STATS(p);
	REQUIRE(st.objs_per_chunk > 1001);
	char *never = (char *)o + 1000 * st.obj_stride;
	REQUIRE(iop_pool_of(never) == p);
	struct bad_free b = { .pool = p, .ptr = never };
	char a[32];
	EXPECT_DEATH(do_free, &b, SIGABRT, PREFIX("never"), addr(never, a),
		     "not in flight (freed already, or never handed out)");
	/* The refusal changed nothing: the pool is whole. */
	CHECK_EQ(STATS(p).in_flight, 1);
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(double_free_in_debug_build_aborts_without_the_checked_flag)
{
	TH_SKIP_IF(!TH_ALL_CHECKED, "needs a build with IOP_DEBUG >= 2");
	iop_pool_t *p = MKPOOL("dbl-debug", 64, 0, 0, 0, 0);
	void *o = iop_alloc(p);
	REQUIRE(o);
	struct bad_free b = { .pool = p, .ptr = o };
	char a[32];
	EXPECT_DEATH(do_double_free, &b, SIGABRT, PREFIX("dbl-debug"),
		     addr(o, a), "double free");
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(duplicate_inside_one_bulk_free_aborts_in_checked_pool)
{
	iop_pool_t *p = MKPOOL("dup-bulk", 64, 0, 0, 0, IOP_F_CHECKED);
	void *objs[6];
	CHECK_EQ(iop_alloc_bulk(p, objs, 6), 6);
	void *arr[7] = { objs[0], objs[1], objs[2], objs[3],
			 objs[4], objs[5], objs[2] };
	struct bad_free b = { .pool = p, .bulk = arr, .nbulk = 7 };
	char a[32];
	EXPECT_DEATH(do_free_bulk, &b, SIGABRT, PREFIX("dup-bulk"),
		     addr(objs[2], a), "double free");
	/* adjacent duplicates */
	void *adj[3] = { objs[4], objs[4], objs[5] };
	b.bulk = adj;
	b.nbulk = 3;
	EXPECT_DEATH(do_free_bulk, &b, SIGABRT, PREFIX("dup-bulk"),
		     addr(objs[4], a), "double free");
	iop_free_bulk(p, objs, 6);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

static void *free_on_thread(void *arg)
{
	struct bad_free *b = arg;
	iop_free(b->pool, b->ptr);
	return NULL;
}

static void do_free_on_a_then_b(void *arg)
{
	pthread_t ta, tb;
	if (pthread_create(&ta, NULL, free_on_thread, arg) != 0)
		_exit(3);
	pthread_join(ta, NULL);
	if (pthread_create(&tb, NULL, free_on_thread, arg) != 0)
		_exit(3);
	pthread_join(tb, NULL);
}

/* thread A keeps running with the object in its cache while B frees it */
struct race {
	struct bad_free *b;
	pthread_barrier_t bar;
};

static void *free_then_wait(void *arg)
{
	struct race *r = arg;
	iop_free(r->b->pool, r->b->ptr);
	pthread_barrier_wait(&r->bar);
	pthread_barrier_wait(&r->bar); /* never passed: B aborts */
	return NULL;
}

static void do_free_on_a_live_then_b(void *arg)
{
	struct race r = { .b = arg };
	pthread_barrier_init(&r.bar, NULL, 2);
	pthread_t ta;
	if (pthread_create(&ta, NULL, free_then_wait, &r) != 0)
		_exit(3);
	pthread_barrier_wait(&r.bar);
	iop_free(r.b->pool, r.b->ptr); /* this thread is B */
	pthread_barrier_wait(&r.bar);
	pthread_join(ta, NULL);
}

TEST(free_on_thread_b_after_free_on_thread_a_aborts_in_checked_pool)
{
	iop_pool_t *p = MKPOOL("xthread", 64, 0, 0, 0, IOP_F_CHECKED);
	void *o = iop_alloc(p);
	REQUIRE(o);
	struct bad_free b = { .pool = p, .ptr = o };
	char a[32];
	/* A has exited (its cache flushed to the depot) */
	EXPECT_DEATH(do_free_on_a_then_b, &b, SIGABRT, PREFIX("xthread"),
		     addr(o, a), "double free");
	/* A is alive and holds the object in its cache */
	EXPECT_DEATH(do_free_on_a_live_then_b, &b, SIGABRT,
		     PREFIX("xthread"), addr(o, a), "double free");
	iop_free(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Use after free (checked mode: poison verified when handed out again)      */
/* ------------------------------------------------------------------------ */

struct uaf {
	iop_pool_t *pool;
	size_t obj_size;
	size_t offset; /* where the stray write lands */
};

static void do_use_after_free(void *arg)
{
	struct uaf *u = arg;
	unsigned char *o = iop_alloc(u->pool);
	if (!o)
		_exit(3);
	iop_free(u->pool, o);
	o[u->offset] ^= 0x5a; /* the stray write */
	/* hand out every object until the written one comes back */
	for (int i = 0; i < 100000; i++)
		if (!iop_alloc(u->pool))
			break;
}

TEST(use_after_free_is_caught_by_poison_on_reuse)
{
	TH_SKIP_IF(TH_ASAN, "AddressSanitizer reports the write first "
			    "(see use_after_free_is_reported_by_asan)");
	iop_pool_t *p = MKPOOL("uaf", 256, 0, 0, 0, IOP_F_CHECKED);
	static const size_t offsets[] = { 128, 255, 24 };
	for (size_t i = 0; i < sizeof offsets / sizeof *offsets; i++) {
		struct uaf u = { p, 256, offsets[i] };
		if (!EXPECT_DEATH(do_use_after_free, &u, SIGABRT,
				  PREFIX("uaf"), "use after free"))
			printf("  (write at offset %zu)\n", offsets[i]);
	}
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* The address of the written object: predictable from the parent, since the
 * child's first iop_alloc returns what the parent's would. */
TEST(use_after_free_message_names_the_object)
{
	TH_SKIP_IF(TH_ASAN, "AddressSanitizer reports the write first");
	iop_pool_t *p = MKPOOL("uaf-addr", 64, 0, 0, 0, IOP_F_CHECKED);
	void *o = iop_alloc(p); /* the same object the child will get */
	REQUIRE(o);
	iop_free(p, o);
	struct uaf u = { p, 64, 40 };
	char a[32];
	EXPECT_DEATH(do_use_after_free, &u, SIGABRT, PREFIX("uaf-addr"),
		     addr(o, a), "use after free");
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Refcounted buffers                                                        */
/* ------------------------------------------------------------------------ */

/* The phrases the library prints for these faults. */
#define UNDERFLOW "refcount underflow"
#define NO_REFERENCE "no reference (it was released)"
#define NOT_REFCOUNTED "no reference counts"
#define PAST_THE_LAST "past the last object of its chunk"

struct bad_buf {
	iop_pool_t *pool;
	void *ptr;
	void **others; /* do_distant_buf_put: buffers to put in between */
	unsigned nothers;
};

static void do_buf_put(void *arg)
{
	struct bad_buf *b = arg;
	iop_buf_put(b->pool, b->ptr);
}

static void do_buf_get(void *arg)
{
	struct bad_buf *b = arg;
	iop_buf_get(b->pool, b->ptr);
}

static void do_buf_refcount(void *arg)
{
	struct bad_buf *b = arg;
	unsigned n = iop_buf_refcount(b->pool, b->ptr);
	(void)n;
}

static void do_buf_base(void *arg)
{
	struct bad_buf *b = arg;
	void *base = iop_buf_base(b->pool, b->ptr);
	(void)base;
}

static void do_buf_put_twice(void *arg)
{
	struct bad_buf *b = arg;
	iop_buf_put(b->pool, b->ptr);
	iop_buf_put(b->pool, b->ptr);
}

/* shared, then one put too many */
static void do_buf_get_put_put_put(void *arg)
{
	struct bad_buf *b = arg;
	iop_buf_get(b->pool, b->ptr);
	iop_buf_put(b->pool, b->ptr);
	iop_buf_put(b->pool, b->ptr);
	iop_buf_put(b->pool, b->ptr);
}

static void do_buf_put_then_get(void *arg)
{
	struct bad_buf *b = arg;
	iop_buf_put(b->pool, b->ptr);
	iop_buf_get(b->pool, b->ptr);
}

/* released, moved through the magazine to the depot, then put again */
static void do_distant_buf_put(void *arg)
{
	struct bad_buf *b = arg;
	iop_buf_put(b->pool, b->ptr);
	for (unsigned i = 0; i < b->nothers; i++)
		iop_buf_put(b->pool, b->others[i]);
	iop_thread_flush();
	iop_buf_put(b->pool, b->ptr);
}

static int keep_nothing(void *arg, iop_pool_t *pool, void *buf)
{
	(void)arg;
	(void)pool;
	(void)buf;
	return IOP_RELEASE_RECYCLE;
}

TEST(buf_put_of_a_released_buffer_aborts_refcount_underflow)
{
	/* plain refcounted, checked, and with a release hook (the library's
	 * put path every time) */
	static const uint32_t flags[] = { 0, IOP_F_CHECKED, 0 };
	for (int f = 0; f < 3; f++) {
		struct iop_pool_params pp = IOP_POOL_PARAMS_INIT;
		pp.name = "underflow";
		pp.obj_size = 256;
		pp.cache_size = 8;
		pp.flags = IOP_F_REFCOUNT | flags[f];
		if (f == 2)
			pp.release = keep_nothing;
		iop_pool_t *p = iop_pool_create(&pp);
		REQUIRE(p);
		void *buf = iop_buf_alloc(p);
		void *others[40];
		REQUIRE(buf);
		CHECK_EQ(iop_buf_alloc_bulk(p, others, 40), 40);
		struct bad_buf b = { .pool = p, .ptr = buf, .others = others,
				     .nothers = 40 };
		char a[32];
		if (!EXPECT_DEATH(do_buf_put_twice, &b, SIGABRT,
				  PREFIX("underflow"), addr(buf, a), UNDERFLOW))
			printf("  (pool %d)\n", f);
		if (!EXPECT_DEATH(do_buf_get_put_put_put, &b, SIGABRT,
				  PREFIX("underflow"), addr(buf, a), UNDERFLOW))
			printf("  (pool %d)\n", f);
		if (!EXPECT_DEATH(do_distant_buf_put, &b, SIGABRT,
				  PREFIX("underflow"), addr(buf, a), UNDERFLOW))
			printf("  (pool %d)\n", f);
		/* the parent's buffer is untouched by the children */
		CHECK_EQ(iop_buf_refcount(p, buf), 1);
		iop_buf_put(p, buf);
		for (int i = 0; i < 40; i++)
			iop_buf_put(p, others[i]);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

TEST(buf_get_of_a_released_buffer_aborts_no_reference)
{
	static const uint32_t flags[] = { 0, IOP_F_CHECKED };
	for (int f = 0; f < 2; f++) {
		iop_pool_t *p = MKPOOL("noref", 256, 0, 0, 0,
				       IOP_F_REFCOUNT | flags[f]);
		void *buf = iop_buf_alloc(p);
		REQUIRE(buf);
		struct bad_buf b = { .pool = p, .ptr = buf };
		char a[32];
		EXPECT_DEATH(do_buf_put_then_get, &b, SIGABRT, PREFIX("noref"),
			     addr(buf, a), NO_REFERENCE);
		iop_buf_put(p, buf);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

static void do_free_slow(void *arg)
{
	struct bad_free *b = arg;
	iop__free_slow(b->pool, b->ptr);
}

static void do_buf_put_slow(void *arg)
{
	struct bad_buf *b = arg;
	iop__buf_put_slow(b->pool, b->ptr);
}

/* iopool.h, "A NULL pool": the calls that cannot report an error abort
 * with a message naming the call and the address. The inline iop_free(),
 * iop_free_bulk() and iop_buf_put() do not test the pool (undefined
 * behaviour); their exported functions (the _noinline variant) and the
 * slow paths do. (0.4: the buf calls died "not from any pool" or named the
 * object's pool as if it were another's; the exported iop_free() crashed.) */
TEST(calls_that_cannot_report_abort_on_a_null_pool)
{
	iop_pool_t *p = MKPOOL("nullp", 64, 0, 0, 0, IOP_F_REFCOUNT);
	void *o = iop_buf_alloc(p);
	REQUIRE(o);
	char a[32];
	addr(o, a);
	struct bad_buf bb = { .pool = NULL, .ptr = o };
	struct bad_free bf = { .pool = NULL, .ptr = o, .bulk = &o, .nbulk = 1 };
	EXPECT_DEATH(do_buf_get, &bb, SIGABRT, "iopool: iop_buf_get: ", a, "with a NULL pool");
	EXPECT_DEATH(do_buf_refcount, &bb, SIGABRT, "iopool: iop_buf_refcount: ", a, "with a NULL pool");
	EXPECT_DEATH(do_buf_base, &bb, SIGABRT, "iopool: iop_buf_base: ", a, "with a NULL pool");
	EXPECT_DEATH(do_buf_put_slow, &bb, SIGABRT, "iopool: iop_buf_put: ", a, "with a NULL pool");
	EXPECT_DEATH(do_free_slow, &bf, SIGABRT, "iopool: invalid free: ", a, "with a NULL pool");
#ifdef IOP_NO_INLINE
	EXPECT_DEATH(do_buf_put, &bb, SIGABRT, "iopool: iop_buf_put: ", a, "with a NULL pool");
	EXPECT_DEATH(do_free, &bf, SIGABRT, "iopool: invalid free: ", a, "with a NULL pool");
	EXPECT_DEATH(do_free_bulk, &bf, SIGABRT, "iopool: invalid free: ", a, "with a NULL pool");
#endif
	CHECK_EQ(iop_buf_refcount(p, o), 1);
	iop_buf_put(p, o);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

TEST(buf_calls_on_foreign_pointers_abort_naming_the_fault)
{
	iop_pool_t *p = MKPOOL("bufs", 256, 0, 0, 0, IOP_F_REFCOUNT);
	iop_pool_t *q = MKPOOL("theirs", 256, 0, 0, 0, IOP_F_REFCOUNT);
	void *keep = iop_buf_alloc(p); /* p has a chunk */
	void *theirs = iop_buf_alloc(q);
	void *m = malloc(256);
	char local[64];
	REQUIRE(keep && theirs && m);
	struct {
		void *ptr;
		const char *fault;
	} cases[] = {
		{ m, "not from any pool" },
		{ local, "not from any pool" },
		{ static_buffer + 8, "not from any pool" },
		{ theirs, "belongs to pool 'theirs'" },
		{ (char *)theirs + 17, "belongs to pool 'theirs'" },
	};
	static void (*const fns[])(void *) = { do_buf_put, do_buf_get,
					       do_buf_refcount, do_buf_base };
	static const char *const names[] = { "iop_buf_put", "iop_buf_get",
					     "iop_buf_refcount",
					     "iop_buf_base" };
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
		for (int k = 0; k < 4; k++) {
			struct bad_buf b = { .pool = p, .ptr = cases[i].ptr };
			char a[32];
			if (!EXPECT_DEATH(fns[k], &b, SIGABRT, PREFIX("bufs"),
					  addr(cases[i].ptr, a),
					  cases[i].fault))
				printf("  (%s, case %zu)\n", names[k], i);
		}
	iop_buf_put(p, keep);
	iop_buf_put(q, theirs);
	free(m);
	CHECK_AUDIT(p);
	CHECK_AUDIT(q);
	CHECK_DESTROY(p);
	CHECK_DESTROY(q);
	return TH_PASS;
}

TEST(buf_calls_past_the_last_object_of_a_chunk_abort)
{
	/* 300 KiB buffers in 2 MiB chunks: six and a 248 KiB tail */
	iop_pool_t *p = MKPOOL("buf-tail", 300 * KiB, 0, 0, 2 * MiB,
			       IOP_F_REFCOUNT | IOP_F_NO_THP);
	void *bufs[6];
	CHECK_EQ(iop_buf_alloc_bulk(p, bufs, 6), 6);
	uintptr_t base = (uintptr_t)bufs[0] & ~(uintptr_t)(2 * MiB - 1);
	char *tail = (char *)(base + 2 * MiB - 1);
	int have_tail = iop_pool_of(tail) == p &&
			STATS(p).objs_per_chunk * STATS(p).obj_stride <
				2 * MiB - 4096;
	if (have_tail) {
		static void (*const fns[])(void *) = { do_buf_put, do_buf_get,
						       do_buf_base };
		for (int k = 0; k < 3; k++) {
			struct bad_buf b = { .pool = p, .ptr = tail };
			char a[32];
			EXPECT_DEATH(fns[k], &b, SIGABRT, PREFIX("buf-tail"),
				     addr(tail, a), PAST_THE_LAST);
		}
	}
	for (int i = 0; i < 6; i++)
		iop_buf_put(p, bufs[i]);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	TH_SKIP_IF(!have_tail && !th_failed(),
		   "the chunk has no tail past its last object");
	return TH_PASS;
}

TEST(buf_put_and_get_in_a_plain_pool_abort)
{
	static const uint32_t flags[] = { 0, IOP_F_CHECKED };
	for (int f = 0; f < 2; f++) {
		iop_pool_t *p = MKPOOL("plainbuf", 256, 0, 0, 0, flags[f]);
		void *o = iop_alloc(p);
		REQUIRE(o);
		struct bad_buf b = { .pool = p, .ptr = o };
		char a[32];
		EXPECT_DEATH(do_buf_put, &b, SIGABRT, PREFIX("plainbuf"),
			     addr(o, a), NOT_REFCOUNTED, "IOP_F_REFCOUNT");
		EXPECT_DEATH(do_buf_get, &b, SIGABRT, PREFIX("plainbuf"),
			     addr(o, a), NOT_REFCOUNTED, "IOP_F_REFCOUNT");
		EXPECT_DEATH(do_buf_refcount, &b, SIGABRT,
			     PREFIX("plainbuf"), addr(o, a), NOT_REFCOUNTED);
		iop_free(p, o);
		CHECK_AUDIT(p);
		CHECK_DESTROY(p);
	}
	return TH_PASS;
}

/* The header: a buffer is released with iop_buf_put(), not iop_free(),
 * and checked mode aborts on it. */
TEST(free_of_a_buffer_in_a_checked_refcount_pool_aborts)
{
	iop_pool_t *p = MKPOOL("freebuf", 256, 0, 0, 0,
			       IOP_F_REFCOUNT | IOP_F_CHECKED);
	void *buf = iop_buf_alloc(p);
	REQUIRE(buf);
	struct bad_free bf = { .pool = p, .ptr = buf };
	char a[32];
	EXPECT_DEATH(do_free, &bf, SIGABRT, PREFIX("freebuf"), addr(buf, a),
		     "refcounted buffer", "iop_buf_put");
	iop_buf_put(p, buf);
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}

#if TH_ASAN
/* Registered in tests/CMakeLists.txt only for IOP_SANITIZE=address builds */
#define ASAN_TEST(name) TEST(name)
ASAN_TEST(use_after_free_is_reported_by_asan)
{
	iop_pool_t *p = MKPOOL("uaf-asan", 256, 0, 0, 0, IOP_F_CHECKED);
	struct uaf u = { p, 256, 100 };
	EXPECT_DEATH_OR_EXIT(do_use_after_free, &u, "use-after-poison");
	CHECK_AUDIT(p);
	CHECK_DESTROY(p);
	return TH_PASS;
}
#endif

int main(int argc, char **argv)
{
	return th_main(argc, argv);
}
