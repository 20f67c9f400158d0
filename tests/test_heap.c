/* SPDX-License-Identifier: MIT */
/*
 * The size-class heap: every class boundary, the waste bound, alignment,
 * large blocks, the class pools as ordinary pools, frees from other
 * threads, and the aborts for pointers the heap did not hand out.
 *
 * The stress case takes [threads] [iterations] (defaults 16 200000, more
 * threads than cores on purpose).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "iop_test.h"

#include <pthread.h>
#include <stdint.h>

/* The class sizes, from iop_heap_class_size() at every size to 1 MiB. */
static size_t classes[IOP_HEAP_CLASSES + 1];
static unsigned nclasses;

static void find_classes(void)
{
	nclasses = 0;
	for (size_t s = 1; s <= IOP_HEAP_CLASS_MAX; s++) {
		size_t c = iop_heap_class_size(s);
		if (nclasses == 0 || c != classes[nclasses - 1]) {
			REQUIRE(nclasses < IOP_HEAP_CLASSES + 1);
			classes[nclasses++] = c;
		}
	}
}

/* "heap-<size>", the name of the pool of a class */
static void class_name(size_t c, char *buf, size_t len)
{
	snprintf(buf, len, "heap-%zu", c);
}

TEST(heap_every_class_boundary_gets_its_class)
{
	find_classes();
	CHECK_EQ(nclasses, IOP_HEAP_CLASSES);
	CHECK_EQ(classes[0], 16);
	CHECK_EQ(classes[nclasses - 1], IOP_HEAP_CLASS_MAX);
	size_t prev = 0;
	for (unsigned i = 0; i < nclasses; i++) {
		size_t c = classes[i];
		CHECK_GT(c, prev);
		/* both ends of the class's range land in it, and only them */
		size_t sizes[2] = { prev + 1, c };
		for (int k = 0; k < 2; k++) {
			char *p = iop_heap_alloc(sizes[k]);
			REQUIRE(p);
			CHECK_EQ(iop_heap_size(p), c);
			iop_pool_t *pool = iop_pool_of(p);
			REQUIRE(pool);
			char name[32];
			class_name(c, name, sizeof name);
			CHECK_STR_HAS(iop_pool_name(pool), name);
			CHECK_EQ(iop_pool_obj_size(pool), c);
			memset(p, 0x5a, c); /* all of it is usable */
			iop_heap_free(p);
		}
		if (c < IOP_HEAP_CLASS_MAX)
			CHECK_EQ(iop_heap_class_size(c + 1), classes[i + 1]);
		prev = c;
	}
	/* one past the last class: the OS, page-rounded */
	CHECK_EQ(iop_heap_class_size(IOP_HEAP_CLASS_MAX + 1), IOP_HEAP_CLASS_MAX + 4096);
	return TH_PASS;
}

TEST(heap_spacing_keeps_waste_under_an_eighth_above_64_bytes)
{
	for (size_t s = 1; s <= IOP_HEAP_CLASS_MAX; s++) {
		size_t c = iop_heap_class_size(s);
		CHECK_GE(c, s);
		if (s > 64 && (c - s) * 8 >= s) {
			CHECK_LT((c - s) * 8, s);
			break;
		}
	}
	/* the documented steps: 16 B to 64 B, then an eighth of the power of
	 * two below */
	CHECK_EQ(iop_heap_class_size(1), 16);
	CHECK_EQ(iop_heap_class_size(49), 64);
	CHECK_EQ(iop_heap_class_size(65), 72);
	CHECK_EQ(iop_heap_class_size(129), 144);
	CHECK_EQ(iop_heap_class_size(4097), 4608);
	CHECK_EQ(iop_heap_class_size(512 * KiB + 1), 576 * KiB);
	return TH_PASS;
}

TEST(heap_blocks_are_aligned_to_16_except_the_8_byte_classes)
{
	void *keep[2048];
	for (size_t s = 1; s <= 2048; s++) {
		char *p = iop_heap_alloc(s);
		REQUIRE(p);
		size_t c = iop_heap_size(p);
		uintptr_t a = (uintptr_t)p;
		if (c % 16 == 0)
			CHECK_EQ(a % 16, 0);
		else
			CHECK(c == 72 || c == 88 || c == 104 || c == 120);
		CHECK_EQ(a % 8, 0);
		memset(p, (int)s, s);
		keep[s - 1] = p;
	}
	/* no block overlaps another */
	for (size_t s = 1; s <= 2048; s++) {
		const unsigned char *p = keep[s - 1];
		for (size_t i = 0; i < s; i++)
			if (p[i] != (unsigned char)s) {
				CHECK_EQ(p[i], (unsigned char)s);
				break;
			}
		iop_heap_free(keep[s - 1]);
	}
	return TH_PASS;
}

TEST(heap_aligned_allocation_honours_every_power_of_two)
{
	static const size_t sizes[] = { 0, 1, 7, 64, 100, 4096, 5000, 40000, MiB, MiB + 1, 3 * MiB };
	for (unsigned shift = 0; shift <= 23; shift++) {
		size_t align = (size_t)1 << shift;
		void *live[sizeof sizes / sizeof sizes[0]];
		for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			char *p = iop_heap_alloc_aligned(sizes[i], align);
			REQUIRE(p);
			CHECK_EQ((uintptr_t)p % align, 0);
			size_t usable = iop_heap_size(p);
			CHECK_GE(usable, sizes[i] ? sizes[i] : 1);
			p[0] = 1;
			p[usable - 1] = 2;
			live[i] = p;
		}
		for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
			iop_heap_free(live[i]);
	}
	/* a class block when one fits: 4 KiB at 4 KiB is the 4 KiB class */
	void *p = iop_heap_alloc_aligned(4000, 4096);
	REQUIRE(p);
	CHECK(iop_pool_of(p) != NULL);
	CHECK_EQ(iop_heap_size(p), 4096);
	iop_heap_free(p);
	/* the largest alignment, above the largest class */
	p = iop_heap_alloc_aligned(100, IOP_HEAP_ALIGN_MAX);
	REQUIRE(p);
	CHECK_EQ((uintptr_t)p % IOP_HEAP_ALIGN_MAX, 0);
	CHECK(iop_pool_of(p) == NULL);
	iop_heap_free(p);
	return TH_PASS;
}

TEST(heap_aligned_refuses_bad_alignment_with_einval)
{
	static const size_t bad[] = { 0, 3, 24, 4095, IOP_HEAP_ALIGN_MAX * 2 };
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		th_capture_begin();
		errno = 0;
		void *p = iop_heap_alloc_aligned(64, bad[i]);
		int err = errno;
		char *msg = th_capture_end();
		CHECK(p == NULL);
		CHECK_EQ(err, EINVAL);
		CHECK_STR_HAS(msg, "iopool: iop_heap_alloc_aligned: align");
		free(msg);
	}
	return TH_PASS;
}

TEST(heap_large_blocks_come_from_the_os_and_are_tracked)
{
	static const size_t sizes[] = { MiB + 1, 2 * MiB, 5 * MiB + 3, 64 * MiB + 123 };
	void *live[4];
	for (unsigned i = 0; i < 4; i++) {
		char *p = iop_heap_alloc(sizes[i]);
		REQUIRE(p);
		CHECK(iop_pool_of(p) == NULL);
		CHECK_EQ((uintptr_t)p % (2 * MiB), 0);
		size_t want = (sizes[i] + 4095) & ~(size_t)4095;
		CHECK_EQ(iop_heap_size(p), want);
		CHECK_EQ(iop_heap_class_size(sizes[i]), want);
		for (size_t off = 0; off < sizes[i]; off += 4096)
			p[off] = (char)i;
		p[sizes[i] - 1] = 1;
		live[i] = p;
	}
	for (unsigned i = 0; i < 4; i++)
		iop_heap_free(live[i]);
	/* too large to map: ENOMEM, nothing printed */
	errno = 0;
	CHECK(iop_heap_alloc(SIZE_MAX) == NULL);
	CHECK_EQ(errno, ENOMEM);
	errno = 0;
	CHECK(iop_heap_alloc_aligned(SIZE_MAX - 4096, 64) == NULL);
	CHECK_EQ(errno, ENOMEM);
	CHECK_EQ(iop_heap_class_size(SIZE_MAX), 0);
	return TH_PASS;
}

TEST(heap_reused_large_block_reports_the_size_asked_for)
{
	/* A freed block is kept and reused for a request up to 1/8 smaller:
	 * the size reported is the new request's, not the old block's. */
	char *a = iop_heap_alloc(5 * MiB + 3 * 4096);
	REQUIRE(a);
	iop_heap_free(a);
	char *b = iop_heap_alloc(5 * MiB);
	REQUIRE(b);
	CHECK_PTR_EQ(b, a); /* the cached block */
	CHECK_EQ(iop_heap_size(b), iop_heap_class_size(5 * MiB));
	CHECK_EQ(iop_heap_size(b), 5 * MiB);
	b[5 * MiB - 1] = 1;
	iop_heap_free(b);
	return TH_PASS;
}

TEST(heap_size_zero_gives_distinct_smallest_blocks_and_free_null_is_a_no_op)
{
	void *a = iop_heap_alloc(0), *b = iop_heap_alloc(0);
	REQUIRE(a && b);
	CHECK(a != b);
	CHECK_EQ(iop_heap_size(a), 16);
	CHECK_EQ(iop_heap_size(NULL), 0);
	iop_heap_free(NULL);
	iop_heap_free(a);
	iop_heap_free(b);
	return TH_PASS;
}

TEST(heap_class_pools_are_ordinary_pools_and_cannot_be_destroyed)
{
	void *p[10];
	for (int i = 0; i < 10; i++)
		REQUIRE(p[i] = iop_heap_alloc(3000));
	iop_pool_t *pool = iop_pool_of(p[0]);
	REQUIRE(pool);
	CHECK_STR_HAS(iop_pool_name(pool), "heap-3072");
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.in_flight, 10);
	CHECK_EQ(st.obj_stride, 3072);
	CHECK_CONSERVED(st);
	CHECK_AUDIT(pool);
	th_capture_begin();
	int rc = iop_pool_destroy(pool);
	char *msg = th_capture_end();
	CHECK_EQ(rc, -EPERM);
	CHECK_STR_HAS(msg, "heap-3072");
	free(msg);
	for (int i = 0; i < 10; i++)
		iop_heap_free(p[i]);
	iop_thread_flush();
	st = STATS(pool);
	CHECK_EQ(st.in_flight, 0);
	CHECK_AUDIT(pool);
	return TH_PASS;
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Each thread allocates blocks of random sizes (mostly small, some large),
 * stamps them with its id over their whole usable size, and either frees
 * them itself a little later or drops them in a shared mailbox for any
 * thread to verify and free.
 */
#define MAILBOX 256
static void *mailbox[MAILBOX];
static uint64_t mail_tag[MAILBOX];
static pthread_mutex_t mail_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned stress_iters = 200000;

static size_t random_size(uint64_t *s)
{
	uint64_t r = th_rand(s);
	switch (r % 16) {
	case 0:
		return (size_t)(r >> 8) % (4 * MiB) + 1; /* any, large ones too */
	case 1: case 2: case 3:
		return (size_t)(r >> 8) % (64 * KiB) + 1;
	default:
		return (size_t)(r >> 8) % 1024 + 1;
	}
}

static void check_and_free(void *p, uint64_t tag)
{
	CHECK_STAMP(p, iop_heap_size(p) < 4096 ? iop_heap_size(p) : 4096, tag);
	iop_heap_free(p);
}

static void *stress_thread(void *arg)
{
	uint64_t id = (uint64_t)(uintptr_t)arg;
	uint64_t s = th_seed(id, 42);
	void *ring[32] = { 0 };
	uint64_t tags[32];
	for (unsigned i = 0; i < stress_iters; i++) {
		unsigned k = i % 32;
		if (ring[k])
			check_and_free(ring[k], tags[k]);
		size_t size = random_size(&s);
		void *p = (th_rand(&s) & 1) ? iop_heap_alloc(size)
					    : iop_heap_alloc_aligned(size, (size_t)1 << (th_rand(&s) % 13));
		REQUIRE(p);
		REQUIRE(iop_heap_size(p) >= size);
		uint64_t tag = id << 32 | i;
		/* stamp at most 4 KiB of a block: a large one is mostly
		 * untouched, as in real use */
		th_stamp(p, iop_heap_size(p) < 4096 ? iop_heap_size(p) : 4096, tag);
		if (th_rand(&s) % 4 == 0) {
			/* trade with the mailbox: whatever was there is
			 * someone else's block, freed here */
			unsigned slot = (unsigned)(th_rand(&s) % MAILBOX);
			pthread_mutex_lock(&mail_lock);
			void *old = mailbox[slot];
			uint64_t old_tag = mail_tag[slot];
			mailbox[slot] = p;
			mail_tag[slot] = tag;
			pthread_mutex_unlock(&mail_lock);
			ring[k] = NULL;
			if (old)
				check_and_free(old, old_tag);
		} else {
			ring[k] = p;
			tags[k] = tag;
		}
	}
	for (unsigned k = 0; k < 32; k++)
		if (ring[k])
			check_and_free(ring[k], tags[k]);
	return NULL;
}

static int run_stress(unsigned threads)
{
	pthread_t t[256];
	for (unsigned i = 0; i < threads; i++)
		REQUIRE(pthread_create(&t[i], NULL, stress_thread, (void *)(uintptr_t)(i + 1)) == 0);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < MAILBOX; i++)
		if (mailbox[i]) {
			check_and_free(mailbox[i], mail_tag[i]);
			mailbox[i] = NULL;
		}
	/* every class pool in use holds nothing in flight, and is sound */
	iop_thread_flush();
	for (size_t s = 16; s <= IOP_HEAP_CLASS_MAX; s = iop_heap_class_size(s) + 1) {
		void *p = iop_heap_alloc(s);
		REQUIRE(p);
		iop_pool_t *pool = iop_pool_of(p);
		iop_heap_free(p);
		iop_thread_flush();
		struct iop_pool_stats st = STATS(pool);
		CHECK_EQ(st.in_flight, 0);
		CHECK_CONSERVED(st);
		CHECK_AUDIT(pool);
	}
	return TH_PASS;
}

/* A class maps a whole chunk at its first use, of which the few blocks in
 * use touch a few pages: the statistics say both (mincore), so that 2 MiB
 * mapped per class used is not taken for 2 MiB of memory used. */
TEST(heap_class_stats_show_resident_bytes_beside_mapped_ones)
{
	void *p[4];
	for (int i = 0; i < 4; i++) {
		REQUIRE(p[i] = iop_heap_alloc(640));
		memset(p[i], 0x5a, 640);
	}
	iop_pool_t *pool = iop_pool_of(p[0]);
	REQUIRE(pool);
	struct iop_pool_stats st = STATS(pool);
	CHECK_EQ(st.chunks, 1);
	CHECK_EQ(st.bytes_mapped, st.chunk_size);
	CHECK_GE(st.bytes_resident, 4096);
	CHECK_LT(st.bytes_resident, st.bytes_mapped);
	for (int i = 0; i < 4; i++)
		iop_heap_free(p[i]);
	/* Shrunk: nothing mapped, nothing resident. */
	iop_thread_flush();
	iop_pool_shrink(pool, 0);
	st = STATS(pool);
	CHECK_EQ(st.bytes_mapped, 0);
	CHECK_EQ(st.bytes_resident, 0);
	return TH_PASS;
}

TEST(heap_blocks_freed_on_other_threads_many_threads)
{
	stress_iters = TH_TSAN ? 20000 : IOP_TEST_DEBUG >= 2 ? 50000 : 200000;
	return run_stress(16);
}

/* ------------------------------------------------------------------------ */
/* Pointers the heap did not hand out                                        */
/* ------------------------------------------------------------------------ */

#define HEAP_PREFIX "iopool: heap: "

static void do_heap_free(void *p)
{
	iop_heap_free(p);
}

static void do_heap_size(void *p)
{
	(void)iop_heap_size(p);
}

struct app_free {
	iop_pool_t *pool;
	void *p;
};

static void do_app_free(void *arg)
{
	struct app_free *af = arg;
	iop_free(af->pool, af->p);
}

static const char *addr(const void *p, char buf[32])
{
	snprintf(buf, 32, "%p", p);
	return buf;
}

static char static_buffer[64];

/* iop_heap_class_size() says what iop_heap_alloc() of the same size
 * gives, and 0 exactly for the sizes iop_heap_alloc() refuses whatever the
 * OS has (0.4 said 2^62 for 2^62 and 2^63 for SIZE_MAX/2, which it
 * refused with ENOMEM). */
TEST(heap_class_size_is_zero_exactly_for_the_sizes_the_heap_refuses)
{
	CHECK_EQ(iop_heap_class_size(0), 16);
	CHECK_EQ(iop_heap_class_size(IOP_HEAP_CLASS_MAX), IOP_HEAP_CLASS_MAX);
	CHECK_EQ(iop_heap_class_size(IOP_HEAP_CLASS_MAX + 1), IOP_HEAP_CLASS_MAX + 4096);
	CHECK_EQ(IOP_HEAP_SIZE_MAX % 4096, 0);
	CHECK_EQ(iop_heap_class_size(IOP_HEAP_SIZE_MAX), IOP_HEAP_SIZE_MAX);
	CHECK_EQ(iop_heap_class_size(IOP_HEAP_SIZE_MAX - 4095), IOP_HEAP_SIZE_MAX);
	static const size_t refused[] = { IOP_HEAP_SIZE_MAX + 1, (size_t)1 << 62, SIZE_MAX / 2, SIZE_MAX / 2 + 1,
					  SIZE_MAX - 4096, SIZE_MAX };
	for (unsigned i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		CHECK_EQ(iop_heap_class_size(refused[i]), 0);
		errno = 0;
		void *p = iop_heap_alloc(refused[i]);
		CHECK(p == NULL);
		CHECK_EQ(errno, ENOMEM);
		errno = 0;
		p = iop_heap_alloc_aligned(refused[i], 4096);
		CHECK(p == NULL);
		CHECK_EQ(errno, ENOMEM);
	}
	/* The largest accepted size reaches the OS, which may refuse it; when
	 * it does not, the block is what iop_heap_class_size() said. */
	char *big = iop_heap_alloc(IOP_HEAP_SIZE_MAX);
	if (big) {
		CHECK_EQ(iop_heap_size(big), IOP_HEAP_SIZE_MAX);
		iop_heap_free(big);
	}
	/* A size that maps: the same figure both ways. */
	char *b = iop_heap_alloc(3 * MiB + 1);
	REQUIRE(b);
	CHECK_EQ(iop_heap_size(b), iop_heap_class_size(3 * MiB + 1));
	iop_heap_free(b);
	return TH_PASS;
}

static void do_heap_size_of_freed(void *p)
{
	iop_heap_free(p);
	(void)iop_heap_size(p);
}

/* The header: iop_heap_size() aborts when p is not a live block. A checked
 * class pool knows which blocks are in flight (0.4 returned 104 for a freed
 * 104-byte block, checked or not); an unchecked one knows only that the
 * address is a block's, and returns its class's size. This case runs twice:
 * as it is, and with IOPOOL_CHECKED=1 (<case>_checked). */
TEST(heap_size_of_a_freed_class_block_aborts_when_checked)
{
	char *keep = iop_heap_alloc(100);
	REQUIRE(keep);
	void *p = iop_heap_alloc(100);
	REQUIRE(p);
	CHECK_EQ(iop_heap_size(p), 104);
	char a[32];
	if (TH_ALL_CHECKED) {
		EXPECT_DEATH(do_heap_size_of_freed, p, SIGABRT, HEAP_PREFIX "size query of ", addr(p, a),
			     "the block is free");
	} else {
		iop_heap_free(p);
		CHECK_EQ(iop_heap_size(p), 104);
		p = NULL;
	}
	iop_heap_free(p);
	iop_heap_free(keep);
	return TH_PASS;
}

TEST(heap_free_of_a_foreign_pointer_aborts_not_from_the_heap)
{
	void *keep = iop_heap_alloc(100); /* the heap is set up */
	REQUIRE(keep);
	char a[32];
	void *m = malloc(100);
	REQUIRE(m);
	EXPECT_DEATH(do_heap_free, m, SIGABRT, HEAP_PREFIX "invalid free of ", addr(m, a), ": not from the heap");
	EXPECT_DEATH(do_heap_free, static_buffer, SIGABRT, addr(static_buffer, a), "not from the heap");
	char local[16];
	EXPECT_DEATH(do_heap_free, local, SIGABRT, addr(local, a), "not from the heap");
	EXPECT_DEATH(do_heap_size, m, SIGABRT, HEAP_PREFIX "size query of ", addr(m, a), "not from the heap");
	free(m);
	iop_heap_free(keep);
	return TH_PASS;
}

TEST(heap_free_of_an_application_pool_object_aborts_naming_the_pool)
{
	iop_pool_t *pool = MKPOOL("app-rx", 2048, 0, 0, 0, 0);
	void *o = iop_alloc(pool);
	REQUIRE(o);
	char a[32];
	EXPECT_DEATH(do_heap_free, o, SIGABRT, HEAP_PREFIX, addr(o, a),
		     "it belongs to pool 'app-rx', not to the heap");
	/* and the other way round: the pool refuses a heap block */
	void *h = iop_heap_alloc(2048);
	REQUIRE(h);
	CHECK(iop_pool_of(h) != pool);
	struct app_free af = { pool, h };
	EXPECT_DEATH(do_app_free, &af, SIGABRT, "iopool: pool 'app-rx': ", addr(h, a),
		     "it belongs to pool 'heap-2048'");
	iop_heap_free(h);
	iop_free(pool, o);
	CHECK_DESTROY(pool);
	return TH_PASS;
}

TEST(heap_free_of_an_interior_pointer_aborts_with_the_offset)
{
	char *p = iop_heap_alloc(100); /* class 104 */
	REQUIRE(p);
	char a[32], b[32];
	EXPECT_DEATH(do_heap_free, p + 8, SIGABRT, HEAP_PREFIX "invalid free of ", addr(p + 8, a),
		     "interior pointer, 8 bytes into the block at ", addr(p, b), "pool 'heap-104'");
	EXPECT_DEATH(do_heap_size, p + 1, SIGABRT, HEAP_PREFIX "size query of ", "interior pointer, 1 bytes");
	char *big = iop_heap_alloc(3 * MiB);
	REQUIRE(big);
	EXPECT_DEATH(do_heap_free, big + 4096, SIGABRT, HEAP_PREFIX, addr(big + 4096, a),
		     "interior pointer, 4096 bytes into the large block at ", addr(big, b));
	iop_heap_free(big);
	iop_heap_free(p);
	return TH_PASS;
}

TEST(heap_second_free_of_a_large_block_aborts)
{
	char *big = iop_heap_alloc(3 * MiB);
	REQUIRE(big);
	iop_heap_free(big);
	char a[32];
	EXPECT_DEATH(do_heap_free, big, SIGABRT, HEAP_PREFIX, addr(big, a), "not from the heap");
	return TH_PASS;
}

int main(int argc, char **argv)
{
	if (argc == 3 && argv[1][0] >= '0' && argv[1][0] <= '9') {
		/* [threads] [iterations] */
		unsigned threads = (unsigned)th_parse_arg(argv[1], 1, 256, "threads");
		stress_iters = (unsigned)th_parse_arg(argv[2], 1, 100000000, "iterations");
		int rc = run_stress(threads);
		return th_failed() ? TH_FAIL : rc;
	}
	return th_main(argc, argv);
}
